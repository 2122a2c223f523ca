//! `sync-server`: a table server for `sync-runtime`'s protocol, speaking both
//! generations of the Azure Mobile Apps / Datasync table protocol on the same routes
//! (chosen per request by the `ZUMO-API-VERSION` header; DESIGN.md section 6).
//!
//! Tables come from the same `SyncEntity` structs the client uses
//! ([`ServerBuilder::table`]) or from a tables file at run time
//! ([`load_tables_file`], [`ServerBuilder::table_def`]). Storage sits behind the
//! [`Storage`] trait: SQLite ([`SqliteStorage`], embedded, the default) or PostgreSQL
//! ([`PostgresStorage`], for several instances behind a load balancer; nothing lives in
//! a server between requests). Callers are anonymous, or authenticated by HS256 bearer
//! tokens ([`Auth`]); a table can be per-user ([`ServerBuilder::owner_column`]).
//!
//! ```no_run
//! # async fn run() -> Result<(), sync_server::Error> {
//! use sync_server::{Server, load_tables_file};
//!
//! let tables = load_tables_file("examples/todo/tables.toml".as_ref())?;
//! let server = Server::builder()
//!     .tables(tables)
//!     .database("sqlite:todo.db".parse()?)
//!     .page_size(100)
//!     .max_top(1000)
//!     .build()
//!     .await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! server.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! # Routes
//!
//! | | v2 (`ZUMO-API-VERSION: 2.0.0`) | v3 (`3.0.0`) |
//! |---|---|---|
//! | `GET /tables/{t}` | JSON array, or `{"results","count"}` with `$inlinecount=allpages` | `{"items","count"?,"nextLink"}` |
//! | `POST /tables/{t}` | insert: 201, 409 with the server's item | same |
//! | `GET /tables/{t}/{id}` | 200; tombstone 404 | 200; tombstone 410 |
//! | `PATCH /tables/{t}/{id}` | partial update | 405 |
//! | `PUT /tables/{t}/{id}` | 405 | full replace; `deleted: false` undeletes |
//! | `DELETE /tables/{t}/{id}` | 200 with the tombstone; again 404 | 204; again 410 |
//! | `POST /tables/{t}/{id}` | undelete | 405 |
//! | `GET /healthz` | 200 `{"status":"ok"}` (no token needed) | same |
//!
//! Writes take `If-Match: "<version>"` (412 with the current item on mismatch; a weak
//! `W/` prefix is ignored); without it, a `version` in the body that is not current gives
//! 409 with the current item. Single-item answers carry `ETag: "<version>"`. Versions are
//! 32 random hex digits, new on every write. `updatedAt` has millisecond precision and is
//! assigned so that incremental readers ordering by `(updatedAt, id)` never miss a row
//! (see [`stamp`]; [`ManualClock`] makes it testable).
//!
//! List options: `$filter` (parsed into the shared query AST and compiled to
//! parameterized SQL), `$orderby`, `$top` (capped at [`ServerBuilder::max_top`], default
//! page [`ServerBuilder::page_size`]), `$skip`, `$select`, `$count=true` /
//! `$inlinecount=allpages`, and `__includedeleted=true` / `__includeDeleted=true` for
//! tombstones (both spellings and both count options work in both generations). Every
//! bad input is a 4xx with a JSON body `{"error", "message", "position"?}`.
#![warn(missing_docs)]

pub mod auth;
mod body;
mod connections;
mod database;
mod error;
mod jwks;
mod links;
mod list;
mod metrics;
mod preamble;
mod problem;
mod routes;
mod server;
pub mod stamp;
mod state;
pub mod storage;
mod table;
mod table_check;
mod tables_file;
mod wire;

pub use auth::Auth;
pub use database::Database;
pub use error::{Error, Result};
pub use server::{
    DEFAULT_BODY_READ_TIMEOUT, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_BODY, DEFAULT_MAX_TOP,
    DEFAULT_PAGE_SIZE, Server, ServerBuilder, ServerHandle, ShutdownSignal,
};
pub use stamp::{Clock, ManualClock, SystemClock};
pub use storage::{PoolUse, PostgresStorage, SqliteStorage, Storage};
pub use table::{ColumnDef, TableDef};
pub use tables_file::{load_tables_file, parse_tables};
