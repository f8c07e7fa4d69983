//! Integration tests of the `herald` binary, run as a real process.

#[path = "cli/demo.rs"]
mod demo;
#[path = "cli/serve.rs"]
mod serve;
#[path = "cli/util.rs"]
mod util;
