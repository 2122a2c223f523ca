//! The SQL of the one-row statements (read, insert, update and delete by key) and of
//! the clock rows, written once for both engines.
//!
//! # Clock rows
//!
//! A write stamps its row with the next `(updatedAt, id)` after the last one assigned
//! among the rows its readers can see (see [`crate::stamp`]), and that last pair lives
//! in the database, in a clock row:
//!
//! - a shared table's in `__sync_server_clock`, one row per table, seeded when the table
//!   is prepared (`''` for an empty table);
//! - an owned table's in `__sync_server_owner_clock`, one row per `(table, owner)`: an
//!   owner's readers see only that owner's rows, so owners need no common order, and
//!   writers of different owners never meet on a clock row. An owner's row is made by
//!   its first write, seeded from the table's row (which holds the last pair of every
//!   write made before owners had clocks of their own, so it bounds them all).
//!
//! # Row writes are conditional
//!
//! An update or a delete names the version it read (`AND "version" = ..`) and an insert
//! gives way to an existing row (`ON CONFLICT DO NOTHING`): a write that affects no row
//! lost a race to another writer of the row, and is tried again
//! ([`super::write`]). Under SQLite's write lock that never happens; PostgreSQL reads
//! rows without a lock and relies on it.
//!
//! A write may also be guarded by a relation that must yield a row for it to happen
//! (PostgreSQL's reservations: the write happens only if it withdrew its own
//! reservation, see `postgres/reservations.rs`).

use sync_core::Value;
use sync_core::sql::quote_ident;

use super::engine::Engine;
use super::{Key, Row};
use crate::table::TableDef;

/// The table holding the last `(updatedAt, id)` assigned per shared table (and, for an
/// owned table, before its owners had clock rows of their own).
pub(crate) const CLOCK_TABLE: &str = "__sync_server_clock";
/// The table holding the last `(updatedAt, id)` assigned per owner of an owned table.
pub(crate) const OWNER_CLOCK_TABLE: &str = "__sync_server_owner_clock";

/// `WHERE "id" = <1>`, and `AND "<owner>" = <2>` for an owned table: the parameters
/// of [`Key::params`].
fn key_condition(table: &TableDef, engine: Engine) -> String {
    match &table.owner_column {
        Some(owner) => format!("WHERE \"id\" = {} AND {} = {}", engine.mark(1), quote_ident(owner), engine.mark(2)),
        None => format!("WHERE \"id\" = {}", engine.mark(1)),
    }
}

/// ` AND EXISTS (SELECT 1 FROM <guard>)`, or nothing without a guard.
fn guard_condition(guard: Option<&str>) -> String {
    guard.map(|g| format!(" AND EXISTS (SELECT 1 FROM {})", quote_ident(g))).unwrap_or_default()
}

/// Reads the row of a key: its stored columns, in [`TableDef::stored_columns`] order.
pub(crate) fn select_row(table: &TableDef, engine: Engine) -> String {
    let cols: Vec<String> = table.stored_columns().iter().map(|c| quote_ident(c)).collect();
    format!("SELECT {} FROM {} {}", cols.join(", "), quote_ident(&table.name), key_condition(table, engine))
}

/// Inserts every stored column of a row, then the owner when it is a hidden column (the
/// parameters of [`row_params`] for a new row), unless the key is taken (then it
/// affects no row). With a `guard`, only if the guard yields a row.
pub(crate) fn insert_row(table: &TableDef, engine: Engine, guard: Option<&str>) -> String {
    let mut cols = table.stored_columns();
    cols.extend(table.hidden_owner());
    let names: Vec<String> = cols.iter().map(|c| quote_ident(c)).collect();
    let values: Vec<String> = (1..=cols.len()).map(|i| engine.mark(i)).collect();
    let source = match guard {
        None => format!("VALUES ({})", values.join(", ")),
        Some(guard) => format!("SELECT {} FROM {}", values.join(", "), quote_ident(guard)),
    };
    format!("INSERT INTO {} ({}) {source} ON CONFLICT DO NOTHING", quote_ident(&table.name), names.join(", "))
}

/// Sets every stored column but the id of the row of a key, if it still has the version
/// the write read: the parameters of [`row_params`] for a stored row (the id first, then
/// the owner of an owned table, then that version). With a `guard`, only if the guard
/// yields a row.
pub(crate) fn update_row(table: &TableDef, engine: Engine, guard: Option<&str>) -> String {
    let cols = table.stored_columns();
    let sets: Vec<String> =
        cols.iter().enumerate().skip(1).map(|(i, c)| format!("{} = {}", quote_ident(c), engine.mark(i + 1))).collect();
    let mut sql =
        format!("UPDATE {} SET {} WHERE \"id\" = {}", quote_ident(&table.name), sets.join(", "), engine.mark(1));
    let mut next = cols.len() + 1;
    if let Some(owner) = &table.owner_column {
        sql.push_str(&format!(" AND {} = {}", quote_ident(owner), engine.mark(next)));
        next += 1;
    }
    sql.push_str(&format!(" AND \"version\" = {}{}", engine.mark(next), guard_condition(guard)));
    sql
}

/// Removes the row of a key if it still has the version the write read: the parameters
/// of [`delete_params`]. With a `guard`, only if the guard yields a row.
pub(crate) fn delete_row(table: &TableDef, engine: Engine, guard: Option<&str>) -> String {
    let version = engine.mark(if table.owner_column.is_some() { 3 } else { 2 });
    format!(
        "DELETE FROM {} {} AND \"version\" = {version}{}",
        quote_ident(&table.name),
        key_condition(table, engine),
        guard_condition(guard)
    )
}

/// The parameters of [`insert_row`] (`replaces` is `None`: a new row) or [`update_row`]
/// (`replaces` is the stored version) for `row` of `key`: the id, the data columns,
/// `version`, `updatedAt`, `createdAt`, `deleted`, then the owner (of a new row when it is
/// a hidden column, of a stored row whenever the table is owned: it is part of the key
/// there), then the replaced version.
pub(crate) fn row_params(table: &TableDef, key: &Key<'_>, row: &Row, replaces: Option<&str>) -> Vec<Value> {
    let mut params: Vec<Value> = Vec::with_capacity(row.values.len() + 7);
    params.push(Value::String(row.id.clone()));
    params.extend(row.values.iter().cloned());
    params.push(Value::String(row.version.clone()));
    params.push(Value::String(row.updated_at.clone()));
    params.push(Value::String(row.created_at.clone()));
    params.push(Value::Bool(row.deleted));
    let owner_param = match replaces {
        None => table.hidden_owner().is_some(),
        Some(_) => table.owner_column.is_some(),
    };
    if owner_param {
        params.extend(key.owner.map(|o| Value::String(o.to_owned())));
    }
    params.extend(replaces.map(|v| Value::String(v.to_owned())));
    params
}

/// The parameters of [`delete_row`]: the key's ([`Key::params`]), then the version.
pub(crate) fn delete_params<'k>(key: &Key<'k>, version: &'k str) -> Vec<&'k str> {
    let mut params = key.params();
    params.push(version);
    params
}

/// The clock row a write of `table` by `key` takes, as parameters: the table's name,
/// and the owner for an owned table (see the module docs).
pub(crate) fn clock_params<'k>(table: &'k TableDef, key: &Key<'k>) -> Vec<&'k str> {
    std::iter::once(table.name.as_str()).chain(key.owner).collect()
}

/// Where the clock row of `table` is and how it is found: the clock table and its key
/// condition on the parameters of [`clock_params`], from parameter `first` on.
fn clock_row(table: &TableDef, engine: Engine, first: usize) -> (String, String) {
    match table.owner_column {
        None => (quote_ident(CLOCK_TABLE), format!("\"tbl\" = {}", engine.mark(first))),
        Some(_) => (
            quote_ident(OWNER_CLOCK_TABLE),
            format!("\"tbl\" = {} AND \"owner\" = {}", engine.mark(first), engine.mark(first + 1)),
        ),
    }
}

/// Reads the clock row of a write of `table` ([`clock_params`]). (SQLite reads it
/// inside its write lock; PostgreSQL moves clock rows in its reservations instead, see
/// `postgres/reservations.rs`.)
pub(crate) fn read_clock(table: &TableDef, engine: Engine) -> String {
    let (clock, condition) = clock_row(table, engine, 1);
    format!("SELECT \"updatedAt\", \"id\" FROM {clock} WHERE {condition}")
}

/// Sets the clock row of a write of `table` to parameters 1 (`updatedAt`) and 2 (`id`);
/// [`clock_params`] follow.
pub(crate) fn set_clock(table: &TableDef, engine: Engine) -> String {
    let (clock, condition) = clock_row(table, engine, 3);
    format!("UPDATE {clock} SET \"updatedAt\" = {}, \"id\" = {} WHERE {condition}", engine.mark(1), engine.mark(2))
}

/// Makes the clock row of the owner named by parameter 2 in the owned table named by
/// parameter 1, from the table's clock row (see the module docs); keeps an existing one.
pub(crate) fn seed_owner_clock(engine: Engine) -> String {
    format!(
        "INSERT INTO {owners} (\"tbl\", \"owner\", \"updatedAt\", \"id\") \
         SELECT c.\"tbl\", {owner}, c.\"updatedAt\", c.\"id\" FROM {clock} AS c WHERE c.\"tbl\" = {tbl} \
         ON CONFLICT (\"tbl\", \"owner\") DO NOTHING",
        owners = quote_ident(OWNER_CLOCK_TABLE),
        clock = quote_ident(CLOCK_TABLE),
        tbl = engine.mark(1),
        owner = engine.mark(2)
    )
}

/// Seeds the clock row of `table` (named by parameter 1) from its newest row (`''`
/// when it has none); keeps an existing clock row. (`WHERE TRUE` keeps SQLite from
/// reading `ON CONFLICT` as a join constraint.)
pub(crate) fn seed_clock(table: &TableDef, engine: Engine) -> String {
    format!(
        "INSERT INTO {clock} (\"tbl\", \"updatedAt\", \"id\") \
         SELECT {tbl}, COALESCE(m.\"updatedAt\", ''), COALESCE(m.\"id\", '') FROM (SELECT 1) AS one \
         LEFT JOIN (SELECT \"updatedAt\", \"id\" FROM {name} ORDER BY \"updatedAt\" DESC, \"id\" DESC LIMIT 1) AS m \
         ON TRUE WHERE TRUE ON CONFLICT (\"tbl\") DO NOTHING",
        clock = quote_ident(CLOCK_TABLE),
        tbl = engine.mark(1),
        name = quote_ident(&table.name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_core::ColumnType;

    #[test]
    fn statements_key_rows_by_owner_and_id_and_name_the_version_read() {
        let t = TableDef::new("T").column("n", ColumnType::Int, true).owner_column("owner");
        assert_eq!(
            insert_row(&t, Engine::Postgres, None),
            "INSERT INTO \"T\" (\"id\", \"n\", \"version\", \"updatedAt\", \"createdAt\", \"deleted\", \"owner\") \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            update_row(&t, Engine::Postgres, None),
            "UPDATE \"T\" SET \"n\" = $2, \"version\" = $3, \"updatedAt\" = $4, \"createdAt\" = $5, \
             \"deleted\" = $6 WHERE \"id\" = $1 AND \"owner\" = $7 AND \"version\" = $8"
        );
        assert!(select_row(&t, Engine::Postgres).ends_with("WHERE \"id\" = $1 AND \"owner\" = $2"));
        assert_eq!(
            delete_row(&t, Engine::Sqlite, None),
            "DELETE FROM \"T\" WHERE \"id\" = ?1 AND \"owner\" = ?2 AND \"version\" = ?3"
        );
        let shared = TableDef::new("S");
        assert_eq!(
            delete_row(&shared, Engine::Sqlite, None),
            "DELETE FROM \"S\" WHERE \"id\" = ?1 AND \"version\" = ?2"
        );
    }

    #[test]
    fn guarded_writes_need_a_row_of_the_guard() {
        let t = TableDef::new("T").column("n", ColumnType::Int, true);
        assert_eq!(
            insert_row(&t, Engine::Postgres, Some("g")),
            "INSERT INTO \"T\" (\"id\", \"n\", \"version\", \"updatedAt\", \"createdAt\", \"deleted\") \
             SELECT $1, $2, $3, $4, $5, $6 FROM \"g\" ON CONFLICT DO NOTHING"
        );
        assert!(
            update_row(&t, Engine::Postgres, Some("g"))
                .ends_with("AND \"version\" = $7 AND EXISTS (SELECT 1 FROM \"g\")")
        );
        assert!(
            delete_row(&t, Engine::Postgres, Some("g"))
                .ends_with("AND \"version\" = $2 AND EXISTS (SELECT 1 FROM \"g\")")
        );
    }

    #[test]
    fn shared_tables_have_one_clock_row_and_owned_tables_one_per_owner() {
        let shared = TableDef::new("S");
        assert_eq!(
            read_clock(&shared, Engine::Sqlite),
            "SELECT \"updatedAt\", \"id\" FROM \"__sync_server_clock\" WHERE \"tbl\" = ?1"
        );
        assert_eq!(
            set_clock(&shared, Engine::Sqlite),
            "UPDATE \"__sync_server_clock\" SET \"updatedAt\" = ?1, \"id\" = ?2 WHERE \"tbl\" = ?3"
        );
        let owned = TableDef::new("O").owner_column("owner");
        assert_eq!(
            read_clock(&owned, Engine::Sqlite),
            "SELECT \"updatedAt\", \"id\" FROM \"__sync_server_owner_clock\" WHERE \"tbl\" = ?1 AND \"owner\" = ?2"
        );
        assert_eq!(
            set_clock(&owned, Engine::Postgres),
            "UPDATE \"__sync_server_owner_clock\" SET \"updatedAt\" = $1, \"id\" = $2 WHERE \"tbl\" = $3 AND \"owner\" = $4"
        );
        let key = Key { id: "a", owner: Some("alice") };
        assert_eq!(clock_params(&owned, &key), ["O", "alice"]);
        assert_eq!(clock_params(&shared, &Key { id: "a", owner: None }), ["S"]);
    }

    #[test]
    fn row_parameters_follow_the_statements() {
        let row = Row {
            id: "a".into(),
            values: vec![Value::Int(1)],
            version: "v".into(),
            updated_at: "u".into(),
            created_at: "c".into(),
            deleted: false,
        };
        let key = Key { id: "a", owner: Some("alice") };
        let hidden = TableDef::new("T").column("n", ColumnType::Int, true).owner_column("owner");
        // A hidden owner is a column of a new row and part of a stored row's key.
        assert_eq!(row_params(&hidden, &key, &row, None).len(), 7);
        assert_eq!(row_params(&hidden, &key, &row, Some("old")).len(), 8);
        // A served owner is a data column: only a stored row's key names it again.
        let served = TableDef::new("T").column("n", ColumnType::Int, true).owner_column("n");
        assert_eq!(row_params(&served, &key, &row, None).len(), 6);
        assert_eq!(row_params(&served, &key, &row, Some("old")).len(), 8);
        let shared = TableDef::new("T").column("n", ColumnType::Int, true);
        let key = Key { id: "a", owner: None };
        let params = row_params(&shared, &key, &row, Some("old"));
        assert_eq!(params.len(), 7);
        assert_eq!(params.last(), Some(&Value::String("old".into())));
        assert_eq!(delete_params(&key, "old"), ["a", "old"]);
    }
}
