//! The wire form: every event type of docs/protocol.md#events serializes to exactly the JSON it
//! describes (its field names, `"v":1` and the envelope first, `ts` with six
//! fractional digits and `Z`, absent optionals omitted) and parses back to the same event.

use std::collections::BTreeSet;

use herald_protocol::{
    AgentHistory, AgentIteration, AgentPreparingResponse, AgentResponse, AgentSystemMessage,
    BatchFormat, ChatMessage, Custom, Draft, EVENT_TYPES, Event, EventBody, Heartbeat,
    ItemFinished, ItemStarted, LlmRequest, LlmResponse, Log, LogLevel, Progress,
    RunCancelRequested, RunFinished, RunOutcome, RunStalled, RunStarted, StageFinished,
    StageStarted, StepOutcome, TextDelta, Timestamp, ToolFinished, ToolOutcome, ToolSelected,
    ToolStarted, parse_batch, parse_draft_str, parse_event,
};
use serde_json::{Map, Value, json};

use crate::util::{RUN, run_id};

/// The `ts` most examples carry, already at microsecond precision.
const TS: &str = "2026-11-22T01:07:00.123456Z";

/// Checks that `event` serializes to exactly `expected` and that `expected` parses back
/// to `event`, both as a stored event and, without `v`, `run` and `seq`, as a draft in
/// a batch. Returns the event's type, for the coverage check.
#[track_caller]
fn check(event: Event, expected: &str) -> String {
    assert_eq!(event.to_json(), expected, "serialized form");
    assert_eq!(
        serde_json::to_string(&event).unwrap(),
        expected,
        "serde and to_json agree"
    );
    let parsed = parse_event(expected).unwrap_or_else(|e| panic!("{expected}: {e}"));
    assert_eq!(parsed, event, "parsed back");
    // Equality of JSON objects ignores their order; the text does not.
    assert_eq!(parsed.to_json(), expected, "written again after parsing");
    let via_serde: Event = serde_json::from_str(expected).unwrap();
    assert_eq!(via_serde, event, "Deserialize agrees with parse_event");

    // The draft form is the same object without `v`, `run` and `seq`.
    let draft = Draft {
        ts: Some(event.ts),
        id: event.id.clone(),
        parent: event.parent.clone(),
        body: event.body.clone(),
    };
    let draft_json = serde_json::to_string(&draft).unwrap();
    let envelope = r#""v":1,"#;
    let run_seq = format!(r#""run":"{}","seq":{},"#, event.run, event.seq);
    assert!(expected.contains(envelope) && expected.contains(&run_seq));
    assert_eq!(
        draft_json,
        expected.replacen(envelope, "", 1).replacen(&run_seq, "", 1),
        "draft form"
    );
    let mut written = Vec::new();
    draft.write_json(&mut written);
    assert_eq!(
        String::from_utf8(written).unwrap(),
        draft_json,
        "serde and write_json agree"
    );
    for (body, format) in [
        (format!("[{draft_json}]"), BatchFormat::JsonArray),
        (format!("{draft_json}\n"), BatchFormat::Ndjson),
    ] {
        let drafts = parse_batch(&body, format, &event.run)
            .unwrap_or_else(|e| panic!("{format:?} {draft_json}: {e}"));
        assert_eq!(
            drafts,
            vec![draft.clone()],
            "draft parsed back ({format:?})"
        );
        assert_eq!(
            serde_json::to_string(&drafts[0]).unwrap(),
            draft_json,
            "draft written again after parsing ({format:?})"
        );
    }
    event.event_type().to_owned()
}

fn ev(seq: u64, body: impl Into<EventBody>) -> Event {
    Event {
        run: run_id(RUN),
        seq,
        ts: TS.parse().unwrap(),
        id: None,
        parent: None,
        body: body.into(),
    }
}

fn obj(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

#[test]
fn every_event_type_round_trips() {
    let mut seen = BTreeSet::new();
    let mut see = |t: String| {
        seen.insert(t);
    };

    // Run.
    see(check(
        Event {
            id: Some("key-1".into()),
            parent: Some(run_id("parent.run:7")),
            ..ev(
                1,
                RunStarted {
                    name: "nightly import".into(),
                    total_steps: Some(3),
                    meta: Some(obj(json!({"owner": "ops", "shards": [1, 2]}))),
                    stages: None,
                },
            )
        },
        r#"{"v":1,"event":"run.started","run":"run-1","seq":1,"ts":"2026-11-22T01:07:00.123456Z","id":"key-1","parent":"parent.run:7","name":"nightly import","total_steps":3,"meta":{"owner":"ops","shards":[1,2]}}"#,
    ));
    see(check(
        ev(
            1,
            RunStarted {
                name: "x".into(),
                total_steps: None,
                meta: None,
                stages: None,
            },
        ),
        r#"{"v":1,"event":"run.started","run":"run-1","seq":1,"ts":"2026-11-22T01:07:00.123456Z","name":"x"}"#,
    ));
    see(check(
        ev(
            40,
            RunFinished {
                status: RunOutcome::Succeeded,
                result: Some(json!({"docs": 200, "summary": "ok"})),
                error: None,
            },
        ),
        r#"{"v":1,"event":"run.finished","run":"run-1","seq":40,"ts":"2026-11-22T01:07:00.123456Z","status":"succeeded","result":{"docs":200,"summary":"ok"}}"#,
    ));
    see(check(
        ev(
            41,
            RunFinished {
                status: RunOutcome::Failed,
                result: None,
                error: Some("boom".into()),
            },
        ),
        r#"{"v":1,"event":"run.finished","run":"run-1","seq":41,"ts":"2026-11-22T01:07:00.123456Z","status":"failed","error":"boom"}"#,
    ));
    see(check(
        ev(
            42,
            RunFinished {
                status: RunOutcome::Cancelled,
                result: None,
                error: None,
            },
        ),
        r#"{"v":1,"event":"run.finished","run":"run-1","seq":42,"ts":"2026-11-22T01:07:00.123456Z","status":"cancelled"}"#,
    ));
    see(check(
        ev(
            2,
            RunCancelRequested {
                reason: Some("user asked".into()),
            },
        ),
        r#"{"v":1,"event":"run.cancel_requested","run":"run-1","seq":2,"ts":"2026-11-22T01:07:00.123456Z","reason":"user asked"}"#,
    ));
    see(check(
        ev(2, RunCancelRequested { reason: None }),
        r#"{"v":1,"event":"run.cancel_requested","run":"run-1","seq":2,"ts":"2026-11-22T01:07:00.123456Z"}"#,
    ));
    see(check(
        ev(3, RunStalled { silent_for_s: 61.5 }),
        r#"{"v":1,"event":"run.stalled","run":"run-1","seq":3,"ts":"2026-11-22T01:07:00.123456Z","silent_for_s":61.5}"#,
    ));
    see(check(
        ev(
            4,
            Heartbeat {
                elapsed_s: 12.25,
                note: Some("waiting for the model".into()),
            },
        ),
        r#"{"v":1,"event":"heartbeat","run":"run-1","seq":4,"ts":"2026-11-22T01:07:00.123456Z","elapsed_s":12.25,"note":"waiting for the model"}"#,
    ));
    see(check(
        ev(
            4,
            Heartbeat {
                elapsed_s: 0.0,
                note: None,
            },
        ),
        r#"{"v":1,"event":"heartbeat","run":"run-1","seq":4,"ts":"2026-11-22T01:07:00.123456Z","elapsed_s":0.0}"#,
    ));

    // Stages, progress and items.
    see(check(
        ev(
            5,
            StageStarted {
                stage: "fetch".into(),
                total: Some(200),
                unit: Some("docs".into()),
                total_weight: None,
            },
        ),
        r#"{"v":1,"event":"stage.started","run":"run-1","seq":5,"ts":"2026-11-22T01:07:00.123456Z","stage":"fetch","total":200,"unit":"docs"}"#,
    ));
    see(check(
        ev(
            5,
            StageStarted {
                stage: "fetch".into(),
                total: None,
                unit: None,
                total_weight: None,
            },
        ),
        r#"{"v":1,"event":"stage.started","run":"run-1","seq":5,"ts":"2026-11-22T01:07:00.123456Z","stage":"fetch"}"#,
    ));
    see(check(
        ev(
            6,
            StageFinished {
                stage: "fetch".into(),
                status: StepOutcome::Failed,
                error: Some("timeout".into()),
                elapsed_s: 3.5,
            },
        ),
        r#"{"v":1,"event":"stage.finished","run":"run-1","seq":6,"ts":"2026-11-22T01:07:00.123456Z","stage":"fetch","status":"failed","error":"timeout","elapsed_s":3.5}"#,
    ));
    see(check(
        ev(
            6,
            StageFinished {
                stage: "fetch".into(),
                status: StepOutcome::Skipped,
                error: None,
                elapsed_s: 0.0,
            },
        ),
        r#"{"v":1,"event":"stage.finished","run":"run-1","seq":6,"ts":"2026-11-22T01:07:00.123456Z","stage":"fetch","status":"skipped","elapsed_s":0.0}"#,
    ));
    see(check(
        ev(
            7,
            Progress {
                stage: Some("fetch".into()),
                call_id: None,
                done: 17,
                total: Some(200),
                unit: Some("docs".into()),
                percent: Some(8.5),
                rate: Some(2.5),
                eta_s: Some(73.2),
                elapsed_s: 6.8,
                message: Some("reading report-17.pdf".into()),
                done_weight: None,
                total_weight: None,
                eta_low_s: None,
                eta_high_s: None,
            },
        ),
        r#"{"v":1,"event":"progress","run":"run-1","seq":7,"ts":"2026-11-22T01:07:00.123456Z","stage":"fetch","done":17,"total":200,"unit":"docs","message":"reading report-17.pdf","percent":8.5,"rate":2.5,"eta_s":73.2,"elapsed_s":6.8}"#,
    ));
    see(check(
        ev(
            7,
            Progress {
                stage: None,
                call_id: None,
                done: u64::MAX,
                total: None,
                unit: None,
                percent: None,
                rate: None,
                eta_s: None,
                elapsed_s: 0.5,
                message: None,
                done_weight: None,
                total_weight: None,
                eta_low_s: None,
                eta_high_s: None,
            },
        ),
        r#"{"v":1,"event":"progress","run":"run-1","seq":7,"ts":"2026-11-22T01:07:00.123456Z","done":18446744073709551615,"elapsed_s":0.5}"#,
    ));
    see(check(
        ev(
            8,
            ItemStarted {
                item: "doc-17".into(),
                stage: Some("fetch".into()),
                label: Some("https://example.com/17".into()),
            },
        ),
        r#"{"v":1,"event":"item.started","run":"run-1","seq":8,"ts":"2026-11-22T01:07:00.123456Z","item":"doc-17","stage":"fetch","label":"https://example.com/17"}"#,
    ));
    see(check(
        ev(
            8,
            ItemStarted {
                item: "doc-17".into(),
                stage: None,
                label: None,
            },
        ),
        r#"{"v":1,"event":"item.started","run":"run-1","seq":8,"ts":"2026-11-22T01:07:00.123456Z","item":"doc-17"}"#,
    ));
    see(check(
        ev(
            9,
            ItemFinished {
                item: "doc-17".into(),
                stage: Some("fetch".into()),
                status: StepOutcome::Failed,
                error: Some("HTTP 503".into()),
                elapsed_s: Some(0.42),
                weight: None,
            },
        ),
        r#"{"v":1,"event":"item.finished","run":"run-1","seq":9,"ts":"2026-11-22T01:07:00.123456Z","item":"doc-17","stage":"fetch","status":"failed","error":"HTTP 503","elapsed_s":0.42}"#,
    ));
    see(check(
        ev(
            9,
            ItemFinished {
                item: "doc-17".into(),
                stage: None,
                status: StepOutcome::Succeeded,
                error: None,
                elapsed_s: None,
                weight: None,
            },
        ),
        r#"{"v":1,"event":"item.finished","run":"run-1","seq":9,"ts":"2026-11-22T01:07:00.123456Z","item":"doc-17","status":"succeeded"}"#,
    ));
    see(check(
        ev(
            10,
            Log {
                level: LogLevel::Warn,
                message: "disk almost full".into(),
            },
        ),
        r#"{"v":1,"event":"log","run":"run-1","seq":10,"ts":"2026-11-22T01:07:00.123456Z","level":"warn","message":"disk almost full"}"#,
    ));

    // The agent loop.
    see(check(
        ev(11, AgentIteration { iteration: 1 }),
        r#"{"v":1,"event":"agent.iteration","run":"run-1","seq":11,"ts":"2026-11-22T01:07:00.123456Z","iteration":1}"#,
    ));
    see(check(
        ev(
            12,
            AgentHistory {
                messages: vec![
                    ChatMessage {
                        role: "user".into(),
                        content: json!("hi"),
                    },
                    ChatMessage {
                        role: "assistant".into(),
                        content: json!([{"type": "text", "text": "hello"}]),
                    },
                ],
            },
        ),
        r#"{"v":1,"event":"agent.history","run":"run-1","seq":12,"ts":"2026-11-22T01:07:00.123456Z","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":[{"type":"text","text":"hello"}]}]}"#,
    ));
    see(check(
        ev(
            13,
            AgentSystemMessage {
                message: "You are careful.".into(),
            },
        ),
        r#"{"v":1,"event":"agent.system_message","run":"run-1","seq":13,"ts":"2026-11-22T01:07:00.123456Z","message":"You are careful."}"#,
    ));
    see(check(
        ev(
            14,
            LlmRequest {
                call_id: "c1".into(),
                provider: Some("anthropic".into()),
                model: Some("claude".into()),
            },
        ),
        r#"{"v":1,"event":"llm.request","run":"run-1","seq":14,"ts":"2026-11-22T01:07:00.123456Z","call_id":"c1","provider":"anthropic","model":"claude"}"#,
    ));
    see(check(
        ev(
            14,
            LlmRequest {
                call_id: "c1".into(),
                provider: None,
                model: None,
            },
        ),
        r#"{"v":1,"event":"llm.request","run":"run-1","seq":14,"ts":"2026-11-22T01:07:00.123456Z","call_id":"c1"}"#,
    ));
    see(check(
        ev(
            15,
            LlmResponse {
                call_id: "c1".into(),
                model: Some("claude-opus-4-1-20250805".into()),
                stop_reason: Some("tool_use".into()),
                input_tokens: Some(1200),
                output_tokens: Some(85),
                ttft_s: Some(0.42),
                elapsed_s: Some(2.75),
                error: None,
            },
        ),
        r#"{"v":1,"event":"llm.response","run":"run-1","seq":15,"ts":"2026-11-22T01:07:00.123456Z","call_id":"c1","model":"claude-opus-4-1-20250805","stop_reason":"tool_use","input_tokens":1200,"output_tokens":85,"ttft_s":0.42,"elapsed_s":2.75}"#,
    ));
    see(check(
        ev(
            15,
            LlmResponse {
                call_id: "c1".into(),
                model: None,
                stop_reason: Some("error".into()),
                input_tokens: None,
                output_tokens: None,
                ttft_s: None,
                elapsed_s: Some(0.3),
                error: Some("overloaded_error: Overloaded (HTTP 529)".into()),
            },
        ),
        r#"{"v":1,"event":"llm.response","run":"run-1","seq":15,"ts":"2026-11-22T01:07:00.123456Z","call_id":"c1","stop_reason":"error","elapsed_s":0.3,"error":"overloaded_error: Overloaded (HTTP 529)"}"#,
    ));
    see(check(
        ev(
            15,
            LlmResponse {
                call_id: "c1".into(),
                model: None,
                stop_reason: None,
                input_tokens: None,
                output_tokens: None,
                ttft_s: None,
                elapsed_s: None,
                error: None,
            },
        ),
        r#"{"v":1,"event":"llm.response","run":"run-1","seq":15,"ts":"2026-11-22T01:07:00.123456Z","call_id":"c1"}"#,
    ));
    see(check(
        ev(
            16,
            TextDelta {
                text: "Hé, 日本 👋\n\"quoted\"\t".into(),
                call_id: Some("c1".into()),
            },
        ),
        r#"{"v":1,"event":"text.delta","run":"run-1","seq":16,"ts":"2026-11-22T01:07:00.123456Z","text":"Hé, 日本 👋\n\"quoted\"\t","call_id":"c1"}"#,
    ));
    see(check(
        ev(
            17,
            ToolSelected {
                call_id: "t1".into(),
                tool: "search".into(),
                input: Some(json!({"q": "rust"})),
            },
        ),
        r#"{"v":1,"event":"tool.selected","run":"run-1","seq":17,"ts":"2026-11-22T01:07:00.123456Z","call_id":"t1","tool":"search","input":{"q":"rust"}}"#,
    ));
    see(check(
        ev(
            18,
            ToolStarted {
                call_id: "t1".into(),
                tool: "search".into(),
                input: None,
                feedback: Some("Searching the docs".into()),
            },
        ),
        r#"{"v":1,"event":"tool.started","run":"run-1","seq":18,"ts":"2026-11-22T01:07:00.123456Z","call_id":"t1","tool":"search","feedback":"Searching the docs"}"#,
    ));
    see(check(
        ev(
            19,
            ToolFinished {
                call_id: "t1".into(),
                tool: "search".into(),
                status: ToolOutcome::Failed,
                output: Some(json!(["a", 1, false])),
                error: Some("rate limited".into()),
                elapsed_s: Some(1.5),
            },
        ),
        r#"{"v":1,"event":"tool.finished","run":"run-1","seq":19,"ts":"2026-11-22T01:07:00.123456Z","call_id":"t1","tool":"search","status":"failed","output":["a",1,false],"error":"rate limited","elapsed_s":1.5}"#,
    ));
    see(check(
        ev(
            19,
            ToolFinished {
                call_id: "t1".into(),
                tool: "search".into(),
                status: ToolOutcome::Succeeded,
                output: None,
                error: None,
                elapsed_s: None,
            },
        ),
        r#"{"v":1,"event":"tool.finished","run":"run-1","seq":19,"ts":"2026-11-22T01:07:00.123456Z","call_id":"t1","tool":"search","status":"succeeded"}"#,
    ));
    see(check(
        ev(20, AgentPreparingResponse {}),
        r#"{"v":1,"event":"agent.preparing_response","run":"run-1","seq":20,"ts":"2026-11-22T01:07:00.123456Z"}"#,
    ));
    see(check(
        ev(
            21,
            AgentResponse {
                text: "Done.".into(),
                iteration: Some(3),
            },
        ),
        r#"{"v":1,"event":"agent.response","run":"run-1","seq":21,"ts":"2026-11-22T01:07:00.123456Z","text":"Done.","iteration":3}"#,
    ));
    see(check(
        ev(
            21,
            AgentResponse {
                text: String::new(),
                iteration: None,
            },
        ),
        r#"{"v":1,"event":"agent.response","run":"run-1","seq":21,"ts":"2026-11-22T01:07:00.123456Z","text":""}"#,
    ));

    // The producer's own.
    let custom = Custom::new(
        "deploy_2",
        obj(json!({"env": "prod", "replicas": 3, "ok": true, "nested": {"a": null}})),
    )
    .expect("a valid custom event");
    see(check(
        ev(22, EventBody::Custom(custom)),
        r#"{"v":1,"event":"custom.deploy_2","run":"run-1","seq":22,"ts":"2026-11-22T01:07:00.123456Z","env":"prod","replicas":3,"ok":true,"nested":{"a":null}}"#,
    ));

    let mut expected: BTreeSet<String> = EVENT_TYPES.iter().map(|t| t.to_string()).collect();
    expected.insert("custom.deploy_2".into());
    assert_eq!(
        seen, expected,
        "every event type of docs/protocol.md#events is covered"
    );
    assert_eq!(
        EVENT_TYPES.len(),
        22,
        "docs/protocol.md#events names 22 built-in types"
    );
}

#[test]
fn timestamps_are_written_in_utc_with_six_fractional_digits() {
    #[track_caller]
    fn check_ts(input: &str, written: &str) {
        let ts: Timestamp = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
        let event = Event {
            ts,
            ..ev(1, AgentPreparingResponse {})
        };
        let expected = format!(
            r#"{{"v":1,"event":"agent.preparing_response","run":"run-1","seq":1,"ts":"{written}"}}"#
        );
        check(event, &expected);
    }
    check_ts("2026-11-22T01:07:00Z", "2026-11-22T01:07:00.000000Z");
    check_ts("2026-11-22T01:07:00.5Z", "2026-11-22T01:07:00.500000Z");
    // Other offsets are converted to UTC; finer precision is truncated, not rounded.
    check_ts(
        "2026-11-22T03:07:00.1234569+02:00",
        "2026-11-22T01:07:00.123456Z",
    );
    check_ts(
        "2026-11-21T20:37:00.000001-04:30",
        "2026-11-22T01:07:00.000001Z",
    );
}

#[test]
fn a_draft_without_ts_or_envelope_parses_and_is_stamped() {
    let run = run_id(RUN);
    let draft = parse_draft_str(r#"{"event":"progress","done":3,"elapsed_s":1}"#, &run).unwrap();
    assert_eq!(draft.ts, None);
    assert_eq!(
        serde_json::to_string(&draft).unwrap(),
        r#"{"event":"progress","done":3,"elapsed_s":1.0}"#
    );
    let now: Timestamp = TS.parse().unwrap();
    let event = draft.stamp(run.clone(), 9, now);
    assert_eq!(
        event.to_json(),
        r#"{"v":1,"event":"progress","run":"run-1","seq":9,"ts":"2026-11-22T01:07:00.123456Z","done":3,"elapsed_s":1.0}"#
    );
    // A draft may repeat its run, `v` and a `seq` (which is not kept).
    let draft = parse_draft_str(
        r#"{"v":1,"run":"run-1","seq":77,"event":"heartbeat","elapsed_s":2,"ts":"2026-11-22T01:07:00.123456Z"}"#,
        &run,
    )
    .unwrap();
    assert_eq!(draft.ts, Some(now));
    assert_eq!(draft.stamp(run, 1, now).seq, 1);
}

#[test]
fn unknown_fields_of_builtin_events_are_accepted_and_dropped() {
    let text = r#"{"v":1,"event":"log","run":"run-1","seq":1,"ts":"2026-11-22T01:07:00.123456Z","level":"info","message":"hi","added_in_v1_1":{"x":1}}"#;
    let event = parse_event(text).unwrap();
    assert_eq!(
        event.body,
        EventBody::Log(Log {
            level: LogLevel::Info,
            message: "hi".into(),
        })
    );
    assert!(!event.to_json().contains("added_in_v1_1"));
}

#[test]
fn custom_events_keep_every_field_but_the_envelope() {
    let text = r#"{"v":1,"event":"custom.deploy","run":"run-1","seq":5,"ts":"2026-11-22T01:07:00.123456Z","id":"d-1","target":"eu","tags":["a","b"]}"#;
    let event = parse_event(text).unwrap();
    let EventBody::Custom(custom) = &event.body else {
        panic!("not custom: {event:?}");
    };
    assert_eq!(custom.name(), "deploy");
    assert_eq!(
        custom.fields,
        obj(json!({"target": "eu", "tags": ["a", "b"]}))
    );
    assert_eq!(event.id.as_deref(), Some("d-1"));
    assert_eq!(event.to_json(), text);
    // The constructor refuses what the parser would not produce.
    for (name, fields) in [
        ("Deploy", json!({})),
        ("", json!({})),
        ("de.ploy", json!({})),
        ("deploy", json!({"seq": 1})),
        ("deploy", json!({"event": "x"})),
    ] {
        assert!(
            Custom::new(name, obj(fields.clone())).is_none(),
            "{name} {fields}"
        );
    }
}

/// `null` and an absent field are the same on the wire: an optional JSON value that is
/// `Some(Value::Null)` in Rust comes back as `None`.
#[test]
fn a_null_optional_value_reads_back_as_absent() {
    let event = ev(
        1,
        RunFinished {
            status: RunOutcome::Succeeded,
            result: Some(Value::Null),
            error: None,
        },
    );
    let json = event.to_json();
    assert!(
        json.ends_with(r#""status":"succeeded","result":null}"#),
        "{json}"
    );
    let EventBody::RunFinished(back) = parse_event(&json).unwrap().body else {
        panic!("not run.finished");
    };
    assert_eq!(back.result, None);
}
