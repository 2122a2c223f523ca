//! Items on the wire: rows to JSON in the shape of each protocol generation, and request
//! bodies to column values, with the checks that make bad bodies a clear 400.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use sync_core::system::{CREATED_AT, DELETED, ID, UPDATED_AT, VERSION, is_system_column};
use sync_core::{ProtocolVersion, Value, datetime, json_kind};

use crate::problem::ApiError;
use crate::storage::Row;
use crate::table::TableDef;

/// Longest id the server accepts, in bytes.
pub(crate) const MAX_ID_LEN: usize = 255;

/// One property of an item as served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prop {
    Id,
    Data(usize),
    CreatedAt,
    UpdatedAt,
    Version,
    Deleted,
}

/// The properties of an item in `version`'s shape: `id`, the data columns, then the
/// system properties (v2 has `createdAt`, v3 does not).
pub(crate) fn default_props(table: &TableDef, version: ProtocolVersion) -> Vec<Prop> {
    let mut props = Vec::with_capacity(table.columns.len() + 5);
    props.push(Prop::Id);
    props.extend((0..table.columns.len()).map(Prop::Data));
    if version == ProtocolVersion::V2 {
        props.push(Prop::CreatedAt);
    }
    props.extend([Prop::UpdatedAt, Prop::Version, Prop::Deleted]);
    props
}

/// A property by its wire name, if `version` serves it.
pub(crate) fn prop_by_name(table: &TableDef, version: ProtocolVersion, name: &str) -> Option<Prop> {
    Some(match name {
        ID => Prop::Id,
        VERSION => Prop::Version,
        UPDATED_AT => Prop::UpdatedAt,
        DELETED => Prop::Deleted,
        CREATED_AT if version == ProtocolVersion::V2 => Prop::CreatedAt,
        _ => Prop::Data(table.column_index(name)?),
    })
}

/// A row as a JSON object with the given properties, in that order.
pub(crate) struct ItemJson<'a> {
    pub(crate) table: &'a TableDef,
    pub(crate) row: &'a Row,
    pub(crate) props: &'a [Prop],
}

impl Serialize for ItemJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.props.len()))?;
        for prop in self.props {
            match *prop {
                Prop::Id => map.serialize_entry(ID, &self.row.id)?,
                Prop::Data(i) => {
                    let value = self.row.values.get(i).unwrap_or(&Value::Null);
                    map.serialize_entry(&self.table.columns[i].name, &JsonValue(value))?;
                }
                Prop::CreatedAt => map.serialize_entry(CREATED_AT, &self.row.created_at)?,
                Prop::UpdatedAt => map.serialize_entry(UPDATED_AT, &self.row.updated_at)?,
                Prop::Version => map.serialize_entry(VERSION, &self.row.version)?,
                Prop::Deleted => map.serialize_entry(DELETED, &self.row.deleted)?,
            }
        }
        map.end()
    }
}

/// A value as JSON: timestamps as fixed-width text, bytes as base64, JSON inline.
struct JsonValue<'a>(&'a Value);

impl Serialize for JsonValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) => s.serialize_f64(*f),
            Value::String(t) => s.serialize_str(t),
            Value::DateTime(t) => s.serialize_str(&datetime::format(*t)),
            Value::Json(j) => j.serialize(s),
            Value::Bytes(b) => s.serialize_str(&BASE64.encode(b)),
        }
    }
}

/// Which request a body belongs to; each allows different properties.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyKind {
    /// `POST /tables/{t}`: a new item, `id` optional; v2 or v3 as given.
    Insert(ProtocolVersion),
    /// v2 `PATCH`: some data columns.
    Patch,
    /// v3 `PUT`: the full item; `deleted: false` undeletes.
    Put,
}

/// A checked request body.
#[derive(Debug, Default)]
pub(crate) struct ItemBody {
    /// `id`, when given and not null.
    pub(crate) id: Option<String>,
    /// `version`, when given and not null (v2: the expected version when there is no
    /// `If-Match`; v3 ignores it).
    pub(crate) version: Option<String>,
    /// v3 `PUT` with `deleted: false`: an undelete, when the request also says
    /// `__includedeleted=true`.
    pub(crate) undelete: bool,
    /// One slot per data column: `None` when the body does not mention it.
    pub(crate) values: Vec<Option<Value>>,
}

/// Parses and checks a body: a JSON object whose properties are `id`, `version`, data
/// columns of the right JSON type, and the system properties the server sets.
///
/// - v2 (insert, `PATCH`), as the Azure Mobile Apps Node server: `version` is the
///   expected version (optimistic concurrency); `createdAt`, `updatedAt` and `deleted`
///   (in any letter case) are refused.
/// - v3 (insert, `PUT`): Datasync clients send whole entities, so `createdAt`,
///   `updatedAt` and `version` are accepted and their values ignored (the server owns
///   them; a precondition comes from `If-Match` only); `deleted` too, except that
///   `deleted: false` in a `PUT` asks for the toolkit's undelete.
///
/// Every non-nullable column must be present and non-null on insert and replace, and
/// non-null on patch.
pub(crate) fn parse_item(table: &TableDef, body: &[u8], kind: BodyKind) -> Result<ItemBody, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the body is empty; expected a JSON object"));
    }
    let json = parse_json(body).map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    let serde_json::Value::Object(map) = json else {
        return Err(ApiError::bad_request(format!("the body must be a JSON object, found {}", json_kind(&json))));
    };

    let v3 = matches!(kind, BodyKind::Put | BodyKind::Insert(ProtocolVersion::V3));
    let mut item = ItemBody { values: vec![None; table.columns.len()], ..ItemBody::default() };
    let mut reserved = Vec::new();
    let mut unknown = Vec::new();
    let mut type_error = None;
    for (name, value) in map {
        match name.as_str() {
            ID => match value {
                serde_json::Value::Null => {}
                serde_json::Value::String(s) if s.is_empty() && matches!(kind, BodyKind::Insert(_)) => {}
                serde_json::Value::String(s) => item.id = Some(s),
                other => {
                    return Err(ApiError::bad_request(format!(
                        "property `id` must be a string, found {}",
                        json_kind(&other)
                    )));
                }
            },
            _ if v3 && is_system_column(&name) => {
                if name == DELETED && kind == BodyKind::Put && value == serde_json::Value::Bool(false) {
                    item.undelete = true;
                }
            }
            VERSION => match value {
                serde_json::Value::Null => {}
                serde_json::Value::String(s) => item.version = Some(s),
                other => {
                    return Err(ApiError::bad_request(format!(
                        "property `version` must be a string, found {}",
                        json_kind(&other)
                    )));
                }
            },
            _ if is_system_column(&name) => reserved.push(name),
            _ => match table.column_index(&name) {
                None => unknown.push(name),
                Some(i) => {
                    let col = &table.columns[i];
                    match Value::from_json(&value, col.ty) {
                        Ok(Value::Null) if !col.nullable => {
                            type_error.get_or_insert_with(|| format!("property `{name}` must not be null"));
                        }
                        Ok(Value::String(text)) if text.contains('\0') => {
                            type_error.get_or_insert_with(|| nul_message(&format!("property `{name}`")));
                        }
                        Ok(v) => item.values[i] = Some(v),
                        Err(e) => {
                            type_error.get_or_insert_with(|| format!("property `{name}` (type {}): {}", col.ty, e.0));
                        }
                    }
                }
            },
        }
    }
    if !reserved.is_empty() {
        return Err(ApiError::bad_request(format!(
            "system properties set by the server are not allowed in the body (protocol 2.0.0): {}",
            list(&reserved)
        )));
    }
    if !unknown.is_empty() {
        let known: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
        return Err(ApiError::bad_request(format!(
            "unknown properties for table `{}`: {} (its columns: {})",
            table.name,
            list(&unknown),
            if known.is_empty() { "none".to_owned() } else { known.join(", ") }
        )));
    }
    if let Some(message) = type_error {
        return Err(ApiError::bad_request(message));
    }
    if kind != BodyKind::Patch {
        let missing: Vec<String> = table
            .columns
            .iter()
            .zip(&item.values)
            .enumerate()
            // The server fills a served owner column itself.
            .filter(|(i, (c, v))| !c.nullable && v.is_none() && Some(*i) != table.served_owner())
            .map(|(_, cv)| cv)
            .map(|(c, _)| c.name.clone())
            .collect();
        if !missing.is_empty() {
            return Err(ApiError::bad_request(format!("missing required properties: {}", list(&missing))));
        }
    }
    if let Some(id) = &item.id {
        check_id(id)?;
    }
    if let Some(typed) = table.typed_check() {
        typed.check(&item.values).map_err(ApiError::bad_request)?;
    }
    Ok(item)
}

/// Why text holding NUL is refused, naming `what` (`property `text``, `$filter`, ...):
/// the same 400 on both backends, since PostgreSQL text cannot hold it.
pub(crate) fn nul_message(what: &str) -> String {
    format!("{what} must not contain the NUL character (U+0000): the server's text columns cannot hold it")
}

/// Parses a JSON body, refusing an object that names a key twice: RFC 8259 leaves the
/// meaning of duplicate names to the reader, and serde_json would silently keep the
/// last one, so `{"text":"a","text":"b"}` is a 400 rather than a guess.
pub(crate) fn parse_json(body: &[u8]) -> Result<serde_json::Value, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = UniqueKeys.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// Builds a `serde_json::Value` as serde_json's own does, but with an error on a
/// duplicate key in any object. (serde_json's recursion limit still applies: it is the
/// deserializer's.)
#[derive(Clone, Copy)]
struct UniqueKeys;

impl<'de> DeserializeSeed<'de> for UniqueKeys {
    type Value = serde_json::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<serde_json::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueKeys {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<serde_json::Value, E> {
        Ok(serde_json::Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<serde_json::Value, E> {
        Ok(serde_json::Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<serde_json::Value, E> {
        Ok(serde_json::Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<serde_json::Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<serde_json::Value, E> {
        Ok(serde_json::Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<serde_json::Value, E> {
        Ok(serde_json::Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<serde_json::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<serde_json::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(UniqueKeys)? {
            items.push(item);
        }
        Ok(serde_json::Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<serde_json::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key `{}`", truncate(&key))));
            }
            let value = map.next_value_seed(UniqueKeys)?;
            object.insert(key, value);
        }
        Ok(serde_json::Value::Object(object))
    }
}

/// Ids are case-sensitive text of at most [`MAX_ID_LEN`] bytes without control
/// characters; `.` and `..` are refused because they cannot be addressed in a URL path.
pub(crate) fn check_id(id: &str) -> Result<(), ApiError> {
    if id.len() > MAX_ID_LEN {
        return Err(ApiError::bad_request(format!("`id` is longer than {MAX_ID_LEN} bytes")));
    }
    if id.chars().any(char::is_control) {
        return Err(ApiError::bad_request("`id` must not contain control characters"));
    }
    if id == "." || id == ".." {
        return Err(ApiError::bad_request("`id` must not be `.` or `..`"));
    }
    Ok(())
}

fn list(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().take(10).map(|n| format!("`{}`", truncate(n))).collect();
    let more = if names.len() > 10 { format!(" and {} more", names.len() - 10) } else { String::new() };
    format!("{}{more}", quoted.join(", "))
}

/// At most 64 characters of client text in a message.
fn truncate(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_core::ColumnType;

    fn table() -> TableDef {
        TableDef::new("T")
            .column("text", ColumnType::String, false)
            .column("n", ColumnType::Int, true)
            .column("x", ColumnType::Float, true)
            .column("at", ColumnType::DateTime, true)
            .column("j", ColumnType::Json, true)
            .column("b", ColumnType::Bytes, true)
    }

    fn err(body: &str, kind: BodyKind) -> String {
        parse_item(&table(), body.as_bytes(), kind).unwrap_err().message
    }

    #[test]
    fn bodies_convert_by_column_type() {
        let body =
            r#"{"id":"a","text":"t","n":3,"x":1,"at":"2026-01-02T04:04:05.6789+01:00","j":{"k":[1]},"b":"AAE="}"#;
        let item = parse_item(&table(), body.as_bytes(), BodyKind::Insert(ProtocolVersion::V2)).unwrap();
        assert_eq!(item.id.as_deref(), Some("a"));
        assert_eq!(item.values[0], Some(Value::String("t".into())));
        assert_eq!(item.values[1], Some(Value::Int(3)));
        assert_eq!(item.values[2], Some(Value::Float(1.0)));
        assert_eq!(item.values[3], Some(Value::DateTime(datetime::parse("2026-01-02T03:04:05.678Z").unwrap())));
        assert_eq!(item.values[4], Some(Value::Json(serde_json::json!({"k": [1]}))));
        assert_eq!(item.values[5], Some(Value::Bytes(vec![0, 1])));

        let row = Row {
            id: "a".into(),
            values: item.values.into_iter().map(Option::unwrap).collect(),
            version: "v".into(),
            updated_at: "u".into(),
            created_at: "c".into(),
            deleted: false,
        };
        let t = table();
        let props = default_props(&t, ProtocolVersion::V3);
        let json = serde_json::to_string(&ItemJson { table: &t, row: &row, props: &props }).unwrap();
        assert_eq!(
            json,
            r#"{"id":"a","text":"t","n":3,"x":1.0,"at":"2026-01-02T03:04:05.678Z","j":{"k":[1]},"b":"AAE=","updatedAt":"u","version":"v","deleted":false}"#
        );
        let props = default_props(&t, ProtocolVersion::V2);
        let json = serde_json::to_string(&ItemJson { table: &t, row: &row, props: &props }).unwrap();
        assert!(json.contains(r#""createdAt":"c""#));
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        assert!(err("", BodyKind::Insert(ProtocolVersion::V2)).contains("empty"));
        assert!(err("{", BodyKind::Insert(ProtocolVersion::V2)).contains("not valid JSON"));
        assert!(err("[1]", BodyKind::Insert(ProtocolVersion::V2)).contains("an array"));
        assert!(err(r#"{"text":"a","updatedAt":"x"}"#, BodyKind::Insert(ProtocolVersion::V2)).contains("`updatedAt`"));
        assert!(err(r#"{"text":"a","Deleted":false}"#, BodyKind::Insert(ProtocolVersion::V2)).contains("`Deleted`"));
        // v3 bodies may carry the system properties (Datasync clients send whole
        // entities): their values are ignored; only `deleted: false` in a PUT asks for an
        // undelete.
        let put = parse_item(&table(), br#"{"text":"a","deleted":true,"updatedAt":5,"version":"v"}"#, BodyKind::Put);
        assert!(matches!(put, Ok(ItemBody { undelete: false, .. })));
        let insert = br#"{"text":"a","createdAt":"x","updatedAt":"y","version":"v","deleted":false}"#;
        let item = parse_item(&table(), insert, BodyKind::Insert(ProtocolVersion::V3)).unwrap();
        assert_eq!((item.undelete, item.values[0].clone()), (false, Some(Value::String("a".into()))));
        let unknown = err(r#"{"text":"a","foo":1,"bar":2}"#, BodyKind::Insert(ProtocolVersion::V2));
        assert!(unknown.contains("`foo`") && unknown.contains("`bar`"), "{unknown}");
        assert!(err(r#"{"text":1}"#, BodyKind::Insert(ProtocolVersion::V2)).contains("property `text`"));
        assert!(err(r#"{"text":"a","n":1.5}"#, BodyKind::Insert(ProtocolVersion::V2)).contains("property `n`"));
        assert!(
            err(r#"{"text":"a","n":99999999999999999999}"#, BodyKind::Insert(ProtocolVersion::V2))
                .contains("property `n`")
        );
        assert!(
            err(r#"{"text":"a","at":"yesterday"}"#, BodyKind::Insert(ProtocolVersion::V2)).contains("property `at`")
        );
        assert!(err(r#"{"text":"a","b":"%%%"}"#, BodyKind::Insert(ProtocolVersion::V2)).contains("property `b`"));
        assert!(err(r#"{"text":null}"#, BodyKind::Patch).contains("must not be null"));
        assert!(err(r#"{"n":1}"#, BodyKind::Put).contains("missing required properties: `text`"));
        assert!(err(r#"{"id":5,"text":"a"}"#, BodyKind::Insert(ProtocolVersion::V2)).contains("`id`"));
        assert!(err(r#"{"id":"a\u0001","text":"a"}"#, BodyKind::Insert(ProtocolVersion::V2)).contains("control"));
        // A patch may leave out required columns; v3 PUT may undelete.
        assert!(parse_item(&table(), br#"{"n":1}"#, BodyKind::Patch).is_ok());
        let put = parse_item(&table(), br#"{"text":"a","deleted":false}"#, BodyKind::Put).unwrap();
        assert!(put.undelete);
    }
}
