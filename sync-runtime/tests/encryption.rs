//! Encrypted store files (the `encryption` feature): written, reopened with the key,
//! refused with a wrong key or none, and the refused file left exactly as it was.
#![cfg(feature = "encryption")]

use std::path::Path;

use sync_runtime::{Error, Store, StoreOptions, SyncEntity};

#[derive(SyncEntity, Clone, Debug, PartialEq)]
struct Note {
    id: String,
    text: String,
}

const SECRET_TEXT: &str = "meet at the old mill at dawn";

fn note(id: &str) -> Note {
    Note { id: id.into(), text: SECRET_TEXT.into() }
}

/// The file's bytes and those of its log, if any.
fn snapshot(path: &Path) -> (Vec<u8>, Option<Vec<u8>>) {
    let wal = path.with_extension("db-wal");
    (std::fs::read(path).unwrap(), std::fs::read(wal).ok())
}

/// Writes notes to a new store at `path`, closes it.
fn write_store(path: &Path, options: StoreOptions) {
    let store = Store::open_with(path, options).wait().unwrap();
    let notes = store.table::<Note>().wait().unwrap();
    notes.insert(note("a")).wait().unwrap();
    notes.insert(note("b")).wait().unwrap();
    // Read back on a read connection, which opens with the key too.
    assert_eq!(notes.count_all().wait().unwrap(), 2);
    store.close().wait().unwrap();
}

#[test]
fn a_store_written_with_a_key_reopens_with_it_and_holds_no_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.db");
    write_store(&path, StoreOptions::new().key("correct horse battery staple"));

    let bytes = std::fs::read(&path).unwrap();
    assert!(!bytes.starts_with(b"SQLite format 3\0"), "the header is encrypted too");
    assert!(
        !bytes.windows(SECRET_TEXT.len()).any(|w| w == SECRET_TEXT.as_bytes()),
        "the row's text must not be on disk in the clear"
    );

    let store = Store::open_with(&path, StoreOptions::new().key("correct horse battery staple")).wait().unwrap();
    let notes = store.table::<Note>().wait().unwrap();
    assert_eq!(notes.get("a").wait().unwrap(), Some(note("a")));
    assert_eq!(notes.count_all().wait().unwrap(), 2);
    // The queue survived too: both inserts are still to push.
    assert_eq!(store.pending_count().wait().unwrap(), 2);
    notes.insert(note("c")).wait().unwrap();
    assert_eq!(notes.count_all().wait().unwrap(), 3);
}

#[test]
fn a_wrong_key_is_a_clear_error_and_the_file_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.db");
    write_store(&path, StoreOptions::new().key("right"));
    let before = snapshot(&path);

    let err = Store::open_with(&path, StoreOptions::new().key("wrong")).wait().expect_err("a wrong key must fail");
    assert!(matches!(&err, Error::WrongKey { path: p } if p == &path), "{err:?}");
    assert!(err.to_string().contains("does not open with the key"), "{err}");
    assert_eq!(snapshot(&path), before, "a refused open must not write");

    // The right key still opens it, with everything in it.
    let store = Store::open_with(&path, StoreOptions::new().key("right")).wait().unwrap();
    assert_eq!(store.table::<Note>().wait().unwrap().count_all().wait().unwrap(), 2);
}

#[test]
fn no_key_is_a_clear_error_and_the_file_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.db");
    write_store(&path, StoreOptions::new().key("right"));
    let before = snapshot(&path);

    let err = Store::open(&path).wait().expect_err("opening without the key must fail");
    assert!(matches!(&err, Error::NotAStore { path: p } if p == &path), "{err:?}");
    assert!(err.to_string().contains("encrypted and no key was given"), "{err}");
    assert_eq!(snapshot(&path), before, "a refused open must not write");
}

#[test]
fn a_plain_store_opened_with_a_key_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.db");
    write_store(&path, StoreOptions::new());
    assert!(std::fs::read(&path).unwrap().starts_with(b"SQLite format 3\0"));
    let before = snapshot(&path);

    let err = Store::open_with(&path, StoreOptions::new().key("k")).wait().expect_err("must fail");
    assert!(matches!(err, Error::WrongKey { .. }), "{err:?}");
    assert_eq!(snapshot(&path), before);
}

#[test]
fn a_raw_key_opens_what_it_wrote_and_no_other_raw_key_does() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raw.db");
    let key = [7u8; 32];
    write_store(&path, StoreOptions::new().raw_key(&key));

    let store = Store::open_with(&path, StoreOptions::new().raw_key(&key)).wait().unwrap();
    assert_eq!(store.table::<Note>().wait().unwrap().get("b").wait().unwrap(), Some(note("b")));
    store.close().wait().unwrap();

    let err = Store::open_with(&path, StoreOptions::new().raw_key(&[8u8; 32])).wait().expect_err("must fail");
    assert!(matches!(err, Error::WrongKey { .. }), "{err:?}");
}

#[test]
fn an_empty_passphrase_is_refused_rather_than_storing_in_the_clear() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    let err = Store::open_with(&path, StoreOptions::new().key("")).wait().expect_err("must fail");
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(!path.exists() || std::fs::metadata(&path).unwrap().len() == 0, "nothing written");
}

#[test]
fn options_never_show_the_key() {
    let shown = format!("{:?}", StoreOptions::new().key("hunter2"));
    assert!(!shown.contains("hunter2"), "{shown}");
}
