//! Pull cursors: where the incremental pull of each table and query id stopped, as
//! the `(updatedAt, id)` of the last row applied.

use rusqlite::{OptionalExtension, params};

use crate::error::Result;
use sync_core::system::CURSORS_TABLE;

use super::queue::sql_once;
use super::tx::Tx;
use super::{Store, StoreCall};

/// The position of a pull: the `(updatedAt, id)` of the last row applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PullCursor {
    /// The row's `updatedAt`, as the server sent it.
    pub(crate) updated_at: String,
    /// The row's id.
    pub(crate) id: String,
}

impl Store {
    /// Where the last pull of `table` with `query_id` stopped, if it saved a cursor.
    pub(crate) fn pull_cursor(&self, table: &'static str, query_id: &str) -> StoreCall<Option<PullCursor>> {
        let query_id = query_id.to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(sql_once!(
                "SELECT updated_at, last_id FROM {CURSORS_TABLE} WHERE table_name = ?1 AND query_id = ?2"
            ))?;
            let cursor =
                stmt.query_row(params![table, query_id], |r| Ok(PullCursor { updated_at: r.get(0)?, id: r.get(1)? }));
            Ok(cursor.optional()?)
        })
    }
}

impl Tx<'_> {
    /// Saves where the pull of `table` with `query_id` stopped.
    pub(crate) fn save_pull_cursor(&self, table: &str, query_id: &str, cursor: &PullCursor) -> Result<()> {
        self.tx
            .prepare_cached(sql_once!(
                "INSERT OR REPLACE INTO {CURSORS_TABLE} (table_name, query_id, updated_at, last_id)
                 VALUES (?1, ?2, ?3, ?4)"
            ))?
            .execute(params![table, query_id, cursor.updated_at, cursor.id])?;
        Ok(())
    }

    /// Forgets every pull cursor of `table`: its next pulls start over.
    pub(super) fn delete_pull_cursors(&self, table: &str) -> Result<()> {
        self.tx.execute(sql_once!("DELETE FROM {CURSORS_TABLE} WHERE table_name = ?1"), [table])?;
        Ok(())
    }
}
