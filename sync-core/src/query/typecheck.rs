//! Static types of filter expressions: the rules the OData parser checks (with
//! positions) and the SQL compiler checks again and uses to pick index-friendly SQL.
//!
//! - Comparisons: `int` and `float` compare with each other, `null` with anything, every
//!   other type only with itself; `json` and `bytes` only with `eq`/`ne`. A comparison is
//!   a non-null `bool`.
//! - `and`/`or`/`not` operands and the whole filter are `bool` (a `null` literal is
//!   accepted and counts as false).
//! - Arithmetic (`add sub mul div mod`) takes numbers: two `int`s give an `int`, a
//!   `float` makes it a `float`; `mod` takes `int`s only. `add` of two strings is their
//!   concatenation (how the JavaScript client writes `a + b`). Its result is nullable (a zero
//!   divisor, an integer overflow or a float that is not finite gives null).
//! - String functions take strings, except the positions of `substring` (ints);
//!   `length` and `indexof` give `int`, `startswith`/`endswith`/`contains` give `bool`,
//!   the others `string`. `floor`/`ceiling`/`round` take a number and give the same
//!   type; `year month day hour minute second` take a `datetime` and give an `int`. A
//!   function result is nullable when an argument is.

use crate::query::{BinaryOp, Func};
use crate::value::{ColumnType, Value};

/// What is known about the type of an expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The `null` literal: compatible with everything.
    Null,
    /// A known type.
    Known(ColumnType),
    /// A column without a schema: nothing is checked.
    Unknown,
}

/// The type of an expression and whether it can be null.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ty {
    /// What the type is.
    pub kind: Kind,
    /// Whether the expression can be null.
    pub nullable: bool,
}

impl Ty {
    /// A non-null boolean: what comparisons and connectives give.
    pub const BOOL: Ty = Ty { kind: Kind::Known(ColumnType::Bool), nullable: false };
    /// A column of a filter parsed without a schema.
    pub const UNKNOWN: Ty = Ty { kind: Kind::Unknown, nullable: true };

    /// A column's type.
    pub fn column(ty: ColumnType, nullable: bool) -> Ty {
        Ty { kind: Kind::Known(ty), nullable }
    }

    /// A literal's type.
    pub fn of_literal(value: &Value) -> Ty {
        match value {
            Value::Float(f) if f.is_nan() => Ty { kind: Kind::Null, nullable: true },
            v => match v.column_type() {
                Some(t) => Ty { kind: Kind::Known(t), nullable: false },
                None => Ty { kind: Kind::Null, nullable: true },
            },
        }
    }

    /// Whether this is the `null` literal's type.
    pub fn is_null(self) -> bool {
        self.kind == Kind::Null
    }
}

/// Checks `left op right` for a comparison operator; gives its type.
pub fn check_comparison(op: BinaryOp, left: Ty, right: Ty) -> Result<Ty, String> {
    if let (Kind::Known(a), Kind::Known(b)) = (left.kind, right.kind) {
        if a != b && !(a.is_numeric() && b.is_numeric()) {
            return Err(format!("`{}` cannot compare {a} with {b}", op.keyword()));
        }
        if !matches!(op, BinaryOp::Eq | BinaryOp::Ne) && !a.is_ordered() {
            return Err(format!("`{}` cannot compare {a} values; only `eq` and `ne` can", op.keyword()));
        }
    }
    Ok(Ty::BOOL)
}

/// Checks that an expression can be used as a condition: an operand of `connective`
/// (`and`, `or`, `not`), or the whole filter when `connective` is empty.
pub fn check_predicate(ty: Ty, connective: &str) -> Result<(), String> {
    match ty.kind {
        Kind::Known(ColumnType::Bool) | Kind::Null | Kind::Unknown => Ok(()),
        Kind::Known(t) if connective.is_empty() => Err(format!("the filter must be a boolean condition, found {t}")),
        Kind::Known(t) => Err(format!("the operand of `{connective}` must be a boolean condition, found {t}")),
    }
}

/// The function of an OData name as written in v3 (and in messages).
pub fn func_by_name(name: &str) -> Option<Func> {
    Func::ALL.into_iter().find(|f| f.name() == name)
}

/// Checks `left op right` for an arithmetic operator; gives its type.
pub fn check_arithmetic(op: BinaryOp, left: Ty, right: Ty) -> Result<Ty, String> {
    let (mut float, mut number, mut text, mut unknown) = (false, false, false, false);
    for side in [left, right] {
        match side.kind {
            Kind::Known(ColumnType::Int) => number = true,
            Kind::Known(ColumnType::Float) if op == BinaryOp::Mod => {
                return Err("`mod` takes integers, found float".to_owned());
            }
            Kind::Known(ColumnType::Float) => (number, float) = (true, true),
            // JavaScript's `+` on strings: the official JS client writes it as `add`.
            Kind::Known(ColumnType::String) if op == BinaryOp::Add => text = true,
            Kind::Null => {}
            Kind::Unknown => unknown = true,
            Kind::Known(t) => return Err(format!("`{}` takes numbers, found {t}", op.keyword())),
        }
    }
    let kind = match (unknown, text, float, number) {
        (true, _, _, _) => Kind::Unknown,
        (false, true, _, true) => {
            return Err("`add` takes two numbers or two strings, found a string and a number".into());
        }
        (false, true, _, false) => Kind::Known(ColumnType::String),
        (false, false, true, _) => Kind::Known(ColumnType::Float),
        (false, false, false, true) => Kind::Known(ColumnType::Int),
        (false, false, false, false) => Kind::Null,
    };
    Ok(Ty { kind, nullable: true })
}

/// Whether `divisor` is a literal zero (`div 0`, `mod 0.0`): refused where it is
/// written, since every row would give null.
pub fn is_zero_literal(divisor: &crate::query::Expr) -> bool {
    matches!(divisor, crate::query::Expr::Literal(Value::Int(0)))
        || matches!(divisor, crate::query::Expr::Literal(Value::Float(f)) if *f == 0.0)
}

/// The parameter types of a function (the optional ones last), how many are required,
/// and its result type. `floor`/`ceiling`/`round` are listed with `float`, and take an
/// `int` too (giving an `int`: see [`check_call`]).
pub fn signature(func: Func) -> (&'static [ColumnType], usize, ColumnType) {
    use ColumnType::{Bool, DateTime, Float, Int, String as Str};
    match func {
        Func::StartsWith | Func::EndsWith | Func::Contains => (&[Str, Str], 2, Bool),
        Func::ToLower | Func::ToUpper | Func::Trim => (&[Str], 1, Str),
        Func::Length => (&[Str], 1, Int),
        Func::IndexOf => (&[Str, Str], 2, Int),
        Func::Substring => (&[Str, Int, Int], 2, Str),
        Func::Concat => (&[Str, Str], 2, Str),
        Func::Replace => (&[Str, Str, Str], 3, Str),
        Func::Floor | Func::Ceiling | Func::Round => (&[Float], 1, Float),
        Func::Year | Func::Month | Func::Day | Func::Hour | Func::Minute | Func::Second => (&[DateTime], 1, Int),
    }
}

/// Whether a function rounds a number (`floor`, `ceiling`, `round`): an `int` argument
/// gives itself.
pub fn is_rounding(func: Func) -> bool {
    matches!(func, Func::Floor | Func::Ceiling | Func::Round)
}

/// Checks the number of arguments; `name` is the name as written (`substringof`).
pub fn check_arity(func: Func, name: &str, count: usize) -> Result<(), String> {
    let (params, required, _) = signature(func);
    if (required..=params.len()).contains(&count) {
        return Ok(());
    }
    let takes = if required == params.len() {
        format!("{required} argument{}", if required == 1 { "" } else { "s" })
    } else {
        format!("{required} or {} arguments", params.len())
    };
    Err(format!("`{name}` takes {takes}, found {count}"))
}

/// Checks argument types (the arity already checked, in the AST's argument order);
/// on error gives the index of the offending argument. `name` is the name as written.
pub fn check_call(func: Func, name: &str, args: &[Ty]) -> Result<Ty, (usize, String)> {
    let (params, _, result) = signature(func);
    if is_rounding(func) {
        return match args.first().map(|a| a.kind) {
            Some(kind @ (Kind::Known(ColumnType::Int | ColumnType::Float) | Kind::Null | Kind::Unknown)) => {
                let kind = if kind == Kind::Null { Kind::Known(ColumnType::Float) } else { kind };
                Ok(Ty { kind, nullable: args.iter().any(|a| a.nullable) })
            }
            Some(Kind::Known(t)) => Err((0, format!("argument 1 of `{name}` must be a number, found {t}"))),
            None => Ok(Ty { kind: Kind::Known(result), nullable: false }),
        };
    }
    let mut nullable = false;
    for (i, (arg, param)) in args.iter().zip(params).enumerate() {
        nullable |= arg.nullable;
        if let Kind::Known(t) = arg.kind {
            if t != *param {
                // substringof(part, s) lists the AST's arguments in the other order.
                let shown = if name == "substringof" { 2 - i } else { i + 1 };
                return Err((i, format!("argument {shown} of `{name}` must be {param}, found {t}")));
            }
        }
    }
    Ok(Ty { kind: Kind::Known(result), nullable })
}
