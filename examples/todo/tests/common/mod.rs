//! Helpers of the todo tests: run the real `todo` binary, start `todo serve`.

#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a test waits for something that should take milliseconds, on a loaded
/// machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_todo"))
}

/// A `todo` command in `dir`, with none of the user's `TODO_*` settings.
pub fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(bin());
    cmd.current_dir(dir);
    for var in ["TODO_DB", "TODO_SERVER", "TODO_PROTOCOL", "TODO_SERVER_DB", "RUST_LOG", "RUST_BACKTRACE"] {
        cmd.env_remove(var);
    }
    cmd
}

/// What one run of `todo` did.
#[derive(Debug)]
pub struct Run {
    /// The exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Asserts exit status 0 and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "todo failed: {self:#?}");
        self.no_panic();
        &self.stdout
    }

    /// Stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }

    /// Asserts that nothing panicked.
    #[track_caller]
    pub fn no_panic(&self) {
        for text in [&self.stdout, &self.stderr] {
            assert!(!text.contains("panicked") && !text.contains("RUST_BACKTRACE"), "todo panicked: {self:#?}");
        }
    }

    /// Asserts a failure with this exit code whose stderr contains every one of `parts`.
    #[track_caller]
    pub fn fails_with(&self, code: i32, parts: &[&str]) {
        assert_eq!(self.code, Some(code), "exit code: {self:#?}");
        self.no_panic();
        for part in parts {
            assert!(self.stderr.contains(part), "stderr lacks {part:?}: {self:#?}");
        }
    }
}

/// Runs `todo ARGS` in `dir` and waits for it.
pub fn todo(dir: &Path, args: &[&str]) -> Run {
    let output = command(dir).args(args).stdin(Stdio::null()).output().expect("run todo");
    Run::from(output)
}

/// `todo serve` on 127.0.0.1 with a port the system picks. Stopped with SIGTERM on drop.
pub struct Served {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The first line it printed.
    pub first_line: String,
}

impl Served {
    /// Starts `todo serve --db <db> --listen 127.0.0.1:0` and reads its first line.
    pub fn start(dir: &Path, db: &Path) -> Served {
        let mut child = command(dir)
            .args(["serve", "--db"])
            .arg(db)
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start todo serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let first_line = match rx.recv_timeout(PATIENCE) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("todo serve printed nothing within {PATIENCE:?}");
            }
        };
        let first_line = first_line.trim_end_matches('\n').to_owned();
        let url = first_line.strip_prefix("listening on ").unwrap_or_else(|| panic!("first line: {first_line:?}"));
        Served { url: url.to_owned(), first_line, child: Some(child) }
    }

    /// Sends `signal` (e.g. "TERM", "INT") and returns the exit code.
    pub fn stop_with(&mut self, signal: &str) -> Option<i32> {
        let mut child = self.child.take()?;
        let sent = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status();
        if !sent.is_ok_and(|s| s.success()) {
            let _ = child.kill();
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("todo serve did not stop within {PATIENCE:?} of SIG{signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port on 127.0.0.1 where nothing listens (it was free a moment ago).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}
