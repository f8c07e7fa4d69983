//! `?format=ag-ui` (docs/http-api.md#ag-ui): a run's events encoded as AG-UI events, so AG-UI
//! front ends, and AG-UI's own `HttpAgent`, can follow a herald run as if it were an
//! agent.
//!
//! [`Encoder`] is the translation: a state machine fed herald events in `seq` order
//! that returns the AG-UI events each one becomes. It keeps AG-UI's ordering rules,
//! which its client enforces and rejects a stream for breaking: `RUN_STARTED` first
//! (made up when the run's first event is not `run.started`), every step, text message
//! and tool call closed before `RUN_FINISHED` or `RUN_ERROR`, nothing after them. The handler ([`stream`]) reads the run from its first event
//! through the same [`Cursor`] as herald's own streams and ends the response after the
//! last event, which is how `HttpAgent` learns the run is over.
//!
//! Choices the mapping of docs/http-api.md#ag-ui rests on, made here:
//!
//! - An AG-UI stream is the whole run from its first event: AG-UI's client has no
//!   cursor. For plain SSE clients each message has an `id:` (`SEQ.INDEX`, see
//!   [`Resume`]) and `Last-Event-ID` (or `?after=`) resumes exactly after it; at the
//!   end of a finished run that is a 204, so an EventSource stops instead of replaying
//!   the run forever. `types` and `view` are herald's own and refused with a 400.
//! - The stream shows nothing for a run with no events yet: its first event starts
//!   it, so that the output depends on the run's events alone and a resumed stream
//!   can be rebuilt exactly.
//! - Each AG-UI event that stands for a herald event carries it as `rawEvent`, so
//!   nothing is lost in translation (a tool's feedback, an item's label); `CUSTOM`
//!   carries it as `value` instead. `timestamp` is the event's `ts` in milliseconds.
//! - Text deltas are one message per `call_id`, and one for deltas without one, each
//!   `text:<n>` in the order they started; a message ends at its call's
//!   `llm.response`, at `agent.response` for deltas without a call, or before the end
//!   of the run.
//! - `tool.started` is `TOOL_CALL_START`, `TOOL_CALL_ARGS` (its `input` as JSON text,
//!   when it has one) and `TOOL_CALL_END`: AG-UI's end closes the arguments, not the
//!   call. `tool.finished` is `TOOL_CALL_RESULT` (`result:<id>`), with the output as
//!   text, or the error when the tool failed. The tool call's id is its `call_id`, or
//!   `<call_id>:<n>` for the `n`th call that used the same `call_id`.
//! - `ACTIVITY_SNAPSHOT`'s `content` is the run state's progress in the state's own
//!   field names (`status`, `percent`, `eta_s`, `eta_low_s`, `eta_high_s`, `elapsed_s`,
//!   `stages`, `progress`, `items`), the same as `GET /v1/runs/{id}` shows; one message per run
//!   (`progress:<run>`), replaced by each snapshot. Once one was sent, a stage's end
//!   and the run's end send it again, so that what a front end shows last is the
//!   run's final state, not its last tick.
//! - A tool call's own progress (`progress` with its `call_id`) is an
//!   `ACTIVITY_SNAPSHOT` of `activityType` `TOOL_PROGRESS`, one message per call
//!   (`tool-progress:<toolCallId>`), whose `content` is the call's progress as the
//!   state keeps it (`done`, `total`, `unit`, `percent`, `message`, `updated_at`)
//!   beside `tool_call_id`, `call_id` and `tool`. Activity messages are independent
//!   of the tool call's own events, so they may follow its `TOOL_CALL_END`.
//! - A stream that cannot go on (the run deleted, the hub stopping, the database away)
//!   ends with `RUN_ERROR` and a code saying which (`not_found`, `unavailable`),
//!   never with silence. That `RUN_ERROR` has no `id:`, so an EventSource that
//!   reconnects resumes where the run's events were, on a new stream.

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use herald_protocol::api::ApiErrorCode;
use herald_protocol::{
    Counter, Event, EventBody, ItemCounts, RunFinished, RunId, RunOutcome, RunState, RunStatus,
    StageState, ToolFinished, ToolOutcome, ToolProgress, ToolStarted,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cursor::{Cursor, check_cursor};
use crate::error::{ApiError, json_body};
use crate::hub::Hub;
use crate::sse::sse_of;
use crate::store::{RunRecord, StoreError};

/// The `format` that asks for AG-UI.
pub(crate) const FORMAT: &str = "ag-ui";

/// Distinct tool `call_id`s an encoder remembers, to tell a `call_id` used again.
const MAX_REMEMBERED_CALLS: usize = 65_536;

/// `activityType` of the progress snapshots.
const ACTIVITY_PROGRESS: &str = "PROGRESS";

/// `activityType` of a tool call's own progress.
const ACTIVITY_TOOL_PROGRESS: &str = "TOOL_PROGRESS";

/// One AG-UI event: its type and fields, and the base fields every event may carry.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AgUiEvent {
    #[serde(flatten)]
    kind: Kind,
    /// Milliseconds since the Unix epoch (AG-UI wants an integer).
    timestamp: i64,
    /// The herald event this one stands for.
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_event: Option<Value>,
}

/// AG-UI's event types that herald speaks, with their fields as AG-UI names them.
#[derive(Debug, Serialize)]
#[serde(
    tag = "type",
    rename_all = "SCREAMING_SNAKE_CASE",
    rename_all_fields = "camelCase"
)]
enum Kind {
    RunStarted {
        thread_id: String,
        run_id: String,
    },
    RunFinished {
        thread_id: String,
        run_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<Value>,
    },
    RunError {
        message: String,
        code: String,
    },
    StepStarted {
        step_name: String,
    },
    StepFinished {
        step_name: String,
    },
    TextMessageStart {
        message_id: String,
        role: &'static str,
    },
    TextMessageContent {
        message_id: String,
        delta: String,
    },
    TextMessageEnd {
        message_id: String,
    },
    ToolCallStart {
        tool_call_id: String,
        tool_call_name: String,
    },
    ToolCallArgs {
        tool_call_id: String,
        delta: String,
    },
    ToolCallEnd {
        tool_call_id: String,
    },
    ToolCallResult {
        message_id: String,
        tool_call_id: String,
        content: String,
        role: &'static str,
    },
    ActivitySnapshot {
        message_id: String,
        activity_type: &'static str,
        content: Value,
        replace: bool,
    },
    Custom {
        name: String,
        value: Value,
    },
}

impl AgUiEvent {
    fn to_json(&self) -> String {
        // A struct of strings and JSON values serializes without fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The run state's progress: what `ACTIVITY_SNAPSHOT` carries.
#[derive(Serialize)]
struct ProgressContent<'a> {
    status: RunStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eta_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eta_low_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eta_high_s: Option<f64>,
    elapsed_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_steps: Option<u64>,
    stages: &'a [StageState],
    #[serde(skip_serializing_if = "Option::is_none")]
    progress: Option<&'a Counter>,
    items: &'a ItemCounts,
}

impl<'a> ProgressContent<'a> {
    fn of(state: &'a RunState) -> ProgressContent<'a> {
        ProgressContent {
            status: state.status,
            percent: state.percent,
            eta_s: state.eta_s,
            eta_low_s: state.eta_low_s,
            eta_high_s: state.eta_high_s,
            elapsed_s: state.elapsed_s,
            total_steps: state.total_steps,
            stages: &state.stages,
            progress: state.progress.as_ref(),
            items: &state.items,
        }
    }
}

/// A tool call's own progress: what its `ACTIVITY_SNAPSHOT` carries, in the state's
/// field names beside the AG-UI id of the call.
#[derive(Serialize)]
struct ToolProgressContent<'a> {
    tool_call_id: &'a str,
    call_id: &'a str,
    tool: &'a str,
    #[serde(flatten)]
    progress: &'a ToolProgress,
}

/// An open text message: the `call_id` its deltas carry (none for deltas without one)
/// and its AG-UI id.
struct OpenMessage {
    call_id: Option<String>,
    message_id: String,
}

/// The AG-UI events one herald event becomes, as they are made.
struct Out<'e> {
    events: Vec<AgUiEvent>,
    /// The event's time, in milliseconds.
    ts: i64,
    event: &'e Event,
}

/// Whether an AG-UI event carries the herald event as its `rawEvent`: the one that
/// stands for it does; those made up on the way (the start of a step that ended
/// without one, a message ended by a response) do not.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Raw {
    With,
    Without,
}

impl Out<'_> {
    /// The herald event as JSON, for `rawEvent` (or `CUSTOM`'s `value`).
    fn raw(&self) -> Option<Value> {
        serde_json::to_value(self.event).ok()
    }

    fn emit(&mut self, kind: Kind, raw: Raw) {
        let raw_event = match raw {
            Raw::With => self.raw(),
            Raw::Without => None,
        };
        self.events.push(AgUiEvent {
            kind,
            timestamp: self.ts,
            raw_event,
        });
    }
}

/// Translates one run's herald events, in `seq` order, into AG-UI events.
pub(crate) struct Encoder {
    run: RunId,
    /// `threadId`: the parent run, or the run itself.
    thread: String,
    /// The run's state, folded with the protocol's reducer, for the progress snapshots.
    state: RunState,
    started: bool,
    finished: bool,
    /// Steps started and not yet finished, in the order they started.
    steps: Vec<String>,
    /// Text messages started and not yet ended.
    messages: Vec<OpenMessage>,
    /// Text messages started so far, for their ids.
    text_messages: u64,
    /// An `ACTIVITY_SNAPSHOT` of the progress was sent.
    progress_shown: bool,
    /// Tool calls announced (`TOOL_CALL_START` sent) whose result has not come: their
    /// AG-UI id by `call_id`.
    tools: HashMap<String, String>,
    /// Calls announced so far by `call_id`, so that a `call_id` used again after its
    /// result gets an AG-UI id of its own (AG-UI's client would merge the two).
    tool_uses: HashMap<String, u32>,
}

impl Encoder {
    /// An encoder for run `run`, started by run `parent` if any, before its first
    /// event.
    pub(crate) fn new(run: &RunId, parent: Option<&RunId>) -> Encoder {
        let thread = parent.unwrap_or(run).as_str().to_owned();
        let run = run.clone();
        Encoder {
            state: RunState::new(run.clone()),
            run,
            thread,
            started: false,
            finished: false,
            steps: Vec::new(),
            messages: Vec::new(),
            text_messages: 0,
            progress_shown: false,
            tools: HashMap::new(),
            tool_uses: HashMap::new(),
        }
    }

    /// `RUN_FINISHED` or `RUN_ERROR` has been returned: nothing may follow.
    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    fn start_into(&mut self, out: &mut Vec<AgUiEvent>, ts_ms: i64, raw: Option<Value>) {
        if self.started {
            return;
        }
        self.started = true;
        out.push(AgUiEvent {
            kind: Kind::RunStarted {
                thread_id: self.thread.clone(),
                run_id: self.run.as_str().to_owned(),
            },
            timestamp: ts_ms,
            raw_event: raw,
        });
    }

    /// The AG-UI events that `event` becomes; none once the run has finished.
    pub(crate) fn push(&mut self, event: &Event) -> Vec<AgUiEvent> {
        if self.finished {
            return Vec::new();
        }
        self.state.apply(event);
        let mut out = Out {
            events: Vec::new(),
            ts: millis(event.ts.unix_micros()),
            event,
        };
        if let EventBody::RunStarted(_) = &event.body
            && !self.started
        {
            if let Some(parent) = &event.parent {
                parent.as_str().clone_into(&mut self.thread);
            }
            let raw = out.raw();
            self.start_into(&mut out.events, out.ts, raw);
            return out.events;
        }
        self.start_into(&mut out.events, out.ts, None);
        match &event.body {
            EventBody::RunFinished(finished) => self.run_finished(&mut out, finished),
            EventBody::StageStarted(stage) if !self.steps.contains(&stage.stage) => {
                self.steps.push(stage.stage.clone());
                let step_name = stage.stage.clone();
                out.emit(Kind::StepStarted { step_name }, Raw::With);
            }
            EventBody::StageFinished(stage) => self.stage_finished(&mut out, &stage.stage),
            EventBody::Progress(progress) if progress.call_id.is_some() => {
                match self.tool_activity(progress.call_id.as_deref().unwrap_or_default()) {
                    Some(kind) => out.emit(kind, Raw::With),
                    // A call not in flight has no row: the run's progress, unchanged
                    // by it, still carries the event.
                    None => self.show_progress(&mut out),
                }
            }
            EventBody::Progress(_)
            | EventBody::ItemStarted(_)
            | EventBody::ItemFinished(_)
            | EventBody::Heartbeat(_) => self.show_progress(&mut out),
            EventBody::TextDelta(delta) => {
                let message_id =
                    self.open_message(&mut out.events, delta.call_id.as_deref(), out.ts);
                let kind = Kind::TextMessageContent {
                    message_id,
                    delta: delta.text.clone(),
                };
                out.emit(kind, Raw::With);
            }
            EventBody::ToolStarted(tool) if !self.tools.contains_key(&tool.call_id) => {
                self.tool_started(&mut out, tool);
            }
            EventBody::ToolFinished(tool) => self.tool_finished(&mut out, tool),
            body => self.other(&mut out, body),
        }
        out.events
    }

    /// `run.finished`: what is open is closed, then `RUN_FINISHED`, or `RUN_ERROR` for
    /// a run that failed or was cancelled.
    fn run_finished(&mut self, out: &mut Out<'_>, finished: &RunFinished) {
        self.close_all(&mut out.events, out.ts);
        self.progress_after_change(&mut out.events, out.ts);
        let kind = match finished.status {
            RunOutcome::Succeeded => Kind::RunFinished {
                thread_id: self.thread.clone(),
                run_id: self.run.as_str().to_owned(),
                result: finished.result.clone().filter(|r| !r.is_null()),
            },
            RunOutcome::Failed => Kind::RunError {
                message: finished
                    .error
                    .clone()
                    .unwrap_or_else(|| "the run failed".to_owned()),
                code: "failed".to_owned(),
            },
            RunOutcome::Cancelled => Kind::RunError {
                message: finished
                    .error
                    .clone()
                    .unwrap_or_else(|| "the run was cancelled".to_owned()),
                code: "cancelled".to_owned(),
            },
        };
        out.emit(kind, Raw::With);
        self.finished = true;
    }

    /// `stage.finished`: `STEP_FINISHED`, after the `STEP_STARTED` AG-UI wants first
    /// if the stage never said it started.
    fn stage_finished(&mut self, out: &mut Out<'_>, stage: &str) {
        if let Some(at) = self.steps.iter().position(|s| s == stage) {
            self.steps.remove(at);
        } else {
            let step_name = stage.to_owned();
            out.emit(Kind::StepStarted { step_name }, Raw::Without);
        }
        let step_name = stage.to_owned();
        out.emit(Kind::StepFinished { step_name }, Raw::With);
        self.progress_after_change(&mut out.events, out.ts);
    }

    /// A tick of the run's progress: a snapshot of it.
    fn show_progress(&mut self, out: &mut Out<'_>) {
        self.progress_shown = true;
        out.emit(self.progress_snapshot(), Raw::With);
    }

    /// `tool.started` of a call not in flight: its start, its arguments, its end.
    fn tool_started(&mut self, out: &mut Out<'_>, tool: &ToolStarted) {
        let tool_call_id = self.announce_tool(&tool.call_id);
        let kind = Kind::ToolCallStart {
            tool_call_id: tool_call_id.clone(),
            tool_call_name: tool.tool.clone(),
        };
        out.emit(kind, Raw::With);
        if let Some(input) = &tool.input {
            // Arguments are JSON text, whatever the input's type.
            let delta = input.to_string();
            let kind = Kind::ToolCallArgs {
                tool_call_id: tool_call_id.clone(),
                delta,
            };
            out.emit(kind, Raw::Without);
        }
        out.emit(Kind::ToolCallEnd { tool_call_id }, Raw::Without);
    }

    /// `tool.finished`: the call's result, announced first if it never was.
    fn tool_finished(&mut self, out: &mut Out<'_>, tool: &ToolFinished) {
        let tool_call_id = match self.tools.remove(&tool.call_id) {
            Some(id) => id,
            None => {
                let id = self.announce_tool(&tool.call_id);
                self.tools.remove(&tool.call_id);
                let kind = Kind::ToolCallStart {
                    tool_call_id: id.clone(),
                    tool_call_name: tool.tool.clone(),
                };
                out.emit(kind, Raw::Without);
                let tool_call_id = id.clone();
                out.emit(Kind::ToolCallEnd { tool_call_id }, Raw::Without);
                id
            }
        };
        let output = tool.output.as_ref().map(json_text);
        let content = match tool.status {
            ToolOutcome::Succeeded => output.unwrap_or_default(),
            ToolOutcome::Failed => tool
                .error
                .clone()
                .or(output)
                .unwrap_or_else(|| format!("{} failed", tool.tool)),
        };
        let kind = Kind::ToolCallResult {
            message_id: format!("result:{tool_call_id}"),
            tool_call_id,
            content,
            role: "tool",
        };
        out.emit(kind, Raw::With);
    }

    /// Any other event: AG-UI's `CUSTOM`, after the text it ends. The text of a model
    /// call ends with its response; text without a call ends with the agent's response.
    fn other(&mut self, out: &mut Out<'_>, body: &EventBody) {
        match body {
            EventBody::LlmResponse(response) => {
                self.end_messages(&mut out.events, out.ts, |m| {
                    m.call_id.as_deref() == Some(response.call_id.as_str())
                });
            }
            EventBody::AgentResponse(_) => {
                self.end_messages(&mut out.events, out.ts, |m| m.call_id.is_none());
            }
            _ => {}
        }
        let kind = Kind::Custom {
            name: out.event.event_type().to_owned(),
            value: out.raw().unwrap_or(Value::Null),
        };
        out.emit(kind, Raw::Without);
    }

    /// `ACTIVITY_SNAPSHOT` of the run state's progress, as folded so far.
    fn progress_snapshot(&self) -> Kind {
        let content = serde_json::to_value(ProgressContent::of(&self.state)).unwrap_or_default();
        Kind::ActivitySnapshot {
            message_id: format!("progress:{}", self.run),
            activity_type: ACTIVITY_PROGRESS,
            content,
            replace: true,
        }
    }

    /// `ACTIVITY_SNAPSHOT` of a tool call's own progress, as the state keeps it, for a
    /// call in flight; its message is the call's (`tool-progress:<toolCallId>`), so
    /// each snapshot replaces the call's last one and never the run's progress.
    fn tool_activity(&self, call_id: &str) -> Option<Kind> {
        let call = self
            .state
            .tools
            .in_flight
            .iter()
            .find(|t| t.call_id == call_id)?;
        let progress = call.progress.as_ref()?;
        // The AG-UI id of the call, which differs from its `call_id` when that was
        // used again; a call only selected has none yet and goes by its `call_id`.
        let tool_call_id = self
            .tools
            .get(call_id)
            .map_or(call_id, String::as_str)
            .to_owned();
        let content = serde_json::to_value(ToolProgressContent {
            tool_call_id: &tool_call_id,
            call_id,
            tool: &call.tool,
            progress,
        })
        .unwrap_or_default();
        Some(Kind::ActivitySnapshot {
            message_id: format!("tool-progress:{tool_call_id}"),
            activity_type: ACTIVITY_TOOL_PROGRESS,
            content,
            replace: true,
        })
    }

    /// The progress again after a stage or the run finished, once it was shown: so
    /// that a front end does not keep showing a finished stage (or run) as running.
    fn progress_after_change(&self, out: &mut Vec<AgUiEvent>, ts: i64) {
        if self.progress_shown {
            out.push(AgUiEvent {
                kind: self.progress_snapshot(),
                timestamp: ts,
                raw_event: None,
            });
        }
    }

    /// A new tool call's AG-UI id, recorded as open: its `call_id`, or `call_id:N` for
    /// its `N`th use.
    fn announce_tool(&mut self, call_id: &str) -> String {
        // Bounded: a run of more distinct calls than this forgets the old ones, which
        // costs a merge in the client only if one of those is used again.
        if self.tool_uses.len() >= MAX_REMEMBERED_CALLS && !self.tool_uses.contains_key(call_id) {
            self.tool_uses.clear();
        }
        let uses = self.tool_uses.entry(call_id.to_owned()).or_insert(0);
        *uses += 1;
        let id = if *uses == 1 {
            call_id.to_owned()
        } else {
            format!("{call_id}:{uses}")
        };
        self.tools.insert(call_id.to_owned(), id.clone());
        id
    }

    /// The id of the open message for `call_id`, starting one when there is none.
    fn open_message(&mut self, out: &mut Vec<AgUiEvent>, call_id: Option<&str>, ts: i64) -> String {
        if let Some(open) = self
            .messages
            .iter()
            .find(|m| m.call_id.as_deref() == call_id)
        {
            return open.message_id.clone();
        }
        // Numbered, not named after the call: call ids are any strings, and a call's
        // text may start again after its response; the herald event, with its
        // `call_id`, is in `rawEvent`.
        self.text_messages += 1;
        let message_id = format!("text:{}", self.text_messages);
        out.push(AgUiEvent {
            kind: Kind::TextMessageStart {
                message_id: message_id.clone(),
                role: "assistant",
            },
            timestamp: ts,
            raw_event: None,
        });
        self.messages.push(OpenMessage {
            call_id: call_id.map(str::to_owned),
            message_id: message_id.clone(),
        });
        message_id
    }

    /// Ends the open messages `which` picks.
    fn end_messages(
        &mut self,
        out: &mut Vec<AgUiEvent>,
        ts: i64,
        which: impl Fn(&OpenMessage) -> bool,
    ) {
        let (ended, open) = std::mem::take(&mut self.messages)
            .into_iter()
            .partition(|m| which(m));
        self.messages = open;
        for message in ended {
            out.push(AgUiEvent {
                kind: Kind::TextMessageEnd {
                    message_id: message.message_id,
                },
                timestamp: ts,
                raw_event: None,
            });
        }
    }

    /// Ends every open message and step (the latest step first), for the run's end.
    fn close_all(&mut self, out: &mut Vec<AgUiEvent>, ts: i64) {
        self.end_messages(out, ts, |_| true);
        while let Some(step_name) = self.steps.pop() {
            out.push(AgUiEvent {
                kind: Kind::StepFinished { step_name },
                timestamp: ts,
                raw_event: None,
            });
        }
    }

    /// Closes what is open and ends the stream with `RUN_ERROR`, for a stream that
    /// cannot go on; nothing when the run already finished.
    pub(crate) fn abort(&mut self, cut: &Cut, ts_ms: i64) -> Vec<AgUiEvent> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        self.start_into(&mut out, ts_ms, None);
        self.close_all(&mut out, ts_ms);
        out.push(AgUiEvent {
            kind: Kind::RunError {
                message: cut.message(),
                code: cut.code().to_owned(),
            },
            timestamp: ts_ms,
            raw_event: None,
        });
        self.finished = true;
        out
    }
}

/// A JSON value as the text AG-UI wants: a string as itself, anything else as JSON.
fn json_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The body of `POST /v1/runs/{id}/stream?format=ag-ui`: AG-UI's `RunAgentInput`. Its
/// ids are ignored (the run is the one in the path); its fields are checked for their
/// types, so a client that sends something else is told which field is wrong.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // Read only to check the body's shape.
pub(crate) struct RunAgentInput {
    thread_id: Option<String>,
    run_id: Option<String>,
    messages: Option<Vec<Value>>,
    tools: Option<Vec<Value>>,
    context: Option<Vec<Value>>,
    state: Option<Value>,
    forwarded_props: Option<Value>,
}

/// Checks a `RunAgentInput` body; an empty body stands for `{}`.
pub(crate) fn check_input(body: &[u8]) -> Result<(), ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    if !body.trim_ascii_start().starts_with(b"{") {
        return Err(ApiError::bad_request(
            ApiErrorCode::InvalidBody,
            "the body must be an AG-UI RunAgentInput: a JSON object",
        ));
    }
    json_body::<RunAgentInput>(body).map(drop)
}

/// A query parameter of herald's own streams that an AG-UI stream refuses.
pub(crate) fn refuse(field: &str) -> ApiError {
    ApiError::invalid_field(
        field,
        format!(
            "`{field}` does not apply to format=ag-ui: an AG-UI stream is the whole run, \
             every event"
        ),
    )
}

/// Where an AG-UI stream resumes: after the AG-UI event `index` (from 0) of those that
/// herald event `seq` became, or after all of them. Written `SEQ.INDEX` in the stream's
/// `id:` lines, so that an EventSource that reconnects (with `Last-Event-ID`) continues
/// exactly where it was, even inside the events of one herald event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Resume {
    seq: u64,
    index: Option<usize>,
}

impl Resume {
    /// After every AG-UI event of herald event `seq` (`?after=SEQ`).
    pub(crate) fn after(seq: u64) -> Resume {
        Resume { seq, index: None }
    }

    /// `SEQ` (all of its events delivered) or `SEQ.INDEX`.
    pub(crate) fn parse(s: &str) -> Option<Resume> {
        let (seq, index) = match s.trim().split_once('.') {
            Some((seq, index)) => (seq, Some(index.parse().ok()?)),
            None => (s.trim(), None),
        };
        let seq = seq.parse().ok()?;
        // `0` is before the first event, which has no messages to resume inside: a
        // `0.INDEX` names none of the stream's messages.
        if seq == 0 && index.is_some() {
            return None;
        }
        Some(Resume { seq, index })
    }
}

/// The `id:` of AG-UI event `index` of those herald event `seq` became.
fn sse_id(seq: u64, index: usize) -> String {
    format!("{seq}.{index}")
}

/// The AG-UI stream of run `record`, from its first event, or after `resume`, to its
/// end. The encoder's output depends on the run's events alone, so a resumed stream
/// replays the events up to its cursor without sending them and goes on from there.
pub(crate) async fn stream(
    hub: Hub,
    record: RunRecord,
    resume: Option<Resume>,
) -> Result<Response, ApiError> {
    let id = record.state.id.clone();
    // The parent the run was created with, which its later events cannot change: a
    // resumed stream must name the thread the first one did.
    let mut encoder = Encoder::new(&id, record.parent.as_ref());
    let mut cursor = Cursor::on(&hub, &record, 0, None)?;
    let mut first = Vec::new();
    if let Some(resume) = resume {
        check_cursor(resume.seq, record.last_seq)?;
        let mut seq = 0;
        while seq < resume.seq {
            let Some(event) = cursor.next().await else {
                return Err(Cut::of(&hub, &id).await.into_error());
            };
            seq = event.seq;
            let out = encoder.push(&event);
            if seq == resume.seq {
                if resume.index.is_some_and(|i| i >= out.len()) {
                    return Err(ApiError::bad_request(
                        ApiErrorCode::InvalidCursor,
                        format!(
                            "event {seq} of run `{id}` is {} AG-UI messages; there is no {}.{}",
                            out.len(),
                            seq,
                            resume.index.unwrap_or_default()
                        ),
                    ));
                }
                let skip = resume.index.map_or(out.len(), |i| i + 1);
                first.extend(
                    out.into_iter()
                        .enumerate()
                        .skip(skip)
                        .map(|(i, e)| (Some(sse_id(seq, i)), e)),
                );
            }
        }
        if first.is_empty() && encoder.is_finished() {
            // EventSource reconnects after a stream ends; 204 tells it to stop.
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
    }
    struct Reading {
        hub: Hub,
        id: RunId,
        cursor: Cursor,
        encoder: Encoder,
    }
    let reading = (!encoder.is_finished()).then_some(Reading {
        hub: hub.clone(),
        id,
        cursor,
        encoder,
    });
    let rest = stream::unfold(reading, |reading| async move {
        let mut r = reading?;
        let Some(event) = r.cursor.next().await else {
            let cut = Cut::of(&r.hub, &r.id).await;
            let out = r.encoder.abort(&cut, millis(r.hub.now().unix_micros()));
            // No `id:`: a client that comes back resumes where the run's events were.
            let out: Vec<_> = out.into_iter().map(|e| (None, e)).collect();
            return Some((out, None));
        };
        let seq = event.seq;
        let out: Vec<_> = r
            .encoder
            .push(&event)
            .into_iter()
            .enumerate()
            .map(|(i, e)| (Some(sse_id(seq, i)), e))
            .collect();
        let next = (!r.encoder.is_finished()).then_some(r);
        Some((out, next))
    });
    let events = stream::iter([first])
        .chain(rest)
        .flat_map(stream::iter)
        .map(|(id, event)| {
            let message = SseEvent::default().data(event.to_json());
            match id {
                Some(id) => message.id(id),
                None => message,
            }
        });
    Ok(sse_of(&hub, events))
}

/// Why a run's events stopped before `run.finished`.
#[derive(Debug)]
pub(crate) enum Cut {
    /// The run was deleted.
    Deleted(RunId),
    /// The hub is shutting down.
    Stopping,
    /// The hub cannot reach its database.
    DatabaseAway,
    /// Reading the run's events failed otherwise.
    ReadFailed,
}

impl Cut {
    /// Why `id`'s events stopped, asked of the hub and the store.
    async fn of(hub: &Hub, id: &RunId) -> Cut {
        if hub.shutdown_token().is_cancelled() {
            return Cut::Stopping;
        }
        match hub.store().run(id).await {
            Err(StoreError::NotFound) => Cut::Deleted(id.clone()),
            Err(StoreError::Unavailable(_)) => Cut::DatabaseAway,
            _ => Cut::ReadFailed,
        }
    }

    /// The `code` of the `RUN_ERROR` that ends the stream.
    fn code(&self) -> &'static str {
        match self {
            Cut::Deleted(_) => "not_found",
            Cut::Stopping | Cut::DatabaseAway => "unavailable",
            Cut::ReadFailed => "internal",
        }
    }

    fn message(&self) -> String {
        match self {
            Cut::Deleted(id) => format!("run `{id}` was deleted"),
            Cut::Stopping => "the hub is shutting down; the run goes on, attach again".to_owned(),
            Cut::DatabaseAway => {
                "the hub cannot reach its database just now; attach again".to_owned()
            }
            Cut::ReadFailed => "the hub could not read the run's events; attach again".to_owned(),
        }
    }

    /// The answer to a request that the cut came before any event was sent for.
    fn into_error(self) -> ApiError {
        match self {
            Cut::Deleted(id) => ApiError::run_not_found(id.as_str()),
            Cut::Stopping | Cut::DatabaseAway => ApiError::unavailable(self.message()),
            Cut::ReadFailed => ApiError::internal(self.message()),
        }
    }
}

/// Microseconds to AG-UI's milliseconds.
fn millis(micros: i64) -> i64 {
    micros.div_euclid(1000)
}

#[cfg(test)]
mod tests;
