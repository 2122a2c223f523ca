//! The change feed across instances on one database: `LISTEN`/`NOTIFY`.
//!
//! Each storage's relay keeps one connection of its own (beside the pool and the
//! reserving task's). On it, it `LISTEN`s on the channel of its schema
//! (`sync_feed_<schema>`, so that deployments and test runs in other schemas of the
//! database never hear each other; a hash of the schema when the name would pass
//! PostgreSQL's 63 bytes), and sends this instance's announcements with
//! `pg_notify(channel, payload)`, where the payload is
//! `{"i":"<instance>","c":[["<table>","<owner>"|null],...]}`. A notification of this
//! instance's own is skipped (its hub already nudged its subscribers).
//!
//! Announcements are made after the write committed (the hub publishes when the HTTP
//! write succeeded), merged while the relay is busy (a set of `(table, owner)` pairs,
//! collapsed to whole tables if it grows past [`MAX_PENDING`]) and sent together in
//! payloads under PostgreSQL's 8000-byte limit: a writer never waits for the relay. A
//! notification is delivered to listeners when the `pg_notify` commits, which is at
//! once (autocommit).
//!
//! Why not `NOTIFY` inside each write's transaction: the writes of this backend commit
//! one statement each ([`super::attempt`]); a notification there would add to every
//! write's statement what a connection of the relay's does off the writers' path.
//!
//! When the connection fails, the relay reconnects with backoff (100 ms doubling to
//! 30 s), puts back what it could not send, and after each (re)connect tells its hub
//! that anything may have changed ([`Heard::Anything`]): notifications sent while it
//! was not listening are lost.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;

use super::connect_error;
use crate::storage::{BoxFuture, Heard, HeardFn, Relay, StorageError};

/// The first pause before reconnecting; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// PostgreSQL's identifiers (and so channel names) are at most 63 bytes.
const MAX_CHANNEL: usize = 63;
/// The largest payload sent (PostgreSQL refuses 8000 bytes and more).
const MAX_PAYLOAD: usize = 7000;
/// Pending announcements beyond which owners are forgotten (a table's announcement
/// without an owner nudges every subscriber of the table).
const MAX_PENDING: usize = 4096;

/// The relay of one storage (see the module docs).
#[derive(Debug)]
pub(crate) struct PgRelay {
    outbox: Arc<Outbox>,
    task: JoinHandle<()>,
    /// Whether the relay listens now.
    listening: watch::Receiver<bool>,
}

/// This instance's announcements not sent yet.
#[derive(Debug, Default)]
struct Outbox {
    state: Mutex<OutboxState>,
    wake: Notify,
}

#[derive(Debug, Default)]
struct OutboxState {
    changes: BTreeSet<(String, Option<String>)>,
    closed: bool,
}

impl Outbox {
    fn put(&self, changes: impl IntoIterator<Item = (String, Option<String>)>) {
        if let Ok(mut state) = self.state.lock() {
            if state.closed {
                return;
            }
            state.changes.extend(changes);
            if state.changes.len() > MAX_PENDING {
                let tables: BTreeSet<(String, Option<String>)> =
                    std::mem::take(&mut state.changes).into_iter().map(|(table, _)| (table, None)).collect();
                state.changes = tables;
            }
        }
        self.wake.notify_one();
    }

    /// What waits to be sent, or `None` once closed.
    fn take(&self) -> Option<BTreeSet<(String, Option<String>)>> {
        let mut state = self.state.lock().ok()?;
        match state.closed {
            true => None,
            false => Some(std::mem::take(&mut state.changes)),
        }
    }

    fn is_closed(&self) -> bool {
        self.state.lock().map_or(true, |state| state.closed)
    }
}

/// A notification's payload.
#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    /// The announcing instance.
    i: String,
    /// The writes: table, owner.
    c: Vec<(String, Option<String>)>,
}

impl PgRelay {
    /// Starts the relay's task, which connects at once and again whenever it must.
    pub(crate) fn start(config: tokio_postgres::Config, heard: HeardFn) -> PgRelay {
        let outbox = Arc::new(Outbox::default());
        let instance = uuid::Uuid::new_v4().simple().to_string();
        let (listening_tx, listening) = watch::channel(false);
        let task = tokio::spawn(run(config, heard, Arc::clone(&outbox), instance, listening_tx));
        PgRelay { outbox, task, listening }
    }
}

impl Relay for PgRelay {
    fn announce(&self, table: &str, owner: Option<&str>) {
        // An owner too long for a payload is left out: the table's every subscriber is nudged.
        let owner = owner.filter(|owner| owner.len() <= MAX_PAYLOAD / 2).map(str::to_owned);
        self.outbox.put([(table.to_owned(), owner)]);
    }

    fn listening(&self) -> BoxFuture<'_, ()> {
        let mut listening = self.listening.clone();
        Box::pin(async move {
            let _ = listening.wait_for(|listening| *listening).await;
        })
    }

    fn close(&self) {
        if let Ok(mut state) = self.outbox.state.lock() {
            state.closed = true;
        }
        self.task.abort();
    }
}

impl Drop for PgRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The relay's task: sessions, with backoff between them.
async fn run(
    config: tokio_postgres::Config,
    heard: HeardFn,
    outbox: Arc<Outbox>,
    instance: String,
    listening: watch::Sender<bool>,
) {
    let mut backoff = MIN_BACKOFF;
    while !outbox.is_closed() {
        let ended = session(&config, &heard, &outbox, &instance, &listening).await;
        if listening.send_replace(false) {
            backoff = MIN_BACKOFF;
        }
        match ended {
            Ok(()) => return,
            Err(e) => tracing::warn!(
                error = %e,
                retry_ms = backoff.as_millis() as u64,
                "the change feed's relay lost PostgreSQL; reconnecting"
            ),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The channel of a schema (see the module docs).
fn channel_name(schema: &str) -> String {
    let name = format!("sync_feed_{schema}");
    if name.len() <= MAX_CHANNEL {
        return name;
    }
    // FNV-1a: the same on every instance and every build.
    let hash = schema.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("sync_feed_{hash:016x}")
}

/// Payloads announcing `changes`, each under [`MAX_PAYLOAD`] bytes.
fn payloads(instance: &str, changes: impl IntoIterator<Item = (String, Option<String>)>) -> Vec<String> {
    let mut out = Vec::new();
    let mut batch = Payload { i: instance.to_owned(), c: Vec::new() };
    let mut size = 0;
    for change in changes {
        let len = change.0.len() + change.1.as_ref().map_or(4, String::len) + 8;
        if !batch.c.is_empty() && size + len > MAX_PAYLOAD - instance.len() - 16 {
            out.extend(serde_json::to_string(&batch).ok());
            batch.c.clear();
            size = 0;
        }
        size += len;
        batch.c.push(change);
    }
    if !batch.c.is_empty() {
        out.extend(serde_json::to_string(&batch).ok());
    }
    out
}

/// One connection's life: listen, announce until the connection fails (`Err`) or the
/// relay is closed (`Ok`). Sets `listening` once it listens.
async fn session(
    config: &tokio_postgres::Config,
    heard: &HeardFn,
    outbox: &Outbox,
    instance: &str,
    listening: &watch::Sender<bool>,
) -> Result<(), StorageError> {
    let (client, mut connection) = config.connect(tokio_postgres::NoTls).await.map_err(connect_error)?;
    let (lost, mut lost_rx) = oneshot::channel::<String>();
    let reader = {
        let heard = Arc::clone(heard);
        let instance = instance.to_owned();
        tokio::spawn(async move {
            let end = loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => hear(&heard, &instance, n.payload()),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break e.to_string(),
                    None => break "the connection closed".to_owned(),
                }
            };
            let _ = lost.send(end);
        })
    };
    let _reader = AbortOnDrop(reader);
    let lost_error = |why: String| StorageError::Setup(format!("the relay's connection ended: {why}"));
    let db = |e: tokio_postgres::Error| StorageError::Database(Box::new(e));

    let schema: Option<String> = client.query_one("SELECT current_schema()", &[]).await.map_err(db)?.get(0);
    let channel = channel_name(schema.as_deref().unwrap_or("public"));
    client.batch_execute(&format!("LISTEN \"{}\"", channel.replace('"', "\"\""))).await.map_err(db)?;
    tracing::debug!(channel, "the change feed's relay listens");
    // Notifications sent while this instance was not listening are lost.
    heard(Heard::Anything);
    listening.send_replace(true);
    loop {
        tokio::select! {
            why = &mut lost_rx => return Err(lost_error(why.unwrap_or_default())),
            () = outbox.wake.notified() => {}
        }
        let Some(changes) = outbox.take() else { return Ok(()) };
        if changes.is_empty() {
            continue;
        }
        for payload in payloads(instance, changes.iter().cloned()) {
            if let Err(e) = client.execute("SELECT pg_notify($1, $2)", &[&channel, &payload]).await {
                // Sent again on the next connection (a duplicate nudge costs a pull, a
                // lost one a polling interval).
                outbox.put(changes);
                return Err(db(e));
            }
        }
    }
}

/// A notification: nudges for another instance's writes.
fn hear(heard: &HeardFn, instance: &str, payload: &str) {
    match serde_json::from_str::<Payload>(payload) {
        Ok(payload) if payload.i == instance => {}
        Ok(payload) => {
            for (table, owner) in &payload.c {
                heard(Heard::Write { table, owner: owner.as_deref() });
            }
        }
        Err(e) => tracing::warn!(error = %e, "a change feed notification that does not parse; ignored"),
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_per_schema_and_fit_an_identifier() {
        assert_eq!(channel_name("public"), "sync_feed_public");
        let long = "s".repeat(80);
        let hashed = channel_name(&long);
        assert!(hashed.len() <= MAX_CHANNEL && hashed.starts_with("sync_feed_"));
        assert_eq!(hashed, channel_name(&long));
        assert_ne!(hashed, channel_name(&"t".repeat(80)));
    }

    #[test]
    fn payloads_stay_under_the_limit_and_carry_every_change() {
        let changes: Vec<(String, Option<String>)> =
            (0..2000).map(|i| (format!("Table{}", i % 7), Some(format!("user-{i:05}")))).collect();
        let sent = payloads("me", changes.clone());
        assert!(sent.len() > 1);
        let mut heard = Vec::new();
        for payload in &sent {
            assert!(payload.len() < 8000, "{}", payload.len());
            let p: Payload = serde_json::from_str(payload).unwrap();
            assert_eq!(p.i, "me");
            heard.extend(p.c);
        }
        assert_eq!(heard, changes);
    }

    #[test]
    fn own_notifications_are_skipped_and_others_heard() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let heard: HeardFn = {
            let log = Arc::clone(&log);
            Arc::new(move |h: Heard<'_>| log.lock().unwrap().push(format!("{h:?}")))
        };
        hear(&heard, "me", r#"{"i":"me","c":[["T",null]]}"#);
        hear(&heard, "me", r#"{"i":"other","c":[["T",null],["O","bob"]]}"#);
        hear(&heard, "me", "garbage");
        assert_eq!(
            *log.lock().unwrap(),
            [r#"Write { table: "T", owner: None }"#, r#"Write { table: "O", owner: Some("bob") }"#]
        );
    }
}
