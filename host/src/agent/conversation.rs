//! The conversation as the provider sees it, built from the stored history, and the small
//! rules of a turn: a call's arguments as JSON, how a turn and an activity finish, and what
//! tokens cost. Pure functions: no store, no plugins.

use serde_json::Value;

use super::context::cut_tool_output;
use crate::runtime::provider::{ContentPart, FinishReason, Message, ModelPrice, Role, ToolCall, ToolResult, Usage};
use crate::store::model::{Finish, MessageRole, MessageStatus, PartKind, ToolPart, ToolState};
use crate::store::sessions::{MessageRecord, Tokens};

/// What the model is told of a call that never finished.
const UNFINISHED: &str = "interrupted: the call did not finish";

/// The conversation as the provider sees it. What the latest compaction summarized is sent
/// as its summary; failed attempts are left out; every tool call gets a result (an
/// unfinished one is reported as interrupted), cut to `tool_output_limit` bytes; user
/// messages in a row are sent as one.
pub fn provider_messages(history: &[MessageRecord], tool_output_limit: usize) -> Vec<Message> {
    let (summary, records) = live_records(history);
    let mut out: Vec<Message> = summary.map(summary_message).into_iter().collect();
    for record in records {
        for message in record_messages(record, tool_output_limit) {
            match (out.last_mut(), message) {
                (Some(last), Message { role: Role::User, parts }) if last.role == Role::User => last.parts.extend(parts),
                (_, message) => out.push(message),
            }
        }
    }
    out
}

/// What the provider still sees of a history: the summary of its latest compaction (if
/// any), and the messages after what that summary covers (compactions left out).
/// Reverted messages are left out, as if they had never been.
pub fn live_records(history: &[MessageRecord]) -> (Option<&str>, Vec<&MessageRecord>) {
    let kept: Vec<&MessageRecord> = history.iter().filter(|m| m.reverted_at.is_none()).collect();
    let latest = kept.iter().enumerate().rev().find_map(|(i, m)| compaction_of(m).map(|c| (i, c)));
    let Some((at, compaction)) = latest else {
        return (None, kept.into_iter().filter(|m| compaction_of(m).is_none()).collect());
    };
    let through = compaction["through"].as_str();
    let first = kept[..at].iter().position(|m| Some(m.id.as_str()) == through).map_or(at, |i| i + 1);
    let records = kept[first..].iter().copied().filter(|m| compaction_of(m).is_none()).collect();
    (compaction["summary"].as_str(), records)
}

/// The data of a message's compaction part, when it is a finished compaction.
pub fn compaction_of(message: &MessageRecord) -> Option<&Value> {
    message.parts.iter().find(|p| p.kind == PartKind::Compaction).map(|p| &p.data)
}

/// The summary of a compaction, as the model is told it: the first user message.
pub fn summary_message(summary: &str) -> Message {
    let text = format!(
        "The conversation so far was compacted to fit the model's context. This summary of its earlier part \
         stands in for it; what followed comes after it.\n\n<summary>\n{summary}\n</summary>"
    );
    Message { role: Role::User, parts: vec![ContentPart::Text(text)] }
}

/// One stored message as the provider sees it: nothing for a failed attempt; a user
/// message; or the assistant's turn, then its calls' results.
pub fn record_messages(message: &MessageRecord, tool_output_limit: usize) -> Vec<Message> {
    let mut out = Vec::new();
    if message.status == MessageStatus::Error {
        return out;
    }
    match message.role {
        MessageRole::User => {
            let parts: Vec<ContentPart> =
                message.parts.iter().filter(|p| p.kind == PartKind::Text).map(|p| ContentPart::Text(text_of(&p.data))).collect();
            if !parts.is_empty() {
                out.push(Message { role: Role::User, parts });
            }
        }
        MessageRole::Assistant => {
            let mut parts = Vec::new();
            let mut results = Vec::new();
            for part in &message.parts {
                match part.kind {
                    PartKind::Text => parts.push(ContentPart::Text(text_of(&part.data))),
                    PartKind::Reasoning => {
                        let signature = part.data["signature"].as_str().map(str::to_string);
                        parts.push(ContentPart::Reasoning((text_of(&part.data), signature)));
                    }
                    PartKind::Tool => {
                        let Some(tool) = ToolPart::from_value(&part.data) else { continue };
                        let (call, mut result) = call_and_result(tool);
                        if result.content.len() > tool_output_limit {
                            result.content = cut_tool_output(&result.content, tool_output_limit, &part.id).into_owned();
                        }
                        parts.push(ContentPart::ToolCall(call));
                        results.push(ContentPart::ToolResult(result));
                    }
                    PartKind::StepStart | PartKind::StepFinish | PartKind::Compaction | PartKind::Patch => {}
                }
            }
            if !parts.is_empty() {
                out.push(Message { role: Role::Assistant, parts });
            }
            if !results.is_empty() {
                out.push(Message { role: Role::Tool, parts: results });
            }
        }
    }
    out
}

fn text_of(data: &Value) -> String {
    data["text"].as_str().unwrap_or("").to_string()
}

/// A stored call as the model made it, and its result as the model is told it.
fn call_and_result(tool: ToolPart) -> (ToolCall, ToolResult) {
    let arguments = match &tool.input {
        Value::String(raw) => raw.clone(),
        json => json.to_string(),
    };
    let (content, is_error) = match tool.state {
        ToolState::Completed => (tool.output.unwrap_or_default(), false),
        ToolState::Error => (tool.error.unwrap_or_else(|| "error".into()), true),
        ToolState::Pending | ToolState::Running => (UNFINISHED.to_string(), true),
    };
    let result = ToolResult { call_id: tool.call_id.clone(), content, is_error };
    (ToolCall { id: tool.call_id, name: tool.tool, arguments }, result)
}

/// The assistant's side of a turn, as the conversation goes on with it: its reasoning,
/// text and calls (`None` when it said nothing).
pub(super) fn assistant_message(reasoning: &str, signature: Option<&str>, text: &str, calls: &[ToolCall]) -> Option<Message> {
    let mut parts = Vec::new();
    if !reasoning.is_empty() {
        parts.push(ContentPart::Reasoning((reasoning.to_string(), signature.map(str::to_string))));
    }
    if !text.is_empty() {
        parts.push(ContentPart::Text(text.to_string()));
    }
    parts.extend(calls.iter().cloned().map(ContentPart::ToolCall));
    (!parts.is_empty()).then_some(Message { role: Role::Assistant, parts })
}

/// A call's arguments as JSON, or as the raw text when they are not JSON.
pub(super) fn parse_arguments(arguments: &str) -> Value {
    serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_string()))
}

/// How a provider turn finished, as its `step-finish` part records it.
pub(super) fn turn_finish(reason: Option<FinishReason>) -> Finish {
    match reason {
        Some(FinishReason::ToolCalls) => Finish::ToolCalls,
        Some(FinishReason::Length) => Finish::Length,
        Some(FinishReason::ContentFilter) => Finish::ContentFilter,
        Some(FinishReason::Other) => Finish::Other,
        Some(FinishReason::Stop) | None => Finish::Stop,
    }
}

/// How an activity finished when its last turn called no tools: the model's limit and the
/// provider's filter are worth telling; anything else is a stop.
pub(super) fn activity_finish(turn: Finish) -> Finish {
    match turn {
        Finish::Length | Finish::ContentFilter => turn,
        _ => Finish::Stop,
    }
}

/// The tokens a provider reported.
pub fn reported_tokens(usage: &Usage) -> Tokens {
    Tokens {
        input: usage.input_tokens,
        output: usage.output_tokens,
        cache_read: usage.cache_read_tokens,
        cache_write: usage.cache_write_tokens,
    }
}

/// What `tokens` cost at `price`, in US dollars.
pub(super) fn cost(price: &ModelPrice, tokens: Tokens) -> f64 {
    (tokens.input as f64 * price.input
        + tokens.output as f64 * price.output
        + tokens.cache_read as f64 * price.cache_read
        + tokens.cache_write as f64 * price.cache_write)
        / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::json;

    fn message(role: MessageRole, status: MessageStatus, parts: Vec<(PartKind, Value)>) -> MessageRecord {
        MessageRecord::of("msg", role, status, parts)
    }

    /// The WIT types have no `PartialEq`: they compare by their debug form.
    fn same<T: std::fmt::Debug>(a: &T, b: &T) {
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }

    fn text(t: &str) -> (PartKind, Value) {
        (PartKind::Text, json!({ "text": t }))
    }

    #[test]
    fn failed_turns_are_left_out_and_every_call_gets_a_result() {
        let history = vec![
            message(MessageRole::User, MessageStatus::Completed, vec![text("list the files")]),
            message(MessageRole::Assistant, MessageStatus::Error, vec![text("half an answer")]),
            message(
                MessageRole::Assistant,
                MessageStatus::Completed,
                vec![
                    (PartKind::StepStart, json!({})),
                    (PartKind::Reasoning, json!({ "text": "look first", "signature": "sig" })),
                    (
                        PartKind::Tool,
                        ToolPart::pending("c1", "list", json!({ "path": "." }))
                            .running(1)
                            .completed(2, "a.txt".into(), None, None)
                            .to_value(),
                    ),
                    (PartKind::Tool, ToolPart::pending("c2", "shell", json!("not json")).running(1).to_value()),
                    (PartKind::Tool, ToolPart::pending("c3", "read", json!({})).failed(3, "denied".into(), None).to_value()),
                    (PartKind::StepFinish, json!({ "finish": "tool-calls" })),
                ],
            ),
        ];
        let messages = provider_messages(&history, usize::MAX);
        assert_eq!(messages.len(), 3, "{messages:?}");
        same(&messages[0], &Message { role: Role::User, parts: vec![ContentPart::Text("list the files".into())] });
        let Message { role: Role::Assistant, parts } = &messages[1] else { panic!("{:?}", messages[1]) };
        same(&parts[0], &ContentPart::Reasoning(("look first".into(), Some("sig".into()))));
        same(&parts[1], &ContentPart::ToolCall(ToolCall { id: "c1".into(), name: "list".into(), arguments: r#"{"path":"."}"#.into() }));
        same(&parts[2], &ContentPart::ToolCall(ToolCall { id: "c2".into(), name: "shell".into(), arguments: "not json".into() }));
        let results: Vec<(String, String, bool)> = messages[2]
            .parts
            .iter()
            .map(|p| match p {
                ContentPart::ToolResult(r) => (r.call_id.clone(), r.content.clone(), r.is_error),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            results,
            vec![("c1".into(), "a.txt".into(), false), ("c2".into(), UNFINISHED.into(), true), ("c3".into(), "denied".into(), true)]
        );
    }

    fn with_id(mut message: MessageRecord, id: &str) -> MessageRecord {
        message.id = id.into();
        message
    }

    #[test]
    fn after_a_compaction_its_summary_stands_in_for_what_it_covers_and_long_outputs_are_cut() {
        let done = |output: &str| ToolPart::pending("c1", "read", json!({})).running(1).completed(2, output.into(), None, None).to_value();
        let history = vec![
            with_id(message(MessageRole::User, MessageStatus::Completed, vec![text("first prompt")]), "m1"),
            with_id(message(MessageRole::Assistant, MessageStatus::Completed, vec![text("first answer")]), "m2"),
            with_id(message(MessageRole::User, MessageStatus::Completed, vec![text("second prompt")]), "m3"),
            with_id(message(MessageRole::Assistant, MessageStatus::Completed, vec![(PartKind::Tool, done(&"x".repeat(5_000)))]), "m4"),
            with_id(
                message(
                    MessageRole::Assistant,
                    MessageStatus::Completed,
                    vec![(PartKind::Compaction, json!({ "summary": "the user asked twice", "through": "m2" }))],
                ),
                "m5",
            ),
            with_id(message(MessageRole::User, MessageStatus::Completed, vec![text("third prompt")]), "m6"),
        ];
        let messages = provider_messages(&history, 1_000);
        let texts: Vec<String> = messages
            .iter()
            .flat_map(|m| &m.parts)
            .map(|p| match p {
                ContentPart::Text(t) => t.clone(),
                ContentPart::ToolCall(c) => format!("call {}", c.name),
                ContentPart::ToolResult(r) => format!("result {}", r.content.len()),
                ContentPart::Reasoning(_) => "reasoning".into(),
            })
            .collect();
        assert_eq!(messages.len(), 4, "summary and second prompt as one user message, the call, its result, the third prompt");
        assert!(texts[0].contains("<summary>\nthe user asked twice\n</summary>") && texts[1] == "second prompt", "{texts:?}");
        assert!(!texts.iter().any(|t| t.contains("first")), "what the summary covers is not sent: {texts:?}");
        assert_eq!(texts[2], "call read");
        let ContentPart::ToolResult(result) = &messages[2].parts[0] else { panic!() };
        assert!(result.content.len() < 1_400 && result.content.contains("bytes of 5000 cut here"), "{}", result.content);
        assert_eq!((messages[3].role == Role::User, texts[4].as_str()), (true, "third prompt"));
    }

    #[test]
    fn a_turn_that_said_nothing_adds_no_message() {
        assert!(assistant_message("", None, "", &[]).is_none());
        let said = assistant_message("", None, "done", &[]).unwrap();
        same(&said.parts, &vec![ContentPart::Text("done".into())]);
    }

    #[test]
    fn an_activity_tells_the_length_limit_and_the_filter_and_otherwise_stops() {
        assert_eq!(turn_finish(Some(FinishReason::ToolCalls)), Finish::ToolCalls);
        assert_eq!(turn_finish(None), Finish::Stop);
        assert_eq!(activity_finish(turn_finish(Some(FinishReason::Length))), Finish::Length);
        assert_eq!(activity_finish(turn_finish(Some(FinishReason::ContentFilter))), Finish::ContentFilter);
        assert_eq!(activity_finish(turn_finish(Some(FinishReason::Other))), Finish::Stop);
        assert_eq!(activity_finish(turn_finish(Some(FinishReason::ToolCalls))), Finish::Stop);
    }

    #[test]
    fn tokens_cost_their_price_per_million() {
        let price = ModelPrice { input: 3.0, output: 15.0, cache_read: 0.3, cache_write: 3.75 };
        let tokens = Tokens { input: 1_000_000, output: 2_000, cache_read: 10_000, cache_write: 0 };
        assert!((cost(&price, tokens) - (3.0 + 0.03 + 0.003)).abs() < 1e-12);
        assert_eq!(parse_arguments(r#"{"a":1}"#), json!({ "a": 1 }));
        assert_eq!(parse_arguments("{oops"), json!("{oops"));
    }
}
