//! Who is calling: nobody in particular (anonymous, for local use), or the subject of an
//! HS256 JWT bearer token (DESIGN.md section 9).
//!
//! With [`Auth::jwt_hs256`], every request under `/tables` needs
//! `Authorization: Bearer <token>`: a JWT signed with HS256 and the configured secret,
//! with an `exp` in the future (60 s of clock skew allowed), an `nbf` (if any) in the
//! past, and a non-empty string `sub`. Anything else is 401 with a
//! `WWW-Authenticate: Bearer` header (RFC 6750; `error="invalid_token"` when a token
//! was sent), which is what makes a client refresh its token. `GET /healthz` stays
//! open. The `sub` is the owner of the rows the caller writes in owned tables
//! ([`crate::table::TableDef::owner_column`]).

use std::fmt;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::error::Error;
use crate::problem::ApiError;

/// The shortest secret accepted: 256 bits, as RFC 7518 requires for HS256.
pub const MIN_SECRET_BYTES: usize = 32;

/// How requests are authenticated; see the module docs.
#[derive(Clone, Default)]
pub struct Auth {
    jwt: Option<Jwt>,
}

#[derive(Clone)]
struct Jwt {
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        let mode = if self.jwt.is_some() { "jwt-hs256" } else { "anonymous" };
        f.debug_struct("Auth").field("mode", &mode).finish()
    }
}

impl Auth {
    /// No authentication: every caller is anonymous (the default, for local use).
    /// Owned tables cannot be served this way.
    pub fn anonymous() -> Auth {
        Auth { jwt: None }
    }

    /// Bearer tokens: HS256 JWTs signed with `secret` (at least [`MIN_SECRET_BYTES`]).
    pub fn jwt_hs256(secret: impl AsRef<[u8]>) -> Result<Auth, Error> {
        let secret = secret.as_ref();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(Error::Setting {
                name: "auth",
                message: format!("the JWT secret has {} bytes; HS256 needs at least {MIN_SECRET_BYTES}", secret.len()),
            });
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 60;
        Ok(Auth { jwt: Some(Jwt { key: DecodingKey::from_secret(secret), validation }) })
    }

    /// Whether callers are authenticated.
    pub fn is_required(&self) -> bool {
        self.jwt.is_some()
    }

    /// The caller of a request, or why it gets 401.
    pub(crate) fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, Unauthorized> {
        let Some(jwt) = &self.jwt else {
            return Ok(Caller { user: None });
        };
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(Unauthorized { message: "this server needs `Authorization: Bearer <token>`", error: None });
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty());
        let Some(token) = token else {
            return Err(Unauthorized {
                message: "the Authorization header must be `Bearer <token>`",
                error: Some("invalid_request"),
            });
        };
        match jsonwebtoken::decode::<Claims>(token, &jwt.key, &jwt.validation) {
            Ok(data) if !data.claims.sub.is_empty() => Ok(Caller { user: Some(data.claims.sub) }),
            Ok(_) => Err(Unauthorized { message: "the token's `sub` is empty", error: Some("invalid_token") }),
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind;
                let why = match e.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired",
                    ErrorKind::ImmatureSignature => "the token is not valid yet",
                    ErrorKind::InvalidSignature => "the token's signature does not match",
                    ErrorKind::InvalidAlgorithm => "the token is not signed with HS256",
                    ErrorKind::MissingRequiredClaim(_) => "the token lacks `exp` or `sub`",
                    _ => "the token is not a valid JWT",
                };
                Err(Unauthorized { message: why, error: Some("invalid_token") })
            }
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
}

/// The authenticated caller of a request (put into the request's extensions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Caller {
    /// The token's `sub`; `None` when the server is anonymous.
    pub(crate) user: Option<String>,
}

/// Why a request is refused: answered as 401 with `WWW-Authenticate: Bearer[ error=..]`.
#[derive(Debug)]
pub(crate) struct Unauthorized {
    message: &'static str,
    /// RFC 6750's error code, when a token (or something like one) was sent.
    error: Option<&'static str>,
}

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        let mut response = ApiError::new(StatusCode::UNAUTHORIZED, self.message).into_response();
        let challenge = match self.error {
            Some(error) => format!("Bearer error=\"{error}\", error_description=\"{}\"", self.message),
            None => "Bearer".to_owned(),
        };
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn token(claims: serde_json::Value, alg: Algorithm, secret: &[u8]) -> String {
        encode(&Header::new(alg), &claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    fn now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    #[test]
    fn tokens_are_checked() {
        let auth = Auth::jwt_hs256(SECRET).unwrap();
        let good = token(serde_json::json!({"sub": "alice", "exp": now() + 600}), Algorithm::HS256, SECRET);
        assert_eq!(auth.authenticate(&headers(&format!("Bearer {good}"))).unwrap().user.as_deref(), Some("alice"));
        assert!(auth.authenticate(&headers(&format!("bearer  {good}"))).is_ok());

        let rejected = [
            String::new(),
            "Basic abc".to_owned(),
            "Bearer ".to_owned(),
            "Bearer not.a.jwt".to_owned(),
            format!("Bearer {}", token(serde_json::json!({"sub": "a", "exp": now() - 600}), Algorithm::HS256, SECRET)),
            format!("Bearer {}", token(serde_json::json!({"sub": "a", "exp": now() + 600}), Algorithm::HS384, SECRET)),
            format!(
                "Bearer {}",
                token(serde_json::json!({"sub": "a", "exp": now() + 600}), Algorithm::HS256, &[b'x'; 32])
            ),
            format!("Bearer {}", token(serde_json::json!({"sub": "a"}), Algorithm::HS256, SECRET)),
            format!("Bearer {}", token(serde_json::json!({"exp": now() + 600}), Algorithm::HS256, SECRET)),
            format!("Bearer {}", token(serde_json::json!({"sub": "", "exp": now() + 600}), Algorithm::HS256, SECRET)),
            format!("Bearer {}", token(serde_json::json!({"sub": 5, "exp": now() + 600}), Algorithm::HS256, SECRET)),
            format!(
                "Bearer {}",
                token(
                    serde_json::json!({"sub": "a", "exp": now() + 600, "nbf": now() + 300}),
                    Algorithm::HS256,
                    SECRET
                )
            ),
        ];
        for value in rejected {
            let h = if value.is_empty() { HeaderMap::new() } else { headers(&value) };
            let response = auth.authenticate(&h).unwrap_err().into_response();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{value}");
            let challenge = response.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
            assert!(challenge.starts_with("Bearer"), "{challenge}");
        }
        // An unsigned token ("alg": "none") is refused too.
        let none = format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(r#"{"sub":"a","exp":9999999999}"#));
        assert!(auth.authenticate(&headers(&format!("Bearer {none}"))).is_err());
    }

    fn b64(s: &str) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn anonymous_lets_everyone_in_and_secrets_are_long_and_never_shown() {
        assert_eq!(Auth::anonymous().authenticate(&HeaderMap::new()).unwrap(), Caller { user: None });
        assert!(Auth::jwt_hs256(b"short").unwrap_err().to_string().contains("32"));
        let shown = format!("{:?}", Auth::jwt_hs256(SECRET).unwrap());
        assert!(!shown.contains("0123") && shown.contains("jwt"), "{shown}");
    }
}
