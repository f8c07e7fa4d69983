//! The SQLite schema's versions (`PRAGMA user_version`, `migrations/sqlite/`): a file
//! written before the schema had versions opens with every run and event, a new file
//! gets every migration, and a file of a newer hub is refused rather than misread.
//!
//! The fixture `tests/fixtures/sqlite-unversioned.db` was written by `herald serve` as
//! it was before versions (two runs, one finished, one a child with `track` and a
//! cancel request), so it is what a hub of then left on disk.

use std::path::{Path, PathBuf};

use herald_hub::{Author, RunFilter, SQLITE_MIGRATIONS, SqliteStore, Store};
use herald_protocol::{Draft, Log, LogLevel, RunId, RunStatus, Timestamp};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/sqlite-unversioned.db"
);

/// A copy of the fixture in a fresh directory, so that the committed file stays as an
/// old hub wrote it.
fn fixture_copy(dir: &Path) -> PathBuf {
    let path = dir.join("herald.db");
    std::fs::copy(FIXTURE, &path).expect("the fixture is copied");
    path
}

fn user_version(path: &Path) -> u32 {
    rusqlite::Connection::open(path)
        .expect("the file opens")
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .expect("a user_version")
}

fn id(s: &str) -> RunId {
    RunId::new(s).expect("a run id")
}

/// The types and `seq`s of a run's stored events.
async fn events(store: &SqliteStore, run: &str) -> Vec<(u64, String)> {
    store
        .events(&id(run), 0, 100)
        .await
        .expect("the events are read")
        .iter()
        .map(|e| (e.seq, e.event_type().to_owned()))
        .collect()
}

fn numbered(types: &[&str]) -> Vec<(u64, String)> {
    (1..).zip(types.iter().map(|t| (*t).to_owned())).collect()
}

#[tokio::test]
async fn a_file_written_before_versions_opens_with_every_run_and_event() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = fixture_copy(dir.path());
    assert_eq!(user_version(&path), 0, "the fixture predates versions");
    let store = SqliteStore::open(&path).await.expect("the old file opens");

    let filter = RunFilter {
        status: None,
        parent: None,
        before: None,
        limit: 100,
    };
    let mut listed: Vec<String> = store
        .list(&filter)
        .await
        .expect("the runs are listed")
        .iter()
        .map(|r| r.id.to_string())
        .collect();
    listed.sort();
    assert_eq!(listed, ["fixture-agent", "fixture-build"]);

    let build = store.run(&id("fixture-build")).await.expect("a run");
    assert_eq!((build.last_seq, build.status), (6, RunStatus::Succeeded));
    assert_eq!(build.state.name, "build the docs");
    assert_eq!(
        events(&store, "fixture-build").await,
        numbered(&[
            "run.started",
            "stage.started",
            "progress",
            "log",
            "stage.finished",
            "run.finished"
        ])
    );
    let stored = store
        .events(&id("fixture-build"), 2, 1)
        .await
        .expect("an event");
    assert_eq!(stored[0].id.as_deref(), Some("s:1"), "its idempotency id");

    let agent = store.run(&id("fixture-agent")).await.expect("a run");
    assert_eq!((agent.last_seq, agent.status), (5, RunStatus::Running));
    assert_eq!(agent.parent, Some(id("fixture-build")));
    assert!(agent.track.is_some(), "its `track` filter is kept");
    assert!(agent.state.cancel_requested);
    assert_eq!(
        events(&store, "fixture-agent").await,
        numbered(&[
            "run.started",
            "tool.started",
            "tool.finished",
            "log",
            "run.cancel_requested"
        ])
    );

    // Migrated, it takes new events where the old ones end.
    let draft = Draft::new(
        Timestamp::from_unix_micros(1_796_504_700_000_000),
        Log {
            level: LogLevel::Info,
            message: "after the migration".into(),
        },
    );
    let appended = store
        .append(
            &id("fixture-agent"),
            vec![draft],
            Timestamp::from_unix_micros(1_796_504_700_000_000),
            Author::Producer,
        )
        .await
        .expect("an append to the migrated file");
    assert_eq!(appended.last_seq, 6);
    drop(store);
    assert_eq!(user_version(&path), SQLITE_MIGRATIONS.len() as u32);

    // Opened again, the file is left at its version, its runs as they were.
    let store = SqliteStore::open(&path)
        .await
        .expect("the file opens again");
    assert_eq!(events(&store, "fixture-agent").await.len(), 6);
    drop(store);
    assert_eq!(user_version(&path), SQLITE_MIGRATIONS.len() as u32);
}

#[tokio::test]
async fn a_new_file_gets_every_migration() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("herald.db");
    drop(SqliteStore::open(&path).await.expect("a new file opens"));
    assert_eq!(user_version(&path), SQLITE_MIGRATIONS.len() as u32);
}

#[tokio::test]
async fn a_file_of_a_newer_hub_is_refused_naming_its_version() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = fixture_copy(dir.path());
    let newer = SQLITE_MIGRATIONS.len() + 1;
    rusqlite::Connection::open(&path)
        .expect("the file opens")
        .execute_batch(&format!("PRAGMA user_version = {newer}"))
        .expect("the version is set");
    let err = match SqliteStore::open(&path).await {
        Ok(_) => panic!("a file of schema {newer} opened"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains(&format!("version {newer}")) && err.contains("newer"),
        "{err}"
    );
    assert_eq!(user_version(&path), newer as u32, "left as it was");
}
