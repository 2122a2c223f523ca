//! The model: the classic quickstart's `TodoItem`, shared by the client, the embedded
//! server and `todo serve`.

use serde::Serialize;
use sync_runtime::SyncEntity;

/// One todo item. Remote table `TodoItem`; `text` and `complete` on the wire, plus the
/// system columns the server keeps (shown here for `--json` output).
#[derive(SyncEntity, Clone, Debug, PartialEq)]
#[sync(table = "TodoItem")]
pub struct TodoItem {
    /// A lowercase UUID v4, made by the store on insert.
    pub id: String,
    /// What to do.
    pub text: String,
    /// Done or not.
    pub complete: bool,
    /// The server's version of the row (`None` until the first push or pull).
    #[sync(version)]
    pub version: Option<String>,
    /// When the server last changed the row, exactly as the server sent it.
    #[sync(updated_at)]
    pub updated_at: Option<String>,
}

impl TodoItem {
    /// A new item (the store makes its id).
    pub fn new(text: impl Into<String>) -> TodoItem {
        TodoItem { id: String::new(), text: text.into(), complete: false, version: None, updated_at: None }
    }

    /// The item as `--json` prints it: `{id, text, complete, version, updatedAt}`.
    pub fn to_json(&self) -> ItemJson {
        ItemJson {
            id: self.id.clone(),
            text: self.text.clone(),
            complete: self.complete,
            version: self.version.clone(),
            updated_at: self.updated_at.clone(),
        }
    }
}

/// The JSON shape of an item.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemJson {
    /// The id.
    pub id: String,
    /// What to do.
    pub text: String,
    /// Done or not.
    pub complete: bool,
    /// The server's version, `null` before the first sync.
    pub version: Option<String>,
    /// The server's `updatedAt`, `null` before the first sync.
    pub updated_at: Option<String>,
}
