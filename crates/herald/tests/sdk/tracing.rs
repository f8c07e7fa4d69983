//! The `tracing` layer, driven by real `#[instrument]`ed functions into the memory
//! sink: marked spans become a run's stages, items and tool calls, events become its
//! logs, unmarked spans are passed through, across threads and `.await`s.

use herald::MemorySink;
use std::sync::{Arc, OnceLock};

use herald::protocol::{Event, EventBody, RunState, RunStatus};
use herald::tracing::SpanExt;
use serde_json::{Value, json};
use tracing::instrument::WithSubscriber;
use tracing::{Instrument, debug, error, info, info_span, instrument, trace, warn};
use tracing_subscriber::prelude::*;

use crate::util::{only_state, recorder};

/// Runs `f` with the herald layer as the thread's subscriber, and returns the record
/// once every event reported has reached it.
fn traced<R>(f: impl FnOnce() -> R) -> (R, MemorySink) {
    let (progress, sink) = recorder();
    let subscriber = tracing_subscriber::registry().with(herald::tracing::layer(&progress));
    let result = tracing::subscriber::with_default(subscriber, f);
    progress.flush();
    (result, sink)
}

/// The milestones the sink saw, as JSON without the envelope and the timings that vary
/// (`progress` and `heartbeat` ticks depend on timing and are left out).
fn milestones(sink: &MemorySink) -> Vec<Value> {
    sink.events()
        .iter()
        .filter(|e| !matches!(e.body, EventBody::Progress(_) | EventBody::Heartbeat(_)))
        .map(bare)
        .collect()
}

fn bare(event: &Event) -> Value {
    let mut value = serde_json::to_value(event).unwrap();
    let object = value.as_object_mut().unwrap();
    for key in ["v", "run", "seq", "ts", "elapsed_s"] {
        object.remove(key);
    }
    value
}

#[instrument(fields(herald = "run", total = 1))]
fn job(fail_at: u64) {
    fetch(fail_at);
}

#[instrument(fields(herald = "stage", total = 3, unit = "docs"))]
fn fetch(fail_at: u64) {
    for id in 1..=3 {
        let _ = fetch_one(id, fail_at);
    }
}

#[instrument(fields(herald = "item"), err)]
fn fetch_one(id: u64, fail_at: u64) -> Result<(), String> {
    if id == fail_at {
        return Err(format!("document {id} is gone"));
    }
    Ok(())
}

#[test]
fn instrumented_functions_report_a_run_a_stage_with_its_total_and_each_item() {
    let ((), sink) = traced(|| job(2));
    assert_eq!(
        milestones(&sink),
        [
            json!({"event": "run.started", "name": "job", "total_steps": 1}),
            json!({"event": "stage.started", "stage": "fetch", "total": 3, "unit": "docs"}),
            json!({"event": "item.started", "item": "1", "stage": "fetch"}),
            json!({"event": "item.finished", "item": "1", "stage": "fetch", "status": "succeeded"}),
            json!({"event": "item.started", "item": "2", "stage": "fetch"}),
            // `#[instrument(err)]` logs the error inside the item's span, which fails it.
            json!({"event": "log", "level": "error", "message": "error=document 2 is gone"}),
            json!({"event": "item.finished", "item": "2", "stage": "fetch", "status": "failed",
                   "error": "document 2 is gone"}),
            json!({"event": "item.started", "item": "3", "stage": "fetch"}),
            json!({"event": "item.finished", "item": "3", "stage": "fetch", "status": "succeeded"}),
            json!({"event": "stage.finished", "stage": "fetch", "status": "succeeded"}),
            json!({"event": "run.finished", "status": "succeeded"}),
        ]
    );
    let state = only_state(&sink);
    assert_eq!(state.status, RunStatus::Succeeded);
    assert_eq!(state.items.succeeded, 2);
    assert_eq!(state.items.failed, 1);
    assert_eq!(state.stages[0].progress.done, 3);
    assert_eq!(state.stages[0].progress.unit.as_deref(), Some("docs"));
}

#[instrument(fields(herald = "run"), err)]
fn failing_job() -> Result<(), String> {
    failing_stage()
}

#[instrument(fields(herald = "stage", error = tracing::field::Empty))]
fn failing_stage() -> Result<(), String> {
    labeled("alpha");
    tracing::Span::current().record("error", "the source went away");
    Err("the source went away".to_owned())
}

#[instrument(fields(herald = "item", item = %name, label = "the first one"))]
fn labeled(name: &str) {}

#[test]
fn a_recorded_error_fails_a_stage_and_an_err_fails_the_run() {
    let (result, sink) = traced(failing_job);
    assert!(result.is_err());
    assert_eq!(
        milestones(&sink),
        [
            json!({"event": "run.started", "name": "failing_job"}),
            json!({"event": "stage.started", "stage": "failing_stage"}),
            json!({"event": "item.started", "item": "alpha", "stage": "failing_stage",
                   "label": "the first one"}),
            json!({"event": "item.finished", "item": "alpha", "stage": "failing_stage",
                   "status": "succeeded"}),
            json!({"event": "stage.finished", "stage": "failing_stage", "status": "failed",
                   "error": "the source went away"}),
            json!({"event": "log", "level": "error", "message": "error=the source went away"}),
            json!({"event": "run.finished", "status": "failed", "error": "the source went away"}),
        ]
    );
}

#[instrument(fields(herald = "run"))]
fn agent() {
    let _ = search("rust tracing");
    let _ = broken();
}

#[instrument(
    fields(
        herald = "tool",
        input = r#"{"query":"rust tracing"}"#,
        output,
        call_id = "toolu_1"
    ),
    ret
)]
fn search(query: &str) -> usize {
    tracing::Span::current().record("output", 3);
    3
}

#[instrument(fields(herald = "tool", tool = "fetch_page", input = "not json"), err)]
fn broken() -> Result<(), String> {
    Err("HTTP 503".to_owned())
}

#[test]
fn tool_spans_report_tool_calls_with_input_output_and_failure() {
    let ((), sink) = traced(agent);
    assert_eq!(
        milestones(&sink),
        [
            json!({"event": "run.started", "name": "agent"}),
            json!({"event": "tool.started", "call_id": "toolu_1", "tool": "search",
                   "input": {"query": "rust tracing"}}),
            // `ret` logs the return value at INFO, inside the tool's span.
            json!({"event": "log", "level": "info", "message": "return=3"}),
            json!({"event": "tool.finished", "call_id": "toolu_1", "tool": "search",
                   "status": "succeeded", "output": 3}),
            json!({"event": "tool.started", "call_id": "tool-1", "tool": "fetch_page",
                   "input": "not json"}),
            json!({"event": "log", "level": "error", "message": "error=HTTP 503"}),
            json!({"event": "tool.finished", "call_id": "tool-1", "tool": "fetch_page",
                   "status": "failed", "error": "HTTP 503"}),
            json!({"event": "run.finished", "status": "succeeded"}),
        ]
    );
}

#[instrument(fields(herald = "run"))]
fn chatty() {
    trace!("tracing");
    debug!(attempt = 2, "debugging");
    info!(docs = 3, path = "/tmp/a b", "reading");
    let unmarked = info_span!("unmarked", depth = 1);
    unmarked.in_scope(|| warn!(ok = false, "slow disk"));
}

#[test]
fn events_in_a_run_become_logs_with_their_level_mapped_and_fields_formatted() {
    let ((), sink) = traced(|| {
        info!("before any run: nowhere to go");
        chatty();
        // A run is open (its span entered once, not closed): an event outside its span
        // still belongs to it.
        let run = info_span!("outer", herald = "run");
        run.in_scope(|| {});
        error!(code = 7, "outside the run's span");
        drop(run);
    });
    let logs: Vec<Value> = milestones(&sink)
        .into_iter()
        .filter(|e| e["event"] == "log")
        .collect();
    assert_eq!(
        logs,
        [
            json!({"event": "log", "level": "debug", "message": "tracing"}),
            json!({"event": "log", "level": "debug", "message": "debugging attempt=2"}),
            json!({"event": "log", "level": "info", "message": "reading docs=3 path=/tmp/a b"}),
            json!({"event": "log", "level": "warn", "message": "slow disk ok=false"}),
            json!({"event": "log", "level": "error", "message": "outside the run's span code=7"}),
        ]
    );
    let states = sink.states();
    assert_eq!(states.len(), 2);
    // An error outside any marked span fails nothing.
    assert_eq!(states[1].status, RunStatus::Succeeded);
}

#[instrument(fields(herald = "stage", total = 10, done = tracing::field::Empty))]
fn counted() {
    info!(herald.inc = 4);
    tracing::Span::current().record("done", 7);
    // Ticks reach the stage from unmarked spans below it too.
    info_span!("batch").in_scope(|| info!(herald.inc = 2));
    tracing::Span::current().record("total", 12);
}

#[test]
fn ticks_come_from_herald_inc_events_and_recorded_done_and_total() {
    let ((), sink) = traced(|| {
        info_span!("counting", herald = "run").in_scope(counted);
    });
    // A tick is not a log line.
    assert_eq!(
        milestones(&sink),
        [
            json!({"event": "run.started", "name": "counting"}),
            json!({"event": "stage.started", "stage": "counted", "total": 10}),
            json!({"event": "stage.finished", "stage": "counted", "status": "succeeded"}),
            json!({"event": "run.finished", "status": "succeeded"}),
        ]
    );
    // The last count goes out before `stage.finished` (which then counts the stage
    // complete): 4, set to 7, then 2 more, out of a total grown to 12.
    let last = sink
        .events()
        .into_iter()
        .filter_map(|e| match e.body {
            EventBody::Progress(p) => Some((p.done, p.total)),
            _ => None,
        })
        .next_back();
    assert_eq!(last, Some((9, Some(12))));
    assert_eq!(only_state(&sink).stages[0].progress.total, Some(12));
}

#[test]
fn unmarked_spans_are_passed_through_and_marked_ones_outside_a_run_ignored() {
    let ((), sink) = traced(|| {
        // No run open: a stage and its item have nowhere to go.
        fetch(0);
        let run = info_span!("job", herald = "run");
        run.in_scope(|| {
            info_span!("setup", stage = "not a mark").in_scope(|| {
                info_span!("inner", herald = "stage").in_scope(|| {
                    info_span!("loop").in_scope(|| {
                        let _ = fetch_one(5, 0);
                    });
                });
            });
            // A mark that names nothing herald knows is an unmarked span.
            info_span!("odd", herald = "pipeline").in_scope(|| {});
        });
    });
    assert_eq!(
        milestones(&sink),
        [
            json!({"event": "run.started", "name": "job"}),
            json!({"event": "stage.started", "stage": "inner"}),
            json!({"event": "item.started", "item": "5", "stage": "inner"}),
            json!({"event": "item.finished", "item": "5", "stage": "inner", "status": "succeeded"}),
            json!({"event": "stage.finished", "stage": "inner", "status": "succeeded"}),
            json!({"event": "run.finished", "status": "succeeded"}),
        ]
    );
}

#[instrument(fields(herald = "item"))]
fn work(id: u64) {
    info!(herald.inc = 0, thread = id, "working");
}

#[test]
fn items_on_other_threads_belong_to_the_stage_they_were_entered_in() {
    let ((), sink) = traced(|| {
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        let run = info_span!("parallel", herald = "run");
        let _run = run.enter();
        let stage = info_span!("work", herald = "stage", total = 4);
        let _stage = stage.enter();
        std::thread::scope(|scope| {
            for id in 1..=4 {
                let (dispatch, stage) = (dispatch.clone(), stage.clone());
                scope.spawn(move || {
                    tracing::dispatcher::with_default(&dispatch, || stage.in_scope(|| work(id)))
                });
            }
        });
    });
    let events = milestones(&sink);
    let mut finished: Vec<String> = events
        .iter()
        .filter(|e| e["event"] == "item.finished")
        .inspect(|e| {
            assert_eq!(
                (&e["stage"], &e["status"]),
                (&json!("work"), &json!("succeeded"))
            )
        })
        .map(|e| e["item"].as_str().unwrap().to_owned())
        .collect();
    finished.sort();
    assert_eq!(finished, ["1", "2", "3", "4"]);
    assert_eq!(events.iter().filter(|e| e["event"] == "log").count(), 4);
    let state = only_state(&sink);
    assert_eq!(state.status, RunStatus::Succeeded);
    assert_eq!(state.stages[0].progress.done, 4);
}

#[instrument(fields(herald = "run"))]
async fn crawl() {
    let stage = info_span!("pages", herald = "stage", total = 3);
    let tasks: Vec<_> = (1..=3)
        .map(|id| tokio::spawn(page(id).instrument(stage.clone()).with_current_subscriber()))
        .collect();
    for task in tasks {
        let _ = task.await.unwrap();
    }
    drop(stage);
}

#[instrument(fields(herald = "item"), err)]
async fn page(id: u64) -> Result<(), String> {
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    info!("fetched");
    tokio::task::yield_now().await;
    if id == 3 {
        Err("timed out".to_owned())
    } else {
        Ok(())
    }
}

#[test]
fn async_spans_across_awaits_on_a_multi_thread_runtime() {
    let ((), sink) = traced(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        runtime.block_on(crawl());
    });
    let events = milestones(&sink);
    assert_eq!(
        events.first(),
        Some(&json!({"event": "run.started", "name": "crawl"}))
    );
    assert_eq!(
        events[1],
        json!({"event": "stage.started", "stage": "pages", "total": 3})
    );
    let mut items: Vec<Value> = events
        .iter()
        .filter(|e| e["event"] == "item.finished")
        .cloned()
        .collect();
    items.sort_by_key(|e| e["item"].as_str().unwrap().to_owned());
    assert_eq!(
        items,
        [
            json!({"event": "item.finished", "item": "1", "stage": "pages", "status": "succeeded"}),
            json!({"event": "item.finished", "item": "2", "stage": "pages", "status": "succeeded"}),
            json!({"event": "item.finished", "item": "3", "stage": "pages", "status": "failed",
                   "error": "timed out"}),
        ]
    );
    assert_eq!(
        events[events.len() - 2..],
        [
            json!({"event": "stage.finished", "stage": "pages", "status": "succeeded"}),
            json!({"event": "run.finished", "status": "succeeded"}),
        ]
    );
    // Each item logged once inside its span, on whichever worker polled it.
    let logs = events.iter().filter(|e| e["message"] == "fetched").count();
    assert_eq!(logs, 3);
}

#[test]
fn items_without_an_id_are_numbered_in_their_stage() {
    let ((), sink) = traced(|| {
        let run = info_span!("numbered", herald = "run");
        let _run = run.enter();
        let stage = info_span!("pages", herald = "stage");
        let _stage = stage.enter();
        for _ in 0..2 {
            info_span!("page", herald = "item").in_scope(|| {});
        }
    });
    let ids: Vec<Value> = milestones(&sink)
        .into_iter()
        .filter(|e| e["event"] == "item.started")
        .map(|e| e["item"].clone())
        .collect();
    assert_eq!(ids, [json!("1"), json!("2")]);
}

#[instrument(fields(herald = "stage", total = 5))]
fn crunched() {
    // Below the filter in front of the layer: this tick is never seen.
    tracing::trace!(herald.inc = 100);
    let stage = info_span!("inner").in_scope(|| tracing::Span::current().herald_stage());
    let stage = stage.expect("a stage span is above");
    assert_eq!(stage.name(), "crunched");
    for _ in 0..5 {
        stage.inc(1);
    }
    let run = tracing::Span::current()
        .herald_run()
        .expect("a run is above");
    run.custom("checkpoint", serde_json::Map::new())
        .expect("a custom event name");
}

#[test]
fn a_span_gives_its_stage_and_run_handles_whatever_filter_stands_in_front() {
    let (progress, sink) = recorder();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .with(herald::tracing::layer(&progress));
    tracing::subscriber::with_default(subscriber, || {
        info_span!("filtered", herald = "run").in_scope(crunched);
        // Outside any herald span, and with no run open, there is nothing to give.
        assert!(tracing::Span::current().herald_stage().is_none());
        assert!(tracing::Span::current().herald_run().is_none());
    });
    progress.flush();
    // Without the layer there is nothing either.
    let span = info_span!("no subscriber", herald = "stage");
    assert!(span.herald_stage().is_none());

    assert_eq!(
        milestones(&sink),
        [
            json!({"event": "run.started", "name": "filtered"}),
            json!({"event": "stage.started", "stage": "crunched", "total": 5}),
            json!({"event": "custom.checkpoint"}),
            json!({"event": "stage.finished", "stage": "crunched", "status": "succeeded"}),
            json!({"event": "run.finished", "status": "succeeded"}),
        ]
    );
    let last = sink
        .events()
        .into_iter()
        .filter_map(|e| match e.body {
            EventBody::Progress(p) => Some(p.done),
            _ => None,
        })
        .next_back();
    assert_eq!(last, Some(5));
}

#[test]
fn a_span_entered_by_many_threads_at_once_starts_once() {
    let threads = 8;
    let ((), sink) = traced(|| {
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        let run = info_span!("race", herald = "run");
        let _run = run.enter();
        for round in 0..100 {
            // A fresh stage span each round, first entered by every thread together.
            let stage = info_span!("contended", herald = "stage", round);
            let barrier = std::sync::Barrier::new(threads);
            std::thread::scope(|scope| {
                for _ in 0..threads {
                    let (dispatch, stage, barrier) = (dispatch.clone(), stage.clone(), &barrier);
                    scope.spawn(move || {
                        tracing::dispatcher::with_default(&dispatch, || {
                            barrier.wait();
                            stage.in_scope(|| {});
                        })
                    });
                }
            });
        }
    });
    let events = milestones(&sink);
    let count = |kind: &str| events.iter().filter(|e| e["event"] == kind).count();
    assert_eq!(
        (count("stage.started"), count("stage.finished")),
        (100, 100)
    );
    assert!(
        events
            .iter()
            .filter(|e| e["event"] == "stage.finished")
            .all(|e| e["status"] == "succeeded"),
        "{events:?}"
    );
}

/// A sink that, like the hub sink's HTTP client under `tracing-log`, emits a `tracing`
/// event on herald's own thread for every event it delivers, through the program's
/// dispatch (set once the reporter, which the dispatch's layer needs, exists).
struct Chatty {
    dispatch: Arc<OnceLock<tracing::Dispatch>>,
    record: MemorySink,
}

impl herald::Sink for Chatty {
    fn event(&mut self, event: &Event, state: &RunState) -> std::io::Result<()> {
        if let Some(dispatch) = self.dispatch.get() {
            tracing::dispatcher::with_default(dispatch, || {
                debug!("delivered {}", event.event_type());
            });
        }
        herald::Sink::event(&mut self.record, event, state)
    }
}

#[test]
fn events_from_heralds_own_threads_are_not_reported_back() {
    let (record, slot) = (MemorySink::new(), Arc::new(OnceLock::new()));
    let progress = herald::Progress::new([herald::Target::sink(Chatty {
        dispatch: slot.clone(),
        record: record.clone(),
    })]);
    let layer = herald::tracing::layer(&progress);
    let dispatch = slot.get_or_init(|| tracing_subscriber::registry().with(layer).into());
    tracing::dispatcher::with_default(dispatch, || {
        info_span!("quiet", herald = "run").in_scope(|| {
            info!("from the program");
            // Once the sink has delivered these, any event it logged was reported (or
            // not); twice, so that a reported one would be delivered too.
            progress.flush();
            progress.flush();
        });
    });
    progress.flush();
    let logs: Vec<Value> = milestones(&record)
        .into_iter()
        .filter(|e| e["event"] == "log")
        .map(|e| e["message"].clone())
        .take(3)
        .collect();
    assert_eq!(logs, [json!("from the program")]);
}

#[test]
fn a_stage_without_a_run_above_joins_the_run_started_last_still_open() {
    let ((), sink) = traced(|| {
        let first = info_span!("first", herald = "run");
        first.in_scope(|| {});
        let second = info_span!("second", herald = "run");
        second.in_scope(|| {});
        // A thread that did not inherit any span, as a task spawned without its span.
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        std::thread::scope(|scope| {
            scope.spawn(|| tracing::dispatcher::with_default(&dispatch, || fetch(0)));
        });
        drop(second);
        drop(first);
    });
    let states = sink.states();
    assert_eq!(
        states.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["first", "second"]
    );
    assert!(states[0].stages.is_empty());
    assert_eq!(states[1].stages[0].name, "fetch");
    assert_eq!(states[1].items.succeeded, 3);
}
