//! `todo watch --json`: two stores watched against `todo serve`; a write made by another
//! process on one store file reaches the other's output as a line of JSON; SIGTERM and
//! SIGINT end it with exit status 0; the usage errors.

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{PATIENCE, Served, closed_port, command, todo};
use serde_json::Value;

/// A running `todo watch --json`: its lines as JSON, read on a thread.
struct Watching {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
}

impl Watching {
    fn start(dir: &Path, db: &str, server: &str) -> Watching {
        let mut child = command(dir)
            .args(["--db", db, "--server", server, "--protocol", "v3", "watch", "--json", "--poll", "0.2"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start todo watch");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watching { child: Some(child), lines }
    }

    /// Reads lines until one satisfies `want`; every line must be one JSON object with
    /// one key, `items` or `status`, in the documented form.
    #[track_caller]
    fn wait_for(&self, what: &str, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line =
                self.lines.recv_timeout(left).unwrap_or_else(|_| panic!("no line with {what} within {PATIENCE:?}"));
            let value: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            check_form(&value);
            if want(&value) {
                return value;
            }
        }
    }

    fn stop_with(&mut self, signal: &str) -> Option<i32> {
        let mut child = self.child.take()?;
        let sent = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status();
        assert!(sent.is_ok_and(|s| s.success()));
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "todo watch did not stop within {PATIENCE:?} of SIG{signal}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[track_caller]
fn check_form(value: &Value) {
    let object = value.as_object().expect("a JSON object");
    assert_eq!(object.len(), 1, "one key: {value}");
    if let Some(items) = object.get("items") {
        for item in items.as_array().expect("an array") {
            let keys: Vec<&str> = item.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(keys, ["complete", "id", "text", "updatedAt", "version"], "{item}");
        }
    } else {
        let status = object.get("status").expect("`items` or `status`");
        let keys: Vec<&str> = status.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["connected", "downloading", "errors", "lastError", "lastSyncedAt", "pending", "uploading"],
            "{status}"
        );
        assert!(status["connected"].is_boolean() && status["pending"].is_u64() && status["errors"].is_u64());
        assert!(status["lastSyncedAt"].is_null() || status["lastSyncedAt"].as_str().is_some_and(|s| s.ends_with('Z')));
        assert!(status["lastError"].is_null() || status["lastError"].is_string());
    }
}

fn texts(value: &Value) -> Vec<&str> {
    value["items"].as_array().map(|items| items.iter().filter_map(|i| i["text"].as_str()).collect()).unwrap_or_default()
}

#[test]
fn a_write_on_one_store_reaches_the_other_watch() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let served = Served::start(d, &d.join("server.db"));
    let mut a = Watching::start(d, "a.db", &served.url);
    let mut b = Watching::start(d, "b.db", &served.url);
    a.wait_for("the first list", |v| v.get("items").is_some_and(|i| i.as_array().is_some_and(Vec::is_empty)));
    b.wait_for("b online", |v| v["status"]["connected"] == true);

    // Another process writes a's store file: a's watch shows it, a's engine sends it,
    // b's engine pulls it and b's watch shows it.
    todo(d, &["--db", "a.db", "add", "zebra"]).ok();
    todo(d, &["--db", "a.db", "add", "apple"]).ok();
    a.wait_for("a's items", |v| texts(v) == ["apple", "zebra"]);
    a.wait_for("a's push", |v| v["status"]["pending"] == 0 && v["status"]["connected"] == true);
    let seen = b.wait_for("b's items, ordered by text", |v| texts(v) == ["apple", "zebra"]);
    assert!(seen["items"].as_array().unwrap().iter().all(|i| i["version"].is_string()), "{seen}");

    // Done items stay in the list.
    let id = seen["items"][0]["id"].as_str().unwrap().to_owned();
    todo(d, &["--db", "b.db", "done", &id]).ok();
    a.wait_for("the done item on a", |v| v["items"][0]["complete"] == true);

    assert_eq!(a.stop_with("TERM"), Some(0));
    assert_eq!(b.stop_with("INT"), Some(0));
}

#[test]
fn an_unreachable_server_is_a_status_not_an_exit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let url = format!("http://127.0.0.1:{}", closed_port());
    let mut a = Watching::start(d, "a.db", &url);
    todo(d, &["--db", "a.db", "add", "offline"]).ok();
    let status = a.wait_for("the failure", |v| v["status"]["lastError"].is_string() && v["status"]["pending"] == 1);
    assert_eq!(status["status"]["connected"], false);
    assert_eq!(a.stop_with("TERM"), Some(0));
}

#[test]
fn watch_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    todo(d, &["--db", "a.db", "watch"]).fails_with(1, &["needs a server"]);
    let url = format!("http://127.0.0.1:{}", closed_port());
    todo(d, &["--db", "a.db", "--server", &url, "watch", "--poll", "0"]).fails_with(2, &["--poll"]);
}
