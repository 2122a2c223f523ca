//! The changes a store commits, told to whoever listens: [`Store::changes`] streams and
//! the watches of [`super::watch`].
//!
//! Every transaction records what it touched (tables and ids, the queue, the error
//! table) as it writes; when it commits, the store thread hands that record to the
//! [`Hub`], which passes it to each listener it concerns: a change stream queues it, a
//! watch is marked stale and woken. A rolled-back transaction tells nobody. Commits by
//! another connection to the same file (another process) are noticed through SQLite's
//! `data_version`, which the store thread reads every [`EXTERNAL_POLL`] while anyone
//! listens, and never when nobody does.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::Store;

/// How often the store reads `data_version` while anyone listens: the longest a commit
/// of another process waits before its listeners hear of it.
pub(crate) const EXTERNAL_POLL: Duration = Duration::from_millis(200);

/// A change stream that falls this many events behind loses them, and gets one event
/// saying so instead (see [`Change::missed`]).
const MAX_QUEUED: usize = 4096;

/// Ids listed per table in one change; beyond it, the change names the table only.
const MAX_IDS: usize = 10_000;

/// Where a committed change came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChangeOrigin {
    /// The app's own write: an insert, update or delete, or a transaction.
    Local,
    /// A page of a pull: server rows written into the local tables.
    Pull,
    /// A push: operations marked as sent, answered (the server's version written back),
    /// or refused (moved to the error table).
    Push,
    /// A call settling a refused operation (the `resolve_*` calls).
    Resolution,
    /// A purge of local rows.
    Purge,
    /// A commit by another connection to the same file, most likely another process
    /// (a command-line tool, an app extension). What it touched is not known.
    OtherProcess,
    /// Events this listener fell too far behind to keep; what they touched is not
    /// known (see [`Change::missed`]).
    Unknown,
}

/// One committed transaction: where it came from and what it touched. Cheap to clone.
///
/// A change of [`ChangeOrigin::OtherProcess`] or [`ChangeOrigin::Unknown`] does not know
/// what it touched: [`Change::touches`] is then true for every table.
#[derive(Clone, Debug)]
pub struct Change {
    inner: Arc<ChangeInner>,
}

#[derive(Debug)]
struct ChangeInner {
    origin: ChangeOrigin,
    /// `None`: not known.
    tables: Option<BTreeMap<&'static str, Ids>>,
    queue: bool,
    errors: bool,
    missed: u64,
}

/// The ids a transaction touched in one table.
#[derive(Debug, Clone)]
enum Ids {
    Listed(BTreeSet<String>),
    /// More than [`MAX_IDS`]: the table as a whole.
    Many,
}

impl Change {
    /// Where the change came from.
    pub fn origin(&self) -> ChangeOrigin {
        self.inner.origin
    }

    /// Whether the change says what it touched (false for another process's commit and
    /// for missed events).
    pub fn is_known(&self) -> bool {
        self.inner.tables.is_some()
    }

    /// The tables whose rows the transaction wrote (none when not known).
    pub fn tables(&self) -> impl Iterator<Item = &str> {
        self.inner.tables.iter().flat_map(|t| t.keys().copied())
    }

    /// Whether the transaction may have written rows of `table`: true when it did, and
    /// when what it touched is not known.
    pub fn touches(&self, table: &str) -> bool {
        self.inner.tables.as_ref().is_none_or(|t| t.contains_key(table))
    }

    /// Whether the transaction may have written the row `id` of `table` (true when not
    /// known).
    pub fn touches_row(&self, table: &str, id: &str) -> bool {
        match &self.inner.tables {
            None => true,
            Some(tables) => match tables.get(table) {
                None => false,
                Some(Ids::Many) => true,
                Some(Ids::Listed(ids)) => ids.contains(id),
            },
        }
    }

    /// The ids of `table` the transaction wrote, in order: `None` when it wrote none,
    /// or when they are not listed (not known, or more than 10,000 in one transaction:
    /// see [`Change::touches`]).
    pub fn ids(&self, table: &str) -> Option<impl Iterator<Item = &str>> {
        match self.inner.tables.as_ref()?.get(table)? {
            Ids::Listed(ids) => Some(ids.iter().map(String::as_str)),
            Ids::Many => None,
        }
    }

    /// Whether the operations queue changed (an operation added, collapsed, sent,
    /// answered or removed): what `pending_count` counts. True when not known.
    pub fn queue_changed(&self) -> bool {
        self.inner.queue || !self.is_known()
    }

    /// Whether the error table changed. True when not known.
    pub fn errors_changed(&self) -> bool {
        self.inner.errors || !self.is_known()
    }

    /// For a change of [`ChangeOrigin::Unknown`]: how many events this listener missed
    /// (it was more than 4,096 events behind); otherwise 0.
    pub fn missed(&self) -> u64 {
        self.inner.missed
    }

    fn unknown(origin: ChangeOrigin, missed: u64) -> Change {
        Change { inner: Arc::new(ChangeInner { origin, tables: None, queue: true, errors: true, missed }) }
    }
}

/// What one transaction touched, recorded as it writes.
#[derive(Debug, Default)]
pub(crate) struct ChangeSet {
    tables: BTreeMap<&'static str, Ids>,
    queue: bool,
    errors: bool,
}

impl ChangeSet {
    /// A row of `table` written.
    pub(crate) fn row(&mut self, table: &'static str, id: &str) {
        let ids = self.tables.entry(table).or_insert_with(|| Ids::Listed(BTreeSet::new()));
        if let Ids::Listed(listed) = ids {
            if !listed.contains(id) {
                if listed.len() >= MAX_IDS {
                    *ids = Ids::Many;
                } else {
                    listed.insert(id.to_owned());
                }
            }
        }
    }

    /// Rows of `table` written, too many to list.
    pub(crate) fn many_rows(&mut self, table: &'static str) {
        self.tables.insert(table, Ids::Many);
    }

    /// The queue changed.
    pub(crate) fn queue(&mut self) {
        self.queue = true;
    }

    /// The error table changed.
    pub(crate) fn errors(&mut self) {
        self.errors = true;
    }

    fn is_empty(&self) -> bool {
        self.tables.is_empty() && !self.queue && !self.errors
    }

    fn into_change(self, origin: ChangeOrigin) -> Change {
        Change {
            inner: Arc::new(ChangeInner {
                origin,
                tables: Some(self.tables),
                queue: self.queue,
                errors: self.errors,
                missed: 0,
            }),
        }
    }
}

/// What a listener wants to hear of.
#[derive(Debug, Clone)]
pub(crate) enum Interest {
    /// Every change (a change stream).
    Everything,
    /// Rows of one table.
    Table(&'static str),
    /// One row of one table.
    Row(&'static str, String),
    /// The queue.
    Queue,
    /// The error table.
    Errors,
}

impl Interest {
    fn in_change(&self, change: &Change) -> bool {
        match self {
            Interest::Everything => true,
            Interest::Table(table) => change.touches(table),
            Interest::Row(table, id) => change.touches_row(table, id),
            Interest::Queue => change.queue_changed(),
            Interest::Errors => change.errors_changed(),
        }
    }
}

/// One listener's side of the hub.
#[derive(Debug)]
pub(crate) struct Mailbox {
    interest: Interest,
    state: Mutex<MailState>,
}

#[derive(Debug, Default)]
struct MailState {
    /// A change stream's events, oldest first.
    events: VecDeque<Change>,
    /// Events dropped since the stream last took one.
    missed: u64,
    /// A watch's result may have changed.
    stale: bool,
    /// The store closed, or the listener's owner stopped it: no more events.
    closed: bool,
    /// A timer of the hub is set for this listener.
    timer_set: bool,
    waker: Option<Waker>,
}

impl Mailbox {
    fn lock(&self) -> MutexGuard<'_, MailState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn deliver(&self, change: &Change) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        match self.interest {
            Interest::Everything => {
                if state.events.len() >= MAX_QUEUED {
                    state.missed += state.events.len() as u64 + 1;
                    state.events.clear();
                } else {
                    state.events.push_back(change.clone());
                }
            }
            _ => state.stale = true,
        }
        wake(state);
    }

    /// Whether the result a watch last read may be out of date (`Ready(true)`), or the
    /// listener is closed (`Ready(false)`); otherwise `cx` is woken once it may be.
    pub(crate) fn poll_stale(&self, cx: &Context<'_>) -> Poll<bool> {
        let mut state = self.lock();
        if state.stale {
            return Poll::Ready(true);
        }
        if state.closed {
            return Poll::Ready(false);
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The watch is about to read: commits from now on make it stale again.
    pub(crate) fn clear_stale(&self) {
        self.lock().stale = false;
    }

    /// Registers `cx` to be woken by the next event (or a timer).
    pub(crate) fn park(&self, cx: &Context<'_>) {
        self.lock().waker = Some(cx.waker().clone());
    }

    /// Ends the listener: its stream ends after what it holds.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        wake(state);
    }
}

fn wake(state: MutexGuard<'_, MailState>) {
    let mut state = state;
    let waker = state.waker.take();
    drop(state);
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// The listeners of one store, and the timers of throttled watches.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    inner: Mutex<HubState>,
    /// How many listeners there are (read without the lock on every commit).
    listeners: AtomicUsize,
    /// How many timers are set (read without the lock between jobs).
    timers: AtomicUsize,
}

#[derive(Debug, Default)]
struct HubState {
    next_id: u64,
    mailboxes: Vec<(u64, Arc<Mailbox>)>,
    /// Wake-ups asked for by throttled watches: when, and whom.
    timers: Vec<(Instant, u64)>,
    closed: bool,
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether anyone listens.
    pub(crate) fn has_listeners(&self) -> bool {
        self.listeners.load(Ordering::Acquire) > 0
    }

    /// How many listeners there are.
    pub(crate) fn listener_count(&self) -> usize {
        self.listeners.load(Ordering::Acquire)
    }

    /// Adds a listener; `None` when the store is closed.
    pub(crate) fn subscribe(&self, interest: Interest) -> (u64, Arc<Mailbox>) {
        let mailbox = Arc::new(Mailbox { interest, state: Mutex::new(MailState::default()) });
        let mut hub = self.lock();
        hub.next_id += 1;
        let id = hub.next_id;
        if hub.closed {
            mailbox.lock().closed = true;
        } else {
            hub.mailboxes.push((id, Arc::clone(&mailbox)));
            self.listeners.fetch_add(1, Ordering::AcqRel);
        }
        (id, mailbox)
    }

    /// Removes a listener (its stream was dropped).
    pub(crate) fn unsubscribe(&self, id: u64) {
        let mut hub = self.lock();
        if let Some(at) = hub.mailboxes.iter().position(|(i, _)| *i == id) {
            hub.mailboxes.swap_remove(at);
            self.listeners.fetch_sub(1, Ordering::AcqRel);
        }
        hub.timers.retain(|(_, i)| *i != id);
        self.timers.store(hub.timers.len(), Ordering::Release);
    }

    /// Tells every listener `set` concerns; a set that touched nothing tells nobody.
    pub(crate) fn publish(&self, set: ChangeSet, origin: ChangeOrigin) {
        if set.is_empty() || !self.has_listeners() {
            return;
        }
        self.send(&set.into_change(origin));
    }

    /// Tells every listener that another connection committed.
    pub(crate) fn publish_external(&self) {
        self.send(&Change::unknown(ChangeOrigin::OtherProcess, 0));
    }

    fn send(&self, change: &Change) {
        let mailboxes: Vec<Arc<Mailbox>> = self
            .lock()
            .mailboxes
            .iter()
            .filter(|(_, m)| m.interest.in_change(change))
            .map(|(_, m)| Arc::clone(m))
            .collect();
        for mailbox in mailboxes {
            mailbox.deliver(change);
        }
    }

    /// Asks for `id`'s listener to be woken at `at`; true when this is now the earliest
    /// timer (the store thread must then be told, to sleep less).
    pub(crate) fn set_timer(&self, id: u64, mailbox: &Mailbox, at: Instant) -> bool {
        {
            let mut state = mailbox.lock();
            if state.timer_set {
                return false;
            }
            state.timer_set = true;
        }
        let mut hub = self.lock();
        let earliest = hub.timers.iter().all(|(t, _)| *t > at);
        hub.timers.push((at, id));
        self.timers.store(hub.timers.len(), Ordering::Release);
        earliest
    }

    /// The earliest timer, if any.
    pub(crate) fn next_timer(&self) -> Option<Instant> {
        if self.timers.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.lock().timers.iter().map(|(t, _)| *t).min()
    }

    /// Wakes the listeners whose timers are due.
    pub(crate) fn fire_timers(&self, now: Instant) {
        if self.timers.load(Ordering::Acquire) == 0 {
            return;
        }
        let due: Vec<Arc<Mailbox>> = {
            let mut hub = self.lock();
            let HubState { timers, mailboxes, .. } = &mut *hub;
            let mut due = Vec::new();
            timers.retain(|(t, id)| {
                if *t > now {
                    return true;
                }
                if let Some((_, m)) = mailboxes.iter().find(|(i, _)| i == id) {
                    due.push(Arc::clone(m));
                }
                false
            });
            self.timers.store(timers.len(), Ordering::Release);
            due
        };
        for mailbox in due {
            let mut state = mailbox.lock();
            state.timer_set = false;
            wake(state);
        }
    }

    /// The store closed: every listener's stream ends.
    pub(crate) fn close(&self) {
        let mailboxes = {
            let mut hub = self.lock();
            hub.closed = true;
            hub.timers.clear();
            self.timers.store(0, Ordering::Release);
            std::mem::take(&mut hub.mailboxes)
        };
        self.listeners.store(0, Ordering::Release);
        for (_, mailbox) in mailboxes {
            mailbox.close();
        }
    }
}

/// The store thread's watch on other connections' commits: `data_version` read every
/// [`EXTERNAL_POLL`] while anyone listens.
#[derive(Debug, Default)]
pub(crate) struct ExternalWatch {
    /// The value last read, and when to read it next; `None` while nobody listens.
    last: Option<(i64, Instant)>,
}

impl ExternalWatch {
    /// How long the store thread may sleep waiting for a job: `None` for as long as it
    /// takes (nobody listens, no timer set).
    pub(crate) fn sleep_for(&self, hub: &Hub, now: Instant) -> Option<Duration> {
        if !hub.has_listeners() {
            return None;
        }
        let poll = self.last.map(|(_, next)| next);
        let timer = hub.next_timer();
        let wake_at = match (poll, timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        wake_at.map(|at| at.saturating_duration_since(now))
    }

    /// Runs between jobs on the store thread: reads `data_version` when due (and tells
    /// the listeners when it moved), fires due timers, and starts or stops watching as
    /// listeners come and go.
    pub(crate) fn tick(&mut self, conn: &rusqlite::Connection, hub: &Hub, on_file: bool) {
        if !hub.has_listeners() {
            // Timers belong to listeners: none left, nothing to do.
            self.last = None;
            return;
        }
        let now = Instant::now();
        hub.fire_timers(now);
        if !on_file {
            return;
        }
        match self.last {
            Some((_, next)) if now < next => {}
            Some((seen, _)) => {
                let current = data_version(conn).unwrap_or(seen);
                if current != seen {
                    tracing::debug!("another connection committed to the store file");
                    hub.publish_external();
                }
                self.last = Some((current, now + EXTERNAL_POLL));
            }
            None => self.start(conn),
        }
    }

    /// Reads the value to compare with from now on (when a listener subscribes: every
    /// commit of another connection after this is then noticed).
    pub(crate) fn start(&mut self, conn: &rusqlite::Connection) {
        if self.last.is_none() {
            if let Ok(v) = data_version(conn) {
                self.last = Some((v, Instant::now() + EXTERNAL_POLL));
            }
        }
    }
}

fn data_version(conn: &rusqlite::Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("PRAGMA data_version")?.query_row([], |r| r.get(0))
}

/// The changes a store commits, one per transaction, in commit order: from
/// [`Store::changes`]. A `futures::Stream`; [`ChangeStream::next`] awaits one, and
/// [`ChangeStream::wait_next`] waits for one on a thread with no async runtime. It ends
/// when the store closes. Dropping it stops the store's work for it.
#[must_use = "a change stream hears of changes only while it is kept"]
pub struct ChangeStream {
    hub: Arc<Hub>,
    id: u64,
    mailbox: Arc<Mailbox>,
}

impl std::fmt::Debug for ChangeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeStream").field("id", &self.id).finish_non_exhaustive()
    }
}

impl ChangeStream {
    pub(crate) fn new(hub: Arc<Hub>, id: u64, mailbox: Arc<Mailbox>) -> ChangeStream {
        ChangeStream { hub, id, mailbox }
    }

    /// The next change; `None` once the store has closed.
    pub async fn next(&mut self) -> Option<Change> {
        std::future::poll_fn(|cx| self.poll_change(cx)).await
    }

    /// The next change, sleeping on this thread until one comes: for code with no async
    /// runtime. `None` once the store has closed.
    pub fn wait_next(&mut self) -> Option<Change> {
        super::call::block_on(std::future::poll_fn(|cx| self.poll_change(cx)))
    }

    /// The next change if one is waiting, without waiting.
    pub fn try_next(&mut self) -> Option<Change> {
        let mut state = self.mailbox.lock();
        take_event(&mut state)
    }

    fn poll_change(&mut self, cx: &Context<'_>) -> Poll<Option<Change>> {
        let mut state = self.mailbox.lock();
        if let Some(change) = take_event(&mut state) {
            return Poll::Ready(Some(change));
        }
        if state.closed {
            return Poll::Ready(None);
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

fn take_event(state: &mut MailState) -> Option<Change> {
    if state.missed > 0 {
        let missed = std::mem::take(&mut state.missed);
        return Some(Change::unknown(ChangeOrigin::Unknown, missed));
    }
    state.events.pop_front()
}

impl futures_core::Stream for ChangeStream {
    type Item = Change;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Change>> {
        self.get_mut().poll_change(cx)
    }
}

impl Drop for ChangeStream {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.id);
    }
}

impl Store {
    /// The changes this store commits from now on, one per transaction, in commit order:
    /// local writes, pull pages, push answers, resolutions, purges, and commits of other
    /// processes to the same file (noticed within 200 ms). A transaction that rolls back
    /// sends nothing. See [`Change`].
    ///
    /// ```
    /// # use sync_runtime::{ChangeOrigin, Store, SyncEntity};
    /// # #[derive(SyncEntity, Clone, Debug)]
    /// # struct Note { id: String, text: String }
    /// # fn main() -> sync_runtime::Result<()> {
    /// let store = Store::open_in_memory().wait()?;
    /// let notes = store.table::<Note>().wait()?;
    /// let mut changes = store.changes();
    /// notes.insert(Note { id: "n1".into(), text: "hello".into() }).wait()?;
    /// let change = changes.wait_next().expect("the store is open");
    /// assert_eq!(change.origin(), ChangeOrigin::Local);
    /// assert_eq!(change.ids("Note").unwrap().collect::<Vec<_>>(), ["n1"]);
    /// assert!(change.queue_changed());
    /// # Ok(())
    /// # }
    /// ```
    pub fn changes(&self) -> ChangeStream {
        let (id, mailbox) = self.subscribe(Interest::Everything);
        ChangeStream::new(Arc::clone(&self.inner.hub), id, mailbox)
    }

    /// How many change streams and watches are open on this store: each costs the
    /// store a little work per commit while it lives, and none once dropped.
    pub fn listener_count(&self) -> usize {
        self.inner.hub.listener_count()
    }

    /// Adds a listener to the hub, and wakes the store thread to start reading
    /// `data_version` (it may be sleeping with no timeout).
    pub(super) fn subscribe(&self, interest: Interest) -> (u64, Arc<Mailbox>) {
        let (id, mailbox) = self.inner.hub.subscribe(interest);
        if self.inner.path.is_some() {
            // Refused only from inside a transaction closure; the next job wakes it then.
            let _ = self.submit::<()>(Box::new(|w| {
                w.external.start(&w.conn);
                Ok(())
            }));
        }
        (id, mailbox)
    }

    pub(super) fn unsubscribe(&self, id: u64) {
        self.inner.hub.unsubscribe(id);
    }

    /// A call that returns once the store thread reads other connections' commits:
    /// every one committed after it returns is noticed.
    pub(super) fn start_external_watch(&self) -> crate::StoreCall<()> {
        if self.inner.path.is_none() {
            return crate::StoreCall::ready(Ok(()));
        }
        self.call(|w| {
            w.external.start(&w.conn);
            Ok(())
        })
    }

    /// Asks the store thread to wake listener `id` at `at`.
    pub(super) fn wake_at(&self, id: u64, mailbox: &Mailbox, at: Instant) {
        if self.inner.hub.set_timer(id, mailbox, at) {
            // The store thread may sleep past `at`: a job makes it look again.
            let _ = self.submit::<()>(Box::new(|_| Ok(())));
        }
    }
}
