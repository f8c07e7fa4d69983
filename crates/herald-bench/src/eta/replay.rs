//! Replaying a trace through estimators and scoring what they would have shown.
//!
//! # The rules
//!
//! - **Instants.** Each estimator is asked for its ETA at 200 instants evenly spaced
//!   over the run (every 0.5% of its duration), after being fed every completion up to
//!   and including that instant. A regular time grid weighs each estimate by how long a
//!   person would have looked at it; it favours neither dense nor sparse stretches.
//! - **Silences.** A gap of [`SILENCE_S`] or more between two completions (or between
//!   the start and the first) is a silence: a stall that no estimator can foresee, and
//!   during which herald shows the run `stalled` instead of an ETA (docs/protocol.md#status;
//!   the hub's default `heartbeat_timeout_s` is 60 s). Instants inside a silence are not
//!   scored, and the truth an estimate is held to is the *working* time left: the time
//!   to the last completion less the silences still ahead. So every estimator is judged
//!   on the pace of the work, before and after the stall, by the same rule.
//! - **The tail.** Instants where less than 5% of the working time is left are not
//!   scored: there the truth tends to 0 and any percentage error explodes.
//! - **Absent estimates.** The percentages are taken over the *common* instants, where
//!   every estimator compared has an estimate, so all are judged on the same moments;
//!   how early each one has an estimate is reported apart (first estimate, coverage).
//!
//! # The scores
//!
//! - **MAPE**: the mean of `|estimate - truth| / truth` over the common instants, in %.
//! - **Jitter**: the mean, over consecutive common instants, of the change of the error
//!   `|(estimate' - truth') - (estimate - truth)| / truth'`, in %. A perfect countdown
//!   scores 0, however fast it counts down; an estimate that jumps scores its jumps,
//!   relative to the time then left.
//! - **First estimate**: the first completion after which the estimator has one, as
//!   seconds since the start and units done.
//! - **Coverage**: the share of the scored instants (before the common filter) where the
//!   estimator has an estimate.
//! - **Calibration** (estimators that give a range): the share of the common instants
//!   where the truth lies within `[low, high]`, in %; **width**: the mean of
//!   `(high - low) / truth` over them, in % (narrower is better at equal calibration).
//!
//! A weighted trace is fed to every estimator in weight (bytes, rows), as each library
//! counts bytes when told to; the truth is time either way.

use crate::eta::estimators::{Estimator, Peer};
use crate::eta::trace::Trace;

/// Evaluation instants per run.
pub const GRID: usize = 200;
/// A gap between completions at least this long (seconds) is a silence.
pub const SILENCE_S: f64 = 60.0;
/// Instants with less than this share of the working time left are not scored.
pub const TAIL: f64 = 0.05;

/// An estimator under test and its name in tables.
pub struct Contender {
    /// The name in tables.
    pub name: String,
    /// A fresh estimator, created at the start of the run.
    pub estimator: Box<dyn Estimator>,
}

impl From<Peer> for Contender {
    fn from(peer: Peer) -> Contender {
        Contender {
            name: peer.name().to_owned(),
            estimator: peer.estimator(),
        }
    }
}

/// When an estimator first had an estimate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FirstEstimate {
    /// Seconds since the start.
    pub t: f64,
    /// Units done then.
    pub done: u64,
}

/// One estimator's scores on one trace.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    /// The estimator's name.
    pub name: String,
    /// Mean absolute percentage error over the common instants, in %; `None` when no
    /// instant is common.
    pub mape: Option<f64>,
    /// Mean change of the error between consecutive common instants, in % of the time
    /// left; `None` with fewer than two common instants.
    pub jitter: Option<f64>,
    /// When the first estimate came, if ever.
    pub first: Option<FirstEstimate>,
    /// Share of the scored instants with an estimate, from 0 to 1.
    pub coverage: f64,
    /// Share of the common instants where the truth is within the range, in %; `None`
    /// for an estimator without a range.
    pub calibration: Option<f64>,
    /// Mean width of the range relative to the truth over the common instants, in %.
    pub width: Option<f64>,
}

/// All estimators' scores on one trace.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceReport {
    /// The trace's name.
    pub trace: String,
    /// Seconds from the start to the last completion.
    pub duration: f64,
    /// Instants scored (outside silences and the tail).
    pub scored: usize,
    /// Of those, instants where every estimator had an estimate.
    pub common: usize,
    /// One per contender, in the order given.
    pub scores: Vec<Score>,
}

/// An evaluation instant and the truth at it.
#[derive(Clone, Copy, Debug)]
struct Instant {
    t: f64,
    /// Working seconds left: to the last completion, less the silences ahead.
    left: f64,
}

/// The scored instants of `trace`, by the rules of this module.
fn instants(trace: &Trace) -> Vec<Instant> {
    let duration = trace.duration();
    let mut silences = Vec::new();
    let mut prev_t = 0.0;
    for c in trace.completions() {
        if c.t - prev_t >= SILENCE_S {
            silences.push((prev_t, c.t));
        }
        prev_t = c.t;
    }
    let working = duration - silences.iter().map(|(a, b)| b - a).sum::<f64>();
    (1..GRID)
        .map(|k| duration * k as f64 / GRID as f64)
        .filter(|&t| !silences.iter().any(|&(a, b)| a < t && t < b))
        .map(|t| {
            let ahead: f64 = silences
                .iter()
                .filter(|&&(a, _)| a >= t)
                .map(|(a, b)| b - a)
                .sum();
            Instant {
                t,
                left: duration - t - ahead,
            }
        })
        .filter(|i| i.left >= TAIL * working)
        .collect()
}

/// Replays `trace` through each contender and scores them on common instants.
pub fn score(trace: &Trace, contenders: Vec<Contender>) -> TraceReport {
    let instants = instants(trace);
    let total = trace.total_work();
    let mut names = Vec::new();
    let mut estimates: Vec<Vec<Option<f64>>> = Vec::new();
    let mut ranges: Vec<Vec<Option<(f64, f64)>>> = Vec::new();
    let mut firsts = Vec::new();
    for Contender {
        name,
        mut estimator,
    } in contenders
    {
        estimator.start(trace.total());
        let mut first = None;
        let mut row = Vec::with_capacity(instants.len());
        let mut range_row = Vec::with_capacity(instants.len());
        let mut next = trace.completions().iter().enumerate().peekable();
        let mut feed_until =
            |t: f64, est: &mut Box<dyn Estimator>, first: &mut Option<FirstEstimate>| {
                while let Some((idx, c)) = next.next_if(|(_, c)| c.t <= t) {
                    est.observe(c.t, c.done, trace.work_at(idx));
                    if first.is_none() && est.eta(c.t, total).is_some() {
                        *first = Some(FirstEstimate {
                            t: c.t,
                            done: c.done,
                        });
                    }
                }
            };
        for instant in &instants {
            feed_until(instant.t, &mut estimator, &mut first);
            row.push(estimator.eta(instant.t, total));
            range_row.push(estimator.range(instant.t, total));
        }
        feed_until(f64::INFINITY, &mut estimator, &mut first);
        names.push(name);
        estimates.push(row);
        ranges.push(range_row);
        firsts.push(first);
    }

    let common: Vec<usize> = (0..instants.len())
        .filter(|&k| estimates.iter().all(|row| row[k].is_some()))
        .collect();
    let scores = names
        .into_iter()
        .zip(estimates)
        .zip(ranges)
        .zip(firsts)
        .map(|(((name, row), range_row), first)| {
            let err = |k: usize| row[k].expect("common instants have estimates") - instants[k].left;
            let apes: Vec<f64> = common
                .iter()
                .map(|&k| err(k).abs() / instants[k].left)
                .collect();
            let jumps: Vec<f64> = common
                .windows(2)
                .map(|w| (err(w[1]) - err(w[0])).abs() / instants[w[1]].left)
                .collect();
            let covered = row.iter().filter(|e| e.is_some()).count();
            let in_range: Option<Vec<(bool, f64)>> = common
                .iter()
                .map(|&k| {
                    let (low, high) = range_row[k]?;
                    let left = instants[k].left;
                    Some((low <= left && left <= high, (high - low) / left))
                })
                .collect();
            let in_range = in_range.filter(|v| !v.is_empty());
            let calibration = in_range.as_ref().map(|v| {
                v.iter().filter(|(inside, _)| *inside).count() as f64 / v.len() as f64 * 100.0
            });
            let widths: Option<Vec<f64>> = in_range.map(|v| v.iter().map(|(_, w)| *w).collect());
            let width = widths.and_then(|w| mean(&w)).map(|m| m * 100.0);
            Score {
                name,
                mape: mean(&apes).map(|m| m * 100.0),
                jitter: mean(&jumps).map(|m| m * 100.0),
                first,
                coverage: if instants.is_empty() {
                    0.0
                } else {
                    covered as f64 / instants.len() as f64
                },
                calibration,
                width,
            }
        })
        .collect();
    TraceReport {
        trace: trace.name().to_owned(),
        duration: trace.duration(),
        scored: instants.len(),
        common: common.len(),
        scores,
    }
}

/// Scores `trace` with herald and the three peers.
pub fn score_peers(trace: &Trace) -> TraceReport {
    score(trace, Peer::ALL.into_iter().map(Contender::from).collect())
}

fn mean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        None
    } else {
        Some(xs.iter().sum::<f64>() / xs.len() as f64)
    }
}

/// The suite-level figures of one estimator: means over traces.
#[derive(Clone, Debug, PartialEq)]
pub struct SuiteScore {
    /// The estimator's name.
    pub name: String,
    /// Mean of the per-trace MAPE, in %.
    pub mape: f64,
    /// Mean of the per-trace jitter, in %.
    pub jitter: f64,
    /// Mean time to the first estimate, in % of each run's duration.
    pub first_pct: f64,
    /// Traces on which it has the highest MAPE of all.
    pub worst_on: Vec<String>,
    /// Mean of the per-trace calibration, in %, for an estimator with a range.
    pub calibration: Option<f64>,
    /// Mean of the per-trace range width, in %.
    pub width: Option<f64>,
}

/// Means over `reports` (which must score the same estimators in the same order);
/// traces where an estimator has no MAPE count as 100%.
pub fn suite(reports: &[TraceReport]) -> Vec<SuiteScore> {
    let Some(first) = reports.first() else {
        return Vec::new();
    };
    let n = reports.len() as f64;
    (0..first.scores.len())
        .map(|idx| {
            let of = |f: &dyn Fn(&Score) -> f64| {
                reports.iter().map(|r| f(&r.scores[idx])).sum::<f64>() / n
            };
            let worst_on = reports
                .iter()
                .filter(|r| {
                    let mine = r.scores[idx].mape.unwrap_or(100.0);
                    r.scores.len() > 1
                        && r.scores
                            .iter()
                            .enumerate()
                            .all(|(j, s)| j == idx || s.mape.unwrap_or(100.0) < mine)
                })
                .map(|r| r.trace.clone())
                .collect();
            SuiteScore {
                name: first.scores[idx].name.clone(),
                mape: of(&|s| s.mape.unwrap_or(100.0)),
                jitter: of(&|s| s.jitter.unwrap_or(0.0)),
                first_pct: reports
                    .iter()
                    .map(|r| {
                        r.scores[idx]
                            .first
                            .map_or(100.0, |f| f.t / r.duration * 100.0)
                    })
                    .sum::<f64>()
                    / n,
                worst_on,
                calibration: mean_of(reports, |r| r.scores[idx].calibration),
                width: mean_of(reports, |r| r.scores[idx].width),
            }
        })
        .collect()
}

/// The mean of `f` over `reports`, if every report has it.
fn mean_of(reports: &[TraceReport], f: impl Fn(&TraceReport) -> Option<f64>) -> Option<f64> {
    let xs: Option<Vec<f64>> = reports.iter().map(f).collect();
    xs.and_then(|xs| mean(&xs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eta::estimators::PlainAverage;
    use crate::eta::trace::Completion;

    fn steady(n: u64, gap: f64) -> Trace {
        let completions = (1..=n)
            .map(|done| Completion {
                t: done as f64 * gap,
                done,
            })
            .collect();
        Trace::new("steady", n, completions).unwrap()
    }

    /// An estimator that always says the same.
    struct Constant(f64);

    impl Estimator for Constant {
        fn observe(&mut self, _t: f64, _done: u64, _work: f64) {}
        fn eta(&self, _t: f64, _total: f64) -> Option<f64> {
            Some(self.0)
        }
    }

    fn contender(name: &str, estimator: impl Estimator + 'static) -> Contender {
        Contender {
            name: name.to_owned(),
            estimator: Box::new(estimator),
        }
    }

    #[test]
    fn the_plain_average_is_exact_on_a_steady_trace() {
        // Completions exactly every second: at any instant t the plain average says
        // (100 - floor(t)) * t / floor(t), which differs from the truth 100 - t only
        // between completions; on instants that fall on completions it is exact.
        let trace = steady(100, 1.0);
        let report = score(&trace, vec![contender("avg", PlainAverage::default())]);
        // 199 grid instants at every 0.5 s; 94.5 s are not scored (less than 5 s left).
        assert_eq!(report.scored, 190);
        assert_eq!(
            report.common, 189,
            "no estimate before the first unit at 1 s"
        );
        let s = &report.scores[0];
        assert_eq!(s.first, Some(FirstEstimate { t: 1.0, done: 1 }));
        // Off-completion instants t = k + 0.5 (k >= 1) err by (100-k)(k+0.5)/k - (99.5-k)
        // = 50/k, relative to 99.5 - k.
        let want: f64 = (1..=94)
            .map(|k| {
                let k = k as f64;
                (50.0 / k) / (99.5 - k)
            })
            .sum::<f64>()
            / 189.0
            * 100.0;
        assert!(
            (s.mape.unwrap() - want).abs() < 1e-9,
            "{:?} vs {want}",
            s.mape
        );
    }

    #[test]
    fn a_perfect_countdown_has_no_error_and_no_jitter() {
        /// Knows the truth of a 100 s run.
        struct Oracle;
        impl Estimator for Oracle {
            fn observe(&mut self, _t: f64, _done: u64, _work: f64) {}
            fn eta(&self, t: f64, _total: f64) -> Option<f64> {
                Some(100.0 - t)
            }
            fn range(&self, t: f64, _total: f64) -> Option<(f64, f64)> {
                Some((100.0 - t, 100.0 - t + 1.0))
            }
        }
        let report = score(&steady(100, 1.0), vec![contender("oracle", Oracle)]);
        let s = &report.scores[0];
        assert!(s.mape.unwrap() < 1e-9);
        assert!(s.jitter.unwrap() < 1e-9);
        assert_eq!(s.coverage, 1.0);
        // Its range [truth, truth + 1 s] always holds the truth and is 1 s wide.
        assert_eq!(s.calibration, Some(100.0));
        let want: f64 = (1..=190)
            .map(|k| 1.0 / (100.0 - k as f64 / 2.0))
            .sum::<f64>()
            / 190.0;
        assert!((s.width.unwrap() - want * 100.0).abs() < 1e-9);
    }

    #[test]
    fn a_constant_estimate_scores_its_known_error() {
        // Truth at instant k (t = k/2) is 100 - k/2; a constant 50 errs by |k/2 - 50|.
        let report = score(&steady(100, 1.0), vec![contender("fifty", Constant(50.0))]);
        let s = &report.scores[0];
        let ks = 1..=190;
        let n = ks.clone().count() as f64;
        let mape: f64 = ks
            .clone()
            .map(|k| {
                let left = 100.0 - k as f64 / 2.0;
                (50.0 - left).abs() / left
            })
            .sum::<f64>()
            / n
            * 100.0;
        // The error grows by 0.5 s per instant: jitter 0.5 / left.
        let jitter: f64 = (2..=190)
            .map(|k| 0.5 / (100.0 - k as f64 / 2.0))
            .sum::<f64>()
            / (n - 1.0)
            * 100.0;
        assert!((s.mape.unwrap() - mape).abs() < 1e-9);
        assert!((s.jitter.unwrap() - jitter).abs() < 1e-9);
    }

    #[test]
    fn silences_are_cut_out_of_the_truth() {
        // 10 units at 1 s, a gap of 101 s, 9 units at 1 s: 120 s in all, of which the
        // whole gap is silence and 19 s are work.
        let mut completions = Vec::new();
        let mut t = 0.0;
        for done in 1..=20 {
            t += if done == 11 { 101.0 } else { 1.0 };
            completions.push(Completion { t, done });
        }
        let trace = Trace::new("stall", 20, completions).unwrap();
        let all = instants(&trace);
        // Grid step 0.6 s; instants inside (10, 111) are skipped, as are those with
        // less than 0.95 s (5% of 19 s) of work left.
        assert!(all.iter().all(|i| i.t <= 10.0 || i.t >= 111.0));
        let before = all.iter().find(|i| i.t > 5.0).unwrap();
        assert!((before.left - (120.0 - before.t - 101.0)).abs() < 1e-9);
        let after = all.iter().find(|i| i.t > 111.0).unwrap();
        assert!((after.left - (120.0 - after.t)).abs() < 1e-9);
        assert!(all.iter().all(|i| i.left >= 0.95));
        assert!(all.iter().any(|i| i.left < 1.3));
    }

    #[test]
    fn worst_is_strictly_worst() {
        let trace = steady(100, 1.0);
        let report = score(
            &trace,
            vec![
                contender("exact-ish", PlainAverage::default()),
                contender("fifty", Constant(50.0)),
            ],
        );
        let suite = suite(&[report]);
        assert!(suite[0].worst_on.is_empty());
        assert_eq!(suite[1].worst_on, ["steady"]);
    }
}
