//! Request bodies as RFC 9110 says: read only when their `Content-Type` is JSON and
//! their `Content-Encoding` is one the server decodes, within the size limit (413) and
//! the body-read timeout (408).
//!
//! - `Content-Type`: `application/json` or any `application/*+json`, with any
//!   parameters (`charset=utf-8`); another type is 415. A body without a
//!   `Content-Type` is read as JSON (curl and some clients leave it out; the JSON parse
//!   is the check).
//! - `Content-Encoding`: only `identity` (or none). The server does not decompress
//!   bodies: the family's clients never compress requests, and a decoder is one more
//!   way to make a small request expensive (a zip bomb needs a second size limit). Any
//!   other coding is 415, with `Accept-Encoding: identity` as RFC 9110 section 15.5.16
//!   suggests.
//! - The body-read timeout is a deadline for the whole body, counted from when the
//!   handler starts reading it. (tower-http's `RequestBodyTimeout` times each frame
//!   separately, so a client dripping one byte just before each deadline would hold
//!   the connection for as long as it likes; hence this deadline of ours.)

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::LengthLimitError;

use crate::problem::{ApiError, clip};
use crate::state::AppState;

/// The body of a write, read and checked (see the module docs).
#[derive(Debug)]
pub(crate) struct JsonBody(pub(crate) Bytes);

/// A refused body: the API's error answer, closing the connection when the rest of the
/// body was left unread.
#[derive(Debug)]
pub(crate) struct BodyRefused {
    error: ApiError,
    accept_encoding: bool,
    close: bool,
}

impl From<ApiError> for BodyRefused {
    fn from(error: ApiError) -> BodyRefused {
        BodyRefused { error, accept_encoding: false, close: false }
    }
}

impl IntoResponse for BodyRefused {
    fn into_response(self) -> Response {
        let mut response = self.error.into_response();
        if self.accept_encoding {
            response.headers_mut().insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        }
        if self.close {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl FromRequest<Arc<AppState>> for JsonBody {
    type Rejection = BodyRefused;

    async fn from_request(request: Request, state: &Arc<AppState>) -> Result<JsonBody, BodyRefused> {
        check_media_type(request.headers())?;
        check_encoding(request.headers())?;
        let max = state.limits.max_body;
        let too_large = || BodyRefused {
            error: ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the request body is larger than {max} bytes")),
            accept_encoding: false,
            close: true,
        };
        let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok());
        if declared.and_then(|v| v.trim().parse::<u64>().ok()).is_some_and(|n| n > max as u64) {
            return Err(too_large());
        }
        let timeout = state.body_read_timeout;
        match tokio::time::timeout(timeout, axum::body::to_bytes(request.into_body(), max)).await {
            Ok(Ok(bytes)) => Ok(JsonBody(bytes)),
            Ok(Err(e)) if is_length_limit(&e) => Err(too_large()),
            Ok(Err(e)) => Err(BodyRefused {
                error: ApiError::bad_request(format!("cannot read the request body: {e}")),
                accept_encoding: false,
                close: true,
            }),
            Err(_) => Err(BodyRefused {
                error: ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("the request body did not arrive within {}", seconds(timeout)),
                ),
                accept_encoding: false,
                close: true,
            }),
        }
    }
}

fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(cause) = source {
        if cause.is::<LengthLimitError>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// 415 unless the body says it is JSON (or says nothing).
fn check_media_type(headers: &HeaderMap) -> Result<(), BodyRefused> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("");
    let essence = text.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let json = essence == "application/json"
        || essence.strip_prefix("application/").is_some_and(|subtype| subtype.ends_with("+json"));
    match json {
        true => Ok(()),
        false => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("the body must be JSON (Content-Type: application/json), not `{}`", clip(text)),
        )
        .into()),
    }
}

/// 415 unless the body is not encoded (`identity`).
fn check_encoding(headers: &HeaderMap) -> Result<(), BodyRefused> {
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let text = value.to_str().unwrap_or("?");
        if text.split(',').map(str::trim).any(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case("identity")) {
            return Err(BodyRefused {
                error: ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!("this server reads bodies without Content-Encoding; `{}` is not supported", clip(text)),
                ),
                accept_encoding: true,
                close: true,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs.iter().map(|(n, v)| (n.parse().unwrap(), v.parse().unwrap())).collect()
    }

    #[test]
    fn only_json_bodies_without_an_encoding_are_read() {
        for ok in ["application/json", "application/json; charset=utf-8", "Application/JSON", "application/ld+json"] {
            assert!(check_media_type(&headers(&[("content-type", ok)])).is_ok(), "{ok}");
        }
        assert!(check_media_type(&HeaderMap::new()).is_ok());
        for bad in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "json"] {
            let refused = check_media_type(&headers(&[("content-type", bad)])).unwrap_err();
            assert_eq!(refused.error.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{bad}");
        }
        assert!(check_encoding(&headers(&[("content-encoding", "identity")])).is_ok());
        for bad in ["gzip", "br", "identity, gzip", "x-custom"] {
            let refused = check_encoding(&headers(&[("content-encoding", bad)])).unwrap_err();
            assert_eq!(refused.error.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{bad}");
            assert!(refused.accept_encoding);
        }
    }
}
