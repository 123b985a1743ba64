//! The shared secret: with `PLUGBOARD_SHARED_SECRET` set, every route but the health checks
//! requires `Authorization: Bearer <secret>`, compared in constant time (both sides are
//! hashed first, so not even the length leaks), or the session cookie.
//!
//! A browser's `EventSource` cannot send headers, and a secret in a URL ends up in logs and
//! history. So `POST /auth/login`, with the bearer header, answers with a session cookie
//! (`HttpOnly`, `SameSite=Strict`, 12 hours) that a page's requests and event streams then
//! carry; `POST /auth/logout` ends it. Sessions live in memory, as random tokens known by
//! their hash, and end with the process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// The session cookie's name.
pub const COOKIE: &str = "plugboard_session";

/// How long a login lasts.
pub const LOGIN_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The browser sessions opened by `POST /auth/login`: the SHA-256 of each token, with when
/// it ends.
#[derive(Default)]
pub struct Logins(Mutex<HashMap<[u8; 32], Instant>>);

impl Logins {
    /// Opens a session; returns its token (32 random bytes, hex).
    pub fn open(&self) -> std::io::Result<String> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(format!("no randomness for a session token: {e}")))?;
        let token = hex::encode(bytes);
        let mut logins = self.0.lock().expect("not poisoned");
        let now = Instant::now();
        logins.retain(|_, until| *until > now);
        logins.insert(Sha256::digest(token.as_bytes()).into(), now + LOGIN_LIFETIME);
        Ok(token)
    }

    /// Whether `token` names an open session.
    pub fn valid(&self, token: &str) -> bool {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.0.lock().expect("not poisoned").get(&key).is_some_and(|until| *until > Instant::now())
    }

    /// Ends the session of `token`.
    pub fn close(&self, token: &str) {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.0.lock().expect("not poisoned").remove(&key);
    }
}

/// The session token a request's cookie carries.
pub fn session_cookie(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// Refuses requests without the right bearer token or session cookie (401), when a
/// secret is set.
pub async fn require_secret(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(secret) = &state.settings().shared_secret else { return next.run(request).await };
    if OPEN_ROUTES.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let presented = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let cookie = session_cookie(request.headers());
    let reason = match (presented, cookie) {
        (Some(token), _) if matches(token, secret.expose()) => return next.run(request).await,
        (Some(_), _) => "the bearer token does not match PLUGBOARD_SHARED_SECRET",
        (None, Some(token)) if state.logins().valid(token) => return next.run(request).await,
        (None, Some(_)) => "the session cookie has expired or was logged out; log in again with POST /auth/login",
        (None, None) => "this server requires `Authorization: Bearer <PLUGBOARD_SHARED_SECRET>` (or the cookie of POST /auth/login)",
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
