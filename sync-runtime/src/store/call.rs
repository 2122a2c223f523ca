//! A call to the store: awaited by async code, or waited for by code with no async
//! runtime (`.wait()`), the same call either way.
//!
//! A write is a job for the store thread, sent when the call is first polled (or
//! waited for) and answered through a one-shot channel: the caller sleeps until the
//! answer comes, it never spins. A read of a file store runs on the calling thread, on
//! a read connection of the store's pool: no thread is woken at all. (An in-memory
//! store has one connection, so its reads go to the store thread too.)

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::error::{Error, Result};

use super::{Store, Worker};

/// A job for the store thread.
pub(super) type Job<T> = Box<dyn FnOnce(&mut Worker) -> Result<T> + Send>;

/// A read, on any connection of the store.
pub(super) type Read<T> = Box<dyn FnOnce(&Connection) -> Result<T> + Send>;

/// The answer of a job: its result, or the panic of the app closure it ran.
pub(super) type Answer<T> = thread::Result<Result<T>>;

/// A call to the store, not run yet: `.await` it in async code, or `.wait()` for it on
/// a thread with no async runtime (a UI thread, a command-line tool). Dropped without
/// either, it does nothing.
///
/// ```
/// # use sync_runtime::{Store, SyncEntity};
/// # #[derive(SyncEntity, Clone, Debug, PartialEq)]
/// # struct Note { id: String, text: String }
/// # fn main() -> sync_runtime::Result<()> {
/// // No async runtime anywhere: every call is waited for on this thread.
/// let store = Store::open_in_memory().wait()?;
/// let notes = store.table::<Note>().wait()?;
/// let note = notes.insert(Note { id: String::new(), text: "hello".into() }).wait()?;
/// assert_eq!(notes.get(&note.id).wait()?, Some(note));
/// # Ok(())
/// # }
/// ```
#[must_use = "a store call does nothing until it is awaited or waited for"]
pub struct StoreCall<T, E = Error> {
    state: State<T>,
    /// Converts the store's error into the caller's (a transaction's own error type).
    convert: fn(Error) -> E,
}

/// Sends a call on its way; the answer comes through the channel it returns.
type Dispatch<T> = Box<dyn FnOnce() -> Result<oneshot::Receiver<Answer<T>>> + Send>;

enum State<T> {
    /// Not started: sent when first polled or waited for.
    Deferred(Dispatch<T>),
    /// Not started: a read.
    Read(Store, Read<T>),
    /// Not started: a short write, run on the caller's thread when the writer is idle
    /// (see `Store::try_inline`), else sent.
    Inline(Store, Job<T>),
    /// Sent to the store thread; the answer comes through the channel.
    Sent(oneshot::Receiver<Answer<T>>),
    /// Known without running anything (an argument refused up front).
    Ready(Result<T>),
    /// The result was handed out.
    Done,
}

// The result is only ever moved out, never pinned in place.
impl<T, E> Unpin for StoreCall<T, E> {}

impl<T, E> std::fmt::Debug for StoreCall<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Deferred(_) => "not sent",
            State::Read(..) => "not read",
            State::Inline(..) => "not written",
            State::Sent(_) => "sent",
            State::Ready(_) => "ready",
            State::Done => "done",
        };
        f.debug_tuple("StoreCall").field(&state).finish()
    }
}

impl<T: Send + 'static> StoreCall<T> {
    pub(super) fn job(store: Store, job: Job<T>) -> StoreCall<T> {
        StoreCall::deferred(Box::new(move || store.submit(job)))
    }

    /// A call that starts with `send` (opening a store: spawning its thread).
    pub(super) fn deferred(send: Dispatch<T>) -> StoreCall<T> {
        StoreCall { state: State::Deferred(send), convert: std::convert::identity }
    }

    pub(super) fn read(store: Store, read: Read<T>) -> StoreCall<T> {
        StoreCall { state: State::Read(store, read), convert: std::convert::identity }
    }

    /// A short write (one item's insert, update or delete), run here when it can be.
    pub(super) fn inline(store: Store, job: Job<T>) -> StoreCall<T> {
        if store.inner.inline_writes {
            StoreCall { state: State::Inline(store, job), convert: std::convert::identity }
        } else {
            StoreCall::job(store, job)
        }
    }

    /// A call already sent (see [`Store::transaction_now`]).
    pub(super) fn sent(rx: oneshot::Receiver<Answer<T>>) -> StoreCall<T> {
        StoreCall { state: State::Sent(rx), convert: std::convert::identity }
    }

    pub(super) fn ready(result: Result<T>) -> StoreCall<T> {
        StoreCall { state: State::Ready(result), convert: std::convert::identity }
    }

    /// The same call, its store errors made into `E`s.
    pub(super) fn convert_err<E>(self, convert: fn(Error) -> E) -> StoreCall<T, E> {
        StoreCall { state: self.state, convert }
    }
}

impl<T: Send + 'static, E> StoreCall<T, E> {
    /// Runs the call on this thread and returns its result: for code without an async
    /// runtime. A write sleeps until the store thread answers; a read runs here.
    ///
    /// Waiting inside an async task blocks that task's thread: async code awaits the
    /// call instead.
    pub fn wait(self) -> std::result::Result<T, E> {
        let convert = self.convert;
        let result = match self.state {
            State::Deferred(send) => match send() {
                Ok(rx) => block_on(rx).map_err(|_| Error::StoreClosed).and_then(settle),
                Err(e) => Err(e),
            },
            State::Read(store, read) => store.run_read(read).unwrap_or_else(|job| store.run_job(job)),
            State::Inline(store, job) => store.run_job(job),
            State::Sent(rx) => block_on(rx).map_err(|_| Error::StoreClosed).and_then(settle),
            State::Ready(result) => result,
            State::Done => Err(Error::StoreClosed),
        };
        result.map_err(convert)
    }
}

impl<T: Send + 'static, E> Future for StoreCall<T, E> {
    type Output = std::result::Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let convert = this.convert;
        loop {
            match std::mem::replace(&mut this.state, State::Done) {
                State::Deferred(send) => match send() {
                    Ok(rx) => this.state = State::Sent(rx),
                    Err(e) => return Poll::Ready(Err(convert(e))),
                },
                State::Read(store, read) => match store.run_read(read) {
                    Ok(result) => return Poll::Ready(result.map_err(convert)),
                    Err(job) => this.state = State::Inline(store, job),
                },
                State::Inline(store, job) => match store.try_inline(job) {
                    Ok(result) => return Poll::Ready(result.map_err(convert)),
                    Err(job) => match store.submit(job) {
                        Ok(rx) => this.state = State::Sent(rx),
                        Err(e) => return Poll::Ready(Err(convert(e))),
                    },
                },
                State::Sent(mut rx) => {
                    return match Pin::new(&mut rx).poll(cx) {
                        Poll::Pending => {
                            this.state = State::Sent(rx);
                            Poll::Pending
                        }
                        Poll::Ready(answer) => {
                            Poll::Ready(answer.map_err(|_| Error::StoreClosed).and_then(settle).map_err(convert))
                        }
                    };
                }
                State::Ready(result) => return Poll::Ready(result.map_err(convert)),
                State::Done => return Poll::Ready(Err(convert(Error::StoreClosed))),
            }
        }
    }
}

impl Store {
    /// Runs `job` here if the writer is idle, else on the store thread, sleeping until
    /// it answers.
    fn run_job<T: Send + 'static>(&self, job: Job<T>) -> Result<T> {
        match self.try_inline(job) {
            Ok(result) => result,
            Err(job) => match self.submit(job) {
                Ok(rx) => block_on(rx).map_err(|_| Error::StoreClosed).and_then(settle),
                Err(e) => Err(e),
            },
        }
    }
}

/// A job's result, or its panic raised again in the caller, as if the closure had run
/// there.
pub(super) fn settle<T>(answer: Answer<T>) -> Result<T> {
    answer.unwrap_or_else(|payload| std::panic::resume_unwind(payload))
}

/// Runs `future` to completion on this thread, sleeping while it is pending (the store's
/// answers come from another thread, which wakes this one).
pub(crate) fn block_on<F: IntoFuture>(future: F) -> F::Output {
    struct Unpark(thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future.into_future());
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(out) => return out,
            Poll::Pending => thread::park(),
        }
    }
}
