//! The Python the tests run: a virtual environment of the workspace's own, built from
//! `python/requirements-dev.txt` (pinned) the first time a test asks for it, and again
//! whenever that file changes, so that the README's one test command needs nothing
//! installed by hand beyond `python3` and the package index.
//!
//! `HERALD_PYTHON` names another interpreter (one that has those packages) instead.
//! Without a usable Python the tests that need it say so on stderr and return, unless
//! `CI=true`, where they fail.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace's root (two levels above this crate).
pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the crate sits at crates/NAME")
        .to_path_buf()
}

/// The Python interpreter with the test requirements, or `None` (after saying why on
/// stderr) where there is none and `CI` is not `true`.
pub(crate) fn python() -> Option<PathBuf> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PYTHON.get_or_init(find_or_build) {
        Ok(python) => Some(python.clone()),
        Err(why) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("Python for the tests: {why}");
            }
            eprintln!("SKIPPED (no Python for the tests: {why}; CI=true makes this a failure)");
            None
        }
    }
}

fn find_or_build() -> Result<PathBuf, String> {
    if let Some(python) = std::env::var_os("HERALD_PYTHON") {
        return Ok(PathBuf::from(python));
    }
    let root = workspace();
    let requirements = root.join("python/requirements-dev.txt");
    let wanted = fs::read_to_string(&requirements)
        .map_err(|e| format!("cannot read {}: {e}", requirements.display()))?;
    let venv = root.join("target/py-venv");
    let python = venv.join("bin/python");
    let stamp = venv.join("herald-requirements.txt");
    fs::create_dir_all(root.join("target")).map_err(|e| format!("cannot create target/: {e}"))?;
    // One builder at a time: the `OnceLock` above within this test binary, the only
    // one that asks (cargo runs test binaries one after another).
    if python.exists() && fs::read_to_string(&stamp).is_ok_and(|have| have == wanted) {
        return Ok(python);
    }
    eprintln!(
        "building {} from {} (once)",
        venv.display(),
        requirements.display()
    );
    run(Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv))?;
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements))?;
    fs::write(&stamp, wanted).map_err(|e| format!("cannot write {}: {e}", stamp.display()))?;
    Ok(python)
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[test]
fn the_test_python_has_every_pinned_package() {
    let Some(python) = python() else { return };
    let out = Command::new(&python)
        .args([
            "-c",
            "import anthropic, jsonschema, mcp, openai, pytest, tqdm; print('ok')",
        ])
        .output()
        .expect("the test Python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
