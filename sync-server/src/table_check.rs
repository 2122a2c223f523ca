//! The check that a table definition can be served ([`TableDef::validate`]): names
//! that are plain identifiers (a URL segment and a SQL name), nothing reserved, no
//! column declared twice or colliding with a system column, a sound owner column.
//! (Kept apart from `table.rs`, which the storage reads, so that the definitions do not
//! depend on the server's error type, which wraps the storage's.)

use sync_core::ColumnType;
use sync_core::system;

use crate::error::Error;
use crate::table::TableDef;

impl TableDef {
    /// Checks that the table can be served: a plain identifier as the name (it is a URL
    /// segment and a SQL table name), not reserved, with unique plain column names that
    /// do not collide with system columns. Identifiers compare case-insensitively here,
    /// because SQL databases treat them so.
    pub fn validate(&self) -> Result<(), Error> {
        let table = &self.name;
        if !is_identifier(table) {
            return Err(Error::table(
                table,
                "a table name must start with a letter or `_` and contain only ASCII letters, digits and `_` (at most 128 characters)",
            ));
        }
        if table.to_ascii_lowercase().starts_with(system::RESERVED_PREFIX) {
            return Err(Error::table(table, format!("names starting with `{}` are reserved", system::RESERVED_PREFIX)));
        }
        for (i, col) in self.columns.iter().enumerate() {
            if !is_identifier(&col.name) {
                return Err(Error::column(
                    table,
                    &col.name,
                    "a column name must start with a letter or `_` and contain only ASCII letters, digits and `_` (at most 128 characters)",
                ));
            }
            if system::is_system_column(&col.name) {
                return Err(Error::column(
                    table,
                    &col.name,
                    "the name is a system column (id, version, updatedAt, createdAt, deleted)",
                ));
            }
            if self.columns[..i].iter().any(|c| c.name.eq_ignore_ascii_case(&col.name)) {
                return Err(Error::column(table, &col.name, "the column is declared twice"));
            }
        }
        if let Some(owner) = &self.owner_column {
            let bad = |message: &str| Err(Error::column(table, owner, format!("owner column: {message}")));
            if !is_identifier(owner) {
                return bad("not a plain identifier (ASCII letters, digits and `_`, at most 128 characters)");
            }
            if system::is_system_column(owner) || owner.to_ascii_lowercase().starts_with(system::RESERVED_PREFIX) {
                return bad("the name is a system column or reserved");
            }
            match self.columns.iter().find(|c| c.name.eq_ignore_ascii_case(owner)) {
                Some(col) if col.name != *owner => {
                    return bad(&format!("differs only in letter case from the data column `{}`", col.name));
                }
                Some(col) if col.ty != ColumnType::String => {
                    return bad(&format!("the data column is {}; an owner column holds text (a string)", col.ty));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 128
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_problem() {
        let ok = TableDef::new("TodoItem").column("text", ColumnType::String, false);
        assert!(ok.validate().is_ok());

        let err = TableDef::new("Todo Item").validate().unwrap_err().to_string();
        assert!(err.contains("Todo Item"), "{err}");

        let err = TableDef::new("__sync_x").validate().unwrap_err().to_string();
        assert!(err.contains("reserved"), "{err}");

        let err = TableDef::new("T").column("UpdatedAt", ColumnType::String, true).validate();
        assert!(err.unwrap_err().to_string().contains("`UpdatedAt`"));

        let err =
            TableDef::new("T").column("a", ColumnType::String, true).column("A", ColumnType::Int, true).validate();
        assert!(err.unwrap_err().to_string().contains("twice"));
    }
}
