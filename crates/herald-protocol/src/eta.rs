//! herald's rate and ETA estimator (docs/protocol.md#rate-and-eta).
//!
//! Two paces, one estimate. The *average* pace is the work done over the time worked
//! since the start; the *recent* pace is smoothed over time, not over updates: each
//! completion's work and the seconds since the previous one enter two sums that decay
//! by `exp(-dt/tau)`. The rate is their weighted geometric mean. The average pace
//! weighs fully at first (on real work, with its lumpy units, it predicts best); every
//! twentieth of the working time, each pace is held against the pace that followed,
//! and the weight shifts to whichever predicted it better (the recent one when the
//! work slows down or warms up for good). Their effect is measured in BENCHMARKS.md,
//! "ETA quality on recorded traces", on real and synthetic traces.
//!
//! - `tau` grows with the run (0.35 of the working time so far, up to 10 minutes),
//!   and spans at least 15 *typical gaps*, where the typical gap is the time-weighted
//!   mean gap between completions (`sum(gap^2) / sum(gap)`, which the near-zero gaps
//!   inside a burst do not shrink): one burst is a small share of the window.
//! - A gap longer than 6 typical gaps (once the history spans 15 of them) is a
//!   silence, not a pace: it counts as 6 typical gaps of work, so that the run resumes
//!   at its old pace after a stall or after one unit that took most of the time.
//! - Weighted work (bytes, rows, tokens) is counted in weight; when the number of units
//!   left is known, the time left is fitted as a time per unit plus a time per weight
//!   wherever the gaps bear both out (a download costs a request and its bytes).
//!
//! The ETA is unknown (`None`, never 0) until at least two units are done. Between
//! completions it counts down for two typical gaps, then holds: the current unit is
//! then overdue ([`Overdue`], "running 20 s, typically 0.1 s"), and the ETA neither
//! runs to zero as if all were well nor grows without end (a run that stops making
//! progress is shown `stalled` by the hub). Beside the point estimate, a range: from
//! what the recent and the average pace predict, divided and multiplied by 2.2, the
//! high end growing with an overdue unit's overrun (a unit that ran long may well run
//! as long again).

use serde::{Deserialize, Serialize};

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
    /// Weight of the run's average pace (work done over the time worked) against the
    /// recent one (the smoothed rate), from 0 to 1, until checkpoints show which
    /// predicts better: the rate is their weighted geometric mean.
    pub long_weight: f64,
    /// The ETA counts down for this many typical gaps after a completion, then holds:
    /// the current unit is then overdue and the estimate does not run to zero.
    pub hold_gaps: f64,
    /// The range spans the estimates of the recent and the average pace, its high end
    /// multiplied by `1 + range_margin` and its low end divided by it (2.2: the range
    /// holds the truth at 75% of the instants on the real traces).
    pub range_margin: f64,
    /// Checkpoints of the rates' skill are this fraction of the working time apart...
    pub check_fraction: f64,
    /// ... their errors decay by this factor per checkpoint...
    pub check_decay: f64,
    /// ... and weigh against a prior of `long_weight` this strong.
    pub check_prior: f64,
}

impl Default for EtaConfig {
    fn default() -> EtaConfig {
        EtaConfig {
            min_done: 2,
            tau_fraction: 0.35,
            tau_max_s: 600.0,
            tau_gaps: 15.0,
            silence_gaps: 6.0,
            long_weight: 1.0,
            hold_gaps: 2.0,
            range_margin: 1.2,
            check_fraction: 0.05,
            check_decay: 0.6,
            check_prior: 0.03,
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
    /// Time per unit and per weight, fitted over the recent gaps and over all of them.
    recent_fit: Fit,
    average_fit: Fit,
    /// The last checkpoint: worked seconds, work done, and the recent and average
    /// rates then, to be held against the pace that followed.
    checkpoint: Option<(f64, f64, f64, f64)>,
    /// Decayed squared log errors of the recent and the average rate at predicting
    /// the pace from one checkpoint to the next.
    recent_err: f64,
    average_err: f64,
}

/// Weighted work often costs a fixed time per unit (a request, a process, a file
/// opened) besides a time per byte: `gap = per_unit * units + per_weight * weight`,
/// fitted by least squares over the gaps between completions.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Fit {
    uu: f64,
    uw: f64,
    ww: f64,
    ug: f64,
    wg: f64,
}

impl Fit {
    fn add(&mut self, decay: f64, units: f64, weight: f64, gap: f64) {
        self.uu = self.uu * decay + units * units;
        self.uw = self.uw * decay + units * weight;
        self.ww = self.ww * decay + weight * weight;
        self.ug = self.ug * decay + units * gap;
        self.wg = self.wg * decay + weight * gap;
    }

    /// Seconds per unit and per weight, when the gaps determine both and both are
    /// positive; `None` for work without weights (units and weight move together) or
    /// where the weights do not explain the gaps (many units in flight at once).
    fn costs(&self) -> Option<(f64, f64)> {
        let det = self.uu * self.ww - self.uw * self.uw;
        // Not determined (or NaN): units and weight moved together.
        if det.is_nan() || det <= 1e-6 * self.uu * self.ww {
            return None;
        }
        let per_unit = (self.ug * self.ww - self.uw * self.wg) / det;
        let per_weight = (self.uu * self.wg - self.uw * self.ug) / det;
        (per_unit > 0.0 && per_weight > 0.0).then_some((per_unit, per_weight))
    }
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
            recent_fit: Fit::default(),
            average_fit: Fit::default(),
            checkpoint: None,
            recent_err: 0.0,
            average_err: 0.0,
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
        let du = units.saturating_sub(self.units_done) as f64;
        self.recent_fit.add(decay, du, dd, dt);
        self.average_fit.add(1.0, du, dd, dt);
        self.units_done = self.units_done.max(units);
        self.units = self.units * decay + dd;
        self.seconds = self.seconds * decay + dt;
        self.gaps_sq = self.gaps_sq * decay + dt * dt;
        self.last = Some((t, done));
        self.score_rates(done);
    }

    /// Holds the rates at the last checkpoint against the pace since, once a tenth of
    /// the working time (and a window's worth of typical gaps) has passed.
    fn score_rates(&mut self, done: f64) {
        let Some((recent, average)) = self.rates() else {
            return;
        };
        let horizon = (self.config.check_fraction * self.worked)
            .max(self.config.tau_gaps * self.typical_gap().unwrap_or(0.0));
        match self.checkpoint {
            Some((worked, done_then, r, a)) if self.worked - worked >= horizon => {
                let pace = (done - done_then) / (self.worked - worked);
                if pace > 0.0 {
                    let k = self.config.check_decay;
                    self.recent_err = self.recent_err * k + (r / pace).ln().powi(2);
                    self.average_err = self.average_err * k + (a / pace).ln().powi(2);
                }
                self.checkpoint = Some((self.worked, done, recent, average));
            }
            Some(_) => {}
            None => self.checkpoint = Some((self.worked, done, recent, average)),
        }
    }

    /// The weight of the average pace against the recent one: the configured one at
    /// first, then more to whichever has predicted the pace better.
    fn average_weight(&self) -> f64 {
        let prior = self.config.check_prior;
        let w = self.config.long_weight.clamp(0.0, 1.0);
        (self.recent_err + prior * w) / (self.recent_err + self.average_err + prior)
    }

    /// The recent and the average pace, work per second, once enough units are done.
    fn rates(&self) -> Option<(f64, f64)> {
        let (_, done) = self.last?;
        let (_, first) = self.origin?;
        if self.units_done.saturating_sub(self.first_units) < self.config.min_done
            || self.seconds <= 0.0
            || self.worked <= 0.0
        {
            return None;
        }
        let recent = self.units / self.seconds;
        let average = (done - first) / self.worked;
        (recent > 0.0 && average > 0.0).then_some((recent, average))
    }

    /// Work per second (units, or weight), once enough units are done.
    pub fn rate(&self) -> Option<f64> {
        let (recent, average) = self.rates()?;
        let w = self.average_weight();
        Some((recent.ln() * (1.0 - w) + average.ln() * w).exp())
    }

    /// Seconds left until `total`, as of the last observation.
    pub fn eta(&self, total: f64) -> Option<f64> {
        let (_, done) = self.last?;
        let rate = self.rate()?;
        Some((total - done).max(0.0) / rate)
    }

    /// Seconds left until `total` at time `now`: the last estimate counted down by the
    /// time since the last observation, and never below zero.
    pub fn eta_at(&self, now: f64, total: f64) -> Option<f64> {
        self.estimate_at(now, total).map(|e| e.eta_s)
    }

    /// The estimate at time `now` for a stage of `total` (units, or weight): the point
    /// ETA, a range around it, and whether the current unit is overdue.
    ///
    /// The point counts down from the last estimate for `hold_gaps` typical gaps, then
    /// holds: past that the current unit is overdue, and the time it will still take
    /// is unknown. The range spans what the recent and the average pace predict,
    /// widened by `range_margin`; while a unit is overdue its high end grows by the
    /// time it has overrun (a unit that has run long may well run as long again).
    pub fn estimate_at(&self, now: f64, total: f64) -> Option<Estimate> {
        self.estimate_weighted_at(now, total, None)
    }

    /// [`estimate_at`](Self::estimate_at) for weighted work of `total` weight in
    /// `total_units` units: with the number of units left known, the time left is
    /// fitted as a time per unit plus a time per weight (see [`Fit`]), where the gaps
    /// between completions bear that out; else it is the weight left at the rate.
    pub fn estimate_weighted_at(
        &self,
        now: f64,
        total: f64,
        total_units: Option<u64>,
    ) -> Option<Estimate> {
        let (last_t, basis) = self.basis_weighted(total, total_units)?;
        Some(basis.at((now - last_t).max(0.0), &self.config))
    }

    /// The tuning it was made with.
    pub fn config(&self) -> &EtaConfig {
        &self.config
    }

    /// What every later estimate for a stage of `total` (units, or weight) in
    /// `total_units` units rests on, and the time of the last completion: the estimate
    /// at `now` is `basis.at(now - time, config)` until the next completion.
    pub fn basis_weighted(&self, total: f64, total_units: Option<u64>) -> Option<(f64, EtaBasis)> {
        let (last_t, done) = self.last?;
        let (recent, average) = self.rates()?;
        let left = (total - done).max(0.0);
        let units_left = total_units.map(|n| n.saturating_sub(self.units_done) as f64);
        let time_left = |fit: &Fit, rate: f64| match (units_left, fit.costs()) {
            (Some(u), Some((per_unit, per_weight))) => u * per_unit + left * per_weight,
            _ => left / rate,
        };
        let (a, b) = (
            time_left(&self.recent_fit, recent),
            time_left(&self.average_fit, average),
        );
        let w = self.average_weight();
        let eta = if a > 0.0 && b > 0.0 {
            (a.ln() * (1.0 - w) + b.ln() * w).exp()
        } else {
            a * (1.0 - w) + b * w
        };
        let basis = EtaBasis {
            eta_s: eta,
            fast_s: a.min(b),
            slow_s: a.max(b),
            typical_s: self.typical_gap().unwrap_or(0.0),
            work_left: left > 0.0,
        };
        Some((last_t, basis))
    }
}

/// What an estimate rests on from one completion to the next: a handful of numbers,
/// so that a stored state (without its estimator) estimates as the live one does.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EtaBasis {
    /// Seconds left at the last completion: the point estimate then.
    pub eta_s: f64,
    /// Seconds left then at the faster of the recent and the average pace: the
    /// range's low end before its margin.
    pub fast_s: f64,
    /// Seconds left then at the slower of the two: the range's high end before its
    /// margin.
    pub slow_s: f64,
    /// Seconds a unit typically takes (between completions).
    pub typical_s: f64,
    /// Whether work was left (only then can a unit be overdue).
    pub work_left: bool,
}

impl EtaBasis {
    /// The estimate `since` seconds after the last completion.
    ///
    /// The point counts down from the last estimate for `hold_gaps` typical gaps, then
    /// holds: past that the current unit is overdue, and the time it will still take
    /// is unknown. The range spans what the recent and the average pace predict,
    /// widened by `range_margin`; while a unit is overdue its high end grows by the
    /// time it has overrun (a unit that has run long may well run as long again).
    pub fn at(&self, since: f64, config: &EtaConfig) -> Estimate {
        let typical = self.typical_s;
        let hold = config.hold_gaps * typical;
        let counted = since.min(hold);
        let eta_s = (self.eta_s - counted).max(0.0);
        let m = config.range_margin;
        let overrun = (since - hold).max(0.0);
        let low_s = ((self.fast_s - counted) / (1.0 + m)).max(0.0).min(eta_s);
        let high_s = ((self.slow_s - counted).max(0.0) * (1.0 + m) + overrun).max(eta_s);
        let overdue = (typical > 0.0 && self.work_left && since > config.silence_gaps * typical)
            .then_some(Overdue {
                running_s: since,
                typical_s: typical,
            });
        Estimate {
            eta_s,
            low_s,
            high_s,
            overdue,
        }
    }

    /// The basis with no number out of range for JSON: infinite ones are the largest
    /// finite; none when one is not a number (the arithmetic overflowed).
    pub fn finite(self) -> Option<EtaBasis> {
        let cap = |x: f64| x.clamp(f64::MIN, f64::MAX);
        let all = [self.eta_s, self.fast_s, self.slow_s, self.typical_s];
        (!all.iter().any(|x| x.is_nan())).then(|| EtaBasis {
            eta_s: cap(self.eta_s),
            fast_s: cap(self.fast_s),
            slow_s: cap(self.slow_s),
            typical_s: cap(self.typical_s),
            work_left: self.work_left,
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
        // Between completions the ETA counts down for two typical gaps (2 s)...
        assert!((e.eta_at(6.5, 10.0).unwrap() - 3.5).abs() < 1e-9);
        let held = e.estimate_at(7.0, 10.0).unwrap();
        assert!((held.eta_s - 3.0).abs() < 1e-9);
        assert_eq!(held.overdue, None);
        // ... then holds: it neither runs to zero nor grows, and once the unit has run
        // over 6 typical gaps it is overdue; the range's high end grows with the overrun.
        let late = e.estimate_at(100.0, 10.0).unwrap();
        assert!((late.eta_s - 3.0).abs() < 1e-9);
        assert_eq!(
            late.overdue,
            Some(Overdue {
                running_s: 95.0,
                typical_s: 1.0
            })
        );
        assert!(late.low_s <= late.eta_s && late.high_s >= 93.0, "{late:?}");
    }

    #[test]
    fn weighted_work_still_waits_for_two_units() {
        let mut e = EtaEstimator::default();
        e.observe_weighted(0.0, 0.0, 0);
        // One unit of a million bytes: a weight, but one unit.
        e.observe_weighted(1.0, 1e6, 1);
        assert_eq!(e.estimate_weighted_at(1.0, 4e6, Some(4)), None);
        e.observe_weighted(2.0, 2e6, 2);
        let est = e.estimate_weighted_at(2.0, 4e6, Some(4)).unwrap();
        assert!((est.eta_s - 2.0).abs() < 1e-9, "{est:?}");
    }

    #[test]
    fn hostile_observations_change_nothing() {
        let mut e = EtaEstimator::default();
        for i in 0..=5u64 {
            e.observe(i as f64, i as f64);
        }
        let before = e.clone();
        e.observe(f64::NAN, 6.0);
        e.observe(6.0, f64::INFINITY);
        e.observe(f64::NEG_INFINITY, 7.0);
        e.observe(6.0, f64::NAN);
        // Back in time.
        e.observe(3.0, 7.0);
        assert_eq!(e, before);
        // A total below the work done leaves nothing to do: 0 s, not a negative time.
        let est = e.estimate_at(5.0, 2.0).unwrap();
        assert_eq!((est.eta_s, est.low_s, est.high_s), (0.0, 0.0, 0.0));
        assert_eq!(est.overdue, None);
        // Queried before the last observation: as if at it.
        assert_eq!(e.estimate_at(-100.0, 10.0), e.estimate_at(5.0, 10.0));
    }

    #[test]
    fn the_range_brackets_the_point() {
        let mut e = EtaEstimator::default();
        // Fast at first, then slower: the recent and the average pace disagree, and the
        // range spans both, widened.
        for i in 0..=20u64 {
            e.observe(i as f64, i as f64);
        }
        for i in 1..=20u64 {
            e.observe(20.0 + 2.0 * i as f64, (20 + i) as f64);
        }
        let est = e.estimate_at(60.0, 100.0).unwrap();
        let recent_eta = 60.0 / e.rates().unwrap().0;
        let average_eta = 60.0 / e.rates().unwrap().1;
        assert!(est.low_s < average_eta.min(recent_eta), "{est:?}");
        assert!(est.high_s > average_eta.max(recent_eta), "{est:?}");
        assert!(est.low_s < est.eta_s && est.eta_s < est.high_s, "{est:?}");
    }

    #[test]
    fn weighted_work_fits_a_cost_per_unit_and_per_byte() {
        // Each unit costs 1 s plus 1 s per 1000 bytes; sizes alternate 1000 and 9000.
        let mut e = EtaEstimator::default();
        let (mut t, mut bytes) = (0.0, 0.0);
        e.observe_weighted(0.0, 0.0, 0);
        for unit in 1..=20u64 {
            let size = if unit % 2 == 0 { 9000.0 } else { 1000.0 };
            t += 1.0 + size / 1000.0;
            bytes += size;
            e.observe_weighted(t, bytes, unit);
        }
        // 10 units of 1000 and 10 of 9000 left: 10 * 2 s + 10 * 10 s = 120 s.
        let est = e.estimate_weighted_at(t, 2.0 * bytes, Some(40)).unwrap();
        assert!((est.eta_s - 120.0).abs() < 1e-6, "{est:?}");
        // Without the number of units left, the weight left at the rate in weight:
        // 100000 bytes at about 100000 bytes per 120 s.
        let est = e.estimate_at(t, 2.0 * bytes).unwrap();
        assert!((est.eta_s - 120.0).abs() < 1.2, "{est:?}");
        // Units alone (unweighted) never use the fit.
        assert_eq!(Fit::default().costs(), None);
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
        // Three times slower from now on: within a minute of the new pace, the recent
        // rate is most of the way there, and the rate (which also weighs the average
        // since the start) well on its way.
        for i in 1..=20u64 {
            e.observe(100.0 + 3.0 * i as f64, (100 + i) as f64);
        }
        let (recent, _) = e.rates().unwrap();
        assert!((1.0 / 3.0..0.55).contains(&recent), "recent rate {recent}");
        let rate = e.rate().unwrap();
        assert!((1.0 / 3.0..0.6).contains(&rate), "rate {rate}");
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
        // During a silence the ETA counts down for two typical gaps, then holds; it
        // never grows.
        let during = e.eta_at(651.0 + 100.0, 100.0).unwrap();
        assert_eq!(e.eta_at(651.0 + 1000.0, 100.0), Some(during));
        assert!(during > 0.0 && during < e.eta_at(651.0, 100.0).unwrap());
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
