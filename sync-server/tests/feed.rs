//! The change feed (`GET /feed`) against real servers on 127.0.0.1: nudges after
//! commits (across two instances on PostgreSQL), owner isolation on the wire, no nudge
//! for a refused write, heartbeats, the subscriber cap, a subscriber that never reads,
//! shutdown, refusals, and 1,000 subscribers at once.
//!
//! Time bounds here are liveness bounds (a nudge that never comes fails the test
//! instead of hanging it), never measurements: those are in the `feed_subscribers`
//! benchmark.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Backend, SECRET, TestServer, V3, send, start, token};
use reqwest::{Method, StatusCode};
use serde_json::{Value as Json, json};
use sync_server::{Auth, Server, ServerBuilder, parse_tables};
use tokio::io::AsyncWriteExt as _;

on_both_backends!(
    a_commit_nudges_a_subscriber_at_once(flavor = "multi_thread", worker_threads = 2),
    owners_hear_only_of_their_own_rows(flavor = "multi_thread", worker_threads = 2),
    refused_writes_nudge_nobody,
);

/// How long a test waits for something that must come.
const BOUND: Duration = Duration::from_secs(20);

const TABLES: &str = r#"
[tables.Shared]
columns = { text = "string" }

[tables.Other]
columns = { text = "string" }

[tables.Mine]
columns = { text = "string" }
owner_column = "owner"
"#;

/// The three tables above, with JWT auth.
fn builder() -> ServerBuilder {
    Server::builder().tables(parse_tables(TABLES).unwrap()).auth(Auth::jwt_hs256(SECRET).unwrap())
}

/// A subscriber's server and a writer's: two instances on one PostgreSQL database (one
/// relaying to the other), or one SQLite server twice.
async fn two_instances(b: &Backend, make: impl Fn() -> ServerBuilder) -> (Arc<TestServer>, Arc<TestServer>) {
    match b {
        Backend::Sqlite => {
            let server = Arc::new(start(make()).await);
            (Arc::clone(&server), server)
        }
        Backend::Postgres(_) => (Arc::new(start(b.apply(make())).await), Arc::new(start(b.apply(make())).await)),
    }
}

/// One feed stream, read block by block (a block is the text before a blank line).
struct Feed {
    response: reqwest::Response,
    buffer: String,
}

impl Feed {
    /// Opens `/feed{query}` as `user` (anonymous when `None`) and checks the answer's head.
    async fn open(server: &TestServer, query: &str, user: Option<&str>) -> Feed {
        let mut request = server.raw(Method::GET, &format!("/feed{query}"));
        if let Some(user) = user {
            request = request.bearer_auth(token(user, true));
        }
        let response = tokio::time::timeout(BOUND, request.send()).await.expect("the feed answers").unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        assert_eq!(response.headers()["cache-control"], "no-cache");
        Feed { response, buffer: String::new() }
    }

    /// The next block, `None` when the server ended the stream.
    async fn block(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block = self.buffer[..end].to_owned();
                self.buffer.drain(..end + 2);
                return Some(block);
            }
            let chunk = tokio::time::timeout(BOUND, self.response.chunk()).await.expect("the stream goes on");
            match chunk {
                Ok(Some(bytes)) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The next event, heartbeats skipped: its name and its data.
    async fn event(&mut self) -> (String, Json) {
        loop {
            let block = self.block().await.expect("an event, not the end of the stream");
            if block == ": heartbeat" {
                continue;
            }
            let (name, data) = block.split_once('\n').expect("two lines");
            let name = name.strip_prefix("event: ").expect("an event line");
            let data = data.strip_prefix("data: ").expect("a data line");
            return (name.to_owned(), serde_json::from_str(data).unwrap());
        }
    }

    /// The tables of the next `change` event.
    async fn change(&mut self) -> Json {
        let (name, data) = self.event().await;
        assert_eq!(name, "change", "{data}");
        data["tables"].clone()
    }
}

async fn write(server: &TestServer, user: &str, table: &str, id: &str) {
    let request = server.req(V3, Method::POST, &format!("/tables/{table}")).bearer_auth(token(user, true));
    let (status, _, body) = send(request.json(&json!({ "id": id, "text": "x" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn a_commit_nudges_a_subscriber_at_once(b: Backend) {
    let (subscriber, writer) = two_instances(&b, builder).await;
    let mut feed = Feed::open(&subscriber, "?tables=Shared,Mine", Some("alice")).await;
    // The whole ready event, byte for byte.
    assert_eq!(
        feed.block().await.unwrap(),
        "event: ready\ndata: {\"tables\":[\"Mine\",\"Shared\"],\"heartbeatSeconds\":15}"
    );
    write(&writer, "bob", "Shared", "s1").await;
    assert_eq!(feed.block().await.unwrap(), "event: change\ndata: {\"tables\":[\"Shared\"]}");
    write(&writer, "alice", "Mine", "m1").await;
    assert_eq!(feed.change().await, json!(["Mine"]));
    // A table not subscribed to says nothing.
    write(&writer, "alice", "Other", "o1").await;
    write(&writer, "alice", "Shared", "s2").await;
    assert_eq!(feed.change().await, json!(["Shared"]));
}

async fn owners_hear_only_of_their_own_rows(b: Backend) {
    let (subscriber, writer) = two_instances(&b, builder).await;
    let mut alice = Feed::open(&subscriber, "", Some("alice")).await;
    let mut bob = Feed::open(&subscriber, "", Some("bob")).await;
    assert_eq!(alice.event().await.1["tables"], json!(["Mine", "Other", "Shared"]));
    bob.event().await;

    for n in 0..5 {
        write(&writer, "alice", "Mine", &format!("a{n}")).await;
    }
    // A write both may see.
    write(&writer, "carol", "Shared", "s1").await;
    // Alice hears of her rows (in one event or more), then of the shared one.
    while !alice.change().await.as_array().unwrap().contains(&json!("Shared")) {}
    // Had alice's writes reached bob's stream, `Mine` would come first or merged.
    assert_eq!(bob.change().await, json!(["Shared"]));
    write(&writer, "bob", "Mine", "b1").await;
    assert_eq!(bob.change().await, json!(["Mine"]));
    // The same for alice: bob's row must not come before, nor with, the next shared write.
    write(&writer, "carol", "Other", "o1").await;
    assert_eq!(alice.change().await, json!(["Other"]));
    write(&writer, "alice", "Mine", "a9").await;
    assert_eq!(alice.change().await, json!(["Mine"]));
    assert_eq!(bob.change().await, json!(["Other"]));
}

async fn refused_writes_nudge_nobody(b: Backend) {
    let (subscriber, writer) = two_instances(&b, builder).await;
    let mut feed = Feed::open(&subscriber, "?tables=Shared,Other", Some("alice")).await;
    feed.event().await;
    write(&writer, "alice", "Shared", "s1").await;
    assert_eq!(feed.change().await, json!(["Shared"]));

    let as_alice = |method: Method, path: &str| writer.req(V3, method, path).bearer_auth(token("alice", true));
    let (status, _, _) =
        send(as_alice(Method::POST, "/tables/Shared").json(&json!({ "id": "s1", "text": "again" }))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let stale = as_alice(Method::PUT, "/tables/Shared/s1").header("If-Match", "\"0000\"");
    assert_eq!(send(stale.json(&json!({ "id": "s1", "text": "y" }))).await.0, StatusCode::PRECONDITION_FAILED);
    let missing = as_alice(Method::PUT, "/tables/Shared/nope").json(&json!({ "id": "nope", "text": "y" }));
    assert_eq!(send(missing).await.0, StatusCode::NOT_FOUND);
    assert_eq!(send(as_alice(Method::DELETE, "/tables/Shared/nope")).await.0, StatusCode::NOT_FOUND);
    let bad = as_alice(Method::POST, "/tables/Shared").json(&json!({ "id": "s2", "text": 5 }));
    assert_eq!(send(bad).await.0, StatusCode::BAD_REQUEST);
    let anonymous = writer.req(V3, Method::POST, "/tables/Shared").json(&json!({ "id": "s3", "text": "x" }));
    assert_eq!(send(anonymous).await.0, StatusCode::UNAUTHORIZED);

    // The next change is the next committed write, alone.
    write(&writer, "alice", "Other", "o1").await;
    assert_eq!(feed.change().await, json!(["Other"]));
    // Deletes and undeletes nudge.
    assert_eq!(send(as_alice(Method::DELETE, "/tables/Shared/s1")).await.0, StatusCode::NO_CONTENT);
    assert_eq!(feed.change().await, json!(["Shared"]));
}

#[tokio::test]
async fn heartbeats_keep_a_silent_stream_alive() {
    // An idle timeout shorter than the heartbeat: a stream is not an idle connection.
    let builder = builder().feed_heartbeat(Duration::from_millis(100)).idle_timeout(Duration::from_millis(30));
    let server = start(builder).await;
    let mut feed = Feed::open(&server, "?tables=Shared", Some("alice")).await;
    let ready = feed.event().await;
    assert_eq!(ready, ("ready".into(), json!({ "tables": ["Shared"], "heartbeatSeconds": 0.1 })));
    for _ in 0..5 {
        assert_eq!(feed.block().await.unwrap(), ": heartbeat");
    }
}

#[tokio::test]
async fn the_endpoint_refuses_what_it_must() {
    let server = start(builder()).await;
    // Unknown table: 404 naming it.
    let request = server.raw(Method::GET, "/feed?tables=Shared,Nope").bearer_auth(token("alice", true));
    let (status, _, body) = send(request).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("`Nope`"), "{body}");
    // Bad or missing token: 401, as on the tables.
    let (status, headers, _) = send(server.raw(Method::GET, "/feed")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.contains_key("www-authenticate"));
    let expired = server.raw(Method::GET, "/feed").bearer_auth(token("alice", false));
    assert_eq!(send(expired).await.0, StatusCode::UNAUTHORIZED);
    // Only GET.
    let post = server.raw(Method::POST, "/feed").bearer_auth(token("alice", true));
    assert_eq!(send(post).await.0, StatusCode::METHOD_NOT_ALLOWED);
    // With the protocol header too, table names in any case.
    let request = server.req(V3, Method::GET, "/feed?tables=shared").bearer_auth(token("alice", true));
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // /tables answers tell of the feed, refusals too.
    let (_, headers, _) = send(server.req(V3, Method::GET, "/tables/Shared").bearer_auth(token("a", true))).await;
    assert_eq!(headers["x-sync-feed"], "/feed");
    assert_eq!(send(server.req(V3, Method::GET, "/tables/Shared")).await.1["x-sync-feed"], "/feed");
}

#[tokio::test]
async fn a_server_without_the_feed_answers_404_as_the_azure_family() {
    let server = start(builder().feed(false)).await;
    let (status, _, _) = send(server.raw(Method::GET, "/feed").bearer_auth(token("alice", true))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, headers, _) = send(server.req(V3, Method::GET, "/tables/Shared").bearer_auth(token("a", true))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!headers.contains_key("x-sync-feed"));
}

#[tokio::test]
async fn anonymous_servers_serve_the_feed_to_anyone() {
    let tables = parse_tables("[tables.Shared]\ncolumns = { text = \"string\" }\n").unwrap();
    let server = start(Server::builder().tables(tables)).await;
    let mut feed = Feed::open(&server, "", None).await;
    assert_eq!(feed.event().await.1["tables"], json!(["Shared"]));
    let (status, _, _) = send(server.req(V3, Method::POST, "/tables/Shared").json(&json!({ "text": "x" }))).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(feed.change().await, json!(["Shared"]));
}

#[tokio::test]
async fn beyond_the_cap_subscribers_get_503_with_retry_after() {
    let server = start(builder().feed_max_subscribers(2)).await;
    let first = Feed::open(&server, "", Some("a")).await;
    let _second = Feed::open(&server, "", Some("b")).await;
    let refused = server.raw(Method::GET, "/feed").bearer_auth(token("c", true));
    let (status, headers, _) = send(refused).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "15");
    let metrics = server.raw(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("sync_server_feed_subscribers 2"), "{metrics}");
    // A place freed is taken again.
    drop(first);
    tokio::time::timeout(BOUND, async {
        loop {
            let response = server.raw(Method::GET, "/feed").bearer_auth(token("c", true)).send().await.unwrap();
            if response.status() == StatusCode::OK {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the freed place is taken");
}

#[tokio::test]
async fn shutdown_ends_the_streams_at_once() {
    let server = start(builder()).await;
    let mut feed = Feed::open(&server, "", Some("alice")).await;
    feed.event().await;
    // Would wait for the stream (heartbeats every 15 s, forever) if the feed did not end it.
    tokio::time::timeout(BOUND, server.stop()).await.expect("shutdown does not wait for the feed");
    assert_eq!(feed.block().await, None, "the stream ended");
}

/// The value of a gauge in `/metrics`.
async fn gauge(server: &TestServer, name: &str) -> i64 {
    let text = server.raw(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_is_dropped_and_writers_go_on() {
    // Twenty tables with long names, written in turn: each change event is large, and
    // fills the socket's buffers sooner (events come at most every 25 ms).
    let names: Vec<String> = (0..20).map(|n| format!("T{n:02}{}", "x".repeat(60))).collect();
    let file: String = names.iter().map(|t| format!("[tables.{t}]\ncolumns = {{ text = \"string\" }}\n")).collect();
    let server = start(
        Server::builder()
            .tables(parse_tables(&file).unwrap())
            .feed_heartbeat(Duration::from_millis(200))
            .feed_stall_timeout(Duration::from_millis(300)),
    )
    .await;
    // A subscriber with a small receive buffer that sends its request and never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    let addr = server.url.trim_start_matches("http://").parse().unwrap();
    let mut stalled = socket.connect(addr).await.unwrap();
    stalled.write_all(b"GET /feed HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    // A subscriber that reads all along, counting the changes it hears.
    let mut reader = Feed::open(&server, "", None).await;
    reader.event().await;
    let heard = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reading = {
        let heard = Arc::clone(&heard);
        tokio::spawn(async move {
            while let Some(block) = reader.block().await {
                if block.starts_with("event: change") {
                    heard.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        })
    };
    tokio::time::timeout(BOUND, async {
        while gauge(&server, "sync_server_feed_subscribers").await < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();

    let mut writes = 0;
    let dropped = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            for table in &names {
                let path = format!("/tables/{table}");
                let (status, _, _) = send(server.req(V3, Method::POST, &path).json(&json!({ "text": "x" }))).await;
                assert_eq!(status, StatusCode::CREATED);
                writes += 1;
            }
            if gauge(&server, "sync_server_feed_subscribers").await == 1 {
                break;
            }
        }
    })
    .await;
    assert!(dropped.is_ok(), "the subscriber that never reads was not dropped after {writes} writes");
    // The stalled one was dropped: its socket reads the end after what was buffered.
    let mut rest = Vec::new();
    let end = tokio::time::timeout(BOUND, tokio::io::AsyncReadExt::read_to_end(&mut stalled, &mut rest)).await;
    assert!(end.expect("the server closed the stalled connection").is_ok() || !rest.is_empty());
    // The reader heard on, and still does.
    let before = heard.load(std::sync::atomic::Ordering::SeqCst);
    assert!(before > 0);
    let path = format!("/tables/{}", names[0]);
    assert_eq!(send(server.req(V3, Method::POST, &path).json(&json!({ "text": "x" }))).await.0, StatusCode::CREATED);
    tokio::time::timeout(BOUND, async {
        while heard.load(std::sync::atomic::Ordering::SeqCst) == before {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the reading subscriber hears on");
    assert_eq!(gauge(&server, "sync_server_feed_subscribers").await, 1);
    reading.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_subscribers_each_hear_of_the_writes() {
    const SUBSCRIBERS: usize = 1000;
    let server = Arc::new(start(builder().feed_max_subscribers(SUBSCRIBERS)).await);
    let mut readers = Vec::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(SUBSCRIBERS);
    for n in 0..SUBSCRIBERS {
        let server = Arc::clone(&server);
        let ready = ready_tx.clone();
        readers.push(tokio::spawn(async move {
            // Half shared-table listeners, half owners of their own rows.
            let user = format!("user{}", n % 10);
            let mut feed = Feed::open(&server, "?tables=Shared,Mine", Some(&user)).await;
            feed.event().await;
            ready.send(()).await.unwrap();
            let mut heard = Vec::new();
            while heard.len() < 2 {
                for table in feed.change().await.as_array().unwrap() {
                    let table = table.as_str().unwrap().to_owned();
                    if !heard.contains(&table) {
                        heard.push(table);
                    }
                }
            }
        }));
    }
    for _ in 0..SUBSCRIBERS {
        tokio::time::timeout(Duration::from_secs(120), ready_rx.recv()).await.expect("subscribers join").unwrap();
    }
    assert_eq!(gauge(&server, "sync_server_feed_subscribers").await, SUBSCRIBERS as i64);
    // Four writers: shared rows, and each user's own rows.
    let mut writers = Vec::new();
    for w in 0..4 {
        let server = Arc::clone(&server);
        writers.push(tokio::spawn(async move {
            for n in 0..25 {
                write(&server, "writer", "Shared", &format!("s{w}-{n}")).await;
                write(&server, &format!("user{}", (w * 25 + n) % 10), "Mine", &format!("m{w}-{n}")).await;
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    for reader in readers {
        tokio::time::timeout(Duration::from_secs(120), reader).await.expect("every subscriber hears").unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_relay_reconnects_and_nudges_everyone() {
    let Some(schema) = common::PgSchema::create("the_postgres_relay_reconnects_and_nudges_everyone").await else {
        return;
    };
    let b = schema.backend();
    let (subscriber, writer) = two_instances(&b, builder).await;
    let mut feed = Feed::open(&subscriber, "?tables=Shared,Other", Some("alice")).await;
    feed.event().await;
    write(&writer, "alice", "Shared", "s1").await;
    assert_eq!(feed.change().await, json!(["Shared"]));

    // Cut the subscriber's instance's relay connection: its last statement was its
    // LISTEN (the writer's relay has sent a notification since).
    let Backend::Postgres(url) = &b else { unreachable!() };
    let name = url.rsplit("search_path%3D").next().unwrap();
    let admin = common::pg_client(url).await;
    let listen = format!("LISTEN \"sync_feed_{name}\"");
    let cut: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query = $1 AND pid <> pg_backend_pid()",
            &[&listen],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(cut, 1);
    // Back: whatever was missed meanwhile, the subscriber is told to look at everything.
    assert_eq!(feed.change().await, json!(["Other", "Shared"]));
    // And the other instance's writes reach it again.
    write(&writer, "alice", "Other", "o1").await;
    assert_eq!(feed.change().await, json!(["Other"]));
}
