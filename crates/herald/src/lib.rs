//! Report progress from long-running programs and agents, without ever slowing or
//! breaking the work: live bars for people, JSON Lines for programs, or a herald hub.
//!
//! ```no_run
//! let progress = herald::Progress::from_env()?;
//! let run = progress.run("analysis");
//! let urls = ["a", "b", "c"];
//! let fetch = run.stage("fetch").total(urls.len());
//! for url in fetch.iter(&urls) {
//!     // An early return here reports the item, then the stage, then the run failed.
//!     let _ = url;
//! }
//! fetch.finish();
//! run.finish_with(&serde_json::json!({"fetched": urls.len()}));
//! # Ok::<(), herald::ConfigError>(())
//! ```
//!
//! # Layout
//!
//! - `progress`: [`Progress`], the entry point, and [`Target`] / [`ProgressOptions`],
//!   which choose where output goes.
//! - `handles`: [`Run`], [`Stage`], [`Item`], [`ToolCall`], [`LlmCall`] and the
//!   iterator adapters, the API a program reports through.
//! - `dispatch`: the bounded queue and the background thread that samples counters
//!   and feeds the sinks.
//! - `sink`: the [`Sink`] trait and [`SinkPolicy`], how often a sink takes ticks.
//! - `throttle`: the per-sink tick throttle.
//! - `jsonl`, `terminal`, `memory`, `hub`: the built-in sinks; `terminal` also holds
//!   [`escape_controls`], which every human-facing output of herald shows a
//!   producer's text through.
//! - `panic`: the panic hook that erases the bars before a panic's message, and keeps
//!   the message for the handles the unwinding drops.
//! - `signals`: what sinks tell the program (a run's [`Cancellation`], hub drops).
//! - `terminate`: [`Progress::finish_on_signals`] and its [`SignalGuard`], the opt-in
//!   last word of a process told to stop (SIGINT, SIGTERM, SIGHUP).
//! - `llm` (features `anthropic`, `openai`): `LlmStream` and `LlmRead`, which watch a
//!   model provider's streamed response and report the call by themselves.
//! - `tracing` (feature `tracing`): [`tracing::layer`], which turns a program's
//!   `tracing` spans into runs, stages, items and tool calls, and its events into logs.

#![deny(missing_docs)]

mod dispatch;
mod handles;
mod hub;
mod jsonl;
#[cfg(any(feature = "anthropic", feature = "openai"))]
mod llm;
mod lock;
mod memory;
mod panic;
mod progress;
mod signals;
mod sink;
mod terminal;
mod terminate;
mod throttle;
// One module, documented where it is written; named `tracing` for its callers
// (`herald::tracing::layer`), while its own code names the crate as `::tracing`.
#[cfg(feature = "tracing")]
#[path = "tracing_layer.rs"]
pub mod tracing;

pub use dispatch::{Flushed, Stats};
pub use handles::{
    Attempt, Attempts, CountedIo, CustomError, HeartbeatGuard, Item, Items, LlmCall, LlmUsage, Run,
    RunOptions, Stage, Ticks, ToolCall,
};
pub use herald_protocol as protocol;
/// The level of a `log` line ([`Run::log`]), here so that a program needs no `use` of
/// the protocol crate for it.
pub use herald_protocol::LogLevel;
pub use hub::HubOptions;
pub use jsonl::JsonLines;
#[cfg(any(feature = "anthropic", feature = "openai"))]
pub use llm::{LlmError, LlmRead, LlmReply, LlmStream, LlmToolUse};
pub use memory::MemorySink;
pub use progress::{ConfigError, Progress, ProgressMode, ProgressOptions, Target};
pub use signals::Cancellation;
pub use sink::{Sink, SinkPolicy};
pub use terminal::{escape_controls, eta_text, overdue_text};
pub use terminate::SignalGuard;
