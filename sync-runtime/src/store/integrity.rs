//! A consistency check of the store that apps and tests can run.

use rusqlite::OptionalExtension;

use crate::error::Result;
use sync_core::sql::quote_ident;
use sync_core::system::{ERRORS_TABLE, OPERATIONS_TABLE};

use super::{Store, StoreCall};

/// What [`Store::check_integrity`] found. Empty `problems` means the store is sound.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IntegrityReport {
    /// One line per problem.
    pub problems: Vec<String>,
    /// How many operations were checked.
    pub operations: u64,
    /// How many error rows were checked.
    pub errors: u64,
}

impl IntegrityReport {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Store {
    /// Checks that SQLite's own structures are sound, that every queued insert or
    /// update refers to an existing row (unless a later delete of the item is queued
    /// behind it), that every queued delete keeps its item, and that every error row
    /// belongs to an existing operation of the same version.
    ///
    /// ```
    /// # use sync_runtime::Store;
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = Store::open_in_memory().await?;
    /// let report = store.check_integrity().await?;
    /// assert!(report.is_ok(), "{:?}", report.problems);
    /// # Ok::<_, sync_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn check_integrity(&self) -> StoreCall<IntegrityReport> {
        self.read(check)
    }
}

fn check(conn: &rusqlite::Connection) -> Result<IntegrityReport> {
    let mut report = IntegrityReport::default();
    let verdict: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if verdict != "ok" {
        report.problems.push(format!("SQLite integrity_check: {verdict}"));
    }

    let mut stmt = conn.prepare(&format!(
        "SELECT seq, kind, table_name, item_id, item IS NOT NULL,
                EXISTS (SELECT 1 FROM {OPERATIONS_TABLE} later
                        WHERE later.table_name = o.table_name AND later.item_id = o.item_id
                          AND later.seq > o.seq AND later.kind = 'delete')
         FROM {OPERATIONS_TABLE} o ORDER BY seq"
    ))?;
    let ops = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, bool>(4)?,
                r.get::<_, bool>(5)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for (seq, kind, table, id, has_item, deleted_later) in ops {
        report.operations += 1;
        if kind == "delete" {
            if !has_item {
                report.problems.push(format!("operation {seq}: delete of {table}/{id} keeps no item"));
            }
            continue;
        }
        if deleted_later {
            continue;
        }
        let exists = conn
            .query_row(&format!("SELECT 1 FROM {} WHERE \"id\" = ?1", quote_ident(&table)), [&id], |_| Ok(()))
            .optional();
        match exists {
            Ok(Some(())) => {}
            Ok(None) => report.problems.push(format!("operation {seq}: {kind} of {table}/{id} but the row is missing")),
            Err(e) => report.problems.push(format!("operation {seq}: cannot read table {table}: {e}")),
        }
    }

    let mut stmt = conn.prepare(&format!(
        "SELECT e.op_seq, e.op_version, o.op_version FROM {ERRORS_TABLE} e
         LEFT JOIN {OPERATIONS_TABLE} o ON o.seq = e.op_seq ORDER BY e.op_seq"
    ))?;
    let errors = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, Option<i64>>(2)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for (seq, version, op_version) in errors {
        report.errors += 1;
        match op_version {
            None => report.problems.push(format!("error of operation {seq}: the operation does not exist")),
            Some(v) if v != version => report
                .problems
                .push(format!("error of operation {seq}: recorded at version {version}, the operation is at {v}")),
            Some(_) => {}
        }
    }
    Ok(report)
}
