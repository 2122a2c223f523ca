//! The `todo` binary, driven as a user's shell would: two devices (two `--db` files)
//! sync through `todo serve`, meet a conflict, settle it, and converge; the demo; and
//! the failures a person can act on.

mod common;

use common::{Served, closed_port, todo};
use serde_json::Value;

/// `list --all --json` of one device.
fn list(dir: &std::path::Path, db: &str) -> Value {
    let run = todo(dir, &["--db", db, "list", "--all", "--json"]);
    run.ok();
    run.json()
}

fn texts(list: &Value) -> Vec<(String, bool)> {
    list.as_array()
        .expect("an array")
        .iter()
        .map(|i| (i["text"].as_str().expect("text").to_owned(), i["complete"].as_bool().expect("complete")))
        .collect()
}

#[test]
fn two_devices_converge_through_todo_serve() {
    for protocol in ["v2", "v3"] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut server = Served::start(d, &d.join("server.db"));
        let url = server.url.clone();
        let a = |args: &[&str]| todo(d, &[&["--db", "a.db", "--server", &url, "--protocol", protocol], args].concat());
        let b = |args: &[&str]| todo(d, &[&["--db", "b.db", "--server", &url, "--protocol", protocol], args].concat());

        // A adds two items offline: `add` prints the id; nothing is synced yet.
        let milk = a(&["add", "buy", "milk"]).ok().trim().to_owned();
        assert_eq!(milk.len(), 36, "a UUID: {milk:?}");
        let mum = a(&["add", "call mum", "--json"]).json()["id"].as_str().unwrap().to_owned();
        let listed = list(d, "a.db");
        assert_eq!(texts(&listed), [("buy milk".into(), false), ("call mum".into(), false)]);
        assert_eq!(listed[0]["id"], milk.as_str());
        assert!(listed[0]["version"].is_null() && listed[0]["updatedAt"].is_null(), "{listed}");
        let status = a(&["status", "--json"]).json();
        assert_eq!(status["pending"].as_array().unwrap().len(), 2, "{status}");
        assert_eq!(status["pending"][0]["kind"], "insert");
        assert_eq!(status["pending"][0]["table"], "TodoItem");
        assert_eq!(status["pending"][0]["state"], "pending");
        assert_eq!(status["errors"], serde_json::json!([]));

        // A syncs; B pulls.
        let synced = a(&["sync", "--json"]);
        synced.ok();
        let report = synced.json();
        assert_eq!(
            (report["pushed"].as_u64(), report["conflicts"].as_u64(), report["errors"].as_u64()),
            (Some(2), Some(0), Some(0)),
            "{protocol}: {report}"
        );
        let pulled = b(&["pull", "--json"]);
        pulled.ok();
        assert_eq!(pulled.json()["pulled"], 2, "{protocol}");
        assert_eq!(list(d, "a.db"), list(d, "b.db"), "{protocol}: B has what A pushed");
        assert!(list(d, "b.db")[0]["version"].is_string());

        // Both edit `buy milk`; A syncs first, so B meets a conflict.
        a(&["edit", &milk[..8], "buy", "oat", "milk"]).ok();
        a(&["sync"]).ok();
        b(&["edit", &milk, "buy soy milk"]).ok();
        b(&["done", &milk]).ok();
        let conflicted = b(&["sync", "--json"]);
        conflicted.fails_with(3, &["todo status", "todo resolve"]);
        assert_eq!(conflicted.json()["conflicts"], 1, "{protocol}: {conflicted:?}");

        // `status` shows it, with the server's item.
        let status = b(&["status", "--json"]).json();
        let errors = status["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "{protocol}: {status}");
        assert_eq!(errors[0]["id"], milk.as_str());
        assert_eq!(errors[0]["kind"], "update");
        assert!(matches!(errors[0]["status"].as_u64(), Some(409 | 412)), "{status}");
        assert!(errors[0]["message"].is_string());
        assert_eq!(errors[0]["serverItem"]["text"], "buy oat milk");
        assert_eq!(errors[0]["serverItem"]["complete"], false);
        assert_eq!(status["pending"][0]["state"], "failed");
        let human = b(&["status"]);
        assert!(human.ok().contains("conflict") && human.stdout.contains("buy oat milk"), "{human:?}");

        // Settled with --theirs: B takes the server's copy; the lists converge.
        b(&["resolve", &milk[..8], "--theirs"]).ok();
        b(&["sync"]).ok();
        let (on_a, on_b) = (list(d, "a.db"), list(d, "b.db"));
        assert_eq!(on_a, on_b, "{protocol}");
        assert_eq!(texts(&on_b), [("buy oat milk".into(), false), ("call mum".into(), false)]);
        assert!(b(&["status", "--json"]).json()["pending"].as_array().unwrap().is_empty());

        // Another conflict, settled with --mine: B's edit goes over the server's copy.
        a(&["edit", &mum, "call mum tonight"]).ok();
        a(&["sync"]).ok();
        b(&["edit", &mum, "call mum tomorrow"]).ok();
        b(&["sync"]).fails_with(3, &["todo status"]);
        let resolved = b(&["resolve", &mum, "--mine", "--json"]);
        resolved.ok();
        assert_eq!(resolved.json()["push"]["pushed"], 1, "{protocol}: {resolved:?}");
        a(&["sync"]).ok();
        assert_eq!(list(d, "a.db"), list(d, "b.db"), "{protocol}");
        assert_eq!(texts(&list(d, "a.db"))[1].0, "call mum tomorrow");

        // A delete propagates; `list` without --all hides done items.
        a(&["rm", &mum]).ok();
        a(&["done", &milk]).ok();
        a(&["sync"]).ok();
        b(&["sync"]).ok();
        let (on_a, on_b) = (list(d, "a.db"), list(d, "b.db"));
        assert_eq!(on_a, on_b, "{protocol}");
        assert_eq!(texts(&on_b), [("buy oat milk".into(), true)]);
        assert_eq!(b(&["list", "--json"]).json(), serde_json::json!([]));

        // SIGTERM stops the server gracefully.
        assert_eq!(server.stop_with("TERM"), Some(0), "{protocol}");
    }
}

#[test]
fn serve_prints_its_address_first_and_stops_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Served::start(dir.path(), &dir.path().join("s.db"));
    let port: u16 = server.url.strip_prefix("http://127.0.0.1:").and_then(|p| p.parse().ok()).unwrap_or(0);
    assert!(port != 0, "the real port: {:?}", server.first_line);
    assert_eq!(server.first_line, format!("listening on http://127.0.0.1:{port}"));
    assert_eq!(server.stop_with("INT"), Some(0));
}

#[test]
fn demo_exits_zero_with_identical_lists() {
    let dir = tempfile::tempdir().unwrap();
    let run = todo(dir.path(), &["demo"]);
    let out = run.ok();
    assert!(out.contains("Identical"), "{out}");
    assert!(out.contains("conflict"), "the conflict is shown: {out}");
    // The last three lists (device A, device B, server) are the same lines.
    let tail = &out[out.rfind("device A:").expect("final lists")..];
    let blocks: Vec<Vec<&str>> = tail
        .split(':')
        .skip(1)
        .take(3)
        .map(|block| block.lines().skip(1).take_while(|l| l.trim_start().starts_with('[')).collect())
        .collect();
    assert_eq!(blocks.len(), 3, "{tail}");
    assert!(!blocks[0].is_empty(), "{tail}");
    assert!(blocks.iter().all(|b| *b == blocks[0]), "{tail}");

    let run = todo(dir.path(), &["demo", "--json"]);
    run.ok();
    let json = run.json();
    let a = &json["devices"]["a"];
    assert!(a.as_array().is_some_and(|a| !a.is_empty()), "{json}");
    assert_eq!(a, &json["devices"]["b"]);
    assert_eq!(a, &json["server"]);
    assert_eq!(json["identical"], true);
    assert!(run.stderr.contains("conflict"), "the story goes to stderr with --json");
}

#[test]
fn failures_say_what_to_do_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    todo(d, &["--db", "a.db", "add", "something"]).ok();

    // No server configured.
    for command in ["sync", "push", "pull"] {
        todo(d, &["--db", "a.db", command]).fails_with(1, &["set --server or TODO_SERVER"]);
    }
    let run = todo(d, &["--db", "a.db", "sync", "--json"]);
    run.fails_with(1, &["TODO_SERVER"]);
    assert_eq!(run.json()["error"]["kind"], "no-server");

    // A server that does not answer: the message names it.
    let url = format!("http://127.0.0.1:{}", closed_port());
    for command in ["sync", "push", "pull"] {
        todo(d, &["--db", "a.db", "--server", &url, command]).fails_with(1, &["cannot reach the server", &url]);
    }
    let mut env_run = common::command(d);
    let out = env_run.args(["--db", "a.db", "sync"]).env("TODO_SERVER", &url).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&url), "TODO_SERVER is read");
    // The change is kept for later.
    assert_eq!(todo(d, &["--db", "a.db", "status", "--json"]).json()["pending"].as_array().unwrap().len(), 1);

    // Unknown ids.
    for args in [
        &["done", "nope"][..],
        &["undone", "nope"],
        &["edit", "nope", "x"],
        &["rm", "nope"],
        &["resolve", "nope", "--mine"],
    ] {
        todo(d, &[&["--db", "a.db"], args].concat()).fails_with(1, &["no item with id `nope`"]);
    }
    // An item without a conflict has nothing to resolve.
    let id = todo(d, &["--db", "a.db", "add", "fine"]).ok().trim().to_owned();
    todo(d, &["--db", "a.db", "resolve", &id, "--theirs"])
        .fails_with(1, &["has no conflict or refused change", "todo status"]);

    // A store is not a server's database, nor the other way round.
    todo(d, &["--db", "a.db", "serve", "--listen", "127.0.0.1:0"]).fails_with(1, &["a.db is a device's store"]);
    let mut served = Served::start(d, &d.join("server.db"));
    assert_eq!(served.stop_with("TERM"), Some(0));
    todo(d, &["--db", "server.db", "list"]).fails_with(1, &["server.db is a server's database"]);

    // Usage errors are clap's (exit 2), and the UI needs a terminal.
    todo(d, &["--db", "a.db", "resolve", &id]).fails_with(2, &["--mine|--theirs"]);
    todo(d, &["--db", "a.db", "--server", "ftp://x", "sync"]).fails_with(1, &["http://"]);
    todo(d, &["--db", "a.db"]).fails_with(2, &["needs a terminal"]);
}
