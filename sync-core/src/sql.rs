//! Compiling the query AST to SQLite SQL with bound parameters.
//!
//! The compiled SQL has exactly the semantics of the in-memory evaluator
//! ([`crate::query::eval`], whose module docs spell them out): OData's two-valued logic,
//! null-safe `eq`/`ne`, `gt ge lt le` false on null, a null predicate counting as false.
//! No boolean node of the compiled SQL ever yields NULL, so `NOT` never turns an
//! unknown into a match:
//!
//! | filter | SQL (nullable `oi`, non-nullable `i`) |
//! |---|---|
//! | `i eq 5` | `("i" = ?)` (plain, so an index on `i` is used) |
//! | `oi eq 5` | `("oi" IS ?)` |
//! | `oi eq null` | `("oi" IS NULL)` |
//! | `oi gt 5` | `("oi" > ? AND "oi" IS NOT NULL)` |
//! | `ob` (a nullable bool) | `("ob" IS 1)` |
//! | `startswith(os,'a')` | `COALESCE(sync_startswith("os", ?), 0)` |
//! | `i eq 1 or i eq 2 or s eq 'x'` | `(("i" IN (?, ?)) OR ("s" = ?))` |
//!
//! An `or` of `column eq <literal>` terms on one column (what `is_in` builds) becomes
//! one `IN` list, and long `and`/`or` chains are grouped in nested parentheses, so a
//! large `is_in` neither hits SQLite's expression depth limit nor plans slowly. (SQLite
//! still allows at most 32766 parameters per statement.)
//!
//! The string functions (`startswith`, `tolower`, `substring`, ...) are SQL functions
//! that [`register_functions`] installs; they share their Rust code with the evaluator
//! (case-sensitive, counting characters, full Unicode case mapping), so every
//! connection that runs compiled SQL must call it first. `concat` is SQLite's `||`.
//!
//! Every query gets an `ORDER BY` ending in `"id" ASC` (unless `id` is already one of the
//! terms), so results and pages are deterministic. SQLite sorts nulls first ascending
//! and last descending, text by its UTF-8 bytes (code point order), numbers numerically,
//! timestamps by their fixed-width text, which is what the evaluator does.

use std::fmt::Write as _;
use std::rc::Rc;

use crate::odata::FilterSchema;
use crate::odata::typecheck::{self, Ty};
use crate::query::analysis::{self, OrTerm};
use crate::query::eval::text_fn;
use crate::query::{BinaryOp, Expr, Func, QuerySpec};
use crate::value::Value;

/// A query that cannot be compiled: an unknown column, an ill-typed comparison, a
/// filter that is not a condition, ... The message names the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

type Result<T, E = QueryError> = std::result::Result<T, E>;

/// SQL text with its bound parameters. No value of a filter is ever spliced into the
/// text; only a query's row limit is, as an integer (see [`select`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SqlQuery {
    /// The SQL, with `?` placeholders.
    pub sql: String,
    /// One value per placeholder, in order.
    pub params: Vec<Value>,
}

/// `SELECT <columns> FROM <table> [WHERE ..] ORDER BY .. [LIMIT <n> [OFFSET ?]]`.
///
/// The filter and order are checked against `schema`: an unknown column, an ill-typed
/// comparison or a non-boolean filter is [`QueryError`] naming the problem.
/// The selected columns are quoted, not checked.
///
/// The limit is an integer in the text, not a parameter: SQLite plans with a bound
/// `LIMIT` value, so a statement whose `LIMIT` is a parameter is compiled again every
/// time it runs (its parameters are bound anew), which was a tenth of the cost of a
/// small indexed query. The offset stays a parameter (it does not steer the plan), so
/// paging through a result reuses one statement.
pub fn select(table: &str, columns: &[&str], spec: &QuerySpec, schema: &dyn FilterSchema) -> Result<SqlQuery> {
    if columns.is_empty() {
        return Err(QueryError("a query must select at least one column".into()));
    }
    let (sql, params) = select_params(&select_prefix(table, columns.iter().copied()), spec, schema)?;
    Ok(SqlQuery { sql, params: values(params) })
}

/// `SELECT <columns> FROM <table>`, as [`select`] starts.
pub fn select_prefix<'a>(table: &str, columns: impl IntoIterator<Item = &'a str>) -> String {
    let mut prefix = String::from("SELECT ");
    for (i, c) in columns.into_iter().enumerate() {
        if i > 0 {
            prefix.push(',');
        }
        push_ident(&mut prefix, c);
    }
    prefix.push_str(" FROM ");
    push_ident(&mut prefix, table);
    prefix
}

/// [`select`] after its `SELECT <columns> FROM <table>` (which a caller running many
/// queries on one table builds once), its parameters still telling which literal of
/// the filter each one is.
fn select_params<'e>(prefix: &str, spec: &'e QuerySpec, schema: &dyn FilterSchema) -> Result<(String, Vec<Param<'e>>)> {
    let mut query = Compiled { sql: String::with_capacity(prefix.len() + 128), params: Vec::new() };
    query.sql.push_str(prefix);
    where_clause(&mut query, spec, schema)?;

    query.sql.push_str(" ORDER BY ");
    for term in &spec.order_by {
        match schema.column(&term.column) {
            None => {
                return Err(QueryError(format!("unknown column `{}` in the order", term.column)));
            }
            Some((ty, _)) if !ty.is_ordered() => {
                return Err(QueryError(format!("column `{}` of type {ty} cannot be ordered", term.column)));
            }
            Some(_) => {}
        }
        push_ident(&mut query.sql, &term.column);
        query.sql.push_str(if term.descending { " DESC, " } else { " ASC, " });
    }
    if spec.order_by.iter().any(|t| t.column == crate::system::ID) {
        query.sql.truncate(query.sql.len() - 2);
    } else {
        push_ident(&mut query.sql, crate::system::ID);
        query.sql.push_str(" ASC");
    }

    match (spec.limit, spec.offset) {
        (None, None) => {}
        (Some(limit), None) => {
            let _ = write!(query.sql, " LIMIT {}", clamp(limit));
        }
        (limit, Some(offset)) => {
            let _ = write!(query.sql, " LIMIT {} OFFSET ?", limit.map_or(-1, clamp));
            query.params.push(Param::Offset(clamp(offset)));
        }
    }
    Ok((query.sql, query.params))
}

/// A limit or offset as SQLite's integer.
fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `SELECT count(*) FROM <table> [WHERE ..]` (order, limit and offset ignored).
pub fn count(table: &str, spec: &QuerySpec, schema: &dyn FilterSchema) -> Result<SqlQuery> {
    let mut query = Compiled { sql: format!("SELECT count(*) FROM {}", quote_ident(table)), params: Vec::new() };
    where_clause(&mut query, spec, schema)?;
    Ok(SqlQuery { sql: query.sql, params: values(query.params) })
}

/// Past this many values, an `IN` list is sent as one JSON array parameter.
const LONG_IN_LIST: usize = 256;

/// The values as a JSON array of exactly what SQLite stores for them (integers, and
/// text: strings, timestamps in their fixed-width form, JSON as its text), so that
/// `json_each` yields values equal to the stored ones; `None` when one is stored
/// otherwise (a float, whose text form might not round-trip; bytes).
fn json_list(values: &[&Value]) -> Option<String> {
    use rusqlite::ToSql;
    use rusqlite::types::{ToSqlOutput, Value as Sql, ValueRef};
    let mut items = Vec::with_capacity(values.len());
    for value in values {
        let item = match value.to_sql().ok()? {
            ToSqlOutput::Owned(Sql::Integer(i)) | ToSqlOutput::Borrowed(ValueRef::Integer(i)) => {
                serde_json::Value::from(i)
            }
            ToSqlOutput::Owned(Sql::Text(t)) => serde_json::Value::String(t),
            ToSqlOutput::Borrowed(ValueRef::Text(t)) => {
                serde_json::Value::String(std::str::from_utf8(t).ok()?.to_owned())
            }
            _ => return None,
        };
        items.push(item);
    }
    Some(serde_json::Value::Array(items).to_string())
}

/// Quotes an identifier for SQLite.
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    push_ident(&mut out, name);
    out
}

/// Appends an identifier, quoted for SQLite.
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

/// Compiles a filter to a boolean SQL expression that is never NULL (what follows
/// `WHERE`), with its parameters. Checks it against `schema` as [`select`] does.
pub fn filter_condition(filter: &Expr, schema: &dyn FilterSchema) -> Result<SqlQuery> {
    let frag = Compiler { schema }.predicate(filter, "")?;
    Ok(SqlQuery { sql: frag.sql, params: values(frag.params) })
}

fn where_clause<'e>(query: &mut Compiled<'e>, spec: &'e QuerySpec, schema: &dyn FilterSchema) -> Result<()> {
    if let Some(filter) = &spec.filter {
        let cond = Compiler { schema }.predicate(filter, "")?;
        query.sql.push_str(" WHERE ");
        query.sql.push_str(&cond.sql);
        query.params.extend(cond.params);
    }
    Ok(())
}

/// SQL being compiled, with its parameters.
struct Compiled<'e> {
    sql: String,
    params: Vec<Param<'e>>,
}

/// Where a parameter's value comes from. Keeping the literals borrowed lets
/// [`SelectCache`] tell which literal of the filter each parameter is, so that a query
/// of the same shape reuses the SQL with its own literals.
#[derive(Clone, Debug)]
enum Param<'e> {
    /// A literal of the filter, as it is.
    Literal(&'e Value),
    /// A value the compiler made (a long `IN` list as one JSON array).
    Made(Rc<Value>),
    /// The query's offset.
    Offset(i64),
}

/// The values to bind.
fn values(params: Vec<Param<'_>>) -> Vec<Value> {
    params
        .into_iter()
        .map(|p| match p {
            Param::Literal(v) => v.clone(),
            Param::Made(v) => Rc::unwrap_or_clone(v),
            Param::Offset(n) => Value::Int(n),
        })
        .collect()
}

const STARTS_WITH: &str = "sync_startswith";
const ENDS_WITH: &str = "sync_endswith";
const CONTAINS: &str = "sync_contains";
const TO_LOWER: &str = "sync_tolower";
const TO_UPPER: &str = "sync_toupper";
const TRIM: &str = "sync_trim";
const LENGTH: &str = "sync_length";
const INDEX_OF: &str = "sync_indexof";
const SUBSTRING: &str = "sync_substring";

/// Switches a database file to WAL and returns the journal mode now in force. The
/// switch needs an exclusive lock, and SQLite answers `SQLITE_BUSY` at once, without
/// calling the busy handler, while another process opens or switches the same file (two
/// servers, or two apps, started together); so it is retried for up to `wait`.
pub fn switch_to_wal(conn: &rusqlite::Connection, wait: std::time::Duration) -> rusqlite::Result<String> {
    use rusqlite::ErrorCode;
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(2);
    loop {
        match conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0)) {
            Err(e)
                if matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
                    && Instant::now() < deadline =>
            {
                tracing::debug!(error = %e, "the database is busy; retrying the switch to WAL");
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            result => return result,
        }
    }
}

/// Registers the SQL functions the compiled SQL uses (`sync_startswith`,
/// `sync_tolower`, `sync_substring`, ...: the evaluator's string functions), marked
/// deterministic and innocuous. Call it once on every connection that runs compiled
/// queries.
pub fn register_functions(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC | FunctionFlags::SQLITE_INNOCUOUS;

    type TwoTexts = fn(&str, &str) -> i64;
    let two_texts: [(&str, TwoTexts); 4] = [
        (STARTS_WITH, |s, p| i64::from(s.starts_with(p))),
        (ENDS_WITH, |s, p| i64::from(s.ends_with(p))),
        (CONTAINS, |s, p| i64::from(s.contains(p))),
        (INDEX_OF, text_fn::index_of),
    ];
    for (name, f) in two_texts {
        conn.create_scalar_function(name, 2, flags, move |ctx| {
            Ok(match (text_arg(ctx, 0)?, text_arg(ctx, 1)?) {
                (Some(s), Some(p)) => Some(f(s, p)),
                _ => None,
            })
        })?;
    }

    type OneText = fn(&str) -> String;
    let one_text: [(&str, OneText); 3] =
        [(TO_LOWER, text_fn::to_lower), (TO_UPPER, text_fn::to_upper), (TRIM, |s| text_fn::trim(s).to_owned())];
    for (name, f) in one_text {
        conn.create_scalar_function(name, 1, flags, move |ctx| Ok(text_arg(ctx, 0)?.map(f)))?;
    }

    conn.create_scalar_function(LENGTH, 1, flags, |ctx| Ok(text_arg(ctx, 0)?.map(text_fn::length)))?;
    conn.create_scalar_function(SUBSTRING, 2, flags, |ctx| {
        Ok(match (text_arg(ctx, 0)?, int_arg(ctx, 1)?) {
            (Some(s), Some(start)) => Some(text_fn::substring(s, start, None)),
            _ => None,
        })
    })?;
    conn.create_scalar_function(SUBSTRING, 3, flags, |ctx| {
        Ok(match (text_arg(ctx, 0)?, int_arg(ctx, 1)?, int_arg(ctx, 2)?) {
            (Some(s), Some(start), Some(len)) => Some(text_fn::substring(s, start, Some(len))),
            _ => None,
        })
    })?;
    Ok(())
}

fn text_arg<'c>(ctx: &'c rusqlite::functions::Context<'_>, i: usize) -> rusqlite::Result<Option<&'c str>> {
    use rusqlite::types::ValueRef;
    match ctx.get_raw(i) {
        ValueRef::Null => Ok(None),
        ValueRef::Text(bytes) => {
            std::str::from_utf8(bytes).map(Some).map_err(|e| rusqlite::Error::UserFunctionError(Box::new(e)))
        }
        other => Err(rusqlite::Error::UserFunctionError(format!("expected text, found {}", other.data_type()).into())),
    }
}

/// An integer argument. SQLite's constant propagation may hand a function the literal
/// of an equality on the same column (`i = 2.5 AND substring(s, i)` becomes
/// `substring(s, 2.5)`), although no row of an integer column can satisfy it: an
/// integral real is taken as its integer, anything else as null, so such a query
/// returns the rows it should instead of failing.
fn int_arg(ctx: &rusqlite::functions::Context<'_>, i: usize) -> rusqlite::Result<Option<i64>> {
    use rusqlite::types::ValueRef;
    Ok(match ctx.get_raw(i) {
        ValueRef::Integer(n) => Some(n),
        ValueRef::Real(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
        _ => None,
    })
}

/// A compiled piece of SQL with its own parameters, its static type, and whether it is
/// a bare column reference (which can be repeated freely).
struct Frag<'e> {
    sql: String,
    params: Vec<Param<'e>>,
    ty: Ty,
    is_column: bool,
}

impl<'e> Frag<'e> {
    fn new(sql: String, params: Vec<Param<'e>>, ty: Ty) -> Frag<'e> {
        Frag { sql, params, ty, is_column: false }
    }

    fn constant(sql: &str, ty: Ty) -> Frag<'e> {
        Frag::new(sql.to_owned(), Vec::new(), ty)
    }

    /// `?`, bound to a literal.
    fn literal(value: &'e Value) -> Frag<'e> {
        Frag::new("?".to_owned(), vec![Param::Literal(value)], Ty::of_literal(value))
    }
}

/// Concatenates SQL text and fragments in order, keeping the parameters in step.
fn join<'e>(parts: Vec<Part<'_, 'e>>, ty: Ty) -> Frag<'e> {
    let mut sql = String::new();
    let mut params = Vec::new();
    for part in parts {
        match part {
            Part::Text(t) => sql.push_str(t),
            Part::Frag(f) => {
                sql.push_str(&f.sql);
                params.extend(f.params.iter().cloned());
            }
        }
    }
    Frag::new(sql, params, ty)
}

/// `(t1 SEP t2 SEP ...)`.
fn connect<'e>(terms: &[Frag<'e>], sep: &str) -> Frag<'e> {
    let mut parts = vec![T("(")];
    for (i, term) in terms.iter().enumerate() {
        if i > 0 {
            parts.push(T(sep));
        }
        parts.push(F(term));
    }
    parts.push(T(")"));
    join(parts, Ty::BOOL)
}

/// How many terms of an `and`/`or` chain one pair of parentheses holds.
const CHAIN_GROUP: usize = 64;

enum Part<'f, 'e> {
    Text(&'f str),
    Frag(&'f Frag<'e>),
}

use Part::{Frag as F, Text as T};

struct Compiler<'s> {
    schema: &'s dyn FilterSchema,
}

impl Compiler<'_> {
    /// SQL that is 0 or 1, never NULL. `connective` is the `and`/`or`/`not` this is an
    /// operand of, empty for the whole filter (for type errors).
    fn predicate<'e>(&self, expr: &'e Expr, connective: &str) -> Result<Frag<'e>> {
        match expr {
            Expr::Not(inner) => {
                let inner = self.predicate(inner, "not")?;
                Ok(join(vec![T("(NOT "), F(&inner), T(")")], Ty::BOOL))
            }
            Expr::Binary { op: op @ (BinaryOp::And | BinaryOp::Or), .. } => {
                let frag = self.connective(expr, *op)?;
                if *op == BinaryOp::Or {
                    if let Some(bound) = self.implied_lower_bound(&analysis::operands(expr, *op))? {
                        return Ok(join(vec![T("("), F(&bound), T(" AND "), F(&frag), T(")")], Ty::BOOL));
                    }
                }
                Ok(frag)
            }
            Expr::Binary { op, left, right } => self.comparison(*op, left, right),
            _ => {
                let frag = self.value(expr)?;
                typecheck::check_predicate(frag.ty, connective).map_err(QueryError)?;
                Ok(if frag.ty.is_null() {
                    Frag::constant("0", Ty::BOOL)
                } else if frag.is_column {
                    let test = if frag.ty.nullable { " IS 1)" } else { " = 1)" };
                    join(vec![T("("), F(&frag), T(test)], Ty::BOOL)
                } else if frag.ty.nullable {
                    join(vec![T("COALESCE("), F(&frag), T(", 0)")], Ty::BOOL)
                } else {
                    Frag { ty: Ty::BOOL, ..frag }
                })
            }
        }
    }

    /// `column >= literal`, when every term of an `or` chain implies it (see
    /// [`analysis::implied_lower_bound`]): SQLite then scans the index from there.
    fn implied_lower_bound<'e>(&self, terms: &[&'e Expr]) -> Result<Option<Frag<'e>>> {
        let Some((column, value)) = analysis::implied_lower_bound(terms) else { return Ok(None) };
        let col = self.column(column)?;
        let lit = Frag::literal(value);
        if col.ty.is_null() || typecheck::check_comparison(BinaryOp::Ge, col.ty, lit.ty).is_err() {
            return Ok(None);
        }
        self.compare(BinaryOp::Ge, col, lit).map(Some)
    }

    /// An `and` / `or` chain.
    fn connective<'e>(&self, expr: &'e Expr, op: BinaryOp) -> Result<Frag<'e>> {
        let sep = if op == BinaryOp::And { " AND " } else { " OR " };
        let mut terms = if op == BinaryOp::Or {
            self.or_terms(analysis::operands(expr, op))?
        } else {
            analysis::operands(expr, op)
                .into_iter()
                .map(|t| self.predicate(t, op.keyword()))
                .collect::<Result<Vec<_>>>()?
        };
        // SQLite limits the depth of an expression tree (1000) and parses
        // `a OR b OR c` as a left-deep tree: group long chains so that a large
        // `is_in` stays shallow. `AND`/`OR` of 0/1 values are associative.
        loop {
            match <[Frag<'_>; 1]>::try_from(terms) {
                Ok([one]) => return Ok(one),
                Err(many) if many.is_empty() => {
                    return Ok(Frag::constant(if op == BinaryOp::And { "1" } else { "0" }, Ty::BOOL));
                }
                Err(many) => {
                    terms = many.chunks(CHAIN_GROUP).map(|g| connect(g, sep)).collect();
                }
            }
        }
    }

    /// The terms of an `or` chain, where two or more `column eq <literal>` terms on the
    /// same column become one `"column" IN (?, ...)` (what `is_in` builds; SQLite plans
    /// a long list of `=` terms slowly, an `IN` list quickly and with an index).
    fn or_terms<'e>(&self, terms: Vec<&'e Expr>) -> Result<Vec<Frag<'e>>> {
        analysis::group_or_terms(terms)
            .into_iter()
            .map(|term| match term {
                OrTerm::Term(term) => self.predicate(term, "or"),
                OrTerm::In(column, values) => self.in_list(column, &values),
            })
            .collect()
    }

    fn in_list<'e>(&self, column: &str, values: &[&'e Value]) -> Result<Frag<'e>> {
        let col = self.column(column)?;
        if let [value] = values {
            return self.compare(BinaryOp::Eq, col, Frag::literal(value));
        }
        for value in values {
            typecheck::check_comparison(BinaryOp::Eq, col.ty, Ty::of_literal(value)).map_err(QueryError)?;
        }
        let (mut sql, params) = match json_list(values) {
            // A long list is one parameter: a JSON array read by `json_each`. SQLite takes
            // at most 32,766 parameters per statement, and each length of a `?` list is a
            // statement of its own in the cache.
            Some(array) if values.len() > LONG_IN_LIST => (
                format!("({} IN (SELECT value FROM json_each(?))", col.sql),
                vec![Param::Made(Rc::new(Value::String(array)))],
            ),
            _ => {
                let mut sql = format!("({} IN (", col.sql);
                for i in 0..values.len() {
                    sql.push_str(if i == 0 { "?" } else { ", ?" });
                }
                sql.push(')');
                (sql, values.iter().map(|v| Param::Literal(v)).collect())
            }
        };
        if col.ty.nullable {
            // `NULL IN (..)` is NULL; make it false.
            sql.push_str(&format!(" AND {} IS NOT NULL", col.sql));
        }
        sql.push(')');
        Ok(Frag::new(sql, params, Ty::BOOL))
    }

    fn comparison<'e>(&self, op: BinaryOp, left: &'e Expr, right: &'e Expr) -> Result<Frag<'e>> {
        let l = self.value(left)?;
        let r = self.value(right)?;
        self.compare(op, l, r)
    }

    fn compare<'e>(&self, op: BinaryOp, l: Frag<'e>, r: Frag<'e>) -> Result<Frag<'e>> {
        typecheck::check_comparison(op, l.ty, r.ty).map_err(QueryError)?;
        let both_non_null = !l.ty.nullable && !r.ty.nullable;
        Ok(match op {
            BinaryOp::Eq | BinaryOp::Ne => {
                let eq = op == BinaryOp::Eq;
                match (l.ty.is_null(), r.ty.is_null()) {
                    (true, true) => Frag::constant(if eq { "1" } else { "0" }, Ty::BOOL),
                    (false, true) | (true, false) => {
                        let x = if r.ty.is_null() { &l } else { &r };
                        let test = if eq { " IS NULL)" } else { " IS NOT NULL)" };
                        join(vec![T("("), F(x), T(test)], Ty::BOOL)
                    }
                    (false, false) => {
                        let sym = match (eq, both_non_null) {
                            (true, true) => " = ",
                            (false, true) => " <> ",
                            (true, false) => " IS ",
                            (false, false) => " IS NOT ",
                        };
                        join(vec![T("("), F(&l), T(sym), F(&r), T(")")], Ty::BOOL)
                    }
                }
            }
            _ => {
                if l.ty.is_null() || r.ty.is_null() {
                    return Ok(Frag::constant("0", Ty::BOOL));
                }
                let sym = match op {
                    BinaryOp::Gt => " > ",
                    BinaryOp::Ge => " >= ",
                    BinaryOp::Lt => " < ",
                    _ => " <= ",
                };
                let nullable_sides: Vec<&Frag<'_>> = [&l, &r].into_iter().filter(|f| f.ty.nullable).collect();
                if nullable_sides.is_empty() {
                    join(vec![T("("), F(&l), T(sym), F(&r), T(")")], Ty::BOOL)
                } else if nullable_sides.iter().all(|f| f.is_column) {
                    // `x > ? AND x IS NOT NULL` keeps an index on x usable.
                    let mut parts = vec![T("("), F(&l), T(sym), F(&r)];
                    for side in &nullable_sides {
                        parts.extend([T(" AND "), F(side), T(" IS NOT NULL")]);
                    }
                    parts.push(T(")"));
                    join(parts, Ty::BOOL)
                } else {
                    join(vec![T("COALESCE(("), F(&l), T(sym), F(&r), T("), 0)")], Ty::BOOL)
                }
            }
        })
    }

    /// SQL for a value (which may be NULL).
    fn value<'e>(&self, expr: &'e Expr) -> Result<Frag<'e>> {
        match expr {
            Expr::Column(name) => self.column(name),
            Expr::Literal(value) => {
                let ty = Ty::of_literal(value);
                Ok(if ty.is_null() {
                    // NaN binds as NULL in SQLite; say so statically.
                    Frag::constant("NULL", ty)
                } else {
                    Frag::literal(value)
                })
            }
            Expr::Not(_) | Expr::Binary { .. } => self.predicate(expr, ""),
            Expr::Call { func, args } => self.call(*func, args),
        }
    }

    fn column<'e>(&self, name: &str) -> Result<Frag<'e>> {
        match self.schema.column(name) {
            Some((ty, nullable)) => {
                Ok(Frag { sql: quote_ident(name), params: Vec::new(), ty: Ty::column(ty, nullable), is_column: true })
            }
            None => Err(QueryError(format!("unknown column `{name}`"))),
        }
    }

    fn call<'e>(&self, func: Func, args: &'e [Expr]) -> Result<Frag<'e>> {
        typecheck::check_arity(func, func.name(), args.len()).map_err(QueryError)?;
        let args = args.iter().map(|a| self.value(a)).collect::<Result<Vec<_>>>()?;
        let types: Vec<Ty> = args.iter().map(|a| a.ty).collect();
        let ty = typecheck::check_call(func, func.name(), &types).map_err(|(_, m)| QueryError(m))?;
        if func == Func::Concat {
            return Ok(join(vec![T("("), F(&args[0]), T(" || "), F(&args[1]), T(")")], ty));
        }
        let name = match func {
            Func::StartsWith => STARTS_WITH,
            Func::EndsWith => ENDS_WITH,
            Func::Contains => CONTAINS,
            Func::ToLower => TO_LOWER,
            Func::ToUpper => TO_UPPER,
            Func::Trim => TRIM,
            Func::Length => LENGTH,
            Func::IndexOf => INDEX_OF,
            Func::Substring | Func::Concat => SUBSTRING,
        };
        let mut parts = vec![T(name), T("(")];
        for (i, arg) in args.iter().enumerate() {
            if i > 0 {
                parts.push(T(", "));
            }
            parts.push(F(arg));
        }
        parts.push(T(")"));
        Ok(join(parts, ty))
    }
}

mod cache;
pub use cache::{CachedSelect, SelectCache};

#[cfg(test)]
mod tests;
