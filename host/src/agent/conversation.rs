//! The conversation as the provider sees it, built from the stored history, and the small
//! rules of a turn: a call's arguments as JSON, how a turn and an activity finish, and what
//! tokens cost. Pure functions: no store, no plugins.

use serde_json::Value;

use crate::runtime::provider::{CompletionRequest, ContentPart, FinishReason, Message, ModelPrice, Role, ToolCall, ToolResult};
use crate::store::model::{Finish, MessageRole, MessageStatus, PartKind, ToolPart, ToolState};
use crate::store::sessions::{MessageRecord, Tokens};

/// What the model is told of a call that never finished.
const UNFINISHED: &str = "interrupted: the call did not finish";

/// The conversation as the provider sees it. Failed attempts are left out; every tool call
/// gets a result (an unfinished one is reported as interrupted).
pub fn provider_messages(history: &[MessageRecord]) -> Vec<Message> {
    let mut out = Vec::new();
    for message in history.iter().filter(|m| m.status != MessageStatus::Error) {
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
                            let (call, result) = call_and_result(tool);
                            parts.push(ContentPart::ToolCall(call));
                            results.push(ContentPart::ToolResult(result));
                        }
                        PartKind::StepStart | PartKind::StepFinish => {}
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

/// What `tokens` cost at `price`, in US dollars.
pub(super) fn cost(price: &ModelPrice, tokens: Tokens) -> f64 {
    (tokens.input as f64 * price.input
        + tokens.output as f64 * price.output
        + tokens.cache_read as f64 * price.cache_read
        + tokens.cache_write as f64 * price.cache_write)
        / 1_000_000.0
}

/// Characters a token is taken to hold when a provider reports no usage.
const CHARS_PER_TOKEN: usize = 4;

/// The characters of what a request sends: the system prompt, every part of every message,
/// and the tools offered.
pub(super) fn request_chars(request: &CompletionRequest) -> usize {
    let parts = request.messages.iter().flat_map(|m| &m.parts).map(|part| match part {
        ContentPart::Text(text) => text.len(),
        ContentPart::Reasoning((text, _)) => text.len(),
        ContentPart::ToolCall(call) => call.name.len() + call.arguments.len(),
        ContentPart::ToolResult(result) => result.content.len(),
    });
    let tools = request.tools.iter().map(|t| t.name.len() + t.description.len() + t.parameters_schema.len());
    request.system.as_ref().map_or(0, String::len) + parts.sum::<usize>() + tools.sum::<usize>()
}

/// The tokens of a turn whose provider reported no usage (a stream cut before its usage
/// came, a server that sends none), estimated from what was sent (`sent` characters) and
/// what streamed back (`streamed`): the tokens were billed all the same. A turn that
/// failed before anything streamed back is counted as nothing.
pub(super) fn estimated_tokens(sent: usize, streamed: usize) -> Tokens {
    if streamed == 0 {
        return Tokens::default();
    }
    Tokens { input: sent.div_ceil(CHARS_PER_TOKEN) as u64, output: streamed.div_ceil(CHARS_PER_TOKEN) as u64, ..Tokens::default() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sessions::PartRecord;

    #[test]
    fn a_turn_without_reported_usage_is_estimated_from_what_was_sent_and_what_came_back() {
        let request = CompletionRequest {
            model: String::new(),
            system: Some("s".repeat(40)),
            messages: vec![Message { role: Role::User, parts: vec![ContentPart::Text("u".repeat(20))] }],
            tools: Vec::new(),
            temperature: None,
            max_output_tokens: None,
            options: None,
        };
        assert_eq!(request_chars(&request), 60);
        assert_eq!(estimated_tokens(60, 9), Tokens { input: 15, output: 3, ..Tokens::default() });
        assert_eq!(estimated_tokens(60, 0), Tokens::default(), "nothing came back: nothing to count");
    }
    use serde_json::json;

    fn message(role: MessageRole, status: MessageStatus, parts: Vec<(PartKind, Value)>) -> MessageRecord {
        MessageRecord {
            id: "msg".into(),
            role,
            status,
            model: None,
            error: None,
            tokens: Tokens::default(),
            cost: 0.0,
            created_at: 0,
            parts: parts.into_iter().map(|(kind, data)| PartRecord { id: "prt".into(), kind, data }).collect(),
        }
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
        let messages = provider_messages(&history);
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
