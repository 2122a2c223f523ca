//! PostgreSQL's write attempts ([`crate::storage::write::WriteAttempt`]), two kinds:
//!
//! - **owned tables**: a transaction that locks the owner's clock row (`FOR UPDATE`)
//!   until it commits ([`Stamp::Locked`]): writers of one owner queue, writers of
//!   different owners never meet, and an owner's readers see its rows committed in the
//!   order of their pairs;
//! - **shared tables**: a reserved stamp ([`Stamp::Reserved`], see [`super::reservations`]),
//!   the row read without a lock and written by one guarded statement.
//!
//! Each attempt takes two round trips: statements that do not depend on each other's
//! answers are sent together (tokio-postgres pipelines them, and PostgreSQL runs them
//! in order): `BEGIN`, the clock lock and the row read; then the write, the clock and
//! `COMMIT`. A shared table's attempt: the reservation and the row read; then the
//! guarded write.

use deadpool_postgres::ClientWrapper;
use sync_core::Value;
use sync_core::datetime;
use sync_core::sql::postgres::PgValue;
use tokio_postgres::types::ToSql;

use super::pool::Pool;
use super::reservations;
use super::{db_error, read_row};
use crate::stamp::Clock;
use crate::storage::engine::Engine;
use crate::storage::statements;
use crate::storage::write::{self, ClockRow, Effect, Read, Stamp, WriteAttempt};
use crate::storage::{Key, StorageError};
use crate::table::TableDef;

/// A pair reserved for a write and not yet written or given back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Reservation {
    table: String,
    updated_at: String,
    id: String,
}

impl Reservation {
    /// Withdraws it, if it is still there.
    pub(super) async fn withdraw(&self, client: &ClientWrapper) -> Result<(), StorageError> {
        let withdraw = client.prepare_cached(&reservations::withdraw()).await.map_err(db_error)?;
        client.execute(&withdraw, &[&self.table, &self.updated_at, &self.id]).await.map_err(db_error)?;
        Ok(())
    }
}

/// What an attempt holds open.
#[derive(Debug, Default)]
enum Open {
    #[default]
    Nothing,
    /// A transaction (holding an owner's clock row).
    Transaction,
    /// A reservation.
    Reservation(Reservation),
}

/// The write attempts of one call, on one connection.
pub(super) struct PgWrite<'c> {
    client: &'c ClientWrapper,
    /// Where a reservation left behind (a cancelled call) is withdrawn from.
    pool: &'c Pool,
    clock: &'c dyn Clock,
    open: Open,
    /// A step failed and what it held could not be released on this connection: the
    /// caller closes the connection (PostgreSQL then rolls back whatever it had open).
    broken: bool,
}

impl<'c> PgWrite<'c> {
    pub(super) fn new(client: &'c ClientWrapper, pool: &'c Pool, clock: &'c dyn Clock) -> PgWrite<'c> {
        PgWrite { client, pool, clock, open: Open::Nothing, broken: false }
    }

    /// Whether the connection must be closed rather than given back to the pool.
    pub(super) fn broken(&self) -> bool {
        self.broken
    }

    /// Opens a transaction, locks the owner's clock row (made by the owner's first
    /// write) and reads the row.
    async fn lock_and_read(&mut self, table: &TableDef, key: &Key<'_>) -> Result<Read, StorageError> {
        let client = self.client;
        let lock = client.prepare_cached(&statements::read_clock(table, Engine::Postgres)).await.map_err(db_error)?;
        let select = client.prepare_cached(&statements::select_row(table, Engine::Postgres)).await.map_err(db_error)?;
        let clock_params = statements::clock_params(table, key);
        let clock_params = as_params(&clock_params);
        let key_params = key.params();
        let key_params = as_params(&key_params);
        self.open = Open::Transaction;
        let (begun, mut clock, mut rows) = tokio::join!(
            client.batch_execute("BEGIN"),
            client.query(&lock, &clock_params),
            client.query(&select, &key_params)
        );
        begun.map_err(db_error)?;
        if clock.as_ref().is_ok_and(Vec::is_empty) {
            // The owner's first write: make its clock row, then lock it and read again
            // (the first read was not under the lock).
            let seed =
                client.prepare_cached(&statements::seed_owner_clock(Engine::Postgres)).await.map_err(db_error)?;
            let seeded;
            (seeded, clock, rows) = tokio::join!(
                client.execute(&seed, &clock_params),
                client.query(&lock, &clock_params),
                client.query(&select, &key_params)
            );
            seeded.map_err(db_error)?;
        }
        let clock = match clock.map_err(db_error)?.first() {
            Some(r) => {
                Some(ClockRow { updated_at: r.try_get(0).map_err(db_error)?, id: r.try_get(1).map_err(db_error)? })
            }
            None => None,
        };
        let current = rows.map_err(db_error)?.first().map(|r| read_row(table, r)).transpose()?;
        Ok(Read { stamp: Stamp::Locked(clock), current })
    }

    /// Reserves a pair and reads the row.
    async fn reserve_and_read(&mut self, table: &TableDef, key: &Key<'_>) -> Result<Read, StorageError> {
        let client = self.client;
        let reserve = client.prepare_cached(&reservations::reserve()).await.map_err(db_error)?;
        let select = client.prepare_cached(&statements::select_row(table, Engine::Postgres)).await.map_err(db_error)?;
        let now = datetime::format(self.clock.now());
        let key_params = key.params();
        let key_params = as_params(&key_params);
        let reserve_params: [&(dyn ToSql + Sync); 3] = [&table.name, &now, &key.id];
        let (reserved, rows) =
            tokio::join!(client.query(&reserve, &reserve_params), client.query(&select, &key_params));
        let reserved = reserved.map_err(db_error)?;
        let updated_at: String = match reserved.first() {
            Some(r) => r.try_get(0).map_err(db_error)?,
            None => return Err(write::unprepared(&table.name)),
        };
        let reservation =
            Reservation { table: table.name.clone(), updated_at: updated_at.clone(), id: key.id.to_owned() };
        self.open = Open::Reservation(reservation);
        let current = rows.map_err(db_error)?.first().map(|r| read_row(table, r)).transpose()?;
        Ok(Read { stamp: Stamp::Reserved(updated_at), current })
    }

    /// Writes (or removes) the row and moves the owner's clock row, then commits.
    async fn write_and_commit(
        &mut self,
        table: &TableDef,
        key: &Key<'_>,
        effect: Effect<'_>,
    ) -> Result<bool, StorageError> {
        let client = self.client;
        let (applied, committed) = match effect {
            Effect::Write { row, replaces } => {
                let write = client.prepare_cached(&row_write(table, replaces, None)).await.map_err(db_error)?;
                let set_clock =
                    client.prepare_cached(&statements::set_clock(table, Engine::Postgres)).await.map_err(db_error)?;
                let values = statements::row_params(table, key, row, replaces);
                let values: Vec<PgValue<'_>> = values.iter().map(PgValue).collect();
                let mut clock_params = vec![row.updated_at.as_str(), row.id.as_str()];
                clock_params.extend(statements::clock_params(table, key));
                let (values, clock_params) = (as_params(&values), as_params(&clock_params));
                let (written, clocked, committed) = tokio::join!(
                    client.execute(&write, &values),
                    client.execute(&set_clock, &clock_params),
                    client.batch_execute("COMMIT")
                );
                (written.and_then(|n| clocked.map(|_| n == 1)), committed)
            }
            Effect::Remove { version } => {
                let delete = statements::delete_row(table, Engine::Postgres, None);
                let delete = client.prepare_cached(&delete).await.map_err(db_error)?;
                let params = statements::delete_params(key, version);
                let params = as_params(&params);
                let (deleted, committed) =
                    tokio::join!(client.execute(&delete, &params), client.batch_execute("COMMIT"));
                (deleted.map(|n| n == 1), committed)
            }
            Effect::Nothing => (Ok(true), client.batch_execute("COMMIT").await),
        };
        // A failed statement turned the `COMMIT` into a rollback; either way the
        // transaction is over once it answered.
        committed.map_err(db_error)?;
        self.open = Open::Nothing;
        applied.map_err(db_error)
    }

    /// Writes (or removes) the row in one statement that withdraws the reservation and
    /// does nothing if the reservation was gone ([`reservations::guarded`]).
    async fn write_guarded(
        &mut self,
        table: &TableDef,
        key: &Key<'_>,
        effect: Effect<'_>,
        reservation: &Reservation,
    ) -> Result<bool, StorageError> {
        let client = self.client;
        let (sql, mut values) = match effect {
            Effect::Write { row, replaces } => {
                (row_write(table, replaces, reservations::GUARD), statements::row_params(table, key, row, replaces))
            }
            Effect::Remove { version } => (
                statements::delete_row(table, Engine::Postgres, reservations::GUARD),
                statements::delete_params(key, version).into_iter().map(|p| Value::String(p.to_owned())).collect(),
            ),
            Effect::Nothing => {
                reservation.withdraw(client).await?;
                self.open = Open::Nothing;
                return Ok(true);
            }
        };
        let statement = client.prepare_cached(&reservations::guarded(&sql, values.len())).await.map_err(db_error)?;
        values.push(Value::String(reservation.table.clone()));
        values.push(Value::String(reservation.updated_at.clone()));
        let values: Vec<PgValue<'_>> = values.iter().map(PgValue).collect();
        let written = client.execute(&statement, &as_params(&values)).await.map_err(db_error)?;
        // Withdrawn, written or not.
        self.open = Open::Nothing;
        Ok(written == 1)
    }
}

/// The row write of `effect`: an insert (`replaces` is `None`) or an update.
fn row_write(table: &TableDef, replaces: Option<&str>, guard: Option<&str>) -> String {
    match replaces {
        None => statements::insert_row(table, Engine::Postgres, guard),
        Some(_) => statements::update_row(table, Engine::Postgres, guard),
    }
}

/// The parameters of a statement.
fn as_params<T: ToSql + Sync>(values: &[T]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

impl WriteAttempt for PgWrite<'_> {
    async fn begin(&mut self, table: &TableDef, key: &Key<'_>) -> Result<Read, StorageError> {
        match table.owner_column {
            Some(_) => self.lock_and_read(table, key).await,
            None => self.reserve_and_read(table, key).await,
        }
    }

    async fn finish(&mut self, table: &TableDef, key: &Key<'_>, effect: Effect<'_>) -> Result<bool, StorageError> {
        match &self.open {
            Open::Transaction => self.write_and_commit(table, key, effect).await,
            Open::Reservation(reservation) => {
                let reservation = reservation.clone();
                self.write_guarded(table, key, effect, &reservation).await
            }
            Open::Nothing => Err(StorageError::Unavailable("a write attempt finished without beginning")),
        }
    }

    async fn abandon(&mut self) {
        match std::mem::take(&mut self.open) {
            Open::Nothing => {}
            Open::Transaction => {
                if let Err(e) = self.client.batch_execute("ROLLBACK").await {
                    tracing::warn!(error = %e, "rolling back a PostgreSQL write failed; closing its connection");
                    self.broken = true;
                }
            }
            Open::Reservation(reservation) => {
                if let Err(e) = reservation.withdraw(self.client).await {
                    tracing::warn!(error = %e, "withdrawing a reservation failed; closing its connection");
                    self.broken = true;
                    // Withdrawn from another connection when this is dropped.
                    self.open = Open::Reservation(reservation);
                }
            }
        }
    }
}

impl Drop for PgWrite<'_> {
    /// A reservation still held here belongs to a call that was cancelled midway (or
    /// could not withdraw it): withdraw it from another connection, so readers need not
    /// wait for it to expire. (Its own connection is closed with the call: see
    /// [`super::pool::Lease`].)
    fn drop(&mut self) {
        let Open::Reservation(reservation) = std::mem::take(&mut self.open) else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("a reservation is left to expire: no runtime to withdraw it from");
            return;
        };
        let pool = self.pool.clone();
        runtime.spawn(async move {
            let withdrawn = async {
                let mut lease = pool.get().await?;
                let result = reservation.withdraw(lease.client()?).await;
                lease.finish();
                result
            };
            if let Err(e) = withdrawn.await {
                tracing::warn!(error = %e, "a reservation is left to expire: withdrawing it failed");
            }
        });
    }
}
