//! The row-write rules, written once for both backends.
//!
//! A write runs as one transaction: lock the table's clock row and read it and the row
//! by key; [`decide`] what the change does to that row; write or delete it (setting
//! the clock row to the new `(updatedAt, id)`); commit. [`decide`] is a pure function of
//! the stored row, the table's last pair, the change and the time: the checks in the
//! order [`super::Storage`] promises (existence, tombstone, expected version), the owner
//! rule (a served owner column always holds the key's owner), a new version, and an
//! `updatedAt` by the rule of [`crate::stamp`]. [`run`] drives a backend's
//! [`WriteTransaction`] through those steps.
//!
//! SQLite's steps are blocking calls on its writer thread, done when their futures are
//! made; PostgreSQL's are awaited. The rules do not care.

use sync_core::{Value, datetime};
use time::OffsetDateTime;

use super::statements::CLOCK_TABLE;
use super::{Change, Key, Row, StorageError};
use crate::stamp::{self, Clock};
use crate::table::TableDef;

/// A table's clock row as stored: the last `updatedAt` and id assigned (both `''`
/// before the first write).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClockRow {
    pub(crate) updated_at: String,
    pub(crate) id: String,
}

/// One write transaction of a backend: the steps that differ between SQLite and
/// PostgreSQL. Dropped without [`WriteTransaction::commit`], it rolls back.
pub(crate) trait WriteTransaction {
    /// Locks the clock row of `table` until the transaction ends, so that writers of
    /// the table are serialized on it, and reads it (`None` when the table has none),
    /// then the row of `key`, which sees every write committed before the lock.
    async fn lock_and_read(&mut self, table: &TableDef, key: &Key<'_>) -> Result<Read, StorageError>;

    /// Writes every column of `row` (as a new row when `new`, else over the row of
    /// `key`) and sets the clock row of `table` to the row's `(updatedAt, id)`.
    async fn write_row(&mut self, table: &TableDef, key: &Key<'_>, row: &Row, new: bool) -> Result<(), StorageError>;

    /// Removes the row of `key`.
    async fn delete_row(&mut self, table: &TableDef, key: &Key<'_>) -> Result<(), StorageError>;

    /// Commits.
    async fn commit(self) -> Result<(), StorageError>;
}

/// What [`WriteTransaction::lock_and_read`] reads: the table's clock row and the row.
pub(crate) type Read = (Option<ClockRow>, Option<Row>);

/// What a change does to the stored row, as [`decide`] found.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Outcome {
    /// Write this row, with its new version and `updatedAt`: a new row (`new`), or
    /// over the stored one.
    Write {
        /// The row to write, which is also the answer.
        row: Row,
        /// Whether the row is inserted.
        new: bool,
    },
    /// Remove the stored row (a hard delete); the answer is the row as it was. The
    /// clock row keeps its pair, so the next write still gets a greater one.
    Remove(Row),
    /// Write nothing (an undelete of a live row); the answer is the row.
    Unchanged(Row),
}

/// Runs `change` on the row of `key` in `tx` (see the module docs) and answers the row
/// as written (or as it was, for a hard delete).
pub(crate) async fn run<T: WriteTransaction>(
    mut tx: T,
    table: &TableDef,
    key: &Key<'_>,
    change: Change,
    clock: &dyn Clock,
) -> Result<Row, StorageError> {
    let (clock_row, current) = tx.lock_and_read(table, key).await?;
    let last = last_pair(&table.name, clock_row)?;
    let last = last.as_ref().map(|(ms, id)| (*ms, id.as_str()));
    let row = match decide(table, key, current, last, change, clock.now())? {
        Outcome::Write { row, new } => {
            tx.write_row(table, key, &row, new).await?;
            row
        }
        Outcome::Remove(row) => {
            tx.delete_row(table, key).await?;
            row
        }
        Outcome::Unchanged(row) => row,
    };
    tx.commit().await?;
    Ok(row)
}

/// What `change` does to `current`, the stored row of `key` (if any), given the
/// table's `last` assigned `(updatedAt in Unix milliseconds, id)` and the time `now`.
pub(crate) fn decide(
    table: &TableDef,
    key: &Key<'_>,
    current: Option<Row>,
    last: Option<(i64, &str)>,
    change: Change,
    now: OffsetDateTime,
) -> Result<Outcome, StorageError> {
    let mut row = match (change, current) {
        (Change::Insert { values }, current) => return insert(table, key, current, values, last, now),
        (_, None) => return Err(StorageError::NotFound),
        (Change::Update(update), Some(mut row)) => {
            if row.deleted && !update.undelete {
                return Err(StorageError::Deleted(Box::new(row)));
            }
            check_version(&row, update.expected_version.as_deref())?;
            // The owner column never changes.
            let owner_column = table.served_owner();
            for (i, value) in update.values {
                if let Some(slot) = row.values.get_mut(i).filter(|_| Some(i) != owner_column) {
                    *slot = value;
                }
            }
            row.deleted = false;
            row
        }
        (Change::Delete { expected_version, soft }, Some(mut row)) => {
            if row.deleted {
                return Err(StorageError::Deleted(Box::new(row)));
            }
            check_version(&row, expected_version.as_deref())?;
            if !soft {
                return Ok(Outcome::Remove(row));
            }
            row.deleted = true;
            row
        }
        (Change::Undelete { expected_version }, Some(mut row)) => {
            check_version(&row, expected_version.as_deref())?;
            if !row.deleted {
                return Ok(Outcome::Unchanged(row));
            }
            row.deleted = false;
            row
        }
    };
    row.updated_at = updated_at(key.id, last, now)?;
    row.version = stamp::new_version(Some(&row.version));
    Ok(Outcome::Write { row, new: false })
}

/// An insert: refused over an existing row (tombstones included).
fn insert(
    table: &TableDef,
    key: &Key<'_>,
    current: Option<Row>,
    mut values: Vec<Value>,
    last: Option<(i64, &str)>,
    now: OffsetDateTime,
) -> Result<Outcome, StorageError> {
    if let Some(existing) = current {
        return Err(StorageError::AlreadyExists(Box::new(existing)));
    }
    // A served owner column is the key's owner, whatever the values say.
    if let (Some(slot), Some(owner)) = (table.served_owner().and_then(|i| values.get_mut(i)), key.owner) {
        *slot = Value::String(owner.to_owned());
    }
    let updated_at = updated_at(key.id, last, now)?;
    let row = Row {
        id: key.id.to_owned(),
        values,
        version: stamp::new_version(None),
        created_at: updated_at.clone(),
        updated_at,
        deleted: false,
    };
    Ok(Outcome::Write { row, new: true })
}

/// Refuses a write to a row whose version is not the expected one.
fn check_version(row: &Row, expected: Option<&str>) -> Result<(), StorageError> {
    match expected {
        Some(v) if v != row.version => Err(StorageError::VersionMismatch(Box::new(row.clone()))),
        _ => Ok(()),
    }
}

/// The `updatedAt` of a write of `id` at `now`, after the table's `last` pair.
fn updated_at(id: &str, last: Option<(i64, &str)>, now: OffsetDateTime) -> Result<String, StorageError> {
    let ms = stamp::next_updated_at(stamp::unix_ms(now), id, last);
    stamp::from_unix_ms(ms)
        .filter(|t| datetime::in_range(*t))
        .map(datetime::format)
        .ok_or(StorageError::Unavailable("the clock is outside years 0000-9999"))
}

/// The table's last assigned pair, from its clock row: `None` before the first write.
/// A table without a clock row was not prepared by this server.
pub(crate) fn last_pair(table: &str, clock_row: Option<ClockRow>) -> Result<Option<(i64, String)>, StorageError> {
    let Some(ClockRow { updated_at, id }) = clock_row else {
        return Err(StorageError::Schema {
            table: table.to_owned(),
            message: format!("the table has no row in {CLOCK_TABLE}"),
        });
    };
    if updated_at.is_empty() {
        return Ok(None);
    }
    let ms = datetime::parse(&updated_at).map(stamp::unix_ms).ok_or_else(|| StorageError::Schema {
        table: table.to_owned(),
        message: format!("{CLOCK_TABLE} holds an unreadable timestamp `{updated_at}`"),
    })?;
    Ok(Some((ms, id)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Update;
    use sync_core::ColumnType;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-01-02 03:04:05.678 UTC);
    const NOW_MS: i64 = 1_767_323_045_678;

    fn table() -> TableDef {
        TableDef::new("T").column("userId", ColumnType::String, true).column("text", ColumnType::String, true)
    }

    fn stored(deleted: bool) -> Row {
        Row {
            id: "a".into(),
            values: vec![Value::String("alice".into()), Value::String("x".into())],
            version: "v1".into(),
            updated_at: "2026-01-01T00:00:00.000Z".into(),
            created_at: "2026-01-01T00:00:00.000Z".into(),
            deleted,
        }
    }

    fn update(expected: Option<&str>, undelete: bool) -> Change {
        Change::Update(Update {
            values: vec![(1, Value::String("y".into()))],
            expected_version: expected.map(str::to_owned),
            undelete,
        })
    }

    const KEY: Key<'static> = Key { id: "a", owner: None };

    #[test]
    fn checks_come_in_the_promised_order() {
        let t = table();
        let decide = |current, change| decide(&t, &KEY, current, None, change, NOW);
        // Existence first: a missing row is missing whatever else is wrong.
        assert!(matches!(decide(None, update(Some("nope"), false)), Err(StorageError::NotFound)));
        // Then the tombstone, before the version.
        assert!(matches!(decide(Some(stored(true)), update(Some("nope"), false)), Err(StorageError::Deleted(_))));
        let delete = Change::Delete { expected_version: Some("nope".into()), soft: true };
        assert!(matches!(decide(Some(stored(true)), delete), Err(StorageError::Deleted(_))));
        // An undelete passes the tombstone, not the version.
        assert!(matches!(
            decide(Some(stored(true)), update(Some("nope"), true)),
            Err(StorageError::VersionMismatch(row)) if row.version == "v1"
        ));
        let undelete = Change::Undelete { expected_version: Some("nope".into()) };
        assert!(matches!(decide(Some(stored(true)), undelete), Err(StorageError::VersionMismatch(_))));
        // An insert over any row, tombstones included, is refused with that row.
        let insert = Change::Insert { values: vec![Value::Null, Value::Null] };
        assert!(matches!(decide(Some(stored(true)), insert), Err(StorageError::AlreadyExists(row)) if row.deleted));
    }

    #[test]
    fn writes_stamp_a_new_version_and_pair() {
        let t = table();
        let last = Some((NOW_MS + 5, "b"));
        let Outcome::Write { row, new: false } =
            decide(&t, &KEY, Some(stored(false)), last, update(Some("v1"), false), NOW).unwrap()
        else {
            panic!("an update writes over the stored row")
        };
        assert_ne!(row.version, "v1");
        // The clock is behind the last pair and "a" < "b": one millisecond later.
        assert_eq!(row.updated_at, "2026-01-02T03:04:05.684Z");
        assert_eq!(row.created_at, "2026-01-01T00:00:00.000Z");
        assert_eq!(row.values[1], Value::String("y".into()));

        let insert = Change::Insert { values: vec![Value::Null, Value::Null] };
        let Outcome::Write { row, new: true } = decide(&t, &KEY, None, None, insert, NOW).unwrap() else {
            panic!("an insert writes a new row")
        };
        assert_eq!(
            (row.updated_at.as_str(), row.created_at.as_str()),
            ("2026-01-02T03:04:05.678Z", "2026-01-02T03:04:05.678Z")
        );
        assert!(!row.deleted);
    }

    #[test]
    fn deletes_and_undeletes() {
        let t = table();
        let soft = Change::Delete { expected_version: Some("v1".into()), soft: true };
        let Outcome::Write { row, new: false } = decide(&t, &KEY, Some(stored(false)), None, soft, NOW).unwrap() else {
            panic!("a soft delete writes a tombstone")
        };
        assert!(row.deleted && row.version != "v1");
        let hard = Change::Delete { expected_version: None, soft: false };
        assert_eq!(decide(&t, &KEY, Some(stored(false)), None, hard, NOW).unwrap(), Outcome::Remove(stored(false)));
        let undelete = Change::Undelete { expected_version: None };
        assert_eq!(
            decide(&t, &KEY, Some(stored(false)), None, undelete.clone(), NOW).unwrap(),
            Outcome::Unchanged(stored(false))
        );
        let Outcome::Write { row, .. } = decide(&t, &KEY, Some(stored(true)), None, undelete, NOW).unwrap() else {
            panic!("an undelete of a tombstone writes the row")
        };
        assert!(!row.deleted);
        // An update with `undelete` clears the flag too; one without keeps refusing.
        let Outcome::Write { row, .. } = decide(&t, &KEY, Some(stored(true)), None, update(None, true), NOW).unwrap()
        else {
            panic!("an undeleting update writes the row")
        };
        assert!(!row.deleted);
    }

    #[test]
    fn a_served_owner_column_holds_the_key_owner() {
        let t = table().owner_column("userId");
        let key = Key { id: "a", owner: Some("bob") };
        let insert = Change::Insert { values: vec![Value::String("mallory".into()), Value::Null] };
        let Outcome::Write { row, .. } = decide(&t, &key, None, None, insert, NOW).unwrap() else {
            panic!("an insert writes")
        };
        assert_eq!(row.values[0], Value::String("bob".into()));
        let change = Change::Update(Update {
            values: vec![(0, Value::String("mallory".into())), (1, Value::String("y".into()))],
            expected_version: None,
            undelete: false,
        });
        let Outcome::Write { row, .. } = decide(&t, &key, Some(stored(false)), None, change, NOW).unwrap() else {
            panic!("an update writes")
        };
        assert_eq!(row.values, vec![Value::String("alice".into()), Value::String("y".into())]);
    }

    #[test]
    fn clock_rows_are_read_strictly() {
        assert_eq!(last_pair("T", Some(ClockRow { updated_at: String::new(), id: String::new() })).unwrap(), None);
        let row = ClockRow { updated_at: "2026-01-02T03:04:05.678Z".into(), id: "b".into() };
        assert_eq!(last_pair("T", Some(row)).unwrap(), Some((NOW_MS, "b".to_owned())));
        assert!(matches!(last_pair("T", None), Err(StorageError::Schema { .. })));
        let bad = ClockRow { updated_at: "yesterday".into(), id: "b".into() };
        assert!(last_pair("T", Some(bad)).unwrap_err().to_string().contains("unreadable timestamp"));
    }
}
