//! The benchmark harness of the sync workspace (DESIGN.md section 10, issue 7).
//!
//! Every scenario runs alternately through the public API of `sync-runtime` ("ours",
//! called as an app calls it: async, from a tokio multi-thread runtime) and through a
//! raw baseline doing the same physical work (raw rusqlite on a file with the store's
//! pragmas, raw reqwest + serde_json against the same `sync-server`), in the same
//! process, for several rounds after a warm-up round. The harness reports medians and
//! their ratio as a throughput ratio (1.00 = as fast as raw); it never asserts a time.
//!
//! Run it with `cargo bench -p sync-bench --bench sync` (`-- --quick` for small sizes,
//! `-- --json` for JSON, `-- <name>` to run the scenarios whose name contains `<name>`).
//!
//! - [`model`]: the benchmarked entity and the raw SQLite helpers.
//! - [`measure`]: rounds, medians, figures, peak RSS.
//! - [`local`]: `insert_one`, `insert_batch`, `query`, `queue_read`.
//! - [`remote`]: `pull` and `push` against a `sync-server` on 127.0.0.1.
//! - [`live`], [`engine`]: watched queries and the change stream; the sync engine end
//!   to end (a commit on one device to a watch on another) and idle.
//! - [`feed`]: `feed_subscribers`, HTTP writers with change feed subscribers held open
//!   vs without, and the memory of an idle subscriber.
//! - [`writers`]: concurrent HTTP writers against a `sync-server` on PostgreSQL (and on
//!   SQLite), vs the same statements sent raw.

pub mod engine;
pub mod feed;
pub mod live;
pub mod local;
pub mod measure;
pub mod model;
pub mod remote;
pub mod writers;

/// Sizes of one run: the full run, or `--quick`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    /// Measured rounds of the long scenarios (after one warm-up round).
    pub rounds: usize,
    /// Measured rounds of the short scenarios (`query`, `queue_read`): more rounds of
    /// a short scenario make its median steadier on a busy machine.
    pub short_rounds: usize,
    /// `insert_one`: single-item inserts per round.
    pub insert_one: usize,
    /// `insert_batch`: items per batch.
    pub insert_batch: usize,
    /// `query`: rows in the table.
    pub query_rows: usize,
    /// `query`: queries per round.
    pub query_reps: usize,
    /// `pull`: rows on the server.
    pub pull_rows: usize,
    /// A second, larger pull that shows the memory is flat (full run only).
    pub pull_large_rows: Option<usize>,
    /// `push`: queued inserts.
    pub push_ops: usize,
    /// `queue_read`: rows in the table and pending operations among them.
    pub queue_rows: usize,
    /// `queue_read`: pending operations.
    pub queue_ops: usize,
    /// `queue_read`: calls of each function per round.
    pub queue_calls: usize,
    /// `idle`: seconds of measured idleness.
    pub idle_secs: u64,
    /// `live_latency`, `live_latency_process`: writes, one at a time.
    pub live_writes: usize,
    /// `live_unrelated_write`, `live_requery`: writes per round.
    pub live_round_writes: usize,
    /// `live_requery`: rows in the watched table.
    pub live_rows: usize,
    /// `writers_*`: acknowledged writes per round at 50 writers (fewer writers do
    /// proportionally fewer, at least 300).
    pub writers_ops: usize,
    /// `feed_subscribers`: change feed subscribers held open.
    pub feed_subscribers: usize,
    /// `feed_subscribers`: writes per round.
    pub feed_writes: usize,
}

impl Sizes {
    /// The sizes of issue 7.
    pub const FULL: Sizes = Sizes {
        rounds: 5,
        short_rounds: 11,
        insert_one: 20_000,
        insert_batch: 200_000,
        query_rows: 100_000,
        query_reps: 1_000,
        pull_rows: 100_000,
        pull_large_rows: Some(400_000),
        push_ops: 10_000,
        queue_rows: 100_000,
        queue_ops: 10_000,
        queue_calls: 2_000,
        idle_secs: 10,
        live_writes: 200,
        live_round_writes: 500,
        live_rows: 100_000,
        writers_ops: 6_000,
        feed_subscribers: 1_000,
        feed_writes: 2_000,
    };

    /// Small sizes: the whole run takes well under a minute.
    pub const QUICK: Sizes = Sizes {
        rounds: 3,
        short_rounds: 7,
        insert_one: 4_000,
        insert_batch: 50_000,
        query_rows: 100_000,
        query_reps: 300,
        pull_rows: 40_000,
        pull_large_rows: None,
        push_ops: 2_000,
        queue_rows: 100_000,
        queue_ops: 10_000,
        queue_calls: 1_000,
        idle_secs: 2,
        live_writes: 50,
        live_round_writes: 200,
        live_rows: 20_000,
        writers_ops: 1_500,
        feed_subscribers: 100,
        feed_writes: 300,
    };
}
