//! Where the server's links point: the `Location` of an insert, v3's `nextLink` and v2's
//! `Link` header.
//!
//! They are never built from what a client can forge, unless the operator says so:
//!
//! 1. a configured public URL ([`crate::ServerBuilder::public_url`], `--public-url`) is
//!    the origin (and path prefix) of every link;
//! 2. else, with [`crate::ServerBuilder::trust_forwarded_headers`] (the server sits behind
//!    a proxy that sets them), `X-Forwarded-Proto` and `X-Forwarded-Host` (else `Host`);
//! 3. else `Location` is relative (`/tables/T/<id>`, which RFC 9110 allows), and page
//!    links are absolute on the address the connection was accepted on: the server's own
//!    socket, which no header changes (the family's clients follow page links as given).
//!    When the router is served by someone else ([`crate::Server::router`]), page links
//!    are relative too.

use std::net::SocketAddr;

use axum::http::{HeaderMap, header};

use crate::error::Error;

/// How links are made; see the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LinkSettings {
    /// `scheme://host[:port][/prefix]`, without a trailing `/`.
    pub(crate) public_url: Option<String>,
    /// Whether `X-Forwarded-Proto` / `X-Forwarded-Host` say where the client connected.
    pub(crate) trust_forwarded: bool,
}

/// The address a connection was accepted on, put into each of its requests by the
/// serve loop.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LocalAddr(pub(crate) SocketAddr);

/// The origins of a request's links (an extractor: see `preamble.rs`).
#[derive(Debug)]
pub(crate) struct Links {
    /// Configured or (trusted) forwarded: what the client sees.
    public: Option<String>,
    /// `http://<local socket address>`, when the serve loop said it.
    local: Option<String>,
}

impl Links {
    /// The origins for a request with these headers, accepted on `local`.
    pub(crate) fn new(
        public_url: Option<&str>,
        trust_forwarded: bool,
        headers: &HeaderMap,
        local: Option<SocketAddr>,
    ) -> Links {
        let public = match public_url {
            Some(url) => Some(url.to_owned()),
            None if trust_forwarded => forwarded_origin(headers),
            None => None,
        };
        Links { public, local: local.map(|addr| format!("http://{addr}")) }
    }

    /// The `Location` of the item at `path`: absolute only on a configured or trusted origin.
    pub(crate) fn location(&self, path: &str) -> String {
        match &self.public {
            Some(origin) => format!("{origin}{path}"),
            None => path.to_owned(),
        }
    }

    /// The base of a page link to `path`.
    pub(crate) fn page(&self, path: &str) -> String {
        match self.public.as_ref().or(self.local.as_ref()) {
            Some(origin) => format!("{origin}{path}"),
            None => path.to_owned(),
        }
    }
}

/// `<X-Forwarded-Proto>://<X-Forwarded-Host or Host>` (the first value of each), when the
/// host looks like a host.
fn forwarded_origin(headers: &HeaderMap) -> Option<String> {
    let first =
        |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.split(',').next()).map(str::trim);
    let host = first("x-forwarded-host").or_else(|| first(header::HOST.as_str())).filter(|h| is_host(h))?;
    let scheme = match first("x-forwarded-proto") {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    Some(format!("{scheme}://{host}"))
}

/// A host with an optional port: letters, digits, `.-_:[]`.
fn is_host(host: &str) -> bool {
    !host.is_empty() && host.len() <= 255 && host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
}

/// Checks a configured public URL: `http://` or `https://`, a host, an optional path
/// prefix; no query or fragment. Answers it without a trailing `/`.
pub(crate) fn check_public_url(url: &str) -> Result<String, Error> {
    let bad = |message: &str| Err(Error::Setting { name: "public_url", message: message.to_owned() });
    let url = url.trim_end_matches('/');
    let Some(rest) = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")) else {
        return bad("must start with http:// or https://");
    };
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if !is_host(host) {
        return bad("must name a host (and port), e.g. https://sync.example.com");
    }
    if path.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b"?#\"<>\\".contains(&b)) {
        return bad("a path prefix only; no query, fragment, spaces or quotes");
    }
    Ok(url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs.iter().map(|(n, v)| (n.parse().unwrap(), v.parse().unwrap())).collect()
    }

    #[test]
    fn forwarded_headers_give_the_origin_only_when_they_look_right() {
        let h =
            headers(&[("host", "internal:8080"), ("x-forwarded-proto", "https"), ("x-forwarded-host", "a.example")]);
        assert_eq!(forwarded_origin(&h).as_deref(), Some("https://a.example"));
        let h = headers(&[("host", "b.example, c"), ("x-forwarded-proto", "gopher")]);
        assert_eq!(forwarded_origin(&h).as_deref(), Some("http://b.example"));
        assert_eq!(forwarded_origin(&headers(&[("host", "evil/x")])), None);
        assert_eq!(forwarded_origin(&HeaderMap::new()), None);
    }

    #[test]
    fn public_urls_are_checked() {
        assert_eq!(check_public_url("https://sync.example.com/").unwrap(), "https://sync.example.com");
        assert_eq!(check_public_url("http://[::1]:8080/api").unwrap(), "http://[::1]:8080/api");
        for bad in ["sync.example.com", "ftp://x", "https://", "https://x?y=1", "https://x/a#b", "https://a b"] {
            assert!(check_public_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn links_prefer_the_public_origin_then_the_socket() {
        let links = Links { public: None, local: Some("http://127.0.0.1:9".into()) };
        assert_eq!(links.location("/tables/T/a"), "/tables/T/a");
        assert_eq!(links.page("/tables/T"), "http://127.0.0.1:9/tables/T");
        let links = Links { public: Some("https://p.example/x".into()), local: Some("http://127.0.0.1:9".into()) };
        assert_eq!(links.location("/tables/T/a"), "https://p.example/x/tables/T/a");
        assert_eq!(links.page("/tables/T"), "https://p.example/x/tables/T");
        assert_eq!(Links { public: None, local: None }.page("/tables/T"), "/tables/T");
    }
}
