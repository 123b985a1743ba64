//! The browser boundary. Any web page a user opens can send requests to a port on their
//! machine; these checks run before anything else so that such a page can neither drive
//! the server nor read its answers:
//!
//! - **Host.** A request must be addressed to a loopback name (`localhost`, `*.localhost`),
//!   an IP address, or a name in `[server] allowed_hosts`. A DNS-rebinding page addresses
//!   its own name, so it is refused.
//! - **Origin.** A request that carries an `Origin` (browsers send it on every cross-origin
//!   request and every non-GET) must come from the server's own origin or one in
//!   `[server] allowed_origins`; a request that a browser marks `Sec-Fetch-Site:
//!   cross-site` or `same-site` without such an origin is refused as well.
//! - **Content type.** A request with a body must say `application/json`: the content
//!   types a page may send without a CORS preflight (`text/plain`, forms) are refused.
//!
//! The configured origins get CORS ([`cors_layer`]), preflight included, with credentials,
//! so a web UI on one of them works with the session cookie of [`super::auth`].

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::error::ApiError;
use super::settings::{ServerSettings, normalize_origin};
use super::state::AppState;

/// Refuses requests a web page could forge (see the module's documentation).
pub async fn refuse_cross_site(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match check(state.settings(), request.method(), request.headers(), request.uri()) {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

fn check(settings: &ServerSettings, method: &Method, headers: &HeaderMap, uri: &axum::http::Uri) -> Result<(), ApiError> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).or_else(|| uri.authority().map(|a| a.as_str()));
    let Some(host) = host else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "the request has no Host header"));
    };
    if !host_allowed(host, &settings.allowed_hosts) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "requests addressed to `{host}` are refused: only loopback names, IP addresses and `[server] allowed_hosts` are served"
            ),
        )
        .with_details(json!({ "host": host, "setting": "[server] allowed_hosts" })));
    }
    let origin = headers.get(header::ORIGIN).map(|v| v.to_str().unwrap_or("(not text)"));
    match origin {
        Some(origin) if !origin_allowed(origin, host, &settings.allowed_origins) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("requests from the web origin `{origin}` are refused: add it to `[server] allowed_origins` to let its pages call this server"),
            )
            .with_details(json!({ "origin": origin, "setting": "[server] allowed_origins" })));
        }
        Some(_) => {}
        None => {
            let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
            if matches!(site, Some("cross-site" | "same-site")) {
                return Err(ApiError::new(StatusCode::FORBIDDEN, "a request from another web site without an allowed Origin is refused")
                    .with_details(json!({ "sec_fetch_site": site })));
            }
        }
    }
    if carries_body(method, headers) && !is_json(headers) {
        let given = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("none");
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("request bodies must be JSON with `Content-Type: application/json` (got {given})"),
        )
        .with_details(json!({ "content_type": given })));
    }
    Ok(())
}

/// Whether a request addressed to `host` (the `Host` header, maybe with a port) is served.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit())).map_or(host, |(name, _)| name),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    // An address cannot be rebound: only a name resolves to what its owner says.
    name.parse::<std::net::IpAddr>().is_ok() || name == "localhost" || name.ends_with(".localhost") || allowed.contains(&name)
}

/// Whether a page of `origin` may call the server addressed as `host`.
fn origin_allowed(origin: &str, host: &str, allowed: &[String]) -> bool {
    let Ok(origin) = normalize_origin(origin) else { return false };
    // The server's own origin: a page it served (plain HTTP; TLS ends in front of it, and
    // then the front's origin is configured).
    let own = normalize_origin(&format!("http://{host}")).ok();
    own.as_deref() == Some(origin.as_str()) || allowed.contains(&origin)
}

/// Whether the request has a body: a length above zero, or a chunked one.
fn carries_body(method: &Method, headers: &HeaderMap) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return headers.contains_key(header::CONTENT_TYPE) && !is_json(headers);
    }
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    headers.contains_key(header::CONTENT_TYPE) || length.is_some_and(|n| n > 0) || headers.contains_key(header::TRANSFER_ENCODING)
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// The headers of MCP's streamable HTTP transport (`/mcp`).
const MCP_SESSION: HeaderName = HeaderName::from_static("mcp-session-id");
const MCP_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");

/// CORS for the configured origins (none: no CORS headers, same-origin only). Credentials
/// are allowed, so a page can use the session cookie; the origins are named, never `*`.
pub fn cors_layer(settings: &ServerSettings) -> Option<tower_http::cors::CorsLayer> {
    if settings.allowed_origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = settings.allowed_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    Some(
        tower_http::cors::CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("last-event-id"),
                MCP_SESSION,
                MCP_VERSION,
            ])
            // A browser MCP client reads its session's id from the answer to `initialize`.
            .expose_headers([MCP_SESSION])
            .allow_credentials(true)
            .max_age(std::time::Duration::from_secs(600)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(hosts: &[&str], origins: &[&str]) -> ServerSettings {
        let config = super::super::settings::ServerConfig {
            allowed_hosts: hosts.iter().map(|s| s.to_string()).collect(),
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        ServerSettings::resolve(&config, "127.0.0.1:3003".parse().unwrap(), None, false, Default::default()).unwrap()
    }

    fn request(method: Method, pairs: &[(&'static str, &str)]) -> (Method, HeaderMap) {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.insert(HeaderName::from_static(k), HeaderValue::from_str(v).unwrap());
        }
        (method, headers)
    }

    fn verdict(settings: &ServerSettings, method: Method, pairs: &[(&'static str, &str)]) -> Result<(), StatusCode> {
        let (method, headers) = request(method, pairs);
        check(settings, &method, &headers, &"/sessions".parse().unwrap()).map_err(|e| e.status)
    }

    #[test]
    fn hosts_are_loopback_names_addresses_or_configured() {
        let s = settings(&["plugboard.lan"], &[]);
        for host in
            ["127.0.0.1:3003", "localhost:3003", "LOCALHOST", "app.localhost:1", "[::1]:3003", "10.0.0.5:3003", "plugboard.lan:3003"]
        {
            assert_eq!(verdict(&s, Method::GET, &[("host", host)]), Ok(()), "{host}");
        }
        for host in ["evil.example:3003", "localhost.evil.example", "plugboard.lan.evil.example"] {
            assert_eq!(verdict(&s, Method::GET, &[("host", host)]), Err(StatusCode::FORBIDDEN), "{host}");
        }
        assert_eq!(verdict(&s, Method::GET, &[]), Err(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn origins_must_be_the_servers_own_or_configured() {
        let s = settings(&[], &["https://ui.example"]);
        let json = ("content-type", "application/json");
        let ok = |origin| verdict(&s, Method::POST, &[("host", "127.0.0.1:3003"), ("origin", origin), json]);
        assert_eq!(ok("https://ui.example"), Ok(()));
        assert_eq!(ok("http://127.0.0.1:3003"), Ok(()), "same origin");
        assert_eq!(ok("https://evil.example"), Err(StatusCode::FORBIDDEN));
        assert_eq!(ok("http://127.0.0.1:8080"), Err(StatusCode::FORBIDDEN), "another port is another origin");
        assert_eq!(ok("null"), Err(StatusCode::FORBIDDEN));
        let marked = verdict(&s, Method::GET, &[("host", "127.0.0.1:3003"), ("sec-fetch-site", "cross-site")]);
        assert_eq!(marked, Err(StatusCode::FORBIDDEN));
        assert_eq!(verdict(&s, Method::GET, &[("host", "127.0.0.1:3003"), ("sec-fetch-site", "same-origin")]), Ok(()));
    }

    #[test]
    fn bodies_must_be_json() {
        let s = settings(&[], &[]);
        let host = ("host", "127.0.0.1:3003");
        assert_eq!(
            verdict(&s, Method::POST, &[host, ("content-type", "text/plain"), ("content-length", "2")]),
            Err(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
        assert_eq!(verdict(&s, Method::POST, &[host, ("content-length", "2")]), Err(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        assert_eq!(
            verdict(&s, Method::POST, &[host, ("content-type", "application/x-www-form-urlencoded")]),
            Err(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
        assert_eq!(
            verdict(&s, Method::POST, &[host, ("content-type", "Application/JSON; charset=utf-8"), ("content-length", "2")]),
            Ok(())
        );
        assert_eq!(verdict(&s, Method::POST, &[host]), Ok(()), "a POST without a body needs no type");
    }
}
