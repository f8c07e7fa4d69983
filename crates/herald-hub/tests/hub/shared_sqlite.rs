//! Two hubs on one SQLite file, each through a store of its own, as two `herald serve`
//! processes on one data directory would be. SQLite has no notifications, so the
//! feeds' interval poll (`feed_poll_interval`, 2 s) is the only path by which an event
//! appended through one hub reaches the subscribers of the other.

use std::time::{Duration, Instant};

use herald_hub::HubConfig;
use reqwest::Method;
use serde_json::json;

use crate::util::{StoreKind, TestDb, TestHub, finished, logs, wait_until, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_appended_through_one_hub_reaches_a_subscriber_of_the_other_by_the_interval_poll()
{
    let db = TestDb::new(StoreKind::Sqlite).await;
    let config = HubConfig::default();
    assert_eq!(config.feed_poll_interval, Duration::from_secs(2));
    let writer = TestHub::on(&db, config.clone(), None).await;
    let reader = TestHub::on(&db, config, None).await;
    let store = herald_hub::open_store(db.url())
        .await
        .expect("the store opens");
    assert!(
        store.wakes().is_none(),
        "a SQLite store has no notifications: the poll is the only path"
    );
    drop(store);
    let run = writer.create_named("shared").await;
    writer.append(&run, logs("first", 1)).await;

    // The reader's stream delivers what was stored, then waits on the reader's feed,
    // which only the reader's poll of the file can fill: the reader itself never
    // appends to this run.
    let mut sse = reader.stream(&run, "", None).await;
    assert_eq!(sse.event().await.seq, 1);
    let mut latencies = Vec::new();
    for seq in 2..=4 {
        let appended = Instant::now();
        writer.append(&run, logs(&format!("m{seq}-"), 1)).await;
        let event = sse.event().await;
        latencies.push(appended.elapsed());
        assert_eq!(event.seq, seq);
    }

    // A long poll on the reader, waiting when the event is appended, is answered too.
    let poll = tokio::spawn({
        let (url, run) = (reader.url.clone(), run.clone());
        async move {
            let resp = reqwest::Client::new()
                .get(format!("{url}/v1/runs/{}/events?after=4&wait=9", run.id))
                .bearer_auth(&run.read_token)
                .send()
                .await
                .expect("the reader answers");
            resp.json::<serde_json::Value>().await.expect("JSON")
        }
    });
    // The poll is waiting once the reader counts it as a subscriber.
    wait_until("the long poll to wait", || async {
        reader.metric("herald_subscribers").await >= 2.0
    })
    .await;
    writer.append(&run, json!([finished("succeeded")])).await;
    let polled = within("the long poll", poll).await.expect("the poll ran");
    assert_eq!(polled["events"][0]["seq"], 5, "{polled}");
    assert_eq!(polled["events"][0]["event"], "run.finished", "{polled}");

    // The stream delivers the run's end and closes.
    let last = sse.event().await;
    assert_eq!((last.seq, last.event_type()), (5, "run.finished"));
    assert_eq!(sse.message().await, None);
    // The reader's own view of the run agrees.
    let (status, state) = reader
        .call(Method::GET, &format!("/v1/runs/{}", run.id), None, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(state["status"], "succeeded");
    eprintln!(
        "shared SQLite file: appended through one hub, seen through the other after {latencies:?}"
    );
}
