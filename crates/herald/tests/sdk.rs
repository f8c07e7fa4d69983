//! Integration tests of the SDK: the handles' guarantees, the sinks' output, the
//! queue's behaviour when a sink is slow, the model stream adapters and the `tracing`
//! layer.

#[path = "sdk/deadlines.rs"]
mod deadlines;
#[path = "sdk/handles.rs"]
mod handles;
#[path = "sdk/hub.rs"]
mod hub;
#[path = "sdk/jsonl.rs"]
mod jsonl;
#[path = "sdk/llm.rs"]
mod llm;
#[path = "sdk/llm_server.rs"]
mod llm_server;
#[path = "sdk/pty.rs"]
mod pty;
#[path = "sdk/queue.rs"]
mod queue;
#[path = "sdk/terminal.rs"]
mod terminal;
#[path = "sdk/terminate.rs"]
mod terminate;
#[path = "sdk/tracing.rs"]
mod tracing;
#[path = "sdk/util.rs"]
mod util;
