//! Compaction: the older part of what a session's model sees is summarized by a model and
//! the summary is sent in its place. The full history stays in the store; the compaction is
//! a message of its own (a `compaction` part naming the last message it covers), so the
//! conversation is rebuilt the same way after a restart, an export or a model switch (see
//! [`super::conversation::provider_messages`]).
//!
//! - [`plan`] picks what to summarize: every message the model still sees except the most
//!   recent ones that fit in a quarter of the budget, which stay word for word.
//! - [`transcript`] renders it as text for the summarizer (so any model can summarize any
//!   provider's history), cut to what the summarizer's context holds.
//! - [`Instructions`] follow the transcript: [`SUMMARY_REQUEST`], unless `session.compacting`
//!   hooks replaced them, with the paragraphs hooks added. A hook may also write the
//!   summary itself; the model is then not asked.
//! - [`summarize`] asks the model, without tools, and collects the summary and its usage.
//!
//! The activity ([`super::activity`]) decides when: before a provider turn whose request
//! passes `[sessions] compact_at` of the model's budget, or on request.

use serde::Serialize;

use super::context::{Estimator, Window, message_chars};
use super::conversation::{live_records, record_messages, summary_message};
use crate::capability::ProviderOverrides;
use crate::runtime::PluginHost;
use crate::runtime::provider::{CompletionError, CompletionRequest, ContentPart, Message, Role, StreamEvent};
use crate::store::model::CompactionReason;
use crate::store::sessions::{MessageRecord, Tokens};

/// The summarizer's system prompt.
pub const SUMMARY_SYSTEM: &str = "You summarize the conversation of a coding agent with its user, so that the agent can \
go on with the work from your summary alone. You do not call tools.";

/// What the summarizer is asked, after the transcript.
pub const SUMMARY_REQUEST: &str = "Summarize the conversation above for the agent that will continue it without seeing \
it. Keep: the user's requests and constraints (the latest request word for word); what was done and found, with the \
files, commands and errors involved; decisions and why; where the work stands and what remains to do. Be specific and \
brief. Answer with the summary only.";

/// The share of the budget the most recent messages may fill and still be kept as they are.
const KEEP_SHARE: u64 = 4;
/// Longest tool output and tool arguments in a transcript, in bytes.
const TRANSCRIPT_OUTPUT: usize = 2_000;
const TRANSCRIPT_ARGUMENTS: usize = 500;
/// Longest summary asked for, in tokens.
const SUMMARY_TOKENS: u32 = 8_192;

/// A compaction, as events and answers report it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Compaction {
    /// The message that holds it.
    pub message_id: String,
    /// The last message it summarizes.
    pub through: String,
    /// Why it ran.
    pub reason: CompactionReason,
    /// The model that wrote the summary, or would have when `hook` did.
    pub model: String,
    /// The `session.compacting` hook that wrote the summary instead of the model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook: Option<String>,
    /// Estimated tokens of the request before and after.
    pub tokens_before: u64,
    /// See `tokens_before`.
    pub tokens_after: u64,
    /// Tokens the summarizer used (counted in the session's usage).
    pub tokens: Tokens,
    /// What they cost, in US dollars.
    pub cost: f64,
}

/// What a compaction will summarize.
pub struct Plan {
    /// The last message it covers.
    pub through: String,
    /// The messages to summarize, as the model sees them (a previous summary first).
    pub summarized: Vec<Message>,
    /// How many stored messages they are.
    pub messages: usize,
}

/// What to summarize of `history`, keeping as they are the most recent messages that fit in
/// a quarter of `budget` tokens; `None` when there is nothing to summarize. Tool outputs
/// are measured as the model sees them (cut to `tool_output_limit`).
pub fn plan(history: &[MessageRecord], budget: u64, tool_output_limit: usize, estimate: &Estimator) -> Option<Plan> {
    let (summary, records) = live_records(history);
    let messages: Vec<Vec<Message>> = records.iter().map(|r| record_messages(r, tool_output_limit)).collect();
    let keep = budget / KEEP_SHARE;
    let (mut first_kept, mut kept) = (records.len(), 0);
    while first_kept > 0 {
        let size = estimate.tokens(message_chars(&messages[first_kept - 1]));
        if kept + size > keep {
            break;
        }
        kept += size;
        first_kept -= 1;
    }
    let summarized: Vec<Message> =
        summary.map(summary_message).into_iter().chain(messages[..first_kept].iter().flatten().cloned()).collect();
    if first_kept == 0 || summarized.is_empty() {
        return None;
    }
    Some(Plan { through: records[first_kept - 1].id.clone(), summarized, messages: first_kept })
}

/// `messages` as a plain transcript of at most `limit` bytes: a previous summary whole,
/// then as much of the rest as fits, its end rather than its start.
pub fn transcript(messages: &[Message], limit: usize) -> String {
    let rendered: Vec<String> = messages.iter().map(render).collect();
    let (first, rest) = match messages.first() {
        Some(m) if m.role == Role::User && rendered[0].contains("<summary>") => (rendered[0].clone(), &rendered[1..]),
        _ => (String::new(), &rendered[..]),
    };
    let rest = rest.join("\n");
    let room = limit.saturating_sub(first.len());
    if rest.len() <= room {
        return format!("{first}{rest}");
    }
    let mut start = rest.len() - room;
    while !rest.is_char_boundary(start) {
        start += 1;
    }
    format!("{first}[… the start of the conversation is left out: it did not fit the summarizer's context]\n{}", &rest[start..])
}

fn render(message: &Message) -> String {
    let who = match message.role {
        Role::User => "User",
        Role::Assistant => "Agent",
        Role::Tool => "Tool results",
    };
    let mut out = format!("## {who}\n");
    for part in &message.parts {
        match part {
            ContentPart::Text(text) => out.push_str(text),
            ContentPart::Reasoning(_) => continue,
            ContentPart::ToolCall(call) => {
                out.push_str(&format!("called `{}` with {}", call.name, clip(&call.arguments, TRANSCRIPT_ARGUMENTS)))
            }
            ContentPart::ToolResult(result) => {
                let failed = if result.is_error { " (failed)" } else { "" };
                out.push_str(&format!("result{failed}: {}", clip(&result.content, TRANSCRIPT_OUTPUT)));
            }
        }
        out.push('\n');
    }
    out
}

fn clip(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} […{} more bytes]", &text[..end], text.len() - end)
}

/// What the summarizer is asked after the transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instructions {
    /// The request ([`SUMMARY_REQUEST`] unless a hook replaced it).
    pub prompt: String,
    /// Paragraphs hooks added after it.
    pub context: Vec<String>,
}

impl Default for Instructions {
    fn default() -> Self {
        Instructions { prompt: SUMMARY_REQUEST.into(), context: Vec::new() }
    }
}

impl Instructions {
    fn text(&self) -> String {
        std::iter::once(self.prompt.as_str()).chain(self.context.iter().map(String::as_str)).collect::<Vec<_>>().join("\n\n")
    }
}

impl From<CompactionReason> for crate::hooks::CompactionReason {
    fn from(reason: CompactionReason) -> Self {
        match reason {
            CompactionReason::Auto => crate::hooks::CompactionReason::Auto,
            CompactionReason::Requested => crate::hooks::CompactionReason::Requested,
        }
    }
}

/// The longest summary asked of a model with `window`, in tokens.
pub fn summary_tokens(window: Window) -> u32 {
    (window.reserve.min(u64::from(u32::MAX)) as u32).clamp(1, SUMMARY_TOKENS)
}

/// `summarized` as the summarizer with `window` reads it, after which `instructions` fit.
pub fn fitted_transcript(summarized: &[Message], window: Window, estimate: &Estimator, instructions: &str) -> String {
    let fixed = estimate.tokens(SUMMARY_SYSTEM.len() + instructions.len()) + 64;
    let room = window.context.saturating_sub(u64::from(summary_tokens(window)) + fixed);
    transcript(summarized, estimate.chars(room))
}

/// The summarizer's request for `summarized`, fitted to the window of the model that
/// writes it.
pub fn request(summarized: &[Message], window: Window, estimate: &Estimator, instructions: &Instructions) -> CompletionRequest {
    let instructions = instructions.text();
    let text = format!("{}\n\n{instructions}", fitted_transcript(summarized, window, estimate, &instructions));
    let max_output = summary_tokens(window);
    CompletionRequest {
        model: String::new(),
        system: Some(SUMMARY_SYSTEM.into()),
        messages: vec![Message { role: Role::User, parts: vec![ContentPart::Text(text)] }],
        tools: Vec::new(),
        temperature: None,
        max_output_tokens: Some(max_output),
        options: None,
    }
}

/// Asks `model` for the summary; returns it with the tokens used (estimated when the
/// provider reports none).
pub async fn summarize(
    host: &PluginHost,
    model: &str,
    request: CompletionRequest,
    overrides: Option<&ProviderOverrides>,
) -> Result<(String, Tokens), CompletionError> {
    let sent = super::context::request_chars(&request);
    let mut stream = host.complete_with(model, request, overrides).await?;
    let (mut summary, mut tokens) = (String::new(), None);
    while let Some(event) = stream.next().await? {
        match event {
            StreamEvent::TextDelta(delta) => summary.push_str(&delta),
            StreamEvent::Usage(u) => tokens = Some(super::conversation::reported_tokens(&u)),
            _ => {}
        }
    }
    let tokens = tokens.unwrap_or_else(|| super::context::estimated_usage(sent, summary.len()));
    let summary = summary.trim().to_string();
    if summary.is_empty() {
        let provider = crate::runtime::provider::provider_of(model).to_string();
        let message = format!("`{model}` answered with an empty summary");
        return Err(CompletionError::Api { provider, message, status: None, retryable: true, retry_after_ms: None });
    }
    Ok((summary, tokens))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::model::{MessageRole, MessageStatus, PartKind};
    use crate::store::sessions::PartRecord;
    use serde_json::json;

    fn record(id: &str, role: MessageRole, text: &str) -> MessageRecord {
        MessageRecord::of(id, role, MessageStatus::Completed, vec![(PartKind::Text, json!({ "text": text }))])
    }

    #[test]
    fn the_plan_summarizes_all_but_the_recent_messages_that_fit_a_quarter_of_the_budget() {
        let estimate = Estimator::default();
        let history = vec![
            record("m1", MessageRole::User, &"a".repeat(4_000)),
            record("m2", MessageRole::Assistant, &"b".repeat(4_000)),
            record("m3", MessageRole::User, &"c".repeat(400)),
            record("m4", MessageRole::Assistant, &"d".repeat(400)),
        ];
        // A budget of 1,000 tokens keeps 250: the last two messages (100 tokens each).
        let plan = plan(&history, 1_000, usize::MAX, &estimate).expect("something to summarize");
        assert_eq!((plan.through.as_str(), plan.summarized.len()), ("m2", 2));
        // Nothing to summarize when everything fits what is kept.
        assert!(super::plan(&history[2..], 1_000, usize::MAX, &estimate).is_none());
        // A message too large to keep is summarized, even the last one.
        let plan = super::plan(&history[..1], 1_000, usize::MAX, &estimate).expect("the one large message");
        assert_eq!(plan.through, "m1");
    }

    #[test]
    fn a_second_compaction_summarizes_the_first_summary_with_what_followed_it() {
        let estimate = Estimator::default();
        let mut summary = record("m3", MessageRole::Assistant, "");
        summary.parts = vec![PartRecord {
            id: "prt_c".into(),
            kind: PartKind::Compaction,
            data: json!({ "summary": "earlier work", "through": "m2" }),
        }];
        let history = vec![
            record("m1", MessageRole::User, "old"),
            record("m2", MessageRole::Assistant, "old answer"),
            summary,
            record("m4", MessageRole::User, &"n".repeat(4_000)),
            record("m5", MessageRole::Assistant, "short"),
        ];
        let plan = plan(&history, 1_000, usize::MAX, &estimate).unwrap();
        assert_eq!(plan.through, "m4");
        let text = transcript(&plan.summarized, 100_000);
        assert!(text.contains("<summary>\nearlier work\n</summary>") && !text.contains("old answer"), "{text}");
    }

    #[test]
    fn a_transcript_too_long_keeps_the_previous_summary_and_the_end() {
        let messages = vec![
            summary_message("what came before"),
            Message { role: Role::Assistant, parts: vec![ContentPart::Text(format!("START{}END", "x".repeat(5_000)))] },
        ];
        let text = transcript(&messages, 1_000);
        assert!(text.len() <= 1_100, "{}", text.len());
        assert!(
            text.contains("what came before") && text.contains("left out") && text.contains("END") && !text.contains("START"),
            "{text}"
        );
    }
}
