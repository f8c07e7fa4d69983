//! The hub sink: batches a program's events to a herald hub
//! (`POST /v1/runs/{id}/events`), without ever holding the program up.
//!
//! Events wait in a bounded outbox that a sender thread of the sink's own drains, in
//! batches, with retries (exponential backoff with jitter) while the hub is down or
//! overloaded. Every event carries an idempotency `id` (this sink's session and the
//! event's `seq` on this sink's stream), so a retried batch whose reply was lost is
//! acknowledged as duplicates by the hub and never stored twice.
//!
//! An event is encoded to JSON once, when it enters the outbox, and a request's body is
//! those encodings joined: a retry copies bytes, it does not clone and encode its batch
//! again. The outbox is bounded in bytes, [`OUTBOX_BYTES`] (8 MiB: the events' JSON and
//! the bookkeeping of each, some 40,000 item events), not in events, so that a burst of
//! milestones larger than a hub takes in the same moment (12,000 item events in 50 ms)
//! waits for it whole while the hub is reachable, and the memory a hub that is away
//! costs stays bounded. While a backlog waits, a request carries up to [`BATCH`] events
//! (the hub's default `max_batch`) and [`BATCH_BYTES`] of body (a quarter of its default
//! body limit); a `413` halves the count. When the outbox is full, ticks go first (the
//! oldest queued tick, not one being sent, makes room for a milestone); what is dropped
//! is counted in [`Stats`](crate::Stats).
//!
//! The run is created on the hub (`POST /v1/runs`) from its `run.started`, with the
//! configured token (the hub's admin token, or none on an open hub), and appended to
//! with the write token the hub returns. With [`HubOptions::attach`], the events of the
//! program's first run go to an existing run instead (`herald exec` hands its run to
//! the command through `HERALD_RUN` and `HERALD_TOKEN`): the sink then neither
//! creates nor finishes that run, whose owner does; the program's own finish is
//! reported as a `log` line.
//!
//! Append replies carry `cancel_requested`, and once a run is on the hub a thread of
//! its own follows its cancel state with long polls (`GET /v1/runs/{id}/events
//! ?types=run.cancel_requested&wait=20`), so that a run that reports nothing still
//! hears a cancel at once; the sink passes it on to
//! [`Run::cancellation`](crate::Run::cancellation).

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use herald_protocol::api::{Appended, CreateRun, Created, ErrorBody, EventsPage};
use herald_protocol::{
    Draft, Event, EventBody, Log, LogLevel, RunId, RunOutcome, RunStarted, RunState,
};

use crate::lock::lock;
use crate::signals::Signals;
use crate::sink::{Sink, SinkPolicy};

/// Bytes the outbox holds at most (each event's JSON and [`Pending::size`]'s
/// bookkeeping): what a hub that is away may cost the program's memory.
const OUTBOX_BYTES: usize = 8 * 1024 * 1024;
/// Events sent in one request at most: the hub's default `max_batch`.
const BATCH: usize = 1000;
/// Bytes of one request's body at most (but never less than one event): a quarter of
/// the hub's default body limit, so that a request stays short.
const BATCH_BYTES: usize = 1024 * 1024;
/// First and longest wait between retries.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one long poll for a run's cancel request waits on the hub (at most the
/// hub's 60): a connection held per open run, renewed this often.
const CANCEL_POLL: Duration = Duration::from_secs(20);

/// Where and how to report to a hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubOptions {
    /// The hub's base URL, e.g. `http://127.0.0.1:7311`.
    pub url: String,
    /// The token: the hub's admin token to create runs, or (with `attach`) a run's
    /// write token. `None` on an open hub.
    pub token: Option<String>,
    /// Report the program's first run into this existing run instead of creating one.
    pub attach: Option<RunId>,
    /// How long finishing a run waits for the hub to take its last events.
    pub flush_deadline: Duration,
}

impl HubOptions {
    /// Options for a hub at `url`, creating runs with `token`.
    pub fn new(url: &str, token: Option<&str>) -> HubOptions {
        HubOptions {
            url: url.trim_end_matches('/').to_owned(),
            token: token.map(str::to_owned),
            attach: None,
            flush_deadline: Duration::from_secs(5),
        }
    }

    /// `HERALD_URL`, `HERALD_TOKEN` and `HERALD_RUN`, when `HERALD_URL` is set.
    pub fn from_env() -> Option<HubOptions> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut options = HubOptions::new(&var("HERALD_URL")?, var("HERALD_TOKEN").as_deref());
        options.attach = var("HERALD_RUN").and_then(|r| RunId::new(r).ok());
        Some(options)
    }
}

/// One event waiting for the hub.
struct Pending {
    /// The event's draft as JSON, encoded once when it was queued; shared with the
    /// request that carries it.
    json: Arc<str>,
    milestone: bool,
}

impl Pending {
    /// What the event counts against [`OUTBOX_BYTES`]: its JSON, and its slot and the
    /// `Arc`'s counts.
    fn size(&self) -> usize {
        self.json.len() + size_of::<Pending>() + 2 * size_of::<usize>()
    }
}

/// What the sink still has to do for one run.
struct RunQueue {
    id: RunId,
    /// The body of `POST /v1/runs`, until the hub has the run.
    create: Option<CreateRun>,
    /// The run's write token, once the hub gave it.
    write_token: Option<String>,
    events: VecDeque<Pending>,
    /// The first events of `events` that the request in flight carries: they are
    /// acknowledged or sent again together, so no tick among them is evicted.
    in_flight: usize,
    /// The first events of `events` known to be milestones: where the next search for a
    /// tick to evict starts, so that a full outbox is not scanned once per event.
    milestones_before: usize,
    /// A `run.finished` is queued: finishing waits for the queue to drain.
    finishing: bool,
}

#[derive(Default)]
struct OutboxState {
    runs: Vec<RunQueue>,
    queued: usize,
    /// Of `queued`, the ticks, counted apart when the sink closes with events left.
    ticks: usize,
    /// What the queued events count against [`OUTBOX_BYTES`], and of it, the ticks'.
    bytes: usize,
    tick_bytes: usize,
    /// No more events will come: send what is left, then stop.
    closing: bool,
    /// Give up: stop without sending the rest.
    abandon: bool,
    /// Earliest time of the next attempt, while the hub is failing.
    retry_at: Option<Instant>,
    /// The hub has answered a request (whatever it said).
    reached: bool,
    /// Requests that got no answer at all (no connection, no reply).
    unanswered: u64,
    /// Events per request; halved when the hub says a batch is too large.
    batch: usize,
}

impl OutboxState {
    /// The last request is over: what it carried and the hub did not take is sent
    /// again, and its ticks may make room again, so the search for one starts over.
    fn request_over(&mut self) {
        for run in &mut self.runs {
            run.in_flight = 0;
            run.milestones_before = 0;
        }
    }
}

struct Outbox {
    state: Mutex<OutboxState>,
    /// Signalled when there is something to send (or the sink closes).
    work: Condvar,
    /// Signalled when a run's queue drains.
    drained: Condvar,
    /// The runs whose cancel state is followed, each with whether it still is: set
    /// false when the run finishes (or the sink closes), and the follower stops after
    /// its poll in flight.
    following: Mutex<HashMap<RunId, Arc<AtomicBool>>>,
}

/// Reports events to a hub. Created through [`Target::hub`](crate::Target::hub).
pub(crate) struct HubSink {
    outbox: Arc<Outbox>,
    signals: Arc<Signals>,
    attach: Option<RunId>,
    session: String,
    flush_deadline: Duration,
    sender: Option<JoinHandle<()>>,
    /// A run's finish waited out the whole deadline, or did not wait at all for a hub
    /// never reached: the hub is away, and closing should not wait (again).
    unreachable: bool,
    /// Where each event is encoded before it is copied into the outbox: one allocation
    /// per event, of its size.
    scratch: Vec<u8>,
}

impl HubSink {
    pub(crate) fn start(options: HubOptions, signals: Arc<Signals>) -> HubSink {
        let outbox = Arc::new(Outbox {
            state: Mutex::new(OutboxState {
                batch: BATCH,
                ..OutboxState::default()
            }),
            work: Condvar::new(),
            drained: Condvar::new(),
            following: Mutex::new(HashMap::new()),
        });
        let sender = Sender {
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(REQUEST_TIMEOUT))
                .http_status_as_error(false)
                .build()
                .into(),
            url: options.url.clone(),
            token: options.token.clone(),
            outbox: outbox.clone(),
            signals: signals.clone(),
            backoff: BACKOFF_MIN,
            warned: false,
        };
        let handle = std::thread::Builder::new()
            .name("herald-hub-sink".into())
            .spawn(move || sender.run())
            .ok();
        HubSink {
            outbox,
            signals,
            attach: options.attach,
            session: session_id(),
            flush_deadline: options.flush_deadline,
            sender: handle,
            unreachable: false,
            scratch: Vec::new(),
        }
    }

    /// Waits until no queue that is finishing a run holds events, or the deadline; not
    /// at all while the hub has never been reached and a request already went
    /// unanswered: a hub that was down all along is not waited for, and the events are
    /// counted as undelivered when the sink closes.
    fn wait_for_finishing(&mut self) {
        let deadline = Instant::now() + self.flush_deadline;
        let mut state = lock(&self.outbox.state);
        while state
            .runs
            .iter()
            .any(|r| r.finishing && !r.events.is_empty())
            && !state.abandon
        {
            if !state.reached && state.unanswered > 0 {
                self.unreachable = true;
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.unreachable = true;
                return;
            }
            state = self
                .outbox
                .drained
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The draft of `event` as this sink sends it, or `None` to send nothing.
    fn draft(&self, event: &Event) -> Option<Draft> {
        let attached = self.attach.as_ref() == Some(&event.run);
        let body = match &event.body {
            // The owner of an attached run started it and will finish it.
            EventBody::RunStarted(_) if attached => return None,
            EventBody::RunFinished(f) if attached => {
                let (level, outcome) = match f.status {
                    RunOutcome::Succeeded => (LogLevel::Info, "succeeded"),
                    RunOutcome::Failed => (LogLevel::Error, "failed"),
                    RunOutcome::Cancelled => (LogLevel::Warn, "was cancelled"),
                };
                let detail = f
                    .error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                EventBody::Log(Log {
                    level,
                    message: format!("the program's work {outcome}{detail}"),
                })
            }
            body => body.clone(),
        };
        Some(Draft {
            ts: Some(event.ts),
            id: Some(format!("{}:{}", self.session, event.seq)),
            parent: event.parent.clone(),
            body,
        })
    }
}

/// A random id for this sink's stream of events: with each event's `seq`, an
/// idempotency key unique across processes.
fn session_id() -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

impl Sink for HubSink {
    fn event(&mut self, event: &Event, _state: &RunState) -> io::Result<()> {
        let finishing = matches!(event.body, EventBody::RunFinished(_));
        let create = match &event.body {
            EventBody::RunStarted(RunStarted { name, meta, .. })
                if self.attach.as_ref() != Some(&event.run) =>
            {
                Some(CreateRun {
                    id: Some(event.run.to_string()),
                    name: name.clone(),
                    parent: event.parent.as_ref().map(RunId::to_string),
                    meta: meta.clone(),
                    ..CreateRun::default()
                })
            }
            _ => None,
        };
        let Some(draft) = self.draft(event) else {
            return Ok(());
        };
        let milestone = draft.body.is_milestone();
        let count_dropped = |milestone: bool, n: u64| {
            let counter = if milestone {
                &self.signals.hub_dropped_milestones
            } else {
                &self.signals.hub_dropped_ticks
            };
            counter.fetch_add(n, Ordering::Relaxed);
        };
        self.scratch.clear();
        draft.write_json(&mut self.scratch);
        let Ok(json) = std::str::from_utf8(&self.scratch) else {
            // Nothing the hub could take: as lost as an event refused.
            count_dropped(milestone, 1);
            return Ok(());
        };
        let pending = Pending {
            json: json.into(),
            milestone,
        };
        if finishing {
            // Nothing to follow once the run is over; a follower not started yet never
            // starts.
            lock(&self.outbox.following)
                .entry(event.run.clone())
                .or_insert_with(|| Arc::new(AtomicBool::new(false)))
                .store(false, Ordering::Relaxed);
        }
        let mut state = lock(&self.outbox.state);
        // A run's finish is let past the bound: without it the run never ends on the hub.
        if state.bytes + pending.size() > OUTBOX_BYTES && !finishing {
            let (fits, evicted) = make_room(&mut state, pending.size(), milestone);
            // The evicted ticks are as lost as refused ones.
            count_dropped(false, evicted);
            if !fits {
                count_dropped(milestone, 1);
                return Ok(());
            }
        }
        let queue = match state.runs.iter().position(|r| r.id == event.run) {
            Some(i) => &mut state.runs[i],
            None => {
                state.runs.push(RunQueue {
                    id: event.run.clone(),
                    create: None,
                    write_token: None,
                    events: VecDeque::new(),
                    in_flight: 0,
                    milestones_before: 0,
                    finishing: false,
                });
                state.runs.last_mut().expect("just pushed")
            }
        };
        if create.is_some() {
            queue.create = create;
        }
        queue.finishing |= finishing;
        let size = pending.size();
        queue.events.push_back(pending);
        state.queued += 1;
        state.bytes += size;
        if !milestone {
            state.ticks += 1;
            state.tick_bytes += size;
        }
        // The sender looks at the outbox after every request; it needs waking only when
        // it waits on an empty one (not while it waits to retry), or for a finish.
        let wake = finishing || (state.queued == 1 && state.retry_at.is_none());
        drop(state);
        if wake {
            self.outbox.work.notify_one();
        }
        if finishing {
            self.wait_for_finishing();
        }
        Ok(())
    }

    fn policy(&self) -> SinkPolicy {
        SinkPolicy::default()
    }

    fn close(&mut self) -> io::Result<()> {
        for following in lock(&self.outbox.following).values() {
            following.store(false, Ordering::Relaxed);
        }
        let mut state = lock(&self.outbox.state);
        state.closing = true;
        self.outbox.work.notify_one();
        let never_reached = !state.reached && state.unanswered > 0;
        let wait = if self.unreachable || never_reached {
            Duration::ZERO
        } else {
            self.flush_deadline
        };
        let deadline = Instant::now() + wait;
        while state.queued > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                state.abandon = true;
                break;
            }
            state = self
                .outbox
                .drained
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let abandoned = state.abandon;
        if abandoned {
            // Left behind: as lost as events refused, and counted with them.
            let counts = (state.queued - state.ticks, state.ticks);
            self.signals
                .hub_dropped_milestones
                .fetch_add(counts.0 as u64, Ordering::Relaxed);
            self.signals
                .hub_dropped_ticks
                .fetch_add(counts.1 as u64, Ordering::Relaxed);
        }
        drop(state);
        self.outbox.work.notify_one();
        if let Some(sender) = self.sender.take() {
            // A sender stuck in a request to a hub that does not answer is left to
            // its request timeout rather than waited for.
            if !abandoned {
                let _ = sender.join();
            }
        }
        Ok(())
    }
}

/// Evicts the oldest queued ticks, none of a request in flight, until `size` more
/// bytes fit, for a milestone: whether they fit, and how many ticks were evicted. A
/// tick makes no room, and nothing is evicted when evicting every tick would not be
/// enough.
fn make_room(state: &mut OutboxState, size: usize, milestone: bool) -> (bool, u64) {
    if !milestone {
        return (false, 0);
    }
    // The ticks of a request in flight (at most one batch to look at) stay.
    let in_flight: usize = state
        .runs
        .iter()
        .flat_map(|run| run.events.range(..run.in_flight))
        .filter(|p| !p.milestone)
        .map(Pending::size)
        .sum();
    if state.bytes - (state.tick_bytes - in_flight) + size > OUTBOX_BYTES {
        return (false, 0);
    }
    let mut evicted = 0;
    while state.bytes + size > OUTBOX_BYTES {
        let mut tick = None;
        for run in &mut state.runs {
            let from = run.in_flight.max(run.milestones_before);
            match run.events.range(from..).position(|p| !p.milestone) {
                Some(i) => {
                    run.milestones_before = from + i;
                    tick = run.events.remove(from + i);
                    break;
                }
                None => run.milestones_before = run.events.len(),
            }
        }
        let Some(tick) = tick else {
            // Not reached: the evictable ticks were counted before the first went.
            debug_assert!(false, "no evictable tick left after counting enough");
            return (false, evicted);
        };
        state.queued -= 1;
        state.ticks -= 1;
        state.bytes -= tick.size();
        state.tick_bytes -= tick.size();
        evicted += 1;
    }
    (true, evicted)
}

/// The sink's thread: sends batches, creating runs first, retrying while the hub fails.
struct Sender {
    agent: ureq::Agent,
    url: String,
    token: Option<String>,
    outbox: Arc<Outbox>,
    signals: Arc<Signals>,
    backoff: Duration,
    warned: bool,
}

/// What the hub said to a request.
enum Reply {
    /// The reply's body.
    Ok(String),
    /// Worth trying again later: the hub is down, overloaded or failing, or limiting
    /// the run; not before the `Retry-After` it sent, if any.
    Retry(String, Option<Duration>),
    /// Not worth trying again: the status and the hub's message.
    Refused(u16, String),
}

/// A request to make for one run: create it on the hub first, or append the first
/// events of its queue.
struct Job {
    run: RunId,
    /// The body of `POST /v1/runs`; the events wait until the hub has the run.
    create: Option<CreateRun>,
    token: Option<String>,
    /// The events to append, encoded: the request's body is them joined.
    events: Vec<Arc<str>>,
}

impl Sender {
    fn run(mut self) {
        while let Some(job) = self.next_job() {
            self.send(job);
        }
    }

    /// Waits for work; `None` when the sink closed and everything is sent (or given up).
    fn next_job(&self) -> Option<Job> {
        let mut state = lock(&self.outbox.state);
        state.request_over();
        loop {
            if state.abandon || (state.closing && state.queued == 0) {
                return None;
            }
            let wait = state
                .retry_at
                .map(|t| t.saturating_duration_since(Instant::now()));
            if wait.is_none_or(|w| w.is_zero()) {
                let batch = state.batch.max(1);
                let token = &self.token;
                if let Some(run) = state.runs.iter_mut().find(|r| !r.events.is_empty()) {
                    let mut job = Job {
                        run: run.id.clone(),
                        create: run.create.clone(),
                        token: run.write_token.clone().or_else(|| token.clone()),
                        events: Vec::new(),
                    };
                    if job.create.is_none() {
                        let mut bytes = 0;
                        for pending in run.events.iter().take(batch) {
                            bytes += pending.json.len() + 1;
                            if bytes > BATCH_BYTES && !job.events.is_empty() {
                                break;
                            }
                            job.events.push(pending.json.clone());
                        }
                        run.in_flight = job.events.len();
                    }
                    return Some(job);
                }
                state.retry_at = None;
            }
            let timeout = wait
                .filter(|w| !w.is_zero())
                .unwrap_or(Duration::from_secs(1));
            state = self
                .outbox
                .work
                .wait_timeout(state, timeout)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn send(&mut self, job: Job) {
        if let Some(body) = &job.create {
            let body = serde_json::to_string(body).unwrap_or_default();
            match self.post("/v1/runs", self.token.as_deref(), body) {
                Reply::Ok(reply) => {
                    let token = serde_json::from_str::<Created>(&reply)
                        .ok()
                        .map(|created| created.write_token);
                    self.update(&job.run, |q| {
                        q.create = None;
                        if token.is_some() {
                            q.write_token = token;
                        }
                    });
                }
                // It exists: created by an earlier attempt whose reply was lost, or by
                // someone else. Append with the configured token.
                Reply::Refused(409, _) => self.update(&job.run, |q| q.create = None),
                Reply::Refused(status, message) => self.give_up(&job.run, status, &message),
                Reply::Retry(why, after) => self.retry_later(&job.run, &why, after),
            }
            // The events go in the next request, taken from the queue as it is then.
            return;
        }
        let token = self.token_for(&job);
        let body = join_json(&job.events);
        let path = format!("/v1/runs/{}/events", job.run);
        match self.post(&path, token.as_deref(), body) {
            Reply::Ok(reply) => {
                self.backoff = BACKOFF_MIN;
                if serde_json::from_str::<Appended>(&reply).is_ok_and(|a| a.cancel_requested) {
                    self.signals.request_cancel(&job.run);
                }
                // Counted before the queue drains, so that a finished run's count
                // is complete once its finish returns.
                self.signals
                    .hub_acknowledged
                    .fetch_add(job.events.len() as u64, Ordering::Relaxed);
                self.acknowledge(&job.run, job.events.len());
                // The run is on the hub and the token opens it: follow its cancel
                // state from now on.
                self.follow(&job.run, token);
            }
            Reply::Refused(404, _) if job.create.is_none() && self.can_create(&job.run) => {
                // The run vanished (deleted, or the hub lost it): create it again.
                self.update(&job.run, |q| {
                    q.create = Some(CreateRun {
                        id: Some(q.id.to_string()),
                        name: q.id.to_string(),
                        ..CreateRun::default()
                    })
                });
            }
            Reply::Refused(413, _) if job.events.len() > 1 => {
                // Too large together: send fewer at a time from now on.
                let mut state = lock(&self.outbox.state);
                state.batch = (job.events.len() / 2).max(1);
            }
            Reply::Refused(status @ (400 | 413), message) => {
                // The hub will never take these events as they are; the rest may go.
                self.warn(
                    &job.run,
                    &format!(
                        "herald: the hub refused events of run {} ({status}): {message}",
                        job.run
                    ),
                );
                self.drop_first(&job.run, job.events.len());
            }
            Reply::Refused(status, message) => self.give_up(&job.run, status, &message),
            Reply::Retry(why, after) => self.retry_later(&job.run, &why, after),
        }
    }

    /// Starts following `run`'s cancel state on a thread of its own, unless it is
    /// followed already (or finished).
    fn follow(&self, run: &RunId, token: Option<String>) {
        let mut following = lock(&self.outbox.following);
        if following.contains_key(run) {
            return;
        }
        let active = Arc::new(AtomicBool::new(true));
        following.insert(run.clone(), active.clone());
        drop(following);
        let follower = CancelFollower {
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(CANCEL_POLL + REQUEST_TIMEOUT))
                .http_status_as_error(false)
                .build()
                .into(),
            url: format!("{}/v1/runs/{run}/events", self.url),
            run: run.clone(),
            token,
            signals: self.signals.clone(),
            active,
        };
        let _ = std::thread::Builder::new()
            .name("herald-hub-cancel".into())
            .spawn(move || follower.run());
    }

    fn can_create(&self, run: &RunId) -> bool {
        lock(&self.outbox.state)
            .runs
            .iter()
            .any(|q| &q.id == run && q.write_token.is_some())
    }

    fn token_for(&self, job: &Job) -> Option<String> {
        lock(&self.outbox.state)
            .runs
            .iter()
            .find(|q| q.id == job.run)
            .and_then(|q| q.write_token.clone())
            .or_else(|| job.token.clone())
    }

    fn update(&self, run: &RunId, f: impl FnOnce(&mut RunQueue)) {
        if let Some(queue) = lock(&self.outbox.state)
            .runs
            .iter_mut()
            .find(|q| &q.id == run)
        {
            f(queue);
        }
    }

    /// Drops the first `n` events of `run`'s queue, counting them as lost.
    fn drop_first(&self, run: &RunId, n: usize) {
        let mut state = lock(&self.outbox.state);
        if let Some(i) = state.runs.iter().position(|q| &q.id == run) {
            let dropped = take_front(&mut state, i, n);
            self.count_dropped(&dropped);
        }
        drop(state);
        self.outbox.drained.notify_all();
    }

    /// Removes the first `n` events of `run`'s queue: the hub has them.
    fn acknowledge(&self, run: &RunId, n: usize) {
        let mut state = lock(&self.outbox.state);
        if let Some(i) = state.runs.iter().position(|q| &q.id == run) {
            take_front(&mut state, i, n);
            if state.runs[i].events.is_empty() {
                let finished = state.runs[i].finishing;
                if finished {
                    state.runs.remove(i);
                }
            }
        }
        drop(state);
        self.outbox.drained.notify_all();
    }

    /// The hub will not take this run's events: drop them, count them, say so once.
    fn give_up(&mut self, run: &RunId, status: u16, message: &str) {
        self.warn(
            run,
            &format!(
                "herald: the hub refused the events of run {run} ({status}): {message}; they are dropped"
            ),
        );
        let mut state = lock(&self.outbox.state);
        if let Some(i) = state.runs.iter().position(|q| &q.id == run) {
            let dropped = take_front(&mut state, i, usize::MAX);
            state.runs.remove(i);
            self.count_dropped(&dropped);
        }
        drop(state);
        self.outbox.drained.notify_all();
    }

    fn count_dropped(&self, dropped: &[Pending]) {
        for pending in dropped {
            let counter = if pending.milestone {
                &self.signals.hub_dropped_milestones
            } else {
                &self.signals.hub_dropped_ticks
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits before trying again: as long as the hub's `retry_after` says when it sent
    /// one (a rate limit, an overloaded hub: it knows), otherwise the backoff, which
    /// doubles; both with jitter, so that many producers do not retry in step.
    fn retry_later(&mut self, run: &RunId, why: &str, retry_after: Option<Duration>) {
        self.warn(
            run,
            &format!(
                "herald: cannot report to the hub at {} ({why}); retrying",
                self.url
            ),
        );
        let spread = {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(self.backoff.as_nanos() as u64);
            (h.finish() % 1000) as f64 / 1000.0
        };
        let wait = match retry_after {
            // Up to a tenth later than asked.
            Some(after) => after.mul_f64(1.0 + spread / 10.0),
            // Between half and the whole backoff.
            None => {
                let wait = self.backoff.mul_f64(0.5 + spread / 2.0);
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                wait
            }
        };
        lock(&self.outbox.state).retry_at = Some(Instant::now() + wait);
        // A finish waiting for the hub looks again: it does not wait for one never
        // reached.
        self.outbox.drained.notify_all();
    }

    /// Shows a warning once per sink, where the program's progress goes (above the
    /// bars, as a `log` event in JSON Lines): reporting trouble must be visible but
    /// must not flood the program's output.
    fn warn(&mut self, run: &RunId, message: &str) {
        if !self.warned {
            self.warned = true;
            self.signals.notice(Some(run), message.to_owned());
        }
    }

    fn post(&self, path: &str, token: Option<&str>, body: String) -> Reply {
        let url = format!("{}{path}", self.url);
        let mut request = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json");
        if let Some(token) = token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let mut response = match request.send(body) {
            Ok(response) => response,
            Err(e) => {
                lock(&self.outbox.state).unanswered += 1;
                return Reply::Retry(e.to_string(), None);
            }
        };
        lock(&self.outbox.state).reached = true;
        let status = response.status().as_u16();
        // Seconds, as the hub sends it; an HTTP date is left to the backoff.
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|secs| Duration::from_secs(secs).min(BACKOFF_MAX));
        let text = response.body_mut().read_to_string().unwrap_or_default();
        if (200..=299).contains(&status) {
            return Reply::Ok(text);
        }
        let hub_message = serde_json::from_str::<ErrorBody>(&text)
            .ok()
            .map(|body| body.error.message);
        match status {
            429 => Reply::Retry("429: it limits this run's rate".to_owned(), retry_after),
            // The hub's message says why (a full disk, its database away), which is
            // what a person reading the warning needs.
            500..=599 => {
                let why = match hub_message {
                    Some(message) => format!("{status}: {message}"),
                    None => status.to_string(),
                };
                Reply::Retry(why, retry_after)
            }
            _ => Reply::Refused(status, hub_message.unwrap_or(text)),
        }
    }
}

/// Follows one run's cancel state with long polls for `run.cancel_requested`, so that
/// a program that reports nothing for a long while (a silent agent waiting on
/// `Run::cancellation`) still hears a cancel within a second of it: append replies
/// carry it too, but a silent run appends only its keep-alive, every 10 s.
struct CancelFollower {
    agent: ureq::Agent,
    /// `{hub}/v1/runs/{id}/events`.
    url: String,
    run: RunId,
    token: Option<String>,
    signals: Arc<Signals>,
    /// Cleared when the run finishes or the sink closes.
    active: Arc<AtomicBool>,
}

impl CancelFollower {
    fn run(self) {
        let mut after = 0;
        let mut backoff = BACKOFF_MIN;
        while self.active.load(Ordering::Relaxed) {
            let url = format!(
                "{}?after={after}&types=run.cancel_requested&wait={}&limit=10",
                self.url,
                CANCEL_POLL.as_secs()
            );
            let mut request = self.agent.get(&url);
            if let Some(token) = &self.token {
                request = request.header("Authorization", &format!("Bearer {token}"));
            }
            let mut response = match request.call() {
                Ok(response) => response,
                Err(_) => {
                    // The hub is away: the sender says so; try again later.
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            let page: EventsPage = match response.status().as_u16() {
                200 => match response.body_mut().read_json() {
                    Ok(page) => page,
                    // Not a page: a proxy's answer, say; try again later.
                    Err(_) => {
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        continue;
                    }
                },
                // The cursor is past what the hub has (it lost events): from the start.
                400 => {
                    after = 0;
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
                // The run is gone, or the token does not open it: nothing to follow.
                401 | 403 | 404 => return,
                _ => {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            backoff = BACKOFF_MIN;
            if !page.events.is_empty() {
                self.signals.request_cancel(&self.run);
                return;
            }
            after = page.last_seq;
            if page.status.is_terminal() {
                return;
            }
        }
    }
}

/// Takes the first `n` events of queue `i` out of the outbox and its counts.
fn take_front(state: &mut OutboxState, i: usize, n: usize) -> Vec<Pending> {
    let run = &mut state.runs[i];
    let n = n.min(run.events.len());
    let taken: Vec<Pending> = run.events.drain(..n).collect();
    run.in_flight = run.in_flight.saturating_sub(n);
    run.milestones_before = run.milestones_before.saturating_sub(n);
    state.queued -= taken.len();
    for pending in &taken {
        state.bytes -= pending.size();
        if !pending.milestone {
            state.ticks -= 1;
            state.tick_bytes -= pending.size();
        }
    }
    taken
}

/// The JSON array of `events`, each already encoded.
fn join_json(events: &[Arc<str>]) -> String {
    let mut body = String::with_capacity(2 + events.iter().map(|e| e.len() + 1).sum::<usize>());
    body.push('[');
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(event);
    }
    body.push(']');
    body
}

#[cfg(test)]
mod tests {
    use herald_protocol::{Heartbeat, RunFinished, Timestamp};

    use super::*;

    fn event(seq: u64, body: impl Into<EventBody>) -> Event {
        let run = RunId::new("r").unwrap();
        Draft::new(Timestamp::from_unix_micros(seq as i64), body).stamp(
            run,
            seq,
            Timestamp::from_unix_micros(0),
        )
    }

    fn warn(seq: u64) -> Event {
        event(
            seq,
            Log {
                level: LogLevel::Warn,
                message: format!("m{seq}"),
            },
        )
    }

    /// A sink whose hub never answers: nothing leaves the outbox.
    fn unreachable_sink(signals: &Arc<Signals>) -> HubSink {
        let mut options = HubOptions::new("http://127.0.0.1:1", None);
        options.flush_deadline = Duration::from_millis(100);
        HubSink::start(options, signals.clone())
    }

    #[test]
    fn a_full_outbox_drops_ticks_first_and_always_takes_a_finish() {
        let signals = Arc::new(Signals::default());
        let mut sink = unreachable_sink(&signals);
        let state = RunState::new(RunId::new("r").unwrap());
        let tick = |seq| {
            event(
                seq,
                Heartbeat {
                    elapsed_s: 1.0,
                    note: None,
                },
            )
        };
        let dropped = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        sink.event(&tick(1), &state).unwrap();
        // Milestones until the outbox is full: the first that does not fit evicts the
        // one queued tick.
        let mut seq = 1;
        while dropped(&signals.hub_dropped_ticks) == 0 {
            seq += 1;
            sink.event(&warn(seq), &state).unwrap();
            assert!(seq < 1_000_000, "the outbox never filled");
        }
        assert_eq!(dropped(&signals.hub_dropped_milestones), 0);
        // Then a tick is refused, and milestones too once the tick's room is used, since
        // no tick is left to make room.
        seq += 1;
        sink.event(&tick(seq), &state).unwrap();
        assert_eq!(dropped(&signals.hub_dropped_ticks), 2);
        let queued = lock(&sink.outbox.state).queued;
        while dropped(&signals.hub_dropped_milestones) == 0 {
            seq += 1;
            sink.event(&warn(seq), &state).unwrap();
            assert!(lock(&sink.outbox.state).queued <= queued + 1);
        }
        let queued = {
            let state = lock(&sink.outbox.state);
            assert_eq!(state.ticks, 0);
            assert!(state.bytes <= OUTBOX_BYTES);
            assert!(state.bytes > OUTBOX_BYTES - 200, "{} bytes", state.bytes);
            state.queued
        };
        let n = seq;

        // The run's finish still gets in, past the bound; finishing waits out the
        // deadline once, and closing then does not wait again.
        let finish = event(
            n + 4,
            RunFinished {
                status: RunOutcome::Succeeded,
                result: None,
                error: None,
            },
        );
        sink.event(&finish, &state).unwrap();
        assert_eq!(lock(&sink.outbox.state).queued, queued + 1);
        assert!(sink.unreachable);
        let started = Instant::now();
        sink.close().unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "close waited the deadline again"
        );
    }

    #[test]
    fn making_room_evicts_the_oldest_tick_not_one_being_sent() {
        let pending = |json: &str, milestone| Pending {
            json: json.into(),
            milestone,
        };
        // A tick in flight, a milestone, then two ticks queued.
        let events: VecDeque<Pending> = [
            pending("1", false),
            pending("2", true),
            pending("3", false),
            pending("4", false),
        ]
        .into_iter()
        .collect();
        let size = events[0].size();
        let mut state = OutboxState {
            queued: 4,
            ticks: 3,
            bytes: 4 * size,
            tick_bytes: 3 * size,
            ..OutboxState::default()
        };
        state.runs.push(RunQueue {
            id: RunId::new("r").unwrap(),
            create: None,
            write_token: None,
            events,
            in_flight: 1,
            milestones_before: 0,
            finishing: false,
        });
        // Room for one more event of this size than there is: one tick goes, the
        // oldest after the request in flight.
        let room = OUTBOX_BYTES - state.bytes + size;
        assert_eq!(make_room(&mut state, room, true), (true, 1));
        let left: Vec<&str> = state.runs[0].events.iter().map(|p| &*p.json).collect();
        assert_eq!(left, ["1", "2", "4"]);
        assert_eq!((state.queued, state.ticks, state.bytes), (3, 2, 3 * size));
        // A tick makes no room, and neither does a milestone that evicting every tick
        // would not fit.
        assert_eq!(make_room(&mut state, room, false), (false, 0));
        assert_eq!(make_room(&mut state, OUTBOX_BYTES, true), (false, 0));
        // Room the one evictable tick cannot make: nothing is evicted for nothing (the
        // tick in flight stays).
        assert_eq!(make_room(&mut state, room + 2 * size, true), (false, 0));
        let left: Vec<&str> = state.runs[0].events.iter().map(|p| &*p.json).collect();
        assert_eq!(left, ["1", "2", "4"]);
        // Once the request is over, its tick may go too, the oldest first.
        state.request_over();
        assert_eq!(make_room(&mut state, room + 2 * size, true), (true, 2));
        let left: Vec<&str> = state.runs[0].events.iter().map(|p| &*p.json).collect();
        assert_eq!(left, ["2"]);
    }

    #[test]
    fn a_hub_never_reached_is_not_waited_for_and_what_it_missed_is_counted() {
        let signals = Arc::new(Signals::default());
        let mut options = HubOptions::new("http://127.0.0.1:1", None);
        options.flush_deadline = Duration::from_secs(30);
        let mut sink = HubSink::start(options, signals.clone());
        let state = RunState::new(RunId::new("r").unwrap());
        sink.event(&warn(1), &state).unwrap();
        sink.event(&warn(2), &state).unwrap();
        let finish = event(
            3,
            RunFinished {
                status: RunOutcome::Succeeded,
                result: None,
                error: None,
            },
        );
        let started = Instant::now();
        sink.event(&finish, &state).unwrap();
        sink.close().unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "waited {:?} for a hub refusing every connection",
            started.elapsed()
        );
        assert_eq!(signals.hub_dropped_milestones.load(Ordering::Relaxed), 3);
    }
}
