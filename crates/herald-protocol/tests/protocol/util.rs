//! Helpers shared by the tests: a fixed clock, run ids and scripts of events.

use herald_protocol::{BatchError, Event, RunId, Timestamp, parse_draft_str};
use serde_json::Value;

/// The run every script belongs to.
pub(crate) const RUN: &str = "run-1";

/// The time every script starts at.
pub(crate) const T0: &str = "2026-11-22T01:07:00Z";

/// The time `secs` seconds after [`T0`].
pub(crate) fn at(secs: f64) -> Timestamp {
    T0.parse::<Timestamp>()
        .expect("T0 is RFC 3339")
        .add_seconds(secs)
}

/// A run id that the test knows to be valid.
pub(crate) fn run_id(s: &str) -> RunId {
    RunId::new(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// The events of run [`RUN`] from `(seconds after T0, draft as JSON)` pairs, with `seq`
/// from 1. Drafts are written as JSON rather than as structs: shorter, and the way
/// producers write them.
pub(crate) fn script(steps: &[(f64, Value)]) -> Vec<Event> {
    let run = run_id(RUN);
    steps
        .iter()
        .enumerate()
        .map(|(i, (secs, draft))| {
            let draft = parse_draft_str(&draft.to_string(), &run)
                .unwrap_or_else(|e| panic!("step {i} of the script: {e}: {draft}"));
            draft.stamp(run.clone(), i as u64 + 1, at(*secs))
        })
        .collect()
}

/// Checks that an error reads well: the event's index first when it has one, its field
/// in backquotes when it has one, and no trailing period.
#[track_caller]
pub(crate) fn check_wording(e: &BatchError) {
    let shown = e.to_string();
    match e.index {
        Some(i) => assert!(shown.starts_with(&format!("event {i}: ")), "{shown}"),
        None => assert!(!shown.starts_with("event "), "{shown}"),
    }
    if let Some(field) = &e.error.field {
        assert!(shown.contains(&format!("`{field}`")), "{shown}");
    }
    assert!(!shown.ends_with('.'), "no trailing period: {shown}");
}

/// `text`, or its start when it is too long to show in a failure's message.
pub(crate) fn short(text: &str) -> String {
    const SHOWN: usize = 300;
    if text.len() <= SHOWN {
        return format!("{text:?}");
    }
    let mut end = SHOWN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}... ({} bytes)", &text[..end], text.len())
}
