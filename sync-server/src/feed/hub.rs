//! The hub: who subscribed to which tables as which user, and the fan-out of each
//! committed write to the subscribers it concerns.
//!
//! Each subscriber has an [`Inbox`]: the set of table indexes changed since its stream
//! last took an event (so at most one entry per table, whatever the rate of writes),
//! and the waker of its stream. Publishing takes a read lock on the subscriber index,
//! adds the table to each concerned inbox under that inbox's own short lock and wakes
//! its stream: it never waits for a socket, so a slow subscriber never slows a writer.
//! Subscribing and leaving take the write lock.
//!
//! Why not a `tokio::sync::broadcast` channel: a lagging receiver of one loses messages
//! (and each message is kept until every receiver took it), where a subscriber here must
//! never lose a nudge but may merge them; and owner isolation would have every
//! subscriber skim every owner's writes.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;

use crate::storage::{Heard, Relay, Storage};

/// How long a server's start waits for its relay to listen to other instances.
const RELAY_START: Duration = Duration::from_secs(5);

/// Why a subscription is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The cap on subscribers is reached.
    Full,
    /// The server is shutting down.
    Closed,
}

/// The subscribers, and the relay to other instances.
pub(crate) struct Hub {
    /// The served tables' names, sorted: a table's index is its place here.
    names: Vec<Arc<str>>,
    /// Whether each table is owned (nudges go to the row owner's subscribers only).
    owned: Vec<bool>,
    subscribers: RwLock<Subscribers>,
    max_subscribers: usize,
    closed: AtomicBool,
    gauge: Gauge,
    relay: Mutex<Option<Box<dyn Relay>>>,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("tables", &self.names)
            .field("subscribers", &self.gauge.get())
            .field("max_subscribers", &self.max_subscribers)
            .finish_non_exhaustive()
    }
}

/// The subscribers, indexed for publishing.
#[derive(Default)]
struct Subscribers {
    next_id: u64,
    count: usize,
    /// Every subscriber with its tables, by id.
    all: HashMap<u64, (Arc<Inbox>, Vec<usize>)>,
    /// Every subscriber of each table, by table index.
    by_table: Vec<HashMap<u64, Arc<Inbox>>>,
    /// The subscribers of each owned table by user, by table index.
    by_owner: Vec<HashMap<String, HashMap<u64, Arc<Inbox>>>>,
}

/// The events waiting for one subscriber's stream.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    state: Mutex<InboxState>,
}

#[derive(Debug, Default)]
struct InboxState {
    /// Tables changed since the stream last took an event.
    pending: BTreeSet<usize>,
    /// The stream waiting for an event.
    waker: Option<Waker>,
    /// The hub closed: the stream ends.
    closed: bool,
}

impl Inbox {
    fn push(&self, table: usize) {
        let waker = match self.state.lock() {
            Ok(mut state) if !state.closed => {
                state.pending.insert(table);
                state.waker.take()
            }
            _ => None,
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn push_all(&self, tables: &[usize]) {
        let waker = match self.state.lock() {
            Ok(mut state) if !state.closed => {
                state.pending.extend(tables.iter().copied());
                state.waker.take()
            }
            _ => None,
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn close(&self) {
        let waker = match self.state.lock() {
            Ok(mut state) => {
                state.closed = true;
                state.waker.take()
            }
            Err(_) => None,
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Whether the hub closed this inbox (its stream ends).
    pub(crate) fn is_closed(&self) -> bool {
        self.state.lock().map_or(true, |state| state.closed)
    }

    /// The tables changed since the last call (`None`: the stream ends), or `Pending`
    /// with `cx`'s waker kept for the next change.
    pub(crate) fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Option<BTreeSet<usize>>> {
        let Ok(mut state) = self.state.lock() else { return Poll::Ready(None) };
        if state.closed {
            return Poll::Ready(None);
        }
        if !state.pending.is_empty() {
            return Poll::Ready(Some(std::mem::take(&mut state.pending)));
        }
        match &mut state.waker {
            Some(waker) => waker.clone_from(cx.waker()),
            None => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// One subscriber's place in the hub; leaves it when dropped.
#[derive(Debug)]
pub(crate) struct Subscription {
    hub: Arc<Hub>,
    id: u64,
    user: Option<String>,
    tables: Vec<usize>,
    inbox: Arc<Inbox>,
}

impl Subscription {
    /// The subscriber's inbox.
    pub(crate) fn inbox(&self) -> &Inbox {
        &self.inbox
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.leave(self);
    }
}

impl Hub {
    /// A hub for `tables` (name and whether owned), with at most `max_subscribers`.
    pub(crate) fn new(tables: impl IntoIterator<Item = (String, bool)>, max_subscribers: usize, gauge: Gauge) -> Hub {
        let mut tables: Vec<(String, bool)> = tables.into_iter().collect();
        tables.sort();
        let n = tables.len();
        Hub {
            names: tables.iter().map(|(name, _)| Arc::from(name.as_str())).collect(),
            owned: tables.iter().map(|(_, owned)| *owned).collect(),
            subscribers: RwLock::new(Subscribers {
                by_table: vec![HashMap::new(); n],
                by_owner: vec![HashMap::new(); n],
                ..Subscribers::default()
            }),
            max_subscribers,
            closed: AtomicBool::new(false),
            gauge,
            relay: Mutex::new(None),
        }
    }

    /// Relays writes to and from other instances on the storage's database, if the
    /// storage can ([`Storage::relay`]), waiting up to [`RELAY_START`] for the relay to
    /// listen.
    pub(crate) async fn connect_relay(self: &Arc<Hub>, storage: &dyn Storage) {
        let hub: Weak<Hub> = Arc::downgrade(self);
        let heard = Arc::new(move |heard: Heard<'_>| {
            if let Some(hub) = hub.upgrade() {
                hub.heard(heard);
            }
        });
        let relay = storage.relay(heard);
        if let Some(relay) = &relay {
            if tokio::time::timeout(RELAY_START, relay.listening()).await.is_err() {
                tracing::warn!("the change feed's relay does not listen yet; starting without it (it keeps trying)");
            }
        }
        if let Ok(mut slot) = self.relay.lock() {
            *slot = relay;
        }
    }

    /// How many subscribe now.
    pub(crate) fn subscribers(&self) -> usize {
        usize::try_from(self.gauge.get()).unwrap_or(0)
    }

    /// The index of a table by its exact name.
    pub(crate) fn index(&self, table: &str) -> Option<usize> {
        self.names.binary_search_by(|name| (**name).cmp(table)).ok()
    }

    /// The name of the table at `index`.
    pub(crate) fn name(&self, index: usize) -> &str {
        self.names.get(index).map_or("", |name| name)
    }

    /// Every table's index.
    pub(crate) fn all_tables(&self) -> Vec<usize> {
        (0..self.names.len()).collect()
    }

    /// Subscribes `user` (`None`: anonymous) to `tables`.
    pub(crate) fn subscribe(
        self: &Arc<Hub>,
        tables: Vec<usize>,
        user: Option<String>,
    ) -> Result<Subscription, Refused> {
        let inbox = Arc::new(Inbox::default());
        let Ok(mut subscribers) = self.subscribers.write() else { return Err(Refused::Closed) };
        // Under the lock: `close` sets the flag under it too, then closes every inbox.
        if self.closed.load(Ordering::Acquire) {
            return Err(Refused::Closed);
        }
        if subscribers.count >= self.max_subscribers {
            return Err(Refused::Full);
        }
        subscribers.next_id += 1;
        let id = subscribers.next_id;
        for &table in &tables {
            if let Some(map) = subscribers.by_table.get_mut(table) {
                map.insert(id, Arc::clone(&inbox));
            }
            if let (true, Some(user)) = (self.owned.get(table).copied().unwrap_or(false), &user) {
                if let Some(owners) = subscribers.by_owner.get_mut(table) {
                    owners.entry(user.clone()).or_default().insert(id, Arc::clone(&inbox));
                }
            }
        }
        subscribers.all.insert(id, (Arc::clone(&inbox), tables.clone()));
        subscribers.count += 1;
        self.gauge.set(i64::try_from(subscribers.count).unwrap_or(i64::MAX));
        drop(subscribers);
        tracing::debug!(id, tables = tables.len(), "feed subscriber joined");
        Ok(Subscription { hub: Arc::clone(self), id, user, tables, inbox })
    }

    fn leave(&self, subscription: &Subscription) {
        let Ok(mut subscribers) = self.subscribers.write() else { return };
        subscribers.all.remove(&subscription.id);
        for &table in &subscription.tables {
            if let Some(map) = subscribers.by_table.get_mut(table) {
                map.remove(&subscription.id);
            }
            if let (Some(owners), Some(user)) = (subscribers.by_owner.get_mut(table), &subscription.user) {
                if let Some(map) = owners.get_mut(user) {
                    map.remove(&subscription.id);
                    if map.is_empty() {
                        owners.remove(user);
                    }
                }
            }
        }
        subscribers.count = subscribers.count.saturating_sub(1);
        self.gauge.set(i64::try_from(subscribers.count).unwrap_or(i64::MAX));
        drop(subscribers);
        tracing::debug!(id = subscription.id, "feed subscriber left");
    }

    /// A write to `table` committed here (for an owned table, to `owner`'s row): nudges
    /// the subscribers it concerns and tells the other instances.
    pub(crate) fn publish(&self, table: &str, owner: Option<&str>) {
        if let Some(index) = self.index(table) {
            self.deliver(index, owner);
        }
        if let Ok(relay) = self.relay.lock() {
            if let Some(relay) = relay.as_ref() {
                relay.announce(table, owner);
            }
        }
    }

    /// What another instance wrote.
    fn heard(&self, heard: Heard<'_>) {
        match heard {
            Heard::Write { table, owner } => {
                if let Some(index) = self.index(table) {
                    self.deliver(index, owner);
                }
            }
            Heard::Anything => {
                tracing::debug!("the feed relay may have missed writes: nudging every subscriber");
                let Ok(subscribers) = self.subscribers.read() else { return };
                for (inbox, tables) in subscribers.all.values() {
                    inbox.push_all(tables);
                }
            }
        }
    }

    /// Nudges the subscribers of `table` a write concerns: on an owned table with a
    /// known owner, that owner's; otherwise all of the table's.
    fn deliver(&self, table: usize, owner: Option<&str>) {
        let Ok(subscribers) = self.subscribers.read() else { return };
        let owned = self.owned.get(table).copied().unwrap_or(false);
        let inboxes = match (owned, owner) {
            (true, Some(owner)) => subscribers.by_owner.get(table).and_then(|owners| owners.get(owner)),
            _ => subscribers.by_table.get(table),
        };
        for inbox in inboxes.into_iter().flat_map(HashMap::values) {
            inbox.push(table);
        }
    }

    /// Ends every stream and refuses new subscribers (the server is shutting down).
    pub(crate) fn close_streams(&self) {
        let Ok(subscribers) = self.subscribers.write() else { return };
        self.closed.store(true, Ordering::Release);
        for (inbox, _) in subscribers.all.values() {
            inbox.close();
        }
        if subscribers.count > 0 {
            tracing::info!(subscribers = subscribers.count, "the change feed's streams are ending");
        }
    }

    /// [`Hub::close_streams`], and stops relaying.
    pub(crate) fn close(&self) {
        self.close_streams();
        if let Ok(mut relay) = self.relay.lock() {
            if let Some(relay) = relay.take() {
                relay.close();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use super::*;

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn hub(max: usize) -> Arc<Hub> {
        Arc::new(Hub::new([("Shared".to_owned(), false), ("Owned".to_owned(), true)], max, Gauge::default()))
    }

    fn take(subscription: &Subscription) -> Option<Vec<String>> {
        let waker = Waker::from(Arc::new(CountingWaker(AtomicUsize::new(0))));
        match subscription.inbox().poll_take(&mut Context::from_waker(&waker)) {
            Poll::Ready(Some(tables)) => {
                Some(tables.into_iter().map(|t| subscription.hub.name(t).to_owned()).collect())
            }
            Poll::Ready(None) => Some(vec!["<closed>".into()]),
            Poll::Pending => None,
        }
    }

    #[test]
    fn writes_merge_into_one_pending_set_and_owners_are_apart() {
        let hub = hub(10);
        let (shared, owned) = (hub.index("Shared").unwrap(), hub.index("Owned").unwrap());
        let alice = hub.subscribe(vec![shared, owned], Some("alice".into())).unwrap();
        let bob = hub.subscribe(vec![owned], Some("bob".into())).unwrap();
        assert_eq!(take(&alice), None);

        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&counter));
        assert!(alice.inbox().poll_take(&mut Context::from_waker(&waker)).is_pending());
        for _ in 0..1000 {
            hub.publish("Shared", None);
            hub.publish("Owned", Some("alice"));
        }
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "one wake for a burst");
        assert_eq!(take(&alice), Some(vec!["Owned".into(), "Shared".into()]));
        assert_eq!(take(&bob), None, "bob hears nothing of alice's rows");
        hub.publish("Owned", Some("bob"));
        hub.publish("Unknown", None);
        assert_eq!(take(&bob), Some(vec!["Owned".into()]));
        assert_eq!(take(&alice), None);

        // Another instance's write of an unknown owner, or anything at all: everyone.
        hub.heard(Heard::Write { table: "Owned", owner: None });
        assert_eq!(take(&bob), Some(vec!["Owned".into()]));
        hub.heard(Heard::Anything);
        assert_eq!(take(&alice), Some(vec!["Owned".into(), "Shared".into()]));
    }

    #[test]
    fn the_cap_counts_subscribers_and_closing_ends_every_stream() {
        let hub = hub(2);
        let a = hub.subscribe(hub.all_tables(), None).unwrap();
        let b = hub.subscribe(vec![0], None).unwrap();
        assert_eq!(hub.subscribe(vec![0], None).unwrap_err(), Refused::Full);
        assert_eq!(hub.gauge.get(), 2);
        drop(b);
        assert_eq!(hub.gauge.get(), 1);
        let c = hub.subscribe(vec![1], None).unwrap();
        hub.close();
        assert_eq!(take(&a), Some(vec!["<closed>".into()]));
        assert!(c.inbox().is_closed());
        assert_eq!(hub.subscribe(vec![0], None).unwrap_err(), Refused::Closed);
        drop((a, c));
        assert_eq!(hub.gauge.get(), 0);
        let subscribers = hub.subscribers.read().unwrap();
        assert!(subscribers.all.is_empty());
        assert!(
            subscribers.by_table.iter().all(HashMap::is_empty) && subscribers.by_owner.iter().all(HashMap::is_empty)
        );
    }
}
