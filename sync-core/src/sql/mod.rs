//! Compiling the query AST to SQL with bound parameters: one compiler, with a
//! [`Dialect`] per database for the few things that differ ([`Sqlite`], [`Postgres`]).
//!
//! The compiled SQL has exactly the semantics of the in-memory evaluator
//! ([`crate::query::eval`], whose module docs spell them out): OData's two-valued logic,
//! null-safe `eq`/`ne`, `gt ge lt le` false on null, a null predicate counting as false.
//! No boolean node of the compiled SQL ever yields NULL, so `NOT` never turns an
//! unknown into a match:
//!
//! | filter | SQLite (nullable `oi`, non-nullable `i`) | PostgreSQL |
//! |---|---|---|
//! | `i eq 5` | `("i" = ?)` | `("i" = $1::bigint)` |
//! | `oi eq 5` | `("oi" IS ?)` | `("oi" = $1::bigint AND "oi" IS NOT NULL)` |
//! | `oi eq oj` | `("oi" IS "oj")` | `("oi" IS NOT DISTINCT FROM "oj")` |
//! | `oi eq null` | `("oi" IS NULL)` | `("oi" IS NULL)` |
//! | `oi gt 5` | `("oi" > ? AND "oi" IS NOT NULL)` | `("oi" > $1::bigint AND "oi" IS NOT NULL)` |
//! | `s gt 'a'` | `("s" > ?)` | `("s" COLLATE "C" > $1::text)` |
//! | `ob` (a nullable bool) | `("ob" IS 1)` | `("ob" IS TRUE)` |
//! | `startswith(os,'a')` | `COALESCE(sync_startswith("os", ?), 0)` | `COALESCE(starts_with("os", $1::text), FALSE)` |
//! | `i eq 1 or i eq 2 or s eq 'x'` | `(("i" IN (?, ?)) OR ("s" = ?))` | `(("i" IN ($1::bigint, $2::bigint)) OR ("s" = $3::text))` |
//!
//! Every plain comparison stays index-friendly (`x > ? AND x IS NOT NULL` rather than a
//! `COALESCE` around a column). An `or` of `column eq <literal>` terms on one column
//! (what `is_in` builds) becomes one `IN` list; past [`LONG_IN_LIST`] values the list is
//! one parameter (a JSON array read by `json_each` on SQLite, an array compared with
//! `= ANY($n)` on PostgreSQL), so no list length reaches a database's parameter limit.
//! A keyset paging filter (`(t gt T) or (t eq T and id gt I)`) also states the lower
//! bound it implies, so the database scans its index from there.
//!
//! Every query gets an `ORDER BY` ending in `"id" ASC` (unless `id` is already one of the
//! terms), so results and pages are deterministic; nulls sort first ascending and last
//! descending, text by code point, numbers numerically, timestamps by their fixed-width
//! text, which is what the evaluator does.
//!
//! No value of a filter is ever spliced into the SQL text: literals are parameters, the
//! text holds only this compiler's words and quoted identifiers. (SQLite's row limit is
//! the one integer written into the text; see [`Dialect::limit_in_text`].)

mod compiler;
pub mod postgres;
pub mod sqlite;

mod cache;

pub use cache::{CachedSelect, SelectCache};
pub use postgres::Postgres;
pub use sqlite::Sqlite;

use crate::query::FilterSchema;
use crate::query::{BinaryOp, Expr, Func, QuerySpec};
use crate::value::Value;

/// A query that cannot be compiled: an unknown column, an ill-typed comparison, a
/// filter that is not a condition, too many parameters... The message names the
/// problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

type Result<T, E = QueryError> = std::result::Result<T, E>;

/// Past this many values, an `IN` list is bound as one parameter (see the module docs).
pub const LONG_IN_LIST: usize = 256;

/// One bound parameter of compiled SQL.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    /// A single value.
    Value(Value),
    /// A list of values of one SQL type (a long `IN` list), bound as one parameter:
    /// JSON array text on SQLite, an array on PostgreSQL.
    List(Vec<Value>),
}

impl PartialEq<Value> for Arg {
    fn eq(&self, other: &Value) -> bool {
        matches!(self, Arg::Value(v) if v == other)
    }
}

/// SQL text with its bound parameters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SqlQuery {
    /// The SQL, with the dialect's placeholders.
    pub sql: String,
    /// One argument per placeholder, in order.
    pub params: Vec<Arg>,
}

/// The fixed words of a dialect: what it writes where the two databases differ by a
/// word or a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Words {
    /// The database's name, for messages.
    pub name: &'static str,
    /// The most parameters one statement may bind.
    pub max_params: usize,
    /// The boolean constants, false then true: `0`/`1` or `FALSE`/`TRUE`.
    pub booleans: [&'static str; 2],
    /// Between the selected columns: `,` or `, `.
    pub column_separator: &'static str,
    /// Null-safe equality of two values that may both be null, `eq` then `ne`: ` IS ` /
    /// ` IS NOT ` (SQLite), ` IS NOT DISTINCT FROM ` / ` IS DISTINCT FROM ` (PostgreSQL).
    pub null_safe_eq: [&'static str; 2],
    /// Whether `nullable_column eq <non-null value>` is written as a plain `=` with
    /// `AND column IS NOT NULL` (so an index serves it) instead of `null_safe_eq`.
    pub plain_eq_on_nullable_column: bool,
    /// What follows the left operand of `gt ge lt le` on text, so that text compares by
    /// code point: empty, or ` COLLATE "C"`.
    pub text_order_collation: &'static str,
    /// What follows `ASC` / `DESC` in an `ORDER BY` term on a nullable column, so that
    /// nulls come first ascending and last descending (empty where that is the
    /// database's own order).
    pub nulls_order: [&'static str; 2],
    /// How many terms one pair of parentheses of an `and`/`or` chain may hold before the
    /// chain is grouped in nested parentheses (SQLite limits expression depth); `None`:
    /// no limit.
    pub chain_group: Option<usize>,
    /// Whether the row limit is written into the text (`LIMIT 10`) rather than bound.
    /// SQLite plans with the value of a bound `LIMIT`, so a statement whose `LIMIT` is a
    /// parameter is prepared again on every run; an offset stays a parameter.
    pub limit_in_text: bool,
}

/// How a database spells the few things that differ: its [`Words`], and the hooks the
/// compiler calls where a word is not enough. The compiler asks; the dialect answers
/// with words of SQL, never with a value of the query.
pub trait Dialect: Sync {
    /// The fixed words.
    fn words(&self) -> &'static Words;

    /// Writes the placeholder of parameter `n` (1-based, in text order) bound to
    /// `arg`: SQLite's `?`, PostgreSQL's `$n::<type>`.
    fn placeholder(&self, out: &mut String, n: usize, arg: ArgType<'_>);

    /// The SQL around one list parameter that a long `IN` list of these values becomes
    /// (`(<column><before>?<after>`), or `None` when they cannot travel as one list.
    fn long_in_list(&self, values: &[&Value]) -> Option<(&'static str, &'static str)>;

    /// How a function call is written (`concat` is `||` everywhere and not asked).
    fn function(&self, func: Func) -> FunctionSql;

    /// How `a op b` is written for an arithmetic operator (a function, so that each
    /// database gives the evaluator's null for an overflow or a zero divisor).
    fn arithmetic(&self, op: BinaryOp) -> FunctionSql;

    /// A null argument of a function whose parameter has type `ty` (PostgreSQL needs
    /// the type to pick the function).
    fn typed_null(&self, ty: crate::ColumnType) -> &'static str;
}

/// What a parameter is bound to, for its placeholder.
#[derive(Clone, Copy, Debug)]
pub enum ArgType<'a> {
    /// One value.
    Value(&'a Value),
    /// A list of values like this one.
    List(&'a Value),
}

/// How a function call is written (see [`Dialect::function`]):
/// `<name>(<arg><separator><arg>)<after>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionSql {
    /// Before the parenthesis (empty for a parenthesized operator like `||`).
    pub name: &'static str,
    /// Between arguments.
    pub separator: &'static str,
    /// After the closing parenthesis.
    pub after: &'static str,
}

impl FunctionSql {
    /// `name(a, b)`.
    pub const fn call(name: &'static str) -> FunctionSql {
        FunctionSql { name, separator: ", ", after: "" }
    }
}

/// `SELECT <columns> FROM <table> [WHERE ..] ORDER BY .. [LIMIT .. [OFFSET ..]]`.
///
/// The filter and order are checked against `schema`: an unknown column, an ill-typed
/// comparison or a non-boolean filter is a [`QueryError`] naming the problem. The
/// selected columns are quoted, not checked.
pub fn select(
    dialect: &dyn Dialect,
    table: &str,
    columns: &[&str],
    spec: &QuerySpec,
    schema: &dyn FilterSchema,
) -> Result<SqlQuery> {
    if columns.is_empty() {
        return Err(QueryError("a query must select at least one column".into()));
    }
    let prefix = select_prefix(dialect, table, columns.iter().copied());
    compiler::select(dialect, &prefix, spec, schema).map(compiler::Compiled::into_query)
}

/// `SELECT <columns> FROM <table>`, as [`select`] starts.
pub fn select_prefix<'a>(dialect: &dyn Dialect, table: &str, columns: impl IntoIterator<Item = &'a str>) -> String {
    let mut prefix = String::from("SELECT ");
    for (i, c) in columns.into_iter().enumerate() {
        if i > 0 {
            prefix.push_str(dialect.words().column_separator);
        }
        push_ident(&mut prefix, c);
    }
    prefix.push_str(" FROM ");
    push_ident(&mut prefix, table);
    prefix
}

/// `SELECT count(*) FROM <table> [WHERE ..]` (order, limit and offset ignored).
pub fn count(dialect: &dyn Dialect, table: &str, spec: &QuerySpec, schema: &dyn FilterSchema) -> Result<SqlQuery> {
    compiler::count(dialect, table, spec, schema).map(compiler::Compiled::into_query)
}

/// A filter as a boolean SQL expression that is never NULL (what follows `WHERE`),
/// with its parameters, checked against `schema` as [`select`] does.
pub fn filter_condition(dialect: &dyn Dialect, filter: &Expr, schema: &dyn FilterSchema) -> Result<SqlQuery> {
    compiler::condition(dialect, filter, schema).map(compiler::Compiled::into_query)
}

/// Quotes an identifier (`"name"`, each `"` doubled): the same for both databases.
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    push_ident(&mut out, name);
    out
}

/// Appends an identifier, quoted.
fn push_ident(out: &mut String, name: &str) {
    push_quoted(out, name, '"');
}

/// Appends `text` between two `quote`s, each `quote` inside it doubled: how SQL quotes
/// identifiers (`"`) and string literals (`'`), and how OData quotes strings (`'`).
pub fn push_quoted(out: &mut String, text: &str, quote: char) {
    out.push(quote);
    for (i, part) in text.split(quote).enumerate() {
        if i > 0 {
            out.push(quote);
            out.push(quote);
        }
        out.push_str(part);
    }
    out.push(quote);
}

#[cfg(test)]
mod tests;
