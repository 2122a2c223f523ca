//! Read connections to a store file, reused from call to call.
//!
//! In WAL mode a reader never waits for the writer (nor the writer for readers): a read
//! sees the database as of its first statement, which includes every write whose call
//! returned before it. Each read takes an idle connection (or opens one), runs on the
//! calling thread, and puts the connection back.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};

use super::StoreOptions;
use super::call::Read;

/// Idle read connections kept open; more are opened while more reads run at once.
const MAX_IDLE: usize = 4;

pub(super) struct ReaderPool {
    path: PathBuf,
    options: StoreOptions,
    idle: Mutex<Vec<Connection>>,
    closed: AtomicBool,
}

impl ReaderPool {
    pub(super) fn new(path: PathBuf, options: StoreOptions) -> ReaderPool {
        ReaderPool { path, options, idle: Mutex::new(Vec::new()), closed: AtomicBool::new(false) }
    }

    /// Runs `read` on a read connection, here.
    pub(super) fn with<R>(&self, read: Read<R>) -> Result<R> {
        let conn = self.take()?;
        let result = read(&conn);
        self.put(conn);
        result
    }

    fn take(&self) -> Result<Connection> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::StoreClosed);
        }
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        match idle {
            Some(conn) => Ok(conn),
            None => self.open(),
        }
    }

    fn put(&self, conn: Connection) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
    }

    /// A read-only connection to the file, set up like the writer's (limits, key, the
    /// compiled SQL's functions).
    fn open(&self) -> Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        super::configure_connection(&conn, &self.options)?;
        conn.pragma_update(None, "query_only", true)?;
        Ok(conn)
    }

    /// Closes the idle connections; later reads are refused.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }
}
