//! The sync client: push the operations queue to a server, pull server changes into the
//! local tables, and settle conflicts, over the Azure Mobile Apps (v2) /
//! Datasync (v3) table protocol.
//!
//! ```no_run
//! # use sync_runtime::{Store, SyncClient, SyncEntity, ProtocolVersion};
//! # #[derive(SyncEntity, Clone, Debug)]
//! # struct TodoItem { id: String, text: String, complete: bool }
//! # async fn demo() -> sync_runtime::Result<()> {
//! let store = Store::open("todo.db").await?;
//! let todos = store.table::<TodoItem>().await?;
//! todos.insert(TodoItem { id: String::new(), text: "offline".into(), complete: false }).await?;
//!
//! let client = SyncClient::builder(store.clone(), "http://127.0.0.1:8080")
//!     .protocol(ProtocolVersion::V3)
//!     .build()?;
//! let report = client.sync::<TodoItem>().await?; // push, then pull every TodoItem
//! println!("pushed {}, pulled {}", report.push.pushed, report.pull.applied);
//! # Ok(())
//! # }
//! ```

mod call;
mod conflict_handler;
mod engine;
mod feed;
mod http;
mod progress;
mod pull;
mod push;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::store::Store;
use sync_core::ProtocolVersion;
use sync_core::SyncEntity;
use sync_core::query::Query;

pub use crate::push_report::{ConflictOutcome, ConflictResolution, PushCancel, PushReport, PushStatus};
pub use call::SyncCall;
pub use conflict_handler::{ClientWins, Conflict, ConflictHandler, Resolution, ServerWins};
pub use engine::{EngineBuilder, StatusStream, SyncEngine, SyncErrorKind, SyncFailure, SyncProgress, SyncStatus};
pub use progress::{SyncEvent, SyncPhase};
pub use pull::PullReport;

/// A future returned by a token provider.
pub type TokenFuture = Pin<Box<dyn Future<Output = Option<String>> + Send>>;

type TokenProvider = Arc<dyn Fn(bool) -> TokenFuture + Send + Sync>;
pub(crate) type ProgressSink = Arc<dyn Fn(&SyncEvent) + Send + Sync>;

/// How 5xx and 429 answers are retried: capped exponential backoff with jitter
/// (`Retry-After` is honoured, up to `max_delay`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The first delay; each retry doubles it.
    pub base_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_retries: 4, base_delay: Duration::from_millis(200), max_delay: Duration::from_secs(5) }
    }
}

impl RetryPolicy {
    /// No retries: a 5xx answer counts at once.
    pub fn none() -> Self {
        RetryPolicy { max_retries: 0, ..RetryPolicy::default() }
    }
}

/// The result of [`SyncClient::sync`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SyncReport {
    /// What the push did.
    pub push: PushReport,
    /// What the pull did.
    pub pull: PullReport,
}

/// Builds a [`SyncClient`].
pub struct SyncClientBuilder {
    store: Store,
    base: String,
    protocol: ProtocolVersion,
    token: Option<TokenProvider>,
    timeout: Duration,
    connect_timeout: Duration,
    page_size: u32,
    retry: RetryPolicy,
    handlers: HashMap<&'static str, Arc<dyn conflict_handler::ErasedHandler>>,
    progress: Option<ProgressSink>,
}

impl std::fmt::Debug for SyncClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncClientBuilder")
            .field("base", &self.base)
            .field("protocol", &self.protocol)
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

impl SyncClientBuilder {
    /// Speaks protocol v2 (default) or v3.
    pub fn protocol(mut self, protocol: ProtocolVersion) -> Self {
        self.protocol = protocol;
        self
    }

    /// Supplies bearer tokens: called with `false` before the first request, and with
    /// `true` once after a 401 to get a fresh one. `None` sends no `Authorization`.
    pub fn token_provider<F, Fut>(mut self, provider: F) -> Self
    where
        F: Fn(bool) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<String>> + Send + 'static,
    {
        self.token = Some(Arc::new(move |refresh| Box::pin(provider(refresh))));
        self
    }

    /// The timeout of one whole request (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The timeout of establishing a connection (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Rows asked for per pull page (`$top`, default 500).
    pub fn page_size(mut self, rows: u32) -> Self {
        self.page_size = rows.max(1);
        self
    }

    /// How 5xx / 429 answers are retried.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The conflict handler of `E`'s table: [`ServerWins`], [`ClientWins`], or a
    /// closure `|c: &Conflict<E>| -> Resolution<E>`. Without one, conflicts become error
    /// rows for the app to resolve ([`Table::errors`](crate::Table::errors)).
    ///
    /// A conflict is a 409 or 412 answer: the server's copy changed since this store
    /// last saw it. The handler sees both sides as typed items; its decision is applied
    /// at once, and a merged or client-wins item is sent again over the server's
    /// version within the same push.
    ///
    /// ```no_run
    /// # use sync_runtime::{Store, SyncClient, SyncEntity};
    /// use sync_runtime::{Conflict, Resolution};
    ///
    /// # #[derive(SyncEntity, Clone, Debug)]
    /// # struct TodoItem { id: String, text: String, complete: bool }
    /// # async fn demo(store: Store) -> sync_runtime::Result<()> {
    /// let client = SyncClient::builder(store, "http://127.0.0.1:8080")
    ///     .conflict_handler::<TodoItem>(|c: &Conflict<TodoItem>| {
    ///         // Keep the server's text, but a task done on either side stays done.
    ///         let mut merged = c.server.clone();
    ///         merged.complete |= c.client.complete;
    ///         Resolution::Merged(merged)
    ///     })
    ///     .build()?;
    /// let report = client.push().await?;
    /// for c in &report.conflicts {
    ///     println!("{} {}: {:?}", c.table, c.item_id, c.resolution);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn conflict_handler<E: SyncEntity>(mut self, handler: impl ConflictHandler<E>) -> Self {
        self.handlers.insert(E::TABLE, conflict_handler::erase::<E>(handler));
        self
    }

    /// Receives progress events of pushes and pulls (called on the task running them;
    /// keep it quick): one per operation pushed and per page pulled, then a last one
    /// with `finished` set. Each says the table, how many are done (of how many, for a
    /// push), the body bytes moved and the time spent.
    ///
    /// ```no_run
    /// # use sync_runtime::{Store, SyncClient, SyncEntity};
    /// use sync_runtime::SyncPhase;
    ///
    /// # async fn demo(store: Store) -> sync_runtime::Result<()> {
    /// let client = SyncClient::builder(store, "http://127.0.0.1:8080")
    ///     .on_progress(|e| {
    ///         let verb = if e.phase == SyncPhase::Push { "sent" } else { "received" };
    ///         match e.total {
    ///             Some(total) => eprint!("\r{}: {verb} {}/{total} ({} bytes)", e.table, e.done, e.bytes),
    ///             None => eprint!("\r{}: {verb} {} ({} bytes)", e.table, e.done, e.bytes),
    ///         }
    ///         if e.finished {
    ///             eprintln!(" in {:?}", e.elapsed);
    ///         }
    ///     })
    ///     .build()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn on_progress(mut self, sink: impl Fn(&SyncEvent) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(sink));
        self
    }

    /// Builds the client (one `reqwest::Client`, reused for every request). A base URL
    /// that does not parse, or is not `http://` / `https://`, is an [`Error::Config`].
    pub fn build(self) -> Result<SyncClient> {
        let base = self.base.trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&base).map_err(|e| Error::Config {
            message: format!("the server URL `{base}` does not parse"),
            source: Some(Box::new(e)),
        })?;
        if parsed.cannot_be_a_base() || !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::Config {
                message: format!("the server URL `{base}` is not http:// or https://"),
                source: None,
            });
        }
        let http =
            reqwest::Client::builder().timeout(self.timeout).connect_timeout(self.connect_timeout).build().map_err(
                |e| Error::Config { message: "cannot build the HTTP client".into(), source: Some(Box::new(e)) },
            )?;
        Ok(SyncClient {
            inner: Arc::new(ClientInner {
                store: self.store,
                http,
                base: parsed,
                protocol: self.protocol,
                token: self.token,
                page_size: self.page_size,
                retry: self.retry,
                handlers: self.handlers,
                progress: self.progress,
                observers: std::sync::Mutex::new(Vec::new()),
            }),
        })
    }
}

pub(crate) struct ClientInner {
    pub(crate) store: Store,
    pub(crate) http: reqwest::Client,
    pub(crate) base: reqwest::Url,
    pub(crate) protocol: ProtocolVersion,
    pub(crate) token: Option<TokenProvider>,
    pub(crate) page_size: u32,
    pub(crate) retry: RetryPolicy,
    pub(crate) handlers: HashMap<&'static str, Arc<dyn conflict_handler::ErasedHandler>>,
    pub(crate) progress: Option<ProgressSink>,
    /// The progress sinks of the engines running on this client (see `engine.rs`).
    pub(crate) observers: std::sync::Mutex<Vec<(u64, ProgressSink)>>,
}

impl ClientInner {
    pub(crate) fn emit(&self, event: SyncEvent) {
        // Copied out, so that a sink never runs under the lock.
        let observers: Vec<ProgressSink> = {
            let list = self.observers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            list.iter().map(|(_, sink)| Arc::clone(sink)).collect()
        };
        for sink in observers {
            sink(&event);
        }
        if let Some(sink) = &self.progress {
            sink(&event);
        }
    }
}

/// Pushes the local queue to a server and pulls server changes into local tables.
/// Cheap to clone.
#[derive(Clone)]
pub struct SyncClient {
    inner: Arc<ClientInner>,
}

impl std::fmt::Debug for SyncClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncClient")
            .field("base", &self.inner.base.as_str())
            .field("protocol", &self.inner.protocol)
            .finish_non_exhaustive()
    }
}

impl SyncClient {
    /// A builder for a client of `store` talking to the server at `base_url`
    /// (`http://host:port`; tables live under `/tables/<name>`).
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use sync_runtime::{ProtocolVersion, RetryPolicy, Store, SyncClient};
    /// # async fn sign_in() -> Option<String> { None }
    /// # async fn demo(store: Store) -> sync_runtime::Result<()> {
    /// let client = SyncClient::builder(store, "https://api.example.com")
    ///     .protocol(ProtocolVersion::V2) // Azure Mobile Apps servers; V3 for Datasync ones
    ///     // Called before the first request, and with `true` once after a 401.
    ///     .token_provider(|refresh| async move { if refresh { sign_in().await } else { Some("cached".into()) } })
    ///     .timeout(Duration::from_secs(20))
    ///     .page_size(200)
    ///     .retry(RetryPolicy { max_retries: 2, ..RetryPolicy::default() })
    ///     .build()?; // a URL that does not parse is an `Error::Config` here
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder(store: Store, base_url: impl Into<String>) -> SyncClientBuilder {
        SyncClientBuilder {
            store,
            base: base_url.into(),
            protocol: ProtocolVersion::V2,
            token: None,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            page_size: 500,
            retry: RetryPolicy::default(),
            handlers: HashMap::new(),
            progress: None,
        }
    }

    /// The store this client syncs.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        self.inner.base.as_str()
    }

    /// Pushes every queued operation, strictly in the order they were queued, across
    /// all tables.
    ///
    /// `Ok` means the push went through the whole queue. Operations the server refused
    /// do not stop it: each becomes an error row ([`Table::errors`](crate::Table::errors))
    /// and the push goes on; conflicts go to the table's conflict handler first. The
    /// report counts both.
    ///
    /// A push that cannot go on is an error, never an `Ok`: when the server cannot be
    /// reached, refuses the credentials (after one token refresh), or stays unavailable
    /// (429, 502, 503, 504 after the retries), the push stops with
    /// [`Error::PushCancelled`], which carries the report of what was done and whose
    /// cause says why ([`Error::is_network`], [`Error::is_auth`] and
    /// [`Error::http_status`] look through to it). The operation it stopped at, and
    /// every one after it, stay queued for the next push.
    ///
    /// Pushes of one [`Store`] (from any of its clients) take turns: a second one
    /// waits, then sends what the first left. (Two `Store`s opened separately on one
    /// file do not know of each other: open one per file.)
    ///
    /// ```no_run
    /// # use sync_runtime::{Store, SyncClient, SyncEntity};
    /// # #[derive(SyncEntity, Clone, Debug)]
    /// # struct TodoItem { id: String, text: String }
    /// # async fn demo(client: SyncClient) -> sync_runtime::Result<()> {
    /// match client.push().await {
    ///     Ok(report) => println!("pushed {}, {} refused", report.pushed, report.errors),
    ///     Err(e) if e.is_network() => {
    ///         let sent = e.push_report().map_or(0, |r| r.pushed);
    ///         println!("offline: {sent} sent, the rest waits for the next push");
    ///     }
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn push(&self) -> SyncCall<PushReport> {
        let inner = Arc::clone(&self.inner);
        SyncCall::new(async move { push::push(&inner).await })
    }

    /// Pulls the rows of `query` from the server into `E`'s table. `query` is a
    /// [`Query`] or a table's query in the making (`table.query().filter(..)`); its
    /// filter becomes the server's `$filter` (its order, limit and offset are not
    /// sent: a pull reads in `(updatedAt, id)` order).
    ///
    /// With a `query_id` the pull is incremental and resumable: it saves a cursor (the
    /// `(updatedAt, id)` of the last row applied) with each page, and the next pull of
    /// that id fetches only rows changed since. Without one it fetches every row of the
    /// query. Use one id per query: two queries sharing an id would share a cursor.
    ///
    /// The table's pending local operations are pushed first. The pull runs whether
    /// or not that push got through (a cancelled one is logged, not returned); rows of
    /// items that still have a queued operation are skipped, so local edits are kept.
    /// Server tombstones delete local rows. Rows that do not fit `E` (a `null` for a
    /// field that is not an `Option`, ...) are set aside as
    /// [rejected rows](crate::Table::rejected_rows) and the pull goes on past them.
    ///
    /// ```no_run
    /// # use sync_runtime::{Store, SyncClient, SyncEntity};
    /// # #[derive(SyncEntity, Clone, Debug)]
    /// # struct TodoItem { id: String, text: String, complete: bool }
    /// # async fn demo(store: Store, client: SyncClient) -> sync_runtime::Result<()> {
    /// let todos = store.table::<TodoItem>().await?;
    /// // The open items, incrementally: the second pull fetches only what changed.
    /// let open = || todos.query().filter(TodoItem::FIELDS.complete.eq(false));
    /// let first = client.pull(open(), Some("open-items")).await?;
    /// let later = client.pull(open(), Some("open-items")).await?;
    /// println!("{} rows, then {} changed", first.received, later.received);
    /// if later.rejected > 0 {
    ///     for row in todos.rejected_rows().await? {
    ///         eprintln!("server row {} does not fit: {}", row.item_id, row.reason);
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn pull<E: SyncEntity>(&self, query: impl Into<Query<E>>, query_id: Option<&str>) -> SyncCall<PullReport> {
        let (client, query, query_id) = (self.clone(), query.into(), query_id.map(str::to_owned));
        SyncCall::new(async move { pull::pull::<E>(&client, &client.inner, query, query_id.as_deref()).await })
    }

    /// Push, then pull every row of `E` incrementally: the quickstart's refresh. A
    /// push that stops early is an [`Error::PushCancelled`], as with
    /// [`SyncClient::push`], and nothing is pulled.
    pub fn sync<E: SyncEntity>(&self) -> SyncCall<SyncReport> {
        let client = self.clone();
        SyncCall::new(async move {
            let push = push::push(&client.inner).await?;
            let pull = pull::pull::<E>(&client, &client.inner, Query::new(), Some(pull::DEFAULT_QUERY_ID)).await?;
            Ok(SyncReport { push, pull })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[derive(crate::SyncEntity, Clone, Debug, PartialEq)]
    #[sync(crate = "crate")]
    struct Note {
        id: String,
        text: String,
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
    }

    #[test]
    fn an_unusable_server_url_is_a_configuration_error() {
        rt().block_on(async {
            let store = Store::open_in_memory().await.unwrap();
            for url in ["not a url", "ftp://example.com", "mailto:me@example.com"] {
                let err = SyncClient::builder(store.clone(), url).build().unwrap_err();
                assert!(err.is_config() && !err.is_network(), "{url}: {err:?}");
                assert!(err.to_string().contains(url), "{url}: {err}");
            }
            let err = SyncClient::builder(store.clone(), "no scheme").build().unwrap_err();
            assert!(std::error::Error::source(&err).is_some(), "the parse error is the source: {err:?}");
        });
    }

    #[test]
    fn a_network_failure_keeps_its_cause_as_the_source() {
        rt().block_on(async {
            let store = Store::open_in_memory().await.unwrap();
            store.table::<Note>().await.unwrap().insert(Note { id: "n".into(), text: "a".into() }).await.unwrap();
            // A port nothing listens on.
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let client = SyncClient::builder(store.clone(), format!("http://127.0.0.1:{port}"))
                .retry(RetryPolicy::none())
                .build()
                .unwrap();
            // A push that cannot reach the server is an error, carrying its report.
            let cancelled = client.push().await.unwrap_err();
            assert!(cancelled.is_push_cancelled() && cancelled.is_network(), "{cancelled:?}");
            let report = cancelled.push_report().expect("the report travels with the error");
            assert_eq!((report.pushed, report.is_complete()), (0, false), "{report:?}");
            let PushStatus::Cancelled(cancel @ PushCancel::Network { .. }) = &report.status else {
                panic!("expected a push cancelled by the network: {report:?}");
            };
            assert_eq!(cancel, &cancel.clone(), "a cancel compares equal to its clone");
            let err = cancel.to_error();
            assert!(err.is_network(), "{err:?}");
            for err in [&cancelled, &err] {
                let source = std::error::Error::source(err).expect("the cause is kept as the source");
                let message = err.to_string();
                assert!(!message.contains(&source.to_string()), "`{message}` repeats its source");
                assert!(err.with_sources().len() > message.len(), "{}", err.with_sources());
            }
            let cause = std::error::Error::source(&cancelled).map(ToString::to_string);
            assert_eq!(cause, Some(err.to_string()), "the cancelled push's source is the network error");
            assert_eq!(store.pending_count().await.unwrap(), 1, "the operation stays queued");
            // `sync` says the same.
            let synced = client.sync::<Note>().await.unwrap_err();
            assert!(synced.is_network() && synced.push_report().is_some(), "{synced:?}");
        });
    }
}
