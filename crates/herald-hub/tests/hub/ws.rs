//! `GET /v1/runs/{id}/ws`: the run's events as JSON text messages.

use serde_json::json;

use super::STORE;
use crate::util::{TestHub, finished, logs, seqs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_sends_events_resumes_and_closes_after_the_run() {
    let hub = TestHub::open(STORE).await;
    let run = hub.create_named("w").await;
    hub.append(&run, logs("m", 3)).await;

    let mut ws = hub
        .ws(&run.id, "", Some(&run.read_token))
        .await
        .expect("a socket");
    let first = ws.event().await;
    assert_eq!((first.seq, first.event_type()), (1, "log"));
    assert_eq!(first.run.as_str(), "w");
    assert_eq!(ws.event().await.seq, 2);
    assert_eq!(ws.event().await.seq, 3);

    // Live events.
    hub.append(&run, logs("live", 1)).await;
    assert_eq!(ws.event().await.seq, 4);

    // `{"after": SEQ}` moves the cursor back.
    ws.send(r#"{"after": 1}"#).await;
    let replayed = [ws.event().await, ws.event().await, ws.event().await];
    assert_eq!(seqs(&replayed), [2, 3, 4]);

    // A bad message gets an error message, and the socket carries on.
    ws.send("hello").await;
    let error = ws.next().await.expect("an error message");
    assert_eq!(error["error"]["code"], "invalid_message", "{error}");
    ws.send(r#"{"after": 99}"#).await;
    let error = ws.next().await.expect("an error message");
    assert_eq!(error["error"]["code"], "invalid_message", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("99")),
        "{error}"
    );
    hub.append(&run, json!([finished("cancelled")])).await;
    let last = ws.event().await;
    assert_eq!((last.seq, last.event_type()), (5, "run.finished"));
    assert_eq!(ws.next().await, None, "closed after run.finished");

    // `?after=` on connect.
    let mut ws = hub
        .ws(&run.id, "after=3", Some(&run.read_token))
        .await
        .expect("a socket");
    assert_eq!(ws.event().await.seq, 4);
    assert_eq!(ws.event().await.seq, 5);
    assert_eq!(ws.next().await, None);

    // At the end of a finished run it closes at once.
    let mut ws = hub
        .ws(&run.id, "after=5", Some(&run.read_token))
        .await
        .expect("a socket");
    assert_eq!(ws.next().await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_filters_by_type() {
    let hub = TestHub::open(STORE).await;
    let run = hub.create_named("wf").await;
    let mut ws = hub
        .ws(&run.id, "types=tool.*", None)
        .await
        .expect("a socket");
    hub.append(
        &run,
        json!([
            {"event": "log", "level": "info", "message": "m"},
            {"event": "tool.started", "call_id": "c", "tool": "t"},
            finished("succeeded"),
        ]),
    )
    .await;
    let event = ws.event().await;
    assert_eq!((event.seq, event.event_type()), (2, "tool.started"));
    assert_eq!(ws.next().await, None);
}
