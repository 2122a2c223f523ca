//! Compile errors of `#[derive(SyncEntity)]`: each `tests/ui/*.rs` must fail to compile
//! with exactly the diagnostics in its `.stderr` file.
//!
//! Bless after an intended change with `TRYBUILD=overwrite cargo test -p sync-tests --test ui`,
//! then read every changed `.stderr`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/*.rs");
}
