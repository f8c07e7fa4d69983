//! Ingest limits: the `429 rate_limited` of docs/http-api.md#limits.
//!
//! What is limited is the rate of events appended to one run, because that is what a
//! runaway producer (a tick in a tight loop, a retry storm) costs the store and every
//! subscriber of the run, while other runs should not notice. Each run has a token
//! bucket of [`RateLimit::burst`] events, refilled at [`RateLimit::events_per_s`]; an
//! append is refused whole with `429` and `Retry-After` when the bucket holds fewer
//! tokens than it has events, so a well-behaved client (the SDK waits and sends it
//! again) loses nothing, and takes them once it was stored: an append refused for
//! another reason (the run finished, the database away) costs nothing. Events the hub writes itself (`run.stalled`, `run.cancel_requested`) are
//! not limited.
//!
//! Buckets live in the hub process: several hubs on one database each allow the rate,
//! so a producer spread over two hubs by a load balancer can reach twice it. Time is
//! the hub's [`Clock`](crate::Clock), so the limit is tested without sleeping.

use std::collections::HashMap;
use std::sync::Mutex;

use herald_protocol::{RunId, Timestamp};

/// How fast events may be appended to one run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Events per second, sustained.
    pub events_per_s: f64,
    /// Events that may arrive at once after a quiet spell (the bucket's size). A batch
    /// larger than this is still taken when the bucket is full, so no batch the hub's
    /// `max_batch` allows is refused forever.
    pub burst: f64,
}

impl RateLimit {
    /// `events_per_s` sustained, with bursts of five seconds' worth.
    pub fn per_second(events_per_s: f64) -> RateLimit {
        RateLimit {
            events_per_s,
            burst: events_per_s * 5.0,
        }
    }
}

/// Buckets kept before the full ones (runs quiet long enough) are dropped: at most
/// once a second, so that many busy runs do not make every new one scan them all.
const PRUNE_AT: usize = 10_000;

/// One run's bucket: tokens left at `at`.
#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Timestamp,
}

/// The token buckets of the runs appended to recently.
pub(crate) struct Limiter {
    limit: Option<RateLimit>,
    buckets: Mutex<Buckets>,
}

#[derive(Default)]
struct Buckets {
    by_run: HashMap<RunId, Bucket>,
    pruned_at: Option<Timestamp>,
}

impl Limiter {
    /// A limiter of `limit`; `None` lets everything through.
    pub(crate) fn new(limit: Option<RateLimit>) -> Limiter {
        Limiter {
            limit,
            buckets: Mutex::default(),
        }
    }

    /// Whether `run`'s bucket holds enough for an append of `events` at `now`, or in
    /// how many seconds it will. Nothing is taken: see [`Limiter::charge`].
    pub(crate) fn check(&self, run: &RunId, events: usize, now: Timestamp) -> Result<(), f64> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let tokens = buckets
            .by_run
            .get(run)
            .map_or(limit.burst, |b| b.refilled(now, &limit));
        let needed = (events as f64).min(limit.burst);
        if tokens < needed {
            return Err((needed - tokens) / limit.events_per_s);
        }
        Ok(())
    }

    /// Takes `events` from `run`'s bucket at `now`: after the append was taken, so
    /// that one refused (the run finished, the database away) costs nothing. Appends
    /// checked at once may take the bucket below zero; the next ones wait longer.
    pub(crate) fn charge(&self, run: &RunId, events: usize, now: Timestamp) {
        let Some(limit) = self.limit else {
            return;
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let due = buckets
            .pruned_at
            .is_none_or(|at| now.seconds_since(at) >= 1.0);
        if due && buckets.by_run.len() >= PRUNE_AT && !buckets.by_run.contains_key(run) {
            buckets
                .by_run
                .retain(|_, b| b.refilled(now, &limit) < limit.burst);
            buckets.pruned_at = Some(now);
        }
        let bucket = buckets.by_run.entry(run.clone()).or_insert(Bucket {
            tokens: limit.burst,
            at: now,
        });
        *bucket = Bucket {
            tokens: bucket.refilled(now, &limit) - events as f64,
            at: now,
        };
    }

    /// Drops `run`'s bucket: the run was created (again), and starts full.
    pub(crate) fn forget(&self, run: &RunId) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets.by_run.remove(run);
    }

    /// [`Limiter::check`], then [`Limiter::charge`] if it passed.
    #[cfg(test)]
    fn take(&self, run: &RunId, events: usize, now: Timestamp) -> Result<(), f64> {
        self.check(run, events, now)?;
        self.charge(run, events, now);
        Ok(())
    }
}

impl Bucket {
    /// Tokens at `now`: refilled since `at`, up to the burst.
    fn refilled(&self, now: Timestamp, limit: &RateLimit) -> f64 {
        let elapsed = now.seconds_since(self.at).max(0.0);
        (self.tokens + elapsed * limit.events_per_s).min(limit.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: f64) -> Timestamp {
        Timestamp::from_unix_micros(1_700_000_000_000_000).add_seconds(secs)
    }

    #[test]
    fn a_run_gets_its_burst_then_its_rate_and_others_are_not_touched() {
        let limiter = Limiter::new(Some(RateLimit {
            events_per_s: 10.0,
            burst: 50.0,
        }));
        let run = RunId::new("a").expect("an id");
        let other = RunId::new("b").expect("an id");
        assert_eq!(limiter.take(&run, 50, at(0.0)), Ok(()));
        // Empty: 20 events need 2 s of refill.
        let wait = limiter.take(&run, 20, at(0.0)).expect_err("over the limit");
        assert!((wait - 2.0).abs() < 1e-9, "{wait}");
        assert_eq!(
            limiter.take(&other, 50, at(0.0)),
            Ok(()),
            "a bucket per run"
        );
        // A refused append takes nothing: after 1 s, 10 tokens are there.
        assert!(limiter.take(&run, 20, at(1.0)).is_err());
        assert_eq!(limiter.take(&run, 10, at(1.0)), Ok(()));
        assert_eq!(limiter.take(&run, 20, at(3.0)), Ok(()));
        // The bucket fills up to its burst and no further.
        assert_eq!(limiter.take(&run, 50, at(1000.0)), Ok(()));
        assert!(limiter.take(&run, 1, at(1000.0)).is_err());
        // The run created again starts full.
        limiter.forget(&run);
        assert_eq!(limiter.take(&run, 50, at(1000.0)), Ok(()));
    }

    #[test]
    fn a_batch_over_the_burst_is_taken_from_a_full_bucket() {
        let limiter = Limiter::new(Some(RateLimit {
            events_per_s: 10.0,
            burst: 50.0,
        }));
        let run = RunId::new("a").expect("an id");
        assert_eq!(limiter.take(&run, 80, at(0.0)), Ok(()));
        // It leaves a debt of 30: the next 80 wait for 30 + 50 tokens.
        let wait = limiter.take(&run, 80, at(0.0)).expect_err("in debt");
        assert!((wait - 8.0).abs() < 1e-9, "{wait}");
        assert_eq!(limiter.take(&run, 80, at(8.0)), Ok(()));
    }

    #[test]
    fn no_limit_lets_everything_through() {
        let limiter = Limiter::new(None);
        let run = RunId::new("a").expect("an id");
        for _ in 0..100 {
            assert_eq!(limiter.take(&run, 1_000_000, at(0.0)), Ok(()));
        }
    }

    #[test]
    fn quiet_runs_are_pruned_and_busy_ones_kept() {
        let limiter = Limiter::new(Some(RateLimit {
            events_per_s: 1.0,
            burst: 10.0,
        }));
        let busy = RunId::new("busy").expect("an id");
        limiter.take(&busy, 10, at(0.0)).expect("a full bucket");
        for i in 0..PRUNE_AT {
            let run = RunId::new(format!("r{i}")).expect("an id");
            limiter.take(&run, 1, at(0.0)).expect("a full bucket");
        }
        // Much later every bucket but the busy one, taken again just before, is full.
        limiter.take(&busy, 10, at(100.0)).expect("refilled");
        let fresh = RunId::new("fresh").expect("an id");
        limiter.take(&fresh, 1, at(100.0)).expect("a full bucket");
        let buckets = &limiter.buckets.lock().expect("not poisoned").by_run;
        assert!(buckets.len() <= 2, "{} buckets kept", buckets.len());
        assert!(buckets.contains_key(&busy) && buckets.contains_key(&fresh));
    }
}
