//! The AG-UI encoder on scripted runs, and on any run: a property test checks every
//! stream against the ordering rules AG-UI's client enforces (`verifyEvents` in
//! `@ag-ui/client` 1.0). The client itself is run against a live hub in the hub's
//! integration tests (`tests/hub/agui.rs`).

use std::collections::HashSet;

use herald_protocol::{Event, RunId, Timestamp, parse_event};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::{Cut, Encoder};

fn run_id() -> RunId {
    RunId::new("r1").expect("a valid run id")
}

/// `bodies` as the events of run `r1`, `seq` from 1, a second apart.
fn events(bodies: &[Value]) -> Vec<Event> {
    bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let mut event = body.clone();
            event["v"] = json!(1);
            event["run"] = json!("r1");
            event["seq"] = json!(i + 1);
            let ts = Timestamp::from_unix_micros(1_700_000_000_000_000 + i as i64 * 1_000_000);
            event["ts"] = json!(ts);
            parse_event(&event.to_string()).unwrap_or_else(|e| panic!("{body}: {e}"))
        })
        .collect()
}

/// The AG-UI events that `bodies` become, as JSON, on a run with `parent`.
fn encode(parent: Option<&str>, bodies: &[Value]) -> Vec<Value> {
    let parent = parent.map(|p| RunId::new(p).expect("a valid parent id"));
    let mut encoder = Encoder::new(&run_id(), parent.as_ref());
    events(bodies)
        .iter()
        .flat_map(|e| encoder.push(e))
        .map(|e| serde_json::to_value(&e).expect("serializes"))
        .collect()
}

/// The `type` of each event, with the herald type of a `CUSTOM` in parentheses.
fn types(out: &[Value]) -> Vec<String> {
    out.iter()
        .map(|e| match e["type"].as_str() {
            Some("CUSTOM") => format!("CUSTOM({})", e["name"].as_str().unwrap_or("?")),
            Some(t) => t.to_owned(),
            None => panic!("an event without a type: {e}"),
        })
        .collect()
}

#[track_caller]
fn check(parent: Option<&str>, bodies: &[Value], expected: &[&str]) -> Vec<Value> {
    let out = encode(parent, bodies);
    assert_eq!(types(&out), expected, "from {bodies:#?}");
    if let Err(e) = verify(&out) {
        panic!("AG-UI would refuse the stream: {e}\n{out:#?}");
    }
    out
}

#[test]
fn a_whole_agent_run_becomes_steps_messages_tool_calls_and_progress() {
    let out = check(
        None,
        &[
            json!({"event": "run.started", "name": "triage"}),
            json!({"event": "stage.started", "stage": "classify", "total": 2}),
            json!({"event": "item.started", "item": "doc-1", "stage": "classify"}),
            json!({"event": "llm.request", "call_id": "c1", "model": "sim"}),
            json!({"event": "text.delta", "call_id": "c1", "text": "Hel"}),
            json!({"event": "text.delta", "call_id": "c1", "text": "lo"}),
            json!({"event": "llm.response", "call_id": "c1", "output_tokens": 2}),
            json!({"event": "tool.started", "call_id": "t1", "tool": "search",
                   "input": {"q": "rust"}, "feedback": "Searching the docs"}),
            json!({"event": "tool.finished", "call_id": "t1", "tool": "search",
                   "status": "succeeded", "output": {"hits": 3}}),
            json!({"event": "item.finished", "item": "doc-1", "stage": "classify",
                   "status": "succeeded"}),
            json!({"event": "progress", "stage": "classify", "done": 1, "total": 2,
                   "elapsed_s": 5.0}),
            json!({"event": "stage.finished", "stage": "classify", "status": "succeeded",
                   "elapsed_s": 5.0}),
            json!({"event": "run.finished", "status": "succeeded", "result": {"ok": 1}}),
        ],
        &[
            "RUN_STARTED",
            "STEP_STARTED",
            "ACTIVITY_SNAPSHOT",
            "CUSTOM(llm.request)",
            "TEXT_MESSAGE_START",
            "TEXT_MESSAGE_CONTENT",
            "TEXT_MESSAGE_CONTENT",
            "TEXT_MESSAGE_END",
            "CUSTOM(llm.response)",
            "TOOL_CALL_START",
            "TOOL_CALL_ARGS",
            "TOOL_CALL_END",
            "TOOL_CALL_RESULT",
            "ACTIVITY_SNAPSHOT",
            "ACTIVITY_SNAPSHOT",
            "STEP_FINISHED",
            "ACTIVITY_SNAPSHOT",
            "ACTIVITY_SNAPSHOT",
            "RUN_FINISHED",
        ],
    );
    assert_eq!(out[0]["threadId"], "r1");
    assert_eq!(out[0]["runId"], "r1");
    assert_eq!(out[0]["rawEvent"]["event"], "run.started");
    assert_eq!(out[0]["timestamp"], 1_700_000_000_000_i64);
    assert_eq!(out[1]["stepName"], "classify");
    assert_eq!(out[4]["messageId"], "text:1");
    assert_eq!(out[4]["role"], "assistant");
    assert_eq!(out[5]["delta"], "Hel");
    assert_eq!(out[5]["rawEvent"]["seq"], 5);
    assert_eq!(out[9]["toolCallName"], "search");
    // The feedback has no AG-UI field: it travels in rawEvent.
    assert_eq!(out[9]["rawEvent"]["feedback"], "Searching the docs");
    assert_eq!(out[10]["delta"], r#"{"q":"rust"}"#);
    assert_eq!(out[12]["toolCallId"], "t1");
    assert_eq!(out[12]["content"], r#"{"hits":3}"#);
    assert_eq!(out[12]["role"], "tool");
    assert_eq!(out[12]["messageId"], "result:t1");
    let progress = &out[14];
    assert_eq!(progress["activityType"], "PROGRESS");
    assert_eq!(progress["messageId"], "progress:r1");
    assert_eq!(progress["replace"], true);
    assert_eq!(progress["content"]["stages"][0]["name"], "classify");
    assert_eq!(progress["content"]["stages"][0]["done"], 1);
    assert_eq!(progress["content"]["items"]["succeeded"], 1);
    assert_eq!(progress["content"]["percent"], 50.0);
    // After the stage's end, and before the run's, the progress again: finished.
    assert_eq!(out[16]["content"]["stages"][0]["status"], "succeeded");
    assert!(
        out[16].get("rawEvent").is_none(),
        "made up at the stage's end"
    );
    assert_eq!(out[17]["content"]["status"], "succeeded");
    assert_eq!(out[18]["result"], json!({"ok": 1}));
    assert!(out[18].get("rawEvent").is_some());
    // CUSTOM carries the herald event as its value, once.
    assert_eq!(out[3]["value"]["model"], "sim");
    assert!(out[3].get("rawEvent").is_none());
}

#[test]
fn a_failed_run_closes_what_is_open_then_errors_and_nothing_follows() {
    let bodies = [
        json!({"event": "run.started", "name": "triage"}),
        json!({"event": "stage.started", "stage": "fetch"}),
        json!({"event": "stage.started", "stage": "parse"}),
        json!({"event": "text.delta", "text": "thinking"}),
        json!({"event": "run.finished", "status": "failed", "error": "disk full"}),
        json!({"event": "log", "level": "info", "message": "too late"}),
    ];
    let out = check(
        None,
        &bodies,
        &[
            "RUN_STARTED",
            "STEP_STARTED",
            "STEP_STARTED",
            "TEXT_MESSAGE_START",
            "TEXT_MESSAGE_CONTENT",
            "TEXT_MESSAGE_END",
            "STEP_FINISHED",
            "STEP_FINISHED",
            "RUN_ERROR",
        ],
    );
    assert_eq!(out[3]["messageId"], "text:1");
    assert_eq!(out[6]["stepName"], "parse");
    assert_eq!(out[7]["stepName"], "fetch");
    assert_eq!(out[8]["message"], "disk full");
    assert_eq!(out[8]["code"], "failed");
}

#[test]
fn a_cancelled_run_is_a_run_error_with_its_code() {
    let out = check(
        None,
        &[
            json!({"event": "run.started", "name": "n"}),
            json!({"event": "run.cancel_requested", "reason": "user"}),
            json!({"event": "run.finished", "status": "cancelled"}),
        ],
        &["RUN_STARTED", "CUSTOM(run.cancel_requested)", "RUN_ERROR"],
    );
    assert_eq!(out[2]["code"], "cancelled");
    assert_eq!(out[2]["message"], "the run was cancelled");
}

#[test]
fn a_sub_run_s_thread_is_its_parent() {
    let out = check(
        Some("boss"),
        &[json!({"event": "run.started", "name": "n"})],
        &["RUN_STARTED"],
    );
    assert_eq!(out[0]["threadId"], "boss");
    assert_eq!(out[0]["runId"], "r1");
    // The parent on the event itself counts too.
    let out = check(
        None,
        &[json!({"event": "run.started", "name": "n", "parent": "boss"})],
        &["RUN_STARTED"],
    );
    assert_eq!(out[0]["threadId"], "boss");
}

#[test]
fn a_run_that_does_not_open_with_run_started_is_started_for_it() {
    let out = check(
        None,
        &[
            json!({"event": "heartbeat", "elapsed_s": 1.0}),
            json!({"event": "run.started", "name": "late"}),
        ],
        &["RUN_STARTED", "ACTIVITY_SNAPSHOT", "CUSTOM(run.started)"],
    );
    assert!(out[0].get("rawEvent").is_none());
}

#[test]
fn ends_without_beginnings_get_their_beginnings() {
    check(
        None,
        &[
            json!({"event": "run.started", "name": "n"}),
            json!({"event": "stage.finished", "stage": "s", "status": "skipped",
                   "elapsed_s": 0.0}),
            json!({"event": "tool.finished", "call_id": "t9", "tool": "grep",
                   "status": "failed", "error": "no such file"}),
            json!({"event": "run.finished", "status": "succeeded"}),
        ],
        &[
            "RUN_STARTED",
            "STEP_STARTED",
            "STEP_FINISHED",
            "TOOL_CALL_START",
            "TOOL_CALL_END",
            "TOOL_CALL_RESULT",
            "RUN_FINISHED",
        ],
    );
}

#[test]
fn a_failed_tool_s_result_is_its_error_and_text_without_a_call_ends_at_the_response() {
    let out = check(
        None,
        &[
            json!({"event": "run.started", "name": "n"}),
            json!({"event": "tool.started", "call_id": "t1", "tool": "fetch"}),
            json!({"event": "tool.finished", "call_id": "t1", "tool": "fetch",
                   "status": "failed", "error": "timed out"}),
            json!({"event": "text.delta", "text": "Done"}),
            json!({"event": "agent.response", "text": "Done"}),
            json!({"event": "text.delta", "text": "Again"}),
            json!({"event": "run.finished", "status": "succeeded"}),
        ],
        &[
            "RUN_STARTED",
            "TOOL_CALL_START",
            "TOOL_CALL_END",
            "TOOL_CALL_RESULT",
            "TEXT_MESSAGE_START",
            "TEXT_MESSAGE_CONTENT",
            "TEXT_MESSAGE_END",
            "CUSTOM(agent.response)",
            "TEXT_MESSAGE_START",
            "TEXT_MESSAGE_CONTENT",
            "TEXT_MESSAGE_END",
            "RUN_FINISHED",
        ],
    );
    assert_eq!(out[3]["content"], "timed out");
    assert_eq!(out[4]["messageId"], "text:1");
    assert_eq!(out[8]["messageId"], "text:2");
}

#[test]
fn an_aborted_stream_closes_what_is_open_and_errors_once() {
    let mut encoder = Encoder::new(&run_id(), None);
    let mut out: Vec<Value> = Vec::new();
    for event in events(&[
        json!({"event": "run.started", "name": "n"}),
        json!({"event": "stage.started", "stage": "s"}),
        json!({"event": "text.delta", "call_id": "c", "text": "x"}),
    ]) {
        out.extend(encoder.push(&event).iter().map(|e| json!(e)));
    }
    out.extend(
        encoder
            .abort(&Cut::Deleted(run_id()), 5)
            .iter()
            .map(|e| json!(e)),
    );
    assert_eq!(
        types(&out),
        [
            "RUN_STARTED",
            "STEP_STARTED",
            "TEXT_MESSAGE_START",
            "TEXT_MESSAGE_CONTENT",
            "TEXT_MESSAGE_END",
            "STEP_FINISHED",
            "RUN_ERROR"
        ]
    );
    assert_eq!(out[6]["code"], "not_found");
    verify(&out).expect("a valid AG-UI stream");
    assert_eq!(out[6]["message"], "run `r1` was deleted");
    assert!(encoder.abort(&Cut::Stopping, 6).is_empty());
    // A run with no event, aborted, is started and ended.
    let mut encoder = Encoder::new(&run_id(), None);
    let ended: Vec<Value> = encoder
        .abort(&Cut::DatabaseAway, 9)
        .iter()
        .map(|e| json!(e))
        .collect();
    assert_eq!(types(&ended), ["RUN_STARTED", "RUN_ERROR"]);
    verify(&ended).expect("a valid AG-UI stream");
}

#[test]
fn resume_cursors_are_seq_or_seq_dot_index() {
    use super::Resume;
    assert_eq!(Resume::parse("12"), Some(Resume::after(12)));
    let inside = Resume::parse("12.3").expect("a cursor");
    assert_ne!(inside, Resume::after(12));
    for bad in ["", "x", "12.", ".3", "12.x", "-1", "1.2.3"] {
        assert_eq!(Resume::parse(bad), None, "{bad:?}");
    }
}

/// AG-UI's ordering rules, as `@ag-ui/client` 1.0's `verifyEvents` enforces them on
/// one run: `RUN_STARTED` first and once, nothing after `RUN_FINISHED` or
/// `RUN_ERROR`, steps, messages and tool calls started before they continue or end
/// and not started twice while open, none open at `RUN_FINISHED`; plus the schema's
/// integer `timestamp`, and what its folding into messages wants: message and tool
/// call ids never used twice, tool arguments that are JSON.
fn verify(out: &[Value]) -> Result<(), String> {
    let mut steps = HashSet::new();
    let mut messages = HashSet::new();
    let mut tools = HashSet::new();
    // Ids of messages and tool calls ever started: the client merges into an old one
    // a message or call started again with its id.
    let mut used = HashSet::new();
    let mut ended = false;
    for (i, e) in out.iter().enumerate() {
        let kind = e["type"].as_str().ok_or("no type")?;
        if ended {
            return Err(format!("{kind} at {i} after the run ended"));
        }
        if !e["timestamp"].is_i64() {
            return Err(format!("{kind} at {i} has no integer timestamp"));
        }
        if (i == 0) != (kind == "RUN_STARTED") {
            return Err(format!("{kind} at {i}: RUN_STARTED must come first, once"));
        }
        let field = |name: &str| e[name].as_str().map(str::to_owned).ok_or(name.to_owned());
        let open = |set: &mut HashSet<String>, id: String| {
            set.insert(id.clone())
                .then_some(())
                .ok_or(format!("{kind} at {i}: {id} is already open"))
        };
        let close = |set: &mut HashSet<String>, id: String| {
            set.remove(&id)
                .then_some(())
                .ok_or(format!("{kind} at {i}: {id} is not open"))
        };
        match kind {
            "STEP_STARTED" => open(&mut steps, field("stepName")?)?,
            "STEP_FINISHED" => close(&mut steps, field("stepName")?)?,
            "TEXT_MESSAGE_START" => {
                let id = field("messageId")?;
                if !used.insert(format!("message {id}")) || used.contains(&format!("activity {id}"))
                {
                    return Err(format!("{kind} at {i}: message {id} was used before"));
                }
                open(&mut messages, id)?;
            }
            "TEXT_MESSAGE_CONTENT" => {
                let id = field("messageId")?;
                if !messages.contains(&id) {
                    return Err(format!("content at {i} for {id}, which is not open"));
                }
                field("delta")?;
            }
            "TEXT_MESSAGE_END" => close(&mut messages, field("messageId")?)?,
            "TOOL_CALL_START" => {
                field("toolCallName")?;
                let id = field("toolCallId")?;
                if !used.insert(format!("tool call {id}")) {
                    return Err(format!("{kind} at {i}: tool call {id} was used before"));
                }
                open(&mut tools, id)?;
            }
            "TOOL_CALL_ARGS" => {
                let id = field("toolCallId")?;
                if !tools.contains(&id) {
                    return Err(format!("args at {i} for {id}, which is not open"));
                }
                let delta = field("delta")?;
                if serde_json::from_str::<Value>(&delta).is_err() {
                    return Err(format!("args at {i} are not JSON: {delta:?}"));
                }
            }
            "TOOL_CALL_END" => close(&mut tools, field("toolCallId")?)?,
            "TOOL_CALL_RESULT" => {
                let id = field("messageId")?;
                if used.contains(&format!("activity {id}")) {
                    return Err(format!("{kind} at {i}: {id} is an activity's id"));
                }
                used.insert(format!("message {id}"));
                field("toolCallId")?;
                field("content")?;
            }
            "RUN_FINISHED" | "RUN_ERROR" => {
                if kind == "RUN_FINISHED" {
                    field("threadId")?;
                    field("runId")?;
                    if !(steps.is_empty() && messages.is_empty() && tools.is_empty()) {
                        return Err(format!(
                            "RUN_FINISHED at {i} with {steps:?} {messages:?} {tools:?} open"
                        ));
                    }
                } else {
                    field("message")?;
                }
                ended = true;
            }
            "RUN_STARTED" => {
                field("threadId")?;
                field("runId")?;
            }
            "ACTIVITY_SNAPSHOT" => {
                if !e["content"].is_object() {
                    return Err(format!("activity at {i} without an object content"));
                }
                // The client keeps activities among the messages: an id of a text
                // message or a tool result would be mistaken for one.
                let id = field("messageId")?;
                used.insert(format!("activity {id}"));
                if used.contains(&format!("message {id}")) {
                    return Err(format!("activity at {i}: {id} is a message's id"));
                }
            }
            "CUSTOM" => {
                field("name")?;
                if e.get("value").is_none() {
                    return Err(format!("CUSTOM at {i} without a value"));
                }
            }
            other => return Err(format!("{other} at {i} is not an event herald sends")),
        }
    }
    Ok(())
}

/// One herald event of a small vocabulary, so that random runs reuse stages, calls
/// and tools, and finish anywhere.
fn any_body() -> impl Strategy<Value = Value> {
    // "1" as a call id, beside the numbers herald gives messages.
    let name = prop::sample::select(vec!["a", "b", "1"]);
    prop_oneof![
        Just(json!({"event": "run.started", "name": "n"})),
        prop::sample::select(vec!["succeeded", "failed", "cancelled"])
            .prop_map(|s| json!({"event": "run.finished", "status": s})),
        name.clone()
            .prop_map(|s| json!({"event": "stage.started", "stage": s})),
        name.clone().prop_map(|s| json!({
            "event": "stage.finished", "stage": s, "status": "succeeded", "elapsed_s": 1.0,
        })),
        (prop::option::of(name.clone()), "[a-z]{0,3}").prop_map(|(call, text)| {
            let mut e = json!({"event": "text.delta", "text": text});
            if let Some(call) = call {
                e["call_id"] = json!(call);
            }
            e
        }),
        name.clone()
            .prop_map(|c| json!({"event": "llm.response", "call_id": c})),
        Just(json!({"event": "agent.response", "text": "t"})),
        (name.clone(), 0..3u8).prop_map(|(c, input)| {
            let mut e = json!({"event": "tool.started", "call_id": c, "tool": "x"});
            match input {
                0 => {}
                1 => e["input"] = json!({"k": c}),
                _ => e["input"] = json!("ls -l"),
            }
            e
        }),
        name.clone().prop_map(|c| json!({
            "event": "tool.finished", "call_id": c, "tool": "x", "status": "succeeded",
        })),
        (1..5u64).prop_map(|d| json!({"event": "progress", "done": d, "total": 4,
                                      "elapsed_s": d as f64})),
        (name.clone(), 1..5u64).prop_map(|(c, d)| json!({"event": "progress", "call_id": c,
                                      "done": d, "elapsed_s": d as f64})),
        Just(json!({"event": "log", "level": "info", "message": "m"})),
        Just(json!({"event": "heartbeat", "elapsed_s": 1.0})),
        name.clone()
            .prop_map(|i| json!({"event": "item.started", "item": i})),
        name.prop_map(|i| json!({"event": "item.finished", "item": i, "status": "failed"})),
    ]
}

proptest! {
    #[test]
    fn any_run_is_a_stream_agui_accepts(
        bodies in prop::collection::vec(any_body(), 0..40),
        abort in any::<bool>(),
    ) {
        let mut encoder = Encoder::new(&run_id(), None);
        let mut out: Vec<Value> = Vec::new();
        for event in events(&bodies) {
            out.extend(encoder.push(&event).iter().map(|e| json!(e)));
        }
        if abort {
            out.extend(encoder.abort(&Cut::ReadFailed, 0).iter().map(|e| json!(e)));
        }
        if let Err(e) = verify(&out) {
            return Err(TestCaseError::fail(format!("{e}\nfrom {bodies:#?}\nto {out:#?}")));
        }
    }
}

#[test]
fn a_tool_s_string_input_is_json_and_a_call_id_used_again_is_a_call_of_its_own() {
    let call = |input: Value| {
        [
            json!({"event": "tool.started", "call_id": "t1", "tool": "sh", "input": input}),
            json!({"event": "tool.finished", "call_id": "t1", "tool": "sh", "status": "succeeded",
                   "output": "ok"}),
        ]
    };
    let mut bodies = vec![json!({"event": "run.started", "name": "n"})];
    bodies.extend(call(json!("ls -l")));
    bodies.extend(call(json!({"cmd": "pwd"})));
    let out = check(
        None,
        &bodies,
        &[
            "RUN_STARTED",
            "TOOL_CALL_START",
            "TOOL_CALL_ARGS",
            "TOOL_CALL_END",
            "TOOL_CALL_RESULT",
            "TOOL_CALL_START",
            "TOOL_CALL_ARGS",
            "TOOL_CALL_END",
            "TOOL_CALL_RESULT",
        ],
    );
    assert_eq!(out[2]["delta"], r#""ls -l""#);
    assert_eq!(out[4]["toolCallId"], "t1");
    assert_eq!(out[4]["messageId"], "result:t1");
    assert_eq!(out[5]["toolCallId"], "t1:2");
    assert_eq!(out[8]["toolCallId"], "t1:2");
    assert_eq!(out[8]["messageId"], "result:t1:2");
    // The result's content is text: a string output as itself.
    assert_eq!(out[8]["content"], "ok");
}

#[test]
fn a_tool_s_own_progress_is_an_activity_of_that_call() {
    let bodies = [
        json!({"event": "run.started", "name": "n"}),
        // Before the call starts, and for a call that ended, there is no row: the
        // run's progress stands for the event.
        json!({"event": "progress", "call_id": "t1", "done": 1, "elapsed_s": 0.5}),
        json!({"event": "tool.started", "call_id": "t1", "tool": "crawl"}),
        json!({"event": "progress", "call_id": "t1", "done": 3, "total": 12, "unit": "pages",
               "message": "Page 3 of 12", "elapsed_s": 1.0}),
        json!({"event": "tool.finished", "call_id": "t1", "tool": "crawl", "status": "succeeded"}),
        // The same call id again is a call of its own, and so is its activity.
        json!({"event": "tool.started", "call_id": "t1", "tool": "crawl"}),
        json!({"event": "progress", "call_id": "t1", "done": 1, "total": 2, "elapsed_s": 1.0}),
        json!({"event": "tool.finished", "call_id": "t1", "tool": "crawl", "status": "succeeded"}),
        json!({"event": "run.finished", "status": "succeeded"}),
    ];
    let out = check(
        None,
        &bodies,
        &[
            "RUN_STARTED",
            "ACTIVITY_SNAPSHOT",
            "TOOL_CALL_START",
            "TOOL_CALL_END",
            "ACTIVITY_SNAPSHOT",
            "TOOL_CALL_RESULT",
            "TOOL_CALL_START",
            "TOOL_CALL_END",
            "ACTIVITY_SNAPSHOT",
            "TOOL_CALL_RESULT",
            "ACTIVITY_SNAPSHOT",
            "RUN_FINISHED",
        ],
    );
    assert_eq!(out[1]["messageId"], "progress:r1");
    assert_eq!(out[1]["activityType"], "PROGRESS");
    assert_eq!(out[4]["messageId"], "tool-progress:t1");
    assert_eq!(out[4]["activityType"], "TOOL_PROGRESS");
    assert_eq!(out[4]["replace"], true);
    assert_eq!(
        out[4]["content"],
        json!({"tool_call_id": "t1", "call_id": "t1", "tool": "crawl", "done": 3, "total": 12,
               "unit": "pages", "percent": 25.0, "message": "Page 3 of 12",
               "updated_at": out[4]["content"]["updated_at"]})
    );
    assert_eq!(out[4]["rawEvent"]["call_id"], "t1");
    assert_eq!(out[8]["messageId"], "tool-progress:t1:2");
    assert_eq!(out[8]["content"]["tool_call_id"], "t1:2");
    assert_eq!(out[8]["content"]["percent"], 50.0);
    // The run's own progress never counted the tool.
    assert!(
        out[10]["content"].get("progress").is_none(),
        "{:#}",
        out[10]
    );
}

/// The cursors of an AG-UI stream (`Last-Event-ID`), read from any text.
mod cursors {
    use std::str::FromStr;

    use proptest::prelude::*;

    use crate::agui::{Resume, sse_id};

    /// A number as a cursor holds one: ASCII digits after an optional `+` (Rust reads
    /// `+5` as 5; no client is hurt by it), that fit.
    fn decimal<T: FromStr>(s: &str) -> Option<T> {
        let digits = s.strip_prefix('+').unwrap_or(s);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }

    proptest! {
        /// Text is a cursor exactly when it is `SEQ` or `SEQ.INDEX`, spaces around it
        /// aside, and never `0.INDEX`: event 0 is before the first, and has no messages.
        #[test]
        fn any_text_is_a_cursor_exactly_in_the_documented_forms(
            text in prop_oneof![
                "(?s).{0,12}",
                "[0-9.+ \\t\\-]{0,10}",
                (0u64..20, proptest::option::of(0usize..5)).prop_map(|(seq, index)| match index {
                    Some(index) => format!("{seq}.{index}"),
                    None => seq.to_string(),
                }),
            ],
        ) {
            let trimmed = text.trim();
            let expected = match trimmed.split_once('.') {
                Some((seq, index)) => match (decimal::<u64>(seq), decimal::<usize>(index)) {
                    (Some(0), Some(_)) | (None, _) | (_, None) => None,
                    (Some(seq), Some(index)) => Some(Resume { seq, index: Some(index) }),
                },
                None => decimal::<u64>(trimmed).map(Resume::after),
            };
            prop_assert_eq!(Resume::parse(&text), expected);
        }

        /// Every id a stream writes reads back as the cursor it stands for.
        #[test]
        fn every_id_written_reads_back(seq in 1u64.., index in any::<usize>()) {
            let id = sse_id(seq, index);
            prop_assert_eq!(Resume::parse(&id), Some(Resume { seq, index: Some(index) }));
            prop_assert_eq!(Resume::parse(&seq.to_string()), Some(Resume::after(seq)));
        }
    }
}
