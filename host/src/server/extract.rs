//! Request parts, checked before anything else happens, each rejection in the API's JSON
//! error shape: a malformed body, a wrong type, an unknown or missing field is a 400 that
//! names the field and the reason; a body over the limit is a 413; a path segment that is
//! not valid (percent-encoded bytes that are not UTF-8) is a 400 that names the segment.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::error::ApiError;

/// A JSON body of type `T`.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "the request body is larger than the server accepts ([server] max_body_bytes)")
            } else {
                ApiError::new(e.status(), format!("cannot read the request body: {}", e.body_text()))
            }
        })?;
        parse(&bytes).map(ApiJson)
    }
}

/// A path parameter of type `T` (axum's `Path`, with a JSON rejection).
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(e) => Err(ApiError::new(e.status(), format!("invalid path: {}", e.body_text()))
                .with_details(json!({ "field": "path", "reason": e.body_text() }))),
        }
    }
}

/// A query string of type `T` (axum's `Query`, with a JSON rejection that names the field).
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(e) => {
                Err(ApiError::new(StatusCode::BAD_REQUEST, e.body_text())
                    .with_details(json!({ "field": "query", "reason": e.body_text() })))
            }
        }
    }
}

/// Parses a JSON body, naming the field at fault.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "the request body is empty; send a JSON object"));
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if path == "." { "body".to_string() } else { path };
                let reason = strip_position(&inner.to_string());
                ApiError::invalid_field(&field, reason)
            }
            _ => ApiError::new(StatusCode::BAD_REQUEST, format!("malformed JSON: {inner}"))
                .with_details(json!({ "reason": strip_position(&inner.to_string()), "line": inner.line(), "column": inner.column() })),
        }
    })
}

/// `... at line 1 column 5` without the position (it is in the details).
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        prompt: String,
        inner: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        temperature: f32,
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse::<Body>(br#"{"prompt": 3}"#).unwrap_err();
        assert_eq!(e.details["field"], "prompt", "{:?}", e);
        let e = parse::<Body>(br#"{"prompt": "x", "inner": {"temperature": "hot"}}"#).unwrap_err();
        assert_eq!(e.details["field"], "inner.temperature", "{:?}", e);
        let e = parse::<Body>(br#"{"prompt": "x", "extra": 1}"#).unwrap_err();
        assert!(e.message.contains("unknown field `extra`"), "{:?}", e);
        let e = parse::<Body>(br#"{}"#).unwrap_err();
        assert!(e.message.contains("missing field `prompt`"), "{:?}", e);
        let e = parse::<Body>(br#"{"prompt": "#).unwrap_err();
        assert!(e.message.starts_with("malformed JSON"), "{:?}", e);
        assert!(parse::<Body>(b"").unwrap_err().message.contains("empty"));
    }
}
