//! The reserving task of a [`super::PostgresStorage`]: takes every reservation a write
//! asks for ([`super::reservations`]) and makes them on a connection of its own, the
//! requests waiting at one time together, one statement per clock row.
//!
//! Why together: a clock row is one row that every reservation of its table (or owner)
//! updates. Each update is short, but fifty processes updating one row at once spend
//! most of their time queueing for it and waking each other up (measured here: the
//! same update costs PostgreSQL about 100 us of CPU with 4 updaters and about 260 us
//! with 50). One update per batch keeps the updaters of a row to one per instance.
//!
//! A batch changes nothing about the order: the pairs of one clock row's group are
//! `(t, id_1) < (t, id_2) < ..` for its ids in ascending order (distinct: a second
//! write of one row waits for the next batch), `t` by the rule of [`crate::stamp`] for
//! the smallest id, and the clock row moves to `(t, largest id)`; all are recorded in
//! flight in the statement that moves the clock row, so they commit at once, before
//! any of their writes. The order still comes only from the clock row in PostgreSQL,
//! so instances agree whatever each batches.
//!
//! Reservations are handed out as [`Held`] guards: a write that wrote (its statement
//! withdrew the reservation) releases its guard; any other way of letting go of one (a
//! refused or failed write, a call cancelled at any point, even before it received its
//! reservation) drops it, which gives it back to the task, and the task withdraws what
//! it was given back, together, without the write waiting for it.
//!
//! The task waits for requests when there is nothing to do. It opens its connection
//! when first needed and again after losing it; while it cannot, reservations fail with
//! [`StorageError::Unavailable`] (503).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures_util::future::join_all;
use sync_core::datetime;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;

use super::pool::SESSION_SETTINGS;
use super::reservations::{self, Reservation};
use super::{connect_error, db_error};
use crate::stamp::Clock;
use crate::storage::StorageError;
use crate::storage::engine::Engine;
use crate::storage::statements;
use crate::storage::write;

/// Requests (reservations, or reservations given back) one batch takes at most.
const MAX_BATCH: usize = 512;

/// A reservation asked for, and where its answer goes.
struct Request {
    /// The clock row: the table, and the owner for an owned table.
    table: String,
    owner: Option<String>,
    id: String,
    reply: oneshot::Sender<Result<Held, StorageError>>,
}

/// A reservation a write holds. Dropped without [`Held::release`], it goes back to the
/// reserving task, which withdraws it.
#[derive(Debug)]
pub(super) struct Held {
    reservation: Reservation,
    /// Whether it still is to be given back when dropped.
    held: bool,
    returns: mpsc::UnboundedSender<Reservation>,
}

impl Held {
    /// The reservation.
    pub(super) fn reservation(&self) -> &Reservation {
        &self.reservation
    }

    /// Lets go of a reservation that is gone already (withdrawn by the write's own
    /// statement).
    pub(super) fn release(mut self) {
        self.held = false;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.held {
            // When the task is gone (the storage was closed), the reservation expires.
            let _ = self.returns.send(self.reservation.clone());
        }
    }
}

/// The handle of a storage's reserving task.
#[derive(Debug)]
pub(super) struct Stamps {
    /// `None` once the storage is closed (the task then ends).
    requests: Mutex<Option<mpsc::UnboundedSender<Request>>>,
}

impl Stamps {
    /// Starts the task, which connects to `config` when first needed.
    pub(super) fn start(config: tokio_postgres::Config, clock: Arc<dyn Clock>) -> Stamps {
        let (requests, inbox) = mpsc::unbounded_channel();
        tokio::spawn(serve(inbox, config, clock));
        Stamps { requests: Mutex::new(Some(requests)) }
    }

    /// Reserves the next pair of `id` on the clock row of `table` (of `owner` for an
    /// owned table).
    pub(super) async fn reserve(&self, table: &str, owner: Option<&str>, id: &str) -> Result<Held, StorageError> {
        let (reply, answer) = oneshot::channel();
        let request = Request { table: table.to_owned(), owner: owner.map(str::to_owned), id: id.to_owned(), reply };
        let sent = match self.requests.lock() {
            Ok(requests) => requests.as_ref().is_some_and(|r| r.send(request).is_ok()),
            Err(_) => false,
        };
        if !sent {
            return Err(StorageError::Unavailable("the storage is closed"));
        }
        answer.await.map_err(|_| StorageError::Unavailable("the reserving task is gone"))?
    }

    /// Ends the task once it has answered what it was asked.
    pub(super) fn close(&self) {
        if let Ok(mut requests) = self.requests.lock() {
            requests.take();
        }
    }
}

/// The task: batch after batch until the storage is closed.
async fn serve(mut inbox: mpsc::UnboundedReceiver<Request>, config: tokio_postgres::Config, clock: Arc<dyn Clock>) {
    let (returns, mut returned_inbox) = mpsc::unbounded_channel::<Reservation>();
    let mut connection: Option<Connection> = None;
    let (mut waiting, mut returned): (Vec<Request>, Vec<Reservation>) = (Vec::new(), Vec::new());
    let mut open = true;
    loop {
        if waiting.is_empty() && returned.is_empty() {
            if !open {
                return;
            }
            tokio::select! {
                request = inbox.recv() => match request {
                    Some(request) => waiting.push(request),
                    // Closed: withdraw what comes back until nothing does, then end.
                    None => open = false,
                },
                Some(reservation) = returned_inbox.recv() => returned.push(reservation),
            }
        }
        while waiting.len() + returned.len() < MAX_BATCH {
            if let Ok(request) = inbox.try_recv() {
                waiting.push(request);
            } else if let Ok(reservation) = returned_inbox.try_recv() {
                returned.push(reservation);
            } else {
                break;
            }
        }
        let (tables, later) = batch(std::mem::take(&mut waiting));
        waiting = later;
        let withdrawals = std::mem::take(&mut returned);
        let connected = match connection.take().filter(|c| !c.client.is_closed()) {
            Some(c) => Ok(c),
            None => Connection::open(&config).await,
        };
        let conn = match connected {
            Ok(c) => connection.insert(c),
            Err(e) => {
                tracing::warn!(error = %e, "the reserving task cannot connect to PostgreSQL");
                for request in tables.into_iter().flat_map(TableBatch::into_requests) {
                    let _ = request.reply.send(Err(StorageError::Unavailable("PostgreSQL is unavailable; retry")));
                }
                if !withdrawals.is_empty() {
                    tracing::warn!(count = withdrawals.len(), "reservations are left to expire: no connection");
                }
                continue;
            }
        };
        let now = datetime::format(clock.now());
        // One statement per table, and one for what came back, sent together.
        let (answers, withdrawn) =
            tokio::join!(join_all(tables.iter().map(|table| conn.reserve(table, &now))), conn.withdraw(&withdrawals));
        if let Err(e) = withdrawn {
            tracing::warn!(error = %e, count = withdrawals.len(), "reservations are left to expire: withdrawing failed");
        }
        for (table, answer) in tables.into_iter().zip(answers) {
            let name = table.table.clone();
            for (owner, requests) in table.groups {
                let stamp = match &answer {
                    Ok(stamps) => stamps.get(&owner).cloned().ok_or_else(|| write::unprepared(&name)),
                    Err(e) => Err(answer_error(e)),
                };
                for Request { id, reply, .. } in requests {
                    let held = match &stamp {
                        Ok(at) => Ok(Held {
                            reservation: Reservation::new(&name, owner.as_deref(), at, &id),
                            held: true,
                            returns: returns.clone(),
                        }),
                        Err(e) => Err(answer_error(e)),
                    };
                    // A write that went away while it waited drops the answer, which
                    // gives the reservation back.
                    let _ = reply.send(held);
                }
            }
        }
    }
}

/// The requests of one table in a batch: per clock row (the table's, `None`, or an
/// owner's), ids distinct and in ascending order.
struct TableBatch {
    table: String,
    groups: BTreeMap<Option<String>, Vec<Request>>,
}

impl TableBatch {
    fn into_requests(self) -> impl Iterator<Item = Request> {
        self.groups.into_values().flatten()
    }
}

/// Sorts requests by table and clock row; a second request of one id on one clock row
/// waits for the next batch (returned second).
fn batch(requests: Vec<Request>) -> (Vec<TableBatch>, Vec<Request>) {
    let mut tables: BTreeMap<String, BTreeMap<Option<String>, BTreeMap<String, Request>>> = BTreeMap::new();
    let mut later = Vec::new();
    for request in requests {
        let ids = tables.entry(request.table.clone()).or_default().entry(request.owner.clone()).or_default();
        if ids.contains_key(&request.id) {
            later.push(request);
        } else {
            ids.insert(request.id.clone(), request);
        }
    }
    // `String`s order bytewise, as the rule compares ids.
    let tables = tables
        .into_iter()
        .map(|(table, groups)| TableBatch {
            table,
            groups: groups.into_iter().map(|(owner, ids)| (owner, ids.into_values().collect())).collect(),
        })
        .collect();
    (tables, later)
}

/// The answer of one request of a batch whose reservation failed.
fn answer_error(e: &StorageError) -> StorageError {
    match e {
        StorageError::Unavailable(message) => StorageError::Unavailable(message),
        StorageError::Schema { table, message } => {
            StorageError::Schema { table: table.clone(), message: message.clone() }
        }
        other => StorageError::Database(other.to_string().into()),
    }
}

/// The task's connection and its statements.
struct Connection {
    client: tokio_postgres::Client,
    reserve_shared: tokio_postgres::Statement,
    reserve_owned: tokio_postgres::Statement,
    seed_owner: tokio_postgres::Statement,
    withdraw: tokio_postgres::Statement,
}

impl Connection {
    async fn open(config: &tokio_postgres::Config) -> Result<Connection, StorageError> {
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(connect_error)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "the reserving task's PostgreSQL connection failed");
            }
        });
        client.batch_execute(SESSION_SETTINGS).await.map_err(db_error)?;
        let sql = [
            reservations::reserve_shared(),
            reservations::reserve_owned(),
            statements::seed_owner_clock(Engine::Postgres),
            reservations::withdraw_many(),
        ];
        let (reserve_shared, reserve_owned, seed_owner, withdraw) = tokio::try_join!(
            client.prepare(&sql[0]),
            client.prepare(&sql[1]),
            client.prepare(&sql[2]),
            client.prepare(&sql[3])
        )
        .map_err(db_error)?;
        Ok(Connection { client, reserve_shared, reserve_owned, seed_owner, withdraw })
    }

    /// Withdraws reservations given back, in one statement.
    async fn withdraw(&self, returned: &[Reservation]) -> Result<(), StorageError> {
        if returned.is_empty() {
            return Ok(());
        }
        let columns = Reservation::columns(returned);
        let params: Vec<&(dyn ToSql + Sync)> = columns.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
        self.client.execute(&self.withdraw, &params).await.map_err(db_error)?;
        Ok(())
    }

    /// Reserves the pairs of one table's batch; answers the `updatedAt` of each clock
    /// row (by owner; none for a clock row the table lacks). An owner's first
    /// reservation makes its clock row.
    async fn reserve(&self, batch: &TableBatch, now: &str) -> Result<BTreeMap<Option<String>, String>, StorageError> {
        let table = &batch.table;
        let ids = |requests: &[Request]| -> Vec<String> { requests.iter().map(|r| r.id.clone()).collect() };
        if let Some(requests) = batch.groups.get(&None) {
            let ids = ids(requests);
            let (Some(first), Some(last)) = (ids.first(), ids.last()) else { return Ok(BTreeMap::new()) };
            let rows = self.client.query(&self.reserve_shared, &[table, &now, first, last, &ids]).await;
            let stamp = rows.map_err(db_error)?.first().map(|r| r.try_get::<_, String>(1)).transpose();
            return Ok(stamp.map_err(db_error)?.map(|at| (None, at)).into_iter().collect());
        }
        let mut stamps = self.reserve_owners(batch, now, |_| true).await?;
        let missing: Vec<&String> = batch.groups.keys().flatten().filter(|o| !stamps.contains_key(*o)).collect();
        if !missing.is_empty() {
            // Owners' first writes: make their clock rows, then reserve for them.
            let params: Vec<[&(dyn ToSql + Sync); 2]> = missing.iter().map(|o| [table as _, o as _]).collect();
            let seeded = join_all(params.iter().map(|p| self.client.execute(&self.seed_owner, p))).await;
            seeded.into_iter().collect::<Result<Vec<_>, _>>().map_err(db_error)?;
            stamps.extend(self.reserve_owners(batch, now, |owner| missing.contains(&owner)).await?);
        }
        Ok(stamps.into_iter().map(|(owner, at)| (Some(owner), at)).collect())
    }

    /// [`reservations::reserve_owned`] for the owners of `batch` that `include` says.
    async fn reserve_owners(
        &self,
        batch: &TableBatch,
        now: &str,
        include: impl Fn(&String) -> bool,
    ) -> Result<BTreeMap<String, String>, StorageError> {
        let (mut owners, mut firsts, mut lasts, mut request_owners, mut request_ids) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (owner, requests) in &batch.groups {
            let (Some(owner), Some(first), Some(last)) = (owner, requests.first(), requests.last()) else { continue };
            if !include(owner) {
                continue;
            }
            owners.push(owner.as_str());
            firsts.push(first.id.as_str());
            lasts.push(last.id.as_str());
            for request in requests {
                request_owners.push(owner.as_str());
                request_ids.push(request.id.as_str());
            }
        }
        let params: [&(dyn ToSql + Sync); 7] =
            [&batch.table, &now, &owners, &firsts, &lasts, &request_owners, &request_ids];
        let rows = self.client.query(&self.reserve_owned, &params).await.map_err(db_error)?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect::<Result<_, _>>().map_err(db_error)
    }
}
