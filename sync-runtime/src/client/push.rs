//! `push()`: send the queued operations in strict sequence order (DESIGN.md section 7).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use reqwest::Method;
use rusqlite::{OptionalExtension, params};

use crate::error::{Error, Result};
use crate::queue::{self, ErrorInput, OpKind, OpState, sql_once};
use crate::store::{Submitted, TableMeta, Tx};
use sync_core::ProtocolVersion;
use sync_core::Value;
use sync_core::system::OPERATIONS_TABLE;

use super::ClientInner;
use super::conflict::ErasedResolution;
use super::http::{Answer, Request, is_unavailable, table_url};
use super::progress::{SyncEvent, SyncPhase};

/// How a push ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushStatus {
    /// Every operation that could be sent was sent (some may have become errors).
    Complete,
    /// The push stopped early; the operation it was on stays queued.
    Cancelled(PushCancel),
}

/// Why a push stopped early.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushCancel {
    /// The server could not be reached ("cancelled by network").
    Network {
        /// The request's URL.
        url: String,
        /// What failed.
        message: String,
    },
    /// The server refused the credentials ("cancelled by auth").
    Auth {
        /// The request's URL.
        url: String,
        /// 401 or 403.
        status: u16,
    },
    /// The server kept answering 429/502/503/504.
    Unavailable {
        /// The request's URL.
        url: String,
        /// The last status.
        status: u16,
        /// The server's message.
        message: String,
    },
}

impl PushCancel {
    /// The same failure as an [`Error`].
    pub fn to_error(&self) -> Error {
        match self {
            PushCancel::Network { url, message } => Error::Network { url: url.clone(), message: message.clone() },
            PushCancel::Auth { url, status } => Error::Auth { url: url.clone(), status: *status },
            PushCancel::Unavailable { url, status, message } => {
                Error::Http { url: url.clone(), status: *status, message: message.clone() }
            }
        }
    }
}

/// How one conflict ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConflictResolution {
    /// The server's copy was taken locally.
    ServerWins,
    /// The local change was sent again over the server's version.
    ClientWins,
    /// A merged item was stored and sent.
    Merged,
    /// Left to the app: an error row was recorded.
    Unresolved,
    /// Not a real conflict: an earlier attempt had landed but its answer was lost.
    EarlierAttemptLanded,
}

/// One conflict met during a push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConflictOutcome {
    /// The table.
    pub table: String,
    /// The item's id.
    pub item_id: String,
    /// The operation's kind.
    pub kind: OpKind,
    /// 409 or 412.
    pub status: u16,
    /// How it ended.
    pub resolution: ConflictResolution,
}

/// What a push did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushReport {
    /// Operations the server accepted (and removed from the queue).
    pub pushed: u64,
    /// Conflicts met, and how each ended.
    pub conflicts: Vec<ConflictOutcome>,
    /// Error rows recorded by this push.
    pub errors: u64,
    /// Operations skipped because they (or an earlier operation on the same item) wait
    /// in the error table.
    pub skipped: u64,
    /// How the push ended.
    pub status: PushStatus,
}

impl PushReport {
    /// Whether the push got through the whole queue.
    pub fn is_complete(&self) -> bool {
        self.status == PushStatus::Complete
    }
}

/// An operation as the push reads it.
#[derive(Clone, Debug)]
struct QueuedOp {
    seq: i64,
    state: OpState,
    table: String,
    item_id: String,
}

/// An operation ready to send: its request and what the conflict logic needs.
struct Prepared {
    meta: Arc<TableMeta>,
    request: Request,
    /// What this attempt sends (for a delete, the deleted item).
    sent: Vec<Value>,
    /// What earlier attempts sent: the answer of any of them may have been lost.
    previous: Vec<Vec<Value>>,
    /// The operation's state and sent items before this attempt was marked.
    was: (OpState, Option<String>),
}

/// The local result of an operation the server took, not yet committed. It is committed
/// by the store call that prepares the next batch of operations (or by the last call of
/// the push), so that a batch costs one store call and one commit. Until then the
/// operation stays queued and in flight: what a crash, or a local write to the item,
/// would meet while its request was out anyway.
type Landed = Box<dyn FnOnce(&mut Tx<'_>) -> Result<()> + Send>;

/// What became of one operation.
enum Step {
    /// The server took it; the local result still has to be committed.
    Landed(Landed),
    /// Settled, and committed.
    Done,
    Error,
    Skip,
    Stop(PushCancel),
    /// Send it again (after a conflict was resolved by rewriting it).
    Again,
}

const MAX_ROUNDS: u32 = 4;

/// How many operations one store call prepares (on as many different items). Each
/// prepared operation is marked attempted before its request, as DESIGN.md section 7
/// asks; one commit then serves a batch instead of one operation. A push that stops
/// undoes the marks of those it did not send; a crash leaves them: at most a batch and
/// a half of operations marked attempted but not sent, which the next push sends as
/// it sends any attempted operation.
const BATCH: usize = 16;

pub(crate) async fn push(inner: &ClientInner) -> Result<PushReport> {
    // A push that waited for another one finds what that one left.
    let _turn = inner.store.push_turn().await;
    let mut held = Held::default();
    let result = push_queue(inner, &mut held).await;
    let Held { mut uncommitted, ready } = held;
    if !ready.is_empty() {
        // Prepared but never sent (the push stopped): back as they were, so a stop
        // leaves no operation marked attempted that was not sent.
        let seqs: Vec<i64> = ready.iter().map(|(op, _)| op.seq).collect();
        let unsent = seqs.clone();
        let marked: Vec<(i64, OpState, Option<String>)> = ready
            .into_iter()
            .filter_map(|(op, prepared)| prepared.ok().flatten().map(|p| (op.seq, p.was.0, p.was.1)))
            .collect();
        let undone = inner
            .store
            .transaction(move |tx| {
                for (seq, state, sent_item) in marked {
                    queue::unmark_attempted(tx.conn(), seq, state, sent_item.as_deref())?;
                }
                for seq in &unsent {
                    tx.in_flight.remove(seq);
                }
                Ok(())
            })
            .await;
        if let Err(e) = undone {
            tracing::warn!(error = %e, "could not undo the attempted marks of operations not sent");
            uncommitted.extend(seqs);
        }
    }
    for seq in uncommitted {
        // A landed operation whose commit failed (the rollback kept its in-flight
        // mark): it waits, queued, for the next push.
        if let Err(e) = inner.store.set_in_flight(seq, false).await {
            tracing::warn!(seq, error = %e, "could not release an operation's in-flight mark");
        }
    }
    result
}

/// In-flight marks the push holds outside a request.
#[derive(Default)]
struct Held {
    /// Operations whose landing is not committed yet.
    uncommitted: Vec<i64>,
    /// Operations prepared and not sent yet, in order.
    ready: VecDeque<Ready>,
}

/// An operation, and what preparing it gave (a failure to prepare it is the
/// operation's problem, not the transaction's: what the transaction committed before
/// stands).
type Ready = (QueuedOp, Result<Option<Prepared>>);

/// The push itself.
///
/// One store call commits the landings of the operations answered since the last one
/// and prepares the next batch: up to [`BATCH`] operations, in sequence order, stopping
/// at the first one whose item is in flight, waiting to be sent, or already in the
/// batch (it has to wait for that answer). The call is sent to the store thread once
/// half a batch is left to send and awaited only when nothing is left, so the store's
/// work, and the wake-up of its thread, overlap the network waits instead of adding to
/// them. Operations are still sent strictly one after the other, each after the answer
/// to the one before.
async fn push_queue(inner: &ClientInner, held: &mut Held) -> Result<PushReport> {
    let started = Instant::now();
    let store = &inner.store;
    let total = store.pending_count().await?;
    let mut report =
        PushReport { pushed: 0, conflicts: Vec::new(), errors: 0, skipped: 0, status: PushStatus::Complete };
    let mut blocked: HashSet<(String, String)> = HashSet::new();
    let mut after = 0i64;
    let mut done = 0u64;
    let mut landed: Vec<(i64, Landed)> = Vec::new();
    let mut next: Option<Submitted<Next>> = None;

    let result = loop {
        if held.ready.is_empty() {
            // Nothing left to send: the batch prepared meanwhile; if that one is empty
            // (it stopped at an item that was in flight), or none was, one prepared now.
            if let Some(submitted) = next.take() {
                take_batch(held, submitted.wait().await?, &mut after, &mut blocked, &mut report);
            }
            if held.ready.is_empty() {
                let work = side_work(inner, std::mem::take(&mut landed), after, &blocked, HashSet::new());
                take_batch(held, work.wait().await?, &mut after, &mut blocked, &mut report);
            }
        }
        let Some((op, prepared)) = held.ready.pop_front() else { break Ok(()) };
        let key = (op.table.clone(), op.item_id.clone());
        if next.is_none() && held.ready.len() < BATCH / 2 {
            // The next batch, prepared while this and the ready ones are sent.
            let ready = held.ready.iter().map(|(o, _)| (o.table.clone(), o.item_id.clone()));
            let exclude = ready.chain([key.clone()]);
            next = Some(side_work(inner, std::mem::take(&mut landed), after, &blocked, exclude.collect()));
        }

        let mut prepared = Some(prepared);
        let mut rounds = 0;
        let step = loop {
            rounds += 1;
            let step = push_one(inner, &op, prepared.take(), rounds, &mut report).await;
            if !matches!(step, Ok(Step::Landed(_))) {
                // Whatever happened, the request is no longer in flight.
                if let Err(e) = store.set_in_flight(op.seq, false).await {
                    break Err(e);
                }
            }
            match step {
                Ok(Step::Again) if rounds < MAX_ROUNDS => continue,
                Ok(Step::Again) => {
                    let message = format!("still conflicting after {MAX_ROUNDS} attempts in one push");
                    break record(inner, op.seq, ErrorInput { message, ..ErrorInput::default() })
                        .await
                        .map(|()| Step::Error);
                }
                other => break other,
            }
        };
        let step = match step {
            Ok(step) => step,
            Err(e) => break Err(e),
        };
        match step {
            Step::Landed(commit) => {
                report.pushed += 1;
                landed.push((op.seq, commit));
                held.uncommitted.push(op.seq);
            }
            Step::Done => report.pushed += 1,
            Step::Error => {
                report.errors += 1;
                blocked.insert(key);
            }
            Step::Skip => report.skipped += 1,
            Step::Stop(cancel) => {
                tracing::info!(?cancel, "push stopped");
                report.status = PushStatus::Cancelled(cancel);
                break Ok(());
            }
            Step::Again => unreachable!("handled in the loop above"),
        }
        done += 1;
        inner.emit(SyncEvent {
            phase: SyncPhase::Push,
            table: op.table.clone(),
            done,
            total: Some(total),
            bytes: 0,
            elapsed: started.elapsed(),
            finished: false,
        });
    };
    // A batch still being prepared: its operations join the unsent ones (undone by
    // `push`), its landings are committed; if it failed, its landings were not, and
    // the push fails with it.
    let pending = match next.take() {
        Some(submitted) => {
            submitted.wait().await.map(|work| take_batch(held, work, &mut after, &mut blocked, &mut report))
        }
        None => Ok(()),
    };
    if let (Err(_), Err(e)) = (&result, &pending) {
        tracing::warn!(error = %e, "the batch prepared during the push failed too");
    }
    result?;
    pending?;
    if !landed.is_empty() {
        let seqs: Vec<i64> = landed.iter().map(|(seq, _)| *seq).collect();
        store.transaction(move |tx| landed.into_iter().try_for_each(|(_, commit)| commit(tx))).await?;
        held.uncommitted.retain(|seq| !seqs.contains(seq));
    }
    inner.emit(SyncEvent {
        phase: SyncPhase::Push,
        table: String::new(),
        done,
        total: Some(total),
        bytes: 0,
        elapsed: started.elapsed(),
        finished: true,
    });
    tracing::info!(pushed = report.pushed, errors = report.errors, conflicts = report.conflicts.len(), "push finished");
    Ok(report)
}

/// Takes in what a store call of the push did: its landings are committed, its batch
/// is ready to send.
fn take_batch(
    held: &mut Held,
    next: Next,
    after: &mut i64,
    blocked: &mut HashSet<(String, String)>,
    report: &mut PushReport,
) {
    held.uncommitted.retain(|seq| !next.committed.contains(seq));
    *after = next.after;
    report.skipped += next.skipped.len() as u64;
    blocked.extend(next.skipped);
    held.ready.extend(next.ops);
}

/// One store call of the push besides an operation's own, sent to the store thread
/// now: commit the landings, then find and prepare the next batch, stopping at an
/// operation on an `exclude`d item.
fn side_work(
    inner: &ClientInner,
    landed: Vec<(i64, Landed)>,
    after: i64,
    blocked: &HashSet<(String, String)>,
    exclude: HashSet<(String, String)>,
) -> Submitted<Next> {
    let (base, protocol, blocked) = (inner.base.clone(), inner.protocol, blocked.clone());
    inner.store.transaction_now(move |tx| {
        let mut committed = Vec::with_capacity(landed.len());
        for (seq, commit) in landed {
            commit(tx)?;
            committed.push(seq);
        }
        let mut next = next_to_send(tx, after, &blocked, exclude, protocol, &base)?;
        next.committed = committed;
        Ok(next)
    })
}

/// What one store call of the push found.
struct Next {
    /// The operations whose landing it committed.
    committed: Vec<i64>,
    /// The last sequence number passed.
    after: i64,
    /// Items passed over: their operation is failed, or an earlier one on the item is.
    skipped: Vec<(String, String)>,
    /// The next operations to send, in order, each on an item of its own.
    ops: Vec<Ready>,
}

/// Finds and prepares the next operations after `after` that can be sent, up to
/// [`BATCH`]; stops without taking it at an operation on an `exclude`d item or on an
/// item already in the batch.
fn next_to_send(
    tx: &mut Tx<'_>,
    mut after: i64,
    blocked: &HashSet<(String, String)>,
    exclude: HashSet<(String, String)>,
    protocol: ProtocolVersion,
    base: &reqwest::Url,
) -> Result<Next> {
    let mut skipped = Vec::new();
    let mut passed: HashSet<(String, String)> = HashSet::new();
    let mut taken = exclude;
    let mut ops = Vec::new();
    while ops.len() < BATCH {
        let Some(op) = next_after(tx.conn(), after)? else { break };
        let key = (op.table.clone(), op.item_id.clone());
        if taken.contains(&key) {
            break;
        }
        after = op.seq;
        if op.state == OpState::Failed || blocked.contains(&key) || passed.contains(&key) {
            // It waits in the error table; later operations on the same item wait behind it.
            passed.insert(key.clone());
            skipped.push(key);
            continue;
        }
        let prepared = prepare(tx, &op, protocol, base);
        let stop = matches!(prepared, Err(Error::InvalidEntity { .. }));
        taken.insert(key);
        ops.push((op, prepared));
        if stop {
            // The push ends at this one.
            break;
        }
    }
    Ok(Next { committed: Vec::new(), after, skipped, ops })
}

fn next_after(conn: &rusqlite::Connection, after: i64) -> Result<Option<QueuedOp>> {
    Ok(conn
        .prepare_cached(sql_once!(
            "SELECT seq, state, table_name, item_id FROM {OPERATIONS_TABLE}
             WHERE seq > ?1 ORDER BY seq LIMIT 1"
        ))?
        .query_row([after], |r| {
            let state: String = r.get(1)?;
            Ok(QueuedOp {
                seq: r.get(0)?,
                state: state.parse().unwrap_or(OpState::Pending),
                table: r.get(2)?,
                item_id: r.get(3)?,
            })
        })
        .optional()?)
}

fn parse_json(meta: &TableMeta, text: &str) -> Result<Vec<Value>> {
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::InvalidValue {
        table: meta.name.to_owned(),
        column: "<queued item>".into(),
        reason: format!("does not parse: {e}"),
    })?;
    meta.row_from_json(&json)
}

/// Reads the operation's row, builds its request, and marks it attempted and in
/// flight, all before the request goes out.
fn prepare(
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
    // Re-read the operation inside the transaction: it may have changed since.
    let Some((current, previous_sent)) = queue::op_to_send(tx.conn(), op.seq)? else { return Ok(None) };
    let (sent, if_match) = match current.kind {
        OpKind::Delete => {
            let snapshot = current.item.as_deref().unwrap_or("{}");
            let row = parse_json(&meta, snapshot)?;
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
    let earlier = queue::sent_items(previous_sent.as_deref());
    let previous = earlier.iter().map(|j| meta.row_from_json(j)).collect::<Result<_>>()?;
    queue::mark_attempted_with(tx.conn(), op.seq, earlier, Some(body.clone()))?;
    tx.in_flight.insert(op.seq);
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
    Ok(Some(Prepared { meta, request, sent, previous, was: (current.state, previous_sent) }))
}

async fn record(inner: &ClientInner, seq: i64, input: ErrorInput) -> Result<()> {
    inner.store.transaction(move |tx| queue::record_error(tx.conn(), seq, &input)).await
}

/// Sends one operation (`prepared` already, or prepared here) and settles its answer.
async fn push_one(
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
            inner.store.transaction(move |tx| prepare(tx, &op, protocol, &base)).await
        }
    };
    let prepared = match prepared {
        Ok(Some(p)) => p,
        Ok(None) => return Ok(Step::Skip),
        Err(e @ Error::InvalidEntity { .. }) => return Err(e),
        Err(e) => {
            // The operation cannot be sent as it stands (its row is gone, its item does
            // not parse): record why, and go on.
            record(inner, op.seq, ErrorInput { message: e.to_string(), ..ErrorInput::default() }).await?;
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
        Ok(answer) => answer,
        Err(Error::Network { url, message }) => return Ok(Step::Stop(PushCancel::Network { url, message })),
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
async fn finish(
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
                    Some(Err(e)) => e.to_string(),
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
            apply_server_copy(tx, &meta, &id, seq, server)?;
        }
        queue::remove_op(tx.conn(), seq)?;
        tx.in_flight.remove(&seq);
        Ok(())
    })))
}

/// Writes the server's copy of an item after its operation `seq` landed. When a later
/// operation on the item is queued (written while this one was in flight), only the
/// server-managed columns are taken, so that later operation sends the app's data over
/// the right version.
fn apply_server_copy(tx: &mut Tx<'_>, meta: &TableMeta, id: &str, seq: i64, mut server: Vec<Value>) -> Result<()> {
    let later: bool = tx
        .conn()
        .prepare_cached(sql_once!(
            "SELECT EXISTS (SELECT 1 FROM {OPERATIONS_TABLE} WHERE table_name = ?1 AND item_id = ?2 AND seq > ?3)"
        ))?
        .query_row(params![meta.name, id, seq], |r| r.get(0))?;
    let local = tx.read_row(meta, id)?;
    if later {
        if let Some(mut local) = local {
            meta.copy_server_columns(&mut local, &server);
            tx.upsert_row_unqueued(meta, &local)?;
        }
        return Ok(());
    }
    if meta.is_deleted(&server) {
        return tx.delete_row_unqueued(meta, id);
    }
    if let Some(local) = &local {
        meta.keep_local_only(&mut server, local);
    }
    server[0] = Value::String(id.to_owned());
    tx.upsert_row_unqueued(meta, &server)
}

async fn conflict(
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
    // The server's copy: from the body when it is one (with a version), else fetched.
    let mut server_json = answer.json().filter(|j| j.get("id").is_some() && j.get("version").is_some());
    if server_json.is_none() {
        let get = Request {
            method: Method::GET,
            url: inner.table_url(&op.table, Some(&op.item_id)),
            if_match: None,
            body: None,
        };
        match inner.send(&get).await {
            Ok(a) if a.is_success() => server_json = a.json().filter(serde_json::Value::is_object),
            Ok(_) => {}
            Err(Error::Network { url, message }) => return Ok(Step::Stop(PushCancel::Network { url, message })),
            Err(Error::Auth { url, status }) => return Ok(Step::Stop(PushCancel::Auth { url, status })),
            Err(e) => return Err(e),
        }
    }
    let server = match server_json.as_ref().map(|j| meta.row_from_json(j)) {
        Some(Ok(row)) => row,
        other => {
            let message = match other {
                Some(Err(e)) => format!("conflict (HTTP {status}); the server's copy does not read: {e}"),
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
            .transaction(move |tx| {
                if changed_since {
                    // Continue as an update over the server's version.
                    take_version(tx, &meta, &id, &server)?;
                    queue::rewrite_op(tx.conn(), seq, OpKind::Update, None)?;
                    Ok(Step::Again)
                } else {
                    apply_server_copy(tx, &meta, &id, seq, server)?;
                    queue::remove_op(tx.conn(), seq)?;
                    Ok(Step::Done)
                }
            })
            .await;
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
        ErasedResolution::TakeServer => {
            report.conflicts.push(outcome(ConflictResolution::ServerWins));
            inner
                .store
                .transaction(move |tx| {
                    queue::remove_op(tx.conn(), seq)?;
                    let later = queue::latest_op(tx.conn(), meta.name, &id)?.is_some();
                    if later {
                        take_version(tx, &meta, &id, &server)
                    } else if meta.is_deleted(&server) {
                        tx.delete_row_unqueued(&meta, &id)
                    } else {
                        let mut row = server;
                        if let Some(local) = tx.read_row(&meta, &id)? {
                            meta.keep_local_only(&mut row, &local);
                        }
                        row[0] = Value::String(id.clone());
                        tx.upsert_row_unqueued(&meta, &row)
                    }
                })
                .await?;
            Ok(Step::Done)
        }
        ErasedResolution::KeepClient => {
            report.conflicts.push(outcome(ConflictResolution::ClientWins));
            overwrite(inner, meta, seq, id, kind, &server, None).await
        }
        ErasedResolution::Merged(merged) => {
            report.conflicts.push(outcome(ConflictResolution::Merged));
            overwrite(inner, meta, seq, id, kind, &server, Some(merged)).await
        }
    }
}

/// Sets the local row's server-managed columns (its version) to the server's.
fn take_version(tx: &mut Tx<'_>, meta: &TableMeta, id: &str, server: &[Value]) -> Result<()> {
    if let Some(mut local) = tx.read_row(meta, id)? {
        meta.copy_server_columns(&mut local, server);
        tx.upsert_row_unqueued(meta, &local)?;
    }
    Ok(())
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
        .transaction(move |tx| {
            match kind {
                OpKind::Delete => {
                    // Delete again over the server's version: keep it in the queued item.
                    let op = queue::op_by_seq(tx.conn(), seq)?;
                    let mut item = match op.and_then(|o| o.item) {
                        Some(text) => parse_json(&meta, &text)?,
                        None => meta.empty_row(),
                    };
                    meta.copy_server_columns(&mut item, &server);
                    let snapshot = meta.row_to_json(&item).to_string();
                    queue::rewrite_op(tx.conn(), seq, OpKind::Delete, Some(&snapshot))?;
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
                    queue::rewrite_op(tx.conn(), seq, OpKind::Update, None)?;
                }
            }
            Ok(Step::Again)
        })
        .await
}
