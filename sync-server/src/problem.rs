//! Error answers: a status and a JSON body that says what was wrong, in the form of the
//! request's protocol generation:
//!
//! - v3 (Datasync): `{"error": <code>, "message": <text>}`;
//! - v2 (Azure Mobile Apps), and requests that name no generation: `{"error": <text>,
//!   "code": <code>, "message": <text>}`. The family's clients (the JavaScript SDK)
//!   show `error` (or `description`) to the app and never read `message`.
//!
//! `<code>` is a stable machine-readable word (`bad_request`, `not_found`, ...); OData
//! errors add `"position"`. [`ApiError::into_response`] writes the v3 form and leaves
//! its parts in the response; [`shape_for_protocol`] rewrites them for v2 once the
//! request's generation is known.

use axum::body::Body as Body2;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sync_core::ProtocolVersion;
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
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<usize>,
}

/// The parts of an error answer, kept in the response's extensions so that the body can
/// be written in the request's protocol form.
#[derive(Clone, Debug)]
struct ErrorParts {
    code: &'static str,
    message: String,
    position: Option<usize>,
}

impl ErrorParts {
    fn body(&self, version: ProtocolVersion) -> Vec<u8> {
        let body = match version {
            ProtocolVersion::V3 => {
                Body { error: self.code, code: None, message: &self.message, position: self.position }
            }
            _ => Body { error: &self.message, code: Some(self.code), message: &self.message, position: self.position },
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

/// Rewrites an error answer's body in the request's protocol form (see the module
/// docs): v3 when the request says `3.0.0`, else v2.
pub(crate) async fn shape_for_protocol(request: Request, next: Next) -> Response {
    let version = crate::protocol::requested_protocol(&request).unwrap_or(ProtocolVersion::V2);
    let mut response = next.run(request).await;
    if version != ProtocolVersion::V3 {
        if let Some(parts) = response.extensions_mut().remove::<ErrorParts>() {
            let body = parts.body(version);
            response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            *response.body_mut() = Body2::from(body);
        }
    }
    response
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
            StatusCode::REQUEST_TIMEOUT => "request_timeout",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
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
        let parts = ErrorParts { code: self.kind(), message: self.message, position: self.position };
        let body = parts.body(ProtocolVersion::V3);
        let mut response =
            (self.status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response();
        response.extensions_mut().insert(parts);
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
