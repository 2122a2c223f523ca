//! The sync engine against a real `sync-server` in a process of its own (killed with
//! SIGKILL and started again by some tests), on SQLite and on PostgreSQL (set
//! `SYNC_TEST_POSTGRES_URL`, else the PostgreSQL runs say so and skip): devices
//! converge with no sync call of the app's, a failed round is retried by itself, a
//! refused operation does not stop the rest, a resolution goes out by itself, a write
//! by another process goes out too, and a stop in the middle of a push or a pull leaves
//! the store consistent.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::runtime;
use sync_runtime::{ProtocolVersion, RetryPolicy, Store, SyncClient, SyncEngine, SyncErrorKind, SyncStatus, Table};
use sync_tests::TodoItem;

/// How long a test waits for devices to converge before it fails: a bound on
/// correctness (nothing converges if the engine stalls), not a speed measurement.
const CONVERGE_WITHIN: Duration = Duration::from_secs(60);

/// A `sync-server` process (`server_child`).
struct ServerProcess {
    child: Option<Child>,
    database: String,
    addr: String,
    url: String,
    max_body: Option<usize>,
    no_feed: bool,
}

impl ServerProcess {
    fn start(database: &str) -> ServerProcess {
        ServerProcess::start_at(database, "127.0.0.1:0", None)
    }

    fn start_at(database: &str, addr: &str, max_body: Option<usize>) -> ServerProcess {
        ServerProcess::start_with(database, addr, max_body, false)
    }

    /// A server without the change feed, as the Azure family's.
    fn start_without_feed(database: &str) -> ServerProcess {
        ServerProcess::start_with(database, "127.0.0.1:0", None, true)
    }

    fn start_with(database: &str, addr: &str, max_body: Option<usize>, no_feed: bool) -> ServerProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_server_child"));
        command.arg(database).arg(addr).stdout(Stdio::piped()).stderr(Stdio::inherit());
        if let Some(bytes) = max_body {
            command.arg(bytes.to_string());
        }
        if no_feed {
            command.arg("no-feed");
        }
        let mut child = command.spawn().expect("the server child starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("the server says where it listens");
        let url = line.trim().strip_prefix("listening ").expect("a `listening URL` line").to_owned();
        let addr = url.trim_start_matches("http://").to_owned();
        ServerProcess { child: Some(child), database: database.to_owned(), addr, url, max_body, no_feed }
    }

    /// SIGKILL: no shutdown, no flush.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same address and database.
    fn restart(&mut self) {
        self.kill();
        let (database, addr, max_body, no_feed) =
            (self.database.clone(), self.addr.clone(), self.max_body, self.no_feed);
        *self = ServerProcess::start_with(&database, &addr, max_body, no_feed);
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A PostgreSQL schema of one test, dropped at the end.
struct PgSchema {
    base: String,
    name: String,
}

impl PgSchema {
    /// `None` (with a note) when `SYNC_TEST_POSTGRES_URL` is not set.
    fn create(test: &str) -> Option<PgSchema> {
        let Ok(base) = std::env::var("SYNC_TEST_POSTGRES_URL") else {
            eprintln!("SYNC_TEST_POSTGRES_URL is not set: skipping the PostgreSQL run of {test}");
            return None;
        };
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let name = format!("engine_{test}_{}_{}", std::process::id(), nanos % 1_000_000_000);
        pg_execute(&base, &format!("CREATE SCHEMA {name}"));
        Some(PgSchema { base, name })
    }

    fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-csearch_path%3D{}", self.base, self.name)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        pg_execute(&self.base, &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
    }
}

fn pg_execute(url: &str, sql: &str) {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    // A runtime of its own: called from plain test threads and from drops.
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async move {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("PostgreSQL");
            tokio::spawn(conn);
            client.batch_execute(&sql).await.expect("the schema statement");
        })
    })
    .join()
    .unwrap();
}

/// The URL of a SQLite server database in `dir`.
fn sqlite_url(dir: &Path) -> String {
    format!("sqlite:{}", dir.join("server.db").display())
}

/// Runs `test` on a SQLite server database in `dir`, and again on PostgreSQL.
fn on_both_databases(name: &str, test: impl Fn(&Path, &str)) {
    let dir = tempfile::tempdir().unwrap();
    test(&dir.path().join("sqlite"), &sqlite_url(dir.path()));
    if let Some(schema) = PgSchema::create(name) {
        test(&dir.path().join("postgres"), &schema.url());
    }
}

/// A device with an engine running: its store, table, client and engine.
struct Device {
    store: Store,
    todos: Table<TodoItem>,
    client: SyncClient,
    engine: Option<SyncEngine>,
}

impl Device {
    async fn open(dir: &Path, name: &str, url: &str) -> Device {
        Device::open_with(dir, name, url, 500).await
    }

    async fn open_with(dir: &Path, name: &str, url: &str, page_size: u32) -> Device {
        std::fs::create_dir_all(dir).unwrap();
        let store = Store::open(dir.join(format!("{name}.db"))).await.unwrap();
        let todos = store.table::<TodoItem>().await.unwrap();
        let client = SyncClient::builder(store.clone(), url)
            .protocol(ProtocolVersion::V3)
            .retry(RetryPolicy::none())
            .page_size(page_size)
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Device { store, todos, client, engine: None }
    }

    /// Starts the engine: quick polls and short backoffs, so the tests run quickly.
    fn start(&mut self) {
        self.start_polling_every(Duration::from_millis(300));
    }

    /// Starts the engine with polling so rare that only the change feed can bring the
    /// other devices' changes in time.
    fn start_on_feed_only(&mut self) {
        self.start_polling_every(Duration::from_secs(3600));
    }

    fn start_polling_every(&mut self, poll: Duration) {
        let engine = self
            .client
            .engine()
            .table::<TodoItem>()
            .push_debounce(Duration::from_millis(20))
            .poll_interval(poll)
            .feed_poll_interval(poll)
            .backoff(Duration::from_millis(50), Duration::from_millis(400))
            .start()
            .unwrap();
        self.engine = Some(engine);
    }

    fn status(&self) -> SyncStatus {
        self.engine.as_ref().unwrap().status()
    }

    async fn items(&self) -> Vec<(String, String, bool)> {
        let items = self.todos.query().order_by(TodoItem::FIELDS.id.asc()).all().await.unwrap();
        items.into_iter().map(|i| (i.id, i.text, i.complete)).collect()
    }
}

/// Waits until every device holds `expected` (id, text, complete; by id) and has
/// nothing queued.
async fn converge(devices: &[&Device], expected: &[(String, String, bool)]) {
    let started = Instant::now();
    loop {
        let mut all = true;
        for device in devices {
            if device.items().await != expected || device.store.pending_count().await.unwrap() != 0 {
                all = false;
                break;
            }
        }
        if all {
            return;
        }
        if started.elapsed() > CONVERGE_WITHIN {
            for (i, device) in devices.iter().enumerate() {
                eprintln!(
                    "device {i}: {:?}\n  status {:?}",
                    device.items().await,
                    device.engine.as_ref().map(|e| e.status())
                );
            }
            panic!("the devices did not converge on {expected:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the device's engine status satisfies `done` (a bound on correctness,
/// not a speed measurement).
async fn wait_for_status(device: &Device, what: &str, done: impl Fn(&SyncStatus) -> bool) -> SyncStatus {
    let started = Instant::now();
    loop {
        let status = device.status();
        if done(&status) {
            return status;
        }
        assert!(started.elapsed() < CONVERGE_WITHIN, "never {what}: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Pulls on `device` (by hand) until it holds `expected`: what another device pushed
/// reached the server.
async fn pull_until(device: &Device, what: &str, expected: &[(String, String, bool)]) {
    let started = Instant::now();
    loop {
        device.client.pull(sync_runtime::Query::<TodoItem>::new(), Some("all")).await.unwrap();
        if device.items().await == expected {
            return;
        }
        assert!(started.elapsed() < CONVERGE_WITHIN, "{what} never reached the server");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn row(id: &str, text: &str, complete: bool) -> (String, String, bool) {
    (id.to_owned(), text.to_owned(), complete)
}

/// Three devices write (inserts, edits, deletes, some of one another's items) with no
/// sync call: each converges on the same list by itself.
#[test]
fn three_devices_converge_with_no_sync_call() {
    on_both_databases("converge", |dir, database| {
        let server = ServerProcess::start(database);
        runtime().block_on(async {
            let mut devices = Vec::new();
            for name in ["a", "b", "c"] {
                let mut device = Device::open(dir, name, &server.url).await;
                device.start();
                devices.push(device);
            }
            let mut expected = Vec::new();
            for (d, device) in devices.iter().enumerate() {
                for i in 0..10 {
                    let id = format!("{d}-{i:02}");
                    device.todos.insert(TodoItem::new(&id, "new")).await.unwrap();
                    expected.push(row(&id, "new", false));
                }
            }
            // Each device deletes one of its items and edits one of its own.
            for (d, device) in devices.iter().enumerate() {
                device.todos.delete(&format!("{d}-09")).await.unwrap();
                let mut item = device.todos.get(&format!("{d}-00")).await.unwrap().unwrap();
                item.text = "edited".into();
                device.todos.update(&item).await.unwrap();
            }
            expected.retain(|(id, ..)| !id.ends_with("-09"));
            for r in &mut expected {
                if r.0.ends_with("-00") {
                    r.1 = "edited".into();
                }
            }
            expected.sort();
            let refs: Vec<&Device> = devices.iter().collect();
            converge(&refs, &expected).await;

            // Then one device edits an item another made, once everyone has it.
            let mut item = devices[2].todos.get("0-05").await.unwrap().unwrap();
            item.complete = true;
            devices[2].todos.update(&item).await.unwrap();
            expected.iter_mut().find(|r| r.0 == "0-05").unwrap().2 = true;
            converge(&refs, &expected).await;
            for device in &devices {
                let status = device.status();
                assert!(status.connected && status.running, "{status:?}");
                assert_eq!((status.pending, status.errors), (0, 0), "{status:?}");
                assert!(status.last_synced_at.is_some(), "{status:?}");
            }
            for device in &mut devices {
                device.engine.take().unwrap().stop().await.unwrap();
            }
        });
    });
}

/// The server is killed (SIGKILL) while devices write and started again later: the
/// engines back off while it is gone, and converge by themselves once it is back, with
/// nothing lost or sent twice.
#[test]
fn the_server_killed_and_restarted_while_devices_write() {
    on_both_databases("killed", |dir, database| {
        let mut server = ServerProcess::start(database);
        runtime().block_on(async {
            let mut a = Device::open(dir, "a", &server.url).await;
            let mut b = Device::open(dir, "b", &server.url).await;
            a.start();
            b.start();
            let mut expected = Vec::new();
            for round in 0..3 {
                for i in 0..15 {
                    let (device, id) =
                        if i % 2 == 0 { (&a, format!("a{round}-{i:02}")) } else { (&b, format!("b{round}-{i:02}")) };
                    device.todos.insert(TodoItem::new(&id, "x")).await.unwrap();
                    expected.push(row(&id, "x", false));
                    if i == 7 {
                        server.kill();
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                // Offline for a while: the engines fail, back off and try again.
                let status = wait_for_status(&a, "offline", |s| {
                    s.last_error.as_ref().is_some_and(|e| e.kind == SyncErrorKind::Network)
                })
                .await;
                assert!(!status.connected, "{status:?}");
                assert!(status.retry_at.is_some() && status.pending > 0, "{status:?}");
                server.restart();
                expected.sort();
                converge(&[&a, &b], &expected).await;
            }
            assert!(a.status().last_error.is_none() && a.status().connected, "a clean round clears the error");
            // Each item went to the server once: a device starting from nothing gets
            // exactly the list.
            let fresh = Device::open(dir, "fresh", &server.url).await;
            fresh.client.pull(sync_runtime::Query::<TodoItem>::new(), None).await.unwrap();
            assert_eq!(fresh.items().await, expected);
            a.engine.take().unwrap().stop().await.unwrap();
            b.engine.take().unwrap().stop().await.unwrap();
        });
    });
}

/// An operation the server refuses (a body over its limit) becomes an error row; the
/// operations after it go out, and the status says so.
#[test]
fn a_refused_operation_does_not_stop_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let database = sqlite_url(dir.path());
    let server = ServerProcess::start_at(&database, "127.0.0.1:0", Some(4096));
    runtime().block_on(async {
        let mut a = Device::open(dir.path(), "a", &server.url).await;
        let mut b = Device::open(dir.path(), "b", &server.url).await;
        a.todos.insert(TodoItem::new("big", &"x".repeat(10_000))).await.unwrap();
        a.todos.insert(TodoItem::new("small-1", "fits")).await.unwrap();
        a.todos.insert(TodoItem::new("small-2", "fits")).await.unwrap();
        a.start();
        b.start();
        let expected_b = vec![row("small-1", "fits", false), row("small-2", "fits", false)];
        converge(&[&b], &expected_b).await;
        let status = wait_for_status(&a, "one error", |s| s.errors == 1).await;
        // The refused operation stays queued, in the error table, until the app settles it.
        assert_eq!((status.errors, status.pending), (1, 1), "{status:?}");
        assert_eq!(status.last_error.as_ref().map(|e| e.kind), Some(SyncErrorKind::Refused), "{status:?}");
        assert!(status.connected, "{status:?}");
        let errors = a.todos.errors().await.unwrap();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].record.item_id, "big");

        // The app settles it (a shorter text): it goes out with no other trigger.
        let mut fixed = errors[0].client_item.clone().expect("the local item");
        fixed.text = "shorter".into();
        a.todos.resolve_retry_with(&errors[0], fixed).await.unwrap();
        let expected = vec![row("big", "shorter", false), row("small-1", "fits", false), row("small-2", "fits", false)];
        converge(&[&a, &b], &expected).await;
        wait_for_status(&a, "settled", |s| s.errors == 0).await;
    });
}

/// A conflict left to the app waits in the error table; once the app resolves it, the
/// engine pushes the resolution by itself.
#[test]
fn a_resolved_conflict_goes_out_with_no_other_trigger() {
    let dir = tempfile::tempdir().unwrap();
    let database = sqlite_url(dir.path());
    let server = ServerProcess::start(&database);
    runtime().block_on(async {
        let mut a = Device::open(dir.path(), "a", &server.url).await;
        let b = Device::open(dir.path(), "b", &server.url).await;
        b.todos.insert(TodoItem::new("x", "first")).await.unwrap();
        b.client.sync::<TodoItem>().await.unwrap();
        a.client.sync::<TodoItem>().await.unwrap();
        // b changes it on the server; a changes its older copy, then starts its engine.
        let mut theirs = b.todos.get("x").await.unwrap().unwrap();
        theirs.text = "b's".into();
        b.todos.update(&theirs).await.unwrap();
        b.client.push().await.unwrap();
        let mut mine = a.todos.get("x").await.unwrap().unwrap();
        mine.text = "a's".into();
        a.todos.update(&mine).await.unwrap();
        a.start();
        let status = wait_for_status(&a, "one error", |s| s.errors == 1).await;
        assert_eq!(status.last_error.as_ref().map(|e| e.kind), Some(SyncErrorKind::Conflict), "{status:?}");
        let errors = a.todos.errors().await.unwrap();
        let server_copy = errors[0].server_item.clone().expect("the server's copy");
        assert_eq!(server_copy.text, "b's");
        a.todos.resolve_retry_with(&errors[0], TodoItem { text: "merged".into(), ..mine }).await.unwrap();
        // No sync call: the engine sends the resolution; b sees it with a pull.
        pull_until(&b, "the resolution", &[row("x", "merged", false)]).await;
    });
}

/// A failed round is tried again by itself: an engine started while the server is
/// down, with items queued, sends them once the server comes up, with no new write.
#[test]
fn no_stall_after_failed_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let database = sqlite_url(dir.path());
    let mut server = ServerProcess::start(&database);
    server.kill();
    runtime().block_on(async {
        let mut a = Device::open(dir.path(), "a", &server.url).await;
        a.todos.insert(TodoItem::new("queued", "while down")).await.unwrap();
        a.start();
        let mut statuses = a.engine.as_ref().unwrap().statuses();
        // Several failed rounds in a row.
        let mut failures = 0;
        let mut last_retry = None;
        while failures < 3 {
            let status = statuses.next().await.expect("the engine runs");
            if status.retry_at.is_some() && status.retry_at != last_retry {
                last_retry = status.retry_at;
                failures += 1;
                assert_eq!(status.last_error.as_ref().map(|e| e.kind), Some(SyncErrorKind::Network));
                assert!(!status.connected && status.pending == 1, "{status:?}");
            }
        }
        server.restart();
        converge(&[&a], &[row("queued", "while down", false)]).await;
        wait_for_status(&a, "back to normal", |s| s.connected && s.last_error.is_none() && s.retry_at.is_none()).await;
    });
}

/// A write committed by another process to the store file (a command-line tool beside
/// the app) is pushed by the app's engine.
#[test]
fn a_write_by_another_process_is_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let database = sqlite_url(dir.path());
    let server = ServerProcess::start(&database);
    runtime().block_on(async {
        let mut a = Device::open(dir.path(), "a", &server.url).await;
        let b = Device::open(dir.path(), "b", &server.url).await;
        a.start();
        // Let the first round end: from then on only a change makes it push.
        wait_for_status(&a, "synced", |s| s.last_synced_at.is_some()).await;
        let status = Command::new(env!("CARGO_BIN_EXE_store_writer"))
            .arg(dir.path().join("a.db"))
            .arg("from-cli")
            .arg("written by another process")
            .status()
            .unwrap();
        assert!(status.success());
        pull_until(&b, "the other process's write", &[row("from-cli", "written by another process", false)]).await;
    });
}

/// `stop()` in the middle of a push and in the middle of a pull: it returns, the store
/// is consistent, nothing is left half-recorded, and a later sync finishes the work
/// with each item sent once.
#[test]
fn stop_during_a_push_and_during_a_pull_leaves_the_store_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let database = sqlite_url(dir.path());
    let server = ServerProcess::start(&database);
    runtime().block_on(async {
        // During a push of 300 operations.
        let mut a = Device::open(dir.path(), "a", &server.url).await;
        let items: Vec<TodoItem> = (0..300).map(|i| TodoItem::new(&format!("p{i:03}"), "pushed")).collect();
        a.todos.insert_many(items).await.unwrap();
        a.start();
        let mut statuses = a.engine.as_ref().unwrap().statuses();
        loop {
            let status = statuses.next().await.unwrap();
            if status.upload.as_ref().is_some_and(|u| u.done >= 20) {
                break;
            }
        }
        a.engine.take().unwrap().stop().await.unwrap();
        let status = statuses.next().await;
        assert!(status.is_none_or(|s| !s.running), "the stream ends with the engine");
        let pending = a.store.pending_count().await.unwrap();
        assert!((1..300).contains(&pending), "stopped mid-push: {pending} left");
        assert!(a.store.check_integrity().await.unwrap().is_ok());
        let ops = a.store.pending_ops().await.unwrap();
        assert!(
            ops.iter().all(|op| op.state == sync_runtime::OpState::Pending),
            "nothing left marked attempted: {ops:?}"
        );
        a.client.push().await.unwrap();

        // During a pull of those 300 rows, 10 a page.
        let mut b = Device::open_with(dir.path(), "b", &server.url, 10).await;
        b.start();
        let mut statuses = b.engine.as_ref().unwrap().statuses();
        loop {
            let status = statuses.next().await.unwrap();
            if status.download.as_ref().is_some_and(|d| d.done >= 50) {
                break;
            }
        }
        b.engine.take().unwrap().stop().await.unwrap();
        let have = b.todos.count_all().await.unwrap();
        assert!((50..300).contains(&have), "stopped mid-pull: {have} rows");
        assert!(b.store.check_integrity().await.unwrap().is_ok());
        // The engine's pull goes on from its cursor.
        let report = b.client.sync::<TodoItem>().await.unwrap();
        assert_eq!(report.pull.received + have, 300, "each row pulled once");
        assert_eq!(b.todos.count_all().await.unwrap(), 300);
    });
}

/// Manual calls take turns with the engine; the engine keeps going after them.
#[test]
fn manual_calls_work_beside_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let database = sqlite_url(dir.path());
    let server = ServerProcess::start(&database);
    runtime().block_on(async {
        let mut a = Device::open(dir.path(), "a", &server.url).await;
        let mut b = Device::open(dir.path(), "b", &server.url).await;
        a.start();
        b.start();
        let mut expected = Vec::new();
        for i in 0..30 {
            let id = format!("m{i:02}");
            a.todos.insert(TodoItem::new(&id, "x")).await.unwrap();
            expected.push(row(&id, "x", false));
            if i % 5 == 0 {
                a.client.sync::<TodoItem>().await.unwrap();
                b.client.pull(sync_runtime::Query::<TodoItem>::new(), None).await.unwrap();
            }
        }
        converge(&[&a, &b], &expected).await;
    });
}

/// With no async runtime at all: started from a plain thread, its status read, and
/// stopped with `.wait()`.
#[test]
fn the_engine_runs_from_a_plain_thread() {
    let dir = tempfile::tempdir().unwrap();
    let database = sqlite_url(dir.path());
    let server = ServerProcess::start(&database);
    let store = Store::open(dir.path().join("plain.db")).wait().unwrap();
    let todos = store.table::<TodoItem>().wait().unwrap();
    let client = SyncClient::builder(store.clone(), &server.url).protocol(ProtocolVersion::V3).build().unwrap();
    todos.insert(TodoItem::new("plain", "thread")).wait().unwrap();
    let engine = client.engine().table::<TodoItem>().start().unwrap();
    let mut statuses = engine.statuses();
    loop {
        let status = statuses.wait_next().expect("the engine runs");
        if status.pending == 0 && status.last_synced_at.is_some() {
            assert!(status.connected, "{status:?}");
            break;
        }
    }
    engine.stop().wait().unwrap();
    assert!(statuses.wait_next().is_none_or(|s| !s.running));
    assert_eq!(store.pending_count().wait().unwrap(), 0);
}

/// With the server's change feed, a change on one device reaches another with no poll
/// (polling is set to once an hour): on SQLite and on PostgreSQL.
#[test]
fn the_feed_brings_changes_without_polling() {
    on_both_databases("feed", |dir, database| {
        let server = ServerProcess::start(database);
        runtime().block_on(async {
            let mut a = Device::open(dir, "a", &server.url).await;
            let mut b = Device::open(dir, "b", &server.url).await;
            a.start_on_feed_only();
            b.start_on_feed_only();
            wait_for_status(&b, "subscribed", |s| s.feed && s.connected).await;
            let mut expected = Vec::new();
            for i in 0..10 {
                let id = format!("f{i}");
                a.todos.insert(TodoItem::new(&id, "fed")).await.unwrap();
                expected.push(row(&id, "fed", false));
                converge(&[&a, &b], &expected).await;
            }
        });
    });
}

/// The server killed and started again: the engines subscribe again by themselves and
/// nothing written after (or while the stream was down) is missed.
#[test]
fn the_feed_comes_back_after_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let database = sqlite_url(dir.path());
    let mut server = ServerProcess::start(&database);
    runtime().block_on(async {
        let mut a = Device::open(dir.path(), "a", &server.url).await;
        let mut b = Device::open(dir.path(), "b", &server.url).await;
        a.start_on_feed_only();
        b.start_on_feed_only();
        wait_for_status(&b, "subscribed", |s| s.feed).await;
        a.todos.insert(TodoItem::new("before", "x")).await.unwrap();
        converge(&[&a, &b], &[row("before", "x", false)]).await;

        server.kill();
        wait_for_status(&b, "the feed lost", |s| !s.feed).await;
        // Written while the server is down: it goes out once the server is back.
        a.todos.insert(TodoItem::new("during", "x")).await.unwrap();
        server.restart();
        wait_for_status(&b, "subscribed again", |s| s.feed).await;
        a.todos.insert(TodoItem::new("after", "x")).await.unwrap();
        let expected = [row("after", "x", false), row("before", "x", false), row("during", "x", false)];
        converge(&[&a, &b], &expected).await;
    });
}

/// Against a server without the feed (the Azure family's), the engine polls as before.
#[test]
fn without_a_feed_the_engine_polls() {
    let dir = tempfile::tempdir().unwrap();
    let database = sqlite_url(dir.path());
    let server = ServerProcess::start_without_feed(&database);
    runtime().block_on(async {
        let mut a = Device::open(dir.path(), "a", &server.url).await;
        let mut b = Device::open(dir.path(), "b", &server.url).await;
        a.start();
        b.start();
        a.todos.insert(TodoItem::new("polled", "x")).await.unwrap();
        converge(&[&a, &b], &[row("polled", "x", false)]).await;
        let status = b.status();
        assert!(!status.feed && status.connected, "{status:?}");
    });
}
