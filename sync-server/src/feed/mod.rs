//! The change feed: `GET /feed`, a stream of server-sent events telling a subscriber
//! that tables it may read changed (never the rows: it then pulls with its cursor, as
//! without the feed). DESIGN.md sections 9 and 12.
//!
//! # The wire
//!
//! `GET /feed[?tables=A,B]` (beside `/tables/{table}`; every table when `tables` is
//! absent), with the table routes' authentication; `ZUMO-API-VERSION` is optional. The
//! answer is `200`, `Content-Type: text/event-stream`, `Cache-Control: no-cache`:
//!
//! ```text
//! event: ready
//! data: {"tables":["A","B"],"heartbeatSeconds":15}
//!
//! event: change
//! data: {"tables":["A"]}
//!
//! : heartbeat
//!
//! ```
//!
//! `ready` comes at once; `change` after each committed write to a table of the
//! subscription that the subscriber may see; a `: heartbeat` comment after
//! `heartbeatSeconds` without an event. While an event waits for a slow socket, later
//! changes merge into it (one pending set of table names per subscriber); so do the
//! changes within a stream's gap after an event (25 ms, longer with many subscribers:
//! `feed_stream.rs`), so that a burst of writes does not cost one event per write per
//! subscriber. Refusals: an
//! unknown table is 404 naming it, a bad token 401, the subscriber cap (or a server
//! shutting down) 503 with `Retry-After`. A server with the feed turned off answers 404,
//! as the Azure family's servers do; `/tables` answers carry `X-Sync-Feed: /feed` when
//! the feed is on, so a client learns of it without probing.
//!
//! # Who is nudged
//!
//! A write to an owned table nudges only the subscribers whose user owns the row; a
//! write to a shared table nudges every subscriber of the table. Only writes that
//! changed a row nudge (refusals, 404, 409, 412 do not), after their commit.
//!
//! # Across instances
//!
//! Within a process the [`Hub`] fans writes out to subscribers. Instances on one
//! PostgreSQL database relay writes to each other through the storage's
//! [`crate::storage::Relay`] (LISTEN/NOTIFY, see `storage/postgres/relay.rs`).

pub(crate) mod hub;

use std::time::Duration;

pub(crate) use hub::Hub;

/// The header on `/tables` answers that names the feed's path.
pub(crate) const FEED_HEADER: &str = "x-sync-feed";
/// The feed's path, relative to the server's root.
pub(crate) const FEED_PATH: &str = "/feed";

/// How the feed behaves (see the builder's `feed_*` options).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FeedSettings {
    /// A heartbeat comment after this long without an event.
    pub(crate) heartbeat: Duration,
    /// A subscriber whose socket takes no bytes for this long is dropped.
    pub(crate) stall_timeout: Duration,
    /// The most subscribers at once (503 beyond).
    pub(crate) max_subscribers: usize,
}
