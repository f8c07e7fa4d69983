//! The stores' contract, through the [`Store`] trait: every test runs on SQLite and on
//! PostgreSQL (`sqlite::` and `postgres::` in the test names). Two stores on one
//! database stand in for two hub processes: each has its own connections and cache
//! (and, on SQLite, its own writer thread; on PostgreSQL, its own listener).

use std::collections::HashSet;
use std::sync::Arc;

use herald_protocol::{Draft, RunId, RunStatus, Timestamp, TypeFilter, parse_draft_str};
use herald_testkit::pg::TempDatabase;
use sqlx::Connection;

use crate::store::{Author, NewRun, Store, StoreError, Wake, open_store};

/// Each test once per store.
macro_rules! on_both_stores {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::$test(super::TestDb::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::$test(super::TestDb::postgres().await).await;
                }
            )*
        }
    };
}

on_both_stores!(
    two_stores_on_one_database_keep_seq_dense_and_states_current,
    a_finished_run_takes_no_event_but_acknowledges_retries,
    untracked_types_are_dropped_but_run_events_pass,
    mark_stalled_appends_only_while_the_producer_is_silent,
    reads_see_runs_tokens_and_counts,
    a_run_created_again_is_not_served_the_deleted_run_s_state,
    two_stores_deleting_expired_runs_delete_each_once,
    a_run_an_earlier_hub_kept_forever_expires_once_migrated,
);

/// A fresh database: a SQLite file in a temp dir, or a PostgreSQL database of its own,
/// dropped when the test ends.
struct TestDb {
    url: String,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<TempDatabase>,
}

impl TestDb {
    fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("a temp dir");
        TestDb {
            url: format!("sqlite://{}", dir.path().join("herald.db").display()),
            _dir: Some(dir),
            postgres: None,
        }
    }

    async fn postgres() -> TestDb {
        let db = TempDatabase::create("herald_unit", None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        TestDb {
            url: db.url().to_owned(),
            _dir: None,
            postgres: Some(db),
        }
    }

    async fn store(&self) -> Arc<dyn Store> {
        open_store(&self.url).await.expect("the store opens")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(Err(e)) = self.postgres.take().map(|db| db.drop_blocking()) {
            eprintln!("could not drop a test database: {e}");
        }
    }
}

fn new_run(id: &str, track: Option<&str>) -> NewRun {
    NewRun {
        id: RunId::new(id).expect("a run id"),
        name: id.to_owned(),
        parent: None,
        heartbeat_timeout_s: 60.0,
        ttl_s: 3600.0,
        track: track.map(|t| t.parse::<TypeFilter>().expect("a filter")),
        meta: None,
        write_hash: format!("w-{id}"),
        read_hash: format!("r-{id}"),
        created_at: at(0.0),
    }
}

/// `secs` seconds after a fixed start.
fn at(secs: f64) -> Timestamp {
    Timestamp::from_unix_micros(1_800_000_000_000_000).add_seconds(secs)
}

fn drafts(run: &RunId, texts: &[String]) -> Vec<Draft> {
    texts
        .iter()
        .map(|t| parse_draft_str(t, run).expect("a draft"))
        .collect()
}

fn log(id: &str) -> String {
    format!(r#"{{"event":"log","level":"info","message":"m","id":"{id}"}}"#)
}

fn finished() -> String {
    r#"{"event":"run.finished","status":"succeeded","id":"fin"}"#.to_owned()
}

async fn two_stores_on_one_database_keep_seq_dense_and_states_current(db: TestDb) {
    const TASKS: usize = 6;
    const APPENDS: usize = 40;
    let stores = [db.store().await, db.store().await];
    let run = stores[0]
        .create_run(&new_run("shared", None))
        .await
        .expect("created")
        .id;

    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let store = Arc::clone(&stores[task % 2]);
        let run = run.clone();
        tasks.push(tokio::spawn(async move {
            let mut appended = 0;
            for i in 0..APPENDS {
                // Every batch is sent twice, as by a producer that lost the reply.
                let texts: Vec<String> = (0..1 + i % 3)
                    .map(|k| log(&format!("t{task}-{i}-{k}")))
                    .collect();
                for _ in 0..2 {
                    let res = store
                        .append(&run, drafts(&run, &texts), at(i as f64), Author::Producer)
                        .await
                        .expect("appended");
                    appended += res.events.len();
                }
            }
            appended
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("the task ran");
    }
    let expected: usize = (0..APPENDS).map(|i| 1 + i % 3).sum::<usize>() * TASKS;
    assert_eq!(total, expected, "each event stored once");

    let events = stores[1].events(&run, 0, 10_000).await.expect("events");
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=total as u64).collect::<Vec<_>>(), "dense");
    let ids: HashSet<_> = events.iter().filter_map(|e| e.id.clone()).collect();
    assert_eq!(ids.len(), total);

    // Each store's cached state caught up with what the other appended.
    for store in &stores {
        let record = store.run(&run).await.expect("the run");
        assert_eq!(record.last_seq, total as u64);
        assert_eq!(record.state.event_count, total as u64);
        assert_eq!(record.state.last_seq, total as u64);
    }
    // And an append through either folds onto the whole history.
    let more = stores[0]
        .append(
            &run,
            drafts(&run, &[log("last")]),
            at(99.0),
            Author::Producer,
        )
        .await
        .expect("appended");
    assert_eq!(more.state.event_count, total as u64 + 1);
}

async fn a_finished_run_takes_no_event_but_acknowledges_retries(db: TestDb) {
    let store = db.store().await;
    let run = store
        .create_run(&new_run("once", None))
        .await
        .expect("created")
        .id;
    let batch = [log("a"), finished()];
    let res = store
        .append(&run, drafts(&run, &batch), at(1.0), Author::Producer)
        .await
        .expect("appended");
    assert_eq!(
        (res.events.len(), res.state.status),
        (2, RunStatus::Succeeded)
    );

    let retry = store
        .append(&run, drafts(&run, &batch), at(2.0), Author::Producer)
        .await
        .expect("a retry is acknowledged");
    assert_eq!(
        (retry.events.len(), retry.duplicates, retry.last_seq),
        (0, 2, 2)
    );

    let late = store
        .append(
            &run,
            drafts(&run, &[log("a"), log("b")]),
            at(3.0),
            Author::Producer,
        )
        .await;
    assert!(matches!(late, Err(StoreError::Finished)), "{late:?}");
    assert_eq!(store.events(&run, 0, 100).await.expect("events").len(), 2);
    assert!(matches!(
        store.create_run(&new_run("once", None)).await,
        Err(StoreError::Conflict)
    ));
}

async fn untracked_types_are_dropped_but_run_events_pass(db: TestDb) {
    let store = db.store().await;
    let run = store
        .create_run(&new_run("quiet", Some("log")))
        .await
        .expect("created")
        .id;
    let progress = r#"{"event":"progress","stage":"s","done":1,"elapsed_s":0.5}"#.to_owned();
    let res = store
        .append(
            &run,
            drafts(&run, &[progress, log("a"), finished()]),
            at(1.0),
            Author::Producer,
        )
        .await
        .expect("appended");
    let types: Vec<&str> = res.events.iter().map(|e| e.event_type()).collect();
    assert_eq!(types, ["log", "run.finished"]);
    assert_eq!((res.filtered, res.last_seq), (1, 2));
}

async fn mark_stalled_appends_only_while_the_producer_is_silent(db: TestDb) {
    let store = db.store().await;
    let run = store
        .create_run(&new_run("slow", None))
        .await
        .expect("created")
        .id;
    store
        .append(&run, drafts(&run, &[log("a")]), at(10.0), Author::Producer)
        .await
        .expect("appended");
    let stalled =
        || parse_draft_str(r#"{"event":"run.stalled","silent_for_s":1}"#, &run).expect("a draft");

    // The producer spoke 30 s ago, within its 60 s timeout.
    let res = store.mark_stalled(&run, stalled(), at(40.0)).await;
    assert!(res.expect("checked").events.is_empty());

    let res = store.mark_stalled(&run, stalled(), at(80.0)).await;
    let res = res.expect("stalled");
    assert_eq!(
        (res.events.len(), res.state.status),
        (1, RunStatus::Stalled)
    );
    // Once stalled, not again; and the hub's own event did not reset the silence.
    let again = store.mark_stalled(&run, stalled(), at(200.0)).await;
    assert!(again.expect("checked").events.is_empty());
    assert_eq!(store.silent_runs(at(200.0)).await.expect("silent").len(), 0);

    // The producer speaks: running again, and silent again a timeout later.
    store
        .append(&run, drafts(&run, &[log("b")]), at(210.0), Author::Producer)
        .await
        .expect("appended");
    assert_eq!(store.silent_runs(at(260.0)).await.expect("silent").len(), 0);
    assert_eq!(store.silent_runs(at(280.0)).await.expect("silent").len(), 1);
}

async fn reads_see_runs_tokens_and_counts(db: TestDb) {
    let store = db.store().await;
    for id in ["r1", "r2", "r3"] {
        store.create_run(&new_run(id, None)).await.expect("created");
    }
    let r2 = RunId::new("r2").unwrap();
    store
        .append(&r2, drafts(&r2, &[finished()]), at(1.0), Author::Producer)
        .await
        .expect("appended");
    let (run, scope) = store.token("r-r2").await.expect("read").expect("a token");
    assert_eq!((run.as_str(), scope), ("r2", crate::auth::Scope::Read));
    assert!(store.token("nope").await.expect("read").is_none());

    let mut counts = store.count_by_status().await.expect("counts");
    counts.sort_by_key(|(status, _)| status.as_str());
    assert_eq!(counts, [(RunStatus::Running, 2), (RunStatus::Succeeded, 1)]);
    let running = store
        .list(&crate::store::RunFilter {
            status: Some(RunStatus::Running),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("listed");
    let ids: Vec<&str> = running.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["r3", "r1"], "newest first");

    store.delete(&r2).await.expect("deleted");
    assert!(matches!(store.delete(&r2).await, Err(StoreError::NotFound)));
    assert!(
        store.token("r-r2").await.expect("read").is_none(),
        "tokens go too"
    );
    assert!(matches!(store.run(&r2).await, Err(StoreError::NotFound)));
    let mut expired: Vec<RunId> = store
        .delete_expired(at(3601.0), 10)
        .await
        .expect("expired runs deleted")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    expired.sort();
    assert_eq!(
        expired,
        [RunId::new("r1").unwrap(), RunId::new("r3").unwrap()]
    );
    assert!(matches!(
        store.run(&expired[0]).await,
        Err(StoreError::NotFound)
    ));
    assert!(
        store
            .delete_expired(at(3601.0), 10)
            .await
            .expect("none left")
            .is_empty()
    );

    // Reopened, as after a restart: the runs and their states are there.
    store
        .create_run(&new_run("r4", None))
        .await
        .expect("created");
    drop(store);
    let store = db.store().await;
    let r4 = store.run(&RunId::new("r4").unwrap()).await.expect("r4");
    assert_eq!(r4.state.name, "r4");
}

async fn a_run_created_again_is_not_served_the_deleted_run_s_state(db: TestDb) {
    let (a, b) = (db.store().await, db.store().await);
    let id = RunId::new("again").unwrap();
    let first = a
        .create_run(&new_run("again", None))
        .await
        .expect("created")
        .generation;
    let logs: Vec<String> = (0..5).map(|i| log(&format!("old{i}"))).collect();
    a.append(&id, drafts(&id, &logs), at(1.0), Author::Producer)
        .await
        .expect("appended");
    // Store b caches the first run's state, then the run is deleted and created again
    // through store a, which b does not hear of.
    assert_eq!(b.run(&id).await.expect("read").state.event_count, 5);
    assert_eq!(
        a.delete(&id).await.expect("deleted"),
        first,
        "the generation deleted"
    );
    let again = NewRun {
        created_at: at(10.0),
        write_hash: "w-again-2".into(),
        read_hash: "r-again-2".into(),
        ..new_run("again", None)
    };
    let second = a
        .create_run(&again)
        .await
        .expect("created again")
        .generation;
    assert!(second > first, "created again: {first} then {second}");
    let logs: Vec<String> = (0..6).map(|i| log(&format!("new{i}"))).collect();
    a.append(&id, drafts(&id, &logs), at(11.0), Author::Producer)
        .await
        .expect("appended");

    let record = b.run(&id).await.expect("read");
    assert_eq!(record.state.event_count, 6, "only the new run's events");
    assert_eq!(record.generation, second);
    let appended = b
        .append(&id, drafts(&id, &[log("b")]), at(12.0), Author::Producer)
        .await
        .expect("appended through b");
    assert_eq!(appended.state.event_count, 7);
    assert_eq!(appended.generation, second);
    let expired = b.delete_expired(at(1e9), 10).await.expect("expired");
    assert_eq!(expired, [(id, second)], "the generation deleted");
}

async fn two_stores_deleting_expired_runs_delete_each_once(db: TestDb) {
    const RUNS: usize = 60;
    let stores = [db.store().await, db.store().await];
    for i in 0..RUNS {
        stores[i % 2]
            .create_run(&new_run(&format!("old{i}"), None))
            .await
            .expect("created");
    }
    // One run speaks just before the sweep: it is not expired any more.
    let fresh = RunId::new("old7").unwrap();
    stores[0]
        .append(
            &fresh,
            drafts(&fresh, &[log("x")]),
            at(3000.0),
            Author::Producer,
        )
        .await
        .expect("appended");

    let sweeps = stores.iter().map(|store| {
        let store = Arc::clone(store);
        tokio::spawn(async move {
            let mut deleted = Vec::new();
            loop {
                let batch = store.delete_expired(at(3601.0), 7).await.expect("swept");
                if batch.is_empty() {
                    return deleted;
                }
                deleted.extend(batch.into_iter().map(|(id, _)| id));
            }
        })
    });
    let mut deleted = Vec::new();
    for sweep in sweeps.collect::<Vec<_>>() {
        deleted.extend(sweep.await.expect("the sweep ran"));
    }
    let unique: HashSet<&RunId> = deleted.iter().collect();
    assert_eq!(
        unique.len(),
        deleted.len(),
        "each run deleted once: {deleted:?}"
    );
    assert_eq!(deleted.len(), RUNS - 1);
    assert!(!unique.contains(&fresh));
    assert!(stores[1].run(&fresh).await.is_ok(), "the fresh run is kept");
}

/// PostgreSQL only: the listener wakes other stores, and after its connection is
/// terminated it listens again and says that anything may have been missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_notifications_wake_other_stores_and_survive_a_lost_connection() {
    let db = TestDb::postgres().await;
    let (a, b) = (db.store().await, db.store().await);
    let mut wakes = b.wakes().expect("PostgreSQL has notifications");
    let next = async |wakes: &mut tokio::sync::broadcast::Receiver<Wake>| {
        tokio::time::timeout(std::time::Duration::from_secs(10), wakes.recv())
            .await
            .expect("a wake-up within 10 s")
            .expect("the listener runs")
    };
    assert_eq!(
        next(&mut wakes).await,
        Wake::All,
        "listening, then catch up"
    );

    let id = RunId::new("woken").unwrap();
    let generation = a
        .create_run(&new_run("woken", None))
        .await
        .expect("created")
        .generation;
    assert_eq!(next(&mut wakes).await, Wake::Run(id.clone()));
    a.append(&id, drafts(&id, &[log("a")]), at(1.0), Author::Producer)
        .await
        .expect("appended");
    assert_eq!(next(&mut wakes).await, Wake::Run(id.clone()));

    let pg = db.postgres.as_ref().expect("a PostgreSQL database");
    let mut conn = sqlx::PgConnection::connect(pg.admin_url())
        .await
        .expect("connects");
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'herald-listener' AND datname = $1",
    )
    .bind(pg.name())
    .fetch_all(&mut conn)
    .await
    .expect("terminated");
    assert_eq!(terminated, [true, true], "both stores' listeners");
    assert_eq!(next(&mut wakes).await, Wake::All, "listening again");
    a.append(&id, drafts(&id, &[log("b")]), at(2.0), Author::Producer)
        .await
        .expect("appended");
    assert_eq!(next(&mut wakes).await, Wake::Run(id.clone()));
    a.delete(&id).await.expect("deleted");
    assert_eq!(
        next(&mut wakes).await,
        Wake::Deleted(id, generation),
        "a deletion names the creation it deleted"
    );
    let expiring = RunId::new("expiring").unwrap();
    a.create_run(&new_run("expiring", None))
        .await
        .expect("created");
    assert_eq!(next(&mut wakes).await, Wake::Run(expiring.clone()));
    let expired = a.delete_expired(at(1e9), 10).await.expect("expired");
    let [(id, generation)] = &expired[..] else {
        panic!("one run expired: {expired:?}");
    };
    assert_eq!(
        next(&mut wakes).await,
        Wake::Deleted(id.clone(), *generation),
        "so does retention's"
    );
    assert_eq!(*id, expiring);
}

#[tokio::test]
async fn sqlite_has_no_notifications() {
    let db = TestDb::sqlite();
    assert!(db.store().await.wakes().is_none());
}

/// A run whose producer stamped an event 9999-12-31, stored by an earlier hub, which
/// kept it out of retention forever; once migrated it expires `ttl_s` after the
/// migration, by the clock.
async fn a_run_an_earlier_hub_kept_forever_expires_once_migrated(db: TestDb) {
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_micros() as i64;
    let forever = "9999-12-31T00:00:00Z"
        .parse::<Timestamp>()
        .expect("a time")
        .unix_micros();
    let created_us = now_us - 10_000_000;
    const INSERT: &str = "INSERT INTO runs (id, name, heartbeat_timeout_s, ttl_s, created_us, \
         last_event_us, last_producer_us, state) VALUES ('old', 'old', 60, 100, $1, $2, $1, '{}')";
    match &db.postgres {
        None => {
            let path = db.url.strip_prefix("sqlite://").expect("a SQLite URL");
            let conn = rusqlite::Connection::open(path).expect("the file opens");
            // The tables as hubs wrote them before retention counted from the hub's
            // clock.
            conn.execute_batch(crate::store::SQLITE_MIGRATIONS[0])
                .expect("the old tables");
            conn.execute(&INSERT.replace('$', "?"), [created_us, forever])
                .expect("the old row");
        }
        Some(_) => {
            let mut first = sqlx::migrate!("./migrations/postgres");
            first.migrations = std::borrow::Cow::Owned(first.migrations[..1].to_vec());
            let pool = sqlx::PgPool::connect(&db.url).await.expect("connects");
            first.run(&pool).await.expect("the first migration");
            sqlx::query(INSERT)
                .bind(created_us)
                .bind(forever)
                .execute(&pool)
                .await
                .expect("the old row");
            pool.close().await;
        }
    }
    let store = db.store().await;
    let at_us = |us: i64| Timestamp::from_unix_micros(us);
    let kept = store
        .delete_expired(at_us(now_us + 50_000_000), 10)
        .await
        .expect("the sweep runs");
    assert!(
        kept.is_empty(),
        "within its ttl_s of the migration: {kept:?}"
    );
    let deleted = store
        .delete_expired(at_us(now_us + 3_600_000_000), 10)
        .await
        .expect("the sweep runs");
    let deleted: Vec<RunId> = deleted.into_iter().map(|(id, _)| id).collect();
    assert_eq!(
        deleted,
        [RunId::new("old").unwrap()],
        "an hour on, not in 9999"
    );
    // Opened again, the migrated file or database is left as it is.
    drop(store);
    db.store().await;
}
