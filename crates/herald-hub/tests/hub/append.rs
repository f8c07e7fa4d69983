//! Appends: idempotency ids, and `seq` dense per run whatever the concurrency.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::STORE;
use crate::util::{TestHub, seqs};

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
