//! Reading stored events back, whatever their rows hold.
//!
//! The hub checks everything it stores (`batch.rs` refuses an event that would be
//! stored over the protocol's size limit), yet a row can still fail to read back:
//! written by an earlier hub without those checks, edited by hand, or damaged. Such a
//! row must not take its run down, as it once did (polls answered 500, streams closed
//! empty, and after a restart the run's state and appends failed too). So a reader gets
//! a marker in its place: a `custom.unreadable` event at the row's `seq`, saying why,
//! so that `seq` stays dense and every cursor keeps working; the hub logs the row once
//! and counts it (`herald_events_unreadable_total` in `/metrics`).
//!
//! Reading is two steps, so that a store can look up the one thing a marker may need
//! from the database (its run's creation time) between them, and only when it does:
//! [`Read::row`] per row, then [`Unreadable::events`] for the rows of one read.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use herald_protocol::{Custom, Event, EventBody, RunId, Timestamp, parse_event};
use serde_json::{Map, Value, json};

/// The type of the marker that stands for an event that cannot be read back.
pub(crate) const UNREADABLE_EVENT: &str = "custom.unreadable";

/// Longest `reason` a marker carries: a parser's message can quote the value it choked
/// on, and the marker must stay small.
const MAX_REASON_CHARS: usize = 300;

/// Longest event type a marker repeats from the row it stands for.
const MAX_TYPE_CHARS: usize = 128;

/// One stored row, read.
// A `Read` lives for one row and is unwrapped at once: boxing its event would cost an
// allocation per event read to save stack space nobody keeps.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Read {
    /// The event the row holds.
    Event(Event),
    /// A row that cannot be read back.
    Unreadable(Damage),
}

/// What is known of a row that cannot be read back.
pub(crate) struct Damage {
    seq: u64,
    reason: String,
    bytes: usize,
    /// The event's type, if the row is JSON that names one.
    event_type: Option<String>,
    /// The event's time, if the row is JSON that holds one.
    ts: Option<Timestamp>,
}

impl Read {
    /// Reads the row stored at `seq` of `run` whose body is `body` (`Err`: the column
    /// held no text, saying what it held). An event that parses but names another run
    /// or `seq` than its row is unreadable too: served as it is, it would break the
    /// order every cursor counts on.
    pub(crate) fn row(run: &RunId, seq: u64, body: Result<&str, String>) -> Read {
        let (text, bytes) = match body {
            Ok(text) => (text, text.len()),
            Err(what) => {
                return Read::Unreadable(Damage {
                    seq,
                    reason: what,
                    bytes: 0,
                    event_type: None,
                    ts: None,
                });
            }
        };
        let reason = match parse_event(text) {
            Ok(event) if &event.run == run && event.seq == seq => return Read::Event(event),
            Ok(event) => format!(
                "the row of seq {seq} holds an event of run `{}` at seq {}",
                event.run, event.seq
            ),
            Err(e) => e.to_string(),
        };
        // What can be saved of it: its type and time, for the marker.
        let value: Option<Map<String, Value>> = serde_json::from_str(text).ok();
        let field = |name: &str| {
            value
                .as_ref()
                .and_then(|v| v.get(name))
                .and_then(Value::as_str)
        };
        Read::Unreadable(Damage {
            seq,
            reason,
            bytes,
            event_type: field("event")
                .filter(|t| t.chars().count() <= MAX_TYPE_CHARS)
                .map(str::to_owned),
            ts: field("ts").and_then(|t| t.parse().ok()),
        })
    }

    /// Whether [`Unreadable::events`] needs the run's creation time for these reads: a
    /// marker with no time of its own and no readable event before it.
    pub(crate) fn need_created_at(reads: &[Read]) -> bool {
        for read in reads {
            match read {
                Read::Event(_) => return false,
                Read::Unreadable(damage) if damage.ts.is_none() => return true,
                Read::Unreadable(_) => {}
            }
        }
        false
    }
}

/// The rows a store found unreadable: logged once and counted.
#[derive(Default)]
pub(crate) struct Unreadable {
    found: AtomicU64,
    /// The rows logged and counted already, so that a row read by every poll is
    /// reported once. Bounded: it starts over when full, which costs a repeated log
    /// line and count, never a missed one.
    seen: Mutex<HashSet<(RunId, u64)>>,
}

impl Unreadable {
    /// Rows seen unreadable so far.
    const CAPACITY: usize = 10_000;

    /// How many unreadable rows this store has found.
    pub(crate) fn count(&self) -> u64 {
        self.found.load(Ordering::Relaxed)
    }

    /// The events of `reads`, rows of `run` in `seq` order, with a marker for each
    /// unreadable one. A marker's time is the row's own when it can be read, else that
    /// of the event before it, else the run's creation (`created_at`; see
    /// [`Read::need_created_at`]), so that folding it moves no clock of the run's state.
    pub(crate) fn events(
        &self,
        run: &RunId,
        reads: Vec<Read>,
        created_at: Option<Timestamp>,
    ) -> Vec<Event> {
        let mut previous = created_at;
        reads
            .into_iter()
            .map(|read| {
                let event = match read {
                    Read::Event(event) => event,
                    Read::Unreadable(damage) => self.marker(run, damage, previous),
                };
                previous = Some(event.ts);
                event
            })
            .collect()
    }

    fn marker(&self, run: &RunId, damage: Damage, previous: Option<Timestamp>) -> Event {
        self.report(run, &damage);
        let mut reason: String = damage.reason.chars().take(MAX_REASON_CHARS).collect();
        if reason.len() < damage.reason.len() {
            reason.push_str("...");
        }
        let mut fields = Map::new();
        fields.insert(
            "message".into(),
            json!("the hub stored an event here that it cannot read back"),
        );
        fields.insert("reason".into(), json!(reason));
        fields.insert("bytes".into(), json!(damage.bytes));
        if let Some(event_type) = damage.event_type {
            fields.insert("event_type".into(), json!(event_type));
        }
        let name = &UNREADABLE_EVENT[Custom::PREFIX.len()..];
        let body = Custom::new(name, fields).expect("a custom name and no envelope field");
        Event {
            run: run.clone(),
            seq: damage.seq,
            ts: damage
                .ts
                .or(previous)
                .unwrap_or_else(|| Timestamp::from_unix_micros(0)),
            id: None,
            parent: None,
            body: EventBody::Custom(body),
        }
    }

    fn report(&self, run: &RunId, damage: &Damage) {
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen.len() >= Self::CAPACITY {
                seen.clear();
            }
            if !seen.insert((run.clone(), damage.seq)) {
                return;
            }
        }
        self.found.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            run = %run,
            seq = damage.seq,
            bytes = damage.bytes,
            reason = %damage.reason,
            "a stored event cannot be read back; readers get a {UNREADABLE_EVENT} marker in its place"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> RunId {
        RunId::new("r").unwrap()
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_micros(1_800_000_000_000_000 + secs * 1_000_000)
    }

    fn stored(seq: u64, ts: Timestamp) -> String {
        format!(
            r#"{{"v":1,"event":"log","run":"r","seq":{seq},"ts":"{ts}","level":"info","message":"m"}}"#
        )
    }

    /// The marker's fields, checked to be a marker at `seq`.
    #[track_caller]
    fn marker(event: &Event, seq: u64) -> Map<String, Value> {
        assert_eq!((event.event_type(), event.seq), (UNREADABLE_EVENT, seq));
        let EventBody::Custom(body) = &event.body else {
            panic!("not a custom event: {event:?}")
        };
        let json = event.to_json();
        assert!(parse_event(&json).is_ok(), "a valid event: {json}");
        body.fields.clone()
    }

    #[test]
    fn unreadable_rows_become_markers_at_their_seq_with_the_time_they_can_be_given() {
        let run = run();
        let big = format!(
            r#"{{"v":1,"event":"run.cancel_requested","run":"r","seq":3,"ts":"{}","reason":"{}"}}"#,
            at(5),
            "x".repeat(70_000)
        );
        let reads = vec![
            Read::row(&run, 1, Err("a blob of 4 bytes, not text".into())),
            Read::row(&run, 2, Ok(&stored(2, at(2)))),
            Read::row(&run, 3, Ok(&big)),
            Read::row(&run, 4, Ok(r#"{"v":1,"event":"log","#)),
            Read::row(&run, 5, Ok(&stored(9, at(9)))),
        ];
        assert!(Read::need_created_at(&reads), "the first row has no time");
        let unreadable = Unreadable::default();
        let events = unreadable.events(&run, reads, Some(at(0)));
        assert_eq!(
            events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(events[0].ts, at(0), "the run's creation");
        assert_eq!(events[1].event_type(), "log");
        let too_large = marker(&events[2], 3);
        assert_eq!(events[2].ts, at(5), "its own time");
        assert_eq!(too_large["event_type"], "run.cancel_requested");
        assert_eq!(too_large["bytes"], big.len());
        assert!(
            too_large["reason"]
                .as_str()
                .unwrap()
                .contains("over the limit"),
            "{too_large:?}"
        );
        let bad_json = marker(&events[3], 4);
        assert_eq!(events[3].ts, at(5), "the time of the event before it");
        assert!(bad_json.get("event_type").is_none());
        let misplaced = marker(&events[4], 5);
        assert!(
            misplaced["reason"].as_str().unwrap().contains("seq 9"),
            "{misplaced:?}"
        );
        assert_eq!(unreadable.count(), 4);

        // Read again (every poll does): reported once.
        let again = vec![Read::row(&run, 4, Ok("{"))];
        assert!(!Read::need_created_at(&[Read::row(
            &run,
            1,
            Ok(&stored(1, at(1)))
        )]));
        unreadable.events(&run, again, None);
        assert_eq!(unreadable.count(), 4);
    }

    #[test]
    fn a_reason_quoting_a_huge_value_is_cut() {
        let run = run();
        let body = format!(
            r#"{{"v":1,"event":"log","run":"r","seq":1,"ts":"{}","level":"{}","message":"m"}}"#,
            at(1),
            "y".repeat(10_000)
        );
        let events = Unreadable::default().events(&run, vec![Read::row(&run, 1, Ok(&body))], None);
        let fields = marker(&events[0], 1);
        assert!(events[0].to_json().len() < 1024, "{}", events[0].to_json());
        assert!(fields["reason"].as_str().unwrap().ends_with("..."));
    }
}
