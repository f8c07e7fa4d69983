//! The SDK's promises about time: finishing a run waits for a hub that hangs no longer
//! than the flush deadline (5 s by default), and JSON Lines and the hub hear from a
//! silent run at least every 10 s.
//!
//! The keep-alive is checked without waiting 10 s: the defaults are read through the
//! public `Sink::policy` of the sinks the targets build, and the loop that acts on
//! them is shown to honour a short interval given the same way.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald::protocol::{EventBody, parse_event};
use herald::{HubOptions, JsonLines, Progress, Sink, SinkPolicy, Target};

/// The flush deadline ARCHITECTURE.md and `HubOptions` document.
const FLUSH_DEADLINE: Duration = Duration::from_secs(5);
/// What a loaded machine may add to a deadline: far less than the hub sink's 10 s
/// request timeout, which is what a finish would wait for without its deadline.
const MARGIN: Duration = Duration::from_secs(3);

/// A hub that accepts connections and never answers them: every request hangs until
/// the client gives up. The connections stay open as long as the test runs.
fn hanging_hub() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for stream in listener.incoming() {
            match stream {
                Ok(stream) => held.push(stream),
                Err(_) => return,
            }
        }
    });
    url
}

/// Reports a little, then finishes the run; how long the finish took.
fn finish_against(options: HubOptions) -> (Progress, Duration) {
    let progress = Progress::new([Target::hub(options)]);
    let run = progress.run("hung");
    let stage = run.stage("work").total(3);
    // Reporting is never held up by the hub, however it behaves.
    let reporting = Instant::now();
    for item in stage.iter(0..3) {
        run.info(format!("item {item}"));
    }
    stage.finish();
    assert!(
        reporting.elapsed() < Duration::from_secs(1),
        "reporting waited for the hub: {:?}",
        reporting.elapsed()
    );
    let finishing = Instant::now();
    run.finish();
    (progress, finishing.elapsed())
}

#[test]
fn finishing_against_a_hub_that_never_answers_returns_at_the_flush_deadline() {
    let options = HubOptions::new(&hanging_hub(), None);
    assert_eq!(
        options.flush_deadline, FLUSH_DEADLINE,
        "the documented default"
    );
    let (progress, took) = finish_against(options);
    // It did wait for the hub, as a finish must, and for no longer than promised.
    assert!(
        took >= FLUSH_DEADLINE - Duration::from_millis(50),
        "gave up on the hub after {took:?}"
    );
    assert!(
        took < FLUSH_DEADLINE + MARGIN,
        "finish took {took:?}, past the {FLUSH_DEADLINE:?} deadline"
    );
    // The deadline was spent once: exiting does not wait it out a second time, nor for
    // the request still hanging.
    let dropping = Instant::now();
    drop(progress);
    assert!(
        dropping.elapsed() < MARGIN,
        "dropping the reporter took {:?} more",
        dropping.elapsed()
    );
}

#[test]
fn a_shorter_flush_deadline_is_the_one_kept() {
    let mut options = HubOptions::new(&hanging_hub(), None);
    options.flush_deadline = Duration::from_secs(1);
    let (progress, took) = finish_against(options);
    assert!(took >= Duration::from_millis(950), "finish took {took:?}");
    assert!(
        took < Duration::from_secs(1) + MARGIN,
        "finish took {took:?} with a deadline of 1 s"
    );
    drop(progress);
}

#[test]
fn json_lines_and_the_hub_keep_alive_every_10_s_by_default() {
    let ten = Some(Duration::from_secs(10));
    assert_eq!(SinkPolicy::default().keepalive, ten);
    assert_eq!(JsonLines::new(Vec::new()).policy().keepalive, ten);
    let dir = tempfile::tempdir().unwrap();
    let targets = [
        ("stderr", Target::stderr_json()),
        (
            "a file",
            Target::json_file(&dir.path().join("p.jsonl")).unwrap(),
        ),
        ("a writer", Target::json_writer(Vec::new())),
        // Nothing listens there; the sink is closed before it would send anything.
        (
            "a hub",
            Target::hub(HubOptions::new("http://127.0.0.1:1", None)),
        ),
    ];
    for (what, target) in targets {
        let mut sink = target.into_sink().expect("a sink");
        assert_eq!(sink.policy().keepalive, ten, "JSON Lines to {what}");
        sink.close().unwrap();
    }
    // The terminal redraws on its own and needs none.
    let bars = Target::stderr_bars().into_sink().expect("a sink");
    assert_eq!(bars.policy().keepalive, None);
}

/// A writer whose bytes the test reads while the reporter runs.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn json_lines_hear_from_a_silent_run_at_the_keep_alive_interval() {
    let every = Duration::from_millis(300);
    let out = Shared::default();
    let policy = SinkPolicy {
        keepalive: Some(every),
        ..SinkPolicy::default()
    };
    let progress = Progress::new([Target::sink(
        JsonLines::new(out.clone()).with_policy(policy),
    )]);
    let run = progress.run("silent");
    // The run says nothing more; three keep-alives must come on their own.
    let deadline = Instant::now() + Duration::from_secs(10);
    let beats = loop {
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let beats: Vec<f64> = text
            .lines()
            .map(|line| parse_event(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .filter(|e| matches!(e.body, EventBody::Heartbeat(_)))
            .map(|e| e.ts.unix_micros() as f64 / 1e6)
            .collect();
        if beats.len() >= 3 {
            break beats;
        }
        assert!(
            Instant::now() < deadline,
            "{} keep-alives within 10 s:\n{text}",
            beats.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    run.finish();
    // No sooner than the interval: the keep-alive is a floor on silence, not a tick.
    for pair in beats.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= every.as_secs_f64() - 0.001,
            "keep-alives {gap:.3}s apart, under the {every:?} interval: {beats:?}"
        );
    }
}
