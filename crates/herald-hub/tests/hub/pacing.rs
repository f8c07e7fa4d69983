//! How fast the streams speak: `view=state` sends at most four states a second however
//! fast events come, and a quiet stream gets a keep-alive comment every `keep_alive`
//! (15 s by default).

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_hub::HubConfig;
use serde_json::json;

use super::STORE;
use crate::util::{Frame, TestHub, finished};

/// The smallest burst, in appends, and its shortest duration: far more changes than
/// four a second would let through.
const BURST_APPENDS: u64 = 100;
const BURST: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_view_sends_at_most_four_states_a_second_during_a_burst() {
    let hub = Arc::new(TestHub::open(STORE).await);
    let run = hub.create_named("burst").await;
    hub.append(
        &run,
        json!([{"event": "stage.started", "stage": "s", "total": 1_000_000}]),
    )
    .await;

    let opened = Instant::now();
    let mut states = hub.stream(&run, "view=state", None).await;
    let first = states.message().await.expect("the state on connect");
    assert_eq!(first.json()["last_seq"], 1);

    // One event per append, each a change of state, as fast as the hub takes them,
    // for at least BURST and BURST_APPENDS appends.
    let producer = tokio::spawn({
        let (hub, run) = (hub.clone(), run.clone());
        async move {
            let started = Instant::now();
            let mut done = 0u64;
            while done < BURST_APPENDS || started.elapsed() < BURST {
                done += 1;
                hub.append(
                    &run,
                    json!([{"event": "progress", "stage": "s", "done": done, "elapsed_s": 1}]),
                )
                .await;
            }
            hub.append(&run, json!([finished("succeeded")])).await;
            done
        }
    });

    let mut count = 1u64;
    let mut last = first.json();
    while let Some(message) = states.message().await {
        assert_eq!(message.event.as_deref(), Some("state"));
        count += 1;
        last = message.json();
    }
    let span = opened.elapsed().as_secs_f64();
    let appends = producer.await.expect("the producer ran");
    eprintln!("view=state: {count} states in {span:.2}s for {appends} appends");

    // The stream ended with the run's final state, so it kept up with the burst...
    assert_eq!(last["status"], "succeeded", "{last}");
    assert_eq!(last["last_seq"], appends + 2, "{last}");
    // ...and after the state on connect, each state waited a quarter of a second: in
    // `span` seconds (measured around the whole stream, so never shorter than the
    // hub's) at most 1 + 4 * span states. Unthrottled, it would be one per append.
    let bound = 1.0 + 4.0 * span;
    assert!(
        (count as f64) <= bound + 1.0,
        "{count} states in {span:.2}s for {appends} appends: more than four a second"
    );
    assert!(
        appends as f64 > 2.0 * (bound + 1.0),
        "the burst ({appends} appends in {span:.2}s) is too small to show the limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alives_come_every_configured_interval_and_every_15_s_by_default() {
    assert_eq!(HubConfig::default().keep_alive, Duration::from_secs(15));

    let every = Duration::from_millis(300);
    let config = HubConfig {
        keep_alive: every,
        ..HubConfig::default()
    };
    let hub = TestHub::start(STORE, config, None).await;
    let run = hub.create_named("quiet").await;
    let stream = format!("/v1/runs/{}/stream", run.id);
    // Every SSE route: the run's events, its state, its AG-UI form, the runs list.
    let paths = [
        stream.clone(),
        format!("{stream}?view=state"),
        format!("{stream}?format=ag-ui"),
        "/v1/runs/stream".to_owned(),
    ];
    for path in &paths {
        let opened = Instant::now();
        let mut sse = hub.sse(path, Some(&run.read_token), &[]).await;
        assert_eq!(sse.status, 200, "{path}");
        let mut comments = 0u32;
        while comments < 3 {
            // Messages (a state on connect, the runs list) may come between them.
            match sse.frame().await {
                Some(Frame::Comment(_)) => comments += 1,
                Some(Frame::Message(_)) => {}
                None => panic!("{path}: the stream ended"),
            }
        }
        // The interval paces them: three cannot come sooner than three intervals
        // after the stream opened (and each came within the test's deadline).
        let took = opened.elapsed();
        assert!(
            took >= every * 3,
            "{path}: three keep-alives in {took:?}, faster than every {every:?}"
        );
    }
}
