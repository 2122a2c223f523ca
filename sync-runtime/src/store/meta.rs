//! A table's local layout, derived once from its `FieldDef`s: the column list, the SQL
//! the write path reuses, and the row <-> struct <-> JSON mappings.

use std::fmt::Write as _;

use crate::error::{Error, Result};
use sync_core::odata::FilterSchema;
use sync_core::sql::quote_ident;
use sync_core::system::{self, RESERVED_PREFIX};
use sync_core::{ColumnType, Value};
use sync_core::{FieldDef, FieldRole};

/// One column of a local table.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LocalColumn {
    pub(crate) name: String,
    pub(crate) ty: ColumnType,
    pub(crate) nullable: bool,
    pub(crate) role: FieldRole,
    pub(crate) index: bool,
}

impl LocalColumn {
    /// The column's definition in `CREATE TABLE` / `ADD COLUMN`.
    pub(crate) fn ddl(&self) -> String {
        let mut s = format!("{} {}", quote_ident(&self.name), self.ty.sqlite_decl());
        if self.role == FieldRole::Id {
            s.push_str(" NOT NULL PRIMARY KEY");
        } else if self.role == FieldRole::Deleted {
            s.push_str(" NOT NULL DEFAULT 0");
        } else if !self.nullable {
            s.push_str(" NOT NULL");
        }
        s
    }
}

/// A table's local layout. Column order: `id`, the struct's other columns in field
/// order, then `version`, `updatedAt`, `createdAt`, `deleted`.
#[derive(Debug)]
pub(crate) struct TableMeta {
    pub(crate) name: &'static str,
    pub(crate) defs: &'static [FieldDef],
    pub(crate) columns: Vec<LocalColumn>,
    /// For each field (in `defs` order), its index in `columns`.
    pub(crate) field_columns: Vec<usize>,
    /// `INSERT INTO t (<every column>) VALUES (?, ...)`
    pub(crate) insert: String,
    /// `UPDATE t SET <app columns> = ? WHERE id = ?`, app columns in `columns` order.
    pub(crate) update_app: String,
    /// `INSERT OR REPLACE INTO t (<every column>) VALUES (?, ...)`: a full row, whether
    /// or not the id exists (the table has no triggers and no other unique key, so this
    /// is exactly a delete of the old row and an insert of the new one).
    pub(crate) upsert: String,
    /// `DELETE FROM t WHERE id = ?`
    pub(crate) delete: String,
    /// `SELECT <every column> FROM t WHERE id = ?`
    pub(crate) select_by_id: String,
    /// `SELECT <every column> FROM <table>`, the start of every query.
    pub(crate) select_all: String,
    /// The queries compiled on this table, by shape.
    selects: std::sync::Mutex<sync_core::sql::SelectCache>,
}

/// The system columns after `id`, with their local types.
const SYSTEM_TAIL: [(&str, ColumnType, bool, FieldRole); 4] = [
    (system::VERSION, ColumnType::String, true, FieldRole::Version),
    (system::UPDATED_AT, ColumnType::String, true, FieldRole::UpdatedAt),
    (system::CREATED_AT, ColumnType::String, true, FieldRole::CreatedAt),
    (system::DELETED, ColumnType::Bool, false, FieldRole::Deleted),
];

impl TableMeta {
    pub(crate) fn new(name: &'static str, defs: &'static [FieldDef]) -> Result<TableMeta> {
        let invalid = |message: String| Error::InvalidEntity { table: name.to_owned(), message };
        if name.is_empty() || name.starts_with(RESERVED_PREFIX) {
            return Err(invalid(format!("table names may not be empty or start with `{RESERVED_PREFIX}`")));
        }
        let mut columns = vec![LocalColumn {
            name: system::ID.to_owned(),
            ty: ColumnType::String,
            nullable: false,
            role: FieldRole::Id,
            index: false,
        }];
        for def in defs.iter().filter(|d| matches!(d.role, FieldRole::Data | FieldRole::LocalOnly)) {
            if system::is_system_column(def.column) || columns.iter().any(|c| c.name == def.column) {
                return Err(invalid(format!("column `{}` is declared twice or is a system column", def.column)));
            }
            columns.push(LocalColumn {
                name: def.column.to_owned(),
                ty: def.ty,
                nullable: def.nullable,
                role: def.role,
                index: def.index,
            });
        }
        for (col, ty, nullable, role) in SYSTEM_TAIL {
            columns.push(LocalColumn { name: col.to_owned(), ty, nullable, role, index: false });
        }
        let mut field_columns = Vec::with_capacity(defs.len());
        for def in defs {
            let col = match def.role.system_column() {
                Some(sys) => sys,
                None => def.column,
            };
            let Some(i) = columns.iter().position(|c| c.name == col) else {
                return Err(invalid(format!("field `{}` maps to no column", def.field)));
            };
            field_columns.push(i);
        }
        if defs.iter().filter(|d| d.role == FieldRole::Id).count() != 1 {
            return Err(invalid("exactly one field must be the id".into()));
        }

        let table = quote_ident(name);
        let all = columns.iter().map(|c| quote_ident(&c.name)).collect::<Vec<_>>().join(", ");
        let placeholders = vec!["?"; columns.len()].join(", ");
        let mut update_app = format!("UPDATE {table} SET ");
        let mut first = true;
        for c in columns.iter().filter(|c| c.role != FieldRole::Id && !c.role.is_server_managed()) {
            if !first {
                update_app.push_str(", ");
            }
            first = false;
            let _ = write!(update_app, "{} = ?", quote_ident(&c.name));
        }
        if first {
            // A table of only an id: keep the statement valid.
            update_app.push_str("\"id\" = \"id\"");
        }
        update_app.push_str(" WHERE \"id\" = ?");

        Ok(TableMeta {
            name,
            defs,
            insert: format!("INSERT INTO {table} ({all}) VALUES ({placeholders})"),
            upsert: format!("INSERT OR REPLACE INTO {table} ({all}) VALUES ({placeholders})"),
            delete: format!("DELETE FROM {table} WHERE \"id\" = ?"),
            select_by_id: format!("SELECT {all} FROM {table} WHERE \"id\" = ?"),
            select_all: sync_core::sql::select_prefix(
                &sync_core::sql::Sqlite,
                name,
                columns.iter().map(|c| c.name.as_str()),
            ),
            update_app,
            columns,
            field_columns,
            selects: Default::default(),
        })
    }

    /// The SQL of a query on this table (`SELECT <every column> ..`), compiled once per
    /// shape (see [`sync_core::sql::SelectCache`]).
    pub(crate) fn select(&self, spec: &sync_core::query::QuerySpec) -> Result<sync_core::sql::CachedSelect> {
        // The store thread is the only one that compiles: the lock is never contended,
        // and a panic while holding it leaves nothing half-done worth refusing.
        let mut selects = self.selects.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(selects.select(&sync_core::sql::Sqlite, &self.select_all, spec, self)?)
    }

    pub(crate) fn create_table_sql(&self) -> String {
        let cols = self.columns.iter().map(LocalColumn::ddl).collect::<Vec<_>>().join(", ");
        format!("CREATE TABLE IF NOT EXISTS {} ({cols})", quote_ident(self.name))
    }

    pub(crate) fn create_index_sql(&self) -> Vec<String> {
        self.columns
            .iter()
            .filter(|c| c.index)
            .map(|c| {
                format!(
                    "CREATE INDEX IF NOT EXISTS {} ON {} ({})",
                    quote_ident(&format!("{}__{}_idx", self.name, c.name)),
                    quote_ident(self.name),
                    quote_ident(&c.name)
                )
            })
            .collect()
    }

    /// A stable description of the layout; a change means the table must be checked.
    pub(crate) fn fingerprint(&self) -> String {
        let mut s = String::new();
        for c in &self.columns {
            let _ = write!(s, "{}:{}:{}:{};", c.name, c.ty, u8::from(c.nullable), u8::from(c.index));
        }
        s
    }

    /// Columns that belong to the app (id, data and local-only), not the server.
    pub(crate) fn is_app_column(&self, i: usize) -> bool {
        !self.columns[i].role.is_server_managed()
    }

    /// A full row (column order) from the struct's values (field order). System
    /// columns a struct exposes are ignored here: the store owns them.
    pub(crate) fn row_from_fields(&self, fields: Vec<Value>) -> Vec<Value> {
        let mut row = self.empty_row();
        for (value, &col) in fields.into_iter().zip(&self.field_columns) {
            if self.is_app_column(col) {
                row[col] = value;
            }
        }
        row
    }

    /// A row of nulls, `deleted = false`.
    pub(crate) fn empty_row(&self) -> Vec<Value> {
        self.columns
            .iter()
            .map(|c| if c.role == FieldRole::Deleted { Value::Bool(false) } else { Value::Null })
            .collect()
    }

    /// The row of a server tombstone of item `id`: only what deleting it locally needs.
    pub(crate) fn tombstone_row(&self, id: &str) -> Vec<Value> {
        let mut row = self.empty_row();
        row[0] = Value::String(id.to_owned());
        if let Some(i) = self.column_index(system::DELETED) {
            row[i] = Value::Bool(true);
        }
        row
    }

    /// The Rust field a column of this table shows, if the struct has one.
    pub(crate) fn field_of_column(&self, column: &str) -> Option<&'static str> {
        let i = self.column_index(column)?;
        self.field_columns.iter().position(|&c| c == i).map(|f| self.defs[f].field)
    }

    /// The struct's values (field order) from a full row.
    pub(crate) fn fields_from_row(&self, row: &[Value]) -> Vec<Value> {
        self.field_columns.iter().map(|&i| row[i].clone()).collect()
    }

    /// Reads a full row from a `select_all` result row.
    pub(crate) fn read_row(&self, r: &rusqlite::Row<'_>) -> Result<Vec<Value>> {
        let mut row = Vec::with_capacity(self.columns.len());
        for i in 0..self.columns.len() {
            row.push(self.read_column(r, i)?);
        }
        Ok(row)
    }

    fn read_column(&self, r: &rusqlite::Row<'_>, i: usize) -> Result<Value> {
        Value::from_sql(r.get_ref(i)?, self.columns[i].ty).map_err(|e| {
            let source = sync_core::DecodeError { field: self.field_name(i), message: e.0 };
            self.decode_error(stored_id(r), source)
        })
    }

    /// The struct straight from a `select_all` result row: reads only the columns the
    /// struct has, in field order (what [`TableMeta::decode`] of
    /// [`TableMeta::read_row`] gives, without the full row and its copies).
    #[inline]
    pub(crate) fn decode_sql_row<E: sync_core::SyncEntity>(&self, r: &rusqlite::Row<'_>) -> Result<E> {
        sync_core::__private::RowReader::new(r, &self.field_columns, E::FIELD_DEFS)
            .and_then(|reader| E::from_row(&reader))
            .map_err(|source| self.decode_error(stored_id(r), source))
    }

    /// The struct from a full row.
    pub(crate) fn decode<E: sync_core::SyncEntity>(&self, row: &[Value]) -> Result<E> {
        E::from_values(self.fields_from_row(row)).map_err(|source| {
            let id = match row.first() {
                Some(Value::String(id)) => Some(id.clone()),
                _ => None,
            };
            self.decode_error(id, source)
        })
    }

    /// A row of this table that does not read, named by its id.
    #[cold]
    fn decode_error(&self, id: Option<String>, source: sync_core::DecodeError) -> Error {
        Error::Decode { table: self.name.to_owned(), id, source }
    }

    fn field_name(&self, column: usize) -> &'static str {
        self.field_columns.iter().position(|&c| c == column).map_or("<system column>", |f| self.defs[f].field)
    }

    /// The full row as a JSON object keyed by column name (the form kept in the queue
    /// for deletes and in the error table).
    pub(crate) fn row_to_json(&self, row: &[Value]) -> serde_json::Value {
        let map = self.columns.iter().zip(row).map(|(c, v)| (c.name.clone(), v.to_json())).collect();
        serde_json::Value::Object(map)
    }

    /// A full row from a JSON object keyed by column name (missing keys are null).
    /// Column types are checked; nullability is not (the caller decides).
    pub(crate) fn row_from_json(&self, json: &serde_json::Value) -> Result<Vec<Value>> {
        self.json_to_row(json).map_err(|source| {
            let id = json.get(system::ID).and_then(serde_json::Value::as_str).map(str::to_owned);
            self.decode_error(id, source)
        })
    }

    fn json_to_row(&self, json: &serde_json::Value) -> Result<Vec<Value>, sync_core::DecodeError> {
        let mut row = self.empty_row();
        for (i, c) in self.columns.iter().enumerate() {
            if let Some(j) = json.get(&c.name) {
                let v = Value::from_json(j, c.ty)
                    .map_err(|e| sync_core::DecodeError { field: self.field_name(i), message: e.0 })?;
                if !(c.role == FieldRole::Deleted && v.is_null()) {
                    row[i] = v;
                }
            }
        }
        Ok(row)
    }

    /// The row operation `op_id` keeps in the queue (a delete's item, as
    /// [`TableMeta::row_to_json`] wrote it). One that does not read is an
    /// [`Error::InvalidQueuedItem`] naming the table and the operation, never a row of
    /// nulls.
    pub(crate) fn row_from_queued_item(&self, op_id: i64, text: &str) -> Result<Vec<Value>> {
        let invalid = |source: Box<dyn std::error::Error + Send + Sync>| Error::InvalidQueuedItem {
            table: self.name.to_owned(),
            op_id,
            source,
        };
        let json: serde_json::Value = serde_json::from_str(text).map_err(|e| invalid(Box::new(e)))?;
        if !json.is_object() {
            return Err(invalid("it is not a JSON object".into()));
        }
        self.json_to_row(&json).map_err(|e| invalid(Box::new(e)))
    }

    /// The struct from a JSON object keyed by column name.
    pub(crate) fn decode_json<E: sync_core::SyncEntity>(&self, json: &serde_json::Value) -> Result<E> {
        self.decode(&self.row_from_json(json)?)
    }

    /// The body a push sends: the id and the data columns (never local-only or
    /// system columns).
    pub(crate) fn push_json(&self, row: &[Value]) -> serde_json::Value {
        let map = self
            .columns
            .iter()
            .zip(row)
            .filter(|(c, _)| matches!(c.role, FieldRole::Id | FieldRole::Data))
            .map(|(c, v)| (c.name.clone(), v.to_json()))
            .collect();
        serde_json::Value::Object(map)
    }

    /// Whether two rows hold the same data columns (what a push sends).
    pub(crate) fn same_data(&self, a: &[Value], b: &[Value]) -> bool {
        self.columns.iter().enumerate().filter(|(_, c)| c.role == FieldRole::Data).all(|(i, _)| a[i] == b[i])
    }

    /// Whether the table has local-only columns (that a server copy must not erase).
    pub(crate) fn has_local_only(&self) -> bool {
        self.columns.iter().any(|c| c.role == FieldRole::LocalOnly)
    }

    /// Copies the local-only columns of `from` into `row`.
    pub(crate) fn keep_local_only(&self, row: &mut [Value], from: &[Value]) {
        for (i, c) in self.columns.iter().enumerate() {
            if c.role == FieldRole::LocalOnly {
                row[i] = from[i].clone();
            }
        }
    }

    /// Copies the server-managed columns (version, timestamps, deleted) of `from`.
    pub(crate) fn copy_server_columns(&self, row: &mut [Value], from: &[Value]) {
        for (i, c) in self.columns.iter().enumerate() {
            if c.role.is_server_managed() {
                row[i] = from[i].clone();
            }
        }
    }

    /// The row's `version`, if it has one.
    pub(crate) fn version_of(&self, row: &[Value]) -> Option<String> {
        match self.column_index(sync_core::system::VERSION).map(|i| &row[i]) {
            Some(Value::String(v)) => Some(v.clone()),
            _ => None,
        }
    }

    /// Whether the row is a tombstone (`deleted = true`).
    pub(crate) fn is_deleted(&self, row: &[Value]) -> bool {
        self.column_index(sync_core::system::DELETED).is_some_and(|i| row[i] == Value::Bool(true))
    }

    pub(crate) fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Checks values the store cannot hold faithfully.
    pub(crate) fn validate_row(&self, row: &[Value]) -> Result<()> {
        for (c, v) in self.columns.iter().zip(row) {
            let reason = match v {
                Value::Float(f) if !f.is_finite() => Some(format!("{f} cannot be stored (only finite floats)")),
                Value::DateTime(t) if !sync_core::datetime::in_range(*t) => {
                    Some(format!("{t} is outside the years 0000-9999"))
                }
                Value::Null if !c.nullable && c.role != FieldRole::Deleted => {
                    Some("null in a non-optional column".into())
                }
                _ => None,
            };
            if let Some(reason) = reason {
                return Err(Error::InvalidValue { table: self.name.to_owned(), column: c.name.clone(), reason });
            }
        }
        Ok(())
    }
}

impl FilterSchema for TableMeta {
    fn column(&self, name: &str) -> Option<(ColumnType, bool)> {
        self.column_index(name).map(|i| (self.columns[i].ty, self.columns[i].nullable))
    }
}

/// The id of a stored row being read (its first column), for an error about it.
#[cold]
fn stored_id(r: &rusqlite::Row<'_>) -> Option<String> {
    match r.get_ref(0) {
        Ok(rusqlite::types::ValueRef::Text(id)) => Some(String::from_utf8_lossy(id).into_owned()),
        _ => None,
    }
}

/// The id rules of the store: not blank, no control characters, at most 255 chars.
pub(crate) fn validate_id(table: &str, id: &str) -> Result<()> {
    let reason = if id.trim().is_empty() {
        Some("an id may not be blank")
    } else if id.chars().count() > 255 {
        Some("an id may not be longer than 255 characters")
    } else if id.chars().any(char::is_control) {
        Some("an id may not contain control characters")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidId { table: table.to_owned(), id: id.chars().take(64).collect(), reason }),
        None => Ok(()),
    }
}
