//! What a push tells the app: its report, how it ended, and how each conflict ended.
//! (A push that stopped early is an [`Error::PushCancelled`](crate::Error::PushCancelled)
//! that carries its report.)

use crate::network_cause::NetworkCause;
use crate::op::OpKind;

/// How a push ended.
///
/// A push that returns `Ok` is always [`Complete`](PushStatus::Complete); the report of
/// a cancelled one travels in [`Error::PushCancelled`](crate::Error::PushCancelled).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushStatus {
    /// Every operation that could be sent was sent (some may have become errors).
    Complete,
    /// The push stopped early; the operation it was on stays queued.
    Cancelled(PushCancel),
}

/// Why a push stopped early.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushCancel {
    /// The server could not be reached ("cancelled by network").
    Network {
        /// The request's URL.
        url: String,
        /// What failed: the HTTP stack's error.
        source: NetworkCause,
    },
    /// The server refused the credentials ("cancelled by auth").
    Auth {
        /// The request's URL.
        url: String,
        /// 401 or 403.
        status: u16,
    },
    /// The server kept answering 429/502/503/504.
    Unavailable {
        /// The request's URL.
        url: String,
        /// The last status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The sync engine running the push was stopped
    /// ([`SyncEngine::stop`](crate::SyncEngine::stop)): the answer of the operation in
    /// flight was recorded, the rest stays queued.
    Stopped,
}

/// How one conflict ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConflictResolution {
    /// The server's copy was taken locally.
    ServerWins,
    /// The local change was sent again over the server's version.
    ClientWins,
    /// A merged item was stored and sent.
    Merged,
    /// Left to the app: an error row was recorded.
    Unresolved,
    /// Not a real conflict: an earlier attempt had landed but its answer was lost.
    EarlierAttemptLanded,
    /// An insert met a deleted item of its id on the server (the item was deleted and
    /// the app created it again): the server's tombstone was undeleted and the local
    /// item written over it.
    Recreated,
}

/// One conflict met during a push.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConflictOutcome {
    /// The table.
    pub table: String,
    /// The item's id.
    pub item_id: String,
    /// The operation's kind.
    pub kind: OpKind,
    /// 409 or 412.
    pub status: u16,
    /// How it ended.
    pub resolution: ConflictResolution,
}

/// What a push did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PushReport {
    /// Operations the server accepted (and removed from the queue).
    pub pushed: u64,
    /// Conflicts met, and how each ended.
    pub conflicts: Vec<ConflictOutcome>,
    /// Error rows recorded by this push.
    pub errors: u64,
    /// Operations skipped because they (or an earlier operation on the same item) wait
    /// in the error table.
    pub skipped: u64,
    /// Bytes of request and answer bodies this push sent and received.
    pub bytes: u64,
    /// How the push ended.
    pub status: PushStatus,
}

impl PushReport {
    /// Whether the push got through the whole queue.
    pub fn is_complete(&self) -> bool {
        self.status == PushStatus::Complete
    }
}
