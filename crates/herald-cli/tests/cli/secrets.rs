//! Tokens at rest and in logs: a hub stores each run token as its SHA-256 and never the
//! token itself, and a token passed as `?token=` never reaches its log, even at the
//! most verbose level.

use std::io::Read;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::hubs::DEADLINE;
use crate::sdk_hub::Served;

/// The admin token (at least 16 characters, as the hub requires).
const ADMIN: &str = "admin-token-for-the-secrets-test";
/// A message to find in the database file, to show the file holds the run.
const MARKER: &str = "a line to find in the database file";

/// Every byte of every file in `dir` (the database, its WAL and shared memory).
fn files_in(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    std::fs::read_dir(dir)
        .expect("the data directory")
        .map(|entry| {
            let path = entry.expect("an entry").path();
            let bytes = std::fs::read(&path).expect("a readable file");
            (path.display().to_string(), bytes)
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn run_tokens_are_stored_hashed_and_a_query_token_never_reaches_the_log() {
    let data = tempfile::tempdir().unwrap();
    let mut hub = Served::start(
        data.path(),
        &["--token", ADMIN],
        &[("HERALD_LOG", "trace")],
        Stdio::piped(),
    );
    let mut stderr = hub.take_stderr().expect("piped stderr");
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(DEADLINE))
        .build()
        .into();
    let url = hub.url.clone();
    let post = |path: &str, token: &str, body: Value| -> (u16, Value) {
        let mut res = agent
            .post(format!("{url}{path}"))
            .header("Authorization", format!("Bearer {token}"))
            .send_json(body)
            .expect("the hub answers");
        let status = res.status().as_u16();
        (status, res.body_mut().read_json().unwrap_or(Value::Null))
    };

    let (status, created) = post("/v1/runs", ADMIN, json!({"id": "secret", "name": "secret"}));
    assert_eq!(status, 201, "{created}");
    let write = created["write_token"].as_str().unwrap().to_owned();
    let read = created["read_token"].as_str().unwrap().to_owned();
    let events = json!([
        {"event": "log", "level": "info", "message": MARKER},
        {"event": "run.finished", "status": "succeeded"},
    ]);
    let (status, reply) = post("/v1/runs/secret/events", &write, events);
    assert_eq!(status, 200, "{reply}");

    // Every route a `?token=` may come to, with the read token, and with tokens it
    // must refuse there; streams of the finished run end by themselves.
    let unknown = format!("hr_{}", "0".repeat(64));
    let asks: [(String, u16); 11] = [
        (format!("/v1/runs/secret?token={read}"), 200),
        (format!("/v1/runs/secret/events?token={read}"), 200),
        (format!("/v1/runs/secret/events?after=x&token={read}"), 400),
        (format!("/v1/runs/secret/stream?token={read}"), 200),
        (
            format!("/v1/runs/secret/stream?view=state&token={read}"),
            200,
        ),
        (
            format!("/v1/runs/secret/stream?format=ag-ui&token={read}"),
            200,
        ),
        // Not an upgrade: refused after the token was checked.
        (format!("/v1/runs/secret/ws?token={read}"), 400),
        // The dashboard link a created run comes with.
        (format!("/runs/secret?token={read}"), 200),
        (format!("/v1/runs/secret/events?token={write}"), 401),
        (format!("/v1/runs/secret/events?token={ADMIN}"), 401),
        (format!("/v1/runs/secret/events?token={unknown}"), 401),
    ];
    for (path, expected) in &asks {
        let mut res = agent
            .get(format!("{url}{path}"))
            .call()
            .expect("the hub answers");
        let _ = res.body_mut().read_to_string();
        let what = path.split('?').next().unwrap_or_default();
        assert_eq!(res.status().as_u16(), *expected, "GET {what}");
    }

    // Stopped as an operator stops it, so that everything it would log is logged.
    let stopped = Command::new("kill")
        .args(["-TERM", &hub.pid().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    hub.wait();
    let log = log.join().expect("the log reader");

    // The log is on and verbose: the requests are in it, by path.
    assert!(
        log.contains("/v1/runs/secret/events") && log.contains("/v1/runs/secret/stream"),
        "the requests are not in the log:\n{log}"
    );
    let tokens = [
        ("read", read.as_str()),
        ("write", write.as_str()),
        ("admin", ADMIN),
        ("unknown", unknown.as_str()),
    ];
    for (what, token) in tokens {
        assert!(
            !log.contains(token),
            "the {what} token is in the log:\n{log}"
        );
    }
    assert!(
        !log.contains("token="),
        "a query string is in the log:\n{log}"
    );

    // At rest: the run's data is in the files, its tokens only as their SHA-256.
    let files = files_in(data.path());
    assert!(
        files.iter().any(|(_, bytes)| contains(bytes, MARKER)),
        "the run is not in {:?}",
        files.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    for (what, token) in tokens {
        for (path, bytes) in &files {
            assert!(
                !contains(bytes, token),
                "the {what} token is stored in {path}"
            );
        }
    }
    for (what, token) in [("read", &read), ("write", &write)] {
        let hash = format!("{:x}", Sha256::digest(token.as_bytes()));
        assert!(
            files.iter().any(|(_, bytes)| contains(bytes, &hash)),
            "the {what} token's hash is not stored"
        );
    }
}
