//! Preparing an operation to send: read it and its row, build its request, and mark
//! it attempted and in flight, all in the store call before the request goes out.

use std::sync::Arc;

use reqwest::Method;

use crate::client::http::{Request, table_url};
use crate::error::{Error, Result};
use crate::op::{OpKind, OpState};
use crate::store::{Folded, OpToSend, QueuedOp, TableMeta, Tx};
use sync_core::ProtocolVersion;
use sync_core::Value;

/// An operation ready to send: its request and what the conflict logic needs.
pub(super) struct Prepared {
    pub(super) meta: Arc<TableMeta>,
    pub(super) request: Request,
    /// What this attempt sends (for a delete, the deleted item).
    pub(super) sent: Vec<Value>,
    /// What earlier attempts sent: the answer of any of them may have been lost.
    pub(super) previous: Vec<Vec<Value>>,
    /// The operation's state and sent items before this attempt was marked.
    pub(super) was: (OpState, Option<String>),
}

/// Reads the operation's row, builds its request, and marks it attempted and in
/// flight, all before the request goes out.
pub(super) fn prepare(
    tx: &mut Tx<'_>,
    op: &QueuedOp,
    inner_protocol: ProtocolVersion,
    base: &reqwest::Url,
) -> Result<Option<Prepared>> {
    let Some(meta) = tx.meta_by_name(&op.table) else {
        return Err(Error::InvalidEntity {
            table: op.table.clone(),
            message: "the table has queued operations but was not opened in this process; call store.table::<T>() before pushing".into(),
        });
    };
    // Writes made while it was in flight before (a push that stopped) queued behind it:
    // folded in now, as if made while it was not.
    if tx.absorb_later_ops(&op.table, &op.item_id, op.seq)? == Folded::Removed {
        return Ok(None);
    }
    // Re-read the operation inside the transaction: it may have changed since.
    let Some(OpToSend { op: current, earlier, stored_sent }) = tx.op_to_send(op.seq)? else { return Ok(None) };
    let (sent, if_match) = match current.kind {
        OpKind::Delete => {
            let row = match current.item.as_deref() {
                Some(snapshot) => meta.row_from_queued_item(op.seq, snapshot)?,
                None => meta.empty_row(),
            };
            let version = meta.version_of(&row);
            (row, version)
        }
        OpKind::Insert | OpKind::Update => {
            let Some(row) = tx.read_row(&meta, &op.item_id)? else {
                return Err(Error::NotFound { table: op.table.clone(), id: op.item_id.clone() });
            };
            let version = meta.version_of(&row);
            (row, version)
        }
    };
    let body = meta.push_json(&sent);
    let previous = earlier.iter().map(|j| meta.row_from_json(j)).collect::<Result<_>>()?;
    tx.mark_attempted(op.seq, earlier, body.clone())?;
    tx.set_in_flight(op.seq, true);
    let request = match current.kind {
        OpKind::Insert => {
            Request { method: Method::POST, url: table_url(base, &op.table, None), if_match: None, body: Some(body) }
        }
        OpKind::Update => Request {
            method: if inner_protocol == ProtocolVersion::V3 { Method::PUT } else { Method::PATCH },
            url: table_url(base, &op.table, Some(&op.item_id)),
            if_match: if_match.clone(),
            body: Some(body),
        },
        OpKind::Delete => {
            Request { method: Method::DELETE, url: table_url(base, &op.table, Some(&op.item_id)), if_match, body: None }
        }
    };
    Ok(Some(Prepared { meta, request, sent, previous, was: (current.state, stored_sent) }))
}
