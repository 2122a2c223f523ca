//! The model traits: what `#[derive(SyncEntity)]` implements, and the value trait
//! every field type implements.

use rusqlite::types::ValueRef;
use time::OffsetDateTime;

use crate::value::{ColumnType, Value, ValueError};

/// What a struct field is to the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldRole {
    /// The primary key, the `id` system property.
    Id,
    /// An ordinary column, stored locally and sent to the server.
    Data,
    /// Stored locally, never sent to the server nor read from it.
    LocalOnly,
    /// A view of the `version` system column.
    Version,
    /// A view of the `updatedAt` system column.
    UpdatedAt,
    /// A view of the `createdAt` system column.
    CreatedAt,
    /// A view of the `deleted` system column.
    Deleted,
}

impl FieldRole {
    /// Whether the column is the server's to set (`version`, `updatedAt`, `createdAt`,
    /// `deleted`): local writes never change it.
    pub const fn is_server_managed(self) -> bool {
        matches!(self, FieldRole::Version | FieldRole::UpdatedAt | FieldRole::CreatedAt | FieldRole::Deleted)
    }

    /// The system column this role views, if any.
    pub const fn system_column(self) -> Option<&'static str> {
        match self {
            FieldRole::Id => Some(crate::system::ID),
            FieldRole::Version => Some(crate::system::VERSION),
            FieldRole::UpdatedAt => Some(crate::system::UPDATED_AT),
            FieldRole::CreatedAt => Some(crate::system::CREATED_AT),
            FieldRole::Deleted => Some(crate::system::DELETED),
            FieldRole::Data | FieldRole::LocalOnly => None,
        }
    }
}

/// One struct field as data: the schema the runtime builds tables, SQL and JSON from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldDef {
    /// The Rust field name.
    pub field: &'static str,
    /// The column name, locally and on the wire (after `rename` / `rename_all`;
    /// the system column's name for system roles).
    pub column: &'static str,
    /// The column type.
    pub ty: ColumnType,
    /// Whether the field is an `Option<T>`.
    pub nullable: bool,
    /// What the field is to the table.
    pub role: FieldRole,
    /// Whether a local index is created on this column (`#[sync(index)]`).
    pub index: bool,
}

/// A struct that maps to a synced table. Implement it with `#[derive(SyncEntity)]`.
///
/// The trait is schema as data: a table name and a static list of fields, plus the
/// conversion of one struct to and from one value per field, in [`SyncEntity::FIELD_DEFS`]
/// order. Everything else (DDL, SQL, JSON, the queue) is built by the runtime from
/// these.
pub trait SyncEntity: Sized + Send + Sync + 'static {
    /// The table name, locally and on the server.
    const TABLE: &'static str;
    /// Every field of the struct, in declaration order.
    ///
    /// (The typed column handles are a separate, generated inherent constant:
    /// `TodoItem::FIELDS.text`.)
    const FIELD_DEFS: &'static [FieldDef];

    /// The id of this item.
    fn id(&self) -> &str;
    /// Sets the id (used when the runtime makes one for an empty id).
    fn set_id(&mut self, id: String);
    /// One value per field, in [`SyncEntity::FIELD_DEFS`] order.
    fn to_values(&self) -> Vec<Value>;
    /// Builds the struct from one value per field, in [`SyncEntity::FIELD_DEFS`] order.
    fn from_values(values: Vec<Value>) -> Result<Self, DecodeError>;

    /// Builds the struct straight from a stored row, field by field, without the
    /// intermediate values of [`SyncEntity::from_values`] (which it must agree with).
    /// The derive implements it; the default goes through `from_values`.
    #[doc(hidden)]
    fn from_row(row: &RowReader<'_>) -> Result<Self, DecodeError> {
        Self::from_values(row.values()?)
    }
}

/// A local row being read, handed to [`SyncEntity::from_row`]: field `i` (in
/// [`SyncEntity::FIELD_DEFS`] order) is read from its column in place.
#[doc(hidden)]
pub struct RowReader<'a> {
    row: &'a rusqlite::Row<'a>,
    /// The row's column of each field.
    columns: &'a [usize],
    /// The field definitions, in the same order.
    defs: &'static [FieldDef],
}

impl std::fmt::Debug for RowReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowReader").field("columns", &self.columns).finish_non_exhaustive()
    }
}

impl<'a> RowReader<'a> {
    /// A reader of `row`, field `i` at column `columns[i]`; fails when a column is
    /// beyond the row, so that reading a field cannot.
    #[inline]
    pub fn new(
        row: &'a rusqlite::Row<'a>,
        columns: &'a [usize],
        defs: &'static [FieldDef],
    ) -> Result<Self, DecodeError> {
        let width = row.as_ref().column_count();
        match columns.iter().position(|&c| c >= width) {
            None => Ok(RowReader { row, columns, defs }),
            Some(i) => Err(DecodeError::missing(defs.get(i).map_or("<unknown field>", |d| d.field))),
        }
    }

    // Inlined into the derived decoder, with the error path kept out of line: this runs
    // once per field of every row a query reads.
    #[inline]
    fn stored(&self, index: usize, field: &'static str) -> Result<Stored<'_>, DecodeError> {
        match self.columns.get(index) {
            // In the row: `new` checked every column.
            Some(&column) => Ok(Stored(self.row.get_ref_unwrap(column))),
            None => Err(DecodeError::missing(field)),
        }
    }

    /// Every field as a [`Value`], in order.
    fn values(&self) -> Result<Vec<Value>, DecodeError> {
        self.defs
            .iter()
            .enumerate()
            .map(|(i, def)| {
                let stored = self.stored(i, def.field)?;
                Value::from_sql(stored.0, def.ty).map_err(|e| DecodeError::new(def.field, e))
            })
            .collect()
    }
}

/// Where a derived decoder reads its fields from, in [`SyncEntity::FIELD_DEFS`] order:
/// a vector of values (`from_values`) or a stored row (`from_row`).
#[doc(hidden)]
pub trait FieldSource {
    /// Field `index`, named `field` for errors.
    fn field<T: FieldValue>(&mut self, index: usize, field: &'static str) -> Result<T, DecodeError>;
}

impl FieldSource for std::vec::IntoIter<Value> {
    fn field<T: FieldValue>(&mut self, _index: usize, field: &'static str) -> Result<T, DecodeError> {
        match self.next() {
            Some(v) => T::from_value(v).map_err(|e| DecodeError::new(field, e)),
            None => Err(DecodeError::missing(field)),
        }
    }
}

impl FieldSource for &RowReader<'_> {
    fn field<T: FieldValue>(&mut self, index: usize, field: &'static str) -> Result<T, DecodeError> {
        let stored = self.stored(index, field)?;
        T::from_stored(stored).map_err(|e| DecodeError::new(field, e))
    }
}

/// A value as SQLite holds it, borrowed from the row being read.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub struct Stored<'a>(rusqlite::types::ValueRef<'a>);

impl Stored<'_> {
    /// The value as a [`Value`] of the field type's column type (the general path).
    fn to_value<T: FieldValue>(self) -> Result<Value, ValueError> {
        Value::from_sql(self.0, T::TYPE)
    }

    /// The field through the general path (a [`Value`] first), for what the fast
    /// paths of `from_stored` do not read directly.
    #[cold]
    fn convert<T: FieldValue>(self) -> Result<T, ValueError> {
        T::from_value(self.to_value::<T>()?)
    }
}

/// A value that does not fit a field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {message}")]
pub struct DecodeError {
    /// The Rust field name.
    pub field: &'static str,
    /// What was wrong.
    pub message: String,
}

impl DecodeError {
    /// Wraps a [`ValueError`] with the field it was met in.
    #[cold]
    pub fn new(field: &'static str, err: ValueError) -> DecodeError {
        DecodeError { field, message: err.0 }
    }

    #[cold]
    fn missing(field: &'static str) -> DecodeError {
        DecodeError { field, message: "missing value".into() }
    }
}

/// A Rust type that can be a field of a `#[derive(SyncEntity)]` struct.
///
/// Implemented for `String`, `bool`, `i32`, `i64`, `f64`, `Vec<u8>`,
/// `time::OffsetDateTime`, `chrono::DateTime<Utc>` (feature `chrono`), `uuid::Uuid`
/// (feature `uuid`), `serde_json::Value`, and `Option<T>` of each. For any other type,
/// convert it in your code, or store it as `serde_json::Value`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a supported field type for #[derive(SyncEntity)]",
    label = "unsupported field type",
    note = "supported: String, bool, i32, i64, f64, Vec<u8>, time::OffsetDateTime, uuid::Uuid, serde_json::Value, and Option<T> of those (chrono::DateTime<Utc> with the `chrono` feature)",
    note = "for another type, store it as serde_json::Value (or convert it to one of the supported types)"
)]
pub trait FieldValue: Sized {
    /// The column type.
    const TYPE: ColumnType;
    /// Whether the field may be null (`Option<T>`).
    const NULLABLE: bool;
    /// The field's value.
    fn to_value(&self) -> Value;
    /// Reads the field back.
    fn from_value(value: Value) -> Result<Self, ValueError>;
    /// Reads the field from its stored form in place: what
    /// `from_value(Value::from_sql(stored, TYPE))` gives, without the intermediate value.
    #[doc(hidden)]
    fn from_stored(stored: Stored<'_>) -> Result<Self, ValueError> {
        stored.convert()
    }

    /// Reads field `index` (named `field`) of `source`. The derive's decoder calls this
    /// as `<T as FieldValue>::read_field`, so that an unsupported field type meets the
    /// one unmet `T: FieldValue` of every other use, and is reported once.
    #[doc(hidden)]
    fn read_field<S: FieldSource>(source: &mut S, index: usize, field: &'static str) -> Result<Self, DecodeError> {
        source.field::<Self>(index, field)
    }
}

impl FieldValue for String {
    const TYPE: ColumnType = ColumnType::String;
    const NULLABLE: bool = false;
    fn to_value(&self) -> Value {
        Value::String(self.clone())
    }
    fn from_value(value: Value) -> Result<Self, ValueError> {
        match value {
            Value::String(s) => Ok(s),
            other => Err(ValueError::expected("a string", &other)),
        }
    }
    #[inline]
    fn from_stored(stored: Stored<'_>) -> Result<Self, ValueError> {
        match stored.0 {
            ValueRef::Text(b) => {
                std::str::from_utf8(b).map(str::to_owned).map_err(|_| ValueError("stored text is not UTF-8".into()))
            }
            _ => stored.convert(),
        }
    }
}

impl FieldValue for bool {
    const TYPE: ColumnType = ColumnType::Bool;
    const NULLABLE: bool = false;
    fn to_value(&self) -> Value {
        Value::Bool(*self)
    }
    fn from_value(value: Value) -> Result<Self, ValueError> {
        match value {
            Value::Bool(b) => Ok(b),
            Value::Int(0) => Ok(false),
            Value::Int(1) => Ok(true),
            other => Err(ValueError::expected("a bool", &other)),
        }
    }
    #[inline]
    fn from_stored(stored: Stored<'_>) -> Result<Self, ValueError> {
        match stored.0 {
            ValueRef::Integer(i) => Ok(i != 0),
            _ => stored.convert(),
        }
    }
}

impl FieldValue for i64 {
    const TYPE: ColumnType = ColumnType::Int;
    const NULLABLE: bool = false;
    fn to_value(&self) -> Value {
        Value::Int(*self)
    }
    fn from_value(value: Value) -> Result<Self, ValueError> {
        match value {
            Value::Int(i) => Ok(i),
            Value::Float(f) => {
                crate::value::integral(f).ok_or_else(|| ValueError(format!("expected an integer, found {f}")))
            }
            other => Err(ValueError::expected("an integer", &other)),
        }
    }
    #[inline]
    fn from_stored(stored: Stored<'_>) -> Result<Self, ValueError> {
        match stored.0 {
            ValueRef::Integer(i) => Ok(i),
            _ => stored.convert(),
        }
    }
}

impl FieldValue for i32 {
    const TYPE: ColumnType = ColumnType::Int;
    const NULLABLE: bool = false;
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
    fn from_value(value: Value) -> Result<Self, ValueError> {
        let wide = i64::from_value(value)?;
        i32::try_from(wide).map_err(|_| ValueError(format!("{wide} does not fit an i32")))
    }
}

impl FieldValue for f64 {
    const TYPE: ColumnType = ColumnType::Float;
    const NULLABLE: bool = false;
    fn to_value(&self) -> Value {
        Value::Float(*self)
    }
    fn from_value(value: Value) -> Result<Self, ValueError> {
        match value {
            Value::Float(f) => Ok(f),
            Value::Int(i) => Ok(i as f64),
            other => Err(ValueError::expected("a number", &other)),
        }
    }
    #[inline]
    fn from_stored(stored: Stored<'_>) -> Result<Self, ValueError> {
        match stored.0 {
            ValueRef::Real(f) => Ok(f),
            ValueRef::Integer(i) => Ok(i as f64),
            _ => stored.convert(),
        }
    }
}

impl FieldValue for Vec<u8> {
    const TYPE: ColumnType = ColumnType::Bytes;
    const NULLABLE: bool = false;
    fn to_value(&self) -> Value {
        Value::Bytes(self.clone())
    }
    fn from_value(value: Value) -> Result<Self, ValueError> {
        match value {
            Value::Bytes(b) => Ok(b),
            other => Err(ValueError::expected("bytes", &other)),
        }
    }
}

impl FieldValue for OffsetDateTime {
    const TYPE: ColumnType = ColumnType::DateTime;
    const NULLABLE: bool = false;
    fn to_value(&self) -> Value {
        Value::datetime(*self)
    }
    fn from_value(value: Value) -> Result<Self, ValueError> {
        match value {
            Value::DateTime(t) => Ok(t),
            Value::String(s) => {
                crate::datetime::parse(&s).ok_or_else(|| ValueError(format!("`{s}` is not an RFC 3339 timestamp")))
            }
            other => Err(ValueError::expected("a timestamp", &other)),
        }
    }
}

#[cfg(feature = "chrono")]
impl FieldValue for chrono::DateTime<chrono::Utc> {
    const TYPE: ColumnType = ColumnType::DateTime;
    const NULLABLE: bool = false;
    fn to_value(&self) -> Value {
        let nanos = i128::from(self.timestamp_millis()) * 1_000_000;
        match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(t) => Value::datetime(t),
            Err(_) => Value::Null,
        }
    }
    fn from_value(value: Value) -> Result<Self, ValueError> {
        let t = OffsetDateTime::from_value(value)?;
        let ms = i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
            .map_err(|_| ValueError("timestamp out of range".into()))?;
        chrono::DateTime::from_timestamp_millis(ms).ok_or_else(|| ValueError("timestamp out of range".into()))
    }
}

#[cfg(feature = "uuid")]
impl FieldValue for uuid::Uuid {
    const TYPE: ColumnType = ColumnType::String;
    const NULLABLE: bool = false;
    fn to_value(&self) -> Value {
        Value::String(self.hyphenated().to_string())
    }
    fn from_value(value: Value) -> Result<Self, ValueError> {
        match value {
            Value::String(s) => uuid::Uuid::parse_str(&s).map_err(|e| ValueError(format!("`{s}` is not a UUID: {e}"))),
            other => Err(ValueError::expected("a UUID string", &other)),
        }
    }
}

impl FieldValue for serde_json::Value {
    const TYPE: ColumnType = ColumnType::Json;
    const NULLABLE: bool = false;
    fn to_value(&self) -> Value {
        Value::Json(self.clone())
    }
    fn from_value(value: Value) -> Result<Self, ValueError> {
        match value {
            Value::Json(j) => Ok(j),
            Value::String(s) => serde_json::from_str(&s).map_err(|e| ValueError(format!("invalid JSON text: {e}"))),
            other => Err(ValueError::expected("JSON", &other)),
        }
    }
}

impl<T: NonOptional> FieldValue for Option<T> {
    const TYPE: ColumnType = T::TYPE;
    const NULLABLE: bool = true;
    fn to_value(&self) -> Value {
        match self {
            Some(v) => v.to_value(),
            None => Value::Null,
        }
    }
    fn from_value(value: Value) -> Result<Self, ValueError> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
    #[inline]
    fn from_stored(stored: Stored<'_>) -> Result<Self, ValueError> {
        match stored.0 {
            ValueRef::Null => Ok(None),
            _ => T::from_stored(stored).map(Some),
        }
    }
}

/// The field types an `Option` field can hold: every [`FieldValue`] that is not an
/// `Option` itself, so `Option<Option<T>>` is refused (a `null` could not say which
/// `None` it is), and so is an `Option` of a type that is no field type
/// (`Option<Box<T>>`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a supported type inside an `Option` field of #[derive(SyncEntity)]",
    label = "unsupported inside `Option<...>`",
    note = "an Option field holds one of: String, bool, i32, i64, f64, Vec<u8>, time::OffsetDateTime, uuid::Uuid, serde_json::Value (chrono::DateTime<Utc> with the `chrono` feature)",
    note = "one level only: `Option<Option<T>>` and `Option<Box<T>>` are not supported; write `Option<T>`"
)]
pub trait NonOptional: FieldValue {}
impl NonOptional for String {}
impl NonOptional for bool {}
impl NonOptional for i32 {}
impl NonOptional for i64 {}
impl NonOptional for f64 {}
impl NonOptional for Vec<u8> {}
impl NonOptional for OffsetDateTime {}
impl NonOptional for serde_json::Value {}
#[cfg(feature = "chrono")]
impl NonOptional for chrono::DateTime<chrono::Utc> {}
#[cfg(feature = "uuid")]
impl NonOptional for uuid::Uuid {}
