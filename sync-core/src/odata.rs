//! OData `$filter` / `$orderby` text: printing a query for protocol v2 or v3, and
//! parsing it back into the shared AST (with optional column and type checking).
//!
//! # Printing
//!
//! [`print_filter`] writes every operation in parentheses, `(L op R)`, `not (X)`,
//! `name(a,b)`, so that [`parse_filter`] reads back exactly the same [`Expr`]. The one
//! shortening: a left-nested chain of one connective, as repeated `Query::filter` calls
//! build, is written `(a or b or c)` (which parses back to the same left-nested tree)
//! instead of `((a or b) or c)`. `is_in` builds a balanced tree of `or`s, whose depth
//! (the log of the number of values) stays far within the parser's limits.
//!
//! Literals: `null`, `true`/`false`, integers as digits, floats in Rust's shortest
//! round-trip form (always with `.` or `e`; `INF`, `-INF` and `NaN` as in OData v4 for
//! the non-finite ones, which the local store refuses anyway), strings single-quoted
//! with `''` for a quote (no URL-encoding: the HTTP layer does that), timestamps as
//! `datetimeoffset'2026-01-02T03:04:05.678Z'` (v2) or
//! `cast(2026-01-02T03:04:05.678Z,Edm.DateTimeOffset)` (v3) at millisecond precision,
//! bytes as `X'0a1b'` (v2) or `binary'Chs='` (v3, base64), JSON as a string literal of
//! its text. `contains(s,part)` is `substringof(part,s)` in v2.
//!
//! Column names are written as they are: the round trip holds for names of the form
//! `[A-Za-z_][A-Za-z0-9_]*` other than the operator keywords (`and or not eq ne gt ge lt
//! le add sub mul div mod`) and the literal names (`null true false INF NaN`). A JSON literal reads back as
//! a string unless a schema says the other operand is a `json` column.
//!
//! # Parsing
//!
//! [`parse_filter`] is a hand-written lexer and recursive-descent parser. Precedence,
//! loosest first: `or`, `and`, `not`, comparisons (`eq ne gt ge lt le`, which do not
//! chain), `add sub`, `mul div mod` (both left-associative), then primaries. Keywords are lowercase, as in OData. Literals: `null true
//! false`; integers (64-bit, optional `L` suffix); decimals and exponents (optional
//! `m M d D f F` suffix; an integer with such a suffix is a float too), `INF -INF NaN`;
//! `'strings'` with `''`; `datetimeoffset'..'`, `datetime'..'` (no offset means UTC),
//! `cast(<timestamp>,Edm.DateTimeOffset)` and a bare ISO timestamp; `X'hex'`,
//! `binary'..'` (base64 when it decodes as base64, as OData v4 and the v3 printer write
//! it, else hex); `guid'..'` as a string. Functions: `startswith endswith substringof
//! contains tolower toupper trim length indexof substring concat replace floor ceiling
//! round year month day hour minute second`. A literal zero divisor (`div 0`, `mod 0`)
//! is an error where it stands.
//!
//! Hostile text never panics and never recurses deeply: parentheses, `not` and function
//! calls nest at most 100 levels, and the parsed tree is at most 2000 levels deep (so a
//! flat `or` chain of up to about 2000 terms; an `is_in` of any length prints nested).
//! Every error names the problem and its byte position.
//!
//! With a [`FilterSchema`], the parser also checks, at the offending position: unknown
//! columns; comparisons of incompatible types (`int` and `float` compare with each other,
//! `null` with anything, other types only with themselves, `json` and `bytes` only with
//! `eq`/`ne`); numeric operands of arithmetic (`mod` of integers only); boolean
//! operands of `and`/`or`/`not`; function argument types; and that the whole filter is
//! boolean (a bare `bool` column is a valid filter).

use std::fmt;

use crate::protocol::ProtocolVersion;
use crate::query::analysis::chain;
use crate::query::{BinaryOp, Expr, Func, OrderBy};
use crate::value::Value;

mod lexer;
mod parser;

pub use crate::query::FilterSchema;
/// The static types of filter expressions (moved to [`crate::query::typecheck`]).
pub use crate::query::typecheck;

/// OData text that does not parse or type-check; `position` is a byte offset into the
/// text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ODataError {
    /// What is wrong.
    pub message: String,
    /// Byte offset in the text where the problem was found.
    pub position: usize,
}

impl fmt::Display for ODataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at position {})", self.message, self.position)
    }
}

impl std::error::Error for ODataError {}

/// Prints a filter as OData text for the given protocol generation (see the module
/// docs for the exact form; [`parse_filter`] reads it back to the same [`Expr`]).
pub fn print_filter(expr: &Expr, version: ProtocolVersion) -> String {
    let mut out = String::new();
    print_expr(expr, version, &mut out);
    out
}

/// Prints an `$orderby` value: `text,complete desc`.
pub fn print_order_by(order: &[OrderBy]) -> String {
    let mut out = String::new();
    for (i, term) in order.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&term.column);
        if term.descending {
            out.push_str(" desc");
        }
    }
    out
}

/// Parses a `$filter` value; with a schema, also checks columns and types (see the
/// module docs).
pub fn parse_filter(text: &str, schema: Option<&dyn FilterSchema>) -> Result<Expr, ODataError> {
    parser::Parser::new(text, schema).filter()
}

/// Parses an `$orderby` value (`col [asc|desc], ...`; empty text is no order); with a
/// schema, also rejects unknown columns and columns that cannot be ordered (`json`,
/// `bytes`).
pub fn parse_order_by(text: &str, schema: Option<&dyn FilterSchema>) -> Result<Vec<OrderBy>, ODataError> {
    parser::Parser::new(text, schema).order_by()
}

fn print_expr(expr: &Expr, version: ProtocolVersion, out: &mut String) {
    match expr {
        Expr::Column(name) => out.push_str(name),
        Expr::Literal(value) => print_literal(value, version, out),
        Expr::Not(inner) => {
            out.push_str("not ");
            print_wrapped(inner, version, out);
        }
        Expr::Binary { op: op @ (BinaryOp::And | BinaryOp::Or), .. } => {
            out.push('(');
            for (i, term) in chain(expr, *op).into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                    out.push_str(op.keyword());
                    out.push(' ');
                }
                print_expr(term, version, out);
            }
            out.push(')');
        }
        Expr::Binary { op, left, right } => {
            out.push('(');
            print_operand(left, version, out);
            out.push(' ');
            out.push_str(op.keyword());
            out.push(' ');
            print_operand(right, version, out);
            out.push(')');
        }
        Expr::Call { func, args } => {
            if *func == Func::Contains && version == ProtocolVersion::V2 {
                out.push_str("substringof(");
                print_args(args.iter().rev(), version, out);
            } else {
                out.push_str(func.name());
                out.push('(');
                print_args(args.iter(), version, out);
            }
            out.push(')');
        }
    }
}

fn print_args<'e>(args: impl Iterator<Item = &'e Expr>, version: ProtocolVersion, out: &mut String) {
    for (i, arg) in args.enumerate() {
        if i > 0 {
            out.push(',');
        }
        print_expr(arg, version, out);
    }
}

/// `(X)`, or `X` when it prints its own parentheses.
fn print_wrapped(expr: &Expr, version: ProtocolVersion, out: &mut String) {
    if matches!(expr, Expr::Binary { .. }) {
        print_expr(expr, version, out);
    } else {
        out.push('(');
        print_expr(expr, version, out);
        out.push(')');
    }
}

/// An operand of a comparison: `not` binds looser than comparisons, so it needs
/// parentheses there.
fn print_operand(expr: &Expr, version: ProtocolVersion, out: &mut String) {
    if matches!(expr, Expr::Not(_)) {
        out.push('(');
        print_expr(expr, version, out);
        out.push(')');
    } else {
        print_expr(expr, version, out);
    }
}

fn print_literal(value: &Value, version: ProtocolVersion, out: &mut String) {
    use std::fmt::Write as _;
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) if f.is_nan() => out.push_str("NaN"),
        Value::Float(f) if f.is_infinite() => out.push_str(if *f > 0.0 { "INF" } else { "-INF" }),
        // `Debug` is the shortest text that reads back to the same f64, and always has a
        // `.` or an exponent (`1.0`, `1e100`, `1.5e-7`).
        Value::Float(f) => {
            let _ = write!(out, "{f:?}");
        }
        Value::String(s) => print_string(s, out),
        Value::DateTime(t) => {
            let text = crate::datetime::format(*t);
            match version {
                ProtocolVersion::V2 => {
                    let _ = write!(out, "datetimeoffset'{text}'");
                }
                ProtocolVersion::V3 => {
                    let _ = write!(out, "cast({text},Edm.DateTimeOffset)");
                }
            }
        }
        Value::Json(j) => print_string(&j.to_string(), out),
        Value::Bytes(b) => match version {
            ProtocolVersion::V2 => {
                out.push_str("X'");
                for byte in b {
                    let _ = write!(out, "{byte:02x}");
                }
                out.push('\'');
            }
            ProtocolVersion::V3 => {
                use base64::Engine as _;
                out.push_str("binary'");
                out.push_str(&base64::engine::general_purpose::STANDARD.encode(b));
                out.push('\'');
            }
        },
    }
}

fn print_string(s: &str, out: &mut String) {
    crate::sql::push_quoted(out, s, '\'');
}

#[cfg(test)]
mod tests;
