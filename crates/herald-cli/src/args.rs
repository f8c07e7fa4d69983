//! What can be typed: clap structs that check syntax and ranges, nothing more. The
//! commands resolve them, with the environment, into their settings.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// herald: see what long-running agents and pipelines are doing while they run.
#[derive(Debug, Parser)]
#[command(name = "herald", version, about, propagate_version = true)]
pub struct Cli {
    /// Progress output, shared by every command.
    #[command(flatten)]
    pub progress: ProgressArgs,

    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Where progress goes (SPEC section 6). Each flag falls back to its environment
/// variable.
#[derive(Debug, Args)]
pub struct ProgressArgs {
    /// Progress on stderr: bars on a terminal and JSON Lines otherwise (auto), or as
    /// chosen.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "HERALD_PROGRESS",
        value_name = "MODE"
    )]
    pub progress: Option<ProgressModeArg>,

    /// Also write progress as JSON Lines to this file (appended).
    #[arg(long, global = true, env = "HERALD_PROGRESS_FILE", value_name = "PATH")]
    pub progress_file: Option<PathBuf>,

    /// Also write progress as JSON Lines to this inherited file descriptor.
    #[arg(long, global = true, env = "HERALD_PROGRESS_FD", value_name = "N")]
    pub progress_fd: Option<u32>,
}

/// `--progress` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProgressModeArg {
    /// Bars on a terminal, JSON Lines otherwise.
    Auto,
    /// Live bars.
    Bars,
    /// JSON Lines.
    Json,
    /// Nothing on stderr.
    None,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub: runs and events over HTTP, SSE and WebSocket, stored in SQLite.
    Serve(ServeArgs),
    /// Run a real three-stage job (fetch, classify, summarize) against a simulated model.
    Demo(DemoArgs),
}

/// `herald serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free one.
    #[arg(
        long,
        env = "HERALD_ADDR",
        default_value = "127.0.0.1:7311",
        value_name = "HOST:PORT"
    )]
    pub addr: String,

    /// Directory of the SQLite database (`herald.db`); by default the platform's data
    /// directory.
    #[arg(long, env = "HERALD_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Database URL (`sqlite://PATH`); overrides --data-dir.
    #[arg(long, env = "HERALD_DATABASE_URL", value_name = "URL")]
    pub db: Option<String>,

    /// The admin token; required unless listening on loopback.
    #[arg(
        long,
        env = "HERALD_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

/// `herald demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many documents to process.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub items: u64,

    /// Run this many times faster than real time (e.g. 10, or 0.5 for slower).
    #[arg(long, default_value_t = 1.0, value_parser = parse_speed, allow_negative_numbers = true)]
    pub speed: f64,

    /// Make document N (from 1) fail, to see how a failure is shown.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub fail_at: Option<u64>,

    /// Print the job's result as JSON on stdout.
    #[arg(long)]
    pub json: bool,

    /// Seed of the simulated model, for a repeatable run.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

fn parse_speed(s: &str) -> Result<f64, String> {
    let speed: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if speed.is_finite() && speed > 0.0 {
        Ok(speed)
    } else {
        Err(format!("speed must be a positive number, not {s}"))
    }
}
