//! The hooks in force at one moment, in order, and the validation of what they return.
//!
//! Each method runs the hooks of one point one after the other; each hook sees the result
//! of the ones before it. A hook's answer is a draft: it is checked here, and a hook that
//! fails (trap, timeout, memory) or answers something invalid is skipped, with a
//! `hook.failed` event that names it, the point and the reason.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{CompactionReason, HookPoint, HookSettings};
use crate::runtime::bindings::compaction_types as cwit;
use crate::runtime::bindings::hook_types as wit;
use crate::runtime::{EventSink, LoadedPlugin, PluginSource};

/// Largest prompt a hook may write, in bytes.
const MAX_PROMPT_BYTES: usize = 1 << 20;
/// Largest title a hook may write, in bytes.
const MAX_TITLE_BYTES: usize = 1024;

/// One hook in force.
#[derive(Clone)]
struct ActiveHook {
    plugin: Arc<LoadedPlugin>,
    settings: HookSettings,
}

impl ActiveHook {
    fn id(&self) -> &str {
        &self.plugin.manifest.id
    }

    /// `text` the hook wrote, with the configured secrets masked before it goes on.
    fn mask(&self, text: String) -> String {
        self.plugin.policy().redactor.redact(&text).into_owned()
    }
}

/// Where a hook runs: the session and its agent (both empty outside a session).
#[derive(Debug, Clone, Default)]
pub struct HookContext {
    /// The session.
    pub session_id: String,
    /// The session's agent.
    pub agent: String,
}

/// A prompt refused by a hook.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the prompt was rejected by hook `{hook}`: {reason}")]
pub struct PromptRejected {
    /// The hook.
    pub hook: String,
    /// Its reason.
    pub reason: String,
}

/// What the `tool.before` hooks decided.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolDecision {
    /// Run the call with these arguments (the model's, or a hook's rewrite).
    Run {
        /// The arguments to run with.
        arguments: Value,
    },
    /// Refuse the call.
    Deny {
        /// The hook that refused it.
        hook: String,
        /// Why, for the model and the user.
        reason: String,
    },
}

/// The parameters of a provider turn that `chat.params` hooks may adjust.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatParams {
    /// The model (`provider/model`), which hooks cannot change.
    pub model: String,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Largest output of the turn, in tokens.
    pub max_tokens: Option<u32>,
    /// The system prompt.
    pub system_prompt: String,
}

/// A compaction as `session.compacting` hooks see it.
#[derive(Debug, Clone)]
pub struct CompactionInfo {
    /// Why it runs.
    pub reason: CompactionReason,
    /// The model that will write the summary (`provider/model`).
    pub model: String,
    /// How many messages the summary replaces.
    pub messages: u32,
    /// The conversation to summarize, as the summarizer reads it.
    pub transcript: String,
}

/// What the summarizer of a compaction gets after the transcript, or the summary itself,
/// as `session.compacting` hooks leave it.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactionDraft {
    /// The instructions.
    pub prompt: String,
    /// Paragraphs added after them.
    pub context: Vec<String>,
    /// A summary a hook wrote: the model is not asked.
    pub summary: Option<HookSummary>,
}

/// A compaction's summary written by a hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookSummary {
    /// The summary.
    pub text: String,
    /// The hook that wrote it (the last one that changed it).
    pub hook: String,
}

/// The enabled hooks of one moment, ordered by priority then id, with where their failures
/// are reported. Cheap to build; take one per use.
#[derive(Clone, Default)]
pub struct HookChain {
    hooks: Vec<ActiveHook>,
    sink: Option<EventSink>,
    workspace: String,
}

impl HookChain {
    /// The chain of the hook plugins `plugins`, configured by `settings` (`[hooks.<id>]`).
    pub fn new<'a>(
        plugins: impl IntoIterator<Item = &'a Arc<LoadedPlugin>>,
        settings: &std::collections::BTreeMap<String, HookSettings>,
        sink: Option<EventSink>,
        workspace: String,
    ) -> Self {
        let mut hooks: Vec<ActiveHook> = plugins
            .into_iter()
            .filter(|p| p.hook().is_some())
            .map(|p| ActiveHook { plugin: p.clone(), settings: settings.get(&p.manifest.id).copied().unwrap_or_default() })
            .filter(|h| h.settings.enabled.unwrap_or(!matches!(h.plugin.source, PluginSource::Bundled { .. })))
            .collect();
        hooks.sort_by(|a, b| (a.settings.priority, a.id()).cmp(&(b.settings.priority, b.id())));
        HookChain { hooks, sink, workspace }
    }

    /// The ids of the hooks in force at `point`, in the order they run.
    pub fn order(&self, point: HookPoint) -> Vec<String> {
        self.at(point).map(|h| h.id().to_string()).collect()
    }

    /// Whether the hook plugin `id` is in force.
    pub fn enabled(&self, id: &str) -> bool {
        self.hooks.iter().any(|h| h.id() == id)
    }

    /// Whether any hook in force handles `point`.
    pub fn handles(&self, point: HookPoint) -> bool {
        self.at(point).next().is_some()
    }

    /// Whether any hook in force wants events of type `kind`.
    pub fn wants_event(&self, kind: &str) -> bool {
        self.hooks.iter().any(|h| h.plugin.hook().is_some_and(|i| i.wants_event(kind)))
    }

    fn at(&self, point: HookPoint) -> impl Iterator<Item = &ActiveHook> {
        self.hooks.iter().filter(move |h| h.plugin.hook().is_some_and(|i| i.handles(point)))
    }

    fn context(&self, ctx: &HookContext) -> wit::HookContext {
        wit::HookContext { session_id: ctx.session_id.clone(), agent: ctx.agent.clone(), working_directory: self.workspace.clone() }
    }

    /// Reports a failed hook: a `hook.failed` event (in the session's log when there is one)
    /// and a warning.
    fn failed(&self, hook: &ActiveHook, point: HookPoint, ctx: &HookContext, reason: &str, extra: Value) {
        tracing::warn!(hook = %hook.id(), point = point.name(), session = %ctx.session_id, %reason, "hook failed; its change is discarded");
        let Some(sink) = &self.sink else { return };
        let mut data = json!({
            "hook": hook.id(),
            "point": point.name(),
            "reason": reason,
            "fail_closed": hook.settings.fail_closed,
        });
        if let (Value::Object(data), Value::Object(extra)) = (&mut data, extra) {
            data.extend(extra);
        }
        let session = Some(ctx.session_id.as_str()).filter(|s| !s.is_empty());
        sink(session, vec![("hook.failed", data)]);
    }

    /// `session.created`: each hook observes the new session.
    pub async fn session_created(&self, ctx: &HookContext, model: &str, title: &str) {
        let session = wit::SessionInfo { model: model.into(), title: title.into() };
        for hook in self.at(HookPoint::SessionCreated) {
            let (c, s) = (self.context(ctx), session.clone());
            let result = hook.plugin.run_hook(move |store, h| Box::pin(async move { h.call_session_created(store, &c, &s).await })).await;
            if let Some(reason) = failure(result) {
                self.failed(hook, HookPoint::SessionCreated, ctx, &reason, json!({}));
            }
        }
    }

    /// `prompt.before`: each hook may rewrite the prompt (not to empty text) or reject it.
    pub async fn prompt_before(&self, ctx: &HookContext, prompt: String) -> Result<String, PromptRejected> {
        let mut prompt = prompt;
        for hook in self.at(HookPoint::PromptBefore) {
            let (c, p) = (self.context(ctx), prompt.clone());
            let verdict = hook.plugin.run_hook(move |store, h| Box::pin(async move { h.call_prompt_before(store, &c, &p).await })).await;
            let problem = match verdict {
                Ok(wit::PromptVerdict::Keep) => None,
                Ok(wit::PromptVerdict::Reject(reason)) => {
                    let reason = hook.mask(reason);
                    let reason = if reason.trim().is_empty() { "no reason given".to_string() } else { reason };
                    return Err(PromptRejected { hook: hook.id().into(), reason });
                }
                Ok(wit::PromptVerdict::Rewrite(text)) if text.trim().is_empty() => {
                    Some("invalid rewrite: the prompt would be empty".into())
                }
                Ok(wit::PromptVerdict::Rewrite(text)) if text.len() > MAX_PROMPT_BYTES => {
                    Some(format!("invalid rewrite: the prompt would be {} bytes, over the {MAX_PROMPT_BYTES}-byte limit", text.len()))
                }
                Ok(wit::PromptVerdict::Rewrite(text)) => {
                    prompt = hook.mask(text);
                    None
                }
                Err(e) => Some(e.to_string()),
            };
            if let Some(reason) = problem {
                self.failed(hook, HookPoint::PromptBefore, ctx, &reason, json!({}));
                if hook.settings.fail_closed {
                    return Err(PromptRejected { hook: hook.id().into(), reason: format!("the hook failed and is fail-closed: {reason}") });
                }
            }
        }
        Ok(prompt)
    }

    /// `tool.before`: each hook may allow the call, deny it, or rewrite its arguments (a
    /// JSON object that must match `schema`, the tool's parameters).
    pub async fn tool_before(
        &self,
        ctx: &HookContext,
        call_id: &str,
        tool: &str,
        arguments: Value,
        schema: Option<&Value>,
    ) -> ToolDecision {
        let mut arguments = arguments;
        for hook in self.at(HookPoint::ToolBefore) {
            let c = self.context(ctx);
            let call = wit::ToolCall { call_id: call_id.into(), tool: tool.into(), arguments: arguments.to_string() };
            let verdict = hook.plugin.run_hook(move |store, h| Box::pin(async move { h.call_tool_before(store, &c, &call).await })).await;
            let problem = match verdict {
                Ok(wit::ToolVerdict::Allow) => None,
                Ok(wit::ToolVerdict::Deny(reason)) => {
                    let reason = hook.mask(reason);
                    let reason = if reason.trim().is_empty() { "no reason given".to_string() } else { reason };
                    return ToolDecision::Deny { hook: hook.id().into(), reason };
                }
                Ok(wit::ToolVerdict::Rewrite(text)) => match parse_rewritten_arguments(&hook.mask(text), schema) {
                    Ok(value) => {
                        arguments = value;
                        None
                    }
                    Err(why) => Some(format!("invalid rewrite of the arguments of `{tool}`: {why}")),
                },
                Err(e) => Some(e.to_string()),
            };
            if let Some(reason) = problem {
                self.failed(hook, HookPoint::ToolBefore, ctx, &reason, json!({ "call_id": call_id, "tool": tool }));
                if hook.settings.fail_closed {
                    return ToolDecision::Deny { hook: hook.id().into(), reason: format!("the hook failed and is fail-closed: {reason}") };
                }
            }
        }
        ToolDecision::Run { arguments }
    }

    /// `tool.after`: each hook may replace the text and title of the call's result. The
    /// text must stay within `max_bytes` (the tool's output limit).
    #[allow(clippy::too_many_arguments)]
    pub async fn tool_after(
        &self,
        ctx: &HookContext,
        call_id: &str,
        tool: &str,
        arguments: &Value,
        text: String,
        title: Option<String>,
        is_error: bool,
        max_bytes: u64,
    ) -> (String, Option<String>) {
        let (mut text, mut title) = (text, title);
        for hook in self.at(HookPoint::ToolAfter) {
            let c = self.context(ctx);
            let call = wit::ToolCall { call_id: call_id.into(), tool: tool.into(), arguments: arguments.to_string() };
            let result = wit::ToolResult { text: text.clone(), title: title.clone(), is_error };
            let rewrite =
                hook.plugin.run_hook(move |store, h| Box::pin(async move { h.call_tool_after(store, &c, &call, &result).await })).await;
            let problem = match rewrite {
                Ok(None) => None,
                Ok(Some(r)) if r.text.len() as u64 > max_bytes => {
                    Some(format!("invalid rewrite: the output would be {} bytes, over the tool's limit of {max_bytes}", r.text.len()))
                }
                Ok(Some(r)) if r.title.as_ref().is_some_and(|t| t.len() > MAX_TITLE_BYTES || t.contains('\n')) => {
                    Some(format!("invalid rewrite: a title must be one line of at most {MAX_TITLE_BYTES} bytes"))
                }
                Ok(Some(r)) => {
                    (text, title) = (hook.mask(r.text), r.title.map(|t| hook.mask(t)));
                    None
                }
                Err(e) => Some(e.to_string()),
            };
            if let Some(reason) = problem {
                self.failed(hook, HookPoint::ToolAfter, ctx, &reason, json!({ "call_id": call_id, "tool": tool }));
            }
        }
        (text, title)
    }

    /// `chat.params`: each hook may adjust the temperature (0 to 2), the largest output
    /// (at least 1 token) and the system prompt (not empty). The model stays.
    pub async fn chat_params(&self, ctx: &HookContext, params: ChatParams) -> ChatParams {
        let mut params = params;
        for hook in self.at(HookPoint::ChatParams) {
            let c = self.context(ctx);
            let draft = wit::TurnParams {
                model: params.model.clone(),
                temperature: params.temperature,
                max_tokens: params.max_tokens,
                system_prompt: params.system_prompt.clone(),
            };
            let answer = hook.plugin.run_hook(move |store, h| Box::pin(async move { h.call_chat_params(store, &c, &draft).await })).await;
            let problem = match answer {
                Ok(d) if let Err((field, reason)) = crate::runtime::provider::check_sampling(d.temperature, d.max_tokens) => {
                    Some(format!("invalid draft: {field} {reason}"))
                }
                Ok(d) if d.system_prompt.trim().is_empty() => Some("invalid draft: the system prompt would be empty".to_string()),
                Ok(d) => {
                    params = ChatParams {
                        model: params.model,
                        temperature: d.temperature,
                        max_tokens: d.max_tokens,
                        system_prompt: hook.mask(d.system_prompt),
                    };
                    None
                }
                Err(e) => Some(e.to_string()),
            };
            if let Some(reason) = problem {
                self.failed(hook, HookPoint::ChatParams, ctx, &reason, json!({}));
            }
        }
        params
    }

    /// `session.compacting`: each hook may replace the instructions (not with empty text),
    /// add paragraphs after them, or write the summary itself (not empty, at most
    /// `max_summary_bytes`). Each sees the draft the hooks before it left.
    pub async fn compacting(
        &self,
        ctx: &HookContext,
        info: &CompactionInfo,
        draft: CompactionDraft,
        max_summary_bytes: usize,
    ) -> CompactionDraft {
        let mut draft = draft;
        let cap = u32::try_from(max_summary_bytes).unwrap_or(u32::MAX);
        for hook in self.at(HookPoint::Compacting) {
            let c = cwit::CompactionContext {
                session_id: ctx.session_id.clone(),
                agent: ctx.agent.clone(),
                working_directory: self.workspace.clone(),
            };
            let i = cwit::CompactionInfo {
                reason: info.reason,
                model: info.model.clone(),
                messages: info.messages,
                transcript: info.transcript.clone(),
            };
            let d = cwit::CompactionDraft {
                prompt: draft.prompt.clone(),
                context: draft.context.clone(),
                summary: draft.summary.as_ref().map(|s| s.text.clone()),
                max_summary_bytes: cap,
            };
            let answer =
                hook.plugin.run_compaction_hook(move |store, h| Box::pin(async move { h.call_compacting(store, &c, &i, &d).await })).await;
            let problem = match answer {
                Ok(d) => match check_compaction_draft(&d, max_summary_bytes) {
                    Err(why) => Some(format!("invalid draft: {why}")),
                    Ok(()) => {
                        draft.summary = match d.summary {
                            None => None,
                            // Given back as it was: its writer stays.
                            Some(text) if draft.summary.as_ref().is_some_and(|s| s.text == text) => draft.summary.take(),
                            Some(text) => Some(HookSummary { text: hook.mask(text), hook: hook.id().to_string() }),
                        };
                        draft.prompt = hook.mask(d.prompt);
                        draft.context = d.context.into_iter().map(|p| hook.mask(p)).collect();
                        None
                    }
                },
                Err(e) => Some(e.to_string()),
            };
            if let Some(reason) = problem {
                self.failed(hook, HookPoint::Compacting, ctx, &reason, json!({}));
            }
        }
        draft
    }

    /// `event`: each hook that wants events of this type observes it. A failure is reported,
    /// except while handling a `hook.failed` event (which would feed on itself).
    pub async fn event(&self, session_id: Option<&str>, record: wit::Event) {
        let ctx = HookContext { session_id: session_id.unwrap_or_default().to_string(), agent: String::new() };
        for hook in self.hooks.iter().filter(|h| h.plugin.hook().is_some_and(|i| i.wants_event(&record.event_type))) {
            let (c, e) = (self.context(&ctx), record.clone());
            let result = hook.plugin.run_hook(move |store, h| Box::pin(async move { h.call_on_event(store, &c, &e).await })).await;
            if let Some(reason) = failure(result)
                && record.event_type != "hook.failed"
            {
                self.failed(hook, HookPoint::Event, &ctx, &reason, json!({ "event_seq": record.seq, "event_type": record.event_type }));
            }
        }
    }
}

/// Why an observing hook failed: it trapped or timed out, or it reported an error.
fn failure(result: Result<Result<(), String>, crate::runtime::CallError>) -> Option<String> {
    match result {
        Ok(Ok(())) => None,
        Ok(Err(message)) => Some(format!("the hook reported an error: {message}")),
        Err(e) => Some(e.to_string()),
    }
}

/// Why a `session.compacting` draft cannot be used, if it cannot.
fn check_compaction_draft(d: &cwit::CompactionDraft, max_summary_bytes: usize) -> Result<(), String> {
    if d.prompt.trim().is_empty() {
        return Err("the instructions would be empty".into());
    }
    let added: usize = d.prompt.len() + d.context.iter().map(String::len).sum::<usize>();
    if added > MAX_PROMPT_BYTES {
        return Err(format!("the instructions and context would be {added} bytes, over the {MAX_PROMPT_BYTES}-byte limit"));
    }
    match &d.summary {
        Some(summary) if summary.trim().is_empty() => Err("the summary would be empty".into()),
        Some(summary) if summary.len() > max_summary_bytes => {
            Err(format!("the summary would be {} bytes, over the {max_summary_bytes} bytes the model's context leaves it", summary.len()))
        }
        _ => Ok(()),
    }
}

/// Rewritten arguments: a JSON object that matches the tool's schema.
fn parse_rewritten_arguments(text: &str, schema: Option<&Value>) -> Result<Value, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    if !value.is_object() {
        return Err("not a JSON object".into());
    }
    if let Some(schema) = schema {
        let validator = jsonschema::validator_for(schema).map_err(|e| format!("the tool's schema cannot be used to check them: {e}"))?;
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .take(3)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() { e.to_string() } else { format!("{at}: {e}") }
            })
            .collect();
        if !errors.is_empty() {
            return Err(format!("they do not match the tool's schema: {}", errors.join("; ")));
        }
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewritten_arguments_must_be_an_object_matching_the_schema() {
        let schema = json!({
            "type": "object",
            "properties": { "path": { "type": "string" }, "limit": { "type": "integer", "minimum": 1 } },
            "required": ["path"],
            "additionalProperties": false,
        });
        assert_eq!(parse_rewritten_arguments(r#"{"path":"a.txt"}"#, Some(&schema)).unwrap(), json!({ "path": "a.txt" }));
        assert!(parse_rewritten_arguments("[1]", Some(&schema)).unwrap_err().contains("not a JSON object"));
        assert!(parse_rewritten_arguments("{", Some(&schema)).unwrap_err().contains("not JSON"));
        let err = parse_rewritten_arguments(r#"{"path":"a","limit":0}"#, Some(&schema)).unwrap_err();
        assert!(err.contains("/limit"), "{err}");
        let err = parse_rewritten_arguments(r#"{"limit":2}"#, Some(&schema)).unwrap_err();
        assert!(err.contains("path"), "{err}");
        let err = parse_rewritten_arguments(r#"{"path":"a","extra":1}"#, Some(&schema)).unwrap_err();
        assert!(err.contains("extra"), "{err}");
    }
}
