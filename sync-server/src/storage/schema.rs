//! The stored tables, for both engines: the DDL that creates a table from its
//! definition, or checks a stored one against it and adds the missing data columns;
//! its indexes; and the clock tables. Each backend reads its own catalog into a
//! [`StoredTable`] and runs the statements made here, then seeds the table's clock row
//! ([`super::statements::seed_clock`]).
//!
//! Layout of a table: `"id"`, the data columns, a server-only owner column when the
//! owner is not a data column, then `"version"`, `"updatedAt"`, `"createdAt"`
//! (fixed-width UTC text, so text order is time order) and `"deleted"`; primary key
//! `id`, or `(owner, id)` for an owned table; an index on `("updatedAt", "id")` (and
//! `(owner, "updatedAt", "id")`) for incremental readers.

use sync_core::sql::quote_ident;

use super::StorageError;
use super::engine::{Engine, Index};
use super::statements::{CLOCK_TABLE, OWNER_CLOCK_TABLE};
use crate::table::{ColumnDef, TableDef};

/// A table as the database holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct StoredTable {
    /// `(name, type as the catalog reports it)` of every column.
    pub(crate) columns: Vec<(String, String)>,
    /// The primary key's columns, in order.
    pub(crate) key: Vec<String>,
}

/// Creates the clock tables when they are missing: one row per shared table, one per
/// owner of an owned table (see [`super::statements`]).
pub(crate) fn clock_tables(engine: Engine) -> [String; 2] {
    let text = engine.ordered_text();
    [
        format!(
            "CREATE TABLE IF NOT EXISTS {} (\"tbl\" TEXT PRIMARY KEY NOT NULL, \"updatedAt\" {text} NOT NULL, \
             \"id\" {text} NOT NULL)",
            quote_ident(CLOCK_TABLE)
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (\"tbl\" TEXT NOT NULL, \"owner\" {text} NOT NULL, \
             \"updatedAt\" {text} NOT NULL, \"id\" {text} NOT NULL, PRIMARY KEY (\"tbl\", \"owner\"))",
            quote_ident(OWNER_CLOCK_TABLE)
        ),
    ]
}

/// The statements that make the stored `table` what its definition says: create it
/// (`stored` is `None`: the database has no such table) or add its missing data
/// columns, then create its indexes. A stored table that differs otherwise is refused
/// (see [`columns_to_add`]).
pub(crate) fn table_statements(
    table: &TableDef,
    stored: Option<&StoredTable>,
    engine: Engine,
) -> Result<Vec<String>, StorageError> {
    let name = quote_ident(&table.name);
    let mut statements = Vec::new();
    match stored {
        None => statements.push(create_table(table, engine)),
        Some(stored) => {
            let key: Vec<&str> = stored.key.iter().map(String::as_str).collect();
            let columns: Vec<(&str, &str)> = stored.columns.iter().map(|(n, ty)| (n.as_str(), ty.as_str())).collect();
            for col in columns_to_add(table, &key, &columns, engine.names_ignore_case(), engine.stored_type())? {
                statements.push(format!(
                    "ALTER TABLE {name} {} {} {}",
                    engine.add_column(),
                    quote_ident(&col.name),
                    engine.column_type(col.ty)
                ));
            }
        }
    }
    let index = quote_ident(&engine.index_name(&table.name, Index::Cursor));
    statements.push(format!("CREATE INDEX IF NOT EXISTS {index} ON {name} (\"updatedAt\", \"id\")"));
    if let Some(owner) = &table.owner_column {
        let index = quote_ident(&engine.index_name(&table.name, Index::Owner));
        statements.push(format!(
            "CREATE INDEX IF NOT EXISTS {index} ON {name} ({}, \"updatedAt\", \"id\")",
            quote_ident(owner)
        ));
    }
    Ok(statements)
}

fn create_table(table: &TableDef, engine: Engine) -> String {
    let text = engine.ordered_text();
    let mut cols = vec![format!("\"id\" {text} NOT NULL")];
    cols.extend(table.columns.iter().map(|c| format!("{} {}", quote_ident(&c.name), engine.column_type(c.ty))));
    cols.extend(table.hidden_owner().map(|o| format!("{} {text} NOT NULL", quote_ident(o))));
    cols.extend([
        "\"version\" TEXT NOT NULL".to_owned(),
        format!("\"updatedAt\" {text} NOT NULL"),
        format!("\"createdAt\" {text} NOT NULL"),
        format!("\"deleted\" {}", engine.deleted_column()),
    ]);
    let key: Vec<String> = table.owner_column.iter().map(String::as_str).chain(["id"]).map(quote_ident).collect();
    cols.push(format!("PRIMARY KEY ({})", key.join(", ")));
    format!("CREATE TABLE IF NOT EXISTS {} ({})", quote_ident(&table.name), cols.join(", "))
}

/// Checks a stored table against its definition and returns the data columns to add:
/// the key must be the definition's (`owner, id` or `id`), every system column must be
/// there, and a stored data column must have the type `decl` gives for its declared
/// type. `stored_key` is the key's columns in order; `existing` is `(name, stored type)`
/// of every column. Types compare without letter case (SQLite keeps a declared type as
/// written); names too when `names_ignore_case` (SQLite's are, PostgreSQL's quoted ones
/// are not).
pub(crate) fn columns_to_add<'t>(
    table: &'t TableDef,
    stored_key: &[&str],
    existing: &[(&str, &str)],
    names_ignore_case: bool,
    decl: fn(sync_core::ColumnType) -> &'static str,
) -> Result<Vec<&'t ColumnDef>, StorageError> {
    let schema_err = |message: String| StorageError::Schema { table: table.name.clone(), message };
    let key: Vec<&str> = table.owner_column.iter().map(String::as_str).chain(["id"]).collect();
    if stored_key != key.as_slice() {
        return Err(schema_err(format!(
            "the stored table is keyed by ({}) but the definition needs ({}) (an owner column keys rows by owner \
             and id); this change needs a migration",
            stored_key.join(", "),
            key.join(", ")
        )));
    }
    let same = |a: &str, b: &str| if names_ignore_case { a.eq_ignore_ascii_case(b) } else { a == b };
    let find = |col: &str| existing.iter().find(|(n, _)| same(n, col)).map(|(_, ty)| *ty);
    for sys in ["id", "version", "updatedAt", "createdAt", "deleted"] {
        if find(sys).is_none() {
            return Err(schema_err(format!(
                "the existing table has no `{sys}` column; it was not created by sync-server"
            )));
        }
    }
    let mut missing = Vec::new();
    for col in &table.columns {
        match find(&col.name) {
            None => missing.push(col),
            Some(stored) if !stored.eq_ignore_ascii_case(decl(col.ty)) => {
                return Err(schema_err(format!(
                    "column `{}` is stored as {stored} but declared {} ({}); this change needs a migration",
                    col.name,
                    col.ty,
                    decl(col.ty)
                )));
            }
            Some(_) => {}
        }
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_tables_are_checked_against_their_definition() {
        use sync_core::ColumnType;
        let decl = |ty: ColumnType| if ty == ColumnType::Int { "bigint" } else { "text" };
        let t = TableDef::new("T").column("a", ColumnType::String, true).column("n", ColumnType::Int, true);
        let system =
            [("id", "text"), ("version", "text"), ("updatedAt", "text"), ("createdAt", "text"), ("deleted", "x")];
        let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> {
            system.iter().chain(extra).copied().collect()
        };
        // `a` is there, `n` is missing: added.
        let add = columns_to_add(&t, &["id"], &with(&[("a", "TEXT")]), true, decl).unwrap();
        assert_eq!(add.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["n"]);
        // Names ignore case only where the backend's do.
        assert_eq!(columns_to_add(&t, &["id"], &with(&[("A", "text"), ("n", "bigint")]), true, decl).unwrap().len(), 0);
        assert_eq!(
            columns_to_add(&t, &["id"], &with(&[("A", "text"), ("n", "bigint")]), false, decl).unwrap().len(),
            1
        );
        let message = |r: Result<Vec<&crate::table::ColumnDef>, StorageError>| r.unwrap_err().to_string();
        let retyped = message(columns_to_add(&t, &["id"], &with(&[("a", "bigint")]), true, decl));
        assert!(retyped.contains("`a` is stored as bigint but declared string (text)"), "{retyped}");
        let rekeyed = message(columns_to_add(&t.clone().owner_column("owner"), &["id"], &with(&[]), true, decl));
        assert!(rekeyed.contains("keyed by (id) but the definition needs (owner, id)"), "{rekeyed}");
        let foreign = message(columns_to_add(&t, &["id"], &[("id", "text"), ("a", "text")], true, decl));
        assert!(foreign.contains("no `version` column"), "{foreign}");
    }

    #[test]
    fn each_engine_creates_the_layout_it_always_had() {
        use sync_core::ColumnType;
        let t = TableDef::new("T").column("n", ColumnType::Int, true).owner_column("owner");
        let sqlite = table_statements(&t, None, Engine::Sqlite).unwrap();
        assert_eq!(
            sqlite[0],
            "CREATE TABLE IF NOT EXISTS \"T\" (\"id\" TEXT NOT NULL, \"n\" INTEGER, \"owner\" TEXT NOT NULL, \
             \"version\" TEXT NOT NULL, \"updatedAt\" TEXT NOT NULL, \"createdAt\" TEXT NOT NULL, \
             \"deleted\" INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (\"owner\", \"id\"))"
        );
        assert_eq!(sqlite.len(), 3, "the table and its two indexes");
        let pg = table_statements(&t, None, Engine::Postgres).unwrap();
        assert_eq!(
            pg[0],
            "CREATE TABLE IF NOT EXISTS \"T\" (\"id\" TEXT COLLATE \"C\" NOT NULL, \"n\" BIGINT, \
             \"owner\" TEXT COLLATE \"C\" NOT NULL, \"version\" TEXT NOT NULL, \"updatedAt\" TEXT COLLATE \"C\" NOT NULL, \
             \"createdAt\" TEXT COLLATE \"C\" NOT NULL, \"deleted\" BOOLEAN NOT NULL DEFAULT FALSE, \
             PRIMARY KEY (\"owner\", \"id\"))"
        );
        // A stored table missing a data column gets it.
        let stored = StoredTable {
            columns: ["id", "owner", "version", "updatedAt", "createdAt", "deleted"]
                .iter()
                .map(|c| (c.to_string(), "text".to_owned()))
                .collect(),
            key: vec!["owner".into(), "id".into()],
        };
        let pg = table_statements(&t, Some(&stored), Engine::Postgres).unwrap();
        assert_eq!(pg[0], "ALTER TABLE \"T\" ADD COLUMN IF NOT EXISTS \"n\" BIGINT");
    }
}
