//! Event streams over Server-Sent Events. Each event of the log is one SSE event: `id:` is
//! its sequence number, `event:` its type in the contract's names (see [`sse_type`]), and
//! `data:` the event as stored (JSON with `seq`, `type`, `session_id`, `timestamp`, `data`).
//!
//! A stream starts after `Last-Event-ID` (or `?after=N`): it replays the later events from
//! the store, a page at a time, then continues live from the bus. It subscribes to the bus
//! before reading the store and skips live events it already replayed, so nothing is
//! missed or sent twice. A subscriber that falls behind the bus's buffer is sent a
//! `reconnect` event with its last id and the stream ends; reconnecting replays the rest.
//! A `heartbeat` (without an id) goes out when nothing else did for the heartbeat interval.

use crate::store::model::ToolState;
use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, Sse};
use futures::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::error::ApiError;
use super::metrics::SubscriberGuard;
use crate::store::SessionStore;
use crate::store::events::{Event, now_ms};

/// Events read from the store per page of a replay.
pub const REPLAY_PAGE: usize = 500;

/// The query of a stream.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Start after this sequence number (`Last-Event-ID` wins when both are given).
    pub after: Option<i64>,
    /// Only these types, comma-separated (contract names such as `tool_call`, or log types
    /// such as `part.delta`); every type when absent.
    pub types: Option<String>,
}

/// The contract's name of an event of the log: `session.status` → `status`,
/// `session.error` → `error`, `tool.state` → `tool_call` (running) or `tool_result`
/// (completed, error), `tool.output` → `output`, `activity.completed` → `complete`; every
/// other type keeps its name.
pub fn sse_type(event: &Event) -> &str {
    match event.kind.as_str() {
        "session.status" => "status",
        "session.error" => "error",
        "tool.output" => "output",
        "activity.completed" => "complete",
        "tool.state" => match event.data["data"]["state"].as_str().and_then(ToolState::parse) {
            Some(ToolState::Running) => "tool_call",
            Some(state) if state.is_final() => "tool_result",
            _ => "tool.state",
        },
        other => other,
    }
}

/// Where a stream starts: `Last-Event-ID`, else `?after`, else 0 (everything).
pub fn start_after(headers: &HeaderMap, query: &StreamQuery) -> Result<i64, ApiError> {
    if let Some(value) = headers.get("last-event-id") {
        let text = value.to_str().unwrap_or("");
        return text.trim().parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::invalid_field("Last-Event-ID", format!("`{text}` is not an event id (a sequence number, 0 or more)"))
        });
    }
    match query.after {
        Some(n) if n < 0 => Err(ApiError::invalid_field("after", "must be 0 or more")),
        Some(n) => Ok(n),
        None => Ok(0),
    }
}

/// The contract's names of [`sse_type`], beside the log's own types.
pub const CONTRACT_TYPES: &[&str] = &["status", "error", "tool_call", "tool_result", "output", "complete"];

/// The type filter of `?types=`; a type that no event has is a 400 that names it.
pub fn type_filter(query: &StreamQuery) -> Result<Option<HashSet<String>>, ApiError> {
    let Some(types) = &query.types else { return Ok(None) };
    let known = || CONTRACT_TYPES.iter().chain(crate::store::events::TYPES).copied();
    let mut filter = HashSet::new();
    for name in types.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !known().any(|k| k == name) {
            let hint = crate::suggest::did_you_mean(name, known());
            return Err(ApiError::invalid_field(
                "types",
                format!("no event has the type `{name}`{hint}; the types are {}", known().collect::<Vec<_>>().join(", ")),
            ));
        }
        filter.insert(name.to_string());
    }
    Ok(Some(filter))
}

/// What a stream follows.
pub struct StreamSpec {
    /// One session's events, or all.
    pub session: Option<String>,
    /// Start after this sequence number.
    pub after: i64,
    /// Only these types.
    pub types: Option<HashSet<String>>,
    /// Time between heartbeats.
    pub heartbeat: Duration,
    /// Ends the stream (server shutdown).
    pub stop: CancellationToken,
    /// Counts the stream while it is open.
    pub guard: SubscriberGuard,
}

/// The SSE response of a stream.
pub fn respond(store: SessionStore, spec: StreamSpec) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    Sse::new(follow(store, spec))
}

/// The stream: replay, then live.
pub fn follow(store: SessionStore, spec: StreamSpec) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    async_stream::stream! {
        let StreamSpec { session, after, types, heartbeat, stop, guard } = spec;
        let _guard = guard;
        let wanted = |e: &Event| types.as_ref().is_none_or(|t| t.contains(sse_type(e)) || t.contains(&e.kind));
        let mut live = match &session {
            Some(id) => store.bus().subscribe_session(id),
            None => store.bus().subscribe(),
        };
        let mut last = after;
        loop {
            let page = match store.events_after(last, session.clone(), REPLAY_PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::error!(error = %e, "cannot replay events");
                    yield Ok(fault(&format!("cannot read the event log: {e}"), last));
                    return;
                }
            };
            for event in &page {
                last = event.seq;
                if wanted(event) {
                    yield Ok(frame(event));
                }
            }
            if page.len() < REPLAY_PAGE {
                break;
            }
        }
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = beat.tick() => yield Ok(SseEvent::default().event("heartbeat").data(json!({ "timestamp": now_ms() }).to_string())),
                received = live.recv() => match received {
                    Ok(event) => {
                        if event.seq <= last {
                            continue;
                        }
                        last = event.seq;
                        if wanted(&event) {
                            beat.reset();
                            yield Ok(frame(&event));
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::info!(missed, last, "an event stream fell behind; told to reconnect");
                        let data = json!({ "last_event_id": last, "reason": "this stream fell behind; reconnect with Last-Event-ID to replay what it missed", "timestamp": now_ms() });
                        yield Ok(SseEvent::default().event("reconnect").data(data.to_string()));
                        return;
                    }
                    Err(RecvError::Closed) => return,
                },
            }
        }
    }
}

/// One event of the log as an SSE event.
fn frame(event: &Event) -> SseEvent {
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".into());
    SseEvent::default().id(event.seq.to_string()).event(sse_type(event)).data(data)
}

/// A fault of the stream itself (not of a session): the client should reconnect later.
fn fault(message: &str, last: i64) -> SseEvent {
    SseEvent::default().event("reconnect").data(json!({ "last_event_id": last, "reason": message, "timestamp": now_ms() }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, data: serde_json::Value) -> Event {
        Event { seq: 1, session_id: None, session_seq: 0, kind: kind.into(), timestamp: 0, data }
    }

    #[test]
    fn log_types_map_to_the_contract() {
        assert_eq!(sse_type(&event("session.status", json!({}))), "status");
        assert_eq!(sse_type(&event("tool.state", json!({ "data": { "state": "running" } }))), "tool_call");
        assert_eq!(sse_type(&event("tool.state", json!({ "data": { "state": "error" } }))), "tool_result");
        assert_eq!(sse_type(&event("tool.state", json!({ "data": { "state": "pending" } }))), "tool.state");
        assert_eq!(sse_type(&event("activity.completed", json!({}))), "complete");
        assert_eq!(sse_type(&event("part.delta", json!({}))), "part.delta");
    }

    #[test]
    fn last_event_id_wins_over_after() {
        let mut headers = HeaderMap::new();
        let query = StreamQuery { after: Some(3), types: None };
        assert_eq!(start_after(&headers, &query).unwrap(), 3);
        headers.insert("last-event-id", "7".parse().unwrap());
        assert_eq!(start_after(&headers, &query).unwrap(), 7);
        headers.insert("last-event-id", "x".parse().unwrap());
        assert_eq!(start_after(&headers, &query).unwrap_err().details["field"], "Last-Event-ID");
    }
}
