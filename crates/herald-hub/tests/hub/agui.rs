//! `GET` and `POST /v1/runs/{id}/stream?format=ag-ui`: a run as AG-UI events
//! (docs/http-api.md#ag-ui), live, resumed by EventSource's `Last-Event-ID`, and the requests an
//! AG-UI stream refuses. AG-UI's own client is
//! run against the hub in `agui_client.rs`.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::STORE;
use crate::util::{Case, Run, Sse, TestHub, check, finished, within};

/// The AG-UI events of an SSE response, to its end: `data:` lines only, as AG-UI's
/// encoder writes them.
async fn agui_events(sse: &mut Sse) -> Vec<Value> {
    let mut events = Vec::new();
    while let Some(message) = sse.message().await {
        assert_eq!(
            message.event, None,
            "no `event:` on an AG-UI stream: `type` says it"
        );
        events.push(message.json());
    }
    events
}

async fn next_agui(sse: &mut Sse) -> Value {
    sse.message()
        .await
        .expect("an AG-UI event, not the end of the stream")
        .json()
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["type"].as_str().expect("a type"))
        .collect()
}

async fn agui_stream(hub: &TestHub, run: &Run) -> Sse {
    let sse = hub
        .sse(
            &format!(
                "/v1/runs/{}/stream?format=ag-ui&token={}",
                run.id, run.read_token
            ),
            None,
            &[],
        )
        .await;
    assert_eq!(sse.status, StatusCode::OK);
    sse
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_run_reaches_an_agui_stream_from_run_started_to_its_end() {
    let hub = TestHub::open(STORE).await;
    let run = hub.create_named("agui-live").await;
    hub.append(
        &run,
        json!([{"event": "run.started", "name": "agent"},
               {"event": "stage.started", "stage": "plan"}]),
    )
    .await;
    let mut sse = agui_stream(&hub, &run).await;
    let started = next_agui(&mut sse).await;
    assert_eq!(started["type"], "RUN_STARTED");
    assert_eq!(started["runId"], "agui-live");
    assert_eq!(started["threadId"], "agui-live");
    assert_eq!(started["rawEvent"]["seq"], 1);
    assert_eq!(next_agui(&mut sse).await["type"], "STEP_STARTED");

    // Appended while the stream is open.
    hub.append(
        &run,
        json!([{"event": "text.delta", "call_id": "c1", "text": "Let me look"},
               {"event": "llm.response", "call_id": "c1"},
               {"event": "tool.started", "call_id": "t1", "tool": "search", "input": {"q": "x"}},
               {"event": "tool.finished", "call_id": "t1", "tool": "search",
                "status": "succeeded", "output": "3 hits"},
               {"event": "progress", "stage": "plan", "done": 1, "total": 1, "elapsed_s": 1.0},
               {"event": "stage.finished", "stage": "plan", "status": "succeeded",
                "elapsed_s": 1.0}]),
    )
    .await;
    let text_start = next_agui(&mut sse).await;
    assert_eq!(text_start["type"], "TEXT_MESSAGE_START");
    hub.append(&run, json!([finished("succeeded")])).await;
    let rest = within("the AG-UI stream to end", agui_events(&mut sse)).await;
    assert_eq!(
        kinds(&rest),
        [
            "TEXT_MESSAGE_CONTENT",
            "TEXT_MESSAGE_END",
            "CUSTOM",
            "TOOL_CALL_START",
            "TOOL_CALL_ARGS",
            "TOOL_CALL_END",
            "TOOL_CALL_RESULT",
            "ACTIVITY_SNAPSHOT",
            "STEP_FINISHED",
            "ACTIVITY_SNAPSHOT",
            "ACTIVITY_SNAPSHOT",
            "RUN_FINISHED",
        ],
        "{rest:#?}"
    );
    assert_eq!(rest[0]["delta"], "Let me look");
    assert_eq!(rest[6]["content"], "3 hits");
    assert_eq!(rest[7]["content"]["stages"][0]["done"], 1);
    // What a front end shows last is the run's end, not its last tick.
    assert_eq!(rest[9]["content"]["stages"][0]["status"], "succeeded");
    assert_eq!(rest[10]["content"]["status"], "succeeded");
    assert_eq!(rest[11]["runId"], "agui-live");

    // A finished run is replayed whole, and the stream ends again.
    let mut again = agui_stream(&hub, &run).await;
    let replay = agui_events(&mut again).await;
    assert_eq!(replay.len(), 2 + 1 + rest.len());
    assert_eq!(kinds(&replay).last(), Some(&"RUN_FINISHED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_with_run_agent_input_attaches_to_the_run_in_the_path() {
    let hub = TestHub::with_admin(STORE).await;
    let parent = hub.create_named("boss").await;
    let run = hub
        .create(json!({"id": "worker", "name": "worker", "parent": parent.id}))
        .await;
    hub.append(
        &run,
        json!([{"event": "run.started", "name": "worker"}, finished("failed")]),
    )
    .await;
    let input = json!({
        "threadId": "t-client", "runId": "r-client", "state": {}, "messages": [],
        "tools": [], "context": [], "forwardedProps": {}, "protocolVersion": "1.0",
    });
    let resp = hub
        .request(
            Method::POST,
            "/v1/runs/worker/stream?format=ag-ui",
            Some(&run.read_token),
        )
        .header("accept", "text/event-stream")
        .json(&input)
        .send()
        .await
        .expect("the hub answers");
    let mut sse = Sse::from_response(resp);
    assert_eq!(sse.status, StatusCode::OK);
    assert!(
        sse.headers["content-type"]
            .to_str()
            .is_ok_and(|t| t.starts_with("text/event-stream"))
    );
    let events = agui_events(&mut sse).await;
    assert_eq!(kinds(&events), ["RUN_STARTED", "RUN_ERROR"]);
    // The client's ids are ignored: the run is the one in the path, its thread the parent.
    assert_eq!(events[0]["runId"], "worker");
    assert_eq!(events[0]["threadId"], "boss");
    assert_eq!(events[1]["code"], "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_started_by_its_first_event_and_its_deletion_ends_the_stream() {
    let hub = TestHub::open(STORE).await;
    let run = hub.create_named("quiet").await;
    let mut sse = agui_stream(&hub, &run).await;
    // Nothing before the run's first event; that one, not `run.started`, starts it.
    hub.append(&run, json!([{"event": "stage.started", "stage": "s"}]))
        .await;
    let started = next_agui(&mut sse).await;
    assert_eq!(started["type"], "RUN_STARTED");
    assert!(
        started.get("rawEvent").is_none(),
        "made up, not from an event"
    );
    let step = next_agui(&mut sse).await;
    assert_eq!(step["type"], "STEP_STARTED");
    // Made up at that event, not when the stream opened.
    let first = &hub.all_events(&run).await[0];
    assert_eq!(
        started["timestamp"],
        first.ts.unix_micros().div_euclid(1000)
    );
    assert_eq!(started["timestamp"], step["timestamp"]);
    let (status, _) = hub.call(Method::DELETE, "/v1/runs/quiet", None, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let rest = within("the AG-UI stream to end", agui_events(&mut sse)).await;
    assert_eq!(kinds(&rest), ["STEP_FINISHED", "RUN_ERROR"]);
    assert_eq!(rest[1]["code"], "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_source_resumes_exactly_after_any_message_and_stops_at_the_end() {
    let hub = TestHub::open(STORE).await;
    let run = hub.create_named("resumable").await;
    hub.append(
        &run,
        json!([{"event": "run.started", "name": "r"},
               {"event": "stage.started", "stage": "a"},
               {"event": "text.delta", "call_id": "c", "text": "x"},
               {"event": "tool.started", "call_id": "t", "tool": "grep", "input": {"q": 1}},
               {"event": "tool.finished", "call_id": "t", "tool": "grep", "status": "succeeded"},
               {"event": "progress", "stage": "a", "done": 1, "total": 1, "elapsed_s": 1.0},
               finished("failed")]),
    )
    .await;
    let path = format!("/v1/runs/{}/stream?format=ag-ui", run.id);
    let mut whole = hub.sse(&path, Some(&run.read_token), &[]).await;
    let whole = whole.rest().await;
    assert_eq!(whole.first().and_then(|m| m.id.as_deref()), Some("1.0"));
    assert!(
        whole.iter().all(|m| m.id.is_some()),
        "every message has an id"
    );
    // A stream cut after any message, resumed with its id, gives the rest exactly:
    // also inside the events of one herald event (tool.started is three).
    for (cut, message) in whole.iter().enumerate() {
        let id = message.id.as_deref().expect("an id");
        let mut resumed = hub
            .sse(&path, Some(&run.read_token), &[("last-event-id", id)])
            .await;
        if cut + 1 == whole.len() {
            assert_eq!(
                resumed.status,
                StatusCode::NO_CONTENT,
                "after the last message"
            );
            continue;
        }
        assert_eq!(resumed.status, StatusCode::OK);
        let rest = resumed.rest().await;
        assert_eq!(rest, whole[cut + 1..], "resumed after {id}");
    }
    // `?after=SEQ` resumes after every event of herald event SEQ.
    let mut after = hub
        .sse(&format!("{path}&after=4"), Some(&run.read_token), &[])
        .await;
    let after = after.rest().await;
    assert_eq!(after.first().and_then(|m| m.id.as_deref()), Some("5.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_agui_stream_refuses_is_named() {
    let hub = TestHub::with_admin(STORE).await;
    let run = hub.create_named("r").await;
    hub.append(&run, json!([{"event": "run.started", "name": "r"}]))
        .await;
    let other = hub.create_named("other").await;
    let stream = "/v1/runs/r/stream";
    let agui = "/v1/runs/r/stream?format=ag-ui";
    let read = run.read_token.as_str();
    check(
        &hub,
        vec![
            Case::new(
                "an unknown format",
                Method::GET,
                format!("{stream}?format=acp"),
            )
            .token(read)
            .expect(400, "invalid_field")
            .field("format"),
            Case::new(
                "a cursor past the end",
                Method::GET,
                format!("{agui}&after=7"),
            )
            .token(read)
            .expect(400, "cursor_out_of_range"),
            Case::new("a type filter", Method::GET, format!("{agui}&types=run.*"))
                .token(read)
                .expect(400, "invalid_field")
                .field("types"),
            Case::new("a view", Method::GET, format!("{agui}&view=state"))
                .token(read)
                .expect(400, "invalid_field")
                .field("view"),
            Case::new("a POST without the format", Method::POST, stream)
                .token(read)
                .json(json!({"threadId": "t", "runId": "r", "messages": []}))
                .expect(400, "invalid_field")
                .field("format"),
            Case::new("a body that is not an object", Method::POST, agui)
                .token(read)
                .json(json!([1, 2]))
                .expect(400, "invalid_body"),
            Case::new("a body that is not JSON", Method::POST, agui)
                .token(read)
                .raw("{not json", "application/json")
                .expect(400, "invalid_json"),
            Case::new("a mistyped field", Method::POST, agui)
                .token(read)
                .json(json!({"threadId": "t", "runId": "r", "messages": "hello"}))
                .expect(400, "invalid_field")
                .field("messages"),
            Case::new("no token", Method::GET, agui).expect(401, "unauthorized"),
            Case::new("another run's token", Method::POST, agui)
                .token(&other.read_token)
                .json(json!({}))
                .expect(403, "forbidden"),
            Case::new(
                "an unknown run",
                Method::GET,
                "/v1/runs/nope/stream?format=ag-ui",
            )
            .token(crate::util::ADMIN)
            .expect(404, "run_not_found"),
        ],
    )
    .await;
    // Cursors the stream cannot honour: not one, past the end, or past the messages
    // of its event (run.started is one).
    for (last_event_id, code) in [
        ("abc", "invalid_cursor"),
        ("1.x", "invalid_cursor"),
        ("1.1", "invalid_cursor"),
        ("9.0", "cursor_out_of_range"),
    ] {
        let resp = hub
            .request(Method::GET, agui, Some(read))
            .header("last-event-id", last_event_id)
            .send()
            .await
            .expect("the hub answers");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{last_event_id}");
        let body: Value = resp.json().await.expect("a JSON error");
        assert_eq!(body["error"]["code"], code, "{last_event_id}: {body}");
    }
    // None of it changed the run.
    let state = hub.state(&run).await;
    assert_eq!(state["event_count"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_resumed_mid_run_goes_on_live() {
    let hub = TestHub::open(STORE).await;
    let run = hub.create_named("going").await;
    hub.append(
        &run,
        json!([{"event": "run.started", "name": "r"},
               {"event": "stage.started", "stage": "a"},
               {"event": "text.delta", "text": "x"}]),
    )
    .await;
    // After run.started's only message: the rest of what is stored, then live.
    let path = format!("/v1/runs/{}/stream?format=ag-ui", run.id);
    let mut sse = hub
        .sse(&path, Some(&run.read_token), &[("last-event-id", "1.0")])
        .await;
    assert_eq!(sse.status, StatusCode::OK);
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(sse.message().await.expect("a message"));
    }
    let ids: Vec<_> = got
        .iter()
        .map(|m| m.id.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        ids,
        ["2.0", "3.0", "3.1"],
        "STEP_STARTED, then the text's start and content"
    );
    hub.append(&run, json!([finished("succeeded")])).await;
    let rest = within("the resumed stream to end", agui_events(&mut sse)).await;
    assert_eq!(
        kinds(&rest),
        ["TEXT_MESSAGE_END", "STEP_FINISHED", "RUN_FINISHED"]
    );
}
