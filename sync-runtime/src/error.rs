//! The one error type of the runtime.
//!
//! A wrapped cause is the error's [`source`](std::error::Error::source), never repeated
//! in its message: a reporter that walks the chain prints each cause once.

use crate::network_cause::NetworkCause;
use crate::op::OpKind;
use crate::push_report::{PushCancel, PushReport};

/// What went wrong. Match on the variant, or use the predicates (`is_not_found()`, ...).
///
/// ```
/// # use sync_runtime::{Error, Store, SyncEntity};
/// # #[derive(SyncEntity, Clone, Debug)]
/// # struct Note { id: String, body: String }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = Store::open_in_memory().await?;
/// let notes = store.table::<Note>().await?;
/// let err = notes.update(&Note { id: "nope".into(), body: "x".into() }).await.unwrap_err();
/// assert!(err.is_not_found());
/// notes.insert(Note { id: "a".into(), body: "x".into() }).await?;
/// // The same id again, while its insert still waits to be pushed:
/// match notes.insert(Note { id: "a".into(), body: "y".into() }).await {
///     Err(Error::QueueConflict { table, id, reason, .. }) => {
///         assert_eq!((table.as_str(), id.as_str(), reason), ("Note", "a", "the item is already inserted"))
///     }
///     other => panic!("{other:?}"),
/// }
/// # Ok::<_, sync_runtime::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// SQLite failed.
    #[error("local store error")]
    Sqlite(#[from] rusqlite::Error),

    /// The store's worker thread is gone (the store was closed or its thread panicked).
    #[error("the local store is closed")]
    StoreClosed,

    /// An async runtime is missing where one is needed, or present where it would be
    /// blocked: the sync client's calls are awaited inside a tokio runtime, or waited
    /// for (`.wait()`) outside one. The message says which.
    #[error("{0}")]
    Runtime(&'static str),

    /// A store or table call was made inside a transaction closure: it would wait for
    /// the very transaction it runs in. Use the closure's `tx` instead.
    #[error(
        "a store or table call was made inside a transaction closure, where it would wait for the transaction itself; use the closure's `tx`"
    )]
    CallInTransaction,

    /// The app's own error of a `try_transaction` closure, on its way back to the app
    /// (never seen by it).
    #[doc(hidden)]
    #[error("the transaction's closure failed")]
    App(Box<dyn std::any::Any + Send>),

    /// The store file was written by a newer, incompatible version of this library.
    #[error(
        "the store was created by a newer version of sync-runtime (store schema {found}, this build supports up to {supported}); upgrade the app"
    )]
    IncompatibleStore {
        /// The schema version found in the file.
        found: i64,
        /// The newest schema version this build understands.
        supported: i64,
    },

    /// The store file did not open with the key given in
    /// [`StoreOptions`](crate::StoreOptions): it is encrypted with another key, or is not
    /// encrypted. Nothing was written to it.
    #[error("the store at {} does not open with the key given: it is encrypted with another key, or not encrypted", path.display())]
    WrongKey {
        /// The store file.
        path: std::path::PathBuf,
    },

    /// The file is not a store this build can read: not a SQLite database, or encrypted
    /// (open it with its key, which needs the `encryption` feature). Nothing was written
    /// to it.
    #[error("the file at {} is not a readable store: it is not a SQLite database, or it is encrypted and no key was given", path.display())]
    NotAStore {
        /// The file.
        path: std::path::PathBuf,
    },

    /// The struct no longer matches the table stored on the device.
    #[error(
        "table `{table}`, column `{column}`: the store has {stored} but the struct declares {declared}; this change needs a migration (see `Migration` and `StoreOptions::migrations`)"
    )]
    SchemaMismatch {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// The stored type (`"missing"` when the column is new and cannot be added).
        stored: String,
        /// The struct's type (`"missing"` when the field was removed).
        declared: String,
    },

    /// A migration declared with [`StoreOptions::migrations`](crate::StoreOptions::migrations)
    /// could not run (a step that does not fit the stored table, a value its conversion
    /// refused, a failing SQL step). None of the open's migrations happened: the store
    /// file is as it was, and the open failed.
    #[error("migration {version} of table `{table}` failed: {message}")]
    Migration {
        /// The table.
        table: String,
        /// The migration's version.
        version: u32,
        /// Which step failed, and why.
        message: String,
        /// The underlying error (SQLite's), if any.
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// An entity definition the runtime cannot use (a reserved table name, ...).
    #[error("invalid entity definition for table `{table}`: {message}")]
    InvalidEntity {
        /// The table.
        table: String,
        /// What is wrong.
        message: String,
    },

    /// An id the store refuses.
    #[error("invalid id {id:?} for table `{table}`: {reason}")]
    InvalidId {
        /// The table.
        table: String,
        /// The id as given (possibly truncated for display).
        id: String,
        /// Why.
        reason: &'static str,
    },

    /// A value the store cannot hold (a NaN float, a timestamp outside years 0-9999).
    #[error("table `{table}`, column `{column}`: {reason}")]
    InvalidValue {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// Why.
        reason: String,
    },

    /// The row is larger than the store's limits.
    #[error("table `{table}`, id `{id}`: the row is too large for the local store")]
    RowTooLarge {
        /// The table.
        table: String,
        /// The item id.
        id: String,
    },

    /// No row with this id.
    #[error("table `{table}`: no item with id `{id}`")]
    NotFound {
        /// The table.
        table: String,
        /// The item id.
        id: String,
    },

    /// Insert of an id that is already there.
    #[error("table `{table}`: an item with id `{id}` already exists")]
    AlreadyExists {
        /// The table.
        table: String,
        /// The item id.
        id: String,
    },

    /// The new local operation cannot follow the one already queued for the item (see
    /// the collapse rules in [`queue`](crate::queue)).
    #[error("table `{table}`, id `{id}`: cannot queue {new} after the pending {existing}: {reason}")]
    QueueConflict {
        /// The table.
        table: String,
        /// The item id.
        id: String,
        /// The queued operation's kind.
        existing: OpKind,
        /// The refused operation's kind.
        new: OpKind,
        /// Why.
        reason: &'static str,
    },

    /// An error-resolution call on an operation that changed since the error was
    /// recorded, or no longer exists.
    #[error("operation {op_id}: {reason}")]
    StaleOperation {
        /// The operation's sequence number.
        op_id: i64,
        /// Why the call was refused.
        reason: String,
    },

    /// A stored or received value does not fit the struct.
    #[error("table `{table}`, {}: cannot read the row", describe_item(id.as_deref()))]
    Decode {
        /// The table.
        table: String,
        /// The row's id (`None` for a row without one that reads).
        id: Option<String>,
        /// The field and the problem.
        source: sync_core::DecodeError,
    },

    /// The item an operation keeps in the queue (a delete's snapshot of the row) does
    /// not read: the store file was damaged, or written by something else.
    #[error("table `{table}`, operation {op_id}: the queued item does not read")]
    InvalidQueuedItem {
        /// The table.
        table: String,
        /// The operation's id (its queue sequence number).
        op_id: i64,
        /// What is wrong with it.
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A query that cannot run where it was asked to (e.g. a local-only column in a
    /// server filter).
    #[error("invalid query: {0}")]
    InvalidQuery(String),

    /// OData text that does not parse or type-check.
    #[error(transparent)]
    OData(#[from] sync_core::odata::ODataError),

    /// The server could not be reached, or the connection failed mid-request (a
    /// timeout included). Nothing was lost: the operation stays queued.
    #[error("cannot reach the server at {}", shorten(url))]
    Network {
        /// The request's URL.
        url: String,
        /// What failed: the HTTP stack's error.
        source: NetworkCause,
    },

    /// The client was given something it cannot use (a server URL that does not parse
    /// or is not `http://` / `https://`). Retrying does not help: this is not
    /// [`is_network`](Error::is_network).
    #[error("{message}")]
    Config {
        /// What is wrong.
        message: String,
        /// The underlying error, if any.
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// The server refused the credentials (401/403), after one token refresh.
    #[error("the server at {} refused the credentials (HTTP {status})", shorten(url))]
    Auth {
        /// The request's URL.
        url: String,
        /// The HTTP status.
        status: u16,
    },

    /// The server answered with a status the client cannot act on (after retries, for
    /// 5xx).
    #[error("the server answered HTTP {status} for {}: {message}", shorten(url))]
    Http {
        /// The request's URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The server's message, or the start of its body.
        message: String,
    },

    /// The server's answer does not follow the protocol (truncated or malformed JSON,
    /// wrong types). Nothing was applied from it.
    #[error("unexpected answer from {}: {message}", shorten(url))]
    Protocol {
        /// The request's URL.
        url: String,
        /// What is wrong.
        message: String,
    },

    /// A push stopped before the end of the queue, because the server could not be
    /// reached ([`Error::Network`]), refused the credentials ([`Error::Auth`]), or stayed
    /// unavailable (429, 502, 503 or 504 after the retries: [`Error::Http`]). That
    /// failure is `cause`, the error's [`source`](std::error::Error::source); `report`
    /// says what the push did before it stopped. The operation it stopped at and every
    /// one after it stay queued, and the next push sends them.
    ///
    /// [`is_network`](Error::is_network), [`is_auth`](Error::is_auth) and
    /// [`http_status`](Error::http_status) look through to the cause, and
    /// [`push_report`](Error::push_report) gives the report.
    #[error("the push stopped after {} of its operations were accepted; the rest stay queued", report.pushed)]
    PushCancelled {
        /// What the push did before it stopped (its status says why it stopped).
        report: Box<PushReport>,
        /// Why it stopped.
        #[source]
        cause: Box<Error>,
    },

    /// The sync engine was stopped while this push or pull ran
    /// ([`SyncEngine::stop`](crate::SyncEngine::stop)); what it did before is kept.
    #[error("the sync engine was stopped")]
    Stopped,

    /// A purge refused while the table has pending operations.
    #[error("table `{table}` has {pending} pending operations; push them or use force_purge")]
    PendingOperations {
        /// The table.
        table: String,
        /// How many.
        pending: u64,
    },
}

impl Error {
    /// No row with the given id.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// The struct and the stored table disagree.
    pub fn is_schema_mismatch(&self) -> bool {
        matches!(self, Error::SchemaMismatch { .. })
    }

    /// A queue rule refused the write.
    pub fn is_queue_conflict(&self) -> bool {
        matches!(self, Error::QueueConflict { .. })
    }

    /// An error-resolution call on a stale or missing operation.
    pub fn is_stale_operation(&self) -> bool {
        matches!(self, Error::StaleOperation { .. })
    }

    /// The server could not be reached (a retry later may succeed); also a push
    /// cancelled for that reason.
    pub fn is_network(&self) -> bool {
        match self {
            Error::Network { .. } => true,
            Error::PushCancelled { cause, .. } => cause.is_network(),
            _ => false,
        }
    }

    /// The client's configuration is unusable (retrying does not help).
    pub fn is_config(&self) -> bool {
        matches!(self, Error::Config { .. })
    }

    /// The server refused the credentials; also a push cancelled for that reason.
    pub fn is_auth(&self) -> bool {
        match self {
            Error::Auth { .. } => true,
            Error::PushCancelled { cause, .. } => cause.is_auth(),
            _ => false,
        }
    }

    /// The HTTP status of a server answer behind this error, if any (a cancelled push's
    /// is its cause's).
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Error::Auth { status, .. } | Error::Http { status, .. } => Some(*status),
            Error::PushCancelled { cause, .. } => cause.http_status(),
            _ => None,
        }
    }

    /// A push that stopped before the end of the queue ([`Error::PushCancelled`]).
    pub fn is_push_cancelled(&self) -> bool {
        matches!(self, Error::PushCancelled { .. })
    }

    /// What a cancelled push did before it stopped, if this is one.
    pub fn push_report(&self) -> Option<&PushReport> {
        match self {
            Error::PushCancelled { report, .. } => Some(report),
            _ => None,
        }
    }
}

impl PushCancel {
    /// The same failure as an [`Error`]: [`Error::Network`], [`Error::Auth`], or
    /// [`Error::Http`] for a server that stayed unavailable.
    pub fn to_error(&self) -> Error {
        match self {
            PushCancel::Network { url, source } => Error::Network { url: url.clone(), source: source.clone() },
            PushCancel::Auth { url, status } => Error::Auth { url: url.clone(), status: *status },
            PushCancel::Unavailable { url, status, message } => {
                Error::Http { url: url.clone(), status: *status, message: message.clone() }
            }
            PushCancel::Stopped => Error::Stopped,
        }
    }
}

impl From<sync_core::QueryError> for Error {
    fn from(e: sync_core::QueryError) -> Error {
        Error::InvalidQuery(e.0)
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// This error and its sources in one line (`a: b: c`), for where it is kept as
    /// text (an error row's message, the message of another error).
    pub(crate) fn with_sources(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}

/// `item `x`` for a message (at most 64 characters of the id), or `an item without an
/// id`.
fn describe_item(id: Option<&str>) -> String {
    match id {
        Some(id) if id.chars().count() > 64 => format!("item `{}...`", id.chars().take(64).collect::<String>()),
        Some(id) => format!("item `{id}`"),
        None => "an item without an id".to_owned(),
    }
}

/// A URL for a message: whole when short, else its start and its length (a pull's
/// filter can make it hundreds of kilobytes long). The error keeps the whole URL.
fn shorten(url: &str) -> std::borrow::Cow<'_, str> {
    const KEEP: usize = 200;
    if url.len() <= KEEP {
        return url.into();
    }
    let mut end = KEEP;
    while !url.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &url[..end], url.len()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_shorten_long_urls() {
        let url = format!("http://127.0.0.1:8080/tables/T?$filter={}", "(id eq 'é') or ".repeat(20_000));
        let e = Error::Network {
            url: url.clone(),
            source: NetworkCause::new(std::io::Error::other("the URL is too long")),
        };
        let text = e.to_string();
        assert!(text.len() < 300, "{}", &text[..300.min(text.len())]);
        assert!(text.starts_with("cannot reach the server at http://127.0.0.1:8080/tables/T?$filter=(id eq"), "{text}");
        assert!(text.ends_with(&format!("({} bytes)", url.len())), "{text}");
        let cause = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(cause.as_deref(), Some("the URL is too long"), "the cause is the source");
        let short = Error::Http { url: "http://h/tables/T".into(), status: 500, message: "boom".into() };
        assert_eq!(short.to_string(), "the server answered HTTP 500 for http://h/tables/T: boom");
    }

    /// A reporter walking the chain prints every cause once: no message repeats the
    /// message of its source.
    #[test]
    fn no_error_prints_its_source_twice() {
        let decode = sync_core::DecodeError { field: "complete", message: "expected a bool".into() };
        let errors = [
            Error::Decode { table: "T".into(), id: Some("x".into()), source: decode.clone() },
            Error::Network {
                url: "http://h/tables/T".into(),
                source: NetworkCause::new(std::io::Error::other("connection refused")),
            },
            Error::Config { message: "the server URL `x` does not parse".into(), source: Some("no scheme".into()) },
            Error::InvalidQueuedItem { table: "T".into(), op_id: 7, source: Box::new(decode) },
            Error::Sqlite(rusqlite::Error::QueryReturnedNoRows),
        ];
        for e in &errors {
            let mut level: &dyn std::error::Error = e;
            while let Some(source) = level.source() {
                let (message, cause) = (level.to_string(), source.to_string());
                assert!(!message.contains(&cause), "{e:?}: `{message}` repeats its source `{cause}`");
                level = source;
            }
            assert!(std::error::Error::source(e).is_some(), "{e:?} keeps its cause as its source");
        }
        assert_eq!(
            errors[0].with_sources(),
            "table `T`, item `x`: cannot read the row: field `complete`: expected a bool"
        );
    }

    #[test]
    fn network_causes_compare_by_what_they_say_and_convert_back() {
        let a = NetworkCause::new(std::io::Error::other("reset"));
        assert_eq!(a, a.clone());
        assert_eq!(a, NetworkCause::new(std::io::Error::other("reset")));
        assert_ne!(a, NetworkCause::new(std::io::Error::other("refused")));
        assert!(!a.is_timeout());
    }
}
