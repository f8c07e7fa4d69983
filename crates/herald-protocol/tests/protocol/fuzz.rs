//! Fuzzing the parsers with property tests (cargo-fuzz is not installed here, and CI
//! runs the stable toolchain, where `cargo test` runs these on every run): hostile text
//! of every kind goes through every parser, which must never panic, and must either
//! accept what then survives the wire and the store, or refuse it with an error that
//! names what is wrong; and a batch is accepted whole or refused at its first bad event.
//!
//! The inputs: arbitrary bytes (read lossily: the hub refuses a body that is not UTF-8
//! before it parses), text made of JSON's own characters, the seeds of `tests/corpus/`
//! mutated byte by byte, valid events with fields replaced, added, repeated or removed,
//! events of hostile fields (deep nesting, huge numbers, duplicate keys, NUL, lone
//! surrogates, timestamps at the edges of RFC 3339), strings near the 64 KiB limit, and
//! batches of all of these in both framings. Two tests are not random: every field of
//! every event type given each wrong value, and `[[[[...` 100 000 deep. Case counts
//! keep the whole pass to seconds in a debug build; a failing case proptest finds is
//! kept in `fuzz.proptest-regressions` beside this file and tried first on every run.

use std::fs;
use std::path::PathBuf;

use herald_protocol::{
    BatchError, BatchFormat, Draft, EVENT_TYPES, ErrorCode, Event, EventError, MAX_EVENT_BYTES,
    MAX_EVENT_DEPTH, Timestamp, parse_batch, parse_draft_str, parse_event,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::props::{body, config, event_id, parent};
use crate::util::{RUN, T0, check_wording, run_id, short};

// ---------------------------------------------------------------------------------------
// What every input must do.

/// Checks an error: it reads well, names a field exactly when its code is about one,
/// and a field it finds wrong is one the event has. `event` is the text of the event
/// it is about, when there is one.
#[track_caller]
pub(crate) fn check_error(e: &BatchError, event: Option<&str>) {
    check_wording(e);
    let EventError {
        code,
        field,
        message,
    } = &e.error;
    assert!(!message.is_empty(), "{e:?}");
    match code {
        ErrorCode::InvalidJson | ErrorCode::NotAnObject | ErrorCode::EventTooLarge => {
            assert_eq!(field, &None, "{e}");
        }
        _ => {
            let field = field
                .as_deref()
                .unwrap_or_else(|| panic!("no field named: {e}"));
            // A missing field is, of course, not in the event.
            if *code == ErrorCode::MissingField {
                assert!(!field.is_empty(), "{e}");
                return;
            }
            // Any other is, even one named by the empty string.
            let Some(Ok(Value::Object(fields))) = event.map(serde_json::from_str::<Value>) else {
                return;
            };
            let has = |key: &String| {
                field == key
                    || field.starts_with(&format!("{key}."))
                    || field.starts_with(&format!("{key}["))
            };
            assert!(
                fields.keys().any(has),
                "`{field}` is no field of {}: {e}",
                short(event.unwrap_or_default())
            );
        }
    }
}

/// A draft accepted reads back as itself, and as the hub would store it (with the
/// longest `seq`) it is within the size limit and reads back as itself.
#[track_caller]
fn check_draft_survives(draft: &Draft) {
    let run = run_id(RUN);
    let json = serde_json::to_string(draft).expect("a draft serializes");
    let mut written = Vec::new();
    draft.write_json(&mut written);
    assert_eq!(
        written,
        json.as_bytes(),
        "write_json writes what serializing does"
    );
    assert_eq!(
        parse_draft_str(&json, &run).as_ref(),
        Ok(draft),
        "{}",
        short(&json)
    );
    let now: Timestamp = T0.parse().expect("T0 is RFC 3339");
    let event = draft.clone().stamp(run, u64::MAX, now);
    let stored = event.to_json();
    assert!(
        stored.len() <= MAX_EVENT_BYTES,
        "accepted, and stored in {} bytes: {}",
        stored.len(),
        short(&stored)
    );
    assert_eq!(
        parse_event(&stored).as_ref(),
        Ok(&event),
        "{}",
        short(&stored)
    );
}

/// A stored event read reads back as itself once written again, unless its numbers,
/// written in full, have taken it over the limit (a JSON Lines file may hold any).
#[track_caller]
fn check_event_survives(event: &Event) {
    let json = event.to_json();
    assert_eq!(
        serde_json::to_string(event).expect("an event serializes"),
        json,
        "to_json writes what serializing does"
    );
    match parse_event(&json) {
        Ok(back) => {
            assert_eq!(&back, event, "{}", short(&json));
            assert_eq!(back.to_json(), json);
        }
        Err(e) => assert!(
            e.code == ErrorCode::EventTooLarge && json.len() > MAX_EVENT_BYTES,
            "{e}: {}",
            short(&json)
        ),
    }
}

/// Parses `text` as one event, a producer's draft and a stored event, and checks what
/// comes out. Returns the draft's outcome.
#[track_caller]
pub(crate) fn check_event_text(text: &str) -> Result<Draft, EventError> {
    let draft = parse_draft_str(text, &run_id(RUN));
    match &draft {
        Ok(draft) => check_draft_survives(draft),
        Err(error) => check_error(
            &BatchError {
                index: None,
                error: error.clone(),
            },
            Some(text),
        ),
    }
    match parse_event(text) {
        Ok(event) => check_event_survives(&event),
        Err(error) => check_error(&BatchError { index: None, error }, Some(text)),
    }
    draft
}

/// The events of a batch as its framing reads them, or `None` when the body is no
/// batch at all (not an array; not JSON).
fn elements(body: &str, format: BatchFormat) -> Option<Vec<&str>> {
    match format {
        BatchFormat::JsonArray => serde_json::from_str::<Vec<&RawValue>>(body)
            .ok()
            .map(|raws| raws.into_iter().map(RawValue::get).collect()),
        BatchFormat::Ndjson => Some(
            body.lines()
                .filter(|line| !line.trim().is_empty())
                .collect(),
        ),
    }
}

/// Parses `body` as a batch in `format` and checks it against its events parsed one by
/// one: accepted whole when each is, refused at the first that is not, or refused as a
/// whole when its framing is bad; then that what was accepted survives the wire in both
/// framings. Returns the outcome.
#[track_caller]
pub(crate) fn check_batch(body: &str, format: BatchFormat) -> Result<Vec<Draft>, BatchError> {
    let run = run_id(RUN);
    let res = parse_batch(body, format, &run);
    match elements(body, format) {
        None => {
            let e = res
                .as_ref()
                .expect_err("a body that is no batch is refused");
            assert_eq!(e.index, None, "{e}");
            check_error(e, None);
        }
        Some(events) => {
            let one_by_one = events
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    parse_draft_str(text, &run).map_err(|error| BatchError {
                        index: Some(i),
                        error,
                    })
                })
                .collect::<Result<Vec<_>, _>>();
            assert_eq!(res, one_by_one, "{format:?} {}", short(body));
            if let Err(e) = &res {
                check_error(e, e.index.map(|i| events[i]));
            }
        }
    }
    if let Ok(drafts) = &res {
        for draft in drafts {
            check_draft_survives(draft);
        }
        let lines: Vec<String> = drafts
            .iter()
            .map(|d| serde_json::to_string(d).expect("a draft serializes"))
            .collect();
        let array = format!("[{}]", lines.join(","));
        let ndjson = lines.join("\n");
        assert_eq!(
            parse_batch(&array, BatchFormat::JsonArray, &run).as_ref(),
            Ok(drafts)
        );
        assert_eq!(
            parse_batch(&ndjson, BatchFormat::Ndjson, &run).as_ref(),
            Ok(drafts)
        );
    }
    res
}

/// Everything about `text`: as one event, and as a batch in each framing.
#[track_caller]
fn check_any(text: &str) {
    let _ = check_event_text(text);
    check_batch(text, BatchFormat::JsonArray).ok();
    check_batch(text, BatchFormat::Ndjson).ok();
}

// ---------------------------------------------------------------------------------------
// The corpus.

/// The folder of seed inputs, `tests/corpus/`.
pub(crate) fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// Every file of the corpus but its list of outcomes: name and bytes, by name.
pub(crate) fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(corpus_dir())
        .expect("tests/corpus is readable")
        .map(|entry| {
            let path = entry.expect("a corpus entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("a corpus file named in UTF-8")
                .to_owned();
            let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (name, bytes)
        })
        .filter(|(name, _)| name != "outcomes.txt")
        .collect();
    files.sort();
    files
}

/// The events of the corpus, one text each, to mutate: every line of every file, and
/// every element of the arrays.
fn seeds() -> Vec<String> {
    let mut seeds = Vec::new();
    for (name, bytes) in corpus() {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if name.ends_with(".json") {
            if let Some(events) = elements(&text, BatchFormat::JsonArray) {
                seeds.extend(events.into_iter().map(str::to_owned));
                continue;
            }
        }
        seeds.extend(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_owned),
        );
    }
    seeds
}

// ---------------------------------------------------------------------------------------
// Hostile parts.

/// Tokens that mutations put into text: JSON's punctuation, the envelope's fields with
/// values that are wrong in every way the parser checks, and things no parser expects.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    "\\",
    ",",
    ":",
    " ",
    "\n",
    "\r\n",
    "\u{0}",
    "\u{feff}",
    "\u{2028}",
    "é",
    "🔑",
    "null",
    "true",
    "-",
    "-0",
    "1e15",
    "1e309",
    "18446744073709551616",
    "\\u0000",
    "\\ud800",
    "\"event\":\"log\",",
    "\"event\":\"custom.x\",",
    "\"event\":\"nope\",",
    "\"v\":2,",
    "\"seq\":0,",
    "\"run\":\"run-2\",",
    "\"id\":\"\",",
    "\"parent\":\"a b\",",
    "\"ts\":\"9999-12-31T23:59:59-01:00\",",
    "\"ts\":\"2026-11-22T01:07:00+05:30\",",
    "\"done\":-1,",
    "\"elapsed_s\":1e400,",
    "\"status\":\"weird\",",
    "\"percent\":100.5,",
    "[[[[[[[[[[[[[[[[",
];

/// One change to a text.
#[derive(Clone, Debug)]
enum Mutation {
    /// Remove up to `n` bytes from a position.
    Delete(Index, usize),
    /// Put a token in at a position.
    Insert(Index, &'static str),
    /// Put a copy of up to `n` bytes from one position at another: repeated keys,
    /// repeated events.
    Copy(Index, usize, Index),
    /// Cut the text at a position.
    Truncate(Index),
    /// Wrap the text in `n` brackets.
    Nest(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 1usize..8).prop_map(|(at, n)| Mutation::Delete(at, n)),
        4 => (any::<Index>(), select(TOKENS)).prop_map(|(at, t)| Mutation::Insert(at, t)),
        2 => (any::<Index>(), 1usize..40, any::<Index>())
            .prop_map(|(from, n, to)| Mutation::Copy(from, n, to)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (1usize..200).prop_map(Mutation::Nest),
    ]
}

/// The byte position `at` picks in `text`, moved back to a character's start.
fn boundary(text: &str, at: &Index) -> usize {
    let mut i = at.index(text.len() + 1);
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Up to `n` bytes of `text` from `start`, ending on a character's start.
fn span(text: &str, start: usize, n: usize) -> usize {
    let mut end = (start + n).min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

fn mutate(mut text: String, mutations: &[Mutation]) -> String {
    for m in mutations {
        match m {
            Mutation::Delete(at, n) => {
                let start = boundary(&text, at);
                let end = span(&text, start, *n);
                text.replace_range(start..end, "");
            }
            Mutation::Insert(at, token) => {
                let at = boundary(&text, at);
                text.insert_str(at, token);
            }
            Mutation::Copy(from, n, to) => {
                let start = boundary(&text, from);
                let piece = text[start..span(&text, start, *n)].to_owned();
                let to = boundary(&text, to);
                text.insert_str(to, &piece);
            }
            Mutation::Truncate(at) => {
                let at = boundary(&text, at);
                text.truncate(at);
            }
            Mutation::Nest(n) => text = format!("{}{text}{}", "[".repeat(*n), "]".repeat(*n)),
        }
    }
    text
}

/// A JSON string literal from text, as a producer would write it.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

/// `levels` of arrays and objects, in any order, around one value.
fn nested(levels: usize, objects: &[bool]) -> String {
    let mut open = String::new();
    let mut close = String::new();
    for level in 0..levels {
        if objects
            .get(level % objects.len().max(1))
            .copied()
            .unwrap_or(false)
        {
            open.push_str("{\"k\":");
            close.insert(0, '}');
        } else {
            open.push('[');
            close.insert(0, ']');
        }
    }
    format!("{open}1{close}")
}

/// An RFC 3339 time as a JSON string, usually well-formed, at the edges of what it
/// can write: years 0000 and 9999 with offsets that move them out in UTC, leap
/// seconds, fractions finer than microseconds, days no month has.
fn timestamp() -> BoxedStrategy<String> {
    // The first and last days RFC 3339 writes, at their first and last seconds.
    let edge = (
        select(&["0000-01-01T00:00:00", "9999-12-31T23:59:59"][..]),
        select(
            &[
                "Z",
                "+00:01",
                "-00:01",
                "+23:59",
                "-23:59",
                ".999999999-00:00",
            ][..],
        ),
    )
        .prop_map(|(instant, offset)| quoted(&format!("{instant}{offset}")));
    let date = prop_oneof![
        2 => select(&["0000-01-01", "9999-12-31", "1970-01-01", "2024-02-29", "2026-02-29"][..])
            .prop_map(str::to_owned),
        1 => (select(&[0u32, 1, 1969, 2026, 9998, 9999][..]), 1u32..=13, 1u32..=32)
            .prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}")),
    ];
    let time = prop_oneof![
        2 => select(&["00:00:00", "23:59:59", "23:59:60", "12:00:00"][..]).prop_map(str::to_owned),
        1 => (0u32..=24, 0u32..=60, 0u32..=61).prop_map(|(h, m, s)| format!("{h:02}:{m:02}:{s:02}")),
    ];
    let any = (
        date,
        select(&["T", " ", "t", "_"][..]),
        time,
        select(&["", ".5", ".123456", ".123456789", ".999999999"][..]),
        select(
            &[
                "Z", "z", "+00:00", "-00:00", "-00:01", "+00:01", "+23:59", "-23:59", "+24:00", "",
            ][..],
        ),
    )
        .prop_map(|(date, sep, time, frac, offset)| {
            quoted(&format!("{date}{sep}{time}{frac}{offset}"))
        });
    prop_oneof![edge, any].boxed()
}

/// A JSON value's text, usually valid: the numbers at every edge, text with escapes
/// and without, timestamps at the edges of RFC 3339, deep nesting on both sides of
/// the limits (this crate's and serde_json's), and strings that are not JSON.
fn value() -> BoxedStrategy<String> {
    let scalar = prop_oneof![
        4 => select(&[
            "null", "true", "false", "0", "-0", "1", "-1", "1.5", "0.1e1", "1e15", "1E2",
            "1e308", "1e309", "-1e309", "5e-324", "1e-400", "18446744073709551615",
            "18446744073709551616", "-9223372036854775809", "00", "01", ".5", "1.", "+1",
            "NaN", "Infinity", "0x10",
        ][..])
        .prop_map(str::to_owned),
        2 => any::<i64>().prop_map(|n| n.to_string()),
        2 => any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |x| x.is_finite())
            .prop_map(|x| x.to_string()),
        4 => select(&[
            "fetch", "c1", "search", "info", "error", "succeeded", "failed", "skipped",
            "cancelled", "weird", "run-1", "run-2", "a b", "", "custom.x", "log", "user",
            "k1", "2026-11-22T01:07:00Z", "2026-11-22T01:07:00.123456789+05:30",
            "9999-12-31T23:59:59-00:01", "0000-01-01T00:00:00+00:01", "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z", "2026-11-22T01:07:60Z", "2026-02-30T00:00:00Z",
        ][..])
        .prop_map(quoted),
        3 => "(?s).{0,12}".prop_map(|s| quoted(&s)),
        2 => select(&[
            r#""\u0000""#, r#""\ud800""#, r#""\udc00\ud800""#, r#""\ud83d\udd11""#,
            "\"\u{0}\"", "\"\u{7}\"", "\"a\nb\"", r#""\x""#, r#""\u12""#, "\"open",
        ][..])
        .prop_map(str::to_owned),
        1 => (1usize..2000).prop_map(|n| quoted(&"é".repeat(n))),
        2 => timestamp(),
    ];
    let deep = (
        prop_oneof![1usize..8, 60usize..70, 125usize..135],
        vec(any::<bool>(), 1..4),
    )
        .prop_map(|(levels, objects)| nested(levels, &objects));
    let composite = scalar.clone().prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(|items| format!("[{}]", items.join(","))),
            vec((field_name(), inner), 0..4).prop_map(|fields| {
                let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    });
    prop_oneof![6 => scalar, 2 => composite, 1 => deep].boxed()
}

/// Every field of the protocol's events, envelope included.
const FIELDS: &[&str] = &[
    "v",
    "event",
    "run",
    "seq",
    "ts",
    "id",
    "parent",
    "name",
    "total_steps",
    "meta",
    "status",
    "result",
    "error",
    "reason",
    "silent_for_s",
    "elapsed_s",
    "note",
    "stage",
    "total",
    "done",
    "unit",
    "percent",
    "rate",
    "eta_s",
    "item",
    "label",
    "level",
    "message",
    "iteration",
    "messages",
    "role",
    "content",
    "call_id",
    "provider",
    "model",
    "stop_reason",
    "input_tokens",
    "output_tokens",
    "text",
    "tool",
    "input",
    "feedback",
    "output",
];

/// A field's name as a JSON string: the protocol's fields mostly, any text now and then.
fn field_name() -> BoxedStrategy<String> {
    prop_oneof![
        8 => select(FIELDS).prop_map(quoted),
        1 => "[a-z_]{1,8}".prop_map(|s| quoted(&s)),
        1 => "(?s).{0,6}".prop_map(|s| quoted(&s)),
    ]
    .boxed()
}

/// An event's type as a JSON string: the protocol's mostly.
fn event_type() -> BoxedStrategy<String> {
    prop_oneof![
        8 => select(EVENT_TYPES).prop_map(quoted),
        1 => "custom\\.[a-z0-9_]{1,6}".prop_map(|s| quoted(&s)),
        1 => value(),
    ]
    .boxed()
}

/// An object's text from fields given as JSON texts, in their order, repeats and all.
fn object(fields: &[(String, String)]) -> String {
    let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    format!("{{{}}}", fields.join(","))
}

/// An event of hostile fields: a type, mostly, and any fields with any values.
fn hostile_event() -> impl Strategy<Value = String> {
    (
        option::weighted(0.9, event_type()),
        vec((field_name(), value()), 0..8),
        any::<Index>(),
    )
        .prop_map(|(event_type, mut fields, at)| {
            if let Some(t) = event_type {
                let at = at.index(fields.len() + 1);
                fields.insert(at, (quoted("event"), t));
            }
            object(&fields)
        })
}

/// A valid draft of any type, with or without a time of any year RFC 3339 writes.
fn draft() -> impl Strategy<Value = Draft> {
    let ts = option::of(-62_167_219_200_000_000i64..253_402_300_799_999_999);
    (ts, event_id(), parent(), body()).prop_map(|(ts, id, parent, body)| Draft {
        ts: ts.map(Timestamp::from_unix_micros),
        id,
        parent,
        body,
    })
}

/// One change to an event's fields.
#[derive(Clone, Debug)]
enum Edit {
    /// Give a field another value.
    Replace(Index, String),
    /// Add a field, perhaps one it has.
    Insert(Index, String, String),
    /// Add a field it has again, with another value.
    Repeat(Index, String),
    Remove(Index),
    /// Give the event a time, or another.
    Ts(String),
    /// Give a field that holds a number, or a string, a value just outside what it takes.
    Edge(Index, &'static str),
}

/// Values just outside what a field takes: negative, fractional, past `u64`, past
/// `f64`, past 100 percent, empty, zero.
const EDGES: &[&str] = &[
    "-1",
    "-0.5",
    "1.5",
    "1e309",
    "18446744073709551616",
    "100.5",
    "0",
    "\"\"",
    "\"1\"",
    "null",
];

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (any::<Index>(), value()).prop_map(|(at, v)| Edit::Replace(at, v)),
        2 => (any::<Index>(), field_name(), value()).prop_map(|(at, k, v)| Edit::Insert(at, k, v)),
        2 => (any::<Index>(), value()).prop_map(|(at, v)| Edit::Repeat(at, v)),
        1 => any::<Index>().prop_map(Edit::Remove),
        2 => timestamp().prop_map(Edit::Ts),
        3 => (any::<Index>(), select(EDGES)).prop_map(|(at, v)| Edit::Edge(at, v)),
    ]
}

/// A valid event with a few fields changed: most of it right, so the parser is tried
/// past its first checks.
fn near_valid_event() -> impl Strategy<Value = String> {
    (draft(), vec(edit(), 0..4)).prop_map(|(draft, edits)| {
        let Ok(Value::Object(map)) = serde_json::to_value(&draft) else {
            unreachable!("a draft is an object")
        };
        let mut fields: Vec<(String, String)> = map
            .iter()
            .map(|(k, v)| (quoted(k), v.to_string()))
            .collect();
        for edit in edits {
            let len = fields.len();
            match edit {
                Edit::Replace(at, v) if len > 0 => fields[at.index(len)].1 = v,
                Edit::Insert(at, k, v) => fields.insert(at.index(len + 1), (k, v)),
                Edit::Repeat(at, v) if len > 0 => {
                    let key = fields[at.index(len)].0.clone();
                    fields.insert(at.index(len + 1), (key, v));
                }
                Edit::Remove(at) if len > 0 => {
                    fields.remove(at.index(len));
                }
                Edit::Edge(at, v) => {
                    let scalars: Vec<usize> = (0..len)
                        .filter(|&i| !fields[i].1.starts_with(['{', '[']))
                        .filter(|&i| !["\"event\"", "\"v\""].contains(&fields[i].0.as_str()))
                        .collect();
                    if !scalars.is_empty() {
                        fields[scalars[at.index(scalars.len())]].1 = v.to_owned();
                    }
                }
                Edit::Ts(ts) => {
                    fields.retain(|(k, _)| k != "\"ts\"");
                    fields.push((quoted("ts"), ts));
                }
                _ => {}
            }
        }
        object(&fields)
    })
}

/// Any event's text: near valid, hostile, or a mutated seed.
fn any_event(seeds: &[String]) -> BoxedStrategy<String> {
    let seeds = seeds.to_vec();
    prop_oneof![
        3 => near_valid_event(),
        2 => hostile_event(),
        2 => (select(seeds), vec(mutation(), 0..3)).prop_map(|(seed, ms)| mutate(seed, &ms)),
    ]
    .boxed()
}

/// The deepest JSON serde_json reads: 128 levels, the last of which it refuses.
const SERDE_JSON_DEPTH: usize = 127;

/// The pieces of a message with the bytes each takes once stored: as sent, escaped or
/// not, and as the hub writes it (serde_json escapes only `"`, `\` and controls).
const PIECES: &[(&str, usize)] = &[
    ("m", 1),
    ("é", 2),
    ("\\u00e9", 2),
    ("日", 3),
    ("🔑", 4),
    ("\\ud83d\\udd11", 4),
    ("\\n", 2),
    ("\\u000a", 2),
    ("\\u0000", 6),
    ("\\u001f", 6),
    ("\\\"", 2),
    ("\\/", 1),
    ("\\u007f", 1),
];

// ---------------------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(config(256))]

    /// Any bytes at all, read as the hub could not (lossily), break no parser.
    #[test]
    fn arbitrary_bytes(bytes in vec(any::<u8>(), 0..300)) {
        check_any(&String::from_utf8_lossy(&bytes));
    }

    /// Text made of JSON's own characters, which gets further into a parser than
    /// random bytes do.
    #[test]
    fn json_like_text(text in "[\\[\\]{}\":,0-9eE.+\\- \\n\\\\tuflnrsaev_]{0,80}") {
        check_any(&text);
    }

    /// Events of hostile fields: duplicate keys, huge numbers, NUL, lone surrogates,
    /// edge timestamps, deep nesting.
    #[test]
    fn hostile_events(text in hostile_event()) {
        check_any(&text);
    }
}

proptest! {
    // The most of these: each is cheap, and most get past the parser's first checks.
    #![proptest_config(config(1024))]

    /// Valid events with fields replaced, added, repeated or removed.
    #[test]
    fn near_valid_events(text in near_valid_event()) {
        check_any(&text);
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// The seeds of the corpus, changed byte by byte.
    #[test]
    fn mutated_seeds(
        seed in select(seeds()),
        mutations in vec(mutation(), 1..5),
    ) {
        check_any(&mutate(seed, &mutations));
    }

    /// A batch of any events, in both framings, is accepted whole or refused at its first
    /// bad event, and nothing else.
    #[test]
    fn batches(
        events in vec(any_event(&seeds()), 0..8),
        crlf in any::<bool>(),
    ) {
        let ndjson = events.join(if crlf { "\r\n" } else { "\n" });
        check_batch(&ndjson, BatchFormat::Ndjson).ok();
        check_batch(&format!("[{}]", events.join(",")), BatchFormat::JsonArray).ok();
    }

    /// A JSON array and NDJSON of the same events come to the same: the same drafts, or
    /// the same error at the same index.
    #[test]
    fn both_framings_parse_the_same(events in vec(any_event(&seeds()), 0..8)) {
        // One line each, and each a JSON value, so that both framings hold the same
        // events; text that is not JSON goes in as a string.
        let events: Vec<String> = events
            .into_iter()
            .map(|e| e.replace(['\n', '\r'], " "))
            .map(|e| {
                if serde_json::from_str::<&RawValue>(&e).is_ok() { e } else { quoted(&e) }
            })
            .collect();
        let run = run_id(RUN);
        let array = parse_batch(&format!("[{}]", events.join(",")), BatchFormat::JsonArray, &run);
        let ndjson = parse_batch(&events.join("\n"), BatchFormat::Ndjson, &run);
        prop_assert_eq!(array, ndjson);
    }

    /// Repeated keys are refused naming the key, or the last one counts: never a mix,
    /// never the first.
    #[test]
    fn duplicate_keys(text in near_valid_event()) {
        let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(&text) else {
            return Ok(());
        };
        // serde_json keeps the last of repeated keys: the event written without repeats.
        let last_wins = Value::Object(fields).to_string();
        let run = run_id(RUN);
        match (parse_draft_str(&text, &run), parse_draft_str(&last_wins, &run)) {
            (Err(e), _) if repeated_key(&text, e.field.as_deref()) => {}
            (as_sent, deduplicated) => prop_assert_eq!(as_sent, deduplicated),
        }
    }

    /// A value nested at any depth is accepted up to the limit and refused past it,
    /// naming its field; past serde_json's own limit the event is no JSON it reads.
    #[test]
    fn nesting(
        text in near_valid_event(),
        levels in 1usize..140,
        objects in vec(any::<bool>(), 1..4),
        key in "deep[0-9]{1,3}",
    ) {
        let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(&text) else {
            return Ok(());
        };
        let run = run_id(RUN);
        let rest = Value::Object(fields).to_string();
        let before = parse_draft_str(&rest, &run);
        // The deep field first, so that it is the first the parser finds too deep.
        let deep = nested(levels, &objects);
        let text = if rest == "{}" {
            format!(r#"{{"{key}":{deep}}}"#)
        } else {
            rest.replacen('{', &format!(r#"{{"{key}":{deep},"#), 1)
        };
        let res = check_event_text(&text);
        // The event's own object is a level; the value's innermost `1` is none.
        let depth = 1 + levels;
        if depth > SERDE_JSON_DEPTH {
            prop_assert_eq!(res.map_err(|e| e.code), Err(ErrorCode::InvalidJson));
        } else if depth > MAX_EVENT_DEPTH {
            let e = res.expect_err("nested past the limit");
            prop_assert_eq!(e.code, ErrorCode::InvalidField);
            prop_assert_eq!(e.field.as_deref(), Some(key.as_str()));
        } else {
            // Within the limit the field changes nothing, but the size: a built-in event
            // drops a field it does not know, a custom one keeps it.
            match (before, res) {
                (Ok(_), Ok(_)) => {}
                (_, Err(e)) if e.code == ErrorCode::EventTooLarge => {}
                (Err(before), Err(e)) => prop_assert_eq!(before, e),
                (before, res) => prop_assert!(false, "{:?} became {:?}", before, res),
            }
        }
    }

    /// Near the size limit, an event is accepted exactly when it fits once stored,
    /// counted to the byte whatever its escapes and characters.
    #[test]
    fn sizes_near_the_limit(
        pieces in vec(select(PIECES), 0..200),
        slack in 0usize..16,
        with_ts in any::<bool>(),
    ) {
        let ts = if with_ts { r#","ts":"2026-11-22T01:07:00+05:30""# } else { "" };
        let frame = format!(r#"{{"event":"log","level":"info","message":""{ts}}}"#);
        let frame_stored = parse_draft_str(&frame, &run_id(RUN))
            .map(|d| d.stamp(run_id(RUN), u64::MAX, T0.parse().expect("T0")).to_json().len())
            .expect("the frame is an event");
        let mut message: String = pieces.iter().map(|(sent, _)| *sent).collect();
        let mut stored = frame_stored + pieces.iter().map(|(_, n)| n).sum::<usize>();
        // Filled with one-byte characters to within `slack` of the limit, either side.
        let target = MAX_EVENT_BYTES + 8 - slack;
        if stored < target {
            message.push_str(&"m".repeat(target - stored));
            stored = target;
        }
        let text = frame.replacen(r#""message":"""#, &format!(r#""message":"{message}""#), 1);
        let res = check_event_text(&text);
        let fits = text.len() <= MAX_EVENT_BYTES && stored <= MAX_EVENT_BYTES;
        prop_assert_eq!(
            res.is_ok(),
            fits,
            "sent in {} bytes, stored in {}: {:?}",
            text.len(),
            stored,
            res.err()
        );
    }
}

/// Whether `field` is a key that `text` repeats.
fn repeated_key(text: &str, field: Option<&str>) -> bool {
    // The field is a path (`event[0].meta`) when the repeat is nested: its last key is
    // the one given twice.
    let given_twice = |key: &str| text.matches(&quoted(key)).count() > 1;
    field.is_some_and(|field| {
        let last = field.rsplit('.').next().unwrap_or(field);
        let last = last.split('[').next().unwrap_or(last);
        given_twice(field) || given_twice(last)
    })
}

/// Every field of every event type (those of `every-type.json`, which has them all),
/// given each value just outside what it takes, or of another type, or too deep: the
/// event is accepted, or refused naming that field and no other.
#[test]
fn every_field_given_each_wrong_value() {
    let (_, every_type) = corpus()
        .into_iter()
        .find(|(name, _)| name == "every-type.json")
        .expect("the corpus has every-type.json");
    let every_type = String::from_utf8(every_type).expect("UTF-8");
    let events = elements(&every_type, BatchFormat::JsonArray).expect("a JSON array");
    let too_deep = nested(MAX_EVENT_DEPTH, &[false]);
    let wrong: Vec<&str> = EDGES
        .iter()
        .copied()
        .chain(["true", "[]", "{}", "[1]", r#"{"a":1}"#, too_deep.as_str()])
        .collect();
    let mut tried = 0;
    for event in events {
        let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(event) else {
            panic!("{event} is an object");
        };
        for key in fields.keys() {
            for value in &wrong {
                // Written by hand: `1e309` is no value serde_json holds.
                let changed: Vec<(String, String)> = fields
                    .iter()
                    .map(|(k, v)| {
                        (
                            quoted(k),
                            if k == key {
                                (*value).to_owned()
                            } else {
                                v.to_string()
                            },
                        )
                    })
                    .collect();
                let text = object(&changed);
                tried += 1;
                let res = check_event_text(&text);
                // A number past `f64` is no JSON serde_json reads, and is refused as
                // such, by its position: no field is known yet.
                if serde_json::from_str::<Value>(value).is_err() {
                    let code = res.map_err(|e| e.code);
                    assert_eq!(code, Err(ErrorCode::InvalidJson), "`{key}` given {value}");
                } else if let Err(e) = res {
                    let named = e.field.as_deref().is_some_and(|f| {
                        f == key
                            || f.starts_with(&format!("{key}."))
                            || f.starts_with(&format!("{key}["))
                    });
                    assert!(named, "`{key}` given {value}: {e}");
                }
            }
        }
    }
    assert!(tried > 1_000, "{tried}");
}

/// `[[[[...` 100 000 deep (more than any stack holds frames for) is an error, not a
/// crash, in every framing and in every place an event may be.
#[test]
fn a_hundred_thousand_brackets_are_an_error_not_a_crash() {
    const DEEP: usize = 100_000;
    let open = "[".repeat(DEEP);
    let closed = format!("{open}{}", "]".repeat(DEEP));
    let objects = "{\"a\":".repeat(DEEP);
    let run = run_id(RUN);
    for (what, text) in [
        ("open brackets", open.clone()),
        ("closed brackets", closed.clone()),
        ("open objects", objects.clone()),
        (
            "brackets in a field",
            format!(r#"{{"event":"custom.x","a":{open}"#),
        ),
        (
            "brackets in a field, closed, within the size limit",
            format!(
                r#"{{"event":"custom.x","a":{}1{}}}"#,
                "[".repeat(30_000),
                "]".repeat(30_000)
            ),
        ),
    ] {
        let e = parse_draft_str(&text, &run).expect_err(what);
        assert!(
            matches!(e.code, ErrorCode::InvalidJson | ErrorCode::EventTooLarge),
            "{what}: {e}"
        );
        let _ = check_event_text(&text);
        check_batch(&text, BatchFormat::Ndjson).expect_err(what);
        check_batch(&text, BatchFormat::JsonArray).expect_err(what);
        // As one event of a batch, after a good one.
        let good = r#"{"event":"log","level":"info","message":"ok"}"#;
        let e = check_batch(&format!("{good}\n{text}"), BatchFormat::Ndjson).expect_err(what);
        assert_eq!(e.index, Some(1), "{what}: {e}");
        check_batch(&format!("[{good},{text}]"), BatchFormat::JsonArray).expect_err(what);
    }
}
