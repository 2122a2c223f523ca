//! Bad input of every kind gets a 4xx, and the server keeps serving.

mod common;

use common::{Backend, V2, V3, builder, rows, send, start_on};
use reqwest::header::HeaderValue;
use reqwest::{Method, RequestBuilder};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn still_serves(s: &common::TestServer, what: &str) {
    let (status, _, body) = send(s.req(V3, Method::GET, "/tables/TodoItem?$filter=text%20eq%20'keep'")).await;
    assert_eq!(status, 200, "after {what}: {body}");
    assert_eq!(rows(V3, &body).len(), 1, "after {what}: {body}");
}

async fn expect_4xx(s: &common::TestServer, what: &str, req: RequestBuilder) {
    let response = req.send().await.unwrap_or_else(|e| panic!("{what}: no answer: {}", e.without_url()));
    let status = response.status();
    let body = response.bytes().await.unwrap();
    assert!(status.is_client_error(), "{what}: {status} {}", String::from_utf8_lossy(&body));
    let json: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| panic!("{what}: error body is not JSON: {}", String::from_utf8_lossy(&body)));
    assert!(json["message"].is_string(), "{what}: {json}");
    still_serves(s, what).await;
}

on_both_backends!(malformed_input_gets_4xx_and_the_server_keeps_serving);

async fn malformed_input_gets_4xx_and_the_server_keeps_serving(b: Backend) {
    let s = start_on(&b, builder()).await;
    s.insert(V3, Some("keep"), "keep").await;
    let post = || s.req(V3, Method::POST, "/tables/TodoItem").header("content-type", "application/json");
    let patch = || s.req(V2, Method::PATCH, "/tables/TodoItem/keep").header("content-type", "application/json");

    // Bodies.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("broken JSON", br#"{"text": "a", "complete": fal"#.to_vec()),
        ("trailing garbage", br#"{"text": "a", "complete": false} xyz"#.to_vec()),
        ("a JSON array", br#"[{"text": "a", "complete": false}]"#.to_vec()),
        ("an empty array", b"[]".to_vec()),
        ("a JSON string", br#""text""#.to_vec()),
        ("a JSON number", b"12".to_vec()),
        ("JSON null", b"null".to_vec()),
        ("invalid UTF-8", b"\xff\xfe{\"text\": \"a\"}".to_vec()),
        ("invalid UTF-8 in a string", b"{\"text\": \"\xc3\x28\", \"complete\": false}".to_vec()),
        ("deeply nested JSON", deep.into_bytes()),
        ("an object as a string column", br#"{"text": {"$gt": ""}, "complete": false}"#.to_vec()),
        ("a huge number", br#"{"text": "a", "complete": 1e999}"#.to_vec()),
        ("a long id", format!(r#"{{"id": "{}", "text": "a", "complete": false}}"#, "i".repeat(300)).into_bytes()),
        ("a control character in the id", br#"{"id": "a\u0000b", "text": "a", "complete": false}"#.to_vec()),
        ("a huge body", format!(r#"{{"text": "{}", "complete": false}}"#, "x".repeat(2 << 20)).into_bytes()),
    ];
    for (what, body) in &bodies {
        expect_4xx(&s, &format!("POST {what}"), post().body(body.clone())).await;
        expect_4xx(&s, &format!("PATCH {what}"), patch().body(body.clone())).await;
    }

    // Query options.
    for (name, value) in [
        ("$top", "-1"),
        ("$top", "99999999999999999999"),
        ("$top", "1e3"),
        ("$top", ""),
        ("$skip", "-1"),
        ("$skip", "99999999999999999999"),
        ("$filter", "text eq 'a') or 1 eq 1 --'"),
        ("$filter", "text eq 'x'; DROP TABLE \"TodoItem\"; --'"),
        ("$filter", "text eq 'a' or 1 eq 1 --"),
        ("$filter", "1 eq 1) or (1 eq 1"),
        ("$filter", "id eq 'a' union select * from sqlite_master"),
        ("$filter", "\"text\" eq 'a'"),
        ("$filter", "text eq ?"),
        ("$filter", "text eq 'a\u{0}'z"),
        ("$filter", "substring(text, 99999999999999999999) eq 'a'"),
        ("$filter", "nosuchfn(text)"),
        ("$orderby", "text; drop table TodoItem"),
        ("$orderby", "text asc desc"),
        ("$select", "id,,text"),
        ("$select", "sqlite_master"),
        ("$inlinecount", "everything"),
        ("$apply", "groupby((text))"),
    ] {
        let req = s.req(V3, Method::GET, "/tables/TodoItem").query(&[(name, value)]);
        expect_4xx(&s, &format!("{name}={value}"), req).await;
    }
    // A filter that looks like injection but is one well-formed string literal matches
    // that literal text only.
    let req = s.req(V3, Method::GET, "/tables/TodoItem").query(&[("$filter", "text eq 'a'') or 1 eq 1 --'")]);
    let (status, _, body) = send(req).await;
    assert_eq!(status, 200);
    assert!(rows(V3, &body).is_empty(), "{body}");
    let req = post().json(&json!({"text": "a') or 1 eq 1 --", "complete": false}));
    assert_eq!(send(req).await.0, 201);
    let req = s.req(V3, Method::GET, "/tables/TodoItem").query(&[("$filter", "text eq 'a'') or 1 eq 1 --'")]);
    let (_, _, body) = send(req).await;
    assert_eq!(rows(V3, &body).len(), 1, "{body}");

    // Deep nesting and very long filters.
    for filter in [
        format!("{}text eq 'a'{}", "(".repeat(5000), ")".repeat(5000)),
        format!("{}text eq 'a'", "not ".repeat(5000)),
        vec!["text eq 'a'"; 3000].join(" or "),
        format!("text eq '{}'", "x".repeat(60_000)),
    ] {
        let req = s.req(V3, Method::GET, "/tables/TodoItem").query(&[("$filter", filter.as_str())]);
        let what = format!("a filter of {} bytes starting {}", filter.len(), &filter[..20]);
        let response = req.send().await.unwrap_or_else(|e| panic!("{what}: no answer: {}", e.without_url()));
        // Either answered (it is well-formed) or refused as too complex, never a 5xx.
        assert!(response.status().is_success() || response.status().is_client_error(), "{what}: {}", response.status());
        still_serves(&s, &what).await;
    }

    // Paths and headers.
    let bad_utf8_path = s.req(V3, Method::GET, "/tables/TodoItem/%FF%FE");
    expect_4xx(&s, "invalid UTF-8 in the id", bad_utf8_path).await;
    expect_4xx(&s, "invalid UTF-8 in the table", s.req(V3, Method::GET, "/tables/%C3%28")).await;
    expect_4xx(&s, "a bad query string", s.req(V3, Method::GET, "/tables/TodoItem?$top=%ZZ")).await;
    expect_4xx(&s, "a garbage version", s.req("garbage", Method::GET, "/tables/TodoItem")).await;
    let binary_header = s
        .raw(Method::GET, "/tables/TodoItem")
        .header("ZUMO-API-VERSION", HeaderValue::from_bytes(b"3.0.0\xff").unwrap());
    expect_4xx(&s, "a non-text version header", binary_header).await;
    let empty_if_match = s.req(V2, Method::DELETE, "/tables/TodoItem/keep").header("If-Match", "\"\"");
    expect_4xx(&s, "an empty If-Match", empty_if_match).await;
    let binary_if_match = s
        .req(V2, Method::PATCH, "/tables/TodoItem/keep")
        .header("If-Match", HeaderValue::from_bytes(b"\"\xff\"").unwrap())
        .json(&json!({"text": "keep"}));
    expect_4xx(&s, "a non-text If-Match", binary_if_match).await;
    expect_4xx(&s, "DELETE on a table", s.req(V3, Method::DELETE, "/tables/TodoItem")).await;
    expect_4xx(&s, "PUT on a table", s.req(V3, Method::PUT, "/tables/TodoItem")).await;
    expect_4xx(&s, "a too deep path", s.req(V3, Method::GET, "/tables/TodoItem/a/b")).await;

    // Not even HTTP.
    let addr = s.url.trim_start_matches("http://").to_owned();
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /tables/TodoItem HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"\x00\x01\x02\x03\r\n\r\n",
    ] {
        let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        tcp.write_all(garbage).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(text.is_empty() || text.starts_with("HTTP/1.1 4"), "{garbage:?}: {text}");
        still_serves(&s, "raw garbage").await;
    }
    s.stop().await;
}
