//! PostgreSQL storage: natively async (`tokio-postgres`), a pool of connections
//! ([`pool`]), safe for several server processes on one database.
//!
//! # Layout
//!
//! The tables live in the connection's current schema (the first existing schema of
//! `search_path`; pick one with `?options=-csearch_path%3Dmyschema` in the URL). One
//! table per served table: `"id" TEXT COLLATE "C"`, the data columns (see
//! [`sync_core::sql::postgres`] for their types: text, timestamps and JSON as `TEXT COLLATE "C"`,
//! exactly as SQLite stores them, so both backends compare and sort alike), then
//! `"version"`, `"updatedAt"`, `"createdAt"` (fixed-width UTC text) and `"deleted"
//! BOOLEAN`; primary key `id`, or `(owner, id)` for an owned table; an index on
//! `("updatedAt", "id")` (and `(owner, "updatedAt", "id")`) for incremental readers.
//! `__sync_server_clock` holds one row per shared table and `__sync_server_owner_clock`
//! one per owner of an owned table: the last `(updatedAt, id)` assigned
//! ([`super::statements`]); `__sync_server_inflight` (unlogged) the pairs reserved by
//! writes in flight ([`reservations`]). [`Storage::prepare`] creates all of it
//! idempotently, inside a transaction holding a `pg_advisory_xact_lock`, so that several
//! instances may start at once. PostgreSQL 12 or later (readers of a shared table rely
//! on it folding a `WITH` query into the query that uses it).
//!
//! # Incremental readers under concurrent writers
//!
//! A reader pages by `(updatedAt, id)` and resumes after the last pair it saw
//! ([`crate::stamp`]); it misses a row if that row becomes visible *after* a row with a
//! greater pair. With concurrent transactions, assigning a pair at write time is not
//! enough: transactions commit in any order.
//!
//! Writes go through the write path shared with SQLite ([`super::write`]) with this
//! backend's attempts ([`attempt`]): each write *reserves* its pair on the clock row of
//! the rows its readers see (the table's, or for an owned table the owner's) in a short
//! statement of its own, then reads and writes its row; readers see only the rows before
//! the oldest reservation still in flight. Writers wait for no other write's
//! transaction (only, for one statement, for a write of the same row), so writers of
//! different owners, and of different rows of a shared table, run in parallel; reads
//! never wait. [`reservations`] describes it and shows why no reader can skip a row;
//! [`stamps`] is the task that makes the reservations of one instance, together.
//!
//! It holds across any number of instances on one database: the clock rows, the
//! reservations and the rows are PostgreSQL's; no process trusts a lock of its own. A
//! storage holds one connection beyond its pool, the reserving task's.
//!
//! Rows written by other programs bypass the clocks and void this guarantee. All
//! instances on one database must run this version (an older one would write without
//! reserving). Not behind a transaction-pooling proxy (the pool keeps prepared
//! statements per connection).

mod attempt;
mod pool;
mod relay;
mod reservations;
mod stamps;

use std::str::FromStr;
use std::sync::Arc;

use deadpool_postgres::ClientWrapper;
use sync_core::{ColumnType, Value, datetime};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{IsolationLevel, Transaction};

use self::attempt::PgWrite;
use self::pool::Pool;
use self::stamps::Stamps;
use super::engine::Engine;
use super::schema::{self, StoredTable};
use super::statements;
use super::write;
use super::{BoxFuture, Change, HeardFn, Key, ListQuery, Page, Relay, Row, Storage, StorageError, StorageFuture};
use crate::stamp::Clock;
use crate::table::{StorageSchema, TableDef};
use sync_core::sql::SqlQuery;
use sync_core::sql::postgres::{self as pg_sql, PgArg, Postgres, bind};

/// The `pg_advisory_xact_lock` key that serializes [`Storage::prepare`] across processes
/// ("syncserv" in ASCII).
const PREPARE_LOCK: i64 = 0x7379_6e63_7365_7276;
/// Longest identifier PostgreSQL keeps (longer ones are silently truncated).
const MAX_IDENTIFIER: usize = 63;

/// Storage in a PostgreSQL database (version 11 or later).
#[derive(Debug)]
pub struct PostgresStorage {
    pool: Pool,
    /// The reserving task of the storage's writes (which has the clock).
    stamps: Stamps,
    clock: Arc<dyn Clock>,
    /// How to connect, for the change feed's relay.
    config: tokio_postgres::Config,
}

impl PostgresStorage {
    /// Connects to `url` (`postgres://user:password@host:port/dbname?...`, libpq's
    /// format) with at most 16 connections. One connection is opened at once, so a
    /// wrong URL fails here. TLS is not supported: use a local or private network (or
    /// a TLS-terminating proxy).
    pub async fn connect(url: &str, clock: Arc<dyn Clock>) -> Result<PostgresStorage, StorageError> {
        PostgresStorage::connect_with(url, clock, pool::DEFAULT_MAX_CONNECTIONS).await
    }

    /// [`PostgresStorage::connect`] with another connection limit (at least 1).
    pub async fn connect_with(
        url: &str,
        clock: Arc<dyn Clock>,
        max_connections: usize,
    ) -> Result<PostgresStorage, StorageError> {
        let config = tokio_postgres::Config::from_str(url).map_err(|e| StorageError::Database(Box::new(e)))?;
        let config = pool::with_defaults(config);
        let pool = Pool::new(config.clone(), max_connections, pool::ACQUIRE_TIMEOUT)?;
        pool.get().await?.finish();
        Ok(PostgresStorage { pool, stamps: Stamps::start(config.clone(), Arc::clone(&clock)), clock, config })
    }
}

/// A database failure: the ones a retry can fix (a lock wait timed out, a deadlock, a
/// server going down or full, a lost connection) are [`StorageError::Unavailable`]
/// (503, which clients retry); the rest [`StorageError::Database`].
pub(super) fn db_error(e: tokio_postgres::Error) -> StorageError {
    let transient = [
        SqlState::LOCK_NOT_AVAILABLE,
        SqlState::T_R_SERIALIZATION_FAILURE,
        SqlState::T_R_DEADLOCK_DETECTED,
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::TOO_MANY_CONNECTIONS,
        SqlState::QUERY_CANCELED,
        SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
    ];
    if e.is_closed() || e.code().is_some_and(|code| transient.contains(code)) {
        tracing::warn!(error = %e, "PostgreSQL is unavailable");
        return StorageError::Unavailable("PostgreSQL is unavailable; retry");
    }
    StorageError::Database(Box::new(e))
}

/// An error while running a client's query: PostgreSQL refusing the data or the size of
/// the query (SQLSTATE classes 22 and 54) is the client's problem, anything else not.
/// The client gets our stable message; PostgreSQL's own text goes to the log.
fn query_error(e: tokio_postgres::Error) -> StorageError {
    match e.code().map(SqlState::code) {
        Some(code) if code.starts_with("22") || code.starts_with("54") => {
            tracing::warn!(error = %e, "PostgreSQL refused a client's query");
            StorageError::InvalidQuery(super::QUERY_REFUSED.to_owned())
        }
        _ => db_error(e),
    }
}

/// PostgreSQL text cannot hold NUL: such an id, owner or value is the caller's mistake
/// (the HTTP layer refuses it first), never a database error.
fn refuse_nul<'v>(texts: impl IntoIterator<Item = &'v str>) -> Result<(), StorageError> {
    match texts.into_iter().any(|t| t.contains('\0')) {
        true => Err(StorageError::InvalidQuery(super::NUL_REFUSED.to_owned())),
        false => Ok(()),
    }
}

/// The text values of a change, for [`refuse_nul`].
fn change_texts(change: &Change) -> Vec<&str> {
    let values: Vec<&Value> = match change {
        Change::Insert { values } => values.iter().collect(),
        Change::Update(update) => update.values.iter().map(|(_, v)| v).collect(),
        Change::Delete { .. } | Change::Undelete { .. } => Vec::new(),
    };
    values.into_iter().filter_map(|v| if let Value::String(s) = v { Some(s.as_str()) } else { None }).collect()
}

/// A connection could not be opened.
fn connect_error(e: tokio_postgres::Error) -> StorageError {
    tracing::warn!(error = %e, "cannot connect to PostgreSQL");
    StorageError::Database(Box::new(e))
}

// ---- values -----------------------------------------------------------------------

/// Reads a row: `id`, the data columns, `version`, `updatedAt`, `createdAt`, `deleted`
/// (the order of [`TableDef::stored_columns`]).
fn read_row(table: &TableDef, r: &tokio_postgres::Row) -> Result<Row, StorageError> {
    let n = table.columns.len();
    let mut values = Vec::with_capacity(n);
    for (i, col) in table.columns.iter().enumerate() {
        values.push(decode(col.ty, r, i + 1).map_err(db_error)?);
    }
    let get_text = |i: usize| r.try_get::<_, String>(i).map_err(db_error);
    Ok(Row {
        id: get_text(0)?,
        values,
        version: get_text(n + 1)?,
        updated_at: get_text(n + 2)?,
        created_at: get_text(n + 3)?,
        deleted: r.try_get::<_, bool>(n + 4).map_err(db_error)?,
    })
}

fn decode(ty: ColumnType, r: &tokio_postgres::Row, i: usize) -> Result<Value, tokio_postgres::Error> {
    Ok(match ty {
        ColumnType::String => r.try_get::<_, Option<String>>(i)?.map_or(Value::Null, Value::String),
        ColumnType::Bool => r.try_get::<_, Option<bool>>(i)?.map_or(Value::Null, Value::Bool),
        ColumnType::Int => r.try_get::<_, Option<i64>>(i)?.map_or(Value::Null, Value::Int),
        ColumnType::Float => r.try_get::<_, Option<f64>>(i)?.map_or(Value::Null, Value::Float),
        ColumnType::Bytes => r.try_get::<_, Option<Vec<u8>>>(i)?.map_or(Value::Null, Value::Bytes),
        // A value that does not parse (written by someone else) is passed through as text.
        ColumnType::DateTime => match r.try_get::<_, Option<String>>(i)? {
            None => Value::Null,
            Some(s) => datetime::parse(&s).map_or(Value::String(s), Value::DateTime),
        },
        ColumnType::Json => match r.try_get::<_, Option<String>>(i)? {
            None => Value::Null,
            Some(s) => serde_json::from_str(&s).map_or(Value::String(s), Value::Json),
        },
    })
}

/// The parameters of a key condition ([`Key::params`]), for a statement.
fn key_params<'k>(params: &'k [&'k str]) -> Vec<&'k (dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

// ---- reads ------------------------------------------------------------------------

async fn get(client: &ClientWrapper, table: &TableDef, key: &Key<'_>) -> Result<Option<Row>, StorageError> {
    let statement = client.prepare_cached(&statements::select_row(table, Engine::Postgres)).await.map_err(db_error)?;
    let rows = client.query(&statement, &key_params(&key.params())).await.map_err(db_error)?;
    rows.first().map(|r| read_row(table, r)).transpose()
}

fn typed<'b>(bound: &'b [(PgArg<'_>, Type)]) -> Vec<(&'b (dyn ToSql + Sync), Type)> {
    bound.iter().map(|(v, t)| (v as &(dyn ToSql + Sync), t.clone())).collect()
}

/// The SQL of `query` on `table`, reading only the rows before the table's oldest
/// reservation ([`reservations::visible_rows`]; the table's name is one more
/// parameter).
fn narrowed<'a>(table: &'a TableDef, query: &SqlQuery, params: &mut Vec<(&'a (dyn ToSql + Sync), Type)>) -> String {
    params.push((&table.name, Type::TEXT));
    format!("{}{}", reservations::visible_rows(table, params.len()), query.sql)
}

/// The rows of a list query (and their count), through
/// [`reservations::visible_rows`], after expiring the table's stale reservations.
async fn list(
    client: &mut ClientWrapper,
    table: &TableDef,
    select: &SqlQuery,
    count: Option<&SqlQuery>,
) -> Result<Page, StorageError> {
    let name: [&(dyn ToSql + Sync); 1] = [&table.name];
    let select_bound = bind(select);
    let mut select_params = typed(&select_bound);
    let select_sql = narrowed(table, select, &mut select_params);
    let expire = client.prepare_cached(&reservations::expire()).await.map_err(db_error)?;
    let expired = |result: Result<u64, tokio_postgres::Error>| {
        if let Err(e) = result {
            tracing::warn!(error = %e, "expiring stale reservations failed");
        }
    };
    let rows = match count {
        None => {
            // Sent together: the expiry commits before the query takes its snapshot.
            let (expiry, rows) =
                tokio::join!(client.execute(&expire, &name), client.query_typed(&select_sql, &select_params));
            expired(expiry);
            rows.map_err(query_error)?
        }
        Some(count) => {
            expired(client.execute(&expire, &name).await);
            // One snapshot for the page and the count.
            let tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(db_error)?;
            let count_bound = bind(count);
            let mut count_params = typed(&count_bound);
            let count_sql = narrowed(table, count, &mut count_params);
            let (rows, total) = tokio::try_join!(
                tx.query_typed(&select_sql, &select_params),
                tx.query_typed(&count_sql, &count_params)
            )
            .map_err(query_error)?;
            tx.commit().await.map_err(db_error)?;
            let n: i64 = total.first().map(|r| r.try_get(0)).transpose().map_err(db_error)?.unwrap_or(0);
            let rows = rows.iter().map(|r| read_row(table, r)).collect::<Result<Vec<_>, _>>()?;
            return Ok(Page { rows, count: Some(u64::try_from(n).unwrap_or(0)) });
        }
    };
    let rows = rows.iter().map(|r| read_row(table, r)).collect::<Result<Vec<_>, _>>()?;
    Ok(Page { rows, count: None })
}

// ---- schema -----------------------------------------------------------------------

async fn prepare(client: &mut ClientWrapper, tables: &[Arc<TableDef>]) -> Result<(), StorageError> {
    for table in tables {
        let names = std::iter::once(&table.name).chain(table.columns.iter().map(|c| &c.name));
        if let Some(long) = names.chain(&table.owner_column).find(|n| n.len() > MAX_IDENTIFIER) {
            return Err(StorageError::Schema {
                table: table.name.clone(),
                message: format!("`{long}` is longer than PostgreSQL's {MAX_IDENTIFIER}-byte identifiers"),
            });
        }
    }
    let tx = client.transaction().await.map_err(db_error)?;
    // Several instances may start at once: one prepares at a time.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PREPARE_LOCK]).await.map_err(db_error)?;
    let schema: Option<String> = tx.query_one("SELECT current_schema()", &[]).await.map_err(db_error)?.get(0);
    if schema.is_none() {
        return Err(StorageError::Setup(
            "no schema to create the tables in: the search_path names no existing schema".into(),
        ));
    }
    for clock_table in schema::clock_tables(Engine::Postgres) {
        tx.batch_execute(&clock_table).await.map_err(db_error)?;
    }
    tx.batch_execute(&reservations::inflight_table()).await.map_err(db_error)?;
    let icu: bool = tx
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu')", &[])
        .await
        .map_err(db_error)?
        .get(0);
    if !icu {
        tracing::warn!("PostgreSQL has no ICU collation: tolower/toupper use the database's case mapping");
    }
    tx.batch_execute(&pg_sql::function_ddl(icu)).await.map_err(db_error)?;
    for table in tables {
        prepare_table(&tx, table).await?;
    }
    tx.commit().await.map_err(db_error)
}

/// Creates the table, or checks an existing one and adds missing data columns; seeds
/// its clock row.
async fn prepare_table(tx: &Transaction<'_>, table: &TableDef) -> Result<(), StorageError> {
    let stored = stored_table(tx, table).await?;
    for sql in schema::table_statements(table, stored.as_ref(), Engine::Postgres)? {
        tx.batch_execute(&sql).await.map_err(db_error)?;
    }
    tx.execute(&statements::seed_clock(table, Engine::Postgres), &[&table.name]).await.map_err(db_error)?;
    Ok(())
}

/// The table as stored in the current schema (`None` when there is none).
async fn stored_table(tx: &Transaction<'_>, table: &TableDef) -> Result<Option<StoredTable>, StorageError> {
    let columns: Vec<(String, String)> = tx
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1",
            &[&table.name],
        )
        .await
        .map_err(db_error)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    if columns.is_empty() {
        return Ok(None);
    }
    let key: Vec<String> = tx
        .query(
            "SELECT a.attname::text FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indisprimary AND n.nspname = current_schema() AND c.relname = $1 \
             ORDER BY array_position(i.indkey::int2[], a.attnum)",
            &[&table.name],
        )
        .await
        .map_err(db_error)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(Some(StoredTable { columns, key }))
}

// ---- the trait --------------------------------------------------------------------

impl Storage for PostgresStorage {
    fn prepare(&self, tables: Vec<Arc<TableDef>>) -> StorageFuture<'_, ()> {
        Box::pin(async move {
            let mut lease = self.pool.get().await?;
            let result = prepare(lease.client()?, &tables).await;
            lease.finish();
            result
        })
    }

    fn list(&self, table: Arc<TableDef>, query: ListQuery) -> StorageFuture<'_, Page> {
        Box::pin(async move {
            let cols = table.stored_columns();
            let schema = StorageSchema(&table);
            let select = sync_core::sql::select(&Postgres, &table.name, &cols, &query.spec, &schema)
                .map_err(|e| StorageError::InvalidQuery(e.0))?;
            let count = match query.count {
                true => Some(
                    sync_core::sql::count(&Postgres, &table.name, &query.spec, &schema)
                        .map_err(|e| StorageError::InvalidQuery(e.0))?,
                ),
                false => None,
            };
            let mut lease = self.pool.get().await?;
            let result = list(lease.client()?, &table, &select, count.as_ref()).await;
            lease.finish();
            result
        })
    }

    fn get(&self, table: Arc<TableDef>, id: String, owner: Option<String>) -> StorageFuture<'_, Option<Row>> {
        Box::pin(async move {
            let key = Key::new(&table, &id, owner.as_deref())?;
            refuse_nul(key.params())?;
            let mut lease = self.pool.get().await?;
            let result = get(lease.client()?, &table, &key).await;
            lease.finish();
            result
        })
    }

    fn write(&self, table: Arc<TableDef>, id: String, change: Change, owner: Option<String>) -> StorageFuture<'_, Row> {
        Box::pin(async move {
            let key = Key::new(&table, &id, owner.as_deref())?;
            refuse_nul(key.params().into_iter().chain(change_texts(&change)))?;
            let mut lease = self.pool.get().await?;
            let mut writer = PgWrite::new(lease.client()?, &self.stamps);
            let result = write::run(&mut writer, &table, &key, change, &*self.clock).await;
            drop(writer);
            lease.finish();
            result
        })
    }

    fn health(&self) -> StorageFuture<'_, ()> {
        Box::pin(async move {
            let mut lease = self.pool.get().await?;
            let result = lease.client()?.simple_query("SELECT 1").await.map(drop).map_err(db_error);
            lease.finish();
            result
        })
    }

    fn pool_use(&self) -> Option<super::PoolUse> {
        Some(self.pool.usage())
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.stamps.close();
            self.pool.close();
        })
    }

    /// Relays through `LISTEN`/`NOTIFY` on a connection of its own, on the channel
    /// `sync_feed_<schema>`; reconnects with backoff, and after each (re)connect tells
    /// the server that anything may have changed ([`super::Heard::Anything`]).
    fn relay(&self, heard: HeardFn) -> Option<Box<dyn Relay>> {
        Some(Box::new(relay::PgRelay::start(self.config.clone(), heard)))
    }
}
