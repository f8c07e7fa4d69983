//! The handles' guarantees: guards report `failed` when dropped unfinished, iterator
//! adapters report items, and every event reaches the sink in order.

use herald::protocol::{EventBody, RunStatus, StageStatus, StepOutcome, ToolOutcome};
use herald::{LlmUsage, RunOptions};
use serde_json::json;

use crate::util::{milestones, only_state, recorder};

#[test]
fn a_successful_run_reports_every_milestone_in_order() {
    let (progress, sink) = recorder();
    let run = progress.run("job");
    let fetch = run.stage("fetch").total(3).unit("docs");
    for _ in fetch.iter(["a", "b", "c"]) {}
    fetch.finish();
    run.finish_with(&json!({"fetched": 3}));
    drop(progress);

    let events = sink.events();
    assert_eq!(
        milestones(&events),
        [
            "run.started",
            "stage.started",
            "item.started",
            "item.finished",
            "item.started",
            "item.finished",
            "item.started",
            "item.finished",
            "stage.finished",
            "run.finished",
        ]
    );
    // seq is dense from 1 on the stream the sink saw.
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());

    let state = only_state(&sink);
    assert_eq!(state.status, RunStatus::Succeeded);
    assert_eq!(state.items.succeeded, 3);
    assert_eq!(state.stages[0].progress.done, 3);
    assert_eq!(state.stages[0].progress.total, Some(3));
    assert_eq!(state.stages[0].progress.unit.as_deref(), Some("docs"));
    assert_eq!(state.result, Some(json!({"fetched": 3})));
}

fn fallible(stage: &herald::Stage, fail_at: usize) -> Result<(), String> {
    for (i, _) in stage.iter(0..5).enumerate() {
        if i == fail_at {
            return Err(format!("item {i} broke"));
        }
    }
    Ok(())
}

#[test]
fn an_early_return_reports_the_item_then_the_stage_then_the_run_failed() {
    let (progress, sink) = recorder();
    {
        let run = progress.run("job");
        let stage = run.stage("work").total(5);
        let res = fallible(&stage, 2);
        assert!(res.is_err());
        // The stage and the run are dropped here without being finished.
    }
    drop(progress);

    let events = sink.events();
    let failed_item = events
        .iter()
        .find_map(|e| match &e.body {
            EventBody::ItemFinished(f) if f.status == StepOutcome::Failed => Some(f.clone()),
            _ => None,
        })
        .expect("a failed item");
    assert_eq!(failed_item.item, "3");
    assert!(
        failed_item
            .error
            .unwrap()
            .contains("dropped without finishing")
    );

    let state = only_state(&sink);
    assert_eq!(state.status, RunStatus::Failed);
    assert_eq!(state.items.succeeded, 2);
    assert_eq!(state.items.failed, 1);
    assert_eq!(state.stages[0].status, StageStatus::Failed);
    assert!(
        state
            .last_error
            .unwrap()
            .message
            .contains("dropped without finishing")
    );
}

#[test]
fn a_panic_reports_failed_with_the_reason() {
    let (progress, sink) = recorder();
    let run = progress.run("job");
    let stage = run.stage("work");
    let handle = std::thread::spawn(move || {
        let _item = stage.item("x");
        panic!("boom");
    });
    assert!(handle.join().is_err());
    run.finish();
    drop(progress);

    let item = sink
        .events()
        .into_iter()
        .find_map(|e| match e.body {
            EventBody::ItemFinished(f) => Some(f),
            _ => None,
        })
        .unwrap();
    assert_eq!(item.status, StepOutcome::Failed);
    // The panic's own words, where it happened, as the default hook prints them.
    let error = item.error.unwrap();
    assert!(
        error.starts_with("item panicked at crates/herald/tests/sdk/handles.rs:")
            && error.ends_with(": boom"),
        "{error}"
    );
    let stage = only_state(&sink).stages.remove(0);
    assert_eq!(stage.status, StageStatus::Failed);
}

#[test]
fn tool_and_model_calls_report_their_outcomes() {
    let (progress, sink) = recorder();
    let run = progress.run("agent");
    run.iteration(1);
    let llm = run.llm_call(Some("sim"), Some("sim-1"));
    llm.text("Hello");
    llm.text(", world");
    llm.finish(LlmUsage {
        stop_reason: Some("tool_use".into()),
        input_tokens: Some(10),
        output_tokens: Some(3),
        ..LlmUsage::default()
    });
    let overloaded = run.llm_call(Some("sim"), Some("sim-1"));
    overloaded.fail(
        "overloaded_error: Overloaded (HTTP 529)",
        LlmUsage::default(),
    );
    drop(run.llm_call(Some("sim"), Some("sim-1")));
    let ok = run.tool(
        "search",
        Some(json!({"q": "x"})),
        Some("Searching the docs"),
    );
    ok.finish(Some(json!(["hit"])));
    let dropped = run.tool("fetch", None, None);
    drop(dropped);
    run.preparing_response();
    run.response("done", Some(1));
    assert_eq!(run.custom("deploy", serde_json::Map::new()), Ok(()));
    assert_eq!(
        run.custom("Bad Name", serde_json::Map::new()),
        Err(herald::CustomError::BadName("Bad Name".to_owned()))
    );
    let mut envelope = serde_json::Map::new();
    envelope.insert("seq".to_owned(), serde_json::json!(7));
    assert_eq!(
        run.custom("deploy", envelope),
        Err(herald::CustomError::ReservedField("seq".to_owned()))
    );
    run.finish();
    drop(progress);

    let state = only_state(&sink);
    // The calls after the first start their text on a line of their own.
    assert_eq!(state.text, "Hello, world\n");
    assert_eq!(state.llm.output_tokens, 3);
    assert_eq!(state.tools.succeeded, 1);
    assert_eq!(state.tools.failed, 1);
    assert_eq!(
        state.tools.done[0].feedback.as_deref(),
        Some("Searching the docs")
    );
    assert_eq!(state.agent.response.as_deref(), Some("done"));
    let sink_events = sink.events();
    let statuses: Vec<ToolOutcome> = sink_events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::ToolFinished(t) => Some(t.status),
            _ => None,
        })
        .collect();
    assert_eq!(statuses, [ToolOutcome::Succeeded, ToolOutcome::Failed]);
    let responses: Vec<(Option<&str>, Option<&str>)> = sink_events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::LlmResponse(r) => Some((r.stop_reason.as_deref(), r.error.as_deref())),
            _ => None,
        })
        .collect();
    assert_eq!(
        responses,
        [
            (Some("tool_use"), None),
            (
                Some("error"),
                Some("overloaded_error: Overloaded (HTTP 529)")
            ),
            (
                Some("error"),
                Some("model call dropped without finishing (an early return or error path)")
            ),
        ]
    );
    assert!(milestones(&sink.events()).contains(&"custom.deploy".to_owned()));
}

#[test]
fn a_tool_call_reports_its_progress_on_its_own_row() {
    let (progress, sink) = recorder();
    let run = progress.run("agent");
    let stage = run.stage("answer").total(2);
    stage.inc(1);
    let call = run.tool("crawl", None, None).unit("pages");
    call.progress(0, 1000);
    call.message("Reading the sitemap");
    // A thousand ticks in a tight loop send one event per percentage point, never one
    // per tick.
    for _ in 0..1000 {
        call.inc(1);
    }
    assert_eq!(call.position(), 1000);
    call.inc(5);
    call.finish(None);
    run.finish();
    drop(progress);

    let events = sink.events();
    let ticks: Vec<&herald::protocol::Progress> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Progress(p) if p.call_id.is_some() => Some(p),
            _ => None,
        })
        .collect();
    assert!(
        (100..=105).contains(&ticks.len()),
        "{} tool ticks for 1005 increments",
        ticks.len()
    );
    assert!(
        ticks
            .iter()
            .all(|p| p.call_id.as_deref() == Some(call_id(&events))
                && p.stage.is_none()
                && p.unit.as_deref() == Some("pages"))
    );
    assert_eq!(ticks[1].message.as_deref(), Some("Reading the sitemap"));
    // The last count goes out before the call ends.
    let last = ticks.last().unwrap();
    assert_eq!((last.done, last.total), (1005, Some(1000)));
    let last_tick_at = events
        .iter()
        .position(|e| matches!(&e.body, EventBody::Progress(p) if p.done == 1005))
        .unwrap();
    assert!(matches!(
        events[last_tick_at + 1].body,
        EventBody::ToolFinished(_)
    ));

    let state = only_state(&sink);
    let tool = &state.tools.done[0];
    let tool_progress = tool.progress.as_ref().expect("the tool's progress is kept");
    assert_eq!(
        (
            tool_progress.done,
            tool_progress.total,
            tool_progress.percent
        ),
        (1005, Some(1000), Some(100.0))
    );
    assert_eq!(
        tool_progress.message.as_deref(),
        Some("Reading the sitemap")
    );
    // The stage and the run count only what the stage counted.
    assert_eq!(
        (
            state.stages[0].progress.done,
            state.stages[0].progress.percent
        ),
        (1, Some(50.0))
    );
    assert!(state.progress.is_none());
}

#[test]
fn a_tool_count_without_a_total_sends_events_as_it_grows_by_a_percent() {
    let (progress, sink) = recorder();
    let run = progress.run("agent");
    let call = run.tool("scan", None, None);
    for _ in 0..10_000 {
        call.inc(1);
    }
    call.finish(None);
    run.finish();
    drop(progress);

    let counts: Vec<u64> = sink
        .events()
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Progress(p) => Some(p.done),
            _ => None,
        })
        .collect();
    // One per unit up to 200, then one per 1% of the count: about 600, not 10 000.
    assert!(
        (500..=700).contains(&counts.len()),
        "{} events",
        counts.len()
    );
    assert!(counts.windows(2).all(|w| w[0] < w[1]), "{counts:?}");
    assert_eq!(counts.last(), Some(&10_000));
    let state = only_state(&sink);
    let tool_progress = state.tools.done[0].progress.as_ref().unwrap();
    assert_eq!((tool_progress.done, tool_progress.total), (10_000, None));
}

/// The call id of the only `tool.started` in `events`.
fn call_id(events: &[herald::protocol::Event]) -> &str {
    events
        .iter()
        .find_map(|e| match &e.body {
            EventBody::ToolStarted(t) => Some(t.call_id.as_str()),
            _ => None,
        })
        .expect("a tool.started")
}

#[test]
fn child_runs_name_their_parent_and_ids_can_be_chosen() {
    let (progress, sink) = recorder();
    let id = "my-run.1".parse().unwrap();
    let run = progress.run_with(
        "parent",
        RunOptions {
            id: Some(id),
            total_steps: Some(2),
            ..RunOptions::default()
        },
    );
    let child = run.child("sub-agent");
    child.finish();
    run.finish();
    drop(progress);

    let states = sink.states();
    assert_eq!(states.len(), 2);
    assert_eq!(states[0].id.as_str(), "my-run.1");
    assert_eq!(states[0].total_steps, Some(2));
    assert_eq!(
        states[1].parent.as_ref().map(|p| p.as_str()),
        Some("my-run.1")
    );
    assert!(states[1].id.as_str().starts_with("sub-agent-"));
}

#[test]
fn counts_reach_the_sink_and_the_last_one_precedes_stage_finished() {
    let (progress, sink) = recorder();
    let run = progress.run("count");
    let stage = run.stage("tick").total(1_000_000u64);
    for _ in stage.wrap_iter(0..1_000_000) {}
    stage.finish();
    run.finish();
    drop(progress);

    let events = sink.events();
    let finished_at = events
        .iter()
        .position(|e| e.event_type() == "stage.finished")
        .unwrap();
    let last_progress = events[..finished_at]
        .iter()
        .rev()
        .find_map(|e| match &e.body {
            EventBody::Progress(p) => Some(p.clone()),
            _ => None,
        })
        .expect("a progress event before stage.finished");
    assert_eq!(last_progress.done, 1_000_000);
    assert_eq!(last_progress.percent, Some(100.0));
    // Ticks are throttled: far fewer progress events than units.
    let ticks = events
        .iter()
        .filter(|e| e.event_type() == "progress")
        .count();
    assert!(ticks <= 12, "{ticks} progress events for one stage");
}

#[test]
fn a_hidden_reporter_accepts_everything_and_outputs_nothing() {
    let progress = herald::Progress::hidden();
    let run = progress.run("quiet");
    let stage = run.stage("s").total(10);
    for _ in stage.iter(0..10) {}
    stage.finish();
    run.error("nobody hears this");
    run.finish();
    assert_eq!(progress.stats(), herald::Stats::default());
}

/// Waits until `sink` has `n` events of type `event_type` and returns the `n`th, or
/// fails after a deadline.
#[track_caller]
fn wait_for(sink: &herald::MemorySink, event_type: &str, n: usize) -> herald::protocol::Event {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let found: Vec<_> = sink
            .events()
            .into_iter()
            .filter(|e| e.event_type() == event_type)
            .collect();
        if found.len() >= n {
            return found[n - 1].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not {n} {event_type} within 10 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn the_heartbeat_guard_speaks_while_the_run_is_silent() {
    let (progress, sink) = recorder();
    let run = progress.run("quiet-work");
    run.heartbeat(Some("indexing"));
    let guard = run.heartbeat_every(std::time::Duration::from_millis(100));
    // The first heartbeat is the explicit one; the next comes from the guard alone,
    // repeating the last note.
    let beat = wait_for(&sink, "heartbeat", 2);
    let EventBody::Heartbeat(b) = beat.body else {
        unreachable!()
    };
    assert_eq!(b.note.as_deref(), Some("indexing"));
    assert!(b.elapsed_s >= 0.1, "{}", b.elapsed_s);
    drop(guard);
    run.finish();
}

#[test]
fn the_heartbeat_guard_stays_quiet_while_events_flow() {
    const EVERY: std::time::Duration = std::time::Duration::from_millis(300);
    let (progress, sink) = recorder();
    let run = progress.run("busy-work");
    let guard = run.heartbeat_every(EVERY);
    // Events for five intervals, far closer together than one.
    let flowing = std::time::Instant::now();
    let mut steps = 0;
    while flowing.elapsed() < 5 * EVERY {
        run.info(format!("step {steps}"));
        steps += 1;
        std::thread::sleep(EVERY / 30);
    }
    // Then silence: the guard speaks, so it was up all along.
    wait_for(&sink, "heartbeat", 1);
    drop(guard);
    run.finish();
    drop(progress);

    // A heartbeat only ever follows a silence of the guard's interval. One whose
    // silence was shorter spoke while events flowed; one after a longer pause of this
    // thread (a busy machine) is right, and passes.
    let events = sink.events();
    assert_eq!(
        events.iter().filter(|e| e.event_type() == "log").count(),
        steps
    );
    let mut beats = 0;
    for pair in events.windows(2) {
        if pair[1].event_type() != "heartbeat" {
            continue;
        }
        beats += 1;
        let silent_s = pair[1].ts.seconds_since(pair[0].ts);
        assert!(
            silent_s >= EVERY.as_secs_f64() - 0.001,
            "a heartbeat after {silent_s} s of silence, after {:?}",
            pair[0].body
        );
    }
    assert!(beats >= 1);
}

#[test]
fn a_heartbeat_guard_dropped_inside_another_leaves_the_outer_one_speaking() {
    let (progress, sink) = recorder();
    let run = progress.run("nested");
    let outer = run.heartbeat_every(std::time::Duration::from_millis(100));
    // A model call's stream adapter holds a guard of its own while it waits for bytes;
    // when the call ends, the program's own guard goes on.
    drop(run.heartbeat_every(std::time::Duration::from_secs(3600)));
    let before = sink
        .events()
        .iter()
        .filter(|e| e.event_type() == "heartbeat")
        .count();
    wait_for(&sink, "heartbeat", before + 2);
    drop(outer);
    run.finish();
}

#[test]
fn a_sink_with_a_keepalive_hears_from_a_silent_run() {
    let policy = herald::SinkPolicy {
        keepalive: Some(std::time::Duration::from_millis(100)),
        ..herald::SinkPolicy::default()
    };
    let sink = herald::MemorySink::with_policy(policy);
    let progress = herald::Progress::new([herald::Target::memory(&sink)]);
    let run = progress.run("silent");
    let beat = wait_for(&sink, "heartbeat", 1);
    assert_eq!(&beat.run, run.id());
    run.finish();
}

/// The `item.finished` events of `events`, as (item, status, error).
fn item_outcomes(events: &[herald::protocol::Event]) -> Vec<(String, StepOutcome, Option<String>)> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::ItemFinished(f) => Some((f.item.clone(), f.status, f.error.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn try_iter_fails_one_item_with_its_error_and_goes_on() {
    let (progress, sink) = recorder();
    let run = progress.run("job");
    let fetch = run.stage("fetch");
    for url in fetch.try_iter(["a", "b", "c", "d"]) {
        match *url {
            "b" => {
                let _ = url.check(Err::<(), _>("connection reset by peer"));
            }
            "c" => url.skip(),
            _ => {}
        }
    }
    fetch.finish();
    run.finish();
    drop(progress);
    let outcomes = item_outcomes(&sink.events());
    assert_eq!(
        outcomes,
        [
            ("1".into(), StepOutcome::Succeeded, None),
            (
                "2".into(),
                StepOutcome::Failed,
                Some("connection reset by peer".into())
            ),
            ("3".into(), StepOutcome::Skipped, None),
            ("4".into(), StepOutcome::Succeeded, None),
        ]
    );
    let state = only_state(&sink);
    assert_eq!(state.status, RunStatus::Succeeded);
    assert_eq!(
        state.stages[0].progress.total,
        Some(4),
        "from the array's length"
    );
}

#[test]
fn an_item_left_by_a_question_mark_reports_the_error_itself() {
    fn fetch_all(run: &herald::Run) -> Result<(), std::io::Error> {
        let fetch = run.stage("fetch");
        for url in fetch.try_iter(["a", "b", "c"]) {
            url.check(if *url == "b" {
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "connection reset by peer",
                ))
            } else {
                Ok(())
            })?;
        }
        fetch.finish();
        Ok(())
    }
    let (progress, sink) = recorder();
    let run = progress.run("job");
    let res = fetch_all(&run);
    assert!(res.is_err());
    run.fail("fetching failed");
    drop(progress);
    let outcomes = item_outcomes(&sink.events());
    assert_eq!(
        outcomes,
        [
            ("1".into(), StepOutcome::Succeeded, None),
            (
                "2".into(),
                StepOutcome::Failed,
                Some("connection reset by peer".into())
            ),
        ],
        "the real error, not `dropped without finishing`"
    );
}

#[test]
fn each_reports_every_error_by_its_display_and_goes_on() {
    let (progress, sink) = recorder();
    let run = progress.run("job");
    let classify = run.stage("classify");
    let errors = classify.each(1..=5, |n| {
        if n % 2 == 0 {
            Err(format!("document {n} is empty"))
        } else {
            Ok(())
        }
    });
    classify.finish();
    run.finish();
    drop(progress);
    assert_eq!(errors, ["document 2 is empty", "document 4 is empty"]);
    let failed: Vec<_> = item_outcomes(&sink.events())
        .into_iter()
        .filter(|(_, status, _)| *status == StepOutcome::Failed)
        .map(|(item, _, error)| (item, error.unwrap()))
        .collect();
    assert_eq!(
        failed,
        [
            ("2".to_owned(), "document 2 is empty".to_owned()),
            ("4".to_owned(), "document 4 is empty".to_owned()),
        ]
    );
    let state = only_state(&sink);
    assert_eq!(state.items.succeeded, 3);
    assert_eq!(state.stages[0].progress.total, Some(5));
}

#[test]
fn an_item_left_by_a_panic_in_each_reports_the_panic_s_message() {
    let (progress, sink) = recorder();
    let run = progress.run("job");
    let stage = run.stage("work");
    let worker = std::thread::spawn(move || {
        stage.each([1, 2], |n| -> Result<(), String> {
            let empty: Vec<u32> = Vec::new();
            let _ = empty[n];
            Ok(())
        });
    });
    assert!(worker.join().is_err());
    run.finish();
    drop(progress);
    let outcomes = item_outcomes(&sink.events());
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    let error = outcomes[0].2.as_deref().unwrap();
    assert!(
        error.contains("index out of bounds: the len is 0 but the index is 1"),
        "{error}"
    );
}

#[test]
fn adapters_take_the_total_from_an_exact_size_iterator_and_only_then() {
    let (progress, sink) = recorder();
    let run = progress.run("job");
    let exact = run.stage("exact");
    for _ in exact.iter(vec!["a", "b", "c"]) {}
    exact.finish();
    let ticks = run.stage("ticks");
    for _ in ticks.wrap_iter(0..10) {}
    ticks.finish();
    let unknown = run.stage("unknown");
    for _ in unknown.iter((0..10).filter(|n| n % 3 == 0)) {}
    unknown.finish();
    let given = run.stage("given").total(7);
    for _ in given.iter(0..3) {}
    given.finish();
    run.finish();
    drop(progress);
    let totals: Vec<(String, Option<u64>)> = sink
        .events()
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::StageStarted(s) => Some((s.stage.clone(), s.total)),
            _ => None,
        })
        .collect();
    assert_eq!(
        totals,
        [
            ("exact".to_owned(), Some(3)),
            ("ticks".to_owned(), Some(10)),
            ("unknown".to_owned(), None),
            ("given".to_owned(), Some(7)),
        ]
    );
}

#[test]
fn wrap_read_and_wrap_write_count_bytes() {
    use std::io::{Read, Write};

    let (progress, sink) = recorder();
    let run = progress.run("copy");
    let data = vec![7u8; 100_000];
    let read = run.stage("read").total(data.len());
    let mut reader = read.wrap_read(&data[..]);
    let mut copy = Vec::new();
    reader.read_to_end(&mut copy).unwrap();
    read.finish();
    let write = run.stage("write");
    let mut writer = write.wrap_write(Vec::new());
    writer.write_all(&copy).unwrap();
    writer.flush().unwrap();
    assert_eq!(writer.get_ref().len(), 100_000);
    write.finish();
    run.finish();
    drop(progress);
    let started: Vec<(String, Option<String>)> = sink
        .events()
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::StageStarted(s) => Some((s.stage.clone(), s.unit.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        started,
        [
            ("read".to_owned(), Some("B".to_owned())),
            ("write".to_owned(), Some("B".to_owned())),
        ]
    );
    let state = only_state(&sink);
    let done: Vec<u64> = state.stages.iter().map(|s| s.progress.done).collect();
    assert_eq!(done, [100_000, 100_000]);
}

#[test]
fn a_stage_s_message_rides_its_ticks_and_a_tool_s_feedback_can_change() {
    let sink = herald::MemorySink::every_tick();
    let progress = herald::Progress::new([herald::Target::memory(&sink)]);
    let run = progress.run("mirror");
    let stage = run.stage("download").total(3);
    stage.set_message("a.tar.gz");
    stage.inc(1);
    progress.flush();
    let state = only_state(&sink);
    assert_eq!(
        state.stages[0].progress.message.as_deref(),
        Some("a.tar.gz")
    );
    stage.set_message("");
    stage.inc(1);
    progress.flush();
    assert_eq!(only_state(&sink).stages[0].progress.message, None);

    let tool = run.tool("crawl", None, Some("Reading page 1 of 3"));
    progress.flush();
    let started_at = only_state(&sink).tools.in_flight[0].started_at;
    tool.feedback("Reading page 2 of 3");
    progress.flush();
    let call = only_state(&sink).tools.in_flight[0].clone();
    assert_eq!(call.feedback.as_deref(), Some("Reading page 2 of 3"));
    assert_eq!(call.started_at, started_at, "still the same call");
    tool.finish(None);
    stage.finish();
    run.finish();
    drop(progress);
    let messages: Vec<Option<String>> = sink
        .events()
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Progress(p) => Some(p.message.clone()),
            _ => None,
        })
        .collect();
    assert!(
        messages.contains(&Some("a.tar.gz".to_owned())) && messages.contains(&Some(String::new())),
        "{messages:?}"
    );
}

#[test]
fn config_errors_read_as_their_message_from_main() {
    let err = "sideways".parse::<herald::ProgressMode>().unwrap_err();
    // `main` returning `Err` prints `Error: {:?}`.
    assert_eq!(format!("{err:?}"), err.to_string());
    assert_eq!(
        format!("{err:?}"),
        "invalid progress mode `sideways`: expected auto, bars, json or none"
    );
    // Its level needs no `use` of the protocol crate.
    let (progress, sink) = recorder();
    let run = progress.run("levels");
    run.log(herald::LogLevel::Warn, "careful");
    run.finish();
    drop(progress);
    assert_eq!(only_state(&sink).logs[0].level, herald::LogLevel::Warn);
}

#[test]
fn weights_reach_the_sink_and_the_state_is_weighted() {
    let (progress, sink) = recorder();
    let run = progress.run_with(
        "pack",
        RunOptions {
            stages: Some(vec![
                herald::protocol::PlannedStage {
                    stage: "small".into(),
                    total: Some(2),
                    total_weight: None,
                },
                herald::protocol::PlannedStage {
                    stage: "big".into(),
                    total: None,
                    total_weight: Some(1000.0),
                },
            ]),
            ..RunOptions::default()
        },
    );
    let stage = run.stage("small").total(2).total_weight(300);
    stage.item("a").weight(100).finish();
    stage.item("b").weight(200).finish();
    stage.finish();
    let big = run.stage("big");
    big.inc_by(1, 250);
    big.inc_weight(250);
    assert_eq!(big.weight_done(), 500);
    big.finish();
    run.finish();
    drop(progress);

    let events = sink.events();
    let started = events
        .iter()
        .find_map(|e| match &e.body {
            EventBody::RunStarted(b) => Some(b.clone()),
            _ => None,
        })
        .expect("run.started");
    assert_eq!(started.stages.as_ref().map(Vec::len), Some(2));
    let small_started = events
        .iter()
        .find_map(|e| match &e.body {
            EventBody::StageStarted(b) if b.stage == "small" => Some(b.clone()),
            _ => None,
        })
        .expect("stage.started");
    assert_eq!(small_started.total_weight, Some(300.0));
    let weights: Vec<Option<f64>> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::ItemFinished(b) => Some(b.weight),
            _ => None,
        })
        .collect();
    assert_eq!(weights, [Some(100.0), Some(200.0)]);
    let last_big = events
        .iter()
        .rev()
        .find_map(|e| match &e.body {
            EventBody::Progress(p) if p.stage.as_deref() == Some("big") => Some(p.clone()),
            _ => None,
        })
        .expect("a progress of big");
    assert_eq!(last_big.done_weight, Some(500.0));
    // The stage declared ahead takes its weight from the plan in the state.
    let state = only_state(&sink);
    let small = &state.stages[0].progress;
    assert_eq!(
        (small.done_weight, small.total_weight),
        (Some(300.0), Some(300.0))
    );
    assert_eq!(small.percent, Some(100.0));
    let big = &state.stages[1].progress;
    assert_eq!(
        (big.done_weight, big.total_weight),
        (Some(500.0), Some(1000.0))
    );
    assert_eq!(big.percent, Some(50.0));
}

#[test]
fn weight_alone_reaches_the_sink_while_the_count_stands_still() {
    // A download's bytes as they arrive: no unit is done yet, the weight moves.
    let sink = herald::MemorySink::every_tick();
    let progress = herald::Progress::new([herald::Target::memory(&sink)]);
    let run = progress.run("download");
    let stage = run.stage("fetch").total(1).total_weight(1000);
    stage.inc_weight(400);
    progress.flush();
    stage.inc_weight(300);
    progress.flush();
    let ticks: Vec<(u64, Option<f64>)> = sink
        .events()
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Progress(p) => Some((p.done, p.done_weight)),
            _ => None,
        })
        .collect();
    assert_eq!(ticks.last(), Some(&(0, Some(700.0))), "ticks: {ticks:?}");
    stage.finish();
    run.finish();
}
