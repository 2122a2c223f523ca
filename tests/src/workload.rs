//! The randomized sync workload shared by the reliability tests (in-process) and the
//! crash child (`sync_child`): clients that write random items on shared ids, push and
//! pull at random moments, resolve conflicts by a per-client policy and settle error
//! rows by a fixed policy, and an [`EventLog`] of everything the oracle
//! ([`crate::oracle`]) needs to judge the end state.
//!
//! Every text a client writes is unique (`c<client>-<prefix><n>`), so the oracle can
//! tell which write a server row or a conflict side comes from.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sync_runtime::{
    Conflict, OpKind, ProtocolVersion, PushStatus, Query, Resolution, RetryPolicy, Store, SyncClient, SyncEvent,
    SyncPhase, Table,
};

use crate::{Rng, TodoItem};

/// The kind of a write, as the event log records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// An insert.
    Insert,
    /// An update.
    Update,
    /// A delete.
    Delete,
}

impl From<OpKind> for Kind {
    fn from(k: OpKind) -> Kind {
        match k {
            OpKind::Insert => Kind::Insert,
            OpKind::Update => Kind::Update,
            OpKind::Delete => Kind::Delete,
        }
    }
}

/// What a conflict handler decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// Take the server's copy.
    Server,
    /// Send the local change again over the server's version.
    Client,
    /// Send a merged item.
    Merge,
    /// Leave it to the app (an error row).
    Unresolved,
}

/// How the test's error policy settled an error row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Settle {
    /// `resolve_take_server`.
    TakeServer,
    /// `resolve_retry_with` the client's item ("client wins").
    Retry,
    /// `resolve_discard` (the item is gone on the server).
    Discard,
    /// `resolve_change_kind` to the same kind: send it again as it is.
    Again,
}

/// One entry of the event log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event")]
pub enum Event {
    /// A local write that committed (or, for a merge, a merged item the handler made).
    Write {
        /// The client.
        client: usize,
        /// The item.
        id: String,
        /// What it did.
        kind: Kind,
        /// The new text (`None` for a delete).
        text: Option<String>,
        /// Made by a merge handler, not by the app.
        merged: bool,
        /// The server version the local row had before the write (`None`: never synced).
        #[serde(default)]
        seen_version: Option<String>,
    },
    /// A conflict handler was called.
    Conflict {
        /// The client.
        client: usize,
        /// The item.
        id: String,
        /// The operation's kind.
        kind: Kind,
        /// 409 or 412.
        status: u16,
        /// The local side's text.
        client_text: String,
        /// The local side's `complete`.
        client_complete: bool,
        /// The server side's text.
        server_text: String,
        /// The server side's `complete`.
        server_complete: bool,
        /// What the handler decided.
        decision: Decision,
    },
    /// The error policy settled an error row.
    Settled {
        /// The client.
        client: usize,
        /// The item.
        id: String,
        /// The operation's kind.
        kind: Kind,
        /// The error's HTTP status.
        status: Option<u16>,
        /// The client item's text in the error.
        client_text: Option<String>,
        /// The server item's text in the error.
        server_text: Option<String>,
        /// How.
        how: Settle,
    },
}

impl Event {
    /// The client the event belongs to.
    pub fn client(&self) -> usize {
        match self {
            Event::Write { client, .. } | Event::Conflict { client, .. } | Event::Settled { client, .. } => *client,
        }
    }

    /// The item the event is about.
    pub fn id(&self) -> &str {
        match self {
            Event::Write { id, .. } | Event::Conflict { id, .. } | Event::Settled { id, .. } => id,
        }
    }
}

type Echo = Arc<dyn Fn(&str) + Send + Sync>;

/// The events of a run, shared by every client of it. With an echo (the crash child),
/// each entry is also written out as a line before it takes effect: `B <json>` before a
/// local write, `C` once it committed, `E <json>` for conflicts, settlements and merges.
#[derive(Clone, Default)]
pub struct EventLog {
    events: Arc<Mutex<Vec<Event>>>,
    echo: Option<Echo>,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog").field("events", &self.events.lock().unwrap().len()).finish()
    }
}

impl EventLog {
    /// A log kept in memory.
    pub fn new() -> EventLog {
        EventLog::default()
    }

    /// A log that also writes each line out.
    pub fn with_echo(echo: impl Fn(&str) + Send + Sync + 'static) -> EventLog {
        EventLog { events: Arc::default(), echo: Some(Arc::new(echo)) }
    }

    /// Records an event that is about to take effect.
    pub fn record(&self, event: Event) {
        if let Some(echo) = &self.echo {
            echo(&format!("E {}", serde_json::to_string(&event).expect("events serialize")));
        }
        self.events.lock().unwrap().push(event);
    }

    fn begin_write(&self, event: &Event) {
        if let Some(echo) = &self.echo {
            echo(&format!("B {}", serde_json::to_string(event).expect("events serialize")));
        }
    }

    fn commit_write(&self, event: Event) {
        if let Some(echo) = &self.echo {
            echo("C");
        }
        self.events.lock().unwrap().push(event);
    }

    /// Writes a free-form marker line (echo only).
    pub fn mark(&self, line: &str) {
        if let Some(echo) = &self.echo {
            echo(line);
        }
    }

    /// Every event so far.
    pub fn snapshot(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    /// Appends events recorded elsewhere (e.g. by a child process).
    pub fn extend(&self, events: impl IntoIterator<Item = Event>) {
        self.events.lock().unwrap().extend(events);
    }
}

/// A client's conflict policy, by its index: 0 server wins, 1 client wins, 2 merge,
/// 3 left to the app (error rows settled by [`Actor::settle_errors`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// `Resolution::ServerWins`.
    ServerWins,
    /// `Resolution::ClientWins`.
    ClientWins,
    /// `Resolution::Merged` (for a delete: the delete wins).
    Merge,
    /// `Resolution::Unresolved`.
    Manual,
}

impl Policy {
    /// The policy of client `index`.
    pub fn of(index: usize) -> Policy {
        [Policy::ServerWins, Policy::ClientWins, Policy::Merge, Policy::Manual][index % 4]
    }
}

/// The settings of a client of the workload.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Its index (decides its policy and its texts).
    pub index: usize,
    /// Where it connects (a proxy).
    pub url: String,
    /// The protocol generation.
    pub protocol: ProtocolVersion,
    /// Prefix of its texts, unique per process run (e.g. `r3.` in the crash test).
    pub prefix: String,
    /// Rows per pull page (small, to exercise paging).
    pub page_size: u32,
}

/// Makes the sync client of one workload client: quick retries, the client's conflict
/// policy recording into `log`, progress lines into the echo (if any).
pub fn build_client(store: Store, config: &ClientConfig, log: &EventLog) -> SyncClient {
    let index = config.index;
    let policy = Policy::of(index);
    let handler_log = log.clone();
    let merges = Arc::new(AtomicU64::new(0));
    let prefix = config.prefix.clone();
    let handler = move |c: &Conflict<TodoItem>| -> Resolution<TodoItem> {
        let (decision, resolution) = match (policy, c.kind) {
            (Policy::ServerWins, _) => (Decision::Server, Resolution::ServerWins),
            (Policy::ClientWins, _) | (Policy::Merge, OpKind::Delete) => (Decision::Client, Resolution::ClientWins),
            (Policy::Merge, _) => {
                let n = merges.fetch_add(1, Ordering::SeqCst);
                let mut merged = c.server.clone();
                merged.text = format!("c{index}-{prefix}m{n}");
                merged.complete = c.server.complete || c.client.complete;
                (Decision::Merge, Resolution::Merged(merged))
            }
            (Policy::Manual, _) => (Decision::Unresolved, Resolution::Unresolved),
        };
        handler_log.record(Event::Conflict {
            client: index,
            id: c.client.id.clone(),
            kind: c.kind.into(),
            status: c.status,
            client_text: c.client.text.clone(),
            client_complete: c.client.complete,
            server_text: c.server.text.clone(),
            server_complete: c.server.complete,
            decision,
        });
        if let Resolution::Merged(item) = &resolution {
            handler_log.record(Event::Write {
                client: index,
                id: c.client.id.clone(),
                kind: Kind::Update,
                text: Some(item.text.clone()),
                merged: true,
                seen_version: c.server.version.clone(),
            });
        }
        resolution
    };
    let progress_log = log.clone();
    SyncClient::builder(store, config.url.clone())
        .protocol(config.protocol)
        .retry(RetryPolicy {
            max_retries: 1,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
        })
        .timeout(Duration::from_secs(20))
        .connect_timeout(Duration::from_secs(5))
        .page_size(config.page_size)
        .conflict_handler::<TodoItem>(handler)
        .on_progress(move |e: &SyncEvent| {
            let phase = match e.phase {
                SyncPhase::Push => "push",
                _ => "pull",
            };
            progress_log.mark(&format!("P {index} {phase} {} {}", e.done, e.finished));
        })
        .build()
        .expect("a valid client")
}

/// One client of the workload: its store, table and sync client.
#[derive(Debug)]
pub struct Actor {
    /// Its index.
    pub index: usize,
    /// Its store.
    pub store: Store,
    /// Its `TodoItem` table.
    pub table: Table<TodoItem>,
    /// Its sync client.
    pub client: SyncClient,
    /// The shared event log.
    pub log: EventLog,
    /// Whether it may talk to the server (tests without a proxy per client use this).
    pub online: bool,
    prefix: String,
    counter: u64,
}

/// The ids the workload writes at a given step: a window of 12 that slides slowly, so
/// that ids deleted for good (a tombstone cannot be re-inserted) give way to new ones.
pub fn pick_id(rng: &mut Rng, step: u64) -> String {
    format!("k{}", step / 25 + rng.below(12))
}

impl Actor {
    /// Opens the client's store and makes its sync client.
    pub async fn open(store: Store, config: &ClientConfig, log: &EventLog) -> sync_runtime::Result<Actor> {
        let table = store.table::<TodoItem>().await?;
        let client = build_client(store.clone(), config, log);
        Ok(Actor {
            index: config.index,
            store,
            table,
            client,
            log: log.clone(),
            online: true,
            prefix: config.prefix.clone(),
            counter: 0,
        })
    }

    fn next_text(&mut self) -> String {
        self.counter += 1;
        format!("c{}-{}{}", self.index, self.prefix, self.counter)
    }

    /// One random local write on `id`: an insert when the item is not here, else an
    /// update (3 in 4) or a delete. Every local write must succeed.
    pub async fn write(&mut self, rng: &mut Rng, id: &str) -> Result<(), String> {
        let span = tracing::trace_span!("write", client = self.index);
        let _entered = span.enter();
        // With a sync engine running beside the app, a pull may bring or delete the item
        // between the read and the write: the write then fails (it exists already, or
        // no longer), and the app decides again from what it reads now.
        for _ in 0..5 {
            let current = self.table.get(id).await.map_err(|e| format!("client {}: get {id}: {e}", self.index))?;
            let roll = rng.below(4);
            let complete = rng.below(2) == 0;
            let (kind, text) = match &current {
                None => (Kind::Insert, Some(self.next_text())),
                Some(_) if roll < 3 => (Kind::Update, Some(self.next_text())),
                Some(_) => (Kind::Delete, None),
            };
            let event = Event::Write {
                client: self.index,
                id: id.to_owned(),
                kind,
                text: text.clone(),
                merged: false,
                seen_version: current.as_ref().and_then(|c| c.version.clone()),
            };
            self.log.begin_write(&event);
            let result = match (kind, current) {
                (Kind::Insert, _) => self
                    .table
                    .insert(TodoItem { id: id.to_owned(), text: text.unwrap_or_default(), complete, version: None })
                    .await
                    .map(drop),
                (Kind::Update, Some(mut item)) => {
                    item.text = text.unwrap_or_default();
                    item.complete = complete;
                    self.table.update(&item).await
                }
                (_, _) => self.table.delete(id).await,
            };
            match result {
                Ok(()) => {
                    self.log.commit_write(event);
                    return Ok(());
                }
                Err(e) if e.is_not_found() || matches!(e, sync_runtime::Error::AlreadyExists { .. }) => {
                    self.log.mark("A");
                    continue;
                }
                Err(e) => {
                    // What the queue holds for the item, to see how it came to refuse the write.
                    let ops = self.store.pending_ops().await.unwrap_or_default();
                    let ops: Vec<_> = ops.into_iter().filter(|op| op.item_id == id).collect();
                    let row = self.table.get(id).await;
                    return Err(format!(
                        "client {}: local {kind:?} of {id} failed: {e}\n  its operations: {ops:?}\n  its row: {row:?}",
                        self.index
                    ));
                }
            }
        }
        Err(format!("client {}: the item {id} kept changing under five writes in a row", self.index))
    }

    /// Pushes. Network trouble and an unavailable server are expected: a push they
    /// stop returns its report (status `Cancelled`); any other error is a failure.
    pub async fn push(&self) -> Result<sync_runtime::PushReport, String> {
        match self.client.push().await {
            Ok(report) => Ok(report),
            Err(e) => match e.push_report() {
                Some(report) => Ok(report.clone()),
                None => Err(format!("client {}: push failed: {e} ({e:?})", self.index)),
            },
        }
    }

    /// Pulls every item incrementally. Network trouble and 5xx answers are expected.
    /// Returns the report, or `None` when the pull failed in an expected way.
    pub async fn pull(&self) -> Result<Option<sync_runtime::PullReport>, String> {
        match self.client.pull(Query::<TodoItem>::new(), Some("all")).await {
            Ok(report) => Ok(Some(report)),
            Err(e) if e.is_network() || matches!(e.http_status(), Some(500 | 502 | 503 | 504)) => Ok(None),
            Err(e) => Err(format!("client {}: pull failed: {e} ({e:?})", self.index)),
        }
    }

    /// Settles every error row by the test's policy: a conflict left to the app is
    /// settled by taking the server's copy or by retrying the client's item (`rng`
    /// decides; without one, the operation id's parity); an update of an item deleted on the
    /// server (404/410) is discarded; a 5xx failure is sent again. Any other error row
    /// is a failure of the test. Returns how many rows it settled.
    pub async fn settle_errors(&self, mut rng: Option<&mut Rng>) -> Result<u64, String> {
        let who = self.index;
        let errors = self.table.errors().await.map_err(|e| format!("client {who}: errors: {e}"))?;
        let mut settled = 0;
        for error in errors {
            let record = &error.record;
            let kind: Kind = record.kind.into();
            let client_text = error.client_item.as_ref().map(|i| i.text.clone());
            let server_text = error.server_item.as_ref().map(|i| i.text.clone());
            let how = match record.status {
                Some(409 | 412) if error.server_item.is_some() => {
                    // Without a random source (the final sync), still retry half of them.
                    let retry = match rng.as_deref_mut() {
                        Some(r) => r.below(2) == 0,
                        None => record.op_id % 2 == 0,
                    };
                    if retry && kind != Kind::Delete && error.client_item.is_some() {
                        Settle::Retry
                    } else {
                        Settle::TakeServer
                    }
                }
                Some(404 | 410) if kind != Kind::Delete => Settle::Discard,
                Some(500..=599) => Settle::Again,
                // Clients whose handlers keep overwriting each other's copies (client
                // wins against merge) can conflict more times than one push allows:
                // send it again.
                None if record.message.starts_with("still conflicting") => Settle::Again,
                _ => return Err(format!("client {who}: an error row the test cannot explain: {record:?}")),
            };
            self.log.record(Event::Settled {
                client: who,
                id: record.item_id.clone(),
                kind,
                status: record.status,
                client_text: client_text.clone(),
                server_text,
                how,
            });
            let result = match how {
                Settle::TakeServer => self.table.resolve_take_server(&error).await,
                Settle::Retry => {
                    let item = error.client_item.clone().expect("checked above");
                    self.table.resolve_retry_with(&error, item).await
                }
                Settle::Discard => self.table.resolve_discard(&error).await,
                Settle::Again => self.table.resolve_change_kind(&error, record.kind).await,
            };
            result.map_err(|e| format!("client {who}: settling {record:?} by {how:?}: {e}"))?;
            settled += 1;
        }
        Ok(settled)
    }

    /// The client's rows, by id: `(id, text, complete, version)`.
    pub async fn rows(&self) -> Result<Vec<RowState>, String> {
        let items = self
            .table
            .query()
            .order_by(TodoItem::FIELDS.id.asc())
            .all()
            .await
            .map_err(|e| format!("client {}: rows: {e}", self.index))?;
        Ok(items.into_iter().map(RowState::from).collect())
    }
}

/// One row as the convergence check compares it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RowState {
    /// The id.
    pub id: String,
    /// The text.
    pub text: String,
    /// Done or not.
    pub complete: bool,
    /// The server's version.
    pub version: Option<String>,
}

impl From<TodoItem> for RowState {
    fn from(i: TodoItem) -> RowState {
        RowState { id: i.id, text: i.text, complete: i.complete, version: i.version }
    }
}

/// With faults off: every client settles its errors, pushes and pulls, round after
/// round, until a whole round changes nothing (no error settled, nothing pushed, no
/// conflict, every pull receives nothing) and no operation or error is left anywhere.
/// Returns the number of rounds.
pub async fn sync_until_quiet(actors: &[Actor], max_rounds: u32) -> Result<u32, String> {
    for round in 1..=max_rounds {
        let mut quiet = true;
        for a in actors {
            if a.settle_errors(None).await? > 0 {
                quiet = false;
            }
            let push = a.push().await?;
            if !matches!(push.status, PushStatus::Complete) {
                return Err(format!("client {}: the final push did not complete: {push:?}", a.index));
            }
            if push.pushed > 0 || push.errors > 0 || !push.conflicts.is_empty() {
                quiet = false;
            }
            let pull = a
                .client
                .pull(Query::<TodoItem>::new(), Some("all"))
                .await
                .map_err(|e| format!("client {}: the final pull failed: {e}", a.index))?;
            if pull.received > 0 {
                quiet = false;
            }
        }
        let mut left = 0;
        for a in actors {
            left += a.store.pending_count().await.map_err(|e| e.to_string())?;
            left += a.store.error_count().await.map_err(|e| e.to_string())?;
        }
        if quiet && left == 0 {
            return Ok(round);
        }
    }
    let mut state = String::new();
    for a in actors {
        let ops = a.store.pending_ops().await.map_err(|e| e.to_string())?;
        let errors = a.store.errors().await.map_err(|e| e.to_string())?;
        state.push_str(&format!("\nclient {}: ops {ops:?}\n  errors {errors:?}", a.index));
    }
    Err(format!("no quiet round after {max_rounds} rounds of settle, push and pull:{state}"))
}
