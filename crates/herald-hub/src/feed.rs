//! Fan-out of a run's new events to its subscribers (long polls, SSE, WebSocket).
//!
//! Each run with subscribers has one [`Feed`]: a ring of its most recent events and a
//! `watch` channel of its last `seq`. A subscriber keeps a cursor, reads what follows
//! it from the ring, and waits on the channel; only a subscriber that fell behind the
//! ring reads from the store. So one append costs one store write and one ring push,
//! not a query per subscriber; and each event is written out as JSON (and as an SSE
//! message) once, by the first subscriber that sends it, and shared by the others
//! ([`FeedEvent`]), not once per subscriber. The store stays the source of truth: a feed also reads
//! it (once per feed, not per subscriber) so events appended by another hub process on
//! the same database reach this hub's subscribers too: at once when the store's
//! notifications wake it ([`Feeds::catch_up`]), and on an interval in any case, so a
//! lost notification costs latency, never an event.

use std::collections::{HashMap, VecDeque};
use std::ops::Deref;
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

use axum::body::Bytes;
use herald_protocol::{Event, RunId};
use tokio::sync::{Notify, watch};

use crate::store::{Store, StoreError};

/// Events kept per feed for subscribers that are slightly behind; one further behind
/// reads the store. Every run with a subscriber has a feed (the SDK's cancel follower
/// is one), so this bounds the hub's memory per live run: 4,096 made a soak of 1,000
/// runs grow by about 100 MiB a minute (BENCHMARKS.md, "The hub at scale").
const RING_CAPACITY: usize = 512;

/// An event as subscribers get it, with its wire forms written on first use and shared
/// by every subscriber after that.
pub(crate) struct FeedEvent {
    event: Event,
    /// `id: SEQ\nevent: TYPE\ndata: JSON\n\n`, and where `JSON` starts in it.
    sse: OnceLock<(Bytes, usize)>,
}

impl FeedEvent {
    pub(crate) fn new(event: Event) -> Arc<FeedEvent> {
        Arc::new(FeedEvent {
            event,
            sse: OnceLock::new(),
        })
    }

    fn sse(&self) -> &(Bytes, usize) {
        self.sse.get_or_init(|| {
            let json = self.event.to_json();
            let seq = self.event.seq.to_string();
            let kind = self.event.event_type();
            let mut frame = String::with_capacity(json.len() + seq.len() + kind.len() + 24);
            for part in ["id: ", &seq, "\nevent: ", kind, "\ndata: "] {
                frame.push_str(part);
            }
            let start = frame.len();
            // JSON text has no raw line breaks (serde_json escapes them in strings),
            // so the event is one `data:` line.
            frame.push_str(&json);
            frame.push_str("\n\n");
            (Bytes::from(frame), start)
        })
    }

    /// The event as a Server-Sent Events message: `id` its `seq`, `event` its type.
    pub(crate) fn sse_message(&self) -> Bytes {
        self.sse().0.clone()
    }

    /// The event as one line of JSON, without the newline.
    pub(crate) fn json(&self) -> Bytes {
        let (frame, start) = self.sse();
        frame.slice(*start..frame.len() - 2)
    }
}

impl Deref for FeedEvent {
    type Target = Event;

    fn deref(&self) -> &Event {
        &self.event
    }
}

/// One run's live events.
pub(crate) struct Feed {
    last_seq: watch::Sender<u64>,
    recent: RwLock<VecDeque<Arc<FeedEvent>>>,
    /// Asks the feed's reader of the store to read now rather than at its next tick.
    /// Wake-ups that come while it reads are folded into one more read.
    read_now: Arc<Notify>,
}

impl Feed {
    /// A receiver that wakes when the run's last `seq` moves.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.last_seq.subscribe()
    }

    /// The run's last `seq` as far as this feed knows.
    pub(crate) fn last_seq(&self) -> u64 {
        *self.last_seq.borrow()
    }

    /// Appends up to `limit` events after `cursor` to `into`, if the ring still holds
    /// all of them, and says how many; `None` when the store must be asked. Into the
    /// caller's queue rather than a new `Vec`: every subscriber calls this for every
    /// event.
    pub(crate) fn after(
        &self,
        cursor: u64,
        limit: usize,
        into: &mut VecDeque<Arc<FeedEvent>>,
    ) -> Option<usize> {
        let recent = self.recent.read().unwrap_or_else(|e| e.into_inner());
        let first = recent.front()?.seq;
        if cursor + 1 < first {
            return None;
        }
        let skip = (cursor + 1 - first) as usize;
        let before = into.len();
        into.extend(recent.iter().skip(skip).take(limit).cloned());
        Some(into.len() - before)
    }

    fn push(&self, events: &[Event]) {
        let Some(last) = events.last() else { return };
        {
            let mut recent = self.recent.write().unwrap_or_else(|e| e.into_inner());
            // The same events may come twice, from this hub's append and from the
            // store (read when the store's notification of that append woke the feed):
            // only those past the ring's end are new.
            let known = recent.back().map_or(0, |e| e.seq);
            let new = &events[events.partition_point(|e| e.seq <= known)..];
            // The ring must stay contiguous: after a gap (events this process did not
            // see), start it again from these.
            if new
                .first()
                .is_some_and(|first| known != 0 && known + 1 != first.seq)
            {
                recent.clear();
            }
            for event in new {
                if recent.len() == RING_CAPACITY {
                    recent.pop_front();
                }
                recent.push_back(FeedEvent::new(event.clone()));
            }
        }
        self.last_seq.send_if_modified(|seq| {
            let moved = last.seq > *seq;
            *seq = (*seq).max(last.seq);
            moved
        });
    }
}

/// The feeds of all runs that have subscribers.
#[derive(Default)]
pub(crate) struct Feeds {
    feeds: Mutex<HashMap<RunId, Weak<Feed>>>,
}

impl Feeds {
    /// The feed of `run`, created (with a poller of the store) if it has none.
    pub(crate) fn get(
        &self,
        run: &RunId,
        last_seq: u64,
        store: &Arc<dyn Store>,
        poll: Duration,
    ) -> Arc<Feed> {
        let mut feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(feed) = feeds.get(run).and_then(Weak::upgrade) {
            return feed;
        }
        feeds.retain(|_, f| f.strong_count() > 0);
        let feed = Arc::new(Feed {
            last_seq: watch::channel(last_seq).0,
            recent: RwLock::new(VecDeque::new()),
            read_now: Arc::default(),
        });
        feeds.insert(run.clone(), Arc::downgrade(&feed));
        tokio::spawn(poll_store(
            run.clone(),
            Arc::downgrade(&feed),
            Arc::clone(&feed.read_now),
            store.clone(),
            poll,
        ));
        feed
    }

    /// Hands events just stored to the run's feed, if anyone listens.
    pub(crate) fn publish(&self, run: &RunId, events: &[Event]) {
        if let Some(feed) = self.live(run) {
            feed.push(events);
        }
    }

    /// Has the run's feed, if anyone listens, read the store now: the run changed
    /// through another hub.
    pub(crate) fn catch_up(&self, run: &RunId) {
        if let Some(feed) = self.live(run) {
            feed.read_now.notify_one();
        }
    }

    /// Has every feed read the store now: changes may have been missed.
    pub(crate) fn catch_up_all(&self) {
        let feeds: Vec<Arc<Feed>> = self
            .feeds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        for feed in feeds {
            feed.read_now.notify_one();
        }
    }

    fn live(&self, run: &RunId) -> Option<Arc<Feed>> {
        self.feeds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(run)
            .and_then(Weak::upgrade)
    }

    /// Wakes the run's subscribers without a new event, so that they look at the store
    /// again: when the run was deleted, they find it gone and end.
    pub(crate) fn wake(&self, run: &RunId) {
        if let Some(feed) = self.live(run) {
            feed.last_seq.send_modify(|_| {});
        }
    }
}

/// Catches a feed up with the store when woken and every `every`, for as long as the
/// feed lives: the path by which other processes' appends arrive.
///
/// The task holds the feed only while it reads: a feed whose subscribers all left is
/// dropped, and the task ends at its next wake-up or tick.
async fn poll_store(
    run: RunId,
    feed: Weak<Feed>,
    read_now: Arc<Notify>,
    store: Arc<dyn Store>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let woken = tokio::select! {
            _ = tick.tick() => false,
            () = read_now.notified() => true,
        };
        let Some(feed) = feed.upgrade() else { return };
        let mut read = 0;
        loop {
            let cursor = feed.last_seq();
            match store.events(&run, cursor, 1000).await {
                Ok(events) if !events.is_empty() => {
                    read += events.len();
                    feed.push(&events);
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(run = %run, error = %e, "feed poll failed");
                    break;
                }
            }
        }
        // A wake-up that brought no event may be the run's deletion (through another
        // hub, whose wake-up names the run and nothing more): one look for the whole
        // feed, rather than one per subscriber.
        if woken && read == 0 && matches!(store.run(&run).await, Err(StoreError::NotFound)) {
            feed.last_seq.send_modify(|_| {});
        }
    }
}

#[cfg(test)]
mod tests {
    use herald_protocol::{Draft, Log, LogLevel, Timestamp};

    use super::*;

    fn events(run: &RunId, seqs: std::ops::RangeInclusive<u64>) -> Vec<Event> {
        let now = Timestamp::from_unix_micros(1_800_000_000_000_000);
        seqs.map(|seq| {
            let log = Log {
                level: LogLevel::Info,
                message: format!("m{seq}"),
            };
            Draft::new(now, log).stamp(run.clone(), seq, now)
        })
        .collect()
    }

    fn ring(feed: &Feed) -> Vec<u64> {
        let recent = feed.recent.read().unwrap();
        recent.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn an_event_is_written_once_as_sse_and_as_json() {
        let run = RunId::new("r").unwrap();
        let mut event = events(&run, 7..=7).remove(0);
        if let herald_protocol::EventBody::Log(log) = &mut event.body {
            log.message = "two\nlines: \"quoted\"".into();
        }
        let shared = FeedEvent::new(event.clone());
        let json = shared.json();
        assert_eq!(&json[..], event.to_json().as_bytes());
        let frame = shared.sse_message();
        let expected = format!("id: 7\nevent: log\ndata: {}\n\n", event.to_json());
        assert_eq!(&frame[..], expected.as_bytes());
        // The one `data:` line holds all of it: the line break is escaped.
        assert_eq!(frame.iter().filter(|b| **b == b'\n').count(), 4);
        // Shared, not written again.
        assert_eq!(shared.sse_message().as_ptr(), frame.as_ptr());
    }

    #[test]
    fn the_ring_takes_each_event_once_and_starts_again_after_a_gap() {
        let run = RunId::new("r").unwrap();
        let feed = Feed {
            last_seq: watch::channel(0).0,
            recent: RwLock::new(VecDeque::new()),
            read_now: Arc::default(),
        };
        feed.push(&events(&run, 1..=3));
        // The store's copy of events this hub published, and one more.
        feed.push(&events(&run, 2..=5));
        feed.push(&events(&run, 4..=5));
        assert_eq!(ring(&feed), [1, 2, 3, 4, 5]);
        assert_eq!(feed.last_seq(), 5);
        // Events this hub never saw (6, 7): the ring starts again.
        feed.push(&events(&run, 8..=9));
        assert_eq!(ring(&feed), [8, 9]);
        let mut into = VecDeque::new();
        assert_eq!(feed.after(8, 10, &mut into), Some(1));
        assert_eq!(into.front().map(|e| e.seq), Some(9));
        assert!(
            feed.after(5, 10, &mut into).is_none(),
            "6 and 7 are for the store"
        );
    }
}
