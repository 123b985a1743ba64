//! The OpenAPI document, generated from the handlers' annotations (`GET /openapi.json`).

use std::sync::Arc;

use axum::Json;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

/// The document's base: title, version, the bearer scheme.
#[derive(OpenApi)]
#[openapi(info(title = "Plugboard", description = "Drive agent sessions over HTTP and follow them over Server-Sent Events."))]
struct Base;

/// The base document, before the routes add their paths.
pub fn base() -> utoipa::openapi::OpenApi {
    let mut doc = Base::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    doc
}

/// `GET /openapi.json`.
pub async fn document(doc: Arc<utoipa::openapi::OpenApi>) -> Json<utoipa::openapi::OpenApi> {
    Json((*doc).clone())
}
