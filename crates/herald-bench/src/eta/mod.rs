//! ETA quality (BENCHMARKS.md): herald's estimator against the plain average, tqdm's
//! EMA and indicatif's estimator, replayed on synthetic and recorded traces.
//!
//! - `estimators`: the [`Estimator`] trait, herald's adapter and the peers' models.
//! - `trace`: [`Trace`], the synthetic suite and the recorded JSON Lines format.
//! - `replay`: feeding traces to estimators and the scoring rules ([`score`]).
//! - `table`: the Markdown tables of BENCHMARKS.md ([`render`], [`render_seeds`]).

mod estimators;
mod replay;
mod table;
mod trace;

pub use estimators::{Estimator, Herald, IndicatifEstimator, Peer, PlainAverage, TqdmEma};
pub use replay::{
    Contender, FirstEstimate, GRID, SILENCE_S, Score, SuiteScore, TAIL, TraceReport, score,
    score_peers, suite,
};
pub use table::{render, render_seeds};
pub use trace::{
    Completion, Trace, TraceError, read_trace, real_suite, real_suite_dir, synthetic_suite,
    synthetic_suite_seeded,
};
