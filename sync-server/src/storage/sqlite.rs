//! SQLite storage: one writer connection on a dedicated thread (so writes are
//! serialized and no SQLite call ever blocks a tokio worker), and, for a file database,
//! a small pool of read connections used from `spawn_blocking` (WAL lets them read
//! while the writer writes). An in-memory database has a single connection, so reads
//! go to the writer thread too.
//!
//! Layout: one table per served table, `"id" TEXT PRIMARY KEY`, the data columns, then
//! `"version" TEXT`, `"updatedAt" TEXT` (fixed-width milliseconds, so text order is
//! time order), `"createdAt" TEXT`, `"deleted" INTEGER`, and an index on
//! `("updatedAt", "id")` for incremental readers. The last `(updatedAt, id)` assigned per
//! table lives in `__sync_server_clock` (see [`crate::stamp`]).
//!
//! An owned table's key is `(owner, id)` (the owner column, a data column or a
//! server-only one after the data columns), with an index on `(owner, updatedAt, id)`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params_from_iter};
use sync_core::sql::{self, Sqlite, quote_ident};
use sync_core::{ColumnType, Value, datetime};
use tokio::sync::oneshot;

use super::{
    BoxFuture, ListQuery, Page, Placeholders, Row, Storage, StorageError, Update, columns_to_add, insert_sql, scope,
    update_sql,
};
use crate::stamp::{self, Clock};
use crate::table::{StorageSchema, TableDef};

/// The table holding the last `(updatedAt, id)` assigned per table.
const CLOCK_TABLE: &str = "__sync_server_clock";
/// How long a connection waits for another process's lock before failing.
const BUSY_TIMEOUT_MS: u64 = 5_000;
/// Idle read connections kept open.
const MAX_IDLE_READERS: usize = 4;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// What the writer thread receives.
enum Command {
    /// Run a job on the connection.
    Run(Job),
    /// Close the connection (checkpointing the WAL) and stop; acknowledged when done.
    Close(oneshot::Sender<()>),
}

/// Storage in one SQLite database (a file, or memory for tests and demos).
#[derive(Debug)]
pub struct SqliteStorage {
    writer: mpsc::Sender<Command>,
    readers: Option<Arc<ReaderPool>>,
    clock: Arc<dyn Clock>,
    closed: AtomicBool,
}

#[derive(Debug)]
struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReaderPool {
    fn take(&self) -> Result<Connection, StorageError> {
        if let Some(conn) = self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            return Ok(conn);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(db_error)?;
        configure(&conn).map_err(db_error)?;
        conn.pragma_update(None, "query_only", true).map_err(db_error)?;
        Ok(conn)
    }

    fn put(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
    }
}

impl SqliteStorage {
    /// Opens (or creates) a database file in WAL mode.
    pub async fn open_file(path: PathBuf, clock: Arc<dyn Clock>) -> Result<SqliteStorage, StorageError> {
        let open_path = path.clone();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection, StorageError> {
            let conn = Connection::open(&open_path).map_err(db_error)?;
            configure(&conn).map_err(db_error)?;
            enable_wal(&conn)?;
            conn.pragma_update(None, "synchronous", "NORMAL").map_err(db_error)?;
            Ok(conn)
        })
        .await
        .map_err(|_| StorageError::Unavailable("opening the database panicked"))??;
        let readers = Arc::new(ReaderPool { path, idle: Mutex::new(Vec::new()) });
        Ok(SqliteStorage { writer: spawn_writer(conn)?, readers: Some(readers), clock, closed: AtomicBool::new(false) })
    }

    /// Opens a private in-memory database.
    pub async fn open_memory(clock: Arc<dyn Clock>) -> Result<SqliteStorage, StorageError> {
        let conn = tokio::task::spawn_blocking(|| -> Result<Connection, StorageError> {
            let conn = Connection::open_in_memory().map_err(db_error)?;
            configure(&conn).map_err(db_error)?;
            Ok(conn)
        })
        .await
        .map_err(|_| StorageError::Unavailable("opening the database panicked"))??;
        Ok(SqliteStorage { writer: spawn_writer(conn)?, readers: None, clock, closed: AtomicBool::new(false) })
    }

    /// Runs `f` on the writer thread.
    async fn write<R, F>(&self, f: F) -> Result<R, StorageError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StorageError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            // A panic must not take the writer thread down; an open transaction rolls
            // back while unwinding.
            let result = catch_unwind(AssertUnwindSafe(|| f(conn)))
                .unwrap_or(Err(StorageError::Unavailable("a storage task panicked")));
            let _ = tx.send(result);
        });
        self.writer
            .send(Command::Run(job))
            .map_err(|_| StorageError::Unavailable("the SQLite writer thread is gone"))?;
        rx.await.map_err(|_| StorageError::Unavailable("the SQLite writer thread is gone"))?
    }

    /// Runs `f` on a read connection (or on the writer thread for an in-memory
    /// database).
    async fn read<R, F>(&self, f: F) -> Result<R, StorageError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StorageError> + Send + 'static,
    {
        if self.closed.load(Ordering::Acquire) {
            return Err(StorageError::Unavailable("the storage is closed"));
        }
        match &self.readers {
            None => self.write(move |conn| f(conn)).await,
            Some(pool) => {
                let pool = Arc::clone(pool);
                tokio::task::spawn_blocking(move || {
                    let conn = pool.take()?;
                    let result = f(&conn);
                    pool.put(conn);
                    result
                })
                .await
                .map_err(|_| StorageError::Unavailable("a storage task panicked"))?
            }
        }
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))?;
    sql::sqlite::register_functions(conn)?;
    Ok(())
}

/// Switches a file database to WAL (waiting out another process doing the same).
fn enable_wal(conn: &Connection) -> Result<(), StorageError> {
    let mode = sql::sqlite::switch_to_wal(conn, std::time::Duration::from_millis(BUSY_TIMEOUT_MS)).map_err(db_error)?;
    if mode.eq_ignore_ascii_case("wal") {
        Ok(())
    } else {
        Err(StorageError::Database(format!("the database refused WAL mode (journal mode stays {mode:?})").into()))
    }
}

fn spawn_writer(conn: Connection) -> Result<mpsc::Sender<Command>, StorageError> {
    let (tx, rx) = mpsc::channel::<Command>();
    std::thread::Builder::new()
        .name("sync-server-sqlite".into())
        .spawn(move || {
            let mut conn = conn;
            // Ends on `Close` or when the storage (every sender) is dropped.
            while let Ok(command) = rx.recv() {
                match command {
                    Command::Run(job) => job(&mut conn),
                    Command::Close(done) => {
                        if let Err((_, e)) = conn.close() {
                            tracing::warn!(error = %e, "closing the SQLite connection failed");
                        }
                        let _ = done.send(());
                        return;
                    }
                }
            }
        })
        .map_err(|e| StorageError::Database(Box::new(e)))?;
    Ok(tx)
}

fn db_error(e: rusqlite::Error) -> StorageError {
    StorageError::Database(Box::new(e))
}

/// An error while running a client's query: the database refusing the query itself
/// (too complex, a function given bad arguments, ...) is the client's problem; the
/// database failing is not.
fn query_error(e: rusqlite::Error) -> StorageError {
    match e.sqlite_error_code() {
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::SystemIoFailure
            | ErrorCode::DatabaseCorrupt
            | ErrorCode::DiskFull
            | ErrorCode::CannotOpen
            | ErrorCode::OutOfMemory
            | ErrorCode::NotADatabase
            | ErrorCode::PermissionDenied
            | ErrorCode::ReadOnly,
        ) => db_error(e),
        Some(_) => StorageError::InvalidQuery(format!("the database refused the query: {e}")),
        None => db_error(e),
    }
}

/// `WHERE "id" = ?1`, and `AND "<owner>" = ?2` for an owned table.
fn key_condition(table: &TableDef) -> String {
    match &table.owner_column {
        Some(owner) => format!("WHERE \"id\" = ?1 AND {} = ?2", quote_ident(owner)),
        None => "WHERE \"id\" = ?1".to_owned(),
    }
}

/// The parameters of [`key_condition`].
fn key_params<'k>(id: &'k str, owner: Option<&'k str>) -> Vec<&'k str> {
    std::iter::once(id).chain(owner).collect()
}

fn select_sql(table: &TableDef) -> String {
    let cols: Vec<String> = table.stored_columns().iter().map(|c| quote_ident(c)).collect();
    format!("SELECT {} FROM {} {}", cols.join(", "), quote_ident(&table.name), key_condition(table))
}

fn get_row(conn: &Connection, table: &TableDef, id: &str, owner: Option<&str>) -> rusqlite::Result<Option<Row>> {
    let mut stmt = conn.prepare_cached(&select_sql(table))?;
    stmt.query_row(params_from_iter(key_params(id, owner)), |r| read_row(table, r)).optional()
}

fn read_row(table: &TableDef, r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let n = table.columns.len();
    let mut values = Vec::with_capacity(n);
    for (i, col) in table.columns.iter().enumerate() {
        values.push(decode(col.ty, r.get_ref(i + 1)?));
    }
    Ok(Row {
        id: r.get(0)?,
        values,
        version: r.get(n + 1)?,
        updated_at: r.get(n + 2)?,
        created_at: r.get(n + 3)?,
        deleted: r.get::<_, i64>(n + 4)? != 0,
    })
}

/// Reads a stored value as the column's type; a value of another storage class (a row
/// written by someone else) is passed through as what it is rather than refused.
fn decode(ty: ColumnType, v: ValueRef<'_>) -> Value {
    match (ty, v) {
        (_, ValueRef::Null) => Value::Null,
        (ColumnType::Bool, ValueRef::Integer(i)) => Value::Bool(i != 0),
        (ColumnType::Float, ValueRef::Integer(i)) => Value::Float(i as f64),
        (ColumnType::DateTime, ValueRef::Text(t)) => {
            let s = String::from_utf8_lossy(t);
            match datetime::parse(&s) {
                Some(d) => Value::DateTime(d),
                None => Value::String(s.into_owned()),
            }
        }
        (ColumnType::Json, ValueRef::Text(t)) => match serde_json::from_slice(t) {
            Ok(j) => Value::Json(j),
            Err(_) => Value::String(String::from_utf8_lossy(t).into_owned()),
        },
        (_, ValueRef::Integer(i)) => Value::Int(i),
        (_, ValueRef::Real(f)) => Value::Float(f),
        (_, ValueRef::Text(t)) => Value::String(String::from_utf8_lossy(t).into_owned()),
        (_, ValueRef::Blob(b)) => Value::Bytes(b.to_vec()),
    }
}

/// Assigns `updatedAt` for a write of `id` (inside the write transaction) and records
/// it as the table's last pair.
fn next_updated_at(
    tx: &rusqlite::Transaction<'_>,
    table: &str,
    id: &str,
    clock: &dyn Clock,
) -> Result<String, StorageError> {
    let last: Option<(String, String)> = tx
        .prepare_cached(&format!("SELECT \"updatedAt\", \"id\" FROM {} WHERE \"tbl\" = ?1", quote_ident(CLOCK_TABLE)))
        .and_then(|mut s| s.query_row([table], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(db_error)?;
    let last = match &last {
        Some((t, last_id)) => {
            let ms = datetime::parse(t).map(stamp::unix_ms).ok_or_else(|| StorageError::Schema {
                table: table.to_owned(),
                message: format!("{CLOCK_TABLE} holds an unreadable timestamp `{t}`"),
            })?;
            Some((ms, last_id.as_str()))
        }
        None => None,
    };
    let ms = stamp::next_updated_at(stamp::unix_ms(clock.now()), id, last);
    let t = stamp::from_unix_ms(ms)
        .filter(|t| datetime::in_range(*t))
        .ok_or(StorageError::Unavailable("the clock is outside years 0000-9999"))?;
    let text = datetime::format(t);
    tx.prepare_cached(&format!(
        "INSERT INTO {} (\"tbl\", \"updatedAt\", \"id\") VALUES (?1, ?2, ?3) \
         ON CONFLICT(\"tbl\") DO UPDATE SET \"updatedAt\" = excluded.\"updatedAt\", \"id\" = excluded.\"id\"",
        quote_ident(CLOCK_TABLE)
    ))
    .and_then(|mut s| s.execute(rusqlite::params![table, text, id]))
    .map_err(db_error)?;
    Ok(text)
}

/// Writes every column of `row` (insert or full update) of `owner`'s row.
fn write_row(
    tx: &rusqlite::Transaction<'_>,
    table: &TableDef,
    row: &Row,
    owner: Option<&str>,
    insert: bool,
) -> Result<(), StorageError> {
    let sql = if insert { insert_sql(table, Placeholders::Sqlite) } else { update_sql(table, Placeholders::Sqlite) };
    let mut params: Vec<Value> = Vec::with_capacity(row.values.len() + 6);
    params.push(Value::String(row.id.clone()));
    params.extend(row.values.iter().cloned());
    params.push(Value::String(row.version.clone()));
    params.push(Value::String(row.updated_at.clone()));
    params.push(Value::String(row.created_at.clone()));
    params.push(Value::Bool(row.deleted));
    // The hidden owner column on insert, the key's owner on update.
    if insert && table.hidden_owner().is_some() || !insert && table.owner_column.is_some() {
        params.extend(owner.map(|o| Value::String(o.to_owned())));
    }
    let mut stmt = tx.prepare_cached(&sql).map_err(db_error)?;
    stmt.execute(params_from_iter(params.iter())).map_err(db_error)?;
    Ok(())
}

fn insert_row(
    conn: &mut Connection,
    table: &TableDef,
    id: String,
    values: Vec<Value>,
    owner: Option<&str>,
    clock: &dyn Clock,
) -> Result<Row, StorageError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_error)?;
    if let Some(existing) = get_row(&tx, table, &id, owner).map_err(db_error)? {
        return Err(StorageError::AlreadyExists(Box::new(existing)));
    }
    let updated_at = next_updated_at(&tx, &table.name, &id, clock)?;
    let row = Row {
        id,
        values,
        version: stamp::new_version(None),
        created_at: updated_at.clone(),
        updated_at,
        deleted: false,
    };
    write_row(&tx, table, &row, owner, true)?;
    tx.commit().map_err(db_error)?;
    Ok(row)
}

fn check_version(row: &Row, expected: Option<&str>) -> Result<(), StorageError> {
    match expected {
        Some(v) if v != row.version => Err(StorageError::VersionMismatch(Box::new(row.clone()))),
        _ => Ok(()),
    }
}

/// Creates the table, or checks an existing one and adds missing data columns.
fn prepare_table(conn: &Connection, table: &TableDef) -> Result<(), StorageError> {
    let name = quote_ident(&table.name);
    // (name, declared type, position in the primary key or 0)
    let existing: Vec<(String, String, i64)> = conn
        .prepare(&format!("SELECT name, type, pk FROM pragma_table_info({})", sql_string(&table.name)))
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect())
        .map_err(db_error)?;
    let key: Vec<&str> = table.owner_column.iter().map(String::as_str).chain(["id"]).collect();
    if existing.is_empty() {
        let mut cols = vec!["\"id\" TEXT NOT NULL".to_owned()];
        cols.extend(table.columns.iter().map(|c| format!("{} {}", quote_ident(&c.name), c.ty.sqlite_decl())));
        cols.extend(table.hidden_owner().map(|o| format!("{} TEXT NOT NULL", quote_ident(o))));
        cols.extend([
            "\"version\" TEXT NOT NULL".to_owned(),
            "\"updatedAt\" TEXT NOT NULL".to_owned(),
            "\"createdAt\" TEXT NOT NULL".to_owned(),
            "\"deleted\" INTEGER NOT NULL DEFAULT 0".to_owned(),
        ]);
        let key: Vec<String> = key.iter().map(|c| quote_ident(c)).collect();
        cols.push(format!("PRIMARY KEY ({})", key.join(", ")));
        conn.execute_batch(&format!("CREATE TABLE {name} ({})", cols.join(", "))).map_err(db_error)?;
    } else {
        let mut stored_key: Vec<(i64, &str)> =
            existing.iter().filter(|(_, _, pk)| *pk > 0).map(|(n, _, pk)| (*pk, n.as_str())).collect();
        stored_key.sort_unstable();
        let stored_key: Vec<&str> = stored_key.into_iter().map(|(_, n)| n).collect();
        let columns: Vec<(&str, &str)> = existing.iter().map(|(n, ty, _)| (n.as_str(), ty.as_str())).collect();
        for col in columns_to_add(table, &stored_key, &columns, true, ColumnType::sqlite_decl)? {
            let sql = format!("ALTER TABLE {name} ADD COLUMN {} {}", quote_ident(&col.name), col.ty.sqlite_decl());
            conn.execute_batch(&sql).map_err(db_error)?;
        }
    }
    // Index names share the table namespace; the reserved prefix cannot collide.
    let index = quote_ident(&format!("__sync_server_{}_updatedAt_id", table.name));
    conn.execute_batch(&format!("CREATE INDEX IF NOT EXISTS {index} ON {name} (\"updatedAt\", \"id\")"))
        .map_err(db_error)?;
    if let Some(owner) = &table.owner_column {
        // Each user's incremental reader pages through their own rows.
        let index = quote_ident(&format!("__sync_server_{}_owner_updatedAt_id", table.name));
        let sql =
            format!("CREATE INDEX IF NOT EXISTS {index} ON {name} ({}, \"updatedAt\", \"id\")", quote_ident(owner));
        conn.execute_batch(&sql).map_err(db_error)?;
    }
    // Seed the clock from rows written before it existed.
    conn.execute(
        &format!(
            "INSERT OR IGNORE INTO {} (\"tbl\", \"updatedAt\", \"id\") \
             SELECT ?1, \"updatedAt\", \"id\" FROM {name} ORDER BY \"updatedAt\" DESC, \"id\" DESC LIMIT 1",
            quote_ident(CLOCK_TABLE)
        ),
        [&table.name],
    )
    .map_err(db_error)?;
    Ok(())
}

/// A SQL string literal (for the table-valued pragma function, which takes no
/// parameters in every SQLite version; the name is a validated identifier anyway).
fn sql_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    sync_core::sql::push_quoted(&mut out, s, '\'');
    out
}

impl Storage for SqliteStorage {
    fn prepare(&self, tables: Vec<Arc<TableDef>>) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_error)?;
            tx.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {} (\"tbl\" TEXT PRIMARY KEY NOT NULL, \"updatedAt\" TEXT NOT NULL, \"id\" TEXT NOT NULL)",
                quote_ident(CLOCK_TABLE)
            ))
            .map_err(db_error)?;
            for table in &tables {
                prepare_table(&tx, table)?;
            }
            tx.commit().map_err(db_error)
        }))
    }

    fn list(&self, table: Arc<TableDef>, query: ListQuery) -> BoxFuture<'_, Result<Page, StorageError>> {
        Box::pin(async move {
            // Compile before leaving for a database thread: pure CPU, and a compiler
            // error is the client's (an unknown column, ...).
            let cols = table.stored_columns();
            let schema = StorageSchema(&table);
            let select = sql::select(&Sqlite, &table.name, &cols, &query.spec, &schema)
                .map_err(|e| StorageError::InvalidQuery(e.to_string()))?;
            let count = match query.count {
                true => Some(
                    sql::count(&Sqlite, &table.name, &query.spec, &schema)
                        .map_err(|e| StorageError::InvalidQuery(e.to_string()))?,
                ),
                false => None,
            };
            self.read(move |conn| {
                // One read transaction: the count and the page see the same snapshot.
                conn.execute_batch("BEGIN").map_err(db_error)?;
                let result = run_list(conn, &table, &select, count.as_ref());
                let _ = conn.execute_batch("COMMIT");
                result
            })
            .await
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
            self.read(move |conn| get_row(conn, &table, &id, owner.as_deref()).map_err(db_error)).await
        })
    }

    fn insert(
        &self,
        table: Arc<TableDef>,
        id: String,
        mut values: Vec<Value>,
        owner: Option<String>,
    ) -> BoxFuture<'_, Result<Row, StorageError>> {
        let clock = Arc::clone(&self.clock);
        Box::pin(async move {
            let owner = scope(&table, owner)?;
            if let (Some(i), Some(owner)) = (table.served_owner(), &owner) {
                values[i] = Value::String(owner.clone());
            }
            self.write(move |conn| insert_row(conn, &table, id, values, owner.as_deref(), &*clock)).await
        })
    }

    fn update(
        &self,
        table: Arc<TableDef>,
        id: String,
        update: Update,
        owner: Option<String>,
    ) -> BoxFuture<'_, Result<Row, StorageError>> {
        let clock = Arc::clone(&self.clock);
        Box::pin(async move {
            let owner = scope(&table, owner)?;
            self.write(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_error)?;
                let owner = owner.as_deref();
                let mut row = get_row(&tx, &table, &id, owner).map_err(db_error)?.ok_or(StorageError::NotFound)?;
                if row.deleted && !update.undelete {
                    return Err(StorageError::Deleted(Box::new(row)));
                }
                check_version(&row, update.expected_version.as_deref())?;
                for (i, v) in update.values {
                    if let Some(slot) = row.values.get_mut(i).filter(|_| Some(i) != table.served_owner()) {
                        *slot = v;
                    }
                }
                row.updated_at = next_updated_at(&tx, &table.name, &id, &*clock)?;
                row.version = stamp::new_version(Some(&row.version));
                row.deleted = false;
                write_row(&tx, &table, &row, owner, false)?;
                tx.commit().map_err(db_error)?;
                Ok(row)
            })
            .await
        })
    }

    fn delete(
        &self,
        table: Arc<TableDef>,
        id: String,
        expected_version: Option<String>,
        soft: bool,
        owner: Option<String>,
    ) -> BoxFuture<'_, Result<Row, StorageError>> {
        let clock = Arc::clone(&self.clock);
        Box::pin(async move {
            let owner = scope(&table, owner)?;
            self.write(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_error)?;
                let owner = owner.as_deref();
                let mut row = get_row(&tx, &table, &id, owner).map_err(db_error)?.ok_or(StorageError::NotFound)?;
                if row.deleted {
                    return Err(StorageError::Deleted(Box::new(row)));
                }
                check_version(&row, expected_version.as_deref())?;
                if soft {
                    row.updated_at = next_updated_at(&tx, &table.name, &id, &*clock)?;
                    row.version = stamp::new_version(Some(&row.version));
                    row.deleted = true;
                    write_row(&tx, &table, &row, owner, false)?;
                } else {
                    let sql = format!("DELETE FROM {} {}", quote_ident(&table.name), key_condition(&table));
                    tx.execute(&sql, params_from_iter(key_params(&id, owner))).map_err(db_error)?;
                }
                tx.commit().map_err(db_error)?;
                Ok(row)
            })
            .await
        })
    }

    fn undelete(
        &self,
        table: Arc<TableDef>,
        id: String,
        expected_version: Option<String>,
        owner: Option<String>,
    ) -> BoxFuture<'_, Result<Row, StorageError>> {
        let clock = Arc::clone(&self.clock);
        Box::pin(async move {
            let owner = scope(&table, owner)?;
            self.write(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_error)?;
                let owner = owner.as_deref();
                let mut row = get_row(&tx, &table, &id, owner).map_err(db_error)?.ok_or(StorageError::NotFound)?;
                check_version(&row, expected_version.as_deref())?;
                if row.deleted {
                    row.updated_at = next_updated_at(&tx, &table.name, &id, &*clock)?;
                    row.version = stamp::new_version(Some(&row.version));
                    row.deleted = false;
                    write_row(&tx, &table, &row, owner, false)?;
                    tx.commit().map_err(db_error)?;
                }
                Ok(row)
            })
            .await
        })
    }

    fn health(&self) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(db_error)))
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.closed.store(true, Ordering::Release);
            if let Some(pool) = &self.readers {
                let idle = pool.idle.lock().map(|mut idle| std::mem::take(&mut *idle)).unwrap_or_default();
                let _ = tokio::task::spawn_blocking(move || drop(idle)).await;
            }
            let (done, closed) = oneshot::channel();
            if self.writer.send(Command::Close(done)).is_ok() {
                let _ = closed.await;
            }
        })
    }
}

fn run_list(
    conn: &Connection,
    table: &TableDef,
    select: &sql::SqlQuery,
    count: Option<&sql::SqlQuery>,
) -> Result<Page, StorageError> {
    let mut stmt = conn.prepare(&select.sql).map_err(query_error)?;
    let rows = stmt
        .query_map(params_from_iter(select.params.iter()), |r| read_row(table, r))
        .map_err(query_error)?
        .collect::<rusqlite::Result<Vec<Row>>>()
        .map_err(query_error)?;
    let count = match count {
        Some(q) => {
            let n: i64 =
                conn.query_row(&q.sql, params_from_iter(q.params.iter()), |r| r.get(0)).map_err(query_error)?;
            Some(u64::try_from(n).unwrap_or(0))
        }
        None => None,
    };
    Ok(Page { rows, count })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stamp::ManualClock;
    use time::macros::datetime;

    fn todo() -> Arc<TableDef> {
        Arc::new(TableDef::new("TodoItem").column("text", ColumnType::String, true).column(
            "complete",
            ColumnType::Bool,
            true,
        ))
    }

    #[tokio::test]
    async fn writes_stamp_rows_and_check_versions() {
        let clock = ManualClock::new(datetime!(2026-01-02 03:04:05.678 UTC));
        let db = SqliteStorage::open_memory(Arc::new(clock.clone())).await.unwrap();
        let t = todo();
        db.prepare(vec![t.clone()]).await.unwrap();
        // prepare twice is fine
        db.prepare(vec![t.clone()]).await.unwrap();

        let a =
            db.insert(t.clone(), "b".into(), vec![Value::String("x".into()), Value::Bool(false)], None).await.unwrap();
        assert_eq!(a.updated_at, "2026-01-02T03:04:05.678Z");
        assert_eq!(a.created_at, a.updated_at);
        // Same millisecond, smaller id: moves on by one millisecond.
        let b = db.insert(t.clone(), "a".into(), vec![Value::Null, Value::Null], None).await.unwrap();
        assert_eq!(b.updated_at, "2026-01-02T03:04:05.679Z");
        assert!(matches!(
            db.insert(t.clone(), "a".into(), vec![Value::Null, Value::Null], None).await,
            Err(StorageError::AlreadyExists(_))
        ));

        let up =
            Update { values: vec![(1, Value::Bool(true))], expected_version: Some("nope".into()), undelete: false };
        assert!(matches!(db.update(t.clone(), "b".into(), up, None).await, Err(StorageError::VersionMismatch(_))));
        let up =
            Update { values: vec![(1, Value::Bool(true))], expected_version: Some(a.version.clone()), undelete: false };
        let a2 = db.update(t.clone(), "b".into(), up, None).await.unwrap();
        assert_ne!(a2.version, a.version);
        assert_eq!(a2.values, vec![Value::String("x".into()), Value::Bool(true)]);
        // Same millisecond as the last write, but a greater id: the pair still grows.
        assert_eq!(a2.updated_at, "2026-01-02T03:04:05.679Z");
        assert!((a2.updated_at.as_str(), "b") > (b.updated_at.as_str(), "a"));

        let gone = db.delete(t.clone(), "b".into(), None, true, None).await.unwrap();
        assert!(gone.deleted);
        assert!(matches!(db.delete(t.clone(), "b".into(), None, true, None).await, Err(StorageError::Deleted(_))));
        let back = db.undelete(t.clone(), "b".into(), None, None).await.unwrap();
        assert!(!back.deleted);
        assert_eq!(db.get(t.clone(), "b".into(), None).await.unwrap(), Some(back));
        assert!(matches!(db.delete(t.clone(), "zz".into(), None, true, None).await, Err(StorageError::NotFound)));
        db.delete(t.clone(), "a".into(), None, false, None).await.unwrap();
        assert_eq!(db.get(t, "a".into(), None).await.unwrap(), None);
        db.health().await.unwrap();
    }

    /// Several servers started together on one new file (the CI failure of
    /// `two_instances`): switching to WAL met "database is locked" in one of them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn servers_opening_one_new_file_together_all_start() {
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(format!("shared-{round}.db"));
            let opens = (0..6).map(|_| {
                let path = path.clone();
                tokio::spawn(async move {
                    let clock = Arc::new(ManualClock::new(datetime!(2026-01-02 03:04:05.678 UTC)));
                    let db = SqliteStorage::open_file(path, clock).await?;
                    db.prepare(vec![todo()]).await?;
                    Ok::<_, StorageError>(db)
                })
            });
            for open in opens.collect::<Vec<_>>() {
                let db = open.await.unwrap().unwrap_or_else(|e| panic!("round {round}: {e}"));
                db.health().await.unwrap();
            }
        }
    }

    #[tokio::test]
    async fn a_file_database_keeps_its_clock_and_checks_its_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let clock = ManualClock::new(datetime!(2026-01-02 03:04:05.678 UTC));
        let t = todo();
        {
            let db = SqliteStorage::open_file(path.clone(), Arc::new(clock.clone())).await.unwrap();
            db.prepare(vec![t.clone()]).await.unwrap();
            db.insert(t.clone(), "m".into(), vec![Value::Null, Value::Null], None).await.unwrap();
            // Hard delete of the newest row: the clock must not go back with it.
            db.delete(t.clone(), "m".into(), None, false, None).await.unwrap();
        }
        let db = SqliteStorage::open_file(path.clone(), Arc::new(clock.clone())).await.unwrap();
        db.prepare(vec![t.clone()]).await.unwrap();
        let r = db.insert(t.clone(), "a".into(), vec![Value::Null, Value::Null], None).await.unwrap();
        assert_eq!(r.updated_at, "2026-01-02T03:04:05.679Z");
        assert!(db.get(t.clone(), "a".into(), None).await.unwrap().is_some());
        // Readers from the pool, then close: later calls are refused, not hung.
        db.health().await.unwrap();
        db.close().await;
        assert!(matches!(db.get(t.clone(), "a".into(), None).await, Err(StorageError::Unavailable(_))));
        let db = SqliteStorage::open_file(path.clone(), Arc::new(clock.clone())).await.unwrap();

        // A new column is added; a re-typed one is refused with both types named.
        let wider = Arc::new(TableDef::clone(&t).column("n", ColumnType::Int, true));
        db.prepare(vec![wider.clone()]).await.unwrap();
        let row = db.get(wider, "a".into(), None).await.unwrap().unwrap();
        assert_eq!(row.values.len(), 3);
        let retyped = Arc::new(TableDef::new("TodoItem").column("text", ColumnType::Int, true));
        let err = db.prepare(vec![retyped]).await.unwrap_err().to_string();
        assert!(err.contains("`text`") && err.contains("TEXT") && err.contains("int"), "{err}");
    }
}
