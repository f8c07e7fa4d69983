//! An in-memory sink, for tests of programs that report progress.

use std::io;
use std::sync::{Arc, Mutex};

use herald_protocol::{Event, RunState};

use crate::lock::lock;
use crate::sink::{Sink, SinkPolicy};

/// Keeps every event it is sent, and the latest state of each run.
///
/// Clones share the same record: install one clone with
/// [`Target::memory`](crate::Target::memory) and read the other.
#[derive(Clone, Default)]
pub struct MemorySink {
    record: Arc<Mutex<Record>>,
    policy: Option<SinkPolicy>,
}

#[derive(Default)]
struct Record {
    events: Vec<Event>,
    states: Vec<RunState>,
}

impl MemorySink {
    /// An empty record with the default throttle, as JSON Lines and the hub get.
    pub fn new() -> MemorySink {
        MemorySink::default()
    }

    /// An empty record that receives every sampled tick, as the terminal does.
    pub fn every_tick() -> MemorySink {
        MemorySink {
            policy: Some(SinkPolicy::every_tick()),
            ..MemorySink::default()
        }
    }

    /// An empty record with a throttle of your choice (e.g. a short keep-alive).
    pub fn with_policy(policy: SinkPolicy) -> MemorySink {
        MemorySink {
            policy: Some(policy),
            ..MemorySink::default()
        }
    }

    /// The events received so far, in order.
    pub fn events(&self) -> Vec<Event> {
        lock(&self.record).events.clone()
    }

    /// The latest state of each run seen, in the order the runs started.
    pub fn states(&self) -> Vec<RunState> {
        lock(&self.record).states.clone()
    }
}

impl Sink for MemorySink {
    fn event(&mut self, event: &Event, state: &RunState) -> io::Result<()> {
        let mut record = lock(&self.record);
        record.events.push(event.clone());
        match record.states.iter_mut().find(|s| s.id == state.id) {
            Some(s) => *s = state.clone(),
            None => record.states.push(state.clone()),
        }
        Ok(())
    }

    fn policy(&self) -> SinkPolicy {
        self.policy.unwrap_or_default()
    }
}
