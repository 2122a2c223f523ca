//! Error answers: a status and a JSON body `{"error": <kind>, "message": <text>}` (plus
//! `"position"` for OData text), so every refusal says what was wrong.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sync_core::odata::ODataError;

use crate::storage::StorageError;

/// An answer that is not a success.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    pub(crate) position: Option<usize>,
    /// The `Allow` header of a 405.
    pub(crate) allow: Option<&'static str>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<usize>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), position: None, allow: None }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub(crate) fn method_not_allowed(message: impl Into<String>, allow: &'static str) -> ApiError {
        ApiError { allow: Some(allow), ..ApiError::new(StatusCode::METHOD_NOT_ALLOWED, message) }
    }

    /// A `$filter` / `$orderby` that does not parse or type-check.
    pub(crate) fn odata(option: &str, e: &ODataError) -> ApiError {
        ApiError {
            position: Some(e.position),
            ..ApiError::bad_request(format!("{option}: {} (at position {})", e.message, e.position))
        }
    }

    /// Storage failures that are not an expected outcome of the call.
    pub(crate) fn storage(e: StorageError) -> ApiError {
        match e {
            StorageError::InvalidQuery(message) => ApiError::bad_request(message),
            StorageError::NotFound => ApiError::not_found("no item with this id"),
            StorageError::Unavailable(why) => {
                tracing::error!(error = why, "storage unavailable");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the storage is unavailable")
            }
            other => {
                tracing::error!(error = %other, source = ?std::error::Error::source(&other), "storage error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal storage error")
            }
        }
    }

    fn kind(&self) -> &'static str {
        match self.status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::GONE => "gone",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            s if s.is_server_error() => "internal",
            _ => "error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body { error: self.kind(), message: &self.message, position: self.position };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(allow) = self.allow {
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        response
    }
}

/// At most 64 characters of client text, for a message.
pub(crate) fn clip(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
