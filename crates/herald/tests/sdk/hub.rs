//! The hub sink against a stub hub on a real loopback socket that answers what a test
//! tells it to: here, a rate limit's `429` and a full disk's `507`, with `Retry-After`,
//! and appends answered slowly, by a hub that takes a burst more slowly than it comes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald::{HubOptions, Progress, Target};
use serde_json::{Value, json};

/// One request the stub took: when, the path, and the JSON body.
struct Seen {
    at: Instant,
    path: String,
    body: Value,
}

/// A hub on `127.0.0.1:<free port>` that creates any run and answers its appends in
/// turn from `replies` (status, extra header), then with 200 for good.
struct StubHub {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl StubHub {
    fn start(replies: Vec<(u16, Option<&'static str>)>) -> StubHub {
        StubHub::slow(replies, Duration::ZERO)
    }

    /// The same, answering each append only `delay` after it came.
    fn slow(replies: Vec<(u16, Option<&'static str>)>, delay: Duration) -> StubHub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let replies = Arc::new(Mutex::new(replies.into_iter()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (seen, replies) = (record.clone(), replies.clone());
                std::thread::spawn(move || serve(stream, &seen, &replies, delay));
            }
        });
        StubHub { url, seen }
    }

    /// The appends taken so far.
    fn appends(&self) -> Vec<(Instant, Value)> {
        let seen = self.seen.lock().expect("not poisoned");
        seen.iter()
            .filter(|s| s.path.ends_with("/events"))
            .map(|s| (s.at, s.body.clone()))
            .collect()
    }
}

/// Answers the requests of one keep-alive connection.
fn serve(
    stream: TcpStream,
    seen: &Mutex<Vec<Seen>>,
    replies: &Mutex<std::vec::IntoIter<(u16, Option<&'static str>)>>,
    delay: Duration,
) {
    let mut reader = BufReader::new(stream.try_clone().expect("a second handle"));
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("a header line");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            match line.split_once(':') {
                Some((name, value)) if name.eq_ignore_ascii_case("content-length") => {
                    length = value.trim().parse().expect("a length");
                }
                _ => {}
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("the body");
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let (status, header, reply) = if path == "/v1/runs" {
            let id = body["id"].as_str().unwrap_or("r").to_owned();
            (
                201,
                None,
                json!({"id": id, "write_token": "w", "read_token": "r"}),
            )
        } else {
            let (status, header) = replies
                .lock()
                .expect("not poisoned")
                .next()
                .unwrap_or((200, None));
            let n = body.as_array().map_or(0, Vec::len);
            // A hub busy storing them: the sender waits, and the burst queues up.
            std::thread::sleep(delay);
            let reply = match status {
                200 => {
                    json!({"appended": n, "duplicates": 0, "last_seq": n, "cancel_requested": false})
                }
                507 => {
                    json!({"error": {"code": "insufficient_storage", "message": "the hub's disk is full"}})
                }
                _ => json!({"error": {"code": "rate_limited", "message": "slow down"}}),
            };
            (status, header, reply)
        };
        seen.lock().expect("not poisoned").push(Seen {
            at: Instant::now(),
            path,
            body,
        });
        let reply = reply.to_string();
        let extra = header.map(|h| format!("{h}\r\n")).unwrap_or_default();
        let response = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n{reply}",
            reply.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn a_rate_limited_append_is_sent_again_after_retry_after_and_nothing_is_lost() {
    check_sent_again_after_retry_after(429);
}

#[test]
fn an_append_refused_by_a_full_disk_is_sent_again_after_retry_after_and_nothing_is_lost() {
    check_sent_again_after_retry_after(507);
}

/// The hub refuses the first append with `status` and `Retry-After: 1`: the sink sends
/// the same events again, no sooner, and every event arrives.
#[track_caller]
fn check_sent_again_after_retry_after(status: u16) {
    let hub = StubHub::start(vec![(status, Some("Retry-After: 1"))]);
    let progress = Progress::new([Target::hub(HubOptions::new(&hub.url, None))]);
    let run = progress.run("limited");
    run.info("one");
    run.info("two");
    run.finish();
    // The finish waited for the run's events to be acknowledged.
    let stats = progress.stats();
    drop(progress);

    let appends = hub.appends();
    assert!(
        appends.len() >= 2,
        "refused, then sent again: {}",
        appends.len()
    );
    let (refused_at, refused) = &appends[0];
    let (retried_at, retried) = &appends[1];
    // The same events again, with the same idempotency ids, no sooner than asked.
    let ids = |batch: &Value| -> Vec<Value> {
        batch
            .as_array()
            .expect("a batch")
            .iter()
            .map(|e| e["id"].clone())
            .collect()
    };
    let first = ids(refused);
    assert!(!first.is_empty());
    assert_eq!(ids(retried)[..first.len()], first[..]);
    let waited = retried_at.duration_since(*refused_at);
    assert!(
        waited >= Duration::from_secs(1),
        "sent again after {waited:?}, before Retry-After's 1 s"
    );
    // Every event reached the stub, ending with the run's finish.
    let events: Vec<Value> = appends[1..]
        .iter()
        .flat_map(|(_, b)| b.as_array().cloned().unwrap_or_default())
        .collect();
    let messages: Vec<&str> = events
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert_eq!(messages, ["one", "two"]);
    assert_eq!(
        events.last().map(|e| e["event"].clone()),
        Some(json!("run.finished"))
    );
    // What was refused is not counted as acknowledged; what was taken is.
    assert_eq!(stats.hub_acknowledged, events.len() as u64);
}

/// A burst of milestones several times what the hub takes in the same moment (an
/// append answered every 20 ms), and larger than the outbox's old bound of 10,000
/// events, reaches a hub that is up whole, in order, with nothing dropped.
#[test]
fn a_burst_larger_than_a_slow_hub_takes_at_once_arrives_whole() {
    const BURST: usize = 30_000;
    let hub = StubHub::slow(Vec::new(), Duration::from_millis(20));
    let mut options = HubOptions::new(&hub.url, None);
    options.flush_deadline = Duration::from_secs(60);
    let progress = Progress::new([Target::hub(options)]);
    let run = progress.run("burst");
    for i in 0..BURST {
        run.warn(format!("m{i}"));
    }
    run.finish();
    let stats = progress.stats();
    drop(progress);

    assert_eq!(
        (stats.hub_dropped_milestones, stats.hub_dropped_ticks),
        (0, 0),
        "dropped while the hub was up"
    );
    let messages: Vec<String> = hub
        .appends()
        .iter()
        .flat_map(|(_, b)| b.as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect();
    let expected: Vec<String> = (0..BURST).map(|i| format!("m{i}")).collect();
    assert_eq!(messages.len(), BURST);
    assert!(messages == expected, "not every message, in order");
}
