//! Anthropic's Messages API, streamed: `message_start`, then per content block a
//! `content_block_start`, its `content_block_delta`s (`text_delta`, `input_json_delta`,
//! `thinking_delta`, `signature_delta`) and a `content_block_stop`, then
//! `message_delta` (stop reason, cumulative usage) and `message_stop`; `ping`s
//! anywhere, and an `error` event when the call fails mid-stream.
//!
//! Each event's data is read into one flat struct of borrowed, optional fields, so
//! that a delta costs one pass over its JSON and no allocation for text without
//! escapes; fields and event types this module does not know are skipped, as the
//! API's versioning policy asks.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use super::{Call, LlmError};

/// What the stream has to remember between events.
#[derive(Debug, Default)]
pub(super) struct State {
    /// Tool use blocks whose input is still arriving.
    tools: Vec<OpenTool>,
}

#[derive(Debug)]
struct OpenTool {
    index: u64,
    id: String,
    name: String,
    json: String,
}

/// Any event's data: every field some event type has, each optional.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    index: Option<u64>,
    #[serde(borrow)]
    message: Option<Message<'a>>,
    #[serde(borrow)]
    content_block: Option<Block<'a>>,
    #[serde(borrow)]
    delta: Option<Delta<'a>>,
    usage: Option<Usage>,
    error: Option<Value>,
}

/// `message_start`'s message, with empty content.
#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    usage: Option<Usage>,
}

/// `content_block_start`'s block.
#[derive(Deserialize)]
struct Block<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
}

/// A `content_block_delta`'s delta, or a `message_delta`'s.
#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(borrow)]
    stop_reason: Option<Cow<'a, str>>,
}

/// Token counts; `message_delta`'s are cumulative.
#[derive(Deserialize)]
struct Usage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

impl State {
    pub(super) fn event(&mut self, call: &mut Call, _name: &str, data: &str) {
        // The data's `type` says what the event is; the SSE name repeats it, and some
        // clients drop it.
        let Ok(frame) = serde_json::from_str::<Frame<'_>>(data) else {
            return;
        };
        match &*frame.kind {
            "content_block_delta" => {
                let Some(delta) = frame.delta else { return };
                call.first_token();
                match delta.kind.as_deref() {
                    Some("text_delta") => call.text(delta.text.as_deref().unwrap_or("")),
                    Some("input_json_delta") => {
                        let index = frame.index.unwrap_or(0);
                        if let (Some(tool), Some(part)) = (
                            self.tools.iter_mut().find(|t| t.index == index),
                            delta.partial_json,
                        ) {
                            tool.json.push_str(&part);
                        }
                    }
                    // Thinking and its signature are not the answer's text.
                    _ => {}
                }
            }
            "message_start" => {
                let Some(message) = frame.message else { return };
                if let Some(model) = message.model {
                    call.reply.model = Some(model.into_owned());
                }
                if let Some(usage) = message.usage {
                    usage.count(call);
                }
            }
            "content_block_start" => {
                let Some(block) = frame.content_block else {
                    return;
                };
                match &*block.kind {
                    // Only the program can run its tools; a server tool
                    // (`server_tool_use`) is run by the provider and reported in its
                    // own result block.
                    "tool_use" => {
                        call.first_token();
                        self.tools.push(OpenTool {
                            index: frame.index.unwrap_or(0),
                            id: block.id.map(Cow::into_owned).unwrap_or_default(),
                            name: block.name.map(Cow::into_owned).unwrap_or_default(),
                            json: String::new(),
                        });
                    }
                    "thinking" | "redacted_thinking" => call.first_token(),
                    _ => {}
                }
            }
            "content_block_stop" => {
                let index = frame.index.unwrap_or(0);
                if let Some(pos) = self.tools.iter().position(|t| t.index == index) {
                    let tool = self.tools.remove(pos);
                    call.tool(tool.id, tool.name, &tool.json);
                }
            }
            "message_delta" => {
                if let Some(reason) = frame.delta.and_then(|d| d.stop_reason) {
                    call.reply.stop_reason = Some(reason.into_owned());
                    call.stopped = true;
                }
                if let Some(usage) = frame.usage {
                    usage.count(call);
                }
            }
            "message_stop" => {
                call.stopped = true;
                call.respond();
            }
            "error" => {
                let error = frame.error.as_ref().map_or_else(
                    || LlmError {
                        status: None,
                        kind: None,
                        message: "an error event without details".to_owned(),
                    },
                    LlmError::from_body,
                );
                call.fail(error);
            }
            // `ping`, and event types added after this was written.
            _ => {}
        }
    }
}

impl Usage {
    /// Takes the counts this event has: `message_delta`'s are cumulative, so the last
    /// one seen is the total.
    fn count(&self, call: &mut Call) {
        if let Some(input) = self.input_tokens {
            // The prompt's tokens are the uncached ones plus those written to and read
            // from the prompt cache.
            let cached = self.cache_creation_input_tokens.unwrap_or(0)
                + self.cache_read_input_tokens.unwrap_or(0);
            call.reply.input_tokens = Some(input.saturating_add(cached));
        }
        if let Some(output) = self.output_tokens {
            call.reply.output_tokens = Some(output);
        }
    }
}
