//! Who is calling: nobody in particular (anonymous, for local use), or the subject of a
//! JWT bearer token (DESIGN.md section 9).
//!
//! With any of the JWT modes, every request under `/tables` needs
//! `Authorization: Bearer <token>`: a JWT with a valid signature, an `exp` in the future
//! (60 s of clock skew allowed), an `nbf` (if any) in the past, and a non-empty string
//! `sub`. The signature is checked with
//!
//! - a shared secret, HS256 ([`Auth::jwt_hs256`]);
//! - a public key in PEM, RS256 or ES256 ([`Auth::jwt_public_key_pem`]);
//! - the identity provider's key set, RS256 and ES256 keys from a JWKS URL
//!   ([`Auth::jwks_url`]; fetched, cached, fetched again for an unknown `kid` at a
//!   bounded rate: see [`crate::ServerBuilder::auth`] and the `jwks` module).
//!
//! `aud` and `iss` are checked when configured ([`Auth::audience`], [`Auth::issuer`]);
//! when not, a token may carry any (identity providers always put an `aud` in). Anything
//! else is 401 with a `WWW-Authenticate: Bearer` header (RFC 6750;
//! `error="invalid_token"` when a token was sent), which is what makes a client refresh
//! its token; a `sub` holding the NUL character, which no storage can keep, is 400.
//! `GET /healthz` and `GET /metrics` stay open. The `sub` is the owner of the rows the
//! caller writes in owned tables ([`crate::table::TableDef::owner_column`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::error::Error;
use crate::jwks::{self, Jwks};
use crate::problem::ApiError;
use crate::wire::nul_message;

/// The shortest secret accepted: 256 bits, as RFC 7518 requires for HS256.
pub const MIN_SECRET_BYTES: usize = 32;

/// The signature algorithm of a public key ([`Auth::jwt_public_key_pem`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (an RSA key).
    Rs256,
    /// ECDSA on P-256 with SHA-256 (an EC key).
    Es256,
}

/// How requests are authenticated; see the module docs.
#[derive(Clone, Default)]
pub struct Auth {
    jwt: Option<Arc<Jwt>>,
}

#[derive(Clone)]
struct Jwt {
    keys: Keys,
    audience: Option<String>,
    issuer: Option<String>,
}

#[derive(Clone)]
enum Keys {
    /// One key of a known algorithm: an HS256 secret or a PEM public key.
    Fixed(Algorithm, DecodingKey),
    /// The key set of a JWKS URL (shared by clones: one cache).
    Jwks(Arc<Jwks>),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        let mode = match self.jwt.as_deref().map(|j| &j.keys) {
            None => "anonymous",
            Some(Keys::Fixed(Algorithm::HS256, _)) => "jwt-hs256",
            Some(Keys::Fixed(..)) => "jwt-public-key",
            Some(Keys::Jwks(_)) => "jwt-jwks",
        };
        let jwt = self.jwt.as_deref();
        f.debug_struct("Auth")
            .field("mode", &mode)
            .field("audience", &jwt.and_then(|j| j.audience.as_deref()))
            .field("issuer", &jwt.and_then(|j| j.issuer.as_deref()))
            .finish()
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
        Ok(Auth::with_keys(Keys::Fixed(Algorithm::HS256, DecodingKey::from_secret(secret))))
    }

    /// Bearer tokens signed by an identity provider whose public key is `pem`
    /// (`-----BEGIN PUBLIC KEY-----`; for RS256 also `BEGIN RSA PUBLIC KEY`).
    ///
    /// ```
    /// # fn main() -> Result<(), sync_server::Error> {
    /// use sync_server::auth::{Auth, KeyAlgorithm};
    /// let pem = b"-----BEGIN PUBLIC KEY-----
    /// MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEIrusTBswEFbqf6jYraKhhGATS+b5
    /// dhuzFVFEr2l/e2J1+j7LwrYTd5KKbG/9Tytf3qYMkQi/RFOCh6iYu4vfmA==
    /// -----END PUBLIC KEY-----";
    /// let auth = Auth::jwt_public_key_pem(KeyAlgorithm::Es256, pem)?.audience("my-api");
    /// # Ok(()) }
    /// ```
    pub fn jwt_public_key_pem(algorithm: KeyAlgorithm, pem: &[u8]) -> Result<Auth, Error> {
        let (algorithm, key) = match algorithm {
            KeyAlgorithm::Rs256 => (Algorithm::RS256, DecodingKey::from_rsa_pem(pem)),
            KeyAlgorithm::Es256 => (Algorithm::ES256, DecodingKey::from_ec_pem(pem)),
        };
        let key = key.map_err(|e| Error::Setting {
            name: "auth",
            message: format!("the public key is not a {algorithm:?} key in PEM: {e}"),
        })?;
        Ok(Auth::with_keys(Keys::Fixed(algorithm, key)))
    }

    /// Bearer tokens signed by one of the RS256 or ES256 keys of an identity provider's
    /// JWKS URL (`https://`, or `http://` on a loopback address). The keys are fetched
    /// on first use and again when a token names a key id the cache does not have, or
    /// the set is an hour old, at most once per refresh interval
    /// ([`Auth::jwks_refresh_interval`], default 30 s).
    pub fn jwks_url(url: &str) -> Result<Auth, Error> {
        Ok(Auth::with_keys(Keys::Jwks(Arc::new(Jwks::new(url, false)?))))
    }

    /// [`Auth::jwks_url`], also taking a plain `http://` URL on another host. Keys
    /// fetched in the clear can be replaced on the way: only for a trusted network.
    pub fn jwks_url_allowing_http(url: &str) -> Result<Auth, Error> {
        Ok(Auth::with_keys(Keys::Jwks(Arc::new(Jwks::new(url, true)?))))
    }

    /// With [`Auth::jwks_url`]: the shortest time between two fetches of the key set
    /// (default 30 s), however many tokens name unknown keys.
    pub fn jwks_refresh_interval(self, interval: Duration) -> Auth {
        if let Some(Keys::Jwks(jwks)) = self.jwt.as_deref().map(|j| &j.keys) {
            jwks.set_refresh_interval(interval);
        }
        self
    }

    /// Accepts only tokens whose `aud` is (or contains) `audience`. Without it, `aud`
    /// is not checked. No effect on [`Auth::anonymous`].
    pub fn audience(mut self, audience: impl Into<String>) -> Auth {
        // make_mut: a clone made earlier keeps its own settings; this one never
        // silently loses the check.
        if let Some(jwt) = self.jwt.as_mut() {
            Arc::make_mut(jwt).audience = Some(audience.into());
        }
        self
    }

    /// Accepts only tokens whose `iss` is `issuer`. Without it, `iss` is not checked.
    /// No effect on [`Auth::anonymous`].
    pub fn issuer(mut self, issuer: impl Into<String>) -> Auth {
        if let Some(jwt) = self.jwt.as_mut() {
            Arc::make_mut(jwt).issuer = Some(issuer.into());
        }
        self
    }

    fn with_keys(keys: Keys) -> Auth {
        Auth { jwt: Some(Arc::new(Jwt { keys, audience: None, issuer: None })) }
    }

    /// Whether callers are authenticated.
    pub fn is_required(&self) -> bool {
        self.jwt.is_some()
    }

    /// With a JWKS URL: fetches the key set again if it is stale (never fetched, or an
    /// hour old), within the refresh rate.
    pub(crate) async fn refresh_stale_keys(&self) {
        if let Some(Keys::Jwks(jwks)) = self.jwt.as_deref().map(|j| &j.keys) {
            if jwks.is_stale() {
                jwks.refresh().await;
            }
        }
    }

    /// With a JWKS URL: fetches the key set again (within the refresh rate); answers
    /// whether a checked token should be checked again.
    pub(crate) async fn refresh_keys(&self) -> bool {
        match self.jwt.as_deref().map(|j| &j.keys) {
            Some(Keys::Jwks(jwks)) => jwks.refresh().await,
            _ => false,
        }
    }

    /// The caller of a request, or why it is refused.
    pub(crate) fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, Refusal> {
        let Some(jwt) = &self.jwt else {
            return Ok(Caller { user: None });
        };
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(Refusal::unauthorized("this server needs `Authorization: Bearer <token>`", None));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty());
        let Some(token) = token else {
            return Err(Refusal::unauthorized(
                "the Authorization header must be `Bearer <token>`",
                Some("invalid_request"),
            ));
        };
        let invalid = |message| Refusal::unauthorized(message, Some("invalid_token"));
        let decoded = match &jwt.keys {
            Keys::Fixed(algorithm, key) => jsonwebtoken::decode::<Claims>(token, key, &jwt.validation(*algorithm)),
            Keys::Jwks(jwks) => {
                let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("the token is not a valid JWT"))?;
                let keys = jwks.keys();
                let candidates: Vec<&jwks::Key> = match &header.kid {
                    Some(kid) => jwks::by_kid(&keys).get(kid.as_str()).copied().into_iter().collect(),
                    None => keys.iter().filter(|k| k.algorithm == header.alg).collect(),
                };
                let Some(first) = candidates.first() else {
                    return Err(Refusal { new_keys: true, ..invalid("the token's signing key (`kid`) is unknown") });
                };
                let mut decoded = jsonwebtoken::decode::<Claims>(token, &first.key, &jwt.validation(first.algorithm));
                for key in &candidates[1..] {
                    if decoded.is_ok() {
                        break;
                    }
                    decoded = jsonwebtoken::decode::<Claims>(token, &key.key, &jwt.validation(key.algorithm));
                }
                decoded
            }
        };
        match decoded {
            Ok(data) if data.claims.sub.is_empty() => Err(invalid("the token's `sub` is empty")),
            Ok(data) if data.claims.sub.contains('\0') => Err(Refusal {
                status: StatusCode::BAD_REQUEST,
                message: nul_message("the token's `sub`"),
                error: None,
                new_keys: false,
            }),
            Ok(data) => Ok(Caller { user: Some(data.claims.sub) }),
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind;
                let why = match e.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired",
                    ErrorKind::ImmatureSignature => "the token is not valid yet",
                    ErrorKind::InvalidSignature => "the token's signature does not match",
                    ErrorKind::InvalidAlgorithm => "the token is not signed with the algorithm this server takes",
                    ErrorKind::InvalidAudience => "the token's `aud` does not name this server",
                    ErrorKind::InvalidIssuer => "the token's `iss` is not the identity provider this server trusts",
                    ErrorKind::MissingRequiredClaim(_) => {
                        "the token lacks a required claim (`exp`, `sub`, `aud`, `iss`)"
                    }
                    _ => "the token is not a valid JWT",
                };
                Err(invalid(why))
            }
        }
    }
}

impl Jwt {
    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        let mut required = vec!["exp", "sub"];
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        validation.validate_nbf = true;
        validation.leeway = 60;
        validation
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

/// Why a request is refused: 401 with `WWW-Authenticate: Bearer[ error=..]`, or 400.
#[derive(Debug)]
pub(crate) struct Refusal {
    status: StatusCode,
    message: String,
    /// RFC 6750's error code, when a token (or something like one) was sent.
    error: Option<&'static str>,
    /// The token names a signing key the server does not know (yet).
    new_keys: bool,
}

impl Refusal {
    fn unauthorized(message: &str, error: Option<&'static str>) -> Refusal {
        Refusal { status: StatusCode::UNAUTHORIZED, message: message.to_owned(), error, new_keys: false }
    }

    /// Whether fetching the identity provider's keys again may make the token good.
    pub(crate) fn wants_new_keys(&self) -> bool {
        self.new_keys
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let challenge = match self.error {
            Some(error) => format!("Bearer error=\"{error}\", error_description=\"{}\"", self.message),
            None => "Bearer".to_owned(),
        };
        let mut response = ApiError::new(self.status, self.message).into_response();
        if unauthorized {
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
            }
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
    fn audience_and_issuer_hold_on_a_cloned_auth_too() {
        let auth = Auth::jwt_hs256(SECRET).unwrap();
        let earlier = auth.clone();
        let checked = auth.audience("api").issuer("idp");
        let token =
            token(serde_json::json!({"sub": "a", "exp": now() + 600, "aud": "other"}), Algorithm::HS256, SECRET);
        assert!(checked.authenticate(&headers(&format!("Bearer {token}"))).is_err());
        assert!(earlier.authenticate(&headers(&format!("Bearer {token}"))).is_ok());
    }

    #[test]
    fn anonymous_lets_everyone_in_and_secrets_are_long_and_never_shown() {
        assert_eq!(Auth::anonymous().authenticate(&HeaderMap::new()).unwrap(), Caller { user: None });
        assert!(Auth::jwt_hs256(b"short").unwrap_err().to_string().contains("32"));
        let shown = format!("{:?}", Auth::jwt_hs256(SECRET).unwrap());
        assert!(!shown.contains("0123") && shown.contains("jwt"), "{shown}");
    }
}
