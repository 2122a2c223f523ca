//! The benchmarked entity, and raw SQLite on the store's own schema and pragmas.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use sync_runtime::odata::FilterSchema;
use sync_runtime::{ColumnType, FieldRole, Store, SyncEntity};

/// A todo-like item: two data columns of text and integer, a flag, and the version.
#[derive(SyncEntity, Clone, Debug, PartialEq)]
#[sync(table = "BenchItem")]
pub struct Item {
    /// The id.
    pub id: String,
    /// Some text (about 30 bytes).
    pub title: String,
    /// A unique number, indexed: the query filters and orders on it.
    #[sync(index)]
    pub rank: i64,
    /// Done or not (one item in three is done).
    pub done: bool,
    /// The server's version.
    #[sync(version)]
    pub version: Option<String>,
}

impl Item {
    /// The `i`-th item of a data set of `n`, with an id unique to `prefix`.
    pub fn nth(prefix: &str, i: usize, n: usize) -> Item {
        Item {
            id: format!("{prefix}-{i:08}"),
            title: format!("item number {i} of the benchmark"),
            rank: scramble(i, n),
            done: i % 3 == 0,
            version: None,
        }
    }

    /// Items `0..n` of a data set.
    pub fn many(prefix: &str, n: usize) -> Vec<Item> {
        (0..n).map(|i| Item::nth(prefix, i, n)).collect()
    }
}

/// A permutation of `0..n` (multiplication by a prime that does not divide `n`), so
/// ranks are unique but not in insertion order.
fn scramble(i: usize, n: usize) -> i64 {
    const PRIME: u128 = 1_000_003;
    let n = n.max(1) as u128;
    let p = if n % PRIME == 0 { 999_983 } else { PRIME };
    ((i as u128 * p) % n) as i64
}

/// The table's name (local and on the server).
pub const TABLE: &str = Item::TABLE;

/// The local table's columns in the store's order: `id`, data columns, then the system
/// columns.
pub const LOCAL_COLUMNS: [&str; 8] = ["id", "title", "rank", "done", "version", "updatedAt", "createdAt", "deleted"];

/// The store's column types for compiling a query with [`sync_core::sql::select`]
/// (the raw `query` baseline runs exactly the SQL the store runs).
#[derive(Debug)]
pub struct ItemSchema;

impl FilterSchema for ItemSchema {
    fn column(&self, name: &str) -> Option<(ColumnType, bool)> {
        match name {
            "id" => Some((ColumnType::String, false)),
            "version" | "updatedAt" | "createdAt" => Some((ColumnType::String, true)),
            "deleted" => Some((ColumnType::Bool, false)),
            _ => Item::FIELD_DEFS
                .iter()
                .find(|d| d.column == name && d.role == FieldRole::Data)
                .map(|d| (d.ty, d.nullable)),
        }
    }
}

/// Creates a store file with `Item`'s table (and the store's system tables), through
/// the store itself, then closes it: a raw baseline then writes to exactly the store's
/// schema.
pub async fn create_store_file(path: &Path) -> sync_runtime::Result<()> {
    let store = Store::open(path).await?;
    store.table::<Item>().await?;
    store.close().await
}

/// Opens a raw connection with the pragmas of the store's own connection
/// (`sync-runtime/src/store/mod.rs`, `open_connection`): WAL, `synchronous=NORMAL`,
/// `foreign_keys=OFF`, a 5 s busy timeout.
pub fn open_raw(path: &Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    assert!(mode.eq_ignore_ascii_case("wal"), "the raw connection is not in WAL mode");
    conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF;")?;
    Ok(conn)
}

/// The raw insert of a local row: the app's columns, system columns empty.
pub const RAW_INSERT_ROW: &str = "INSERT INTO \"BenchItem\" (\"id\", \"title\", \"rank\", \"done\", \"version\", \
     \"updatedAt\", \"createdAt\", \"deleted\") VALUES (?1, ?2, ?3, ?4, NULL, NULL, NULL, 0)";

/// The raw insert of a queue operation, as the store writes one for an insert.
pub const RAW_INSERT_OP: &str = "INSERT INTO \"__sync_operations\" (kind, state, table_name, item_id, item, \
     op_version, attempts, created_at) VALUES ('insert', 'pending', 'BenchItem', ?1, NULL, 1, 0, ?2)";

/// The current time as the store writes it into the queue.
pub fn now_text() -> String {
    sync_core::datetime::format(time::OffsetDateTime::now_utc())
}

/// Inserts rows with no queue operation (as pulled rows are), for seeding.
pub fn seed_rows_unqueued(conn: &mut Connection, items: &[Item]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare(RAW_INSERT_ROW)?;
        for item in items {
            stmt.execute(rusqlite::params![item.id, item.title, item.rank, item.done])?;
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_are_a_permutation() {
        for n in [1, 7, 1000, 1_000_003] {
            let mut ranks: Vec<i64> = (0..n).map(|i| scramble(i, n)).collect();
            ranks.sort_unstable();
            assert!(ranks.iter().enumerate().all(|(i, &r)| r == i as i64), "n = {n}");
        }
    }

    #[test]
    fn the_schema_matches_the_local_columns() {
        for c in LOCAL_COLUMNS {
            assert!(ItemSchema.column(c).is_some(), "{c}");
        }
        assert_eq!(ItemSchema.column("rank"), Some((ColumnType::Int, false)));
    }
}
