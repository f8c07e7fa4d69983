//! The SQLite store's writer: a thread of its own owning this process's one write
//! connection, with group commit.
//!
//! Every write (create, append, delete) is a job sent to the thread with a oneshot for
//! its reply. The thread takes every job waiting in its queue, runs them in ONE
//! `BEGIN IMMEDIATE` transaction, each inside a savepoint of its own, commits, and only
//! then answers them all. So a group of concurrent appends pays one hand-off each way,
//! one `BEGIN` and one `COMMIT`, where statements through an async driver paid a
//! hand-off each. Groups form by themselves under load: a job that finds the writer
//! idle runs at once, alone; jobs that arrive while a group runs wait for the next one.
//!
//! A job that fails (`NotFound`, `Finished`, `Conflict`, a failed statement, a panic)
//! is rolled back to its savepoint, and the rest of its group commits without it.
//! Appends, what a group is mostly made of, take no savepoint ([`Isolation::ChecksFirst`]):
//! every refusal of an append is decided before its first write, so a refused one has
//! nothing to undo; should one fail after it changed a row (a failed statement, a panic),
//! the whole group fails as below. A savepoint per append cost two statements and a copy
//! of every page the append touched into SQLite's statement journal. If
//! SQLite aborted the whole transaction, or the commit fails, every job of the group is
//! answered with the error: nothing was stored, and nothing was acknowledged. A full
//! disk is the common cause of both, and stays [`StoreError::Full`] for every job, so
//! that each is told to try again rather than that the hub failed.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, mpsc};

use herald_protocol::{RunId, RunState, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::{INSERT_EVENT, fold_state, run_head, run_record};
use crate::auth::Scope;
use crate::store::{
    Appended, Author, Batch, Condition, NewRun, RunRecord, Stamped, StateCache, StoreError,
    Unreadable,
};

/// How a job's writes are undone if it fails while the rest of its group commits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Isolation {
    /// In a savepoint of its own, rolled back alone.
    Savepoint,
    /// None: the job decides every refusal before its first write. If it fails after
    /// changing a row (SQLite's count of changed rows says so), the group fails whole.
    ChecksFirst,
}

/// Most jobs in one transaction. It bounds how long one group holds SQLite's write
/// lock (which other processes on the file wait for) and how long the first job of a
/// group waits for the last; a group of this size is 64 HTTP requests.
const MAX_GROUP: usize = 64;

/// The handle to the writer thread; the thread ends once this is dropped and the jobs
/// already sent are answered.
pub(super) struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

impl Writer {
    /// Starts the writer thread over `conn`, a read-write connection with the schema
    /// in place; committed groups update `cache`; rows it cannot read back are
    /// reported to `unreadable`.
    pub(super) fn spawn(
        conn: Connection,
        cache: Arc<StateCache>,
        unreadable: Arc<Unreadable>,
    ) -> Result<Writer, StoreError> {
        let (jobs, queue) = mpsc::channel::<Box<dyn Job>>();
        std::thread::Builder::new()
            .name("herald-sqlite-writer".into())
            .spawn(move || {
                while let Ok(first) = queue.recv() {
                    let mut jobs = vec![first];
                    while jobs.len() < MAX_GROUP {
                        match queue.try_recv() {
                            Ok(job) => jobs.push(job),
                            Err(_) => break,
                        }
                    }
                    commit_group(&conn, &cache, &unreadable, jobs);
                }
            })
            .map_err(|e| StoreError::Db(format!("cannot start the SQLite writer thread: {e}")))?;
        Ok(Writer { jobs })
    }

    /// Runs `work` in the writer's next group and returns its result once the group
    /// has committed (or failed). The job runs to its end even if this future is
    /// dropped, as a transaction cut short by a client going away would be worse.
    pub(super) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Group<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_with(Isolation::Savepoint, work).await
    }

    /// [`Writer::write`], with the job's writes undone as `isolation` says.
    pub(super) async fn write_with<T, F>(
        &self,
        isolation: Isolation,
        work: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Group<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let stopped = || StoreError::Db("the SQLite writer thread stopped".into());
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Box::new(WriteJob {
                work,
                reply,
                isolation,
            }))
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// A write waiting for the writer thread.
trait Job: Send {
    /// Runs inside the group's transaction; the outcome is sent after the commit.
    fn run(self: Box<Self>, group: &mut Group<'_>) -> Box<dyn Outcome>;

    /// How its writes are undone if it fails.
    fn isolation(&self) -> Isolation;

    /// Answers without running, because the group could not start or was aborted.
    fn fail(self: Box<Self>, e: StoreError);
}

/// A job's result, held until its group's transaction has ended.
trait Outcome {
    /// The job's own error, if it failed.
    fn error(&self) -> Option<&StoreError>;

    /// Answers the job: its own result if the group committed, `failure` otherwise.
    fn send(self: Box<Self>, failure: Option<&StoreError>);
}

struct WriteJob<F, T> {
    work: F,
    reply: oneshot::Sender<Result<T, StoreError>>,
    isolation: Isolation,
}

struct Done<T> {
    res: Result<T, StoreError>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<F, T> Job for WriteJob<F, T>
where
    T: Send + 'static,
    F: FnOnce(&mut Group<'_>) -> Result<T, StoreError> + Send,
{
    fn run(self: Box<Self>, group: &mut Group<'_>) -> Box<dyn Outcome> {
        let WriteJob { work, reply, .. } = *self;
        // A job that panics fails (alone if its savepoint is rolled back or it had
        // written nothing; else with its group) rather than take the thread, and so
        // every later write of the process, down with it.
        let res = std::panic::catch_unwind(AssertUnwindSafe(|| work(group)))
            .unwrap_or_else(|_| Err(StoreError::Db("the write panicked".into())));
        Box::new(Done { res, reply })
    }

    fn isolation(&self) -> Isolation {
        self.isolation
    }

    fn fail(self: Box<Self>, e: StoreError) {
        // The caller may have gone away; then nobody is waiting for the answer.
        let _ = self.reply.send(Err(e));
    }
}

impl<T: Send + 'static> Outcome for Done<T> {
    fn error(&self) -> Option<&StoreError> {
        self.res.as_ref().err()
    }

    fn send(self: Box<Self>, failure: Option<&StoreError>) {
        let res = match (self.res, failure) {
            (Ok(_), Some(e)) => Err(e.clone()),
            (res, _) => res,
        };
        let _ = self.reply.send(res);
    }
}

/// The transaction of one group of jobs, as the jobs see it.
pub(super) struct Group<'c> {
    conn: &'c Connection,
    cache: &'c StateCache,
    unreadable: &'c Unreadable,
    /// States folded by the group's jobs, with their runs' `created_at` (`None`: the
    /// run was deleted), which go to the cache only once the group has committed.
    states: HashMap<RunId, Option<(Timestamp, RunState)>>,
}

impl Group<'_> {
    /// The latest folded state of `id` this process has: the group's own, else the
    /// cache's. It may lag behind the stored events; see `RunHead::state`.
    fn state(&self, id: &RunId, created_at: Timestamp) -> Option<RunState> {
        match self.states.get(id) {
            Some(Some((created, state))) if *created == created_at => Some(state.clone()),
            Some(_) => None,
            None => self.cache.get(id, created_at),
        }
    }
}

/// Runs `jobs` in one transaction, then answers each.
fn commit_group(
    conn: &Connection,
    cache: &StateCache,
    unreadable: &Unreadable,
    jobs: Vec<Box<dyn Job>>,
) {
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        let e = StoreError::from(e);
        for job in jobs {
            job.fail(e.clone());
        }
        return;
    }
    let mut group = Group {
        conn,
        cache,
        unreadable,
        states: HashMap::new(),
    };
    let mut outcomes = Vec::with_capacity(jobs.len());
    // Set once the transaction can no longer commit: every job of the group fails.
    let mut aborted: Option<StoreError> = None;
    for job in jobs {
        if let Some(e) = &aborted {
            job.fail(e.clone());
            continue;
        }
        let isolation = job.isolation();
        if isolation == Isolation::Savepoint
            && let Err(e) = exec(conn, "SAVEPOINT job")
        {
            let e = StoreError::from(e);
            job.fail(e.clone());
            aborted = Some(e);
            continue;
        }
        let changes_before = conn.total_changes();
        let outcome = job.run(&mut group);
        let end = match (isolation, outcome.error()) {
            (Isolation::Savepoint, None) => exec(conn, "RELEASE job"),
            (Isolation::Savepoint, Some(_)) => {
                exec(conn, "ROLLBACK TO job").and_then(|()| exec(conn, "RELEASE job"))
            }
            (Isolation::ChecksFirst, None) => Ok(()),
            // A failed statement's own changes are undone by SQLite and not counted;
            // changes counted are the job's earlier statements', which only the whole
            // transaction's rollback can undo.
            (Isolation::ChecksFirst, Some(e)) => {
                if conn.total_changes() != changes_before {
                    aborted = Some(match e {
                        full @ StoreError::Full(_) => full.clone(),
                        _ => StoreError::Db(
                            "a write failed after changing rows; its group is rolled back".into(),
                        ),
                    });
                }
                Ok(())
            }
        };
        // Some errors (a full disk, an I/O error) make SQLite roll back the whole
        // transaction, savepoints included; the job's own error says which.
        match end {
            Err(e) => aborted = Some(StoreError::from(e)),
            Ok(()) if aborted.is_none() && conn.is_autocommit() => {
                aborted = Some(match outcome.error() {
                    Some(full @ StoreError::Full(_)) => full.clone(),
                    _ => StoreError::Db("SQLite rolled the transaction back".into()),
                });
            }
            Ok(()) => {}
        }
        outcomes.push(outcome);
    }
    let failure = match aborted {
        Some(e) => Some(e),
        None => exec(conn, "COMMIT").err().map(StoreError::from),
    };
    if failure.is_some() && !conn.is_autocommit() {
        let _ = exec(conn, "ROLLBACK");
    }
    if failure.is_none() {
        for (id, state) in group.states {
            match state {
                // A state without events is a run this group created.
                Some((created_at, state)) if state.last_seq == 0 => {
                    cache.replace(created_at, state)
                }
                Some((created_at, state)) => cache.put(created_at, state),
                None => cache.remove(&id),
            }
        }
    }
    for outcome in outcomes {
        outcome.send(failure.as_ref());
    }
}

/// Runs one statement without parameters, prepared once per connection.
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Creates a run and its tokens.
pub(super) fn create(group: &mut Group<'_>, run: &NewRun) -> Result<RunRecord, StoreError> {
    let conn = group.conn;
    let state = RunRecord::initial_state(&run.id, &run.name, run.parent.as_ref());
    let state_json = serde_json::to_string(&state).map_err(|e| StoreError::Db(e.to_string()))?;
    let created_us = run.created_at.unix_micros();
    let res = conn
        .prepare_cached(
            "INSERT INTO runs (id, name, parent, heartbeat_timeout_s, ttl_s, track, meta, \
             created_us, last_received_us, last_producer_us, state) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?8, ?9)",
        )?
        .execute(params![
            run.id.as_str(),
            run.name,
            run.parent.as_ref().map(RunId::as_str),
            run.heartbeat_timeout_s,
            run.ttl_s,
            run.track.as_ref().map(ToString::to_string),
            run.meta
                .as_ref()
                .map(|m| serde_json::Value::Object(m.clone()).to_string()),
            created_us,
            state_json,
        ]);
    match res {
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            return Err(StoreError::Conflict);
        }
        other => other?,
    };
    let mut insert_token =
        conn.prepare_cached("INSERT INTO tokens (hash, run_id, scope) VALUES (?1, ?2, ?3)")?;
    for (hash, scope) in [
        (&run.write_hash, Scope::Write),
        (&run.read_hash, Scope::Read),
    ] {
        insert_token.execute(params![hash, run.id.as_str(), scope.as_str()])?;
    }
    // A state cached for an earlier run of the same id (deleted by another process)
    // must not be taken for this one's.
    group
        .states
        .insert(run.id.clone(), Some((run.created_at, state)));
    run_record(conn, &run.id)
}

/// Deletes a run; its tokens and events go with it (foreign keys, `ON DELETE CASCADE`).
/// Returns its generation.
pub(super) fn delete(group: &mut Group<'_>, id: &RunId) -> Result<u64, StoreError> {
    let deleted: Option<i64> = group
        .conn
        .prepare_cached("DELETE FROM runs WHERE id = ?1 RETURNING ord")?
        .query_row([id.as_str()], |row| row.get(0))
        .optional()?;
    group.states.insert(id.clone(), None);
    let ord = deleted.ok_or(StoreError::NotFound)?;
    u64::try_from(ord).map_err(|_| StoreError::Db("corrupt run row: ord".into()))
}

/// An append, as `Store::append` and `Store::mark_stalled` ask for it.
pub(super) struct AppendJob {
    pub(super) id: RunId,
    pub(super) events: Vec<Stamped>,
    pub(super) now: Timestamp,
    /// Whether the events count as the producer speaking.
    pub(super) author: Author,
    /// Whether to append only if the run is running and its producer silent past its
    /// timeout.
    pub(super) condition: Condition,
}

/// Appends inside the group's transaction: reads the run's row (the group holds the
/// write lock, so its `last_seq` is the latest), skips ids already stored, assigns
/// `seq`s, folds, inserts, and writes the run's summary back. It refuses only before
/// its first write, so it runs as [`Isolation::ChecksFirst`].
pub(super) fn append(group: &mut Group<'_>, job: AppendJob) -> Result<Appended, StoreError> {
    let conn = group.conn;
    let AppendJob {
        id,
        events: stamped,
        now,
        author,
        condition,
    } = job;
    let head = run_head(conn, &id)?;
    let state = fold_state(
        conn,
        &head,
        group.state(&id, head.created_at),
        group.unreadable,
    )?;
    if condition == Condition::ProducerSilent && !head.silent_at(now) {
        return Ok(Batch::empty(&head, state).into_appended());
    }
    // Ids stored by earlier jobs of this group are visible too: they are in the same
    // transaction.
    let mut stored_id =
        conn.prepare_cached("SELECT 1 FROM events WHERE run_id = ?1 AND event_id = ?2")?;
    let batch = Batch::fold(&head, state, stamped, |event_id| {
        Ok(stored_id.exists(params![id.as_str(), event_id])?)
    })?;
    if !batch.events.is_empty() {
        // Everything that can fail short of a statement comes before the first write
        // (see `Isolation::ChecksFirst`).
        let state_json = batch.state_json()?;
        let mut insert = conn.prepare_cached(INSERT_EVENT)?;
        for (event, body) in batch.events.iter().zip(&batch.bodies) {
            insert.execute(params![
                id.as_str(),
                event.seq as i64,
                event.id.as_deref(),
                body
            ])?;
        }
        conn.prepare_cached(
            "UPDATE runs SET last_seq = ?1, status = ?2, \
             last_received_us = MAX(last_received_us, ?3), last_producer_us = ?4, state = ?5 \
             WHERE id = ?6",
        )?
        .execute(params![
            batch.last_seq as i64,
            batch.state.status.as_str(),
            Batch::last_received_us(now),
            Batch::last_producer_us(&head, now, author),
            state_json,
            id.as_str(),
        ])?;
    }
    group
        .states
        .insert(id, Some((head.created_at, batch.state.clone())));
    Ok(batch.into_appended())
}

/// Deletes up to `limit` runs expired at `now`, found and deleted in one statement
/// inside the group's transaction, so an append cannot slip in between; their ids and
/// generations.
pub(super) fn delete_expired(
    group: &mut Group<'_>,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<(RunId, u64)>, StoreError> {
    let mut delete = group.conn.prepare_cached(
        "DELETE FROM runs WHERE id IN (SELECT id FROM runs \
         WHERE last_received_us + CAST(ttl_s * 1000000 AS INTEGER) < ?1 \
         ORDER BY last_received_us LIMIT ?2) RETURNING id, ord",
    )?;
    let mut rows = delete.query(params![now.unix_micros(), limit as i64])?;
    let mut deleted = Vec::new();
    while let Some(row) = rows.next()? {
        let (id, ord): (String, i64) = (row.get(0)?, row.get(1)?);
        let corrupt = |what: &str| StoreError::Db(format!("corrupt run row: {what}"));
        let id = RunId::new(id).map_err(|_| corrupt("id"))?;
        deleted.push((id, u64::try_from(ord).map_err(|_| corrupt("ord"))?));
    }
    drop(rows);
    for (id, _) in &deleted {
        group.states.insert(id.clone(), None);
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    //! Group commit, run directly on the writer's connection: which jobs share one
    //! transaction is decided here rather than by timing.

    use herald_protocol::parse_draft_str;

    use super::*;
    use crate::store::sqlite::{CHECKPOINT_PAGES, open_writer};
    use crate::store::stamp_ahead;

    struct Fixture {
        _dir: tempfile::TempDir,
        conn: Connection,
        cache: StateCache,
        unreadable: Unreadable,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().expect("a temp dir");
            let conn = open_writer(&dir.path().join("herald.db")).expect("the database opens");
            let fixture = Fixture {
                _dir: dir,
                conn,
                cache: StateCache::default(),
                unreadable: Unreadable::default(),
            };
            let (jobs, replies): (Vec<_>, Vec<_>) = ["a", "b"]
                .into_iter()
                .map(|id| job(move |g| create(g, &new_run(id))))
                .unzip();
            fixture.group(jobs);
            for reply in replies {
                answer(reply).expect("the run is created");
            }
            fixture
        }

        fn group(&self, jobs: Vec<Box<dyn Job>>) {
            commit_group(&self.conn, &self.cache, &self.unreadable, jobs);
        }

        /// The stored events' `seq`s and ids, checked against their bodies.
        fn seqs_and_ids(&self, run: &str) -> Vec<(i64, Option<String>)> {
            let mut select = self
                .conn
                .prepare("SELECT seq, event_id, body FROM events WHERE run_id = ?1 ORDER BY seq")
                .expect("a statement");
            let rows: Vec<(i64, Option<String>, String)> = select
                .query_map([run], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                .expect("the query runs")
                .collect::<Result<_, _>>()
                .expect("rows");
            rows.into_iter()
                .map(|(seq, id, body)| {
                    let event = herald_protocol::parse_event(&body).expect("a stored event");
                    assert_eq!((event.seq as i64, &event.id), (seq, &id), "{body}");
                    (seq, id)
                })
                .collect()
        }
    }

    type Reply<T> = oneshot::Receiver<Result<T, StoreError>>;

    fn job<T, F>(work: F) -> (Box<dyn Job>, Reply<T>)
    where
        T: Send + 'static,
        F: FnOnce(&mut Group<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        job_with(Isolation::Savepoint, work)
    }

    fn job_with<T, F>(isolation: Isolation, work: F) -> (Box<dyn Job>, Reply<T>)
    where
        T: Send + 'static,
        F: FnOnce(&mut Group<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = WriteJob {
            work,
            reply,
            isolation,
        };
        (Box::new(job), answer)
    }

    fn answer<T>(mut reply: Reply<T>) -> Result<T, StoreError> {
        reply.try_recv().expect("answered once the group ended")
    }

    fn new_run(id: &str) -> NewRun {
        NewRun {
            id: RunId::new(id).expect("a run id"),
            name: id.to_owned(),
            parent: None,
            heartbeat_timeout_s: 60.0,
            ttl_s: 3600.0,
            track: None,
            meta: None,
            write_hash: format!("w-{id}"),
            read_hash: format!("r-{id}"),
            created_at: now(),
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_unix_micros(1_800_000_000_000_000)
    }

    /// An append of the drafts `texts` (JSON) to `run`.
    fn append_job(run: &str, texts: &[&str]) -> (Box<dyn Job>, Reply<Appended>) {
        let id = RunId::new(run).expect("a run id");
        let drafts = texts
            .iter()
            .map(|t| parse_draft_str(t, &id).expect("a draft"))
            .collect();
        // Stamped as if the run had no events: right for the first append, wrong
        // (and so serialized again) for later ones.
        let events = stamp_ahead(&id, drafts, now(), Some(0));
        // As the store sends it.
        job_with(Isolation::ChecksFirst, move |g| {
            append(
                g,
                AppendJob {
                    id,
                    events,
                    now: now(),
                    author: Author::Producer,
                    condition: Condition::Always,
                },
            )
        })
    }

    /// A log event without an id.
    fn log_of(message: &str) -> String {
        format!(r#"{{"event":"log","level":"info","message":"{message}"}}"#)
    }

    fn log(id: &str) -> String {
        format!(r#"{{"event":"log","level":"info","message":"m","id":"{id}"}}"#)
    }

    const FINISHED: &str = r#"{"event":"run.finished","status":"succeeded"}"#;

    #[test]
    fn a_group_commits_every_job_but_those_that_failed() {
        let f = Fixture::new();
        let (finish, reply) = append_job("b", &[FINISHED]);
        f.group(vec![finish]);
        answer(reply).expect("run b finishes");

        let (a1, a2, a3) = (log("a1"), log("a2"), log("a3"));
        let (jobs, replies): (Vec<_>, Vec<_>) = [
            append_job("a", &[&a1, &a2]),
            // After `run.finished`: refused, nothing of it stored.
            append_job("b", &[&log("late")]),
            // Sees the first job's events: its seq follows them, its duplicate is one.
            append_job("a", &[&a3, &a1]),
            append_job("nobody", &[&log("x")]),
            // The whole batch is refused: an event after the finish in the same batch.
            append_job("a", &[&log("a4"), FINISHED, &log("a5")]),
            append_job("a", &[&a2, &a3]),
        ]
        .into_iter()
        .unzip();
        // A job that fails after writing: its run row is in before its token clashes.
        let (clash, clash_reply) = job(|g| {
            let run = NewRun {
                write_hash: "w-a".into(),
                ..new_run("c")
            };
            create(g, &run)
        });
        f.group(jobs.into_iter().chain([clash]).collect());
        assert!(matches!(answer(clash_reply), Err(StoreError::Db(_))));
        let runs: i64 = f
            .conn
            .query_row("SELECT COUNT(*) FROM runs WHERE id = 'c'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(runs, 0, "the failed job's own writes are rolled back");
        let mut replies = replies.into_iter().map(answer);

        let first = replies.next().unwrap().expect("the first append");
        assert_eq!((first.events.len(), first.last_seq), (2, 2));
        assert!(matches!(replies.next().unwrap(), Err(StoreError::Finished)));
        let third = replies.next().unwrap().expect("the third append");
        assert_eq!((third.events.len(), third.duplicates), (1, 1));
        assert_eq!(third.last_seq, 3);
        assert!(matches!(replies.next().unwrap(), Err(StoreError::NotFound)));
        assert!(matches!(replies.next().unwrap(), Err(StoreError::Finished)));
        let last = replies.next().unwrap().expect("the retry");
        assert_eq!(
            (last.events.len(), last.duplicates, last.last_seq),
            (0, 2, 3)
        );

        let ids = |run| -> Vec<(i64, Option<String>)> { f.seqs_and_ids(run) };
        assert_eq!(
            ids("a"),
            [
                (1, Some("a1".into())),
                (2, Some("a2".into())),
                (3, Some("a3".into()))
            ]
        );
        assert_eq!(ids("b"), [(1, None)], "nothing stored after the finish");
        let cached = f
            .cache
            .get(&RunId::new("a").unwrap(), now())
            .expect("a cached state");
        assert_eq!((cached.last_seq, cached.event_count), (3, 3));
        let last_seq: i64 = f
            .conn
            .query_row("SELECT last_seq FROM runs WHERE id = 'a'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(last_seq, 3);
    }

    #[test]
    fn a_group_whose_transaction_is_lost_fails_whole_and_caches_nothing_of_it() {
        let f = Fixture::new();
        let (ok, ok_reply) = append_job("a", &[&log("a1")]);
        // What SQLite does on some errors (a full disk, an I/O error): the whole
        // transaction is rolled back under the jobs' feet.
        let (lost, lost_reply) = job(|g| {
            g.conn.execute_batch("ROLLBACK")?;
            Ok(())
        });
        let (after, after_reply) = append_job("a", &[&log("a2")]);
        f.group(vec![ok, lost, after]);

        assert!(matches!(answer(ok_reply), Err(StoreError::Db(_))));
        assert!(matches!(answer(lost_reply), Err(StoreError::Db(_))));
        assert!(matches!(answer(after_reply), Err(StoreError::Db(_))));
        assert_eq!(f.seqs_and_ids("a"), []);
        let cached = f
            .cache
            .get(&RunId::new("a").unwrap(), now())
            .expect("the created state");
        assert_eq!(cached.last_seq, 0, "the lost group's state is not cached");

        // The writer goes on with the next group.
        let (retry, reply) = append_job("a", &[&log("a1")]);
        f.group(vec![retry]);
        assert_eq!(answer(reply).expect("the retry").last_seq, 1);
    }

    #[test]
    fn a_job_that_panics_fails_alone() {
        let f = Fixture::new();
        let (first, first_reply) = append_job("a", &[&log("a1")]);
        let (panics, panic_reply) = job(|g| -> Result<(), StoreError> {
            g.conn.execute_batch("DELETE FROM runs")?;
            panic!("a bug in a write");
        });
        let (last, last_reply) = append_job("b", &[&log("b1")]);
        f.group(vec![first, panics, last]);
        assert!(matches!(answer(panic_reply), Err(StoreError::Db(_))));
        assert_eq!(answer(first_reply).expect("appended").last_seq, 1);
        assert_eq!(answer(last_reply).expect("appended").last_seq, 1);
        assert_eq!(
            f.seqs_and_ids("b"),
            [(1, Some("b1".into()))],
            "its deletes undone"
        );
    }

    #[test]
    fn a_job_without_a_savepoint_that_fails_after_writing_fails_its_group() {
        let f = Fixture::new();
        let (first, first_reply) = append_job("a", &[&log("a1")]);
        // Refused before writing: the group goes on without it.
        let (refused, refused_reply) = job_with(Isolation::ChecksFirst, |_| -> Result<(), _> {
            Err(StoreError::NotFound)
        });
        let (second, second_reply) = append_job("b", &[&log("b1")]);
        f.group(vec![first, refused, second]);
        assert!(matches!(answer(refused_reply), Err(StoreError::NotFound)));
        assert_eq!(answer(first_reply).expect("appended").last_seq, 1);
        assert_eq!(answer(second_reply).expect("appended").last_seq, 1);

        // Failing after a row changed: nothing of the group is stored, nor cached.
        let (ok, ok_reply) = append_job("a", &[&log("a2")]);
        let (half, half_reply) = job_with(Isolation::ChecksFirst, |g| -> Result<(), _> {
            g.conn
                .execute("DELETE FROM events WHERE run_id = 'b'", [])?;
            g.conn.execute(
                "INSERT INTO tokens (hash, run_id, scope) VALUES ('w-a', 'a', 'write')",
                [],
            )?;
            Ok(())
        });
        let (after, after_reply) = append_job("b", &[&log("b2")]);
        f.group(vec![ok, half, after]);
        assert!(matches!(answer(half_reply), Err(StoreError::Db(_))));
        assert!(matches!(answer(ok_reply), Err(StoreError::Db(_))));
        assert!(matches!(answer(after_reply), Err(StoreError::Db(_))));
        assert_eq!(f.seqs_and_ids("a"), [(1, Some("a1".into()))]);
        assert_eq!(
            f.seqs_and_ids("b"),
            [(1, Some("b1".into()))],
            "its delete undone"
        );
        let cached = f
            .cache
            .get(&RunId::new("a").unwrap(), now())
            .expect("a state");
        assert_eq!(cached.last_seq, 1, "the failed group's state is not cached");

        // The next group commits.
        let (retry, reply) = append_job("a", &[&log("a2")]);
        f.group(vec![retry]);
        assert_eq!(answer(reply).expect("the retry").last_seq, 2);
    }

    #[test]
    fn the_wal_is_checkpointed_every_checkpoint_pages_and_stays_bounded() {
        let f = Fixture::new();
        let page: u64 = f
            .conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap();
        let frame = page + 24;
        let wal = f._dir.path().join("herald.db-wal");
        let wal_len = || std::fs::metadata(&wal).map_or(0, |m| m.len());
        // Events of 15 pages each, stored in overflow pages: about 15 WAL frames apiece.
        let big = log_of(&"x".repeat(60_000));
        let mut written = 0;
        let mut append_until = |pages: u64| {
            while written < pages * page {
                let (add, reply) = append_job("a", &[&big, &big, &big, &big]);
                f.group(vec![add]);
                answer(reply).expect("appended");
                written += 4 * 60_000;
            }
        };

        // SQLite's default would have checkpointed at 1,000 pages and started the WAL
        // over from its beginning, so that it would never pass about 1,000 frames.
        append_until(3_000);
        assert!(
            wal_len() > 2_000 * frame,
            "a WAL of {} frames after 3,000 pages",
            wal_len() / frame
        );

        // Past CHECKPOINT_PAGES it is checkpointed and starts over: bounded.
        append_until(u64::from(CHECKPOINT_PAGES) + 3_000);
        assert!(
            wal_len() <= (u64::from(CHECKPOINT_PAGES) + 200) * frame,
            "a WAL of {} frames",
            wal_len() / frame
        );
        assert_eq!(f.seqs_and_ids("a").len() as u64, written / 60_000);
    }

    #[test]
    fn a_deleted_run_leaves_the_cache_when_its_group_commits() {
        let f = Fixture::new();
        let (add, reply) = append_job("a", &[&log("a1")]);
        f.group(vec![add]);
        answer(reply).expect("appended");
        let id = RunId::new("a").unwrap();
        assert!(f.cache.get(&id, now()).is_some());

        let (gone, gone_reply) = job({
            let id = id.clone();
            move |g| delete(g, &id)
        });
        let (late, late_reply) = append_job("a", &[&log("a2")]);
        let (again, again_reply) = job(move |g| create(g, &new_run("a")));
        f.group(vec![gone, late, again]);
        answer(gone_reply).expect("deleted");
        assert!(matches!(answer(late_reply), Err(StoreError::NotFound)));
        answer(again_reply).expect("created again");
        let state = f.cache.get(&id, now()).expect("the new run's state");
        assert_eq!(state.last_seq, 0, "not the deleted run's");
        assert_eq!(f.seqs_and_ids("a"), []);
    }
}
