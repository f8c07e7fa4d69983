//! Integration tests of the `herald` binary, run as a real process, and of the SDK
//! reporting to a real `herald serve`.

#[path = "cli/demo.rs"]
mod demo;
#[path = "cli/demo_llm.rs"]
mod demo_llm;
#[path = "cli/emit.rs"]
mod emit;
#[path = "cli/escapes.rs"]
mod escapes;
#[path = "cli/exec.rs"]
mod exec;
#[path = "cli/exec_io.rs"]
mod exec_io;
#[path = "cli/full_disk.rs"]
mod full_disk;
#[path = "cli/hub_errors.rs"]
mod hub_errors;
#[path = "cli/hub_sink.rs"]
mod hub_sink;
#[path = "cli/hubs.rs"]
mod hubs;
// The stub model provider of the SDK's tests, with the SDK's recorded fixtures.
#[path = "../../herald/tests/sdk/llm_server.rs"]
mod llm_server;
#[path = "cli/mcp.rs"]
mod mcp;
#[path = "cli/postgres.rs"]
mod postgres;
#[path = "cli/pty.rs"]
mod pty;
#[path = "cli/pyenv.rs"]
mod pyenv;
#[path = "cli/python.rs"]
mod python;
#[path = "cli/runs.rs"]
mod runs;
#[path = "cli/sdk_hub.rs"]
mod sdk_hub;
#[path = "cli/secrets.rs"]
mod secrets;
#[path = "cli/serve.rs"]
mod serve;
#[path = "cli/signals.rs"]
mod signals;
#[path = "cli/util.rs"]
mod util;
#[path = "cli/watch.rs"]
mod watch;
