//! Progress events of pushes and pulls, for a progress bar.

use std::time::Duration;

/// Which part of a sync an event belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncPhase {
    /// Sending queued operations.
    Push,
    /// Fetching and applying server rows.
    Pull,
}

/// One step of a push (one operation done) or a pull (one page applied).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SyncEvent {
    /// Push or pull.
    pub phase: SyncPhase,
    /// The table of the last step (a push walks every table in queue order; its last
    /// event names the table of the last operation it sent, and is empty only when
    /// there was nothing to send).
    pub table: String,
    /// Operations sent (push) or rows received (pull) so far.
    pub done: u64,
    /// Operations queued when the push started (push); `None` for a pull, whose total
    /// is unknown until its end.
    pub total: Option<u64>,
    /// Body bytes moved so far: the pages a pull received; the requests a push sent
    /// and the answers it received.
    pub bytes: u64,
    /// Time since the push or pull started.
    pub elapsed: Duration,
    /// Whether this is the last event of the push or pull.
    pub finished: bool,
}
