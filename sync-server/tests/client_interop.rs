//! Our client against what servers of the protocol family do, over real HTTP on both
//! backends and both generations: an item deleted and created again, a server that
//! refuses a large `$top` instead of capping it, tombstones of items a device never had.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use common::{Backend, TodoItem, builder, send, start_on};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sync_runtime::{ConflictResolution, ProtocolVersion, Query, RetryPolicy, Store, SyncClient};

const BOTH: [ProtocolVersion; 2] = [ProtocolVersion::V2, ProtocolVersion::V3];

/// A device: an in-memory store and a client of `url`.
async fn device(url: &str, protocol: ProtocolVersion) -> (Store, SyncClient) {
    let store = Store::open_in_memory().await.unwrap();
    store.table::<TodoItem>().await.unwrap();
    let client = SyncClient::builder(store.clone(), url).protocol(protocol).retry(RetryPolicy::none()).build().unwrap();
    (store, client)
}

fn item(id: &str, text: &str) -> TodoItem {
    TodoItem { id: id.into(), text: text.into(), complete: false, draft: None, version: None }
}

async fn an_item_deleted_and_created_again_syncs(b: Backend) {
    let s = start_on(&b, builder()).await;
    for protocol in BOTH {
        let id = format!("again-{protocol}");
        let (store, client) = device(&s.url, protocol).await;
        let todos = store.table::<TodoItem>().await.unwrap();
        todos.insert(item(&id, "first")).await.unwrap();
        client.push().await.unwrap();
        todos.delete(&id).await.unwrap();
        let report = client.push().await.unwrap();
        assert_eq!((report.pushed, report.errors), (1, 0), "{protocol}: {report:?}");

        // The app creates the same id again: the server holds its tombstone.
        todos.insert(item(&id, "second")).await.unwrap();
        let report = client.push().await.unwrap();
        assert_eq!(
            (report.pushed, report.errors, store.pending_count().await.unwrap()),
            (1, 0, 0),
            "{protocol}: {report:?}"
        );
        let recreated = report.conflicts.iter().map(|c| c.resolution).collect::<Vec<_>>();
        assert_eq!(recreated, [ConflictResolution::Recreated], "{protocol}");
        let local = todos.get(&id).await.unwrap().unwrap();
        assert_eq!(local.text, "second");

        // The server serves it live, with the new data, at the version the device holds.
        let v = protocol.header_value();
        let (status, _, served) = send(s.req(v, Method::GET, &format!("/tables/TodoItem/{id}"))).await;
        assert_eq!(
            (status, served["text"].clone(), served["deleted"].clone()),
            (StatusCode::OK, json!("second"), json!(false))
        );
        assert_eq!(served["version"].as_str(), local.version.as_deref());

        // Another device sees it.
        let (other, other_client) = device(&s.url, protocol).await;
        other_client.pull(Query::<TodoItem>::new(), Some("all")).await.unwrap();
        let seen = other.table::<TodoItem>().await.unwrap().get(&id).await.unwrap().unwrap();
        assert_eq!(seen.text, "second", "{protocol}");
    }
    s.stop().await;
}

/// A proxy that answers as a server with `maxTop = 100` does that refuses a larger
/// `$top` with 400 (the Azure Mobile Apps Node server), and forwards everything else.
async fn refusing_large_pages(upstream: String) -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    #[derive(Clone)]
    struct Proxy {
        upstream: String,
        http: reqwest::Client,
        refused: Arc<AtomicUsize>,
    }
    async fn forward(State(p): State<Proxy>, request: Request) -> Response {
        let path_and_query = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let top = request
            .uri()
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("%24top=").or_else(|| kv.strip_prefix("$top="))))
            .and_then(|t| t.parse::<u64>().ok());
        if top.is_some_and(|t| t > 100) {
            p.refused.fetch_add(1, Ordering::SeqCst);
            let body = json!({"error": "The value of $top must be less than or equal to 100"});
            return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        }
        let mut upstream = p.http.request(request.method().clone(), format!("{}{path_and_query}", p.upstream));
        for (name, value) in request.headers() {
            if name != axum::http::header::HOST {
                upstream = upstream.header(name, value);
            }
        }
        let body = axum::body::to_bytes(request.into_body(), 1 << 20).await.unwrap_or_default();
        let answer = upstream.body(body).send().await.unwrap();
        let status = answer.status();
        let headers = answer.headers().clone();
        let mut response = (status, answer.bytes().await.unwrap_or_default()).into_response();
        for (name, value) in &headers {
            if name != axum::http::header::CONTENT_LENGTH && name != axum::http::header::TRANSFER_ENCODING {
                response.headers_mut().insert(name, value.clone());
            }
        }
        response
    }
    let refused = Arc::new(AtomicUsize::new(0));
    let proxy = Proxy { upstream, http: reqwest::Client::new(), refused: Arc::clone(&refused) };
    let app = Router::new().fallback(forward).with_state(proxy);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, refused, task)
}

async fn a_server_refusing_a_large_top_gets_smaller_pages(b: Backend) {
    let s = start_on(&b, builder()).await;
    for i in 0..230 {
        s.insert(common::V2, Some(&format!("p{i:03}")), "x").await;
    }
    let (url, refused, proxy) = refusing_large_pages(s.url.clone()).await;
    for protocol in BOTH {
        let (store, client) = device(&url, protocol).await;
        let before = refused.load(Ordering::SeqCst);
        let report = client.pull(Query::<TodoItem>::new(), Some("all")).await.unwrap();
        assert_eq!(report.received, 230, "{protocol}: {report:?}");
        assert_eq!(store.table::<TodoItem>().await.unwrap().count_all().await.unwrap(), 230);
        // 500 and 250 and 125 refused once each, then pages of 62 rows.
        assert_eq!(refused.load(Ordering::SeqCst) - before, 3, "{protocol}");
        assert!(report.pages >= 4, "{protocol}: {report:?}");
    }
    proxy.abort();
    s.stop().await;
}

async fn tombstones_count_as_deleted_only_for_rows_the_device_had(b: Backend) {
    let s = start_on(&b, builder()).await;
    for protocol in BOTH {
        let v = protocol.header_value();
        let (known, unknown) = (format!("known-{protocol}"), format!("unknown-{protocol}"));
        s.insert(v, Some(&known), "x").await;
        let (store, client) = device(&s.url, protocol).await;
        client.pull(Query::<TodoItem>::new(), Some("all")).await.unwrap();
        // Both deleted on the server; the device only ever had `known`.
        s.insert(v, Some(&unknown), "y").await;
        for id in [&known, &unknown] {
            let (status, _, _) = send(s.req(v, Method::DELETE, &format!("/tables/TodoItem/{id}"))).await;
            assert!(status.is_success(), "{status}");
        }
        let report = client.pull(Query::<TodoItem>::new(), Some("all")).await.unwrap();
        assert_eq!((report.received, report.deleted), (2, 1), "{protocol}: {report:?}");
        assert_eq!(store.table::<TodoItem>().await.unwrap().count_all().await.unwrap(), 0);
    }
    s.stop().await;
}

on_both_backends!(
    an_item_deleted_and_created_again_syncs,
    a_server_refusing_a_large_top_gets_smaller_pages,
    tombstones_count_as_deleted_only_for_rows_the_device_had
);
