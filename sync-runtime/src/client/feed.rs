//! The reader of a server's change feed (`GET /feed`, server-sent events; see
//! sync-server's docs for the wire): which tables changed, so the engine pulls them at
//! once instead of at its next poll. Servers of the Azure family have no feed:
//! [`open`] answers `None` for them and the engine keeps polling.
//!
//! The stream is read with the client's one `reqwest::Client`, without its overall
//! request timeout (which would cut a stream that is meant to last): the connection
//! has the connect timeout, the answer's head [`OPEN_TIMEOUT`], and then a watchdog
//! of three heartbeats without a byte.
//!
//! Why a parser of our own: the SSE crates of the registry either bring a whole HTTP
//! client of their own (`eventsource-client`, `reqwest-eventsource` with its retry
//! policy, which the engine does itself) or do not bound the size of a line or event;
//! the format takes 100 lines ([`SseParser`]).

use std::collections::VecDeque;
use std::time::Duration;

use reqwest::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use serde::Deserialize;

use super::ClientInner;
use crate::error::{Error, Result};
use crate::network_cause::NetworkCause;
use sync_core::ProtocolVersion;

/// How long the answer's head may take to come (the server answers at once).
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest line, and the most data of one event; beyond, the stream is malformed.
const MAX_SIZE: usize = 64 * 1024;
/// Heartbeats without a byte after which the stream counts as lost.
const SILENT_HEARTBEATS: u32 = 3;
/// Far enough not to end a stream (the request's own timeout, which replaces the
/// client's overall timeout for this request; the watchdog does the real work).
const NO_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// What the feed says.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum FeedEvent {
    /// The subscription holds: these tables, with a heartbeat at least this often.
    Ready {
        /// The tables subscribed to, as the server names them.
        tables: Vec<String>,
        /// The server's heartbeat interval.
        heartbeat: Duration,
    },
    /// These tables changed: pull them.
    Change {
        /// The tables changed since the last event.
        tables: Vec<String>,
    },
}

/// An open feed stream (see [`open`]).
#[derive(Debug)]
pub(crate) struct FeedStream {
    response: reqwest::Response,
    parser: SseParser,
    url: String,
    /// How long without a byte before the stream counts as lost.
    watchdog: Duration,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReadyData {
    tables: Vec<String>,
    heartbeat_seconds: f64,
}

#[derive(Deserialize)]
struct ChangeData {
    tables: Vec<String>,
}

/// `<base>/feed?tables=A,B` (each name percent-encoded, the commas not).
fn feed_url(base: &reqwest::Url, tables: &[String]) -> reqwest::Url {
    let mut url = base.clone();
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().push("feed");
    }
    if !tables.is_empty() {
        let names: Vec<String> = tables.iter().map(|t| encode(t)).collect();
        url.set_query(Some(&format!("tables={}", names.join(","))));
    }
    url
}

/// Percent-encodes all but the URL's unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(char::from(byte)),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Subscribes to `tables` (every table when empty). `None`: the server does not offer
/// the feed (404, 405, 410 or 501, or an answer that is not `text/event-stream`), so
/// the caller polls. Refused credentials (after one token refresh) are
/// [`Error::Auth`], other statuses (503 at the server's cap) [`Error::Http`].
pub(crate) async fn open(inner: &ClientInner, tables: &[String]) -> Result<Option<FeedStream>> {
    let url = feed_url(&inner.base, tables);
    let text = url.to_string();
    let network = |e: reqwest::Error| Error::Network { url: text.clone(), source: NetworkCause::new(e) };
    let mut refreshed = false;
    let response = loop {
        let mut request = inner
            .http
            .get(url.clone())
            .timeout(NO_TIMEOUT)
            .header(ProtocolVersion::HEADER, inner.protocol.header_value())
            .header(ACCEPT, "text/event-stream")
            .header(CACHE_CONTROL, "no-cache");
        if let Some(token) = inner.token(refreshed).await {
            request = request.bearer_auth(token);
        }
        let response = match tokio::time::timeout(OPEN_TIMEOUT, request.send()).await {
            Ok(sent) => sent.map_err(network)?,
            Err(_) => return Err(silent(&text, OPEN_TIMEOUT)),
        };
        let status = response.status().as_u16();
        match status {
            401 if inner.token.is_some() && !refreshed => refreshed = true,
            401 | 403 => return Err(Error::Auth { url: text, status }),
            404 | 405 | 410 | 501 => return Ok(None),
            200 => break response,
            _ => {
                let body = response.text().await.unwrap_or_default();
                return Err(Error::Http { url: text, status, message: body.chars().take(300).collect() });
            }
        }
    };
    let is_sse = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("text/event-stream"));
    if !is_sse {
        return Ok(None);
    }
    Ok(Some(FeedStream { response, parser: SseParser::default(), url: text, watchdog: OPEN_TIMEOUT }))
}

/// The stream fell silent for `after`.
fn silent(url: &str, after: Duration) -> Error {
    let cause = std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("the change feed sent nothing for {} ms", after.as_millis()),
    );
    Error::Network { url: url.to_owned(), source: NetworkCause::new(cause) }
}

impl FeedStream {
    /// The next event; `None` when the server ended the stream. An error when nothing
    /// (not even a heartbeat) came for three heartbeats, the connection failed, or the
    /// stream is malformed. Events of other names are skipped.
    pub(crate) async fn next(&mut self) -> Result<Option<FeedEvent>> {
        loop {
            while let Some(event) = self.parser.next_event() {
                if let Some(event) = self.read(event)? {
                    return Ok(Some(event));
                }
            }
            let chunk = match tokio::time::timeout(self.watchdog, self.response.chunk()).await {
                Ok(chunk) => chunk,
                Err(_) => return Err(silent(&self.url, self.watchdog)),
            };
            match chunk {
                Ok(Some(bytes)) => self.parser.push(&bytes).map_err(|message| self.malformed(message))?,
                Ok(None) => return Ok(None),
                Err(e) => return Err(Error::Network { url: self.url.clone(), source: NetworkCause::new(e) }),
            }
        }
    }

    fn malformed(&self, message: impl Into<String>) -> Error {
        Error::Protocol { url: self.url.clone(), message: format!("change feed: {}", message.into()) }
    }

    /// A feed event of an SSE event (`None`: not one of the feed's).
    fn read(&mut self, event: SseEvent) -> Result<Option<FeedEvent>> {
        match event.name.as_str() {
            "ready" => {
                let data: ReadyData =
                    serde_json::from_str(&event.data).map_err(|e| self.malformed(format!("`ready` data: {e}")))?;
                let heartbeat = Duration::try_from_secs_f64(data.heartbeat_seconds)
                    .ok()
                    .filter(|h| !h.is_zero())
                    .ok_or_else(|| self.malformed("`ready` has no usable heartbeatSeconds"))?;
                self.watchdog = heartbeat.saturating_mul(SILENT_HEARTBEATS);
                Ok(Some(FeedEvent::Ready { tables: data.tables, heartbeat }))
            }
            "change" => {
                let data: ChangeData =
                    serde_json::from_str(&event.data).map_err(|e| self.malformed(format!("`change` data: {e}")))?;
                Ok(Some(FeedEvent::Change { tables: data.tables }))
            }
            _ => Ok(None),
        }
    }
}

/// One server-sent event: its name (`message` when it has none) and its data lines,
/// joined by `\n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SseEvent {
    pub(crate) name: String,
    pub(crate) data: String,
}

/// An incremental parser of the `text/event-stream` format (the HTML standard's
/// "interpreting an event stream"): bytes in, in chunks split anywhere; events out.
/// Lines end with CRLF, LF or CR; `:` starts a comment; a blank line dispatches the
/// event (none without data); `id` and `retry` are ignored. A line or an event's data
/// over [`MAX_SIZE`], or a line that is not UTF-8, is an error.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    line: Vec<u8>,
    /// The last byte was a CR: a LF right after it ends nothing more.
    after_cr: bool,
    /// The stream's first line is not read yet (a byte order mark may start it).
    started: bool,
    name: String,
    data: String,
    has_data: bool,
    ready: VecDeque<SseEvent>,
}

impl SseParser {
    /// Reads `bytes`; the events they complete wait in [`SseParser::next_event`].
    pub(crate) fn push(&mut self, bytes: &[u8]) -> std::result::Result<(), String> {
        for &byte in bytes {
            match byte {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    self.end_line()?;
                }
                _ => {
                    self.after_cr = false;
                    if self.line.len() >= MAX_SIZE {
                        return Err(format!("a line longer than {MAX_SIZE} bytes"));
                    }
                    self.line.push(byte);
                }
            }
        }
        Ok(())
    }

    /// The next complete event.
    pub(crate) fn next_event(&mut self) -> Option<SseEvent> {
        self.ready.pop_front()
    }

    fn end_line(&mut self) -> std::result::Result<(), String> {
        let line = std::mem::take(&mut self.line);
        let mut line = String::from_utf8(line).map_err(|_| "a line that is not UTF-8".to_owned())?;
        if !self.started {
            self.started = true;
            if let Some(rest) = line.strip_prefix('\u{feff}') {
                line = rest.to_owned();
            }
        }
        if line.is_empty() {
            let name = std::mem::take(&mut self.name);
            let data = std::mem::take(&mut self.data);
            if std::mem::take(&mut self.has_data) {
                let name = if name.is_empty() { "message".to_owned() } else { name };
                self.ready.push_back(SseEvent { name, data });
            }
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_str(), ""),
        };
        match field {
            "event" => self.name = value.to_owned(),
            "data" => {
                if self.data.len() + value.len() + 1 > MAX_SIZE {
                    return Err(format!("an event with more than {MAX_SIZE} bytes of data"));
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "\u{feff}: hello\r\nevent: ready\r\ndata: {\"tables\":[\"A\"],\"heartbeatSeconds\":15}\r\n\r\n\
                          : heartbeat\n\nevent:change\ndata:{\"tables\":\ndata: [\"A\",\"B\"]}\n\n\
                          id: 7\nretry: 10\n\ndata\n\nevent: change\rdata: x\r\r";

    fn expected() -> Vec<SseEvent> {
        let event = |name: &str, data: &str| SseEvent { name: name.into(), data: data.into() };
        vec![
            event("ready", "{\"tables\":[\"A\"],\"heartbeatSeconds\":15}"),
            event("change", "{\"tables\":\n[\"A\",\"B\"]}"),
            event("message", ""),
            event("change", "x"),
        ]
    }

    fn parse(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        let mut events = Vec::new();
        for chunk in chunks {
            parser.push(chunk).unwrap();
            events.extend(std::iter::from_fn(|| parser.next_event()));
        }
        events
    }

    #[test]
    fn events_come_out_the_same_wherever_the_chunks_split() {
        let bytes = STREAM.as_bytes();
        assert_eq!(parse(&[bytes]), expected());
        for split in 0..=bytes.len() {
            assert_eq!(parse(&[&bytes[..split], &bytes[split..]]), expected(), "split at {split}");
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(parse(&singles), expected());
    }

    #[test]
    fn a_line_or_an_event_too_large_is_an_error() {
        let mut parser = SseParser::default();
        assert!(parser.push(&vec![b'a'; MAX_SIZE + 1]).is_err());
        let mut parser = SseParser::default();
        let line = format!("data: {}\n", "x".repeat(MAX_SIZE / 2));
        parser.push(line.as_bytes()).unwrap();
        assert!(parser.push(line.as_bytes()).is_err(), "the event's data passes the cap");
        let mut parser = SseParser::default();
        assert!(parser.push(b"data: \xff\xfe\n").is_err(), "not UTF-8");
    }

    #[test]
    fn the_url_names_the_tables_with_commas() {
        let base = reqwest::Url::parse("http://h:1/prefix/").unwrap();
        assert_eq!(feed_url(&base, &[]).as_str(), "http://h:1/prefix/feed");
        let url = feed_url(&base, &["TodoItem".into(), "a b,c".into()]);
        assert_eq!(url.as_str(), "http://h:1/prefix/feed?tables=TodoItem,a%20b%2Cc");
    }

    /// Against the real server: discovery, events, the end of the stream.
    mod against_the_server {
        use std::sync::Arc;

        use sync_server::{Server, parse_tables};

        use super::*;
        use crate::client::SyncClient;
        use crate::store::Store;

        async fn sync_client(url: &str) -> SyncClient {
            let store = Store::open_in_memory().await.unwrap();
            // A short overall timeout: the feed must outlive it.
            SyncClient::builder(store, url).timeout(Duration::from_millis(300)).build().unwrap()
        }

        async fn server(feed: bool) -> (sync_server::ServerHandle, String) {
            let tables = parse_tables("[tables.A]\ncolumns = { text = \"string\" }\n[tables.B]\ncolumns = {}\n");
            let server = Server::builder()
                .tables(tables.unwrap())
                .feed(feed)
                .feed_heartbeat(Duration::from_millis(100))
                .build()
                .await
                .unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let handle = server.spawn(listener).unwrap();
            let url = handle.url();
            (handle, url)
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_reader_hears_changes_and_the_end_and_finds_no_feed_where_there_is_none() {
            let (handle, url) = server(true).await;
            let client = sync_client(&url).await;
            let inner: &Arc<ClientInner> = &client.inner;
            let mut feed = open(inner, &["A".into()]).await.unwrap().expect("the server offers the feed");
            let ready = feed.next().await.unwrap().unwrap();
            assert_eq!(ready, FeedEvent::Ready { tables: vec!["A".into()], heartbeat: Duration::from_millis(100) });

            // Heartbeats only, for longer than the client's overall timeout: no event, no error.
            let quiet = tokio::time::timeout(Duration::from_millis(800), feed.next()).await;
            assert!(quiet.is_err(), "nothing but heartbeats: {quiet:?}");
            let write = reqwest::Client::new()
                .post(format!("{url}/tables/A"))
                .header(ProtocolVersion::HEADER, "3.0.0")
                .json(&serde_json::json!({ "text": "x" }))
                .send()
                .await
                .unwrap();
            assert_eq!(write.status(), 201);
            assert_eq!(feed.next().await.unwrap(), Some(FeedEvent::Change { tables: vec!["A".into()] }));

            // An unknown table: the server's 404 says the feed has no such table... and
            // the reader cannot tell it from a server without the feed: it polls.
            assert!(open(inner, &["Nope".into()]).await.unwrap().is_none());
            handle.shutdown().await.unwrap();
            assert_eq!(feed.next().await.unwrap(), None, "the server ended the stream");

            let (handle, url) = server(false).await;
            let client = sync_client(&url).await;
            assert!(open(&client.inner, &[]).await.unwrap().is_none(), "no feed: 404");
            handle.shutdown().await.unwrap();
        }

        #[tokio::test]
        async fn a_silent_stream_is_an_error_after_three_heartbeats() {
            // A server that answers as a feed, says `ready`, and then nothing.
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let serving = tokio::spawn(async move {
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut head = [0u8; 1024];
                let _ = socket.read(&mut head).await.unwrap();
                let body = "event: ready\ndata: {\"tables\":[\"A\"],\"heartbeatSeconds\":0.05}\n\n";
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n",
                    body.len()
                );
                socket.write_all(answer.as_bytes()).await.unwrap();
                tokio::time::sleep(Duration::from_secs(5)).await;
            });
            let client = sync_client(&url).await;
            let mut feed = open(&client.inner, &[]).await.unwrap().unwrap();
            assert!(matches!(feed.next().await.unwrap(), Some(FeedEvent::Ready { .. })));
            let lost = feed.next().await.unwrap_err();
            assert!(lost.is_network(), "{lost:?}");
            serving.abort();
        }
    }
}
