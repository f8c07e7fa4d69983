//! Property tests over generated event streams.
//!
//! The strategy writes arbitrary *valid* streams of run `run-1`: any mix of every event
//! type, with plausible and adversarial values (repeated ids, finishes without starts,
//! counters that go down, totals of `u64::MAX`, unicode and control characters in text),
//! `seq` strictly increasing and `ts` never decreasing. Case counts are kept moderate so
//! that the binary runs in seconds in a debug build.

use herald_protocol::{
    AgentHistory, AgentIteration, AgentPreparingResponse, AgentResponse, AgentSystemMessage,
    BatchFormat, ChatMessage, Custom, Draft, Event, EventBody, Heartbeat, ItemFinished,
    ItemStarted, LlmRequest, LlmResponse, Log, LogLevel, MAX_LISTED_FAILURES, MAX_LISTED_ITEMS,
    MAX_LISTED_LOGS, MAX_LISTED_TOOLS, MAX_TEXT_BYTES, MAX_VALUE_BYTES, PlannedStage, Progress,
    RunCancelRequested, RunFinished, RunId, RunOutcome, RunStalled, RunStarted, RunState,
    RunStatus, StageFinished, StageStarted, StepOutcome, TextDelta, Timestamp, ToolFinished,
    ToolOutcome, ToolSelected, ToolStarted, fold, parse_batch, parse_event,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::strategy::Union;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{Map, Value};

use crate::util::{RUN, run_id};

// ---------------------------------------------------------------------------------------
// Strategies.

/// Names drawn from a small pool most of the time, so that starts and finishes, stages
/// and items, calls and their ends meet; any non-empty text otherwise.
fn name(pool: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![
        4 => proptest::sample::select(pool).prop_map(str::to_owned),
        1 => "(?s).{1,12}",
    ]
    .boxed()
}

fn stage_name() -> BoxedStrategy<String> {
    name(&["fetch", "classify", "summarize", "日本語"])
}

/// Stages declared ahead in `run.started`: some of the stage names, each once, with
/// sizes.
fn planned_stages() -> BoxedStrategy<Vec<PlannedStage>> {
    let names = ["fetch", "classify", "summarize", "日本語"];
    proptest::sample::subsequence(names.to_vec(), 0..=names.len())
        .prop_flat_map(|names| {
            let n = names.len();
            (
                Just(names),
                vec(option::of(count()), n),
                vec(option::of(seconds()), n),
            )
        })
        .prop_map(|(names, totals, weights)| {
            names
                .into_iter()
                .zip(totals)
                .zip(weights)
                .map(|((stage, total), total_weight)| PlannedStage {
                    stage: stage.to_owned(),
                    total,
                    total_weight,
                })
                .collect()
        })
        .boxed()
}

/// A range around an ETA, in order as the parser requires: `(eta, low, high)`.
fn eta_range() -> BoxedStrategy<(Option<f64>, Option<f64>, Option<f64>)> {
    (option::of(seconds()), seconds(), seconds())
        .prop_map(|(eta, a, b)| match eta {
            Some(eta) => (Some(eta), Some(a.min(eta)), Some(b.max(eta))),
            None => (None, Some(a.min(b)), Some(a.max(b))),
        })
        .boxed()
}

fn item_name() -> BoxedStrategy<String> {
    name(&["i1", "i2", "i3", "i4", "doc/17"])
}

fn call_id() -> BoxedStrategy<String> {
    name(&["c1", "c2", "c3"])
}

fn tool_name() -> BoxedStrategy<String> {
    name(&["search", "fetch"])
}

/// Any text, possibly empty: unicode, newlines, control characters; now and then long
/// multi-byte text so that the bounded tails are exercised.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        6 => "(?s).{0,24}",
        1 => (1usize..400).prop_map(|n| "日本é".repeat(n)),
        1 => Just(String::new()),
    ]
    .boxed()
}

fn count() -> BoxedStrategy<u64> {
    prop_oneof![
        4 => 0u64..20,
        2 => 0u64..100_000,
        1 => Just(u64::MAX),
        1 => any::<u64>(),
    ]
    .boxed()
}

/// A non-negative finite number of seconds: zero (of either sign), plausible values,
/// and the extremes.
///
/// Values are decimals of at most microsecond precision (and the extremes, which
/// happen to read back exactly): serde_json, built without its `float_roundtrip`
/// feature, reads some 17-digit floats back one ULP off (`1.2849147831844962e61`,
/// about one in ten uniform draws from 0..100), which the wire property would report.
fn seconds() -> BoxedStrategy<f64> {
    prop_oneof![
        2 => Just(0.0),
        1 => Just(-0.0),
        6 => (0u32..100_000).prop_map(|ms| f64::from(ms) / 1e3),
        2 => (0u64..1_000_000_000_000_000).prop_map(|us| us as f64 / 1e6),
        1 => Just(f64::MAX),
        1 => Just(f64::MIN_POSITIVE),
        1 => Just(5e-324),
    ]
    .boxed()
}

fn percent() -> BoxedStrategy<f64> {
    prop_oneof![
        Just(0.0),
        Just(100.0),
        (0u32..=100_000).prop_map(|k| f64::from(k) / 1e3),
    ]
    .boxed()
}

/// Any JSON value; numbers include floats and the integer extremes.
fn json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop_oneof![
            any::<i32>().prop_map(|k| f64::from(k) / 1e3),
            Just(f64::MAX),
            Just(-f64::MAX),
            Just(-5e-324),
        ]
        .prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            vec(("(?s).{0,6}", inner), 0..4)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
    .boxed()
}

/// An optional JSON value. `Some(null)` is left out: on the wire it is the same as an
/// absent field, and reads back as `None` (see `wire::a_null_optional_value_reads_back_as_absent`).
fn opt_json() -> BoxedStrategy<Option<Value>> {
    option::of(json().prop_filter("null is absent", |v| !v.is_null())).boxed()
}

/// An object whose fields are in no particular order (the order must survive the wire).
fn object() -> BoxedStrategy<Map<String, Value>> {
    vec(("(?s).{0,8}", json()), 0..5)
        .prop_map(|fields| fields.into_iter().collect())
        .boxed()
}

fn step_outcome() -> BoxedStrategy<StepOutcome> {
    prop_oneof![
        Just(StepOutcome::Succeeded),
        Just(StepOutcome::Failed),
        Just(StepOutcome::Skipped)
    ]
    .boxed()
}

pub(crate) fn body() -> BoxedStrategy<EventBody> {
    let o = |s: BoxedStrategy<String>| option::of(s);
    let arms: Vec<(u32, BoxedStrategy<EventBody>)> = vec![
        (
            2,
            (
                text(),
                option::of(count()),
                option::of(object()),
                option::of(planned_stages()),
            )
                .prop_map(|(name, total_steps, meta, stages)| {
                    RunStarted {
                        name,
                        total_steps,
                        meta,
                        stages,
                    }
                    .into()
                })
                .boxed(),
        ),
        (
            1,
            (
                prop_oneof![
                    Just(RunOutcome::Succeeded),
                    Just(RunOutcome::Failed),
                    Just(RunOutcome::Cancelled)
                ],
                opt_json(),
                o(text()),
            )
                .prop_map(|(status, result, error)| {
                    RunFinished {
                        status,
                        result,
                        error,
                    }
                    .into()
                })
                .boxed(),
        ),
        (
            1,
            o(text())
                .prop_map(|reason| RunCancelRequested { reason }.into())
                .boxed(),
        ),
        (
            2,
            seconds()
                .prop_map(|silent_for_s| RunStalled { silent_for_s }.into())
                .boxed(),
        ),
        (
            2,
            (seconds(), o(text()))
                .prop_map(|(elapsed_s, note)| Heartbeat { elapsed_s, note }.into())
                .boxed(),
        ),
        (
            3,
            (
                stage_name(),
                option::of(count()),
                o(text()),
                option::of(seconds()),
            )
                .prop_map(|(stage, total, unit, total_weight)| {
                    StageStarted {
                        stage,
                        total,
                        unit,
                        total_weight,
                    }
                    .into()
                })
                .boxed(),
        ),
        (
            2,
            (stage_name(), step_outcome(), o(text()), seconds())
                .prop_map(|(stage, status, error, elapsed_s)| {
                    StageFinished {
                        stage,
                        status,
                        error,
                        elapsed_s,
                    }
                    .into()
                })
                .boxed(),
        ),
        (
            6,
            (
                o(stage_name()),
                count(),
                option::of(count()),
                o(text()),
                option::of(percent()),
                option::of(seconds()),
                option::of(seconds()),
                seconds(),
                o(text()),
                (
                    option::of(eta_range()),
                    option::of(seconds()),
                    option::of(seconds()),
                ),
            )
                .prop_map(
                    |(stage, done, total, unit, percent, rate, eta_s, elapsed_s, message, more)| {
                        let (range, weight_a, weight_b) = more;
                        let (eta_s, eta_low_s, eta_high_s) = range.unwrap_or((eta_s, None, None));
                        // Weights in order: the total not below the weight done.
                        let (done_weight, total_weight) = match (weight_a, weight_b) {
                            (Some(a), Some(b)) => (Some(a.min(b)), Some(a.max(b))),
                            other => other,
                        };
                        Progress {
                            stage,
                            call_id: None,
                            done,
                            total,
                            unit,
                            percent,
                            rate,
                            eta_s,
                            elapsed_s,
                            message,
                            done_weight,
                            total_weight,
                            eta_low_s,
                            eta_high_s,
                        }
                        .into()
                    },
                )
                .boxed(),
        ),
        (
            5,
            (item_name(), o(stage_name()), o(text()))
                .prop_map(|(item, stage, label)| ItemStarted { item, stage, label }.into())
                .boxed(),
        ),
        (
            5,
            (
                item_name(),
                o(stage_name()),
                step_outcome(),
                o(text()),
                option::of(seconds()),
                option::of(seconds()),
            )
                .prop_map(|(item, stage, status, error, elapsed_s, weight)| {
                    ItemFinished {
                        item,
                        stage,
                        status,
                        error,
                        elapsed_s,
                        weight,
                    }
                    .into()
                })
                .boxed(),
        ),
        (
            3,
            (
                prop_oneof![
                    Just(LogLevel::Debug),
                    Just(LogLevel::Info),
                    Just(LogLevel::Warn),
                    Just(LogLevel::Error)
                ],
                text(),
            )
                .prop_map(|(level, message)| Log { level, message }.into())
                .boxed(),
        ),
        (
            1,
            prop_oneof![1u64..5, Just(u64::MAX)]
                .prop_map(|iteration| AgentIteration { iteration }.into())
                .boxed(),
        ),
        (
            1,
            vec(
                (name(&["system", "user", "assistant", "tool"]), json())
                    .prop_map(|(role, content)| ChatMessage { role, content }),
                0..4,
            )
            .prop_map(|messages| AgentHistory { messages }.into())
            .boxed(),
        ),
        (
            1,
            text()
                .prop_map(|message| AgentSystemMessage { message }.into())
                .boxed(),
        ),
        (
            2,
            (call_id(), o(text()), o(text()))
                .prop_map(|(call_id, provider, model)| {
                    LlmRequest {
                        call_id,
                        provider,
                        model,
                    }
                    .into()
                })
                .boxed(),
        ),
        (
            2,
            (
                (call_id(), o(text()), o(text())),
                (option::of(count()), option::of(count())),
                (option::of(seconds()), option::of(seconds()), o(text())),
            )
                .prop_map(
                    |(
                        (call_id, model, stop_reason),
                        (input_tokens, output_tokens),
                        (ttft_s, elapsed_s, error),
                    )| {
                        LlmResponse {
                            call_id,
                            model,
                            stop_reason,
                            input_tokens,
                            output_tokens,
                            ttft_s,
                            elapsed_s,
                            error,
                        }
                        .into()
                    },
                )
                .boxed(),
        ),
        (
            4,
            (text(), o(call_id()))
                .prop_map(|(text, call_id)| TextDelta { text, call_id }.into())
                .boxed(),
        ),
        (
            2,
            (call_id(), tool_name(), opt_json())
                .prop_map(|(call_id, tool, input)| {
                    ToolSelected {
                        call_id,
                        tool,
                        input,
                    }
                    .into()
                })
                .boxed(),
        ),
        (
            3,
            (call_id(), tool_name(), opt_json(), o(text()))
                .prop_map(|(call_id, tool, input, feedback)| {
                    ToolStarted {
                        call_id,
                        tool,
                        input,
                        feedback,
                    }
                    .into()
                })
                .boxed(),
        ),
        (
            3,
            (
                call_id(),
                tool_name(),
                prop_oneof![Just(ToolOutcome::Succeeded), Just(ToolOutcome::Failed)],
                opt_json(),
                o(text()),
                option::of(seconds()),
            )
                .prop_map(|(call_id, tool, status, output, error, elapsed_s)| {
                    ToolFinished {
                        call_id,
                        tool,
                        status,
                        output,
                        error,
                        elapsed_s,
                    }
                    .into()
                })
                .boxed(),
        ),
        (1, Just(AgentPreparingResponse {}.into()).boxed()),
        (
            1,
            (text(), option::of(1u64..5))
                .prop_map(|(text, iteration)| AgentResponse { text, iteration }.into())
                .boxed(),
        ),
        (
            1,
            ("[a-z0-9_]{1,10}", object())
                .prop_filter_map("envelope field names are reserved", |(name, fields)| {
                    Custom::new(&name, fields).map(EventBody::Custom)
                })
                .boxed(),
        ),
    ];
    Union::new_weighted(arms).boxed()
}

/// Idempotency keys: valid, and often repeated.
pub(crate) fn event_id() -> BoxedStrategy<Option<String>> {
    option::of(prop_oneof![
        3 => proptest::sample::select(&["k1", "k2", "ключ 🔑"][..]).prop_map(str::to_owned),
        1 => Just("k".repeat(128)),
        1 => "[a-zA-Z0-9 ./:_-]{1,40}",
    ])
    .boxed()
}

pub(crate) fn parent() -> BoxedStrategy<Option<RunId>> {
    option::of(
        proptest::sample::select(&["caller", "parent.run:7", "run-1"][..])
            .prop_map(|s| RunId::new(s).unwrap()),
    )
    .boxed()
}

/// Microseconds to the next event: often none (the same instant), up to hours.
fn gap_us() -> BoxedStrategy<i64> {
    prop_oneof![
        3 => Just(0i64),
        3 => 0i64..2_000_000,
        1 => 0i64..86_400_000_000,
    ]
    .boxed()
}

/// A valid stream of run `run-1`.
fn stream(max_len: usize) -> impl Strategy<Value = Vec<Event>> {
    let start = 946_684_800_000_000i64..4_102_444_800_000_000; // 2000 to 2100
    let step = (1u64..=3, gap_us(), event_id(), parent(), body());
    (start, vec(step, 0..max_len)).prop_map(|(start, steps)| {
        let run = run_id(RUN);
        let (mut seq, mut micros) = (0, start);
        steps
            .into_iter()
            .map(|(seq_step, gap, id, parent, body)| {
                seq += seq_step;
                micros += gap;
                Event {
                    run: run.clone(),
                    seq,
                    ts: Timestamp::from_unix_micros(micros),
                    id,
                    parent,
                    body,
                }
            })
            .collect()
    })
}

// ---------------------------------------------------------------------------------------
// Invariants of a state.

/// What must hold of any state, whatever it was folded from.
#[track_caller]
fn check_bounds(state: &RunState) {
    assert!(state.running_items.len() <= MAX_LISTED_ITEMS);
    assert!(state.failed_items.len() <= MAX_LISTED_FAILURES);
    assert!(state.tools.in_flight.len() <= MAX_LISTED_TOOLS);
    assert!(state.tools.done.len() <= MAX_LISTED_TOOLS);
    assert!(state.llm.in_flight.len() <= MAX_LISTED_ITEMS);
    assert!(state.logs.len() <= MAX_LISTED_LOGS);
    assert!(
        state.text.len() <= MAX_TEXT_BYTES,
        "text of {} bytes",
        state.text.len()
    );
    assert!(state.text.len() as u64 <= state.text_bytes);
    if let Some(response) = &state.agent.response {
        assert!(response.len() <= MAX_TEXT_BYTES);
    }
    for call in state.tools.in_flight.iter().chain(&state.tools.done) {
        // A large value is kept as a string preview of its JSON text: the string is
        // bounded (its own JSON text may be longer, by escapes).
        let len = match &call.input {
            None => 0,
            Some(Value::String(preview)) => preview.len(),
            Some(value) => value.to_string().len(),
        };
        assert!(len <= MAX_VALUE_BYTES + '…'.len_utf8(), "{:?}", call.input);
    }
    assert!(state.items.running <= state.event_count);
    assert!(
        state.elapsed_s.is_finite() && state.elapsed_s >= 0.0,
        "{}",
        state.elapsed_s
    );
    let counters = state
        .stages
        .iter()
        .map(|s| &s.progress)
        .chain(state.progress.as_ref());
    for c in counters {
        assert!(
            c.percent.is_none_or(|p| (0.0..=100.0).contains(&p)),
            "{:?}",
            c.percent
        );
        for x in [c.rate, c.eta_s, c.eta_low_s, c.eta_high_s, c.done_weight] {
            assert!(x.is_none_or(|x| x.is_finite() && x >= 0.0), "{x:?}");
        }
        check_range(c.eta_s, c.eta_low_s, c.eta_high_s);
    }
    check_range(state.eta_s, state.eta_low_s, state.eta_high_s);
    assert!(
        state.percent.is_none_or(|p| (0.0..=100.0).contains(&p)),
        "{:?}",
        state.percent
    );
    assert!(
        state.eta_s.is_none_or(|x| x.is_finite() && x >= 0.0),
        "{:?}",
        state.eta_s
    );
    if state.status.is_terminal() {
        assert_eq!(state.eta_s, None, "a finished run has no ETA");
    }

    let json = serde_json::to_value(state).expect("the state serializes");
    let status = json["status"].as_str().expect("a status string");
    assert!(
        ["running", "stalled", "succeeded", "failed", "cancelled"].contains(&status),
        "{status}"
    );
    assert_eq!(status, state.status.as_str());
}

/// A range is there with its point, and in order around it.
#[track_caller]
fn check_range(eta: Option<f64>, low: Option<f64>, high: Option<f64>) {
    match (eta, low, high) {
        (None, None, None) => {}
        (Some(eta), Some(low), Some(high)) => {
            assert!(low <= eta && eta <= high, "{low} <= {eta} <= {high}");
        }
        other => panic!("a range without its point, or a point without its range: {other:?}"),
    }
}

/// The status docs/protocol.md#status describes, from the previous one and the next event.
fn next_status(status: RunStatus, body: &EventBody) -> RunStatus {
    match body {
        _ if status.is_terminal() => status,
        EventBody::RunFinished(b) => b.status.into(),
        EventBody::RunStalled(_) => RunStatus::Stalled,
        EventBody::RunCancelRequested(_) => status,
        _ => RunStatus::Running,
    }
}

// ---------------------------------------------------------------------------------------
// Properties.

pub(crate) fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Beside this file, as `props.proptest-regressions`: the default looks for a
        // `lib.rs` or `main.rs`, which a `tests/<name>.rs` binary does not have.
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// Folding every prefix of any stream never panics, keeps every bound, follows the
    /// status rules of docs/protocol.md#status, and counts what it folded.
    #[test]
    fn every_prefix_folds_within_bounds(events in stream(80)) {
        let mut state = RunState::new(run_id(RUN));
        let mut status = RunStatus::Running;
        for (i, event) in events.iter().enumerate() {
            state.apply(event);
            status = next_status(status, &event.body);
            prop_assert_eq!(state.status, status, "after event {}: {:?}", i, event.body);
            prop_assert_eq!(state.event_count, i as u64 + 1);
            prop_assert_eq!(state.last_seq, event.seq);
            prop_assert_eq!(state.last_event_at, Some(event.ts));
            check_bounds(&state);
        }
    }

    /// Seen at any later time the state keeps its bounds, its elapsed time grows
    /// with the clock (until the run finishes), and its ETA never grows.
    #[test]
    fn the_state_seen_later(
        events in stream(60),
        later_us in vec(0i64..10_000_000_000, 1..6),
    ) {
        let state = fold(run_id(RUN), &events);
        let Some(last) = state.last_event_at else {
            return Ok(());
        };
        let mut nows: Vec<i64> = later_us.iter().map(|d| last.unix_micros() + d).collect();
        nows.sort_unstable();
        let mut previous: Option<RunState> = None;
        for now in nows {
            let seen = state.at(Timestamp::from_unix_micros(now));
            check_bounds(&seen);
            prop_assert_eq!(seen.status, state.status);
            prop_assert!(seen.elapsed_s >= state.elapsed_s);
            if let Some(prev) = &previous {
                prop_assert!(seen.elapsed_s >= prev.elapsed_s);
                if let (Some(a), Some(b)) = (prev.eta_s, seen.eta_s) {
                    prop_assert!(b <= a, "ETA grew from {} to {}", a, b);
                }
                prop_assert_eq!(prev.eta_s.is_some(), seen.eta_s.is_some());
            }
            previous = Some(seen);
        }
    }

    /// Folding in batches, each continuing from the state before, is folding one at a
    /// time.
    #[test]
    fn batches_fold_like_single_events(
        events in stream(80),
        chunk_sizes in vec(1usize..10, 1..12),
    ) {
        let one_by_one = {
            let mut state = RunState::new(run_id(RUN));
            for event in &events {
                state.apply(event);
            }
            state
        };
        let mut chunked = RunState::new(run_id(RUN));
        let mut rest = &events[..];
        for size in chunk_sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at((*size).min(rest.len()));
            chunked.apply_all(chunk);
            rest = tail;
        }
        prop_assert_eq!(&chunked, &one_by_one);
        prop_assert_eq!(&fold(run_id(RUN), &events), &one_by_one);
    }

    /// Every event survives the wire: serialized and parsed back as a stored event, and
    /// in its draft form as a batch, both as a JSON array and as NDJSON.
    #[test]
    fn events_survive_the_wire(events in stream(40)) {
        let run = run_id(RUN);
        let mut drafts = Vec::new();
        for event in &events {
            let json = event.to_json();
            let parsed = parse_event(&json);
            prop_assert_eq!(parsed.as_ref(), Ok(event), "{}", json);
            prop_assert_eq!(parsed.unwrap().to_json(), json);
            drafts.push(Draft {
                // Some producers leave the time to the hub.
                ts: (event.seq % 4 != 0).then_some(event.ts),
                id: event.id.clone(),
                parent: event.parent.clone(),
                body: event.body.clone(),
            });
        }
        let lines: Vec<String> = drafts
            .iter()
            .map(|d| serde_json::to_string(d).unwrap())
            .collect();
        let array = format!("[{}]", lines.join(",\n"));
        let ndjson = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
        for (body, format) in [(&array, BatchFormat::JsonArray), (&ndjson, BatchFormat::Ndjson)] {
            let parsed = parse_batch(body, format, &run);
            prop_assert_eq!(parsed.as_ref(), Ok(&drafts), "{:?}", format);
        }
    }
}
