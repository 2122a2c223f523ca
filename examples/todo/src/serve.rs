//! `todo serve` and the embedded server of the demo and the terminal UI: a
//! `sync-server` serving `TodoItem`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sync_server::{Database, Server, ServerHandle, ShutdownSignal};
use tokio::net::TcpListener;

use crate::failure::{Failure, Result};
use crate::model::TodoItem;

/// How long requests in flight may take to finish after SIGINT/SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

async fn build(db: &Path) -> Result<Server> {
    if crate::device::file_kind(db) == crate::device::FileKind::Store {
        return Err(Failure::new("server", format!("{} is a device's store, not a server's database", db.display()))
            .hint("give the server its own file: `todo serve --db FILE`"));
    }
    Server::builder().table::<TodoItem>().database(Database::SqliteFile(db.to_path_buf())).build().await.map_err(|e| {
        Failure::new(
            "server",
            format!("cannot open the server database {}: {}", db.display(), crate::failure::chain(&e)),
        )
    })
}

async fn bind(listen: &str) -> Result<TcpListener> {
    TcpListener::bind(listen).await.map_err(|e| {
        Failure::new("listen", format!("cannot listen on {listen}: {e}"))
            .hint("pick another address with --listen (port 0 lets the system choose)")
    })
}

/// A server on 127.0.0.1 with a port the system picks, in this process.
pub async fn embedded(db: &Path) -> Result<ServerHandle> {
    let server = build(db).await?;
    let listener = bind("127.0.0.1:0").await?;
    Ok(server.spawn(listener)?)
}

/// Serves until SIGINT or SIGTERM. The first line on stdout is exactly
/// `listening on http://<ADDR>`, with the real port, as `sync-server` prints it.
pub async fn serve(db: PathBuf, listen: &str) -> Result<()> {
    let server = build(&db).await?;
    let listener = bind(listen).await?;
    let addr = listener.local_addr()?;
    // Before the line below: a SIGTERM sent as soon as it is read must stop gracefully.
    let shutdown = ShutdownSignal::install()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
    }
    tracing::info!(db = %db.display(), "serving TodoItem");
    Ok(server.serve_until(listener, shutdown.wait(), SHUTDOWN_GRACE).await?)
}
