//! `todo`: the example app of `sync-runtime`, the classic mobile quickstart's todo list
//! as a command-line tool. It works offline against a local SQLite store and syncs
//! with a table server (this workspace's `sync-server`, `todo serve`, or an Azure
//! Mobile Apps Node.js server) when asked.
//!
//! - `todo add|list|done|undone|edit|rm`: local changes, queued for the next sync;
//! - `todo sync|push|pull`: talk to the server (`--server` / `TODO_SERVER`);
//! - `todo status`, `todo resolve ID --mine|--theirs`: conflicts and refused changes;
//! - `todo watch [--json] [--poll SECS]`: syncs by itself, printing changes as they come;
//! - `todo serve`: a sync server for `TodoItem`;
//! - `todo demo`: a narrated walk-through with two devices and an embedded server;
//! - `todo` alone: a terminal UI.
//!
//! Every failure a person can act on is one message on stderr and a non-zero exit
//! status (see [`failure::Exit`]); `--json` prints machine-readable output on stdout.

mod cli;
mod commands;
mod demo;
mod device;
mod failure;
mod model;
mod output;
mod progress;
mod serve;
mod status;
mod sync;
mod tui;
mod watch;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser as _;
use sync_runtime::ProtocolVersion;

use cli::{Cli, Command};
use device::Device;
use failure::{Exit, Failure, Result};

/// The options every command sees.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// `--db` or `TODO_DB`, if given.
    pub db: Option<PathBuf>,
    /// `--server` or `TODO_SERVER`, if given (an empty value counts as none).
    pub server: Option<String>,
    /// `--protocol`.
    pub protocol: ProtocolVersion,
    /// `--json`.
    pub json: bool,
}

impl Ctx {
    /// The local store's file.
    pub fn store_path(&self) -> Result<PathBuf> {
        match &self.db {
            Some(path) => Ok(path.clone()),
            None => device::default_store_path(),
        }
    }

    /// Opens the local store.
    pub async fn device(&self) -> Result<Device> {
        Device::open(&self.store_path()?).await
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ctx = Ctx {
        db: cli.db.clone().or_else(|| std::env::var_os("TODO_DB").filter(|v| !v.is_empty()).map(PathBuf::from)),
        server: cli.server.clone().filter(|s| !s.trim().is_empty()),
        protocol: cli.protocol.into(),
        json: cli.json,
    };
    init_logging(&cli.command);
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return report(&ctx, &Failure::new("runtime", format!("cannot start the async runtime: {e}"))),
    };
    let result = runtime.block_on(run(&ctx, cli.command));
    // Do not wait for background work (e.g. a store thread finishing): it is all
    // committed or safely queued by now.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => report(&ctx, &failure),
    }
}

/// Logs go to stderr: `info` for `serve` (like `sync-server`), warnings only for the
/// other commands, nothing under the terminal UI (it owns the screen). `RUST_LOG`
/// overrides the level.
fn init_logging(command: &Option<Command>) {
    let level = match command {
        None => return,
        Some(Command::Serve { .. }) => "info",
        Some(_) => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .try_init();
}

async fn run(ctx: &Ctx, command: Option<Command>) -> Result<()> {
    match command {
        Some(Command::Add { text }) => commands::add(ctx, &text).await,
        Some(Command::List { all }) => commands::list(ctx, all).await,
        Some(Command::Done { id }) => commands::set_complete(ctx, &id, true).await,
        Some(Command::Undone { id }) => commands::set_complete(ctx, &id, false).await,
        Some(Command::Edit { id, text }) => commands::edit(ctx, &id, &text).await,
        Some(Command::Rm { id }) => commands::remove(ctx, &id).await,
        Some(Command::Sync) => sync::command(ctx, sync::Direction::Both).await,
        Some(Command::Push) => sync::command(ctx, sync::Direction::Push).await,
        Some(Command::Pull) => sync::command(ctx, sync::Direction::Pull).await,
        Some(Command::Status) => status::status(ctx).await,
        Some(Command::Watch { poll }) => watch::watch(ctx, poll).await,
        Some(Command::Resolve { id, mine, theirs: _ }) => {
            let side = if mine { status::Side::Mine } else { status::Side::Theirs };
            status::resolve(ctx, &id, side).await
        }
        Some(Command::Serve { db, listen }) => {
            let db = match db {
                Some(db) => db,
                None => device::default_server_path()?,
            };
            serve::serve(db, &listen).await
        }
        Some(Command::Demo) => demo::run(ctx).await,
        None => {
            if ctx.json {
                return Err(Failure::new("usage", "--json needs a command: the terminal UI has no JSON output")
                    .hint("see `todo --help`")
                    .exit(Exit::Usage));
            }
            if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
                return Err(Failure::new("usage", "the terminal UI needs a terminal")
                    .hint("give a command, e.g. `todo list` or `todo demo` (see `todo --help`)")
                    .exit(Exit::Usage));
            }
            tui::run(ctx).await
        }
    }
}

/// Prints a failure: the message and hint on stderr; with `--json`, also
/// `{"error": {kind, message, hint}}` on stdout (unless the command already printed its
/// result, as a sync that left conflicts does).
fn report(ctx: &Ctx, failure: &Failure) -> ExitCode {
    eprintln!("todo: {failure}");
    if ctx.json && failure.exit != Exit::Unsettled {
        let _ = output::print_json(&serde_json::json!({
            "error": { "kind": failure.kind, "message": failure.message, "hint": failure.hint }
        }));
    }
    failure.exit.code()
}
