//! herald's rate and ETA estimator (SPEC section 4).
//!
//! The rate is smoothed over *time*, not over updates: each observation's units and
//! seconds enter two exponentially decaying sums whose weights fall by `exp(-dt/tau)`,
//! and the rate is their ratio. A burst of completions in a few milliseconds therefore
//! adds units but almost no time, and cannot swing the estimate by itself, while a
//! lasting slow-down shifts it within a few `tau`.
//!
//! The ETA is unknown (`None`, never 0) until at least two units are done. During a
//! silence it counts down from the last estimate and never grows: a run that stops
//! making progress is shown `stalled` by the hub rather than given an ever longer ETA.

/// Tuning of [`EtaEstimator`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EtaConfig {
    /// Units that must be done before there is an estimate.
    pub min_done: u64,
    /// The smoothing time constant, in seconds, is this fraction of the elapsed time...
    pub tau_fraction: f64,
    /// ... but at least this many seconds...
    pub tau_min_s: f64,
    /// ... and at most this many.
    pub tau_max_s: f64,
}

impl Default for EtaConfig {
    fn default() -> EtaConfig {
        EtaConfig {
            min_done: 2,
            tau_fraction: 0.25,
            tau_min_s: 2.0,
            tau_max_s: 30.0,
        }
    }
}

/// Estimates the rate of a counter and the time left until it reaches its total.
///
/// Times are seconds from any fixed origin (usually the start of the stage); the
/// estimator takes them as arguments and reads no clock.
#[derive(Clone, Debug, PartialEq)]
pub struct EtaEstimator {
    config: EtaConfig,
    /// Time and count of the first observation.
    origin: Option<(f64, u64)>,
    /// Time and count of the last observation that changed the count.
    last: Option<(f64, u64)>,
    /// Decayed sums of units done and of seconds spent.
    units: f64,
    seconds: f64,
}

impl Default for EtaEstimator {
    fn default() -> EtaEstimator {
        EtaEstimator::new(EtaConfig::default())
    }
}

impl EtaEstimator {
    /// A fresh estimator with the given tuning.
    pub fn new(config: EtaConfig) -> EtaEstimator {
        EtaEstimator {
            config,
            origin: None,
            last: None,
            units: 0.0,
            seconds: 0.0,
        }
    }

    /// Records that `done` units were done at time `t` (seconds).
    ///
    /// Observations that go back in time are ignored; a count that goes down restarts
    /// the estimate, since the work was reset.
    pub fn observe(&mut self, t: f64, done: u64) {
        let Some((origin_t, _)) = self.origin else {
            self.origin = Some((t, done));
            self.last = Some((t, done));
            return;
        };
        let Some((last_t, last_done)) = self.last else {
            return;
        };
        if t < last_t {
            return;
        }
        if done < last_done {
            *self = EtaEstimator::new(self.config);
            self.observe(t, done);
            return;
        }
        if done == last_done {
            // Time passing without progress is folded in with the next completion, so
            // that the rate never falls between two units merely because the
            // estimate was asked for in between.
            return;
        }
        let dt = t - last_t;
        let dd = (done - last_done) as f64;
        let tau = ((t - origin_t) * self.config.tau_fraction)
            .clamp(self.config.tau_min_s, self.config.tau_max_s);
        let decay = (-dt / tau).exp();
        self.units = self.units * decay + dd;
        self.seconds = self.seconds * decay + dt;
        self.last = Some((t, done));
    }

    /// Units per second, once enough units are done.
    pub fn rate(&self) -> Option<f64> {
        let (_, done) = self.last?;
        let (_, first) = self.origin?;
        if done.saturating_sub(first) < self.config.min_done || self.seconds <= 0.0 {
            return None;
        }
        Some(self.units / self.seconds)
    }

    /// Seconds left until `total`, as of the last observation.
    pub fn eta(&self, total: u64) -> Option<f64> {
        let (_, done) = self.last?;
        let rate = self.rate()?;
        if rate <= 0.0 {
            return None;
        }
        Some(total.saturating_sub(done) as f64 / rate)
    }

    /// Seconds left until `total` at time `now`: the last estimate counted down by the
    /// time since the last observation, and never below zero.
    pub fn eta_at(&self, now: f64, total: u64) -> Option<f64> {
        let (last_t, _) = self.last?;
        let eta = self.eta(total)?;
        Some((eta - (now - last_t).max(0.0)).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_until_two_units_then_steady() {
        let mut e = EtaEstimator::default();
        assert_eq!(e.eta(10), None);
        e.observe(0.0, 0);
        e.observe(1.0, 1);
        assert_eq!(e.eta(10), None);
        for i in 2..=5 {
            e.observe(i as f64, i);
        }
        let eta = e.eta(10).unwrap();
        assert!((eta - 5.0).abs() < 1e-9, "{eta}");
        // A silence counts down and never grows.
        assert!((e.eta_at(7.0, 10).unwrap() - 3.0).abs() < 1e-9);
        assert_eq!(e.eta_at(100.0, 10), Some(0.0));
    }

    #[test]
    fn a_burst_does_not_swing_the_estimate() {
        let mut e = EtaEstimator::default();
        for i in 0..=20u64 {
            e.observe(i as f64, i);
        }
        let before = e.rate().unwrap();
        // Five units land within a millisecond.
        for k in 1..=5u64 {
            e.observe(20.0 + k as f64 * 0.0002, 20 + k);
        }
        let after = e.rate().unwrap();
        assert!(after / before < 1.5, "rate {before} -> {after}");
    }

    #[test]
    fn a_reset_counter_restarts_the_estimate() {
        let mut e = EtaEstimator::default();
        for i in 0..=5u64 {
            e.observe(i as f64, i);
        }
        e.observe(6.0, 0);
        assert_eq!(e.rate(), None);
    }
}
