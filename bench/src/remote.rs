//! Remote scenarios: `SyncClient::pull` / `push` against a `sync-server` on 127.0.0.1
//! (SQLite file, protocol v3), vs raw loops of reqwest + serde_json + rusqlite against
//! the same server.

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

/// A `sync-server` serving `Item` from a SQLite file, on 127.0.0.1, in the bench's
/// runtime.
#[derive(Debug)]
pub struct BenchServer {
    handle: ServerHandle,
}

impl BenchServer {
    async fn build(db: &Path) -> Res<Server> {
        Ok(Server::builder()
            .table::<Item>()
            .database(format!("sqlite:{}", db.display()).parse()?)
            .page_size(u64::from(PAGE))
            .max_top(u64::from(PAGE))
            .build()
            .await?)
    }

    /// Starts a server on a new port.
    pub async fn start(db: &Path) -> Res<BenchServer> {
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

/// Writes `n` live rows straight into a server database file (much faster than
/// pushing them): the server creates its tables first, then the rows go in with one
/// `updatedAt` millisecond each, and the server's clock row is moved past the last.
pub fn seed_server(rt: &Runtime, db: &Path, n: usize) -> Res<()> {
    rt.block_on(async {
        let server = BenchServer::build(db).await?;
        server.close().await;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    let mut conn = model::open_raw(db)?;
    let tx = conn.transaction()?;
    let start = time::OffsetDateTime::now_utc() - Duration::from_secs(24 * 3600);
    let mut last = (String::new(), String::new());
    {
        let mut stmt = tx.prepare(
            "INSERT INTO \"BenchItem\" (\"id\", \"title\", \"rank\", \"done\", \"version\", \"updatedAt\", \
             \"createdAt\", \"deleted\") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 0)",
        )?;
        for i in 0..n {
            let item = Item::nth("s", i, n);
            let at = sync_runtime::datetime::format(start + Duration::from_millis(i as u64));
            stmt.execute(params![item.id, item.title, item.rank, item.done, format!("{i:032x}"), at])?;
            last = (at, item.id);
        }
    }
    tx.execute(
        "INSERT OR REPLACE INTO \"__sync_server_clock\" (\"tbl\", \"updatedAt\", \"id\") VALUES (?1, ?2, ?3)",
        params![TABLE, last.0, last.1],
    )?;
    tx.commit()?;
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
pub fn pull(rt: &Runtime, dir: &Path, rounds: usize, rows: usize, name: &str, target: Option<f64>) -> Res<Figure> {
    let server_db = dir.join(format!("{name}-server.db"));
    seed_server(rt, &server_db, rows)?;
    let server = rt.block_on(BenchServer::start(&server_db))?;
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
    remove_db(&server_db);
    let mib = |kib: u64| kib as f64 / 1024.0;
    Ok(Figure::new(name, rows as u64, "rows", target, times).with(
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
pub fn push(rt: &Runtime, dir: &Path, rounds: usize, ops: usize) -> Res<Figure> {
    let server_db = dir.join("push-server.db");
    let server = rt.block_on(BenchServer::start(&server_db))?;
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
    let figure = Figure::new("push", ops as u64, "ops", Some(0.8), times);
    let (ours, raw) =
        (Figure::micros_per_unit(figure.work, figure.ours), Figure::micros_per_unit(figure.work, figure.raw));
    Ok(figure.with(
        "per op",
        format!("ours {ours:.0} us, raw {raw:.0} us; a local commit {commit:.0} us, a store call {call:.0} us"),
        serde_json::json!({"ours_us": ours, "raw_us": raw, "commit_us": commit, "store_call_us": call}),
    ))
}

/// What a push pays locally per operation besides its request, measured on this
/// machine: one small write transaction (a one-row `UPDATE` and its commit, raw, with
/// the store's pragmas), and one trip to the store thread and back (`Store::next_op`).
/// A push makes one store call and one commit per operation: the server's copy and the
/// removal of one operation commit together with the attempted mark of the next.
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
