//! A sync client pushing to or pulling from a server double that answers arbitrary
//! bytes: a result or a clear error, the queue intact unless the answer was a success,
//! the store sound and readable (`sync_tests::fuzzing::ClientHarness`).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sync_runtime::ProtocolVersion;
use sync_tests::fuzzing::{ClientHarness, FuzzAnswer};

fn client() -> &'static ClientHarness {
    static CLIENT: OnceLock<ClientHarness> = OnceLock::new();
    CLIENT.get_or_init(ClientHarness::start)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let protocol = if mode & 2 == 0 { ProtocolVersion::V2 } else { ProtocolVersion::V3 };
    if let Err(problem) = client().check(&FuzzAnswer::from_bytes(rest), mode & 1 == 1, protocol) {
        panic!("{problem}");
    }
});
