//! Reserved stamps: how PostgreSQL's writers run in parallel and incremental readers
//! still never miss a row.
//!
//! # The mechanism
//!
//! Every write (see [`super::attempt`]):
//!
//! 1. **reserves** its `(updatedAt, id)`: the storage's reserving task
//!    ([`super::stamps`]) moves the clock row of the rows the write's readers see (the
//!    table's for a shared table, the owner's for an owned one) to the next pair, by the
//!    rule of [`crate::stamp`] (in SQL: [`next_updated_at`]), and records the pair in
//!    `__sync_server_inflight`, in one statement that commits at once. The clock row is
//!    locked for that statement only, never across a write;
//! 2. meanwhile reads the row (no lock) and decides with the rules of
//!    [`crate::storage::write`];
//! 3. **writes** in one statement that withdraws its reservation and writes the row only
//!    if the withdrawal found it ([`guarded`]), and only if the row still has the version
//!    read (else it tries again with a new reservation). A write that writes nothing
//!    withdraws its reservation alone.
//!
//! A reader sees only the rows *before the oldest reservation of the table* in its own
//! snapshot: its query reads the table through [`visible_rows`], in one statement, so
//! the reservations and the rows come from one snapshot. (For an owned table that holds
//! an owner's readers back behind other owners' writes in flight too: a few
//! milliseconds, and never wrong; the owners' pairs just need no common order.)
//!
//! Nobody waits for another write's transaction: writers of different rows never wait
//! for each other, and readers never wait at all. Writers of one row wait for each
//! other's single statement; reservations of one clock row queue for one statement at a
//! time (the reserving task batches them, see [`super::stamps`]).
//!
//! # Why a reader cannot skip a row
//!
//! Write `p(V)` for the pair of a row version `V`. A reader whose query (snapshot `S`)
//! returned a row `R` sets its cursor to `p(R)` and later asks only for pairs above it;
//! it misses a version `V` of a row it may see (the same table, and for an owned table
//! the same owner, so `V` and `R` share a clock row) with `p(V) < p(R)` exactly when `V`
//! commits but is not visible in `S`. That cannot happen:
//!
//! - The pairs of one clock row are taken in the order the row is locked, each batch's
//!   above the one before (within a batch, in id order), and a batch's reservations
//!   commit together. So `p(V) < p(R)` means `V`'s reservation committed no later than
//!   `R`'s, which is before `R`'s write committed, which is before `S` was taken (`R` is
//!   visible in `S`). PostgreSQL makes a commit visible before it releases the
//!   transaction's locks, so `V`'s reservation is visible in `S`.
//! - `S` also sees `R` *before the oldest reservation*, so `V`'s reservation, visible in
//!   `S`, is no longer there in `S`: a transaction that committed before `S` deleted it.
//!   Either `V`'s own write did (it withdraws its reservation in the same transaction
//!   as the row), and then `V` is visible in `S`; or another transaction did (a failed
//!   write withdrawing, a reader expiring it, a write giving its stamp back), and then
//!   `V` never commits: its write deletes the reservation in the same statement and
//!   writes only if that deletion found the row. Two transactions deleting one row are
//!   serialized on its row lock, and in READ COMMITTED the second one's delete finds
//!   nothing once the first committed.
//!
//! Nothing here depends on which server process wrote what, on any process's own
//! locks, or on the order in which transactions commit: the clock rows, the
//! reservations and the rows are all in PostgreSQL, so any number of instances on one
//! database agree.
//!
//! # Crashes, cancellations and stuck writers
//!
//! Since any transaction may delete any reservation without harm (its write then just
//! does not happen, and its request tries again with a new reservation), a reservation
//! left behind is only a matter of freshness, never of correctness:
//!
//! - a write that writes nothing, fails midway, or whose request is cancelled at any
//!   point (the client went away) gives its reservation back to the reserving task,
//!   which withdraws it at once (see [`super::stamps`]);
//! - a reader first expires the table's reservations older than [`EXPIRY`] (by
//!   PostgreSQL's clock): a crashed or hung instance holds readers back that long at
//!   most, whoever writes or not.
//!
//! A reservation commits asynchronously (`synchronous_commit = off` for its own
//! transaction): it is visible at once, and made durable by the next synchronous
//! commit of anything (WAL is flushed in order). If PostgreSQL crashes before that, the
//! clock row may come back behind a reservation that was lost, but every row that
//! became visible was committed synchronously after its own reservation, so the clock
//! comes back at or after every pair a reader could have seen. The in-flight table is
//! `UNLOGGED`: after a crash it is empty, as no writer of before survives one.
//!
//! A clock that steps back is absorbed by the rule (pairs never go back); instances
//! whose clocks disagree just stamp with the later one. Expiry uses only PostgreSQL's
//! clock.
//!
//! Rows written by other programs bypass the clock rows and void this guarantee.

use std::time::Duration;

use sync_core::sql::quote_ident;
use tokio_postgres::types::ToSql;

use crate::storage::statements::{CLOCK_TABLE, OWNER_CLOCK_TABLE};
use crate::table::TableDef;

/// The table of reserved pairs not yet written or given back: `(table, owner, updatedAt,
/// id)` (the owner `''` for a shared table) and when it was reserved (PostgreSQL's
/// clock).
pub(super) const INFLIGHT_TABLE: &str = "__sync_server_inflight";

/// How long a reservation may stay before any reader withdraws it (its write then fails
/// and tries again with a new one). Far above a healthy write's few milliseconds
/// between reserving and writing, so only crashed or stuck writers meet it.
pub(super) const EXPIRY: Duration = Duration::from_secs(5);

/// The name of the withdrawal a guarded write is conditioned on.
const WITHDRAWN: &str = "withdrawn";

/// A pair reserved for a write and not yet written or given back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Reservation {
    table: String,
    /// `''` for a shared table.
    owner: String,
    updated_at: String,
    id: String,
}

impl Reservation {
    pub(super) fn new(table: &str, owner: Option<&str>, updated_at: &str, id: &str) -> Reservation {
        Reservation {
            table: table.to_owned(),
            owner: owner.unwrap_or_default().to_owned(),
            updated_at: updated_at.to_owned(),
            id: id.to_owned(),
        }
    }

    /// The parameters of [`withdraw_many`] for `reservations`: their tables, owners,
    /// `updatedAt`s and ids.
    pub(super) fn columns(reservations: &[Reservation]) -> [Vec<&str>; 4] {
        let column = |f: fn(&Reservation) -> &str| reservations.iter().map(f).collect();
        [column(|r| &r.table), column(|r| &r.owner), column(|r| &r.updated_at), column(|r| &r.id)]
    }

    /// The reserved `updatedAt`.
    pub(super) fn updated_at(&self) -> &str {
        &self.updated_at
    }

    /// The parameters [`guarded`] adds after a row write's own.
    pub(super) fn guard_params(&self) -> [&(dyn ToSql + Sync); 3] {
        [&self.table, &self.owner, &self.updated_at]
    }
}

/// Creates the in-flight table when it is missing. Its key starts `(tbl, updatedAt,
/// id)`, so a reader finds a table's oldest reservation, whatever its owner, at the
/// start of the key's range.
pub(super) fn inflight_table() -> String {
    format!(
        "CREATE UNLOGGED TABLE IF NOT EXISTS {} (\"tbl\" TEXT NOT NULL, \"owner\" TEXT COLLATE \"C\" NOT NULL, \
         \"updatedAt\" TEXT COLLATE \"C\" NOT NULL, \"id\" TEXT COLLATE \"C\" NOT NULL, \
         \"reservedAt\" TIMESTAMPTZ NOT NULL, PRIMARY KEY (\"tbl\", \"updatedAt\", \"id\", \"owner\"))",
        quote_ident(INFLIGHT_TABLE)
    )
}

/// The rule of [`crate::stamp::next_updated_at`] in SQL, on the text form of the
/// timestamps (fixed width, so text order is time order; compared in the `"C"`
/// collation, bytewise like the Rust rule): the `updatedAt` of a write of row `id` at
/// `now`, after the last pair `(last_at, last_id)` (`''` before the first write).
pub(super) fn next_updated_at(last_at: &str, last_id: &str, now: &str, id: &str) -> String {
    format!(
        "CASE WHEN {now} > {last_at} COLLATE \"C\" THEN {now} \
         WHEN {id} > {last_id} COLLATE \"C\" THEN {last_at} \
         ELSE to_char(({last_at}::timestamptz AT TIME ZONE 'UTC') + interval '1 millisecond', \
         'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') END"
    )
}

/// `"async" AS (..)`: makes the statement's own transaction commit without waiting for
/// the disk (when referenced in its `FROM`).
const ASYNC_COMMIT: &str = "\"async\" AS (SELECT set_config('synchronous_commit', 'off', true))";

/// Reserves pairs on a shared table's clock row, for rows of ascending distinct ids at
/// one time: `$1` the table, `$2` the writers' clock (as `updatedAt` text), `$3` and `$4`
/// the first and last id, `$5` every id. Moves the clock row to the next pair of the
/// first id (the rule) with the last id, and records `(updatedAt, id)` of every id in
/// flight, in one statement; answers `(owner, updatedAt)` per id (no row when the table
/// has no clock row).
pub(super) fn reserve_shared() -> String {
    format!(
        "WITH {ASYNC_COMMIT}, \"stamp\" AS (UPDATE {clock} SET \"updatedAt\" = {next}, \"id\" = $4 \
         WHERE \"tbl\" = $1 RETURNING \"updatedAt\") \
         INSERT INTO {inflight} (\"tbl\", \"owner\", \"updatedAt\", \"id\", \"reservedAt\") \
         SELECT $1, '', s.\"updatedAt\", r.\"id\", statement_timestamp() \
         FROM \"stamp\" AS s CROSS JOIN \"async\" CROSS JOIN unnest($5::text[]) AS r(\"id\") \
         RETURNING \"owner\", \"updatedAt\"",
        clock = quote_ident(CLOCK_TABLE),
        inflight = quote_ident(INFLIGHT_TABLE),
        next = next_updated_at("\"updatedAt\"", "\"id\"", "$2", "$3"),
    )
}

/// [`reserve_shared`] for several owners of an owned table at once, each on its own
/// clock row: `$1` the table, `$2` the clock, `$3`, `$4`, `$5` the owners with their
/// first and last ids, `$6` and `$7` the owner and id of every reservation. Owners
/// without a clock row get no answer. The clock rows are locked in the order of their
/// owners before they are moved, so that two instances reserving for the same owners
/// wait for each other (one statement) rather than deadlock.
pub(super) fn reserve_owned() -> String {
    format!(
        "WITH {ASYNC_COMMIT}, \
         \"groups\" AS (SELECT * FROM unnest($3::text[], $4::text[], $5::text[]) AS g(\"owner\", \"first\", \"last\")), \
         \"locked\" AS (SELECT c.\"owner\" FROM {clock} AS c WHERE c.\"tbl\" = $1 AND c.\"owner\" = ANY ($3::text[]) \
         ORDER BY c.\"owner\" FOR UPDATE), \
         \"stamp\" AS (UPDATE {clock} AS c SET \"updatedAt\" = {next}, \"id\" = g.\"last\" \
         FROM \"groups\" AS g, \"locked\" AS l \
         WHERE c.\"tbl\" = $1 AND c.\"owner\" = g.\"owner\" AND l.\"owner\" = g.\"owner\" \
         RETURNING c.\"owner\", c.\"updatedAt\") \
         INSERT INTO {inflight} (\"tbl\", \"owner\", \"updatedAt\", \"id\", \"reservedAt\") \
         SELECT $1, s.\"owner\", s.\"updatedAt\", r.\"id\", statement_timestamp() \
         FROM \"stamp\" AS s CROSS JOIN \"async\" \
         JOIN unnest($6::text[], $7::text[]) AS r(\"owner\", \"id\") ON r.\"owner\" = s.\"owner\" \
         RETURNING \"owner\", \"updatedAt\"",
        clock = quote_ident(OWNER_CLOCK_TABLE),
        inflight = quote_ident(INFLIGHT_TABLE),
        next = next_updated_at("c.\"updatedAt\"", "c.\"id\"", "$2", "g.\"first\""),
    )
}

/// Withdraws the reservations `($1 tables, $2 owners, $3 updatedAt, $4 ids)` (arrays)
/// that are still there.
pub(super) fn withdraw_many() -> String {
    format!(
        "WITH {ASYNC_COMMIT} DELETE FROM {} AS f USING \"async\", \
         unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS w(\"tbl\", \"owner\", \"updatedAt\", \"id\") \
         WHERE f.\"tbl\" = w.\"tbl\" AND f.\"owner\" = w.\"owner\" AND f.\"updatedAt\" = w.\"updatedAt\" \
         AND f.\"id\" = w.\"id\"",
        quote_ident(INFLIGHT_TABLE)
    )
}

/// Withdraws the reservations of the table named by parameter 1 made more than
/// [`EXPIRY`] ago, skipping those a write is withdrawing right now.
pub(super) fn expire() -> String {
    let inflight = quote_ident(INFLIGHT_TABLE);
    format!(
        "WITH {ASYNC_COMMIT} DELETE FROM {inflight} USING \"async\" WHERE ctid = ANY (ARRAY(\
         SELECT ctid FROM {inflight} WHERE \"tbl\" = $1 \
         AND \"reservedAt\" < statement_timestamp() - interval '{} milliseconds' FOR UPDATE SKIP LOCKED))",
        EXPIRY.as_millis()
    )
}

/// `write`, a row write guarded by [`WITHDRAWN`] ([`crate::storage::statements`]) with
/// `params` parameters, made to withdraw the writer's reservation and to write only if
/// it did: parameters `params + 1` to `params + 3` are [`Reservation::guard_params`],
/// and the id is parameter 1 of every row write.
pub(super) fn guarded(write: &str, params: usize) -> String {
    format!(
        "WITH {} AS (DELETE FROM {} WHERE \"tbl\" = ${} AND \"owner\" = ${} AND \"updatedAt\" = ${} \
         AND \"id\" = $1 RETURNING 1) {write}",
        quote_ident(WITHDRAWN),
        quote_ident(INFLIGHT_TABLE),
        params + 1,
        params + 2,
        params + 3
    )
}

/// The guard a row write names for [`guarded`].
pub(super) const GUARD: Option<&str> = Some(WITHDRAWN);

/// What a reader's query of `table` starts with: `WITH "<table>" AS (..)`, the table's
/// rows before the oldest reservation of the table named by parameter `table_param`.
/// The name hides the table in the query that follows, whose `FROM "<table>"` then reads
/// only those rows (PostgreSQL 12 and later fold it into that query, so its indexes
/// still serve it).
pub(super) fn visible_rows(table: &TableDef, table_param: usize) -> String {
    let name = quote_ident(&table.name);
    format!(
        "WITH {name} AS (SELECT * FROM {name} WHERE (\"updatedAt\", \"id\") < (\
         SELECT h.\"updatedAt\", h.\"id\" FROM (\
         (SELECT f.\"updatedAt\", f.\"id\" FROM {inflight} AS f WHERE f.\"tbl\" = ${table_param} \
         ORDER BY f.\"updatedAt\", f.\"id\" LIMIT 1) \
         UNION ALL SELECT '~' COLLATE \"C\", '' COLLATE \"C\") AS h \
         ORDER BY 1, 2 LIMIT 1)) ",
        inflight = quote_ident(INFLIGHT_TABLE)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guarded_writes_withdraw_their_own_reservation() {
        assert_eq!(
            guarded("DELETE FROM \"T\" WHERE x", 2),
            "WITH \"withdrawn\" AS (DELETE FROM \"__sync_server_inflight\" WHERE \"tbl\" = $3 AND \"owner\" = $4 \
             AND \"updatedAt\" = $5 AND \"id\" = $1 RETURNING 1) DELETE FROM \"T\" WHERE x"
        );
    }

    /// The rule in SQL gives what the rule in Rust gives, over many cases around one
    /// instant (equal, earlier and later clocks; equal, greater, smaller and prefix
    /// ids, non-ASCII ones; carries into the next second, day and year).
    #[tokio::test]
    async fn the_rule_in_sql_is_the_rule_in_rust() {
        use crate::stamp::{self, from_unix_ms, next_updated_at as rule};
        use sync_core::datetime;

        let Some(url) = std::env::var("SYNC_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty()) else {
            eprintln!("SKIPPED: SYNC_TEST_POSTGRES_URL is not set");
            return;
        };
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);

        let bases = ["2026-12-31T23:59:59.998Z", "2028-02-28T23:59:59.999Z", "2026-06-15T10:20:30.400Z"];
        let ids = ["", "a", "ab", "b", "B", "a\u{1}", "é", "z", "\u{10FFFF}"];
        let (mut last_ats, mut last_ids, mut nows, mut row_ids, mut expected) =
            (vec![], vec![], vec![], vec![], vec![]);
        let mut seed = 0x2026_1124_u64;
        let mut below = |n: usize| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize % n
        };
        for _ in 0..3000 {
            let base = stamp::unix_ms(datetime::parse(bases[below(bases.len())]).unwrap());
            let last = (below(8) != 0).then(|| (base, ids[below(ids.len())]));
            let now = base + below(5) as i64 - 2;
            let id = ids[below(ids.len())];
            let text = |ms: i64| datetime::format(from_unix_ms(ms).unwrap());
            last_ats.push(last.map_or(String::new(), |(ms, _)| text(ms)));
            last_ids.push(last.map_or("", |(_, id)| id).to_owned());
            nows.push(text(now));
            row_ids.push(id.to_owned());
            expected.push(text(rule(now, id, last)));
        }
        let sql = format!(
            "SELECT {} FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY \
             AS c(last_at, last_id, now, id, n) ORDER BY n",
            next_updated_at("c.last_at", "c.last_id", "c.now", "c.id")
        );
        let got: Vec<String> = client
            .query(&sql, &[&last_ats, &last_ids, &nows, &row_ids])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        for (i, (got, want)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(
                got, want,
                "last ({:?}, {:?}), now {:?}, id {:?}",
                last_ats[i], last_ids[i], nows[i], row_ids[i]
            );
        }
        assert_eq!(got.len(), expected.len());
    }

    #[test]
    fn the_sentinel_sorts_after_every_timestamp() {
        // The horizon when nothing is in flight: above any `updatedAt` in the C collation.
        assert!("~" > "9999-12-31T23:59:59.999Z");
        assert!(visible_rows(&TableDef::new("T"), 4).contains("f.\"tbl\" = $4"));
    }
}
