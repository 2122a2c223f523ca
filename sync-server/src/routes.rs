//! The HTTP surface: `/tables/{t}` and `/tables/{t}/{id}` for both protocol generations
//! (chosen per request by `ZUMO-API-VERSION`), `/feed` (the change feed, `feed/`),
//! `/healthz`, `/metrics`, authentication,
//! and a `tracing` span, a log line, metrics and an `x-request-id` for every request.
//!
//! Every table handler begins with the request preamble as extractors (protocol, table,
//! owner: [`crate::preamble`]).
//!
//! Owned tables: every handler works for the caller's `sub` ([`Owner`]). A list gets
//! `<owner column> eq '<sub>'` ANDed to its filter as an AST node (so no `$filter` can
//! reach around it); one-row calls pass the owner to the storage, which keys rows by
//! `(owner, id)`, so another user's row is a 404 like a missing one.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use serde::Serialize;
use sync_core::query::{BinaryOp, Expr, QuerySpec};
use sync_core::system::DELETED;
use sync_core::{ProtocolVersion, Value};
use tracing::Instrument as _;

use crate::body::JsonBody;
use crate::feed::{FEED_HEADER, FEED_PATH};
use crate::feed_stream;
use crate::links::Links;
use crate::list;
use crate::metrics::Route;
use crate::preamble::{Item, ItemWriteProtocol, Owner, Protocol, QueryPairs, Table};
use crate::problem::{ApiError, clip};
use crate::state::AppState;
use crate::storage::{Change, ListQuery, Row, StorageError, Update};
use crate::table::TableDef;
use crate::wire::{self, BodyKind, ItemJson, Prop};

type Shared = State<Arc<AppState>>;

/// The request id header: echoed on every answer (see [`log_requests`]).
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let collection: MethodRouter<Arc<AppState>> = get(list_items).post(insert_item).fallback(|| async {
        ApiError::method_not_allowed("use GET (list) or POST (insert) on /tables/{table}", "GET, POST")
    });
    let item: MethodRouter<Arc<AppState>> =
        get(get_item).patch(update_item).put(update_item).delete(delete_item).post(undelete_item).fallback(|| async {
            ApiError::method_not_allowed(
                "use GET, PATCH (v2), PUT (v3), DELETE or POST (v2 undelete) on /tables/{table}/{id}",
                "GET, PATCH, PUT, DELETE, POST",
            )
        });
    let authenticated = || middleware::from_fn_with_state(Arc::clone(&state), authenticate);
    let mut api = Router::new()
        .route("/tables/{table}", collection)
        .route("/tables/{table}/{id}", item)
        .route_layer(authenticated());
    if state.feed.is_some() {
        // Tells clients of the feed without a probe: on every /tables answer, 401s too.
        api = api.route_layer(middleware::map_response(|mut response: Response| async move {
            response.headers_mut().insert(FEED_HEADER, HeaderValue::from_static(FEED_PATH));
            response
        }));
        let feed =
            get(feed_stream::feed).fallback(|| async { ApiError::method_not_allowed("use GET on /feed", "GET") });
        api = api.merge(Router::new().route(FEED_PATH, feed).route_layer(authenticated()));
    }
    // Only the routes above need a token: health checks, metrics and 404s do not.
    api.route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("no such resource; tables are served under /tables/{table}") })
        .layer(middleware::from_fn(crate::problem::shape_for_protocol))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), log_requests))
        .with_state(state)
}

/// Puts the caller ([`crate::auth::Caller`]) into the request, or answers 401 (400 for a
/// `sub` the storage cannot hold). A token signed by a key the server does not know yet
/// refreshes the identity provider's key set (at a bounded rate) and is checked again.
async fn authenticate(State(state): Shared, mut request: Request, next: Next) -> Response {
    state.auth.refresh_stale_keys().await;
    let mut checked = state.auth.authenticate(request.headers());
    if checked.as_ref().err().is_some_and(|refused| refused.wants_new_keys()) && state.auth.refresh_keys().await {
        checked = state.auth.authenticate(request.headers());
    }
    match checked {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(refused) => refused.into_response(),
    }
}

// ---- protocol helpers -------------------------------------------------------------

/// `If-Match` on a write.
enum IfMatch {
    /// No header: the body's `version`, if any, is checked instead (409 on mismatch).
    Absent,
    /// `*`: any existing item.
    Any,
    /// A version: 412 on mismatch.
    Version(String),
}

/// Reads `If-Match: "<version>"` (quotes optional). `If-Match` compares entity-tags
/// strongly (RFC 9110 section 13.1.1), and a weak tag never matches strongly: a
/// `W/"<version>"` is kept whole as the expected version, which no stored version equals
/// (versions are hex digits), so the write gets 412 with the current item, as the
/// reference servers answer.
fn if_match(headers: &HeaderMap) -> Result<IfMatch, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(IfMatch::Absent);
    };
    let text = value.to_str().map_err(|_| ApiError::bad_request("If-Match is not valid text"))?.trim();
    if text == "*" {
        return Ok(IfMatch::Any);
    }
    if text.starts_with("W/") {
        return Ok(IfMatch::Version(text.to_owned()));
    }
    let text = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text);
    if text.is_empty() {
        return Err(ApiError::bad_request("If-Match is empty; expected \"<version>\" or *"));
    }
    Ok(IfMatch::Version(text.to_owned()))
}

/// The version `If-Match` names, for a delete or an undelete (`*` and none take any).
fn if_match_version(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    Ok(match if_match(headers)? {
        IfMatch::Version(v) => Some(v),
        IfMatch::Any | IfMatch::Absent => None,
    })
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], bytes).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize an answer");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "cannot serialize the answer").into_response()
        }
    }
}

/// A single item with its `ETag`.
fn item_response(status: StatusCode, table: &TableDef, row: &Row, version: ProtocolVersion) -> Response {
    let props = wire::default_props(table, version);
    let mut response = json_response(status, &ItemJson { table, row, props: &props });
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", row.version)) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

/// The answer for a tombstone where the item was expected: v3 says Gone, v2 Not Found.
fn deleted_error(version: ProtocolVersion, table: &TableDef, id: &str) -> ApiError {
    let message = format!("the item `{}` of table `{}` is deleted", clip(id), table.name);
    match version {
        ProtocolVersion::V2 => ApiError::not_found(message),
        ProtocolVersion::V3 => ApiError::new(StatusCode::GONE, message),
    }
}

fn missing_error(table: &TableDef, id: &str) -> ApiError {
    ApiError::not_found(format!("table `{}` has no item with id `{}`", table.name, clip(id)))
}

/// The outcome of a write for the client, when it is not a success.
fn write_error(
    e: StorageError,
    version: ProtocolVersion,
    table: &TableDef,
    id: &str,
    mismatch_status: StatusCode,
) -> Response {
    match e {
        StorageError::NotFound => missing_error(table, id).into_response(),
        StorageError::Deleted(_) => deleted_error(version, table, id).into_response(),
        StorageError::VersionMismatch(row) => item_response(mismatch_status, table, &row, version),
        StorageError::AlreadyExists(row) => item_response(StatusCode::CONFLICT, table, &row, version),
        other => ApiError::storage(other).into_response(),
    }
}

/// Tells the change feed that a write to `table` committed: for an owned table, to a
/// row of `owner`.
fn committed(state: &AppState, table: &TableDef, owner: Option<&str>) {
    if let Some(hub) = &state.feed {
        hub.publish(&table.name, owner.filter(|_| table.owner_column.is_some()));
    }
}

// ---- handlers ---------------------------------------------------------------------

async fn healthz(State(state): Shared) -> Response {
    match state.storage.health().await {
        Ok(()) => json_response(StatusCode::OK, &serde_json::json!({ "status": "ok" })),
        Err(e) => ApiError::storage(e).into_response(),
    }
}

/// `GET /metrics`: the Prometheus text format (see [`crate::metrics`]).
async fn metrics(State(state): Shared) -> Response {
    let text = state.metrics.render(state.storage.pool_use());
    let content_type = HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8");
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], text).into_response()
}

/// Rows of a v2 or v3 list answer.
struct Items<'a> {
    table: &'a TableDef,
    rows: &'a [Row],
    props: &'a [Prop],
}

impl Serialize for Items<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.rows.iter().map(|row| ItemJson { table: self.table, row, props: self.props }))
    }
}

#[derive(Serialize)]
struct V2Page<'a> {
    results: Items<'a>,
    count: u64,
}

#[derive(Serialize)]
struct V3Page<'a> {
    items: Items<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
    #[serde(rename = "nextLink")]
    next_link: Option<String>,
}

async fn list_items(
    State(state): Shared,
    Protocol(version): Protocol,
    Table(table): Table,
    Owner(owner): Owner,
    QueryPairs(pairs): QueryPairs,
    links: Links,
    uri: Uri,
) -> Result<Response, ApiError> {
    let opts = list::parse(&pairs, &table, version)?;

    let limits = state.limits;
    let limit = opts.top.unwrap_or(limits.page_size).min(limits.max_top);
    let mut filter = opts.filter;
    if table.soft_delete && !opts.include_deleted {
        let live = Expr::binary(BinaryOp::Eq, Expr::column(DELETED), Expr::literal(Value::Bool(false)));
        filter = Some(match filter {
            Some(f) => Expr::binary(BinaryOp::And, f, live),
            None => live,
        });
    }
    if let (Some(column), Some(owner)) = (&table.owner_column, owner) {
        let mine = Expr::binary(BinaryOp::Eq, Expr::column(column.as_str()), Expr::literal(Value::String(owner)));
        filter = Some(match filter {
            Some(f) => Expr::binary(BinaryOp::And, f, mine),
            None => mine,
        });
    }
    // One row more than the page, to know whether there is a next page.
    let spec =
        QuerySpec { filter, order_by: opts.order_by, limit: Some(limit.saturating_add(1)), offset: Some(opts.skip) };
    let page = state
        .storage
        .list(Arc::clone(&table), ListQuery { spec, count: opts.count })
        .await
        .map_err(ApiError::storage)?;

    let mut rows = page.rows;
    let more = rows.len() as u64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let returned = rows.len() as u64;
    // With `$top`, the client asked for that many in total: the next page carries the rest.
    let remaining = opts.top.map(|top| top.saturating_sub(returned));
    let next = (more && remaining != Some(0))
        .then(|| list::next_link(&links.page(uri.path()), &pairs, opts.skip.saturating_add(returned), remaining));

    let props = opts.select.unwrap_or_else(|| wire::default_props(&table, version));
    let items = Items { table: &table, rows: &rows, props: &props };
    let response = match version {
        ProtocolVersion::V2 => {
            let mut response = match page.count {
                Some(count) => json_response(StatusCode::OK, &V2Page { results: items, count }),
                None => json_response(StatusCode::OK, &items),
            };
            // Without angle brackets, as the reference servers write it: the family's
            // clients split the header with `^(.*?);\s*rel\s*=\s*(\w+)\s*$` and take the
            // left side as the URL.
            if let Some(link) = next.and_then(|l| HeaderValue::from_str(&format!("{l}; rel=next")).ok()) {
                response.headers_mut().insert(header::LINK, link);
            }
            response
        }
        ProtocolVersion::V3 => json_response(StatusCode::OK, &V3Page { items, count: page.count, next_link: next }),
    };
    Ok(response)
}

async fn get_item(
    State(state): Shared,
    Protocol(version): Protocol,
    Item { table, id }: Item,
    Owner(owner): Owner,
    QueryPairs(pairs): QueryPairs,
) -> Result<Response, ApiError> {
    let include_deleted = list::include_deleted(&pairs)?;
    match state.storage.get(Arc::clone(&table), id.clone(), owner).await.map_err(ApiError::storage)? {
        None => Err(missing_error(&table, &id)),
        Some(row) if row.deleted && !include_deleted => Err(deleted_error(version, &table, &id)),
        Some(row) => Ok(item_response(StatusCode::OK, &table, &row, version)),
    }
}

async fn insert_item(
    State(state): Shared,
    Protocol(version): Protocol,
    Table(table): Table,
    Owner(owner): Owner,
    links: Links,
    uri: Uri,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let item = wire::parse_item(&table, &body, BodyKind::Insert(version))?;
    let id = item.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // A served owner column is set to the caller by the storage, whatever the body says.
    let values: Vec<Value> = item.values.into_iter().map(|v| v.unwrap_or(Value::Null)).collect();
    match state.storage.write(Arc::clone(&table), id.clone(), Change::Insert { values }, owner.clone()).await {
        Ok(row) => {
            committed(&state, &table, owner.as_deref());
            let mut response = item_response(StatusCode::CREATED, &table, &row, version);
            let mut location = links.location(uri.path());
            location.push('/');
            list::encode(&row.id, &mut location);
            if let Ok(location) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            Ok(response)
        }
        Err(e) => Ok(write_error(e, version, &table, &id, StatusCode::PRECONDITION_FAILED)),
    }
}

/// v2 `PATCH` (partial) and v3 `PUT` (full item; with `deleted: false` and
/// `__includedeleted=true`, an undelete).
async fn update_item(
    State(state): Shared,
    ItemWriteProtocol(version): ItemWriteProtocol,
    Item { table, id }: Item,
    Owner(owner): Owner,
    QueryPairs(pairs): QueryPairs,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let kind = match version {
        ProtocolVersion::V2 => BodyKind::Patch,
        ProtocolVersion::V3 => BodyKind::Put,
    };
    let item = wire::parse_item(&table, &body, kind)?;
    if let Some(body_id) = &item.id {
        if *body_id != id {
            return Err(ApiError::bad_request(format!(
                "the body's id `{}` does not match the URL's id `{}`",
                clip(body_id),
                clip(&id)
            )));
        }
    }
    // If-Match wins (412 on mismatch); without it, in v2, a `version` in the body is
    // checked (409 on mismatch: the client edited a stale copy). v3 ignores it.
    let (expected_version, mismatch_status) = match if_match(&headers)? {
        IfMatch::Version(v) => (Some(v), StatusCode::PRECONDITION_FAILED),
        IfMatch::Any => (None, StatusCode::PRECONDITION_FAILED),
        IfMatch::Absent if version == ProtocolVersion::V2 => (item.version, StatusCode::CONFLICT),
        IfMatch::Absent => (None, StatusCode::PRECONDITION_FAILED),
    };
    let values: Vec<(usize, Value)> = match kind {
        BodyKind::Put => item.values.into_iter().enumerate().map(|(i, v)| (i, v.unwrap_or(Value::Null))).collect(),
        _ => item.values.into_iter().enumerate().filter_map(|(i, v)| v.map(|v| (i, v))).collect(),
    };
    // The owner column never changes: the storage ignores a client's value for it.
    let undelete = item.undelete && list::include_deleted(&pairs)?;
    let update = Update { values, expected_version, undelete };
    match state.storage.write(Arc::clone(&table), id.clone(), Change::Update(update), owner.clone()).await {
        Ok(row) => {
            committed(&state, &table, owner.as_deref());
            Ok(item_response(StatusCode::OK, &table, &row, version))
        }
        Err(e) => Ok(write_error(e, version, &table, &id, mismatch_status)),
    }
}

async fn delete_item(
    State(state): Shared,
    Protocol(version): Protocol,
    Item { table, id }: Item,
    Owner(owner): Owner,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let change = Change::Delete { expected_version: if_match_version(&headers)?, soft: table.soft_delete };
    match state.storage.write(Arc::clone(&table), id.clone(), change, owner.clone()).await {
        Ok(row) => Ok({
            committed(&state, &table, owner.as_deref());
            match version {
                ProtocolVersion::V2 => item_response(StatusCode::OK, &table, &row, version),
                ProtocolVersion::V3 => StatusCode::NO_CONTENT.into_response(),
            }
        }),
        Err(e) => Ok(write_error(e, version, &table, &id, StatusCode::PRECONDITION_FAILED)),
    }
}

/// v2 `POST /tables/{t}/{id}`: undelete. (v3 undeletes with `PUT` and `deleted: false`.)
async fn undelete_item(
    State(state): Shared,
    ItemWriteProtocol(version): ItemWriteProtocol,
    Item { table, id }: Item,
    Owner(owner): Owner,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let change = Change::Undelete { expected_version: if_match_version(&headers)? };
    match state.storage.write(Arc::clone(&table), id.clone(), change, owner.clone()).await {
        Ok(row) => {
            // (An undelete of a live row changes nothing, but answers as if it did: it
            // nudges too, costing subscribers a pull that finds nothing.)
            committed(&state, &table, owner.as_deref());
            Ok(item_response(StatusCode::OK, &table, &row, version))
        }
        Err(e) => Ok(write_error(e, version, &table, &id, StatusCode::PRECONDITION_FAILED)),
    }
}

// ---- logging ----------------------------------------------------------------------

/// Runs every request inside a `request` span (with its id, method and path), logs its
/// status and time, counts it in the metrics, answers its id in `x-request-id`, and
/// turns a panic in a handler into a 500 instead of a dropped connection.
///
/// The id is the request's own `x-request-id` when that is sane (1 to 64 characters of
/// `A-Z a-z 0-9 - _ . : /`, so a proxy's or a client's id carries through into the logs),
/// else a new UUID.
async fn log_requests(State(state): Shared, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let route = Route::of(&path);
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| is_sane_request_id(id))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let span = tracing::info_span!("request", id = %id, %method, %path);
    let start = Instant::now();
    let mut response = async {
        let response = match (CatchUnwind { inner: Box::pin(next.run(request)) }).await {
            Ok(response) => response,
            Err(_) => {
                tracing::error!("request handler panicked");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
            }
        };
        let status = response.status().as_u16();
        let elapsed = start.elapsed();
        tracing::info!(status, elapsed_ms = elapsed.as_secs_f64() * 1000.0, "request");
        state.metrics.request_done(route, &method, status, elapsed);
        response
    }
    .instrument(span)
    .await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

fn is_sane_request_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b))
}

/// Polls a future, catching a panic.
struct CatchUnwind<F> {
    inner: Pin<Box<F>>,
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.get_mut().inner;
        match catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}
