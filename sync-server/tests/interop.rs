//! What the clients and servers of the protocol family already in the field expect of
//! ours, over real HTTP on both backends: error bodies in each generation's form, and
//! the OData the official clients emit (arithmetic, rounding, `replace`, date parts).

mod common;

use common::{BOTH, Backend, V2, V3, builder, rows, send, start_on};
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn error_bodies_take_the_form_of_each_generation(b: Backend) {
    let s = start_on(&b, builder()).await;
    // v2: the human text in `error` (the JS SDK shows `error` or `description`, never
    // `message`), a machine code beside it, and `message` for clients that read it.
    let (status, _, body) = send(s.req(V2, Method::GET, "/tables/TodoItem?$filter=nope eq 1")).await;
    assert_eq!(status, 400);
    let text = body["error"].as_str().unwrap();
    assert!(text.contains("unknown column `nope`") && text.contains("position"), "{body}");
    assert_eq!((body["code"].clone(), body["message"].as_str()), (json!("bad_request"), Some(text)));
    assert!(body["position"].is_u64(), "{body}");
    let (status, _, body) = send(s.req(V2, Method::GET, "/tables/Nope")).await;
    assert_eq!((status, body["code"].clone()), (StatusCode::NOT_FOUND, json!("not_found")));
    assert!(body["error"].as_str().unwrap().contains("no table `Nope`"), "{body}");
    // v3 keeps its form: the code in `error`, the text in `message`.
    let (status, _, body) = send(s.req(V3, Method::GET, "/tables/TodoItem?$filter=nope eq 1")).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "bad_request");
    assert!(body["message"].as_str().unwrap().contains("unknown column `nope`"), "{body}");
    assert!(body.get("code").is_none(), "{body}");
    // Without a generation (the request's own mistake), the family's v2 form.
    let (status, _, body) = send(s.raw(Method::GET, "/tables/TodoItem")).await;
    assert_eq!((status, body["code"].clone()), (StatusCode::BAD_REQUEST, json!("bad_request")));
    assert!(body["error"].as_str().unwrap().contains("ZUMO-API-VERSION"), "{body}");
    // The query-parameter form of the generation counts too.
    let (_, _, body) = send(s.raw(Method::GET, "/tables/Nope?ZUMO-API-VERSION=3.0.0")).await;
    assert_eq!(body["error"], "not_found");
    // Conflicts still answer with the server's item, not an error body.
    s.insert(V2, Some("c"), "x").await;
    let req = s.req(V2, Method::POST, "/tables/TodoItem").json(&json!({"id": "c", "text": "y", "complete": false}));
    let (status, _, body) = send(req).await;
    assert_eq!((status, body["id"].clone()), (StatusCode::CONFLICT, json!("c")));
    s.stop().await;
}

/// Rows of `Everything` for the operator tests: `(id, i, f, s, at)`.
const ROWS: [(&str, i64, f64, &str, &str); 5] = [
    ("a", 5, 2.5, "banana", "2026-03-04T05:06:07.890Z"),
    ("b", 6, -2.5, "apple", "2025-12-31T23:59:59.999Z"),
    ("c", -7, 0.49999999999999994, "cherry", "2026-01-01T00:00:00.000Z"),
    ("d", 0, 1.5, "a-b-a", "1999-07-15T12:30:45.000Z"),
    ("e", 9_223_372_036_854_775_807, 3.0, "", "2026-03-04T23:00:00.000Z"),
];

async fn the_odata_clients_emit_selects_the_same_rows(b: Backend) {
    let s = start_on(&b, builder()).await;
    for (id, i, f, text, at) in ROWS {
        let body = json!({"id": id, "i": i, "f": f, "s": text, "at": at, "b": true});
        let (status, _, answer) = send(s.req(V3, Method::POST, "/tables/Everything").json(&body)).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
    let cases: [(&str, &[&str]); 20] = [
        ("(i add 1) eq 6", &["a"]),
        ("i add 1 eq 6", &["a"]),
        ("i sub 2 mul 3 eq -1", &["a"]),
        ("(i mul 2) gt 10", &["b"]),
        ("i div 2 eq -3", &["c"]),
        ("i mod 4 eq -3", &["c"]),
        ("i div i eq 1", &["a", "b", "c", "e"]),
        // Integer overflow is null, not an error or a wrap.
        ("(i add 1) lt 0", &["c"]),
        ("(i add 1) eq null", &["e"]),
        ("(f mul 2) eq 5", &["a"]),
        ("(i add f) eq 7.5", &["a"]),
        ("floor(f) eq -3", &["b"]),
        ("ceiling(f) eq -2", &["b"]),
        ("round(f) eq 3 or round(f) eq -3", &["a", "b", "e"]),
        ("round(f) eq 0", &["c"]),
        ("replace(s, 'a', 'o') eq 'bonono'", &["a"]),
        ("replace(s, '', 'x') eq 'apple'", &["b"]),
        // JavaScript's `+` on strings, as the JS client writes it.
        ("(s add '!') eq 'apple!'", &["b"]),
        ("year(at) eq 2026 and month(at) eq 3", &["a", "e"]),
        ("day(at) eq 15 and hour(at) eq 12 and minute(at) eq 30 and second(at) eq 45", &["d"]),
    ];
    for v in BOTH {
        for (filter, expected) in cases {
            let req = s.req(v, Method::GET, "/tables/Everything").query(&[("$filter", filter), ("$orderby", "id")]);
            let (status, _, body) = send(req).await;
            assert_eq!(status, 200, "{v} {filter}: {body}");
            let ids: Vec<String> = rows(v, &body).iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
            assert_eq!(ids, expected, "{v} {filter}");
        }
        // A date literal in each generation's form.
        let literal = match v {
            V2 => "datetimeoffset'2026-01-01T00:00:00.000Z'",
            _ => "cast(2026-01-01T00:00:00.000Z,Edm.DateTimeOffset)",
        };
        let filter = format!("year(at) eq year({literal}) and month(at) eq 1");
        let (_, _, body) = send(s.req(v, Method::GET, "/tables/Everything").query(&[("$filter", &filter)])).await;
        let ids: Vec<String> = rows(v, &body).iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
        assert_eq!(ids, ["c"], "{v} {filter}");
    }
    // Mistakes are 400s that say what is wrong, never 500s.
    for (filter, needle) in [
        ("i div 0 eq 1", "`div` by zero"),
        ("i mod 0.0 eq 1", "`mod` by zero"),
        ("f mod 2 eq 1", "`mod` takes integers"),
        ("s mul 1 eq 2", "`mul` takes numbers"),
        ("year(s) eq 2026", "argument 1 of `year` must be datetime"),
        ("floor(s) eq 1", "must be a number"),
        ("(s add 1) eq 'a'", "two numbers or two strings"),
        ("i add eq 1", "expected a value"),
    ] {
        let req = s.req(V3, Method::GET, "/tables/Everything").query(&[("$filter", filter)]);
        let (status, _, body) = send(req).await;
        assert_eq!(status, 400, "{filter}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(needle), "{filter}: {message}");
    }
    s.stop().await;
}

on_both_backends!(error_bodies_take_the_form_of_each_generation, the_odata_clients_emit_selects_the_same_rows);
