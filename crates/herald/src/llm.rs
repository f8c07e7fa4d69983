//! Adapters for the model providers' streaming wire formats (features `anthropic` and
//! `openai`): an [`LlmStream`] watches the bytes of one streamed model call, whichever
//! HTTP client read them, and reports the call through its [`Run`] by itself.
//!
//! It observes and never consumes: [`LlmStream::feed`] takes the bytes (or
//! [`LlmStream::feed_line`] the lines) async code read, and [`LlmRead`] wraps a blocking
//! reader and passes every byte on unchanged. From what it sees it reports:
//!
//! - `llm.request` (call id, provider, model) when it is created, before the request
//!   goes out, so the time to first token counts from there;
//! - `text.delta` for each piece of the answer's text, with the call id;
//! - `tool.selected` for each tool the model calls, with the provider's tool call id
//!   and the parsed input, once its JSON is complete;
//! - `heartbeat` while the call is open and nothing else was reported for a while
//!   (waiting for the first token, or a long pause), through a heartbeat guard;
//! - `llm.response` when the model stops: the model that answered, the stop reason,
//!   the tokens, the time to first token; or, for a failed call, stop reason `error`
//!   and the provider's error type and message, whether it came as an `error` event in
//!   the stream or as an HTTP error ([`LlmStream::http_error`]).
//!
//! Thinking (Anthropic's `thinking_delta`, the `reasoning_content` of OpenAI-compatible
//! servers) is not text of the answer: it counts as the first token and keeps the call
//! alive, and is not reported.
//!
//! # Layout
//!
//! - `sse`: bytes to lines to events, for both providers.
//! - `anthropic`: the Messages API's events.
//! - `openai`: chat completion chunks, as OpenAI, vLLM, llama.cpp's server and Ollama
//!   send them.

use std::fmt;
use std::io::{self, Read};
use std::time::{Duration, Instant};

use herald_protocol::ToolSelected;
use serde_json::Value;

use crate::handles::{HeartbeatGuard, LlmCall, LlmUsage, Run};

#[cfg(feature = "anthropic")]
mod anthropic;
#[cfg(feature = "openai")]
mod openai;
mod sse;

/// How long a call may be silent before its heartbeat guard speaks, unless
/// [`LlmStream::heartbeat_every`] says otherwise.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// One streamed model call, observed: feed it what the HTTP client read and it reports
/// the call through its run. Created by [`LlmStream::anthropic`] or
/// [`LlmStream::openai`].
///
/// Finish it with [`LlmStream::finish`] when the stream has ended, which returns what
/// the model said. Dropped, it closes the call the same way: a stream that ended
/// before the model stopped reports a failed call, never silence.
#[must_use = "a stream adapter dropped at once reports a failed call"]
pub struct LlmStream {
    call: Call,
    sse: sse::SseParser,
    wire: Wire,
}

/// The provider's wire format, with what it has to remember between events.
enum Wire {
    #[cfg(feature = "anthropic")]
    Anthropic(anthropic::State),
    #[cfg(feature = "openai")]
    OpenAi(openai::State),
}

impl LlmStream {
    /// Observes a call to Anthropic's Messages API (`POST /v1/messages` with
    /// `"stream": true`) for `model`. Reports `llm.request` at once: create it just
    /// before sending the request.
    #[cfg(feature = "anthropic")]
    pub fn anthropic(run: &Run, model: &str) -> LlmStream {
        LlmStream::start(
            run,
            "anthropic",
            model,
            Wire::Anthropic(anthropic::State::default()),
        )
    }

    /// Observes a call to OpenAI's chat completions (`POST /v1/chat/completions` with
    /// `"stream": true`; add `"stream_options": {"include_usage": true}` for the
    /// token counts) for `model`. Reports `llm.request` at once: create it just before
    /// sending the request.
    #[cfg(feature = "openai")]
    pub fn openai(run: &Run, model: &str) -> LlmStream {
        LlmStream::openai_compatible(run, "openai", model)
    }

    /// As [`LlmStream::openai`], for a server that speaks the same format (vLLM,
    /// llama.cpp's server, Ollama, ...), named `provider` in `llm.request`.
    #[cfg(feature = "openai")]
    pub fn openai_compatible(run: &Run, provider: &str, model: &str) -> LlmStream {
        LlmStream::start(run, provider, model, Wire::OpenAi(openai::State::default()))
    }

    fn start(run: &Run, provider: &str, model: &str, wire: Wire) -> LlmStream {
        let llm = run.llm_call(Some(provider), Some(model));
        LlmStream {
            call: Call {
                call_id: llm.call_id().to_owned(),
                run: run.clone(),
                heartbeat: Some(run.heartbeat_every(HEARTBEAT_EVERY)),
                llm: Some(llm),
                started: Instant::now(),
                reply: LlmReply::default(),
                stopped: false,
            },
            sse: sse::SseParser::default(),
            wire,
        }
    }

    /// Heartbeats after `interval` of silence instead of 5 s, while the call is open.
    pub fn heartbeat_every(mut self, interval: Duration) -> LlmStream {
        if self.call.heartbeat.is_some() {
            self.call.heartbeat = Some(self.call.run.heartbeat_every(interval));
        }
        self
    }

    /// The call id of `llm.request`, `text.delta` and `llm.response`.
    pub fn call_id(&self) -> &str {
        &self.call.call_id
    }

    /// Observes bytes of the response body, as the client read them, in chunks of any
    /// size (a line may be split between two).
    pub fn feed(&mut self, bytes: &[u8]) {
        let LlmStream { call, sse, wire } = self;
        if call.llm.is_none() {
            return;
        }
        sse.feed(bytes, &mut |name, data| wire.event(call, name, data));
    }

    /// Observes one line of the response body, without its line ending, for clients
    /// that read lines (`BufRead::lines`).
    pub fn feed_line(&mut self, line: &str) {
        let LlmStream { call, sse, wire } = self;
        if call.llm.is_none() {
            return;
        }
        sse.line(line.as_bytes(), &mut |name, data| {
            wire.event(call, name, data)
        });
    }

    /// Observes one server-sent event, for clients that parse them (`event` is its
    /// name, when it has one).
    pub fn feed_event(&mut self, event: Option<&str>, data: &str) {
        if self.call.llm.is_some() {
            self.wire.event(&mut self.call, event.unwrap_or(""), data);
        }
    }

    /// The provider answered with an HTTP error instead of a stream (429 rate
    /// limited, 529 overloaded, 5xx, ...): reports the call failed, naming the
    /// provider's error type from `body` when it has one, and returns the error (see
    /// [`LlmError::is_retryable`]).
    pub fn http_error(mut self, status: u16, body: &[u8]) -> LlmError {
        let error = LlmError::from_http(status, body);
        self.call.fail(error.clone());
        error
    }

    /// Reports the call failed for a reason of the program's (the request could not
    /// be sent, a timeout), and returns the error.
    pub fn fail(mut self, error: impl fmt::Display) -> LlmError {
        let error = LlmError {
            status: None,
            kind: None,
            message: error.to_string(),
        };
        self.call.fail(error.clone());
        error
    }

    /// Wraps a blocking reader of the response body: every byte read through it is
    /// passed on unchanged and observed; its end closes the call.
    pub fn reader<R: Read>(self, inner: R) -> LlmRead<R> {
        LlmRead {
            inner,
            stream: self,
        }
    }

    /// Closes the call (the stream has ended) and returns what the model said.
    pub fn finish(mut self) -> LlmReply {
        self.close();
        std::mem::take(&mut self.call.reply)
    }

    /// What the stream has said so far.
    pub fn reply(&self) -> &LlmReply {
        &self.call.reply
    }

    fn close(&mut self) {
        let LlmStream { call, sse, wire } = self;
        if call.llm.is_none() {
            return;
        }
        sse.end(&mut |name, data| wire.event(call, name, data));
        wire.end(call);
        call.close();
    }
}

impl Drop for LlmStream {
    fn drop(&mut self) {
        self.close();
    }
}

impl fmt::Debug for LlmStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmStream")
            .field("call_id", &self.call_id())
            .field("reply", &self.call.reply)
            .finish_non_exhaustive()
    }
}

impl Wire {
    fn event(&mut self, call: &mut Call, name: &str, data: &str) {
        if call.llm.is_none() {
            return;
        }
        match self {
            #[cfg(feature = "anthropic")]
            Wire::Anthropic(state) => state.event(call, name, data),
            #[cfg(feature = "openai")]
            Wire::OpenAi(state) => state.event(call, name, data),
        }
    }

    /// The stream ended: tool calls still open are as complete as they will get.
    fn end(&mut self, call: &mut Call) {
        match self {
            #[cfg(feature = "anthropic")]
            Wire::Anthropic(_) => {}
            #[cfg(feature = "openai")]
            Wire::OpenAi(state) => state.end(call),
        }
        let _ = call;
    }
}

/// The call as both wire formats report it.
struct Call {
    call_id: String,
    run: Run,
    /// `None` once the call is closed: `llm.response` went out.
    llm: Option<LlmCall>,
    heartbeat: Option<HeartbeatGuard>,
    started: Instant,
    reply: LlmReply,
    /// The model said why it stopped (a stop reason, or the stream's end marker).
    stopped: bool,
}

impl Call {
    /// The first token of any kind (text, thinking, tool input) arrived.
    fn first_token(&mut self) {
        if self.reply.ttft.is_none() {
            self.reply.ttft = Some(self.started.elapsed());
        }
    }

    fn text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.first_token();
        self.reply.text.push_str(text);
        if let Some(llm) = &self.llm {
            llm.text(text);
        }
    }

    /// A tool call whose input JSON is complete: `tool.selected`.
    fn tool(&mut self, id: String, name: String, json: &str) {
        // An empty input is an empty object (a tool without parameters); input that
        // is not JSON at all is kept as the text it is.
        let input = if json.trim().is_empty() {
            Value::Object(serde_json::Map::new())
        } else {
            serde_json::from_str(json).unwrap_or_else(|_| Value::String(json.to_owned()))
        };
        self.run.emit(ToolSelected {
            call_id: id.clone(),
            tool: name.clone(),
            input: Some(input.clone()),
        });
        self.reply.tool_uses.push(LlmToolUse { id, name, input });
    }

    fn usage(&self) -> LlmUsage {
        LlmUsage {
            model: self.reply.model.clone(),
            stop_reason: self.reply.stop_reason.clone(),
            input_tokens: self.reply.input_tokens,
            output_tokens: self.reply.output_tokens,
            ttft: self.reply.ttft,
        }
    }

    /// The model stopped and the stream said all it will: `llm.response`.
    fn respond(&mut self) {
        if let Some(llm) = self.llm.take() {
            llm.finish(self.usage());
        }
        self.heartbeat = None;
    }

    /// The call failed: `llm.response` with the error.
    fn fail(&mut self, error: LlmError) {
        if let Some(llm) = self.llm.take() {
            llm.fail(&error, self.usage());
            self.reply.error = Some(error);
        }
        self.heartbeat = None;
    }

    /// The stream ended: a success if the model had said why it stopped.
    fn close(&mut self) {
        if self.stopped {
            self.respond();
        } else {
            self.fail(LlmError {
                status: None,
                kind: None,
                message: "the stream ended before the model stopped".to_owned(),
            });
        }
    }
}

/// Observes a blocking reader of a streamed response body: reads pass every byte on
/// unchanged, and the end of the stream closes the call. Created by
/// [`LlmStream::reader`].
///
/// A read error other than an interruption reports the call failed (and is returned
/// as it was).
#[derive(Debug)]
pub struct LlmRead<R> {
    inner: R,
    stream: LlmStream,
}

impl<R> LlmRead<R> {
    /// Closes the call (if the stream has not ended yet: as failed, unless the model
    /// had stopped) and returns what the model said.
    pub fn finish(self) -> LlmReply {
        self.stream.finish()
    }

    /// What the stream has said so far.
    pub fn reply(&self) -> &LlmReply {
        self.stream.reply()
    }

    /// The wrapped reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }
}

impl<R: Read> Read for LlmRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(0) if !buf.is_empty() => {
                self.stream.close();
                Ok(0)
            }
            Ok(n) => {
                self.stream.feed(&buf[..n]);
                Ok(n)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) =>
            {
                Err(e)
            }
            Err(e) => {
                self.stream.call.fail(LlmError {
                    status: None,
                    kind: None,
                    message: format!("reading the stream: {e}"),
                });
                Err(e)
            }
        }
    }
}

/// What a streamed model call said, as far as the stream went: returned by
/// [`LlmStream::finish`].
///
/// A summary for agents that need the answer's text and tool calls; a program that
/// needs every content block (thinking with its signature, citations) parses the
/// bytes it read, which the adapter passed on unchanged.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct LlmReply {
    /// The model that answered, as the provider names it.
    pub model: Option<String>,
    /// The answer's text, all text blocks together.
    pub text: String,
    /// The tools the model called, in order.
    pub tool_uses: Vec<LlmToolUse>,
    /// Why the model stopped, as the provider says it (`end_turn`, `tool_use`,
    /// `stop`, `tool_calls`, `length`, ...).
    pub stop_reason: Option<String>,
    /// Prompt tokens; for Anthropic with cached prompts, the cache's reads and writes
    /// included.
    pub input_tokens: Option<u64>,
    /// Completion tokens.
    pub output_tokens: Option<u64>,
    /// Time from the adapter's creation to the first token.
    pub ttft: Option<Duration>,
    /// Why the call failed, if it did.
    pub error: Option<LlmError>,
}

/// A tool the model called.
#[derive(Clone, Debug, PartialEq)]
pub struct LlmToolUse {
    /// The provider's id for the call (`toolu_...`, `call_...`), to answer it with.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// Its input: the parsed JSON, an empty object when it had none, or the text
    /// itself when it was not JSON.
    pub input: Value,
}

// An adapter lives in the task or thread that reads the stream, which may move.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<LlmStream>();
    assert_send_sync::<LlmRead<std::fs::File>>();
};

/// Why a model call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LlmError {
    /// The HTTP status, when the provider answered with an error instead of a stream.
    pub status: Option<u16>,
    /// The provider's error type (`overloaded_error`, `rate_limit_error`,
    /// `rate_limit_exceeded`, `server_error`, ...), when it named one.
    pub kind: Option<String>,
    /// What went wrong, in the provider's words when it gave some.
    pub message: String,
}

impl LlmError {
    /// Reads the provider's error from an HTTP error's body: Anthropic's
    /// `{"type": "error", "error": {"type", "message"}}` and OpenAI's
    /// `{"error": {"message", "type", "code"}}` alike.
    fn from_http(status: u16, body: &[u8]) -> LlmError {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        match parsed.as_ref().and_then(|v| v.get("error")) {
            Some(error) => LlmError {
                status: Some(status),
                ..LlmError::from_body(error)
            },
            None => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                let message = if text.is_empty() {
                    reason(status).to_owned()
                } else {
                    // An HTML error page of a proxy can be long: its start says enough.
                    text.chars().take(200).collect()
                };
                LlmError {
                    status: Some(status),
                    kind: None,
                    message,
                }
            }
        }
    }

    /// The error object of an error body or event.
    fn from_body(error: &Value) -> LlmError {
        let text = |key: &str| match error.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let message = match error {
            Value::String(s) => s.clone(),
            _ => text("message").unwrap_or_else(|| error.to_string()),
        };
        LlmError {
            status: None,
            // OpenAI's `code` is the precise one (`rate_limit_exceeded`), its `type`
            // the broad one (`requests`); Anthropic has only `type`.
            kind: text("code").or_else(|| text("type")),
            message,
        }
    }

    /// Whether trying again later may work: a rate limit, an overloaded or failing
    /// server, by HTTP status or by the provider's error type.
    pub fn is_retryable(&self) -> bool {
        let by_status = self
            .status
            .is_some_and(|s| matches!(s, 408 | 429) || (500..600).contains(&s));
        let by_kind = self.kind.as_deref().is_some_and(|k| {
            matches!(
                k,
                "overloaded_error"
                    | "rate_limit_error"
                    | "api_error"
                    | "rate_limit_exceeded"
                    | "server_error"
            )
        });
        by_status || by_kind
    }
}

impl fmt::Display for LlmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(kind) = &self.kind {
            write!(f, "{kind}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(status) = self.status {
            write!(f, " (HTTP {status})")?;
        }
        Ok(())
    }
}

impl std::error::Error for LlmError {}

/// The reason phrase of the statuses a model API answers with.
fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Overloaded",
        _ => "HTTP error",
    }
}
