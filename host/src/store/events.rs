//! The sequenced event log as live subscribers see it: every state change is an [`Event`]
//! with a global sequence number and a per-session one, stored in the same transaction as
//! the change (see [`crate::store`]) and published here after the commit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
    "session.model",
    "session.compacting",
    "session.compacted",
    "session.compaction_failed",
    "session.imported",
    "session.deleted",
    "session.reverted",
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
    "mcp.server.started",
    "mcp.server.crashed",
    "mcp.server.failed",
    "mcp.server.stopped",
];

/// The in-process bus live subscribers listen on: one channel for observers of the whole
/// log, and one per session for those that follow a single session (its SSE stream, `run`),
/// so that an event wakes and is copied for only the subscribers that want it: with a
/// thousand sessions streaming, each stream sees its own session's events, not everyone's.
/// A subscriber that falls behind by more than its channel's buffer misses events and is
/// told so (`RecvError::Lagged`); it then replays the gap from the store by sequence number.
/// An event is shared by its subscribers ([`Arc`]), not copied for each.
#[derive(Debug, Clone)]
pub struct EventBus {
    all: broadcast::Sender<Arc<Event>>,
    sessions: Arc<Mutex<HashMap<String, broadcast::Sender<Arc<Event>>>>>,
    session_capacity: usize,
}

/// Events buffered per subscriber of one session: a session's stream falls behind only by
/// that session's own events, so this can be much smaller than the whole log's buffer (a
/// channel allocates its buffer whole, and a thousand sessions may be followed at once).
const SESSION_CAPACITY: usize = 512;

/// What a subscriber receives, from the whole log or from one session.
pub struct Subscription {
    receiver: broadcast::Receiver<Arc<Event>>,
    /// The session followed, whose channel is dropped with its last subscriber.
    session: Option<(String, EventBus)>,
}

impl Subscription {
    /// The next event, in commit order; `Lagged` when some were missed.
    pub async fn recv(&mut self) -> Result<Arc<Event>, broadcast::error::RecvError> {
        self.receiver.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Result<Arc<Event>, broadcast::error::TryRecvError> {
        self.receiver.try_recv()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let Some((session, bus)) = &self.session else { return };
        let mut sessions = bus.sessions.lock().expect("not poisoned");
        // Under the lock no one subscribes meanwhile; this receiver is still counted.
        if sessions.get(session).is_some_and(|sender| sender.receiver_count() <= 1) {
            sessions.remove(session);
        }
    }
}

impl EventBus {
    /// A bus buffering `capacity` events per subscriber of the whole log.
    pub fn new(capacity: usize) -> Self {
        EventBus { all: broadcast::channel(capacity).0, sessions: Arc::default(), session_capacity: SESSION_CAPACITY }
    }

    /// Publishes committed events, in order.
    pub fn publish(&self, events: Vec<Event>) {
        let sessions = self.sessions.lock().expect("not poisoned");
        let whole_log = self.all.receiver_count() > 0;
        // A send fails only when no one listens, which is nothing to report.
        for event in events {
            let event = Arc::new(event);
            match event.session_id.as_ref().and_then(|id| sessions.get(id)) {
                Some(follower) => {
                    if whole_log {
                        let _ = self.all.send(event.clone());
                    }
                    let _ = follower.send(event);
                }
                None if whole_log => {
                    let _ = self.all.send(event);
                }
                None => {}
            }
        }
    }

    /// A new subscription to every event.
    pub fn subscribe(&self) -> Subscription {
        Subscription { receiver: self.all.subscribe(), session: None }
    }

    /// A new subscription to the events of `session` only.
    pub fn subscribe_session(&self, session: &str) -> Subscription {
        let mut sessions = self.sessions.lock().expect("not poisoned");
        let receiver = sessions.entry(session.to_string()).or_insert_with(|| broadcast::channel(self.session_capacity).0).subscribe();
        Subscription { receiver, session: Some((session.to_string(), self.clone())) }
    }

    /// Sessions with a channel of their own now (each has a subscriber).
    #[cfg(test)]
    pub(crate) fn followed_sessions(&self) -> usize {
        self.sessions.lock().expect("not poisoned").len()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: i64, session: &str) -> Event {
        Event {
            seq,
            session_id: Some(session.into()),
            session_seq: seq,
            kind: "part.delta".into(),
            timestamp: 0,
            data: serde_json::Value::Null,
        }
    }

    #[tokio::test]
    async fn a_session_follower_never_falls_behind_because_of_other_sessions_events() {
        let bus = EventBus::new(64);
        let mut mine = bus.subscribe_session("mine");
        let mut everything = bus.subscribe();
        bus.publish((1..=10_000).map(|seq| event(seq, "busy")).chain([event(10_001, "mine")]).collect());
        let received = mine.recv().await.expect("not lagged: the busy session's events never reach this channel");
        assert_eq!(received.seq, 10_001);
        assert!(matches!(everything.recv().await, Err(broadcast::error::RecvError::Lagged(_))), "the whole log's subscriber did lag");
    }

    #[tokio::test]
    async fn a_session_follower_gets_its_session_in_order_and_the_whole_log_gets_everything() {
        let bus = EventBus::new(64);
        let mut mine = bus.subscribe_session("a");
        let mut everything = bus.subscribe();
        bus.publish(vec![event(1, "a"), event(2, "b"), event(3, "a")]);
        assert_eq!(mine.recv().await.unwrap().seq, 1);
        assert_eq!(mine.recv().await.unwrap().seq, 3);
        for seq in 1..=3 {
            assert_eq!(everything.recv().await.unwrap().seq, seq);
        }
    }

    #[test]
    fn a_session_channel_lives_as_long_as_its_last_follower() {
        let bus = EventBus::new(64);
        let first = bus.subscribe_session("a");
        let second = bus.subscribe_session("a");
        assert_eq!(bus.followed_sessions(), 1);
        drop(first);
        assert_eq!(bus.followed_sessions(), 1, "one follower is left");
        drop(second);
        assert_eq!(bus.followed_sessions(), 0);
        bus.publish(vec![event(1, "a")]);
        assert_eq!(bus.followed_sessions(), 0, "publishing to an unfollowed session opens no channel");
    }
}
