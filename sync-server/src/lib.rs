//! `sync-server`: a table server for `sync-runtime`'s protocol, speaking both
//! generations of the Azure Mobile Apps / Datasync table protocol on the same routes
//! (chosen per request by the `ZUMO-API-VERSION` header; DESIGN.md section 6).
//!
//! Tables come from the same `SyncEntity` structs the client uses
//! ([`ServerBuilder::table`]) or from a tables file at run time
//! ([`load_tables_file`], [`ServerBuilder::table_def`]). Storage sits behind the
//! [`Storage`] trait: SQLite ([`SqliteStorage`], embedded, the default) or PostgreSQL
//! ([`PostgresStorage`], for several instances behind a load balancer; nothing lives in
//! a server between requests). Callers are anonymous, or authenticated by bearer JWTs
//! ([`Auth`]: HS256 secrets, RS256/ES256 public keys in PEM, or an identity provider's
//! JWKS URL, with `aud` and `iss` checks); a table can be per-user
//! ([`ServerBuilder::owner_column`]).
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
//! | `GET /metrics` | Prometheus text (no token needed; see below) | same |
//! | `GET /feed` | the change feed: server-sent events (see below) | same |
//!
//! `ZUMO-API-VERSION` (header, or query parameter) must be exactly `2.0.0` or `3.0.0`;
//! anything else is 400.
//!
//! Writes take `If-Match: "<version>"`, compared strongly (RFC 9110): 412 with the
//! current item on mismatch, also for a weak `W/"<version>"`; without it, a `version` in
//! the body that is not current gives 409 with the current item. Single-item answers carry `ETag: "<version>"`. Versions are
//! 32 random hex digits, new on every write. `updatedAt` has millisecond precision and is
//! assigned so that incremental readers ordering by `(updatedAt, id)` never miss a row
//! (see [`stamp`]; [`ManualClock`] makes it testable).
//!
//! List options: `$filter` (parsed into the shared query AST and compiled to
//! parameterized SQL), `$orderby`, `$top` (capped at [`ServerBuilder::max_top`], default
//! page [`ServerBuilder::page_size`]), `$skip`, `$select`, `$count=true` /
//! `$inlinecount=allpages`, and `__includedeleted=true` / `__includeDeleted=true` for
//! tombstones (both spellings and both count options work in both generations); at most
//! 32 `$orderby` terms. Every bad input is a 4xx with a JSON body `{"error", "message",
//! "position"?}`, in words of the server's own: a database's error text goes to the log,
//! never into an answer.
//!
//! # Request bodies
//!
//! Insert and update bodies are JSON objects: a `Content-Type` other than JSON
//! (`application/json`, `application/*+json`) is 415, a `Content-Encoding` other than
//! `identity` is 415 (bodies are not decompressed), a body over
//! [`ServerBuilder::max_body`] is 413, one that does not arrive within
//! [`ServerBuilder::body_read_timeout`] is 408, an object naming a key twice is 400.
//! Text holding the NUL character (ids, string properties, `$filter` literals, a token's
//! `sub`) is 400 on both backends: PostgreSQL text cannot hold it.
//!
//! # Links
//!
//! `Location` (of an insert) and next-page links (v3 `nextLink`, v2 `Link`) start with
//! [`ServerBuilder::public_url`] when it is set; else, with
//! [`ServerBuilder::trust_forwarded_headers`], with what `X-Forwarded-Proto` and
//! `X-Forwarded-Host` say; else `Location` is relative and page links name the address
//! the connection was accepted on. The `Host` header alone never chooses where a link
//! points.
//!
//! # Connections
//!
//! [`Server::serve`] (and [`Server::spawn`], [`Server::serve_until`]) enforce a
//! header-read timeout ([`ServerBuilder::header_read_timeout`], 10 s), an idle timeout
//! between requests on a kept-alive connection ([`ServerBuilder::idle_timeout`], 60 s),
//! the body-read timeout (30 s) and a cap on open connections
//! ([`ServerBuilder::max_connections`], by default the descriptor limit less 64). At
//! the cap a new connection closes the one that has gone longest without a request, so
//! held or slow connections never lock out new clients or health checks; if accept
//! runs out of descriptors, the cap comes down and accepting backs off briefly.
//!
//! # The change feed
//!
//! `GET /feed[?tables=A,B]` (on by default; [`ServerBuilder::feed`]) streams
//! server-sent events to a subscriber, with the tables' authentication and with or
//! without `ZUMO-API-VERSION`: `event: ready` with `{"tables":[..],"heartbeatSeconds":N}`
//! at once, `event: change` with `{"tables":[..]}` after each committed write to a table
//! it may see (an owned table's row: its owner only; never the rows, which the client
//! then pulls), and a `: heartbeat` comment after [`ServerBuilder::feed_heartbeat`]
//! without an event. Changes waiting for a slow socket merge into one event; a socket
//! that takes nothing for [`ServerBuilder::feed_stall_timeout`] is dropped, and writers
//! never wait for a subscriber. Beyond [`ServerBuilder::feed_max_subscribers`]: 503 with
//! `Retry-After`. An unknown table is 404, a bad token 401. `/tables` answers carry
//! `X-Sync-Feed: /feed`; a server without the feed (turned off, or of the Azure family)
//! answers `/feed` with 404, and clients poll. Instances on one PostgreSQL database nudge
//! each other's subscribers through `LISTEN`/`NOTIFY` (see [`Storage::relay`]); shutdown
//! ends the streams at once.
//!
//! # Operators
//!
//! Every request runs in a `tracing` span `request` with its id, method and path, and
//! its answer carries the id in `x-request-id` (the request's own, when it sent a sane
//! one). `GET /metrics` serves `sync_server_requests_total{route,method,status}`,
//! `sync_server_request_duration_seconds{route}` (histogram),
//! `sync_server_open_connections`, `sync_server_feed_subscribers` and
//! `sync_server_db_pool_connections{state}`.
#![warn(missing_docs)]

pub mod auth;
mod body;
mod connections;
mod database;
mod error;
mod feed;
mod feed_stream;
mod jwks;
mod links;
mod list;
mod metrics;
mod preamble;
mod problem;
mod protocol;
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
    DEFAULT_BODY_READ_TIMEOUT, DEFAULT_FEED_HEARTBEAT, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_BODY, DEFAULT_MAX_TOP, DEFAULT_PAGE_SIZE, Server, ServerBuilder, ServerHandle, ShutdownSignal,
};
pub use stamp::{Clock, ManualClock, SystemClock};
pub use storage::{Heard, HeardFn, PoolUse, PostgresStorage, Relay, SqliteStorage, Storage};
pub use table::{ColumnDef, TableDef};
pub use tables_file::{load_tables_file, parse_tables};
