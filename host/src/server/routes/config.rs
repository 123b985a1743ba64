//! The configuration and the hooks it puts in force: `POST /config/reload`, `GET /hooks`.

use axum::Json;
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};

use crate::app::ConfigChange;
use crate::hooks::HookPoint;
use crate::server::error::{ApiError, ErrorBody};
use crate::server::state::{Configured, Running};

/// Reads `plugboard.toml` again (what the file watcher does on its own). A valid file is
/// put in force and the changed sections are named; an invalid one is refused with 422 and
/// the reason, and the previous configuration stays in force.
#[utoipa::path(post, path = "/config/reload", tag = "config",
    responses((status = 200, body = ConfigChange), (status = 422, body = ErrorBody)))]
pub async fn reload(Configured(app): Configured) -> Result<Json<ConfigChange>, ApiError> {
    app.reload_config().await.map(Json).map_err(|e| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).with_details(json!({ "path": e.path, "reason": e.reason }))
    })
}

/// The hook plugins and the order each point runs them in.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HookList {
    /// Every hook plugin: `{id, version, points, event_types, enabled, priority, fail_closed}`.
    #[schema(value_type = Vec<Object>)]
    pub hooks: Vec<Value>,
    /// For each point, the ids of the hooks in force, in the order they run.
    #[schema(value_type = Object)]
    pub order: Value,
}

/// The hook plugins, whether each is in force, and the order of each point.
#[utoipa::path(get, path = "/hooks", tag = "config", responses((status = 200, body = HookList)))]
pub async fn hooks(Running(runtime): Running) -> Json<HookList> {
    let host = runtime.host();
    let (config, chain, registry) = (host.config(), host.hooks(), host.registry());
    let hooks = registry
        .hooks()
        .map(|p| {
            let settings = config.hooks.get(&p.manifest.id).copied().unwrap_or_default();
            let info = p.hook();
            json!({
                "id": p.manifest.id,
                "version": p.manifest.version,
                "points": info.map(|i| &i.points),
                "event_types": info.map(|i| &i.event_types),
                "enabled": chain.enabled(&p.manifest.id),
                "priority": settings.priority,
                "fail_closed": settings.fail_closed,
            })
        })
        .collect();
    let points = [
        HookPoint::SessionCreated,
        HookPoint::PromptBefore,
        HookPoint::ToolBefore,
        HookPoint::ToolAfter,
        HookPoint::ChatParams,
        HookPoint::Event,
    ];
    let order = points.iter().map(|p| (p.name().to_string(), json!(chain.order(*p)))).collect::<serde_json::Map<_, _>>();
    Json(HookList { hooks, order: Value::Object(order) })
}
