//! Issue 19, what a black-box probe of hostile requests found: each finding as a test
//! named after it, on both backends where the storage is involved. (Timeouts and the
//! connection cap: `connection_limits.rs`; identity providers' tokens:
//! `identity_providers.rs`.)

mod common;

use common::{BOTH, Backend, V2, V3, builder, rows, send, start, start_on};
use reqwest::{Method, StatusCode};
use serde_json::{Value as Json, json};
use sync_server::Auth;

/// Words of the databases' own error texts, which no answer may carry.
const DATABASE_WORDS: [&str; 9] = [
    "the database refused",
    "sqlite",
    "postgres",
    "SQLSTATE",
    "invalid byte sequence",
    "ORDER BY clause",
    "syntax error",
    "Expression tree",
    "out of range for type",
];

/// What a client is told when the database refuses its query.
const REFUSED: &str =
    "the database cannot run this query: it is too large or too complex, or computes a value out of range";

fn no_database_text(what: &str, body: &Json) {
    let text = body.to_string();
    for word in DATABASE_WORDS {
        assert!(!text.to_lowercase().contains(&word.to_lowercase()), "{what}: database text `{word}` in {text}");
    }
}

async fn nul_characters_are_a_400_naming_the_field(b: Backend) {
    let s = start_on(&b, builder().table_def(note_table()).owner_column("Note", "owner").auth(auth())).await;
    let bearer = common::token("alice", true);
    let req = |method: Method, path: &str| s.req(V3, method, path).bearer_auth(&bearer);
    s_insert_note(&s, &bearer, "a").await;

    // An id in the URL.
    for method in [Method::GET, Method::DELETE] {
        let (status, _, body) = send(req(method.clone(), "/tables/Note/a%00b")).await;
        assert_eq!(status, 400, "{method}: {body}");
        assert!(body["message"].as_str().unwrap().contains("the id in the URL"), "{body}");
        assert!(body["message"].as_str().unwrap().contains("NUL"), "{body}");
    }
    let (status, _, body) = send(req(Method::PUT, "/tables/Note/a%00b").json(&json!({"body": "x"}))).await;
    assert_eq!(status, 400, "{body}");
    // A string property, on insert and on replace.
    let (status, _, body) = send(req(Method::POST, "/tables/Note").json(&json!({"body": "x\u{0}y"}))).await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("property `body`") && message.contains("NUL"), "{message}");
    let (status, _, body) = send(req(Method::PUT, "/tables/Note/a").json(&json!({"body": "\u{0}"}))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("property `body`"), "{body}");
    // An id in the body.
    let (status, _, body) = send(req(Method::POST, "/tables/Note").json(&json!({"id": "n\u{0}", "body": "x"}))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("`id`"), "{body}");
    // A string literal of $filter.
    let (status, _, body) = send(req(Method::GET, "/tables/Note").query(&[("$filter", "body eq 'a\u{0}'")])).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("$filter"), "{body}");
    assert_eq!(body["position"], 10, "{body}");
    // A token's `sub`: the owner of the rows.
    let nul_sub = common::token("eve\u{0}", true);
    let (status, _, body) = send(s.req(V3, Method::GET, "/tables/Note").bearer_auth(&nul_sub)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("`sub`"), "{body}");
    let post = s.req(V3, Method::POST, "/tables/Note").bearer_auth(&nul_sub).json(&json!({"body": "x"}));
    assert_eq!(send(post).await.0, 400);

    // Nothing was stored, and the server serves on.
    let (status, _, body) = send(req(Method::GET, "/tables/Note")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(rows(V3, &body).len(), 1, "{body}");
    s.stop().await;
}

async fn no_database_text_in_answers(b: Backend) {
    let s = start_on(&b, builder()).await;
    s.insert(V3, Some("a"), "x").await;
    // Too many $orderby terms: refused before SQL is built, in our words.
    let long_order = vec!["text"; 2_000].join(",");
    for order in [long_order, vec!["text desc"; 33].join(",")] {
        let req = s.req(V3, Method::GET, "/tables/TodoItem").query(&[("$orderby", order.as_str())]);
        let (status, _, body) = send(req).await;
        assert_eq!(status, 400, "{body}");
        assert!(body["message"].as_str().unwrap().contains("at most 32"), "{body}");
        no_database_text("a long $orderby", &body);
    }
    let req = s.req(V3, Method::GET, "/tables/TodoItem").query(&[("$orderby", vec!["text"; 32].join(",").as_str())]);
    assert_eq!(send(req).await.0, 200, "32 terms are fine");
    // Queries a database refuses, or might: never its text, never a 500.
    let row = json!({"id": "e", "s": "abc", "b": true, "i": 5, "f": 1.5, "at": "2026-01-01T00:00:00.000Z"});
    assert_eq!(send(s.req(V3, Method::POST, "/tables/Everything").json(&row)).await.0, 201);
    for filter in [
        "(f mul 1e308) mul 1e308 gt 0",
        "f div 0.0 eq 1",
        "substring(s, -5, -5) eq 'a'",
        "substring(s, 9223372036854775807, 9223372036854775807) eq 'a'",
        "(i mul 9223372036854775807) mul 9223372036854775807 eq 0",
        "round(f mul 1e300) gt 0",
        "indexof(s, '\u{1}') eq -1",
    ] {
        let req = s.req(V3, Method::GET, "/tables/Everything").query(&[("$filter", filter)]);
        let (status, _, body) = send(req).await;
        assert!(status == 200 || status == 400, "{filter}: {status} {body}");
        // PostgreSQL refuses a float overflow (SQLSTATE 22003): our stable words, not its own.
        if filter.contains("1e308") && matches!(b, Backend::Postgres(_)) {
            assert_eq!((status, body["message"].as_str()), (StatusCode::BAD_REQUEST, Some(REFUSED)), "{filter}");
        }
        no_database_text(filter, &body);
    }
    for v in BOTH {
        let req = s.req(v, Method::GET, "/tables/TodoItem").query(&[("$filter", "text eq 'a\u{0}'")]);
        let (status, _, body) = send(req).await;
        assert_eq!(status, 400, "{body}");
        no_database_text("a NUL in $filter", &body);
    }
    s.stop().await;
}

async fn location_and_links_never_come_from_the_host_header(b: Backend) {
    let s = start_on(&b, builder().page_size(1)).await;
    s.insert(V3, Some("a"), "x").await;
    let forged = |req: reqwest::RequestBuilder| {
        req.header("Host", "evil.example")
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Host", "evil.example")
    };
    let (status, headers, _) = send(
        forged(s.req(V3, Method::POST, "/tables/TodoItem")).json(&json!({"id": "b", "text": "y", "complete": false})),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(headers["location"], "/tables/TodoItem/b");
    let (_, _, body) = send(forged(s.req(V3, Method::GET, "/tables/TodoItem"))).await;
    let link = body["nextLink"].as_str().unwrap();
    assert!(link.starts_with(&format!("{}/tables/TodoItem?", s.url)), "{link}");
    let (_, headers, _) = send(forged(s.req(V2, Method::GET, "/tables/TodoItem"))).await;
    let link = headers["link"].to_str().unwrap();
    assert!(link.starts_with(&format!("{}/tables/TodoItem?", s.url)) && !link.contains("evil"), "{link}");
    s.stop().await;

    // A configured public URL is the origin of every link.
    let s = start_on(&b, builder().page_size(1).public_url("https://sync.example.com/api/")).await;
    s.insert(V3, Some("pa"), "x").await;
    let post = forged(s.req(V3, Method::POST, "/tables/TodoItem")).json(&json!({"text": "y", "complete": false}));
    let (_, headers, item) = send(post).await;
    let id = item["id"].as_str().unwrap();
    assert_eq!(headers["location"], format!("https://sync.example.com/api/tables/TodoItem/{id}").as_str());
    let (_, _, body) = send(forged(s.req(V3, Method::GET, "/tables/TodoItem"))).await;
    assert!(body["nextLink"].as_str().unwrap().starts_with("https://sync.example.com/api/tables/TodoItem?$skip=1"));
    s.stop().await;

    // Forwarded headers count only when the operator trusts them.
    let s = start_on(&b, builder().trust_forwarded_headers(true)).await;
    let post =
        forged(s.req(V3, Method::POST, "/tables/TodoItem")).json(&json!({"id": "c", "text": "y", "complete": false}));
    let (_, headers, _) = send(post).await;
    assert_eq!(headers["location"], "https://evil.example/tables/TodoItem/c");
    s.stop().await;

    assert!(sync_server::Server::builder().public_url("sync.example.com").build().await.is_err());
}

async fn bodies_and_headers_follow_the_rfcs(b: Backend) {
    let s = start_on(&b, builder()).await;
    let item = s.insert(V2, Some("p"), "old").await;
    let version = item["version"].as_str().unwrap().to_owned();
    let body = br#"{"text": "t", "complete": false}"#.to_vec();

    // A body that is not JSON by its Content-Type: 415. JSON with parameters or a
    // +json type is fine; no Content-Type is read as JSON.
    for v in BOTH {
        for (content_type, expected) in [
            (Some("text/plain"), 415),
            (Some("application/x-www-form-urlencoded"), 415),
            (Some("application/json; charset=utf-8"), 201),
            (Some("application/merge-patch+json"), 201),
            (None, 201),
        ] {
            let mut req = s.req(v, Method::POST, "/tables/TodoItem").body(body.clone());
            if let Some(content_type) = content_type {
                req = req.header("Content-Type", content_type);
            }
            let (status, _, answer) = send(req).await;
            assert_eq!(status, expected, "{v} {content_type:?}: {answer}");
            if status == 415 {
                assert_eq!(answer["code"].as_str().or(answer["error"].as_str()), Some("unsupported_media_type"));
            }
        }
        // A Content-Encoding the server does not decode: 415, saying what it takes.
        let req = s
            .req(v, Method::POST, "/tables/TodoItem")
            .header("Content-Type", "application/json")
            .header("Content-Encoding", "gzip")
            .body(body.clone());
        let (status, headers, answer) = send(req).await;
        assert_eq!(status, 415, "{answer}");
        assert_eq!(headers["accept-encoding"], "identity");
    }
    // Duplicate keys in a JSON object, at the top or nested: 400.
    for duplicated in
        [r#"{"text": "a", "text": "b", "complete": false}"#, r#"{"text": "a", "complete": false, "complete": true}"#]
    {
        let req = s.req(V3, Method::POST, "/tables/TodoItem").header("Content-Type", "application/json");
        let (status, _, answer) = send(req.body(duplicated)).await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer["message"].as_str().unwrap().contains("duplicate key"), "{answer}");
    }
    let nested = r#"{"s": "a", "j": {"k": 1, "k": 2}}"#;
    let req = s.req(V3, Method::POST, "/tables/Everything").header("Content-Type", "application/json").body(nested);
    let (status, _, answer) = send(req).await;
    assert_eq!(status, 400, "{answer}");
    // If-Match compares strongly: the current version, weak, is 412 with the item.
    for (method, v, json) in [
        (Method::PATCH, V2, Some(json!({"text": "x"}))),
        (Method::PUT, V3, Some(json!({"text": "x", "complete": true}))),
        (Method::DELETE, V3, None),
    ] {
        let mut req = s.req(v, method.clone(), "/tables/TodoItem/p").header("If-Match", format!("W/\"{version}\""));
        if let Some(json) = json {
            req = req.json(&json);
        }
        let (status, _, answer) = send(req).await;
        assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{method}: {answer}");
        assert_eq!(answer["version"], version.as_str(), "{method}");
    }
    // ZUMO-API-VERSION: 2.0.0 and 3.0.0 only, in the header or the query.
    for (value, expected) in
        [("2.0.0", 200), ("3.0.0", 200), ("2.1.0", 400), ("3.1.0", 400), ("2.0", 400), ("2.0.1", 400), ("2", 400)]
    {
        let (status, _, answer) = send(s.req(value, Method::GET, "/tables/TodoItem")).await;
        assert_eq!(status, expected, "{value}: {answer}");
        let (status, _, _) = send(s.raw(Method::GET, &format!("/tables/TodoItem?ZUMO-API-VERSION={value}"))).await;
        assert_eq!(status, expected, "{value} in the query");
    }
    s.stop().await;
}

#[tokio::test]
async fn metrics_and_request_ids_for_operators() {
    let s = start(builder()).await;
    s.insert(V3, Some("a"), "x").await;
    send(s.req(V3, Method::GET, "/tables/TodoItem/a")).await;
    send(s.req(V3, Method::GET, "/tables/TodoItem/missing")).await;
    // A sane incoming request id is echoed; a missing or insane one is replaced.
    let (_, headers, _) = send(s.req(V3, Method::GET, "/healthz").header("x-request-id", "abc-123")).await;
    assert_eq!(headers["x-request-id"], "abc-123");
    let (_, headers, _) = send(s.req(V3, Method::GET, "/tables/TodoItem")).await;
    let made = headers["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&made).is_ok(), "{made}");
    let (_, headers, _) = send(s.req(V3, Method::GET, "/healthz").header("x-request-id", "x y<script>")).await;
    assert!(uuid::Uuid::parse_str(headers["x-request-id"].to_str().unwrap()).is_ok());
    let (_, headers, _) = send(s.req(V3, Method::GET, "/nope").header("x-request-id", "e".repeat(65))).await;
    assert_ne!(headers["x-request-id"], "e".repeat(65).as_str());

    let response = s.raw(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = response.text().await.unwrap();
    for needle in [
        r#"sync_server_requests_total{route="/tables/{table}/{id}",method="GET",status="200"} 1"#,
        r#"sync_server_requests_total{route="/tables/{table}/{id}",method="GET",status="404"} 1"#,
        r#"sync_server_requests_total{route="/tables/{table}",method="POST",status="201"} 1"#,
        r#"sync_server_requests_total{route="other",method="GET",status="404"} 1"#,
        r#"sync_server_request_duration_seconds_count{route="/tables/{table}"} 2"#,
        "# TYPE sync_server_request_duration_seconds histogram",
        "sync_server_feed_subscribers 0",
    ] {
        assert!(text.contains(needle), "{needle} in\n{text}");
    }
    let open: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("sync_server_open_connections "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("open connections in\n{text}"));
    assert!(open >= 1.0, "{text}");
    s.stop().await;
}

#[tokio::test]
async fn metrics_report_the_postgres_pool() {
    let Some(schema) = common::PgSchema::create("metrics_report_the_postgres_pool").await else { return };
    let s = start_on(&schema.backend(), builder()).await;
    s.insert(V3, Some("a"), "x").await;
    let text = s.raw(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    assert!(text.contains(r#"sync_server_db_pool_connections{state="max"} 16"#), "{text}");
    assert!(text.contains(r#"sync_server_db_pool_connections{state="open"}"#), "{text}");
    s.stop().await;
}

fn auth() -> Auth {
    Auth::jwt_hs256(common::SECRET).unwrap()
}

fn note_table() -> sync_server::TableDef {
    sync_server::TableDef::new("Note").column("body", sync_core::ColumnType::String, true)
}

async fn s_insert_note(s: &common::TestServer, bearer: &str, id: &str) {
    let req = s.req(V3, Method::POST, "/tables/Note").bearer_auth(bearer).json(&json!({"id": id, "body": "x"}));
    let (status, _, body) = send(req).await;
    assert_eq!(status, 201, "{body}");
}

on_both_backends!(
    nul_characters_are_a_400_naming_the_field,
    no_database_text_in_answers,
    location_and_links_never_come_from_the_host_header,
    bodies_and_headers_follow_the_rfcs,
);
