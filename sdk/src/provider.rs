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
/// [`ProviderError`] carrying the API's message.
pub fn send_checked(request: crate::http::Request) -> Result<crate::http::Response, ProviderError> {
    let response = request.send()?;
    let status = response.status();
    if (200..300).contains(&status) {
        return Ok(response);
    }
    let retry_after = response.header("retry-after");
    let (body, _) = response.text(16 * 1024).unwrap_or_default();
    Err(ProviderError::from_status(status, retry_after, &body))
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

/// The parameters schema of `tool`, parsed.
pub fn tool_schema(tool: &ToolSpec) -> Result<serde_json::Value, ProviderError> {
    serde_json::from_str(&tool.parameters_schema)
        .map_err(|e| ProviderError::fatal(format!("tool `{}` has a schema that is not JSON: {e}", tool.name)))
}
