//! Encryption at rest: the key a store file is opened with (SQLCipher).
//!
//! Every connection to an encrypted file, the writer's, each reader's and the
//! checkpointer's, is given the key before its first statement. A file that does not
//! open with the key given (another key, no key, a plain file opened with a key) fails
//! on that first read, before anything writes, so the file is left as it was.

use rusqlite::Connection;

use crate::error::{Error, Result};

use super::StoreOptions;

/// The secret handed to `PRAGMA key`: a passphrase, or a raw key as `x'hex'`. Its
/// `Debug` never shows it.
#[cfg(feature = "encryption")]
#[derive(Clone)]
pub(super) struct Secret(pub(super) String);

#[cfg(feature = "encryption")]
impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Gives `conn` the store's key, if it has one; must run before any other statement.
#[cfg_attr(not(feature = "encryption"), allow(clippy::unnecessary_wraps))]
pub(super) fn unlock(conn: &Connection, options: &StoreOptions) -> Result<()> {
    #[cfg(feature = "encryption")]
    if let Some(secret) = &options.key {
        if secret.0.is_empty() {
            return Err(Error::Config { message: "the store's encryption key is empty".into(), source: None });
        }
        conn.pragma_update(None, "key", &secret.0)?;
    }
    #[cfg(not(feature = "encryption"))]
    let _ = (conn, options);
    Ok(())
}

/// The error of a store's first read, told apart: a file that is not a database to this
/// connection is, for a store, most often encrypted with another key (or none).
pub(super) fn first_read_error(e: Error, options: &StoreOptions, path: Option<&std::path::Path>) -> Error {
    let not_a_database = matches!(&e, Error::Sqlite(rusqlite::Error::SqliteFailure(f, _)) if f.code == rusqlite::ErrorCode::NotADatabase);
    if !not_a_database {
        return e;
    }
    let path = path.map(std::path::Path::to_path_buf).unwrap_or_default();
    if has_key(options) { Error::WrongKey { path } } else { Error::NotAStore { path } }
}

fn has_key(options: &StoreOptions) -> bool {
    #[cfg(feature = "encryption")]
    {
        options.key.is_some()
    }
    #[cfg(not(feature = "encryption"))]
    {
        let _ = options;
        false
    }
}
