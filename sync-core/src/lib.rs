//! What `sync-runtime` (the client library) and `sync-server` share, and nothing else.
//!
//! App authors depend on `sync-runtime`, which re-exports what they use from here; a
//! server built on `sync-server` depends on this crate without the client (and without
//! an HTTP client). Everything here is pure: no threads, no network, no files of its
//! own. The SQLite helpers ([`sql::sqlite`]) act on a connection the caller owns.
//!
//! - The model: [`SyncEntity`] (what `#[derive(SyncEntity)]` implements), [`FieldDef`],
//!   [`FieldRole`], [`FieldValue`], and the untyped [`Value`] of a [`ColumnType`], with
//!   the one set of rules by which JSON becomes a value ([`Value::from_json`]), used by
//!   the client for server answers and by the server for request bodies.
//! - Queries: the typed builder ([`Column`], [`Filter`], [`Query`]), the untyped AST
//!   ([`query`]), its evaluator ([`query::eval`]), OData text ([`odata`]: printer,
//!   parser, type checker), and the SQL compiler ([`sql`]) with one dialect per database
//!   (SQLite, PostgreSQL).
//! - Protocol names: [`ProtocolVersion`], the system columns and tables ([`system`]),
//!   the timestamp format ([`datetime`]).
#![warn(missing_docs)]

pub mod datetime;
mod entity;
mod field_roles;
pub mod odata;
mod protocol;
pub mod query;
pub mod sql;
pub mod system;
mod value;

pub use entity::{DecodeError, FieldDef, FieldRole, FieldValue, NonOptional, SyncEntity};
pub use protocol::ProtocolVersion;
pub use query::{Column, Filter, Order, Query};
pub use sql::QueryError;
pub use value::{ColumnType, Value, ValueError, json_kind};

/// Items the generated code of `#[derive(SyncEntity)]` refers to. Not part of the
/// public API. (`sync_runtime::__private` re-exports it; a crate that depends on
/// `sync-core` alone derives with `#[sync(crate = "::sync_core")]`.)
#[doc(hidden)]
pub mod __private {
    pub use crate::entity::{DecodeError, FieldDef, FieldRole, FieldSource, FieldValue, RowReader, SyncEntity};
    pub use crate::field_roles::{DeletedField, IdField, LocalOnlyField, TimestampField, VersionField};
    pub use crate::query::Column;
    pub use crate::value::{ColumnType, Value, ValueError};
    pub use ::core;
    pub use ::std::string::String;
    pub use ::std::vec::Vec;
}
