//! Purge: forget local rows so that the next pull fetches them again. A local
//! operation: nothing is sent to a server.

use crate::error::{Error, Result};
use sync_core::SyncEntity;
use sync_core::query::Query;
use sync_core::system::{ERRORS_TABLE, ID, OPERATIONS_TABLE};

use super::ChangeOrigin;
use super::queue::sql_once;
use super::tx::Tx;
use super::{StoreCall, Table};

impl<E: SyncEntity> Table<E> {
    /// Deletes the local rows a query selects, and the table's pull cursors (so the
    /// next pull fetches them again). Nothing is queued. Refused with
    /// [`Error::PendingOperations`] while the table has queued operations. Returns how
    /// many rows were deleted.
    ///
    /// ```
    /// # use sync_runtime::{Error, Store, SyncEntity};
    /// # #[derive(SyncEntity, Clone, Debug)]
    /// # struct Note { id: String, archived: bool }
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = Store::open_in_memory().await?;
    /// let notes = store.table::<Note>().await?;
    /// notes.insert(Note { id: "a".into(), archived: true }).await?;
    /// let archived = notes.query().filter(Note::FIELDS.archived.eq(true)).into_query();
    /// // Refused while changes wait to be pushed: they would be lost.
    /// assert!(matches!(notes.purge(&archived).await, Err(Error::PendingOperations { pending: 1, .. })));
    /// // `force_purge` forgets everything of the table, queued changes included.
    /// assert_eq!(notes.force_purge().await?, 1);
    /// assert_eq!(store.pending_count().await?, 0);
    /// # Ok::<_, sync_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn purge(&self, query: &Query<E>) -> StoreCall<u64> {
        let query = query.clone();
        self.store().transaction_as(ChangeOrigin::Purge, move |tx| purge::<E>(tx, &query, false))
    }

    /// Deletes all of the table's rows, queued operations, errors, rejected rows and
    /// pull cursors: the next pull starts over. Returns how many rows were deleted.
    pub fn force_purge(&self) -> StoreCall<u64> {
        self.store().transaction_as(ChangeOrigin::Purge, |tx| purge::<E>(tx, &Query::new(), true))
    }
}

fn purge<E: SyncEntity>(tx: &mut Tx<'_>, query: &Query<E>, force: bool) -> Result<u64> {
    let meta = tx.meta::<E>()?;
    let conn = &tx.tx;
    if force {
        conn.execute(sql_once!("DELETE FROM {OPERATIONS_TABLE} WHERE table_name = ?1"), [meta.name])?;
        conn.execute(sql_once!("DELETE FROM {ERRORS_TABLE} WHERE table_name = ?1"), [meta.name])?;
        tx.clear_rejected_of_table(meta.name)?;
    } else {
        let pending: i64 = conn.query_row(
            sql_once!("SELECT count(*) FROM {OPERATIONS_TABLE} WHERE table_name = ?1"),
            [meta.name],
            |r| r.get(0),
        )?;
        if pending > 0 {
            return Err(Error::PendingOperations { table: meta.name.to_owned(), pending: pending as u64 });
        }
    }
    let ids = sync_core::sql::select(&sync_core::sql::Sqlite, meta.name, &[ID], query.spec(), &*meta)?;
    let table = sync_core::sql::quote_ident(meta.name);
    let mut removed = 0u64;
    {
        let mut stmt = conn.prepare(&format!("DELETE FROM {table} WHERE \"id\" IN ({}) RETURNING \"id\"", ids.sql))?;
        let mut rows = stmt.query(rusqlite::params_from_iter(ids.params.iter()))?;
        let mut changes = tx.changes();
        while let Some(row) = rows.next()? {
            removed += 1;
            match row.get_ref(0)?.as_str() {
                Ok(id) => changes.row(meta.name, id),
                Err(_) => changes.many_rows(meta.name),
            }
        }
    }
    tx.delete_pull_cursors(meta.name)?;
    let mut changes = tx.changes();
    if force {
        changes.queue();
        changes.errors();
    }
    Ok(removed)
}
