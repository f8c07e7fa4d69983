//! herald's event protocol, version 1: the contract between everything that reports
//! progress and everything that shows it (docs/protocol.md).
//!
//! It is pure: no I/O, no clock, no threads. Time enters only as event timestamps and
//! as arguments (`RunState::at(now)`).
//!
//! # Layout
//!
//! - `ids`: [`RunId`] and [`Timestamp`], validated newtypes of the envelope.
//! - `event`: one struct per event type, [`EventBody`], and the envelopes [`Event`]
//!   (stored, with `seq`) and [`Draft`] (as a producer posts it).
//! - `wire`: JSON serialization, parsing and validation with errors that name the
//!   event's index and field ([`parse_batch`], [`parse_event`]).
//! - `json`: [`parse_json`], JSON text to a `Value` with every object's keys unique.
//! - `pattern`: [`TypeFilter`], the `tool.*,run.*` patterns of filters.
//! - `state`: [`RunState`] and [`fold`], the one reducer of run state.
//! - `eta`: [`EtaEstimator`], the rate and ETA estimator the reducer uses.
//! - `schema`: [`event_schema`], the JSON Schema generated from the types.
//! - [`api`]: the bodies of the hub's HTTP API; with the `openapi` feature, their
//!   OpenAPI schemas (and those of [`RunState`] and [`Event`]) through utoipa.

#![deny(missing_docs)]

pub mod api;
mod eta;
mod event;
mod ids;
mod json;
mod pattern;
mod schema;
mod state;
mod wire;

pub use eta::{Estimate, EtaBasis, EtaConfig, EtaEstimator, Overdue};
pub use event::{
    AgentHistory, AgentIteration, AgentPreparingResponse, AgentResponse, AgentSystemMessage,
    ChatMessage, Custom, Draft, EVENT_TYPES, Event, EventBody, Heartbeat, ItemFinished,
    ItemStarted, LlmRequest, LlmResponse, Log, LogLevel, PROTOCOL_VERSION, PlannedStage, Progress,
    RunCancelRequested, RunFinished, RunOutcome, RunStalled, RunStarted, StageFinished,
    StageStarted, StepOutcome, TextDelta, ToolFinished, ToolOutcome, ToolSelected, ToolStarted,
};
pub use ids::{InvalidRunId, InvalidTimestamp, MAX_RUN_ID_LEN, RunId, Timestamp};
pub use json::parse_json;
pub use pattern::{InvalidTypeFilter, TypeFilter};
pub use schema::event_schema;
pub use state::{
    AgentState, Counter, CounterBasis, ErrorInfo, ItemCounts, ItemFailure, ItemState, LlmState,
    LogLine, MAX_LISTED_FAILURES, MAX_LISTED_ITEMS, MAX_LISTED_LOGS, MAX_LISTED_TOOLS, MAX_STAGES,
    MAX_TEXT_BYTES, MAX_VALUE_BYTES, RunState, RunStatus, StageState, StageStatus, ToolCall,
    ToolCallStatus, ToolProgress, ToolsState, UnitOverdue, fold,
};
pub use wire::{
    BatchError, BatchFormat, ErrorCode, EventError, MAX_EVENT_BYTES, MAX_EVENT_DEPTH,
    MAX_EVENT_ID_LEN, parse_batch, parse_draft_str, parse_event,
};
