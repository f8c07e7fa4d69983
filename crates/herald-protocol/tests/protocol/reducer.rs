//! The reducer (docs/protocol.md#run-state) on hand-written runs.
//!
//! A run is a script of `(seconds after T0, draft as JSON)`; the expected state is a
//! JSON *pattern* matched against the serialized `RunState`: every key it names must
//! match (recursively; arrays element by element and of the same length; numbers within
//! 1e-9 relative), `null` means "absent", and keys it does not name are not checked.

use herald_protocol::{
    MAX_LISTED_FAILURES, MAX_LISTED_ITEMS, MAX_LISTED_LOGS, MAX_LISTED_TOOLS, MAX_TEXT_BYTES,
    MAX_VALUE_BYTES, RunState, RunStatus, fold,
};
use serde_json::{Value, json};

use crate::util::{RUN, at, run_id, script};

/// Folds the script and matches the state against `expected`; returns the state.
#[track_caller]
fn check(steps: &[(f64, Value)], expected: Value) -> RunState {
    check_at(steps, None, expected)
}

/// As [`check`], for the state seen `now` seconds after T0 (`RunState::at`).
#[track_caller]
fn check_at(steps: &[(f64, Value)], now: Option<f64>, expected: Value) -> RunState {
    let events = script(steps);
    let mut state = fold(run_id(RUN), &events);
    if let Some(now) = now {
        state = state.at(at(now));
    }
    let actual = serde_json::to_value(&state).expect("the state serializes");
    if let Err(e) = matches(&actual, &expected, "state") {
        panic!("{e}\nstate: {actual:#}");
    }
    state
}

fn matches(actual: &Value, expected: &Value, path: &str) -> Result<(), String> {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            for (key, want) in e {
                let path = format!("{path}.{key}");
                match (a.get(key), want) {
                    (None | Some(Value::Null), Value::Null) => {}
                    (Some(got), Value::Null) => {
                        return Err(format!("{path}: {got}, expected absent"));
                    }
                    (None, _) => return Err(format!("{path}: absent, expected {want}")),
                    (Some(got), _) => matches(got, want, &path)?,
                }
            }
            Ok(())
        }
        (Value::Array(a), Value::Array(e)) => {
            if a.len() != e.len() {
                return Err(format!(
                    "{path}: {} elements, expected {}",
                    a.len(),
                    e.len()
                ));
            }
            a.iter()
                .zip(e)
                .enumerate()
                .try_for_each(|(i, (a, e))| matches(a, e, &format!("{path}[{i}]")))
        }
        (Value::Number(a), Value::Number(e)) if !(a.is_u64() && e.is_u64()) => {
            let (a, e) = (a.as_f64().unwrap(), e.as_f64().unwrap());
            if (a - e).abs() <= 1e-9 * e.abs().max(1.0) {
                Ok(())
            } else {
                Err(format!("{path}: {a}, expected {e}"))
            }
        }
        _ if actual == expected => Ok(()),
        _ => Err(format!("{path}: {actual}, expected {expected}")),
    }
}

#[test]
fn the_pattern_matcher_sees_mismatches() {
    let state = json!({"a": 1, "b": [{"c": 2.5, "d": "x"}], "e": 1.0});
    for (pattern, ok) in [
        (json!({}), true),
        (json!({"a": 1, "b": [{"c": 2.5}], "e": 1}), true),
        (json!({"z": null, "b": [{"zz": null}]}), true),
        (json!({"a": 2}), false),
        (json!({"a": null}), false),
        (json!({"z": 1}), false),
        (json!({"b": []}), false),
        (json!({"b": [{"c": 2.500001}]}), false),
        (json!({"b": [{"d": "y"}]}), false),
    ] {
        assert_eq!(matches(&state, &pattern, "state").is_ok(), ok, "{pattern}");
    }
}

/// The timestamp `secs` after T0 as the state writes it.
fn t(secs: f64) -> String {
    at(secs).to_string()
}

#[test]
fn a_run_with_stages_and_items() {
    let steps = [
        (
            0.0,
            json!({"event": "run.started", "name": "import", "total_steps": 2,
                   "meta": {"owner": "ops"}, "parent": "caller-7"}),
        ),
        (
            0.0,
            json!({"event": "stage.started", "stage": "fetch", "total": 4}),
        ),
        (
            1.0,
            json!({"event": "item.started", "item": "a", "stage": "fetch", "label": "A"}),
        ),
        (
            1.0,
            json!({"event": "item.started", "item": "b", "stage": "fetch"}),
        ),
        (
            2.0,
            json!({"event": "item.finished", "item": "a", "stage": "fetch", "status": "succeeded"}),
        ),
        (
            3.0,
            json!({"event": "item.finished", "item": "b", "stage": "fetch", "status": "failed",
                   "error": "HTTP 503"}),
        ),
        (
            3.0,
            json!({"event": "item.started", "item": "c", "stage": "fetch", "label": "C"}),
        ),
        (
            4.0,
            json!({"event": "item.finished", "item": "c", "stage": "fetch", "status": "failed"}),
        ),
        (
            4.0,
            json!({"event": "item.started", "item": "d", "stage": "fetch"}),
        ),
        (
            5.0,
            json!({"event": "item.finished", "item": "d", "stage": "fetch", "status": "skipped"}),
        ),
        (
            6.0,
            json!({"event": "stage.finished", "stage": "fetch", "status": "succeeded", "elapsed_s": 6}),
        ),
        (
            6.0,
            json!({"event": "stage.started", "stage": "classify", "total": 10}),
        ),
        (
            8.0,
            json!({"event": "progress", "stage": "classify", "done": 5, "total": 10, "unit": "docs",
                   "elapsed_s": 2}),
        ),
    ];

    // Midway through the first stage: two items running, one done.
    check(
        &steps[..5],
        json!({
            "status": "running",
            "percent": 12.5, // a quarter of the first of two stages
            "items": {"succeeded": 1, "failed": 0, "skipped": 0, "running": 1},
            "running_items": [{"item": "b", "stage": "fetch", "label": null, "started_at": t(1.0)}],
            "stages": [{"name": "fetch", "status": "running", "done": 1, "total": 4,
                        "percent": 25.0, "elapsed_s": 2.0}],
        }),
    );

    check(
        &steps,
        json!({
            "id": "run-1",
            "name": "import",
            "parent": "caller-7",
            "status": "running",
            "total_steps": 2,
            "meta": {"owner": "ops"},
            "started_at": t(0.0),
            "last_event_at": t(8.0),
            "finished_at": null,
            "elapsed_s": 8.0,
            // One stage of two done, the second half way.
            "percent": 75.0,
            "stages": [
                {"name": "fetch", "status": "succeeded", "done": 4, "total": 4, "percent": 100.0,
                 "items_succeeded": 1, "items_failed": 2, "items_skipped": 1,
                 "started_at": t(0.0), "finished_at": t(6.0), "elapsed_s": 6.0, "eta_s": null,
                 "error": null},
                {"name": "classify", "status": "running", "done": 5, "total": 10, "percent": 50.0,
                 "unit": "docs", "started_at": t(6.0), "elapsed_s": 2.0},
            ],
            "items": {"succeeded": 1, "failed": 2, "skipped": 1, "running": 0},
            "running_items": [],
            "failed_items": [
                {"item": "b", "stage": "fetch", "label": null, "error": "HTTP 503", "at": t(3.0), "seq": 6},
                {"item": "c", "stage": "fetch", "label": "C", "error": null, "at": t(4.0), "seq": 8},
            ],
            "last_error": {"message": "item c failed", "source": "item c", "at": t(4.0), "seq": 8},
            "event_count": 13,
            "last_seq": 13,
            "cancel_requested": false,
        }),
    );
}

#[test]
fn percent_without_total_steps_follows_the_current_counter() {
    let run = (0.0, json!({"event": "run.started", "name": "x"}));
    let stage_a = [
        run.clone(),
        (
            0.0,
            json!({"event": "stage.started", "stage": "a", "total": 4}),
        ),
        (
            1.0,
            json!({"event": "progress", "stage": "a", "done": 1, "elapsed_s": 1}),
        ),
        (
            2.0,
            json!({"event": "stage.finished", "stage": "a", "status": "succeeded", "elapsed_s": 2}),
        ),
        (3.0, json!({"event": "stage.started", "stage": "b"})),
        (
            4.0,
            json!({"event": "progress", "stage": "b", "done": 3, "total": 12, "elapsed_s": 1}),
        ),
    ];
    check(&stage_a[..2], json!({"percent": 0.0}));
    check(&stage_a[..3], json!({"percent": 25.0}));
    // A succeeded stage with a total counts as complete, and keeps the count it
    // reached (its total was an estimate); with no stage running, the run is as far
    // as the last stage.
    check(
        &stage_a[..4],
        json!({"percent": 100.0, "stages": [{"done": 1, "percent": 100.0}]}),
    );
    // A new stage with no total yet: how far the run is cannot be told.
    check(&stage_a[..5], json!({"percent": null}));
    check(&stage_a, json!({"percent": 25.0}));

    // Progress without stages; the total grows as work is discovered.
    let flat = [
        run.clone(),
        (
            1.0,
            json!({"event": "progress", "done": 10, "total": 40, "elapsed_s": 1}),
        ),
        (
            2.0,
            json!({"event": "progress", "done": 20, "total": 100, "elapsed_s": 2}),
        ),
        (
            3.0,
            json!({"event": "progress", "done": 150, "total": 100, "elapsed_s": 3}),
        ),
        (
            4.0,
            json!({"event": "progress", "done": 0, "total": 0, "elapsed_s": 4}),
        ),
    ];
    check(
        &flat[..2],
        json!({"percent": 25.0, "progress": {"done": 10, "total": 40}}),
    );
    check(
        &flat[..3],
        json!({"percent": 20.0, "progress": {"done": 20, "total": 100}}),
    );
    check(
        &flat[..4],
        json!({"percent": 100.0, "progress": {"done": 150}}),
    );
    check(
        &flat,
        json!({"percent": 100.0, "progress": {"done": 0, "total": 0}}),
    );
    // Without any total, there is no percent.
    check(
        &[
            run.clone(),
            (1.0, json!({"event": "progress", "done": 7, "elapsed_s": 1})),
        ],
        json!({"percent": null, "progress": {"done": 7, "total": null}}),
    );

    // With total_steps, each stage is an equal share, failed and skipped ones too.
    check(
        &[
            (
                0.0,
                json!({"event": "run.started", "name": "x", "total_steps": 4}),
            ),
            (
                1.0,
                json!({"event": "stage.finished", "stage": "a", "status": "failed", "elapsed_s": 1}),
            ),
            (
                2.0,
                json!({"event": "stage.finished", "stage": "b", "status": "skipped", "elapsed_s": 0}),
            ),
            (
                2.0,
                json!({"event": "stage.started", "stage": "c", "total": 2}),
            ),
            (
                3.0,
                json!({"event": "progress", "stage": "c", "done": 1, "elapsed_s": 1}),
            ),
        ],
        json!({"percent": 62.5, "last_error": {"message": "stage a failed", "source": "stage a"}}),
    );
}

#[test]
fn a_stage_s_unit_and_message() {
    let steps = [
        (0.0, json!({"event": "run.started", "name": "sync"})),
        (
            0.0,
            json!({"event": "stage.started", "stage": "upload", "total": 100, "unit": "B"}),
        ),
        (
            1.0,
            json!({"event": "progress", "stage": "upload", "done": 10, "elapsed_s": 1, "message": "a.tar.gz"}),
        ),
        (
            2.0,
            json!({"event": "progress", "stage": "upload", "done": 20, "elapsed_s": 2}),
        ),
        (
            3.0,
            json!({"event": "progress", "stage": "upload", "done": 30, "elapsed_s": 3, "message": ""}),
        ),
    ];
    check(
        &steps[..2],
        json!({"stages": [{"unit": "B", "message": null}]}),
    );
    check(&steps[..3], json!({"stages": [{"message": "a.tar.gz"}]}));
    // A tick that says nothing of it keeps it; an empty one takes it back.
    check(
        &steps[..4],
        json!({"stages": [{"message": "a.tar.gz", "done": 20}]}),
    );
    check(&steps, json!({"stages": [{"unit": "B", "message": null}]}));
}

#[test]
fn a_tool_started_again_updates_its_feedback_and_keeps_its_start() {
    let steps = [
        (0.0, json!({"event": "run.started", "name": "agent"})),
        (
            1.0,
            json!({"event": "tool.started", "call_id": "t1", "tool": "crawl", "feedback": "Reading page 1 of 3"}),
        ),
        (
            4.0,
            json!({"event": "tool.started", "call_id": "t1", "tool": "crawl", "feedback": "Reading page 2 of 3"}),
        ),
    ];
    check(
        &steps,
        json!({"tools": {"in_flight": [
            {"call_id": "t1", "status": "running", "feedback": "Reading page 2 of 3", "started_at": t(1.0)},
        ]}}),
    );
}

#[test]
fn tools_from_selection_to_finish() {
    let big_input = "x".repeat(3 * MAX_VALUE_BYTES);
    let steps = [
        (0.0, json!({"event": "run.started", "name": "agent"})),
        (
            1.0,
            json!({"event": "tool.selected", "call_id": "t1", "tool": "search", "input": {"q": "rust"}}),
        ),
        (
            2.0,
            json!({"event": "tool.started", "call_id": "t1", "tool": "search", "feedback": "Searching the docs"}),
        ),
        // A repeated selection of a call in flight changes nothing.
        (
            2.0,
            json!({"event": "tool.selected", "call_id": "t1", "tool": "search"}),
        ),
        (
            3.0,
            json!({"event": "tool.started", "call_id": "t2", "tool": "fetch", "input": {"url": big_input}}),
        ),
        (
            5.0,
            json!({"event": "tool.finished", "call_id": "t1", "tool": "search", "status": "succeeded", "output": "ok"}),
        ),
        (
            6.0,
            json!({"event": "tool.finished", "call_id": "t2", "tool": "fetch", "status": "failed", "error": "404", "elapsed_s": 2.5}),
        ),
        // A finish without a start is still counted.
        (
            7.0,
            json!({"event": "tool.finished", "call_id": "t3", "tool": "calc", "status": "succeeded"}),
        ),
    ];
    check(
        &steps[..2],
        json!({"tools": {"in_flight": [
            {"call_id": "t1", "tool": "search", "status": "selected", "input": {"q": "rust"},
             "feedback": null, "started_at": t(1.0)},
        ], "done": [], "succeeded": 0, "failed": 0}}),
    );
    let state = check(
        &steps[..5],
        json!({"tools": {"in_flight": [
            {"call_id": "t1", "tool": "search", "status": "running", "input": {"q": "rust"},
             "feedback": "Searching the docs", "started_at": t(2.0)},
            {"call_id": "t2", "tool": "fetch", "status": "running", "started_at": t(3.0)},
        ], "done": []}}),
    );
    // A large input is kept as a bounded preview.
    let Some(Value::String(preview)) = &state.tools.in_flight[1].input else {
        panic!("no preview: {:?}", state.tools.in_flight[1].input);
    };
    assert!(
        preview.len() <= MAX_VALUE_BYTES + '…'.len_utf8(),
        "{}",
        preview.len()
    );
    assert!(
        preview.starts_with(r#"{"url":"xxx"#) && preview.ends_with('…'),
        "{preview}"
    );

    check(
        &steps,
        json!({
            "tools": {
                "in_flight": [],
                "done": [
                    {"call_id": "t1", "tool": "search", "status": "succeeded", "elapsed_s": 3.0,
                     "feedback": "Searching the docs", "error": null},
                    {"call_id": "t2", "tool": "fetch", "status": "failed", "elapsed_s": 2.5, "error": "404"},
                    {"call_id": "t3", "tool": "calc", "status": "succeeded", "elapsed_s": 0.0},
                ],
                "succeeded": 2,
                "failed": 1,
            },
            "last_error": {"message": "404", "source": "tool fetch", "at": t(6.0), "seq": 7},
        }),
    );
}

#[test]
fn a_tool_reports_its_own_progress() {
    let steps = [
        (0.0, json!({"event": "run.started", "name": "agent"})),
        (
            0.0,
            json!({"event": "stage.started", "stage": "answer", "total": 4}),
        ),
        (
            0.0,
            json!({"event": "progress", "stage": "answer", "done": 1, "total": 4, "elapsed_s": 0}),
        ),
        (
            1.0,
            json!({"event": "tool.started", "call_id": "t1", "tool": "crawl"}),
        ),
        (
            2.0,
            json!({"event": "progress", "call_id": "t1", "done": 3, "total": 12, "unit": "pages",
                   "message": "Page 3 of 12", "elapsed_s": 1}),
        ),
        // A tick that leaves out the total, the unit and the message keeps them.
        (
            3.0,
            json!({"event": "progress", "call_id": "t1", "done": 6, "elapsed_s": 2}),
        ),
        // A call that is not in flight has no row to move, and nothing else moves.
        (
            3.5,
            json!({"event": "progress", "call_id": "nobody", "done": 99, "total": 100, "elapsed_s": 2}),
        ),
        (
            4.0,
            json!({"event": "tool.finished", "call_id": "t1", "tool": "crawl", "status": "succeeded"}),
        ),
    ];
    check(
        &steps[..6],
        json!({
            "percent": 25.0,
            "stages": [{"name": "answer", "done": 1, "total": 4, "percent": 25.0}],
            "progress": null,
            "tools": {"in_flight": [
                {"call_id": "t1", "status": "running", "progress": {
                    "done": 6, "total": 12, "unit": "pages", "percent": 50.0,
                    "message": "Page 3 of 12", "updated_at": t(3.0)}},
            ]},
        }),
    );
    check(
        &steps,
        json!({
            "percent": 25.0,
            "stages": [{"name": "answer", "done": 1, "total": 4}],
            "progress": null,
            "tools": {"in_flight": [], "done": [
                {"call_id": "t1", "status": "succeeded", "progress": {"done": 6, "total": 12}},
            ]},
        }),
    );
    // Without a total, the percent the tool gave is kept; without either, none.
    let base = &steps[..4];
    let mut with_percent = base.to_vec();
    with_percent.push((
        2.0,
        json!({"event": "progress", "call_id": "t1", "done": 7, "percent": 40, "elapsed_s": 1}),
    ));
    check(
        &with_percent,
        json!({"tools": {"in_flight": [{"progress": {"done": 7, "total": null, "percent": 40.0}}]}}),
    );
    let mut bare = base.to_vec();
    bare.push((
        2.0,
        json!({"event": "progress", "call_id": "t1", "done": 7, "elapsed_s": 1}),
    ));
    check(
        &bare,
        json!({"tools": {"in_flight": [{"progress": {"done": 7, "total": null, "percent": null}}]}}),
    );
}

#[test]
fn llm_calls_text_and_the_agent_loop() {
    let steps = [
        (0.0, json!({"event": "run.started", "name": "agent"})),
        (
            0.5,
            json!({"event": "agent.system_message", "message": "Be brief."}),
        ),
        (1.0, json!({"event": "agent.iteration", "iteration": 1})),
        (
            1.0,
            json!({"event": "llm.request", "call_id": "c1", "provider": "p", "model": "m1"}),
        ),
        (
            2.0,
            json!({"event": "text.delta", "text": "Hel", "call_id": "c1"}),
        ),
        (
            2.0,
            json!({"event": "text.delta", "text": "lo, wörld", "call_id": "c1"}),
        ),
        (
            3.0,
            json!({"event": "llm.response", "call_id": "c1", "stop_reason": "tool_use", "input_tokens": 100, "output_tokens": 20}),
        ),
        (
            3.0,
            json!({"event": "llm.request", "call_id": "c2", "model": "m2"}),
        ),
        (4.0, json!({"event": "agent.preparing_response"})),
        (
            5.0,
            json!({"event": "tool.started", "call_id": "t", "tool": "x"}),
        ),
        (5.0, json!({"event": "agent.preparing_response"})),
        (
            6.0,
            json!({"event": "llm.response", "call_id": "c2", "input_tokens": 50}),
        ),
        (
            7.0,
            json!({"event": "agent.response", "text": "Hello", "iteration": 2}),
        ),
        (
            7.0,
            json!({"event": "agent.history", "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]},
            ]}),
        ),
    ];
    check(
        &steps[..8],
        json!({
            "llm": {"calls": 2, "in_flight": ["c2"], "input_tokens": 100, "output_tokens": 20, "model": "m2"},
            // The next call's text will start on a line of its own.
            "text": "Hello, wörld\n",
            "text_bytes": 14,
            "agent": {"iteration": 1, "preparing_response": false, "response": null, "history_len": 0},
        }),
    );
    check(&steps[..9], json!({"agent": {"preparing_response": true}}));
    // A tool starting means the answer is not being written after all.
    check(
        &steps[..10],
        json!({"agent": {"preparing_response": false}}),
    );
    check(&steps[..11], json!({"agent": {"preparing_response": true}}));
    check(
        &steps,
        json!({
            "llm": {"calls": 2, "in_flight": [], "input_tokens": 150, "output_tokens": 20},
            "agent": {"iteration": 2, "preparing_response": false, "response": "Hello", "history_len": 3},
            "last_error": null,
        }),
    );
    // The next iteration ends the preparation too.
    let mut more = steps[..11].to_vec();
    more.push((8.0, json!({"event": "agent.iteration", "iteration": 2})));
    check(
        &more,
        json!({"agent": {"iteration": 2, "preparing_response": false}}),
    );
}

#[test]
fn a_response_names_the_model_that_answered_and_a_failed_call_is_the_last_error() {
    let steps = [
        (0.0, json!({"event": "run.started", "name": "agent"})),
        (
            1.0,
            json!({"event": "llm.request", "call_id": "c1", "provider": "anthropic", "model": "claude-x"}),
        ),
        (
            3.0,
            json!({"event": "llm.response", "call_id": "c1", "model": "claude-x-20250805", "stop_reason": "end_turn", "ttft_s": 0.8, "elapsed_s": 2.0}),
        ),
        (
            4.0,
            json!({"event": "llm.request", "call_id": "c2", "provider": "anthropic", "model": "claude-x"}),
        ),
        (
            4.5,
            json!({"event": "llm.response", "call_id": "c2", "stop_reason": "error", "error": "overloaded_error: Overloaded (HTTP 529)"}),
        ),
    ];
    check(
        &steps[..3],
        json!({
            "llm": {"calls": 1, "in_flight": [], "model": "claude-x-20250805"},
            "last_error": null,
        }),
    );
    // A request names its model again; a response without one leaves it.
    check(
        &steps,
        json!({
            "llm": {"calls": 2, "in_flight": [], "model": "claude-x"},
            "last_error": {"message": "overloaded_error: Overloaded (HTTP 529)", "source": "llm c2", "at": t(4.5), "seq": 5},
        }),
    );
}

#[test]
fn token_counts_saturate() {
    let max = u64::MAX;
    check(
        &[
            (
                0.0,
                json!({"event": "llm.response", "call_id": "c", "input_tokens": max}),
            ),
            (
                1.0,
                json!({"event": "llm.response", "call_id": "c", "input_tokens": 5, "output_tokens": max}),
            ),
            (
                2.0,
                json!({"event": "llm.response", "call_id": "c", "output_tokens": 1}),
            ),
        ],
        json!({"llm": {"input_tokens": max, "output_tokens": max, "calls": 0}}),
    );
}

#[test]
fn text_keeps_a_bounded_tail_on_character_boundaries() {
    // 12 bytes a delta, of 3-, 2- and 1-byte characters, so that the cut at
    // MAX_TEXT_BYTES falls inside a character.
    let delta = "日本語éa";
    assert_eq!(delta.len(), 12);
    let n = 1000;
    let mut steps = vec![(0.0, json!({"event": "run.started", "name": "t"}))];
    steps.extend((0..n).map(|i| {
        (
            i as f64 * 0.01,
            json!({"event": "text.delta", "text": delta}),
        )
    }));
    let whole = delta.repeat(n);
    assert_ne!(
        (whole.len() - MAX_TEXT_BYTES) % 12,
        0,
        "the cut falls in a character"
    );

    let state = check(&steps, json!({"text_bytes": whole.len()}));
    assert!(state.text.len() <= MAX_TEXT_BYTES, "{}", state.text.len());
    assert!(
        state.text.len() > MAX_TEXT_BYTES - 4,
        "{}",
        state.text.len()
    );
    assert!(
        whole.ends_with(&state.text),
        "the tail of what was streamed"
    );

    // One delta larger than the bound, and a long answer (kept by its head).
    let huge = "€".repeat(MAX_TEXT_BYTES); // 3 bytes each
    let state = check(
        &[
            (
                0.0,
                json!({"event": "text.delta", "text": format!("x{huge}")}),
            ),
            (
                1.0,
                json!({"event": "agent.response", "text": format!("y{huge}")}),
            ),
        ],
        json!({"text_bytes": 1 + huge.len()}),
    );
    assert_eq!(state.text, "€".repeat(MAX_TEXT_BYTES / 3));
    let response = state.agent.response.as_deref().unwrap();
    assert!(response.len() <= MAX_TEXT_BYTES && response.len() > MAX_TEXT_BYTES - 3);
    assert!(format!("y{huge}").starts_with(response));
}

#[test]
fn logs_and_errors() {
    let steps = [
        (
            0.0,
            json!({"event": "log", "level": "debug", "message": "d"}),
        ),
        (
            1.0,
            json!({"event": "log", "level": "info", "message": "i"}),
        ),
        (
            2.0,
            json!({"event": "log", "level": "warn", "message": "w"}),
        ),
        (
            3.0,
            json!({"event": "log", "level": "error", "message": "e"}),
        ),
    ];
    check(
        &steps[..3],
        json!({"last_error": null, "logs": [{"message": "i"}, {"message": "w"}]}),
    );
    check(
        &steps,
        json!({
            "logs": [
                {"level": "info", "message": "i", "at": t(1.0)},
                {"level": "warn", "message": "w", "at": t(2.0)},
                {"level": "error", "message": "e", "at": t(3.0)},
            ],
            "last_error": {"message": "e", "source": "log", "seq": 4},
            // A run without run.started starts at its first event.
            "started_at": t(0.0),
            "name": "",
        }),
    );
}

#[test]
fn stalled_and_cancel_requested() {
    let steps = [
        (0.0, json!({"event": "run.started", "name": "x"})),
        (1.0, json!({"event": "progress", "done": 1, "elapsed_s": 1})),
        (61.0, json!({"event": "run.stalled", "silent_for_s": 60})),
        // The hub's own events do not show the producer is alive.
        (
            62.0,
            json!({"event": "run.cancel_requested", "reason": "user"}),
        ),
        (70.0, json!({"event": "run.stalled", "silent_for_s": 69})),
        // Anything from the producer does.
        (
            71.0,
            json!({"event": "heartbeat", "elapsed_s": 71, "note": "still here"}),
        ),
        (140.0, json!({"event": "run.stalled", "silent_for_s": 69})),
        (141.0, json!({"event": "custom.ping"})),
        (200.0, json!({"event": "run.stalled", "silent_for_s": 59})),
        (201.0, json!({"event": "run.cancel_requested"})),
    ];
    check(
        &steps[..2],
        json!({"status": "running", "cancel_requested": false}),
    );
    check(
        &steps[..3],
        json!({"status": "stalled", "cancel_requested": false}),
    );
    check(
        &steps[..4],
        json!({"status": "stalled", "cancel_requested": true, "cancel_reason": "user"}),
    );
    check(&steps[..5], json!({"status": "stalled"}));
    check(
        &steps[..6],
        json!({"status": "running", "heartbeat_note": "still here", "cancel_requested": true}),
    );
    check(&steps[..7], json!({"status": "stalled"}));
    check(&steps[..8], json!({"status": "running"}));
    check(
        &steps,
        json!({"status": "stalled", "cancel_requested": true, "cancel_reason": "user",
               "elapsed_s": 201.0, "event_count": 10}),
    );
}

#[test]
fn a_finished_run_stays_finished() {
    let steps = [
        (
            0.0,
            json!({"event": "run.started", "name": "x", "total_steps": 3}),
        ),
        (
            1.0,
            json!({"event": "stage.started", "stage": "a", "total": 10}),
        ),
        (
            2.0,
            json!({"event": "progress", "stage": "a", "done": 5, "elapsed_s": 1}),
        ),
        (
            3.0,
            json!({"event": "run.finished", "status": "succeeded", "result": {"n": 5}}),
        ),
        (
            4.0,
            json!({"event": "run.finished", "status": "failed", "error": "late"}),
        ),
        (5.0, json!({"event": "run.stalled", "silent_for_s": 60})),
        (
            6.0,
            json!({"event": "progress", "stage": "a", "done": 6, "elapsed_s": 5}),
        ),
        (7.0, json!({"event": "heartbeat", "elapsed_s": 7})),
    ];
    let finished = json!({
        "status": "succeeded",
        "finished_at": t(3.0),
        "elapsed_s": 3.0,
        "percent": 100.0,
        "eta_s": null,
        "result": {"n": 5},
        "last_error": null,
    });
    check(&steps[..4], finished.clone());
    check(&steps, finished.clone());
    check(
        &steps,
        json!({"last_event_at": t(7.0), "event_count": 8, "last_seq": 8}),
    );
    // Seen later, a finished run has not aged.
    check_at(&steps, Some(1000.0), finished);

    // Failed and cancelled: no ETA; a failure without a message still says so, and one
    // with a message replaces an earlier error.
    // One stage of one: the run's ETA is the stage's.
    let base = [
        (
            0.0,
            json!({"event": "run.started", "name": "x", "total_steps": 1}),
        ),
        (
            0.0,
            json!({"event": "stage.started", "stage": "a", "total": 100}),
        ),
        (
            1.0,
            json!({"event": "progress", "stage": "a", "done": 0, "elapsed_s": 0}),
        ),
        (
            2.0,
            json!({"event": "progress", "stage": "a", "done": 10, "elapsed_s": 1}),
        ),
        (
            3.0,
            json!({"event": "progress", "stage": "a", "done": 20, "elapsed_s": 2}),
        ),
    ];
    let state = check(&base, json!({"status": "running"}));
    assert!(state.eta_s.is_some(), "the test needs an ETA to lose");
    let mut failed = base.to_vec();
    failed.push((4.0, json!({"event": "run.finished", "status": "failed"})));
    check(
        &failed,
        // Its one announced stage ended (failed): the run counts it whole.
        json!({"status": "failed", "eta_s": null, "percent": 100.0, "stages": [{"eta_s": null}],
               "last_error": {"message": "the run failed", "source": "run", "seq": 6}}),
    );
    failed.push((5.0, json!({"event": "run.finished", "status": "succeeded"})));
    check(&failed, json!({"status": "failed", "finished_at": t(4.0)}));
    let mut cancelled = base.to_vec();
    cancelled.push((
        4.0,
        json!({"event": "item.finished", "item": "i", "status": "failed", "error": "bad"}),
    ));
    cancelled.push((5.0, json!({"event": "run.finished", "status": "cancelled"})));
    check(
        &cancelled,
        json!({"status": "cancelled", "eta_s": null, "last_error": {"message": "bad", "source": "item i"}}),
    );
    let mut failed_with = cancelled[..6].to_vec();
    failed_with.push((
        5.0,
        json!({"event": "run.finished", "status": "failed", "error": "gave up"}),
    ));
    check(
        &failed_with,
        json!({"status": "failed", "last_error": {"message": "gave up", "source": "run"}}),
    );
}

#[test]
fn eta_appears_after_two_units_and_counts_down() {
    // One unit a second out of 10, counted with `progress` from 0, in a run of one
    // stage: the run's ETA is the stage's.
    let mut steps = vec![
        (
            0.0,
            json!({"event": "run.started", "name": "x", "total_steps": 1}),
        ),
        (
            0.0,
            json!({"event": "stage.started", "stage": "s", "total": 10}),
        ),
    ];
    steps.extend((0..=5).map(|i| {
        (
            i as f64,
            json!({"event": "progress", "stage": "s", "done": i, "elapsed_s": i}),
        )
    }));
    // 0 and 1 unit done: unknown, and absent rather than 0.
    check(
        &steps[..3],
        json!({"eta_s": null, "stages": [{"eta_s": null, "rate": null}]}),
    );
    check(
        &steps[..4],
        json!({"eta_s": null, "stages": [{"eta_s": null, "rate": null}]}),
    );
    // 2 units: 8 left at 1/s.
    check(
        &steps[..5],
        json!({"eta_s": 8.0, "stages": [{"eta_s": 8.0, "rate": 1.0}]}),
    );
    check(&steps, json!({"eta_s": 5.0, "elapsed_s": 5.0}));

    // Seen later, the ETA counts down from its last update for two typical gaps (2 s
    // here), then holds: it neither grows nor runs to 0 as if all were well, and the
    // unit is overdue once it has run 6 typical gaps. Elapsed time keeps growing.
    check_at(&steps, Some(5.0), json!({"eta_s": 5.0, "elapsed_s": 5.0}));
    check_at(
        &steps,
        Some(6.5),
        json!({"eta_s": 3.5, "elapsed_s": 6.5, "stages": [{"eta_s": 3.5, "elapsed_s": 6.5, "overdue": null}]}),
    );
    check_at(&steps, Some(7.5), json!({"eta_s": 3.0, "elapsed_s": 7.5}));
    check_at(
        &steps,
        Some(60.0),
        json!({"eta_s": 3.0, "elapsed_s": 60.0,
               "stages": [{"overdue": {"running_s": 55.0, "typical_s": 1.0}}]}),
    );
    // A clock behind the last event neither grows the ETA nor shrinks elapsed time.
    check_at(&steps, Some(2.0), json!({"eta_s": 5.0, "elapsed_s": 5.0}));

    // A counter that goes back (work was reset) forgets its estimate.
    let mut reset = steps.clone();
    reset.push((
        6.0,
        json!({"event": "progress", "stage": "s", "done": 1, "elapsed_s": 6}),
    ));
    check(
        &reset,
        json!({"eta_s": null, "stages": [{"done": 1, "rate": null, "eta_s": null}]}),
    );
    reset.push((
        7.0,
        json!({"event": "progress", "stage": "s", "done": 2, "elapsed_s": 7}),
    ));
    reset.push((
        8.0,
        json!({"event": "progress", "stage": "s", "done": 3, "elapsed_s": 8}),
    ));
    check(
        &reset,
        json!({"eta_s": 7.0, "stages": [{"done": 3, "rate": 1.0}]}),
    );

    // Never up: not with time, not at any moment.
    let state = fold(run_id(RUN), &script(&steps));
    let mut last = f64::INFINITY;
    for tenth in 0..300 {
        let eta = state.at(at(tenth as f64 / 10.0)).eta_s.expect("known");
        assert!(
            eta <= last && eta >= 0.0,
            "{eta} after {last} at {tenth}/10 s"
        );
        last = eta;
    }
    assert!((last - 3.0).abs() < 1e-9, "{last}");
}

#[test]
fn eta_from_items_and_from_the_producer() {
    // Items finishing one a second in a stage of 10, the run's only one: unknown after
    // one.
    let mut steps = vec![
        (
            0.0,
            json!({"event": "run.started", "name": "x", "total_steps": 1}),
        ),
        (
            0.0,
            json!({"event": "stage.started", "stage": "s", "total": 10}),
        ),
    ];
    steps.extend((1..=5).map(|i| {
        (
            i as f64,
            json!({"event": "item.finished", "item": format!("i{i}"), "stage": "s", "status": "succeeded"}),
        )
    }));
    check(
        &steps[..3],
        json!({"eta_s": null, "stages": [{"done": 1, "eta_s": null}]}),
    );
    check(
        &steps,
        json!({"eta_s": 5.0, "stages": [{"done": 5, "rate": 1.0, "eta_s": 5.0}]}),
    );

    // Counted by items, the stage's first observation is its first finished item, so
    // the estimate needs two more (see the progress test for two from 0).
    check(
        &steps[..5],
        json!({"eta_s": 7.0, "stages": [{"done": 3, "rate": 1.0}]}),
    );
    // A producer's own rate and ETA win over the fold's.
    let mut told = steps.clone();
    told.push((
        5.5,
        json!({"event": "progress", "stage": "s", "done": 6, "rate": 4.0, "eta_s": 1.0, "elapsed_s": 5.5}),
    ));
    check(
        &told,
        json!({"eta_s": 1.0, "stages": [{"rate": 4.0, "eta_s": 1.0}]}),
    );

    // A finished stage has no ETA.
    let mut done = steps.clone();
    done.push((
        6.0,
        json!({"event": "stage.finished", "stage": "s", "status": "succeeded", "elapsed_s": 6}),
    ));
    check(
        &done,
        json!({"eta_s": null, "stages": [{"eta_s": null, "done": 5, "percent": 100.0}]}),
    );
}

#[test]
fn lists_stay_bounded() {
    let n = 200;
    let mut steps = vec![];
    let mut clock = 0.0;
    let mut tick = || {
        clock += 0.25;
        clock
    };
    for i in 0..n {
        steps.push((
            tick(),
            json!({"event": "item.started", "item": format!("i{i}")}),
        ));
        steps.push((
            tick(),
            json!({"event": "llm.request", "call_id": format!("c{i}")}),
        ));
        steps.push((
            tick(),
            json!({"event": "tool.selected", "call_id": format!("s{i}"), "tool": "x"}),
        ));
    }
    let state = check(
        &steps,
        json!({"items": {"running": n}, "llm": {"calls": n}, "tools": {"done": []}}),
    );
    assert_eq!(state.running_items.len(), MAX_LISTED_ITEMS);
    assert_eq!(
        state.running_items[0].item, "i0",
        "the first to start are listed"
    );
    assert_eq!(state.llm.in_flight.len(), MAX_LISTED_ITEMS);
    assert_eq!(state.tools.in_flight.len(), MAX_LISTED_TOOLS);

    for i in 0..n {
        steps.push((
            tick(),
            json!({"event": "item.finished", "item": format!("i{i}"), "status": "failed"}),
        ));
        steps.push((
            tick(),
            json!({"event": "tool.started", "call_id": format!("t{i}"), "tool": "x"}),
        ));
        steps.push((tick(), json!({"event": "tool.finished", "call_id": format!("t{i}"), "tool": "x", "status": "succeeded"})));
        steps.push((
            tick(),
            json!({"event": "log", "level": "info", "message": format!("log {i}")}),
        ));
    }
    let last = n - 1;
    let state = check(
        &steps,
        json!({
            "items": {"running": 0, "failed": n},
            "running_items": [],
            "tools": {"succeeded": n},
            "last_error": {"source": format!("item i{last}")},
        }),
    );
    assert_eq!(state.failed_items.len(), MAX_LISTED_FAILURES);
    assert_eq!(
        state.failed_items.last().unwrap().item,
        format!("i{last}"),
        "newest last"
    );
    assert_eq!(state.tools.done.len(), MAX_LISTED_TOOLS);
    assert_eq!(state.tools.done.last().unwrap().call_id, format!("t{last}"));
    assert_eq!(state.logs.len(), MAX_LISTED_LOGS);
    assert_eq!(state.logs.last().unwrap().message, format!("log {last}"));
    assert_eq!(
        state.logs[0].message,
        format!("log {}", n as usize - MAX_LISTED_LOGS)
    );
}

#[test]
fn the_state_has_the_fields_of_spec_section_4() {
    let state = check(
        &[
            (
                0.0,
                json!({"event": "run.started", "name": "x", "parent": "p", "total_steps": 1}),
            ),
            (
                1.0,
                json!({"event": "stage.started", "stage": "a", "total": 4}),
            ),
            (
                2.0,
                json!({"event": "progress", "stage": "a", "done": 0, "elapsed_s": 1}),
            ),
            (
                3.0,
                json!({"event": "progress", "stage": "a", "done": 2, "elapsed_s": 2}),
            ),
        ],
        json!({}),
    );
    assert_eq!(state.status, RunStatus::Running);
    let json = serde_json::to_value(&state).unwrap();
    for field in [
        "id",
        "name",
        "parent",
        "status",
        "started_at",
        "last_event_at",
        "elapsed_s",
        "percent",
        "eta_s",
        "stages",
        "items",
        "running_items",
        "failed_items",
        "tools",
        "text",
        "cancel_requested",
        "event_count",
        "last_seq",
    ] {
        assert!(json.get(field).is_some(), "`{field}` in {json:#}");
    }
    for field in ["name", "status", "done", "total", "elapsed_s"] {
        assert!(
            json["stages"][0].get(field).is_some(),
            "stage `{field}` in {json:#}"
        );
    }
    for field in ["in_flight", "done"] {
        assert!(
            json["tools"].get(field).is_some(),
            "tools `{field}` in {json:#}"
        );
    }
}
