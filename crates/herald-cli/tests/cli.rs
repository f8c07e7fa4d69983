//! Integration tests of the `herald` binary, run as a real process.

#[path = "cli/demo.rs"]
mod demo;
#[path = "cli/emit.rs"]
mod emit;
#[path = "cli/exec.rs"]
mod exec;
#[path = "cli/full_disk.rs"]
mod full_disk;
#[path = "cli/hub_errors.rs"]
mod hub_errors;
#[path = "cli/hub_sink.rs"]
mod hub_sink;
#[path = "cli/hubs.rs"]
mod hubs;
#[path = "cli/postgres.rs"]
mod postgres;
#[path = "cli/runs.rs"]
mod runs;
#[path = "cli/serve.rs"]
mod serve;
#[path = "cli/util.rs"]
mod util;
#[path = "cli/watch.rs"]
mod watch;
