//! `herald demo --llm anthropic|openai`: the demo's report written by a real model, an
//! agent loop with tools over the job's documents.
//!
//! The model is configured as its own SDKs are, by the providers' variables:
//! `ANTHROPIC_API_KEY` and `ANTHROPIC_BASE_URL` (the client appends `/v1/messages`), or
//! `OPENAI_API_KEY` and `OPENAI_BASE_URL` (ending in `/v1`; the client appends
//! `/chat/completions`), which also points it at vLLM, llama.cpp's server or Ollama.
//!
//! Each turn streams one model call through the SDK's stream adapter
//! ([`herald::LlmStream`]), which reports the call by itself: `llm.request`, the text as
//! it arrives, `tool.selected`, `llm.response` with tokens and time to first token, or
//! the provider's error. The agent runs the tools the model chose (`tool.started` /
//! `tool.finished` under the model's own call ids), answers each with a tool result, and
//! calls the model again, until it answers without tools or [`MAX_TURNS`] have passed.
//! A tool the agent does not have is a failed tool call answered with an error result,
//! so the model can correct itself; a rate limit or an overloaded API is retried.

use std::time::Duration;

use anyhow::{Context, bail};
use herald::protocol::ChatMessage;
use herald::{LlmError, LlmReply, LlmStream, LlmToolUse, Run};
use serde_json::{Value, json};

use crate::UsageError;
use crate::args::LlmProviderArg;
use crate::demo::{Doc, SUMMARY_BATCH};
use crate::retry::Backoff;

/// Model calls per report, at most: the loop ends there even if the model still calls
/// tools.
const MAX_TURNS: u64 = 8;
/// Tries of one model call when the API is rate limited, overloaded or failing.
const ATTEMPTS: u32 = 4;
/// The first wait before calling the model again, and the longest (before `--speed`).
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(4);
/// The completion budget of each call.
const MAX_TOKENS: u64 = 1024;
/// Summaries a search returns, at most.
const MAX_HITS: usize = 10;

const SYSTEM: &str = "You triage business documents and write short risk reports. \
    Use the tools to read the documents you need before you answer. \
    Answer with the report alone: three to five plain sentences.";

/// How long a model's API may take to start its answer...
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(120);
/// ... and to finish streaming it.
const STREAM_TIMEOUT: Duration = Duration::from_secs(600);

/// The model the agent talks to, resolved from `--llm`, `--model` and the provider's
/// environment.
pub(crate) struct LlmSettings {
    provider: LlmProviderArg,
    model: String,
    key: String,
    /// The endpoint: the base URL with the API's path appended.
    url: String,
}

impl LlmSettings {
    /// Reads the provider's variables. A missing key is the user's to fix: a usage
    /// error, before any work starts.
    pub(crate) fn from_env(
        provider: LlmProviderArg,
        model: Option<&str>,
    ) -> Result<LlmSettings, UsageError> {
        let (key_var, base_var, default_base, path, default_model) = match provider {
            LlmProviderArg::Anthropic => (
                "ANTHROPIC_API_KEY",
                "ANTHROPIC_BASE_URL",
                "https://api.anthropic.com",
                "/v1/messages",
                "claude-sonnet-4-5",
            ),
            LlmProviderArg::Openai => (
                "OPENAI_API_KEY",
                "OPENAI_BASE_URL",
                "https://api.openai.com/v1",
                "/chat/completions",
                "gpt-4o-mini",
            ),
        };
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let key = var(key_var).ok_or_else(|| {
            UsageError(format!(
                "--llm {} needs an API key in {key_var} (and {base_var} for another server than {default_base})",
                provider_name(provider)
            ))
        })?;
        let base = var(base_var).unwrap_or_else(|| default_base.to_owned());
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(UsageError(format!(
                "{base_var} must be an http:// or https:// URL, not `{base}`"
            )));
        }
        let model = model.unwrap_or(default_model).trim();
        if model.is_empty() {
            return Err(UsageError(
                "--model must name a model, not be empty".to_owned(),
            ));
        }
        Ok(LlmSettings {
            provider,
            model: model.to_owned(),
            key,
            url: format!("{}{path}", base.trim_end_matches('/')),
        })
    }
}

fn provider_name(provider: LlmProviderArg) -> &'static str {
    match provider {
        LlmProviderArg::Anthropic => "anthropic",
        LlmProviderArg::Openai => "openai",
    }
}

/// What the report's agent did, for the demo's result.
pub(crate) struct Report {
    pub(crate) text: String,
    /// The model that answered, as the provider named it.
    pub(crate) model: Option<String>,
    pub(crate) turns: u64,
    pub(crate) tool_calls: u64,
}

/// The conversation in the provider's own message format.
struct Conversation {
    provider: LlmProviderArg,
    messages: Vec<Value>,
}

impl Conversation {
    fn new(provider: LlmProviderArg, prompt: &str) -> Conversation {
        let mut messages = Vec::new();
        if provider == LlmProviderArg::Openai {
            messages.push(json!({"role": "system", "content": SYSTEM}));
        }
        messages.push(json!({"role": "user", "content": prompt}));
        Conversation { provider, messages }
    }

    /// The request body of the next call.
    fn request(&self, model: &str) -> Value {
        let tools = tools();
        match self.provider {
            LlmProviderArg::Anthropic => json!({
                "model": model,
                "max_tokens": MAX_TOKENS,
                "stream": true,
                "system": SYSTEM,
                "tools": tools.iter().map(|(name, description, schema)| json!({
                    "name": name, "description": description, "input_schema": schema,
                })).collect::<Vec<_>>(),
                "messages": self.messages,
            }),
            LlmProviderArg::Openai => json!({
                "model": model,
                "max_tokens": MAX_TOKENS,
                "stream": true,
                "stream_options": {"include_usage": true},
                "tools": tools.iter().map(|(name, description, schema)| json!({
                    "type": "function",
                    "function": {"name": name, "description": description, "parameters": schema},
                })).collect::<Vec<_>>(),
                "messages": self.messages,
            }),
        }
    }

    /// The model's answer with its tool calls, and the agent's results for them.
    fn answered(&mut self, reply: &LlmReply, results: &[(String, Result<Value, String>)]) {
        match self.provider {
            LlmProviderArg::Anthropic => {
                let mut content = Vec::new();
                if !reply.text.is_empty() {
                    content.push(json!({"type": "text", "text": reply.text}));
                }
                content.extend(reply.tool_uses.iter().map(
                    |t| json!({"type": "tool_use", "id": t.id, "name": t.name, "input": t.input}),
                ));
                self.messages
                    .push(json!({"role": "assistant", "content": content}));
                let results: Vec<Value> = results
                    .iter()
                    .map(|(id, res)| match res {
                        Ok(output) => json!({
                            "type": "tool_result", "tool_use_id": id, "content": output.to_string(),
                        }),
                        Err(error) => json!({
                            "type": "tool_result", "tool_use_id": id, "content": error, "is_error": true,
                        }),
                    })
                    .collect();
                self.messages
                    .push(json!({"role": "user", "content": results}));
            }
            LlmProviderArg::Openai => {
                let calls: Vec<Value> = reply
                    .tool_uses
                    .iter()
                    .map(|t| {
                        // OpenAI sends arguments as JSON text, and wants them back so.
                        let arguments = match &t.input {
                            Value::String(text) => text.clone(),
                            input => input.to_string(),
                        };
                        json!({"id": t.id, "type": "function",
                               "function": {"name": t.name, "arguments": arguments}})
                    })
                    .collect();
                let text = (!reply.text.is_empty()).then(|| reply.text.clone());
                self.messages
                    .push(json!({"role": "assistant", "content": text, "tool_calls": calls}));
                // A tool message has no error flag: the error is said in its content.
                for (id, res) in results {
                    let content = match res {
                        Ok(output) => output.to_string(),
                        Err(error) => format!("error: {error}"),
                    };
                    self.messages
                        .push(json!({"role": "tool", "tool_call_id": id, "content": content}));
                }
            }
        }
    }
}

/// The agent's tools: name, description, JSON Schema of the input.
fn tools() -> [(&'static str, &'static str, Value); 2] {
    [
        (
            "lookup_document",
            "Read one document by its number (1 to the number of documents): its title, \
             its label, whether it failed, and the summary that covers it.",
            json!({
                "type": "object",
                "properties": {"doc": {"type": "integer", "minimum": 1, "description": "The document's number"}},
                "required": ["doc"],
            }),
        ),
        (
            "search_summaries",
            "Find the summaries that mention any of the words of a query.",
            json!({
                "type": "object",
                "properties": {"query": {"type": "string", "description": "Words to look for"}},
                "required": ["query"],
            }),
        ),
    ]
}

/// Writes the demo's report with the model: the `report` stage's agent loop.
pub(crate) fn write_report(
    run: &Run,
    llm: &LlmSettings,
    speed: f64,
    docs: &[Doc],
    summaries: &[String],
) -> anyhow::Result<Report> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(10)))
        // A provider that accepts the request and then says nothing must not hold the
        // demo forever: the answer's headers within two minutes (a streamed answer
        // sends them at once), the whole stream within ten.
        .timeout_recv_response(Some(RESPONSE_TIMEOUT))
        .timeout_recv_body(Some(STREAM_TIMEOUT))
        .build()
        .into();
    let prompt = format!(
        "Write a risk report on {} documents ({} failed to be read). The summaries:\n{}",
        docs.len(),
        docs.iter().filter(|d| d.error.is_some()).count(),
        summaries.join("\n")
    );
    run.history(vec![
        ChatMessage {
            role: "system".into(),
            content: json!(SYSTEM),
        },
        ChatMessage {
            role: "user".into(),
            content: json!(prompt),
        },
    ]);
    let mut conversation = Conversation::new(llm.provider, &prompt);
    let mut tool_calls = 0;
    for turn in 1..=MAX_TURNS {
        run.iteration(turn);
        let reply = call_with_retries(&agent, llm, run, speed, &conversation.request(&llm.model))?;
        if reply.tool_uses.is_empty() {
            run.response(&reply.text, Some(turn));
            return Ok(Report {
                text: reply.text,
                model: reply.model,
                turns: turn,
                tool_calls,
            });
        }
        let results: Vec<(String, Result<Value, String>)> = reply
            .tool_uses
            .iter()
            .map(|tool| (tool.id.clone(), use_tool(run, tool, docs, summaries)))
            .collect();
        tool_calls += results.len() as u64;
        conversation.answered(&reply, &results);
        // Every tool has answered: the model writes next (perhaps the report).
        run.preparing_response();
    }
    bail!("the model still called tools after {MAX_TURNS} turns")
}

/// One model call, tried again while the API is rate limited, overloaded or failing.
fn call_with_retries(
    agent: &ureq::Agent,
    llm: &LlmSettings,
    run: &Run,
    speed: f64,
    body: &Value,
) -> anyhow::Result<LlmReply> {
    let mut attempt = 1;
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
    loop {
        let (res, retry_after) = call(agent, llm, run, body);
        let error = match res {
            Ok(reply) => return Ok(reply),
            Err(error) => error,
        };
        if !error.is_retryable() || attempt == ATTEMPTS {
            return Err(error).with_context(|| {
                format!(
                    "the model call to {} failed (attempt {attempt} of {ATTEMPTS})",
                    llm.url
                )
            });
        }
        // Backing off from a second, which `--speed` shortens as it does the demo's
        // other waits, but never to less than the API asked for: its Retry-After is
        // its own.
        let wait = backoff
            .delay(None)
            .div_f64(speed)
            .max(retry_after.unwrap_or_default());
        run.warn(format!(
            "the model's API answered {error}; trying again in {:.1} s",
            wait.as_secs_f64()
        ));
        std::thread::sleep(wait);
        attempt += 1;
    }
}

/// One streamed model call through the stream adapter: the reply, or why it failed,
/// and the `Retry-After` the API asked for.
fn call(
    agent: &ureq::Agent,
    llm: &LlmSettings,
    run: &Run,
    body: &Value,
) -> (Result<LlmReply, LlmError>, Option<Duration>) {
    // Created before the request goes out, so that its time to first token counts
    // the request's whole round trip.
    let stream = match llm.provider {
        LlmProviderArg::Anthropic => LlmStream::anthropic(run, &llm.model),
        LlmProviderArg::Openai => LlmStream::openai(run, &llm.model),
    };
    let request = agent.post(&llm.url);
    let request = match llm.provider {
        LlmProviderArg::Anthropic => request
            .header("x-api-key", &llm.key)
            .header("anthropic-version", "2023-06-01"),
        LlmProviderArg::Openai => request.header("authorization", format!("Bearer {}", llm.key)),
    };
    let res = match request.send_json(body) {
        Ok(res) => res,
        Err(e) => {
            let error = stream.fail(format!(
                "no answer from {}: {}",
                llm.url,
                crate::client::transport(&e)
            ));
            return (Err(error), None);
        }
    };
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(60.0)));
    if status != 200 {
        let body = res.into_body().read_to_vec().unwrap_or_default();
        return (Err(stream.http_error(status, &body)), retry_after);
    }
    // The demo needs no more of the stream than the adapter's reply: the bytes it
    // passes on go nowhere.
    let mut reader = stream.reader(res.into_body().into_reader());
    let _ = std::io::copy(&mut reader, &mut std::io::sink());
    let reply = reader.finish();
    match reply.error.clone() {
        Some(error) => (Err(error), retry_after),
        None => (Ok(reply), None),
    }
}

/// Runs one tool the model chose, reported as a tool call under the model's call id:
/// its output, or the error the model is told.
fn use_tool(
    run: &Run,
    tool: &LlmToolUse,
    docs: &[Doc],
    summaries: &[String],
) -> Result<Value, String> {
    let feedback = match tool.name.as_str() {
        "lookup_document" => format!("Reading document {}", tool.input["doc"]),
        "search_summaries" => format!("Searching the summaries for {}", tool.input["query"]),
        other => format!("The model asked for a tool the agent does not have: {other}"),
    };
    let call = run.tool_with_id(
        &tool.id,
        &tool.name,
        Some(tool.input.clone()),
        Some(&feedback),
    );
    let res = match tool.name.as_str() {
        "lookup_document" => lookup_document(&tool.input, docs, summaries),
        "search_summaries" => search_summaries(&tool.input, summaries),
        other => Err(format!(
            "unknown tool {other}: the tools are lookup_document and search_summaries"
        )),
    };
    match &res {
        Ok(output) => call.finish(Some(output.clone())),
        Err(error) => call.fail(error),
    }
    res
}

fn lookup_document(input: &Value, docs: &[Doc], summaries: &[String]) -> Result<Value, String> {
    let n = input["doc"]
        .as_u64()
        .ok_or_else(|| format!("`doc` must be a document number, not {}", input["doc"]))?;
    let doc = docs
        .iter()
        .find(|d| d.id == n)
        .ok_or_else(|| format!("there is no document {n}: they are 1 to {}", docs.len()))?;
    // The summaries cover the documents that were read, in order, a batch each.
    let summary = docs
        .iter()
        .filter(|d| d.error.is_none())
        .position(|d| d.id == n)
        .and_then(|i| summaries.get(i / SUMMARY_BATCH));
    Ok(json!({
        "doc": n,
        "title": doc.title,
        "label": doc.label,
        "error": doc.error,
        "summary": summary,
    }))
}

fn search_summaries(input: &Value, summaries: &[String]) -> Result<Value, String> {
    let query = input["query"]
        .as_str()
        .ok_or_else(|| format!("`query` must be text, not {}", input["query"]))?
        .to_lowercase();
    let words: Vec<&str> = query.split_whitespace().filter(|w| w.len() > 2).collect();
    let hits: Vec<&String> = summaries
        .iter()
        .filter(|s| {
            let s = s.to_lowercase();
            words.iter().any(|w| s.contains(w))
        })
        .take(MAX_HITS)
        .collect();
    Ok(json!({"hits": hits}))
}
