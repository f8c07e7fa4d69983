//! A program instrumented with `tracing` alone, shown as bars, JSON Lines or in a hub
//! by one line of setup: its spans marked `herald = "..."` become a run, stages, items
//! and a tool call, and its events become the run's logs.
//!
//! ```text
//! cargo run -p herald --features tracing --example tracing
//! HERALD_PROGRESS=json cargo run -p herald --features tracing --example tracing
//! ```

use std::thread::sleep;
use std::time::Duration;

use tracing::{info, instrument, warn};
use tracing_subscriber::prelude::*;

fn main() -> Result<(), herald::ConfigError> {
    let progress = herald::Progress::from_env()?;
    tracing_subscriber::registry()
        .with(herald::tracing::layer(&progress))
        .init();
    let _ = analysis(20);
    Ok(())
}

#[instrument(fields(herald = "run", total = 2))]
fn analysis(docs: u64) -> Result<(), String> {
    info!(docs, "starting");
    fetch(docs);
    summarize("report");
    Ok(())
}

#[instrument(fields(herald = "stage", total = docs, unit = "docs"))]
fn fetch(docs: u64) {
    for n in 1..=docs {
        let _ = fetch_one(n);
    }
}

/// One document; the seventh is missing, which fails its item and nothing else.
#[instrument(fields(herald = "item"), err)]
fn fetch_one(id: u64) -> Result<(), String> {
    sleep(Duration::from_millis(60));
    if id == 7 {
        warn!("retries exhausted");
        return Err(format!("document {id} not found"));
    }
    Ok(())
}

#[instrument(fields(
    herald = "tool",
    tool = "summarize",
    input = r#"{"style":"short"}"#,
    output
))]
fn summarize(kind: &str) {
    sleep(Duration::from_millis(300));
    tracing::Span::current().record("output", format!("a short {kind}"));
}
