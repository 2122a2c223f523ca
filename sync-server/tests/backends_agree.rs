//! The PostgreSQL compiler means what the SQLite one means (whose semantics are
//! property-tested against the in-memory evaluator in sync-runtime): the same rows and
//! the same `$filter` / `$orderby` give the same answer on both backends, for the
//! corners where SQL dialects differ: nulls, collation, Unicode, clamping.

mod common;

use common::{PgSchema, V3, rows, send, start, start_on};
use reqwest::Method;
use serde_json::{Value as Json, json};
use sync_server::{Server, parse_tables};

fn builder() -> sync_server::ServerBuilder {
    let tables = parse_tables(
        r#"
        [tables.Mix]
        columns = { s = "string", t = "string", b = "bool", i = "int", f = "float", at = "datetime", j = "json", raw = "bytes" }
        "#,
    )
    .unwrap();
    Server::builder().tables(tables)
}

fn items() -> Vec<Json> {
    vec![
        json!({"id": "r01", "s": "apple", "t": "pp", "b": true, "i": 1, "f": 1.0, "at": "2026-01-01T00:00:00.000Z", "j": {"a": 1}, "raw": "AAE="}),
        json!({"id": "r02", "s": "Apple pie", "t": null, "b": false, "i": 2, "f": 2.5, "at": "2026-01-01T00:00:00.001Z", "j": [1, 2], "raw": "AAI="}),
        json!({"id": "r03", "s": "Banana", "t": "an", "b": null, "i": null, "f": null, "at": null, "j": null, "raw": null}),
        json!({"id": "r04", "s": "straße", "t": "SS", "b": true, "i": -5, "f": -0.5, "at": "1999-12-31T23:59:59.999Z", "j": "text", "raw": ""}),
        json!({"id": "r05", "s": "\u{3000} padded\t\n", "t": "padded", "b": false, "i": 9_007_199_254_740_993_i64, "f": 1e300, "at": "0001-01-01T00:00:00.000Z", "j": 1.5, "raw": "/w=="}),
        json!({"id": "r06", "s": "émoji 😀 Ω", "t": "😀", "b": null, "i": 0, "f": 0.0, "at": "9999-12-31T23:59:59.999Z", "j": true, "raw": "AAE="}),
        json!({"id": "r07", "s": "zebra", "t": "", "b": true, "i": 2, "f": 2.0, "at": "2026-01-01T00:00:00.000Z", "j": {"a": 1}, "raw": "AA=="}),
        json!({"id": "r08", "s": null, "t": "x", "b": false, "i": 3, "f": 3.0, "at": "2026-06-01T12:00:00.000Z", "j": null, "raw": null}),
        json!({"id": "r09", "s": "ABC", "t": "abc", "b": true, "i": 4, "f": 4.25, "at": "2026-06-01T12:00:00.000Z", "j": {"b": [null]}, "raw": "AAE="}),
        json!({"id": "R10", "s": "İstanbul ΣΑΣ", "t": "ς", "b": null, "i": 5, "f": 5.0, "at": "2026-06-01T12:00:00.001Z", "j": [], "raw": "AQ=="}),
    ]
}

const FILTERS: &[&str] = &[
    "s eq 'apple'",
    "s ne 'apple'",
    "s eq null",
    "s ne null",
    "not (s eq 'apple')",
    "t eq s",
    "t ne s",
    "i gt 1",
    "not (i gt 1)",
    "i le 2 or f gt 3",
    "i eq f",
    "i eq 9007199254740993",
    "f ge 2",
    "b",
    "not b",
    "b eq false",
    "b ne true",
    "b gt false",
    "s gt 'Z'",
    "s lt 'a'",
    "s gt 'straße'",
    "s ge 'émoji'",
    "t lt s",
    "id gt 'R10'",
    "startswith(s, 'App')",
    "not startswith(s, 'App')",
    "endswith(s, 'pie')",
    "endswith(s, '')",
    "contains(s, 'an')",
    "not contains(s, 'an')",
    "contains(s, t)",
    "tolower(s) eq 'apple'",
    "startswith(tolower(s), 'apple')",
    "toupper(s) eq 'STRASSE'",
    "tolower(s) eq 'i̇stanbul σας'",
    "toupper(t) eq 'ABC'",
    "trim(s) eq 'padded'",
    "trim(s) eq t",
    "length(s) eq 5",
    "length(s) gt length(t)",
    "length(t) eq 0",
    "indexof(s, 'p') eq 1",
    "indexof(s, 'zz') eq -1",
    "indexof(s, '') eq 0",
    "indexof(s, '😀') eq 6",
    "substring(s, 1) eq 'pple'",
    "substring(s, -3) eq 'apple'",
    "substring(s, 1, 2) eq 'pp'",
    "substring(s, 2, -1) eq ''",
    "substring(s, 99) eq ''",
    "substring(s, 9223372036854775807) eq ''",
    "substring(s, 0, 9223372036854775807) eq s",
    "substring(s, i) eq 'pple'",
    "substring(s, i) eq null",
    "substring(s, 1, i) eq t",
    "concat(s, t) eq 'applepp'",
    "concat(s, t) eq null",
    "concat(concat(s, ' '), t) ne null",
    "at gt cast(2026-01-01T00:00:00.000Z,Edm.DateTimeOffset)",
    "at eq cast(2026-01-01T00:00:00.000Z,Edm.DateTimeOffset)",
    "at lt cast(2000-01-01T00:00:00.000Z,Edm.DateTimeOffset)",
    "j eq '{\"a\":1}'",
    "j ne '{\"a\":1}'",
    "j eq '[1,2]'",
    "j eq null",
    "raw eq binary'AAE='",
    "raw ne binary'AAE='",
    "raw eq binary''",
    "id eq 'r01' or id eq 'r02' or id eq 'r99' or s eq 'zebra'",
    "i eq 1 or i eq 2 or i eq null",
    "not (i eq 1 or i eq 2)",
    "(s eq null) eq (t eq null)",
    "startswith(s, 'a') eq null",
    "startswith(s, 'a') ne true",
    "null",
    "not null",
    "true and not false",
];

const ORDERS: &[&str] = &["s", "s desc", "t,s desc", "i desc", "f", "b,i", "at desc,id", "id desc", "updatedAt,id"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_and_orders_mean_the_same_on_both_backends() {
    let Some(schema) = PgSchema::create("filters_and_orders_mean_the_same_on_both_backends").await else {
        return;
    };
    let servers = [start(builder()).await, start_on(&schema.backend(), builder()).await];
    for s in &servers {
        for item in items() {
            let (status, _, body) = send(s.req(V3, Method::POST, "/tables/Mix").json(&item)).await;
            assert_eq!(status, 201, "{body}");
        }
    }
    let ask = |query: Vec<(&'static str, String)>| {
        let reqs: Vec<_> = servers.iter().map(|s| s.req(V3, Method::GET, "/tables/Mix").query(&query)).collect();
        async move {
            let mut answers = Vec::new();
            for req in reqs {
                let (status, _, body) = send(req).await;
                let ids: Vec<Json> = match status.as_u16() {
                    200 => rows(V3, &body).iter().map(|r| r["id"].clone()).collect(),
                    other => vec![json!(other)],
                };
                answers.push(ids);
            }
            answers
        }
    };
    let mut matched = 0;
    for filter in FILTERS {
        let answers = ask(vec![("$filter", (*filter).to_owned()), ("$orderby", "id".to_owned())]).await;
        assert_eq!(answers[0], answers[1], "`{filter}`: SQLite, then PostgreSQL");
        assert!(answers[0].iter().all(|v| v.is_string()), "`{filter}` is answered: {:?}", answers[0]);
        matched += usize::from(!answers[0].is_empty());
    }
    assert!(matched > FILTERS.len() * 2 / 3, "most filters match some rows: {matched}");
    for order in ORDERS {
        let answers = ask(vec![("$orderby", (*order).to_owned())]).await;
        assert_eq!(answers[0], answers[1], "`$orderby={order}`: SQLite, then PostgreSQL");
    }
    let [a, b] = servers;
    a.stop().await;
    b.stop().await;
    drop(schema);
}
