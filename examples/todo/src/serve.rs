//! `todo serve` and the embedded server of the demo and the terminal UI: a
//! `sync-server` serving `TodoItem`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sync_server::{Database, Server, ServerHandle};
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
    let shutdown = Shutdown::install()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
    }
    tracing::info!(db = %db.display(), "serving TodoItem");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut serving = tokio::spawn(server.clone().serve(listener, async move {
        let _ = stopped.await;
    }));
    tokio::select! {
        served = &mut serving => {
            // Serving ended on its own: an accept error.
            server.close().await;
            return Ok(served.map_err(std::io::Error::other)??);
        }
        () = shutdown.wait() => {}
    }
    let _ = stop.send(());
    match tokio::time::timeout(SHUTDOWN_GRACE, &mut serving).await {
        Ok(served) => served.map_err(std::io::Error::other)??,
        Err(_) => {
            tracing::warn!("requests still in flight after {} s; stopping anyway", SHUTDOWN_GRACE.as_secs());
            serving.abort();
        }
    }
    server.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// SIGINT and SIGTERM, caught from the moment this is made (before the `listening on`
/// line goes out, so a signal sent right after reading it stops the server gracefully).
struct Shutdown {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Shutdown {
    fn install() -> std::io::Result<Shutdown> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Shutdown { interrupt: signal(SignalKind::interrupt())?, terminate: signal(SignalKind::terminate())? })
        }
        #[cfg(not(unix))]
        Ok(Shutdown {})
    }

    /// Completes on the first SIGINT (Ctrl-C) or SIGTERM.
    #[cfg_attr(not(unix), allow(unused_mut))]
    async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => tracing::info!("SIGINT: shutting down"),
            _ = self.terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("Ctrl-C: shutting down");
        }
    }
}
