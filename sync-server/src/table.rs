//! The server's description of one table: built from a `SyncEntity` struct or from the
//! tables file, and the one thing storage, validation and JSON shaping read.

use sync_core::odata::FilterSchema;
use sync_core::system::{CREATED_AT, DELETED, ID, UPDATED_AT, VERSION};
use sync_core::{ColumnType, FieldDef, FieldRole, SyncEntity, Value};

/// One data column of a table (system columns are implied).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnDef {
    /// The column name, in the database and on the wire.
    pub name: String,
    /// The column type.
    pub ty: ColumnType,
    /// Whether the column accepts `null`. A non-nullable column must be present and
    /// non-null in every inserted or replaced item, so that a typed client can always
    /// decode what the server stores.
    pub nullable: bool,
}

/// A table the server serves: its name, its data columns and whether deletes keep a
/// tombstone.
///
/// Every table also has the system columns `id` (text primary key), `version`,
/// `updatedAt`, `createdAt` and `deleted`; they are not listed in `columns`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableDef {
    /// The table name: the `{t}` of `/tables/{t}` and the database table's name.
    pub name: String,
    /// The data columns, in the order items list them.
    pub columns: Vec<ColumnDef>,
    /// Whether a delete keeps the row as a tombstone (`deleted = true`) so incremental
    /// readers learn about it (the default), or removes it.
    pub soft_delete: bool,
    /// The owner column of a per-user table (see [`TableDef::owner_column`]), `None` for
    /// a table every caller shares.
    pub owner_column: Option<String>,
    /// For a table registered from a struct ([`TableDef::from_entity`]): the check of
    /// data values against the struct's Rust types (see [`TypedCheck`]).
    typed: Option<TypedCheck>,
}

/// Checks a body's data values (one slot per data column, `None` when absent) against
/// the Rust types of the struct a table was registered from: a column's wire type says
/// `int` for an `i32` and `string` for a `uuid::Uuid`, so without this the server would
/// store 2^31 or `"not-a-uuid"`, and every typed client would then fail to read the
/// table back.
#[derive(Clone, Copy)]
pub(crate) struct TypedCheck(fn(&[Option<Value>]) -> Result<(), String>);

impl TypedCheck {
    pub(crate) fn check(&self, values: &[Option<Value>]) -> Result<(), String> {
        (self.0)(values)
    }
}

impl std::fmt::Debug for TypedCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TypedCheck")
    }
}

// The check follows from the columns, which the tables compare anyway.
impl PartialEq for TypedCheck {
    fn eq(&self, _: &TypedCheck) -> bool {
        true
    }
}

impl Eq for TypedCheck {}

/// Decodes `E` from the given data values and a stand-in for every other field; only a
/// refusal of a given value counts (a field type of the app's own may refuse a stand-in).
fn typed_check<E: SyncEntity>(values: &[Option<Value>]) -> Result<(), String> {
    fn stand_in(def: &FieldDef) -> Value {
        if def.nullable {
            return Value::Null;
        }
        match def.ty {
            // Also a valid `uuid::Uuid`.
            ColumnType::String => Value::String("00000000-0000-0000-0000-000000000000".into()),
            ColumnType::Bool => Value::Bool(false),
            ColumnType::Int => Value::Int(0),
            ColumnType::Float => Value::Float(0.0),
            ColumnType::DateTime => Value::DateTime(time::OffsetDateTime::UNIX_EPOCH),
            ColumnType::Json => Value::Json(serde_json::Value::Null),
            ColumnType::Bytes => Value::Bytes(Vec::new()),
        }
    }
    let mut data = values.iter();
    let mut given_fields = Vec::new();
    let fields = E::FIELD_DEFS
        .iter()
        .map(|def| {
            let given = if def.role == FieldRole::Data { data.next().cloned().flatten() } else { None };
            if given.is_some() {
                given_fields.push(def.field);
            }
            given.unwrap_or_else(|| stand_in(def))
        })
        .collect();
    match E::from_values(fields) {
        Err(e) if given_fields.contains(&e.field) => {
            let column = E::FIELD_DEFS.iter().find(|d| d.field == e.field).map_or(e.field, |d| d.column);
            Err(format!("property `{column}`: {}", e.message))
        }
        _ => Ok(()),
    }
}

impl TableDef {
    /// A table with no data columns yet, with soft delete on.
    pub fn new(name: impl Into<String>) -> TableDef {
        TableDef { name: name.into(), columns: Vec::new(), soft_delete: true, owner_column: None, typed: None }
    }

    /// Adds a data column.
    pub fn column(mut self, name: impl Into<String>, ty: ColumnType, nullable: bool) -> TableDef {
        self.columns.push(ColumnDef { name: name.into(), ty, nullable });
        self
    }

    /// Sets whether deletes keep tombstones.
    pub fn soft_delete(mut self, soft_delete: bool) -> TableDef {
        self.soft_delete = soft_delete;
        self
    }

    /// Makes the table per-user: `column` holds the `sub` of the token that inserted a
    /// row, and every read and write is limited to the caller's own rows (DESIGN.md
    /// section 9). The server always sets it from the token; a value a client sends is
    /// ignored. Rows are keyed by `(owner, id)`, so ids of different users never
    /// collide and an id another user holds is simply free for you: nothing tells a
    /// caller that someone else has a row with that id.
    ///
    /// When `column` is one of the data columns (it must then be a `string`), it is
    /// served read-only; otherwise it is a server-only column that clients neither see
    /// nor can filter on. Owned tables need authentication (`Auth::jwt_hs256`).
    pub fn owner_column(mut self, column: impl Into<String>) -> TableDef {
        self.owner_column = Some(column.into());
        self
    }

    /// The owner column when it is not one of the data columns (stored, never served).
    pub fn hidden_owner(&self) -> Option<&str> {
        self.owner_column.as_deref().filter(|owner| self.column_index(owner).is_none())
    }

    /// The index of the owner column among the data columns, when it is served.
    pub(crate) fn served_owner(&self) -> Option<usize> {
        self.owner_column.as_deref().and_then(|owner| self.column_index(owner))
    }

    /// The table of a `SyncEntity` struct: its data fields, without local-only fields
    /// (never served) and without the struct's views of system columns.
    pub fn from_entity<E: SyncEntity>() -> TableDef {
        let columns = E::FIELD_DEFS
            .iter()
            .filter(|f| f.role == FieldRole::Data)
            .map(|f| ColumnDef { name: f.column.to_owned(), ty: f.ty, nullable: f.nullable })
            .collect();
        TableDef {
            name: E::TABLE.to_owned(),
            columns,
            soft_delete: true,
            owner_column: None,
            typed: Some(TypedCheck(typed_check::<E>)),
        }
    }

    /// The check of data values against the registering struct's Rust types, if any.
    pub(crate) fn typed_check(&self) -> Option<TypedCheck> {
        self.typed
    }

    /// The index of a data column.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Every stored column in storage order: `id`, the data columns, then `version`,
    /// `updatedAt`, `createdAt`, `deleted`.
    pub fn stored_columns(&self) -> Vec<&str> {
        let mut cols = Vec::with_capacity(self.columns.len() + 5);
        cols.push(ID);
        cols.extend(self.columns.iter().map(|c| c.name.as_str()));
        cols.extend([VERSION, UPDATED_AT, CREATED_AT, DELETED]);
        cols
    }
}

/// What a storage compiles filters against: the table's columns plus a server-only
/// owner column (which the HTTP layer adds to filters as an AST node; clients cannot
/// name it).
#[derive(Debug)]
pub(crate) struct StorageSchema<'a>(pub(crate) &'a TableDef);

impl FilterSchema for StorageSchema<'_> {
    fn column(&self, name: &str) -> Option<(ColumnType, bool)> {
        match self.0.hidden_owner() {
            Some(owner) if owner == name => Some((ColumnType::String, false)),
            _ => FilterSchema::column(self.0, name),
        }
    }
}

/// Filters and `$orderby` may name the data columns and every system column.
impl FilterSchema for TableDef {
    fn column(&self, name: &str) -> Option<(ColumnType, bool)> {
        match name {
            ID | VERSION => Some((ColumnType::String, false)),
            UPDATED_AT | CREATED_AT => Some((ColumnType::DateTime, false)),
            DELETED => Some((ColumnType::Bool, false)),
            _ => self.columns.iter().find(|c| c.name == name).map(|c| (c.ty, c.nullable)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_columns_are_checked() {
        let t = TableDef::new("T").column("userId", ColumnType::String, true).owner_column("userId");
        assert!(t.validate().is_ok());
        assert_eq!((t.served_owner(), t.hidden_owner()), (Some(0), None));
        let hidden = TableDef::new("T").owner_column("owner");
        assert!(hidden.validate().is_ok());
        assert_eq!((hidden.served_owner(), hidden.hidden_owner()), (None, Some("owner")));
        assert_eq!(FilterSchema::column(&hidden, "owner"), None, "clients cannot name a hidden owner");
        assert_eq!(FilterSchema::column(&StorageSchema(&hidden), "owner"), Some((ColumnType::String, false)));

        for (def, needle) in [
            (TableDef::new("T").column("n", ColumnType::Int, true).owner_column("n"), "string"),
            (TableDef::new("T").column("userId", ColumnType::String, true).owner_column("userid"), "letter case"),
            (TableDef::new("T").owner_column("version"), "system"),
            (TableDef::new("T").owner_column("a b"), "identifier"),
        ] {
            let err = def.validate().unwrap_err().to_string();
            assert!(err.contains("owner column") && err.contains(needle), "{err}");
        }
    }

    #[test]
    fn schema_includes_system_columns() {
        let t = TableDef::new("T").column("n", ColumnType::Int, true);
        assert_eq!(FilterSchema::column(&t, "n"), Some((ColumnType::Int, true)));
        assert_eq!(FilterSchema::column(&t, "updatedAt"), Some((ColumnType::DateTime, false)));
        assert_eq!(FilterSchema::column(&t, "deleted"), Some((ColumnType::Bool, false)));
        assert_eq!(FilterSchema::column(&t, "nope"), None);
        assert_eq!(t.stored_columns(), ["id", "n", "version", "updatedAt", "createdAt", "deleted"]);
    }
}
