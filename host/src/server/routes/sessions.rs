//! Sessions: create (optionally with a first prompt), list, read, send input, cancel.

use axum::Json;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use serde_json::json;

use crate::agent::compaction::Compaction;
use crate::agent::undo::Reverted;
use crate::agent::{Admission, AgentError, Delivery, ProviderOverrides, SessionOptions, SessionSpec};
use crate::capability::Secret;
use crate::runtime::provider::CompletionError;
use crate::server::error::{ApiError, ErrorBody, rfc3339};
use crate::server::extract::{ApiJson, ApiPath, ApiQuery};
use crate::server::state::Running;
use crate::store::lifecycle::{Removed, SessionExport};
use crate::store::sessions::{MessageRecord, SessionRecord, Tokens};

/// `POST /sessions`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// The session's id (1 to 128 letters, digits, `_`, `-`, `.`); a new one when absent.
    pub session_id: Option<String>,
    /// A first prompt: its activity starts at once.
    pub prompt: Option<String>,
    /// The agent (default `build`).
    pub agent: Option<String>,
    /// The model and its options; the configured default when absent.
    pub model_config: Option<ModelConfig>,
    /// A title (default: the start of the prompt).
    pub title: Option<String>,
}

/// The model of a session and its options.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The provider plugin's id, e.g. `openai`.
    pub provider: String,
    /// The model's id at that provider.
    pub model: String,
    /// An API key for this session only: kept in memory, never stored, logged or returned.
    #[schema(value_type = Option<String>)]
    pub api_key: Option<Secret>,
    /// The API's base URL for this session only (within the provider's network grant).
    pub api_endpoint: Option<String>,
    /// Sampling temperature (0 to 2).
    pub temperature: Option<f32>,
    /// Most tokens per answer.
    pub max_tokens: Option<u32>,
    /// The tools offered (default: all the agent may use).
    pub enabled_tools: Option<Vec<String>>,
    /// Text added to the agent's system prompt.
    pub system_prompt: Option<String>,
}

/// A session's current status.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionStatus {
    /// The session.
    pub session_id: String,
    /// What it is doing.
    pub status: crate::store::model::SessionStatus,
    /// The agent.
    pub agent: String,
    /// The model, as `provider/model`.
    pub model: String,
    /// Tokens used so far.
    pub tokens: Tokens,
    /// Cost so far, in US dollars.
    pub cost: f64,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// The input the first prompt became (`POST /sessions` with a prompt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_id: Option<String>,
}

impl From<SessionRecord> for SessionStatus {
    fn from(s: SessionRecord) -> Self {
        SessionStatus {
            session_id: s.id,
            status: s.status,
            agent: s.agent,
            model: s.model,
            tokens: s.tokens,
            cost: s.cost,
            updated_at: rfc3339(s.updated_at),
            input_id: None,
        }
    }
}

/// Creates a session; with a `prompt`, its first activity starts at once. Nothing is
/// stored when any field is invalid.
#[utoipa::path(post, path = "/sessions", tag = "sessions", request_body = CreateSession,
    responses((status = 201, body = SessionStatus), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn create(
    Running(runtime): Running,
    ApiJson(body): ApiJson<CreateSession>,
) -> Result<(StatusCode, Json<SessionStatus>), ApiError> {
    if let Some(prompt) = &body.prompt {
        crate::agent::check_prompt(prompt).map_err(|reason| ApiError::invalid_field("prompt", reason))?;
    }
    let (model, options, overrides) = match body.model_config {
        None => (None, SessionOptions::default(), ProviderOverrides::default()),
        Some(m) => {
            if m.provider.is_empty() || m.provider.contains('/') {
                return Err(ApiError::invalid_field("model_config.provider", "must be a provider plugin's id, e.g. `openai`"));
            }
            if m.model.is_empty() {
                return Err(ApiError::invalid_field("model_config.model", "is empty"));
            }
            let options = SessionOptions {
                temperature: m.temperature,
                max_tokens: m.max_tokens,
                enabled_tools: m.enabled_tools,
                system_prompt: m.system_prompt,
            };
            (Some(format!("{}/{}", m.provider, m.model)), options, ProviderOverrides { api_key: m.api_key, api_endpoint: m.api_endpoint })
        }
    };
    let title = body.title.or_else(|| body.prompt.as_deref().map(title_of)).unwrap_or_default();
    let spec = SessionSpec { id: body.session_id, agent: body.agent.unwrap_or_else(|| "build".into()), model, title, options, overrides };
    let record = runtime.create_session_with(spec).await?;
    let mut status = SessionStatus::from(record);
    if let Some(prompt) = body.prompt {
        // The session exists by now: an error (a prompt a hook rejected) says which it is.
        let admission = runtime
            .submit(&status.session_id, &prompt, Delivery::Queue)
            .await
            .map_err(|e| ApiError::from(e).with_detail("session_id", serde_json::json!(status.session_id)))?;
        status.input_id = Some(admission.input_id);
        // The run has started: the answer does not wait for the driver to record it.
        if status.status == crate::store::model::SessionStatus::Idle {
            status.status = runtime.admitted_status();
        }
    }
    Ok((StatusCode::CREATED, Json(status)))
}

/// The first line of a prompt, at most 80 characters.
fn title_of(prompt: &str) -> String {
    let line = prompt.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    line.chars().take(80).collect()
}

/// `?limit&offset` of a list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// At most this many (1 to 500; default 50).
    pub limit: Option<usize>,
    /// Skip this many.
    pub offset: Option<usize>,
    /// Only the sessions of this workspace (its absolute path, as sessions record it).
    pub workspace: Option<String>,
}

/// A page of sessions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionList {
    /// The sessions, newest first.
    pub sessions: Vec<SessionRecord>,
    /// The offset of the next page, when there is one.
    pub next_offset: Option<usize>,
}

/// Sessions, newest first, a page at a time.
#[utoipa::path(get, path = "/sessions", tag = "sessions", params(Page), responses((status = 200, body = SessionList), (status = 400, body = ErrorBody)))]
pub async fn list(Running(runtime): Running, ApiQuery(page): ApiQuery<Page>) -> Result<Json<SessionList>, ApiError> {
    let limit = page.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid_field("limit", "must be between 1 and 500"));
    }
    let offset = page.offset.unwrap_or(0);
    let mut sessions = runtime.store().list_sessions_in(page.workspace, limit + 1, offset).await?;
    let next_offset = (sessions.len() > limit).then_some(offset + limit);
    sessions.truncate(limit);
    Ok(Json(SessionList { sessions, next_offset }))
}

/// One session.
#[utoipa::path(get, path = "/sessions/{id}", tag = "sessions", params(("id" = String, Path, description = "The session")),
    responses((status = 200, body = SessionRecord), (status = 404, body = ErrorBody)))]
pub async fn get(Running(runtime): Running, ApiPath(id): ApiPath<String>) -> Result<Json<SessionRecord>, ApiError> {
    Ok(Json(runtime.store().session(&id).await?))
}

/// A session's status, without streaming.
#[utoipa::path(get, path = "/sessions/{id}/status", tag = "sessions", params(("id" = String, Path, description = "The session")),
    responses((status = 200, body = SessionStatus), (status = 404, body = ErrorBody)))]
pub async fn status(Running(runtime): Running, ApiPath(id): ApiPath<String>) -> Result<Json<SessionStatus>, ApiError> {
    Ok(Json(runtime.store().session(&id).await?.into()))
}

/// A session's messages.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MessageList {
    /// In order, with their parts.
    pub messages: Vec<MessageRecord>,
}

/// A session's history: its messages with their parts.
#[utoipa::path(get, path = "/sessions/{id}/messages", tag = "sessions", params(("id" = String, Path, description = "The session")),
    responses((status = 200, body = MessageList), (status = 404, body = ErrorBody)))]
pub async fn messages(Running(runtime): Running, ApiPath(id): ApiPath<String>) -> Result<Json<MessageList>, ApiError> {
    runtime.store().session(&id).await?;
    Ok(Json(MessageList { messages: runtime.store().history(&id).await? }))
}

/// `POST /sessions/{id}/messages`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendInput {
    /// The prompt.
    pub prompt: String,
    /// `queue` (default): an activity of its own after the running one; `steer`: joins the
    /// running activity at its next provider turn.
    pub delivery: Option<Delivery>,
    /// Switch the session to this model (`provider/model`) first, as `PATCH /sessions/{id}`
    /// does: the activities that start from now on use it.
    pub model: Option<String>,
}

/// Sends a prompt to a session; it is stored before this answers.
#[utoipa::path(post, path = "/sessions/{id}/messages", tag = "sessions", params(("id" = String, Path, description = "The session")), request_body = SendInput,
    responses((status = 202, body = Admission), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn send(
    Running(runtime): Running,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<SendInput>,
) -> Result<(StatusCode, Json<Admission>), ApiError> {
    crate::agent::check_prompt(&body.prompt).map_err(|reason| ApiError::invalid_field("prompt", reason))?;
    if let Some(model) = &body.model {
        switch_model(&runtime, &id, model).await?;
    }
    let admission = runtime.submit(&id, &body.prompt, body.delivery.unwrap_or(Delivery::Queue)).await?;
    Ok((StatusCode::ACCEPTED, Json(admission)))
}

/// `PATCH /sessions/{id}`: what to change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionChange {
    /// The model, as `provider/model`: the session's activities use it from the next one on
    /// (a running one ends on its own), and `session.model` is recorded.
    pub model: Option<String>,
}

/// Changes a session: its model.
#[utoipa::path(patch, path = "/sessions/{id}", tag = "sessions", params(("id" = String, Path, description = "The session")), request_body = SessionChange,
    responses((status = 200, body = SessionRecord), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update(
    Running(runtime): Running,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<SessionChange>,
) -> Result<Json<SessionRecord>, ApiError> {
    match &body.model {
        Some(model) => Ok(Json(switch_model(&runtime, &id, model).await?)),
        None => Ok(Json(runtime.store().session(&id).await?)),
    }
}

/// Switches session `id` to `model`; an unknown model is a 400 on `model` that lists those
/// there are.
async fn switch_model(runtime: &crate::agent::AgentRuntime, id: &str, model: &str) -> Result<SessionRecord, ApiError> {
    runtime.set_model(id, model).await.map_err(|e| match e {
        AgentError::Provider(CompletionError::UnknownModel { available, .. }) => {
            ApiError::invalid_field("model", format!("no model `{model}`"))
                .with_details(json!({ "field": "model", "available": available }))
        }
        other => other.into(),
    })
}

/// Compacts a session's conversation: the older part of what its model sees is summarized
/// and the summary sent in its place from then on; the history stays whole. It runs after
/// the session's queued inputs, and answers when done.
#[utoipa::path(post, path = "/sessions/{id}/compact", tag = "sessions", params(("id" = String, Path, description = "The session")),
    responses((status = 200, body = Compaction), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "Nothing to compact, or cancelled"), (status = 502, body = ErrorBody)))]
pub async fn compact(Running(runtime): Running, ApiPath(id): ApiPath<String>) -> Result<Json<Compaction>, ApiError> {
    Ok(Json(runtime.compact(&id).await?))
}

/// What a cancel did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Cancelled {
    /// The session.
    pub session_id: String,
    /// When (RFC 3339).
    pub cancelled_at: String,
    /// Whether an activity or pending inputs were stopped.
    pub was_running: bool,
}

/// `?purge=true` on `DELETE /sessions/{id}`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// Remove the session with its messages, parts, inbox, rules and events, instead of
    /// only stopping what it does.
    #[serde(default)]
    pub purge: bool,
}

/// What `DELETE /sessions/{id}?purge=true` removed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Deleted {
    /// The session.
    pub session_id: String,
    /// How many rows of each kind were removed.
    pub removed: Removed,
}

/// What `DELETE /sessions/{id}` did: a cancel, or with `purge` a deletion.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum DeleteAnswer {
    /// Without `purge`.
    Cancelled(Cancelled),
    /// With `purge`.
    Deleted(Deleted),
}

/// Cancels what a session is doing (its activity and pending inputs); the history stays.
/// With `?purge=true`, then removes the session and everything it recorded
/// (`session.deleted` is its only event left).
#[utoipa::path(delete, path = "/sessions/{id}", tag = "sessions", params(("id" = String, Path, description = "The session"), DeleteQuery),
    responses((status = 200, body = DeleteAnswer), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancel(
    Running(runtime): Running,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<DeleteQuery>,
) -> Result<Json<DeleteAnswer>, ApiError> {
    if query.purge {
        let removed = runtime.delete(&id).await?;
        return Ok(Json(DeleteAnswer::Deleted(Deleted { session_id: id, removed })));
    }
    let c = runtime.cancel(&id).await?;
    Ok(Json(DeleteAnswer::Cancelled(Cancelled {
        session_id: c.session_id,
        cancelled_at: rfc3339(c.cancelled_at),
        was_running: c.was_running,
    })))
}

/// The session as one JSON document: the session, its messages and parts, its inbox, its
/// rules and its events, as stored. `POST /sessions/import` reads it back.
#[utoipa::path(get, path = "/sessions/{id}/export", tag = "sessions", params(("id" = String, Path, description = "The session")),
    responses((status = 200, body = SessionExport), (status = 404, body = ErrorBody)))]
pub async fn export(Running(runtime): Running, ApiPath(id): ApiPath<String>) -> Result<Json<SessionExport>, ApiError> {
    Ok(Json(runtime.store().export_session(&id).await?))
}

/// Stores an exported session as it was, idle; the inputs it left pending run here. A
/// session whose id (or one of whose messages) is stored already is refused (409).
#[utoipa::path(post, path = "/sessions/import", tag = "sessions", request_body = SessionExport,
    responses((status = 201, body = SessionRecord), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn import(
    Running(runtime): Running,
    ApiJson(doc): ApiJson<SessionExport>,
) -> Result<(StatusCode, Json<SessionRecord>), ApiError> {
    Ok((StatusCode::CREATED, Json(runtime.import(doc).await?)))
}

/// A revert: the message to go back to.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevertRequest {
    /// The message to go back to: the turns after it are undone.
    pub message_id: String,
}

/// Undoes a session's turns after one of its messages: the files they changed (by any
/// tool, commands included) are put back as they were before them, other files are left
/// alone, and the turns are marked reverted (the model no longer sees them). It runs after
/// the session's queued inputs, and answers when done.
#[utoipa::path(post, path = "/sessions/{id}/revert", tag = "sessions", params(("id" = String, Path, description = "The session")), request_body = RevertRequest,
    responses((status = 200, body = Reverted), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revert(
    Running(runtime): Running,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<RevertRequest>,
) -> Result<Json<Reverted>, ApiError> {
    Ok(Json(runtime.revert(&id, &body.message_id).await?))
}

/// A fork: where the new session starts from.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ForkRequest {
    /// The last message to copy (all of them when absent).
    pub message_id: Option<String>,
    /// The new session's id (a new one when absent).
    pub session_id: Option<String>,
    /// Its title (the old one's, with "(fork)", when absent).
    pub title: Option<String>,
}

/// A new session from this one, up to and including one of its messages: same agent,
/// model, workspace and options, copies of the messages, no usage of its own yet.
#[utoipa::path(post, path = "/sessions/{id}/fork", tag = "sessions", params(("id" = String, Path, description = "The session")), request_body = ForkRequest,
    responses((status = 201, body = SessionRecord), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn fork(
    Running(runtime): Running,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ForkRequest>,
) -> Result<(StatusCode, Json<SessionRecord>), ApiError> {
    Ok((StatusCode::CREATED, Json(runtime.fork(&id, body.message_id, body.session_id, body.title).await?)))
}
