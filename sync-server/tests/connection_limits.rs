//! Issue 19: timeouts and connection limits. Idle, slow and held connections are closed
//! by the header-read, body-read and idle timeouts, and a server whose descriptors run
//! out (run here as a child under `prlimit --nofile=256`) keeps answering health checks
//! and writes while 300 idle connections are held, closing the longest-idle ones rather
//! than refusing newcomers, without spinning.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{V3, builder, start};
use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection (or `limit` passes); answers what was
/// read and when the close came.
async fn read_until_closed(tcp: &mut TcpStream, limit: Duration) -> (String, Option<Duration>) {
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0_u8; 4096];
    loop {
        match tokio::time::timeout_at((started + limit).into(), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&answer).into_owned(), Some(started.elapsed())),
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&answer).into_owned(), None),
        }
    }
}

#[tokio::test]
async fn idle_slow_header_and_slow_body_connections_are_closed_by_their_timeouts() {
    let header = Duration::from_millis(400);
    let idle = Duration::from_millis(1500);
    let body = Duration::from_millis(400);
    let s = start(builder().header_read_timeout(header).idle_timeout(idle).body_read_timeout(body)).await;
    let addr = s.url.trim_start_matches("http://").to_owned();

    // A connection that sends nothing: closed after the header-read timeout.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    let closed = closed.expect("a silent connection is closed");
    assert!(closed >= header - Duration::from_millis(50), "{closed:?}");

    // A head dripped a byte at a time, never finished: closed too.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    let started = Instant::now();
    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed_while_writing = false;
    for byte in head {
        if slow.write_all(&[*byte]).await.is_err() {
            closed_while_writing = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    if !closed_while_writing {
        let (answer, closed) = read_until_closed(&mut slow, Duration::from_secs(3)).await;
        assert!(closed.is_some(), "a dripped head is cut: {answer}");
    }
    assert!(started.elapsed() < Duration::from_secs(3), "cut after {:?}", started.elapsed());

    // Kept alive: the idle timeout (longer than the header timeout) applies between
    // requests, and then the connection is closed.
    let mut kept = TcpStream::connect(&addr).await.unwrap();
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    kept.write_all(request).await.unwrap();
    let mut buf = [0_u8; 1024];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    tokio::time::sleep(header * 2).await;
    kept.write_all(request).await.unwrap();
    let n = kept.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "still open after twice the header timeout"
    );
    let (_, closed) = read_until_closed(&mut kept, Duration::from_secs(5)).await;
    let closed = closed.expect("an idle kept-alive connection is closed");
    assert!(closed >= idle - Duration::from_millis(100), "{closed:?}");

    // A body that stops arriving: 408, and the connection is closed.
    let mut stalled = TcpStream::connect(&addr).await.unwrap();
    let head = "POST /tables/TodoItem HTTP/1.1\r\nHost: x\r\nZUMO-API-VERSION: 3.0.0\r\n\
                Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"text\":";
    stalled.write_all(head.as_bytes()).await.unwrap();
    let (answer, closed) = read_until_closed(&mut stalled, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    assert!(closed.is_some());

    // And the server serves on.
    let (status, _, _) = common::send(s.req(V3, Method::GET, "/tables/TodoItem")).await;
    assert_eq!(status, 200);
    s.stop().await;
}

/// The server binary under a descriptor limit, on a SQLite file.
struct Child256 {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Child256 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_with_descriptor_limit(limit: u32, extra: &[&str]) -> Child256 {
    let dir = tempfile::tempdir().unwrap();
    let tables = dir.path().join("tables.toml");
    std::fs::write(&tables, "[tables.TodoItem]\ncolumns = { text = \"string\", complete = \"bool\" }\n").unwrap();
    let db = format!("sqlite:{}", dir.path().join("db.sqlite").display());
    let mut child = Command::new("prlimit")
        .arg(format!("--nofile={limit}:{limit}"))
        .arg(env!("CARGO_BIN_EXE_sync-server"))
        .args(["--db", &db, "--listen", "127.0.0.1:0", "--tables"])
        .arg(&tables)
        // The held connections stay until evicted: the timeouts are not what frees them here.
        .args(["--header-read-timeout", "120", "--idle-timeout", "120"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("prlimit runs the server");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("{line}")).to_owned();
    Child256 { child, url, _dir: dir }
}

/// CPU seconds the process has used (user + system), from `/proc`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

async fn three_hundred_idle_connections_under_a_descriptor_limit(extra: &[&str]) {
    let server = spawn_with_descriptor_limit(256, extra);
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..300 {
        held.push(TcpStream::connect(&addr).await.expect("the kernel takes the connection"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Health checks and writes still succeed, each on a new connection.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(5)).build().unwrap();
    let mut slowest = Duration::ZERO;
    for i in 0..30 {
        let started = Instant::now();
        let health = client.get(format!("{}/healthz", server.url)).send().await;
        assert_eq!(health.map(|r| r.status().as_u16()).ok(), Some(200), "health check {i}");
        let write = client
            .post(format!("{}/tables/TodoItem", server.url))
            .header("ZUMO-API-VERSION", V3)
            .json(&json!({"id": format!("w{i}"), "text": "x", "complete": false}))
            .send()
            .await;
        assert_eq!(write.map(|r| r.status().as_u16()).ok(), Some(201), "write {i}");
        slowest = slowest.max(started.elapsed());
    }
    assert!(slowest < Duration::from_secs(2), "slowest health check + write: {slowest:?}");

    // Holding the connections costs no CPU: no accept loop spinning on EMFILE.
    let pid = server.child.id();
    let before = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_seconds(pid) - before;
    assert!(used < 0.3, "{used} CPU seconds in 2 s while holding connections");

    // Every write is there.
    let list = client
        .get(format!("{}/tables/TodoItem?$top=100", server.url))
        .header("ZUMO-API-VERSION", V3)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = list.json().await.unwrap();
    assert_eq!(body["items"].as_array().map(Vec::len), Some(30));
    drop(held);
}

#[tokio::test]
async fn three_hundred_idle_connections_at_a_256_descriptor_limit_do_not_lock_out_requests() {
    // The default cap, from the descriptor limit: new connections close the longest-idle.
    three_hundred_idle_connections_under_a_descriptor_limit(&[]).await;
}

#[tokio::test]
async fn out_of_descriptors_on_accept_closes_the_longest_idle_and_backs_off() {
    // A cap above the limit: accept itself fails with EMFILE.
    three_hundred_idle_connections_under_a_descriptor_limit(&["--max-connections", "1000"]).await;
}
