//! The bounded queue between the caller's threads and the background thread that
//! feeds the sinks, and that thread's loop.
//!
//! Callers push messages without ever waiting on a sink: a push takes a short lock and
//! returns. When the queue is full, ticks are refused (and counted) before milestones;
//! milestones have a larger, but still finite, bound so memory stays bounded if every
//! sink is stuck.
//!
//! `progress` counts do not travel through the queue at all: a stage's counter is a
//! pair of atomics the caller bumps, and the background loop samples the counters a
//! few times a second, folds each change into the run's state, and offers it to each
//! sink through that sink's [`Throttle`]. That is what makes a tick cost a single
//! atomic add on the caller's thread.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use herald_protocol::{
    Draft, Event, EventBody, Heartbeat, ItemFinished, ItemStarted, Log, LogLevel, Progress, RunId,
    RunOutcome, RunState, StageFinished, StepOutcome, Timestamp,
};

use crate::escape_controls;
use crate::handles::RunInner;
use crate::lock::lock;
use crate::signals::Signals;
use crate::sink::{Sink, SinkPolicy};
use crate::terminal::Console;
use crate::throttle::{Count, Throttle};

/// Queued ticks above which further ticks are dropped.
pub(crate) const TICK_CAPACITY: usize = 1024;
/// Queued messages above which even milestones are dropped.
pub(crate) const MILESTONE_CAPACITY: usize = 65_536;
/// After a milestone woke the loop, how long further milestones wait for its next turn
/// rather than wake it again: a milestone reaches the sinks within this of being
/// reported, and a program reporting thousands a second pays for a wake-up (a system
/// call, a few µs) at most this often.
pub(crate) const MILESTONE_WAKE_GAP: Duration = Duration::from_millis(5);

/// The shortest wait for a heartbeat or keep-alive the loop turns for: an interval of
/// zero (`heartbeat_every(Duration::ZERO)`) would otherwise spin it.
const SHORTEST_BEAT: Duration = Duration::from_millis(5);

/// A total that is not known, in [`Counter::total`].
const NO_TOTAL: u64 = u64::MAX;

/// The current time as a protocol timestamp.
pub(crate) fn now_ts() -> Timestamp {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    Timestamp::from_unix_micros(micros)
}

/// Seconds as events carry them: to the millisecond (protocol.md, "Numbers").
pub(crate) fn round_seconds(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}

/// A percentage as events carry it: to a tenth of a point.
fn round_percent(p: f64) -> f64 {
    (p * 10.0).round() / 10.0
}

/// A rate as events carry it: to four significant digits, which keeps a slow rate
/// (one item an hour is 0.0002778/s) as readable as a fast one.
fn round_rate(r: f64) -> f64 {
    if r == 0.0 || !r.is_finite() {
        return r;
    }
    let scale = 10f64.powi(3 - r.abs().log10().floor() as i32);
    (r * scale).round() / scale
}

/// A stage's counter, shared between its handles (which bump it) and the background
/// loop (which samples it).
#[derive(Debug)]
pub(crate) struct Counter {
    pub(crate) run: RunId,
    /// The run's parent, which every event of the run carries: the loop builds the
    /// stage's item events from the counter.
    pub(crate) parent: Option<RunId>,
    pub(crate) stage: String,
    pub(crate) done: AtomicU64,
    /// Whether `stage.started` went out: checked on every tick, so it sits beside
    /// `done` rather than behind the stage's `Once`.
    pub(crate) announced: AtomicBool,
    total: AtomicU64,
    /// Weight done (bytes, tokens, rows), for stages whose units are not equal.
    pub(crate) weight: AtomicU64,
    total_weight: AtomicU64,
    pub(crate) unit: OnceLock<String>,
    /// What the stage is doing now ([`Stage::set_message`](crate::Stage::set_message)),
    /// sent with every `progress` while set.
    pub(crate) message: Mutex<Option<String>>,
    /// When the stage started, for `elapsed_s`.
    pub(crate) started_at: OnceLock<Timestamp>,
}

impl Counter {
    pub(crate) fn new(run: RunId, parent: Option<RunId>, stage: String) -> Counter {
        Counter {
            run,
            parent,
            stage,
            done: AtomicU64::new(0),
            announced: AtomicBool::new(false),
            total: AtomicU64::new(NO_TOTAL),
            weight: AtomicU64::new(0),
            total_weight: AtomicU64::new(NO_TOTAL),
            unit: OnceLock::new(),
            message: Mutex::new(None),
            started_at: OnceLock::new(),
        }
    }

    pub(crate) fn total(&self) -> Option<u64> {
        match self.total.load(Ordering::Relaxed) {
            NO_TOTAL => None,
            n => Some(n),
        }
    }

    pub(crate) fn set_total(&self, total: u64) {
        self.total.store(total.min(NO_TOTAL - 1), Ordering::Relaxed);
    }

    pub(crate) fn total_weight(&self) -> Option<u64> {
        match self.total_weight.load(Ordering::Relaxed) {
            NO_TOTAL => None,
            n => Some(n),
        }
    }

    pub(crate) fn set_total_weight(&self, total: u64) {
        self.total_weight
            .store(total.min(NO_TOTAL - 1), Ordering::Relaxed);
    }

    /// The weight done and expected as a `progress` carries them: absent for a stage
    /// that weighs nothing. A weight done beyond the total raises the total, which
    /// the protocol requires to be at least the weight done.
    pub(crate) fn weights(&self) -> (Option<f64>, Option<f64>) {
        let done = self.weight.load(Ordering::Relaxed);
        let total = self.total_weight();
        let done_weight = (done > 0 || total.is_some()).then_some(done as f64);
        (done_weight, total.map(|t| t.max(done) as f64))
    }
}

/// What the caller's threads send to the background loop.
pub(crate) enum Msg {
    /// An event of a run (boxed: the queue holds many, and most are small). The run
    /// id is the run's own, shared: a reference count, not a copy, per event.
    Event(Arc<RunId>, Box<Draft>),
    /// An item started or finished: the events a loop of items reports for every
    /// element, so they travel as a compact record the loop's thread turns into the
    /// protocol event (see [`ItemEvent`]).
    Item(ItemEvent),
    /// Start sampling this counter (sent just after its `stage.started`).
    Track(Arc<Counter>),
    /// A heartbeat guard of this run with this interval begins (`true`) or ends.
    /// Guards nest (a model call's adapter inside a program's own), so the run keeps
    /// the intervals of every live guard and beats at the shortest.
    Heartbeat(RunId, Duration, bool),
    /// Deliver everything queued so far, flush the sinks, then answer.
    Flush(SyncSender<()>),
    /// Deliver everything queued so far, close every sink (the terminal's bars end
    /// on a line of their own) and send nothing more to any, then answer: the process
    /// is about to end.
    Shutdown(SyncSender<()>),
}

impl Msg {
    fn is_milestone(&self) -> bool {
        match self {
            Msg::Event(_, draft) => draft.body.is_milestone(),
            _ => true,
        }
    }

    /// When it happened, for messages that read the clock already.
    fn at(&self) -> Option<Instant> {
        match self {
            Msg::Item(item) => Some(item.at),
            _ => None,
        }
    }
}

/// An item's `item.started` or `item.finished`, as its handle reports it.
///
/// A loop of short items reports two of these per element, so what they cost the
/// program's thread is most of what the SDK costs it. Built as protocol events there,
/// each took half a dozen small allocations (the id, the stage's name and the run id
/// copied, the box) that the background thread then freed: a malloc and a free on
/// two threads, which glibc pays for with its arena lock and in cache misses. This
/// record allocates nothing for a numbered item (the stage, run and parent come from
/// the stage's counter, shared), reads one clock, the monotonic one, and lives inline
/// in the queue; the background thread builds the event, with its wall-clock time
/// (see [`WallClock`]).
pub(crate) struct ItemEvent {
    /// The item's stage: its run, the run's parent and the stage's name.
    pub(crate) counter: Arc<Counter>,
    /// When it happened.
    pub(crate) at: Instant,
    pub(crate) item: ItemKey,
    pub(crate) what: ItemWhat,
}

/// An item's id: a number (the adapters' `1`, `2`, ...), spelt out only by the
/// background thread, or the program's own, shared by the item's two events.
#[derive(Clone, Debug)]
pub(crate) enum ItemKey {
    Index(u64),
    Named(Arc<str>),
}

impl fmt::Display for ItemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ItemKey::Index(n) => write!(f, "{n}"),
            ItemKey::Named(id) => f.write_str(id),
        }
    }
}

/// Which of an item's events, with what only that one carries.
pub(crate) enum ItemWhat {
    Started {
        label: Option<String>,
    },
    Finished {
        status: StepOutcome,
        error: Option<String>,
        /// Since the item started, on the monotonic clock.
        elapsed: Duration,
        weight: Option<u64>,
    },
}

impl ItemEvent {
    /// The protocol event, at `ts`, and its run.
    fn into_draft(self, ts: Timestamp) -> (RunId, Draft) {
        let counter = self.counter;
        let item = self.item.to_string();
        let stage = Some(counter.stage.clone());
        let body: EventBody = match self.what {
            ItemWhat::Started { label } => ItemStarted { item, stage, label }.into(),
            ItemWhat::Finished {
                status,
                error,
                elapsed,
                weight,
            } => ItemFinished {
                item,
                stage,
                status,
                error,
                elapsed_s: Some(round_seconds(elapsed.as_secs_f64())),
                weight: weight.map(|w| w as f64),
            }
            .into(),
        };
        let draft = Draft {
            ts: Some(ts),
            id: None,
            parent: counter.parent.clone(),
            body,
        };
        (counter.run.clone(), draft)
    }
}

/// The wall clock as of one turn of the loop, to date the messages that carry only a
/// monotonic time ([`ItemEvent`]): they happened before the turn, by the monotonic
/// clock's measure, so the program's thread reads one clock per event, not two.
#[derive(Clone, Copy)]
struct WallClock {
    instant: Instant,
    ts: Timestamp,
}

impl WallClock {
    fn now() -> WallClock {
        WallClock {
            instant: Instant::now(),
            ts: now_ts(),
        }
    }

    /// The wall-clock time of `at`.
    fn ts_of(self, at: Instant) -> Timestamp {
        let before = self.instant.saturating_duration_since(at);
        Timestamp::from_unix_micros(self.ts.unix_micros() - before.as_micros() as i64)
    }
}

/// A future that resolves when the events reported before it was made have reached
/// the sinks, or at the flush deadline (5 s; for a hub, `HubOptions::flush_deadline`),
/// whichever comes first. It needs no particular async runtime: the wait happens on a
/// thread of the SDK's own. Returned by [`Run::finish_async`](crate::Run::finish_async)
/// and its siblings, and by [`Progress::flush_async`](crate::Progress::flush_async).
///
/// Dropping it does not undo anything: the run is finished either way.
#[must_use = "a future does nothing unless awaited; the run is finished either way"]
pub struct Flushed {
    state: Arc<FlushedState>,
}

#[derive(Default)]
struct FlushedState {
    done: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl FlushedState {
    fn complete(&self) {
        self.done.store(true, Ordering::Release);
        if let Some(waker) = lock(&self.waker).take() {
            waker.wake();
        }
    }
}

impl Flushed {
    /// A future already resolved: nothing was waiting to be delivered.
    pub(crate) fn ready() -> Flushed {
        let state = Arc::new(FlushedState::default());
        state.complete();
        Flushed { state }
    }
}

impl Future for Flushed {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.state.done.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        let mut waker = lock(&self.state.waker);
        // Checked again under the lock that `complete` takes, so that a completion
        // between the first check and the registration cannot be missed.
        if self.state.done.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        *waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl std::fmt::Debug for Flushed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flushed")
            .field("done", &self.state.done.load(Ordering::Acquire))
            .finish()
    }
}

/// Counts of what the SDK could not deliver, and of what a hub acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Ticks (progress, heartbeats, text deltas, debug and info logs) dropped because
    /// the queue was full.
    pub dropped_ticks: u64,
    /// Milestones dropped because the queue was full even for them.
    pub dropped_milestones: u64,
    /// Sinks disabled after an error or a panic.
    pub sink_errors: u64,
    /// Ticks a hub sink dropped because its buffer filled while the hub was away.
    pub hub_dropped_ticks: u64,
    /// Milestones a hub sink could not deliver (buffer full of milestones, or refused
    /// by the hub: bad token, run finished or deleted).
    pub hub_dropped_milestones: u64,
    /// Events a hub sink's hub acknowledged (stored, or already stored by an earlier
    /// attempt whose reply was lost): what the program may count as delivered.
    pub hub_acknowledged: u64,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Msg>,
    closed: bool,
    /// Until when a milestone does not wake the loop: set when one does. The loop's
    /// next turn comes by then, so milestones queued meanwhile wait no longer.
    quiet_until: Option<Instant>,
    /// When the loop turns next of its own accord: `None` while it waits for a
    /// message with nothing due, the time it was woken (or started working) while
    /// it works. A tick wakes it only when that turn is further off than a tick may
    /// wait.
    wake_by: Option<Instant>,
    /// Something outside the queue (a notice) wants a turn.
    nudged: bool,
    /// A flush, a shutdown or a queue half way to refusing ticks: a turn at once.
    urgent: bool,
    /// Until when what is queued waits: milestones queued within a quiet gap while
    /// the loop slept go on one turn at the gap's end.
    hold_until: Option<Instant>,
}

/// How the loop waits for its next turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    /// It turns now.
    No,
    /// Until this time, or a wake-up.
    Until(Instant),
    /// Until a wake-up: nothing is due.
    ForMessage,
}

impl Queue {
    /// Whether queuing `msg` wakes the loop at once (see [`Shared::push`]); a
    /// milestone that does opens the quiet gap `quiet_until`. A tick waits for the
    /// loop's next turn if that comes within `tick_wait`: the loop turns every
    /// `tick_wait` while it has ticks to take, so a stream of them wakes it once, not
    /// once a tick. A milestone within the gap waits for the gap's end.
    fn wakes(&mut self, msg: &Msg, now: Instant, tick_wait: Duration) -> bool {
        if matches!(msg, Msg::Flush(_) | Msg::Shutdown(_))
            || self.items.len() + 1 == TICK_CAPACITY / 2
        {
            self.urgent = true;
            self.wake_by = Some(now);
            return true;
        }
        if !msg.is_milestone() {
            let wakes = self.wake_by.is_none_or(|t| t > now + tick_wait);
            if wakes {
                self.wake_by = Some(now);
            }
            return wakes;
        }
        match self.quiet_until {
            // Within the gap a milestone goes on the turn at its end: woken, a loop
            // that sleeps past it waits for that end before it takes the queue.
            Some(end) if now < end => {
                let wakes = self.wake_by.is_none_or(|t| t > end);
                if wakes {
                    self.wake_by = Some(end);
                    self.hold_until = Some(end);
                }
                wakes
            }
            _ => {
                self.quiet_until = Some(now + MILESTONE_WAKE_GAP);
                self.wake_by = Some(now);
                true
            }
        }
    }

    /// How the loop waits, at `now`, when its next turn of its own is `next`.
    fn wait(&self, now: Instant, next: Option<Instant>) -> Wait {
        if self.closed || self.nudged || self.urgent {
            return Wait::No;
        }
        let until = if self.items.is_empty() {
            next
        } else {
            match self.hold_until {
                Some(end) => Some(end),
                None => return Wait::No,
            }
        };
        match until {
            Some(t) if t <= now => Wait::No,
            Some(t) => Wait::Until(t),
            None => Wait::ForMessage,
        }
    }
}

/// The queue proper, shared by the handles and the background loop.
#[derive(Default)]
struct Channel {
    queue: Mutex<Queue>,
    ready: Condvar,
    /// The loop's turns so far, for tests that it sleeps when idle.
    #[cfg(test)]
    turns: AtomicU64,
}

impl Channel {
    /// Gives the loop a turn for something that is not in the queue.
    fn nudge(&self) {
        let mut queue = lock(&self.queue);
        queue.nudged = true;
        queue.wake_by = Some(Instant::now());
        drop(queue);
        self.ready.notify_one();
    }
}

/// State shared by every handle of one [`Progress`](crate::Progress). Dropping the last
/// handle closes the queue and waits, up to the flush deadline, for the background
/// loop to deliver what is queued.
pub(crate) struct Shared {
    channel: Arc<Channel>,
    /// How long a tick may wait for the loop's turn: the sampling interval.
    interval: Duration,
    /// Whether any sink exists; when none does, nothing is queued at all.
    enabled: bool,
    dropped_ticks: AtomicU64,
    dropped_milestones: AtomicU64,
    sink_errors: Arc<AtomicU64>,
    worker: Mutex<Option<(JoinHandle<()>, Receiver<()>)>>,
    /// What sinks tell the program (cancel requests, hub drops).
    pub(crate) signals: Arc<Signals>,
    flush_deadline: Duration,
    /// The runs started, to finish those still open when the process is told to stop.
    runs: Mutex<Vec<Weak<RunInner>>>,
    /// The bars' screen, for the program's own output to get past them.
    pub(crate) console: Option<Console>,
}

/// Where stderr stands, for herald's own warnings and the program's lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stderr {
    /// Bars are drawn there: lines go above them.
    Bars,
    /// JSON Lines go there: only JSON may.
    Json,
    /// Nothing of herald's: a line may be written as it is.
    Free,
}

impl Shared {
    /// Starts the background loop over `sinks`, sampling counters every `interval`.
    pub(crate) fn start(
        sinks: Vec<Box<dyn Sink>>,
        signals: Arc<Signals>,
        interval: Duration,
        flush_deadline: Duration,
        console: Option<Console>,
        stderr: Stderr,
    ) -> Arc<Shared> {
        let enabled = !sinks.is_empty();
        let channel = Arc::new(Channel::default());
        let sink_errors = Arc::new(AtomicU64::new(0));
        let mut worker = None;
        if enabled {
            // An item left by a panic reports the panic's message, which the hook keeps.
            crate::panic::install();
            let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
            let loop_ = Worker {
                notices: Notices {
                    signals: signals.clone(),
                    console: console.clone(),
                    stderr,
                },
                ..Worker::new(sinks, interval, sink_errors.clone())
            };
            let ch = Arc::downgrade(&channel);
            signals.on_notice(move || {
                if let Some(ch) = ch.upgrade() {
                    ch.nudge();
                }
            });
            let ch = channel.clone();
            worker = std::thread::Builder::new()
                .name("herald-progress".into())
                .spawn(move || {
                    loop_.run(&ch);
                    let _ = done_tx.send(());
                })
                .ok()
                .map(|handle| (handle, done_rx));
        }
        Arc::new(Shared {
            channel,
            interval,
            enabled: enabled && worker.is_some(),
            dropped_ticks: AtomicU64::new(0),
            dropped_milestones: AtomicU64::new(0),
            sink_errors,
            worker: Mutex::new(worker),
            signals,
            flush_deadline,
            runs: Mutex::new(Vec::new()),
            console,
        })
    }

    /// Remembers a run that started, for [`Shared::cancel_open_runs`]. Runs whose
    /// handles are all gone are forgotten on the way, so the list holds live runs.
    pub(crate) fn track_run(&self, run: &Arc<RunInner>) {
        let mut runs = lock(&self.runs);
        runs.retain(|r| r.strong_count() > 0);
        runs.push(Arc::downgrade(run));
    }

    /// Finishes every run still open as `cancelled` with `reason`, the newest first (a
    /// sub-run before its parent), then delivers and closes the sinks within the flush
    /// deadline. Reports nothing more afterwards: for a process about to end.
    pub(crate) fn cancel_open_runs(&self, reason: &str) {
        let runs: Vec<Arc<RunInner>> = lock(&self.runs).iter().filter_map(Weak::upgrade).collect();
        for run in runs.iter().rev() {
            run.end(RunOutcome::Cancelled, None, Some(reason.to_owned()));
        }
        drop(runs);
        if !self.enabled {
            return;
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.push(Msg::Shutdown(tx));
        let _ = rx.recv_timeout(self.flush_deadline);
    }

    /// Whether anything is reported at all: without a sink, events need not be built.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Queues a message; never waits for a sink.
    pub(crate) fn push(&self, msg: Msg) {
        if !self.enabled {
            return;
        }
        let milestone = msg.is_milestone();
        let mut queue = lock(&self.channel.queue);
        if queue.closed {
            return;
        }
        let len = queue.items.len();
        if len >= MILESTONE_CAPACITY || (!milestone && len >= TICK_CAPACITY) {
            drop(queue);
            let counter = if milestone {
                &self.dropped_milestones
            } else {
                &self.dropped_ticks
            };
            counter.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Waking the loop is a system call (a few µs). A flush, which someone waits on,
        // is worth it, and so is a queue half way to refusing ticks; a milestone (an
        // item that failed, a finish) is worth it once per `MILESTONE_WAKE_GAP`, and
        // those that follow within the gap go on the turn the loop takes at its end.
        // Ticks are picked up on the loop's next turn, at most one interval (50 ms)
        // later, in a batch; a loop asleep with nothing due is woken for the first.
        let now = msg.at().unwrap_or_else(Instant::now);
        let urgent = queue.wakes(&msg, now, self.interval);
        queue.items.push_back(msg);
        drop(queue);
        if urgent {
            self.channel.ready.notify_one();
        }
    }

    /// Waits until everything queued so far has reached the sinks and they have
    /// flushed, or until the flush deadline.
    pub(crate) fn flush(&self) {
        if !self.enabled {
            return;
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        // A flush request is a milestone, so it is only refused when the queue is
        // full of milestones; then the deadline below bounds the wait.
        self.push(Msg::Flush(tx));
        let _ = rx.recv_timeout(self.flush_deadline);
    }

    /// [`Shared::flush`] as a future: the wait happens on a thread of its own, so
    /// that an async runtime's thread is never held.
    pub(crate) fn flush_async(&self) -> Flushed {
        if !self.enabled {
            return Flushed::ready();
        }
        let state = Arc::new(FlushedState::default());
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.push(Msg::Flush(tx));
        let deadline = self.flush_deadline;
        let waiter = state.clone();
        let spawned = std::thread::Builder::new()
            .name("herald-flush".into())
            .spawn(move || {
                let _ = rx.recv_timeout(deadline);
                waiter.complete();
            });
        if spawned.is_err() {
            state.complete();
        }
        Flushed { state }
    }

    pub(crate) fn stats(&self) -> Stats {
        Stats {
            dropped_ticks: self.dropped_ticks.load(Ordering::Relaxed),
            dropped_milestones: self.dropped_milestones.load(Ordering::Relaxed),
            sink_errors: self.sink_errors.load(Ordering::Relaxed),
            hub_dropped_ticks: self.signals.hub_dropped_ticks.load(Ordering::Relaxed),
            hub_dropped_milestones: self.signals.hub_dropped_milestones.load(Ordering::Relaxed),
            hub_acknowledged: self.signals.hub_acknowledged.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        lock(&self.channel.queue).closed = true;
        self.channel.ready.notify_one();
        if let Some((handle, done)) = lock(&self.worker).take() {
            // A sink stuck on a full pipe must not hang the program's exit: wait for
            // the loop to finish within the deadline, else leave it behind.
            if done.recv_timeout(self.flush_deadline).is_ok() {
                let _ = handle.join();
            }
        }
    }
}

/// One sink as the loop drives it.
struct Slot {
    sink: Box<dyn Sink>,
    policy: SinkPolicy,
    /// Whether it wants a refresh every interval ([`Sink::redraws`]).
    redraws: bool,
    alive: bool,
}

/// What one sink has been sent of one run.
#[derive(Default)]
struct SlotRun {
    seq: u64,
    last_sent: Option<Instant>,
    throttles: HashMap<String, Throttle>,
}

/// One open run, as the loop sees it.
struct RunCtx {
    state: RunState,
    counters: Vec<Arc<Counter>>,
    /// Per slot, in slot order.
    slots: Vec<SlotRun>,
    /// The intervals of the run's live heartbeat guards.
    heartbeats: Vec<Duration>,
    last_event: Instant,
    started: Instant,
}

struct Worker {
    slots: Vec<Slot>,
    runs: HashMap<RunId, RunCtx>,
    interval: Duration,
    sink_errors: Arc<AtomicU64>,
    notices: Notices,
    /// The latest `ts` sent: events are stamped when they happen, on many threads,
    /// and samples when they are taken, so a later event may carry an earlier time;
    /// it is raised to this, and every stream reads in time order.
    last_ts: Option<Timestamp>,
}

/// Where herald's own warnings go.
struct Notices {
    signals: Arc<Signals>,
    console: Option<Console>,
    stderr: Stderr,
}

impl Worker {
    fn new(sinks: Vec<Box<dyn Sink>>, interval: Duration, sink_errors: Arc<AtomicU64>) -> Worker {
        let slots = sinks
            .into_iter()
            .map(|sink| Slot {
                policy: sink.policy(),
                redraws: sink.redraws(),
                sink,
                alive: true,
            })
            .collect();
        Worker {
            slots,
            runs: HashMap::new(),
            interval,
            sink_errors,
            notices: Notices {
                signals: Arc::new(Signals::default()),
                console: None,
                stderr: Stderr::Free,
            },
            last_ts: None,
        }
    }

    /// `ts`, or the latest time already sent if that is later.
    fn in_order(&mut self, ts: Timestamp) -> Timestamp {
        let ts = self.last_ts.map_or(ts, |last| last.max(ts));
        self.last_ts = Some(ts);
        ts
    }

    /// Shows herald's own warnings: to a run's sinks as a `log` event at `warn` while
    /// the run is open (above the bars, in JSON Lines, on the hub), and on a stderr
    /// that carries neither bars nor JSON Lines as a line of its own.
    fn notices(&mut self) {
        for notice in self.notices.signals.take_notices() {
            let message = notice.message;
            let open = notice.run.filter(|run| self.runs.contains_key(run));
            let shown = match &open {
                Some(run) => {
                    let log = Log {
                        level: LogLevel::Warn,
                        message: message.clone(),
                    };
                    self.deliver(run, Draft::new(now_ts(), log), None, Instant::now());
                    self.notices.stderr == Stderr::Bars
                }
                None => match &self.notices.console {
                    Some(console) => console.println(&escape_controls(&message)).is_ok(),
                    None => false,
                },
            };
            if !shown && self.notices.stderr == Stderr::Free {
                eprintln!("{}", escape_controls(&message));
            }
        }
    }

    /// The loop: waits until it has something to do (a message, the end of a
    /// milestone's quiet gap, or what [`Worker::next_turn`] says is due), then
    /// delivers, samples, sends what is due and flushes. An idle program's loop
    /// sleeps: a thousand of them must not cost a thousand wake-ups every interval.
    fn run(mut self, channel: &Channel) {
        let mut batch = Vec::new();
        let mut next = None;
        loop {
            let closed = {
                let mut queue = lock(&channel.queue);
                loop {
                    let now = Instant::now();
                    queue = match queue.wait(now, next) {
                        Wait::No => break,
                        Wait::Until(t) => {
                            queue.wake_by = Some(t);
                            let waited = channel.ready.wait_timeout(queue, t - now);
                            waited.unwrap_or_else(|e| e.into_inner()).0
                        }
                        Wait::ForMessage => {
                            queue.wake_by = None;
                            channel.ready.wait(queue).unwrap_or_else(|e| e.into_inner())
                        }
                    };
                }
                // While it works, what is queued is taken on its next turn: no wake-up.
                queue.wake_by = Some(Instant::now());
                queue.nudged = false;
                queue.urgent = false;
                queue.hold_until = None;
                batch.extend(queue.items.drain(..));
                queue.closed
            };
            #[cfg(test)]
            channel.turns.fetch_add(1, Ordering::Relaxed);
            let wall = WallClock::now();
            let ticks = batch.iter().any(|msg| !msg.is_milestone());
            for msg in batch.drain(..) {
                self.handle(msg, wall);
            }
            self.notices();
            self.sample(Instant::now(), None, None);
            self.keepalive(Instant::now());
            let now = now_ts();
            self.each_sink(|sink| {
                sink.refresh(now)?;
                sink.flush()
            });
            if closed {
                break;
            }
            next = self.next_turn(Instant::now(), ticks);
        }
        self.each_sink(|sink| sink.close());
    }

    /// When the loop must turn again though no message comes: the next sample while
    /// a stage's count may move (a tracked counter), or while ticks are coming in
    /// (`ticks`: the last turn took some), so that they go in batches; the next
    /// refresh of a sink that redraws; the next heartbeat or keep-alive due. `None`
    /// when nothing is due until a message comes.
    fn next_turn(&self, now: Instant, ticks: bool) -> Option<Instant> {
        let periodic = ticks
            || self.slots.iter().any(|slot| slot.alive && slot.redraws)
            || self.runs.values().any(|ctx| !ctx.counters.is_empty());
        let mut next = periodic.then(|| now + self.interval);
        for ctx in self.runs.values() {
            if let Some(&every) = ctx.heartbeats.iter().min() {
                next = earliest(next, Some(ctx.last_event + every.max(SHORTEST_BEAT)));
            }
            for (slot, sent) in self.slots.iter().zip(&ctx.slots) {
                if let (true, Some(every)) = (slot.alive, slot.policy.keepalive) {
                    let last = sent.last_sent.unwrap_or(ctx.started);
                    next = earliest(next, Some(last + every.max(SHORTEST_BEAT)));
                }
            }
        }
        next
    }

    fn handle(&mut self, msg: Msg, wall: WallClock) {
        match msg {
            Msg::Event(run, draft) => self.event(&run, *draft),
            Msg::Item(item) => {
                let ts = wall.ts_of(item.at);
                let (run, draft) = item.into_draft(ts);
                self.event(&run, draft);
            }
            Msg::Track(counter) => {
                let run = counter.run.clone();
                self.ctx(&run).counters.push(counter);
            }
            Msg::Heartbeat(run, every, true) => self.ctx(&run).heartbeats.push(every),
            Msg::Heartbeat(run, every, false) => {
                let beats = &mut self.ctx(&run).heartbeats;
                if let Some(pos) = beats.iter().position(|d| *d == every) {
                    beats.swap_remove(pos);
                }
            }
            Msg::Flush(done) => {
                self.sample(Instant::now(), None, None);
                self.each_sink(|sink| sink.flush());
                let _ = done.try_send(());
            }
            Msg::Shutdown(done) => {
                self.sample(Instant::now(), None, None);
                self.each_sink(|sink| sink.close());
                for slot in &mut self.slots {
                    slot.alive = false;
                }
                let _ = done.try_send(());
            }
        }
    }

    fn ctx(&mut self, run: &RunId) -> &mut RunCtx {
        let slots = self.slots.len();
        self.runs.entry(run.clone()).or_insert_with(|| RunCtx {
            state: RunState::new(run.clone()),
            counters: Vec::new(),
            slots: (0..slots).map(|_| SlotRun::default()).collect(),
            heartbeats: Vec::new(),
            last_event: Instant::now(),
            started: Instant::now(),
        })
    }

    fn event(&mut self, run: &RunId, draft: Draft) {
        let now = Instant::now();
        // A stage's (or the run's) last count goes out before it finishes.
        match &draft.body {
            // Its last count is the count as of its finish, and carries that time.
            EventBody::StageFinished(StageFinished { stage, .. }) => {
                self.sample(now, Some((run, Some(stage.as_str()))), draft.ts);
                self.ctx(run).counters.retain(|c| &c.stage != stage);
            }
            EventBody::RunFinished(_) => self.sample(now, Some((run, None)), draft.ts),
            _ => {}
        }
        let finished = matches!(draft.body, EventBody::RunFinished(_));
        self.deliver(run, draft, None, now);
        if finished {
            self.runs.remove(run);
        }
    }

    /// Folds `draft` into its run's state and sends it to every sink, or to `only`.
    fn deliver(&mut self, run: &RunId, draft: Draft, only: Option<usize>, now: Instant) {
        let ts = self.in_order(draft.ts.unwrap_or_else(now_ts));
        let ctx = self.ctx(run);
        ctx.last_event = now;
        let master = Draft {
            ts: Some(ts),
            ..draft
        }
        .stamp(run.clone(), ctx.state.last_seq + 1, ts);
        if only.is_none() {
            ctx.state.apply(&master);
        }
        let Some(ctx) = self.runs.get_mut(run) else {
            return;
        };
        let errors = &self.sink_errors;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if !slot.alive || only.is_some_and(|o| o != i) {
                continue;
            }
            let slot_run = &mut ctx.slots[i];
            slot_run.seq += 1;
            slot_run.last_sent = Some(now);
            let event = Event {
                seq: slot_run.seq,
                ..master.clone()
            };
            call_sink(slot, errors, |sink| sink.event(&event, &ctx.state));
        }
    }

    /// Samples counters (all, or those of one run and stage) and offers each change to
    /// each sink through its throttle. A sample for a finishing stage is forced out.
    fn sample(
        &mut self,
        now: Instant,
        only: Option<(&RunId, Option<&str>)>,
        at: Option<Timestamp>,
    ) {
        let force = only.is_some();
        let runs: Vec<RunId> = match only {
            Some((run, _)) => vec![run.clone()],
            None => self.runs.keys().cloned().collect(),
        };
        for run in runs {
            let Some(ctx) = self.runs.get_mut(&run) else {
                continue;
            };
            let counters: Vec<Arc<Counter>> = ctx
                .counters
                .iter()
                .filter(|c| only.is_none_or(|(_, stage)| stage.is_none_or(|s| s == c.stage)))
                .cloned()
                .collect();
            for counter in counters {
                self.sample_counter(&run, &counter, now, force, at);
            }
        }
    }

    /// Samples one counter and offers the change to each sink; `at` is the time of
    /// the finish a forced sample precedes.
    fn sample_counter(
        &mut self,
        run: &RunId,
        counter: &Counter,
        now: Instant,
        force: bool,
        at: Option<Timestamp>,
    ) {
        if !self.runs.contains_key(run) {
            return;
        }
        let done = counter.done.load(Ordering::Relaxed);
        let total = counter.total();
        let unit = counter.unit.get();
        let (done_weight, total_weight) = counter.weights();
        let message = lock(&counter.message).clone();
        let Some(ctx) = self.runs.get(run) else {
            return;
        };
        let current = ctx.state.stages.iter().find(|s| s.name == counter.stage);
        let unchanged = |s: &&herald_protocol::StageState| {
            s.progress.done == done
                && s.progress.total == total
                && s.progress.done_weight >= done_weight
                && s.progress.total_weight == total_weight
                && s.progress.unit.as_ref() == unit
                && s.progress.message == message
        };
        if current.is_some_and(|s| unchanged(&s)) && !force {
            return;
        }
        // A message taken back is sent as an empty one, which clears it.
        let cleared = current.is_some_and(|s| s.progress.message.is_some());
        let message = message.or_else(|| cleared.then(String::new));
        let ts = self.in_order(at.unwrap_or_else(now_ts));
        let Some(ctx) = self.runs.get_mut(run) else {
            return;
        };
        let started = counter.started_at.get().copied().unwrap_or(ts);
        let mut progress = Progress {
            stage: Some(counter.stage.clone()),
            call_id: None,
            done,
            total,
            done_weight,
            total_weight,
            unit: counter.unit.get().cloned(),
            percent: None,
            rate: None,
            eta_s: None,
            eta_low_s: None,
            eta_high_s: None,
            elapsed_s: round_seconds(ts.seconds_since(started).max(0.0)),
            // Every tick carries it while it is set, so that a sink whose throttle
            // skipped the tick where it changed still gets it.
            message,
        };
        // Fold the raw count first, then send it annotated with what the state made
        // of it: every sink and every later fold sees the same rate and ETA.
        let master =
            Draft::new(ts, progress.clone()).stamp(run.clone(), ctx.state.last_seq + 1, ts);
        ctx.state.apply(&master);
        ctx.last_event = now;
        if let Some(stage) = ctx.state.stages.iter().find(|s| s.name == counter.stage) {
            progress.percent = stage.progress.percent.map(round_percent);
            progress.rate = stage.progress.rate.map(round_rate);
            progress.eta_s = stage.progress.eta_s.map(round_seconds);
            progress.eta_low_s = stage.progress.eta_low_s.map(round_seconds);
            progress.eta_high_s = stage.progress.eta_high_s.map(round_seconds);
        }
        let errors = &self.sink_errors;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if !slot.alive {
                continue;
            }
            let slot_run = &mut ctx.slots[i];
            let throttle = slot_run.throttles.entry(counter.stage.clone()).or_default();
            let count = Count {
                done,
                total,
                done_weight,
                percent: progress.percent,
            };
            if !throttle.due(&slot.policy, now, &count, force) {
                continue;
            }
            throttle.sent(now, count);
            slot_run.seq += 1;
            slot_run.last_sent = Some(now);
            let event = Draft::new(ts, progress.clone()).stamp(run.clone(), slot_run.seq, ts);
            call_sink(slot, errors, |sink| sink.event(&event, &ctx.state));
        }
    }

    /// Heartbeats: for runs whose heartbeat guard is up and that have been silent for
    /// its interval, to every sink; and keep-alives for sinks that asked for them.
    fn keepalive(&mut self, now: Instant) {
        let mut due: Vec<(RunId, Option<usize>)> = Vec::new();
        for (run, ctx) in &self.runs {
            if let Some(&every) = ctx.heartbeats.iter().min() {
                if now.saturating_duration_since(ctx.last_event) >= every {
                    due.push((run.clone(), None));
                    continue;
                }
            }
            for (i, slot) in self.slots.iter().enumerate() {
                let Some(every) = slot.policy.keepalive else {
                    continue;
                };
                let last = ctx.slots[i].last_sent.unwrap_or(ctx.started);
                if slot.alive && now.saturating_duration_since(last) >= every {
                    due.push((run.clone(), Some(i)));
                }
            }
        }
        for (run, only) in due {
            let elapsed_s = self
                .runs
                .get(&run)
                .map_or(0.0, |c| round_seconds(c.started.elapsed().as_secs_f64()));
            let note = self
                .runs
                .get(&run)
                .and_then(|c| c.state.heartbeat_note.clone());
            let draft = Draft::new(now_ts(), Heartbeat { elapsed_s, note });
            self.deliver(&run, draft, only, now);
        }
    }

    fn each_sink(&mut self, mut f: impl FnMut(&mut dyn Sink) -> std::io::Result<()>) {
        for slot in &mut self.slots {
            if slot.alive {
                call_sink(slot, &self.sink_errors, &mut f);
            }
        }
    }
}

/// The earlier of two times, `None` being never.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Calls a sink, disabling it if it fails or panics.
fn call_sink(
    slot: &mut Slot,
    errors: &AtomicU64,
    f: impl FnOnce(&mut dyn Sink) -> std::io::Result<()>,
) {
    let sink = &mut *slot.sink;
    let ok = matches!(catch_unwind(AssertUnwindSafe(|| f(sink))), Ok(Ok(())));
    if !ok {
        slot.alive = false;
        errors.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::{Receiver, Sender, channel};

    use super::*;

    /// A sink that passes each event's log message on.
    struct Messages(Sender<String>);

    impl Sink for Messages {
        fn event(&mut self, event: &Event, _state: &RunState) -> std::io::Result<()> {
            if let EventBody::Log(log) = &event.body {
                let _ = self.0.send(log.message.clone());
            }
            Ok(())
        }
    }

    fn log_msg(run: &RunId, level: LogLevel, message: &str) -> Msg {
        let log = Log {
            level,
            message: message.into(),
        };
        Msg::Event(Arc::new(run.clone()), Box::new(Draft::new(now_ts(), log)))
    }

    fn log(shared: &Shared, run: &RunId, level: LogLevel, message: &str) {
        shared.push(log_msg(run, level, message));
    }

    /// A loop whose turn comes once a minute: only a wake-up delivers sooner.
    fn slow_loop() -> (Arc<Shared>, Receiver<String>) {
        let (tx, rx) = channel();
        let shared = Shared::start(
            vec![Box::new(Messages(tx))],
            Arc::new(Signals::default()),
            Duration::from_secs(60),
            Duration::from_secs(5),
            None,
            Stderr::Free,
        );
        (shared, rx)
    }

    #[test]
    fn a_milestone_wakes_the_loop_and_ticks_wait_for_a_turn() {
        let (shared, rx) = slow_loop();
        let run = RunId::new("r").unwrap();
        log(&shared, &run, LogLevel::Info, "tick");
        log(&shared, &run, LogLevel::Error, "failed");
        // The error wakes it; the tick queued before it goes along.
        let deadline = Duration::from_secs(5);
        assert_eq!(rx.recv_timeout(deadline).unwrap(), "tick");
        assert_eq!(rx.recv_timeout(deadline).unwrap(), "failed");
        // Milestones in the gap after a wake-up do not wake the loop, but the turn at
        // the gap's end takes them, not the next minute's.
        log(&shared, &run, LogLevel::Warn, "second");
        log(&shared, &run, LogLevel::Warn, "third");
        assert_eq!(rx.recv_timeout(deadline).unwrap(), "second");
        assert_eq!(rx.recv_timeout(deadline).unwrap(), "third");
    }

    #[test]
    fn an_item_event_is_dated_by_its_age_on_the_monotonic_clock() {
        let wall = WallClock {
            instant: Instant::now(),
            ts: Timestamp::from_unix_micros(1_700_000_000_000_000),
        };
        let earlier = wall.instant.checked_sub(Duration::from_micros(1_500));
        let ts = wall.ts_of(earlier.expect("the monotonic clock is past 1.5 ms"));
        assert_eq!(ts.unix_micros(), 1_700_000_000_000_000 - 1_500);
        // A message is never dated after the turn that reads it.
        assert_eq!(wall.ts_of(wall.instant + Duration::from_secs(1)), wall.ts);
    }

    #[test]
    fn an_item_record_becomes_the_event_a_handle_would_have_built() {
        let run = RunId::new("r").unwrap();
        let parent = RunId::new("p").unwrap();
        let counter = Arc::new(Counter::new(run.clone(), Some(parent.clone()), "s".into()));
        let ts = now_ts();
        let started = ItemEvent {
            counter: counter.clone(),
            at: Instant::now(),
            item: ItemKey::Index(42),
            what: ItemWhat::Started { label: None },
        };
        let (to, draft) = started.into_draft(ts);
        assert_eq!(to, run);
        assert_eq!(draft.ts, Some(ts));
        assert_eq!(draft.parent, Some(parent));
        let EventBody::ItemStarted(body) = draft.body else {
            panic!("not item.started: {:?}", draft.body);
        };
        assert_eq!(
            (body.item.as_str(), body.stage.as_deref()),
            ("42", Some("s"))
        );
        let finished = ItemEvent {
            counter,
            at: Instant::now(),
            item: ItemKey::Named("doc-7".into()),
            what: ItemWhat::Finished {
                status: StepOutcome::Failed,
                error: Some("bad".into()),
                elapsed: Duration::from_micros(1_234_567),
                weight: Some(3),
            },
        };
        let EventBody::ItemFinished(body) = finished.into_draft(ts).1.body else {
            panic!("not item.finished");
        };
        assert_eq!(body.item, "doc-7");
        assert_eq!(body.elapsed_s, Some(1.235));
        assert_eq!(body.weight, Some(3.0));
        assert_eq!(body.error.as_deref(), Some("bad"));
    }

    #[test]
    fn a_tick_wakes_only_a_loop_not_turning_soon_and_milestones_once_a_gap() {
        let run = RunId::new("r").unwrap();
        let tick = || log_msg(&run, LogLevel::Info, "tick");
        let error = log_msg(&run, LogLevel::Error, "failed");
        let interval = Duration::from_millis(50);
        let t0 = Instant::now();
        // A loop asleep with nothing due is woken by the first tick, not the next.
        let mut queue = Queue::default();
        assert!(queue.wakes(&tick(), t0, interval));
        assert_eq!(queue.wake_by, Some(t0));
        assert!(!queue.wakes(&tick(), t0, interval));
        // A loop turning within the interval takes a tick then; one turning later is
        // woken for it.
        queue.wake_by = Some(t0 + interval);
        assert!(!queue.wakes(&tick(), t0, interval));
        queue.wake_by = Some(t0 + Duration::from_secs(10));
        assert!(queue.wakes(&tick(), t0, interval));
        assert_eq!(queue.quiet_until, None);
        // The first milestone wakes it and opens the gap...
        assert!(queue.wakes(&error, t0, interval));
        assert_eq!(queue.quiet_until, Some(t0 + MILESTONE_WAKE_GAP));
        // ... in which the next ones do not; after it, one does again.
        let mid = t0 + MILESTONE_WAKE_GAP / 2;
        assert!(!queue.wakes(&error, mid, interval));
        queue
            .items
            .push_back(log_msg(&run, LogLevel::Error, "failed"));
        assert_eq!(queue.wait(mid, None), Wait::No, "taken on the next turn");
        // A loop that went to sleep within the gap is woken by the next milestone,
        // once, and holds it until the gap's end; an empty turn at every gap's end
        // would double a sparse program's wake-ups.
        queue.items.clear();
        queue.wake_by = None;
        let end = t0 + MILESTONE_WAKE_GAP;
        assert!(queue.wakes(&error, mid, interval));
        queue
            .items
            .push_back(log_msg(&run, LogLevel::Error, "failed"));
        assert!(!queue.wakes(&error, mid, interval));
        assert!(!queue.wakes(&tick(), mid, interval));
        assert_eq!(queue.wait(mid, None), Wait::Until(end));
        assert_eq!(queue.wait(end, None), Wait::No);
        // A flush is not held.
        assert!(queue.wakes(
            &Msg::Flush(std::sync::mpsc::sync_channel(1).0),
            mid,
            interval
        ));
        assert_eq!(queue.wait(mid, None), Wait::No);
        let mut queue = Queue {
            quiet_until: Some(end),
            ..Queue::default()
        };
        let later = t0 + MILESTONE_WAKE_GAP;
        assert!(queue.wakes(&error, later, interval));
        assert_eq!(queue.quiet_until, Some(later + MILESTONE_WAKE_GAP));
        // A queue half way to refusing ticks wakes it, even for a tick.
        while queue.items.len() < TICK_CAPACITY / 2 - 1 {
            queue.items.push_back(tick());
        }
        assert!(queue.wakes(&tick(), later, interval));
    }

    /// A sink that passes every event on, with a chosen policy, and counts refreshes.
    struct Probe {
        events: Sender<Event>,
        policy: SinkPolicy,
        redraws: bool,
        refreshes: Arc<AtomicU64>,
    }

    impl Sink for Probe {
        fn event(&mut self, event: &Event, _state: &RunState) -> std::io::Result<()> {
            let _ = self.events.send(event.clone());
            Ok(())
        }

        fn policy(&self) -> SinkPolicy {
            self.policy
        }

        fn redraws(&self) -> bool {
            self.redraws
        }

        fn refresh(&mut self, _now: Timestamp) -> std::io::Result<()> {
            self.refreshes.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }

    struct Probed {
        shared: Arc<Shared>,
        events: Receiver<Event>,
        refreshes: Arc<AtomicU64>,
        run: RunId,
    }

    impl Probed {
        /// A loop sampling every `interval` over one [`Probe`], with a run open (its
        /// first event, a warning, delivered).
        fn start(interval: Duration, policy: SinkPolicy, redraws: bool) -> Probed {
            let (tx, events) = channel();
            let refreshes = Arc::new(AtomicU64::new(0));
            let probe = Probe {
                events: tx,
                policy,
                redraws,
                refreshes: refreshes.clone(),
            };
            let shared = Shared::start(
                vec![Box::new(probe)],
                Arc::new(Signals::default()),
                interval,
                Duration::from_secs(5),
                None,
                Stderr::Free,
            );
            let probed = Probed {
                shared,
                events,
                refreshes,
                run: RunId::new("r").unwrap(),
            };
            log(&probed.shared, &probed.run, LogLevel::Warn, "open");
            probed.next(|body| matches!(body, EventBody::Log(_)));
            probed
        }

        fn turns(&self) -> u64 {
            self.shared.channel.turns.load(Ordering::Relaxed)
        }

        /// The loop's turns while this thread waits `wait`: for what must not happen,
        /// so `wait` is the longest the test gives it.
        fn turns_during(&self, wait: Duration) -> u64 {
            let before = self.turns();
            std::thread::sleep(wait);
            self.turns() - before
        }

        /// The next event that `wanted`, within 5 s.
        #[track_caller]
        fn next(&self, wanted: impl Fn(&EventBody) -> bool) -> Event {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.events.recv_timeout(left) {
                    Ok(event) if wanted(&event.body) => return event,
                    Ok(_) => {}
                    Err(e) => panic!("no such event within 5 s: {e}"),
                }
            }
        }
    }

    fn heartbeat(body: &EventBody) -> bool {
        matches!(body, EventBody::Heartbeat(_))
    }

    #[test]
    fn an_idle_loop_sleeps_instead_of_turning_every_interval() {
        let interval = Duration::from_millis(5);
        let probed = Probed::start(interval, SinkPolicy::default(), false);
        // Sixty intervals with nothing to do: nothing moves, no keep-alive is due
        // (10 s) and the sink does not redraw.
        let turns = probed.turns_during(interval * 60);
        assert!(turns <= 2, "{turns} turns in 60 idle intervals");
    }

    #[test]
    fn a_sparse_milestone_costs_one_turn_not_one_more_at_its_gap_s_end() {
        let probed = Probed::start(Duration::from_secs(60), SinkPolicy::every_tick(), false);
        // Past the gap the first milestone opened (these waits only space the
        // milestones out, as a program reporting a few a second does).
        std::thread::sleep(MILESTONE_WAKE_GAP * 4);
        let before = probed.turns();
        for i in 0..5 {
            log(
                &probed.shared,
                &probed.run,
                LogLevel::Warn,
                &format!("m{i}"),
            );
            probed.next(|body| matches!(body, EventBody::Log(_)));
            std::thread::sleep(MILESTONE_WAKE_GAP * 4);
        }
        assert_eq!(probed.turns() - before, 5);
    }

    #[test]
    fn an_idle_loop_wakes_for_a_tick_a_notice_and_a_moving_count() {
        // A loop whose sampling interval is a minute: only a wake-up delivers sooner.
        let probed = Probed::start(Duration::from_secs(60), SinkPolicy::every_tick(), false);
        let run = probed.run.clone();
        // Past the quiet gap the last milestone opened, whose end is a turn, the loop
        // is asleep (these waits only make the test stricter).
        std::thread::sleep(MILESTONE_WAKE_GAP * 4);
        log(&probed.shared, &run, LogLevel::Info, "tick");
        probed.next(|body| matches!(body, EventBody::Log(log) if log.message == "tick"));
        std::thread::sleep(MILESTONE_WAKE_GAP * 4);
        probed.shared.signals.notice(Some(&run), "hub away".into());
        probed.next(|body| matches!(body, EventBody::Log(log) if log.message == "hub away"));
        // A tracked counter is sampled every interval while its stage is live.
        let probed = Probed::start(Duration::from_millis(5), SinkPolicy::every_tick(), false);
        let counter = Arc::new(Counter::new(probed.run.clone(), None, "s".into()));
        probed.shared.push(Msg::Track(counter.clone()));
        for done in [3, 7] {
            counter.done.store(done, Ordering::Relaxed);
            probed.next(|body| matches!(body, EventBody::Progress(p) if p.done == done));
        }
    }

    #[test]
    fn keepalives_and_heartbeats_arrive_when_due_not_at_the_next_interval() {
        let interval = Duration::from_secs(60);
        let policy = SinkPolicy {
            keepalive: Some(Duration::from_millis(20)),
            ..SinkPolicy::default()
        };
        let probed = Probed::start(interval, policy, false);
        for _ in 0..3 {
            probed.next(heartbeat);
        }
        // A heartbeat guard beats for every sink, keep-alives or not.
        let probed = Probed::start(interval, SinkPolicy::every_tick(), false);
        let every = Duration::from_millis(20);
        probed
            .shared
            .push(Msg::Heartbeat(probed.run.clone(), every, true));
        for _ in 0..3 {
            probed.next(heartbeat);
        }
    }

    #[test]
    fn a_heartbeat_of_no_interval_does_not_spin_the_loop() {
        let probed = Probed::start(Duration::from_secs(60), SinkPolicy::every_tick(), false);
        let run = probed.run.clone();
        probed
            .shared
            .push(Msg::Heartbeat(run, Duration::ZERO, true));
        probed.next(heartbeat);
        let turns = probed.turns_during(SHORTEST_BEAT * 20);
        assert!(turns <= 25, "{turns} turns in 20 of the shortest beats");
    }

    #[test]
    fn a_sink_that_redraws_is_refreshed_every_interval() {
        let probed = Probed::start(Duration::from_millis(5), SinkPolicy::every_tick(), true);
        let deadline = Instant::now() + Duration::from_secs(5);
        while probed.refreshes.load(Ordering::Relaxed) < 20 {
            assert!(Instant::now() < deadline, "not refreshed 20 times in 5 s");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
