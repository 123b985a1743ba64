//! The one error shape of the HTTP API: `{"error": "...", "details": {...}, "timestamp": "..."}`
//! with the status that says what kind of failure it is.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use crate::agent::AgentError;
use crate::runtime::provider::CompletionError;

/// An error answered to a client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The status.
    pub status: StatusCode,
    /// What went wrong, in one sentence.
    pub message: String,
    /// Structured details (e.g. `{"field": ..., "reason": ...}`).
    pub details: Value,
}

/// The body of every error.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
    /// Structured details: the field and the reason for invalid input, the id for unknown ones.
    #[schema(value_type = Object)]
    pub details: Value,
    /// When (RFC 3339).
    pub timestamp: String,
}

impl ApiError {
    /// An error with a status and a message, without details.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), details: json!({}) }
    }

    /// 400: `field` is invalid, for `reason`.
    pub fn invalid_field(field: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!("invalid `{field}`: {reason}"),
            details: json!({ "field": field, "reason": reason }),
        }
    }

    /// 404: no `kind` with this id.
    pub fn not_found(kind: &str, id: &str) -> Self {
        ApiError { status: StatusCode::NOT_FOUND, message: format!("no {kind} `{id}`"), details: json!({ kind: id }) }
    }

    /// 500: a fault of the server; the cause is logged and named.
    pub fn internal(message: impl std::fmt::Display) -> Self {
        tracing::error!(error = %message, "request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message.to_string())
    }

    /// Adds details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// Adds one detail to those there are.
    pub fn with_detail(mut self, key: &str, value: Value) -> Self {
        if let Value::Object(details) = &mut self.details {
            details.insert(key.to_string(), value);
        }
        self
    }
}

/// The current time in RFC 3339, with milliseconds.
pub fn rfc3339_now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// A time in ms since the epoch in RFC 3339, with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: self.message, details: self.details, timestamp: rfc3339_now() };
        (self.status, Json(body)).into_response()
    }
}

impl From<AgentError> for ApiError {
    fn from(e: AgentError) -> Self {
        let message = e.to_string();
        match e {
            AgentError::NotFound(id) => ApiError::not_found("session", &id),
            AgentError::UnknownAgent { available, .. } => {
                ApiError::invalid_field("agent", message).with_details(json!({ "field": "agent", "available": available }))
            }
            AgentError::NoModel { available } => {
                ApiError::invalid_field("model_config", message).with_details(json!({ "field": "model_config", "available": available }))
            }
            AgentError::Provider(CompletionError::UnknownModel { model, available }) => {
                ApiError::invalid_field("model_config.model", format!("no model `{model}`"))
                    .with_details(json!({ "field": "model_config.model", "reason": format!("no model `{model}`"), "available": available }))
            }
            AgentError::InvalidInput(reason) => ApiError::invalid_field("prompt", reason),
            AgentError::Invalid(_) => ApiError::new(StatusCode::BAD_REQUEST, message),
            AgentError::InvalidField { field, reason } => ApiError::invalid_field(&field, reason),
            AgentError::Exists(id) => ApiError::new(StatusCode::CONFLICT, message).with_details(json!({ "session_id": id })),
            AgentError::HeldElsewhere { session, owner } => {
                ApiError::new(StatusCode::CONFLICT, message).with_details(json!({ "session_id": session, "owner": owner }))
            }
            AgentError::PromptRejected(r) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
                .with_details(json!({ "field": "prompt", "hook": r.hook, "reason": r.reason })),
            AgentError::ShuttingDown => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message),
            AgentError::Cancelled | AgentError::TimedOut(_) | AgentError::NothingToCompact(_) => {
                ApiError::new(StatusCode::CONFLICT, message)
            }
            AgentError::ContextOverflow { estimated, budget, context, .. } => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
                .with_details(json!({ "estimated_tokens": estimated, "budget_tokens": budget, "context_tokens": context })),
            AgentError::Provider(_) | AgentError::GaveUp { .. } => ApiError::new(StatusCode::BAD_GATEWAY, message),
            AgentError::Config(_) | AgentError::Store(_) | AgentError::Internal(_) => ApiError::internal(message),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        AgentError::from(e).into()
    }
}
