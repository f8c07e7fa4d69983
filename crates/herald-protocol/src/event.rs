//! The event types of docs/protocol.md#event-types: one struct per event type, the [`EventBody`] enum
//! over them, and the envelope types [`Event`] (stored, with `seq`) and [`Draft`] (as a
//! producer posts it, before a `seq` is assigned).
//!
//! The wire form is flat: envelope fields and the body's fields side by side in one JSON
//! object, `event` naming the type. Serialization writes the envelope first
//! (`v`, `event`, `run`, `seq`, `ts`, ...) so that a person reading a JSON Lines stream
//! sees what each line is before its details. Parsing lives in `wire.rs`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ids::{RunId, Timestamp};

/// The protocol version this crate speaks, written as `"v": 1`.
pub const PROTOCOL_VERSION: u64 = 1;

/// A stored event: the envelope and the body, with the `seq` the hub (or, on a local
/// stream, the SDK) assigned.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The run this event belongs to.
    pub run: RunId,
    /// Position in the run's stream, dense from 1.
    pub seq: u64,
    /// When the producer saw it happen.
    pub ts: Timestamp,
    /// The producer's idempotency key, unique within the run.
    pub id: Option<String>,
    /// The run id of the caller, for sub-agents.
    pub parent: Option<RunId>,
    /// What happened.
    pub body: EventBody,
}

/// An event as a producer writes it, before it is stored: no `v`, `run` or `seq`.
#[derive(Clone, Debug, PartialEq)]
pub struct Draft {
    /// When the producer saw it happen; the hub fills in its own clock when absent.
    pub ts: Option<Timestamp>,
    /// The producer's idempotency key, unique within the run.
    pub id: Option<String>,
    /// The run id of the caller, for sub-agents.
    pub parent: Option<RunId>,
    /// What happened.
    pub body: EventBody,
}

impl Draft {
    /// A draft of `body` seen at `ts`, with no idempotency key or parent.
    pub fn new(ts: Timestamp, body: impl Into<EventBody>) -> Draft {
        Draft {
            ts: Some(ts),
            id: None,
            parent: None,
            body: body.into(),
        }
    }

    /// The stored event: this draft in run `run` at position `seq`, stamped `now` if
    /// the producer gave no time.
    pub fn stamp(self, run: RunId, seq: u64, now: Timestamp) -> Event {
        Event {
            run,
            seq,
            ts: self.ts.unwrap_or(now),
            id: self.id,
            parent: self.parent,
            body: self.body,
        }
    }
}

impl Event {
    /// The event's type string, e.g. `"tool.started"` or `"custom.deploy"`.
    pub fn event_type(&self) -> &str {
        self.body.event_type()
    }
}

/// Outcome of a run, in `run.finished`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// The run did what it was asked.
    Succeeded,
    /// The run stopped on an error.
    Failed,
    /// The run was stopped on request.
    Cancelled,
}

/// Outcome of a stage or an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    /// Done.
    Succeeded,
    /// Stopped on an error.
    Failed,
    /// Deliberately not done.
    Skipped,
}

/// Outcome of a tool call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolOutcome {
    /// The tool returned.
    Succeeded,
    /// The tool failed.
    Failed,
}

/// Severity of a `log` event.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// Detail for whoever debugs the producer.
    Debug,
    /// Something worth knowing.
    Info,
    /// Something that may need attention.
    Warn,
    /// Something went wrong.
    Error,
}

/// `run.started`: the run begins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunStarted {
    /// A human name for the run.
    pub name: String,
    /// How many stages the run expects, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_steps: Option<u64>,
    /// The stages the run expects, in order, with their expected sizes when known: the
    /// run's ETA then covers the stages still to come.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub stages: Option<Vec<PlannedStage>>,
    /// Free-form metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Map<String, Value>>,
}

/// A stage declared ahead in `run.started`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlannedStage {
    /// The stage's name, as its `stage.started` will give it.
    #[schemars(length(min = 1))]
    pub stage: String,
    /// Items expected, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// Weight expected (bytes, tokens, rows), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub total_weight: Option<f64>,
}

/// `run.finished`: the run ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunFinished {
    /// How it ended.
    pub status: RunOutcome,
    /// The run's result, any JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// What went wrong, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `run.cancel_requested`: someone asked the run to stop (written by the hub).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunCancelRequested {
    /// Why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `run.stalled`: the run has been silent longer than its heartbeat timeout (written by
/// the hub).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunStalled {
    /// Seconds since the run's last event.
    #[schemars(range(min = 0))]
    pub silent_for_s: f64,
}

/// `heartbeat`: the producer is alive although nothing else happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Heartbeat {
    /// Seconds since the run started.
    #[schemars(range(min = 0))]
    pub elapsed_s: f64,
    /// What it is doing, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `stage.started`: a named phase of the run begins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StageStarted {
    /// The stage's name, unique within the run.
    #[schemars(length(min = 1))]
    pub stage: String,
    /// Items expected, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// What a unit is ("docs", "B"), when the stage says so from the start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The stage's whole weight (bytes, tokens, rows), when its units are not equal:
    /// its ETA is then estimated in weight.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub total_weight: Option<f64>,
}

/// `stage.finished`: a stage ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StageFinished {
    /// The stage's name.
    #[schemars(length(min = 1))]
    pub stage: String,
    /// How it ended.
    pub status: StepOutcome,
    /// What went wrong, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Seconds the stage took.
    #[schemars(range(min = 0))]
    pub elapsed_s: f64,
}

/// `progress`: how far a stage (or the run, or a tool call) has come.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Progress {
    /// The stage this counts, when the run has stages.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub stage: Option<String>,
    /// The tool call this counts, instead of a stage: such a `progress` moves that
    /// call's own counter and never a stage's or the run's percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub call_id: Option<String>,
    /// Units done.
    pub done: u64,
    /// Units expected; may grow while work is discovered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// Weight done (bytes, tokens, rows), when the units are weighed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub done_weight: Option<f64>,
    /// Weight expected; never below `done_weight`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub total_weight: Option<f64>,
    /// What a unit is ("docs", "B").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// What the stage, or with `call_id` the tool call, is doing now, for people
    /// ("downloading foo.tar.gz", "Page 3 of 12"); an empty string clears a stage's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `done / total` in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub percent: Option<f64>,
    /// Units per second, smoothed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub rate: Option<f64>,
    /// Estimated seconds left.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub eta_s: Option<f64>,
    /// The low end of the range of seconds left; at most `eta_s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub eta_low_s: Option<f64>,
    /// The high end of the range of seconds left; at least `eta_s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub eta_high_s: Option<f64>,
    /// Seconds since the stage (or run) started.
    #[schemars(range(min = 0))]
    pub elapsed_s: f64,
}

/// `item.started`: one unit of work begins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ItemStarted {
    /// A stable id for the item.
    #[schemars(length(min = 1))]
    pub item: String,
    /// The stage it belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// A human label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// `item.finished`: one unit of work ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ItemFinished {
    /// The item's id, as in `item.started`.
    #[schemars(length(min = 1))]
    pub item: String,
    /// The stage it belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// How it ended.
    pub status: StepOutcome,
    /// What went wrong, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Seconds it took.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub elapsed_s: Option<f64>,
    /// Its weight (bytes, tokens, rows), when units are not equal: added to its stage's
    /// weight done.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub weight: Option<f64>,
}

/// `log`: a message for people.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Log {
    /// Severity.
    pub level: LogLevel,
    /// The message.
    pub message: String,
}

/// `agent.iteration`: an agent loop begins its next turn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentIteration {
    /// The turn, from 1.
    #[schemars(range(min = 1))]
    pub iteration: u64,
}

/// One message of an agent's conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatMessage {
    /// Who said it: `system`, `user`, `assistant`, `tool`, ...
    pub role: String,
    /// What was said: a string, or the provider's structured content.
    pub content: Value,
}

/// `agent.history`: the conversation so far.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentHistory {
    /// The messages, oldest first.
    pub messages: Vec<ChatMessage>,
}

/// `agent.system_message`: the agent's system prompt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentSystemMessage {
    /// The prompt.
    pub message: String,
}

/// `llm.request`: a model call begins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LlmRequest {
    /// Ties the request to its response and streamed text.
    #[schemars(length(min = 1))]
    pub call_id: String,
    /// Who serves the model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Which model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// `llm.response`: a model call ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LlmResponse {
    /// As in the request.
    #[schemars(length(min = 1))]
    pub call_id: String,
    /// The model that answered, as the provider names it (often more precise than the
    /// request's alias, e.g. a dated version).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Why the model stopped (`end_turn`, `tool_use`, `max_tokens`, ...), or `error`
    /// when the call failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    /// Prompt tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    /// Completion tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    /// Seconds from the request to the first streamed token (time to first token).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttft_s: Option<f64>,
    /// Seconds the call took.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub elapsed_s: Option<f64>,
    /// What went wrong, when the call failed: the provider's error type and message,
    /// or the HTTP status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `text.delta`: streamed tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TextDelta {
    /// The new text.
    pub text: String,
    /// The model call producing it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
}

/// `tool.selected`: the model chose a tool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolSelected {
    /// Ties selection, start and finish together.
    #[schemars(length(min = 1))]
    pub call_id: String,
    /// The tool's name.
    #[schemars(length(min = 1))]
    pub tool: String,
    /// Its arguments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
}

/// `tool.started`: a tool call begins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolStarted {
    /// As in `tool.selected`.
    #[schemars(length(min = 1))]
    pub call_id: String,
    /// The tool's name.
    #[schemars(length(min = 1))]
    pub tool: String,
    /// Its arguments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// A message for people, e.g. "Searching the docs".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feedback: Option<String>,
}

/// `tool.finished`: a tool call ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolFinished {
    /// As in `tool.started`.
    #[schemars(length(min = 1))]
    pub call_id: String,
    /// The tool's name.
    #[schemars(length(min = 1))]
    pub tool: String,
    /// How it ended.
    pub status: ToolOutcome,
    /// What it returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// What went wrong, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Seconds it took.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub elapsed_s: Option<f64>,
}

/// `agent.preparing_response`: every tool is done; the final answer is being written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentPreparingResponse {}

/// `agent.response`: the agent's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentResponse {
    /// The answer.
    pub text: String,
    /// The turn that produced it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iteration: Option<u64>,
}

/// `custom.<name>`: an event of the producer's own, with any fields.
#[derive(Clone, Debug, PartialEq)]
pub struct Custom {
    /// The whole type string, `custom.<name>`; private so that it is always valid.
    event_type: String,
    /// Its fields, beside the envelope.
    pub fields: Map<String, Value>,
}

/// Declares [`EventBody`] and the one table from event type strings to variants, so that
/// the type string of a variant is written exactly once.
macro_rules! event_types {
    ($( $(#[$doc:meta])* $variant:ident($ty:ident) = $name:literal, )*) => {
        /// What happened: one variant per event type of the protocol.
        #[derive(Clone, Debug, PartialEq)]
        pub enum EventBody {
            $( $(#[$doc])* $variant($ty), )*
            /// `custom.<name>`.
            Custom(Custom),
        }

        /// Every built-in event type string, in protocol order.
        pub const EVENT_TYPES: &[&str] = &[$($name),*];

        impl EventBody {
            /// The event's type string, e.g. `"tool.started"` or `"custom.deploy"`.
            pub fn event_type(&self) -> &str {
                match self {
                    $( EventBody::$variant(_) => $name, )*
                    EventBody::Custom(c) => c.type_str(),
                }
            }

            /// The body's own fields as a JSON object (without `event`).
            pub(crate) fn fields(&self) -> Map<String, Value> {
                let value = match self {
                    $( EventBody::$variant(b) => serde_json::to_value(b), )*
                    EventBody::Custom(c) => return c.fields.clone(),
                };
                match value {
                    Ok(Value::Object(map)) => map,
                    // Every body is a struct of plain fields, which serializes to an
                    // object and cannot fail.
                    _ => Map::new(),
                }
            }

            /// Writes the body's own fields as one JSON object (without `event`).
            pub(crate) fn write_fields(&self, out: &mut Vec<u8>) {
                // Structs of plain fields and maps of values into a Vec cannot fail.
                let _ = match self {
                    $( EventBody::$variant(b) => serde_json::to_writer(&mut *out, b), )*
                    EventBody::Custom(c) => serde_json::to_writer(&mut *out, &c.fields),
                };
            }

            /// Decodes the fields of a built-in event type; `None` for an unknown type.
            pub(crate) fn decode_builtin(
                event_type: &str,
                fields: Value,
            ) -> Option<Result<EventBody, serde_path_to_error::Error<serde_json::Error>>> {
                Some(match event_type {
                    $( $name => serde_path_to_error::deserialize(fields).map(EventBody::$variant), )*
                    _ => return None,
                })
            }

            /// Decodes the body of a built-in event type from the whole event's text,
            /// whose envelope fields its struct skips as unknown; `None` for an
            /// unknown type.
            pub(crate) fn decode_builtin_str(
                event_type: &str,
                text: &str,
            ) -> Option<Result<EventBody, serde_path_to_error::Error<serde_json::Error>>> {
                // Tracking the path costs an allocation per field: it is done only
                // again, to name the field, when the fast read fails.
                fn read<'a, T: Deserialize<'a>>(
                    text: &'a str,
                ) -> Result<T, serde_path_to_error::Error<serde_json::Error>> {
                    T::deserialize(&mut serde_json::Deserializer::from_str(text)).or_else(|_| {
                        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(text))
                    })
                }
                Some(match event_type {
                    $( $name => read(text).map(EventBody::$variant), )*
                    _ => return None,
                })
            }

            /// The JSON Schemas of each built-in body, by type string.
            pub(crate) fn builtin_schemas() -> Vec<(&'static str, schemars::Schema)> {
                vec![$( ($name, schemars::schema_for!($ty)), )*]
            }
        }

        $(
            impl From<$ty> for EventBody {
                fn from(b: $ty) -> EventBody {
                    EventBody::$variant(b)
                }
            }
        )*
    };
}

event_types! {
    /// `run.started`
    RunStarted(RunStarted) = "run.started",
    /// `run.finished`
    RunFinished(RunFinished) = "run.finished",
    /// `run.cancel_requested`
    RunCancelRequested(RunCancelRequested) = "run.cancel_requested",
    /// `run.stalled`
    RunStalled(RunStalled) = "run.stalled",
    /// `heartbeat`
    Heartbeat(Heartbeat) = "heartbeat",
    /// `stage.started`
    StageStarted(StageStarted) = "stage.started",
    /// `stage.finished`
    StageFinished(StageFinished) = "stage.finished",
    /// `progress`
    Progress(Progress) = "progress",
    /// `item.started`
    ItemStarted(ItemStarted) = "item.started",
    /// `item.finished`
    ItemFinished(ItemFinished) = "item.finished",
    /// `log`
    Log(Log) = "log",
    /// `agent.iteration`
    AgentIteration(AgentIteration) = "agent.iteration",
    /// `agent.history`
    AgentHistory(AgentHistory) = "agent.history",
    /// `agent.system_message`
    AgentSystemMessage(AgentSystemMessage) = "agent.system_message",
    /// `llm.request`
    LlmRequest(LlmRequest) = "llm.request",
    /// `llm.response`
    LlmResponse(LlmResponse) = "llm.response",
    /// `text.delta`
    TextDelta(TextDelta) = "text.delta",
    /// `tool.selected`
    ToolSelected(ToolSelected) = "tool.selected",
    /// `tool.started`
    ToolStarted(ToolStarted) = "tool.started",
    /// `tool.finished`
    ToolFinished(ToolFinished) = "tool.finished",
    /// `agent.preparing_response`
    AgentPreparingResponse(AgentPreparingResponse) = "agent.preparing_response",
    /// `agent.response`
    AgentResponse(AgentResponse) = "agent.response",
}

impl Custom {
    /// Prefix of every custom event type.
    pub const PREFIX: &'static str = "custom.";

    /// Field names of the envelope, which a custom event's own fields may not use.
    pub const RESERVED_FIELDS: &'static [&'static str] =
        &["v", "event", "run", "seq", "ts", "id", "parent"];

    /// A custom event `custom.<name>`; `None` unless `name` is `[a-z0-9_]+` and no
    /// field uses a name of the envelope ([`Custom::RESERVED_FIELDS`]).
    pub fn new(name: &str, fields: Map<String, Value>) -> Option<Custom> {
        let clean = !Custom::RESERVED_FIELDS
            .iter()
            .any(|f| fields.contains_key(*f));
        (clean && is_custom_name(name)).then(|| Custom {
            event_type: format!("{}{name}", Custom::PREFIX),
            fields,
        })
    }

    /// The `<name>` of `custom.<name>`.
    pub fn name(&self) -> &str {
        &self.event_type[Custom::PREFIX.len()..]
    }

    fn type_str(&self) -> &str {
        &self.event_type
    }
}

pub(crate) fn is_custom_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl EventBody {
    /// Whether this event is a milestone: kept when a slow sink forces the SDK to drop
    /// events. Ticks (`progress`, `heartbeat`, `text.delta`, debug and info logs) are
    /// dropped first; everything else — starts, finishes, tools, warnings and errors —
    /// is kept.
    pub fn is_milestone(&self) -> bool {
        match self {
            EventBody::Progress(_) | EventBody::Heartbeat(_) | EventBody::TextDelta(_) => false,
            EventBody::Log(log) => log.level >= LogLevel::Warn,
            _ => true,
        }
    }
}
