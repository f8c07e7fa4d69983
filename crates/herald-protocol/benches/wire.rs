//! What a hub pays per event on the wire: parsing a batch of 100 producer drafts
//! (`parse_batch`, as `POST /v1/runs/{id}/events` does) and writing each stored event
//! once (`Event::to_json`). Both are throughput in events, so criterion's time per
//! iteration over 100 reads as the cost of one event; the figures live in
//! BENCHMARKS.md ("Hub at scale").
//!
//! The drafts are `hub-load`'s ingest drafts (`progress`, about 200 bytes stored) and,
//! beside them, `tool.started` drafts with a nested `input`, which exercise the
//! walk over nested values.
//!
//! Run: `cargo bench -p herald-protocol --bench wire`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use herald_protocol::{BatchFormat, RunId, Timestamp, parse_batch};

/// Events per batch, as `hub-load` posts them.
const BATCH: usize = 100;

fn progress_batch() -> String {
    let drafts: Vec<String> = (1..=BATCH)
        .map(|i| {
            format!(
                r#"{{"event":"progress","ts":"2026-11-22T10:00:00.{i:06}Z","stage":"embed","done":{i},"total":{BATCH},"unit":"docs","elapsed_s":{:.3}}}"#,
                i as f64 * 0.001
            )
        })
        .collect();
    format!("[{}]", drafts.join(","))
}

fn tool_batch() -> String {
    let drafts: Vec<String> = (1..=BATCH)
        .map(|i| {
            format!(
                r#"{{"event":"tool.started","ts":"2026-11-22T10:00:00.{i:06}Z","id":"s:{i}","call_id":"c{i}","tool":"search","input":{{"query":"rust json {i}","filters":{{"lang":["en","de"],"max":10}}}}}}"#
            )
        })
        .collect();
    format!("[{}]", drafts.join(","))
}

fn wire(c: &mut Criterion) {
    let run = RunId::new("bench-run").expect("a run id");
    let now = Timestamp::from_unix_micros(1_800_000_000_000_000);
    let mut group = c.benchmark_group("wire");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, body) in [
        ("progress", progress_batch()),
        ("tool.started", tool_batch()),
    ] {
        group.bench_function(format!("parse_batch/{name}"), |b| {
            b.iter(|| parse_batch(black_box(&body), BatchFormat::JsonArray, &run).expect("valid"))
        });
        let events: Vec<_> = parse_batch(&body, BatchFormat::JsonArray, &run)
            .expect("valid")
            .into_iter()
            .zip(1..)
            .map(|(draft, seq)| draft.stamp(run.clone(), seq, now))
            .collect();
        group.bench_function(format!("to_json/{name}"), |b| {
            b.iter(|| {
                for event in black_box(&events) {
                    black_box(event.to_json());
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, wire);
criterion_main!(benches);
