//! The sequenced event log as live subscribers see it: every state change is an [`Event`]
//! with a global sequence number and a per-session one, stored in the same transaction as
//! the change (see [`crate::store`]) and published here after the commit.

use serde::Serialize;
use tokio::sync::broadcast;

/// One event of the log.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Event {
    /// Global sequence number, increasing without gaps in commit order.
    pub seq: i64,
    /// The session it belongs to, if any.
    pub session_id: Option<String>,
    /// Sequence number within the session (0 for events outside a session).
    pub session_seq: i64,
    /// Its type, e.g. `session.created`, `part.delta`, `permission.asked`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Its data.
    pub data: serde_json::Value,
}

/// Every type of event the log holds: a session's (the first group) and the server's.
/// Stream filters (`?types=`) are checked against this list.
pub const TYPES: &[&str] = &[
    "session.created",
    "session.updated",
    "session.status",
    "session.error",
    "input.admitted",
    "input.cancelled",
    "input.failed",
    "message.created",
    "message.completed",
    "part.created",
    "part.updated",
    "part.delta",
    "tool.state",
    "tool.output",
    "usage",
    "permission.asked",
    "permission.replied",
    "activity.completed",
    "hook.failed",
    // The server's
    "plugin.loading",
    "plugin.loaded",
    "plugin.reloaded",
    "plugin.failed",
    "plugin.unloaded",
    "plugin.shadowed",
    "tool.added",
    "tool.changed",
    "tool.removed",
    "provider.added",
    "provider.removed",
    "model.added",
    "model.removed",
    "config.changed",
    "config.rejected",
    "hook.added",
    "hook.removed",
    "workspace.untrusted",
];

/// The in-process bus live subscribers listen on. A subscriber that falls behind by more
/// than the buffer misses events and is told so (`RecvError::Lagged`); it then replays the
/// gap from the store by sequence number.
#[derive(Debug, Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Event>,
}

impl EventBus {
    /// A bus buffering `capacity` events per subscriber.
    pub fn new(capacity: usize) -> Self {
        EventBus { sender: broadcast::channel(capacity).0 }
    }

    /// Publishes committed events.
    pub fn publish(&self, events: Vec<Event>) {
        for event in events {
            let _ = self.sender.send(event);
        }
    }

    /// A new live subscription.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
