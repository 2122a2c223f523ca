//! The local store: one SQLite file (or memory), one thread that owns the connection,
//! and async callers that reach it over a channel, so no SQLite call ever runs on a
//! tokio worker.

mod checkpoint;
mod cursor;
mod errors;
mod integrity;
mod meta;
mod migrate;
mod migration;
mod pending;
mod purge;
pub mod queue;
mod rejected;
mod schema;
mod server_copy;
mod table;
mod tx;

use std::collections::{HashMap, HashSet};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use sync_core::SyncEntity;

pub(crate) use cursor::PullCursor;
pub use errors::{ErrorRecord, SyncError};
pub use integrity::IntegrityReport;
pub(crate) use meta::{TableMeta, validate_id};
pub use migration::Migration;
pub use queue::PendingOp;
pub(crate) use queue::{ErrorInput, OpToSend, QueuedOp};
pub use rejected::RejectedRow;
pub(crate) use rejected::Rejection;
pub(crate) use server_copy::{Answered, ServerCopy};
pub use table::{Table, TableQuery};
pub use tx::Tx;

/// How hard SQLite works to make a commit durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=NORMAL` in WAL mode: a commit survives the app being killed at any
    /// instant; the last commits may be lost if the whole machine loses power.
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit is fsynced; survives power loss; slower writes.
    Full,
}

/// Options for [`Store::open_with`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    durability: Durability,
    max_value_bytes: Option<usize>,
    migrations: Vec<Migration>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { durability: Durability::Normal, max_value_bytes: None, migrations: Vec::new() }
    }
}

impl StoreOptions {
    /// Default options.
    pub fn new() -> Self {
        StoreOptions::default()
    }

    /// Sets the durability of commits (default [`Durability::Normal`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Caps the size of one value (text or blob) and one row; larger writes fail with
    /// [`Error::RowTooLarge`]. Default: SQLite's own limit (1 GB).
    pub fn max_value_bytes(mut self, bytes: usize) -> Self {
        self.max_value_bytes = Some(bytes);
        self
    }

    /// The app's migrations, every one it ever shipped, oldest first: those the store
    /// has not run yet run at open, together in one transaction (see [`Migration`]).
    pub fn migrations(mut self, migrations: impl IntoIterator<Item = Migration>) -> Self {
        self.migrations.extend(migrations);
        self
    }
}

type Job = Box<dyn FnOnce(&mut Worker) + Send>;

/// State owned by the store thread.
struct Worker {
    conn: Connection,
    tables: HashMap<&'static str, Arc<TableMeta>>,
    /// Operations whose HTTP request is out right now; never collapsed into.
    in_flight: HashSet<i64>,
    /// Set by [`Store::close`]: told once the connection is closed.
    close_ack: Option<oneshot::Sender<()>>,
    /// Runs the WAL checkpoints of a store file off this thread.
    checkpointer: Option<checkpoint::Checkpointer>,
}

impl Worker {
    /// The metadata of `E`'s table, creating or migrating the table on first use.
    fn meta<E: SyncEntity>(&mut self) -> Result<Arc<TableMeta>> {
        if let Some(meta) = self.tables.get(E::TABLE) {
            return Ok(Arc::clone(meta));
        }
        let meta = Arc::new(TableMeta::new(E::TABLE, E::FIELD_DEFS)?);
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        schema::ensure_table(&tx, &meta)?;
        tx.commit()?;
        self.tables.insert(E::TABLE, Arc::clone(&meta));
        Ok(meta)
    }
}

/// The local store: a handle on one SQLite database. Cheap to clone; every clone talks
/// to the same thread. The thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    sender: mpsc::Sender<Job>,
    path: Option<PathBuf>,
    /// Held by a push for its whole run: pushes of one store take turns.
    push_turn: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store in a file, with default options.
    pub async fn open(path: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(path, StoreOptions::default()).await
    }

    /// Opens (or creates) the store in a file, with options: durability, a cap on
    /// value sizes, and the app's [`Migration`]s (run at open, see there).
    ///
    /// ```
    /// use sync_runtime::{Durability, Migration, Store, StoreOptions};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let options = StoreOptions::new()
    ///     .durability(Durability::Full) // fsync every commit: survives power loss
    ///     .max_value_bytes(1 << 20)
    ///     .migrations([Migration::new("TodoItem", 2).rename_column("title", "text")]);
    /// let store = Store::open_with(dir.path().join("app.db"), options).await?;
    /// assert!(store.path().is_some());
    /// store.close().await?; // waits for the writes sent before, then checkpoints
    /// # Ok::<_, sync_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        Store::start(Some(path), options).await
    }

    /// Opens a private in-memory store (for tests and throwaway data).
    pub async fn open_in_memory() -> Result<Store> {
        Store::start(None, StoreOptions::default()).await
    }

    /// Opens a private in-memory store with options.
    pub async fn open_in_memory_with(options: StoreOptions) -> Result<Store> {
        Store::start(None, options).await
    }

    async fn start(path: Option<PathBuf>, options: StoreOptions) -> Result<Store> {
        let (sender, receiver) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = oneshot::channel::<Result<()>>();
        let thread_path = path.clone();
        let name = format!("sync-store:{}", path.as_deref().map_or("memory".into(), |p| p.display().to_string()));
        thread::Builder::new()
            .name(name)
            .spawn(move || {
                let mut worker = match open_connection(thread_path.as_deref(), &options) {
                    Ok(conn) => {
                        let checkpointer = thread_path.as_deref().and_then(|path| {
                            checkpoint::Checkpointer::start(&conn, path)
                                .inspect_err(
                                    |e| tracing::warn!(error = %e, "no background checkpoints: commits run them"),
                                )
                                .ok()
                        });
                        Worker {
                            conn,
                            tables: HashMap::new(),
                            in_flight: HashSet::new(),
                            close_ack: None,
                            checkpointer,
                        }
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                if ready_tx.send(Ok(())).is_err() {
                    return;
                }
                while let Some(job) = next_job(&receiver) {
                    job(&mut worker);
                    if worker.close_ack.is_some() {
                        break;
                    }
                }
                let ack = worker.close_ack.take();
                // The checkpointer's connection first: the store's, closed last, then
                // checkpoints what is left and removes the log.
                drop(worker.checkpointer.take());
                drop(worker);
                tracing::debug!("store closed");
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
            })
            .map_err(|_| Error::StoreClosed)?;
        ready_rx.await.map_err(|_| Error::StoreClosed)??;
        Ok(Store { inner: Arc::new(StoreInner { sender, path, push_turn: tokio::sync::Mutex::new(()) }) })
    }

    /// Closes the store: waits for the operations already sent to it, then closes the
    /// SQLite connection (checkpointing the WAL into the file). Other handles on the
    /// same store get [`Error::StoreClosed`] afterwards. Dropping every handle also
    /// closes the store, but without waiting.
    pub async fn close(self) -> Result<()> {
        let (ack_tx, ack_rx) = oneshot::channel();
        self.call(move |w| {
            w.close_ack = Some(ack_tx);
            Ok(())
        })
        .await?;
        ack_rx.await.map_err(|_| Error::StoreClosed)
    }

    /// The file this store lives in (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// Sends `f` to the store thread; its result comes back through the receiver.
    fn submit<R, F>(&self, f: F) -> Result<oneshot::Receiver<thread::Result<Result<R>>>>
    where
        R: Send + 'static,
        F: FnOnce(&mut Worker) -> Result<R> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |worker| {
            // A panic in `f` (an app closure) must not take the store thread down: any
            // open transaction rolls back while unwinding, and the panic is raised
            // again in the caller, as if `f` had run there.
            let out = panic::catch_unwind(AssertUnwindSafe(|| f(worker)));
            let _ = tx.send(out);
        });
        self.inner.sender.send(job).map_err(|_| Error::StoreClosed)?;
        Ok(rx)
    }

    /// Runs `f` on the store thread and returns its result.
    async fn call<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Worker) -> Result<R> + Send + 'static,
    {
        let mut rx = self.submit(f)?;
        // Look for the answer for a moment (letting the executor run other tasks in
        // between) before parking: a small call is answered within microseconds, and
        // catching it saves a wake-up of this thread (see `CALLER_LINGER`).
        let started = Instant::now();
        let mut looks = 0u32;
        let answer = loop {
            match rx.try_recv() {
                Ok(answer) => break answer,
                Err(oneshot::error::TryRecvError::Closed) => return Err(Error::StoreClosed),
                Err(oneshot::error::TryRecvError::Empty) if started.elapsed() < CALLER_LINGER => {
                    // Mostly spin; now and then give the CPU to the store thread in case
                    // it waits for this one (a single core), then let the executor run
                    // other ready tasks. (Yielding the thread on every look cost a
                    // system call each time: the store thread's query ran slower.)
                    looks = looks.wrapping_add(1);
                    if looks % SPINS_PER_YIELD == 0 {
                        thread::yield_now();
                    } else {
                        std::hint::spin_loop();
                    }
                    yield_once().await;
                }
                Err(oneshot::error::TryRecvError::Empty) => return Submitted { rx: Ok(rx) }.wait().await,
            }
        };
        settle(answer)
    }

    /// Waits for this store's turn to push: two pushes at once (from clones of one
    /// client, or two clients of one store) would send the same operations twice.
    pub(crate) async fn push_turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.push_turn.lock().await
    }

    /// Marks an operation as in flight (its request is out) or no longer: a write to
    /// its item then queues a second operation instead of collapsing into it.
    pub(crate) async fn set_in_flight(&self, seq: i64, in_flight: bool) -> Result<()> {
        self.call(move |w| {
            if in_flight {
                w.in_flight.insert(seq);
            } else {
                w.in_flight.remove(&seq);
            }
            Ok(())
        })
        .await
    }

    /// The typed handle on `E`'s table, creating the table (or adding new columns) on
    /// first use. Fails with [`Error::SchemaMismatch`] when a stored column was removed
    /// or changed type (declare a [`Migration`] for such a change); the file is then
    /// left untouched.
    ///
    /// ```
    /// # use sync_runtime::{Store, SyncEntity};
    /// #[derive(SyncEntity, Clone, Debug, PartialEq)]
    /// struct Note {
    ///     id: String,
    ///     body: String,
    /// }
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = Store::open_in_memory().await?;
    /// let notes = store.table::<Note>().await?; // cheap to clone, and to ask for again
    /// assert_eq!(notes.name(), "Note");
    /// assert_eq!(notes.count_all().await?, 0);
    /// # Ok::<_, sync_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn table<E: SyncEntity>(&self) -> Result<Table<E>> {
        let meta = self.call(|w| w.meta::<E>()).await?;
        Ok(Table::new(self.clone(), meta))
    }

    /// Runs `f` in one SQLite transaction on the store thread: every insert, update and
    /// delete it makes, across any tables, commits together with its queue operations,
    /// or none of them does (when `f` returns an error).
    ///
    /// ```
    /// # use sync_runtime::{Store, SyncEntity};
    /// # #[derive(SyncEntity, Clone, Debug)]
    /// # struct TodoItem { id: String, text: String }
    /// # #[derive(SyncEntity, Clone, Debug)]
    /// # struct Tag { id: String, name: String }
    /// # tokio_test(async {
    /// let store = Store::open_in_memory().await?;
    /// store
    ///     .transaction(|tx| {
    ///         let todo = tx.insert(TodoItem { id: String::new(), text: "buy milk".into() })?;
    ///         tx.insert(Tag { id: todo.id.clone(), name: "shopping".into() })?;
    ///         Ok(())
    ///     })
    ///     .await?;
    /// assert_eq!(store.pending_count().await?, 2);
    /// # Ok::<_, sync_runtime::Error>(())
    /// # });
    /// # fn tokio_test<F: std::future::Future<Output = sync_runtime::Result<()>>>(f: F) {
    /// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f).unwrap()
    /// # }
    /// ```
    pub async fn transaction<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<R> + Send + 'static,
    {
        self.call(move |w| tx::run(w, f)).await
    }

    /// Like [`Store::transaction`], but sent to the store thread now and awaited
    /// later: the caller goes on with other work (a push sends its requests) while the
    /// store runs it. Calls made meanwhile run after it.
    pub(crate) fn transaction_now<R, F>(&self, f: F) -> Submitted<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<R> + Send + 'static,
    {
        Submitted { rx: self.submit(move |w| tx::run(w, f)) }
    }
}

/// A store call sent and not awaited yet (see [`Store::transaction_now`]).
pub(crate) struct Submitted<R> {
    rx: Result<oneshot::Receiver<thread::Result<Result<R>>>>,
}

impl<R> Submitted<R> {
    /// The call's result: at once when it is done, else once it is.
    pub(crate) async fn wait(self) -> Result<R> {
        settle(self.rx?.await.map_err(|_| Error::StoreClosed)?)
    }
}

/// A call's result, or its panic raised again in the caller.
fn settle<R>(answer: thread::Result<Result<R>>) -> Result<R> {
    answer.unwrap_or_else(|payload| panic::resume_unwind(payload))
}

/// Returns `Pending` once (after waking its task), then `Ready`: lets the executor run
/// other tasks before the caller looks again.
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

// Waking a sleeping thread costs tens of microseconds on many machines (an idle core of
// a virtual machine: about 100 us), more than a small store call itself (a `get`, a
// `pending_count`: a few us of SQLite). Each call crosses threads twice, so both ends
// look for a moment before they sleep, yielding the CPU between looks: a caller that
// only yielded to its executor measured worse on a busy machine (it kept the store
// thread from running). Measured with `cargo bench -p sync-bench` (`queue_read`,
// `insert_one`, `query`): a `next_op` went from about 100 us to under 10 us.

/// How long the store thread keeps looking for the next job before it sleeps: an app
/// awaiting one call after another sends the next within microseconds of getting the
/// last answer.
const LINGER: Duration = Duration::from_micros(50);

/// How long a caller keeps looking for its answer before its task parks: long enough
/// for a single insert (one commit) or a query of a hundred rows. A call that takes
/// longer costs this much extra CPU time of yielding, not latency.
const CALLER_LINGER: Duration = Duration::from_micros(500);

/// How many looks of a lingering caller or store thread spin for each one that yields
/// the thread (to the other side, should it wait for this core).
const SPINS_PER_YIELD: u32 = 16;

/// The next job, or `None` once every handle is gone.
fn next_job(receiver: &mpsc::Receiver<Job>) -> Option<Job> {
    let started = Instant::now();
    let mut looks = 0u32;
    loop {
        match receiver.try_recv() {
            Ok(job) => return Some(job),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) if started.elapsed() < LINGER => {
                looks = looks.wrapping_add(1);
                if looks % SPINS_PER_YIELD == 0 {
                    thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
            Err(mpsc::TryRecvError::Empty) => return receiver.recv().ok(),
        }
    }
}

fn open_connection(path: Option<&Path>, options: &StoreOptions) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let mut conn = match path {
        Some(p) => Connection::open_with_flags(p, flags)?,
        None => Connection::open_in_memory()?,
    };
    if let Some(max) = options.max_value_bytes {
        let max = i32::try_from(max).unwrap_or(i32::MAX);
        conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, max)?;
    }
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    sync_core::sql::sqlite::register_functions(&conn)?;
    let found_version = schema::check_version(&conn)?;
    if path.is_some() {
        let mode = sync_core::sql::sqlite::switch_to_wal(&conn, Duration::from_secs(5))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(mode, "could not switch the store to WAL mode");
        }
    }
    let sync = match options.durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    conn.execute_batch(&format!("PRAGMA synchronous={sync}; PRAGMA foreign_keys=OFF;"))?;
    schema::init_system_tables(&mut conn, found_version)?;
    migrate::run(&mut conn, &options.migrations)?;
    Ok(conn)
}

#[cfg(test)]
mod tests;
