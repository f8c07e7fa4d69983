//! What every store does to a batch of drafts before it writes them: stamping, the
//! tracking filter, idempotency, dense `seq`s after the stored `last_seq`, and folding
//! into the run's state. Stores differ only in how they lock the run, look up stored
//! ids and write rows; this is the one place that decides what an append stores, and
//! so where an event that could not be read back is refused (see [`Batch::fold`]).

use std::collections::HashSet;

use herald_protocol::{Draft, Event, MAX_EVENT_BYTES, RunId, RunState, Timestamp};

use super::{Appended, Author, RunHead, StoreError};

/// A draft stamped before its transaction with the `seq` it will most likely get, and
/// serialized with it: serializing is about a quarter of an append's work, and done
/// ahead it is off the path that appends to one run wait on (SQLite's writer thread,
/// PostgreSQL's row lock).
pub(crate) struct Stamped {
    event: Event,
    /// `event` as stored, if serialized ahead.
    json: Option<String>,
}

impl Stamped {
    /// The idempotency id of the event, if it has one.
    pub(crate) fn id(&self) -> Option<&str> {
        self.event.id.as_deref()
    }
}

/// Stamps `drafts` as if they followed `last_seq` (the cached state's, when there is
/// one: with one producer per run it is the stored one) with none skipped, and
/// serializes them. [`Batch::fold`] uses a serialized event only if the `seq` it
/// assigns is the guessed one, the one field of the event the guess could get wrong;
/// so a wrong guess costs time, never a wrong row.
pub(crate) fn stamp_ahead(
    id: &RunId,
    drafts: Vec<Draft>,
    now: Timestamp,
    last_seq: Option<u64>,
) -> Vec<Stamped> {
    let base = last_seq.unwrap_or(0);
    drafts
        .into_iter()
        .zip(base + 1..)
        .map(|(draft, seq)| {
            let event = draft.stamp(id.clone(), seq, now);
            let json = last_seq.map(|_| event.to_json());
            Stamped { event, json }
        })
        .collect()
}

/// The events an append stores, with their bodies, and the run's state after them.
pub(crate) struct Batch {
    /// The events to store, with their `seq`s.
    pub(crate) events: Vec<Event>,
    /// Each event's JSON, as stored.
    pub(crate) bodies: Vec<String>,
    pub(crate) duplicates: u64,
    pub(crate) filtered: u64,
    /// The run's last `seq` after the batch.
    pub(crate) last_seq: u64,
    /// The run's state after the batch.
    pub(crate) state: RunState,
    /// The run's generation, from its head.
    pub(crate) generation: u64,
}

impl Batch {
    /// Nothing to store: the run as it is.
    pub(crate) fn empty(head: &RunHead, state: RunState) -> Batch {
        Batch {
            events: Vec::new(),
            bodies: Vec::new(),
            duplicates: 0,
            filtered: 0,
            last_seq: head.last_seq,
            state,
            generation: head.generation,
        }
    }

    /// Decides what of `stamped` to store after the run's stored events, whose state
    /// folded up to `head.last_seq` is `state`. The caller holds the run's write lock.
    /// `stored(id)` says whether an event with that idempotency id is stored already.
    ///
    /// Events the run does not track are dropped (`run.*` always passes: a run that
    /// could not finish would never end); events whose id is stored, or repeated in
    /// the batch, are skipped as duplicates; any other event after `run.finished`, in
    /// this batch or an earlier one, refuses the whole batch with `Finished`. So a
    /// retried batch a finished run already has is still acknowledged.
    ///
    /// An event whose stored JSON is over [`MAX_EVENT_BYTES`] refuses the whole batch
    /// with `EventTooLarge`: readers parse stored events with the protocol's limit, so
    /// such a row could never be read back. A draft under the limit can still be over
    /// it once stored, with the envelope (`v`, `run`, `seq`, `ts`) the hub adds, and the
    /// hub's own events (a cancel's `reason`) are checked here too.
    pub(crate) fn fold(
        head: &RunHead,
        mut state: RunState,
        stamped: Vec<Stamped>,
        mut stored: impl FnMut(&str) -> Result<bool, StoreError>,
    ) -> Result<Batch, StoreError> {
        let mut seq = head.last_seq;
        let mut events = Vec::with_capacity(stamped.len());
        let mut bodies = Vec::with_capacity(stamped.len());
        let mut duplicates = 0;
        let mut filtered = 0;
        let mut seen_ids = HashSet::new();
        for (index, Stamped { mut event, json }) in stamped.into_iter().enumerate() {
            let event_type = event.event_type();
            let tracked = head.track.as_ref().is_none_or(|t| t.matches(event_type))
                || event_type.starts_with("run.");
            if !tracked {
                filtered += 1;
                continue;
            }
            if let Some(event_id) = &event.id
                && (stored(event_id)? || !seen_ids.insert(event_id.clone()))
            {
                duplicates += 1;
                continue;
            }
            if state.status.is_terminal() {
                return Err(StoreError::Finished);
            }
            seq += 1;
            let body = match json {
                Some(json) if event.seq == seq => json,
                _ => {
                    event.seq = seq;
                    event.to_json()
                }
            };
            if body.len() > MAX_EVENT_BYTES {
                return Err(StoreError::EventTooLarge {
                    index,
                    bytes: body.len(),
                });
            }
            state.apply(&event);
            events.push(event);
            bodies.push(body);
        }
        Ok(Batch {
            events,
            bodies,
            duplicates,
            filtered,
            last_seq: seq,
            state,
            generation: head.generation,
        })
    }

    /// The time retention counts from after the batch (before the store takes the
    /// later of it and the stored one): when the hub received it, by its own clock.
    /// Never the events' own times, which a producer chooses: a run stamped
    /// 9999-12-31 would be kept forever.
    pub(crate) fn last_received_us(now: Timestamp) -> i64 {
        now.unix_micros()
    }

    /// The run's `last_producer_us` after the batch: `now` if the producer spoke.
    pub(crate) fn last_producer_us(head: &RunHead, now: Timestamp, author: Author) -> i64 {
        if author == Author::Producer {
            now.unix_micros()
        } else {
            head.last_producer_at.unix_micros()
        }
    }

    /// The state as JSON, for the run's row.
    pub(crate) fn state_json(&self) -> Result<String, StoreError> {
        serde_json::to_string(&self.state).map_err(|e| StoreError::Db(e.to_string()))
    }

    pub(crate) fn into_appended(self) -> Appended {
        Appended {
            events: self.events,
            duplicates: self.duplicates,
            filtered: self.filtered,
            last_seq: self.last_seq,
            state: self.state,
            generation: self.generation,
        }
    }
}
