//! Typed queries over a table, and the untyped AST they compile from.
//!
//! One [`Query`] value runs locally as SQL with bound parameters
//! ([`crate::sql`]), travels to a server as OData text ([`crate::odata`]), and is
//! read back from OData text into the same [`Expr`] by the server.

pub mod analysis;
mod ast;
mod column;
pub mod eval;
pub mod typecheck;

pub use ast::{BinaryOp, Expr, Func, OrderBy, QuerySpec};
pub use column::{
    Column, Computed, DateLike, Filter, Floating, Integer, Numeric, Operand, Order, Ordered, Query, TextLike,
};

use crate::value::ColumnType;

/// The columns a filter may name, with their types: used to check a filter while it is
/// parsed (the server passes its table; `None` skips the checks) and compiled to SQL.
pub trait FilterSchema {
    /// The type and nullability of a column, `None` when there is no such column.
    fn column(&self, name: &str) -> Option<(ColumnType, bool)>;
}
