//! `GET /v1/runs/stream`: the states of many runs on one connection.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use herald_hub::{
    Appended, Author, HubConfig, ManualClock, NewRun, RunFilter, RunRecord, Store, StoreError, Wake,
};
use herald_protocol::{Draft, Event, RunId, RunStatus, Timestamp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::{broadcast, oneshot};

use super::STORE;
use crate::util::{Run, Sse, TestDb, TestHub, finished, logs, manual_clock, within};

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

/// A store over the test's database that hands its hub only the wake-ups the test
/// sends, and can hold one read of a run after the database answered it. So a test
/// decides when another hub's change reaches this hub, and what lands while this hub
/// reads the run: the timing a busy machine produces now and then, every time.
struct Steered {
    inner: Arc<dyn Store>,
    wakes: broadcast::Sender<Wake>,
    hold: Mutex<Option<Hold>>,
}

/// The next read of `run`: it says when the database has answered, then waits.
struct Hold {
    run: RunId,
    read: oneshot::Sender<()>,
    release: oneshot::Receiver<()>,
}

impl Steered {
    /// Wakes the hub as a notification of another hub's change would.
    fn wake(&self, wake: Wake) {
        self.wakes.send(wake).expect("the hub's waker listens");
    }

    /// Wakes the hub for a change of `run`.
    fn wake_for(&self, run: &Run) {
        self.wake(Wake::Run(run_id(run)));
    }

    /// Holds the next read of `run`: the first receiver resolves once the database has
    /// answered it, and the read returns once the sender is used.
    fn hold(&self, run: &Run) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (read, was_read) = oneshot::channel();
        let (release, released) = oneshot::channel();
        *self.hold.lock().expect("the hold") = Some(Hold {
            run: run_id(run),
            read,
            release: released,
        });
        (was_read, release)
    }
}

#[async_trait]
impl Store for Steered {
    async fn create_run(&self, run: &NewRun) -> Result<RunRecord, StoreError> {
        self.inner.create_run(run).await
    }

    async fn run(&self, id: &RunId) -> Result<RunRecord, StoreError> {
        let record = self.inner.run(id).await;
        let hold = {
            let mut hold = self.hold.lock().expect("the hold");
            match hold.take() {
                Some(h) if h.run == *id => Some(h),
                other => {
                    *hold = other;
                    None
                }
            }
        };
        if let Some(hold) = hold {
            let _ = hold.read.send(());
            let _ = hold.release.await;
        }
        record
    }

    async fn token(&self, hash: &str) -> Result<Option<(RunId, herald_hub::Scope)>, StoreError> {
        self.inner.token(hash).await
    }

    async fn append(
        &self,
        id: &RunId,
        drafts: Vec<Draft>,
        now: Timestamp,
        author: Author,
    ) -> Result<Appended, StoreError> {
        self.inner.append(id, drafts, now, author).await
    }

    async fn mark_stalled(
        &self,
        id: &RunId,
        draft: Draft,
        now: Timestamp,
    ) -> Result<Appended, StoreError> {
        self.inner.mark_stalled(id, draft, now).await
    }

    async fn events(&self, id: &RunId, after: u64, limit: u32) -> Result<Vec<Event>, StoreError> {
        self.inner.events(id, after, limit).await
    }

    async fn list(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        self.inner.list(filter).await
    }

    async fn delete(&self, id: &RunId) -> Result<u64, StoreError> {
        self.inner.delete(id).await
    }

    async fn silent_runs(&self, now: Timestamp) -> Result<Vec<RunRecord>, StoreError> {
        self.inner.silent_runs(now).await
    }

    async fn delete_expired(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(RunId, u64)>, StoreError> {
        self.inner.delete_expired(now, limit).await
    }

    async fn count_by_status(&self) -> Result<Vec<(RunStatus, u64)>, StoreError> {
        self.inner.count_by_status().await
    }

    fn unreadable_events(&self) -> u64 {
        self.inner.unreadable_events()
    }

    fn wakes(&self) -> Option<broadcast::Receiver<Wake>> {
        Some(self.wakes.subscribe())
    }
}

fn run_id(run: &Run) -> RunId {
    RunId::new(run.id.clone()).expect("a run id")
}

/// A hub over a [`Steered`] store, and another hub on the same database (the "other
/// hub" whose changes the test delivers), both reading `clock` if given. Their
/// sweepers are slowed to once an hour, so that nothing but the test changes runs.
async fn steered(clock: Option<Arc<ManualClock>>) -> (TestHub, Arc<Steered>, TestHub) {
    let config = HubConfig {
        sweep_interval: Duration::from_secs(3600),
        ..HubConfig::default()
    };
    let db = TestDb::new(STORE).await;
    let inner = herald_hub::open_store(db.url())
        .await
        .expect("the store opens");
    let store = Arc::new(Steered {
        inner,
        wakes: broadcast::channel(64).0,
        hold: Mutex::new(None),
    });
    let hub = TestHub::serving(&db, store.clone(), config.clone(), clock.clone()).await;
    let other = TestHub::on(&db, config, clock).await;
    (hub, store, other)
}

/// The next message of a runs stream, in short: `run ID@LAST_SEQ` or `deleted ID`.
async fn next_told(sse: &mut Sse) -> String {
    let message = sse.message().await.expect("a message");
    let body = message.json();
    let id = body["id"].as_str().expect("an id");
    match message.event.as_deref() {
        Some("run") => format!("run {id}@{}", body["last_seq"]),
        Some("deleted") => format!("deleted {id}"),
        other => panic!("unexpected {other:?}: {body}"),
    }
}

/// The first `n` messages of a runs stream, sorted (the list's order is by creation,
/// not what these tests are about).
async fn listed(sse: &mut Sse, n: usize) -> Vec<String> {
    let mut told = Vec::new();
    for _ in 0..n {
        told.push(next_told(sse).await);
    }
    told.sort();
    told
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_wake_up_does_not_send_a_listed_state_again() {
    let (hub, store, other) = steered(None).await;
    let kept = other.create_named("kept").await;
    let late = other.create_named("late").await;
    let mut sse = hub.sse("/v1/runs/stream", None, &[]).await;
    assert_eq!(listed(&mut sse, 2).await, ["run kept@0", "run late@0"]);

    // The wake-ups of the two creations reach this hub only after it sent its list
    // (a busy machine), then a change after them does.
    store.wake_for(&kept);
    store.wake_for(&late);
    other.append(&kept, logs("m", 1)).await;
    store.wake_for(&kept);
    assert_eq!(
        next_told(&mut sse).await,
        "run kept@1",
        "the list's states are not sent again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_read_before_a_deletion_is_not_sent_after_it() {
    let (hub, store, other) = steered(None).await;
    let doomed = other.create_named("doomed").await;
    let mut sse = hub.sse("/v1/runs/stream", None, &[]).await;
    assert_eq!(next_told(&mut sse).await, "run doomed@0");
    other.append(&doomed, logs("m", 2)).await;

    // This hub reads the run for the append's wake-up, and a deletion through it lands
    // before it tells what it read.
    let (read, release) = store.hold(&doomed);
    store.wake_for(&doomed);
    within("the held read", read).await.expect("read");
    let (status, _) = hub
        .call(Method::DELETE, "/v1/runs/doomed", None, None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(next_told(&mut sse).await, "deleted doomed");
    release.send(()).expect("the read waits");

    // A change after it, from the other hub: nothing of `doomed` came between.
    let after = other.create_named("after").await;
    store.wake_for(&after);
    assert_eq!(
        next_told(&mut sse).await,
        "run after@0",
        "a deleted run is not listed again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_created_again_is_listed_and_a_stale_state_of_the_old_one_is_not() {
    // The clock stands still: both creations have the same `created_at`.
    let (hub, store, _other) = steered(Some(manual_clock())).await;
    let mut sse = hub.sse("/v1/runs/stream", None, &[]).await;
    let first = hub.create_named("again").await;
    hub.append(&first, logs("m", 3)).await;
    assert_eq!(next_told(&mut sse).await, "run again@0");
    assert_eq!(next_told(&mut sse).await, "run again@3");

    // A wake-up for that append is read, and held, while the run is deleted and
    // created again.
    let (read, release) = store.hold(&first);
    store.wake_for(&first);
    within("the held read", read).await.expect("read");
    let (status, _) = hub.call(Method::DELETE, "/v1/runs/again", None, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(next_told(&mut sse).await, "deleted again");
    let second = hub.create_named("again").await;
    assert_eq!(
        next_told(&mut sse).await,
        "run again@0",
        "created again: listed again, from seq 0"
    );
    release.send(()).expect("the read waits");

    hub.append(&second, logs("n", 1)).await;
    assert_eq!(
        next_told(&mut sse).await,
        "run again@1",
        "not the deleted run's state at seq 3 before it"
    );
}
