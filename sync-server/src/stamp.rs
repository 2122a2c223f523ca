//! What every write stamps on a row: a fresh `version` and an `updatedAt` that keeps
//! incremental readers complete.
//!
//! # Why `updatedAt` is not simply "now"
//!
//! An incremental reader pages through a table ordered by `(updatedAt, id)` and resumes
//! after the last pair it saw: `updatedAt gt T or (updatedAt eq T and id gt I)`. It
//! misses a row if a commit lands *behind* its cursor, i.e. with a pair smaller than one
//! already visible. With millisecond timestamps that happens easily: rows `b` then `a`
//! written in the same millisecond `T`; a reader that saw `(T, b)` never sees `(T, a)`.
//!
//! The rule: each write gets a pair strictly greater than the last pair assigned among
//! the rows its readers see (a table's, or one owner's rows of an owned table):
//!
//! - `now > last_ms`: take `now` (any id is fine, the time alone is greater);
//! - `now <= last_ms` and `id > last_id`: take `last_ms` (same time, greater id);
//! - otherwise (`id <= last_id`, including an update of the same row): take
//!   `last_ms + 1`.
//!
//! So timestamps never go backwards (a clock stepping back is absorbed), many rows can
//! share one millisecond, and `updatedAt` runs at most a little ahead of the clock under
//! a burst of writes whose ids arrive in decreasing order. The last pair is kept in the
//! database, in a clock row moved in step with the writes, so it survives restarts,
//! hard deletes of the newest row, and several server processes on one database.
//!
//! Pairs growing is half of it; the other half is that a row never becomes visible to a
//! reader after a row with a greater pair: SQLite's writers (one at a time) hold the
//! clock row until they commit, and PostgreSQL's writers publish their pair before
//! writing, so that readers hold back until it is written (see
//! `storage/postgres/reservations.rs`). That path applies the same rule in SQL; a test
//! holds the two to the same answers.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;

/// Where the server gets the time from; replace it in tests with [`ManualClock`].
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that only moves when told to (for tests): clones share the time.
#[derive(Clone, Debug)]
pub struct ManualClock {
    unix_ms: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock standing at `t` (truncated to milliseconds).
    pub fn new(t: OffsetDateTime) -> ManualClock {
        ManualClock { unix_ms: Arc::new(AtomicI64::new(unix_ms(t))) }
    }

    /// Sets the time.
    pub fn set(&self, t: OffsetDateTime) {
        self.unix_ms.store(unix_ms(t), Ordering::SeqCst);
    }

    /// Moves the time by `ms` milliseconds (negative moves it back).
    pub fn advance_ms(&self, ms: i64) {
        self.unix_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        from_unix_ms(self.unix_ms.load(Ordering::SeqCst)).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).unwrap_or(i64::MAX)
}

/// The time `ms` milliseconds after the Unix epoch.
pub(crate) fn from_unix_ms(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// The `updatedAt` (Unix milliseconds) for a write of row `id` at `now_ms`, given the
/// last `(updatedAt, id)` assigned in the table: the smallest time `>= now_ms` whose pair
/// is greater than `last` (see the module docs).
pub(crate) fn next_updated_at(now_ms: i64, id: &str, last: Option<(i64, &str)>) -> i64 {
    match last {
        None => now_ms,
        Some((last_ms, _)) if now_ms > last_ms => now_ms,
        // Ids compare bytewise, like SQLite's BINARY collation the reader's SQL uses.
        Some((last_ms, last_id)) if id.as_bytes() > last_id.as_bytes() => last_ms,
        Some((last_ms, _)) => last_ms + 1,
    }
}

/// A fresh opaque version: 122 random bits as 32 hex digits, never equal to `old`.
pub(crate) fn new_version(old: Option<&str>) -> String {
    loop {
        let v = uuid::Uuid::new_v4().simple().to_string();
        if Some(v.as_str()) != old {
            return v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_always_grow() {
        assert_eq!(next_updated_at(10, "a", None), 10);
        // A later clock wins whatever the id.
        assert_eq!(next_updated_at(11, "a", Some((10, "z"))), 11);
        // Same millisecond: a greater id shares it, a smaller or equal id moves on.
        assert_eq!(next_updated_at(10, "b", Some((10, "a"))), 10);
        assert_eq!(next_updated_at(10, "a", Some((10, "b"))), 11);
        assert_eq!(next_updated_at(10, "a", Some((10, "a"))), 11);
        // A clock that went back is absorbed.
        assert_eq!(next_updated_at(5, "b", Some((10, "a"))), 10);
        assert_eq!(next_updated_at(5, "a", Some((10, "b"))), 11);
    }

    #[test]
    fn a_frozen_clock_still_orders_every_write() {
        let mut last: Option<(i64, String)> = None;
        for i in 0..500u32 {
            let id = format!("{:08x}", i.wrapping_mul(2_654_435_761));
            let ms = next_updated_at(1_000, &id, last.as_ref().map(|(m, s)| (*m, s.as_str())));
            if let Some((lm, lid)) = &last {
                assert!((ms, id.as_str()) > (*lm, lid.as_str()));
            }
            last = Some((ms, id));
        }
    }

    #[test]
    fn versions_differ() {
        let a = new_version(None);
        assert_eq!(a.len(), 32);
        assert_ne!(new_version(Some(&a)), a);
    }

    #[test]
    fn manual_clock_moves_when_told() {
        let c = ManualClock::new(OffsetDateTime::UNIX_EPOCH);
        assert_eq!(unix_ms(c.now()), 0);
        c.advance_ms(5);
        assert_eq!(unix_ms(c.clone().now()), 5);
    }
}
