//! Hook plugins: take part in the agent's life with one plain function per hook point.
//!
//! ```text
//! use plugboard_sdk::hook::*;
//!
//! /// Masks API keys in what tools return.
//! fn redact(_ctx: &HookContext, _call: &ToolCall, result: &mut ToolResult) {
//!     result.text = result.text.replace("sk-secret", "[redacted]");
//! }
//!
//! /// Refuses `rm -rf`.
//! fn guard(_ctx: &HookContext, call: &ToolCall) -> ToolVerdict {
//!     match call.arguments["command"].as_str() {
//!         Some(c) if c.contains("rm -rf") => ToolVerdict::Deny("no recursive deletes".into()),
//!         _ => ToolVerdict::Allow,
//!     }
//! }
//!
//! plugboard_sdk::export_hooks! {
//!     tool_before: guard,
//!     tool_after: redact,
//! }
//! ```
//!
//! The points and their functions:
//!
//! | key | function |
//! |---|---|
//! | `session_created` | `fn(&HookContext, &Session) -> R` |
//! | `prompt_before` | `fn(&HookContext, &str) -> PromptVerdict` |
//! | `tool_before` | `fn(&HookContext, &ToolCall) -> ToolVerdict` |
//! | `tool_after` | `fn(&HookContext, &ToolCall, &mut ToolResult)` |
//! | `chat_params` | `fn(&HookContext, &mut ChatParams)` |
//! | `compacting` | `fn(&HookContext, &Compaction, &mut CompactionDraft)` |
//! | `on_event` | `fn(&HookContext, &Event) -> R` |
//!
//! `R` is `()` or `Result<(), E>` with `E: Display`; an error is reported by the host as a
//! `hook.failed` event. `event_types: ["tool.state", "plugin.*"]` limits `on_event` to those
//! types (default: every event). Whatever a hook returns is a draft the host validates.

use std::path::PathBuf;

use crate::compaction_bindings::exports::plugboard::plugin::compaction as cwit;
use crate::hook_bindings::exports::plugboard::plugin::hooks as wit;

/// Where a hook runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookContext {
    /// The session (empty outside one).
    pub session_id: String,
    /// The session's agent (empty outside one, and for `on_event`).
    pub agent: String,
    /// The workspace, as the plugin sees it.
    pub working_directory: PathBuf,
}

/// A new session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Its model, as `provider/model`.
    pub model: String,
    /// Its title.
    pub title: String,
}

/// What to do with a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptVerdict {
    /// Leave it.
    Keep,
    /// Replace it (not with empty text).
    Rewrite(String),
    /// Refuse it, saying why.
    Reject(String),
}

/// A tool call about to run (or that ran).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The call's id.
    pub call_id: String,
    /// The tool.
    pub tool: String,
    /// Its arguments (a JSON object).
    pub arguments: serde_json::Value,
}

/// What to do with a tool call.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolVerdict {
    /// Let it run.
    Allow,
    /// Refuse it, saying why (the model sees the reason).
    Deny(String),
    /// Run it with these arguments, which must match the tool's schema.
    Rewrite(serde_json::Value),
}

/// How a tool call ended; change `text` or `title` to rewrite it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolResult {
    /// The output, or the error, as the model will see it.
    pub text: String,
    /// The title, for people.
    pub title: Option<String>,
    /// True when the call failed.
    pub is_error: bool,
}

/// The parameters of the next provider turn; change them to adjust it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatParams {
    /// The model (a change is ignored).
    pub model: String,
    /// Temperature, 0 to 2.
    pub temperature: Option<f32>,
    /// Largest output, in tokens (at least 1).
    pub max_tokens: Option<u32>,
    /// The system prompt (not empty).
    pub system_prompt: String,
}

/// Why a compaction runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactionReason {
    /// The conversation passed `[sessions] compact_at` of the model's context.
    Auto,
    /// Someone asked for it.
    Requested,
}

/// A compaction about to run: the session's older messages are to be summarized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compaction {
    /// Why.
    pub reason: CompactionReason,
    /// The model that will write the summary, as `provider/model`.
    pub model: String,
    /// How many messages the summary replaces.
    pub messages: u32,
    /// The conversation to summarize, as the summarizer reads it.
    pub transcript: String,
}

/// What the summarizer gets after the transcript; change it, or write the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionDraft {
    /// The instructions (not empty).
    pub prompt: String,
    /// Paragraphs added after the instructions, e.g. what the summary must keep.
    pub context: Vec<String>,
    /// Set it to write the summary yourself: the model is not asked. Not empty, and at
    /// most `max_summary_bytes`.
    pub summary: Option<String>,
    /// The longest summary the host accepts, in bytes (a change is ignored).
    pub max_summary_bytes: u32,
}

/// An event of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Its global sequence number.
    pub seq: u64,
    /// Its type, e.g. `tool.state`.
    pub event_type: String,
    /// When, in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Its data.
    pub data: serde_json::Value,
}

/// What an observing hook may return: `()`, or a `Result` whose error the host reports.
pub trait HookOutcome {
    /// As the WIT result.
    fn into_result(self) -> Result<(), String>;
}

impl HookOutcome for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: std::fmt::Display> HookOutcome for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

impl From<wit::HookContext> for HookContext {
    fn from(c: wit::HookContext) -> Self {
        HookContext { session_id: c.session_id, agent: c.agent, working_directory: c.working_directory.into() }
    }
}

impl From<wit::ToolCall> for ToolCall {
    fn from(c: wit::ToolCall) -> Self {
        let arguments = serde_json::from_str(&c.arguments).unwrap_or(serde_json::Value::Null);
        ToolCall { call_id: c.call_id, tool: c.tool, arguments }
    }
}

/// Adapters between the WIT exports and the author's functions. Used by
/// [`export_hooks!`](crate::export_hooks); not a stable API.
#[doc(hidden)]
pub mod adapt {
    use super::*;

    /// The plugin's `describe` answer.
    pub fn info(points: &[wit::HookPoint], event_types: &[&str]) -> wit::HookInfo {
        wit::HookInfo { points: points.to_vec(), event_types: event_types.iter().map(|t| t.to_string()).collect() }
    }

    /// `session-created`.
    pub fn session_created<R: HookOutcome>(
        f: impl Fn(&HookContext, &Session) -> R,
        context: wit::HookContext,
        session: wit::SessionInfo,
    ) -> Result<(), String> {
        f(&context.into(), &Session { model: session.model, title: session.title }).into_result()
    }

    /// `prompt-before`.
    pub fn prompt_before(f: impl Fn(&HookContext, &str) -> PromptVerdict, context: wit::HookContext, prompt: String) -> wit::PromptVerdict {
        match f(&context.into(), &prompt) {
            PromptVerdict::Keep => wit::PromptVerdict::Keep,
            PromptVerdict::Rewrite(text) => wit::PromptVerdict::Rewrite(text),
            PromptVerdict::Reject(reason) => wit::PromptVerdict::Reject(reason),
        }
    }

    /// `tool-before`.
    pub fn tool_before(
        f: impl Fn(&HookContext, &ToolCall) -> ToolVerdict,
        context: wit::HookContext,
        call: wit::ToolCall,
    ) -> wit::ToolVerdict {
        match f(&context.into(), &call.into()) {
            ToolVerdict::Allow => wit::ToolVerdict::Allow,
            ToolVerdict::Deny(reason) => wit::ToolVerdict::Deny(reason),
            ToolVerdict::Rewrite(arguments) => wit::ToolVerdict::Rewrite(arguments.to_string()),
        }
    }

    /// `tool-after`: `none` unless the function changed the text or the title.
    pub fn tool_after(
        f: impl Fn(&HookContext, &ToolCall, &mut ToolResult),
        context: wit::HookContext,
        call: wit::ToolCall,
        outcome: wit::ToolResult,
    ) -> Option<wit::ResultRewrite> {
        let before = ToolResult { text: outcome.text, title: outcome.title, is_error: outcome.is_error };
        let mut after = before.clone();
        f(&context.into(), &call.into(), &mut after);
        (after.text != before.text || after.title != before.title).then_some(wit::ResultRewrite { text: after.text, title: after.title })
    }

    /// `chat-params`.
    pub fn chat_params(f: impl Fn(&HookContext, &mut ChatParams), context: wit::HookContext, params: wit::TurnParams) -> wit::TurnParams {
        let mut p = ChatParams {
            model: params.model,
            temperature: params.temperature,
            max_tokens: params.max_tokens,
            system_prompt: params.system_prompt,
        };
        f(&context.into(), &mut p);
        wit::TurnParams { model: p.model, temperature: p.temperature, max_tokens: p.max_tokens, system_prompt: p.system_prompt }
    }

    /// `compacting`.
    pub fn compacting(
        f: impl Fn(&HookContext, &Compaction, &mut CompactionDraft),
        context: cwit::CompactionContext,
        compaction: cwit::CompactionInfo,
        draft: cwit::CompactionDraft,
    ) -> cwit::CompactionDraft {
        let context =
            HookContext { session_id: context.session_id, agent: context.agent, working_directory: context.working_directory.into() };
        let reason = match compaction.reason {
            cwit::CompactionReason::Auto => CompactionReason::Auto,
            cwit::CompactionReason::Requested => CompactionReason::Requested,
        };
        let compaction = Compaction { reason, model: compaction.model, messages: compaction.messages, transcript: compaction.transcript };
        let mut d = CompactionDraft {
            prompt: draft.prompt,
            context: draft.context,
            summary: draft.summary,
            max_summary_bytes: draft.max_summary_bytes,
        };
        f(&context, &compaction, &mut d);
        cwit::CompactionDraft { prompt: d.prompt, context: d.context, summary: d.summary, max_summary_bytes: draft.max_summary_bytes }
    }

    /// `on-event`.
    pub fn on_event<R: HookOutcome>(
        f: impl Fn(&HookContext, &Event) -> R,
        context: wit::HookContext,
        event: wit::Event,
    ) -> Result<(), String> {
        let data = serde_json::from_str(&event.data).unwrap_or(serde_json::Value::Null);
        let event = Event { seq: event.seq, event_type: event.event_type, timestamp: event.timestamp, data };
        f(&context.into(), &event).into_result()
    }
}
