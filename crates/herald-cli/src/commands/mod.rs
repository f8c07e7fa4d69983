//! The commands that talk to a hub (docs/cli.md), each through the blocking
//! [`Client`](crate::client::Client).
//!
//! # Layout
//!
//! - `watch`: `herald watch`, following a run to its end, with the exit code saying how
//!   it ended.
//! - `ls`: `herald ls`, the runs as a table or the hub's JSON.
//! - `events`: `herald events`, a run's events as JSON Lines, with `--follow`.
//! - `emit`: `herald emit`, one event from a shell script, checked before it is sent.
//! - `exec`: `herald exec`, a command run as a run.
//! - `cancel`: `herald cancel` and `herald rm`.
//! - `show`: runs in words: status lines, messages, durations.

pub(crate) mod cancel;
pub(crate) mod emit;
pub(crate) mod events;
pub(crate) mod exec;
pub(crate) mod ls;
mod show;
pub(crate) mod watch;
