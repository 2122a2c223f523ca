//! SQLite storage: one writer connection on a dedicated thread (so writes are
//! serialized and no SQLite call ever blocks a tokio worker), and, for a file database,
//! a small pool of read connections used from `spawn_blocking` (WAL lets them read
//! while the writer writes). An in-memory database has a single connection, so reads
//! go to the writer thread too.
//!
//! Writes take the shared write path ([`super::write`]) on the writer thread, in
//! `BEGIN IMMEDIATE` transactions: the database's one write lock serializes the writers
//! of every table, which is what the `updatedAt` rule needs ([`crate::stamp`]); the
//! clock rows are read and moved under it (a locked [`Stamp`]).
//!
//! Layout: see [`super::schema`] (`TEXT` for text, timestamps and JSON, `INTEGER` for
//! booleans and integers, `REAL`, `BLOB`); the last `(updatedAt, id)` assigned per
//! shared table, and per owner of an owned table, lives in the clock tables
//! ([`super::statements`]).

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Waker};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params_from_iter};
use sync_core::sql::{self, Sqlite};
use sync_core::{ColumnType, Value, datetime};
use tokio::sync::oneshot;

use super::engine::Engine;
use super::schema::{self, StoredTable};
use super::statements;
use super::write::{self, ClockRow, Effect, Read, Stamp, WriteAttempt};
use super::{BoxFuture, Change, Key, ListQuery, Page, Row, Storage, StorageError, StorageFuture};
use crate::stamp::Clock;
use crate::table::{StorageSchema, TableDef};

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
    async fn on_writer<R, F>(&self, f: F) -> Result<R, StorageError>
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
            None => self.on_writer(move |conn| f(conn)).await,
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
/// database failing is not. The client gets our stable message; SQLite's own text goes
/// to the log.
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
        Some(_) => {
            tracing::warn!(error = %e, "SQLite refused a client's query");
            StorageError::InvalidQuery(super::QUERY_REFUSED.to_owned())
        }
        None => db_error(e),
    }
}

fn get_row(conn: &Connection, table: &TableDef, key: &Key<'_>) -> rusqlite::Result<Option<Row>> {
    let mut stmt = conn.prepare_cached(&statements::select_row(table, Engine::Sqlite))?;
    stmt.query_row(params_from_iter(key.params()), |r| read_row(table, r)).optional()
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

// ---- writes -----------------------------------------------------------------------

/// The write attempts of the writer thread (see [`super::write`]), each in a `BEGIN
/// IMMEDIATE` transaction: it takes the database's write lock at once, so the clock row
/// needs no lock of its own ([`Stamp::Locked`]). Each step is a blocking call that never
/// waits, so the first poll finishes a write ([`complete_now`]). Dropped with an attempt
/// open (a panic), it rolls back.
struct SqliteWrite<'c> {
    conn: &'c Connection,
    /// Whether an attempt's transaction is open.
    open: bool,
}

impl<'c> SqliteWrite<'c> {
    fn new(conn: &'c Connection) -> SqliteWrite<'c> {
        SqliteWrite { conn, open: false }
    }

    fn read_clock(&self, table: &TableDef, key: &Key<'_>) -> Result<Option<ClockRow>, StorageError> {
        let mut stmt = self.conn.prepare_cached(&statements::read_clock(table, Engine::Sqlite)).map_err(db_error)?;
        stmt.query_row(params_from_iter(statements::clock_params(table, key)), |r| {
            Ok(ClockRow { updated_at: r.get(0)?, id: r.get(1)? })
        })
        .optional()
        .map_err(db_error)
    }

    /// Runs a statement; answers how many rows it changed.
    fn execute(&self, sql: &str, params: impl rusqlite::Params) -> Result<usize, StorageError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(db_error)?;
        stmt.execute(params).map_err(db_error)
    }
}

impl WriteAttempt for SqliteWrite<'_> {
    /// Always reads the row (under the write lock a read is cheap, and an insert that
    /// met a row would only be tried again).
    async fn begin(&mut self, table: &TableDef, key: &Key<'_>, _: bool) -> Result<Read, StorageError> {
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(db_error)?;
        self.open = true;
        let mut clock = self.read_clock(table, key)?;
        if clock.is_none() && table.owner_column.is_some() {
            // The owner's first write.
            let seed = statements::seed_owner_clock(Engine::Sqlite);
            self.execute(&seed, params_from_iter(statements::clock_params(table, key)))?;
            clock = self.read_clock(table, key)?;
        }
        let current = get_row(self.conn, table, key).map_err(db_error)?;
        Ok(Read { stamp: Stamp::Locked(clock), current })
    }

    async fn finish(&mut self, table: &TableDef, key: &Key<'_>, effect: Effect<'_>) -> Result<bool, StorageError> {
        let applied = match effect {
            Effect::Write { row, replaces } => {
                let sql = match replaces {
                    None => statements::insert_row(table, Engine::Sqlite, None),
                    Some(_) => statements::update_row(table, Engine::Sqlite, None),
                };
                let written =
                    self.execute(&sql, params_from_iter(statements::row_params(table, key, row, replaces)))?;
                if written == 1 {
                    let mut clock = vec![row.updated_at.as_str(), row.id.as_str()];
                    clock.extend(statements::clock_params(table, key));
                    self.execute(&statements::set_clock(table, Engine::Sqlite), params_from_iter(clock))?;
                }
                written == 1
            }
            Effect::Remove { version } => {
                let delete = statements::delete_row(table, Engine::Sqlite, None);
                self.execute(&delete, params_from_iter(statements::delete_params(key, version)))? == 1
            }
            Effect::Nothing => true,
        };
        self.conn.execute_batch("COMMIT").map_err(db_error)?;
        self.open = false;
        Ok(applied)
    }

    async fn abandon(&mut self) {
        if std::mem::take(&mut self.open) {
            if let Err(e) = self.conn.execute_batch("ROLLBACK") {
                tracing::warn!(error = %e, "rolling back a SQLite write failed");
            }
        }
    }
}

impl Drop for SqliteWrite<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// Runs a SQLite write ([`write::run`] over [`SqliteWrite`]) to its end on this thread:
/// its steps block instead of waiting, so the first poll finishes it. Were one to wait,
/// the write would fail (its transaction rolling back as the write is dropped) rather
/// than hang.
fn complete_now<T>(write: impl Future<Output = Result<T, StorageError>>) -> Result<T, StorageError> {
    let mut write = pin!(write);
    match write.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        Poll::Pending => Err(StorageError::Unavailable("a SQLite write step did not finish at once")),
    }
}

// ---- schema -----------------------------------------------------------------------

/// Creates the table, or checks an existing one and adds missing data columns; seeds
/// its clock row.
fn prepare_table(conn: &Connection, table: &TableDef) -> Result<(), StorageError> {
    for sql in schema::table_statements(table, stored_table(conn, table)?.as_ref(), Engine::Sqlite)? {
        conn.execute_batch(&sql).map_err(db_error)?;
    }
    conn.execute(&statements::seed_clock(table, Engine::Sqlite), [&table.name]).map_err(db_error)?;
    Ok(())
}

/// The table as stored (`None` when there is none), from `pragma_table_info`.
fn stored_table(conn: &Connection, table: &TableDef) -> Result<Option<StoredTable>, StorageError> {
    // (name, declared type, position in the primary key or 0)
    let columns: Vec<(String, String, i64)> = conn
        .prepare(&format!("SELECT name, type, pk FROM pragma_table_info({})", sql_string(&table.name)))
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect())
        .map_err(db_error)?;
    if columns.is_empty() {
        return Ok(None);
    }
    let mut key: Vec<(i64, String)> =
        columns.iter().filter(|(_, _, pk)| *pk > 0).map(|(n, _, pk)| (*pk, n.clone())).collect();
    key.sort_unstable();
    Ok(Some(StoredTable {
        columns: columns.into_iter().map(|(name, ty, _)| (name, ty)).collect(),
        key: key.into_iter().map(|(_, name)| name).collect(),
    }))
}

/// A SQL string literal (for the table-valued pragma function, which takes no
/// parameters in every SQLite version; the name is a validated identifier anyway).
fn sql_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    sync_core::sql::push_quoted(&mut out, s, '\'');
    out
}

// ---- the trait --------------------------------------------------------------------

impl Storage for SqliteStorage {
    fn prepare(&self, tables: Vec<Arc<TableDef>>) -> StorageFuture<'_, ()> {
        Box::pin(self.on_writer(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_error)?;
            for clock_table in schema::clock_tables(Engine::Sqlite) {
                tx.execute_batch(&clock_table).map_err(db_error)?;
            }
            for table in &tables {
                prepare_table(&tx, table)?;
            }
            tx.commit().map_err(db_error)
        }))
    }

    fn list(&self, table: Arc<TableDef>, query: ListQuery) -> StorageFuture<'_, Page> {
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

    fn get(&self, table: Arc<TableDef>, id: String, owner: Option<String>) -> StorageFuture<'_, Option<Row>> {
        Box::pin(self.read(move |conn| {
            let key = Key::new(&table, &id, owner.as_deref())?;
            get_row(conn, &table, &key).map_err(db_error)
        }))
    }

    fn write(&self, table: Arc<TableDef>, id: String, change: Change, owner: Option<String>) -> StorageFuture<'_, Row> {
        let clock = Arc::clone(&self.clock);
        Box::pin(self.on_writer(move |conn| {
            let key = Key::new(&table, &id, owner.as_deref())?;
            complete_now(write::run(&mut SqliteWrite::new(conn), &table, &key, change, &*clock))
        }))
    }

    fn health(&self) -> StorageFuture<'_, ()> {
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

    #[test]
    fn refused_queries_carry_our_words_not_sqlite_s() {
        let refused = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(1),
            Some("too many terms in ORDER BY clause".to_owned()),
        );
        match query_error(refused) {
            StorageError::InvalidQuery(message) => assert_eq!(message, crate::storage::QUERY_REFUSED),
            other => panic!("{other:?}"),
        }
        let busy = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(5), None);
        assert!(matches!(query_error(busy), StorageError::Database(_)));
    }
    use crate::stamp::ManualClock;
    use crate::storage::Update;
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

        let a = db
            .write(
                t.clone(),
                "b".into(),
                Change::Insert { values: vec![Value::String("x".into()), Value::Bool(false)] },
                None,
            )
            .await
            .unwrap();
        assert_eq!(a.updated_at, "2026-01-02T03:04:05.678Z");
        assert_eq!(a.created_at, a.updated_at);
        // Same millisecond, smaller id: moves on by one millisecond.
        let b = db
            .write(t.clone(), "a".into(), Change::Insert { values: vec![Value::Null, Value::Null] }, None)
            .await
            .unwrap();
        assert_eq!(b.updated_at, "2026-01-02T03:04:05.679Z");
        assert!(matches!(
            db.write(t.clone(), "a".into(), Change::Insert { values: vec![Value::Null, Value::Null] }, None).await,
            Err(StorageError::AlreadyExists(_))
        ));

        let up =
            Update { values: vec![(1, Value::Bool(true))], expected_version: Some("nope".into()), undelete: false };
        assert!(matches!(
            db.write(t.clone(), "b".into(), Change::Update(up), None).await,
            Err(StorageError::VersionMismatch(_))
        ));
        let up =
            Update { values: vec![(1, Value::Bool(true))], expected_version: Some(a.version.clone()), undelete: false };
        let a2 = db.write(t.clone(), "b".into(), Change::Update(up), None).await.unwrap();
        assert_ne!(a2.version, a.version);
        assert_eq!(a2.values, vec![Value::String("x".into()), Value::Bool(true)]);
        // Same millisecond as the last write, but a greater id: the pair still grows.
        assert_eq!(a2.updated_at, "2026-01-02T03:04:05.679Z");
        assert!((a2.updated_at.as_str(), "b") > (b.updated_at.as_str(), "a"));

        let gone =
            db.write(t.clone(), "b".into(), Change::Delete { expected_version: None, soft: true }, None).await.unwrap();
        assert!(gone.deleted);
        assert!(matches!(
            db.write(t.clone(), "b".into(), Change::Delete { expected_version: None, soft: true }, None).await,
            Err(StorageError::Deleted(_))
        ));
        let back = db.write(t.clone(), "b".into(), Change::Undelete { expected_version: None }, None).await.unwrap();
        assert!(!back.deleted);
        assert_eq!(db.get(t.clone(), "b".into(), None).await.unwrap(), Some(back));
        assert!(matches!(
            db.write(t.clone(), "zz".into(), Change::Delete { expected_version: None, soft: true }, None).await,
            Err(StorageError::NotFound)
        ));
        db.write(t.clone(), "a".into(), Change::Delete { expected_version: None, soft: false }, None).await.unwrap();
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
            db.write(t.clone(), "m".into(), Change::Insert { values: vec![Value::Null, Value::Null] }, None)
                .await
                .unwrap();
            // Hard delete of the newest row: the clock must not go back with it.
            db.write(t.clone(), "m".into(), Change::Delete { expected_version: None, soft: false }, None)
                .await
                .unwrap();
        }
        let db = SqliteStorage::open_file(path.clone(), Arc::new(clock.clone())).await.unwrap();
        db.prepare(vec![t.clone()]).await.unwrap();
        let r = db
            .write(t.clone(), "a".into(), Change::Insert { values: vec![Value::Null, Value::Null] }, None)
            .await
            .unwrap();
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
