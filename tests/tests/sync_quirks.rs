//! The client against a peer with the quirks real servers of this protocol family have
//! and our `sync-server` does not: bare-array pages capped below `$top` with malformed
//! `Link` headers, a 409 whose body echoes the client's own item, weak `W/` ETags, and
//! versions of any shape. This is the one place a server double is used; its filters
//! are evaluated with the runtime's own OData parser and evaluator.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value as Json, json};
use sync_runtime::query::eval;
use sync_runtime::{ConflictResolution, ProtocolVersion, Query, ServerWins, Store, SyncClient, Value};
use sync_tests::TodoItem;

const CAP: usize = 7;

#[derive(Default)]
struct Double {
    rows: Vec<Json>,
    counter: u64,
}

type Shared = Arc<Mutex<Double>>;

fn cell(row: &Json, column: &str) -> Value {
    match (column, row.get(column)) {
        ("updatedAt", Some(Json::String(s))) => {
            sync_core::datetime::parse(s).map_or(Value::String(s.clone()), Value::DateTime)
        }
        (_, Some(Json::String(s))) => Value::String(s.clone()),
        (_, Some(Json::Bool(b))) => Value::Bool(*b),
        (_, Some(Json::Number(n))) => n.as_i64().map_or(Value::Float(n.as_f64().unwrap_or(0.0)), Value::Int),
        _ => Value::Null,
    }
}

async fn list(State(state): State<Shared>, UrlQuery(params): UrlQuery<HashMap<String, String>>) -> Response {
    let filter =
        params.get("$filter").map(|f| sync_runtime::odata::parse_filter(f, None).expect("the client's filter parses"));
    let top: usize = params.get("$top").and_then(|t| t.parse().ok()).unwrap_or(50);
    let mut rows: Vec<Json> = state
        .lock()
        .unwrap()
        .rows
        .iter()
        .filter(|r| filter.as_ref().is_none_or(|f| eval::matches(f, &|c| cell(r, c))))
        .cloned()
        .collect();
    rows.sort_by(|a, b| {
        eval::compare_values(&cell(a, "updatedAt"), &cell(b, "updatedAt"))
            .then_with(|| eval::compare_values(&cell(a, "id"), &cell(b, "id")))
    });
    rows.truncate(top.min(CAP));
    let mut headers = HeaderMap::new();
    headers.insert(header::LINK, HeaderValue::from_static("<not a url; rel=next"));
    (headers, axum::Json(Json::Array(rows))).into_response()
}

async fn insert(State(state): State<Shared>, axum::Json(body): axum::Json<Json>) -> Response {
    let mut s = state.lock().unwrap();
    let id = body["id"].as_str().unwrap_or_default().to_owned();
    if s.rows.iter().any(|r| r["id"] == id.as_str()) {
        // The quirk: the conflict body is the client's own item, not the server's.
        return (StatusCode::CONFLICT, axum::Json(body)).into_response();
    }
    s.counter += 1;
    let mut row = body;
    row["version"] = json!(format!("AAAAAAAA{:03}w==", s.counter));
    row["updatedAt"] = json!(format!("2026-02-03T04:05:06.{:03}Z", s.counter));
    row["deleted"] = json!(false);
    s.rows.push(row.clone());
    (StatusCode::CREATED, axum::Json(row)).into_response()
}

async fn get_one(State(state): State<Shared>, Path((_, id)): Path<(String, String)>) -> Response {
    let s = state.lock().unwrap();
    match s.rows.iter().find(|r| r["id"] == id.as_str()) {
        Some(row) => {
            let etag = format!("W/\"{}\"", row["version"].as_str().unwrap_or_default());
            ([(header::ETAG, etag)], axum::Json(row.clone())).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn start(rows: Vec<Json>) -> (String, Shared) {
    let state: Shared = Arc::new(Mutex::new(Double { rows, counter: 100 }));
    let app = Router::new()
        .route("/tables/{table}", get(list).post(insert))
        .route("/tables/{table}/{id}", get(get_one))
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, state)
}

fn seeded(n: usize) -> Vec<Json> {
    (0..n)
        .map(|i| {
            json!({
                "id": format!("q{i:03}"),
                "text": format!("row {i}"),
                "complete": i % 2 == 0,
                // Three rows share each millisecond.
                "updatedAt": format!("2026-01-01T00:00:00.{:03}Z", i / 3),
                "version": format!("\"v{i}\""),
                "deleted": false,
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capped_bare_array_pages_with_malformed_links_are_read_whole() {
    let (url, _state) = start(seeded(30)).await;
    let store = Store::open_in_memory().await.unwrap();
    let client = SyncClient::builder(store.clone(), url).protocol(ProtocolVersion::V2).page_size(10).build().unwrap();
    let report = client.pull(Query::<TodoItem>::new(), Some("all")).await.unwrap();
    assert_eq!((report.received, report.applied), (30, 30));
    assert_eq!(report.pages, 6, "five capped pages of at most 7 rows, then an empty one");
    let items = store.table::<TodoItem>().await.unwrap().count_all().await.unwrap();
    assert_eq!(items, 30);
    // Versions of any shape (quotes included) are kept as sent.
    let one = store.table::<TodoItem>().await.unwrap().get("q004").await.unwrap().unwrap();
    assert_eq!(one.version.as_deref(), Some("\"v4\""));
    assert_eq!(client.pull(Query::<TodoItem>::new(), Some("all")).await.unwrap().received, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_409_echoing_the_client_item_fetches_the_real_server_copy() {
    let (url, _state) = start(seeded(3)).await;
    let store = Store::open_in_memory().await.unwrap();
    let todos = store.table::<TodoItem>().await.unwrap();
    todos.insert(TodoItem::new("q001", "my own version")).await.unwrap();

    // Without a handler: an error row whose server item is the server's real copy.
    let client = SyncClient::builder(store.clone(), url.clone()).build().unwrap();
    let report = client.push().await.unwrap();
    assert_eq!(report.errors, 1);
    let errors = todos.errors().await.unwrap();
    let server = errors[0].server_item.as_ref().expect("the copy fetched after the echo");
    assert_eq!((server.text.as_str(), server.version.as_deref()), ("row 1", Some("\"v1\"")));
    assert_eq!(errors[0].client_item.as_ref().unwrap().text, "my own version");

    // Sent again as it is, with "server wins": the fetched copy (weak ETag and all)
    // becomes the local row. (`resolve_retry_with` would overwrite: client wins.)
    todos.resolve_change_kind(&errors[0], sync_runtime::OpKind::Insert).await.unwrap();
    let client = SyncClient::builder(store.clone(), url).conflict_handler::<TodoItem>(ServerWins).build().unwrap();
    let report = client.push().await.unwrap();
    assert_eq!(report.conflicts[0].resolution, ConflictResolution::ServerWins);
    let row = todos.get("q001").await.unwrap().unwrap();
    assert_eq!((row.text.as_str(), row.version.as_deref()), ("row 1", Some("\"v1\"")));
    assert_eq!(store.pending_count().await.unwrap(), 0);
}
