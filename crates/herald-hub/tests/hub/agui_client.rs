//! AG-UI's own client against a live hub: `@ag-ui/client`'s `HttpAgent` (pinned in
//! `tests/agui-client/package.json`), run under Node.js by `run-agent.mjs`, attaches to
//! a run's `?format=ag-ui` stream, checks every event against AG-UI's schemas and
//! ordering rules, and folds them into messages; the test reads what it accepted.
//!
//! Needs `node` on `PATH` and the client installed (`npm ci --prefix
//! crates/herald-hub/tests/agui-client`, which `.ci/run` does). Without them the tests
//! say so on stderr and return, unless `CI=true`, where they fail.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::util::{
    Run, Sse, StoreKind, TestHub, cannot_run, find_program, finished, wait_until, within,
};

/// How long the client may take to follow a run to its end.
const CLIENT_DEADLINE: Duration = Duration::from_secs(30);

fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/agui-client")
}

/// `node`, once the client is installed; `None` after saying why the test cannot run.
fn node() -> Option<PathBuf> {
    let dir = client_dir();
    let Some(node) = find_program(&["node", "nodejs"]) else {
        cannot_run(
            "the AG-UI client tests need Node.js (`node` on PATH): \
             apt-get install -y nodejs npm",
        );
        return None;
    };
    if !dir
        .join("node_modules/@ag-ui/client/package.json")
        .is_file()
    {
        cannot_run(&format!(
            "the AG-UI client tests need @ag-ui/client installed: npm ci --prefix {}",
            dir.display()
        ));
        return None;
    }
    Some(node)
}

/// `run-agent.mjs` attached to `run`'s AG-UI stream with its read token.
fn attach(node: &Path, hub: &TestHub, run: &Run) -> Child {
    Command::new(node)
        .arg(client_dir().join("run-agent.mjs"))
        .arg(format!(
            "{}/v1/runs/{}/stream?format=ag-ui",
            hub.url, run.id
        ))
        .env("HERALD_TOKEN", &run.read_token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts")
}

/// What the client printed: the events it accepted, and its last line (`done` with
/// the messages it built, or `error`), once it has exited.
struct Followed {
    output: Output,
    events: Vec<Value>,
    last: Value,
}

impl Followed {
    async fn of(child: Child) -> Followed {
        let output = tokio::time::timeout(CLIENT_DEADLINE, child.wait_with_output())
            .await
            .expect("the AG-UI client to finish with the run")
            .expect("the client's output reads");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let mut lines: Vec<Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        let last = lines.pop().unwrap_or(Value::Null);
        Followed {
            output,
            events: lines,
            last,
        }
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// The client accepted the whole stream and changed nothing of it: no material
    /// stripped, no event dropped (it warns on stderr when it does either).
    #[track_caller]
    fn assert_accepted(&self) {
        assert!(
            self.output.status.success() && self.last["done"] == true,
            "the client failed ({}): {}\nstderr: {}",
            self.output.status,
            self.last,
            self.stderr()
        );
        // The client warns on stderr of material it stripped, events it dropped, and
        // messages it had to merge or could not find: none of that may happen.
        assert!(
            self.stderr().trim().is_empty(),
            "the client had to mend the stream:\n{}",
            self.stderr()
        );
    }

    fn kinds(&self) -> Vec<&str> {
        self.events
            .iter()
            .map(|e| e["type"].as_str().expect("a type"))
            .collect()
    }
}

/// `value` with every number as a float: JavaScript writes `2.0` as `2`.
fn numbers_as_floats(value: &Value) -> Value {
    match value {
        Value::Number(n) => json!(n.as_f64()),
        Value::Array(items) => items.iter().map(numbers_as_floats).collect(),
        Value::Object(fields) => fields
            .iter()
            .map(|(k, v)| (k.clone(), numbers_as_floats(v)))
            .collect(),
        other => other.clone(),
    }
}

/// The same stream read by hand, to compare with what the client accepted.
async fn read_by_hand(hub: &TestHub, run: &Run) -> Vec<Value> {
    let mut sse: Sse = hub
        .sse(
            &format!("/v1/runs/{}/stream?format=ag-ui", run.id),
            Some(&run.read_token),
            &[],
        )
        .await;
    sse.rest().await.iter().map(|m| m.json()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_agent_follows_a_live_agent_run_to_its_end() {
    let Some(node) = node() else { return };
    let hub = TestHub::with_admin(StoreKind::Sqlite).await;
    let run = hub.create_named("agent-run").await;
    hub.append(
        &run,
        json!([{"event": "run.started", "name": "agent", "total_steps": 2},
               {"event": "stage.started", "stage": "research", "total": 2}]),
    )
    .await;
    let client = attach(&node, &hub, &run);
    wait_until("the AG-UI client to attach", || async {
        hub.metric("herald_subscribers").await == 1.0
    })
    .await;
    // The rest arrives while the client is attached, in batches as a producer sends.
    let batches = [
        json!([{"event": "agent.iteration", "iteration": 1},
               {"event": "llm.request", "call_id": "c1", "model": "sim"},
               {"event": "text.delta", "call_id": "c1", "text": "Let me "},
               {"event": "text.delta", "call_id": "c1", "text": "look that up."},
               {"event": "llm.response", "call_id": "c1", "output_tokens": 5}]),
        json!([{"event": "tool.started", "call_id": "t1", "tool": "search",
                "input": {"q": "herald"}, "feedback": "Searching the docs"},
               {"event": "heartbeat", "elapsed_s": 2.0, "note": "waiting on search"},
               {"event": "tool.finished", "call_id": "t1", "tool": "search",
                "status": "succeeded", "output": "3 hits"}]),
        json!([{"event": "item.started", "item": "doc-1", "stage": "research"},
               {"event": "item.finished", "item": "doc-1", "stage": "research",
                "status": "failed", "error": "malformed JSON"},
               {"event": "progress", "stage": "research", "done": 2, "total": 2,
                "elapsed_s": 3.0},
               {"event": "stage.finished", "stage": "research", "status": "succeeded",
                "elapsed_s": 3.0},
               {"event": "stage.started", "stage": "answer"},
               {"event": "agent.preparing_response"},
               {"event": "text.delta", "text": "Found 3."},
               {"event": "custom.score", "value": 0.9}]),
        json!([{"event": "agent.response", "text": "Found 3."},
               {"event": "run.finished", "status": "succeeded", "result": {"answer": 3}}]),
    ];
    for batch in batches {
        hub.append(&run, batch).await;
    }
    let followed = Followed::of(client).await;
    followed.assert_accepted();
    // Everything the hub sent, in order, was accepted as sent.
    let sent = read_by_hand(&hub, &run).await;
    assert_eq!(followed.kinds().len(), sent.len(), "{:#?}", followed.events);
    for (accepted, sent) in followed.events.iter().zip(&sent) {
        assert_eq!(numbers_as_floats(accepted), numbers_as_floats(sent));
    }
    let kinds = followed.kinds();
    assert_eq!(kinds.first(), Some(&"RUN_STARTED"));
    assert_eq!(kinds.last(), Some(&"RUN_FINISHED"));
    for kind in [
        "STEP_STARTED",
        "STEP_FINISHED",
        "TEXT_MESSAGE_START",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END",
        "TOOL_CALL_START",
        "TOOL_CALL_ARGS",
        "TOOL_CALL_END",
        "TOOL_CALL_RESULT",
        "ACTIVITY_SNAPSHOT",
        "CUSTOM",
    ] {
        assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
    }

    // The messages the client folded the run into.
    let messages = followed.last["messages"]
        .as_array()
        .expect("the agent's messages");
    let by_id = |id: &str| {
        messages
            .iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("no message {id} in {messages:#?}"))
    };
    let said = by_id("text:1");
    assert_eq!(said["role"], "assistant");
    assert_eq!(said["content"], "Let me look that up.");
    let answer = by_id("text:2");
    assert_eq!(answer["content"], "Found 3.");
    let tool_call = messages
        .iter()
        .flat_map(|m| m["toolCalls"].as_array().into_iter().flatten())
        .find(|c| c["id"] == "t1")
        .unwrap_or_else(|| panic!("no tool call t1 in {messages:#?}"));
    assert_eq!(tool_call["function"]["name"], "search");
    assert_eq!(tool_call["function"]["arguments"], r#"{"q":"herald"}"#);
    let result = by_id("result:t1");
    assert_eq!(result["role"], "tool");
    assert_eq!(result["toolCallId"], "t1");
    assert_eq!(result["content"], "3 hits");
    let progress = by_id("progress:agent-run");
    assert_eq!(progress["activityType"], "PROGRESS");
    assert_eq!(progress["content"]["items"]["failed"], 1);
    // The activity the client keeps is the run's end, not its last tick.
    assert_eq!(progress["content"]["status"], "succeeded");
    assert_eq!(progress["content"]["stages"][0]["name"], "research");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_agent_receives_a_tool_s_own_progress_as_its_activity() {
    let Some(node) = node() else { return };
    let hub = TestHub::with_admin(StoreKind::Sqlite).await;
    let run = hub.create_named("crawler").await;
    hub.append(
        &run,
        json!([{"event": "run.started", "name": "agent"},
               {"event": "tool.started", "call_id": "t1", "tool": "crawl",
                "feedback": "Crawling the site"},
               {"event": "progress", "call_id": "t1", "done": 3, "total": 12,
                "unit": "pages", "message": "Page 3 of 12", "elapsed_s": 1.0}]),
    )
    .await;
    // Through the hub, the state shows the tool's progress on its row, and only there.
    let state = hub.state(&run).await;
    let tool = &state["tools"]["in_flight"][0];
    assert_eq!(tool["call_id"], "t1");
    assert_eq!(tool["progress"]["done"], 3);
    assert_eq!(tool["progress"]["total"], 12);
    assert_eq!(tool["progress"]["percent"], 25.0);
    assert_eq!(tool["progress"]["unit"], "pages");
    assert_eq!(tool["progress"]["message"], "Page 3 of 12");
    assert!(state.get("progress").is_none(), "{state:#}");

    let client = attach(&node, &hub, &run);
    wait_until("the AG-UI client to attach", || async {
        hub.metric("herald_subscribers").await == 1.0
    })
    .await;
    hub.append(
        &run,
        json!([{"event": "progress", "call_id": "t1", "done": 9, "elapsed_s": 2.0},
               {"event": "tool.finished", "call_id": "t1", "tool": "crawl",
                "status": "succeeded", "output": "12 pages"},
               {"event": "run.finished", "status": "succeeded"}]),
    )
    .await;
    let followed = Followed::of(client).await;
    followed.assert_accepted();
    let activities: Vec<&Value> = followed
        .events
        .iter()
        .filter(|e| e["type"] == "ACTIVITY_SNAPSHOT")
        .collect();
    assert_eq!(activities.len(), 2, "{:#?}", followed.events);
    assert!(
        activities
            .iter()
            .all(|a| a["messageId"] == "tool-progress:t1" && a["activityType"] == "TOOL_PROGRESS"),
        "{activities:#?}"
    );
    // Each snapshot comes before the call's result.
    let kinds = followed.kinds();
    let result_at = kinds.iter().position(|k| *k == "TOOL_CALL_RESULT").unwrap();
    let last_activity_at = kinds
        .iter()
        .rposition(|k| *k == "ACTIVITY_SNAPSHOT")
        .unwrap();
    assert!(last_activity_at < result_at, "{kinds:?}");

    // The client keeps one activity message for the call, as last reported.
    let messages = followed.last["messages"]
        .as_array()
        .expect("the agent's messages");
    let activity = messages
        .iter()
        .find(|m| m["id"] == "tool-progress:t1")
        .unwrap_or_else(|| panic!("no activity for t1 in {messages:#?}"));
    assert_eq!(activity["role"], "activity");
    assert_eq!(activity["activityType"], "TOOL_PROGRESS");
    let content = numbers_as_floats(&activity["content"]);
    assert_eq!(content["tool_call_id"], "t1");
    assert_eq!(content["tool"], "crawl");
    assert_eq!(content["done"], 9.0);
    assert_eq!(content["total"], 12.0);
    assert_eq!(content["percent"], 75.0);
    assert_eq!(content["message"], "Page 3 of 12");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_agent_sees_a_failed_run_as_a_run_error_and_an_unknown_run_as_a_404() {
    let Some(node) = node() else { return };
    let hub = TestHub::open(StoreKind::Sqlite).await;
    let run = hub.create_named("broken").await;
    hub.append(
        &run,
        json!([{"event": "run.started", "name": "broken"},
               {"event": "stage.started", "stage": "fetch"},
               {"event": "tool.started", "call_id": "t1", "tool": "fetch"},
               {"event": "text.delta", "call_id": "c1", "text": "half a"},
               finished("failed")]),
    )
    .await;
    let followed = Followed::of(attach(&node, &hub, &run)).await;
    followed.assert_accepted();
    let kinds = followed.kinds();
    assert_eq!(kinds.last(), Some(&"RUN_ERROR"), "{kinds:?}");
    assert_eq!(
        followed.events.last().map(|e| &e["code"]),
        Some(&json!("failed"))
    );

    let missing = Run {
        id: "no-such-run".to_owned(),
        write_token: String::new(),
        read_token: String::new(),
    };
    let followed = within(
        "the client to give up",
        Followed::of(attach(&node, &hub, &missing)),
    )
    .await;
    assert!(!followed.output.status.success());
    let error = followed.last["error"].as_str().unwrap_or_default();
    assert!(error.contains("404"), "{}", followed.last);
}
