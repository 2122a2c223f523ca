//! The server's copy of an item, written locally. One rule for every caller: a push's
//! answer, a conflict the server won, an error resolved by taking the server's copy, a
//! pulled row.
//!
//! - When a later local operation on the item waits in the queue (written while the
//!   answered one was in flight), only the server-managed columns (version,
//!   timestamps, `deleted`) are taken: that operation then sends the app's data over the
//!   server's version, and nothing the app wrote is lost.
//! - Otherwise a tombstone deletes the local row, and any other copy replaces it,
//!   keeping the row's local-only columns (the server never has them).

use crate::error::Result;
use sync_core::Value;

use super::meta::TableMeta;
use super::queue::sql_once;
use super::tx::Tx;
use sync_core::system::OPERATIONS_TABLE;

/// What the server's copy answers, which decides whether a later local operation can
/// be waiting behind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answered {
    /// The answer to operation `seq` (settled, or being settled, in this transaction):
    /// an operation on the item queued after it keeps the app's data.
    Op(i64),
    /// No operation: the caller made sure none of the item is queued (a pull skips
    /// such items).
    NothingQueued,
}

/// What writing the server's copy did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ServerCopy {
    /// The row was written (inserted or replaced).
    Written,
    /// A tombstone: the local row was deleted.
    Deleted,
    /// A tombstone of an item the store did not have: nothing changed.
    AlreadyGone,
    /// A later operation waits: only the server-managed columns were taken (or
    /// nothing, when the local row is gone).
    ServerColumnsTaken,
}

impl Tx<'_> {
    /// Writes the server's copy of item `id` (a full row, column order) locally, by
    /// the rule of this module. Nothing is queued.
    pub(crate) fn apply_server_copy(
        &mut self,
        meta: &TableMeta,
        id: &str,
        mut server: Vec<Value>,
        answered: Answered,
    ) -> Result<ServerCopy> {
        let later = match answered {
            Answered::Op(seq) => self.has_later_op(meta.name, id, seq)?,
            Answered::NothingQueued => false,
        };
        if later {
            self.take_server_columns(meta, id, &server)?;
            if let Answered::Op(seq) = answered {
                self.take_server_columns_into_later_deletes(meta, id, seq, &server)?;
            }
            return Ok(ServerCopy::ServerColumnsTaken);
        }
        if meta.is_deleted(&server) {
            let had = self.delete_row_unqueued(meta, id)?;
            return Ok(if had { ServerCopy::Deleted } else { ServerCopy::AlreadyGone });
        }
        // Without local-only columns there is nothing of the local row to keep: no
        // need to read it (a pull writes many rows).
        if meta.has_local_only() {
            if let Some(local) = self.read_row(meta, id)? {
                meta.keep_local_only(&mut server, &local);
            }
        }
        server[0] = Value::String(id.to_owned());
        self.upsert_row_unqueued(meta, &server)?;
        Ok(ServerCopy::Written)
    }

    /// A delete queued while operation `seq` was in flight keeps the item as it was then
    /// (a row with no version, if `seq` was its insert): it gets the server's columns of
    /// the answer to `seq`, so that it goes out over that version instead of meeting the
    /// item `seq` created as somebody else's. For the same reason, an insert queued then
    /// (the item deleted and made again locally) becomes an update: the item is on the
    /// server now.
    fn take_server_columns_into_later_deletes(
        &mut self,
        meta: &TableMeta,
        id: &str,
        seq: i64,
        server: &[Value],
    ) -> Result<()> {
        let later: Vec<(i64, String)> = {
            let mut stmt = self.tx.prepare_cached(sql_once!(
                "SELECT seq, item FROM {OPERATIONS_TABLE}
                 WHERE table_name = ?1 AND item_id = ?2 AND seq > ?3 AND kind = 'delete' AND item IS NOT NULL"
            ))?;
            let rows = stmt.query_map(rusqlite::params![meta.name, id, seq], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        if !meta.is_deleted(server) {
            self.tx
                .prepare_cached(sql_once!(
                    "UPDATE {OPERATIONS_TABLE} SET kind = 'update'
                     WHERE table_name = ?1 AND item_id = ?2 AND seq > ?3 AND kind = 'insert'"
                ))?
                .execute(rusqlite::params![meta.name, id, seq])?;
        }
        for (later_seq, snapshot) in later {
            let mut row = meta.row_from_queued_item(later_seq, &snapshot)?;
            meta.copy_server_columns(&mut row, server);
            let snapshot = meta.row_to_json(&row).to_string();
            self.tx
                .prepare_cached(sql_once!("UPDATE {OPERATIONS_TABLE} SET item = ?2 WHERE seq = ?1"))?
                .execute(rusqlite::params![later_seq, snapshot])?;
        }
        Ok(())
    }

    /// Sets the local row's server-managed columns (its version, timestamps and
    /// `deleted`) to the server's, keeping everything else. Nothing when the row is gone.
    pub(crate) fn take_server_columns(&mut self, meta: &TableMeta, id: &str, server: &[Value]) -> Result<()> {
        if let Some(mut local) = self.read_row(meta, id)? {
            meta.copy_server_columns(&mut local, server);
            self.upsert_row_unqueued(meta, &local)?;
        }
        Ok(())
    }
}
