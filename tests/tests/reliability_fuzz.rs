//! Property-based fuzzing (proptest) of the three places hostile bytes come in
//! (DESIGN.md section 11), with the checks of `sync_tests::fuzzing`:
//!
//! - the OData `$filter` parser, with and without a schema, and printer round trips;
//! - the server's decoding of request bodies per column type (and of `$filter`,
//!   `$orderby`, headers), through a real `sync-server` on 127.0.0.1;
//! - the client's decoding of server answers (pull pages, item answers), from a server
//!   double that answers arbitrary bytes.
//!
//! A short run is part of `cargo test`; `SYNC_FUZZ_CASES=<n>` runs `n` cases per
//! property (default 200). The cargo-fuzz targets in `fuzz/` run the same checks for
//! longer. Every input that ever failed is pinned below as a regression test.

use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value as Json, json};
use sync_runtime::query::{BinaryOp, Expr, Func};
use sync_runtime::{ProtocolVersion, Value, odata};
use sync_tests::fuzzing::{ClientHarness, FuzzAnswer, FuzzRequest, HARNESS_MAX_BODY, ServerHarness, check_filter};

fn cases() -> u32 {
    std::env::var("SYNC_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200)
}

fn runner() -> TestRunner {
    TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() })
}

fn server() -> &'static ServerHarness {
    static SERVER: OnceLock<ServerHarness> = OnceLock::new();
    SERVER.get_or_init(ServerHarness::start)
}

fn client() -> &'static ClientHarness {
    static CLIENT: OnceLock<ClientHarness> = OnceLock::new();
    CLIENT.get_or_init(ClientHarness::start)
}

// ---- the OData parser ----------------------------------------------------------------

const TOKENS: &[&str] = &[
    "(",
    ")",
    "(",
    ")",
    ",",
    " ",
    " ",
    " ",
    "eq",
    "ne",
    "gt",
    "ge",
    "lt",
    "le",
    "and",
    "or",
    "not",
    "null",
    "true",
    "false",
    "'s'",
    "''",
    "'a''b'",
    "'",
    "0",
    "1",
    "-1",
    "007",
    "1.5",
    "-0.0",
    "1e10",
    "1E-5",
    "1e400",
    "10L",
    "2.5m",
    "3d",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "INF",
    "-INF",
    "NaN",
    "datetimeoffset'2026-01-02T03:04:05.678Z'",
    "datetime'2026-01-02T03:04'",
    "datetimeoffset'bad'",
    "cast(2026-01-02T03:04:05.678Z,Edm.DateTimeOffset)",
    "cast(x,Edm.String)",
    "2026-01-02T03:04:05Z",
    "X'0a1b'",
    "X'0'",
    "binary'AQ=='",
    "binary'zz'",
    "guid'6f9619ff-8b86-d011-b42d-00c04fc964ff'",
    "startswith",
    "endswith",
    "substringof",
    "contains",
    "tolower",
    "toupper",
    "trim",
    "length",
    "indexof",
    "substring",
    "concat",
    "s",
    "b",
    "n32",
    "n64",
    "f",
    "at",
    "u",
    "j",
    "bytes",
    "os",
    "on",
    "of",
    "oat",
    "ob",
    "id",
    "updatedAt",
    "version",
    "deleted",
    "nope",
    "Eq",
    "AND",
    "$",
    "/",
    "@",
    "\u{0}",
    "é",
    "\u{1F600}",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..24).prop_map(|t| t.concat())
}

fn literal() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::Float),
        ".{0,12}".prop_map(Value::String),
        (-62_135_596_800i64..253_402_300_799i64, 0i64..1000).prop_map(|(s, ms)| {
            let t = time::OffsetDateTime::from_unix_timestamp(s).unwrap() + time::Duration::milliseconds(ms);
            Value::datetime(t)
        }),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(Value::Bytes),
    ]
}

const COLUMNS: &[&str] = &["s", "b", "n32", "n64", "f", "at", "j", "bytes", "os", "on", "id", "updatedAt"];
const FUNCS: &[Func] = &[
    Func::StartsWith,
    Func::EndsWith,
    Func::Contains,
    Func::ToLower,
    Func::ToUpper,
    Func::Trim,
    Func::Length,
    Func::IndexOf,
    Func::Substring,
    Func::Concat,
];
const OPS: &[BinaryOp] =
    &[BinaryOp::Eq, BinaryOp::Ne, BinaryOp::Gt, BinaryOp::Ge, BinaryOp::Lt, BinaryOp::Le, BinaryOp::And, BinaryOp::Or];

/// How many arguments a function takes (the parser checks it; the typed builder never
/// makes another count).
fn arity(f: Func) -> usize {
    match f {
        Func::ToLower | Func::ToUpper | Func::Trim | Func::Length => 1,
        Func::Substring => 3,
        _ => 2,
    }
}

/// Trees of the AST (not always well-typed): what the printer must write so that the
/// parser reads it back.
fn expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![prop::sample::select(COLUMNS).prop_map(Expr::column), literal().prop_map(Expr::literal)];
    leaf.prop_recursive(5, 40, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(Expr::negate),
            (prop::sample::select(OPS), inner.clone(), inner.clone()).prop_map(|(op, l, r)| Expr::binary(op, l, r)),
            (prop::sample::select(FUNCS), prop::collection::vec(inner, 3)).prop_map(|(f, mut a)| {
                a.truncate(arity(f));
                Expr::call(f, a)
            }),
        ]
    })
}

#[test]
fn fuzz_filter_parser_with_arbitrary_text() {
    runner().run(&".*", |text| check_filter(&text).map_err(TestCaseError::fail)).unwrap();
}

#[test]
fn fuzz_filter_parser_with_token_soup() {
    runner().run(&token_soup(), |text| check_filter(&text).map_err(TestCaseError::fail)).unwrap();
}

#[test]
fn fuzz_filter_printer_round_trips() {
    runner()
        .run(&(expr(), any::<bool>()), |(e, v3)| {
            let version = if v3 { ProtocolVersion::V3 } else { ProtocolVersion::V2 };
            let printed = odata::print_filter(&e, version);
            check_filter(&printed).map_err(TestCaseError::fail)?;
            prop_assert!(odata::parse_filter(&printed, None).is_ok(), "{printed:?} does not parse");
            Ok(())
        })
        .unwrap();
}

// ---- the server ----------------------------------------------------------------------

fn json_value() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        prop::sample::select(vec![
            json!(2147483647),
            json!(2147483648i64),
            json!(-2147483649i64),
            json!(1.0),
            json!(1.5),
            json!(-0.0),
            json!(1e300),
            json!(9.3e18),
            json!(18446744073709551615u64),
        ]),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        prop::sample::select(vec![
            "",
            "a",
            "2026-01-02T03:04:05.678Z",
            "2026-01-02T03:04:05+14:00",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999Z",
            "10000-01-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "AQID",
            "AQ==",
            "AQ",
            "%%",
            "6f9619ff-8b86-d011-b42d-00c04fc964ff",
            "6F9619FF8B86D011B42D00C04FC964FF",
            "not-a-uuid",
            "\u{0}",
            "\u{1F600}",
        ])
        .prop_map(|s| json!(s)),
        ".{0,16}".prop_map(Json::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
            prop::collection::vec(("[a-z]{1,3}", inner), 0..4).prop_map(|kv| Json::Object(kv.into_iter().collect())),
        ]
    })
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

const KEYS: &[&str] = &[
    "id",
    "s",
    "b",
    "n32",
    "n64",
    "f",
    "at",
    "u",
    "j",
    "bytes",
    "os",
    "on",
    "of",
    "oat",
    "ob",
    "version",
    "deleted",
    "updatedAt",
    "createdAt",
    "Deleted",
    "text",
    "complete",
    "extra",
];

/// A valid `Everything` item, with a few of its values replaced by anything.
fn item_body() -> impl Strategy<Value = Json> {
    let valid = (
        "[a-z0-9]{1,8}",
        any::<i32>(),
        any::<i64>(),
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        prop::collection::vec(any::<u8>(), 0..6),
        any::<bool>(),
        ".{0,8}",
    )
        .prop_map(|(id, n32, n64, f, bytes, b, s)| {
            json!({
                "id": id, "s": s, "b": b, "n32": n32, "n64": n64, "f": f,
                "at": "2026-01-02T03:04:05.678Z", "u": "6f9619ff-8b86-d011-b42d-00c04fc964ff",
                "j": {"k": [1, "two", null]}, "bytes": base64(&bytes),
                "os": null, "on": n64, "of": null, "oat": "2026-01-02T03:04:05Z", "ob": null,
            })
        });
    // Values of the right JSON type that a field's Rust type may still refuse.
    let narrow = prop::sample::select(vec![
        ("n32", json!(2147483648i64)),
        ("n32", json!(-2147483649i64)),
        ("n32", json!(4e9)),
        ("n32", json!(2147483647)),
        ("u", json!("not-a-uuid")),
        ("u", json!("")),
        ("u", json!("6F9619FF8B86D011B42D00C04FC964FF")),
        ("u", json!("{6f9619ff-8b86-d011-b42d-00c04fc964ff}")),
        ("at", json!("2026-01-02T03:04:05.6789+14:00")),
        ("j", json!(null)),
        ("bytes", json!("")),
    ]);
    let edits = prop::collection::vec((prop::sample::select(KEYS), json_value(), any::<bool>()), 0..3);
    (valid, prop::option::of(narrow), edits).prop_map(|(mut item, narrow, edits)| {
        if let Some((key, value)) = narrow {
            item[key] = value;
        }
        for (key, value, remove) in edits {
            let map = item.as_object_mut().unwrap();
            if remove {
                map.remove(key);
            } else {
                map.insert(key.to_owned(), value);
            }
        }
        item
    })
}

fn request() -> impl Strategy<Value = FuzzRequest> {
    let body = prop_oneof![
        4 => item_body().prop_map(|j| j.to_string().into_bytes()),
        1 => json_value().prop_map(|j| j.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => Just(vec![b' '; HARNESS_MAX_BODY + 1]),
    ];
    let table = prop_oneof![
        6 => Just("Everything"),
        2 => Just("TodoItem"),
        1 => prop::sample::select(vec!["everything", "Nope", "%2e%2e", "Every%00thing"]),
    ];
    let id = prop::sample::select(vec!["a", "b", "%00", "..", "%2F", "caf%C3%A9", "%FF%FE", "x%20y"]);
    let method = prop_oneof![
        4 => Just("POST"),
        4 => prop::sample::select(vec!["PATCH", "PUT", "DELETE", "GET"]),
        1 => prop::sample::select(vec!["OPTIONS", "BREW"]),
    ];
    let version = prop_oneof![
        8 => prop::sample::select(vec![Some("2.0.0"), Some("3.0.0")]),
        1 => prop::sample::select(vec![Some("4.0.0"), Some(""), None]),
    ];
    let if_match = prop_oneof![
        6 => Just(None),
        1 => prop::sample::select(vec![Some("*"), Some("\"x\""), Some("W/\"x\""), Some(""), Some("\"")]),
    ];
    let query = prop_oneof![
        6 => Just(String::new()),
        2 => token_soup().prop_map(|f| format!("?$filter={}", sync_tests::fuzzing::encode_query(&f))),
        1 => ".{0,12}".prop_map(|o| format!("?$orderby={}", sync_tests::fuzzing::encode_query(&o))),
        1 => prop::sample::select(vec!["?$top=-1", "?$skip=99999999999999999999", "?$select=s,nope", "?$count=maybe"])
            .prop_map(str::to_owned),
    ];
    let id = prop_oneof![2 => Just(None), 3 => id.prop_map(Some)];
    (method, table, id, query, version, if_match, body).prop_map(
        |(method, table, id, query, version, if_match, body)| {
            let mut target = format!("/tables/{table}");
            // Inserts mostly go to the collection, the rest mostly to an item.
            let id = if (method == "POST") == id.is_some() { id.xor(Some("a")) } else { id };
            if let Some(id) = id {
                target.push('/');
                target.push_str(id);
            }
            target.push_str(&query);
            let mut headers = Vec::new();
            if let Some(v) = version {
                headers.push(("zumo-api-version".to_owned(), v.to_owned()));
            }
            if let Some(m) = if_match {
                headers.push(("if-match".to_owned(), m.to_owned()));
            }
            let body = matches!(method, "POST" | "PATCH" | "PUT").then_some(body);
            FuzzRequest { method: method.to_owned(), target, headers, body }
        },
    )
}

#[test]
fn fuzz_server_requests() {
    let server = server();
    let statuses = std::sync::Mutex::new(std::collections::BTreeMap::<u16, u64>::new());
    runner()
        .run(&request(), |req| {
            let status = server.check(&req).map_err(TestCaseError::fail)?;
            *statuses.lock().unwrap().entry(status).or_default() += 1;
            Ok(())
        })
        .unwrap();
    let statuses = statuses.into_inner().unwrap();
    eprintln!("server answers by status: {statuses:?}");
    assert!(statuses.get(&201).copied().unwrap_or(0) > 0, "no insert was accepted: {statuses:?}");
    server.check_health().unwrap();
    server.check_client_reads_everything().unwrap();
}

#[test]
fn fuzz_server_raw_bytes() {
    let server = server();
    runner()
        .run(&prop::collection::vec(any::<u8>(), 0..128), |data| {
            server.check(&FuzzRequest::from_bytes(&data)).map(drop).map_err(TestCaseError::fail)
        })
        .unwrap();
    server.check_health().unwrap();
    server.check_client_reads_everything().unwrap();
}

// ---- the client ----------------------------------------------------------------------

/// A pull page or an item answer, valid or with values of the wrong type, cut, or
/// replaced by anything.
fn answer_body() -> impl Strategy<Value = Vec<u8>> {
    let row = (
        prop::sample::select(vec![json!("r0"), json!("r9"), json!(""), json!(5), json!(null)]),
        prop::sample::select(vec![json!("t"), json!(1), json!(null), json!(["x"]), json!({"a": 1})]),
        prop::sample::select(vec![json!(true), json!("yes"), json!(1), json!(null)]),
        prop::sample::select(vec![
            json!("2026-01-01T00:00:01.000Z"),
            json!("2025-01-01T00:00:00Z"),
            json!("not a date"),
            json!(17),
            json!(null),
        ]),
        prop::sample::select(vec![json!(false), json!(true), json!("false"), json!(null)]),
        prop::sample::select(vec![json!("v9"), json!(9), json!(null), json!("")]),
    )
        .prop_map(|(id, text, complete, at, deleted, version)| {
            json!({"id": id, "text": text, "complete": complete, "updatedAt": at, "deleted": deleted, "version": version})
        });
    let rows = prop::collection::vec(row, 0..4);
    prop_oneof![
        rows.clone().prop_map(|r| Json::Array(r).to_string().into_bytes()),
        rows.clone().prop_map(|r| json!({"items": r, "nextLink": null}).to_string().into_bytes()),
        rows.clone().prop_map(|r| json!({"results": r, "count": 3}).to_string().into_bytes()),
        rows.prop_map(|r| r.into_iter().next().unwrap_or(json!({})).to_string().into_bytes()),
        json_value().prop_map(|j| j.to_string().into_bytes()),
        (json_value(), 0usize..40).prop_map(|(j, cut)| {
            let text = j.to_string().into_bytes();
            text[..cut.min(text.len())].to_vec()
        }),
        prop::collection::vec(any::<u8>(), 0..64),
    ]
}

fn answer() -> impl Strategy<Value = FuzzAnswer> {
    let status = prop_oneof![
        4 => prop::sample::select(vec![200u16, 201, 204, 400, 404, 409, 410, 412, 500, 503]),
        1 => 100u16..600,
    ];
    let headers = prop::sample::select(vec![
        vec![("content-type".to_owned(), "application/json".to_owned())],
        vec![("content-type".to_owned(), "text/html".to_owned())],
        vec![("link".to_owned(), "<garbage; rel=next".to_owned()), ("etag".to_owned(), "W/\"x\"".to_owned())],
        vec![("retry-after".to_owned(), "0".to_owned())],
        vec![],
    ]);
    let lie = prop_oneof![4 => Just(None), 1 => (0usize..200).prop_map(Some)];
    (status, headers, lie, answer_body()).prop_map(|(status, headers, content_length, body)| {
        // 1xx and 204/304 answers cannot carry a body in HTTP/1.1.
        let body = if status < 200 || status == 204 || status == 304 { Vec::new() } else { body };
        let content_length = content_length.filter(|_| status >= 200 && status != 204 && status != 304);
        FuzzAnswer { status, headers, content_length, body }
    })
}

#[test]
fn fuzz_client_answers() {
    let client = client();
    runner()
        .run(&(answer(), any::<bool>(), any::<bool>()), |(answer, push, v3)| {
            let protocol = if v3 { ProtocolVersion::V3 } else { ProtocolVersion::V2 };
            client.check(&answer, push, protocol).map_err(TestCaseError::fail)
        })
        .unwrap();
}

#[test]
fn fuzz_client_raw_answers() {
    let client = client();
    runner()
        .run(&(prop::collection::vec(any::<u8>(), 0..96), any::<bool>(), any::<bool>()), |(data, push, v3)| {
            let protocol = if v3 { ProtocolVersion::V3 } else { ProtocolVersion::V2 };
            client.check(&FuzzAnswer::from_bytes(&data), push, protocol).map_err(TestCaseError::fail)
        })
        .unwrap();
}

// ---- regressions: every failure the fuzzers found ------------------------------------

fn everything(n32: Json, u: Json) -> Vec<u8> {
    json!({
        "id": "r", "s": "x", "b": true, "n32": n32, "n64": 1, "f": 1.0, "at": "2026-01-02T03:04:05.678Z",
        "u": u, "j": {"k": 1}, "bytes": "AQ==",
    })
    .to_string()
    .into_bytes()
}

/// Found by `fuzz_server_requests`: a column's wire type says `int` for an `i32` and
/// `string` for a `Uuid`, and the server stored 2^31 and `""`; every typed client then
/// failed to read the table back.
#[test]
fn regression_the_server_refuses_values_its_typed_clients_cannot_read() {
    let server = server();
    let post = |body: Vec<u8>| FuzzRequest {
        method: "POST".into(),
        target: "/tables/Everything".into(),
        headers: vec![("zumo-api-version".into(), "3.0.0".into())],
        body: Some(body),
    };
    let good = "6f9619ff-8b86-d011-b42d-00c04fc964ff";
    assert_eq!(server.check(&post(everything(json!(2147483648i64), json!(good)))), Ok(400));
    assert_eq!(server.check(&post(everything(json!(1), json!("")))), Ok(400));
    assert_eq!(server.check(&post(everything(json!(1), json!("not-a-uuid")))), Ok(400));
    let patch = FuzzRequest {
        method: "PATCH".into(),
        target: "/tables/Everything/r".into(),
        headers: vec![("zumo-api-version".into(), "2.0.0".into())],
        body: Some(br#"{"n32": -2147483649}"#.to_vec()),
    };
    assert_eq!(server.check(&patch), Ok(400));
    server.check_client_reads_everything().unwrap();
}

/// Found by `fuzz_server_requests`, on the client's side: a server that does not know the
/// Rust types (one configured from a tables file, or another implementation) sends a row
/// that does not fit the struct. The pull must not store a row that makes every query of
/// the table fail; it sets the row aside, named by its id and field, applies the others
/// and moves on (a pull that failed on it would fail on it forever).
#[test]
fn regression_a_pull_sets_aside_a_row_that_does_not_fit_the_struct() {
    use sync_runtime::{Query, Store, SyncClient, SyncEntity};
    use sync_tests::Everything;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        // The table as a tables file would describe it: no Rust types behind it.
        let mut def = sync_server::TableDef::new("Everything");
        for f in Everything::FIELD_DEFS.iter().filter(|f| f.role == sync_runtime::FieldRole::Data) {
            def = def.column(f.column, f.ty, f.nullable);
        }
        let server = sync_server::Server::builder().table_def(def).build().await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let handle = server.spawn(listener).unwrap();
        for (i, (n32, u)) in
            [(json!(1), json!("6f9619ff-8b86-d011-b42d-00c04fc964ff")), (json!(2147483648i64), json!("x"))]
                .into_iter()
                .enumerate()
        {
            let mut body: Json = serde_json::from_slice(&everything(n32, u)).unwrap();
            body["id"] = json!(format!("r{i}"));
            let req = sync_tests::http1::request(
                "POST",
                "/tables/Everything",
                &[("zumo-api-version", "3.0.0"), ("content-type", "application/json")],
                Some(body.to_string().as_bytes()),
            );
            let raw = sync_tests::http1::exchange(handle.local_addr(), &req, std::time::Duration::from_secs(10))
                .await
                .unwrap();
            assert_eq!(sync_tests::http1::parse_response(raw).unwrap().status(), 201);
        }
        let store = Store::open_in_memory().await.unwrap();
        let client = SyncClient::builder(store.clone(), handle.url()).build().unwrap();
        let report = client.pull(Query::<Everything>::new(), Some("all")).await.unwrap();
        assert_eq!((report.received, report.applied, report.rejected), (2, 1, 1), "{report:?}");
        let table = store.table::<Everything>().await.unwrap();
        let rejected = table.rejected_rows().await.unwrap();
        let named: Vec<(&str, Option<&str>)> =
            rejected.iter().map(|r| (r.item_id.as_str(), r.field.as_deref())).collect();
        assert_eq!(named, [("r1", Some("n32"))], "the row is named by its id and field: {rejected:?}");
        assert!(rejected[0].reason.contains("2147483648"), "{rejected:?}");
        // The table still reads, and holds the row that fits.
        let rows = table.fetch(&Query::new()).await.unwrap();
        assert_eq!(rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["r0"], "{rows:?}");
        // The cursor moved past it: the next pull neither fails nor fetches it again.
        let again = client.pull(Query::<Everything>::new(), Some("all")).await.unwrap();
        assert_eq!((again.received, again.rejected), (0, 0), "{again:?}");
        handle.shutdown().await.unwrap();
    });
}
