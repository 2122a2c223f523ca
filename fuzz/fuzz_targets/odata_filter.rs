//! The OData `$filter` parser, without and with a schema, and the printer reading its
//! own output back (`sync_tests::fuzzing::check_filter`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(problem) = sync_tests::fuzzing::check_filter(&text) {
        panic!("{problem}");
    }
});
