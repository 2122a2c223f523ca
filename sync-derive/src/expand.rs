//! Code generation: the `SyncEntity` impl, the typed column handles, the role type
//! assertions, and the fallback emitted beside errors.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, Ident, Type, Visibility};

use crate::ast::{self, Entity, Field};
use crate::attr::{self, Role};
use crate::check;
use crate::ctxt::Ctxt;

/// Reads, checks and expands one input; `Err` holds every mistake found.
pub(crate) fn derive(input: &DeriveInput) -> syn::Result<TokenStream> {
    let cx = Ctxt::new();
    let entity = Entity::from_syn(&cx, input);
    if let Some(entity) = &entity {
        check::entity(&cx, entity);
    }
    cx.check()?;
    match entity {
        Some(entity) => entity_impl(&entity),
        // `from_syn` reports why whenever it returns `None`; this is a safety net.
        None => Err(syn::Error::new_spanned(&input.ident, "#[derive(SyncEntity)] could not read this item")),
    }
}

/// The errors, plus a minimal impl so that one mistake does not cascade into errors at
/// every use of the type (thiserror's fallback). Its bodies never run: the
/// `compile_error!` beside it fails the build.
pub(crate) fn fallback(input: &DeriveInput, error: syn::Error) -> TokenStream {
    let mut tokens = error.into_compile_error();
    let generics = &input.generics;
    if !generics.params.is_empty() || generics.where_clause.is_some() {
        // An impl would need bounds we cannot guess; it would only add errors.
        return tokens;
    }
    // The errors were reported above; this only recovers the runtime's path.
    let options = attr::container(&Ctxt::new(), &input.attrs);
    if options.krate_invalid {
        return tokens;
    }
    let krate = options.krate.unwrap_or_else(ast::default_crate_path);
    let private = quote!(#krate::__private);
    let ident = &input.ident;

    if let syn::Data::Struct(syn::DataStruct { fields: syn::Fields::Named(named), .. }) = &input.data {
        let handles: Vec<Handle<'_>> = named
            .named
            .iter()
            .filter_map(|field| {
                let member = field.ident.as_ref()?;
                Some(Handle { member, ty: &field.ty, column: syn::ext::IdentExt::unraw(member).to_string() })
            })
            .collect();
        tokens.extend(companion_struct(ident, &input.vis, &private, &handles));
        let fields_const = fields_const(ident, &private, &handles);
        tokens.extend(quote! { const _: () = { #fields_const }; });
    }

    tokens.extend(quote! {
        const _: () = {
            #[automatically_derived]
            impl #private::SyncEntity for #ident {
                const TABLE: &'static ::core::primitive::str = "";
                const FIELD_DEFS: &'static [#private::FieldDef] = &[];
                fn id(&self) -> &::core::primitive::str {
                    ::core::unreachable!()
                }
                fn set_id(&mut self, _: #private::String) {
                    ::core::unreachable!()
                }
                fn to_values(&self) -> #private::Vec<#private::Value> {
                    ::core::unreachable!()
                }
                fn from_values(
                    _: #private::Vec<#private::Value>,
                ) -> ::core::result::Result<Self, #private::DecodeError> {
                    ::core::unreachable!()
                }
            }
        };
    });
    tokens
}

/// One column handle of the companion struct.
struct Handle<'a> {
    member: &'a Ident,
    ty: &'a Type,
    column: String,
}

fn entity_impl(entity: &Entity<'_>) -> syn::Result<TokenStream> {
    let ident = entity.ident;
    let krate = &entity.krate;
    let private = quote!(#krate::__private);
    let table = &entity.table.value;

    let Some(id) = entity.fields.iter().find(|field| field.role == Role::Id) else {
        return Err(syn::Error::new_spanned(ident, "#[derive(SyncEntity)]: no id field"));
    };
    let id_member = id.member;
    // Spanned at the id's type, so an id that is not a `String` is a type mismatch
    // pointing there.
    let id_span = id.ty.span();
    let id_ref = quote_spanned!(id_span=> &self.#id_member);
    let id_assign = quote_spanned!(id_span=> self.#id_member = id;);

    let field_defs = entity.fields.iter().map(|field| field_def(field, krate));
    let to_values = entity.fields.iter().map(|field| {
        let member = field.member;
        let value = field_value(field.ty, krate);
        quote!(#value::to_value(&self.#member))
    });
    // One generic decoder serves `from_values` and `from_row`, so an unsupported field
    // type is reported once.
    let decode_fields = entity.fields.iter().enumerate().map(|(index, field)| {
        let member = field.member;
        let name = &field.name;
        let ty = field.ty;
        let read = private_item(krate, "FieldSource", ty.span());
        quote_spanned!(ty.span()=> #member: #read::field::<#ty>(&mut source, #index, #name)?)
    });
    let assertions = entity.fields.iter().filter_map(|field| role_assertion(field, krate));

    let handles: Vec<Handle<'_>> = entity
        .fields
        .iter()
        .map(|field| Handle { member: field.member, ty: field.ty, column: field.column.value.clone() })
        .collect();
    let companion = companion_struct(ident, entity.vis, &private, &handles);
    let fields_const = fields_const(ident, &private, &handles);

    Ok(quote! {
        #companion

        const _: () = {
            #fields_const

            #[automatically_derived]
            impl #private::SyncEntity for #ident {
                const TABLE: &'static ::core::primitive::str = #table;
                const FIELD_DEFS: &'static [#private::FieldDef] = &[#(#field_defs),*];

                fn id(&self) -> &::core::primitive::str {
                    #id_ref
                }

                fn set_id(&mut self, id: #private::String) {
                    #id_assign
                }

                fn to_values(&self) -> #private::Vec<#private::Value> {
                    #private::Vec::from([#(#to_values),*])
                }

                fn from_values(
                    values: #private::Vec<#private::Value>,
                ) -> ::core::result::Result<Self, #private::DecodeError> {
                    __sync_decode(::core::iter::IntoIterator::into_iter(values))
                }

                fn from_row(
                    row: &#private::RowReader<'_>,
                ) -> ::core::result::Result<Self, #private::DecodeError> {
                    __sync_decode(row)
                }
            }

            fn __sync_decode<S: #private::FieldSource>(
                mut source: S,
            ) -> ::core::result::Result<#ident, #private::DecodeError> {
                ::core::result::Result::Ok(#ident { #(#decode_fields),* })
            }

            #(#assertions)*
        };
    })
}

/// `<Ty as FieldValue>`, spanned at the field's type so that an unsupported type is
/// reported there (with `FieldValue`'s `on_unimplemented` message).
fn field_value(ty: &Type, krate: &syn::Path) -> TokenStream {
    let span = ty.span();
    let trait_path = private_item(krate, "FieldValue", span);
    quote_spanned!(span=> <#ty as #trait_path>)
}

fn field_def(field: &Field<'_>, krate: &syn::Path) -> TokenStream {
    let private = quote!(#krate::__private);
    let name = &field.name;
    let column = &field.column.value;
    let value = field_value(field.ty, krate);
    let role = Ident::new(field.role.variant(), Span::call_site());
    let index = field.attrs.index;
    quote! {
        #private::FieldDef {
            field: #name,
            column: #column,
            ty: #value::TYPE,
            nullable: #value::NULLABLE,
            role: #private::FieldRole::#role,
            index: #index,
        }
    }
}

/// The const assertion on the type of a field with a role that constrains it, spanned
/// at the type. `None` for ids (the `id()` body checks those) and plain fields.
fn role_assertion(field: &Field<'_>, krate: &syn::Path) -> Option<TokenStream> {
    let span = field.ty.span();
    let value = field_value(field.ty, krate);
    let column_type = private_item(krate, "ColumnType", span);
    let name = &field.name;
    let (condition, message) = match field.role {
        Role::LocalOnly => (
            quote_spanned!(span=> #value::NULLABLE),
            format!(
                "field `{name}` is #[sync(local_only)], so its type must be an Option: rows \
                 pulled from the server have no value for it"
            ),
        ),
        Role::Version => (
            quote_spanned!(span=> ::core::matches!(#value::TYPE, #column_type::String)),
            format!(
                "field `{name}` is #[sync(version)], so its type must be String or \
                 Option<String>: the version is an opaque string"
            ),
        ),
        Role::UpdatedAt | Role::CreatedAt => (
            quote_spanned!(span=> ::core::matches!(#value::TYPE, #column_type::String | #column_type::DateTime)),
            format!(
                "field `{name}` is #[sync({})], so its type must be a timestamp \
                 (time::OffsetDateTime) or a String, or an Option of one",
                field.role.key().unwrap_or_default()
            ),
        ),
        Role::Deleted => (
            quote_spanned!(span=> ::core::matches!(#value::TYPE, #column_type::Bool) && !#value::NULLABLE),
            format!("field `{name}` is #[sync(deleted)], so its type must be bool"),
        ),
        Role::Id | Role::Data => return None,
    };
    Some(quote_spanned!(span=> const _: () = ::core::assert!(#condition, #message);))
}

/// `<Name>Fields`: one typed column handle per field.
fn companion_struct(ident: &Ident, vis: &Visibility, private: &TokenStream, handles: &[Handle<'_>]) -> TokenStream {
    let fields_ident = fields_ident(ident);
    let doc = format!(
        "Typed column handles of [`{ident}`], for queries: `{ident}::FIELDS.<field>.eq(...)`. \
         Generated by `#[derive(SyncEntity)]`."
    );
    let fields = handles.iter().map(|Handle { member, ty, column }| {
        let doc = format!("The `{column}` column.");
        quote! {
            #[doc = #doc]
            pub #member: #private::Column<#ident, #ty>
        }
    });
    quote! {
        #[doc = #doc]
        #[derive(::core::clone::Clone, ::core::marker::Copy, ::core::fmt::Debug)]
        // Every field gets a handle, whether or not the app queries it; the handles
        // have the field names, whatever lints those names trip on the struct.
        #[allow(dead_code, non_snake_case)]
        #vis struct #fields_ident {
            #(#fields),*
        }
    }
}

/// `impl Name { pub const FIELDS: NameFields = ...; }`.
fn fields_const(ident: &Ident, private: &TokenStream, handles: &[Handle<'_>]) -> TokenStream {
    let fields_ident = fields_ident(ident);
    let values = handles.iter().map(|Handle { member, column, .. }| quote!(#member: #private::Column::new(#column)));
    quote! {
        #[automatically_derived]
        impl #ident {
            /// Typed column handles, for queries: `Self::FIELDS.<field>.eq(...)`.
            #[allow(dead_code)]
            pub const FIELDS: #fields_ident = #fields_ident { #(#values),* };
        }
    }
}

fn fields_ident(ident: &Ident) -> Ident {
    format_ident!("{}Fields", ident, span = ident.span())
}

/// `krate::__private::name`, with `name` spanned at `span`: errors about the item
/// (an unmet `FieldValue` bound) point there, while a wrong `crate` path is still
/// reported at the `crate = "..."` literal.
fn private_item(krate: &syn::Path, name: &str, span: Span) -> TokenStream {
    let name = Ident::new(name, span);
    quote!(#krate::__private::#name)
}
