//! What the `tracing` layer adds on the caller's thread: an item span, a log event and
//! a tick, each measured with the herald layer and with the bare registry it sits on,
//! in one run; the figures live in `BENCHMARKS.md`.
//!
//! Every iteration runs inside an entered run span and stage span, as a program's loop
//! does. The herald variants report as JSON Lines to `io::sink()`: the caller builds
//! and queues each event, and the background thread serializes it to nothing.
//!
//! Run: `cargo bench -p herald --features tracing --bench tracing`.

use std::hint::black_box;
use std::io;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use herald::tracing::SpanExt;
use herald::{Progress, Target};
use tracing::{Dispatch, info, info_span, instrument};
use tracing_subscriber::prelude::*;

#[instrument(fields(herald = "item"))]
fn item(id: u64) -> u64 {
    black_box(id)
}

/// Runs `bench` with `dispatch` as the subscriber, inside a run span and a stage span.
fn within_stage(dispatch: &Dispatch, bench: impl FnOnce()) {
    tracing::dispatcher::with_default(dispatch, || {
        let run = info_span!("bench", herald = "run");
        let _run = run.enter();
        let stage = info_span!("loop", herald = "stage");
        let _stage = stage.enter();
        bench();
    });
}

fn layer(c: &mut Criterion) {
    let progress = Progress::new([Target::json_writer(io::sink())]);
    let subscribers = [
        ("registry", Dispatch::new(tracing_subscriber::registry())),
        (
            "herald",
            Dispatch::new(tracing_subscriber::registry().with(herald::tracing::layer(&progress))),
        ),
    ];
    let mut group = c.benchmark_group("tracing");
    for (name, dispatch) in &subscribers {
        within_stage(dispatch, || {
            let mut id = 0;
            group.bench_function(format!("item_span/{name}"), |b| {
                b.iter(|| {
                    id += 1;
                    item(id)
                })
            });
            group.bench_function(format!("log_event/{name}"), |b| {
                b.iter(|| info!(n = black_box(7), "a line"))
            });
            group.bench_function(format!("inc_event/{name}"), |b| {
                b.iter(|| info!(herald.inc = black_box(1)))
            });
        });
    }
    // The handle a span gives counts with one atomic add, the SDK's own tick.
    within_stage(&subscribers[1].1, || {
        let stage = tracing::Span::current()
            .herald_stage()
            .expect("a stage span");
        group.bench_function("span_ext_inc/herald", |b| {
            b.iter(|| stage.inc(black_box(1)))
        });
    });
    group.finish();
    let stats = progress.stats();
    println!("queue refusals over the run: {stats:?}");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = layer
}
criterion_main!(benches);
