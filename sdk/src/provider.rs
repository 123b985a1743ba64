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
