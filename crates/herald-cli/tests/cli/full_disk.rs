//! `herald emit` against a hub whose disk is really full: a small tmpfs mounted for the
//! test under `herald serve`'s SQLite file, filled with a file. The hub answers 507;
//! emit says the disk is full, waits, and its event is taken once space frees.
//!
//! Mounting needs root (or `CAP_SYS_ADMIN`): where the test cannot mount it says that it
//! did not run, and under `CI=true` it fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use herald_protocol::EventBody;
use serde_json::{Value, json};

use crate::hubs::{Running, TestHub, stderr_of, wait_for};

/// A tmpfs on a temp dir, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`2m`); `None`, having said why, when it cannot (a
    /// failure under `CI=true`).
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("a temp dir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        let why = match out {
            Ok(out) if out.status.success() => return Some(Tmpfs { dir }),
            Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            Err(e) => e.to_string(),
        };
        let why = format!("the full-disk test mounts a tmpfs and cannot (run it as root): {why}");
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{why}");
        }
        let _ = writeln!(std::io::stderr(), "DID NOT RUN: {why}");
        None
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills it with a file to its last byte; removing the file frees it.
    fn fill(&self) -> Filler {
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("the filler file");
        for chunk in [64 * 1024, 4096, 512, 1] {
            let bytes = vec![0xa5u8; chunk];
            while let Ok(n @ 1..) = file.write(&bytes) {
                let _ = n;
            }
        }
        Filler { path }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily if the hub, killed just before, still holds its file open.
        let ok = Command::new("umount").arg(self.path()).status();
        if !matches!(ok, Ok(s) if s.success()) {
            let _ = Command::new("umount").arg("-l").arg(self.path()).status();
        }
    }
}

/// The file filling the disk; dropping it frees the space.
struct Filler {
    path: PathBuf,
}

impl Drop for Filler {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Four log events of 4 KiB each.
fn batch(seed: u64) -> Value {
    let mut x = seed | 1;
    (0..4)
        .map(|_| {
            let text: String = (0..256)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    format!("{x:016x}")
                })
                .collect();
            json!({"event": "log", "level": "info", "message": text})
        })
        .collect()
}

/// The hub's count of appends refused for a full disk.
fn refused(hub: &TestHub) -> u64 {
    let metrics = ureq::get(format!("{}/metrics", hub.url))
        .call()
        .expect("the hub answers")
        .body_mut()
        .read_to_string()
        .expect("a body");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("herald_appends_disk_full_total "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no disk-full count in {metrics}"))
}

#[test]
fn emit_says_the_hub_s_disk_is_full_and_waits_until_it_is_not() {
    let Some(disk) = Tmpfs::mount("2m") else {
        return;
    };
    let db = format!("sqlite://{}", disk.path().join("herald.db").display());
    let hub = TestHub::with_flags(&["--db", &db, "--rate-limit", "off"]);
    let run = hub.create(json!({"name": "full"}));
    let filler = disk.fill();
    // Space the database had already taken may hold a few appends first.
    let events = format!("/v1/runs/{}/events", run.id);
    let mut seed = 1;
    while refused(&hub) == 0 {
        assert!(seed <= 100, "no 507 within 100 appends on a full disk");
        let (status, reply) = hub.post(&events, Some(&run.write_token), &batch(seed));
        assert!(matches!(status, 200 | 507), "{status} {reply}");
        seed += 1;
    }

    let emit = Running::spawn(hub.herald(&[
        "emit",
        "--run",
        &run.id,
        "--token",
        &run.write_token,
        "log",
        "level=warn",
        "message=after the disk filled",
    ]));
    wait_for("emit's append to be refused", || refused(&hub) >= 2);
    drop(filler);
    let out = emit.finish();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("cannot store anything: its disk is full")
            && stderr.contains("trying again"),
        "emit says why it waits: {stderr}"
    );
    let last = hub.events(&run.id).pop().expect("events");
    match last.body {
        EventBody::Log(log) => assert_eq!(log.message, "after the disk filled"),
        other => panic!("not emit's event: {other:?}"),
    }
}
