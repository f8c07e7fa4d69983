//! The bodies of the hub's HTTP API (docs/http-api.md) as types: what a client sends to
//! create or cancel a run, and what the hub answers to create, append, poll, list and
//! cancel, and with every error. The hub returns these; clients read them, so a renamed
//! field breaks the build instead of a client at run time.
//!
//! With the `openapi` feature each derives utoipa's `ToSchema`, and `/openapi.json`
//! describes the bodies from these types. Where the hub checks a field itself, to name
//! the field and the rule in its error (a run id, a type pattern, a time), the type keeps
//! the field loose and its schema states the rule, so that a client knows which inputs
//! are accepted.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::event::Event;
use crate::ids::{RunId, Timestamp};
use crate::state::{RunState, RunStatus};
use crate::wire::ErrorCode;

/// `POST /v1/runs`: a run to create.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateRun {
    /// The run id; the hub makes one up when it is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = schemas::nullable_run_id))]
    pub id: Option<String>,
    /// What the run is, for people: 1 to 1024 bytes, not only spaces, without NUL.
    #[cfg_attr(feature = "openapi", schema(schema_with = schemas::run_name))]
    pub name: String,
    /// The run that started this one, for sub-agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = schemas::nullable_run_id))]
    pub parent: Option<String>,
    /// Seconds of silence after which the run shows `stalled` (default 60, at most a
    /// year).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = schemas::seconds))]
    pub heartbeat_timeout_s: Option<f64>,
    /// Seconds after its last event at which the run is deleted (default 86400, at most
    /// a year).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = schemas::seconds))]
    pub ttl_s: Option<f64>,
    /// Type patterns of the events to keep (`tool.*,run.*`), comma-separated or as a
    /// list; other events are dropped at ingest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = schemas::track))]
    pub track: Option<Value>,
    /// Anything the caller wants kept with the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = schemas::nullable_object))]
    pub meta: Option<Map<String, Value>>,
}

/// The reply to [`CreateRun`]: `201` with the run's tokens and where to find it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Created {
    /// The run id.
    pub id: RunId,
    /// The token that appends to the run and cancels it, for its producer.
    pub write_token: String,
    /// The token that reads the run, for viewers.
    pub read_token: String,
    /// Where the run is served.
    pub urls: RunUrls,
}

/// Where a run is served, as absolute URLs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunUrls {
    /// The run's state.
    pub run: String,
    /// Its events: append, and poll.
    pub events: String,
    /// Its Server-Sent Events stream.
    pub stream: String,
    /// Its WebSocket.
    pub ws: String,
    /// Its page on the dashboard, with the read token.
    pub dashboard: String,
}

/// The reply to `POST /v1/runs/{id}/events`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Appended {
    /// Events stored.
    pub appended: u64,
    /// Events skipped because their `id` was stored already.
    pub duplicates: u64,
    /// Events dropped because the run does not track their type.
    pub filtered: u64,
    /// The run's last `seq` after the append.
    pub last_seq: u64,
    /// Someone asked the run to stop: its producer should.
    pub cancel_requested: bool,
}

/// `GET /v1/runs/{id}/events`: a page of events after a cursor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventsPage {
    /// The events after the cursor that pass the filter, oldest first.
    pub events: Vec<Event>,
    /// The run's last `seq`: the cursor to poll after when `events` is empty.
    pub last_seq: u64,
    /// The run's status.
    pub status: RunStatus,
}

/// `GET /v1/runs`: the runs' states, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunsPage {
    /// The runs.
    pub runs: Vec<RunState>,
    /// When the page is full: pass it as `before` for the next page.
    pub next_before: Option<Timestamp>,
}

/// `POST /v1/runs/{id}/cancel`: why, optionally. An empty body is the same as `{}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CancelRun {
    /// Why the run should stop, for its producer and viewers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The reply to [`CancelRun`]: the request is stored as the run's event `last_seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cancelled {
    /// Always `true`.
    pub cancel_requested: bool,
    /// The `seq` of the `run.cancel_requested` event.
    pub last_seq: u64,
}

/// `GET /healthz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// `ok`: the hub answers and reaches its database.
    pub status: String,
}

/// Every error's body: `{"error": {"code", "message", "index"?, "field"?}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong with a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// What kind of mistake, for programs.
    pub code: ApiErrorCode,
    /// What is wrong and how to put it right, for people.
    pub message: String,
    /// In a batch of events, the index (from 0) of the event at fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// The field at fault, as a path (`done`, `messages[0].role`), when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Every `code` the hub answers with: the status of each is its documented one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ApiErrorCode {
    /// 400: a field of the body or the query is wrong; `field` names it.
    InvalidField,
    /// 400: the body is not JSON.
    InvalidJson,
    /// 400: the body cannot be read, or is not what the route takes.
    InvalidBody,
    /// 400: the query string cannot be read.
    InvalidQuery,
    /// 400: an event of a batch is not a JSON object (or the batch not an array).
    NotAnObject,
    /// 400: an event's `event` is no known type.
    UnknownEvent,
    /// 400: an event lacks a field its type needs.
    MissingField,
    /// 400: an event speaks another protocol version.
    UnsupportedVersion,
    /// 400: a cursor past the run's last event.
    CursorOutOfRange,
    /// 400: a `Last-Event-ID` that is no id of the stream.
    InvalidCursor,
    /// 400: a plain request on the WebSocket route.
    NotAWebsocket,
    /// A WebSocket message the hub cannot read (sent on the socket, not as a status).
    InvalidMessage,
    /// 401: no token, or one the hub does not know.
    Unauthorized,
    /// 403: a token that does not open this.
    Forbidden,
    /// 404: no such run.
    RunNotFound,
    /// 404: no such route.
    NotFound,
    /// 409: the run id is taken.
    RunExists,
    /// 409: the run has finished and takes no more events.
    RunFinished,
    /// 413: the body is over the hub's limit.
    BodyTooLarge,
    /// 413: one event is over the limit of 64 KiB.
    EventTooLarge,
    /// 415: a body that is not sent as JSON (or NDJSON).
    UnsupportedMediaType,
    /// 429: the run is over its rate limit; `Retry-After` says when to try again.
    RateLimited,
    /// 400: a path segment that cannot be read (not UTF-8); `field` names it.
    InvalidPath,
    /// 400: a JSON object gives a key twice; `field` names it.
    DuplicateKey,
    /// 400: the request is not well-formed HTTP.
    MalformedRequest,
    /// 403: an open hub's request sent to a name that is not loopback's.
    HostNotAllowed,
    /// 403: an open hub's request from a page of an origin it does not allow.
    OriginNotAllowed,
    /// 405: the route does not take this method; `Allow` lists those it takes.
    MethodNotAllowed,
    /// 408: the body did not arrive in time.
    BodyTimeout,
    /// 414: the request's URI is over the hub's limit.
    UriTooLong,
    /// 431: the request's headers are over the hub's limit.
    HeadersTooLarge,
    /// 507: the hub's disk is full; nothing was stored, `Retry-After` says when to try again.
    InsufficientStorage,
    /// 500: the hub failed; its log says why.
    Internal,
    /// 503: the hub cannot serve this now (its database is unreachable, or it is
    /// stopping); try again.
    Unavailable,
}

impl ApiErrorCode {
    /// The code as it is written in the body.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiErrorCode::InvalidField => "invalid_field",
            ApiErrorCode::InvalidJson => "invalid_json",
            ApiErrorCode::InvalidBody => "invalid_body",
            ApiErrorCode::InvalidQuery => "invalid_query",
            ApiErrorCode::NotAnObject => "not_an_object",
            ApiErrorCode::UnknownEvent => "unknown_event",
            ApiErrorCode::MissingField => "missing_field",
            ApiErrorCode::UnsupportedVersion => "unsupported_version",
            ApiErrorCode::CursorOutOfRange => "cursor_out_of_range",
            ApiErrorCode::InvalidCursor => "invalid_cursor",
            ApiErrorCode::NotAWebsocket => "not_a_websocket",
            ApiErrorCode::InvalidMessage => "invalid_message",
            ApiErrorCode::Unauthorized => "unauthorized",
            ApiErrorCode::Forbidden => "forbidden",
            ApiErrorCode::RunNotFound => "run_not_found",
            ApiErrorCode::NotFound => "not_found",
            ApiErrorCode::RunExists => "run_exists",
            ApiErrorCode::RunFinished => "run_finished",
            ApiErrorCode::BodyTooLarge => "body_too_large",
            ApiErrorCode::EventTooLarge => "event_too_large",
            ApiErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ApiErrorCode::RateLimited => "rate_limited",
            ApiErrorCode::InvalidPath => "invalid_path",
            ApiErrorCode::DuplicateKey => "duplicate_key",
            ApiErrorCode::MalformedRequest => "malformed_request",
            ApiErrorCode::HostNotAllowed => "host_not_allowed",
            ApiErrorCode::OriginNotAllowed => "origin_not_allowed",
            ApiErrorCode::MethodNotAllowed => "method_not_allowed",
            ApiErrorCode::BodyTimeout => "body_timeout",
            ApiErrorCode::UriTooLong => "uri_too_long",
            ApiErrorCode::HeadersTooLarge => "headers_too_large",
            ApiErrorCode::InsufficientStorage => "insufficient_storage",
            ApiErrorCode::Internal => "internal",
            ApiErrorCode::Unavailable => "unavailable",
        }
    }
}

impl std::fmt::Display for ApiErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event that could not be parsed is answered with the parser's own code.
impl From<ErrorCode> for ApiErrorCode {
    fn from(code: ErrorCode) -> ApiErrorCode {
        match code {
            ErrorCode::InvalidJson => ApiErrorCode::InvalidJson,
            ErrorCode::NotAnObject => ApiErrorCode::NotAnObject,
            ErrorCode::UnknownEvent => ApiErrorCode::UnknownEvent,
            ErrorCode::MissingField => ApiErrorCode::MissingField,
            ErrorCode::InvalidField => ApiErrorCode::InvalidField,
            ErrorCode::EventTooLarge => ApiErrorCode::EventTooLarge,
            ErrorCode::UnsupportedVersion => ApiErrorCode::UnsupportedVersion,
            ErrorCode::DuplicateKey => ApiErrorCode::DuplicateKey,
        }
    }
}

/// The schemas of fields whose rules the types leave to the hub, and of the protocol's
/// own types.
#[cfg(feature = "openapi")]
mod schemas {
    use utoipa::openapi::schema::{
        ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
    };
    use utoipa::openapi::{KnownFormat, RefOr};
    use utoipa::{PartialSchema, ToSchema};

    use super::{CONTROL_SPACE, PRINTABLE_SPACE, track_patterns_regex};
    use crate::event::{Draft, Event};
    use crate::ids::{MAX_RUN_ID_LEN, RunId, Timestamp};

    /// Longest run name, in bytes; a schema can only count characters.
    const MAX_NAME_LEN: usize = 1024;

    /// Longest `heartbeat_timeout_s` and `ttl_s`: a year.
    const MAX_SECONDS: f64 = 366.0 * 86_400.0;

    fn run_id() -> ObjectBuilder {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(MAX_RUN_ID_LEN))
            .pattern(Some("^[A-Za-z0-9._:-]+$"))
    }

    pub(super) fn nullable_run_id() -> Schema {
        run_id()
            .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                Type::String,
                Type::Null,
            ]))
            .build()
            .into()
    }

    pub(super) fn run_name() -> Schema {
        // At least one character that is neither a space nor NUL, and no NUL anywhere.
        let pattern = format!("^[^\\u0000]*[^\\u0000{CONTROL_SPACE}{PRINTABLE_SPACE}][^\\u0000]*$");
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(MAX_NAME_LEN))
            .pattern(Some(pattern))
            .description(Some(
                "1 to 1024 bytes of UTF-8, not only spaces, without NUL",
            ))
            .build()
            .into()
    }

    pub(super) fn seconds() -> Schema {
        ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                Type::Number,
                Type::Null,
            ]))
            .exclusive_minimum(Some(0.0))
            .maximum(Some(MAX_SECONDS))
            .build()
            .into()
    }

    pub(super) fn track() -> Schema {
        let patterns = |max: usize| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(track_patterns_regex()))
                .max_length(Some(max))
        };
        OneOfBuilder::new()
            .item(
                patterns(super::MAX_TRACK_CHARS).description(Some("comma-separated type patterns")),
            )
            .item(
                ArrayBuilder::new()
                    .items(patterns(super::MAX_TRACK_ITEM_CHARS))
                    .min_items(Some(1))
                    .max_items(Some(super::MAX_TRACK_ITEMS))
                    .description(Some("type patterns, one or more to an item")),
            )
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .build()
            .into()
    }

    pub(super) fn nullable_object() -> Schema {
        ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                Type::Object,
                Type::Null,
            ]))
            .build()
            .into()
    }

    impl PartialSchema for RunId {
        fn schema() -> RefOr<Schema> {
            run_id()
                .description(Some("1 to 128 characters of `[A-Za-z0-9._:-]`"))
                .into()
        }
    }

    impl ToSchema for RunId {}

    impl PartialSchema for Timestamp {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                .description(Some("RFC 3339, UTC, with microseconds"))
                .into()
        }
    }

    impl ToSchema for Timestamp {}

    /// The envelope every event has. utoipa's schema model has no `const`, so it
    /// cannot hold the per-type schema of `event_schema`; `/openapi.json` puts that one
    /// (generated from the same types by schemars) in this one's place.
    impl PartialSchema for Event {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("v", ObjectBuilder::new().schema_type(Type::Integer))
                .property("event", ObjectBuilder::new().schema_type(Type::String))
                .property("run", RunId::schema())
                .property(
                    "seq",
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(1)),
                )
                .property("ts", Timestamp::schema())
                .required("v")
                .required("event")
                .required("run")
                .required("seq")
                .required("ts")
                .description(Some(
                    "One herald event: the envelope and the fields of its type, in one flat object",
                ))
                .into()
        }
    }

    impl ToSchema for Event {}

    /// An event as a producer posts it, without `v`, `run` and `seq`; like [`Event`]'s,
    /// the envelope alone.
    impl PartialSchema for Draft {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("event", ObjectBuilder::new().schema_type(Type::String))
                .property("ts", Timestamp::schema())
                .property("parent", RunId::schema())
                .required("event")
                .description(Some(
                    "An event as a producer posts it: without `v`, `run` and `seq`, and `ts` optional",
                ))
                .into()
        }
    }

    impl ToSchema for Draft {}
}

/// The characters Rust's `str::trim` takes for spaces (Unicode's White_Space) that are
/// not control characters, spelled out for regular expressions: `\s` differs from engine
/// to engine.
const PRINTABLE_SPACE: &str = r" \u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";

/// The control characters among Unicode's White_Space.
const CONTROL_SPACE: &str = r"\t\n\u000B\f\r\u0085";

/// A regular expression (ECMA 262, as JSON Schema's `pattern`) of what
/// [`TypeFilter`](crate::TypeFilter) parses: comma-separated type patterns (`text.delta`,
/// `tool.*`, `*`), with spaces around each.
pub fn type_patterns_regex() -> String {
    patterns_regex(&format!("{CONTROL_SPACE}{PRINTABLE_SPACE}"))
}

/// Longest `track` a run may ask for, in characters: a run's type patterns are read
/// back on every append. Naming every event type of the protocol takes less than half.
pub const MAX_TRACK_CHARS: usize = 1024;
/// Most patterns in a `track` given as a list.
pub const MAX_TRACK_ITEMS: usize = 16;
/// Longest pattern in a `track` given as a list, in characters; with
/// [`MAX_TRACK_ITEMS`], a list joined by commas stays within [`MAX_TRACK_CHARS`], so
/// one rule, stated in the OpenAPI schema, holds for both forms.
pub const MAX_TRACK_ITEM_CHARS: usize = 60;

/// Type patterns as `track` takes them, which refuses control characters.
#[cfg(feature = "openapi")]
fn track_patterns_regex() -> String {
    patterns_regex(PRINTABLE_SPACE)
}

fn patterns_regex(space: &str) -> String {
    let one = format!(r"[{space}]*(\*|[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?)[{space}]*");
    format!("^{one}(,{one})*$")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_written_as_their_names() {
        for code in [
            ApiErrorCode::InvalidField,
            ApiErrorCode::CursorOutOfRange,
            ApiErrorCode::NotAWebsocket,
            ApiErrorCode::UnsupportedMediaType,
        ] {
            let written = serde_json::to_value(code).unwrap();
            assert_eq!(written, code.as_str());
            assert_eq!(
                serde_json::from_value::<ApiErrorCode>(written).unwrap(),
                code
            );
        }
    }

    #[test]
    fn a_create_body_with_an_unknown_field_is_refused() {
        let err = serde_json::from_str::<CreateRun>(r#"{"name":"a","nmae":"b"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `nmae`"), "{err}");
    }
}
