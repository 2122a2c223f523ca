//! The query AST shared by the typed builder, the SQL compiler, the OData printer and
//! parser, and the server. It is untyped: column names are strings and literals are
//! [`Value`]s; the typed layer above (`Column`, `Filter`, `Query`) guarantees that what
//! an app builds is well-typed, and the OData parser checks what a peer sends.

use crate::value::Value;

/// A filter expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A column, by its wire name.
    Column(String),
    /// A literal value.
    Literal(Value),
    /// Logical negation.
    Not(Box<Expr>),
    /// A binary operator.
    Binary {
        /// The operator.
        op: BinaryOp,
        /// The left operand.
        left: Box<Expr>,
        /// The right operand.
        right: Box<Expr>,
    },
    /// A function call.
    Call {
        /// The function.
        func: Func,
        /// Its arguments.
        args: Vec<Expr>,
    },
}

impl Expr {
    /// A column reference.
    pub fn column(name: impl Into<String>) -> Expr {
        Expr::Column(name.into())
    }

    /// A literal.
    pub fn literal(value: Value) -> Expr {
        Expr::Literal(value)
    }

    /// `left op right`.
    pub fn binary(op: BinaryOp, left: Expr, right: Expr) -> Expr {
        Expr::Binary { op, left: Box::new(left), right: Box::new(right) }
    }

    /// `not self`.
    pub fn negate(self) -> Expr {
        Expr::Not(Box::new(self))
    }

    /// `func(args...)`.
    pub fn call(func: Func, args: Vec<Expr>) -> Expr {
        Expr::Call { func, args }
    }
}

/// Binary operators: comparisons and the two logical connectives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `eq`; `x eq null` is "x is null".
    Eq,
    /// `ne`; `x ne null` is "x is not null".
    Ne,
    /// `gt`
    Gt,
    /// `ge`
    Ge,
    /// `lt`
    Lt,
    /// `le`
    Le,
    /// `and`
    And,
    /// `or`
    Or,
}

impl BinaryOp {
    /// The OData keyword.
    pub const fn keyword(self) -> &'static str {
        match self {
            BinaryOp::Eq => "eq",
            BinaryOp::Ne => "ne",
            BinaryOp::Gt => "gt",
            BinaryOp::Ge => "ge",
            BinaryOp::Lt => "lt",
            BinaryOp::Le => "le",
            BinaryOp::And => "and",
            BinaryOp::Or => "or",
        }
    }

    /// Whether this is a comparison (as opposed to `and` / `or`).
    pub const fn is_comparison(self) -> bool {
        !matches!(self, BinaryOp::And | BinaryOp::Or)
    }
}

/// The OData functions of the protocol (DESIGN.md section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Func {
    /// `startswith(s, prefix)`, case-sensitive.
    StartsWith,
    /// `endswith(s, suffix)`, case-sensitive.
    EndsWith,
    /// `contains(s, part)` (v3) / `substringof(part, s)` (v2), case-sensitive.
    Contains,
    /// `tolower(s)` (Unicode).
    ToLower,
    /// `toupper(s)` (Unicode).
    ToUpper,
    /// `trim(s)` (Unicode whitespace).
    Trim,
    /// `length(s)` in characters.
    Length,
    /// `indexof(s, part)`: 0-based character index, -1 when absent.
    IndexOf,
    /// `substring(s, start)` / `substring(s, start, len)`: 0-based, in characters.
    Substring,
    /// `concat(a, b)`.
    Concat,
}

impl Func {
    /// The OData v3 (Datasync) name; v2 spells `Contains` as `substringof` with the
    /// arguments swapped.
    pub const fn name(self) -> &'static str {
        match self {
            Func::StartsWith => "startswith",
            Func::EndsWith => "endswith",
            Func::Contains => "contains",
            Func::ToLower => "tolower",
            Func::ToUpper => "toupper",
            Func::Trim => "trim",
            Func::Length => "length",
            Func::IndexOf => "indexof",
            Func::Substring => "substring",
            Func::Concat => "concat",
        }
    }
}

/// One `$orderby` term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderBy {
    /// The column's wire name.
    pub column: String,
    /// Descending instead of ascending.
    pub descending: bool,
}

/// An untyped query: what travels between the typed builder, SQL, OData and the server.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuerySpec {
    /// `$filter`; `None` selects every row.
    pub filter: Option<Expr>,
    /// `$orderby`, in priority order.
    pub order_by: Vec<OrderBy>,
    /// `$top`.
    pub limit: Option<u64>,
    /// `$skip`.
    pub offset: Option<u64>,
}
