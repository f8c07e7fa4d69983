//! The SQLite store: one file (`herald.db`) in WAL mode, through rusqlite.
//!
//! Writes go through one connection per process, owned by a thread of its own
//! (`writer`): an append is sent to it and answered from it, and the thread commits
//! every write waiting for it in one transaction (group commit), waking once per group.
//! Through an async driver (sqlx, before) every statement was a round trip to the
//! driver's worker thread, about seven per append, and those hand-offs, not SQLite, set
//! the hub's ingest rate (BENCHMARKS.md, "Hub ingest and fan-out"). Events are stamped
//! and serialized before they reach the writer, on the caller's task, so that the one
//! thread all appends wait for spends its time in SQLite.
//!
//! Every write transaction starts with `BEGIN IMMEDIATE`, which takes SQLite's write
//! lock up front, and waits up to a busy timeout for it: appends from several tasks,
//! or several processes on the same file, are serialized by the database, so `seq`
//! stays dense. `synchronous=NORMAL` in WAL mode makes a committed transaction survive
//! the process being killed (only an OS crash or power loss can lose the last
//! transactions), which is the guarantee the hub gives; a write is answered only after
//! its transaction committed.
//!
//! Reads run on up to `READERS` read-only connections, each read one blocking task
//! (`spawn_blocking`), so a read is one hand-off too however many statements it takes.

mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use herald_protocol::{Draft, Event, RunId, RunState, RunStatus, Timestamp};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use tokio::sync::Semaphore;

use self::writer::{AppendJob, Writer};
use super::{
    Appended, Author, Condition, NewRun, Read, RunFilter, RunHead, RunRecord, RunRow, StateCache,
    Store, StoreError, Unreadable, stamp_ahead,
};
use crate::auth::Scope;
use crate::store::{readable, token_from_row};

/// The schema's migrations, in order: migration `n` (from 1) takes a file from
/// `PRAGMA user_version` `n - 1` to `n`. A new one goes at the end, as
/// `migrations/sqlite/NNNN_what.sql`; none is ever edited once released.
pub const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_runs_tokens_events.sql"),
    include_str!("../../migrations/sqlite/0002_retention_by_receipt.sql"),
];

const INSERT_EVENT: &str =
    "INSERT INTO events (run_id, seq, event_id, body) VALUES (?1, ?2, ?3, ?4)";

/// How long a write waits for another process's write lock, and a read for a
/// checkpoint or recovery, before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Most read connections, and so most reads at once.
const READERS: usize = 8;

/// Prepared statements kept per connection: every statement text the store uses fits.
const STATEMENT_CACHE: usize = 32;

/// Pages the WAL holds before the writer checkpoints it (SQLite's default is 1,000).
/// A checkpoint copies each page in the WAL into the database file once, however many
/// commits wrote it, and syncs both files. With many runs appended to at once, every
/// commit writes each of its runs' last `events` page and its run row's page again, so
/// a longer WAL copies those hot pages once for ten times the events, and syncs a
/// tenth as often: the checkpoints were 14–22% of the writer thread's time with single
/// appends (BENCHMARKS.md, "The hub's append path"). The WAL stays bounded as before,
/// by this many pages plus the group that crossed it, while no reader holds a snapshot
/// older than the checkpoint; [`WAL_SIZE_LIMIT`] gives the disk back after one did.
const CHECKPOINT_PAGES: u32 = 10_000;

/// Bytes the WAL file is cut back to when a checkpoint has emptied it: a WAL of
/// [`CHECKPOINT_PAGES`] 4 KiB pages, with their frame headers, fits.
const WAL_SIZE_LIMIT: u64 = 48 << 20;

/// A run's columns but its state, in [`head_from_row`]'s order.
macro_rules! head_columns {
    () => {
        "id, name, parent, heartbeat_timeout_s, ttl_s, track, created_us, last_seq, status, \
         last_producer_us, ord"
    };
}

/// Runs, tokens and events in a SQLite file.
pub struct SqliteStore {
    writer: Writer,
    readers: Arc<Readers>,
    cache: Arc<StateCache>,
    unreadable: Arc<Unreadable>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Db(format!("cannot create {}: {e}", dir.display())))?;
        }
        let path = path.to_owned();
        // Opening may wait on another process's lock (the busy timeout).
        let (conn, readers) = blocking(move || {
            let conn = open_writer(&path)?;
            // One reader now, so that a file readers cannot open fails here.
            let readers = Readers::new(path)?;
            Ok((conn, readers))
        })
        .await?;
        let cache = Arc::new(StateCache::default());
        let unreadable = Arc::new(Unreadable::default());
        Ok(SqliteStore {
            writer: Writer::spawn(conn, Arc::clone(&cache), Arc::clone(&unreadable))?,
            readers: Arc::new(readers),
            cache,
            unreadable,
        })
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

    async fn append_job(
        &self,
        id: &RunId,
        drafts: Vec<Draft>,
        now: Timestamp,
        author: Author,
        condition: Condition,
    ) -> Result<Appended, StoreError> {
        let job = AppendJob {
            id: id.clone(),
            events: stamp_ahead(id, drafts, now, self.cache.last_seq(id)),
            now,
            author,
            condition,
        };
        // An append refuses (unknown run, finished run, too large) before it writes.
        self.writer
            .write_with(writer::Isolation::ChecksFirst, move |group| {
                writer::append(group, job)
            })
            .await
    }
}

/// The connection the writer thread owns: WAL, `synchronous=NORMAL`, foreign keys on
/// (deleting a run deletes its tokens and events), checkpoints every
/// [`CHECKPOINT_PAGES`], the schema in place.
fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Db(format!(
            "cannot use WAL mode: the journal mode is {mode}"
        )));
    }
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
    // Both answer with the value they set.
    conn.pragma_update_and_check(None, "wal_autocheckpoint", CHECKPOINT_PAGES, |_| Ok(()))?;
    conn.pragma_update_and_check(None, "journal_size_limit", WAL_SIZE_LIMIT, |_| Ok(()))?;
    migrate(&conn)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Brings the file up to the last of [`MIGRATIONS`], in one transaction under the
/// write lock, so that processes opening the file at once migrate it once. The file's
/// `PRAGMA user_version` says which migrations it has; a file written before the
/// schema had versions (0, with tables) is told apart by its columns. A file of a
/// newer hub is refused rather than misread.
fn migrate(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let res = (|| {
        let latest = MIGRATIONS.len() as u32;
        let stored: u32 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        let version = match stored {
            0 => unversioned(conn)?,
            version => version,
        };
        if version > latest {
            return Err(StoreError::Db(format!(
                "the database's schema is version {version}, newer than this hub's \
                 ({latest}): it was written by a newer herald; run that one"
            )));
        }
        for sql in &MIGRATIONS[version as usize..] {
            conn.execute_batch(sql)?;
        }
        if stored != latest {
            conn.execute_batch(&format!("PRAGMA user_version = {latest}"))?;
        }
        Ok::<_, StoreError>(())
    })();
    match res {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(_) => {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
    res
}

/// The migrations a file without a `user_version` has: none when it is empty; the
/// first when it still has `last_event_us`; the first two otherwise (as hubs wrote
/// files before the schema had versions).
fn unversioned(conn: &Connection) -> Result<u32, StoreError> {
    let column = |name: &str| {
        conn.prepare("SELECT 1 FROM pragma_table_info('runs') WHERE name = ?1")?
            .exists([name])
    };
    Ok(if column("last_event_us")? {
        1
    } else if column("last_received_us")? {
        2
    } else {
        0
    })
}

/// Runs blocking database work off the async threads.
async fn blocking<T, F>(work: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Db(format!("database task failed: {e}")))?
}

/// Read-only connections, opened as reads need them, at most [`READERS`].
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl Readers {
    fn new(path: PathBuf) -> Result<Readers, StoreError> {
        let first = open_reader(&path)?;
        Ok(Readers {
            path,
            idle: Mutex::new(vec![first]),
            permits: Arc::new(Semaphore::new(READERS)),
        })
    }

    /// Runs `read` on an idle connection in a blocking task.
    async fn read<T, F>(self: &Arc<Self>, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|e| StoreError::Db(e.to_string()))?;
        let readers = Arc::clone(self);
        blocking(move || {
            let _permit = permit;
            let idle = readers.lock().pop();
            let conn = match idle {
                Some(conn) => conn,
                None => open_reader(&readers.path)?,
            };
            let res = read(&conn);
            readers.lock().push(conn);
            res
        })
        .await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// The columns of `head_columns!`, in that order, at the start of `row`.
fn run_row(row: &Row<'_>) -> Result<RunRow, StoreError> {
    Ok(RunRow {
        id: row.get(0)?,
        name: row.get(1)?,
        parent: row.get(2)?,
        heartbeat_timeout_s: row.get(3)?,
        ttl_s: row.get(4)?,
        track: row.get(5)?,
        created_us: row.get(6)?,
        last_seq: row.get(7)?,
        status: row.get(8)?,
        last_producer_us: row.get(9)?,
        ord: row.get(10)?,
    })
}

fn head_from_row(row: &Row<'_>) -> Result<RunHead, StoreError> {
    run_row(row)?.into_head()
}

/// The run's state folded up to `head.last_seq`: from `cached` when it can be (see
/// [`RunHead::fold_from`]), caught up from the stored events.
pub(super) fn fold_state(
    conn: &Connection,
    head: &RunHead,
    cached: Option<RunState>,
    unreadable: &Unreadable,
) -> Result<RunState, StoreError> {
    let mut state = head.fold_from(cached);
    let mut catch_up = conn.prepare_cached(
        "SELECT seq, body FROM events WHERE run_id = ?1 AND seq > ?2 AND seq <= ?3 \
         ORDER BY seq LIMIT 1000",
    )?;
    while state.last_seq < head.last_seq {
        let events = query_events(
            conn,
            &mut catch_up,
            &head.id,
            params![
                head.id.as_str(),
                state.last_seq as i64,
                head.last_seq as i64
            ],
            unreadable,
        )?;
        if events.is_empty() {
            break;
        }
        state.apply_all(&events);
    }
    Ok(state)
}

/// A run's record, its stored state included, from `head_columns!` then `state`.
fn record_from_row(row: &Row<'_>) -> Result<RunRecord, StoreError> {
    let state: String = row.get(11)?;
    run_row(row)?.into_record(&state)
}

fn run_head(conn: &Connection, id: &RunId) -> Result<RunHead, StoreError> {
    let mut select = conn.prepare_cached(concat!(
        "SELECT ",
        head_columns!(),
        " FROM runs WHERE id = ?1"
    ))?;
    let mut rows = select.query([id.as_str()])?;
    match rows.next()? {
        Some(row) => head_from_row(row),
        None => Err(StoreError::NotFound),
    }
}

fn run_record(conn: &Connection, id: &RunId) -> Result<RunRecord, StoreError> {
    let mut select = conn.prepare_cached(concat!(
        "SELECT ",
        head_columns!(),
        ", state FROM runs WHERE id = ?1"
    ))?;
    let mut rows = select.query([id.as_str()])?;
    match rows.next()? {
        Some(row) => record_from_row(row),
        None => Err(StoreError::NotFound),
    }
}

/// Runs `select`, whose rows are the `seq` and body of events of run `id`, and reads
/// them, with a marker for each row that cannot be read back (see `readback.rs`).
fn query_events(
    conn: &Connection,
    select: &mut rusqlite::Statement<'_>,
    id: &RunId,
    params: impl rusqlite::Params,
    unreadable: &Unreadable,
) -> Result<Vec<Event>, StoreError> {
    let mut rows = select.query(params)?;
    let mut reads = Vec::new();
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        // Read whatever the column holds: SQLite keeps a blob or bad UTF-8 in a TEXT
        // column if that is what was written.
        let body = match row.get_ref(1)? {
            ValueRef::Text(bytes) => {
                std::str::from_utf8(bytes).map_err(|e| format!("the stored text is not UTF-8: {e}"))
            }
            ValueRef::Blob(bytes) => Err(format!("a blob of {} bytes, not text", bytes.len())),
            ValueRef::Null => Err("NULL, not text".to_owned()),
            ValueRef::Integer(_) | ValueRef::Real(_) => Err("a number, not text".to_owned()),
        };
        reads.push(Read::row(id, seq as u64, body));
    }
    drop(rows);
    let created_at = if Read::need_created_at(&reads) {
        conn.prepare_cached("SELECT created_us FROM runs WHERE id = ?1")?
            .query_row([id.as_str()], |row| row.get(0))
            .optional()?
            .map(Timestamp::from_unix_micros)
    } else {
        None
    };
    Ok(unreadable.events(id, reads, created_at))
}

/// Runs `select`, whose rows are `head_columns!` then `state`, into records.
fn query_records(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<RunRecord>, StoreError> {
    let mut select = conn.prepare_cached(sql)?;
    let mut rows = select.query(params)?;
    let mut records = Vec::new();
    while let Some(row) = rows.next()? {
        records.extend(readable(record_from_row(row)));
    }
    Ok(records)
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_run(&self, run: &NewRun) -> Result<RunRecord, StoreError> {
        let run = run.clone();
        self.writer
            .write(move |group| writer::create(group, &run))
            .await
    }

    async fn run(&self, id: &RunId) -> Result<RunRecord, StoreError> {
        let id = id.clone();
        let cache = Arc::clone(&self.cache);
        let unreadable = Arc::clone(&self.unreadable);
        self.readers
            .read(move |conn| {
                let head = run_head(conn, &id)?;
                // Serve the cached state (with ETA estimators) when it is current.
                let cached = cache.get(&id, head.created_at);
                let state = fold_state(conn, &head, cached, &unreadable)?;
                cache.put(head.created_at, state.clone());
                Ok(head.with_state(state))
            })
            .await
    }

    async fn token(&self, hash: &str) -> Result<Option<(RunId, Scope)>, StoreError> {
        let hash = hash.to_owned();
        self.readers
            .read(move |conn| {
                let row = conn
                    .prepare_cached("SELECT run_id, scope FROM tokens WHERE hash = ?1")?
                    .query_row([hash], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                    })
                    .optional()?;
                let Some((run, scope)) = row else {
                    return Ok(None);
                };
                token_from_row(run, &scope).map(Some)
            })
            .await
    }

    async fn append(
        &self,
        id: &RunId,
        drafts: Vec<Draft>,
        now: Timestamp,
        author: Author,
    ) -> Result<Appended, StoreError> {
        self.append_job(id, drafts, now, author, Condition::Always)
            .await
    }

    async fn mark_stalled(
        &self,
        id: &RunId,
        draft: Draft,
        now: Timestamp,
    ) -> Result<Appended, StoreError> {
        self.append_job(id, vec![draft], now, Author::Hub, Condition::ProducerSilent)
            .await
    }

    async fn events(&self, id: &RunId, after: u64, limit: u32) -> Result<Vec<Event>, StoreError> {
        let id = id.clone();
        let unreadable = Arc::clone(&self.unreadable);
        self.readers
            .read(move |conn| {
                let mut select = conn.prepare_cached(
                    "SELECT seq, body FROM events WHERE run_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                )?;
                query_events(
                    conn,
                    &mut select,
                    &id,
                    params![id.as_str(), after as i64, limit as i64],
                    &unreadable,
                )
            })
            .await
    }

    async fn list(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        let filter = filter.clone();
        self.readers
            .read(move |conn| {
                // Only the conditions asked for, so that SQLite can use the index of
                // the one given; each of the eight texts is prepared once.
                let mut sql =
                    concat!("SELECT ", head_columns!(), ", state FROM runs WHERE 1 = 1").to_owned();
                let mut args: Vec<&dyn rusqlite::ToSql> = Vec::new();
                let status = filter.status.map(RunStatus::as_str);
                let parent = filter.parent.as_ref().map(RunId::as_str);
                let before = filter.before.map(Timestamp::unix_micros);
                let limit = filter.limit as i64;
                if let Some(status) = &status {
                    sql.push_str(" AND status = ?");
                    args.push(status);
                }
                if let Some(parent) = &parent {
                    sql.push_str(" AND parent = ?");
                    args.push(parent);
                }
                if let Some(before) = &before {
                    sql.push_str(" AND created_us < ?");
                    args.push(before);
                }
                sql.push_str(" ORDER BY created_us DESC, ord DESC LIMIT ?");
                args.push(&limit);
                query_records(conn, &sql, args.as_slice())
            })
            .await
    }

    async fn delete(&self, id: &RunId) -> Result<u64, StoreError> {
        let id = id.clone();
        self.writer
            .write(move |group| writer::delete(group, &id))
            .await
    }

    async fn silent_runs(&self, now: Timestamp) -> Result<Vec<RunRecord>, StoreError> {
        self.readers
            .read(move |conn| {
                query_records(
                    conn,
                    concat!(
                        "SELECT ",
                        head_columns!(),
                        ", state FROM runs WHERE status = 'running' \
                         AND last_producer_us + CAST(heartbeat_timeout_s * 1000000 AS INTEGER) < ?1"
                    ),
                    [now.unix_micros()],
                )
            })
            .await
    }

    async fn delete_expired(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(RunId, u64)>, StoreError> {
        self.writer
            .write(move |group| writer::delete_expired(group, now, limit))
            .await
    }

    async fn count_by_status(&self) -> Result<Vec<(RunStatus, u64)>, StoreError> {
        self.readers
            .read(|conn| {
                let mut select =
                    conn.prepare_cached("SELECT status, COUNT(*) FROM runs GROUP BY status")?;
                let mut rows = select.query([])?;
                let mut counts = Vec::new();
                while let Some(row) = rows.next()? {
                    let status: String = row.get(0)?;
                    let n: i64 = row.get(1)?;
                    let status = status.parse().map_err(|e: String| StoreError::Db(e))?;
                    counts.push((status, n as u64));
                }
                Ok(counts)
            })
            .await
    }

    fn unreadable_events(&self) -> u64 {
        self.unreadable.count()
    }
}
