//! Fuzzing the hub through a real listener, with property tests: query parameters,
//! stream cursors (`Last-Event-ID`, herald's `SEQ` and AG-UI's `SEQ.INDEX`) and append
//! bodies of any bytes. The hub never answers a 5xx or anything but the error body of docs/http-api.md#errors,
//! takes exactly the values it documents, names the parameter it refuses, resumes a
//! stream exactly after an accepted cursor, and stores a batch whole or not at all.
//!
//! The grammars themselves (type patterns, events) are fuzzed in the protocol crate's
//! tests, so the protocol's parsers stand as the oracle for them here: what is checked is
//! that the hub applies them, and answers as it says. Numbers are checked against a
//! grammar written here: ASCII digits, with an optional `+` (Rust reads `+5` as 5, and so
//! does the hub; no client is hurt by it). On SQLite only: none of it is the store's.
//!
//! Each property runs a hub of its own in a runtime of its own, and proptest's runner
//! drives the cases through it; failures proptest finds are kept in
//! `fuzz.proptest-regressions` beside this file, and tried first on every later run.

use std::sync::Arc;

use herald_protocol::{
    BatchFormat, EVENT_TYPES, MAX_EVENT_BYTES, MAX_EVENT_DEPTH, RunId, Timestamp, TypeFilter,
    parse_batch, parse_event,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
use reqwest::header::HeaderValue;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::util::{Case, Run, Sse, StoreKind, TestHub, check, error_body, finished, send, within};

/// The events of the run the read properties read: every kind AG-UI encodes, ending
/// with `run.finished`, so that every stream of it ends and no poll waits.
fn script() -> Value {
    json!([
        {"event": "run.started", "name": "fuzzed"},
        {"event": "stage.started", "stage": "fetch", "total": 2},
        {"event": "item.started", "item": "a", "stage": "fetch"},
        {"event": "progress", "stage": "fetch", "done": 1, "total": 2, "elapsed_s": 1},
        {"event": "item.finished", "item": "a", "stage": "fetch", "status": "succeeded"},
        {"event": "heartbeat", "elapsed_s": 2},
        {"event": "text.delta", "text": "thinking", "call_id": "c1"},
        {"event": "llm.response", "call_id": "c1"},
        {"event": "tool.started", "call_id": "t1", "tool": "search", "input": {"q": "x"}},
        {"event": "tool.finished", "call_id": "t1", "tool": "search", "status": "succeeded"},
        {"event": "custom.note", "n": 1},
        {"event": "stage.finished", "stage": "fetch", "status": "succeeded", "elapsed_s": 3},
        finished("succeeded"),
    ])
}

/// A runtime, and an open hub on SQLite with a run of [`script`]'s events.
fn hub_with_a_finished_run() -> (tokio::runtime::Runtime, TestHub, Run, u64) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let (hub, run, last_seq) = runtime.block_on(async {
        let hub = TestHub::open(StoreKind::Sqlite).await;
        let run = hub.create_named("fuzzed").await;
        let reply = hub.append(&run, script()).await;
        let last_seq = reply["last_seq"].as_u64().expect("last_seq");
        (hub, run, last_seq)
    });
    (runtime, hub, run, last_seq)
}

/// The `id:`s of a finished run's whole AG-UI stream, in order, as `(SEQ, INDEX)`.
async fn agui_ids(hub: &TestHub, run: &Run) -> Vec<(u64, usize)> {
    let path = format!("/v1/runs/{}/stream?format=ag-ui", run.id);
    let mut sse = hub.sse(&path, None, &[]).await;
    assert_eq!(sse.status, StatusCode::OK);
    sse.rest()
        .await
        .iter()
        .map(|m| {
            let id =
                m.id.as_deref()
                    .expect("every message of a finished run has an id");
            let (seq, index) = id.split_once('.').expect("SEQ.INDEX");
            (
                seq.parse().expect("a seq"),
                index.parse().expect("an index"),
            )
        })
        .collect()
}

/// proptest's runner with `cases`, keeping failures beside this file.
fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        source_file: Some(file!()),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..Config::default()
    })
}

/// What the hub must answer.
#[derive(Clone, Debug, PartialEq)]
enum Expect {
    /// 200: a reply, or a stream.
    Ok,
    /// 204: a stream with nothing to send (a finished run, read to its end).
    NoContent,
    /// 200, a stream whose first message has this `id:`.
    From(String),
    /// the error body of docs/http-api.md#errors: status, code, and the field it names.
    Error(u16, &'static str, Option<String>),
}

fn error(status: u16, code: &'static str, field: Option<&str>) -> Expect {
    Expect::Error(status, code, field.map(str::to_owned))
}

/// Sends `req` and checks its answer against `expected`.
async fn check_answer(req: reqwest::RequestBuilder, expected: &Expect, what: &str) {
    let resp = within("the hub's answer", req.send())
        .await
        .expect("the hub answers");
    let status = resp.status();
    match expected {
        Expect::Ok | Expect::From(_) if status == StatusCode::OK => {
            if let Expect::From(id) = expected {
                let mut sse = Sse::from_response(resp);
                let first = sse.message().await.expect("a first message");
                assert_eq!(first.id.as_ref(), Some(id), "{what}: the first message");
            }
        }
        Expect::NoContent if status == StatusCode::NO_CONTENT => {}
        Expect::Error(want, code, field) if status.as_u16() == *want => {
            let body: Value = within("the error body", resp.json())
                .await
                .unwrap_or_else(|e| panic!("{what}: the {status} is not JSON: {e}"));
            let error = error_body(&body, code);
            assert_eq!(
                error.get("field").and_then(Value::as_str),
                field.as_deref(),
                "{what}: the field of {body}"
            );
        }
        _ => {
            let body = within("the body", resp.text()).await.unwrap_or_default();
            panic!("{what}: expected {expected:?}, got {status}: {body}");
        }
    }
}

/// `value` with every byte percent-encoded, so that the hub decodes exactly it (a `+`
/// left as it is would be read as a space).
fn encoded(value: &[u8]) -> String {
    value.iter().map(|b| format!("%{b:02X}")).collect()
}

/// A number as the hub reads one: ASCII digits after an optional `+`, that fit.
fn decimal<T: std::str::FromStr>(s: &str) -> Option<T> {
    let digits = s.strip_prefix('+').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A value for a query parameter, as bytes: any bytes, any text, numbers of every
/// shape, patterns, statuses, timestamps and run ids, right and wrong.
fn query_value() -> impl Strategy<Value = Vec<u8>> {
    let text = prop_oneof![
        2 => "(?s).{0,12}",
        3 => "[+\\-]?[0-9]{0,22}(\\.[0-9]{0,3})?([eE][+\\-]?[0-9]{1,3})?",
        2 => select(&[
            "", "0", "+5", "-1", "1", "13", "14", "500", "501", "1000", "1001", "4294967296",
            "18446744073709551615", "18446744073709551616", "inf", "-inf", "NaN", "infinity",
            "1e400", "0.5", "60", "61", " 5", "5 ", "0x10",
        ][..])
        .prop_map(str::to_owned),
        2 => select(EVENT_TYPES).prop_map(str::to_owned),
        2 => "[a-z_.*, ]{0,16}",
        2 => select(&[
            "running", "stalled", "succeeded", "failed", "cancelled", "Running", "done",
            "state", "events", "ag-ui", "AG-UI",
        ][..])
        .prop_map(str::to_owned),
        2 => (-62_167_219_200_000_000i64..253_402_300_799_999_999)
            .prop_map(|us| Timestamp::from_unix_micros(us).to_string()),
        1 => select(&["2026-11-22", "tuesday", "9999-12-31T23:59:59-01:00", "2026-11-22 01:07:00Z"][..])
            .prop_map(str::to_owned),
        2 => "[A-Za-z0-9._:-]{1,10}",
        1 => Just("x".repeat(129)),
    ];
    prop_oneof![
        6 => text.prop_map(String::into_bytes),
        1 => vec(any::<u8>(), 0..12),
    ]
}

/// A route that takes a query, and its parameters.
#[derive(Clone, Copy, Debug)]
enum Route {
    Poll,
    Stream,
    /// The stream with `format=ag-ui`, and the parameter after it.
    AgUi,
    List,
    RunsStream,
}

impl Route {
    fn names(self) -> &'static [&'static str] {
        match self {
            Route::Poll => &["after", "limit", "wait", "types"],
            Route::Stream => &["after", "types", "view", "format"],
            Route::AgUi => &["after", "types", "view"],
            Route::List => &["status", "parent", "limit", "before"],
            Route::RunsStream => &["status", "parent"],
        }
    }
}

/// A parameter's name: one the route takes, mostly; one it does not, or any text.
fn query_name(route: Route) -> impl Strategy<Value = String> {
    prop_oneof![
        8 => select(route.names()).prop_map(str::to_owned),
        1 => select(&["afterr", "AFTER", "limits", "token2", "a`b", ""][..]).prop_map(str::to_owned),
        // Not `token`, which is a credential: the tokens' tests try it.
        1 => "(?s).{0,8}".prop_filter("not token", |n| n != "token"),
    ]
}

/// What a route answers to one parameter, `name=value`, alone; `ids` are those of the
/// run's AG-UI stream.
fn expect_query(
    route: Route,
    name: &str,
    value: &str,
    last_seq: u64,
    ids: &[(u64, usize)],
) -> Expect {
    let u32_in = |range: std::ops::RangeInclusive<u32>| match decimal::<u32>(value) {
        Some(n) if range.contains(&n) => Expect::Ok,
        Some(_) => error(400, "invalid_field", Some(name)),
        None => error(400, "invalid_query", Some(name)),
    };
    let types = || {
        if value.is_empty() || value.parse::<TypeFilter>().is_ok() {
            Expect::Ok
        } else {
            error(400, "invalid_field", Some("types"))
        }
    };
    let status = || {
        if ["running", "stalled", "succeeded", "failed", "cancelled"].contains(&value) {
            Expect::Ok
        } else {
            error(400, "invalid_field", Some("status"))
        }
    };
    let parent = || match RunId::new(value) {
        Ok(_) => Expect::Ok,
        Err(_) => error(400, "invalid_field", Some("parent")),
    };
    match (route, name) {
        (Route::Poll, "after") => match decimal::<u64>(value) {
            Some(n) if n <= last_seq => Expect::Ok,
            Some(_) => error(400, "cursor_out_of_range", None),
            None => error(400, "invalid_query", Some("after")),
        },
        (Route::Poll, "limit") => u32_in(1..=1000),
        (Route::Poll, "wait") => match value.parse::<f64>() {
            Ok(w) if w.is_finite() && w >= 0.0 => Expect::Ok,
            Ok(_) => error(400, "invalid_field", Some("wait")),
            Err(_) => error(400, "invalid_query", Some("wait")),
        },
        (Route::Poll | Route::Stream, "types") => types(),
        (Route::Stream, "after") => match decimal::<u64>(value) {
            Some(n) if n == last_seq => Expect::NoContent,
            Some(n) if n < last_seq => Expect::From((n + 1).to_string()),
            Some(_) => error(400, "cursor_out_of_range", None),
            None => error(400, "invalid_query", Some("after")),
        },
        (Route::AgUi, "after") => match decimal::<u64>(value) {
            Some(n) if n <= last_seq => match ids.iter().find(|&&(seq, _)| seq > n) {
                Some((seq, index)) => Expect::From(format!("{seq}.{index}")),
                None => Expect::NoContent,
            },
            Some(_) => error(400, "cursor_out_of_range", None),
            None => error(400, "invalid_query", Some("after")),
        },
        // herald's own filters: an AG-UI stream is the whole run.
        (Route::AgUi, "types" | "view") => error(400, "invalid_field", Some(name)),
        (Route::Stream, "view") => match value {
            "state" | "events" => Expect::Ok,
            _ => error(400, "invalid_field", Some("view")),
        },
        (Route::Stream, "format") => match value {
            "ag-ui" => Expect::Ok,
            _ => error(400, "invalid_field", Some("format")),
        },
        (Route::List | Route::RunsStream, "status") => status(),
        (Route::List | Route::RunsStream, "parent") => parent(),
        (Route::List, "limit") => u32_in(1..=500),
        (Route::List, "before") => match value.parse::<Timestamp>() {
            Ok(_) => Expect::Ok,
            Err(_) => error(400, "invalid_field", Some("before")),
        },
        (_, unknown) => error(400, "invalid_query", Some(unknown)),
    }
}

/// Every route takes exactly the values of its parameters it documents, and refuses
/// any other with a 400 naming the parameter; never a 5xx, never another body.
#[test]
fn query_parameters_are_taken_exactly_as_documented() {
    let (runtime, hub, run, last_seq) = hub_with_a_finished_run();
    let ids = runtime.block_on(agui_ids(&hub, &run));
    let routes = [
        Route::Poll,
        Route::Stream,
        Route::AgUi,
        Route::List,
        Route::RunsStream,
    ];
    let route = select(routes.to_vec());
    let case =
        route.prop_flat_map(|route| (Just(route), query_name(route), query_value(), any::<bool>()));
    runner(256)
        .run(&case, |(route, name, value, repeated)| {
            let text = String::from_utf8_lossy(&value);
            let path = match route {
                Route::Poll => format!("/v1/runs/{}/events?", run.id),
                Route::Stream => format!("/v1/runs/{}/stream?", run.id),
                Route::AgUi => format!("/v1/runs/{}/stream?format=ag-ui&", run.id),
                Route::List => "/v1/runs?".to_owned(),
                Route::RunsStream => "/v1/runs/stream?".to_owned(),
            };
            // A parameter given twice is refused, naming it, whatever its values.
            let expected = if repeated {
                error(400, "invalid_query", Some(&name))
            } else {
                expect_query(route, &name, &text, last_seq, &ids)
            };
            let pair = format!("{}={}", encoded(name.as_bytes()), encoded(&value));
            let query = if repeated {
                format!("{pair}&{pair}")
            } else {
                pair
            };
            let path = format!("{path}{query}");
            let req = hub.request(Method::GET, &path, None);
            let twice = if repeated { ", twice" } else { "" };
            let what = format!("{route:?} {name:?}={text:?}{twice}");
            runtime.block_on(check_answer(req, &expected, &what));
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// A `Last-Event-ID` value: any bytes a header may hold, digits and dots mostly.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        6 => select(&b"0123456789."[..]),
        1 => select(&b" \t+-eE"[..]),
        1 => 0x20u8..0x7f,
        1 => 0x80u8..=0xff,
    ];
    prop_oneof![
        4 => vec(byte, 0..8),
        // Around the stream's own ids, the edges of u64 and usize.
        2 => (0u64..20, proptest::option::of(0u64..6)).prop_map(|(seq, index)| match index {
            Some(index) => format!("{seq}.{index}").into_bytes(),
            None => seq.to_string().into_bytes(),
        }),
        1 => select(&[
            "18446744073709551615", "18446744073709551616", "1.18446744073709551616", "+1.+0",
            "1.", ".0", "1..0", "1.0.0", " 1.0 ", "\t3",
        ][..])
        .prop_map(|s| s.as_bytes().to_vec()),
    ]
}

/// The value a header holds once the hub has it: visible ASCII, trimmed; `None` for
/// one with other bytes, which is no cursor.
fn header_text(value: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(value).ok()?;
    text.bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
        .then(|| text.trim_matches([' ', '\t']))
}

/// What herald's own stream answers to a `Last-Event-ID`: a `SEQ` (of at most the
/// run's last event) resumes after it, anything else is not a cursor of the stream.
fn expect_herald_cursor(value: &[u8], last_seq: u64) -> Expect {
    match header_text(value).and_then(decimal::<u64>) {
        Some(n) if n == last_seq => Expect::NoContent,
        Some(n) if n < last_seq => Expect::From((n + 1).to_string()),
        Some(_) => error(400, "cursor_out_of_range", None),
        None => error(400, "invalid_cursor", None),
    }
}

/// What an AG-UI stream answers to a `Last-Event-ID`, given the `id:`s of the whole
/// stream in order: `SEQ` resumes after all of its event's messages, `SEQ.INDEX` after
/// that one message, which must be one the stream sent.
fn expect_agui_cursor(value: &[u8], last_seq: u64, ids: &[(u64, usize)]) -> Expect {
    let Some(text) = header_text(value) else {
        return error(400, "invalid_cursor", None);
    };
    let (seq, index) = match text.split_once('.') {
        Some((seq, index)) => match (decimal::<u64>(seq), decimal::<usize>(index)) {
            (Some(seq), Some(index)) => (seq, Some(index)),
            _ => return error(400, "invalid_cursor", None),
        },
        None => match decimal::<u64>(text) {
            Some(seq) => (seq, None),
            None => return error(400, "invalid_cursor", None),
        },
    };
    if seq > last_seq {
        return error(400, "cursor_out_of_range", None);
    }
    let next = match index {
        None => ids.iter().position(|&(s, _)| s > seq),
        Some(index) => match ids.iter().position(|&id| id == (seq, index)) {
            Some(at) => Some(at + 1).filter(|&next| next < ids.len()),
            None => return error(400, "invalid_cursor", None),
        },
    };
    match next {
        Some(at) => Expect::From(format!("{}.{}", ids[at].0, ids[at].1)),
        None => Expect::NoContent,
    }
}

/// Any `Last-Event-ID` on herald's stream and on AG-UI's: what is one of the stream's
/// cursors resumes exactly after it (its first message is the next one), what is
/// past the end is `cursor_out_of_range`, anything else `invalid_cursor`.
#[test]
fn stream_cursors_are_taken_exactly_as_documented() {
    let (runtime, hub, run, last_seq) = hub_with_a_finished_run();
    let agui = format!("/v1/runs/{}/stream?format=ag-ui", run.id);
    let ids = runtime.block_on(agui_ids(&hub, &run));
    assert!(ids.len() > last_seq as usize, "{ids:?}");
    let herald = format!("/v1/runs/{}/stream", run.id);
    runner(256)
        .run(&(header_value(), any::<bool>()), |(value, on_agui)| {
            let header = HeaderValue::from_bytes(&value).expect("a header value");
            let (path, expected) = if on_agui {
                (&agui, expect_agui_cursor(&value, last_seq, &ids))
            } else {
                (&herald, expect_herald_cursor(&value, last_seq))
            };
            let req = hub
                .request(Method::GET, path, None)
                .header("last-event-id", header);
            let what = format!("{path} after {:?}", String::from_utf8_lossy(&value));
            runtime.block_on(check_answer(req, &expected, &what));
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Events for batches: valid ones (without `ts`, which the hub may refuse when far from
/// its clock), with a mistake each, and text that is not JSON or not an event.
const EVENTS: &[&str] = &[
    r#"{"event":"log","level":"info","message":"ok"}"#,
    r#"{"event":"progress","done":1,"total":2,"elapsed_s":0.5}"#,
    r#"{"event":"custom.x","n":18446744073709551616,"s":"\u0000"}"#,
    r#"{"event":"tool.started","call_id":"c","tool":"t","input":[[[1]]]}"#,
    r#"{"event":"text.delta","text":"日本語 🔑","id":"k1"}"#,
    r#"{"event":"item.started","item":"i","id":"k1"}"#,
    r#"{"event":"log","level":"loud","message":"ok"}"#,
    r#"{"event":"progress","done":-1,"elapsed_s":0}"#,
    r#"{"event":"teleport"}"#,
    r#"{"event":"log","level":"info","message":"ok","run":"someone-else"}"#,
    r#"{"event":"heartbeat","elapsed_s":1e400}"#,
    r#"{"event":"log","level":"info","message":"ok","message":"twice"}"#,
    r#"{"event":"run.finished","status":"succeeded"}"#,
    r#"[1]"#,
    r#"{"event":"#,
    "",
];

/// A batch body: events, maybe changed byte by byte, in either framing, or any bytes.
fn batch_body() -> impl Strategy<Value = (Vec<u8>, BatchFormat)> {
    let event = prop_oneof![
        6 => select(EVENTS).prop_map(str::to_owned),
        1 => (select(EVENTS), any::<prop::sample::Index>(), select(&["\"", "{", "]", ",", "\u{0}", "\\"][..]))
            .prop_map(|(e, at, token)| {
                let mut e = e.to_owned();
                let mut at = at.index(e.len() + 1);
                while !e.is_char_boundary(at) {
                    at -= 1;
                }
                e.insert_str(at, token);
                e
            }),
        1 => (1usize..4).prop_map(|n| {
            let deep = MAX_EVENT_DEPTH - 1 + n;
            format!(r#"{{"event":"custom.x","d":{}1{}}}"#, "[".repeat(deep - 1), "]".repeat(deep - 1))
        }),
    ];
    prop_oneof![
        8 => (vec(event, 0..6), any::<bool>()).prop_map(|(events, ndjson)| {
            if ndjson {
                (events.join("\n").into_bytes(), BatchFormat::Ndjson)
            } else {
                (format!("[{}]", events.join(",")).into_bytes(), BatchFormat::JsonArray)
            }
        }),
        1 => (vec(any::<u8>(), 0..64), any::<bool>()).prop_map(|(bytes, ndjson)| {
            (bytes, if ndjson { BatchFormat::Ndjson } else { BatchFormat::JsonArray })
        }),
    ]
}

/// Any batch is stored whole, as the protocol's parser reads it, or refused with the
/// parser's error (its status, code, index and field) and nothing of it stored.
#[test]
fn batches_are_stored_whole_or_not_at_all() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let hub = runtime.block_on(TestHub::open(StoreKind::Sqlite));
    let hub = Arc::new(hub);
    let runs = std::sync::atomic::AtomicU32::new(0);
    runner(96)
        .run(&batch_body(), |(body, format)| {
            let n = runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let id = format!("batch-{n}");
            let hub = hub.clone();
            runtime.block_on(async move {
                let run = hub.create_named(&id).await;
                let content_type = match format {
                    BatchFormat::Ndjson => "application/x-ndjson",
                    BatchFormat::JsonArray => "application/json",
                };
                let req = hub
                    .request(
                        Method::POST,
                        &format!("/v1/runs/{id}/events"),
                        Some(&run.write_token),
                    )
                    .header("content-type", content_type)
                    .body(body.clone());
                let (status, reply) = send(req).await;
                let polled = hub.poll(&run, "").await;
                let refused = |code: &str, index: Option<usize>, field: Option<&str>| {
                    let error = error_body(&reply, code);
                    assert_eq!(
                        error.get("index").and_then(Value::as_u64),
                        index.map(|i| i as u64),
                        "{reply}"
                    );
                    assert_eq!(error.get("field").and_then(Value::as_str), field, "{reply}");
                    assert!(
                        polled.events.is_empty(),
                        "a refused batch stored {:?}",
                        polled.events
                    );
                    assert_eq!(polled.last_seq, 0);
                };
                let Ok(text) = std::str::from_utf8(&body) else {
                    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
                    refused("invalid_json", None, None);
                    return;
                };
                let drafts = match parse_batch(text, format, &RunId::new(&id).expect("a run id")) {
                    Ok(drafts) => drafts,
                    Err(e) => {
                        assert!(matches!(status.as_u16(), 400 | 413), "{status}: {reply}");
                        refused(e.error.code.as_str(), e.index, e.error.field.as_deref());
                        return;
                    }
                };
                // What the store keeps: a repeated idempotency id once, and nothing after
                // `run.finished`, which refuses the whole batch.
                let mut ids = std::collections::HashSet::new();
                let kept: Vec<_> = drafts
                    .iter()
                    .filter(|d| d.id.as_ref().is_none_or(|k| ids.insert(k.clone())))
                    .collect();
                let finished_at = kept
                    .iter()
                    .position(|d| d.body.event_type() == "run.finished");
                if finished_at.is_some_and(|at| at + 1 < kept.len()) {
                    assert_eq!(status, StatusCode::CONFLICT, "{reply}");
                    refused("run_finished", None, None);
                    return;
                }
                assert_eq!(status, StatusCode::OK, "{reply}");
                assert_eq!(reply["appended"], kept.len(), "{reply}");
                assert_eq!(polled.events.len(), kept.len());
                for (event, draft) in polled.events.iter().zip(&kept) {
                    assert_eq!(&event.body, &draft.body);
                    assert_eq!(event.id, draft.id);
                }
            });
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// `[[[[...` 100 000 deep (more than a stack holds frames for), wherever the hub reads
/// JSON, is a 4xx in the error body of docs/http-api.md#errors, and the hub goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_brackets_are_refused_and_the_hub_goes_on() {
    let hub = TestHub::open(StoreKind::Sqlite).await;
    let run = hub.create_named("deep").await;
    let deep = "[".repeat(100_000);
    let objects = "{\"a\":".repeat(100_000);
    let events = format!("/v1/runs/{}/events", run.id);
    for (what, method, path, content_type, body) in [
        (
            "an append",
            Method::POST,
            events.as_str(),
            "application/json",
            deep.clone(),
        ),
        (
            "an NDJSON append",
            Method::POST,
            &events,
            "application/x-ndjson",
            deep.clone(),
        ),
        (
            "an append of objects",
            Method::POST,
            &events,
            "application/json",
            objects.clone(),
        ),
        (
            "a create",
            Method::POST,
            "/v1/runs",
            "application/json",
            deep.clone(),
        ),
        (
            "a create of objects",
            Method::POST,
            "/v1/runs",
            "application/json",
            objects.clone(),
        ),
        (
            "a cancel",
            Method::POST,
            &format!("/v1/runs/{}/cancel", run.id),
            "application/json",
            deep.clone(),
        ),
        (
            "an AG-UI RunAgentInput",
            Method::POST,
            &format!("/v1/runs/{}/stream?format=ag-ui", run.id),
            "application/json",
            objects.clone(),
        ),
    ] {
        let token = if path == events {
            Some(run.write_token.as_str())
        } else {
            None
        };
        let req = hub
            .request(method, path, token)
            .header("content-type", content_type)
            .body(body);
        let (status, reply) = send(req).await;
        assert!(status.is_client_error(), "{what}: {status} {reply}");
        assert!(reply["error"]["code"].is_string(), "{what}: {reply}");
    }
    // On a WebSocket, as a resume message: refused, and the socket goes on or is closed.
    let mut ws = hub.ws(&run.id, "", None).await.expect("a WebSocket");
    ws.send(&deep).await;
    if let Some(reply) = ws.next().await {
        assert!(reply["error"]["code"].is_string(), "{reply}");
    }
    // The hub serves, and the run took nothing of it.
    let (status, _) = hub.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(hub.poll(&run, "").await.last_seq, 0);
    assert_eq!(
        hub.append(
            &run,
            json!([{"event": "log", "level": "info", "message": "ok"}])
        )
        .await["last_seq"],
        1
    );
}

/// What the hub accepts it can read back, through every route, each reply read whole
/// with serde_json's own limits: an event at the deepest nesting and at the largest
/// size it takes. One byte or level more is refused, naming the index. Before the
/// protocol measured events as stored, an event of 64 KiB as sent was stored over the
/// limit, and every later poll of its run answered 500; one nested 126 levels made
/// every page of events holding it too deep for serde_json.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_accepted_is_read_back_by_every_route() {
    let hub = TestHub::open(StoreKind::Sqlite).await;
    let run = hub.create_named("edges").await;
    let nested = |levels: usize| format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
    // The event's object is a level, and so is the field's outermost array.
    let deepest = json!({"event": "custom.deep", "d": serde_json::from_str::<Value>(&nested(MAX_EVENT_DEPTH - 1)).expect("JSON")});
    // The largest event: its stored form (`v`, `run`, the longest `seq`, `ts`) at the limit.
    let envelope = format!(
        r#"{{"v":1,"event":"log","run":"{}","seq":18446744073709551615,"ts":"2026-11-22T01:07:00.000000Z","level":"info","message":""}}"#,
        run.id
    );
    let largest = json!({"event": "log", "level": "info", "message": "m".repeat(MAX_EVENT_BYTES - envelope.len())});
    let events = format!("/v1/runs/{}/events", run.id);
    for (what, event, field) in [
        (
            "one level deeper",
            {
                let mut e = deepest.clone();
                e["d"] = serde_json::from_str(&nested(MAX_EVENT_DEPTH)).expect("JSON");
                e
            },
            Some("d"),
        ),
        (
            "one byte larger",
            {
                let mut e = largest.clone();
                e["message"] = json!("m".repeat(MAX_EVENT_BYTES - envelope.len() + 1));
                e
            },
            None,
        ),
        (
            "64 KiB as sent",
            {
                let frame = r#"{"event":"log","level":"info","message":""}"#;
                json!({"event": "log", "level": "info", "message": "m".repeat(MAX_EVENT_BYTES - frame.len())})
            },
            None,
        ),
    ] {
        let req = hub
            .request(Method::POST, &events, Some(&run.write_token))
            .json(&json!([{"event": "log", "level": "info", "message": "first"}, event]));
        let (status, reply) = send(req).await;
        let (want, code) = if field.is_some() {
            (400, "invalid_field")
        } else {
            (413, "event_too_large")
        };
        assert_eq!(status.as_u16(), want, "{what}: {reply}");
        let error = error_body(&reply, code);
        assert_eq!(
            error.get("index").and_then(Value::as_u64),
            Some(1),
            "{what}: {reply}"
        );
        assert_eq!(
            error.get("field").and_then(Value::as_str),
            field,
            "{what}: {reply}"
        );
    }
    // A tool's input is kept in the run's state, which a list wraps deeper still.
    let tool = json!({"event": "tool.started", "call_id": "c", "tool": "t", "input": deepest["d"]});
    hub.append(&run, json!([deepest, largest, tool])).await;
    hub.append(&run, json!([finished("succeeded")])).await;

    // Every read, parsed as a client would.
    let read = |path: String| {
        let req = hub.request(Method::GET, &path, Some(&run.read_token));
        async move {
            let resp = within("a read", req.send()).await.expect("the hub answers");
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            within("its body", resp.text()).await.expect("a body")
        }
    };
    for path in [
        format!("/v1/runs/{}/events?limit=1000", run.id),
        format!("/v1/runs/{}", run.id),
        "/v1/runs".to_owned(),
    ] {
        let body = read(path.clone()).await;
        serde_json::from_str::<Value>(&body).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    let mut sse = hub.stream(&run, "", None).await;
    for message in sse.rest().await {
        parse_event(&message.data).unwrap_or_else(|e| panic!("{e}: {}", message.data));
    }
    let mut agui = hub
        .sse(
            &format!("/v1/runs/{}/stream?format=ag-ui", run.id),
            Some(&run.read_token),
            &[],
        )
        .await;
    for message in agui.rest().await {
        message.json();
    }
}

/// What the properties above found, kept as plain cases: each failed before its fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_fuzzing_found_stays_fixed() {
    let hub = TestHub::open(StoreKind::Sqlite).await;
    let run = hub.create_named("r").await;
    hub.append(&run, json!([{"event": "run.started", "name": "r"}]))
        .await;
    let cases = vec![
        // It named `id`, the path's parameter.
        Case::new(
            "runs stream: a parent that is no run id",
            Method::GET,
            "/v1/runs/stream?parent=%C2%A1",
        )
        .expect(400, "invalid_field")
        .field("parent"),
        // These named no field.
        Case::new(
            "poll: a parameter twice",
            Method::GET,
            "/v1/runs/r/events?types=&types=",
        )
        .expect(400, "invalid_query")
        .field("types"),
        Case::new(
            "list: a parameter twice",
            Method::GET,
            "/v1/runs?status=running&status=running",
        )
        .expect(400, "invalid_query")
        .field("status"),
        // It named `a`, up to the backquote.
        Case::new(
            "poll: a backquote in an unknown parameter",
            Method::GET,
            "/v1/runs/r/events?a%60b=1",
        )
        .expect(400, "invalid_query")
        .field("a`b"),
    ];
    check(&hub, cases).await;
    // It streamed the run from its start: event 0 has no message 0.
    let req = hub
        .request(Method::GET, "/v1/runs/r/stream?format=ag-ui", None)
        .header("last-event-id", "0.0");
    check_answer(req, &error(400, "invalid_cursor", None), "AG-UI after 0.0").await;
}
