//! The JSON Lines sink: one whole event object per line, for programs and agents.
//!
//! Each line is written with a single `write_all` of the line and its newline into a
//! buffer that is flushed after every batch, so lines are never split or interleaved
//! with each other; every line carries `"v":1` and `"event"`, so a reader can pick
//! them out of a stream merged with the program's own output (`2>&1`).

use std::io::{self, Write};

use herald_protocol::{Event, RunState};

use crate::sink::{Sink, SinkPolicy};

/// Writes events as JSON Lines to any writer.
pub struct JsonLines<W: Write + Send + 'static> {
    out: io::BufWriter<W>,
    policy: SinkPolicy,
}

impl<W: Write + Send + 'static> JsonLines<W> {
    /// A sink writing to `out` with the default throttle (docs/sdk.md).
    pub fn new(out: W) -> JsonLines<W> {
        JsonLines {
            out: io::BufWriter::new(out),
            policy: SinkPolicy::default(),
        }
    }

    /// The same sink with another throttle.
    pub fn with_policy(mut self, policy: SinkPolicy) -> JsonLines<W> {
        self.policy = policy;
        self
    }
}

impl<W: Write + Send + 'static> Sink for JsonLines<W> {
    fn event(&mut self, event: &Event, _state: &RunState) -> io::Result<()> {
        let mut line = serde_json::to_vec(event)?;
        line.push(b'\n');
        self.out.write_all(&line)
    }

    fn policy(&self) -> SinkPolicy {
        self.policy
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
