//! One operation on the wire: its request sent, and its answer sorted and settled
//! (landed, a conflict, an error row, or a reason to stop the push).

use std::sync::Arc;

use reqwest::Method;

use crate::ChangeOrigin;
use crate::client::ClientInner;
use crate::client::http::{Answer, Request, is_unavailable};
use crate::error::{Error, Result};
use crate::op::OpKind;
use crate::store::{Answered, ErrorInput, QueuedOp, TableMeta, Tx};

use super::conflict::conflict;
use super::prepare::{Prepared, prepare};
use crate::push_report::{PushCancel, PushReport};

/// The local result of an operation the server took, not yet committed. It is committed
/// by the store call that prepares the next batch of operations (or by the last call of
/// the push), so that a batch costs one store call and one commit. Until then the
/// operation stays queued and in flight: what a crash, or a local write to the item,
/// would meet while its request was out anyway.
pub(super) type Landed = Box<dyn FnOnce(&mut Tx<'_>) -> Result<()> + Send>;

/// What became of one operation.
pub(super) enum Step {
    /// The server took it; the local result still has to be committed.
    Landed(Landed),
    /// Settled, and committed.
    Done,
    /// Refused: an error row was recorded.
    Error,
    /// Nothing to send (the operation is gone since it was read).
    Skip,
    /// The push stops here; the operation stays queued.
    Stop(PushCancel),
    /// Send it again (after a conflict was resolved by rewriting it).
    Again,
    /// Send it again: the app wrote the item while the request was out, and that write
    /// was folded into the operation before a conflict handler decided.
    Refolded,
}

/// Records an error row for operation `seq` (and marks it failed).
///
/// Its in-flight mark goes in the same transaction: a local write to its item right
/// after then collapses into it (not queued behind an operation that waits for the
/// app, which `resolve_discard` would leave with its row gone).
pub(super) async fn record(inner: &ClientInner, seq: i64, input: ErrorInput) -> Result<()> {
    inner
        .store
        .transaction_as(ChangeOrigin::Push, move |tx| {
            tx.set_in_flight(seq, false);
            tx.record_error(seq, &input)
        })
        .await
}

/// Sends one operation (`prepared` already, or prepared here) and settles its answer.
pub(super) async fn push_one(
    inner: &ClientInner,
    op: &QueuedOp,
    prepared: Option<Result<Option<Prepared>>>,
    round: u32,
    report: &mut PushReport,
) -> Result<Step> {
    let prepared = match prepared {
        Some(prepared) => prepared,
        None => {
            let (op, protocol, base) = (op.clone(), inner.protocol, inner.base.clone());
            inner.store.transaction_as(ChangeOrigin::Push, move |tx| prepare(tx, &op, protocol, &base)).await
        }
    };
    let prepared = match prepared {
        Ok(Some(p)) => p,
        Ok(None) => return Ok(Step::Skip),
        Err(e @ Error::InvalidEntity { .. }) => return Err(e),
        Err(e) => {
            // The operation cannot be sent as it stands (its row is gone, its item does
            // not parse): record why, and go on.
            record(inner, op.seq, ErrorInput { message: e.with_sources(), ..ErrorInput::default() }).await?;
            return Ok(Step::Error);
        }
    };
    let kind = prepared_kind(&prepared.request.method);
    tracing::debug!(seq = op.seq, table = %op.table, id = %op.item_id, ?kind, round, "pushing");
    // A delete without a version deletes an item the server never confirmed (its insert
    // was only attempted): the server may hold that insert, another client's item of the
    // same id, or nothing. A bare DELETE would delete whatever is there, unseen; so look
    // first. Nothing there: done. An item there: a conflict at that version (412), which
    // the conflict logic settles: it is the insert, landed, when it holds what the insert
    // sent (then it is deleted over its version); otherwise the handler decides.
    let unconfirmed_delete = kind == OpKind::Delete && prepared.request.if_match.is_none();
    let request = match unconfirmed_delete {
        true => Request { method: Method::GET, url: prepared.request.url.clone(), if_match: None, body: None },
        false => prepared.request.clone(),
    };
    let mut answer = match inner.send(&request).await {
        Ok(answer) => {
            report.bytes += answer.bytes();
            answer
        }
        Err(Error::Network { url, source }) => return Ok(Step::Stop(PushCancel::Network { url, source })),
        Err(Error::Auth { url, status }) => return Ok(Step::Stop(PushCancel::Auth { url, status })),
        Err(e) => return Err(e),
    };
    if unconfirmed_delete && answer.is_success() {
        answer.status = 412;
    }

    if answer.is_success() || (kind == OpKind::Delete && matches!(answer.status, 404 | 410)) {
        return finish(inner, op.seq, &prepared.meta, kind, &op.item_id, &answer).await;
    }
    match answer.status {
        409 | 412 => conflict(inner, op, kind, prepared, answer, report).await,
        s if is_unavailable(s) => {
            Ok(Step::Stop(PushCancel::Unavailable { url: answer.url.clone(), status: s, message: answer.message() }))
        }
        s => {
            let input = ErrorInput {
                status: Some(s),
                message: answer.message(),
                client_item: Some(prepared.meta.push_json(&prepared.sent)),
                server_item: None,
                raw_body: Some(String::from_utf8_lossy(&answer.body).into_owned()),
            };
            record(inner, op.seq, input).await?;
            Ok(Step::Error)
        }
    }
}

fn prepared_kind(method: &Method) -> OpKind {
    match *method {
        Method::POST => OpKind::Insert,
        Method::DELETE => OpKind::Delete,
        _ => OpKind::Update,
    }
}

/// The server accepted the operation: take its copy and remove the operation (in the
/// push's next store call).
pub(super) async fn finish(
    inner: &ClientInner,
    seq: i64,
    meta: &Arc<TableMeta>,
    kind: OpKind,
    id: &str,
    answer: &Answer,
) -> Result<Step> {
    let server = if kind == OpKind::Delete {
        None
    } else {
        match answer.json().filter(serde_json::Value::is_object).map(|j| meta.row_from_json(&j)) {
            Some(Ok(row)) => Some(row),
            other => {
                // The server applied it but its answer is not an item: keep the operation
                // (a later push finds out it landed) and say why.
                let why = match other {
                    Some(Err(e)) => e.with_sources(),
                    _ => "the answer is not a JSON object".into(),
                };
                let input = ErrorInput {
                    status: Some(answer.status),
                    message: format!("unexpected answer to a successful {kind}: {why}"),
                    raw_body: Some(String::from_utf8_lossy(&answer.body).into_owned()),
                    ..ErrorInput::default()
                };
                record(inner, seq, input).await?;
                return Ok(Step::Error);
            }
        }
    };
    let meta = Arc::clone(meta);
    let id = id.to_owned();
    Ok(Step::Landed(Box::new(move |tx| {
        if let Some(server) = server {
            tx.apply_server_copy(&meta, &id, server, Answered::Op(seq))?;
        }
        tx.remove_op(seq)?;
        tx.set_in_flight(seq, false);
        Ok(())
    })))
}
