//! A call of the sync client: awaited in a tokio runtime, or waited for by code with no
//! async runtime at all (`.wait()`), which then runs on a runtime of the client's own.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use crate::error::{Error, Result};

type Boxed<T> = Pin<Box<dyn Future<Output = Result<T>> + Send>>;

/// A push, pull or sync, not run yet: `.await` it inside a tokio runtime (with I/O and
/// time enabled: `#[tokio::main]` has both), or `.wait()` for it on a thread with no
/// async runtime. Awaited outside a tokio runtime, it fails with
/// [`Error::Runtime`] instead of panicking.
///
/// ```no_run
/// # use sync_runtime::{Store, SyncClient, SyncEntity};
/// # #[derive(SyncEntity, Clone, Debug)]
/// # struct TodoItem { id: String, text: String }
/// # fn main() -> sync_runtime::Result<()> {
/// // A command-line tool or a UI thread: no async runtime anywhere.
/// let store = Store::open("todo.db").wait()?;
/// store.table::<TodoItem>().wait()?;
/// let client = SyncClient::builder(store, "http://127.0.0.1:8080").build()?;
/// let report = client.sync::<TodoItem>().wait()?;
/// println!("pushed {}, pulled {}", report.push.pushed, report.pull.received);
/// # Ok(())
/// # }
/// ```
#[must_use = "a sync call does nothing until it is awaited or waited for"]
pub struct SyncCall<T> {
    future: Boxed<T>,
    checked: bool,
}

impl<T> std::fmt::Debug for SyncCall<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncCall").finish_non_exhaustive()
    }
}

impl<T: Send + 'static> SyncCall<T> {
    pub(super) fn new(future: impl Future<Output = Result<T>> + Send + 'static) -> SyncCall<T> {
        SyncCall { future: Box::pin(future), checked: false }
    }

    /// Runs the call on this thread and returns its result: for code without an async
    /// runtime. The requests run on a small runtime of the client's own (one thread,
    /// made on first use, idle between calls).
    ///
    /// Inside a tokio runtime this is refused with [`Error::Runtime`]: await the call.
    pub fn wait(self) -> Result<T> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::Runtime(
                "`.wait()` was called inside a tokio runtime, where it would block the runtime's thread; `.await` the call instead",
            ));
        }
        blocking_runtime()?.block_on(self.future)
    }
}

impl<T> Future for SyncCall<T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if !self.checked {
            if tokio::runtime::Handle::try_current().is_err() {
                return Poll::Ready(Err(Error::Runtime(
                    "the sync client's calls need a tokio runtime with I/O and time enabled (`#[tokio::main]`); await them inside one, or `.wait()` for them on a thread without any async runtime",
                )));
            }
            self.checked = true;
        }
        self.future.as_mut().poll(cx)
    }
}

/// The runtime `.wait()` runs calls on: one worker thread, which also drives the
/// connections the HTTP client keeps (so they stay usable from any runtime later).
pub(super) fn blocking_runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("sync-client")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|_| Error::Runtime("cannot start the runtime `.wait()` runs sync calls on"))
}
