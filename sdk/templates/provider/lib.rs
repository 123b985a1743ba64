//! The provider `{plugin-id}`: a model served over an OpenAI-compatible Chat Completions API
//! (vLLM, llama.cpp's server, Ollama, LM Studio, OpenRouter, ...), streamed.
//!
//! Settings (`[plugins.{plugin-id}.settings]`): `base_url`, e.g. `"https://api.example.com/v1"`,
//! and `models`, e.g. `[{ id = "qwen2.5-coder", context_tokens = 131072 }]`.

use std::collections::{BTreeSet, VecDeque};

use plugboard_sdk::http::Request;
use plugboard_sdk::provider::*;
use plugboard_sdk::serde_json::{self, Value, json};

struct Api;

impl Provider for Api {
    fn info() -> ProviderInfo {
        // A malformed `models` setting stops the load with its reason (the host shows it).
        let models = configured_models(32_768, 4096).unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| vec![model("default")]);
        ProviderInfo { id: "{plugin-id}".into(), name: "{plugin-id}".into(), models }
    }

    fn complete(request: CompletionRequest) -> Result<Box<dyn CompletionStream>, ProviderError> {
        let base: String = plugboard_sdk::host::setting("base_url")
            .map_err(ProviderError::from)?
            .ok_or_else(|| ProviderError::fatal("no API to call: set [plugins.{plugin-id}.settings] base_url = \"https://…/v1\""))?;
        // The host adds the API key (the `credentials` of Cargo.toml); this code never sees it.
        let http = Request::post(&format!("{}/chat/completions", base.trim_end_matches('/')))
            .map_err(ProviderError::from)?
            .header("content-type", "application/json")
            .header("accept", "text/event-stream")
            .body(request_body(&request)?.to_string());
        Ok(Box::new(SseCompletion::new(send_checked(http)?, Chunks::default())))
    }
}

fn model(id: &str) -> ModelInfo {
    ModelInfo {
        id: id.into(),
        name: id.into(),
        context_tokens: 32_768,
        output_tokens: 4096,
        supports_tools: true,
        supports_reasoning: false,
        supports_images: false,
        price: ModelPrice { input: 0.0, output: 0.0, cache_read: 0.0, cache_write: 0.0 },
    }
}

/// The conversation as a streamed Chat Completions request.
fn request_body(request: &CompletionRequest) -> Result<Value, ProviderError> {
    let mut messages = Vec::new();
    if let Some(system) = &request.system {
        messages.push(json!({ "role": "system", "content": system }));
    }
    for message in &request.messages {
        let (mut text, mut calls) = (String::new(), Vec::new());
        for part in &message.parts {
            match part {
                ContentPart::Text(t) => text.push_str(t),
                ContentPart::ToolCall(c) => {
                    calls.push(json!({ "id": c.id, "type": "function", "function": { "name": c.name, "arguments": c.arguments } }))
                }
                ContentPart::ToolResult(r) => messages.push(json!({ "role": "tool", "tool_call_id": r.call_id, "content": r.content })),
                ContentPart::Reasoning(_) => {}
            }
        }
        match message.role {
            Role::User if !text.is_empty() => messages.push(json!({ "role": "user", "content": text })),
            Role::Assistant if !text.is_empty() || !calls.is_empty() => {
                let mut m = json!({ "role": "assistant", "content": if text.is_empty() { Value::Null } else { text.into() } });
                if !calls.is_empty() {
                    m["tool_calls"] = calls.into();
                }
                messages.push(m);
            }
            _ => {}
        }
    }
    let mut body = json!({ "model": request.model, "messages": messages, "stream": true, "stream_options": { "include_usage": true } });
    if !request.tools.is_empty() {
        let tools = request.tools.iter().map(|t| {
            Ok(json!({ "type": "function", "function": { "name": t.name, "description": t.description, "parameters": tool_schema(t)? } }))
        });
        body["tools"] = tools.collect::<Result<Vec<_>, ProviderError>>()?.into();
    }
    if let Some(t) = request.temperature {
        body["temperature"] = json!(t);
    }
    if let Some(m) = request.max_output_tokens {
        body["max_tokens"] = json!(m);
    }
    Ok(body)
}

/// Translates the stream's chunks, remembering which tool calls have started.
#[derive(Default)]
struct Chunks {
    started: BTreeSet<u32>,
}

impl SseHandler for Chunks {
    fn handle(&mut self, event: &plugboard_sdk::sse::Event, out: &mut VecDeque<StreamEvent>) -> Result<Control, ProviderError> {
        if event.data.trim() == "[DONE]" {
            return Ok(Control::End);
        }
        let chunk: Value =
            serde_json::from_str(&event.data).map_err(|e| ProviderError::transient(format!("a stream chunk is not JSON: {e}")))?;
        if let Some(error) = stream_error(&chunk) {
            return Err(error);
        }
        let mut control = Control::Continue;
        for choice in chunk["choices"].as_array().into_iter().flatten() {
            let delta = &choice["delta"];
            if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
                out.push_back(StreamEvent::TextDelta(text.into()));
            }
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                let index = call["index"].as_u64().unwrap_or(0) as u32;
                if self.started.insert(index) {
                    let id = call["id"].as_str().map_or_else(|| format!("call_{index}"), String::from);
                    let name = call["function"]["name"].as_str().unwrap_or_default().into();
                    out.push_back(StreamEvent::ToolCallStart(ToolCallStart { index, id, name }));
                }
                if let Some(arguments) = call["function"]["arguments"].as_str().filter(|a| !a.is_empty()) {
                    out.push_back(StreamEvent::ToolCallDelta(ToolCallDelta { index, arguments: arguments.into() }));
                }
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                control = Control::Finished;
                out.push_back(StreamEvent::Finish(match reason {
                    "stop" => FinishReason::Stop,
                    "tool_calls" => FinishReason::ToolCalls,
                    "length" => FinishReason::Length,
                    "content_filter" => FinishReason::ContentFilter,
                    _ => FinishReason::Other,
                }));
            }
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            out.push_back(StreamEvent::Usage(Usage {
                input_tokens: usage["prompt_tokens"].as_u64().unwrap_or(0),
                output_tokens: usage["completion_tokens"].as_u64().unwrap_or(0),
                cache_read_tokens: 0,
                cache_write_tokens: 0,
                reasoning_tokens: 0,
            }));
        }
        Ok(control)
    }
}

plugboard_sdk::export_provider!(Api);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_result_follows_the_assistant_message_that_called_it() {
        let request = CompletionRequest {
            model: "m".into(),
            system: Some("Be brief.".into()),
            messages: vec![
                Message { role: Role::User, parts: vec![ContentPart::Text("Read it".into())] },
                Message {
                    role: Role::Assistant,
                    parts: vec![ContentPart::ToolCall(ToolCall { id: "c1".into(), name: "read".into(), arguments: "{}".into() })],
                },
                Message {
                    role: Role::Tool,
                    parts: vec![ContentPart::ToolResult(ToolResult { call_id: "c1".into(), content: "text".into(), is_error: false })],
                },
            ],
            tools: Vec::new(),
            temperature: None,
            max_output_tokens: Some(100),
            options: None,
        };
        let body = request_body(&request).unwrap();
        let roles: Vec<&str> = body["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "tool"]);
        assert_eq!(body["messages"][2]["tool_calls"][0]["id"], "c1");
        assert_eq!(body["max_tokens"], 100);
    }

    #[test]
    fn a_stream_chunk_that_is_an_error_fails_the_completion() {
        let event = plugboard_sdk::sse::Event { event: String::new(), data: r#"{"error":{"message":"overloaded","type":"server_error"}}"#.into() };
        let error = Chunks::default().handle(&event, &mut VecDeque::new()).unwrap_err();
        assert!(error.retryable && error.message.contains("overloaded"), "{error:?}");
    }
}
