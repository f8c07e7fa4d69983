//! [`Progress`], the entry point, and how its output is chosen: [`Target`],
//! [`ProgressMode`] and [`ProgressOptions`] (`--progress`, `HERALD_PROGRESS`, ...).

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_protocol::RunId;

use crate::dispatch::{Flushed, Shared, Stats, Stderr};
use crate::handles::{Run, RunOptions};
use crate::hub::{HubOptions, HubSink};
use crate::jsonl::JsonLines;
use crate::lock::lock;
use crate::memory::MemorySink;
use crate::signals::Signals;
use crate::sink::Sink;
use crate::terminal::TerminalSink;

/// How often the background loop takes what was queued, samples counters and redraws:
/// the longest a milestone waits before the sinks have it.
const INTERVAL: Duration = Duration::from_millis(50);
/// How long finishing a run (or exiting) waits for the sinks to take its last events.
const FLUSH_DEADLINE: Duration = Duration::from_secs(5);

/// Where progress goes: bars, JSON Lines, nothing, or a sink of your own.
///
/// Built with named constructors, as indicatif's `ProgressDrawTarget`.
pub struct Target {
    kind: TargetKind,
}

enum TargetKind {
    Bars {
        color: bool,
    },
    /// JSON Lines on stderr, which herald then keeps for JSON alone.
    StderrJson,
    Hub(HubOptions),
    Sink(Box<dyn Sink>),
    Hidden,
}

impl Target {
    /// Live bars on stderr, in color unless `NO_COLOR` is set.
    pub fn stderr_bars() -> Target {
        Target {
            kind: TargetKind::Bars {
                color: color_allowed(),
            },
        }
    }

    /// JSON Lines on stderr.
    pub fn stderr_json() -> Target {
        Target {
            kind: TargetKind::StderrJson,
        }
    }

    /// JSON Lines appended to a file, created if missing.
    pub fn json_file(path: &Path) -> io::Result<Target> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Target::json_writer(file))
    }

    /// JSON Lines on an open file descriptor the program inherited (`--progress-fd 3`).
    pub fn json_fd(fd: u32) -> io::Result<Target> {
        // Opening /dev/fd/N duplicates the descriptor without unsafe code; append mode
        // keeps a regular file's existing content.
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(format!("/dev/fd/{fd}"))
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("file descriptor {fd} is not open for writing: {e}"),
                )
            })?;
        Ok(Target::json_writer(file))
    }

    /// JSON Lines to any writer.
    pub fn json_writer(out: impl Write + Send + 'static) -> Target {
        Target::sink(JsonLines::new(out))
    }

    /// Into a [`MemorySink`], for tests.
    pub fn memory(sink: &MemorySink) -> Target {
        Target::sink(sink.clone())
    }

    /// Into a sink of your own.
    pub fn sink(sink: impl Sink) -> Target {
        Target {
            kind: TargetKind::Sink(Box::new(sink)),
        }
    }

    /// A herald hub: events are batched to it by a thread of their own, with retries,
    /// and never hold the program up (see [`HubOptions`]).
    pub fn hub(options: HubOptions) -> Target {
        Target {
            kind: TargetKind::Hub(options),
        }
    }

    /// Nowhere: reporting costs next to nothing.
    pub fn hidden() -> Target {
        Target {
            kind: TargetKind::Hidden,
        }
    }

    /// The sink this target stands for, to drive by hand: `herald watch` feeds the bars
    /// with a hub's events and the state it folds from them. `None` for
    /// [`Target::hidden`].
    pub fn into_sink(self) -> Option<Box<dyn Sink>> {
        self.into_sink_with(&Arc::new(Signals::default()))
    }

    fn into_sink_with(self, signals: &Arc<Signals>) -> Option<Box<dyn Sink>> {
        match self.kind {
            TargetKind::Bars { color } => Some(Box::new(TerminalSink::stderr(color))),
            TargetKind::StderrJson => Some(Box::new(JsonLines::new(io::stderr()))),
            TargetKind::Hub(options) => Some(Box::new(HubSink::start(options, signals.clone()))),
            TargetKind::Sink(sink) => Some(sink),
            TargetKind::Hidden => None,
        }
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            TargetKind::Bars { .. } => "bars",
            TargetKind::StderrJson => "stderr_json",
            TargetKind::Hub(_) => "hub",
            TargetKind::Sink(_) => "sink",
            TargetKind::Hidden => "hidden",
        };
        f.debug_struct("Target").field("kind", &kind).finish()
    }
}

fn color_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// What to show on stderr: `--progress auto|bars|json|none` / `HERALD_PROGRESS`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProgressMode {
    /// Bars when stderr is a terminal, JSON Lines when it is not.
    #[default]
    Auto,
    /// Bars.
    Bars,
    /// JSON Lines.
    Json,
    /// Nothing on stderr (a `--progress-file` or `--progress-fd` is still written).
    None,
}

impl FromStr for ProgressMode {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<ProgressMode, ConfigError> {
        match s {
            "auto" => Ok(ProgressMode::Auto),
            "bars" => Ok(ProgressMode::Bars),
            "json" => Ok(ProgressMode::Json),
            "none" => Ok(ProgressMode::None),
            _ => Err(ConfigError::new(format!(
                "invalid progress mode `{s}`: expected auto, bars, json or none"
            ))),
        }
    }
}

/// The choices a user makes about progress output, from flags or the environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgressOptions {
    /// What to show on stderr.
    pub mode: ProgressMode,
    /// Also write JSON Lines to this file (`--progress-file`, `HERALD_PROGRESS_FILE`).
    pub file: Option<PathBuf>,
    /// Also write JSON Lines to this inherited file descriptor (`--progress-fd`,
    /// `HERALD_PROGRESS_FD`).
    pub fd: Option<u32>,
    /// Also report to this hub (`HERALD_URL`, `HERALD_TOKEN`, `HERALD_RUN`).
    pub hub: Option<HubOptions>,
}

impl ProgressOptions {
    /// Reads `HERALD_PROGRESS`, `HERALD_PROGRESS_FILE` and `HERALD_PROGRESS_FD`.
    pub fn from_env() -> Result<ProgressOptions, ConfigError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mode = match var("HERALD_PROGRESS") {
            Some(v) => v
                .parse()
                .map_err(|e: ConfigError| ConfigError::new(format!("HERALD_PROGRESS: {e}")))?,
            None => ProgressMode::Auto,
        };
        let fd = match var("HERALD_PROGRESS_FD") {
            Some(v) => Some(v.parse().map_err(|_| {
                ConfigError::new(format!(
                    "HERALD_PROGRESS_FD: `{v}` is not a file descriptor number"
                ))
            })?),
            None => None,
        };
        Ok(ProgressOptions {
            mode,
            file: var("HERALD_PROGRESS_FILE").map(PathBuf::from),
            fd,
            hub: HubOptions::from_env(),
        })
    }

    /// The targets these options mean, given whether stderr is a terminal.
    pub fn targets(&self, stderr_is_terminal: bool) -> Result<Vec<Target>, ConfigError> {
        let mut targets = Vec::new();
        let explicit = self.file.is_some() || self.fd.is_some();
        if let Some(path) = &self.file {
            targets.push(Target::json_file(path).map_err(|e| {
                ConfigError::new(format!("cannot open progress file {}: {e}", path.display()))
            })?);
        }
        if let Some(fd) = self.fd {
            targets.push(Target::json_fd(fd).map_err(|e| ConfigError::new(e.to_string()))?);
        }
        if let Some(hub) = &self.hub {
            // A URL without its scheme would only fail at the first request, as a
            // retry warning: say what is wrong before any work starts.
            let rest = hub
                .url
                .strip_prefix("http://")
                .or_else(|| hub.url.strip_prefix("https://"));
            if rest.is_none_or(str::is_empty) {
                return Err(ConfigError::new(format!(
                    "hub URL `{}` is not an http:// or https:// URL (HERALD_URL)",
                    hub.url
                )));
            }
            targets.push(Target::hub(hub.clone()));
        }
        // `json` asked for JSON Lines on stderr, also when a file or descriptor gets
        // them too; `auto` sends them to the file or descriptor alone, leaving a
        // stderr that is not a terminal to the program.
        match self.mode {
            ProgressMode::Bars => targets.push(Target::stderr_bars()),
            ProgressMode::Auto if stderr_is_terminal => targets.push(Target::stderr_bars()),
            ProgressMode::Json => targets.push(Target::stderr_json()),
            ProgressMode::Auto if !explicit => targets.push(Target::stderr_json()),
            _ => {}
        }
        Ok(targets)
    }
}

/// A bad progress setting.
///
/// Its `Debug` is its message, as its `Display` is: returned from `main`, it prints
/// `Error: HERALD_PROGRESS: invalid progress mode ...` rather than a struct.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigError {
    message: String,
}

impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl ConfigError {
    fn new(message: String) -> ConfigError {
        ConfigError { message }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The reporter: owns the sinks and the background thread that feeds them, and starts
/// runs. Cheap to clone; the background thread stops, after delivering what is queued,
/// when the last clone and the last run handle are dropped.
#[derive(Clone)]
pub struct Progress {
    pub(crate) shared: Arc<Shared>,
    /// An existing hub run that the first run started without an id reports into.
    attach: Arc<Mutex<Option<RunId>>>,
}

impl Progress {
    /// Reports to `targets`.
    pub fn new(targets: impl IntoIterator<Item = Target>) -> Progress {
        let mut attach = None;
        let signals = Arc::new(Signals::default());
        let mut console = None;
        let mut stderr = Stderr::Free;
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        for target in targets {
            match target.kind {
                TargetKind::Hub(ref options) => {
                    attach = attach.take().or_else(|| options.attach.clone());
                }
                TargetKind::Bars { color } => {
                    let bars = TerminalSink::stderr(color);
                    console.get_or_insert_with(|| bars.console());
                    stderr = Stderr::Bars;
                    sinks.push(Box::new(bars));
                    continue;
                }
                TargetKind::StderrJson if stderr == Stderr::Free => stderr = Stderr::Json,
                _ => {}
            }
            sinks.extend(target.into_sink_with(&signals));
        }
        Progress {
            shared: Shared::start(sinks, signals, INTERVAL, FLUSH_DEADLINE, console, stderr),
            attach: Arc::new(Mutex::new(attach)),
        }
    }

    /// Reports nowhere.
    pub fn hidden() -> Progress {
        Progress::new([Target::hidden()])
    }

    /// Reports as the environment says: bars on a terminal, JSON Lines when stderr is
    /// not one, and a hub when one is named. It reads
    ///
    /// - `HERALD_PROGRESS`: `auto` (the default), `bars`, `json` or `none`: what goes on
    ///   stderr;
    /// - `HERALD_PROGRESS_FILE`: also JSON Lines to this file, appended to;
    /// - `HERALD_PROGRESS_FD`: also JSON Lines to this inherited file descriptor;
    /// - `HERALD_URL`: also report to the hub at this URL;
    /// - `HERALD_TOKEN`: the token to create runs on that hub with (its admin token;
    ///   none on an open hub), or with `HERALD_RUN`, that run's write token;
    /// - `HERALD_RUN`: report the first run into this existing run of the hub (`herald
    ///   exec` sets it, with `HERALD_URL` and `HERALD_TOKEN`, for its command);
    /// - `NO_COLOR`: bars without colour.
    ///
    /// Empty variables count as unset.
    ///
    /// # Errors
    ///
    /// A value it cannot use (`HERALD_PROGRESS=sideways`, a `HERALD_URL` without
    /// `http://`, a progress file that cannot be opened), named in the message.
    pub fn from_env() -> Result<Progress, ConfigError> {
        Progress::from_options(&ProgressOptions::from_env()?)
    }

    /// Reports as `options` say.
    pub fn from_options(options: &ProgressOptions) -> Result<Progress, ConfigError> {
        Ok(Progress::new(options.targets(io::stderr().is_terminal())?))
    }

    /// Starts a run (`run.started`) with a generated id.
    pub fn run(&self, name: &str) -> Run {
        self.run_with(name, RunOptions::default())
    }

    /// Starts a run with options: an id of your own, a parent, a number of stages.
    pub fn run_with(&self, name: &str, mut options: RunOptions) -> Run {
        if options.id.is_none() && options.parent.is_none() {
            options.id = lock(&self.attach).take();
        }
        Run::start(self.shared.clone(), name, options)
    }

    /// Waits (up to a deadline) until every event reported so far has reached the sinks.
    pub fn flush(&self) {
        self.shared.flush();
    }

    /// [`Progress::flush`] for async code: a future that resolves when every event
    /// reported so far has reached the sinks, or at the deadline, and never holds the
    /// runtime's thread meanwhile.
    pub fn flush_async(&self) -> Flushed {
        self.shared.flush_async()
    }

    /// Prints `line` on stderr without tearing the bars: above them, which are drawn
    /// again below it at once (indicatif's `ProgressBar::println`). A `println!` or
    /// `eprintln!` of the program's own, written while bars are drawn, would be
    /// erased by their next redraw: print through this, or inside [`Progress::suspend`].
    ///
    /// Without bars, the line goes to stderr as it is, beside JSON Lines if they go
    /// there too (a reader picks those out by their `"v":1`).
    pub fn println(&self, line: impl AsRef<str>) {
        let line = line.as_ref();
        let printed = self
            .shared
            .console
            .as_ref()
            .is_some_and(|console| console.println(line).is_ok());
        if !printed {
            eprintln!("{line}");
        }
    }

    /// Runs `f` with the bars erased, and draws them again after it (indicatif's
    /// `ProgressBar::suspend`): whatever `f` writes to stdout or stderr stays. Nothing
    /// is drawn while `f` runs; what is reported meanwhile shows when it returns.
    /// Without bars, it just runs `f`.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.shared.console {
            Some(console) => console.suspend(f),
            None => f(),
        }
    }

    /// What could not be delivered so far.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Progress")
            .field("stats", &self.stats())
            .finish()
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Progress>();
};
