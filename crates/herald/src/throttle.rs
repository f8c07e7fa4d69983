//! The tick throttle of [`SinkPolicy`]: decides, per sink and counter, whether a sampled
//! count goes out. Pure: it takes the time as an argument.

use std::time::Instant;

use crate::sink::SinkPolicy;

/// What was last sent to one sink for one counter.
#[derive(Clone, Debug, Default)]
pub(crate) struct Throttle {
    last: Option<(Count, Instant)>,
}

/// A counter as one tick carries it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Count {
    pub(crate) done: u64,
    pub(crate) total: Option<u64>,
    /// Weight done, for a stage that weighs its units.
    pub(crate) done_weight: Option<f64>,
    /// `done / total` in percent.
    pub(crate) percent: Option<f64>,
}

impl Throttle {
    /// Whether `count` should be sent now. `force` sends any change regardless of the
    /// policy (a stage's last count).
    pub(crate) fn due(
        &self,
        policy: &SinkPolicy,
        now: Instant,
        count: &Count,
        force: bool,
    ) -> bool {
        let Some((last, at)) = &self.last else {
            return true;
        };
        // Weight alone (a download's bytes before its file is done) is news too: it goes
        // out at most every `max_interval`, as a count that moves less than
        // `min_percent`.
        if last.done == count.done
            && last.total == count.total
            && last.done_weight == count.done_weight
        {
            return false;
        }
        if force || policy.every_tick || last.total != count.total {
            return true;
        }
        let moved = match (count.percent, last.percent) {
            (Some(p), Some(lp)) => p - lp >= policy.min_percent || (p >= 100.0 && lp < 100.0),
            _ => false,
        };
        moved || now.saturating_duration_since(*at) >= policy.max_interval
    }

    /// Records that `count` was sent at `now`.
    pub(crate) fn sent(&mut self, now: Instant, count: Count) {
        self.last = Some((count, now));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Replays counts at given seconds through the default policy and returns the
    /// counts that went out.
    #[track_caller]
    fn check(policy: SinkPolicy, total: Option<u64>, samples: &[(f64, u64)], expected: &[u64]) {
        let start = Instant::now();
        let mut throttle = Throttle::default();
        let mut out = Vec::new();
        for &(t, done) in samples {
            let now = start + Duration::from_secs_f64(t);
            let count = Count {
                done,
                total,
                done_weight: None,
                percent: total.map(|n| done as f64 / n as f64 * 100.0),
            };
            if throttle.due(&policy, now, &count, false) {
                throttle.sent(now, count);
                out.push(done);
            }
        }
        assert_eq!(out, expected);
    }

    #[test]
    fn weight_alone_goes_out_at_the_slow_pace() {
        let policy = SinkPolicy::default();
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let count = |w: f64| Count {
            done: 0,
            total: Some(1),
            done_weight: Some(w),
            percent: Some(0.0),
        };
        let mut throttle = Throttle::default();
        throttle.sent(at(0), count(0.0));
        assert!(!throttle.due(&policy, at(1), &count(0.0), false));
        assert!(
            !throttle.due(&policy, at(1), &count(400.0), false),
            "before max_interval"
        );
        assert!(throttle.due(&policy, at(5), &count(400.0), false));
        assert!(
            throttle.due(&policy, at(1), &count(400.0), true),
            "a stage's last count"
        );
        throttle.sent(at(5), count(400.0));
        assert!(
            !throttle.due(&policy, at(60), &count(400.0), false),
            "nothing new"
        );
    }

    #[test]
    fn at_most_one_tick_per_ten_points() {
        let samples: Vec<(f64, u64)> = (0..=100).map(|i| (i as f64 * 0.01, i)).collect();
        check(
            SinkPolicy::default(),
            Some(100),
            &samples,
            &[0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100],
        );
    }

    #[test]
    fn slow_counters_tick_every_five_seconds() {
        let samples: Vec<(f64, u64)> = (0..=20).map(|i| (i as f64, i)).collect();
        check(
            SinkPolicy::default(),
            Some(1000),
            &samples,
            &[0, 5, 10, 15, 20],
        );
        check(SinkPolicy::default(), None, &samples, &[0, 5, 10, 15, 20]);
    }

    #[test]
    fn unchanged_counts_are_not_repeated() {
        check(
            SinkPolicy::every_tick(),
            Some(10),
            &[(0.0, 1), (9.0, 1), (10.0, 2)],
            &[1, 2],
        );
        check(
            SinkPolicy::default(),
            Some(10),
            &[(0.0, 1), (60.0, 1)],
            &[1],
        );
    }

    #[test]
    fn reaching_the_total_always_goes_out() {
        check(
            SinkPolicy::default(),
            Some(1000),
            &[(0.0, 995), (0.1, 1000)],
            &[995, 1000],
        );
    }
}
