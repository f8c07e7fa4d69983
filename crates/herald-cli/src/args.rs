//! What can be typed: clap structs that check syntax and ranges, nothing more. The
//! commands resolve them, with the environment, into their settings.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use herald_protocol::{RunId, TypeFilter};

/// herald: see what long-running agents and pipelines are doing while they run.
#[derive(Debug, Parser)]
#[command(name = "herald", version, about, propagate_version = true)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Where progress goes (docs/sdk.md#choosing-where-progress-goes), for the commands that report progress of
/// their own (`demo`); the others have no such flags to show in their `--help`. Each
/// flag falls back to its environment variable.
#[derive(Debug, Args)]
pub struct ProgressArgs {
    /// Progress on stderr: bars on a terminal and JSON Lines otherwise (auto), or as
    /// chosen.
    #[arg(long, value_enum, env = "HERALD_PROGRESS", value_name = "MODE")]
    pub progress: Option<ProgressModeArg>,

    /// Also write progress as JSON Lines to this file (appended).
    #[arg(long, env = "HERALD_PROGRESS_FILE", value_name = "PATH")]
    pub progress_file: Option<PathBuf>,

    /// Also write progress as JSON Lines to this inherited file descriptor.
    #[arg(long, env = "HERALD_PROGRESS_FD", value_name = "N")]
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
    /// Run the hub: runs and events over HTTP, SSE and WebSocket, stored in SQLite or PostgreSQL.
    Serve(ServeArgs),
    /// Run a real three-stage job (fetch, classify, summarize) against a simulated model.
    Demo(DemoArgs),
    /// Follow a run on a hub until it ends: live status on a terminal, JSON Lines otherwise.
    #[command(after_help = WATCH_EXIT_CODES)]
    Watch(WatchArgs),
    /// List the runs on a hub, newest first.
    Ls(LsArgs),
    /// Print a run's events as JSON Lines.
    Events(EventsArgs),
    /// Report one event into a run, from a shell script.
    #[command(after_help = EMIT_EXAMPLES)]
    Emit(EmitArgs),
    /// Run a command as a run on a hub: started, heartbeats, finished with its exit status.
    #[command(after_help = EXEC_NOTES)]
    Exec(ExecArgs),
    /// Ask a run to stop (advisory: the run decides how).
    Cancel(CancelArgs),
    /// Delete runs and their events from a hub.
    Rm(RmArgs),
    /// Serve MCP on stdin/stdout for an agent's host: the hub's runs as tools and resources.
    #[command(after_help = MCP_NOTES)]
    Mcp(McpArgs),
}

const MCP_NOTES: &str = "\
Add it to an MCP host as the command `herald` with the arguments `mcp --hub URL`, the
token in HERALD_TOKEN. The tools are the hub's own (its /mcp, under the same token rules);
`herald mcp` only carries them to stdio, and adds start_command with --allow-exec. While
the hub cannot be reached its tools answer with an error saying so, and work again once
it is back.";

const WATCH_EXIT_CODES: &str = "\
Exit codes:
  0  the run succeeded
  1  the run failed, or the hub could not be asked
  2  the run was cancelled (or the command line was wrong)
  3  the run stalled, or nothing arrived for --idle-timeout";

const EMIT_EXAMPLES: &str = "\
Fields are KEY=VALUE (text, or a number or true/false where the event needs one) or
KEY:=JSON (any JSON: objects, lists, quoted text).

Examples:
  herald emit log level=info message='fetched 10 files'
  herald emit stage.started stage=fetch total=10
  herald emit progress stage=fetch done=3 total=10
  herald emit custom.deploy version=1.4.2 canary:=true
  herald emit '{\"event\": \"log\", \"level\": \"warn\", \"message\": \"disk 90% full\"}'
  producer | herald emit -          # events as JSON Lines on stdin

`elapsed_s`, when the event needs it and it is not given, is filled in from the run.
The event is checked before anything is sent: a mistake exits with code 2.";

const EXEC_NOTES: &str = "\
The command runs with HERALD_URL, HERALD_RUN and HERALD_TOKEN (the run's write token) set,
so `herald emit` and the SDK inside it report into the same run. Its stdin, stdout, stderr
and exit status pass through; when a signal ends it, herald exits with 128 + the signal,
as a shell does. If the hub cannot be reached, the command runs anyway.

With --idle-timeout the command runs in its own process group (as with `timeout`), which
is stopped as a whole when the command is silent for too long: no output and no event
of its own. In its own group the command cannot read from the terminal.";

/// Where the hub is, and the token to show it (docs/cli.md).
#[derive(Debug, Args)]
pub struct HubArgs {
    /// The hub's URL.
    #[arg(
        long = "hub",
        env = "HERALD_URL",
        value_name = "URL",
        default_value = "http://127.0.0.1:7311",
        value_parser = parse_hub_url
    )]
    pub url: String,

    /// A token: the hub's admin token, or a run's write or read token.
    #[arg(
        long,
        env = "HERALD_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

/// `herald watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The run to follow.
    #[arg(value_name = "RUN", value_parser = parse_run_id)]
    pub run: RunId,

    /// Give up when no event arrives for this long (30s, 5m, 1h, or seconds), printing
    /// the last known state and exiting with 3.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,

    /// Keep following a run that stalls, instead of exiting with 3 at once.
    #[arg(long)]
    pub wait_stalled: bool,

    /// Print the run's events as JSON Lines, also on a terminal.
    #[arg(long)]
    pub json: bool,

    /// The hub.
    #[command(flatten)]
    pub hub: HubArgs,
}

/// `herald ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only runs with this status.
    #[arg(long, value_enum)]
    pub status: Option<RunStatusArg>,

    /// Only the runs started by this run.
    #[arg(long, value_name = "RUN", value_parser = parse_run_id)]
    pub parent: Option<RunId>,

    /// At most this many runs.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=500))]
    pub limit: Option<u32>,

    /// Print the hub's JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    /// The hub.
    #[command(flatten)]
    pub hub: HubArgs,
}

/// `--status` values: a run's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RunStatusArg {
    /// Working.
    Running,
    /// Silent for longer than its heartbeat timeout.
    Stalled,
    /// Finished and did what it was asked.
    Succeeded,
    /// Finished on an error.
    Failed,
    /// Finished because it was cancelled.
    Cancelled,
}

/// `herald events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// The run.
    #[arg(value_name = "RUN", value_parser = parse_run_id)]
    pub run: RunId,

    /// Only the events after this seq.
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    pub after: u64,

    /// Only events of these types: comma-separated patterns such as `tool.*,run.*`.
    #[arg(long, value_name = "PATTERNS", value_parser = parse_types)]
    pub types: Option<String>,

    /// Keep printing events as they come, until the run finishes.
    #[arg(long, short = 'f')]
    pub follow: bool,

    /// The hub.
    #[command(flatten)]
    pub hub: HubArgs,
}

/// `herald emit`.
#[derive(Debug, Args)]
pub struct EmitArgs {
    /// The event: its type (`log`, `progress`, `custom.NAME`, ...), a whole event as a
    /// JSON object, or `-` for events as JSON Lines on stdin.
    #[arg(value_name = "EVENT")]
    pub event: String,

    /// The event's fields: KEY=VALUE or KEY:=JSON.
    #[arg(value_name = "FIELD")]
    pub fields: Vec<String>,

    /// The run to report into.
    #[arg(long, env = "HERALD_RUN", value_name = "RUN", value_parser = parse_run_id)]
    pub run: Option<RunId>,

    /// An idempotency key: an event sent twice with the same key is stored once.
    #[arg(long, value_name = "KEY")]
    pub id: Option<String>,

    /// The hub.
    #[command(flatten)]
    pub hub: HubArgs,
}

/// `herald exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The run's id; by default the hub makes one up.
    #[arg(long, value_name = "RUN", value_parser = parse_run_id)]
    pub id: Option<RunId>,

    /// The run's name; by default the command line.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Stop the command (and its process group) when it is silent for this long: no
    /// output and no event of its own (30s, 5m, 1h, or seconds).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,

    /// How often to report that the command is still alive.
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_duration)]
    pub heartbeat: Duration,

    /// How long a command asked to stop (TERM after --idle-timeout or a cancel, or a
    /// signal passed on) has to end before it is killed (KILL), as `timeout
    /// --kill-after`.
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = parse_duration)]
    pub kill_after: Duration,

    /// The run this one belongs to; by default the run of a `herald exec` around this one.
    #[arg(long, env = "HERALD_RUN", value_name = "RUN", value_parser = parse_run_id)]
    pub parent: Option<RunId>,

    /// The hub.
    #[command(flatten)]
    pub hub: HubArgs,

    /// The command and its arguments.
    #[arg(
        value_name = "CMD",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

/// `herald mcp`.
#[derive(Debug, Args)]
pub struct McpArgs {
    /// Offer the tool start_command, which runs any command the agent asks for on this
    /// machine, as `herald exec` does (needs the hub's admin token, or an open hub).
    #[arg(long)]
    pub allow_exec: bool,

    /// The hub.
    #[command(flatten)]
    pub hub: HubArgs,
}

/// `herald cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The run.
    #[arg(value_name = "RUN", value_parser = parse_run_id)]
    pub run: RunId,

    /// Why, for whoever reads the run.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,

    /// The hub.
    #[command(flatten)]
    pub hub: HubArgs,
}

/// `herald rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// The runs.
    #[arg(value_name = "RUN", required = true, value_parser = parse_run_id)]
    pub runs: Vec<RunId>,

    /// The hub.
    #[command(flatten)]
    pub hub: HubArgs,
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

    /// Database URL: `sqlite://PATH`, or `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`
    /// for several hubs sharing one PostgreSQL database; overrides --data-dir.
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

    /// Most events a second one run may append, with bursts of five seconds' worth;
    /// beyond, appends get 429 and Retry-After (the SDK waits and sends them again).
    /// `off` for no limit. Default: 10000.
    #[arg(long, env = "HERALD_RATE_LIMIT", value_name = "EVENTS_PER_S", value_parser = parse_rate)]
    pub rate_limit: Option<Rate>,

    /// A web origin (`https://app.example.com`) whose pages may call the hub from a
    /// browser, such as an AG-UI front end served elsewhere; repeat it, or separate
    /// origins with commas. `*` for any, which needs --token.
    #[arg(
        long = "cors-origin",
        env = "HERALD_CORS_ORIGINS",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,

    /// How long a client may take to send a request's headers, from its connection or
    /// its request's first byte; the connection is closed beyond.
    #[arg(
        long,
        env = "HERALD_HEADER_TIMEOUT",
        default_value = "10s",
        value_name = "DUR",
        value_parser = parse_duration
    )]
    pub header_timeout: Duration,

    /// How long a client may take to send a request's whole body, from its headers;
    /// 408 beyond.
    #[arg(
        long,
        env = "HERALD_BODY_TIMEOUT",
        default_value = "30s",
        value_name = "DUR",
        value_parser = parse_duration
    )]
    pub body_timeout: Duration,

    /// How long a kept-alive connection may stay idle between requests. Streams (SSE,
    /// WebSocket, long polls) are never idle: they keep themselves alive.
    #[arg(
        long,
        env = "HERALD_IDLE_TIMEOUT",
        default_value = "75s",
        value_name = "DUR",
        value_parser = parse_duration
    )]
    pub idle_timeout: Duration,

    /// Most connections open at once, WebSockets included; beyond, new ones wait until
    /// one closes. Default: 10000, or fewer when the limit of open files (`ulimit -n`)
    /// is lower, leaving 100 files for the database and the rest.
    #[arg(
        long,
        env = "HERALD_MAX_CONNECTIONS",
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_connections: Option<u32>,
}

/// `--rate-limit`: a rate, or none.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rate {
    /// No limit.
    Off,
    /// Events a second.
    PerSecond(f64),
}

fn parse_rate(s: &str) -> Result<Rate, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(Rate::Off);
    }
    match s.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(Rate::PerSecond(rate)),
        _ => Err(format!(
            "`{s}` is not a rate: give events a second (a number above 0), or `off`"
        )),
    }
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

    /// Also report the run to the hub at URL, and print where to follow it.
    #[arg(long, env = "HERALD_URL", value_name = "URL", value_parser = parse_hub_url)]
    pub hub: Option<String>,

    /// The hub's token (its admin token, when it has one).
    #[arg(
        long,
        env = "HERALD_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// Start an embedded hub on a free loopback port (SQLite in --data-dir), report the
    /// run to it, and keep serving until Ctrl-C when stdin is a terminal.
    #[arg(long, conflicts_with = "hub")]
    pub serve: bool,

    /// With --serve: where the embedded hub keeps `herald.db` (by default the
    /// platform's data directory).
    #[arg(long, env = "HERALD_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Where the job's progress goes.
    #[command(flatten)]
    pub progress: ProgressArgs,

    /// Write the report with a real model instead of the simulated one: `anthropic`
    /// (ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL) or `openai` (OPENAI_API_KEY,
    /// OPENAI_BASE_URL, also for vLLM, llama.cpp and Ollama). The documents' stages
    /// stay simulated.
    #[arg(long, value_enum, value_name = "PROVIDER")]
    pub llm: Option<LlmProviderArg>,

    /// With --llm: the model (default: claude-sonnet-4-5 for anthropic, gpt-4o-mini
    /// for openai).
    #[arg(long, value_name = "MODEL", requires = "llm")]
    pub model: Option<String>,
}

/// `--llm` values: whose API the demo's agent talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LlmProviderArg {
    /// Anthropic's Messages API.
    Anthropic,
    /// OpenAI's chat completions, or a server that speaks them.
    Openai,
}

fn parse_speed(s: &str) -> Result<f64, String> {
    let speed: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if speed.is_finite() && speed > 0.0 {
        Ok(speed)
    } else {
        Err(format!("speed must be a positive number, not {s}"))
    }
}

fn parse_run_id(s: &str) -> Result<RunId, String> {
    RunId::new(s).map_err(|e| format!("`{s}` is an {e}"))
}

fn parse_hub_url(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or_else(|| format!("`{s}` is not an http:// or https:// URL"))?;
    if rest.trim_end_matches('/').is_empty() {
        return Err(format!("`{s}` names no host"));
    }
    Ok(s.trim_end_matches('/').to_owned())
}

fn parse_types(s: &str) -> Result<String, String> {
    s.parse::<TypeFilter>().map_err(|e| e.to_string())?;
    Ok(s.to_owned())
}

/// A duration as people type it: `30s`, `5m`, `1h`, `250ms`, or plain seconds (`1.5`).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("`{s}` is not a duration: use e.g. 30s, 5m, 1h or plain seconds");
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number.parse().map_err(|_| bad())?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    // Up to a year: beyond that a number is a typo, and `Duration` would overflow
    // long before f64 runs out.
    if !(secs > 0.0 && secs <= 366.0 * 86_400.0) {
        return Err(format!("`{s}` must be longer than 0 and at most a year"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::parse_duration;

    #[track_caller]
    fn check(input: &str, expected: Option<Duration>) {
        assert_eq!(parse_duration(input).ok(), expected, "{input}");
    }

    #[test]
    fn durations_as_people_type_them() {
        check("30s", Some(Duration::from_secs(30)));
        check("5m", Some(Duration::from_secs(300)));
        check("1h", Some(Duration::from_secs(3600)));
        check("250ms", Some(Duration::from_millis(250)));
        check("2", Some(Duration::from_secs(2)));
        check("1.5", Some(Duration::from_millis(1500)));
        check("0.2s", Some(Duration::from_millis(200)));
        check("0", None);
        check("-1s", None);
        check("5 minutes", None);
        check("s", None);
        check("1d", None);
        check("", None);
    }
}
