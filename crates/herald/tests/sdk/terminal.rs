//! The terminal sink through the public API, in a real process: bars forced with
//! `HERALD_PROGRESS=bars` onto a stderr that is a pipe. (The live screens themselves are
//! tested beside the code, against an in-memory terminal emulator.)

use std::process::Command;

use herald::Progress;

/// Set in the child process this test starts.
const CHILD: &str = "HERALD_TERMINAL_TEST_CHILD";
const NAME: &str = "terminal::forced_bars_on_a_pipe_are_plain_lines_without_escapes";

#[test]
fn forced_bars_on_a_pipe_are_plain_lines_without_escapes() {
    if std::env::var_os(CHILD).is_some() {
        report();
        return;
    }
    // Run this same test in a child whose stderr is a pipe, as `prog 2>log` would.
    let out = Command::new(std::env::current_exe().unwrap())
        .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("HERALD_PROGRESS", "bars")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "child failed:\n{stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "escape codes on a pipe:\n{stderr:?}"
    );
    // Durations depend on the machine: compare everything else.
    let masked: Vec<String> = stderr.lines().map(mask_durations).collect();
    assert_eq!(
        masked,
        [
            "● pipeline started",
            "⚠ slow mirror, retrying",
            "✖ fetch: item 3 (c.txt) failed: 404 not found",
            "✔ fetch  5 done in <t> · 1 failed",
            "✔ pipeline succeeded in <t> · 4 items ok, 1 failed",
            "  ✔ fetch  5 done in <t> · 1 failed",
        ],
        "\n{stderr}"
    );
}

/// The child's work: a stage of five files, one of which fails.
fn report() {
    let progress = Progress::from_env().unwrap();
    let run = progress.run("pipeline");
    let fetch = run.stage("fetch").total(5);
    for (n, name) in (1..).zip(["a.txt", "b.txt", "c.txt", "d.txt", "e.txt"]) {
        let item = fetch.item_labeled(n.to_string(), Some(name));
        match name {
            "b.txt" => {
                run.warn("slow mirror, retrying");
                item.finish();
            }
            "c.txt" => item.fail("404 not found"),
            _ => item.finish(),
        }
    }
    fetch.finish();
    run.finish();
}

/// `line` with each duration (`0.0s`, `12s`, `1m05s`) replaced by `<t>`.
fn mask_durations(line: &str) -> String {
    line.split(' ')
        .map(|word| {
            let is_duration = word.ends_with('s')
                && word.len() > 1
                && word[..word.len() - 1]
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '.' || c == 'm' || c == 'h');
            if is_duration { "<t>" } else { word }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
