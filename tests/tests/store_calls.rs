//! How callers reach the store: reads on read connections beside the writer (and never
//! behind a long write), every write path read back at once, the same calls from plain
//! threads with no async runtime (`.wait()`), and the mistakes refused with an error
//! instead of a hang or a panic.

mod common;

use std::future::Future;
use std::sync::mpsc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use common::{Device, TestServer, runtime};
use sync_runtime::{ClientWins, Error, ProtocolVersion, Query, RetryPolicy, Store, SyncClient};
use sync_tests::TodoItem;

fn texts(items: &[TodoItem]) -> Vec<(&str, &str)> {
    items.iter().map(|i| (i.id.as_str(), i.text.as_str())).collect()
}

/// Every write path, read back right after it returned: the read (on a read connection)
/// sees the write (committed on the writer's).
#[test]
fn a_read_sees_every_write_that_returned_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("server.db"));
    runtime().block_on(async {
        let a = Device::new(dir.path(), "a", &server.url(), ProtocolVersion::V3).await;
        let todos = a.store.table::<TodoItem>().await.unwrap();

        let item = todos.insert(TodoItem::new("x", "one")).await.unwrap();
        assert_eq!(todos.get("x").await.unwrap().map(|i| i.text), Some("one".into()), "insert");
        todos.insert_many(vec![TodoItem::new("y", "two"), TodoItem::new("z", "three")]).await.unwrap();
        assert_eq!(todos.count_all().await.unwrap(), 3, "insert_many");
        todos.update(&TodoItem { text: "uno".into(), ..item }).await.unwrap();
        assert_eq!(todos.get("x").await.unwrap().unwrap().text, "uno", "update");
        todos.delete("z").await.unwrap();
        assert_eq!(todos.get("z").await.unwrap(), None, "delete");
        a.store.transaction(|tx| tx.insert(TodoItem::new("w", "four")).map(drop)).await.unwrap();
        assert_eq!(todos.query().filter(TodoItem::FIELDS.text.eq("four")).count().await.unwrap(), 1, "transaction");
        assert_eq!(a.store.pending_count().await.unwrap(), 3, "the queue is read back too");

        // A pushed answer and a pulled page.
        a.client.push().await.unwrap();
        assert!(todos.get("x").await.unwrap().unwrap().version.is_some(), "push answer");
        let b = Device::new(dir.path(), "b", &server.url(), ProtocolVersion::V3).await;
        b.client.pull(Query::<TodoItem>::new(), Some("all")).await.unwrap();
        assert_eq!(texts(&b.items().await), [("w", "four"), ("x", "uno"), ("y", "two")], "pull page");

        // A conflict left to the app, resolved: the resolution is read back at once.
        let tb = b.store.table::<TodoItem>().await.unwrap();
        let mut theirs = tb.get("y").await.unwrap().unwrap();
        theirs.text = "b's".into();
        tb.update(&theirs).await.unwrap();
        b.client.push().await.unwrap();
        let mut mine = todos.get("y").await.unwrap().unwrap();
        mine.text = "a's".into();
        todos.update(&mine).await.unwrap();
        a.client.push().await.unwrap();
        let errors = todos.errors().await.unwrap();
        assert_eq!(errors.len(), 1, "the conflict waits in the error table");
        assert_eq!(todos.error_count().await.unwrap(), 1);
        todos.resolve_take_server(&errors[0]).await.unwrap();
        assert_eq!(todos.get("y").await.unwrap().unwrap().text, "b's", "resolution");
        assert_eq!(todos.error_count().await.unwrap(), 0);
    });
}

/// A write transaction held open for as long as the app likes delays no read: reads see
/// the state before it, then its commit once it returned.
#[test]
fn reads_run_while_a_long_write_transaction_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("app.db")).wait().unwrap();
    let todos = store.table::<TodoItem>().wait().unwrap();
    todos.insert(TodoItem::new("old", "before")).wait().unwrap();

    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            store
                .transaction(move |tx| {
                    tx.insert(TodoItem::new("new", "inside"))?;
                    entered_tx.send(()).ok();
                    // Held open until the reader is done.
                    release_rx.recv_timeout(Duration::from_secs(30)).ok();
                    Ok(())
                })
                .wait()
        })
    };
    entered_rx.recv().unwrap();
    let started = Instant::now();
    for _ in 0..100 {
        assert_eq!(todos.get("old").wait().unwrap().map(|i| i.text), Some("before".into()));
        assert_eq!(todos.get("new").wait().unwrap(), None, "an uncommitted write is not read");
        assert_eq!(todos.count_all().wait().unwrap(), 1);
    }
    // The reads did not wait for the transaction (it is still open).
    assert!(started.elapsed() < Duration::from_secs(10));
    release_tx.send(()).unwrap();
    writer.join().unwrap().unwrap();
    assert_eq!(todos.get("new").wait().unwrap().map(|i| i.text), Some("inside".into()));
}

/// Short writes run on the caller's thread when the writer is idle and go to the store
/// thread when it is busy: from many threads at once, beside transactions and async
/// callers, every write lands once and each caller's writes queue in the order it made
/// them.
#[test]
fn writes_from_many_threads_land_once_each_in_each_callers_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("app.db")).wait().unwrap();
    let todos = store.table::<TodoItem>().wait().unwrap();
    const PER: usize = 60;
    let mut threads = Vec::new();
    for t in 0..4 {
        let todos = todos.clone();
        threads.push(std::thread::spawn(move || {
            for i in 0..PER {
                let id = format!("t{t}-{i:03}");
                let item = todos.insert(TodoItem::new(&id, "new")).wait().unwrap();
                if i % 3 == 0 {
                    todos.update(&TodoItem { text: "edited".into(), ..item }).wait().unwrap();
                }
            }
        }));
    }
    let txs = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 0..PER {
                store
                    .transaction(move |tx| {
                        tx.insert(TodoItem::new(&format!("tx-{i:03}"), "a"))?;
                        tx.insert(TodoItem::new(&format!("tx-{i:03}b"), "b")).map(drop)
                    })
                    .wait()
                    .unwrap();
            }
        })
    };
    runtime().block_on(async {
        for i in 0..PER {
            todos.insert(TodoItem::new(&format!("as-{i:03}"), "async")).await.unwrap();
            todos.delete(&format!("as-{i:03}")).await.unwrap();
        }
    });
    for t in threads {
        t.join().unwrap();
    }
    txs.join().unwrap();

    assert_eq!(todos.count_all().wait().unwrap() as usize, 4 * PER + 2 * PER);
    let edited = todos.query().filter(TodoItem::FIELDS.text.eq("edited")).count().wait().unwrap();
    assert_eq!(edited as usize, 4 * PER.div_ceil(3));
    // An insert and its delete collapse to nothing; the rest is one insert per item, in
    // each caller's order.
    let ops = store.pending_ops().wait().unwrap();
    assert_eq!(ops.len(), 4 * PER + 2 * PER);
    for prefix in ["t0-", "t1-", "t2-", "t3-", "tx-"] {
        let ids: Vec<&str> = ops.iter().map(|op| op.item_id.as_str()).filter(|id| id.starts_with(prefix)).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        assert_eq!(ids, sorted, "{prefix} queued in its caller's order");
    }
    assert!(ops.windows(2).all(|w| w[0].op_id < w[1].op_id));
}

/// The whole library from a plain thread with no async runtime: a store, its tables, a
/// transaction, and a push and a pull against a real server.
#[test]
fn the_blocking_api_works_from_a_plain_thread() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("server.db"));
    let (url, path) = (server.url(), dir.path().to_owned());
    std::thread::spawn(move || {
        assert!(tokio::runtime::Handle::try_current().is_err(), "no runtime on this thread");
        let store = Store::open(path.join("device.db")).wait().unwrap();
        let todos = store.table::<TodoItem>().wait().unwrap();
        todos.insert(TodoItem::new("a", "from a thread")).wait().unwrap();
        store.transaction(|tx| tx.insert(TodoItem::new("b", "in a transaction")).map(drop)).wait().unwrap();
        assert_eq!(todos.query().order_by(TodoItem::FIELDS.id.asc()).all().wait().unwrap().len(), 2);
        assert_eq!(store.pending_count().wait().unwrap(), 2);

        let client = SyncClient::builder(store.clone(), &url)
            .protocol(ProtocolVersion::V3)
            .retry(RetryPolicy::none())
            .conflict_handler::<TodoItem>(ClientWins)
            .build()
            .unwrap();
        let pushed = client.push().wait().unwrap();
        assert_eq!((pushed.pushed, pushed.errors), (2, 0), "{pushed:?}");
        assert_eq!(store.pending_count().wait().unwrap(), 0);

        let other = Store::open_in_memory().wait().unwrap();
        other.table::<TodoItem>().wait().unwrap();
        let other_client = SyncClient::builder(other.clone(), &url).protocol(ProtocolVersion::V3).build().unwrap();
        let pulled = other_client.pull(Query::<TodoItem>::new(), Some("all")).wait().unwrap();
        assert_eq!(pulled.received, 2);
        // `sync` pulls with a query id of its own: everything once, then nothing new.
        assert_eq!(other_client.sync::<TodoItem>().wait().unwrap().pull.received, 2);
        assert_eq!(other_client.sync::<TodoItem>().wait().unwrap().pull.received, 0);
        store.close().wait().unwrap();
    })
    .join()
    .unwrap();
}

/// A store or table call made inside a transaction closure would wait for the very
/// transaction it runs in: it is refused at once, and the store goes on working.
#[test]
fn a_store_call_inside_a_transaction_is_refused_not_hung() {
    for file in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let store = match file {
            true => Store::open(dir.path().join("app.db")).wait().unwrap(),
            false => Store::open_in_memory().wait().unwrap(),
        };
        let todos = store.table::<TodoItem>().wait().unwrap();
        let (t, s) = (todos.clone(), store.clone());
        let outcome = store
            .transaction(move |tx| {
                tx.insert(TodoItem::new("a", "inside"))?;
                let read = t.get("a").wait();
                let write = t.insert(TodoItem::new("b", "nested")).wait();
                let count = s.pending_count().wait();
                Ok((read, write, count))
            })
            .wait()
            .unwrap();
        assert!(matches!(outcome.0, Err(Error::CallInTransaction)), "{file}: {:?}", outcome.0);
        assert!(matches!(outcome.1, Err(Error::CallInTransaction)), "{file}: {:?}", outcome.1);
        assert!(matches!(outcome.2, Err(Error::CallInTransaction)), "{file}: {:?}", outcome.2);
        let message = Error::CallInTransaction.to_string();
        assert!(message.contains("inside a transaction closure") && message.contains("`tx`"), "{message}");
        // The transaction itself committed, and the store still answers.
        assert_eq!(todos.count_all().wait().unwrap(), 1, "{file}");
        todos.insert(TodoItem::new("c", "after")).wait().unwrap();
    }
}

#[derive(Debug, PartialEq)]
enum AppError {
    TooMany(u64),
    Store(String),
}

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        AppError::Store(e.to_string())
    }
}

/// A transaction closure may end with the app's own error type: it comes back
/// unchanged, and everything the closure wrote is rolled back.
#[test]
fn a_transaction_ends_with_the_apps_own_error_and_rolls_back() {
    let store = Store::open_in_memory().wait().unwrap();
    let todos = store.table::<TodoItem>().wait().unwrap();
    let outcome = store
        .try_transaction(|tx| {
            tx.insert(TodoItem::new("a", "rolled back"))?;
            let n = tx.count_all::<TodoItem>()?;
            if n > 0 {
                return Err(AppError::TooMany(n));
            }
            Ok(())
        })
        .wait();
    assert_eq!(outcome, Err(AppError::TooMany(1)));
    assert_eq!(todos.count_all().wait().unwrap(), 0);
    assert_eq!(store.pending_count().wait().unwrap(), 0);
    // The store's own errors become the app's through From.
    todos.insert(TodoItem::new("a", "here")).wait().unwrap();
    let outcome =
        store.try_transaction(|tx| tx.insert(TodoItem::new("a", "again")).map(drop).map_err(AppError::from)).wait();
    assert!(matches!(&outcome, Err(AppError::Store(m)) if m.contains("already inserted")), "{outcome:?}");
    // And a success commits.
    let done: Result<u64, AppError> = store.try_transaction(|tx| Ok(tx.count_all::<TodoItem>()?)).wait();
    assert_eq!(done, Ok(1));
}

/// The sync client's calls need a tokio runtime to be awaited, and none to be waited
/// for: each mistake is an error that says so, not a panic.
#[test]
fn the_sync_client_says_which_runtime_it_needs() {
    let store = Store::open_in_memory().wait().unwrap();
    store.table::<TodoItem>().wait().unwrap();
    let client = SyncClient::builder(store, "http://127.0.0.1:9").build().unwrap();
    // Awaited (polled) with no tokio runtime.
    let mut push = Box::pin(client.push());
    let mut cx = Context::from_waker(Waker::noop());
    match push.as_mut().poll(&mut cx) {
        Poll::Ready(Err(e @ Error::Runtime(_))) => assert!(e.to_string().contains("tokio runtime"), "{e}"),
        other => panic!("expected a runtime error, got {other:?}"),
    }
    // Waited for inside a runtime.
    runtime().block_on(async {
        let err = client.pull(Query::<TodoItem>::new(), None).wait().unwrap_err();
        assert!(matches!(err, Error::Runtime(_)) && err.to_string().contains(".await"), "{err}");
    });
}
