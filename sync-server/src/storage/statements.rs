//! The SQL of the one-row statements (read, insert, update and delete by key) and of
//! the tables' clock rows, written once for both engines.
//!
//! The clock table, `__sync_server_clock`, holds one row per served table: the last
//! `(updatedAt, id)` assigned in it (see [`crate::stamp`]), seeded when the table is
//! prepared (`''` for an empty table) and set by every write that stamps a row.

use sync_core::Value;
use sync_core::sql::quote_ident;

use super::engine::Engine;
use super::{Key, Row};
use crate::table::TableDef;

/// The table holding the last `(updatedAt, id)` assigned per table.
pub(crate) const CLOCK_TABLE: &str = "__sync_server_clock";

/// `WHERE "id" = <1>`, and `AND "<owner>" = <2>` for an owned table: the parameters
/// of [`Key::params`].
fn key_condition(table: &TableDef, engine: Engine) -> String {
    match &table.owner_column {
        Some(owner) => format!("WHERE \"id\" = {} AND {} = {}", engine.mark(1), quote_ident(owner), engine.mark(2)),
        None => format!("WHERE \"id\" = {}", engine.mark(1)),
    }
}

/// Reads the row of a key: its stored columns, in [`TableDef::stored_columns`] order.
pub(crate) fn select_row(table: &TableDef, engine: Engine) -> String {
    let cols: Vec<String> = table.stored_columns().iter().map(|c| quote_ident(c)).collect();
    format!("SELECT {} FROM {} {}", cols.join(", "), quote_ident(&table.name), key_condition(table, engine))
}

/// Inserts every stored column of a row, then the owner when it is a hidden column:
/// the parameters of [`row_params`] for a new row.
pub(crate) fn insert_row(table: &TableDef, engine: Engine) -> String {
    let mut cols = table.stored_columns();
    cols.extend(table.hidden_owner());
    let names: Vec<String> = cols.iter().map(|c| quote_ident(c)).collect();
    let values: Vec<String> = (1..=cols.len()).map(|i| engine.mark(i)).collect();
    format!("INSERT INTO {} ({}) VALUES ({})", quote_ident(&table.name), names.join(", "), values.join(", "))
}

/// Sets every stored column but the id of the row of a key: the parameters of
/// [`row_params`] for a stored row (the id first, the owner of an owned table last).
pub(crate) fn update_row(table: &TableDef, engine: Engine) -> String {
    let cols = table.stored_columns();
    let sets: Vec<String> =
        cols.iter().enumerate().skip(1).map(|(i, c)| format!("{} = {}", quote_ident(c), engine.mark(i + 1))).collect();
    let mut sql =
        format!("UPDATE {} SET {} WHERE \"id\" = {}", quote_ident(&table.name), sets.join(", "), engine.mark(1));
    if let Some(owner) = &table.owner_column {
        sql.push_str(&format!(" AND {} = {}", quote_ident(owner), engine.mark(cols.len() + 1)));
    }
    sql
}

/// Removes the row of a key ([`Key::params`]).
pub(crate) fn delete_row(table: &TableDef, engine: Engine) -> String {
    format!("DELETE FROM {} {}", quote_ident(&table.name), key_condition(table, engine))
}

/// The parameters of [`insert_row`] (`new`) or [`update_row`] for `row` of `key`: the
/// id, the data columns, `version`, `updatedAt`, `createdAt`, `deleted`, then the owner
/// (of a new row when it is a hidden column, of a stored row whenever the table is
/// owned: it is part of the key there).
pub(crate) fn row_params(table: &TableDef, key: &Key<'_>, row: &Row, new: bool) -> Vec<Value> {
    let mut params: Vec<Value> = Vec::with_capacity(row.values.len() + 6);
    params.push(Value::String(row.id.clone()));
    params.extend(row.values.iter().cloned());
    params.push(Value::String(row.version.clone()));
    params.push(Value::String(row.updated_at.clone()));
    params.push(Value::String(row.created_at.clone()));
    params.push(Value::Bool(row.deleted));
    let owner_param = if new { table.hidden_owner().is_some() } else { table.owner_column.is_some() };
    if owner_param {
        params.extend(key.owner.map(|o| Value::String(o.to_owned())));
    }
    params
}

/// Reads the clock row of the table named by parameter 1, locking it until the
/// transaction ends where the engine needs that ([`Engine::row_lock`]).
pub(crate) fn read_clock(engine: Engine) -> String {
    format!(
        "SELECT \"updatedAt\", \"id\" FROM {} WHERE \"tbl\" = {}{}",
        quote_ident(CLOCK_TABLE),
        engine.mark(1),
        engine.row_lock()
    )
}

/// Sets the clock row of the table named by parameter 1 to parameters 2 (`updatedAt`)
/// and 3 (`id`).
pub(crate) fn set_clock(engine: Engine) -> String {
    format!(
        "UPDATE {} SET \"updatedAt\" = {}, \"id\" = {} WHERE \"tbl\" = {}",
        quote_ident(CLOCK_TABLE),
        engine.mark(2),
        engine.mark(3),
        engine.mark(1)
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
    fn statements_key_rows_by_owner_and_id() {
        let t = TableDef::new("T").column("n", ColumnType::Int, true).owner_column("owner");
        assert_eq!(
            insert_row(&t, Engine::Postgres),
            "INSERT INTO \"T\" (\"id\", \"n\", \"version\", \"updatedAt\", \"createdAt\", \"deleted\", \"owner\") \
             VALUES ($1, $2, $3, $4, $5, $6, $7)"
        );
        assert_eq!(
            update_row(&t, Engine::Postgres),
            "UPDATE \"T\" SET \"n\" = $2, \"version\" = $3, \"updatedAt\" = $4, \"createdAt\" = $5, \
             \"deleted\" = $6 WHERE \"id\" = $1 AND \"owner\" = $7"
        );
        assert!(select_row(&t, Engine::Postgres).ends_with("WHERE \"id\" = $1 AND \"owner\" = $2"));
        assert_eq!(delete_row(&t, Engine::Sqlite), "DELETE FROM \"T\" WHERE \"id\" = ?1 AND \"owner\" = ?2");
        assert_eq!(
            read_clock(Engine::Postgres),
            "SELECT \"updatedAt\", \"id\" FROM \"__sync_server_clock\" WHERE \"tbl\" = $1 FOR UPDATE"
        );
        assert!(!read_clock(Engine::Sqlite).contains("FOR UPDATE"));
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
        assert_eq!(row_params(&hidden, &key, &row, true).len(), 7);
        assert_eq!(row_params(&hidden, &key, &row, false).len(), 7);
        // A served owner is a data column: only a stored row's key names it again.
        let served = TableDef::new("T").column("n", ColumnType::Int, true).owner_column("n");
        assert_eq!(row_params(&served, &key, &row, true).len(), 6);
        assert_eq!(row_params(&served, &key, &row, false).len(), 7);
        let shared = TableDef::new("T").column("n", ColumnType::Int, true);
        let key = Key { id: "a", owner: None };
        assert_eq!(row_params(&shared, &key, &row, false).len(), 6);
    }
}
