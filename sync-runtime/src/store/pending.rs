//! Reading the queue: what an app shows on a "not yet synced" badge.

use crate::error::Result;

use super::Store;
use super::queue::{self, PendingOp};

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
