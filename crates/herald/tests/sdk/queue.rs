//! The queue between the program and the sinks: a stuck sink never blocks the
//! program; ticks are dropped before milestones, and both are counted.

use std::io;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald::protocol::{Event, EventBody, LogLevel, RunState};
use herald::{Progress, Sink, Target};

/// A sink that holds the background thread until the test lets it go.
struct Stuck {
    gate: Arc<Mutex<Receiver<()>>>,
    seen: Arc<Mutex<Vec<Event>>>,
}

impl Sink for Stuck {
    fn event(&mut self, event: &Event, _state: &RunState) -> io::Result<()> {
        if self.seen.lock().unwrap().is_empty() {
            // Block on the first event until released.
            let _ = self.gate.lock().unwrap().recv();
        }
        self.seen.lock().unwrap().push(event.clone());
        Ok(())
    }
}

/// The messages of the `log` events of `level` among `events`, in order.
fn logged(events: &[Event], level: LogLevel) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Log(log) if log.level == level => Some(log.message.clone()),
            _ => None,
        })
        .collect()
}

fn stuck() -> (Progress, SyncSender<()>, Arc<Mutex<Vec<Event>>>) {
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
    const TICKS: usize = 5_000;
    let (progress, release, seen) = stuck();
    let run = progress.run("stuck");
    // Far more ticks (info logs) than the queue holds, then milestones, on a thread of
    // their own: the sink is held until they are all reported, so a report that
    // waited for it would never end.
    let reporting = std::thread::spawn({
        let run = run.clone();
        move || {
            for i in 0..TICKS {
                run.info(format!("tick {i}"));
            }
            for i in 0..100 {
                run.warn(format!("milestone {i}"));
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !reporting.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "reporting waited for the stuck sink"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    reporting.join().expect("the reports ran");
    let stats = progress.stats();
    assert!(stats.dropped_ticks > 0, "{stats:?}");
    assert_eq!(stats.dropped_milestones, 0, "{stats:?}");

    release.send(()).unwrap();
    run.finish();
    drop(progress);
    let seen = seen.lock().unwrap();
    let milestones: Vec<String> = (0..100).map(|i| format!("milestone {i}")).collect();
    assert_eq!(
        logged(&seen, LogLevel::Warn),
        milestones,
        "every milestone, once, in order"
    );
    // Every tick was delivered or counted as dropped, and those delivered are in order.
    let ticks = logged(&seen, LogLevel::Info);
    assert_eq!(
        ticks.len() as u64 + stats.dropped_ticks,
        TICKS as u64,
        "{stats:?}"
    );
    let numbers: Vec<usize> = ticks
        .iter()
        .map(|t| t["tick ".len()..].parse().expect("a tick's number"))
        .collect();
    assert!(numbers.is_sorted(), "ticks out of order");
    assert_eq!(
        seen.last().map(Event::event_type),
        Some("run.finished"),
        "finished last"
    );
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
