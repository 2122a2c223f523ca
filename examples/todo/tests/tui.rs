//! The terminal UI, driven through tmux: add an item, toggle it, delete, quit, with the
//! sync engine sending and receiving by itself (a write by another process and an item
//! of another device show up with no key); then the store and the embedded server's
//! database are checked with the CLI.
//!
//! Without tmux the test says so on stderr and skips.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{PATIENCE, Served, bin, todo};

/// A tmux server of this test only (its own socket), killed on drop.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["-f", "/dev/null"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run tmux");
        assert!(out.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        self.run(&[&["send-keys", "-t", "todo"], keys].concat());
    }

    fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-t", "todo", "-l", text]);
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "todo"])
    }

    /// Polls the screen until `done` holds; panics with the screen after `PATIENCE`.
    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; the screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").arg("-S").arg(&self.socket).arg("kill-server").stderr(Stdio::null()).status();
    }
}

fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

fn tmux_available() -> bool {
    Command::new("tmux").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

#[test]
fn terminal_ui_adds_toggles_syncs_and_deletes() {
    if !tmux_available() {
        eprintln!("\n*** SKIPPED terminal_ui_adds_toggles_syncs_and_deletes: tmux is not installed ***\n");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("tui.db");
    let tmux = Tmux { socket: d.join("tmux.sock") };
    // The shell reports how `todo` exited and keeps the pane open for the test to read.
    let script = format!(
        "unset TODO_DB TODO_SERVER TODO_PROTOCOL RUST_LOG; {} --db {} 2>{}; echo \"todo exited with $?\"; sleep 600",
        quote(&bin()),
        quote(&db),
        quote(&d.join("stderr.txt")),
    );
    tmux.run(&["new-session", "-d", "-s", "todo", "-x", "100", "-y", "30", &script]);

    // The engine reaches the embedded server by itself.
    let screen = tmux.wait_for("the UI online", |s| s.contains(" online ") && s.contains("pending: 0"));
    let url = screen
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .expect("the title names the embedded server")
        .to_owned();
    tmux.keys(&["a"]);
    tmux.wait_for("the input line", |s| s.contains("New item:"));
    tmux.type_text("buy milk");
    tmux.keys(&["Enter"]);
    // Local changes go out by themselves: no key.
    tmux.wait_for("the new item, sent", |s| {
        s.contains("[ ] buy milk") && s.contains("pending: 0") && !s.contains("not synced") && s.contains("last sync")
    });

    tmux.keys(&["Space"]);
    tmux.wait_for("the item done, sent", |s| s.contains("[x] buy milk") && s.contains("pending: 0"));

    tmux.keys(&["a"]);
    tmux.wait_for("the input line", |s| s.contains("New item:"));
    tmux.type_text("call mum");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the second item", |s| s.contains("> [ ] call mum"));
    tmux.keys(&["d"]);
    tmux.wait_for("the delete", |s| !s.contains("call mum") && s.contains("pending: 0"));

    // Another process writes the same store file: the UI shows it and the engine sends
    // it, no key.
    let added = todo(d, &["--db", "tui.db", "add", "from another terminal"]);
    let id = added.stdout.trim().to_owned();
    tmux.wait_for("the other process's item, sent", |s| {
        s.contains("[ ] from another terminal") && s.contains("pending: 0") && !s.contains("not synced")
    });
    todo(d, &["--db", "tui.db", "rm", &id]).ok();
    tmux.wait_for("the other process's delete", |s| !s.contains("from another terminal") && s.contains("pending: 0"));

    // Another device syncs with the same server: its item appears on its own.
    todo(d, &["--db", "other.db", "--server", &url, "add", "from another device"]).ok();
    todo(d, &["--db", "other.db", "--server", &url, "push"]).ok();
    tmux.wait_for("the other device's item", |s| s.contains("[ ] from another device"));

    tmux.keys(&["q"]);
    tmux.wait_for("todo to exit", |s| s.contains("todo exited with"));
    let screen = tmux.screen();
    let stderr = std::fs::read_to_string(d.join("stderr.txt")).unwrap_or_default();
    assert!(screen.contains("todo exited with 0"), "{screen}\nstderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // The store holds the synced items...
    let listed = todo(d, &["--db", "tui.db", "list", "--all", "--json"]).json();
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    assert_eq!((listed[0]["text"].as_str(), listed[0]["complete"].as_bool()), (Some("buy milk"), Some(true)));
    assert_eq!(listed[1]["text"].as_str(), Some("from another device"));
    assert!(listed[0]["version"].is_string() && listed[1]["version"].is_string(), "synced: {listed}");
    // ...and so does the embedded server's database beside it: a fresh device pulls it.
    let served = Served::start(d, &d.join("tui.server.db"));
    todo(d, &["--db", "fresh.db", "--server", &served.url, "pull"]).ok();
    assert_eq!(todo(d, &["--db", "fresh.db", "list", "--all", "--json"]).json(), listed);
}
