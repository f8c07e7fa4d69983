//! The Python package's tests (`python/tests`, pytest), run by the README's one test
//! command: against the `herald` binary this crate builds, in the pinned venv of
//! [`pyenv`](super::pyenv). Without Python they are skipped, saying so, unless
//! `CI=true`, where they fail.

use std::process::Command;

use super::pyenv;

#[test]
fn the_python_package_passes_its_tests() {
    let Some(python) = pyenv::python() else {
        return;
    };
    let root = pyenv::workspace();
    let out = Command::new(&python)
        .args([
            "-m",
            "pytest",
            "python/tests",
            "-q",
            "-p",
            "no:cacheprovider",
        ])
        .current_dir(&root)
        .env("HERALD_BIN", env!("CARGO_BIN_EXE_herald"))
        .env("PYTHONPATH", root.join("python/src"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("the test Python runs pytest");
    assert!(
        out.status.success(),
        "pytest failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
