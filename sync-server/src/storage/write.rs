//! The row-write rules, written once for both backends.
//!
//! A write is made of *attempts*; each attempt is one pass over a backend's
//! [`WriteAttempt`]:
//!
//! 1. [`WriteAttempt::begin`]: fix where the write's `(updatedAt, id)` comes from (a
//!    [`Stamp`]) and read the stored row of the key (an insert's first attempt may
//!    take it to be absent);
//! 2. [`decide`] what the change does to that row: the checks in the order
//!    [`super::Storage`] promises (existence, tombstone, expected version), the owner
//!    rule (a served owner column always holds the key's owner), a new version, and the
//!    stamp;
//! 3. [`WriteAttempt::finish`]: write or remove the row, *if it still has the version
//!    the attempt read* (an insert: if the key is still free), and commit.
//!
//! An attempt whose write found the row changed (another writer got there first) is
//! followed by another, which reads the row again: so a write always applies to the row
//! as it is, and an `If-Match` that no longer holds is refused rather than overwritten.
//! [`run`] drives the attempts; [`decide`] is a pure function of the stored row, the
//! stamp and the change.
//!
//! # Where the stamp comes from
//!
//! Incremental readers must never miss a row (see [`crate::stamp`]): no row may become
//! visible to them with a smaller `(updatedAt, id)` than one they already saw. The
//! backends keep that in one of two ways ([`Stamp`]):
//!
//! - **A locked clock row** ([`Stamp::Locked`]): the attempt's transaction holds the
//!   clock row of the rows the write's readers see (the table's, or the owner's for an
//!   owned table: see [`super::statements`]) until it commits, and takes the next pair
//!   after it: writers sharing a clock row commit one at a time, in the order of their
//!   pairs. SQLite does this (its one write lock holds every clock row).
//! - **A reserved stamp** ([`Stamp::Reserved`]): the pair was taken and published as in
//!   flight before the attempt, and readers hold back everything at or after the oldest
//!   pair in flight. Writers wait for nobody. PostgreSQL does this (see
//!   `postgres/reservations.rs`, which also says why no reader can skip a row). Since
//!   writers of one row may then take their pairs in one order and write in the other,
//!   an attempt whose row already carries a pair at or after its own gives its stamp
//!   back and tries again with a new one: a row's `updatedAt` only grows.
//!
//! SQLite's steps are blocking calls on its writer thread, done when their futures are
//! made; PostgreSQL's are awaited. The rules do not care.

use sync_core::{Value, datetime};
use time::OffsetDateTime;

use super::statements::CLOCK_TABLE;
use super::{Change, Key, Row, StorageError};
use crate::stamp::{self, Clock};
use crate::table::TableDef;

/// Attempts a write makes at most before giving up with [`StorageError::Unavailable`]
/// (503, which clients retry): each lost race means another writer of the row wrote.
pub(crate) const MAX_ATTEMPTS: usize = 16;

/// A clock row as stored: the last `updatedAt` and id assigned (both `''` before the
/// first write).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClockRow {
    pub(crate) updated_at: String,
    pub(crate) id: String,
}

/// Where the `(updatedAt, id)` of an attempt's write comes from (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Stamp {
    /// The clock row the write's readers depend on, locked by the attempt until it
    /// finishes (`None`: the table has none, it was not prepared). The write takes the
    /// next pair after it, and [`WriteAttempt::finish`] moves the clock row there.
    Locked(Option<ClockRow>),
    /// The `updatedAt` reserved for this attempt (with the key's id), in flight until
    /// the attempt finishes.
    Reserved(String),
}

/// What [`WriteAttempt::begin`] reads: where the stamp comes from, and the stored row.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Read {
    pub(crate) stamp: Stamp,
    pub(crate) current: Option<Row>,
}

/// What [`WriteAttempt::finish`] does to the row before committing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Effect<'r> {
    /// Writes every column of `row`: a new row (`replaces` is `None`), unless the key
    /// is taken; or over the stored row, if it still has the version `replaces`.
    Write {
        /// The row to write.
        row: &'r Row,
        /// The version of the stored row the attempt read, `None` for a new row.
        replaces: Option<&'r str>,
    },
    /// Removes the stored row, if it still has this version.
    Remove {
        /// The version the attempt read.
        version: &'r str,
    },
    /// Writes nothing (a refused change, or an undelete of a live row).
    Nothing,
}

/// One write attempt of a backend: the steps that differ between SQLite and
/// PostgreSQL. An attempt is open from a successful [`WriteAttempt::begin`] until
/// [`WriteAttempt::finish`] succeeds or [`WriteAttempt::abandon`] is called.
pub(crate) trait WriteAttempt {
    /// Opens an attempt at writing the row of `key` in `table`: fixes where its stamp
    /// comes from (locking a clock row, or reserving a stamp) and reads the stored row.
    /// With `expect_absent` (the first attempt of an insert) it may skip the read and
    /// answer no row: if there is one, the insert affects no row and the next attempt
    /// reads it.
    async fn begin(&mut self, table: &TableDef, key: &Key<'_>, expect_absent: bool) -> Result<Read, StorageError>;

    /// Carries out `effect` (with a [`Stamp::Locked`] one, a write also moves the clock
    /// row to the row's pair) and commits, ending the attempt. Answers whether the
    /// effect took place: `false` when the stored row was no longer the one read.
    async fn finish(&mut self, table: &TableDef, key: &Key<'_>, effect: Effect<'_>) -> Result<bool, StorageError>;

    /// Ends an attempt that failed midway: rolls it back, releases what it holds. Does
    /// nothing when no attempt is open.
    async fn abandon(&mut self);
}

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

impl Outcome {
    /// The answer of the write.
    fn into_row(self) -> Row {
        match self {
            Outcome::Write { row, .. } | Outcome::Remove(row) | Outcome::Unchanged(row) => row,
        }
    }
}

/// Runs `change` on the row of `key` through `writer`, attempt after attempt (see the
/// module docs), and answers the row as written (or as it was, for a hard delete).
pub(crate) async fn run<W: WriteAttempt>(
    writer: &mut W,
    table: &TableDef,
    key: &Key<'_>,
    change: Change,
    clock: &dyn Clock,
) -> Result<Row, StorageError> {
    for n in 0..MAX_ATTEMPTS {
        let expect_absent = n == 0 && matches!(change, Change::Insert { .. });
        match attempt(writer, table, key, change.clone(), clock, expect_absent).await {
            Ok(Some(row)) => return Ok(row),
            Ok(None) => {}
            Err(e) => {
                writer.abandon().await;
                return Err(e);
            }
        }
    }
    Err(StorageError::Unavailable("the row kept changing under the write; retry"))
}

/// One attempt: the row as written, or `None` when the row changed under it (or, with
/// a reserved stamp, already carries a later pair) and another attempt must follow.
async fn attempt<W: WriteAttempt>(
    writer: &mut W,
    table: &TableDef,
    key: &Key<'_>,
    change: Change,
    clock: &dyn Clock,
    expect_absent: bool,
) -> Result<Option<Row>, StorageError> {
    let Read { stamp, current } = writer.begin(table, key, expect_absent).await?;
    let (updated_at, reserved) = match stamp {
        Stamp::Locked(clock_row) => {
            let last = last_pair(&table.name, clock_row)?;
            (updated_at(key.id, last.as_ref().map(|(ms, id)| (*ms, id.as_str())), clock.now())?, false)
        }
        Stamp::Reserved(at) => (reserved_updated_at(&at)?, true),
    };
    let stored = current.as_ref().map(|r| (r.version.clone(), r.updated_at.clone()));
    let outcome = match decide(table, key, current, updated_at, change) {
        Ok(outcome) => outcome,
        Err(refused) => {
            writer.finish(table, key, Effect::Nothing).await?;
            return Err(refused);
        }
    };
    let replaces = stored.as_ref().map(|(version, _)| version.as_str());
    let effect = match &outcome {
        // A reserved pair taken before another writer's, which wrote the row first.
        Outcome::Write { row, .. }
            if reserved && stored.as_ref().is_some_and(|(_, stored_at)| *stored_at >= row.updated_at) =>
        {
            writer.finish(table, key, Effect::Nothing).await?;
            return Ok(None);
        }
        Outcome::Write { row, .. } => Effect::Write { row, replaces },
        Outcome::Remove(row) => Effect::Remove { version: &row.version },
        Outcome::Unchanged(_) => Effect::Nothing,
    };
    let applied = writer.finish(table, key, effect).await?;
    Ok(applied.then(|| outcome.into_row()))
}

/// What `change` does to `current`, the stored row of `key` (if any), when a write
/// gets `updated_at`.
pub(crate) fn decide(
    table: &TableDef,
    key: &Key<'_>,
    current: Option<Row>,
    updated_at: String,
    change: Change,
) -> Result<Outcome, StorageError> {
    let mut row = match (change, current) {
        (Change::Insert { values }, current) => return insert(table, key, current, values, updated_at),
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
    row.updated_at = updated_at;
    row.version = stamp::new_version(Some(&row.version));
    Ok(Outcome::Write { row, new: false })
}

/// An insert: refused over an existing row (tombstones included).
fn insert(
    table: &TableDef,
    key: &Key<'_>,
    current: Option<Row>,
    mut values: Vec<Value>,
    updated_at: String,
) -> Result<Outcome, StorageError> {
    if let Some(existing) = current {
        return Err(StorageError::AlreadyExists(Box::new(existing)));
    }
    // A served owner column is the key's owner, whatever the values say.
    if let (Some(slot), Some(owner)) = (table.served_owner().and_then(|i| values.get_mut(i)), key.owner) {
        *slot = Value::String(owner.to_owned());
    }
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

/// The refusal of a clock outside what `updatedAt` can hold.
const OUT_OF_RANGE: StorageError = StorageError::Unavailable("the clock is outside years 0000-9999");

/// The `updatedAt` of a write of `id` at `now`, after the `last` pair of its clock row.
fn updated_at(id: &str, last: Option<(i64, &str)>, now: OffsetDateTime) -> Result<String, StorageError> {
    let ms = stamp::next_updated_at(stamp::unix_ms(now), id, last);
    stamp::from_unix_ms(ms).filter(|t| datetime::in_range(*t)).map(datetime::format).ok_or(OUT_OF_RANGE)
}

/// A reserved `updatedAt`, checked and in its one spelling.
fn reserved_updated_at(at: &str) -> Result<String, StorageError> {
    datetime::parse(at).filter(|t| datetime::in_range(*t)).map(datetime::format).ok_or(OUT_OF_RANGE)
}

/// The refusal of a write to a table the server did not prepare (it has no clock row).
pub(crate) fn unprepared(table: &str) -> StorageError {
    StorageError::Schema { table: table.to_owned(), message: format!("the table has no row in {CLOCK_TABLE}") }
}

/// The last pair assigned, from a clock row: `None` before the first write. A table
/// without a clock row was not prepared by this server.
pub(crate) fn last_pair(table: &str, clock_row: Option<ClockRow>) -> Result<Option<(i64, String)>, StorageError> {
    let Some(ClockRow { updated_at, id }) = clock_row else {
        return Err(unprepared(table));
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
    use crate::stamp::ManualClock;
    use crate::storage::Update;
    use sync_core::ColumnType;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-01-02 03:04:05.678 UTC);
    const NOW_MS: i64 = 1_767_323_045_678;
    const AT: &str = "2026-01-02T03:04:05.678Z";

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
        let decide = |current, change| decide(&t, &KEY, current, AT.to_owned(), change);
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
    fn writes_stamp_a_new_version_and_the_pair() {
        let t = table();
        // The clock is behind the last pair and "a" < "b": one millisecond later.
        let at = updated_at("a", Some((NOW_MS + 5, "b")), NOW).unwrap();
        assert_eq!(at, "2026-01-02T03:04:05.684Z");
        let Outcome::Write { row, new: false } =
            decide(&t, &KEY, Some(stored(false)), at, update(Some("v1"), false)).unwrap()
        else {
            panic!("an update writes over the stored row")
        };
        assert_ne!(row.version, "v1");
        assert_eq!(row.updated_at, "2026-01-02T03:04:05.684Z");
        assert_eq!(row.created_at, "2026-01-01T00:00:00.000Z");
        assert_eq!(row.values[1], Value::String("y".into()));

        let insert = Change::Insert { values: vec![Value::Null, Value::Null] };
        let Outcome::Write { row, new: true } =
            decide(&t, &KEY, None, updated_at("a", None, NOW).unwrap(), insert).unwrap()
        else {
            panic!("an insert writes a new row")
        };
        assert_eq!((row.updated_at.as_str(), row.created_at.as_str()), (AT, AT));
        assert!(!row.deleted);
    }

    #[test]
    fn reserved_stamps_are_checked_and_respelled() {
        assert_eq!(reserved_updated_at(AT).unwrap(), AT);
        assert!(reserved_updated_at("10000-01-01T00:00:00.000Z").is_err());
        assert!(reserved_updated_at("").is_err());
    }

    #[test]
    fn deletes_and_undeletes() {
        let t = table();
        let decide = |current, change| decide(&t, &KEY, current, AT.to_owned(), change);
        let soft = Change::Delete { expected_version: Some("v1".into()), soft: true };
        let Outcome::Write { row, new: false } = decide(Some(stored(false)), soft).unwrap() else {
            panic!("a soft delete writes a tombstone")
        };
        assert!(row.deleted && row.version != "v1");
        let hard = Change::Delete { expected_version: None, soft: false };
        assert_eq!(decide(Some(stored(false)), hard).unwrap(), Outcome::Remove(stored(false)));
        let undelete = Change::Undelete { expected_version: None };
        assert_eq!(decide(Some(stored(false)), undelete.clone()).unwrap(), Outcome::Unchanged(stored(false)));
        let Outcome::Write { row, .. } = decide(Some(stored(true)), undelete).unwrap() else {
            panic!("an undelete of a tombstone writes the row")
        };
        assert!(!row.deleted);
        // An update with `undelete` clears the flag too; one without keeps refusing.
        let Outcome::Write { row, .. } = decide(Some(stored(true)), update(None, true)).unwrap() else {
            panic!("an undeleting update writes the row")
        };
        assert!(!row.deleted);
    }

    #[test]
    fn a_served_owner_column_holds_the_key_owner() {
        let t = table().owner_column("userId");
        let key = Key { id: "a", owner: Some("bob") };
        let insert = Change::Insert { values: vec![Value::String("mallory".into()), Value::Null] };
        let Outcome::Write { row, .. } = decide(&t, &key, None, AT.to_owned(), insert).unwrap() else {
            panic!("an insert writes")
        };
        assert_eq!(row.values[0], Value::String("bob".into()));
        let change = Change::Update(Update {
            values: vec![(0, Value::String("mallory".into())), (1, Value::String("y".into()))],
            expected_version: None,
            undelete: false,
        });
        let Outcome::Write { row, .. } = decide(&t, &key, Some(stored(false)), AT.to_owned(), change).unwrap() else {
            panic!("an update writes")
        };
        assert_eq!(row.values, vec![Value::String("alice".into()), Value::String("y".into())]);
    }

    #[test]
    fn clock_rows_are_read_strictly() {
        assert_eq!(last_pair("T", Some(ClockRow { updated_at: String::new(), id: String::new() })).unwrap(), None);
        let row = ClockRow { updated_at: AT.into(), id: "b".into() };
        assert_eq!(last_pair("T", Some(row)).unwrap(), Some((NOW_MS, "b".to_owned())));
        assert!(matches!(last_pair("T", None), Err(StorageError::Schema { .. })));
        let bad = ClockRow { updated_at: "yesterday".into(), id: "b".into() };
        assert!(last_pair("T", Some(bad)).unwrap_err().to_string().contains("unreadable timestamp"));
    }

    /// A backend that plays back the reads it is given and records what it was asked
    /// to do; its finishes apply while `applies` says so.
    #[derive(Default)]
    struct Scripted {
        reads: Vec<Read>,
        applies: Vec<bool>,
        log: Vec<String>,
    }

    impl WriteAttempt for Scripted {
        async fn begin(&mut self, _: &TableDef, _: &Key<'_>, expect_absent: bool) -> Result<Read, StorageError> {
            self.log.push(if expect_absent { "begin absent" } else { "begin" }.into());
            Ok(self.reads.remove(0))
        }

        async fn finish(&mut self, _: &TableDef, _: &Key<'_>, effect: Effect<'_>) -> Result<bool, StorageError> {
            self.log.push(match effect {
                Effect::Write { row, replaces } => format!("write {} over {replaces:?}", row.updated_at),
                Effect::Remove { version } => format!("remove {version}"),
                Effect::Nothing => "nothing".into(),
            });
            Ok(match effect {
                Effect::Nothing => true,
                _ => self.applies.remove(0),
            })
        }

        async fn abandon(&mut self) {
            self.log.push("abandon".into());
        }
    }

    /// Runs a write on a scripted backend to its end (its steps never wait).
    fn run_scripted(backend: &mut Scripted, change: Change) -> Result<Row, StorageError> {
        use std::future::Future;
        use std::task::{Context, Poll, Waker};
        let clock = ManualClock::new(NOW);
        let t = table();
        let mut write = std::pin::pin!(run(backend, &t, &KEY, change, &clock));
        match write.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(result) => result,
            Poll::Pending => panic!("a scripted write never waits"),
        }
    }

    #[test]
    fn a_write_that_lost_a_race_reads_the_row_again() {
        let mut newer = stored(false);
        newer.version = "v2".into();
        let mut backend = Scripted {
            reads: vec![
                Read { stamp: Stamp::Reserved("2026-01-02T03:04:05.000Z".into()), current: Some(stored(false)) },
                Read { stamp: Stamp::Reserved("2026-01-02T03:04:05.001Z".into()), current: Some(newer) },
            ],
            applies: vec![false],
            ..Scripted::default()
        };
        // The If-Match held on the first read, not on the second: refused, not overwritten.
        let err = run_scripted(&mut backend, update(Some("v1"), false)).unwrap_err();
        assert!(matches!(err, StorageError::VersionMismatch(row) if row.version == "v2"));
        assert_eq!(
            backend.log,
            ["begin", "write 2026-01-02T03:04:05.000Z over Some(\"v1\")", "begin", "nothing", "abandon"]
        );
    }

    #[test]
    fn a_reserved_stamp_older_than_the_row_is_given_back() {
        let mut backend = Scripted {
            reads: vec![
                // The stored row was written by a writer that reserved after this one.
                Read { stamp: Stamp::Reserved("2025-12-31T23:59:59.999Z".into()), current: Some(stored(false)) },
                Read { stamp: Stamp::Reserved(AT.into()), current: Some(stored(false)) },
            ],
            applies: vec![true],
            ..Scripted::default()
        };
        let row = run_scripted(&mut backend, update(None, false)).unwrap();
        assert_eq!(row.updated_at, AT);
        assert_eq!(backend.log, ["begin", "nothing", "begin", &format!("write {AT} over Some(\"v1\")")]);

        // A locked clock is never behind its rows (unless someone wrote around it): no
        // stamp to give back, the write goes ahead.
        let mut backend =
            Scripted { reads: vec![Read { stamp: Stamp::Locked(None), current: None }], ..Scripted::default() };
        let insert = Change::Insert { values: vec![Value::Null, Value::Null] };
        assert!(matches!(run_scripted(&mut backend, insert), Err(StorageError::Schema { .. })));
        assert_eq!(backend.log, ["begin absent", "abandon"], "a table without a clock row is refused");
    }

    #[test]
    fn an_insert_first_expects_no_row_and_reads_when_there_is_one() {
        let mut backend = Scripted {
            reads: vec![
                Read { stamp: Stamp::Reserved(AT.into()), current: None },
                Read { stamp: Stamp::Reserved(AT.into()), current: Some(stored(true)) },
            ],
            applies: vec![false],
            ..Scripted::default()
        };
        let insert = Change::Insert { values: vec![Value::Null, Value::Null] };
        let err = run_scripted(&mut backend, insert).unwrap_err();
        assert!(matches!(err, StorageError::AlreadyExists(row) if row.deleted));
        assert_eq!(backend.log, ["begin absent", &format!("write {AT} over None"), "begin", "nothing", "abandon"]);
    }

    #[test]
    fn a_row_that_keeps_changing_ends_in_unavailable() {
        let reads = (0..MAX_ATTEMPTS)
            .map(|_| Read {
                stamp: Stamp::Locked(Some(ClockRow { updated_at: AT.into(), id: "b".into() })),
                current: None,
            })
            .collect();
        let mut backend = Scripted { reads, applies: vec![false; MAX_ATTEMPTS], ..Scripted::default() };
        let insert = Change::Insert { values: vec![Value::Null, Value::Null] };
        assert!(matches!(run_scripted(&mut backend, insert), Err(StorageError::Unavailable(_))));
        assert_eq!(backend.log.len(), 2 * MAX_ATTEMPTS);
    }
}
