//! Which database a server keeps its rows in, from a URL (`sqlite:PATH`,
//! `sqlite::memory:` or `postgres://...`), and opening its storage.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use crate::error::Error;
use crate::stamp::Clock;
use crate::storage::{PostgresStorage, SqliteStorage, Storage};

/// Which database to use, from a URL: `sqlite:PATH`, `sqlite::memory:` or
/// `postgres://...`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Database {
    /// A SQLite file (created when missing), in WAL mode.
    SqliteFile(PathBuf),
    /// A private in-memory SQLite database, gone when the server stops.
    SqliteMemory,
    /// A PostgreSQL URL, `postgres://user:password@host:port/dbname`, with libpq's
    /// query parameters (`?options=-csearch_path%3Dmyschema` picks the schema the tables
    /// live in). See [`PostgresStorage`].
    Postgres(String),
}

impl FromStr for Database {
    type Err = Error;

    fn from_str(url: &str) -> Result<Database, Error> {
        let bad = |message: &str| Error::Database { url: url.to_owned(), message: message.to_owned() };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return match tokio_postgres::Config::from_str(url) {
                Ok(_) => Ok(Database::Postgres(url.to_owned())),
                Err(e) => Err(Error::Database { url: redact(url), message: format!("invalid URL: {e}") }),
            };
        }
        let Some(rest) = url.strip_prefix("sqlite:") else {
            return Err(bad("unsupported database URL; expected sqlite:PATH, sqlite::memory: or postgres://..."));
        };
        let path = rest.strip_prefix("//").unwrap_or(rest);
        match path {
            ":memory:" => Ok(Database::SqliteMemory),
            "" => Err(bad("missing path after `sqlite:`")),
            _ => Ok(Database::SqliteFile(PathBuf::from(path))),
        }
    }
}

impl Database {
    /// Opens the storage for this database.
    pub async fn open(&self, clock: Arc<dyn Clock>) -> Result<Arc<dyn Storage>, Error> {
        match self {
            Database::SqliteFile(path) => Ok(Arc::new(SqliteStorage::open_file(path.clone(), clock).await?)),
            Database::SqliteMemory => Ok(Arc::new(SqliteStorage::open_memory(clock).await?)),
            Database::Postgres(url) => match PostgresStorage::connect(url, clock).await {
                Ok(storage) => Ok(Arc::new(storage)),
                Err(e) => Err(Error::Database { url: redact(url), message: describe(&e) }),
            },
        }
    }
}

/// An error with its causes, for a start-up message.
fn describe(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}

/// The URL without its password (in the user info or a `password=` parameter), for
/// messages.
fn redact(url: &str) -> String {
    let url = match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme_end + 3], &userinfo[..colon], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    };
    match url.split_once('?') {
        Some((base, query)) => {
            let params: Vec<&str> =
                query.split('&').map(|p| if p.starts_with("password=") { "password=***" } else { p }).collect();
            format!("{base}?{}", params.join("&"))
        }
        None => url,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        assert_eq!("sqlite::memory:".parse::<Database>().unwrap(), Database::SqliteMemory);
        assert_eq!("sqlite:/tmp/x.db".parse::<Database>().unwrap(), Database::SqliteFile(PathBuf::from("/tmp/x.db")));
        assert_eq!("sqlite://data/x.db".parse::<Database>().unwrap(), Database::SqliteFile(PathBuf::from("data/x.db")));
        assert!(matches!("postgres://u:p@h/db".parse::<Database>().unwrap(), Database::Postgres(_)));
        let q = "postgresql://u@h:5432/db?options=-csearch_path%3Dx&application_name=a";
        assert!(matches!(q.parse::<Database>().unwrap(), Database::Postgres(_)));
        let err = "postgres://u:secret@h/db?nonsense=1".parse::<Database>().unwrap_err().to_string();
        assert!(err.contains("nonsense") && !err.contains("secret"), "{err}");
        assert!("mysql://x".parse::<Database>().is_err());
        assert!("sqlite:".parse::<Database>().is_err());
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db?password=secret&x=1"), "postgres://u@h/db?password=***&x=1");
    }
}
