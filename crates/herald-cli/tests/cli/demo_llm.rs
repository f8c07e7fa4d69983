//! `herald demo --llm`: the real binary's agent against a stub provider on a loopback
//! socket that replays recorded streams (the SDK's `llm_server.rs` and fixtures). The
//! requests the demo sent are checked as the provider would read them: headers, the
//! tools, and the tool results it answered, an error one for a tool it does not have.

use std::process::Output;
use std::time::Duration;

use herald_protocol::{Event, EventBody, RunState, RunStatus, StageStatus, fold};
use serde_json::{Value, json};

use crate::llm_server::{LlmServer, Reply, fixture};
use crate::util::{events, herald};

/// The variables of both providers, so that the machine's own never leak into a test.
const PROVIDER_VARS: [&str; 4] = [
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
];

/// Runs a small, fast demo with `--llm provider`, the variables `vars` set and no
/// others of the providers'.
fn demo(provider: &str, extra: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut args = vec![
        "demo",
        "--items",
        "12",
        "--speed",
        "500",
        "--progress",
        "json",
        "--json",
        "--llm",
        provider,
    ];
    args.extend_from_slice(extra);
    let mut cmd = herald(&args);
    for var in PROVIDER_VARS {
        cmd.env_remove(var);
    }
    cmd.envs(vars.iter().copied());
    cmd.output().expect("the herald binary runs")
}

/// The demo's events and their folded state.
fn story(out: &Output) -> (Vec<Event>, RunState) {
    let events = events(&out.stderr);
    let state = fold(events[0].run.clone(), &events);
    (events, state)
}

#[track_caller]
fn succeeded(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is the result")
}

const REPORT: &str = "Three risks stand out: late supplier deliveries, an unsigned amendment, and invoices paid twice.";

/// What both providers' round trips must show in the run's events.
#[track_caller]
fn check_story(events: &[Event], state: &RunState, lookup_id: &str, unknown_id: &str) {
    assert_eq!(state.status, RunStatus::Succeeded);
    let report = state.stages.iter().find(|s| s.name == "report").unwrap();
    assert_eq!(report.status, StageStatus::Succeeded);
    assert_eq!(state.agent.response.as_deref(), Some(REPORT));
    assert!(state.text.ends_with(REPORT), "{}", state.text);
    assert_eq!(
        state.llm.model.as_deref().map(|m| m.is_empty()),
        Some(false)
    );
    // The three model calls of the report were reported by the stream adapter.
    let responses: Vec<&herald_protocol::LlmResponse> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::LlmResponse(r) if r.ttft_s.is_some() => Some(r),
            _ => None,
        })
        .collect();
    let reasons: Vec<Option<&str>> = responses.iter().map(|r| r.stop_reason.as_deref()).collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(responses.iter().all(|r| r.input_tokens.is_some()));
    // The tools ran under the model's own call ids: selected, started, finished.
    let tool_events: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::ToolSelected(t) => Some(("selected".into(), t.call_id.clone())),
            EventBody::ToolStarted(t) => Some(("started".into(), t.call_id.clone())),
            EventBody::ToolFinished(t) => Some((format!("{:?}", t.status), t.call_id.clone())),
            _ => None,
        })
        .filter(|(_, id)| id == lookup_id || id == unknown_id)
        .collect();
    let expected: Vec<(String, String)> = [
        ("selected", lookup_id),
        ("started", lookup_id),
        ("Succeeded", lookup_id),
        ("selected", unknown_id),
        ("started", unknown_id),
        ("Failed", unknown_id),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    assert_eq!(tool_events, expected);
    let failed = state
        .tools
        .done
        .iter()
        .find(|t| t.call_id == unknown_id)
        .expect("the unknown tool's call");
    assert_eq!(failed.tool, "delete_documents");
    assert!(
        failed
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("unknown tool delete_documents")),
        "{:?}",
        failed.error
    );
}

/// The lookup's output the demo answered with: document 3, its title and summary.
#[track_caller]
fn check_lookup_output(output: &str) {
    let output: Value = serde_json::from_str(output).expect("the output is JSON text");
    assert_eq!(output["doc"], 3, "{output}");
    assert!(
        output["title"].as_str().unwrap().starts_with("doc-003"),
        "{output}"
    );
    assert!(
        output["summary"].as_str().unwrap().starts_with("Docs 1-10"),
        "{output}"
    );
}

#[test]
fn anthropic_tool_round_trip_with_an_unknown_tool_answered_as_an_error() {
    let server = LlmServer::start(vec![
        Reply::fixture("demo/anthropic_lookup.sse"),
        Reply::fixture("demo/anthropic_unknown_tool.sse"),
        Reply::fixture("demo/anthropic_answer.sse"),
    ]);
    let out = demo(
        "anthropic",
        &["--model", "claude-test"],
        &[
            ("ANTHROPIC_API_KEY", "sk-ant-test"),
            ("ANTHROPIC_BASE_URL", &format!("{}/", server.url)),
        ],
    );
    let result = succeeded(&out);
    assert_eq!(result["report"], REPORT);
    assert_eq!(result["llm"]["model"], "claude-sonnet-4-5-20250929");
    assert_eq!(result["llm"]["turns"], 3);
    assert_eq!(result["llm"]["tool_calls"], 2);
    let (events, state) = story(&out);
    check_story(
        &events,
        &state,
        "toolu_01A09q90qw90lq917835lq9",
        "toolu_01CsTQ1YYeZRPeRTpsZBm9Nz",
    );

    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    for r in &requests {
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/v1/messages")
        );
        assert_eq!(r.header("x-api-key"), Some("sk-ant-test"));
        assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(r.body["model"], "claude-test");
        assert_eq!(r.body["stream"], true);
        let tools: Vec<&str> = r.body["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(tools, ["lookup_document", "search_summaries"]);
        assert!(r.body["tools"][0]["input_schema"]["properties"]["doc"].is_object());
    }
    let first = &requests[0].body["messages"];
    assert_eq!(first.as_array().unwrap().len(), 1);
    assert_eq!(first[0]["role"], "user");

    // The second call carries the model's turn and the lookup's result.
    let second = requests[1].body["messages"].as_array().unwrap();
    assert_eq!(second.len(), 3);
    assert_eq!(
        second[1],
        json!({"role": "assistant", "content": [
            {"type": "text", "text": "I'll read document 3 first."},
            {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "lookup_document", "input": {"doc": 3}},
        ]})
    );
    let result = &second[2];
    assert_eq!(result["role"], "user");
    assert_eq!(result["content"][0]["type"], "tool_result");
    assert_eq!(
        result["content"][0]["tool_use_id"],
        "toolu_01A09q90qw90lq917835lq9"
    );
    assert!(result["content"][0].get("is_error").is_none());
    check_lookup_output(result["content"][0]["content"].as_str().unwrap());

    // The third answers the unknown tool with an error result, not a crash.
    let third = requests[2].body["messages"].as_array().unwrap();
    assert_eq!(third.len(), 5);
    assert_eq!(
        third[3]["content"][0]["name"], "delete_documents",
        "{}",
        third[3]
    );
    let error = &third[4]["content"][0];
    assert_eq!(error["type"], "tool_result");
    assert_eq!(error["tool_use_id"], "toolu_01CsTQ1YYeZRPeRTpsZBm9Nz");
    assert_eq!(error["is_error"], true);
    assert_eq!(
        error["content"],
        "unknown tool delete_documents: the tools are lookup_document and search_summaries"
    );
}

#[test]
fn openai_tool_round_trip_with_an_unknown_tool_answered_as_an_error() {
    let server = LlmServer::start(vec![
        Reply::fixture("demo/openai_lookup.sse"),
        Reply::fixture("demo/openai_unknown_tool.sse"),
        Reply::fixture("demo/openai_answer.sse"),
    ]);
    let out = demo(
        "openai",
        &[],
        &[
            ("OPENAI_API_KEY", "sk-test"),
            ("OPENAI_BASE_URL", &format!("{}/v1", server.url)),
        ],
    );
    let result = succeeded(&out);
    assert_eq!(result["report"], REPORT);
    assert_eq!(result["llm"]["model"], "gpt-4o-mini-2024-07-18");
    let (events, state) = story(&out);
    check_story(
        &events,
        &state,
        "call_Xw8bPq3LmT5vRk2Jd9NcYa1F",
        "call_Lm4nQx7Tz2Rb9Wc5Kd1Ps8Vy",
    );

    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    for r in &requests {
        assert_eq!(r.path, "/v1/chat/completions");
        assert_eq!(r.header("authorization"), Some("Bearer sk-test"));
        // Without --model, the default.
        assert_eq!(r.body["model"], "gpt-4o-mini");
        assert_eq!(r.body["stream"], true);
        assert_eq!(r.body["stream_options"]["include_usage"], true);
        assert_eq!(r.body["tools"][0]["type"], "function");
        assert_eq!(r.body["tools"][0]["function"]["name"], "lookup_document");
        assert_eq!(r.body["messages"][0]["role"], "system");
    }
    let second = requests[1].body["messages"].as_array().unwrap();
    assert_eq!(second.len(), 4);
    assert_eq!(
        second[2],
        json!({"role": "assistant", "content": "I'll read document 3 first.", "tool_calls": [
            {"id": "call_Xw8bPq3LmT5vRk2Jd9NcYa1F", "type": "function",
             "function": {"name": "lookup_document", "arguments": "{\"doc\":3}"}},
        ]})
    );
    assert_eq!(second[3]["role"], "tool");
    assert_eq!(second[3]["tool_call_id"], "call_Xw8bPq3LmT5vRk2Jd9NcYa1F");
    check_lookup_output(second[3]["content"].as_str().unwrap());

    let third = requests[2].body["messages"].as_array().unwrap();
    assert_eq!(third.len(), 6);
    assert_eq!(third[4]["content"], Value::Null);
    assert_eq!(
        third[5],
        json!({"role": "tool", "tool_call_id": "call_Lm4nQx7Tz2Rb9Wc5Kd1Ps8Vy",
               "content": "error: unknown tool delete_documents: the tools are lookup_document and search_summaries"})
    );
}

#[test]
fn an_overloaded_or_rate_limited_api_and_an_error_mid_stream_are_tried_again() {
    let server = LlmServer::start(vec![
        Reply::error(529, fixture("anthropic/overloaded.json")),
        Reply::error(429, fixture("anthropic/rate_limited.json")),
        Reply::fixture("anthropic/error_after_delta.sse"),
        Reply::fixture("demo/anthropic_answer.sse"),
    ]);
    let out = demo(
        "anthropic",
        &[],
        &[
            ("ANTHROPIC_API_KEY", "sk-ant-test"),
            ("ANTHROPIC_BASE_URL", &server.url),
        ],
    );
    let result = succeeded(&out);
    assert_eq!(result["report"], REPORT);
    assert_eq!(server.requests().len(), 4);
    assert_eq!(server.requests()[0].body["model"], "claude-sonnet-4-5");
    let (events, state) = story(&out);
    assert_eq!(state.status, RunStatus::Succeeded);
    let errors: Vec<Option<String>> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::LlmResponse(r) if r.ttft_s.is_some() || r.error.is_some() => {
                Some(r.error.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        errors,
        [
            Some("overloaded_error: Overloaded (HTTP 529)".to_owned()),
            Some("rate_limit_error: This request would exceed the rate limit for your organization of 50 requests per minute. (HTTP 429)".to_owned()),
            Some("overloaded_error: Overloaded".to_owned()),
            None,
        ]
    );
    let warnings = state
        .logs
        .iter()
        .filter(|l| l.message.contains("trying again"))
        .count();
    assert_eq!(warnings, 3, "{:?}", state.logs);
}

#[test]
fn the_api_retry_after_is_waited_in_full_whatever_the_speed() {
    let server = LlmServer::start(vec![
        Reply::error(429, fixture("anthropic/rate_limited.json")).retry_after(1),
        Reply::fixture("demo/anthropic_answer.sse"),
    ]);
    // `--speed 500` shortens herald's own backoff to 2 ms, not the API's second.
    let out = demo(
        "anthropic",
        &[],
        &[
            ("ANTHROPIC_API_KEY", "sk-ant-test"),
            ("ANTHROPIC_BASE_URL", &server.url),
        ],
    );
    succeeded(&out);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let waited = requests[1].at - requests[0].at;
    assert!(
        waited >= Duration::from_secs(1),
        "tried again after {waited:?}"
    );
}

#[test]
fn a_blank_model_is_a_usage_error() {
    let out = demo(
        "openai",
        &["--model", "  "],
        &[("OPENAI_API_KEY", "sk-test")],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("herald: --model must name a model"),
        "{stderr}"
    );
    assert!(!stderr.contains("run.started"), "{stderr}");
}

#[test]
fn an_api_error_that_will_not_pass_fails_the_run_with_exit_code_1() {
    let server = LlmServer::start(vec![Reply::error(
        401,
        br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#
            .to_vec(),
    )]);
    let out = demo(
        "anthropic",
        &[],
        &[
            ("ANTHROPIC_API_KEY", "sk-ant-wrong"),
            ("ANTHROPIC_BASE_URL", &server.url),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("herald: the model call to ")
            && stderr.ends_with("authentication_error: invalid x-api-key (HTTP 401)\n"),
        "{stderr}"
    );
    assert_eq!(server.requests().len(), 1, "a 401 is not tried again");
    let events: Vec<Event> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| herald_protocol::parse_event(l).unwrap())
        .collect();
    let state = fold(events[0].run.clone(), &events);
    assert_eq!(state.status, RunStatus::Failed);
    let report = state.stages.iter().find(|s| s.name == "report").unwrap();
    assert_eq!(report.status, StageStatus::Failed);
}

#[test]
fn a_missing_key_is_a_usage_error_before_any_work() {
    for (provider, var) in [
        ("anthropic", "ANTHROPIC_API_KEY"),
        ("openai", "OPENAI_API_KEY"),
    ] {
        let out = demo(provider, &[], &[]);
        assert_eq!(out.status.code(), Some(2), "{provider}");
        assert!(out.stdout.is_empty());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with(&format!(
                "herald: --llm {provider} needs an API key in {var}"
            )),
            "{stderr}"
        );
        // Nothing ran: no run was started.
        assert!(!stderr.contains("run.started"), "{stderr}");
    }
}

#[test]
fn model_without_llm_is_refused() {
    let out = herald(&["demo", "--model", "gpt-4o"])
        .output()
        .expect("the herald binary runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--llm"));
}
