//! `todo watch`: runs the sync engine until SIGINT or SIGTERM, and prints the list and
//! the sync status each time they change (from any source: this process's engine, or
//! another process writing the same store file).
//!
//! With `--json`, one JSON object per line on stdout:
//! - `{"items": [...]}`: every item, done or not, in the `list --json` form, ordered by
//!   text then id; at start and whenever the list changes;
//! - `{"status": {"connected", "uploading", "downloading", "pending", "errors",
//!   "lastSyncedAt", "lastError"}}`: whenever one of those changes.

use std::io::Write as _;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use sync_runtime::SyncStatus;

use crate::Ctx;
use crate::failure::{Exit, Failure, Result};
use crate::model::TodoItem;

/// The status as `--json` prints it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusJson {
    connected: bool,
    uploading: bool,
    downloading: bool,
    pending: u64,
    errors: u64,
    last_synced_at: Option<String>,
    last_error: Option<String>,
}

impl StatusJson {
    /// The fields of `status` that `todo watch --json` prints.
    pub fn new(status: &SyncStatus) -> StatusJson {
        StatusJson {
            connected: status.connected,
            uploading: status.uploading,
            downloading: status.downloading,
            pending: status.pending,
            errors: status.errors,
            last_synced_at: status.last_synced_at.map(rfc3339),
            last_error: status.last_error.as_ref().map(|e| e.message.clone()),
        }
    }
}

/// A time as RFC 3339 in UTC, to the millisecond: `2026-12-02T11:59:00.123Z`.
pub fn rfc3339(at: SystemTime) -> String {
    sync_runtime::datetime::format(sync_runtime::time::OffsetDateTime::from(at))
}

/// `todo watch`.
pub async fn watch(ctx: &Ctx, poll: f64) -> Result<()> {
    if !(poll.is_finite() && poll > 0.0) {
        return Err(Failure::new("usage", format!("--poll {poll}: give a number of seconds above 0"))
            .hint("e.g. --poll 5 or --poll 0.5")
            .exit(Exit::Usage));
    }
    let server = ctx.server.as_deref().ok_or_else(|| Failure::no_server("watch"))?;
    let device = ctx.device().await?;
    let client = device.client(server, ctx.protocol, None)?;
    let engine = crate::sync::start_engine(&client, Duration::from_secs_f64(poll))?;
    let mut items = device.items_query(true).watch();
    let mut statuses = engine.statuses();
    let mut shown: Option<StatusJson> = None;
    let mut signals = Signals::new()?;
    loop {
        tokio::select! {
            () = signals.next() => break,
            next = items.next() => match next {
                Some(Ok(items)) => show_items(ctx, &items)?,
                Some(Err(e)) => return Err(e.into()),
                None => break,
            },
            next = statuses.next() => match next {
                Some(status) => {
                    let json = StatusJson::new(&status);
                    if shown.as_ref() != Some(&json) {
                        show_status(ctx, &json, &status)?;
                        shown = Some(json);
                    }
                }
                None => break,
            },
        }
    }
    engine.stop().await?;
    Ok(())
}

fn show_items(ctx: &Ctx, items: &[TodoItem]) -> Result<()> {
    if ctx.json {
        line(&serde_json::json!({ "items": crate::output::items_json(items) }))
    } else {
        let text = crate::output::items_text(items, &Default::default(), "  ");
        print_text(&format!("{}:\n{text}", crate::sync::plural(items.len() as u64, "item")))
    }
}

fn show_status(ctx: &Ctx, json: &StatusJson, status: &SyncStatus) -> Result<()> {
    if ctx.json {
        return line(&serde_json::json!({ "status": json }));
    }
    let mut text = String::from(if status.connected { "online" } else { "offline" });
    if status.uploading {
        text.push_str(", sending");
    }
    if status.downloading {
        text.push_str(", receiving");
    }
    text.push_str(&format!(", {} pending, {} to settle", status.pending, status.errors));
    if let Some(at) = &json.last_synced_at {
        text.push_str(&format!(", last sync {at}"));
    }
    if let Some(error) = &json.last_error {
        text.push_str(&format!(" ({error})"));
    }
    print_text(&format!("status: {text}\n"))
}

/// One JSON object and a newline, flushed: a reader sees each line as it is made.
fn line(value: &serde_json::Value) -> Result<()> {
    print_text(&format!("{value}\n"))
}

fn print_text(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// SIGINT and SIGTERM.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals> {
        Ok(Signals {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .map_err(|e| Failure::new("signal", format!("cannot listen for SIGTERM: {e}")))?,
        })
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = self.term.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
