//! The sync engine: sync that runs by itself in the background, for a set of tables and
//! pull queries, with a status to show.
//!
//! One task per engine sleeps until something is due: a push a moment after local
//! writes (this process's, or another's on the same store file, noticed through the
//! store's change stream), a pull on start, on a nudge and on the polling interval, or
//! a retry after a failure (backing off with jitter while the server is unreachable or
//! unavailable). A failed round is retried by itself: nothing waits for a new local
//! write. Nothing runs while nothing is due.
//!
//! When the server offers a change feed (`GET /feed`, server-sent events), a second
//! task keeps a subscription to it for the engine's tables and nudges a pull on each
//! change (bursts coalesce into one pull at a time), on each (re)subscription and
//! when the stream drops; it reconnects with backoff. While the feed is up the polling
//! interval is only a fallback (at least [`EngineBuilder::feed_poll_interval`], 30 s).
//! Against a server without the feed (the Azure family) the engine polls, and looks
//! for a feed again every ten minutes.

mod status;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Notify, watch};

use crate::error::{Error, Result};
use crate::push_report::{ConflictResolution, PushReport};
use crate::store::{Change, ChangeOrigin, ChangeStream};
use sync_core::SyncEntity;
use sync_core::query::Query;

use super::feed::{self, FeedEvent};
use super::progress::{SyncEvent, SyncPhase};
use super::{ClientInner, PullReport, SyncCall, SyncClient, pull, push};

pub use status::{StatusStream, SyncErrorKind, SyncFailure, SyncProgress, SyncStatus};

/// Set once to stop a push or pull at its next step (see `push::push_until`).
#[derive(Debug, Default)]
pub(crate) struct Stop {
    set: AtomicBool,
    notify: Notify,
}

impl Stop {
    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    fn set(&self) {
        self.set.store(true, Ordering::SeqCst);
        // A permit, for a loop that is not waiting right now.
        self.notify.notify_one();
    }
}

type PullFuture = Pin<Box<dyn Future<Output = Result<PullReport>> + Send>>;
type PullFn = Arc<dyn Fn(SyncClient, Arc<Stop>) -> PullFuture + Send + Sync>;

/// One pull query of the engine.
#[derive(Clone)]
struct PullSpec {
    table: &'static str,
    query_id: String,
    run: PullFn,
}

/// How the engine paces itself.
#[derive(Clone, Copy, Debug)]
struct Pace {
    debounce: Duration,
    poll: Duration,
    min_backoff: Duration,
    max_backoff: Duration,
    stop_timeout: Duration,
    /// Subscribe to the server's change feed when it offers one.
    feed: bool,
    /// The polling interval while the feed is up (the longer of this and `poll`).
    feed_poll: Duration,
}

/// How long the engine waits before it looks again for a feed on a server that has none.
const NO_FEED_RECHECK: Duration = Duration::from_secs(600);

/// Builds a [`SyncEngine`]: from [`SyncClient::engine`].
#[must_use = "an engine builder does nothing until `start`"]
pub struct EngineBuilder {
    client: SyncClient,
    pulls: Vec<PullSpec>,
    pace: Pace,
}

impl std::fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pulls: Vec<_> = self.pulls.iter().map(|p| (p.table, p.query_id.as_str())).collect();
        f.debug_struct("EngineBuilder").field("pulls", &pulls).field("pace", &self.pace).finish()
    }
}

impl EngineBuilder {
    /// Pulls every row of `E`, incrementally: the same pull (and cursor) as
    /// [`SyncClient::sync`].
    pub fn table<E: SyncEntity>(self) -> Self {
        self.pull::<E>(Query::new(), pull::DEFAULT_QUERY_ID)
    }

    /// Pulls the rows of `query` incrementally under `query_id`, as
    /// [`SyncClient::pull`] does (one id per query: it names the query's cursor).
    pub fn pull<E: SyncEntity>(mut self, query: impl Into<Query<E>>, query_id: &str) -> Self {
        let (query, id) = (query.into(), query_id.to_owned());
        let run: PullFn = Arc::new(move |client: SyncClient, stop: Arc<Stop>| {
            let (query, id) = (query.clone(), id.clone());
            Box::pin(async move { pull::pull_until::<E>(&client, &client.inner, query, Some(&id), Some(&stop)).await })
        });
        self.pulls.push(PullSpec { table: E::TABLE, query_id: query_id.to_owned(), run });
        self
    }

    /// How long after a local write the push starts (default 25 ms): writes made
    /// meanwhile go in the same push. A stream of writes is pushed at least this
    /// often; it does not hold the push back.
    pub fn push_debounce(mut self, delay: Duration) -> Self {
        self.pace.debounce = delay;
        self
    }

    /// How often the engine pulls when nothing else makes it (default 30 s). With the
    /// server's change feed up, changes arrive as they are made and this is only a
    /// fallback.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.pace.poll = interval.max(Duration::from_millis(10));
        self
    }

    /// The first and the longest wait before trying again after a failed round
    /// (defaults 1 s and 30 s): each failure in a row doubles the wait, with jitter.
    pub fn backoff(mut self, first: Duration, longest: Duration) -> Self {
        self.pace.min_backoff = first.max(Duration::from_millis(1));
        self.pace.max_backoff = longest.max(self.pace.min_backoff);
        self
    }

    /// Whether the engine subscribes to the server's change feed when the server offers
    /// one (default: yes). Without it, changes of other devices arrive at the next poll.
    pub fn feed(mut self, enabled: bool) -> Self {
        self.pace.feed = enabled;
        self
    }

    /// How often the engine still pulls while the change feed is up (default 30 s, or
    /// the polling interval if that is longer): a fallback, should a nudge be lost or
    /// come early (on PostgreSQL a write cut short by a crash holds back the rows after
    /// it for up to 5 s, and the nudge of a later write may come within that time).
    pub fn feed_poll_interval(mut self, interval: Duration) -> Self {
        self.pace.feed_poll = interval.max(Duration::from_millis(10));
        self
    }

    /// How long [`SyncEngine::stop`] waits for the request in flight to be answered
    /// and recorded (default 10 s). Past it the request is abandoned as a crash would
    /// leave it: its operation stays queued and the next push sends it again.
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.pace.stop_timeout = timeout;
        self
    }

    /// Starts the engine: on the current tokio runtime, or, called with none, on the
    /// sync client's own (see [`SyncCall::wait`]). It pushes what is queued and pulls
    /// at once. Two pulls with one table and query id are an [`Error::Config`].
    pub fn start(self) -> Result<SyncEngine> {
        for (i, a) in self.pulls.iter().enumerate() {
            if self.pulls[..i].iter().any(|b| a.table == b.table && a.query_id == b.query_id) {
                return Err(Error::Config {
                    message: format!("the engine pulls `{}` twice under the query id `{}`", a.table, a.query_id),
                    source: None,
                });
            }
        }
        let (status, _) = watch::channel(SyncStatus::starting());
        let shared = Arc::new(Shared {
            stop: Arc::new(Stop::default()),
            nudge: Notify::new(),
            pull_nudge: Notify::new(),
            status,
        });
        let changes = self.client.inner.store.changes();
        let engine = Engine {
            client: self.client.clone(),
            shared: Arc::clone(&shared),
            pulls: self.pulls,
            pace: self.pace,
            changes,
        };
        let observer = Observer::register(&self.client.inner, &shared);
        let task = async move {
            // Dropped when the task ends, also when `stop` aborts it.
            let _observer = observer;
            engine.run().await;
        };
        let task = match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle.spawn(task),
            Err(_) => super::call::blocking_runtime()?.spawn(task),
        };
        tracing::info!(base = %self.client.inner.base, "sync engine started");
        Ok(SyncEngine { shared, task: Some(task), stop_timeout: self.pace.stop_timeout })
    }
}

static NEXT_ENGINE: AtomicU64 = AtomicU64::new(1);

/// The engine's progress sink among its client's observers, removed on drop.
struct Observer {
    inner: Arc<ClientInner>,
    id: u64,
}

impl Observer {
    fn register(inner: &Arc<ClientInner>, shared: &Arc<Shared>) -> Observer {
        let id = NEXT_ENGINE.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::clone(shared);
        let sink: super::ProgressSink = Arc::new(move |event: &SyncEvent| shared.progress(event));
        lock(&inner.observers).push((id, sink));
        Observer { inner: Arc::clone(inner), id }
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        lock(&self.inner.observers).retain(|(other, _)| *other != self.id);
    }
}

/// A task aborted when this is dropped: the feed follower ends with the engine's task,
/// also when that one is aborted.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SyncClient {
    /// A background sync for this client's store: see [`EngineBuilder`] for what it
    /// pulls and how it paces itself, and [`SyncEngine`] for its status and stop.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use sync_runtime::{Query, Store, SyncClient, SyncEntity};
    /// # #[derive(SyncEntity, Clone, Debug)]
    /// # struct TodoItem { id: String, text: String, complete: bool }
    /// # #[derive(SyncEntity, Clone, Debug)]
    /// # struct Tag { id: String, name: String }
    /// # async fn demo(client: SyncClient) -> sync_runtime::Result<()> {
    /// let engine = client
    ///     .engine()
    ///     .table::<TodoItem>() // every row, incrementally
    ///     .pull(Query::<Tag>::new().filter(Tag::FIELDS.name.starts_with("work")), "work-tags") // or a query of one's own
    ///     .poll_interval(Duration::from_secs(60))
    ///     .start()?;
    /// let mut statuses = engine.statuses();
    /// while let Some(status) = statuses.next().await {
    ///     println!("online: {}, pending: {}, errors: {}", status.connected, status.pending, status.errors);
    /// #   break;
    /// }
    /// engine.stop().await?; // or drop it
    /// # Ok(())
    /// # }
    /// ```
    pub fn engine(&self) -> EngineBuilder {
        EngineBuilder {
            client: self.clone(),
            pulls: Vec::new(),
            pace: Pace {
                debounce: Duration::from_millis(25),
                poll: Duration::from_secs(30),
                min_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(30),
                stop_timeout: Duration::from_secs(10),
                feed: true,
                feed_poll: Duration::from_secs(30),
            },
        }
    }
}

/// What the engine's task and its handle share.
struct Shared {
    stop: Arc<Stop>,
    /// Asks for a push and a pull now ([`SyncEngine::sync_now`]).
    nudge: Notify,
    /// Asks for a pull now: the change feed's nudges.
    pull_nudge: Notify,
    status: watch::Sender<SyncStatus>,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut SyncStatus)) {
        self.status.send_if_modified(|status| {
            let before = status.clone();
            f(status);
            *status != before
        });
    }

    /// A progress event of a push or pull of this client.
    fn progress(&self, event: &SyncEvent) {
        let progress = (!event.finished).then(|| SyncProgress {
            table: event.table.clone(),
            done: event.done,
            total: event.total,
        });
        self.update(|s| match event.phase {
            SyncPhase::Push => s.upload = progress,
            _ => s.download = progress,
        });
    }
}

/// A running sync engine: from [`EngineBuilder::start`]. Dropping it stops the engine
/// (at its next step, without waiting); [`SyncEngine::stop`] stops it and waits.
///
/// Manual [`SyncClient::push`], [`SyncClient::pull`] and [`SyncClient::sync`] calls
/// keep working beside it: pushes of one store take turns, and so do pulls.
#[must_use = "the engine stops when its handle is dropped"]
pub struct SyncEngine {
    shared: Arc<Shared>,
    task: Option<tokio::task::JoinHandle<()>>,
    stop_timeout: Duration,
}

impl std::fmt::Debug for SyncEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncEngine").field("status", &*self.shared.status.borrow()).finish_non_exhaustive()
    }
}

impl SyncEngine {
    /// The status now.
    pub fn status(&self) -> SyncStatus {
        self.shared.status.borrow().clone()
    }

    /// The status now, then after each change, until the engine stops.
    pub fn statuses(&self) -> StatusStream {
        StatusStream::new(self.shared.status.subscribe())
    }

    /// Pushes and pulls now, without waiting for the debounce, the polling interval
    /// or a backoff (e.g. when the app learns that the network is back).
    pub fn sync_now(&self) {
        self.shared.nudge.notify_one();
    }

    /// Stops the engine and waits until it has: the request in flight is answered and
    /// recorded (for at most the builder's [`stop_timeout`](EngineBuilder::stop_timeout)),
    /// nothing more is sent, and the store is left as consistent as after any push or
    /// pull. `.await` it, or `.wait()` for it with no async runtime.
    pub fn stop(mut self) -> SyncCall<()> {
        let task = self.task.take();
        let (shared, timeout) = (Arc::clone(&self.shared), self.stop_timeout);
        SyncCall::new(async move {
            shared.stop.set();
            if let Some(mut task) = task {
                if tokio::time::timeout(timeout, &mut task).await.is_err() {
                    tracing::warn!(?timeout, "the sync engine did not stop in time; its request is abandoned");
                    task.abort();
                    let _ = task.await;
                    shared.update(|s| *s = SyncStatus { running: false, ..stopped(s) });
                }
            }
            Ok(())
        })
    }
}

impl Drop for SyncEngine {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.shared.stop.set();
        }
    }
}

/// A status once the engine stopped.
fn stopped(s: &SyncStatus) -> SyncStatus {
    SyncStatus {
        running: false,
        connected: false,
        connecting: false,
        uploading: false,
        downloading: false,
        feed: false,
        retry_at: None,
        upload: None,
        download: None,
        ..s.clone()
    }
}

/// The engine's task.
struct Engine {
    client: SyncClient,
    shared: Arc<Shared>,
    pulls: Vec<PullSpec>,
    pace: Pace,
    changes: ChangeStream,
}

/// What is due.
#[derive(Debug, Default)]
struct Due {
    push: Option<Instant>,
    pull: Option<Instant>,
    /// Backing off after a failure until then.
    retry: Option<Instant>,
    /// Failed rounds in a row.
    failures: u32,
    /// The pending and error counts may have changed.
    counts: bool,
}

impl Due {
    fn push_soon(&mut self, at: Instant) {
        self.push = Some(self.push.map_or(at, |due| due.min(at)));
    }

    /// When the loop has to wake next.
    fn wake_at(&self) -> Option<Instant> {
        let next = match (self.push, self.pull) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match (next, self.retry) {
            (Some(next), Some(retry)) => Some(next.max(retry)),
            (next, _) => next,
        }
    }
}

impl Engine {
    async fn run(mut self) {
        let feed = self.pace.feed.then(|| {
            let mut tables: Vec<String> = self.pulls.iter().map(|p| p.table.to_owned()).collect();
            tables.sort_unstable();
            tables.dedup();
            AbortOnDrop(tokio::spawn(follow_feed(self.client.clone(), Arc::clone(&self.shared), tables, self.pace)))
        });
        self.sync().await;
        drop(feed);
        self.shared.update(|s| *s = stopped(s));
        tracing::info!("sync engine stopped");
    }

    /// The engine's loop, until it stops or its store closes.
    async fn sync(&mut self) {
        let now = Instant::now();
        // What is queued goes out at once, and the first pull too.
        let mut due = Due { push: Some(now), pull: Some(now), counts: true, ..Due::default() };
        loop {
            if due.counts {
                due.counts = false;
                self.read_counts().await;
            }
            if self.shared.stop.is_set() {
                break;
            }
            let now = Instant::now();
            let backing_off = due.retry.is_some_and(|at| at > now);
            let push_now = !backing_off && due.push.is_some_and(|at| at <= now);
            let pull_now = !backing_off && due.pull.is_some_and(|at| at <= now);
            if push_now || pull_now {
                let outcome = self.round(push_now, pull_now).await;
                if self.shared.stop.is_set() {
                    break;
                }
                let now = Instant::now();
                match outcome {
                    Ok(contacted) => {
                        due.retry = None;
                        due.failures = 0;
                        if push_now {
                            due.push = None;
                        }
                        if pull_now {
                            due.pull = Some(now + self.poll_interval());
                        }
                        self.shared.update(|s| {
                            s.retry_at = None;
                            if contacted {
                                s.last_synced_at = Some(SystemTime::now());
                                // The failure that made the engine back off is over; a
                                // refusal stays until a push goes through without one.
                                let refusal = [SyncErrorKind::Conflict, SyncErrorKind::Refused];
                                if s.last_error.as_ref().is_some_and(|e| !refusal.contains(&e.kind)) {
                                    s.last_error = None;
                                }
                            }
                        });
                    }
                    Err(failure) => {
                        due.failures += 1;
                        let wait = backoff(self.pace, due.failures);
                        due.retry = Some(now + wait);
                        // What was due stays due: the round is tried again by itself.
                        due.push_soon(now);
                        tracing::info!(failures = due.failures, ?wait, error = %failure.message, "sync round failed; trying again later");
                        self.shared.update(|s| {
                            s.connected = false;
                            s.retry_at = Some(SystemTime::now() + wait);
                            s.last_error = Some(failure);
                        });
                    }
                }
                due.counts = true;
                // Changes committed during the round (ours, and the app's).
                while let Some(change) = self.changes.try_next() {
                    self.note(&change, &mut due);
                }
                continue;
            }
            let wake = due.wake_at();
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = self.shared.stop.notify.notified() => {}
                () = self.shared.nudge.notified() => {
                    let now = Instant::now();
                    due.push_soon(now);
                    due.pull = Some(now);
                    due.retry = None;
                }
                () = self.shared.pull_nudge.notified() => due.pull = Some(Instant::now()),
                change = self.changes.next() => match change {
                    Some(change) => self.note(&change, &mut due),
                    None => {
                        tracing::debug!("the store closed: the sync engine stops");
                        break;
                    }
                },
                () = sleep => {}
            }
        }
    }

    /// The polling interval: a fallback only while the change feed is up.
    fn poll_interval(&self) -> Duration {
        if self.shared.status.borrow().feed { self.pace.poll.max(self.pace.feed_poll) } else { self.pace.poll }
    }

    /// Takes in a committed change: a local write (of this process or another, or an
    /// error resolution) schedules a push; any change to the queue or the error table
    /// refreshes the counts.
    fn note(&self, change: &Change, due: &mut Due) {
        let ours = matches!(change.origin(), ChangeOrigin::Push | ChangeOrigin::Pull);
        let unknown = !change.is_known();
        if !ours && (change.queue_changed() || unknown) {
            due.push_soon(Instant::now() + self.pace.debounce);
        }
        if change.queue_changed() || change.errors_changed() || unknown {
            due.counts = true;
        }
    }

    async fn read_counts(&self) {
        let store = &self.client.inner.store;
        match (store.pending_count().await, store.error_count().await) {
            (Ok(pending), Ok(errors)) => self.shared.update(|s| {
                s.pending = pending;
                s.errors = errors;
            }),
            (Err(e), _) | (_, Err(e)) => tracing::warn!(error = %e, "the sync engine cannot read the queue's counts"),
        }
    }

    /// One round: the push (when due and anything is queued), then every pull (when
    /// due). A failure ends the round: the pulls after it wait for the retry. Says
    /// whether the round talked to the server.
    async fn round(&self, push_now: bool, pull_now: bool) -> std::result::Result<bool, SyncFailure> {
        let inner = &self.client.inner;
        let stop = &self.shared.stop;
        let connected = self.shared.status.borrow().connected;
        let mut contacted = false;
        if push_now {
            let pending = inner.store.pending_count().await.map_err(|e| SyncFailure::from_error(&e))?;
            if pending > 0 {
                self.shared.update(|s| {
                    s.uploading = true;
                    s.connecting = !connected;
                });
                let pushed = push::push_until(inner, Some(stop)).await;
                self.shared.update(|s| {
                    s.uploading = false;
                    s.upload = None;
                });
                contacted = true;
                match pushed {
                    Ok(report) => self.pushed(&report),
                    Err(e) => {
                        self.shared.update(|s| s.connecting = false);
                        return Err(SyncFailure::from_error(&e));
                    }
                }
            }
        }
        if pull_now && !self.pulls.is_empty() {
            self.shared.update(|s| {
                s.downloading = true;
                s.connecting = !s.connected;
            });
            let mut failed = None;
            for spec in &self.pulls {
                if stop.is_set() {
                    break;
                }
                if let Err(e) = (spec.run)(self.client.clone(), Arc::clone(stop)).await {
                    tracing::debug!(table = spec.table, query = %spec.query_id, error = %e, "engine pull failed");
                    failed = Some(SyncFailure::from_error(&e));
                    break;
                }
                self.shared.update(|s| {
                    s.connected = true;
                    s.connecting = false;
                });
            }
            self.shared.update(|s| {
                s.downloading = false;
                s.download = None;
                s.connecting = false;
            });
            if let Some(failure) = failed {
                return Err(failure);
            }
            contacted = true;
        }
        Ok(contacted)
    }

    /// A push went through the queue: the server was reached; what it refused waits
    /// in the error table and is the last error until a clean round.
    fn pushed(&self, report: &PushReport) {
        let unresolved = report.conflicts.iter().filter(|c| c.resolution == ConflictResolution::Unresolved).count();
        let refused = report.errors.saturating_sub(unresolved as u64);
        let failure = if unresolved > 0 {
            Some(SyncFailure::new(
                SyncErrorKind::Conflict,
                format!("{unresolved} pushed change(s) met a newer server copy and wait in the error table"),
            ))
        } else if refused > 0 {
            Some(SyncFailure::new(
                SyncErrorKind::Refused,
                format!("the server refused {refused} pushed change(s); they wait in the error table"),
            ))
        } else {
            None
        };
        self.shared.update(|s| {
            s.connected = true;
            s.connecting = false;
            s.last_error = failure;
        });
    }
}

/// Keeps a subscription to the server's change feed for `tables` while the engine runs
/// (the engine aborts this task when it stops): a pull is nudged on each change, on
/// each (re)subscription (a change may have come while there was none) and when the
/// stream drops. Reconnects with backoff; a server without the feed is asked again
/// every [`NO_FEED_RECHECK`].
async fn follow_feed(client: SyncClient, shared: Arc<Shared>, tables: Vec<String>, pace: Pace) {
    let mut failures = 0u32;
    loop {
        match feed::open(&client.inner, &tables).await {
            Ok(Some(mut stream)) => {
                let mut subscribed = false;
                loop {
                    match stream.next().await {
                        Ok(Some(FeedEvent::Ready { heartbeat, .. })) => {
                            failures = 0;
                            subscribed = true;
                            tracing::debug!(?heartbeat, "subscribed to the server's change feed");
                            shared.update(|s| {
                                s.feed = true;
                                s.connected = true;
                            });
                            shared.pull_nudge.notify_one();
                        }
                        Ok(Some(FeedEvent::Change { tables })) => {
                            tracing::trace!(?tables, "the change feed nudges a pull");
                            shared.pull_nudge.notify_one();
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::debug!(error = %e.with_sources(), "the change feed dropped");
                            break;
                        }
                    }
                }
                if subscribed {
                    shared.update(|s| s.feed = false);
                    // Back to polling: a pull now, in case a change came unannounced.
                    shared.pull_nudge.notify_one();
                }
                failures += 1;
            }
            Ok(None) => {
                tracing::debug!("the server offers no change feed; polling");
                shared.update(|s| s.feed = false);
                tokio::time::sleep(NO_FEED_RECHECK).await;
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e.with_sources(), "cannot subscribe to the change feed");
                failures += 1;
            }
        }
        tokio::time::sleep(backoff(pace, failures)).await;
    }
}

/// The wait before the next try after `failures` failed rounds in a row: doubling from
/// the first wait up to the longest, jittered between half and all of it.
fn backoff(pace: Pace, failures: u32) -> Duration {
    let exp = pace.min_backoff.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    super::http::jitter(exp.min(pace.max_backoff))
}
