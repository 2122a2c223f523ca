//! Live queries: the store's change stream (one event per commit, from every origin,
//! nothing for a rollback) and watched queries (a result now, then once per change of
//! it; never for an unrelated table; bursts coalesced to the last state), across
//! processes too, and from plain threads.

mod common;

use std::future::Future;
use std::pin::pin;
use std::process::Command;
use std::sync::mpsc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use common::{Device, TestServer, runtime};
use sync_runtime::{Change, ChangeOrigin, ChangeStream, Error, ProtocolVersion, Store, SyncEntity, Watch};
use sync_tests::TodoItem;

#[derive(SyncEntity, Clone, Debug, PartialEq)]
struct Tag {
    id: String,
    name: String,
}

/// Longer than the store's wait between two reads of `data_version` (200 ms): a change
/// that was going to be noticed has been by then.
const SETTLE: Duration = Duration::from_millis(400);

/// Polls a future once, without waiting: `None` when it is not ready.
fn now<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}

/// Every change the stream holds right now.
fn drain(changes: &mut ChangeStream) -> Vec<Change> {
    std::iter::from_fn(|| changes.try_next()).collect()
}

fn ids(change: &Change, table: &str) -> Vec<String> {
    change.ids(table).map(|ids| ids.map(str::to_owned).collect()).unwrap_or_default()
}

fn texts(items: &[TodoItem]) -> Vec<&str> {
    items.iter().map(|i| i.text.as_str()).collect()
}

/// The next result of a watch, or a failure after `limit`.
fn next_within<T: Send + 'static>(watch: &mut Watch<T>, limit: Duration) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(out) = now(watch.next()) {
            return out.expect("the store is open").expect("the read succeeds");
        }
        assert!(Instant::now() < deadline, "no result within {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn every_origin_is_one_event_per_commit_and_a_rollback_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("server.db"));
    runtime().block_on(async {
        let a = Device::new(dir.path(), "a", &server.url(), ProtocolVersion::V3).await;
        let todos = a.store.table::<TodoItem>().await.unwrap();
        let mut changes = a.store.changes();

        // Local: one write, then one transaction of three writes over two tables.
        todos.insert(TodoItem::new("x", "one")).await.unwrap();
        a.store
            .transaction(|tx| {
                tx.insert(TodoItem::new("y", "two"))?;
                tx.insert(TodoItem::new("z", "three"))?;
                tx.insert(Tag { id: "t".into(), name: "home".into() })?;
                Ok(())
            })
            .await
            .unwrap();
        let local = drain(&mut changes);
        assert_eq!(local.len(), 2, "{local:?}");
        assert!(local.iter().all(|c| c.origin() == ChangeOrigin::Local && c.queue_changed() && c.is_known()));
        assert_eq!(ids(&local[0], "TodoItem"), ["x"]);
        assert_eq!(ids(&local[1], "TodoItem"), ["y", "z"]);
        assert_eq!(ids(&local[1], "Tag"), ["t"]);
        assert_eq!(local[1].tables().collect::<Vec<_>>(), ["Tag", "TodoItem"]);

        // A rollback (an error, and a refused write) tells nobody.
        let failed = a
            .store
            .transaction(|tx| {
                tx.insert(TodoItem::new("w", "never"))?;
                Err::<(), _>(Error::InvalidQuery("changed my mind".into()))
            })
            .await;
        assert!(failed.is_err());
        assert!(todos.insert(TodoItem::new("x", "again")).await.is_err(), "x exists");
        assert!(drain(&mut changes).is_empty(), "nothing committed");

        // Push: each of its commits is a change of the push, and the answers write the
        // server's versions back into the three rows.
        a.client.push().await.unwrap();
        let pushed = drain(&mut changes);
        assert!(!pushed.is_empty());
        assert!(pushed.iter().all(|c| c.origin() == ChangeOrigin::Push), "{pushed:?}");
        let mut written: Vec<String> = pushed.iter().flat_map(|c| ids(c, "TodoItem")).collect();
        written.sort();
        written.dedup();
        assert_eq!(written, ["x", "y", "z"]);

        // Pull: one page is one commit, one event.
        let b = Device::new(dir.path(), "b", &server.url(), ProtocolVersion::V3).await;
        let mut b_changes = b.store.changes();
        let report = b.client.pull(sync_runtime::Query::<TodoItem>::new(), Some("all")).await.unwrap();
        assert_eq!(report.applied, 3);
        let pulled = drain(&mut b_changes);
        assert_eq!(pulled.len(), 1, "{pulled:?}");
        assert_eq!(pulled[0].origin(), ChangeOrigin::Pull);
        assert_eq!(ids(&pulled[0], "TodoItem"), ["x", "y", "z"]);
        assert!(!pulled[0].queue_changed(), "a pull page queues nothing");

        // Resolution: a conflict left in the error table, settled by the app.
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
        assert_eq!(errors.len(), 1);
        let before = drain(&mut changes);
        assert!(before.iter().any(|c| c.origin() == ChangeOrigin::Push && c.errors_changed()), "{before:?}");
        todos.resolve_take_server(&errors[0]).await.unwrap();
        let resolved = drain(&mut changes);
        assert_eq!(resolved.len(), 1, "{resolved:?}");
        assert_eq!(resolved[0].origin(), ChangeOrigin::Resolution);
        assert_eq!(ids(&resolved[0], "TodoItem"), ["y"]);
        assert!(resolved[0].errors_changed() && resolved[0].queue_changed());

        // Purge: one commit, the rows it deleted.
        let tags = a.store.table::<Tag>().await.unwrap();
        assert_eq!(tags.force_purge().await.unwrap(), 1);
        let purged = drain(&mut changes);
        assert_eq!(purged.len(), 1, "{purged:?}");
        assert_eq!(purged[0].origin(), ChangeOrigin::Purge);
        assert_eq!(ids(&purged[0], "Tag"), ["t"]);
        assert!(!purged[0].touches("TodoItem"));
    });
}

#[test]
fn another_process_commit_reaches_the_change_stream_and_a_watch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let store = Store::open(&path).wait().unwrap();
    let todos = store.table::<TodoItem>().wait().unwrap();
    let mut changes = store.changes();
    let mut all = todos.query().order_by(TodoItem::FIELDS.id.asc()).watch();
    assert!(all.wait_next().unwrap().unwrap().is_empty());

    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_store_writer"))
        .args([path.to_str().unwrap(), "from-cli", "written elsewhere"])
        .status()
        .unwrap();
    assert!(status.success());
    let committed = started.elapsed();
    let seen = all.wait_next().unwrap().unwrap();
    assert_eq!(texts(&seen), ["written elsewhere"]);
    let change = changes.wait_next().unwrap();
    assert_eq!(change.origin(), ChangeOrigin::OtherProcess);
    assert!(!change.is_known() && change.touches("TodoItem") && change.queue_changed());
    eprintln!(
        "another process's commit seen {:?} after the process started ({committed:?} to run it)",
        started.elapsed()
    );
    // Nothing more: one commit elsewhere, one event here.
    std::thread::sleep(SETTLE);
    assert!(drain(&mut changes).is_empty());
}

#[test]
fn a_watch_yields_once_per_change_of_its_result_and_never_for_other_tables() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("app.db")).wait().unwrap();
    let todos = store.table::<TodoItem>().wait().unwrap();
    let tags = store.table::<Tag>().wait().unwrap();
    todos.insert(TodoItem::new("a", "milk")).wait().unwrap();

    let mut open =
        todos.query().filter(TodoItem::FIELDS.complete.eq(false)).order_by(TodoItem::FIELDS.id.asc()).watch();
    assert_eq!(texts(&open.wait_next().unwrap().unwrap()), ["milk"], "the result now");
    assert_eq!(open.reads(), 1);

    // Another table: no read at all, no result.
    for i in 0..20 {
        tags.insert(Tag { id: format!("t{i}"), name: "x".into() }).wait().unwrap();
    }
    std::thread::sleep(SETTLE);
    assert!(now(open.next()).is_none(), "nothing for another table");
    assert_eq!(open.reads(), 1, "a write to another table costs the watch no read");

    // Its table, a change of its result.
    todos.insert(TodoItem::new("b", "bread")).wait().unwrap();
    assert_eq!(texts(&next_within(&mut open, Duration::from_secs(5))), ["milk", "bread"]);
    assert_eq!(open.reads(), 2);

    // Its table, but its result stays the same: read again, nothing yielded.
    let mut done = TodoItem::new("c", "paid");
    done.complete = true;
    todos.insert(done).wait().unwrap();
    std::thread::sleep(SETTLE);
    assert!(now(open.next()).is_none(), "the result did not change");
    assert_eq!(open.reads(), 3);

    // A rolled-back transaction on its table: nothing.
    let _ = store
        .transaction(|tx| {
            tx.insert(TodoItem::new("d", "never"))?;
            Err::<(), _>(Error::InvalidQuery("no".into()))
        })
        .wait();
    std::thread::sleep(SETTLE);
    assert!(now(open.next()).is_none());
    assert_eq!(open.reads(), 3, "a rollback costs no read");

    // Once per change: an update, then a delete.
    let mut a = todos.get("a").wait().unwrap().unwrap();
    a.text = "oat milk".into();
    todos.update(&a).wait().unwrap();
    assert_eq!(texts(&next_within(&mut open, Duration::from_secs(5))), ["oat milk", "bread"]);
    todos.delete("b").wait().unwrap();
    assert_eq!(texts(&next_within(&mut open, Duration::from_secs(5))), ["oat milk"]);
    std::thread::sleep(SETTLE);
    assert!(now(open.next()).is_none(), "nothing twice");
}

#[test]
fn a_burst_of_commits_is_read_once_and_the_last_state_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("app.db")).wait().unwrap();
    let todos = store.table::<TodoItem>().wait().unwrap();
    let mut count = todos.query().watch_count();
    assert_eq!(count.wait_next().unwrap().unwrap(), 0);

    // 200 commits while nobody polls the watch: one read afterwards, the last state.
    for i in 0..200 {
        todos.insert(TodoItem::new(&format!("i{i:03}"), "x")).wait().unwrap();
    }
    assert_eq!(count.wait_next().unwrap().unwrap(), 200);
    assert_eq!(count.reads(), 2, "the burst cost one read");
    std::thread::sleep(SETTLE);
    assert!(now(count.next()).is_none(), "and nothing after it");

    // A writer on another thread while the watch keeps up: results only grow, the
    // last one is the final state, and there are far fewer reads than commits.
    let writer = {
        let todos = todos.clone();
        std::thread::spawn(move || {
            for i in 0..300 {
                todos.insert(TodoItem::new(&format!("j{i:03}"), "y")).wait().unwrap();
            }
        })
    };
    let mut last = 200;
    while last < 500 {
        let n = next_within(&mut count, Duration::from_secs(10));
        assert!(n > last, "{n} after {last}");
        last = n;
    }
    writer.join().unwrap();
    eprintln!("500 commits, {} reads", count.reads());
}

#[test]
fn a_throttled_watch_reads_at_most_once_per_interval_and_still_gets_the_last_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("app.db")).wait().unwrap();
    let todos = store.table::<TodoItem>().wait().unwrap();
    let mut count = todos.query().watch_count().throttle(Duration::from_millis(300));
    assert_eq!(count.wait_next().unwrap().unwrap(), 0);
    let started = Instant::now();
    todos.insert(TodoItem::new("a", "x")).wait().unwrap();
    assert_eq!(count.wait_next().unwrap().unwrap(), 1);
    assert!(started.elapsed() >= Duration::from_millis(250), "{:?}", started.elapsed());
    let started = Instant::now();
    todos.insert(TodoItem::new("b", "x")).wait().unwrap();
    todos.insert(TodoItem::new("c", "x")).wait().unwrap();
    assert_eq!(count.wait_next().unwrap().unwrap(), 3, "the last state");
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(count.reads(), 3);
}

#[test]
fn watches_of_one_row_of_counts_and_of_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("server.db"));
    runtime().block_on(async {
        let a = Device::new(dir.path(), "a", &server.url(), ProtocolVersion::V3).await;
        let todos = a.store.table::<TodoItem>().await.unwrap();
        let mut one = todos.watch_get("k");
        let mut pending = a.store.watch_pending_count();
        let mut errors = a.store.watch_error_count();
        assert_eq!(one.next().await.unwrap().unwrap(), None);
        assert_eq!(pending.next().await.unwrap().unwrap(), 0);
        assert_eq!(errors.next().await.unwrap().unwrap(), 0);

        // Another row: the row's watch does not even read.
        todos.insert(TodoItem::new("other", "x")).await.unwrap();
        assert_eq!(pending.next().await.unwrap().unwrap(), 1);
        todos.insert(TodoItem::new("k", "mine")).await.unwrap();
        assert_eq!(one.next().await.unwrap().unwrap().map(|i| i.text), Some("mine".into()));
        assert_eq!(one.reads(), 2, "the write to `other` cost no read");
        assert_eq!(pending.next().await.unwrap().unwrap(), 2);

        // The push empties the queue; the badge follows.
        a.client.push().await.unwrap();
        let mut last = None;
        while last != Some(0) {
            last = Some(tokio::time::timeout(Duration::from_secs(5), pending.next()).await.unwrap().unwrap().unwrap());
        }
        assert!(one.next().await.unwrap().unwrap().unwrap().version.is_some(), "the server's version");

        // A conflict fills the error badge; settling it empties it.
        let b = Device::new(dir.path(), "b", &server.url(), ProtocolVersion::V3).await;
        b.client.pull(sync_runtime::Query::<TodoItem>::new(), None).await.unwrap();
        let tb = b.store.table::<TodoItem>().await.unwrap();
        let mut theirs = tb.get("k").await.unwrap().unwrap();
        theirs.text = "theirs".into();
        tb.update(&theirs).await.unwrap();
        b.client.push().await.unwrap();
        let mut mine = todos.get("k").await.unwrap().unwrap();
        mine.text = "mine again".into();
        todos.update(&mine).await.unwrap();
        a.client.push().await.unwrap();
        assert_eq!(errors.next().await.unwrap().unwrap(), 1);
        let error = todos.errors().await.unwrap().remove(0);
        todos.resolve_take_server(&error).await.unwrap();
        assert_eq!(errors.next().await.unwrap().unwrap(), 0);
        let mut text = None;
        while text.as_deref() != Some("theirs") {
            text = one.next().await.unwrap().unwrap().map(|i| i.text);
        }
    });
}

#[test]
fn dropping_watches_and_streams_frees_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("app.db")).wait().unwrap();
    let todos = store.table::<TodoItem>().wait().unwrap();
    assert_eq!(store.listener_count(), 0);
    let watches: Vec<_> = (0..50).map(|_| todos.query().watch()).collect();
    let changes = store.changes();
    let counts = store.watch_pending_count();
    assert_eq!(store.listener_count(), 52);
    drop(watches);
    drop(changes);
    assert_eq!(store.listener_count(), 1);
    let handle = counts.on_change(|_| {});
    assert_eq!(store.listener_count(), 1);
    handle.stop();
    assert_eq!(store.listener_count(), 0, "a stopped callback watch is gone too");
    // The store still works and nothing is told to anyone.
    todos.insert(TodoItem::new("a", "x")).wait().unwrap();
    assert_eq!(store.listener_count(), 0);
}

#[test]
fn the_blocking_forms_from_plain_threads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("app.db")).wait().unwrap();
    let todos = store.table::<TodoItem>().wait().unwrap();

    // A callback on the watch's own thread, as a UI toolkit would use it.
    let (seen_tx, seen_rx) = mpsc::channel();
    let handle = todos.query().order_by(TodoItem::FIELDS.id.asc()).watch().on_change(move |result| {
        let _ = seen_tx.send(result.map(|items| items.len()));
    });
    assert_eq!(seen_rx.recv_timeout(Duration::from_secs(5)).unwrap().unwrap(), 0);

    // Writes from another plain thread; a change stream waited for on a third.
    let mut changes = store.changes();
    let waiter = std::thread::spawn(move || changes.wait_next().map(|c| c.origin()));
    let writer = {
        let todos = todos.clone();
        std::thread::spawn(move || todos.insert(TodoItem::new("a", "x")).wait().unwrap())
    };
    writer.join().unwrap();
    assert_eq!(waiter.join().unwrap(), Some(ChangeOrigin::Local));
    assert_eq!(seen_rx.recv_timeout(Duration::from_secs(5)).unwrap().unwrap(), 1);
    drop(handle);

    // Closing the store ends every stream and watch.
    let mut changes = store.changes();
    let mut watch = todos.watch_all();
    assert_eq!(watch.wait_next().unwrap().unwrap().len(), 1);
    let ended = std::thread::spawn(move || (changes.wait_next().is_none(), watch.wait_next().is_none()));
    std::thread::sleep(Duration::from_millis(50));
    store.close().wait().unwrap();
    assert_eq!(ended.join().unwrap(), (true, true));
}
