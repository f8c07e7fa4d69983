//! The [`Sink`] trait: where reported events go, and how often they may go there.

use std::io;
use std::time::Duration;

use herald_protocol::{Event, RunState, Timestamp};

/// A destination for a run's events: the terminal, a JSON Lines stream, a hub, a test.
///
/// Sinks run on the SDK's background thread, never on the caller's: a slow sink delays
/// other sinks but never the work. Each sink sees every run's events in order, each
/// run's with its own dense `seq` from 1, and after the event, the run's state as the
/// SDK folded it (at full resolution, including the ticks this sink's policy dropped).
///
/// An error or a panic from a sink disables that sink for the rest of the program and
/// is counted in [`Stats::sink_errors`](crate::Stats); the work goes on.
pub trait Sink: Send + 'static {
    /// Receives one event.
    fn event(&mut self, event: &Event, state: &RunState) -> io::Result<()>;

    /// How often this sink wants `progress` ticks and keep-alives. Asked once, when the
    /// sink is installed.
    fn policy(&self) -> SinkPolicy {
        SinkPolicy::default()
    }

    /// Called on every turn of the background loop, for sinks that redraw on their own,
    /// such as the terminal's elapsed-time counters. The loop takes a turn when it has
    /// something to deliver, and a few times a second only while a sink
    /// [`redraws`](Sink::redraws) or a stage's count may move.
    fn refresh(&mut self, _now: Timestamp) -> io::Result<()> {
        Ok(())
    }

    /// Whether this sink redraws with time alone (elapsed time, a spinner), so that the
    /// background loop must turn a few times a second for its
    /// [`refresh`](Sink::refresh) even when nothing is reported. Asked once, when the
    /// sink is installed; without it, an idle program's loop sleeps.
    fn redraws(&self) -> bool {
        false
    }

    /// Writes out anything buffered. Called after each batch of events.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// The program is done reporting: flush and release what the sink holds.
    fn close(&mut self) -> io::Result<()> {
        self.flush()
    }
}

/// How a sink wants `progress` ticks delivered (docs/sdk.md).
///
/// Milestones always go out at once. A tick goes out when its counter moved by at
/// least `min_percent` points since the last tick sent to this sink, or when
/// `max_interval` has passed since then; a stage's last count always goes out before
/// its `stage.finished`. With `keepalive`, a sink that has been sent nothing for that
/// long while a run is open gets a `heartbeat`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SinkPolicy {
    /// Send every sampled tick (a terminal redraws from each one).
    pub every_tick: bool,
    /// Percentage points between ticks.
    pub min_percent: f64,
    /// Time after which a changed counter is sent regardless of percent.
    pub max_interval: Duration,
    /// Longest silence towards this sink while a run is open.
    pub keepalive: Option<Duration>,
}

impl Default for SinkPolicy {
    /// At most one tick per 10 percentage points or per 5 s, and an event at least every
    /// 10 s: the defaults docs/sdk.md gives for JSON Lines and the hub.
    fn default() -> SinkPolicy {
        SinkPolicy {
            every_tick: false,
            min_percent: 10.0,
            max_interval: Duration::from_secs(5),
            keepalive: Some(Duration::from_secs(10)),
        }
    }
}

impl SinkPolicy {
    /// Every sampled tick, no keep-alives: for sinks that draw what they are given.
    pub fn every_tick() -> SinkPolicy {
        SinkPolicy {
            every_tick: true,
            min_percent: 0.0,
            max_interval: Duration::ZERO,
            keepalive: None,
        }
    }
}
