//! The `openai` provider: the Chat Completions API with SSE streaming and tool calls.
//!
//! Settings (`[plugins.openai.settings]`):
//! - `base_url`: default `https://api.openai.com/v1`; any OpenAI-compatible server works
//!   (vLLM, llama.cpp's server, Ollama, LM Studio);
//! - `models`: the models to offer, replacing the built-in list, as
//!   `[{ id = "qwen2.5-coder", context_tokens = 32768, output_tokens = 8192, tools = true }]`;
//! - `include_usage`: ask for usage in the last chunk (default true);
//! - `max_tokens_field`: the field that carries the output limit, `max_completion_tokens`
//!   (the default for OpenAI's own API, whose reasoning models refuse the other) or
//!   `max_tokens` (the default for any other server, as most compatible servers read it).

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};

use plugboard_sdk::http::Request;
use plugboard_sdk::provider::*;
use plugboard_sdk::serde::Serialize;
use plugboard_sdk::serde_json::value::RawValue;
use plugboard_sdk::serde_json::{self, Value};

const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

struct OpenAi;

fn model(id: &str, name: &str, context: u32, output: u32, reasoning: bool, price: (f64, f64, f64)) -> ModelInfo {
    ModelInfo {
        id: id.into(),
        name: name.into(),
        context_tokens: context,
        output_tokens: output,
        supports_tools: true,
        supports_reasoning: reasoning,
        supports_images: true,
        price: ModelPrice { input: price.0, output: price.1, cache_read: price.2, cache_write: 0.0 },
    }
}

impl Provider for OpenAi {
    fn info() -> ProviderInfo {
        // A malformed `models` setting stops the load with its reason (the host shows the
        // panic message), rather than offering models the operator did not list.
        let configured = configured_models(32_768, 4096).unwrap_or_else(|e| panic!("{e}"));
        let models = configured.unwrap_or_else(|| {
            vec![
                model("gpt-4.1", "GPT-4.1", 1_047_576, 32_768, false, (2.0, 8.0, 0.5)),
                model("gpt-4.1-mini", "GPT-4.1 mini", 1_047_576, 32_768, false, (0.4, 1.6, 0.1)),
                model("gpt-4o", "GPT-4o", 128_000, 16_384, false, (2.5, 10.0, 1.25)),
                model("gpt-4o-mini", "GPT-4o mini", 128_000, 16_384, false, (0.15, 0.6, 0.075)),
                model("o3", "o3", 200_000, 100_000, true, (2.0, 8.0, 0.5)),
                model("o4-mini", "o4-mini", 200_000, 100_000, true, (1.1, 4.4, 0.275)),
            ]
        });
        ProviderInfo { id: "openai".into(), name: "OpenAI".into(), models }
    }

    fn complete(request: CompletionRequest) -> Result<Box<dyn CompletionStream>, ProviderError> {
        let base =
            plugboard_sdk::host::setting::<String>("base_url").map_err(ProviderError::from)?.unwrap_or_else(|| DEFAULT_BASE_URL.into());
        let include_usage = plugboard_sdk::host::setting::<bool>("include_usage").map_err(ProviderError::from)?.unwrap_or(true);
        let limit_field = plugboard_sdk::host::setting::<String>("max_tokens_field")
            .map_err(ProviderError::from)?
            .unwrap_or_else(|| if base.trim_end_matches('/') == DEFAULT_BASE_URL { "max_completion_tokens" } else { "max_tokens" }.into());
        if !matches!(limit_field.as_str(), "max_tokens" | "max_completion_tokens") {
            return Err(ProviderError::fatal(format!(
                "the setting `max_tokens_field` is `{limit_field}`; it must be `max_tokens` or `max_completion_tokens`"
            )));
        }
        let body = request_body(&request, include_usage, &limit_field)?;
        let url = format!("{}/chat/completions", base.trim_end_matches('/'));
        let http = Request::post(&url)
            .map_err(ProviderError::from)?
            .header("content-type", "application/json")
            .header("accept", "text/event-stream")
            .body(body);
        let response = send_checked(http)?;
        Ok(Box::new(SseCompletion::new(response, ChatEvents { calls: BTreeMap::new() })))
    }
}

/// The JSON body of a streamed Chat Completions request, serialized straight from the
/// request: no JSON tree is built (unless provider options are merged in), and each tool's
/// schema is copied as it came (checked, not parsed into values).
/// The host holds `max_output_tokens` to the model's output limit; it goes in `limit_field`.
fn request_body(request: &CompletionRequest, include_usage: bool, limit_field: &str) -> Result<Vec<u8>, ProviderError> {
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if let Some(system) = &request.system {
        messages.push(ChatMessage::System { content: system });
    }
    for message in &request.messages {
        let mut text: Option<Cow<str>> = None;
        let mut tool_calls = Vec::new();
        for part in &message.parts {
            match part {
                ContentPart::Text(t) => match &mut text {
                    None => text = Some(Cow::Borrowed(t)),
                    Some(text) => text.to_mut().push_str(t),
                },
                ContentPart::Reasoning(_) => {}
                ContentPart::ToolCall(c) => tool_calls.push(CallOut {
                    id: &c.id,
                    kind: "function",
                    function: FunctionOut { name: &c.name, arguments: &c.arguments },
                }),
                ContentPart::ToolResult(r) => messages.push(ChatMessage::Tool { tool_call_id: &r.call_id, content: &r.content }),
            }
        }
        let text = text.filter(|t| !t.is_empty());
        match message.role {
            Role::User => {
                if let Some(content) = text {
                    messages.push(ChatMessage::User { content });
                }
            }
            Role::Assistant if text.is_some() || !tool_calls.is_empty() => {
                messages.push(ChatMessage::Assistant { content: text, tool_calls })
            }
            _ => {}
        }
    }
    let tools = request
        .tools
        .iter()
        .map(|t| {
            let parameters = tool_parameters(t)?;
            Ok(ToolOut { kind: "function", function: FunctionSpec { name: &t.name, description: &t.description, parameters } })
        })
        .collect::<Result<Vec<_>, ProviderError>>()?;
    let limit = |field: &str| request.max_output_tokens.filter(|_| limit_field == field);
    let body = ChatBody {
        model: &request.model,
        messages,
        stream: true,
        stream_options: include_usage.then_some(StreamOptions { include_usage: true }),
        tools,
        temperature: request.temperature,
        max_tokens: limit("max_tokens"),
        max_completion_tokens: limit("max_completion_tokens"),
    };
    body_with_options(&body, request.options.as_deref())
}

/// A Chat Completions request body.
#[derive(Serialize)]
#[serde(crate = "plugboard_sdk::serde")]
struct ChatBody<'a> {
    model: &'a str,
    messages: Vec<ChatMessage<'a>>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ToolOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
}

#[derive(Serialize)]
#[serde(crate = "plugboard_sdk::serde")]
struct StreamOptions {
    include_usage: bool,
}

/// One message of the conversation, as Chat Completions takes it.
#[derive(Serialize)]
#[serde(crate = "plugboard_sdk::serde")]
#[serde(tag = "role", rename_all = "lowercase")]
enum ChatMessage<'a> {
    System {
        content: &'a str,
    },
    User {
        content: Cow<'a, str>,
    },
    Assistant {
        content: Option<Cow<'a, str>>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<CallOut<'a>>,
    },
    Tool {
        tool_call_id: &'a str,
        content: &'a str,
    },
}

/// A tool call of an assistant message.
#[derive(Serialize)]
#[serde(crate = "plugboard_sdk::serde")]
struct CallOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut<'a>,
}

#[derive(Serialize)]
#[serde(crate = "plugboard_sdk::serde")]
struct FunctionOut<'a> {
    name: &'a str,
    arguments: &'a str,
}

/// A tool offered to the model.
#[derive(Serialize)]
#[serde(crate = "plugboard_sdk::serde")]
struct ToolOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionSpec<'a>,
}

#[derive(Serialize)]
#[serde(crate = "plugboard_sdk::serde")]
struct FunctionSpec<'a> {
    name: &'a str,
    description: &'a str,
    parameters: &'a RawValue,
}

/// A tool call being assembled: whether its start was emitted, and arguments that arrived
/// before its name.
#[derive(Default)]
struct PendingCall {
    id: String,
    name: String,
    started: bool,
    early_arguments: String,
}

/// Translates Chat Completions chunks.
struct ChatEvents {
    calls: BTreeMap<u32, PendingCall>,
}

impl SseHandler for ChatEvents {
    fn handle(&mut self, event: &plugboard_sdk::sse::Event, out: &mut VecDeque<StreamEvent>) -> Result<Control, ProviderError> {
        if event.data.trim() == "[DONE]" {
            return Ok(Control::End);
        }
        let chunk: Value = serde_json::from_str(&event.data)
            .map_err(|e| ProviderError::transient(format!("a stream chunk is not JSON ({e}): {}", truncate(&event.data))))?;
        self.handle_chunk(&chunk, out)
    }
}

impl ChatEvents {
    fn handle_chunk(&mut self, chunk: &Value, out: &mut VecDeque<StreamEvent>) -> Result<Control, ProviderError> {
        let mut control = Control::Continue;
        if let Some(error) = stream_error(chunk) {
            return Err(error);
        }
        if let Some(choice) = chunk["choices"].get(0) {
            let delta = &choice["delta"];
            if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
                out.push_back(StreamEvent::TextDelta(text.into()));
            }
            for key in ["reasoning_content", "reasoning"] {
                if let Some(text) = delta[key].as_str().filter(|t| !t.is_empty()) {
                    out.push_back(StreamEvent::ReasoningDelta(text.into()));
                }
            }
            if let Some(calls) = delta["tool_calls"].as_array() {
                for (position, call) in calls.iter().enumerate() {
                    let index = call["index"].as_u64().unwrap_or(position as u64) as u32;
                    let pending = self.calls.entry(index).or_default();
                    if let Some(id) = call["id"].as_str().filter(|s| !s.is_empty()) {
                        pending.id = id.into();
                    }
                    if let Some(name) = call["function"]["name"].as_str().filter(|s| !s.is_empty()) {
                        pending.name.push_str(name);
                    }
                    let arguments = call["function"]["arguments"].as_str().unwrap_or("");
                    if !pending.started && !pending.name.is_empty() {
                        pending.started = true;
                        if pending.id.is_empty() {
                            pending.id = format!("call_{index}");
                        }
                        out.push_back(StreamEvent::ToolCallStart(ToolCallStart {
                            index,
                            id: pending.id.clone(),
                            name: pending.name.clone(),
                        }));
                        if !pending.early_arguments.is_empty() {
                            let early = std::mem::take(&mut pending.early_arguments);
                            out.push_back(StreamEvent::ToolCallDelta(ToolCallDelta { index, arguments: early }));
                        }
                    }
                    if !arguments.is_empty() {
                        if pending.started {
                            out.push_back(StreamEvent::ToolCallDelta(ToolCallDelta { index, arguments: arguments.into() }));
                        } else {
                            pending.early_arguments.push_str(arguments);
                        }
                    }
                }
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                control = Control::Finished;
                out.push_back(StreamEvent::Finish(match reason {
                    "stop" => FinishReason::Stop,
                    "tool_calls" | "function_call" => FinishReason::ToolCalls,
                    "length" => FinishReason::Length,
                    "content_filter" => FinishReason::ContentFilter,
                    _ => FinishReason::Other,
                }));
            }
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            let n = |v: &Value| v.as_u64().unwrap_or(0);
            // OpenAI counts cached tokens inside prompt_tokens; Plugboard counts them apart.
            let cached = n(&usage["prompt_tokens_details"]["cached_tokens"]);
            out.push_back(StreamEvent::Usage(Usage {
                input_tokens: n(&usage["prompt_tokens"]).saturating_sub(cached),
                output_tokens: n(&usage["completion_tokens"]),
                cache_read_tokens: n(&usage["prompt_tokens_details"]["cached_tokens"]),
                cache_write_tokens: 0,
                reasoning_tokens: n(&usage["completion_tokens_details"]["reasoning_tokens"]),
            }));
        }
        Ok(control)
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(200).collect()
}

plugboard_sdk::export_provider!(OpenAi);
