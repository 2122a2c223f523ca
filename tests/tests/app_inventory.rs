//! The app a new author writes: a three-table inventory (String, bool, i32, i64, f64,
//! Option, timestamps, bytes, uuid, JSON, renames, local-only fields, indexes), synced
//! over protocol v2 and v3 against a real `sync-server` whose columns are all nullable,
//! as servers of the protocol family have them. It names `time`, `uuid` and
//! `serde_json` only through `sync_runtime`, as an app with no dependency of its own
//! on them would.
//!
//! What the author tripped on, each checked here: a row another client posted with a
//! `null` where this app has a `String` stopped every later pull; `push()` offline
//! returned `Ok`; `insert` returned nanoseconds the store does not keep; `pull` took no
//! table query; the last push progress event had no bytes and no table.

use std::sync::{Arc, Mutex};

use sync_runtime::serde_json::{self, json};
use sync_runtime::time::{Duration, OffsetDateTime, UtcOffset};
use sync_runtime::uuid::Uuid;
use sync_runtime::{FieldRole, ProtocolVersion, RetryPolicy, Store, SyncClient, SyncEntity, SyncEvent, SyncPhase};
use sync_server::{Server, TableDef};

/// A place that holds stock.
#[derive(SyncEntity, Clone, Debug, PartialEq)]
#[sync(table = "Warehouse", rename_all = "camelCase")]
pub struct Warehouse {
    pub id: String,
    pub name: String,
    pub city_name: String,
    #[sync(index)]
    pub region_code: i32,
    pub open: bool,
    pub opened_at: OffsetDateTime,
    #[sync(version)]
    pub version: Option<String>,
}

/// A product, with one field of every kind.
#[derive(SyncEntity, Clone, Debug, PartialEq)]
#[sync(table = "Product", rename_all = "camelCase")]
pub struct Product {
    pub id: String,
    pub name: String,
    #[sync(index)]
    pub sku: Uuid,
    pub warehouse_id: String,
    pub stock: i32,
    pub total_sold: i64,
    pub price: f64,
    pub discontinued: bool,
    pub notes: Option<String>,
    pub photo: Vec<u8>,
    pub attributes: serde_json::Value,
    #[sync(rename = "restockedAt")]
    pub last_restock: Option<OffsetDateTime>,
    #[sync(local_only)]
    pub shelf_note: Option<String>,
    #[sync(updated_at)]
    pub updated_at: Option<OffsetDateTime>,
    #[sync(version)]
    pub version: Option<String>,
}

/// A change of stock.
#[derive(SyncEntity, Clone, Debug, PartialEq)]
#[sync(table = "StockMove", rename_all = "camelCase")]
pub struct StockMove {
    pub id: String,
    #[sync(index)]
    pub product_id: String,
    pub delta: i32,
    pub at: OffsetDateTime,
    pub reason: Option<String>,
}

/// What another client (written in another language, say) holds of a product: every
/// field optional, the SKU as text, the stock as a wide integer.
mod loose {
    use sync_runtime::SyncEntity;
    use sync_runtime::time::OffsetDateTime;

    #[derive(SyncEntity, Clone, Debug, PartialEq)]
    #[sync(table = "Product", rename_all = "camelCase")]
    pub struct Product {
        pub id: String,
        pub name: Option<String>,
        pub sku: Option<String>,
        pub warehouse_id: Option<String>,
        pub stock: Option<i64>,
        pub total_sold: Option<i64>,
        pub price: Option<f64>,
        pub discontinued: Option<bool>,
        pub notes: Option<String>,
        pub photo: Option<Vec<u8>>,
        pub attributes: Option<sync_runtime::serde_json::Value>,
        #[sync(rename = "restockedAt")]
        pub last_restock: Option<OffsetDateTime>,
        #[sync(version)]
        pub version: Option<String>,
    }
}

/// The server's table of an entity: its data columns, every one nullable.
fn nullable_table<E: SyncEntity>() -> TableDef {
    E::FIELD_DEFS
        .iter()
        .filter(|f| f.role == FieldRole::Data)
        .fold(TableDef::new(E::TABLE), |def, f| def.column(f.column, f.ty, true))
}

/// 2026-03-04T03:06:07Z plus `nanos`, written at +02:00.
fn at(nanos: i128) -> OffsetDateTime {
    let utc = OffsetDateTime::from_unix_timestamp_nanos(1_772_593_567 * 1_000_000_000 + nanos).unwrap();
    utc.to_offset(UtcOffset::from_hms(2, 0, 0).unwrap())
}

/// A nanosecond timestamp with an offset: what `OffsetDateTime::now_local()` gives.
fn fine_time() -> OffsetDateTime {
    at(123_456_789)
}

fn product(id: &str, name: &str, stock: i32) -> Product {
    Product {
        id: id.into(),
        name: name.into(),
        sku: Uuid::new_v4(),
        warehouse_id: "w1".into(),
        stock,
        total_sold: 1 << 40,
        price: 9.99,
        discontinued: false,
        notes: None,
        photo: vec![0, 159, 146, 150],
        attributes: json!({"color": "red", "sizes": [38, 39]}),
        last_restock: Some(fine_time()),
        shelf_note: Some("top shelf".into()),
        updated_at: None,
        version: None,
    }
}

/// A loose product that fits the strict struct, but for what `spoil` changes.
fn loose_product(id: &str, spoil: impl FnOnce(&mut loose::Product)) -> loose::Product {
    let mut p = loose::Product {
        id: id.into(),
        name: Some(format!("loose {id}")),
        sku: Some(Uuid::new_v4().to_string()),
        warehouse_id: Some("w1".into()),
        stock: Some(1),
        total_sold: Some(0),
        price: Some(1.5),
        discontinued: Some(false),
        notes: None,
        photo: Some(vec![1]),
        attributes: Some(json!({})),
        last_restock: None,
        version: None,
    };
    spoil(&mut p);
    p
}

/// A device of the app: a store and a client.
async fn device(dir: &std::path::Path, name: &str, url: &str, protocol: ProtocolVersion) -> (Store, SyncClient) {
    let store = Store::open(dir.join(format!("{name}.db"))).await.unwrap();
    let client = SyncClient::builder(store.clone(), url).protocol(protocol).retry(RetryPolicy::none()).build().unwrap();
    (store, client)
}

async fn run(protocol: ProtocolVersion) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::builder()
        .table_def(nullable_table::<Warehouse>())
        .table_def(nullable_table::<Product>())
        .table_def(nullable_table::<StockMove>())
        .database(format!("sqlite:{}", dir.path().join("server.db").display()).parse().unwrap())
        .build()
        .await
        .unwrap();
    let handle = server.spawn(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let url = format!("http://{}", handle.local_addr());

    // Device A: the app, with progress events.
    let events: Arc<Mutex<Vec<SyncEvent>>> = Arc::default();
    let seen = Arc::clone(&events);
    let store_a = Store::open(dir.path().join("a.db")).await.unwrap();
    let client_a = SyncClient::builder(store_a.clone(), url.as_str())
        .protocol(protocol)
        .retry(RetryPolicy::none())
        .on_progress(move |e| seen.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let warehouses = store_a.table::<Warehouse>().await.unwrap();
    let products = store_a.table::<Product>().await.unwrap();
    let moves = store_a.table::<StockMove>().await.unwrap();

    // What a write returns is what a read gives back: no nanoseconds, UTC.
    let w1 = warehouses
        .insert(Warehouse {
            id: "w1".into(),
            name: "Main".into(),
            city_name: "Lyon".into(),
            region_code: 69,
            open: true,
            opened_at: fine_time(),
            version: None,
        })
        .await
        .unwrap();
    assert_eq!(Some(&w1), warehouses.get("w1").await.unwrap().as_ref(), "{protocol}");
    assert_eq!(w1.opened_at, at(123_000_000).to_offset(UtcOffset::UTC), "UTC, milliseconds");
    let made = products.insert_many(vec![product("p1", "bolt", 10), product("p2", "nut", 0)]).await.unwrap();
    for p in &made {
        assert_eq!(Some(p), products.get(&p.id).await.unwrap().as_ref(), "{protocol}: insert_many");
    }
    let (moved, id) = store_a
        .transaction(|tx| {
            let moved = tx.insert(StockMove {
                id: String::new(),
                product_id: "p1".into(),
                delta: -2,
                at: fine_time() + Duration::nanoseconds(1),
                reason: None,
            })?;
            let id = moved.id.clone();
            Ok((moved, id))
        })
        .await
        .unwrap();
    assert_eq!(Some(moved), moves.get(&id).await.unwrap(), "{protocol}: a transaction's insert");

    // The push: every event carries its table and the bytes so far.
    let pushed = client_a.push().await.unwrap();
    assert_eq!((pushed.pushed, pushed.errors), (4, 0), "{protocol}: {pushed:?}");
    assert!(pushed.bytes > 0, "{protocol}: {pushed:?}");
    let events = std::mem::take(&mut *events.lock().unwrap());
    let push_events: Vec<&SyncEvent> = events.iter().filter(|e| e.phase == SyncPhase::Push).collect();
    let last = push_events.last().unwrap();
    assert!(last.finished && last.table == "StockMove" && last.bytes == pushed.bytes, "{protocol}: {last:?}");
    assert!(push_events.iter().all(|e| !e.table.is_empty() && e.bytes > 0), "{protocol}: {push_events:?}");
    assert!(push_events.windows(2).all(|w| w[0].bytes < w[1].bytes || w[1].finished), "{protocol}: {push_events:?}");

    // Another client posts rows that do not fit this app's struct.
    let (store_s, client_s) = device(dir.path(), "sloppy", &url, protocol).await;
    let sloppy = store_s.table::<loose::Product>().await.unwrap();
    sloppy.insert(loose_product("bad-null", |p| p.name = None)).await.unwrap();
    sloppy.insert(loose_product("bad-range", |p| p.stock = Some(1 << 40))).await.unwrap();
    sloppy.insert(loose_product("bad-uuid", |p| p.sku = Some("not a uuid".into()))).await.unwrap();
    sloppy.insert(loose_product("fine", |_| {})).await.unwrap();
    assert_eq!(client_s.push().await.unwrap().pushed, 4, "{protocol}");

    // Device B pulls the products still sold, by a table query with a query id: the
    // bad rows are set aside, the others applied, and the pull reports them.
    let (store_b, client_b) = device(dir.path(), "b", &url, protocol).await;
    let products_b = store_b.table::<Product>().await.unwrap();
    let active = || products_b.query().filter(Product::FIELDS.discontinued.eq(false));
    let report = client_b.pull(active(), Some("active")).await.unwrap();
    assert_eq!((report.received, report.applied, report.rejected), (6, 3, 3), "{protocol}: {report:?}");
    let rejected = products_b.rejected_rows().await.unwrap();
    let found: Vec<(&str, Option<&str>)> = rejected.iter().map(|r| (r.item_id.as_str(), r.field.as_deref())).collect();
    assert_eq!(
        found,
        [("bad-null", Some("name")), ("bad-range", Some("stock")), ("bad-uuid", Some("sku"))],
        "{protocol}"
    );
    assert_eq!(rejected[0].reason, "expected a string, found null", "{protocol}");
    assert!(rejected[1].reason.contains("1099511627776"), "{protocol}: {}", rejected[1].reason);
    assert!(rejected[2].reason.contains("not a uuid"), "{protocol}: {}", rejected[2].reason);
    assert_eq!(rejected[0].server_item["id"], "bad-null");
    assert!(!rejected[0].updated_at.is_empty() && rejected[0].table == "Product");
    assert_eq!(store_b.rejected_count().await.unwrap(), 3);
    assert_eq!(products_b.get("bad-null").await.unwrap(), None, "a rejected row is not stored");
    let all = products_b.query().order_by(Product::FIELDS.id.asc()).all().await.unwrap();
    let ids: Vec<String> = all.into_iter().map(|p| p.id).collect();
    assert_eq!(ids, ["fine", "p1", "p2"], "{protocol}");
    // The cursor moved on: the next pull neither fails nor fetches them again.
    let again = client_b.pull(active(), Some("active")).await.unwrap();
    assert_eq!((again.received, again.rejected), (0, 0), "{protocol}: {again:?}");

    // Fixed on the server, the row comes again, is applied, and its rejection goes.
    let mut fixed = sloppy.get("bad-null").await.unwrap().unwrap();
    fixed.name = Some("washer".into());
    sloppy.update(&fixed).await.unwrap();
    client_s.push().await.unwrap();
    let report = client_b.pull(active(), Some("active")).await.unwrap();
    assert_eq!((report.applied, report.rejected), (1, 0), "{protocol}: {report:?}");
    assert_eq!(products_b.get("bad-null").await.unwrap().unwrap().name, "washer");
    let left: Vec<String> = products_b.rejected_rows().await.unwrap().into_iter().map(|r| r.item_id).collect();
    assert_eq!(left, ["bad-range", "bad-uuid"], "{protocol}");
    assert!(products_b.clear_rejected_row("bad-range").await.unwrap());
    assert!(!products_b.clear_rejected_row("bad-range").await.unwrap());
    assert_eq!(products_b.clear_rejected_rows().await.unwrap(), 1);
    assert_eq!(store_b.rejected_count().await.unwrap(), 0);

    // Local-only fields stay local; the server's copy came back over the pushed rows.
    let p1 = products.get("p1").await.unwrap().unwrap();
    assert_eq!(p1.shelf_note.as_deref(), Some("top shelf"), "{protocol}");
    assert!(p1.version.is_some() && p1.updated_at.is_some(), "{protocol}: {p1:?}");
    let p1_b = products_b.get("p1").await.unwrap().unwrap();
    assert_eq!(p1_b.shelf_note, None, "{protocol}: never sent");
    assert_eq!((p1_b.sku, &p1_b.attributes, &p1_b.photo), (p1.sku, &p1.attributes, &p1.photo), "{protocol}");

    // Offline: a push is an error that keeps the queue and carries its report.
    handle.shutdown().await.unwrap();
    let mut p2 = products_b.get("p2").await.unwrap().unwrap();
    p2.stock = 5;
    products_b.update(&p2).await.unwrap();
    let err = client_b.push().await.unwrap_err();
    assert!(err.is_network() && err.is_push_cancelled(), "{protocol}: {err:?}");
    assert_eq!(err.push_report().map(|r| r.pushed), Some(0), "{protocol}");
    let err = client_b.sync::<Product>().await.unwrap_err();
    assert!(err.is_network(), "{protocol}: {err:?}");
    assert_eq!(store_b.pending_count().await.unwrap(), 1, "{protocol}: the update stays queued");
}

#[test]
fn an_inventory_app_syncs_over_v2() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(ProtocolVersion::V2));
}

#[test]
fn an_inventory_app_syncs_over_v3() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(ProtocolVersion::V3));
}
