//! A full disk under a real hub: the database on a small tmpfs mounted for the test
//! (the SQLite file in it, or a PostgreSQL database in a tablespace on it), filled up
//! with a file. Writes are refused with `507 insufficient_storage` and `Retry-After`,
//! reads go on, nothing acknowledged is lost, and writes come back when space frees.
//!
//! Mounting needs root (or `CAP_SYS_ADMIN`); where the test cannot mount it says that
//! it did not run, and under `CI=true` it fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use herald_hub::HubConfig;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::STORE;
use crate::util::{
    StoreKind, TestDb, TestHub, cannot_run, error_body, postgres_admin, send, seqs, within,
};

/// A tmpfs mounted on a temp dir, with the PostgreSQL tablespace made on it (if any),
/// taken down when dropped: the tablespace, then the mount.
struct SmallDisk {
    dir: tempfile::TempDir,
    tablespace: Option<String>,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (`mount`'s syntax, `2m`); `None`, after saying why (or
    /// failing under `CI=true`), when it cannot.
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output();
        match mounted {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                cannot_run(&format!(
                    "the full-disk test mounts a tmpfs and cannot (run it as root): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
                return None;
            }
            Err(e) => {
                cannot_run(&format!("the full-disk test cannot run `mount`: {e}"));
                return None;
            }
        }
        // The PostgreSQL server, another user, must reach the tablespace inside.
        set_mode(dir.path(), 0o755);
        Some(SmallDisk {
            dir,
            tablespace: None,
        })
    }

    /// A fresh database of the suite's store with its data on this disk.
    async fn database(&mut self) -> TestDb {
        let data = self.dir.path().join("data");
        std::fs::create_dir(&data).expect("a folder on the tmpfs");
        let tablespace = format!("herald_full_{}", std::process::id());
        if STORE == StoreKind::Postgres {
            let chown = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&data)
                .status()
                .expect("chown runs");
            assert!(chown.success(), "the folder is given to PostgreSQL's user");
            let mut admin = postgres_admin().await;
            let sql = format!(
                "CREATE TABLESPACE \"{tablespace}\" LOCATION '{}'",
                data.display()
            );
            sqlx::raw_sql(&sql)
                .execute(&mut admin)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "{sql}: {e}\nThe full-disk test puts a tablespace on a tmpfs of this \
                         machine, so PostgreSQL must run here (as `.ci/run postgres` starts it)"
                    )
                });
            self.tablespace = Some(tablespace.clone());
        }
        TestDb::new_in(STORE, &data, &tablespace).await
    }

    /// Fills the disk with a file, to its last byte; removing the file frees it.
    fn fill(&self) -> Filler {
        let path = self.dir.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("the filler file");
        for chunk in [64 * 1024, 4096, 512, 1] {
            let bytes = vec![0xa5u8; chunk];
            loop {
                match file.write(&bytes) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(28) => break,
                    Err(e) => panic!("filling the disk: {e}"),
                }
            }
        }
        let _ = file.sync_all();
        Filler { path }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if let Some(tablespace) = self.tablespace.take() {
            // Drop cannot await: a thread with a runtime of its own. The test's
            // database (dropped before this) no longer holds the tablespace.
            let dropped = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                runtime.block_on(async {
                    use sqlx::Connection;
                    let url = crate::util::postgres_admin_url();
                    let mut admin = sqlx::PgConnection::connect(&url).await?;
                    sqlx::raw_sql(&format!("DROP TABLESPACE IF EXISTS \"{tablespace}\""))
                        .execute(&mut admin)
                        .await
                })
            })
            .join();
            if !matches!(dropped, Ok(Ok(_))) {
                eprintln!("warning: dropping the test tablespace: {dropped:?}");
            }
        }
        // Lazily, if a file is still open on it (a store whose thread has not ended):
        // the mount goes at once, the memory when the last file closes.
        let path = self.dir.path();
        let unmounted = Command::new("umount").arg(path).status();
        if !matches!(unmounted, Ok(s) if s.success()) {
            let _ = Command::new("umount").arg("-l").arg(path).status();
        }
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("the mode is set");
}

/// The file that fills the disk; dropping it frees the space.
struct Filler {
    path: PathBuf,
}

impl Drop for Filler {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A batch of `n` log events with idempotency ids `{tag}-0..`, each with 4 KiB of text
/// that does not compress (PostgreSQL would otherwise store it in a few bytes).
fn batch(tag: &str, n: usize) -> Value {
    let mut seed = tag.bytes().fold(0x9e37_79b9_7f4a_7c15u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (0..n)
        .map(|i| {
            let text: String = (0..256)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    format!("{seed:016x}")
                })
                .collect();
            json!({"event": "log", "level": "info", "message": text, "id": format!("{tag}-{i}")})
        })
        .collect()
}

/// Appends `events` to run `id`: the status, the body and the `Retry-After`.
async fn append(
    hub: &TestHub,
    id: &str,
    token: &str,
    events: &Value,
) -> (StatusCode, Value, Option<String>) {
    let resp = within(
        "the append's answer",
        hub.request(Method::POST, &format!("/v1/runs/{id}/events"), Some(token))
            .json(events)
            .send(),
    )
    .await
    .expect("the hub answers");
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("ASCII").to_owned());
    let body = resp.json().await.expect("a JSON body");
    (status, body, retry_after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_with_507_keeps_reads_and_loses_nothing() {
    // SQLite's file and its log fit in 2 MiB; a PostgreSQL database takes more.
    let size = match STORE {
        StoreKind::Sqlite => "2m",
        StoreKind::Postgres => "16m",
    };
    let Some(mut disk) = SmallDisk::mount(size) else {
        return;
    };
    let db = disk.database().await;
    let config = HubConfig {
        rate_limit: None,
        ..HubConfig::default()
    };
    let mut hub = TestHub::on(&db, config, None).await;
    let run = hub.create_named("full").await;
    let mut acknowledged: Vec<String> = Vec::new();
    let first = batch("b0", 4);
    hub.append(&run, first.clone()).await;
    acknowledged.extend(ids(&first));
    let mut sse = hub.stream(&run, "", None).await;

    let filler = disk.fill();
    // Space the database had already taken may hold a few more batches first.
    let mut refused = None;
    for i in 1..=100 {
        let events = batch(&format!("b{i}"), 4);
        match append(&hub, &run.id, &run.write_token, &events).await {
            (StatusCode::OK, reply, _) => {
                assert_eq!(reply["appended"], 4, "{reply}");
                acknowledged.extend(ids(&events));
            }
            (StatusCode::INSUFFICIENT_STORAGE, reply, retry_after) => {
                refused = Some((events, reply, retry_after));
                break;
            }
            (status, reply, _) => panic!("an append on a full disk: {status} {reply}"),
        }
    }
    let (events, reply, retry_after) = refused.expect("a 507 within 100 appends on a full disk");
    let error = error_body(&reply, "insufficient_storage");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("disk is full")),
        "{reply}"
    );
    assert!(
        retry_after
            .as_deref()
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|s| s >= 1),
        "Retry-After in seconds: {retry_after:?}"
    );

    // Reads go on, and show every acknowledged event and nothing of the refused batch.
    assert_eq!(stored_ids(&hub, &run).await, acknowledged);
    assert_eq!(hub.state(&run).await["event_count"], acknowledged.len());
    let (status, _) = send(hub.request(Method::GET, "/healthz", None)).await;
    assert_eq!(status, StatusCode::OK);
    for _ in &acknowledged {
        sse.event().await;
    }
    assert_eq!(hub.metric("herald_appends_disk_full_total").await, 1.0);
    // Still full: still refused, still nothing stored.
    let (status, _, _) = append(&hub, &run.id, &run.write_token, &events).await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE);

    // Space frees: the refused batch is taken, after everything acknowledged.
    drop(filler);
    let reply = hub.append(&run, events.clone()).await;
    assert_eq!(reply["appended"], 4, "{reply}");
    acknowledged.extend(ids(&events));
    let stored = hub.all_events(&run).await;
    assert_eq!(
        seqs(&stored),
        (1..=acknowledged.len() as u64).collect::<Vec<_>>()
    );
    assert_eq!(stored_ids(&hub, &run).await, acknowledged);
    assert_eq!(
        sse.event().await.id.as_deref(),
        Some(&*acknowledged[acknowledged.len() - 4])
    );
    hub.stop().await;
}

fn ids(events: &Value) -> Vec<String> {
    events
        .as_array()
        .expect("a batch")
        .iter()
        .map(|e| e["id"].as_str().expect("an id").to_owned())
        .collect()
}

async fn stored_ids(hub: &TestHub, run: &crate::util::Run) -> Vec<String> {
    hub.all_events(run)
        .await
        .into_iter()
        .map(|e| e.id.expect("every event has an id"))
        .collect()
}
