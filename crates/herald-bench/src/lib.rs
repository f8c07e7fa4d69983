//! herald's benchmarks and load generators: the code behind every figure in
//! BENCHMARKS.md, each measured side by side with the peer it is compared to.
//! Peers' algorithms are modelled here so that the crates we ship never
//! carry them; binaries in `src/bin` print the tables.
//!
//! # Layout
//!
//! - [`eta`]: ETA quality on traces — the estimators (herald's and models of the plain
//!   average, tqdm's and indicatif's), the synthetic and recorded traces, the replay
//!   and its scoring rules, and the tables of `eta-replay`.
//! - [`hub`]: the hub under load — ingest against a bare SQLite insert loop,
//!   publish-to-subscriber latency with many SSE subscribers, memory per idle stream;
//!   the tables of `hub-load`.
//! - [`sdk_cost`]: what a hub sink costs the program's work loop, with the hub up,
//!   with it down and without one; the tables of `sdk-hub-cost`.
//! - [`cancel`]: how soon a program that reports nothing hears a cancel made through
//!   the hub; the table of `cancel-latency`.

#![deny(missing_docs)]

pub mod cancel;
pub mod eta;
pub mod hub;
pub mod sdk_cost;
