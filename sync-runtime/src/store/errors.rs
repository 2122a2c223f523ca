//! The error table: operations the server refused, as the app sees them, and the calls
//! that settle them. Every call checks that the operation still exists and has not
//! changed since the error was recorded (its op version); otherwise it is refused with
//! [`Error::StaleOperation`] and nothing changes.

use rusqlite::params;

use crate::error::{Error, Result};
use sync_core::SyncEntity;
use sync_core::Value;
use sync_core::system::ERRORS_TABLE;

use super::ChangeOrigin;
use super::queue::{OpKind, OpRow};
use super::tx::Tx;
use super::{Answered, Store, StoreCall, Table};

/// An error row, untyped: what [`Store::errors`] lists across all tables.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ErrorRecord {
    /// The refused operation's id (its queue sequence number).
    pub op_id: i64,
    /// The operation's version when the error was recorded.
    pub op_version: i64,
    /// The table.
    pub table: String,
    /// The item's id.
    pub item_id: String,
    /// The operation's kind when it was refused.
    pub kind: OpKind,
    /// The HTTP status, `None` for failures without one.
    pub status: Option<u16>,
    /// What the server (or the client) said.
    pub message: String,
    /// The item as the client sent it.
    pub client_item: Option<serde_json::Value>,
    /// The server's copy, from a 409/412 answer.
    pub server_item: Option<serde_json::Value>,
    /// The raw answer body.
    pub raw_body: Option<String>,
    /// When it was recorded (RFC 3339, UTC).
    pub created_at: String,
}

/// An error row of one table with typed items: see [`Table::errors`].
#[derive(Clone, Debug)]
pub struct SyncError<E> {
    /// The untyped record.
    pub record: ErrorRecord,
    /// The item as the client sent it, when it reads as an `E`.
    pub client_item: Option<E>,
    /// The server's copy, when the server sent one and it reads as an `E`.
    pub server_item: Option<E>,
}

impl<E> SyncError<E> {
    /// The refused operation's id.
    pub fn op_id(&self) -> i64 {
        self.record.op_id
    }

    /// The item's id.
    pub fn item_id(&self) -> &str {
        &self.record.item_id
    }

    /// The HTTP status, if any.
    pub fn status(&self) -> Option<u16> {
        self.record.status
    }

    /// Whether the server reported a conflict (409 or 412).
    pub fn is_conflict(&self) -> bool {
        matches!(self.record.status, Some(409 | 412))
    }
}

const ERROR_COLUMNS: &str =
    "op_seq, op_version, table_name, item_id, kind, status, message, client_item, server_item, raw_body, created_at";

fn read_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<ErrorRecord> {
    let json = |idx: usize, s: Option<String>| -> rusqlite::Result<Option<serde_json::Value>> {
        s.map(|s| {
            serde_json::from_str(&s)
                .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e)))
        })
        .transpose()
    };
    let kind: String = r.get(4)?;
    Ok(ErrorRecord {
        op_id: r.get(0)?,
        op_version: r.get(1)?,
        table: r.get(2)?,
        item_id: r.get(3)?,
        kind: kind
            .parse()
            .map_err(|e: String| rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, e.into()))?,
        status: r.get(5)?,
        message: r.get(6)?,
        client_item: json(7, r.get(7)?)?,
        server_item: json(8, r.get(8)?)?,
        raw_body: r.get(9)?,
        created_at: r.get(10)?,
    })
}

pub(crate) fn list_errors(conn: &rusqlite::Connection, table: Option<&str>) -> Result<Vec<ErrorRecord>> {
    let rows = match table {
        Some(t) => conn
            .prepare_cached(&format!(
                "SELECT {ERROR_COLUMNS} FROM {ERRORS_TABLE} WHERE table_name = ?1 ORDER BY op_seq"
            ))?
            .query_map([t], read_record)?
            .collect::<rusqlite::Result<Vec<_>>>()?,
        None => conn
            .prepare_cached(&format!("SELECT {ERROR_COLUMNS} FROM {ERRORS_TABLE} ORDER BY op_seq"))?
            .query_map([], read_record)?
            .collect::<rusqlite::Result<Vec<_>>>()?,
    };
    Ok(rows)
}

pub(crate) fn count_errors(conn: &rusqlite::Connection, table: Option<&str>) -> Result<u64> {
    let n: i64 = match table {
        Some(t) => conn
            .prepare_cached(&format!("SELECT count(*) FROM {ERRORS_TABLE} WHERE table_name = ?1"))?
            .query_row(params![t], |r| r.get(0))?,
        None => conn.prepare_cached(&format!("SELECT count(*) FROM {ERRORS_TABLE}"))?.query_row([], |r| r.get(0))?,
    };
    Ok(n as u64)
}

impl Store {
    /// Every recorded error, across all tables, in push order.
    pub fn errors(&self) -> StoreCall<Vec<ErrorRecord>> {
        self.read(|conn| list_errors(conn, None))
    }

    /// How many errors are recorded, across all tables.
    pub fn error_count(&self) -> StoreCall<u64> {
        self.read(|conn| count_errors(conn, None))
    }
}

impl<E: SyncEntity> Table<E> {
    /// The recorded errors of this table, with typed client and server items: the
    /// operations a server refused (a conflict no handler settled, a 400, a 404 on an
    /// update...), oldest first. Each waits, and the operations after it on the same
    /// item wait behind it, until the app settles it with one of the `resolve_*` calls
    /// (each refused with [`Error::StaleOperation`] if the operation changed since).
    ///
    /// ```no_run
    /// # use sync_runtime::{Store, SyncClient, SyncEntity};
    /// # #[derive(SyncEntity, Clone, Debug)]
    /// # struct TodoItem { id: String, text: String, complete: bool }
    /// # async fn demo(store: Store, client: SyncClient) -> sync_runtime::Result<()> {
    /// let todos = store.table::<TodoItem>().await?;
    /// client.push().await?;
    /// for error in todos.errors().await? {
    ///     match (&error.client_item, &error.server_item) {
    ///         // A conflict: keep my text over the server's version (sent by the next push).
    ///         (Some(mine), Some(_)) if error.is_conflict() => todos.resolve_retry_with(&error, mine.clone()).await?,
    ///         // Refused otherwise: give up the local change, take the server's copy if any.
    ///         (_, Some(_)) => todos.resolve_take_server(&error).await?,
    ///         _ => todos.resolve_discard(&error).await?,
    ///     }
    /// }
    /// client.push().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn errors(&self) -> StoreCall<Vec<SyncError<E>>> {
        let meta = std::sync::Arc::clone(self.meta());
        self.store().read(move |conn| {
            let records = list_errors(conn, Some(meta.name))?;
            Ok(records
                .into_iter()
                .map(|record| SyncError {
                    client_item: record.client_item.as_ref().and_then(|j| meta.decode_json(j).ok()),
                    server_item: record.server_item.as_ref().and_then(|j| meta.decode_json(j).ok()),
                    record,
                })
                .collect())
        })
    }

    /// How many errors this table has.
    pub fn error_count(&self) -> StoreCall<u64> {
        let name = self.name();
        self.store().read(move |conn| count_errors(conn, Some(name)))
    }

    /// Cancels the operation and takes `item` as the local row (no operation queued).
    /// The row keeps the server's system columns (its version) when the server sent its
    /// copy, so the next local edit updates that version.
    pub fn resolve_take(&self, error: &SyncError<E>, item: E) -> StoreCall<()> {
        let record = error.record.clone();
        self.store().transaction_as(ChangeOrigin::Resolution, move |tx| {
            let meta = tx.meta::<E>()?;
            let op = check_op(tx, &record)?;
            let mut row = meta.row_from_fields(item.to_values());
            set_id(&mut row, &record.item_id);
            let base = match &record.server_item {
                Some(server) => Some(meta.row_from_json(server)?),
                None => tx.read_row(&meta, &record.item_id)?,
            };
            if let Some(base) = base {
                meta.copy_server_columns(&mut row, &base);
            }
            tx.remove_op(op.seq)?;
            tx.upsert_row_unqueued(&meta, &row)
        })
    }

    /// Cancels the operation and takes the server's copy from the error as the local
    /// row (a server tombstone deletes the local row). Refused when the server sent no
    /// copy.
    pub fn resolve_take_server(&self, error: &SyncError<E>) -> StoreCall<()> {
        let record = error.record.clone();
        self.store().transaction_as(ChangeOrigin::Resolution, move |tx| {
            let meta = tx.meta::<E>()?;
            let op = check_op(tx, &record)?;
            let Some(server) = &record.server_item else {
                return Err(Error::StaleOperation {
                    op_id: record.op_id,
                    reason: "the error has no server item to take".into(),
                });
            };
            let server = meta.row_from_json(server)?;
            tx.remove_op(op.seq)?;
            tx.apply_server_copy(&meta, &record.item_id, server, Answered::Op(op.seq))?;
            Ok(())
        })
    }

    /// Cancels the operation and removes the local row, without queueing a delete.
    pub fn resolve_discard(&self, error: &SyncError<E>) -> StoreCall<()> {
        let record = error.record.clone();
        self.store().transaction_as(ChangeOrigin::Resolution, move |tx| {
            let meta = tx.meta::<E>()?;
            let op = check_op(tx, &record)?;
            tx.remove_op(op.seq)?;
            tx.delete_row_unqueued(&meta, &record.item_id).map(drop)
        })
    }

    /// Keeps the operation with an edited item, to be pushed again. When the server
    /// sent its copy, its version is copied in so the next push overwrites it
    /// ("client wins"); a refused insert then becomes an update.
    pub fn resolve_retry_with(&self, error: &SyncError<E>, item: E) -> StoreCall<()> {
        let record = error.record.clone();
        self.store().transaction_as(ChangeOrigin::Resolution, move |tx| {
            let meta = tx.meta::<E>()?;
            let op = check_op(tx, &record)?;
            let mut row = meta.row_from_fields(item.to_values());
            set_id(&mut row, &record.item_id);
            if let Some(local) = tx.read_row(&meta, &record.item_id)? {
                meta.copy_server_columns(&mut row, &local);
            } else if let Some(snapshot) = op.item.as_deref() {
                meta.copy_server_columns(&mut row, &meta.row_from_queued_item(op.seq, snapshot)?);
            }
            if let Some(server) = &record.server_item {
                let server_row = meta.row_from_json(server)?;
                if let Some(v) = meta.column_index(sync_core::system::VERSION) {
                    row[v] = server_row[v].clone();
                }
            }
            if op.kind == OpKind::Delete {
                let snapshot = meta.row_to_json(&row).to_string();
                tx.rewrite_op(op.seq, op.kind, Some(&snapshot))
            } else {
                // An insert the server already has would only meet the same 409
                // again: over the server's version, it is an update.
                let kind = match op.kind {
                    OpKind::Insert if record.server_item.is_some() => OpKind::Update,
                    other => other,
                };
                tx.upsert_row_unqueued(&meta, &row)?;
                tx.rewrite_op(op.seq, kind, None)
            }
        })
    }

    /// Changes the operation's kind (e.g. a refused insert into an update). Turning it
    /// into a delete removes the local row (kept in the operation); turning a delete
    /// into an insert or update restores the row from the operation.
    pub fn resolve_change_kind(&self, error: &SyncError<E>, kind: OpKind) -> StoreCall<()> {
        let record = error.record.clone();
        self.store().transaction_as(ChangeOrigin::Resolution, move |tx| {
            let meta = tx.meta::<E>()?;
            let op = check_op(tx, &record)?;
            let local = tx.read_row(&meta, &record.item_id)?;
            match (op.kind, kind) {
                (_, OpKind::Delete) => {
                    let snapshot = match &local {
                        Some(row) => Some(meta.row_to_json(row).to_string()),
                        None => op.item.clone(),
                    };
                    tx.delete_row_unqueued(&meta, &record.item_id)?;
                    tx.rewrite_op(op.seq, kind, snapshot.as_deref())
                }
                (OpKind::Delete, _) => {
                    if local.is_none() {
                        let Some(snapshot) = op.item.as_deref() else {
                            return Err(Error::StaleOperation {
                                op_id: op.seq,
                                reason: "the delete keeps no item to restore".into(),
                            });
                        };
                        let row = meta.row_from_queued_item(op.seq, snapshot)?;
                        tx.upsert_row_unqueued(&meta, &row)?;
                    }
                    tx.rewrite_op(op.seq, kind, None)
                }
                _ => tx.rewrite_op(op.seq, kind, None),
            }
        })
    }
}

/// The operation behind an error, refused when it is gone or changed since.
fn check_op(tx: &Tx<'_>, record: &ErrorRecord) -> Result<OpRow> {
    match tx.op(record.op_id)? {
        None => Err(Error::StaleOperation { op_id: record.op_id, reason: "the operation no longer exists".into() }),
        Some(op) if op.version != record.op_version => Err(Error::StaleOperation {
            op_id: record.op_id,
            reason: format!(
                "the operation changed since the error was recorded (version {} now, {} then)",
                op.version, record.op_version
            ),
        }),
        Some(op) => Ok(op),
    }
}

fn set_id(row: &mut [Value], id: &str) {
    row[0] = Value::String(id.to_owned());
}
