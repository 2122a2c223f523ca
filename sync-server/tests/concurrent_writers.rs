//! Incremental pull stays exact under concurrent writers (DESIGN.md section 9): 8 writer
//! tasks insert, update and delete through two server instances on one database while
//! readers page through the table by `(updatedAt, id)`; at the end every reader holds
//! exactly the server's rows, each at its latest version.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{Backend, Rng, TestServer, V2, V3, all_rows, builder, rows, send, start};
use reqwest::Method;
use serde_json::json;
use sync_server::ManualClock;
use time::macros::datetime;

const WRITERS: u64 = 8;
const OPS_PER_WRITER: u64 = 60;
const READERS: usize = 3;
const PAGE: usize = 25;

on_both_backends!(concurrent_writers_never_hide_a_row_from_an_incremental_reader(
    flavor = "multi_thread",
    worker_threads = 2
));

/// What a reader knows of a row: its version and whether it is deleted.
type Seen = BTreeMap<String, (String, bool)>;

async fn concurrent_writers_never_hide_a_row_from_an_incremental_reader(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    // A clock that mostly stands still: many writes share a millisecond, so pairs are
    // decided by ids and by the "+1 ms" rule, the cases where a late commit would hurt.
    let clock = ManualClock::new(datetime!(2026-05-06 07:08:09.010 UTC));
    let mut servers = Vec::new();
    for _ in 0..2 {
        let builder = builder().clock(clock.clone()).database(b.shared_database(dir.path()));
        servers.push(Arc::new(start(builder).await));
    }

    let done = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (servers, clock) = (servers.clone(), clock.clone());
        writers.push(tokio::spawn(async move {
            let mut rng = Rng::new(0x5EED_0000 + w);
            // This writer's rows: id -> current version.
            let mut mine: Vec<(String, String)> = Vec::new();
            for op in 0..OPS_PER_WRITER {
                let s = &servers[((w + op) % 2) as usize];
                if rng.below(4) == 0 {
                    clock.advance_ms(1);
                }
                match (rng.below(10), mine.is_empty()) {
                    (0..=4, _) | (_, true) => {
                        // Server-made ids (random) or ours (increasing): both orders.
                        let id = (rng.below(2) == 0).then(|| format!("w{w}-{op:03}"));
                        let item = s.insert(V3, id.as_deref(), &format!("from {w}")).await;
                        mine.push((
                            item["id"].as_str().unwrap().to_owned(),
                            item["version"].as_str().unwrap().to_owned(),
                        ));
                    }
                    (5..=8, false) => {
                        let i = rng.below(mine.len() as u64) as usize;
                        let (id, version) = &mine[i];
                        let req = s
                            .req(V2, Method::PATCH, &format!("/tables/TodoItem/{id}"))
                            .header("If-Match", format!("\"{version}\""))
                            .json(&json!({"text": format!("edit {op}")}));
                        let (status, _, item) = send(req).await;
                        assert_eq!(status, 200, "{item}");
                        mine[i].1 = item["version"].as_str().unwrap().to_owned();
                    }
                    _ => {
                        let i = rng.below(mine.len() as u64) as usize;
                        let (id, _) = mine.swap_remove(i);
                        let (status, _, body) =
                            send(s.req(V3, Method::DELETE, &format!("/tables/TodoItem/{id}"))).await;
                        assert_eq!(status, 204, "{body}");
                    }
                }
            }
        }));
    }

    let mut readers = Vec::new();
    for r in 0..READERS {
        let (servers, done) = (servers.clone(), Arc::clone(&done));
        readers.push(tokio::spawn(async move { read_incrementally(&servers[r % 2], &done).await }));
    }
    for w in writers {
        w.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let seen: Vec<Seen> = futures_join(readers).await;

    let server: Seen = all_rows(&servers[0].client, &servers[0].url, "TodoItem", None)
        .await
        .into_iter()
        .map(|(id, r)| (id, (r["version"].as_str().unwrap().to_owned(), r["deleted"].as_bool().unwrap())))
        .collect();
    assert!(server.len() as u64 > WRITERS * OPS_PER_WRITER / 3, "the workload wrote rows: {}", server.len());
    assert!(server.values().any(|(_, deleted)| *deleted), "and deleted some");
    for (r, reader) in seen.iter().enumerate() {
        let missing: Vec<_> = server.iter().filter(|(id, row)| reader.get(*id) != Some(row)).take(5).collect();
        assert!(missing.is_empty(), "reader {r} lacks or has stale rows: {missing:?}");
        assert_eq!(reader.len(), server.len(), "reader {r} has rows the server does not");
    }
    for s in servers {
        Arc::into_inner(s).unwrap().stop().await;
    }
}

/// Pages through the table by `(updatedAt, id)` from the start, including tombstones,
/// until the writers are done and a page comes back short; checks that the pairs it
/// sees only ever grow.
async fn read_incrementally(s: &TestServer, done: &AtomicBool) -> Seen {
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
        let (status, _, body) = send(s.req(V3, Method::GET, "/tables/TodoItem").query(&query)).await;
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
