//! The connection pool of a [`super::PostgresStorage`]: `deadpool-postgres`, set up as
//! the storage needs it.
//!
//! - At most `max_connections` connections (16 by default), opened on demand; opening
//!   one gives up after the connect timeout (10 s unless the URL says otherwise).
//! - A call waits at most [`ACQUIRE_TIMEOUT`] for a free connection, then fails with
//!   [`StorageError::Unavailable`] (503, which clients retry).
//! - Every new connection gets the session settings ([`SESSION_SETTINGS`]).
//! - Each connection keeps its prepared statements (deadpool's statement cache, by SQL
//!   text; the write path prepares a handful of statements per table, so it stays
//!   small).
//! - A connection goes back to the pool only when its call ended ([`Lease::finish`]);
//!   one whose call was dropped midway is closed ([`Lease`]).
//! - After [`Pool::close`], every call fails with [`StorageError::Unavailable`].

use std::time::Duration;

use deadpool_postgres::{
    ClientWrapper, Hook, HookError, Manager, ManagerConfig, Object, PoolError, RecyclingMethod, Runtime, TimeoutType,
};
use tokio_postgres::NoTls;

use super::{connect_error, db_error};
use crate::storage::StorageError;

/// Connections a storage opens at most, by default.
pub(super) const DEFAULT_MAX_CONNECTIONS: usize = 16;
/// How long a request waits for a free connection before it gets 503.
pub(super) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long opening a connection may take, unless the URL says otherwise.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Session settings of every connection: a write that waits this long for a lock (an
/// owner's clock row, a row another write is writing) gives up (503, and the client
/// retries) instead of piling up; a session left idle inside a transaction (a stuck
/// instance) is ended and its locks released.
pub(super) const SESSION_SETTINGS: &str = "SET lock_timeout = '10s'; SET idle_in_transaction_session_timeout = '60s'";

/// `config` with what the storage's connections default to: a connect timeout, and
/// `application_name` `sync-server`, unless the URL says otherwise.
pub(super) fn with_defaults(mut config: tokio_postgres::Config) -> tokio_postgres::Config {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("sync-server");
    }
    config
}

/// The pool of one storage (clones share it).
#[derive(Clone, Debug)]
pub(super) struct Pool(deadpool_postgres::Pool);

impl Pool {
    /// A pool of at most `max_connections` (at least 1) connections to `config`, whose
    /// callers wait at most `acquire_timeout` for one; none is opened yet.
    pub(super) fn new(
        config: tokio_postgres::Config,
        max_connections: usize,
        acquire_timeout: Duration,
    ) -> Result<Pool, StorageError> {
        let config = with_defaults(config);
        // `Fast` recycling checks only that the connection is open: a connection comes
        // back only from a call that ended (see `Lease`), so it is in no transaction.
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(max_connections.max(1))
            .wait_timeout(Some(acquire_timeout))
            .runtime(Runtime::Tokio1)
            .post_create(Hook::async_fn(|client: &mut ClientWrapper, _| {
                Box::pin(async move { client.batch_execute(SESSION_SETTINGS).await.map_err(HookError::Backend) })
            }))
            .build()
            .map_err(|e| StorageError::Database(Box::new(e)))?;
        Ok(Pool(pool))
    }

    /// A connection for one call: an idle one, or a new one while there are fewer than
    /// the maximum.
    pub(super) async fn get(&self) -> Result<Lease, StorageError> {
        match self.0.get().await {
            Ok(conn) => Ok(Lease { conn: Some(conn) }),
            Err(PoolError::Timeout(TimeoutType::Wait)) => {
                Err(StorageError::Unavailable("every PostgreSQL connection stayed busy"))
            }
            Err(PoolError::Timeout(_)) => Err(StorageError::Unavailable("PostgreSQL is unavailable; retry")),
            Err(PoolError::Closed) => Err(StorageError::Unavailable("the storage is closed")),
            Err(PoolError::Backend(e)) => Err(connect_error(e)),
            Err(PoolError::PostCreateHook(HookError::Backend(e))) => Err(db_error(e)),
            Err(e @ (PoolError::PostCreateHook(HookError::Message(_)) | PoolError::NoRuntimeSpecified)) => {
                Err(StorageError::Database(Box::new(e)))
            }
        }
    }

    /// How many connections are open and idle, for the metrics endpoint.
    pub(super) fn usage(&self) -> crate::storage::PoolUse {
        let status = self.0.status();
        crate::storage::PoolUse { open: status.size, idle: status.available, max: status.max_size }
    }

    /// Closes the idle connections; connections in use are closed when their calls end,
    /// and later calls fail with [`StorageError::Unavailable`].
    pub(super) fn close(&self) {
        self.0.close();
    }
}

/// A connection taken from the pool for one call. It goes back by [`Lease::finish`]
/// only: a lease dropped midway (its request was cancelled while a statement ran) closes
/// its connection, so PostgreSQL rolls back whatever it had open and no later call gets
/// a connection in an unknown state. (deadpool's own `Object` would go back to the pool
/// when dropped.)
pub(super) struct Lease {
    /// `Some` until the lease ends.
    conn: Option<Object>,
}

impl Lease {
    /// The connection.
    pub(super) fn client(&mut self) -> Result<&mut ClientWrapper, StorageError> {
        self.conn.as_deref_mut().ok_or(StorageError::Unavailable("the connection went back to the pool"))
    }

    /// Gives the connection back to the pool (which drops it if it is closed, or if the
    /// pool is).
    pub(super) fn finish(mut self) {
        drop(self.conn.take());
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Out of the pool; dropping the client closes the connection.
            drop(Object::take(conn));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    /// A pool on the test PostgreSQL (`SYNC_TEST_POSTGRES_URL`), or `None` (said on
    /// stderr) when it is not set.
    fn test_pool(max_connections: usize, acquire_timeout: Duration) -> Option<Pool> {
        let Some(url) = std::env::var("SYNC_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty()) else {
            eprintln!("SKIPPED: SYNC_TEST_POSTGRES_URL is not set");
            return None;
        };
        let config = tokio_postgres::Config::from_str(&url).unwrap();
        Some(Pool::new(config, max_connections, acquire_timeout).unwrap())
    }

    async fn backend_pid(lease: &mut Lease) -> i32 {
        lease.client().unwrap().query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0)
    }

    #[tokio::test]
    async fn connections_have_the_session_settings_and_come_back_when_finished() {
        let Some(pool) = test_pool(1, ACQUIRE_TIMEOUT) else { return };
        let mut lease = pool.get().await.unwrap();
        let row = lease.client().unwrap().query_one("SHOW lock_timeout", &[]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), "10s");
        let pid = backend_pid(&mut lease).await;
        lease.finish();
        assert_eq!(backend_pid(&mut pool.get().await.unwrap()).await, pid, "a finished lease's connection is reused");
    }

    #[tokio::test]
    async fn a_lease_dropped_midway_closes_its_connection() {
        let Some(pool) = test_pool(1, ACQUIRE_TIMEOUT) else { return };
        let mut lease = pool.get().await.unwrap();
        let pid = backend_pid(&mut lease).await;
        lease.client().unwrap().batch_execute("BEGIN").await.unwrap();
        // Cancelled while a statement runs.
        let sleep = async { lease.client()?.simple_query("SELECT pg_sleep(5)").await.map_err(db_error) };
        assert!(tokio::time::timeout(Duration::from_millis(100), sleep).await.is_err());
        drop(lease);
        let mut next = pool.get().await.unwrap();
        assert_ne!(backend_pid(&mut next).await, pid, "a new connection, not the one left mid-statement");
    }

    #[tokio::test]
    async fn a_busy_pool_answers_unavailable_and_a_closed_one_too() {
        let Some(pool) = test_pool(1, Duration::from_millis(200)) else { return };
        let lease = pool.get().await.unwrap();
        assert!(matches!(pool.get().await, Err(StorageError::Unavailable("every PostgreSQL connection stayed busy"))));
        lease.finish();
        pool.get().await.unwrap().finish();
        pool.close();
        assert!(matches!(pool.get().await, Err(StorageError::Unavailable("the storage is closed"))));
    }
}
