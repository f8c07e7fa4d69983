//! The PostgreSQL store, for several hubs serving the same runs: PostgreSQL is the
//! source of truth, and a notification only wakes readers.
//!
//! An append is one transaction on a pooled connection: it locks the run's row
//! (`SELECT ... FOR UPDATE`), so appends to one run through any number of hubs are
//! serialized and `seq` stays dense; it reads which of the batch's idempotency ids are
//! stored (one query for the batch), folds with the same [`Batch::fold`] as SQLite,
//! inserts the events (one `INSERT ... SELECT FROM UNNEST`), writes the run's summary
//! back, and `NOTIFY`s the run's id. PostgreSQL delivers a notification only when its
//! transaction commits, so a woken reader always finds the events. A deletion's
//! notification also carries the deleted run's generation ([`Wake::Deleted`]), as
//! reading the store afterwards cannot tell which creation of the id went.
//!
//! A listener task holds one connection (`application_name` `herald-listener`) that
//! `LISTEN`s on [`CHANNEL`] and turns each notification into a [`Wake`]. When that
//! connection is lost it connects again, `LISTEN`s, and only then sends [`Wake::All`],
//! so every reader catches up from its cursor after the listener is back: an event
//! committed while the listener was away is read then, and one committed after is
//! notified. The hub's feeds also poll on an interval, so a lost notification costs
//! latency, never an event.
//!
//! Stall detection and retention are safe with several hubs sweeping: `run.stalled`
//! is appended only if the run, re-read under its row lock, is still silent; expired
//! runs are found and deleted in one statement that skips rows another transaction
//! holds (`FOR UPDATE SKIP LOCKED`), so each run is deleted once, and a run that got an
//! event meanwhile is not.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald_protocol::{Draft, Event, RunId, RunState, RunStatus, Timestamp};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, Postgres, QueryBuilder, Row, Transaction};
use tokio::sync::broadcast;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{
    Appended, Author, Batch, Condition, NewRun, Read, RunFilter, RunHead, RunRecord, RunRow,
    StateCache, Store, StoreError, Unreadable, Wake, stamp_ahead,
};
use crate::auth::Scope;
use crate::store::{readable, token_from_row};

/// The channel notifications go on. The payload is a run id, for a creation or an
/// append; or a run id, a space and a generation, for a deletion (run ids have no
/// spaces).
pub(super) const CHANNEL: &str = "herald_runs";

/// The migrations, embedded in the binary and applied at start under an advisory
/// lock, so hubs starting together apply each once.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// An append's writes, after the run's row is locked: its events, its summary, and the
/// notification (delivered when the transaction commits). Data-modifying `WITH`
/// clauses run whether or not the query reads them.
const WRITE_BATCH: &str = "\
    WITH inserted AS ( \
        INSERT INTO events (run_id, seq, event_id, body) \
        SELECT $1, * FROM UNNEST($2::BIGINT[], $3::TEXT[], $4::TEXT[])), \
    updated AS ( \
        UPDATE runs SET last_seq = $5, status = $6, \
            last_received_us = GREATEST(last_received_us, $7), last_producer_us = $8, state = $9 \
        WHERE id = $1) \
    SELECT pg_notify($10, $1)";

/// Most pooled connections per hub: appends hold one for their transaction.
const MAX_CONNECTIONS: u32 = 16;

/// How long a request waits for a pooled connection before it fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Wake-ups kept for a hub that is slow to take them; beyond, it catches up on all.
const WAKE_BACKLOG: usize = 4096;

/// A run's columns but its state, in [`head_from_row`]'s order.
macro_rules! head_columns {
    () => {
        "id, name, parent, heartbeat_timeout_s, ttl_s, track, created_us, last_seq, status, \
         last_producer_us, ord"
    };
}

/// Runs, tokens and events in a PostgreSQL database that several hubs may share.
pub struct PostgresStore {
    pool: PgPool,
    cache: Arc<StateCache>,
    unreadable: Unreadable,
    wakes: broadcast::Sender<Wake>,
    /// Stops the listener task when the store is dropped.
    _listener: DropGuard,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`),
    /// applies the migrations, and starts listening for other hubs' changes.
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Db(format!("not a PostgreSQL URL: {e}")))?;
        let database = format!(
            "PostgreSQL at {}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("(default database)")
        );
        let options = options.application_name("herald");
        // One connection first, for the real cause of a failure ("connection refused",
        // "database does not exist") at once: the pool would wait out its timeout and
        // report only that.
        let cannot = |e: sqlx::Error| StoreError::Db(format!("cannot connect to {database}: {e}"));
        PgConnection::connect_with(&options)
            .await
            .map_err(cannot)?
            .close()
            .await
            .map_err(cannot)?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await
            .map_err(cannot)?;
        MIGRATOR.run(&pool).await.map_err(|e| {
            StoreError::Db(format!("cannot apply the migrations to {database}: {e}"))
        })?;
        // The listener's own pool of one, so its connection is never lent to a request
        // and shows under its own name in `pg_stat_activity`.
        let listen_pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options.application_name("herald-listener"));
        let wakes = broadcast::channel(WAKE_BACKLOG).0;
        let stop = CancellationToken::new();
        tokio::spawn(listen(listen_pool, wakes.clone(), stop.clone()));
        Ok(PostgresStore {
            pool,
            cache: Arc::new(StateCache::default()),
            unreadable: Unreadable::default(),
            wakes,
            _listener: stop.drop_guard(),
        })
    }

    /// A pooled connection; failing to get one means the database cannot be reached.
    async fn acquire(&self) -> Result<PoolConnection<Postgres>, StoreError> {
        self.pool.acquire().await.map_err(unreachable)
    }

    /// A transaction on a pooled connection, as [`PostgresStore::acquire`].
    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool.begin().await.map_err(unreachable)
    }

    /// Appends in one transaction under the run's row lock; see the module's doc.
    async fn append_batch(
        &self,
        id: &RunId,
        drafts: Vec<Draft>,
        now: Timestamp,
        author: Author,
        condition: Condition,
    ) -> Result<Appended, StoreError> {
        let stamped = stamp_ahead(id, drafts, now, self.cache.last_seq(id));
        let mut tx = self.begin().await?;
        let head = sqlx::query(concat!(
            "SELECT ",
            head_columns!(),
            " FROM runs WHERE id = $1 FOR UPDATE"
        ))
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)
        .and_then(|row| head_from_row(&row))?;
        let cached = self.cache.get(id, head.created_at);
        let state = fold_state(&mut tx, &head, cached, &self.unreadable).await?;
        if condition == Condition::ProducerSilent && !head.silent_at(now) {
            return Ok(Batch::empty(&head, state).into_appended());
        }
        let ids: Vec<&str> = stamped.iter().filter_map(|s| s.id()).collect();
        let stored: std::collections::HashSet<String> = if ids.is_empty() {
            Default::default()
        } else {
            sqlx::query_scalar(
                "SELECT event_id FROM events WHERE run_id = $1 AND event_id = ANY($2)",
            )
            .bind(id.as_str())
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect()
        };
        let batch = Batch::fold(&head, state, stamped, |event_id| {
            Ok(stored.contains(event_id))
        })?;
        if batch.events.is_empty() {
            // Nothing written: the transaction only held the lock.
            tx.rollback().await?;
            return Ok(batch.into_appended());
        }
        let seqs: Vec<i64> = batch.events.iter().map(|e| e.seq as i64).collect();
        let event_ids: Vec<Option<&str>> = batch.events.iter().map(|e| e.id.as_deref()).collect();
        // The rows, the run's summary and the notification in one statement: one round
        // trip where three took three (an append is a handful of round trips and a
        // WAL flush, so each counts).
        sqlx::query(WRITE_BATCH)
            .bind(id.as_str())
            .bind(&seqs)
            .bind(&event_ids)
            .bind(&batch.bodies)
            .bind(batch.last_seq as i64)
            .bind(batch.state.status.as_str())
            .bind(Batch::last_received_us(now))
            .bind(Batch::last_producer_us(&head, now, author))
            .bind(batch.state_json()?)
            .bind(CHANNEL)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.cache.put(head.created_at, batch.state.clone());
        Ok(batch.into_appended())
    }
}

/// The wake-up a notification's payload (see [`CHANNEL`]) asks for: [`Wake::All`] if
/// it is not one this store sends, as then anything may have changed.
fn wake_of(payload: &str) -> Wake {
    let (id, generation) = match payload.split_once(' ') {
        Some((id, generation)) => match generation.parse() {
            Ok(generation) => (id, Some(generation)),
            Err(_) => return Wake::All,
        },
        None => (payload, None),
    };
    match (RunId::new(id), generation) {
        (Ok(id), Some(generation)) => Wake::Deleted(id, generation),
        (Ok(id), None) => Wake::Run(id),
        (Err(_), _) => Wake::All,
    }
}

/// Wakes every hub's readers of `id` once the transaction commits.
async fn notify(conn: &mut PgConnection, id: &RunId) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(id.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// Turns notifications into wake-ups until `stop`: `LISTEN`, then [`Wake::All`] (so
/// readers catch up on what they may have missed before), then one [`Wake::Run`] or
/// [`Wake::Deleted`] per notification; on a lost connection, the same again after a
/// pause that grows.
async fn listen(pool: PgPool, wakes: broadcast::Sender<Wake>, stop: CancellationToken) {
    const FIRST_PAUSE: Duration = Duration::from_millis(100);
    const LONGEST_PAUSE: Duration = Duration::from_secs(5);
    let mut pause = FIRST_PAUSE;
    while !stop.is_cancelled() {
        let listening = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            res = listening => match res {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?pause, "cannot listen for notifications");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = stop.cancelled() => return,
                    }
                    pause = (pause * 2).min(LONGEST_PAUSE);
                    continue;
                }
            },
            () = stop.cancelled() => return,
        };
        pause = FIRST_PAUSE;
        tracing::debug!(channel = CHANNEL, "listening for notifications");
        let _ = wakes.send(Wake::All);
        loop {
            let received = tokio::select! {
                res = listener.try_recv() => res,
                () = stop.cancelled() => return,
            };
            match received {
                Ok(Some(notification)) => {
                    let _ = wakes.send(wake_of(notification.payload()));
                }
                Ok(None) => {
                    tracing::warn!("the notification connection was lost; listening again");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the notification connection failed; listening again");
                    break;
                }
            }
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> StoreError {
        if is_unreachable(&e) {
            StoreError::Unavailable(e.to_string())
        } else if is_disk_full(&e) {
            StoreError::Full(e.to_string())
        } else {
            StoreError::Db(e.to_string())
        }
    }
}

/// Whether `e` is PostgreSQL's `disk_full` (SQLSTATE 53100): a table or index could
/// not grow, and the statement, and so its transaction, failed.
fn is_disk_full(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("53100"))
}

/// A failure to get a connection: whatever the cause (refused, timed out, the
/// database not taking connections), the database cannot be reached.
fn unreachable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Whether `e`, from a statement, says the database cannot be reached now rather than
/// that the statement failed: the connection broke, or the server said it is shutting
/// down, starting, or full.
fn is_unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // Class 08: connection exception; 57P01-57P03: admin shutdown, crash
            // shutdown, cannot connect now; 53300: too many connections.
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// The columns of `head_columns!`, in that order, at the start of `row`.
fn run_row(row: &PgRow) -> Result<RunRow, StoreError> {
    Ok(RunRow {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        parent: row.try_get(2)?,
        heartbeat_timeout_s: row.try_get(3)?,
        ttl_s: row.try_get(4)?,
        track: row.try_get(5)?,
        created_us: row.try_get(6)?,
        last_seq: row.try_get(7)?,
        status: row.try_get(8)?,
        last_producer_us: row.try_get(9)?,
        ord: row.try_get(10)?,
    })
}

fn head_from_row(row: &PgRow) -> Result<RunHead, StoreError> {
    run_row(row)?.into_head()
}

/// A run's record, its stored state included, from `head_columns!` then `state`.
fn record_from_row(row: &PgRow) -> Result<RunRecord, StoreError> {
    let state: String = row.try_get(11)?;
    run_row(row)?.into_record(&state)
}

/// Up to `limit` events of `id` with `after < seq <= upto`, in order, with a marker
/// for each row that cannot be read back (see `readback.rs`).
async fn events_between(
    conn: &mut PgConnection,
    id: &RunId,
    after: u64,
    upto: u64,
    limit: u32,
    unreadable: &Unreadable,
) -> Result<Vec<Event>, StoreError> {
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT seq, body FROM events WHERE run_id = $1 AND seq > $2 AND seq <= $3 \
         ORDER BY seq LIMIT $4",
    )
    .bind(id.as_str())
    .bind(after as i64)
    .bind(upto as i64)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    let reads: Vec<Read> = rows
        .iter()
        .map(|(seq, body)| Read::row(id, *seq as u64, Ok(body)))
        .collect();
    let created_at = if Read::need_created_at(&reads) {
        sqlx::query_scalar("SELECT created_us FROM runs WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&mut *conn)
            .await?
            .map(Timestamp::from_unix_micros)
    } else {
        None
    };
    Ok(unreadable.events(id, reads, created_at))
}

/// The run's state folded up to `head.last_seq`: from `cached` when it can be (see
/// [`RunHead::fold_from`]), caught up from the stored events.
async fn fold_state(
    conn: &mut PgConnection,
    head: &RunHead,
    cached: Option<RunState>,
    unreadable: &Unreadable,
) -> Result<RunState, StoreError> {
    let mut state = head.fold_from(cached);
    while state.last_seq < head.last_seq {
        let events = events_between(
            conn,
            &head.id,
            state.last_seq,
            head.last_seq,
            1000,
            unreadable,
        )
        .await?;
        if events.is_empty() {
            break;
        }
        state.apply_all(&events);
    }
    Ok(state)
}

fn is_unique_violation(e: &sqlx::Error, constraint: &str) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation() && db.constraint() == Some(constraint))
}

#[async_trait]
impl Store for PostgresStore {
    async fn create_run(&self, run: &NewRun) -> Result<RunRecord, StoreError> {
        let state = RunRecord::initial_state(&run.id, &run.name, run.parent.as_ref());
        let state_json =
            serde_json::to_string(&state).map_err(|e| StoreError::Db(e.to_string()))?;
        let created_us = run.created_at.unix_micros();
        let mut tx = self.begin().await?;
        let inserted = sqlx::query_scalar::<_, i64>(
            "INSERT INTO runs (id, name, parent, heartbeat_timeout_s, ttl_s, track, meta, \
             created_us, last_received_us, last_producer_us, state) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $8, $9) RETURNING ord",
        )
        .bind(run.id.as_str())
        .bind(&run.name)
        .bind(run.parent.as_ref().map(RunId::as_str))
        .bind(run.heartbeat_timeout_s)
        .bind(run.ttl_s)
        .bind(run.track.as_ref().map(ToString::to_string))
        .bind(
            run.meta
                .as_ref()
                .map(|m| serde_json::Value::Object(m.clone()).to_string()),
        )
        .bind(created_us)
        .bind(state_json)
        .fetch_one(&mut *tx)
        .await;
        let ord = match inserted {
            Err(e) if is_unique_violation(&e, "runs_pkey") => return Err(StoreError::Conflict),
            other => other?,
        };
        sqlx::query("INSERT INTO tokens (hash, run_id, scope) VALUES ($1, $3, $4), ($2, $3, $5)")
            .bind(&run.write_hash)
            .bind(&run.read_hash)
            .bind(run.id.as_str())
            .bind(Scope::Write.as_str())
            .bind(Scope::Read.as_str())
            .execute(&mut *tx)
            .await?;
        notify(&mut tx, &run.id).await?;
        tx.commit().await?;
        // A state cached for an earlier run of the same id (deleted, perhaps through
        // another hub) must not be taken for this one's.
        self.cache.replace(run.created_at, state.clone());
        let head = RunHead {
            id: run.id.clone(),
            name: run.name.clone(),
            parent: run.parent.clone(),
            heartbeat_timeout_s: run.heartbeat_timeout_s,
            ttl_s: run.ttl_s,
            track: run.track.clone(),
            created_at: run.created_at,
            last_seq: 0,
            status: RunStatus::Running,
            last_producer_at: run.created_at,
            generation: u64::try_from(ord)
                .map_err(|_| StoreError::Db("corrupt run row: ord".into()))?,
        };
        Ok(head.with_state(state))
    }

    async fn run(&self, id: &RunId) -> Result<RunRecord, StoreError> {
        let mut conn = self.acquire().await?;
        let head = sqlx::query(concat!(
            "SELECT ",
            head_columns!(),
            " FROM runs WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound)
        .and_then(|row| head_from_row(&row))?;
        // Serve the cached state (with ETA estimators) when it is current.
        let cached = self.cache.get(id, head.created_at);
        let state = fold_state(&mut conn, &head, cached, &self.unreadable).await?;
        self.cache.put(head.created_at, state.clone());
        Ok(head.with_state(state))
    }

    async fn token(&self, hash: &str) -> Result<Option<(RunId, Scope)>, StoreError> {
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT run_id, scope FROM tokens WHERE hash = $1")
                .bind(hash)
                .fetch_optional(&mut *self.acquire().await?)
                .await?;
        let Some((run, scope)) = row else {
            return Ok(None);
        };
        token_from_row(run, &scope).map(Some)
    }

    async fn append(
        &self,
        id: &RunId,
        drafts: Vec<Draft>,
        now: Timestamp,
        author: Author,
    ) -> Result<Appended, StoreError> {
        self.append_batch(id, drafts, now, author, Condition::Always)
            .await
    }

    async fn mark_stalled(
        &self,
        id: &RunId,
        draft: Draft,
        now: Timestamp,
    ) -> Result<Appended, StoreError> {
        self.append_batch(id, vec![draft], now, Author::Hub, Condition::ProducerSilent)
            .await
    }

    async fn events(&self, id: &RunId, after: u64, limit: u32) -> Result<Vec<Event>, StoreError> {
        let mut conn = self.acquire().await?;
        events_between(
            &mut conn,
            id,
            after,
            i64::MAX as u64,
            limit,
            &self.unreadable,
        )
        .await
    }

    async fn list(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        // Only the conditions asked for, so the planner can use the index of the one
        // given.
        let mut sql = QueryBuilder::new(concat!(
            "SELECT ",
            head_columns!(),
            ", state FROM runs WHERE TRUE"
        ));
        if let Some(status) = filter.status {
            sql.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(parent) = &filter.parent {
            sql.push(" AND parent = ").push_bind(parent.as_str());
        }
        if let Some(before) = filter.before {
            sql.push(" AND created_us < ")
                .push_bind(before.unix_micros());
        }
        sql.push(" ORDER BY created_us DESC, ord DESC LIMIT ")
            .push_bind(i64::from(filter.limit));
        let rows = sql.build().fetch_all(&mut *self.acquire().await?).await?;
        Ok(rows
            .iter()
            .filter_map(|row| readable(record_from_row(row)))
            .collect())
    }

    async fn delete(&self, id: &RunId) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let ord: i64 = sqlx::query_scalar("DELETE FROM runs WHERE id = $1 RETURNING ord")
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        sqlx::query("SELECT pg_notify($1, $2 || ' ' || $3)")
            .bind(CHANNEL)
            .bind(id.as_str())
            .bind(ord)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.cache.remove(id);
        u64::try_from(ord).map_err(|_| StoreError::Db("corrupt run row: ord".into()))
    }

    async fn silent_runs(&self, now: Timestamp) -> Result<Vec<RunRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            head_columns!(),
            ", state FROM runs WHERE status = 'running' AND silent_us < $1"
        ))
        .bind(now.unix_micros())
        .fetch_all(&mut *self.acquire().await?)
        .await?;
        Ok(rows
            .iter()
            .filter_map(|row| readable(record_from_row(row)))
            .collect())
    }

    async fn delete_expired(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(RunId, u64)>, StoreError> {
        let mut tx = self.begin().await?;
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "DELETE FROM runs WHERE id IN ( \
                 SELECT id FROM runs WHERE expires_us < $1 \
                 ORDER BY expires_us LIMIT $2 FOR UPDATE SKIP LOCKED) \
             RETURNING id, ord",
        )
        .bind(now.unix_micros())
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, ords): (Vec<String>, Vec<i64>) = rows.into_iter().unzip();
        sqlx::query(
            "SELECT pg_notify($1, id || ' ' || ord) FROM UNNEST($2::TEXT[], $3::BIGINT[]) \
             AS deleted (id, ord)",
        )
        .bind(CHANNEL)
        .bind(&ids)
        .bind(&ords)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let corrupt = |what: &str| StoreError::Db(format!("corrupt run row: {what}"));
        ids.into_iter()
            .zip(ords)
            .map(|(id, ord)| {
                let id = RunId::new(id).map_err(|_| corrupt("id"))?;
                self.cache.remove(&id);
                Ok((id, u64::try_from(ord).map_err(|_| corrupt("ord"))?))
            })
            .collect()
    }

    async fn count_by_status(&self) -> Result<Vec<(RunStatus, u64)>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM runs GROUP BY status")
                .fetch_all(&mut *self.acquire().await?)
                .await?;
        rows.into_iter()
            .map(|(status, n)| {
                let status = status.parse().map_err(|e: String| StoreError::Db(e))?;
                Ok((status, n as u64))
            })
            .collect()
    }

    fn unreadable_events(&self) -> u64 {
        self.unreadable.count()
    }

    fn wakes(&self) -> Option<broadcast::Receiver<Wake>> {
        Some(self.wakes.subscribe())
    }
}
