//! Browser sessions: `POST /auth/login` and `POST /auth/logout` (see [`crate::server::auth`]).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::server::auth::{COOKIE, LOGIN_LIFETIME, session_cookie};
use crate::server::error::{ApiError, ErrorBody};
use crate::server::state::AppState;

/// Opens a browser session: with `Authorization: Bearer <secret>` (checked before this
/// runs), answers 204 with an `HttpOnly`, `SameSite=Strict` session cookie that requests and
/// event streams of the page then carry. A server without a secret needs no login (409).
#[utoipa::path(post, path = "/auth/login", tag = "auth",
    responses((status = 204, description = "the cookie is set"), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn login(State(state): State<AppState>) -> Result<Response, ApiError> {
    if state.settings().shared_secret.is_none() {
        return Err(ApiError::new(StatusCode::CONFLICT, "this server has no shared secret, so there is nothing to log in to"));
    }
    let token = state.logins().open().map_err(ApiError::internal)?;
    let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}", LOGIN_LIFETIME.as_secs());
    let value = HeaderValue::from_str(&cookie).map_err(ApiError::internal)?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, value)]).into_response())
}

/// Ends the browser session of the request's cookie, and clears the cookie.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", responses((status = 204, description = "the session is ended")))]
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = session_cookie(&headers) {
        state.logins().close(token);
    }
    let clear = HeaderValue::from_static("plugboard_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response()
}
