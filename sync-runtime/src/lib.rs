//! Offline-first data sync for Rust.
//!
//! Write plain structs, add `#[derive(SyncEntity)]`, and get a typed local table in
//! SQLite, typed queries, and a persistent queue of every local change; a
//! [`SyncClient`] pushes that queue to a server speaking the Azure Mobile Apps (v2) /
//! Datasync (v3) table protocol when the network is there, and pulls the server's
//! changes back.
//!
//! # Offline: a store, a table, a query
//!
//! ```
//! use sync_runtime::{Store, SyncEntity};
//!
//! #[derive(SyncEntity, Clone, Debug, PartialEq)]
//! #[sync(table = "TodoItem")]
//! pub struct TodoItem {
//!     pub id: String,
//!     pub text: String,
//!     pub complete: bool,
//!     #[sync(version)]
//!     pub version: Option<String>,
//! }
//!
//! # fn main() -> sync_runtime::Result<()> {
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = Store::open_in_memory().await?; // or Store::open("app.db")
//! let todos = store.table::<TodoItem>().await?; // creates (or checks) the table
//!
//! // An empty id gets a new UUID v4; the insert and its queue operation commit together.
//! let milk = todos
//!     .insert(TodoItem { id: String::new(), text: "buy milk".into(), complete: false, version: None })
//!     .await?;
//! todos.insert(TodoItem { id: "b".into(), text: "call mum".into(), complete: true, version: None }).await?;
//!
//! // Typed queries run locally as SQL with bound parameters...
//! let open = todos
//!     .query()
//!     .filter(TodoItem::FIELDS.complete.eq(false))
//!     .order_by(TodoItem::FIELDS.text.asc())
//!     .all()
//!     .await?;
//! assert_eq!(open, vec![milk.clone()]);
//!
//! // ...and print as the OData `$filter` a server reads.
//! let filter = TodoItem::FIELDS.text.starts_with("buy") & TodoItem::FIELDS.complete.eq(false);
//! assert_eq!(
//!     sync_runtime::odata::print_filter(filter.expr(), sync_runtime::ProtocolVersion::V3),
//!     "(startswith(text,'buy') and (complete eq false))"
//! );
//!
//! // Every local write waits in the operations queue until it is pushed.
//! assert_eq!(store.pending_count().await?, 2);
//! # Ok(())
//! # })
//! # }
//! ```
//!
//! # Online: push and pull
//!
//! A [`SyncClient`] talks to one server for one store. [`SyncClient::push`] sends the
//! queue in order; [`SyncClient::pull`] fetches the rows of a query, incrementally
//! with a query id; [`SyncClient::sync`] does both for one table. Offline, each of them
//! is an error ([`Error::is_network`]) and the queue is kept for the next try.
//!
//! ```no_run
//! # use sync_runtime::{Store, SyncEntity};
//! # #[derive(SyncEntity, Clone, Debug, PartialEq)]
//! # #[sync(table = "TodoItem")]
//! # pub struct TodoItem { pub id: String, pub text: String, pub complete: bool }
//! use sync_runtime::{ProtocolVersion, ServerWins, SyncClient};
//!
//! # async fn app() -> sync_runtime::Result<()> {
//! let store = Store::open("todo.db").await?;
//! let todos = store.table::<TodoItem>().await?;
//! todos.insert(TodoItem { id: String::new(), text: "written offline".into(), complete: false }).await?;
//!
//! let client = SyncClient::builder(store.clone(), "https://todo.example.com")
//!     .protocol(ProtocolVersion::V3)
//!     .conflict_handler::<TodoItem>(ServerWins) // or ClientWins, or a closure that merges
//!     .build()?;
//!
//! match client.sync::<TodoItem>().await {
//!     Ok(report) => println!("pushed {}, pulled {}", report.push.pushed, report.pull.applied),
//!     Err(e) if e.is_network() => println!("offline: the change stays queued"),
//!     Err(e) => return Err(e),
//! }
//!
//! // Or each half on its own: pull only the open items, resuming where the last
//! // pull with this query id stopped.
//! let open = todos.query().filter(TodoItem::FIELDS.complete.eq(false));
//! let pulled = client.pull(open, Some("open-items")).await?;
//! println!("{} rows changed since the last pull", pulled.received);
//! # Ok(())
//! # }
//! ```
//!
//! # The pieces
//!
//! - [`SyncEntity`] (derive): the schema of a table as data; see the derive's docs for
//!   every `#[sync(...)]` key. Field types come from [`time`], `uuid` and
//!   [`serde_json`], re-exported here so the app needs no version of its own.
//! - [`Store`]: the SQLite file and the thread that owns it; [`Store::table`] gives a
//!   typed [`Table`], [`Store::transaction`] writes across tables atomically, and
//!   [`StoreOptions::migrations`] declares the [`Migration`]s a changed struct needs.
//! - [`Query`], [`Filter`], [`Column`]: typed queries; [`query`] holds the untyped AST
//!   and [`odata`] prints and parses it.
//! - The queue: [`Store::pending_ops`], [`Table::pending_count`], ... and the rules of
//!   [`queue`]. The error table: [`Table::errors`] and the `resolve_*` calls. Server
//!   rows that did not fit the struct: [`Table::rejected_rows`].
//! - [`SyncClient`]: [`SyncClient::push`], [`SyncClient::pull`], conflict handlers
//!   ([`ServerWins`], [`ClientWins`], closures), progress events ([`SyncEvent`]).
//! - [`Error`]: one error type with structured fields and predicates.
//!
//! # Async, blocking, and which runtime
//!
//! Every store call returns a [`StoreCall`] and every push, pull or sync a [`SyncCall`]:
//! `.await` them, or call `.wait()` on a thread with no async runtime (a CLI, an egui or
//! slint app). Store calls need no particular runtime: reads run on the calling thread
//! on a read connection, writes on the store's thread. The sync client's calls need
//! tokio (with I/O and time, as `#[tokio::main]` gives) when awaited; `.wait()` runs
//! them on a one-thread runtime of the client's own. A call awaited where it cannot run
//! (no tokio for the client, `.wait()` inside tokio) fails with [`Error::Runtime`]
//! instead of panicking.
//!
//! # Features
//!
//! - `derive` (default): `#[derive(SyncEntity)]`.
//! - `uuid` (default), `chrono`: fields of those crates' types.
//! - `encryption`: store files encrypted with SQLCipher; see `StoreOptions::key`.
//!   Builds SQLCipher and OpenSSL from source (needs a C compiler, `perl` and `make`).
#![warn(missing_docs)]

pub mod client;
mod error;
mod network_cause;
mod op;
mod push_report;
mod store;

pub use client::{
    ClientWins, Conflict, ConflictHandler, EngineBuilder, PullReport, Resolution, RetryPolicy, ServerWins,
    StatusStream, SyncCall, SyncClient, SyncClientBuilder, SyncEngine, SyncErrorKind, SyncEvent, SyncFailure,
    SyncPhase, SyncProgress, SyncReport, SyncStatus,
};
pub use error::{Error, Result};
pub use network_cause::NetworkCause;
pub use op::{OpKind, OpState};
pub use push_report::{ConflictOutcome, ConflictResolution, PushCancel, PushReport, PushStatus};
pub use store::queue;
pub use store::{
    Change, ChangeOrigin, ChangeStream, Durability, ErrorRecord, IntegrityReport, Migration, PendingOp, RejectedRow,
    Store, StoreCall, StoreOptions, SyncError, Table, TableQuery, Tx, Watch, WatchHandle,
};
/// OData `$filter` / `$orderby` text: how a query travels to a server.
/// The store's one timestamp format (UTC, whole milliseconds, `...T12:00:00.123Z`).
pub use sync_core::datetime;
pub use sync_core::odata;
/// The query AST the typed builder makes ([`Filter::expr`], [`Query::spec`]) and its
/// in-memory evaluator.
pub use sync_core::query;
/// The names of the system columns and tables.
pub use sync_core::system;
pub use sync_core::{
    Column, ColumnType, DecodeError, FieldDef, FieldRole, FieldValue, Filter, NonOptional, Order, ProtocolVersion,
    Query, SyncEntity, Value, ValueError,
};

#[cfg(feature = "derive")]
pub use sync_derive::SyncEntity;

// The crates whose types are field types, at the versions the runtime implements
// `FieldValue` for: an app names them through here (`sync_runtime::time::OffsetDateTime`)
// and needs no dependency of its own that would have to match.
/// The `chrono` crate: `chrono::DateTime<Utc>` is a timestamp field type (feature
/// `chrono`).
#[cfg(feature = "chrono")]
pub use chrono;
/// The `serde_json` crate: [`serde_json::Value`] is the JSON field type.
pub use serde_json;
/// The `time` crate: [`time::OffsetDateTime`] is the timestamp field type.
pub use time;
/// The `uuid` crate: [`uuid::Uuid`] is a field type (feature `uuid`, on by default).
#[cfg(feature = "uuid")]
pub use uuid;

/// Items the generated code refers to. Not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use sync_core::__private::*;
}
