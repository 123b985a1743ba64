//! Every request gets an id (the client's `x-request-id` when it sends a sane one), a
//! tracing span carrying it and the session id when the path names one, a log line when it
//! ends, and its count and duration in the metrics by route and status.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::error::ApiError;
use super::state::AppState;

/// The header carrying the request id, both ways.
pub const REQUEST_ID: &str = "x-request-id";

/// Wraps a request in its span, logs it and counts it.
pub async fn observe_request(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| crate::store::sessions::new_id("req"));
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let method = request.method().clone();
    let session = session_in_path(request.uri().path());
    let span =
        tracing::info_span!("request", request_id = %id, method = %method, route = %route, session_id = session.as_deref().unwrap_or(""));
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    let elapsed = started.elapsed();
    span.in_scope(|| {
        let ms = elapsed.as_secs_f64() * 1000.0;
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), ms, "request failed");
        } else {
            tracing::info!(status = status.as_u16(), ms, "request");
        }
    });
    state.metrics().record_request(&route, method.as_str(), status.as_u16(), elapsed);
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// The session id of `/sessions/{id}...`.
fn session_in_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/sessions/")?;
    let id = rest.split('/').next()?;
    (!id.is_empty()).then(|| id.to_string())
}

/// A panic in a handler: a 500 with the error body (the server keeps running).
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
    tracing::error!(panic = %what, "a handler panicked");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error: the request handler failed; see the server log").into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_session_id_comes_from_the_path() {
        assert_eq!(super::session_in_path("/sessions/ses_1/stream").as_deref(), Some("ses_1"));
        assert_eq!(super::session_in_path("/sessions/ses_1").as_deref(), Some("ses_1"));
        assert_eq!(super::session_in_path("/sessions"), None);
        assert_eq!(super::session_in_path("/events"), None);
    }
}
