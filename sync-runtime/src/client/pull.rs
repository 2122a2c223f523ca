//! `pull()` (DESIGN.md section 8).
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

use std::sync::Arc;
use std::time::Instant;

use reqwest::Method;

use crate::error::{Error, Result};
use crate::store::{Answered, PullCursor, ServerCopy, TableMeta, Tx};
use sync_core::ProtocolVersion;
use sync_core::Value;
use sync_core::odata;
use sync_core::query::{BinaryOp, Expr, Query};
use sync_core::system::{ID, UPDATED_AT};
use sync_core::{FieldRole, SyncEntity};

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
            Err(e @ Error::PushCancelled { .. }) => tracing::debug!(error = %e.with_sources(), "pulling after a cancelled push"),
            Err(e) => return Err(e),
        }
    }

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
        let mut rows = Vec::with_capacity(page.items.len());
        for item in &page.items {
            if !item.is_object() {
                return Err(Error::Protocol {
                    url: answer.url.clone(),
                    message: "a list item is not a JSON object".into(),
                });
            }
            let row = meta.row_from_json(item).map_err(|e| Error::Protocol {
                url: answer.url.clone(),
                message: format!("a row does not fit: {}", e.with_sources()),
            })?;
            // A value of the right JSON type may still not fit the field (2^31 for an
            // `i32`, other text for a `Uuid`); stored, it would make every query of the
            // table fail. Refuse the page instead (tombstones only delete).
            if !meta.is_deleted(&row) {
                meta.decode::<E>(&row).map_err(|e| Error::Protocol {
                    url: answer.url.clone(),
                    message: format!("a row does not fit: {}", e.with_sources()),
                })?;
            }
            let cursor = match (&row[0], meta.column_index(UPDATED_AT).map(|i| &row[i])) {
                (Value::String(id), Some(Value::String(at))) if !id.is_empty() => {
                    PullCursor { updated_at: at.clone(), id: id.clone() }
                }
                _ => {
                    return Err(Error::Protocol {
                        url: answer.url.clone(),
                        message: "a row lacks its `id` or `updatedAt`".into(),
                    });
                }
            };
            // A row at or before the position was already seen (a server with finer
            // timestamps than milliseconds can send one again): drop it.
            if position.as_ref().is_some_and(|p| !after(&cursor, p)) {
                continue;
            }
            position = Some(cursor.clone());
            rows.push((row, cursor));
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
        let (applied, deleted, skipped) =
            inner.store.transaction(move |tx| apply_page(tx, &meta2, rows, qid.as_deref(), was_skipping)).await?;
        report.applied += applied;
        report.deleted += deleted;
        report.skipped += skipped;
        skipped_any |= skipped > 0;
        inner.emit(SyncEvent {
            phase: SyncPhase::Pull,
            table: meta.name.to_owned(),
            done: report.received,
            total: None,
            bytes: report.bytes,
            elapsed: started.elapsed(),
            finished: false,
        });
        if page.last && (page.items.len() as u64) < u64::from(page_size) {
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
        "pull finished"
    );
    Ok(report)
}

/// Whether `a` comes after `b` in `(updatedAt, id)` order.
fn after(a: &PullCursor, b: &PullCursor) -> bool {
    match (sync_core::datetime::parse(&a.updated_at), sync_core::datetime::parse(&b.updated_at)) {
        (Some(x), Some(y)) if x != y => x > y,
        _ => a.id > b.id,
    }
}

/// Applies one page: upserts, tombstones, skips, and the cursor, in one transaction.
fn apply_page(
    tx: &mut Tx<'_>,
    meta: &TableMeta,
    rows: Vec<(Vec<Value>, PullCursor)>,
    query_id: Option<&str>,
    mut skipping: bool,
) -> Result<(u64, u64, u64)> {
    let (mut applied, mut deleted, mut skipped) = (0, 0, 0);
    let mut save: Option<PullCursor> = None;
    // One look at the queue for the whole page: when nothing of this table is queued
    // (the usual pull), no row needs a look of its own.
    let table_queued = tx.table_has_ops(meta.name)?;
    for (row, cursor) in rows {
        if table_queued && tx.item_has_ops(meta.name, &cursor.id)? {
            skipped += 1;
            skipping = true;
            continue;
        }
        match tx.apply_server_copy(meta, &cursor.id, row, Answered::NothingQueued)? {
            ServerCopy::Deleted => deleted += 1,
            // A tombstone of an item this store never had (or already deleted).
            ServerCopy::AlreadyGone => {}
            ServerCopy::Written | ServerCopy::ServerColumnsTaken => applied += 1,
        }
        if !skipping {
            save = Some(cursor);
        }
    }
    if let (Some(qid), Some(c)) = (query_id, save) {
        tx.save_pull_cursor(meta.name, qid, &c)?;
    }
    Ok((applied, deleted, skipped))
}
