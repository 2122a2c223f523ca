//! End to end: clients push and pull against a real `sync-server` on 127.0.0.1, over
//! protocol v2 and v3.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use common::{Device, TestServer, runtime};
use sync_runtime::{
    ClientWins, ConflictResolution, OpKind, OpState, ProtocolVersion, PushStatus, Query, Resolution, ServerWins,
    SyncPhase,
};
use sync_tests::TodoItem;

const BOTH: [ProtocolVersion; 2] = [ProtocolVersion::V2, ProtocolVersion::V3];

/// Runs `test` once per protocol generation, each time with a new directory and a
/// server on a database file in it: `test(protocol, dir, server_url)`.
fn on_each_protocol(test: impl AsyncFn(ProtocolVersion, &Path, &str)) {
    for protocol in BOTH {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(&dir.path().join("server.db"));
        runtime().block_on(test(protocol, dir.path(), &server.url()));
    }
}

fn texts(items: &[TodoItem]) -> Vec<(String, String, bool)> {
    items.iter().map(|i| (i.id.clone(), i.text.clone(), i.complete)).collect()
}

#[test]
fn full_lifecycle_between_two_devices() {
    on_each_protocol(async |protocol, dir, url| {
        let a = Device::new(dir, "a", url, protocol).await;
        let b = Device::new(dir, "b", url, protocol).await;
        let ta = a.store.table::<TodoItem>().await.unwrap();
        let tb = b.store.table::<TodoItem>().await.unwrap();

        // A works offline, then syncs.
        let milk = ta.insert(TodoItem::new("", "buy milk")).await.unwrap();
        ta.insert(TodoItem::new("bread", "buy bread")).await.unwrap();
        let report = a.client.push().await.unwrap();
        assert_eq!((report.pushed, report.errors, report.is_complete()), (2, 0, true), "{protocol}");
        assert_eq!(a.store.pending_count().await.unwrap(), 0);
        let pushed = ta.get(&milk.id).await.unwrap().unwrap();
        assert!(pushed.version.is_some(), "the server's version is taken locally");

        // B pulls them.
        let pulled = b.client.pull(Query::<TodoItem>::new(), Some("all")).await.unwrap();
        assert_eq!((pulled.received, pulled.applied), (2, 2));
        assert_eq!(texts(&b.items().await), texts(&a.items().await));
        // An incremental pull with nothing new fetches nothing.
        assert_eq!(b.client.pull(Query::<TodoItem>::new(), Some("all")).await.unwrap().received, 0);
        assert_eq!(a.client.pull(Query::<TodoItem>::new(), Some("all")).await.unwrap().received, 2);

        // B edits, A sees it.
        let mut edited = tb.get("bread").await.unwrap().unwrap();
        edited.complete = true;
        tb.update(&edited).await.unwrap();
        assert_eq!(b.client.push().await.unwrap().pushed, 1);
        let r = a.client.pull(Query::<TodoItem>::new(), Some("all")).await.unwrap();
        assert_eq!(r.applied, 1, "{protocol}: only the changed row comes back");
        assert!(ta.get("bread").await.unwrap().unwrap().complete);

        // Both edit the same item: B's push meets a conflict, left to the app.
        let mut on_a = ta.get(&milk.id).await.unwrap().unwrap();
        on_a.text = "buy oat milk".into();
        ta.update(&on_a).await.unwrap();
        a.client.push().await.unwrap();
        let mut on_b = tb.get(&milk.id).await.unwrap().unwrap();
        on_b.text = "buy soy milk".into();
        tb.update(&on_b).await.unwrap();
        let report = b.client.push().await.unwrap();
        assert_eq!(report.errors, 1, "{protocol}");
        assert_eq!(report.conflicts[0].resolution, ConflictResolution::Unresolved);
        let errors = tb.errors().await.unwrap();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].is_conflict(), "{:?}", errors[0].record);
        assert_eq!(errors[0].server_item.as_ref().unwrap().text, "buy oat milk");
        assert_eq!(errors[0].client_item.as_ref().unwrap().text, "buy soy milk");
        // The failed op waits: a second push skips it.
        let again = b.client.push().await.unwrap();
        assert_eq!((again.pushed, again.skipped), (0, 1));
        // Resolve: take the server's copy.
        tb.resolve_take_server(&errors[0]).await.unwrap();
        assert_eq!(tb.get(&milk.id).await.unwrap().unwrap().text, "buy oat milk");
        assert_eq!(b.store.pending_count().await.unwrap(), 0);

        // A deletes; B pulls the tombstone.
        ta.delete(&milk.id).await.unwrap();
        assert_eq!(a.client.push().await.unwrap().pushed, 1);
        let r = b.client.pull(Query::<TodoItem>::new(), Some("all")).await.unwrap();
        assert_eq!(r.deleted, 1);
        assert_eq!(tb.get(&milk.id).await.unwrap(), None);
        assert_eq!(texts(&b.items().await), texts(&a.items().await));

        // Purge: refused with pending ops, then clears rows and cursors.
        tb.insert(TodoItem::new("local", "not pushed")).await.unwrap();
        let err = tb.purge(&Query::<TodoItem>::new()).await.unwrap_err();
        assert!(err.to_string().contains("pending"), "{err}");
        b.client.push().await.unwrap();
        assert_eq!(tb.purge(&Query::<TodoItem>::new()).await.unwrap(), 2);
        assert!(b.items().await.is_empty());
        let r = b.client.pull(Query::<TodoItem>::new(), Some("all")).await.unwrap();
        assert_eq!(r.applied, 2, "after a purge the next pull starts over");
        let ids: Vec<String> = b.items().await.into_iter().map(|i| i.id).collect();
        assert_eq!(ids, ["bread", "local"]);
    });
}

/// Two devices edit the same item; B pushes second with the given handler.
async fn conflict_with(
    dir: &std::path::Path,
    url: &str,
    protocol: ProtocolVersion,
    configure: impl FnOnce(sync_runtime::SyncClientBuilder) -> sync_runtime::SyncClientBuilder,
) -> (Device, Device, sync_runtime::PushReport) {
    let (a, b) = diverged(dir, url, protocol, configure).await;
    let report = b.client.push().await.unwrap();
    (a, b, report)
}

/// Item "x" as A and B both pulled it ("original"); then A changed it on the server
/// ("from a") and B locally, its update queued ("from b", complete).
async fn diverged(
    dir: &std::path::Path,
    url: &str,
    protocol: ProtocolVersion,
    configure: impl FnOnce(sync_runtime::SyncClientBuilder) -> sync_runtime::SyncClientBuilder,
) -> (Device, Device) {
    let a = Device::new(dir, "a", url, protocol).await;
    let b = Device::with(dir, "b", url, protocol, configure).await;
    let ta = a.store.table::<TodoItem>().await.unwrap();
    let tb = b.store.table::<TodoItem>().await.unwrap();
    ta.insert(TodoItem::new("x", "original")).await.unwrap();
    a.client.push().await.unwrap();
    b.client.pull(Query::<TodoItem>::new(), Some("all")).await.unwrap();
    let mut on_a = ta.get("x").await.unwrap().unwrap();
    on_a.text = "from a".into();
    ta.update(&on_a).await.unwrap();
    a.client.push().await.unwrap();
    let mut on_b = tb.get("x").await.unwrap().unwrap();
    on_b.text = "from b".into();
    on_b.complete = true;
    tb.update(&on_b).await.unwrap();
    (a, b)
}

#[test]
fn server_wins_handler() {
    on_each_protocol(async |protocol, dir, url| {
        let (a, b, report) = conflict_with(dir, url, protocol, |c| c.conflict_handler::<TodoItem>(ServerWins)).await;
        assert_eq!(report.conflicts.len(), 1);
        assert_eq!(report.conflicts[0].resolution, ConflictResolution::ServerWins);
        assert_eq!((report.errors, b.store.pending_count().await.unwrap()), (0, 0));
        assert_eq!(b.items().await[0].text, "from a");
        a.client.pull(Query::<TodoItem>::new(), Some("all")).await.unwrap();
        assert_eq!(texts(&a.items().await), texts(&b.items().await));
    });
}

#[test]
fn client_wins_handler() {
    on_each_protocol(async |protocol, dir, url| {
        let (a, b, report) = conflict_with(dir, url, protocol, |c| c.conflict_handler::<TodoItem>(ClientWins)).await;
        assert_eq!(report.conflicts[0].resolution, ConflictResolution::ClientWins);
        assert_eq!((report.pushed, report.errors), (1, 0), "{protocol}: {report:?}");
        a.client.pull(Query::<TodoItem>::new(), Some("all")).await.unwrap();
        let on_a = a.items().await;
        assert_eq!((on_a[0].text.as_str(), on_a[0].complete), ("from b", true));
        assert_eq!(on_a[0].version, b.items().await[0].version, "both hold the server's latest version");
    });
}

#[test]
fn custom_merge_handler_sees_both_sides() {
    on_each_protocol(async |protocol, dir, url| {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = Arc::clone(&seen);
        let (a, b, report) = conflict_with(dir, url, protocol, move |c| {
            c.conflict_handler::<TodoItem>(move |conflict: &sync_runtime::Conflict<TodoItem>| {
                seen2.lock().unwrap().push((conflict.kind, conflict.client.text.clone(), conflict.server.text.clone()));
                let mut merged = conflict.server.clone();
                merged.text = format!("{} + {}", conflict.server.text, conflict.client.text);
                merged.complete = conflict.client.complete;
                Resolution::Merged(merged)
            })
        })
        .await;
        assert_eq!(*seen.lock().unwrap(), vec![(OpKind::Update, "from b".to_owned(), "from a".to_owned())]);
        assert_eq!(report.conflicts[0].resolution, ConflictResolution::Merged);
        assert_eq!(report.pushed, 1);
        a.client.pull(Query::<TodoItem>::new(), Some("all")).await.unwrap();
        let merged = &a.items().await[0];
        assert_eq!((merged.text.as_str(), merged.complete), ("from a + from b", true));
        assert_eq!(texts(&a.items().await), texts(&b.items().await));
    });
}

#[test]
fn server_stopped_mid_push_keeps_the_op_and_never_duplicates() {
    for protocol in BOTH {
        let dir = tempfile::tempdir().unwrap();
        let mut server = TestServer::start(&dir.path().join("server.db"));
        let url = server.url();
        runtime().block_on(async {
            let stop_after_first = Arc::new(Mutex::new(Some(())));
            let a = Device::new(dir.path(), "a", &url, protocol).await;
            let ta = a.store.table::<TodoItem>().await.unwrap();
            for i in 0..5 {
                ta.insert(TodoItem::new(&format!("i{i}"), "x")).await.unwrap();
            }
            // Stop the server after the first op went through: the push waits in its
            // progress callback until the server is down.
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let (stopped_tx, stopped_rx) = std::sync::mpsc::channel::<()>();
            let stopper = Device::with(dir.path(), "a", &url, protocol, move |c| {
                let (tx, stopped_rx) = (Mutex::new(tx), Mutex::new(stopped_rx));
                c.on_progress(move |e| {
                    if e.phase == SyncPhase::Push && e.done == 1 && stop_after_first.lock().unwrap().take().is_some() {
                        let _ = tx.lock().unwrap().send(());
                        let _ = stopped_rx.lock().unwrap().recv();
                    }
                })
            })
            .await;
            let push = tokio::spawn(async move {
                let report = stopper.client.push().await;
                (stopper, report)
            });
            rx.recv().unwrap();
            server.stop();
            stopped_tx.send(()).unwrap();
            let (stopper, report) = push.await.unwrap();
            let err = report.unwrap_err();
            assert!(err.is_network(), "{protocol}: {err:?}");
            let report = err.push_report().unwrap();
            assert!(matches!(report.status, PushStatus::Cancelled(_)), "{protocol}: {report:?}");
            assert_eq!(report.pushed, 1, "{protocol}: {report:?}");
            // The first landed and is committed; the second met the stopped server and
            // stays queued with the three behind it.
            let left = a.store.pending_count().await.unwrap();
            assert_eq!(left, 4, "{protocol}: ops stay queued");
            // The second was sent once; the three behind it were prepared with it (one
            // batch) but never sent, and the stop put them back as they were.
            let states: Vec<(String, OpState, u32)> =
                a.store.pending_ops().await.unwrap().into_iter().map(|o| (o.item_id, o.state, o.attempts)).collect();
            assert_eq!(
                states,
                [
                    ("i1".into(), OpState::Attempted, 1),
                    ("i2".into(), OpState::Pending, 0),
                    ("i3".into(), OpState::Pending, 0),
                    ("i4".into(), OpState::Pending, 0),
                ],
                "{protocol}"
            );
            // No operation is left marked in flight (the third was prepared while the
            // second was out): a local edit of its item collapses into it.
            let tstop = stopper.store.table::<TodoItem>().await.unwrap();
            let mut third = tstop.get("i2").await.unwrap().unwrap();
            third.text = "edited offline".into();
            tstop.update(&third).await.unwrap();
            assert_eq!(stopper.store.pending_count().await.unwrap(), 4, "{protocol}: the edit collapsed");
            assert_eq!(a.store.error_count().await.unwrap(), 0, "network failures record no error");

            server.restart();
            let report = a.client.push().await.unwrap();
            assert!(report.is_complete(), "{report:?}");
            assert_eq!(a.store.pending_count().await.unwrap(), 0);
            let b = Device::new(dir.path(), "b", &url, protocol).await;
            b.client.pull(Query::<TodoItem>::new(), None).await.unwrap();
            let items = b.items().await;
            assert_eq!(items.len(), 5, "nothing duplicated, nothing lost");
            assert!(items.iter().any(|i| i.id == "i2" && i.text == "edited offline"), "{items:?}");
        });
    }
}

#[test]
fn pull_resumes_after_the_server_stops_between_pages() {
    for protocol in BOTH {
        let dir = tempfile::tempdir().unwrap();
        let server = Arc::new(Mutex::new(TestServer::start(&dir.path().join("server.db"))));
        let url = server.lock().unwrap().url();
        runtime().block_on(async {
            let a = Device::new(dir.path(), "a", &url, protocol).await;
            let ta = a.store.table::<TodoItem>().await.unwrap();
            ta.insert_many((0..250).map(|i| TodoItem::new(&format!("r{i:04}"), "x")).collect()).await.unwrap();
            assert!(a.client.push().await.unwrap().is_complete());

            let stopper = Arc::clone(&server);
            let b = Device::with(dir.path(), "b", &url, protocol, move |c| {
                c.page_size(100).on_progress(move |e| {
                    if e.phase == SyncPhase::Pull && e.done == 100 && !e.finished {
                        stopper.lock().unwrap().stop();
                    }
                })
            })
            .await;
            let err = b.client.pull(Query::<TodoItem>::new(), Some("all")).await.unwrap_err();
            assert!(err.is_network(), "{err}");
            assert_eq!(b.items().await.len(), 100, "the first page was applied with its cursor");

            server.lock().unwrap().restart();
            let b2 = Device::with(dir.path(), "b", &url, protocol, |c| c.page_size(100)).await;
            let r = b2.client.pull(Query::<TodoItem>::new(), Some("all")).await.unwrap();
            assert_eq!(
                (r.received, r.applied),
                (150, 150),
                "{protocol}: resumed after the applied page, nothing twice"
            );
            let items = b2.items().await;
            assert_eq!(items.len(), 250);
            assert_eq!(texts(&items), texts(&a.items().await));
        });
    }
}

#[test]
fn rows_sharing_one_millisecond_are_each_pulled_once() {
    for protocol in BOTH {
        let dir = tempfile::tempdir().unwrap();
        let clock = sync_server::ManualClock::new(time::macros::datetime!(2026-03-04 05:06:07.089 UTC));
        let server = TestServer::start_with_clock(&dir.path().join("server.db"), clock);
        runtime().block_on(async {
            let a = Device::new(dir.path(), "a", &server.url(), protocol).await;
            let ta = a.store.table::<TodoItem>().await.unwrap();
            ta.insert_many((0..3000).map(|i| TodoItem::new(&format!("s{i:05}"), "same ms")).collect()).await.unwrap();
            assert!(a.client.push().await.unwrap().is_complete());
            let b = Device::with(dir.path(), "b", &server.url(), protocol, |c| c.page_size(100)).await;
            let r = b.client.pull(Query::<TodoItem>::new(), Some("all")).await.unwrap();
            assert_eq!((r.received, r.applied), (3000, 3000), "{protocol}");
            let items = b.items().await;
            assert_eq!(items.len(), 3000);
            let stamps: std::collections::BTreeSet<_> = items.iter().map(|i| i.version.clone()).collect();
            assert_eq!(stamps.len(), 3000, "every row has its own version");
        });
    }
}

#[test]
fn a_pull_keeps_pending_local_edits() {
    on_each_protocol(async |protocol, dir, url| {
        let (_a, b) = diverged(dir, url, protocol, |c| c).await;
        let tb = b.store.table::<TodoItem>().await.unwrap();
        // The pull pushes first (a conflict, left unresolved), then skips the row.
        let r = b.client.pull(Query::<TodoItem>::new(), Some("all")).await.unwrap();
        assert_eq!(r.skipped, 1, "{protocol}");
        assert_eq!(tb.get("x").await.unwrap().unwrap().text, "from b");
        assert_eq!(tb.error_count().await.unwrap(), 1);
    });
}

/// A panic inside a store transaction (an app bug) rolls that transaction back and
/// leaves the store whole: a push afterwards sends what was queued before it, for a
/// table the app opened before the panic and not since.
#[test]
fn a_push_after_a_panic_in_a_transaction_sends_the_queue() {
    on_each_protocol(async |protocol, dir, url| {
        let a = Device::new(dir, "a", url, protocol).await;
        let ta = a.store.table::<TodoItem>().await.unwrap();
        ta.insert(TodoItem::new("before", "queued before the panic")).await.unwrap();
        let store = a.store.clone();
        let panicked = tokio::spawn(async move {
            store
                .transaction(|tx| -> sync_runtime::Result<()> {
                    tx.insert(TodoItem::new("inside", "rolled back"))?;
                    panic!("app bug");
                })
                .await
        })
        .await;
        assert!(panicked.unwrap_err().is_panic());

        let report = a.client.push().await.unwrap();
        assert!(report.is_complete(), "{protocol}: {report:?}");
        assert_eq!((report.pushed, report.errors), (1, 0), "{protocol}: {report:?}");
        assert_eq!(a.store.pending_count().await.unwrap(), 0);
        let b = Device::new(dir, "b", url, protocol).await;
        b.client.pull(Query::<TodoItem>::new(), None).await.unwrap();
        assert_eq!(texts(&b.items().await), [("before".into(), "queued before the panic".into(), false)]);
    });
}

/// Two pushes of one store at once (a sync button pressed while a background sync
/// runs): each operation is sent once, by one of them; neither meets the other's
/// requests as conflicts.
#[test]
fn concurrent_pushes_send_each_operation_once() {
    on_each_protocol(async |protocol, dir, url| {
        let a = Device::new(dir, "a", url, protocol).await;
        let ta = a.store.table::<TodoItem>().await.unwrap();
        ta.insert_many((0..60).map(|i| TodoItem::new(&format!("c{i:02}"), "x")).collect()).await.unwrap();
        let other = a.client.clone();
        let (first, second) = tokio::join!(a.client.push(), other.push());
        let (first, second) = (first.unwrap(), second.unwrap());
        assert_eq!(first.pushed + second.pushed, 60, "{protocol}: {first:?} {second:?}");
        assert!(first.conflicts.is_empty() && second.conflicts.is_empty(), "{protocol}: {first:?} {second:?}");
        assert_eq!((first.errors, second.errors), (0, 0));
        assert_eq!(a.store.pending_count().await.unwrap(), 0);
        let b = Device::new(dir, "b", url, protocol).await;
        b.client.pull(Query::<TodoItem>::new(), None).await.unwrap();
        assert_eq!(b.items().await.len(), 60);
    });
}

/// A pull filtered by a long `is_in` (1500 values: about 50 KB of URL, near the 64 KiB
/// a request line may have) reaches the server and selects the rows it names.
#[test]
fn pull_by_a_long_is_in() {
    on_each_protocol(async |protocol, dir, url| {
        let a = Device::new(dir, "a", url, protocol).await;
        let ta = a.store.table::<TodoItem>().await.unwrap();
        ta.insert_many((0..20).map(|i| TodoItem::new(&format!("k{i:04}"), "x")).collect()).await.unwrap();
        assert!(a.client.push().await.unwrap().is_complete());

        let b = Device::new(dir, "b", url, protocol).await;
        let wanted: Vec<String> = (0..1500).map(|i| format!("k{:04}", i * 2)).collect();
        let query = Query::new().filter(TodoItem::FIELDS.id.is_in(wanted));
        let report = match b.client.pull(query, Some("some")).await {
            Ok(report) => report,
            Err(e) => panic!("{protocol}: {e}"),
        };
        assert_eq!(report.received, 10, "{protocol}: {report:?}");
        let ids: Vec<String> = b.items().await.into_iter().map(|i| i.id).collect();
        assert_eq!(ids, (0..10).map(|i| format!("k{:04}", i * 2)).collect::<Vec<_>>());

        // Too long for a URL: a clear error about the query, not a network failure.
        let too_many: Vec<String> = (0..5000).map(|i| format!("k{i:04}")).collect();
        let query = Query::new().filter(TodoItem::FIELDS.id.is_in(too_many));
        match b.client.pull(query, None).await {
            Err(sync_runtime::Error::InvalidQuery(message)) => {
                assert!(message.contains("more than an HTTP request can carry"), "{message}")
            }
            other => panic!("{protocol}: {:?}", other.map_err(|e| e.to_string())),
        }
    });
}

/// Local edits made during a push to items whose operations were prepared with the
/// push's batch (in flight, not sent yet) queue operations of their own; the push sends
/// them after the first ones landed, over the versions those got: no conflict, nothing
/// lost. i05's second operation is reached by a batch prepared while i12 still waits to
/// be sent, so that batch stops at i12's; an edit of an item not yet prepared (i18)
/// collapses into its queued update.
#[test]
fn edits_during_a_push_follow_the_operations_in_its_batch() {
    on_each_protocol(async |protocol, dir, url| {
        let store = sync_runtime::Store::open(dir.join("a.db")).await.unwrap();
        let table = store.table::<TodoItem>().await.unwrap();
        // Synced items, then an update of each: every operation carries a version, so
        // one sent over a stale version would be a conflict (412).
        table.insert_many((0..20).map(|i| TodoItem::new(&format!("i{i:02}"), "v0")).collect()).await.unwrap();
        let plain = sync_runtime::SyncClient::builder(store.clone(), url).protocol(protocol).build().unwrap();
        assert_eq!(plain.push().await.unwrap().pushed, 20);
        for mut item in table.query().all().await.unwrap() {
            item.text = "v1".into();
            table.update(&item).await.unwrap();
        }
        let (answered_tx, answered_rx) = std::sync::mpsc::channel::<()>();
        let (edited_tx, edited_rx) = std::sync::mpsc::channel::<()>();
        let (answered_tx, edited_rx) = (Mutex::new(answered_tx), Mutex::new(edited_rx));
        let client = sync_runtime::SyncClient::builder(store.clone(), url)
            .protocol(protocol)
            .on_progress(move |e| {
                if e.phase == SyncPhase::Push && e.done == 1 && !e.finished {
                    // The first answer is in; the rest of the first batch waits.
                    answered_tx.lock().unwrap().send(()).unwrap();
                    edited_rx.lock().unwrap().recv().unwrap();
                }
            })
            .build()
            .unwrap();
        let push = tokio::spawn(async move { client.push().await });
        answered_rx.recv().unwrap();
        for id in ["i05", "i12", "i18"] {
            let mut item = table.get(id).await.unwrap().unwrap();
            item.text = "v2".into();
            table.update(&item).await.unwrap();
        }
        let queued: Vec<(String, OpKind)> =
            store.pending_ops().await.unwrap().into_iter().map(|o| (o.item_id, o.kind)).collect();
        assert_eq!(queued.len(), 22, "{protocol}: two items in flight got a second operation: {queued:?}");
        assert_eq!(queued[20..], [("i05".into(), OpKind::Update), ("i12".into(), OpKind::Update)], "{protocol}");
        edited_tx.send(()).unwrap();

        let report = push.await.unwrap().unwrap();
        assert!(report.is_complete(), "{protocol}: {report:?}");
        assert_eq!((report.pushed, report.errors), (22, 0), "{protocol}: {report:?}");
        assert!(report.conflicts.is_empty(), "{protocol}: {report:?}");
        assert_eq!(store.pending_count().await.unwrap(), 0);

        let b = Device::new(dir, "b", url, protocol).await;
        b.client.pull(Query::<TodoItem>::new(), None).await.unwrap();
        let items = b.items().await;
        assert_eq!(items.len(), 20, "{protocol}");
        for item in &items {
            let edited = ["i05", "i12", "i18"].contains(&item.id.as_str());
            assert_eq!(item.text, if edited { "v2" } else { "v1" }, "{protocol}: {item:?}");
        }
        let local = table.get("i12").await.unwrap().unwrap();
        let server = items.iter().find(|i| i.id == "i12").unwrap();
        assert_eq!(local.version, server.version, "{protocol}: the second answer's version is kept");
    });
}
