//! Reading the queue: what an app shows on a "not yet synced" badge.

use super::queue::{self, PendingOp};
use super::{Store, StoreCall};

impl Store {
    /// Every queued operation, across all tables, in push order.
    pub fn pending_ops(&self) -> StoreCall<Vec<PendingOp>> {
        self.read(|conn| queue::list_ops(conn, None))
    }

    /// How many operations are queued, across all tables.
    pub fn pending_count(&self) -> StoreCall<u64> {
        self.read(|conn| queue::count_ops(conn, None))
    }

    /// How many operations of one table are queued.
    pub fn pending_count_for(&self, table: &str) -> StoreCall<u64> {
        let table = table.to_owned();
        self.read(move |conn| queue::count_ops(conn, Some(&table)))
    }

    /// The operation the next push sends first.
    pub fn next_op(&self) -> StoreCall<Option<PendingOp>> {
        self.read(queue::next_op)
    }
}
