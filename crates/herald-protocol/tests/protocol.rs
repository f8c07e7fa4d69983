//! Integration tests of the protocol crate, one binary (as ripgrep's `tests/tests.rs`).
//!
//! # Layout
//!
//! - `util`: a fixed clock, run ids, and scripts of events written as JSON.
//! - `wire`: every event type serializes to the exact JSON of docs/protocol.md#events and back.
//! - `bad_input`: what the parser rejects, with the index, field and code it names.
//! - `reducer`: `fold` and `RunState::at` on hand-written runs (docs/protocol.md#run-state).
//! - `props`: property tests over generated valid event streams.
//! - `fuzz`: hostile input of every kind through every parser, as property tests.
//! - `corpus`: the seed inputs of `tests/corpus/`, each with its expected outcome.
//! - `patterns`: type patterns parse exactly their grammar and match what they should.

#[path = "protocol/util.rs"]
mod util;

#[path = "protocol/bad_input.rs"]
mod bad_input;
#[path = "protocol/corpus.rs"]
mod corpus;
#[path = "protocol/eta_range.rs"]
mod eta_range;
#[path = "protocol/fuzz.rs"]
mod fuzz;
#[path = "protocol/patterns.rs"]
mod patterns;
#[path = "protocol/props.rs"]
mod props;
#[path = "protocol/reducer.rs"]
mod reducer;
#[path = "protocol/wire.rs"]
mod wire;
