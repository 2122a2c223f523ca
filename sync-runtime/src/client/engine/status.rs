//! What the sync engine tells an app: its status as a value, and a stream of it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use tokio::sync::watch;

use crate::error::Error;

/// Where the sync engine stands: what a status line or a badge shows. A value from
/// [`SyncEngine::status`](crate::SyncEngine::status), and a stream of them from
/// [`SyncEngine::statuses`](crate::SyncEngine::statuses), yielded on each change.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SyncStatus {
    /// The engine runs (false once it stopped).
    pub running: bool,
    /// The last exchange with the server went through (or its change feed is up).
    pub connected: bool,
    /// A round runs while the engine is not connected: the first one, or a retry.
    pub connecting: bool,
    /// Queued operations are being sent.
    pub uploading: bool,
    /// Server changes are being fetched.
    pub downloading: bool,
    /// The server's change feed is up: changes reach this device as they are made,
    /// and the polling interval is only a fallback.
    pub feed: bool,
    /// Operations queued ([`Store::pending_count`](crate::Store::pending_count)):
    /// those not sent yet, and those waiting in the error table.
    pub pending: u64,
    /// Operations the server refused, waiting in the error table for the app
    /// ([`Table::errors`](crate::Table::errors)).
    pub errors: u64,
    /// When a round last went through without an error.
    pub last_synced_at: Option<SystemTime>,
    /// The last failure, until a round goes through without one.
    pub last_error: Option<SyncFailure>,
    /// When the engine tries again after a failure (it backs off while the server is
    /// unreachable or unavailable).
    pub retry_at: Option<SystemTime>,
    /// How far the push under way is.
    pub upload: Option<SyncProgress>,
    /// How far the pull under way is.
    pub download: Option<SyncProgress>,
}

impl SyncStatus {
    pub(crate) fn starting() -> SyncStatus {
        SyncStatus {
            running: true,
            connected: false,
            connecting: true,
            uploading: false,
            downloading: false,
            feed: false,
            pending: 0,
            errors: 0,
            last_synced_at: None,
            last_error: None,
            retry_at: None,
            upload: None,
            download: None,
        }
    }
}

/// What kind of failure the engine last met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncErrorKind {
    /// The server could not be reached (the engine tries again by itself).
    Network,
    /// The server refused the credentials, after one token refresh.
    Auth,
    /// The server answered with an error or stayed unavailable (5xx, 429), or its
    /// answer did not follow the protocol.
    Server,
    /// A pushed change met a newer server copy and waits in the error table for the
    /// app to resolve.
    Conflict,
    /// The server refused a pushed change (4xx): it waits in the error table.
    Refused,
    /// The local store failed.
    Local,
}

/// The engine's last failure.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncFailure {
    /// What kind.
    pub kind: SyncErrorKind,
    /// What happened, for people.
    pub message: String,
    /// When.
    pub at: SystemTime,
}

impl SyncFailure {
    pub(crate) fn new(kind: SyncErrorKind, message: String) -> SyncFailure {
        SyncFailure { kind, message, at: SystemTime::now() }
    }

    pub(crate) fn from_error(e: &Error) -> SyncFailure {
        let kind = if e.is_network() {
            SyncErrorKind::Network
        } else if e.is_auth() {
            SyncErrorKind::Auth
        } else if e.http_status().is_some() || matches!(e, Error::Protocol { .. }) {
            SyncErrorKind::Server
        } else {
            SyncErrorKind::Local
        };
        SyncFailure::new(kind, e.with_sources())
    }
}

impl std::fmt::Display for SyncFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// How far a push or a pull under way is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncProgress {
    /// The table of the last step.
    pub table: String,
    /// Operations sent, or rows received, so far.
    pub done: u64,
    /// Operations to send (a push); `None` for a pull, whose total is unknown.
    pub total: Option<u64>,
}

type Changed = Pin<Box<dyn Future<Output = (bool, watch::Receiver<SyncStatus>)> + Send>>;

/// The engine's status, now and after each change: from
/// [`SyncEngine::statuses`](crate::SyncEngine::statuses). A `futures::Stream`;
/// [`StatusStream::next`] awaits the next status and [`StatusStream::wait_next`]
/// waits for it on a thread with no async runtime. The first item is the status when
/// the stream was made; a burst of changes yields the last state (never a stale one).
/// It ends after the engine stopped.
#[must_use = "a status stream yields nothing unless polled"]
pub struct StatusStream {
    state: State,
}

enum State {
    /// The current status is yielded next.
    First(watch::Receiver<SyncStatus>),
    Idle(watch::Receiver<SyncStatus>),
    Waiting(Changed),
    Ended,
}

impl std::fmt::Debug for StatusStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusStream").finish_non_exhaustive()
    }
}

impl StatusStream {
    pub(crate) fn new(receiver: watch::Receiver<SyncStatus>) -> StatusStream {
        StatusStream { state: State::First(receiver) }
    }

    /// The next status; `None` once the engine has stopped and its last status was
    /// yielded.
    pub async fn next(&mut self) -> Option<SyncStatus> {
        std::future::poll_fn(|cx| self.poll_status(cx)).await
    }

    /// The next status, sleeping on this thread until there is one: for code with no
    /// async runtime.
    pub fn wait_next(&mut self) -> Option<SyncStatus> {
        crate::store::block_on(std::future::poll_fn(|cx| self.poll_status(cx)))
    }

    fn poll_status(&mut self, cx: &mut Context<'_>) -> Poll<Option<SyncStatus>> {
        loop {
            match std::mem::replace(&mut self.state, State::Ended) {
                State::First(mut receiver) => {
                    let status = receiver.borrow_and_update().clone();
                    self.state = State::Idle(receiver);
                    return Poll::Ready(Some(status));
                }
                State::Idle(mut receiver) => {
                    self.state = State::Waiting(Box::pin(async move {
                        let open = receiver.changed().await.is_ok();
                        (open, receiver)
                    }));
                }
                State::Waiting(mut changed) => match changed.as_mut().poll(cx) {
                    Poll::Pending => {
                        self.state = State::Waiting(changed);
                        return Poll::Pending;
                    }
                    Poll::Ready((true, mut receiver)) => {
                        let status = receiver.borrow_and_update().clone();
                        self.state = State::Idle(receiver);
                        return Poll::Ready(Some(status));
                    }
                    Poll::Ready((false, _)) => return Poll::Ready(None),
                },
                State::Ended => return Poll::Ready(None),
            }
        }
    }
}

impl futures_core::Stream for StatusStream {
    type Item = SyncStatus;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SyncStatus>> {
        self.get_mut().poll_status(cx)
    }
}
