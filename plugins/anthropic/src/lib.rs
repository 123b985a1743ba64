//! The `anthropic` provider: the Messages API with SSE streaming, tool use and thinking.
//!
//! Settings (`[plugins.anthropic.settings]`):
//! - `base_url`: default `https://api.anthropic.com`; requests go to `{base_url}/v1/messages`,
//!   and a `base_url` that already ends in `/v1` (as `openai`'s does) is taken as it is;
//! - `models`: the models to offer, replacing the built-in list (same shape as `openai`'s);
//! - `version`: the `anthropic-version` header (default `2023-06-01`).
//!
//! Provider options (a JSON object) are merged into the request body, e.g.
//! `{"thinking": {"type": "enabled", "budget_tokens": 4096}}`.

use std::collections::VecDeque;

use plugboard_sdk::http::Request;
use plugboard_sdk::provider::*;
use plugboard_sdk::serde::Serialize;
use plugboard_sdk::serde_json::value::RawValue;
use plugboard_sdk::serde_json::{self, Value, json};

const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
const DEFAULT_VERSION: &str = "2023-06-01";

struct Anthropic;

fn model(id: &str, name: &str, output: u32, price: (f64, f64)) -> ModelInfo {
    ModelInfo {
        id: id.into(),
        name: name.into(),
        context_tokens: 200_000,
        output_tokens: output,
        supports_tools: true,
        supports_reasoning: true,
        supports_images: true,
        price: ModelPrice { input: price.0, output: price.1, cache_read: price.0 * 0.1, cache_write: price.0 * 1.25 },
    }
}

fn setting<T: plugboard_sdk::serde::de::DeserializeOwned>(key: &str) -> Result<Option<T>, ProviderError> {
    plugboard_sdk::host::setting::<T>(key).map_err(ProviderError::from)
}

impl Provider for Anthropic {
    fn info() -> ProviderInfo {
        // A malformed `models` setting stops the load with its reason (the host shows the
        // panic message), rather than offering models the operator did not list.
        let configured = configured_models(200_000, 8192).unwrap_or_else(|e| panic!("{e}"));
        let models = configured.unwrap_or_else(|| {
            vec![
                model("claude-sonnet-4-5", "Claude Sonnet 4.5", 64_000, (3.0, 15.0)),
                model("claude-opus-4-1", "Claude Opus 4.1", 32_000, (15.0, 75.0)),
                model("claude-haiku-4-5", "Claude Haiku 4.5", 64_000, (1.0, 5.0)),
            ]
        });
        ProviderInfo { id: "anthropic".into(), name: "Anthropic".into(), models }
    }

    fn complete(request: CompletionRequest) -> Result<Box<dyn CompletionStream>, ProviderError> {
        let base = setting::<String>("base_url")?.unwrap_or_else(|| DEFAULT_BASE_URL.into());
        let version = setting::<String>("version")?.unwrap_or_else(|| DEFAULT_VERSION.into());
        let body = request_body(&request)?;
        let base = base.trim_end_matches('/');
        let url = format!("{}/v1/messages", base.strip_suffix("/v1").unwrap_or(base));
        let http = Request::post(&url)
            .map_err(ProviderError::from)?
            .header("content-type", "application/json")
            .header("accept", "text/event-stream")
            .header("anthropic-version", &version)
            .body(body);
        let response = send_checked(http)?;
        let usage = Usage { input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_tokens: 0, reasoning_tokens: 0 };
        Ok(Box::new(SseCompletion::new(response, MessageEvents { blocks: Vec::new(), tool_calls: 0, usage })))
    }
}

/// The JSON body of a streamed Messages request. Consecutive messages of the same role are
/// merged (the API wants user and assistant turns to alternate); tool results travel in a
/// user turn.
fn request_body(request: &CompletionRequest) -> Result<Vec<u8>, ProviderError> {
    let mut messages: Vec<Value> = Vec::new();
    for message in &request.messages {
        let role = match message.role {
            Role::Assistant => "assistant",
            Role::User | Role::Tool => "user",
        };
        let mut blocks = Vec::new();
        for part in &message.parts {
            match part {
                ContentPart::Text(t) if !t.is_empty() => blocks.push(json!({ "type": "text", "text": t })),
                ContentPart::Text(_) => {}
                ContentPart::Reasoning((text, signature)) => {
                    if let Some(signature) = signature {
                        blocks.push(json!({ "type": "thinking", "thinking": text, "signature": signature }));
                    }
                }
                ContentPart::ToolCall(c) => {
                    let input: Value = serde_json::from_str(&c.arguments).unwrap_or_else(|_| json!({}));
                    blocks.push(json!({ "type": "tool_use", "id": c.id, "name": c.name, "input": input }));
                }
                ContentPart::ToolResult(r) => {
                    blocks.push(json!({ "type": "tool_result", "tool_use_id": r.call_id, "content": r.content, "is_error": r.is_error }))
                }
            }
        }
        if blocks.is_empty() {
            continue;
        }
        match messages.last_mut() {
            Some(last) if last["role"] == role => last["content"].as_array_mut().expect("content is an array").extend(blocks),
            _ => messages.push(json!({ "role": role, "content": blocks })),
        }
    }
    let tools = request
        .tools
        .iter()
        .map(|t| Ok(ToolOut { name: &t.name, description: &t.description, input_schema: tool_parameters(t)? }))
        .collect::<Result<Vec<_>, ProviderError>>()?;
    let body = MessagesBody {
        model: &request.model,
        messages,
        max_tokens: request.max_output_tokens.unwrap_or(8192),
        stream: true,
        system: request.system.as_deref(),
        temperature: request.temperature,
        tools,
    };
    body_with_options(&body, request.options.as_deref())
}

/// A Messages request body; each tool's schema is copied as it came.
#[derive(Serialize)]
#[serde(crate = "plugboard_sdk::serde")]
struct MessagesBody<'a> {
    model: &'a str,
    messages: Vec<Value>,
    max_tokens: u32,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ToolOut<'a>>,
}

#[derive(Serialize)]
#[serde(crate = "plugboard_sdk::serde")]
struct ToolOut<'a> {
    name: &'a str,
    description: &'a str,
    input_schema: &'a RawValue,
}

/// What a content block of the stream is, by the API's block index.
#[derive(Clone, Copy, PartialEq)]
enum Block {
    Text,
    Thinking,
    /// A tool call, with our index of it.
    ToolUse(u32),
    Other,
}

/// Translates Messages API events.
struct MessageEvents {
    blocks: Vec<Block>,
    tool_calls: u32,
    usage: Usage,
}

impl SseHandler for MessageEvents {
    fn handle(&mut self, event: &plugboard_sdk::sse::Event, out: &mut VecDeque<StreamEvent>) -> Result<Control, ProviderError> {
        let data: Value = serde_json::from_str(&event.data).map_err(|e| {
            ProviderError::transient(format!("a stream event is not JSON ({e}): {}", event.data.chars().take(200).collect::<String>()))
        })?;
        if let Some(error) = stream_error(&data) {
            return Err(error);
        }
        let kind = if event.event.is_empty() { data["type"].as_str().unwrap_or("").to_string() } else { event.event.clone() };
        self.handle_event(&kind, &data, out)
    }
}

impl MessageEvents {
    fn handle_event(&mut self, kind: &str, data: &Value, out: &mut VecDeque<StreamEvent>) -> Result<Control, ProviderError> {
        let mut control = Control::Continue;
        let n = |v: &Value| v.as_u64().unwrap_or(0);
        match kind {
            "message_start" => {
                let usage = &data["message"]["usage"];
                self.usage.input_tokens = n(&usage["input_tokens"]);
                self.usage.cache_read_tokens = n(&usage["cache_read_input_tokens"]);
                self.usage.cache_write_tokens = n(&usage["cache_creation_input_tokens"]);
                self.usage.output_tokens = n(&usage["output_tokens"]);
            }
            "content_block_start" => {
                let index = n(&data["index"]) as usize;
                let block = &data["content_block"];
                let kind = match block["type"].as_str().unwrap_or("") {
                    "text" => {
                        if let Some(t) = block["text"].as_str().filter(|t| !t.is_empty()) {
                            out.push_back(StreamEvent::TextDelta(t.into()));
                        }
                        Block::Text
                    }
                    "thinking" => Block::Thinking,
                    "tool_use" => {
                        let ours = self.tool_calls;
                        self.tool_calls += 1;
                        out.push_back(StreamEvent::ToolCallStart(ToolCallStart {
                            index: ours,
                            id: block["id"].as_str().unwrap_or_default().into(),
                            name: block["name"].as_str().unwrap_or_default().into(),
                        }));
                        Block::ToolUse(ours)
                    }
                    _ => Block::Other,
                };
                if self.blocks.len() <= index {
                    self.blocks.resize(index + 1, Block::Other);
                }
                self.blocks[index] = kind;
            }
            "content_block_delta" => {
                let index = n(&data["index"]) as usize;
                let delta = &data["delta"];
                match (delta["type"].as_str().unwrap_or(""), self.blocks.get(index).copied()) {
                    ("text_delta", _) => out.push_back(StreamEvent::TextDelta(delta["text"].as_str().unwrap_or_default().into())),
                    ("thinking_delta", _) => {
                        out.push_back(StreamEvent::ReasoningDelta(delta["thinking"].as_str().unwrap_or_default().into()))
                    }
                    ("signature_delta", _) => {
                        out.push_back(StreamEvent::ReasoningSignature(delta["signature"].as_str().unwrap_or_default().into()))
                    }
                    ("input_json_delta", Some(Block::ToolUse(ours))) => {
                        let piece = delta["partial_json"].as_str().unwrap_or_default();
                        if !piece.is_empty() {
                            out.push_back(StreamEvent::ToolCallDelta(ToolCallDelta { index: ours, arguments: piece.into() }));
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(output) = data["usage"]["output_tokens"].as_u64() {
                    self.usage.output_tokens = output;
                }
                out.push_back(StreamEvent::Usage(self.usage));
                if let Some(reason) = data["delta"]["stop_reason"].as_str() {
                    control = Control::Finished;
                    out.push_back(StreamEvent::Finish(match reason {
                        "end_turn" | "stop_sequence" | "pause_turn" => FinishReason::Stop,
                        "tool_use" => FinishReason::ToolCalls,
                        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
                        "refusal" => FinishReason::ContentFilter,
                        _ => FinishReason::Other,
                    }));
                }
            }
            "message_stop" => control = Control::End,
            "error" => return Err(ProviderError::transient(format!("an error event the provider cannot read: {data}"))),
            _ => {}
        }
        Ok(control)
    }
}

plugboard_sdk::export_provider!(Anthropic);
