//! The sync engine, end to end: a commit on device A reaching a watch on device B with
//! no sync call (both engines running; B polling at 1 s, or following the server's
//! change feed), and the CPU time of an idle engine.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use sync_runtime::{ProtocolVersion, Store, SyncClient, SyncEngine};
use tokio::runtime::Runtime;

use crate::live::{ms, percentile};
use crate::measure::{Figure, Rounds, process_cpu};
use crate::model::Item;
use crate::remote::{BenchServer, Db};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// How device B hears of A's writes in [`latency`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// B polls every second (no feed).
    Polling,
    /// B follows the server's change feed (polling once an hour).
    Feed,
}

/// A device: a store file, a client of `url` and its engine (default debounce, polling
/// every `poll`; with `feed`, following the server's change feed).
fn device(rt: &Runtime, dir: &Path, name: &str, url: &str, poll: Duration, feed: bool) -> Res<(Store, SyncEngine)> {
    let store = Store::open(dir.join(format!("{name}.db"))).wait()?;
    store.table::<Item>().wait()?;
    let client = SyncClient::builder(store.clone(), url).protocol(ProtocolVersion::V3).build()?;
    let _entered = rt.enter();
    let engine = client.engine().table::<Item>().poll_interval(poll).feed(feed).feed_poll_interval(poll).start()?;
    Ok((store, engine))
}

/// Waits until the engine's first round went through (and, with `feed`, until it
/// follows the feed).
fn ready(engine: &SyncEngine, feed: bool) -> Res<()> {
    let mut statuses = engine.statuses();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match statuses.wait_next() {
            Some(s) if s.last_synced_at.is_some() && (s.feed || !feed) => return Ok(()),
            Some(_) => {}
            None => break,
        }
    }
    Err("the engine's first round did not go through".into())
}

/// `engine_latency_poll`, `engine_latency_feed[_pg]`: `writes` inserts on A, 0 to 100
/// ms apart (so that they fall at every phase of B's polling), each timed from the
/// start of its insert call to B's watch yielding a result that holds it. A pushes
/// after the default debounce (25 ms). B polls every second, or follows the change
/// feed (polling once an hour); with `db` on PostgreSQL, A and B talk to two server
/// instances on one database. Against the polling interval, or the 100 ms p99 target
/// through the feed.
pub fn latency(rt: &Runtime, dir: &Path, writes: usize, via: Via, db: &Db, name: &str) -> Res<Figure> {
    let server_a = rt.block_on(BenchServer::start(db))?;
    let server_b = match db {
        Db::Postgres(_) => Some(rt.block_on(BenchServer::start(db))?),
        Db::Sqlite(_) => None,
    };
    let url_a = server_a.url();
    let url_b = server_b.as_ref().map_or_else(|| url_a.clone(), BenchServer::url);
    let feed = via == Via::Feed;
    let poll = if feed { Duration::from_secs(3600) } else { Duration::from_secs(1) };
    let (a, engine_a) = device(rt, dir, &format!("{name}-a"), &url_a, poll, feed)?;
    let (b, engine_b) = device(rt, dir, &format!("{name}-b"), &url_b, poll, feed)?;
    ready(&engine_a, feed)?;
    ready(&engine_b, feed)?;
    let table_a = a.table::<Item>().wait()?;
    let table_b = b.table::<Item>().wait()?;

    let mut watch = table_b.watch_all();
    let (tx, rx) = std::sync::mpsc::channel::<(Vec<String>, Instant)>();
    let watcher = std::thread::spawn(move || {
        while let Some(Ok(items)) = watch.wait_next() {
            let ids = items.into_iter().map(|i| i.id).collect();
            if tx.send((ids, Instant::now())).is_err() {
                break;
            }
        }
    });
    let cpu = process_cpu();
    let mut started: HashMap<String, Instant> = HashMap::new();
    let mut arrived: HashMap<String, Duration> = HashMap::new();
    let mut gap = 0x2545_F491_4F6C_DD1D_u64;
    for i in 0..writes {
        let item =
            Item { id: format!("e-{i:05}"), title: format!("written {i}"), rank: i as i64, done: false, version: None };
        started.insert(item.id.clone(), Instant::now());
        table_a.insert(item).wait()?;
        // 0 to 100 ms to the next write (xorshift: the same gaps every run).
        gap ^= gap << 13;
        gap ^= gap >> 7;
        gap ^= gap << 17;
        std::thread::sleep(Duration::from_millis(gap % 100));
        note_arrivals(&rx, &started, &mut arrived, Duration::ZERO);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while arrived.len() < writes && Instant::now() < deadline {
        note_arrivals(&rx, &started, &mut arrived, Duration::from_millis(200));
    }
    let spent = cpu.elapsed();
    if arrived.len() < writes {
        return Err(format!("{name}: {} of {writes} writes never reached device B", writes - arrived.len()).into());
    }
    drop(rx);
    rt.block_on(async {
        engine_a.stop().await?;
        engine_b.stop().await?;
        Ok::<_, sync_runtime::Error>(())
    })?;
    a.close().wait()?;
    b.close().wait()?;
    let _ = watcher.join();
    rt.block_on(server_a.stop())?;
    if let Some(server) = server_b {
        rt.block_on(server.stop())?;
    }

    let times: Vec<Duration> = arrived.into_values().collect();
    let p50 = percentile(&times, 0.5);
    let p99 = percentile(&times, 0.99);
    let per = spent / u32::try_from(writes.max(1)).unwrap_or(u32::MAX);
    let (against, how) = match via {
        Via::Polling => (Duration::from_secs(1), "B polling every second".to_owned()),
        Via::Feed => (Duration::from_millis(100), format!("through the change feed, server on {}", db.label())),
    };
    let rounds = Rounds { ours: vec![p99], raw: vec![against], ours_cpu: vec![per], raw_cpu: vec![per] };
    Ok(Figure::new(name, 1, "calls", feed.then_some(1.0), rounds)
        .sides("p99 commit on A to watch on B", if feed { "100 ms" } else { "polling interval" })
        .with(
            "p50",
            format!("{} (p99 {}), {writes} writes, {how}, A's push debounce 25 ms", ms(p50), ms(p99)),
            serde_json::json!({"p50_secs": p50.as_secs_f64(), "p99_secs": p99.as_secs_f64(), "writes": writes}),
        ))
}

fn note_arrivals(
    rx: &std::sync::mpsc::Receiver<(Vec<String>, Instant)>,
    started: &HashMap<String, Instant>,
    arrived: &mut HashMap<String, Duration>,
    wait: Duration,
) {
    let mut next = if wait.is_zero() { rx.try_recv().ok() } else { rx.recv_timeout(wait).ok() };
    while let Some((ids, at)) = next {
        for id in ids {
            if let Some(start) = started.get(&id) {
                arrived.entry(id).or_insert_with(|| at.duration_since(*start));
            }
        }
        next = rx.try_recv().ok();
    }
}

/// `engine_idle`: an engine with nothing to do (synced, following the change feed,
/// polling every 30 s, its server in the same process) for `seconds`: the process's
/// CPU time, against 10 ms.
pub fn idle(rt: &Runtime, dir: &Path, seconds: u64) -> Res<Figure> {
    let db = Db::Sqlite(dir.join("engine-idle-server.db"));
    let server = rt.block_on(BenchServer::start(&db))?;
    let (store, engine) = device(rt, dir, "engine-idle", &server.url(), Duration::from_secs(30), true)?;
    ready(&engine, true)?;
    std::thread::sleep(Duration::from_millis(300));
    let cpu = process_cpu();
    std::thread::sleep(Duration::from_secs(seconds));
    let spent = cpu.elapsed();
    let feed = engine.status().feed;
    rt.block_on(engine.stop())?;
    store.close().wait()?;
    rt.block_on(server.stop())?;
    Ok(Figure::idle("engine_idle", spent, seconds).with(
        "engine",
        format!("one engine, synced, following the feed: {feed}, {seconds} s (server in the process)"),
        serde_json::json!({"secs": seconds, "feed": feed}),
    ))
}
