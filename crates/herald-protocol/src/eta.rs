//! herald's rate and ETA estimator (docs/protocol.md#rate-and-eta).
//!
//! The rate is smoothed over *time*, not over updates: each completion's units and the
//! seconds since the previous one enter two sums that decay by `exp(-dt/tau)`, and the
//! rate is their ratio. Three choices make it follow the pace of the work and nothing
//! else (their effect is measured in BENCHMARKS.md, "ETA quality on recorded traces"):
//!
//! - `tau` grows with the run (a fifth of the working time so far, up to 10 minutes),
//!   so the estimate is as steady as the run allows early on and still follows a
//!   slow-down that lasts.
//! - `tau` spans at least 15 *typical gaps*, where the typical gap is the time-weighted
//!   mean gap between completions (`sum(gap^2) / sum(gap)`, which the near-zero gaps
//!   inside a burst do not shrink). The window thus always holds many completions, or
//!   many bursts when work lands in bursts: one burst is a small share of it and
//!   cannot swing the rate.
//! - A gap longer than 6 typical gaps (once the history spans 15 of them) is a
//!   silence, not a pace: it counts as 6 typical gaps of work. Without this, one stall would erase the history and leave a rate of
//!   one unit per stall after it; with it, the run resumes at its old pace.
//!
//! The ETA is unknown (`None`, never 0) until at least two units are done. During a
//! silence it counts down from the last estimate and never grows: a run that stops
//! making progress is shown `stalled` by the hub rather than given an ever longer ETA.

/// Tuning of [`EtaEstimator`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EtaConfig {
    /// Units that must be done before there is an estimate (counted in units even when
    /// the work is weighted).
    pub min_done: u64,
    /// The smoothing time constant is this fraction of the working time so far...
    pub tau_fraction: f64,
    /// ... capped at this many seconds, so that a long run still follows a slow-down
    /// within minutes...
    pub tau_max_s: f64,
    /// ... but never shorter than this many typical gaps between completions, so that
    /// the window always spans enough of them (and a burst is a small part of it).
    pub tau_gaps: f64,
    /// A gap longer than this many typical gaps is a silence: it counts as this many
    /// typical gaps of work, not as a slower pace.
    pub silence_gaps: f64,
}

impl Default for EtaConfig {
    fn default() -> EtaConfig {
        EtaConfig {
            min_done: 2,
            tau_fraction: 0.2,
            tau_max_s: 600.0,
            tau_gaps: 15.0,
            silence_gaps: 6.0,
        }
    }
}

/// Estimates the rate of a counter and the time left until it reaches its total.
///
/// Times are seconds from any fixed origin (usually the start of the stage); the
/// estimator takes them as arguments and reads no clock. The first observation is
/// where counting starts: its count is not a completion.
#[derive(Clone, Debug, PartialEq)]
pub struct EtaEstimator {
    config: EtaConfig,
    /// Time and count of the first observation.
    origin: Option<(f64, f64)>,
    /// Time and count of the last observation that changed the count.
    last: Option<(f64, f64)>,
    /// Units done at the origin and at the last observation (equal to the count when
    /// the work is not weighted).
    first_units: u64,
    units_done: u64,
    /// Seconds of work since the origin: elapsed time with silences cut short.
    worked: f64,
    /// Decayed sums of units done and of seconds worked.
    units: f64,
    seconds: f64,
    /// Decayed sum of squared gaps; with `seconds`, the typical gap.
    gaps_sq: f64,
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
            first_units: 0,
            units_done: 0,
            worked: 0.0,
            units: 0.0,
            seconds: 0.0,
            gaps_sq: 0.0,
        }
    }

    /// The gap between completions that a random instant falls in, on average: the
    /// time-weighted mean gap, `sum(gap^2) / sum(gap)`. Unlike the mean gap it is not
    /// shrunk by the near-zero gaps inside a burst, so it measures how long the counter
    /// usually sits still: a second for a steady 1/s, the burst period for bursts.
    fn typical_gap(&self) -> Option<f64> {
        (self.seconds > 0.0).then(|| self.gaps_sq / self.seconds)
    }

    /// Records that `done` units were done at time `t` (seconds).
    ///
    /// Observations that go back in time, or that are not finite, are ignored; a count
    /// that goes down restarts the estimate, since the work was reset.
    pub fn observe(&mut self, t: f64, done: f64) {
        self.observe_weighted(t, done, done.max(0.0) as u64);
    }

    /// Records that `done` work was done at time `t` (seconds), measured in weight
    /// (bytes, tokens, rows), in `units` units: the estimator works in weight, and
    /// counts units only for the rule that there is no estimate before `min_done`.
    pub fn observe_weighted(&mut self, t: f64, done: f64, units: u64) {
        if !t.is_finite() || !done.is_finite() {
            return;
        }
        let Some((last_t, last_done)) = self.last else {
            self.origin = Some((t, done));
            self.last = Some((t, done));
            self.first_units = units;
            self.units_done = units;
            return;
        };
        if t < last_t {
            return;
        }
        if done < last_done {
            *self = EtaEstimator::new(self.config);
            self.observe_weighted(t, done, units);
            return;
        }
        if done == last_done {
            // Time passing without progress is folded in with the next completion, so
            // that the rate never falls between two units merely because the
            // estimate was asked for in between.
            return;
        }
        let mut dt = t - last_t;
        let typical = self.typical_gap();
        // A silence (a stuck call, a rate limit, a laptop asleep) says nothing about
        // the pace of the work; the run shows `stalled` while it lasts. Gaps are
        // judged so only once the history spans a window's worth of typical gaps, so
        // that a few near-simultaneous first units cannot make every later gap look
        // like a silence.
        let established = typical.filter(|&g| self.worked >= self.config.tau_gaps * g);
        if let Some(typical) = established {
            dt = dt.min(self.config.silence_gaps * typical);
        }
        self.worked += dt;
        let tau = (self.worked * self.config.tau_fraction)
            .min(self.config.tau_max_s)
            .max(self.config.tau_gaps * typical.unwrap_or(dt));
        // Units that land at the same instant as the last ones decay nothing.
        let decay = if dt > 0.0 && tau > 0.0 {
            (-dt / tau).exp()
        } else {
            1.0
        };
        let dd = done - last_done;
        self.units_done = self.units_done.max(units);
        self.units = self.units * decay + dd;
        self.seconds = self.seconds * decay + dt;
        self.gaps_sq = self.gaps_sq * decay + dt * dt;
        self.last = Some((t, done));
    }

    /// Work per second (units, or weight), once enough completions are seen.
    pub fn rate(&self) -> Option<f64> {
        if self.units_done.saturating_sub(self.first_units) < self.config.min_done
            || self.seconds <= 0.0
        {
            return None;
        }
        Some(self.units / self.seconds)
    }

    /// Seconds left until `total`, as of the last observation.
    pub fn eta(&self, total: f64) -> Option<f64> {
        let (_, done) = self.last?;
        let rate = self.rate()?;
        if rate <= 0.0 {
            return None;
        }
        Some((total - done).max(0.0) / rate)
    }

    /// Seconds left until `total` at time `now`: the last estimate counted down by the
    /// time since the last observation, and never below zero.
    pub fn eta_at(&self, now: f64, total: f64) -> Option<f64> {
        self.estimate_at(now, total).map(|e| e.eta_s)
    }

    /// The estimate at time `now` for a stage of `total` (units, or weight): the point
    /// ETA, a range around it, and whether the current unit is overdue.
    pub fn estimate_at(&self, now: f64, total: f64) -> Option<Estimate> {
        let (last_t, _) = self.last?;
        let eta = self.eta(total)?;
        let since = (now - last_t).max(0.0);
        let eta_s = (eta - since).max(0.0);
        let typical = self.typical_gap().unwrap_or(0.0);
        let overdue =
            (typical > 0.0 && since > self.config.silence_gaps * typical).then_some(Overdue {
                running_s: since,
                typical_s: typical,
            });
        Some(Estimate {
            eta_s,
            low_s: eta_s * 0.5,
            high_s: eta_s * 2.0,
            overdue,
        })
    }
}

/// What [`EtaEstimator::estimate_at`] says about the time left.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// The most likely seconds left.
    pub eta_s: f64,
    /// A low estimate of the seconds left (`low_s <= eta_s`).
    pub low_s: f64,
    /// A high estimate of the seconds left (`high_s >= eta_s`).
    pub high_s: f64,
    /// Set while the current unit has run far longer than a typical one.
    pub overdue: Option<Overdue>,
}

/// The current unit has run far longer than a typical one: views say so ("current item
/// running 20 s, typically 0.1 s") instead of counting the ETA down to zero.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Overdue {
    /// Seconds since the last completion.
    pub running_s: f64,
    /// Seconds a unit typically takes (between completions).
    pub typical_s: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_until_two_units_then_steady() {
        let mut e = EtaEstimator::default();
        assert_eq!(e.eta(10.0), None);
        e.observe(0.0, 0.0);
        e.observe(1.0, 1.0);
        assert_eq!(e.eta(10.0), None);
        for i in 2..=5 {
            e.observe(i as f64, i as f64);
        }
        let eta = e.eta(10.0).unwrap();
        assert!((eta - 5.0).abs() < 1e-9, "{eta}");
        // A silence counts down and never grows.
        assert!((e.eta_at(7.0, 10.0).unwrap() - 3.0).abs() < 1e-9);
        assert_eq!(e.eta_at(100.0, 10.0), Some(0.0));
    }

    #[test]
    fn a_burst_does_not_swing_the_estimate() {
        let mut e = EtaEstimator::default();
        for i in 0..=20u64 {
            e.observe(i as f64, i as f64);
        }
        let before = e.rate().unwrap();
        // Five units land within a millisecond: a quarter of all the work so far, yet
        // only one event in a window of 15 typical gaps.
        for k in 1..=5u64 {
            e.observe(20.0 + k as f64 * 0.0002, (20 + k) as f64);
        }
        let after = e.rate().unwrap();
        assert!(after / before < 1.5, "rate {before} -> {after}");
    }

    #[test]
    fn a_slow_down_is_followed() {
        let mut e = EtaEstimator::default();
        for i in 0..=100u64 {
            e.observe(i as f64, i as f64);
        }
        // Three times slower from now on: within a minute of the new pace (a fifth of
        // the run so far is 20 s), the rate is most of the way there.
        for i in 1..=20u64 {
            e.observe(100.0 + 3.0 * i as f64, (100 + i) as f64);
        }
        let rate = e.rate().unwrap();
        assert!((1.0 / 3.0..0.5).contains(&rate), "rate {rate}");
    }

    #[test]
    fn a_silence_is_not_a_pace() {
        let mut e = EtaEstimator::default();
        for i in 0..=50u64 {
            e.observe(i as f64, i as f64);
        }
        // Ten minutes without a completion, then the same pace again.
        // The silence counts as 6 typical gaps (6 s) of work: the rate dips by under a
        // third, instead of falling to one unit per ten minutes.
        e.observe(650.0, 51.0);
        e.observe(651.0, 52.0);
        let rate = e.rate().unwrap();
        assert!((0.6..1.0).contains(&rate), "rate {rate}");
        // During the silence the ETA counted down and stopped at 0; it never grew.
        assert_eq!(e.eta_at(651.0 + 1000.0, 100.0), Some(0.0));
    }

    #[test]
    fn units_done_at_once_at_the_start_do_not_distort_what_follows() {
        let mut e = EtaEstimator::default();
        e.observe(0.0, 0.0);
        // Three units at the start, cached perhaps, then one a second.
        e.observe(0.0, 2.0);
        e.observe(0.001, 3.0);
        for i in 1..=10u64 {
            e.observe(0.001 + i as f64, (3 + i) as f64);
        }
        let rate = e.rate().unwrap();
        assert!((1.0..1.5).contains(&rate), "rate {rate}");
    }

    #[test]
    fn bursts_at_a_steady_period_give_the_period_rate() {
        // 10 units every 10 s, a millisecond apart: 1 unit/s over any whole period.
        let mut e = EtaEstimator::default();
        e.observe(0.0, 0.0);
        for burst in 1..=20u64 {
            for k in 1..=10u64 {
                e.observe(
                    burst as f64 * 10.0 + k as f64 * 0.001,
                    ((burst - 1) * 10 + k) as f64,
                );
            }
        }
        let rate = e.rate().unwrap();
        assert!((0.9..1.3).contains(&rate), "rate {rate}");
    }

    #[test]
    fn a_reset_counter_restarts_the_estimate() {
        let mut e = EtaEstimator::default();
        for i in 0..=5u64 {
            e.observe(i as f64, i as f64);
        }
        e.observe(6.0, 0.0);
        assert_eq!(e.rate(), None);
    }
}
