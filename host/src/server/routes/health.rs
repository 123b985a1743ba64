//! Health, readiness and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::server::error::ApiError;
use crate::server::state::AppState;

/// `{"status": "ok"}`, or readiness.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, `ready` or `not ready`.
    pub status: &'static str,
    /// Why it is not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Workspace files that are there but not applied, because the operator has not trusted
    /// their content; each names the command that reviews and trusts it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub untrusted: Vec<crate::trust::UntrustedFile>,
}

impl Health {
    fn status(status: &'static str) -> Self {
        Health { status, error: None, untrusted: Vec::new() }
    }
}

/// The process answers (at once, even while plugins load).
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health::status("ok"))
}

/// Same as `/healthz`.
#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health::status("ok"))
}

/// Ready to run sessions: plugins loaded, the database writable, the workspace accessible.
#[utoipa::path(get, path = "/ready", tag = "health", responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn ready(State(state): State<AppState>) -> Response {
    match state.readiness().await {
        Ok(()) => {
            let untrusted = state.app().map(|app| app.untrusted()).unwrap_or_default();
            Json(Health { untrusted, ..Health::status("ready") }).into_response()
        }
        Err(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(Health { error: Some(reason), ..Health::status("not ready") })).into_response()
        }
    }
}

/// Prometheus metrics, in the text format.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let store = state.runtime().map(|r| r.store().clone());
    let text = state.metrics().render(store.as_ref()).await.map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response())
}
