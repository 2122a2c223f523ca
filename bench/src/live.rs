//! Live scenarios: watched queries and the change stream, measured against the same
//! work with nobody watching (or against the write that caused a result).
//!
//! Watches are polled as an app polls them: one thread sleeps until a watch's waker
//! wakes it, then polls the woken watches (see [`Poller`]).

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::pin::pin;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sync_runtime::{Store, SyncEntity, Table, Watch};

use crate::measure::{Figure, Rounds, process_cpu};
use crate::model::{self, Item};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// The environment variable that makes the bench binary the writer child of
/// `live_latency_process` (see [`child_writer`]).
pub const CHILD_WRITER_VAR: &str = "SYNC_BENCH_LIVE_CHILD";

/// A table the watches do not read: writes to it must cost them nothing.
#[derive(SyncEntity, Clone, Debug, PartialEq)]
#[sync(table = "BenchOther")]
pub struct Other {
    /// The id.
    pub id: String,
    /// Some text.
    pub note: String,
}

/// The `p` quantile of `times` (nearest rank).
pub(crate) fn percentile(times: &[Duration], p: f64) -> Duration {
    let mut t = times.to_vec();
    t.sort_unstable();
    t[((t.len() as f64 - 1.0) * p).round() as usize]
}

/// Milliseconds, for reports.
pub(crate) fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

struct Unpark(thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Watches polled on a thread of their own, which sleeps until one of them is woken:
/// what a UI's event loop does. Each result is passed to `seen` with the watch's index.
struct Poller<T: Send + 'static> {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<Vec<Watch<T>>>,
}

impl<T: Send + 'static> Poller<T> {
    fn start(watches: Vec<Watch<T>>, mut seen: impl FnMut(usize, T) + Send + 'static) -> Poller<T> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut watches = watches;
                let waker = Waker::from(Arc::new(Unpark(thread::current())));
                let mut cx = Context::from_waker(&waker);
                while !stop.load(Ordering::Acquire) {
                    for (i, watch) in watches.iter_mut().enumerate() {
                        while let Poll::Ready(Some(result)) = pin!(watch.next()).as_mut().poll(&mut cx) {
                            seen(i, result.expect("the watch reads"));
                        }
                    }
                    thread::park();
                }
                watches
            })
        };
        Poller { stop, thread }
    }

    /// Stops polling; the watches, to read their counts.
    fn stop(self) -> Vec<Watch<T>> {
        self.stop.store(true, Ordering::Release);
        self.thread.thread().unpark();
        self.thread.join().expect("the poller")
    }
}

/// A store file with `rows` items (no queued operations), and its table.
fn seeded(dir: &Path, name: &str, rows: usize) -> Res<(Store, Table<Item>)> {
    let path = dir.join(format!("{name}.db"));
    let store = Store::open(&path).wait()?;
    let table = store.table::<Item>().wait()?;
    if rows > 0 {
        let mut seed = model::open_raw(&path)?;
        model::seed_rows_unqueued(&mut seed, &Item::many(name, rows))?;
    }
    Ok((store, table))
}

/// An item ranked above every seeded one: it goes to the top of a watch ordered by
/// rank, descending.
fn top_item(prefix: &str, i: usize) -> Item {
    Item {
        id: format!("{prefix}-{i:06}"),
        title: format!("written {i}"),
        rank: 1_000_000_000 + i as i64,
        done: false,
        version: None,
    }
}

/// `live_latency`: `writes` inserts, each into the result of a watched query; the time
/// from the start of the write call to the watch yielding the new result, against the
/// write call's own time. One write at a time (the next after the yield).
pub fn latency(dir: &Path, writes: usize) -> Res<Figure> {
    let (store, table) = seeded(dir, "live-latency", 1_000)?;
    let (tx, rx) = mpsc::channel::<(i64, Instant)>();
    let watch = table.query().filter(Item::FIELDS.done.eq(false)).order_by(Item::FIELDS.rank.desc()).limit(20).watch();
    let poller = Poller::start(vec![watch], move |_, items: Vec<Item>| {
        let top = items.first().map_or(-1, |i| i.rank);
        let _ = tx.send((top, Instant::now()));
    });
    rx.recv_timeout(Duration::from_secs(10))?; // the first result
    let cpu = process_cpu();
    let (mut yields, mut calls) = (Vec::with_capacity(writes), Vec::with_capacity(writes));
    for i in 0..writes {
        let item = top_item("w", i);
        let rank = item.rank;
        let started = Instant::now();
        table.insert(item).wait()?;
        calls.push(started.elapsed());
        loop {
            let (top, at) = rx.recv_timeout(Duration::from_secs(10))?;
            if top == rank {
                yields.push(at.duration_since(started));
                break;
            }
        }
    }
    let spent = cpu.elapsed();
    let watches = poller.stop();
    let reads = watches[0].reads();
    store.close().wait()?;
    let per = |d: Duration| d / u32::try_from(writes.max(1)).unwrap_or(u32::MAX);
    let rounds = Rounds {
        ours: vec![percentile(&yields, 0.99)],
        raw: vec![percentile(&calls, 0.99)],
        ours_cpu: vec![per(spent)],
        raw_cpu: vec![per(spent)],
    };
    Ok(Figure::new("live_latency", 1, "calls", None, rounds)
        .sides("p99 write to yield", "p99 write call")
        .with(
            "p50",
            format!("write to yield {} / write call {}", ms(percentile(&yields, 0.5)), ms(percentile(&calls, 0.5))),
            serde_json::json!({"yield_secs": percentile(&yields, 0.5).as_secs_f64(), "call_secs": percentile(&calls, 0.5).as_secs_f64()}),
        )
        .with("writes", format!("{writes}, {reads} reads of the watch"), serde_json::json!({"writes": writes, "reads": reads})))
}

/// `live_latency_process`: another process writes the store file (`writes` inserts,
/// one at a time); the time from just before its write to this process's watch
/// yielding it (wall clocks of one machine), against the 250 ms the issue allows.
pub fn latency_across_processes(dir: &Path, writes: usize) -> Res<Figure> {
    let (store, table) = seeded(dir, "live-process", 1_000)?;
    let path = store.path().expect("a file").to_path_buf();
    let (tx, rx) = mpsc::channel::<(i64, SystemTime)>();
    let poller = Poller::start(
        vec![table.query().filter(Item::FIELDS.done.eq(false)).order_by(Item::FIELDS.rank.desc()).limit(20).watch()],
        move |_, items: Vec<Item>| {
            let _ = tx.send((items.first().map_or(-1, |i| i.rank), SystemTime::now()));
        },
    );
    rx.recv_timeout(Duration::from_secs(10))?;
    let mut child = Command::new(std::env::current_exe()?)
        .env(CHILD_WRITER_VAR, &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut to_child = child.stdin.take().ok_or("no stdin")?;
    let mut from_child = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let cpu = process_cpu();
    let mut latencies = Vec::with_capacity(writes);
    for i in 0..writes {
        writeln!(to_child, "{i}")?;
        to_child.flush()?;
        let mut line = String::new();
        from_child.read_line(&mut line)?;
        let before: u128 = line.trim().parse()?;
        let rank = top_item("p", i).rank;
        loop {
            let (top, at) = rx.recv_timeout(Duration::from_secs(10))?;
            if top == rank {
                let at = at.duration_since(UNIX_EPOCH)?.as_nanos();
                latencies.push(Duration::from_nanos(u64::try_from(at.saturating_sub(before)).unwrap_or(u64::MAX)));
                break;
            }
        }
    }
    let spent = cpu.elapsed();
    drop(to_child);
    child.wait()?;
    let watches = poller.stop();
    let reads = watches[0].reads();
    store.close().wait()?;
    let budget = Duration::from_millis(250);
    let per = spent / u32::try_from(writes.max(1)).unwrap_or(u32::MAX);
    let rounds =
        Rounds { ours: vec![percentile(&latencies, 0.99)], raw: vec![budget], ours_cpu: vec![per], raw_cpu: vec![per] };
    Ok(Figure::new("live_latency_process", 1, "calls", Some(1.0), rounds)
        .sides("p99 other process's write to yield", "budget")
        .with(
            "p50",
            ms(percentile(&latencies, 0.5)),
            serde_json::json!({"p50_secs": percentile(&latencies, 0.5).as_secs_f64()}),
        )
        .with(
            "writes",
            format!("{writes}, {reads} reads of the watch"),
            serde_json::json!({"writes": writes, "reads": reads}),
        ))
}

/// The child of [`latency_across_processes`]: opens the store at `path`, then for each
/// line on stdin prints the wall clock (ns since the epoch) and inserts the next item.
pub fn child_writer(path: &str) -> Res<()> {
    let store = Store::open(path).wait()?;
    let table = store.table::<Item>().wait()?;
    let stdout = std::io::stdout();
    for (i, line) in std::io::stdin().lock().lines().enumerate() {
        line?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
        let mut out = stdout.lock();
        writeln!(out, "{now}")?;
        out.flush()?;
        table.insert(top_item("p", i)).wait()?;
    }
    store.close().wait()?;
    Ok(())
}

/// `live_unrelated_write`: single inserts into another table while `watchers` watches
/// of the item table are open and polled, against the same inserts with none open.
/// No watch may read again.
pub fn unrelated_write(dir: &Path, rounds: usize, writes: usize, watchers: usize) -> Res<Figure> {
    let (store, table) = seeded(dir, "live-unrelated", 10_000)?;
    let others = store.table::<Other>().wait()?;
    let watches: Vec<Watch<Vec<Item>>> =
        (0..watchers).map(|i| table.query().filter(Item::FIELDS.rank.lt(100 + i as i64)).limit(10).watch()).collect();
    let yields = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&yields);
    let poller = Poller::start(watches, move |_, _| {
        counted.fetch_add(1, Ordering::Relaxed);
    });
    while yields.load(Ordering::Relaxed) < watchers as u64 {
        thread::sleep(Duration::from_millis(1));
    }
    // The same store, with and without the watches: a second store with none.
    let (quiet, _) = seeded(dir, "live-unrelated-quiet", 10_000)?;
    let quiet_others = quiet.table::<Other>().wait()?;
    let n = std::cell::Cell::new(0usize);
    let write = |t: &Table<Other>| {
        let started = Instant::now();
        for _ in 0..writes {
            n.set(n.get() + 1);
            t.insert(Other { id: format!("o{}", n.get()), note: "x".into() }).wait().expect("insert");
        }
        started.elapsed()
    };
    let all = crate::measure::alternate(rounds, |_| write(&others), |_| write(&quiet_others));
    let watches = poller.stop();
    let reads: u64 = watches.iter().map(Watch::reads).sum();
    drop(watches);
    store.close().wait()?;
    quiet.close().wait()?;
    Ok(Figure::new("live_unrelated_write", writes as u64, "calls", Some(0.9), all)
        .sides(if watchers == 100 { "with 100 watches" } else { "with watches" }, "with none")
        .with(
            "re-reads",
            format!("{} by {watchers} watches (one first read each)", reads - watchers as u64),
            serde_json::json!({"rereads": reads - watchers as u64, "watchers": watchers}),
        ))
}

/// `live_requery`: `watchers` watches of a `rows`-row table (the `query` scenario's
/// filter, 100 rows each) polled while single inserts go into the same table, against
/// the same inserts with none. Each commit makes every watch read again; a result that
/// did not change is not yielded.
pub fn requery(dir: &Path, rounds: usize, writes: usize, rows: usize, watchers: usize) -> Res<Figure> {
    let (store, table) = seeded(dir, "live-requery", rows)?;
    let n = rows as i64;
    let watches: Vec<Watch<Vec<Item>>> = (0..watchers)
        .map(|i| {
            let bound = 200 + (i as i64 * 7_919) % (n - 200).max(1);
            table
                .query()
                .filter(Item::FIELDS.done.eq(false) & Item::FIELDS.rank.lt(bound))
                .order_by(Item::FIELDS.rank.desc())
                .limit(100)
                .watch()
        })
        .collect();
    let yields = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&yields);
    let poller = Poller::start(watches, move |_, _| {
        counted.fetch_add(1, Ordering::Relaxed);
    });
    while yields.load(Ordering::Relaxed) < watchers as u64 {
        thread::sleep(Duration::from_millis(1));
    }
    let (quiet, quiet_table) = seeded(dir, "live-requery-quiet", rows)?;
    // New items land among the watched ranks now and then (rank is scrambled).
    let k = std::cell::Cell::new(0usize);
    let write = |t: &Table<Item>| {
        let started = Instant::now();
        for _ in 0..writes {
            k.set(k.get() + 1);
            let k = k.get();
            let mut item = Item::nth("r", k, rows);
            item.id = format!("new-{k}");
            t.insert(item).wait().expect("insert");
        }
        started.elapsed()
    };
    let all = crate::measure::alternate(rounds, |_| write(&table), |_| write(&quiet_table));
    let watches = poller.stop();
    let reads: u64 = watches.iter().map(Watch::reads).sum();
    let yielded = yields.load(Ordering::Relaxed);
    drop(watches);
    store.close().wait()?;
    quiet.close().wait()?;
    let total_writes = (writes * (rounds + 1)) as u64;
    Ok(Figure::new("live_requery", writes as u64, "calls", None, all)
        .sides(if watchers == 10 { "with 10 watches" } else { "with watches" }, "with none")
        .with(
            "reads",
            format!("{reads} reads and {yielded} results for {total_writes} writes, {watchers} watches of {rows} rows"),
            serde_json::json!({"reads": reads, "yields": yielded, "writes": total_writes, "watchers": watchers, "rows": rows}),
        ))
}

/// `live_idle`: a store file with `watchers` open, polled watches and nothing written
/// for `seconds`: the process's CPU time, against a budget of 10 ms.
pub fn idle(dir: &Path, seconds: u64, watchers: usize) -> Res<Figure> {
    let (store, table) = seeded(dir, "live-idle", 1_000)?;
    let watches: Vec<Watch<Vec<Item>>> = (0..watchers).map(|_| table.query().limit(10).watch()).collect();
    let yields = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&yields);
    let poller = Poller::start(watches, move |_, _| {
        counted.fetch_add(1, Ordering::Relaxed);
    });
    while yields.load(Ordering::Relaxed) < watchers as u64 {
        thread::sleep(Duration::from_millis(1));
    }
    thread::sleep(Duration::from_millis(300));
    let cpu = process_cpu();
    thread::sleep(Duration::from_secs(seconds));
    let spent = cpu.elapsed();
    let watches = poller.stop();
    let reads: u64 = watches.iter().map(Watch::reads).sum();
    drop(watches);
    store.close().wait()?;
    Ok(Figure::idle("live_idle", spent, seconds).with(
        "watches",
        format!("{watchers} open, {reads} reads in all, {seconds} s"),
        serde_json::json!({"watchers": watchers, "reads": reads, "secs": seconds}),
    ))
}
