//! A conflict (409 or 412) met by a push. First, a lost answer is recognized: when the
//! server holds what an earlier attempt sent, that attempt landed and nothing
//! conflicts. Otherwise the table's conflict handler decides: the server's copy is
//! taken, the local change is sent again over the server's version, a merge is stored
//! and sent, or an error row is left for the app.

use std::sync::Arc;

use reqwest::Method;

use crate::ChangeOrigin;
use crate::client::ClientInner;
use crate::client::conflict_handler::ErasedResolution;
use crate::client::http::{Answer, Request};
use crate::error::{Error, Result};
use crate::op::OpKind;
use crate::store::{Answered, ErrorInput, Folded, QueuedOp, TableMeta};
use sync_core::{ProtocolVersion, Value};

use super::answer::{Step, record};
use super::prepare::Prepared;
use crate::push_report::{ConflictOutcome, ConflictResolution, PushCancel, PushReport};

/// The server answered 409 or 412: settle it (see the module's docs).
pub(super) async fn conflict(
    inner: &ClientInner,
    op: &QueuedOp,
    kind: OpKind,
    prepared: Prepared,
    answer: Answer,
    report: &mut PushReport,
) -> Result<Step> {
    let meta = Arc::clone(&prepared.meta);
    let status = answer.status;
    let raw = String::from_utf8_lossy(&answer.body).into_owned();
    // The server's copy: from the body when it is one (with a version), else fetched
    // (a tombstone too: an insert may meet the deleted item of its id).
    let mut server_json = answer.json().filter(|j| j.get("id").is_some() && j.get("version").is_some());
    if server_json.is_none() {
        let mut url = inner.table_url(&op.table, Some(&op.item_id));
        url.query_pairs_mut().append_pair(include_deleted(inner.protocol), "true");
        let get = Request { method: Method::GET, url, if_match: None, body: None };
        match inner.send(&get).await {
            Ok(a) => {
                report.bytes += a.bytes();
                if a.is_success() {
                    server_json = a.json().filter(serde_json::Value::is_object);
                }
            }
            Err(Error::Network { url, source }) => return Ok(Step::Stop(PushCancel::Network { url, source })),
            Err(Error::Auth { url, status }) => return Ok(Step::Stop(PushCancel::Auth { url, status })),
            Err(e) => return Err(e),
        }
    }
    let server = match server_json.as_ref().map(|j| meta.row_from_json(j)) {
        Some(Ok(row)) => row,
        other => {
            let message = match other {
                Some(Err(e)) => {
                    format!("conflict (HTTP {status}); the server's copy does not read: {}", e.with_sources())
                }
                _ => format!("conflict (HTTP {status}): {}", answer.message()),
            };
            let input = ErrorInput {
                status: Some(status),
                message,
                client_item: Some(meta.push_json(&prepared.sent)),
                server_item: server_json,
                raw_body: Some(raw),
            };
            record(inner, op.seq, input).await?;
            return Ok(Step::Error);
        }
    };
    let outcome =
        |resolution| ConflictOutcome { table: op.table.clone(), item_id: op.item_id.clone(), kind, status, resolution };

    // A lost answer is not a conflict: an earlier attempt landed. That is an earlier
    // push's attempt (what it sent is kept with the operation), or an earlier try of this
    // very request when it was sent again after a 5xx answer (a gateway may time out
    // after the server applied it).
    let retried = answer.retried.then_some(&prepared.sent);
    let landed = prepared.previous.iter().chain(retried).find(|p| meta.same_data(p, &server));
    if let Some(previous) = landed {
        report.conflicts.push(outcome(ConflictResolution::EarlierAttemptLanded));
        if kind == OpKind::Delete {
            // An update sent before the item was deleted locally landed, and moved the
            // version the delete carries: the server holds what was deleted, so the
            // delete goes on over the server's version.
            return overwrite(inner, meta, op.seq, op.item_id.clone(), kind, &server, None).await;
        }
        let changed_since = !meta.same_data(previous, &prepared.sent);
        let (seq, id) = (op.seq, op.item_id.clone());
        return inner
            .store
            .transaction_as(ChangeOrigin::Push, move |tx| {
                if changed_since {
                    // Continue as an update over the server's version.
                    tx.take_server_columns(&meta, &id, &server)?;
                    tx.rewrite_op(seq, OpKind::Update, None)?;
                    Ok(Step::Again)
                } else {
                    tx.apply_server_copy(&meta, &id, server, Answered::Op(seq))?;
                    tx.remove_op(seq)?;
                    Ok(Step::Done)
                }
            })
            .await;
    }

    if kind == OpKind::Insert && meta.is_deleted(&server) {
        report.conflicts.push(outcome(ConflictResolution::Recreated));
        return recreate(inner, op, prepared, &server, report).await;
    }

    // The app wrote the item again while this request was out (a sync engine pushes
    // beside the app): that write is the app's side now, not what was sent. It is
    // folded into this operation, which goes again; the conflict, if the server still
    // answers one, is then settled on the item as it stands.
    if inner.handlers.contains_key(op.table.as_str()) {
        let (seq, table, id) = (op.seq, op.table.clone(), op.item_id.clone());
        let folded = inner
            .store
            .transaction_as(ChangeOrigin::Push, move |tx| Ok(tx.absorb_later_ops(&table, &id, seq)? != Folded::Nothing))
            .await?;
        if folded {
            return Ok(Step::Refolded);
        }
    }

    let resolution = match inner.handlers.get(op.table.as_str()) {
        Some(handler) => handler.resolve(&meta, kind, status, &prepared.sent, &server)?,
        None => ErasedResolution::Unresolved,
    };
    let (seq, id) = (op.seq, op.item_id.clone());
    match resolution {
        ErasedResolution::Unresolved => {
            report.conflicts.push(outcome(ConflictResolution::Unresolved));
            let input = ErrorInput {
                status: Some(status),
                message: format!("conflict (HTTP {status}): {}", answer.message()),
                client_item: Some(meta.push_json(&prepared.sent)),
                server_item: server_json,
                raw_body: Some(raw),
            };
            record(inner, seq, input).await?;
            Ok(Step::Error)
        }
        ErasedResolution::ServerWins => {
            report.conflicts.push(outcome(ConflictResolution::ServerWins));
            inner
                .store
                .transaction_as(ChangeOrigin::Push, move |tx| {
                    tx.remove_op(seq)?;
                    tx.apply_server_copy(&meta, &id, server, Answered::Op(seq))
                })
                .await?;
            Ok(Step::Done)
        }
        ErasedResolution::ClientWins => {
            report.conflicts.push(outcome(ConflictResolution::ClientWins));
            overwrite(inner, meta, seq, id, kind, &server, None).await
        }
        ErasedResolution::Merged(merged) => {
            report.conflicts.push(outcome(ConflictResolution::Merged));
            overwrite(inner, meta, seq, id, kind, &server, Some(merged)).await
        }
    }
}

/// The query parameter that asks for tombstones too, in each generation's spelling.
fn include_deleted(protocol: ProtocolVersion) -> &'static str {
    match protocol {
        ProtocolVersion::V2 => "__includeDeleted",
        ProtocolVersion::V3 => "__includedeleted",
    }
}

/// An insert met the tombstone of its id: the item was deleted (here or on another
/// device) and the app created it again. The tombstone is brought back with the local
/// item, over the tombstone's version, as each generation's servers offer: v3 replaces
/// it with `deleted: false` and `__includedeleted=true` (the Datasync toolkit's
/// undelete), v2 undeletes it (`POST /tables/{t}/{id}`, as the Azure Mobile Apps Node
/// server offers) and then updates it. Whatever refuses it ends as an error row that
/// says so; a version that moved meanwhile sends the insert again (it meets the new
/// tombstone, or the item someone else re-created).
async fn recreate(
    inner: &ClientInner,
    op: &QueuedOp,
    prepared: Prepared,
    server: &[Value],
    report: &mut PushReport,
) -> Result<Step> {
    let meta = Arc::clone(&prepared.meta);
    let version = meta.version_of(server);
    let url = inner.table_url(&op.table, Some(&op.item_id));
    let mut body = prepared.request.body.clone().unwrap_or_else(|| meta.push_json(&prepared.sent));
    let answer = match inner.protocol {
        ProtocolVersion::V3 => {
            if let Some(map) = body.as_object_mut() {
                map.insert(sync_core::system::DELETED.to_owned(), serde_json::Value::Bool(false));
            }
            let mut url = url;
            url.query_pairs_mut().append_pair(include_deleted(ProtocolVersion::V3), "true");
            send(inner, &Request { method: Method::PUT, url, if_match: version, body: Some(body) }, report).await?
        }
        ProtocolVersion::V2 => {
            let undelete = Request { method: Method::POST, url: url.clone(), if_match: version, body: None };
            let undone = send(inner, &undelete, report).await?;
            match undone {
                Sent::Answer(a) if a.is_success() => {
                    let version = a
                        .json()
                        .and_then(|j| j.get(sync_core::system::VERSION).and_then(|v| v.as_str()).map(str::to_owned));
                    let update = Request { method: Method::PATCH, url, if_match: version, body: Some(body) };
                    send(inner, &update, report).await?
                }
                other => other,
            }
        }
    };
    let answer = match answer {
        Sent::Answer(answer) => answer,
        Sent::Stopped(cancel) => return Ok(Step::Stop(cancel)),
    };
    match answer.status {
        s if (200..300).contains(&s) => {
            super::answer::finish(inner, op.seq, &meta, OpKind::Insert, &op.item_id, &answer).await
        }
        409 | 412 => Ok(Step::Again),
        s => {
            let input = ErrorInput {
                status: Some(s),
                message: format!(
                    "the server holds a deleted item with this id and did not bring it back (HTTP {s}): {}",
                    answer.message()
                ),
                client_item: Some(meta.push_json(&prepared.sent)),
                server_item: Some(meta.row_to_json(server)),
                raw_body: Some(String::from_utf8_lossy(&answer.body).into_owned()),
            };
            record(inner, op.seq, input).await?;
            Ok(Step::Error)
        }
    }
}

/// A request's answer, or why the push stops.
enum Sent {
    Answer(Answer),
    Stopped(PushCancel),
}

/// Sends a request of the push (its bytes counted in `report`).
async fn send(inner: &ClientInner, request: &Request, report: &mut PushReport) -> Result<Sent> {
    match inner.send(request).await {
        Ok(answer) => {
            report.bytes += answer.bytes();
            Ok(Sent::Answer(answer))
        }
        Err(Error::Network { url, source }) => Ok(Sent::Stopped(PushCancel::Network { url, source })),
        Err(Error::Auth { url, status }) => Ok(Sent::Stopped(PushCancel::Auth { url, status })),
        Err(e) => Err(e),
    }
}

/// "Client wins" and merges: send the local (or merged) item again over the server's
/// version. An insert the server already has becomes an update.
async fn overwrite(
    inner: &ClientInner,
    meta: Arc<TableMeta>,
    seq: i64,
    id: String,
    kind: OpKind,
    server: &[Value],
    merged: Option<Vec<Value>>,
) -> Result<Step> {
    let server = server.to_vec();
    inner
        .store
        .transaction_as(ChangeOrigin::Push, move |tx| {
            // A write of the app's since the decision was asked for (the request was
            // still out): it goes first, folded in, and the conflict is met again.
            if tx.absorb_later_ops(meta.name, &id, seq)? != Folded::Nothing {
                return Ok(Step::Refolded);
            }
            match kind {
                OpKind::Delete => {
                    // Delete again over the server's version: keep it in the queued item.
                    let mut item = match tx.op(seq)?.and_then(|o| o.item) {
                        Some(snapshot) => meta.row_from_queued_item(seq, &snapshot)?,
                        None => meta.empty_row(),
                    };
                    meta.copy_server_columns(&mut item, &server);
                    let snapshot = meta.row_to_json(&item).to_string();
                    tx.rewrite_op(seq, OpKind::Delete, Some(&snapshot))?;
                }
                OpKind::Insert | OpKind::Update => {
                    let mut row = match merged {
                        Some(row) => row,
                        None => tx.read_row(&meta, &id)?.unwrap_or_else(|| server.clone()),
                    };
                    if let Some(local) = tx.read_row(&meta, &id)? {
                        meta.keep_local_only(&mut row, &local);
                    }
                    meta.copy_server_columns(&mut row, &server);
                    row[0] = Value::String(id.clone());
                    tx.upsert_row_unqueued(&meta, &row)?;
                    tx.rewrite_op(seq, OpKind::Update, None)?;
                }
            }
            Ok(Step::Again)
        })
        .await
}
