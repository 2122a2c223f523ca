//! `feed_subscribers`: what the change feed costs a server (issue 18). Rounds alternate
//! between HTTP writers with `n` subscribers of the written table held open (each
//! nudged by every write) and the same writers with none; the figure compares their
//! throughput and, as extras, their p99 latency per write (target: within 2x) and the
//! process's RSS growth per idle subscriber.
//!
//! The subscribers are raw sockets in this process (one small task each, reading and
//! discarding what comes), so their share of RSS and CPU is counted with the server's:
//! a task and a 256-byte buffer each.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sync_server::Server;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

use crate::measure::{Figure, alternate, status_kib};
use crate::model::Item;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Concurrent writers.
const WRITERS: usize = 8;

fn percentile(times: &[Duration], p: f64) -> Duration {
    let mut t = times.to_vec();
    t.sort_unstable();
    t.get(((t.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Subscribers held open: their tasks, and how many heard a change.
struct Held {
    tasks: JoinSet<()>,
    nudged: Arc<AtomicUsize>,
}

/// Opens `n` subscribers of every table and waits until each has its `ready` event.
async fn hold(addr: SocketAddr, n: usize) -> Res<Held> {
    let nudged = Arc::new(AtomicUsize::new(0));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(n.max(1));
    let mut tasks = JoinSet::new();
    for _ in 0..n {
        let (ready, nudged) = (ready_tx.clone(), Arc::clone(&nudged));
        tasks.spawn(async move {
            let Ok(mut socket) = tokio::net::TcpStream::connect(addr).await else { return };
            if socket.write_all(b"GET /feed HTTP/1.1\r\nhost: bench\r\n\r\n").await.is_err() {
                return;
            }
            let mut seen = Vec::new();
            let mut buffer = [0u8; 256];
            let (mut is_ready, mut is_nudged) = (false, false);
            while let Ok(read) = socket.read(&mut buffer).await {
                if read == 0 {
                    return;
                }
                if is_nudged {
                    continue;
                }
                // Only the text since the last event matters; keep it short.
                seen.extend_from_slice(&buffer[..read]);
                let text = String::from_utf8_lossy(&seen);
                if !is_ready && text.contains("event: ready") {
                    is_ready = true;
                    let _ = ready.send(()).await;
                }
                if is_ready && text.contains("event: change") {
                    is_nudged = true;
                    nudged.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(end) = text.rfind("\n\n") {
                    seen.drain(..end);
                }
            }
        });
    }
    drop(ready_tx);
    for _ in 0..n {
        ready_rx.recv().await.ok_or("a subscriber did not get its ready event")?;
    }
    Ok(Held { tasks, nudged })
}

/// `writes` inserts by [`WRITERS`] concurrent writers: the wall time, and each
/// write's latency.
async fn write_burst(url: &str, writes: usize, tag: usize) -> Res<(Duration, Vec<Duration>)> {
    let http = reqwest::Client::new();
    let start = Instant::now();
    let mut writers = JoinSet::new();
    for w in 0..WRITERS {
        let (http, url) = (http.clone(), format!("{url}/tables/BenchItem"));
        let share = writes / WRITERS + usize::from(w < writes % WRITERS);
        writers.spawn(async move {
            let mut latencies = Vec::with_capacity(share);
            for i in 0..share {
                let body = serde_json::json!({ "title": "a title of about thirty bytes", "rank": (tag * 1_000_000 + w * 100_000 + i) as i64, "done": false });
                let sent = Instant::now();
                let response = http.post(&url).header("ZUMO-API-VERSION", "3.0.0").json(&body).send().await;
                match response {
                    Ok(r) if r.status() == 201 => latencies.push(sent.elapsed()),
                    Ok(r) => return Err(format!("a write answered {}", r.status())),
                    Err(e) => return Err(format!("a write failed: {e}")),
                }
            }
            Ok(latencies)
        });
    }
    let mut latencies = Vec::with_capacity(writes);
    while let Some(done) = writers.join_next().await {
        latencies.extend(done??);
    }
    Ok((start.elapsed(), latencies))
}

/// The scenario (see the module docs).
pub fn subscribers(rt: &Runtime, dir: &Path, rounds: usize, n: usize, writes: usize) -> Res<Figure> {
    let db = format!("sqlite:{}", dir.join("feed-server.db").display());
    let handle = rt.block_on(async {
        let server = Server::builder()
            .table::<Item>()
            .database(db.parse()?)
            .feed_max_subscribers(n + 16)
            .max_connections(n * 2 + 256)
            .build()
            .await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        Res::Ok(server.spawn(listener)?)
    })?;
    let (url, addr) = (handle.url(), handle.local_addr());
    let (mut with, mut without) = (Vec::new(), Vec::new());
    let mut rss_per_subscriber: Option<f64> = None;
    let mut nudged = (0, 0);
    let measured = alternate(
        rounds,
        |round| {
            rt.block_on(async {
                let before = status_kib("VmRSS");
                let mut held = hold(addr, n).await.expect("subscribers join");
                if let (Some(before), Some(after), None) = (before, status_kib("VmRSS"), rss_per_subscriber) {
                    rss_per_subscriber = Some(after.saturating_sub(before) as f64 * 1024.0 / n.max(1) as f64);
                }
                let (wall, latencies) = write_burst(&url, writes, 2 * round).await.expect("writes");
                // Every subscriber hears (bounded: a missing nudge shows in the figure).
                let deadline = Instant::now() + Duration::from_secs(30);
                while held.nudged.load(Ordering::Relaxed) < n && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                nudged = (held.nudged.load(Ordering::Relaxed), n);
                held.tasks.abort_all();
                while held.tasks.join_next().await.is_some() {}
                if round > 0 {
                    with.extend(latencies);
                }
                wall
            })
        },
        |round| {
            rt.block_on(async {
                let (wall, latencies) = write_burst(&url, writes, 2 * round + 1).await.expect("writes");
                if round > 0 {
                    without.extend(latencies);
                }
                wall
            })
        },
    );
    rt.block_on(handle.shutdown())?;
    let (p99_with, p99_without) = (percentile(&with, 0.99), percentile(&without, 0.99));
    let (p50_with, p50_without) = (percentile(&with, 0.5), percentile(&without, 0.5));
    let p99_ratio = p99_with.as_secs_f64() / p99_without.as_secs_f64().max(1e-9);
    let figure = Figure::new("feed_subscribers", writes as u64, "writes", Some(0.5), measured)
        .sides("with subscribers", "without")
        .with("subscribers", format!("{n}, each nudged: {}/{}", nudged.0, nudged.1), serde_json::json!(n))
        .with(
            "latency",
            format!(
                "p50 {} vs {}, p99 {} vs {} (ratio {p99_ratio:.2}, target <= 2{})",
                ms(p50_with),
                ms(p50_without),
                ms(p99_with),
                ms(p99_without),
                if p99_ratio <= 2.0 { "" } else { " MISSED" }
            ),
            serde_json::json!({ "p99_with_ms": p99_with.as_secs_f64() * 1e3, "p99_without_ms": p99_without.as_secs_f64() * 1e3, "p99_ratio": p99_ratio }),
        )
        .with(
            "RSS per idle subscriber",
            rss_per_subscriber.map_or("unknown".into(), |b| format!("{:.1} KiB", b / 1024.0)),
            serde_json::json!(rss_per_subscriber),
        );
    Ok(figure)
}
