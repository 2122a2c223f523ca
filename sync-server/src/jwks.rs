//! The signing keys of an identity provider, from its JWKS URL (RFC 7517): fetched on
//! first use, cached, and fetched again when a token names a key id (`kid`) the cache
//! does not have (the provider rotated its keys) or the cache is older than
//! [`MAX_AGE`]; never more often than once per refresh interval, however many tokens
//! name unknown keys.
//!
//! Fetched with hyper-util's client (rustls for `https://`): the server links no
//! reqwest (DESIGN.md section 2). `http://` URLs are taken only on a loopback address
//! (`localhost`, `127.0.0.0/8`, `::1`) or when the operator allows them explicitly: keys
//! fetched in the clear can be replaced on the way.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::error::Error;

/// The shortest time between two fetches, by default.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// A key set older than this is fetched again before it is used.
pub const MAX_AGE: Duration = Duration::from_secs(3600);
/// The largest key set read.
const MAX_BYTES: usize = 256 * 1024;
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// One usable signing key.
#[derive(Clone)]
pub(crate) struct Key {
    pub(crate) kid: Option<String>,
    pub(crate) algorithm: Algorithm,
    pub(crate) key: DecodingKey,
}

/// The keys as last fetched.
#[derive(Default)]
struct Cached {
    keys: Arc<Vec<Key>>,
    fetched: Option<Instant>,
}

/// A JWKS URL and its cache.
pub(crate) struct Jwks {
    url: hyper::Uri,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    cache: RwLock<Cached>,
    /// When the last fetch was tried; held while fetching, so one fetch runs at a time.
    last_attempt: tokio::sync::Mutex<Option<Instant>>,
    /// The shortest time between two fetches, in milliseconds.
    refresh_interval_ms: AtomicU64,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks").field("url", &self.url).finish_non_exhaustive()
    }
}

impl Jwks {
    /// A key set at `url`: `https://`, or `http://` on loopback or when `allow_http`.
    pub(crate) fn new(url: &str, allow_http: bool) -> Result<Jwks, Error> {
        let bad = |message: String| Error::Setting { name: "jwks_url", message };
        let uri: hyper::Uri = url.parse().map_err(|e| bad(format!("`{url}` is not a URL: {e}")))?;
        let host = uri.host().ok_or_else(|| bad(format!("`{url}` names no host")))?;
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") if allow_http || is_loopback(host) => {}
            Some("http") => {
                return Err(bad(format!(
                    "`{url}` is plain http on a host that is not loopback: keys fetched in the clear can be \
                     replaced on the way; use https (or allow http explicitly)"
                )));
            }
            _ => return Err(bad(format!("`{url}` must be an https:// (or loopback http://) URL"))),
        }
        let provider = rustls::crypto::ring::default_provider();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(|e| bad(format!("TLS setup: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(https);
        Ok(Jwks {
            url: uri,
            client,
            cache: RwLock::default(),
            last_attempt: tokio::sync::Mutex::new(None),
            refresh_interval_ms: AtomicU64::new(millis(DEFAULT_REFRESH_INTERVAL)),
        })
    }

    pub(crate) fn set_refresh_interval(&self, interval: Duration) {
        self.refresh_interval_ms.store(millis(interval), Ordering::Relaxed);
    }

    /// The keys as cached now.
    pub(crate) fn keys(&self) -> Arc<Vec<Key>> {
        self.cache.read().map(|c| Arc::clone(&c.keys)).unwrap_or_default()
    }

    /// Whether the cached set should be fetched again before use (never fetched, or
    /// older than [`MAX_AGE`]).
    pub(crate) fn is_stale(&self) -> bool {
        self.cache.read().map(|c| c.fetched.is_none_or(|at| at.elapsed() > MAX_AGE)).unwrap_or(true)
    }

    /// Fetches the key set again, unless a fetch was tried less than the refresh interval
    /// ago. Answers whether the cache holds a set fetched since this call began (so a
    /// caller that waited for another caller's fetch retries with it).
    pub(crate) async fn refresh(&self) -> bool {
        let asked = Instant::now();
        let mut last_attempt = self.last_attempt.lock().await;
        if let Some(at) = *last_attempt {
            if at.elapsed() < Duration::from_millis(self.refresh_interval_ms.load(Ordering::Relaxed)) {
                return at >= asked && self.cache.read().is_ok_and(|c| c.fetched.is_some_and(|f| f >= at));
            }
        }
        let attempt = Instant::now();
        *last_attempt = Some(attempt);
        match tokio::time::timeout(FETCH_TIMEOUT, self.fetch()).await {
            Ok(Ok(keys)) => {
                tracing::info!(url = %self.url, keys = keys.len(), "fetched the identity provider's keys");
                if let Ok(mut cache) = self.cache.write() {
                    *cache = Cached { keys: Arc::new(keys), fetched: Some(attempt) };
                }
                true
            }
            Ok(Err(why)) => {
                tracing::warn!(url = %self.url, error = %why, "cannot fetch the identity provider's keys");
                false
            }
            Err(_) => {
                tracing::warn!(url = %self.url, "fetching the identity provider's keys timed out");
                false
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<Key>, String> {
        let response = self.client.get(self.url.clone()).await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_BYTES).collect().await.map_err(|e| e.to_string())?;
        parse_key_set(&body.to_bytes())
    }
}

/// The usable keys of a JWKS document: RS256 and ES256 signing keys. Keys of other
/// kinds or uses are left out (a provider may list encryption keys too).
pub(crate) fn parse_key_set(body: &[u8]) -> Result<Vec<Key>, String> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(body).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = Vec::new();
    for value in set.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else { continue };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
            (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
                if ec.curve == EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            _ => continue,
        };
        if let Ok(key) = DecodingKey::from_jwk(&jwk) {
            keys.push(Key { kid: jwk.common.key_id.clone(), algorithm, key });
        }
    }
    Ok(keys)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Keys by id, for a lookup.
pub(crate) fn by_kid(keys: &[Key]) -> HashMap<&str, &Key> {
    keys.iter().filter_map(|k| k.kid.as_deref().map(|kid| (kid, k))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_loopback_unless_allowed() {
        assert!(Jwks::new("https://idp.example/.well-known/jwks.json", false).is_ok());
        assert!(Jwks::new("http://127.0.0.1:9/jwks", false).is_ok());
        assert!(Jwks::new("http://[::1]:9/jwks", false).is_ok());
        assert!(Jwks::new("http://localhost/jwks", false).is_ok());
        let refused = Jwks::new("http://idp.example/jwks", false).unwrap_err().to_string();
        assert!(refused.contains("https"), "{refused}");
        assert!(Jwks::new("http://idp.example/jwks", true).is_ok());
        assert!(Jwks::new("ftp://idp.example/jwks", true).is_err());
        assert!(Jwks::new("not a url", true).is_err());
    }

    #[test]
    fn key_sets_keep_the_signing_keys_they_can_use() {
        let set = serde_json::json!({"keys": [
        {"kty": "RSA", "kid": "r", "use": "sig", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"},
            {"kty": "EC", "kid": "e", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0"},
            {"kty": "weird"}
        ]});
        let keys = parse_key_set(&serde_json::to_vec(&set).unwrap()).unwrap();
        let found: Vec<(Option<&str>, Algorithm)> = keys.iter().map(|k| (k.kid.as_deref(), k.algorithm)).collect();
        assert_eq!(found, [(Some("r"), Algorithm::RS256), (Some("e"), Algorithm::ES256)]);
        assert!(parse_key_set(b"{}").is_err());
    }
}
