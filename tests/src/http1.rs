//! Just enough HTTP/1.1 framing for the fault-injecting proxy and the raw-request
//! fuzzers: read one request (head and `Content-Length` body), read one response to the
//! end of the connection, and split it into status, headers and (de-chunked) body.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest request or response head read.
pub const MAX_HEAD: usize = 64 * 1024;
/// The largest body read.
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// A parsed message head: the start line and the header fields, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// `GET /x HTTP/1.1` or `HTTP/1.1 200 OK`.
    pub start_line: String,
    /// Header fields as sent (names keep their case).
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first header of this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// `Content-Length`, when present and a number.
    pub fn content_length(&self) -> Option<usize> {
        self.header("content-length").and_then(|v| v.trim().parse().ok())
    }

    /// Whether the body is chunked.
    pub fn is_chunked(&self) -> bool {
        self.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    /// The request method (first word of the start line).
    pub fn method(&self) -> &str {
        self.start_line.split(' ').next().unwrap_or("")
    }

    /// The request target (second word of the start line).
    pub fn target(&self) -> &str {
        self.start_line.split(' ').nth(1).unwrap_or("")
    }

    /// The response status (second word of the start line), 0 if unreadable.
    pub fn status(&self) -> u16 {
        self.start_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
    }

    /// The head as bytes, with `Connection: close` in place of any `Connection` or
    /// `Keep-Alive` header.
    pub fn to_bytes_closing(&self) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.start_line);
        for (n, v) in &self.headers {
            if n.eq_ignore_ascii_case("connection") || n.eq_ignore_ascii_case("keep-alive") {
                continue;
            }
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        out.push_str("connection: close\r\n\r\n");
        out.into_bytes()
    }
}

/// The index just past the `\r\n\r\n` that ends a head, if `buf` holds one.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Parses a head (the bytes up to and including the blank line).
pub fn parse_head(bytes: &[u8]) -> Result<Head, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the head is not UTF-8".to_owned())?;
    let mut lines = text.split("\r\n");
    let start_line = lines.next().unwrap_or_default().to_owned();
    if start_line.is_empty() {
        return Err("empty start line".into());
    }
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let (name, value) = line.split_once(':').ok_or_else(|| format!("a header line without `:`: {line:?}"))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    Ok(Head { start_line, headers })
}

/// One request as read from a client.
#[derive(Clone, Debug)]
pub struct RawRequest {
    /// Its head.
    pub head: Head,
    /// Its body (`Content-Length` bytes).
    pub body: Vec<u8>,
}

/// Reads one request: `Ok(None)` when the peer closed before sending a head. Chunked
/// request bodies are not supported (the sync client always sends a length).
pub async fn read_request(stream: &mut TcpStream) -> io::Result<Option<RawRequest>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(end) = head_end(&buf) {
            break end;
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "request head too large"));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the request head was cut"))
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = parse_head(&buf[..end]).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if head.is_chunked() {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "chunked request bodies are not supported"));
    }
    let len = head.content_length().unwrap_or(0);
    if len > MAX_BODY {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "request body too large"));
    }
    let mut body = buf[end..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the request body was cut"));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    Ok(Some(RawRequest { head, body }))
}

/// A response as read off the wire.
#[derive(Clone, Debug)]
pub struct RawResponse {
    /// Its head.
    pub head: Head,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// Every byte received, as received.
    pub raw: Vec<u8>,
}

impl RawResponse {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.head.status()
    }

    /// The body as JSON, if it is.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Splits a whole response (read to the end of the connection).
pub fn parse_response(raw: Vec<u8>) -> Result<RawResponse, String> {
    let end = head_end(&raw).ok_or("no complete response head")?;
    let head = parse_head(&raw[..end])?;
    let rest = &raw[end..];
    let body = if head.is_chunked() {
        dechunk(rest)?
    } else if let Some(len) = head.content_length() {
        if rest.len() < len {
            return Err(format!("the body is cut: {} of {len} bytes", rest.len()));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(RawResponse { head, body, raw })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").ok_or("a chunk size line is cut")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| "a chunk size is not text")?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if rest.len() < size + 2 {
            return Err("a chunk is cut".into());
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Reads from `stream` until the peer closes (or `limit` passes).
pub async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    match tokio::time::timeout(limit, stream.read_to_end(&mut raw)).await {
        Ok(Ok(_)) => Ok(raw),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "the peer did not close in time")),
    }
}

/// Sends raw request bytes on a new connection and reads the response until the server
/// closes. The request should carry `Connection: close`.
pub async fn exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request).await?;
    read_to_close(&mut stream, limit).await
}

/// Builds a request with `Connection: close`, a `Content-Length` when there is a body,
/// and the given extra headers.
pub fn request(method: &str, target: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n");
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    if let Some(body) = body {
        out.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if let Some(body) = body {
        bytes.extend_from_slice(body);
    }
    bytes
}
