//! One device: its local store, its `TodoItem` table, and (when a server is known) its
//! sync client.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sync_runtime::{ProtocolVersion, Store, SyncClient, Table, TableQuery};

use crate::failure::{Failure, Result, chain};
use crate::model::TodoItem;

/// The application's name in the user's data directory.
const APP: &str = "todo";

/// The store file when neither `--db` nor `TODO_DB` names one.
pub fn default_store_path() -> Result<PathBuf> {
    data_dir().map(|dir| dir.join("todo.db"))
}

/// The server's database for `todo serve` when `--db` names none.
pub fn default_server_path() -> Result<PathBuf> {
    data_dir().map(|dir| dir.join("todo-server.db"))
}

fn data_dir() -> Result<PathBuf> {
    let dirs = directories::ProjectDirs::from("", "", APP).ok_or_else(|| {
        Failure::new("store", "cannot find your data directory (no home directory?)")
            .hint("give --db FILE or set TODO_DB")
    })?;
    let dir = dirs.data_dir().to_path_buf();
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::new("store", format!("cannot create {}: {e}", dir.display())).hint("give --db FILE"))?;
    Ok(dir)
}

/// A local store with its todo table.
#[derive(Clone, Debug)]
pub struct Device {
    /// The store.
    pub store: Store,
    /// The `TodoItem` table.
    pub todos: Table<TodoItem>,
}

impl Device {
    /// Opens (or creates) the store in `path`; refuses a server's database.
    pub async fn open(path: &Path) -> Result<Device> {
        if file_kind(path) == FileKind::ServerDatabase {
            return Err(Failure::new(
                "store",
                format!("{} is a server's database (`todo serve`), not a device's store", path.display()),
            )
            .hint("give another file with --db (or TODO_DB); `todo serve --db FILE` serves that one"));
        }
        let store = Store::open(path).await.map_err(|e| {
            let failure = Failure::from(e);
            Failure::new("store", format!("cannot open the store {}: {}", path.display(), failure.message))
                .hint(failure.hint.unwrap_or_else(|| "check the path given with --db or TODO_DB".into()))
        })?;
        let todos = store.table::<TodoItem>().await?;
        Ok(Device { store, todos })
    }

    /// A private store in memory (gone at the end of the process).
    pub async fn in_memory() -> Result<Device> {
        let store = Store::open_in_memory().await?;
        let todos = store.table::<TodoItem>().await?;
        Ok(Device { store, todos })
    }

    /// A sync client of this store for `server`.
    pub fn client(
        &self,
        server: &str,
        protocol: ProtocolVersion,
        progress: Option<crate::progress::Sink>,
    ) -> Result<SyncClient> {
        let mut builder = SyncClient::builder(self.store.clone(), server)
            .protocol(protocol)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30));
        if let Some(sink) = progress {
            builder = builder.on_progress(sink);
        }
        builder.build().map_err(|e| match e {
            e @ sync_runtime::Error::Config { .. } => Failure::new("bad-url", chain(&e))
                .hint("give an http:// or https:// URL, e.g. --server http://127.0.0.1:8080"),
            other => Failure::from_sync(other, Some(server)),
        })
    }

    /// Every item ordered by text (then id); with `all == false`, only those not done.
    pub async fn items(&self, all: bool) -> Result<Vec<TodoItem>> {
        Ok(self.items_query(all).all().await?)
    }

    /// The query of [`Device::items`], to run or to watch.
    pub fn items_query(&self, all: bool) -> TableQuery<TodoItem> {
        let mut query = self.todos.query();
        if !all {
            query = query.filter(TodoItem::FIELDS.complete.eq(false));
        }
        query.order_by(TodoItem::FIELDS.text.asc()).order_by(TodoItem::FIELDS.id.asc())
    }

    /// Every item ordered by id: what two synced replicas compare.
    pub async fn items_by_id(&self) -> Result<Vec<TodoItem>> {
        Ok(self.todos.query().order_by(TodoItem::FIELDS.id.asc()).all().await?)
    }

    /// What a list shows beside items that are not in sync: "not synced" for a pending
    /// change, "conflict" or "refused" for one the server turned down.
    pub async fn marks(&self) -> Result<HashMap<String, &'static str>> {
        let mut marks = HashMap::new();
        for op in self.todos.pending_ops().await? {
            marks.insert(op.item_id, "not synced");
        }
        for error in self.todos.errors().await? {
            let mark = if error.is_conflict() { "conflict: see `todo status`" } else { "refused: see `todo status`" };
            marks.insert(error.record.item_id, mark);
        }
        Ok(marks)
    }

    /// The item whose id is `id`, or else the only one whose id starts with it.
    pub async fn find(&self, id: &str) -> Result<TodoItem> {
        if id.is_empty() {
            return Err(Failure::unknown_id(id));
        }
        if let Some(item) = self.todos.get(id).await? {
            return Ok(item);
        }
        let mut found = self.todos.query().filter(TodoItem::FIELDS.id.starts_with(id)).limit(2).all().await?;
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(Failure::unknown_id(id)),
            _ => Err(Failure::new("ambiguous-id", format!("more than one item has an id starting with `{id}`"))
                .hint("give more of the id")),
        }
    }
}

/// What an existing SQLite file holds, as far as `todo` cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// No file, an empty one, or one that is neither of the below.
    Other,
    /// A device's store: it has the operations queue.
    Store,
    /// A server's database: a `TodoItem` table and no operations queue.
    ServerDatabase,
}

/// Looks at a file before it is opened as a store or served, so that neither is
/// mistaken for the other (`todo --db FILE serve` names the store's option, too).
pub fn file_kind(path: &Path) -> FileKind {
    if !path.is_file() {
        return FileKind::Other;
    }
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let Ok(conn) = rusqlite::Connection::open_with_flags(path, flags) else { return FileKind::Other };
    let has = |table: &str| {
        conn.query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", [table], |_| Ok(())).is_ok()
    };
    if has(sync_runtime::system::OPERATIONS_TABLE) {
        FileKind::Store
    } else if has(<TodoItem as sync_runtime::SyncEntity>::TABLE) {
        FileKind::ServerDatabase
    } else {
        FileKind::Other
    }
}

/// The shortest prefix of each id, at least `min` long, that no other id shares.
pub fn short_ids(all: &[&str], min: usize) -> Vec<String> {
    all.iter()
        .map(|id| {
            let mut len = min.min(id.len());
            while !id.is_char_boundary(len) {
                len += 1;
            }
            while len < id.len() && all.iter().any(|other| other != id && other.starts_with(&id[..len])) {
                len += 1;
                while !id.is_char_boundary(len) {
                    len += 1;
                }
            }
            id[..len].to_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::short_ids;

    #[test]
    fn short_ids_are_unique_prefixes() {
        let ids = ["abcdef12-1", "abcdef12-2", "0123456789", "x"];
        assert_eq!(short_ids(&ids, 8), ["abcdef12-1", "abcdef12-2", "01234567", "x"]);
    }
}
