//! The handles a program reports through: [`Run`], [`Stage`], [`Item`], [`ToolCall`],
//! [`LlmCall`] and [`HeartbeatGuard`], and the iterator adapters.
//!
//! Handles are cheap clones around an `Arc`. Stages, items, tool and model calls are
//! guards, like a database transaction: finished explicitly on success, and when the
//! last clone is dropped unfinished (an error path, a `?`, a panic) they report
//! `failed`, never silence.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use herald_protocol::{
    AgentHistory, AgentIteration, AgentPreparingResponse, AgentResponse, AgentSystemMessage,
    ChatMessage, Custom, Draft, EventBody, ItemFinished, ItemStarted, LlmRequest, LlmResponse, Log,
    LogLevel, Progress, RunFinished, RunId, RunOutcome, RunStarted, StageFinished, StageStarted,
    StepOutcome, TextDelta, ToolFinished, ToolOutcome, ToolSelected, ToolStarted,
};
use serde_json::{Map, Value};

use crate::dispatch::{Counter, Msg, Shared, lock, now_ts};
use crate::signals::{CancelState, Cancellation};

/// A duration in seconds, to the microsecond: the precision of the protocol's times.
fn seconds(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e6
}

/// Why a handle reports `failed` when dropped unfinished.
fn drop_reason() -> String {
    if std::thread::panicking() {
        "panicked".to_owned()
    } else {
        "dropped without finishing (an early return or error path)".to_owned()
    }
}

pub(crate) struct RunInner {
    shared: Arc<Shared>,
    id: RunId,
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
}

impl Run {
    pub(crate) fn start(shared: Arc<Shared>, name: &str, options: RunOptions) -> Run {
        let id = options.id.unwrap_or_else(|| generate_run_id(name));
        let cancel = shared.signals.cancel(&id);
        let inner = Arc::new(RunInner {
            shared,
            id,
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
        let counter = Arc::new(Counter::new(self.inner.id.clone(), name.to_owned()));
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
            parent: Some(self.inner.id.clone()),
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
            .push(Msg::Heartbeat(self.inner.id.clone(), interval, true));
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

    /// Reports `custom.<name>` with the given fields. Returns `false` (and reports
    /// nothing) when `name` is not `[a-z0-9_]+` or a field uses an envelope name.
    pub fn custom(&self, name: &str, fields: Map<String, Value>) -> bool {
        match Custom::new(name, fields) {
            Some(custom) => {
                self.inner.emit(EventBody::Custom(custom));
                true
            }
            None => false,
        }
    }

    /// Reports any event.
    pub fn emit(&self, body: impl Into<EventBody>) {
        self.inner.emit(body);
    }

    /// Finishes the run as `succeeded`, and waits (up to the flush deadline) until the
    /// sinks have it.
    pub fn finish(self) {
        self.inner.finish(RunOutcome::Succeeded, None, None);
    }

    /// Finishes the run as `succeeded` with a result.
    pub fn finish_with<T: serde::Serialize + ?Sized>(self, result: &T) {
        let result = serde_json::to_value(result).ok();
        self.inner.finish(RunOutcome::Succeeded, result, None);
    }

    /// Finishes the run as `failed`.
    pub fn fail(self, error: impl fmt::Display) {
        self.inner
            .finish(RunOutcome::Failed, None, Some(error.to_string()));
    }

    /// Finishes the run as `cancelled`.
    pub fn cancelled(self, reason: Option<&str>) {
        self.inner
            .finish(RunOutcome::Cancelled, None, reason.map(str::to_owned));
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

    /// Sets what a unit is ("docs", "B"). Call before the stage is used.
    #[must_use]
    pub fn unit(self, unit: &str) -> Stage {
        let _ = self.inner.counter.unit.set(unit.to_owned());
        self
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
        self.inner.announce();
        let item = item.into();
        self.inner.run.emit(ItemStarted {
            item: item.clone(),
            stage: Some(self.inner.counter.stage.clone()),
            label: label.map(str::to_owned),
        });
        Item {
            stage: self.clone(),
            item,
            started: Instant::now(),
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
    pub fn iter<I: IntoIterator>(&self, iter: I) -> Items<I::IntoIter> {
        self.iter_labeled(iter, |_| None)
    }

    /// As [`Stage::iter`], with a label for each element.
    pub fn iter_labeled<I, F>(&self, iter: I, label: F) -> Items<I::IntoIter, F>
    where
        I: IntoIterator,
        F: FnMut(&I::Item) -> Option<String>,
    {
        self.inner.announce();
        Items {
            stage: self.clone(),
            iter: iter.into_iter(),
            label,
            index: 0,
            current: None,
        }
    }

    /// Counts each element of `iter` as one unit, without item events: the cheap
    /// adapter for large loops (indicatif's `wrap_iter`, tqdm's `tqdm(iterable)`).
    pub fn wrap_iter<I: IntoIterator>(&self, iter: I) -> Ticks<I::IntoIter> {
        self.inner.announce();
        Ticks {
            stage: self.clone(),
            iter: iter.into_iter(),
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
    item: String,
    started: Instant,
    finished: bool,
}

impl Item {
    /// The item's id.
    pub fn id(&self) -> &str {
        &self.item
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
        stage.counter.done.fetch_add(1, Ordering::Relaxed);
        stage.run.emit(ItemFinished {
            item: std::mem::take(&mut self.item),
            stage: Some(stage.counter.stage.clone()),
            status,
            error,
            elapsed_s: Some(seconds(self.started.elapsed())),
        });
    }
}

impl Drop for Item {
    fn drop(&mut self) {
        self.end(StepOutcome::Failed, Some(format!("item {}", drop_reason())));
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
        self.current = Some(
            self.stage
                .item_labeled(self.index.to_string(), label.as_deref()),
        );
        Some(next)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.iter.size_hint()
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
        self.tick_if_due(done, changed || reset);
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
            self.tick_if_due(done, false);
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

    /// Sends the count if it moved far enough since the last one; `force` sends it
    /// anyway (a new total).
    fn tick_if_due(&self, done: u64, force: bool) {
        let moved = self.ticks.sent.load(Ordering::Relaxed) != done
            && done >= self.ticks.next.load(Ordering::Relaxed);
        if force || moved {
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
            unit: self.unit.clone(),
            message,
            percent,
            rate: None,
            eta_s: None,
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
        self.end(
            ToolOutcome::Failed,
            None,
            Some(format!("tool call {}", drop_reason())),
        );
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
        self.end(
            LlmUsage {
                stop_reason: Some("error".to_owned()),
                ..LlmUsage::default()
            },
            Some(format!("model call {}", drop_reason())),
        );
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
        inner
            .shared
            .push(Msg::Heartbeat(inner.id.clone(), self.interval, false));
    }
}

// Handles are shared across threads: assert it at compile time.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Run>();
    assert_send_sync::<Stage>();
    assert_send_sync::<Item>();
    assert_send_sync::<ToolCall>();
    assert_send_sync::<LlmCall>();
};
