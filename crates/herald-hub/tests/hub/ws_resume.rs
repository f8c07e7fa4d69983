//! The WebSocket resumed with `{"after": SEQ}` across many disconnects: every event
//! exactly once, in order, whether it was stored while the client was away or arrived
//! live.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::STORE;
use crate::util::{TestHub, finished, logs};

const RECONNECTS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_resumed_with_after_twenty_times_delivers_every_event_once_in_order() {
    let hub = TestHub::open(STORE).await;
    let run = hub.create_named("resumed").await;
    let mut rng = StdRng::seed_from_u64(11);
    // The seq of every event the client received, in order of arrival.
    let mut seen: Vec<u64> = Vec::new();
    let mut last_seq = 0u64;

    for round in 0..=RECONNECTS {
        // Events stored while the client is away (at least one, so that the client is
        // always behind when it comes back).
        let away = logs(&format!("away{round}-"), rng.random_range(1..=8));
        last_seq = hub.append(&run, away).await["last_seq"]
            .as_u64()
            .expect("last_seq");

        // The client reconnects at the run's end, where nothing is sent until it says
        // where it was: so whatever arrives after `{"after": N}` answers it.
        let mut ws = hub
            .ws(&run.id, &format!("after={last_seq}"), Some(&run.read_token))
            .await
            .expect("a socket");
        let resume_from = seen.last().copied().unwrap_or(0);
        ws.send(&json!({"after": resume_from}).to_string()).await;
        for _ in resume_from..last_seq {
            seen.push(ws.event().await.seq);
        }

        // Live events while connected; the client leaves after some of them, and
        // stays to the end of the run the last time.
        let live = if round == RECONNECTS {
            json!([finished("succeeded")])
        } else {
            logs(&format!("live{round}-"), rng.random_range(1..=5))
        };
        let before = last_seq;
        last_seq = hub.append(&run, live).await["last_seq"]
            .as_u64()
            .expect("last_seq");
        if round == RECONNECTS {
            seen.push(ws.event().await.seq);
            assert_eq!(ws.next().await, None, "closed after run.finished");
            break;
        }
        for _ in 0..rng.random_range(0..=last_seq - before) {
            seen.push(ws.event().await.seq);
        }
        // Dropping the socket mid-stream is the disconnect.
    }

    assert_eq!(
        seen,
        (1..=last_seq).collect::<Vec<_>>(),
        "every event once, in order, across {RECONNECTS} reconnects"
    );
    let events = hub.all_events(&run).await;
    assert_eq!(events.len() as u64, last_seq);
    assert_eq!(events.last().map(|e| e.event_type()), Some("run.finished"));
}
