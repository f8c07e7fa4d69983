//! `GET /v1/runs/stream`: the states of many runs on one connection.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::STORE;
use crate::util::{Sse, TestHub, finished, logs};

/// The next message, which must be `event: run`; its state.
async fn next_run(sse: &mut Sse) -> Value {
    let message = sse.message().await.expect("a message");
    assert_eq!(message.event.as_deref(), Some("run"), "{message:?}");
    message.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_runs_then_sends_changes_and_deletions() {
    let hub = TestHub::with_admin(STORE).await;
    let a = hub.create_named("a").await;
    let b = hub.create_named("b").await;
    let mut sse = hub.sse("/v1/runs/stream", hub.admin.as_deref(), &[]).await;
    assert_eq!(sse.status, StatusCode::OK);
    assert_eq!(
        sse.headers.get("x-accel-buffering").map(|v| v.as_bytes()),
        Some(&b"no"[..])
    );
    let mut listed = [next_run(&mut sse).await, next_run(&mut sse).await];
    listed.sort_by_key(|s| s["id"].as_str().map(str::to_owned));
    assert_eq!(listed[0]["id"], "a");
    assert_eq!(listed[1]["id"], "b");
    assert!(listed.iter().all(|s| s["status"] == "running"));

    let c = hub
        .create(json!({"id": "c", "name": "Third", "parent": "a"}))
        .await;
    let state = next_run(&mut sse).await;
    assert_eq!(
        (&state["id"], &state["name"]),
        (&json!("c"), &json!("Third"))
    );
    assert_eq!(state["parent"], "a");

    hub.append(&a, logs("m", 2)).await;
    let state = next_run(&mut sse).await;
    assert_eq!(state["id"], "a");
    assert_eq!(state["last_seq"], 2);

    hub.append(&b, json!([finished("failed")])).await;
    let state = next_run(&mut sse).await;
    assert_eq!(
        (&state["id"], &state["status"]),
        (&json!("b"), &json!("failed"))
    );

    let (status, _) = hub
        .call(Method::DELETE, "/v1/runs/b", hub.admin.as_deref(), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let message = sse.message().await.expect("a message");
    assert_eq!(message.event.as_deref(), Some("deleted"));
    assert_eq!(message.json(), json!({"id": "b"}));

    // A filtered list hears only of the runs it shows.
    let mut children = hub
        .sse("/v1/runs/stream?parent=a", hub.admin.as_deref(), &[])
        .await;
    assert_eq!(next_run(&mut children).await["id"], "c");
    hub.append(&a, logs("n", 1)).await;
    hub.append(&c, logs("n", 1)).await;
    let state = next_run(&mut children).await;
    assert_eq!((&state["id"], &state["last_seq"]), (&json!("c"), &json!(1)));

    // The run's own tokens do not open the list of all runs.
    let refused = hub.sse("/v1/runs/stream", Some(&a.read_token), &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let refused = hub.sse("/v1/runs/stream", None, &[]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_leaving_a_status_filter_is_sent_once_more_then_forgotten() {
    let hub = TestHub::with_admin(STORE).await;
    let a = hub.create_named("a").await;
    let b = hub.create_named("b").await;
    let mut running = hub
        .sse("/v1/runs/stream?status=running", hub.admin.as_deref(), &[])
        .await;
    let mut listed = [next_run(&mut running).await, next_run(&mut running).await];
    listed.sort_by_key(|s| s["id"].as_str().map(str::to_owned));
    assert_eq!(
        (&listed[0]["id"], &listed[1]["id"]),
        (&json!("a"), &json!("b"))
    );

    // `a` finishes: the running list hears of it once, with its new status, so a
    // client can take it off; after that, nothing more of `a`.
    hub.append(&a, json!([finished("succeeded")])).await;
    let state = next_run(&mut running).await;
    assert_eq!(
        (&state["id"], &state["status"]),
        (&json!("a"), &json!("succeeded"))
    );
    hub.append(&b, logs("m", 1)).await;
    let state = next_run(&mut running).await;
    assert_eq!(state["id"], "b", "nothing more of a finished run");
}
