//! The shared secret: with `PLUGBOARD_SHARED_SECRET` set, every route but the health checks
//! requires `Authorization: Bearer <secret>`, compared in constant time (both sides are
//! hashed first, so not even the length leaks).

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::state::AppState;

/// Routes that answer without the secret (load balancers and orchestrators probe them).
pub const OPEN_ROUTES: &[&str] = &["/healthz", "/health", "/ready"];

/// Refuses requests without the right bearer token (401), when a secret is set.
pub async fn require_secret(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(secret) = &state.settings().shared_secret else { return next.run(request).await };
    if OPEN_ROUTES.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let presented = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let reason = match presented {
        None => "this server requires `Authorization: Bearer <PLUGBOARD_SHARED_SECRET>`",
        Some(token) if matches(token, secret.expose()) => return next.run(request).await,
        Some(_) => "the bearer token does not match PLUGBOARD_SHARED_SECRET",
    };
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, reason).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Constant-time comparison of a presented token with the secret.
fn matches(presented: &str, secret: &str) -> bool {
    Sha256::digest(presented.as_bytes()).ct_eq(&Sha256::digest(secret.as_bytes())).into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_match_only_exactly() {
        assert!(super::matches("s3cret", "s3cret"));
        assert!(!super::matches("s3cre", "s3cret"));
        assert!(!super::matches("s3cret ", "s3cret"));
        assert!(!super::matches("", "s3cret"));
    }
}
