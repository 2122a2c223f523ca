//! `todo status` (pending changes and recorded errors) and `todo resolve`.

use serde::Serialize;
use serde_json::{Value, json};
use sync_runtime::SyncError;

use crate::Ctx;
use crate::device::{Device, short_ids};
use crate::failure::{Failure, Result};
use crate::model::{ItemJson, TodoItem};
use crate::output::print_json;
use crate::sync::{self, Direction};

/// `todo status`.
pub async fn status(ctx: &Ctx) -> Result<()> {
    let device = ctx.device().await?;
    if ctx.json {
        return print_json(&status_json(&device).await?);
    }
    println!("store:  {}", ctx.store_path()?.display());
    match &ctx.server {
        Some(url) => println!("server: {url} (protocol {})", ctx.protocol),
        None => println!("server: none (set --server or TODO_SERVER to sync)"),
    }
    print!("{}", status_text(&device).await?);
    Ok(())
}

/// The JSON of `todo status`.
#[derive(Debug, Serialize)]
pub struct StatusJson {
    /// Queued changes, in push order.
    pub pending: Vec<PendingJson>,
    /// Changes the server refused, waiting to be settled.
    pub errors: Vec<ErrorJson>,
}

/// A queued change: `{kind, table, id, state}`.
#[derive(Debug, Serialize)]
pub struct PendingJson {
    /// `insert`, `update` or `delete`.
    pub kind: &'static str,
    /// The table.
    pub table: String,
    /// The item's id.
    pub id: String,
    /// `pending`, `attempted` or `failed`.
    pub state: &'static str,
}

/// A recorded error: `{id, kind, status, message, serverItem, clientItem}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorJson {
    /// The item's id.
    pub id: String,
    /// The refused change's kind.
    pub kind: &'static str,
    /// The HTTP status, `null` for failures without one.
    pub status: Option<u16>,
    /// What the server said.
    pub message: String,
    /// The server's copy (409/412), as an item when it reads as one.
    pub server_item: Option<ItemOrRaw>,
    /// The item as this device sent it.
    pub client_item: Option<ItemOrRaw>,
}

/// The status of a device, as `todo status --json` prints it.
pub async fn status_json(device: &Device) -> Result<StatusJson> {
    let pending = device
        .store
        .pending_ops()
        .await?
        .into_iter()
        .map(|op| PendingJson { kind: op.kind.as_str(), table: op.table, id: op.item_id, state: op.state.as_str() })
        .collect();
    let errors = device
        .todos
        .errors()
        .await?
        .into_iter()
        .map(|e| ErrorJson {
            server_item: item_value(e.server_item.as_ref(), e.record.server_item.as_ref()),
            client_item: item_value(e.client_item.as_ref(), e.record.client_item.as_ref()),
            id: e.record.item_id,
            kind: e.record.kind.as_str(),
            status: e.record.status,
            message: e.record.message,
        })
        .collect();
    Ok(StatusJson { pending, errors })
}

/// An item of an error: typed when it reads as a `TodoItem`, else as it was sent.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ItemOrRaw {
    /// `{id, text, complete, version, updatedAt}`.
    Item(ItemJson),
    /// Whatever JSON it was.
    Raw(Value),
}

fn item_value(typed: Option<&TodoItem>, raw: Option<&Value>) -> Option<ItemOrRaw> {
    match (typed, raw) {
        (Some(item), _) => Some(ItemOrRaw::Item(item.to_json())),
        (None, Some(raw)) => Some(ItemOrRaw::Raw(raw.clone())),
        (None, None) => None,
    }
}

fn describe(item: Option<&TodoItem>) -> String {
    match item {
        Some(item) => format!("{} {}", if item.complete { "[x]" } else { "[ ]" }, item.text),
        None => "(none)".into(),
    }
}

/// The text of `todo status`: pending changes, then errors with what to do.
pub async fn status_text(device: &Device) -> Result<String> {
    let ops = device.store.pending_ops().await?;
    let errors = device.todos.errors().await?;
    let ids: Vec<&str> =
        ops.iter().map(|o| o.item_id.as_str()).chain(errors.iter().map(|e| e.record.item_id.as_str())).collect();
    let short = short_ids(&ids, 8);
    let short_of = |id: &str| ids.iter().position(|i| *i == id).map_or_else(|| id.to_owned(), |p| short[p].clone());
    let mut text = String::new();
    if ops.is_empty() && errors.is_empty() {
        text.push_str("Everything is synced: no pending changes, no errors.\n");
        return Ok(text);
    }
    text.push_str(&format!("Pending changes: {}\n", ops.len()));
    for op in &ops {
        text.push_str(&format!("  {:<6}  {}  {:<9}  {}\n", op.kind, op.table, op.state, short_of(&op.item_id)));
    }
    text.push_str(&format!("Errors: {}\n", errors.len()));
    for e in &errors {
        let id = short_of(&e.record.item_id);
        let status = e.record.status.map_or_else(|| "no HTTP status".to_owned(), |s| format!("HTTP {s}"));
        if e.is_conflict() {
            // The message carries the server's item, shown below in a friendlier form.
            text.push_str(&format!(
                "  {id}  conflict: your {} met a newer version on the server ({status})\n",
                e.record.kind
            ));
        } else {
            let message: String = e.record.message.chars().take(200).collect();
            text.push_str(&format!("  {id}  refused: your {} got {status}: {message}\n", e.record.kind));
        }
        text.push_str(&format!("      yours:  {}\n", describe(e.client_item.as_ref())));
        text.push_str(&format!("      server: {}\n", describe(e.server_item.as_ref())));
        if e.record.server_item.is_some() {
            text.push_str(&format!("      settle: todo resolve {id} --mine    (send yours over the server's copy)\n"));
            text.push_str(&format!("              todo resolve {id} --theirs  (take the server's copy)\n"));
        } else {
            text.push_str(&format!(
                "      settle: todo resolve {id} --mine    (send it again, once the cause is fixed)\n"
            ));
            text.push_str(&format!("              todo rm {id}                (or drop the item)\n"));
        }
    }
    Ok(text)
}

/// The error of the item `id` (or of the only one whose id starts with it).
async fn find_error(device: &Device, id: &str) -> Result<SyncError<TodoItem>> {
    let mut errors = device.todos.errors().await?;
    if let Some(pos) = errors.iter().position(|e| e.record.item_id == id) {
        return Ok(errors.swap_remove(pos));
    }
    let mut matching: Vec<_> =
        errors.into_iter().filter(|e| !id.is_empty() && e.record.item_id.starts_with(id)).collect();
    match matching.len() {
        1 => Ok(matching.remove(0)),
        0 => {
            let known = device.find(id).await;
            match known {
                Ok(item) => Err(Failure::new(
                    "nothing-to-resolve",
                    format!("item `{}` has no conflict or refused change to settle", item.id),
                )
                .hint("`todo status` lists what waits to be settled")),
                Err(e) => Err(e),
            }
        }
        _ => Err(Failure::new("ambiguous-id", format!("more than one error is about an id starting with `{id}`"))
            .hint("give more of the id")),
    }
}

/// Which side of a conflict to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The local change, sent again over the server's version.
    Mine,
    /// The server's copy.
    Theirs,
}

/// Settles the error of one item. Returns the item's id.
pub async fn settle(device: &Device, id: &str, side: Side) -> Result<String> {
    let error = find_error(device, id).await?;
    let item_id = error.record.item_id.clone();
    match side {
        Side::Theirs => {
            if error.record.server_item.is_none() {
                return Err(Failure::new(
                    "no-server-copy",
                    format!("the server sent no copy of `{item_id}` with this error, so there is nothing to take"),
                )
                .hint(format!(
                    "use `todo resolve {item_id} --mine` to send yours again, or change or remove the item"
                )));
            }
            device.todos.resolve_take_server(&error).await?;
        }
        Side::Mine => {
            let local = match device.todos.get(&item_id).await? {
                Some(item) => item,
                None => error.client_item.clone().ok_or_else(|| {
                    Failure::new("no-local-copy", format!("there is no local copy of `{item_id}` to send"))
                        .hint(format!("use `todo resolve {item_id} --theirs` instead"))
                })?,
            };
            device.todos.resolve_retry_with(&error, local).await?;
        }
    }
    Ok(item_id)
}

/// `todo resolve ID --mine|--theirs`: settles, then (for `--mine`, with a server
/// configured) pushes.
pub async fn resolve(ctx: &Ctx, id: &str, side: Side) -> Result<()> {
    let device = ctx.device().await?;
    let item_id = settle(&device, id, side).await?;
    let resolution = match side {
        Side::Mine => "mine",
        Side::Theirs => "theirs",
    };
    let pushed = match (side, &ctx.server) {
        (Side::Mine, Some(server)) => {
            let client = device.client(server, ctx.protocol, crate::progress::sink())?;
            let outcome = sync::run(&device, &client, Direction::Push).await.map_err(|e| {
                let failure = Failure::from_sync(e, Some(server));
                Failure { message: format!("settled locally, but not pushed: {}", failure.message), ..failure }
            })?;
            Some(outcome)
        }
        _ => None,
    };
    if ctx.json {
        print_json(&json!({ "id": item_id, "resolution": resolution, "push": pushed }))?;
    } else {
        match (side, &pushed) {
            (Side::Theirs, _) => println!("took the server's copy of {item_id}"),
            (Side::Mine, Some(outcome)) => println!("kept your change to {item_id}; {}", outcome.summary()),
            (Side::Mine, None) => {
                println!("kept your change to {item_id}; `todo sync` sends it (no server is configured now)")
            }
        }
    }
    match pushed.and_then(|o| o.unsettled()) {
        Some(failure) => Err(failure),
        None => Ok(()),
    }
}
