//! Reading the queue: what an app shows on a "not yet synced" badge.

use crate::error::Result;

use super::Store;
use super::queue::{self, PendingOp};

impl Store {
    /// Every queued operation, across all tables, in push order.
    pub async fn pending_ops(&self) -> Result<Vec<PendingOp>> {
        self.call(|w| queue::list_ops(&w.conn, None)).await
    }

    /// How many operations are queued, across all tables.
    pub async fn pending_count(&self) -> Result<u64> {
        self.call(|w| queue::count_ops(&w.conn, None)).await
    }

    /// How many operations of one table are queued.
    pub async fn pending_count_for(&self, table: &str) -> Result<u64> {
        let table = table.to_owned();
        self.call(move |w| queue::count_ops(&w.conn, Some(&table))).await
    }

    /// The operation the next push sends first.
    pub async fn next_op(&self) -> Result<Option<PendingOp>> {
        self.call(|w| queue::next_op(&w.conn)).await
    }
}
