//! The rules that involve more than one key or field: one id, one field per system
//! column, no two fields on one column, valid table and column names.
//!
//! Rules on a field's *type* (a `local_only` field is an `Option`, the id is a
//! `String`, ...) cannot be checked here, since the derive never decides types from
//! tokens; `expand.rs` names each field type through the trait of its role
//! (`IdField`, `LocalOnlyField`, ...), whose `on_unimplemented` message is the error,
//! with or without other mistakes.

use crate::ast::{Entity, Field, RESERVED_TABLE_PREFIX};
use crate::attr::{self, Role, SYSTEM_COLUMNS};
use crate::ctxt::Ctxt;

/// Reports every broken rule of `entity` to `cx`.
pub(crate) fn entity(cx: &Ctxt, entity: &Entity<'_>) {
    table_name(cx, entity);
    roles(cx, entity);
    columns(cx, entity);
}

fn table_name(cx: &Ctxt, entity: &Entity<'_>) {
    let table = &entity.table;
    if !is_sql_name(&table.value) {
        cx.error_at(
            table.span,
            format!(
                "table name \"{}\" is not valid: use ASCII letters, digits and `_`, not \
                 starting with a digit (set it with #[sync({} = \"...\")])",
                table.value,
                attr::TABLE
            ),
        );
    } else if starts_with_ignore_case(&table.value, RESERVED_TABLE_PREFIX) {
        cx.error_at(
            table.span,
            format!(
                "table name \"{}\" is reserved: names starting with `{RESERVED_TABLE_PREFIX}` \
                 are the sync store's own tables",
                table.value
            ),
        );
    }
}

fn roles(cx: &Ctxt, entity: &Entity<'_>) {
    for field in &entity.fields {
        // One role per field: every role key after the first conflicts with it.
        if let Some((first, _)) = field.attrs.roles.first() {
            for (extra, span) in &field.attrs.roles[1..] {
                cx.error_at(
                    *span,
                    format!(
                        "conflicting roles: `{}` cannot be combined with `{}` on one field",
                        key(*extra),
                        key(*first)
                    ),
                );
            }
        }
        // A system column's name is fixed.
        if let (Some(system), Some(rename)) = (field.role.system_column(), &field.attrs.rename) {
            cx.error_spanned_by(
                rename,
                format!(
                    "`{}` does not apply to field `{}`: it is {}, whose column is always `{system}`",
                    attr::RENAME,
                    field.name,
                    describe_role(field.role),
                ),
            );
        }
    }

    // Exactly one id, at most one view of each other system column.
    for (_, role) in SYSTEM_COLUMNS {
        let mut holders = entity.fields.iter().filter(|field| field.role == role);
        let Some(first) = holders.next() else {
            if role == Role::Id {
                cx.error_spanned_by(
                    entity.ident,
                    format!(
                        "`{}` has no id field: add a field `id: String`, or mark the id field \
                         #[sync({})]",
                        entity.ident,
                        attr::ID
                    ),
                );
            }
            continue;
        };
        for again in holders {
            let message = if role == Role::Id {
                format!("two id fields: `{}` is already the id; a table has one id field", first.name)
            } else {
                format!(
                    "field `{}` is already marked #[sync({})]; a system column can be viewed by \
                     one field only",
                    first.name,
                    key(role)
                )
            };
            cx.error_at(again.role_span, message);
        }
    }
}

fn columns(cx: &Ctxt, entity: &Entity<'_>) {
    let id_field = entity.fields.iter().find(|field| field.role == Role::Id);
    // Columns seen so far, lowercased (SQLite and some servers ignore case), with the
    // field that has each.
    let mut seen: Vec<(String, &Field<'_>)> = Vec::new();
    for field in &entity.fields {
        let column = &field.column;
        if field.role.system_column().is_some() {
            // Fixed, valid names; two fields with one role are reported by `roles`.
            continue;
        }
        if !is_sql_name(&column.value) {
            cx.error_at(
                column.span,
                format!(
                    "column name \"{}\" of field `{}` is not valid: use ASCII letters, digits and \
                     `_`, not starting with a digit (set it with #[sync({} = \"...\")])",
                    column.value,
                    field.name,
                    attr::RENAME
                ),
            );
            continue;
        }
        if let Some((system, role)) =
            SYSTEM_COLUMNS.iter().find(|(system, _)| system.eq_ignore_ascii_case(&column.value))
        {
            cx.error_at(column.span, system_collision(field, system, *role, id_field));
            continue;
        }
        let lower = column.value.to_ascii_lowercase();
        if let Some((_, other)) = seen.iter().find(|(seen, _)| *seen == lower) {
            let case_note =
                if other.column.value == column.value { "" } else { " (column names are compared ignoring case)" };
            cx.error_at(
                column.span,
                format!(
                    "fields `{}` and `{}` both map to column `{}`{case_note}; give one another \
                     name with #[sync({} = \"...\")]",
                    other.name,
                    field.name,
                    column.value,
                    attr::RENAME
                ),
            );
            continue;
        }
        seen.push((lower, field));
    }
}

/// The message for an ordinary field whose column is a system column.
fn system_collision(field: &Field<'_>, system: &str, role: Role, id_field: Option<&Field<'_>>) -> String {
    let head = if field.column.value == system {
        format!("field `{}` maps to the system column `{system}`", field.name)
    } else {
        format!(
            "field `{}` maps to column `{}`, which is the system column `{system}` (column names \
             are compared ignoring case)",
            field.name, field.column.value
        )
    };
    let fix = match (role, id_field) {
        (Role::Id, Some(id)) => format!(
            "the id is field `{}`; give this field another column name with #[sync({} = \"...\")]",
            id.name,
            attr::RENAME
        ),
        _ => format!(
            "to view the system column, mark the field #[sync({})]; otherwise give it another \
             column name with #[sync({} = \"...\")]",
            key(role),
            attr::RENAME
        ),
    };
    format!("{head}: {fix}")
}

fn key(role: Role) -> &'static str {
    role.key().unwrap_or("data")
}

fn describe_role(role: Role) -> String {
    match role {
        Role::Id => "the id".to_owned(),
        _ => format!("#[sync({})]", key(role)),
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`: safe to put in SQL unquoted and in OData and JSON as is.
fn is_sql_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn starts_with_ignore_case(name: &str, prefix: &str) -> bool {
    name.get(..prefix.len()).is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

#[cfg(test)]
mod tests {
    use super::{is_sql_name, starts_with_ignore_case};

    #[test]
    fn sql_names() {
        for ok in ["a", "_", "TodoItem", "due_at", "x1", "_9"] {
            assert!(is_sql_name(ok), "{ok}");
        }
        for bad in ["", "1a", "due-at", "due at", "café", "a.b", "\"a\""] {
            assert!(!is_sql_name(bad), "{bad}");
        }
    }

    #[test]
    fn reserved_prefix() {
        assert!(starts_with_ignore_case("__sync_ops", "__sync"));
        assert!(starts_with_ignore_case("__SYNCx", "__sync"));
        assert!(!starts_with_ignore_case("__syn", "__sync"));
        assert!(!starts_with_ignore_case("é_sync", "__sync"));
    }
}
