//! `herald ls`, `herald events`, `herald cancel` and `herald rm` against a real hub.

use serde_json::{Value, json};

use crate::hubs::{Running, TestHub, run_within, stderr_of, stdout_events, wait_for};

#[test]
fn ls_prints_a_table_or_the_hubs_json() {
    let hub = TestHub::start();
    let a = hub.create(json!({"name": "first job"}));
    hub.append(
        &a,
        json!([
            {"event": "run.started", "name": "first job"},
            {"event": "progress", "done": 1, "total": 4, "elapsed_s": 1.0},
        ]),
    );
    let b = hub.create(json!({"name": "second job"}));
    hub.append(&b, json!([{"event": "run.finished", "status": "failed"}]));

    let out = run_within(hub.herald(&["ls"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let table = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    let header: Vec<&str> = lines[0]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        ["ID", "NAME", "STATUS", "PROGRESS", "ELAPSED", "LAST EVENT"]
    );
    // Newest first.
    assert!(lines[1].starts_with(&b.id) && lines[1].contains("second job  failed"));
    assert!(lines[2].starts_with(&a.id) && lines[2].contains("first job   running  25%"));

    let out = run_within(hub.herald(&["ls", "--json"]));
    let listing: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let ids: Vec<&str> = listing["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [b.id.as_str(), a.id.as_str()]);

    let out = run_within(hub.herald(&["ls", "--json", "--status", "failed"]));
    let listing: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listing["runs"].as_array().unwrap().len(), 1);
    assert_eq!(listing["runs"][0]["id"], json!(b.id));

    let out = run_within(hub.herald(&["ls", "--limit", "1"]));
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 2);

    let out = run_within(hub.herald(&["ls", "--limit", "0"]));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn events_pages_with_after_and_types() {
    let hub = TestHub::start();
    let run = hub.create(json!({"name": "agent"}));
    hub.append(
        &run,
        json!([
            {"event": "run.started", "name": "agent"},
            {"event": "tool.started", "call_id": "c1", "tool": "search"},
            {"event": "log", "level": "info", "message": "found 3"},
            {"event": "tool.finished", "call_id": "c1", "tool": "search", "status": "succeeded"},
            {"event": "run.finished", "status": "succeeded"},
        ]),
    );
    let seqs = |args: &[&str]| -> Vec<u64> {
        let mut all = vec!["events", run.id.as_str()];
        all.extend(args);
        let out = run_within(hub.herald(&all));
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr_of(&out));
        stdout_events(&out).iter().map(|e| e.seq).collect()
    };
    assert_eq!(seqs(&[]), [1, 2, 3, 4, 5]);
    assert_eq!(seqs(&["--after", "2"]), [3, 4, 5]);
    assert_eq!(seqs(&["--types", "tool.*"]), [2, 4]);
    assert_eq!(seqs(&["--types", "log,run.*", "--after", "1"]), [3, 5]);
    assert_eq!(
        seqs(&["--follow"]),
        [1, 2, 3, 4, 5],
        "a finished run ends --follow"
    );
    assert_eq!(seqs(&["--follow", "--types", "tool.*"]), [2, 4]);

    let out = run_within(hub.herald(&["events", &run.id, "--after", "9"]));
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("past the run's last event"), "{stderr}");

    let out = run_within(hub.herald(&["events", &run.id, "--types", "tool.**"]));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn events_follow_waits_for_the_end() {
    let hub = TestHub::start();
    let run = hub.create(json!({"name": "slow"}));
    hub.append(&run, json!([{"event": "run.started", "name": "slow"}]));
    let mut follow = Running::spawn(hub.herald(&["events", "--follow", "--types", "log", &run.id]));
    hub.append(
        &run,
        json!([{"event": "log", "level": "info", "message": "one"}]),
    );
    wait_for("the log line", || {
        follow.stdout_so_far().contains("\"one\"")
    });
    hub.append(
        &run,
        json!([
            {"event": "log", "level": "info", "message": "two"},
            {"event": "run.finished", "status": "succeeded"},
        ]),
    );
    let out = follow.finish();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let seqs: Vec<u64> = stdout_events(&out).iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [2, 3]);
}

#[test]
fn cancel_marks_the_run_and_rm_deletes_it() {
    let hub = TestHub::start();
    let run = hub.create(json!({"name": "doomed"}));
    hub.append(&run, json!([{"event": "run.started", "name": "doomed"}]));

    let out = run_within(hub.herald(&["cancel", &run.id, "--reason", "not needed"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), run.id);
    let state = hub.state(&run.id);
    assert_eq!(state["cancel_requested"], true);
    assert_eq!(state["cancel_reason"], "not needed");
    assert_eq!(state["status"], "running", "a cancel is advisory");

    let out = run_within(hub.herald(&["rm", &run.id]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let (status, _) = hub.get(&format!("/v1/runs/{}", run.id));
    assert_eq!(status, 404);

    for args in [vec!["rm", run.id.as_str()], vec!["cancel", run.id.as_str()]] {
        let out = run_within(hub.herald(&args));
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr.contains(&format!("no run {}", run.id)), "{stderr}");
    }
}
