//! Storage behind one object-safe, async trait, so that SQLite and PostgreSQL slot in
//! behind the same HTTP layer.
//!
//! The HTTP layer does protocol work (versions, JSON, validation, which status for which
//! outcome); a storage does data work, and does each conditional write atomically: the
//! existence check and the version check hold for the row the write replaces (a write
//! names the version it read, and reads again when the row changed under it), with
//! `updatedAt` assigned by the rule of [`crate::stamp`].
//!
//! The two backends share one write path: the row-write rules (`write.rs`), the SQL
//! of one-row statements and of the clocks (`statements.rs`) and the table DDL
//! (`schema.rs`), with what the engines spell differently in `engine.rs`. Each backend
//! keeps its connections, how it runs a write attempt (SQLite: under its one write
//! lock; PostgreSQL: writers in parallel, see [`PostgresStorage`]), and how it encodes
//! values.
//!
//! # Owned tables
//!
//! A table with an owner column ([`TableDef::owner_column`]) is keyed by `(owner, id)`:
//! every call on one row takes the caller's `owner`, and a row of another owner is, to
//! that call, a row that does not exist. List calls carry the owner condition in the
//! query's filter, as an AST node the HTTP layer adds.

mod engine;
mod postgres;
mod schema;
mod sqlite;
mod statements;
mod write;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sync_core::Value;
use sync_core::query::QuerySpec;

pub use postgres::PostgresStorage;
pub use sqlite::SqliteStorage;

use crate::table::TableDef;

/// A boxed `Send` future, the return type of every [`Storage`] method.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The boxed `Send` future of a [`Storage`] call's result.
pub type StorageFuture<'a, T> = BoxFuture<'a, Result<T, StorageError>>;

/// One stored row.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The primary key.
    pub id: String,
    /// One value per data column, in [`TableDef::columns`] order.
    pub values: Vec<Value>,
    /// The opaque version, new on every write.
    pub version: String,
    /// Last write, `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub updated_at: String,
    /// Creation, same format.
    pub created_at: String,
    /// Whether the row is a tombstone.
    pub deleted: bool,
}

/// A list request: the query (already including the tombstone condition the HTTP layer
/// adds) and whether to count every match too.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListQuery {
    /// Filter, order, limit and offset. The order always ends with `id` (the compiler
    /// adds it), so paging is stable.
    pub spec: QuerySpec,
    /// Also count the rows that match the filter, ignoring limit and offset.
    pub count: bool,
}

/// One page of rows, and the total when asked for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Page {
    /// The rows, in order.
    pub rows: Vec<Row>,
    /// The number of matching rows, when [`ListQuery::count`] was set.
    pub count: Option<u64>,
}

/// A change to an existing row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Update {
    /// New values by data column index; other columns keep theirs.
    pub values: Vec<(usize, Value)>,
    /// Write only if the row's version is this one.
    pub expected_version: Option<String>,
    /// Also clear the tombstone flag (a soft-deleted row is refused otherwise).
    pub undelete: bool,
}

/// A refused or failed storage call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// No row with this id.
    #[error("no item with this id")]
    NotFound,
    /// The row is a tombstone (soft-deleted).
    #[error("the item is deleted")]
    Deleted(Box<Row>),
    /// The row's version is not the expected one; carries the current row.
    #[error("the item has changed (version mismatch)")]
    VersionMismatch(Box<Row>),
    /// Insert of an id that exists (tombstones included); carries the existing row.
    #[error("an item with this id already exists")]
    AlreadyExists(Box<Row>),
    /// The query cannot run: an unknown column, or one the database refuses.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// The stored schema does not match the table definition.
    #[error("table `{table}`: {message}")]
    Schema {
        /// The table.
        table: String,
        /// What differs.
        message: String,
    },
    /// The database cannot be used as configured (e.g. no schema to create tables in).
    #[error("database setup: {0}")]
    Setup(String),
    /// The database failed.
    #[error("database error")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The storage cannot take requests (its worker is gone).
    #[error("storage unavailable: {0}")]
    Unavailable(&'static str),
}

/// What a client is told when the database refuses its query ([`StorageError::InvalidQuery`]
/// from the database itself rather than from the SQL compiler). The database's own text
/// goes to the log only: it names internals and differs between engines and versions.
pub(crate) const QUERY_REFUSED: &str =
    "the database cannot run this query: it is too large or too complex, or computes a value out of range";

/// What PostgreSQL says to text holding the NUL character, as a storage error of the
/// client's (the HTTP layer refuses such text before it reaches a storage).
pub(crate) const NUL_REFUSED: &str = "text must not contain the NUL character (U+0000): PostgreSQL text cannot hold it";

/// How much of a storage's connection pool is in use, for the metrics endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolUse {
    /// Connections open now.
    pub open: usize,
    /// Of those, connections idle in the pool.
    pub idle: usize,
    /// The most connections the pool opens.
    pub max: usize,
}

/// A write to one row, carried out atomically by [`Storage::write`]. Kinds may be added:
/// a storage answers one it does not know with an error.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Change {
    /// Inserts a row. Refuses an existing id (tombstones included) with
    /// [`StorageError::AlreadyExists`].
    Insert {
        /// One value per data column (a served owner column is set to the call's owner
        /// whatever it holds).
        values: Vec<Value>,
    },
    /// Changes a row (never its owner column).
    Update(Update),
    /// Deletes a row: marks it deleted (`soft`, answering the tombstone) or removes it
    /// (answering the row as it was).
    Delete {
        /// Delete only if the row's version is this one.
        expected_version: Option<String>,
        /// Keep a tombstone.
        soft: bool,
    },
    /// Clears the tombstone flag of a row (a new version and `updatedAt`); a row that is
    /// not deleted is answered unchanged.
    Undelete {
        /// Undelete only if the row's version is this one.
        expected_version: Option<String>,
    },
}

/// Where the rows live. Object-safe (`Arc<dyn Storage>`); every method returns a boxed
/// `Send` future, so an implementation may be natively async (PostgreSQL) or run a
/// blocking driver on its own threads (SQLite).
///
/// Every call on one row takes `owner`: `Some(sub)` for an owned table (the row must
/// belong to `sub`; an insert makes it `sub`'s), ignored for other tables. A call on an
/// owned table without an owner fails with [`StorageError::Schema`].
///
/// Contract of [`Storage::write`], atomic:
/// - every successful write sets a new `version` (never equal to the row's previous
///   one) and an `updatedAt` by the rule of [`crate::stamp`], greater than the row's
///   previous one, such that no list ever returns a row after returning one with a
///   greater `(updatedAt, id)` that was committed before it (among the rows one
///   reader may see: a table's, or one owner's of an owned table) — so an incremental
///   reader never misses a row;
/// - checks come in this order: existence ([`StorageError::NotFound`]), tombstone
///   ([`StorageError::Deleted`], unless the change undeletes), expected version
///   ([`StorageError::VersionMismatch`] with the current row).
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// Creates the tables (or checks and extends existing ones). Called once before
    /// serving, with every table the server serves.
    fn prepare(&self, tables: Vec<Arc<TableDef>>) -> StorageFuture<'_, ()>;

    /// Rows matching a query.
    fn list(&self, table: Arc<TableDef>, query: ListQuery) -> StorageFuture<'_, Page>;

    /// One row by id, tombstones included.
    fn get(&self, table: Arc<TableDef>, id: String, owner: Option<String>) -> StorageFuture<'_, Option<Row>>;

    /// Carries out `change` on the row `id` and answers the row as written (for a hard
    /// delete: as it was; for an undelete of a live row: as it is).
    fn write(&self, table: Arc<TableDef>, id: String, change: Change, owner: Option<String>) -> StorageFuture<'_, Row>;

    /// Whether the storage answers (for `GET /healthz`).
    fn health(&self) -> StorageFuture<'_, ()>;

    /// How much of the storage's connection pool is in use (`None`: the storage has no
    /// pool worth reporting). The default says `None`.
    fn pool_use(&self) -> Option<PoolUse> {
        None
    }

    /// Closes the storage after the server stopped: later calls fail with
    /// [`StorageError::Unavailable`]. The default does nothing.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Relays the change feed's nudges between server instances on this storage's
    /// database: the relay announces this instance's committed writes to the others
    /// ([`Relay::announce`]) and calls `heard` with theirs. `None` (the default) when
    /// the database has no other instances to tell, or no way to: the feed then works
    /// within the process. [`PostgresStorage`] relays through `LISTEN`/`NOTIFY`.
    /// Called once, inside a tokio runtime, when the server is built with the feed on.
    fn relay(&self, heard: HeardFn) -> Option<Box<dyn Relay>> {
        let _ = heard;
        None
    }
}

/// What a [`Relay`] heard from another server instance on its database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Heard<'a> {
    /// A write to `table` committed: for an owned table, to a row of `owner` (`None`:
    /// of an owner not said, so every subscriber of the table is nudged).
    Write {
        /// The table's name.
        table: &'a str,
        /// The row's owner, for an owned table.
        owner: Option<&'a str>,
    },
    /// Anything may have changed: the relay (re)connected and may have missed writes.
    Anything,
}

/// Called by a [`Relay`] with what it heard (see [`Storage::relay`]); never blocks.
pub type HeardFn = Arc<dyn Fn(Heard<'_>) + Send + Sync>;

/// Carries the change feed's nudges between server instances on one database (see
/// [`Storage::relay`]). Dropping it, or [`Relay::close`], stops it.
pub trait Relay: Send + Sync + fmt::Debug {
    /// Tells the other instances that a write to `table` (for an owned table, to a row
    /// of `owner`) committed. Called after the commit; must not block or wait for the
    /// database (announcements are sent in the background, and may be merged).
    fn announce(&self, table: &str, owner: Option<&str>);

    /// Completes once the relay hears other instances (for a server to start with its
    /// feed whole); the server waits for it a few seconds at most. The default completes
    /// at once.
    fn listening(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Stops relaying (the server stopped).
    fn close(&self);
}

/// The key of one row in a call: its id and, for an owned table, its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Key<'k> {
    pub(crate) id: &'k str,
    /// `Some` exactly when the table is owned.
    pub(crate) owner: Option<&'k str>,
}

impl<'k> Key<'k> {
    /// The key a call on `table` works on: with `owner` for an owned table (which must
    /// have one), without for a shared table.
    pub(crate) fn new(table: &TableDef, id: &'k str, owner: Option<&'k str>) -> Result<Key<'k>, StorageError> {
        match (&table.owner_column, owner) {
            (None, _) => Ok(Key { id, owner: None }),
            (Some(_), Some(owner)) => Ok(Key { id, owner: Some(owner) }),
            (Some(column), None) => Err(StorageError::Schema {
                table: table.name.clone(),
                message: format!("the table is owned (owner column `{column}`) but the call has no owner"),
            }),
        }
    }

    /// The parameters of the key condition, in order: the id, then the owner.
    pub(crate) fn params(&self) -> Vec<&'k str> {
        std::iter::once(self.id).chain(self.owner).collect()
    }
}
