//! Storage behind one object-safe, async trait, so that SQLite and PostgreSQL slot in
//! behind the same HTTP layer.
//!
//! The HTTP layer does protocol work (versions, JSON, validation, which status for which
//! outcome); a storage does data work, and does each conditional write atomically: the
//! existence check, the version check and the write happen in one transaction, with
//! the `updatedAt` rule of [`crate::stamp`] applied inside the write lock.
//!
//! # Owned tables
//!
//! A table with an owner column ([`TableDef::owner_column`]) is keyed by `(owner, id)`:
//! every call on one row takes the caller's `owner`, and a row of another owner is, to
//! that call, a row that does not exist. List calls carry the owner condition in the
//! query's filter, as an AST node the HTTP layer adds.

mod postgres;
mod sqlite;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;

use sync_core::Value;
use sync_core::query::QuerySpec;
use sync_core::sql::quote_ident;

pub use postgres::PostgresStorage;
pub use sqlite::SqliteStorage;

use crate::table::TableDef;

/// A boxed `Send` future, the return type of every [`Storage`] method.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One stored row.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The primary key.
    pub id: String,
    /// One value per data column, in [`TableDef::columns`] order.
    pub values: Vec<Value>,
    /// The opaque version, new on every write.
    pub version: String,
    /// Last write, `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub updated_at: String,
    /// Creation, same format.
    pub created_at: String,
    /// Whether the row is a tombstone.
    pub deleted: bool,
}

/// A list request: the query (already including the tombstone condition the HTTP layer
/// adds) and whether to count every match too.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListQuery {
    /// Filter, order, limit and offset. The order always ends with `id` (the compiler
    /// adds it), so paging is stable.
    pub spec: QuerySpec,
    /// Also count the rows that match the filter, ignoring limit and offset.
    pub count: bool,
}

/// One page of rows, and the total when asked for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Page {
    /// The rows, in order.
    pub rows: Vec<Row>,
    /// The number of matching rows, when [`ListQuery::count`] was set.
    pub count: Option<u64>,
}

/// A change to an existing row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Update {
    /// New values by data column index; other columns keep theirs.
    pub values: Vec<(usize, Value)>,
    /// Write only if the row's version is this one.
    pub expected_version: Option<String>,
    /// Also clear the tombstone flag (a soft-deleted row is refused otherwise).
    pub undelete: bool,
}

/// A refused or failed storage call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// No row with this id.
    #[error("no item with this id")]
    NotFound,
    /// The row is a tombstone (soft-deleted).
    #[error("the item is deleted")]
    Deleted(Box<Row>),
    /// The row's version is not the expected one; carries the current row.
    #[error("the item has changed (version mismatch)")]
    VersionMismatch(Box<Row>),
    /// Insert of an id that exists (tombstones included); carries the existing row.
    #[error("an item with this id already exists")]
    AlreadyExists(Box<Row>),
    /// The query cannot run: an unknown column, or one the database refuses.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// The stored schema does not match the table definition.
    #[error("table `{table}`: {message}")]
    Schema {
        /// The table.
        table: String,
        /// What differs.
        message: String,
    },
    /// The database cannot be used as configured (e.g. no schema to create tables in).
    #[error("database setup: {0}")]
    Setup(String),
    /// The database failed.
    #[error("database error")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The storage cannot take requests (its worker is gone).
    #[error("storage unavailable: {0}")]
    Unavailable(&'static str),
}

/// Where the rows live. Object-safe (`Arc<dyn Storage>`); every method returns a boxed
/// `Send` future, so an implementation may be natively async (PostgreSQL) or run a
/// blocking driver on its own threads (SQLite).
///
/// Every call on one row takes `owner`: `Some(sub)` for an owned table (the row must
/// belong to `sub`; an insert makes it `sub`'s), ignored for other tables. A call on an
/// owned table without an owner fails with [`StorageError::Schema`].
///
/// Contract of the write methods, each atomic:
/// - every successful write sets a new `version` (never equal to the row's previous
///   one) and an `updatedAt` by the rule of [`crate::stamp`], so that the new
///   `(updatedAt, id)` is greater than every pair already committed in the table;
/// - checks come in this order: existence ([`StorageError::NotFound`]), tombstone
///   ([`StorageError::Deleted`], unless the call undeletes), expected version
///   ([`StorageError::VersionMismatch`] with the current row).
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// Creates the tables (or checks and extends existing ones). Called once before
    /// serving, with every table the server serves.
    fn prepare(&self, tables: Vec<Arc<TableDef>>) -> BoxFuture<'_, Result<(), StorageError>>;

    /// Rows matching a query.
    fn list(&self, table: Arc<TableDef>, query: ListQuery) -> BoxFuture<'_, Result<Page, StorageError>>;

    /// One row by id, tombstones included.
    fn get(
        &self,
        table: Arc<TableDef>,
        id: String,
        owner: Option<String>,
    ) -> BoxFuture<'_, Result<Option<Row>, StorageError>>;

    /// Inserts a row: `values` has one value per data column (a served owner column is
    /// set to `owner` whatever it holds). Refuses an existing id (tombstones included)
    /// with [`StorageError::AlreadyExists`].
    fn insert(
        &self,
        table: Arc<TableDef>,
        id: String,
        values: Vec<Value>,
        owner: Option<String>,
    ) -> BoxFuture<'_, Result<Row, StorageError>>;

    /// Changes a row (never its owner column).
    fn update(
        &self,
        table: Arc<TableDef>,
        id: String,
        update: Update,
        owner: Option<String>,
    ) -> BoxFuture<'_, Result<Row, StorageError>>;

    /// Deletes a row: marks it deleted (`soft`, returning the tombstone) or removes it
    /// (returning the row as it was).
    fn delete(
        &self,
        table: Arc<TableDef>,
        id: String,
        expected_version: Option<String>,
        soft: bool,
        owner: Option<String>,
    ) -> BoxFuture<'_, Result<Row, StorageError>>;

    /// Clears the tombstone flag of a row (a new version and `updatedAt`); a row that is
    /// not deleted is returned unchanged.
    fn undelete(
        &self,
        table: Arc<TableDef>,
        id: String,
        expected_version: Option<String>,
        owner: Option<String>,
    ) -> BoxFuture<'_, Result<Row, StorageError>>;

    /// Whether the storage answers (for `GET /healthz`).
    fn health(&self) -> BoxFuture<'_, Result<(), StorageError>>;

    /// Closes the storage after the server stopped: later calls fail with
    /// [`StorageError::Unavailable`]. The default does nothing.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Which database to use, from a URL: `sqlite:PATH`, `sqlite::memory:` or
/// `postgres://...`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Database {
    /// A SQLite file (created when missing), in WAL mode.
    SqliteFile(PathBuf),
    /// A private in-memory SQLite database, gone when the server stops.
    SqliteMemory,
    /// A PostgreSQL URL, `postgres://user:password@host:port/dbname`, with libpq's
    /// query parameters (`?options=-csearch_path%3Dmyschema` picks the schema the tables
    /// live in). See [`PostgresStorage`].
    Postgres(String),
}

impl FromStr for Database {
    type Err = crate::Error;

    fn from_str(url: &str) -> Result<Database, crate::Error> {
        let bad = |message: &str| crate::Error::Database { url: url.to_owned(), message: message.to_owned() };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return match tokio_postgres::Config::from_str(url) {
                Ok(_) => Ok(Database::Postgres(url.to_owned())),
                Err(e) => Err(crate::Error::Database { url: redact(url), message: format!("invalid URL: {e}") }),
            };
        }
        let Some(rest) = url.strip_prefix("sqlite:") else {
            return Err(bad("unsupported database URL; expected sqlite:PATH, sqlite::memory: or postgres://..."));
        };
        let path = rest.strip_prefix("//").unwrap_or(rest);
        match path {
            ":memory:" => Ok(Database::SqliteMemory),
            "" => Err(bad("missing path after `sqlite:`")),
            _ => Ok(Database::SqliteFile(PathBuf::from(path))),
        }
    }
}

impl Database {
    /// Opens the storage for this database.
    pub async fn open(&self, clock: Arc<dyn crate::Clock>) -> Result<Arc<dyn Storage>, crate::Error> {
        match self {
            Database::SqliteFile(path) => Ok(Arc::new(SqliteStorage::open_file(path.clone(), clock).await?)),
            Database::SqliteMemory => Ok(Arc::new(SqliteStorage::open_memory(clock).await?)),
            Database::Postgres(url) => match PostgresStorage::connect(url, clock).await {
                Ok(storage) => Ok(Arc::new(storage)),
                Err(e) => Err(crate::Error::Database { url: redact(url), message: describe(&e) }),
            },
        }
    }
}

/// An error with its causes, for a start-up message.
fn describe(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}

/// The owner a call on `table` works for: `owner` for an owned table (which must have
/// one), `None` for a shared table.
fn scope(table: &TableDef, owner: Option<String>) -> Result<Option<String>, StorageError> {
    match (&table.owner_column, owner) {
        (None, _) => Ok(None),
        (Some(_), Some(owner)) => Ok(Some(owner)),
        (Some(column), None) => Err(StorageError::Schema {
            table: table.name.clone(),
            message: format!("the table is owned (owner column `{column}`) but the call has no owner"),
        }),
    }
}

/// The URL without its password (in the user info or a `password=` parameter), for
/// messages.
fn redact(url: &str) -> String {
    let url = match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme_end + 3], &userinfo[..colon], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    };
    match url.split_once('?') {
        Some((base, query)) => {
            let params: Vec<&str> =
                query.split('&').map(|p| if p.starts_with("password=") { "password=***" } else { p }).collect();
            format!("{base}?{}", params.join("&"))
        }
        None => url,
    }
}

/// Checks a stored table against its definition and returns the data columns to add:
/// the key must be the definition's (`owner, id` or `id`), every system column must be
/// there, and a stored data column must have the type `decl` gives for its declared
/// type. `stored_key` is the key's columns in order; `existing` is `(name, stored type)`
/// of every column. Types compare without letter case (SQLite keeps a declared type as
/// written); names too when `names_ignore_case` (SQLite's are, PostgreSQL's quoted ones
/// are not).
pub(crate) fn columns_to_add<'t>(
    table: &'t TableDef,
    stored_key: &[&str],
    existing: &[(&str, &str)],
    names_ignore_case: bool,
    decl: fn(sync_core::ColumnType) -> &'static str,
) -> Result<Vec<&'t crate::table::ColumnDef>, StorageError> {
    let schema_err = |message: String| StorageError::Schema { table: table.name.clone(), message };
    let key: Vec<&str> = table.owner_column.iter().map(String::as_str).chain(["id"]).collect();
    if stored_key != key.as_slice() {
        return Err(schema_err(format!(
            "the stored table is keyed by ({}) but the definition needs ({}) (an owner column keys rows by owner \
             and id); this change needs a migration",
            stored_key.join(", "),
            key.join(", ")
        )));
    }
    let same = |a: &str, b: &str| if names_ignore_case { a.eq_ignore_ascii_case(b) } else { a == b };
    let find = |col: &str| existing.iter().find(|(n, _)| same(n, col)).map(|(_, ty)| *ty);
    for sys in ["id", "version", "updatedAt", "createdAt", "deleted"] {
        if find(sys).is_none() {
            return Err(schema_err(format!(
                "the existing table has no `{sys}` column; it was not created by sync-server"
            )));
        }
    }
    let mut missing = Vec::new();
    for col in &table.columns {
        match find(&col.name) {
            None => missing.push(col),
            Some(stored) if !stored.eq_ignore_ascii_case(decl(col.ty)) => {
                return Err(schema_err(format!(
                    "column `{}` is stored as {stored} but declared {} ({}); this change needs a migration",
                    col.name,
                    col.ty,
                    decl(col.ty)
                )));
            }
            Some(_) => {}
        }
    }
    Ok(missing)
}

/// How a backend numbers statement parameters: SQLite `?1`, PostgreSQL `$1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placeholders {
    /// `?1, ?2, ..`
    Sqlite,
    /// `$1, $2, ..`
    Postgres,
}

impl Placeholders {
    fn mark(self, n: usize) -> String {
        match self {
            Placeholders::Sqlite => format!("?{n}"),
            Placeholders::Postgres => format!("${n}"),
        }
    }
}

/// Inserts every stored column of a row, then the owner when it is a hidden column:
/// parameter 1 the id, then the data and system columns in order, then the owner.
pub(crate) fn insert_sql(table: &TableDef, marks: Placeholders) -> String {
    let mut cols = table.stored_columns();
    cols.extend(table.hidden_owner());
    let names: Vec<String> = cols.iter().map(|c| quote_ident(c)).collect();
    let values: Vec<String> = (1..=cols.len()).map(|i| marks.mark(i)).collect();
    format!("INSERT INTO {} ({}) VALUES ({})", quote_ident(&table.name), names.join(", "), values.join(", "))
}

/// Sets every stored column but the key: parameter 1 the id, the columns in the order
/// of [`insert_sql`], then the owner of an owned table.
pub(crate) fn update_sql(table: &TableDef, marks: Placeholders) -> String {
    let cols = table.stored_columns();
    let sets: Vec<String> =
        cols.iter().enumerate().skip(1).map(|(i, c)| format!("{} = {}", quote_ident(c), marks.mark(i + 1))).collect();
    let mut sql =
        format!("UPDATE {} SET {} WHERE \"id\" = {}", quote_ident(&table.name), sets.join(", "), marks.mark(1));
    if let Some(owner) = &table.owner_column {
        sql.push_str(&format!(" AND {} = {}", quote_ident(owner), marks.mark(cols.len() + 1)));
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_tables_are_checked_against_their_definition() {
        use sync_core::ColumnType;
        let decl = |ty: ColumnType| if ty == ColumnType::Int { "bigint" } else { "text" };
        let t = TableDef::new("T").column("a", ColumnType::String, true).column("n", ColumnType::Int, true);
        let system =
            [("id", "text"), ("version", "text"), ("updatedAt", "text"), ("createdAt", "text"), ("deleted", "x")];
        let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> {
            system.iter().chain(extra).copied().collect()
        };
        // `a` is there, `n` is missing: added.
        let add = columns_to_add(&t, &["id"], &with(&[("a", "TEXT")]), true, decl).unwrap();
        assert_eq!(add.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["n"]);
        // Names ignore case only where the backend's do.
        assert_eq!(columns_to_add(&t, &["id"], &with(&[("A", "text"), ("n", "bigint")]), true, decl).unwrap().len(), 0);
        assert_eq!(
            columns_to_add(&t, &["id"], &with(&[("A", "text"), ("n", "bigint")]), false, decl).unwrap().len(),
            1
        );
        let message = |r: Result<Vec<&crate::table::ColumnDef>, StorageError>| r.unwrap_err().to_string();
        let retyped = message(columns_to_add(&t, &["id"], &with(&[("a", "bigint")]), true, decl));
        assert!(retyped.contains("`a` is stored as bigint but declared string (text)"), "{retyped}");
        let rekeyed = message(columns_to_add(&t.clone().owner_column("owner"), &["id"], &with(&[]), true, decl));
        assert!(rekeyed.contains("keyed by (id) but the definition needs (owner, id)"), "{rekeyed}");
        let foreign = message(columns_to_add(&t, &["id"], &[("id", "text"), ("a", "text")], true, decl));
        assert!(foreign.contains("no `version` column"), "{foreign}");
    }

    #[test]
    fn database_urls() {
        assert_eq!("sqlite::memory:".parse::<Database>().unwrap(), Database::SqliteMemory);
        assert_eq!("sqlite:/tmp/x.db".parse::<Database>().unwrap(), Database::SqliteFile(PathBuf::from("/tmp/x.db")));
        assert_eq!("sqlite://data/x.db".parse::<Database>().unwrap(), Database::SqliteFile(PathBuf::from("data/x.db")));
        assert!(matches!("postgres://u:p@h/db".parse::<Database>().unwrap(), Database::Postgres(_)));
        let q = "postgresql://u@h:5432/db?options=-csearch_path%3Dx&application_name=a";
        assert!(matches!(q.parse::<Database>().unwrap(), Database::Postgres(_)));
        let err = "postgres://u:secret@h/db?nonsense=1".parse::<Database>().unwrap_err().to_string();
        assert!(err.contains("nonsense") && !err.contains("secret"), "{err}");
        assert!("mysql://x".parse::<Database>().is_err());
        assert!("sqlite:".parse::<Database>().is_err());
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db?password=secret&x=1"), "postgres://u@h/db?password=***&x=1");
    }
}
