//! Shared by the integration tests: a server on 127.0.0.1:0 and a client for it, on
//! either backend.
//!
//! # The two backends
//!
//! Tests written as `async fn name(b: Backend)` and listed in [`on_both_backends!`]
//! run twice: `sqlite::name` and `postgres::name`. The PostgreSQL run reads its server
//! from `SYNC_TEST_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`):
//! unset, it says so on stderr and skips; set but unreachable, it fails. Each run gets a
//! schema of its own (`sync_test_<unix time>_<random>`, through `search_path`), dropped
//! at the end, so parallel and repeated runs never meet; schemas left behind by a
//! killed run are dropped by a later one after an hour.
#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value as Json;
use sync_runtime::{ColumnType, DecodeError, FieldDef, FieldRole, SyncEntity, Value};
use sync_server::{Database, Server, ServerBuilder, ServerHandle, parse_tables};

/// The variable naming the PostgreSQL server of the tests.
pub const POSTGRES_URL_VAR: &str = "SYNC_TEST_POSTGRES_URL";

/// Generates `sqlite::<name>` and `postgres::<name>` tests for each
/// `async fn <name>(b: Backend)`; `name(flavor = "multi_thread")` passes the arguments
/// on to `#[tokio::test]`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident $(($($runtime:tt)*))?),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test($($($runtime)*)?)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test($($($runtime)*)?)]
                async fn $name() {
                    // Dropped at the end, also when the test panics: drops the schema.
                    if let Some(schema) = $crate::common::PgSchema::create(stringify!($name)).await {
                        super::$name(schema.backend()).await;
                    }
                }
            )*
        }
    };
}

/// Where a test's server keeps its rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite: in memory, unless the test picks a file.
    Sqlite,
    /// PostgreSQL: this URL (the test's own schema).
    Postgres(String),
}

impl Backend {
    /// Points `builder` at this backend's database (SQLite: leaves it as it is).
    pub fn apply(&self, builder: ServerBuilder) -> ServerBuilder {
        match self {
            Backend::Sqlite => builder,
            Backend::Postgres(url) => builder.database(url.parse::<Database>().expect("the PostgreSQL URL parses")),
        }
    }

    /// A database several servers can share: PostgreSQL, or a SQLite file in `dir`.
    pub fn shared_database(&self, dir: &std::path::Path) -> Database {
        match self {
            Backend::Sqlite => Database::SqliteFile(dir.join("shared.db")),
            Backend::Postgres(url) => url.parse().expect("the PostgreSQL URL parses"),
        }
    }
}

/// A schema of one test in the PostgreSQL of `SYNC_TEST_POSTGRES_URL`; dropped (with
/// everything in it) when this is dropped.
#[derive(Debug)]
pub struct PgSchema {
    base: String,
    schema: String,
}

impl PgSchema {
    /// A new schema, or `None` (said loudly on stderr) when `SYNC_TEST_POSTGRES_URL` is
    /// not set. Panics when it is set but the server cannot be reached.
    pub async fn create(test: &str) -> Option<PgSchema> {
        let Some(base) = std::env::var(POSTGRES_URL_VAR).ok().filter(|v| !v.is_empty()) else {
            // Straight to the process's stderr: the test harness hides `eprintln!` of
            // passing tests.
            use std::io::Write as _;
            static BANNER: std::sync::Once = std::sync::Once::new();
            let mut err = std::io::stderr().lock();
            BANNER.call_once(|| {
                let _ = writeln!(
                    err,
                    "\n*** {POSTGRES_URL_VAR} is not set: the postgres::* tests below are SKIPPED and did NOT run \
                     against PostgreSQL (set it, e.g. to postgres://postgres@127.0.0.1:5432/test) ***"
                );
            });
            let _ = writeln!(err, "SKIPPED postgres::{test} (no {POSTGRES_URL_VAR})");
            return None;
        };
        let client = pg_client(&base).await;
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let schema = format!("sync_test_{secs}_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        // Schemas of killed runs: gone after an hour.
        for row in client
            .query("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'sync\\_test\\_%'", &[])
            .await
            .unwrap()
        {
            let name: String = row.get(0);
            let born = name.split('_').nth(2).and_then(|t| t.parse::<u64>().ok());
            if born.is_some_and(|born| born + 3600 < secs) {
                let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE")).await;
            }
        }
        client.batch_execute(&format!("CREATE SCHEMA \"{schema}\"")).await.expect("CREATE SCHEMA");
        Some(PgSchema { base, schema })
    }

    /// The URL of this schema: the base URL with `search_path` set to it.
    pub fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-csearch_path%3D{}", self.base, self.schema)
    }

    pub fn backend(&self) -> Backend {
        Backend::Postgres(self.url())
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (base, schema) = (self.base.clone(), self.schema.clone());
        // A thread with a runtime of its own: this may run inside a test's runtime, or
        // while a failed test unwinds.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls).await.ok()?;
                tokio::spawn(connection);
                let sql = format!("SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
                client.batch_execute(&sql).await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop the test schema {}; a later run will", self.schema);
        }
    }
}

/// A connection to the test PostgreSQL; panics (the test fails) when it is unreachable.
pub async fn pg_client(url: &str) -> tokio_postgres::Client {
    let connecting = tokio_postgres::connect(url, tokio_postgres::NoTls);
    match tokio::time::timeout(Duration::from_secs(10), connecting).await {
        Ok(Ok((client, connection))) => {
            tokio::spawn(connection);
            client
        }
        Ok(Err(e)) => panic!("{POSTGRES_URL_VAR} is set but PostgreSQL cannot be reached: {e}"),
        Err(_) => panic!("{POSTGRES_URL_VAR} is set but connecting to PostgreSQL timed out"),
    }
}

/// A small deterministic random generator (splitmix64), for seeded workloads.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

pub const V2: &str = "2.0.0";
pub const V3: &str = "3.0.0";
pub const BOTH: [&str; 2] = [V2, V3];

/// The client's struct, written out by hand (the test must not depend on the derive):
/// two data fields, a local-only field the server must not serve, a view of `version`.
/// The client tests of the server decode it too.
#[derive(Clone, Debug, PartialEq)]
pub struct TodoItem {
    pub id: String,
    pub text: String,
    pub complete: bool,
    pub draft: Option<String>,
    pub version: Option<String>,
}

const fn field(name: &'static str, ty: ColumnType, nullable: bool, role: FieldRole) -> FieldDef {
    FieldDef { field: name, column: name, ty, nullable, role, index: false }
}

impl SyncEntity for TodoItem {
    const TABLE: &'static str = "TodoItem";
    const FIELD_DEFS: &'static [FieldDef] = &[
        field("id", ColumnType::String, false, FieldRole::Id),
        field("text", ColumnType::String, false, FieldRole::Data),
        field("complete", ColumnType::Bool, false, FieldRole::Data),
        field("draft", ColumnType::String, true, FieldRole::LocalOnly),
        field("version", ColumnType::String, true, FieldRole::Version),
    ];

    fn id(&self) -> &str {
        &self.id
    }
    fn set_id(&mut self, id: String) {
        self.id = id;
    }
    fn to_values(&self) -> Vec<Value> {
        vec![
            Value::String(self.id.clone()),
            Value::String(self.text.clone()),
            Value::Bool(self.complete),
            self.draft.clone().map_or(Value::Null, Value::String),
            self.version.clone().map_or(Value::Null, Value::String),
        ]
    }
    fn from_values(values: Vec<Value>) -> Result<Self, DecodeError> {
        let mut values = values.into_iter();
        let mut next =
            |field: &'static str| values.next().ok_or_else(|| DecodeError { field, message: "missing value".into() });
        let text = |field: &'static str, v: Value| match v {
            Value::String(s) => Ok(Some(s)),
            Value::Null => Ok(None),
            other => Err(DecodeError { field, message: format!("expected text, found {other:?}") }),
        };
        let required = |field: &'static str, v: Option<String>| {
            v.ok_or_else(|| DecodeError { field, message: "expected text, found null".into() })
        };
        let id = required("id", text("id", next("id")?)?)?;
        let text_value = required("text", text("text", next("text")?)?)?;
        let complete = match next("complete")? {
            Value::Bool(b) => b,
            other => {
                return Err(DecodeError { field: "complete", message: format!("expected a bool, found {other:?}") });
            }
        };
        let draft = text("draft", next("draft")?)?;
        let version = text("version", next("version")?)?;
        Ok(TodoItem { id, text: text_value, complete, draft, version })
    }
}

/// `TodoItem` from the struct, plus two tables from a tables file: every column type,
/// and one with hard deletes.
pub fn builder() -> ServerBuilder {
    let tables = parse_tables(
        r#"
        [tables.Everything]
        columns = { s = "string", b = "bool", i = "int", f = "float", at = "datetime", j = "json", raw = "bytes" }

        [tables.Hard]
        columns = { text = "string" }
        soft_delete = false
        "#,
    )
    .expect("tables");
    Server::builder().table::<TodoItem>().tables(tables)
}

#[derive(Debug)]
pub struct TestServer {
    pub url: String,
    pub client: reqwest::Client,
    handle: ServerHandle,
}

/// A server on `backend`.
pub async fn start_on(backend: &Backend, builder: ServerBuilder) -> TestServer {
    start(backend.apply(builder)).await
}

pub async fn start(builder: ServerBuilder) -> TestServer {
    let server = builder.build().await.expect("server builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let handle = server.spawn(listener).expect("spawn");
    TestServer { url: handle.url(), client: reqwest::Client::new(), handle }
}

impl TestServer {
    /// A request with the protocol header.
    pub fn req(&self, version: &str, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.url)).header("ZUMO-API-VERSION", version)
    }

    /// A request without any protocol header.
    pub fn raw(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.url))
    }

    /// Inserts `{"text": .., "complete": false}` (with `id` when given) and returns the item.
    pub async fn insert(&self, version: &str, id: Option<&str>, text: &str) -> Json {
        let mut body = serde_json::json!({ "text": text, "complete": false });
        if let Some(id) = id {
            body["id"] = id.into();
        }
        let (status, _, item) = send(self.req(version, Method::POST, "/tables/TodoItem").json(&body)).await;
        assert_eq!(status, StatusCode::CREATED, "{item}");
        item
    }

    pub async fn stop(self) {
        self.handle.shutdown().await.expect("clean shutdown");
    }
}

/// Sends and reads the answer: status, headers, JSON body (`null` when empty).
pub async fn send(req: RequestBuilder) -> (StatusCode, reqwest::header::HeaderMap, Json) {
    let response: Response = req.send().await.expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    let json = if bytes.is_empty() {
        Json::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("answer is not JSON ({e}): {bytes:?}"))
    };
    (status, headers, json)
}

/// The `ETag` of an answer, unquoted.
pub fn etag(headers: &reqwest::header::HeaderMap) -> String {
    let raw = headers.get("etag").expect("ETag header").to_str().unwrap();
    raw.trim_matches('"').to_owned()
}

/// The sorted keys of a JSON object.
pub fn keys(item: &Json) -> Vec<String> {
    let mut keys: Vec<String> = item.as_object().expect("object").keys().cloned().collect();
    keys.sort();
    keys
}

/// The rows of a list answer of either generation.
pub fn rows(version: &str, body: &Json) -> Vec<Json> {
    let list = match (version, body) {
        (_, Json::Array(a)) => a,
        (V2, b) => b["results"].as_array().expect("results"),
        (_, b) => b["items"].as_array().expect("items"),
    };
    list.clone()
}

/// A client-side entity with a working `from_values`, for tests that sync with
/// `sync_runtime::{Store, SyncClient}` (written by hand: the tests do not depend on the
/// derive).
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    pub id: String,
    pub text: String,
    pub n: i64,
    pub version: Option<String>,
}

impl Note {
    pub fn new(text: impl Into<String>, n: i64) -> Note {
        Note { id: String::new(), text: text.into(), n, version: None }
    }
}

impl SyncEntity for Note {
    const TABLE: &'static str = "Note";
    const FIELD_DEFS: &'static [FieldDef] = &[
        field("id", ColumnType::String, false, FieldRole::Id),
        field("text", ColumnType::String, false, FieldRole::Data),
        field("n", ColumnType::Int, false, FieldRole::Data),
        field("version", ColumnType::String, true, FieldRole::Version),
    ];

    fn id(&self) -> &str {
        &self.id
    }
    fn set_id(&mut self, id: String) {
        self.id = id;
    }
    fn to_values(&self) -> Vec<Value> {
        vec![
            Value::String(self.id.clone()),
            Value::String(self.text.clone()),
            Value::Int(self.n),
            self.version.clone().map_or(Value::Null, Value::String),
        ]
    }
    fn from_values(values: Vec<Value>) -> Result<Self, DecodeError> {
        let bad = |field: &'static str| DecodeError { field, message: "unexpected value".into() };
        let mut it = values.into_iter();
        let (Some(Value::String(id)), Some(Value::String(text)), Some(Value::Int(n)), Some(version)) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            return Err(bad("id"));
        };
        let version = match version {
            Value::Null => None,
            Value::String(v) => Some(v),
            _ => return Err(bad("version")),
        };
        Ok(Note { id, text, n, version })
    }
}

/// The HS256 secret of the auth tests.
pub const SECRET: &str = "test-secret-of-at-least-32-bytes!!";

/// A token for `sub`, valid for an hour (or expired an hour ago).
pub fn token(sub: &str, valid: bool) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let exp = if valid { now + 3600 } else { now - 3600 };
    let claims = serde_json::json!({ "sub": sub, "exp": exp });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// Every row of a table as the server holds it (tombstones included), by id, through
/// `client` (which carries any token), paging by `(updatedAt, id)` with `$top`.
pub async fn all_rows(
    client: &reqwest::Client,
    url: &str,
    table: &str,
    bearer: Option<&str>,
) -> std::collections::BTreeMap<String, Json> {
    let mut all = std::collections::BTreeMap::new();
    let mut cursor: Option<(String, String)> = None;
    loop {
        let mut query = vec![
            ("$orderby", "updatedAt,id".to_owned()),
            ("$top", "200".to_owned()),
            ("__includedeleted", "true".to_owned()),
        ];
        if let Some((t, id)) = &cursor {
            let t = format!("cast({t},Edm.DateTimeOffset)");
            query.push(("$filter", format!("updatedAt gt {t} or (updatedAt eq {t} and id gt '{id}')")));
        }
        let mut req = client.get(format!("{url}/tables/{table}")).header("ZUMO-API-VERSION", V3).query(&query);
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        let (status, _, body) = send(req).await;
        assert_eq!(status, 200, "{body}");
        let page = rows(V3, &body);
        for r in &page {
            cursor = Some((r["updatedAt"].as_str().unwrap().to_owned(), r["id"].as_str().unwrap().to_owned()));
            all.insert(r["id"].as_str().unwrap().to_owned(), r.clone());
        }
        if page.len() < 200 {
            return all;
        }
    }
}
