//! A fault-injecting HTTP/1.1 proxy on 127.0.0.1, between sync clients and a
//! `sync-server`, for the reliability tests.
//!
//! # Design
//!
//! - The proxy runs on its own thread and tokio runtime (like the tests' `TestServer`),
//!   so it keeps serving whatever the test's runtime does, and a child process can use
//!   it too.
//! - One request per connection: the proxy reads the request head and its
//!   `Content-Length` body, forwards it upstream with `Connection: close`, reads the
//!   server's whole answer until the server closes, and answers the client with
//!   `Connection: close` as well. So every request is one TCP connection and gets exactly
//!   one decision, taken when the connection is accepted, from a seeded [`Rng`] under a
//!   lock: when a test sends its requests one at a time, the schedule of faults is a
//!   pure function of the seed.
//! - The decision ([`Fault`]) is one of: pass; refuse (accept, then reset at once);
//!   reset mid-request (half the request reaches the server, then both sides are reset:
//!   nothing is applied); reset mid-response (the server applied it, the client gets part
//!   of the answer, then a reset); drop after applied (the server applied it, the client
//!   connection is closed without a byte); a gateway `504` after applied; a `500` or a
//!   `503` from the proxy (not forwarded); a delay, then pass.
//! - Every exchange that reached the server and came back whole is written to a
//!   [`Journal`] (method, path, `If-Match`, request body, status, response body, and
//!   what the client got), in order. Tests replay it as the server's history: which
//!   writes were applied, in which order, over which version.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::Rng;
use crate::http1;

/// How long the proxy waits for a client's request or the server's answer.
const IO_LIMIT: Duration = Duration::from_secs(30);

/// What the proxy does with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Fault {
    /// Forward it and its answer.
    Pass,
    /// Accept the connection and reset it before reading anything.
    Refuse,
    /// Forward part of the request to the server, then reset both connections: the
    /// server never sees a whole request.
    ResetRequest,
    /// Forward the request; deliver `permille`/1000 of the answer's bytes, then reset.
    ResetResponse {
        /// How much of the answer gets through, in thousandths (never all of it).
        permille: u16,
    },
    /// Forward the request, read the whole answer, close the client's connection
    /// without writing a byte of it.
    DropAfterApplied,
    /// Forward the request, read the whole answer, tell the client `504 Gateway
    /// Timeout` instead.
    GatewayAfterApplied,
    /// Answer `500` without forwarding.
    Error500,
    /// Answer `503` without forwarding.
    Error503,
    /// Wait this many milliseconds, then pass.
    Delay {
        /// The delay.
        ms: u16,
    },
}

impl Fault {
    /// Whether the server may have applied the request although the client saw a
    /// failure.
    pub fn applied_but_failed(self) -> bool {
        matches!(self, Fault::ResetResponse { .. } | Fault::DropAfterApplied | Fault::GatewayAfterApplied)
    }

    /// Whether the client receives the server's answer.
    pub fn delivers(self) -> bool {
        matches!(self, Fault::Pass | Fault::Delay { .. })
    }

    /// A short name for statistics.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Pass => "pass",
            Fault::Refuse => "refuse",
            Fault::ResetRequest => "reset-request",
            Fault::ResetResponse { .. } => "reset-response",
            Fault::DropAfterApplied => "drop-after-applied",
            Fault::GatewayAfterApplied => "504-after-applied",
            Fault::Error500 => "500",
            Fault::Error503 => "503",
            Fault::Delay { .. } => "delay",
        }
    }
}

/// How often each fault happens, in thousandths of requests; the rest pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultPlan {
    /// [`Fault::Refuse`].
    pub refuse: u32,
    /// [`Fault::ResetRequest`].
    pub reset_request: u32,
    /// [`Fault::ResetResponse`].
    pub reset_response: u32,
    /// [`Fault::DropAfterApplied`].
    pub drop_after_applied: u32,
    /// [`Fault::GatewayAfterApplied`].
    pub gateway_after_applied: u32,
    /// [`Fault::Error500`].
    pub error_500: u32,
    /// [`Fault::Error503`].
    pub error_503: u32,
    /// [`Fault::Delay`].
    pub delay: u32,
    /// The longest delay, in milliseconds.
    pub max_delay_ms: u16,
}

impl FaultPlan {
    /// No faults: a plain proxy.
    pub const fn none() -> FaultPlan {
        FaultPlan {
            refuse: 0,
            reset_request: 0,
            reset_response: 0,
            drop_after_applied: 0,
            gateway_after_applied: 0,
            error_500: 0,
            error_503: 0,
            delay: 0,
            max_delay_ms: 0,
        }
    }

    /// Every fault, about one request in four.
    pub const fn chaos() -> FaultPlan {
        FaultPlan {
            refuse: 35,
            reset_request: 30,
            reset_response: 35,
            drop_after_applied: 45,
            gateway_after_applied: 30,
            error_500: 30,
            error_503: 25,
            delay: 40,
            max_delay_ms: 15,
        }
    }

    /// Draws the fate of one request.
    pub fn choose(&self, rng: &mut Rng) -> Fault {
        let roll = rng.below(1000) as u32;
        let extra = rng.next_u64();
        let mut acc = 0;
        let table = [
            (self.refuse, Fault::Refuse),
            (self.reset_request, Fault::ResetRequest),
            (self.reset_response, Fault::ResetResponse { permille: (extra % 999) as u16 }),
            (self.drop_after_applied, Fault::DropAfterApplied),
            (self.gateway_after_applied, Fault::GatewayAfterApplied),
            (self.error_500, Fault::Error500),
            (self.error_503, Fault::Error503),
            (self.delay, Fault::Delay { ms: (extra % (u64::from(self.max_delay_ms) + 1)) as u16 }),
        ];
        for (weight, fault) in table {
            acc += weight;
            if roll < acc {
                return fault;
            }
        }
        Fault::Pass
    }
}

/// One exchange that reached the server and whose answer the proxy read whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchange {
    /// Order in the journal.
    pub seq: u64,
    /// The proxy's label (e.g. the client it serves).
    pub label: String,
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request target (path and query).
    pub target: String,
    /// The request's `If-Match`, unquoted.
    pub if_match: Option<String>,
    /// The request body.
    pub request_body: Vec<u8>,
    /// The server's status.
    pub status: u16,
    /// The server's body.
    pub response_body: Vec<u8>,
    /// What the client got.
    pub fault: Fault,
}

impl Exchange {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The request body as JSON.
    pub fn request_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.request_body).ok()
    }

    /// The response body as JSON.
    pub fn response_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.response_body).ok()
    }

    /// Whether this is a write the server accepted (2xx to POST, PATCH, PUT, DELETE).
    pub fn is_applied_write(&self) -> bool {
        (200..300).contains(&self.status) && matches!(self.method.as_str(), "POST" | "PATCH" | "PUT" | "DELETE")
    }
}

/// The exchanges of one or more proxies, in the order their answers came back. Cheap
/// to clone; clones share the record.
#[derive(Clone, Debug, Default)]
pub struct Journal {
    entries: Arc<Mutex<Vec<Exchange>>>,
}

impl Journal {
    /// An empty journal.
    pub fn new() -> Journal {
        Journal::default()
    }

    /// A copy of every exchange so far.
    pub fn snapshot(&self) -> Vec<Exchange> {
        self.entries.lock().unwrap().clone()
    }

    /// How many exchanges so far.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }

    /// Whether nothing was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&self, mut exchange: Exchange) {
        let mut entries = self.entries.lock().unwrap();
        exchange.seq = entries.len() as u64;
        entries.push(exchange);
    }
}

/// Counts of what the proxy did, by [`Fault::name`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// `(name, count)`, in first-seen order.
    pub counts: Vec<(&'static str, u64)>,
}

impl FaultStats {
    /// How many times the fault of this name happened.
    pub fn get(&self, name: &str) -> u64 {
        self.counts.iter().find(|(n, _)| *n == name).map_or(0, |(_, c)| *c)
    }

    fn add(&mut self, name: &'static str) {
        match self.counts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, c)) => *c += 1,
            None => self.counts.push((name, 1)),
        }
    }

    /// Adds another proxy's counts.
    pub fn merge(&mut self, other: &FaultStats) {
        for (name, count) in &other.counts {
            for _ in 0..*count {
                self.add(name);
            }
        }
    }
}

struct Control {
    plan: Mutex<FaultPlan>,
    rng: Mutex<Rng>,
    forced: Mutex<VecDeque<Fault>>,
    offline: AtomicBool,
    stats: Mutex<FaultStats>,
    requests: AtomicU64,
    journal: Journal,
    label: String,
    upstream: SocketAddr,
}

impl Control {
    fn decide(&self) -> Fault {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let fault = if self.offline.load(Ordering::SeqCst) {
            Fault::Refuse
        } else if let Some(forced) = self.forced.lock().unwrap().pop_front() {
            forced
        } else {
            let plan = *self.plan.lock().unwrap();
            plan.choose(&mut self.rng.lock().unwrap())
        };
        self.stats.lock().unwrap().add(fault.name());
        fault
    }
}

/// A running fault-injecting proxy. Stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    control: Arc<Control>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("addr", &self.addr).field("upstream", &self.control.upstream).finish()
    }
}

impl Proxy {
    /// A proxy to `upstream` with no faults yet (see [`Proxy::set_plan`]), recording into
    /// its own journal.
    pub fn start(upstream: SocketAddr, seed: u64) -> Proxy {
        Proxy::start_with(upstream, seed, "proxy", Journal::new())
    }

    /// A proxy recording into a shared journal under `label`.
    pub fn start_with(upstream: SocketAddr, seed: u64, label: &str, journal: Journal) -> Proxy {
        let control = Arc::new(Control {
            plan: Mutex::new(FaultPlan::none()),
            rng: Mutex::new(Rng::new(seed)),
            forced: Mutex::new(VecDeque::new()),
            offline: AtomicBool::new(false),
            stats: Mutex::new(FaultStats::default()),
            requests: AtomicU64::new(0),
            journal,
            label: label.to_owned(),
            upstream,
        });
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let thread_control = Arc::clone(&control);
        let thread = thread::Builder::new()
            .name(format!("proxy:{label}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                rt.block_on(async move {
                    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
                    ready_tx.send(listener.local_addr().expect("proxy address")).expect("report the address");
                    let stopped = tokio::task::spawn_blocking(move || {
                        let _ = stop_rx.recv();
                    });
                    tokio::select! {
                        _ = accept_loop(listener, thread_control) => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime cancels connections in progress.
                rt.shutdown_timeout(Duration::from_millis(100));
            })
            .expect("start the proxy thread");
        let addr = ready_rx.recv().expect("the proxy started");
        Proxy { addr, control, stop: Some(stop_tx), thread: Some(thread) }
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<address>`, for a client's builder.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets how often faults happen from now on.
    pub fn set_plan(&self, plan: FaultPlan) {
        *self.control.plan.lock().unwrap() = plan;
    }

    /// Queues faults for the next requests, before the plan is consulted again.
    pub fn force(&self, faults: &[Fault]) {
        self.control.forced.lock().unwrap().extend(faults.iter().copied());
    }

    /// Offline: every connection is refused (no random draw is used up).
    pub fn set_offline(&self, offline: bool) {
        self.control.offline.store(offline, Ordering::SeqCst);
    }

    /// Whether the proxy is offline.
    pub fn is_offline(&self) -> bool {
        self.control.offline.load(Ordering::SeqCst)
    }

    /// What happened so far.
    pub fn stats(&self) -> FaultStats {
        self.control.stats.lock().unwrap().clone()
    }

    /// How many requests (connections) came in.
    pub fn requests(&self) -> u64 {
        self.control.requests.load(Ordering::SeqCst)
    }

    /// The journal this proxy records into.
    pub fn journal(&self) -> &Journal {
        &self.control.journal
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, control: Arc<Control>) {
    loop {
        let Ok((client, _)) = listener.accept().await else { continue };
        let fault = control.decide();
        let control = Arc::clone(&control);
        tokio::spawn(async move {
            if let Err(e) = serve(client, fault, &control).await {
                // The client or server went away: the test sees it as a failed request.
                let _ = e;
            }
        });
    }
}

/// Resets a connection (RST instead of FIN).
// `set_linger` is deprecated because a non-zero linger makes the close block; a zero
// linger never blocks: the close sends RST at once, which is the point here.
#[allow(deprecated)]
fn reset(stream: TcpStream) {
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

fn canned(status: u16, reason: &str) -> Vec<u8> {
    let body = format!("{{\"error\":\"injected\",\"message\":\"{status} {reason} injected by the test proxy\"}}");
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn serve(mut client: TcpStream, fault: Fault, control: &Control) -> std::io::Result<()> {
    if fault == Fault::Refuse {
        reset(client);
        return Ok(());
    }
    let request = match tokio::time::timeout(IO_LIMIT, http1::read_request(&mut client)).await {
        Ok(Ok(Some(request))) => request,
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(e)) => {
            let _ = client.write_all(&canned(400, "Bad Request")).await;
            return Err(e);
        }
        Err(_) => return Ok(()),
    };
    match fault {
        Fault::Error500 => return write_and_close(client, &canned(500, "Internal Server Error")).await,
        Fault::Error503 => return write_and_close(client, &canned(503, "Service Unavailable")).await,
        Fault::Delay { ms } => tokio::time::sleep(Duration::from_millis(u64::from(ms))).await,
        _ => {}
    }
    let mut bytes = request.head.to_bytes_closing();
    let mut upstream = TcpStream::connect(control.upstream).await?;
    if fault == Fault::ResetRequest {
        // Half of the request: the whole head and half the body, or half the head.
        let cut = if request.body.is_empty() { bytes.len() / 2 } else { bytes.len() + request.body.len() / 2 };
        bytes.extend_from_slice(&request.body);
        upstream.write_all(&bytes[..cut]).await?;
        upstream.flush().await?;
        // Let the server start on it before it disappears.
        tokio::time::sleep(Duration::from_millis(2)).await;
        reset(upstream);
        reset(client);
        return Ok(());
    }
    bytes.extend_from_slice(&request.body);
    upstream.write_all(&bytes).await?;
    let raw = http1::read_to_close(&mut upstream, IO_LIMIT).await?;
    drop(upstream);
    let response = http1::parse_response(raw.clone()).map_err(std::io::Error::other)?;
    control.journal.push(Exchange {
        seq: 0,
        label: control.label.clone(),
        method: request.head.method().to_owned(),
        target: request.head.target().to_owned(),
        if_match: request.head.header("if-match").map(|v| v.trim_start_matches("W/").trim_matches('"').to_owned()),
        request_body: request.body.clone(),
        status: response.status(),
        response_body: response.body.clone(),
        fault,
    });
    match fault {
        Fault::ResetResponse { permille } => {
            let cut = (raw.len() * usize::from(permille) / 1000).min(raw.len().saturating_sub(1));
            client.write_all(&raw[..cut]).await?;
            client.flush().await?;
            reset(client);
            Ok(())
        }
        Fault::DropAfterApplied => {
            client.shutdown().await?;
            Ok(())
        }
        Fault::GatewayAfterApplied => write_and_close(client, &canned(504, "Gateway Timeout")).await,
        _ => write_and_close(client, &raw).await,
    }
}

async fn write_and_close(mut client: TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    client.write_all(bytes).await?;
    client.flush().await?;
    client.shutdown().await
}
