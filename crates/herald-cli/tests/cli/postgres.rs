//! `herald serve --db postgres://...` as real processes on a real PostgreSQL: two hubs
//! on one database serve the same runs (an event appended through one reaches a
//! subscriber of the other, in order), concurrent appends through both keep `seq`
//! dense, SIGKILL loses no acknowledged event, a database that cannot be opened is
//! named, and `herald emit` waits for a database that is away only when sending again
//! cannot store an event twice.
//!
//! Each test creates a database of its own on the server at `127.0.0.1:5432` (user
//! `postgres`, trust auth; `HERALD_TEST_POSTGRES_URL` names another server's
//! maintenance database) with the `psql` client, and drops it at the end. When the
//! server cannot be reached the test fails, saying how to start it: CI (`.ci/run`)
//! starts it.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::Command;
use std::time::Instant;

use herald_protocol::{Event, parse_event};
use herald_testkit::pg;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::hubs::{Running, cmd, stderr_of, stdout_events, wait_for};
use crate::serve::{
    DEADLINE, HubProcess, all_events, call, check_sigkill_loses_nothing, create_run, http_client,
    logs, run_to_end, serve,
};

/// The server's maintenance database, which the tests connect to to create theirs.
fn admin_url() -> String {
    pg::admin_url()
}

/// Runs `sql` on the maintenance database with `psql`; its error output on failure.
fn psql(sql: &str) -> Result<(), String> {
    let out = Command::new("psql")
        .arg(admin_url())
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .map_err(|e| format!("cannot run psql (the PostgreSQL client): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// A fresh database for one test, dropped (with whatever still connects to it) when
/// the test ends.
struct TestDatabase {
    db: pg::TempDatabase,
    name: String,
    /// `postgres://.../NAME`, for `--db`.
    url: String,
    /// Where the hubs' logs go.
    logs: tempfile::TempDir,
}

impl TestDatabase {
    fn create() -> TestDatabase {
        let db = pg::TempDatabase::create_blocking("herald_cli_test", None)
            .unwrap_or_else(|e| panic!("{e}"));
        TestDatabase {
            name: db.name().to_owned(),
            url: db.url().to_owned(),
            db,
            logs: tempfile::tempdir().expect("a temp dir"),
        }
    }

    /// A `herald serve --db URL` process on this database; `name` names its log.
    fn hub(&self, name: &str) -> HubProcess {
        HubProcess::launch(
            &["--addr", "127.0.0.1:0", "--db", &self.url],
            &self.log(name),
        )
    }

    fn log(&self, name: &str) -> std::path::PathBuf {
        self.logs.path().join(format!("{name}.log"))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Not a panic: this may run while a failed test unwinds.
        if let Err(e) = self.db.drop_blocking() {
            eprintln!("warning: {e}");
        }
    }
}

/// Creates run `id` through the hub at `url`.
fn create_named(url: &str, id: &str) {
    create_run(&http_client(), url, None, &json!({"id": id, "name": id}));
}

/// Appends `events` to run `id` through the hub at `url`; the reply's `last_seq`.
fn append(client: &reqwest::blocking::Client, url: &str, id: &str, events: &Value) -> u64 {
    let (status, reply) = call(
        client,
        reqwest::Method::POST,
        &format!("{url}/v1/runs/{id}/events"),
        None,
        Some(events),
    )
    .expect("the hub answers");
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply["last_seq"].as_u64().expect("last_seq")
}

/// Reads an SSE stream to its end: its events, with each message's `id` checked
/// against the event's `seq`.
fn read_stream(response: reqwest::blocking::Response) -> Vec<Event> {
    let mut events = Vec::new();
    let mut id = None;
    for line in BufReader::new(response).lines() {
        let line = line.expect("the stream reads to its end within the deadline");
        if let Some(value) = line.strip_prefix("id: ") {
            id = Some(value.parse::<u64>().expect("a numeric id"));
        } else if let Some(data) = line.strip_prefix("data: ") {
            let event = parse_event(data).expect("an event");
            assert_eq!(id, Some(event.seq), "the SSE id is the event's seq");
            events.push(event);
        }
    }
    events
}

fn messages(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| e.id.clone())
        .collect::<Vec<_>>()
}

#[test]
fn events_appended_through_one_hub_reach_subscribers_of_the_other_in_order() {
    let db = TestDatabase::create();
    let a = db.hub("a");
    // Hub B takes its database from the environment, as a deployment would.
    let b = HubProcess::spawn(
        {
            let mut cmd = serve(&["--addr", "127.0.0.1:0"]);
            cmd.env("HERALD_DATABASE_URL", &db.url);
            cmd
        },
        &db.log("b"),
    );
    create_named(&a.url, "across");

    // The stream is open (the hub subscribes before it answers) before any append.
    let stream_client = reqwest::blocking::Client::builder()
        .timeout(DEADLINE)
        .build()
        .expect("an HTTP client");
    let response = stream_client
        .get(format!("{}/v1/runs/across/stream", b.url))
        .send()
        .expect("hub B answers");
    assert_eq!(response.status(), StatusCode::OK);
    let subscriber = std::thread::spawn(move || read_stream(response));
    let watch = Running::spawn({
        let mut cmd = crate::hubs::cmd(&["watch", "across", "--hub", &b.url]);
        cmd.env_remove("HERALD_URL");
        cmd
    });

    // One event per request, then batches, as a producer's SDK sends them.
    let client = http_client();
    let mut sent = Vec::new();
    for i in 0..30 {
        let batch = logs(&format!("single-{i}-"), 1);
        sent.push(format!("single-{i}-0"));
        append(&client, &a.url, "across", &batch);
    }
    for i in 0..10 {
        let batch = logs(&format!("batch-{i}-"), 20);
        sent.extend((0..20).map(|j| format!("batch-{i}-{j}")));
        append(&client, &a.url, "across", &batch);
    }
    let last = append(
        &client,
        &a.url,
        "across",
        &json!([{"event": "run.finished", "status": "succeeded", "id": "finished"}]),
    );
    sent.push("finished".to_owned());
    assert_eq!(last, sent.len() as u64);

    let events = subscriber.join().expect("the subscriber read its stream");
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=last).collect::<Vec<_>>(),
        "every event once, in order, and the stream ended after run.finished"
    );
    assert_eq!(
        messages(&events),
        sent,
        "in the order hub A acknowledged them"
    );
    assert_eq!(events.last().map(Event::event_type), Some("run.finished"));

    let out = watch.finish();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "watch on hub B: {stderr}");
    let watched = stdout_events(&out);
    assert_eq!(messages(&watched), sent, "herald watch on hub B");

    // And hub B's poll route agrees with hub A's.
    assert_eq!(
        all_events(&client, &b.url, "across", None),
        all_events(&client, &a.url, "across", None)
    );
    assert!(a.terminate().success());
    assert!(b.terminate().success());
}

#[test]
fn concurrent_appends_through_both_hubs_keep_seq_dense() {
    const WRITERS_PER_HUB: usize = 2;
    const BATCHES: usize = 40;
    const PER_BATCH: usize = 3;
    let db = TestDatabase::create();
    let hubs = [db.hub("a"), db.hub("b")];
    create_named(&hubs[0].url, "shared");

    let started = Instant::now();
    // Each writer's requests go to one hub, as a keep-alive connection through a load
    // balancer does; the writers of both hubs append to the same run at once.
    let writers: Vec<_> = (0..2 * WRITERS_PER_HUB)
        .map(|w| {
            let url = hubs[w % 2].url.clone();
            std::thread::spawn(move || {
                let client = http_client();
                let mut acks = Vec::new();
                for b in 0..BATCHES {
                    let last_seq = append(
                        &client,
                        &url,
                        "shared",
                        &logs(&format!("w{w}-b{b}-"), PER_BATCH),
                    );
                    acks.push((b, last_seq));
                    assert!(started.elapsed() < 4 * DEADLINE, "writer {w} over time");
                }
                acks
            })
        })
        .collect();
    let acks: Vec<Vec<(usize, u64)>> = writers
        .into_iter()
        .map(|w| w.join().expect("a writer ran"))
        .collect();

    let client = http_client();
    let events = all_events(&client, &hubs[1].url, "shared", None);
    let total = 2 * WRITERS_PER_HUB * BATCHES * PER_BATCH;
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=total as u64).collect::<Vec<_>>(),
        "seq is dense, with no gap or repeat"
    );
    let ids = messages(&events);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        total,
        "each id once"
    );
    for (w, acks) in acks.iter().enumerate() {
        let mut previous = 0;
        for &(b, last_seq) in acks {
            assert!(
                last_seq > previous,
                "writer {w}'s batches in the order it sent them"
            );
            previous = last_seq;
            let at = last_seq as usize;
            let expected: Vec<String> = (0..PER_BATCH).map(|i| format!("w{w}-b{b}-{i}")).collect();
            assert_eq!(
                ids[at - PER_BATCH..at],
                expected,
                "writer {w}'s batch {b}, acknowledged at seq {last_seq}, is whole and there"
            );
        }
    }
    assert_eq!(
        all_events(&client, &hubs[0].url, "shared", None),
        events,
        "both hubs serve the same events"
    );
    let state = call(
        &client,
        reqwest::Method::GET,
        &format!("{}/v1/runs/shared", hubs[0].url),
        None,
        None,
    )
    .expect("the hub answers")
    .1;
    assert_eq!(state["last_seq"], total, "{state}");
}

#[test]
fn sigkill_during_appends_on_postgres_loses_no_acknowledged_event() {
    let db = TestDatabase::create();
    check_sigkill_loses_nothing(|| db.hub("crash"));
}

#[test]
fn a_database_that_cannot_be_opened_is_named() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("postgres://herald:hunter2@127.0.0.1:{port}/herald_nowhere");
    check_unopenable(&url, &format!("127.0.0.1:{port}/herald_nowhere"));

    // A server that answers, without the database.
    let db = TestDatabase::create();
    let missing = format!("{}_missing", db.name);
    check_unopenable(&pg::with_database(&admin_url(), &missing), &missing);
}

#[track_caller]
fn check_unopenable(url: &str, named: &str) {
    let out = run_to_end(
        serve(&["--addr", "127.0.0.1:0", "--db", url]),
        "herald serve on a database it cannot open",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(out.stdout.is_empty(), "it never listened");
    assert!(stderr.contains(named), "`{named}` is not named: {stderr}");
    assert!(
        !stderr.contains("hunter2"),
        "the password is shown: {stderr}"
    );
}

/// The one value `sql` selects on the maintenance database, as text.
fn psql_value(sql: &str) -> String {
    let out = Command::new("psql")
        .arg(admin_url())
        .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn emit_waits_for_a_database_that_is_away_only_when_sending_again_is_safe() {
    let db = TestDatabase::create();
    let hub = db.hub("a");
    create_named(&hub.url, "away");
    // The database goes away: no connection of the hub's is left, and none let in.
    psql(&format!(
        "ALTER DATABASE \"{}\" ALLOW_CONNECTIONS false",
        db.name
    ))
    .expect("ALTER DATABASE runs");
    let connected = format!(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = '{}' \
         AND application_name LIKE 'herald%'",
        db.name
    );
    psql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' \
         AND application_name LIKE 'herald%'",
        db.name
    ))
    .expect("pg_terminate_backend runs");
    wait_for("the hub's connections to be gone", || {
        psql_value(&connected) == "0"
    });
    let unreachable = || {
        std::fs::read_to_string(db.log("a"))
            .unwrap_or_default()
            .matches("the database is unreachable")
            .count()
    };
    let emit = |flags: &[&str], message: &str| {
        let mut command = cmd(&["emit", "--hub", &hub.url, "--run", "away"]);
        command
            .args(flags)
            .args(["log", "level=info", &format!("message={message}")]);
        command
    };

    // Without an id, a 503 could hide a commit that happened: emit fails at once,
    // after one attempt, rather than risk storing the event twice.
    let out = Running::spawn(emit(&[], "no id")).finish();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("503"), "{stderr}");
    assert_eq!(unreachable(), 1, "one attempt");

    // With one, it waits, and is taken once the database is back.
    let waiting = Running::spawn(emit(&["--id", "safe"], "with an id"));
    wait_for("the emit with an id to be refused", || unreachable() >= 2);
    psql(&format!(
        "ALTER DATABASE \"{}\" ALLOW_CONNECTIONS true",
        db.name
    ))
    .expect("ALTER DATABASE runs");
    let out = waiting.finish();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let events = all_events(&http_client(), &hub.url, "away", None);
    let ids: Vec<Option<&str>> = events.iter().map(|e| e.id.as_deref()).collect();
    assert_eq!(
        ids,
        [Some("safe")],
        "stored once, and the one without an id not at all"
    );
}
