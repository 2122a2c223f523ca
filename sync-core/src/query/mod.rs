//! Typed queries over a table, and the untyped AST they compile from.
//!
//! One [`Query`] value runs locally as SQL with bound parameters
//! ([`crate::sql`]), travels to a server as OData text ([`crate::odata`]), and is
//! read back from OData text into the same [`Expr`] by the server.

pub mod analysis;
mod ast;
mod column;
pub mod eval;

pub use ast::{BinaryOp, Expr, Func, OrderBy, QuerySpec};
pub use column::{Column, Filter, Operand, Order, Ordered, Query, TextLike};
