//! What `#[derive(SyncEntity)]` generates: the schema as data, the row mapping, and
//! the typed column handles.

use serde_json::json;
use sync_runtime::query::{BinaryOp, Expr};
use sync_runtime::{Column, ColumnType, DecodeError, FieldDef, FieldRole, Store, SyncEntity, Value};
use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;

#[derive(SyncEntity, Clone, Debug, PartialEq)]
#[sync(table = "TodoItem")]
pub struct TodoItem {
    pub id: String,
    pub text: String,
    pub complete: bool,
    #[sync(rename = "dueAt", index)]
    pub due: Option<OffsetDateTime>,
    #[sync(version)]
    pub version: Option<String>,
    #[sync(local_only)]
    pub draft_note: Option<String>,
}

fn def(
    field: &'static str,
    column: &'static str,
    ty: ColumnType,
    nullable: bool,
    role: FieldRole,
    index: bool,
) -> FieldDef {
    FieldDef { field, column, ty, nullable, role, index }
}

#[test]
fn todo_item_schema() {
    assert_eq!(TodoItem::TABLE, "TodoItem");
    assert_eq!(
        TodoItem::FIELD_DEFS,
        [
            def("id", "id", ColumnType::String, false, FieldRole::Id, false),
            def("text", "text", ColumnType::String, false, FieldRole::Data, false),
            def("complete", "complete", ColumnType::Bool, false, FieldRole::Data, false),
            def("due", "dueAt", ColumnType::DateTime, true, FieldRole::Data, true),
            def("version", "version", ColumnType::String, true, FieldRole::Version, false),
            def("draft_note", "draft_note", ColumnType::String, true, FieldRole::LocalOnly, false),
        ]
    );
}

#[test]
fn todo_item_id() {
    let mut item =
        TodoItem { id: "a".into(), text: "milk".into(), complete: false, due: None, version: None, draft_note: None };
    assert_eq!(item.id(), "a");
    item.set_id("b".into());
    assert_eq!(item.id, "b");
    assert_eq!(item.id(), "b");
}

#[test]
fn todo_item_round_trip() {
    let item = TodoItem {
        id: "a".into(),
        text: "milk".into(),
        complete: true,
        due: Some(datetime!(2024-05-06 07:08:09.123 UTC)),
        version: Some("v1".into()),
        draft_note: Some("buy two".into()),
    };
    let values = item.to_values();
    assert_eq!(
        values,
        vec![
            Value::String("a".into()),
            Value::String("milk".into()),
            Value::Bool(true),
            Value::DateTime(datetime!(2024-05-06 07:08:09.123 UTC)),
            Value::String("v1".into()),
            Value::String("buy two".into()),
        ]
    );
    assert_eq!(TodoItem::from_values(values), Ok(item));
}

/// The table defaults to the struct name; `rename_all` applies to every column that is
/// not named otherwise; raw identifiers lose their `r#`; `#[sync(id)]` on another
/// field makes it the id (column `id`); system fields keep their system names.
#[derive(SyncEntity, Debug, PartialEq)]
#[sync(rename_all = "camelCase")]
struct Order {
    #[sync(id)]
    order_key: String,
    customer_name: String,
    r#type: i32,
    #[sync(rename = "TOTAL_cents")]
    total_cents: i64,
    #[sync(updated_at)]
    last_change: Option<String>,
    #[sync(created_at)]
    created: Option<OffsetDateTime>,
    #[sync(deleted)]
    is_gone: bool,
    #[sync(local_only, index)]
    seen_locally: Option<bool>,
}

#[test]
fn renames_raw_identifiers_and_roles() {
    assert_eq!(Order::TABLE, "Order");
    assert_eq!(
        Order::FIELD_DEFS,
        [
            def("order_key", "id", ColumnType::String, false, FieldRole::Id, false),
            def("customer_name", "customerName", ColumnType::String, false, FieldRole::Data, false),
            def("type", "type", ColumnType::Int, false, FieldRole::Data, false),
            def("total_cents", "TOTAL_cents", ColumnType::Int, false, FieldRole::Data, false),
            def("last_change", "updatedAt", ColumnType::String, true, FieldRole::UpdatedAt, false),
            def("created", "createdAt", ColumnType::DateTime, true, FieldRole::CreatedAt, false),
            def("is_gone", "deleted", ColumnType::Bool, false, FieldRole::Deleted, false),
            def("seen_locally", "seenLocally", ColumnType::Bool, true, FieldRole::LocalOnly, true),
        ]
    );
    let mut order = Order {
        order_key: "k".into(),
        customer_name: "Ada".into(),
        r#type: 3,
        total_cents: 1200,
        last_change: None,
        created: None,
        is_gone: false,
        seen_locally: Some(true),
    };
    assert_eq!(order.id(), "k");
    order.set_id("k2".into());
    assert_eq!(order.order_key, "k2");
    assert_eq!(Order::FIELDS.r#type.name(), "type");
    assert_eq!(Order::FIELDS.order_key.name(), "id");
    assert_eq!(Order::FIELDS.last_change.name(), "updatedAt");
    assert_eq!(Order::from_values(order.to_values()), Ok(order));
}

#[derive(SyncEntity, Debug, PartialEq)]
#[sync(table = "pascal_items", rename_all = "PascalCase")]
struct Pascal {
    id: String,
    due_at: i64,
}

#[derive(SyncEntity, Debug, PartialEq)]
#[sync(rename_all = "SCREAMING_SNAKE_CASE")]
struct Screaming {
    id: String,
    due_at: i64,
}

#[derive(SyncEntity, Debug, PartialEq)]
#[sync(rename_all = "UPPERCASE")]
struct Upper {
    id: String,
    due_at: i64,
}

// The allow must sit on the struct: rustc checks field names there.
#[allow(non_snake_case)]
#[derive(SyncEntity, Debug, PartialEq)]
#[sync(rename_all = "lowercase")]
struct Lower {
    id: String,
    dueAt: i64,
}

#[derive(SyncEntity, Debug, PartialEq)]
#[sync(rename_all = "snake_case")]
struct Snake {
    id: String,
    due_at: i64,
}

#[test]
fn rename_all_rules() {
    fn columns<E: SyncEntity>() -> Vec<&'static str> {
        E::FIELD_DEFS.iter().map(|def| def.column).collect()
    }
    assert_eq!(Pascal::TABLE, "pascal_items");
    assert_eq!(columns::<Pascal>(), ["id", "DueAt"]);
    assert_eq!(columns::<Screaming>(), ["id", "DUE_AT"]);
    assert_eq!(columns::<Upper>(), ["id", "DUE_AT"]);
    assert_eq!(columns::<Lower>(), ["id", "dueat"]);
    assert_eq!(columns::<Snake>(), ["id", "due_at"]);
}

/// One field of every supported type, and an `Option` of each.
#[derive(SyncEntity, Clone, Debug, PartialEq)]
struct AllTypes {
    id: String,
    s: String,
    b: bool,
    i: i32,
    l: i64,
    f: f64,
    bytes: Vec<u8>,
    at: OffsetDateTime,
    uuid: Uuid,
    json: serde_json::Value,
    os: Option<String>,
    ob: Option<bool>,
    oi: Option<i32>,
    ol: Option<i64>,
    of: Option<f64>,
    obytes: Option<Vec<u8>>,
    oat: Option<OffsetDateTime>,
    ouuid: Option<Uuid>,
    ojson: Option<serde_json::Value>,
}

#[test]
fn every_supported_type() {
    let types: Vec<(&str, ColumnType, bool)> =
        AllTypes::FIELD_DEFS.iter().map(|def| (def.field, def.ty, def.nullable)).collect();
    assert_eq!(
        types,
        [
            ("id", ColumnType::String, false),
            ("s", ColumnType::String, false),
            ("b", ColumnType::Bool, false),
            ("i", ColumnType::Int, false),
            ("l", ColumnType::Int, false),
            ("f", ColumnType::Float, false),
            ("bytes", ColumnType::Bytes, false),
            ("at", ColumnType::DateTime, false),
            ("uuid", ColumnType::String, false),
            ("json", ColumnType::Json, false),
            ("os", ColumnType::String, true),
            ("ob", ColumnType::Bool, true),
            ("oi", ColumnType::Int, true),
            ("ol", ColumnType::Int, true),
            ("of", ColumnType::Float, true),
            ("obytes", ColumnType::Bytes, true),
            ("oat", ColumnType::DateTime, true),
            ("ouuid", ColumnType::String, true),
            ("ojson", ColumnType::Json, true),
        ]
    );
    assert!(AllTypes::FIELD_DEFS.iter().all(|def| !def.index));

    let full = full_item();
    let at = full.at;
    let values = full.to_values();
    assert_eq!(values.len(), AllTypes::FIELD_DEFS.len());
    assert_eq!(
        values,
        vec![
            Value::String("x".into()),
            Value::String("text".into()),
            Value::Bool(true),
            Value::Int(-7),
            Value::Int(1 << 40),
            Value::Float(2.5),
            Value::Bytes(vec![0, 1, 255]),
            Value::DateTime(at),
            Value::String("67e55044-10b1-426f-9247-bb680e5fe0c8".into()),
            Value::Json(json!({"a": [1, 2]})),
            Value::String("t".into()),
            Value::Bool(false),
            Value::Int(i64::from(i32::MIN)),
            Value::Int(i64::MAX),
            Value::Float(-0.5),
            Value::Bytes(vec![]),
            Value::DateTime(at),
            Value::String("67e55044-10b1-426f-9247-bb680e5fe0c8".into()),
            Value::Json(json!(null)),
        ]
    );
    assert_eq!(AllTypes::from_values(values), Ok(full.clone()));

    let empty = AllTypes {
        os: None,
        ob: None,
        oi: None,
        ol: None,
        of: None,
        obytes: None,
        oat: None,
        ouuid: None,
        ojson: None,
        ..full
    };
    let values = empty.to_values();
    assert!(values[10..].iter().all(Value::is_null), "{values:?}");
    assert_eq!(AllTypes::from_values(values), Ok(empty.clone()));

    // Stored and read back: reads decode each field in place (`from_row`), and must
    // give what `from_values` gives.
    let stored = AllTypes { id: "y".into(), ..empty.clone() };
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let table = store.table::<AllTypes>().await.unwrap();
        table.insert_many(vec![full_item(), stored.clone()]).await.unwrap();
        assert_eq!(table.get("x").await.unwrap(), Some(full_item()));
        assert_eq!(table.get("y").await.unwrap(), Some(stored.clone()));
        let all = table.query().order_by(AllTypes::FIELDS.id.asc()).all().await.unwrap();
        assert_eq!(all, vec![full_item(), stored]);
    });
}

/// An `AllTypes` with every field set.
fn full_item() -> AllTypes {
    let at = datetime!(2023-01-02 03:04:05.678 UTC);
    let uuid = Uuid::parse_str("67e55044-10b1-426f-9247-bb680e5fe0c8").unwrap();
    AllTypes {
        id: "x".into(),
        s: "text".into(),
        b: true,
        i: -7,
        l: 1 << 40,
        f: 2.5,
        bytes: vec![0, 1, 255],
        at,
        uuid,
        json: json!({"a": [1, 2]}),
        os: Some("t".into()),
        ob: Some(false),
        oi: Some(i32::MIN),
        ol: Some(i64::MAX),
        of: Some(-0.5),
        obytes: Some(vec![]),
        oat: Some(at),
        ouuid: Some(uuid),
        ojson: Some(json!(null)),
    }
}

#[test]
fn decode_errors_name_the_field() {
    let mut values =
        TodoItem { id: "a".into(), text: "milk".into(), complete: false, due: None, version: None, draft_note: None }
            .to_values();

    let mut wrong = values.clone();
    wrong[2] = Value::String("yes".into());
    let err = TodoItem::from_values(wrong).unwrap_err();
    assert_eq!(err.field, "complete");
    assert!(err.to_string().starts_with("field `complete`: "), "{err}");

    let mut null = values.clone();
    null[1] = Value::Null;
    assert_eq!(TodoItem::from_values(null).unwrap_err().field, "text");

    let mut bad_time = values.clone();
    bad_time[3] = Value::String("yesterday".into());
    assert_eq!(TodoItem::from_values(bad_time).unwrap_err().field, "due");

    values.truncate(4);
    assert_eq!(TodoItem::from_values(values), Err(DecodeError { field: "version", message: "missing value".into() }));

    let mut too_big = Order {
        order_key: "k".into(),
        customer_name: "Ada".into(),
        r#type: 0,
        total_cents: 0,
        last_change: None,
        created: None,
        is_gone: false,
        seen_locally: None,
    }
    .to_values();
    too_big[2] = Value::Int(i64::from(i32::MAX) + 1);
    // The Rust field name, not the column name.
    assert_eq!(Order::from_values(too_big).unwrap_err().field, "type");
}

#[test]
fn column_handles_build_the_ast() {
    let handle: Column<TodoItem, String> = TodoItem::FIELDS.text;
    assert_eq!(handle.name(), "text");
    assert_eq!(
        TodoItem::FIELDS.text.eq("a").into_expr(),
        Expr::binary(BinaryOp::Eq, Expr::column("text"), Expr::literal(Value::String("a".into())))
    );
    // A renamed field's handle uses the column name.
    assert_eq!(
        TodoItem::FIELDS.due.is_null().into_expr(),
        Expr::binary(BinaryOp::Eq, Expr::column("dueAt"), Expr::literal(Value::Null))
    );
    assert_eq!(
        TodoItem::FIELDS.complete.eq(true).and(TodoItem::FIELDS.version.ne("v1")).into_expr(),
        Expr::binary(
            BinaryOp::And,
            Expr::binary(BinaryOp::Eq, Expr::column("complete"), Expr::literal(Value::Bool(true))),
            Expr::binary(BinaryOp::Ne, Expr::column("version"), Expr::literal(Value::String("v1".into()))),
        )
    );
    // Every field has a handle on its column.
    let fields = TodoItem::FIELDS;
    let names =
        [fields.id.name(), fields.text.name(), fields.complete.name(), fields.due.name(), fields.version.name()];
    assert_eq!(names, ["id", "text", "complete", "dueAt", "version"]);
    assert_eq!(fields.draft_note.name(), "draft_note");
    assert!(format!("{fields:?}").starts_with("TodoItemFields {"), "{fields:?}");
}
