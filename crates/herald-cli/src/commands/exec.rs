//! `herald exec -- CMD...`: run a command as a run on a hub.
//!
//! exec creates the run, appends `run.started`, runs the command with `HERALD_URL`,
//! `HERALD_RUN` and `HERALD_TOKEN` (the run's write token) in its environment, and
//! appends `run.finished` with its exit status. Meanwhile:
//!
//! - stdin is inherited; stdout and stderr go through pipes and are forwarded byte for
//!   byte as they come, which is how exec knows when the command was last active;
//! - a `heartbeat` goes out every `--heartbeat` while the command runs, saying how long
//!   its output has been silent, so that the run is stalled on the hub only when exec
//!   itself is gone;
//! - with `--idle-timeout`, a command that is silent that long (no output, and no event
//!   of its own in the run) is stopped with its whole process group, `TERM` and then
//!   `KILL` after the grace period, as `timeout` does;
//! - a cancel requested through the hub (seen in a heartbeat's reply) stops it the same
//!   way;
//! - INT, TERM and HUP sent to exec are passed on to the command (to its process group
//!   when it has one of its own), which gets the grace period to end before `KILL`; a
//!   second one sends `KILL` at once. A Ctrl-C on the terminal reaches a command in
//!   exec's own group by itself, and is left to it: an interactive command may take
//!   it in its stride.
//!
//! The grace period before `KILL` is `--kill-after` (5 s).
//!
//! How the run ends: a command stopped by a signal to exec is `cancelled`,
//! "terminated by SIGTERM" (naming the signal exec got), and exec then ends by that
//! same signal, as the default action would, so that its caller sees it (a shell
//! loop stops on Ctrl-C). A command killed by a signal from elsewhere is `cancelled`
//! when that signal asks a process to stop (INT, TERM, HUP) and `failed` otherwise
//! (KILL, SEGV, ...), "terminated by SIGKILL"; exec then exits with 128 + the signal,
//! as a shell does, and otherwise with the command's status.
//!
//! Reporting never breaks the work: when the hub cannot be reached or refuses, exec
//! says so once on stderr and runs the command all the same.

use std::io::{self, IsTerminal, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use herald::escape_controls;
use herald_protocol::api::Appended;
use herald_protocol::{
    Draft, EventBody, Heartbeat, RunFinished, RunId, RunOutcome, RunStarted, RunState, Timestamp,
};
use serde_json::{Map, json};
use signal_hook::consts::SIGINT;

use crate::args::{ExecArgs, HubArgs};
use crate::client::{Client, HubErrorKind, NewRun, Poll};
use crate::commands::events::PAGE;
use crate::commands::show;
use crate::retry::Backoff;
use crate::signals;

/// Longest a hub request of exec may take: reporting must not hold the work up.
const HUB_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the command's output may take to drain after it exited; a background
/// process it left behind may hold the pipes open for good.
const DRAIN: Duration = Duration::from_millis(500);
/// Shortest heartbeat timeout asked for the run: the hub's default.
const MIN_HEARTBEAT_TIMEOUT_S: f64 = 60.0;
/// The first wait before sending an event of exec's again, and its longest.
const SEND_RETRY_FIRST: Duration = Duration::from_millis(250);
const SEND_RETRY_MAX: Duration = Duration::from_secs(2);
/// Longest run name made from the command line.
const MAX_NAME_CHARS: usize = 200;
/// Prefix of exec's own idempotency keys, which also tell its events from the
/// command's.
const OWN_ID: &str = "herald-exec:";

/// What `herald exec` runs with.
struct Settings {
    command: Vec<String>,
    id: Option<RunId>,
    name: String,
    idle_timeout: Option<Duration>,
    heartbeat: Duration,
    /// Time between asking a stopped command to end and forcing it (`KILL`).
    kill_after: Duration,
    parent: Option<RunId>,
    /// The command runs in a process group of its own, stopped as a whole.
    own_group: bool,
}

fn resolve(args: &ExecArgs) -> Settings {
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| show::cut(&args.command.join(" "), MAX_NAME_CHARS));
    Settings {
        command: args.command.clone(),
        id: args.id.clone(),
        name,
        idle_timeout: args.idle_timeout,
        heartbeat: args.heartbeat,
        kill_after: args.kill_after,
        parent: args.parent.clone(),
        // Only when it is to be stopped as a whole: a command in a group of its own is
        // not in the terminal's foreground, so it could not read from the terminal.
        own_group: args.idle_timeout.is_some(),
    }
}

/// What the threads around the command tell the main loop.
enum Msg {
    Exited(io::Result<ExitStatus>),
    /// One of the command's output pipes reached its end.
    Closed,
    /// exec got a stop signal (INT, TERM or HUP).
    Signal(i32),
}

/// Why exec stopped the command.
#[derive(Clone, Copy)]
enum Stop {
    Idle(Duration),
    Cancel,
}

/// The first stop signal exec got.
#[derive(Clone, Copy)]
struct Got {
    signal: i32,
    /// Whether exec passed it on (else the command got it from the terminal).
    passed_on: bool,
}

/// Whom signals go to: the command's process group, or the command alone.
#[derive(Clone, Copy)]
enum Target {
    Group(u32),
    Process(u32),
}

impl Target {
    fn signal(self, sig: &str) -> bool {
        let who = match self {
            Target::Group(pgid) => format!("-{pgid}"),
            Target::Process(pid) => pid.to_string(),
        };
        Command::new("kill")
            .arg(format!("-{sig}"))
            .arg("--")
            .arg(who)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

/// When the command was last seen doing something.
struct Activity {
    start: Instant,
    /// Milliseconds after `start`.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn seen_at(&self, t: Instant) {
        let ms = t.saturating_duration_since(self.start).as_millis();
        self.last_ms
            .fetch_max(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Activity at a wall-clock time (an event's `ts`).
    fn seen_at_ts(&self, ts: Timestamp) {
        let ago = show::now().seconds_since(ts).max(0.0);
        if let Some(t) = Instant::now().checked_sub(Duration::from_secs_f64(ago)) {
            self.seen_at(t);
        }
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

pub(crate) fn run(args: &ExecArgs) -> anyhow::Result<u8> {
    let settings = resolve(args);
    // Listening from the start, so that no signal meant for the command is missed:
    // one that comes before it runs is passed on as soon as it does.
    let (tx, rx) = mpsc::channel();
    {
        let tx = tx.clone();
        signals::listen(move |signal| tx.send(Msg::Signal(signal)).is_ok())
            .context("listening for signals")?;
    }
    let mut reporter = Reporter::start(&settings, &args.hub);
    let mut child = match spawn(&settings, &reporter, &args.hub) {
        Ok(child) => child,
        Err((code, error)) => {
            reporter.finish(RunOutcome::Failed, Some(error.clone()), code);
            eprintln!("herald: {}", escape_controls(&error));
            return Ok(code);
        }
    };
    if io::stderr().is_terminal()
        && let Some(line) = reporter.where_to_look()
    {
        // The dashboard's link is the hub's text.
        eprintln!("herald: {}", escape_controls(&line));
    }
    let pid = child.id();
    let activity = Arc::new(Activity::new());
    if let Some(out) = child.stdout.take() {
        spawn_forward(out, io::stdout(), &activity, &tx);
    }
    if let Some(err) = child.stderr.take() {
        spawn_forward(err, io::stderr(), &activity, &tx);
    }
    {
        let tx = tx.clone();
        thread::spawn(move || {
            let _ = tx.send(Msg::Exited(child.wait()));
        });
    }
    drop(tx);

    let mut watch = Watch::new(&settings, pid, activity);
    let mut open_pipes = 2;
    let status = loop {
        match rx.recv_timeout(watch.deadline().saturating_duration_since(Instant::now())) {
            Ok(Msg::Exited(status)) => break status.context("waiting for the command")?,
            Ok(Msg::Closed) => open_pipes -= 1,
            Ok(Msg::Signal(signal)) => watch.signalled(signal),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                anyhow::bail!("lost track of the command (pid {pid})")
            }
        }
        watch.tick(&mut reporter);
    };
    watch.stop_what_outlives();
    drain(&rx, open_pipes);

    let code = exit_code(status);
    let (outcome, error, ended_by) = watch.outcome(status);
    reporter.finish(outcome, error, code);
    if let Some(Stop::Idle(idle)) = watch.stop {
        watch.tell_idle(idle, &reporter);
    }
    if let Some(signal) = ended_by {
        signals::end_by(signal);
        // The default action did not end the process (the signal is ignored here):
        // exit as a shell reports a death by it, never with the command's own status.
        return Ok(u8::try_from(128 + signal).unwrap_or(255));
    }
    Ok(code)
}

/// Starts the command, with the run's identity in its environment when there is a
/// run; the exit code and the error when it cannot be run.
fn spawn(settings: &Settings, reporter: &Reporter, hub: &HubArgs) -> Result<Child, (u8, String)> {
    let program = &settings.command[0];
    let mut cmd = Command::new(program);
    cmd.args(&settings.command[1..])
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some((run, token)) = reporter.identity() {
        cmd.env("HERALD_URL", &hub.url)
            .env("HERALD_RUN", run.as_str())
            .env("HERALD_TOKEN", token);
    }
    if settings.own_group {
        cmd.process_group(0);
    }
    cmd.spawn().map_err(|e| {
        // As a shell says it: 127 for a command not found, 126 for one not run.
        let code = if e.kind() == io::ErrorKind::NotFound {
            127
        } else {
            126
        };
        (code, format!("cannot run `{program}`: {e}"))
    })
}

/// Lets the command's last output through, for at most [`DRAIN`], before exec says
/// anything more.
fn drain(rx: &mpsc::Receiver<Msg>, mut open_pipes: u32) {
    let drain_until = Instant::now() + DRAIN;
    while open_pipes > 0 {
        match rx.recv_timeout(drain_until.saturating_duration_since(Instant::now())) {
            Ok(Msg::Closed) => open_pipes -= 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
}

/// What exec watches while the command runs: its silence (`--idle-timeout`), the
/// heartbeats and cancel requests, the signals exec got, and the grace before `KILL`.
struct Watch<'a> {
    settings: &'a Settings,
    target: Target,
    activity: Arc<Activity>,
    started: Instant,
    next_heartbeat: Instant,
    /// Why exec stopped the command, once it did.
    stop: Option<Stop>,
    /// The first stop signal exec got.
    got: Option<Got>,
    /// When a stopped command is forced (`KILL`).
    kill_at: Option<Instant>,
}

impl<'a> Watch<'a> {
    fn new(settings: &'a Settings, pid: u32, activity: Arc<Activity>) -> Watch<'a> {
        let started = Instant::now();
        Watch {
            settings,
            target: if settings.own_group {
                Target::Group(pid)
            } else {
                Target::Process(pid)
            },
            activity,
            started,
            next_heartbeat: started + settings.heartbeat,
            stop: None,
            got: None,
            kill_at: None,
        }
    }

    /// When something is next due: a heartbeat, the idle limit, or the `KILL`.
    fn deadline(&self) -> Instant {
        let idle_at = match (self.settings.idle_timeout, &self.stop) {
            (Some(idle), None) => Some(self.activity.last() + idle),
            _ => None,
        };
        [Some(self.next_heartbeat), idle_at, self.kill_at]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(self.next_heartbeat)
    }

    /// exec got a stop signal: passed on to the command, with a grace before `KILL`;
    /// a second one passed on kills at once.
    fn signalled(&mut self, signal: i32) {
        // In exec's own group the command got a terminal's Ctrl-C already.
        let pass_on = self.settings.own_group || signal != SIGINT;
        if pass_on && self.got.is_some_and(|g| g.passed_on) {
            // Asked twice: no more grace.
            self.target.signal("KILL");
        } else if pass_on {
            self.target.signal(&signal.to_string());
            let grace_end = Instant::now() + self.settings.kill_after;
            self.kill_at = Some(self.kill_at.map_or(grace_end, |at| at.min(grace_end)));
        }
        match &mut self.got {
            Some(first) => first.passed_on |= pass_on,
            None => {
                self.got = Some(Got {
                    signal,
                    passed_on: pass_on,
                })
            }
        }
    }

    /// Does what is due: the `KILL` after the grace, stopping an idle command, the
    /// heartbeat (whose reply may ask to cancel).
    fn tick(&mut self, reporter: &mut Reporter) {
        let now = Instant::now();
        if self.kill_at.is_some_and(|at| now >= at) {
            self.target.signal("KILL");
            self.kill_at = None;
        }
        if let (Some(idle), None) = (self.settings.idle_timeout, &self.stop)
            && now >= self.activity.last() + idle
        {
            // Silent on its pipes; it may still be reporting through the hub.
            if let Some(ts) = reporter.command_activity() {
                self.activity.seen_at_ts(ts);
            }
            if now >= self.activity.last() + idle {
                self.stop_command(Stop::Idle(idle), now);
            }
        }
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + self.settings.heartbeat;
            let silent = self.activity.last().elapsed();
            let note = (silent >= self.settings.heartbeat)
                .then(|| format!("no output for {}", show::duration(silent.as_secs_f64())));
            let reply = reporter.heartbeat(self.started.elapsed(), note);
            if reply.is_some_and(|r| r.cancel_requested) && self.stop.is_none() {
                self.stop_command(Stop::Cancel, now);
            }
        }
    }

    fn stop_command(&mut self, why: Stop, now: Instant) {
        self.target.signal("TERM");
        self.stop = Some(why);
        self.kill_at = Some(now + self.settings.kill_after);
    }

    /// Once the command exited: when its whole group was told to stop with it, what
    /// outlives it (a background process that ignores TERM) is killed, so that nothing
    /// of a stopped command goes on unreported.
    fn stop_what_outlives(&self) {
        let passed_on = self.got.is_some_and(|g| g.passed_on);
        if self.settings.own_group
            && (passed_on || matches!(self.stop, Some(Stop::Idle(_) | Stop::Cancel)))
        {
            self.target.signal("KILL");
        }
    }

    /// How the run ended, its error, and the signal exec is to end by, if any.
    ///
    /// Told to stop, exec reports the run cancelled by that, whatever the command made
    /// of the signal; unless the command got a Ctrl-C from the terminal and went on to
    /// succeed (an interactive command interrupted, not stopped).
    fn outcome(&self, status: ExitStatus) -> (RunOutcome, Option<String>, Option<i32>) {
        let ended_by = self
            .got
            .filter(|g| g.passed_on || !status.success())
            .map(|g| g.signal);
        let (outcome, error) = match (ended_by, &self.stop, status.success()) {
            (Some(signal), _, _) => (
                RunOutcome::Cancelled,
                Some(format!("terminated by {}", signals::name(signal))),
            ),
            (None, _, true) => (RunOutcome::Succeeded, None),
            (None, Some(Stop::Idle(idle)), false) => (
                RunOutcome::Failed,
                Some(format!(
                    "idle for {} (--idle-timeout): no output and no event; stopped with its process group",
                    show::duration(idle.as_secs_f64())
                )),
            ),
            (None, Some(Stop::Cancel), false) => (
                RunOutcome::Cancelled,
                Some("cancel requested through the hub: stopped".to_owned()),
            ),
            (None, None, false) => ended(status),
        };
        (outcome, error, ended_by)
    }

    /// Says on stderr that the command was stopped for its silence, and what was last
    /// known of it.
    fn tell_idle(&self, idle: Duration, reporter: &Reporter) {
        eprintln!(
            "herald: `{}` was idle for {} (--idle-timeout): stopped it and its process group",
            escape_controls(&self.settings.name),
            show::duration(idle.as_secs_f64())
        );
        let known = match reporter.state() {
            Some(state) => show::status_line(&state, show::now()),
            None => format!(
                "ran for {}, last output {} ago",
                show::duration(self.started.elapsed().as_secs_f64()),
                show::duration(self.activity.last().elapsed().as_secs_f64())
            ),
        };
        eprintln!("herald: last known state: {known}");
    }
}

/// The status as a shell gives it: the exit code, or 128 + the signal.
fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(1),
        (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(255),
        (None, None) => 1,
    }
}

/// How a command that failed on its own ended: `failed` with its status, or killed by
/// a signal, `cancelled` when the signal asks a process to stop (someone stopped it)
/// and `failed` when it does not (`KILL`, a crash).
fn ended(status: ExitStatus) -> (RunOutcome, Option<String>) {
    match (status.code(), status.signal()) {
        (Some(code), _) => (
            RunOutcome::Failed,
            Some(format!("exited with status {code}")),
        ),
        (None, Some(signal)) => {
            let outcome = if signals::is_stop(signal) {
                RunOutcome::Cancelled
            } else {
                RunOutcome::Failed
            };
            let error = format!("terminated by {}", signals::name(signal));
            (outcome, Some(error))
        }
        (None, None) => (
            RunOutcome::Failed,
            Some("ended without a status".to_owned()),
        ),
    }
}

/// Forwards one of the command's output pipes to exec's own, as the bytes come.
fn spawn_forward(
    mut from: impl Read + Send + 'static,
    mut to: impl Write + Send + 'static,
    activity: &Arc<Activity>,
    tx: &Sender<Msg>,
) {
    let activity = Arc::clone(activity);
    let tx = tx.clone();
    thread::spawn(move || {
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            activity.seen_at(Instant::now());
            if to.write_all(&buf[..n]).and_then(|()| to.flush()).is_err() {
                // Whoever read exec's output has gone: closing the pipe makes the
                // command meet a broken pipe on its next write, as it would have in a
                // shell pipeline.
                break;
            }
        }
        drop(from);
        let _ = tx.send(Msg::Closed);
    });
}

/// The run on the hub, as far as it can be reached. Every failure is said once on
/// stderr and otherwise ignored: the command runs whatever happens here.
struct Reporter {
    /// The run and a client with its write token, while reporting goes on.
    run: Option<(RunId, Client)>,
    write_token: String,
    dashboard: Option<String>,
    /// A failure has been said on stderr.
    warned: bool,
    heartbeats: u64,
    /// The run's events up to this seq have been looked at for the command's own.
    checked_seq: u64,
}

impl Reporter {
    /// Creates the run and appends `run.started`.
    fn start(settings: &Settings, hub: &HubArgs) -> Reporter {
        let mut reporter = Reporter {
            run: None,
            write_token: String::new(),
            dashboard: None,
            warned: false,
            heartbeats: 0,
            checked_seq: 0,
        };
        let admin = Client::with_timeout(hub, HUB_TIMEOUT);
        let mut meta = Map::new();
        meta.insert("command".into(), json!(settings.command));
        let created = admin.create_run(&NewRun {
            id: settings.id.as_ref(),
            name: &settings.name,
            parent: settings.parent.as_ref(),
            // The run stalls on the hub only when exec's heartbeats stop coming.
            heartbeat_timeout_s: Some(
                (3.0 * settings.heartbeat.as_secs_f64()).max(MIN_HEARTBEAT_TIMEOUT_S),
            ),
            meta: None,
        });
        match created {
            Ok(created) => {
                reporter.write_token = created.write_token.clone();
                reporter.dashboard = Some(created.urls.dashboard.clone());
                let client = admin.with_token(&created.write_token);
                reporter.run = Some((created.id, client));
            }
            Err(e) => {
                eprintln!("herald: {e}; running the command without reporting");
                reporter.warned = true;
                return reporter;
            }
        }
        reporter.send(
            RunStarted {
                name: settings.name.clone(),
                total_steps: None,
                meta: Some(meta),
                stages: None,
            },
            "started",
            3,
        );
        reporter
    }

    /// The run's id and write token, for the command's environment.
    fn identity(&self) -> Option<(&RunId, &str)> {
        self.run
            .as_ref()
            .map(|(run, _)| (run, self.write_token.as_str()))
    }

    fn where_to_look(&self) -> Option<String> {
        let (run, _) = self.run.as_ref()?;
        Some(match &self.dashboard {
            Some(url) => format!("run {run}: {url}"),
            None => format!("run {run}: herald watch {run}"),
        })
    }

    /// Appends one event of exec's own, trying `attempts` times while the hub cannot
    /// be reached.
    fn send(&mut self, body: impl Into<EventBody>, key: &str, attempts: u32) -> Option<Appended> {
        let (run, client) = self.run.as_ref()?;
        let draft = Draft {
            ts: Some(show::now()),
            id: Some(format!("{OWN_ID}{key}")),
            parent: None,
            body: body.into(),
        };
        let drafts = [draft];
        let mut attempt = 1;
        let mut backoff = Backoff::new(SEND_RETRY_FIRST, SEND_RETRY_MAX);
        let err = loop {
            match client.append(run, &drafts) {
                Ok(reply) => return Some(reply),
                Err(e) if e.is_transient() && attempt < attempts => {
                    thread::sleep(backoff.delay(e.retry_after()));
                    attempt += 1;
                }
                Err(e) => break e,
            }
        };
        if matches!(err.kind(), HubErrorKind::Refused { status: 409, .. }) {
            // The command finished the run itself: nothing more to say.
            self.run = None;
        } else if !err.is_transient() {
            eprintln!("herald: {err}; no more reporting, the command goes on");
            self.run = None;
        } else if !self.warned {
            eprintln!("herald: {err}; the command goes on");
            self.warned = true;
        }
        None
    }

    fn heartbeat(&mut self, elapsed: Duration, note: Option<String>) -> Option<Appended> {
        self.heartbeats += 1;
        let key = format!("heartbeat-{}", self.heartbeats);
        self.send(
            Heartbeat {
                elapsed_s: elapsed.as_secs_f64(),
                note,
            },
            &key,
            1,
        )
    }

    fn finish(&mut self, status: RunOutcome, error: Option<String>, code: u8) {
        self.send(
            RunFinished {
                status,
                result: Some(json!({ "exit_code": code })),
                error,
            },
            "finished",
            3,
        );
    }

    /// The time of the latest event the command itself reported into the run since
    /// the last look, if any.
    fn command_activity(&mut self) -> Option<Timestamp> {
        let (run, client) = self.run.as_ref()?;
        let mut latest = None;
        loop {
            let poll = Poll {
                after: self.checked_seq,
                limit: PAGE,
                types: None,
                wait: None,
            };
            let page = client.poll(run, &poll).ok()?;
            let before = self.checked_seq;
            for event in &page.events {
                self.checked_seq = event.seq;
                let own = event.id.as_deref().is_some_and(|id| id.starts_with(OWN_ID));
                let hubs = matches!(
                    event.body,
                    EventBody::RunStalled(_) | EventBody::RunCancelRequested(_)
                );
                if !own && !hubs {
                    latest = latest.max(Some(event.ts));
                }
            }
            if (page.events.len() as u32) < PAGE || self.checked_seq == before {
                return latest;
            }
        }
    }

    /// The run's state on the hub, for saying where it got to.
    fn state(&self) -> Option<RunState> {
        let (run, client) = self.run.as_ref()?;
        client.state(run).ok()
    }
}
