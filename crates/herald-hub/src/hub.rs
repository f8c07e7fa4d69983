//! [`Hub`], the hub's shared state (store, clock, feeds, metrics, the rate limiter),
//! and how changes reach subscribers: appends in a task of their own, the runs
//! stream's changes, the sweeper (stall detection, retention) and the waker (other
//! hubs' changes).

use std::sync::Arc;

use herald_protocol::{Draft, RunId, RunStalled, RunState};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::config::HubConfig;
use crate::lru::Lru;
use crate::store::{Appended, Author, RunRecord, Store, StoreError, Wake};
use crate::{feed, limit, metrics};

/// Most runs one retention transaction deletes.
const RETENTION_BATCH: u32 = 100;

/// A change to the list of runs, for `GET /v1/runs/stream`. Each names the run's
/// generation (see [`RunRecord::generation`]), so that a subscriber can tell a stale
/// state of a deleted run from a run created again under its id.
#[derive(Clone, Debug)]
pub(crate) enum RunChange {
    State {
        state: Arc<RunState>,
        generation: u64,
    },
    Deleted {
        id: RunId,
        generation: u64,
    },
    /// Changes may have been missed (another hub's, while the store's notifications
    /// were down): send the whole list again.
    Resync,
}

/// What was told of each run: the generation and `last_seq` of the latest state
/// told, or the generation whose deletion was told (`last_seq` `None`). The hub keeps
/// one, so that the wake-up of a change already told is not broadcast again; each runs
/// stream keeps its own, of what it sent, so that it never sends a state older than
/// one it sent, or of a run it said was deleted.
///
/// Bounded: when full, it forgets the run told of least recently. For the hub that
/// costs a repeated broadcast, which the streams drop; for a stream, which reaches it
/// only after 10,000 runs, a stale state of a run it has not told of for that long
/// could then pass once.
pub(crate) struct ShownRuns {
    last: Lru<RunId, Told>,
}

impl Default for ShownRuns {
    fn default() -> ShownRuns {
        ShownRuns {
            last: Lru::new(ShownRuns::CAPACITY),
        }
    }
}

/// What was told of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Told {
    generation: u64,
    /// `None`: that generation's deletion was told.
    last_seq: Option<u64>,
}

impl ShownRuns {
    const CAPACITY: usize = 10_000;

    /// Records the state at `last_seq` of `run`'s creation `generation` (`last_seq`
    /// `None`: its deletion) if it is news, and says whether it is.
    ///
    /// Generations order the creations of one run id, and `last_seq` the states of one
    /// creation. News is a later state of the creation told or any state of a later
    /// creation (a run created again starts at `last_seq` 0); the deletion of the
    /// creation told, or of a later one. A state read before a later one was told (a
    /// late wake-up, or a read that a deletion overtook) is not news; nor is a state of
    /// a creation whose deletion was told, nor the deletion of a creation older than
    /// the one told.
    pub(crate) fn changed(&mut self, run: &RunId, generation: u64, last_seq: Option<u64>) -> bool {
        let news = match (self.last.get(run).copied(), last_seq) {
            (None, _) => true,
            (Some(told), Some(seq)) => match told.last_seq {
                Some(told_seq) => (generation, seq) > (told.generation, told_seq),
                None => generation > told.generation,
            },
            (Some(told), None) => match told.last_seq {
                Some(_) => generation >= told.generation,
                None => generation > told.generation,
            },
        };
        if news {
            self.last.insert(
                run.clone(),
                Told {
                    generation,
                    last_seq,
                },
            );
        }
        news
    }

    /// The generation last told of `run`, if any.
    pub(crate) fn generation(&self, run: &RunId) -> Option<u64> {
        self.last.peek(run).map(|told| told.generation)
    }
}

/// The hub's shared state: store, clock, feeds, metrics. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    store: Arc<dyn Store>,
    config: HubConfig,
    clock: Arc<dyn Clock>,
    feeds: feed::Feeds,
    changes: broadcast::Sender<RunChange>,
    told: std::sync::Mutex<ShownRuns>,
    metrics: Arc<metrics::Metrics>,
    limiter: limit::Limiter,
    shutdown: CancellationToken,
}

impl Hub {
    /// A hub over `store`, reading time from the system clock.
    pub fn new(store: Arc<dyn Store>, config: HubConfig) -> Hub {
        Hub::with_clock(store, config, Arc::new(SystemClock))
    }

    /// A hub reading time from `clock`.
    pub fn with_clock(store: Arc<dyn Store>, config: HubConfig, clock: Arc<dyn Clock>) -> Hub {
        Hub {
            inner: Arc::new(HubInner {
                limiter: limit::Limiter::new(config.rate_limit),
                store,
                config,
                clock,
                feeds: feed::Feeds::default(),
                changes: broadcast::channel(1024).0,
                told: Default::default(),
                metrics: Arc::default(),
                shutdown: CancellationToken::new(),
            }),
        }
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub(crate) fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    pub(crate) fn now(&self) -> herald_protocol::Timestamp {
        self.inner.clock.now()
    }

    pub(crate) fn metrics(&self) -> &Arc<metrics::Metrics> {
        &self.inner.metrics
    }

    pub(crate) fn limiter(&self) -> &limit::Limiter {
        &self.inner.limiter
    }

    pub(crate) fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    pub(crate) fn feed(&self, run: &RunId, last_seq: u64) -> Arc<feed::Feed> {
        self.inner.feeds.get(
            run,
            last_seq,
            &self.inner.store,
            self.inner.config.feed_poll_interval,
        )
    }

    pub(crate) fn changes(&self) -> broadcast::Receiver<RunChange> {
        self.inner.changes.subscribe()
    }

    /// Appends through the store in a task of its own, so that a client that goes
    /// away mid-request cannot cut a transaction short, then tells subscribers.
    pub(crate) async fn append(
        &self,
        run: &RunId,
        drafts: Vec<Draft>,
        author: Author,
    ) -> Result<Appended, StoreError> {
        let hub = self.clone();
        let id = run.clone();
        let started = std::time::Instant::now();
        let task = tokio::spawn(async move {
            let now = hub.now();
            let appended = hub.inner.store.append(&id, drafts, now, author).await?;
            hub.published(&id, &appended);
            Ok::<_, StoreError>(appended)
        });
        let appended = task
            .await
            .map_err(|e| StoreError::Db(format!("append task failed: {e}")))??;
        self.inner.metrics.appended(
            appended.events.len() as u64,
            appended.duplicates,
            started.elapsed(),
        );
        Ok(appended)
    }

    fn published(&self, run: &RunId, appended: &Appended) {
        if appended.events.is_empty() {
            return;
        }
        self.inner.feeds.publish(run, &appended.events);
        self.tell_state(&appended.state, appended.generation);
    }

    /// Tells list subscribers the state of `state.id`'s creation `generation`, unless
    /// they were told it or a later one (the store's own notification may have told
    /// them already).
    fn tell_state(&self, state: &RunState, generation: u64) {
        if self.told(&state.id, generation, Some(state.last_seq)) {
            let _ = self.inner.changes.send(RunChange::State {
                state: Arc::new(state.clone()),
                generation,
            });
        }
    }

    /// Records what list subscribers are told of `run` (`last_seq` `None`: its
    /// deletion); whether it is news to them. See [`ShownRuns::changed`].
    fn told(&self, run: &RunId, generation: u64, last_seq: Option<u64>) -> bool {
        let mut told = self.inner.told.lock().unwrap_or_else(|e| e.into_inner());
        told.changed(run, generation, last_seq)
    }

    /// Tells list subscribers about a run just created.
    pub(crate) fn created(&self, record: &RunRecord) {
        self.tell_state(&record.state, record.generation);
    }

    /// Tells list subscribers that `run`'s creation `generation` was deleted.
    pub(crate) fn deleted(&self, run: &RunId, generation: u64) {
        // Open streams of the run end rather than wait for events that cannot come.
        self.inner.feeds.wake(run);
        self.tell_deleted(run, generation);
    }

    fn tell_deleted(&self, run: &RunId, generation: u64) {
        if self.told(run, generation, None) {
            let _ = self.inner.changes.send(RunChange::Deleted {
                id: run.clone(),
                generation,
            });
        }
    }

    /// One pass of stall detection and retention at the clock's current time: each
    /// running run silent past its heartbeat timeout gets one `run.stalled`; each run
    /// whose last event is older than its time to live is deleted.
    pub async fn sweep(&self) -> Result<(), StoreError> {
        let now = self.now();
        for record in self.inner.store.silent_runs(now).await? {
            let silent_for_s =
                (now.seconds_since(record.last_producer_at) * 1000.0).round() / 1000.0;
            let draft = Draft::new(now, RunStalled { silent_for_s });
            // The store re-checks silence inside the append's transaction, so a
            // producer that spoke in the meantime is not marked stalled.
            match self.append_stalled(&record.id, draft).await {
                Ok(_) | Err(StoreError::Finished) | Err(StoreError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        // In batches, so that one transaction never holds the run rows of a huge
        // backlog.
        loop {
            let deleted = self
                .inner
                .store
                .delete_expired(now, RETENTION_BATCH)
                .await?;
            for (id, generation) in &deleted {
                self.deleted(id, *generation);
            }
            if (deleted.len() as u32) < RETENTION_BATCH {
                return Ok(());
            }
        }
    }

    async fn append_stalled(&self, run: &RunId, draft: Draft) -> Result<Appended, StoreError> {
        let now = self.now();
        let appended = self.inner.store.mark_stalled(run, draft, now).await?;
        self.published(run, &appended);
        Ok(appended)
    }

    /// Runs [`Hub::sweep`] every `sweep_interval` until the hub shuts down.
    pub fn spawn_sweeper(&self) -> tokio::task::JoinHandle<()> {
        let hub = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(hub.inner.config.sweep_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = hub.inner.shutdown.cancelled() => return,
                    _ = tick.tick() => {
                        if let Err(e) = hub.sweep().await {
                            tracing::warn!(error = %e, "sweep failed");
                        }
                    }
                }
            }
        })
    }

    /// Wakes this hub's readers of runs that changed through other hubs, for as long as
    /// the hub runs; `None` if the store has no notifications (see [`Store::wakes`]).
    /// The readers catch up from the store: the wake-up carries no event.
    pub fn spawn_waker(&self) -> Option<tokio::task::JoinHandle<()>> {
        let mut wakes = self.inner.store.wakes()?;
        let hub = self.clone();
        Some(tokio::spawn(async move {
            loop {
                let wake = tokio::select! {
                    _ = hub.inner.shutdown.cancelled() => return,
                    wake = wakes.recv() => wake,
                };
                match wake {
                    Ok(Wake::Run(run)) => {
                        hub.inner.feeds.catch_up(&run);
                        hub.remote_change(&run).await;
                    }
                    Ok(Wake::Deleted(run, generation)) => {
                        hub.inner.feeds.catch_up(&run);
                        hub.tell_deleted(&run, generation);
                    }
                    Ok(Wake::All) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        hub.inner.feeds.catch_up_all();
                        let _ = hub.inner.changes.send(RunChange::Resync);
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }))
    }

    /// Tells list subscribers the state of a run another hub may have changed. A
    /// wake-up for a change already told is dropped, and so is the state read if a
    /// deletion of its creation was told while it was read.
    async fn remote_change(&self, run: &RunId) {
        if self.inner.changes.receiver_count() == 0 {
            return;
        }
        match self.inner.store.run(run).await {
            Ok(record) => self.tell_state(&record.state, record.generation),
            // Deleted since it was woken: the deletion's own wake-up (`Wake::Deleted`)
            // says which creation went, which finding nothing cannot, or, if it was
            // lost, `Wake::All` has every runs stream look again.
            Err(StoreError::NotFound) => {}
            Err(e) => tracing::warn!(run = %run, error = %e, "reading a changed run failed"),
        }
    }

    /// Asks every open stream to end, as part of a graceful shutdown.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tells one run's changes in order, each a generation and a `last_seq` (`None`: the
    /// deletion of that generation), and checks which of them were news.
    #[track_caller]
    fn check(changes: &[(u64, Option<u64>, bool)]) {
        let run = RunId::new("r").expect("a run id");
        let mut told = ShownRuns::default();
        let news: Vec<bool> = changes
            .iter()
            .map(|&(generation, last_seq, _)| told.changed(&run, generation, last_seq))
            .collect();
        let expected: Vec<bool> = changes.iter().map(|&(_, _, news)| news).collect();
        assert_eq!(news, expected, "{changes:?}");
    }

    #[test]
    fn a_state_is_news_only_if_later_than_the_one_told() {
        // A late copy of a state told, or an older state, is not news.
        check(&[
            (1, Some(0), true),
            (1, Some(0), false),
            (1, Some(3), true),
            (1, Some(2), false),
            (1, Some(4), true),
        ]);
    }

    #[test]
    fn a_state_read_before_a_deletion_is_not_news_after_it() {
        check(&[
            (1, Some(3), true),
            (1, None, true),
            (1, Some(3), false),
            (1, Some(4), false),
            (1, None, false),
        ]);
        // Nor is the deletion of a creation never told, told twice.
        check(&[(4, None, true), (4, None, false), (3, Some(9), false)]);
    }

    #[test]
    fn a_run_created_again_is_news_from_its_first_state() {
        // It starts again at `last_seq` 0, below the deleted creation's.
        check(&[
            (1, Some(5), true),
            (1, None, true),
            (2, Some(0), true),
            (2, Some(1), true),
        ]);
        // Told before the deletion of the first creation: that deletion, and the first
        // creation's states, are older than what was told.
        check(&[
            (1, Some(5), true),
            (2, Some(0), true),
            (1, Some(7), false),
            (1, None, false),
            (2, None, true),
            (3, Some(0), true),
        ]);
    }
}
