//! Several server instances on one database serve clients interchangeably (DESIGN.md
//! section 9: nothing between requests lives in a server): a seeded random sync
//! workload with clients alternating between two instances converges, and two real
//! binaries with JWT auth serve the same rows.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{Backend, Note, Rng, SECRET, TestServer, V3, all_rows, send, start, token};
use serde_json::json;
use sync_runtime::{ProtocolVersion, Query, RetryPolicy, ServerWins, Store, SyncClient};
use sync_server::Server;

const CLIENTS: u64 = 4;
const ROUNDS: u64 = 8;

on_both_backends!(
    clients_alternating_between_two_instances_converge(flavor = "multi_thread", worker_threads = 2),
    two_binaries_serve_one_database_with_jwt_auth,
);

/// A device: a store and one client per server instance (the same store behind both).
struct Device {
    store: Store,
    clients: [SyncClient; 2],
}

async fn device(i: u64, servers: &[Arc<TestServer>]) -> Device {
    let store = Store::open_in_memory().await.unwrap();
    store.table::<Note>().await.unwrap();
    // Half the devices speak v2, half v3: both generations on one table.
    let protocol = if i % 2 == 0 { ProtocolVersion::V2 } else { ProtocolVersion::V3 };
    let client = |s: &TestServer| {
        SyncClient::builder(store.clone(), s.url.clone())
            .protocol(protocol)
            .page_size(7)
            .retry(RetryPolicy::none())
            .conflict_handler::<Note>(ServerWins)
            .build()
            .unwrap()
    };
    let clients = [client(&servers[0]), client(&servers[1])];
    Device { store, clients }
}

/// Syncs through one instance, then settles the errors a concurrent workload makes: an
/// update of a row another device deleted (404/410) is dropped, the row being gone.
async fn sync(device: &Device, instance: usize) {
    let report = device.clients[instance].sync::<Note>().await.unwrap();
    assert!(report.push.is_complete(), "{report:?}");
    let notes = device.store.table::<Note>().await.unwrap();
    for error in notes.errors().await.unwrap() {
        assert!(matches!(error.status(), Some(404 | 410)), "only vanished rows fail: {:?}", error.record);
        notes.resolve_discard(&error).await.unwrap();
    }
}

async fn clients_alternating_between_two_instances_converge(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let mut servers = Vec::new();
    for _ in 0..2 {
        let builder = Server::builder().table::<Note>().database(b.shared_database(dir.path()));
        servers.push(Arc::new(start(builder).await));
    }
    let mut devices = Vec::new();
    for i in 0..CLIENTS {
        devices.push(Arc::new(device(i, &servers).await));
    }

    for round in 0..ROUNDS {
        let mut tasks = Vec::new();
        for (i, device) in devices.iter().enumerate() {
            let device = Arc::clone(device);
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng::new(0xC0FFEE ^ (round << 8) ^ i as u64);
                let notes = device.store.table::<Note>().await.unwrap();
                for op in 0..1 + rng.below(4) {
                    let local = notes.fetch(&Query::new()).await.unwrap();
                    match (rng.below(10), local.is_empty()) {
                        (0..=3, _) | (_, true) => {
                            notes
                                .insert(Note::new(format!("d{i} r{round} o{op}"), rng.below(100) as i64))
                                .await
                                .unwrap();
                        }
                        (4..=7, false) => {
                            let mut note = local[rng.below(local.len() as u64) as usize].clone();
                            note.text = format!("edited by d{i} in r{round}");
                            note.n += 1;
                            notes.update(&note).await.unwrap();
                        }
                        _ => {
                            let note = &local[rng.below(local.len() as u64) as usize];
                            notes.delete(&note.id).await.unwrap();
                        }
                    }
                }
                // Alternate instances: device i uses instance (round + i) % 2.
                sync(&device, ((round + i as u64) % 2) as usize).await;
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }

    // Settle: everyone pushes what is left, then everyone pulls through the other instance.
    for device in &devices {
        sync(device, 0).await;
    }
    for device in &devices {
        sync(device, 1).await;
    }

    let server: Vec<(String, String, i64, String)> = all_rows(&servers[1].client, &servers[1].url, "Note", None)
        .await
        .into_values()
        .filter(|r| r["deleted"] == false)
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_owned();
            (s("id"), s("text"), r["n"].as_i64().unwrap(), s("version"))
        })
        .collect();
    assert!(server.len() >= 5, "the workload left rows: {}", server.len());
    for (i, device) in devices.iter().enumerate() {
        assert_eq!(device.store.pending_count().await.unwrap(), 0, "device {i} has nothing pending");
        assert_eq!(device.store.error_count().await.unwrap(), 0, "device {i} has no errors");
        let mut local: Vec<(String, String, i64, String)> = device
            .store
            .table::<Note>()
            .await
            .unwrap()
            .fetch(&Query::new())
            .await
            .unwrap()
            .into_iter()
            .map(|n| (n.id, n.text, n.n, n.version.unwrap_or_default()))
            .collect();
        local.sort();
        assert_eq!(local, server, "device {i} holds exactly the server's rows");
    }
    for s in servers {
        Arc::into_inner(s).unwrap().stop().await;
    }
}

/// A running `sync-server` binary.
struct Binary {
    child: std::process::Child,
    url: String,
}

impl Binary {
    fn start(db: &str, tables: &Path) -> Binary {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let mut child = Command::new(env!("CARGO_BIN_EXE_sync-server"))
            .args(["--listen", "127.0.0.1:0", "--db", db, "--tables"])
            .arg(tables)
            .args(["--auth", "jwt", "--jwt-secret-env", "SYNC_TEST_JWT_SECRET"])
            .env("SYNC_TEST_JWT_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url =
            line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("first line: {line:?}")).to_owned();
        Binary { child, url }
    }

    /// SIGTERM, then waits for a clean exit.
    fn stop(mut self) {
        let kill = std::process::Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(kill.success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "exit {status:?}");
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn two_binaries_serve_one_database_with_jwt_auth(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let tables = dir.path().join("tables.toml");
    std::fs::write(&tables, "[tables.Todo]\ncolumns = { text = \"string\" }\nowner_column = \"userId\"\n").unwrap();
    let db = match &b {
        Backend::Sqlite => format!("sqlite:{}", dir.path().join("shared.db").display()),
        Backend::Postgres(url) => url.clone(),
    };
    // Both start at once: the tables are created once, under the advisory lock.
    let (a, c) = std::thread::scope(|scope| {
        let a = scope.spawn(|| Binary::start(&db, &tables));
        let c = scope.spawn(|| Binary::start(&db, &tables));
        (a.join().unwrap(), c.join().unwrap())
    });
    let client = reqwest::Client::new();
    let (alice, bob) = (token("alice", true), token("bob", true));

    let req = client.post(format!("{}/tables/Todo", a.url)).header("ZUMO-API-VERSION", V3);
    let (status, headers, _) = send(req.try_clone().unwrap().json(&json!({"id": "t1", "text": "x"}))).await;
    assert_eq!(status, 401);
    assert!(headers["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    let (status, _, item) = send(req.bearer_auth(&alice).json(&json!({"id": "t1", "text": "alice's"}))).await;
    assert_eq!(status, 201, "{item}");

    // The other binary serves the same row to its owner, and nothing to anyone else.
    let get =
        |token: &str| client.get(format!("{}/tables/Todo/t1", c.url)).header("ZUMO-API-VERSION", V3).bearer_auth(token);
    let (status, _, got) = send(get(&alice)).await;
    assert_eq!((status.as_u16(), got["text"].clone()), (200, json!("alice's")));
    assert_eq!(send(get(&bob)).await.0, 404);
    assert_eq!(send(get(&token("alice", false))).await.0, 401);
    let (status, _, _) = send(client.get(format!("{}/healthz", c.url))).await;
    assert_eq!(status, 200, "health checks need no token");
    let req = client.put(format!("{}/tables/Todo/t1", c.url)).header("ZUMO-API-VERSION", V3);
    let (status, _, changed) = send(req.bearer_auth(&alice).json(&json!({"text": "changed on c"}))).await;
    assert_eq!(status, 200, "{changed}");
    let (_, _, got) =
        send(client.get(format!("{}/tables/Todo/t1", a.url)).header("ZUMO-API-VERSION", V3).bearer_auth(&alice)).await;
    assert_eq!(got, changed);
    a.stop();
    c.stop();
}

/// A SIGTERM sent the moment the `listening on` line is read stops the server
/// gracefully (exit status 0). The handlers used to be installed after that line: about
/// one such signal in three killed the process outright.
#[test]
fn sigterm_right_after_the_first_line_stops_gracefully() {
    use std::io::{BufRead, Write};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let tables = dir.path().join("tables.toml");
    std::fs::write(&tables, "[tables.Todo]\ncolumns = { text = \"string\" }\n").unwrap();
    for round in 0..20 {
        let mut server = Command::new(env!("CARGO_BIN_EXE_sync-server"))
            .args(["--listen", "127.0.0.1:0", "--db", "sqlite::memory:", "--tables"])
            .arg(&tables)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // A shell already waiting to send the signal, so it goes out within microseconds
        // of the line.
        let mut killer = Command::new("sh")
            .args(["-c", &format!("read _; kill -TERM {}", server.id())])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(server.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.starts_with("listening on http://"), "{line:?}");
        killer.stdin.take().unwrap().write_all(b"\n").unwrap();
        assert!(killer.wait().unwrap().success());
        let status = server.wait().unwrap();
        assert!(status.success(), "round {round}: {status:?}");
    }
}
