//! Storage of runs, their tokens and their events, behind the [`Store`] trait.
//!
//! A store is the source of truth and may be shared by several hub processes: nothing
//! here assumes that all writers and readers live in one process. An append is atomic
//! within one transaction (which it may share with other appends, each undone alone if
//! it fails) that takes the run's write lock, assigns dense `seq`s after the stored
//! `last_seq`, skips events whose idempotency `id` is already stored, folds the new
//! events into the run's state and writes the state's summary back, so `seq` stays
//! dense whatever the concurrency and an acknowledged event is durable.
//!
//! The run state itself is folded by the protocol's reducer; [`StateCache`] keeps
//! folded states in memory (with their ETA estimators, which a stored snapshot does not
//! carry: it carries each counter's `eta_basis`, enough to estimate at any `now` as the
//! live state does, so the run list and the run agree) and catches them up from the
//! stored events when another process appended.

mod batch;
mod postgres;
mod readback;
mod sqlite;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use herald_protocol::{Draft, Event, RunId, RunState, RunStatus, Timestamp, TypeFilter};
use serde_json::{Map, Value};
use tokio::sync::broadcast;

use crate::auth::Scope;
use crate::lru::Lru;

pub(crate) use batch::{Batch, Stamped, stamp_ahead};
pub use postgres::PostgresStore;
pub(crate) use readback::{Read, Unreadable};
pub use sqlite::{MIGRATIONS as SQLITE_MIGRATIONS, SqliteStore};

/// Opens the store a database URL names: `sqlite://PATH` or `postgres://...`
/// (`postgresql://` too), applying migrations.
pub async fn open_store(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open_url(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(url).await?))
    } else {
        Err(StoreError::Db(format!(
            "not a database URL: `{url}` (use sqlite://PATH or postgres://...)"
        )))
    }
}

/// A failure of the store.
#[derive(Clone, Debug)]
pub enum StoreError {
    /// No run with that id.
    NotFound,
    /// A run with that id exists already.
    Conflict,
    /// The run has finished and takes no more events.
    Finished,
    /// The event at `index` of the batch would be stored larger than
    /// [`herald_protocol::MAX_EVENT_BYTES`] (its envelope included), so it could not be
    /// read back: nothing of the batch was stored.
    EventTooLarge {
        /// The event's index in the batch, from 0.
        index: usize,
        /// Its size as it would be stored, in bytes.
        bytes: usize,
    },
    /// The database's disk is full: nothing of the write was stored, and the same
    /// write may succeed once space is freed.
    Full(String),
    /// The database cannot be reached just now (it is down, restarting, or refuses
    /// connections): worth trying again, unlike [`StoreError::Db`].
    Unavailable(String),
    /// The database failed.
    Db(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::NotFound => f.write_str("no such run"),
            StoreError::Conflict => f.write_str("the run id is taken"),
            StoreError::Finished => f.write_str("the run has finished"),
            StoreError::EventTooLarge { index, bytes } => write!(
                f,
                "event {index} would be stored as {bytes} bytes, over the limit of {}",
                herald_protocol::MAX_EVENT_BYTES
            ),
            StoreError::Full(e) => write!(f, "the database's disk is full: {e}"),
            StoreError::Unavailable(e) => write!(f, "database unavailable: {e}"),
            StoreError::Db(e) => write!(f, "database error: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => StoreError::Full(e.to_string()),
            _ => StoreError::Db(e.to_string()),
        }
    }
}

/// A run to create.
#[derive(Clone, Debug)]
pub struct NewRun {
    /// Its id.
    pub id: RunId,
    /// Its name.
    pub name: String,
    /// The run that started it.
    pub parent: Option<RunId>,
    /// Seconds of silence after which it is stalled.
    pub heartbeat_timeout_s: f64,
    /// Seconds after its last event at which it is deleted.
    pub ttl_s: f64,
    /// Type patterns to keep; other events are dropped at ingest.
    pub track: Option<TypeFilter>,
    /// Free-form metadata.
    pub meta: Option<Map<String, Value>>,
    /// SHA-256 of the write token.
    pub write_hash: String,
    /// SHA-256 of the read token.
    pub read_hash: String,
    /// When it was created.
    pub created_at: Timestamp,
}

/// A run's columns as either store reads them, before their values are checked: the
/// one conversion from stored text and numbers to a [`RunHead`] or [`RunRecord`].
pub(crate) struct RunRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) parent: Option<String>,
    pub(crate) heartbeat_timeout_s: f64,
    pub(crate) ttl_s: f64,
    pub(crate) track: Option<String>,
    pub(crate) created_us: i64,
    pub(crate) last_seq: i64,
    pub(crate) status: String,
    pub(crate) last_producer_us: i64,
    pub(crate) ord: i64,
}

impl RunRow {
    pub(crate) fn into_head(self) -> Result<RunHead, StoreError> {
        let bad = |what: &str| StoreError::Db(format!("corrupt run row: {what}"));
        Ok(RunHead {
            id: RunId::new(self.id).map_err(|_| bad("id"))?,
            name: self.name,
            parent: self
                .parent
                .map(RunId::new)
                .transpose()
                .map_err(|_| bad("parent"))?,
            heartbeat_timeout_s: self.heartbeat_timeout_s,
            ttl_s: self.ttl_s,
            track: self
                .track
                .map(|t| t.parse::<TypeFilter>())
                .transpose()
                .map_err(|_| bad("track"))?,
            created_at: Timestamp::from_unix_micros(self.created_us),
            last_seq: u64::try_from(self.last_seq).map_err(|_| bad("last_seq"))?,
            status: self.status.parse().map_err(|_| bad("status"))?,
            last_producer_at: Timestamp::from_unix_micros(self.last_producer_us),
            generation: u64::try_from(self.ord).map_err(|_| bad("ord"))?,
        })
    }

    /// The record, with `state`, the stored state's JSON. A state that cannot be read
    /// back is replaced by the run's initial state (its name, parent and status as
    /// stored) rather than fail the read: lists of runs read every run's stored state,
    /// and one damaged row must not take the whole list down. Reading the run itself
    /// folds its events again and does not use the stored state.
    pub(crate) fn into_record(self, state: &str) -> Result<RunRecord, StoreError> {
        let head = self.into_head()?;
        let state = match serde_json::from_str::<RunState>(state) {
            Ok(state) => state,
            Err(e) => {
                tracing::error!(run = %head.id, error = %e,
                    "the stored state of a run cannot be read back; listed with its initial state");
                let mut state =
                    RunRecord::initial_state(&head.id, &head.name, head.parent.as_ref());
                state.status = head.status;
                state.last_seq = head.last_seq;
                state
            }
        };
        Ok(head.with_state(state))
    }
}

/// `record` if its row could be read; otherwise `None`, logged. Lists of runs (and the
/// sweep's) leave out a run whose row cannot be read back rather than fail whole: one
/// damaged row must not hide every other run.
pub(crate) fn readable(record: Result<RunRecord, StoreError>) -> Option<RunRecord> {
    record
        .map_err(|e| {
            tracing::error!(error = %e, "a stored run cannot be read back; it is left out of lists")
        })
        .ok()
}

/// A token's row (its run's id and its scope) as either store reads it.
pub(crate) fn token_from_row(run: String, scope: &str) -> Result<(RunId, Scope), StoreError> {
    match (RunId::new(run), Scope::parse(scope)) {
        (Ok(run), Some(scope)) => Ok((run, scope)),
        _ => Err(StoreError::Db("corrupt token row".into())),
    }
}

/// A run's row without its state: what an append needs, and what a read needs when
/// the state comes from the cache.
pub(crate) struct RunHead {
    pub(crate) id: RunId,
    pub(crate) name: String,
    pub(crate) parent: Option<RunId>,
    pub(crate) heartbeat_timeout_s: f64,
    pub(crate) ttl_s: f64,
    pub(crate) track: Option<TypeFilter>,
    pub(crate) created_at: Timestamp,
    pub(crate) last_seq: u64,
    pub(crate) status: RunStatus,
    pub(crate) last_producer_at: Timestamp,
    pub(crate) generation: u64,
}

impl RunHead {
    /// Where folding the run's state up to `last_seq` starts: `cached` when it is of
    /// this run and not past `last_seq` (the caller applies the stored events that
    /// follow it, which another process may have appended), the initial state otherwise.
    pub(crate) fn fold_from(&self, cached: Option<RunState>) -> RunState {
        match cached {
            Some(state) if state.last_seq <= self.last_seq => state,
            _ => RunRecord::initial_state(&self.id, &self.name, self.parent.as_ref()),
        }
    }

    /// Whether the run is running and its producer silent past its timeout at `now`.
    pub(crate) fn silent_at(&self, now: Timestamp) -> bool {
        self.status == RunStatus::Running
            && self.last_producer_at < now.add_seconds(-self.heartbeat_timeout_s)
    }

    pub(crate) fn with_state(self, state: RunState) -> RunRecord {
        RunRecord {
            id: self.id,
            name: self.name,
            parent: self.parent,
            heartbeat_timeout_s: self.heartbeat_timeout_s,
            ttl_s: self.ttl_s,
            track: self.track,
            created_at: self.created_at,
            last_seq: self.last_seq,
            status: self.status,
            last_producer_at: self.last_producer_at,
            generation: self.generation,
            state,
        }
    }
}

/// A stored run: its settings and the summary of its state.
#[derive(Clone, Debug)]
pub struct RunRecord {
    /// Its id.
    pub id: RunId,
    /// Its name as created.
    pub name: String,
    /// The run that started it.
    pub parent: Option<RunId>,
    /// Seconds of silence after which it is stalled.
    pub heartbeat_timeout_s: f64,
    /// Seconds after its last event at which it is deleted.
    pub ttl_s: f64,
    /// Type patterns to keep.
    pub track: Option<TypeFilter>,
    /// When it was created.
    pub created_at: Timestamp,
    /// The last stored `seq` (0 before any event).
    pub last_seq: u64,
    /// Its status as of its last event.
    pub status: RunStatus,
    /// When its producer last said anything (or when it was created).
    pub last_producer_at: Timestamp,
    /// Which creation of its id this is: the store's counter of created runs (its
    /// `ord` column), which never repeats a value and grows with each creation. A run
    /// deleted and created again under the same id has a larger one, even when both
    /// were created at the same `created_at` (clocks of several hubs differ, and a
    /// test's clock may stand still).
    pub generation: u64,
    /// Its state as of its last event (without ETA estimators, with their bases).
    pub state: RunState,
}

impl RunRecord {
    /// Whether the run has finished.
    pub fn finished(&self) -> bool {
        self.status.is_terminal()
    }

    /// The state of a run with no events: its name and parent as created.
    pub(crate) fn initial_state(id: &RunId, name: &str, parent: Option<&RunId>) -> RunState {
        let mut state = RunState::new(id.clone());
        state.name = name.to_owned();
        state.parent = parent.cloned();
        state
    }
}

/// The outcome of an append.
#[derive(Clone, Debug)]
pub struct Appended {
    /// The events stored, with their `seq`s.
    pub events: Vec<Event>,
    /// Events skipped because their `id` was already stored (or repeated in the batch).
    pub duplicates: u64,
    /// Events dropped because the run does not track their type.
    pub filtered: u64,
    /// The run's last `seq` after the append.
    pub last_seq: u64,
    /// The run's state after the append.
    pub state: RunState,
    /// The [`RunRecord::generation`] of the run appended to.
    pub generation: u64,
}

/// Which runs to list, newest first.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    /// Only runs with this status.
    pub status: Option<RunStatus>,
    /// Only children of this run.
    pub parent: Option<RunId>,
    /// Only runs created before this time.
    pub before: Option<Timestamp>,
    /// At most this many.
    pub limit: u32,
}

/// Who an append speaks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Author {
    /// The run's producer: the append resets stall detection.
    Producer,
    /// The hub itself (`run.stalled`, `run.cancel_requested`): the producer is as
    /// silent as before.
    Hub,
}

/// When an append stores its drafts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Condition {
    /// Whatever the run's silence.
    Always,
    /// Only while, inside the append's transaction, the run is running and its
    /// producer silent past its timeout (`run.stalled`).
    ProducerSilent,
}

/// Storage of runs and events.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates a run with its token hashes; `Conflict` if the id is taken.
    async fn create_run(&self, run: &NewRun) -> Result<RunRecord, StoreError>;

    /// A run's record.
    async fn run(&self, id: &RunId) -> Result<RunRecord, StoreError>;

    /// The run and scope a token hash belongs to.
    async fn token(&self, hash: &str) -> Result<Option<(RunId, crate::auth::Scope)>, StoreError>;

    /// Appends drafts as one atomic, durable batch, stamped `now` where they have no
    /// time. Events the hub writes itself (`run.stalled`, `run.cancel_requested`) go
    /// through here too; `author` says whether these count as the producer speaking
    /// (which resets stall detection).
    async fn append(
        &self,
        id: &RunId,
        drafts: Vec<Draft>,
        now: Timestamp,
        author: Author,
    ) -> Result<Appended, StoreError>;

    /// Appends the hub's `run.stalled` draft if, inside the append's transaction, the
    /// run is still running and its producer still silent past its timeout at `now`;
    /// otherwise appends nothing.
    async fn mark_stalled(
        &self,
        id: &RunId,
        draft: Draft,
        now: Timestamp,
    ) -> Result<Appended, StoreError>;

    /// Up to `limit` events with `seq > after`, in order.
    async fn events(&self, id: &RunId, after: u64, limit: u32) -> Result<Vec<Event>, StoreError>;

    /// Runs, newest first.
    async fn list(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError>;

    /// Deletes a run, its tokens and its events, and returns the run's
    /// [`RunRecord::generation`]; `NotFound` if there is none.
    async fn delete(&self, id: &RunId) -> Result<u64, StoreError>;

    /// Running runs whose producer has been silent past their heartbeat timeout.
    async fn silent_runs(&self, now: Timestamp) -> Result<Vec<RunRecord>, StoreError>;

    /// Deletes up to `limit` runs whose last event is older than their time to live at
    /// `now`, and returns their ids and [`RunRecord::generation`]s. The condition is
    /// checked by the delete itself, so a run that got an event since it was found
    /// expired is kept, and several hubs sweeping at once delete each run once.
    async fn delete_expired(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(RunId, u64)>, StoreError>;

    /// Counts of runs by status, for metrics.
    async fn count_by_status(&self) -> Result<Vec<(RunStatus, u64)>, StoreError>;

    /// Stored events this store found it could not read back (and served as
    /// `custom.unreadable` markers instead), each counted once per process.
    fn unreadable_events(&self) -> u64;

    /// Wake-ups for runs changed by any process on the same database, for stores that
    /// several hubs share: the hub catches the woken runs' readers up from the store.
    /// `None` when the store has no notifications (readers then rely on the feeds'
    /// polling alone).
    fn wakes(&self) -> Option<broadcast::Receiver<Wake>> {
        None
    }
}

/// A wake-up from the store: something changed, read the store to see what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wake {
    /// The run was created or appended to.
    Run(RunId),
    /// The run's creation of that [`RunRecord::generation`] was deleted. A reader told
    /// of a run by an earlier read needs this to know which creation is gone: reading
    /// the store after the fact finds nothing, or a run created again since.
    Deleted(RunId, u64),
    /// Anything may have changed: notifications were lost (the store reconnected, or
    /// a receiver fell behind), so every reader catches up.
    All,
}

/// Folded run states kept in memory, so that the ETA estimators survive between
/// appends and reads do not re-fold a run's whole history.
///
/// Each state is kept with its run's `created_at`, and served only for that run: a run
/// deleted and created again under the same id (perhaps through another hub, which this
/// process does not hear of) is another run.
pub(crate) struct StateCache {
    states: Mutex<Lru<RunId, (Timestamp, RunState)>>,
}

/// States kept; beyond, the state used least recently is dropped (and read again
/// from the store when needed). A state is a few kilobytes.
const CACHE_CAPACITY: usize = 10_000;

impl Default for StateCache {
    fn default() -> StateCache {
        StateCache {
            states: Mutex::new(Lru::new(CACHE_CAPACITY)),
        }
    }
}

impl StateCache {
    /// The cached state of the run `id` created at `created_at`.
    pub(crate) fn get(&self, id: &RunId, created_at: Timestamp) -> Option<RunState> {
        let mut states = self.lock();
        let (created, state) = states.get(id)?;
        (*created == created_at).then(|| state.clone())
    }

    /// The `last_seq` of the cached state of `id`, without copying the state: a guess
    /// (it may be another run's of the same id, or behind the store).
    pub(crate) fn last_seq(&self, id: &RunId) -> Option<u64> {
        self.lock().peek(id).map(|(_, state)| state.last_seq)
    }

    /// Keeps `state` of the run created at `created_at`, unless a later state of that
    /// run is cached already (two appends may finish in either order).
    pub(crate) fn put(&self, created_at: Timestamp, state: RunState) {
        let mut states = self.lock();
        if let Some((created, cached)) = states.peek(&state.id)
            && *created == created_at
            && cached.last_seq > state.last_seq
        {
            return;
        }
        states.insert(state.id.clone(), (created_at, state));
    }

    /// Keeps the state of a run just created, whatever was cached for its id.
    pub(crate) fn replace(&self, created_at: Timestamp, state: RunState) {
        self.lock().remove(&state.id);
        self.put(created_at, state);
    }

    pub(crate) fn remove(&self, id: &RunId) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru<RunId, (Timestamp, RunState)>> {
        self.states.lock().unwrap_or_else(|e| e.into_inner())
    }
}
