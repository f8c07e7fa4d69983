//! The `herald` command line: argument parsing, resolution of what was typed into
//! settings, and the commands themselves.
//!
//! # Layout
//!
//! - `args`: the clap structs; they only check what was typed (ripgrep's "low args").
//! - `client`: a small blocking client of the hub's HTTP API, and what its failures
//!   mean in words.
//! - `commands`: `watch`, `ls`, `events`, `emit`, `exec`, `cancel` and `rm`, the
//!   commands that talk to a hub.
//! - `demo`: `herald demo`, a real three-stage job against a simulated model.
//! - `llm_agent`: `herald demo --llm`, the report's agent loop against a real model.
//! - `serve`: `herald serve`, the hub.
//! - `signals`: SIGINT, SIGTERM and SIGHUP for `exec` and `watch`.
//! - `sim`: the simulated model's latency and text.
//!
//! Exit codes: 0 success; 1 the job failed, the hub refused or could not be
//! reached, or `herald serve` could not open its database; 2 bad usage or settings (clap's own code for argument errors too); a broken
//! pipe on stdout is not an error. Two commands say more with theirs: `watch` exits
//! with 0 succeeded, 1 failed, 2 cancelled, 3 stalled or idle timeout; `exec` with its
//! command's status (128 + the signal when a signal ended it). Stopped by SIGINT,
//! SIGTERM or SIGHUP, `demo`, `exec` and `watch` (on a terminal) first have their last
//! word (the run finished `cancelled`, the bars closed) and then end by that signal.

#![deny(missing_docs)]

pub mod args;
mod client;
mod commands;
mod demo;
mod llm_agent;
mod retry;
mod serve;
mod signals;
mod sim;

use std::process::ExitCode;

use args::{Cli, Command};

/// Exit code: the command's job failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: the command was used wrongly.
pub const EXIT_USAGE: u8 = 2;

/// Runs the command `cli` describes and maps its outcome to an exit code.
pub fn main(cli: Cli) -> ExitCode {
    let res = match cli.command {
        Command::Demo(args) => demo::run(&args.progress, &args),
        Command::Serve(args) => serve::run(&args),
        Command::Watch(args) => commands::watch::run(&args),
        Command::Ls(args) => commands::ls::run(&args),
        Command::Events(args) => commands::events::run(&args),
        Command::Emit(args) => commands::emit::run(&args),
        Command::Exec(args) => commands::exec::run(&args),
        Command::Cancel(args) => commands::cancel::cancel(&args),
        Command::Rm(args) => commands::cancel::rm(&args),
    };
    match res {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            // An error may quote a hub's reply or a producer's text: escaped, as all
            // text from elsewhere on a terminal.
            eprintln!("herald: {}", herald::escape_controls(&format!("{err:#}")));
            ExitCode::from(if err.is::<UsageError>() {
                EXIT_USAGE
            } else {
                EXIT_FAILED
            })
        }
    }
}

/// A mistake in what the user typed or set, as opposed to a failure of the work.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
