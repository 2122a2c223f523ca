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

impl<E, T> Column<E, T> {
    fn compare(self, op: BinaryOp, value: Value) -> Filter<E> {
        Filter::from_expr(Expr::binary(op, Expr::column(self.name), Expr::literal(value)))
    }

    /// `column eq value`. On an optional column, `eq(None)` is "is null".
    pub fn eq(self, value: impl Operand<T>) -> Filter<E> {
        self.compare(BinaryOp::Eq, value.into_value())
    }

    /// `column ne value`. On an optional column, `ne(None)` is "is not null".
    pub fn ne(self, value: impl Operand<T>) -> Filter<E> {
        self.compare(BinaryOp::Ne, value.into_value())
    }

    /// `column in (values...)`, written as `eq` terms joined by `or`; an empty list
    /// matches nothing.
    pub fn is_in<V: Operand<T>>(self, values: impl IntoIterator<Item = V>) -> Filter<E> {
        // A balanced tree of `or`s, not a chain: its depth grows with the log of the
        // number of values, so cloning, dropping or printing it recurses only that deep,
        // and a server's parser (which caps the depth of what it reads) takes it.
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
}

impl<E, T: Ordered> Column<E, T> {
    /// `column gt value`.
    pub fn gt(self, value: impl Operand<T>) -> Filter<E> {
        self.compare(BinaryOp::Gt, value.into_value())
    }

    /// `column ge value`.
    pub fn ge(self, value: impl Operand<T>) -> Filter<E> {
        self.compare(BinaryOp::Ge, value.into_value())
    }

    /// `column lt value`.
    pub fn lt(self, value: impl Operand<T>) -> Filter<E> {
        self.compare(BinaryOp::Lt, value.into_value())
    }

    /// `column le value`.
    pub fn le(self, value: impl Operand<T>) -> Filter<E> {
        self.compare(BinaryOp::Le, value.into_value())
    }

    /// Ascending order on this column (nulls first).
    pub fn asc(self) -> Order<E> {
        Order::from_order_by(OrderBy { column: self.name.to_owned(), descending: false })
    }

    /// Descending order on this column (nulls last).
    pub fn desc(self) -> Order<E> {
        Order::from_order_by(OrderBy { column: self.name.to_owned(), descending: true })
    }
}

impl<E, T> Column<E, Option<T>> {
    /// `column eq null`.
    pub fn is_null(self) -> Filter<E> {
        self.compare(BinaryOp::Eq, Value::Null)
    }

    /// `column ne null`.
    pub fn is_not_null(self) -> Filter<E> {
        self.compare(BinaryOp::Ne, Value::Null)
    }
}

impl<E, T: TextLike> Column<E, T> {
    fn text_call(self, func: Func, part: &str) -> Filter<E> {
        Filter::from_expr(Expr::call(
            func,
            vec![Expr::column(self.name), Expr::literal(Value::String(part.to_owned()))],
        ))
    }

    /// The text contains `part` (case-sensitive; a null column matches nothing).
    pub fn contains(self, part: &str) -> Filter<E> {
        self.text_call(Func::Contains, part)
    }

    /// The text starts with `prefix` (case-sensitive).
    pub fn starts_with(self, prefix: &str) -> Filter<E> {
        self.text_call(Func::StartsWith, prefix)
    }

    /// The text ends with `suffix` (case-sensitive).
    pub fn ends_with(self, suffix: &str) -> Filter<E> {
        self.text_call(Func::EndsWith, suffix)
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
