//! Provider plugins: adapters between the host's completion requests and a model API.
//!
//! ```text
//! struct MyProvider;
//!
//! impl Provider for MyProvider {
//!     fn info() -> ProviderInfo { ... }
//!     fn complete(request: CompletionRequest) -> Result<Box<dyn CompletionStream>, ProviderError> { ... }
//! }
//!
//! plugboard_sdk::export_provider!(MyProvider);
//! ```
//!
//! The API key never enters the plugin: declare in `Cargo.toml` which header carries it
//! (`[package.metadata.plugboard.credentials] header = "authorization", prefix = "Bearer "`)
//! and the host adds it to requests to the plugin's granted hosts.

use std::cell::RefCell;

pub use crate::provider_bindings::exports::plugboard::plugin::provider::{
    CompletionRequest, ContentPart, FinishReason, Message, ModelInfo, ModelPrice, ProviderError, ProviderInfo, Role, StreamEvent, ToolCall,
    ToolCallDelta, ToolCallStart, ToolResult, ToolSpec, Usage,
};

/// One entry of a provider's `models` setting, as an operator writes it:
/// `{ id = "qwen2.5-coder", context_tokens = 32768, output_tokens = 8192, tools = true }`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelSetting {
    id: String,
    name: Option<String>,
    context_tokens: Option<u32>,
    output_tokens: Option<u32>,
    tools: Option<bool>,
    reasoning: Option<bool>,
    images: Option<bool>,
    input_price: Option<f64>,
    output_price: Option<f64>,
    cache_read_price: Option<f64>,
    cache_write_price: Option<f64>,
}

/// The models the operator lists in the provider's `models` setting, replacing its built-in
/// list; `Ok(None)` when the setting is absent. Fields left out get `context_tokens` and
/// `output_tokens` from the arguments, tools on, reasoning and images off, and no price.
/// A malformed setting is an error that names the entry and field, for the provider to
/// refuse to load with (a silent fallback would offer models the operator removed).
pub fn configured_models(context_tokens: u32, output_tokens: u32) -> Result<Option<Vec<ModelInfo>>, String> {
    let Some(json) = crate::bindings::plugboard::plugin::host::config("models") else { return Ok(None) };
    let mut reader = serde_json::Deserializer::from_str(&json);
    let entries: Vec<ModelSetting> = serde_path_to_error::deserialize(&mut reader)
        .map_err(|e| format!("the setting `models` is invalid at `{}`: {}", e.path(), e.inner()))?;
    if entries.is_empty() {
        return Err("the setting `models` lists no model; remove it to offer the built-in ones".into());
    }
    Ok(Some(entries.into_iter().map(|m| model_info(m, context_tokens, output_tokens)).collect()))
}

fn model_info(m: ModelSetting, context_tokens: u32, output_tokens: u32) -> ModelInfo {
    ModelInfo {
        name: m.name.unwrap_or_else(|| m.id.clone()),
        id: m.id,
        context_tokens: m.context_tokens.unwrap_or(context_tokens),
        output_tokens: m.output_tokens.unwrap_or(output_tokens),
        supports_tools: m.tools.unwrap_or(true),
        supports_reasoning: m.reasoning.unwrap_or(false),
        supports_images: m.images.unwrap_or(false),
        price: ModelPrice {
            input: m.input_price.unwrap_or(0.0),
            output: m.output_price.unwrap_or(0.0),
            cache_read: m.cache_read_price.unwrap_or(0.0),
            cache_write: m.cache_write_price.unwrap_or(0.0),
        },
    }
}

/// A completion being streamed.
pub trait CompletionStream: 'static {
    /// The next event; `Ok(None)` once the stream has ended.
    fn next(&mut self) -> Result<Option<StreamEvent>, ProviderError>;
}

/// A model API adapter.
pub trait Provider {
    /// What this provider serves (its id must equal the plugin id).
    fn info() -> ProviderInfo;
    /// Starts a streamed completion.
    fn complete(request: CompletionRequest) -> Result<Box<dyn CompletionStream>, ProviderError>;
}

/// The resource the host pulls events from. Used by [`export_provider!`](crate::export_provider).
#[doc(hidden)]
pub struct CompletionHandle(RefCell<Box<dyn CompletionStream>>);

impl CompletionHandle {
    /// Wraps a stream.
    pub fn new(stream: Box<dyn CompletionStream>) -> Self {
        CompletionHandle(RefCell::new(stream))
    }
}

impl crate::provider_bindings::exports::plugboard::plugin::provider::GuestCompletion for CompletionHandle {
    fn next(&self) -> Result<Option<StreamEvent>, ProviderError> {
        self.0.borrow_mut().next()
    }
}

impl ProviderError {
    /// A failure that trying again will not fix.
    pub fn fatal(message: impl Into<String>) -> Self {
        ProviderError { message: message.into(), status: None, retryable: false, retry_after_ms: None }
    }

    /// A failure worth retrying (a cut stream, a refused connection).
    pub fn transient(message: impl Into<String>) -> Self {
        ProviderError { message: message.into(), status: None, retryable: true, retry_after_ms: None }
    }

    /// An error answer of the API: 408, 409, 429 and 5xx are retryable; `retry-after`
    /// (seconds or an HTTP date is not parsed: seconds only) is honoured.
    pub fn from_status(status: u16, retry_after: Option<String>, body: &str) -> Self {
        let retryable = matches!(status, 408 | 409 | 429) || status >= 500;
        let retry_after_ms = retry_after.and_then(|v| v.trim().parse::<f64>().ok()).map(|s| (s * 1000.0) as u64);
        let detail: String = body.chars().take(1000).collect();
        ProviderError { message: format!("HTTP {status}: {detail}"), status: Some(status), retryable, retry_after_ms }
    }
}

impl From<crate::ToolError> for ProviderError {
    fn from(e: crate::ToolError) -> Self {
        match e {
            crate::ToolError::Denied { .. } => ProviderError::fatal(e.to_string()),
            other => ProviderError::transient(other.to_string()),
        }
    }
}

/// Sends `request` and checks the answer's status; an error status becomes a
/// [`ProviderError`] that names the URL and carries the API's message (a wrong `base_url`
/// then shows in the 404 itself).
pub fn send_checked(request: crate::http::Request) -> Result<crate::http::Response, ProviderError> {
    let url = request.url();
    let response = request.send()?;
    let status = response.status();
    if (200..300).contains(&status) {
        return Ok(response);
    }
    let retry_after = response.header("retry-after");
    let (body, _) = response.text(16 * 1024).unwrap_or_default();
    let mut error = ProviderError::from_status(status, retry_after, &body);
    error.message = format!("{url} answered {}", error.message);
    Err(error)
}

/// Error types that trying again may fix, as OpenAI, Anthropic and compatible servers name
/// them.
const RETRYABLE_ERRORS: &[&str] =
    &["server_error", "api_error", "overloaded_error", "rate_limit_error", "rate_limit_exceeded", "timeout", "timeout_error"];

/// The error a stream event carries, in any of the shapes APIs send mid-stream:
/// `{"error": {"type", "message", "code"}}` (OpenAI; Anthropic's `{"type": "error", "error":
/// {...}}`), `{"error": "message"}`, or flat, `{"code": 500, "message": "...", "type":
/// "server_error"}` (some compatible servers). `None` for an event that is no error.
/// Retryable when its type says so, or its code is 408, 409, 429 or 5xx.
pub fn stream_error(data: &serde_json::Value) -> Option<ProviderError> {
    use serde_json::Value;
    let fields = match data.get("error") {
        Some(Value::String(message)) => return Some(ProviderError::fatal(message.clone())),
        Some(error @ Value::Object(_)) => error,
        _ if data["message"].is_string() && (data.get("code").is_some() || data["type"].as_str().is_some_and(|t| t.ends_with("error"))) => {
            data
        }
        _ => return None,
    };
    let message = fields["message"].as_str().unwrap_or("(the API sent no message)");
    let kind = fields["type"].as_str().filter(|k| !k.is_empty() && *k != "error");
    let status =
        fields["code"].as_u64().or_else(|| fields["code"].as_str().and_then(|c| c.parse().ok())).and_then(|c| u16::try_from(c).ok());
    let code = fields["code"].as_str();
    let retryable = [kind, code].into_iter().flatten().any(|k| RETRYABLE_ERRORS.contains(&k))
        || status.is_some_and(|s| matches!(s, 408 | 409 | 429) || s >= 500);
    let message = match (kind.or(code), status) {
        (Some(kind), _) => format!("{kind}: {message}"),
        (None, Some(status)) => format!("error {status}: {message}"),
        (None, None) => message.to_string(),
    };
    Some(ProviderError { message, status, retryable, retry_after_ms: None })
}

/// What an [`SseHandler`] says after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Keep reading.
    Continue,
    /// The model has finished (usage may still follow).
    Finished,
    /// The stream is complete (e.g. `[DONE]`, `message_stop`).
    End,
}

/// Turns one API's Server-Sent Events into [`StreamEvent`]s.
pub trait SseHandler: 'static {
    /// Handles one event, pushing what it yields onto `out`.
    fn handle(&mut self, event: &crate::sse::Event, out: &mut std::collections::VecDeque<StreamEvent>) -> Result<Control, ProviderError>;
}

/// A completion streamed as Server-Sent Events: reads events, lets the handler translate
/// them, and turns a stream that ends or breaks before the model finished into a retryable
/// error.
pub struct SseCompletion<H> {
    events: crate::sse::EventReader,
    handler: H,
    queue: std::collections::VecDeque<StreamEvent>,
    finished: bool,
    done: bool,
}

impl<H: SseHandler> SseCompletion<H> {
    /// Streams `response` through `handler`.
    pub fn new(response: crate::http::Response, handler: H) -> Self {
        SseCompletion { events: crate::sse::EventReader::new(response), handler, queue: Default::default(), finished: false, done: false }
    }
}

impl<H: SseHandler> CompletionStream for SseCompletion<H> {
    fn next(&mut self) -> Result<Option<StreamEvent>, ProviderError> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Ok(Some(event));
            }
            if self.done {
                return Ok(None);
            }
            let event = match self.events.next_event() {
                Ok(Some(event)) => event,
                // Some servers end the body (or cut it) right after the last chunk.
                Ok(None) | Err(_) if self.finished => {
                    self.done = true;
                    continue;
                }
                Ok(None) => return Err(ProviderError::transient("the stream ended before the model finished")),
                Err(e) => return Err(ProviderError::transient(format!("the stream was cut: {}", e.message))),
            };
            match self.handler.handle(&event, &mut self.queue)? {
                Control::Continue => {}
                Control::Finished => self.finished = true,
                Control::End if !self.finished => {
                    self.done = true;
                    return Err(ProviderError::transient("the stream ended before the model finished"));
                }
                Control::End => self.done = true,
            }
        }
    }
}

/// Merges a request's provider options (a JSON object) into an API request `body`, key by
/// key.
pub fn merge_options(body: &mut serde_json::Value, options: Option<&str>) -> Result<(), ProviderError> {
    let Some(options) = options else { return Ok(()) };
    let Ok(serde_json::Value::Object(extra)) = serde_json::from_str::<serde_json::Value>(options) else {
        return Err(ProviderError::fatal("provider options must be a JSON object"));
    };
    for (key, value) in extra {
        body[key] = value;
    }
    Ok(())
}

/// `body` as JSON, with the provider options (`options`, a JSON object) merged in as
/// [`merge_options`] does. Without options, `body` is serialized straight to bytes, no JSON
/// tree built.
pub fn body_with_options<T: serde::Serialize>(body: &T, options: Option<&str>) -> Result<Vec<u8>, ProviderError> {
    let unserializable = |e: serde_json::Error| ProviderError::fatal(format!("the request cannot be serialized: {e}"));
    if options.is_none() {
        return serde_json::to_vec(body).map_err(unserializable);
    }
    let mut merged = serde_json::to_value(body).map_err(unserializable)?;
    merge_options(&mut merged, options)?;
    serde_json::to_vec(&merged).map_err(unserializable)
}

/// The parameters schema of `tool`, parsed.
pub fn tool_schema(tool: &ToolSpec) -> Result<serde_json::Value, ProviderError> {
    serde_json::from_str(&tool.parameters_schema).map_err(|e| schema_error(tool, e))
}

/// The parameters schema of `tool` as it came, checked to be JSON: to copy into a request
/// serialized with serde without building the schema as values.
pub fn tool_parameters(tool: &ToolSpec) -> Result<&serde_json::value::RawValue, ProviderError> {
    serde_json::from_str(&tool.parameters_schema).map_err(|e| schema_error(tool, e))
}

fn schema_error(tool: &ToolSpec, e: serde_json::Error) -> ProviderError {
    ProviderError::fatal(format!("tool `{}` has a schema that is not JSON: {e}", tool.name))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_error_event_is_read_in_each_shape_apis_send_it() {
        let nested = stream_error(&json!({ "type": "error", "error": { "type": "overloaded_error", "message": "Overloaded" } })).unwrap();
        assert_eq!((nested.message.as_str(), nested.retryable), ("overloaded_error: Overloaded", true));
        let openai = stream_error(&json!({ "error": { "type": "invalid_request_error", "message": "bad", "code": "x" } })).unwrap();
        assert_eq!((openai.message.as_str(), openai.retryable), ("invalid_request_error: bad", false));
        let flat = stream_error(&json!({ "code": 500, "message": "boom", "type": "server_error" })).unwrap();
        assert_eq!((flat.message.as_str(), flat.status, flat.retryable), ("server_error: boom", Some(500), true));
        let bare = stream_error(&json!({ "code": 503, "message": "busy" })).unwrap();
        assert_eq!((bare.message.as_str(), bare.retryable), ("error 503: busy", true));
        let text = stream_error(&json!({ "error": "model not found" })).unwrap();
        assert_eq!((text.message.as_str(), text.retryable), ("model not found", false));
    }

    #[test]
    fn provider_options_replace_the_fields_they_name_and_add_the_others() {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            model: &'a str,
            temperature: f32,
            schema: &'a serde_json::value::RawValue,
        }
        let schema = serde_json::value::RawValue::from_string(r#"{"type": "object"}"#.into()).unwrap();
        let body = Body { model: "m", temperature: 0.5, schema: &schema };
        let plain = body_with_options(&body, None).unwrap();
        assert_eq!(String::from_utf8(plain).unwrap(), r#"{"model":"m","temperature":0.5,"schema":{"type": "object"}}"#);
        let merged = body_with_options(&body, Some(r#"{"temperature": 1.0, "seed": 7}"#)).unwrap();
        let merged: serde_json::Value = serde_json::from_slice(&merged).unwrap();
        assert_eq!(merged, json!({ "model": "m", "temperature": 1.0, "seed": 7, "schema": { "type": "object" } }));
        let refused = body_with_options(&body, Some("[1]")).unwrap_err();
        assert_eq!(refused.message, "provider options must be a JSON object");
    }

    #[test]
    fn events_that_are_no_error_are_not_taken_for_one() {
        for event in [
            json!({ "type": "message_start", "message": { "usage": {} } }),
            json!({ "type": "content_block_delta", "delta": { "text": "error" } }),
            json!({ "choices": [{ "delta": { "content": "message" } }] }),
            json!({ "type": "ping", "message": "hello" }),
        ] {
            assert!(stream_error(&event).is_none(), "{event}");
        }
    }
}
