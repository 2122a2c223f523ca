//! The `#[derive(SyncEntity)]` macro of `sync-runtime`.
//!
//! An implementation detail: depend on `sync-runtime`, which re-exports the derive as
//! `sync_runtime::SyncEntity` (feature `derive`, on by default).
//!
//! The pipeline is fixed: `attr.rs` parses the `#[sync(...)]` options, `ast.rs` builds
//! the struct as data (roles, column names), `check.rs` checks the rules that span
//! fields, `expand.rs` generates. Every mistake goes to one `Ctxt` (`ctxt.rs`) and all of
//! them are reported together, beside a minimal fallback impl.

mod ast;
mod attr;
mod case;
mod check;
mod ctxt;
mod expand;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `SyncEntity`: maps a struct to a synced table.
///
/// ```ignore
/// use sync_runtime::SyncEntity;
/// use time::OffsetDateTime;
///
/// #[derive(SyncEntity, Clone, Debug, PartialEq)]
/// #[sync(table = "TodoItem")]
/// pub struct TodoItem {
///     pub id: String,
///     pub text: String,
///     pub complete: bool,
///     #[sync(rename = "dueAt")]
///     pub due: Option<OffsetDateTime>,
///     #[sync(version)]
///     pub version: Option<String>,
///     #[sync(local_only)]
///     pub draft_note: Option<String>,
/// }
///
/// // Typed column handles, for queries:
/// let filter = TodoItem::FIELDS.text.eq("milk").and(TodoItem::FIELDS.complete.eq(false));
/// ```
///
/// # What it generates
///
/// - `impl SyncEntity for TodoItem`: the table name, one `FieldDef` per field in
///   declaration order (Rust name, column name, column type, nullability, role,
///   index), `id`/`set_id`, and the conversion to and from one `Value` per field.
/// - `TodoItemFields`, a struct with the visibility of `TodoItem` and one public
///   `Column<TodoItem, T>` per field, and the constant `TodoItem::FIELDS` of that type:
///   `TodoItem::FIELDS.due.lt(now)`. (So a struct cannot also define an item named
///   `<Name>Fields` beside it, nor an inherent `FIELDS` constant.)
///
/// The struct must have named fields and no generic parameters or lifetimes. Each field
/// type must be one of `String`, `bool`, `i32`, `i64`, `f64`, `Vec<u8>`,
/// `time::OffsetDateTime`, `uuid::Uuid`, `serde_json::Value` (and
/// `chrono::DateTime<Utc>` with the runtime's `chrono` feature), or an `Option` of one;
/// any other type is a compile error at the field's type. To store another type,
/// convert it, or keep it as a `serde_json::Value`.
///
/// # Column names
///
/// A field's column (its name in the local table and on the wire) is, in order:
/// the system column's name for the id and the system fields below; the field's
/// `rename`; the struct's `rename_all` rule applied to the field name; the field name as
/// written (without `r#`, so `r#type` is the column `type`). Table and column names
/// must match `[A-Za-z_][A-Za-z0-9_]*`, and no two fields may share a column (compared
/// ignoring ASCII case).
///
/// # Struct keys
///
/// **`table = "Name"`**: the table name, locally and on the server. Defaults to the
/// struct name. Names starting with `__sync` are reserved.
///
/// ```ignore
/// #[derive(SyncEntity)]
/// #[sync(table = "todo_items")]
/// pub struct TodoItem { /* ... */ }
/// ```
///
/// **`rename_all = "..."`**: the naming rule for every column not named otherwise. One
/// of `"camelCase"`, `"PascalCase"`, `"snake_case"`, `"lowercase"`, `"UPPERCASE"`,
/// `"SCREAMING_SNAKE_CASE"`; field names are taken to be `snake_case`.
///
/// ```ignore
/// #[derive(SyncEntity)]
/// #[sync(rename_all = "camelCase")]
/// pub struct Order {
///     pub id: String,
///     pub customer_name: String, // column `customerName`
/// }
/// ```
///
/// **`crate = "path"`**: the path of `sync_runtime`, for code that re-exports it under
/// another name (the generated code then uses `path::__private` instead of
/// `::sync_runtime::__private`).
///
/// ```ignore
/// use my_framework::sync as sync_runtime_alias;
///
/// #[derive(sync_runtime_alias::SyncEntity)]
/// #[sync(crate = "my_framework::sync")]
/// pub struct Note { pub id: String, pub body: String }
/// ```
///
/// # Field keys
///
/// **`id`**: marks the primary key, a `String` whose column is always `id`. Without
/// it, the field named `id` is the id. Exactly one field is the id.
///
/// ```ignore
/// #[derive(SyncEntity)]
/// pub struct Tag {
///     #[sync(id)]
///     pub key: String, // column `id`
///     pub label: String,
/// }
/// ```
///
/// **`rename = "wireName"`**: the column name of this field (not for the id or system
/// fields, whose names are fixed).
///
/// ```ignore
/// #[sync(rename = "dueAt")]
/// pub due: Option<OffsetDateTime>,
/// ```
///
/// **`version`**, **`updated_at`**, **`created_at`**, **`deleted`**: the field is a
/// view of that system column (`version`, `updatedAt`, `createdAt`, `deleted`), which
/// every synced table has whether or not the struct shows it. The server sets them; a
/// field may show each at most once. `version` must be a `String` or `Option<String>`;
/// `updated_at` and `created_at` a timestamp or `String` (or an `Option` of one);
/// `deleted` a `bool`. An ordinary field whose column would be a system column (say
/// `pub version: Option<String>` with no key) is an error: add the key or rename it.
///
/// ```ignore
/// #[sync(version)]
/// pub version: Option<String>,
/// #[sync(updated_at)]
/// pub modified: Option<OffsetDateTime>, // column `updatedAt`
/// #[sync(created_at)]
/// pub created: Option<OffsetDateTime>,
/// #[sync(deleted)]
/// pub deleted: bool,
/// ```
///
/// **`local_only`**: stored in the local table, never sent to the server nor read from
/// it. Must be an `Option`, since rows pulled from the server have no value for it.
///
/// ```ignore
/// #[sync(local_only)]
/// pub draft_note: Option<String>,
/// ```
///
/// **`index`**: creates a local index on the column, for queries that filter or sort by
/// it. Combines with the other keys.
///
/// ```ignore
/// #[sync(index)]
/// pub list_id: String,
/// #[sync(rename = "dueAt", index)]
/// pub due: Option<OffsetDateTime>,
/// ```
///
/// Keys can be given in one attribute or several (`#[sync(local_only, index)]` or
/// `#[sync(local_only)] #[sync(index)]`); giving one key twice is an error.
///
/// # Errors
///
/// Every mistake is a compile error pointing at the offending token, and all the
/// mistakes of one struct are reported in one compile: a missing or second id, an
/// unknown or repeated key, a key missing its value or given one it does not take, an
/// unknown `rename_all` rule, a field on a system column without its key, two fields on
/// one column or one system column, conflicting roles on one field, invalid table or
/// column names, an unsupported field type (`Option<Option<T>>` and `Option<Box<T>>`
/// included), an id that is not a `String`, a field type that does not fit its role
/// (a `local_only` field that is not an `Option`, ...), and an input that is not a
/// plain struct with named fields. Each is reported once, at the field's type for type
/// mistakes, together with the attribute mistakes.
///
/// Field types from other crates can be named through the runtime's re-exports
/// (`sync_runtime::time::OffsetDateTime`, `sync_runtime::uuid::Uuid`,
/// `sync_runtime::serde_json::Value`), so the app needs no dependency of its own on
/// them.
#[proc_macro_derive(SyncEntity, attributes(sync))]
pub fn derive_sync_entity(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input).into()
}
