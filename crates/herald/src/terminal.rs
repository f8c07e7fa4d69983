//! The terminal sink: live bars on stderr for people.

use std::io::{self, Write};

use herald_protocol::{Event, RunState};

use crate::sink::{Sink, SinkPolicy};

/// Draws runs as bars on a terminal.
pub(crate) struct TerminalSink {
    out: io::Stderr,
    _color: bool,
}

impl TerminalSink {
    pub(crate) fn stderr(color: bool) -> TerminalSink {
        TerminalSink {
            out: io::stderr(),
            _color: color,
        }
    }
}

impl Sink for TerminalSink {
    fn event(&mut self, event: &Event, _state: &RunState) -> io::Result<()> {
        writeln!(self.out, "{}", event.event_type())
    }

    fn policy(&self) -> SinkPolicy {
        SinkPolicy::every_tick()
    }
}
