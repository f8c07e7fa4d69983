//! Two hubs on one PostgreSQL database (docs/http-api.md#several-hubs):
//! hub A and hub B, in this process, each with a store of its own
//! (`PostgresStore::connect`) on the same fresh database and a listener of its own.
//!
//! The hubs' feeds poll the store once an hour, so what reaches B's readers from A's
//! writes came through notifications (or the catch-up after the notification
//! connection came back), not through polling; and their sweepers are slowed to once an
//! hour, so only the tests sweep.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use herald_hub::{Clock, HubConfig, ManualClock, Store};
use herald_protocol::{Event, EventBody, Timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::util::{
    Run, Sse, StoreKind, TestDb, TestHub, error_body, finished, manual_clock, postgres_admin_url,
    seqs, types, wait_until, within,
};

/// Settings under which only notifications move changes between the hubs.
fn quiet() -> HubConfig {
    HubConfig {
        feed_poll_interval: Duration::from_secs(3600),
        sweep_interval: Duration::from_secs(3600),
        ..HubConfig::default()
    }
}

/// Hub A and hub B on one fresh PostgreSQL database, reading `clock` if given.
async fn two_hubs(clock: Option<Arc<ManualClock>>) -> (Arc<TestHub>, Arc<TestHub>) {
    let db = TestDb::new(StoreKind::Postgres).await;
    let a = TestHub::on(&db, quiet(), clock.clone()).await;
    let b = TestHub::on(&db, quiet(), clock).await;
    (Arc::new(a), Arc::new(b))
}

/// Waits until `hub` counts `n` subscribers (streams, sockets, long polls).
async fn subscribers(hub: &TestHub, n: f64) {
    wait_until(&format!("{n} subscribers of {}", hub.url), || async {
        hub.metric("herald_subscribers").await == n
    })
    .await;
}

/// `n` `log` events with ids and messages `{prefix}0..`.
fn logs_with_ids(prefix: &str, n: usize) -> Value {
    (0..n)
        .map(|i| {
            let id = format!("{prefix}{i}");
            json!({"event": "log", "level": "info", "message": id, "id": id})
        })
        .collect()
}

/// The ids of `events`, which all have one.
fn ids(events: &[Event]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e.id.as_deref().expect("an id"))
        .collect()
}

/// Events of `sse` up to the end of the stream, which must come after `run.finished`.
async fn rest_of(sse: &mut Sse) -> Vec<Event> {
    let events: Vec<Event> = sse.rest().await.iter().map(|m| m.as_event()).collect();
    assert_eq!(
        events.last().map(Event::event_type),
        Some("run.finished"),
        "the stream ends after run.finished"
    );
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_appended_through_one_hub_reach_a_stream_on_the_other_in_order() {
    const EVENTS: usize = 300;
    let (a, b) = two_hubs(None).await;
    let run = a.create_named("relay").await;
    let mut sse = b.stream(&run, "", None).await;
    assert_eq!(sse.status, StatusCode::OK);
    subscribers(&b, 1.0).await;

    let producer = tokio::spawn({
        let a = a.clone();
        let run = run.clone();
        async move {
            let mut rng = StdRng::seed_from_u64(3);
            let mut sent = 0;
            while sent < EVENTS {
                let n = rng.random_range(1..=7).min(EVENTS - sent);
                a.append(&run, logs_with_ids(&format!("e{sent}-"), n)).await;
                sent += n;
            }
            a.append(&run, json!([finished("succeeded")])).await;
        }
    });
    let received = rest_of(&mut sse).await;
    producer.await.expect("the producer ran");

    let stored = a.all_events(&run).await;
    assert_eq!(stored.len(), EVENTS + 1);
    assert_eq!(
        seqs(&received),
        (1..=EVENTS as u64 + 1).collect::<Vec<_>>(),
        "every event once, in order"
    );
    assert_eq!(received, stored, "as stored");
}

/// Runs `sql` on the server's maintenance database.
async fn admin_sql(admin: &PgPool, sql: &str) {
    sqlx::raw_sql(sql)
        .execute(admin)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// How many connections to `db` have an `application_name` LIKE `name`.
async fn connections(admin: &PgPool, db: &TestDb, name: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name LIKE $1 AND datname = $2",
    )
    .bind(name)
    .bind(db.name())
    .fetch_one(admin)
    .await
    .expect("pg_stat_activity reads")
}

/// How many notification listeners are connected to `db`.
async fn listeners(admin: &PgPool, db: &TestDb) -> i64 {
    connections(admin, db, "herald-listener").await
}

/// Lets `db` take new connections, or not (its open ones stay), as a restart or an
/// outage would.
async fn allow_connections(admin: &PgPool, db: &TestDb, allow: bool) {
    admin_sql(
        admin,
        &format!("ALTER DATABASE \"{}\" ALLOW_CONNECTIONS {allow}", db.name()),
    )
    .await;
}

/// Terminates the connections to `db` whose `application_name` is LIKE `name` and
/// waits until they are gone; how many there were.
async fn cut(admin: &PgPool, db: &TestDb, name: &str) -> usize {
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name LIKE $1 AND datname = $2",
    )
    .bind(name)
    .bind(db.name())
    .fetch_all(admin)
    .await
    .expect("pg_terminate_backend runs");
    wait_until(&format!("the {name} connections to be gone"), || async {
        connections(admin, db, name).await == 0
    })
    .await;
    terminated.into_iter().filter(|t| *t).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_misses_nothing_when_its_hub_s_listener_is_terminated() {
    let (a, b) = two_hubs(None).await;
    let db = b.db.clone();
    // A pool, so that waits can query while the test holds it.
    let admin = PgPool::connect(&postgres_admin_url())
        .await
        .expect("PostgreSQL, which the hubs reached, is reachable");
    let run = a.create_named("cut").await;
    let mut sse = b.stream(&run, "", None).await;
    assert_eq!(sse.status, StatusCode::OK);
    subscribers(&b, 1.0).await;
    let mut received = Vec::new();

    a.append(&run, logs_with_ids("before-", 5)).await;
    for _ in 0..5 {
        received.push(sse.event().await);
    }

    // Cut the listeners off (both hubs', which includes B's) and keep them off while A
    // appends: the database refuses new connections, also a superuser's, but the
    // hubs' pooled connections stay. So these events are committed while B cannot be
    // notified of them, and only the catch-up after B listens again can bring them.
    allow_connections(&admin, &db, false).await;
    assert_eq!(
        cut(&admin, &db, "herald-listener").await,
        2,
        "A's and B's listeners terminated"
    );
    a.append(&run, logs_with_ids("while-down-", 5)).await;
    a.append(&run, logs_with_ids("while-down-again-", 3)).await;
    assert_eq!(
        listeners(&admin, &db).await,
        0,
        "appended while no listener was connected"
    );
    allow_connections(&admin, &db, true).await;
    // B's listener connects again, and B's stream catches up from its cursor.
    for _ in 0..8 {
        received.push(sse.event().await);
    }

    // And notifications flow again.
    a.append(&run, logs_with_ids("after-", 4)).await;
    for _ in 0..4 {
        received.push(sse.event().await);
    }
    a.append(&run, json!([finished("succeeded")])).await;
    received.extend(rest_of(&mut sse).await);

    assert_eq!(
        seqs(&received),
        (1..=18).collect::<Vec<_>>(),
        "every event once, in order"
    );
    assert_eq!(received, a.all_events(&run).await, "as stored");
    wait_until("both listeners to be back", || async {
        listeners(&admin, &db).await == 2
    })
    .await;
}

/// What one producer task was told by the hubs.
#[derive(Default)]
struct Acked {
    /// Each batch's ids and the `last_seq` of the reply that stored it.
    batches: Vec<(Vec<String>, u64)>,
    /// Every id the task sent.
    sent: Vec<String>,
    appended: u64,
    duplicates: u64,
}

impl Acked {
    fn count(&mut self, reply: &Value) -> (u64, u64) {
        let appended = reply["appended"].as_u64().expect("appended");
        let duplicates = reply["duplicates"].as_u64().expect("duplicates");
        self.appended += appended;
        self.duplicates += duplicates;
        (appended, duplicates)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_through_both_hubs_at_once_keep_seq_dense_and_ids_once() {
    const TASKS_PER_HUB: usize = 4;
    const APPENDS: usize = 40;
    let (a, b) = two_hubs(None).await;
    let run = a.create_named("busy").await;
    let mut tasks = Vec::new();
    for task in 0..2 * TASKS_PER_HUB {
        // Half the tasks send through A, half through B; retries go through the other.
        let (home, other) = if task % 2 == 0 {
            (a.clone(), b.clone())
        } else {
            (b.clone(), a.clone())
        };
        let run = run.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Acked::default();
            for append in 0..APPENDS {
                let ids: Vec<String> = (0..1 + append % 3)
                    .map(|i| format!("t{task}-a{append}-{i}"))
                    .collect();
                let batch: Value = ids
                    .iter()
                    .map(|id| json!({"event": "log", "level": "info", "message": id, "id": id}))
                    .collect();
                acked.sent.extend(ids.iter().cloned());
                let n = ids.len() as u64;
                if append % 4 == 3 {
                    // A producer that lost the reply retries through the other hub while
                    // the first attempt may still be in flight: one of the two stores
                    // the batch, the other finds it stored.
                    let (first, second) = tokio::join!(
                        home.append(&run, batch.clone()),
                        other.append(&run, batch.clone())
                    );
                    let first_counts = acked.count(&first);
                    let second_counts = acked.count(&second);
                    let mut counts = [first_counts, second_counts];
                    counts.sort();
                    assert_eq!(counts, [(0, n), (n, 0)], "{first} and {second}");
                    let stored = if first_counts.0 == n { &first } else { &second };
                    acked
                        .batches
                        .push((ids, stored["last_seq"].as_u64().expect("last_seq")));
                } else {
                    let reply = home.append(&run, batch.clone()).await;
                    assert_eq!(acked.count(&reply), (n, 0), "{reply}");
                    acked
                        .batches
                        .push((ids, reply["last_seq"].as_u64().expect("last_seq")));
                    if append % 5 == 4 {
                        // The reply was lost after all: the retry stores nothing.
                        let retry = other.append(&run, batch).await;
                        assert_eq!(acked.count(&retry), (0, n), "{retry}");
                    }
                }
            }
            acked
        }));
    }
    let mut acks = Vec::new();
    for task in tasks {
        acks.push(task.await.expect("the task ran"));
    }

    for hub in [&a, &b] {
        let events = hub.all_events(&run).await;
        let total: u64 = acks.iter().map(|a| a.appended).sum();
        assert_eq!(
            seqs(&events),
            (1..=total).collect::<Vec<_>>(),
            "dense, in order"
        );
        let stored: HashSet<&str> = ids(&events).into_iter().collect();
        assert_eq!(stored.len(), events.len(), "each id once");
        let sent: HashSet<&str> = acks
            .iter()
            .flat_map(|a| a.sent.iter().map(String::as_str))
            .collect();
        assert_eq!(stored, sent, "every id sent is stored");
        // A batch is stored as one block of seqs ending at the `last_seq` of its reply.
        for acked in &acks {
            for (ids, last_seq) in &acked.batches {
                let block = &events[*last_seq as usize - ids.len()..*last_seq as usize];
                assert_eq!(self::ids(block), *ids, "the batch ending at seq {last_seq}");
            }
        }
        let state = hub.state(&run).await;
        assert_eq!(state["last_seq"], total, "{state}");
        assert_eq!(state["event_count"], total, "{state}");
    }
}

/// Sweeps through both hubs at the same instant; both must succeed.
async fn sweep_both(a: &TestHub, b: &TestHub) {
    let sweeps =
        [a.hub.clone(), b.hub.clone()].map(|hub| tokio::spawn(async move { hub.sweep().await }));
    for sweep in sweeps {
        within("a sweep", sweep)
            .await
            .expect("the sweep ran")
            .expect("the sweep succeeds");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_hubs_sweeping_at_once_stall_a_run_once() {
    const RUNS: usize = 10;
    let clock = manual_clock();
    let (a, b) = two_hubs(Some(clock.clone())).await;
    let mut runs = Vec::new();
    for i in 0..RUNS {
        let id = format!("quiet-{i}");
        let run = a
            .create(json!({"id": id, "name": id, "heartbeat_timeout_s": 30}))
            .await;
        a.append(&run, json!([{"event": "run.started", "name": id}]))
            .await;
        runs.push(run);
    }
    clock.advance(20.0);
    sweep_both(&a, &b).await;
    clock.advance(11.0);
    for _ in 0..3 {
        sweep_both(&a, &b).await;
    }
    for run in &runs {
        for hub in [&a, &b] {
            let events = hub.all_events(run).await;
            assert_eq!(
                types(&events),
                ["run.started", "run.stalled"],
                "{} through {}",
                run.id,
                hub.url
            );
            match &events[1].body {
                EventBody::RunStalled(s) => assert_eq!(s.silent_for_s, 31.0),
                other => panic!("{other:?}"),
            }
            assert_eq!(hub.state(run).await["status"], "stalled");
        }
    }

    // The producer speaks through B: running again on both, and stalled once more
    // only after another silence.
    b.append(&runs[0], json!([{"event": "heartbeat", "elapsed_s": 31}]))
        .await;
    sweep_both(&a, &b).await;
    assert_eq!(a.state(&runs[0]).await["status"], "running");
    clock.advance(31.0);
    sweep_both(&a, &b).await;
    sweep_both(&a, &b).await;
    assert_eq!(
        types(&b.all_events(&runs[0]).await),
        ["run.started", "run.stalled", "heartbeat", "run.stalled"]
    );
}

/// The next message of a runs stream: a run's state (`event: run`) or a deletion.
async fn next_change(sse: &mut Sse) -> (String, Value) {
    let message = sse.message().await.expect("a message");
    let event = message.event.clone().expect("an event type");
    (event, message.json())
}

/// Reads `run` messages of a runs stream until each run of `last_seqs` was shown at its
/// `last_seq`. A hub tells of another hub's change when it is woken, and by then the
/// run may have changed again: it may show a run's states merged, never out of order,
/// and never one twice.
///
/// A hub handles wake-ups in order. So to be sure that the stream sent everything
/// earlier changes made it send, a caller includes in `last_seqs` a run created through
/// the other hub after them: no earlier wake-up reads it, so once it is shown, the
/// stream has read whatever the earlier ones made the hub send.
async fn shown(sse: &mut Sse, hub: &str, last_seqs: &[(String, u64)]) {
    let mut waiting: std::collections::HashMap<&str, u64> = last_seqs
        .iter()
        .map(|(id, seq)| (id.as_str(), *seq))
        .collect();
    let mut seen = std::collections::HashMap::new();
    while !waiting.is_empty() {
        let (event, state) = next_change(sse).await;
        assert_eq!(event, "run", "{state}");
        let id = state["id"].as_str().expect("an id").to_owned();
        let seq = state["last_seq"].as_u64().expect("a last_seq");
        let before = seen.insert(id.clone(), seq);
        assert!(
            before.is_none_or(|b| b < seq),
            "hub {hub}: {id} went from {before:?} to {seq}"
        );
        if waiting.get(id.as_str()) == Some(&seq) {
            waiting.remove(id.as_str());
        }
    }
}

/// Reads a runs stream until `fresh` is shown at `last_seq`, and returns the ids of
/// the runs it said were deleted meanwhile, sorted; other states of `fresh` pass.
async fn deleted_until(sse: &mut Sse, last_seq: u64) -> Vec<String> {
    let mut deleted = Vec::new();
    loop {
        match next_change(sse).await {
            (event, body) if event == "deleted" => {
                deleted.push(body["id"].as_str().expect("an id").to_owned());
            }
            (event, state) if event == "run" && state["id"] == "fresh" => {
                if state["last_seq"] == last_seq {
                    deleted.sort();
                    return deleted;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_hubs_sweeping_at_once_delete_an_expired_run_once_and_keep_a_fresh_one() {
    const OLD: usize = 10;
    let clock = manual_clock();
    let (a, b) = two_hubs(Some(clock.clone())).await;
    let mut streams = Vec::new();
    for hub in [&a, &b] {
        streams.push(hub.sse("/v1/runs/stream", None, &[]).await);
        subscribers(hub, 1.0).await;
    }
    let create = |id: String| {
        let a = &a;
        async move {
            a.create(json!({"id": id, "name": id, "ttl_s": 100, "heartbeat_timeout_s": 1000}))
                .await
        }
    };
    let mut old = Vec::new();
    for i in 0..OLD {
        let run = create(format!("old-{i}")).await;
        a.append(&run, logs_with_ids("m", 1)).await;
        old.push(run);
    }
    let fresh = create("fresh".to_owned()).await;
    let mut last_seqs: Vec<(String, u64)> = old.iter().map(|r| (r.id.clone(), 1)).collect();
    last_seqs.push(("fresh".to_owned(), 0));
    for (sse, hub) in streams.iter_mut().zip(["A", "B"]) {
        shown(sse, hub, &last_seqs).await;
    }

    clock.advance(50.0);
    b.append(&fresh, logs_with_ids("n", 1)).await;
    clock.advance(51.0);
    sweep_both(&a, &b).await;
    sweep_both(&a, &b).await;

    let mut expected: Vec<String> = old.iter().map(|r| r.id.clone()).collect();
    expected.sort();
    for run in &old {
        for hub in [&a, &b] {
            let (status, body) = hub
                .call(Method::GET, &format!("/v1/runs/{}", run.id), None, None)
                .await;
            assert_eq!(
                status,
                StatusCode::NOT_FOUND,
                "{} through {}",
                run.id,
                hub.url
            );
            error_body(&body, "run_not_found");
        }
    }
    assert_eq!(a.state(&fresh).await["last_seq"], 1, "51 s of 100: kept");
    assert_eq!(b.state(&fresh).await["last_seq"], 1, "51 s of 100: kept");

    // Each hub's list tells each deletion once. A hub tells of its own deletions as
    // its sweep makes them, and of the other's when notified; a change of `fresh`
    // through the other hub is notified after all of those, so up to it each hub must
    // have told every deletion, once.
    b.append(&fresh, logs_with_ids("o", 1)).await;
    assert_eq!(deleted_until(&mut streams[0], 2).await, expected, "hub A");
    a.append(&fresh, logs_with_ids("p", 1)).await;
    assert_eq!(deleted_until(&mut streams[1], 3).await, expected, "hub B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_deleting_expired_runs_at_once_delete_each_once() {
    const RUNS: usize = 60;
    let clock = manual_clock();
    let db = TestDb::new(StoreKind::Postgres).await;
    let a = TestHub::on(&db, quiet(), Some(clock.clone())).await;
    for i in 0..RUNS {
        let id = format!("old-{i}");
        a.create(json!({"id": id, "name": id, "ttl_s": 100})).await;
    }
    let stores: Vec<Arc<dyn Store>> = [
        herald_hub::open_store(db.url()).await,
        herald_hub::open_store(db.url()).await,
    ]
    .into_iter()
    .map(|store| store.expect("the store opens"))
    .collect();
    let now: Timestamp = clock.now().add_seconds(101.0);
    // Small batches, so that the two interleave.
    let deleting = stores.iter().map(|store| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut deleted = Vec::new();
            loop {
                let batch = store
                    .delete_expired(now, 7)
                    .await
                    .expect("delete_expired succeeds");
                if batch.is_empty() {
                    return deleted;
                }
                deleted.extend(batch.into_iter().map(|(id, _)| id.as_str().to_owned()));
            }
        })
    });
    let mut deleted = Vec::new();
    for task in deleting.collect::<Vec<_>>() {
        deleted.extend(within("deleting", task).await.expect("the task ran"));
    }
    deleted.sort();
    let mut expected: Vec<String> = (0..RUNS).map(|i| format!("old-{i}")).collect();
    expected.sort();
    assert_eq!(deleted, expected, "each run deleted once, by one of them");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_on_one_hub_answers_when_the_other_appends() {
    let (a, b) = two_hubs(None).await;
    let run = a.create_named("lp").await;
    a.append(&run, logs_with_ids("before", 1)).await;
    let waiting = tokio::spawn({
        let b = b.clone();
        let run = run.clone();
        async move { b.poll(&run, "after=1&wait=30").await }
    });
    subscribers(&b, 1.0).await;
    assert!(!waiting.is_finished(), "the poll waits for an event");
    a.append(&run, logs_with_ids("after", 1)).await;
    // Within `within`'s deadline, a third of the wait: it did not sit the wait out.
    let polled = within("the long poll on B", waiting)
        .await
        .expect("the poll ran");
    assert_eq!(seqs(&polled.events), [2]);
    assert_eq!(ids(&polled.events), ["after0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runs_stream_of_one_hub_shows_the_other_s_creations_finishes_and_deletions() {
    let (a, b) = two_hubs(None).await;
    let mut sse = b.sse("/v1/runs/stream", None, &[]).await;
    assert_eq!(sse.status, StatusCode::OK);
    subscribers(&b, 1.0).await;

    let run: Run = a.create(json!({"id": "listed", "name": "Listed"})).await;
    let (event, state) = next_change(&mut sse).await;
    assert_eq!(event, "run");
    assert_eq!(
        (&state["id"], &state["name"], &state["status"]),
        (&json!("listed"), &json!("Listed"), &json!("running"))
    );
    a.append(&run, json!([finished("succeeded")])).await;
    let (event, state) = next_change(&mut sse).await;
    assert_eq!(event, "run");
    assert_eq!(
        (&state["id"], &state["status"], &state["last_seq"]),
        (&json!("listed"), &json!("succeeded"), &json!(1))
    );
    let (status, _) = a.call(Method::DELETE, "/v1/runs/listed", None, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        next_change(&mut sse).await,
        ("deleted".to_owned(), json!({"id": "listed"}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_deleted_through_one_hub_ends_a_stream_on_the_other() {
    let (a, b) = two_hubs(None).await;
    let run = a.create_named("doomed").await;
    a.append(&run, logs_with_ids("m", 1)).await;
    let mut sse = b.stream(&run, "after=1", None).await;
    assert_eq!(sse.status, StatusCode::OK);
    subscribers(&b, 1.0).await;
    // An event first, so that B's stream has looked at the run and is waiting, rather
    // than about to find it gone by looking.
    a.append(&run, logs_with_ids("n", 1)).await;
    assert_eq!(sse.event().await.seq, 2);
    let (status, _) = a.call(Method::DELETE, "/v1/runs/doomed", None, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(sse.message().await, None, "B's stream ends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runs_stream_tells_of_a_deletion_it_missed_while_its_listener_was_down() {
    let (a, b) = two_hubs(None).await;
    let db = b.db.clone();
    let admin = PgPool::connect(&postgres_admin_url())
        .await
        .expect("PostgreSQL, which the hubs reached, is reachable");
    a.create_named("kept").await;
    a.create_named("gone").await;
    let mut sse = b.sse("/v1/runs/stream", None, &[]).await;
    assert_eq!(sse.status, StatusCode::OK);
    // B's list, then a run created through A after it: once B shows that run, B has
    // handled the earlier creations' wake-ups too, and the stream read all they made B
    // send.
    a.create_named("last").await;
    let listed = [("kept".into(), 0), ("gone".into(), 0), ("last".into(), 0)];
    shown(&mut sse, "B", &listed).await;

    // B cannot hear of the deletion: its listener is cut off, and reconnects only after.
    allow_connections(&admin, &db, false).await;
    assert_eq!(
        cut(&admin, &db, "herald-listener").await,
        2,
        "A's and B's listeners terminated"
    );
    let (status, _) = a.call(Method::DELETE, "/v1/runs/gone", None, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    allow_connections(&admin, &db, true).await;

    // Once B listens again it resends its list, first telling of what left it. Nothing
    // else can tell B of the deletion: it handled every wake-up before the cut, and its
    // listener was away when the deletion's notification went.
    assert_eq!(
        next_change(&mut sse).await,
        ("deleted".to_owned(), json!({"id": "gone"})),
        "the resync tells of the deletion first"
    );
    for id in ["kept", "last"] {
        let (event, state) = next_change(&mut sse).await;
        assert_eq!(
            (event.as_str(), &state["id"]),
            ("run", &json!(id)),
            "then resends the list, oldest first: {state}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hubs_answer_503_while_the_database_is_gone_and_go_on_when_it_is_back() {
    let (a, b) = two_hubs(None).await;
    let db = a.db.clone();
    let admin = PgPool::connect(&postgres_admin_url())
        .await
        .expect("PostgreSQL, which the hubs reached, is reachable");
    let run = a.create_named("restart").await;
    let mut sse = b.stream(&run, "", None).await;
    subscribers(&b, 1.0).await;
    a.append(&run, logs_with_ids("before-", 3)).await;
    let mut received = Vec::new();
    for _ in 0..3 {
        received.push(sse.event().await);
    }

    // As a restart does: every connection goes, pooled and listening, and none is let
    // in for a while.
    allow_connections(&admin, &db, false).await;
    cut(&admin, &db, "herald%").await;
    let path = format!("/v1/runs/{}/events", run.id);
    let (status, body) = a
        .call(
            Method::POST,
            &path,
            Some(&run.write_token),
            Some(logs_with_ids("refused-", 2)),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    error_body(&body, "unavailable");
    let (status, body) = b.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    allow_connections(&admin, &db, true).await;
    // Both hubs write again at once, and B's stream, which stayed open, misses nothing.
    a.append(&run, logs_with_ids("after-a-", 2)).await;
    b.append(&run, logs_with_ids("after-b-", 2)).await;
    a.append(&run, json!([finished("succeeded")])).await;
    received.extend(rest_of(&mut sse).await);
    assert_eq!(
        ids(&received[..received.len() - 1]),
        [
            "before-0",
            "before-1",
            "before-2",
            "after-a-0",
            "after-a-1",
            "after-b-0",
            "after-b-1"
        ]
    );
    assert_eq!(
        received,
        a.all_events(&run).await,
        "as stored, nothing refused"
    );
    let (status, _) = b.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_through_one_hub_reaches_the_producer_appending_through_the_other() {
    let (a, b) = two_hubs(None).await;
    let run = a.create_named("stop-me").await;
    let reply = a.append(&run, logs_with_ids("work-", 2)).await;
    assert_eq!(reply["cancel_requested"], false);
    // A viewer on B (the dashboard behind the same load balancer) cancels it.
    let (status, body) = b
        .call(
            Method::POST,
            &format!("/v1/runs/{}/cancel", run.id),
            Some(&run.write_token),
            Some(json!({"reason": "from the dashboard"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The producer's next append through A is told, and A's state shows it.
    let reply = a.append(&run, logs_with_ids("more-", 1)).await;
    assert_eq!(reply["cancel_requested"], true, "{reply}");
    assert_eq!(reply["last_seq"], 4);
    let state = a.state(&run).await;
    assert_eq!(state["cancel_requested"], true);
    assert_eq!(state["cancel_reason"], "from the dashboard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubs_starting_together_on_a_new_database_migrate_it_once() {
    let db = TestDb::new(StoreKind::Postgres).await;
    let (first, second, third) = tokio::join!(
        herald_hub::PostgresStore::connect(db.url()),
        herald_hub::PostgresStore::connect(db.url()),
        herald_hub::PostgresStore::connect(db.url()),
    );
    for store in [&first, &second, &third] {
        if let Err(e) = store {
            panic!("a hub starting beside others failed: {e}");
        }
    }
    let admin = PgPool::connect(db.url()).await.expect("the test database");
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&admin)
        .await
        .expect("sqlx's migrations table");
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .expect("the migrations")
        .count();
    assert_eq!(applied, files as i64, "each migration applied once");
    admin.close().await;
}
