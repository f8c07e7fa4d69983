//! Appends: idempotency ids, `seq` dense per run whatever the concurrency, and the
//! per-run rate limit.

use std::collections::HashSet;

use herald_hub::{HubConfig, RateLimit};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::STORE;
use crate::util::{TestHub, error_body, send, seqs};

fn log(id: &str) -> Value {
    json!({"event": "log", "level": "info", "message": id, "id": id})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_id_is_stored_once() {
    let hub = TestHub::open(STORE).await;
    let run = hub.create_named("idem").await;

    // Twice in one batch.
    let reply = hub
        .append(&run, json!([log("a"), log("b"), log("a")]))
        .await;
    assert_eq!(reply["appended"], 2, "{reply}");
    assert_eq!(reply["duplicates"], 1);
    assert_eq!(reply["last_seq"], 2);

    // Again across batches, mixed with new ids and events without an id.
    let reply = hub
        .append(
            &run,
            json!([log("b"), log("c"), {"event": "log", "level": "info", "message": "anon"}, log("a")]),
        )
        .await;
    assert_eq!(reply["appended"], 2, "{reply}");
    assert_eq!(reply["duplicates"], 2);
    assert_eq!(reply["last_seq"], 4);

    // A batch of nothing but duplicates changes nothing.
    let reply = hub.append(&run, json!([log("c"), log("a")])).await;
    assert_eq!(reply["appended"], 0, "{reply}");
    assert_eq!(reply["duplicates"], 2);
    assert_eq!(reply["last_seq"], 4);

    let events = hub.all_events(&run).await;
    assert_eq!(seqs(&events), [1, 2, 3, 4]);
    let ids: Vec<Option<&str>> = events.iter().map(|e| e.id.as_deref()).collect();
    assert_eq!(ids, [Some("a"), Some("b"), Some("c"), None]);

    // Ids are per run: another run may use the same.
    let other = hub.create_named("other").await;
    assert_eq!(hub.append(&other, json!([log("a")])).await["appended"], 1);
    assert_eq!(hub.state(&run).await["event_count"], 4);
}

/// One task's record of what the hub acknowledged.
struct Acked {
    /// Each batch's ids and the `last_seq` of its reply.
    batches: Vec<(Vec<String>, u64)>,
    appended: u64,
    duplicates: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seq_is_dense_under_concurrent_appends() {
    const TASKS: usize = 8;
    const APPENDS: usize = 50;
    let hub = std::sync::Arc::new(TestHub::open(STORE).await);
    let run = hub.create_named("busy").await;
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let hub = hub.clone();
        let run = run.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Acked {
                batches: Vec::new(),
                appended: 0,
                duplicates: 0,
            };
            for append in 0..APPENDS {
                // Batches of 1 to 3 events; every fifth append is a retry of the one
                // before, as an SDK does when it lost a reply.
                let retry = append % 5 == 4;
                let n = if retry { append - 1 } else { append };
                let ids: Vec<String> = (0..1 + n % 3)
                    .map(|i| format!("t{task}-a{n}-{i}"))
                    .collect();
                let batch: Value = ids.iter().map(|id| log(id)).collect();
                let reply = hub.append(&run, batch).await;
                acked.appended += reply["appended"].as_u64().expect("appended");
                acked.duplicates += reply["duplicates"].as_u64().expect("duplicates");
                if retry {
                    assert_eq!(reply["appended"], 0, "a retry stores nothing: {reply}");
                } else {
                    acked
                        .batches
                        .push((ids, reply["last_seq"].as_u64().expect("last_seq")));
                }
            }
            acked
        }));
    }
    let mut acks = Vec::new();
    for task in tasks {
        acks.push(task.await.expect("the task ran"));
    }

    let events = hub.all_events(&run).await;
    let total: u64 = acks.iter().map(|a| a.appended).sum();
    assert_eq!(events.len() as u64, total);
    assert_eq!(
        seqs(&events),
        (1..=total).collect::<Vec<_>>(),
        "dense, in order"
    );
    let ids: HashSet<&str> = events.iter().filter_map(|e| e.id.as_deref()).collect();
    assert_eq!(ids.len(), events.len(), "each id once");
    let duplicates: u64 = acks.iter().map(|a| a.duplicates).sum();
    let expected_duplicates: u64 = (0..TASKS * APPENDS)
        .filter(|i| i % APPENDS % 5 == 4)
        .map(|i| 1 + (i % APPENDS - 1) as u64 % 3)
        .sum();
    assert_eq!(duplicates, expected_duplicates);

    // A batch is stored as one block of seqs ending at the `last_seq` of its reply.
    for acked in &acks {
        for (ids, last_seq) in &acked.batches {
            let first = *last_seq as usize - ids.len();
            let stored: Vec<&str> = events[first..*last_seq as usize]
                .iter()
                .map(|e| e.id.as_deref().expect("an id"))
                .collect();
            assert_eq!(stored, *ids, "the batch ending at seq {last_seq}");
        }
    }
    let state = hub.state(&run).await;
    assert_eq!(state["last_seq"], total);
    assert_eq!(state["event_count"], total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_its_rate_limit_gets_429_with_retry_after_and_loses_nothing() {
    let config = HubConfig {
        rate_limit: Some(RateLimit {
            events_per_s: 10.0,
            burst: 20.0,
        }),
        ..HubConfig::default()
    };
    let hub = TestHub::with_clock(STORE, config).await;
    let run = hub.create_named("busy").await;
    let batch = |from: usize, n: usize| -> Value {
        (from..from + n)
            .map(|i| log(&format!("e{i}")))
            .collect::<Vec<_>>()
            .into()
    };
    assert_eq!(hub.append(&run, batch(0, 20)).await["appended"], 20);

    let over = |body: Value| {
        hub.request(
            Method::POST,
            &format!("/v1/runs/{}/events", run.id),
            Some(&run.write_token),
        )
        .json(&body)
    };
    let resp = over(batch(20, 5)).send().await.expect("the hub answers");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1"),
        "5 events at 10 a second: half a second, rounded up"
    );
    let body: Value = resp.json().await.expect("a JSON error");
    let error = error_body(&body, "rate_limited");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("10 events a second"), "{message}");
    assert_eq!(hub.state(&run).await["event_count"], 20, "nothing stored");

    // Another run has a bucket of its own; the hub's own events are not limited.
    let other = hub.create_named("calm").await;
    assert_eq!(hub.append(&other, batch(0, 20)).await["appended"], 20);
    let (status, _) = send(
        hub.request(
            Method::POST,
            &format!("/v1/runs/{}/cancel", run.id),
            Some(&run.write_token),
        )
        .json(&json!({"reason": "enough"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // The same batch, sent again once the bucket refilled, is stored once.
    hub.advance(0.5);
    let reply = hub.append(&run, batch(20, 5)).await;
    assert_eq!(reply["appended"], 5, "{reply}");
    assert_eq!(hub.metric("herald_appends_rate_limited_total").await, 1.0);
    let events = hub.all_events(&run).await;
    assert_eq!(seqs(&events), (1..=26).collect::<Vec<u64>>());
}
