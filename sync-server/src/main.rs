//! `sync-server`: serves the tables of a tables file over HTTP.
//!
//! ```text
//! sync-server --db <sqlite:PATH | sqlite::memory: | postgres://...> --listen <ADDR>
//!             --tables <FILE.toml> [--page-size N] [--max-top N] [--max-body BYTES]
//!             [--auth anonymous | --auth jwt --jwt-secret-env VAR]
//! ```
//!
//! With `--auth jwt`, every `/tables` request needs `Authorization: Bearer <HS256 JWT>`
//! signed with the secret in the environment variable `VAR` (never on the command
//! line, where `ps` would show it).
//!
//! Prints one line, `listening on http://<ADDR>`, to stdout once it accepts
//! connections, logs to stderr (`RUST_LOG` filters), and stops gracefully on SIGINT or
//! SIGTERM.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use std::time::Duration;

use clap::{Parser, ValueEnum};
use sync_server::{Auth, Database, Server, ShutdownSignal, load_tables_file};

/// How long requests in flight may take to finish after SIGINT/SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A table server for the Azure Mobile Apps (v2) / Datasync (v3) table protocol.
#[derive(Debug, Parser)]
#[command(name = "sync-server", version, about)]
struct Args {
    /// The database: `sqlite:PATH`, `sqlite::memory:` or `postgres://user:password@host/dbname`.
    #[arg(long, env = "SYNC_SERVER_DB")]
    db: String,
    /// The address to listen on; port 0 lets the OS pick one.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// The tables file (TOML, `[tables.<Name>]` sections).
    #[arg(long)]
    tables: PathBuf,
    /// Rows per page when a request has no `$top`.
    #[arg(long, default_value_t = sync_server::DEFAULT_PAGE_SIZE)]
    page_size: u64,
    /// The most rows one answer carries (a larger `$top` is capped).
    #[arg(long, default_value_t = sync_server::DEFAULT_MAX_TOP)]
    max_top: u64,
    /// The largest request body in bytes (413 beyond).
    #[arg(long, default_value_t = sync_server::DEFAULT_MAX_BODY)]
    max_body: usize,
    /// How callers are authenticated.
    #[arg(long, value_enum, default_value_t = AuthMode::Anonymous)]
    auth: AuthMode,
    /// With `--auth jwt`: the environment variable holding the HS256 secret (at least 32 bytes).
    #[arg(long, value_name = "VAR")]
    jwt_secret_env: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum AuthMode {
    /// No authentication (local use).
    Anonymous,
    /// `Authorization: Bearer <JWT>`, HS256.
    Jwt,
}

/// The authentication the arguments ask for.
fn auth(args: &Args) -> Result<Auth, sync_server::Error> {
    let setting = |message: String| sync_server::Error::Setting { name: "auth", message };
    match (args.auth, &args.jwt_secret_env) {
        (AuthMode::Anonymous, None) => Ok(Auth::anonymous()),
        (AuthMode::Anonymous, Some(_)) => Err(setting("--jwt-secret-env needs --auth jwt".into())),
        (AuthMode::Jwt, None) => {
            Err(setting("--auth jwt needs --jwt-secret-env VAR, naming the variable that holds the secret".into()))
        }
        (AuthMode::Jwt, Some(var)) => match std::env::var(var) {
            Ok(secret) if !secret.is_empty() => Auth::jwt_hs256(secret),
            _ => Err(setting(format!("the environment variable `{var}` (--jwt-secret-env) is not set"))),
        },
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &dyn std::error::Error) -> ExitCode {
    let mut message = format!("sync-server: {e}");
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    eprintln!("{message}");
    ExitCode::FAILURE
}

async fn run(args: Args) -> Result<(), sync_server::Error> {
    let database: Database = args.db.parse()?;
    let tables = load_tables_file(&args.tables)?;
    let server = Server::builder()
        .tables(tables)
        .auth(auth(&args)?)
        .database(database)
        .page_size(args.page_size)
        .max_top(args.max_top)
        .max_body(args.max_body)
        .build()
        .await?;
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let addr = listener.local_addr()?;
    // Before the line below: a SIGTERM sent as soon as it is read must stop gracefully.
    let shutdown = ShutdownSignal::install()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
    }
    Ok(server.serve_until(listener, shutdown.wait(), SHUTDOWN_GRACE).await?)
}
