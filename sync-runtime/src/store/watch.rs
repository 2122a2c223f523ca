//! Watched queries: a result now, and again each time a commit changes it.
//!
//! A watch listens on the store's [`Hub`](super::live::Hub) for the table (or row, or
//! queue) its query reads. A commit that concerns it marks it stale and wakes it; the
//! watch then reads again, on the thread that polls it (a read connection, like any
//! read), and yields only when the rows differ from the last ones it yielded, decoding
//! them only then. Commits that come while it reads or waits to be polled mark it
//! stale once: a burst costs at most one more read, and that read sees the last state.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params_from_iter};

use crate::error::{Error, Result};
use sync_core::query::Query;
use sync_core::{SyncEntity, Value};

use super::live::{Interest, Mailbox};
use super::meta::TableMeta;
use super::table::{Table, TableQuery};
use super::{Store, StoreCall, errors, queue};

/// What a watch reads: rows of values, compared with the last ones as they are.
type Rows = Vec<Vec<Value>>;
type ReadFn = dyn Fn(&Connection) -> Result<Rows> + Send + Sync;
type DecodeFn<T> = dyn Fn(&Rows) -> Result<T> + Send + Sync;

/// A watched query: a `futures::Stream` of its result, first as it is now, then after
/// each commit that changes it. A result equal to the last one is not yielded again;
/// commits that come faster than the stream is polled coalesce (the last state always
/// arrives). Made by [`TableQuery::watch`], [`TableQuery::watch_count`],
/// [`Table::watch_get`], [`Store::watch_pending_count`] and
/// [`Store::watch_error_count`].
///
/// Await results with [`Watch::next`], wait for them on a thread with no async
/// runtime with [`Watch::wait_next`], or have a callback run with each on a thread of
/// its own with [`Watch::on_change`]. A read that fails is yielded as an error, and the
/// watch goes on. The stream ends when the store closes. Dropping it stops all work
/// for it.
///
/// ```
/// # use sync_runtime::{Store, SyncEntity};
/// # #[derive(SyncEntity, Clone, Debug, PartialEq)]
/// # struct Note { id: String, text: String, done: bool }
/// # fn main() -> sync_runtime::Result<()> {
/// let store = Store::open_in_memory().wait()?;
/// let notes = store.table::<Note>().wait()?;
/// let mut open = notes.query().filter(Note::FIELDS.done.eq(false)).watch();
/// assert!(open.wait_next().unwrap()?.is_empty()); // the result now
/// notes.insert(Note { id: "n1".into(), text: "milk".into(), done: false }).wait()?;
/// assert_eq!(open.wait_next().unwrap()?.len(), 1); // after the commit
/// # Ok(())
/// # }
/// ```
#[must_use = "a watch does nothing unless polled"]
pub struct Watch<T> {
    store: Store,
    id: u64,
    mailbox: Arc<Mailbox>,
    read: Arc<ReadFn>,
    decode: Arc<DecodeFn<T>>,
    /// The rows last yielded.
    last: Option<Rows>,
    step: Step,
    throttle: Option<Duration>,
    /// With a throttle: not before this instant.
    next_read_at: Option<Instant>,
    /// How many times the query was read.
    reads: u64,
}

enum Step {
    /// The store's watch on other processes is being started; then the first read.
    Starting(StoreCall<()>),
    /// A read is running (on the store thread, for an in-memory store).
    Reading(StoreCall<Rows>),
    /// Waiting for a commit that concerns the watch.
    Waiting,
    /// The store closed.
    Ended,
}

impl<T> std::fmt::Debug for Watch<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").field("id", &self.id).field("throttle", &self.throttle).finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Watch<T> {
    fn new(store: &Store, interest: Interest, read: Arc<ReadFn>, decode: Arc<DecodeFn<T>>) -> Watch<T> {
        let (id, mailbox) = store.subscribe(interest);
        Watch {
            store: store.clone(),
            id,
            mailbox,
            read,
            decode,
            last: None,
            step: Step::Starting(store.start_external_watch()),
            throttle: None,
            next_read_at: None,
            reads: 0,
        }
    }

    /// Reads again at most once per `interval`: commits in between are seen by the next
    /// read, after the interval (the last state still arrives).
    pub fn throttle(mut self, interval: Duration) -> Self {
        self.throttle = Some(interval);
        self
    }

    /// The next result; `None` once the store has closed.
    pub async fn next(&mut self) -> Option<Result<T>> {
        std::future::poll_fn(|cx| self.poll_result(cx)).await
    }

    /// The next result, sleeping on this thread until it comes: for code with no async
    /// runtime. `None` once the store has closed.
    pub fn wait_next(&mut self) -> Option<Result<T>> {
        super::call::block_on(std::future::poll_fn(|cx| self.poll_result(cx)))
    }

    /// Runs `f` with each result, on a thread of the watch's own, until the returned
    /// handle is dropped or stopped, or the store closes: the callback form, for apps
    /// without an async runtime (a UI toolkit's callback can store the result and ask
    /// for a redraw).
    pub fn on_change<F>(self, mut f: F) -> WatchHandle
    where
        F: FnMut(Result<T>) + Send + 'static,
    {
        let mailbox = Arc::clone(&self.mailbox);
        let mut watch = self;
        let thread = thread::Builder::new().name("sync-watch".into()).spawn(move || {
            while let Some(result) = watch.wait_next() {
                f(result);
            }
        });
        if let Err(e) = &thread {
            tracing::error!(error = %e, "cannot start a watch's thread");
        }
        WatchHandle { mailbox, thread: thread.ok() }
    }

    fn poll_result(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        loop {
            match &mut self.step {
                Step::Ended => return Poll::Ready(None),
                Step::Starting(call) => match Pin::new(call).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(Error::StoreClosed)) => self.step = Step::Ended,
                    Poll::Ready(Err(e)) => {
                        // Other processes' commits will not be noticed; the rest works.
                        tracing::warn!(error = %e, "a watch cannot hear of other processes' commits");
                        self.step = self.read_now();
                    }
                    Poll::Ready(Ok(())) => self.step = self.read_now(),
                },
                Step::Reading(call) => match Pin::new(call).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(Error::StoreClosed)) => self.step = Step::Ended,
                    Poll::Ready(Err(e)) => {
                        self.step = Step::Waiting;
                        return Poll::Ready(Some(Err(e)));
                    }
                    Poll::Ready(Ok(rows)) => {
                        self.step = Step::Waiting;
                        if self.last.as_ref() == Some(&rows) {
                            continue;
                        }
                        let out = (self.decode)(&rows);
                        self.last = Some(rows);
                        self.next_read_at = self.throttle.map(|t| Instant::now() + t);
                        return Poll::Ready(Some(out));
                    }
                },
                Step::Waiting => {
                    match self.mailbox.poll_stale(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(false) => self.step = Step::Ended,
                        Poll::Ready(true) => {
                            if let Some(at) = self.next_read_at {
                                if Instant::now() < at {
                                    // Not yet: the hub wakes the watch at `at` (it is
                                    // parked first, so the wake-up cannot be missed).
                                    self.mailbox.park(cx);
                                    self.store.wake_at(self.id, &self.mailbox, at);
                                    return Poll::Pending;
                                }
                                self.next_read_at = None;
                            }
                            self.mailbox.clear_stale();
                            self.step = self.read_now();
                        }
                    }
                }
            }
        }
    }

    /// How many times the watch has read its query (the first read included): the
    /// work it cost, for tests and tuning. Commits that do not concern it cost no read.
    pub fn reads(&self) -> u64 {
        self.reads
    }

    fn read_now(&mut self) -> Step {
        self.reads += 1;
        let read = Arc::clone(&self.read);
        Step::Reading(self.store.read(move |conn| read(conn)))
    }
}

impl<T: Send + 'static> futures_core::Stream for Watch<T> {
    type Item = Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        self.get_mut().poll_result(cx)
    }
}

impl<T> Drop for Watch<T> {
    fn drop(&mut self) {
        self.store.unsubscribe(self.id);
    }
}

/// The thread of a [`Watch::on_change`] callback: dropping the handle (or
/// [`WatchHandle::stop`]) ends it after the callback it is running, if any.
#[derive(Debug)]
pub struct WatchHandle {
    mailbox: Arc<Mailbox>,
    thread: Option<thread::JoinHandle<()>>,
}

impl WatchHandle {
    /// Ends the watch and waits for its thread to end (after the callback it is
    /// running). Called from the callback itself, it does not wait.
    pub fn stop(mut self) {
        self.mailbox.close();
        if let Some(thread) = self.thread.take() {
            if thread.thread().id() != thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.mailbox.close();
    }
}

fn read_rows<P: rusqlite::ToSql>(conn: &Connection, meta: &TableMeta, sql: &str, params: &[P]) -> Result<Rows> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params_from_iter(params.iter()))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(meta.read_row(r)?);
    }
    Ok(out)
}

fn count_rows(n: u64) -> Rows {
    vec![vec![Value::Int(n as i64)]]
}

fn decode_count(rows: &Rows) -> Result<u64> {
    match rows.first().and_then(|r| r.first()) {
        Some(Value::Int(n)) => Ok(*n as u64),
        _ => Ok(0),
    }
}

impl<E: SyncEntity> TableQuery<E> {
    /// Watches the items this query selects: yields them now, then after each commit
    /// that changes them (see [`Watch`]).
    pub fn watch(self) -> Watch<Vec<E>> {
        let (table, query) = self.into_parts();
        watch_query(&table, query)
    }

    /// Watches how many items this query's filter selects (see [`Watch`]): a badge.
    pub fn watch_count(self) -> Watch<u64> {
        let (table, query) = self.into_parts();
        let meta = Arc::clone(table.meta());
        let read: Arc<ReadFn> = Arc::new(move |conn| super::tx::count_on(conn, &meta, &query).map(count_rows));
        Watch::new(table.store(), Interest::Table(table.name()), read, Arc::new(decode_count))
    }
}

fn watch_query<E: SyncEntity>(table: &Table<E>, query: Query<E>) -> Watch<Vec<E>> {
    let meta = Arc::clone(table.meta());
    let read: Arc<ReadFn> = {
        let meta = Arc::clone(&meta);
        Arc::new(move |conn| {
            let q = meta.select(query.spec())?;
            read_rows(conn, &meta, &q.sql, &q.params)
        })
    };
    let decode: Arc<DecodeFn<Vec<E>>> = Arc::new(move |rows| rows.iter().map(|row| meta.decode(row)).collect());
    Watch::new(table.store(), Interest::Table(table.name()), read, decode)
}

impl<E: SyncEntity> Table<E> {
    /// Watches every item of the table (see [`Watch`]).
    pub fn watch_all(&self) -> Watch<Vec<E>> {
        watch_query(self, Query::new())
    }

    /// Watches one item: `None` while there is no item with this id (see [`Watch`]).
    /// Writes to other rows of the table do not wake it.
    pub fn watch_get(&self, id: &str) -> Watch<Option<E>> {
        let meta = Arc::clone(self.meta());
        let key = id.to_owned();
        let read: Arc<ReadFn> = {
            let meta = Arc::clone(&meta);
            let id = key.clone();
            Arc::new(move |conn| read_rows(conn, &meta, &meta.select_by_id, &[Value::String(id.clone())]))
        };
        let decode: Arc<DecodeFn<Option<E>>> =
            Arc::new(move |rows| rows.first().map(|row| meta.decode(row)).transpose());
        Watch::new(self.store(), Interest::Row(self.name(), key), read, decode)
    }

    /// Watches how many operations of this table are queued (see [`Watch`]).
    pub fn watch_pending_count(&self) -> Watch<u64> {
        let table = self.name();
        let read: Arc<ReadFn> = Arc::new(move |conn| queue::count_ops(conn, Some(table)).map(count_rows));
        Watch::new(self.store(), Interest::Queue, read, Arc::new(decode_count))
    }
}

impl Store {
    /// Watches how many operations are queued, across all tables: a "not yet synced"
    /// badge (see [`Watch`]).
    pub fn watch_pending_count(&self) -> Watch<u64> {
        let read: Arc<ReadFn> = Arc::new(|conn| queue::count_ops(conn, None).map(count_rows));
        Watch::new(self, Interest::Queue, read, Arc::new(decode_count))
    }

    /// Watches how many refused operations wait in the error table (see [`Watch`]).
    pub fn watch_error_count(&self) -> Watch<u64> {
        let read: Arc<ReadFn> = Arc::new(|conn| errors::count_errors(conn, None).map(count_rows));
        Watch::new(self, Interest::Errors, read, Arc::new(decode_count))
    }
}
