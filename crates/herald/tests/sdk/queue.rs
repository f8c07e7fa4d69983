//! The queue between the program and the sinks: a stuck sink never blocks the
//! program; ticks are dropped before milestones, and both are counted.

use std::io;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald::protocol::{Event, RunState};
use herald::{Progress, Sink, Target};

/// A sink that holds the background thread until the test lets it go.
struct Stuck {
    gate: Arc<Mutex<Receiver<()>>>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Sink for Stuck {
    fn event(&mut self, event: &Event, _state: &RunState) -> io::Result<()> {
        if self.seen.lock().unwrap().is_empty() {
            // Block on the first event until released.
            let _ = self.gate.lock().unwrap().recv();
        }
        self.seen
            .lock()
            .unwrap()
            .push(event.event_type().to_owned());
        Ok(())
    }
}

fn stuck() -> (Progress, SyncSender<()>, Arc<Mutex<Vec<String>>>) {
    let (tx, rx) = sync_channel(1);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Stuck {
        gate: Arc::new(Mutex::new(rx)),
        seen: seen.clone(),
    };
    (Progress::new([Target::sink(sink)]), tx, seen)
}

#[test]
fn a_stuck_sink_drops_ticks_first_and_keeps_milestones() {
    let (progress, release, seen) = stuck();
    let run = progress.run("stuck");
    let started = Instant::now();
    // Far more ticks (info logs) than the queue holds, then milestones.
    for i in 0..5_000 {
        run.info(format!("tick {i}"));
    }
    for i in 0..100 {
        run.warn(format!("milestone {i}"));
    }
    // None of this waited for the sink.
    assert!(started.elapsed() < Duration::from_secs(5));
    let stats = progress.stats();
    assert!(stats.dropped_ticks > 0, "{stats:?}");
    assert_eq!(stats.dropped_milestones, 0, "{stats:?}");

    release.send(()).unwrap();
    run.finish();
    drop(progress);
    let seen = seen.lock().unwrap();
    let warns = seen.iter().filter(|t| *t == "log").count();
    assert!(warns >= 100, "milestones lost: {warns} log events seen");
    assert_eq!(seen.last().map(String::as_str), Some("run.finished"));
}

/// A sink that fails on its first event.
struct Broken;

impl Sink for Broken {
    fn event(&mut self, _event: &Event, _state: &RunState) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::BrokenPipe,
            "reader went away",
        ))
    }
}

/// A sink that panics.
struct Panicky;

impl Sink for Panicky {
    fn event(&mut self, _event: &Event, _state: &RunState) -> io::Result<()> {
        panic!("sink bug")
    }
}

#[test]
fn failing_sinks_are_disabled_and_the_others_go_on() {
    let memory = herald::MemorySink::new();
    let progress = Progress::new([
        Target::sink(Broken),
        Target::sink(Panicky),
        Target::memory(&memory),
    ]);
    let run = progress.run("resilient");
    run.info("still here");
    run.finish();
    assert_eq!(progress.stats().sink_errors, 2);
    drop(progress);
    assert_eq!(
        crate::util::milestones(&memory.events()),
        ["run.started", "log", "run.finished"]
    );
}
