//! The SDK's hub sink through `herald demo --hub`: reporting survives the hub going
//! away for 30 s, and `demo --serve` runs a hub of its own.
//!
//! Every process here runs with a deadline and is killed past it.

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use herald_protocol::{Event, parse_event};
use serde_json::Value;

use crate::hubs::{Running, TestHub, cmd, run_within, stderr_of, wait_for};

/// A TCP relay on a loopback port that the test holds from its start to its end, to a
/// hub, or to none while the hub is down: it then closes each connection it takes at
/// once, as a hub that died leaves them. So a hub can come back on a port of its own
/// while its clients keep their address, which no other process can take meanwhile.
struct Relay {
    url: String,
    addr: SocketAddr,
    to: Arc<Mutex<Option<SocketAddr>>>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    fn start() -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port on loopback");
        let addr = listener.local_addr().expect("an address");
        let to = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        thread::spawn({
            let to = Arc::clone(&to);
            let stop = Arc::clone(&stop);
            move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    let hub = *to.lock().unwrap();
                    match hub.and_then(|hub| TcpStream::connect(hub).ok()) {
                        Some(upstream) => splice(client, upstream),
                        None => drop(client),
                    }
                }
            }
        });
        Relay {
            url: format!("http://{addr}"),
            addr,
            to,
            stop,
        }
    }

    /// Relays to `hub` from now on; to none if `None`.
    fn to(&self, hub: Option<&TestHub>) {
        let addr = hub.map(|hub| {
            let addr = hub.url.strip_prefix("http://").expect("an http URL");
            addr.parse().expect("an IP address and a port")
        });
        *self.to.lock().unwrap() = addr;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accepting thread, which then ends.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Copies bytes both ways between `client` and `upstream` until either side ends, then
/// ends both, as a direct connection to a hub that died would end.
fn splice(client: TcpStream, upstream: TcpStream) {
    let clone = |s: &TcpStream| s.try_clone().expect("a socket's clone");
    for (mut from, mut to) in [(clone(&client), clone(&upstream)), (upstream, client)] {
        thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        });
    }
}

/// Every event of `run` on the hub, paging through.
fn hub_events(hub: &TestHub, run: &str) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        let after = events.last().map_or(0, |e: &Event| e.seq);
        let (status, page) = hub.get(&format!("/v1/runs/{run}/events?after={after}&limit=1000"));
        assert_eq!(status, 200, "a page: {page}");
        let batch: Vec<Event> = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| parse_event(&e.to_string()).unwrap())
            .collect();
        if batch.is_empty() {
            return events;
        }
        events.extend(batch);
    }
}

/// The milestones of a stream in order, without the envelope's `seq`, `id` and `v`
/// (which differ between the local stream and the hub): what must reach the hub
/// exactly once whatever happened to it.
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

#[test]
fn every_milestone_arrives_once_and_in_order_across_a_30_second_outage() {
    let data = tempfile::tempdir().unwrap();
    let relay = Relay::start();
    let hub = TestHub::on_data_dir(data.path());
    relay.to(Some(&hub));
    let local = data.path().join("local.jsonl");

    // About a minute of work at this speed: the outage falls in its middle.
    let mut command = cmd(&[
        "demo",
        "--items",
        "40",
        "--speed",
        "0.3",
        "--progress",
        "none",
        "--hub",
        &relay.url,
    ]);
    command.arg("--progress-file").arg(&local);
    let mut demo = Running::spawn(command);

    // Wait until the hub has the run and some of its events.
    let mut run = None;
    wait_for("the run on the hub with 5 events", || {
        let (_, runs) = hub.get("/v1/runs");
        let first = runs["runs"].as_array().and_then(|r| r.first()).cloned();
        run = first
            .filter(|r| r["last_seq"].as_u64().unwrap_or(0) >= 5)
            .map(|r| r["id"].as_str().unwrap().to_owned());
        run.is_some()
    });
    let run = run.unwrap();

    // The hub goes away abruptly, stays away for 30 s (the outage the SDK must ride
    // out, not a wait for anything), and comes back on the same data, behind the same
    // address.
    relay.to(None);
    drop(hub);
    thread::sleep(Duration::from_secs(30));
    assert!(!demo.has_ended(), "the demo should outlast the outage");
    let hub = TestHub::on_data_dir(data.path());
    relay.to(Some(&hub));

    let out = demo.finish_within(Duration::from_secs(300));
    let stderr = stderr_of(&out);
    assert!(out.status.success(), "the work went on normally: {stderr}");
    assert!(!stderr.contains("missed"), "nothing was dropped: {stderr}");

    let local_events: Vec<Event> = std::fs::read_to_string(&local)
        .unwrap()
        .lines()
        .map(|l| parse_event(l).unwrap())
        .collect();
    let on_hub = hub_events(&hub, &run);
    let (expected, got) = (milestones(&local_events), milestones(&on_hub));
    assert!(
        expected.len() > 100,
        "a real run: {} milestones",
        expected.len()
    );
    if let Some(i) = (0..expected.len().max(got.len())).find(|&i| expected.get(i) != got.get(i)) {
        panic!(
            "milestone {i} of {} differs (hub has {}):\n emitted: {:?}\n on hub:  {:?}",
            expected.len(),
            got.len(),
            expected.get(i),
            got.get(i)
        );
    }
    let seqs: Vec<u64> = on_hub.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=on_hub.len() as u64).collect::<Vec<_>>(),
        "dense seq"
    );
    assert_eq!(on_hub.last().unwrap().event_type(), "run.finished");
}

#[test]
fn demo_serve_runs_a_hub_of_its_own_and_stores_the_run() {
    let data = tempfile::tempdir().unwrap();
    let mut command = cmd(&[
        "demo",
        "--serve",
        "--items",
        "5",
        "--speed",
        "200",
        "--progress",
        "none",
        "--json",
    ]);
    command.arg("--data-dir").arg(data.path());
    let out = run_within(command);
    let stderr = stderr_of(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("reports to the hub at http://127.0.0.1:"),
        "{stderr}"
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = result["run"].as_str().unwrap();
    // Where to follow it: the dashboard, and AG-UI front ends.
    for link in [
        format!("/runs/{run}"),
        format!("/v1/runs/{run}/stream?format=ag-ui"),
    ] {
        assert!(stderr.contains(&link), "no {link} in {stderr}");
    }

    // With stdin not a terminal it stops when the job is done; its data stays.
    let hub = TestHub::on_data_dir(data.path());
    let state = hub.state(run);
    assert_eq!(state["status"], "succeeded");
    assert_eq!(state["items"]["succeeded"], 15);
}

#[test]
fn demo_with_an_unreachable_hub_still_does_the_work() {
    let out = run_within(cmd(&[
        "demo",
        "--items",
        "3",
        "--speed",
        "200",
        "--progress",
        "none",
        "--hub",
        "http://127.0.0.1:1",
    ]));
    let stderr = stderr_of(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot report to the hub at http://127.0.0.1:1"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("cannot report").count(),
        1,
        "warned once: {stderr}"
    );
}

#[test]
fn bad_hub_settings_are_usage_errors() {
    let out = run_within(cmd(&["demo", "--hub", "127.0.0.1:7311"]));
    assert_eq!(out.status.code(), Some(2));
    let out = run_within(cmd(&["demo", "--serve", "--hub", "http://127.0.0.1:7311"]));
    assert_eq!(out.status.code(), Some(2));
}
