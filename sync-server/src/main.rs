//! `sync-server`: serves the tables of a tables file over HTTP.
//!
//! ```text
//! sync-server --db <sqlite:PATH | sqlite::memory: | postgres://...> --listen <ADDR>
//!             --tables <FILE.toml> [--page-size N] [--max-top N] [--max-body BYTES]
//!             [--header-read-timeout SECS] [--body-read-timeout SECS] [--idle-timeout SECS]
//!             [--max-connections N] [--public-url URL] [--trust-forwarded-headers]
//!             [--no-feed | [--feed-heartbeat SECS] [--feed-stall-timeout SECS] [--feed-max-subscribers N]]
//!             [--auth anonymous
//!              | --auth jwt (--jwt-secret-env VAR | --jwt-public-key FILE --jwt-algorithm rs256|es256
//!                            | --jwks-url URL [--jwks-allow-http])
//!                           [--jwt-audience AUD] [--jwt-issuer ISS]]
//! ```
//!
//! With `--auth jwt`, every `/tables` request needs `Authorization: Bearer <JWT>`:
//! HS256 signed with the secret in the environment variable `VAR` (never on the
//! command line, where `ps` would show it), RS256/ES256 signed by the key whose PEM
//! public key is in `FILE`, or signed by one of the keys of an identity provider's JWKS
//! URL; with `aud` and `iss` checked when given.
//!
//! Prints one line, `listening on http://<ADDR>`, to stdout once it accepts
//! connections, logs to stderr (`RUST_LOG` filters), and stops gracefully on SIGINT or
//! SIGTERM.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use std::time::Duration;

use clap::{Parser, ValueEnum};
use sync_server::auth::KeyAlgorithm;
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
    /// With `--auth jwt`: a file with the identity provider's public key in PEM (RS256 or ES256, see --jwt-algorithm).
    #[arg(long, value_name = "FILE")]
    jwt_public_key: Option<PathBuf>,
    /// With `--jwt-public-key`: the key's algorithm.
    #[arg(long, value_enum)]
    jwt_algorithm: Option<KeyAlgorithmArg>,
    /// With `--auth jwt`: the identity provider's JWKS URL (https://, or http:// on loopback); its RS256/ES256 keys
    /// are fetched, cached, and fetched again for an unknown key id at most every 30 s.
    #[arg(long, value_name = "URL")]
    jwks_url: Option<String>,
    /// Also take a plain http:// JWKS URL on a host that is not loopback (keys fetched in the clear can be replaced).
    #[arg(long)]
    jwks_allow_http: bool,
    /// With `--auth jwt`: accept only tokens whose `aud` names this audience.
    #[arg(long, value_name = "AUD")]
    jwt_audience: Option<String>,
    /// With `--auth jwt`: accept only tokens whose `iss` is this issuer.
    #[arg(long, value_name = "ISS")]
    jwt_issuer: Option<String>,
    /// Seconds a request head may take to arrive (from the accept, or the request's first byte).
    #[arg(long, value_name = "SECS", default_value_t = sync_server::DEFAULT_HEADER_READ_TIMEOUT.as_secs())]
    header_read_timeout: u64,
    /// Seconds a request body may take to arrive (408 beyond).
    #[arg(long, value_name = "SECS", default_value_t = sync_server::DEFAULT_BODY_READ_TIMEOUT.as_secs())]
    body_read_timeout: u64,
    /// Seconds a kept-alive connection may wait for its next request.
    #[arg(long, value_name = "SECS", default_value_t = sync_server::DEFAULT_IDLE_TIMEOUT.as_secs())]
    idle_timeout: u64,
    /// The most open connections; at the cap, a new one closes the longest-idle one
    /// [default: the descriptor limit less 64, between 16 and 10000].
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// The URL clients reach the server at (origin of Location headers and next-page links). Without it,
    /// Location is relative and page links name the address the connection was accepted on.
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Take the links' origin from X-Forwarded-Proto/X-Forwarded-Host (only behind a proxy that sets them).
    #[arg(long)]
    trust_forwarded_headers: bool,
    /// Turn the change feed (`GET /feed`, server-sent events) off: it then answers 404 and clients poll.
    #[arg(long, conflicts_with_all = ["feed_heartbeat", "feed_stall_timeout", "feed_max_subscribers"])]
    no_feed: bool,
    /// Seconds a change feed stream stays silent before a heartbeat comment.
    #[arg(long, value_name = "SECS", default_value_t = sync_server::DEFAULT_FEED_HEARTBEAT.as_secs())]
    feed_heartbeat: u64,
    /// Seconds a change feed subscriber's socket may refuse bytes before the stream is dropped
    /// [default: twice the heartbeat].
    #[arg(long, value_name = "SECS")]
    feed_stall_timeout: Option<u64>,
    /// The most change feed subscribers at once (503 beyond) [default: half the connection cap].
    #[arg(long, value_name = "N")]
    feed_max_subscribers: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum KeyAlgorithmArg {
    /// RSA keys.
    Rs256,
    /// P-256 EC keys.
    Es256,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum AuthMode {
    /// No authentication (local use).
    Anonymous,
    /// `Authorization: Bearer <JWT>`: HS256, RS256 or ES256.
    Jwt,
}

/// The authentication the arguments ask for.
fn auth(args: &Args) -> Result<Auth, sync_server::Error> {
    let setting = |message: String| sync_server::Error::Setting { name: "auth", message };
    let jwt_options = args.jwt_secret_env.is_some()
        || args.jwt_public_key.is_some()
        || args.jwt_algorithm.is_some()
        || args.jwks_url.is_some()
        || args.jwks_allow_http
        || args.jwt_audience.is_some()
        || args.jwt_issuer.is_some();
    if args.auth == AuthMode::Anonymous {
        return match jwt_options {
            true => Err(setting("the --jwt-* and --jwks-* options need --auth jwt".into())),
            false => Ok(Auth::anonymous()),
        };
    }
    let auth = match (&args.jwt_secret_env, &args.jwt_public_key, &args.jwks_url) {
        (Some(var), None, None) => match std::env::var(var) {
            Ok(secret) if !secret.is_empty() => Auth::jwt_hs256(secret)?,
            _ => return Err(setting(format!("the environment variable `{var}` (--jwt-secret-env) is not set"))),
        },
        (None, Some(file), None) => {
            let algorithm = match args.jwt_algorithm {
                Some(KeyAlgorithmArg::Rs256) => KeyAlgorithm::Rs256,
                Some(KeyAlgorithmArg::Es256) => KeyAlgorithm::Es256,
                None => return Err(setting("--jwt-public-key needs --jwt-algorithm rs256|es256".into())),
            };
            let pem = std::fs::read(file)
                .map_err(|e| setting(format!("cannot read --jwt-public-key {}: {e}", file.display())))?;
            Auth::jwt_public_key_pem(algorithm, &pem)?
        }
        (None, None, Some(url)) if args.jwks_allow_http => Auth::jwks_url_allowing_http(url)?,
        (None, None, Some(url)) => Auth::jwks_url(url)?,
        _ => {
            return Err(setting(
                "--auth jwt needs exactly one of --jwt-secret-env VAR, --jwt-public-key FILE or --jwks-url URL".into(),
            ));
        }
    };
    if args.jwt_algorithm.is_some() && args.jwt_public_key.is_none() {
        return Err(setting("--jwt-algorithm goes with --jwt-public-key".into()));
    }
    if args.jwks_allow_http && args.jwks_url.is_none() {
        return Err(setting("--jwks-allow-http goes with --jwks-url".into()));
    }
    let auth = match &args.jwt_audience {
        Some(audience) => auth.audience(audience),
        None => auth,
    };
    Ok(match &args.jwt_issuer {
        Some(issuer) => auth.issuer(issuer),
        None => auth,
    })
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
    let mut builder = Server::builder()
        .tables(tables)
        .auth(auth(&args)?)
        .database(database)
        .page_size(args.page_size)
        .max_top(args.max_top)
        .max_body(args.max_body)
        .header_read_timeout(Duration::from_secs(args.header_read_timeout))
        .body_read_timeout(Duration::from_secs(args.body_read_timeout))
        .idle_timeout(Duration::from_secs(args.idle_timeout))
        .trust_forwarded_headers(args.trust_forwarded_headers)
        .feed(!args.no_feed)
        .feed_heartbeat(Duration::from_secs(args.feed_heartbeat));
    if let Some(secs) = args.feed_stall_timeout {
        builder = builder.feed_stall_timeout(Duration::from_secs(secs));
    }
    if let Some(n) = args.feed_max_subscribers {
        builder = builder.feed_max_subscribers(n);
    }
    if let Some(n) = args.max_connections {
        builder = builder.max_connections(n);
    }
    if let Some(url) = &args.public_url {
        builder = builder.public_url(url);
    }
    let server = builder.build().await?;
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
