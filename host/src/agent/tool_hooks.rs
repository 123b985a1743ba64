//! The `tool.before` and `tool.after` hooks around one tool call, wherever the call comes
//! from: a session's turn ([`super::activity`]) or a direct call (`plugboard tool call
//! --with-hooks`, `POST /tools/{name}/call` with `"hooks": true`, [`direct_call`]).
//!
//! A direct call is judged by its plugin's grants only (no agent's rules: it is the
//! operator's own act), goes through the hooks in force exactly as a session's call does,
//! and is recorded in the event log as `tool.state` events without a session (`running`,
//! then `completed` or `error`), so that `event` hooks such as `audit-log` see it.

use serde_json::{Value, json};

use crate::hooks::{HookContext, HookPoint, ToolDecision};
use crate::runtime::state::ProgressSink;
use crate::runtime::{CallContext, CallError, PluginHost, ToolOutput};
use crate::store::events::now_ms;
use crate::store::model::ToolPart;
use crate::store::sessions::new_id;
use crate::store::{SessionStore, StoreError};

/// A failed call, told two ways: in full for the operator (with the configuration that
/// would grant what was denied), and as the model is told it (what was denied and why),
/// after the `tool.after` hooks.
pub(crate) struct CallFailure {
    pub error: CallError,
    pub for_model: String,
}

/// What the `tool.before` hooks decide for one call; `None` when no hook handles that point.
pub(crate) async fn before(host: &PluginHost, ctx: &HookContext, call_id: &str, tool: &str, arguments: Value) -> Option<ToolDecision> {
    let hooks = host.hooks();
    if !hooks.handles(HookPoint::ToolBefore) {
        return None;
    }
    let registry = host.registry();
    let schema = registry.tool(tool).map(|(t, _)| &t.parameters);
    Some(hooks.tool_before(ctx, call_id, tool, arguments, schema).await)
}

/// Runs the `tool.after` hooks on a call's result (an error as the model is told it): they
/// may replace its text and title, or the text of an error.
pub(crate) async fn after(
    host: &PluginHost,
    ctx: &HookContext,
    call_id: &str,
    tool: &str,
    input: &Value,
    result: Result<ToolOutput, CallError>,
) -> Result<ToolOutput, CallFailure> {
    let hooks = host.hooks();
    if !hooks.handles(HookPoint::ToolAfter) {
        return result.map_err(|error| CallFailure { for_model: error.for_model(), error });
    }
    let limit = host.output_limit(tool);
    let (text, title, is_error) = match &result {
        Ok(output) => (output.text.clone(), output.title.clone(), false),
        Err(error) => (error.for_model(), None, true),
    };
    let (text, title) = hooks.tool_after(ctx, call_id, tool, input, text, title, is_error, limit).await;
    match result {
        Ok(output) => Ok(ToolOutput { text, title, metadata: output.metadata }),
        Err(error) => Err(CallFailure { error, for_model: text }),
    }
}

/// Why a direct call with hooks did not complete.
#[derive(Debug, thiserror::Error)]
pub enum DirectCallError {
    /// A `tool.before` hook refused the call; the tool did not run.
    #[error("refused by hook `{hook}`: {reason}")]
    Refused {
        /// The hook.
        hook: String,
        /// Why.
        reason: String,
    },
    /// The call failed. `text` is its error as the `tool.after` hooks left it (what a
    /// session's model would be told); `error` is the whole story for the operator.
    #[error("{error}")]
    Failed {
        /// Why it failed.
        error: CallError,
        /// The error's text after the hooks.
        text: String,
    },
    /// The call could not be recorded in the event log.
    #[error("the call cannot be recorded in the event log: {0}")]
    Store(#[from] StoreError),
}

impl DirectCallError {
    /// What to tell the operator: a refusal as the hook gave it; a denied capability in
    /// full (with the configuration that would grant it); another failure as the
    /// `tool.after` hooks left it (so what `redact-secrets` masks stays masked).
    pub fn for_operator(&self) -> String {
        match self {
            DirectCallError::Failed { error: error @ CallError::Denied { .. }, .. } => error.to_string(),
            DirectCallError::Failed { text, .. } => text.clone(),
            other => other.to_string(),
        }
    }
}

/// A direct call of a tool: its finished state and the sequence number of the event that
/// recorded it.
pub struct DirectCall {
    /// The result, after the hooks.
    pub result: Result<ToolOutput, DirectCallError>,
    /// The `tool.state` event that recorded how it ended (0 when it could not be recorded:
    /// the result stands, and a warning says so).
    pub seq: i64,
}

/// Runs one call of `tool` with `arguments` outside any session, with the hooks in force,
/// recording it in the event log (see the module's contract).
pub async fn direct_call(
    host: &PluginHost,
    store: &SessionStore,
    tool: &str,
    arguments: Value,
    progress: Option<ProgressSink>,
) -> DirectCall {
    if let Some(unknown) = unknown_tool(host, tool) {
        return DirectCall { result: Err(DirectCallError::Failed { text: unknown.for_model(), error: unknown }), seq: 0 };
    }
    let call_id = new_id("call");
    let ctx = HookContext { session_id: String::new(), agent: String::new() };
    let pending = ToolPart::pending(&call_id, tool, arguments.clone());
    let started = now_ms();
    if let Err(e) = record(store, &pending.clone().running(started)).await {
        return DirectCall { result: Err(e.into()), seq: 0 };
    }
    let input = match before(host, &ctx, &call_id, tool, arguments.clone()).await {
        None => arguments,
        Some(ToolDecision::Run { arguments }) => arguments,
        Some(ToolDecision::Deny { hook, reason }) => {
            let refused = DirectCallError::Refused { hook, reason };
            let seq = record(store, &pending.failed(now_ms(), refused.to_string(), None)).await.unwrap_or(0);
            return DirectCall { result: Err(refused), seq };
        }
    };
    let pending = ToolPart { input: input.clone(), ..pending }.running(started);
    let context = CallContext { session_id: String::new(), call_id: call_id.clone() };
    let ran = host.call_tool(tool, &input.to_string(), &context, progress).await;
    let (part, result) = match after(host, &ctx, &call_id, tool, &input, ran).await {
        Ok(output) => {
            let part = pending.completed(now_ms(), output.text.clone(), output.title.clone(), output.metadata.clone());
            (part, Ok(output))
        }
        Err(CallFailure { error, for_model }) => {
            let part = pending.failed(now_ms(), for_model.clone(), Some(error.to_string()));
            (part, Err(DirectCallError::Failed { error, text: for_model }))
        }
    };
    // The call ran: its result is the caller's even when its end cannot be recorded.
    let seq = record(store, &part).await.unwrap_or_else(|e| {
        tracing::warn!(%tool, call = %call_id, error = %e, "the end of a direct call cannot be recorded in the event log");
        0
    });
    DirectCall { result, seq }
}

/// The error for a call of `tool` when no loaded plugin or server provides it.
fn unknown_tool(host: &PluginHost, tool: &str) -> Option<CallError> {
    let registry = host.registry();
    registry.tool(tool).is_none().then(|| CallError::UnknownTool { name: tool.to_string(), available: registry.tool_names() })
}

/// Records a direct call's state as a `tool.state` event without a session; its sequence
/// number.
async fn record(store: &SessionStore, part: &ToolPart) -> Result<i64, StoreError> {
    let data = json!({ "part_id": Value::Null, "data": part.to_value() });
    store
        .write(move |tx| {
            tx.emit(None, "tool.state", data)?;
            Ok(tx.conn().last_insert_rowid())
        })
        .await
}
