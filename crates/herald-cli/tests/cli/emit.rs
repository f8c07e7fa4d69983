//! `herald emit`: events from a shell script, checked before anything is sent.

use std::io::Write;
use std::process::Stdio;

use herald_protocol::{EventBody, Timestamp};
use serde_json::json;

use crate::hubs::{DEADLINE, Running, TestHub, cmd, run_within, stderr_of};

#[test]
fn mistakes_are_named_with_exit_code_2_before_any_network_call() {
    // Nothing listens on port 1: a command that tried the network would say so.
    let cases: &[(&[&str], &str)] = &[
        (
            &["log", "level=info", "message=hi"],
            "no run to report into",
        ),
        (
            &["--run", "r1", "progress", "done=many"],
            "`progress` field `done`",
        ),
        (
            &["--run", "r1", "log", "level=info"],
            "`log` needs field `message`",
        ),
        (
            &["--run", "r1", "log", "level=loud", "message=x"],
            "field `level`",
        ),
        (&["--run", "r1", "deploy"], "unknown event type `deploy`"),
        (
            &["--run", "r1", "log", "message"],
            "`message` is not a field",
        ),
        (&["--run", "r1", "{\"event\":\"log\""], "not valid JSON"),
        (
            &["--run", "bad run id", "log"],
            "invalid value 'bad run id'",
        ),
    ];
    for (args, needle) in cases {
        let mut command = cmd(&["emit", "--hub", "http://127.0.0.1:1"]);
        command.args(*args);
        let out = run_within(command);
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?}: `{stderr}` lacks `{needle}`"
        );
        assert!(!stderr.contains("cannot reach"), "{args:?}: {stderr}");
    }
}

#[test]
fn events_reach_the_run_with_the_types_they_need() {
    let hub = TestHub::start();
    let run = hub.create(json!({"name": "script"}));
    let emit = |args: &[&str]| {
        let mut command = hub.herald(&["emit", "--token", &run.write_token]);
        command.env("HERALD_RUN", &run.id).args(args);
        let out = run_within(command);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr_of(&out));
        assert!(out.stdout.is_empty());
    };
    emit(&["run.started", "name=script"]);
    emit(&["stage.started", "stage=fetch", "total=2"]);
    emit(&["progress", "stage=fetch", "done=1", "total=2"]);
    emit(&["custom.deploy", "version=1.10", "canary:=true"]);
    emit(&[
        "--id",
        "once",
        r#"{"event": "log", "level": "warn", "message": "disk 90% full"}"#,
    ]);
    emit(&[
        "--id",
        "once",
        r#"{"event": "log", "level": "warn", "message": "disk 90% full"}"#,
    ]);

    let mut command = hub.herald(&["emit", "--run", &run.id, "--token", &run.write_token, "-"]);
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"event\":\"stage.finished\",\"stage\":\"fetch\",\"status\":\"succeeded\"}\n\n{\"event\":\"run.finished\",\"status\":\"succeeded\"}\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));

    let events = hub.events(&run.id);
    let types: Vec<&str> = events.iter().map(|e| e.event_type()).collect();
    assert_eq!(
        types,
        [
            "run.started",
            "stage.started",
            "progress",
            "custom.deploy",
            "log",
            "stage.finished",
            "run.finished"
        ],
        "the event sent twice with one --id is stored once"
    );
    match &events[2].body {
        EventBody::Progress(p) => {
            assert_eq!((p.done, p.total), (1, Some(2)));
            assert!(p.elapsed_s >= 0.0);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        serde_json::to_value(&events[3]).unwrap()["canary"],
        json!(true)
    );
    assert_eq!(
        serde_json::to_value(&events[3]).unwrap()["version"],
        json!("1.10"),
        "text stays text where any type will do"
    );
    assert_eq!(hub.state(&run.id)["status"], "succeeded");
}

#[test]
fn a_tool_s_progress_from_a_script_counts_the_tool_s_time() {
    let hub = TestHub::start();
    let run = hub.create(json!({"name": "script"}));
    // The run began ten minutes ago, its tool call a minute ago.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let ago = |secs: i64| json!(Timestamp::from_unix_micros(now - secs * 1_000_000));
    hub.append(
        &run,
        json!([
            {"event": "run.started", "name": "script", "ts": ago(600)},
            {"event": "tool.started", "call_id": "t1", "tool": "crawl", "ts": ago(60)},
        ]),
    );
    let mut command = hub.herald(&["emit", "--token", &run.write_token]);
    command.env("HERALD_RUN", &run.id).args([
        "progress",
        "call_id=t1",
        "done=3",
        "total=12",
        "message=Page 3 of 12",
    ]);
    let out = run_within(command);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));

    let events = hub.events(&run.id);
    let Some(EventBody::Progress(p)) = events.last().map(|e| &e.body) else {
        panic!("{events:?}");
    };
    assert_eq!(p.call_id.as_deref(), Some("t1"));
    assert_eq!(p.message.as_deref(), Some("Page 3 of 12"));
    assert!((60.0..300.0).contains(&p.elapsed_s), "{}", p.elapsed_s);
    let state = hub.state(&run.id);
    assert_eq!(state["tools"]["in_flight"][0]["progress"]["percent"], 25.0);
}

#[test]
fn a_refusal_of_the_hub_is_shown() {
    let hub = TestHub::start();
    let run = hub.create(json!({"name": "done"}));
    hub.append(
        &run,
        json!([{"event": "run.finished", "status": "succeeded"}]),
    );
    let out = run_within(hub.herald(&[
        "emit",
        "--run",
        &run.id,
        "log",
        "level=info",
        "message=late",
    ]));
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("has finished and takes no more events"),
        "{stderr}"
    );
}

#[test]
fn emit_waits_out_the_hub_s_rate_limit_instead_of_failing() {
    // One event every 5 s, in bursts of one. The test appends two events at once (a
    // batch over the burst is taken from a full bucket, which it leaves two events
    // short), so for the next 10 s, far longer than `herald emit` takes to start even
    // on a busy machine, the emit is refused with 429 and Retry-After, waits, and is
    // taken.
    let hub = TestHub::with_flags(&["--rate-limit", "0.2"]);
    let run = hub.create(json!({"name": "slow script"}));
    let log = |message: &str| json!({"event": "log", "level": "info", "message": message});
    hub.append(&run, json!([log("first"), log("second")]));
    let out = Running::spawn(hub.herald(&[
        "emit",
        "--run",
        &run.id,
        "--token",
        &run.write_token,
        "log",
        "level=info",
        "message=third",
    ]))
    .finish_within(3 * DEADLINE);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let messages: Vec<String> = hub
        .events(&run.id)
        .into_iter()
        .filter_map(|e| match e.body {
            EventBody::Log(log) => Some(log.message),
            _ => None,
        })
        .collect();
    assert_eq!(messages, ["first", "second", "third"]);
    let metrics = ureq::get(format!("{}/metrics", hub.url))
        .call()
        .expect("the hub answers")
        .body_mut()
        .read_to_string()
        .expect("a body");
    assert!(
        metrics.contains("herald_appends_rate_limited_total 1"),
        "the emit was refused once: {metrics}"
    );
}
