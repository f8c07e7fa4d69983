//! The SDK's hub sink against a real hub (`herald serve`), called as a program calls
//! it rather than through a `herald` command: it creates the run, appends, finishes;
//! a batch whose reply was lost is stored once when the hub restarts; a cancel made
//! through the hub reaches `Run::cancel_requested` and `Run::cancellation`; and all of
//! it works from inside a tokio runtime, current-thread or multi-thread.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdout, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use herald::{HubOptions, MemorySink, Progress, RunOptions, Target};
use herald_protocol::{Event, RunId, parse_event};
use serde_json::{Value, json};

use crate::hubs::{DEADLINE, TestHub, cmd, wait_for};

/// `herald serve` on a free loopback port with its data in a directory the test owns,
/// so that it can be killed and started again on the same data.
pub(crate) struct Served {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    /// `http://127.0.0.1:PORT`.
    pub(crate) url: String,
}

impl Served {
    /// Starts it with `args` after `serve`, `env`, and stderr going to `stderr`.
    pub(crate) fn start(dir: &Path, args: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Served {
        let mut command = cmd(&["serve", "--addr", "127.0.0.1:0", "--data-dir"]);
        command.arg(dir).args(args).env("HERALD_LOG", "warn");
        command.envs(env.iter().copied());
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("herald serve starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let (tx, rx) = mpsc::channel();
        let reader = thread::spawn(move || {
            let mut line = String::new();
            let _ = stdout.read_line(&mut line);
            let _ = tx.send(line);
            stdout
        });
        let Ok(line) = rx.recv_timeout(DEADLINE) else {
            let _ = child.kill();
            panic!("herald serve said nothing for {DEADLINE:?}");
        };
        let url = line
            .trim()
            .strip_prefix("herald hub listening on ")
            .unwrap_or_else(|| panic!("herald serve did not say where it listens: {line:?}"))
            .to_owned();
        Served {
            child,
            _stdout: reader.join().expect("the reader thread"),
            url,
        }
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its stderr, when started with it piped.
    pub(crate) fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.stderr.take()
    }

    /// Waits for it to exit (after a signal the test sent), within [`DEADLINE`].
    pub(crate) fn wait(mut self) {
        let start = Instant::now();
        while self
            .child
            .try_wait()
            .expect("waiting for the hub")
            .is_none()
        {
            assert!(start.elapsed() < DEADLINE, "the hub did not stop");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every event of `run`, paging through; empty while the hub does not know it.
    pub(crate) fn events(&self, run: &str) -> Vec<Event> {
        events_at(&self.url, run, None)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every event of `run` on the hub at `url`, paging through, with `token` if given;
/// empty while the hub does not know the run.
fn events_at(url: &str, run: &str, token: Option<&str>) -> Vec<Event> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(DEADLINE))
        .build()
        .into();
    let mut events: Vec<Event> = Vec::new();
    loop {
        let after = events.last().map_or(0, |e| e.seq);
        let mut req = agent.get(format!(
            "{url}/v1/runs/{run}/events?after={after}&limit=1000"
        ));
        if let Some(token) = token {
            req = req.header("Authorization", format!("Bearer {token}"));
        }
        let mut res = req.call().expect("the hub answers");
        if res.status() == 404 {
            return events;
        }
        let page: Value = res.body_mut().read_json().expect("a page of events");
        let batch: Vec<Event> = page["events"]
            .as_array()
            .unwrap_or_else(|| panic!("not a page: {page}"))
            .iter()
            .map(|e| parse_event(&e.to_string()).expect("an event"))
            .collect();
        if batch.is_empty() {
            return events;
        }
        events.extend(batch);
    }
}

/// The milestones of a stream in order, without what differs between the SDK's local
/// stream and the hub's (`seq`, `id`, `v`).
fn milestones(events: &[Event]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.body.is_milestone())
        .map(|e| {
            let mut value = serde_json::to_value(e).unwrap();
            let map = value.as_object_mut().unwrap();
            for key in ["seq", "id", "v"] {
                map.shift_remove(key);
            }
            value
        })
        .collect()
}

/// Options for a run with a known id.
fn with_id(id: &str) -> RunOptions {
    RunOptions {
        id: Some(RunId::new(id).expect("a run id")),
        ..RunOptions::default()
    }
}

/// What the proxy shares between its connections and the test.
struct ProxyState {
    /// `127.0.0.1:PORT` of the hub requests go to.
    upstream: Mutex<String>,
    /// Lose the reply to the next append.
    lose_next_append: AtomicBool,
    /// The reply that was lost, when it was.
    lost: Mutex<mpsc::Sender<Value>>,
    /// The append replies passed on to the SDK, in order.
    replies: Mutex<Vec<Value>>,
}

/// An HTTP proxy between the SDK and a hub that can lose the reply to one append, as
/// when a hub dies after storing a batch and before answering it. Each request goes to
/// the hub the proxy points at on a connection of its own; a hub that cannot be
/// reached is a dropped connection, as it is to a client talking to it directly.
struct Proxy {
    url: String,
    state: Arc<ProxyState>,
    lost: mpsc::Receiver<Value>,
}

impl Proxy {
    fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let (tx, lost) = mpsc::channel();
        let state = Arc::new(ProxyState {
            upstream: Mutex::new(String::new()),
            lose_next_append: AtomicBool::new(false),
            lost: Mutex::new(tx),
            replies: Mutex::new(Vec::new()),
        });
        let proxy = Proxy { url, state, lost };
        proxy.point_at(upstream);
        let state = proxy.state.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let state = state.clone();
                thread::spawn(move || relay(client, &state));
            }
        });
        proxy
    }

    /// Sends requests to the hub at `url` from now on.
    fn point_at(&self, url: &str) {
        let addr = url.strip_prefix("http://").expect("an http URL");
        *self.state.upstream.lock().unwrap() = addr.to_owned();
    }
}

/// One HTTP/1.1 request as read from the client.
struct Request {
    method: String,
    path: String,
    /// The header lines, without `Connection`.
    headers: Vec<String>,
    body: Vec<u8>,
}

impl Request {
    fn is_append(&self) -> bool {
        self.method == "POST" && self.path.ends_with("/events")
    }
}

fn read_request(reader: &mut impl BufRead) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers = Vec::new();
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end().to_owned();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().ok()?;
        }
        if !name.eq_ignore_ascii_case("connection") {
            headers.push(header);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

/// Passes the requests of one client connection on, one at a time.
fn relay(client: TcpStream, state: &ProxyState) {
    let Ok(read_half) = client.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut client = client;
    while let Some(request) = read_request(&mut reader) {
        let upstream = state.upstream.lock().unwrap().clone();
        let Some(response) = forward(&upstream, &request) else {
            return;
        };
        if request.is_append() {
            let body = response
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(&response[..0], |i| &response[i + 4..]);
            let reply: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            if state.lose_next_append.swap(false, Ordering::SeqCst) {
                // Stored by the hub, never answered: the client sees the connection
                // close, as if the hub had died there.
                let _ = state.lost.lock().unwrap().send(reply);
                return;
            }
            state.replies.lock().unwrap().push(reply);
        }
        if client.write_all(&response).is_err() {
            return;
        }
    }
}

/// Sends `request` to the hub at `addr` and reads its whole response.
fn forward(addr: &str, request: &Request) -> Option<Vec<u8>> {
    let mut hub = TcpStream::connect(addr).ok()?;
    hub.set_read_timeout(Some(DEADLINE)).ok()?;
    let mut head = format!("{} {} HTTP/1.1\r\n", request.method, request.path);
    for header in &request.headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    // One request per connection: the response ends where the connection does.
    head.push_str("Connection: close\r\n\r\n");
    hub.write_all(head.as_bytes()).ok()?;
    hub.write_all(&request.body).ok()?;
    let mut response = Vec::new();
    hub.read_to_end(&mut response).ok()?;
    (!response.is_empty()).then_some(response)
}

#[test]
fn a_batch_whose_reply_was_lost_is_stored_once_when_the_restarted_hub_gets_it_again() {
    let data = tempfile::tempdir().unwrap();
    let hub = Served::start(data.path(), &[], &[], Stdio::null());
    let proxy = Proxy::start(&hub.url);
    let local = MemorySink::new();
    let progress = Progress::new([
        Target::hub(HubOptions::new(&proxy.url, None)),
        Target::memory(&local),
    ]);
    let run = progress.run_with("restarted", with_id("sdk-restart"));
    let stage = run.stage("work").total(6);
    stage.item("1").finish();

    // Created and appended to.
    wait_for("the first item on the hub", || {
        hub.events("sdk-restart")
            .iter()
            .any(|e| e.event_type() == "item.finished")
    });

    // The hub stores the next batch, and dies before its answer reaches the SDK.
    proxy.state.lose_next_append.store(true, Ordering::SeqCst);
    stage.item("2").finish();
    run.warn("the reply to this batch is lost");
    let lost = proxy
        .lost
        .recv_timeout(DEADLINE)
        .expect("an append whose reply was lost");
    assert!(
        lost["appended"].as_u64().is_some_and(|n| n >= 1),
        "the hub stored the batch: {lost}"
    );
    drop(hub);
    let hub = Served::start(data.path(), &[], &[], Stdio::null());
    proxy.point_at(&hub.url);

    // The work goes on meanwhile; the SDK sends the lost batch again, then the rest.
    for item in 3..=6 {
        stage.item(item.to_string()).finish();
    }
    stage.finish();
    wait_for("the restarted hub to have the stage's end", || {
        hub.events("sdk-restart")
            .iter()
            .any(|e| e.event_type() == "stage.finished")
    });
    run.finish();
    drop(progress);

    let on_hub = hub.events("sdk-restart");
    let seqs: Vec<u64> = on_hub.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=on_hub.len() as u64).collect::<Vec<_>>(),
        "dense seq"
    );
    let (expected, got) = (milestones(&local.events()), milestones(&on_hub));
    assert_eq!(got, expected, "every milestone once, in order");
    let lost_warnings = on_hub
        .iter()
        .filter(|e| {
            serde_json::to_value(e).unwrap()["message"] == "the reply to this batch is lost"
        })
        .count();
    assert_eq!(lost_warnings, 1, "stored once");
    let mut ids: Vec<&str> = on_hub.iter().filter_map(|e| e.id.as_deref()).collect();
    assert_eq!(
        ids.len(),
        on_hub.len(),
        "every event carries an idempotency id"
    );
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), on_hub.len(), "no id stored twice");
    // The batch sent again was acknowledged as duplicates, not stored again.
    let replies = proxy.state.replies.lock().unwrap().clone();
    assert!(
        replies
            .iter()
            .any(|r| r["duplicates"].as_u64().is_some_and(|n| n >= 1)),
        "no append was answered with duplicates: {replies:?}"
    );
    assert_eq!(on_hub.last().map(Event::event_type), Some("run.finished"));
}

#[test]
fn the_sdk_sees_a_cancel_requested_through_the_hub() {
    let hub = TestHub::start();
    let progress = Progress::new([Target::hub(HubOptions::new(&hub.url, None))]);
    let run = progress.run_with("cancellable", with_id("sdk-cancel"));
    // The guard's heartbeats are the appends whose replies carry the request.
    let beats = run.heartbeat_every(Duration::from_millis(50));
    wait_for("heartbeats on the hub", || {
        events_at(&hub.url, "sdk-cancel", None)
            .iter()
            .any(|e| e.event_type() == "heartbeat")
    });
    let cancellation = run.cancellation();
    assert!(!run.cancel_requested(), "nobody asked yet");
    assert!(!cancellation.wait_timeout(Duration::from_millis(10)));

    let (status, reply) = hub.post(
        "/v1/runs/sdk-cancel/cancel",
        None,
        &json!({"reason": "enough"}),
    );
    assert_eq!(status, 200, "{reply}");
    assert!(
        cancellation.wait_timeout(DEADLINE),
        "the cancel did not reach the program within {DEADLINE:?}"
    );
    assert!(run.cancel_requested());
    assert!(run.cancellation().is_requested(), "every handle sees it");
    drop(beats);
    run.cancelled(Some("stopped on request"));
    drop(progress);

    let state = hub.state("sdk-cancel");
    assert_eq!(state["status"], "cancelled", "{state}");
    assert_eq!(state["cancel_reason"], "enough", "{state}");
}

/// Reports a run from async code, sees a cancel by `.await`, and finishes: what a
/// program inside a tokio runtime does. The test's own calls to the hub block the
/// thread for a moment, which the SDK (plain threads inside) does not mind.
async fn report_from_async(id: &str) {
    let hub = TestHub::start();
    let progress = Progress::new([Target::hub(HubOptions::new(&hub.url, None))]);
    let run = progress.run_with("async", with_id(id));
    let stage = run.stage("work").total(5);
    for _ in stage.iter(0..5) {
        tokio::task::yield_now().await;
    }
    stage.finish();
    let beats = run.heartbeat_every(Duration::from_millis(50));
    let start = Instant::now();
    while events_at(&hub.url, id, None).len() < 2 {
        assert!(start.elapsed() < DEADLINE, "the run never reached the hub");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, reply) = hub.post(&format!("/v1/runs/{id}/cancel"), None, &json!({}));
    assert_eq!(status, 200, "{reply}");
    tokio::time::timeout(DEADLINE, run.cancellation())
        .await
        .expect("the cancel reached the program");
    drop(beats);
    let finishing = Instant::now();
    run.cancelled(Some("stopped on request"));
    // Delivered by the flush, not given up at its deadline.
    assert!(
        finishing.elapsed() < Duration::from_secs(5),
        "finishing took {:?}",
        finishing.elapsed()
    );
    drop(progress);

    let state = hub.state(id);
    assert_eq!(state["status"], "cancelled", "{state}");
    assert_eq!(state["items"]["succeeded"], 5, "{state}");
    assert_eq!(
        state["last_error"]["message"], "stopped on request",
        "{state}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn the_sdk_reports_and_awaits_a_cancel_inside_a_current_thread_runtime() {
    report_from_async("sdk-current-thread").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_reports_and_awaits_a_cancel_inside_a_multi_thread_runtime() {
    // On a worker thread, as a spawned task of a server would.
    tokio::spawn(report_from_async("sdk-multi-thread"))
        .await
        .expect("the task ran to its end");
}
