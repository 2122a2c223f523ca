//! `todo sync`, `todo push`, `todo pull`: what they do and what they report.

use serde::Serialize;
use sync_runtime::{Query, SyncClient};

use crate::device::Device;
use crate::failure::{Exit, Failure};
use crate::model::TodoItem;

/// The pull's query id: `sync` and `pull` share one incremental cursor, so each fetches
/// only what changed since the last of either.
pub const QUERY_ID: &str = "todo";

/// Starts the sync engine on `client`: every item, pulled under [`QUERY_ID`] (the cursor
/// `todo pull` moves too), polling every `poll` when the server has no change feed.
pub fn start_engine(client: &SyncClient, poll: std::time::Duration) -> sync_runtime::Result<sync_runtime::SyncEngine> {
    client.engine().pull(Query::<TodoItem>::new(), QUERY_ID).poll_interval(poll).start()
}

/// Which way to sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Push the queue.
    Push,
    /// Pull every item (pending changes are pushed first, as the library does, so they
    /// are not overwritten).
    Pull,
    /// Push, then pull every item: the quickstart's refresh.
    Both,
}

/// What a sync did, and what it left behind. The JSON of `sync`, `push` and `pull`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// Changes the server accepted.
    pub pushed: u64,
    /// Items written or deleted locally from the server's rows.
    pub pulled: u64,
    /// Conflicts waiting to be settled (`todo resolve`), after this run.
    pub conflicts: u64,
    /// Other changes the server refused, waiting in the store, after this run.
    pub errors: u64,
}

impl Outcome {
    /// Whether nothing waits to be settled.
    pub fn is_settled(&self) -> bool {
        self.conflicts == 0 && self.errors == 0
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        let mut text = format!("pushed {}, pulled {}", plural(self.pushed, "change"), plural(self.pulled, "item"));
        if self.conflicts > 0 {
            text.push_str(&format!(", {} to settle", plural(self.conflicts, "conflict")));
        }
        if self.errors > 0 {
            text.push_str(&format!(", {} refused", plural(self.errors, "change")));
        }
        text
    }

    /// The failure to report when something waits to be settled.
    pub fn unsettled(&self) -> Option<Failure> {
        if self.is_settled() {
            return None;
        }
        let mut what = Vec::new();
        if self.conflicts > 0 {
            what.push(plural(self.conflicts, "conflict"));
        }
        if self.errors > 0 {
            what.push(plural(self.errors, "refused change"));
        }
        let verb = if self.conflicts + self.errors == 1 { "waits" } else { "wait" };
        Some(
            Failure::new("unsettled", format!("{} {verb} to be settled", what.join(" and ")))
                .hint("`todo status` shows them; `todo resolve ID --mine` or `todo resolve ID --theirs` settles one")
                .exit(Exit::Unsettled),
        )
    }
}

/// `n thing` / `n things`.
pub fn plural(n: u64, thing: &str) -> String {
    if n == 1 { format!("1 {thing}") } else { format!("{n} {thing}s") }
}

/// Runs a sync. A push stopped by the network, the credentials or an unavailable
/// server is an error (the changes stay queued).
pub async fn run(device: &Device, client: &SyncClient, direction: Direction) -> sync_runtime::Result<Outcome> {
    let mut outcome = Outcome::default();
    if direction != Direction::Pull || device.todos.has_pending().await? {
        // A push stopped by the network, the credentials or an unavailable server is an
        // `Error::PushCancelled`: `?` reports it, and the changes stay queued.
        let report = client.push().await?;
        outcome.pushed = report.pushed;
    }
    if direction != Direction::Push {
        let report = client.pull(Query::<TodoItem>::new(), Some(QUERY_ID)).await?;
        outcome.pulled = report.applied + report.deleted;
    }
    for error in device.todos.errors().await? {
        if error.is_conflict() {
            outcome.conflicts += 1;
        } else {
            outcome.errors += 1;
        }
    }
    Ok(outcome)
}

/// `todo sync`, `todo push`, `todo pull`: prints the outcome; exit status 0 only when
/// nothing waits to be settled.
pub async fn command(ctx: &crate::Ctx, direction: Direction) -> crate::failure::Result<()> {
    let name = match direction {
        Direction::Push => "push",
        Direction::Pull => "pull",
        Direction::Both => "sync",
    };
    let server = ctx.server.as_deref().ok_or_else(|| Failure::no_server(name))?;
    let device = ctx.device().await?;
    let client = device.client(server, ctx.protocol, crate::progress::sink())?;
    let outcome = run(&device, &client, direction).await.map_err(|e| Failure::from_sync(e, Some(server)))?;
    if ctx.json {
        crate::output::print_json(&outcome)?;
    } else {
        println!("{name}: {}", outcome.summary());
    }
    match outcome.unsettled() {
        Some(failure) => Err(failure),
        None => Ok(()),
    }
}
