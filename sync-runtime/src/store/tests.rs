//! Store and queue tests on real SQLite (in memory, or files in a temp dir).

use crate::{ChangeOrigin, Error, Query, Store, StoreOptions};

use super::queue::{self, ErrorInput, OpKind, OpState, PendingOp};

#[derive(crate::SyncEntity, Clone, Debug, PartialEq)]
#[sync(crate = "crate", table = "TodoItem")]
struct TodoItem {
    id: String,
    text: String,
    complete: bool,
    #[sync(version)]
    version: Option<String>,
}

#[derive(crate::SyncEntity, Clone, Debug, PartialEq)]
#[sync(crate = "crate")]
struct Tag {
    id: String,
    name: String,
}

fn todo(id: &str, text: &str) -> TodoItem {
    TodoItem { id: id.into(), text: text.into(), complete: false, version: None }
}

pub(super) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().build().expect("runtime")
}

/// A row as if pulled from a server: stored with a version, no queued operation.
async fn seed_synced(store: &Store, item: TodoItem, version: &str) {
    let version = version.to_owned();
    store
        .transaction(move |tx| {
            let meta = tx.meta::<TodoItem>()?;
            let mut row = meta.row_from_fields(sync_core::SyncEntity::to_values(&item));
            row[meta.column_index("version").unwrap()] = crate::Value::String(version);
            tx.upsert_row_unqueued(&meta, &row)
        })
        .await
        .unwrap();
}

async fn ops(store: &Store) -> Vec<PendingOp> {
    store.pending_ops().await.unwrap()
}

async fn queued_item(store: &Store, seq: i64) -> Option<serde_json::Value> {
    store
        .call(move |w| Ok(queue::op_by_seq(&w.conn, seq)?.and_then(|op| op.item)))
        .await
        .unwrap()
        .map(|s| serde_json::from_str(&s).unwrap())
}

async fn set_state(store: &Store, seq: i64, state: OpState) {
    store
        .call(move |w| {
            queue::mark_attempted(&w.conn, seq, Some("{}"))?;
            if state == OpState::Failed {
                queue::record_error(
                    &w.conn,
                    seq,
                    &ErrorInput { status: Some(400), message: "bad".into(), ..ErrorInput::default() },
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();
}

// ---- one test per cell of the collapse table (see `queue`) ----

#[test]
fn none_then_insert_queues_insert() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let t = store.table::<TodoItem>().await.unwrap();
        let item = t.insert(todo("", "a")).await.unwrap();
        let q = ops(&store).await;
        assert_eq!(q.len(), 1);
        assert_eq!(
            (q[0].kind, q[0].state, q[0].item_id.as_str()),
            (OpKind::Insert, OpState::Pending, item.id.as_str())
        );
        assert_eq!(q[0].op_version, 1);
        assert_eq!(t.get(&item.id).await.unwrap(), Some(item));
    });
}

#[test]
fn none_then_update_queues_update() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let t = store.table::<TodoItem>().await.unwrap();
        seed_synced(&store, todo("x", "a"), "v1").await;
        t.update(&todo("x", "b")).await.unwrap();
        let q = ops(&store).await;
        assert_eq!(q.len(), 1);
        assert_eq!((q[0].kind, q[0].item_id.as_str()), (OpKind::Update, "x"));
        let row = t.get("x").await.unwrap().unwrap();
        assert_eq!((row.text.as_str(), row.version.as_deref()), ("b", Some("v1")), "system columns are kept");
    });
}

#[test]
fn none_then_delete_queues_delete_with_item() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let t = store.table::<TodoItem>().await.unwrap();
        seed_synced(&store, todo("x", "a"), "v1").await;
        t.delete("x").await.unwrap();
        let q = ops(&store).await;
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].kind, OpKind::Delete);
        let item = queued_item(&store, q[0].op_id).await.expect("a delete keeps its item");
        assert_eq!((item["text"].as_str(), item["version"].as_str()), (Some("a"), Some("v1")));
        assert_eq!(t.get("x").await.unwrap(), None);
    });
}

#[test]
fn insert_pending_then_insert_is_refused() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let t = store.table::<TodoItem>().await.unwrap();
        t.insert(todo("x", "a")).await.unwrap();
        let err = t.insert(todo("x", "b")).await.unwrap_err();
        assert!(err.is_queue_conflict(), "{err}");
        assert!(err.to_string().contains("already inserted"), "{err}");
        let q = ops(&store).await;
        assert_eq!((q.len(), q[0].kind, q[0].op_version), (1, OpKind::Insert, 1));
        assert_eq!(t.get("x").await.unwrap().unwrap().text, "a");
    });
}

#[test]
fn insert_pending_then_update_stays_one_insert() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let t = store.table::<TodoItem>().await.unwrap();
        t.insert(todo("x", "a")).await.unwrap();
        let seq = ops(&store).await[0].op_id;
        t.update(&todo("x", "b")).await.unwrap();
        let q = ops(&store).await;
        assert_eq!(q.len(), 1);
        assert_eq!((q[0].op_id, q[0].kind, q[0].op_version), (seq, OpKind::Insert, 2));
        assert_eq!(t.get("x").await.unwrap().unwrap().text, "b");
    });
}

#[test]
fn insert_pending_then_delete_vanishes() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let t = store.table::<TodoItem>().await.unwrap();
        t.insert(todo("x", "a")).await.unwrap();
        t.delete("x").await.unwrap();
        assert!(ops(&store).await.is_empty(), "nothing is sent");
        assert_eq!(t.get("x").await.unwrap(), None);
    });
}

#[test]
fn insert_attempted_or_failed_then_insert_is_refused() {
    for state in [OpState::Attempted, OpState::Failed] {
        rt().block_on(async {
            let store = Store::open_in_memory().await.unwrap();
            let t = store.table::<TodoItem>().await.unwrap();
            t.insert(todo("x", "a")).await.unwrap();
            set_state(&store, ops(&store).await[0].op_id, state).await;
            assert!(t.insert(todo("x", "b")).await.unwrap_err().is_queue_conflict());
            let q = ops(&store).await;
            assert_eq!((q.len(), q[0].kind, q[0].state), (1, OpKind::Insert, state));
        });
    }
}

#[test]
fn insert_attempted_or_failed_then_update_stays_one_insert() {
    for state in [OpState::Attempted, OpState::Failed] {
        rt().block_on(async {
            let store = Store::open_in_memory().await.unwrap();
            let t = store.table::<TodoItem>().await.unwrap();
            t.insert(todo("x", "a")).await.unwrap();
            let seq = ops(&store).await[0].op_id;
            set_state(&store, seq, state).await;
            t.update(&todo("x", "b")).await.unwrap();
            let q = ops(&store).await;
            assert_eq!(q.len(), 1);
            assert_eq!((q[0].op_id, q[0].kind, q[0].op_version), (seq, OpKind::Insert, 2));
            assert_eq!(q[0].state, OpState::Attempted, "an attempted insert may have landed: it stays attempted");
            assert_eq!(store.error_count().await.unwrap(), 0, "collapsing removes the error row");
            assert_eq!(t.get("x").await.unwrap().unwrap().text, "b");
        });
    }
}

#[test]
fn insert_attempted_or_failed_then_delete_becomes_delete() {
    for state in [OpState::Attempted, OpState::Failed] {
        rt().block_on(async {
            let store = Store::open_in_memory().await.unwrap();
            let t = store.table::<TodoItem>().await.unwrap();
            t.insert(todo("x", "a")).await.unwrap();
            let seq = ops(&store).await[0].op_id;
            set_state(&store, seq, state).await;
            t.delete("x").await.unwrap();
            let q = ops(&store).await;
            assert_eq!(q.len(), 1);
            assert_eq!((q[0].op_id, q[0].kind, q[0].op_version), (seq, OpKind::Delete, 2));
            assert_eq!(queued_item(&store, seq).await.unwrap()["text"], "a");
            assert_eq!(store.error_count().await.unwrap(), 0);
            assert_eq!(t.get("x").await.unwrap(), None);
        });
    }
}

#[test]
fn update_then_insert_is_refused() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let t = store.table::<TodoItem>().await.unwrap();
        seed_synced(&store, todo("x", "a"), "v1").await;
        t.update(&todo("x", "b")).await.unwrap();
        let err = t.insert(todo("x", "c")).await.unwrap_err();
        assert!(err.is_queue_conflict() && err.to_string().contains("already exists"), "{err}");
        let q = ops(&store).await;
        assert_eq!((q.len(), q[0].kind, q[0].op_version), (1, OpKind::Update, 1));
        assert_eq!(t.get("x").await.unwrap().unwrap().text, "b");
    });
}

#[test]
fn update_then_update_stays_one_update() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let t = store.table::<TodoItem>().await.unwrap();
        seed_synced(&store, todo("x", "a"), "v1").await;
        t.update(&todo("x", "b")).await.unwrap();
        let seq = ops(&store).await[0].op_id;
        t.update(&todo("x", "c")).await.unwrap();
        let q = ops(&store).await;
        assert_eq!(q.len(), 1);
        assert_eq!((q[0].op_id, q[0].kind, q[0].op_version), (seq, OpKind::Update, 2));
        assert_eq!(t.get("x").await.unwrap().unwrap().text, "c");
    });
}

#[test]
fn update_then_delete_becomes_delete() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let t = store.table::<TodoItem>().await.unwrap();
        seed_synced(&store, todo("x", "a"), "v1").await;
        t.update(&todo("x", "b")).await.unwrap();
        let seq = ops(&store).await[0].op_id;
        t.delete("x").await.unwrap();
        let q = ops(&store).await;
        assert_eq!(q.len(), 1);
        assert_eq!((q[0].op_id, q[0].kind, q[0].op_version), (seq, OpKind::Delete, 2));
        let item = queued_item(&store, seq).await.unwrap();
        assert_eq!((item["text"].as_str(), item["version"].as_str()), (Some("b"), Some("v1")));
        assert_eq!(t.get("x").await.unwrap(), None);
    });
}

#[test]
fn delete_then_insert_becomes_update() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let t = store.table::<TodoItem>().await.unwrap();
        seed_synced(&store, todo("x", "a"), "v1").await;
        t.delete("x").await.unwrap();
        let seq = ops(&store).await[0].op_id;
        t.insert(todo("x", "again")).await.unwrap();
        let q = ops(&store).await;
        assert_eq!(q.len(), 1);
        assert_eq!((q[0].op_id, q[0].kind, q[0].op_version), (seq, OpKind::Update, 2));
        assert_eq!(queued_item(&store, seq).await, None, "an update re-reads the row at push time");
        let row = t.get("x").await.unwrap().unwrap();
        assert_eq!(row.text, "again");
        assert_eq!(row.version.as_deref(), Some("v1"), "the re-created row keeps the server version for If-Match");
    });
}

#[test]
fn delete_then_update_is_refused() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let t = store.table::<TodoItem>().await.unwrap();
        seed_synced(&store, todo("x", "a"), "v1").await;
        t.delete("x").await.unwrap();
        let err = t.update(&todo("x", "b")).await.unwrap_err();
        assert!(err.is_queue_conflict() && err.to_string().contains("is deleted"), "{err}");
        let q = ops(&store).await;
        assert_eq!((q.len(), q[0].kind, q[0].op_version), (1, OpKind::Delete, 1));
        assert_eq!(t.get("x").await.unwrap(), None);
    });
}

#[test]
fn delete_then_delete_is_refused() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let t = store.table::<TodoItem>().await.unwrap();
        seed_synced(&store, todo("x", "a"), "v1").await;
        t.delete("x").await.unwrap();
        let err = t.delete("x").await.unwrap_err();
        assert!(err.is_queue_conflict() && err.to_string().contains("already deleted"), "{err}");
        assert_eq!(ops(&store).await.len(), 1);
    });
}

#[test]
fn in_flight_op_is_never_collapsed_into() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let t = store.table::<TodoItem>().await.unwrap();
        t.insert(todo("x", "a")).await.unwrap();
        let first = ops(&store).await[0].op_id;
        store.set_in_flight(first, true).await.unwrap();
        t.update(&todo("x", "b")).await.unwrap();
        t.update(&todo("x", "c")).await.unwrap();
        let q = ops(&store).await;
        assert_eq!(q.len(), 2, "a second op queues behind the in-flight one");
        assert_eq!((q[0].op_id, q[0].kind, q[0].op_version), (first, OpKind::Insert, 1));
        assert!(q[1].op_id > first);
        assert_eq!((q[1].kind, q[1].op_version), (OpKind::Update, 2), "later writes collapse into the second op");
        t.delete("x").await.unwrap();
        let q = ops(&store).await;
        assert_eq!((q.len(), q[1].kind), (2, OpKind::Delete));
        store.set_in_flight(first, false).await.unwrap();
        assert!(store.check_integrity().await.unwrap().is_ok());
    });
}

/// A push that stopped before sending an operation leaves it with the operations
/// written behind it while it was in flight: the next write to the item folds them
/// together first, so the collapse rules see one operation again.
#[test]
fn ops_queued_behind_an_in_flight_op_fold_in_once_it_is_not() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let t = store.table::<TodoItem>().await.unwrap();
        t.insert(todo("x", "a")).await.unwrap();
        let first = ops(&store).await[0].op_id;
        store.set_in_flight(first, true).await.unwrap();
        t.delete("x").await.unwrap();
        assert_eq!(ops(&store).await.len(), 2);
        // The push stopped before sending it: never sent, then deleted, is nothing.
        store.set_in_flight(first, false).await.unwrap();
        t.insert(todo("x", "again")).await.unwrap();
        let q = ops(&store).await;
        assert_eq!(q.len(), 1, "{q:?}");
        assert_eq!((q[0].kind, q[0].state), (OpKind::Insert, OpState::Pending));
        assert_eq!(t.get("x").await.unwrap().unwrap().text, "again");
        assert!(store.check_integrity().await.unwrap().is_ok());
    });
}

/// Behind an insert in flight (it may land), a delete, an insert and a delete of the
/// item must leave a delete to send, not nothing.
#[test]
fn a_delete_behind_an_in_flight_insert_is_kept() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let t = store.table::<TodoItem>().await.unwrap();
        t.insert(todo("x", "a")).await.unwrap();
        let first = ops(&store).await[0].op_id;
        store.set_in_flight(first, true).await.unwrap();
        t.delete("x").await.unwrap();
        t.insert(todo("x", "b")).await.unwrap();
        t.delete("x").await.unwrap();
        let q = ops(&store).await;
        assert_eq!(q.iter().map(|op| op.kind).collect::<Vec<_>>(), [OpKind::Insert, OpKind::Delete], "{q:?}");
        assert_eq!(t.get("x").await.unwrap(), None);
        store.set_in_flight(first, false).await.unwrap();
        assert!(store.check_integrity().await.unwrap().is_ok());
    });
}

/// An error recorded for an insert that was never sent (its push stopped at it) while
/// a delete of the item waits behind it: the two cancel out, so nothing is left to
/// refuse. No error row, no operation, no failure.
#[test]
fn an_error_for_an_insert_deleted_meanwhile_leaves_nothing() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let t = store.table::<TodoItem>().await.unwrap();
        t.insert(todo("x", "a")).await.unwrap();
        let first = ops(&store).await[0].op_id;
        store.set_in_flight(first, true).await.unwrap();
        t.delete("x").await.unwrap();
        store.set_in_flight(first, false).await.unwrap();
        let input = ErrorInput { status: Some(400), message: "bad".into(), ..ErrorInput::default() };
        store.transaction_as(ChangeOrigin::Push, move |tx| tx.record_error(first, &input)).await.unwrap();
        assert!(ops(&store).await.is_empty());
        assert_eq!(store.error_count().await.unwrap(), 0);
        assert!(store.check_integrity().await.unwrap().is_ok());
    });
}

/// An error recorded for an update sent while the app edited the item again: the edit
/// folds into the failed operation, and the error's client item is the item as it
/// stands, so settling the error keeps the edit.
#[test]
fn an_error_carries_the_item_as_it_stands_after_a_fold() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let t = store.table::<TodoItem>().await.unwrap();
        seed_synced(&store, todo("x", "base"), "v1").await;
        t.update(&todo("x", "sent")).await.unwrap();
        let first = ops(&store).await[0].op_id;
        set_state(&store, first, OpState::Attempted).await;
        store.set_in_flight(first, true).await.unwrap();
        t.update(&todo("x", "edited meanwhile")).await.unwrap();
        assert_eq!(ops(&store).await.len(), 2);
        store.set_in_flight(first, false).await.unwrap();
        let input = ErrorInput {
            status: Some(400),
            message: "bad".into(),
            client_item: Some(serde_json::json!({"id": "x", "text": "sent"})),
            ..ErrorInput::default()
        };
        store.transaction_as(ChangeOrigin::Push, move |tx| tx.record_error(first, &input)).await.unwrap();
        let q = ops(&store).await;
        assert_eq!(q.len(), 1, "{q:?}");
        assert_eq!((q[0].op_id, q[0].state), (first, OpState::Failed));
        let errors = t.errors().await.unwrap();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].client_item.as_ref().map(|i| i.text.as_str()), Some("edited meanwhile"));
        assert!(store.check_integrity().await.unwrap().is_ok());
    });
}

#[test]
fn unknown_rows_are_not_found() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let t = store.table::<TodoItem>().await.unwrap();
        assert!(t.update(&todo("nope", "b")).await.unwrap_err().is_not_found());
        assert!(t.delete("nope").await.unwrap_err().is_not_found());
        seed_synced(&store, todo("x", "a"), "v1").await;
        assert!(matches!(t.insert(todo("x", "b")).await.unwrap_err(), Error::AlreadyExists { .. }));
        assert!(ops(&store).await.is_empty());
    });
}

// ---- the error table and its resolution calls ----

async fn failed_update(store: &Store, server: serde_json::Value) -> crate::SyncError<TodoItem> {
    let t = store.table::<TodoItem>().await.unwrap();
    seed_synced(store, todo("x", "local base"), "v1").await;
    t.update(&todo("x", "mine")).await.unwrap();
    let seq = ops(store).await[0].op_id;
    store
        .call(move |w| {
            queue::mark_attempted(&w.conn, seq, None)?;
            queue::record_error(
                &w.conn,
                seq,
                &ErrorInput {
                    status: Some(412),
                    message: "precondition failed".into(),
                    client_item: Some(serde_json::json!({"id": "x", "text": "mine", "complete": false})),
                    server_item: Some(server),
                    raw_body: Some("{...}".into()),
                },
            )
        })
        .await
        .unwrap();
    let errors = t.errors().await.unwrap();
    assert_eq!(errors.len(), 1);
    errors.into_iter().next().unwrap()
}

fn server_copy() -> serde_json::Value {
    serde_json::json!({"id": "x", "text": "theirs", "complete": true, "version": "v2",
        "updatedAt": "2026-01-01T00:00:00.000Z", "deleted": false})
}

#[test]
fn errors_are_listed_typed_per_table_and_in_total() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let err = failed_update(&store, server_copy()).await;
        assert!(err.is_conflict());
        assert_eq!(err.record.kind, OpKind::Update);
        assert_eq!(err.status(), Some(412));
        assert_eq!(err.client_item.as_ref().unwrap().text, "mine");
        let server = err.server_item.as_ref().unwrap();
        assert_eq!((server.text.as_str(), server.complete, server.version.as_deref()), ("theirs", true, Some("v2")));
        assert_eq!(store.error_count().await.unwrap(), 1);
        assert_eq!(store.errors().await.unwrap()[0].message, "precondition failed");
        assert_eq!(store.table::<Tag>().await.unwrap().error_count().await.unwrap(), 0);
        assert_eq!(ops(&store).await[0].state, OpState::Failed);
        assert!(store.check_integrity().await.unwrap().is_ok());
    });
}

#[test]
fn resolve_take_server_cancels_op_and_takes_server_row() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let err = failed_update(&store, server_copy()).await;
        let t = store.table::<TodoItem>().await.unwrap();
        t.resolve_take_server(&err).await.unwrap();
        assert!(ops(&store).await.is_empty());
        assert_eq!(store.error_count().await.unwrap(), 0);
        let row = t.get("x").await.unwrap().unwrap();
        assert_eq!((row.text.as_str(), row.complete, row.version.as_deref()), ("theirs", true, Some("v2")));
        assert!(t.resolve_take_server(&err).await.unwrap_err().is_stale_operation(), "the op is gone");
    });
}

#[test]
fn resolve_take_given_item_keeps_server_version() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let err = failed_update(&store, server_copy()).await;
        let t = store.table::<TodoItem>().await.unwrap();
        t.resolve_take(&err, todo("x", "merged")).await.unwrap();
        assert!(ops(&store).await.is_empty());
        let row = t.get("x").await.unwrap().unwrap();
        assert_eq!((row.text.as_str(), row.version.as_deref()), ("merged", Some("v2")));
    });
}

#[test]
fn resolve_discard_cancels_op_and_removes_row() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let err = failed_update(&store, server_copy()).await;
        let t = store.table::<TodoItem>().await.unwrap();
        t.resolve_discard(&err).await.unwrap();
        assert!(ops(&store).await.is_empty());
        assert_eq!(t.get("x").await.unwrap(), None);
        assert_eq!(store.error_count().await.unwrap(), 0);
    });
}

#[test]
fn resolve_retry_with_keeps_op_with_server_version() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let err = failed_update(&store, server_copy()).await;
        let t = store.table::<TodoItem>().await.unwrap();
        t.resolve_retry_with(&err, todo("x", "mine, again")).await.unwrap();
        let q = ops(&store).await;
        assert_eq!((q.len(), q[0].kind, q[0].op_version, q[0].state), (1, OpKind::Update, 2, OpState::Attempted));
        assert_eq!(store.error_count().await.unwrap(), 0);
        let row = t.get("x").await.unwrap().unwrap();
        assert_eq!((row.text.as_str(), row.version.as_deref()), ("mine, again", Some("v2")), "client wins");
        // The handle is stale now: the op changed since the error was recorded.
        let stale = t.resolve_discard(&err).await.unwrap_err();
        assert!(stale.is_stale_operation() && stale.to_string().contains("changed"), "{stale}");
        assert!(t.get("x").await.unwrap().is_some(), "a refused call changes nothing");
    });
}

#[test]
fn resolve_change_kind_to_delete_and_back() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let err = failed_update(&store, server_copy()).await;
        let t = store.table::<TodoItem>().await.unwrap();
        t.resolve_change_kind(&err, OpKind::Delete).await.unwrap();
        let q = ops(&store).await;
        assert_eq!((q.len(), q[0].kind), (1, OpKind::Delete));
        assert_eq!(t.get("x").await.unwrap(), None);
        assert!(store.check_integrity().await.unwrap().is_ok());
        // A local edit after the error made it stale.
        assert!(t.resolve_change_kind(&err, OpKind::Update).await.unwrap_err().is_stale_operation());
    });
}

#[test]
fn a_local_write_after_the_error_makes_the_handle_stale() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let err = failed_update(&store, server_copy()).await;
        let t = store.table::<TodoItem>().await.unwrap();
        t.update(&todo("x", "edited again")).await.unwrap();
        assert_eq!(store.error_count().await.unwrap(), 0, "the collapse removed the error");
        assert!(t.resolve_take_server(&err).await.unwrap_err().is_stale_operation());
        assert_eq!(t.get("x").await.unwrap().unwrap().text, "edited again");
    });
}

/// Operation `seq` sent and refused with a 412 carrying `server`.
async fn refuse(store: &Store, seq: i64, server: serde_json::Value) {
    store
        .call(move |w| {
            queue::mark_attempted(&w.conn, seq, None)?;
            let input = ErrorInput {
                status: Some(412),
                message: "precondition failed".into(),
                server_item: Some(server),
                ..ErrorInput::default()
            };
            queue::record_error(&w.conn, seq, &input)
        })
        .await
        .unwrap();
}

#[test]
fn resolve_take_server_keeps_an_edit_queued_behind_the_failed_op() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let t = store.table::<TodoItem>().await.unwrap();
        seed_synced(&store, todo("x", "local base"), "v1").await;
        t.update(&todo("x", "mine")).await.unwrap();
        let seq = ops(&store).await[0].op_id;
        // An edit made while the update was in flight queues an update of its own.
        store.set_in_flight(seq, true).await.unwrap();
        t.update(&todo("x", "later edit")).await.unwrap();
        store.set_in_flight(seq, false).await.unwrap();
        refuse(&store, seq, server_copy()).await;

        let err = t.errors().await.unwrap().remove(0);
        t.resolve_take_server(&err).await.unwrap();
        let q = ops(&store).await;
        assert_eq!((q.len(), q[0].kind), (1, OpKind::Update), "the later edit stays queued");
        let row = t.get("x").await.unwrap().unwrap();
        assert_eq!(
            (row.text.as_str(), row.complete, row.version.as_deref()),
            ("later edit", false, Some("v2")),
            "the app's data is kept, over the server's version"
        );
    });
}

#[test]
fn an_unreadable_queued_item_is_an_error_naming_table_and_operation() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let t = store.table::<TodoItem>().await.unwrap();
        seed_synced(&store, todo("x", "a"), "v1").await;
        t.delete("x").await.unwrap();
        let seq = ops(&store).await[0].op_id;
        refuse(&store, seq, server_copy()).await;
        let sql = format!("UPDATE {} SET item = 'not json' WHERE seq = ?1", sync_core::system::OPERATIONS_TABLE);
        store.call(move |w| Ok(w.conn.execute(&sql, [seq])?)).await.unwrap();
        let err = t.errors().await.unwrap().remove(0);

        let unreadable = |e: Error| match e {
            Error::InvalidQueuedItem { ref table, op_id, .. } if table == "TodoItem" && op_id == seq => {
                let text = e.to_string();
                assert!(text.contains("TodoItem") && text.contains(&seq.to_string()), "{text}");
            }
            other => panic!("expected the queued item to be refused: {other:?}"),
        };
        // Keeping the delete with an edited item reads the snapshot for its system
        // columns (the row is gone): never a row of nulls.
        unreadable(t.resolve_retry_with(&err, todo("x", "again")).await.unwrap_err());
        // Turning the delete back into an update restores the row from the snapshot.
        unreadable(t.resolve_change_kind(&err, OpKind::Update).await.unwrap_err());
        // Re-creating the item keeps the deleted item's system columns.
        unreadable(t.insert(todo("x", "back")).await.unwrap_err());
        let q = ops(&store).await;
        assert_eq!((q.len(), q[0].kind, q[0].state), (1, OpKind::Delete, OpState::Failed), "nothing changed");
        assert_eq!(t.get("x").await.unwrap(), None);
    });
}

#[test]
fn purge_is_refused_while_ops_are_queued_and_force_purge_forgets_everything() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let t = store.table::<TodoItem>().await.unwrap();
        for id in ["a", "b", "c"] {
            seed_synced(&store, todo(id, "pulled"), "v1").await;
        }
        let cursor = super::PullCursor { updated_at: "2026-01-01T00:00:00.000Z".into(), id: "c".into() };
        store.transaction(move |tx| tx.save_pull_cursor("TodoItem", "all", &cursor)).await.unwrap();

        // A purge by query deletes the rows it selects, and the table's cursors.
        assert_eq!(t.purge(&Query::new().filter(TodoItem::FIELDS.id.eq("c".to_owned()))).await.unwrap(), 1);
        assert_eq!(t.count_all().await.unwrap(), 2);
        assert_eq!(store.pull_cursor("TodoItem", "all").await.unwrap(), None, "the next pull starts over");
        assert!(ops(&store).await.is_empty(), "a purge queues nothing");

        t.update(&todo("a", "edited")).await.unwrap();
        let seq = ops(&store).await[0].op_id;
        refuse(&store, seq, server_copy()).await;
        let err = t.purge(&Query::new()).await.unwrap_err();
        assert!(matches!(err, Error::PendingOperations { pending: 1, .. }), "{err:?}");
        assert_eq!(t.count_all().await.unwrap(), 2, "a refused purge deletes nothing");

        assert_eq!(t.force_purge().await.unwrap(), 2);
        assert_eq!(t.count_all().await.unwrap(), 0);
        assert!(ops(&store).await.is_empty());
        assert_eq!(store.error_count().await.unwrap(), 0);
        assert!(store.check_integrity().await.unwrap().is_ok());
    });
}

// ---- tables, transactions, bad input ----

#[test]
fn insert_makes_lowercase_uuid_v4_ids() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let t = store.table::<TodoItem>().await.unwrap();
        let item = t.insert(todo("", "a")).await.unwrap();
        let parsed = uuid::Uuid::parse_str(&item.id).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(item.id, item.id.to_lowercase());
        assert_eq!(item.id.len(), 36);
    });
}

#[test]
fn invalid_ids_are_refused() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let t = store.table::<TodoItem>().await.unwrap();
        for (id, why) in [
            ("   ", "blank"),
            ("a\u{0}b", "control"),
            ("tab\there", "control"),
            (&"x".repeat(256)[..], "longer than 255"),
        ] {
            let err = t.insert(todo(id, "a")).await.unwrap_err();
            assert!(matches!(err, Error::InvalidId { .. }), "{err}");
            assert!(err.to_string().contains(why), "{err}");
        }
        t.insert(todo(&"y".repeat(255), "a")).await.unwrap();
        t.insert(todo("Mixed-Case", "a")).await.unwrap();
        t.insert(todo("mixed-case", "b")).await.unwrap();
        assert_eq!(t.count_all().await.unwrap(), 3, "ids compare exactly, case-sensitively");
        assert_eq!(ops(&store).await.len(), 3, "refused writes queue nothing");
    });
}

#[test]
fn rows_over_the_size_limit_are_refused() {
    rt().block_on(async {
        let store = Store::open_in_memory_with(StoreOptions::new().max_value_bytes(10_000)).await.unwrap();
        let t = store.table::<TodoItem>().await.unwrap();
        let err = t.insert(todo("big", &"z".repeat(20_000))).await.unwrap_err();
        assert!(matches!(err, Error::RowTooLarge { .. }), "{err}");
        assert!(err.to_string().contains("too large"), "{err}");
        assert_eq!(t.count_all().await.unwrap(), 0);
        assert!(ops(&store).await.is_empty());
        t.insert(todo("small", "ok")).await.unwrap();
    });
}

#[test]
fn non_finite_floats_are_refused() {
    #[derive(crate::SyncEntity, Clone, Debug)]
    #[sync(crate = "crate")]
    struct Reading {
        id: String,
        value: f64,
    }
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let t = store.table::<Reading>().await.unwrap();
        let err = t.insert(Reading { id: "r".into(), value: f64::NAN }).await.unwrap_err();
        assert!(matches!(err, Error::InvalidValue { .. }), "{err}");
        assert!(err.to_string().contains("value"), "{err}");
    });
}

#[test]
fn batch_insert_is_all_or_nothing() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let t = store.table::<TodoItem>().await.unwrap();
        let items: Vec<_> = (0..100).map(|i| todo(&format!("id{i:03}"), "a")).collect();
        assert_eq!(t.insert_many(items).await.unwrap().len(), 100);
        assert_eq!(store.pending_count().await.unwrap(), 100);
        let bad = vec![todo("new1", "a"), todo("id000", "dup")];
        assert!(t.insert_many(bad).await.is_err());
        assert_eq!(t.count_all().await.unwrap(), 100);
        assert_eq!(t.get("new1").await.unwrap(), None);
        assert_eq!(store.pending_count().await.unwrap(), 100);
    });
}

#[test]
fn batch_insert_does_what_one_insert_at_a_time_does() {
    // `insert_many` takes a shortcut while nothing of the table is queued; with or
    // without it, results and errors are those of inserting the items one by one.
    rt().block_on(async {
        for queued_before in [false, true] {
            let store = Store::open_in_memory().await.unwrap();
            let t = store.table::<TodoItem>().await.unwrap();
            seed_synced(&store, todo("pulled", "from the server"), "v1").await;
            seed_synced(&store, todo("gone", "deleted here"), "v7").await;
            if queued_before {
                t.delete("gone").await.unwrap();
            }
            let before = ops(&store).await.len();

            let err = t.insert_many(vec![todo("a", "1"), todo("a", "2")]).await.unwrap_err();
            assert!(err.is_queue_conflict() && err.to_string().contains("already inserted"), "{err}");
            let err = t.insert_many(vec![todo("b", "1"), todo("pulled", "2")]).await.unwrap_err();
            assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
            let err = t.insert_many(vec![todo("c", "1"), todo(" ", "2")]).await.unwrap_err();
            assert!(matches!(err, Error::InvalidId { .. }), "{err:?}");
            assert_eq!(ops(&store).await.len(), before, "nothing of a failed batch stays");
            assert_eq!(t.get("a").await.unwrap(), None);

            let mut batch = vec![todo("", "made id"), todo("d", "given id")];
            if queued_before {
                batch.push(todo("gone", "back again"));
            }
            let stored = t.insert_many(batch).await.unwrap();
            assert_eq!(stored[0].id.len(), 36, "an empty id gets a UUID");
            assert_eq!(stored[1].id, "d");
            let q = ops(&store).await;
            let new: Vec<_> = q.iter().filter(|op| op.kind == OpKind::Insert).collect();
            assert_eq!(new.len(), 2);
            assert_eq!((new[0].item_id.as_str(), new[1].item_id.as_str()), (stored[0].id.as_str(), "d"));
            assert!(new.iter().all(|op| op.state == OpState::Pending && op.op_version == 1));
            assert_eq!(new[0].created_at, new[1].created_at, "one timestamp per transaction");
            if queued_before {
                // The queued delete and the re-insert collapse into one update that keeps
                // the server's version for its If-Match.
                assert_eq!((q.len(), q[0].kind, q[0].item_id.as_str()), (3, OpKind::Update, "gone"));
                assert_eq!(t.get("gone").await.unwrap().unwrap().version.as_deref(), Some("v7"));
            } else {
                assert_eq!(q.len(), 2);
            }
            assert!(store.check_integrity().await.unwrap().is_ok());
        }
    });
}

#[test]
fn multi_table_transaction_commits_or_rolls_back_together() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        store
            .transaction(|tx| {
                let item = tx.insert(todo("", "buy milk"))?;
                tx.insert(Tag { id: item.id, name: "shopping".into() })?;
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(store.pending_count().await.unwrap(), 2);
        let err = store
            .transaction(|tx| {
                tx.insert(todo("t2", "x"))?;
                tx.insert(Tag { id: "g2".into(), name: "y".into() })?;
                tx.delete::<TodoItem>("missing")
            })
            .await
            .unwrap_err();
        assert!(err.is_not_found());
        assert_eq!(store.pending_count().await.unwrap(), 2, "no op of the failed transaction remains");
        assert_eq!(store.table::<TodoItem>().await.unwrap().count_all().await.unwrap(), 1);
        assert_eq!(store.table::<Tag>().await.unwrap().count_all().await.unwrap(), 1);
        assert_eq!(store.pending_count_for("Tag").await.unwrap(), 1);
        let next = store.next_op().await.unwrap().unwrap();
        assert_eq!((next.table.as_str(), next.kind), ("TodoItem", OpKind::Insert));
    });
}

#[test]
fn queries_run_as_sql() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let t = store.table::<TodoItem>().await.unwrap();
        for (id, text, complete) in [("1", "b", false), ("2", "a", true), ("3", "c", false)] {
            t.insert(TodoItem { id: id.into(), text: text.into(), complete, version: None }).await.unwrap();
        }
        let f = TodoItem::FIELDS;
        let open = t.query().filter(f.complete.eq(false)).order_by(f.text.desc()).all().await.unwrap();
        assert_eq!(open.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["3", "1"]);
        assert_eq!(t.query().filter(f.text.is_in(["a", "c"])).count().await.unwrap(), 2);
        let first = t.fetch(&Query::new().order_by(f.text.asc()).limit(1).offset(1)).await.unwrap();
        assert_eq!(first[0].id, "1");
        assert!(t.has_pending().await.unwrap());
        assert_eq!(t.pending_count().await.unwrap(), 3);
    });
}

#[test]
fn integrity_check_finds_a_missing_row() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let t = store.table::<TodoItem>().await.unwrap();
        t.insert(todo("x", "a")).await.unwrap();
        assert!(store.check_integrity().await.unwrap().is_ok());
        store.call(|w| Ok(w.conn.execute("DELETE FROM \"TodoItem\"", [])?)).await.unwrap();
        let report = store.check_integrity().await.unwrap();
        assert_eq!(report.problems.len(), 1, "{report:?}");
        assert!(report.problems[0].contains("row is missing"));
    });
}

#[test]
fn public_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let t = store.table::<TodoItem>().await.unwrap();
        let fut = t.insert(todo("", "a"));
        assert_send(&fut);
        fut.await.unwrap();
        assert_send(&t.query().all());
        assert_send(&store.pending_ops());
        assert_send(&Store::open_in_memory());
        assert_send(&store.transaction(|_| Ok(())));
        // The calls that borrow their arguments.
        let (item, query) = (todo("x", "b"), Query::new());
        assert_send(&t.update(&item));
        assert_send(&t.get("x"));
        assert_send(&t.delete("x"));
        assert_send(&t.fetch(&query));
        assert_send(&t.count(&query));
        assert_send(&t.purge(&query));
    });
}

#[test]
fn a_panic_in_a_transaction_rolls_back_and_the_store_lives_on() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let t = store.table::<TodoItem>().await.unwrap();
        let s2 = store.clone();
        let handle = tokio::spawn(async move {
            s2.transaction(|tx| -> crate::Result<()> {
                tx.insert(todo("p", "a"))?;
                panic!("app bug");
            })
            .await
        });
        assert!(handle.await.unwrap_err().is_panic());
        assert_eq!(t.count_all().await.unwrap(), 0, "rolled back");
        assert!(ops(&store).await.is_empty());
        // The tables opened before the panic are still known: a push (which finds a
        // queued operation's table by name) can still send their operations.
        let known = store.transaction(|tx| Ok(tx.meta_by_name("TodoItem").is_some())).await.unwrap();
        assert!(known, "the panic kept the store's table registry");
        t.insert(todo("q", "b")).await.unwrap();
    });
}

// ---- files: schema migration and incompatible stores ----

mod v1 {
    #[derive(crate::SyncEntity, Clone, Debug, PartialEq)]
    #[sync(crate = "crate", table = "Note")]
    pub struct Note {
        pub id: String,
        pub title: String,
        pub stars: i64,
    }
}

mod v2 {
    #[derive(crate::SyncEntity, Clone, Debug, PartialEq)]
    #[sync(crate = "crate", table = "Note")]
    pub struct Note {
        pub id: String,
        pub title: String,
        pub stars: i64,
        pub color: Option<String>,
    }
}

mod retyped {
    #[derive(crate::SyncEntity, Clone, Debug, PartialEq)]
    #[sync(crate = "crate", table = "Note")]
    pub struct Note {
        pub id: String,
        pub title: String,
        pub stars: String,
    }
}

mod removed {
    #[derive(crate::SyncEntity, Clone, Debug, PartialEq)]
    #[sync(crate = "crate", table = "Note")]
    pub struct Note {
        pub id: String,
        pub title: String,
    }
}

mod required_added {
    #[derive(crate::SyncEntity, Clone, Debug, PartialEq)]
    #[sync(crate = "crate", table = "Note")]
    pub struct Note {
        pub id: String,
        pub title: String,
        pub stars: i64,
        pub pinned: bool,
    }
}

/// A digest of the file, to tell whether it changed.
pub(super) fn file_bytes(path: &std::path::Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::fs::read(path).unwrap().hash(&mut h);
    h.finish()
}

async fn open_table_err<E: sync_core::SyncEntity>(path: &std::path::Path) -> Error {
    let store = Store::open(path).await.unwrap();
    let err = store.table::<E>().await.unwrap_err();
    store.close().await.unwrap();
    err
}

#[test]
fn an_added_option_field_becomes_a_new_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    rt().block_on(async {
        let store = Store::open(&path).await.unwrap();
        let t = store.table::<v1::Note>().await.unwrap();
        t.insert(v1::Note { id: "n1".into(), title: "first".into(), stars: 3 }).await.unwrap();
        store.close().await.unwrap();
    });
    rt().block_on(async {
        let store = Store::open(&path).await.unwrap();
        let t = store.table::<v2::Note>().await.unwrap();
        let n = t.get("n1").await.unwrap().unwrap();
        assert_eq!(n, v2::Note { id: "n1".into(), title: "first".into(), stars: 3, color: None });
        t.insert(v2::Note { id: "n2".into(), title: "second".into(), stars: 1, color: Some("red".into()) })
            .await
            .unwrap();
        assert_eq!(store.pending_count().await.unwrap(), 2, "the queue survives the migration");
        store.close().await.unwrap();
    });
    rt().block_on(async {
        // Reopening with the same struct changes nothing.
        let store = Store::open(&path).await.unwrap();
        let t = store.table::<v2::Note>().await.unwrap();
        assert_eq!(t.count_all().await.unwrap(), 2);
    });
}

#[test]
fn retyped_removed_or_required_new_fields_are_refused_and_the_file_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    rt().block_on(async {
        let store = Store::open(&path).await.unwrap();
        let t = store.table::<v1::Note>().await.unwrap();
        t.insert(v1::Note { id: "n1".into(), title: "first".into(), stars: 3 }).await.unwrap();
        store.close().await.unwrap();
    });
    let before = file_bytes(&path);

    let err = rt().block_on(open_table_err::<retyped::Note>(&path));
    match &err {
        Error::SchemaMismatch { table, column, stored, declared } => {
            assert_eq!((table.as_str(), column.as_str()), ("Note", "stars"));
            assert_eq!((stored.as_str(), declared.as_str()), ("int", "string"));
        }
        other => panic!("expected a schema mismatch, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("Note") && msg.contains("stars") && msg.contains("int") && msg.contains("string"), "{msg}");

    let err = rt().block_on(open_table_err::<removed::Note>(&path));
    assert!(err.is_schema_mismatch() && err.to_string().contains("removed"), "{err}");

    let err = rt().block_on(open_table_err::<required_added::Note>(&path));
    assert!(err.is_schema_mismatch() && err.to_string().contains("pinned"), "{err}");

    assert_eq!(file_bytes(&path), before, "refused migrations leave the file untouched");
    rt().block_on(async {
        let store = Store::open(&path).await.unwrap();
        let t = store.table::<v1::Note>().await.unwrap();
        assert_eq!(t.get("n1").await.unwrap().unwrap().stars, 3);
        let other = store.clone();
        store.close().await.unwrap();
        assert!(matches!(other.pending_count().await, Err(Error::StoreClosed)), "closed for every handle");
    });
}

#[test]
fn a_store_from_a_newer_version_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    rt().block_on(async {
        let store = Store::open(&path).await.unwrap();
        store.table::<v1::Note>().await.unwrap();
        store.close().await.unwrap();
    });
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let before = file_bytes(&path);
    let err = rt().block_on(Store::open(&path)).unwrap_err();
    assert!(matches!(err, Error::IncompatibleStore { found: 99, supported: 1 }), "{err:?}");
    assert!(err.to_string().contains("newer version"), "{err}");
    assert_eq!(file_bytes(&path), before);
}

#[test]
fn files_are_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    rt().block_on(async {
        let store = Store::open(&path).await.unwrap();
        let mode: String =
            store.call(|w| Ok(w.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?)).await.unwrap();
        assert_eq!(mode, "wal");
    });
}

/// Two processes opening one new store file together (the todo CLI run twice at once):
/// the switch to WAL must wait for the other, not fail with "database is locked".
#[test]
fn stores_opening_one_new_file_together_all_open() {
    for round in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("app-{round}.db"));
        let stores = std::thread::scope(|scope| {
            let opens: Vec<_> = (0..6).map(|_| scope.spawn(|| rt().block_on(Store::open(&path)))).collect();
            opens.into_iter().map(|open| open.join().unwrap()).collect::<Vec<_>>()
        });
        for store in stores {
            let store = store.unwrap_or_else(|e| panic!("round {round}: {e:?}"));
            let mode: String =
                rt().block_on(store.call(|w| Ok(w.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?))).unwrap();
            assert_eq!(mode, "wal");
        }
    }
}

#[test]
fn op_kinds_and_states_read_back_their_stored_names() {
    for kind in OpKind::ALL {
        assert_eq!(kind.as_str().parse::<OpKind>(), Ok(kind));
    }
    for state in OpState::ALL {
        assert_eq!(state.to_string().parse::<OpState>(), Ok(state));
    }
    assert_eq!("upsert".parse::<OpKind>(), Err("unknown operation kind `upsert`".to_owned()));
    assert!("done".parse::<OpState>().is_err());
}

/// `is_in` with many values: the query runs (past SQLite's parameter limit), prints
/// for a server within the parser's limits, and is cloned and dropped on a 2 MiB thread
/// stack (a tokio worker's) without overflowing it.
#[test]
fn is_in_with_many_values_stays_shallow() {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| {
            rt().block_on(async {
                let store = Store::open_in_memory().await.unwrap();
                let todos = store.table::<TodoItem>().await.unwrap();
                let items: Vec<TodoItem> = (0..300).map(|i| todo(&format!("t{i:05}"), "x")).collect();
                todos.insert_many(items).await.unwrap();
                // More values than SQLite takes parameters (32,766).
                let ids: Vec<String> = (0..40_000).map(|i| format!("t{:05}", i * 7 % 40_000)).collect();
                let query = Query::new().filter(TodoItem::FIELDS.id.is_in(ids));
                let text =
                    sync_core::odata::print_filter(query.spec().filter.as_ref().unwrap(), crate::ProtocolVersion::V3);
                let parsed = sync_core::odata::parse_filter(&text, None).expect("the server's parser takes it");
                assert_eq!(&parsed, query.spec().filter.as_ref().unwrap());
                let found = todos.fetch(&query).await.unwrap();
                assert_eq!(found.len(), 300);
                drop((query, parsed));
            });
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn a_row_narrower_than_the_struct_is_a_decode_error_naming_the_field() {
    let meta = super::meta::TableMeta::new(
        <TodoItem as sync_core::SyncEntity>::TABLE,
        <TodoItem as sync_core::SyncEntity>::FIELD_DEFS,
    )
    .unwrap();
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    let mut stmt = conn.prepare("SELECT 'x', 'text'").unwrap();
    let err = stmt.query_row([], |r| Ok(meta.decode_sql_row::<TodoItem>(r))).unwrap().unwrap_err();
    assert!(
        matches!(&err, Error::Decode { source, .. } if source.field == "complete"),
        "the first field past the row's two columns: {err}"
    );
    assert!(matches!(&err, Error::Decode { id: Some(id), .. } if id == "x"), "the error names the row: {err:?}");
    assert!(err.to_string().contains("item `x`"), "{err}");
}

#[test]
fn one_query_shape_with_other_values_reads_its_own_rows() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let t = store.table::<TodoItem>().await.unwrap();
        for (id, text, complete) in [("a", "one", false), ("b", "two", true), ("c", "three", false)] {
            t.insert(TodoItem { complete, ..todo(id, text) }).await.unwrap();
        }
        // The second and third queries reuse the first's compiled SQL (same shape).
        let by = |complete: bool, after: &str| {
            Query::new()
                .filter(TodoItem::FIELDS.complete.eq(complete) & TodoItem::FIELDS.id.gt(after.to_owned()))
                .order_by(TodoItem::FIELDS.id.asc())
        };
        let ids = |items: Vec<TodoItem>| items.into_iter().map(|i| i.id).collect::<Vec<_>>();
        assert_eq!(ids(t.fetch(&by(false, "")).await.unwrap()), ["a", "c"]);
        assert_eq!(ids(t.fetch(&by(true, "")).await.unwrap()), ["b"]);
        assert_eq!(ids(t.fetch(&by(false, "a")).await.unwrap()), ["c"]);
        // With an offset, the offset is the query's own too.
        assert_eq!(ids(t.fetch(&by(false, "").offset(1)).await.unwrap()), ["c"]);
        assert_eq!(ids(t.fetch(&by(false, "").offset(0)).await.unwrap()), ["a", "c"]);
    });
}

/// A model with a timestamp finer than the store keeps, a view of the version, and a
/// local-only field: what a write returns is what a read gives back.
#[derive(crate::SyncEntity, Clone, Debug, PartialEq)]
#[sync(crate = "crate")]
struct Reading {
    id: String,
    at: time::OffsetDateTime,
    due: Option<time::OffsetDateTime>,
    value: f64,
    #[sync(version)]
    version: Option<String>,
    #[sync(local_only)]
    note: Option<String>,
}

fn reading(id: &str) -> Reading {
    // Nanoseconds, and an offset other than UTC.
    let at = time::macros::datetime!(2026-01-02 03:04:05.678_912_345 +01:00);
    Reading {
        id: id.into(),
        at,
        due: Some(at + time::Duration::nanoseconds(1)),
        value: 0.1,
        version: Some("made up by the app".into()),
        note: Some("local".into()),
    }
}

#[test]
fn what_a_write_returns_is_what_a_read_gives_back() {
    rt().block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let t = store.table::<Reading>().await.unwrap();

        // An empty table: `insert_many` takes its fast path.
        let many = t.insert_many(vec![reading("two"), reading(""), reading("three")]).await.unwrap();
        for item in &many {
            assert_eq!(Some(item), t.get(&item.id).await.unwrap().as_ref(), "insert_many: {}", item.id);
        }

        let one = t.insert(reading("one")).await.unwrap();
        assert_eq!(Some(&one), t.get("one").await.unwrap().as_ref());
        assert_eq!(one.at, time::macros::datetime!(2026-01-02 02:04:05.678 UTC), "UTC, milliseconds");
        assert_eq!(one.version, None, "the store keeps no version until a server sends one");
        assert_eq!(one.note.as_deref(), Some("local"));

        let (made, id) = store
            .transaction(|tx| {
                let made = tx.insert(reading(""))?;
                let read = tx.get::<Reading>(&made.id)?;
                assert_eq!(Some(&made), read.as_ref(), "inside the transaction");
                let id = made.id.clone();
                Ok((made, id))
            })
            .await
            .unwrap();
        assert_eq!(Some(made), t.get(&id).await.unwrap(), "after the commit");

        // The general path of `insert_many` (the table has queued operations) too.
        let later = t.insert_many(vec![reading("four")]).await.unwrap();
        assert_eq!(Some(&later[0]), t.get("four").await.unwrap().as_ref());
    });
}
