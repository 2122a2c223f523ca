//! The operations queue: every local write leaves one operation here, in the same
//! SQLite transaction as the row change, collapsed by these rules (the existing
//! operation on the same item, against the new local write):
//!
//! | existing \ new | insert | update | delete |
//! |---|---|---|---|
//! | insert (pending) | error: already inserted | stays one insert | both vanish |
//! | insert (attempted/failed) | error | stays one insert | becomes a delete |
//! | update | error: already exists | stays one update | becomes one delete |
//! | delete | becomes one update (re-create) | error: item is deleted | error: already deleted |
//! | none | insert | update | delete |
//!
//! An operation whose request is in flight is never collapsed into: a new write queues
//! a second operation behind it. Collapsing keeps the operation's place in push order,
//! bumps its version and removes its error row.

use std::str::FromStr;

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Error, Result};
pub use crate::op::{OpKind, OpState};
use sync_core::system::{ERRORS_TABLE, OPERATIONS_TABLE};

use super::tx::Tx;

/// One queued operation, as the app sees it ("not yet synced").
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PendingOp {
    /// The operation's id: its global sequence number, push order across all tables
    /// (what [`ErrorRecord::op_id`](crate::ErrorRecord::op_id) refers to).
    pub op_id: i64,
    /// What will be sent.
    pub kind: OpKind,
    /// The table.
    pub table: String,
    /// The item's id.
    pub item_id: String,
    /// Where it stands.
    pub state: OpState,
    /// How many times it was sent.
    pub attempts: u32,
    /// Bumped on every collapse or edit; error-resolution calls check it (see
    /// [`ErrorRecord::op_version`](crate::ErrorRecord::op_version)).
    pub op_version: i64,
    /// When it was first queued (RFC 3339, UTC).
    pub created_at: String,
}

/// What a new local write does to the queue, given the item's latest operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Collapse {
    /// Queue a new operation of this kind.
    Append(OpKind),
    /// Keep the existing operation (new data is re-read at push time).
    Keep,
    /// Turn the existing operation into one of this kind.
    Become(OpKind),
    /// Drop the existing operation: nothing is sent.
    Remove,
}

/// The collapse table. `existing` is the item's latest operation unless it is in
/// flight (then `None`: the new operation queues behind it).
pub(super) fn collapse(existing: Option<(OpKind, OpState)>, new: OpKind) -> Result<Collapse, &'static str> {
    use OpKind::{Delete, Insert, Update};
    let Some((kind, state)) = existing else {
        return Ok(Collapse::Append(new));
    };
    match (kind, new) {
        (Insert, Insert) => Err("the item is already inserted"),
        (Insert, Update) | (Update, Update) => Ok(Collapse::Keep),
        (Insert, Delete) if state == OpState::Pending => Ok(Collapse::Remove),
        (Insert, Delete) | (Update, Delete) => Ok(Collapse::Become(Delete)),
        (Update, Insert) => Err("the item already exists"),
        (Delete, Insert) => Ok(Collapse::Become(Update)),
        (Delete, Update) => Err("the item is deleted"),
        (Delete, Delete) => Err("the item is already deleted"),
    }
}

/// One operation, as the write path, the push and the error resolutions need it.
#[derive(Clone, Debug)]
pub(crate) struct OpRow {
    pub(crate) seq: i64,
    pub(crate) kind: OpKind,
    pub(crate) state: OpState,
    pub(crate) version: i64,
    pub(crate) item: Option<String>,
}

/// An [`OpRow`] from a row whose first columns are `seq, kind, state, op_version, item`.
fn op_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OpRow> {
    Ok(OpRow {
        seq: r.get(0)?,
        kind: parse_col(1, r.get(1)?)?,
        state: parse_col(2, r.get(2)?)?,
        version: r.get(3)?,
        item: r.get(4)?,
    })
}

fn parse_col<T: FromStr<Err = String>>(idx: usize, s: String) -> rusqlite::Result<T> {
    s.parse().map_err(|e: String| rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, e.into()))
}

/// An operation as the push walks the queue: which item, and where it stands.
#[derive(Clone, Debug)]
pub(crate) struct QueuedOp {
    pub(crate) seq: i64,
    pub(crate) state: OpState,
    pub(crate) table: String,
    pub(crate) item_id: String,
}

/// An operation as a push prepares it: the operation, and what its earlier attempts
/// sent (any of them may have landed although its answer was lost).
#[derive(Clone, Debug)]
pub(crate) struct OpToSend {
    pub(crate) op: OpRow,
    /// The bodies earlier attempts sent, oldest first (see [`sent_items`]).
    pub(crate) earlier: Vec<serde_json::Value>,
    /// The same as stored, to put back when this attempt is undone.
    pub(crate) stored_sent: Option<String>,
}

/// SQL text formatted once per process (the table names are constants, but `concat!`
/// takes only literals): the hot statements are looked up in the statement cache by
/// this text, so building it anew for every call would be pure waste.
macro_rules! sql_once {
    ($($fmt:tt)*) => {{
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| format!($($fmt)*));
        SQL.as_str()
    }};
}
pub(super) use sql_once;

pub(super) fn now_rfc3339() -> String {
    sync_core::datetime::format(time::OffsetDateTime::now_utc())
}

pub(super) fn latest_op(conn: &Connection, table: &str, id: &str) -> Result<Option<OpRow>> {
    let mut stmt = conn.prepare_cached(sql_once!(
        "SELECT seq, kind, state, op_version, item FROM {OPERATIONS_TABLE}
         WHERE table_name = ?1 AND item_id = ?2 ORDER BY seq DESC LIMIT 1"
    ))?;
    Ok(stmt.query_row(params![table, id], op_row).optional()?)
}

/// What [`Tx::absorb_later_ops`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Folded {
    /// No operation was queued behind it that could be folded in.
    Nothing,
    /// This many operations were folded into it.
    Into(usize),
    /// The folding removed it too (an insert never sent, then deleted), or it was gone.
    Removed,
}

impl Folded {
    fn counted(folded: usize) -> Folded {
        if folded == 0 { Folded::Nothing } else { Folded::Into(folded) }
    }
}

/// The item's first queued operation (there are two only when a write came while the
/// first was in flight).
pub(super) fn earliest_op(conn: &Connection, table: &str, id: &str) -> Result<Option<OpRow>> {
    let mut stmt = conn.prepare_cached(sql_once!(
        "SELECT seq, kind, state, op_version, item FROM {OPERATIONS_TABLE}
         WHERE table_name = ?1 AND item_id = ?2 ORDER BY seq LIMIT 1"
    ))?;
    Ok(stmt.query_row(params![table, id], op_row).optional()?)
}

pub(super) fn op_by_seq(conn: &Connection, seq: i64) -> Result<Option<OpRow>> {
    let mut stmt = conn.prepare_cached(sql_once!(
        "SELECT seq, kind, state, op_version, item FROM {OPERATIONS_TABLE} WHERE seq = ?1"
    ))?;
    Ok(stmt.query_row([seq], op_row).optional()?)
}

/// An operation as a push prepares it: [`op_by_seq`], and what earlier attempts sent.
fn op_to_send(conn: &Connection, seq: i64) -> Result<Option<OpToSend>> {
    let mut stmt = conn.prepare_cached(sql_once!(
        "SELECT seq, kind, state, op_version, item, sent_item FROM {OPERATIONS_TABLE} WHERE seq = ?1"
    ))?;
    let read = stmt.query_row([seq], |r| Ok((op_row(r)?, r.get::<_, Option<String>>(5)?))).optional()?;
    Ok(read.map(|(op, stored_sent)| OpToSend { op, earlier: sent_items(stored_sent.as_deref()), stored_sent }))
}

/// The statement of [`append_op`]: `?1` kind, `?2` table, `?3` item id, `?4` item
/// snapshot, `?5` created at.
pub(super) fn append_sql() -> &'static str {
    sql_once!(
        "INSERT INTO {OPERATIONS_TABLE} (kind, state, table_name, item_id, item, op_version, attempts, created_at)
         VALUES (?1, 'pending', ?2, ?3, ?4, 1, 0, ?5)"
    )
}

/// Whether any operation of `table` is queued.
pub(super) fn table_has_ops(conn: &Connection, table: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(sql_once!("SELECT EXISTS (SELECT 1 FROM {OPERATIONS_TABLE} WHERE table_name = ?1)"))?
        .query_row([table], |r| r.get(0))?)
}

/// Queues a new operation; `created_at` is the time of the transaction that queues it.
pub(super) fn append_op(
    conn: &Connection,
    kind: OpKind,
    table: &str,
    id: &str,
    item: Option<&str>,
    created_at: &str,
) -> Result<i64> {
    let mut stmt = conn.prepare_cached(append_sql())?;
    stmt.execute(params![kind.as_str(), table, id, item, created_at])?;
    Ok(conn.last_insert_rowid())
}

/// Rewrites an operation after a collapse or an edit: new kind and item, version
/// bumped, its error row removed (a failed operation goes back to attempted).
pub(super) fn rewrite_op(conn: &Connection, seq: i64, kind: OpKind, item: Option<&str>) -> Result<()> {
    let mut stmt = conn.prepare_cached(sql_once!(
        "UPDATE {OPERATIONS_TABLE}
         SET kind = ?2, item = ?3, op_version = op_version + 1,
             state = CASE state WHEN 'failed' THEN 'attempted' ELSE state END
         WHERE seq = ?1"
    ))?;
    stmt.execute(params![seq, kind.as_str(), item])?;
    delete_error(conn, seq)
}

/// Removes an operation and its error row.
pub(super) fn remove_op(conn: &Connection, seq: i64) -> Result<()> {
    tracing::trace!(seq, "queue remove");
    conn.prepare_cached(sql_once!("DELETE FROM {OPERATIONS_TABLE} WHERE seq = ?1"))?.execute([seq])?;
    delete_error(conn, seq)
}

fn delete_error(conn: &Connection, seq: i64) -> Result<()> {
    conn.prepare_cached(sql_once!("DELETE FROM {ERRORS_TABLE} WHERE op_seq = ?1"))?.execute([seq])?;
    Ok(())
}

/// How many bodies of earlier attempts an operation keeps.
const MAX_SENT_ITEMS: usize = 8;

/// The bodies the attempts of an operation sent, oldest first. `sent_item` holds them
/// as a JSON array (a lone object, as older stores kept it, is one body). Any of them
/// may have been applied although its answer was lost; at most one was, as they all
/// went out as inserts or with the same `If-Match`. All are kept, not just the last:
/// an attempt that never reached the server (a refused connection) must not hide an
/// earlier one that landed.
fn sent_items(stored: Option<&str>) -> Vec<serde_json::Value> {
    match stored.and_then(|s| serde_json::from_str(s).ok()) {
        Some(serde_json::Value::Array(items)) => items,
        Some(item @ serde_json::Value::Object(_)) => vec![item],
        _ => Vec::new(),
    }
}

/// Marks an operation as sent, before its request goes out: state `attempted`, one
/// more attempt, and what this attempt sends, added to what earlier attempts sent (see
/// [`sent_items`]), so a lost answer can be recognized.
/// (The push, which holds both already, calls [`mark_attempted_with`].)
#[cfg(test)]
pub(super) fn mark_attempted(conn: &Connection, seq: i64, sent_item: Option<&str>) -> Result<()> {
    let stored: Option<String> = conn
        .prepare_cached(sql_once!("SELECT sent_item FROM {OPERATIONS_TABLE} WHERE seq = ?1"))?
        .query_row([seq], |r| r.get(0))
        .optional()?
        .flatten();
    let sent = sent_item.and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok());
    mark_attempted_with(conn, seq, sent_items(stored.as_deref()), sent)
}

/// [`mark_attempted`] for a caller that has read what earlier attempts sent
/// (`earlier`, from [`sent_items`]) and holds what this one sends as JSON.
fn mark_attempted_with(
    conn: &Connection,
    seq: i64,
    mut earlier: Vec<serde_json::Value>,
    sent: Option<serde_json::Value>,
) -> Result<()> {
    if let Some(new) = sent {
        earlier.retain(|item| *item != new);
        earlier.push(new);
        let extra = earlier.len().saturating_sub(MAX_SENT_ITEMS);
        earlier.drain(..extra);
    }
    let sent = (!earlier.is_empty()).then(|| serde_json::Value::Array(earlier).to_string());
    conn.prepare_cached(sql_once!(
        "UPDATE {OPERATIONS_TABLE} SET state = CASE state WHEN 'failed' THEN 'failed' ELSE 'attempted' END,
             attempts = attempts + 1, sent_item = ?2 WHERE seq = ?1"
    ))?
    .execute(params![seq, sent])?;
    Ok(())
}

/// Undoes [`mark_attempted`] for an operation prepared but never sent: its state and
/// what earlier attempts sent go back to what they were, and the attempt is not counted.
fn unmark_attempted(conn: &Connection, seq: i64, state: OpState, sent_item: Option<&str>) -> Result<()> {
    conn.prepare_cached(sql_once!(
        "UPDATE {OPERATIONS_TABLE} SET state = ?2, attempts = max(attempts - 1, 0), sent_item = ?3
         WHERE seq = ?1 AND state = 'attempted'"
    ))?
    .execute(params![seq, state.as_str(), sent_item])?;
    Ok(())
}

/// What the push records when the server refuses an operation.
#[derive(Clone, Debug, Default)]
pub(crate) struct ErrorInput {
    pub(crate) status: Option<u16>,
    pub(crate) message: String,
    pub(crate) client_item: Option<serde_json::Value>,
    pub(crate) server_item: Option<serde_json::Value>,
    pub(crate) raw_body: Option<String>,
}

/// Records (or replaces) the error row of an operation and marks it failed.
pub(super) fn record_error(conn: &Connection, seq: i64, input: &ErrorInput) -> Result<()> {
    let Some(op) = op_by_seq(conn, seq)? else {
        return Err(Error::StaleOperation { op_id: seq, reason: "the operation no longer exists".into() });
    };
    let (table, item_id): (String, String) =
        conn.query_row(&format!("SELECT table_name, item_id FROM {OPERATIONS_TABLE} WHERE seq = ?1"), [seq], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    conn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO {ERRORS_TABLE}
         (op_seq, op_version, table_name, item_id, kind, status, message, client_item, server_item, raw_body, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    ))?
    .execute(params![
        seq,
        op.version,
        table,
        item_id,
        op.kind.as_str(),
        input.status,
        input.message,
        input.client_item.as_ref().map(|j| j.to_string()),
        input.server_item.as_ref().map(|j| j.to_string()),
        input.raw_body,
        now_rfc3339(),
    ])?;
    conn.prepare_cached(&format!("UPDATE {OPERATIONS_TABLE} SET state = 'failed' WHERE seq = ?1"))?.execute([seq])?;
    Ok(())
}

const PENDING_COLUMNS: &str = "seq, kind, table_name, item_id, state, attempts, op_version, created_at";

fn read_pending(r: &rusqlite::Row<'_>) -> rusqlite::Result<PendingOp> {
    Ok(PendingOp {
        op_id: r.get(0)?,
        kind: parse_col(1, r.get(1)?)?,
        table: r.get(2)?,
        item_id: r.get(3)?,
        state: parse_col(4, r.get(4)?)?,
        attempts: r.get(5)?,
        op_version: r.get(6)?,
        created_at: r.get(7)?,
    })
}

/// Every queued operation (of one table, or all), in push order.
pub(super) fn list_ops(conn: &Connection, table: Option<&str>) -> Result<Vec<PendingOp>> {
    let rows = match table {
        Some(t) => conn
            .prepare_cached(&format!(
                "SELECT {PENDING_COLUMNS} FROM {OPERATIONS_TABLE} WHERE table_name = ?1 ORDER BY seq"
            ))?
            .query_map([t], read_pending)?
            .collect::<rusqlite::Result<Vec<_>>>()?,
        None => conn
            .prepare_cached(&format!("SELECT {PENDING_COLUMNS} FROM {OPERATIONS_TABLE} ORDER BY seq"))?
            .query_map([], read_pending)?
            .collect::<rusqlite::Result<Vec<_>>>()?,
    };
    Ok(rows)
}

/// The first operation in push order, if any.
pub(super) fn next_op(conn: &Connection) -> Result<Option<PendingOp>> {
    Ok(conn
        .prepare_cached(sql_once!("SELECT {PENDING_COLUMNS} FROM {OPERATIONS_TABLE} ORDER BY seq LIMIT 1"))?
        .query_row([], read_pending)
        .optional()?)
}

/// How many operations are queued (for one table, or all).
pub(super) fn count_ops(conn: &Connection, table: Option<&str>) -> Result<u64> {
    let n: i64 = match table {
        Some(t) => conn
            .prepare_cached(sql_once!("SELECT count(*) FROM {OPERATIONS_TABLE} WHERE table_name = ?1"))?
            .query_row([t], |r| r.get(0))?,
        None => {
            conn.prepare_cached(sql_once!("SELECT count(*) FROM {OPERATIONS_TABLE}"))?.query_row([], |r| r.get(0))?
        }
    };
    Ok(n as u64)
}

/// The queue as a push and the settling of its answers change it, inside one
/// transaction of the store.
impl Tx<'_> {
    /// The first operation after sequence number `after`, in push order.
    pub(crate) fn next_op_after(&self, after: i64) -> Result<Option<QueuedOp>> {
        let mut stmt = self.tx.prepare_cached(sql_once!(
            "SELECT seq, state, table_name, item_id FROM {OPERATIONS_TABLE}
             WHERE seq > ?1 ORDER BY seq LIMIT 1"
        ))?;
        let op = stmt.query_row([after], |r| {
            Ok(QueuedOp { seq: r.get(0)?, state: parse_col(1, r.get(1)?)?, table: r.get(2)?, item_id: r.get(3)? })
        });
        Ok(op.optional()?)
    }

    /// The operation `seq`, if it is still queued.
    pub(crate) fn op(&self, seq: i64) -> Result<Option<OpRow>> {
        op_by_seq(&self.tx, seq)
    }

    /// The operation `seq` as a push prepares it, if it is still queued.
    pub(crate) fn op_to_send(&self, seq: i64) -> Result<Option<OpToSend>> {
        op_to_send(&self.tx, seq)
    }

    /// Whether any operation of `table` is queued.
    pub(crate) fn table_has_ops(&self, table: &str) -> Result<bool> {
        table_has_ops(&self.tx, table)
    }

    /// Whether any operation of the item is queued.
    pub(crate) fn item_has_ops(&self, table: &str, id: &str) -> Result<bool> {
        let mut stmt = self.tx.prepare_cached(sql_once!(
            "SELECT EXISTS (SELECT 1 FROM {OPERATIONS_TABLE} WHERE table_name = ?1 AND item_id = ?2)"
        ))?;
        Ok(stmt.query_row(params![table, id], |r| r.get(0))?)
    }

    /// Whether an operation on the item is queued after operation `seq` (written while
    /// `seq` was in flight).
    pub(crate) fn has_later_op(&self, table: &str, id: &str, seq: i64) -> Result<bool> {
        let mut stmt = self.tx.prepare_cached(sql_once!(
            "SELECT EXISTS (SELECT 1 FROM {OPERATIONS_TABLE} WHERE table_name = ?1 AND item_id = ?2 AND seq > ?3)"
        ))?;
        Ok(stmt.query_row(params![table, id, seq], |r| r.get(0))?)
    }

    /// Folds into operation `seq` the operations on its item that were queued behind it
    /// while it was in flight, once it is not: its push stopped before sending it (or
    /// the process restarted). The queue becomes what the collapse rules make of the
    /// same writes made while it was not in flight, so that the item is not sent twice
    /// (both operations would read the same row) and no update waits behind a delete
    /// with its row gone. A delete followed by an insert stays as two operations.
    pub(crate) fn absorb_later_ops(&self, table: &str, id: &str, seq: i64) -> Result<Folded> {
        let mut folded = 0;
        loop {
            // The later operation first: most items have none, and then that is all.
            let mut stmt = self.tx.prepare_cached(sql_once!(
                "SELECT seq, kind, state, op_version, item FROM {OPERATIONS_TABLE}
                 WHERE table_name = ?1 AND item_id = ?2 AND seq > ?3 ORDER BY seq LIMIT 1"
            ))?;
            let Some(later) = stmt.query_row(params![table, id, seq], op_row).optional()? else {
                return Ok(Folded::counted(folded));
            };
            drop(stmt);
            let Some(first) = op_by_seq(&self.tx, seq)? else { return Ok(Folded::Removed) };
            if later.state != OpState::Pending || first.state == OpState::Failed {
                return Ok(Folded::counted(folded));
            }
            let decision = match (first.kind, later.kind) {
                // The later insert re-created the item after a local delete (the two
                // collapsed into one insert): with the first, one write of the row as it
                // stands.
                (OpKind::Insert | OpKind::Update, OpKind::Insert) => Ok(Collapse::Keep),
                (kind, new) => collapse(Some((kind, first.state)), new),
            };
            match decision {
                Ok(Collapse::Keep) => self.rewrite_op(seq, first.kind, first.item.as_deref())?,
                Ok(Collapse::Become(OpKind::Delete)) => self.rewrite_op(seq, OpKind::Delete, later.item.as_deref())?,
                Ok(Collapse::Remove) => {
                    self.remove_op(seq)?;
                    self.remove_op(later.seq)?;
                    return Ok(Folded::Removed);
                }
                _ => return Ok(Folded::counted(folded)),
            }
            self.remove_op(later.seq)?;
            folded += 1;
            tracing::debug!(seq, folded = later.seq, "an operation queued during a push folded into the one before it");
        }
    }

    /// Marks an operation as sent, before its request goes out: state `attempted`, one
    /// more attempt, and `sent` added to what the `earlier` attempts sent (from
    /// [`Tx::op_to_send`]), so that a lost answer can be recognized.
    pub(crate) fn mark_attempted(
        &self,
        seq: i64,
        earlier: Vec<serde_json::Value>,
        sent: serde_json::Value,
    ) -> Result<()> {
        self.changes().queue();
        mark_attempted_with(&self.tx, seq, earlier, Some(sent))
    }

    /// Undoes [`Tx::mark_attempted`] for an operation prepared but never sent: its state
    /// and what earlier attempts sent go back to what they were (`state`, `stored_sent`),
    /// and the attempt is not counted.
    pub(crate) fn unmark_attempted(&self, seq: i64, state: OpState, stored_sent: Option<&str>) -> Result<()> {
        self.changes().queue();
        unmark_attempted(&self.tx, seq, state, stored_sent)
    }

    /// Records (or replaces) the error row of an operation and marks it failed.
    ///
    /// Writes made to its item while its request was out queued behind it; they are
    /// folded into it first ([`Tx::absorb_later_ops`]), and the error's client item is
    /// then the item as it stands locally, not as it was sent: settling the error with
    /// it (e.g. `resolve_retry_with`) keeps those writes.
    pub(crate) fn record_error(&self, seq: i64, input: &ErrorInput) -> Result<()> {
        {
            let mut changes = self.changes();
            changes.queue();
            changes.errors();
        }
        let Some((table, id)) = self.op_item(seq)? else {
            // Gone: refused as stale below.
            return record_error(&self.tx, seq, input);
        };
        match self.absorb_later_ops(&table, &id, seq)? {
            Folded::Nothing => record_error(&self.tx, seq, input),
            // An insert never sent, then deleted: nothing is left to refuse.
            Folded::Removed => Ok(()),
            Folded::Into(_) => {
                let Some(op) = self.op(seq)? else { return Ok(()) };
                if op.kind == OpKind::Delete && matches!(input.status, Some(404 | 410)) {
                    // The item was deleted locally meanwhile, and the server has it no
                    // more: that delete is done.
                    return self.remove_op(seq);
                }
                let current = match (op.kind, self.meta_by_name(&table)) {
                    (OpKind::Delete, _) => op.item.as_deref().and_then(|snapshot| serde_json::from_str(snapshot).ok()),
                    (OpKind::Insert | OpKind::Update, Some(meta)) => {
                        self.read_row(&meta, &id)?.map(|row| meta.push_json(&row))
                    }
                    (_, None) => input.client_item.clone(),
                };
                record_error(&self.tx, seq, &ErrorInput { client_item: current, ..input.clone() })
            }
        }
    }

    /// The table and item id of operation `seq`, if it is still queued.
    fn op_item(&self, seq: i64) -> Result<Option<(String, String)>> {
        let mut stmt =
            self.tx.prepare_cached(sql_once!("SELECT table_name, item_id FROM {OPERATIONS_TABLE} WHERE seq = ?1"))?;
        Ok(stmt.query_row([seq], |r| Ok((r.get(0)?, r.get(1)?))).optional()?)
    }

    /// Removes an operation (settled) and its error row.
    pub(crate) fn remove_op(&self, seq: i64) -> Result<()> {
        let mut changes = self.changes();
        changes.queue();
        changes.errors();
        remove_op(&self.tx, seq)
    }

    /// Rewrites an operation with a new kind and item: its version is bumped and its
    /// error row removed.
    pub(crate) fn rewrite_op(&self, seq: i64, kind: OpKind, item: Option<&str>) -> Result<()> {
        let mut changes = self.changes();
        changes.queue();
        changes.errors();
        rewrite_op(&self.tx, seq, kind, item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OpKind::{Delete, Insert, Update};
    use OpState::{Attempted, Failed, Pending};

    #[test]
    fn collapse_table_matches_design() {
        assert_eq!(collapse(None, Insert), Ok(Collapse::Append(Insert)));
        assert_eq!(collapse(None, Update), Ok(Collapse::Append(Update)));
        assert_eq!(collapse(None, Delete), Ok(Collapse::Append(Delete)));
        assert!(collapse(Some((Insert, Pending)), Insert).is_err());
        assert_eq!(collapse(Some((Insert, Pending)), Update), Ok(Collapse::Keep));
        assert_eq!(collapse(Some((Insert, Pending)), Delete), Ok(Collapse::Remove));
        for s in [Attempted, Failed] {
            assert!(collapse(Some((Insert, s)), Insert).is_err());
            assert_eq!(collapse(Some((Insert, s)), Update), Ok(Collapse::Keep));
            assert_eq!(collapse(Some((Insert, s)), Delete), Ok(Collapse::Become(Delete)));
        }
        for s in [Pending, Attempted, Failed] {
            assert!(collapse(Some((Update, s)), Insert).is_err());
            assert_eq!(collapse(Some((Update, s)), Update), Ok(Collapse::Keep));
            assert_eq!(collapse(Some((Update, s)), Delete), Ok(Collapse::Become(Delete)));
            assert_eq!(collapse(Some((Delete, s)), Insert), Ok(Collapse::Become(Update)));
            assert!(collapse(Some((Delete, s)), Update).is_err());
            assert!(collapse(Some((Delete, s)), Delete).is_err());
        }
    }
}
