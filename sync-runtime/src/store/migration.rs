//! Migrations an app declares: versioned, explicit changes to a stored table that the
//! struct alone cannot make (a renamed, dropped or re-typed field, a new field that is
//! not an `Option`, data fixed up with SQL). This file holds what the app writes; the
//! store runs them at open (`migrate.rs`).

use std::fmt;
use std::sync::Arc;

use sync_core::{ColumnType, FieldValue, Value};

/// One versioned change to the table stored for an entity, declared by the app and run
/// once, when [`Store::open_with`](crate::Store::open_with) opens a store whose table
/// has not had it yet.
///
/// A struct change the store makes by itself needs no migration: a new `Option` field
/// becomes a new column. Anything else (a field renamed, removed, or of another type,
/// a new field that is not an `Option`) is refused with
/// [`Error::SchemaMismatch`](crate::Error::SchemaMismatch) until a migration brings the
/// stored table in line with the struct.
///
/// Steps name columns as the table stores them: the field's wire name (its `rename`,
/// or its name after `rename_all`; usually just the field name). They run in the order
/// written.
///
/// - The store records, per table, the highest version that ran. At open, every
///   migration of a higher version runs, in the order given; versions of one table
///   must increase along the list.
/// - All the migrations of one open run in one SQLite transaction: if any step fails,
///   none of them happened, the file is left as it was, and the open fails with
///   [`Error::Migration`](crate::Error::Migration).
/// - The queue and the error table follow the table: a queued delete keeps its item
///   with the renamed key, the bodies earlier attempts sent (used to recognize a lost
///   answer) and the items of error rows too; a converted column is converted there as
///   well.
/// - A store that does not have the table yet (a new install) only records the
///   versions: the table is then created from the struct as it is now.
///
/// ```
/// use sync_runtime::{Migration, Store, StoreOptions, SyncEntity};
///
/// // Version 1 of the app stored `title` and a `priority` as text.
/// #[derive(SyncEntity, Clone, Debug)]
/// #[sync(table = "TodoItem")]
/// struct TodoItemV1 {
///     id: String,
///     title: String,
///     priority: String,
///     legacy_flag: bool,
/// }
///
/// // Version 2 renamed `title`, made `priority` a number, dropped `legacy_flag`, and
/// // added `done`, which every existing item gets as `false`.
/// #[derive(SyncEntity, Clone, Debug, PartialEq)]
/// #[sync(table = "TodoItem")]
/// struct TodoItem {
///     id: String,
///     text: String,
///     priority: i64,
///     done: bool,
/// }
///
/// fn migrations() -> Vec<Migration> {
///     vec![
///         Migration::new("TodoItem", 2)
///             .rename_column("title", "text")
///             .change_column_type("priority", |p: String| p.trim().parse::<i64>().map_err(|e| e.to_string()))
///             .drop_column("legacy_flag")
///             .add_column("done", false)
///             .sql("UPDATE \"TodoItem\" SET \"text\" = trim(\"text\")"),
///     ]
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// # let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("app.db");
/// let old = Store::open(&path).await?;
/// let v1 = TodoItemV1 { id: "a".into(), title: " milk ".into(), priority: "2".into(), legacy_flag: true };
/// old.table::<TodoItemV1>().await?.insert(v1).await?;
/// old.close().await?;
///
/// // Version 2 of the app opens the same file with its migrations.
/// let store = Store::open_with(&path, StoreOptions::new().migrations(migrations())).await?;
/// let todos = store.table::<TodoItem>().await?;
/// let item = todos.get("a").await?.unwrap();
/// assert_eq!(item, TodoItem { id: "a".into(), text: "milk".into(), priority: 2, done: false });
/// assert_eq!(store.pending_count().await?, 1, "the insert is still queued");
/// # Ok::<_, sync_runtime::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Migration {
    pub(crate) table: String,
    pub(crate) version: u32,
    pub(crate) steps: Vec<MigrationStep>,
}

/// A value conversion of [`Migration::change_column_type`], untyped.
pub(crate) type Convert = Arc<dyn Fn(Value) -> Result<Value, String> + Send + Sync>;

/// One step of a migration.
#[derive(Clone)]
pub(crate) enum MigrationStep {
    Rename { from: String, to: String },
    Drop { column: String },
    Add { column: String, ty: ColumnType, nullable: bool, default: Value },
    ChangeType { column: String, from: (ColumnType, bool), to: (ColumnType, bool), convert: Convert },
    Sql(String),
}

impl Migration {
    /// Migration `version` of table `table` (the entity's `TABLE`, e.g.
    /// `#[sync(table = "TodoItem")]`, else the struct's name). Versions start anywhere
    /// above 0 and increase with each migration of the table.
    pub fn new(table: impl Into<String>, version: u32) -> Migration {
        Migration { table: table.into(), version, steps: Vec::new() }
    }

    /// The table it changes.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Its version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Renames column `from` to `to`, keeping its values: a field renamed in the
    /// struct (or given another `rename`). Queued items and error rows follow.
    #[must_use]
    pub fn rename_column(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.steps.push(MigrationStep::Rename { from: from.into(), to: to.into() });
        self
    }

    /// Drops column `column` and its values: a field removed from the struct.
    #[must_use]
    pub fn drop_column(mut self, column: impl Into<String>) -> Self {
        self.steps.push(MigrationStep::Drop { column: column.into() });
        self
    }

    /// Adds column `column` of field type `T`, holding `default` in every existing row
    /// (and in queued items): a new field that is not an `Option`. (A new `Option`
    /// field needs no migration: it is added, `None` everywhere.)
    #[must_use]
    pub fn add_column<T: FieldValue>(mut self, column: impl Into<String>, default: T) -> Self {
        let default = default.to_value();
        self.steps.push(MigrationStep::Add { column: column.into(), ty: T::TYPE, nullable: T::NULLABLE, default });
        self
    }

    /// Changes column `column` from field type `Old` to field type `New`, converting
    /// every stored value with `convert` (also in queued items and error rows). `Old`
    /// must be what the table stores (`Option<_>` for an optional column); an `Err`
    /// from `convert` fails the migration, naming the row.
    ///
    /// ```
    /// # use sync_runtime::Migration;
    /// // `rating` was an optional float, and becomes a whole number of stars (0 when unset).
    /// let m = Migration::new("Review", 3)
    ///     .change_column_type("rating", |r: Option<f64>| Ok::<i64, String>(r.map_or(0, |r| r.round() as i64)));
    /// # let _ = m;
    /// ```
    #[must_use]
    pub fn change_column_type<Old, New, F>(mut self, column: impl Into<String>, convert: F) -> Self
    where
        Old: FieldValue,
        New: FieldValue,
        F: Fn(Old) -> Result<New, String> + Send + Sync + 'static,
    {
        let convert: Convert = Arc::new(move |value: Value| {
            let old = Old::from_value(value).map_err(|e| e.0)?;
            convert(old).map(|new| new.to_value())
        });
        self.steps.push(MigrationStep::ChangeType {
            column: column.into(),
            from: (Old::TYPE, Old::NULLABLE),
            to: (New::TYPE, New::NULLABLE),
            convert,
        });
        self
    }

    /// Runs SQL (one or more statements) in the migration's transaction: to change
    /// data, e.g. fill a column from others. It must not add, drop or rename columns of
    /// synced tables (the column steps do that, and keep the store's record of the
    /// table with them), nor touch the store's own `__sync_*` tables.
    #[must_use]
    pub fn sql(mut self, sql: impl Into<String>) -> Self {
        self.steps.push(MigrationStep::Sql(sql.into()));
        self
    }
}

impl fmt::Debug for Migration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Migration")
            .field("table", &self.table)
            .field("version", &self.version)
            .field("steps", &self.steps)
            .finish()
    }
}

impl fmt::Debug for MigrationStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigrationStep::Rename { from, to } => write!(f, "rename `{from}` to `{to}`"),
            MigrationStep::Drop { column } => write!(f, "drop `{column}`"),
            MigrationStep::Add { column, ty, .. } => write!(f, "add `{column}` ({ty})"),
            MigrationStep::ChangeType { column, from, to, .. } => {
                write!(f, "change `{column}` from {} to {}", from.0, to.0)
            }
            MigrationStep::Sql(sql) => write!(f, "sql {sql:?}"),
        }
    }
}
