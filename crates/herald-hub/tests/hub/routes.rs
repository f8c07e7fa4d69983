//! The REST routes of docs/http-api.md and the status and body of every error.

use herald_hub::HubConfig;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::STORE;
use crate::util::{Case, Run, TestHub, check, error_body, finished, logs, send, seqs, types};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_state_list_and_delete() {
    let hub = TestHub::open(STORE).await;
    let (status, reply) = hub
        .call(
            Method::POST,
            "/v1/runs",
            None,
            Some(
                json!({"id": "job-1", "name": "Nightly import", "heartbeat_timeout_s": 30,
                         "ttl_s": 600, "track": ["run.*", "log"], "meta": {"team": "data"}}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    assert_eq!(reply["id"], "job-1");
    let write = reply["write_token"].as_str().expect("a write token");
    let read = reply["read_token"].as_str().expect("a read token");
    assert_ne!(write, read);
    let urls = &reply["urls"];
    assert_eq!(urls["run"], format!("{}/v1/runs/job-1", hub.url));
    assert_eq!(urls["events"], format!("{}/v1/runs/job-1/events", hub.url));
    assert_eq!(urls["stream"], format!("{}/v1/runs/job-1/stream", hub.url));
    assert_eq!(
        urls["ws"],
        format!("{}/v1/runs/job-1/ws", hub.url.replacen("http", "ws", 1))
    );

    // Without an id the hub makes one in the run id charset.
    let generated = hub.create(json!({"name": "anonymous"})).await;
    assert!(
        !generated.id.is_empty()
            && generated
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c)),
        "{}",
        generated.id
    );

    let job = Run {
        id: "job-1".into(),
        write_token: write.into(),
        read_token: read.into(),
    };
    let state = hub.state(&job).await;
    assert_eq!(state["id"], "job-1");
    assert_eq!(state["name"], "Nightly import");
    assert_eq!(state["status"], "running");
    assert_eq!(state["last_seq"], 0);

    // `track` keeps `run.*` and `log`; a progress tick is dropped at ingest.
    let reply = hub
        .append(
            &job,
            json!([{"event": "run.started", "name": "Nightly import"},
                   {"event": "progress", "done": 1, "elapsed_s": 0.5},
                   {"event": "log", "level": "info", "message": "hello"}]),
        )
        .await;
    assert_eq!(reply["appended"], 2, "{reply}");
    assert_eq!(reply["last_seq"], 2);
    assert_eq!(
        types(&hub.poll(&job, "").await.events),
        ["run.started", "log"]
    );

    let child = hub
        .create(json!({"id": "job-1.child", "name": "child", "parent": "job-1"}))
        .await;
    let (status, list) = hub.call(Method::GET, "/v1/runs", None, None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let ids: Vec<&str> = list["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["id"].as_str().expect("an id"))
        .collect();
    assert_eq!(
        ids,
        [child.id.as_str(), generated.id.as_str(), "job-1"],
        "newest first"
    );

    let (_, list) = hub
        .call(Method::GET, "/v1/runs?parent=job-1", None, None)
        .await;
    assert_eq!(list["runs"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list["runs"][0]["id"], "job-1.child");

    // Pages: `limit` and the `next_before` cursor.
    let (_, page) = hub.call(Method::GET, "/v1/runs?limit=2", None, None).await;
    assert_eq!(page["runs"].as_array().map(Vec::len), Some(2), "{page}");
    let before = page["next_before"].as_str().expect("a next page");
    let (status, page) = hub
        .call(
            Method::GET,
            &format!("/v1/runs?limit=2&before={}", before.replace('+', "%2B")),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["runs"][0]["id"], "job-1", "{page}");
    // The last page says so: no cursor to a page that would be empty.
    assert_eq!(page["runs"].as_array().map(Vec::len), Some(1), "{page}");
    assert_eq!(page["next_before"], Value::Null, "{page}");

    hub.append(&job, json!([finished("succeeded")])).await;
    let (_, list) = hub
        .call(Method::GET, "/v1/runs?status=succeeded", None, None)
        .await;
    assert_eq!(list["runs"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list["runs"][0]["id"], "job-1");

    let (status, body) = hub.call(Method::DELETE, "/v1/runs/job-1", None, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = hub.call(Method::GET, "/v1/runs/job-1", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    error_body(&body, "run_not_found");
    let (status, _) = hub
        .call(Method::GET, "/v1/runs/job-1.child", None, None)
        .await;
    assert_eq!(status, StatusCode::OK, "the child is a run of its own");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_take_json_arrays_and_ndjson() {
    // On a clock of its own, so that the producer's `ts` below stays within the week
    // behind the hub's clock that it takes.
    let hub = TestHub::with_clock(STORE, HubConfig::default()).await;
    let run = hub.create_named("formats").await;
    let reply = hub
        .append(
            &run,
            json!([{"event": "run.started", "name": "formats", "ts": "2029-12-30T03:04:05.000006Z"},
                   {"event": "stage.started", "stage": "fetch", "total": 2}]),
        )
        .await;
    assert_eq!(
        reply,
        json!({"appended": 2, "duplicates": 0, "filtered": 0, "last_seq": 2, "cancel_requested": false})
    );
    let ndjson = "{\"event\":\"item.started\",\"item\":\"a\"}\n\n{\"event\":\"item.finished\",\"item\":\"a\",\"status\":\"succeeded\"}\n";
    let (status, reply) = send(
        hub.request(
            Method::POST,
            "/v1/runs/formats/events",
            Some(&run.write_token),
        )
        .header("content-type", "application/x-ndjson")
        .body(ndjson),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["appended"], 2);
    assert_eq!(reply["last_seq"], 4);

    let events = hub.poll(&run, "").await.events;
    assert_eq!(seqs(&events), [1, 2, 3, 4]);
    assert_eq!(
        types(&events),
        [
            "run.started",
            "stage.started",
            "item.started",
            "item.finished"
        ]
    );
    assert!(events.iter().all(|e| e.run.as_str() == "formats"));
    assert_eq!(
        events[0].ts.to_string(),
        "2029-12-30T03:04:05.000006Z",
        "the producer's ts is kept"
    );
    let state = hub.state(&run).await;
    assert_eq!(state["last_seq"], 4);
    assert_eq!(state["event_count"], 4);
    assert_eq!(state["items"]["succeeded"], 1, "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_400_naming_the_index_and_field() {
    let hub = TestHub::open(STORE).await;
    let run = hub.create_named("r").await;
    hub.append(&run, logs("m", 2)).await;
    let events = "/v1/runs/r/events";
    let too_long = "x".repeat(129);
    let cases = vec![
        Case::new("create: not JSON", Method::POST, "/v1/runs")
            .raw("{name:", "application/json")
            .expect(400, "invalid_json"),
        Case::new("create: unknown field", Method::POST, "/v1/runs")
            .json(json!({"name": "n", "colour": "red"}))
            .expect(400, "invalid_field")
            .field("colour"),
        Case::new("create: no name", Method::POST, "/v1/runs")
            .json(json!({"id": "x"}))
            .expect(400, "invalid_field")
            .field("name"),
        Case::new("create: NUL in the name", Method::POST, "/v1/runs")
            .json(json!({"name": "a\u{0}b"}))
            .expect(400, "invalid_field")
            .field("name"),
        Case::new("create: NUL in a tracked pattern", Method::POST, "/v1/runs")
            .json(json!({"name": "n", "track": ["log", "x\u{0}"]}))
            .expect(400, "invalid_field")
            .field("track"),
        Case::new("create: bad run id", Method::POST, "/v1/runs")
            .json(json!({"id": "has space", "name": "n"}))
            .expect(400, "invalid_field")
            .field("id"),
        Case::new("create: run id too long", Method::POST, "/v1/runs")
            .json(json!({"id": too_long, "name": "n"}))
            .expect(400, "invalid_field")
            .field("id"),
        Case::new("create: bad parent", Method::POST, "/v1/runs")
            .json(json!({"name": "n", "parent": "a/b"}))
            .expect(400, "invalid_field")
            .field("parent"),
        Case::new("create: negative timeout", Method::POST, "/v1/runs")
            .json(json!({"name": "n", "heartbeat_timeout_s": -1}))
            .expect(400, "invalid_field")
            .field("heartbeat_timeout_s"),
        Case::new("create: bad track", Method::POST, "/v1/runs")
            .json(json!({"name": "n", "track": 3}))
            .expect(400, "invalid_field")
            .field("track"),
        Case::new("append: not JSON", Method::POST, events)
            .raw("[{", "application/json")
            .expect(400, "invalid_json"),
        Case::new("append: not an array", Method::POST, events)
            .json(json!({"event": "log", "level": "info", "message": "m"}))
            .expect(400, "not_an_object"),
        Case::new("append: mistyped field", Method::POST, events)
            .json(json!([{"event": "log", "level": "info", "message": "ok"},
                         {"event": "progress", "done": "three", "elapsed_s": 1}]))
            .expect(400, "invalid_field")
            .field("done")
            .index(1),
        Case::new("append: missing field", Method::POST, events)
            .json(json!([{"event": "log", "level": "info"}]))
            .expect(400, "missing_field")
            .field("message")
            .index(0),
        Case::new("append: unknown event", Method::POST, events)
            .json(json!([{"event": "log", "level": "info", "message": "ok"},
                         {"event": "log", "level": "info", "message": "ok"},
                         {"event": "teleport"}]))
            .expect(400, "unknown_event")
            .field("event")
            .index(2),
        Case::new("append: bad ts", Method::POST, events)
            .json(json!([{"event": "log", "level": "info", "message": "ok", "ts": "yesterday"}]))
            .expect(400, "invalid_field")
            .field("ts")
            .index(0),
        Case::new("append: another run", Method::POST, events)
            .json(json!([{"event": "log", "level": "info", "message": "ok", "run": "other"}]))
            .expect(400, "invalid_field")
            .field("run")
            .index(0),
        Case::new("append: bad NDJSON line", Method::POST, events)
            .raw(
                "{\"event\":\"log\",\"level\":\"info\",\"message\":\"ok\"}\n{\"event\":\"log\",\"level\":\"loud\",\"message\":\"ok\"}\n",
                "application/x-ndjson",
            )
            .expect(400, "invalid_field")
            .field("level")
            .index(1),
        Case::new("append: bad run id", Method::POST, "/v1/runs/bad!id/events")
            .json(logs("m", 1))
            .expect(400, "invalid_field")
            .field("id"),
        Case::new("state: bad run id", Method::GET, "/v1/runs/a%20b").expect(400, "invalid_field").field("id"),
        Case::new("poll: limit=0", Method::GET, "/v1/runs/r/events?limit=0")
            .expect(400, "invalid_field")
            .field("limit"),
        Case::new("poll: limit not a number", Method::GET, "/v1/runs/r/events?limit=lots")
            .expect(400, "invalid_query")
            .field("limit"),
        Case::new("poll: wait=-1", Method::GET, "/v1/runs/r/events?wait=-1")
            .expect(400, "invalid_field")
            .field("wait"),
        Case::new("poll: types=Bad", Method::GET, "/v1/runs/r/events?types=Bad")
            .expect(400, "invalid_field")
            .field("types"),
        Case::new("poll: unknown parameter", Method::GET, "/v1/runs/r/events?afterr=1")
            .expect(400, "invalid_query")
            .field("afterr"),
        Case::new("poll: cursor past the end", Method::GET, "/v1/runs/r/events?after=3")
            .expect(400, "cursor_out_of_range"),
        Case::new("stream: cursor past the end", Method::GET, "/v1/runs/r/stream?after=9")
            .expect(400, "cursor_out_of_range"),
        Case::new("stream: types=Bad", Method::GET, "/v1/runs/r/stream?types=Bad")
            .expect(400, "invalid_field")
            .field("types"),
        Case::new("stream: unknown view", Method::GET, "/v1/runs/r/stream?view=chart")
            .expect(400, "invalid_field")
            .field("view"),
        Case::new("list: status=weird", Method::GET, "/v1/runs?status=weird")
            .expect(400, "invalid_field")
            .field("status"),
        Case::new("list: limit=0", Method::GET, "/v1/runs?limit=0")
            .expect(400, "invalid_field")
            .field("limit"),
        Case::new("list: bad before", Method::GET, "/v1/runs?before=tuesday")
            .expect(400, "invalid_field")
            .field("before"),
        Case::new("runs stream: status=weird", Method::GET, "/v1/runs/stream?status=weird")
            .expect(400, "invalid_field")
            .field("status"),
        Case::new("cancel: unknown field", Method::POST, "/v1/runs/r/cancel")
            .json(json!({"why": "x"}))
            .expect(400, "invalid_field")
            .field("why"),
        // A key given twice is refused wherever it is, naming it, never resolved by
        // keeping one of the two.
        Case::new("create: a key twice", Method::POST, "/v1/runs")
            .raw(r#"{"name": "a", "name": "b"}"#, "application/json")
            .expect(400, "duplicate_key")
            .field("name"),
        Case::new("create: a key twice in meta", Method::POST, "/v1/runs")
            .raw(r#"{"name": "a", "meta": {"k": 1, "k": 2}}"#, "application/json")
            .expect(400, "duplicate_key")
            .field("meta.k"),
        Case::new("append: a key twice", Method::POST, events)
            .raw(
                r#"[{"event": "log", "level": "info", "message": "ok"},
                    {"event": "log", "level": "info", "level": "error", "message": "m"}]"#,
                "application/json",
            )
            .expect(400, "duplicate_key")
            .field("level")
            .index(1),
        Case::new("append: a key twice in NDJSON", Method::POST, events)
            .raw(
                "{\"event\":\"tool.started\",\"call_id\":\"c\",\"tool\":\"t\",\"input\":{\"q\":1,\"q\":2}}\n",
                "application/x-ndjson",
            )
            .expect(400, "duplicate_key")
            .field("input.q")
            .index(0),
        Case::new("cancel: a key twice", Method::POST, "/v1/runs/r/cancel")
            .raw(r#"{"reason": "a", "reason": "b"}"#, "application/json")
            .expect(400, "duplicate_key")
            .field("reason"),
        Case::new("ws: not a WebSocket request", Method::GET, "/v1/runs/r/ws")
            .expect(400, "not_a_websocket"),
        Case::new("no such route", Method::GET, "/v2/nothing").expect(404, "not_found"),
    ];
    check(&hub, cases).await;

    let (status, body) = hub.ws("r", "after=9", None).await.err().expect("no socket");
    assert_eq!(status, StatusCode::BAD_REQUEST);
    error_body(&body, "cursor_out_of_range");

    // A stream cursor in the header is checked like one in the query.
    let (status, body) = send(
        hub.request(Method::GET, "/v1/runs/r/stream", None)
            .header("last-event-id", "abc"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    error_body(&body, "invalid_cursor");

    // Nothing of a rejected batch was stored, and the hub still works.
    let polled = hub.poll(&run, "").await;
    assert_eq!(seqs(&polled.events), [1, 2]);
    assert_eq!(hub.append(&run, logs("n", 1)).await["last_seq"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_runs_are_404_on_every_route() {
    let hub = TestHub::open(STORE).await;
    let cases = vec![
        Case::new("state", Method::GET, "/v1/runs/ghost"),
        Case::new("delete", Method::DELETE, "/v1/runs/ghost"),
        Case::new("append", Method::POST, "/v1/runs/ghost/events").json(logs("m", 1)),
        Case::new("poll", Method::GET, "/v1/runs/ghost/events"),
        Case::new("long poll", Method::GET, "/v1/runs/ghost/events?wait=5"),
        Case::new("stream", Method::GET, "/v1/runs/ghost/stream"),
        Case::new(
            "state stream",
            Method::GET,
            "/v1/runs/ghost/stream?view=state",
        ),
        Case::new("cancel", Method::POST, "/v1/runs/ghost/cancel"),
        Case::new("ws without an upgrade", Method::GET, "/v1/runs/ghost/ws"),
    ]
    .into_iter()
    .map(|case| case.expect(404, "run_not_found"))
    .collect();
    check(&hub, cases).await;
    let (status, body) = hub.ws("ghost", "", None).await.err().expect("no socket");
    assert_eq!(status, StatusCode::NOT_FOUND);
    error_body(&body, "run_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_are_409_but_retries_of_stored_events_are_acknowledged() {
    let hub = TestHub::open(STORE).await;
    let run = hub.create_named("once").await;
    let batch = json!([
        {"event": "log", "level": "info", "message": "a", "id": "e1"},
        {"event": "run.finished", "status": "succeeded", "id": "e2"},
    ]);
    assert_eq!(hub.append(&run, batch.clone()).await["last_seq"], 2);

    // The SDK retries a batch whose reply it lost: acknowledged, nothing stored.
    let reply = hub.append(&run, batch).await;
    assert_eq!(reply["appended"], 0, "{reply}");
    assert_eq!(reply["duplicates"], 2);
    assert_eq!(reply["last_seq"], 2);

    let cases = vec![
        Case::new("id taken", Method::POST, "/v1/runs")
            .json(json!({"id": "once", "name": "again"}))
            .expect(409, "run_exists"),
        Case::new("after run.finished", Method::POST, "/v1/runs/once/events")
            .json(logs("late", 1))
            .expect(409, "run_finished"),
        Case::new(
            "a stored id and a new event",
            Method::POST,
            "/v1/runs/once/events",
        )
        .json(
            json!([{"event": "log", "level": "info", "message": "a", "id": "e1"},
                         {"event": "log", "level": "info", "message": "b", "id": "e3"}]),
        )
        .expect(409, "run_finished"),
        Case::new(
            "cancel after run.finished",
            Method::POST,
            "/v1/runs/once/cancel",
        )
        .expect(409, "run_finished"),
    ];
    check(&hub, cases).await;

    // Events after `run.finished` in one batch reject the whole batch.
    let other = hub.create_named("atomic").await;
    let (status, body) = hub
        .call(
            Method::POST,
            "/v1/runs/atomic/events",
            Some(&other.write_token),
            Some(json!([{"event": "log", "level": "info", "message": "a"},
                        finished("failed"),
                        {"event": "log", "level": "info", "message": "after"}])),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    error_body(&body, "run_finished");
    let polled = hub.poll(&other, "").await;
    assert!(
        polled.events.is_empty(),
        "nothing stored: {:?}",
        polled.events
    );
    assert_eq!(polled.status, "running");
    assert_eq!(hub.poll(&run, "").await.status, "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limits_are_413() {
    let config = HubConfig {
        // Above one event's 64 KiB, so that limit can be reached on its own.
        max_body_bytes: 100_000,
        max_batch: 10,
        ..HubConfig::default()
    };
    let hub = TestHub::start(STORE, config, None).await;
    let run = hub.create_named("big").await;
    let huge = "x".repeat(70 * 1024);
    let events = "/v1/runs/big/events";
    let cases = vec![
        Case::new("body over max_body_bytes", Method::POST, events)
            .json(logs(&"y".repeat(20_000), 8))
            .expect(413, "body_too_large"),
        Case::new("NDJSON body over max_body_bytes", Method::POST, events)
            .raw("\n".repeat(150_000), "application/x-ndjson")
            .expect(413, "body_too_large"),
        Case::new("create body over max_body_bytes", Method::POST, "/v1/runs")
            .json(json!({"name": "n", "meta": {"blob": "z".repeat(150_000)}}))
            .expect(413, "body_too_large"),
        Case::new(
            "AG-UI RunAgentInput over max_body_bytes",
            Method::POST,
            "/v1/runs/big/stream?format=ag-ui",
        )
        .json(json!({"messages": [], "state": {"blob": "s".repeat(150_000)}}))
        .expect(413, "body_too_large"),
        Case::new("batch over max_batch", Method::POST, events)
            .json(logs("m", 11))
            .expect(413, "body_too_large"),
        Case::new("one event over 64 KiB", Method::POST, events)
            .json(json!([{"event": "log", "level": "info", "message": "ok"},
                         {"event": "log", "level": "info", "message": huge}]))
            .expect(413, "event_too_large")
            .index(1),
    ];
    check(&hub, cases).await;
    let reply = hub.append(&run, logs("m", 10)).await;
    assert_eq!(reply["last_seq"], 10, "a batch at the limit is fine");
}

/// Text that PostgreSQL's `text` cannot hold raw (NUL) and characters outside the
/// Basic Multilingual Plane survive a round trip through either store.
#[tokio::test]
async fn any_unicode_in_an_event_is_stored_and_read_back_as_sent() {
    let hub = TestHub::open(STORE).await;
    let run = hub.create_named("text").await;
    let message = "nul \u{0} tab \t emoji 🦀 rtl \u{202e} end";
    hub.append(
        &run,
        json!([{"event": "log", "level": "info", "message": message}]),
    )
    .await;
    let (status, body) = hub
        .call(
            Method::GET,
            &format!("/v1/runs/{}/events", run.id),
            Some(&run.read_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["events"][0]["message"], message);
}
