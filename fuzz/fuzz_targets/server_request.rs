//! A real `sync-server` (in-memory SQLite, a column of every type) fed arbitrary request
//! bodies, `$filter` and `$orderby` texts over 127.0.0.1: every answer is a success or a
//! 4xx with a JSON error, and a typed client can read back whatever it accepted
//! (`sync_tests::fuzzing::ServerHarness`).
#![no_main]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use libfuzzer_sys::fuzz_target;
use sync_tests::fuzzing::{FuzzRequest, ServerHarness};

fn server() -> &'static ServerHarness {
    static SERVER: OnceLock<ServerHarness> = OnceLock::new();
    SERVER.get_or_init(ServerHarness::start)
}

fuzz_target!(|data: &[u8]| {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let server = server();
    if let Err(problem) = server.check(&FuzzRequest::from_bytes(data)) {
        panic!("{problem}");
    }
    if RUNS.fetch_add(1, Ordering::Relaxed) % 500 == 499 {
        server.check_health().unwrap();
        server.check_client_reads_everything().unwrap();
    }
});
