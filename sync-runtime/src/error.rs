//! The one error type of the runtime.

use crate::op::OpKind;

/// What went wrong. Match on the variant, or use the predicates (`is_not_found()`, ...).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// SQLite failed.
    #[error("local store error")]
    Sqlite(#[from] rusqlite::Error),

    /// The store's worker thread is gone (the store was closed or its thread panicked).
    #[error("the local store is closed")]
    StoreClosed,

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

    /// The struct no longer matches the table stored on the device.
    #[error(
        "table `{table}`, column `{column}`: the store has {stored} but the struct declares {declared}; this change needs an explicit migration"
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

    /// The new local operation cannot follow the one already queued for the item
    /// (DESIGN.md section 5).
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
    #[error("table `{table}`: cannot read the row: {source}")]
    Decode {
        /// The table.
        table: String,
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
    #[error("cannot reach the server at {}: {message}", shorten(url))]
    Network {
        /// The request's URL.
        url: String,
        /// What failed.
        message: String,
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

    /// The server could not be reached (a retry later may succeed).
    pub fn is_network(&self) -> bool {
        matches!(self, Error::Network { .. })
    }

    /// The server refused the credentials.
    pub fn is_auth(&self) -> bool {
        matches!(self, Error::Auth { .. })
    }

    /// The HTTP status of a server answer behind this error, if any.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Error::Auth { status, .. } | Error::Http { status, .. } => Some(*status),
            _ => None,
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
        let e = Error::Network { url: url.clone(), message: "the URL is too long".into() };
        let text = e.to_string();
        assert!(text.len() < 300, "{}", &text[..300.min(text.len())]);
        assert!(text.starts_with("cannot reach the server at http://127.0.0.1:8080/tables/T?$filter=(id eq"), "{text}");
        assert!(text.contains(&format!("({} bytes)", url.len())) && text.ends_with(": the URL is too long"), "{text}");
        let short = Error::Http { url: "http://h/tables/T".into(), status: 500, message: "boom".into() };
        assert_eq!(short.to_string(), "the server answered HTTP 500 for http://h/tables/T: boom");
    }
}
