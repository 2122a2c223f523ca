//! The derive input as data: the struct, its fields, their roles and column names.
//!
//! Built from `syn`'s tree and the parsed `#[sync(...)]` options. Rules that involve
//! several fields are checked afterwards, in `check.rs`.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::{Data, DeriveInput, Fields, Ident, Type, Visibility};

use crate::attr::{self, Role};
use crate::ctxt::Ctxt;

/// The prefix of the store's own tables, which no app table may start with.
pub(crate) const RESERVED_TABLE_PREFIX: &str = "__sync";

/// A table or column name, and where an error about it points (the string literal
/// that gave it, or the identifier it was derived from).
pub(crate) struct Name {
    pub(crate) value: String,
    pub(crate) span: Span,
}

/// The struct.
pub(crate) struct Entity<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) vis: &'a Visibility,
    pub(crate) table: Name,
    /// The path of the runtime crate (`::sync_runtime` unless `#[sync(crate = "...")]`).
    pub(crate) krate: syn::Path,
    pub(crate) fields: Vec<Field<'a>>,
}

/// One field.
pub(crate) struct Field<'a> {
    pub(crate) member: &'a Ident,
    /// The field name as written, without `r#`.
    pub(crate) name: String,
    pub(crate) ty: &'a Type,
    pub(crate) attrs: attr::Field,
    /// The first role key given, else `Id` for a field named `id` when no field is
    /// marked `#[sync(id)]`, else `Data`.
    pub(crate) role: Role,
    /// Where the role came from: its key, or the field name.
    pub(crate) role_span: Span,
    pub(crate) column: Name,
}

/// The runtime's path when no `#[sync(crate = "...")]` is given.
pub(crate) fn default_crate_path() -> syn::Path {
    syn::parse_quote!(::sync_runtime)
}

impl<'a> Entity<'a> {
    /// Reads the input; reports what is not a plain struct with named fields. Returns
    /// `None` when there are no fields to read (an enum, a union, a tuple or unit
    /// struct); a generic struct is still read, so its other mistakes are reported too.
    pub(crate) fn from_syn(cx: &Ctxt, input: &'a DeriveInput) -> Option<Entity<'a>> {
        let options = attr::container(cx, &input.attrs);

        let generics = &input.generics;
        if !generics.params.is_empty() {
            cx.error_spanned_by(generics, GENERIC);
        } else if let Some(where_clause) = &generics.where_clause {
            cx.error_spanned_by(where_clause, GENERIC);
        }

        let named = match &input.data {
            Data::Struct(data) => match &data.fields {
                Fields::Named(named) => Some(named),
                Fields::Unnamed(unnamed) => {
                    cx.error_spanned_by(unnamed, NOT_NAMED_STRUCT);
                    None
                }
                Fields::Unit => {
                    cx.error_spanned_by(&input.ident, NOT_NAMED_STRUCT);
                    None
                }
            },
            Data::Enum(data) => {
                cx.error_spanned_by(data.enum_token, NOT_NAMED_STRUCT);
                None
            }
            Data::Union(data) => {
                cx.error_spanned_by(data.union_token, NOT_NAMED_STRUCT);
                None
            }
        }?;

        let parsed: Vec<(&'a Ident, &'a syn::Field, attr::Field)> = named
            .named
            .iter()
            .filter_map(|field| Some((field.ident.as_ref()?, field, attr::field(cx, &field.attrs))))
            .collect();
        let explicit_id = parsed.iter().any(|(_, _, attrs)| attrs.roles.iter().any(|(role, _)| *role == Role::Id));

        let fields = parsed
            .into_iter()
            .map(|(member, field, attrs)| {
                let name = member.unraw().to_string();
                let (role, role_span) = match attrs.roles.first() {
                    Some(&(role, span)) => (role, span),
                    None if !explicit_id && name == "id" => (Role::Id, member.span()),
                    None => (Role::Data, member.span()),
                };
                let column = match (role.system_column(), &attrs.rename) {
                    (Some(system), _) => Name { value: system.to_owned(), span: role_span },
                    (None, Some(rename)) => Name { value: rename.value(), span: rename.span() },
                    (None, None) => Name {
                        value: options.rename_all.map_or_else(|| name.clone(), |rule| rule.apply(&name)),
                        span: member.span(),
                    },
                };
                Field { member, name, ty: &field.ty, attrs, role, role_span, column }
            })
            .collect();

        let table = match &options.table {
            Some(lit) => Name { value: lit.value(), span: lit.span() },
            None => Name { value: input.ident.unraw().to_string(), span: input.ident.span() },
        };

        Some(Entity {
            ident: &input.ident,
            vis: &input.vis,
            table,
            krate: options.krate.unwrap_or_else(default_crate_path),
            fields,
        })
    }
}

const GENERIC: &str = "#[derive(SyncEntity)] does not support generic parameters, lifetimes or \
                       where clauses: a synced table has one fixed set of columns";

const NOT_NAMED_STRUCT: &str = "#[derive(SyncEntity)] only supports structs with named fields \
                                (`struct Name { id: String, ... }`)";
