//! The batch pipeline of a push: the store prepares the next operations (marked
//! attempted, each on an item of its own) while the ones before them are sent, and
//! commits the landings of answered ones in the same call; the requests still go out
//! strictly one after the other, in sequence order.

use std::collections::{HashSet, VecDeque};
use std::time::Instant;

use crate::ChangeOrigin;
use crate::client::ClientInner;
use crate::client::progress::{SyncEvent, SyncPhase};
use crate::error::{Error, Result};
use crate::op::OpState;
use crate::store::{ErrorInput, QueuedOp, StoreCall, Tx};
use sync_core::ProtocolVersion;

use super::answer::{Landed, Step, push_one, record};
use super::prepare::{Prepared, prepare};
use crate::client::engine::Stop;
use crate::push_report::{PushCancel, PushReport, PushStatus};

/// How many times one push sends an operation whose conflicts keep being resolved by
/// rewriting it; then it becomes an error row.
const MAX_ROUNDS: u32 = 4;

/// How many operations one store call prepares (on as many different items). Each
/// prepared operation is marked attempted before its request (so that a lost answer
/// is recognized later); one commit then serves a batch instead of one operation. A push that stops
/// undoes the marks of those it did not send; a crash leaves them: at most a batch and
/// a half of operations marked attempted but not sent, which the next push sends as
/// it sends any attempted operation.
const BATCH: usize = 16;

/// The push: see [`SyncClient::push`](crate::SyncClient::push). A push that stopped
/// early is an [`Error::PushCancelled`] carrying its report.
pub(crate) async fn push(inner: &ClientInner) -> Result<PushReport> {
    push_until(inner, None).await
}

/// The push, stopping before the next operation once `stop` is set (the sync engine's
/// stop): the answer of the one in flight is recorded first, and what was not sent
/// stays queued as it was. A push that stopped so is [`PushCancel::Stopped`].
pub(crate) async fn push_until(inner: &ClientInner, stop: Option<&Stop>) -> Result<PushReport> {
    let report = push_in_turn(inner, stop).await?;
    match &report.status {
        PushStatus::Complete => Ok(report),
        PushStatus::Cancelled(cancel) => {
            Err(Error::PushCancelled { cause: Box::new(cancel.to_error()), report: Box::new(report) })
        }
    }
}

/// The push, its report whichever way it ended.
async fn push_in_turn(inner: &ClientInner, stop: Option<&Stop>) -> Result<PushReport> {
    // A push that waited for another one finds what that one left.
    let _turn = inner.store.push_turn().await;
    let mut held = Held::default();
    let result = push_queue(inner, &mut held, stop).await;
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
            .transaction_as(ChangeOrigin::Push, move |tx| {
                for (seq, state, sent_item) in marked {
                    tx.unmark_attempted(seq, state, sent_item.as_deref())?;
                }
                for seq in unsent {
                    tx.set_in_flight(seq, false);
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
async fn push_queue(inner: &ClientInner, held: &mut Held, stop: Option<&Stop>) -> Result<PushReport> {
    let started = Instant::now();
    let store = &inner.store;
    let total = store.pending_count().await?;
    let mut report =
        PushReport { pushed: 0, conflicts: Vec::new(), errors: 0, skipped: 0, bytes: 0, status: PushStatus::Complete };
    let mut blocked: HashSet<(String, String)> = HashSet::new();
    let mut after = 0i64;
    let mut done = 0u64;
    // The table of the last operation sent, for the last progress event.
    let mut last_table = String::new();
    let mut landed: Vec<(i64, Landed)> = Vec::new();
    let mut next: Option<StoreCall<Next>> = None;

    let result = loop {
        if stop.is_some_and(Stop::is_set) {
            tracing::info!("push stopped: the sync engine stops");
            report.status = PushStatus::Cancelled(PushCancel::Stopped);
            break Ok(());
        }
        if held.ready.is_empty() {
            // Nothing left to send: the batch prepared meanwhile; if that one is empty
            // (it stopped at an item that was in flight), or none was, one prepared now.
            if let Some(submitted) = next.take() {
                take_batch(held, submitted.await?, &mut after, &mut blocked, &mut report);
            }
            if held.ready.is_empty() {
                let work = side_work(inner, std::mem::take(&mut landed), after, &blocked, HashSet::new());
                take_batch(held, work.await?, &mut after, &mut blocked, &mut report);
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
        let (mut rounds, mut refolds) = (0, 0);
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
                // Not a conflict round: the app's newer write goes first (bounded, for
                // an app that writes the item faster than the server answers).
                Ok(Step::Refolded) if refolds < MAX_ROUNDS => {
                    refolds += 1;
                    rounds -= 1;
                    continue;
                }
                Ok(Step::Refolded) => {
                    let message = format!("the item kept changing locally during {MAX_ROUNDS} conflicts in one push");
                    break record(inner, op.seq, ErrorInput { message, ..ErrorInput::default() })
                        .await
                        .map(|()| Step::Error);
                }
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
            Step::Again | Step::Refolded => unreachable!("handled in the loop above"),
        }
        done += 1;
        last_table.clone_from(&op.table);
        inner.emit(SyncEvent {
            phase: SyncPhase::Push,
            table: op.table.clone(),
            done,
            total: Some(total),
            bytes: report.bytes,
            elapsed: started.elapsed(),
            finished: false,
        });
    };
    // A batch still being prepared: its operations join the unsent ones (undone by
    // `push`), its landings are committed; if it failed, its landings were not, and
    // the push fails with it.
    let pending = match next.take() {
        Some(submitted) => submitted.await.map(|work| take_batch(held, work, &mut after, &mut blocked, &mut report)),
        None => Ok(()),
    };
    if let (Err(_), Err(e)) = (&result, &pending) {
        tracing::warn!(error = %e, "the batch prepared during the push failed too");
    }
    result?;
    pending?;
    if !landed.is_empty() {
        let seqs: Vec<i64> = landed.iter().map(|(seq, _)| *seq).collect();
        store
            .transaction_as(ChangeOrigin::Push, move |tx| landed.into_iter().try_for_each(|(_, commit)| commit(tx)))
            .await?;
        held.uncommitted.retain(|seq| !seqs.contains(seq));
    }
    inner.emit(SyncEvent {
        phase: SyncPhase::Push,
        table: last_table,
        done,
        total: Some(total),
        bytes: report.bytes,
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
) -> StoreCall<Next> {
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
        let Some(op) = tx.next_op_after(after)? else { break };
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
