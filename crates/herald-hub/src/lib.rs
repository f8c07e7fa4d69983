//! The herald hub (`herald serve`): any process posts events for a run, any viewer
//! polls, long-polls or subscribes (SSE, WebSocket); docs/http-api.md describes the routes.
//!
//! [`app`] builds the routes over a [`Hub`]; [`serve`] runs them on a listener until a
//! shutdown future resolves, so a test can bind `127.0.0.1:0` or call the router
//! directly.
//!
//! # Layout
//!
//! - `api`: the REST routes: create, append, state, poll, cancel, delete, list.
//! - `stream`: SSE, WebSocket and the long poll, over a per-subscriber cursor.
//! - `agui`: `?format=ag-ui`, a run's events as AG-UI events (docs/http-api.md#ag-ui).
//! - `feed`: fan-out of new events to subscribers without a query per subscriber.
//! - `store`: the [`Store`] trait and its SQLite and PostgreSQL implementations.
//! - `auth`: admin and per-run tokens, hashed at rest, compared in constant time.
//! - `error`: [`ApiError`], the one error type, with the error body of docs/http-api.md#errors.
//! - `mcp`: `/mcp`, the tools and resources of docs/mcp.md over MCP's streamable HTTP.
//! - `metrics`, `openapi`: `/metrics` and `/openapi.json`.
//! - `dashboard`: the web pages (`/`, `/runs/{id}`) and their embedded assets.
//! - `guard`: what every request is checked for first: `Host` and `Origin` on an open
//!   hub, a JSON media type on a body.
//! - `server`: the accept loop, the connection cap and the header, body and idle
//!   timeouts.
//! - `limit`: [`RateLimit`], the per-run ingest limit behind `429`.
//! - `clock`: [`Clock`], so that stall detection and retention are testable.

#![deny(missing_docs)]

mod agui;
mod api;
mod auth;
mod clock;
mod dashboard;
mod error;
mod feed;
mod guard;
mod limit;
mod mcp;
mod metrics;
mod openapi;
mod server;
mod store;
mod stream;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use herald_protocol::{Draft, RunId, RunStalled, RunState};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use auth::Scope;
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::ApiError;
pub use limit::RateLimit;
pub use mcp::{
    INSTRUCTIONS as MCP_INSTRUCTIONS, jsonrpc_refusal as mcp_jsonrpc_refusal,
    protocol_versions as mcp_protocol_versions, server_config as mcp_server_config,
    tool_error as mcp_tool_error, tools as mcp_tools,
};
pub use store::{
    Appended, NewRun, PostgresStore, RunFilter, RunRecord, SqliteStore, Store, StoreError, Wake,
    open_store,
};

/// How the hub behaves.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// The admin token, of at least [`MIN_TOKEN_CHARS`] characters; `None` runs the hub
    /// open (only allowed on loopback), and then it answers only requests sent to a
    /// loopback name from its own pages or `cors_origins`.
    pub admin_token: Option<String>,
    /// Largest request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Most events in one append (413 beyond).
    pub max_batch: usize,
    /// Heartbeat timeout of runs created without one, in seconds.
    pub default_heartbeat_timeout_s: f64,
    /// Time to live of runs created without one, in seconds.
    pub default_ttl_s: f64,
    /// How often stall detection and retention run.
    pub sweep_interval: Duration,
    /// How often a run's feed checks the store for events appended by other processes.
    pub feed_poll_interval: Duration,
    /// Interval of SSE keep-alive comments.
    pub keep_alive: Duration,
    /// The base URL put in links (`urls` of a created run); by default
    /// `http://<Host header>`.
    pub public_url: Option<String>,
    /// How fast producers may append to one run (429 beyond); `None`: no limit.
    pub rate_limit: Option<RateLimit>,
    /// Web origins (`https://app.example.com`) whose pages may call the API from a
    /// browser (CORS), such as an AG-UI front end served elsewhere; `"*"` for any.
    /// Empty, the default: only the hub's own dashboard, from its own origin.
    pub cors_origins: Vec<String>,
    /// How long a client may take to send a request's headers, from its connection or
    /// from the first byte of the request; the connection is closed beyond.
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body, from its headers: 408
    /// beyond.
    pub body_timeout: Duration,
    /// How long a keep-alive connection may stay idle between requests. A response
    /// that streams (SSE, a long poll) is not idle, nor is a WebSocket.
    pub idle_timeout: Duration,
    /// Most connections open at once (WebSockets included); beyond, new connections
    /// wait to be accepted until one closes. Keep it under the process's limit of open
    /// files, or the hub may fail to accept even `/healthz`.
    pub max_connections: usize,
}

/// Fewest characters of an admin token: a token a person could guess is no token.
pub const MIN_TOKEN_CHARS: usize = 16;

/// A setting of [`HubConfig`] the hub refuses to run with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The setting, as [`HubConfig`] names it (`admin_token`).
    pub setting: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

impl HubConfig {
    /// Checks what the types cannot: an admin token of at least [`MIN_TOKEN_CHARS`]
    /// characters, not all whitespace; timeouts above zero; room for a connection.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(token) = &self.admin_token {
            check_admin_token(token)?;
        }
        for (setting, timeout) in [
            ("header_timeout", self.header_timeout),
            ("body_timeout", self.body_timeout),
            ("idle_timeout", self.idle_timeout),
        ] {
            if timeout.is_zero() {
                return Err(ConfigError {
                    setting,
                    message: format!("{setting} must be longer than 0"),
                });
            }
        }
        if self.max_connections == 0 {
            return Err(ConfigError {
                setting: "max_connections",
                message: "max_connections must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// Checks an admin token as [`HubConfig::validate`] does.
pub fn check_admin_token(token: &str) -> Result<(), ConfigError> {
    let refuse = |message: String| ConfigError {
        setting: "admin_token",
        message,
    };
    if token.trim().is_empty() {
        return Err(refuse(
            "the admin token is empty or all whitespace: give a random one of at least 16 \
             characters (e.g. `openssl rand -hex 32`)"
                .into(),
        ));
    }
    let chars = token.chars().count();
    if chars < MIN_TOKEN_CHARS {
        return Err(refuse(format!(
            "the admin token has {chars} characters, fewer than {MIN_TOKEN_CHARS}: give a \
             random one (e.g. `openssl rand -hex 32`)"
        )));
    }
    Ok(())
}

/// The default ingest limit of one run, in events per second: far above what a
/// program reporting through the SDK sends (its ticks are throttled), so only a
/// runaway producer meets it.
pub const DEFAULT_EVENTS_PER_S: f64 = 10_000.0;

impl Default for HubConfig {
    fn default() -> HubConfig {
        HubConfig {
            admin_token: None,
            max_body_bytes: 4 * 1024 * 1024,
            max_batch: 1000,
            default_heartbeat_timeout_s: 60.0,
            default_ttl_s: 86_400.0,
            sweep_interval: Duration::from_secs(1),
            feed_poll_interval: Duration::from_secs(2),
            keep_alive: Duration::from_secs(15),
            public_url: None,
            rate_limit: Some(RateLimit::per_second(DEFAULT_EVENTS_PER_S)),
            cors_origins: Vec::new(),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            max_connections: 10_000,
        }
    }
}

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
/// Bounded: it starts over when full. For the hub that costs a repeated broadcast,
/// which the streams drop; for a stream, which reaches it only after 10,000 runs, a
/// stale state could then pass once.
#[derive(Default)]
pub(crate) struct ShownRuns {
    last: std::collections::HashMap<RunId, Told>,
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
        if self.last.len() >= Self::CAPACITY && !self.last.contains_key(run) {
            self.last.clear();
        }
        let news = match (self.last.get(run), last_seq) {
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
        self.last.get(run).map(|told| told.generation)
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
        from_producer: bool,
    ) -> Result<Appended, StoreError> {
        let hub = self.clone();
        let id = run.clone();
        let started = std::time::Instant::now();
        let task = tokio::spawn(async move {
            let now = hub.now();
            let appended = hub
                .inner
                .store
                .append(&id, drafts, now, from_producer)
                .await?;
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

/// The routes of docs/http-api.md over `hub`.
pub fn app(hub: Hub) -> Router {
    api::router(hub)
}

/// Serves `hub` on `listener` (with its sweeper) until `shutdown` resolves; then stops
/// accepting, ends open streams, and lets in-flight requests finish. Refuses to start
/// (`InvalidInput`) with a configuration [`HubConfig::validate`] refuses.
pub async fn serve(
    listener: TcpListener,
    hub: Hub,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    hub.config()
        .validate()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let sweeper = hub.spawn_sweeper();
    let waker = hub.spawn_waker();
    let stopping = hub.clone();
    let signal = tokio::spawn(async move {
        shutdown.await;
        stopping.shutdown();
    });
    server::run(
        listener,
        app(hub.clone()),
        hub.config(),
        hub.shutdown_token().clone(),
    )
    .await;
    signal.abort();
    sweeper.abort();
    if let Some(waker) = waker {
        waker.abort();
    }
    Ok(())
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
