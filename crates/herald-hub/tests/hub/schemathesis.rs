//! The hub's `/openapi.json` checked by tools that are not ours: `openapi-spec-validator`
//! validates the document against the OpenAPI specification, and schemathesis sends a
//! live hub (with an admin token, on SQLite) requests generated from the document, valid
//! and invalid, and checks every answer against it: no 5xx, only documented statuses,
//! bodies and content types as documented, invalid input refused and valid input taken.
//!
//! The run is bounded (`--max-examples`) and deterministic (`--seed`, one worker, no
//! example database), so it takes well under a minute and finds the same things each
//! time. What schemathesis cannot know about the API is said, with the reason, in
//! `tests/schemathesis/schemathesis.toml`.
//!
//! Needs both tools, pinned in `.ci/run`, which installs them into `target/ci-venv`:
//! `st` is found at `$HERALD_SCHEMATHESIS`, in `target/ci-venv/bin`, or on `PATH`, and the
//! validator beside it or on `PATH`. Without them the tests say so on stderr and return,
//! unless `CI=true`, where they fail.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use tokio::process::Command;

use crate::util::{StoreKind, TestHub, cannot_run, find_program, send};

/// How long schemathesis may take; it takes under a minute on a busy 2-core machine.
const SCHEMATHESIS_DEADLINE: Duration = Duration::from_secs(300);

/// Requests per operation and phase: enough to reach every status of every route.
const MAX_EXAMPLES: u32 = 10;

fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `st`, or `None` after saying why the test cannot run.
fn schemathesis() -> Option<PathBuf> {
    let found = std::env::var_os("HERALD_SCHEMATHESIS")
        .map(PathBuf::from)
        .or_else(|| {
            let venv = workspace_dir().join("target/ci-venv/bin/st");
            venv.is_file().then_some(venv)
        })
        .or_else(|| find_program(&["st", "schemathesis"]));
    if found.is_none() {
        cannot_run(
            "the OpenAPI tests need schemathesis: `.ci/run` installs it into target/ci-venv; \
             or pip install schemathesis and set HERALD_SCHEMATHESIS to its `st`",
        );
    }
    found
}

/// `openapi-spec-validator`, beside `st` or on `PATH`; `None` after saying why not.
fn spec_validator(st: &Path) -> Option<PathBuf> {
    let beside = st
        .parent()
        .map(|dir| dir.join("openapi-spec-validator"))
        .filter(|p| p.is_file());
    let found = beside.or_else(|| find_program(&["openapi-spec-validator"]));
    if found.is_none() {
        cannot_run(
            "the OpenAPI tests need openapi-spec-validator (pip install openapi-spec-validator), \
             beside schemathesis's `st` or on PATH",
        );
    }
    found
}

/// Runs `program` with `args` in `dir` to its end, within [`SCHEMATHESIS_DEADLINE`].
async fn run(program: &Path, args: &[&str], dir: &Path) -> Output {
    let child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{} starts: {e}", program.display()));
    tokio::time::timeout(SCHEMATHESIS_DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{} did not finish within {SCHEMATHESIS_DEADLINE:?}",
                program.display()
            )
        })
        .expect("its output reads")
}

#[track_caller]
fn assert_succeeded(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_valid_openapi() {
    let Some(st) = schemathesis() else { return };
    let Some(validator) = spec_validator(&st) else {
        return;
    };
    let hub = TestHub::with_admin(StoreKind::Sqlite).await;
    let (status, doc) = send(hub.request(Method::GET, "/openapi.json", None)).await;
    assert_eq!(status, StatusCode::OK);
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).expect("the document is written");
    let output = run(
        &validator,
        &[file.to_str().expect("a UTF-8 path")],
        dir.path(),
    )
    .await;
    assert_succeeded("openapi-spec-validator", &output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_the_hub_as_its_document_says() {
    let Some(st) = schemathesis() else { return };
    let hub = TestHub::with_admin(StoreKind::Sqlite).await;
    let admin = hub.admin.clone().expect("an admin token");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis/schemathesis.toml");
    // Its own folder: schemathesis may leave files where it runs.
    let dir = tempfile::tempdir().expect("a temp dir");
    let schema_url = format!("{}/openapi.json", hub.url);
    let auth = format!("Authorization: Bearer {admin}");
    let max_examples = MAX_EXAMPLES.to_string();
    let output = run(
        &st,
        &[
            "--config-file",
            config.to_str().expect("a UTF-8 path"),
            "run",
            &schema_url,
            "--checks",
            "all",
            "--header",
            &auth,
            "--max-examples",
            &max_examples,
            "--seed",
            "1",
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--request-timeout",
            "10",
            "--no-color",
        ],
        dir.path(),
    )
    .await;
    assert_succeeded("schemathesis", &output);
}
