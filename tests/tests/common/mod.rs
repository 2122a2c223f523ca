//! A real `sync-server` for end-to-end tests, on its own thread and runtime, so a test
//! can stop and restart it at any moment (even from inside a progress callback).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use sync_runtime::{ProtocolVersion, Store, SyncClient};
use sync_server::{Clock, Server};
use sync_tests::TodoItem;

/// A server on 127.0.0.1 serving `TodoItem` from a SQLite file.
pub struct TestServer {
    pub addr: SocketAddr,
    pub db: PathBuf,
    stop: Option<mpsc::Sender<mpsc::Sender<()>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server on a new port.
    pub fn start(db: &Path) -> TestServer {
        TestServer::start_at(db, "127.0.0.1:0".parse().unwrap(), None)
    }

    /// Starts a server with a clock of the test's.
    pub fn start_with_clock(db: &Path, clock: impl Clock) -> TestServer {
        TestServer::start_at(db, "127.0.0.1:0".parse().unwrap(), Some(Box::new(move |b| b.clock(clock))))
    }

    fn start_at(
        db: &Path,
        addr: SocketAddr,
        configure: Option<Box<dyn FnOnce(sync_server::ServerBuilder) -> sync_server::ServerBuilder + Send>>,
    ) -> TestServer {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<mpsc::Sender<()>>();
        let db_path = db.to_path_buf();
        let thread = thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
            rt.block_on(async move {
                let mut builder = Server::builder()
                    .table::<TodoItem>()
                    .database(format!("sqlite:{}", db_path.display()).parse().unwrap());
                if let Some(configure) = configure {
                    builder = configure(builder);
                }
                let server = builder.build().await.unwrap();
                let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
                let handle = server.spawn(listener).unwrap();
                ready_tx.send(handle.local_addr()).unwrap();
                let ack = tokio::task::spawn_blocking(move || stop_rx.recv()).await.unwrap();
                handle.shutdown().await.unwrap();
                if let Ok(ack) = ack {
                    let _ = ack.send(());
                }
            });
        });
        let addr = ready_rx.recv().expect("the test server started");
        TestServer { addr, db: db.to_path_buf(), stop: Some(stop_tx), thread: Some(thread) }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and waits until it no longer serves. Safe to call from any
    /// thread, including inside a client's progress callback.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let (ack_tx, ack_rx) = mpsc::channel();
            let _ = stop.send(ack_tx);
            let _ = ack_rx.recv();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Starts again on the same port and file.
    pub fn restart(&mut self) {
        self.stop();
        *self = TestServer::start_at(&self.db.clone(), self.addr, None);
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A device: its own store file and a client of the server.
pub struct Device {
    pub store: Store,
    pub client: SyncClient,
}

impl Device {
    pub async fn new(dir: &Path, name: &str, url: &str, protocol: ProtocolVersion) -> Device {
        Device::with(dir, name, url, protocol, |b| b).await
    }

    pub async fn with(
        dir: &Path,
        name: &str,
        url: &str,
        protocol: ProtocolVersion,
        configure: impl FnOnce(sync_runtime::SyncClientBuilder) -> sync_runtime::SyncClientBuilder,
    ) -> Device {
        let store = Store::open(dir.join(format!("{name}.db"))).await.unwrap();
        store.table::<TodoItem>().await.unwrap();
        let builder = SyncClient::builder(store.clone(), url)
            .protocol(protocol)
            .retry(sync_runtime::RetryPolicy::none())
            .timeout(std::time::Duration::from_secs(10));
        let client = configure(builder).build().unwrap();
        Device { store, client }
    }

    pub async fn items(&self) -> Vec<TodoItem> {
        let t = self.store.table::<TodoItem>().await.unwrap();
        t.query().order_by(TodoItem::FIELDS.id.asc()).all().await.unwrap()
    }
}

/// A fresh multi-thread runtime with time and IO.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}
