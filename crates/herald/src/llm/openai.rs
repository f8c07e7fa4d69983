//! OpenAI's chat completions, streamed, as OpenAI, vLLM, llama.cpp's server and Ollama
//! send them: `data:` lines of `chat.completion.chunk` objects whose first choice's
//! `delta` carries `content`, `tool_calls` fragments (an `index`; the `id` and
//! `function.name` in the first fragment, `function.arguments` in pieces) and at last a
//! `finish_reason`; with `stream_options.include_usage`, a last chunk with no choices
//! and the `usage`; then `data: [DONE]`.
//!
//! A tool call's arguments are complete when the next tool call begins or the choice
//! finishes: that is when its `tool.selected` goes out. Only the first choice (`n` = 1,
//! the default) is followed. An error arrives as a chunk with an `error` object.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use super::{Call, LlmError};

/// What the stream has to remember between chunks.
#[derive(Debug, Default)]
pub(super) struct State {
    /// Tool calls whose arguments may still be arriving, by their index.
    tools: Vec<OpenTool>,
}

#[derive(Debug)]
struct OpenTool {
    index: u64,
    id: String,
    name: String,
    arguments: String,
}

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    /// Absent or `null` in some servers' usage chunk, empty in OpenAI's.
    #[serde(borrow, default)]
    choices: FirstChoice<'a>,
    usage: Option<Usage>,
    error: Option<Value>,
}

/// The choice with index 0 of a chunk's `choices`, read without collecting the others
/// (a chunk has one choice unless the request asked for `n` > 1).
#[derive(Default)]
struct FirstChoice<'a>(Option<Choice<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for FirstChoice<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = FirstChoice<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of choices, or null")
            }

            fn visit_unit<E>(self) -> Result<FirstChoice<'a>, E> {
                Ok(FirstChoice(None))
            }

            fn visit_seq<S: serde::de::SeqAccess<'de>>(
                self,
                mut seq: S,
            ) -> Result<FirstChoice<'a>, S::Error> {
                let mut first = None;
                while let Some(choice) = seq.next_element::<Choice<'a>>()? {
                    if first.is_none() && choice.index == 0 {
                        first = Some(choice);
                    }
                }
                Ok(FirstChoice(first))
            }
        }
        deserializer.deserialize_any(Visit(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default)]
    index: u64,
    #[serde(borrow)]
    delta: Option<Delta<'a>>,
    #[serde(borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
    /// vLLM's and DeepSeek's name for the thinking, and Ollama's and OpenRouter's.
    #[serde(borrow)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow)]
    reasoning: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tool_calls: Option<Vec<ToolCallDelta<'a>>>,
}

#[derive(Deserialize)]
struct ToolCallDelta<'a> {
    /// Some servers send one tool call per chunk without an index.
    index: Option<u64>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    function: Option<FunctionDelta<'a>>,
}

#[derive(Deserialize)]
struct FunctionDelta<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    arguments: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

impl State {
    pub(super) fn event(&mut self, call: &mut Call, name: &str, data: &str) {
        let data = data.trim_end();
        if data == "[DONE]" {
            self.end(call);
            call.stopped = true;
            call.respond();
            return;
        }
        let Ok(chunk) = serde_json::from_str::<Chunk<'_>>(data) else {
            if name == "error" {
                call.fail(LlmError {
                    status: None,
                    kind: None,
                    message: data.to_owned(),
                });
            }
            return;
        };
        if let Some(error) = &chunk.error {
            call.fail(LlmError::from_body(error));
            return;
        }
        if call.reply.model.is_none() {
            if let Some(model) = chunk.model {
                call.reply.model = Some(model.into_owned());
            }
        }
        if let Some(usage) = chunk.usage {
            if usage.prompt_tokens.is_some() {
                call.reply.input_tokens = usage.prompt_tokens;
            }
            if usage.completion_tokens.is_some() {
                call.reply.output_tokens = usage.completion_tokens;
            }
        }
        let Some(choice) = chunk.choices.0 else {
            return;
        };
        if let Some(delta) = choice.delta {
            let thinking = [&delta.reasoning_content, &delta.reasoning]
                .into_iter()
                .any(|r| r.as_deref().is_some_and(|r| !r.is_empty()));
            if thinking {
                call.first_token();
            }
            if let Some(content) = &delta.content {
                call.text(content);
            }
            for part in delta.tool_calls.into_iter().flatten() {
                call.first_token();
                self.tool_part(call, part);
            }
        }
        if let Some(reason) = choice.finish_reason {
            call.reply.stop_reason = Some(reason.into_owned());
            call.stopped = true;
            // Every tool call is complete; the usage chunk and `[DONE]` may follow.
            self.end(call);
        }
    }

    fn tool_part(&mut self, call: &mut Call, part: ToolCallDelta<'_>) {
        let index = part.index.unwrap_or_else(|| match part.id {
            // Without an index, a fragment with an id starts the next call.
            Some(_) => self.tools.last().map_or(0, |t| t.index + 1),
            None => self.tools.last().map_or(0, |t| t.index),
        });
        let function = part.function;
        let (name, arguments) = match function {
            Some(f) => (f.name, f.arguments),
            None => (None, None),
        };
        if !self.tools.iter().any(|t| t.index == index) {
            // A new call: those before it are complete.
            self.flush_before(call, index);
            self.tools.push(OpenTool {
                index,
                id: String::new(),
                name: String::new(),
                arguments: String::new(),
            });
        }
        let Some(tool) = self.tools.iter_mut().find(|t| t.index == index) else {
            return;
        };
        if let Some(id) = part.id {
            if tool.id.is_empty() {
                tool.id = id.into_owned();
            }
        }
        if let Some(name) = name {
            tool.name.push_str(&name);
        }
        if let Some(arguments) = arguments {
            tool.arguments.push_str(&arguments);
        }
    }

    /// Reports the tool calls with an index below `index`, in order.
    fn flush_before(&mut self, call: &mut Call, index: u64) {
        self.tools.sort_by_key(|t| t.index);
        let done = self.tools.iter().take_while(|t| t.index < index).count();
        for tool in self.tools.drain(..done) {
            call.tool(tool.id, tool.name, &tool.arguments);
        }
    }

    /// Reports every tool call still open.
    pub(super) fn end(&mut self, call: &mut Call) {
        self.flush_before(call, u64::MAX);
    }
}
