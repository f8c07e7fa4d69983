//! The tick throttle of [`SinkPolicy`]: decides, per sink and counter, whether a sampled
//! count goes out. Pure: it takes the time as an argument.

use std::time::Instant;

use crate::sink::SinkPolicy;

/// What was last sent to one sink for one counter.
#[derive(Clone, Debug, Default)]
pub(crate) struct Throttle {
    last: Option<Sent>,
}

#[derive(Clone, Debug)]
struct Sent {
    done: u64,
    total: Option<u64>,
    percent: Option<f64>,
    at: Instant,
}

impl Throttle {
    /// Whether a count of `done` of `total` (at `percent`) should be sent now. `force`
    /// sends any change regardless of the policy (a stage's last count).
    pub(crate) fn due(
        &self,
        policy: &SinkPolicy,
        now: Instant,
        done: u64,
        total: Option<u64>,
        percent: Option<f64>,
        force: bool,
    ) -> bool {
        let Some(last) = &self.last else {
            return true;
        };
        if last.done == done && last.total == total {
            return false;
        }
        if force || policy.every_tick || last.total != total {
            return true;
        }
        let moved = match (percent, last.percent) {
            (Some(p), Some(lp)) => p - lp >= policy.min_percent || (p >= 100.0 && lp < 100.0),
            _ => false,
        };
        moved || now.saturating_duration_since(last.at) >= policy.max_interval
    }

    /// Records that this count was sent at `now`.
    pub(crate) fn sent(
        &mut self,
        now: Instant,
        done: u64,
        total: Option<u64>,
        percent: Option<f64>,
    ) {
        self.last = Some(Sent {
            done,
            total,
            percent,
            at: now,
        });
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
            let percent = total.map(|n| done as f64 / n as f64 * 100.0);
            if throttle.due(&policy, now, done, total, percent, false) {
                throttle.sent(now, done, total, percent);
                out.push(done);
            }
        }
        assert_eq!(out, expected);
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
