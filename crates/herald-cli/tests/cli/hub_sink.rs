//! The SDK's hub sink through `herald demo --hub`: reporting survives the hub going
//! away for 30 s, and `demo --serve` runs a hub of its own.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use herald_protocol::{Event, parse_event};
use serde_json::Value;

use crate::hubs::cmd;

/// A free loopback port, so that a hub can be restarted at the same address.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `herald serve` on `port` with its data in `dir`, once it says it listens.
fn start_hub(port: u16, dir: &Path) -> Child {
    let mut child = cmd(&[
        "serve",
        "--addr",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
    ])
    .arg(dir)
    .env("HERALD_LOG", "warn")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("herald serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("listening on"), "herald serve said {line:?}");
    child
}

fn get(url: &str) -> Option<Value> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    agent.get(url).call().ok()?.body_mut().read_json().ok()
}

/// Every event of `run` on the hub, paging through.
fn hub_events(url: &str, run: &str) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        let after = events.last().map_or(0, |e: &Event| e.seq);
        let page = get(&format!(
            "{url}/v1/runs/{run}/events?after={after}&limit=1000"
        ))
        .expect("a page");
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
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut hub = start_hub(port, data.path());
    let local = data.path().join("local.jsonl");

    // About a minute of work at this speed: the outage falls in its middle.
    let mut demo = cmd(&[
        "demo",
        "--items",
        "40",
        "--speed",
        "0.3",
        "--progress",
        "none",
        "--hub",
        &url,
    ])
    .arg("--progress-file")
    .arg(&local)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();

    // Wait until the hub has the run and some of its events.
    let started = Instant::now();
    let run = loop {
        let runs = get(&format!("{url}/v1/runs")).unwrap_or_default();
        let first = runs["runs"].as_array().and_then(|r| r.first()).cloned();
        if let Some(run) = first.filter(|r| r["last_seq"].as_u64().unwrap_or(0) >= 5) {
            break run["id"].as_str().unwrap().to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the run never reached the hub"
        );
        std::thread::sleep(Duration::from_millis(50));
    };

    // The hub goes away abruptly, stays away for 30 s, and comes back.
    hub.kill().unwrap();
    hub.wait().unwrap();
    std::thread::sleep(Duration::from_secs(30));
    assert!(
        demo.try_wait().unwrap().is_none(),
        "the demo should outlast the outage"
    );
    let mut hub = start_hub(port, data.path());

    let status = demo.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut demo.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "the work went on normally: {stderr}");
    assert!(!stderr.contains("missed"), "nothing was dropped: {stderr}");

    let local_events: Vec<Event> = std::fs::read_to_string(&local)
        .unwrap()
        .lines()
        .map(|l| parse_event(l).unwrap())
        .collect();
    let on_hub = hub_events(&url, &run);
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
    hub.kill().unwrap();
    hub.wait().unwrap();
}

#[test]
fn demo_serve_runs_a_hub_of_its_own_and_stores_the_run() {
    let data = tempfile::tempdir().unwrap();
    let out = cmd(&[
        "demo",
        "--serve",
        "--items",
        "5",
        "--speed",
        "200",
        "--progress",
        "none",
        "--json",
    ])
    .arg("--data-dir")
    .arg(data.path())
    .stdin(Stdio::null())
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
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
    let port = free_port();
    let mut hub = start_hub(port, data.path());
    let state = get(&format!("http://127.0.0.1:{port}/v1/runs/{run}")).expect("the run is stored");
    assert_eq!(state["status"], "succeeded");
    assert_eq!(state["items"]["succeeded"], 15);
    hub.kill().unwrap();
    hub.wait().unwrap();
}

#[test]
fn demo_with_an_unreachable_hub_still_does_the_work() {
    let out = cmd(&[
        "demo",
        "--items",
        "3",
        "--speed",
        "200",
        "--progress",
        "none",
        "--hub",
        "http://127.0.0.1:1",
    ])
    .stdin(Stdio::null())
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
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
    let out = cmd(&["demo", "--hub", "127.0.0.1:7311"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = cmd(&["demo", "--serve", "--hub", "http://127.0.0.1:7311"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
