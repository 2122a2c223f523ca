//! System tables, the store's schema version, and creating / migrating app tables
//! from their structs.

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Error, Result};
use sync_core::sql::quote_ident;
use sync_core::system::{CONFIG_TABLE, CURSORS_TABLE, ERRORS_TABLE, OPERATIONS_TABLE, REJECTED_TABLE, SCHEMA_TABLE};

use super::meta::{LocalColumn, TableMeta};

/// The layout version of the system tables this build writes (`PRAGMA user_version`).
pub(crate) const STORE_SCHEMA_VERSION: i64 = 1;

/// Refuses a store written by a newer, incompatible build. Runs before anything
/// writes to the file, so a refused file is left untouched.
pub(crate) fn check_version(conn: &Connection) -> Result<i64> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > STORE_SCHEMA_VERSION {
        return Err(Error::IncompatibleStore { found, supported: STORE_SCHEMA_VERSION });
    }
    Ok(found)
}

/// Creates the system tables when missing.
pub(crate) fn init_system_tables(conn: &mut Connection, found_version: i64) -> Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // The checks are `=` chains, not `IN (..)`: SQLite evaluates an `IN` list of three or
    // more constants by building a temporary b-tree, on every insert and update of an
    // operation (it was most of the cost of queueing one). Files made with the `IN` form
    // keep it; both accept exactly the same rows.
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {OPERATIONS_TABLE} (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL CHECK (kind = 'insert' OR kind = 'update' OR kind = 'delete'),
            state TEXT NOT NULL CHECK (state = 'pending' OR state = 'attempted' OR state = 'failed'),
            table_name TEXT NOT NULL,
            item_id TEXT NOT NULL,
            item TEXT,
            sent_item TEXT,
            op_version INTEGER NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS {OPERATIONS_TABLE}_item ON {OPERATIONS_TABLE} (table_name, item_id);
        CREATE TABLE IF NOT EXISTS {ERRORS_TABLE} (
            op_seq INTEGER PRIMARY KEY,
            op_version INTEGER NOT NULL,
            table_name TEXT NOT NULL,
            item_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            status INTEGER,
            message TEXT NOT NULL,
            client_item TEXT,
            server_item TEXT,
            raw_body TEXT,
            created_at TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS {ERRORS_TABLE}_table ON {ERRORS_TABLE} (table_name);
        CREATE TABLE IF NOT EXISTS {CONFIG_TABLE} (
            key TEXT PRIMARY KEY NOT NULL,
            value TEXT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS {CURSORS_TABLE} (
            table_name TEXT NOT NULL,
            query_id TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            last_id TEXT NOT NULL,
            PRIMARY KEY (table_name, query_id)
        );
        CREATE TABLE IF NOT EXISTS {REJECTED_TABLE} (
            table_name TEXT NOT NULL,
            item_id TEXT NOT NULL,
            field TEXT,
            reason TEXT NOT NULL,
            server_item TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            received_at TEXT NOT NULL,
            PRIMARY KEY (table_name, item_id)
        );
        CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (
            table_name TEXT NOT NULL,
            column_name TEXT NOT NULL,
            position INTEGER NOT NULL,
            type TEXT NOT NULL,
            nullable INTEGER NOT NULL,
            PRIMARY KEY (table_name, column_name)
        );"
    ))?;
    if found_version < STORE_SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", STORE_SCHEMA_VERSION)?;
    }
    tx.commit()?;
    Ok(())
}

fn describe(ty: &str, nullable: bool) -> String {
    if nullable { format!("optional {ty}") } else { ty.to_owned() }
}

/// Creates `meta`'s table, or checks it against the stored schema and adds new
/// optional columns. Every check runs before any change, so a refused struct leaves
/// the file untouched.
/// Runs inside the caller's transaction.
pub(crate) fn ensure_table(conn: &Connection, meta: &TableMeta) -> Result<()> {
    let stored = stored_columns(conn, meta.name)?;
    let fingerprint = meta.fingerprint();
    let fingerprint_key = format!("fingerprint:{}", meta.name);
    if !stored.is_empty() {
        let current: Option<String> = conn
            .query_row(&format!("SELECT value FROM {CONFIG_TABLE} WHERE key = ?1"), [&fingerprint_key], |r| r.get(0))
            .optional()?;
        if current.as_deref() == Some(fingerprint.as_str()) {
            return Ok(());
        }
    }

    let mut added: Vec<&LocalColumn> = Vec::new();
    if !stored.is_empty() {
        for (name, ty, nullable) in &stored {
            match meta.columns.iter().find(|c| &c.name == name) {
                None => {
                    return Err(Error::SchemaMismatch {
                        table: meta.name.to_owned(),
                        column: name.clone(),
                        stored: describe(ty, *nullable),
                        declared: "no field (it was removed)".into(),
                    });
                }
                Some(col) if col.ty.name() != ty || col.nullable != *nullable => {
                    return Err(Error::SchemaMismatch {
                        table: meta.name.to_owned(),
                        column: name.clone(),
                        stored: describe(ty, *nullable),
                        declared: describe(col.ty.name(), col.nullable),
                    });
                }
                Some(_) => {}
            }
        }
        for col in &meta.columns {
            if stored.iter().any(|(name, _, _)| name == &col.name) {
                continue;
            }
            if !col.nullable {
                return Err(Error::SchemaMismatch {
                    table: meta.name.to_owned(),
                    column: col.name.clone(),
                    stored: "no column".into(),
                    declared: format!("{} (a new field must be an Option to be added to existing rows)", col.ty),
                });
            }
            added.push(col);
        }
    }

    let tx = conn;
    let table = quote_ident(meta.name);
    if stored.is_empty() {
        tx.execute_batch(&meta.create_table_sql())?;
    }
    for col in &added {
        tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {}", col.ddl()))?;
        tracing::info!(table = meta.name, column = %col.name, "added column");
    }
    for sql in meta.create_index_sql() {
        tx.execute_batch(&sql)?;
    }
    tx.execute(&format!("DELETE FROM {SCHEMA_TABLE} WHERE table_name = ?1"), [meta.name])?;
    for (position, col) in meta.columns.iter().enumerate() {
        tx.execute(
            &format!(
                "INSERT INTO {SCHEMA_TABLE} (table_name, column_name, position, type, nullable) VALUES (?1, ?2, ?3, ?4, ?5)"
            ),
            params![meta.name, col.name, position as i64, col.ty.name(), col.nullable],
        )?;
    }
    tx.execute(
        &format!("INSERT OR REPLACE INTO {CONFIG_TABLE} (key, value) VALUES (?1, ?2)"),
        params![fingerprint_key, fingerprint],
    )?;
    Ok(())
}

fn stored_columns(conn: &Connection, table: &str) -> Result<Vec<(String, String, bool)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT column_name, type, nullable FROM {SCHEMA_TABLE} WHERE table_name = ?1 ORDER BY position"
    ))?;
    let rows =
        stmt.query_map([table], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}
