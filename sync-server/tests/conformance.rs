//! The table protocol over real HTTP, both generations: every row of DESIGN.md
//! section 6's table and every status code the server promises.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{BOTH, Backend, V2, V3, builder, etag, keys, rows, send, start, start_on};
use reqwest::{Method, StatusCode};
use serde_json::{Value as Json, json};
use sync_server::{Database, ManualClock};
use time::macros::datetime;

fn system_keys(version: &str) -> Vec<&'static str> {
    match version {
        V2 => vec!["createdAt", "deleted", "id", "updatedAt", "version"],
        _ => vec!["deleted", "id", "updatedAt", "version"],
    }
}

async fn protocol_version_is_chosen_per_request(b: Backend) {
    let s = start_on(&b, builder()).await;
    for path in ["/tables/TodoItem", "/tables/TodoItem/x", "/tables/Nope"] {
        let (status, _, body) = send(s.raw(Method::GET, path)).await;
        assert_eq!(status, 400);
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("ZUMO-API-VERSION") && message.contains("2.0.0") && message.contains("3.0.0"));
        let (status, _, body) = send(s.req("4.0.0", Method::GET, path)).await;
        assert_eq!(status, 400);
        assert!(body["message"].as_str().unwrap().contains("4.0.0"));
    }
    // Only the versions the family's clients send (issue 19: other minor versions are
    // refused, as the reference servers refuse them); the query-parameter form is accepted.
    let (status, _, body) = send(s.req("2.1.0", Method::GET, "/tables/TodoItem")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].as_str().unwrap().contains("2.1.0"), "{body}");
    let (status, _, body) = send(s.raw(Method::GET, "/tables/TodoItem?ZUMO-API-VERSION=3.0.0")).await;
    assert_eq!(status, 200);
    assert_eq!(body["items"], json!([]));

    let (status, _, body) = send(s.raw(Method::GET, "/healthz")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    s.stop().await;
}

async fn unknown_tables_and_routes_are_404(b: Backend) {
    let s = start_on(&b, builder()).await;
    for v in BOTH {
        for (method, path) in [
            (Method::GET, "/tables/Nope"),
            (Method::POST, "/tables/Nope"),
            (Method::GET, "/tables/Nope/1"),
            (Method::DELETE, "/tables/Nope/1"),
            (Method::GET, "/elsewhere"),
        ] {
            let req = s.req(v, method.clone(), path).json(&json!({"text": "a"}));
            let (status, _, body) = send(req).await;
            assert_eq!(status, 404, "{method} {path}");
            assert!(body["message"].is_string());
        }
        // Table names match ignoring ASCII case, as Azure Mobile Apps does.
        let (status, _, _) = send(s.req(v, Method::GET, "/tables/todoitem")).await;
        assert_eq!(status, 200);
    }
    s.stop().await;
}

async fn insert_and_read_back_with_the_system_properties_of_each_generation(b: Backend) {
    let s = start_on(&b, builder()).await;
    for v in BOTH {
        let req = s.req(v, Method::POST, "/tables/TodoItem").json(&json!({"text": "milk", "complete": false}));
        let (status, headers, item) = send(req).await;
        assert_eq!(status, StatusCode::CREATED, "{item}");
        let id = item["id"].as_str().unwrap().to_owned();
        let uuid = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(uuid.get_version_num(), 4);
        assert_eq!(id, id.to_lowercase());
        assert_eq!(etag(&headers), item["version"].as_str().unwrap());
        // Relative (issue 19): no configured public URL, and the Host header is not trusted.
        let location = headers.get("location").unwrap().to_str().unwrap();
        assert_eq!(location, format!("/tables/TodoItem/{id}"));

        let mut expected: Vec<&str> = system_keys(v);
        expected.extend(["complete", "text"]);
        expected.sort();
        assert_eq!(keys(&item), expected, "{v}: local-only fields are not served");
        assert_eq!(item["deleted"], false);
        assert_eq!(item["text"], "milk");
        let updated = item["updatedAt"].as_str().unwrap();
        assert_eq!(updated.len(), "2026-01-02T03:04:05.678Z".len());
        assert!(sync_core::datetime::parse(updated).is_some());
        if v == V2 {
            assert_eq!(item["createdAt"], item["updatedAt"]);
        }

        let (status, headers, got) = send(s.req(v, Method::GET, &format!("/tables/TodoItem/{id}"))).await;
        assert_eq!(status, 200);
        assert_eq!(got, item);
        assert_eq!(etag(&headers), item["version"].as_str().unwrap());

        // A client id is kept exactly (case-sensitive).
        let item = s.insert(v, Some(&format!("Client-{v}")), "x").await;
        assert_eq!(item["id"], format!("Client-{v}"));
        let (status, _, _) = send(s.req(v, Method::GET, &format!("/tables/TodoItem/client-{v}"))).await;
        assert_eq!(status, 404);

        // Missing item.
        let (status, _, body) = send(s.req(v, Method::GET, "/tables/TodoItem/nope")).await;
        assert_eq!(status, 404);
        assert!(body["message"].as_str().unwrap().contains("nope"));
    }
    s.stop().await;
}

async fn inserting_an_existing_id_is_409_with_the_servers_copy(b: Backend) {
    let s = start_on(&b, builder()).await;
    for v in BOTH {
        let id = format!("dup-{v}");
        let first = s.insert(v, Some(&id), "first").await;
        let req =
            s.req(v, Method::POST, "/tables/TodoItem").json(&json!({"id": id, "text": "second", "complete": true}));
        let (status, headers, body) = send(req).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body, first);
        assert_eq!(etag(&headers), first["version"].as_str().unwrap());

        // Also for a soft-deleted id.
        let (status, _, _) = send(s.req(v, Method::DELETE, &format!("/tables/TodoItem/{id}"))).await;
        assert!(status.is_success());
        let req =
            s.req(v, Method::POST, "/tables/TodoItem").json(&json!({"id": id, "text": "third", "complete": true}));
        let (status, _, body) = send(req).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["deleted"], true);
        assert_eq!(body["text"], "first");
    }
    s.stop().await;
}

async fn v2_updates_with_patch_and_if_match(b: Backend) {
    let s = start_on(&b, builder()).await;
    let item = s.insert(V2, Some("p"), "old").await;
    let v1 = item["version"].as_str().unwrap().to_owned();

    // Partial update with If-Match.
    let req = s
        .req(V2, Method::PATCH, "/tables/TodoItem/p")
        .header("If-Match", format!("\"{v1}\""))
        .json(&json!({"complete": true}));
    let (status, headers, patched) = send(req).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["text"], "old");
    assert_eq!(patched["complete"], true);
    let v2 = patched["version"].as_str().unwrap().to_owned();
    assert_ne!(v2, v1);
    assert_eq!(etag(&headers), v2);
    assert!(patched["updatedAt"].as_str().unwrap() >= item["updatedAt"].as_str().unwrap());
    assert_eq!(patched["createdAt"], item["createdAt"]);

    // Stale If-Match: 412 with the current item.
    let req = s
        .req(V2, Method::PATCH, "/tables/TodoItem/p")
        .header("If-Match", format!("\"{v1}\""))
        .json(&json!({"text": "x"}));
    let (status, headers, body) = send(req).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(body, patched);
    assert_eq!(etag(&headers), v2);

    // If-Match compares strongly (RFC 9110; issue 19): a weak tag of the current version
    // does not match, and the answer is 412 with the current item.
    let req = s
        .req(V2, Method::PATCH, "/tables/TodoItem/p")
        .header("If-Match", format!("W/\"{v2}\""))
        .json(&json!({"text": "new"}));
    let (status, _, body) = send(req).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(body, patched);
    let req = s
        .req(V2, Method::PATCH, "/tables/TodoItem/p")
        .header("If-Match", format!("\"{v2}\""))
        .json(&json!({"text": "new"}));
    let (status, _, current) = send(req).await;
    assert_eq!(status, 200);
    assert_eq!(current["text"], "new");

    // A stale version in the body without If-Match: 409 with the current item.
    let req = s.req(V2, Method::PATCH, "/tables/TodoItem/p").json(&json!({"text": "y", "version": v2}));
    let (status, _, body) = send(req).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body, current);
    // The current version in the body is fine.
    let req = s.req(V2, Method::PATCH, "/tables/TodoItem/p").json(&json!({"text": "z", "version": current["version"]}));
    let (status, _, body) = send(req).await;
    assert_eq!(status, 200);
    assert_eq!(body["text"], "z");
    // If-Match: * matches any version.
    let req = s.req(V2, Method::PATCH, "/tables/TodoItem/p").header("If-Match", "*").json(&json!({"text": "star"}));
    assert_eq!(send(req).await.0, 200);

    // PUT is v3's; a missing item is 404; the body id must match the URL.
    let req = s.req(V2, Method::PUT, "/tables/TodoItem/p").json(&json!({"text": "a", "complete": true}));
    let (status, headers, _) = send(req).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(headers.get("allow").unwrap().to_str().unwrap().contains("PATCH"));
    let req = s.req(V2, Method::PATCH, "/tables/TodoItem/missing").json(&json!({"text": "a"}));
    assert_eq!(send(req).await.0, 404);
    let req = s.req(V2, Method::PATCH, "/tables/TodoItem/p").json(&json!({"id": "other", "text": "a"}));
    assert_eq!(send(req).await.0, 400);
    s.stop().await;
}

async fn v3_replaces_with_put_and_if_match(b: Backend) {
    let s = start_on(&b, builder()).await;
    let item = s.insert(V3, Some("r"), "old").await;
    let v1 = item["version"].as_str().unwrap().to_owned();

    let req = s
        .req(V3, Method::PUT, "/tables/TodoItem/r")
        .header("If-Match", format!("\"{v1}\""))
        .json(&json!({"id": "r", "text": "new", "complete": true, "version": v1}));
    let (status, headers, replaced) = send(req).await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!((replaced["text"].clone(), replaced["complete"].clone()), (json!("new"), json!(true)));
    let v2 = replaced["version"].as_str().unwrap().to_owned();
    assert_ne!(v2, v1);
    assert_eq!(etag(&headers), v2);
    assert_eq!(keys(&replaced), ["complete", "deleted", "id", "text", "updatedAt", "version"]);

    // A full item is required.
    let req = s.req(V3, Method::PUT, "/tables/TodoItem/r").json(&json!({"text": "only text"}));
    let (status, _, body) = send(req).await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("`complete`"));

    // Stale If-Match: 412 with the current item. A `version` (and the other system
    // properties) in a v3 body is accepted and ignored: Datasync clients send whole
    // entities, and the precondition comes from If-Match only.
    let req = s
        .req(V3, Method::PUT, "/tables/TodoItem/r")
        .header("If-Match", format!("\"{v1}\""))
        .json(&json!({"text": "a", "complete": false}));
    let (status, _, body) = send(req).await;
    assert_eq!((status, &body), (StatusCode::PRECONDITION_FAILED, &replaced));
    let whole = json!({"id": "r", "text": "b", "complete": false, "version": v1, "updatedAt": "x",
                       "createdAt": "y", "deleted": true});
    let (status, _, body) = send(s.req(V3, Method::PUT, "/tables/TodoItem/r").json(&whole)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["text"].clone(), body["deleted"].clone()), (json!("b"), json!(false)));
    assert_ne!(body["version"], replaced["version"]);
    assert_ne!(body["updatedAt"], json!("x"));

    // PATCH is v2's; POST to an item (v2 undelete) too.
    let req = s.req(V3, Method::PATCH, "/tables/TodoItem/r").json(&json!({"text": "a"}));
    assert_eq!(send(req).await.0, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(send(s.req(V3, Method::POST, "/tables/TodoItem/r")).await.0, StatusCode::METHOD_NOT_ALLOWED);
    let req = s.req(V3, Method::PUT, "/tables/TodoItem/missing").json(&json!({"text": "a", "complete": false}));
    assert_eq!(send(req).await.0, 404);
    s.stop().await;
}

async fn v2_deletes_soft_answers_with_the_item_and_undeletes_with_post(b: Backend) {
    let s = start_on(&b, builder()).await;
    let item = s.insert(V2, Some("d"), "gone soon").await;

    let req = s.req(V2, Method::DELETE, "/tables/TodoItem/d").header("If-Match", "\"stale\"");
    let (status, _, body) = send(req).await;
    assert_eq!((status, &body), (StatusCode::PRECONDITION_FAILED, &item));

    let req = s
        .req(V2, Method::DELETE, "/tables/TodoItem/d")
        .header("If-Match", format!("\"{}\"", item["version"].as_str().unwrap()));
    let (status, headers, tomb) = send(req).await;
    assert_eq!(status, 200);
    assert_eq!(tomb["deleted"], true);
    assert_eq!(tomb["text"], "gone soon");
    assert_ne!(tomb["version"], item["version"]);
    assert_eq!(etag(&headers), tomb["version"].as_str().unwrap());

    assert_eq!(send(s.req(V2, Method::GET, "/tables/TodoItem/d")).await.0, 404);
    let (status, _, body) = send(s.req(V2, Method::GET, "/tables/TodoItem/d?__includeDeleted=true")).await;
    assert_eq!((status, &body), (StatusCode::OK, &tomb));
    assert_eq!(send(s.req(V2, Method::DELETE, "/tables/TodoItem/d")).await.0, 404);
    assert_eq!(send(s.req(V2, Method::DELETE, "/tables/TodoItem/never")).await.0, 404);
    let req = s.req(V2, Method::PATCH, "/tables/TodoItem/d").json(&json!({"text": "a"}));
    assert_eq!(send(req).await.0, 404);

    // Undelete: stale If-Match 412, then 200 with a new version.
    let req = s.req(V2, Method::POST, "/tables/TodoItem/d").header("If-Match", "\"stale\"");
    assert_eq!(send(req).await.0, StatusCode::PRECONDITION_FAILED);
    let (status, headers, back) = send(s.req(V2, Method::POST, "/tables/TodoItem/d")).await;
    assert_eq!(status, 200);
    assert_eq!(back["deleted"], false);
    assert_ne!(back["version"], tomb["version"]);
    assert_eq!(etag(&headers), back["version"].as_str().unwrap());
    assert_eq!(send(s.req(V2, Method::GET, "/tables/TodoItem/d")).await.0, 200);
    assert_eq!(send(s.req(V2, Method::POST, "/tables/TodoItem/never")).await.0, 404);
    s.stop().await;
}

async fn v3_deletes_soft_with_204_then_410_and_undeletes_with_put(b: Backend) {
    let s = start_on(&b, builder()).await;
    let item = s.insert(V3, Some("d"), "gone soon").await;

    let req = s.req(V3, Method::DELETE, "/tables/TodoItem/d").header("If-Match", "\"stale\"");
    let (status, _, body) = send(req).await;
    assert_eq!((status, &body), (StatusCode::PRECONDITION_FAILED, &item));

    let (status, _, body) = send(s.req(V3, Method::DELETE, "/tables/TodoItem/d")).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Json::Null));
    assert_eq!(send(s.req(V3, Method::GET, "/tables/TodoItem/d")).await.0, StatusCode::GONE);
    let (status, _, tomb) = send(s.req(V3, Method::GET, "/tables/TodoItem/d?__includedeleted=true")).await;
    assert_eq!(status, 200);
    assert_eq!(tomb["deleted"], true);
    assert_eq!(send(s.req(V3, Method::DELETE, "/tables/TodoItem/d")).await.0, StatusCode::GONE);
    assert_eq!(send(s.req(V3, Method::DELETE, "/tables/TodoItem/never")).await.0, 404);

    // A replace that does not undelete is refused as gone; the toolkit's undelete is a
    // replace with `deleted: false` and `__includedeleted=true`; `deleted` is otherwise
    // ignored.
    let req = s.req(V3, Method::PUT, "/tables/TodoItem/d").json(&json!({"text": "back", "complete": false}));
    assert_eq!(send(req).await.0, StatusCode::GONE);
    for deleted in [true, false] {
        let body = json!({"text": "a", "complete": false, "deleted": deleted});
        assert_eq!(send(s.req(V3, Method::PUT, "/tables/TodoItem/d").json(&body)).await.0, StatusCode::GONE);
    }
    let req = s
        .req(V3, Method::PUT, "/tables/TodoItem/d?__includedeleted=true")
        .header("If-Match", format!("\"{}\"", tomb["version"].as_str().unwrap()))
        .json(&json!({"id": "d", "text": "back", "complete": false, "deleted": false}));
    let (status, _, back) = send(req).await;
    assert_eq!(status, 200, "{back}");
    assert_eq!((back["deleted"].clone(), back["text"].clone()), (json!(false), json!("back")));
    assert_eq!(send(s.req(V3, Method::GET, "/tables/TodoItem/d")).await.0, 200);
    s.stop().await;
}

async fn tables_without_soft_delete_remove_rows(b: Backend) {
    let s = start_on(&b, builder()).await;
    for v in BOTH {
        let req = s.req(v, Method::POST, "/tables/Hard").json(&json!({"id": "h", "text": "x"}));
        assert_eq!(send(req).await.0, 201);
        let (status, _, body) = send(s.req(v, Method::DELETE, "/tables/Hard/h")).await;
        match v {
            V2 => assert_eq!((status, body["text"].clone()), (StatusCode::OK, json!("x"))),
            _ => assert_eq!(status, StatusCode::NO_CONTENT),
        }
        assert_eq!(send(s.req(v, Method::GET, "/tables/Hard/h?__includedeleted=true")).await.0, 404);
        assert_eq!(send(s.req(v, Method::DELETE, "/tables/Hard/h")).await.0, 404);
        let (_, _, body) = send(s.req(v, Method::GET, "/tables/Hard?__includedeleted=true")).await;
        assert!(rows(v, &body).is_empty());
        // The id is free again.
        let req = s.req(v, Method::POST, "/tables/Hard").json(&json!({"id": "h", "text": "x"}));
        assert_eq!(send(req).await.0, 201);
        assert!(send(s.req(v, Method::DELETE, "/tables/Hard/h")).await.0.is_success());
    }
    s.stop().await;
}

async fn list_bodies_counts_and_tombstones(b: Backend) {
    let s = start_on(&b, builder()).await;
    for i in 0..5 {
        s.insert(V3, Some(&format!("item{i}")), &format!("t{i}")).await;
    }
    assert_eq!(send(s.req(V3, Method::DELETE, "/tables/TodoItem/item4")).await.0, 204);

    // v2: a bare array, or results + count.
    let (status, _, body) = send(s.req(V2, Method::GET, "/tables/TodoItem")).await;
    assert_eq!(status, 200);
    let list = body.as_array().expect("v2 answers a bare array");
    assert_eq!(list.len(), 4);
    assert_eq!(keys(&list[0]), ["complete", "createdAt", "deleted", "id", "text", "updatedAt", "version"]);
    let (_, _, body) = send(s.req(V2, Method::GET, "/tables/TodoItem?$inlinecount=allpages&$top=2")).await;
    assert_eq!(body["count"], 4);
    assert_eq!(body["results"].as_array().unwrap().len(), 2);

    // v3: items + nextLink, count only when asked.
    let (_, _, body) = send(s.req(V3, Method::GET, "/tables/TodoItem")).await;
    assert_eq!(keys(&body), ["items", "nextLink"]);
    assert_eq!(body["nextLink"], Json::Null);
    assert_eq!(body["items"].as_array().unwrap().len(), 4);
    assert_eq!(keys(&body["items"][0]), ["complete", "deleted", "id", "text", "updatedAt", "version"]);
    let (_, _, body) = send(s.req(V3, Method::GET, "/tables/TodoItem?$count=true&$top=1")).await;
    assert_eq!(body["count"], 4);

    // Tombstones on request, either spelling, either generation.
    for v in BOTH {
        for flag in ["__includeDeleted=true", "__includedeleted=true"] {
            let (_, _, body) = send(s.req(v, Method::GET, &format!("/tables/TodoItem?{flag}"))).await;
            let list = rows(v, &body);
            assert_eq!(list.len(), 5, "{v} {flag}");
            assert_eq!(list.iter().filter(|r| r["deleted"] == true).count(), 1);
        }
    }
    s.stop().await;
}

async fn list_query_options(b: Backend) {
    let clock = ManualClock::new(datetime!(2026-01-02 03:04:05.678 UTC));
    let s = start_on(&b, builder().clock(clock.clone())).await;
    let mut first = Json::Null;
    for (i, text) in ["apple", "banana", "cherry", "date", "Apple pie"].iter().enumerate() {
        clock.advance_ms(1000);
        let req = s
            .req(V3, Method::POST, "/tables/TodoItem")
            .json(&json!({"id": format!("i{i}"), "text": text, "complete": i % 2 == 0}));
        let (status, _, item) = send(req).await;
        assert_eq!(status, 201);
        if i == 0 {
            first = item;
        }
    }
    let ids = |v: &str, body: &Json| -> Vec<String> {
        rows(v, body).iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect()
    };
    let get = |v: &'static str, query: Vec<(&'static str, String)>| {
        let req = s.req(v, Method::GET, "/tables/TodoItem").query(&query);
        async move {
            let (status, _, body) = send(req).await;
            assert_eq!(status, 200, "{body}");
            body
        }
    };

    for v in BOTH {
        let body = get(v, vec![("$filter", "complete eq true".into()), ("$orderby", "text desc".into())]).await;
        assert_eq!(ids(v, &body), ["i2", "i0", "i4"]);
        let body = get(v, vec![("$filter", "startswith(tolower(text), 'apple')".into())]).await;
        assert_eq!(ids(v, &body), ["i0", "i4"]);
        let body = get(v, vec![("$orderby", "text".into()), ("$top", "2".into()), ("$skip", "1".into())]).await;
        assert_eq!(ids(v, &body), ["i0", "i1"]);
        let body = get(v, vec![("$select", "id,text".into()), ("$filter", "id eq 'i1'".into())]).await;
        assert_eq!(rows(v, &body), [json!({"id": "i1", "text": "banana"})]);
        let body = get(v, vec![("$filter", "length(text) gt 5 and not (text eq 'banana')".into())]).await;
        assert_eq!(ids(v, &body), ["i2", "i4"]);
    }
    // Each generation's spelling of `contains` and of a date literal.
    let body = get(V2, vec![("$filter", "substringof('an', text)".into())]).await;
    assert_eq!(ids(V2, &body), ["i1"]);
    let body = get(V3, vec![("$filter", "contains(text, 'an')".into())]).await;
    assert_eq!(ids(V3, &body), ["i1"]);
    let t = first["updatedAt"].as_str().unwrap();
    let body = get(V2, vec![("$filter", format!("updatedAt le datetimeoffset'{t}'"))]).await;
    assert_eq!(ids(V2, &body), ["i0"]);
    let body = get(V3, vec![("$filter", format!("updatedAt le cast({t},Edm.DateTimeOffset)"))]).await;
    assert_eq!(ids(V3, &body), ["i0"]);
    // createdAt is a v2 property.
    let body = get(V2, vec![("$select", "createdAt".into()), ("$top", "1".into())]).await;
    assert_eq!(keys(&rows(V2, &body)[0]), ["createdAt"]);
    s.stop().await;
}

async fn paging_caps_top_and_links_the_next_page(b: Backend) {
    let s = start_on(&b, builder().page_size(3).max_top(5)).await;
    for i in 0..12 {
        s.insert(V3, Some(&format!("p{i:02}")), "x").await;
    }
    // Without $top: pages of 3, nextLink absolute with $skip advanced, until null.
    let mut seen = Vec::new();
    let mut next = Some(format!("{}/tables/TodoItem?$filter=text%20eq%20'x'", s.url));
    let mut pages = 0;
    while let Some(url) = next {
        let (status, _, body) = send(s.client.get(&url).header("ZUMO-API-VERSION", V3)).await;
        assert_eq!(status, 200, "{url}: {body}");
        seen.extend(rows(V3, &body).iter().map(|r| r["id"].as_str().unwrap().to_owned()));
        next = body["nextLink"].as_str().map(str::to_owned);
        if let Some(link) = &next {
            assert!(link.starts_with(&format!("{}/tables/TodoItem?", s.url)), "{link}");
            assert!(link.contains("$filter=") && link.contains(&format!("$skip={}", seen.len())), "{link}");
        }
        pages += 1;
    }
    let expected: Vec<String> = (0..12).map(|i| format!("p{i:02}")).collect();
    assert_eq!(seen, expected);
    assert_eq!(pages, 4);

    // A large $top is capped, not refused; the link carries the rest of the ask.
    let (status, _, body) = send(s.req(V3, Method::GET, "/tables/TodoItem?$top=100")).await;
    assert_eq!(status, 200);
    assert_eq!(rows(V3, &body).len(), 5);
    let link = body["nextLink"].as_str().unwrap();
    assert!(link.contains("$top=95") && link.contains("$skip=5"), "{link}");
    // A $top within the cap gets exactly that, and no link.
    let (_, _, body) = send(s.req(V3, Method::GET, "/tables/TodoItem?$top=4")).await;
    assert_eq!((rows(V3, &body).len(), body["nextLink"].clone()), (4, Json::Null));
    let (_, _, body) = send(s.req(V3, Method::GET, "/tables/TodoItem?$top=0")).await;
    assert_eq!((rows(V3, &body).len(), body["nextLink"].clone()), (0, Json::Null));
    let (_, _, body) = send(s.req(V3, Method::GET, "/tables/TodoItem?$skip=10")).await;
    assert_eq!((rows(V3, &body).len(), body["nextLink"].clone()), (2, Json::Null));

    // v2: the same page sizes, a Link header to the next page.
    let (_, headers, body) = send(s.req(V2, Method::GET, "/tables/TodoItem")).await;
    assert_eq!(rows(V2, &body).len(), 3);
    let link = headers.get("link").unwrap().to_str().unwrap();
    // Written as the reference servers write it, no angle brackets: the JS and .NET
    // clients take what comes before `; rel=next` as the URL.
    let url = link.strip_suffix("; rel=next").unwrap_or_else(|| panic!("{link}"));
    assert!(url.starts_with(&format!("{}/tables/TodoItem?", s.url)) && url.contains("$skip=3"), "{link}");
    let (status, _, body) = send(s.client.get(url).header("ZUMO-API-VERSION", V2)).await;
    assert_eq!((status, rows(V2, &body).len()), (StatusCode::OK, 3));
    // Also when $top asks for more than the cap allows; not when it was met.
    let (_, headers, _) = send(s.req(V2, Method::GET, "/tables/TodoItem?$top=7")).await;
    let link = headers.get("link").unwrap().to_str().unwrap();
    assert!(link.contains("$top=2") && link.contains("$skip=5"), "{link}");
    let (_, headers, _) = send(s.req(V2, Method::GET, "/tables/TodoItem?$top=2")).await;
    assert!(headers.get("link").is_none());
    s.stop().await;
}

async fn bad_query_options_are_400_naming_the_problem(b: Backend) {
    let s = start_on(&b, builder()).await;
    s.insert(V3, Some("a"), "x").await;
    for v in BOTH {
        for (filter, needle) in [
            ("nope eq 1", "nope"),
            ("frobnicate(text) eq 1", "frobnicate"),
            ("text eq 5", "cannot compare"),
            ("text eq", ""),
            ("text eq 'unterminated", ""),
            ("(text eq 'a'", ""),
        ] {
            let req = s.req(v, Method::GET, "/tables/TodoItem").query(&[("$filter", filter)]);
            let (status, _, body) = send(req).await;
            assert_eq!(status, 400, "{v} {filter}: {body}");
            let message = body["message"].as_str().unwrap();
            assert!(message.contains(needle) && message.contains("position"), "{filter}: {message}");
            assert!(body["position"].is_u64(), "{body}");
        }
        for (name, value) in [
            ("$orderby", "nope"),
            ("$orderby", "j"),
            ("$select", "nope"),
            ("$top", "-1"),
            ("$top", "ten"),
            ("$skip", "99999999999999999999"),
            ("$count", "maybe"),
            ("$expand", "x"),
            ("__includedeleted", "1"),
        ] {
            let req = s.req(v, Method::GET, "/tables/TodoItem").query(&[(name, value)]);
            let (status, _, body) = send(req).await;
            assert_eq!(status, 400, "{name}={value}: {body}");
            assert!(body["message"].is_string());
        }
    }
    // `j` is a json column of Everything: it cannot be ordered.
    let req = s.req(V3, Method::GET, "/tables/Everything").query(&[("$orderby", "j")]);
    assert_eq!(send(req).await.0, 400);
    s.stop().await;
}

async fn bad_bodies_are_400_or_413(b: Backend) {
    let s = start_on(&b, builder().max_body(64 * 1024)).await;
    s.insert(V3, Some("a"), "x").await;
    for v in BOTH {
        let update = if v == V2 { Method::PATCH } else { Method::PUT };
        for (method, path) in [(Method::POST, "/tables/TodoItem"), (update, "/tables/TodoItem/a")] {
            // v2 refuses the system properties the server sets, as the Node server does
            // (v3 accepts and ignores them: see the replace and insert tests).
            let system: &[(&str, &str)] = match v {
                V2 => &[
                    (r#"{"text":"a","complete":false,"createdAt":"2026-01-01T00:00:00.000Z"}"#, "createdAt"),
                    (r#"{"text":"a","complete":false,"updatedAt":"2026-01-01T00:00:00.000Z"}"#, "updatedAt"),
                    (r#"{"text":"a","complete":false,"deleted":true}"#, "deleted"),
                ],
                _ => &[],
            };
            for &(body, needle) in system.iter().chain(&[
                (r#"{"text":"a","complete":"no"}"#, "complete"),
                (r#"{"text":7,"complete":false}"#, "text"),
                (r#"{"text":"a","complete":false,"colour":"red","size":3}"#, "colour"),
                (r#"{"text":"a","complete":false,"draft":"local only"}"#, "draft"),
                (r#"{"text":"a","#, "JSON"),
                (r#"[{"text":"a","complete":false}]"#, "object"),
                ("", "empty"),
            ]) {
                let req = s.req(v, method.clone(), path).header("content-type", "application/json").body(body);
                let (status, _, answer) = send(req).await;
                assert_eq!(status, 400, "{v} {method} {body}: {answer}");
                let message = answer["message"].as_str().unwrap();
                assert!(message.contains(needle), "{body}: {message}");
            }
            let huge = format!(r#"{{"text":"{}","complete":false}}"#, "x".repeat(100 * 1024));
            let (status, _, answer) = send(s.req(v, method.clone(), path).body(huge)).await;
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
        }
    }
    // v2 insert with deleted=false is reserved too; v3 ignores it (and the other system
    // properties) on insert.
    let insert = |v| s.req(v, Method::POST, "/tables/TodoItem");
    let body = json!({"text": "a", "complete": false, "deleted": false});
    assert_eq!(send(insert(V2).json(&body)).await.0, 400);
    let body = json!({"id": "v3whole", "text": "a", "complete": false, "deleted": true, "version": "mine",
                      "createdAt": "2000-01-01T00:00:00.000Z", "updatedAt": "2000-01-01T00:00:00.000Z"});
    let (status, _, item) = send(insert(V3).json(&body)).await;
    assert_eq!(status, StatusCode::CREATED, "{item}");
    assert_eq!(item["deleted"], false);
    assert_ne!(item["version"], "mine");
    assert_ne!(item["updatedAt"], "2000-01-01T00:00:00.000Z");
    // Every column type: right JSON types in, the same out.
    let item = json!({
        "id": "e", "s": "text", "b": true, "i": -42, "f": 2.5,
        "at": "2026-01-02T03:04:05.678Z", "j": {"nested": [1, "two", null]}, "raw": "AAEC/w=="
    });
    let (status, _, body) = send(s.req(V3, Method::POST, "/tables/Everything").json(&item)).await;
    assert_eq!(status, 201, "{body}");
    for key in ["s", "b", "i", "f", "at", "j", "raw"] {
        assert_eq!(body[key], item[key], "{key}");
    }
    let (_, _, body) = send(s.req(V3, Method::POST, "/tables/Everything").json(&json!({"id": "n"}))).await;
    assert_eq!(body["s"], Json::Null, "tables file columns are nullable");
    for (key, bad) in [
        ("i", json!(1.5)),
        ("i", json!("1")),
        ("f", json!("x")),
        ("at", json!("noon")),
        ("raw", json!("***")),
        ("b", json!(1)),
    ] {
        let req = s.req(V3, Method::POST, "/tables/Everything").json(&json!({ key: bad }));
        let (status, _, body) = send(req).await;
        assert_eq!(status, 400, "{key}: {bad}");
        assert!(body["message"].as_str().unwrap().contains(&format!("`{key}`")), "{body}");
    }
    s.stop().await;
}

/// 2,000 rows written in one frozen millisecond, read incrementally in pages of 100 by
/// `(updatedAt, id)` while half of them are still being written: every row exactly once.
async fn an_incremental_reader_never_misses_a_row(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(datetime!(2026-01-02 03:04:05.678 UTC));
    let db = b.shared_database(dir.path());
    let s = Arc::new(start(builder().clock(clock).database(db)).await);

    // 1,000 rows with increasing ids share exactly one millisecond.
    for i in 0..1000 {
        let item = s.insert(V3, Some(&format!("a{i:04}")), "x").await;
        assert_eq!(item["updatedAt"], "2026-01-02T03:04:05.678Z");
    }

    // 1,000 more with random server ids from 8 concurrent writers, while a reader pages.
    let done = Arc::new(AtomicBool::new(false));
    let writers = {
        let (s, done) = (Arc::clone(&s), Arc::clone(&done));
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            for _ in 0..8 {
                let s = Arc::clone(&s);
                tasks.push(tokio::spawn(async move {
                    for _ in 0..125 {
                        s.insert(V3, None, "y").await;
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            done.store(true, Ordering::SeqCst);
        })
    };

    let read_all = |s: Arc<common::TestServer>, done: Arc<AtomicBool>| async move {
        let mut seen: Vec<(String, String)> = Vec::new();
        loop {
            let finished = done.load(Ordering::SeqCst);
            let mut query = vec![("$orderby", "updatedAt,id".to_owned()), ("$top", "100".to_owned())];
            if let Some((t, id)) = seen.last() {
                let t = format!("cast({t},Edm.DateTimeOffset)");
                query.push(("$filter", format!("updatedAt gt {t} or (updatedAt eq {t} and id gt '{id}')")));
            }
            let (status, _, body) = send(s.req(V3, Method::GET, "/tables/TodoItem").query(&query)).await;
            assert_eq!(status, 200, "{body}");
            let page = rows(V3, &body);
            for r in &page {
                seen.push((r["updatedAt"].as_str().unwrap().to_owned(), r["id"].as_str().unwrap().to_owned()));
            }
            if page.len() < 100 && finished {
                return seen;
            }
            if page.is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
    };
    let during = read_all(Arc::clone(&s), Arc::clone(&done)).await;
    writers.await.unwrap();
    let after = read_all(Arc::clone(&s), done).await;

    for seen in [&during, &after] {
        assert_eq!(seen.len(), 2000);
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "pairs strictly increase");
        let ids: HashSet<&str> = seen.iter().map(|(_, id)| id.as_str()).collect();
        assert_eq!(ids.len(), 2000, "every row exactly once");
    }
    assert_eq!(during, after);
    Arc::into_inner(s).unwrap().stop().await;
}

on_both_backends!(
    protocol_version_is_chosen_per_request,
    unknown_tables_and_routes_are_404,
    insert_and_read_back_with_the_system_properties_of_each_generation,
    inserting_an_existing_id_is_409_with_the_servers_copy,
    v2_updates_with_patch_and_if_match,
    v3_replaces_with_put_and_if_match,
    v2_deletes_soft_answers_with_the_item_and_undeletes_with_post,
    v3_deletes_soft_with_204_then_410_and_undeletes_with_put,
    tables_without_soft_delete_remove_rows,
    list_bodies_counts_and_tombstones,
    list_query_options,
    paging_caps_top_and_links_the_next_page,
    bad_query_options_are_400_naming_the_problem,
    bad_bodies_are_400_or_413,
    an_incremental_reader_never_misses_a_row(flavor = "multi_thread", worker_threads = 2)
);

#[tokio::test]
async fn an_unreachable_postgres_is_a_clear_error_without_the_password() {
    // Port 1 on the loopback: nothing listens there, the connection is refused at once.
    let db: Database = "postgres://user:secret@127.0.0.1:1/db".parse().unwrap();
    let err = builder().database(db).build().await.unwrap_err().to_string();
    assert!(err.contains("127.0.0.1:1") && err.contains("user:***@") && !err.contains("secret"), "{err}");
}

/// The real binary: prints one `listening on` line, serves, stops cleanly on SIGTERM.
#[cfg(unix)]
#[test]
fn the_binary_serves_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let tables = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/todo/tables.toml");
    let db = format!("sqlite:{}", dir.path().join("todo.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_sync-server"))
        .args(["--listen", "127.0.0.1:0", "--db", &db, "--tables", tables])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("first line: {line:?}")).to_owned();
    assert!(url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"), "{url}");

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let req = client
            .post(format!("{url}/tables/TodoItem"))
            .header("ZUMO-API-VERSION", V3)
            .json(&json!({"text": "from the binary", "complete": false}));
        let (status, _, item) = send(req).await;
        assert_eq!(status, 201, "{item}");
        let (status, _, body) = send(client.get(format!("{url}/tables/TodoItem")).header("ZUMO-API-VERSION", V2)).await;
        assert_eq!(status, 200);
        assert_eq!(body[0]["text"], "from the binary");
    });

    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(status.success(), "exit {status:?}; stderr: {stderr}");
    assert_eq!(rest, "", "exactly one line on stdout");

    // An unreachable PostgreSQL, or JWT auth without its secret, stop it with a clear message.
    for (args, needle) in [
        (vec!["--db", "postgres://u:secret@127.0.0.1:1/db"], "127.0.0.1:1"),
        (vec!["--db", "sqlite::memory:", "--auth", "jwt"], "--jwt-secret-env"),
        (vec!["--db", "sqlite::memory:", "--auth", "jwt", "--jwt-secret-env", "SYNC_TEST_UNSET_VARIABLE"], "not set"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_sync-server"))
            .args(["--listen", "127.0.0.1:0", "--tables", tables])
            .args(&args)
            .env_remove("SYNC_TEST_UNSET_VARIABLE")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(needle) && !stderr.contains("secret@"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty());
    }
}
