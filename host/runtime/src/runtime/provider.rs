//! The `provider-plugin` world on top of the sandbox: what a provider serves (asked once,
//! at load, and again when its settings change), streamed completions, and their errors.

use std::sync::Arc;

use serde::Serialize;

use super::engine::{GuestTask, spawn_on_guest_threads};
use super::error::{CallError, LoadError};
use super::sandbox::{Sandbox, SlottedStore};
use super::state::CallState;
use crate::runtime::bindings::{ProviderPluginPre, provider_types as wit};

/// The provider part of a model reference, `provider/model`.
pub fn provider_of(model: &str) -> &str {
    model.split_once('/').map_or(model, |(provider, _)| provider)
}

pub use wit::{
    CompletionRequest, ContentPart, FinishReason, Message, Role, StreamEvent, ToolCall, ToolCallDelta, ToolCallStart, ToolResult, ToolSpec,
    Usage,
};

/// Price of a model, in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ModelPrice {
    /// Input tokens.
    pub input: f64,
    /// Output tokens.
    pub output: f64,
    /// Input tokens read from the provider's cache.
    pub cache_read: f64,
    /// Input tokens written to the provider's cache.
    pub cache_write: f64,
}

/// One model a provider serves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    /// The id the API knows it by.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Context window, in tokens.
    pub context_tokens: u32,
    /// Largest output, in tokens.
    pub output_tokens: u32,
    /// Whether it can call tools.
    pub supports_tools: bool,
    /// Whether it reasons.
    pub supports_reasoning: bool,
    /// Whether it accepts images.
    pub supports_images: bool,
    /// Its price.
    pub price: ModelPrice,
}

/// What a provider serves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderInfo {
    /// Its id (the plugin id); models are `<id>/<model>`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Its models.
    pub models: Vec<ModelInfo>,
}

impl From<wit::ProviderInfo> for ProviderInfo {
    fn from(info: wit::ProviderInfo) -> Self {
        ProviderInfo {
            id: info.id,
            name: info.name,
            models: info
                .models
                .into_iter()
                .map(|m| ModelInfo {
                    id: m.id,
                    name: m.name,
                    context_tokens: m.context_tokens,
                    output_tokens: m.output_tokens,
                    supports_tools: m.supports_tools,
                    supports_reasoning: m.supports_reasoning,
                    supports_images: m.supports_images,
                    price: ModelPrice {
                        input: m.price.input,
                        output: m.price.output,
                        cache_read: m.price.cache_read,
                        cache_write: m.price.cache_write,
                    },
                })
                .collect(),
        }
    }
}

/// Why a completion failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompletionError {
    /// No loaded provider serves this model.
    #[error("no model `{model}`{}", if available.is_empty() { " (no provider is loaded)".to_string() } else { format!(" (available: {})", available.join(", ")) })]
    UnknownModel {
        /// The model asked for.
        model: String,
        /// The models that exist, as `provider/model`.
        available: Vec<String>,
    },
    /// The API answered with an error, or the stream broke.
    #[error("provider `{provider}`: {message}{}", if *retryable { " (retryable)" } else { "" })]
    Api {
        /// The provider.
        provider: String,
        /// What went wrong.
        message: String,
        /// The HTTP status, when there was one.
        status: Option<u16>,
        /// Whether trying again may succeed.
        retryable: bool,
        /// How long the API asked to wait, in milliseconds.
        retry_after_ms: Option<u64>,
    },
    /// The plugin itself failed (time or memory limit, crash).
    #[error(transparent)]
    Plugin(CallError),
}

impl CompletionError {
    /// The provider's error, its message masked by `redactor`.
    pub(crate) fn api(provider: &str, e: wit::ProviderError, redactor: &crate::secrets::Redactor) -> Self {
        CompletionError::Api {
            provider: provider.to_string(),
            message: redactor.redact(&e.message).into_owned(),
            status: e.status,
            retryable: e.retryable,
            retry_after_ms: e.retry_after_ms,
        }
    }

    /// The error's text without the note that it is retryable, for when the retries ran out.
    pub fn without_retry_note(&self) -> String {
        match self {
            CompletionError::Api { provider, message, .. } => format!("provider `{provider}`: {message}"),
            other => other.to_string(),
        }
    }

    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, CompletionError::Api { retryable: true, .. })
    }
}

/// Checks sampling parameters as every provider takes them: a temperature from 0 to 2, and
/// at least one output token. The error names the field and says what is wrong with it.
pub fn check_sampling(temperature: Option<f32>, max_tokens: Option<u32>) -> Result<(), (&'static str, String)> {
    if let Some(t) = temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(("temperature", format!("{t} is not between 0 and 2")));
    }
    if max_tokens == Some(0) {
        return Err(("max_tokens", "must be at least 1".into()));
    }
    Ok(())
}

/// Holds `request` to what the provider says of `model`: the output limit is the smaller of
/// the one asked for and the model's (the model's when none was asked for), so a long
/// answer ends at the model's limit instead of filling the context; a model that cannot
/// call tools is offered none.
pub fn fit_to_model(request: &mut CompletionRequest, model: &ModelInfo) {
    if model.output_tokens > 0 {
        let asked = request.max_output_tokens.unwrap_or(model.output_tokens);
        request.max_output_tokens = Some(asked.min(model.output_tokens));
    }
    if !model.supports_tools {
        request.tools.clear();
    }
}

/// A provider plugin, described.
#[derive(Clone)]
pub(crate) struct ProviderWorld {
    pre: ProviderPluginPre<CallState>,
    pub(crate) info: ProviderInfo,
}

impl ProviderWorld {
    pub(crate) fn pre(&self) -> &ProviderPluginPre<CallState> {
        &self.pre
    }

    /// Asks the provider what it serves, under its limits. It must call itself by its
    /// manifest id and serve at least one model.
    pub(crate) async fn describe(pre: ProviderPluginPre<CallState>, sandbox: &Sandbox) -> Result<Self, LoadError> {
        let recipe = pre.clone();
        let (info, _) = sandbox
            .run(None, move |store| {
                Box::pin(async move { recipe.instantiate_async(&mut *store).await?.plugboard_plugin_provider().call_info(store).await })
            })
            .await
            .map_err(|e| LoadError::Provider(e.to_string()))?;
        if info.id != sandbox.plugin() {
            return Err(LoadError::Provider(format!("it calls itself `{}`, but its manifest id is `{}`", info.id, sandbox.plugin())));
        }
        if info.models.is_empty() {
            return Err(LoadError::Provider("it serves no models".into()));
        }
        Ok(ProviderWorld { pre, info: ProviderInfo::from(info) })
    }

    /// Starts a streamed completion on a fresh instance in `sandbox`; the stream keeps the
    /// instance, under the same sandbox, until it ends or is dropped.
    pub(crate) async fn complete(&self, sandbox: Sandbox, request: CompletionRequest) -> Result<ProviderStream, CompletionError> {
        let plugin: Arc<str> = sandbox.plugin().into();
        let (started, opened) = tokio::sync::oneshot::channel();
        let (events, received) = tokio::sync::mpsc::channel(READ_AHEAD);
        let task = spawn_on_guest_threads(produce(sandbox, self.pre.clone(), request, started, events));
        match opened.await {
            Ok(Ok(())) => Ok(ProviderStream { plugin, events: received, _task: task, ended: false }),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(stopped(&plugin)),
        }
    }
}

/// How many events a stream reads ahead of its consumer.
const READ_AHEAD: usize = 16;

/// One event of a stream as its task sends it: `Ok(None)` ends it.
type Step = Result<Option<StreamEvent>, CompletionError>;

/// A stream's task, on the guest threads from its start: it instantiates the provider,
/// starts the completion (answering `started`), then sends each event the guest gives
/// until the end, an error, or the consumer is gone. Each step runs under the plugin's
/// time limit, waiting for the API included; waiting for the consumer is not counted.
async fn produce(
    sandbox: Sandbox,
    pre: ProviderPluginPre<CallState>,
    request: CompletionRequest,
    started: tokio::sync::oneshot::Sender<Result<(), CompletionError>>,
    events: tokio::sync::mpsc::Sender<Step>,
) {
    let opened = sandbox
        .run_here(None, move |store| {
            Box::pin(async move {
                let instance = pre.instantiate_async(&mut *store).await?;
                let started = instance.plugboard_plugin_provider().call_complete(&mut *store, &request).await?;
                Ok((instance, started))
            })
        })
        .await;
    let (mut instance, completion, mut store) = match opened {
        Err(e) => return drop(started.send(Err(CompletionError::Plugin(e)))),
        Ok(((_, Err(api)), mut store)) => return drop(started.send(Err(refused(&sandbox, api, &mut store)))),
        Ok(((instance, Ok(completion)), store)) => (instance, completion, store),
    };
    if started.send(Ok(())).is_err() {
        return;
    }
    loop {
        let step = sandbox
            .resume_here(store, move |store| {
                Box::pin(async move {
                    let event = instance.plugboard_plugin_provider().completion().call_next(store, completion).await?;
                    Ok((instance, event))
                })
            })
            .await;
        let (step, live) = match step {
            Err(e) => (Err(CompletionError::Plugin(e)), None),
            Ok(((_, Err(api)), store)) => (Err(CompletionError::api(sandbox.plugin(), api, store.data().redactor())), None),
            // The store goes before the end is announced: its instance slot, and its
            // connection (given back to the pool), are free when the caller goes on.
            Ok(((_, Ok(None)), store)) => {
                drop(store);
                (Ok(None), None)
            }
            Ok(((instance, Ok(Some(event))), store)) => (Ok(Some(event)), Some((instance, store))),
        };
        if events.send(step).await.is_err() {
            return;
        }
        let Some(live) = live else { return };
        (instance, store) = live;
    }
}

/// The provider's answer to `complete` when it refused to start; a request the network
/// grant refused gets the same "add this line" as a tool's.
fn refused(sandbox: &Sandbox, api: wit::ProviderError, store: &mut SlottedStore) -> CompletionError {
    let denials = store.data_mut().take_denials();
    let mut error = CompletionError::api(sandbox.plugin(), api, store.data().redactor());
    if let (CompletionError::Api { message, .. }, Some(denial)) = (&mut error, denials.first()) {
        message.push('\n');
        message.push_str(&sandbox.policy().grant_hint(denial.kind, &denial.target));
    }
    error
}

/// A stream whose task ended without a last step: a bug of the host, named as such.
fn stopped(plugin: &str) -> CompletionError {
    let message = "the stream's task stopped before the stream ended (a bug of the host; see its log)".to_string();
    CompletionError::Plugin(CallError::Host { plugin: plugin.to_string(), message })
}

/// A completion being streamed by a provider plugin. One instance lives for the whole
/// stream, in a task of its own on the guest threads that reads up to [`READ_AHEAD`]
/// events ahead; dropping the stream stops the task, which drops the instance and so
/// abandons the request. Each event thus costs one wake-up of the consumer, not a trip of
/// the store to the guest threads and back.
pub struct ProviderStream {
    plugin: Arc<str>,
    events: tokio::sync::mpsc::Receiver<Step>,
    _task: GuestTask<()>,
    ended: bool,
}

impl ProviderStream {
    /// The next event, `Ok(None)` at the end (and after an error). Each step runs under
    /// the plugin's time limit (waiting for the API included). Dropping this future loses
    /// nothing: the event stays for the next call.
    pub async fn next(&mut self) -> Result<Option<StreamEvent>, CompletionError> {
        if self.ended {
            return Ok(None);
        }
        let step = self.events.recv().await.unwrap_or_else(|| Err(stopped(&self.plugin)));
        self.ended = !matches!(step, Ok(Some(_)));
        step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(output_tokens: u32, supports_tools: bool) -> ModelInfo {
        let price = ModelPrice { input: 0.0, output: 0.0, cache_read: 0.0, cache_write: 0.0 };
        ModelInfo {
            id: "m".into(),
            name: "m".into(),
            context_tokens: 8192,
            output_tokens,
            supports_tools,
            supports_reasoning: false,
            supports_images: false,
            price,
        }
    }

    fn request(max_output_tokens: Option<u32>) -> CompletionRequest {
        let tool = ToolSpec { name: "read".into(), description: "Reads a file.".into(), parameters_schema: "{}".into() };
        CompletionRequest {
            model: String::new(),
            system: None,
            messages: Vec::new(),
            tools: vec![tool],
            temperature: None,
            max_output_tokens,
            options: None,
        }
    }

    #[test]
    fn a_request_asks_for_at_most_the_models_output_limit_and_for_that_limit_by_default() {
        for (asked, sent) in [(None, Some(512)), (Some(100), Some(100)), (Some(4096), Some(512))] {
            let mut r = request(asked);
            fit_to_model(&mut r, &model(512, true));
            assert_eq!(r.max_output_tokens, sent, "asked for {asked:?}");
        }
        let mut r = request(Some(100));
        fit_to_model(&mut r, &model(0, true));
        assert_eq!(r.max_output_tokens, Some(100), "a model that states no limit leaves the request's");
    }

    #[test]
    fn a_model_that_cannot_call_tools_is_offered_none() {
        let mut r = request(None);
        fit_to_model(&mut r, &model(512, false));
        assert!(r.tools.is_empty());
        let mut r = request(None);
        fit_to_model(&mut r, &model(512, true));
        assert_eq!(r.tools.len(), 1);
    }
}
