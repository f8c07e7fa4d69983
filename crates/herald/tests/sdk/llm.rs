//! The model stream adapters against the providers' recorded wire formats: over a real
//! loopback socket through ureq, as a blocking program reads them (`LlmRead`), and fed
//! in every chunking and line by line, as async code would (`LlmStream::feed`).
//!
//! The fixtures are the providers' documented and recorded streams
//! (`tests/fixtures/llm/`, whose README says where each comes from).

use std::io::Read;
use std::time::Duration;

use herald::protocol::{Event, EventBody};
use herald::{LlmError, LlmReply, LlmStream, MemorySink, Run};
use serde_json::{Value, json};

use crate::llm_server::{LlmServer, Reply, fixture};
use crate::util::{only_state, recorder};

/// Which adapter a test uses.
#[derive(Clone, Copy, Debug)]
enum Provider {
    Anthropic,
    OpenAi,
}

impl Provider {
    fn stream(self, run: &Run) -> LlmStream {
        match self {
            Provider::Anthropic => LlmStream::anthropic(run, "claude-opus-4-1"),
            Provider::OpenAi => LlmStream::openai(run, "gpt-4o"),
        }
    }

    fn path(self) -> &'static str {
        match self {
            Provider::Anthropic => "/v1/messages",
            Provider::OpenAi => "/v1/chat/completions",
        }
    }
}

/// What a program got from one call: the bytes it read, and the adapter's reply or the
/// HTTP error.
struct Outcome {
    bytes: Vec<u8>,
    reply: Result<LlmReply, LlmError>,
}

/// Makes one streamed call to `server` as a blocking program would, with ureq,
/// reading the body through the adapter.
fn call(server: &LlmServer, provider: Provider, stream: LlmStream) -> Outcome {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let res = agent
        .post(format!("{}{}", server.url, provider.path()))
        .send_json(json!({"model": "m", "stream": true, "messages": []}))
        .expect("the stub answers");
    let status = res.status().as_u16();
    if status != 200 {
        let bytes = res.into_body().read_to_vec().expect("an error body");
        let error = stream.http_error(status, &bytes);
        return Outcome {
            bytes,
            reply: Err(error),
        };
    }
    let mut reader = stream.reader(res.into_body().into_reader());
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).expect("the stream reads");
    Outcome {
        bytes,
        reply: Ok(reader.finish()),
    }
}

/// Replays `replies` to one call through the adapter, in a run of its own; returns
/// the outcome and the run's events.
fn replay(provider: Provider, reply: Reply) -> (Outcome, Vec<Event>, MemorySink) {
    let server = LlmServer::start(vec![reply]);
    let (progress, sink) = recorder();
    let run = progress.run("agent");
    let outcome = call(&server, provider, provider.stream(&run));
    run.finish();
    drop(progress);
    let events = sink.events();
    (outcome, events, sink)
}

/// The model call's events (from `llm.request` on, without heartbeats and the run's
/// end) as JSON without the envelope and without the measured times, which
/// [`times`] checks.
fn reported(events: &[Event]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| {
            !matches!(
                e.body,
                EventBody::RunStarted(_) | EventBody::RunFinished(_) | EventBody::Heartbeat(_)
            )
        })
        .map(|e| {
            let mut v = serde_json::to_value(e).expect("an event serializes");
            let o = v.as_object_mut().expect("an object");
            for key in ["v", "run", "seq", "ts", "elapsed_s", "ttft_s"] {
                o.shift_remove(key);
            }
            v
        })
        .collect()
}

/// The `llm.response`'s time to first token and elapsed time, in seconds.
fn times(events: &[Event]) -> (Option<f64>, Option<f64>) {
    events
        .iter()
        .find_map(|e| match &e.body {
            EventBody::LlmResponse(r) => Some((r.ttft_s, r.elapsed_s)),
            _ => None,
        })
        .expect("an llm.response")
}

#[track_caller]
fn check(events: &[Event], expected: &[Value]) {
    let actual = reported(events);
    assert_eq!(
        actual,
        expected,
        "\nactual:\n{}",
        actual
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn text(t: &str, call: &str) -> Value {
    json!({"event": "text.delta", "text": t, "call_id": call})
}

#[test]
fn anthropic_text_arrives_as_deltas_then_the_response_and_a_ping_changes_nothing() {
    let (outcome, events, sink) = replay(Provider::Anthropic, Reply::fixture("anthropic/text.sse"));
    assert_eq!(
        outcome.bytes,
        fixture("anthropic/text.sse"),
        "bytes pass unchanged"
    );
    check(
        &events,
        &[
            json!({"event": "llm.request", "call_id": "llm-1", "provider": "anthropic", "model": "claude-opus-4-1"}),
            text("Hello", "llm-1"),
            text("!", "llm-1"),
            json!({"event": "llm.response", "call_id": "llm-1", "model": "claude-opus-4-1-20250805",
                   "stop_reason": "end_turn", "input_tokens": 25, "output_tokens": 15}),
        ],
    );
    let (ttft, elapsed) = times(&events);
    let (ttft, elapsed) = (ttft.expect("a time to first token"), elapsed.unwrap());
    assert!(
        ttft > 0.0 && ttft <= elapsed,
        "ttft {ttft}, elapsed {elapsed}"
    );
    let reply = outcome.reply.expect("a stream");
    assert_eq!(reply.text, "Hello!");
    assert_eq!(reply.stop_reason.as_deref(), Some("end_turn"));
    assert!(reply.error.is_none());
    let state = only_state(&sink);
    assert_eq!(state.text, "Hello!");
    assert_eq!(state.llm.model.as_deref(), Some("claude-opus-4-1-20250805"));
    assert!(state.llm.in_flight.is_empty());
}

#[test]
fn anthropic_tool_input_in_fragments_is_selected_once_complete() {
    let (outcome, events, sink) = replay(
        Provider::Anthropic,
        Reply::fixture("anthropic/tool_use.sse"),
    );
    assert_eq!(outcome.bytes, fixture("anthropic/tool_use.sse"));
    let words = [
        "Okay",
        ",",
        " let",
        "'s",
        " check",
        " the",
        " weather",
        " for",
        " San",
        " Francisco",
        ",",
        " CA",
        ":",
    ];
    let input = json!({"location": "San Francisco, CA", "unit": "fahrenheit"});
    let mut expected = vec![
        json!({"event": "llm.request", "call_id": "llm-1", "provider": "anthropic", "model": "claude-opus-4-1"}),
    ];
    expected.extend(words.iter().map(|w| text(w, "llm-1")));
    expected.extend([
        json!({"event": "tool.selected", "call_id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "tool": "get_weather", "input": input}),
        json!({"event": "llm.response", "call_id": "llm-1", "model": "claude-opus-4-1-20250805",
               "stop_reason": "tool_use", "input_tokens": 472, "output_tokens": 89}),
    ]);
    check(&events, &expected);
    let reply = outcome.reply.unwrap();
    assert_eq!(reply.tool_uses.len(), 1);
    assert_eq!(reply.tool_uses[0].id, "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
    assert_eq!(reply.tool_uses[0].input, input);
    // Selected and not started: the program runs the tool under the model's id.
    let state = only_state(&sink);
    assert_eq!(state.tools.in_flight.len(), 1);
    assert_eq!(state.tools.in_flight[0].tool, "get_weather");
}

#[test]
fn anthropic_thinking_is_not_text_but_is_the_first_token() {
    let (_, events, _) = replay(
        Provider::Anthropic,
        Reply::fixture("anthropic/thinking.sse"),
    );
    check(
        &events,
        &[
            json!({"event": "llm.request", "call_id": "llm-1", "provider": "anthropic", "model": "claude-opus-4-1"}),
            text("27 * 453 = 12,231", "llm-1"),
            // This stream's message carries no usage: no tokens are made up.
            json!({"event": "llm.response", "call_id": "llm-1", "model": "claude-opus-4-1-20250805", "stop_reason": "end_turn"}),
        ],
    );
    assert!(times(&events).0.is_some());
}

#[test]
fn anthropic_prompt_cache_tokens_count_as_input_and_the_last_usage_wins() {
    let (_, events, _) = replay(
        Provider::Anthropic,
        Reply::fixture("anthropic/cached_prompt.sse"),
    );
    check(
        &events,
        &[
            json!({"event": "llm.request", "call_id": "llm-1", "provider": "anthropic", "model": "claude-opus-4-1"}),
            text("Three risks stand out.", "llm-1"),
            json!({"event": "llm.response", "call_id": "llm-1", "model": "claude-haiku-4-5-20251001",
                   "stop_reason": "end_turn", "input_tokens": 2054, "output_tokens": 9}),
        ],
    );
}

#[test]
fn an_anthropic_error_event_after_the_first_delta_fails_the_call_with_its_type() {
    let (outcome, events, sink) = replay(
        Provider::Anthropic,
        Reply::fixture("anthropic/error_after_delta.sse"),
    );
    // The program still reads every byte: the adapter only watched.
    assert_eq!(outcome.bytes, fixture("anthropic/error_after_delta.sse"));
    check(
        &events,
        &[
            json!({"event": "llm.request", "call_id": "llm-1", "provider": "anthropic", "model": "claude-opus-4-1"}),
            text("The report", "llm-1"),
            json!({"event": "llm.response", "call_id": "llm-1", "model": "claude-sonnet-4-5-20250929",
                   "stop_reason": "error", "input_tokens": 12, "output_tokens": 1,
                   "error": "overloaded_error: Overloaded"}),
        ],
    );
    let error = outcome.reply.unwrap().error.expect("the call failed");
    assert_eq!(error.kind.as_deref(), Some("overloaded_error"));
    assert_eq!(error.status, None);
    assert!(error.is_retryable());
    let last = only_state(&sink).last_error.expect("a last error");
    assert_eq!(last.message, "overloaded_error: Overloaded");
    assert_eq!(last.source, "llm llm-1");
}

#[test]
fn http_errors_before_the_stream_fail_the_call_naming_the_providers_error() {
    for (provider, reply, status, shown, retryable) in [
        (
            Provider::Anthropic,
            Reply::error(529, fixture("anthropic/overloaded.json")),
            529,
            "overloaded_error: Overloaded (HTTP 529)",
            true,
        ),
        (
            Provider::Anthropic,
            Reply::error(429, fixture("anthropic/rate_limited.json")),
            429,
            "rate_limit_error: This request would exceed the rate limit for your organization of 50 requests per minute. (HTTP 429)",
            true,
        ),
        (
            Provider::OpenAi,
            Reply::error(429, fixture("openai/rate_limited.json")),
            429,
            "rate_limit_exceeded: Rate limit reached for gpt-4o in organization org-abc123 on requests per min (RPM): Limit 500, Used 500, Requested 1. Please try again in 120ms. (HTTP 429)",
            true,
        ),
        // A proxy's page, not the provider's JSON: its start is the message.
        (
            Provider::OpenAi,
            Reply::error(502, b"<html><body>502 Bad Gateway</body></html>".to_vec()),
            502,
            "<html><body>502 Bad Gateway</body></html> (HTTP 502)",
            true,
        ),
        (
            Provider::Anthropic,
            Reply::error(
                401,
                br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#.to_vec(),
            ),
            401,
            "authentication_error: invalid x-api-key (HTTP 401)",
            false,
        ),
    ] {
        let (outcome, events, sink) = replay(provider, reply);
        let error = outcome.reply.expect_err("an HTTP error");
        assert_eq!(error.status, Some(status));
        assert_eq!(error.to_string(), shown);
        assert_eq!(error.is_retryable(), retryable, "{shown}");
        let response = reported(&events).pop().unwrap();
        assert_eq!(response["event"], "llm.response", "{response}");
        assert_eq!(response["stop_reason"], "error");
        assert_eq!(response["error"], shown);
        assert_eq!(only_state(&sink).last_error.unwrap().message, shown);
    }
}

#[test]
fn openai_text_arrives_as_deltas_and_the_usage_chunk_gives_the_tokens() {
    let (outcome, events, _) = replay(Provider::OpenAi, Reply::fixture("openai/text.sse"));
    assert_eq!(outcome.bytes, fixture("openai/text.sse"));
    let mut expected = vec![
        json!({"event": "llm.request", "call_id": "llm-1", "provider": "openai", "model": "gpt-4o"}),
    ];
    // The first chunk's empty content (with the role) is no text.
    for w in [
        "Hello", "!", " How", " can", " I", " help", " you", " today", "?",
    ] {
        expected.push(text(w, "llm-1"));
    }
    expected.push(
        json!({"event": "llm.response", "call_id": "llm-1", "model": "gpt-4o-2024-05-13",
                         "stop_reason": "stop", "input_tokens": 13, "output_tokens": 10}),
    );
    check(&events, &expected);
    assert_eq!(
        outcome.reply.unwrap().text,
        "Hello! How can I help you today?"
    );
}

#[test]
fn openai_tool_arguments_in_fragments_are_selected_once_complete() {
    let (outcome, events, _) = replay(Provider::OpenAi, Reply::fixture("openai/tool_calls.sse"));
    assert_eq!(outcome.bytes, fixture("openai/tool_calls.sse"));
    check(
        &events,
        &[
            json!({"event": "llm.request", "call_id": "llm-1", "provider": "openai", "model": "gpt-4o"}),
            json!({"event": "tool.selected", "call_id": "call_9ctHOJqO3bYrpm2A6S7nHd5k",
                   "tool": "get_current_weather", "input": {"location": "Boston, MA"}}),
            json!({"event": "llm.response", "call_id": "llm-1", "model": "gpt-4-turbo-2024-04-09",
                   "stop_reason": "tool_calls", "input_tokens": 83, "output_tokens": 17}),
        ],
    );
    assert!(times(&events).0.is_some(), "a tool call is a first token");
}

#[test]
fn openai_parallel_tool_calls_are_selected_in_order() {
    let (outcome, events, _) = replay(
        Provider::OpenAi,
        Reply::fixture("openai/parallel_tool_calls.sse"),
    );
    check(
        &events,
        &[
            json!({"event": "llm.request", "call_id": "llm-1", "provider": "openai", "model": "gpt-4o"}),
            json!({"event": "tool.selected", "call_id": "call_mKZvGqJ5yS9hB1dLw1mCUlLr",
                   "tool": "get_weather", "input": {"location": "Paris"}}),
            json!({"event": "tool.selected", "call_id": "call_3xHvT0mPqX8cC0N2pQ7yRk1S",
                   "tool": "get_time", "input": {"tz": "Europe/Paris"}}),
            json!({"event": "llm.response", "call_id": "llm-1", "model": "gpt-4o-mini-2024-07-18",
                   "stop_reason": "tool_calls", "input_tokens": 91, "output_tokens": 46}),
        ],
    );
    let names: Vec<String> = outcome
        .reply
        .unwrap()
        .tool_uses
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["get_weather", "get_time"]);
}

#[test]
fn an_openai_error_chunk_after_the_first_delta_fails_the_call_with_its_type() {
    let (_, events, _) = replay(
        Provider::OpenAi,
        Reply::fixture("openai/error_after_delta.sse"),
    );
    check(
        &events,
        &[
            json!({"event": "llm.request", "call_id": "llm-1", "provider": "openai", "model": "gpt-4o"}),
            text("The report", "llm-1"),
            json!({"event": "llm.response", "call_id": "llm-1", "model": "gpt-4o-2024-08-06", "stop_reason": "error",
                   "error": "server_error: The server had an error while processing your request. Sorry about that!"}),
        ],
    );
}

#[test]
fn a_stream_cut_before_the_model_stopped_is_a_failed_call() {
    for (provider, name) in [
        (Provider::Anthropic, "anthropic/text.sse"),
        (Provider::OpenAi, "openai/text.sse"),
    ] {
        let whole = fixture(name);
        let cut = whole[..whole.len() / 2].to_vec();
        let (outcome, events, _) = replay(provider, Reply::stream(cut.clone()));
        assert_eq!(outcome.bytes, cut);
        let response = reported(&events).pop().unwrap();
        assert_eq!(response["stop_reason"], "error", "{name}: {response}");
        assert_eq!(
            response["error"], "the stream ended before the model stopped",
            "{name}"
        );
    }
}

#[test]
fn heartbeats_go_out_while_no_byte_has_arrived() {
    let (gate_tx, gate) = std::sync::mpsc::channel();
    let server = LlmServer::start(vec![Reply::fixture("anthropic/text.sse").after(gate)]);
    let (progress, sink) = recorder();
    let run = progress.run("agent");
    let stream =
        LlmStream::anthropic(&run, "claude-opus-4-1").heartbeat_every(Duration::from_millis(50));
    let reading = std::thread::spawn(move || call(&server, Provider::Anthropic, stream));
    // The provider says nothing until the run has been heard from twice.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sink
        .events()
        .iter()
        .filter(|e| e.event_type() == "heartbeat")
        .count()
        < 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no heartbeats in 10 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    gate_tx.send(()).unwrap();
    let outcome = reading.join().unwrap();
    assert_eq!(outcome.reply.unwrap().text, "Hello!");
    run.finish();
    drop(progress);
    let types: Vec<String> = sink
        .events()
        .iter()
        .map(|e| e.event_type().to_owned())
        .collect();
    let request = types.iter().position(|t| t == "llm.request").unwrap();
    let first_text = types.iter().position(|t| t == "text.delta").unwrap();
    let beats = types[request..first_text]
        .iter()
        .filter(|t| *t == "heartbeat")
        .count();
    assert!(beats >= 2, "{types:?}");
}

/// The events `feed` reports for `bytes` given in pieces of `size` (0: line by line
/// through `feed_line`).
fn fed(provider: Provider, bytes: &[u8], size: usize) -> Vec<Value> {
    let (progress, sink) = recorder();
    let run = progress.run("agent");
    let mut stream = provider.stream(&run);
    if size == 0 {
        for line in std::str::from_utf8(bytes).unwrap().lines() {
            stream.feed_line(line);
        }
    } else {
        for piece in bytes.chunks(size) {
            stream.feed(piece);
        }
    }
    let reply = stream.finish();
    run.finish();
    drop(progress);
    let mut events = reported(&sink.events());
    events.push(json!({"text": reply.text, "tools": reply.tool_uses.len()}));
    events
}

#[test]
fn any_chunking_and_line_by_line_feeding_report_the_same_events() {
    for (provider, name) in [
        (Provider::Anthropic, "anthropic/text.sse"),
        (Provider::Anthropic, "anthropic/tool_use.sse"),
        (Provider::Anthropic, "anthropic/thinking.sse"),
        (Provider::Anthropic, "anthropic/error_after_delta.sse"),
        (Provider::OpenAi, "openai/text.sse"),
        (Provider::OpenAi, "openai/parallel_tool_calls.sse"),
        (Provider::OpenAi, "openai/error_after_delta.sse"),
    ] {
        let bytes = fixture(name);
        let whole = fed(provider, &bytes, bytes.len());
        assert!(whole.len() > 3, "{name}: {whole:?}");
        for size in [0, 1, 2, 3, 5, 64] {
            assert_eq!(
                fed(provider, &bytes, size),
                whole,
                "{name} in pieces of {size}"
            );
        }
        // Carriage returns end lines too (some proxies rewrite line endings).
        let crlf = String::from_utf8(bytes.clone())
            .unwrap()
            .replace('\n', "\r\n");
        assert_eq!(fed(provider, crlf.as_bytes(), 7), whole, "{name} with CRLF");
    }
}

#[test]
fn an_adapter_dropped_unfinished_reports_a_failed_call_once() {
    let (progress, sink) = recorder();
    let run = progress.run("agent");
    let mut stream = LlmStream::openai_compatible(&run, "vllm", "qwen3");
    assert_eq!(stream.call_id(), "llm-1");
    stream.feed(&fixture("openai/text.sse")[..200]);
    drop(stream);
    let mut finished = LlmStream::anthropic(&run, "claude-opus-4-1");
    finished.feed(&fixture("anthropic/text.sse"));
    // Closed by its `message_stop`, the call keeps its id, and finishing reports nothing
    // more.
    assert_eq!(finished.call_id(), "llm-2");
    assert_eq!(finished.reply().text, "Hello!");
    let reply = finished.finish();
    assert_eq!(reply.text, "Hello!");
    run.finish();
    drop(progress);
    let events = reported(&sink.events());
    let responses: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "llm.response")
        .collect();
    assert_eq!(responses.len(), 2, "{events:?}");
    assert_eq!(events[0]["provider"], "vllm");
    assert_eq!(
        responses[0]["error"],
        "the stream ended before the model stopped"
    );
    assert_eq!(responses[1]["stop_reason"], "end_turn");
}

#[test]
fn a_usage_chunk_with_null_or_no_choices_still_counts_and_sse_events_can_be_fed_whole() {
    for usage_chunk in [
        r#"{"id":"x","object":"chat.completion.chunk","model":"qwen3","choices":null,"usage":{"prompt_tokens":7,"completion_tokens":2}}"#,
        r#"{"id":"x","object":"chat.completion.chunk","model":"qwen3","usage":{"prompt_tokens":7,"completion_tokens":2}}"#,
    ] {
        let (progress, sink) = recorder();
        let run = progress.run("agent");
        let mut stream = LlmStream::openai_compatible(&run, "vllm", "qwen3");
        // As a client that parses server-sent events hands them over.
        stream.feed_event(
            None,
            r#"{"id":"x","object":"chat.completion.chunk","model":"qwen3","choices":[{"index":0,"delta":{"reasoning_content":"Hm."}}]}"#,
        );
        stream.feed_event(
            Some("message"),
            r#"{"id":"x","object":"chat.completion.chunk","model":"qwen3","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}"#,
        );
        stream.feed_event(None, usage_chunk);
        stream.feed_event(None, "[DONE]");
        let reply = stream.finish();
        run.finish();
        drop(progress);
        assert_eq!(reply.text, "Hi");
        check(
            &sink.events(),
            &[
                json!({"event": "llm.request", "call_id": "llm-1", "provider": "vllm", "model": "qwen3"}),
                text("Hi", "llm-1"),
                json!({"event": "llm.response", "call_id": "llm-1", "model": "qwen3",
                       "stop_reason": "stop", "input_tokens": 7, "output_tokens": 2}),
            ],
        );
    }
}

#[test]
fn a_read_error_fails_the_call_and_reaches_the_program_unchanged() {
    /// The first half of a stream, then a connection reset.
    struct Reset(Vec<u8>);
    impl Read for Reset {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(std::io::ErrorKind::ConnectionReset.into());
            }
            let n = buf.len().min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0.drain(..n);
            Ok(n)
        }
    }
    let (progress, sink) = recorder();
    let run = progress.run("agent");
    let half = fixture("anthropic/tool_use.sse")[..1500].to_vec();
    let mut reader = LlmStream::anthropic(&run, "claude-opus-4-1").reader(Reset(half.clone()));
    let mut bytes = Vec::new();
    let err = reader.read_to_end(&mut bytes).expect_err("the reset");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    assert_eq!(bytes, half);
    let reply = reader.finish();
    run.finish();
    drop(progress);
    let error = reply.error.expect("a failed call");
    assert!(error.message.starts_with("reading the stream: "), "{error}");
    let response = reported(&sink.events()).pop().unwrap();
    assert_eq!(response["stop_reason"], "error");
    assert_eq!(response["error"], error.to_string());
}
