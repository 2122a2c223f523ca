//! WAL checkpoints in the background.
//!
//! In WAL mode a commit appends pages to the `-wal` file; a checkpoint copies them back
//! into the database file and syncs both, so the log can start over. SQLite runs one on
//! the committing thread once the log holds 1000 pages: that commit then takes 5-18 ms
//! instead of tens of microseconds (measured on the development VM: in the push bench
//! one commit in about 200, and 62% of all commit time). Here the copy runs on a thread
//! of its own, with its own
//! connection: the store thread only signals it, after the commit that crosses
//! [`SOFT_PAGES`].
//!
//! A background checkpoint cannot finish the job alone while the store keeps writing:
//! the log starts over only when every page in it was copied back, and new commits keep
//! landing while the copy runs. So once the background copy is done, the next commit runs
//! a checkpoint itself; it finds only the pages written since, and the write after it
//! starts the log over. If the background thread falls behind, a commit that finds
//! [`HARD_PAGES`] pages in the log waits for the background copy to end (it holds the
//! checkpoint lock, so a checkpoint started meanwhile would only find it busy) and then
//! checkpoints itself: the log's size stays bounded however slow the disk is.
//!
//! The checkpointer connection writes no data: the store keeps its one writer connection.

use std::cell::RefCell;
use std::ffi::c_int;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use rusqlite::hooks::Wal;
use rusqlite::{Connection, OpenFlags};

/// Pages in the log that start a background checkpoint (SQLite's own threshold).
pub(crate) const SOFT_PAGES: c_int = 1000;

/// Pages in the log past which a commit checkpoints itself.
pub(crate) const HARD_PAGES: c_int = 8 * SOFT_PAGES;

/// How long a commit at [`HARD_PAGES`] waits for the background copy to end.
const HARD_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

thread_local! {
    /// The checkpointer of the store whose thread this is: the WAL hook is a plain
    /// function, and it runs on the thread that commits.
    static CHECKPOINTER: RefCell<Option<Arc<Shared>>> = const { RefCell::new(None) };
}

/// Where the background checkpoint is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Nothing asked.
    Idle,
    /// Asked, not started.
    Wanted,
    Running,
    /// Done: the next commit copies what was written meanwhile.
    Copied,
    /// The store is closing.
    Closed,
}

struct Shared {
    phase: Mutex<Phase>,
    wake: Condvar,
    /// Checkpoints run by the background thread (for tests).
    background_runs: AtomicU64,
}

/// The background checkpointer of one store file. Dropping it stops its thread, after
/// the checkpoint it is running.
pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens a second connection to `path` and starts the thread, then hooks `conn` (the
    /// store's connection, on the current thread, which must be the one that commits on
    /// it). On failure `conn` keeps SQLite's own checkpoints.
    pub(crate) fn start(
        conn: &Connection,
        path: &Path,
        options: &super::StoreOptions,
    ) -> Result<Checkpointer, Box<dyn std::error::Error>> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let copier = Connection::open_with_flags(path, flags)?;
        super::cipher::unlock(&copier, options)?;
        copier.busy_timeout(std::time::Duration::from_secs(5))?;
        // Read once so the connection sees the file is in WAL mode and opens the log.
        copier.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
        let shared = Arc::new(Shared {
            phase: Mutex::new(Phase::Idle),
            wake: Condvar::new(),
            background_runs: AtomicU64::new(0),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("sync-checkpoint:{}", path.display()))
                .spawn(move || run(&copier, &shared))?
        };
        CHECKPOINTER.with(|c| *c.borrow_mut() = Some(Arc::clone(&shared)));
        conn.wal_hook(Some(after_commit));
        Ok(Checkpointer { shared, thread: Some(thread) })
    }

    /// Makes this the checkpointer of the current thread until the scope drops: for a
    /// write committed on a caller's thread (see `Store::try_inline`), whose commit runs
    /// the WAL hook there.
    pub(crate) fn enter(&self) -> HookScope {
        let previous = CHECKPOINTER.with(|c| c.borrow_mut().replace(Arc::clone(&self.shared)));
        HookScope { previous }
    }

    /// How many checkpoints the background thread ran.
    #[cfg(test)]
    pub(crate) fn background_runs(&self) -> u64 {
        self.shared.background_runs.load(Ordering::Relaxed)
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        *self.shared.phase.lock().unwrap_or_else(|e| e.into_inner()) = Phase::Closed;
        self.shared.wake.notify_all();
        CHECKPOINTER.with(|c| {
            let mut c = c.borrow_mut();
            if c.as_ref().is_some_and(|s| Arc::ptr_eq(s, &self.shared)) {
                *c = None;
            }
        });
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The current thread's checkpointer while a write runs on it; the previous one (none,
/// on a caller's thread) comes back on drop.
pub(crate) struct HookScope {
    previous: Option<Arc<Shared>>,
}

impl Drop for HookScope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CHECKPOINTER.with(|c| *c.borrow_mut() = previous);
    }
}

/// The background thread: one passive checkpoint each time one is wanted.
fn run(copier: &Connection, shared: &Shared) {
    loop {
        {
            let mut phase = shared.phase.lock().unwrap_or_else(|e| e.into_inner());
            while !matches!(*phase, Phase::Wanted | Phase::Closed) {
                phase = shared.wake.wait(phase).unwrap_or_else(|e| e.into_inner());
            }
            if *phase == Phase::Closed {
                return;
            }
            *phase = Phase::Running;
        }
        match copier.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))
        {
            Ok((log, copied)) => tracing::trace!(log, copied, "background checkpoint"),
            Err(e) => tracing::warn!(error = %e, "background checkpoint failed"),
        }
        shared.background_runs.fetch_add(1, Ordering::Relaxed);
        let mut phase = shared.phase.lock().unwrap_or_else(|e| e.into_inner());
        if *phase == Phase::Running {
            *phase = Phase::Copied;
        }
        // A commit at the hard limit may be waiting for this copy.
        shared.wake.notify_all();
    }
}

/// The store connection's WAL hook: `pages` is what the log holds after this commit.
/// Errors are logged, never returned: the commit has happened either way.
fn after_commit(wal: &Wal, pages: c_int) -> rusqlite::Result<()> {
    if pages < SOFT_PAGES {
        return Ok(());
    }
    let shared = CHECKPOINTER.with(|c| c.borrow().clone());
    let Some(shared) = shared else {
        // No checkpointer on this thread (it has stopped): do what SQLite does.
        checkpoint_here(wal);
        return Ok(());
    };
    let inline = {
        let mut phase = shared.phase.lock().unwrap_or_else(|e| e.into_inner());
        match *phase {
            Phase::Idle => {
                *phase = Phase::Wanted;
                shared.wake.notify_all();
                false
            }
            Phase::Copied => {
                *phase = Phase::Idle;
                true
            }
            Phase::Wanted | Phase::Running if pages >= HARD_PAGES => {
                // The log is at its bound and the background copy holds the checkpoint
                // lock (or is about to): a checkpoint here would find it busy and the
                // log would keep growing. Wait for the copy, then copy the rest here.
                // Bounded, in case the thread is gone: then this checkpoint may find the
                // log busy, as SQLite's own would.
                let deadline = std::time::Instant::now() + HARD_WAIT;
                while matches!(*phase, Phase::Wanted | Phase::Running) {
                    let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) else {
                        tracing::warn!(pages, "the background checkpoint did not end in time");
                        break;
                    };
                    phase = shared.wake.wait_timeout(phase, left).unwrap_or_else(|e| e.into_inner()).0;
                }
                if *phase == Phase::Copied {
                    *phase = Phase::Idle;
                }
                true
            }
            Phase::Wanted | Phase::Running => false,
            Phase::Closed => true,
        }
    };
    if inline {
        checkpoint_here(wal);
    }
    Ok(())
}

fn checkpoint_here(wal: &Wal) {
    // Busy (the background one is running): the next commit tries again.
    if let Err(e) = wal.checkpoint() {
        tracing::trace!(error = %e, "checkpoint on commit did not run");
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{HARD_PAGES, SOFT_PAGES};
    use crate::store::tests::rt;
    use crate::{Store, SyncEntity};

    #[derive(SyncEntity, Clone, Debug)]
    #[sync(crate = "crate")]
    struct Note {
        id: String,
        body: String,
    }

    const ITEMS_PER_COMMIT: usize = 20;

    /// Runs `test` with the path of a store file in a new directory.
    fn on_a_file(test: impl AsyncFnOnce(&Path)) {
        let dir = tempfile::tempdir().unwrap();
        rt().block_on(test(&dir.path().join("store.db")));
    }

    /// Commits of about `ITEMS_PER_COMMIT` pages each (one 3 KB item a page), `pages`
    /// in all.
    async fn write_pages(store: &Store, pages: usize, tag: &str) {
        let notes = store.table::<Note>().await.unwrap();
        for batch in 0..pages / ITEMS_PER_COMMIT {
            let items = (0..ITEMS_PER_COMMIT)
                .map(|i| Note { id: format!("{tag}-{batch}-{i}"), body: "n".repeat(3000) })
                .collect::<Vec<_>>();
            notes.insert_many(items).await.unwrap();
        }
    }

    fn wal_len(db: &Path) -> Option<u64> {
        std::fs::metadata(db.with_extension("db-wal")).ok().map(|m| m.len())
    }

    #[test]
    fn the_log_stays_bounded_and_the_background_thread_copies_it() {
        on_a_file(async |path| {
            let store = Store::open(path).await.unwrap();
            // Four times the hard limit: without checkpoints the log would hold it all.
            write_pages(&store, 4 * HARD_PAGES as usize, "a").await;
            let runs = store.call(|w| Ok(w.checkpointer.as_ref().map(|c| c.background_runs()))).await.unwrap();
            let runs = runs.expect("a file store has a checkpointer");
            assert!(runs > 0, "the background thread ran");
            // The log file keeps the largest size it reached: at most the hard limit and a
            // few commits past it (each frame is a page and a 24-byte header).
            let page = 4096 + 24;
            let bound = (HARD_PAGES as u64 + 4 * ITEMS_PER_COMMIT as u64) * page + 32;
            let len = wal_len(path).expect("the log exists while the store is open");
            assert!(len <= bound, "log of {len} bytes, bound {bound}; {runs} background checkpoints");

            // Everything committed reads back, from the store and from another connection.
            let stored = store.table::<Note>().await.unwrap().count_all().await.unwrap();
            assert_eq!(stored, 4 * HARD_PAGES as u64);
            let raw = rusqlite::Connection::open(path).unwrap();
            let check: String = raw.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
            assert_eq!(check, "ok");
            let count: u64 = raw.query_row("SELECT count(*) FROM \"Note\"", [], |r| r.get(0)).unwrap();
            assert_eq!(count, stored);
            drop(raw);
            store.close().await.unwrap();
        });
    }

    #[test]
    fn closing_the_store_copies_the_log_back_and_removes_it() {
        on_a_file(async |path| {
            let store = Store::open(path).await.unwrap();
            // Past the soft limit, so the background thread has run (or is running).
            write_pages(&store, 2 * SOFT_PAGES as usize, "b").await;
            assert!(wal_len(path).is_some());
            store.close().await.unwrap();
            // Removed by the last connection to close: the checkpointer's is gone too.
            assert_eq!(wal_len(path), None, "the log is removed when the store closes");
            let store = Store::open(path).await.unwrap();
            let stored = store.table::<Note>().await.unwrap().count_all().await.unwrap();
            assert_eq!(stored, 2 * SOFT_PAGES as u64);
            store.close().await.unwrap();
        });
    }

    #[test]
    fn a_store_in_memory_has_no_checkpointer() {
        rt().block_on(async {
            let store = Store::open_in_memory().await.unwrap();
            let has = store.call(|w| Ok(w.checkpointer.is_some())).await.unwrap();
            assert!(!has);
        });
    }
}
