//! What the two SQL engines spell differently in the write path and the table DDL:
//! parameter marks, column types, and index names. Everything
//! else of those statements is written once ([`super::statements`], [`super::schema`]).
//! (Queries of the list path have their own compilers.)

use sync_core::ColumnType;

use sync_core::sql::postgres as pg_sql;

/// The database engine a statement is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Engine {
    /// SQLite: `?1` parameters; types by affinity; one writer at a time.
    Sqlite,
    /// PostgreSQL: `$1` parameters; text in the `"C"` collation (code point order, as
    /// SQLite compares); concurrent writers.
    Postgres,
}

impl Engine {
    /// The mark of the `n`th (1-based) statement parameter.
    pub(crate) fn mark(self, n: usize) -> String {
        match self {
            Engine::Sqlite => format!("?{n}"),
            Engine::Postgres => format!("${n}"),
        }
    }

    /// The type of a text column that is compared and ordered (ids, timestamps, owners).
    pub(crate) fn ordered_text(self) -> &'static str {
        match self {
            Engine::Sqlite => "TEXT",
            Engine::Postgres => "TEXT COLLATE \"C\"",
        }
    }

    /// The `deleted` column.
    pub(crate) fn deleted_column(self) -> &'static str {
        match self {
            Engine::Sqlite => "INTEGER NOT NULL DEFAULT 0",
            Engine::Postgres => "BOOLEAN NOT NULL DEFAULT FALSE",
        }
    }

    /// The declared type of a data column.
    pub(crate) fn column_type(self, ty: ColumnType) -> &'static str {
        match self {
            Engine::Sqlite => ty.sqlite_decl(),
            Engine::Postgres => pg_sql::column_type(ty),
        }
    }

    /// What the engine's catalog reports as the type of a data column, by its type
    /// (`pragma_table_info`: the declared type; PostgreSQL: `information_schema`'s).
    pub(crate) fn stored_type(self) -> fn(ColumnType) -> &'static str {
        match self {
            Engine::Sqlite => ColumnType::sqlite_decl,
            Engine::Postgres => pg_sql::information_schema_type,
        }
    }

    /// Whether column names compare without letter case (SQLite's do; PostgreSQL's
    /// quoted ones do not).
    pub(crate) fn names_ignore_case(self) -> bool {
        match self {
            Engine::Sqlite => true,
            Engine::Postgres => false,
        }
    }

    /// `ADD COLUMN` as the engine takes it when another process may have added the
    /// column already (SQLite adds columns under its one write lock).
    pub(crate) fn add_column(self) -> &'static str {
        match self {
            Engine::Sqlite => "ADD COLUMN",
            Engine::Postgres => "ADD COLUMN IF NOT EXISTS",
        }
    }

    /// The name of one of `table`'s indexes: `Cursor` on `("updatedAt", "id")`, `Owner`
    /// on `(owner, "updatedAt", "id")`. The names are those existing databases have.
    pub(crate) fn index_name(self, table: &str, index: Index) -> String {
        match (self, index) {
            // Index names share the table namespace; the reserved prefix cannot collide.
            (Engine::Sqlite, Index::Cursor) => format!("__sync_server_{table}_updatedAt_id"),
            (Engine::Sqlite, Index::Owner) => format!("__sync_server_{table}_owner_updatedAt_id"),
            // PostgreSQL truncates names at 63 bytes: a prefix of the table name and a
            // hash keep them short and unique.
            (Engine::Postgres, Index::Cursor) => hashed_index_name(table, "cursor"),
            (Engine::Postgres, Index::Owner) => hashed_index_name(table, "owner"),
        }
    }
}

/// An index every stored table has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Index {
    /// `("updatedAt", "id")`, for incremental readers.
    Cursor,
    /// `(owner, "updatedAt", "id")` of an owned table: each user's incremental reader.
    Owner,
}

/// A short, unique, valid PostgreSQL index name for `table`.
fn hashed_index_name(table: &str, what: &str) -> String {
    // FNV-1a: stable across builds and platforms.
    let hash = table.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    let prefix: String = table.chars().take(24).collect();
    format!("__sync_server_{prefix}_{hash:08x}_{what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_index_names_fit_and_differ() {
        let long = "T".repeat(63);
        let a = Engine::Postgres.index_name(&long, Index::Owner);
        assert!(a.len() <= 63, "{a}");
        assert_ne!(
            Engine::Postgres.index_name(&format!("{long}a"), Index::Cursor),
            Engine::Postgres.index_name(&format!("{long}b"), Index::Cursor)
        );
    }

    #[test]
    fn index_names_are_the_ones_existing_databases_have() {
        assert_eq!(Engine::Sqlite.index_name("T", Index::Cursor), "__sync_server_T_updatedAt_id");
        assert_eq!(Engine::Sqlite.index_name("T", Index::Owner), "__sync_server_T_owner_updatedAt_id");
        assert_eq!(Engine::Postgres.index_name("TodoItem", Index::Cursor), "__sync_server_TodoItem_a679d75e_cursor");
    }
}
