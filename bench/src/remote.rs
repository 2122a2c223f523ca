//! Remote scenarios: `SyncClient::pull` / `push` against a `sync-server` on 127.0.0.1
//! (protocol v3; on a SQLite file, and on PostgreSQL when the bench is given one), vs
//! raw loops of reqwest + serde_json + rusqlite against the same server.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::params;
use sync_runtime::{ProtocolVersion, Query, Store, SyncClient};
use sync_server::{Server, ServerHandle};
use tokio::runtime::Runtime;

use crate::measure::{Figure, alternate, peak_rss_growth};
use crate::model::{self, Item, TABLE};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Rows per pull page, on both sides and as the server's cap.
pub const PAGE: u32 = 1000;

/// Where a bench server keeps its rows.
#[derive(Clone, Debug)]
pub enum Db {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database, through a URL that selects the schema.
    Postgres(String),
}

impl Db {
    /// The URL a server opens it by.
    pub fn url(&self) -> String {
        match self {
            Db::Sqlite(path) => format!("sqlite:{}", path.display()),
            Db::Postgres(url) => url.clone(),
        }
    }

    /// `SQLite` or `PostgreSQL`, for the report.
    pub fn label(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "SQLite",
            Db::Postgres(_) => "PostgreSQL",
        }
    }
}

/// A schema of its own in a PostgreSQL database, dropped when this is dropped.
#[derive(Debug)]
pub struct PgSchema {
    base: String,
    schema: String,
}

impl PgSchema {
    /// Creates `sync_bench_<tag>_<pid>` in the database at `base`.
    pub fn create(rt: &Runtime, base: &str, tag: &str) -> Res<PgSchema> {
        let schema = format!("sync_bench_{tag}_{}", std::process::id());
        rt.block_on(async {
            let client = pg_connect(base).await?;
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE; CREATE SCHEMA \"{schema}\""))
                .await
        })?;
        Ok(PgSchema { base: base.to_owned(), schema })
    }

    /// The server's database: this schema of the database.
    pub fn db(&self) -> Db {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        Db::Postgres(format!("{}{sep}options=-csearch_path%3D{}", self.base, self.schema))
    }

    /// Drops the schema.
    pub fn drop_schema(self, rt: &Runtime) -> Res<()> {
        rt.block_on(async {
            let client = pg_connect(&self.base).await?;
            client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema)).await
        })?;
        Ok(())
    }
}

async fn pg_connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("bench: PostgreSQL connection: {e}");
        }
    });
    Ok(client)
}

/// A `sync-server` serving `Item` on 127.0.0.1, in the bench's runtime.
#[derive(Debug)]
pub struct BenchServer {
    handle: ServerHandle,
}

impl BenchServer {
    async fn build(db: &Db) -> Res<Server> {
        Ok(Server::builder()
            .table::<Item>()
            .database(db.url().parse()?)
            .page_size(u64::from(PAGE))
            .max_top(u64::from(PAGE))
            .build()
            .await?)
    }

    /// Starts a server on a new port.
    pub async fn start(db: &Db) -> Res<BenchServer> {
        let server = BenchServer::build(db).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        Ok(BenchServer { handle: server.spawn(listener)? })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.handle.url()
    }

    /// Stops serving and closes the database.
    pub async fn stop(self) -> Res<()> {
        Ok(self.handle.shutdown().await?)
    }
}

/// Writes `n` live rows straight into a server database (much faster than pushing
/// them): the server creates its tables first, then the rows go in with one
/// `updatedAt` millisecond each, and the server's clock row is moved past the last.
pub fn seed_server(rt: &Runtime, db: &Db, n: usize) -> Res<()> {
    rt.block_on(async {
        let server = BenchServer::build(db).await?;
        server.close().await;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    let start = time::OffsetDateTime::now_utc() - Duration::from_secs(24 * 3600);
    let rows: Vec<(Item, String, String)> = (0..n)
        .map(|i| {
            let at = sync_core::datetime::format(start + Duration::from_millis(i as u64));
            (Item::nth("s", i, n), format!("{i:032x}"), at)
        })
        .collect();
    let last = rows.last().map(|(item, _, at)| (at.clone(), item.id.clone()));
    match db {
        Db::Sqlite(path) => {
            let mut conn = model::open_raw(path)?;
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare(
                    "INSERT INTO \"BenchItem\" (\"id\", \"title\", \"rank\", \"done\", \"version\", \"updatedAt\", \
                     \"createdAt\", \"deleted\") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 0)",
                )?;
                for (item, version, at) in &rows {
                    stmt.execute(params![item.id, item.title, item.rank, item.done, version, at])?;
                }
            }
            if let Some((at, id)) = last {
                tx.execute(
                    "INSERT OR REPLACE INTO \"__sync_server_clock\" (\"tbl\", \"updatedAt\", \"id\") VALUES (?1, ?2, ?3)",
                    params![TABLE, at, id],
                )?;
            }
            tx.commit()?;
        }
        Db::Postgres(url) => rt.block_on(async {
            let mut client = pg_connect(url).await?;
            let tx = client.transaction().await?;
            let column = |f: fn(&(Item, String, String)) -> String| rows.iter().map(f).collect::<Vec<String>>();
            let (ids, titles, versions, ats) = (
                column(|r| r.0.id.clone()),
                column(|r| r.0.title.clone()),
                column(|r| r.1.clone()),
                column(|r| r.2.clone()),
            );
            let ranks: Vec<i64> = rows.iter().map(|r| r.0.rank).collect();
            let dones: Vec<bool> = rows.iter().map(|r| r.0.done).collect();
            tx.execute(
                "INSERT INTO \"BenchItem\" (\"id\", \"title\", \"rank\", \"done\", \"version\", \"updatedAt\", \
                 \"createdAt\", \"deleted\") \
                 SELECT id, title, rank, done, version, at, at, FALSE \
                 FROM unnest($1::text[], $2::text[], $3::int8[], $4::bool[], $5::text[], $6::text[]) \
                 AS t(id, title, rank, done, version, at)",
                &[&ids, &titles, &ranks, &dones, &versions, &ats],
            )
            .await?;
            if let Some((at, id)) = last {
                tx.execute(
                    "UPDATE \"__sync_server_clock\" SET \"updatedAt\" = $2, \"id\" = $3 WHERE \"tbl\" = $1",
                    &[&TABLE, &at, &id],
                )
                .await?;
            }
            tx.commit().await?;
            Ok::<_, Box<dyn std::error::Error>>(())
        })?,
    }
    Ok(())
}

fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

async fn client(store: &Store, url: &str) -> Res<SyncClient> {
    Ok(SyncClient::builder(store.clone(), url)
        .protocol(ProtocolVersion::V3)
        .page_size(PAGE)
        .timeout(Duration::from_secs(120))
        .build()?)
}

/// The raw pull: the same pages as the client asks for (`(updatedAt, id)` paging, v3),
/// parsed with serde_json, upserted one page per transaction with raw rusqlite.
async fn raw_pull(http: &reqwest::Client, base: &str, conn: &mut rusqlite::Connection) -> Res<u64> {
    const UPSERT: &str = "INSERT OR REPLACE INTO \"BenchItem\" (\"id\", \"title\", \"rank\", \"done\", \
        \"version\", \"updatedAt\", \"createdAt\", \"deleted\") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
    let mut cursor: Option<(String, String)> = None;
    let mut received = 0u64;
    loop {
        let mut url = reqwest::Url::parse(&format!("{base}/tables/{TABLE}"))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some((at, id)) = &cursor {
                let at = format!("cast({at},Edm.DateTimeOffset)");
                let id = id.replace('\'', "''");
                q.append_pair("$filter", &format!("((updatedAt gt {at}) or ((updatedAt eq {at}) and (id gt '{id}')))"));
            }
            q.append_pair("$orderby", "updatedAt,id");
            q.append_pair("$top", &PAGE.to_string());
            q.append_pair("__includedeleted", "true");
        }
        let response = http
            .get(url)
            .header("ZUMO-API-VERSION", "3.0.0")
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(format!("raw pull: HTTP {}", response.status()).into());
        }
        let body = response.bytes().await?;
        let page: serde_json::Value = serde_json::from_slice(&body)?;
        let items = page.get("items").and_then(serde_json::Value::as_array).ok_or("raw pull: no items")?;
        if items.is_empty() {
            break;
        }
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(UPSERT)?;
            for item in items {
                let text = |k: &str| item.get(k).and_then(serde_json::Value::as_str);
                stmt.execute(params![
                    text("id"),
                    text("title"),
                    item.get("rank").and_then(serde_json::Value::as_i64),
                    item.get("done").and_then(serde_json::Value::as_bool),
                    text("version"),
                    text("updatedAt"),
                    text("createdAt"),
                    item.get("deleted").and_then(serde_json::Value::as_bool).unwrap_or(false),
                ])?;
            }
        }
        tx.commit()?;
        received += items.len() as u64;
        let last = items.last().ok_or("raw pull: empty page")?;
        let text = |k: &str| last.get(k).and_then(serde_json::Value::as_str).map(str::to_owned);
        cursor = Some((text("updatedAt").ok_or("no updatedAt")?, text("id").ok_or("no id")?));
        if page.get("nextLink").is_some_and(serde_json::Value::is_null) && items.len() < PAGE as usize {
            break;
        }
    }
    Ok(received)
}

/// `pull`: `rows` rows from the server into an empty store, vs the raw loop into an
/// empty file of the same schema. Also reports the peak RSS growth of one pull of each
/// side, each in a fresh process (see [`child_pull`]).
pub fn pull(
    rt: &Runtime,
    dir: &Path,
    rounds: usize,
    rows: usize,
    name: &str,
    target: Option<f64>,
    db: &Db,
) -> Res<Figure> {
    seed_server(rt, db, rows)?;
    let server = rt.block_on(BenchServer::start(db))?;
    let url = server.url();
    let http = reqwest::Client::new();
    let path = |side: &str, round: usize| -> PathBuf { dir.join(format!("{name}-{side}-{round}.db")) };

    let times = alternate(
        rounds,
        |round| {
            let path = path("ours", round);
            let t = rt.block_on(async {
                let store = Store::open(&path).await.expect("open the store");
                store.table::<Item>().await.expect("open the table");
                let client = client(&store, &url).await.expect("client");
                let started = Instant::now();
                let report = client.pull(Query::<Item>::new(), Some("bench")).await.expect("pull");
                let t = started.elapsed();
                assert_eq!((report.received, report.applied), (rows as u64, rows as u64), "{report:?}");
                store.close().await.expect("close");
                t
            });
            remove_db(&path);
            t
        },
        |round| {
            let path = path("raw", round);
            rt.block_on(model::create_store_file(&path)).expect("create the file");
            let mut conn = model::open_raw(&path).expect("open raw");
            let started = Instant::now();
            let received = rt.block_on(raw_pull(&http, &url, &mut conn)).expect("raw pull");
            let t = started.elapsed();
            assert_eq!(received, rows as u64);
            drop(conn);
            remove_db(&path);
            t
        },
    );
    let rss_ours = spawn_child_pull("ours", &url, rows)?;
    let rss_raw = spawn_child_pull("raw", &url, rows)?;
    rt.block_on(server.stop())?;
    if let Db::Sqlite(path) = db {
        remove_db(path);
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    Ok(Figure::new(name, rows as u64, "rows", target, times).with("server", db.label().into(), db.label().into()).with(
        "peak RSS growth",
        format!(
            "ours +{:.1} MiB, raw +{:.1} MiB (one pull of {rows} rows in a fresh process)",
            mib(rss_ours),
            mib(rss_raw)
        ),
        serde_json::json!({"ours_kib": rss_ours, "raw_kib": rss_raw, "rows": rows}),
    ))
}

/// The argument that makes the bench binary run [`child_pull`] and exit.
pub const CHILD_PULL: &str = "--child-pull";

/// Runs this binary again as `--child-pull <side> <url> <rows>` and returns the peak
/// RSS growth (KiB) it reports.
fn spawn_child_pull(side: &str, url: &str, rows: usize) -> Res<u64> {
    let out = std::process::Command::new(std::env::current_exe()?)
        .args([CHILD_PULL, side, url, &rows.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("the {side} pull process failed: {}", out.status).into());
    }
    let text = String::from_utf8(out.stdout)?;
    let kib = text.trim().lines().last().and_then(|l| l.trim().parse().ok());
    kib.ok_or_else(|| format!("the {side} pull process printed `{text}`").into())
}

/// One pull of `rows` rows (`side` is `ours` or `raw`) into an empty file, in this
/// (fresh) process; returns how far the peak RSS rose above the RSS just before the
/// pull started, in KiB. A process of its own, because an allocator keeps what a
/// process freed: earlier scenarios would hide a pull's growth in their freed memory.
pub fn child_pull(side: &str, url: &str, rows: usize) -> Res<u64> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("pull.db");
    let received = match side {
        "ours" => rt.block_on(async {
            let store = Store::open(&path).await?;
            store.table::<Item>().await?;
            let client = client(&store, url).await?;
            let (report, growth) = peak_rss_growth(client.pull(Query::<Item>::new(), Some("bench"))).await;
            store.close().await?;
            Ok::<_, Box<dyn std::error::Error>>((report?.received, growth))
        })?,
        "raw" => {
            rt.block_on(model::create_store_file(&path))?;
            let mut conn = model::open_raw(&path)?;
            let http = reqwest::Client::new();
            let (received, growth) = rt.block_on(peak_rss_growth(raw_pull(&http, url, &mut conn)));
            (received?, growth)
        }
        other => return Err(format!("unknown side `{other}`").into()),
    };
    let (received, growth) = received;
    if received != rows as u64 {
        return Err(format!("{side}: pulled {received} rows, expected {rows}").into());
    }
    growth.ok_or_else(|| "no /proc/self/status here".into())
}

/// `push`: `ops` queued inserts pushed by `SyncClient::push`, vs a raw sequential loop
/// POSTing the same items (each answer read and checked).
pub fn push(rt: &Runtime, dir: &Path, rounds: usize, ops: usize, name: &str, db: &Db) -> Res<Figure> {
    let server = rt.block_on(BenchServer::start(db))?;
    let url = server.url();
    let http = reqwest::Client::new();

    let times = alternate(
        rounds,
        |round| {
            let path = dir.join(format!("push-ours-{round}.db"));
            let t = rt.block_on(async {
                let store = Store::open(&path).await.expect("open the store");
                let table = store.table::<Item>().await.expect("open the table");
                table.insert_many(Item::many(&format!("o{round}"), ops)).await.expect("queue");
                let client = client(&store, &url).await.expect("client");
                let started = Instant::now();
                let report = client.push().await.expect("push");
                let t = started.elapsed();
                assert_eq!((report.pushed, report.errors, report.is_complete()), (ops as u64, 0, true), "{report:?}");
                store.close().await.expect("close");
                t
            });
            remove_db(&path);
            t
        },
        |round| {
            let items = Item::many(&format!("r{round}"), ops);
            let endpoint = format!("{url}/tables/{TABLE}");
            rt.block_on(async {
                let started = Instant::now();
                for item in &items {
                    let body = serde_json::json!({
                        "id": item.id,
                        "title": item.title,
                        "rank": item.rank,
                        "done": item.done,
                    });
                    let response = http
                        .post(&endpoint)
                        .header("ZUMO-API-VERSION", "3.0.0")
                        .header(reqwest::header::ACCEPT, "application/json")
                        .json(&body)
                        .send()
                        .await
                        .expect("raw post");
                    let status = response.status();
                    let body = response.bytes().await.expect("raw answer");
                    assert_eq!(status.as_u16(), 201, "{}", String::from_utf8_lossy(&body));
                }
                started.elapsed()
            })
        },
    );
    rt.block_on(server.stop())?;
    let (commit, call) = local_costs(rt, dir)?;
    let figure =
        Figure::new(name, ops as u64, "ops", Some(0.8), times).with("server", db.label().into(), db.label().into());
    let (ours, raw) =
        (Figure::micros_per_unit(figure.work, figure.ours), Figure::micros_per_unit(figure.work, figure.raw));
    Ok(figure.with(
        "per op",
        format!("ours {ours:.0} us, raw {raw:.0} us; a local commit {commit:.0} us, a store call {call:.0} us"),
        serde_json::json!({"ours_us": ours, "raw_us": raw, "commit_us": commit, "store_call_us": call}),
    ))
}

/// Reference costs of local work on this machine, printed beside the push figures: one
/// small write transaction (a one-row `UPDATE` and its commit, raw, with the store's
/// pragmas), and one trip to the store thread and back (`Store::next_op`). A push makes
/// one store call and one commit per batch of up to 16 operations: the server's copies
/// and the removal of the operations answered since the last one commit together with
/// the attempted marks of the next batch.
fn local_costs(rt: &Runtime, dir: &Path) -> Res<(f64, f64)> {
    const N: u32 = 500;
    let path = dir.join("local-costs.db");
    let store = rt.block_on(async {
        let store = Store::open(&path).await?;
        store.table::<Item>().await?.insert(Item::nth("c", 0, 1)).await?;
        Ok::<_, sync_runtime::Error>(store)
    })?;
    let mut conn = model::open_raw(&path)?;
    let started = Instant::now();
    for _ in 0..N {
        let tx = conn.transaction()?;
        tx.execute("UPDATE \"__sync_operations\" SET attempts = attempts + 1", [])?;
        tx.commit()?;
    }
    let commit = started.elapsed().as_secs_f64() * 1e6 / f64::from(N);
    drop(conn);
    let call = rt.block_on(async {
        let started = Instant::now();
        for _ in 0..N {
            std::hint::black_box(store.next_op().await?);
        }
        let call = started.elapsed().as_secs_f64() * 1e6 / f64::from(N);
        store.close().await?;
        Ok::<_, sync_runtime::Error>(call)
    })?;
    remove_db(&path);
    Ok((commit, call))
}

/// `query_during_pull`: `readers` threads querying a `rows`-row table (the `query`
/// scenario's filter, through the blocking API: reads run on each reader's thread) while
/// a pull of `rows` rows writes into the same store, against the same readers with no
/// writer. The figure compares the readers' 99th percentile latency alone (the "raw"
/// side) with the same under the pull: the ratio is alone / during, so 0.5 is "twice
/// as slow under the pull" (the target). CPU is the whole process's (the pull's
/// included) per query.
pub fn query_during_pull(rt: &Runtime, dir: &Path, rows: usize, readers: usize, db: &Db) -> Res<Figure> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    seed_server(rt, db, rows)?;
    let server = rt.block_on(BenchServer::start(db))?;
    let path = dir.join("query-during-pull.db");
    let store = Store::open(&path).wait()?;
    let table = store.table::<Item>().wait()?;
    let mut seed = model::open_raw(&path)?;
    model::seed_rows_unqueued(&mut seed, &Item::many("q", rows))?;
    drop(seed);

    let n = rows as i64;
    // Reader `r` runs queries until `stop`, at least `min` of them; their latencies.
    let run_readers = |stop: Arc<AtomicBool>, min: usize| -> Vec<Duration> {
        let handles: Vec<_> = (0..readers)
            .map(|r| {
                let (table, stop) = (table.clone(), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut times = Vec::new();
                    let mut rep = r;
                    while times.len() < min || !stop.load(Ordering::Acquire) {
                        let bound = 200 + (rep as i64 * 7_919) % (n - 200).max(1);
                        let started = Instant::now();
                        let items = table.fetch(&crate::local::open_items_below(bound)).wait().expect("query");
                        times.push(started.elapsed());
                        std::hint::black_box(items);
                        rep += readers;
                    }
                    times
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    };

    // Alone: a fixed number of queries each.
    let cpu = crate::measure::process_cpu();
    let started = Instant::now();
    let alone = run_readers(Arc::new(AtomicBool::new(true)), 400);
    let (alone_wall, alone_cpu) = (started.elapsed(), cpu.elapsed());

    // During a pull of every server row into the same store.
    let stop = Arc::new(AtomicBool::new(false));
    let client = rt.block_on(client(&store, &server.url()))?;
    let cpu = crate::measure::process_cpu();
    let started = Instant::now();
    let pulling = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let report = client.pull(Query::<Item>::new(), Some("all")).wait();
            stop.store(true, Ordering::Release);
            report
        })
    };
    let during = run_readers(Arc::clone(&stop), 50);
    let pulled = pulling.join().map_err(|_| "the pull panicked")??;
    let (during_wall, during_cpu) = (started.elapsed(), cpu.elapsed());
    assert_eq!(pulled.received, rows as u64, "the pull brought every row");
    rt.block_on(server.stop())?;
    store.close().wait()?;

    let percentile = |times: &[Duration], p: f64| {
        let mut t = times.to_vec();
        t.sort_unstable();
        t[((t.len() as f64 - 1.0) * p).round() as usize]
    };
    let per_query_cpu = |cpu: Duration, count: usize| cpu / u32::try_from(count.max(1)).unwrap_or(u32::MAX);
    let rounds = crate::measure::Rounds {
        ours: vec![percentile(&during, 0.99)],
        raw: vec![percentile(&alone, 0.99)],
        ours_cpu: vec![per_query_cpu(during_cpu, during.len())],
        raw_cpu: vec![per_query_cpu(alone_cpu, alone.len())],
    };
    let micros = |d: Duration| format!("{:.0} us", d.as_secs_f64() * 1e6);
    Ok(Figure::new("query_during_pull", 1, "calls", Some(0.5), rounds)
        .sides("p99 during pull", "p99 alone")
        .with(
            "p50",
            format!("during {} / alone {}", micros(percentile(&during, 0.5)), micros(percentile(&alone, 0.5))),
            serde_json::json!({"during_secs": percentile(&during, 0.5).as_secs_f64(), "alone_secs": percentile(&alone, 0.5).as_secs_f64()}),
        )
        .with(
            "queries",
            format!(
                "{} during a {:.1} s pull of {rows} rows, {} alone in {:.1} s, {readers} readers",
                during.len(),
                during_wall.as_secs_f64(),
                alone.len(),
                alone_wall.as_secs_f64()
            ),
            serde_json::json!({"during": during.len(), "alone": alone.len(), "readers": readers, "rows": rows}),
        ))
}
