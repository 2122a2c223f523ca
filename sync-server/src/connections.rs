//! The serve loop: accepting connections, serving HTTP/1.1 on each (hyper's connection
//! builder), and keeping slow, idle or hostile connections from locking others out.
//!
//! - **Header-read timeout**: a request head must arrive whole within it, counted from
//!   the accept (a new connection) or from the first byte of the request (a kept-alive
//!   connection).
//! - **Idle timeout**: a kept-alive connection may wait this long for the first byte of
//!   its next request. It also bounds how long a client may take to read an answer.
//! - **Body-read timeout**: a deadline for the whole body, enforced where the body is
//!   read (`body.rs`).
//! - **A cap on open connections** (by default the process's descriptor limit less a
//!   reserve for the database and files): a connection accepted at the cap closes the
//!   connection that has gone longest without a request (waiting for its head, or idle
//!   between requests), never one whose request is being handled, so that new clients
//!   and health checks get in while held connections wait their turn to be closed.
//!   Only when every connection is handling a request does the loop stop accepting
//!   until one ends (the kernel's backlog holds the newcomers).
//! - **Out of descriptors** (`EMFILE`/`ENFILE` on accept, when the cap was set above
//!   what the process can open): the cap comes down to the connections open less a
//!   headroom of 32 descriptors (for the database's files and connections, which need
//!   descriptors too), the longest-idle connections above it are closed, and accepting
//!   pauses until a connection ends or a short backoff (5 ms doubling to 1 s) passes;
//!   never a busy loop.
//!
//! Why not hyper's own `header_read_timeout`: its timer starts when the connection is
//! ready for a request (after the previous answer), so it counts a kept-alive
//! connection's idle wait as header time: an idle timeout longer than the header
//! timeout cannot be expressed with it, and it gives no view of which connections are
//! idle, which the cap needs. So each connection's phase is tracked here (its reads,
//! and its requests entering and leaving the router) and one timer per connection
//! enforces both timeouts. (tower-http's timeouts act on requests and bodies, not on
//! connections between requests.) Connections are served with hyper's HTTP/1.1
//! connection builder and hyper-util's tokio adapters; hyper-util's `auto` builder would
//! add HTTP/2 detection, which the family's clients do not use and which would link
//! `h2` into the server.
//!
//! On shutdown, a connection still waiting for (or reading) a request head is closed at
//! once; one handling a request finishes it, answers, and closes.
//!
//! **Streaming answers** (the change feed, `feed/`): a handler that answers with a
//! long-lived body takes the request's [`StreamingConnection`] and marks the connection
//! as streaming until the body ends. A streaming connection is never closed as idle nor
//! evicted for a newcomer (the feed has its own cap), and has no idle timeout; instead,
//! when its socket stops taking bytes (a write would block) for longer than the stall
//! limit the handler set, the connection is closed, so a subscriber that never reads is
//! dropped without anyone waiting for it. Its kernel send buffer is made small
//! (`STREAM_SEND_BUFFER`), so such a peer costs little kernel memory and blocks soon. On
//! shutdown it finishes like a request in flight: the feed ends its streams at once.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower_service::Service as _;

use crate::links::LocalAddr;

/// Descriptors kept free of client connections by the default cap: database
/// connections, SQLite's files, the listener, logs.
const DESCRIPTOR_RESERVE: u64 = 64;
/// The default cap when the descriptor limit is unknown or very high.
const MAX_DEFAULT_CONNECTIONS: u64 = 10_000;
/// The smallest default cap.
const MIN_DEFAULT_CONNECTIONS: u64 = 16;
/// The first pause after a failed accept; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How often a loop that stopped accepting (every connection busy at the cap) looks
/// again, besides waking when a connection closes.
const FULL_RECHECK: Duration = Duration::from_millis(50);
/// Descriptors left free below the open connections when accept runs out of them.
const EMFILE_HEADROOM: usize = 32;
/// The kernel send buffer of a streaming connection (Linux doubles it): a stream's
/// events are small, and a peer that stops reading fills this, not megabytes of
/// autotuned buffer, before its socket blocks and the stall limit counts.
const STREAM_SEND_BUFFER: usize = 8 * 1024;

/// What the serve loop enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConnectionLimits {
    pub(crate) header_read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    /// `None`: from the descriptor limit ([`default_max_connections`]).
    pub(crate) max_connections: Option<usize>,
}

/// The default cap on open connections: the soft descriptor limit less a reserve,
/// between 16 and 10,000.
pub(crate) fn default_max_connections() -> usize {
    #[cfg(unix)]
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    #[cfg(not(unix))]
    let limit: Option<u64> = None;
    let cap = limit.map_or(MAX_DEFAULT_CONNECTIONS, |n| n.saturating_sub(DESCRIPTOR_RESERVE));
    usize::try_from(cap.clamp(MIN_DEFAULT_CONNECTIONS, MAX_DEFAULT_CONNECTIONS)).unwrap_or(usize::MAX)
}

/// Waiting for (or reading) a request head.
const HEAD: u8 = 0;
/// Kept alive between requests, nothing of the next one read yet.
const IDLE: u8 = 1;
/// A request in the router.
const BUSY: u8 = 2;
/// A streaming answer being written (see the module docs).
const STREAM: u8 = 3;

/// One open connection, as the loop and its own task see it.
#[derive(Debug)]
struct Slot {
    phase: AtomicU8,
    /// When the phase began, in milliseconds since the registry's epoch.
    since: AtomicU64,
    /// Told when the phase changes, so the connection's timer is set again.
    changed: Notify,
    /// Told to close the connection.
    evict: Notify,
    /// Already told: not to be chosen again.
    evicting: AtomicBool,
    /// Since when (registry milliseconds plus one) the socket has refused bytes; 0 while
    /// it takes them.
    blocked_since: AtomicU64,
    /// While streaming: how long the socket may refuse bytes before the connection is
    /// closed, in milliseconds.
    stall_limit: AtomicU64,
}

impl Slot {
    fn new(phase: u8, since: u64) -> Slot {
        Slot {
            phase: AtomicU8::new(phase),
            since: AtomicU64::new(since),
            changed: Notify::new(),
            evict: Notify::new(),
            evicting: AtomicBool::new(false),
            blocked_since: AtomicU64::new(0),
            stall_limit: AtomicU64::new(u64::MAX),
        }
    }
}

/// The open connections.
#[derive(Debug)]
struct Registry {
    epoch: Instant,
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
    /// Told when a connection closes.
    closed: Notify,
    gauge: Gauge,
}

impl Registry {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn len(&self) -> usize {
        self.slots.lock().map_or(0, |slots| slots.len())
    }

    fn enter(&self, slot: &Slot, phase: u8) {
        slot.since.store(self.now(), Ordering::Release);
        slot.phase.store(phase, Ordering::Release);
        slot.changed.notify_one();
    }

    /// The connection that has gone longest without a request, if any is not busy (nor
    /// already told to close).
    fn longest_idle(&self) -> Option<Arc<Slot>> {
        self.longest_idle_ones(1).pop()
    }

    /// Up to `n` connections that have gone longest without a request, longest first.
    fn longest_idle_ones(&self, n: usize) -> Vec<Arc<Slot>> {
        let Ok(slots) = self.slots.lock() else { return Vec::new() };
        let mut idle: Vec<&Arc<Slot>> = slots
            .values()
            .filter(|slot| {
                matches!(slot.phase.load(Ordering::Acquire), HEAD | IDLE) && !slot.evicting.load(Ordering::Acquire)
            })
            .collect();
        idle.sort_by_key(|slot| slot.since.load(Ordering::Acquire));
        idle.into_iter().take(n).cloned().collect()
    }

    /// Closes up to `n` of the longest-idle connections; answers how many.
    fn evict(&self, n: usize) -> usize {
        let chosen = self.longest_idle_ones(n);
        for slot in &chosen {
            slot.evicting.store(true, Ordering::Release);
            slot.evict.notify_one();
        }
        chosen.len()
    }

    fn add(&self, id: u64, slot: Arc<Slot>) {
        if let Ok(mut slots) = self.slots.lock() {
            slots.insert(id, slot);
            self.gauge.set(i64::try_from(slots.len()).unwrap_or(i64::MAX));
        }
    }

    fn remove(&self, id: u64) {
        if let Ok(mut slots) = self.slots.lock() {
            slots.remove(&id);
            self.gauge.set(i64::try_from(slots.len()).unwrap_or(i64::MAX));
        }
        self.closed.notify_one();
    }
}

/// Removes a connection from the registry when its task ends, however it ends.
struct Registered {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

/// Serves `router` on `listener` until `shutdown` completes; then stops accepting, lets
/// each connection finish the request it is handling, and returns when all are closed.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    gauge: Gauge,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let mut max_connections = limits.max_connections.unwrap_or_else(default_max_connections).max(1);
    let registry =
        Arc::new(Registry { epoch: Instant::now(), slots: Mutex::new(HashMap::new()), closed: Notify::new(), gauge });
    let (stop, stopping) = watch::channel(());
    let mut tasks = JoinSet::new();
    let mut backoff = MIN_BACKOFF;
    let mut paused_until: Option<Instant> = None;
    let mut next_id = 0_u64;
    tokio::pin!(shutdown);
    loop {
        // Over the cap while evicted connections close, or at it with none to evict:
        // wait for a close before taking another descriptor.
        let open = registry.len();
        let full = open > max_connections || (open == max_connections && registry.longest_idle().is_none());
        let pause = paused_until.or_else(|| full.then(|| Instant::now() + FULL_RECHECK));
        if let Some(until) = pause {
            tokio::select! {
                () = &mut shutdown => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                () = registry.closed.notified() => {}
                () = tokio::time::sleep_until(until) => {}
            }
            paused_until = None;
            continue;
        }
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    backoff = MIN_BACKOFF;
                    let open = registry.len();
                    if open >= max_connections {
                        registry.evict(open + 1 - max_connections);
                    }
                    let local = match stream.local_addr() {
                        Ok(local) => local,
                        Err(_) => continue,
                    };
                    let _ = stream.set_nodelay(true);
                    let slot = Arc::new(Slot::new(HEAD, registry.now()));
                    next_id += 1;
                    registry.add(next_id, Arc::clone(&slot));
                    let registered = Registered { registry: Arc::clone(&registry), id: next_id };
                    tasks.spawn(connection(stream, local, router.clone(), slot, registered, limits, stopping.clone()));
                }
                Err(e) if is_per_connection(&e) => {}
                Err(e) => {
                    let mut evicted = 0;
                    if is_out_of_descriptors(&e) {
                        let open = registry.len();
                        let lowered = open.saturating_sub(EMFILE_HEADROOM).max(1);
                        if lowered < max_connections {
                            tracing::warn!(from = max_connections, to = lowered, "out of descriptors: lowering the connection cap");
                            max_connections = lowered;
                        }
                        evicted = registry.evict((open + 1).saturating_sub(max_connections));
                    }
                    tracing::warn!(
                        error = %e,
                        evicted,
                        pause_ms = backoff.as_millis() as u64,
                        "accept failed; pausing"
                    );
                    paused_until = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
    drop(listener);
    let _ = stop.send(());
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Accept errors about one connection that went away before it was accepted.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// `EMFILE` or `ENFILE`: no descriptor for the new connection.
fn is_out_of_descriptors(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        use rustix::io::Errno;
        matches!(Errno::from_io_error(e), Some(Errno::MFILE | Errno::NFILE))
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

/// Serves one connection until it closes, times out, is evicted, or the server stops.
async fn connection(
    stream: TcpStream,
    local: SocketAddr,
    router: Router,
    slot: Arc<Slot>,
    registered: Registered,
    limits: ConnectionLimits,
    mut stopping: watch::Receiver<()>,
) {
    let registry = Arc::clone(&registered.registry);
    let io =
        TokioIo::new(Tracked { stream, slot: Arc::clone(&slot), registry: Arc::clone(&registry), small_buffer: false });
    let service = {
        let (slot, registry) = (Arc::clone(&slot), Arc::clone(&registry));
        hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            registry.enter(&slot, BUSY);
            request.extensions_mut().insert(LocalAddr(local));
            request
                .extensions_mut()
                .insert(StreamingConnection { slot: Arc::clone(&slot), registry: Arc::clone(&registry) });
            let mut router = router.clone();
            let (slot, registry) = (Arc::clone(&slot), Arc::clone(&registry));
            async move {
                let response = router.call(request).await;
                // A streaming answer leaves the phase to its body (see `StreamingConnection`).
                if slot.phase.load(Ordering::Acquire) != STREAM {
                    registry.enter(&slot, IDLE);
                }
                response
            }
        })
    };
    // hyper's header timer is off: see the module docs.
    let conn = hyper::server::conn::http1::Builder::new().header_read_timeout(None).serve_connection(io, service);
    tokio::pin!(conn);
    let mut shutting_down = false;
    loop {
        let deadline = phase_deadline(&slot, &registry, &limits);
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            () = sleep_until(deadline) => {
                if phase_deadline(&slot, &registry, &limits).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!(phase = slot.phase.load(Ordering::Acquire), "closing a connection that timed out");
                    break;
                }
            }
            () = slot.changed.notified() => {}
            () = slot.evict.notified() => {
                tracing::debug!("closing the longest-idle connection for a new one");
                break;
            }
            _ = stopping.changed(), if !shutting_down => {
                // No request in flight: nothing to finish. (Idle may still be writing the
                // last answer, which hyper's graceful shutdown completes.)
                if slot.phase.load(Ordering::Acquire) == HEAD {
                    break;
                }
                conn.as_mut().graceful_shutdown();
                shutting_down = true;
            }
        }
    }
    drop(registered);
}

/// When the connection's current phase times out (`None` while a request is handled,
/// or while a streaming answer's socket takes bytes).
fn phase_deadline(slot: &Slot, registry: &Registry, limits: &ConnectionLimits) -> Option<Instant> {
    let limit = match slot.phase.load(Ordering::Acquire) {
        HEAD => limits.header_read_timeout,
        IDLE => limits.idle_timeout,
        STREAM => {
            let blocked = slot.blocked_since.load(Ordering::Acquire).checked_sub(1)?;
            let stall = Duration::from_millis(slot.stall_limit.load(Ordering::Acquire));
            return Some(registry.epoch + Duration::from_millis(blocked).saturating_add(stall));
        }
        _ => return None,
    };
    let since = registry.epoch + Duration::from_millis(slot.since.load(Ordering::Acquire));
    Some(since + limit)
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// A connection as its request's handler sees it (a request extension, present when the
/// request came through [`serve`]): a handler answering with a long-lived stream marks
/// the connection as streaming ([`StreamingConnection::start`]), and the stream asks
/// whether the socket takes bytes before producing more
/// ([`StreamingConnection::is_blocked`]).
#[derive(Clone, Debug)]
pub(crate) struct StreamingConnection {
    slot: Arc<Slot>,
    registry: Arc<Registry>,
}

impl StreamingConnection {
    /// The answer is a stream: no idle timeout nor eviction until [`StreamingConnection::end`];
    /// the connection is closed when its socket refuses bytes for longer than `stall`.
    pub(crate) fn start(&self, stall: Duration) {
        let stall = u64::try_from(stall.as_millis()).unwrap_or(u64::MAX);
        self.slot.stall_limit.store(stall, Ordering::Release);
        self.registry.enter(&self.slot, STREAM);
    }

    /// The stream ended: the connection is kept alive (idle) for its next request.
    pub(crate) fn end(&self) {
        if self.slot.phase.load(Ordering::Acquire) == STREAM {
            self.registry.enter(&self.slot, IDLE);
        }
    }

    /// Whether the socket refused the last bytes written to it (its buffers are full: the
    /// peer does not read). The connection's task is woken when it takes bytes again.
    pub(crate) fn is_blocked(&self) -> bool {
        self.slot.blocked_since.load(Ordering::Acquire) != 0
    }
}

/// The connection's socket, noting the first byte of a request on a kept-alive
/// connection (idle becomes head), and whether writes block (for streaming answers).
struct Tracked {
    stream: TcpStream,
    slot: Arc<Slot>,
    registry: Arc<Registry>,
    /// The send buffer was made small for a streaming answer.
    small_buffer: bool,
}

impl Tracked {
    /// Before a write: a streaming answer gets a small send buffer.
    fn writing(&mut self) {
        if !self.small_buffer && self.slot.phase.load(Ordering::Acquire) == STREAM {
            self.small_buffer = true;
            #[cfg(unix)]
            if let Err(e) = rustix::net::sockopt::set_socket_send_buffer_size(&self.stream, STREAM_SEND_BUFFER) {
                tracing::debug!(error = %e, "cannot shrink a stream's send buffer");
            }
        }
    }

    /// Notes whether a write went through or would block.
    fn wrote<T>(&self, written: &Poll<io::Result<T>>) {
        let slot = &self.slot;
        match written {
            Poll::Pending => {
                if slot.blocked_since.load(Ordering::Acquire) == 0 {
                    slot.blocked_since.store(self.registry.now().saturating_add(1), Ordering::Release);
                    if slot.phase.load(Ordering::Acquire) == STREAM {
                        // The connection's timer now has a deadline.
                        slot.changed.notify_one();
                    }
                }
            }
            Poll::Ready(_) => {
                if slot.blocked_since.load(Ordering::Acquire) != 0 {
                    slot.blocked_since.store(0, Ordering::Release);
                }
            }
        }
    }
}

impl AsyncRead for Tracked {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let slot = &this.slot;
            if slot.phase.load(Ordering::Acquire) == IDLE {
                this.registry.enter(slot, HEAD);
            }
        }
        read
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.writing();
        let written = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.wrote(&written);
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.writing();
        let written = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.wrote(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_room_below_the_descriptor_limit() {
        let cap = default_max_connections() as u64;
        assert!((MIN_DEFAULT_CONNECTIONS..=MAX_DEFAULT_CONNECTIONS).contains(&cap));
        #[cfg(unix)]
        if let Some(limit) = rustix::process::getrlimit(rustix::process::Resource::Nofile).current {
            assert!(cap + DESCRIPTOR_RESERVE <= limit.max(MIN_DEFAULT_CONNECTIONS + DESCRIPTOR_RESERVE));
        }
    }

    #[tokio::test]
    async fn the_longest_idle_connection_is_evicted_and_busy_ones_never() {
        let registry = Registry {
            epoch: Instant::now(),
            slots: Mutex::new(HashMap::new()),
            closed: Notify::new(),
            gauge: Gauge::default(),
        };
        let slot = |phase, since| Arc::new(Slot::new(phase, since));
        registry.add(1, slot(BUSY, 0));
        registry.add(2, slot(IDLE, 50));
        registry.add(3, slot(HEAD, 20));
        registry.add(4, slot(IDLE, 70));
        assert_eq!(registry.gauge.get(), 4);
        assert_eq!(registry.longest_idle().map(|s| s.since.load(Ordering::Acquire)), Some(20));
        // Told once, a connection is not chosen again while it closes.
        assert_eq!(registry.evict(2), 2);
        assert_eq!(registry.longest_idle().map(|s| s.since.load(Ordering::Acquire)), Some(70));
        registry.remove(3);
        registry.remove(2);
        registry.remove(4);
        assert!(registry.longest_idle().is_none(), "a busy connection is never evicted");
        assert_eq!(registry.evict(1), 0);
        assert_eq!(registry.gauge.get(), 1);
    }
}
