//! Code generation: the `SyncEntity` impl, the typed column handles, the checks of
//! the field types, and the fallback emitted beside errors.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, Ident, Type, Visibility};

use crate::ast::{self, Entity, Field};
use crate::attr::{self, Role};
use crate::check;
use crate::ctxt::Ctxt;

/// Reads, checks and expands one input. With mistakes, the output is every one of them
/// as a `compile_error!`, beside a minimal impl and the checks of the field types, so
/// that one compile reports every mistake of the struct.
pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let entity = Entity::from_syn(&cx, input);
    if let Some(entity) = &entity {
        check::entity(&cx, entity);
    }
    match (cx.check(), entity) {
        (Ok(()), Some(entity)) => entity_impl(&entity),
        (Err(errors), entity) => fallback(input, entity.as_ref(), errors),
        // `from_syn` reports why whenever it returns `None`; this is a safety net.
        (Ok(()), None) => {
            syn::Error::new_spanned(&input.ident, "#[derive(SyncEntity)] could not read this item").into_compile_error()
        }
    }
}

/// The errors, plus a minimal impl so that one mistake does not cascade into errors at
/// every use of the type (thiserror's fallback). Its bodies never run: the
/// `compile_error!` beside it fails the build. The field types are still checked (a
/// field type the derive does not support, one that does not fit its role), so their
/// errors come in the same compile as the attribute mistakes.
fn fallback(input: &DeriveInput, entity: Option<&Entity<'_>>, error: syn::Error) -> TokenStream {
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
        let type_checks = entity.into_iter().flat_map(|entity| &entity.fields).map(|field| type_check(field, &krate));
        tokens.extend(quote! { const _: () = { #fields_const #(#type_checks)* }; });
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

/// The fallback's check of one field's type: what the impl would need of it (`IdField`
/// for the id, `FieldValue` for the others) and what its role needs.
fn type_check(field: &Field<'_>, krate: &syn::Path) -> TokenStream {
    let span = field.ty.span();
    let ty = field.ty;
    let mut checks = match field.role {
        Role::Id => {
            let id_field = private_item(krate, "IdField", span);
            quote_spanned!(span=> const _: () = <#ty as #id_field>::FITS;)
        }
        _ => {
            let value = field_value(ty, krate);
            quote_spanned!(span=> const _: ::core::primitive::bool = #value::NULLABLE;)
        }
    };
    checks.extend(role_check(field, krate));
    checks
}

/// One column handle of the companion struct.
struct Handle<'a> {
    member: &'a Ident,
    ty: &'a Type,
    column: String,
}

fn entity_impl(entity: &Entity<'_>) -> TokenStream {
    let ident = entity.ident;
    let krate = &entity.krate;
    let private = quote!(#krate::__private);
    let table = &entity.table.value;

    // `check::roles` made sure there is exactly one id.
    let id = entity.fields.iter().find(|field| field.role == Role::Id);
    let (id_ref, id_assign) = match id {
        Some(id) => {
            let member = id.member;
            let id_field = id_field(id.ty, krate);
            (quote!(#id_field::as_id(&self.#member)), quote!(self.#member = #id_field::from_id(id);))
        }
        None => (quote!(::core::unreachable!()), quote!(::core::unreachable!())),
    };

    let field_defs = entity.fields.iter().map(|field| field_def(field, krate));
    // The id goes through `IdField`, every other field through `FieldValue`: a type
    // that is not supported meets one unmet bound, reported once at the field's type.
    let to_values = entity.fields.iter().map(|field| {
        let member = field.member;
        let value = match field.role {
            Role::Id => id_field(field.ty, krate),
            _ => field_value(field.ty, krate),
        };
        quote!(#value::to_value(&self.#member))
    });
    // One generic decoder serves `from_values` and `from_row`.
    let decode_fields = entity.fields.iter().enumerate().map(|(index, field)| {
        let member = field.member;
        let name = &field.name;
        let value = match field.role {
            Role::Id => id_field(field.ty, krate),
            _ => field_value(field.ty, krate),
        };
        quote!(#member: #value::read_field(&mut source, #index, #name)?)
    });
    let role_checks = entity.fields.iter().filter_map(|field| role_check(field, krate));

    let handles: Vec<Handle<'_>> = entity
        .fields
        .iter()
        .map(|field| Handle { member: field.member, ty: field.ty, column: field.column.value.clone() })
        .collect();
    let companion = companion_struct(ident, entity.vis, &private, &handles);
    let fields_const = fields_const(ident, &private, &handles);

    quote! {
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

            #(#role_checks)*
        };
    }
}

/// `<Ty as IdField>`, spanned at the id's type: an id that is not a `String` is
/// reported there, with `IdField`'s message.
fn id_field(ty: &Type, krate: &syn::Path) -> TokenStream {
    let span = ty.span();
    let trait_path = private_item(krate, "IdField", span);
    quote_spanned!(span=> <#ty as #trait_path>)
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
    let role = Ident::new(field.role.variant(), Span::call_site());
    let index = field.attrs.index;
    // The id is a `String` (its `IdField` bound checks that): its type says nothing
    // more, and naming it through `FieldValue` would report a wrong id type twice.
    let (ty, nullable) = match field.role {
        Role::Id => (quote!(#private::ColumnType::String), quote!(false)),
        _ => {
            let value = field_value(field.ty, krate);
            (quote!(#value::TYPE), quote!(#value::NULLABLE))
        }
    };
    quote! {
        #private::FieldDef {
            field: #name,
            column: #column,
            ty: #ty,
            nullable: #nullable,
            role: #private::FieldRole::#role,
            index: #index,
        }
    }
}

/// The check that a field's type fits its role, spanned at the type: the type named
/// through the role's trait, whose `on_unimplemented` message says what the role
/// takes. `None` for plain fields and ids (whose type `IdField` checks where it is
/// used).
fn role_check(field: &Field<'_>, krate: &syn::Path) -> Option<TokenStream> {
    let role_trait = match field.role {
        Role::LocalOnly => "LocalOnlyField",
        Role::Version => "VersionField",
        Role::UpdatedAt | Role::CreatedAt => "TimestampField",
        Role::Deleted => "DeletedField",
        Role::Id | Role::Data => return None,
    };
    let span = field.ty.span();
    let ty = field.ty;
    let trait_path = private_item(krate, role_trait, span);
    Some(quote_spanned!(span=> const _: () = <#ty as #trait_path>::FITS;))
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
