//! Targeted faults through the test proxy (`sync_tests::proxy`), one scenario each, over
//! protocol v2 and v3: an answer lost after the server applied the request must never
//! produce a duplicate, a lost update or a false conflict. Several are regression tests
//! of bugs the randomized test (`reliability_sync`) found.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Device, TestServer, runtime};
use sync_runtime::{
    Conflict, ConflictResolution, ProtocolVersion, PushReport, PushStatus, Query, Resolution, RetryPolicy,
};
use sync_tests::TodoItem;
use sync_tests::proxy::{Exchange, Fault, Journal, Proxy};

const BOTH: [ProtocolVersion; 2] = [ProtocolVersion::V2, ProtocolVersion::V3];

/// A server, a proxy in front of it, and the conflicts each device's handler saw.
struct Rig {
    dir: tempfile::TempDir,
    server: TestServer,
    proxy: Proxy,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(&dir.path().join("server.db"));
        let proxy = Proxy::start_with(server.addr, 1, "proxy", Journal::new());
        Rig { dir, server, proxy, seen: Arc::default() }
    }

    /// A device behind the proxy whose conflicts are left to the app (error rows), with
    /// quick retries of 5xx answers. Every conflict its handler sees is recorded.
    async fn device(&self, name: &str, protocol: ProtocolVersion) -> Device {
        let seen = Arc::clone(&self.seen);
        Device::with(self.dir.path(), name, &self.proxy.url(), protocol, move |b| {
            b.retry(RetryPolicy {
                max_retries: 2,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(2),
            })
            .conflict_handler::<TodoItem>(move |c: &Conflict<TodoItem>| {
                seen.lock().unwrap().push((c.client.text.clone(), c.server.text.clone()));
                Resolution::Unresolved
            })
        })
        .await
    }

    /// A device straight to the server (no proxy).
    async fn direct(&self, name: &str, protocol: ProtocolVersion) -> Device {
        Device::new(self.dir.path(), name, &self.server.url(), protocol).await
    }

    fn writes(&self) -> Vec<Exchange> {
        self.proxy.journal().snapshot().into_iter().filter(Exchange::is_applied_write).collect()
    }

    async fn server_items(&self) -> Vec<(String, String, bool)> {
        let rows = sync_tests::oracle::server_rows(self.server.addr).await.unwrap();
        rows.into_iter().map(|r| (r.id, r.text, r.deleted)).collect()
    }
}

fn landed(report: &PushReport) -> bool {
    report.conflicts.iter().any(|c| c.resolution == ConflictResolution::EarlierAttemptLanded)
}

async fn text_of(device: &Device, id: &str) -> Option<String> {
    device.store.table::<TodoItem>().await.unwrap().get(id).await.unwrap().map(|i| i.text)
}

/// Whether a push stopped early: an error carrying a report that says so.
fn cancelled(pushed: sync_runtime::Result<PushReport>) -> bool {
    match pushed {
        Ok(_) => false,
        Err(e) => e.push_report().is_some_and(|report| matches!(report.status, PushStatus::Cancelled(_))),
    }
}

/// The requests one fault takes: a 5xx is tried three times (the rig's retry policy),
/// anything else stops the push at once.
fn times(fault: Fault) -> Vec<Fault> {
    match fault {
        Fault::Error500 | Fault::Error503 | Fault::GatewayAfterApplied => vec![fault; 3],
        _ => vec![fault],
    }
}

#[test]
fn an_insert_whose_answer_is_lost_is_neither_duplicated_nor_a_conflict() {
    for fault in [Fault::DropAfterApplied, Fault::ResetResponse { permille: 500 }, Fault::ResetResponse { permille: 0 }]
    {
        for protocol in BOTH {
            let rig = Rig::new();
            runtime().block_on(async {
                let a = rig.device("a", protocol).await;
                let t = a.store.table::<TodoItem>().await.unwrap();
                t.insert(TodoItem::new("x", "a1")).await.unwrap();
                rig.proxy.force(&[fault]);
                assert!(cancelled(a.client.push().await), "{protocol} {fault:?}: the client saw a failure");
                assert_eq!(a.store.pending_count().await.unwrap(), 1);
                let report = a.client.push().await.unwrap();
                assert_eq!((report.pushed, report.errors), (1, 0), "{protocol} {fault:?}: {report:?}");
                assert!(landed(&report), "{protocol} {fault:?}: {report:?}");
                assert!(rig.seen.lock().unwrap().is_empty(), "no handler call");
                assert_eq!(rig.writes().len(), 1, "{protocol} {fault:?}: applied once");
                assert_eq!(rig.server_items().await, [("x".into(), "a1".into(), false)]);
                let local = t.get("x").await.unwrap().unwrap();
                assert!(local.version.is_some(), "the server's version is taken");
            });
        }
    }
}

#[test]
fn an_update_whose_answer_is_lost_is_not_a_false_conflict() {
    for protocol in BOTH {
        let rig = Rig::new();
        runtime().block_on(async {
            let a = rig.device("a", protocol).await;
            let t = a.store.table::<TodoItem>().await.unwrap();
            t.insert(TodoItem::new("x", "a1")).await.unwrap();
            assert!(a.client.push().await.unwrap().is_complete());
            let mut item = t.get("x").await.unwrap().unwrap();
            item.text = "a2".into();
            t.update(&item).await.unwrap();
            rig.proxy.force(&[Fault::DropAfterApplied]);
            assert!(cancelled(a.client.push().await));
            let report = a.client.push().await.unwrap();
            assert_eq!((report.pushed, report.errors), (1, 0), "{protocol}: {report:?}");
            assert!(landed(&report));
            assert!(rig.seen.lock().unwrap().is_empty(), "{protocol}: {:?}", rig.seen.lock().unwrap());
            assert_eq!(rig.server_items().await, [("x".into(), "a2".into(), false)]);
            assert_eq!(rig.writes().len(), 2);
        });
    }
}

/// Regression: a 5xx retried inside one push (a gateway timing out after the server
/// applied the request) met 409/412 and was handed to the conflict handler with the
/// client's own write as the server's side.
#[test]
fn a_gateway_timeout_after_the_server_applied_is_not_a_false_conflict() {
    for protocol in BOTH {
        let rig = Rig::new();
        runtime().block_on(async {
            let a = rig.device("a", protocol).await;
            let t = a.store.table::<TodoItem>().await.unwrap();
            t.insert(TodoItem::new("x", "a1")).await.unwrap();
            rig.proxy.force(&[Fault::GatewayAfterApplied]);
            let report = a.client.push().await.unwrap();
            assert_eq!((report.pushed, report.errors), (1, 0), "{protocol} insert: {report:?}");
            assert!(landed(&report), "{protocol}: {report:?}");

            let mut item = t.get("x").await.unwrap().unwrap();
            item.text = "a2".into();
            t.update(&item).await.unwrap();
            rig.proxy.force(&[Fault::GatewayAfterApplied]);
            let report = a.client.push().await.unwrap();
            assert_eq!((report.pushed, report.errors), (1, 0), "{protocol} update: {report:?}");
            assert!(rig.seen.lock().unwrap().is_empty(), "{protocol}: {:?}", rig.seen.lock().unwrap());
            assert_eq!(rig.server_items().await, [("x".into(), "a2".into(), false)]);
            assert_eq!(rig.writes().len(), 2, "each write applied once");
        });
    }
}

/// Regression: an update whose answer was lost, then a local delete: the delete carried
/// the version from before the update, met 412, and the handler was shown the client's
/// own update as the server's side.
#[test]
fn a_delete_after_a_lost_update_answer_deletes_over_the_landed_version() {
    for protocol in BOTH {
        let rig = Rig::new();
        runtime().block_on(async {
            let a = rig.device("a", protocol).await;
            let t = a.store.table::<TodoItem>().await.unwrap();
            t.insert(TodoItem::new("x", "a1")).await.unwrap();
            assert!(a.client.push().await.unwrap().is_complete());
            let mut item = t.get("x").await.unwrap().unwrap();
            item.text = "a2".into();
            t.update(&item).await.unwrap();
            rig.proxy.force(&[Fault::DropAfterApplied]);
            assert!(cancelled(a.client.push().await));
            t.delete("x").await.unwrap();
            let report = a.client.push().await.unwrap();
            assert_eq!((report.pushed, report.errors), (1, 0), "{protocol}: {report:?}");
            assert!(landed(&report), "{protocol}: {report:?}");
            assert!(rig.seen.lock().unwrap().is_empty(), "{protocol}: {:?}", rig.seen.lock().unwrap());
            assert_eq!(rig.server_items().await, [("x".into(), "a2".into(), true)]);
        });
    }
}

/// Regression: insert (attempted, never landed), delete, insert again queued an update
/// without a version, which overwrote another client's item with no If-Match.
#[test]
fn recreating_an_item_whose_insert_never_landed_does_not_overwrite_another_clients_item() {
    for first in [Fault::Refuse, Fault::ResetRequest, Fault::Error503] {
        for protocol in BOTH {
            let rig = Rig::new();
            runtime().block_on(async {
                let b = rig.direct("b", protocol).await;
                b.store.table::<TodoItem>().await.unwrap().insert(TodoItem::new("x", "b1")).await.unwrap();
                assert!(b.client.push().await.unwrap().is_complete());

                let a = rig.device("a", protocol).await;
                let t = a.store.table::<TodoItem>().await.unwrap();
                t.insert(TodoItem::new("x", "a1")).await.unwrap();
                rig.proxy.force(&times(first));
                let err = a.client.push().await.unwrap_err();
                let report = err.push_report().unwrap_or_else(|| panic!("{protocol} {first:?}: {err:?}"));
                assert_eq!(report.pushed, 0, "{protocol} {first:?}: {report:?}");
                t.delete("x").await.unwrap();
                t.insert(TodoItem::new("x", "a2")).await.unwrap();
                let report = a.client.push().await.unwrap();
                assert_eq!((report.pushed, report.errors), (0, 1), "{protocol} {first:?}: a conflict: {report:?}");
                assert_eq!(
                    *rig.seen.lock().unwrap(),
                    [("a2".to_owned(), "b1".to_owned())],
                    "{protocol} {first:?}: the handler saw both sides"
                );
                assert_eq!(rig.server_items().await, [("x".into(), "b1".into(), false)], "{protocol} {first:?}");
            });
        }
    }
}

#[test]
fn recreating_an_item_whose_insert_landed_unseen_updates_it() {
    for protocol in BOTH {
        let rig = Rig::new();
        runtime().block_on(async {
            let a = rig.device("a", protocol).await;
            let t = a.store.table::<TodoItem>().await.unwrap();
            t.insert(TodoItem::new("x", "a1")).await.unwrap();
            rig.proxy.force(&[Fault::DropAfterApplied]);
            assert!(cancelled(a.client.push().await));
            t.delete("x").await.unwrap();
            t.insert(TodoItem::new("x", "a2")).await.unwrap();
            let report = a.client.push().await.unwrap();
            assert_eq!((report.pushed, report.errors), (1, 0), "{protocol}: {report:?}");
            assert!(landed(&report));
            assert!(rig.seen.lock().unwrap().is_empty());
            assert_eq!(rig.server_items().await, [("x".into(), "a2".into(), false)]);
        });
    }
}

/// An insert lands but its answer is lost; the item is edited locally; the next attempt
/// never reaches the server. The attempt after that must still recognize the first one.
#[test]
fn a_lost_insert_answer_is_recognized_after_an_attempt_that_never_arrived() {
    for between in [Fault::Refuse, Fault::ResetRequest, Fault::Error503] {
        for protocol in BOTH {
            let rig = Rig::new();
            runtime().block_on(async {
                let a = rig.device("a", protocol).await;
                let t = a.store.table::<TodoItem>().await.unwrap();
                t.insert(TodoItem::new("x", "a1")).await.unwrap();
                rig.proxy.force(&[Fault::DropAfterApplied]);
                assert!(cancelled(a.client.push().await));
                let mut item = t.get("x").await.unwrap().unwrap();
                item.text = "a2".into();
                t.update(&item).await.unwrap();
                rig.proxy.force(&times(between));
                assert!(cancelled(a.client.push().await), "{protocol} {between:?}");
                let report = a.client.push().await.unwrap();
                assert_eq!((report.pushed, report.errors), (1, 0), "{protocol} {between:?}: {report:?}");
                assert!(landed(&report), "{protocol} {between:?}: {report:?}");
                assert!(rig.seen.lock().unwrap().is_empty(), "{protocol} {between:?}: {:?}", rig.seen.lock().unwrap());
                assert_eq!(rig.server_items().await, [("x".into(), "a2".into(), false)]);
            });
        }
    }
}

/// A client's insert never lands; another client creates the same id; the first client
/// deletes its (never synced) item. Its delete cancels its own insert: it must not
/// delete the other client's item unseen.
#[test]
fn deleting_an_item_whose_insert_never_landed_spares_another_clients_item() {
    for protocol in BOTH {
        let rig = Rig::new();
        runtime().block_on(async {
            let a = rig.device("a", protocol).await;
            let t = a.store.table::<TodoItem>().await.unwrap();
            t.insert(TodoItem::new("x", "a1")).await.unwrap();
            rig.proxy.force(&[Fault::ResetRequest]);
            assert!(cancelled(a.client.push().await));

            let b = rig.direct("b", protocol).await;
            b.store.table::<TodoItem>().await.unwrap().insert(TodoItem::new("x", "b1")).await.unwrap();
            assert!(b.client.push().await.unwrap().is_complete());

            t.delete("x").await.unwrap();
            let report = a.client.push().await.unwrap();
            assert_eq!(rig.server_items().await, [("x".into(), "b1".into(), false)], "{protocol}: {report:?}");
            let seen = rig.seen.lock().unwrap().clone();
            assert_eq!(seen, [("a1".to_owned(), "b1".to_owned())], "{protocol}: the handler saw both sides");
        });
    }
}

/// A deleted item whose insert landed unseen: the delete finds it and deletes it.
#[test]
fn deleting_an_item_whose_insert_landed_unseen_deletes_it() {
    for protocol in BOTH {
        let rig = Rig::new();
        runtime().block_on(async {
            let a = rig.device("a", protocol).await;
            let t = a.store.table::<TodoItem>().await.unwrap();
            t.insert(TodoItem::new("x", "a1")).await.unwrap();
            rig.proxy.force(&[Fault::DropAfterApplied]);
            assert!(cancelled(a.client.push().await));
            t.delete("x").await.unwrap();
            let report = a.client.push().await.unwrap();
            assert_eq!((report.pushed, report.errors), (1, 0), "{protocol}: {report:?}");
            assert!(rig.seen.lock().unwrap().is_empty());
            assert_eq!(rig.server_items().await, [("x".into(), "a1".into(), true)]);
            assert_eq!(a.store.pending_count().await.unwrap(), 0);
        });
    }
}

/// Regression: `resolve_retry_with` on a refused insert kept it an insert, which met the
/// same 409 at every push, forever.
#[test]
fn retrying_a_refused_insert_with_the_client_item_overwrites_the_server() {
    for protocol in BOTH {
        let rig = Rig::new();
        runtime().block_on(async {
            let b = rig.direct("b", protocol).await;
            b.store.table::<TodoItem>().await.unwrap().insert(TodoItem::new("x", "b1")).await.unwrap();
            assert!(b.client.push().await.unwrap().is_complete());
            let a = rig.device("a", protocol).await;
            let t = a.store.table::<TodoItem>().await.unwrap();
            t.insert(TodoItem::new("x", "a1")).await.unwrap();
            assert_eq!(a.client.push().await.unwrap().errors, 1);
            let errors = t.errors().await.unwrap();
            let mine = errors[0].client_item.clone().unwrap();
            t.resolve_retry_with(&errors[0], mine).await.unwrap();
            let report = a.client.push().await.unwrap();
            assert_eq!((report.pushed, report.errors), (1, 0), "{protocol}: {report:?}");
            assert_eq!(rig.server_items().await, [("x".into(), "a1".into(), false)]);
            b.client.pull(Query::<TodoItem>::new(), Some("all")).await.unwrap();
            assert_eq!(text_of(&b, "x").await.as_deref(), Some("a1"));
        });
    }
}

/// The proxy's faults as the client sees them: each becomes a cancelled push or an error,
/// never a hang, and a pull through any of them fails cleanly or succeeds.
#[test]
fn every_fault_is_a_clean_failure_for_push_and_pull() {
    let faults = [
        Fault::Refuse,
        Fault::ResetRequest,
        Fault::ResetResponse { permille: 1 },
        Fault::ResetResponse { permille: 998 },
        Fault::DropAfterApplied,
        Fault::Error500,
        Fault::Error503,
        Fault::Delay { ms: 20 },
    ];
    for protocol in BOTH {
        let rig = Rig::new();
        runtime().block_on(async {
            let a = rig.device("a", protocol).await;
            let t = a.store.table::<TodoItem>().await.unwrap();
            // Pulls by a reader with nothing queued (a pull pushes first otherwise).
            let reader = rig.device("reader", protocol).await;
            for (i, fault) in faults.iter().enumerate() {
                // Each fault meets a queue of one: settle what the previous one left.
                for e in t.errors().await.unwrap() {
                    t.resolve_change_kind(&e, e.record.kind).await.unwrap();
                }
                assert!(a.client.push().await.unwrap().is_complete());
                assert_eq!(a.store.pending_count().await.unwrap(), 0);
                t.insert(TodoItem::new(&format!("i{i}"), "t")).await.unwrap();
                rig.proxy.force(&times(*fault));
                let pushed = a.client.push().await;
                let report = match &pushed {
                    Ok(report) => report.clone(),
                    Err(e) => e.push_report().cloned().unwrap_or_else(|| panic!("{protocol} {fault:?}: {e:?}")),
                };
                // The item stays queued unless the answer got through; a 500 that stays
                // a 500 becomes an error row, and only network trouble and 503 stop the push.
                let id = format!("i{i}");
                let queued = a.store.pending_ops().await.unwrap().iter().any(|op| op.item_id == id);
                let failed = t.errors().await.unwrap().iter().any(|e| e.record.item_id == id);
                let expected = match fault {
                    Fault::Delay { .. } => (false, false, false),
                    Fault::Error500 => (true, true, false),
                    _ => (true, false, true),
                };
                assert_eq!((queued, failed, cancelled(pushed)), expected, "{protocol} {fault:?}: {report:?}");
                rig.proxy.force(&times(*fault));
                let pulled = reader.client.pull(Query::<TodoItem>::new(), Some("all")).await;
                match pulled {
                    Ok(_) => assert!(fault.delivers(), "{protocol} {fault:?}"),
                    Err(e) => assert!(
                        !fault.delivers() && (e.is_network() || e.http_status().is_some()),
                        "{protocol} {fault:?}: {e:?}"
                    ),
                }
                assert!(rig.proxy.stats().get(fault.name()) > 0);
            }
            // Faults off: everything settles, nothing twice.
            for e in t.errors().await.unwrap() {
                t.resolve_change_kind(&e, e.record.kind).await.unwrap();
            }
            assert!(a.client.push().await.unwrap().is_complete());
            assert_eq!(a.store.pending_count().await.unwrap(), 0);
            let items = rig.server_items().await;
            assert_eq!(items.len(), faults.len(), "{protocol}: {items:?}");
        });
    }
}
