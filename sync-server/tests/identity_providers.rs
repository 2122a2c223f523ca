//! Issue 19: tokens from real identity providers. `aud` and `iss` are checked when
//! configured (a token carrying `aud` was refused before), and RS256/ES256 tokens verify
//! with a PEM public key or the keys of a JWKS URL, here served on loopback by the test.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{V3, builder, send, start};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value as Json, json};
use sync_server::Auth;
use sync_server::auth::KeyAlgorithm;

const RS256_PRIVATE: &[u8] = include_bytes!("keys/rs256_private.pem");
const RS256_PUBLIC: &[u8] = include_bytes!("keys/rs256_public.pem");
const ES256_PRIVATE: &[u8] = include_bytes!("keys/es256_private.pem");
const ES256_PUBLIC: &[u8] = include_bytes!("keys/es256_public.pem");

/// The public keys above as JWKs.
fn rs256_jwk(kid: &str) -> Json {
    json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "e": "AQAB",
        "n": "n94A_r0K_GRblTiY5WkzGg6tSyblLm8TeNjhLgsmz3OzDza6DeSCJcxAg9B3mZ4ZQmMX8mZPMjs8A_nQQQHi2wmIXXz9hmt6CI-OzEYfVhzvuYsgKtfCb9LcKkfId57wp4kb6DqUCLg8VQmOYhDfcI9FLUXA-sRt6SlyDb1NCHZKLNP4Ns5J3sKEBY67BU3UcDF6LCMwW8S67vvjMXijI5VSRPtmiliuNo6d2YOLkrfOca7VTs5c3KUM5o_nTrR2TrUvQJ_dLBFKejm5YSZE6ApRnUt2NsqHq6cLYwzpZIvWxeIoP9R_Mh6pNePONFO3VAOcpOisnOXNNx-ddcXU8w"})
}

fn es256_jwk(kid: &str) -> Json {
    json!({"kty": "EC", "kid": kid, "crv": "P-256",
        "x": "IrusTBswEFbqf6jYraKhhGATS-b5dhuzFVFEr2l_e2I", "y": "dfo-y8K2E3eSimxv_U8rX96mDJEIv0RTgoeomLuL35g"})
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Json) -> String {
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(RS256_PRIVATE).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(ES256_PRIVATE).unwrap(),
        Algorithm::HS256 => EncodingKey::from_secret(common::SECRET.as_bytes()),
        other => panic!("{other:?}"),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn claims(extra: Json) -> Json {
    let mut claims = json!({"sub": "alice", "exp": now() + 600});
    claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    claims
}

async fn status(s: &common::TestServer, token: &str) -> u16 {
    send(s.req(V3, Method::GET, "/tables/TodoItem").bearer_auth(token)).await.0.as_u16()
}

#[tokio::test]
async fn tokens_carrying_aud_are_accepted_and_aud_and_iss_are_checked_when_configured() {
    let s = start(builder().auth(Auth::jwt_hs256(common::SECRET).unwrap())).await;
    let with_aud = sign(Algorithm::HS256, None, &claims(json!({"aud": "whatever", "iss": "anyone"})));
    assert_eq!(status(&s, &with_aud).await, 200, "an aud is no reason to refuse when none is configured");
    s.stop().await;

    let auth = Auth::jwt_hs256(common::SECRET).unwrap().audience("sync-api").issuer("https://idp.example/");
    let s = start(builder().auth(auth)).await;
    for (extra, expected) in [
        (json!({"aud": "sync-api", "iss": "https://idp.example/"}), 200),
        (json!({"aud": ["other", "sync-api"], "iss": "https://idp.example/"}), 200),
        (json!({"aud": "other", "iss": "https://idp.example/"}), 401),
        (json!({"iss": "https://idp.example/"}), 401),
        (json!({"aud": "sync-api", "iss": "https://evil.example/"}), 401),
        (json!({"aud": "sync-api"}), 401),
    ] {
        let token = sign(Algorithm::HS256, None, &claims(extra.clone()));
        assert_eq!(status(&s, &token).await, expected, "{extra}");
    }
    let wrong = sign(Algorithm::HS256, None, &claims(json!({"aud": "other", "iss": "https://idp.example/"})));
    let (_, headers, body) = send(s.req(V3, Method::GET, "/tables/TodoItem").bearer_auth(&wrong)).await;
    assert!(headers["www-authenticate"].to_str().unwrap().contains("invalid_token"));
    assert!(body["message"].as_str().unwrap().contains("`aud`"), "{body}");
    s.stop().await;
}

#[tokio::test]
async fn rs256_and_es256_tokens_verify_with_a_pem_public_key() {
    for (algorithm, alg, public, other) in [
        (KeyAlgorithm::Rs256, Algorithm::RS256, RS256_PUBLIC, Algorithm::ES256),
        (KeyAlgorithm::Es256, Algorithm::ES256, ES256_PUBLIC, Algorithm::RS256),
    ] {
        let auth = Auth::jwt_public_key_pem(algorithm, public).unwrap().audience("sync-api");
        let s = start(builder().auth(auth)).await;
        let good = sign(alg, None, &claims(json!({"aud": "sync-api"})));
        assert_eq!(status(&s, &good).await, 200, "{alg:?}");
        assert_eq!(status(&s, &sign(alg, None, &claims(json!({"aud": "x"})))).await, 401, "{alg:?}: aud");
        assert_eq!(status(&s, &sign(other, None, &claims(json!({"aud": "sync-api"})))).await, 401, "{alg:?}");
        // The public key used as an HS256 secret (algorithm confusion) is refused.
        let confused = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(json!({"aud": "sync-api"})),
            &EncodingKey::from_secret(public),
        )
        .unwrap();
        assert_eq!(status(&s, &confused).await, 401, "{alg:?}: HS256 with the public key");
        s.stop().await;
    }
    assert!(Auth::jwt_public_key_pem(KeyAlgorithm::Rs256, ES256_PUBLIC).is_err());
    assert!(Auth::jwt_public_key_pem(KeyAlgorithm::Es256, b"not a key").is_err());
}

/// A JWKS endpoint on loopback whose key set the test changes, counting fetches.
struct KeySet {
    url: String,
    keys: Arc<std::sync::Mutex<Json>>,
    fetches: Arc<AtomicUsize>,
}

async fn serve_key_set(keys: Json) -> KeySet {
    let keys = Arc::new(std::sync::Mutex::new(keys));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (k, f) = (Arc::clone(&keys), Arc::clone(&fetches));
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let (k, f) = (Arc::clone(&k), Arc::clone(&f));
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                axum::Json(k.lock().unwrap().clone())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    KeySet { url, keys, fetches }
}

#[tokio::test]
async fn jwks_keys_are_fetched_cached_and_refreshed_for_an_unknown_kid_at_a_bounded_rate() {
    let set = serve_key_set(
        json!({"keys": [rs256_jwk("r1"), {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"}]}),
    )
    .await;
    let interval = Duration::from_millis(400);
    let auth = Auth::jwks_url(&set.url).unwrap().jwks_refresh_interval(interval).issuer("https://idp.example/");
    let s = start(builder().auth(auth)).await;
    let iss = json!({"iss": "https://idp.example/"});

    // Fetched once on first use, then cached.
    let r1 = sign(Algorithm::RS256, Some("r1"), &claims(iss.clone()));
    for _ in 0..20 {
        assert_eq!(status(&s, &r1).await, 200);
    }
    assert_eq!(set.fetches.load(Ordering::SeqCst), 1);
    // A token of a key the provider does not have, or of a key signed by another key,
    // is refused.
    let forged = sign(Algorithm::ES256, Some("r1"), &claims(iss.clone()));
    assert_eq!(status(&s, &forged).await, 401);

    // The provider rotates: a token of its new key makes the server fetch the set again.
    *set.keys.lock().unwrap() = json!({"keys": [rs256_jwk("r1"), es256_jwk("e2")]});
    tokio::time::sleep(interval + Duration::from_millis(100)).await;
    let e2 = sign(Algorithm::ES256, Some("e2"), &claims(iss.clone()));
    assert_eq!(status(&s, &e2).await, 200);
    let fetched = set.fetches.load(Ordering::SeqCst);
    assert_eq!(fetched, 2);
    // A flood of tokens naming unknown keys fetches at most once per interval.
    let unknown: Vec<String> =
        (0..40).map(|i| sign(Algorithm::RS256, Some(&format!("nope{i}")), &claims(iss.clone()))).collect();
    let started = std::time::Instant::now();
    let tasks: Vec<_> = unknown
        .into_iter()
        .map(|token| {
            let (client, url) = (s.client.clone(), format!("{}/tables/TodoItem", s.url));
            tokio::spawn(async move {
                let request = client.get(url).header("ZUMO-API-VERSION", V3).bearer_auth(token);
                request.send().await.unwrap().status().as_u16()
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    assert!(answers.iter().all(|a| *a == 401), "{answers:?}");
    let elapsed = started.elapsed();
    let allowed = 1 + (elapsed.as_millis() / interval.as_millis()) as usize;
    let more = set.fetches.load(Ordering::SeqCst) - fetched;
    assert!(more <= allowed, "{more} fetches in {elapsed:?}");
    // Without a kid, every key of the token's algorithm is tried.
    let no_kid = sign(Algorithm::ES256, None, &claims(iss.clone()));
    assert_eq!(status(&s, &no_kid).await, 200);
    s.stop().await;

    // Plain http off loopback needs the explicit opt-in.
    assert!(Auth::jwks_url("http://idp.example/jwks").is_err());
    assert!(Auth::jwks_url_allowing_http("http://idp.example/jwks").is_ok());
}
