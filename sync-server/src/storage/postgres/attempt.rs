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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use sync_core::ColumnType;
    use sync_core::query::QuerySpec;

    use super::*;
    use crate::stamp::SystemClock;
    use crate::storage::{Change, ListQuery, PostgresStorage, Row, Storage};

    /// A storage in a schema of its own of the test PostgreSQL, with a shared table `T`
    /// and an owned table `O`, and a plain connection to that schema; `None` (said on
    /// stderr) without `SYNC_TEST_POSTGRES_URL`.
    struct TestDb {
        storage: Arc<PostgresStorage>,
        raw: tokio_postgres::Client,
        base: String,
        schema: String,
        shared: Arc<TableDef>,
        owned: Arc<TableDef>,
    }

    impl TestDb {
        async fn new() -> Option<TestDb> {
            let Some(base) = std::env::var("SYNC_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty()) else {
                eprintln!("SKIPPED: SYNC_TEST_POSTGRES_URL is not set");
                return None;
            };
            // Named like the integration tests' schemas, which drop leftovers after an hour.
            let secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
            let schema = format!("sync_test_{secs}_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
            let (admin, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            admin.batch_execute(&format!("CREATE SCHEMA \"{schema}\"")).await.unwrap();
            let sep = if base.contains('?') { '&' } else { '?' };
            let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
            let storage = Arc::new(PostgresStorage::connect(&url, Arc::new(SystemClock)).await.unwrap());
            let shared = Arc::new(TableDef::new("T").column("text", ColumnType::String, true));
            let owned = Arc::new(TableDef::new("O").column("text", ColumnType::String, true).owner_column("owner"));
            storage.prepare(vec![shared.clone(), owned.clone()]).await.unwrap();
            let (raw, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            Some(TestDb { storage, raw, base, schema, shared, owned })
        }

        async fn insert(&self, table: &Arc<TableDef>, id: &str, owner: Option<&str>) -> Result<Row, StorageError> {
            let insert = Change::Insert { values: vec![Value::String("x".into())] };
            self.storage.write(table.clone(), id.into(), insert, owner.map(str::to_owned)).await
        }

        /// The ids a list of the shared table answers, in order.
        async fn listed(&self) -> Vec<String> {
            let page = self.storage.list(self.shared.clone(), ListQuery { spec: QuerySpec::default(), count: false });
            page.await.unwrap().rows.into_iter().map(|r| r.id).collect()
        }

        async fn reservations(&self) -> i64 {
            let sql = format!("SELECT count(*) FROM {}", reservations::INFLIGHT_TABLE);
            self.raw.query_one(&sql, &[]).await.unwrap().get(0)
        }

        async fn drop_schema(self) {
            self.storage.close().await;
            let (admin, connection) = tokio_postgres::connect(&self.base, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            admin.batch_execute(&format!("DROP SCHEMA \"{}\" CASCADE", self.schema)).await.unwrap();
        }
    }

    /// The row an attempt at inserting `id` with `updated_at` writes.
    fn new_row(id: &str, updated_at: &str) -> Row {
        Row {
            id: id.into(),
            values: vec![Value::String("late".into())],
            version: "v".into(),
            updated_at: updated_at.into(),
            created_at: updated_at.into(),
            deleted: false,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_in_flight_holds_readers_back_not_writers() {
        let Some(db) = TestDb::new().await else { return };
        db.insert(&db.shared, "before", None).await.unwrap();
        let mut lease = db.storage.pool.get().await.unwrap();
        let mut slow = PgWrite::new(lease.client().unwrap(), &db.storage.pool, &SystemClock);
        let key = Key { id: "slow", owner: None };
        let Read { stamp: Stamp::Reserved(at), current: None } = slow.begin(&db.shared, &key).await.unwrap() else {
            panic!("a shared table's attempt reserves its stamp")
        };

        // Other writers do not wait for it; readers see nothing from its stamp on.
        let after = tokio::time::timeout(Duration::from_secs(5), db.insert(&db.shared, "after", None));
        let after = after.await.expect("a write does not wait for one in flight").unwrap();
        assert!(after.updated_at >= at);
        assert_eq!(db.listed().await, ["before"]);

        // Its write goes through; then the reader sees both, in pair order.
        assert!(
            slow.finish(&db.shared, &key, Effect::Write { row: &new_row("slow", &at), replaces: None }).await.unwrap()
        );
        let mut listed = db.listed().await;
        listed.sort();
        assert_eq!(listed, ["after", "before", "slow"]);
        assert_eq!(db.reservations().await, 0);
        drop(slow);
        lease.finish();
        db.drop_schema().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stale_reservation_is_expired_by_readers_and_its_write_then_fails() {
        let Some(db) = TestDb::new().await else { return };
        let mut lease = db.storage.pool.get().await.unwrap();
        let mut stuck = PgWrite::new(lease.client().unwrap(), &db.storage.pool, &SystemClock);
        let key = Key { id: "stuck", owner: None };
        let Read { stamp: Stamp::Reserved(at), .. } = stuck.begin(&db.shared, &key).await.unwrap() else {
            panic!("a shared table's attempt reserves its stamp")
        };
        db.insert(&db.shared, "after", None).await.unwrap();
        assert!(db.listed().await.is_empty(), "held back by the reservation");

        // Made long ago: the next reader expires it before reading.
        let sql = format!("UPDATE {} SET \"reservedAt\" = now() - interval '1 minute'", reservations::INFLIGHT_TABLE);
        db.raw.execute(&sql, &[]).await.unwrap();
        assert_eq!(db.listed().await, ["after"]);
        assert_eq!(db.reservations().await, 0);

        // The write that held it finds it gone and writes nothing.
        let row = new_row("stuck", &at);
        assert!(!stuck.finish(&db.shared, &key, Effect::Write { row: &row, replaces: None }).await.unwrap());
        assert_eq!(db.storage.get(db.shared.clone(), "stuck".into(), None).await.unwrap(), None);
        // A whole write tries again with a new reservation.
        let written =
            write::run(&mut stuck, &db.shared, &key, Change::Insert { values: vec![Value::Null] }, &SystemClock);
        assert!(written.await.unwrap().updated_at > at);
        drop(stuck);
        lease.finish();
        db.drop_schema().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_write_gives_its_reservation_back() {
        let Some(db) = TestDb::new().await else { return };
        let mut lease = db.storage.pool.get().await.unwrap();
        let mut cancelled = PgWrite::new(lease.client().unwrap(), &db.storage.pool, &SystemClock);
        cancelled.begin(&db.shared, &Key { id: "gone", owner: None }).await.unwrap();
        db.insert(&db.shared, "after", None).await.unwrap();
        assert_eq!(db.reservations().await, 1);
        // Dropped midway (its request went away): withdrawn from another connection.
        drop(cancelled);
        drop(lease);
        for _ in 0..100 {
            if db.reservations().await == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(db.reservations().await, 0);
        assert_eq!(db.listed().await, ["after"]);
        db.drop_schema().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn owners_never_wait_for_each_other() {
        let Some(db) = TestDb::new().await else { return };
        let mut lease = db.storage.pool.get().await.unwrap();
        let mut alice = PgWrite::new(lease.client().unwrap(), &db.storage.pool, &SystemClock);
        let key = Key { id: "a1", owner: Some("alice") };
        // Alice's first write makes her clock row and holds it.
        let Read { stamp: Stamp::Locked(Some(_)), .. } = alice.begin(&db.owned, &key).await.unwrap() else {
            panic!("an owned table's attempt locks the owner's clock row")
        };

        let bob = tokio::time::timeout(Duration::from_secs(5), db.insert(&db.owned, "b1", Some("bob")));
        bob.await.expect("bob does not wait for alice").unwrap();
        let other = {
            let db_storage = Arc::clone(&db.storage);
            let owned = db.owned.clone();
            tokio::spawn(async move {
                let insert = Change::Insert { values: vec![Value::Null] };
                db_storage.write(owned, "a2".into(), insert, Some("alice".into())).await
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!other.is_finished(), "alice's writers queue");
        alice.abandon().await;
        let a2 = tokio::time::timeout(Duration::from_secs(5), other).await.unwrap().unwrap().unwrap();
        assert_eq!(a2.id, "a2");
        drop(alice);
        lease.finish();
        db.drop_schema().await;
    }
}
