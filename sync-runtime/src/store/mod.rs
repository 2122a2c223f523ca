//! The local store: one SQLite file (or memory), one writer connection that a thread
//! of the store runs writes on (a short write runs on its caller's thread when the
//! writer is idle), and read connections that callers read on.

mod call;
mod checkpoint;
mod cipher;
mod cursor;
mod errors;
mod integrity;
mod live;
mod meta;
mod migrate;
mod migration;
mod pending;
mod purge;
pub mod queue;
mod readers;
mod rejected;
mod schema;
mod server_copy;
mod table;
mod tx;
mod watch;

use std::collections::{HashMap, HashSet};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use sync_core::SyncEntity;

pub use call::StoreCall;
pub(crate) use call::block_on;
pub(crate) use cursor::PullCursor;
pub use errors::{ErrorRecord, SyncError};
pub use integrity::IntegrityReport;
pub use live::{Change, ChangeOrigin, ChangeStream};
pub(crate) use meta::{TableMeta, validate_id};
pub use migration::Migration;
pub use queue::PendingOp;
pub(crate) use queue::{ErrorInput, Folded, OpToSend, QueuedOp};
pub use rejected::RejectedRow;
pub(crate) use rejected::Rejection;
pub(crate) use server_copy::{Answered, ServerCopy};
pub use table::{Table, TableQuery};
pub use tx::Tx;
pub use watch::{Watch, WatchHandle};

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
#[derive(Clone, Debug, Default)]
pub struct StoreOptions {
    durability: Durability,
    max_value_bytes: Option<usize>,
    migrations: Vec<Migration>,
    #[cfg(feature = "encryption")]
    key: Option<cipher::Secret>,
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

    /// Encrypts the store file with SQLCipher (AES-256), the key derived from
    /// `passphrase`. A new file is created encrypted; an existing one must have been
    /// created with the same passphrase, or opening it fails with [`Error::WrongKey`]
    /// and leaves it untouched. The passphrase is kept in memory while the store is open
    /// (its read connections open with it) and never logged. Needs the `encryption`
    /// feature.
    #[cfg(feature = "encryption")]
    pub fn key(mut self, passphrase: impl Into<String>) -> Self {
        self.key = Some(cipher::Secret(passphrase.into()));
        self
    }

    /// Like [`key`](StoreOptions::key), with a raw 256-bit key used as it is (no key
    /// derivation: opening is faster; the key must come from a secure source, such as
    /// the platform's keychain).
    #[cfg(feature = "encryption")]
    pub fn raw_key(mut self, key: &[u8; 32]) -> Self {
        use std::fmt::Write as _;
        let mut hex = String::with_capacity(67);
        hex.push_str("x'");
        for byte in key {
            let _ = write!(hex, "{byte:02X}");
        }
        hex.push('\'');
        self.key = Some(cipher::Secret(hex));
        self
    }

    /// The app's migrations, every one it ever shipped, oldest first: those the store
    /// has not run yet run at open, together in one transaction (see [`Migration`]).
    pub fn migrations(mut self, migrations: impl IntoIterator<Item = Migration>) -> Self {
        self.migrations.extend(migrations);
        self
    }
}

/// What the store thread runs: a call's job, its answer already wired in.
type WorkerJob = Box<dyn FnOnce(&mut Worker) + Send>;

/// The one writer connection and its state, behind a lock: the store thread takes it
/// for each job it runs, and a caller takes it to run a short write itself when the
/// writer is idle and no job waits (see [`Store::try_inline`]). `None` once closed.
struct Writer {
    worker: Mutex<Option<Worker>>,
    /// Jobs sent to the store thread and not run yet: a caller never runs a write
    /// itself ahead of them.
    queued: AtomicUsize,
}

impl Writer {
    fn lock(&self) -> MutexGuard<'_, Option<Worker>> {
        // A job's panic is caught inside the lock (see `Store::submit`): a poisoned lock
        // holds a consistent worker (SQLite rolled the transaction back).
        self.worker.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The writer's state.
struct Worker {
    conn: Connection,
    tables: HashMap<&'static str, Arc<TableMeta>>,
    /// Operations whose HTTP request is out right now; never collapsed into.
    in_flight: HashSet<i64>,
    /// Set by [`Store::close`]: told once the connection is closed.
    close_ack: Option<oneshot::Sender<call::Answer<()>>>,
    /// Runs the WAL checkpoints of a store file off this thread.
    checkpointer: Option<checkpoint::Checkpointer>,
    /// The store's listeners, told of each commit.
    hub: Arc<live::Hub>,
    /// Other connections' commits, noticed while anyone listens (a file store only).
    external: live::ExternalWatch,
    on_file: bool,
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
/// to the same store. Its thread ends when the last handle is dropped.
///
/// Writes go through the one writer connection, one at a time, in the order they were
/// made. Transactions and the library's own writes run on the store's thread: a write is
/// sent there and its caller sleeps until the answer comes. One item's insert, update or
/// delete runs on the caller's thread instead when the writer is idle and nothing waits
/// for it (not with [`Durability::Full`]): two thread wake-ups cost more than such a
/// write. Reads of a store file run on
/// the calling thread, on read connections to the same file (WAL lets them read while
/// the writer writes, and each sees every write that returned before it began), so a
/// long write never delays a read. Every call is a [`StoreCall`]: `.await` it, or
/// `.wait()` for it where there is no async runtime. Store calls need no particular
/// async runtime (any executor polls them).
#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    /// Tells this store's thread from others (see [`ON_STORE_THREAD`]).
    id: u64,
    sender: mpsc::Sender<WorkerJob>,
    path: Option<PathBuf>,
    /// Read connections to the file (none for an in-memory store).
    readers: Option<readers::ReaderPool>,
    /// Held by a push for its whole run: pushes of one store take turns.
    push_turn: tokio::sync::Mutex<()>,
    /// Pulls take turns too.
    pull_turn: tokio::sync::Mutex<()>,
    /// The change streams and watches of this store.
    hub: Arc<live::Hub>,
    /// The writer, shared with the store thread.
    writer: Arc<Writer>,
    /// Whether short writes may run on the caller's thread (not with
    /// [`Durability::Full`], whose commits wait for the disk).
    inline_writes: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

thread_local! {
    /// The id of the store whose writer this thread holds (0 elsewhere): a store call
    /// made here, from inside a transaction closure, would wait for the transaction it
    /// runs in.
    static ON_STORE_THREAD: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Marks the current thread as holding a store's writer, until dropped.
struct WriterScope {
    previous: u64,
}

impl WriterScope {
    fn enter(id: u64) -> WriterScope {
        WriterScope { previous: ON_STORE_THREAD.with(|on| on.replace(id)) }
    }
}

impl Drop for WriterScope {
    fn drop(&mut self) {
        ON_STORE_THREAD.with(|on| on.set(self.previous));
    }
}

impl Store {
    /// Opens (or creates) the store in a file, with default options.
    pub fn open(path: impl AsRef<Path>) -> StoreCall<Store> {
        Store::open_with(path, StoreOptions::default())
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
    pub fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> StoreCall<Store> {
        let path = path.as_ref().to_path_buf();
        StoreCall::deferred(Box::new(move || Store::start(Some(path), options)))
    }

    /// Opens a private in-memory store (for tests and throwaway data).
    pub fn open_in_memory() -> StoreCall<Store> {
        Store::open_in_memory_with(StoreOptions::default())
    }

    /// Opens a private in-memory store with options.
    pub fn open_in_memory_with(options: StoreOptions) -> StoreCall<Store> {
        StoreCall::deferred(Box::new(move || Store::start(None, options)))
    }

    /// Spawns the store thread; it opens the file and answers with the store.
    fn start(path: Option<PathBuf>, options: StoreOptions) -> Result<oneshot::Receiver<call::Answer<Store>>> {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (sender, receiver) = mpsc::channel::<WorkerJob>();
        let (ready_tx, ready_rx) = oneshot::channel::<call::Answer<Store>>();
        let name = format!("sync-store:{}", path.as_deref().map_or("memory".into(), |p| p.display().to_string()));
        thread::Builder::new()
            .name(name)
            .spawn(move || {
                let _writer = WriterScope::enter(id);
                let worker = match open_connection(path.as_deref(), &options) {
                    Ok(conn) => {
                        let checkpointer = path.as_deref().and_then(|path| {
                            checkpoint::Checkpointer::start(&conn, path, &options)
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
                            hub: Arc::default(),
                            external: live::ExternalWatch::default(),
                            on_file: path.is_some(),
                        }
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Ok(Err(e)));
                        return;
                    }
                };
                let readers = path.clone().map(|path| readers::ReaderPool::new(path, options.clone()));
                let hub = Arc::clone(&worker.hub);
                let writer = Arc::new(Writer { worker: Mutex::new(Some(worker)), queued: AtomicUsize::new(0) });
                let store = Store {
                    inner: Arc::new(StoreInner {
                        id,
                        sender,
                        path,
                        readers,
                        push_turn: tokio::sync::Mutex::new(()),
                        pull_turn: tokio::sync::Mutex::new(()),
                        hub: Arc::clone(&hub),
                        writer: Arc::clone(&writer),
                        inline_writes: options.durability == Durability::Normal,
                    }),
                };
                // The store goes to the caller: this thread keeps no handle on it, so it
                // ends when the app drops its last one.
                if ready_tx.send(Ok(Ok(store))).is_err() {
                    return;
                }
                run_store_thread(&writer, &hub, &receiver);
            })
            .map_err(|_| Error::StoreClosed)?;
        Ok(ready_rx)
    }

    /// Closes the store: waits for the calls already sent to it, then closes the SQLite
    /// connections (checkpointing the WAL into the file). Other handles on the same
    /// store get [`Error::StoreClosed`] afterwards. Dropping every handle also closes the
    /// store, but without waiting.
    pub fn close(self) -> StoreCall<()> {
        StoreCall::deferred(Box::new(move || {
            if let Some(readers) = &self.inner.readers {
                readers.close();
            }
            let (ack_tx, ack_rx) = oneshot::channel();
            self.send_job(Box::new(move |w| w.close_ack = Some(ack_tx)))?;
            Ok(ack_rx)
        }))
    }

    /// The file this store lives in (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// Refuses a call made on this store's own thread: from inside a transaction
    /// closure, where it would wait for the transaction it runs in.
    fn refuse_from_own_thread(&self) -> Result<()> {
        if ON_STORE_THREAD.with(|on| on.get()) == self.inner.id {
            return Err(Error::CallInTransaction);
        }
        Ok(())
    }

    /// Sends `job` to the store thread; its answer comes back through the receiver.
    fn submit<R: Send + 'static>(&self, job: call::Job<R>) -> Result<oneshot::Receiver<call::Answer<R>>> {
        self.refuse_from_own_thread()?;
        let (tx, rx) = oneshot::channel();
        let job: WorkerJob = Box::new(move |worker| {
            // A panic in `job` (an app closure) must not take the store thread down: any
            // open transaction rolls back while unwinding, and the panic is raised
            // again in the caller, as if the closure had run there.
            let out = panic::catch_unwind(AssertUnwindSafe(|| job(worker)));
            let _ = tx.send(out);
        });
        self.send_job(job)?;
        Ok(rx)
    }

    /// Queues a job for the store thread, counted until it has run.
    fn send_job(&self, job: WorkerJob) -> Result<()> {
        let writer = &self.inner.writer;
        writer.queued.fetch_add(1, Ordering::SeqCst);
        self.inner.sender.send(job).map_err(|_| {
            writer.queued.fetch_sub(1, Ordering::SeqCst);
            Error::StoreClosed
        })
    }

    /// Runs `job` here, on the caller's thread, when the writer is idle and no job
    /// waits for the store thread: a short write then costs no trip to another thread
    /// and back (two wake-ups, which cost more than the write on a machine whose idle
    /// cores sleep). Otherwise gives the job back, to be sent. Jobs sent before keep
    /// their order: a caller never runs ahead of one.
    fn try_inline<R: Send + 'static>(&self, job: call::Job<R>) -> std::result::Result<Result<R>, call::Job<R>> {
        if let Err(e) = self.refuse_from_own_thread() {
            return Ok(Err(e));
        }
        let writer = &self.inner.writer;
        if writer.queued.load(Ordering::SeqCst) != 0 {
            return Err(job);
        }
        let mut guard = match writer.worker.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Err(job),
        };
        // A job sent between the first look and the lock goes first.
        if writer.queued.load(Ordering::SeqCst) != 0 {
            return Err(job);
        }
        let Some(worker) = guard.as_mut() else {
            return Ok(Err(Error::StoreClosed));
        };
        let out = {
            let _writer = WriterScope::enter(self.inner.id);
            let _hook = worker.checkpointer.as_ref().map(checkpoint::Checkpointer::enter);
            panic::catch_unwind(AssertUnwindSafe(|| job(worker)))
        };
        drop(guard);
        Ok(call::settle(out))
    }

    /// Runs `read` here, on a read connection, when the store has them; otherwise
    /// gives it back as a job for the store thread (an in-memory store).
    fn run_read<R: Send + 'static>(&self, read: call::Read<R>) -> std::result::Result<Result<R>, call::Job<R>> {
        if let Err(e) = self.refuse_from_own_thread() {
            return Ok(Err(e));
        }
        match &self.inner.readers {
            Some(readers) => Ok(readers.with(read)),
            None => Err(Box::new(move |w| read(&w.conn))),
        }
    }

    /// A job for the store thread, as a call.
    fn call<R, F>(&self, f: F) -> StoreCall<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Worker) -> Result<R> + Send + 'static,
    {
        StoreCall::job(self.clone(), Box::new(f))
    }

    /// A read, as a call (see [`Store::run_read`]).
    fn read<R, F>(&self, f: F) -> StoreCall<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        StoreCall::read(self.clone(), Box::new(f))
    }

    /// Waits for this store's turn to push: two pushes at once (from clones of one
    /// client, or two clients of one store) would send the same operations twice.
    pub(crate) async fn push_turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.push_turn.lock().await
    }

    /// Pulls of this store take turns: held for the length of one.
    pub(crate) async fn pull_turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.pull_turn.lock().await
    }

    /// Marks an operation as in flight (its request is out) or no longer: a write to
    /// its item then queues a second operation instead of collapsing into it.
    pub(crate) fn set_in_flight(&self, seq: i64, in_flight: bool) -> StoreCall<()> {
        self.call(move |w| {
            if in_flight {
                w.in_flight.insert(seq);
            } else {
                w.in_flight.remove(&seq);
            }
            Ok(())
        })
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
    pub fn table<E: SyncEntity>(&self) -> StoreCall<Table<E>> {
        let store = self.clone();
        self.call(move |w| w.meta::<E>().map(|meta| Table::new(store, meta)))
    }

    /// Runs `f` in one SQLite transaction on the store thread: every insert, update and
    /// delete it makes, across any tables, commits together with its queue operations,
    /// or none of them does (when `f` returns an error, or panics).
    ///
    /// The closure gets the transaction's [`Tx`]: calling the store or a table handle
    /// from inside it is refused with [`Error::CallInTransaction`] (it would wait for
    /// the very transaction it runs in). For a closure that ends with an error type of
    /// the app's own, see [`Store::try_transaction`].
    ///
    /// ```
    /// # use sync_runtime::{Store, SyncEntity};
    /// # #[derive(SyncEntity, Clone, Debug)]
    /// # struct TodoItem { id: String, text: String }
    /// # #[derive(SyncEntity, Clone, Debug)]
    /// # struct Tag { id: String, name: String }
    /// # fn main() -> sync_runtime::Result<()> {
    /// let store = Store::open_in_memory().wait()?;
    /// store
    ///     .transaction(|tx| {
    ///         let todo = tx.insert(TodoItem { id: String::new(), text: "buy milk".into() })?;
    ///         tx.insert(Tag { id: todo.id.clone(), name: "shopping".into() })?;
    ///         Ok(())
    ///     })
    ///     .wait()?;
    /// assert_eq!(store.pending_count().wait()?, 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn transaction<R, F>(&self, f: F) -> StoreCall<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<R> + Send + 'static,
    {
        self.call(move |w| tx::run(w, ChangeOrigin::Local, f))
    }

    /// A short write of the library's own (one item's insert, update or delete), as a
    /// call that runs on the caller's thread when the writer is idle (see
    /// [`Store::try_inline`]).
    pub(crate) fn write_one<R, F>(&self, f: F) -> StoreCall<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<R> + Send + 'static,
    {
        StoreCall::inline(self.clone(), Box::new(move |w| tx::run(w, ChangeOrigin::Local, f)))
    }

    /// [`Store::transaction`] for the library's own writes, told to listeners as
    /// changes of `origin`.
    pub(crate) fn transaction_as<R, F>(&self, origin: ChangeOrigin, f: F) -> StoreCall<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<R> + Send + 'static,
    {
        self.call(move |w| tx::run(w, origin, f))
    }

    /// [`Store::transaction`] for a closure that ends with the app's own error type:
    /// everything rolls back and the error comes back to the app unchanged. The store's
    /// own errors (from `tx` calls with `?`, or the commit) become `E` through
    /// `From<Error>`.
    ///
    /// ```
    /// # use sync_runtime::{Store, SyncEntity};
    /// # #[derive(SyncEntity, Clone, Debug)]
    /// # struct Account { id: String, balance: i64 }
    /// #[derive(Debug)]
    /// enum TransferError {
    ///     Insufficient { balance: i64 },
    ///     Store(sync_runtime::Error),
    /// }
    /// impl From<sync_runtime::Error> for TransferError {
    ///     fn from(e: sync_runtime::Error) -> Self {
    ///         TransferError::Store(e)
    ///     }
    /// }
    /// # fn main() -> sync_runtime::Result<()> {
    /// let store = Store::open_in_memory().wait()?;
    /// let accounts = store.table::<Account>().wait()?;
    /// accounts.insert(Account { id: "a".into(), balance: 5 }).wait()?;
    /// let outcome = store
    ///     .try_transaction(|tx| {
    ///         let mut a: Account = tx.get("a")?.expect("inserted above");
    ///         if a.balance < 10 {
    ///             return Err(TransferError::Insufficient { balance: a.balance });
    ///         }
    ///         a.balance -= 10;
    ///         tx.update(&a)?;
    ///         Ok(())
    ///     })
    ///     .wait();
    /// assert!(matches!(outcome, Err(TransferError::Insufficient { balance: 5 })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_transaction<R, E, F>(&self, f: F) -> StoreCall<R, E>
    where
        R: Send + 'static,
        E: From<Error> + Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> std::result::Result<R, E> + Send + 'static,
    {
        self.call(move |w| tx::run(w, ChangeOrigin::Local, |tx| f(tx).map_err(|e| Error::App(Box::new(e)))))
            .convert_err(app_error::<E>)
    }

    /// Like [`Store::transaction`] (a push's: its changes are of
    /// [`ChangeOrigin::Push`]), but sent to the store thread now and awaited later: the caller goes on with other work (a push sends its requests) while the
    /// store runs it. Calls made meanwhile run after it.
    pub(crate) fn transaction_now<R, F>(&self, f: F) -> StoreCall<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<R> + Send + 'static,
    {
        match self.submit(Box::new(move |w| tx::run(w, ChangeOrigin::Push, f))) {
            Ok(rx) => StoreCall::sent(rx),
            Err(e) => StoreCall::ready(Err(e)),
        }
    }
}

/// The store thread's loop: runs the jobs sent to it, one at a time with the writer
/// locked, until the store closes or its last handle is dropped. Sleeps in `recv` until
/// a job comes: a store with nothing to do costs nothing. While anyone listens to a
/// store file it wakes every 200 ms too, to read whether another process committed (and
/// for the timers of throttled watches).
fn run_store_thread(writer: &Writer, hub: &live::Hub, receiver: &mpsc::Receiver<WorkerJob>) {
    let mut listening = false;
    loop {
        let sleep = match writer.lock().as_ref() {
            Some(w) => w.external.sleep_for(hub, std::time::Instant::now()),
            None => break,
        };
        let job = match sleep {
            None => match receiver.recv() {
                Ok(job) => Some(job),
                Err(_) => break,
            },
            Some(wait) => match receiver.recv_timeout(wait) {
                Ok(job) => Some(job),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            },
        };
        if let Some(job) = job {
            let closing = match writer.lock().as_mut() {
                Some(w) => {
                    job(w);
                    w.close_ack.is_some()
                }
                None => true,
            };
            writer.queued.fetch_sub(1, Ordering::SeqCst);
            if closing {
                break;
            }
        }
        // Between jobs: read `data_version` when due, fire timers; once more after the
        // last listener left, to stop.
        if hub.has_listeners() || listening {
            listening = hub.has_listeners();
            if let Some(w) = writer.lock().as_mut() {
                let Worker { conn, external, on_file, .. } = w;
                external.tick(conn, hub, *on_file);
            }
        }
    }
    hub.close();
    let Some(mut worker) = writer.lock().take() else { return };
    let ack = worker.close_ack.take();
    // The checkpointer's connection first: the store's, closed last, then checkpoints
    // what is left and removes the log.
    drop(worker.checkpointer.take());
    drop(worker);
    tracing::debug!("store closed");
    if let Some(ack) = ack {
        let _ = ack.send(Ok(Ok(())));
    }
}

/// The app's own error of a [`Store::try_transaction`], back from its carrier; any other
/// error made into `E`.
fn app_error<E: From<Error> + 'static>(e: Error) -> E {
    match e {
        Error::App(payload) => match payload.downcast::<E>() {
            Ok(app) => *app,
            // Only `try_transaction` carries app errors, always of its own `E`.
            Err(_) => E::from(Error::StoreClosed),
        },
        other => E::from(other),
    }
}

/// Sets up any connection of the store, the writer's or a reader's: the value size
/// limit, the busy timeout, and the SQL functions compiled queries call.
fn configure_connection(conn: &Connection, options: &StoreOptions) -> Result<()> {
    cipher::unlock(conn, options)?;
    if let Some(max) = options.max_value_bytes {
        let max = i32::try_from(max).unwrap_or(i32::MAX);
        conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, max)?;
    }
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    sync_core::sql::sqlite::register_functions(conn)?;
    Ok(())
}

/// The writer connection: opened (or created), checked, in WAL mode, with the system
/// tables.
fn open_connection(path: Option<&Path>, options: &StoreOptions) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let mut conn = match path {
        Some(p) => Connection::open_with_flags(p, flags)?,
        None => Connection::open_in_memory()?,
    };
    configure_connection(&conn, options)?;
    let found_version = schema::check_version(&conn).map_err(|e| cipher::first_read_error(e, options, path))?;
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
