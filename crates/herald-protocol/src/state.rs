//! The one reducer: [`RunState`] folded from a run's events (docs/protocol.md#run-state).
//!
//! The terminal bars, the hub's `GET /v1/runs/{id}`, `herald watch` and the dashboard all
//! read run state from here; nothing else derives it. The reducer is total: any event
//! in any order folds without panicking, and what cannot be made sense of (a finish for
//! an item never started, a stage never announced) is absorbed as well as it can be.
//!
//! Everything kept per run is bounded (text, lists of items, tools and logs), so a run
//! of a million events has a state of a few kilobytes.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::eta::{Estimate, EtaBasis, EtaEstimator};
use crate::event::{
    AgentHistory, AgentIteration, AgentResponse, Event, EventBody, Heartbeat, ItemFinished,
    ItemStarted, LlmRequest, LlmResponse, Log, LogLevel, PlannedStage, Progress,
    RunCancelRequested, RunFinished, RunOutcome, RunStarted, StageFinished, StageStarted,
    StepOutcome, TextDelta, ToolFinished, ToolOutcome, ToolSelected, ToolStarted,
};
use crate::ids::{RunId, Timestamp};

/// Stages kept in [`RunState::stages`]; past it, the oldest finished stage is dropped.
pub const MAX_STAGES: usize = 256;
/// Tail of the streamed text kept in the state, in bytes.
pub const MAX_TEXT_BYTES: usize = 8 * 1024;
/// Items kept in [`RunState::running_items`]; more are counted but not listed.
pub const MAX_LISTED_ITEMS: usize = 32;
/// Failed items kept in [`RunState::failed_items`], newest last.
pub const MAX_LISTED_FAILURES: usize = 20;
/// Finished tool calls kept in [`ToolsState::done`], newest last.
pub const MAX_LISTED_TOOLS: usize = 50;
/// Log lines kept in [`RunState::logs`], newest last.
pub const MAX_LISTED_LOGS: usize = 20;
/// JSON values (tool inputs, outputs) larger than this are kept as a short preview.
pub const MAX_VALUE_BYTES: usize = 1024;

/// Where a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Working, as far as anyone knows.
    Running,
    /// Silent for longer than its heartbeat timeout.
    Stalled,
    /// Finished and did what it was asked.
    Succeeded,
    /// Finished on an error.
    Failed,
    /// Finished because it was cancelled.
    Cancelled,
}

impl RunStatus {
    /// Whether the run has finished.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }

    /// The status as written on the wire, e.g. `"stalled"`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Stalled => "stalled",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

impl std::str::FromStr for RunStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<RunStatus, String> {
        Ok(match s {
            "running" => RunStatus::Running,
            "stalled" => RunStatus::Stalled,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            _ => {
                return Err(format!(
                    "unknown run status `{s}` (expected running, stalled, succeeded, failed or cancelled)"
                ));
            }
        })
    }
}

impl From<RunOutcome> for RunStatus {
    fn from(o: RunOutcome) -> RunStatus {
        match o {
            RunOutcome::Succeeded => RunStatus::Succeeded,
            RunOutcome::Failed => RunStatus::Failed,
            RunOutcome::Cancelled => RunStatus::Cancelled,
        }
    }
}

/// Where a stage is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    /// Started and not finished.
    Running,
    /// Finished.
    Succeeded,
    /// Finished on an error.
    Failed,
    /// Not done, deliberately.
    Skipped,
}

impl From<StepOutcome> for StageStatus {
    fn from(o: StepOutcome) -> StageStatus {
        match o {
            StepOutcome::Succeeded => StageStatus::Succeeded,
            StepOutcome::Failed => StageStatus::Failed,
            StepOutcome::Skipped => StageStatus::Skipped,
        }
    }
}

/// A counter with a total, its rate and its ETA: the progress of a stage, or of a run
/// that reports progress without stages.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Counter {
    /// Units done.
    pub done: u64,
    /// Units expected, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// Weight done (bytes, tokens, rows), once the counter is weighed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done_weight: Option<f64>,
    /// Weight expected, when known: the counter is then *weighted*, and its percent,
    /// rate and ETA are in weight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_weight: Option<f64>,
    /// What a unit is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// `done / total` in percent (`done_weight / total_weight` when weighted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// Units (or, when weighted, weight) per second, smoothed over time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Seconds left, once at least two units are done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_s: Option<f64>,
    /// The low end of the range of seconds left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_low_s: Option<f64>,
    /// The high end of the range of seconds left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_high_s: Option<f64>,
    /// Set while the current unit has run far longer than a typical one: the ETA is
    /// then no countdown to trust.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overdue: Option<UnitOverdue>,
    /// When `done` last changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
    /// What the ETA rests on until the next completion: kept with the state, so that a
    /// state read back from storage (without its estimator) estimates as the live one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_basis: Option<CounterBasis>,
    /// What the counter's work is doing now, from the latest `progress` that said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The count reported by `progress` events; `done` is the larger of it and the
    /// items finished, so that either way of reporting moves the bar.
    #[serde(skip)]
    reported: u64,
    /// The weight reported by `progress` events, likewise.
    #[serde(skip)]
    reported_weight: Option<f64>,
    /// Whether the estimator is fed weight rather than units.
    #[serde(skip)]
    weighted: bool,
    /// Whether `eta_s` and its range are the producer's own (from a `progress`), which
    /// stand until the count changes.
    #[serde(skip)]
    from_producer: bool,
    /// When counting began: the estimator's times are seconds since then.
    #[serde(skip)]
    origin: Option<Timestamp>,
    #[serde(skip)]
    estimator: EtaEstimator,
}

/// The current unit of a counter has run far longer than a typical one (see
/// [`Counter::overdue`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnitOverdue {
    /// Seconds since the counter last moved.
    pub running_s: f64,
    /// Seconds a unit typically takes.
    pub typical_s: f64,
}

/// A counter's [`EtaBasis`] and when it was set: the estimate at `now` is
/// `basis.at(now - at)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CounterBasis {
    /// The time of the last completion.
    pub at: Timestamp,
    /// What the estimate rests on.
    #[serde(flatten)]
    pub basis: EtaBasis,
}

impl Counter {
    /// Folds a new count (and weight) observed at `ts`, `origin` being when counting
    /// began.
    fn observe(&mut self, ts: Timestamp, origin: Timestamp, done: u64, weight: Option<f64>) {
        let weighted = self.total_weight.is_some();
        let done_weight = weight.or(weighted.then_some(0.0));
        if done == self.done
            && done_weight == self.done_weight
            && weighted == self.weighted
            && self.updated_at.is_some()
        {
            // Only a total may have changed.
            self.refresh_percent();
            if self.from_producer {
                self.rebase();
            } else {
                self.refresh(ts);
            }
            return;
        }
        let reset = done < self.done
            || done_weight.unwrap_or(0.0) < self.done_weight.unwrap_or(0.0)
            || weighted != self.weighted;
        if reset {
            // Work was reset, or is measured anew (in weight, from now on): start the
            // estimate again.
            self.estimator = EtaEstimator::default();
        }
        self.weighted = weighted;
        self.done = done;
        self.done_weight = done_weight;
        self.updated_at = Some(ts);
        self.origin = Some(origin);
        self.from_producer = false;
        let t = ts.seconds_since(origin);
        match done_weight.filter(|_| weighted) {
            Some(w) => self.estimator.observe_weighted(t, w, done),
            None => self.estimator.observe(t, done as f64),
        }
        self.refresh(ts);
    }

    fn set_total(&mut self, total: Option<u64>) {
        if total.is_some() && total != self.total {
            self.total = total;
            self.rebase();
        }
    }

    fn set_total_weight(&mut self, total: Option<f64>) {
        if total.is_some() && total != self.total_weight {
            self.total_weight = total;
            self.rebase();
        }
    }

    /// What the counter's estimate is measured against: the total weight when
    /// weighted, else the total count.
    fn target(&self) -> Option<f64> {
        if self.weighted {
            self.total_weight
        } else {
            self.total.map(|t| t as f64)
        }
    }

    /// Recomputes percent, rate and the estimate as of `ts`.
    fn refresh(&mut self, ts: Timestamp) {
        self.refresh_percent();
        self.rate = self
            .estimator
            .rate()
            .filter(|r| !r.is_nan())
            .map(|r| r.min(f64::MAX));
        self.rebase();
        self.estimate_at(ts);
    }

    /// Sets the basis of the estimate from the estimator and the target.
    fn rebase(&mut self) {
        self.eta_basis = match (self.origin, self.target()) {
            (Some(origin), Some(target)) => {
                // Weighted, the units left help too (a request per file besides its
                // bytes).
                let units = self.total.filter(|_| self.weighted);
                self.estimator
                    .basis_weighted(target, units)
                    .and_then(|(t, basis)| {
                        Some(CounterBasis {
                            at: origin.add_seconds(t),
                            basis: basis.finite()?,
                        })
                    })
            }
            _ => None,
        };
    }

    fn refresh_percent(&mut self) {
        self.percent = match (self.weighted, self.done_weight, self.total_weight) {
            (true, Some(done), Some(total)) => Some(percent_of(done, total)),
            _ => self.total.map(|total| percent(self.done, total)),
        };
    }

    /// Sets the ETA, its range and the overdue note from the estimator's basis, as of
    /// `now`.
    fn estimate_at(&mut self, now: Timestamp) {
        let config = self.estimator.config();
        let estimate = self
            .eta_basis
            .map(|b| b.basis.at(now.seconds_since(b.at).max(0.0), config));
        // Absurd totals (any u64, any finite weight) may overflow the arithmetic: an
        // estimate that is not a number is none, and an infinite one the largest.
        let cap = |x: f64| x.min(f64::MAX);
        let estimate = estimate.filter(|e| !e.eta_s.is_nan()).map(|e| Estimate {
            eta_s: cap(e.eta_s),
            low_s: cap(e.low_s).min(cap(e.eta_s)),
            high_s: cap(e.high_s).max(cap(e.eta_s)),
            ..e
        });
        self.eta_s = estimate.map(|e| e.eta_s);
        self.eta_low_s = estimate.map(|e| e.low_s);
        self.eta_high_s = estimate.map(|e| e.high_s);
        self.overdue = estimate.and_then(|e| e.overdue).map(|o| UnitOverdue {
            running_s: o.running_s,
            typical_s: o.typical_s,
        });
    }

    /// Takes the producer's own estimate (a `progress` event's), which stands until the
    /// count changes.
    fn producer_estimate(&mut self, eta: Option<f64>, low: Option<f64>, high: Option<f64>) {
        if eta.is_none() {
            return;
        }
        self.eta_s = eta;
        // A producer that sent a point and no range leaves no range standing.
        self.eta_low_s = low.or(eta);
        self.eta_high_s = high.or(eta);
        self.from_producer = true;
    }

    /// The counter at `now`. With the estimator's basis (a state folded here, or read
    /// back with it), its estimate at `now`; a producer's estimate counts down as far
    /// as the estimator's would (never growing), and gives way to the estimator's once
    /// the current unit is overdue; a state stored before bases were kept counts down
    /// since the last update.
    fn at(&mut self, now: Timestamp) {
        let live = self.eta_basis.is_some();
        if live && !self.from_producer {
            self.estimate_at(now);
            return;
        }
        let mut since = self
            .updated_at
            .map_or(0.0, |t| now.seconds_since(t).max(0.0));
        if live {
            let mut own = self.clone();
            own.estimate_at(now);
            if own.overdue.is_some() {
                *self = own;
                return;
            }
            // The producer's estimate counts down as far as the estimator's own does
            // (which holds after a while), not further.
            if let Some(updated) = self.updated_at {
                let mut then = self.clone();
                then.estimate_at(updated);
                if let (Some(a), Some(b)) = (then.eta_s, own.eta_s) {
                    if b > 0.0 {
                        since = since.min((a - b).max(0.0));
                    }
                }
            }
        }
        let down = |x: Option<f64>| x.map(|x| (x - since).max(0.0));
        self.eta_s = down(self.eta_s);
        self.eta_low_s = down(self.eta_low_s);
        self.eta_high_s = down(self.eta_high_s);
        if let Some(overdue) = &mut self.overdue {
            overdue.running_s = since;
        }
    }

    /// No estimate: the counter's work is over.
    fn clear_estimate(&mut self) {
        self.eta_s = None;
        self.eta_low_s = None;
        self.eta_high_s = None;
        self.overdue = None;
        self.eta_basis = None;
    }
}

fn percent_of(done: f64, total: f64) -> f64 {
    if total <= 0.0 {
        100.0
    } else {
        (done / total * 100.0).min(100.0)
    }
}

fn percent(done: u64, total: u64) -> f64 {
    if total == 0 {
        100.0
    } else {
        (done as f64 / total as f64 * 100.0).min(100.0)
    }
}

/// One stage of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StageState {
    /// Its name.
    pub name: String,
    /// Where it is.
    pub status: StageStatus,
    /// Its counter.
    #[serde(flatten)]
    pub progress: Counter,
    /// Items of this stage that succeeded.
    pub items_succeeded: u64,
    /// Items of this stage that failed.
    pub items_failed: u64,
    /// Items of this stage that were skipped.
    pub items_skipped: u64,
    /// When it started.
    pub started_at: Timestamp,
    /// When it finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// Seconds it has taken (until its last event, or its end).
    pub elapsed_s: f64,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The weight of its finished items, once one carried a weight.
    #[serde(skip)]
    items_weight: Option<f64>,
}

impl StageState {
    fn new(name: &str, ts: Timestamp) -> StageState {
        StageState {
            name: name.to_owned(),
            status: StageStatus::Running,
            progress: Counter::default(),
            items_succeeded: 0,
            items_failed: 0,
            items_skipped: 0,
            started_at: ts,
            finished_at: None,
            elapsed_s: 0.0,
            error: None,
            items_weight: None,
        }
    }

    fn items_finished(&self) -> u64 {
        self.items_succeeded + self.items_failed + self.items_skipped
    }

    fn recount(&mut self, ts: Timestamp) {
        let done = self.progress.reported.max(self.items_finished());
        let weight = match (self.progress.reported_weight, self.items_weight) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let origin = self.started_at;
        self.progress.observe(ts, origin, done, weight);
    }
}

/// Counts of items across the run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ItemCounts {
    /// Finished successfully.
    pub succeeded: u64,
    /// Finished on an error.
    pub failed: u64,
    /// Skipped.
    pub skipped: u64,
    /// Started and not finished.
    pub running: u64,
}

/// An item in progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ItemState {
    /// Its id.
    pub item: String,
    /// Its stage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Its label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// When it started.
    pub started_at: Timestamp,
}

/// An item that failed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ItemFailure {
    /// Its id.
    pub item: String,
    /// Its stage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Its label, from `item.started`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// What went wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When.
    pub at: Timestamp,
    /// The event that reported it.
    pub seq: u64,
}

/// One tool call, in flight or done.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ToolCall {
    /// Its call id.
    pub call_id: String,
    /// The tool.
    pub tool: String,
    /// Its arguments (a preview when large).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// The message for people, e.g. "Searching the docs".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feedback: Option<String>,
    /// `selected`, `running`, `succeeded` or `failed`.
    pub status: ToolCallStatus,
    /// When it was selected or started.
    pub started_at: Timestamp,
    /// Seconds it took, when done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elapsed_s: Option<f64>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How far the call has come, once it reported `progress` with its call id; kept
    /// as last reported after it finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<ToolProgress>,
}

/// The progress a tool call reported about itself (`progress` with `call_id`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ToolProgress {
    /// Units done.
    pub done: u64,
    /// Units expected, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// What a unit is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// `done / total` in percent, or as the tool reported it without a total.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// What the tool is doing now, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it last reported.
    pub updated_at: Timestamp,
}

/// Where a tool call is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ToolCallStatus {
    /// Chosen by the model, not started.
    Selected,
    /// Running.
    Running,
    /// Returned.
    Succeeded,
    /// Failed.
    Failed,
}

/// The run's tool calls.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ToolsState {
    /// Selected or running, oldest first.
    pub in_flight: Vec<ToolCall>,
    /// The most recent finished calls, newest last.
    pub done: Vec<ToolCall>,
    /// Calls that returned.
    pub succeeded: u64,
    /// Calls that failed.
    pub failed: u64,
}

/// The run's model calls.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LlmState {
    /// Requests made.
    pub calls: u64,
    /// Calls without a response yet.
    pub in_flight: Vec<String>,
    /// Prompt tokens, summed over responses.
    pub input_tokens: u64,
    /// Completion tokens, summed over responses.
    pub output_tokens: u64,
    /// The model of the last call: as it answered (`llm.response`), else as requested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// The agent loop's position.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentState {
    /// The current turn, from 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iteration: Option<u64>,
    /// All tools are done and the final answer is being written.
    pub preparing_response: bool,
    /// The final answer (its first [`MAX_TEXT_BYTES`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// Messages in the last `agent.history`.
    pub history_len: u64,
}

/// The latest thing that went wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorInfo {
    /// What went wrong.
    pub message: String,
    /// Where: `run`, `stage <name>`, `item <id>`, `tool <name>`, `llm <call id>` or
    /// `log`.
    pub source: String,
    /// When.
    pub at: Timestamp,
    /// The event that reported it.
    pub seq: u64,
}

/// A `log` line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogLine {
    /// Severity.
    pub level: LogLevel,
    /// The message.
    pub message: String,
    /// When.
    pub at: Timestamp,
}

/// A run's state, folded from its events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunState {
    /// The run id.
    pub id: RunId,
    /// Its name, from `run.started` (or given when the run was created).
    pub name: String,
    /// The run that started this one, for sub-agents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<RunId>,
    /// Where it is.
    pub status: RunStatus,
    /// When it started: the time of `run.started`, or of its first event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// When its last event happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_event_at: Option<Timestamp>,
    /// When its producer last said anything: the hub's own events (`run.stalled`,
    /// `run.cancel_requested`) do not count, so this is how long the run has been
    /// silent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_producer_at: Option<Timestamp>,
    /// When it finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// Seconds from start to the last event (or, through [`RunState::at`], to now).
    pub elapsed_s: f64,
    /// How far along, in percent, when it can be told (see [`RunState::percent`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// Seconds left in the whole run, once they can be estimated: from its own counter
    /// when it has no stages, else from its running stages and the stages still to
    /// come (counted by `total_steps` or `planned_stages`). Absent when the stages to
    /// come are not known: the current stage's own `eta_s` is then all there is, and
    /// is the stage's, not the run's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_s: Option<f64>,
    /// The low end of the range of the run's seconds left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_low_s: Option<f64>,
    /// The high end of the range of the run's seconds left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_high_s: Option<f64>,
    /// Stages the run announced in `run.started`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_steps: Option<u64>,
    /// The stages the run declared ahead in `run.started`, with their expected sizes
    /// (at most [`MAX_STAGES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub planned_stages: Vec<PlannedStage>,
    /// Metadata from `run.started`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Map<String, Value>>,
    /// Stages in the order they started.
    pub stages: Vec<StageState>,
    /// Progress reported without a stage, for runs that have none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Counter>,
    /// Item counts across the run.
    pub items: ItemCounts,
    /// Items in progress (at most [`MAX_LISTED_ITEMS`]).
    pub running_items: Vec<ItemState>,
    /// The latest failed items (at most [`MAX_LISTED_FAILURES`]).
    pub failed_items: Vec<ItemFailure>,
    /// Tool calls.
    pub tools: ToolsState,
    /// Model calls.
    pub llm: LlmState,
    /// The agent loop.
    pub agent: AgentState,
    /// The tail of the streamed text (at most [`MAX_TEXT_BYTES`]); each model call's
    /// text begins on a line of its own.
    pub text: String,
    /// Bytes of text in all (streamed, and the line breaks between model calls), of
    /// which `text` is the tail.
    pub text_bytes: u64,
    /// The latest error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<ErrorInfo>,
    /// The latest log lines above debug (at most [`MAX_LISTED_LOGS`]).
    pub logs: Vec<LogLine>,
    /// The note of the latest heartbeat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_note: Option<String>,
    /// Someone asked the run to stop.
    pub cancel_requested: bool,
    /// Why, when they said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    /// The run's result, from `run.finished`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Events folded.
    pub event_count: u64,
    /// The highest `seq` folded.
    pub last_seq: u64,
}

/// Folds `events` of run `id` into its state.
pub fn fold<'a>(id: RunId, events: impl IntoIterator<Item = &'a Event>) -> RunState {
    let mut state = RunState::new(id);
    state.apply_all(events);
    state
}

impl RunState {
    /// The state of run `id` before any event.
    pub fn new(id: RunId) -> RunState {
        RunState {
            id,
            name: String::new(),
            parent: None,
            status: RunStatus::Running,
            started_at: None,
            last_event_at: None,
            last_producer_at: None,
            finished_at: None,
            elapsed_s: 0.0,
            percent: None,
            eta_s: None,
            eta_low_s: None,
            eta_high_s: None,
            total_steps: None,
            planned_stages: Vec::new(),
            meta: None,
            stages: Vec::new(),
            progress: None,
            items: ItemCounts::default(),
            running_items: Vec::new(),
            failed_items: Vec::new(),
            tools: ToolsState::default(),
            llm: LlmState::default(),
            agent: AgentState::default(),
            text: String::new(),
            text_bytes: 0,
            last_error: None,
            logs: Vec::new(),
            heartbeat_note: None,
            cancel_requested: false,
            cancel_reason: None,
            result: None,
            event_count: 0,
            last_seq: 0,
        }
    }

    /// Folds more events, in order.
    pub fn apply_all<'a>(&mut self, events: impl IntoIterator<Item = &'a Event>) {
        for event in events {
            self.apply(event);
        }
    }

    /// Folds one event.
    pub fn apply(&mut self, event: &Event) {
        let ts = event.ts;
        self.event_count += 1;
        self.last_seq = self.last_seq.max(event.seq);
        if self.started_at.is_none() {
            self.started_at = Some(ts);
        }
        if self.parent.is_none() {
            self.parent = event.parent.clone();
        }
        self.last_event_at = Some(self.last_event_at.map_or(ts, |t| t.max(ts)));

        // Anything the producer says shows it is alive again; the hub's own events
        // (stalled, cancel requested) do not.
        let from_producer = !matches!(
            event.body,
            EventBody::RunStalled(_) | EventBody::RunCancelRequested(_)
        );
        if from_producer {
            self.last_producer_at = Some(self.last_producer_at.map_or(ts, |t| t.max(ts)));
            if self.status == RunStatus::Stalled {
                self.status = RunStatus::Running;
            }
        }

        match &event.body {
            EventBody::RunStarted(b) => self.on_run_started(b, ts),
            EventBody::RunFinished(b) => self.on_run_finished(b, event),
            EventBody::RunCancelRequested(b) => self.on_run_cancel_requested(b),
            EventBody::RunStalled(_) => self.on_run_stalled(),
            EventBody::Heartbeat(b) => self.on_heartbeat(b),
            EventBody::StageStarted(b) => self.on_stage_started(b, ts),
            EventBody::StageFinished(b) => self.on_stage_finished(b, event),
            EventBody::Progress(b) if b.call_id.is_some() => self.on_tool_progress(b, ts),
            EventBody::Progress(b) => self.on_progress(b, ts),
            EventBody::ItemStarted(b) => self.on_item_started(b, ts),
            EventBody::ItemFinished(b) => self.on_item_finished(b, event),
            EventBody::Log(b) => self.on_log(b, event),
            EventBody::AgentIteration(b) => self.on_agent_iteration(b),
            EventBody::AgentHistory(b) => self.on_agent_history(b),
            EventBody::AgentSystemMessage(_) | EventBody::Custom(_) => {}
            EventBody::AgentPreparingResponse(_) => self.on_agent_preparing_response(),
            EventBody::AgentResponse(b) => self.on_agent_response(b),
            EventBody::LlmRequest(b) => self.on_llm_request(b),
            EventBody::LlmResponse(b) => self.on_llm_response(b, event),
            EventBody::TextDelta(b) => self.on_text_delta(b),
            EventBody::ToolSelected(b) => self.on_tool_selected(b, ts),
            EventBody::ToolStarted(b) => self.on_tool_started(b, ts),
            EventBody::ToolFinished(b) => self.on_tool_finished(b, event),
        }
        self.refresh_summary(ts);
    }
}

/// Run events: the run's life, and the hub's notes on it.
impl RunState {
    fn on_run_started(&mut self, b: &RunStarted, ts: Timestamp) {
        self.name = b.name.clone();
        self.total_steps = b.total_steps.or(self.total_steps);
        if let Some(stages) = &b.stages {
            self.planned_stages = stages.iter().take(MAX_STAGES).cloned().collect();
        }
        if b.meta.is_some() {
            self.meta = b.meta.clone();
        }
        self.started_at = Some(self.started_at.map_or(ts, |t| t.min(ts)));
    }

    fn on_run_finished(&mut self, b: &RunFinished, event: &Event) {
        let ts = event.ts;
        if !self.status.is_terminal() {
            self.status = b.status.into();
            self.finished_at = Some(ts);
            self.result = b.result.clone();
            self.agent.preparing_response = false;
            // Stages left open end with the run: a run that succeeded
            // finished its work; one that failed or was cancelled did not.
            let stage_status = match b.status {
                RunOutcome::Succeeded => StageStatus::Succeeded,
                RunOutcome::Failed | RunOutcome::Cancelled => StageStatus::Failed,
            };
            for stage in self
                .stages
                .iter_mut()
                .filter(|s| s.status == StageStatus::Running)
            {
                stage.status = stage_status;
                stage.finished_at = Some(ts);
                stage.elapsed_s = ts.seconds_since(stage.started_at).max(0.0);
                stage.progress.clear_estimate();
            }
            if b.status == RunOutcome::Succeeded {
                self.percent = Some(100.0);
                self.clear_estimate();
            }
            if let Some(error) = &b.error {
                self.set_error(error, "run".into(), event);
            } else if b.status == RunOutcome::Failed && self.last_error.is_none() {
                self.set_error("the run failed", "run".into(), event);
            }
        }
    }

    fn on_run_cancel_requested(&mut self, b: &RunCancelRequested) {
        self.cancel_requested = true;
        if b.reason.is_some() {
            self.cancel_reason = b.reason.clone();
        }
    }

    fn on_run_stalled(&mut self) {
        if self.status == RunStatus::Running {
            self.status = RunStatus::Stalled;
        }
    }

    fn on_heartbeat(&mut self, b: &Heartbeat) {
        if b.note.is_some() {
            self.heartbeat_note = b.note.clone();
        }
    }
}

/// Stage events.
impl RunState {
    fn on_stage_started(&mut self, b: &StageStarted, ts: Timestamp) {
        let stage = self.stage_mut(&b.stage, ts);
        stage.status = StageStatus::Running;
        stage.finished_at = None;
        stage.progress.set_total(b.total);
        stage.progress.set_total_weight(b.total_weight);
        if b.unit.is_some() {
            stage.progress.unit = b.unit.clone();
        }
        // Counting starts at zero when the stage starts, so that two finished
        // units are enough for a first estimate.
        stage.recount(ts);
    }

    fn on_stage_finished(&mut self, b: &StageFinished, event: &Event) {
        let ts = event.ts;
        let stage = self.stage_mut(&b.stage, ts);
        stage.status = b.status.into();
        stage.finished_at = Some(ts);
        stage.elapsed_s = b.elapsed_s;
        stage.error = b.error.clone();
        // A stage that succeeded is complete, whatever it counted against its
        // total (an estimate): its count stays what it was.
        if b.status == StepOutcome::Succeeded && stage.progress.total.is_some() {
            stage.progress.percent = Some(100.0);
        }
        stage.progress.clear_estimate();
        if b.status == StepOutcome::Failed {
            let msg = b
                .error
                .clone()
                .unwrap_or_else(|| format!("stage {} failed", b.stage));
            self.set_error(&msg, format!("stage {}", b.stage), event);
        }
    }
}

/// `progress`: a stage's, the run's or a tool call's counter.
impl RunState {
    fn on_tool_progress(&mut self, b: &Progress, ts: Timestamp) {
        // A tool's own counter: it never moves a stage or the run's percent. A
        // call not in flight (unknown, or finished) has no row to update.
        let call_id = b.call_id.as_deref();
        if let Some(call) = self
            .tools
            .in_flight
            .iter_mut()
            .find(|t| Some(t.call_id.as_str()) == call_id)
        {
            // What a tick leaves out (the total, the unit, the message) stays
            // as the call last said it.
            let last = call.progress.take();
            let last = last.as_ref();
            let total = b.total.or(last.and_then(|p| p.total));
            call.progress = Some(ToolProgress {
                done: b.done,
                total,
                unit: b.unit.clone().or(last.and_then(|p| p.unit.clone())),
                percent: total.map(|t| percent(b.done, t)).or(b.percent),
                message: b.message.clone().or(last.and_then(|p| p.message.clone())),
                updated_at: ts,
            });
        }
    }

    fn on_progress(&mut self, b: &Progress, ts: Timestamp) {
        let counter = match &b.stage {
            Some(name) => {
                let stage = self.stage_mut(name, ts);
                stage.progress.reported = b.done;
                if b.done_weight.is_some() {
                    stage.progress.reported_weight = b.done_weight;
                }
                stage.progress.set_total(b.total);
                stage.progress.set_total_weight(b.total_weight);
                if b.unit.is_some() {
                    stage.progress.unit = b.unit.clone();
                }
                stage.recount(ts);
                &mut stage.progress
            }
            None => {
                let origin = self.started_at.unwrap_or(ts);
                let counter = self.progress.get_or_insert_with(Counter::default);
                counter.reported = b.done;
                if b.done_weight.is_some() {
                    counter.reported_weight = b.done_weight;
                }
                counter.set_total(b.total);
                counter.set_total_weight(b.total_weight);
                if b.unit.is_some() {
                    counter.unit = b.unit.clone();
                }
                let weight = counter.reported_weight;
                counter.observe(ts, origin, b.done, weight);
                counter
            }
        };
        // A producer that measured its own rate and ETA at full resolution
        // (the SDK does) knows better than a fold over throttled ticks.
        if b.rate.is_some() {
            counter.rate = b.rate;
        }
        counter.producer_estimate(b.eta_s, b.eta_low_s, b.eta_high_s);
        // A producer that knows only how far along it is, not of how much.
        if counter.total.is_none() && b.percent.is_some() {
            counter.percent = b.percent;
        }
        if let Some(message) = &b.message {
            counter.message = Some(message.clone()).filter(|m| !m.is_empty());
        }
    }
}

/// Item events.
impl RunState {
    fn on_item_started(&mut self, b: &ItemStarted, ts: Timestamp) {
        self.items.running += 1;
        if let Some(stage) = &b.stage {
            self.stage_mut(stage, ts);
        }
        if self.running_items.len() < MAX_LISTED_ITEMS {
            self.running_items.push(ItemState {
                item: b.item.clone(),
                stage: b.stage.clone(),
                label: b.label.clone(),
                started_at: ts,
            });
        }
    }

    fn on_item_finished(&mut self, b: &ItemFinished, event: &Event) {
        let ts = event.ts;
        self.items.running = self.items.running.saturating_sub(1);
        let started = self
            .running_items
            .iter()
            .position(|i| i.item == b.item && i.stage == b.stage)
            .map(|pos| self.running_items.remove(pos));
        match b.status {
            StepOutcome::Succeeded => self.items.succeeded += 1,
            StepOutcome::Skipped => self.items.skipped += 1,
            StepOutcome::Failed => {
                self.items.failed += 1;
                let label = started.and_then(|s| s.label);
                push_bounded(
                    &mut self.failed_items,
                    ItemFailure {
                        item: b.item.clone(),
                        stage: b.stage.clone(),
                        label,
                        error: b.error.clone(),
                        at: ts,
                        seq: event.seq,
                    },
                    MAX_LISTED_FAILURES,
                );
                let msg = b
                    .error
                    .clone()
                    .unwrap_or_else(|| format!("item {} failed", b.item));
                self.set_error(&msg, format!("item {}", b.item), event);
            }
        }
        if let Some(name) = &b.stage {
            let stage = self.stage_mut(name, ts);
            match b.status {
                StepOutcome::Succeeded => stage.items_succeeded += 1,
                StepOutcome::Failed => stage.items_failed += 1,
                StepOutcome::Skipped => stage.items_skipped += 1,
            }
            if let Some(weight) = b.weight {
                // Saturating, as token counts are: any finite weights, summed.
                let sum = stage.items_weight.unwrap_or(0.0) + weight;
                stage.items_weight = Some(sum.min(f64::MAX));
            }
            stage.recount(ts);
        }
    }
}

/// `log`.
impl RunState {
    fn on_log(&mut self, b: &Log, event: &Event) {
        let ts = event.ts;
        if b.level > LogLevel::Debug {
            push_bounded(
                &mut self.logs,
                LogLine {
                    level: b.level,
                    message: b.message.clone(),
                    at: ts,
                },
                MAX_LISTED_LOGS,
            );
        }
        if b.level == LogLevel::Error {
            self.set_error(&b.message, "log".into(), event);
        }
    }
}

/// Agent-loop events.
impl RunState {
    fn on_agent_iteration(&mut self, b: &AgentIteration) {
        self.agent.iteration = Some(b.iteration);
        self.agent.preparing_response = false;
    }

    fn on_agent_history(&mut self, b: &AgentHistory) {
        self.agent.history_len = b.messages.len() as u64;
    }

    fn on_agent_preparing_response(&mut self) {
        self.agent.preparing_response = true;
    }

    fn on_agent_response(&mut self, b: &AgentResponse) {
        let mut text = b.text.clone();
        keep_head(&mut text, MAX_TEXT_BYTES);
        self.agent.response = Some(text);
        self.agent.preparing_response = false;
        if b.iteration.is_some() {
            self.agent.iteration = b.iteration;
        }
    }
}

/// Model calls and their streamed text.
impl RunState {
    fn on_llm_request(&mut self, b: &LlmRequest) {
        // Each call's text starts on a line of its own: the texts of two calls
        // are two texts, not one.
        if !self.text.is_empty() && !self.text.ends_with('\n') {
            self.text.push('\n');
            self.text_bytes += 1;
            keep_tail(&mut self.text, MAX_TEXT_BYTES);
        }
        self.llm.calls += 1;
        if b.model.is_some() {
            self.llm.model = b.model.clone();
        }
        if !self.llm.in_flight.contains(&b.call_id) && self.llm.in_flight.len() < MAX_LISTED_ITEMS {
            self.llm.in_flight.push(b.call_id.clone());
        }
    }

    fn on_llm_response(&mut self, b: &LlmResponse, event: &Event) {
        self.llm.in_flight.retain(|c| c != &b.call_id);
        // Saturating: a producer's token counts are any u64, and the fold must
        // not panic (debug) or wrap (release) on their sum.
        let (input, output) = (b.input_tokens.unwrap_or(0), b.output_tokens.unwrap_or(0));
        self.llm.input_tokens = self.llm.input_tokens.saturating_add(input);
        self.llm.output_tokens = self.llm.output_tokens.saturating_add(output);
        if b.model.is_some() {
            self.llm.model = b.model.clone();
        }
        if let Some(error) = &b.error {
            self.set_error(error, format!("llm {}", b.call_id), event);
        }
    }

    fn on_text_delta(&mut self, b: &TextDelta) {
        self.text_bytes += b.text.len() as u64;
        self.text.push_str(&b.text);
        keep_tail(&mut self.text, MAX_TEXT_BYTES);
    }
}

/// Tool calls.
impl RunState {
    fn on_tool_selected(&mut self, b: &ToolSelected, ts: Timestamp) {
        if !self.tools.in_flight.iter().any(|t| t.call_id == b.call_id) {
            self.tools.in_flight.push(ToolCall {
                call_id: b.call_id.clone(),
                tool: b.tool.clone(),
                input: b.input.as_ref().map(preview),
                feedback: None,
                status: ToolCallStatus::Selected,
                started_at: ts,
                elapsed_s: None,
                error: None,
                progress: None,
            });
            self.tools.in_flight.truncate(MAX_LISTED_TOOLS);
        }
    }

    fn on_tool_started(&mut self, b: &ToolStarted, ts: Timestamp) {
        self.agent.preparing_response = false;
        match self
            .tools
            .in_flight
            .iter_mut()
            .find(|t| t.call_id == b.call_id)
        {
            Some(call) => {
                // Started after being selected; or started again while it
                // runs, which updates its feedback ("Searching page 2 of 5")
                // and leaves its start time alone.
                if call.status != ToolCallStatus::Running {
                    call.status = ToolCallStatus::Running;
                    call.started_at = ts;
                }
                if b.input.is_some() {
                    call.input = b.input.as_ref().map(preview);
                }
                if b.feedback.is_some() {
                    call.feedback = b.feedback.clone();
                }
            }
            None => {
                self.tools.in_flight.push(ToolCall {
                    call_id: b.call_id.clone(),
                    tool: b.tool.clone(),
                    input: b.input.as_ref().map(preview),
                    feedback: b.feedback.clone(),
                    status: ToolCallStatus::Running,
                    started_at: ts,
                    elapsed_s: None,
                    error: None,
                    progress: None,
                });
                self.tools.in_flight.truncate(MAX_LISTED_TOOLS);
            }
        }
    }

    fn on_tool_finished(&mut self, b: &ToolFinished, event: &Event) {
        let ts = event.ts;
        let mut call = match self
            .tools
            .in_flight
            .iter()
            .position(|t| t.call_id == b.call_id)
        {
            Some(pos) => self.tools.in_flight.remove(pos),
            None => ToolCall {
                call_id: b.call_id.clone(),
                tool: b.tool.clone(),
                input: None,
                feedback: None,
                status: ToolCallStatus::Running,
                started_at: ts,
                elapsed_s: None,
                error: None,
                progress: None,
            },
        };
        call.status = match b.status {
            ToolOutcome::Succeeded => ToolCallStatus::Succeeded,
            ToolOutcome::Failed => ToolCallStatus::Failed,
        };
        call.elapsed_s = b
            .elapsed_s
            .or(Some(ts.seconds_since(call.started_at).max(0.0)));
        call.error = b.error.clone();
        match b.status {
            ToolOutcome::Succeeded => self.tools.succeeded += 1,
            ToolOutcome::Failed => {
                self.tools.failed += 1;
                let msg = b
                    .error
                    .clone()
                    .unwrap_or_else(|| format!("tool {} failed", b.tool));
                self.set_error(&msg, format!("tool {}", b.tool), event);
            }
        }
        push_bounded(&mut self.tools.done, call, MAX_LISTED_TOOLS);
    }
}

impl RunState {
    /// The state as seen at `now`: elapsed time up to `now` while the run is not
    /// finished, and ETAs counted down since their last update (never growing).
    pub fn at(&self, now: Timestamp) -> RunState {
        let mut state = self.clone();
        if !state.status.is_terminal() {
            if let Some(start) = state.started_at {
                state.elapsed_s = now.seconds_since(start).max(state.elapsed_s);
            }
            for stage in &mut state.stages {
                if stage.status == StageStatus::Running {
                    stage.elapsed_s = now.seconds_since(stage.started_at).max(stage.elapsed_s);
                    stage.progress.at(now);
                }
            }
            if let Some(counter) = &mut state.progress {
                counter.at(now);
            }
            state.estimate_run();
        }
        state
    }

    /// The stage that started last and is still running.
    pub fn current_stage(&self) -> Option<&StageState> {
        self.stages
            .iter()
            .rev()
            .find(|s| s.status == StageStatus::Running)
    }

    /// The counter that the run's percent follows, and whose ETA views show when the
    /// run's own cannot be estimated: the current stage's, or the run's own when it
    /// reports progress without stages.
    pub fn current_counter(&self) -> Option<&Counter> {
        self.current_stage()
            .map(|s| &s.progress)
            .or(self.progress.as_ref())
    }

    fn stage_mut(&mut self, name: &str, ts: Timestamp) -> &mut StageState {
        match self.stages.iter().position(|s| s.name == name) {
            Some(pos) => &mut self.stages[pos],
            None => {
                // A stage declared ahead starts with the sizes it was declared with.
                let planned = self
                    .planned_stages
                    .iter()
                    .find(|p| p.stage == name)
                    .map(|p| (p.total, p.total_weight));
                // Keep the state bounded: past the limit, the oldest finished stage
                // makes room (a run with that many stages is showing its latest).
                if self.stages.len() >= MAX_STAGES {
                    let pos = self
                        .stages
                        .iter()
                        .position(|s| s.status != StageStatus::Running)
                        .unwrap_or(0);
                    self.stages.remove(pos);
                }
                let mut stage = StageState::new(name, ts);
                if let Some((total, total_weight)) = planned {
                    stage.progress.set_total(total);
                    stage.progress.set_total_weight(total_weight);
                }
                self.stages.push(stage);
                self.stages.last_mut().expect("just pushed")
            }
        }
    }

    fn set_error(&mut self, message: &str, source: String, event: &Event) {
        self.last_error = Some(ErrorInfo {
            message: message.to_owned(),
            source,
            at: event.ts,
            seq: event.seq,
        });
    }

    /// Recomputes the run-wide figures from the stages after each event.
    fn refresh_summary(&mut self, ts: Timestamp) {
        let end = self.finished_at.unwrap_or(ts);
        if let Some(start) = self.started_at {
            self.elapsed_s = end.seconds_since(start).max(0.0);
        }
        for stage in &mut self.stages {
            if stage.status == StageStatus::Running {
                stage.elapsed_s = ts.seconds_since(stage.started_at).max(0.0);
            }
        }
        if self.status == RunStatus::Succeeded {
            return;
        }
        self.percent = self.overall_percent();
        if self.status.is_terminal() {
            self.clear_estimate();
        } else {
            self.estimate_run();
        }
    }

    fn clear_estimate(&mut self) {
        self.eta_s = None;
        self.eta_low_s = None;
        self.eta_high_s = None;
    }

    /// Sets the run's ETA and its range from its counters as they stand.
    fn estimate_run(&mut self) {
        match self.run_estimate() {
            Some(range) => {
                self.eta_s = Some(range.eta);
                self.eta_low_s = Some(range.low);
                self.eta_high_s = Some(range.high);
            }
            None => self.clear_estimate(),
        }
    }

    /// Seconds left in the whole run, when they can be told.
    ///
    /// Without stages, the run's own counter's. With stages: the stages running now
    /// end when the last of them does (their longest ETA), and each stage still to
    /// come takes as long as the stages seen so far took on average (finished ones,
    /// and running ones as elapsed plus ETA); a stage declared with a `total_weight`
    /// takes, when the stages seen were weighted too, its weight at their seconds per
    /// weight. The range spans the fastest and the slowest of the stages seen.
    fn run_estimate(&self) -> Option<EtaRange> {
        if self.stages.is_empty() {
            return self.progress.as_ref().and_then(EtaRange::of);
        }
        // The stages to come: those declared and not started, or as many as
        // `total_steps` leaves; and the weight declared for those that declared one.
        // (Folded on every event: no allocation.)
        let (to_come, weighted_to_come, weight_to_come) = if self.planned_stages.is_empty() {
            let steps = self.total_steps.filter(|&s| s > 0)?;
            let seen = self.stages.len() as u64;
            (steps.saturating_sub(seen) as f64, 0.0, 0.0)
        } else {
            let mut counts = (0.0, 0.0, 0.0);
            for planned in &self.planned_stages {
                if self.stages.iter().any(|s| s.name == planned.stage) {
                    continue;
                }
                counts.0 += 1.0;
                if let Some(weight) = planned.total_weight {
                    counts.1 += 1.0;
                    counts.2 += weight;
                }
            }
            counts
        };
        let mut now = None::<EtaRange>;
        // How long the stages seen took, and their seconds per weight when weighted.
        let mut durations = Spread::default();
        let mut paces = Spread::default();
        let (mut weighted_secs, mut weighed) = (0.0, 0.0);
        for stage in &self.stages {
            let (took, weight) = match stage.status {
                StageStatus::Running => {
                    let range = EtaRange::of(&stage.progress)?;
                    now = Some(now.map_or(range, |n| n.longest(range)));
                    // How long it will have taken: as of its last count, so that the
                    // run's ETA holds, as the stage's does, while nothing is counted.
                    let counted = stage.progress.updated_at.map_or(stage.elapsed_s, |t| {
                        t.seconds_since(stage.started_at).max(0.0)
                    });
                    (counted + range.eta, stage.progress.total_weight)
                }
                StageStatus::Succeeded | StageStatus::Failed => (
                    stage.elapsed_s,
                    stage.progress.done_weight.or(stage.progress.total_weight),
                ),
                StageStatus::Skipped => continue,
            };
            durations.add(took);
            if let Some(weight) = weight.filter(|w| *w > 0.0) {
                paces.add(took / weight);
                weighted_secs += took;
                weighed += weight;
            }
        }
        if to_come == 0.0 {
            return now;
        }
        let by_count = durations.range()?;
        let future = match paces.range() {
            Some(pace) => {
                let pace = EtaRange {
                    eta: weighted_secs / weighed,
                    ..pace
                };
                pace.times(weight_to_come)
                    .plus(by_count.times(to_come - weighted_to_come))
            }
            None => by_count.times(to_come),
        };
        Some(now.unwrap_or(EtaRange::ZERO).plus(future).finite())
    }

    /// How far along the run is, in percent.
    ///
    /// With `total_steps`, each stage is an equal share: finished stages count whole,
    /// the running one by its own percent. Without, the run is as far as its current
    /// counter (the latest running stage, or the run's own progress); when no stage
    /// runs, as far as the last stage that did.
    fn overall_percent(&self) -> Option<f64> {
        let declared =
            (!self.planned_stages.is_empty()).then_some(self.planned_stages.len() as u64);
        if let Some(steps) = self.total_steps.filter(|&s| s > 0).or(declared) {
            let finished = self
                .stages
                .iter()
                .filter(|s| s.status != StageStatus::Running)
                .count() as f64;
            let running = self
                .current_stage()
                .and_then(|s| s.progress.percent)
                .unwrap_or(0.0)
                / 100.0;
            return Some(((finished + running) / steps as f64 * 100.0).min(100.0));
        }
        self.current_counter()
            .or(self.stages.last().map(|s| &s.progress))
            .and_then(|c| c.percent)
    }
}

/// The mean, least and most of some figures, gathered one at a time.
#[derive(Clone, Copy, Debug)]
struct Spread {
    n: f64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Default for Spread {
    fn default() -> Spread {
        Spread {
            n: 0.0,
            sum: 0.0,
            min: f64::INFINITY,
            max: 0.0,
        }
    }
}

impl Spread {
    fn add(&mut self, x: f64) {
        self.n += 1.0;
        self.sum += x;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    /// The mean, from the least to the most; none of nothing.
    fn range(&self) -> Option<EtaRange> {
        (self.n > 0.0).then(|| EtaRange {
            eta: self.sum / self.n,
            low: self.min,
            high: self.max,
        })
    }
}

/// Seconds left, with a range around them.
#[derive(Clone, Copy, Debug, PartialEq)]
struct EtaRange {
    eta: f64,
    low: f64,
    high: f64,
}

impl EtaRange {
    const ZERO: EtaRange = EtaRange {
        eta: 0.0,
        low: 0.0,
        high: 0.0,
    };

    /// A counter's estimate, a point when it has no range.
    fn of(counter: &Counter) -> Option<EtaRange> {
        let eta = counter.eta_s?;
        Some(EtaRange {
            eta,
            low: counter.eta_low_s.unwrap_or(eta).min(eta),
            high: counter.eta_high_s.unwrap_or(eta).max(eta),
        })
    }

    /// Of two things done at once, the one that takes longer, end by end.
    fn longest(self, other: EtaRange) -> EtaRange {
        EtaRange {
            eta: self.eta.max(other.eta),
            low: self.low.max(other.low),
            high: self.high.max(other.high),
        }
    }

    /// Two things done one after the other.
    fn plus(self, other: EtaRange) -> EtaRange {
        EtaRange {
            eta: self.eta + other.eta,
            low: self.low + other.low,
            high: self.high + other.high,
        }
    }

    /// Sums of absurd ETAs (a producer may send any finite number) stay numbers.
    fn finite(self) -> EtaRange {
        let cap = |x: f64| if x.is_finite() { x } else { f64::MAX };
        EtaRange {
            eta: cap(self.eta),
            low: cap(self.low),
            high: cap(self.high),
        }
    }

    fn times(self, k: f64) -> EtaRange {
        EtaRange {
            eta: self.eta * k,
            low: self.low * k,
            high: self.high * k,
        }
    }
}

fn push_bounded<T>(list: &mut Vec<T>, item: T, max: usize) {
    if list.len() >= max {
        list.remove(0);
    }
    list.push(item);
}

/// Keeps the last `max` bytes of `s`, cut at a character boundary.
fn keep_tail(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = s.len() - max;
        while !s.is_char_boundary(cut) {
            cut += 1;
        }
        s.drain(..cut);
    }
}

/// Keeps the first `max` bytes of `s`, cut at a character boundary.
fn keep_head(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// A JSON value as kept in the state: itself when small, a string preview otherwise.
fn preview(value: &Value) -> Value {
    let text = value.to_string();
    if text.len() <= MAX_VALUE_BYTES {
        return value.clone();
    }
    let mut head = text;
    keep_head(&mut head, MAX_VALUE_BYTES);
    head.push('…');
    Value::String(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Draft, RunStalled};

    #[test]
    fn the_hubs_own_events_do_not_count_as_the_producer_speaking() {
        let run = RunId::new("r").unwrap();
        let at = |secs: i64| Timestamp::from_unix_micros(secs * 1_000_000);
        let log = Log {
            level: LogLevel::Info,
            message: "m".into(),
        };
        let events = [
            Draft::new(at(10), log.clone()).stamp(run.clone(), 1, at(10)),
            Draft::new(at(80), RunStalled { silent_for_s: 70.0 }).stamp(run.clone(), 2, at(80)),
            Draft::new(at(90), RunCancelRequested { reason: None }).stamp(run.clone(), 3, at(90)),
        ];
        let state = fold(run.clone(), &events);
        assert_eq!(state.last_producer_at, Some(at(10)));
        assert_eq!(state.last_event_at, Some(at(90)));
        assert_eq!(state.status, RunStatus::Stalled);

        let mut state = state;
        state.apply(&Draft::new(at(95), log).stamp(run, 4, at(95)));
        assert_eq!(state.last_producer_at, Some(at(95)));
        assert_eq!(state.status, RunStatus::Running);
    }
}
