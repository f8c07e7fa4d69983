//! `hub-load` end to end at tiny scale (`--quick`): every part against a real hub
//! process, a real SQLite file and real SSE streams, so that the load generator cannot
//! rot. No timing is asserted: only that each part ran and that its counts add up (the
//! binary itself fails when they do not, and the table shows them).

use std::process::{Command, Output};

fn hub_load(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hub-load"))
        .args(args)
        .output()
        .expect("hub-load runs")
}

#[test]
fn every_part_runs_at_tiny_scale_and_its_counts_add_up() {
    let out = hub_load(&["--quick", "--h2c", "ingest", "fanout", "idle", "e2e"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Ingest: 2 producers, 50 events one per request and 400 in batches of 100, each
    // through both bare loops, the hub, and the hub over one HTTP/2 connection.
    for path in [
        "bare SQLite, rusqlite loop",
        "bare SQLite, sqlx loop with the hub's statements",
        "hub over HTTP, 2 connections",
        "hub over HTTP/2 (h2c), 2 producers on 1 connection",
    ] {
        for (batch, events) in [(1, 50), (100, 400)] {
            let row = format!("| {path} | {batch} | {events} |");
            assert!(stdout.contains(&row), "no `{row}` in:\n{stdout}");
        }
    }
    // Fan-out: 5 subscribers each received all 50 events, over SSE and over WebSockets.
    for transport in ["SSE", "WebSocket"] {
        let row = format!("\n| 1 hub, SQLite | 5 {transport} | 250 | ");
        assert!(stdout.contains(&row), "no `{row}` in:\n{stdout}");
    }
    // End to end: a row for each kind of call.
    for call in ["`item.fail()`", "`item.finish()`", "`stage.inc()`"] {
        let row = format!("\n| {call} ");
        assert!(stdout.contains(&row), "no `{row}` in:\n{stdout}");
    }
    // Idle: 10 streams were open at once, in the one round of `--quick`.
    assert!(stdout.contains("\n| 1 | 10 | "), "{stdout}");
    for target in [
        "batched ingest",
        "p99 publish-to-subscriber",
        "per idle stream",
        "returned after they close",
        "end to end under",
    ] {
        assert!(
            stdout.contains(target),
            "no target `{target}` in:\n{stdout}"
        );
    }
}

/// The PostgreSQL server's maintenance database, as in the hub's tests.
fn postgres_admin_url() -> String {
    std::env::var("HERALD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

#[test]
fn the_postgres_phases_run_at_tiny_scale_and_their_counts_add_up() {
    let url = postgres_admin_url();
    let out = hub_load(&["--quick", "--postgres", &url, "ingest", "fanout"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "hub-load --postgres needs the PostgreSQL server at {url} (user postgres, trust \
         auth; start it with `pg_ctlcluster 15 main start`, as `.ci/run` does, or point \
         HERALD_TEST_POSTGRES_URL at another).\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for path in [
        "hub over HTTP, 2 connections",
        "hub on PostgreSQL over HTTP, 2 connections",
        "2 hubs on one PostgreSQL over HTTP, 2 connections split between them",
    ] {
        for (batch, events) in [(1, 50), (100, 400)] {
            let row = format!("| {path} | {batch} | {events} |");
            assert!(stdout.contains(&row), "no `{row}` in:\n{stdout}");
        }
    }
    for setup in [
        "1 hub, SQLite",
        "1 hub, PostgreSQL",
        "2 hubs, PostgreSQL: append to A, subscribers on B",
    ] {
        let row = format!("\n| {setup} | 5 SSE | 250 | ");
        assert!(stdout.contains(&row), "no `{row}` in:\n{stdout}");
    }
}

#[test]
fn the_soak_runs_at_tiny_scale_on_sqlite_and_two_postgres_hubs_and_loses_nothing() {
    let url = postgres_admin_url();
    // Niced producers, so that the renicing is run too.
    let out = hub_load(&[
        "--quick",
        "--postgres",
        &url,
        "soak",
        "--soak-nice-producers",
        "19",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "hub-load soak --postgres needs the PostgreSQL server at {url}.\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 20 runs for 3 s at 10 events/s, with their `run.started` and `run.finished`:
    // each emitted, acknowledged and stored, none lost, none dropped, none left unstored.
    for backend in ["SQLite, 1 hub", "PostgreSQL, 2 hubs"] {
        let heading = format!(
            "**Soak, {backend}** (20 runs through the SDK's hub sink, one `Progress` each, in 2 processes at nice 19;"
        );
        let at = stdout
            .find(&heading)
            .unwrap_or_else(|| panic!("no `{heading}` in:\n{stdout}"));
        assert!(
            stdout[at..].contains("\n| 640 | 640 | 640 | 0 | 0 | 0 | "),
            "{backend}: not every event stored:\n{stdout}"
        );
        let lost =
            format!("- soak ({backend}): 0 acknowledged events lost: 0 lost of 640, **met**");
        assert!(stdout.contains(&lost), "no `{lost}` in:\n{stdout}");
    }
}

#[test]
fn usage_errors_exit_with_2() {
    for args in [
        &["--streams", "0"][..],
        &["--rate"],
        &["sideways"],
        &["--postgres", "mysql://localhost/x"],
        &["soak", "--soak-rate", "0"],
        &["--soak-runs", "none"],
        &["soak", "--soak-nice-producers", "20"],
    ] {
        let out = hub_load(args);
        assert_eq!(out.status.code(), Some(2), "hub-load {args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("usage: hub-load"),
            "hub-load {args:?}"
        );
    }
}
