//! The server builder, the server, and the handle of a running server.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sync_core::SyncEntity;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::auth::Auth;
use crate::connections::{self, ConnectionLimits};
use crate::database::Database;
use crate::error::{Error, Result};
use crate::feed::{FeedSettings, Hub};
use crate::links::{self, LinkSettings};
use crate::metrics::Metrics;
use crate::routes;
use crate::stamp::{Clock, SystemClock};
use crate::state::{AppState, Limits};
use crate::storage::Storage;
use crate::table::TableDef;

/// Rows per page when a request has no `$top` (as Azure Mobile Apps).
pub const DEFAULT_PAGE_SIZE: u64 = 100;
/// The most rows one answer carries.
pub const DEFAULT_MAX_TOP: u64 = 1000;
/// The largest request body: 1 MiB.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;
/// How long a request head may take to arrive, from the accept or its first byte.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request body may take to arrive, once the handler reads it.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a kept-alive connection may wait for its next request.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a change feed stream stays silent before a heartbeat comment.
pub const DEFAULT_FEED_HEARTBEAT: Duration = Duration::from_secs(15);

/// A table server, ready to serve: tables registered, storage open and prepared.
///
/// ```no_run
/// # async fn run() -> Result<(), sync_server::Error> {
/// use sync_server::{Server, TableDef};
/// use sync_core::ColumnType;
///
/// let server = Server::builder()
///     .table_def(TableDef::new("TodoItem").column("text", ColumnType::String, false))
///     .database("sqlite:todo.db".parse()?)
///     .build()
///     .await?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let handle = server.spawn(listener)?;
/// println!("listening on {}", handle.url());
/// handle.shutdown().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Server {
    state: Arc<AppState>,
    connections: ConnectionLimits,
}

/// Configures a [`Server`]; see [`Server::builder`].
#[derive(Debug)]
pub struct ServerBuilder {
    tables: Vec<TableDef>,
    limits: Limits,
    database: Database,
    storage: Option<Arc<dyn Storage>>,
    clock: Arc<dyn Clock>,
    auth: Auth,
    owners: Vec<(String, String)>,
    connections: ConnectionLimits,
    body_read_timeout: Duration,
    public_url: Option<String>,
    trust_forwarded: bool,
    feed: bool,
    feed_heartbeat: Duration,
    /// `None`: twice the heartbeat.
    feed_stall_timeout: Option<Duration>,
    /// `None`: half the connection cap.
    feed_max_subscribers: Option<usize>,
}

impl Default for ServerBuilder {
    fn default() -> ServerBuilder {
        ServerBuilder {
            tables: Vec::new(),
            limits: Limits { page_size: DEFAULT_PAGE_SIZE, max_top: DEFAULT_MAX_TOP, max_body: DEFAULT_MAX_BODY },
            database: Database::SqliteMemory,
            storage: None,
            clock: Arc::new(SystemClock),
            auth: Auth::anonymous(),
            owners: Vec::new(),
            connections: ConnectionLimits {
                header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
                idle_timeout: DEFAULT_IDLE_TIMEOUT,
                max_connections: None,
            },
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            public_url: None,
            trust_forwarded: false,
            feed: true,
            feed_heartbeat: DEFAULT_FEED_HEARTBEAT,
            feed_stall_timeout: None,
            feed_max_subscribers: None,
        }
    }
}

impl ServerBuilder {
    /// Serves the table of a `SyncEntity` struct (the same struct the client uses):
    /// its data fields, without local-only fields, with soft delete.
    pub fn table<E: SyncEntity>(self) -> ServerBuilder {
        self.table_def(TableDef::from_entity::<E>())
    }

    /// Serves a table described at run time (e.g. from the tables file).
    pub fn table_def(mut self, table: TableDef) -> ServerBuilder {
        self.tables.push(table);
        self
    }

    /// Serves several tables (e.g. [`crate::load_tables_file`]'s result).
    pub fn tables(mut self, tables: impl IntoIterator<Item = TableDef>) -> ServerBuilder {
        self.tables.extend(tables);
        self
    }

    /// Rows per page when a request has no `$top` (default 100; at most `max_top`).
    pub fn page_size(mut self, rows: u64) -> ServerBuilder {
        self.limits.page_size = rows;
        self
    }

    /// The most rows one answer carries (default 1000). A larger `$top` is capped,
    /// not refused; v3 answers then carry a `nextLink` to the rest.
    pub fn max_top(mut self, rows: u64) -> ServerBuilder {
        self.limits.max_top = rows;
        self
    }

    /// The largest request body in bytes (default 1 MiB); larger bodies get 413.
    pub fn max_body(mut self, bytes: usize) -> ServerBuilder {
        self.limits.max_body = bytes;
        self
    }

    /// How long a request head may take to arrive (default 10 s), counted from the
    /// accept of a new connection or the first byte of a request on a kept-alive one.
    /// The connection is closed beyond it.
    pub fn header_read_timeout(mut self, timeout: Duration) -> ServerBuilder {
        self.connections.header_read_timeout = timeout;
        self
    }

    /// How long a request body may take to arrive once the server reads it (default
    /// 30 s); 408 and a closed connection beyond it.
    pub fn body_read_timeout(mut self, timeout: Duration) -> ServerBuilder {
        self.body_read_timeout = timeout;
        self
    }

    /// How long a kept-alive connection may wait for the first byte of its next request
    /// (default 60 s), and so how long a client may take to read an answer. The
    /// connection is closed beyond it.
    pub fn idle_timeout(mut self, timeout: Duration) -> ServerBuilder {
        self.connections.idle_timeout = timeout;
        self
    }

    /// The most connections open at once (default: the process's descriptor limit less
    /// 64 kept for the database and files, between 16 and 10,000). A connection
    /// accepted at the cap closes the one that has gone longest without a request.
    pub fn max_connections(mut self, connections: usize) -> ServerBuilder {
        self.connections.max_connections = Some(connections);
        self
    }

    /// The URL clients reach the server at (`https://sync.example.com`, perhaps with a
    /// path prefix): the origin of `Location` headers and next-page links. Without it,
    /// `Location` is relative and page links name the address the connection was
    /// accepted on; the `Host` header is never used unless
    /// [`ServerBuilder::trust_forwarded_headers`].
    pub fn public_url(mut self, url: impl Into<String>) -> ServerBuilder {
        self.public_url = Some(url.into());
        self
    }

    /// Takes the origin of links from `X-Forwarded-Proto` and `X-Forwarded-Host` (else
    /// `Host`) when no public URL is set. Only behind a proxy that sets (or strips)
    /// them: otherwise any client chooses where the links it is given point.
    pub fn trust_forwarded_headers(mut self, trust: bool) -> ServerBuilder {
        self.trust_forwarded = trust;
        self
    }

    /// Offers the change feed, `GET /feed` (default: on; see the crate docs). Off, `/feed`
    /// answers 404, as servers of the Azure family do, and clients poll.
    pub fn feed(mut self, enabled: bool) -> ServerBuilder {
        self.feed = enabled;
        self
    }

    /// How long a change feed stream stays silent before a `: heartbeat` comment
    /// (default 15 s). Clients treat a stream silent for three heartbeats as lost.
    pub fn feed_heartbeat(mut self, heartbeat: Duration) -> ServerBuilder {
        self.feed_heartbeat = heartbeat;
        self
    }

    /// How long a change feed subscriber's socket may refuse bytes (the subscriber does
    /// not read) before the stream is dropped (default: twice the heartbeat). Writers
    /// never wait for a subscriber meanwhile: its changes wait merged, one entry per
    /// table. Enforced by [`Server::serve`]'s loop.
    pub fn feed_stall_timeout(mut self, timeout: Duration) -> ServerBuilder {
        self.feed_stall_timeout = Some(timeout);
        self
    }

    /// The most change feed subscribers at once (default: half the connection cap, see
    /// [`ServerBuilder::max_connections`]); beyond it `GET /feed` answers 503 with
    /// `Retry-After`. Feed streams are never closed to make room for new connections,
    /// so keep this below the connection cap.
    pub fn feed_max_subscribers(mut self, subscribers: usize) -> ServerBuilder {
        self.feed_max_subscribers = Some(subscribers);
        self
    }

    /// The database (default: a private in-memory SQLite database).
    pub fn database(mut self, database: Database) -> ServerBuilder {
        self.database = database;
        self
    }

    /// A storage of your own instead of [`ServerBuilder::database`].
    pub fn storage(mut self, storage: Arc<dyn Storage>) -> ServerBuilder {
        self.storage = Some(storage);
        self
    }

    /// The clock that stamps `updatedAt` (default: the system clock). For tests, e.g.
    /// [`crate::stamp::ManualClock`]. Used by storages opened from [`ServerBuilder::database`].
    pub fn clock(mut self, clock: impl Clock) -> ServerBuilder {
        self.clock = Arc::new(clock);
        self
    }

    /// How callers are authenticated (default: [`Auth::anonymous`], for local use):
    /// HS256 secrets, RS256/ES256 public keys, or an identity provider's JWKS URL, with
    /// `aud` and `iss` checks (see [`Auth`]).
    pub fn auth(mut self, auth: Auth) -> ServerBuilder {
        self.auth = auth;
        self
    }

    /// Makes `table` per-user, with `column` holding each row's owner (see
    /// [`TableDef::owner_column`]); the table is registered by [`ServerBuilder::table`]
    /// or another method, before or after this call. Needs [`ServerBuilder::auth`].
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), sync_server::Error> {
    /// # use sync_server::{Auth, Server, TableDef};
    /// let server = Server::builder()
    ///     .table_def(TableDef::new("TodoItem").column("text", sync_core::ColumnType::String, false))
    ///     .owner_column("TodoItem", "userId")
    ///     .auth(Auth::jwt_hs256(std::env::var("JWT_SECRET").unwrap_or_default())?)
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn owner_column(mut self, table: impl Into<String>, column: impl Into<String>) -> ServerBuilder {
        self.owners.push((table.into(), column.into()));
        self
    }

    /// Checks the configuration, opens the storage and creates (or checks) the tables.
    pub async fn build(self) -> Result<Server> {
        let mut limits = self.limits;
        if limits.page_size == 0 {
            return Err(Error::Setting { name: "page_size", message: "must be at least 1".into() });
        }
        if !(1..=i64::MAX as u64 / 2).contains(&limits.max_top) {
            return Err(Error::Setting { name: "max_top", message: "must be between 1 and 2^62".into() });
        }
        if limits.max_body == 0 {
            return Err(Error::Setting { name: "max_body", message: "must be at least 1 byte".into() });
        }
        limits.page_size = limits.page_size.min(limits.max_top);
        for (name, timeout) in [
            ("header_read_timeout", self.connections.header_read_timeout),
            ("body_read_timeout", self.body_read_timeout),
            ("idle_timeout", self.connections.idle_timeout),
        ] {
            if timeout.is_zero() {
                return Err(Error::Setting { name, message: "must be longer than zero".into() });
            }
        }
        if self.connections.max_connections == Some(0) {
            return Err(Error::Setting { name: "max_connections", message: "must be at least 1".into() });
        }
        let feed_settings = FeedSettings {
            heartbeat: self.feed_heartbeat,
            stall_timeout: self.feed_stall_timeout.unwrap_or(self.feed_heartbeat.saturating_mul(2)),
            max_subscribers: self.feed_max_subscribers.unwrap_or_else(|| {
                (self.connections.max_connections.unwrap_or_else(connections::default_max_connections) / 2).max(1)
            }),
        };
        for (name, timeout) in
            [("feed_heartbeat", feed_settings.heartbeat), ("feed_stall_timeout", feed_settings.stall_timeout)]
        {
            if timeout.is_zero() {
                return Err(Error::Setting { name, message: "must be longer than zero".into() });
            }
        }
        if feed_settings.max_subscribers == 0 {
            return Err(Error::Setting {
                name: "feed_max_subscribers",
                message: "must be at least 1 (turn the feed off with `feed(false)`)".into(),
            });
        }
        let public_url = self.public_url.as_deref().map(links::check_public_url).transpose()?;

        let mut defs = self.tables;
        for (name, column) in self.owners {
            let table = defs
                .iter_mut()
                .find(|t| t.name == name)
                .ok_or_else(|| Error::table(&name, "owner_column names a table that is not registered"))?;
            table.owner_column = Some(column);
        }
        let mut tables: HashMap<String, Arc<TableDef>> = HashMap::new();
        for table in defs {
            table.validate()?;
            if table.owner_column.is_some() && !self.auth.is_required() {
                return Err(Error::table(
                    &table.name,
                    "an owned table (owner_column) needs authenticated callers; configure auth (Auth::jwt_hs256, \
                     `--auth jwt`)",
                ));
            }
            if tables.keys().any(|name| name.eq_ignore_ascii_case(&table.name)) {
                return Err(Error::table(&table.name, "registered twice"));
            }
            tables.insert(table.name.clone(), Arc::new(table));
        }
        let storage = match self.storage {
            Some(storage) => storage,
            None => self.database.open(self.clock).await?,
        };
        storage.prepare(tables.values().cloned().collect()).await?;
        let metrics = Arc::new(Metrics::new());
        let feed = match self.feed {
            true => {
                let names = tables.values().map(|t| (t.name.clone(), t.owner_column.is_some()));
                let hub = Arc::new(Hub::new(names, feed_settings.max_subscribers, metrics.feed_subscribers.clone()));
                hub.connect_relay(&*storage).await;
                Some(hub)
            }
            false => None,
        };
        let state = AppState {
            tables,
            storage,
            limits,
            auth: self.auth,
            links: LinkSettings { public_url, trust_forwarded: self.trust_forwarded },
            body_read_timeout: self.body_read_timeout,
            metrics,
            feed,
            feed_settings,
        };
        Ok(Server { state: Arc::new(state), connections: self.connections })
    }
}

impl Server {
    /// A builder with no tables, in-memory SQLite and the default limits.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The axum router, to serve yourself or to nest in a larger app. Served that way,
    /// the connection timeouts and cap are yours to set (they belong to
    /// [`Server::serve`]'s loop), and page links are relative unless a public URL is set.
    pub fn router(&self) -> axum::Router {
        routes::router(Arc::clone(&self.state))
    }

    /// Serves on `listener` until `shutdown` completes, then stops accepting, lets
    /// requests in flight finish, ends the change feed's streams, and returns. Enforces
    /// the header-read and idle timeouts, the connection cap (see
    /// [`ServerBuilder::max_connections`]) and the feed's stall timeout.
    pub async fn serve<F>(self, listener: TcpListener, shutdown: F) -> io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let gauge = self.state.metrics.open_connections.clone();
        let feed = self.state.feed.clone();
        let shutdown = async move {
            shutdown.await;
            // Streams never end by themselves: end them, so that serving stops at once.
            if let Some(hub) = feed {
                hub.close_streams();
            }
        };
        connections::serve(listener, self.router(), self.connections, gauge, shutdown).await
    }

    /// Serves on `listener` until `shutdown` completes (see [`ShutdownSignal`]), then
    /// gives requests in flight up to `grace` to finish, and closes the storage: what a
    /// server process does from its first request to its exit.
    pub async fn serve_until<F>(self, listener: TcpListener, shutdown: F, grace: Duration) -> io::Result<()>
    where
        F: Future<Output = ()> + Send,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let mut serving = tokio::spawn(self.clone().serve(listener, async move {
            let _ = stopped.await;
        }));
        tokio::select! {
            served = &mut serving => {
                // Serving ended on its own: an accept error.
                self.close().await;
                return served.map_err(io::Error::other)?;
            }
            () = shutdown => {}
        }
        let _ = stop.send(());
        let served = match tokio::time::timeout(grace, &mut serving).await {
            Ok(served) => served.map_err(io::Error::other)?,
            Err(_) => {
                tracing::warn!("requests still in flight after {} s; stopping anyway", grace.as_secs());
                serving.abort();
                Ok(())
            }
        };
        self.close().await;
        tracing::info!("stopped");
        served
    }

    /// Closes the storage (for SQLite: closes the connections, checkpointing the WAL)
    /// and the change feed (its streams and its relay to other instances). Call it
    /// after serving stopped; requests after it get 503.
    pub async fn close(&self) {
        if let Some(hub) = &self.state.feed {
            hub.close();
        }
        self.state.storage.close().await;
    }

    /// Serves on `listener` in a background task (the caller must be inside a tokio
    /// runtime). The server stops when [`ServerHandle::shutdown`] is called (which
    /// also closes the storage) or the handle is dropped.
    pub fn spawn(self, listener: TcpListener) -> io::Result<ServerHandle> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let server = self.clone();
        let task = tokio::spawn(self.serve(listener, async move {
            let _ = stopped.await;
        }));
        Ok(ServerHandle { addr, stop, task, server })
    }
}

/// A server running in the background (see [`Server::spawn`]).
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<io::Result<()>>,
    server: Server,
}

impl ServerHandle {
    /// The address the server listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<address>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections, waits for requests in flight, closes the storage,
    /// and returns how serving ended.
    pub async fn shutdown(self) -> io::Result<()> {
        let _ = self.stop.send(());
        let served = self.task.await.map_err(io::Error::other);
        self.server.close().await;
        served?
    }
}

/// SIGINT and SIGTERM (Ctrl-C elsewhere), caught from the moment this is made. Make it
/// before telling anyone the server is up (the `listening on` line): a signal sent right
/// after would otherwise kill the process before the handlers exist, with no graceful
/// stop.
#[derive(Debug)]
pub struct ShutdownSignal {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    /// Installs the handlers (inside a tokio runtime).
    pub fn install() -> io::Result<ShutdownSignal> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(ShutdownSignal {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(ShutdownSignal {})
    }

    /// Completes on the first SIGINT or SIGTERM.
    #[cfg_attr(not(unix), allow(unused_mut))]
    pub async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => tracing::info!("SIGINT: shutting down"),
            _ = self.terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("Ctrl-C: shutting down");
        }
    }
}
