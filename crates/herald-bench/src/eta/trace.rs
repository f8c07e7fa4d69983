//! Traces: when each unit of a run finished. The synthetic suite, generated from fixed
//! seeds, and the recorded format (JSON Lines, one line per completion), optionally
//! weighted (bytes, rows, tokens: the estimators then work in weight).

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};
use serde::Deserialize;

/// One point of a trace: `done` units were finished `t` seconds after the start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Completion {
    /// Seconds since the start of the run.
    pub t: f64,
    /// Units finished by then.
    pub done: u64,
}

/// A finished run: its completions in time order, the last reaching `total`.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    name: String,
    total: u64,
    completions: Vec<Completion>,
    /// For weighted work: the weight done by each completion, and in all.
    weights: Option<Weights>,
}

/// The weights of a weighted trace.
#[derive(Clone, Debug, PartialEq)]
struct Weights {
    /// Weight done at each completion, cumulative, one per completion.
    done: Vec<f64>,
    total: f64,
}

/// Why a trace was rejected.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum TraceError {
    /// A line (1-based) that is not a valid completion, or out of order.
    Line {
        /// The line number, counting from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// No completion at all.
    Empty,
    /// The weight done at the last completion is not the total weight.
    UnfinishedWeight {
        /// Weight done at the last completion.
        done: f64,
        /// The total weight.
        total: f64,
    },
    /// The last completion does not reach the total: the true time left is unknown.
    Unfinished {
        /// Units done at the last completion.
        done: u64,
        /// The total.
        total: u64,
    },
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceError::Line { line, reason } => write!(f, "line {line}: {reason}"),
            TraceError::Empty => write!(f, "the trace has no completion"),
            TraceError::UnfinishedWeight { done, total } => write!(
                f,
                "the trace ends at weight {done} of total_weight {total}; only finished runs \
                 can be scored"
            ),
            TraceError::Unfinished { done, total } => write!(
                f,
                "the trace ends at {done} of {total} units; only finished runs can be scored"
            ),
        }
    }
}

impl std::error::Error for TraceError {}

/// One line of the recorded format.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    t: f64,
    done: u64,
    total: u64,
    /// Weight of the units finished since the previous line.
    weight: Option<f64>,
    /// Weight of the whole run.
    total_weight: Option<f64>,
}

impl Trace {
    /// A trace from completions, checked as the recorded format is: times finite, not
    /// negative and not decreasing; counts increasing, at most `total`, the last one
    /// equal to it. Errors name the offending completion's 1-based position.
    pub fn new(
        name: impl Into<String>,
        total: u64,
        completions: Vec<Completion>,
    ) -> Result<Trace, TraceError> {
        let mut prev: Option<Completion> = None;
        for (idx, c) in completions.iter().enumerate() {
            check_next(prev, *c, total).map_err(|reason| TraceError::Line {
                line: idx + 1,
                reason,
            })?;
            prev = Some(*c);
        }
        let last = prev.ok_or(TraceError::Empty)?;
        if last.done != total {
            return Err(TraceError::Unfinished {
                done: last.done,
                total,
            });
        }
        Ok(Trace {
            name: name.into(),
            total,
            completions,
            weights: None,
        })
    }

    /// The same trace, weighted: `weights[k]` is the weight of the units finished by
    /// completion `k` (since the one before), `total` the run's; checked as the
    /// recorded format is (errors name the offending completion's position).
    pub fn weighted(mut self, weights: &[f64], total: f64) -> Result<Trace, TraceError> {
        if weights.len() != self.completions.len() {
            return Err(TraceError::Line {
                line: weights.len().min(self.completions.len()) + 1,
                reason: "weight is missing".to_owned(),
            });
        }
        let mut done = Vec::with_capacity(weights.len());
        let mut sum = 0.0;
        for (idx, &w) in weights.iter().enumerate() {
            sum = check_weight(w, sum, total).map_err(|reason| TraceError::Line {
                line: idx + 1,
                reason,
            })?;
            done.push(sum);
        }
        if (sum - total).abs() > 1e-9 * total.max(1.0) {
            return Err(TraceError::UnfinishedWeight { done: sum, total });
        }
        self.weights = Some(Weights { done, total });
        Ok(self)
    }

    /// Parses the recorded format: one JSON object per line,
    /// `{"t": seconds since start, "done": n, "total": N}`, in time order, with the same
    /// total on every line, and for weighted work `"weight"` (of the units finished
    /// since the previous line) and `"total_weight"` on every line; blank lines are
    /// skipped, unknown fields rejected.
    pub fn from_jsonl(name: impl Into<String>, text: &str) -> Result<Trace, TraceError> {
        let mut total: Option<(u64, usize)> = None;
        let mut total_weight: Option<(f64, usize)> = None;
        let mut weights = Vec::new();
        let mut weight_done = 0.0;
        let mut completions = Vec::new();
        let mut prev: Option<Completion> = None;
        for (idx, raw) in text.lines().enumerate() {
            let line_no = idx + 1;
            if raw.trim().is_empty() {
                continue;
            }
            let err = |reason: String| TraceError::Line {
                line: line_no,
                reason,
            };
            let line: Line = serde_json::from_str(raw).map_err(|e| err(e.to_string()))?;
            match total {
                None => total = Some((line.total, line_no)),
                Some((first, first_line)) if first != line.total => {
                    return Err(err(format!(
                        "total {} differs from {first} on line {first_line}",
                        line.total
                    )));
                }
                Some(_) => {}
            }
            let weighted = completions.is_empty() && line.weight.is_some() || !weights.is_empty();
            match (weighted, line.weight, line.total_weight) {
                (true, Some(w), Some(tw)) => {
                    match total_weight {
                        None => total_weight = Some((tw, line_no)),
                        Some((first, first_line)) if first != tw => {
                            return Err(err(format!(
                                "total_weight {tw} differs from {first} on line {first_line}"
                            )));
                        }
                        Some(_) => {}
                    }
                    weight_done = check_weight(w, weight_done, tw).map_err(err)?;
                    weights.push(w);
                }
                (true, None, _) => return Err(err("weight is missing".to_owned())),
                (true, Some(_), None) => return Err(err("total_weight is missing".to_owned())),
                (false, Some(_), _) => {
                    return Err(err("weight is given, but not on line 1".to_owned()));
                }
                (false, None, Some(_)) => {
                    return Err(err("total_weight is given without weight".to_owned()));
                }
                (false, None, None) => {}
            }
            let c = Completion {
                t: line.t,
                done: line.done,
            };
            check_next(prev, c, line.total).map_err(err)?;
            prev = Some(c);
            completions.push(c);
        }
        let (total, _) = total.ok_or(TraceError::Empty)?;
        let trace = Trace::new(name, total, completions)?;
        match total_weight {
            Some((tw, _)) => trace.weighted(&weights, tw),
            None => Ok(trace),
        }
    }

    /// The trace in the recorded format, one line per completion.
    pub fn to_jsonl(&self) -> String {
        let mut out = String::new();
        let mut prev_weight = 0.0;
        for (idx, c) in self.completions.iter().enumerate() {
            let mut line = serde_json::json!({ "t": c.t, "done": c.done, "total": self.total });
            if let Some(w) = &self.weights {
                line["weight"] = (w.done[idx] - prev_weight).into();
                line["total_weight"] = w.total.into();
                prev_weight = w.done[idx];
            }
            out.push_str(&line.to_string());
            out.push('\n');
        }
        out
    }

    /// Whether the trace is weighted.
    pub fn is_weighted(&self) -> bool {
        self.weights.is_some()
    }

    /// The same trace without its weights (counted in units).
    pub fn unweighted(&self) -> Trace {
        Trace {
            weights: None,
            ..self.clone()
        }
    }

    /// Work done at completion `idx`: its weight so far when the trace is weighted,
    /// else its units.
    pub fn work_at(&self, idx: usize) -> f64 {
        match &self.weights {
            Some(w) => w.done[idx],
            None => self.completions[idx].done as f64,
        }
    }

    /// The run's work: its total weight when the trace is weighted, else its units.
    pub fn total_work(&self) -> f64 {
        match &self.weights {
            Some(w) => w.total,
            None => self.total as f64,
        }
    }

    /// What the trace is called in tables.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Units in the run.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The completions, in time order.
    pub fn completions(&self) -> &[Completion] {
        &self.completions
    }

    /// Seconds from the start to the last completion.
    pub fn duration(&self) -> f64 {
        self.completions.last().map_or(0.0, |c| c.t)
    }
}

/// Checks one line's weight; returns the weight done with it.
fn check_weight(weight: f64, done: f64, total: f64) -> Result<f64, String> {
    if !weight.is_finite() || weight < 0.0 {
        return Err(format!(
            "weight {weight} is not a finite, non-negative number"
        ));
    }
    if !total.is_finite() || total < 0.0 {
        return Err(format!(
            "total_weight {total} is not a finite, non-negative number"
        ));
    }
    let done = done + weight;
    if done > total * (1.0 + 1e-12) {
        return Err(format!(
            "total_weight {total} is below the weight done, {done}"
        ));
    }
    Ok(done)
}

fn check_next(prev: Option<Completion>, c: Completion, total: u64) -> Result<(), String> {
    if !c.t.is_finite() || c.t < 0.0 {
        return Err(format!("t {} is not a time since the start", c.t));
    }
    if c.done > total {
        return Err(format!("done {} exceeds total {total}", c.done));
    }
    if let Some(p) = prev {
        if c.t < p.t {
            return Err(format!("t {} is before the previous line's {}", c.t, p.t));
        }
        if c.done <= p.done {
            return Err(format!(
                "done {} does not exceed the previous line's {}",
                c.done, p.done
            ));
        }
    } else if c.done == 0 {
        return Err("done 0 is not a completion".to_owned());
    }
    Ok(())
}

/// Where the real traces live: `crates/herald-bench/traces/real/`, recorded on a real
/// machine by `record.py` there.
pub fn real_suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("traces")
        .join("real")
}

/// Reads one trace file in the recorded format, named after its file stem; errors
/// name the file and the line.
pub fn read_trace(path: &Path) -> anyhow::Result<Trace> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = path.file_stem().map_or_else(
        || path.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    Trace::from_jsonl(name, &text).with_context(|| format!("{}", path.display()))
}

/// The real suite: every `*.jsonl` of [`real_suite_dir`], by name.
pub fn real_suite() -> anyhow::Result<Vec<Trace>> {
    let dir = real_suite_dir();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.retain(|p| p.extension().is_some_and(|e| e == "jsonl"));
    paths.sort();
    paths.iter().map(|p| read_trace(p)).collect()
}

/// The synthetic suite, the same on every run (fixed seeds, a portable generator).
///
/// Time scales are those of agent pipelines: seconds per unit, runs of minutes.
pub fn synthetic_suite() -> Vec<Trace> {
    synthetic_suite_seeded(0)
}

/// The synthetic suite drawn with other seeds (`synthetic_suite` is seed 0): the same
/// shapes, other random draws, to check that a result is not an accident of one draw.
pub fn synthetic_suite_seeded(seed: u64) -> Vec<Trace> {
    let seed = seed.wrapping_mul(1000);
    vec![
        steady(seed + 1),
        warm_up(seed + 2),
        slow_down(seed + 3),
        bursty(seed + 4),
        heavy_tailed(seed + 5),
        stall(seed + 6),
    ]
}

/// A synthetic trace, its times rounded to the microsecond as a recorder would write
/// them (which also makes them survive a trip through JSON exactly).
fn synthetic(name: &str, total: u64, times: impl IntoIterator<Item = f64>) -> Trace {
    let completions = times
        .into_iter()
        .zip(1..)
        .map(|(t, done)| Completion {
            t: (t * 1e6).round() / 1e6,
            done,
        })
        .collect();
    Trace::new(name, total, completions).expect("synthetic traces are well formed")
}

/// A gap drawn around `mean`, uniformly within +-30%.
fn jittered(rng: &mut ChaCha8Rng, mean: f64) -> f64 {
    mean * rng.random_range(0.7..1.3)
}

/// One unit per gap, the gaps given by `gap(rng, unit_idx)`.
fn from_gaps(
    name: &str,
    n: u64,
    seed: u64,
    mut gap: impl FnMut(&mut ChaCha8Rng, u64) -> f64,
) -> Trace {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut t = 0.0;
    let times: Vec<f64> = (0..n)
        .map(|unit_idx| {
            t += gap(&mut rng, unit_idx);
            t
        })
        .collect();
    synthetic(name, n, times)
}

/// 300 units, about 1 s each.
fn steady(seed: u64) -> Trace {
    from_gaps("steady", 300, seed, |rng, _| jittered(rng, 1.0))
}

/// 300 units, the first ones slow (4 s, as caches and connections warm up) and
/// settling to 1 s with a time constant of 30 units.
fn warm_up(seed: u64) -> Trace {
    from_gaps("warm-up", 300, seed, |rng, unit_idx| {
        jittered(rng, 1.0 + 3.0 * (-(unit_idx as f64) / 30.0).exp())
    })
}

/// 300 units at 1 s, then three times slower from unit 120 on.
fn slow_down(seed: u64) -> Trace {
    from_gaps("slow-down", 300, seed, |rng, unit_idx| {
        jittered(rng, if unit_idx < 120 { 1.0 } else { 3.0 })
    })
}

/// 400 units finishing in batches of 10 to 30, a few milliseconds apart, every 15 to
/// 35 s (a worker that flushes results in batches).
fn bursty(seed: u64) -> Trace {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = 400;
    let mut t = 0.0;
    let mut times = Vec::new();
    while times.len() < n {
        t += rng.random_range(15.0..35.0);
        let batch = rng.random_range(10..=30usize);
        for _ in 0..batch.min(n - times.len()) {
            t += rng.random_range(0.002..0.010);
            times.push(t);
        }
    }
    synthetic("bursty", n as u64, times)
}

/// 200 model calls, 4 in flight at a time, each taking a lognormal time (median 8 s,
/// sigma 1: one call in 20 takes over 40 s).
fn heavy_tailed(seed: u64) -> Trace {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = 200;
    let latency = LogNormal::new(8.0_f64.ln(), 1.0).expect("valid lognormal");
    let mut free_at = [0.0_f64; 4];
    let mut finished = Vec::with_capacity(n);
    for _ in 0..n {
        // The next call starts on the worker that frees up first.
        let (worker, start) = free_at
            .iter()
            .copied()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .expect("four workers");
        let end = start + latency.sample(&mut rng);
        free_at[worker] = end;
        finished.push(end);
    }
    finished.sort_by(f64::total_cmp);
    synthetic("heavy-tailed", n as u64, finished)
}

/// 300 units at 1 s, with a silence of 3 minutes after unit 150 (a stuck call, a
/// rate limit), then the same pace again.
fn stall(seed: u64) -> Trace {
    from_gaps("stall", 300, seed, |rng, unit_idx| {
        let gap = jittered(rng, 1.0);
        if unit_idx == 150 { gap + 180.0 } else { gap }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suite_is_deterministic_and_well_formed() {
        let a = synthetic_suite();
        let b = synthetic_suite();
        assert_eq!(a, b);
        let names: Vec<&str> = a.iter().map(Trace::name).collect();
        assert_eq!(
            names,
            [
                "steady",
                "warm-up",
                "slow-down",
                "bursty",
                "heavy-tailed",
                "stall"
            ]
        );
        for trace in &a {
            assert!((100..=500).contains(&trace.total()), "{}", trace.name());
        }
    }

    #[test]
    fn jsonl_round_trips() {
        let trace = &synthetic_suite()[0];
        let back = Trace::from_jsonl(trace.name(), &trace.to_jsonl()).unwrap();
        assert_eq!(&back, trace);
    }

    #[track_caller]
    fn check_err(text: &str, want: &str) {
        let err = Trace::from_jsonl("t", text).unwrap_err();
        assert_eq!(err.to_string(), want);
    }

    #[test]
    fn bad_lines_are_named() {
        check_err(
            "{\"t\":1,\"done\":1,\"total\":3}\n{\"t\":2,\"total\":3}\n",
            "line 2: missing field `done` at line 1 column 17",
        );
        check_err(
            "{\"t\":1,\"done\":1,\"total\":3}\n\n{\"t\":0.5,\"done\":2,\"total\":3}\n",
            "line 3: t 0.5 is before the previous line's 1",
        );
        check_err(
            "{\"t\":1,\"done\":2,\"total\":3}\n{\"t\":2,\"done\":2,\"total\":3}\n",
            "line 2: done 2 does not exceed the previous line's 2",
        );
        check_err(
            "{\"t\":1,\"done\":1,\"total\":3}\n{\"t\":2,\"done\":2,\"total\":4}\n",
            "line 2: total 4 differs from 3 on line 1",
        );
        check_err(
            "{\"t\":1,\"done\":1,\"total\":3}\n",
            "the trace ends at 1 of 3 units; only finished runs can be scored",
        );
        check_err("\n", "the trace has no completion");
        check_err(
            "{\"t\":1,\"done\":1,\"total\":3,\"wieght\":2}\n",
            "line 1: unknown field `wieght`, expected one of `t`, `done`, `total`, `weight`, `total_weight` at line 1 column 34",
        );
    }

    fn weighted(lines: &[(f64, u64, &str, &str)]) -> String {
        lines
            .iter()
            .map(|(t, done, w, tw)| {
                format!(
                    "{{\"t\":{t},\"done\":{done},\"total\":2,\"weight\":{w},\"total_weight\":{tw}}}\n"
                )
            })
            .collect()
    }

    #[test]
    fn weighted_traces_parse_and_round_trip() {
        let text = weighted(&[(1.0, 1, "300", "1000"), (2.0, 2, "700", "1000")]);
        let trace = Trace::from_jsonl("w", &text).unwrap();
        assert!(trace.is_weighted());
        assert_eq!(trace.work_at(0), 300.0);
        assert_eq!(trace.work_at(1), 1000.0);
        assert_eq!(trace.total_work(), 1000.0);
        assert_eq!(Trace::from_jsonl("w", &trace.to_jsonl()).unwrap(), trace);
        let counted = trace.unweighted();
        assert_eq!(counted.work_at(1), 2.0);
        assert_eq!(counted.total_work(), 2.0);
    }

    #[test]
    fn bad_weights_are_named() {
        check_err(
            &weighted(&[(1.0, 1, "-1", "10"), (2.0, 2, "11", "10")]),
            "line 1: weight -1 is not a finite, non-negative number",
        );
        check_err(
            &weighted(&[(1.0, 1, "1e400", "10")]),
            "line 1: number out of range at line 1 column 40",
        );
        check_err(
            &weighted(&[(1.0, 1, "6", "10"), (2.0, 2, "6", "10")]),
            "line 2: total_weight 10 is below the weight done, 12",
        );
        check_err(
            &weighted(&[(1.0, 1, "6", "-10")]),
            "line 1: total_weight -10 is not a finite, non-negative number",
        );
        check_err(
            &weighted(&[(1.0, 1, "6", "10"), (2.0, 2, "4", "12")]),
            "line 2: total_weight 12 differs from 10 on line 1",
        );
        check_err(
            &weighted(&[(1.0, 1, "6", "10"), (2.0, 2, "3", "10")]),
            "the trace ends at weight 9 of total_weight 10; only finished runs can be scored",
        );
        check_err(
            "{\"t\":1,\"done\":1,\"total\":2,\"weight\":1,\"total_weight\":2}\n{\"t\":2,\"done\":2,\"total\":2}\n",
            "line 2: weight is missing",
        );
        check_err(
            "{\"t\":1,\"done\":1,\"total\":2,\"weight\":1}\n",
            "line 1: total_weight is missing",
        );
        check_err(
            "{\"t\":1,\"done\":1,\"total\":2}\n{\"t\":2,\"done\":2,\"total\":2,\"weight\":1,\"total_weight\":2}\n",
            "line 2: weight is given, but not on line 1",
        );
        let trace = Trace::from_jsonl("t", "{\"t\":1,\"done\":1,\"total\":1}\n").unwrap();
        assert_eq!(
            trace
                .clone()
                .weighted(&[f64::NAN], 1.0)
                .unwrap_err()
                .to_string(),
            "line 1: weight NaN is not a finite, non-negative number"
        );
        assert_eq!(
            trace.weighted(&[], 1.0).unwrap_err().to_string(),
            "line 1: weight is missing"
        );
    }
}
