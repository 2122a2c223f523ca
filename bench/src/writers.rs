//! `writers_*`: N concurrent HTTP writers (1, 8, 50) against a `sync-server` on
//! PostgreSQL (DESIGN.md section 10, issue 20), vs the same statements sent raw through
//! tokio-postgres with the same concurrency, in the same process.
//!
//! Two tables: a shared one (`BenchItem`, anonymous writers) and an owned one
//! (`BenchOwned`, owner column `ownerId`, JWT-authenticated writers acting as 50
//! owners). Each writer runs a fixed, seeded plan of operations, the same on both sides:
//!
//! - 60 %: insert a new row (as a random owner, for the owned table);
//! - 30 %: update one of the writer's own rows with `If-Match` (its version known);
//! - 10 %: update a contended row with `If-Match` (one of 8 hot rows of the shared
//!   table; the hot row of a random owner of the owned table), with the last version the
//!   writer saw: a refusal (412 / no row updated) makes it learn the current version
//!   and try again, as an app resolving a conflict would.
//!
//! So every operation ends acknowledged on both sides, and a round's figure is the
//! same number of acknowledged writes. Ours: `POST` / `PUT` (v3) through a
//! `reqwest::Client` per writer. Raw: one connection per writer, autocommit `INSERT`
//! and `UPDATE .. WHERE "version" = $n` on a table laid out as the server lays it out
//! (another schema, made by the server's own `prepare`), a `SELECT` of the version after
//! a refusal. The same HTTP scenario on SQLite runs against the same raw baseline, for
//! comparison.
//!
//! Beside wall time: p50/p99 latency per acknowledged write, and CPU per write of the
//! bench process (client, and the in-process server for ours) and of the PostgreSQL
//! backends serving each side (found by `application_name`; read from
//! `/proc/<pid>/stat`, so Linux only, and only when the bench runs on the database's
//! machine).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sync_runtime::ColumnType;
use sync_server::{Auth, Server, ServerHandle, TableDef};
use tokio::runtime::Runtime;

use crate::measure::{Figure, alternate};
use crate::model::Item;
use crate::remote::{Db, PgSchema};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Writers of each run.
pub const CONCURRENCY: [usize; 3] = [1, 8, 50];
/// Owners of the owned table.
pub const OWNERS: usize = 50;
/// Contended rows of the shared table.
const HOT_ROWS: usize = 8;
/// The HS256 secret of the bench server.
const SECRET: &str = "sync-bench secret of at least 32 bytes";
/// `application_name` of the server's connections and of the raw ones (to find their
/// backends' CPU time).
const OURS_APP: &str = "sync-bench-server";
const RAW_APP: &str = "sync-bench-raw";
/// How often one operation may meet a refusal before the bench gives up.
const MAX_TRIES: usize = 1000;

/// The table a run writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `BenchItem`, every writer's rows in one table.
    Shared,
    /// `BenchOwned`, rows of 50 owners.
    Owned,
}

impl Shape {
    fn table(self) -> &'static str {
        match self {
            Shape::Shared => "BenchItem",
            Shape::Owned => "BenchOwned",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Shape::Shared => "shared",
            Shape::Owned => "owned",
        }
    }

    /// The least ratio to raw at 50 writers (DESIGN.md section 10).
    fn target(self) -> f64 {
        match self {
            Shape::Shared => 0.3,
            Shape::Owned => 0.5,
        }
    }

    fn owner_column(self) -> Option<&'static str> {
        match self {
            Shape::Shared => None,
            Shape::Owned => Some("ownerId"),
        }
    }
}

/// The owned table: the shared one's columns, keyed by owner.
fn owned_table() -> TableDef {
    TableDef::new("BenchOwned")
        .column("title", ColumnType::String, false)
        .column("rank", ColumnType::Int, false)
        .column("done", ColumnType::Bool, false)
        .owner_column("ownerId")
}

/// A row the plan writes: key and data.
#[derive(Clone, Debug)]
struct Target {
    /// The owner (owned table only).
    owner: Option<usize>,
    id: String,
}

/// One operation of a writer's plan.
#[derive(Clone, Debug)]
enum Op {
    Insert(Target),
    /// An update of a row (with the version last seen of it).
    Update(Target),
}

/// The data every write sends.
fn data(id: &str, n: u64) -> serde_json::Value {
    serde_json::json!({"id": id, "title": format!("write {n} of the writers bench"), "rank": n as i64, "done": n % 3 == 0})
}

/// The hot rows: `(owner, id)`.
fn hot_rows(shape: Shape) -> Vec<Target> {
    match shape {
        Shape::Shared => (0..HOT_ROWS).map(|k| Target { owner: None, id: format!("hot-{k}") }).collect(),
        Shape::Owned => (0..OWNERS).map(|o| Target { owner: Some(o), id: "hot".into() }).collect(),
    }
}

/// A small seeded generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// The plans of `writers` writers doing `ops` operations in all, in round `round`.
fn plans(shape: Shape, writers: usize, ops: usize, round: usize) -> Vec<Vec<Op>> {
    let hot = hot_rows(shape);
    (0..writers)
        .map(|w| {
            let mut rng = Rng(0x5717_0000 ^ ((writers as u64) << 32) ^ ((round as u64) << 16) ^ w as u64);
            let mut mine: Vec<Target> = Vec::new();
            let mut plan = Vec::new();
            for op in 0..ops.div_ceil(writers) {
                let pick = rng.below(10);
                if pick == 9 {
                    plan.push(Op::Update(hot[rng.below(hot.len())].clone()));
                } else if pick >= 6 && !mine.is_empty() {
                    plan.push(Op::Update(mine[rng.below(mine.len())].clone()));
                } else {
                    let owner = (shape == Shape::Owned).then(|| rng.below(OWNERS));
                    let target = Target { owner, id: format!("n{writers}-r{round}-w{w}-{op}") };
                    mine.push(target.clone());
                    plan.push(Op::Insert(target));
                }
            }
            plan
        })
        .collect()
}

/// What one side measured over its rounds.
#[derive(Debug, Default)]
struct Tally {
    /// Latency of every acknowledged write.
    latencies: Vec<Duration>,
    /// Refusals met (412 / no row updated) and tried again.
    refused: u64,
    /// CPU seconds of this process.
    process_cpu: f64,
    /// CPU seconds of the PostgreSQL backends serving the side, per round (`None`
    /// when unreadable).
    database_cpu: Vec<Option<f64>>,
    /// Acknowledged writes.
    writes: u64,
}

impl Tally {
    fn add(&mut self, run: Run, process_cpu: f64, database_cpu: Option<f64>) {
        self.writes += run.latencies.len() as u64;
        self.latencies.extend(run.latencies);
        self.refused += run.refused;
        self.process_cpu += process_cpu;
        self.database_cpu.push(database_cpu);
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let i = ((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1);
        sorted.get(i).copied().unwrap_or_default()
    }

    /// Microseconds of CPU per write: this process, and the database's.
    fn cpu_per_write(&self) -> (f64, Option<f64>) {
        // A reading one tick apart may come out just below zero.
        let per = |s: f64| (s * 1e6 / self.writes.max(1) as f64).max(0.0);
        let database: Option<f64> = self.database_cpu.iter().copied().sum();
        (per(self.process_cpu), database.map(per))
    }
}

/// What one round of one side did.
#[derive(Debug, Default)]
struct Run {
    latencies: Vec<Duration>,
    refused: u64,
}

impl Run {
    fn merge(runs: Vec<Run>) -> Run {
        let mut all = Run::default();
        for run in runs {
            all.latencies.extend(run.latencies);
            all.refused += run.refused;
        }
        all
    }
}

// ---- ours: HTTP -------------------------------------------------------------------

/// A bench server of one shape's table (the owned one with JWT auth).
struct WritersServer {
    handle: ServerHandle,
    tokens: Vec<String>,
}

impl WritersServer {
    async fn build(db: &Db, shape: Shape) -> Res<Server> {
        let builder = Server::builder().database(db.url().parse()?);
        let builder = match shape {
            Shape::Shared => builder.table::<Item>(),
            Shape::Owned => builder.table_def(owned_table()).auth(Auth::jwt_hs256(SECRET)?),
        };
        Ok(builder.build().await?)
    }

    async fn start(db: &Db, shape: Shape) -> Res<WritersServer> {
        let server = WritersServer::build(db, shape).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let handle = server.spawn(listener)?;
        let tokens = (0..OWNERS).map(|o| token(&format!("owner-{o}"))).collect::<Res<Vec<_>>>()?;
        Ok(WritersServer { handle, tokens })
    }
}

/// A token for `sub`, valid for a day.
fn token(sub: &str) -> Res<String> {
    let exp = time::OffsetDateTime::now_utc().unix_timestamp() + 86_400;
    let claims = serde_json::json!({ "sub": sub, "exp": exp });
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    Ok(jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), &claims, &key)?)
}

/// One writer through HTTP: runs its plan; the versions it knows are its own.
async fn http_writer(
    http: reqwest::Client,
    base: String,
    table: &'static str,
    tokens: Arc<Vec<String>>,
    plan: Vec<Op>,
) -> Res<Run> {
    let mut versions: HashMap<(Option<usize>, String), String> = HashMap::new();
    let mut run = Run::default();
    for (n, op) in plan.into_iter().enumerate() {
        let started = Instant::now();
        let (target, insert) = match op {
            Op::Insert(t) => (t, true),
            Op::Update(t) => (t, false),
        };
        let key = (target.owner, target.id.clone());
        let body = data(&target.id, n as u64);
        let mut tries = 0;
        loop {
            let mut req = match insert {
                true => http.post(format!("{base}/tables/{table}")),
                false => {
                    let version = versions.get(&key).map_or("unknown", String::as_str);
                    http.put(format!("{base}/tables/{table}/{}", target.id))
                        .header(reqwest::header::IF_MATCH, format!("\"{version}\""))
                }
            };
            req = req.header("ZUMO-API-VERSION", "3.0.0").json(&body);
            if let Some(owner) = target.owner {
                req = req.bearer_auth(&tokens[owner]);
            }
            let response = req.send().await?;
            let status = response.status().as_u16();
            let answer: serde_json::Value = response.json().await?;
            let version = answer.get("version").and_then(serde_json::Value::as_str).map(str::to_owned);
            match (status, version) {
                (200 | 201, Some(v)) => {
                    versions.insert(key, v);
                    break;
                }
                (412, Some(current)) if tries < MAX_TRIES => {
                    versions.insert(key.clone(), current);
                    run.refused += 1;
                    tries += 1;
                }
                _ => return Err(format!("{table} {}: HTTP {status}: {answer}", target.id).into()),
            }
        }
        run.latencies.push(started.elapsed());
    }
    Ok(run)
}

/// Inserts the hot rows through HTTP.
async fn seed_http(server: &WritersServer, shape: Shape) -> Res<()> {
    let http = reqwest::Client::new();
    let tokens = Arc::new(server.tokens.clone());
    let plan = hot_rows(shape).into_iter().map(Op::Insert).collect();
    http_writer(http, server.handle.url(), shape.table(), tokens, plan).await.map(drop)
}

/// One round through HTTP: `plans.len()` writers at once.
async fn http_round(server: &WritersServer, shape: Shape, plans: Vec<Vec<Op>>) -> Res<Run> {
    let tokens = Arc::new(server.tokens.clone());
    let writers: Vec<_> = plans
        .into_iter()
        .map(|plan| {
            // One client (one connection) per writer, as separate devices.
            let http = reqwest::Client::new();
            tokio::spawn(http_writer(http, server.handle.url(), shape.table(), Arc::clone(&tokens), plan))
        })
        .collect();
    let mut runs = Vec::with_capacity(writers.len());
    for writer in writers {
        runs.push(writer.await??);
    }
    Ok(Run::merge(runs))
}

// ---- raw: tokio-postgres -----------------------------------------------------------

/// The raw statements of a table, prepared on one connection.
struct RawStatements {
    insert: tokio_postgres::Statement,
    update: tokio_postgres::Statement,
    version: tokio_postgres::Statement,
}

impl RawStatements {
    async fn prepare(client: &tokio_postgres::Client, shape: Shape) -> Res<RawStatements> {
        let table = shape.table();
        let (insert, update, version) = match shape.owner_column() {
            None => (
                format!(
                    "INSERT INTO \"{table}\" (\"id\", \"title\", \"rank\", \"done\", \"version\", \"updatedAt\", \
                     \"createdAt\", \"deleted\") VALUES ($1, $2, $3, $4, $5, $6, $6, FALSE)"
                ),
                format!(
                    "UPDATE \"{table}\" SET \"title\" = $2, \"rank\" = $3, \"done\" = $4, \"version\" = $5, \
                     \"updatedAt\" = $6 WHERE \"id\" = $1 AND \"version\" = $7"
                ),
                format!("SELECT \"version\" FROM \"{table}\" WHERE \"id\" = $1"),
            ),
            Some(owner) => (
                format!(
                    "INSERT INTO \"{table}\" (\"id\", \"title\", \"rank\", \"done\", \"version\", \"updatedAt\", \
                     \"createdAt\", \"deleted\", \"{owner}\") VALUES ($1, $2, $3, $4, $5, $6, $6, FALSE, $7)"
                ),
                format!(
                    "UPDATE \"{table}\" SET \"title\" = $2, \"rank\" = $3, \"done\" = $4, \"version\" = $5, \
                     \"updatedAt\" = $6 WHERE \"id\" = $1 AND \"version\" = $7 AND \"{owner}\" = $8"
                ),
                format!("SELECT \"version\" FROM \"{table}\" WHERE \"id\" = $1 AND \"{owner}\" = $2"),
            ),
        };
        Ok(RawStatements {
            insert: client.prepare(&insert).await?,
            update: client.prepare(&update).await?,
            version: client.prepare(&version).await?,
        })
    }
}

/// A fresh version, as the server makes them: 32 hex digits.
fn new_version(rng: &mut Rng) -> String {
    format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64())
}

/// A raw writer's connection and its statements.
struct RawConnection {
    client: tokio_postgres::Client,
    statements: RawStatements,
}

/// One writer through raw statements on its own connection.
async fn raw_writer(conn: Arc<RawConnection>, plan: Vec<Op>, seed: u64) -> Res<Run> {
    use tokio_postgres::types::ToSql;
    let (client, statements) = (&conn.client, &conn.statements);
    let mut rng = Rng(seed);
    let mut versions: HashMap<(Option<usize>, String), String> = HashMap::new();
    let mut run = Run::default();
    for (n, op) in plan.into_iter().enumerate() {
        let started = Instant::now();
        let (target, insert) = match op {
            Op::Insert(t) => (t, true),
            Op::Update(t) => (t, false),
        };
        let key = (target.owner, target.id.clone());
        let body = data(&target.id, n as u64);
        let title = body["title"].as_str().unwrap_or_default().to_owned();
        let (rank, done) = (n as i64, n % 3 == 0);
        let owner = target.owner.map(|o| format!("owner-{o}"));
        let mut tries = 0;
        loop {
            let version = new_version(&mut rng);
            let now = sync_core::datetime::format(time::OffsetDateTime::now_utc());
            let old = versions.get(&key).cloned().unwrap_or_else(|| "unknown".to_owned());
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&target.id, &title, &rank, &done, &version, &now];
            if !insert {
                params.push(&old);
            }
            if let Some(o) = &owner {
                params.push(o);
            }
            let statement = if insert { &statements.insert } else { &statements.update };
            if client.execute(statement, &params).await? == 1 {
                versions.insert(key, version);
                break;
            }
            if tries >= MAX_TRIES {
                return Err(format!("raw {}: refused {tries} times", target.id).into());
            }
            // Refused: learn the current version, as the 412 answer tells ours.
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&target.id];
            if let Some(o) = &owner {
                params.push(o);
            }
            let current = client.query_one(&statements.version, &params).await?;
            versions.insert(key.clone(), current.try_get(0)?);
            run.refused += 1;
            tries += 1;
        }
        run.latencies.push(started.elapsed());
    }
    Ok(run)
}

/// A connection for the raw side with its statements for `shape`.
async fn raw_connection(url: &str, shape: Shape) -> Res<Arc<RawConnection>> {
    let client = raw_connect(url).await?;
    let statements = RawStatements::prepare(&client, shape).await?;
    Ok(Arc::new(RawConnection { client, statements }))
}

/// A connection for the raw side, named so its backend can be found.
async fn raw_connect(url: &str) -> Res<tokio_postgres::Client> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.application_name(RAW_APP);
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("bench: raw PostgreSQL connection: {e}");
        }
    });
    Ok(client)
}

/// One round through raw statements: `plans.len()` writers at once, each on a
/// connection of `connections`.
async fn raw_round(connections: &[Arc<RawConnection>], plans: Vec<Vec<Op>>, round: usize) -> Res<Run> {
    let writers: Vec<_> = plans
        .into_iter()
        .zip(connections)
        .enumerate()
        .map(|(w, (plan, conn))| tokio::spawn(raw_writer(Arc::clone(conn), plan, (round * 1000 + w) as u64)))
        .collect();
    let mut runs = Vec::with_capacity(writers.len());
    for writer in writers {
        runs.push(writer.await??);
    }
    Ok(Run::merge(runs))
}

// ---- CPU --------------------------------------------------------------------------

/// CPU seconds (user + system) of process `pid` (this one when `None`), from
/// `/proc/<pid>/stat`; `None` off Linux or when it cannot be read.
fn cpu_seconds(pid: Option<i32>) -> Option<f64> {
    // Clock ticks per second: 100 on every Linux this runs on (`getconf CLK_TCK`).
    const TICKS: f64 = 100.0;
    let path = pid.map_or_else(|| "/proc/self/stat".to_owned(), |p| format!("/proc/{p}/stat"));
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command (which may hold spaces) start at the state, field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS)
}

/// The CPU seconds so far of the PostgreSQL backends of `application_name`, by pid.
async fn backend_cpu(admin: &tokio_postgres::Client, application: &str) -> Option<HashMap<i32, f64>> {
    let rows =
        admin.query("SELECT pid FROM pg_stat_activity WHERE application_name = $1", &[&application]).await.ok()?;
    let mut cpu = HashMap::new();
    for row in rows {
        let pid: i32 = row.try_get(0).ok()?;
        cpu.insert(pid, cpu_seconds(Some(pid))?);
    }
    Some(cpu)
}

/// CPU the backends used between two readings (a backend opened in between counts
/// whole).
fn backend_cpu_used(before: Option<HashMap<i32, f64>>, after: Option<HashMap<i32, f64>>) -> Option<f64> {
    let (before, after) = (before?, after?);
    Some(after.iter().map(|(pid, t)| t - before.get(pid).copied().unwrap_or(0.0)).sum())
}

// ---- the scenario -----------------------------------------------------------------

/// Operations of one round at `writers` writers: `ops_at_50` at 50, fewer below (at
/// least 300).
fn round_ops(ops_at_50: usize, writers: usize) -> usize {
    (ops_at_50 * writers / 50).max(300)
}

/// Where the server of a run keeps its rows.
#[derive(Clone, Copy, Debug)]
pub enum ServerDb<'a> {
    /// PostgreSQL (a schema of its own of the bench's database).
    Postgres,
    /// A SQLite file in this directory.
    Sqlite(&'a Path),
}

/// `writers_<pg|sqlite>_<shape>_<n>` for both shapes and every concurrency: ours with
/// the server on `server_db`, raw on the PostgreSQL database at `base` (each in a schema
/// of its own, dropped afterwards).
pub fn writers(
    rt: &Runtime,
    rounds: usize,
    ops_at_50: usize,
    base: &str,
    server_db: ServerDb<'_>,
) -> Result<Vec<Figure>, Box<dyn std::error::Error>> {
    let mut figures = Vec::new();
    for shape in [Shape::Shared, Shape::Owned] {
        let raw_schema = PgSchema::create(rt, base, &format!("writers_raw_{}", shape.label()))?;
        let ours_schema = match server_db {
            ServerDb::Postgres => Some(PgSchema::create(rt, base, &format!("writers_ours_{}", shape.label()))?),
            ServerDb::Sqlite(_) => None,
        };
        let db = match (&ours_schema, server_db) {
            (Some(schema), _) => match schema.db() {
                Db::Postgres(url) => Db::Postgres(format!("{url}&application_name={OURS_APP}")),
                other => other,
            },
            (None, ServerDb::Sqlite(dir)) => Db::Sqlite(dir.join(format!("writers-{}.db", shape.label()))),
            (None, ServerDb::Postgres) => return Err("no schema for the server".into()),
        };
        let run = shape_run(rt, rounds, ops_at_50, shape, &db, &raw_schema.db(), base);
        raw_schema.drop_schema(rt)?;
        if let Some(schema) = ours_schema {
            schema.drop_schema(rt)?;
        }
        figures.extend(run.map_err(|e| -> Box<dyn std::error::Error> { e })?);
    }
    Ok(figures)
}

/// The figures of one shape at every concurrency.
fn shape_run(
    rt: &Runtime,
    rounds: usize,
    ops_at_50: usize,
    shape: Shape,
    db: &Db,
    raw_db: &Db,
    admin_url: &str,
) -> Res<Vec<Figure>> {
    let Db::Postgres(raw_url) = raw_db else { return Err("the raw side runs on PostgreSQL".into()) };
    let backend = match db {
        Db::Sqlite(_) => "sqlite",
        Db::Postgres(_) => "pg",
    };
    let server = rt.block_on(async {
        // The raw side's tables, laid out by the server's own `prepare`.
        WritersServer::build(raw_db, shape).await?.close().await;
        let server = WritersServer::start(db, shape).await?;
        seed_http(&server, shape).await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(server)
    })?;
    let (admin, clients) = rt.block_on(async {
        let admin = raw_connect(admin_url).await?;
        let clients = futures_all((0..50).map(|_| raw_connection(raw_url, shape))).await?;
        raw_round(&clients, vec![hot_rows(shape).into_iter().map(Op::Insert).collect()], 0).await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((admin, clients))
    })?;
    let mut figures = Vec::new();
    for writers in CONCURRENCY {
        let ops = round_ops(ops_at_50, writers);
        let (mut ours, mut raw) = (Tally::default(), Tally::default());
        let (mut ours_failed, mut raw_failed) = (None, None);
        let times = alternate(
            rounds,
            |round| {
                let plans = plans(shape, writers, ops, round);
                let (t, run, process, database) = rt.block_on(async {
                    let before = (cpu_seconds(None), backend_cpu(&admin, OURS_APP).await);
                    let started = Instant::now();
                    let run = http_round(&server, shape, plans).await;
                    let t = started.elapsed();
                    let after = (cpu_seconds(None), backend_cpu(&admin, OURS_APP).await);
                    let process = after.0.zip(before.0).map_or(0.0, |(a, b)| a - b);
                    (t, run, process, backend_cpu_used(before.1, after.1))
                });
                match run {
                    Ok(run) if round > 0 => ours.add(run, process, database),
                    Ok(_) => {}
                    Err(e) => ours_failed = Some(e),
                }
                t
            },
            |round| {
                let plans = plans(shape, writers, ops, round);
                let (t, run, process, database) = rt.block_on(async {
                    let before = (cpu_seconds(None), backend_cpu(&admin, RAW_APP).await);
                    let started = Instant::now();
                    let run = raw_round(&clients, plans, round).await;
                    let t = started.elapsed();
                    let after = (cpu_seconds(None), backend_cpu(&admin, RAW_APP).await);
                    let process = after.0.zip(before.0).map_or(0.0, |(a, b)| a - b);
                    (t, run, process, backend_cpu_used(before.1, after.1))
                });
                match run {
                    Ok(run) if round > 0 => raw.add(run, process, database),
                    Ok(_) => {}
                    Err(e) => raw_failed = Some(e),
                }
                t
            },
        );
        if let Some(e) = ours_failed.or(raw_failed) {
            return Err(e);
        }
        let name = format!("writers_{backend}_{}_{writers}", shape.label());
        let target = (writers == 50 && backend == "pg").then(|| shape.target());
        let work = ops_per_round(shape, writers, ops);
        figures.push(figure(&name, work, target, times, &ours, &raw, db.label()));
    }
    rt.block_on(server.handle.shutdown())?;
    Ok(figures)
}

/// `writers at 50: ours on PostgreSQL <shared>/s, <owned>/s; ours on SQLite ..`: the
/// figures of both servers at 50 writers side by side (`None` unless both ran).
pub fn summary(figures: &[Figure]) -> Option<String> {
    let rate = |name: &str| {
        let f = figures.iter().find(|f| f.scenario == name)?;
        Some(Figure::rate(f.work, f.ours))
    };
    let [pg_shared, pg_owned, sqlite_shared, sqlite_owned] = [
        rate("writers_pg_shared_50")?,
        rate("writers_pg_owned_50")?,
        rate("writers_sqlite_shared_50")?,
        rate("writers_sqlite_owned_50")?,
    ];
    Some(format!(
        "writers at 50: server on PostgreSQL {pg_shared:.0} (shared) and {pg_owned:.0} (owned) writes/s; \
         on SQLite {sqlite_shared:.0} and {sqlite_owned:.0} writes/s; PostgreSQL/SQLite {:.2} and {:.2}",
        pg_shared / sqlite_shared,
        pg_owned / sqlite_owned
    ))
}

/// The acknowledged writes of one round (the plans' operations).
fn ops_per_round(shape: Shape, writers: usize, ops: usize) -> u64 {
    plans(shape, writers, ops, 1).iter().map(|p| p.len() as u64).sum()
}

/// Awaits every future, failing with the first error.
async fn futures_all<T, F>(futures: impl Iterator<Item = F>) -> Res<Vec<T>>
where
    F: std::future::Future<Output = Res<T>>,
{
    let mut out = Vec::new();
    for f in futures {
        out.push(f.await?);
    }
    Ok(out)
}

fn figure(
    name: &str,
    work: u64,
    target: Option<f64>,
    times: crate::measure::Rounds,
    ours: &Tally,
    raw: &Tally,
    server: &'static str,
) -> Figure {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let cpu = |t: &Tally| {
        let (process, database) = t.cpu_per_write();
        match database {
            Some(db) => format!("{:.0} us (process {process:.0} + PostgreSQL {db:.0})", process + db),
            None => format!("{process:.0} us (process; PostgreSQL n/a)"),
        }
    };
    let json_cpu = |t: &Tally| {
        let (process, database) = t.cpu_per_write();
        serde_json::json!({"process_us": process, "postgres_us": database})
    };
    Figure::new(name, work, "writes", target, times)
        .with("server", server.into(), server.into())
        .with(
            "latency",
            format!(
                "ours p50 {:.1} ms p99 {:.1} ms, raw p50 {:.1} ms p99 {:.1} ms",
                ms(ours.percentile(0.5)),
                ms(ours.percentile(0.99)),
                ms(raw.percentile(0.5)),
                ms(raw.percentile(0.99))
            ),
            serde_json::json!({
                "ours_p50_ms": ms(ours.percentile(0.5)), "ours_p99_ms": ms(ours.percentile(0.99)),
                "raw_p50_ms": ms(raw.percentile(0.5)), "raw_p99_ms": ms(raw.percentile(0.99)),
            }),
        )
        .with(
            "CPU per write",
            format!("ours {}, raw {}", cpu(ours), cpu(raw)),
            serde_json::json!({"ours": json_cpu(ours), "raw": json_cpu(raw)}),
        )
        .with(
            "refusals retried",
            format!("ours {}, raw {}", ours.refused, raw.refused),
            serde_json::json!({"ours": ours.refused, "raw": raw.refused}),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_fixed_and_mix_the_three_kinds() {
        let count = |plans: &[Vec<Op>], f: fn(&Op) -> bool| plans.iter().flatten().filter(|op| f(op)).count();
        for shape in [Shape::Shared, Shape::Owned] {
            let a = plans(shape, 50, 6000, 3);
            assert_eq!(format!("{a:?}"), format!("{:?}", plans(shape, 50, 6000, 3)), "both sides run one plan");
            assert_eq!(a.len(), 50);
            assert_eq!(ops_per_round(shape, 50, 6000), 6000);
            let inserts = count(&a, |op| matches!(op, Op::Insert(_)));
            let hot = count(&a, |op| matches!(op, Op::Update(t) if t.id.starts_with("hot")));
            assert!((3200..4000).contains(&inserts), "{inserts}");
            assert!((450..750).contains(&hot), "{hot}");
            let owners: std::collections::BTreeSet<_> = a
                .iter()
                .flatten()
                .filter_map(|op| match op {
                    Op::Insert(t) | Op::Update(t) => t.owner,
                })
                .collect();
            assert_eq!(owners.len(), if shape == Shape::Owned { OWNERS } else { 0 });
        }
        assert_eq!(round_ops(6000, 1), 300);
        assert_eq!(round_ops(6000, 8), 960);
    }

    #[test]
    fn latency_percentiles() {
        let ms = Duration::from_millis;
        let tally = Tally { latencies: (1..=100).map(ms).collect(), writes: 100, ..Tally::default() };
        assert_eq!((tally.percentile(0.5), tally.percentile(0.99)), (ms(50), ms(99)));
    }
}
