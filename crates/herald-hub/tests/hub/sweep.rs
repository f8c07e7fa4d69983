//! Stall detection and retention on a manual clock (no sleeping), and cancel.

use herald_hub::HubConfig;
use herald_protocol::{Event, EventBody};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::STORE;
use crate::util::{Case, Run, TestHub, check, error_body, finished, logs, types};

async fn sweep(hub: &TestHub) {
    hub.hub.sweep().await.expect("the sweep runs");
}

fn stalls(events: &[Event]) -> Vec<f64> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::RunStalled(s) => Some(s.silent_for_s),
            _ => None,
        })
        .collect()
}

async fn status(hub: &TestHub, run: &Run) -> Value {
    hub.state(run).await["status"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_run_stalls_once_and_recovers_when_the_producer_speaks() {
    let config = HubConfig {
        default_heartbeat_timeout_s: 10.0,
        ..HubConfig::default()
    };
    let hub = TestHub::with_clock(STORE, config).await;
    let run = hub
        .create(json!({"id": "quiet", "name": "quiet", "heartbeat_timeout_s": 30}))
        .await;
    let done = hub.create_named("done").await;
    let defaults = hub.create_named("defaults").await;
    hub.append(&run, json!([{"event": "run.started", "name": "quiet"}]))
        .await;
    hub.append(&done, json!([finished("succeeded")])).await;
    let mut sse = hub.stream(&run, "after=1", None).await;

    hub.advance(20.0);
    sweep(&hub).await;
    assert_eq!(status(&hub, &run).await, "running", "20 s of 30");
    assert_eq!(
        status(&hub, &defaults).await,
        "stalled",
        "the hub's default of 10 s"
    );

    hub.advance(11.0);
    sweep(&hub).await;
    sweep(&hub).await;
    let events = hub.all_events(&run).await;
    assert_eq!(types(&events), ["run.started", "run.stalled"]);
    assert_eq!(stalls(&events), [31.0]);
    assert_eq!(status(&hub, &run).await, "stalled");
    assert_eq!(hub.poll(&run, "").await.status, "stalled");
    let stalled = sse.event().await;
    assert_eq!((stalled.seq, stalled.event_type()), (2, "run.stalled"));
    // A finished run is never stalled.
    assert_eq!(types(&hub.all_events(&done).await), ["run.finished"]);
    assert_eq!(status(&hub, &done).await, "succeeded");
    // And `defaults` got one stall, however many sweeps passed.
    assert_eq!(stalls(&hub.all_events(&defaults).await).len(), 1);

    // The producer speaks: running again.
    hub.advance(5.0);
    hub.append(&run, json!([{"event": "heartbeat", "elapsed_s": 36}]))
        .await;
    assert_eq!(status(&hub, &run).await, "running");
    assert_eq!(sse.event().await.event_type(), "heartbeat");
    sweep(&hub).await;
    assert_eq!(status(&hub, &run).await, "running", "the heartbeat counts");

    // A later silence stalls it again, once.
    hub.advance(29.0);
    sweep(&hub).await;
    assert_eq!(status(&hub, &run).await, "running");
    hub.advance(2.0);
    sweep(&hub).await;
    hub.advance(100.0);
    sweep(&hub).await;
    let events = hub.all_events(&run).await;
    assert_eq!(
        types(&events),
        ["run.started", "run.stalled", "heartbeat", "run.stalled"]
    );
    assert_eq!(stalls(&events), [31.0, 31.0]);
    assert_eq!(status(&hub, &run).await, "stalled");
    assert_eq!(sse.event().await.event_type(), "run.stalled");

    // A stalled run can still finish.
    hub.append(&run, json!([finished("failed")])).await;
    assert_eq!(status(&hub, &run).await, "failed");
    assert_eq!(sse.event().await.event_type(), "run.finished");
    assert_eq!(sse.message().await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_s_own_events_do_not_count_as_the_producer_speaking() {
    let hub = TestHub::with_clock(STORE, HubConfig::default()).await;
    let run = hub
        .create(json!({"id": "c", "name": "c", "heartbeat_timeout_s": 30}))
        .await;
    hub.append(&run, logs("m", 1)).await;
    hub.advance(20.0);
    let (status, reply) = hub
        .call(
            Method::POST,
            "/v1/runs/c/cancel",
            Some(&run.write_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    hub.advance(11.0);
    sweep(&hub).await;
    assert_eq!(
        types(&hub.all_events(&run).await),
        ["log", "run.cancel_requested", "run.stalled"]
    );
    assert_eq!(stalls(&hub.all_events(&run).await), [31.0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_deleted_ttl_after_their_last_event() {
    let hub = TestHub::with_clock(STORE, HubConfig::default()).await;
    let create = |id: &'static str| {
        let hub = &hub;
        async move {
            hub.create(json!({"id": id, "name": id, "ttl_s": 100, "heartbeat_timeout_s": 1000}))
                .await
        }
    };
    let old = create("old").await;
    let fresh = create("fresh").await;
    let empty = create("empty").await;
    hub.append(&old, logs("m", 1)).await;
    hub.append(&fresh, logs("m", 1)).await;
    let mut runs = hub.sse("/v1/runs/stream", None, &[]).await;
    for _ in 0..3 {
        assert_eq!(
            runs.message().await.expect("a run").event.as_deref(),
            Some("run")
        );
    }

    hub.advance(50.0);
    hub.append(&fresh, logs("n", 1)).await;
    assert_eq!(
        runs.message().await.expect("fresh's change").json()["id"],
        "fresh"
    );
    hub.advance(50.0);
    sweep(&hub).await;
    assert_eq!(
        status(&hub, &old).await,
        "running",
        "exactly ttl_s is not past it"
    );

    hub.advance(10.0);
    sweep(&hub).await;
    let mut deleted = Vec::new();
    for _ in 0..2 {
        let message = runs.message().await.expect("a deletion");
        assert_eq!(message.event.as_deref(), Some("deleted"));
        deleted.push(message.json()["id"].as_str().expect("an id").to_owned());
    }
    deleted.sort();
    assert_eq!(deleted, ["empty", "old"]);
    for gone in [&old, &empty] {
        let (status, body) = hub
            .call(Method::GET, &format!("/v1/runs/{}", gone.id), None, None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{}", gone.id);
        error_body(&body, "run_not_found");
    }
    assert_eq!(hub.state(&fresh).await["last_seq"], 2, "60 s of 100: kept");

    hub.advance(41.0);
    sweep(&hub).await;
    let (status, _) = hub.call(Method::GET, "/v1/runs/fresh", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let message = runs.message().await.expect("a deletion");
    assert_eq!(message.json(), json!({"id": "fresh"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_appends_run_cancel_requested_and_the_producer_sees_it() {
    let hub = TestHub::with_admin(STORE).await;
    let run = hub.create_named("job").await;
    let reply = hub.append(&run, logs("m", 1)).await;
    assert_eq!(reply["cancel_requested"], false);
    let (status, reply) = hub
        .call(
            Method::POST,
            "/v1/runs/job/cancel",
            Some(&run.write_token),
            Some(json!({"reason": "the user pressed stop"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply, json!({"cancel_requested": true, "last_seq": 2}));

    let events = hub.all_events(&run).await;
    assert_eq!(types(&events), ["log", "run.cancel_requested"]);
    match &events[1].body {
        EventBody::RunCancelRequested(c) => {
            assert_eq!(c.reason.as_deref(), Some("the user pressed stop"));
        }
        other => panic!("{other:?}"),
    }
    let state = hub.state(&run).await;
    assert_eq!(state["cancel_requested"], true);
    assert_eq!(state["status"], "running", "cancel is advisory");

    // The producer's next append hears of it.
    let reply = hub.append(&run, logs("still going", 1)).await;
    assert_eq!(reply["cancel_requested"], true, "{reply}");
    hub.append(&run, json!([finished("cancelled")])).await;
    assert_eq!(hub.state(&run).await["status"], "cancelled");

    // The admin may cancel too.
    let other = hub.create_named("other").await;
    let (status, _) = hub
        .call(
            Method::POST,
            "/v1/runs/other/cancel",
            hub.admin.as_deref(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(hub.state(&other).await["cancel_requested"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_and_stalls_follow_the_hub_s_clock_and_far_off_times_are_refused() {
    let hub = TestHub::with_clock(STORE, HubConfig::default()).await;
    let run = hub
        .create(json!({"id": "skewed", "name": "skewed", "ttl_s": 100, "heartbeat_timeout_s": 30}))
        .await;
    let clock = hub.clock.as_ref().expect("a manual clock");
    let at = |secs: f64| {
        herald_hub::Clock::now(&**clock)
            .add_seconds(secs)
            .to_string()
    };
    let log = |ts: String| json!({"event": "log", "level": "info", "message": "m", "ts": ts});
    // Too far from the hub's clock: refused, naming the field and the event.
    let cases = vec![
        Case::new("ts in 9999", Method::POST, "/v1/runs/skewed/events")
            .json(json!([log(at(0.0)), log("9999-12-31T23:59:59Z".into())]))
            .expect(400, "invalid_field")
            .field("ts")
            .index(1),
        Case::new("ts in year 1", Method::POST, "/v1/runs/skewed/events")
            .json(json!([log("0001-01-01T00:00:00Z".into())]))
            .expect(400, "invalid_field")
            .field("ts")
            .index(0),
        Case::new(
            "ts an hour and a second ahead",
            Method::POST,
            "/v1/runs/skewed/events",
        )
        .json(json!([log(at(3601.0))]))
        .expect(400, "invalid_field")
        .field("ts")
        .index(0),
        Case::new(
            "ts a week and a second behind",
            Method::POST,
            "/v1/runs/skewed/events",
        )
        .json(json!([log(at(-7.0 * 86_400.0 - 1.0))]))
        .expect(400, "invalid_field")
        .field("ts")
        .index(0),
    ];
    check(&hub, cases).await;
    assert!(
        hub.all_events(&run).await.is_empty(),
        "nothing of them stored"
    );

    // Within the bounds: taken, as the producer stamped them. The latest is 59 min
    // ahead of the hub, which neither keeps the run alive nor delays its stall.
    hub.append(
        &run,
        json!([log(at(-7.0 * 86_400.0 + 1.0)), log(at(3540.0))]),
    )
    .await;
    let state = hub.state(&run).await;
    assert_eq!(state["last_event_at"], at(3540.0), "{state}");
    hub.advance(31.0);
    sweep(&hub).await;
    assert_eq!(
        status(&hub, &run).await,
        "stalled",
        "30 s after the hub received it"
    );
    // The stall at 31 s is the run's last event: it is deleted ttl_s after that, by
    // the hub's clock, not an hour later as its producer's times would have it.
    hub.advance(99.0);
    sweep(&hub).await;
    assert_eq!(
        status(&hub, &run).await,
        "stalled",
        "exactly ttl_s is not past it"
    );
    hub.advance(2.0);
    sweep(&hub).await;
    let (status, _) = hub.call(Method::GET, "/v1/runs/skewed", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
