//! Event streams: one session's, or the whole server's.

use std::collections::HashSet;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::agent::AgentRuntime;
use crate::server::error::{ApiError, ErrorBody};
use crate::server::extract::ApiPath;
use crate::server::sse::{self, StreamQuery, StreamSpec};
use crate::server::state::{AppState, Running};

type QueryResult = Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>;

fn query(q: QueryResult) -> Result<StreamQuery, ApiError> {
    q.map(|Query(q)| q).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))
}

/// A session's events as Server-Sent Events: every event after `Last-Event-ID` (or
/// `?after`) from the log, then live. Types: `status`, `output`, `tool_call`,
/// `tool_result`, `error`, `complete`, the log's own (`message.created`, `part.delta`,
/// `permission.asked`, `usage`, ...), `heartbeat` (no id) and `reconnect` (the stream fell
/// behind: reconnect with `Last-Event-ID`).
#[utoipa::path(get, path = "/sessions/{id}/stream", tag = "events",
    params(("id" = String, Path, description = "The session"), ("Last-Event-ID" = Option<i64>, Header, description = "Replay after this id"), StreamQuery),
    responses((status = 200, content_type = "text/event-stream", body = String), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn session_stream(
    State(state): State<AppState>,
    Running(runtime): Running,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    q: QueryResult,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let after = sse::start_after(&headers, &q)?;
    let types = sse::type_filter(&q)?;
    runtime.store().session(&id).await?;
    Ok(stream(&state, &runtime, Some(id), after, types))
}

/// Every event of the server (sessions, and later plugins, tools and models) as
/// Server-Sent Events, with the same framing and replay as a session's stream.
#[utoipa::path(get, path = "/events", tag = "events",
    params(("Last-Event-ID" = Option<i64>, Header, description = "Replay after this id"), StreamQuery),
    responses((status = 200, content_type = "text/event-stream", body = String), (status = 400, body = ErrorBody)))]
pub async fn all_events(
    State(state): State<AppState>,
    Running(runtime): Running,
    headers: HeaderMap,
    q: QueryResult,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let after = sse::start_after(&headers, &q)?;
    let types = sse::type_filter(&q)?;
    Ok(stream(&state, &runtime, None, after, types))
}

/// The SSE response following one session (or all), counted as a subscriber.
fn stream(state: &AppState, runtime: &AgentRuntime, session: Option<String>, after: i64, types: Option<HashSet<String>>) -> Response {
    let kind = if session.is_some() { "session" } else { "events" };
    let spec = StreamSpec {
        session,
        after,
        types,
        heartbeat: state.settings().heartbeat,
        stop: state.shutdown_token(),
        guard: state.metrics().subscriber(kind),
    };
    sse::respond(runtime.store().clone(), spec).into_response()
}
