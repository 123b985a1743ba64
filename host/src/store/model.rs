//! The states of the domain, typed: session and message statuses, message roles, part
//! kinds, tool states and how turns and activities finish, each with its text form defined
//! once (by `text_enum!`) for JSON, SQL and display; and the `tool` part as a type.
//! The text forms are the ones stored since the first schema, so stored data reads as is.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An enum whose variants each have one text form, used for serde, SQL and `Display`,
/// with an OpenAPI schema listing the forms.
macro_rules! text_enum {
    ($(#[$meta:meta])* pub enum $name:ident ($noun:literal) { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// Its text form.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The variant whose text form is `text`.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }

            fn unknown(text: &str) -> String {
                let known: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                format!("`{text}` is not {} (known: {})", $noun, known.join(", "))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
                Self::parse(&text).ok_or_else(|| serde::de::Error::custom(Self::unknown(&text)))
            }
        }

        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                let text = value.as_str()?;
                Self::parse(text).ok_or_else(|| rusqlite::types::FromSqlError::Other(Self::unknown(text).into()))
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some(Self::ALL.iter().map(|v| v.as_str())))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

text_enum! {
    /// What a session is doing.
    pub enum SessionStatus ("a session status") {
        /// Nothing runs.
        Idle = "idle",
        /// An input waits for a free slot under `[sessions] max_concurrent`.
        Queued = "queued",
        /// An activity runs.
        Busy = "busy",
        /// A provider turn failed and is tried again after a delay.
        Retry = "retry",
    }
}

text_enum! {
    /// Who wrote a message.
    pub enum MessageRole ("a message role") {
        /// The user (a prompt).
        User = "user",
        /// The model (one provider turn).
        Assistant = "assistant",
    }
}

text_enum! {
    /// Where a message stands.
    pub enum MessageStatus ("a message status") {
        /// Being written.
        Running = "running",
        /// Written whole.
        Completed = "completed",
        /// Its provider turn failed; it is left out of the conversation.
        Error = "error",
        /// Its activity was cancelled or timed out.
        Aborted = "aborted",
        /// Plugboard stopped (a shutdown, a crash) before it was written whole.
        Interrupted = "interrupted",
    }
}

text_enum! {
    /// What a part of a message holds.
    pub enum PartKind ("a part kind") {
        /// Text (`{"text": …}`).
        Text = "text",
        /// The model's reasoning (`{"text": …, "signature": …}`).
        Reasoning = "reasoning",
        /// A tool call ([`ToolPart`]).
        Tool = "tool",
        /// The start of a provider turn.
        StepStart = "step-start",
        /// The end of a provider turn (`{"finish": …, "tokens": …, "cost": …}`).
        StepFinish = "step-finish",
        /// A summary of the conversation up to a message, sent in place of it
        /// (`{"summary": …, "through": <message id>, "reason": …, "tokens_before": …,
        /// "tokens_after": …}`); see [`crate::agent::compaction`].
        Compaction = "compaction",
        /// The files a turn's tool calls changed, each with its diff
        /// (`{"files": [{"path", "change", "before", "after", "diff"}]}`); see
        /// [`crate::snapshot`].
        Patch = "patch",
    }
}

text_enum! {
    /// Where a tool call stands: `pending` → `running` → `completed` or `error`.
    pub enum ToolState ("a tool state") {
        /// Asked for by the model, not started (waiting for the rules, a hook or the user).
        Pending = "pending",
        /// Running.
        Running = "running",
        /// Ended with output.
        Completed = "completed",
        /// Refused, failed or interrupted.
        Error = "error",
    }
}

impl ToolState {
    /// Whether the call has ended.
    pub fn is_final(self) -> bool {
        matches!(self, ToolState::Completed | ToolState::Error)
    }
}

text_enum! {
    /// How a provider turn or an activity ended.
    pub enum Finish ("a finish reason") {
        /// The model stopped.
        Stop = "stop",
        /// The model reached its output limit.
        Length = "length",
        /// The provider filtered the answer.
        ContentFilter = "content-filter",
        /// The model called tools (a turn; the activity goes on).
        ToolCalls = "tool-calls",
        /// The provider gave another reason.
        Other = "other",
        /// The agent's `max_steps` were used up.
        StepLimit = "step-limit",
        /// The activity failed.
        Error = "error",
        /// The activity was cancelled.
        Cancelled = "cancelled",
        /// The activity ran past `[sessions] timeout_seconds`.
        Timeout = "timeout",
        /// Plugboard shut down during the activity.
        Interrupted = "interrupted",
    }
}

text_enum! {
    /// How an input is delivered when the session is busy.
    pub enum Delivery ("a delivery (`steer` or `queue`)") {
        /// Join the running activity at its next provider-turn boundary.
        Steer = "steer",
        /// Wait for the running activity to end, then open a new one (first in, first out).
        Queue = "queue",
    }
}

text_enum! {
    /// Why a compaction ran.
    pub enum CompactionReason ("a compaction reason") {
        /// The request passed `[sessions] compact_at` of the model's budget.
        Auto = "auto",
        /// Someone asked (`plugboard session compact`, `POST /sessions/{id}/compact`).
        Requested = "requested",
    }
}

text_enum! {
    /// What an inbox input asks for.
    pub enum InputKind ("an input kind (`prompt` or `compact`)") {
        /// A prompt: it becomes a user message and opens (or joins) an activity.
        Prompt = "prompt",
        /// Compact the conversation, in turn with the session's other inputs.
        Compact = "compact",
        /// Revert the session to the message its prompt names: the files its later turns
        /// changed are put back, and those turns are marked reverted.
        Revert = "revert",
    }
}

text_enum! {
    /// Where an inbox input stands.
    pub enum InputStatus ("an input status") {
        /// Waiting to be taken.
        Pending = "pending",
        /// Taken: it became a user message.
        Consumed = "consumed",
        /// It could not start an activity.
        Failed = "failed",
        /// Dropped by a cancel.
        Cancelled = "cancelled",
    }
}

text_enum! {
    /// What a permission rule decides.
    pub enum Action ("a permission action") {
        /// Run the call.
        Allow = "allow",
        /// Pause the call and ask.
        Ask = "ask",
        /// Refuse the call.
        Deny = "deny",
    }
}

/// A permission rule as written in `plugboard.toml` (`{ tool = "shell", pattern = "git *",
/// action = "allow" }`) and as a session keeps the ones its `always` answers added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Tool name glob.
    pub tool: String,
    /// Glob on the call's main argument (default `*`).
    #[serde(default = "any")]
    pub pattern: String,
    /// The decision.
    pub action: Action,
}

fn any() -> String {
    "*".into()
}

/// When a tool call started and ended (ms since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolTime {
    /// When it started (or was refused).
    pub start: i64,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<i64>,
}

/// The content of a `tool` part: one call, as the model asked for it and as it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolPart {
    /// The provider's id of the call.
    pub call_id: String,
    /// The tool.
    pub tool: String,
    /// Where it stands.
    pub state: ToolState,
    /// Its arguments: JSON, or the raw text when the model sent no JSON.
    pub input: Value,
    /// What it returned (`completed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Its title (`completed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Its structured metadata (`completed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Why it failed, as the model is told (`error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For the operator: what would grant what was denied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// When it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<ToolTime>,
}

impl ToolPart {
    /// A call the model asked for, not started.
    pub fn pending(call_id: &str, tool: &str, input: Value) -> Self {
        ToolPart {
            call_id: call_id.into(),
            tool: tool.into(),
            state: ToolState::Pending,
            input,
            output: None,
            title: None,
            metadata: None,
            error: None,
            detail: None,
            time: None,
        }
    }

    /// This call, started at `start`.
    pub fn running(mut self, start: i64) -> Self {
        self.state = ToolState::Running;
        self.time = Some(ToolTime { start, end: None });
        self
    }

    /// This call, ended at `end` with `output`.
    pub fn completed(mut self, end: i64, output: String, title: Option<String>, metadata: Option<Value>) -> Self {
        self.state = ToolState::Completed;
        (self.output, self.title, self.metadata) = (Some(output), title, metadata.filter(|m| !m.is_null()));
        self.time = Some(ToolTime { start: self.started_or(end), end: Some(end) });
        self
    }

    /// This call, ended at `end` with `error` (and the operator's `detail`, when it differs).
    pub fn failed(mut self, end: i64, error: String, detail: Option<String>) -> Self {
        self.state = ToolState::Error;
        self.detail = detail.filter(|d| *d != error);
        self.error = Some(error);
        self.time = Some(ToolTime { start: self.started_or(end), end: Some(end) });
        self
    }

    fn started_or(&self, now: i64) -> i64 {
        self.time.map_or(now, |t| t.start)
    }

    /// Its JSON form, as stored in the part's `data`.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a tool part is plain data")
    }

    /// The tool part stored as `data`; `None` when it is not one (data of another kind, or
    /// written by something else).
    pub fn from_value(data: &Value) -> Option<Self> {
        ToolPart::deserialize(data).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_state_has_one_text_form_for_json_and_sql() {
        for status in MessageStatus::ALL {
            let text = serde_json::to_value(status).unwrap();
            assert_eq!(text, status.as_str());
            assert_eq!(serde_json::from_value::<MessageStatus>(text).unwrap(), *status);
        }
        assert_eq!(PartKind::StepFinish.to_string(), "step-finish");
        assert_eq!(Finish::ContentFilter.as_str(), "content-filter");
        let err = serde_json::from_value::<ToolState>(json!("done")).unwrap_err().to_string();
        assert!(err.contains("`done` is not a tool state") && err.contains("pending, running, completed, error"), "{err}");
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let back: SessionStatus = conn.query_row("SELECT ?1", [SessionStatus::Queued], |r| r.get(0)).unwrap();
        assert_eq!(back, SessionStatus::Queued);
        let bad = conn.query_row("SELECT 'asleep'", [], |r| r.get::<_, SessionStatus>(0)).unwrap_err().to_string();
        assert!(bad.contains("`asleep` is not a session status"), "{bad}");
    }

    #[test]
    fn a_tool_part_reads_what_earlier_versions_stored_and_writes_it_back_the_same() {
        let stored = json!({
            "call_id": "c1", "tool": "read", "input": { "path": "a.txt" }, "state": "completed",
            "output": "hi", "title": null, "metadata": null, "time": { "start": 5, "end": 9 },
        });
        let part = ToolPart::from_value(&stored).unwrap();
        assert_eq!(
            (part.state, part.output.as_deref(), part.title.as_deref(), part.metadata.as_ref()),
            (ToolState::Completed, Some("hi"), None, None)
        );
        assert_eq!(
            part.to_value(),
            json!({ "call_id": "c1", "tool": "read", "input": { "path": "a.txt" }, "state": "completed", "output": "hi", "time": { "start": 5, "end": 9 } })
        );
        assert_eq!(ToolPart::from_value(&json!({ "text": "not a tool part" })), None);
    }

    #[test]
    fn a_tool_part_moves_from_pending_to_an_end_keeping_its_start() {
        let part = ToolPart::pending("c1", "shell", json!({ "command": "ls" }));
        assert_eq!(part.to_value(), json!({ "call_id": "c1", "tool": "shell", "state": "pending", "input": { "command": "ls" } }));
        let ended = part.clone().running(10).failed(20, "denied".into(), Some("denied; grant it with …".into()));
        assert_eq!((ended.state, ended.time), (ToolState::Error, Some(ToolTime { start: 10, end: Some(20) })));
        assert_eq!(ended.detail.as_deref(), Some("denied; grant it with …"));
        let refused = part.clone().failed(30, "refused".into(), Some("refused".into()));
        assert_eq!((refused.time, refused.detail), (Some(ToolTime { start: 30, end: Some(30) }), None));
        let done = part.running(1).completed(2, "out".into(), Some("t".into()), Some(json!({ "path": "a" })));
        assert!(done.state.is_final() && done.metadata == Some(json!({ "path": "a" })));
    }
}
