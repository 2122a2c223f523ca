//! Untyped values and column types: what a field turns into on its way to SQLite,
//! to JSON and into a query.

use std::fmt;

use time::OffsetDateTime;

/// The storage and wire type of a column.
///
/// This is the type vocabulary shared by the client, the query AST and the server's
/// tables file (`string bool int float datetime json bytes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// UTF-8 text (`String`, `uuid::Uuid`).
    String,
    /// `bool`, stored as 0/1.
    Bool,
    /// 64-bit signed integer (`i32`, `i64`).
    Int,
    /// 64-bit float (`f64`).
    Float,
    /// A UTC timestamp with millisecond precision, stored as
    /// `YYYY-MM-DDTHH:MM:SS.mmmZ` text so that text order is time order.
    DateTime,
    /// Arbitrary JSON (`serde_json::Value`), stored as JSON text.
    Json,
    /// Bytes (`Vec<u8>`), a BLOB locally and base64 on the wire.
    Bytes,
}

impl ColumnType {
    /// The name used in the server's tables file and in error messages.
    pub const fn name(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Bool => "bool",
            ColumnType::Int => "int",
            ColumnType::Float => "float",
            ColumnType::DateTime => "datetime",
            ColumnType::Json => "json",
            ColumnType::Bytes => "bytes",
        }
    }

    /// Parses a name produced by [`ColumnType::name`].
    pub fn from_name(name: &str) -> Option<ColumnType> {
        Some(match name {
            "string" => ColumnType::String,
            "bool" => ColumnType::Bool,
            "int" => ColumnType::Int,
            "float" => ColumnType::Float,
            "datetime" => ColumnType::DateTime,
            "json" => ColumnType::Json,
            "bytes" => ColumnType::Bytes,
            _ => return None,
        })
    }

    /// The SQLite declared type; chosen so that column affinity never rewrites a value.
    pub const fn sqlite_decl(self) -> &'static str {
        match self {
            ColumnType::String | ColumnType::DateTime | ColumnType::Json => "TEXT",
            ColumnType::Bool | ColumnType::Int => "INTEGER",
            ColumnType::Float => "REAL",
            ColumnType::Bytes => "BLOB",
        }
    }

    /// Whether values of this type can be ordered and compared with `gt`/`lt`.
    pub const fn is_ordered(self) -> bool {
        !matches!(self, ColumnType::Json | ColumnType::Bytes)
    }

    /// Whether this is a numeric type (`int` and `float` compare with each other).
    pub const fn is_numeric(self) -> bool {
        matches!(self, ColumnType::Int | ColumnType::Float)
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An untyped value: a field's content, a query literal, a column of a row.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// SQL `NULL`, JSON `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A finite float.
    Float(f64),
    /// Text.
    String(String),
    /// A timestamp, always UTC with whole milliseconds (see [`Value::datetime`]).
    DateTime(OffsetDateTime),
    /// JSON.
    Json(serde_json::Value),
    /// Bytes.
    Bytes(Vec<u8>),
}

impl Value {
    /// A timestamp value, normalized to UTC and truncated to whole milliseconds
    /// (the precision of the protocol and of the local store).
    pub fn datetime(t: OffsetDateTime) -> Value {
        Value::DateTime(crate::datetime::normalize(t))
    }

    /// The column type of this value, `None` for `Null`.
    pub fn column_type(&self) -> Option<ColumnType> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(_) => ColumnType::Bool,
            Value::Int(_) => ColumnType::Int,
            Value::Float(_) => ColumnType::Float,
            Value::String(_) => ColumnType::String,
            Value::DateTime(_) => ColumnType::DateTime,
            Value::Json(_) => ColumnType::Json,
            Value::Bytes(_) => ColumnType::Bytes,
        })
    }

    /// Whether this is `Null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value as Sql, ValueRef};
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Bool(b) => ToSqlOutput::Owned(Sql::Integer(i64::from(*b))),
            Value::Int(i) => ToSqlOutput::Owned(Sql::Integer(*i)),
            Value::Float(f) => ToSqlOutput::Owned(Sql::Real(*f)),
            Value::String(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::DateTime(t) => ToSqlOutput::Owned(Sql::Text(crate::datetime::format(*t))),
            Value::Json(j) => ToSqlOutput::Owned(Sql::Text(j.to_string())),
            Value::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

impl Value {
    /// The JSON form of a value on the wire: timestamps as fixed-width text, bytes as
    /// base64, JSON as itself.
    pub fn to_json(&self) -> serde_json::Value {
        use base64::Engine as _;
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, serde_json::Value::Number)
            }
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::DateTime(t) => serde_json::Value::String(crate::datetime::format(*t)),
            Value::Json(j) => j.clone(),
            Value::Bytes(b) => serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        }
    }

    /// Reads a JSON value as a value of column type `ty`: the one set of rules by which
    /// the client reads server answers and the server reads request bodies.
    ///
    /// `null` is `Value::Null` (nullability is the caller's rule). A `json` column takes
    /// any JSON. A string column takes a string; a `bool` column `true`/`false`. An
    /// `int` column takes an integer that fits 64 bits, or a number without a fraction
    /// within that range (`5.0`, as JavaScript sends it). A `float` column takes any
    /// finite number. A `datetime` column takes RFC 3339 text (any offset, any
    /// fraction; kept in UTC at millisecond precision) of the years 0000-9999. A
    /// `bytes` column takes base64 text. Anything else is an error naming what was
    /// expected and what was found.
    pub fn from_json(json: &serde_json::Value, ty: ColumnType) -> Result<Value, ValueError> {
        use base64::Engine as _;
        use serde_json::Value as J;
        let wrong = |what: &str| ValueError(format!("expected {what}, found {}", json_kind(json)));
        Ok(match (ty, json) {
            (_, J::Null) => Value::Null,
            (ColumnType::Json, j) => Value::Json(j.clone()),
            (ColumnType::String, J::String(s)) => Value::String(s.clone()),
            (ColumnType::String, _) => return Err(wrong("a string")),
            (ColumnType::Bool, J::Bool(b)) => Value::Bool(*b),
            (ColumnType::Bool, _) => return Err(wrong("true or false")),
            (ColumnType::Int, J::Number(n)) => match n.as_i64().or_else(|| n.as_f64().and_then(integral)) {
                Some(i) => Value::Int(i),
                None => return Err(ValueError(format!("expected an integer that fits 64 bits, found {n}"))),
            },
            (ColumnType::Int, _) => return Err(wrong("an integer")),
            (ColumnType::Float, J::Number(n)) => match n.as_f64() {
                Some(f) if f.is_finite() => Value::Float(f),
                _ => return Err(ValueError(format!("expected a finite number, found {n}"))),
            },
            (ColumnType::Float, _) => return Err(wrong("a number")),
            (ColumnType::DateTime, J::String(s)) => match crate::datetime::parse(s) {
                Some(t) if crate::datetime::in_range(t) => Value::DateTime(t),
                _ => {
                    return Err(ValueError(format!(
                        "expected an RFC 3339 timestamp (years 0000-9999), found `{}`",
                        clip(s)
                    )));
                }
            },
            (ColumnType::DateTime, _) => return Err(wrong("a timestamp string")),
            (ColumnType::Bytes, J::String(s)) => match base64::engine::general_purpose::STANDARD.decode(s) {
                Ok(b) => Value::Bytes(b),
                Err(_) => return Err(ValueError("expected base64 text".into())),
            },
            (ColumnType::Bytes, _) => return Err(wrong("a base64 string")),
        })
    }

    /// Reads a SQLite value stored for a column of type `ty`.
    pub fn from_sql(v: rusqlite::types::ValueRef<'_>, ty: ColumnType) -> Result<Value, ValueError> {
        use rusqlite::types::ValueRef as S;
        let text = |b: &[u8]| {
            std::str::from_utf8(b).map(str::to_owned).map_err(|_| ValueError("stored text is not UTF-8".into()))
        };
        Ok(match (ty, v) {
            (_, S::Null) => Value::Null,
            (ColumnType::Bool, S::Integer(i)) => Value::Bool(i != 0),
            (ColumnType::Int, S::Integer(i)) => Value::Int(i),
            (ColumnType::Float, S::Real(f)) => Value::Float(f),
            (ColumnType::Float, S::Integer(i)) => Value::Float(i as f64),
            (ColumnType::String, S::Text(b)) => Value::String(text(b)?),
            (ColumnType::DateTime, S::Text(b)) => {
                let s = text(b)?;
                match crate::datetime::parse(&s) {
                    Some(t) => Value::DateTime(t),
                    None => Value::String(s),
                }
            }
            (ColumnType::Json, S::Text(b)) => Value::Json(
                serde_json::from_slice(b).map_err(|e| ValueError(format!("stored JSON does not parse: {e}")))?,
            ),
            (ColumnType::Bytes, S::Blob(b)) => Value::Bytes(b.to_vec()),
            (ty, other) => {
                return Err(ValueError(format!("stored {:?} value does not fit a {ty} column", other.data_type())));
            }
        })
    }
}

/// The integer a float holds exactly, if it has no fraction and lies within `i64`
/// (`-2^63 <= f < 2^63`): how an integer column reads `5.0`.
pub(crate) fn integral(f: f64) -> Option<i64> {
    // 2^63 as a float; every float below it and at least -2^63 converts exactly.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    (f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f)).then_some(f as i64)
}

/// At most 64 characters of foreign text in a message.
fn clip(s: &str) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}...", &s[..i]).into(),
        None => s.into(),
    }
}

/// What a JSON value is, for messages: `a string`, `an object`, ...
pub fn json_kind(json: &serde_json::Value) -> &'static str {
    match json {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A value of the wrong type or shape for a field type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueError(pub String);

impl ValueError {
    pub(crate) fn expected(what: &str, got: &Value) -> ValueError {
        ValueError(format!("expected {what}, found {}", describe(got)))
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        other => format!("a {} value", other.column_type().map_or("null", ColumnType::name)),
    }
}
