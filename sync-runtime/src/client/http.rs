//! One HTTP exchange with the server: headers, the token, one refresh after a 401,
//! and retries of 5xx / 429 answers with capped exponential backoff and jitter.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};

use crate::error::{Error, Result};
use crate::network_cause::NetworkCause;
use sync_core::ProtocolVersion;

use super::ClientInner;

/// A server answer, its body read whole (one item, or one page).
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
    pub(crate) url: String,
    /// The size of the request body that got this answer.
    pub(crate) sent_bytes: usize,
    /// The request was sent again after a 5xx / 429 answer: an earlier try may have been
    /// applied although its answer said otherwise (e.g. a gateway timing out).
    pub(crate) retried: bool,
}

impl Answer {
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body bytes of the exchange: the request's sent and the answer's received.
    pub(crate) fn bytes(&self) -> u64 {
        (self.sent_bytes + self.body.len()) as u64
    }

    /// The body as JSON, if it is JSON.
    pub(crate) fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// A short text of the body for messages.
    pub(crate) fn message(&self) -> String {
        if let Some(serde_json::Value::Object(map)) = self.json() {
            for key in ["message", "error", "detail", "title"] {
                if let Some(serde_json::Value::String(s)) = map.get(key) {
                    return s.clone();
                }
            }
        }
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        if text.is_empty() {
            StatusCode::from_u16(self.status).ok().and_then(|s| s.canonical_reason()).unwrap_or("").to_owned()
        } else {
            text.chars().take(300).collect()
        }
    }
}

/// A request to send: rebuilt for each retry.
#[derive(Clone)]
pub(crate) struct Request {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) if_match: Option<String>,
    pub(crate) body: Option<serde_json::Value>,
}

/// `<base>/tables/<table>[/<id>]`, each segment percent-encoded.
pub(crate) fn table_url(base: &Url, table: &str, id: Option<&str>) -> Url {
    let mut url = base.clone();
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().push("tables").push(table);
        if let Some(id) = id {
            segments.push(id);
        }
    }
    url
}

/// A delay jittered between half and all of `delay`, so that clients that failed
/// together do not try again together.
pub(crate) fn jitter(delay: Duration) -> Duration {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(delay.as_nanos());
    let frac = (h.finish() % 1000) as f64 / 1000.0;
    delay.mul_f64(0.5 + frac / 2.0)
}

/// Whether a status means "the server is unavailable right now".
pub(crate) fn is_unavailable(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

impl ClientInner {
    /// The bearer token of a request, from the token provider (`refreshed`: the last
    /// one was refused, ask for a new one); `None` without a provider.
    pub(crate) async fn token(&self, refreshed: bool) -> Option<String> {
        match &self.token {
            Some(provider) => provider(refreshed).await,
            None => None,
        }
    }

    /// `<base>/tables/<table>[/<id>]`, each segment percent-encoded.
    pub(crate) fn table_url(&self, table: &str, id: Option<&str>) -> Url {
        table_url(&self.base, table, id)
    }

    /// Sends a request: the token, one refresh after a 401, and retries of 5xx / 429
    /// answers by the retry policy. Returns the last answer, whatever its status, except
    /// that network failures and refused credentials are errors.
    pub(crate) async fn send(&self, req: &Request) -> Result<Answer> {
        let mut refreshed = false;
        let mut attempt = 0u32;
        loop {
            let token = self.token(refreshed).await;
            let mut answer = self.send_once(req, token.as_deref()).await?;
            answer.0.retried = attempt > 0;
            if matches!(answer.0.status, 401 | 403) {
                if answer.0.status == 401 && self.token.is_some() && !refreshed {
                    refreshed = true;
                    continue;
                }
                return Err(Error::Auth { url: answer.0.url, status: answer.0.status });
            }
            let status = answer.0.status;
            if (is_unavailable(status) || status == 500) && attempt < self.retry.max_retries {
                let delay = self.backoff(attempt, answer.1);
                tracing::debug!(status, attempt, ?delay, url = %answer.0.url, "retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
                continue;
            }
            return Ok(answer.0);
        }
    }

    async fn send_once(&self, req: &Request, token: Option<&str>) -> Result<(Answer, Option<Duration>)> {
        let url = req.url.to_string();
        let mut builder = self
            .http
            .request(req.method.clone(), req.url.clone())
            .header(ProtocolVersion::HEADER, self.protocol.header_value())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(token) = token {
            builder = builder.bearer_auth(token);
        }
        if let Some(version) = &req.if_match {
            builder = builder.header(reqwest::header::IF_MATCH, format!("\"{}\"", version.replace('"', "")));
        }
        // The body serialized here rather than by `RequestBuilder::json`, to know its size
        // (for progress events).
        let mut sent_bytes = 0;
        if let Some(body) = &req.body {
            let bytes = serde_json::to_vec(body).map_err(|e| Error::Config {
                message: "a request body does not serialize as JSON".into(),
                source: Some(Box::new(e)),
            })?;
            sent_bytes = bytes.len();
            builder = builder.header(reqwest::header::CONTENT_TYPE, "application/json").body(bytes);
        }
        // The HTTP stack's error stays whole, as the source: its chain says what failed.
        let network = |e: reqwest::Error| Error::Network { url: url.clone(), source: NetworkCause::new(e) };
        let response = builder.send().await.map_err(network)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.bytes().await.map_err(network)?.to_vec();
        Ok((Answer { status, body, url, sent_bytes, retried: false }, retry_after))
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let policy = &self.retry;
        let exp = policy.base_delay.saturating_mul(1u32 << attempt.min(16));
        let capped = exp.min(policy.max_delay);
        let jittered = jitter(capped);
        match retry_after {
            Some(ra) => ra.min(policy.max_delay).max(jittered),
            None => jittered,
        }
    }
}
