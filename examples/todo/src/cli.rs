//! The command line.

use std::path::PathBuf;

use clap::{ArgGroup, Parser, Subcommand, ValueEnum};
use sync_runtime::ProtocolVersion;

/// A todo list that works offline and syncs with a table server (Azure Mobile Apps v2
/// or Datasync v3). Without a command, opens the terminal UI.
#[derive(Debug, Parser)]
#[command(name = "todo", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// The local store, a SQLite file [default: $TODO_DB, else todo.db in your data directory]
    // Not clap's `env`: a global option's env value would leak into `serve --db`.
    #[arg(long, global = true, value_name = "FILE")]
    pub db: Option<PathBuf>,

    /// The server to sync with, e.g. http://127.0.0.1:8080
    #[arg(long, global = true, env = "TODO_SERVER", value_name = "URL")]
    pub server: Option<String>,

    /// The protocol generation the server speaks
    #[arg(long, global = true, env = "TODO_PROTOCOL", value_enum, default_value_t = Protocol::V2)]
    pub protocol: Protocol,

    /// Machine-readable output on stdout (errors too, as {"error": {...}})
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

const AFTER_HELP: &str = "\
Exit status: 0 when everything worked; 1 on an error (no server, server unreachable, unknown id, ...);
2 on a usage error; 3 when a sync ran but conflicts or refused changes wait (see `todo status`).

Start here: `todo demo`.";

/// The wire protocol's generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// Azure Mobile Apps (ZUMO-API-VERSION 2.0.0)
    V2,
    /// Datasync (ZUMO-API-VERSION 3.0.0)
    V3,
}

impl From<Protocol> for ProtocolVersion {
    fn from(p: Protocol) -> ProtocolVersion {
        match p {
            Protocol::V2 => ProtocolVersion::V2,
            Protocol::V3 => ProtocolVersion::V3,
        }
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Adds an item (offline; `todo sync` sends it) and prints its id
    Add {
        /// What to do
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// Lists the items not done yet, ordered by text
    List {
        /// Every item, done or not
        #[arg(long)]
        all: bool,
    },
    /// Marks an item done
    Done {
        /// The item's id (or a unique prefix of it)
        id: String,
    },
    /// Marks an item not done
    Undone {
        /// The item's id (or a unique prefix of it)
        id: String,
    },
    /// Changes an item's text
    Edit {
        /// The item's id (or a unique prefix of it)
        id: String,
        /// The new text
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// Deletes an item
    Rm {
        /// The item's id (or a unique prefix of it)
        id: String,
    },
    /// Pushes local changes, then pulls every item from the server
    Sync,
    /// Pushes local changes to the server
    Push,
    /// Pulls every item from the server (pending local changes are pushed first)
    Pull,
    /// Shows pending changes and the errors and conflicts the server reported
    Status,
    /// Syncs by itself until SIGINT or SIGTERM, printing the list and the sync status as
    /// they change (with --json: one JSON object per line)
    Watch {
        /// Pull this often, in seconds, when the server has no change feed
        #[arg(long, default_value_t = 5.0, value_name = "SECS")]
        poll: f64,
    },
    /// Settles a conflict (or another refused change) of one item
    #[command(group = ArgGroup::new("side").required(true).multiple(false))]
    Resolve {
        /// The item's id (or a unique prefix of it)
        id: String,
        /// Keep the local change: send it again over the server's version (then push, with a server)
        #[arg(long, group = "side")]
        mine: bool,
        /// Take the server's copy and drop the local change
        #[arg(long, group = "side")]
        theirs: bool,
    },
    /// Runs the sync server for TodoItem (prints `listening on http://ADDR`)
    Serve {
        /// The server's database, a SQLite file [default: todo-server.db in your data directory]
        #[arg(long, env = "TODO_SERVER_DB", value_name = "FILE")]
        db: Option<PathBuf>,
        /// The address to listen on; port 0 lets the system pick one
        #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
        listen: String,
    },
    /// A narrated walk-through: two devices, an embedded server, a conflict
    Demo,
}
