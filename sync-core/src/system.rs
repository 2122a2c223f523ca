//! Names of the system columns and tables, in one place for client and server.

/// The primary key.
pub const ID: &str = "id";
/// The opaque row version the server assigns on every write.
pub const VERSION: &str = "version";
/// The server's last-modified timestamp (millisecond precision), kept locally as the
/// exact string the server sent.
pub const UPDATED_AT: &str = "updatedAt";
/// The server's creation timestamp (protocol v2 only sends it).
pub const CREATED_AT: &str = "createdAt";
/// The soft-delete flag.
pub const DELETED: &str = "deleted";

/// Every system column, in the order local tables store them after `id`.
pub const SYSTEM_COLUMNS: [&str; 5] = [ID, VERSION, UPDATED_AT, CREATED_AT, DELETED];

/// Whether `name` is one of the system columns (compared exactly, and also
/// case-insensitively, since some servers match property names that way).
pub fn is_system_column(name: &str) -> bool {
    SYSTEM_COLUMNS.iter().any(|s| s.eq_ignore_ascii_case(name))
}

/// The operations queue.
pub const OPERATIONS_TABLE: &str = "__sync_operations";
/// Operations the server refused.
pub const ERRORS_TABLE: &str = "__sync_errors";
/// Key/value configuration of the store.
pub const CONFIG_TABLE: &str = "__sync_config";
/// Incremental pull cursors per (table, query id).
pub const CURSORS_TABLE: &str = "__sync_cursors";
/// Server rows a pull could not read as the table's struct, set aside.
pub const REJECTED_TABLE: &str = "__sync_rejected";
/// The stored schema of every synced table (column, type, nullability, role).
pub const SCHEMA_TABLE: &str = "__sync_schema";
/// The prefix no app table may start with.
pub const RESERVED_PREFIX: &str = "__sync";
