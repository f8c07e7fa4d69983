//! `GET /v1/runs/{id}/events`: paging, filters and the long poll.
//!
//! A long poll here waits far longer (60 s, the most a poll waits) than `within` lets a
//! test wait (`DEADLINE`): one that answers within that did not sit out its wait,
//! however slow the machine, and no clock is read.

use serde_json::json;

use super::STORE;
use crate::util::{TestHub, finished, logs, seqs, types, wait_until, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_pages_with_after_and_limit_and_filters_by_type() {
    let hub = TestHub::open(STORE).await;
    let run = hub.create_named("p").await;
    hub.append(
        &run,
        json!([
            {"event": "run.started", "name": "p"},
            {"event": "tool.started", "call_id": "c1", "tool": "search"},
            {"event": "log", "level": "info", "message": "m"},
            {"event": "tool.finished", "call_id": "c1", "tool": "search", "status": "succeeded"},
            {"event": "text.delta", "text": "hi"},
        ]),
    )
    .await;

    let polled = hub.poll(&run, "").await;
    assert_eq!(seqs(&polled.events), [1, 2, 3, 4, 5]);
    assert_eq!(polled.last_seq, 5);
    assert_eq!(polled.status, "running");

    assert_eq!(seqs(&hub.poll(&run, "limit=2").await.events), [1, 2]);
    assert_eq!(
        seqs(&hub.poll(&run, "after=2&limit=2").await.events),
        [3, 4]
    );
    assert_eq!(seqs(&hub.poll(&run, "after=4").await.events), [5]);
    let end = hub.poll(&run, "after=5").await;
    assert!(end.events.is_empty());
    assert_eq!(end.last_seq, 5, "last_seq is the run's, not the page's");

    let tools = hub.poll(&run, "types=tool.*").await;
    assert_eq!(types(&tools.events), ["tool.started", "tool.finished"]);
    assert_eq!(tools.last_seq, 5);
    let some = hub.poll(&run, "types=run.*,text.delta").await;
    assert_eq!(types(&some.events), ["run.started", "text.delta"]);
    // `limit` counts the matching events, not the ones skipped.
    let first_tool = hub.poll(&run, "types=tool.*&limit=1").await;
    assert_eq!(seqs(&first_tool.events), [2]);
    assert_eq!(
        seqs(&hub.poll(&run, "types=tool.*&after=2").await.events),
        [4]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_answers_as_soon_as_an_event_is_appended() {
    let hub = std::sync::Arc::new(TestHub::open(STORE).await);
    let run = hub.create_named("lp").await;
    hub.append(&run, logs("before", 1)).await;

    let waiting = tokio::spawn({
        let hub = hub.clone();
        let run = run.clone();
        async move { hub.poll(&run, "after=1&wait=60").await }
    });
    // Append only once the poll is waiting in the hub.
    wait_until("the long poll to subscribe", || async {
        hub.metric("herald_subscribers").await == 1.0
    })
    .await;
    assert!(!waiting.is_finished(), "the poll waits for an event");
    hub.append(&run, logs("after", 1)).await;
    let polled = within("the long poll", waiting)
        .await
        .expect("the poll ran");
    assert_eq!(seqs(&polled.events), [2]);
    assert_eq!(polled.events[0].id, None);

    // With a type filter it keeps waiting through events that do not match.
    let waiting = tokio::spawn({
        let hub = hub.clone();
        let run = run.clone();
        async move { hub.poll(&run, "after=2&wait=60&types=tool.*").await }
    });
    wait_until("the filtered poll to subscribe", || async {
        hub.metric("herald_subscribers").await == 1.0
    })
    .await;
    hub.append(&run, logs("ignored", 2)).await;
    hub.append(
        &run,
        json!([{"event": "tool.started", "call_id": "c", "tool": "grep"}]),
    )
    .await;
    let polled = within("the filtered long poll", waiting)
        .await
        .expect("the poll ran");
    assert_eq!(types(&polled.events), ["tool.started"]);
    assert_eq!(seqs(&polled.events), [5]);

    // A short wait with nothing new answers empty when it runs out.
    let polled = hub.poll(&run, "after=5&wait=0.2").await;
    assert!(polled.events.is_empty());
    assert_eq!(polled.last_seq, 5);

    // At the end of a finished run there is nothing to wait for.
    hub.append(&run, json!([finished("succeeded")])).await;
    let polled = within(
        "a poll at the end of a finished run",
        hub.poll(&run, "after=6&wait=60"),
    )
    .await;
    assert!(polled.events.is_empty());
    assert_eq!(polled.status, "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_on_a_run_deleted_meanwhile_answers_404_at_once() {
    let hub = std::sync::Arc::new(TestHub::open(STORE).await);
    let run = hub.create_named("gone").await;
    hub.append(&run, logs("m", 1)).await;
    let waiting = tokio::spawn({
        let hub = hub.clone();
        async move {
            hub.call(
                reqwest::Method::GET,
                "/v1/runs/gone/events?after=1&wait=60",
                None,
                None,
            )
            .await
        }
    });
    wait_until("the long poll to subscribe", || async {
        hub.metric("herald_subscribers").await == 1.0
    })
    .await;
    let (status, _) = hub
        .call(reqwest::Method::DELETE, "/v1/runs/gone", None, None)
        .await;
    assert_eq!(status, reqwest::StatusCode::NO_CONTENT);
    let (status, body) = within("the long poll", waiting)
        .await
        .expect("the poll ran");
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "run_not_found");
}
