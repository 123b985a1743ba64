//! What is loaded: tools (and one direct call), plugins, models.

use axum::Json;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::agent::tool_hooks::DirectCallError;
use crate::runtime::error::CallError;
use crate::runtime::reload::{ReloadError, ReloadReport};
use crate::runtime::{CallContext, ToolOutput};
use crate::server::error::{ApiError, ErrorBody};
use crate::server::extract::{ApiJson, ApiPath};
use crate::server::state::Running;

/// A tool as offered to the model.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ToolInfo {
    /// Its name.
    pub name: String,
    /// The plugin that provides it.
    pub plugin: String,
    /// Its description.
    pub description: String,
    /// JSON Schema of its arguments.
    #[schema(value_type = Object)]
    pub parameters: Value,
}

/// The tools.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ToolList {
    /// By name.
    pub tools: Vec<ToolInfo>,
}

/// Every tool, with its plugin and its parameters' schema.
#[utoipa::path(get, path = "/tools", tag = "tools", responses((status = 200, body = ToolList)))]
pub async fn tools(Running(runtime): Running) -> Json<ToolList> {
    let tools = runtime
        .host()
        .registry()
        .tools()
        .map(|(t, owner)| ToolInfo {
            name: t.name.clone(),
            plugin: owner.label(),
            description: t.description.clone(),
            parameters: t.parameters.clone(),
        })
        .collect();
    Json(ToolList { tools })
}

/// `POST /tools/{name}/call`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolCallRequest {
    /// The arguments (an object; `{}` when absent).
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub arguments: Value,
    /// Run the `tool.before` and `tool.after` hooks in force around the call and record it
    /// in the event log as `tool.state` events without a session, as `plugboard tool call
    /// --with-hooks` does. A hook's refusal is a 403 naming the hook.
    #[serde(default)]
    pub hooks: bool,
}

fn empty_object() -> Value {
    json!({})
}

/// A call's result.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ToolCallResult {
    /// The text the model would see.
    pub text: String,
    /// A short title.
    pub title: Option<String>,
    /// Structured metadata.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// Runs one call of a tool under its plugin's grants (not an agent's rules): for plugin
/// authors and scripts. A call the tool refuses or fails is a 422 naming why; one the
/// grants deny, or a hook refuses (with `"hooks": true`), is a 403.
#[utoipa::path(post, path = "/tools/{name}/call", tag = "tools", params(("name" = String, Path, description = "The tool")), request_body = ToolCallRequest,
    responses((status = 200, body = ToolCallResult), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn call_tool(
    Running(runtime): Running,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<ToolCallRequest>,
) -> Result<Json<ToolCallResult>, ApiError> {
    if !body.arguments.is_object() {
        return Err(ApiError::invalid_field("arguments", "must be a JSON object"));
    }
    if body.hooks {
        let call = runtime.call_tool_with_hooks(&name, body.arguments, None).await;
        return match call.result {
            Ok(ToolOutput { text, title, metadata }) => Ok(Json(ToolCallResult { text, title, metadata })),
            Err(e) => Err(hooked_call_error(&name, e)),
        };
    }
    let context = CallContext { session_id: String::new(), call_id: crate::store::sessions::new_id("call") };
    match runtime.host().call_tool(&name, &body.arguments.to_string(), &context, None).await {
        Ok(ToolOutput { text, title, metadata }) => Ok(Json(ToolCallResult { text, title, metadata })),
        Err(e) => Err(call_error(&name, e.to_string(), e)),
    }
}

fn hooked_call_error(tool: &str, e: DirectCallError) -> ApiError {
    let message = e.for_operator();
    match e {
        DirectCallError::Refused { hook, .. } => {
            ApiError::new(StatusCode::FORBIDDEN, message).with_details(json!({ "tool": tool, "hook": hook }))
        }
        DirectCallError::Failed { error, .. } => call_error(tool, message, error),
        DirectCallError::Store(e) => ApiError::from(e),
    }
}

/// The status of a failed call, with `message` (the error's text, or what the hooks left
/// of it).
fn call_error(tool: &str, message: String, e: CallError) -> ApiError {
    match e {
        CallError::UnknownTool { available, .. } => {
            ApiError::new(StatusCode::NOT_FOUND, message).with_details(json!({ "tool": tool, "available": available }))
        }
        CallError::InvalidArguments { .. } => ApiError::invalid_field("arguments", message),
        CallError::Denied { .. } => ApiError::new(StatusCode::FORBIDDEN, message).with_details(json!({ "tool": tool })),
        CallError::Busy { capacity, .. } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message).with_details(json!({ "tool": tool, "capacity": capacity }))
        }
        _ => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message).with_details(json!({ "tool": tool })),
    }
}

/// The plugins.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PluginList {
    /// Loaded plugins: manifest, source, hash, tools, grants, and `provenance` (`{source,
    /// digest, signer: {name, fingerprint}, signatures}`) for one installed from a registry.
    #[schema(value_type = Vec<Object>)]
    pub plugins: Vec<Value>,
    /// Plugins that failed to load, with the reason.
    #[schema(value_type = Vec<Object>)]
    pub failures: Vec<Value>,
    /// Plugin files not loaded because another with their id took precedence:
    /// `{id, source, by}`.
    #[schema(value_type = Vec<Object>)]
    pub shadowed: Vec<Value>,
    /// Configuration tables that name no loaded plugin or hook, with the nearest id.
    pub warnings: Vec<String>,
    /// The MCP servers of `[mcp.<name>]`: `{name, transport, target, state, tools,
    /// skipped, restarts, error}`.
    #[schema(value_type = Vec<Object>)]
    pub mcp_servers: Vec<Value>,
}

/// Every loaded plugin (what it requested, what it was granted), and those that failed.
#[utoipa::path(get, path = "/plugins", tag = "plugins", responses((status = 200, body = PluginList)))]
pub async fn plugins(Running(runtime): Running) -> Json<PluginList> {
    let host = runtime.host();
    Json(PluginList {
        plugins: host.registry().plugins().map(|p| p.summary()).collect(),
        failures: host.registry().failures().iter().map(|f| serde_json::to_value(f).unwrap_or(Value::Null)).collect(),
        shadowed: host.registry().shadowed().iter().map(|s| serde_json::to_value(s).unwrap_or(Value::Null)).collect(),
        mcp_servers: host.mcp().status().iter().map(|s| serde_json::to_value(s).unwrap_or(Value::Null)).collect(),
        warnings: host.config_warnings(),
    })
}

/// Reloads every plugin whose file changed, appeared or disappeared (what the file watcher
/// does on its own), and says what changed. A new version that fails leaves the old one
/// serving.
#[utoipa::path(post, path = "/plugins/reload", tag = "plugins", responses((status = 200, body = ReloadReport)))]
pub async fn reload_all(Running(runtime): Running) -> Result<Json<ReloadReport>, ApiError> {
    runtime.host().reload(None).await.map(Json).map_err(|e| ApiError::internal(e.to_string()))
}

/// Reloads one plugin from its file.
#[utoipa::path(post, path = "/plugins/{id}/reload", tag = "plugins", params(("id" = String, Path, description = "The plugin")),
    responses((status = 200, body = ReloadReport), (status = 404, body = ErrorBody)))]
pub async fn reload_one(Running(runtime): Running, ApiPath(id): ApiPath<String>) -> Result<Json<ReloadReport>, ApiError> {
    match runtime.host().reload(Some(&id)).await {
        Ok(report) => Ok(Json(report)),
        Err(ReloadError::UnknownPlugin(_)) => Err(ApiError::not_found("plugin", &id)),
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
}

/// The models.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModelList {
    /// `{model: "provider/model", provider, info}`.
    #[schema(value_type = Vec<Object>)]
    pub models: Vec<Value>,
}

/// Every model of the loaded providers.
#[utoipa::path(get, path = "/models", tag = "models", responses((status = 200, body = ModelList)))]
pub async fn models(Running(runtime): Running) -> Json<ModelList> {
    let models = runtime
        .host()
        .registry().models()
        .map(|(reference, info, plugin)| json!({ "model": reference, "provider": plugin.manifest.id, "api_key_configured": plugin.policy().credential.is_some() || plugin.manifest.credentials.is_none(), "info": info }))
        .collect();
    Json(ModelList { models })
}
