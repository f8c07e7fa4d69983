//! `herald watch RUN`: follow a run until it ends, and say how it ended in the exit
//! code: 0 succeeded, 1 failed, 2 cancelled, 3 stalled or nothing arrived for
//! `--idle-timeout`.
//!
//! The run's events come by long polls of `GET /v1/runs/{id}/events?wait=` from its
//! first event, and are folded with the protocol's reducer ([`RunState::apply`]); the
//! status that decides the exit code is the fold's, never worked out here. Long polls
//! rather than SSE, because each request ends by itself: the idle timeout and the
//! terminal's clock are checked between requests without a reader thread, and resuming
//! after a lost connection is the `after` cursor every request carries anyway.
//!
//! On a terminal it draws the SDK's live bars (on stderr), the same picture the
//! program's own terminal shows, with what matters (stages ending, errors, the end)
//! printed above them; otherwise it prints the run's events on stdout as JSON Lines,
//! as the hub stores them. Stopped by Ctrl-C (or TERM, HUP), the bars are closed
//! first, so the terminal is left tidy, and watch then ends by that signal.
//!
//! Stalled: watch exits with 3 as soon as the run is stalled *now*, that is after it
//! has caught up with the run's events (a run that stalled once and recovered is
//! running). A stall is the producer's own deadline passing (its heartbeat timeout),
//! which is what a script waiting on the run needs to hear about; `--wait-stalled`
//! keeps following instead, for a run expected to come back.

use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use herald::Sink;
use herald_protocol::{Event, RunState, RunStatus};

use crate::args::WatchArgs;
use crate::client::{Client, Poll};
use crate::commands::events::{LONG_POLL, PAGE};
use crate::commands::show;
use crate::retry::Backoff;
use crate::signals;

/// Exit code: the run succeeded.
const EXIT_SUCCEEDED: u8 = 0;
/// Exit code: the run failed.
const EXIT_FAILED: u8 = 1;
/// Exit code: the run was cancelled.
const EXIT_CANCELLED: u8 = 2;
/// Exit code: the run stalled, or nothing arrived for `--idle-timeout`.
const EXIT_STALLED: u8 = 3;

/// How often the status line is redrawn while nothing happens (its elapsed time moves).
const TICK: Duration = Duration::from_secs(1);
/// How long watch keeps trying to reach a hub it lost before giving up.
const RECONNECT_FOR: Duration = Duration::from_secs(60);
/// The first wait before polling a hub that did not answer again, and the longest.
const RECONNECT_FIRST: Duration = Duration::from_millis(500);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

pub(crate) fn run(args: &WatchArgs) -> anyhow::Result<u8> {
    let client = Client::new(&args.hub);
    let human = !args.json && io::stdout().is_terminal();
    let mut view: Box<dyn View> = if human {
        Box::new(Bars::new())
    } else {
        Box::new(JsonLines {
            out: io::stdout().lock(),
        })
    };
    // Asked first, so that a wrong id or token is reported before any waiting, and
    // for the name given when the run was created, before any `run.started`.
    let created = client.state(&args.run)?;
    let mut state = RunState::new(args.run.clone());
    state.name = created.name;

    let mut after = 0;
    let mut last_arrival = Instant::now();
    let mut lost_since: Option<Instant> = None;
    let mut backoff = Backoff::new(RECONNECT_FIRST, RECONNECT_MAX);
    loop {
        let mut wait = if human { TICK } else { LONG_POLL };
        if let Some(idle) = args.idle_timeout {
            let left = idle.saturating_sub(last_arrival.elapsed());
            if left.is_zero() {
                view.give_up(&state)?;
                eprintln!(
                    "herald: nothing arrived from run {} for {} (--idle-timeout); last known state: {}",
                    args.run,
                    show::duration(idle.as_secs_f64()),
                    show::status_line(&state.at(show::now()), show::now())
                );
                return Ok(EXIT_STALLED);
            }
            wait = wait.min(left);
        }
        let poll = Poll {
            after,
            limit: PAGE,
            types: None,
            wait: Some(wait),
        };
        let page = match client.poll(&args.run, &poll) {
            Ok(page) => {
                backoff = Backoff::new(RECONNECT_FIRST, RECONNECT_MAX);
                if lost_since.take().is_some() {
                    eprintln!("herald: the hub at {} answers again", client.url());
                }
                page
            }
            Err(e) if e.is_transient() => {
                let since = *lost_since.get_or_insert_with(|| {
                    eprintln!("herald: {e}; trying again");
                    Instant::now()
                });
                if since.elapsed() >= RECONNECT_FOR {
                    return Err(e.into());
                }
                thread::sleep(backoff.delay(e.retry_after()).min(wait));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if !page.events.is_empty() {
            last_arrival = Instant::now();
        }
        for event in &page.events {
            after = event.seq;
            state.apply(event);
            view.event(event, &event.to_json(), &state)?;
        }
        let caught_up = (page.events.len() as u32) < PAGE;
        match state.status {
            RunStatus::Succeeded => return finish(view, &state, EXIT_SUCCEEDED),
            RunStatus::Failed => return finish(view, &state, EXIT_FAILED),
            RunStatus::Cancelled => return finish(view, &state, EXIT_CANCELLED),
            RunStatus::Stalled if caught_up && !args.wait_stalled => {
                view.give_up(&state)?;
                let now = show::now();
                eprintln!(
                    "herald: run {} stalled: no event for {}; last known state: {}",
                    args.run,
                    state
                        .last_event_at
                        .map_or("-".to_owned(), |t| show::duration(now.seconds_since(t))),
                    show::status_line(&state.at(now), now)
                );
                return Ok(EXIT_STALLED);
            }
            _ => view.tick(&state)?,
        }
    }
}

fn finish(mut view: Box<dyn View>, state: &RunState, code: u8) -> anyhow::Result<u8> {
    view.finish(state)?;
    Ok(code)
}

/// Where watch shows the run.
trait View {
    /// An event arrived and was folded into `state`; `raw` is its JSON as the hub sent
    /// it.
    fn event(&mut self, event: &Event, raw: &str, state: &RunState) -> io::Result<()>;
    /// A page of events was shown, or time passed.
    fn tick(&mut self, state: &RunState) -> io::Result<()>;
    /// The run has finished.
    fn finish(&mut self, state: &RunState) -> io::Result<()>;
    /// Watch stops before the run finished.
    fn give_up(&mut self, state: &RunState) -> io::Result<()>;
}

/// The run's events, one JSON object a line, for programs.
struct JsonLines {
    out: io::StdoutLock<'static>,
}

impl View for JsonLines {
    fn event(&mut self, _event: &Event, raw: &str, _state: &RunState) -> io::Result<()> {
        writeln!(self.out, "{raw}")
    }

    fn tick(&mut self, _state: &RunState) -> io::Result<()> {
        self.out.flush()
    }

    fn finish(&mut self, _state: &RunState) -> io::Result<()> {
        self.out.flush()
    }

    fn give_up(&mut self, _state: &RunState) -> io::Result<()> {
        self.out.flush()
    }
}

/// The SDK's live bars on stderr, fed with the hub's events and the state watch folds:
/// the same picture as the program's own terminal would show.
///
/// Stopped by a signal (Ctrl-C, mostly), watch closes the bars before it ends by the
/// signal: they stay on screen as they were, and the shell's prompt comes on a line of
/// its own instead of after the last bar. Hence the lock, shared with the signal
/// thread, which holds it to the end so that nothing is drawn after the close.
struct Bars {
    sink: Arc<Mutex<Box<dyn Sink>>>,
}

impl Bars {
    fn new() -> Bars {
        let sink = herald::Target::stderr_bars()
            .into_sink()
            .expect("the bars target has a sink");
        let sink = Arc::new(Mutex::new(sink));
        let last = sink.clone();
        // Should the signals not be heard, they end watch as they would anyway.
        let _ = signals::on_stop(move |signal| {
            let mut sink = last.lock().unwrap_or_else(|e| e.into_inner());
            let _ = sink.close();
            signals::end_by(signal);
        });
        Bars { sink }
    }

    fn sink(&self) -> std::sync::MutexGuard<'_, Box<dyn Sink>> {
        self.sink.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl View for Bars {
    fn event(&mut self, event: &Event, _raw: &str, state: &RunState) -> io::Result<()> {
        self.sink().event(event, state)
    }

    fn tick(&mut self, _state: &RunState) -> io::Result<()> {
        let mut sink = self.sink();
        sink.refresh(show::now())?;
        sink.flush()
    }

    fn finish(&mut self, _state: &RunState) -> io::Result<()> {
        self.sink().close()
    }

    /// The last known state goes to stderr with the reason for giving up.
    fn give_up(&mut self, _state: &RunState) -> io::Result<()> {
        self.sink().close()
    }
}
