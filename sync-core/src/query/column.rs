//! The typed layer: column handles, filters and queries tied to one entity type.
//!
//! `Column<E, T>` is a thin handle (a name and two phantom types). Comparing it with a
//! value builds an untyped [`Expr`] inside a [`Filter<E>`]; a value of another type
//! than the column's does not compile, and neither does a filter of another table.
//! [`Query<E>`] is one concrete type whatever the query.

use std::fmt;
use std::marker::PhantomData;
use std::ops;

use crate::entity::{FieldValue, SyncEntity};
use crate::value::Value;

use super::ast::{BinaryOp, Expr, Func, OrderBy, QuerySpec};

/// A typed handle on one column of entity `E`, whose Rust field type is `T`.
///
/// The derive generates one per field: `TodoItem::FIELDS.text` is a
/// `Column<TodoItem, String>`.
pub struct Column<E, T> {
    name: &'static str,
    _marker: PhantomData<fn() -> (E, T)>,
}

impl<E, T> Column<E, T> {
    /// A handle on the column with this wire name. The derive calls this; apps use the
    /// generated handles.
    pub const fn new(name: &'static str) -> Self {
        Column { name, _marker: PhantomData }
    }

    /// The column's wire (and local) name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<E, T> Clone for Column<E, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<E, T> Copy for Column<E, T> {}

impl<E, T> fmt::Debug for Column<E, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Column").field(&self.name).finish()
    }
}

/// A value that can be compared with a column of field type `T`.
///
/// Implemented for `T` itself, for the inner type of an `Option<T>` column, for
/// `Option<T>` on an optional column (`None` compares as null), and for `&str` on
/// text columns.
#[diagnostic::on_unimplemented(
    message = "a `{Self}` cannot be compared with (or combined with) a value of type `{T}`",
    label = "expected a value of the column's type `{T}`",
    note = "a float column takes a float (`1.0`, not `1`); an integer column an integer; an optional column also `None`",
    note = "to join two conditions, use `&` / `|` or `.and()` / `.or()` on the filters, not `&&` / `||`"
)]
pub trait Operand<T> {
    /// The value as an untyped literal.
    fn into_value(self) -> Value;
}

/// Field types whose values are ordered, so `gt`/`ge`/`lt`/`le` and sorting apply.
pub trait Ordered {}

/// Field types that hold text, so `contains`/`starts_with`/`ends_with` apply.
pub trait TextLike {}

macro_rules! operands {
    ($($ty:ty),* $(,)?) => {$(
        impl Operand<$ty> for $ty {
            fn into_value(self) -> Value { FieldValue::to_value(&self) }
        }
        impl Operand<$ty> for &$ty {
            fn into_value(self) -> Value { FieldValue::to_value(self) }
        }
        impl Operand<Option<$ty>> for $ty {
            fn into_value(self) -> Value { FieldValue::to_value(&self) }
        }
        impl Operand<Option<$ty>> for &$ty {
            fn into_value(self) -> Value { FieldValue::to_value(self) }
        }
        impl Operand<Option<$ty>> for Option<$ty> {
            fn into_value(self) -> Value { FieldValue::to_value(&self) }
        }
    )*};
}

operands!(String, bool, i32, i64, f64, Vec<u8>, time::OffsetDateTime, serde_json::Value);
#[cfg(feature = "uuid")]
operands!(uuid::Uuid);
#[cfg(feature = "chrono")]
operands!(chrono::DateTime<chrono::Utc>);

impl Operand<String> for &str {
    fn into_value(self) -> Value {
        Value::String(self.to_owned())
    }
}
impl Operand<Option<String>> for &str {
    fn into_value(self) -> Value {
        Value::String(self.to_owned())
    }
}

macro_rules! marker {
    ($trait:ident: $($ty:ty),* $(,)?) => {$(
        impl $trait for $ty {}
        impl $trait for Option<$ty> {}
    )*};
}

marker!(Ordered: String, bool, i32, i64, f64, time::OffsetDateTime);
#[cfg(feature = "uuid")]
marker!(Ordered: uuid::Uuid);
#[cfg(feature = "chrono")]
marker!(Ordered: chrono::DateTime<chrono::Utc>);
marker!(TextLike: String);

/// Field types that are numbers, so arithmetic applies (`add sub mul div`).
pub trait Numeric {}

/// Field types that are integers, so `rem` (OData `mod`) applies.
pub trait Integer: Numeric {}

/// Field types that are floats, so `floor`, `ceiling` and `round` apply.
pub trait Floating: Numeric {}

/// Field types that are timestamps, so the date parts (`year` ... `second`) apply.
#[diagnostic::on_unimplemented(message = "`{Self}` is not a timestamp: date parts apply to timestamp columns")]
pub trait DateLike {
    /// The type of a date part: `i64`, or `Option<i64>` for an optional timestamp.
    type Part;
}

marker!(Numeric: i32, i64, f64);
marker!(Integer: i32, i64);
marker!(Floating: f64);

impl DateLike for time::OffsetDateTime {
    type Part = i64;
}
impl DateLike for Option<time::OffsetDateTime> {
    type Part = Option<i64>;
}
#[cfg(feature = "chrono")]
impl DateLike for chrono::DateTime<chrono::Utc> {
    type Part = i64;
}
#[cfg(feature = "chrono")]
impl DateLike for Option<chrono::DateTime<chrono::Utc>> {
    type Part = Option<i64>;
}

/// A value computed from a row of entity `E`, of Rust type `T`: arithmetic, a function
/// of a column (`TodoItem::FIELDS.priority.add(1)`, `TodoItem::FIELDS.due.year()`).
/// Compared like a column, it makes a [`Filter<E>`].
pub struct Computed<E, T> {
    expr: Expr,
    _marker: PhantomData<fn() -> (E, T)>,
}

impl<E, T> Computed<E, T> {
    fn new(expr: Expr) -> Self {
        Computed { expr, _marker: PhantomData }
    }

    /// The untyped expression.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }
}

impl<E, T> Clone for Computed<E, T> {
    fn clone(&self) -> Self {
        Computed::new(self.expr.clone())
    }
}

impl<E, T> fmt::Debug for Computed<E, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Computed").field(&self.expr).finish()
    }
}

impl<E, T> Column<E, T> {
    /// The column as an untyped expression.
    fn operand(&self) -> Expr {
        Expr::column(self.name)
    }
}

impl<E, T> Computed<E, T> {
    fn operand(&self) -> Expr {
        self.expr.clone()
    }
}

/// The comparisons, text tests and arithmetic of a column and of a computed value
/// (`$what` names it in the docs).
macro_rules! typed_operations {
    ($ty:ident, $what:literal) => {
        impl<E, T> $ty<E, T> {
            fn compare(&self, op: BinaryOp, value: Value) -> Filter<E> {
                Filter::from_expr(Expr::binary(op, self.operand(), Expr::literal(value)))
            }

            #[doc = concat!("`", $what, " eq value`. On an optional ", $what, ", `eq(None)` is \"is null\".")]
            pub fn eq(&self, value: impl Operand<T>) -> Filter<E> {
                self.compare(BinaryOp::Eq, value.into_value())
            }

            #[doc = concat!("`", $what, " ne value`. On an optional ", $what, ", `ne(None)` is \"is not null\".")]
            pub fn ne(&self, value: impl Operand<T>) -> Filter<E> {
                self.compare(BinaryOp::Ne, value.into_value())
            }

            #[doc = concat!("`", $what, " in (values...)`, written as `eq` terms joined by `or`; an empty list")]
            /// matches nothing.
            pub fn is_in<V: Operand<T>>(&self, values: impl IntoIterator<Item = V>) -> Filter<E> {
                // A balanced tree of `or`s, not a chain: its depth grows with the log of the
                // number of values, so cloning, dropping or printing it recurses only that
                // deep, and a server's parser (which caps the depth of what it reads) takes it.
                let mut level: Vec<Expr> = values.into_iter().map(|v| self.eq(v).into_expr()).collect();
                while level.len() > 1 {
                    let mut pairs = Vec::with_capacity(level.len().div_ceil(2));
                    let mut terms = level.into_iter();
                    while let Some(left) = terms.next() {
                        pairs.push(match terms.next() {
                            Some(right) => Expr::binary(BinaryOp::Or, left, right),
                            None => left,
                        });
                    }
                    level = pairs;
                }
                Filter::from_expr(level.pop().unwrap_or_else(|| Expr::literal(Value::Bool(false))))
            }

            fn arithmetic<R>(&self, op: BinaryOp, value: Value) -> Computed<E, R> {
                Computed::new(Expr::binary(op, self.operand(), Expr::literal(value)))
            }

            fn function<R>(&self, func: Func, args: Vec<Expr>) -> Computed<E, R> {
                let mut all = vec![self.operand()];
                all.extend(args);
                Computed::new(Expr::call(func, all))
            }
        }

        impl<E, T: Ordered> $ty<E, T> {
            #[doc = concat!("`", $what, " gt value`.")]
            pub fn gt(&self, value: impl Operand<T>) -> Filter<E> {
                self.compare(BinaryOp::Gt, value.into_value())
            }

            #[doc = concat!("`", $what, " ge value`.")]
            pub fn ge(&self, value: impl Operand<T>) -> Filter<E> {
                self.compare(BinaryOp::Ge, value.into_value())
            }

            #[doc = concat!("`", $what, " lt value`.")]
            pub fn lt(&self, value: impl Operand<T>) -> Filter<E> {
                self.compare(BinaryOp::Lt, value.into_value())
            }

            #[doc = concat!("`", $what, " le value`.")]
            pub fn le(&self, value: impl Operand<T>) -> Filter<E> {
                self.compare(BinaryOp::Le, value.into_value())
            }
        }

        impl<E, T> $ty<E, Option<T>> {
            #[doc = concat!("`", $what, " eq null`.")]
            pub fn is_null(&self) -> Filter<E> {
                self.compare(BinaryOp::Eq, Value::Null)
            }

            #[doc = concat!("`", $what, " ne null`.")]
            pub fn is_not_null(&self) -> Filter<E> {
                self.compare(BinaryOp::Ne, Value::Null)
            }
        }

        impl<E, T: TextLike> $ty<E, T> {
            fn text_call(&self, func: Func, part: &str) -> Filter<E> {
                Filter::from_expr(Expr::call(func, vec![self.operand(), Expr::literal(Value::String(part.to_owned()))]))
            }

            /// The text contains `part` (case-sensitive; a null matches nothing).
            pub fn contains(&self, part: &str) -> Filter<E> {
                self.text_call(Func::Contains, part)
            }

            /// The text starts with `prefix` (case-sensitive).
            pub fn starts_with(&self, prefix: &str) -> Filter<E> {
                self.text_call(Func::StartsWith, prefix)
            }

            /// The text ends with `suffix` (case-sensitive).
            pub fn ends_with(&self, suffix: &str) -> Filter<E> {
                self.text_call(Func::EndsWith, suffix)
            }

            /// The text with every occurrence of `find` (case-sensitive) replaced by
            /// `with` (OData `replace`); an empty `find` changes nothing.
            pub fn replace(&self, find: &str, with: &str) -> Computed<E, T> {
                let text = |s: &str| Expr::literal(Value::String(s.to_owned()));
                self.function(Func::Replace, vec![text(find), text(with)])
            }
        }

        impl<E, T: Numeric> $ty<E, T> {
            #[doc = concat!("`", $what, " add value` (null when an integer sum overflows).")]
            pub fn add(&self, value: impl Operand<T>) -> Computed<E, T> {
                self.arithmetic(BinaryOp::Add, value.into_value())
            }

            #[doc = concat!("`", $what, " sub value`.")]
            pub fn sub(&self, value: impl Operand<T>) -> Computed<E, T> {
                self.arithmetic(BinaryOp::Sub, value.into_value())
            }

            #[doc = concat!("`", $what, " mul value`.")]
            pub fn mul(&self, value: impl Operand<T>) -> Computed<E, T> {
                self.arithmetic(BinaryOp::Mul, value.into_value())
            }

            #[doc = concat!("`", $what, " div value`: an integer quotient is truncated toward zero; a zero")]
            /// divisor gives null (and a literal zero is refused when the query runs).
            pub fn div(&self, value: impl Operand<T>) -> Computed<E, T> {
                self.arithmetic(BinaryOp::Div, value.into_value())
            }
        }

        impl<E, T: Integer> $ty<E, T> {
            #[doc = concat!("`", $what, " mod value` (OData `mod`): the remainder, with the sign of the dividend.")]
            pub fn rem(&self, value: impl Operand<T>) -> Computed<E, T> {
                self.arithmetic(BinaryOp::Mod, value.into_value())
            }
        }

        impl<E, T: Floating> $ty<E, T> {
            /// The largest whole number not above it (OData `floor`).
            pub fn floor(&self) -> Computed<E, T> {
                self.function(Func::Floor, Vec::new())
            }

            /// The smallest whole number not below it (OData `ceiling`).
            pub fn ceiling(&self) -> Computed<E, T> {
                self.function(Func::Ceiling, Vec::new())
            }

            /// The nearest whole number, halves away from zero (OData `round`).
            pub fn round(&self) -> Computed<E, T> {
                self.function(Func::Round, Vec::new())
            }
        }

        impl<E, T: DateLike> $ty<E, T> {
            /// The year, in UTC (OData `year`).
            pub fn year(&self) -> Computed<E, T::Part> {
                self.function(Func::Year, Vec::new())
            }

            /// The month, 1-12, in UTC (OData `month`).
            pub fn month(&self) -> Computed<E, T::Part> {
                self.function(Func::Month, Vec::new())
            }

            /// The day of the month, 1-31, in UTC (OData `day`).
            pub fn day(&self) -> Computed<E, T::Part> {
                self.function(Func::Day, Vec::new())
            }

            /// The hour, 0-23, in UTC (OData `hour`).
            pub fn hour(&self) -> Computed<E, T::Part> {
                self.function(Func::Hour, Vec::new())
            }

            /// The minute, 0-59 (OData `minute`).
            pub fn minute(&self) -> Computed<E, T::Part> {
                self.function(Func::Minute, Vec::new())
            }

            /// The second, 0-59 (OData `second`).
            pub fn second(&self) -> Computed<E, T::Part> {
                self.function(Func::Second, Vec::new())
            }
        }
    };
}

typed_operations!(Column, "column");
typed_operations!(Computed, "value");

impl<E, T: Ordered> Column<E, T> {
    /// Ascending order on this column (nulls first).
    pub fn asc(self) -> Order<E> {
        Order::from_order_by(OrderBy { column: self.name.to_owned(), descending: false })
    }

    /// Descending order on this column (nulls last).
    pub fn desc(self) -> Order<E> {
        Order::from_order_by(OrderBy { column: self.name.to_owned(), descending: true })
    }
}

/// A boolean condition on rows of entity `E`. Combine with [`Filter::and`],
/// [`Filter::or`] and `!` (or [`Filter::not`]); also `&` and `|`.
pub struct Filter<E> {
    expr: Expr,
    _marker: PhantomData<fn() -> E>,
}

impl<E> Filter<E> {
    /// Wraps an untyped expression. The caller vouches that it is well-typed for `E`.
    pub fn from_expr(expr: Expr) -> Self {
        Filter { expr, _marker: PhantomData }
    }

    /// The untyped expression.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// The untyped expression, by value.
    pub fn into_expr(self) -> Expr {
        self.expr
    }

    /// Both conditions.
    pub fn and(self, other: Filter<E>) -> Filter<E> {
        Filter::from_expr(Expr::binary(BinaryOp::And, self.expr, other.expr))
    }

    /// Either condition.
    pub fn or(self, other: Filter<E>) -> Filter<E> {
        Filter::from_expr(Expr::binary(BinaryOp::Or, self.expr, other.expr))
    }

    /// The negated condition.
    #[allow(clippy::should_implement_trait)]
    pub fn not(self) -> Filter<E> {
        Filter::from_expr(self.expr.negate())
    }
}

impl<E> Clone for Filter<E> {
    fn clone(&self) -> Self {
        Filter::from_expr(self.expr.clone())
    }
}

impl<E> fmt::Debug for Filter<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Filter").field(&self.expr).finish()
    }
}

impl<E> PartialEq for Filter<E> {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr
    }
}

impl<E> ops::Not for Filter<E> {
    type Output = Filter<E>;
    fn not(self) -> Filter<E> {
        Filter::not(self)
    }
}

impl<E> ops::BitAnd for Filter<E> {
    type Output = Filter<E>;
    fn bitand(self, rhs: Filter<E>) -> Filter<E> {
        self.and(rhs)
    }
}

impl<E> ops::BitOr for Filter<E> {
    type Output = Filter<E>;
    fn bitor(self, rhs: Filter<E>) -> Filter<E> {
        self.or(rhs)
    }
}

/// A sort key on a column of entity `E`: `TodoItem::FIELDS.text.asc()`. A key on
/// another entity's column does not fit a `Query<E>`.
pub struct Order<E> {
    term: OrderBy,
    _marker: PhantomData<fn() -> E>,
}

impl<E> Order<E> {
    /// Wraps an untyped sort key. The caller vouches that its column is `E`'s.
    pub fn from_order_by(term: OrderBy) -> Self {
        Order { term, _marker: PhantomData }
    }

    /// The untyped sort key.
    pub fn order_by(&self) -> &OrderBy {
        &self.term
    }

    /// The untyped sort key, by value.
    pub fn into_order_by(self) -> OrderBy {
        self.term
    }
}

impl<E> Clone for Order<E> {
    fn clone(&self) -> Self {
        Order::from_order_by(self.term.clone())
    }
}

impl<E> fmt::Debug for Order<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Order").field(&self.term).finish()
    }
}

impl<E> PartialEq for Order<E> {
    fn eq(&self, other: &Self) -> bool {
        self.term == other.term
    }
}

/// A query on entity `E`: filter, order, limit and offset. One concrete type, whatever
/// the query; built step by step, run locally (`sync_runtime::Table::fetch`) or used as a pull
/// filter.
pub struct Query<E> {
    spec: QuerySpec,
    _marker: PhantomData<fn() -> E>,
}

impl<E: SyncEntity> Query<E> {
    /// Every row, in id order.
    pub fn new() -> Self {
        Query { spec: QuerySpec::default(), _marker: PhantomData }
    }
}

impl<E: SyncEntity> Default for Query<E> {
    fn default() -> Self {
        Query::new()
    }
}

impl<E> Query<E> {
    /// Wraps an untyped query. The caller vouches that it is well-typed for `E`.
    pub fn from_spec(spec: QuerySpec) -> Self {
        Query { spec, _marker: PhantomData }
    }

    /// Adds a condition; several calls combine with `and`.
    pub fn filter(mut self, filter: Filter<E>) -> Self {
        self.spec.filter = Some(match self.spec.filter.take() {
            Some(prev) => Expr::binary(BinaryOp::And, prev, filter.expr),
            None => filter.expr,
        });
        self
    }

    /// Adds a sort key after the ones already given (`TodoItem::FIELDS.text.asc()`).
    pub fn order_by(mut self, order: Order<E>) -> Self {
        self.spec.order_by.push(order.term);
        self
    }

    /// Returns at most `n` rows.
    pub fn limit(mut self, n: u64) -> Self {
        self.spec.limit = Some(n);
        self
    }

    /// Skips the first `n` rows.
    pub fn offset(mut self, n: u64) -> Self {
        self.spec.offset = Some(n);
        self
    }

    /// The untyped query.
    pub fn spec(&self) -> &QuerySpec {
        &self.spec
    }

    /// The untyped query, by value.
    pub fn into_spec(self) -> QuerySpec {
        self.spec
    }
}

impl<E> Clone for Query<E> {
    fn clone(&self) -> Self {
        Query::from_spec(self.spec.clone())
    }
}

impl<E> fmt::Debug for Query<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Query").field(&self.spec).finish()
    }
}

impl<E> PartialEq for Query<E> {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec
    }
}
