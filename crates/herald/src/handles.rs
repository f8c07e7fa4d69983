//! The handles a program reports through: [`Run`], [`Stage`], [`Item`], [`ToolCall`],
//! [`LlmCall`] and [`HeartbeatGuard`], and the iterator adapters.
//!
//! Handles are cheap clones around an `Arc`. Stages, items, tool and model calls are
//! guards, like a database transaction: finished explicitly on success, and when the
//! last clone is dropped unfinished (an error path, a `?`, a panic) they report
//! `failed`, never silence.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use herald_protocol::{
    AgentHistory, AgentIteration, AgentPreparingResponse, AgentResponse, AgentSystemMessage,
    ChatMessage, Custom, Draft, EventBody, LlmRequest, LlmResponse, Log, LogLevel, PlannedStage,
    Progress, RunFinished, RunId, RunOutcome, RunStarted, StageFinished, StageStarted, StepOutcome,
    TextDelta, ToolFinished, ToolOutcome, ToolSelected, ToolStarted,
};
use serde_json::{Map, Value};

use crate::dispatch::{Counter, Flushed, ItemEvent, ItemKey, ItemWhat, Msg, Shared, now_ts};
use crate::lock::lock;
use crate::signals::{CancelState, Cancellation};

/// When a tool call's count goes out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Emit {
    /// Once it moved far enough since the last one sent.
    IfMoved,
    /// At once.
    Now,
}

/// Why [`Run::custom`] reported nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CustomError {
    /// The name is not `[a-z0-9_]+`.
    BadName(String),
    /// A field uses a name of the envelope (`Custom::RESERVED_FIELDS`: `v`, `event`,
    /// `run`, `seq`, `ts`, `id`, `parent`).
    ReservedField(String),
}

impl fmt::Display for CustomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CustomError::BadName(name) => write!(
                f,
                "`{name}` is not a custom event name: use lower-case letters, digits and `_`"
            ),
            CustomError::ReservedField(field) => write!(
                f,
                "a custom event cannot have a field `{field}`: the envelope uses that name"
            ),
        }
    }
}

impl std::error::Error for CustomError {}

/// A duration in seconds as events carry it, to the millisecond.
fn seconds(d: Duration) -> f64 {
    crate::dispatch::round_seconds(d.as_secs_f64())
}

/// Why a handle reports `failed` when dropped unfinished: the panic's message when
/// it was left by one (`panicked at src/main.rs:10:5: index out of bounds: ...`).
fn drop_reason() -> String {
    if std::thread::panicking() {
        crate::panic::message().unwrap_or_else(|| "panicked".to_owned())
    } else {
        "dropped without finishing (an early return or error path)".to_owned()
    }
}

pub(crate) struct RunInner {
    shared: Arc<Shared>,
    /// Shared with every event the run queues, which so carries it without a copy.
    id: Arc<RunId>,
    parent: Option<RunId>,
    started: Instant,
    finished: AtomicBool,
    cancel: Arc<CancelState>,
    next_call: AtomicU64,
}

impl RunInner {
    fn emit(&self, body: impl Into<EventBody>) {
        if self.finished.load(Ordering::Acquire) {
            return;
        }
        self.push(body.into());
    }

    /// Queues an item's event, unless the run has finished.
    fn push_item(&self, event: ItemEvent) {
        if self.finished.load(Ordering::Acquire) {
            return;
        }
        self.shared.push(Msg::Item(event));
    }

    fn push(&self, body: EventBody) {
        let draft = Draft {
            ts: Some(now_ts()),
            id: None,
            parent: self.parent.clone(),
            body,
        };
        self.shared
            .push(Msg::Event(self.id.clone(), Box::new(draft)));
    }

    fn finish(&self, status: RunOutcome, result: Option<Value>, error: Option<String>) {
        if self.end(status, result, error) {
            self.shared.flush();
        }
    }

    fn finish_async(
        &self,
        status: RunOutcome,
        result: Option<Value>,
        error: Option<String>,
    ) -> Flushed {
        if self.end(status, result, error) {
            self.shared.flush_async()
        } else {
            Flushed::ready()
        }
    }

    /// Queues `run.finished` unless the run has finished already; `true` if it had
    /// not. Nothing the run reports afterwards goes out.
    pub(crate) fn end(
        &self,
        status: RunOutcome,
        result: Option<Value>,
        error: Option<String>,
    ) -> bool {
        if self.finished.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.push(
            RunFinished {
                status,
                result,
                error,
            }
            .into(),
        );
        true
    }
}

impl Drop for RunInner {
    fn drop(&mut self) {
        self.finish(
            RunOutcome::Failed,
            None,
            Some(format!("the run {}", drop_reason())),
        );
    }
}

/// One run: a job, a pipeline, an agent's task. Created by
/// [`Progress::run`](crate::Progress::run).
///
/// Dropped unfinished, the run reports `run.finished` with status `failed`.
#[derive(Clone)]
pub struct Run {
    inner: Arc<RunInner>,
}

/// How to start a run: see [`Progress::run_with`](crate::Progress::run_with).
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// The run id; generated when `None`.
    pub id: Option<RunId>,
    /// The run that started this one, for sub-agents.
    pub parent: Option<RunId>,
    /// How many stages the run will have, when known: makes the run's percent count
    /// every stage as an equal share.
    pub total_steps: Option<u64>,
    /// Free-form metadata.
    pub meta: Option<Map<String, Value>>,
    /// The stages the run will have, in order, with their expected sizes when known:
    /// the run's ETA then covers the stages still to come, not only the current one.
    pub stages: Option<Vec<PlannedStage>>,
}

impl Run {
    pub(crate) fn start(shared: Arc<Shared>, name: &str, options: RunOptions) -> Run {
        let id = options.id.unwrap_or_else(|| generate_run_id(name));
        let cancel = shared.signals.cancel(&id);
        let inner = Arc::new(RunInner {
            shared,
            id: Arc::new(id),
            parent: options.parent,
            started: Instant::now(),
            finished: AtomicBool::new(false),
            cancel,
            next_call: AtomicU64::new(1),
        });
        inner.shared.track_run(&inner);
        inner.emit(RunStarted {
            name: name.to_owned(),
            total_steps: options.total_steps,
            stages: options.stages,
            meta: options.meta,
        });
        Run { inner }
    }

    /// The run id.
    pub fn id(&self) -> &RunId {
        &self.inner.id
    }

    /// Seconds since the run started.
    pub fn elapsed(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// Whether someone asked this run to stop (through a hub). Advisory: the program
    /// decides how to stop, typically by finishing with [`Run::cancelled`].
    pub fn cancel_requested(&self) -> bool {
        self.inner.cancel.is_requested()
    }

    /// The run's cancellation request, to wait for (`wait_timeout`) or `.await`.
    pub fn cancellation(&self) -> Cancellation {
        Cancellation {
            state: self.inner.cancel.clone(),
        }
    }

    /// A stage of this run. It is announced (`stage.started`) on first use; set its
    /// total first with [`Stage::total`].
    pub fn stage(&self, name: &str) -> Stage {
        let counter = Arc::new(Counter::new(
            RunId::clone(&self.inner.id),
            self.inner.parent.clone(),
            name.to_owned(),
        ));
        Stage {
            counter: counter.clone(),
            inner: Arc::new(StageInner {
                run: self.inner.clone(),
                counter,
                announce: Once::new(),
                started: Mutex::new(None),
                finished: AtomicBool::new(false),
            }),
        }
    }

    /// A sub-run of this one (a sub-agent), with this run as its parent.
    pub fn child(&self, name: &str) -> Run {
        let options = RunOptions {
            parent: Some(RunId::clone(&self.inner.id)),
            ..RunOptions::default()
        };
        Run::start(self.inner.shared.clone(), name, options)
    }

    /// Reports a `log` line.
    pub fn log(&self, level: LogLevel, message: impl Into<String>) {
        self.inner.emit(Log {
            level,
            message: message.into(),
        });
    }

    /// Reports a `log` line at `info`.
    pub fn info(&self, message: impl Into<String>) {
        self.log(LogLevel::Info, message);
    }

    /// Reports a `log` line at `warn`.
    pub fn warn(&self, message: impl Into<String>) {
        self.log(LogLevel::Warn, message);
    }

    /// Reports a `log` line at `error`: shown at once, above the bars.
    pub fn error(&self, message: impl Into<String>) {
        self.log(LogLevel::Error, message);
    }

    /// Reports a `heartbeat` with a note. See [`Run::heartbeat_every`] for automatic
    /// ones.
    pub fn heartbeat(&self, note: Option<&str>) {
        self.inner.emit(herald_protocol::Heartbeat {
            elapsed_s: seconds(self.elapsed()),
            note: note.map(str::to_owned),
        });
    }

    /// Emits `heartbeat` whenever the run has been silent for `interval`, until the
    /// guard is dropped. Guards nest: while several live, the shortest interval holds.
    pub fn heartbeat_every(&self, interval: Duration) -> HeartbeatGuard {
        self.inner
            .shared
            .push(Msg::Heartbeat(RunId::clone(&self.inner.id), interval, true));
        HeartbeatGuard {
            run: self.clone(),
            interval,
        }
    }

    /// Reports `agent.iteration`: the agent loop begins turn `iteration` (from 1).
    pub fn iteration(&self, iteration: u64) {
        self.inner.emit(AgentIteration {
            iteration: iteration.max(1),
        });
    }

    /// Reports `agent.history`: the conversation so far.
    pub fn history(&self, messages: Vec<ChatMessage>) {
        self.inner.emit(AgentHistory { messages });
    }

    /// Reports `agent.system_message`.
    pub fn system_message(&self, message: impl Into<String>) {
        self.inner.emit(AgentSystemMessage {
            message: message.into(),
        });
    }

    /// Starts a model call (`llm.request`); finish it with [`LlmCall::finish`].
    pub fn llm_call(&self, provider: Option<&str>, model: Option<&str>) -> LlmCall {
        let call_id = self.next_call_id("llm");
        self.inner.emit(LlmRequest {
            call_id: call_id.clone(),
            provider: provider.map(str::to_owned),
            model: model.map(str::to_owned),
        });
        LlmCall {
            run: self.clone(),
            call_id,
            started: Instant::now(),
            finished: false,
        }
    }

    /// Reports `text.delta` not tied to a model call.
    pub fn text(&self, text: impl Into<String>) {
        self.inner.emit(TextDelta {
            text: text.into(),
            call_id: None,
        });
    }

    /// Reports `tool.selected`: the model chose `tool`; returns the call id to start it
    /// with [`Run::tool_with_id`].
    pub fn tool_selected(&self, tool: &str, input: Option<Value>) -> String {
        let call_id = self.next_call_id("tool");
        self.inner.emit(ToolSelected {
            call_id: call_id.clone(),
            tool: tool.to_owned(),
            input,
        });
        call_id
    }

    /// Starts a tool call (`tool.started`) with a feedback message for people.
    pub fn tool(&self, tool: &str, input: Option<Value>, feedback: Option<&str>) -> ToolCall {
        let call_id = self.next_call_id("tool");
        self.tool_with_id(&call_id, tool, input, feedback)
    }

    /// Starts a tool call with a call id of the caller's (from the model, or from
    /// [`Run::tool_selected`]).
    pub fn tool_with_id(
        &self,
        call_id: &str,
        tool: &str,
        input: Option<Value>,
        feedback: Option<&str>,
    ) -> ToolCall {
        self.inner.emit(ToolStarted {
            call_id: call_id.to_owned(),
            tool: tool.to_owned(),
            input,
            feedback: feedback.map(str::to_owned),
        });
        ToolCall {
            run: self.clone(),
            call_id: call_id.to_owned(),
            tool: tool.to_owned(),
            started: Instant::now(),
            finished: false,
            ticks: ToolTicks::new(),
            unit: None,
        }
    }

    /// Reports `agent.preparing_response`: every tool is done, the answer is being
    /// written.
    pub fn preparing_response(&self) {
        self.inner.emit(AgentPreparingResponse {});
    }

    /// Reports `agent.response`: the agent's answer.
    pub fn response(&self, text: impl Into<String>, iteration: Option<u64>) {
        self.inner.emit(AgentResponse {
            text: text.into(),
            iteration,
        });
    }

    /// Reports `custom.<name>` with the given fields; reports nothing, and says why,
    /// when `name` is not `[a-z0-9_]+` or a field uses a name of the envelope.
    pub fn custom(&self, name: &str, fields: Map<String, Value>) -> Result<(), CustomError> {
        if let Some(field) = Custom::RESERVED_FIELDS
            .iter()
            .find(|f| fields.contains_key(**f))
        {
            return Err(CustomError::ReservedField((*field).to_owned()));
        }
        let custom =
            Custom::new(name, fields).ok_or_else(|| CustomError::BadName(name.to_owned()))?;
        self.inner.emit(EventBody::Custom(custom));
        Ok(())
    }

    /// Reports any event.
    pub fn emit(&self, body: impl Into<EventBody>) {
        self.inner.emit(body);
    }

    /// Finishes the run as `succeeded`, and waits until the sinks have it: a bounded
    /// flush, at most the flush deadline (5 s; for a hub, `HubOptions::flush_deadline`),
    /// and no wait at all for a hub that could not be reached since the program
    /// started (its events are counted as undelivered in [`Progress::stats`]
    /// instead). From async code, use [`Run::finish_async`], which holds no thread of
    /// the runtime.
    ///
    /// [`Progress::stats`]: crate::Progress::stats
    pub fn finish(self) {
        self.inner.finish(RunOutcome::Succeeded, None, None);
    }

    /// Finishes the run as `succeeded` with a result; waits as [`Run::finish`] does.
    pub fn finish_with<T: serde::Serialize + ?Sized>(self, result: &T) {
        let result = serde_json::to_value(result).ok();
        self.inner.finish(RunOutcome::Succeeded, result, None);
    }

    /// Finishes the run as `failed`; waits as [`Run::finish`] does.
    pub fn fail(self, error: impl fmt::Display) {
        self.inner
            .finish(RunOutcome::Failed, None, Some(error.to_string()));
    }

    /// Finishes the run as `cancelled`; waits as [`Run::finish`] does.
    pub fn cancelled(self, reason: Option<&str>) {
        self.inner
            .finish(RunOutcome::Cancelled, None, reason.map(str::to_owned));
    }

    /// [`Run::finish`] for async code: the run is finished at once, and the future
    /// resolves when the sinks have it (within the same bounded flush), without ever
    /// holding the runtime's thread.
    ///
    /// ```no_run
    /// # async fn job(progress: herald::Progress) {
    /// let run = progress.run("agent");
    /// // ... the work, awaiting as it likes ...
    /// run.finish_async().await;
    /// # }
    /// ```
    pub fn finish_async(self) -> Flushed {
        self.inner.finish_async(RunOutcome::Succeeded, None, None)
    }

    /// [`Run::finish_with`] for async code, as [`Run::finish_async`].
    pub fn finish_with_async<T: serde::Serialize + ?Sized>(self, result: &T) -> Flushed {
        let result = serde_json::to_value(result).ok();
        self.inner.finish_async(RunOutcome::Succeeded, result, None)
    }

    /// [`Run::fail`] for async code, as [`Run::finish_async`].
    pub fn fail_async(self, error: impl fmt::Display) -> Flushed {
        self.inner
            .finish_async(RunOutcome::Failed, None, Some(error.to_string()))
    }

    /// [`Run::cancelled`] for async code, as [`Run::finish_async`].
    pub fn cancelled_async(self, reason: Option<&str>) -> Flushed {
        self.inner
            .finish_async(RunOutcome::Cancelled, None, reason.map(str::to_owned))
    }

    fn next_call_id(&self, kind: &str) -> String {
        let n = self.inner.next_call.fetch_add(1, Ordering::Relaxed);
        format!("{kind}-{n}")
    }
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

/// Generates a run id: the name's safe characters, the UTC time, and random hex.
fn generate_run_id(name: &str) -> RunId {
    use std::hash::{BuildHasher, Hasher};
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.truncate(40);
    let slug = slug.trim_matches('-');
    // RandomState is seeded from the OS per process; mixing in the time and a counter
    // makes ids unique across runs of one process too.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_i64(now_ts().unix_micros());
    let stamp = now_ts().as_datetime().format("%Y%m%dT%H%M%SZ");
    let id = if slug.is_empty() {
        format!("run-{stamp}-{:08x}", hasher.finish() as u32)
    } else {
        format!("{slug}-{stamp}-{:08x}", hasher.finish() as u32)
    };
    RunId::new(id).expect("generated ids use only the run id charset")
}

struct StageInner {
    run: Arc<RunInner>,
    counter: Arc<Counter>,
    announce: Once,
    started: Mutex<Option<Instant>>,
    finished: AtomicBool,
}

impl StageInner {
    fn announce(&self) {
        self.announce.call_once(|| {
            let ts = now_ts();
            let _ = self.counter.started_at.set(ts);
            *lock(&self.started) = Some(Instant::now());
            self.run.emit(StageStarted {
                stage: self.counter.stage.clone(),
                total: self.counter.total(),
                unit: self.counter.unit.get().cloned(),
                total_weight: self.counter.total_weight().map(|w| w as f64),
            });
            self.run.shared.push(Msg::Track(self.counter.clone()));
            self.counter.announced.store(true, Ordering::Release);
        });
    }

    fn finish(&self, status: StepOutcome, error: Option<String>) {
        self.announce();
        if self.finished.swap(true, Ordering::AcqRel) {
            return;
        }
        let elapsed_s = lock(&self.started).map_or(0.0, |t| seconds(t.elapsed()));
        self.run.emit(StageFinished {
            stage: self.counter.stage.clone(),
            status,
            error,
            elapsed_s,
        });
    }
}

impl Drop for StageInner {
    fn drop(&mut self) {
        if !self.finished.load(Ordering::Acquire) {
            self.finish(
                StepOutcome::Failed,
                Some(format!("stage {}", drop_reason())),
            );
        }
    }
}

/// A stage of a run, with a counter. Created by [`Run::stage`].
///
/// Counting (`inc`, `set`) is one atomic operation on the caller's thread; the SDK's
/// background thread samples the counter and reports `progress` at the rate each sink
/// allows. Dropped unfinished, the stage reports `stage.finished` with `failed`.
#[derive(Clone)]
pub struct Stage {
    inner: Arc<StageInner>,
    /// The same counter as `inner.counter`, one pointer closer to the hot path.
    counter: Arc<Counter>,
}

impl Stage {
    /// Sets how many units the stage expects. Call before the stage is used, so that
    /// `stage.started` carries it; later, use [`Stage::set_total`].
    #[must_use]
    pub fn total(self, total: impl TryInto<u64>) -> Stage {
        self.set_total(total);
        self
    }

    /// Sets what a unit is ("docs", "B"). Call before the stage is used, so that
    /// `stage.started` carries it.
    #[must_use]
    pub fn unit(self, unit: &str) -> Stage {
        let _ = self.inner.counter.unit.set(unit.to_owned());
        self
    }

    /// Says what the stage is doing now, shown beside its bar ("downloading
    /// foo.tar.gz"), as indicatif's `set_message`: it travels with the stage's
    /// `progress` ticks (a sink that throttles ticks gets it with its next one), so
    /// setting it is a short lock and never an event of its own. An empty message
    /// takes it back.
    pub fn set_message(&self, message: impl Into<String>) {
        let message = message.into();
        *lock(&self.inner.counter.message) = Some(message).filter(|m| !m.is_empty());
    }

    /// Sets the stage's whole weight (bytes, tokens, rows) when its units are not equal
    /// (files of very different sizes): its ETA is then estimated in weight. Call before
    /// the stage is used, so that `stage.started` carries it; later, use
    /// [`Stage::set_total_weight`].
    #[must_use]
    pub fn total_weight(self, weight: u64) -> Stage {
        self.set_total_weight(weight);
        self
    }

    /// Changes the stage's expected weight.
    pub fn set_total_weight(&self, weight: u64) {
        self.inner.counter.set_total_weight(weight);
    }

    /// Counts `n` more units done, weighing `weight` (bytes, tokens, rows) in all.
    #[inline]
    pub fn inc_by(&self, n: u64, weight: u64) {
        self.inc_weight(weight);
        self.inc(n);
    }

    /// Counts `weight` more done (bytes, tokens, rows) of the units under way, without
    /// finishing one: a download's bytes as they arrive.
    #[inline]
    pub fn inc_weight(&self, weight: u64) {
        if !self.counter.announced.load(Ordering::Relaxed) {
            self.inner.announce();
        }
        self.counter.weight.fetch_add(weight, Ordering::Relaxed);
    }

    /// Weight done so far.
    pub fn weight_done(&self) -> u64 {
        self.counter.weight.load(Ordering::Relaxed)
    }

    /// Changes the expected total: it may grow while work is discovered.
    pub fn set_total(&self, total: impl TryInto<u64>) {
        self.inner
            .counter
            .set_total(total.try_into().unwrap_or(u64::MAX));
    }

    /// Counts `n` more units done. This is the hot path: one atomic add.
    #[inline]
    pub fn inc(&self, n: u64) {
        if !self.counter.announced.load(Ordering::Relaxed) {
            self.inner.announce();
        }
        self.counter.done.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets the count of units done.
    pub fn set(&self, done: u64) {
        self.inner.announce();
        self.counter.done.store(done, Ordering::Relaxed);
    }

    /// Units done so far.
    pub fn position(&self) -> u64 {
        self.counter.done.load(Ordering::Relaxed)
    }

    /// The stage's name.
    pub fn name(&self) -> &str {
        &self.inner.counter.stage
    }

    /// Starts an item of this stage (`item.started`).
    pub fn item(&self, item: impl Into<String>) -> Item {
        self.item_labeled(item, None)
    }

    /// Starts an item of this stage with a human label.
    pub fn item_labeled(&self, item: impl Into<String>, label: Option<&str>) -> Item {
        let item = ItemKey::Named(Arc::from(item.into()));
        self.start_item(item, label.map(str::to_owned))
    }

    /// Starts an item: the one path of [`Stage::item_labeled`] and the adapters,
    /// whose numbered items are never spelt out on this thread.
    fn start_item(&self, key: ItemKey, label: Option<String>) -> Item {
        self.inner.announce();
        // Without a sink nothing is reported, so not even the clock is read.
        let started = self.inner.run.shared.enabled().then(|| {
            let at = Instant::now();
            self.inner.run.push_item(ItemEvent {
                counter: self.counter.clone(),
                at,
                item: key.clone(),
                what: ItemWhat::Started { label },
            });
            at
        });
        Item {
            stage: self.clone(),
            key,
            id: OnceLock::new(),
            weight: None,
            started,
            finished: false,
        }
    }

    /// Logs at `error` within this stage's run.
    pub fn error(&self, message: impl Into<String>) {
        self.inner.run.emit(Log {
            level: LogLevel::Error,
            message: message.into(),
        });
    }

    /// Reports each element of `iter` as an item (ids `1`, `2`, ... in order): started
    /// when the loop takes it, succeeded when the loop takes the next one or ends.
    /// Leaving the loop early (`break`, `?`, a panic) reports the current item failed.
    ///
    /// To fail one element and go on, or to leave the loop with `?` and have the item
    /// report the error itself, use [`Stage::try_iter`] or [`Stage::each`].
    ///
    /// Like every adapter here, it takes the stage's total from `iter` when `iter`
    /// knows its length exactly (an `ExactSizeIterator`: a `Vec`, a slice, a range)
    /// and no total was set.
    pub fn iter<I: IntoIterator>(&self, iter: I) -> Items<I::IntoIter> {
        self.iter_labeled(iter, |_| None)
    }

    /// As [`Stage::iter`], with a label for each element.
    pub fn iter_labeled<I, F>(&self, iter: I, label: F) -> Items<I::IntoIter, F>
    where
        I: IntoIterator,
        F: FnMut(&I::Item) -> Option<String>,
    {
        let iter = iter.into_iter();
        self.total_from(&iter);
        self.inner.announce();
        Items {
            stage: self.clone(),
            iter,
            label,
            index: 0,
            current: None,
        }
    }

    /// Reports each element of `iter` as an item (ids `1`, `2`, ... in order) and
    /// yields it in an [`Attempt`], through which the loop's body says how the item
    /// went: [`Attempt::check`] a `Result` (an `Err` fails the item with the error's
    /// text, and is handed back for `?`), [`Attempt::fail`] or [`Attempt::skip`] it
    /// and go on. An item the body says nothing about succeeds when the loop takes the
    /// next one; one left by `break`, `?` or a panic fails, with the panic's message
    /// if it was one.
    ///
    /// ```no_run
    /// # fn download(url: &str) -> Result<Vec<u8>, std::io::Error> { Ok(Vec::new()) }
    /// # fn main() -> Result<(), std::io::Error> {
    /// # let run = herald::Progress::hidden().run("fetch");
    /// let urls = ["https://a.example", "https://b.example"];
    /// let fetch = run.stage("fetch");
    /// for url in fetch.try_iter(urls) {
    ///     // "connection reset by peer" is the item's error, then the loop's.
    ///     let body = url.check(download(*url))?;
    ///     if body.is_empty() {
    ///         url.skip();
    ///     }
    /// }
    /// fetch.finish();
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_iter<I: IntoIterator>(&self, iter: I) -> Attempts<I::IntoIter> {
        let iter = iter.into_iter();
        self.total_from(&iter);
        self.inner.announce();
        Attempts {
            stage: self.clone(),
            iter,
            index: 0,
            current: None,
        }
    }

    /// Calls `work` on each element of `iter`, reporting each as an item: an `Ok`
    /// succeeds, an `Err` fails the item with the error's text (its `Display`) and the
    /// loop goes on. Returns the errors, in order. A panic in `work` fails its item
    /// with the panic's message and goes on unwinding.
    ///
    /// ```no_run
    /// # fn classify(doc: &str) -> Result<(), String> { Ok(()) }
    /// # let run = herald::Progress::hidden().run("triage");
    /// let docs = ["a.pdf", "b.pdf"];
    /// let errors = run.stage("classify").each(docs, |doc| classify(doc));
    /// println!("{} of {} failed", errors.len(), docs.len());
    /// ```
    pub fn each<I, F, E>(&self, iter: I, mut work: F) -> Vec<E>
    where
        I: IntoIterator,
        F: FnMut(I::Item) -> Result<(), E>,
        E: fmt::Display,
    {
        let mut errors = Vec::new();
        for attempt in self.try_iter(iter) {
            let (value, slot) = (attempt.value, attempt.slot);
            if let Err(e) = work(value) {
                end_slot(&slot, StepOutcome::Failed, Some(e.to_string()));
                errors.push(e);
            }
        }
        errors
    }

    /// Counts each element of `iter` as one unit, without item events: the cheap
    /// adapter for large loops (indicatif's `wrap_iter`, tqdm's `tqdm(iterable)`).
    pub fn wrap_iter<I: IntoIterator>(&self, iter: I) -> Ticks<I::IntoIter> {
        let iter = iter.into_iter();
        self.total_from(&iter);
        self.inner.announce();
        Ticks {
            stage: self.clone(),
            iter,
        }
    }

    /// Counts the bytes read through `read` (indicatif's `wrap_read`): the stage's
    /// unit becomes `B` unless it has one, so its bar reads `1.5 GiB/5.0 GiB` and its
    /// rate `2.5 MiB/s`. Set the total (the file's length) first.
    ///
    /// ```no_run
    /// # fn main() -> std::io::Result<()> {
    /// # let run = herald::Progress::hidden().run("checksum");
    /// let file = std::fs::File::open("image.iso")?;
    /// let stage = run.stage("read").total(file.metadata()?.len());
    /// let mut reader = stage.wrap_read(file);
    /// std::io::copy(&mut reader, &mut std::io::sink())?;
    /// stage.finish();
    /// # Ok(())
    /// # }
    /// ```
    pub fn wrap_read<R: io::Read>(&self, read: R) -> CountedIo<R> {
        self.counted_io(read)
    }

    /// Counts the bytes written through `write` (indicatif's `wrap_write`), as
    /// [`Stage::wrap_read`] counts those read.
    pub fn wrap_write<W: io::Write>(&self, write: W) -> CountedIo<W> {
        self.counted_io(write)
    }

    fn counted_io<T>(&self, inner: T) -> CountedIo<T> {
        let _ = self.inner.counter.unit.set("B".to_owned());
        self.inner.announce();
        CountedIo {
            stage: self.clone(),
            inner,
        }
    }

    /// Takes the total from `iter` when it knows its length exactly and the stage has
    /// none yet.
    fn total_from<I: Iterator>(&self, iter: &I) {
        if self.inner.counter.total().is_some() {
            return;
        }
        if let (lower, Some(upper)) = iter.size_hint() {
            if lower == upper {
                self.set_total(lower);
            }
        }
    }

    /// Finishes the stage as `succeeded`.
    pub fn finish(&self) {
        self.inner.finish(StepOutcome::Succeeded, None);
    }

    /// Finishes the stage as `failed`.
    pub fn fail(&self, error: impl fmt::Display) {
        self.inner
            .finish(StepOutcome::Failed, Some(error.to_string()));
    }

    /// Finishes the stage as `skipped`.
    pub fn skip(&self) {
        self.inner.finish(StepOutcome::Skipped, None);
    }
}

impl fmt::Debug for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stage")
            .field("name", &self.inner.counter.stage)
            .field("done", &self.position())
            .finish_non_exhaustive()
    }
}

/// One unit of work of a stage. Created by [`Stage::item`].
///
/// Dropped unfinished, it reports `item.finished` with `failed`.
#[must_use = "an item dropped at once reports failed"]
pub struct Item {
    stage: Stage,
    key: ItemKey,
    /// The id spelt out, for [`Item::id`], when asked for: a numbered item's is not
    /// otherwise needed on this thread.
    id: OnceLock<String>,
    weight: Option<u64>,
    /// When `item.started` went out; `None` when nothing is reported (no sink).
    started: Option<Instant>,
    finished: bool,
}

impl Item {
    /// The item's id.
    pub fn id(&self) -> &str {
        match &self.key {
            ItemKey::Named(id) => id,
            ItemKey::Index(_) => self.id.get_or_init(|| self.key.to_string()),
        }
    }

    /// Sets the item's weight (its size in bytes, tokens, rows): when it finishes, its
    /// stage's weight done grows by it, and `item.finished` carries it.
    pub fn weight(mut self, weight: u64) -> Item {
        self.weight = Some(weight);
        self
    }

    /// Finishes the item as `succeeded`.
    pub fn finish(mut self) {
        self.end(StepOutcome::Succeeded, None);
    }

    /// Finishes the item as `failed`: shown at once.
    pub fn fail(mut self, error: impl fmt::Display) {
        self.end(StepOutcome::Failed, Some(error.to_string()));
    }

    /// Finishes the item as `skipped`.
    pub fn skip(mut self) {
        self.end(StepOutcome::Skipped, None);
    }

    fn end(&mut self, status: StepOutcome, error: Option<String>) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let stage = &self.stage.inner;
        if let Some(weight) = self.weight {
            stage.counter.weight.fetch_add(weight, Ordering::Relaxed);
        }
        stage.counter.done.fetch_add(1, Ordering::Relaxed);
        let Some(started) = self.started else {
            return;
        };
        let at = Instant::now();
        stage.run.push_item(ItemEvent {
            counter: self.stage.counter.clone(),
            at,
            item: self.key.clone(),
            what: ItemWhat::Finished {
                status,
                error,
                elapsed: at.saturating_duration_since(started),
                weight: self.weight,
            },
        });
    }
}

impl Drop for Item {
    fn drop(&mut self) {
        // Most items were finished: their drop must not build a reason for nothing.
        if !self.finished {
            self.end(StepOutcome::Failed, Some(format!("item {}", drop_reason())));
        }
    }
}

/// The iterator of [`Stage::iter`].
pub struct Items<I: Iterator, F = fn(&<I as Iterator>::Item) -> Option<String>> {
    stage: Stage,
    iter: I,
    label: F,
    index: u64,
    current: Option<Item>,
}

impl<I, F> Iterator for Items<I, F>
where
    I: Iterator,
    F: FnMut(&I::Item) -> Option<String>,
{
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        if let Some(item) = self.current.take() {
            item.finish();
        }
        let next = self.iter.next()?;
        self.index += 1;
        let label = (self.label)(&next);
        self.current = Some(self.stage.start_item(ItemKey::Index(self.index), label));
        Some(next)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.iter.size_hint()
    }
}

/// The iterator of [`Stage::try_iter`]: yields each element in an [`Attempt`].
pub struct Attempts<I: Iterator> {
    stage: Stage,
    iter: I,
    index: u64,
    /// The item in hand, shared with the [`Attempt`] the body holds; empty once the
    /// body has finished it. Dropped with the iterator (the loop left early), an item
    /// still in it reports `failed`.
    current: Option<Arc<Mutex<Option<Item>>>>,
}

impl<I: Iterator> Iterator for Attempts<I> {
    type Item = Attempt<I::Item>;

    fn next(&mut self) -> Option<Attempt<I::Item>> {
        if let Some(slot) = self.current.take() {
            end_slot(&slot, StepOutcome::Succeeded, None);
        }
        let value = self.iter.next()?;
        self.index += 1;
        let item = self.stage.start_item(ItemKey::Index(self.index), None);
        let slot = Arc::new(Mutex::new(Some(item)));
        self.current = Some(slot.clone());
        Some(Attempt { value, slot })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.iter.size_hint()
    }
}

/// Finishes the item in `slot`, if it is still there.
fn end_slot(slot: &Mutex<Option<Item>>, status: StepOutcome, error: Option<String>) {
    if let Some(mut item) = lock(slot).take() {
        item.end(status, error);
    }
}

/// One element of [`Stage::try_iter`], and the item it is reported as: the element
/// is reached through `*attempt`, the item's outcome set through the methods.
pub struct Attempt<T> {
    value: T,
    slot: Arc<Mutex<Option<Item>>>,
}

impl<T> Attempt<T> {
    /// Fails the item with the error of `res` (its `Display`) when it is an `Err`,
    /// and hands `res` back, for `?`.
    pub fn check<R, E: fmt::Display>(&self, res: Result<R, E>) -> Result<R, E> {
        if let Err(e) = &res {
            self.fail(e);
        }
        res
    }

    /// Finishes the item as `failed`, with `error`: shown at once.
    pub fn fail(&self, error: impl fmt::Display) {
        end_slot(&self.slot, StepOutcome::Failed, Some(error.to_string()));
    }

    /// Finishes the item as `skipped`.
    pub fn skip(&self) {
        end_slot(&self.slot, StepOutcome::Skipped, None);
    }

    /// The element, leaving the item to the loop (it succeeds when the loop moves on).
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T> std::ops::Deref for Attempt<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> std::ops::DerefMut for Attempt<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: fmt::Debug> fmt::Debug for Attempt<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attempt")
            .field("value", &self.value)
            .finish_non_exhaustive()
    }
}

/// A reader or writer whose bytes count as a stage's units: made by
/// [`Stage::wrap_read`] and [`Stage::wrap_write`]. It reads, writes and buffers as the
/// one it wraps, one atomic add per call.
pub struct CountedIo<T> {
    stage: Stage,
    inner: T,
}

impl<T> CountedIo<T> {
    /// The reader or writer it wraps.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The reader or writer it wraps, unwrapped.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<R: io::Read> io::Read for CountedIo<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.stage.inc(n as u64);
        Ok(n)
    }
}

impl<R: io::BufRead> io::BufRead for CountedIo<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.inner.consume(amt);
        self.stage.inc(amt as u64);
    }
}

impl<W: io::Write> io::Write for CountedIo<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.stage.inc(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<T> fmt::Debug for CountedIo<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountedIo")
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}

/// The iterator of [`Stage::wrap_iter`].
pub struct Ticks<I> {
    stage: Stage,
    iter: I,
}

impl<I: Iterator> Iterator for Ticks<I> {
    type Item = I::Item;

    #[inline]
    fn next(&mut self) -> Option<I::Item> {
        let next = self.iter.next()?;
        self.stage
            .inner
            .counter
            .done
            .fetch_add(1, Ordering::Relaxed);
        Some(next)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.iter.size_hint()
    }
}

/// A tool call in progress. Created by [`Run::tool`].
///
/// A long call can report how far it has come ([`ToolCall::progress`],
/// [`ToolCall::inc`], [`ToolCall::message`]): `progress` events with its call id, which
/// the views show on the tool's row. Dropped unfinished, it reports `tool.finished`
/// with `failed`.
#[must_use = "a tool call dropped at once reports failed"]
pub struct ToolCall {
    run: Run,
    call_id: String,
    tool: String,
    started: Instant,
    finished: bool,
    ticks: ToolTicks,
    unit: Option<String>,
}

/// A tool call's count. Unlike a stage's, it is not sampled by the background loop
/// (whose counters are stages'): the handle itself decides when a count is worth an
/// event, without reading the clock, so a tick costs an atomic add, a load and a
/// comparison. An event goes out when the count moved a percentage point of its total
/// (without a total, 1% of the count itself), or the total changed. Those events are
/// ticks like a stage's: the first dropped when a sink falls behind.
struct ToolTicks {
    done: AtomicU64,
    /// [`NO_COUNT`] until a total is known.
    total: AtomicU64,
    /// The count at which the next event is due.
    next: AtomicU64,
    /// The count last sent, or [`NO_COUNT`] before the first.
    sent: AtomicU64,
}

/// No total, or nothing sent yet, in [`ToolTicks`].
const NO_COUNT: u64 = u64::MAX;

impl ToolTicks {
    fn new() -> ToolTicks {
        ToolTicks {
            done: AtomicU64::new(0),
            total: AtomicU64::new(NO_COUNT),
            next: AtomicU64::new(0),
            sent: AtomicU64::new(NO_COUNT),
        }
    }

    fn total(&self) -> Option<u64> {
        match self.total.load(Ordering::Relaxed) {
            NO_COUNT => None,
            n => Some(n),
        }
    }
}

impl ToolCall {
    /// The call id.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Updates the call's feedback while it runs ("Reading page 2 of 5"). Sent as
    /// `tool.started` again with the same call id, which the protocol's reducer takes
    /// as new feedback for the call in flight, its start time kept (protocol.md).
    pub fn feedback(&self, feedback: &str) {
        if self.finished {
            return;
        }
        self.run.inner.emit(ToolStarted {
            call_id: self.call_id.clone(),
            tool: self.tool.clone(),
            input: None,
            feedback: Some(feedback.to_owned()),
        });
    }

    /// Sets what a unit of the call's progress is ("pages", "B").
    pub fn unit(mut self, unit: &str) -> ToolCall {
        self.unit = Some(unit.to_owned());
        self
    }

    /// Reports that `done` of `total` units are done.
    pub fn progress(&self, done: u64, total: u64) {
        let total = total.min(NO_COUNT - 1);
        let changed = self.ticks.total.swap(total, Ordering::Relaxed) != total;
        // A count lower than the last one sent is work reset: worth showing at once.
        let reset = done < self.ticks.sent.load(Ordering::Relaxed);
        self.ticks.done.store(done, Ordering::Relaxed);
        let emit = if changed || reset {
            Emit::Now
        } else {
            Emit::IfMoved
        };
        self.tick_if_due(done, emit);
    }

    /// Counts `n` more units done. Cheap enough for a tight loop: an event goes out
    /// only at each percentage point of the total (without one, each 1% the count
    /// grew).
    #[inline]
    pub fn inc(&self, n: u64) {
        let done = self
            .ticks
            .done
            .fetch_add(n, Ordering::Relaxed)
            .saturating_add(n);
        if done >= self.ticks.next.load(Ordering::Relaxed) {
            self.tick_if_due(done, Emit::IfMoved);
        }
    }

    /// Units done so far.
    pub fn position(&self) -> u64 {
        self.ticks.done.load(Ordering::Relaxed)
    }

    /// Says what the call is doing now ("Page 3 of 12"), at once, with its count.
    pub fn message(&self, message: impl Into<String>) {
        self.tick(Some(message.into()));
    }

    /// Sends the count if it moved far enough since the last one, or at once when
    /// `emit` says so (a new total).
    fn tick_if_due(&self, done: u64, emit: Emit) {
        let moved = self.ticks.sent.load(Ordering::Relaxed) != done
            && done >= self.ticks.next.load(Ordering::Relaxed);
        if emit == Emit::Now || moved {
            self.tick(None);
        }
    }

    /// Sends the current count as `progress` with the call id.
    fn tick(&self, message: Option<String>) {
        let done = self.ticks.done.load(Ordering::Relaxed);
        let total = self.ticks.total();
        // The next event is due a percentage point on: of the total, or without one,
        // of the count itself, so that a count of unknown end sends a number of events
        // that grows with its logarithm.
        let step = (total.unwrap_or(done) / 100).max(1);
        self.ticks
            .next
            .store(done.saturating_add(step), Ordering::Relaxed);
        self.ticks.sent.store(done, Ordering::Relaxed);
        let percent = total.map(|t| {
            if t == 0 {
                100.0
            } else {
                (done as f64 / t as f64 * 100.0).min(100.0)
            }
        });
        self.run.inner.emit(Progress {
            stage: None,
            call_id: Some(self.call_id.clone()),
            done,
            total,
            done_weight: None,
            total_weight: None,
            unit: self.unit.clone(),
            message,
            percent,
            rate: None,
            eta_s: None,
            eta_low_s: None,
            eta_high_s: None,
            elapsed_s: seconds(self.started.elapsed()),
        });
    }

    /// Finishes the call as `succeeded` with its output.
    pub fn finish(mut self, output: Option<Value>) {
        self.end(ToolOutcome::Succeeded, output, None);
    }

    /// Finishes the call as `failed`.
    pub fn fail(mut self, error: impl fmt::Display) {
        self.end(ToolOutcome::Failed, None, Some(error.to_string()));
    }

    fn end(&mut self, status: ToolOutcome, output: Option<Value>, error: Option<String>) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        // The last count goes out before the call ends, as a stage's does.
        let sent = self.ticks.sent.load(Ordering::Relaxed);
        if sent != NO_COUNT && sent != self.ticks.done.load(Ordering::Relaxed) {
            self.tick(None);
        }
        self.run.inner.emit(ToolFinished {
            call_id: self.call_id.clone(),
            tool: self.tool.clone(),
            status,
            output,
            error,
            elapsed_s: Some(seconds(self.started.elapsed())),
        });
    }
}

impl Drop for ToolCall {
    fn drop(&mut self) {
        if !self.finished {
            self.end(
                ToolOutcome::Failed,
                None,
                Some(format!("tool call {}", drop_reason())),
            );
        }
    }
}

/// A model call in progress. Created by [`Run::llm_call`].
///
/// Dropped unfinished, it reports `llm.response` with stop reason `error`.
#[must_use = "a model call dropped at once reports an error"]
pub struct LlmCall {
    run: Run,
    call_id: String,
    started: Instant,
    finished: bool,
}

/// What a model call returned, for [`LlmCall::finish`].
#[derive(Clone, Debug, Default)]
pub struct LlmUsage {
    /// The model that answered, when the provider names it.
    pub model: Option<String>,
    /// Why the model stopped.
    pub stop_reason: Option<String>,
    /// Prompt tokens.
    pub input_tokens: Option<u64>,
    /// Completion tokens.
    pub output_tokens: Option<u64>,
    /// Time from the request to the first streamed token.
    pub ttft: Option<Duration>,
}

impl LlmCall {
    /// The call id.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Reports streamed tokens of this call (`text.delta`).
    pub fn text(&self, text: impl Into<String>) {
        // The hot path of a streamed answer: with nowhere to report, build nothing.
        if !self.run.inner.shared.enabled() {
            return;
        }
        self.run.inner.emit(TextDelta {
            text: text.into(),
            call_id: Some(self.call_id.clone()),
        });
    }

    /// Finishes the call (`llm.response`).
    pub fn finish(mut self, usage: LlmUsage) {
        self.end(usage, None);
    }

    /// Finishes the call as failed: `llm.response` with stop reason `error` and what
    /// went wrong (shown as the run's last error). `usage` holds what is known, e.g.
    /// the tokens counted before the failure.
    pub fn fail(mut self, error: impl fmt::Display, usage: LlmUsage) {
        self.end(
            LlmUsage {
                stop_reason: Some("error".to_owned()),
                ..usage
            },
            Some(error.to_string()),
        );
    }

    fn end(&mut self, usage: LlmUsage, error: Option<String>) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        self.run.inner.emit(LlmResponse {
            call_id: self.call_id.clone(),
            model: usage.model,
            stop_reason: usage.stop_reason,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            ttft_s: usage.ttft.map(seconds),
            elapsed_s: Some(seconds(self.started.elapsed())),
            error,
        });
    }
}

impl Drop for LlmCall {
    fn drop(&mut self) {
        if !self.finished {
            self.end(
                LlmUsage {
                    stop_reason: Some("error".to_owned()),
                    ..LlmUsage::default()
                },
                Some(format!("model call {}", drop_reason())),
            );
        }
    }
}

/// Keeps heartbeats going while it lives. Created by [`Run::heartbeat_every`].
#[must_use = "heartbeats stop when the guard is dropped"]
pub struct HeartbeatGuard {
    run: Run,
    interval: Duration,
}

impl Drop for HeartbeatGuard {
    fn drop(&mut self) {
        let inner = &self.run.inner;
        inner.shared.push(Msg::Heartbeat(
            RunId::clone(&inner.id),
            self.interval,
            false,
        ));
    }
}

// Handles are shared across threads: assert it at compile time.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Run>();
    assert_send_sync::<Stage>();
    assert_send_sync::<Item>();
    assert_send_sync::<Attempt<u64>>();
    assert_send_sync::<ToolCall>();
    assert_send_sync::<LlmCall>();
};
