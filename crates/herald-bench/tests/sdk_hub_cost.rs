//! `sdk-hub-cost --quick --hub apart`: the hub that is up in a process of its own (this
//! binary's `serve`), pinned apart from the work loop where the machine has two CPUs,
//! so that the placement the figures use cannot rot. No timing is asserted: only that
//! every variant ran and that the hub-up run reached the hub whole.

use std::process::Command;

#[test]
fn the_hub_apart_runs_at_tiny_scale() {
    let out = Command::new(env!("CARGO_BIN_EXE_sdk-hub-cost"))
        .args(["--quick", "--hub", "apart", "--flush-deadline-ms", "5000"])
        .output()
        .expect("sdk-hub-cost runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Placement: the hub in a process of its own"),
        "{stdout}"
    );
    assert!(stdout.contains("| (b) hub sink, hub up |"), "{stdout}");
    // Every hub-up round's run arrived and finished: "N of N runs succeeded".
    assert!(stdout.contains("(2 of 2 runs succeeded)"), "{stdout}");
}

#[test]
fn a_bad_placement_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_sdk-hub-cost"))
        .args(["--hub", "sideways"])
        .output()
        .expect("sdk-hub-cost runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--hub takes `apart` or `in-process`"),
        "{stderr}"
    );
}
