//! Permission questions the agent asks, and their answers.

use axum::Json;
use serde::{Deserialize, Serialize};

use crate::agent::permission::{PendingAsk, Reply};
use crate::server::error::{ApiError, ErrorBody};
use crate::server::extract::{ApiJson, ApiPath};
use crate::server::state::Running;

/// Questions waiting for an answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PermissionList {
    /// Oldest first.
    pub permissions: Vec<PendingAsk>,
}

/// Questions waiting for an answer (each also went out as a `permission.asked` event).
#[utoipa::path(get, path = "/permissions", tag = "permissions", responses((status = 200, body = PermissionList)))]
pub async fn list(Running(runtime): Running) -> Json<PermissionList> {
    Json(PermissionList { permissions: runtime.broker().pending() })
}

/// An answer.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PermissionReply {
    /// `once`: allow this call; `always`: allow it and remember for the session; `reject`.
    pub reply: ReplyKind,
    /// With `reject`: what the model is told.
    pub message: Option<String>,
}

/// The kinds of answer.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReplyKind {
    /// Allow this call.
    Once,
    /// Allow, and add an allow rule for the session.
    Always,
    /// Refuse.
    Reject,
}

/// The answer that was given.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Replied {
    /// The question.
    pub id: String,
    /// The answer.
    pub reply: ReplyKind,
}

/// Answers a question.
#[utoipa::path(post, path = "/permissions/{id}", tag = "permissions", params(("id" = String, Path, description = "The question")),
    request_body = PermissionReply, responses((status = 200, body = Replied), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn reply(
    Running(runtime): Running,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PermissionReply>,
) -> Result<Json<Replied>, ApiError> {
    if body.message.is_some() && !matches!(body.reply, ReplyKind::Reject) {
        return Err(ApiError::invalid_field("message", "only goes with `reject`"));
    }
    let answer = match body.reply {
        ReplyKind::Once => Reply::Once,
        ReplyKind::Always => Reply::Always,
        ReplyKind::Reject => Reply::Reject(body.message),
    };
    if !runtime.broker().reply(&id, answer) {
        return Err(ApiError::not_found("permission question", &id));
    }
    Ok(Json(Replied { id, reply: body.reply }))
}
