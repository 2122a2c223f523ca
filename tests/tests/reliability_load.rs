//! Load test (DESIGN.md section 11): 100 concurrent clients push and pull against one
//! `sync-server` on a SQLite file for 30 seconds. Every push and pull must succeed (zero
//! errors, zero conflicts: each client writes its own items), every client must end
//! with every row, and the test prints p50/p99 latencies and the throughput.
//!
//! Not part of the normal run (it takes the machine for half a minute):
//! `cargo test -p sync-tests --release --test reliability_load -- --ignored --nocapture`
//! Knobs: `SYNC_LOAD_CLIENTS` (default 100), `SYNC_LOAD_SECS` (default 30).
//!
//! Each push carries one queued operation, so it is one HTTP request; a pull is one
//! request per page (500 rows).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sync_runtime::{ProtocolVersion, PushStatus, Query, Store, SyncClient};
use sync_tests::{Rng, TodoItem};
use tokio::sync::Mutex;

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[derive(Default)]
struct Stats {
    push: Vec<Duration>,
    pull: Vec<Duration>,
    pages: u64,
    received: u64,
    errors: Vec<String>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn client_loop(index: usize, url: String, deadline: Instant, stats: Arc<Mutex<Stats>>, inserted: Arc<AtomicU64>) {
    let protocol = if index % 2 == 0 { ProtocolVersion::V2 } else { ProtocolVersion::V3 };
    let store = Store::open_in_memory().await.unwrap();
    let table = store.table::<TodoItem>().await.unwrap();
    let client = SyncClient::builder(store.clone(), url).protocol(protocol).build().unwrap();
    let mut rng = Rng::new(index as u64 + 1);
    let mut mine = Vec::new();
    let mut local = Stats::default();
    while Instant::now() < deadline {
        // One local write, then a push of exactly that one operation.
        if mine.is_empty() || rng.below(10) < 7 {
            let id = format!("c{index}-{}", mine.len());
            table.insert(TodoItem::new(&id, "new")).await.unwrap();
            mine.push(id);
            inserted.fetch_add(1, Ordering::Relaxed);
        } else {
            let id = &mine[rng.below(mine.len() as u64) as usize];
            let mut item = table.get(id).await.unwrap().unwrap();
            item.text = format!("edit {}", rng.next_u64());
            item.complete = !item.complete;
            table.update(&item).await.unwrap();
        }
        let t = Instant::now();
        match client.push().await {
            Ok(r) if r.status == PushStatus::Complete && r.errors == 0 && r.conflicts.is_empty() && r.pushed == 1 => {
                local.push.push(t.elapsed())
            }
            Ok(r) => local.errors.push(format!("client {index}: push {r:?}")),
            Err(e) => local.errors.push(format!("client {index}: push failed: {e}")),
        }
        if rng.below(2) == 0 {
            let t = Instant::now();
            match client.pull(Query::<TodoItem>::new(), Some("all")).await {
                Ok(r) => {
                    local.pull.push(t.elapsed());
                    local.pages += r.pages;
                    local.received += r.received;
                }
                Err(e) => local.errors.push(format!("client {index}: pull failed: {e}")),
            }
        }
    }
    let mut all = stats.lock().await;
    all.push.extend(local.push);
    all.pull.extend(local.pull);
    all.pages += local.pages;
    all.received += local.received;
    all.errors.extend(local.errors);
}

#[test]
#[ignore = "a 30-second load test; run it with --ignored (see the file's docs)"]
fn hundred_clients_push_and_pull_for_thirty_seconds() {
    let clients = env("SYNC_LOAD_CLIENTS").unwrap_or(100) as usize;
    let secs = env("SYNC_LOAD_SECS").unwrap_or(30);
    let dir = tempfile::tempdir().unwrap();

    // The server on its own runtime, as in production.
    let server_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let db = dir.path().join("load.db");
    let handle = server_rt.block_on(async {
        let server = sync_server::Server::builder()
            .table::<TodoItem>()
            .database(format!("sqlite:{}", db.display()).parse().unwrap())
            .build()
            .await
            .unwrap();
        server.spawn(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap()
    });
    let url = handle.url();

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let stats = Arc::new(Mutex::new(Stats::default()));
    let inserted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    rt.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|i| tokio::spawn(client_loop(i, url.clone(), deadline, Arc::clone(&stats), Arc::clone(&inserted))))
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let elapsed = started.elapsed();

    let mut stats = Arc::try_unwrap(stats).ok().unwrap().into_inner();
    stats.push.sort();
    stats.pull.sort();
    let requests = stats.push.len() as u64 + stats.pages;
    let inserted = inserted.load(Ordering::Relaxed);
    eprintln!(
        "load: {clients} clients for {elapsed:.1?}: {} pushes (1 request each), {} pulls ({} pages, {} rows); {requests} requests, {:.0} requests/s; {inserted} items inserted",
        stats.push.len(),
        stats.pull.len(),
        stats.pages,
        stats.received,
        requests as f64 / elapsed.as_secs_f64(),
    );
    eprintln!(
        "load: push (one request) latency p50 {:.1?}, p99 {:.1?}, max {:.1?}",
        percentile(&stats.push, 0.5),
        percentile(&stats.push, 0.99),
        stats.push.last().copied().unwrap_or_default()
    );
    eprintln!(
        "load: pull latency p50 {:.1?}, p99 {:.1?}, max {:.1?}",
        percentile(&stats.pull, 0.5),
        percentile(&stats.pull, 0.99),
        stats.pull.last().copied().unwrap_or_default()
    );
    assert!(
        stats.errors.is_empty(),
        "{} errors, the first: {:?}",
        stats.errors.len(),
        &stats.errors[..stats.errors.len().min(5)]
    );
    assert!(!stats.push.is_empty() && !stats.pull.is_empty());

    // Every insert is on the server once, and a fresh client gets them all.
    rt.block_on(async {
        let store = Store::open_in_memory().await.unwrap();
        let client = SyncClient::builder(store.clone(), url.clone()).protocol(ProtocolVersion::V3).build().unwrap();
        let r = client.pull(Query::<TodoItem>::new(), Some("all")).await.unwrap();
        assert_eq!(r.received, inserted, "every inserted item once");
        assert_eq!(store.table::<TodoItem>().await.unwrap().count_all().await.unwrap(), inserted);
    });
    server_rt.block_on(handle.shutdown()).unwrap();
}
