//! The tables file: the tables a stand-alone server serves, in TOML.
//!
//! ```toml
//! [tables.TodoItem]
//! columns = { text = "string", complete = "bool" }
//! soft_delete = true        # optional, default true
//! owner_column = "userId"   # optional: per-user rows (needs `--auth jwt`)
//! ```
//!
//! Column types are `string bool int float datetime json bytes`; every column of a
//! tables file is nullable. Columns keep the file's order. `owner_column` makes the
//! table per-user ([`crate::table::TableDef::owner_column`]): listed in `columns` (as a
//! `string`) it is served read-only, otherwise it is a server-only column.
//!
//! **Declare every column the table's clients send.** A body with a property the table
//! does not have is refused (400, naming the property), and third-party clients of the
//! protocol family (the Azure Mobile Apps JavaScript and .NET SDKs, the Datasync
//! clients) push every column of their local table, so a column a client adds locally
//! must be added here first. (System properties are the server's: v2 refuses them in a
//! body, as the official Node server does; v3 accepts and ignores them.)

use std::path::Path;

use sync_core::ColumnType;

use crate::error::Error;
use crate::table::{ColumnDef, TableDef};

/// Reads and checks a tables file.
pub fn load_tables_file(path: &Path) -> Result<Vec<TableDef>, Error> {
    let text =
        std::fs::read_to_string(path).map_err(|source| Error::ReadTablesFile { path: path.to_owned(), source })?;
    parse_tables(&text)
}

/// Parses and checks the text of a tables file.
pub fn parse_tables(text: &str) -> Result<Vec<TableDef>, Error> {
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| Error::TablesFile(e.to_string()))?;
    for key in doc.keys() {
        if key != "tables" {
            return Err(Error::TablesFile(format!("unknown top-level key `{key}`; expected [tables.<Name>] sections")));
        }
    }
    let tables = match doc.get("tables") {
        Some(toml::Value::Table(t)) => t,
        Some(_) => return Err(Error::TablesFile("`tables` must be a table of [tables.<Name>] sections".into())),
        None => return Err(Error::TablesFile("no tables declared; add a [tables.<Name>] section".into())),
    };
    if tables.is_empty() {
        return Err(Error::TablesFile("no tables declared; add a [tables.<Name>] section".into()));
    }
    let mut defs = Vec::with_capacity(tables.len());
    for (name, spec) in tables {
        let def = parse_table(name, spec)?;
        def.validate()?;
        defs.push(def);
    }
    Ok(defs)
}

fn parse_table(name: &str, spec: &toml::Value) -> Result<TableDef, Error> {
    let toml::Value::Table(spec) = spec else {
        return Err(Error::table(
            name,
            "must be a table with `columns` (and optionally `soft_delete`, `owner_column`)",
        ));
    };
    let mut def = TableDef::new(name);
    for (key, value) in spec {
        match key.as_str() {
            "columns" => {
                let toml::Value::Table(columns) = value else {
                    return Err(Error::table(name, "`columns` must be a table of `name = \"type\"`"));
                };
                for (column, ty) in columns {
                    let ty = match ty {
                        toml::Value::String(s) => ColumnType::from_name(s).ok_or_else(|| {
                            Error::column(
                                name,
                                column,
                                format!("unknown type `{s}`; expected one of string, bool, int, float, datetime, json, bytes"),
                            )
                        })?,
                        _ => {
                            return Err(Error::column(
                                name,
                                column,
                                "the type must be a string: string, bool, int, float, datetime, json or bytes",
                            ));
                        }
                    };
                    def.columns.push(ColumnDef { name: column.clone(), ty, nullable: true });
                }
            }
            "soft_delete" => match value {
                toml::Value::Boolean(b) => def.soft_delete = *b,
                _ => return Err(Error::table(name, "`soft_delete` must be true or false")),
            },
            "owner_column" => match value {
                toml::Value::String(column) => def.owner_column = Some(column.clone()),
                _ => return Err(Error::table(name, "`owner_column` must be a column name (a string)")),
            },
            other => {
                return Err(Error::table(
                    name,
                    format!("unknown key `{other}`; expected `columns`, `soft_delete` or `owner_column`"),
                ));
            }
        }
    }
    Ok(def)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tables_in_order() {
        let defs = parse_tables(
            r#"
            [tables.TodoItem]
            columns = { text = "string", complete = "bool", due = "datetime" }

            [tables.Blob]
            columns = { data = "bytes", meta = "json", n = "int", x = "float" }
            soft_delete = false
            "#,
        )
        .unwrap();
        assert_eq!(defs.len(), 2);
        assert_eq!(defs[0].name, "TodoItem");
        assert!(defs[0].soft_delete);
        let names: Vec<_> = defs[0].columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["text", "complete", "due"]);
        assert!(defs[0].columns.iter().all(|c| c.nullable));
        assert_eq!(defs[1].columns[0].ty, ColumnType::Bytes);
        assert!(!defs[1].soft_delete);
    }

    #[test]
    fn owner_columns_are_read_and_checked() {
        let defs = parse_tables(
            "[tables.Mine]\ncolumns = { text = \"string\" }\nowner_column = \"userId\"\n\n\
             [tables.Served]\ncolumns = { userId = \"string\", n = \"int\" }\nowner_column = \"userId\"\n",
        )
        .unwrap();
        assert_eq!(defs[0].owner_column.as_deref(), Some("userId"));
        assert_eq!(defs[0].hidden_owner(), Some("userId"));
        assert_eq!(defs[1].hidden_owner(), None);
        let err = parse_tables("[tables.T]\ncolumns = { n = \"int\" }\nowner_column = \"n\"\n").unwrap_err();
        assert!(err.to_string().contains("owner column"), "{err}");
        assert!(parse_tables("[tables.T]\nowner_column = true\n").is_err());
    }

    #[test]
    fn errors_name_table_and_column() {
        let err = parse_tables("[tables.T]\ncolumns = { text = \"strng\" }\n").unwrap_err().to_string();
        assert!(err.contains("`T`") && err.contains("`text`") && err.contains("strng"), "{err}");

        let err = parse_tables("[tables.T]\ncolumns = { n = 3 }\n").unwrap_err().to_string();
        assert!(err.contains("`n`"), "{err}");

        let err = parse_tables("[tables.T]\ncolumn = {}\n").unwrap_err().to_string();
        assert!(err.contains("unknown key `column`"), "{err}");

        let err = parse_tables("[tables.T]\ncolumns = { id = \"string\" }\n").unwrap_err().to_string();
        assert!(err.contains("system column"), "{err}");

        assert!(parse_tables("").is_err());
        assert!(parse_tables("[tables.T\n").is_err());
        assert!(parse_tables("[tables.T]\nsoft_delete = \"yes\"\n").is_err());
    }

    #[test]
    fn the_todo_example_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/todo/tables.toml");
        let defs = load_tables_file(&path).unwrap();
        assert_eq!(defs[0].name, "TodoItem");
        assert_eq!(defs[0].column_index("complete"), Some(1));
    }
}
