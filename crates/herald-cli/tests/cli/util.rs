//! Running the `herald` binary.

use std::process::{Command, Output};

use herald_protocol::{Event, parse_event};

/// A `herald` command with a clean progress environment.
pub(crate) fn herald(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.args(args);
    for var in [
        "HERALD_PROGRESS",
        "HERALD_PROGRESS_FILE",
        "HERALD_PROGRESS_FD",
        "NO_COLOR",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs it to the end.
pub(crate) fn run(args: &[&str]) -> Output {
    herald(args).output().expect("the herald binary runs")
}

/// Every line of `text` as an event; panics on a line that is not one.
pub(crate) fn events(text: &[u8]) -> Vec<Event> {
    std::str::from_utf8(text)
        .expect("progress is UTF-8")
        .lines()
        .map(|line| parse_event(line).unwrap_or_else(|e| panic!("not an event ({e}): {line}")))
        .collect()
}
