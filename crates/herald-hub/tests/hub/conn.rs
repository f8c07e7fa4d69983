//! How long the hub waits on a connection, and how many it keeps: a client that
//! sends half its headers, trickles its body or says nothing is cut off after the
//! configured time, while a stream that is quiet for longer stays open; past the cap,
//! new connections wait until one closes. Real sockets, small timeouts, and waits on
//! what the hub does (it closes, it answers) with a deadline. And a client that speaks
//! HTTP/2 from its first byte (h2c) is served on the same port.

use std::time::{Duration, Instant};

use herald_hub::HubConfig;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::util::{DEADLINE, RawConn, StoreKind, TestHub, error_body, logs, within};

/// A hub with these timeouts and cap; what is not given is long enough not to matter.
async fn hub_with(config: HubConfig) -> TestHub {
    TestHub::start(StoreKind::Sqlite, config, None).await
}

fn long() -> Duration {
    Duration::from_secs(3600)
}

/// `GET /healthz` on a kept-alive connection, as raw bytes.
fn healthz(hub: &TestHub) -> String {
    let host = hub.url.trim_start_matches("http://");
    format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_must_arrive_within_the_header_timeout() {
    let timeout = Duration::from_millis(300);
    let hub = hub_with(HubConfig {
        header_timeout: timeout,
        idle_timeout: long(),
        body_timeout: long(),
        ..HubConfig::default()
    })
    .await;
    let host = hub.url.trim_start_matches("http://").to_owned();

    // Half a request: the line and a header, never the blank line.
    let started = Instant::now();
    let mut half = RawConn::open(&hub.url).await;
    assert!(
        half.write(format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n").as_bytes())
            .await
    );
    // A connection that says nothing at all.
    let mut silent = RawConn::open(&hub.url).await;
    let said = half.until_closed("the hub to close half a request").await;
    assert!(said.is_empty(), "no answer to half a request: {said:?}");
    assert!(
        started.elapsed() >= timeout,
        "not before the timeout: {:?}",
        started.elapsed()
    );
    silent
        .until_closed("the hub to close a silent connection")
        .await;

    // A header a byte at a time cannot hold the connection either: the timeout runs
    // from the request's first byte, not from the last.
    let mut slow = RawConn::open(&hub.url).await;
    let request = healthz(&hub);
    let started = Instant::now();
    let mut open = true;
    for byte in request.as_bytes().chunks(1).take(request.len() - 2) {
        if !slow.write(byte).await {
            open = false;
            break;
        }
        if !slow.says_nothing_for(Duration::from_millis(50)).await {
            open = false;
            break;
        }
    }
    assert!(
        !open,
        "the hub kept a request trickling in for {:?}, past its header timeout",
        started.elapsed()
    );

    // A whole request in time is answered, and the hub serves on.
    let mut whole = RawConn::open(&hub.url).await;
    assert!(whole.write(request.as_bytes()).await);
    assert_eq!(
        whole.response("the answer to a whole request").await.status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_must_arrive_whole_within_the_body_timeout() {
    let timeout = Duration::from_millis(500);
    let hub = hub_with(HubConfig {
        body_timeout: timeout,
        header_timeout: long(),
        idle_timeout: long(),
        ..HubConfig::default()
    })
    .await;
    let run = hub.create_named("slow").await;
    let host = hub.url.trim_start_matches("http://").to_owned();
    let body = logs("m", 1).to_string();
    for (what, path) in [
        ("create", "/v1/runs".to_owned()),
        ("append", format!("/v1/runs/{}/events", run.id)),
    ] {
        let mut conn = RawConn::open(&hub.url).await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len() + 1000
        );
        // Before the head is sent: the hub's deadline starts when it has read it.
        let started = Instant::now();
        assert!(conn.write(head.as_bytes()).await);
        // A byte every 50 ms keeps the body coming, never whole: only a deadline for
        // all of it stops that.
        let mut sent = 0;
        while conn.says_nothing_for(Duration::from_millis(50)).await {
            assert!(
                started.elapsed() < DEADLINE,
                "{what}: no answer within {DEADLINE:?}"
            );
            if !conn.write(&body.as_bytes()[sent % body.len()..][..1]).await {
                break;
            }
            sent += 1;
        }
        let response = conn
            .response(&format!("the answer to the slow {what}"))
            .await;
        assert_eq!(response.status, 408, "{what}");
        assert!(
            started.elapsed() >= timeout,
            "{what}: not before the timeout"
        );
        let error = error_body(&response.json(), "body_timeout").clone();
        assert!(error["message"].to_string().contains("0.5"), "{error:?}");
        conn.until_closed("the hub to close the connection").await;
    }
    // Nothing of it was stored, and a body in time is taken.
    assert!(hub.all_events(&run).await.is_empty());
    let (_, list) = hub.call(Method::GET, "/v1/runs", None, None).await;
    assert_eq!(list["runs"].as_array().map(Vec::len), Some(1), "{list}");
    hub.append(&run, logs("m", 1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_but_quiet_streams_are_not() {
    let timeout = Duration::from_millis(300);
    let hub = hub_with(HubConfig {
        idle_timeout: timeout,
        header_timeout: long(),
        body_timeout: long(),
        ..HubConfig::default()
    })
    .await;
    let run = hub.create_named("quiet").await;
    hub.append(&run, logs("m", 1)).await;
    // Streams with no keep-alive comment due for 15 s: quiet far longer than the idle
    // timeout.
    let mut sse = hub.stream(&run, "", None).await;
    assert_eq!(sse.event().await.seq, 1);
    let mut ws = hub
        .ws(&run.id, "", Some(&run.read_token))
        .await
        .expect("a socket");
    assert_eq!(ws.event().await.seq, 1);
    let long_poll = {
        let request = hub.request(
            Method::GET,
            &format!("/v1/runs/{}/events?after=1&wait=60", run.id),
            Some(&run.read_token),
        );
        tokio::spawn(async move { request.send().await })
    };

    // A kept-alive connection, between requests, is closed after the idle timeout.
    let mut idle = RawConn::open(&hub.url).await;
    assert!(idle.write(healthz(&hub).as_bytes()).await);
    assert_eq!(idle.response("the first answer").await.status, 200);
    let started = Instant::now();
    // And it can be used again before then: the timeout runs from the last answer.
    assert!(idle.write(healthz(&hub).as_bytes()).await);
    assert_eq!(idle.response("the second answer").await.status, 200);
    idle.until_closed("the hub to close an idle connection")
        .await;
    assert!(started.elapsed() >= timeout, "not before the timeout");

    // The streams, quiet for longer than that, are still open.
    hub.append(&run, logs("n", 1)).await;
    assert_eq!(sse.event().await.seq, 2);
    assert_eq!(ws.event().await.seq, 2);
    let polled = within("the long poll", long_poll)
        .await
        .expect("the task ran")
        .expect("the long poll answers");
    assert_eq!(polled.status(), StatusCode::OK);
    let polled: serde_json::Value = polled.json().await.expect("JSON");
    assert_eq!(polled["events"][0]["seq"], 2, "{polled}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_a_connection_waits_until_another_closes() {
    let mut hub = hub_with(HubConfig {
        max_connections: 2,
        header_timeout: long(),
        idle_timeout: long(),
        ..HubConfig::default()
    })
    .await;
    // Two connections that say nothing take both places.
    let first = RawConn::open(&hub.url).await;
    let mut second = RawConn::open(&hub.url).await;
    // A third is taken by the kernel's backlog, and its request waits.
    let mut third = RawConn::open(&hub.url).await;
    assert!(third.write(healthz(&hub).as_bytes()).await);
    assert!(
        third.says_nothing_for(Duration::from_millis(500)).await,
        "a third connection was served past a cap of 2"
    );
    // One closes: the waiting connection is accepted and answered.
    drop(first);
    let response = third.response("the waiting request's answer").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json(), json!({"status": "ok"}));
    drop(third);

    // The hub stops, closing the connection that still says nothing.
    within("the hub to stop", hub.stop()).await;
    second
        .until_closed("the hub to close its last connection")
        .await;
}

/// Many producers on one HTTP/2 connection, without TLS or an upgrade (prior
/// knowledge): their concurrent appends are streams of that connection, each answered
/// after its events are stored, and every event is stored once, with dense `seq`s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_may_share_one_http2_connection() {
    let hub = TestHub::open(StoreKind::Sqlite).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .build()
        .expect("an HTTP/2 client");
    let ids = ["h2-a", "h2-b", "h2-c", "h2-d"];
    let mut runs = Vec::new();
    for id in ids {
        let res = within(
            "creating a run over HTTP/2",
            client
                .post(format!("{}/v1/runs", hub.url))
                .json(&json!({"id": id, "name": id}))
                .send(),
        )
        .await
        .expect("the hub answers over HTTP/2");
        assert_eq!(res.version(), reqwest::Version::HTTP_2);
        assert_eq!(res.status(), StatusCode::CREATED);
        let reply: serde_json::Value = res.json().await.expect("the created run");
        let token = |name: &str| reply[name].as_str().expect("a token").to_owned();
        runs.push(crate::util::Run {
            id: id.to_owned(),
            write_token: token("write_token"),
            read_token: token("read_token"),
        });
    }
    const PER_RUN: u64 = 25;
    let mut appends = tokio::task::JoinSet::new();
    for run in &runs {
        let id = &run.id;
        for i in 0..PER_RUN {
            let req = client
                .post(format!("{}/v1/runs/{id}/events", hub.url))
                .bearer_auth(&run.write_token)
                .json(&json!([{"event": "log", "level": "info", "message": format!("{i}"), "id": format!("{id}-{i}")}]));
            appends.spawn(async move {
                let res = req.send().await.expect("an append over HTTP/2");
                assert_eq!(res.version(), reqwest::Version::HTTP_2);
                assert_eq!(res.status(), StatusCode::OK);
                let reply: serde_json::Value = res.json().await.expect("the append's reply");
                assert_eq!(reply["appended"], 1, "{reply}");
            });
        }
    }
    within("every append to be answered", async {
        while let Some(res) = appends.join_next().await {
            res.expect("an append task");
        }
    })
    .await;
    for run in &runs {
        let id = &run.id;
        let events = hub.all_events(run).await;
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=PER_RUN).collect::<Vec<_>>(), "run {id}");
        let mut ids: Vec<&str> = events.iter().filter_map(|e| e.id.as_deref()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(
            ids.len() as u64,
            PER_RUN,
            "run {id}: each event stored once"
        );
    }
    // An HTTP/1.1 client is served beside it, on the same port.
    let (status, _) = hub.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

/// The HTTP/2 client preface, which a client speaking HTTP/2 from its first byte sends.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A client that pauses inside the HTTP/2 preface is still served HTTP/2 once the rest
/// arrives, and one whose first bytes merely look like the preface is served HTTP/1.1:
/// the hub decides from the bytes, however they are split, and consumes none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preface_split_across_writes_is_still_http2() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // No header timeout to close what the hub itself must.
    let hub = hub_with(HubConfig {
        header_timeout: long(),
        ..HubConfig::default()
    })
    .await;

    let mut h2 = RawConn::open(&hub.url).await;
    assert!(h2.write(&PREFACE[..10]).await);
    assert!(
        h2.says_nothing_for(Duration::from_millis(100)).await,
        "the hub answered a part of the preface: {:?}",
        String::from_utf8_lossy(&h2.until_closed("the rest").await)
    );
    // The rest of the preface and an empty SETTINGS frame (length 0, type 4, no flags,
    // stream 0): the server's first frame in reply is its own SETTINGS.
    assert!(h2.write(&PREFACE[10..]).await);
    assert!(h2.write(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await);
    let mut head = [0u8; 9];
    within(
        "the hub's first HTTP/2 frame",
        h2.stream.read_exact(&mut head),
    )
    .await
    .expect("an HTTP/2 frame header, not a closed connection");
    assert_eq!(
        head[3], 4,
        "the hub's first frame is SETTINGS, as an HTTP/2 server's is: {head:?}"
    );

    // "P" is where the preface and an HTTP/1.1 `POST` part: a request that starts with
    // it, sent in two writes, is read as HTTP/1.1.
    let mut h1 = RawConn::open(&hub.url).await;
    assert!(h1.write(b"P").await);
    assert!(h1.says_nothing_for(Duration::from_millis(100)).await);
    let host = hub.url.trim_start_matches("http://");
    let rest = format!("OST /healthz HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n");
    assert!(h1.write(rest.as_bytes()).await);
    let response = h1.response("the answer to a POST sent in two parts").await;
    assert_eq!(
        response.status, 405,
        "served as HTTP/1.1: /healthz takes GET only"
    );

    // A client that leaves inside the preface ends its connection at once, not at the
    // header timeout, and the hub serves on.
    let mut gone = RawConn::open(&hub.url).await;
    assert!(gone.write(&PREFACE[..5]).await);
    gone.stream
        .shutdown()
        .await
        .expect("the client's half of the connection closes");
    gone.until_closed("the hub to close a connection whose client left inside the preface")
        .await;
    let (status, _) = hub.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
}
