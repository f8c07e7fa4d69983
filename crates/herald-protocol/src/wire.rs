//! The JSON wire form of events: serialization, parsing and validation.
//!
//! Every parse error names what is wrong with a machine-readable [`ErrorCode`], the
//! field at fault, and (for batches) the index of the event, so that a hub can answer
//! `400 {"error": {"code", "message", "index", "field"}}` and a producer can fix its
//! input without guessing.
//!
//! Unknown fields in a built-in event are ignored (and not kept), so that a producer
//! written against a later minor revision of protocol v1, which may add optional
//! fields, still works with this hub. A key given twice in one object, at any depth,
//! is refused ([`ErrorCode::DuplicateKey`]) rather than resolved by keeping one.

use std::fmt;

use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::event::{Custom, Draft, Event, EventBody, PROTOCOL_VERSION, PlannedStage};
use crate::ids::{RunId, Timestamp};
use crate::json::{parse_json, scan_object, unique_value};
use crate::state::MAX_STAGES;

/// Largest event, in bytes of JSON: 64 KiB.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

/// Longest idempotency key (`id`), in bytes.
pub const MAX_EVENT_ID_LEN: usize = 128;

/// Deepest an event's JSON may nest, its own object being level 1.
///
/// Replies wrap events a few levels deeper (a page of events, a run's state in a list,
/// an MCP result), and serde_json reads at most 128 levels: an event much deeper than
/// this would be stored and then unreadable to a client that reads a reply whole.
pub const MAX_EVENT_DEPTH: usize = 64;

/// How many times longer than the text it was sent as an event can be once stored, at
/// most. Numbers are written in full, `1e15` as `1000000000000000.0` (with its comma, 5
/// bytes become 19, the most any number grows), an integer in a field of seconds gains
/// `.0`, a `ts` its six fractional digits; nothing else grows. So an event sent in an
/// eighth of the limit, less room for the envelope, fits once stored unmeasured.
const MAX_GROWTH: usize = 8;

/// Room for the envelope the hub adds to a draft: `"v":1,`, `"run":"<128 bytes>",`,
/// `"seq":<20 digits>,` and `"ts":"<27 bytes>",` come to 205 bytes.
const ENVELOPE_BYTES: usize = 256;

/// What kind of mistake an event has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Not JSON at all.
    InvalidJson,
    /// JSON, but not an object (or, for a batch, not an array of objects).
    NotAnObject,
    /// `event` names no type of the protocol.
    UnknownEvent,
    /// A required field is absent.
    MissingField,
    /// A field has the wrong type or an out-of-range value.
    InvalidField,
    /// The event is larger than [`MAX_EVENT_BYTES`], as sent or as stored.
    EventTooLarge,
    /// `v` is not a version this crate speaks.
    UnsupportedVersion,
    /// An object gives one key twice (the field is the key's path).
    DuplicateKey,
}

impl ErrorCode {
    /// The code as written in error bodies, e.g. `"missing_field"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::NotAnObject => "not_an_object",
            ErrorCode::UnknownEvent => "unknown_event",
            ErrorCode::MissingField => "missing_field",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::EventTooLarge => "event_too_large",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::DuplicateKey => "duplicate_key",
        }
    }
}

/// One event that could not be accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventError {
    /// What kind of mistake.
    pub code: ErrorCode,
    /// The field at fault, as a path (`done`, `messages[0].role`), when one is.
    pub field: Option<String>,
    /// A sentence for people.
    pub message: String,
}

impl EventError {
    pub(crate) fn new(
        code: ErrorCode,
        field: Option<&str>,
        message: impl Into<String>,
    ) -> EventError {
        EventError {
            code,
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }

    fn invalid(field: &str, message: impl Into<String>) -> EventError {
        EventError::new(ErrorCode::InvalidField, Some(field), message)
    }

    fn missing(field: &str) -> EventError {
        EventError::new(
            ErrorCode::MissingField,
            Some(field),
            format!("missing field `{field}`"),
        )
    }
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) if !self.message.contains(&format!("`{field}`")) => {
                write!(f, "field `{field}`: {}", self.message)
            }
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for EventError {}

/// An event of a batch that could not be accepted, with its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchError {
    /// Index of the event in the batch, from 0; `None` when the batch as a whole is bad.
    pub index: Option<usize>,
    /// What is wrong with it.
    pub error: EventError,
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "event {i}: {}", self.error),
            None => write!(f, "{}", self.error),
        }
    }
}

impl std::error::Error for BatchError {}

/// How a batch of events is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchFormat {
    /// A JSON array of event objects.
    JsonArray,
    /// One event object per line (`application/x-ndjson`); blank lines are skipped.
    Ndjson,
}

/// Parses a batch of drafts as a producer posts them to `POST /v1/runs/{id}/events`.
///
/// `run` is the run in the path: an event may repeat it in its `run` field, but may
/// not name another. Either every event is valid and all are returned, or the first
/// error is, with the event's index.
pub fn parse_batch(body: &str, format: BatchFormat, run: &RunId) -> Result<Vec<Draft>, BatchError> {
    let whole = |error| BatchError { index: None, error };
    let at = |index, error| BatchError {
        index: Some(index),
        error,
    };
    match format {
        BatchFormat::JsonArray => {
            let raws: Vec<&RawValue> = serde_json::from_str(body).map_err(|e| {
                let code = if e.is_syntax() || e.is_eof() {
                    ErrorCode::InvalidJson
                } else {
                    ErrorCode::NotAnObject
                };
                whole(EventError::new(
                    code,
                    None,
                    format!("the body must be a JSON array of events: {e}"),
                ))
            })?;
            raws.iter()
                .enumerate()
                .map(|(i, raw)| parse_draft_str(raw.get(), run).map_err(|e| at(i, e)))
                .collect()
        }
        BatchFormat::Ndjson => body
            .lines()
            .filter(|line| !line.trim().is_empty())
            .enumerate()
            .map(|(i, line)| parse_draft_str(line, run).map_err(|e| at(i, e)))
            .collect(),
    }
}

/// Parses one draft from its JSON text.
pub fn parse_draft_str(text: &str, run: &RunId) -> Result<Draft, EventError> {
    check_size(text.len())?;
    let d = decode_text(text, Mode::Draft)?;
    if let Some(r) = d.run {
        if &r != run {
            return Err(EventError::invalid(
                "run",
                format!("the event names run `{r}` but is posted to run `{run}`"),
            ));
        }
    }
    let draft = Draft {
        ts: d.ts,
        id: d.id,
        parent: d.parent,
        body: d.body,
    };
    check_stored_size(text.len(), &draft, run)?;
    Ok(draft)
}

/// Parses one stored event (with `v`, `run`, `seq` and `ts`) from its JSON text, as
/// found on a JSON Lines stream or in a hub's reply.
pub fn parse_event(text: &str) -> Result<Event, EventError> {
    check_size(text.len())?;
    let d = decode_text(text, Mode::Event)?;
    into_event(d)
}

fn event_from_value(value: Value) -> Result<Event, EventError> {
    let Value::Object(map) = value else {
        return Err(not_an_object());
    };
    into_event(decode(map, Mode::Event)?)
}

fn not_an_object() -> EventError {
    EventError::new(
        ErrorCode::NotAnObject,
        None,
        "an event must be a JSON object",
    )
}

/// Decodes an event or a draft from its text straight into its typed body, without
/// building a `serde_json::Value` of it (which, with decoding it again, was most of a
/// hub's work per event): one pass checks the JSON, repeated keys and depth and builds
/// the envelope's few values; a second reads the body's struct from the text, where
/// the envelope's fields are unknown fields to it and so skipped. A custom event keeps
/// its fields as a map of values anyway, and is decoded through one.
fn decode_text(text: &str, mode: Mode) -> Result<Decoded, EventError> {
    // Stored events are read back as deep as serde_json reads (see `too_deep`).
    let max_levels = match mode {
        Mode::Draft => MAX_EVENT_DEPTH,
        Mode::Event => usize::MAX,
    };
    let Some(scanned) = scan_object(text, Custom::RESERVED_FIELDS, max_levels)? else {
        return Err(not_an_object());
    };
    if let Some((field, levels)) = scanned.too_deep {
        return Err(too_deep(&field, levels));
    }
    let mut envelope = scanned.picked;
    let is_custom = matches!(
        envelope.get("event"),
        Some(Value::String(t)) if t.starts_with(Custom::PREFIX)
    );
    if is_custom {
        let Value::Object(map) = parse_json(text)? else {
            return Err(not_an_object());
        };
        return decode(map, mode);
    }
    let head = decode_envelope(&mut envelope, mode)?;
    let body = match EventBody::decode_builtin_str(&head.event_type, text) {
        None => return Err(unknown_event(&head.event_type)),
        Some(Ok(body)) => body,
        Some(Err(e)) => return Err(field_error(&head.event_type, e)),
    };
    validate_body(&body)?;
    Ok(head.with_body(body))
}

fn into_event(d: Decoded) -> Result<Event, EventError> {
    // `decode` in `Mode::Event` has checked that these are present.
    match (d.run, d.seq, d.ts) {
        (Some(run), Some(seq), Some(ts)) => Ok(Event {
            run,
            seq,
            ts,
            id: d.id,
            parent: d.parent,
            body: d.body,
        }),
        _ => Err(EventError::missing("run")),
    }
}

fn check_size(len: usize) -> Result<(), EventError> {
    if len > MAX_EVENT_BYTES {
        return Err(EventError::new(
            ErrorCode::EventTooLarge,
            None,
            format!("the event is {len} bytes, over the limit of {MAX_EVENT_BYTES}"),
        ));
    }
    Ok(())
}

/// Refuses a field whose value nests the event deeper than [`MAX_EVENT_DEPTH`].
///
/// Only drafts are checked: a stored event is read back as deep as serde_json reads,
/// so that one stored before this limit is not lost.
fn too_deep(name: &str, levels: usize) -> EventError {
    EventError::invalid(
        name,
        format!(
            "`{name}` nests the event {levels} levels deep, over the limit of \
             {MAX_EVENT_DEPTH} levels"
        ),
    )
}

/// Refuses a draft that would be over [`MAX_EVENT_BYTES`] as the hub stores it: with
/// its envelope and the longest `seq`, and its numbers written in full. An event
/// accepted at its size as sent and stored over the limit could not be read back.
fn check_stored_size(sent: usize, draft: &Draft, run: &RunId) -> Result<(), EventError> {
    if sent * MAX_GROWTH + ENVELOPE_BYTES <= MAX_EVENT_BYTES {
        return Ok(());
    }
    struct AsStored<'a>(&'a Draft, &'a RunId);
    impl Serialize for AsStored<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let AsStored(draft, run) = self;
            // Every `ts` is written in as many bytes, so any stands for the hub's own.
            let ts = draft.ts.unwrap_or(Timestamp::from_unix_micros(0));
            serialize_flat(
                s,
                Some((run, u64::MAX)),
                Some(ts),
                draft.id.as_deref(),
                draft.parent.as_ref(),
                &draft.body,
            )
        }
    }
    let stored = serde_json::to_string(&AsStored(draft, run)).map_or(usize::MAX, |s| s.len());
    if stored > MAX_EVENT_BYTES {
        return Err(EventError::new(
            ErrorCode::EventTooLarge,
            None,
            format!("the event is {stored} bytes as stored, over the limit of {MAX_EVENT_BYTES}"),
        ));
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A stored event: `v`, `run`, `seq` and `ts` are required.
    Event,
    /// A producer's draft: they may be absent (and `seq` is ignored when present).
    Draft,
}

struct Decoded {
    run: Option<RunId>,
    seq: Option<u64>,
    ts: Option<Timestamp>,
    id: Option<String>,
    parent: Option<RunId>,
    body: EventBody,
}

/// The envelope of an event, decoded; its type names the body still to decode.
struct Head {
    event_type: String,
    run: Option<RunId>,
    seq: Option<u64>,
    ts: Option<Timestamp>,
    id: Option<String>,
    parent: Option<RunId>,
}

impl Head {
    fn with_body(self, body: EventBody) -> Decoded {
        Decoded {
            run: self.run,
            seq: self.seq,
            ts: self.ts,
            id: self.id,
            parent: self.parent,
            body,
        }
    }
}

fn decode(mut map: Map<String, Value>, mode: Mode) -> Result<Decoded, EventError> {
    let head = decode_envelope(&mut map, mode)?;
    let body = decode_body(&head.event_type, map)?;
    validate_body(&body)?;
    Ok(head.with_body(body))
}

/// Takes the envelope's fields out of `map`, checked; what is left is the body's.
fn decode_envelope(map: &mut Map<String, Value>, mode: Mode) -> Result<Head, EventError> {
    // `shift_remove`, not `remove`: with `preserve_order` the latter swaps the last
    // field into the hole, which would scramble the order of a custom event's fields.
    let required = mode == Mode::Event;

    match map.shift_remove("v") {
        None if required => return Err(EventError::missing("v")),
        None => {}
        Some(v) if v.as_u64() == Some(PROTOCOL_VERSION) => {}
        Some(v) => {
            return Err(EventError::new(
                ErrorCode::UnsupportedVersion,
                Some("v"),
                format!(
                    "protocol version {v} is not supported (this hub speaks {PROTOCOL_VERSION})"
                ),
            ));
        }
    }

    let event_type = match map.shift_remove("event") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(EventError::invalid("event", "`event` must be a string")),
        None => return Err(EventError::missing("event")),
    };

    let run = take_run_id(map, "run", required)?;
    let seq = match map.shift_remove("seq") {
        None if required => return Err(EventError::missing("seq")),
        None => None,
        Some(v) => match v.as_u64() {
            Some(seq) if seq >= 1 => Some(seq),
            _ => {
                return Err(EventError::invalid(
                    "seq",
                    format!("`seq` must be an integer from 1, not {v}"),
                ));
            }
        },
    };
    let ts = match map.shift_remove("ts") {
        None if required => return Err(EventError::missing("ts")),
        None => None,
        Some(Value::String(s)) => Some(
            s.parse::<Timestamp>()
                .map_err(|e| EventError::invalid("ts", format!("`ts` is {e}")))?,
        ),
        Some(_) => return Err(EventError::invalid("ts", "`ts` must be an RFC 3339 string")),
    };
    let id = match map.shift_remove("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(check_event_id(s)?),
        Some(_) => return Err(EventError::invalid("id", "`id` must be a string")),
    };
    let parent = take_run_id(map, "parent", false)?;
    Ok(Head {
        event_type,
        run,
        seq,
        ts,
        id,
        parent,
    })
}

fn take_run_id(
    map: &mut Map<String, Value>,
    field: &str,
    required: bool,
) -> Result<Option<RunId>, EventError> {
    match map.shift_remove(field) {
        None | Some(Value::Null) if required => Err(EventError::missing(field)),
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => RunId::new(s)
            .map(Some)
            .map_err(|e| EventError::invalid(field, format!("`{field}` is an {e}"))),
        Some(_) => Err(EventError::invalid(
            field,
            format!("`{field}` must be a string"),
        )),
    }
}

fn check_event_id(id: String) -> Result<String, EventError> {
    if id.is_empty() || id.len() > MAX_EVENT_ID_LEN {
        return Err(EventError::invalid("id", "`id` must be 1 to 128 bytes"));
    }
    if id.chars().any(char::is_control) {
        return Err(EventError::invalid(
            "id",
            "`id` must not contain control characters",
        ));
    }
    Ok(id)
}

fn decode_body(event_type: &str, fields: Map<String, Value>) -> Result<EventBody, EventError> {
    if let Some(name) = event_type.strip_prefix(Custom::PREFIX) {
        return Custom::new(name, fields).map(EventBody::Custom).ok_or_else(|| {
            EventError::new(
                ErrorCode::UnknownEvent,
                Some("event"),
                format!("`{event_type}`: a custom event is `custom.<name>` with a name of [a-z0-9_]+"),
            )
        });
    }
    match EventBody::decode_builtin(event_type, Value::Object(fields)) {
        None => Err(unknown_event(event_type)),
        Some(Ok(body)) => Ok(body),
        Some(Err(e)) => Err(field_error(event_type, e)),
    }
}

fn unknown_event(event_type: &str) -> EventError {
    EventError::new(
        ErrorCode::UnknownEvent,
        Some("event"),
        format!("unknown event type `{event_type}`"),
    )
}

/// Turns serde's error into one that names the field: serde reports a mistyped field
/// with its path, and a missing one at the parent's path with the name in the message.
fn field_error(event_type: &str, e: serde_path_to_error::Error<serde_json::Error>) -> EventError {
    let path = e.path().to_string();
    let inner = e.into_inner().to_string();
    let inner = strip_position(&inner);
    if let Some(name) = inner
        .strip_prefix("missing field `")
        .and_then(|s| s.strip_suffix('`'))
    {
        let field = if path == "." {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        };
        return EventError {
            code: ErrorCode::MissingField,
            message: format!("`{event_type}` needs field `{field}`"),
            field: Some(field),
        };
    }
    let field = (path != ".").then_some(path);
    EventError {
        code: ErrorCode::InvalidField,
        message: match &field {
            Some(f) => format!("`{event_type}` field `{f}`: {inner}"),
            None => format!("`{event_type}`: {inner}"),
        },
        field,
    }
}

/// serde_json appends " at line L column C" to errors; for a field error it says nothing.
fn strip_position(msg: &str) -> &str {
    match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    }
}

/// Checks what the types cannot: ranges of numbers and non-empty names.
fn validate_body(body: &EventBody) -> Result<(), EventError> {
    fn non_negative(field: &str, x: f64) -> Result<(), EventError> {
        if x.is_finite() && x >= 0.0 {
            Ok(())
        } else {
            Err(EventError::invalid(
                field,
                format!("`{field}` must be a number of seconds from 0, not {x}"),
            ))
        }
    }
    fn non_negative_opt(field: &str, x: Option<f64>) -> Result<(), EventError> {
        x.map_or(Ok(()), |x| non_negative(field, x))
    }
    fn weight(field: &str, x: Option<f64>) -> Result<(), EventError> {
        match x {
            Some(x) if !(x.is_finite() && x >= 0.0) => Err(EventError::invalid(
                field,
                format!("`{field}` must be a weight from 0 (bytes, tokens, rows), not {x}"),
            )),
            _ => Ok(()),
        }
    }
    fn non_empty(field: &str, s: &str) -> Result<(), EventError> {
        if s.is_empty() {
            Err(EventError::invalid(
                field,
                format!("`{field}` must not be empty"),
            ))
        } else {
            Ok(())
        }
    }
    match body {
        EventBody::RunStalled(b) => non_negative("silent_for_s", b.silent_for_s),
        EventBody::Heartbeat(b) => non_negative("elapsed_s", b.elapsed_s),
        EventBody::RunStarted(b) => validate_plan(b.stages.as_deref().unwrap_or_default()),
        EventBody::StageStarted(b) => {
            non_empty("stage", &b.stage)?;
            weight("total_weight", b.total_weight)
        }
        EventBody::StageFinished(b) => {
            non_empty("stage", &b.stage)?;
            non_negative("elapsed_s", b.elapsed_s)
        }
        EventBody::Progress(b) => {
            if let Some(stage) = &b.stage {
                non_empty("stage", stage)?;
            }
            if let Some(call_id) = &b.call_id {
                non_empty("call_id", call_id)?;
                // One count moves one counter: a tool's progress is not also a stage's.
                if b.stage.is_some() {
                    return Err(EventError::invalid(
                        "stage",
                        "`stage` and `call_id` name two counters; a `progress` counts one",
                    ));
                }
            }
            if let Some(p) = b.percent {
                if !(0.0..=100.0).contains(&p) {
                    return Err(EventError::invalid(
                        "percent",
                        format!("`percent` must be from 0 to 100, not {p}"),
                    ));
                }
            }
            non_negative_opt("rate", b.rate)?;
            non_negative_opt("eta_s", b.eta_s)?;
            non_negative_opt("eta_low_s", b.eta_low_s)?;
            non_negative_opt("eta_high_s", b.eta_high_s)?;
            check_eta_range(b.eta_low_s, b.eta_s, b.eta_high_s)?;
            weight("done_weight", b.done_weight)?;
            weight("total_weight", b.total_weight)?;
            if let (Some(done), Some(total)) = (b.done_weight, b.total_weight) {
                if total < done {
                    return Err(EventError::invalid(
                        "total_weight",
                        format!(
                            "`total_weight` {total} is below the weight done (`done_weight` {done})"
                        ),
                    ));
                }
            }
            non_negative("elapsed_s", b.elapsed_s)
        }
        EventBody::ItemStarted(b) => non_empty("item", &b.item),
        EventBody::ItemFinished(b) => {
            non_empty("item", &b.item)?;
            non_negative_opt("elapsed_s", b.elapsed_s)?;
            weight("weight", b.weight)
        }
        EventBody::AgentIteration(b) if b.iteration == 0 => Err(EventError::invalid(
            "iteration",
            "`iteration` counts from 1",
        )),
        EventBody::LlmRequest(b) => non_empty("call_id", &b.call_id),
        EventBody::LlmResponse(b) => {
            non_empty("call_id", &b.call_id)?;
            non_negative_opt("ttft_s", b.ttft_s)?;
            non_negative_opt("elapsed_s", b.elapsed_s)
        }
        EventBody::ToolSelected(b) => {
            non_empty("call_id", &b.call_id)?;
            non_empty("tool", &b.tool)
        }
        EventBody::ToolStarted(b) => {
            non_empty("call_id", &b.call_id)?;
            non_empty("tool", &b.tool)
        }
        EventBody::ToolFinished(b) => {
            non_empty("call_id", &b.call_id)?;
            non_empty("tool", &b.tool)?;
            non_negative_opt("elapsed_s", b.elapsed_s)
        }
        _ => Ok(()),
    }
}

/// A range of seconds left is in order: `eta_low_s <= eta_s <= eta_high_s`, for those
/// given.
fn check_eta_range(
    low: Option<f64>,
    eta: Option<f64>,
    high: Option<f64>,
) -> Result<(), EventError> {
    let out_of_order = |field: &str, what: String| Err(EventError::invalid(field, what));
    if let (Some(low), Some(high)) = (low, high) {
        if low > high {
            return out_of_order(
                "eta_low_s",
                format!("`eta_low_s` {low} is above `eta_high_s` {high}"),
            );
        }
    }
    if let (Some(low), Some(eta)) = (low, eta) {
        if low > eta {
            return out_of_order(
                "eta_low_s",
                format!("`eta_low_s` {low} is above `eta_s` {eta}"),
            );
        }
    }
    if let (Some(eta), Some(high)) = (eta, high) {
        if high < eta {
            return out_of_order(
                "eta_high_s",
                format!("`eta_high_s` {high} is below `eta_s` {eta}"),
            );
        }
    }
    Ok(())
}

/// The stages `run.started` declares: named, each once, their weights valid, and no
/// more than a state keeps.
fn validate_plan(stages: &[PlannedStage]) -> Result<(), EventError> {
    if stages.len() > MAX_STAGES {
        return Err(EventError::invalid(
            "stages",
            format!(
                "`stages` declares {} stages; at most {MAX_STAGES}",
                stages.len()
            ),
        ));
    }
    for (i, planned) in stages.iter().enumerate() {
        if planned.stage.is_empty() {
            let field = format!("stages[{i}].stage");
            return Err(EventError::invalid(
                &field,
                format!("`{field}` must not be empty"),
            ));
        }
        if stages[..i].iter().any(|p| p.stage == planned.stage) {
            let field = format!("stages[{i}].stage");
            return Err(EventError::invalid(
                &field,
                format!("`{field}` names stage `{}` a second time", planned.stage),
            ));
        }
        if let Some(x) = planned
            .total_weight
            .filter(|x| !(x.is_finite() && *x >= 0.0))
        {
            let field = format!("stages[{i}].total_weight");
            return Err(EventError::invalid(
                &field,
                format!("`{field}` must be a weight from 0 (bytes, tokens, rows), not {x}"),
            ));
        }
    }
    Ok(())
}

/// Writes the envelope and then the body's fields into one flat object.
fn serialize_flat<S: Serializer>(
    s: S,
    run_seq: Option<(&RunId, u64)>,
    ts: Option<Timestamp>,
    id: Option<&str>,
    parent: Option<&RunId>,
    body: &EventBody,
) -> Result<S::Ok, S::Error> {
    let fields = body.fields();
    let mut map = s.serialize_map(None)?;
    if let Some((run, seq)) = run_seq {
        map.serialize_entry("v", &PROTOCOL_VERSION)?;
        map.serialize_entry("event", body.event_type())?;
        map.serialize_entry("run", run)?;
        map.serialize_entry("seq", &seq)?;
    } else {
        map.serialize_entry("event", body.event_type())?;
    }
    if let Some(ts) = ts {
        map.serialize_entry("ts", &ts)?;
    }
    if let Some(id) = id {
        map.serialize_entry("id", id)?;
    }
    if let Some(parent) = parent {
        map.serialize_entry("parent", parent)?;
    }
    for (k, v) in &fields {
        // A custom event's fields cannot shadow the envelope: the parser took those
        // names out before it kept the rest.
        map.serialize_entry(k, v)?;
    }
    map.end()
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_flat(
            s,
            Some((&self.run, self.seq)),
            Some(self.ts),
            self.id.as_deref(),
            self.parent.as_ref(),
            &self.body,
        )
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Event, D::Error> {
        let value = unique_value(d)?;
        event_from_value(value).map_err(D::Error::custom)
    }
}

impl Serialize for Draft {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_flat(
            s,
            None,
            self.ts,
            self.id.as_deref(),
            self.parent.as_ref(),
            &self.body,
        )
    }
}

impl Event {
    /// The event as one line of JSON, without the newline.
    ///
    /// Byte for byte what serializing the event writes, without building a map of its
    /// body first (see [`write_flat`]).
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(256);
        write_flat(
            &mut out,
            Some((&self.run, self.seq)),
            Some(self.ts),
            self.id.as_deref(),
            self.parent.as_ref(),
            &self.body,
        );
        // serde_json writes UTF-8 only.
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Draft {
    /// Appends the draft as JSON to `out`: byte for byte what serializing it writes,
    /// without building a map of its body first (see [`write_flat`]), so that a
    /// producer encoding every event it sends pays for the bytes alone.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        write_flat(
            out,
            None,
            self.ts,
            self.id.as_deref(),
            self.parent.as_ref(),
            &self.body,
        );
    }
}

/// Appends what [`serialize_flat`] writes to `out`: the envelope, then the body's own
/// object with its `{` turned into the comma that joins the two.
fn write_flat(
    out: &mut Vec<u8>,
    run_seq: Option<(&RunId, u64)>,
    ts: Option<Timestamp>,
    id: Option<&str>,
    parent: Option<&RunId>,
    body: &EventBody,
) {
    fn put(out: &mut Vec<u8>, value: &(impl Serialize + ?Sized)) {
        // Strings, numbers and structs of plain fields into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, value);
    }
    if let Some((run, seq)) = run_seq {
        out.extend_from_slice(b"{\"v\":");
        put(out, &PROTOCOL_VERSION);
        out.extend_from_slice(b",\"event\":");
        put(out, body.event_type());
        out.extend_from_slice(b",\"run\":");
        put(out, run);
        out.extend_from_slice(b",\"seq\":");
        put(out, &seq);
    } else {
        out.extend_from_slice(b"{\"event\":");
        put(out, body.event_type());
    }
    if let Some(ts) = ts {
        out.extend_from_slice(b",\"ts\":");
        put(out, &ts);
    }
    if let Some(id) = id {
        out.extend_from_slice(b",\"id\":");
        put(out, id);
    }
    if let Some(parent) = parent {
        out.extend_from_slice(b",\"parent\":");
        put(out, parent);
    }
    let fields = out.len();
    body.write_fields(out);
    if out.len() > fields + 2 && out[fields] == b'{' {
        out[fields] = b',';
    } else {
        // `{}`: no fields to join.
        out.truncate(fields);
        out.push(b'}');
    }
}
