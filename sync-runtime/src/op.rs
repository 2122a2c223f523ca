//! The vocabulary of the operations queue: what an operation does and where it stands.

use std::fmt;
use std::str::FromStr;

/// The kind of a queued operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// POST the row.
    Insert,
    /// PATCH (v2) / PUT (v3) the row.
    Update,
    /// DELETE the row.
    Delete,
}

impl OpKind {
    /// Every kind.
    pub const ALL: [OpKind; 3] = [OpKind::Insert, OpKind::Update, OpKind::Delete];

    /// The name stored in the queue table.
    pub const fn as_str(self) -> &'static str {
        match self {
            OpKind::Insert => "insert",
            OpKind::Update => "update",
            OpKind::Delete => "delete",
        }
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OpKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        OpKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| format!("unknown operation kind `{s}`"))
    }
}

/// Where an operation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpState {
    /// Never sent.
    Pending,
    /// Sent at least once; its request may have reached the server.
    Attempted,
    /// The server refused it; its error row tells why.
    Failed,
}

impl OpState {
    /// Every state.
    pub const ALL: [OpState; 3] = [OpState::Pending, OpState::Attempted, OpState::Failed];

    /// The name stored in the queue table.
    pub const fn as_str(self) -> &'static str {
        match self {
            OpState::Pending => "pending",
            OpState::Attempted => "attempted",
            OpState::Failed => "failed",
        }
    }
}

impl fmt::Display for OpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OpState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        OpState::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| format!("unknown operation state `{s}`"))
    }
}
