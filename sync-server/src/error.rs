//! The one public error type of the server library: configuration and start-up
//! problems. (Request errors are HTTP answers, see `problem.rs`.)

use std::path::PathBuf;

use crate::storage::StorageError;

/// What went wrong while configuring or starting a server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A table definition the server cannot serve.
    #[error("table `{table}`: {message}")]
    Table {
        /// The table.
        table: String,
        /// What is wrong.
        message: String,
    },

    /// A column definition the server cannot serve.
    #[error("table `{table}`, column `{column}`: {message}")]
    Column {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// What is wrong.
        message: String,
    },

    /// The tables file is not valid TOML or not of the expected shape.
    #[error("tables file: {0}")]
    TablesFile(String),

    /// The tables file cannot be read.
    #[error("cannot read the tables file {}", path.display())]
    ReadTablesFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },

    /// A database URL that is not supported (yet).
    #[error("database `{url}`: {message}")]
    Database {
        /// The URL as given.
        url: String,
        /// What is wrong.
        message: String,
    },

    /// A builder setting out of range.
    #[error("setting `{name}`: {message}")]
    Setting {
        /// The setting.
        name: &'static str,
        /// What is wrong.
        message: String,
    },

    /// The storage failed while opening or preparing the tables.
    #[error("storage error: {0}")]
    Storage(#[from] StorageError),

    /// Binding or serving the socket failed.
    #[error("I/O error")]
    Io(#[from] std::io::Error),
}

impl Error {
    pub(crate) fn table(table: &str, message: impl Into<String>) -> Error {
        Error::Table { table: table.to_owned(), message: message.into() }
    }

    pub(crate) fn column(table: &str, column: &str, message: impl Into<String>) -> Error {
        Error::Column { table: table.to_owned(), column: column.to_owned(), message: message.into() }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
