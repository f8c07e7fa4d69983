//! Helpers shared by the SDK tests.

use herald::protocol::{Event, EventBody, RunState};
use herald::{MemorySink, Progress, Target};

/// A reporter into a fresh in-memory record (default throttle, as JSON Lines gets).
pub(crate) fn recorder() -> (Progress, MemorySink) {
    let sink = MemorySink::new();
    (Progress::new([Target::memory(&sink)]), sink)
}

/// The event types of `events`, in order, without `progress` and `heartbeat` ticks
/// (whose number depends on timing).
pub(crate) fn milestones(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter(|e| !matches!(e.body, EventBody::Progress(_) | EventBody::Heartbeat(_)))
        .map(|e| e.event_type().to_owned())
        .collect()
}

/// The only run's final state.
pub(crate) fn only_state(sink: &MemorySink) -> RunState {
    let states = sink.states();
    assert_eq!(states.len(), 1, "expected one run, got {}", states.len());
    states.into_iter().next().unwrap()
}
