//! Authentication (HS256 bearer tokens) and per-user tables (DESIGN.md section 9): no
//! user reads, changes or even detects another user's rows, whatever the request.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::{BOTH, Backend, Note, SECRET, V2, V3, keys, rows, send, start_on, token};
use reqwest::{Method, StatusCode};
use serde_json::{Value as Json, json};
use sync_runtime::{ProtocolVersion, PushCancel, PushStatus, Query, RetryPolicy, Store, SyncClient};
use sync_server::{Auth, Server, ServerBuilder, parse_tables};

on_both_backends!(
    requests_need_a_valid_bearer_token,
    owners_never_see_or_change_each_others_rows,
    filters_cannot_reach_around_the_owner_condition,
    the_client_sends_tokens_and_refreshes_after_a_401,
);

/// `Note` with a server-only owner column; `Todo` with a served one (tables file);
/// `Shared` without an owner.
fn builder() -> ServerBuilder {
    let tables = parse_tables(
        r#"
        [tables.Todo]
        columns = { userId = "string", text = "string" }
        owner_column = "userId"

        [tables.Shared]
        columns = { text = "string" }
        "#,
    )
    .unwrap();
    Server::builder()
        .table::<Note>()
        .owner_column("Note", "owner")
        .tables(tables)
        .auth(Auth::jwt_hs256(SECRET).unwrap())
}

/// A request as `user` (a valid token), or with no token.
fn as_user(s: &common::TestServer, user: Option<&str>, v: &str, method: Method, path: &str) -> reqwest::RequestBuilder {
    let req = s.req(v, method, path);
    match user {
        Some(user) => req.bearer_auth(token(user, true)),
        None => req,
    }
}

async fn requests_need_a_valid_bearer_token(b: Backend) {
    let s = start_on(&b, builder()).await;
    let good = token("alice", true);
    let wrong_secret = {
        let claims = json!({"sub": "alice", "exp": 4_000_000_000_i64});
        let key = jsonwebtoken::EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes");
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
    };
    for (method, path) in [
        (Method::GET, "/tables/Shared"),
        (Method::POST, "/tables/Shared"),
        (Method::GET, "/tables/Shared/x"),
        (Method::PATCH, "/tables/Shared/x"),
        (Method::DELETE, "/tables/Note/x"),
        (Method::GET, "/tables/Nope"),
    ] {
        for (auth, challenge) in [
            (None, "Bearer"),
            (Some("Basic YWxpY2U6c2VjcmV0".to_owned()), "Bearer error=\"invalid_request\""),
            (Some(format!("Bearer {}", token("alice", false))), "Bearer error=\"invalid_token\""),
            (Some(format!("Bearer {wrong_secret}")), "Bearer error=\"invalid_token\""),
            (Some("Bearer garbage".to_owned()), "Bearer error=\"invalid_token\""),
        ] {
            let mut req = s.req(V3, method.clone(), path).json(&json!({"text": "a"}));
            if let Some(auth) = &auth {
                req = req.header("authorization", auth);
            }
            let (status, headers, body) = send(req).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} {auth:?}");
            let www = headers.get("www-authenticate").expect("WWW-Authenticate").to_str().unwrap();
            assert!(www.starts_with(challenge), "{www}");
            assert_eq!(body["error"], "unauthorized");
            assert!(body["message"].is_string());
        }
    }
    // A valid token gets through; health checks need none.
    let req = s.req(V3, Method::POST, "/tables/Shared").bearer_auth(&good).json(&json!({"id": "x", "text": "a"}));
    assert_eq!(send(req).await.0, 201);
    let (status, _, body) = send(s.req(V3, Method::GET, "/tables/Shared/x").bearer_auth(&good)).await;
    assert_eq!((status, body["text"].clone()), (StatusCode::OK, json!("a")));
    assert_eq!(send(s.raw(Method::GET, "/healthz")).await.0, 200);
    // A shared table is shared by every authenticated user.
    let (status, _, _) = send(as_user(&s, Some("bob"), V3, Method::GET, "/tables/Shared/x")).await;
    assert_eq!(status, 200);
    s.stop().await;
}

async fn owners_never_see_or_change_each_others_rows(b: Backend) {
    let s = start_on(&b, builder()).await;
    let (alice, bob) = (Some("alice"), Some("bob"));
    for v in BOTH {
        for table in ["Note", "Todo"] {
            let item = |text: &str| match table {
                "Note" => json!({"id": format!("{v}-x"), "text": text, "n": 1}),
                // A client's owner value is ignored: the server writes the token's sub.
                _ => json!({"id": format!("{v}-x"), "text": text, "userId": "bob"}),
            };
            let path = format!("/tables/{table}/{v}-x");
            let req = as_user(&s, alice, v, Method::POST, &format!("/tables/{table}")).json(&item("alice's"));
            let (status, _, mine) = send(req).await;
            assert_eq!(status, 201, "{mine}");
            match table {
                "Note" => assert!(!keys(&mine).contains(&"owner".to_owned()), "a server-only owner is not served"),
                _ => assert_eq!(mine["userId"], "alice"),
            }

            // Bob: 404 for every request on alice's row (never 403, never 412 or 409).
            let update = if v == V2 { Method::PATCH } else { Method::PUT };
            let stale = format!("\"{}\"", "0".repeat(32));
            for (method, if_match) in [
                (Method::GET, None),
                (update.clone(), None),
                (update.clone(), Some(stale.clone())),
                (Method::DELETE, None),
                (Method::DELETE, Some(stale.clone())),
            ] {
                let mut req = as_user(&s, bob, v, method.clone(), &path).json(&item("bob's"));
                if let Some(tag) = &if_match {
                    req = req.header("If-Match", tag);
                }
                let (status, headers, body) = send(req).await;
                assert_eq!(status, 404, "{v} {table}: bob's {method} {if_match:?}: {body}");
                assert!(headers.get("etag").is_none() && !body.to_string().contains("alice"), "{body}");
            }
            if v == V2 {
                assert_eq!(send(as_user(&s, bob, v, Method::POST, &path)).await.0, 404, "undelete");
            }
            let (_, _, listed) = send(as_user(&s, bob, v, Method::GET, &format!("/tables/{table}"))).await;
            assert!(rows(v, &listed).is_empty(), "{listed}");

            // Bob may use the same id: it is his own row; alice's does not change.
            let req = as_user(&s, bob, v, Method::POST, &format!("/tables/{table}")).json(&item("bob's"));
            let (status, _, his) = send(req).await;
            assert_eq!(status, 201, "{his}");
            assert_eq!(his["text"], "bob's");
            let (_, _, still) = send(as_user(&s, alice, v, Method::GET, &path)).await;
            assert_eq!(still, mine);
            // His delete deletes his.
            assert!(send(as_user(&s, bob, v, Method::DELETE, &path)).await.0.is_success());
            assert_eq!(send(as_user(&s, alice, v, Method::GET, &path)).await.0, 200);
            // Alice cannot give her row away either.
            if table == "Todo" {
                let req = as_user(&s, alice, v, update.clone(), &path).json(&json!({"text": "t", "userId": "bob"}));
                let (status, _, body) = send(req).await;
                assert_eq!((status.as_u16(), body["userId"].clone()), (200, json!("alice")), "{body}");
                let req = as_user(&s, bob, v, Method::GET, &format!("/tables/{table}?__includedeleted=true"));
                let (_, _, listed) = send(req).await;
                let here: Vec<Json> = rows(v, &listed).into_iter().filter(|r| r["id"] == format!("{v}-x")).collect();
                assert_eq!(here.len(), 1, "bob sees his tombstone only: {listed}");
                assert_eq!((here[0]["userId"].clone(), here[0]["deleted"].clone()), (json!("bob"), json!(true)));
            }
        }
    }
    s.stop().await;
}

async fn filters_cannot_reach_around_the_owner_condition(b: Backend) {
    let s = start_on(&b, builder()).await;
    for (user, n) in [("alice", 3), ("bob", 2)] {
        for i in 0..n {
            for table in ["Note", "Todo"] {
                let body = json!({"id": format!("{user}{i}"), "text": format!("{user} {i}"), "n": i});
                let body = if table == "Note" { body } else { json!({"id": body["id"], "text": body["text"]}) };
                let req = as_user(&s, Some(user), V3, Method::POST, &format!("/tables/{table}")).json(&body);
                assert_eq!(send(req).await.0, 201);
            }
        }
    }
    let list = |table: &str, query: Vec<(&str, &str)>| {
        let req = as_user(&s, Some("bob"), V3, Method::GET, &format!("/tables/{table}")).query(&query);
        async move {
            let (status, _, body) = send(req).await;
            (status, body)
        }
    };
    let ids =
        |body: &Json| -> Vec<String> { rows(V3, body).iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect() };
    for filter in [
        "userId eq 'alice'",
        "userId ne 'bob'",
        "userId ne 'x' or true",
        "not (userId eq 'bob')",
        "id eq 'alice0'",
        "startswith(id, 'alice') or id ne ''",
        "userId eq null or userId ne null",
        "true",
    ] {
        let (status, body) =
            list("Todo", vec![("$filter", filter), ("$count", "true"), ("__includedeleted", "true")]).await;
        assert_eq!(status, 200, "{filter}: {body}");
        assert!(ids(&body).iter().all(|id| id.starts_with("bob")), "{filter}: {body}");
        assert!(body["count"].as_u64().unwrap() <= 2, "{filter}: {body}");
    }
    let (_, body) = list("Todo", vec![("$filter", "userId ne 'x' or true"), ("$orderby", "userId desc")]).await;
    assert_eq!(ids(&body), ["bob0", "bob1"]);
    // A server-only owner column cannot be named at all.
    for (name, value) in [("$filter", "owner eq 'alice'"), ("$orderby", "owner"), ("$select", "id,owner")] {
        let (status, body) = list("Note", vec![(name, value)]).await;
        assert_eq!(status, 400, "{name}={value}: {body}");
    }
    let req = as_user(&s, Some("bob"), V3, Method::POST, "/tables/Note")
        .json(&json!({"text": "t", "n": 1, "owner": "alice"}));
    let (status, _, body) = send(req).await;
    assert_eq!(status, 400, "{body}");
    // Each user's incremental reader sees only that user's rows.
    let (_, body) = list("Note", vec![("$orderby", "updatedAt,id"), ("$count", "true")]).await;
    assert_eq!((ids(&body), body["count"].clone()), (vec!["bob0".to_owned(), "bob1".to_owned()], json!(2)));
    s.stop().await;
}

/// A token provider as an app would write one: it hands out its current token, and
/// a new one when asked to refresh.
#[derive(Clone)]
struct Tokens {
    user: String,
    current: Arc<Mutex<String>>,
    refreshes: Arc<AtomicUsize>,
    /// Whether a refresh yields a valid token.
    refresh_works: bool,
}

impl Tokens {
    fn new(user: String, first_valid: bool, refresh_works: bool) -> Tokens {
        Tokens {
            current: Arc::new(Mutex::new(token(&user, first_valid))),
            user,
            refreshes: Arc::new(AtomicUsize::new(0)),
            refresh_works,
        }
    }

    async fn get(self, refresh: bool) -> Option<String> {
        if refresh {
            self.refreshes.fetch_add(1, Ordering::SeqCst);
            *self.current.lock().unwrap() = token(&self.user, self.refresh_works);
        }
        Some(self.current.lock().unwrap().clone())
    }
}

async fn client(url: &str, protocol: ProtocolVersion, tokens: &Tokens) -> (Store, SyncClient) {
    let store = Store::open_in_memory().await.unwrap();
    store.table::<Note>().await.unwrap();
    let tokens = tokens.clone();
    let client = SyncClient::builder(store.clone(), url)
        .protocol(protocol)
        .retry(RetryPolicy::none())
        .token_provider(move |refresh| tokens.clone().get(refresh))
        .build()
        .unwrap();
    (store, client)
}

async fn the_client_sends_tokens_and_refreshes_after_a_401(b: Backend) {
    let s = start_on(&b, builder()).await;
    for protocol in [ProtocolVersion::V2, ProtocolVersion::V3] {
        // Alice starts with an expired token: the first request gets 401, the client
        // asks for a fresh one once, and everything after goes through.
        // Users of their own in each round, so that rounds do not see each other's rows.
        let user = |name: &str| format!("{name}-{protocol}");
        let alice_tokens = Tokens::new(user("alice"), false, true);
        let (alice, alice_client) = client(&s.url, protocol, &alice_tokens).await;
        let bob_tokens = Tokens::new(user("bob"), true, true);
        let (bob, bob_client) = client(&s.url, protocol, &bob_tokens).await;

        let notes = alice.table::<Note>().await.unwrap();
        let shared_id = "same-id".to_owned();
        notes.insert(Note { id: shared_id.clone(), ..Note::new("alice's", 1) }).await.unwrap();
        notes.insert(Note::new("alice's other", 2)).await.unwrap();
        let report = alice_client.sync::<Note>().await.unwrap();
        assert_eq!((report.push.pushed, report.push.errors), (2, 0), "{report:?}");
        assert_eq!(alice_tokens.refreshes.load(Ordering::SeqCst), 1, "one refresh, after the first 401");

        // Bob uses the same id: his own row. He never sees alice's.
        let his = bob.table::<Note>().await.unwrap();
        his.insert(Note { id: shared_id.clone(), ..Note::new("bob's", 3) }).await.unwrap();
        let report = bob_client.sync::<Note>().await.unwrap();
        assert_eq!((report.push.pushed, report.push.errors), (1, 0), "{report:?}");
        assert_eq!(bob_tokens.refreshes.load(Ordering::SeqCst), 0);
        let texts = |mut notes: Vec<Note>| {
            notes.sort_by(|a, b| a.text.cmp(&b.text));
            notes.into_iter().map(|n| n.text).collect::<Vec<_>>()
        };
        assert_eq!(texts(his.fetch(&Query::new()).await.unwrap()), ["bob's"]);
        alice_client.sync::<Note>().await.unwrap();
        assert_eq!(texts(notes.fetch(&Query::new()).await.unwrap()), ["alice's", "alice's other"]);
        assert_eq!(alice_tokens.refreshes.load(Ordering::SeqCst), 1);

        // A refresh that does not help: the push stops as refused, the change stays queued.
        let mallory_tokens = Tokens::new(user("mallory"), false, false);
        let (mallory, mallory_client) = client(&s.url, protocol, &mallory_tokens).await;
        mallory.table::<Note>().await.unwrap().insert(Note::new("m", 0)).await.unwrap();
        let err = mallory_client.push().await.unwrap_err();
        assert!(err.is_auth() && err.http_status() == Some(401), "{err:?}");
        let report = err.push_report().unwrap();
        assert!(matches!(report.status, PushStatus::Cancelled(PushCancel::Auth { status: 401, .. })), "{report:?}");
        assert_eq!(mallory.pending_count().await.unwrap(), 1);
        assert_eq!(mallory_tokens.refreshes.load(Ordering::SeqCst), 1);
    }
    s.stop().await;
}

#[tokio::test]
async fn owned_tables_need_authentication() {
    let err = Server::builder().table::<Note>().owner_column("Note", "owner").build().await.unwrap_err();
    assert!(err.to_string().contains("owner") && err.to_string().contains("auth"), "{err}");
    let tables = parse_tables("[tables.T]\ncolumns = { text = \"string\" }\nowner_column = \"userId\"\n").unwrap();
    assert!(Server::builder().tables(tables.clone()).build().await.is_err());
    assert!(Server::builder().tables(tables).auth(Auth::jwt_hs256(SECRET).unwrap()).build().await.is_ok());
    let err = Server::builder().table::<Note>().owner_column("Nope", "owner").build().await.unwrap_err();
    assert!(err.to_string().contains("Nope"), "{err}");
    assert!(Auth::jwt_hs256("too short").is_err());
}
