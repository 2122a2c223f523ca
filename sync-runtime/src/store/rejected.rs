//! Rejected rows: server rows a pull could not read as the table's struct (a `null` in
//! a field that is not an `Option`, a number too large for an `i32`, text that is not a
//! UUID...), set aside so that one bad row does not stop every later pull.
//!
//! A pull records each such row here, with the field and the reason, applies the rest
//! of its page and moves its cursor past it. The local row of the item, if any, stays
//! as it was. A later pull that receives a version of the row that reads (fixed on the
//! server) applies it and removes its record. The app reads the records to show them,
//! and clears them when it has dealt with them.

use rusqlite::params;

use crate::error::Result;
use sync_core::SyncEntity;
use sync_core::system::REJECTED_TABLE;

use super::queue::{now_rfc3339, sql_once};
use super::tx::Tx;
use super::{Store, StoreCall, Table};

/// A server row a pull set aside because it does not fit the table's struct. See
/// [`Table::rejected_rows`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RejectedRow {
    /// The table.
    pub table: String,
    /// The item's id.
    pub item_id: String,
    /// The Rust field whose value does not fit, when the problem is one field's.
    pub field: Option<String>,
    /// What is wrong (`expected a string, found null`).
    pub reason: String,
    /// The row as the server sent it.
    pub server_item: serde_json::Value,
    /// The row's `updatedAt`, as the server sent it: a later version of the row has a
    /// later one.
    pub updated_at: String,
    /// When the pull set it aside (RFC 3339, UTC).
    pub received_at: String,
}

/// What a pull records about a row it sets aside.
#[derive(Clone, Debug)]
pub(crate) struct Rejection {
    /// The field, when the problem is one field's.
    pub(crate) field: Option<&'static str>,
    /// What is wrong.
    pub(crate) reason: String,
    /// The row as received.
    pub(crate) item: serde_json::Value,
}

const COLUMNS: &str = "table_name, item_id, field, reason, server_item, updated_at, received_at";

fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<RejectedRow> {
    let text: String = r.get(4)?;
    let server_item = serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e)))?;
    Ok(RejectedRow {
        table: r.get(0)?,
        item_id: r.get(1)?,
        field: r.get(2)?,
        reason: r.get(3)?,
        server_item,
        updated_at: r.get(5)?,
        received_at: r.get(6)?,
    })
}

fn list(conn: &rusqlite::Connection, table: Option<&str>) -> Result<Vec<RejectedRow>> {
    Ok(match table {
        Some(t) => conn
            .prepare_cached(sql_once!("SELECT {COLUMNS} FROM {REJECTED_TABLE} WHERE table_name = ?1 ORDER BY item_id"))?
            .query_map([t], read)?
            .collect::<rusqlite::Result<Vec<_>>>()?,
        None => conn
            .prepare_cached(sql_once!("SELECT {COLUMNS} FROM {REJECTED_TABLE} ORDER BY table_name, item_id"))?
            .query_map([], read)?
            .collect::<rusqlite::Result<Vec<_>>>()?,
    })
}

fn count(conn: &rusqlite::Connection, table: Option<&str>) -> Result<u64> {
    let n: i64 = match table {
        Some(t) => conn
            .prepare_cached(sql_once!("SELECT count(*) FROM {REJECTED_TABLE} WHERE table_name = ?1"))?
            .query_row([t], |r| r.get(0))?,
        None => conn.prepare_cached(sql_once!("SELECT count(*) FROM {REJECTED_TABLE}"))?.query_row([], |r| r.get(0))?,
    };
    Ok(n as u64)
}

impl Store {
    /// Every server row a pull set aside, across all tables (see
    /// [`Table::rejected_rows`]).
    pub fn rejected_rows(&self) -> StoreCall<Vec<RejectedRow>> {
        self.read(|conn| list(conn, None))
    }

    /// How many server rows pulls set aside, across all tables.
    pub fn rejected_count(&self) -> StoreCall<u64> {
        self.read(|conn| count(conn, None))
    }
}

impl<E: SyncEntity> Table<E> {
    /// The server rows pulls of this table set aside because they do not fit `E` (a
    /// `null` in a field that is not an `Option`, a value of the wrong type or range),
    /// by id. A pull records such a row here instead of failing, applies the rest of
    /// its page and moves on; [`PullReport::rejected`](crate::PullReport::rejected)
    /// counts them. The item's local row, if it has one, stays as it was.
    ///
    /// A later pull that receives a version of the row that fits (fixed on the server)
    /// applies it and removes the record. Otherwise a record stays until the app
    /// clears it ([`Table::clear_rejected_row`]), or [`Table::force_purge`] starts the
    /// table over.
    ///
    /// ```
    /// # use sync_runtime::{Store, SyncEntity};
    /// # #[derive(SyncEntity, Clone, Debug)]
    /// # struct Product { id: String, name: String }
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = Store::open_in_memory().await?;
    /// let products = store.table::<Product>().await?;
    /// for row in products.rejected_rows().await? {
    ///     eprintln!("{} `{}`: {} ({:?})", row.table, row.item_id, row.reason, row.field);
    ///     products.clear_rejected_row(&row.item_id).await?;
    /// }
    /// assert_eq!(products.rejected_count().await?, 0);
    /// # Ok::<_, sync_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn rejected_rows(&self) -> StoreCall<Vec<RejectedRow>> {
        let name = self.name();
        self.store().read(move |conn| list(conn, Some(name)))
    }

    /// How many server rows pulls of this table set aside.
    pub fn rejected_count(&self) -> StoreCall<u64> {
        let name = self.name();
        self.store().read(move |conn| count(conn, Some(name)))
    }

    /// Forgets the rejected row of this id; whether there was one. (Its cursor has moved
    /// on: the row comes again only when it changes on the server, or after a purge.)
    pub fn clear_rejected_row(&self, id: &str) -> StoreCall<bool> {
        let (name, id) = (self.name(), id.to_owned());
        self.store().transaction(move |tx| tx.clear_rejected(name, &id))
    }

    /// Forgets every rejected row of this table; how many there were.
    pub fn clear_rejected_rows(&self) -> StoreCall<u64> {
        let name = self.name();
        self.store().transaction(move |tx| tx.clear_rejected_of_table(name))
    }
}

impl Tx<'_> {
    /// Records (or replaces) the rejection of the server row `id` of `table`.
    pub(crate) fn reject_row(&self, table: &str, id: &str, updated_at: &str, rejection: &Rejection) -> Result<()> {
        self.tx
            .prepare_cached(sql_once!(
                "INSERT OR REPLACE INTO {REJECTED_TABLE} ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ))?
            .execute(params![
                table,
                id,
                rejection.field,
                rejection.reason,
                rejection.item.to_string(),
                updated_at,
                now_rfc3339()
            ])?;
        Ok(())
    }

    /// Forgets the rejection of row `id` of `table`; whether there was one.
    pub(crate) fn clear_rejected(&self, table: &str, id: &str) -> Result<bool> {
        let mut stmt =
            self.tx.prepare_cached(sql_once!("DELETE FROM {REJECTED_TABLE} WHERE table_name = ?1 AND item_id = ?2"))?;
        Ok(stmt.execute(params![table, id])? > 0)
    }

    /// Forgets every rejection of `table`; how many there were.
    pub(crate) fn clear_rejected_of_table(&self, table: &str) -> Result<u64> {
        let mut stmt = self.tx.prepare_cached(sql_once!("DELETE FROM {REJECTED_TABLE} WHERE table_name = ?1"))?;
        Ok(stmt.execute([table])? as u64)
    }

    /// Whether any row of `table` is set aside.
    pub(crate) fn table_has_rejected(&self, table: &str) -> Result<bool> {
        let mut stmt = self
            .tx
            .prepare_cached(sql_once!("SELECT EXISTS (SELECT 1 FROM {REJECTED_TABLE} WHERE table_name = ?1)"))?;
        Ok(stmt.query_row([table], |r| r.get(0))?)
    }
}
