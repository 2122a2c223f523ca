//! Reading the queue: what an app shows on a "not yet synced" badge.

use super::queue::{self, PendingOp};
use super::{Store, StoreCall};

impl Store {
    /// Every queued operation, across all tables, in push order.
    ///
    /// ```
    /// # use sync_runtime::{OpKind, OpState, Store, SyncEntity};
    /// # #[derive(SyncEntity, Clone, Debug)]
    /// # struct Note { id: String, body: String }
    /// # #[derive(SyncEntity, Clone, Debug)]
    /// # struct Tag { id: String, name: String }
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = Store::open_in_memory().await?;
    /// store.table::<Note>().await?.insert(Note { id: "n".into(), body: "x".into() }).await?;
    /// store.table::<Tag>().await?.insert(Tag { id: "t".into(), name: "y".into() }).await?;
    /// let ops = store.pending_ops().await?;
    /// let queued: Vec<_> = ops.iter().map(|op| (op.table.as_str(), op.item_id.as_str(), op.kind, op.state)).collect();
    /// assert_eq!(queued, [("Note", "n", OpKind::Insert, OpState::Pending), ("Tag", "t", OpKind::Insert, OpState::Pending)]);
    /// assert_eq!(store.pending_count_for("Tag").await?, 1);
    /// # Ok::<_, sync_runtime::Error>(())
    /// # }).unwrap();
    /// ```
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
