//! PostgreSQL storage: natively async (`tokio-postgres`), a small pool of connections,
//! safe for several server processes on one database.
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
//! `__sync_server_clock` holds one row per table: the last `(updatedAt, id)` assigned.
//! [`Storage::prepare`] creates all of it idempotently, inside a transaction holding a
//! `pg_advisory_xact_lock`, so that several instances may start at once.
//!
//! # Incremental readers under concurrent writers
//!
//! A reader pages by `(updatedAt, id)` and resumes after the last pair it saw
//! ([`crate::stamp`]); it misses a row if that row becomes visible *after* a row with a
//! greater pair. With concurrent transactions, assigning a pair at write time is not
//! enough: transactions commit in any order.
//!
//! The mechanism: **writers of one table are serialized on the table's clock row.**
//! Every write transaction starts with `SELECT .. FROM __sync_server_clock WHERE tbl = $1
//! FOR UPDATE`, then reads the row, checks, assigns the next pair by the rule of
//! [`crate::stamp`], writes the row and the clock row, and commits. The row lock is held
//! until the transaction ends, so pairs are assigned and committed in the same order,
//! one transaction at a time; and PostgreSQL releases a transaction's locks only after
//! its commit is visible to new snapshots, so the next writer (which waits on that lock)
//! commits strictly later. Hence any snapshot that sees a pair sees every smaller pair of
//! the table, whichever instance wrote it. Writes to different tables do not wait for
//! each other; reads never wait. The cost is one write transaction per table at a time
//! (four round trips: `BEGIN`, lock + read, write + clock, `COMMIT`; statements that do
//! not depend on each other are pipelined).
//!
//! Rows written by other programs bypass the clock and void this guarantee.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sync_core::{ColumnType, Value, datetime};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, IsolationLevel, NoTls, Statement, Transaction};

use super::{
    BoxFuture, ListQuery, Page, Placeholders, Row, Storage, StorageError, Update, columns_to_add, insert_sql, scope,
    update_sql,
};
use crate::stamp::{self, Clock};
use crate::table::{StorageSchema, TableDef};
use sync_core::sql::postgres::{self as pg_sql, PgArg, PgValue, Postgres, bind};
use sync_core::sql::{SqlQuery, quote_ident};

/// The table holding the last `(updatedAt, id)` assigned per table.
const CLOCK_TABLE: &str = "__sync_server_clock";
/// Connections a storage opens at most, by default.
const DEFAULT_MAX_CONNECTIONS: usize = 16;
/// How long a request waits for a free connection before it gets 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Session settings of every connection: a write that waits this long for the table's
/// clock lock gives up (503, and the client retries) instead of piling up; a session
/// left idle inside a transaction (a stuck instance) is ended and its locks released.
const SESSION_SETTINGS: &str = "SET lock_timeout = '10s'; SET idle_in_transaction_session_timeout = '60s'";
/// The `pg_advisory_xact_lock` key that serializes [`Storage::prepare`] across processes
/// ("syncserv" in ASCII).
const PREPARE_LOCK: i64 = 0x7379_6e63_7365_7276;
/// Longest identifier PostgreSQL keeps (longer ones are silently truncated).
const MAX_IDENTIFIER: usize = 63;

/// Storage in a PostgreSQL database (version 11 or later).
#[derive(Debug)]
pub struct PostgresStorage {
    pool: Pool,
    clock: Arc<dyn Clock>,
}

impl PostgresStorage {
    /// Connects to `url` (`postgres://user:password@host:port/dbname?...`, libpq's
    /// format) with at most 16 connections. One connection is opened at once, so a
    /// wrong URL fails here. TLS is not supported: use a local or private network (or
    /// a TLS-terminating proxy).
    pub async fn connect(url: &str, clock: Arc<dyn Clock>) -> Result<PostgresStorage, StorageError> {
        PostgresStorage::connect_with(url, clock, DEFAULT_MAX_CONNECTIONS).await
    }

    /// [`PostgresStorage::connect`] with another connection limit (at least 1).
    pub async fn connect_with(
        url: &str,
        clock: Arc<dyn Clock>,
        max_connections: usize,
    ) -> Result<PostgresStorage, StorageError> {
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| StorageError::Database(Box::new(e)))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("sync-server");
        }
        let pool = Pool {
            config,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(max_connections.max(1)),
            closed: AtomicBool::new(false),
        };
        let lease = pool.get().await?;
        lease.finish();
        Ok(PostgresStorage { pool, clock })
    }
}

// ---- connections ------------------------------------------------------------------

/// A connection and its prepared statements (by SQL text).
struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
}

#[derive(Debug)]
struct Pool {
    config: tokio_postgres::Config,
    idle: Mutex<Vec<Conn>>,
    permits: Semaphore,
    closed: AtomicBool,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("statements", &self.statements.len()).finish_non_exhaustive()
    }
}

/// A connection taken from the pool. It goes back by [`Lease::finish`] only: a lease
/// dropped midway (its request was cancelled while a statement ran) closes its
/// connection, and PostgreSQL rolls back whatever it had open.
struct Lease<'p> {
    conn: Option<Conn>,
    pool: &'p Pool,
    _permit: SemaphorePermit<'p>,
}

impl Lease<'_> {
    fn conn(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("a lease holds its connection until finished")
    }

    /// Returns the connection to the pool, unless it is broken or the pool closed.
    fn finish(mut self) {
        if let Some(conn) = self.conn.take() {
            if !conn.client.is_closed() && !self.pool.closed.load(Ordering::Acquire) {
                if let Ok(mut idle) = self.pool.idle.lock() {
                    idle.push(conn);
                }
            }
        }
    }
}

impl Pool {
    async fn get(&self) -> Result<Lease<'_>, StorageError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StorageError::Unavailable("the storage is closed"));
        }
        let permit = match tokio::time::timeout(ACQUIRE_TIMEOUT, self.permits.acquire()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(StorageError::Unavailable("the storage is closed")),
            Err(_) => return Err(StorageError::Unavailable("every PostgreSQL connection stayed busy")),
        };
        loop {
            let conn = self.idle.lock().ok().and_then(|mut idle| idle.pop());
            match conn {
                Some(conn) if conn.client.is_closed() => continue,
                Some(conn) => return Ok(Lease { conn: Some(conn), pool: self, _permit: permit }),
                None => break,
            }
        }
        let (client, connection) = self.config.connect(NoTls).await.map_err(connect_error)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "PostgreSQL connection ended with an error");
            }
        });
        client.batch_execute(SESSION_SETTINGS).await.map_err(db_error)?;
        Ok(Lease { conn: Some(Conn { client, statements: HashMap::new() }), pool: self, _permit: permit })
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.permits.close();
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }
}

/// A statement prepared once per connection.
async fn prepared(
    cache: &mut HashMap<String, Statement>,
    tx: &Transaction<'_>,
    sql: &str,
) -> Result<Statement, StorageError> {
    if let Some(statement) = cache.get(sql) {
        return Ok(statement.clone());
    }
    let statement = tx.prepare(sql).await.map_err(db_error)?;
    if cache.len() >= 256 {
        cache.clear();
    }
    cache.insert(sql.to_owned(), statement.clone());
    Ok(statement)
}

fn connect_error(e: tokio_postgres::Error) -> StorageError {
    tracing::warn!(error = %e, "cannot connect to PostgreSQL");
    StorageError::Database(Box::new(e))
}

/// A database failure: the ones a retry can fix (a lock wait timed out, a deadlock, a
/// server going down or full, a lost connection) are [`StorageError::Unavailable`]
/// (503, which clients retry); the rest [`StorageError::Database`].
fn db_error(e: tokio_postgres::Error) -> StorageError {
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
fn query_error(e: tokio_postgres::Error) -> StorageError {
    match e.code().map(SqlState::code) {
        Some(code) if code.starts_with("22") || code.starts_with("54") => {
            let message = e.as_db_error().map_or_else(|| e.to_string(), |db| db.message().to_owned());
            StorageError::InvalidQuery(format!("the database refused the query: {message}"))
        }
        _ => db_error(e),
    }
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

/// The value stored in a column of type `ty` (a float column takes an integer).
fn column_value(ty: ColumnType, value: &Value) -> Value {
    match (ty, value) {
        (ColumnType::Float, Value::Int(i)) => Value::Float(*i as f64),
        _ => value.clone(),
    }
}

// ---- SQL of one table -------------------------------------------------------------

/// `WHERE "id" = $1`, and `AND "<owner>" = $2` for an owned table.
fn key_condition(table: &TableDef) -> String {
    match &table.owner_column {
        Some(owner) => format!("WHERE \"id\" = $1 AND {} = $2", quote_ident(owner)),
        None => "WHERE \"id\" = $1".to_owned(),
    }
}

fn select_sql(table: &TableDef) -> String {
    let cols: Vec<String> = table.stored_columns().iter().map(|c| quote_ident(c)).collect();
    format!("SELECT {} FROM {} {}", cols.join(", "), quote_ident(&table.name), key_condition(table))
}

fn clock_lock_sql() -> String {
    format!("SELECT \"updatedAt\", \"id\" FROM {} WHERE \"tbl\" = $1 FOR UPDATE", quote_ident(CLOCK_TABLE))
}

fn clock_update_sql() -> String {
    format!("UPDATE {} SET \"updatedAt\" = $2, \"id\" = $3 WHERE \"tbl\" = $1", quote_ident(CLOCK_TABLE))
}

/// Seeds a table's clock row from its newest row (`''` when empty); keeps an existing one.
fn clock_seed_sql(table: &TableDef) -> String {
    format!(
        "INSERT INTO {clock} (\"tbl\", \"updatedAt\", \"id\") \
         SELECT $1, COALESCE(m.\"updatedAt\", ''), COALESCE(m.\"id\", '') FROM (SELECT 1) AS one \
         LEFT JOIN (SELECT \"updatedAt\", \"id\" FROM {name} ORDER BY \"updatedAt\" DESC, \"id\" DESC LIMIT 1) AS m \
         ON TRUE ON CONFLICT (\"tbl\") DO NOTHING",
        clock = quote_ident(CLOCK_TABLE),
        name = quote_ident(&table.name)
    )
}

/// A short, unique, valid index name for `table` (PostgreSQL truncates at 63 bytes).
fn index_name(table: &str, what: &str) -> String {
    // FNV-1a: stable across builds and platforms.
    let hash = table.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    let prefix: String = table.chars().take(24).collect();
    format!("__sync_server_{prefix}_{hash:08x}_{what}")
}

/// The key of one row: its id and, for an owned table, its owner.
struct Key<'k> {
    id: &'k str,
    owner: Option<&'k str>,
}

impl Key<'_> {
    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&self.id];
        if let Some(owner) = &self.owner {
            params.push(owner);
        }
        params
    }
}

// ---- writes -----------------------------------------------------------------------

/// The last pair of the table, locked until the transaction ends (see the module docs).
fn parse_last(table: &str, rows: &[tokio_postgres::Row]) -> Result<Option<(i64, String)>, StorageError> {
    let Some(row) = rows.first() else {
        return Err(StorageError::Schema {
            table: table.to_owned(),
            message: format!("the table has no row in {CLOCK_TABLE}"),
        });
    };
    let (t, id): (String, String) = (row.try_get(0).map_err(db_error)?, row.try_get(1).map_err(db_error)?);
    if t.is_empty() {
        return Ok(None);
    }
    let ms = datetime::parse(&t).map(stamp::unix_ms).ok_or_else(|| StorageError::Schema {
        table: table.to_owned(),
        message: format!("{CLOCK_TABLE} holds an unreadable timestamp `{t}`"),
    })?;
    Ok(Some((ms, id)))
}

/// A write transaction of one table: the clock row locked, the row (by key) read.
struct Write<'c> {
    tx: Transaction<'c>,
    statements: &'c mut HashMap<String, Statement>,
    last: Option<(i64, String)>,
    row: Option<Row>,
}

impl<'c> Write<'c> {
    async fn begin(conn: &'c mut Conn, table: &TableDef, key: &Key<'_>) -> Result<Write<'c>, StorageError> {
        let Conn { client, statements } = conn;
        let tx = client.transaction().await.map_err(db_error)?;
        let lock = prepared(statements, &tx, &clock_lock_sql()).await?;
        let select = prepared(statements, &tx, &select_sql(table)).await?;
        // Pipelined; PostgreSQL runs them in order, so the read sees every write that
        // committed before the lock was granted.
        let (lock_params, key_params): ([&(dyn ToSql + Sync); 1], _) = ([&table.name], key.params());
        let (clock, rows) =
            tokio::try_join!(tx.query(&lock, &lock_params), tx.query(&select, &key_params)).map_err(db_error)?;
        let last = parse_last(&table.name, &clock)?;
        let row = rows.first().map(|r| read_row(table, r)).transpose()?;
        Ok(Write { tx, statements, last, row })
    }

    /// The `updatedAt` of a write of `id` (see [`crate::stamp`]).
    fn stamp(&self, id: &str, clock: &dyn Clock) -> Result<String, StorageError> {
        let last = self.last.as_ref().map(|(ms, id)| (*ms, id.as_str()));
        let ms = stamp::next_updated_at(stamp::unix_ms(clock.now()), id, last);
        let t = stamp::from_unix_ms(ms)
            .filter(|t| datetime::in_range(*t))
            .ok_or(StorageError::Unavailable("the clock is outside years 0000-9999"))?;
        Ok(datetime::format(t))
    }

    /// Writes every column of `row` (insert or full update) and the clock, then commits.
    async fn commit(self, table: &TableDef, row: &Row, key: &Key<'_>, insert: bool) -> Result<(), StorageError> {
        let Write { tx, statements, .. } = self;
        let sql =
            if insert { insert_sql(table, Placeholders::Postgres) } else { update_sql(table, Placeholders::Postgres) };
        let write = prepared(statements, &tx, &sql).await?;
        let clock = prepared(statements, &tx, &clock_update_sql()).await?;
        let mut values: Vec<Value> = Vec::with_capacity(row.values.len() + 6);
        values.push(Value::String(row.id.clone()));
        values.extend(table.columns.iter().zip(&row.values).map(|(c, v)| column_value(c.ty, v)));
        values.push(Value::String(row.version.clone()));
        values.push(Value::String(row.updated_at.clone()));
        values.push(Value::String(row.created_at.clone()));
        values.push(Value::Bool(row.deleted));
        // The hidden owner column on insert, the key's owner on update.
        if insert && table.hidden_owner().is_some() || !insert && table.owner_column.is_some() {
            values.extend(key.owner.map(|o| Value::String(o.to_owned())));
        }
        let bound: Vec<PgValue<'_>> = values.iter().map(PgValue).collect();
        let params: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        let clock_params: [&(dyn ToSql + Sync); 3] = [&table.name, &row.updated_at, &row.id];
        tokio::try_join!(tx.execute(&write, &params), tx.execute(&clock, &clock_params)).map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }
}

fn check_version(row: &Row, expected: Option<&str>) -> Result<(), StorageError> {
    match expected {
        Some(v) if v != row.version => Err(StorageError::VersionMismatch(Box::new(row.clone()))),
        _ => Ok(()),
    }
}

async fn insert(
    conn: &mut Conn,
    table: &TableDef,
    id: String,
    values: Vec<Value>,
    owner: Option<&str>,
    clock: &dyn Clock,
) -> Result<Row, StorageError> {
    let key = Key { id: &id, owner };
    let write = Write::begin(conn, table, &key).await?;
    if let Some(existing) = write.row {
        return Err(StorageError::AlreadyExists(Box::new(existing)));
    }
    let updated_at = write.stamp(&id, clock)?;
    let row = Row {
        id: id.clone(),
        values,
        version: stamp::new_version(None),
        created_at: updated_at.clone(),
        updated_at,
        deleted: false,
    };
    write.commit(table, &row, &key, true).await?;
    Ok(row)
}

/// What a write does to an existing row.
enum Change {
    Update(Update),
    Delete { expected_version: Option<String>, soft: bool },
    Undelete { expected_version: Option<String> },
}

async fn change(
    conn: &mut Conn,
    table: &TableDef,
    id: &str,
    change: Change,
    owner: Option<&str>,
    clock: &dyn Clock,
) -> Result<Row, StorageError> {
    let key = Key { id, owner };
    let mut write = Write::begin(conn, table, &key).await?;
    let mut row = write.row.take().ok_or(StorageError::NotFound)?;
    match change {
        Change::Update(update) => {
            if row.deleted && !update.undelete {
                return Err(StorageError::Deleted(Box::new(row)));
            }
            check_version(&row, update.expected_version.as_deref())?;
            for (i, v) in update.values {
                if let Some(slot) = row.values.get_mut(i).filter(|_| Some(i) != table.served_owner()) {
                    *slot = v;
                }
            }
            row.deleted = false;
        }
        Change::Delete { expected_version, soft } => {
            if row.deleted {
                return Err(StorageError::Deleted(Box::new(row)));
            }
            check_version(&row, expected_version.as_deref())?;
            if !soft {
                let sql = format!("DELETE FROM {} {}", quote_ident(&table.name), key_condition(table));
                let delete = prepared(&mut *write.statements, &write.tx, &sql).await?;
                write.tx.execute(&delete, &key.params()).await.map_err(db_error)?;
                write.tx.commit().await.map_err(db_error)?;
                return Ok(row);
            }
            row.deleted = true;
        }
        Change::Undelete { expected_version } => {
            check_version(&row, expected_version.as_deref())?;
            if !row.deleted {
                return Ok(row);
            }
            row.deleted = false;
        }
    }
    row.updated_at = write.stamp(id, clock)?;
    row.version = stamp::new_version(Some(&row.version));
    write.commit(table, &row, &key, false).await?;
    Ok(row)
}

// ---- reads ------------------------------------------------------------------------

async fn get(conn: &mut Conn, table: &TableDef, key: &Key<'_>) -> Result<Option<Row>, StorageError> {
    let sql = select_sql(table);
    let statement = match conn.statements.get(&sql) {
        Some(s) => s.clone(),
        None => {
            let s = conn.client.prepare(&sql).await.map_err(db_error)?;
            conn.statements.insert(sql, s.clone());
            s
        }
    };
    let rows = conn.client.query(&statement, &key.params()).await.map_err(db_error)?;
    rows.first().map(|r| read_row(table, r)).transpose()
}

fn typed<'b>(bound: &'b [(PgArg<'_>, Type)]) -> Vec<(&'b (dyn ToSql + Sync), Type)> {
    bound.iter().map(|(v, t)| (v as &(dyn ToSql + Sync), t.clone())).collect()
}

async fn list(
    conn: &mut Conn,
    table: &TableDef,
    select: &SqlQuery,
    count: Option<&SqlQuery>,
) -> Result<Page, StorageError> {
    let select_bound = bind(select);
    let select_params = typed(&select_bound);
    let rows = match count {
        None => conn.client.query_typed(&select.sql, &select_params).await.map_err(query_error)?,
        Some(count) => {
            // One snapshot for the page and the count.
            let tx = conn
                .client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(db_error)?;
            let count_bound = bind(count);
            let count_params = typed(&count_bound);
            let (rows, total) = tokio::try_join!(
                tx.query_typed(&select.sql, &select_params),
                tx.query_typed(&count.sql, &count_params)
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

async fn prepare(conn: &mut Conn, tables: &[Arc<TableDef>]) -> Result<(), StorageError> {
    for table in tables {
        let names = std::iter::once(&table.name).chain(table.columns.iter().map(|c| &c.name));
        if let Some(long) = names.chain(&table.owner_column).find(|n| n.len() > MAX_IDENTIFIER) {
            return Err(StorageError::Schema {
                table: table.name.clone(),
                message: format!("`{long}` is longer than PostgreSQL's {MAX_IDENTIFIER}-byte identifiers"),
            });
        }
    }
    let tx = conn.client.transaction().await.map_err(db_error)?;
    // Several instances may start at once: one prepares at a time.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PREPARE_LOCK]).await.map_err(db_error)?;
    let schema: Option<String> = tx.query_one("SELECT current_schema()", &[]).await.map_err(db_error)?.get(0);
    if schema.is_none() {
        return Err(StorageError::Setup(
            "no schema to create the tables in: the search_path names no existing schema".into(),
        ));
    }
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {} (\"tbl\" TEXT PRIMARY KEY, \"updatedAt\" TEXT COLLATE \"C\" NOT NULL, \
         \"id\" TEXT COLLATE \"C\" NOT NULL)",
        quote_ident(CLOCK_TABLE)
    ))
    .await
    .map_err(db_error)?;
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

/// Creates the table, or checks an existing one and adds missing data columns.
async fn prepare_table(tx: &Transaction<'_>, table: &TableDef) -> Result<(), StorageError> {
    let name = quote_ident(&table.name);
    let existing: Vec<(String, String)> = tx
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
    let key: Vec<&str> = table.owner_column.iter().map(String::as_str).chain(["id"]).collect();
    if existing.is_empty() {
        let mut cols = vec!["\"id\" TEXT COLLATE \"C\" NOT NULL".to_owned()];
        cols.extend(table.columns.iter().map(|c| format!("{} {}", quote_ident(&c.name), pg_sql::column_type(c.ty))));
        cols.extend(table.hidden_owner().map(|o| format!("{} TEXT COLLATE \"C\" NOT NULL", quote_ident(o))));
        cols.extend([
            "\"version\" TEXT NOT NULL".to_owned(),
            "\"updatedAt\" TEXT COLLATE \"C\" NOT NULL".to_owned(),
            "\"createdAt\" TEXT COLLATE \"C\" NOT NULL".to_owned(),
            "\"deleted\" BOOLEAN NOT NULL DEFAULT FALSE".to_owned(),
        ]);
        let key: Vec<String> = key.iter().map(|c| quote_ident(c)).collect();
        cols.push(format!("PRIMARY KEY ({})", key.join(", ")));
        tx.batch_execute(&format!("CREATE TABLE IF NOT EXISTS {name} ({})", cols.join(", ")))
            .await
            .map_err(db_error)?;
    } else {
        let stored_key: Vec<String> = tx
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
        let stored_key: Vec<&str> = stored_key.iter().map(String::as_str).collect();
        let columns: Vec<(&str, &str)> = existing.iter().map(|(n, ty)| (n.as_str(), ty.as_str())).collect();
        for col in columns_to_add(table, &stored_key, &columns, false, pg_sql::information_schema_type)? {
            let sql = format!(
                "ALTER TABLE {name} ADD COLUMN IF NOT EXISTS {} {}",
                quote_ident(&col.name),
                pg_sql::column_type(col.ty)
            );
            tx.batch_execute(&sql).await.map_err(db_error)?;
        }
    }
    let index = quote_ident(&index_name(&table.name, "cursor"));
    tx.batch_execute(&format!("CREATE INDEX IF NOT EXISTS {index} ON {name} (\"updatedAt\", \"id\")"))
        .await
        .map_err(db_error)?;
    if let Some(owner) = &table.owner_column {
        // Each user's incremental reader pages through their own rows.
        let index = quote_ident(&index_name(&table.name, "owner"));
        let sql =
            format!("CREATE INDEX IF NOT EXISTS {index} ON {name} ({}, \"updatedAt\", \"id\")", quote_ident(owner));
        tx.batch_execute(&sql).await.map_err(db_error)?;
    }
    tx.execute(&clock_seed_sql(table), &[&table.name]).await.map_err(db_error)?;
    Ok(())
}

// ---- the trait --------------------------------------------------------------------

impl Storage for PostgresStorage {
    fn prepare(&self, tables: Vec<Arc<TableDef>>) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(async move {
            let mut lease = self.pool.get().await?;
            let result = prepare(lease.conn(), &tables).await;
            lease.finish();
            result
        })
    }

    fn list(&self, table: Arc<TableDef>, query: ListQuery) -> BoxFuture<'_, Result<Page, StorageError>> {
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
            let result = list(lease.conn(), &table, &select, count.as_ref()).await;
            lease.finish();
            result
        })
    }

    fn get(
        &self,
        table: Arc<TableDef>,
        id: String,
        owner: Option<String>,
    ) -> BoxFuture<'_, Result<Option<Row>, StorageError>> {
        Box::pin(async move {
            let owner = scope(&table, owner)?;
            let mut lease = self.pool.get().await?;
            let result = get(lease.conn(), &table, &Key { id: &id, owner: owner.as_deref() }).await;
            lease.finish();
            result
        })
    }

    fn insert(
        &self,
        table: Arc<TableDef>,
        id: String,
        mut values: Vec<Value>,
        owner: Option<String>,
    ) -> BoxFuture<'_, Result<Row, StorageError>> {
        Box::pin(async move {
            let owner = scope(&table, owner)?;
            if let (Some(i), Some(owner)) = (table.served_owner(), &owner) {
                values[i] = Value::String(owner.clone());
            }
            let mut lease = self.pool.get().await?;
            let result = insert(lease.conn(), &table, id, values, owner.as_deref(), &*self.clock).await;
            lease.finish();
            result
        })
    }

    fn update(
        &self,
        table: Arc<TableDef>,
        id: String,
        update: Update,
        owner: Option<String>,
    ) -> BoxFuture<'_, Result<Row, StorageError>> {
        self.change(table, id, Change::Update(update), owner)
    }

    fn delete(
        &self,
        table: Arc<TableDef>,
        id: String,
        expected_version: Option<String>,
        soft: bool,
        owner: Option<String>,
    ) -> BoxFuture<'_, Result<Row, StorageError>> {
        self.change(table, id, Change::Delete { expected_version, soft }, owner)
    }

    fn undelete(
        &self,
        table: Arc<TableDef>,
        id: String,
        expected_version: Option<String>,
        owner: Option<String>,
    ) -> BoxFuture<'_, Result<Row, StorageError>> {
        self.change(table, id, Change::Undelete { expected_version }, owner)
    }

    fn health(&self) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(async move {
            let mut lease = self.pool.get().await?;
            let result = lease.conn().client.simple_query("SELECT 1").await.map(drop).map_err(db_error);
            lease.finish();
            result
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move { self.pool.close() })
    }
}

impl PostgresStorage {
    fn change(
        &self,
        table: Arc<TableDef>,
        id: String,
        what: Change,
        owner: Option<String>,
    ) -> BoxFuture<'_, Result<Row, StorageError>> {
        Box::pin(async move {
            let owner = scope(&table, owner)?;
            let mut lease = self.pool.get().await?;
            let result = change(lease.conn(), &table, &id, what, owner.as_deref(), &*self.clock).await;
            lease.finish();
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_names_fit_and_differ() {
        let long = "T".repeat(63);
        let a = index_name(&long, "owner");
        assert!(a.len() <= MAX_IDENTIFIER, "{a}");
        assert_ne!(index_name(&format!("{long}a"), "cursor"), index_name(&format!("{long}b"), "cursor"));
    }

    #[test]
    fn statements_key_rows_by_owner_and_id() {
        let t = TableDef::new("T").column("n", ColumnType::Int, true).owner_column("owner");
        assert_eq!(
            insert_sql(&t, Placeholders::Postgres),
            "INSERT INTO \"T\" (\"id\", \"n\", \"version\", \"updatedAt\", \"createdAt\", \"deleted\", \"owner\") \
             VALUES ($1, $2, $3, $4, $5, $6, $7)"
        );
        assert_eq!(
            update_sql(&t, Placeholders::Postgres),
            "UPDATE \"T\" SET \"n\" = $2, \"version\" = $3, \"updatedAt\" = $4, \"createdAt\" = $5, \
             \"deleted\" = $6 WHERE \"id\" = $1 AND \"owner\" = $7"
        );
        assert!(select_sql(&t).ends_with("WHERE \"id\" = $1 AND \"owner\" = $2"));
    }
}
