//! PostgreSQL's write attempts ([`crate::storage::write::WriteAttempt`]): every write,
//! to a shared or an owned table, reserves its stamp ([`Stamp::Reserved`], see
//! [`super::reservations`]) from the storage's reserving task ([`super::stamps`]) while
//! it reads the row on its own connection (the two are independent: a row read before
//! or after the reservation is fine, as the write names the version it read), then
//! writes the row with one guarded statement. Two round trips, every statement its own
//! transaction, no lock held across a commit. A reservation the write lets go of
//! without writing goes back to the reserving task ([`Held`]), which withdraws it.

use deadpool_postgres::ClientWrapper;
use sync_core::Value;
use sync_core::sql::postgres::PgValue;
use tokio_postgres::types::ToSql;

use super::reservations;
use super::stamps::{Held, Stamps};
use super::{db_error, read_row};
use crate::storage::engine::Engine;
use crate::storage::statements;
use crate::storage::write::{Effect, Read, Stamp, WriteAttempt};
use crate::storage::{Key, StorageError};
use crate::table::TableDef;

/// The write attempts of one call, on one connection.
pub(super) struct PgWrite<'c> {
    client: &'c ClientWrapper,
    stamps: &'c Stamps,
    /// The reservation of the open attempt.
    open: Option<Held>,
}

impl<'c> PgWrite<'c> {
    pub(super) fn new(client: &'c ClientWrapper, stamps: &'c Stamps) -> PgWrite<'c> {
        PgWrite { client, stamps, open: None }
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
    /// Skips the read of an insert's first attempt: one statement less for most
    /// inserts (the guarded insert gives way to an existing row).
    async fn begin(&mut self, table: &TableDef, key: &Key<'_>, expect_absent: bool) -> Result<Read, StorageError> {
        let client = self.client;
        let reserve = self.stamps.reserve(&table.name, key.owner, key.id);
        let (held, rows) = match expect_absent {
            true => (reserve.await, None),
            false => {
                let select = statements::select_row(table, Engine::Postgres);
                let select = client.prepare_cached(&select).await.map_err(db_error)?;
                let key_params = key.params();
                let key_params = as_params(&key_params);
                let (held, rows) = tokio::join!(reserve, client.query(&select, &key_params));
                (held, Some(rows))
            }
        };
        let held = held?;
        let updated_at = held.reservation().updated_at().to_owned();
        self.open = Some(held);
        let current = match rows {
            Some(rows) => rows.map_err(db_error)?.first().map(|r| read_row(table, r)).transpose()?,
            None => None,
        };
        Ok(Read { stamp: Stamp::Reserved(updated_at), current })
    }

    /// Writes (or removes) the row in one statement that withdraws the reservation and
    /// does nothing if the reservation was gone ([`reservations::guarded`]).
    async fn finish(&mut self, table: &TableDef, key: &Key<'_>, effect: Effect<'_>) -> Result<bool, StorageError> {
        let Some(held) = self.open.take() else {
            return Err(StorageError::Unavailable("a write attempt finished without beginning"));
        };
        let (sql, values) = match effect {
            Effect::Write { row, replaces } => {
                (row_write(table, replaces, reservations::GUARD), statements::row_params(table, key, row, replaces))
            }
            Effect::Remove { version } => (
                statements::delete_row(table, Engine::Postgres, reservations::GUARD),
                statements::delete_params(key, version).into_iter().map(|p| Value::String(p.to_owned())).collect(),
            ),
            // Given back as it is dropped.
            Effect::Nothing => return Ok(true),
        };
        let statement =
            self.client.prepare_cached(&reservations::guarded(&sql, values.len())).await.map_err(db_error)?;
        let values: Vec<PgValue<'_>> = values.iter().map(PgValue).collect();
        let mut params = as_params(&values);
        params.extend(held.reservation().guard_params());
        // A failed statement rolled back: the reservation is still there, and goes back
        // as `held` is dropped.
        let written = self.client.execute(&statement, &params).await.map_err(db_error)?;
        // Withdrawn by the statement, written or not.
        held.release();
        Ok(written == 1)
    }

    async fn abandon(&mut self) {
        // Given back as it is dropped.
        self.open = None;
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
    use crate::storage::statements::{CLOCK_TABLE, OWNER_CLOCK_TABLE};
    use crate::storage::write;
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
        let mut slow = PgWrite::new(lease.client().unwrap(), &db.storage.stamps);
        let key = Key { id: "slow", owner: None };
        let Read { stamp: Stamp::Reserved(at), current: None } = slow.begin(&db.shared, &key, false).await.unwrap()
        else {
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
        let mut stuck = PgWrite::new(lease.client().unwrap(), &db.storage.stamps);
        let key = Key { id: "stuck", owner: None };
        let Read { stamp: Stamp::Reserved(at), .. } = stuck.begin(&db.shared, &key, false).await.unwrap() else {
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

    /// Waits (up to 2 s) for every reservation to be withdrawn.
    async fn until_no_reservations(db: &TestDb) {
        for _ in 0..100 {
            if db.reservations().await == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(db.reservations().await, 0, "every reservation was given back");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_write_gives_its_reservation_back() {
        let Some(db) = TestDb::new().await else { return };
        let mut lease = db.storage.pool.get().await.unwrap();
        let mut cancelled = PgWrite::new(lease.client().unwrap(), &db.storage.stamps);
        cancelled.begin(&db.shared, &Key { id: "gone", owner: None }, true).await.unwrap();
        db.insert(&db.shared, "after", None).await.unwrap();
        assert_eq!(db.reservations().await, 1);
        // Dropped midway (its request went away).
        drop(cancelled);
        drop(lease);
        until_no_reservations(&db).await;
        assert_eq!(db.listed().await, ["after"]);

        // Calls cancelled anywhere, before or after their reservation came back.
        for n in 0..40u64 {
            let id = format!("c{n:02}");
            let _ = tokio::time::timeout(Duration::from_micros(n * 50), db.insert(&db.shared, &id, None)).await;
        }
        until_no_reservations(&db).await;
        db.insert(&db.shared, "last", None).await.unwrap();
        let listed = db.listed().await;
        assert!(listed.contains(&"last".to_owned()), "{listed:?}");
        let stored: i64 = db.raw.query_one("SELECT count(*) FROM \"T\"", &[]).await.unwrap().get(0);
        assert_eq!(listed.len() as i64, stored, "every row written is listed");
        db.drop_schema().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn owners_stamp_on_clock_rows_of_their_own_and_wait_for_nobody() {
        let Some(db) = TestDb::new().await else { return };
        // The table's clock row, from before owners had their own: where new owners start.
        let sql = format!("UPDATE {} SET \"updatedAt\" = '2020-01-01T00:00:00.000Z', \"id\" = 'zzz'", CLOCK_TABLE);
        db.raw.execute(&sql, &[]).await.unwrap();
        let mut lease = db.storage.pool.get().await.unwrap();
        let mut alice = PgWrite::new(lease.client().unwrap(), &db.storage.stamps);
        let key = Key { id: "a1", owner: Some("alice") };
        let Read { stamp: Stamp::Reserved(at), .. } = alice.begin(&db.owned, &key, true).await.unwrap() else {
            panic!("an owned table's attempt reserves its stamp")
        };
        assert!(at.as_str() > "2020-01-01T00:00:00.000Z");

        // Writers of any owner, alice's too, go ahead while alice's write is in flight.
        for (id, owner) in [("b1", "bob"), ("a2", "alice"), ("b2", "bob")] {
            let write = tokio::time::timeout(Duration::from_secs(5), db.insert(&db.owned, id, Some(owner)));
            write.await.expect("no writer waits for one in flight").unwrap();
        }
        alice.abandon().await;
        let clocks: Vec<(String, String)> = db
            .raw
            .query(&format!("SELECT \"owner\", \"id\" FROM {OWNER_CLOCK_TABLE} ORDER BY 1"), &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(clocks, [("alice".into(), "a2".into()), ("bob".into(), "b2".into())]);
        until_no_reservations(&db).await;
        drop(alice);
        lease.finish();
        db.drop_schema().await;
    }
}
