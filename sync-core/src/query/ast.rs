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

/// Binary operators: comparisons, the two logical connectives, and arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
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
    /// `add`: numeric sum (`int` when both operands are, else `float`).
    Add,
    /// `sub`: numeric difference.
    Sub,
    /// `mul`: numeric product.
    Mul,
    /// `div`: quotient; of two integers, the integer quotient truncated toward zero.
    /// Division by zero gives null.
    Div,
    /// `mod`: the remainder of an integer division (the sign of the dividend); integers
    /// only. A zero divisor gives null.
    Mod,
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
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Mod => "mod",
        }
    }

    /// Whether this is a comparison (`eq ne gt ge lt le`).
    pub const fn is_comparison(self) -> bool {
        matches!(self, BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Gt | BinaryOp::Ge | BinaryOp::Lt | BinaryOp::Le)
    }

    /// Whether this is arithmetic (`add sub mul div mod`).
    pub const fn is_arithmetic(self) -> bool {
        matches!(self, BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod)
    }
}

/// The OData functions of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
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
    /// `replace(s, find, with)`: every occurrence of `find` (case-sensitive) replaced;
    /// an empty `find` leaves `s` as it is.
    Replace,
    /// `floor(x)`: the largest whole number not above `x` (an integer stays itself).
    Floor,
    /// `ceiling(x)`: the smallest whole number not below `x`.
    Ceiling,
    /// `round(x)`: the nearest whole number, halves away from zero.
    Round,
    /// `year(t)` of a timestamp, in UTC.
    Year,
    /// `month(t)`, 1-12, in UTC.
    Month,
    /// `day(t)`, 1-31, in UTC.
    Day,
    /// `hour(t)`, 0-23, in UTC.
    Hour,
    /// `minute(t)`, 0-59.
    Minute,
    /// `second(t)`, 0-59.
    Second,
}

impl Func {
    /// Every function.
    pub const ALL: [Func; 20] = [
        Func::StartsWith,
        Func::EndsWith,
        Func::Contains,
        Func::ToLower,
        Func::ToUpper,
        Func::Trim,
        Func::Length,
        Func::IndexOf,
        Func::Substring,
        Func::Concat,
        Func::Replace,
        Func::Floor,
        Func::Ceiling,
        Func::Round,
        Func::Year,
        Func::Month,
        Func::Day,
        Func::Hour,
        Func::Minute,
        Func::Second,
    ];

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
            Func::Replace => "replace",
            Func::Floor => "floor",
            Func::Ceiling => "ceiling",
            Func::Round => "round",
            Func::Year => "year",
            Func::Month => "month",
            Func::Day => "day",
            Func::Hour => "hour",
            Func::Minute => "minute",
            Func::Second => "second",
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
