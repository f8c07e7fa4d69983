//! `GET /v1/runs/{id}/stream`: Server-Sent Events of a run's events, or of its state.

use std::sync::Arc;
use std::time::Duration;

use herald_hub::HubConfig;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::STORE;
use crate::util::{Frame, Sse, TestHub, finished, logs, seqs, types, wait_until};

#[track_caller]
fn assert_sse_headers(sse: &Sse) {
    assert_eq!(sse.status, StatusCode::OK);
    let header = |name: &str| sse.headers.get(name).and_then(|v| v.to_str().ok());
    assert!(
        header("content-type").is_some_and(|t| t.starts_with("text/event-stream")),
        "{:?}",
        sse.headers
    );
    assert_eq!(header("x-accel-buffering"), Some("no"));
    assert_eq!(header("content-encoding"), None, "never compressed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_framed_with_id_event_and_data_and_the_stream_ends_with_the_run() {
    let hub = TestHub::open(STORE).await;
    let run = hub.create_named("s").await;
    hub.append(
        &run,
        json!([{"event": "run.started", "name": "s", "id": "start"},
               {"event": "log", "level": "warn", "message": "two\nlines"}]),
    )
    .await;

    let mut sse = hub
        .sse(
            &format!("/v1/runs/{}/stream", run.id),
            Some(&run.read_token),
            &[("accept-encoding", "gzip, deflate, br")],
        )
        .await;
    assert_sse_headers(&sse);
    let first = sse.message().await.expect("a message");
    assert_eq!(first.id.as_deref(), Some("1"));
    assert_eq!(first.event.as_deref(), Some("run.started"));
    let data: Value = first.json();
    assert_eq!(data["v"], 1);
    assert_eq!(data["run"], "s");
    assert_eq!(data["seq"], 1);
    assert_eq!(data["id"], "start");
    assert_eq!(data["name"], "s");
    // A newline inside the event stays inside one `data:` line's JSON.
    let second = sse.event().await;
    assert_eq!(second.seq, 2);
    assert_eq!(types(&[second]), ["log"]);

    // Live: events appended while the stream is open arrive in order.
    hub.append(&run, logs("live", 3)).await;
    for seq in 3..=5 {
        assert_eq!(sse.event().await.seq, seq);
    }
    hub.append(&run, json!([finished("succeeded")])).await;
    let last = sse.event().await;
    assert_eq!((last.seq, last.event_type()), (6, "run.finished"));
    assert_eq!(
        sse.message().await,
        None,
        "the stream ends after run.finished"
    );

    // EventSource reconnects with the last id it saw: 204 tells it to stop.
    let again = hub.stream(&run, "", Some(6)).await;
    assert_eq!(again.status, StatusCode::NO_CONTENT);
    let again = hub.stream(&run, "after=6", None).await;
    assert_eq!(again.status, StatusCode::NO_CONTENT);
    // From the start, a finished run is replayed and the stream ends.
    let mut replay = hub.stream(&run, "", None).await;
    assert_sse_headers(&replay);
    let replayed: Vec<u64> = replay
        .rest()
        .await
        .iter()
        .map(|m| m.as_event().seq)
        .collect();
    assert_eq!(replayed, [1, 2, 3, 4, 5, 6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_after_last_event_id_or_after() {
    let hub = TestHub::open(STORE).await;
    let run = hub.create_named("r").await;
    hub.append(&run, logs("m", 5)).await;

    let mut sse = hub.stream(&run, "", Some(3)).await;
    assert_eq!(sse.event().await.seq, 4);
    assert_eq!(sse.event().await.seq, 5);

    let mut sse = hub.stream(&run, "after=2", None).await;
    assert_eq!(sse.event().await.seq, 3);

    // The header wins over the query, as a reconnecting EventSource keeps its URL.
    let mut sse = hub.stream(&run, "after=1", Some(4)).await;
    assert_eq!(sse.event().await.seq, 5);

    // At the end of a running run the stream waits for what comes next.
    let mut sse = hub.stream(&run, "after=5", None).await;
    assert_sse_headers(&sse);
    hub.append(&run, logs("n", 1)).await;
    assert_eq!(sse.event().await.seq, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn types_filter_the_stream_which_still_ends_with_the_run() {
    let hub = TestHub::open(STORE).await;
    let run = hub.create_named("t").await;
    let mut sse = hub.stream(&run, "types=tool.*,log", None).await;
    assert_sse_headers(&sse);
    hub.append(
        &run,
        json!([
            {"event": "run.started", "name": "t"},
            {"event": "tool.started", "call_id": "c1", "tool": "fetch"},
            {"event": "progress", "done": 1, "elapsed_s": 1},
            {"event": "log", "level": "info", "message": "m"},
            {"event": "tool.finished", "call_id": "c1", "tool": "fetch", "status": "failed"},
            finished("failed"),
        ]),
    )
    .await;
    let events: Vec<_> = sse.rest().await.iter().map(|m| m.as_event()).collect();
    assert_eq!(seqs(&events), [2, 4, 5]);
    assert_eq!(types(&events), ["tool.started", "log", "tool.finished"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_comments_arrive_on_a_quiet_stream() {
    let config = HubConfig {
        keep_alive: Duration::from_millis(100),
        ..HubConfig::default()
    };
    let hub = TestHub::start(STORE, config, None).await;
    let run = hub.create_named("quiet").await;
    let mut sse = hub.stream(&run, "", None).await;
    assert_sse_headers(&sse);
    for _ in 0..3 {
        match sse.frame().await {
            Some(Frame::Comment(_)) => {}
            other => panic!("expected a keep-alive comment, got {other:?}"),
        }
    }
    // Comments do not disturb the events.
    hub.append(&run, logs("m", 1)).await;
    assert_eq!(sse.event().await.seq, 1);

    // The state view keeps alive too.
    let mut states = hub.stream(&run, "view=state", None).await;
    assert_eq!(
        states.message().await.expect("a state").event.as_deref(),
        Some("state")
    );
    match states.frame().await {
        Some(Frame::Comment(_)) => {}
        other => panic!("expected a keep-alive comment, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_view_sends_the_state_on_connect_and_after_changes() {
    let hub = TestHub::open(STORE).await;
    let run = hub.create_named("v").await;
    hub.append(
        &run,
        json!([{"event": "run.started", "name": "Report", "total_steps": 2}]),
    )
    .await;
    let mut sse = hub.stream(&run, "view=state", None).await;
    assert_sse_headers(&sse);

    let first = sse.message().await.expect("the state on connect");
    assert_eq!(first.event.as_deref(), Some("state"));
    let state = first.json();
    assert_eq!(state["id"], "v");
    assert_eq!(state["name"], "Report");
    assert_eq!(state["status"], "running");
    assert_eq!(state["last_seq"], 1);

    // A change right after connecting is not lost in the rate limit.
    hub.append(
        &run,
        json!([{"event": "stage.started", "stage": "fetch", "total": 4}]),
    )
    .await;
    let state = sse
        .message()
        .await
        .expect("a state after the change")
        .json();
    assert_eq!(state["last_seq"], 2, "{state}");
    assert_eq!(state["stages"][0]["name"], "fetch", "{state}");

    // Several changes: the states may be merged, but the last one arrives.
    for done in 1..=3 {
        hub.append(
            &run,
            json!([{"event": "progress", "stage": "fetch", "done": done, "total": 4, "elapsed_s": done}]),
        )
        .await;
    }
    loop {
        let message = sse.message().await.expect("a state");
        assert_eq!(message.event.as_deref(), Some("state"));
        let state = message.json();
        assert_eq!(state["status"], "running");
        if state["last_seq"] == 5 {
            break;
        }
    }
    hub.append(&run, json!([finished("succeeded")])).await;
    let last = sse.message().await.expect("the final state").json();
    assert_eq!(last["status"], "succeeded");
    assert_eq!(last["last_seq"], 6);
    assert_eq!(sse.message().await, None, "the stream ends with the run");

    // Connecting to a finished run: its state, then the end.
    let mut sse = hub.stream(&run, "view=state", None).await;
    let states = sse.rest().await;
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].json()["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_has_no_gap_and_no_duplicate_across_many_disconnects() {
    const EVENTS: u64 = 500;
    let hub = Arc::new(TestHub::open(STORE).await);
    let run = hub.create_named("flaky").await;
    let producer = tokio::spawn({
        let hub = hub.clone();
        let run = run.clone();
        async move {
            let mut rng = StdRng::seed_from_u64(1);
            let mut sent = 0;
            while sent < EVENTS {
                let n = rng.random_range(1..=5).min(EVENTS - sent);
                hub.append(&run, logs(&format!("b{sent}-"), n as usize))
                    .await;
                sent += n;
                tokio::task::yield_now().await;
            }
            hub.append(&run, json!([finished("succeeded")])).await;
        }
    });

    let mut rng = StdRng::seed_from_u64(2);
    let mut seen: Vec<u64> = Vec::new();
    let mut connections = 0;
    let mut finished_at = None;
    while finished_at.is_none() {
        connections += 1;
        let last = seen.last().copied();
        let mut sse = match last {
            None => hub.stream(&run, "", None).await,
            Some(last) if rng.random_bool(0.5) => hub.stream(&run, "", Some(last)).await,
            Some(last) => hub.stream(&run, &format!("after={last}"), None).await,
        };
        assert_eq!(sse.status, StatusCode::OK, "connection {connections}");
        for _ in 0..rng.random_range(1..=40) {
            let Some(message) = sse.message().await else {
                break;
            };
            let event = message.as_event();
            seen.push(event.seq);
            if event.event_type() == "run.finished" {
                finished_at = Some(event.seq);
                break;
            }
        }
        // Dropping the response mid-stream is the disconnect.
    }
    producer.await.expect("the producer ran");
    let last = finished_at.expect("run.finished");
    assert_eq!(last, EVENTS + 1);
    assert_eq!(seen, (1..=last).collect::<Vec<_>>(), "no gap, no duplicate");
    assert!(connections > 10, "only {connections} connections");
    assert_eq!(
        hub.stream(&run, "", Some(last)).await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_of_a_deleted_run_end() {
    let hub = TestHub::open(STORE).await;
    let run = hub.create_named("doomed").await;
    hub.append(&run, logs("m", 1)).await;
    let mut events = hub.stream(&run, "after=1", None).await;
    let mut states = hub.stream(&run, "view=state", None).await;
    assert_eq!(
        states.message().await.expect("a state").json()["last_seq"],
        1
    );
    let mut ws = hub.ws(&run.id, "after=1", None).await.expect("a socket");
    wait_until("three subscribers", || async {
        hub.metric("herald_subscribers").await == 3.0
    })
    .await;
    let (status, _) = hub
        .call(reqwest::Method::DELETE, "/v1/runs/doomed", None, None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(events.message().await, None, "the event stream ends");
    assert_eq!(states.message().await, None, "the state stream ends");
    assert_eq!(ws.next().await, None, "the socket closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_end_when_the_hub_shuts_down() {
    let mut hub = TestHub::open(STORE).await;
    let run = hub.create_named("s").await;
    let mut events = hub.stream(&run, "", None).await;
    let mut states = hub.stream(&run, "view=state", None).await;
    assert_eq!(
        states.message().await.expect("a state").json()["last_seq"],
        0
    );
    let mut runs = hub.sse("/v1/runs/stream", None, &[]).await;
    assert_eq!(runs.message().await.expect("a run").json()["id"], "s");
    let mut ws = hub.ws(&run.id, "", None).await.expect("a socket");
    wait_until("four subscribers", || async {
        hub.metric("herald_subscribers").await == 4.0
    })
    .await;
    let stopped = hub.stop();
    assert_eq!(events.message().await, None, "the event stream ends");
    assert_eq!(states.message().await, None, "the state stream ends");
    assert_eq!(runs.message().await, None, "the runs stream ends");
    assert_eq!(ws.next().await, None, "the socket closes");
    stopped.await;
}
