//! The SQLite store: one file (`herald.db`) in WAL mode.
//!
//! Writes go through one connection per process, and every write transaction starts
//! with `BEGIN IMMEDIATE`, which takes SQLite's write lock up front: appends from
//! several tasks, or several processes on the same file, are serialized by the
//! database, so `seq` stays dense. `synchronous=NORMAL` in WAL mode makes a committed
//! transaction survive the process being killed (only an OS crash or power loss can
//! lose the last transactions), which is the guarantee the hub gives.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use herald_protocol::{
    Draft, Event, RunId, RunState, RunStatus, Timestamp, TypeFilter, parse_event,
};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, SqliteConnection, SqlitePool};

use super::{Appended, NewRun, RunFilter, RunRecord, StateCache, Store, StoreError};
use crate::auth::Scope;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS runs (
    ord INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    parent TEXT,
    heartbeat_timeout_s REAL NOT NULL,
    ttl_s REAL NOT NULL,
    track TEXT,
    meta TEXT,
    created_us INTEGER NOT NULL,
    last_seq INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'running',
    last_event_us INTEGER NOT NULL,
    last_producer_us INTEGER NOT NULL,
    state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status, last_producer_us);
CREATE INDEX IF NOT EXISTS runs_parent ON runs (parent);
CREATE INDEX IF NOT EXISTS runs_expiry ON runs (last_event_us);
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    scope TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tokens_run ON tokens (run_id);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    event_id TEXT,
    body TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS events_idempotency ON events (run_id, event_id) WHERE event_id IS NOT NULL;
"#;

/// Runs, tokens and events in a SQLite file.
pub struct SqliteStore {
    /// One connection: writes in this process queue here rather than spin on the lock.
    writer: SqlitePool,
    readers: SqlitePool,
    cache: StateCache,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::Db(format!("cannot create {}: {e}", dir.display())))?;
            }
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        Self::connect(options).await
    }

    /// Opens the database named by a `sqlite://PATH` URL.
    pub async fn open_url(url: &str) -> Result<SqliteStore, StoreError> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| StoreError::Db(format!("not a sqlite URL: {url}")))?;
        let path = path.split('?').next().unwrap_or(path);
        Self::open(Path::new(path)).await
    }

    async fn connect(options: SqliteConnectOptions) -> Result<SqliteStore, StoreError> {
        // No ping on acquire: for a SQLite file it only proves that sqlx's worker
        // thread answers, and costs every append one more round trip to it.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&writer).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteStore {
            writer,
            readers,
            cache: StateCache::default(),
        })
    }

    /// A writer connection inside a `BEGIN IMMEDIATE` transaction.
    async fn begin(&self) -> Result<PoolConnection<Sqlite>, StoreError> {
        let mut conn = self.writer.acquire().await?;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        Ok(conn)
    }

    /// The body of an append, inside the caller's transaction.
    async fn append_in(
        &self,
        conn: &mut SqliteConnection,
        id: &RunId,
        drafts: Vec<Draft>,
        now: Timestamp,
        from_producer: bool,
        only_if_silent: bool,
    ) -> Result<Appended, StoreError> {
        let record = run_row(&mut *conn, id).await?;
        // A finished run takes no new event, but a retried batch of events it already
        // has is still acknowledged as duplicates (the check is in the loop).
        let silent_since = now.add_seconds(-record.heartbeat_timeout_s);
        if only_if_silent
            && (record.status != RunStatus::Running || record.last_producer_at >= silent_since)
        {
            return Ok(Appended {
                events: Vec::new(),
                duplicates: 0,
                filtered: 0,
                last_seq: record.last_seq,
                state: record.state,
            });
        }
        let mut state = self.state_at(&mut *conn, &record).await?;
        let mut seq = record.last_seq;
        let mut events = Vec::with_capacity(drafts.len());
        let mut duplicates = 0;
        let mut filtered = 0;
        let mut seen_ids = std::collections::HashSet::new();
        for draft in drafts {
            let event_type = draft.body.event_type();
            // `run.*` always passes: a run that could not finish would never end.
            let tracked = record.track.as_ref().is_none_or(|t| t.matches(event_type))
                || event_type.starts_with("run.");
            if !tracked {
                filtered += 1;
                continue;
            }
            if let Some(event_id) = &draft.id {
                let stored: Option<i64> =
                    sqlx::query_scalar("SELECT seq FROM events WHERE run_id = ? AND event_id = ?")
                        .bind(id.as_str())
                        .bind(event_id)
                        .fetch_optional(&mut *conn)
                        .await?;
                if stored.is_some() || !seen_ids.insert(event_id.clone()) {
                    duplicates += 1;
                    continue;
                }
            }
            if state.status.is_terminal() {
                // Events after `run.finished` in the same batch: the run is over.
                return Err(StoreError::Finished);
            }
            seq += 1;
            let event = draft.stamp(id.clone(), seq, now);
            state.apply(&event);
            events.push(event);
        }
        // In the same transaction, after the loop: an id repeated within the batch is
        // caught by `seen_ids`, so no check above needed these rows stored first.
        insert_events(&mut *conn, id, &events).await?;
        if !events.is_empty() {
            let state_json =
                serde_json::to_string(&state).map_err(|e| StoreError::Db(e.to_string()))?;
            let last_event_us = state.last_event_at.unwrap_or(now).unix_micros();
            let producer_us = if from_producer {
                now.unix_micros()
            } else {
                record.last_producer_at.unix_micros()
            };
            sqlx::query(
                "UPDATE runs SET last_seq = ?, status = ?, last_event_us = MAX(last_event_us, ?), \
                         last_producer_us = ?, state = ? WHERE id = ?",
            )
            .bind(seq as i64)
            .bind(state.status.as_str())
            .bind(last_event_us.max(now.unix_micros()))
            .bind(producer_us)
            .bind(&state_json)
            .bind(id.as_str())
            .execute(&mut *conn)
            .await?;
        }
        Ok(Appended {
            events,
            duplicates,
            filtered,
            last_seq: seq,
            state,
        })
    }

    /// The run's state folded up to `record.last_seq`: from the cache when it is
    /// there, catching up from stored events otherwise.
    async fn state_at(
        &self,
        conn: &mut SqliteConnection,
        record: &RunRecord,
    ) -> Result<RunState, StoreError> {
        let mut state = match self.cache.get(&record.id) {
            Some(state) if state.last_seq <= record.last_seq => state,
            _ => RunRecord::initial_state(&record.id, &record.name, record.parent.as_ref()),
        };
        while state.last_seq < record.last_seq {
            let events = events_after(&mut *conn, &record.id, state.last_seq, 1000).await?;
            if events.is_empty() {
                break;
            }
            state.apply_all(&events);
        }
        Ok(state)
    }
}

const RUN_COLUMNS: &str = "id, name, parent, heartbeat_timeout_s, ttl_s, track, created_us, last_seq, status, last_producer_us, state";

fn record_from_row(row: &SqliteRow) -> Result<RunRecord, StoreError> {
    let bad = |what: &str| StoreError::Db(format!("corrupt run row: {what}"));
    let id: String = row.try_get("id")?;
    let id = RunId::new(id).map_err(|_| bad("id"))?;
    let parent: Option<String> = row.try_get("parent")?;
    let track: Option<String> = row.try_get("track")?;
    let status: String = row.try_get("status")?;
    let state: String = row.try_get("state")?;
    Ok(RunRecord {
        name: row.try_get("name")?,
        parent: parent
            .map(RunId::new)
            .transpose()
            .map_err(|_| bad("parent"))?,
        heartbeat_timeout_s: row.try_get("heartbeat_timeout_s")?,
        ttl_s: row.try_get("ttl_s")?,
        track: track
            .map(|t| TypeFilter::from_str(&t))
            .transpose()
            .map_err(|_| bad("track"))?,
        created_at: Timestamp::from_unix_micros(row.try_get("created_us")?),
        last_seq: row.try_get::<i64, _>("last_seq")? as u64,
        status: status.parse().map_err(|_| bad("status"))?,
        last_producer_at: Timestamp::from_unix_micros(row.try_get("last_producer_us")?),
        state: serde_json::from_str(&state).map_err(|_| bad("state"))?,
        id,
    })
}

async fn run_row(conn: &mut SqliteConnection, id: &RunId) -> Result<RunRecord, StoreError> {
    let row = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?"))
        .bind(id.as_str())
        .fetch_optional(conn)
        .await?
        .ok_or(StoreError::NotFound)?;
    record_from_row(&row)
}

async fn events_after(
    conn: &mut SqliteConnection,
    id: &RunId,
    after: u64,
    limit: u32,
) -> Result<Vec<Event>, StoreError> {
    let rows =
        sqlx::query("SELECT body FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?")
            .bind(id.as_str())
            .bind(after as i64)
            .bind(limit as i64)
            .fetch_all(conn)
            .await?;
    rows.iter()
        .map(|row| {
            let body: String = row.try_get("body")?;
            parse_event(&body)
                .map_err(|e| StoreError::Db(format!("corrupt event in run {id}: {e}")))
        })
        .collect()
}

/// Most rows in one `INSERT` statement.
const INSERT_CHUNK: usize = 64;

/// Inserts `events` with few statements: each statement is a round trip to sqlx's
/// worker thread, which one statement per event made the cost of a batched append.
/// Chunks are powers of two, so that seven statement texts (prepared once, cached)
/// serve every batch size.
async fn insert_events(
    conn: &mut SqliteConnection,
    id: &RunId,
    events: &[Event],
) -> Result<(), StoreError> {
    let mut rest = events;
    while !rest.is_empty() {
        let n = rest.len().min(INSERT_CHUNK);
        let n = 1 << n.ilog2();
        let (chunk, tail) = rest.split_at(n);
        let mut sql = String::from("INSERT INTO events (run_id, seq, event_id, body) VALUES ");
        sql.push_str(&vec!["(?, ?, ?, ?)"; n].join(", "));
        let mut query = sqlx::query(&sql);
        for event in chunk {
            query = query
                .bind(id.as_str())
                .bind(event.seq as i64)
                .bind(event.id.as_deref())
                .bind(event.to_json());
        }
        query.execute(&mut *conn).await?;
        rest = tail;
    }
    Ok(())
}

/// Commits when `res` is Ok, rolls back otherwise.
async fn end<T>(
    mut conn: PoolConnection<Sqlite>,
    res: Result<T, StoreError>,
) -> Result<T, StoreError> {
    match res {
        Ok(value) => {
            sqlx::query("COMMIT").execute(&mut *conn).await?;
            Ok(value)
        }
        Err(e) => {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            Err(e)
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_run(&self, run: &NewRun) -> Result<RunRecord, StoreError> {
        let state = RunRecord::initial_state(&run.id, &run.name, run.parent.as_ref());
        let state_json =
            serde_json::to_string(&state).map_err(|e| StoreError::Db(e.to_string()))?;
        let mut conn = self.begin().await?;
        let res = async {
                let conn = &mut *conn;
                let res = sqlx::query(
                    "INSERT INTO runs (id, name, parent, heartbeat_timeout_s, ttl_s, track, meta, created_us, \
                     last_event_us, last_producer_us, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(run.id.as_str())
                .bind(&run.name)
                .bind(run.parent.as_ref().map(RunId::as_str))
                .bind(run.heartbeat_timeout_s)
                .bind(run.ttl_s)
                .bind(run.track.as_ref().map(ToString::to_string))
                .bind(run.meta.as_ref().map(|m| serde_json::Value::Object(m.clone()).to_string()))
                .bind(run.created_at.unix_micros())
                .bind(run.created_at.unix_micros())
                .bind(run.created_at.unix_micros())
                .bind(&state_json)
                .execute(&mut *conn)
                .await;
                match res {
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Err(StoreError::Conflict),
                    other => other?,
                };
                for (hash, scope) in [(&run.write_hash, Scope::Write), (&run.read_hash, Scope::Read)] {
                    sqlx::query("INSERT INTO tokens (hash, run_id, scope) VALUES (?, ?, ?)")
                        .bind(hash)
                        .bind(run.id.as_str())
                        .bind(scope.as_str())
                        .execute(&mut *conn)
                        .await?;
                }
                run_row(conn, &run.id).await
        }
        .await;
        end(conn, res).await
    }

    async fn run(&self, id: &RunId) -> Result<RunRecord, StoreError> {
        let mut conn = self.readers.acquire().await?;
        let mut record = run_row(&mut conn, id).await?;
        // Serve the cached state (with ETA estimators) when it is current.
        let state = self.state_at(&mut conn, &record).await?;
        self.cache.put(state.clone());
        record.state = state;
        Ok(record)
    }

    async fn token(&self, hash: &str) -> Result<Option<(RunId, Scope)>, StoreError> {
        let row = sqlx::query("SELECT run_id, scope FROM tokens WHERE hash = ?")
            .bind(hash)
            .fetch_optional(&self.readers)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let run: String = row.try_get("run_id")?;
        let scope: String = row.try_get("scope")?;
        match (RunId::new(run), Scope::parse(&scope)) {
            (Ok(run), Some(scope)) => Ok(Some((run, scope))),
            _ => Err(StoreError::Db("corrupt token row".into())),
        }
    }

    async fn append(
        &self,
        id: &RunId,
        drafts: Vec<Draft>,
        now: Timestamp,
        from_producer: bool,
    ) -> Result<Appended, StoreError> {
        let mut conn = self.begin().await?;
        let res = self
            .append_in(&mut conn, id, drafts, now, from_producer, false)
            .await;
        let appended = end(conn, res).await?;
        self.cache.put(appended.state.clone());
        Ok(appended)
    }

    async fn mark_stalled(
        &self,
        id: &RunId,
        draft: Draft,
        now: Timestamp,
    ) -> Result<Appended, StoreError> {
        let mut conn = self.begin().await?;
        let res = self
            .append_in(&mut conn, id, vec![draft], now, false, true)
            .await;
        let appended = end(conn, res).await?;
        self.cache.put(appended.state.clone());
        Ok(appended)
    }

    async fn events(&self, id: &RunId, after: u64, limit: u32) -> Result<Vec<Event>, StoreError> {
        let mut conn = self.readers.acquire().await?;
        events_after(&mut conn, id, after, limit).await
    }

    async fn list(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        let mut sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE 1 = 1");
        if filter.status.is_some() {
            sql.push_str(" AND status = ?");
        }
        if filter.parent.is_some() {
            sql.push_str(" AND parent = ?");
        }
        if filter.before.is_some() {
            sql.push_str(" AND created_us < ?");
        }
        sql.push_str(" ORDER BY created_us DESC, ord DESC LIMIT ?");
        let mut query = sqlx::query(&sql);
        if let Some(status) = filter.status {
            query = query.bind(status.as_str());
        }
        if let Some(parent) = &filter.parent {
            query = query.bind(parent.as_str());
        }
        if let Some(before) = filter.before {
            query = query.bind(before.unix_micros());
        }
        let rows = query
            .bind(filter.limit as i64)
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(record_from_row).collect()
    }

    async fn delete(&self, id: &RunId) -> Result<(), StoreError> {
        let mut conn = self.begin().await?;
        let res = sqlx::query("DELETE FROM runs WHERE id = ?")
            .bind(id.as_str())
            .execute(&mut *conn)
            .await
            .map_err(StoreError::from);
        let res = end(conn, res).await?;
        self.cache.remove(id);
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn silent_runs(&self, now: Timestamp) -> Result<Vec<RunRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE status = 'running' \
             AND last_producer_us + CAST(heartbeat_timeout_s * 1000000 AS INTEGER) < ?"
        ))
        .bind(now.unix_micros())
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    async fn expired_runs(&self, now: Timestamp, limit: u32) -> Result<Vec<RunId>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM runs WHERE last_event_us + CAST(ttl_s * 1000000 AS INTEGER) < ? ORDER BY last_event_us LIMIT ?",
        )
        .bind(now.unix_micros())
        .bind(limit as i64)
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                RunId::new(id).map_err(|e| StoreError::Db(e.to_string()))
            })
            .collect()
    }

    async fn count_by_status(&self) -> Result<Vec<(RunStatus, u64)>, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM runs GROUP BY status")
            .fetch_all(&self.readers)
            .await?;
        rows.iter()
            .map(|row| {
                let status: String = row.try_get("status")?;
                let n: i64 = row.try_get("n")?;
                let status = status.parse().map_err(|e: String| StoreError::Db(e))?;
                Ok((status, n as u64))
            })
            .collect()
    }
}
