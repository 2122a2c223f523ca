//! The `#[sync(...)]` attribute: its keys, and parsing them into plain data.
//!
//! Parsing reports every mistake to the [`Ctxt`] and carries on with the next key, so
//! one compile shows them all. Nothing here decides column names or checks rules that
//! involve more than one key; that is `ast.rs` and `check.rs`.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::parse::ParseStream;
use syn::{Attribute, LitStr, Token};

use crate::case::RenameRule;
use crate::ctxt::Ctxt;

/// The helper attribute every option lives under.
pub(crate) const SYNC: &str = "sync";

// Struct keys.
/// `#[sync(table = "TodoItem")]`: the table name.
pub(crate) const TABLE: &str = "table";
/// `#[sync(rename_all = "camelCase")]`: the naming convention of the column names.
pub(crate) const RENAME_ALL: &str = "rename_all";
/// `#[sync(crate = "path::to::sync_runtime")]`: where the runtime is.
pub(crate) const CRATE: &str = "crate";

// Field keys.
/// `#[sync(rename = "dueAt")]`: the column name of one field.
pub(crate) const RENAME: &str = "rename";
/// `#[sync(id)]`: the primary key.
pub(crate) const ID: &str = "id";
/// `#[sync(version)]`: a view of the `version` system column.
pub(crate) const VERSION: &str = "version";
/// `#[sync(updated_at)]`: a view of the `updatedAt` system column.
pub(crate) const UPDATED_AT: &str = "updated_at";
/// `#[sync(created_at)]`: a view of the `createdAt` system column.
pub(crate) const CREATED_AT: &str = "created_at";
/// `#[sync(deleted)]`: a view of the `deleted` system column.
pub(crate) const DELETED: &str = "deleted";
/// `#[sync(local_only)]`: stored locally, never synced.
pub(crate) const LOCAL_ONLY: &str = "local_only";
/// `#[sync(index)]`: a local index on the column.
pub(crate) const INDEX: &str = "index";

const STRUCT_KEYS: &[&str] = &[TABLE, RENAME_ALL, CRATE];
const FIELD_KEYS: &[&str] = &[RENAME, ID, VERSION, UPDATED_AT, CREATED_AT, DELETED, LOCAL_ONLY, INDEX];

/// The struct-level options.
#[derive(Default)]
pub(crate) struct Container {
    pub(crate) table: Option<LitStr>,
    pub(crate) rename_all: Option<RenameRule>,
    pub(crate) krate: Option<syn::Path>,
    /// A `crate` key was given but its value was not a path.
    pub(crate) krate_invalid: bool,
}

/// The options of one field.
#[derive(Default)]
pub(crate) struct Field {
    pub(crate) rename: Option<LitStr>,
    /// The role keys, in the order written, each with the span of its key. More than
    /// one is a conflict that `check.rs` reports.
    pub(crate) roles: Vec<(Role, Span)>,
    pub(crate) index: bool,
}

/// Where an attribute sits, for the list of keys valid there.
#[derive(Clone, Copy)]
enum Place {
    Struct,
    Field,
}

impl Place {
    fn keys(self) -> &'static [&'static str] {
        match self {
            Place::Struct => STRUCT_KEYS,
            Place::Field => FIELD_KEYS,
        }
    }

    fn other(self) -> Place {
        match self {
            Place::Struct => Place::Field,
            Place::Field => Place::Struct,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Place::Struct => "the struct",
            Place::Field => "a field",
        }
    }

    fn key_list(self) -> String {
        let quoted: Vec<String> = self.keys().iter().map(|k| format!("`{k}`")).collect();
        quoted.join(", ")
    }

    fn unknown_key(self, path: &syn::Path) -> String {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        let key = segments.join("::");
        if self.other().keys().contains(&key.as_str()) {
            format!(
                "`{key}` goes on {}, not on {}; keys on {}: {}",
                self.other().name(),
                self.name(),
                self.name(),
                self.key_list()
            )
        } else {
            format!("unknown key `{key}` on {}; expected one of: {}", self.name(), self.key_list())
        }
    }
}

/// Parses the `#[sync(...)]` attributes of the struct.
pub(crate) fn container(cx: &Ctxt, attrs: &[Attribute]) -> Container {
    let mut out = Container::default();
    for_each_key(cx, attrs, Place::Struct, |key, meta| {
        match key {
            TABLE => out.table = string(cx, meta, key)?,
            RENAME_ALL => {
                if let Some(lit) = string(cx, meta, key)? {
                    match RenameRule::from_name(&lit.value()) {
                        Some(rule) => out.rename_all = Some(rule),
                        None => cx.error_spanned_by(
                            &lit,
                            format!(
                                "unknown rename_all rule \"{}\"; expected one of: {}",
                                lit.value(),
                                RenameRule::names()
                            ),
                        ),
                    }
                }
            }
            CRATE => match string(cx, meta, key)? {
                Some(lit) => match lit.parse::<syn::Path>() {
                    Ok(path) => out.krate = Some(path),
                    Err(_) => {
                        out.krate_invalid = true;
                        cx.error_spanned_by(
                            &lit,
                            format!(
                                "`{CRATE}` takes a path to sync_runtime, e.g. \
                                 #[sync({CRATE} = \"my_crate::sync_runtime\")]"
                            ),
                        );
                    }
                },
                None => out.krate_invalid = true,
            },
            _ => {}
        }
        Ok(())
    });
    out
}

/// Parses the `#[sync(...)]` attributes of one field.
pub(crate) fn field(cx: &Ctxt, attrs: &[Attribute]) -> Field {
    let mut out = Field::default();
    for_each_key(cx, attrs, Place::Field, |key, meta| {
        match key {
            RENAME => out.rename = string(cx, meta, key)?,
            INDEX => {
                flag(cx, meta, key)?;
                out.index = true;
            }
            _ => {
                if let Some(role) = Role::from_key(key) {
                    flag(cx, meta, key)?;
                    out.roles.push((role, meta.path.get_ident().map_or_else(Span::call_site, |i| i.span())));
                }
            }
        }
        Ok(())
    });
    out
}

/// Calls `visit` with each known, first-seen key of the `#[sync(...)]` attributes in
/// `attrs`; reports unknown and repeated keys (across all the attributes of one item)
/// and skips their values.
fn for_each_key(
    cx: &Ctxt,
    attrs: &[Attribute],
    place: Place,
    mut visit: impl FnMut(&'static str, &ParseNestedMeta<'_>) -> syn::Result<()>,
) {
    let mut seen: Vec<&'static str> = Vec::new();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident(SYNC)) {
        let result = attr.parse_nested_meta(|meta| {
            let Some(key) = place.keys().iter().copied().find(|key| meta.path.is_ident(key)) else {
                cx.error_spanned_by(&meta.path, place.unknown_key(&meta.path));
                return skip_value(meta.input).map(drop);
            };
            if seen.contains(&key) {
                cx.error_spanned_by(&meta.path, format!("duplicate key `{key}`"));
                return skip_value(meta.input).map(drop);
            }
            seen.push(key);
            visit(key, &meta)
        });
        if let Err(error) = result {
            cx.syn_error(error);
        }
    }
}

/// A key that takes a string: `key = "..."`. Reports a missing or non-string value
/// and returns `None` for it.
fn string(cx: &Ctxt, meta: &ParseNestedMeta<'_>, key: &str) -> syn::Result<Option<LitStr>> {
    if meta.input.peek(Token![=]) {
        let value = meta.value()?;
        if value.peek(LitStr) {
            return value.parse().map(Some);
        }
        let rest = skip_value(value)?;
        if !rest.is_empty() {
            cx.error_spanned_by(rest, format!("`{key}` takes a string: {key} = \"...\""));
            return Ok(None);
        }
    }
    let mut tokens = meta.path.to_token_stream();
    tokens.extend(skip_value(meta.input)?);
    cx.error_spanned_by(tokens, format!("`{key}` needs a value: {key} = \"...\""));
    Ok(None)
}

/// A key that takes no value: `key`. Reports a value given to it.
fn flag(cx: &Ctxt, meta: &ParseNestedMeta<'_>, key: &str) -> syn::Result<()> {
    if meta.input.is_empty() || meta.input.peek(Token![,]) {
        return Ok(());
    }
    let mut tokens = meta.path.to_token_stream();
    tokens.extend(skip_value(meta.input)?);
    cx.error_spanned_by(tokens, format!("`{key}` takes no value: write #[sync({key})]"));
    Ok(())
}

/// Consumes the rest of one `key ...` item, up to the next top-level comma, and
/// returns what it consumed (for the span of an error).
fn skip_value(input: ParseStream<'_>) -> syn::Result<TokenStream> {
    input.step(|cursor| {
        let mut rest = *cursor;
        let mut skipped = TokenStream::new();
        while let Some((tree, next)) = rest.token_tree() {
            if matches!(&tree, TokenTree::Punct(p) if p.as_char() == ',') {
                break;
            }
            skipped.extend([tree]);
            rest = next;
        }
        Ok((skipped, rest))
    })
}

/// The system columns every synced table has, with the role that views each. These
/// mirror `sync_runtime::system` (a proc-macro crate cannot depend on the runtime).
pub(crate) const SYSTEM_COLUMNS: [(&str, Role); 5] = [
    ("id", Role::Id),
    ("version", Role::Version),
    ("updatedAt", Role::UpdatedAt),
    ("createdAt", Role::CreatedAt),
    ("deleted", Role::Deleted),
];

/// What a field is to the table; mirrors `sync_runtime::FieldRole`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Id,
    Data,
    LocalOnly,
    Version,
    UpdatedAt,
    CreatedAt,
    Deleted,
}

impl Role {
    /// The role a field key gives, if it is a role key.
    pub(crate) fn from_key(key: &str) -> Option<Role> {
        Some(match key {
            ID => Role::Id,
            VERSION => Role::Version,
            UPDATED_AT => Role::UpdatedAt,
            CREATED_AT => Role::CreatedAt,
            DELETED => Role::Deleted,
            LOCAL_ONLY => Role::LocalOnly,
            _ => return None,
        })
    }

    /// The key that gives this role (`Data` has none).
    pub(crate) fn key(self) -> Option<&'static str> {
        Some(match self {
            Role::Id => ID,
            Role::Version => VERSION,
            Role::UpdatedAt => UPDATED_AT,
            Role::CreatedAt => CREATED_AT,
            Role::Deleted => DELETED,
            Role::LocalOnly => LOCAL_ONLY,
            Role::Data => return None,
        })
    }

    /// The system column this role views, if any.
    pub(crate) fn system_column(self) -> Option<&'static str> {
        SYSTEM_COLUMNS.iter().find(|(_, role)| *role == self).map(|(column, _)| *column)
    }

    /// The name of the matching `sync_runtime::FieldRole` variant.
    pub(crate) fn variant(self) -> &'static str {
        match self {
            Role::Id => "Id",
            Role::Data => "Data",
            Role::LocalOnly => "LocalOnly",
            Role::Version => "Version",
            Role::UpdatedAt => "UpdatedAt",
            Role::CreatedAt => "CreatedAt",
            Role::Deleted => "Deleted",
        }
    }
}
