//! `pull()`: fetch the server's rows of a query, page by page, into the local table.
//!
//! A pull pages through the server's rows in `(updatedAt, id)` order, asking each page
//! for the rows after the last one seen:
//! `(<filter>) and ((updatedAt gt T) or (updatedAt eq T and id gt I))`. It never uses
//! `$skip`, `nextLink` or `Link` headers, so servers that cap pages, send no links or
//! malformed ones, or answer with a bare array or a wrapped object are all read the
//! same way, and no row is skipped or read twice however many share one millisecond.
//!
//! Each page is applied in one transaction, together with the saved cursor (for a pull
//! with a query id). Rows whose item has a queued operation are skipped, so local
//! edits are kept; the saved cursor then stays before the first skipped row, so the
//! next pull looks at it again once the operation is settled.
//!
//! A row that does not fit the struct (the server's columns are nullable and looser
//! than the struct's fields: another client may have written `null` where this one
//! has a `String`) is set aside as a rejected row, with its field and the reason, and
//! the pull goes on past it: one bad row must not stop every later pull. Only a row
//! the pull cannot place (no `id` or `updatedAt`) fails the pull.

use std::sync::Arc;
use std::time::Instant;

use reqwest::Method;

use crate::ChangeOrigin;
use crate::error::{Error, Result};
use crate::store::{Answered, PullCursor, Rejection, ServerCopy, TableMeta, Tx};
use sync_core::ProtocolVersion;
use sync_core::Value;
use sync_core::odata;
use sync_core::query::{BinaryOp, Expr, Query};
use sync_core::system::{ID, UPDATED_AT};
use sync_core::{FieldRole, SyncEntity};

use super::engine::Stop;
use super::http::Request;
use super::progress::{SyncEvent, SyncPhase};
use super::{ClientInner, SyncClient};

/// The query id [`SyncClient::sync`] pulls with.
pub(crate) const DEFAULT_QUERY_ID: &str = "__all";

/// What a pull did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PullReport {
    /// Rows received from the server.
    pub received: u64,
    /// Rows written locally (inserted or updated).
    pub applied: u64,
    /// Rows deleted locally (server tombstones of rows the store had; a tombstone of an
    /// item the store never had counts in `received` only).
    pub deleted: u64,
    /// Rows skipped because their item has a queued local operation.
    pub skipped: u64,
    /// Rows set aside because they do not fit the struct (see
    /// [`Table::rejected_rows`](crate::Table::rejected_rows)); the pull applied the
    /// others and moved past them.
    pub rejected: u64,
    /// Pages fetched (the last one is empty or short).
    pub pages: u64,
    /// Bytes received.
    pub bytes: u64,
}

fn columns_in(expr: &Expr, out: &mut Vec<String>) {
    match expr {
        Expr::Column(name) => out.push(name.clone()),
        Expr::Literal(_) => {}
        Expr::Not(inner) => columns_in(inner, out),
        Expr::Binary { left, right, .. } => {
            columns_in(left, out);
            columns_in(right, out);
        }
        Expr::Call { args, .. } => args.iter().for_each(|a| columns_in(a, out)),
    }
}

fn cursor_filter(cursor: &PullCursor) -> Result<Expr> {
    let t = sync_core::datetime::parse(&cursor.updated_at).ok_or_else(|| Error::Protocol {
        url: String::new(),
        message: format!("the server's updatedAt `{}` is not an RFC 3339 timestamp", cursor.updated_at),
    })?;
    let at = || Expr::column(UPDATED_AT);
    let lit = || Expr::literal(Value::DateTime(t));
    Ok(Expr::binary(
        BinaryOp::Or,
        Expr::binary(BinaryOp::Gt, at(), lit()),
        Expr::binary(
            BinaryOp::And,
            Expr::binary(BinaryOp::Eq, at(), lit()),
            Expr::binary(BinaryOp::Gt, Expr::column(ID), Expr::literal(Value::String(cursor.id.clone()))),
        ),
    ))
}

/// One page of a list answer: a bare array, `{"results": [..]}` (v2) or
/// `{"items": [..], "nextLink": ..}` (v3).
struct Page {
    items: Vec<serde_json::Value>,
    /// The answer said there is no next page (a v3 `nextLink: null`).
    last: bool,
}

fn parse_page(body: &[u8], url: &str) -> Result<Page> {
    let protocol = |message: String| Error::Protocol { url: url.to_owned(), message };
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| protocol(format!("the list answer is not JSON: {e}")))?;
    match json {
        serde_json::Value::Array(items) => Ok(Page { items, last: false }),
        serde_json::Value::Object(mut map) => {
            let last = matches!(map.get("nextLink"), Some(serde_json::Value::Null));
            for key in ["items", "results", "value"] {
                if let Some(serde_json::Value::Array(items)) = map.remove(key) {
                    return Ok(Page { items, last });
                }
            }
            Err(protocol("the list answer has no `items` or `results` array".into()))
        }
        _ => Err(protocol("the list answer is neither an array nor an object".into())),
    }
}

/// The fewest rows a pull asks for in one page when a server refuses larger pages.
const MIN_PAGE: u32 = 10;

/// The longest URL a pull sends: the `http` crate's limit for a URI.
const MAX_URL_BYTES: usize = 65_534;

pub(crate) async fn pull<E: SyncEntity>(
    client: &SyncClient,
    inner: &ClientInner,
    query: Query<E>,
    query_id: Option<&str>,
) -> Result<PullReport> {
    pull_until(client, inner, query, query_id, None).await
}

/// The pull, ending with [`Error::Stopped`] before the next page once `stop` is set (the
/// sync engine's stop): every page applied so far stays applied, its cursor saved.
pub(crate) async fn pull_until<E: SyncEntity>(
    client: &SyncClient,
    inner: &ClientInner,
    query: Query<E>,
    query_id: Option<&str>,
    stop: Option<&Stop>,
) -> Result<PullReport> {
    let started = Instant::now();
    let table = inner.store.table::<E>().await?;
    let meta = Arc::clone(table.meta());
    let user_filter = query.into_spec().filter;
    if let Some(filter) = &user_filter {
        let mut cols = Vec::new();
        columns_in(filter, &mut cols);
        for c in cols {
            if meta.column_index(&c).is_some_and(|i| meta.columns[i].role == FieldRole::LocalOnly) {
                return Err(Error::InvalidQuery(format!(
                    "column `{c}` of `{}` is local-only: a pull filter cannot use it",
                    meta.name
                )));
            }
        }
    }
    if table.has_pending().await? {
        // The pull runs whether or not the push got through the queue: rows of items
        // still queued are skipped, so no local edit is overwritten.
        match client.push().await {
            Ok(pushed) => tracing::debug!(pushed = pushed.pushed, "pushed before pulling"),
            Err(e @ Error::PushCancelled { .. }) => {
                tracing::debug!(error = %e.with_sources(), "pulling after a cancelled push")
            }
            Err(e) => return Err(e),
        }
    }

    // Pulls of one store take turns (the engine's and the app's own): two pulls of one
    // query would apply the same pages and move its cursor back and forth.
    let _turn = inner.store.pull_turn().await;
    let query_id = query_id.map(str::to_owned);
    let mut position = match &query_id {
        Some(qid) => inner.store.pull_cursor(meta.name, qid).await?,
        None => None,
    };
    let mut report = PullReport::default();
    let mut skipped_any = false;
    // Some servers refuse a `$top` above their maximum with 400 (the Azure Mobile Apps
    // Node server, below its default `maxTop`) instead of capping it: a refused page is
    // asked again with half the rows, down to `MIN_PAGE`, and the pull goes on at that
    // size.
    let mut page_size = inner.page_size;
    loop {
        if stop.is_some_and(Stop::is_set) {
            tracing::info!(table = meta.name, received = report.received, "pull stopped: the sync engine stops");
            return Err(Error::Stopped);
        }
        let filter = match (&user_filter, &position) {
            (Some(f), Some(c)) => Some(Expr::binary(BinaryOp::And, f.clone(), cursor_filter(c)?)),
            (Some(f), None) => Some(f.clone()),
            (None, Some(c)) => Some(cursor_filter(c)?),
            (None, None) => None,
        };
        let mut url = inner.table_url(meta.name, None);
        {
            let mut q = url.query_pairs_mut();
            if let Some(f) = &filter {
                q.append_pair("$filter", &odata::print_filter(f, inner.protocol));
            }
            q.append_pair("$orderby", "updatedAt,id");
            q.append_pair("$top", &page_size.to_string());
            match inner.protocol {
                ProtocolVersion::V2 => q.append_pair("__includeDeleted", "true"),
                ProtocolVersion::V3 => q.append_pair("__includedeleted", "true"),
            };
        }
        if url.as_str().len() > MAX_URL_BYTES {
            // The HTTP stack refuses such a request line ("not a valid Uri"), which would
            // read as a network failure.
            return Err(Error::InvalidQuery(format!(
                "the pull's filter makes a URL of {} bytes, more than an HTTP request can carry ({MAX_URL_BYTES}); \
                 pull with a shorter filter (fewer `is_in` values) in several pulls",
                url.as_str().len()
            )));
        }
        let answer = inner.send(&Request { method: Method::GET, url, if_match: None, body: None }).await?;
        if answer.status == 400 && page_size > MIN_PAGE {
            page_size = (page_size / 2).max(MIN_PAGE);
            tracing::debug!(page_size, message = %answer.message(), "the server refused the page; asking for fewer rows");
            continue;
        }
        if !answer.is_success() {
            return Err(Error::Http { url: answer.url.clone(), status: answer.status, message: answer.message() });
        }
        report.pages += 1;
        report.bytes += answer.body.len() as u64;
        let page = parse_page(&answer.body, &answer.url)?;
        if page.items.is_empty() {
            break;
        }
        let page_len = page.items.len() as u64;
        let mut rows = Vec::with_capacity(page.items.len());
        for item in page.items {
            let (pulled, cursor) = read_item::<E>(&meta, item, &answer.url)?;
            // A row at or before the position was already seen (a server with finer
            // timestamps than milliseconds can send one again): drop it.
            if position.as_ref().is_some_and(|p| !after(&cursor, p)) {
                continue;
            }
            position = Some(cursor.clone());
            rows.push((pulled, cursor));
        }
        if rows.is_empty() {
            return Err(Error::Protocol {
                url: answer.url.clone(),
                message: "the page holds no row after the last one seen: the server ignored the paging filter or `$orderby=updatedAt,id`".into(),
            });
        }
        let count = rows.len() as u64;
        report.received += count;
        let meta2 = Arc::clone(&meta);
        let qid = query_id.clone();
        let was_skipping = skipped_any;
        let applied = inner
            .store
            .transaction_as(ChangeOrigin::Pull, move |tx| apply_page(tx, &meta2, rows, qid.as_deref(), was_skipping))
            .await?;
        report.applied += applied.applied;
        report.deleted += applied.deleted;
        report.skipped += applied.skipped;
        report.rejected += applied.rejected;
        skipped_any |= applied.skipped > 0;
        inner.emit(SyncEvent {
            phase: SyncPhase::Pull,
            table: meta.name.to_owned(),
            done: report.received,
            total: None,
            bytes: report.bytes,
            elapsed: started.elapsed(),
            finished: false,
        });
        if page.last && page_len < u64::from(page_size) {
            break;
        }
    }
    inner.emit(SyncEvent {
        phase: SyncPhase::Pull,
        table: meta.name.to_owned(),
        done: report.received,
        total: Some(report.received),
        bytes: report.bytes,
        elapsed: started.elapsed(),
        finished: true,
    });
    tracing::info!(
        table = meta.name,
        received = report.received,
        applied = report.applied,
        deleted = report.deleted,
        skipped = report.skipped,
        rejected = report.rejected,
        "pull finished"
    );
    Ok(report)
}

/// A server row as a pull takes it: one that fits the struct (a full row, column
/// order), or one set aside.
enum Pulled {
    Fits(Vec<Value>),
    Rejected(Rejection),
}

/// Reads one list item: its place in `(updatedAt, id)` order, and the row, or why it
/// does not fit `E`. Only an item without a place (not an object, no `id` or
/// `updatedAt` text) fails the pull: a pull cannot move past what it cannot place.
fn read_item<E: SyncEntity>(meta: &TableMeta, item: serde_json::Value, url: &str) -> Result<(Pulled, PullCursor)> {
    let text = |key: &str| item.get(key).and_then(serde_json::Value::as_str).map(str::to_owned);
    let (id, updated_at) = match (&item, text(ID), text(UPDATED_AT)) {
        (serde_json::Value::Object(_), Some(id), Some(at)) if !id.is_empty() => (id, at),
        (serde_json::Value::Object(_), ..) => {
            return Err(Error::Protocol { url: url.to_owned(), message: "a row lacks its `id` or `updatedAt`".into() });
        }
        _ => return Err(Error::Protocol { url: url.to_owned(), message: "a list item is not a JSON object".into() }),
    };
    let pulled = match fitting_row::<E>(meta, &id, &item) {
        Ok(row) => Pulled::Fits(row),
        Err(e) => {
            let (field, reason) = match e {
                Error::Decode { source, .. } => (Some(source.field), source.message),
                Error::InvalidValue { column, reason, .. } => (meta.field_of_column(&column), reason),
                Error::InvalidId { reason, .. } => (meta.field_of_column(ID), reason.to_owned()),
                other => (None, other.with_sources()),
            };
            tracing::warn!(table = meta.name, id = %id, ?field, %reason, "a pulled row does not fit: set aside");
            Pulled::Rejected(Rejection { field, reason, item })
        }
    };
    Ok((pulled, PullCursor { updated_at, id }))
}

/// The row of a server item, checked as the store will check it when it writes it: it
/// reads as an `E` (a value of the right JSON type may still not fit the field: 2^31
/// for an `i32`, other text for a `Uuid`, a `null` for a field that is not an
/// `Option`), and its id and values are ones the store holds. A tombstone only deletes:
/// whatever else it carries is not read.
fn fitting_row<E: SyncEntity>(meta: &TableMeta, id: &str, item: &serde_json::Value) -> Result<Vec<Value>> {
    if item.get(sync_core::system::DELETED) == Some(&serde_json::Value::Bool(true)) {
        return Ok(meta.tombstone_row(id));
    }
    let row = meta.row_from_json(item)?;
    meta.decode::<E>(&row)?;
    crate::store::validate_id(meta.name, id)?;
    meta.validate_row(&row)?;
    Ok(row)
}

/// Whether `a` comes after `b` in `(updatedAt, id)` order.
fn after(a: &PullCursor, b: &PullCursor) -> bool {
    match (sync_core::datetime::parse(&a.updated_at), sync_core::datetime::parse(&b.updated_at)) {
        (Some(x), Some(y)) if x != y => x > y,
        _ => a.id > b.id,
    }
}

/// What applying one page did.
struct Applied {
    applied: u64,
    deleted: u64,
    skipped: u64,
    rejected: u64,
}

/// Applies one page: upserts, tombstones, skips, rejected rows, and the cursor, in one
/// transaction.
fn apply_page(
    tx: &mut Tx<'_>,
    meta: &TableMeta,
    rows: Vec<(Pulled, PullCursor)>,
    query_id: Option<&str>,
    mut skipping: bool,
) -> Result<Applied> {
    let mut done = Applied { applied: 0, deleted: 0, skipped: 0, rejected: 0 };
    let mut save: Option<PullCursor> = None;
    // One look at the queue and at the rejected rows for the whole page: when nothing
    // of this table is queued or set aside (the usual pull), no row needs a look of
    // its own.
    let table_queued = tx.table_has_ops(meta.name)?;
    let mut table_rejected = tx.table_has_rejected(meta.name)?;
    for (pulled, cursor) in rows {
        if table_queued && tx.item_has_ops(meta.name, &cursor.id)? {
            done.skipped += 1;
            skipping = true;
            continue;
        }
        match pulled {
            Pulled::Fits(row) => {
                match tx.apply_server_copy(meta, &cursor.id, row, Answered::NothingQueued)? {
                    ServerCopy::Deleted => done.deleted += 1,
                    // A tombstone of an item this store never had (or already deleted).
                    ServerCopy::AlreadyGone => {}
                    ServerCopy::Written | ServerCopy::ServerColumnsTaken => done.applied += 1,
                }
                if table_rejected {
                    // A version of the row that fits: the earlier one is settled.
                    tx.clear_rejected(meta.name, &cursor.id)?;
                }
            }
            Pulled::Rejected(rejection) => {
                tx.reject_row(meta.name, &cursor.id, &cursor.updated_at, &rejection)?;
                table_rejected = true;
                done.rejected += 1;
            }
        }
        if !skipping {
            save = Some(cursor);
        }
    }
    if let (Some(qid), Some(c)) = (query_id, save) {
        tx.save_pull_cursor(meta.name, qid, &c)?;
    }
    Ok(done)
}
