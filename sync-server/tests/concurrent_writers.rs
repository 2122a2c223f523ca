//! Incremental pull stays exact under concurrent writers (DESIGN.md section 9): 8 writer
//! tasks insert, update and delete through two server instances on one database while
//! readers page through the table by `(updatedAt, id)`; at the end every reader holds
//! exactly the server's rows, each at its latest version, having seen every pair once.
//!
//! Two tables: a shared one (every reader reads every row) and an owned one (4 owners;
//! each writer writes as any of them, each reader pulls as one owner and must see
//! exactly that owner's rows).
//!
//! Each test runs `SYNC_CONCURRENT_ROUNDS` rounds (1 unless set; e.g.
//! `SYNC_CONCURRENT_ROUNDS=20` for a soak run), each with new server instances on the
//! same database, the readers starting from the beginning of the table.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{Backend, Rng, SECRET, TestServer, V2, V3, all_rows, builder, rows, send, start, token};
use reqwest::{Method, RequestBuilder};
use serde_json::json;
use sync_server::{Auth, ManualClock, parse_tables};
use time::macros::datetime;

const WRITERS: u64 = 8;
const OPS_PER_WRITER: u64 = 60;
const READERS: usize = 3;
const OWNERS: [&str; 4] = ["alice", "bob", "carol", "dave"];
const PAGE: usize = 25;

on_both_backends!(
    concurrent_writers_never_hide_a_row_from_an_incremental_reader(flavor = "multi_thread", worker_threads = 2),
    concurrent_owners_never_hide_a_row_from_their_incremental_readers(flavor = "multi_thread", worker_threads = 2),
);

/// What a reader knows of a row: its version and whether it is deleted.
type Seen = BTreeMap<String, (String, bool)>;

/// The rounds to run: `SYNC_CONCURRENT_ROUNDS`, 1 when unset.
fn rounds() -> u64 {
    match std::env::var("SYNC_CONCURRENT_ROUNDS") {
        Ok(n) => n.parse().unwrap_or_else(|_| panic!("SYNC_CONCURRENT_ROUNDS is not a number: {n:?}")),
        Err(_) => 1,
    }
}

/// The table a round writes and reads, and as whom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// `TodoItem`, anonymous callers.
    Shared,
    /// `Owned` (owner column `userId`, not served), callers with tokens of [`OWNERS`].
    Owned,
}

impl Shape {
    fn table(self) -> &'static str {
        match self {
            Shape::Shared => "TodoItem",
            Shape::Owned => "Owned",
        }
    }

    /// The owner whose token a request carries (`None`: anonymous).
    fn owner(self, rng: &mut Rng) -> Option<&'static str> {
        match self {
            Shape::Shared => None,
            Shape::Owned => Some(OWNERS[rng.below(OWNERS.len() as u64) as usize]),
        }
    }
}

/// A request as `owner` (with a token), or anonymous.
fn as_owner(s: &TestServer, owner: Option<&str>, v: &str, method: Method, path: &str) -> RequestBuilder {
    let req = s.req(v, method, path);
    match owner {
        Some(owner) => req.bearer_auth(token(owner, true)),
        None => req,
    }
}

async fn concurrent_writers_never_hide_a_row_from_an_incremental_reader(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..rounds() {
        one_round(&b, dir.path(), Shape::Shared, round).await;
    }
}

async fn concurrent_owners_never_hide_a_row_from_their_incremental_readers(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..rounds() {
        one_round(&b, dir.path(), Shape::Owned, round).await;
    }
}

async fn one_round(b: &Backend, dir: &std::path::Path, shape: Shape, round: u64) {
    // A clock that mostly stands still: many writes share a millisecond, so pairs are
    // decided by ids and by the "+1 ms" rule, the cases where a late commit would hurt.
    let clock = ManualClock::new(datetime!(2026-05-06 07:08:09.010 UTC));
    clock.advance_ms(round as i64 * 1000);
    let mut servers = Vec::new();
    for _ in 0..2 {
        let mut builder = builder().clock(clock.clone()).database(b.shared_database(dir));
        if shape == Shape::Owned {
            let owned = "[tables.Owned]\ncolumns = { text = \"string\" }\nowner_column = \"userId\"\n";
            builder = builder.tables(parse_tables(owned).unwrap()).auth(Auth::jwt_hs256(SECRET).unwrap());
        }
        servers.push(Arc::new(start(builder).await));
    }
    let table = shape.table();

    let done = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (servers, clock) = (servers.clone(), clock.clone());
        writers.push(tokio::spawn(async move {
            let mut rng = Rng::new(0x5EED_0000 + w + (round << 16));
            // This writer's rows: (owner, id, current version).
            let mut mine: Vec<(Option<&str>, String, String)> = Vec::new();
            for op in 0..OPS_PER_WRITER {
                let s = &servers[((w + op) % 2) as usize];
                if rng.below(4) == 0 {
                    clock.advance_ms(1);
                }
                match (rng.below(10), mine.is_empty()) {
                    (0..=4, _) | (_, true) => {
                        // Server-made ids (random) or ours (increasing): both orders.
                        let owner = shape.owner(&mut rng);
                        let mut body = json!({"text": format!("from {w}")});
                        if shape == Shape::Shared {
                            body["complete"] = false.into();
                        }
                        if rng.below(2) == 0 {
                            body["id"] = format!("w{w}-r{round}-{op:03}").into();
                        }
                        let req = as_owner(s, owner, V3, Method::POST, &format!("/tables/{table}")).json(&body);
                        let (status, _, item) = send(req).await;
                        assert_eq!(status, 201, "{item}");
                        let text = |k: &str| item[k].as_str().unwrap().to_owned();
                        mine.push((owner, text("id"), text("version")));
                    }
                    (5..=8, false) => {
                        let i = rng.below(mine.len() as u64) as usize;
                        let (owner, id, version) = &mine[i];
                        let req = as_owner(s, *owner, V2, Method::PATCH, &format!("/tables/{table}/{id}"))
                            .header("If-Match", format!("\"{version}\""))
                            .json(&json!({"text": format!("edit {op}")}));
                        let (status, _, item) = send(req).await;
                        assert_eq!(status, 200, "{item}");
                        mine[i].2 = item["version"].as_str().unwrap().to_owned();
                    }
                    _ => {
                        let i = rng.below(mine.len() as u64) as usize;
                        let (owner, id, _) = mine.swap_remove(i);
                        let req = as_owner(s, owner, V3, Method::DELETE, &format!("/tables/{table}/{id}"));
                        let (status, _, body) = send(req).await;
                        assert_eq!(status, 204, "{body}");
                    }
                }
            }
        }));
    }

    // Shared: 3 readers of everything. Owned: one reader per owner.
    let readers_as: Vec<Option<&'static str>> = match shape {
        Shape::Shared => vec![None; READERS],
        Shape::Owned => OWNERS.iter().copied().map(Some).collect(),
    };
    let mut readers = Vec::new();
    for (r, owner) in readers_as.iter().copied().enumerate() {
        let (servers, done) = (servers.clone(), Arc::clone(&done));
        readers.push(tokio::spawn(async move { read_incrementally(&servers[r % 2], table, owner, &done).await }));
    }
    for w in writers {
        w.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let seen: Vec<Seen> = futures_join(readers).await;

    let mut total = 0;
    for (r, (reader, owner)) in seen.iter().zip(&readers_as).enumerate() {
        let bearer = owner.map(|o| token(o, true));
        let server: Seen = all_rows(&servers[0].client, &servers[0].url, table, bearer.as_deref())
            .await
            .into_iter()
            .map(|(id, r)| (id, (r["version"].as_str().unwrap().to_owned(), r["deleted"].as_bool().unwrap())))
            .collect();
        assert!(server.values().any(|(_, deleted)| *deleted), "round {round}: the workload deleted some rows");
        let missing: Vec<_> = server.iter().filter(|(id, row)| reader.get(*id) != Some(row)).take(5).collect();
        assert!(missing.is_empty(), "round {round}: reader {r} ({owner:?}) lacks or has stale rows: {missing:?}");
        assert_eq!(reader.len(), server.len(), "round {round}: reader {r} ({owner:?}) has rows the server does not");
        total = match shape {
            Shape::Shared => server.len(),
            Shape::Owned => total + server.len(),
        };
    }
    let least = (round + 1) * WRITERS * OPS_PER_WRITER / 3;
    assert!(total as u64 > least, "round {round}: the workload wrote rows: {total}, at least {least}");
    for s in servers {
        Arc::into_inner(s).unwrap().stop().await;
    }
}

/// Pages through `table` by `(updatedAt, id)` from the start, as `owner`, including
/// tombstones, until the writers are done and a page comes back short; checks that the
/// pairs it sees only ever grow (so it never sees one twice).
async fn read_incrementally(s: &TestServer, table: &str, owner: Option<&str>, done: &AtomicBool) -> Seen {
    let mut seen = Seen::new();
    let mut cursor: Option<(String, String)> = None;
    loop {
        let finished = done.load(Ordering::SeqCst);
        let mut query = vec![
            ("$orderby", "updatedAt,id".to_owned()),
            ("$top", PAGE.to_string()),
            ("__includedeleted", "true".to_owned()),
        ];
        if let Some((t, id)) = &cursor {
            let t = format!("cast({t},Edm.DateTimeOffset)");
            query.push(("$filter", format!("updatedAt gt {t} or (updatedAt eq {t} and id gt '{id}')")));
        }
        let req = as_owner(s, owner, V3, Method::GET, &format!("/tables/{table}")).query(&query);
        let (status, _, body) = send(req).await;
        assert_eq!(status, 200, "{body}");
        let page = rows(V3, &body);
        for row in &page {
            let pair = (row["updatedAt"].as_str().unwrap().to_owned(), row["id"].as_str().unwrap().to_owned());
            assert!(cursor.as_ref().is_none_or(|c| *c < pair), "pairs grow: {cursor:?} then {pair:?}");
            seen.insert(pair.1.clone(), (row["version"].as_str().unwrap().to_owned(), row["deleted"] == true));
            cursor = Some(pair);
        }
        if page.len() < PAGE && finished {
            return seen;
        }
        if page.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }
}

async fn futures_join<T: Send + 'static>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}
