//! The estimators compared: herald's [`EtaEstimator`] behind a common trait, and models
//! of the peers' (the plain average, tqdm's EMA, indicatif's estimator).
//!
//! Each model reproduces its library's arithmetic and its update throttling, driven by
//! trace times instead of a clock, and is queried *live*: [`Estimator::eta`] returns what
//! the library would render if it redrew at that instant (tqdm's `refresh()`, indicatif's
//! `ProgressState::eta()` under a steady tick, herald's fold at `now`). A library that
//! would print no estimate, or 0 for want of one, gives `None`.

use herald_protocol::{EtaConfig, EtaEstimator};

/// A rate estimator fed with completions in time order and asked for the time left.
///
/// Times are seconds since the run started, when 0 units were done; every estimator is
/// created at that instant, as a progress bar is created when its work starts. Work is
/// counted in units, or in weight (bytes, rows) for a weighted trace, as a bar counts
/// bytes (`tqdm(unit="B")`, `ProgressBar::inc(bytes)`).
pub trait Estimator {
    /// `done` units, `work` work (units, or weight), are finished at time `t`.
    fn observe(&mut self, t: f64, done: u64, work: f64);

    /// The seconds left that would be shown at time `t` (not before the last
    /// observation) for a run of `total` work, or `None` when there is no estimate.
    fn eta(&self, t: f64, total: f64) -> Option<f64>;

    /// The run has `total_units` units: called once, before the first observation.
    fn start(&mut self, _total_units: u64) {}

    /// A low and a high estimate of the seconds left, for estimators that give one.
    fn range(&self, _t: f64, _total: f64) -> Option<(f64, f64)> {
        None
    }
}

/// The estimators of the comparison, in table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// herald's [`EtaEstimator`] with its default tuning.
    Herald,
    /// `done / elapsed` since the start.
    PlainAverage,
    /// tqdm's EMA of units and seconds per refresh (smoothing 0.3).
    Tqdm,
    /// indicatif 0.17/0.18's double-smoothed, time-weighted estimator.
    Indicatif,
}

impl Peer {
    /// All of them, herald first.
    pub const ALL: [Peer; 4] = [
        Peer::Herald,
        Peer::PlainAverage,
        Peer::Tqdm,
        Peer::Indicatif,
    ];

    /// The column name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Herald => "herald",
            Peer::PlainAverage => "plain average",
            Peer::Tqdm => "tqdm EMA",
            Peer::Indicatif => "indicatif",
        }
    }

    /// A fresh estimator, created at the start of a run.
    pub fn estimator(self) -> Box<dyn Estimator> {
        match self {
            Peer::Herald => Box::new(Herald::new(EtaConfig::default())),
            Peer::PlainAverage => Box::new(PlainAverage::default()),
            Peer::Tqdm => Box::new(TqdmEma::default()),
            Peer::Indicatif => Box::new(IndicatifEstimator::default()),
        }
    }
}

/// herald's estimator as the reducer drives it: one observation per change of the
/// count, and `eta_at(now)` (the estimate counted down since the last change) when shown.
#[derive(Clone, Debug)]
pub struct Herald {
    inner: EtaEstimator,
    total_units: Option<u64>,
}

impl Herald {
    /// Created at the start of the run, with 0 units done.
    pub fn new(config: EtaConfig) -> Herald {
        let mut inner = EtaEstimator::new(config);
        inner.observe(0.0, 0.0);
        Herald {
            inner,
            total_units: None,
        }
    }
}

impl Estimator for Herald {
    fn observe(&mut self, t: f64, done: u64, work: f64) {
        self.inner.observe_weighted(t, work, done);
    }

    fn start(&mut self, total_units: u64) {
        self.total_units = Some(total_units);
    }

    fn eta(&self, t: f64, total: f64) -> Option<f64> {
        self.inner
            .estimate_weighted_at(t, total, self.total_units)
            .map(|e| e.eta_s)
    }

    fn range(&self, t: f64, total: f64) -> Option<(f64, f64)> {
        self.inner
            .estimate_weighted_at(t, total, self.total_units)
            .map(|e| (e.low_s, e.high_s))
    }
}

/// The plain average since the start: `rate = done / elapsed`, with the elapsed time
/// taken at the query, as a bar without smoothing renders it (tqdm with `smoothing=0`).
#[derive(Clone, Debug, Default)]
pub struct PlainAverage {
    done: f64,
}

impl Estimator for PlainAverage {
    fn observe(&mut self, _t: f64, _done: u64, work: f64) {
        self.done = work;
    }

    fn eta(&self, t: f64, total: f64) -> Option<f64> {
        if self.done <= 0.0 || t <= 0.0 {
            return None;
        }
        let rate = self.done / t;
        Some((total - self.done).max(0.0) / rate)
    }
}

/// `tqdm.std.EMA`: an exponential moving average, de-biased by the weight of its
/// (non-existent) samples before the first.
#[derive(Clone, Copy, Debug)]
struct Ema {
    alpha: f64,
    last: f64,
    calls: i32,
}

impl Ema {
    fn new(alpha: f64) -> Ema {
        Ema {
            alpha,
            last: 0.0,
            calls: 0,
        }
    }

    fn push(&mut self, x: f64) {
        self.last = self.alpha * x + (1.0 - self.alpha) * self.last;
        self.calls += 1;
    }

    fn value(&self) -> f64 {
        if self.calls == 0 {
            self.last
        } else {
            self.last / (1.0 - (1.0 - self.alpha).powi(self.calls))
        }
    }
}

/// tqdm (4.x) with its defaults, driven by `update(dn)` per completion: `smoothing=0.3`,
/// `mininterval=0.1` s, `maxinterval=10` s, dynamic `miniters`, and the monitor thread
/// that wakes every 10 s.
///
/// An update past `miniters` units and `mininterval` seconds since the last print feeds
/// the units and seconds since that print into two EMAs; the rate is their ratio, or
/// the plain average before the first such update (as `format_meter` falls back).
#[derive(Clone, Debug)]
pub struct TqdmEma {
    n: f64,
    last_print_n: f64,
    last_print_t: f64,
    miniters: f64,
    ema_dn: Ema,
    ema_dt: Ema,
    ema_miniters: Ema,
    /// The monitor thread's next wake-up.
    next_monitor_t: f64,
}

impl TqdmEma {
    const SMOOTHING: f64 = 0.3;
    const MININTERVAL: f64 = 0.1;
    const MAXINTERVAL: f64 = 10.0;
    const MONITOR_INTERVAL: f64 = 10.0;

    /// tqdm's `TMonitor.run`: a bar that has not printed for `maxinterval` seconds while
    /// `miniters > 1` gets `miniters = 1`, so that its next update prints.
    fn run_monitor_until(&mut self, t: f64) {
        while self.next_monitor_t <= t {
            let cur_t = self.next_monitor_t;
            if self.miniters > 1.0 && cur_t - self.last_print_t >= Self::MAXINTERVAL {
                self.miniters = 1.0;
            }
            self.next_monitor_t += Self::MONITOR_INTERVAL;
        }
    }
}

impl Default for TqdmEma {
    fn default() -> TqdmEma {
        TqdmEma {
            n: 0.0,
            last_print_n: 0.0,
            last_print_t: 0.0,
            miniters: 0.0,
            ema_dn: Ema::new(Self::SMOOTHING),
            ema_dt: Ema::new(Self::SMOOTHING),
            ema_miniters: Ema::new(Self::SMOOTHING),
            next_monitor_t: Self::MONITOR_INTERVAL,
        }
    }
}

impl Estimator for TqdmEma {
    fn observe(&mut self, t: f64, _done: u64, work: f64) {
        self.run_monitor_until(t);
        // `tqdm.update_to`, with `delay=0` and `smoothing > 0`.
        self.n = work;
        if (self.n - self.last_print_n).abs() < self.miniters {
            return;
        }
        let dt = t - self.last_print_t;
        if dt < Self::MININTERVAL {
            return;
        }
        let dn = self.n - self.last_print_n;
        if dt != 0.0 && dn != 0.0 {
            self.ema_dn.push(dn);
            self.ema_dt.push(dt);
        }
        // Dynamic `miniters`.
        self.miniters = if dt >= Self::MAXINTERVAL {
            dn * Self::MININTERVAL / dt
        } else {
            self.ema_miniters.push(dn * Self::MININTERVAL / dt);
            self.ema_miniters.value()
        };
        self.last_print_n = self.n;
        self.last_print_t = t;
    }

    fn eta(&self, t: f64, total: f64) -> Option<f64> {
        // `format_dict` and `format_meter`: `rate = ema_dn() / ema_dt()` when the EMA
        // has data, else `n / elapsed`; no estimate without a rate.
        let ema_dt = self.ema_dt.value();
        let rate = if ema_dt != 0.0 {
            self.ema_dn.value() / ema_dt
        } else if t > 0.0 {
            self.n / t
        } else {
            0.0
        };
        if rate == 0.0 {
            return None;
        }
        Some((total - self.n).max(0.0) / rate)
    }
}

/// indicatif (0.17.x and 0.18.x, whose `Estimator` is the same) driven by
/// `ProgressBar::inc(dn)` per completion.
///
/// `inc` passes a token bucket (`AtomicPosition::allow`: one update per millisecond,
/// bursts of up to 10) before the estimator records the position. The estimator keeps
/// an exponentially time-weighted average of steps per second (weight `0.1^(age/15 s)`),
/// normalised for the missing history before the start, and smooths that again the
/// same way; a query treats the time since the last record as a pseudo-update with no
/// steps, so its ETA grows during a silence.
#[derive(Clone, Debug, Default)]
pub struct IndicatifEstimator {
    pos: u64,
    // `AtomicPosition`'s token bucket, in nanoseconds since the start.
    capacity: u8,
    prev_ns: u64,
    // `Estimator`.
    smoothed_steps_per_sec: f64,
    double_smoothed_steps_per_sec: f64,
    prev_steps: u64,
    prev_time: f64,
    /// Set once the bucket has been initialised (the first `inc`).
    started: bool,
}

impl IndicatifEstimator {
    const INTERVAL_NS: u64 = 1_000_000;
    const MAX_BURST: u8 = 10;

    /// `0.1^(age / 15)`: the weight left to data `age` seconds old.
    fn weight(age: f64) -> f64 {
        0.1_f64.powf(age / 15.0)
    }

    fn allow(&mut self, t: f64) -> bool {
        let elapsed = (t * 1e9) as u64;
        let diff = elapsed.saturating_sub(self.prev_ns);
        if self.capacity == 0 && diff < Self::INTERVAL_NS {
            return false;
        }
        let (new, remainder) = (diff / Self::INTERVAL_NS, diff % Self::INTERVAL_NS);
        self.capacity = (u128::from(self.capacity) + u128::from(new) - 1)
            .min(u128::from(Self::MAX_BURST)) as u8;
        self.prev_ns = elapsed - remainder;
        true
    }

    fn record(&mut self, new_steps: u64, now: f64) {
        if new_steps <= self.prev_steps || now <= self.prev_time {
            return;
        }
        let delta_steps = new_steps - self.prev_steps;
        let delta_t = now - self.prev_time;
        let new_steps_per_second = delta_steps as f64 / delta_t;
        let weight = Self::weight(delta_t);
        self.smoothed_steps_per_sec =
            self.smoothed_steps_per_sec * weight + new_steps_per_second * (1.0 - weight);
        // The start is t = 0.
        let total_weight = 1.0 - Self::weight(now);
        let normalized = self.smoothed_steps_per_sec / total_weight;
        self.double_smoothed_steps_per_sec =
            self.double_smoothed_steps_per_sec * weight + normalized * (1.0 - weight);
        self.prev_steps = new_steps;
        self.prev_time = now;
    }

    fn steps_per_second(&self, now: f64) -> f64 {
        let reweight = Self::weight(now - self.prev_time);
        let total_weight = 1.0 - Self::weight(now);
        let sps = self.smoothed_steps_per_sec * reweight / total_weight;
        let dsps = self.double_smoothed_steps_per_sec * reweight + sps * (1.0 - reweight);
        dsps / total_weight
    }
}

impl Estimator for IndicatifEstimator {
    fn observe(&mut self, t: f64, _done: u64, work: f64) {
        if !self.started {
            self.started = true;
            self.capacity = Self::MAX_BURST;
        }
        // `inc` takes whole steps: bytes, rows.
        self.pos = work.round() as u64;
        if self.allow(t) {
            self.record(self.pos, t);
        }
    }

    fn eta(&self, t: f64, total: f64) -> Option<f64> {
        let sps = self.steps_per_second(t);
        // indicatif shows 0 s while it has no rate; that is no estimate.
        if sps == 0.0 || !sps.is_finite() {
            return None;
        }
        Some((total.round() as u64).saturating_sub(self.pos) as f64 / sps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `(t, done)` completions and returns the ETA at `at`.
    #[track_caller]
    fn check(
        mut est: impl Estimator,
        completions: &[(f64, u64)],
        total: u64,
        at: f64,
        want: Option<f64>,
    ) {
        for &(t, done) in completions {
            est.observe(t, done, done as f64);
        }
        let got = est.eta(at, total as f64);
        match (got, want) {
            (Some(g), Some(w)) => assert!((g - w).abs() < 1e-9 * w.max(1.0), "got {g}, want {w}"),
            _ => assert_eq!(got, want),
        }
    }

    #[test]
    fn plain_average_uses_the_elapsed_time_at_the_query() {
        check(PlainAverage::default(), &[], 10, 1.0, None);
        // 2 units in 4 s: 2 s each, 8 left.
        check(
            PlainAverage::default(),
            &[(1.0, 1), (4.0, 2)],
            10,
            4.0,
            Some(16.0),
        );
        // Asked at 5 s: 2 units in 5 s.
        check(
            PlainAverage::default(),
            &[(1.0, 1), (4.0, 2)],
            10,
            5.0,
            Some(20.0),
        );
    }

    #[test]
    fn tqdm_by_hand() {
        // Before any completion tqdm prints `?`.
        check(TqdmEma::default(), &[], 10, 0.5, None);
        // t=1: dn=1, dt=1 -> both EMAs hold 1 after de-biasing; rate 1; 9 left.
        check(TqdmEma::default(), &[(1.0, 1)], 10, 1.0, Some(9.0));
        // t=3: dn=1, dt=2. EMA_dn: 0.3, then 0.3 + 0.21 = 0.51, de-biased by 0.51: 1.
        // EMA_dt: 0.3, then 0.6 + 0.21 = 0.81, de-biased: 0.81 / 0.51.
        // rate = 0.51 / 0.81; 8 left: 8 * 0.81 / 0.51.
        check(
            TqdmEma::default(),
            &[(1.0, 1), (3.0, 2)],
            10,
            3.0,
            Some(8.0 * 0.81 / 0.51),
        );
        // A completion 50 ms after a print is below `mininterval`: the count moves but
        // the EMAs do not (still rate 1), and nothing counts down while tqdm is idle.
        check(
            TqdmEma::default(),
            &[(1.0, 1), (1.05, 2)],
            10,
            7.0,
            Some(8.0),
        );
    }

    #[test]
    fn tqdm_falls_back_to_the_average_before_its_first_print() {
        // The first completion at 50 ms does not print (mininterval), so tqdm renders
        // `n / elapsed`: 1 unit in 2 s.
        check(TqdmEma::default(), &[(0.05, 1)], 10, 2.0, Some(18.0));
    }

    #[test]
    fn indicatif_by_hand() {
        let w = |age: f64| 0.1_f64.powf(age / 15.0);
        check(IndicatifEstimator::default(), &[], 10, 1.0, None);
        // One record at t=2 with 2 steps: new rate 1/s, weight w(2).
        // smoothed = (1 - w2); normalised by (1 - w2): 1; dsps = 1 - w2.
        // Query at t=2: reweight 1, sps = (1 - w2) / (1 - w2) = 1,
        // dsps' = (1 - w2) / (1 - w2) = 1. 8 left at 1/s.
        check(
            IndicatifEstimator::default(),
            &[(2.0, 2)],
            10,
            2.0,
            Some(8.0),
        );
        // Query at t=5 (3 s without a step): reweight w(3), total weight 1 - w(5).
        let (w2, w3, w5) = (w(2.0), w(3.0), w(5.0));
        let sps = (1.0 - w2) * w3 / (1.0 - w5);
        let dsps = ((1.0 - w2) * w3 + sps * (1.0 - w3)) / (1.0 - w5);
        check(
            IndicatifEstimator::default(),
            &[(2.0, 2)],
            10,
            5.0,
            Some(8.0 / dsps),
        );
    }

    #[test]
    fn indicatif_token_bucket_merges_a_burst_past_ten() {
        // Twelve completions within 13 µs after a first one at t=1: the bucket, full
        // at 10, lets ten of them through to the estimator; the last two only move the
        // position, which the ETA still counts from.
        let mut est = IndicatifEstimator::default();
        est.observe(1.0, 1, 1.0);
        for k in 2..=13u64 {
            est.observe(1.0 + k as f64 * 1e-6, k, k as f64);
        }
        assert_eq!(est.pos, 13);
        assert_eq!(est.prev_steps, 11);
    }

    #[test]
    fn herald_is_created_at_the_start() {
        // Two units at 1 s and 2 s; herald's default tuning gives 1 unit/s for a
        // steady run, so 8 s are left, counted down at the query for two typical gaps
        // (2 s), then held.
        check(
            Herald::new(EtaConfig::default()),
            &[(1.0, 1), (2.0, 2)],
            10,
            2.0,
            Some(8.0),
        );
        check(
            Herald::new(EtaConfig::default()),
            &[(1.0, 1), (2.0, 2)],
            10,
            5.0,
            Some(6.0),
        );
        check(
            Herald::new(EtaConfig::default()),
            &[(1.0, 1)],
            10,
            1.0,
            None,
        );
    }
}
