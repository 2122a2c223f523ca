//! The properties the fuzzers check, shared by the proptest fuzzers of
//! `tests/tests/reliability_fuzz.rs` (part of `cargo test`) and the cargo-fuzz targets
//! in `fuzz/` (longer runs): whatever the input, no panic, no hang, a clear error, and
//! nothing stored that cannot be read back.
//!
//! - [`check_filter`]: the OData `$filter` parser, without and with a schema, and the
//!   printer reading its own output back.
//! - [`ServerHarness`]: a real `sync-server` (SQLite in memory, a table with a column of
//!   every type) fed arbitrary requests over TCP: every answer is a success or a 4xx
//!   with a JSON error body, never a 5xx or a dropped connection; and a typed client can
//!   pull every row the server accepted.
//! - [`ClientHarness`]: a server double answering arbitrary bytes to a client's push or
//!   pull: the client returns a result or a clear error, its queue is intact unless the
//!   answer was a success, and its store stays sound and readable.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sync_runtime::odata::{self, FilterSchema};
use sync_runtime::{ColumnType, ProtocolVersion, Query, Store, SyncClient};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::http1;
use crate::{Everything, TodoItem};

/// The columns of [`Everything`], for the schema-checked parse.
#[derive(Clone, Copy, Debug, Default)]
pub struct EverythingSchema;

impl FilterSchema for EverythingSchema {
    fn column(&self, name: &str) -> Option<(ColumnType, bool)> {
        use sync_runtime::FieldRole;
        if matches!(name, "version" | "updatedAt" | "createdAt") {
            return Some((ColumnType::String, true));
        }
        if name == "deleted" {
            return Some((ColumnType::Bool, false));
        }
        <Everything as sync_runtime::SyncEntity>::FIELD_DEFS
            .iter()
            .find(|d| d.column == name && matches!(d.role, FieldRole::Data | FieldRole::Id))
            .map(|d| (d.ty, d.nullable))
    }
}

/// Parses `text` as a `$filter` without and with a schema. Whatever parses must print
/// (for both protocol generations) to text that parses again and prints the same: the
/// printer and the parser agree on everything the parser accepts.
pub fn check_filter(text: &str) -> Result<(), String> {
    let schema = EverythingSchema;
    for with_schema in [false, true] {
        let parsed = odata::parse_filter(text, with_schema.then_some(&schema as &dyn FilterSchema));
        let expr = match parsed {
            Ok(expr) => expr,
            Err(e) => {
                if e.message.is_empty() || e.position > text.len() {
                    return Err(format!("an unclear error for {text:?}: {e:?}"));
                }
                continue;
            }
        };
        for version in [ProtocolVersion::V2, ProtocolVersion::V3] {
            let printed = odata::print_filter(&expr, version);
            let again = odata::parse_filter(&printed, None)
                .map_err(|e| format!("{text:?} parsed, but its printed form {printed:?} ({version}) does not: {e}"))?;
            let reprinted = odata::print_filter(&again, version);
            if reprinted != printed {
                return Err(format!("{text:?} prints as {printed:?} ({version}), which reads back as {reprinted:?}"));
            }
        }
    }
    Ok(())
}

/// One request for the server fuzzer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuzzRequest {
    /// `GET`, `POST`, `PATCH`, `PUT`, `DELETE`, or anything.
    pub method: String,
    /// The request target (path and query, already URL-encoded or not).
    pub target: String,
    /// Extra headers (`ZUMO-API-VERSION` is added unless present).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Option<Vec<u8>>,
}

impl FuzzRequest {
    /// A request from raw fuzzer bytes: the first byte picks the method and path, the
    /// second the protocol and `If-Match`, the rest is the body (or, for a list, the
    /// `$filter`).
    pub fn from_bytes(data: &[u8]) -> FuzzRequest {
        let pick = data.first().copied().unwrap_or(0);
        let flags = data.get(1).copied().unwrap_or(0);
        let rest = data.get(2..).unwrap_or_default();
        let table = if pick & 0x40 == 0 { "Everything" } else { "TodoItem" };
        let (method, target, body) = match pick % 6 {
            0 => ("POST", format!("/tables/{table}"), Some(rest.to_vec())),
            1 => ("PATCH", format!("/tables/{table}/a"), Some(rest.to_vec())),
            2 => ("PUT", format!("/tables/{table}/a"), Some(rest.to_vec())),
            3 => ("DELETE", format!("/tables/{table}/a"), None),
            4 => ("GET", format!("/tables/{table}?$filter={}", encode_query(&String::from_utf8_lossy(rest))), None),
            _ => ("GET", format!("/tables/{table}?$orderby={}", encode_query(&String::from_utf8_lossy(rest))), None),
        };
        let mut headers =
            vec![("zumo-api-version".to_owned(), if flags & 1 == 0 { "2.0.0" } else { "3.0.0" }.to_owned())];
        if flags & 2 != 0 {
            headers.push(("if-match".into(), "\"nope\"".into()));
        }
        FuzzRequest { method: method.into(), target, headers, body }
    }
}

/// Percent-encodes everything but unreserved characters.
pub fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A `sync-server` on its own thread and runtime, serving [`TodoItem`] and
/// [`Everything`] from in-memory SQLite, with a 64 KiB body limit.
#[derive(Debug)]
pub struct ServerHarness {
    addr: SocketAddr,
    runtime: tokio::runtime::Runtime,
    _server: std::thread::JoinHandle<()>,
}

/// The body limit of the harness's server.
pub const HARNESS_MAX_BODY: usize = 64 * 1024;

impl ServerHarness {
    /// Starts the server.
    pub fn start() -> ServerHarness {
        let (tx, rx) = std::sync::mpsc::channel();
        let server = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
            rt.block_on(async move {
                let server = sync_server::Server::builder()
                    .table::<TodoItem>()
                    .table::<Everything>()
                    .max_body(HARNESS_MAX_BODY)
                    .build()
                    .await
                    .expect("the fuzzed server builds");
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                // Serves until the process ends.
                let _ = server.serve(listener, std::future::pending()).await;
            });
        });
        let addr = rx.recv().expect("the fuzzed server started");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        ServerHarness { addr, runtime, _server: server }
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends one request; the answer must be a success or a 4xx with a JSON error body.
    pub fn check(&self, req: &FuzzRequest) -> Result<u16, String> {
        let mut headers: Vec<(&str, &str)> = req.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        if req.body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        let raw = http1::request(&req.method, &req.target, &headers, req.body.as_deref());
        let answer = self
            .runtime
            .block_on(http1::exchange(self.addr, &raw, Duration::from_secs(20)))
            .map_err(|e| format!("{req:?}: the connection failed: {e}"))?;
        let response = http1::parse_response(answer).map_err(|e| format!("{req:?}: an unreadable answer: {e}"))?;
        let status = response.status();
        if !(200..500).contains(&status) {
            return Err(format!("{req:?}: HTTP {status}: {}", String::from_utf8_lossy(&response.body)));
        }
        if status >= 400 {
            let body = response.json().ok_or_else(|| format!("{req:?}: HTTP {status} without a JSON body"))?;
            let message = body.get("message").and_then(|m| m.as_str()).unwrap_or_default();
            if message.is_empty() {
                return Err(format!("{req:?}: HTTP {status} without a message: {body}"));
            }
        }
        Ok(status)
    }

    /// The server still answers its health check.
    pub fn check_health(&self) -> Result<(), String> {
        let raw = http1::request("GET", "/healthz", &[], None);
        let answer = self.runtime.block_on(http1::exchange(self.addr, &raw, Duration::from_secs(20)));
        match answer.map_err(|e| e.to_string()).and_then(http1::parse_response) {
            Ok(r) if r.status() == 200 => Ok(()),
            Ok(r) => Err(format!("healthz answered {}", r.status())),
            Err(e) => Err(format!("healthz failed: {e}")),
        }
    }

    /// A typed client pulls every table: whatever the server accepted must be readable.
    pub fn check_client_reads_everything(&self) -> Result<(), String> {
        let url = format!("http://{}", self.addr);
        self.runtime.block_on(async {
            let store = Store::open_in_memory().await.map_err(|e| e.to_string())?;
            for protocol in [ProtocolVersion::V2, ProtocolVersion::V3] {
                let client = SyncClient::builder(store.clone(), url.clone())
                    .protocol(protocol)
                    .build()
                    .map_err(|e| e.to_string())?;
                client
                    .pull(Query::<Everything>::new(), None)
                    .await
                    .map_err(|e| format!("a typed client cannot pull what the server accepted ({protocol}): {e}"))?;
                client
                    .pull(Query::<TodoItem>::new(), None)
                    .await
                    .map_err(|e| format!("a typed client cannot pull what the server accepted ({protocol}): {e}"))?;
                // Every stored row reads back as a typed item.
                let all = store.table::<Everything>().await.map_err(|e| e.to_string())?.fetch(&Query::new()).await;
                all.map_err(|e| format!("a row the server accepted does not read back as `Everything`: {e}"))?;
                let all = store.table::<TodoItem>().await.map_err(|e| e.to_string())?.fetch(&Query::new()).await;
                all.map_err(|e| format!("a row the server accepted does not read back as `TodoItem`: {e}"))?;
            }
            Ok(())
        })
    }
}

/// One canned answer of the server double.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuzzAnswer {
    /// The status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The `Content-Length` to claim (`None`: the body's real length).
    pub content_length: Option<usize>,
    /// The body.
    pub body: Vec<u8>,
}

impl FuzzAnswer {
    /// An answer from raw fuzzer bytes: the first byte picks the status, the second
    /// whether the length lies, the rest is the body.
    pub fn from_bytes(data: &[u8]) -> FuzzAnswer {
        const STATUSES: [u16; 12] = [200, 201, 204, 400, 404, 409, 410, 412, 500, 503, 302, 299];
        let status = STATUSES[usize::from(data.first().copied().unwrap_or(0)) % STATUSES.len()];
        let lie = data.get(1).copied().unwrap_or(0);
        let body = data.get(2..).unwrap_or_default().to_vec();
        let content_length = match lie % 4 {
            0 => Some(body.len() + 1 + usize::from(lie / 4)),
            _ => None,
        };
        FuzzAnswer { status, headers: vec![("content-type".into(), "application/json".into())], content_length, body }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} X\r\nconnection: close\r\n", self.status);
        for (n, v) in &self.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        out.push_str(&format!("content-length: {}\r\n\r\n", self.content_length.unwrap_or(self.body.len())));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }

    /// Whether the client may take this answer as a success of a push request: a 2xx
    /// whose body is a whole JSON object.
    pub fn is_success_item(&self) -> bool {
        (200..300).contains(&self.status)
            && self.content_length.is_none_or(|n| n == self.body.len())
            && serde_json::from_slice::<serde_json::Value>(&self.body).is_ok_and(|j| j.is_object())
    }
}

/// A server double that answers every request with the current canned answer, and a
/// client store with synced rows and queued operations, rebuilt for every check.
#[derive(Debug)]
pub struct ClientHarness {
    addr: SocketAddr,
    /// The answers to give, in order; the last one is repeated.
    answers: Arc<Mutex<Vec<Vec<u8>>>>,
    runtime: tokio::runtime::Runtime,
    /// One check at a time: the answers are shared.
    busy: Mutex<()>,
}

fn good_page(protocol: ProtocolVersion) -> Vec<u8> {
    let items: Vec<serde_json::Value> = (0..3)
        .map(|i| {
            serde_json::json!({
                "id": format!("r{i}"),
                "text": format!("synced {i}"),
                "complete": false,
                "version": format!("v{i}"),
                "updatedAt": format!("2026-01-01T00:00:00.00{i}Z"),
                "deleted": false,
            })
        })
        .collect();
    let json = match protocol {
        ProtocolVersion::V2 => serde_json::Value::Array(items),
        _ => serde_json::json!({ "items": items, "nextLink": null }),
    };
    json.to_string().into_bytes()
}

impl ClientHarness {
    /// Starts the double.
    pub fn start() -> ClientHarness {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let answers: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let shared = Arc::clone(&answers);
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { continue };
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    if let Ok(Some(_)) = http1::read_request(&mut stream).await {
                        let bytes = {
                            let mut answers = shared.lock().unwrap();
                            if answers.len() > 1 {
                                answers.remove(0)
                            } else {
                                answers.first().cloned().unwrap_or_default()
                            }
                        };
                        let _ = stream.write_all(&bytes).await;
                        let _ = stream.shutdown().await;
                    }
                });
            }
        });
        ClientHarness { addr, answers, runtime, busy: Mutex::new(()) }
    }

    fn set(&self, answers: Vec<Vec<u8>>) {
        *self.answers.lock().unwrap() = answers;
    }

    /// A fresh store with three synced rows and three queued operations (an update,
    /// a delete and an insert), a client of the double, and then `answer` to one push
    /// (`push == true`) or one pull. Checks the client's result and the store after it.
    pub fn check(&self, answer: &FuzzAnswer, push: bool, protocol: ProtocolVersion) -> Result<(), String> {
        let _one_at_a_time = self.busy.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let url = format!("http://{}", self.addr);
        self.runtime.block_on(async {
            let err = |e: sync_runtime::Error| format!("harness: {e}");
            let store = Store::open_in_memory().await.map_err(err)?;
            let todos = store.table::<TodoItem>().await.map_err(err)?;
            let client = SyncClient::builder(store.clone(), url)
                .protocol(protocol)
                .retry(sync_runtime::RetryPolicy::none())
                .timeout(Duration::from_secs(5))
                .build()
                .map_err(err)?;
            // The synced rows, through the double.
            let page = |body| FuzzAnswer { status: 200, headers: vec![], content_length: None, body }.to_bytes();
            let empty = match protocol {
                ProtocolVersion::V2 => b"[]".to_vec(),
                _ => br#"{"items":[],"nextLink":null}"#.to_vec(),
            };
            self.set(vec![page(good_page(protocol)), page(empty)]);
            client.pull(Query::<TodoItem>::new(), None).await.map_err(|e| format!("harness pull: {e}"))?;
            if todos.count_all().await.map_err(err)? != 3 {
                return Err("harness: the synced rows are missing".into());
            }
            if push {
                let mut item = todos.get("r0").await.map_err(err)?.ok_or("harness: r0")?;
                item.text = "edited".into();
                todos.update(&item).await.map_err(err)?;
                todos.delete("r1").await.map_err(err)?;
                todos.insert(TodoItem::new("new", "made offline")).await.map_err(err)?;
            }
            let before = store.pending_ops().await.map_err(err)?;

            self.set(vec![answer.to_bytes()]);
            let outcome = if push {
                client.push().await.map(|r| format!("{r:?}"))
            } else {
                client.pull(Query::<TodoItem>::new(), Some("all")).await.map(|r| format!("{r:?}"))
            };
            if let Err(e) = &outcome {
                if e.to_string().trim().is_empty() {
                    return Err(format!("{answer:?}: an error without a message: {e:?}"));
                }
            }

            // The store is sound and every row reads back as a typed item.
            let report = store.check_integrity().await.map_err(err)?;
            if !report.is_ok() {
                return Err(format!("{answer:?}: the store is not sound: {:?}", report.problems));
            }
            todos
                .fetch(&Query::new())
                .await
                .map_err(|e| format!("{answer:?}: a stored row does not read back: {e}"))?;
            store.errors().await.map_err(|e| format!("{answer:?}: an error row does not read back: {e}"))?;

            // The queue: an operation leaves it only on an answer that is a success.
            let after = store.pending_ops().await.map_err(err)?;
            for op in &before {
                if after.iter().any(|o| o.op_id == op.op_id) {
                    continue;
                }
                let allowed = match op.kind {
                    sync_runtime::OpKind::Delete => {
                        (200..300).contains(&answer.status) || matches!(answer.status, 404 | 410)
                    }
                    _ => answer.is_success_item(),
                };
                if !allowed {
                    return Err(format!(
                        "{answer:?}: the {} of {} left the queue on this answer ({outcome:?})",
                        op.kind, op.item_id
                    ));
                }
            }
            if !push && after.len() != before.len() {
                return Err(format!("{answer:?}: a pull changed the queue"));
            }
            Ok(())
        })
    }
}
