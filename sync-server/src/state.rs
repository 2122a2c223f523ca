//! What every request handler shares: the served tables, the storage, the limits and
//! how callers are authenticated.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::Auth;
use crate::feed::{FeedSettings, Hub};
use crate::links::LinkSettings;
use crate::metrics::Metrics;
use crate::problem::{ApiError, clip};
use crate::storage::Storage;
use crate::table::TableDef;

/// Paging and size limits of a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Rows per page when the request has no `$top`.
    pub(crate) page_size: u64,
    /// The most rows one answer carries; a larger `$top` is capped.
    pub(crate) max_top: u64,
    /// The largest request body, in bytes (413 beyond).
    pub(crate) max_body: usize,
}

/// What every request handler shares.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) tables: HashMap<String, Arc<TableDef>>,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) limits: Limits,
    pub(crate) auth: Auth,
    pub(crate) links: LinkSettings,
    /// How long a handler waits for the whole request body (408 beyond).
    pub(crate) body_read_timeout: Duration,
    pub(crate) metrics: Arc<Metrics>,
    /// The change feed's hub; `None` when the feed is off.
    pub(crate) feed: Option<Arc<Hub>>,
    pub(crate) feed_settings: FeedSettings,
}

impl AppState {
    /// A table by URL name: exact, or else ignoring ASCII case (names are unique that way).
    pub(crate) fn table(&self, name: &str) -> Result<Arc<TableDef>, ApiError> {
        self.tables
            .get(name)
            .or_else(|| self.tables.values().find(|t| t.name.eq_ignore_ascii_case(name)))
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no table `{}`", clip(name))))
    }
}
