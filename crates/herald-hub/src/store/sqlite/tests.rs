//! The SQLite store through its async API, with two stores on one file standing in
//! for two hub processes (each has its own writer thread, connections and cache).

use std::collections::HashSet;
use std::sync::Arc;

use herald_protocol::{Draft, RunId, RunStatus, Timestamp, TypeFilter, parse_draft_str};

use super::SqliteStore;
use crate::store::{NewRun, Store, StoreError};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_keep_seq_dense_and_states_current() {
    const TASKS: usize = 6;
    const APPENDS: usize = 40;
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("herald.db");
    let stores = [
        Arc::new(SqliteStore::open(&path).await.expect("opens")),
        Arc::new(SqliteStore::open(&path).await.expect("opens twice")),
    ];
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
                        .append(&run, drafts(&run, &texts), at(i as f64), true)
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
        .append(&run, drafts(&run, &[log("last")]), at(99.0), true)
        .await
        .expect("appended");
    assert_eq!(more.state.event_count, total as u64 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_run_takes_no_event_but_acknowledges_retries() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = SqliteStore::open(&dir.path().join("herald.db"))
        .await
        .expect("opens");
    let run = store
        .create_run(&new_run("once", None))
        .await
        .expect("created")
        .id;
    let batch = [log("a"), finished()];
    let res = store
        .append(&run, drafts(&run, &batch), at(1.0), true)
        .await
        .expect("appended");
    assert_eq!(
        (res.events.len(), res.state.status),
        (2, RunStatus::Succeeded)
    );

    let retry = store
        .append(&run, drafts(&run, &batch), at(2.0), true)
        .await
        .expect("a retry is acknowledged");
    assert_eq!(
        (retry.events.len(), retry.duplicates, retry.last_seq),
        (0, 2, 2)
    );

    let late = store
        .append(&run, drafts(&run, &[log("a"), log("b")]), at(3.0), true)
        .await;
    assert!(matches!(late, Err(StoreError::Finished)), "{late:?}");
    assert_eq!(store.events(&run, 0, 100).await.expect("events").len(), 2);
    assert!(matches!(
        store.create_run(&new_run("once", None)).await,
        Err(StoreError::Conflict)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untracked_types_are_dropped_but_run_events_pass() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = SqliteStore::open(&dir.path().join("herald.db"))
        .await
        .expect("opens");
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
            true,
        )
        .await
        .expect("appended");
    let types: Vec<&str> = res.events.iter().map(|e| e.event_type()).collect();
    assert_eq!(types, ["log", "run.finished"]);
    assert_eq!((res.filtered, res.last_seq), (1, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mark_stalled_appends_only_while_the_producer_is_silent() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = SqliteStore::open(&dir.path().join("herald.db"))
        .await
        .expect("opens");
    let run = store
        .create_run(&new_run("slow", None))
        .await
        .expect("created")
        .id;
    store
        .append(&run, drafts(&run, &[log("a")]), at(10.0), true)
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
        .append(&run, drafts(&run, &[log("b")]), at(210.0), true)
        .await
        .expect("appended");
    assert_eq!(store.silent_runs(at(260.0)).await.expect("silent").len(), 0);
    assert_eq!(store.silent_runs(at(280.0)).await.expect("silent").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_see_runs_tokens_and_counts() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("herald.db");
    let store = SqliteStore::open(&path).await.expect("opens");
    for id in ["r1", "r2", "r3"] {
        store.create_run(&new_run(id, None)).await.expect("created");
    }
    let r2 = RunId::new("r2").unwrap();
    store
        .append(&r2, drafts(&r2, &[finished()]), at(1.0), true)
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
    let mut expired = store
        .delete_expired(at(3601.0), 10)
        .await
        .expect("expired runs deleted");
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
    let store = SqliteStore::open(&path).await.expect("opens again");
    let r4 = store.run(&RunId::new("r4").unwrap()).await.expect("r4");
    assert_eq!(r4.state.name, "r4");
}
