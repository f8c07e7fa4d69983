//! Bad input: every mistake docs/protocol.md#validation-errors lists is rejected with a clear error that
//! names the event's index, the field and an [`ErrorCode`], and a rejected batch yields
//! nothing.
//!
//! Outcomes are written compactly as `"<index> <code> <field>"` (`-` for none), or
//! `"ok <n>"` for a batch of `n` accepted events.

use herald_protocol::{
    BatchError, BatchFormat, MAX_EVENT_BYTES, MAX_EVENT_DEPTH, MAX_EVENT_ID_LEN, MAX_RUN_ID_LEN,
    Timestamp, parse_batch, parse_draft_str, parse_event,
};

use crate::util::{RUN, check_wording, run_id, short};

#[derive(Clone, Copy, Debug)]
enum Input<'a> {
    /// A batch posted as a JSON array.
    Array(&'a str),
    /// A batch posted as NDJSON.
    Ndjson(&'a str),
    /// One stored event, as on a JSON Lines stream.
    Stored(&'a str),
}

/// Parses `input` and compares the outcome with `expected`; returns the error, if any,
/// for checks of its wording.
#[track_caller]
fn check(input: Input<'_>, expected: &str) -> Option<BatchError> {
    let run = run_id(RUN);
    let res = match input {
        Input::Array(body) => parse_batch(body, BatchFormat::JsonArray, &run).map(|d| d.len()),
        Input::Ndjson(body) => parse_batch(body, BatchFormat::Ndjson, &run).map(|d| d.len()),
        Input::Stored(text) => parse_event(text)
            .map(|_| 1)
            .map_err(|error| BatchError { index: None, error }),
    };
    let (actual, err) = match res {
        Ok(n) => (format!("ok {n}"), None),
        Err(e) => (
            format!(
                "{} {} {}",
                e.index.map_or("-".to_owned(), |i| i.to_string()),
                e.error.code.as_str(),
                e.error.field.as_deref().unwrap_or("-"),
            ),
            Some(e),
        ),
    };
    assert_eq!(actual, expected, "{}", short(&format!("{input:?}")));
    if let Some(e) = &err {
        // The wording names the index and the field, whatever the mistake.
        check_wording(e);
    }
    err
}

const GOOD_1: &str = r#"{"event":"heartbeat","elapsed_s":1}"#;
const GOOD_2: &str = r#"{"event":"log","level":"info","message":"ok"}"#;

/// Checks `event` as the third of four events (index 2), in both framings;
/// `expected` is `"<code> <field>"`, or `"ok"`.
#[track_caller]
fn check_third(event: &str, expected: &str) -> Option<BatchError> {
    let (array_expected, ndjson_expected) = if expected == "ok" {
        ("ok 4".to_owned(), "ok 4".to_owned())
    } else {
        (format!("2 {expected}"), format!("2 {expected}"))
    };
    let array = format!("[{GOOD_1}, {GOOD_2},\n {event}, {GOOD_1}]");
    let ndjson = format!("{GOOD_1}\n{GOOD_2}\n{event}\n{GOOD_1}\n");
    let from_array = check(Input::Array(&array), &array_expected);
    let from_ndjson = check(Input::Ndjson(&ndjson), &ndjson_expected);
    assert_eq!(from_array, from_ndjson, "both framings give the same error");
    from_array
}

#[test]
fn event_type() {
    check_third(
        r#"{"event":"progres","done":1,"elapsed_s":1}"#,
        "unknown_event event",
    );
    check_third(
        r#"{"event":"Progress","done":1,"elapsed_s":1}"#,
        "unknown_event event",
    );
    check_third(r#"{"event":"","done":1}"#, "unknown_event event");
    check_third(r#"{"done":1,"elapsed_s":1}"#, "missing_field event");
    check_third(r#"{"event":5}"#, "invalid_field event");
    check_third(r#"{"event":["progress"]}"#, "invalid_field event");
    check_third(r#"{"event":null}"#, "invalid_field event");
}

#[test]
fn custom_event_names() {
    check_third(r#"{"event":"custom.Deploy","x":1}"#, "unknown_event event");
    check_third(r#"{"event":"custom.","x":1}"#, "unknown_event event");
    check_third(r#"{"event":"custom.de-ploy"}"#, "unknown_event event");
    check_third(r#"{"event":"custom.a.b"}"#, "unknown_event event");
    check_third(r#"{"event":"custom.déploy"}"#, "unknown_event event");
    // A well-named custom event may carry any fields.
    check_third(
        r#"{"event":"custom.deploy_2","target":"eu","n":-1.5,"nested":{"a":[null,true]}}"#,
        "ok",
    );
    check_third(r#"{"event":"custom.x"}"#, "ok");
}

#[test]
fn missing_fields() {
    check_third(
        r#"{"event":"progress","elapsed_s":1}"#,
        "missing_field done",
    );
    check_third(
        r#"{"event":"progress","done":1}"#,
        "missing_field elapsed_s",
    );
    check_third(
        r#"{"event":"stage.started","total":3}"#,
        "missing_field stage",
    );
    check_third(
        r#"{"event":"stage.finished","stage":"a","elapsed_s":1}"#,
        "missing_field status",
    );
    check_third(r#"{"event":"run.started"}"#, "missing_field name");
    check_third(r#"{"event":"run.finished"}"#, "missing_field status");
    check_third(r#"{"event":"run.stalled"}"#, "missing_field silent_for_s");
    check_third(
        r#"{"event":"tool.finished","tool":"search","status":"succeeded"}"#,
        "missing_field call_id",
    );
    check_third(r#"{"event":"log","level":"info"}"#, "missing_field message");
    check_third(
        r#"{"event":"text.delta","call_id":"c"}"#,
        "missing_field text",
    );
    check_third(
        r#"{"event":"agent.history","messages":[{"content":"hi"}]}"#,
        "missing_field messages[0].role",
    );
    check_third(
        r#"{"event":"agent.history","messages":[{"role":"user","content":"hi"},{"role":"assistant"}]}"#,
        "missing_field messages[1].content",
    );
}

#[test]
fn mistyped_fields() {
    check_third(
        r#"{"event":"progress","done":"x","elapsed_s":1}"#,
        "invalid_field done",
    );
    check_third(
        r#"{"event":"progress","done":1.5,"elapsed_s":1}"#,
        "invalid_field done",
    );
    check_third(
        r#"{"event":"progress","done":null,"elapsed_s":1}"#,
        "invalid_field done",
    );
    check_third(
        r#"{"event":"progress","done":1,"total":-1,"elapsed_s":1}"#,
        "invalid_field total",
    );
    check_third(
        r#"{"event":"progress","done":1,"elapsed_s":"1s"}"#,
        "invalid_field elapsed_s",
    );
    check_third(
        r#"{"event":"item.finished","item":"a","status":"weird"}"#,
        "invalid_field status",
    );
    check_third(
        r#"{"event":"run.finished","status":"done"}"#,
        "invalid_field status",
    );
    check_third(
        r#"{"event":"tool.finished","call_id":"c","tool":"t","status":"skipped"}"#,
        "invalid_field status",
    );
    check_third(
        r#"{"event":"log","level":"fatal","message":"x"}"#,
        "invalid_field level",
    );
    check_third(
        r#"{"event":"run.started","name":null}"#,
        "invalid_field name",
    );
    check_third(
        r#"{"event":"run.started","name":"a","meta":"x"}"#,
        "invalid_field meta",
    );
    check_third(
        r#"{"event":"run.started","name":"a","total_steps":2.5}"#,
        "invalid_field total_steps",
    );
    check_third(
        r#"{"event":"agent.history","messages":"x"}"#,
        "invalid_field messages",
    );
    check_third(
        r#"{"event":"agent.history","messages":[{"role":5,"content":"x"}]}"#,
        "invalid_field messages[0].role",
    );
    check_third(
        r#"{"event":"llm.response","call_id":"c","input_tokens":-3}"#,
        "invalid_field input_tokens",
    );
}

#[test]
fn out_of_range_values() {
    check_third(
        r#"{"event":"progress","done":1,"percent":100.5,"elapsed_s":1}"#,
        "invalid_field percent",
    );
    check_third(
        r#"{"event":"progress","done":1,"percent":-1,"elapsed_s":1}"#,
        "invalid_field percent",
    );
    check_third(
        r#"{"event":"progress","done":1,"elapsed_s":-1}"#,
        "invalid_field elapsed_s",
    );
    check_third(
        r#"{"event":"progress","done":1,"rate":-0.5,"elapsed_s":1}"#,
        "invalid_field rate",
    );
    check_third(
        r#"{"event":"progress","done":1,"eta_s":-2,"elapsed_s":1}"#,
        "invalid_field eta_s",
    );
    check_third(
        r#"{"event":"progress","stage":"","done":1,"elapsed_s":1}"#,
        "invalid_field stage",
    );
    check_third(
        r#"{"event":"progress","call_id":"","done":1,"elapsed_s":1}"#,
        "invalid_field call_id",
    );
    check_third(
        r#"{"event":"progress","stage":"fetch","call_id":"t1","done":1,"elapsed_s":1}"#,
        "invalid_field stage",
    );
    // A stage's or the run's counter may say what it is doing too.
    check_third(
        r#"{"event":"progress","message":"Page 3","done":1,"elapsed_s":1}"#,
        "ok",
    );
    check_third(
        r#"{"event":"progress","call_id":"t1","message":"Page 3","done":1,"elapsed_s":1}"#,
        "ok",
    );
    check_third(
        r#"{"event":"heartbeat","elapsed_s":-0.5}"#,
        "invalid_field elapsed_s",
    );
    check_third(
        r#"{"event":"llm.response","call_id":"c","ttft_s":-0.1}"#,
        "invalid_field ttft_s",
    );
    check_third(
        r#"{"event":"run.stalled","silent_for_s":-60}"#,
        "invalid_field silent_for_s",
    );
    check_third(
        r#"{"event":"agent.iteration","iteration":0}"#,
        "invalid_field iteration",
    );
    check_third(
        r#"{"event":"stage.started","stage":""}"#,
        "invalid_field stage",
    );
    check_third(
        r#"{"event":"item.started","item":""}"#,
        "invalid_field item",
    );
    check_third(
        r#"{"event":"llm.request","call_id":""}"#,
        "invalid_field call_id",
    );
    check_third(
        r#"{"event":"tool.started","call_id":"c","tool":""}"#,
        "invalid_field tool",
    );
    check_third(
        r#"{"event":"tool.finished","call_id":"c","tool":"t","status":"failed","elapsed_s":-1}"#,
        "invalid_field elapsed_s",
    );
    // The edges are fine.
    check_third(
        r#"{"event":"progress","done":18446744073709551615,"total":18446744073709551615,"percent":100,"elapsed_s":0}"#,
        "ok",
    );
}

#[test]
fn run_ids_in_run_and_parent() {
    let too_long = "x".repeat(MAX_RUN_ID_LEN + 1);
    for field in ["run", "parent"] {
        for (value, expected) in [
            (r#""a b""#.to_owned(), "invalid_field"),
            (r#""a/b""#.to_owned(), "invalid_field"),
            (r#""é""#.to_owned(), "invalid_field"),
            (r#""""#.to_owned(), "invalid_field"),
            (r#""run-1\u0007""#.to_owned(), "invalid_field"),
            (r#""run-1\n""#.to_owned(), "invalid_field"),
            (format!(r#""{too_long}""#), "invalid_field"),
            ("5".to_owned(), "invalid_field"),
            (r#"["run-1"]"#.to_owned(), "invalid_field"),
        ] {
            let event = format!(r#"{{"event":"heartbeat","elapsed_s":1,"{field}":{value}}}"#);
            check_third(&event, &format!("{expected} {field}"));
        }
    }
    // The run of the path may be repeated; another run may not be named.
    check_third(r#"{"event":"heartbeat","elapsed_s":1,"run":"run-1"}"#, "ok");
    let err = check_third(
        r#"{"event":"heartbeat","elapsed_s":1,"run":"run-2"}"#,
        "invalid_field run",
    )
    .unwrap();
    let shown = err.to_string();
    assert!(
        shown.contains("run-2") && shown.contains("run-1"),
        "{shown}"
    );
    // A parent is any valid run id, the longest included.
    let longest = "P".repeat(MAX_RUN_ID_LEN);
    check_third(
        &format!(r#"{{"event":"heartbeat","elapsed_s":1,"parent":"{longest}"}}"#),
        "ok",
    );
    check_third(
        r#"{"event":"heartbeat","elapsed_s":1,"parent":"A.b_c:d-9"}"#,
        "ok",
    );
}

#[test]
fn seq_ts_and_version() {
    for seq in [
        "0",
        "-1",
        "1.5",
        "1.0",
        r#""1""#,
        "null",
        "18446744073709551616",
    ] {
        check_third(
            &format!(r#"{{"event":"heartbeat","elapsed_s":1,"seq":{seq}}}"#),
            "invalid_field seq",
        );
    }
    for ts in [
        r#""yesterday""#,
        r#""""#,
        r#""2026-11-22""#,
        r#""2026-11-22T01:07:00""#,
        r#""2026-13-01T00:00:00Z""#,
        r#""2026-11-22T25:07:00Z""#,
        "1763773620",
        "null",
    ] {
        check_third(
            &format!(r#"{{"event":"heartbeat","elapsed_s":1,"ts":{ts}}}"#),
            "invalid_field ts",
        );
    }
    check_third(
        r#"{"event":"heartbeat","elapsed_s":1,"ts":"2026-11-22T01:07:00.123+05:30"}"#,
        "ok",
    );
    // RFC 3339 has years of four digits. A time that its offset moves out of them in
    // UTC would be stored as `+10000-...`, which nothing reads back.
    for ts in ["0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"] {
        check_third(
            &format!(r#"{{"event":"heartbeat","elapsed_s":1,"ts":"{ts}"}}"#),
            "ok",
        );
    }
    for ts in ["9999-12-31T23:59:59-00:01", "0000-01-01T00:00:00+00:01"] {
        let err = check_third(
            &format!(r#"{{"event":"heartbeat","elapsed_s":1,"ts":"{ts}"}}"#),
            "invalid_field ts",
        )
        .unwrap();
        assert!(err.to_string().contains("0000 to 9999"), "{err}");
    }
    // RFC 3339 lets applications separate date and time by a space; chrono does.
    check_third(
        r#"{"event":"heartbeat","elapsed_s":1,"ts":"2026-11-22 01:07:00Z"}"#,
        "ok",
    );
    for v in ["2", "0", r#""1""#, "1.5"] {
        check_third(
            &format!(r#"{{"v":{v},"event":"heartbeat","elapsed_s":1}}"#),
            "unsupported_version v",
        );
    }
    check_third(r#"{"v":1,"event":"heartbeat","elapsed_s":1}"#, "ok");
}

#[test]
fn idempotency_ids() {
    let longest = "k".repeat(MAX_EVENT_ID_LEN);
    let too_long = "k".repeat(MAX_EVENT_ID_LEN + 1);
    // The limit is in bytes: 64 two-byte characters fit, 65 do not.
    let wide_fits = "é".repeat(MAX_EVENT_ID_LEN / 2);
    let wide_too_long = "é".repeat(MAX_EVENT_ID_LEN / 2 + 1);
    for (id, expected) in [
        (r#""""#.to_owned(), "invalid_field id"),
        (format!(r#""{too_long}""#), "invalid_field id"),
        (format!(r#""{wide_too_long}""#), "invalid_field id"),
        (r#""a\nb""#.to_owned(), "invalid_field id"),
        (r#""a\u0000""#.to_owned(), "invalid_field id"),
        (r#""\u007f""#.to_owned(), "invalid_field id"),
        (r#""a\u009fb""#.to_owned(), "invalid_field id"),
        ("5".to_owned(), "invalid_field id"),
        (r#"{"k":1}"#.to_owned(), "invalid_field id"),
        (format!(r#""{longest}""#), "ok"),
        (format!(r#""{wide_fits}""#), "ok"),
        (r#""ключ 🔑 with spaces/and:punct""#.to_owned(), "ok"),
    ] {
        check_third(
            &format!(r#"{{"event":"heartbeat","elapsed_s":1,"id":{id}}}"#),
            expected,
        );
    }
}

#[test]
fn keys_given_twice() {
    // Whichever copy a parser kept, the producer meant one of them: refused, naming the
    // key, in the envelope, in a body field, and deep inside a value alike.
    check_third(
        r#"{"event":"log","level":"info","message":"a","message":"b"}"#,
        "duplicate_key message",
    );
    check_third(
        r#"{"event":"log","event":"heartbeat","level":"info","message":"a"}"#,
        "duplicate_key event",
    );
    check_third(
        r#"{"event":"heartbeat","elapsed_s":1,"id":"k1","id":"k2"}"#,
        "duplicate_key id",
    );
    check_third(
        r#"{"event":"run.started","name":"a","meta":{"owner":"x","owner":"y"}}"#,
        "duplicate_key meta.owner",
    );
    check_third(
        r#"{"event":"custom.deploy","targets":[{"region":"eu"},{"region":"eu","region":"us"}]}"#,
        "duplicate_key targets[1].region",
    );
    let err = check_third(
        r#"{"event":"agent.history","messages":[{"role":"user","role":"system","content":"x"}]}"#,
        "duplicate_key messages[0].role",
    )
    .unwrap();
    assert!(err.to_string().contains("twice"), "{err}");
    // The same key in two objects is not a repetition.
    check_third(r#"{"event":"custom.pair","a":{"k":1},"b":{"k":2}}"#, "ok");
    // A stored event is held to the same rule.
    check(
        Input::Stored(
            r#"{"v":1,"event":"heartbeat","run":"run-1","seq":3,"seq":4,"ts":"2026-11-22T01:07:00Z","elapsed_s":1}"#,
        ),
        "- duplicate_key seq",
    );
}

/// An event of exactly `len` bytes.
fn log_event_of_len(len: usize) -> String {
    let frame = r#"{"event":"log","level":"info","message":""}"#;
    let event = format!(
        r#"{{"event":"log","level":"info","message":"{}"}}"#,
        "m".repeat(len - frame.len())
    );
    assert_eq!(event.len(), len);
    event
}

/// The length of the event `text` as the hub would store it in run [`RUN`]: with `v`,
/// `run`, a `ts`, and the longest `seq`.
fn stored_len(text: &str) -> usize {
    let run = run_id(RUN);
    let draft = parse_draft_str(text, &run).unwrap_or_else(|e| panic!("{e}: {text}"));
    let now: Timestamp = crate::util::T0.parse().expect("T0 is RFC 3339");
    draft.stamp(run, u64::MAX, now).to_json().len()
}

/// An event that is exactly `len` bytes once stored (see [`stored_len`]).
fn log_event_stored_as(len: usize) -> String {
    let frame = r#"{"event":"log","level":"info","message":""}"#;
    let event = format!(
        r#"{{"event":"log","level":"info","message":"{}"}}"#,
        "m".repeat(len - stored_len(frame))
    );
    assert_eq!(event.len() - frame.len() + stored_len(frame), len);
    event
}

#[test]
fn event_size() {
    check_third(&log_event_stored_as(MAX_EVENT_BYTES), "ok");
    check_third(
        &log_event_stored_as(MAX_EVENT_BYTES + 1),
        "event_too_large -",
    );
    let err = check_third(&log_event_of_len(200_000), "event_too_large -").unwrap();
    let shown = err.to_string();
    assert!(
        shown.contains("200000") && shown.contains("65536"),
        "{shown}"
    );
}

/// The limit holds for what is stored, which is longer than what was sent: the
/// envelope is added, and a number is written in full (`1e15` is stored as
/// `1000000000000000.0`). An event that fitted as sent and not as stored was stored
/// and then could not be read back, which broke every read of its run.
#[test]
fn the_size_limit_is_on_the_event_as_stored() {
    let err = check_third(&log_event_of_len(MAX_EVENT_BYTES), "event_too_large -").unwrap();
    assert!(err.to_string().contains("as stored"), "{err}");
    let numbers = format!(
        r#"{{"event":"custom.x","a":[{}1e15]}}"#,
        "1e15,".repeat(4_000)
    );
    assert!(numbers.len() < MAX_EVENT_BYTES / 3, "{}", numbers.len());
    check_third(&numbers, "event_too_large -");
    // A timestamp is written with six fractional digits, and in UTC.
    let frame = r#"{"event":"log","level":"info","message":"","ts":"2026-11-22T01:07:00+05:30"}"#;
    let len = MAX_EVENT_BYTES - stored_len(frame);
    let at_limit = frame.replace(
        r#""message":"""#,
        &format!(r#""message":"{}""#, "m".repeat(len)),
    );
    check_third(&at_limit, "ok");
    let over = frame.replace(
        r#""message":"""#,
        &format!(r#""message":"{}""#, "m".repeat(len + 1)),
    );
    check_third(&over, "event_too_large -");
}

/// `[[...[1]...]]` nested `levels` deep.
fn nested_array(levels: usize) -> String {
    format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
}

/// `{"a":{"a":...{}...}}` nested `levels` deep.
fn nested_object(levels: usize) -> String {
    format!(
        "{}{{}}{}",
        r#"{"a":"#.repeat(levels - 1),
        "}".repeat(levels - 1)
    )
}

/// An event nests at most [`MAX_EVENT_DEPTH`] levels, its own object being the first,
/// so that every reply that wraps it (a page of events, a state in a list, an MCP
/// result) stays within the 128 levels serde_json reads.
#[test]
fn nesting_depth() {
    for (field, event) in [
        ("deep", r#"{"event":"custom.x","deep":VALUE}"#),
        (
            "input",
            r#"{"event":"tool.started","call_id":"c","tool":"t","input":VALUE}"#,
        ),
        (
            "messages",
            r#"{"event":"agent.history","messages":[{"role":"user","content":VALUE}]}"#,
        ),
        (
            "meta",
            r#"{"event":"run.started","name":"n","meta":{"k":VALUE}}"#,
        ),
    ] {
        // The value's own levels, below those of the fields around it.
        let above = event.split("VALUE").next().unwrap_or_default();
        let above = above.matches(['{', '[']).count();
        for value in [nested_array, nested_object] {
            let fits = event.replace("VALUE", &value(MAX_EVENT_DEPTH - above));
            check_third(&fits, "ok");
            let over = event.replace("VALUE", &value(MAX_EVENT_DEPTH - above + 1));
            let err = check_third(&over, &format!("invalid_field {field}")).unwrap();
            assert!(err.to_string().contains("64 levels"), "{err}");
        }
    }
    // Past serde_json's own limit it is not JSON this parser reads at all.
    check_third(
        &format!(r#"{{"event":"custom.x","deep":{}}}"#, nested_array(200)),
        "invalid_json -",
    );
    // A stored event is read back as deep as serde_json reads, so that one stored
    // before the limit is still read.
    let stored = format!(
        r#"{{"v":1,"event":"custom.x","run":"run-1","seq":1,"ts":"{}","deep":{}}}"#,
        crate::util::T0,
        nested_array(100)
    );
    assert!(parse_event(&stored).is_ok());
}

#[test]
fn the_batch_as_a_whole() {
    // Not an array.
    check(Input::Array(GOOD_1), "- not_an_object -");
    check(Input::Array(r#""events""#), "- not_an_object -");
    check(Input::Array("null"), "- not_an_object -");
    // Not JSON.
    check(Input::Array(""), "- invalid_json -");
    check(Input::Array("[{"), "- invalid_json -");
    check(Input::Array("[1,]"), "- invalid_json -");
    check(Input::Array(&format!("[{GOOD_1}] [")), "- invalid_json -");
    // An array of things that are not events.
    check(Input::Array(&format!("[{GOOD_1}, 1]")), "1 not_an_object -");
    check(
        Input::Array(&format!("[{GOOD_1}, []]")),
        "1 not_an_object -",
    );
    check(
        Input::Ndjson(&format!("{GOOD_1}\n[1]")),
        "1 not_an_object -",
    );
    check(
        Input::Ndjson(&format!("{GOOD_2}\n{GOOD_1}\nnot json")),
        "2 invalid_json -",
    );
    check(
        Input::Ndjson(&format!("{GOOD_2}\n{{\"event\":")),
        "1 invalid_json -",
    );
    // Empty batches are fine.
    check(Input::Array("[]"), "ok 0");
    check(Input::Array(" [ ] \n"), "ok 0");
    check(Input::Ndjson(""), "ok 0");
    check(Input::Ndjson("\n\n"), "ok 0");
    // CRLF line ends and blank lines in NDJSON.
    check(
        Input::Ndjson(&format!("{GOOD_1}\r\n\r\n{GOOD_2}\r\n")),
        "ok 2",
    );
}

#[test]
fn the_first_bad_event_fails_the_whole_batch() {
    let bad = r#"{"event":"progress","done":"x","elapsed_s":1}"#;
    // A JSON array whose element 5 is bad, with another bad one after it.
    let mut events = [GOOD_1; 8];
    events[5] = bad;
    events[7] = r#"{"event":"nope"}"#;
    check(
        Input::Array(&format!("[{}]", events.join(","))),
        "5 invalid_field done",
    );
    // NDJSON with a bad line 3.
    check(
        Input::Ndjson(&format!("{GOOD_1}\n{GOOD_2}\n{bad}\n{GOOD_1}")),
        "2 invalid_field done",
    );
    // The index counts events, not lines: blank lines are skipped.
    check(
        Input::Ndjson(&format!("{GOOD_1}\n\n{GOOD_2}\n   \n{bad}\n")),
        "2 invalid_field done",
    );
}

#[test]
fn stored_events_need_their_whole_envelope() {
    let ts = "2026-11-22T01:07:00.000000Z";
    let full =
        format!(r#"{{"v":1,"event":"heartbeat","run":"run-1","seq":3,"ts":"{ts}","elapsed_s":1}}"#);
    check(Input::Stored(&full), "ok 1");
    for (text, expected) in [
        (full.replace(r#""v":1,"#, ""), "- missing_field v"),
        (full.replace(r#""run":"run-1","#, ""), "- missing_field run"),
        (full.replace(r#""seq":3,"#, ""), "- missing_field seq"),
        (
            full.replace(&format!(r#""ts":"{ts}","#), ""),
            "- missing_field ts",
        ),
        (
            full.replace(r#""v":1"#, r#""v":2"#),
            "- unsupported_version v",
        ),
        (
            full.replace(r#""seq":3"#, r#""seq":0"#),
            "- invalid_field seq",
        ),
        (
            full.replace(r#""seq":3"#, r#""seq":-3"#),
            "- invalid_field seq",
        ),
        (
            full.replace(r#""seq":3"#, r#""seq":3.5"#),
            "- invalid_field seq",
        ),
        (
            full.replace(r#""seq":3"#, r#""seq":"3""#),
            "- invalid_field seq",
        ),
        (
            full.replace(r#""run":"run-1""#, r#""run":null"#),
            "- missing_field run",
        ),
        (
            full.replace(r#""run":"run-1""#, r#""run":"r/1""#),
            "- invalid_field run",
        ),
        (full.replace(ts, "2026-11-22T01:07Z"), "- invalid_field ts"),
        (
            full.replace(r#""elapsed_s":1"#, r#""elapsed_s":"1""#),
            "- invalid_field elapsed_s",
        ),
        (
            full.replace("heartbeat", "heart.beat"),
            "- unknown_event event",
        ),
        ("[]".to_owned(), "- not_an_object -"),
        ("{".to_owned(), "- invalid_json -"),
        (log_event_of_len(MAX_EVENT_BYTES + 1), "- event_too_large -"),
    ] {
        check(Input::Stored(&text), expected);
    }
}

#[test]
fn errors_read_well() {
    let err = check_third(
        r#"{"event":"progress","elapsed_s":1}"#,
        "missing_field done",
    )
    .unwrap();
    assert_eq!(err.to_string(), "event 2: `progress` needs field `done`");
    let err = check_third(
        r#"{"event":"progress","done":"x","elapsed_s":1}"#,
        "invalid_field done",
    )
    .unwrap();
    assert_eq!(
        err.to_string(),
        r#"event 2: `progress` field `done`: invalid type: string "x", expected u64"#
    );
    let err = check_third(
        r#"{"event":"agent.history","messages":[{"content":"hi"}]}"#,
        "missing_field messages[0].role",
    )
    .unwrap();
    assert!(err.to_string().contains("`messages[0].role`"), "{err}");
    let err = check_third(
        r#"{"event":"item.finished","item":"a","status":"weird"}"#,
        "invalid_field status",
    )
    .unwrap();
    let shown = err.to_string();
    assert!(
        shown.contains("`weird`") && shown.contains("succeeded"),
        "{shown}"
    );
    let err = check_third(r#"{"event":"progres"}"#, "unknown_event event").unwrap();
    assert!(err.to_string().contains("`progres`"), "{err}");
    let err = check_third(
        r#"{"event":"heartbeat","elapsed_s":1,"seq":0}"#,
        "invalid_field seq",
    )
    .unwrap();
    assert!(err.to_string().contains("from 1"), "{err}");
    // serde_json's " at line L column C" says nothing about a field; it is left out.
    let err = check_third(
        r#"{"event":"log","level":"fatal","message":"x"}"#,
        "invalid_field level",
    )
    .unwrap();
    assert!(!err.to_string().contains(" at line "), "{err}");
    // A batch that is not an array says what it should be.
    let err = check(Input::Array(GOOD_1), "- not_an_object -").unwrap();
    assert!(err.to_string().contains("JSON array"), "{err}");
}

#[test]
fn weights_and_eta_ranges() {
    // Weights are numbers from 0: bytes, tokens, rows.
    check_third(
        r#"{"event":"item.finished","item":"a","status":"succeeded","weight":-1}"#,
        "invalid_field weight",
    );
    check_third(
        r#"{"event":"item.finished","item":"a","status":"succeeded","weight":"big"}"#,
        "invalid_field weight",
    );
    // JSON has no infinity or NaN to send: a number too large for one is not JSON at
    // all, whichever field it is in.
    check_third(
        r#"{"event":"item.finished","item":"a","status":"succeeded","weight":1e999}"#,
        "invalid_json -",
    );
    check_third(
        r#"{"event":"stage.started","stage":"s","total_weight":-0.5}"#,
        "invalid_field total_weight",
    );
    check_third(
        r#"{"event":"progress","stage":"s","done":1,"done_weight":-3,"elapsed_s":1}"#,
        "invalid_field done_weight",
    );
    check_third(
        r#"{"event":"progress","stage":"s","done":1,"total_weight":-3,"elapsed_s":1}"#,
        "invalid_field total_weight",
    );
    // A total weight below the weight done.
    let err = check_third(
        r#"{"event":"progress","stage":"s","done":1,"done_weight":10,"total_weight":5,"elapsed_s":1}"#,
        "invalid_field total_weight",
    )
    .expect("an error");
    assert!(err.to_string().contains("below the weight done"), "{err}");
    // At the total, and weights with no total, are fine.
    check_third(
        r#"{"event":"progress","stage":"s","done":1,"done_weight":10,"total_weight":10,"elapsed_s":1}"#,
        "ok",
    );
    check_third(
        r#"{"event":"progress","stage":"s","done":1,"done_weight":0.5,"elapsed_s":1}"#,
        "ok",
    );
    check_third(
        r#"{"event":"item.finished","item":"a","status":"succeeded","weight":0}"#,
        "ok",
    );

    // The range of seconds left is in order around the point.
    check_third(
        r#"{"event":"progress","done":1,"eta_low_s":-1,"elapsed_s":1}"#,
        "invalid_field eta_low_s",
    );
    check_third(
        r#"{"event":"progress","done":1,"eta_high_s":-1,"elapsed_s":1}"#,
        "invalid_field eta_high_s",
    );
    check_third(
        r#"{"event":"progress","done":1,"eta_low_s":9,"eta_high_s":3,"elapsed_s":1}"#,
        "invalid_field eta_low_s",
    );
    check_third(
        r#"{"event":"progress","done":1,"eta_s":2,"eta_low_s":3,"eta_high_s":9,"elapsed_s":1}"#,
        "invalid_field eta_low_s",
    );
    check_third(
        r#"{"event":"progress","done":1,"eta_s":10,"eta_low_s":3,"eta_high_s":9,"elapsed_s":1}"#,
        "invalid_field eta_high_s",
    );
    check_third(
        r#"{"event":"progress","done":1,"eta_s":4,"eta_low_s":3,"eta_high_s":9,"elapsed_s":1}"#,
        "ok",
    );

    // Stages declared ahead: named, each once, with weights from 0, at most 256.
    check_third(
        r#"{"event":"run.started","name":"r","stages":[{"stage":"a"},{"stage":""}]}"#,
        "invalid_field stages[1].stage",
    );
    check_third(
        r#"{"event":"run.started","name":"r","stages":[{"stage":"a"},{"stage":"a"}]}"#,
        "invalid_field stages[1].stage",
    );
    check_third(
        r#"{"event":"run.started","name":"r","stages":[{"stage":"a","total_weight":-1}]}"#,
        "invalid_field stages[0].total_weight",
    );
    check_third(
        r#"{"event":"run.started","name":"r","stages":[{"stage":"a","total":-1}]}"#,
        "invalid_field stages[0].total",
    );
    check_third(
        r#"{"event":"run.started","name":"r","stages":{"stage":"a"}}"#,
        "invalid_field stages",
    );
    let many: Vec<String> = (0..257).map(|i| format!(r#"{{"stage":"s{i}"}}"#)).collect();
    check_third(
        &format!(
            r#"{{"event":"run.started","name":"r","stages":[{}]}}"#,
            many.join(",")
        ),
        "invalid_field stages",
    );
    check_third(
        &format!(
            r#"{{"event":"run.started","name":"r","stages":[{}]}}"#,
            many[..256].join(",")
        ),
        "ok",
    );
    check_third(
        r#"{"event":"run.started","name":"r","total_steps":2,"stages":[{"stage":"fetch","total":10},{"stage":"pack","total_weight":1e6}]}"#,
        "ok",
    );
}
