//! The handlers, one module per resource. Each is annotated for the OpenAPI document, and
//! [`router`] registers them from those annotations, so the document and the routes agree.

pub mod catalog;
pub mod config;
pub mod health;
pub mod login;
pub mod permissions;
pub mod sessions;
pub mod streams;

use axum::http::{StatusCode, Uri};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::state::AppState;

/// Every route of the API, with its OpenAPI description.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(super::openapi::base())
        .routes(routes!(health::healthz))
        .routes(routes!(health::health))
        .routes(routes!(health::ready))
        .routes(routes!(health::metrics))
        .routes(routes!(sessions::create, sessions::list))
        .routes(routes!(sessions::get, sessions::cancel, sessions::update))
        .routes(routes!(sessions::status))
        .routes(routes!(sessions::compact))
        .routes(routes!(sessions::export))
        .routes(routes!(sessions::import))
        .routes(routes!(sessions::fork))
        .routes(routes!(sessions::revert))
        .routes(routes!(sessions::messages, sessions::send))
        .routes(routes!(streams::session_stream))
        .routes(routes!(streams::all_events))
        .routes(routes!(permissions::list))
        .routes(routes!(permissions::reply))
        .routes(routes!(catalog::tools))
        .routes(routes!(catalog::call_tool))
        .routes(routes!(catalog::plugins))
        .routes(routes!(catalog::reload_all))
        .routes(routes!(catalog::reload_one))
        .routes(routes!(catalog::models))
        .routes(routes!(config::reload))
        .routes(routes!(config::hooks))
        .routes(routes!(login::login))
        .routes(routes!(login::logout))
}

/// 404 for a path no route has.
pub async fn unknown_route(uri: Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no route `{}`; see GET /openapi.json", uri.path()))
        .with_details(serde_json::json!({ "path": uri.path() }))
}

/// 405 for a method a route does not have.
pub async fn method_not_allowed(uri: Uri) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("`{}` does not take this method; see GET /openapi.json", uri.path()))
}
