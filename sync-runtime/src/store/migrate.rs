//! Running the app's migrations at open (see [`Migration`]): every pending one, in one
//! transaction, on the stored table, the store's record of its columns, and the JSON
//! the queue, the error table and the rejected rows keep of its rows.

use rusqlite::{Connection, OptionalExtension, Transaction, params, params_from_iter};

use crate::error::{Error, Result};
use sync_core::sql::quote_ident;
use sync_core::system::{self, CONFIG_TABLE, ERRORS_TABLE, OPERATIONS_TABLE, REJECTED_TABLE, SCHEMA_TABLE};
use sync_core::{ColumnType, FieldRole, Value};

use super::meta::LocalColumn;
use super::migration::{Convert, Migration, MigrationStep};

/// The config key of the last migration version run on a table.
fn version_key(table: &str) -> String {
    format!("migration:{table}")
}

/// Runs every migration whose version the store has not run yet, in one transaction.
/// On any failure nothing changes and the error says which migration failed.
pub(crate) fn run(conn: &mut Connection, migrations: &[Migration]) -> Result<()> {
    if migrations.is_empty() {
        return Ok(());
    }
    check_order(migrations)?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for migration in migrations {
        let done = last_version(&tx, &migration.table)?;
        if migration.version <= done {
            continue;
        }
        let failed = |message: String, source: Option<Box<dyn std::error::Error + Send + Sync>>| Error::Migration {
            table: migration.table.clone(),
            version: migration.version,
            message,
            source,
        };
        let columns = stored_columns(&tx, migration)?;
        if columns.is_empty() {
            // No such table yet: it will be created from the struct as it is now.
            tracing::debug!(table = %migration.table, version = migration.version, "new table: migration recorded");
        } else {
            let mut table = StoredTable { name: &migration.table, columns };
            for step in &migration.steps {
                table.apply(&tx, step).map_err(|e| match e {
                    StepError::Refused(message) => failed(format!("{step:?}: {message}"), None),
                    StepError::Store(e) => failed(format!("{step:?}: the store failed"), Some(Box::new(e))),
                })?;
            }
            // The struct is checked against the table again at its next use.
            tx.execute(&format!("DELETE FROM {CONFIG_TABLE} WHERE key = ?1"), [format!("fingerprint:{}", table.name)])?;
            tracing::info!(table = %migration.table, version = migration.version, "migration ran");
        }
        tx.execute(
            &format!("INSERT OR REPLACE INTO {CONFIG_TABLE} (key, value) VALUES (?1, ?2)"),
            params![version_key(&migration.table), migration.version.to_string()],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Refuses a list whose versions of one table do not increase, or start at 0.
fn check_order(migrations: &[Migration]) -> Result<()> {
    for (i, m) in migrations.iter().enumerate() {
        let message = if m.version == 0 {
            Some("versions start at 1".to_owned())
        } else {
            migrations[..i]
                .iter()
                .rev()
                .find(|earlier| earlier.table == m.table)
                .filter(|earlier| earlier.version >= m.version)
                .map(|earlier| {
                    format!("it comes after version {} of the same table: versions must increase", earlier.version)
                })
        };
        if let Some(message) = message {
            return Err(Error::Migration { table: m.table.clone(), version: m.version, message, source: None });
        }
    }
    Ok(())
}

fn last_version(conn: &Connection, table: &str) -> Result<u32> {
    let text: Option<String> = conn
        .query_row(&format!("SELECT value FROM {CONFIG_TABLE} WHERE key = ?1"), [version_key(table)], |r| r.get(0))
        .optional()?;
    Ok(text.and_then(|t| t.parse().ok()).unwrap_or(0))
}

/// A column as the store records it.
#[derive(Clone, Debug)]
struct StoredColumn {
    name: String,
    ty: ColumnType,
    nullable: bool,
    position: i64,
}

/// The columns the store records for the migration's table (none: no such table yet).
fn stored_columns(conn: &Connection, migration: &Migration) -> Result<Vec<StoredColumn>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT column_name, type, nullable, position FROM {SCHEMA_TABLE} WHERE table_name = ?1 ORDER BY position"
    ))?;
    let rows = stmt
        .query_map([&migration.table], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, bool>(2)?, r.get::<_, i64>(3)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter()
        .map(|(name, ty, nullable, position)| match ColumnType::from_name(&ty) {
            Some(ty) => Ok(StoredColumn { name, ty, nullable, position }),
            None => Err(Error::Migration {
                table: migration.table.clone(),
                version: migration.version,
                message: format!("the store records column `{name}` with a type this build does not know (`{ty}`)"),
                source: None,
            }),
        })
        .collect()
}

/// Why a step did not run.
enum StepError {
    /// The step does not fit the stored table, or a value did not convert.
    Refused(String),
    /// SQLite failed.
    Store(rusqlite::Error),
}

impl From<rusqlite::Error> for StepError {
    fn from(e: rusqlite::Error) -> StepError {
        StepError::Store(e)
    }
}

impl From<Error> for StepError {
    fn from(e: Error) -> StepError {
        match e {
            Error::Sqlite(e) => StepError::Store(e),
            other => StepError::Refused(other.with_sources()),
        }
    }
}

type StepResult<T = ()> = std::result::Result<T, StepError>;

fn refused<T>(message: impl Into<String>) -> StepResult<T> {
    Err(StepError::Refused(message.into()))
}

/// A stored table being migrated, with its columns as the store records them.
struct StoredTable<'a> {
    name: &'a str,
    columns: Vec<StoredColumn>,
}

impl StoredTable<'_> {
    fn apply(&mut self, tx: &Transaction<'_>, step: &MigrationStep) -> StepResult {
        match step {
            MigrationStep::Rename { from, to } => self.rename(tx, from, to),
            MigrationStep::Drop { column } => self.drop_column(tx, column),
            MigrationStep::Add { column, ty, nullable, default } => self.add(tx, column, *ty, *nullable, default),
            MigrationStep::ChangeType { column, from, to, convert } => {
                self.change_type(tx, column, *from, *to, convert)
            }
            MigrationStep::Sql(sql) => Ok(tx.execute_batch(sql)?),
        }
    }

    /// The column the app may change: it exists and is not a system column.
    fn app_column(&self, name: &str) -> StepResult<usize> {
        if system::is_system_column(name) {
            return refused(format!("`{name}` is a system column, which a migration cannot change"));
        }
        match self.columns.iter().position(|c| c.name == name) {
            Some(i) => Ok(i),
            None => refused(format!("the table has no column `{name}` (columns: {})", self.column_list())),
        }
    }

    /// A name a new or renamed column may take.
    fn free_name(&self, name: &str) -> StepResult {
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return refused(format!(
                "`{name}` is not a column name: use ASCII letters, digits and `_`, not starting with a digit"
            ));
        }
        if system::is_system_column(name) || name.starts_with(system::RESERVED_PREFIX) {
            return refused(format!("`{name}` is a system column or a reserved name"));
        }
        if let Some(taken) = self.columns.iter().find(|c| c.name.eq_ignore_ascii_case(name)) {
            return refused(format!("the table already has a column `{}`", taken.name));
        }
        Ok(())
    }

    fn column_list(&self) -> String {
        self.columns.iter().map(|c| format!("`{}`", c.name)).collect::<Vec<_>>().join(", ")
    }

    /// Drops the local index the store made on a column (an index of the struct's is
    /// made again, under the column's name, when the table is next opened).
    fn drop_index(&self, tx: &Transaction<'_>, column: &str) -> StepResult {
        let index = quote_ident(&format!("{}__{column}_idx", self.name));
        Ok(tx.execute_batch(&format!("DROP INDEX IF EXISTS {index}"))?)
    }

    fn rename(&mut self, tx: &Transaction<'_>, from: &str, to: &str) -> StepResult {
        let i = self.app_column(from)?;
        self.free_name(to)?;
        self.drop_index(tx, from)?;
        tx.execute_batch(&format!(
            "ALTER TABLE {} RENAME COLUMN {} TO {}",
            quote_ident(self.name),
            quote_ident(from),
            quote_ident(to)
        ))?;
        tx.execute(
            &format!("UPDATE {SCHEMA_TABLE} SET column_name = ?3 WHERE table_name = ?1 AND column_name = ?2"),
            params![self.name, from, to],
        )?;
        self.columns[i].name = to.to_owned();
        rewrite_documents(tx, self.name, &|item| {
            if let Some(value) = item.remove(from) {
                item.insert(to.to_owned(), value);
            }
            Ok(())
        })
    }

    fn drop_column(&mut self, tx: &Transaction<'_>, column: &str) -> StepResult {
        let i = self.app_column(column)?;
        self.drop_index(tx, column)?;
        tx.execute_batch(&format!("ALTER TABLE {} DROP COLUMN {}", quote_ident(self.name), quote_ident(column)))?;
        tx.execute(
            &format!("DELETE FROM {SCHEMA_TABLE} WHERE table_name = ?1 AND column_name = ?2"),
            params![self.name, column],
        )?;
        self.columns.remove(i);
        rewrite_documents(tx, self.name, &|item| {
            item.remove(column);
            Ok(())
        })
    }

    fn add(
        &mut self,
        tx: &Transaction<'_>,
        column: &str,
        ty: ColumnType,
        nullable: bool,
        default: &Value,
    ) -> StepResult {
        self.free_name(column)?;
        if default.is_null() && !nullable {
            return refused("a column that is not optional needs a default value");
        }
        let added = LocalColumn { name: column.to_owned(), ty, nullable, role: FieldRole::Data, index: false };
        // SQLite adds a NOT NULL column only with a constant default, which every
        // existing row then holds.
        let mut ddl = added.ddl();
        if !default.is_null() {
            ddl.push_str(" DEFAULT ");
            ddl.push_str(&sql_literal(default));
        }
        tx.execute_batch(&format!("ALTER TABLE {} ADD COLUMN {ddl}", quote_ident(self.name)))?;
        let position = self.columns.iter().map(|c| c.position).max().unwrap_or(0) + 1;
        tx.execute(
            &format!(
                "INSERT INTO {SCHEMA_TABLE} (table_name, column_name, position, type, nullable) VALUES (?1, ?2, ?3, ?4, ?5)"
            ),
            params![self.name, column, position, ty.name(), nullable],
        )?;
        self.columns.push(StoredColumn { name: column.to_owned(), ty, nullable, position });
        let json = default.to_json();
        rewrite_documents(tx, self.name, &|item| {
            item.entry(column.to_owned()).or_insert_with(|| json.clone());
            Ok(())
        })
    }

    /// Rebuilds the table with the column's new type (SQLite cannot change a column's
    /// type in place), converting each row's value on the way.
    fn change_type(
        &mut self,
        tx: &Transaction<'_>,
        column: &str,
        from: (ColumnType, bool),
        to: (ColumnType, bool),
        convert: &Convert,
    ) -> StepResult {
        let i = self.app_column(column)?;
        let stored = &self.columns[i];
        if (stored.ty, stored.nullable) != from {
            return refused(format!(
                "the store has {} but the migration converts from {}",
                describe(stored.ty, stored.nullable),
                describe(from.0, from.1)
            ));
        }
        let convert_value = |value: Value, id: &str| -> StepResult<Value> {
            let new = convert(value).map_err(|reason| StepError::Refused(format!("item `{id}`: {reason}")))?;
            check_value(&new, to, id)?;
            Ok(new)
        };

        let mut columns = self.columns.clone();
        columns[i].ty = to.0;
        columns[i].nullable = to.1;
        let table = quote_ident(self.name);
        let scratch = quote_ident(&format!("{}_rebuild", system::RESERVED_PREFIX));
        let ddl = columns.iter().map(|c| local_column(c).ddl()).collect::<Vec<_>>().join(", ");
        let names = columns.iter().map(|c| quote_ident(&c.name)).collect::<Vec<_>>().join(", ");
        let placeholders = vec!["?"; columns.len()].join(", ");
        tx.execute_batch(&format!("DROP TABLE IF EXISTS {scratch}; CREATE TABLE {scratch} ({ddl})"))?;
        {
            let mut read = tx.prepare(&format!("SELECT {names} FROM {table}"))?;
            let mut write = tx.prepare(&format!("INSERT INTO {scratch} ({names}) VALUES ({placeholders})"))?;
            let mut rows = read.query([])?;
            while let Some(r) = rows.next()? {
                let mut values = Vec::with_capacity(columns.len());
                for (k, c) in self.columns.iter().enumerate() {
                    let value = Value::from_sql(r.get_ref(k)?, c.ty).map_err(|e| StepError::Refused(e.0))?;
                    values.push(value);
                }
                let id = match values.first() {
                    Some(Value::String(id)) => id.clone(),
                    _ => String::new(),
                };
                let old = std::mem::replace(&mut values[i], Value::Null);
                values[i] = convert_value(old, &id)?;
                write.execute(params_from_iter(values.iter()))?;
            }
        }
        tx.execute_batch(&format!("DROP TABLE {table}; ALTER TABLE {scratch} RENAME TO {table}"))?;
        tx.execute(
            &format!("UPDATE {SCHEMA_TABLE} SET type = ?3, nullable = ?4 WHERE table_name = ?1 AND column_name = ?2"),
            params![self.name, column, to.0.name(), to.1],
        )?;
        self.columns = columns;
        rewrite_documents(tx, self.name, &|item| {
            let Some(json) = item.get(column) else { return Ok(()) };
            let id = item.get(system::ID).and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
            let old = Value::from_json(json, from.0).map_err(|e| format!("item `{id}`: {}", e.0))?;
            let new = convert_value(old, &id).map_err(|e| match e {
                StepError::Refused(message) => message,
                StepError::Store(e) => e.to_string(),
            })?;
            item.insert(column.to_owned(), new.to_json());
            Ok(())
        })
    }
}

/// The local column (for its DDL) of a stored column: the id and `deleted` keep their
/// constraints.
fn local_column(c: &StoredColumn) -> LocalColumn {
    let role = match c.name.as_str() {
        system::ID => FieldRole::Id,
        system::DELETED => FieldRole::Deleted,
        _ => FieldRole::Data,
    };
    LocalColumn { name: c.name.clone(), ty: c.ty, nullable: c.nullable, role, index: false }
}

fn describe(ty: ColumnType, nullable: bool) -> String {
    if nullable { format!("optional {ty}") } else { ty.to_string() }
}

/// Refuses a converted value the new column cannot hold.
fn check_value(value: &Value, (ty, nullable): (ColumnType, bool), id: &str) -> StepResult {
    let fits = match value {
        Value::Null => nullable,
        Value::Float(f) => f.is_finite() && ty == ColumnType::Float,
        Value::DateTime(t) => sync_core::datetime::in_range(*t) && ty == ColumnType::DateTime,
        other => other.column_type() == Some(ty),
    };
    if fits {
        Ok(())
    } else {
        refused(format!(
            "item `{id}`: the conversion gave {value:?}, which a {} column cannot hold",
            describe(ty, nullable)
        ))
    }
}

/// A constant SQL literal of a value, for a column default.
fn sql_literal(value: &Value) -> String {
    let text = |s: &str| format!("'{}'", s.replace('\'', "''"));
    match value {
        Value::Null => "NULL".to_owned(),
        Value::Bool(b) => i64::from(*b).to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format!("{f:?}"),
        Value::String(s) => text(s),
        Value::DateTime(t) => text(&sync_core::datetime::format(*t)),
        Value::Json(j) => text(&j.to_string()),
        Value::Bytes(b) => format!("X'{}'", b.iter().map(|x| format!("{x:02X}")).collect::<String>()),
    }
}

/// A change to one JSON object the store keeps of a row of the table; `Err` says why
/// it does not convert.
type Rewrite<'a> = dyn Fn(&mut serde_json::Map<String, serde_json::Value>) -> std::result::Result<(), String> + 'a;

/// Applies `rewrite` to every JSON object the store keeps of the table's rows: the
/// items of queued deletes, the bodies earlier attempts sent, the client and server
/// items of error rows, and the server items of rejected rows (which did not read
/// before, so a value there that does not convert is left as it is).
fn rewrite_documents(tx: &Transaction<'_>, table: &str, rewrite: &Rewrite<'_>) -> StepResult {
    let places = [
        (OPERATIONS_TABLE, "seq", "item", "queued operation", true),
        (OPERATIONS_TABLE, "seq", "sent_item", "queued operation", true),
        (ERRORS_TABLE, "op_seq", "client_item", "error row of operation", true),
        (ERRORS_TABLE, "op_seq", "server_item", "error row of operation", true),
        (REJECTED_TABLE, "item_id", "server_item", "rejected row", false),
    ];
    for (store_table, key, column, what, strict) in places {
        let found: Vec<(rusqlite::types::Value, String)> = tx
            .prepare(&format!(
                "SELECT {key}, {column} FROM {store_table} WHERE table_name = ?1 AND {column} IS NOT NULL"
            ))?
            .query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut update =
            tx.prepare(&format!("UPDATE {store_table} SET {column} = ?3 WHERE table_name = ?1 AND {key} = ?2"))?;
        for (id, text) in found {
            let Ok(mut json) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
            let objects: Vec<&mut serde_json::Map<String, serde_json::Value>> = match &mut json {
                serde_json::Value::Object(map) => vec![map],
                serde_json::Value::Array(items) => {
                    items.iter_mut().filter_map(serde_json::Value::as_object_mut).collect()
                }
                _ => Vec::new(),
            };
            let mut changed = false;
            for object in objects {
                let before = object.clone();
                match rewrite(object) {
                    Ok(()) => changed |= *object != before,
                    Err(reason) if strict => {
                        let at = match &id {
                            rusqlite::types::Value::Integer(n) => n.to_string(),
                            rusqlite::types::Value::Text(t) => t.clone(),
                            _ => String::new(),
                        };
                        return refused(format!("{what} {at}: {reason}"));
                    }
                    Err(_) => *object = before,
                }
            }
            if changed {
                update.execute(params![table, id, json.to_string()])?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::store::queue::{self, ErrorInput};
    use crate::store::tests::rt;
    use crate::{Error, Migration, OpKind, Store, StoreOptions, Value};

    /// The app's first version: the file the tests migrate is written with it.
    mod v1 {
        #[derive(crate::SyncEntity, Clone, Debug, PartialEq)]
        #[sync(crate = "crate", table = "Task")]
        pub struct Task {
            pub id: String,
            #[sync(index)]
            pub title: String,
            pub priority: String,
            pub legacy: bool,
            pub due: Option<time::OffsetDateTime>,
            #[sync(version)]
            pub version: Option<String>,
        }
    }

    /// The second: `title` renamed, `priority` a number, `legacy` dropped, `done` added.
    mod v2 {
        #[derive(crate::SyncEntity, Clone, Debug, PartialEq)]
        #[sync(crate = "crate", table = "Task")]
        pub struct Task {
            pub id: String,
            #[sync(index)]
            pub text: String,
            pub priority: i64,
            pub due: Option<time::OffsetDateTime>,
            pub done: bool,
            #[sync(version)]
            pub version: Option<String>,
        }
    }

    fn task(id: &str, title: &str, priority: &str) -> v1::Task {
        v1::Task {
            id: id.into(),
            title: title.into(),
            priority: priority.into(),
            legacy: true,
            due: None,
            version: None,
        }
    }

    fn to_v2() -> Migration {
        Migration::new("Task", 2)
            .rename_column("title", "text")
            .change_column_type("priority", |p: String| p.parse::<i64>().map_err(|e| format!("`{p}`: {e}")))
            .drop_column("legacy")
            .add_column("done", false)
    }

    /// A file written by v1 with something in every place a row's JSON is kept: a
    /// queued insert, an item the server has (with a version), a queued delete (its
    /// item kept in the queue), an update attempted once (what it sent kept), and an
    /// error row with both items.
    async fn write_v1(path: &Path) {
        let store = Store::open(path).await.unwrap();
        let t = store.table::<v1::Task>().await.unwrap();
        t.insert(task("new", "write docs", "1")).await.unwrap();
        for (id, title) in [("synced", "buy milk"), ("gone", "old"), ("refused", "call mum")] {
            let item = task(id, title, "2");
            store
                .transaction(move |tx| {
                    let meta = tx.meta::<v1::Task>()?;
                    let mut row = meta.row_from_fields(sync_core::SyncEntity::to_values(&item));
                    row[meta.column_index("version").unwrap()] = Value::String("v1".into());
                    tx.upsert_row_unqueued(&meta, &row)
                })
                .await
                .unwrap();
        }
        t.delete("gone").await.unwrap();
        let mut refused = t.get("refused").await.unwrap().unwrap();
        refused.title = "call dad".into();
        t.update(&refused).await.unwrap();
        let seq = t.pending_ops().await.unwrap().iter().find(|o| o.item_id == "refused").unwrap().op_id;
        store
            .call(move |w| {
                let sent = r#"{"id":"refused","title":"call dad","priority":"2","legacy":true,"due":null}"#;
                queue::mark_attempted(&w.conn, seq, Some(sent))?;
                let server = serde_json::json!({"id": "refused", "title": "call gran", "priority": "3",
                    "legacy": false, "due": null, "version": "v2", "updatedAt": "2026-01-01T00:00:00.000Z",
                    "deleted": false});
                let input = ErrorInput {
                    status: Some(412),
                    message: "conflict".into(),
                    client_item: serde_json::from_str(sent).ok(),
                    server_item: Some(server),
                    raw_body: None,
                };
                queue::record_error(&w.conn, seq, &input)
            })
            .await
            .unwrap();
        store.close().await.unwrap();
    }

    async fn open_v2(path: &Path, migrations: Vec<Migration>) -> crate::Result<Store> {
        Store::open_with(path, StoreOptions::new().migrations(migrations)).await
    }

    /// The JSON texts the store keeps of the table's rows: (queued item, sent items)
    /// per operation, then (client item, server item) per error row.
    async fn documents(store: &Store) -> Vec<Option<String>> {
        store
            .call(|w| {
                let mut out = Vec::new();
                let mut stmt = w.conn.prepare("SELECT item, sent_item FROM __sync_operations ORDER BY seq")?;
                let rows = stmt.query_map([], |r| Ok([r.get(0)?, r.get(1)?]))?;
                for row in rows {
                    out.extend(row?);
                }
                let mut stmt = w.conn.prepare("SELECT client_item, server_item FROM __sync_errors ORDER BY op_seq")?;
                let rows = stmt.query_map([], |r| Ok([r.get(0)?, r.get(1)?]))?;
                for row in rows {
                    out.extend(row?);
                }
                Ok(out)
            })
            .await
            .unwrap()
    }

    #[test]
    fn a_file_of_the_old_struct_opens_with_the_new_one_after_its_migration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.db");
        rt().block_on(write_v1(&path));
        rt().block_on(async {
            // Without the migration, the new struct is refused.
            let store = Store::open(&path).await.unwrap();
            let err = store.table::<v2::Task>().await.unwrap_err();
            assert!(err.is_schema_mismatch() && err.to_string().contains("Migration"), "{err}");
            store.close().await.unwrap();

            let store = open_v2(&path, vec![to_v2()]).await.unwrap();
            let t = store.table::<v2::Task>().await.unwrap();
            let synced = t.get("synced").await.unwrap().unwrap();
            assert_eq!(
                synced,
                v2::Task {
                    id: "synced".into(),
                    text: "buy milk".into(),
                    priority: 2,
                    due: None,
                    done: false,
                    version: Some("v1".into())
                }
            );
            assert_eq!(t.get("new").await.unwrap().unwrap().priority, 1);
            assert_eq!(t.get("gone").await.unwrap(), None);

            // The queue is as it was, and every JSON copy of a row follows the table.
            let kinds: Vec<(String, OpKind)> =
                t.pending_ops().await.unwrap().into_iter().map(|o| (o.item_id, o.kind)).collect();
            assert_eq!(
                kinds,
                [("new".into(), OpKind::Insert), ("gone".into(), OpKind::Delete), ("refused".into(), OpKind::Update)]
            );
            let documents = documents(&store).await;
            let texts: Vec<&String> = documents.iter().flatten().collect();
            assert_eq!(texts.len(), 4, "a deleted item, a sent body, two error items: {texts:?}");
            for text in &texts {
                let json: serde_json::Value = serde_json::from_str(text).unwrap();
                let objects = match &json {
                    serde_json::Value::Array(items) => items.clone(),
                    other => vec![other.clone()],
                };
                for object in objects {
                    assert!(object.get("title").is_none() && object.get("legacy").is_none(), "{object}");
                    assert!(object.get("text").is_some_and(|t| t.is_string()), "{object}");
                    assert!(object.get("priority").is_some_and(|p| p.is_i64()), "{object}");
                    assert_eq!(object.get("done"), Some(&serde_json::Value::Bool(false)), "{object}");
                }
            }
            let errors = t.errors().await.unwrap();
            assert_eq!(errors.len(), 1);
            assert_eq!(errors[0].client_item.as_ref().map(|i| i.text.as_str()), Some("call dad"));
            assert_eq!(errors[0].server_item.as_ref().map(|i| (i.text.as_str(), i.priority)), Some(("call gran", 3)));
            // The error's operation did not change: the resolution calls still take it.
            t.resolve_take_server(&errors[0]).await.unwrap();
            assert_eq!(t.get("refused").await.unwrap().unwrap().text, "call gran");
            assert!(store.check_integrity().await.unwrap().is_ok());

            // The index follows the renamed column: one index, on `text`.
            let indexes: Vec<String> = store
                .call(|w| {
                    let mut stmt = w.conn.prepare(
                        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'Task' AND sql IS NOT NULL",
                    )?;
                    Ok(stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?)
                })
                .await
                .unwrap();
            assert_eq!(indexes, ["Task__text_idx"]);

            // Writes of the new struct work on the migrated table.
            let made = t
                .insert(v2::Task {
                    id: "later".into(),
                    text: "x".into(),
                    priority: 9,
                    due: None,
                    done: true,
                    version: None,
                })
                .await
                .unwrap();
            assert_eq!(t.get("later").await.unwrap(), Some(made));
            store.close().await.unwrap();

            // It ran once: opening again with it (and with nothing) changes nothing.
            let store = open_v2(&path, vec![to_v2()]).await.unwrap();
            assert_eq!(store.table::<v2::Task>().await.unwrap().count_all().await.unwrap(), 4);
            store.close().await.unwrap();
            let store = Store::open(&path).await.unwrap();
            assert_eq!(store.table::<v2::Task>().await.unwrap().count_all().await.unwrap(), 4);
        });
    }

    #[test]
    fn a_failed_migration_leaves_the_file_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.db");
        rt().block_on(async {
            write_v1(&path).await;
            let store = Store::open(&path).await.unwrap();
            store.table::<v1::Task>().await.unwrap().insert(task("bad", "x", "high")).await.unwrap();
            store.close().await.unwrap();
        });
        let before = crate::store::tests::file_bytes(&path);
        let before_docs = rt().block_on(async {
            let store = Store::open(&path).await.unwrap();
            let docs = documents(&store).await;
            store.close().await.unwrap();
            docs
        });

        // `high` is no number: the conversion refuses it, after the rename ran.
        let err = rt().block_on(open_v2(&path, vec![to_v2()])).unwrap_err();
        match &err {
            Error::Migration { table, version, message, .. } => {
                assert_eq!((table.as_str(), *version), ("Task", 2));
                assert!(
                    message.contains("priority") && message.contains("`bad`") && message.contains("high"),
                    "{message}"
                );
            }
            other => panic!("expected a failed migration, got {other:?}"),
        }
        // A failing SQL step too, and a step on a column the table does not have.
        let failing_sql = Migration::new("Task", 2).rename_column("title", "text").sql("UPDATE nowhere SET x = 1");
        let err = rt().block_on(open_v2(&path, vec![failing_sql])).unwrap_err();
        assert!(matches!(err, Error::Migration { .. }) && std::error::Error::source(&err).is_some(), "{err:?}");
        let missing = Migration::new("Task", 2).drop_column("colour");
        let err = rt().block_on(open_v2(&path, vec![missing])).unwrap_err();
        assert!(err.to_string().contains("no column `colour`"), "{err}");

        assert_eq!(crate::store::tests::file_bytes(&path), before, "the file is as it was");
        rt().block_on(async {
            let store = Store::open(&path).await.unwrap();
            assert_eq!(documents(&store).await, before_docs);
            let t = store.table::<v1::Task>().await.unwrap();
            assert_eq!(t.get("bad").await.unwrap().unwrap().priority, "high");
            assert_eq!(t.get("synced").await.unwrap().unwrap().title, "buy milk");
            assert_eq!(store.pending_count().await.unwrap(), 4);
            store.close().await.unwrap();

            // Fixed (a conversion that takes every value), the migration runs.
            let lenient = Migration::new("Task", 2)
                .rename_column("title", "text")
                .change_column_type("priority", |p: String| Ok::<i64, String>(p.parse().unwrap_or(0)))
                .drop_column("legacy")
                .add_column("done", false);
            let store = open_v2(&path, vec![lenient]).await.unwrap();
            let t = store.table::<v2::Task>().await.unwrap();
            assert_eq!(t.get("bad").await.unwrap().unwrap().priority, 0);
        });
    }

    #[test]
    fn a_new_store_records_the_migrations_without_running_them() {
        rt().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("app.db");
            // Run, this would fail: the table does not exist.
            let m = Migration::new("Task", 2).sql("UPDATE \"Task\" SET \"text\" = 'never'");
            let store = open_v2(&path, vec![m.clone()]).await.unwrap();
            let t = store.table::<v2::Task>().await.unwrap();
            t.insert(v2::Task { id: "a".into(), text: "x".into(), priority: 1, due: None, done: false, version: None })
                .await
                .unwrap();
            store.close().await.unwrap();
            let store = open_v2(&path, vec![m]).await.unwrap();
            assert_eq!(store.table::<v2::Task>().await.unwrap().get("a").await.unwrap().unwrap().text, "x");
        });
    }

    #[test]
    fn migrations_of_one_table_must_increase() {
        rt().block_on(async {
            for list in [
                vec![Migration::new("Task", 3), Migration::new("Task", 2)],
                vec![Migration::new("Task", 2), Migration::new("Task", 2)],
                vec![Migration::new("Task", 0)],
            ] {
                let err = Store::open_in_memory_with(StoreOptions::new().migrations(list)).await.unwrap_err();
                assert!(matches!(err, Error::Migration { .. }), "{err:?}");
            }
            let fine = vec![Migration::new("Task", 2), Migration::new("Other", 1), Migration::new("Task", 3)];
            Store::open_in_memory_with(StoreOptions::new().migrations(fine)).await.unwrap();
        });
    }

    #[test]
    fn steps_on_system_columns_or_taken_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.db");
        rt().block_on(write_v1(&path));
        for (m, says) in [
            (Migration::new("Task", 2).drop_column("version"), "system column"),
            (Migration::new("Task", 2).rename_column("title", "priority"), "already has a column `priority`"),
            (Migration::new("Task", 2).rename_column("title", "two words"), "not a column name"),
            (
                Migration::new("Task", 2).change_column_type("priority", |p: i64| Ok::<_, String>(p)),
                "the store has string but the migration converts from int",
            ),
        ] {
            let err = rt().block_on(open_v2(&path, vec![m])).unwrap_err();
            assert!(err.to_string().contains(says), "{says}: {err}");
        }
    }
}
