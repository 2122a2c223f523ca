//! Failures a person can act on: what went wrong, what to do about it, and the exit
//! status. `main` prints them on stderr (and, with `--json`, as an object on stdout);
//! nothing expected ever panics.

use std::fmt;
use std::process::ExitCode;

/// The exit status of a failure: 1 for errors, 3 for a sync that ran but left
/// conflicts or refused changes behind. (clap uses 2 for usage errors.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Something failed.
    Error,
    /// The command line is wrong.
    Usage,
    /// A sync ran, but conflicts or errors wait in the store.
    Unsettled,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> ExitCode {
        ExitCode::from(match self {
            Exit::Error => 1,
            Exit::Usage => 2,
            Exit::Unsettled => 3,
        })
    }
}

/// A failure, as the user sees it.
#[derive(Debug)]
pub struct Failure {
    /// A short machine-readable kind: `no-server`, `network`, `unknown-id`, ...
    pub kind: &'static str,
    /// What went wrong, in one sentence.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
    /// The exit status.
    pub exit: Exit,
}

impl Failure {
    /// A failure with exit status 1.
    pub fn new(kind: &'static str, message: impl Into<String>) -> Failure {
        Failure { kind, message: message.into(), hint: None, exit: Exit::Error }
    }

    /// Adds what to do about it.
    pub fn hint(mut self, hint: impl Into<String>) -> Failure {
        self.hint = Some(hint.into());
        self
    }

    /// Sets the exit status.
    pub fn exit(mut self, exit: Exit) -> Failure {
        self.exit = exit;
        self
    }

    /// No server was given for a command that needs one.
    pub fn no_server(command: &str) -> Failure {
        Failure::new("no-server", format!("`todo {command}` needs a server, and none is configured"))
            .hint("set --server or TODO_SERVER (for example --server http://127.0.0.1:8080; `todo serve` runs one)")
    }

    /// No item has this id (or id prefix).
    pub fn unknown_id(id: &str) -> Failure {
        Failure::new("unknown-id", format!("no item with id `{id}`"))
            .hint("`todo list --all` shows every item with its id (any unique prefix of an id works)")
    }

    /// A failure of the sync library, in terms of this app. `server` is the configured
    /// server URL, for messages about reaching it.
    pub fn from_sync(error: sync_runtime::Error, server: Option<&str>) -> Failure {
        use sync_runtime::Error;
        let at = |url: &str| server.map_or_else(|| url.to_owned(), str::to_owned);
        match error {
            // A push that stopped early: what stopped it is what the user can act on
            // (the changes stay queued).
            Error::PushCancelled { cause, .. } => Failure::from_sync(*cause, server),
            Error::Network { url, source } => {
                let message = chain(&source);
                let detail = network_detail(&message);
                Failure::new("network", format!("cannot reach the server at {} ({detail})", at(&url))).hint(
                    "local changes are kept; check the URL (--server / TODO_SERVER) and that the server runs, then sync again",
                )
            }
            Error::Auth { url, status } => Failure::new(
                "auth",
                format!("the server at {} refused the request (HTTP {status}): it wants credentials", at(&url)),
            )
            .hint("this example signs in to nobody: use a server that allows anonymous access to TodoItem"),
            Error::NotFound { id, .. } => Failure::unknown_id(&id),
            Error::Protocol { url, message } => {
                Failure::new("protocol", format!("the server at {} answered something unexpected: {message}", at(&url)))
                    .hint("check the URL and --protocol (v2 for Azure Mobile Apps servers, v3 for Datasync servers)")
            }
            Error::Http { url, status, message } => {
                let about_version = message.contains("API-VERSION") || message.contains("API version");
                let hint = match status {
                    404 => "is the URL right, and does the server serve the table `TodoItem`?",
                    405 | 415 => "check --protocol (v2 for Azure Mobile Apps servers, v3 for Datasync servers)",
                    400 if about_version => {
                        "check --protocol (v2 for Azure Mobile Apps servers, v3 for Datasync servers)"
                    }
                    400..=499 => "the server refused the request; local changes are kept",
                    _ => "local changes are kept; try again later",
                };
                Failure::new("http", format!("the server at {} answered HTTP {status}: {message}", at(&url))).hint(hint)
            }
            Error::StaleOperation { reason, .. } => {
                Failure::new("stale", format!("the change behind this error moved on: {reason}"))
                    .hint("run `todo status` to see where it stands now")
            }
            Error::QueueConflict { id, existing, new, reason, .. } => {
                Failure::new("queue", format!("cannot {new} item `{id}` after its pending {existing}: {reason}"))
            }
            e @ (Error::SchemaMismatch { .. } | Error::IncompatibleStore { .. }) => {
                Failure::new("store", e.to_string()).hint("point --db (or TODO_DB) at another file")
            }
            Error::PendingOperations { pending, .. } => {
                Failure::new("pending", format!("{pending} local changes are not pushed yet"))
                    .hint("run `todo sync` first")
            }
            other => Failure::new("store", chain(&other)),
        }
    }
}

/// The useful part of a network failure: reqwest's message starts with the whole
/// request URL (query string included), which says nothing the server URL does not.
fn network_detail(message: &str) -> &str {
    let rest = match message.strip_prefix("error sending request for url (") {
        Some(rest) => rest.split_once("): ").map_or(message, |(_, cause)| cause),
        None => message,
    };
    rest.strip_prefix("client error (Connect): ").unwrap_or(rest)
}

/// An error and its sources, in one line.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl From<sync_runtime::Error> for Failure {
    fn from(error: sync_runtime::Error) -> Failure {
        Failure::from_sync(error, None)
    }
}

impl From<sync_server::Error> for Failure {
    fn from(error: sync_server::Error) -> Failure {
        Failure::new("server", chain(&error))
    }
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Failure {
        Failure::new("io", chain(&error))
    }
}

/// `Result` with a [`Failure`].
pub type Result<T, E = Failure> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::network_detail;

    #[test]
    fn network_detail_drops_the_request_url() {
        let message = "error sending request for url (http://127.0.0.1:1/tables/TodoItem?%24top=500): client error \
                       (Connect): tcp connect error: Connection refused (os error 111)";
        assert_eq!(network_detail(message), "tcp connect error: Connection refused (os error 111)");
        assert_eq!(network_detail("timed out"), "timed out");
    }
}
