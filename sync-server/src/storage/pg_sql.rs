//! Compiling the query AST to PostgreSQL SQL with bound parameters: the PostgreSQL twin
//! of `sync_core::sql` (the SQLite compiler), with the same semantics, those of the
//! in-memory evaluator (`sync_core::query::eval`, whose module docs spell them out):
//! OData's two-valued logic, null-safe `eq`/`ne`, `gt ge lt le` false on null, a null
//! predicate counting as false. No boolean node of the compiled SQL is ever NULL, so
//! `NOT` never turns an unknown into a match:
//!
//! | filter | SQL (nullable `oi`, non-nullable `i`) |
//! |---|---|
//! | `i eq 5` | `("i" = $1::bigint)` (plain, so an index on `i` is used) |
//! | `oi eq 5` | `("oi" = $1::bigint AND "oi" IS NOT NULL)` |
//! | `oi eq oj` | `("oi" IS NOT DISTINCT FROM "oj")` |
//! | `oi eq null` | `("oi" IS NULL)` |
//! | `oi gt 5` | `("oi" > $1::bigint AND "oi" IS NOT NULL)` |
//! | `s gt 'a'` | `("s" COLLATE "C" > $1::text)` (code point order) |
//! | `ob` (a nullable bool) | `("ob" IS TRUE)` |
//! | `startswith(os,'a')` | `COALESCE(starts_with("os", $1::text), FALSE)` |
//! | `i eq 1 or i eq 2 or s eq 'x'` | `(("i" IN ($1::bigint, $2::bigint)) OR ("s" = $3::text))` |
//!
//! Every literal is a bound parameter with an explicit cast, so its type never depends
//! on PostgreSQL's inference; no text of a request is ever spliced into the SQL.
//!
//! Storage matches SQLite's (see `postgres.rs`): text, timestamps (fixed-width UTC text)
//! and JSON (its text) in `TEXT COLLATE "C"` columns, so comparisons and `ORDER BY` go by
//! code point, as the evaluator does; `ORDER BY` puts nulls first ascending and last
//! descending, as SQLite does. The string functions map to PostgreSQL's (`starts_with`,
//! `strpos`, `char_length`, `||`, all counting characters) or to the SQL functions of
//! [`function_ddl`], which the storage installs next to the tables: `endswith`,
//! `substring` (the evaluator's 0-based clamping), `trim` (Unicode white space) and
//! `tolower`/`toupper` (full Unicode case mapping through the ICU root collation where
//! the server has ICU, so `'ß'` upper-cases to `'SS'`; without ICU the database's own
//! case mapping, which may differ from the evaluator's outside ASCII).
//!
//! Known difference: an `int` compared with a `float` is compared as a double (exact up
//! to 2^53; the evaluator is exact beyond that too).

use sync_core::odata::FilterSchema;
use sync_core::odata::typecheck::{Kind, Ty, check_arity, check_call, check_comparison, check_predicate, signature};
use sync_core::query::analysis::{OrTerm, operands};
use sync_core::query::{BinaryOp, Expr, Func, QuerySpec, analysis};
use sync_core::sql::quote_ident;
use sync_core::system::ID;
use sync_core::{ColumnType, Value};

/// The most parameters one PostgreSQL statement can bind.
pub(crate) const MAX_PARAMS: usize = u16::MAX as usize;

/// SQL text with `$n` placeholders and one value per placeholder, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct PgQuery {
    pub(crate) sql: String,
    pub(crate) params: Vec<Value>,
}

/// Why a query cannot be compiled (said to the client as a 400).
pub(crate) type CompileError = String;

/// `SELECT <columns> FROM <table> [WHERE ..] ORDER BY .. [LIMIT .. OFFSET ..]`; the
/// order always ends with `id` ascending unless `id` is one of the terms.
pub(crate) fn select(
    table: &str,
    columns: &[&str],
    spec: &QuerySpec,
    schema: &dyn FilterSchema,
) -> Result<PgQuery, CompileError> {
    let list: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    let mut sql = format!("SELECT {} FROM {}", list.join(", "), quote_ident(table));
    let mut params = Vec::new();
    where_clause(&mut sql, &mut params, spec, schema)?;

    let mut terms = Vec::with_capacity(spec.order_by.len() + 1);
    for term in &spec.order_by {
        let nullable = match schema.column(&term.column) {
            None => return Err(format!("unknown column `{}` in the order", term.column)),
            Some((ty, _)) if !ty.is_ordered() => {
                return Err(format!("column `{}` of type {ty} cannot be ordered", term.column));
            }
            Some((_, nullable)) => nullable,
        };
        // Nulls sort first ascending (as in SQLite). Only said for nullable columns:
        // a NULLS clause an index does not have keeps the index from ordering.
        let direction = match (term.descending, nullable) {
            (false, false) => "ASC",
            (true, false) => "DESC",
            (false, true) => "ASC NULLS FIRST",
            (true, true) => "DESC NULLS LAST",
        };
        terms.push(format!("{} {direction}", quote_ident(&term.column)));
    }
    if !spec.order_by.iter().any(|t| t.column == ID) {
        terms.push(format!("{} ASC", quote_ident(ID)));
    }
    sql.push_str(" ORDER BY ");
    sql.push_str(&terms.join(", "));

    let clamp = |n: u64| Value::Int(i64::try_from(n).unwrap_or(i64::MAX));
    if let Some(limit) = spec.limit {
        sql.push_str(" LIMIT ?::bigint");
        params.push(clamp(limit));
    }
    if let Some(offset) = spec.offset {
        sql.push_str(" OFFSET ?::bigint");
        params.push(clamp(offset));
    }
    finish(sql, params)
}

/// `SELECT count(*) FROM <table> [WHERE ..]` (order, limit and offset ignored).
pub(crate) fn count(table: &str, spec: &QuerySpec, schema: &dyn FilterSchema) -> Result<PgQuery, CompileError> {
    let mut sql = format!("SELECT count(*) FROM {}", quote_ident(table));
    let mut params = Vec::new();
    where_clause(&mut sql, &mut params, spec, schema)?;
    finish(sql, params)
}

fn where_clause(
    sql: &mut String,
    params: &mut Vec<Value>,
    spec: &QuerySpec,
    schema: &dyn FilterSchema,
) -> Result<(), CompileError> {
    if let Some(filter) = &spec.filter {
        let cond = Compiler { schema }.predicate(filter, "")?;
        sql.push_str(" WHERE ");
        sql.push_str(&cond.sql);
        params.extend(cond.params);
    }
    Ok(())
}

/// Numbers the placeholders. Fragments mark each one with `?`, which appears nowhere
/// else: the SQL is built only from this compiler's text and quoted identifiers of the
/// table definition (validated plain identifiers), never from a request.
fn finish(sql: String, params: Vec<Value>) -> Result<PgQuery, CompileError> {
    if params.len() > MAX_PARAMS {
        return Err(format!("the query has {} literals; PostgreSQL binds at most {MAX_PARAMS}", params.len()));
    }
    let mut numbered = String::with_capacity(sql.len() + params.len() * 2);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            numbered.push_str(&format!("${n}"));
        } else {
            numbered.push(c);
        }
    }
    debug_assert_eq!(n, params.len());
    Ok(PgQuery { sql: numbered, params })
}

/// The PostgreSQL type a literal is bound as (see `postgres.rs`, which binds it).
pub(crate) fn literal_type(value: &Value) -> &'static str {
    match value {
        Value::Null | Value::String(_) | Value::DateTime(_) | Value::Json(_) => "text",
        Value::Bool(_) => "boolean",
        Value::Int(_) => "bigint",
        Value::Float(_) => "double precision",
        Value::Bytes(_) => "bytea",
    }
}

/// The SQL type of a column: text-like types in the `"C"` collation (code point order).
pub(crate) fn column_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::String | ColumnType::DateTime | ColumnType::Json => "TEXT COLLATE \"C\"",
        ColumnType::Bool => "BOOLEAN",
        ColumnType::Int => "BIGINT",
        ColumnType::Float => "DOUBLE PRECISION",
        ColumnType::Bytes => "BYTEA",
    }
}

/// What `information_schema.columns.data_type` says for a column of this type.
pub(crate) fn information_schema_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::String | ColumnType::DateTime | ColumnType::Json => "text",
        ColumnType::Bool => "boolean",
        ColumnType::Int => "bigint",
        ColumnType::Float => "double precision",
        ColumnType::Bytes => "bytea",
    }
}

const ENDS_WITH: &str = "\"__sync_server_endswith\"";
const TO_LOWER: &str = "\"__sync_server_tolower\"";
const TO_UPPER: &str = "\"__sync_server_toupper\"";
const TRIM: &str = "\"__sync_server_trim\"";
const SUBSTRING: &str = "\"__sync_server_substring\"";

/// The SQL functions compiled queries call, created (or replaced) in the schema of the
/// tables. They are `STRICT` (a null argument gives null, as in the evaluator) and
/// `IMMUTABLE`. `icu`: whether the server has the ICU root collation `und-x-icu`.
pub(crate) fn function_ddl(icu: bool) -> String {
    let attrs = "LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE";
    let collate = if icu { " COLLATE \"und-x-icu\"" } else { "" };
    // Rust's `char::is_whitespace` (Unicode White_Space), which the evaluator trims.
    let white: String =
        ('\0'..=char::MAX).filter(|c| c.is_whitespace()).map(|c| format!("\\u{:04X}", c as u32)).collect();
    // `substr` is 1-based and takes int4: clamp the evaluator's 0-based positions.
    let max = i32::MAX;
    format!(
        "CREATE OR REPLACE FUNCTION {ENDS_WITH}(s text, part text) RETURNS boolean {attrs} \
             AS $$ SELECT right(s, char_length(part)) = part $$;\n\
         CREATE OR REPLACE FUNCTION {TO_LOWER}(s text) RETURNS text {attrs} AS $$ SELECT lower(s{collate}) $$;\n\
         CREATE OR REPLACE FUNCTION {TO_UPPER}(s text) RETURNS text {attrs} AS $$ SELECT upper(s{collate}) $$;\n\
         CREATE OR REPLACE FUNCTION {TRIM}(s text) RETURNS text {attrs} AS $$ SELECT btrim(s, E'{white}') $$;\n\
         CREATE OR REPLACE FUNCTION {SUBSTRING}(s text, i bigint) RETURNS text {attrs} \
             AS $$ SELECT substr(s, (LEAST(GREATEST(i, 0), {max} - 1) + 1)::integer) $$;\n\
         CREATE OR REPLACE FUNCTION {SUBSTRING}(s text, i bigint, n bigint) RETURNS text {attrs} \
             AS $$ SELECT substr(s, (LEAST(GREATEST(i, 0), {max} - 1) + 1)::integer, LEAST(GREATEST(n, 0), {max})::integer) $$;\n"
    )
}

/// Whether values of this type compare as text (and need the `"C"` collation to order
/// by code point).
fn is_text(ty: Ty) -> bool {
    matches!(ty.kind, Kind::Known(ColumnType::String | ColumnType::DateTime | ColumnType::Json))
}

/// A compiled piece of SQL (`?` placeholders) with its parameters, its static type, and
/// whether it is a bare column reference.
struct Frag {
    sql: String,
    params: Vec<Value>,
    ty: Ty,
    is_column: bool,
}

impl Frag {
    fn new(sql: String, params: Vec<Value>, ty: Ty) -> Frag {
        Frag { sql, params, ty, is_column: false }
    }

    fn constant(sql: &str, ty: Ty) -> Frag {
        Frag::new(sql.to_owned(), Vec::new(), ty)
    }
}

enum Part<'f> {
    Text(&'f str),
    Frag(&'f Frag),
}

use Part::{Frag as F, Text as T};

/// Concatenates SQL text and fragments in order, keeping the parameters in step.
fn join(parts: &[Part<'_>], ty: Ty) -> Frag {
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

struct Compiler<'s> {
    schema: &'s dyn FilterSchema,
}

impl Compiler<'_> {
    /// A boolean SQL expression that is never NULL. `connective` is the `and`/`or`/`not`
    /// this is an operand of, empty for the whole filter (for type errors).
    fn predicate(&self, expr: &Expr, connective: &str) -> Result<Frag, CompileError> {
        match expr {
            Expr::Not(inner) => {
                let inner = self.predicate(inner, "not")?;
                Ok(join(&[T("(NOT "), F(&inner), T(")")], Ty::BOOL))
            }
            Expr::Binary { op: op @ (BinaryOp::And | BinaryOp::Or), .. } => {
                let terms = if *op == BinaryOp::Or {
                    self.or_terms(operands(expr, *op))?
                } else {
                    operands(expr, *op).into_iter().map(|t| self.predicate(t, "and")).collect::<Result<Vec<_>, _>>()?
                };
                if let [one] = terms.as_slice() {
                    return Ok(Frag::new(one.sql.clone(), one.params.clone(), Ty::BOOL));
                }
                // PostgreSQL flattens `a OR b OR c` into one list: no depth to worry about.
                let sep = if *op == BinaryOp::And { " AND " } else { " OR " };
                let mut parts = vec![T("(")];
                for (i, term) in terms.iter().enumerate() {
                    if i > 0 {
                        parts.push(T(sep));
                    }
                    parts.push(F(term));
                }
                parts.push(T(")"));
                let frag = join(&parts, Ty::BOOL);
                if *op == BinaryOp::Or {
                    if let Some(bound) = self.implied_lower_bound(&operands(expr, *op))? {
                        return Ok(join(&[T("("), F(&bound), T(" AND "), F(&frag), T(")")], Ty::BOOL));
                    }
                }
                Ok(frag)
            }
            Expr::Binary { op, left, right } => {
                let l = self.value(left)?;
                let r = self.value(right)?;
                self.compare(*op, l, r)
            }
            _ => {
                let frag = self.value(expr)?;
                check_predicate(frag.ty, connective)?;
                Ok(if frag.ty.is_null() {
                    Frag::constant("FALSE", Ty::BOOL)
                } else if frag.is_column {
                    let test = if frag.ty.nullable { " IS TRUE)" } else { " = TRUE)" };
                    join(&[T("("), F(&frag), T(test)], Ty::BOOL)
                } else if frag.ty.nullable {
                    join(&[T("COALESCE("), F(&frag), T(", FALSE)")], Ty::BOOL)
                } else {
                    Frag { ty: Ty::BOOL, ..frag }
                })
            }
        }
    }

    /// `column >= literal`, when every term of an `or` chain implies it (see
    /// [`analysis::implied_lower_bound`]): without it PostgreSQL walks the whole
    /// `("updatedAt", "id")` index, filtering, for every page of an incremental reader.
    fn implied_lower_bound(&self, terms: &[&Expr]) -> Result<Option<Frag>, CompileError> {
        let Some((column, value)) = analysis::implied_lower_bound(terms) else { return Ok(None) };
        let col = self.value(&Expr::column(column))?;
        let lit = literal(value);
        if col.ty.is_null() || check_comparison(BinaryOp::Ge, col.ty, lit.ty).is_err() {
            return Ok(None);
        }
        self.compare(BinaryOp::Ge, col, lit).map(Some)
    }

    /// The terms of an `or` chain, where two or more `column eq <literal>` terms on the
    /// same column become one `"column" IN (..)` (what `is_in` builds).
    fn or_terms(&self, terms: Vec<&Expr>) -> Result<Vec<Frag>, CompileError> {
        analysis::group_or_terms(terms)
            .into_iter()
            .map(|term| match term {
                OrTerm::Term(term) => self.predicate(term, "or"),
                OrTerm::In(column, values) => self.in_list(column, &values),
            })
            .collect()
    }

    fn in_list(&self, column: &str, values: &[&Value]) -> Result<Frag, CompileError> {
        let col = self.value(&Expr::column(column))?;
        if let [value] = values {
            return self.compare(BinaryOp::Eq, col, literal(value));
        }
        let mut sql = format!("({} IN (", col.sql);
        for (i, value) in values.iter().enumerate() {
            check_comparison(BinaryOp::Eq, col.ty, Ty::of_literal(value))?;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("?::{}", literal_type(value)));
        }
        sql.push(')');
        if col.ty.nullable {
            // `NULL IN (..)` is NULL; make it false.
            sql.push_str(&format!(" AND {} IS NOT NULL", col.sql));
        }
        sql.push(')');
        Ok(Frag::new(sql, values.iter().map(|v| (*v).clone()).collect(), Ty::BOOL))
    }

    fn compare(&self, op: BinaryOp, l: Frag, r: Frag) -> Result<Frag, CompileError> {
        check_comparison(op, l.ty, r.ty)?;
        if matches!(op, BinaryOp::Eq | BinaryOp::Ne) {
            let eq = op == BinaryOp::Eq;
            return Ok(match (l.ty.is_null(), r.ty.is_null()) {
                (true, true) => Frag::constant(if eq { "TRUE" } else { "FALSE" }, Ty::BOOL),
                (false, true) | (true, false) => {
                    let x = if r.ty.is_null() { &l } else { &r };
                    join(&[T("("), F(x), T(if eq { " IS NULL)" } else { " IS NOT NULL)" })], Ty::BOOL)
                }
                (false, false) => match (l.ty.nullable, r.ty.nullable) {
                    (false, false) => {
                        join(&[T("("), F(&l), T(if eq { " = " } else { " <> " }), F(&r), T(")")], Ty::BOOL)
                    }
                    // One nullable column against a non-null value: a plain `=` (an index
                    // can serve it), made false instead of NULL when the column is null.
                    (true, false) | (false, true)
                        if eq && (l.is_column && l.ty.nullable || r.is_column && r.ty.nullable) =>
                    {
                        let col = if l.ty.nullable { &l } else { &r };
                        join(&[T("("), F(&l), T(" = "), F(&r), T(" AND "), F(col), T(" IS NOT NULL)")], Ty::BOOL)
                    }
                    _ => {
                        let sym = if eq { " IS NOT DISTINCT FROM " } else { " IS DISTINCT FROM " };
                        join(&[T("("), F(&l), T(sym), F(&r), T(")")], Ty::BOOL)
                    }
                },
            });
        }
        if l.ty.is_null() || r.ty.is_null() {
            return Ok(Frag::constant("FALSE", Ty::BOOL));
        }
        let sym = match op {
            BinaryOp::Gt => " > ",
            BinaryOp::Ge => " >= ",
            BinaryOp::Lt => " < ",
            _ => " <= ",
        };
        // An explicit collation wins over the operands' own: code point order even
        // between two literals.
        let collate = if is_text(l.ty) { " COLLATE \"C\"" } else { "" };
        let nullable_sides: Vec<&Frag> = [&l, &r].into_iter().filter(|f| f.ty.nullable).collect();
        Ok(if nullable_sides.is_empty() {
            join(&[T("("), F(&l), T(collate), T(sym), F(&r), T(")")], Ty::BOOL)
        } else if nullable_sides.iter().all(|f| f.is_column) {
            // `x > $1 AND x IS NOT NULL` keeps an index on x usable.
            let mut parts = vec![T("("), F(&l), T(collate), T(sym), F(&r)];
            for side in &nullable_sides {
                parts.extend([T(" AND "), F(side), T(" IS NOT NULL")]);
            }
            parts.push(T(")"));
            join(&parts, Ty::BOOL)
        } else {
            join(&[T("COALESCE(("), F(&l), T(collate), T(sym), F(&r), T("), FALSE)")], Ty::BOOL)
        })
    }

    /// SQL for a value (which may be NULL).
    fn value(&self, expr: &Expr) -> Result<Frag, CompileError> {
        match expr {
            Expr::Column(name) => match self.schema.column(name) {
                Some((ty, nullable)) => Ok(Frag {
                    sql: quote_ident(name),
                    params: Vec::new(),
                    ty: Ty::column(ty, nullable),
                    is_column: true,
                }),
                None => Err(format!("unknown column `{name}`")),
            },
            Expr::Literal(value) => Ok(literal(value)),
            Expr::Not(_) | Expr::Binary { .. } => self.predicate(expr, ""),
            Expr::Call { func, args } => self.call(*func, args),
        }
    }

    fn call(&self, func: Func, args: &[Expr]) -> Result<Frag, CompileError> {
        let name = func.name();
        check_arity(func, name, args.len())?;
        let mut frags = args.iter().map(|arg| self.value(arg)).collect::<Result<Vec<_>, _>>()?;
        let tys: Vec<Ty> = frags.iter().map(|f| f.ty).collect();
        let ty = check_call(func, name, &tys).map_err(|(_, message)| message)?;
        let (params, _, _) = signature(func);
        for (frag, param) in frags.iter_mut().zip(params) {
            if frag.ty.is_null() {
                // A typed null, so that PostgreSQL can pick the function.
                frag.sql = format!("NULL::{}", if *param == ColumnType::Int { "bigint" } else { "text" });
            }
        }
        let mut parts: Vec<Part<'_>> = Vec::new();
        // `<open>(<arg>, <arg>)<close>`
        let (open, close) = match func {
            Func::StartsWith => ("starts_with", ""),
            Func::EndsWith => (ENDS_WITH, ""),
            Func::Contains => ("(strpos", " > 0)"),
            Func::ToLower => (TO_LOWER, ""),
            Func::ToUpper => (TO_UPPER, ""),
            Func::Trim => (TRIM, ""),
            Func::Length => ("(char_length", "::bigint)"),
            Func::IndexOf => ("(strpos", "::bigint - 1)"),
            Func::Substring => (SUBSTRING, ""),
            Func::Concat => ("", ""),
        };
        let sep = if func == Func::Concat { " || " } else { ", " };
        parts.extend([T(open), T("(")]);
        for (i, frag) in frags.iter().enumerate() {
            if i > 0 {
                parts.push(T(sep));
            }
            parts.push(F(frag));
        }
        parts.extend([T(")"), T(close)]);
        Ok(join(&parts, ty))
    }
}

/// A literal: a typed placeholder, or `NULL` (NaN is null).
fn literal(value: &Value) -> Frag {
    let ty = Ty::of_literal(value);
    if ty.is_null() {
        Frag::constant("NULL", ty)
    } else {
        Frag::new(format!("?::{}", literal_type(value)), vec![value.clone()], ty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_core::odata;
    use sync_core::query::OrderBy;

    struct Schema;

    impl FilterSchema for Schema {
        fn column(&self, name: &str) -> Option<(ColumnType, bool)> {
            Some(match name {
                "id" | "s" => (ColumnType::String, false),
                "os" => (ColumnType::String, true),
                "i" => (ColumnType::Int, false),
                "oi" | "oj" => (ColumnType::Int, true),
                "ob" => (ColumnType::Bool, true),
                "f" => (ColumnType::Float, false),
                "j" => (ColumnType::Json, true),
                _ => return None,
            })
        }
    }

    fn filter(text: &str) -> PgQuery {
        let expr = odata::parse_filter(text, Some(&Schema)).unwrap();
        count("T", &QuerySpec { filter: Some(expr), ..QuerySpec::default() }, &Schema).unwrap()
    }

    fn sql(text: &str) -> String {
        filter(text).sql.trim_start_matches("SELECT count(*) FROM \"T\" WHERE ").to_owned()
    }

    #[test]
    fn the_module_table_holds() {
        assert_eq!(sql("i eq 5"), "(\"i\" = $1::bigint)");
        assert_eq!(sql("oi eq 5"), "(\"oi\" = $1::bigint AND \"oi\" IS NOT NULL)");
        assert_eq!(sql("oi eq oj"), "(\"oi\" IS NOT DISTINCT FROM \"oj\")");
        assert_eq!(sql("oi ne 5"), "(\"oi\" IS DISTINCT FROM $1::bigint)");
        assert_eq!(sql("oi eq null"), "(\"oi\" IS NULL)");
        assert_eq!(sql("null eq null"), "TRUE");
        assert_eq!(sql("oi gt 5"), "(\"oi\" > $1::bigint AND \"oi\" IS NOT NULL)");
        assert_eq!(sql("s gt 'a'"), "(\"s\" COLLATE \"C\" > $1::text)");
        assert_eq!(sql("ob"), "(\"ob\" IS TRUE)");
        assert_eq!(sql("not ob"), "(NOT (\"ob\" IS TRUE))");
        assert_eq!(sql("startswith(os,'a')"), "COALESCE(starts_with(\"os\", $1::text), FALSE)");
        assert_eq!(sql("startswith(s,'a')"), "starts_with(\"s\", $1::text)");
        assert_eq!(sql("i eq 1 or i eq 2 or s eq 'x'"), "((\"i\" IN ($1::bigint, $2::bigint)) OR (\"s\" = $3::text))");
        assert_eq!(sql("oi eq 1 or oi eq 2"), "(\"oi\" IN ($1::bigint, $2::bigint) AND \"oi\" IS NOT NULL)");
        assert_eq!(sql("length(os) gt 2"), "COALESCE(((char_length(\"os\")::bigint) > $1::bigint), FALSE)");
        assert_eq!(sql("substring(s, 1) eq 'b'"), "(\"__sync_server_substring\"(\"s\", $1::bigint) = $2::text)");
        assert_eq!(sql("concat(s, null) eq null"), "((\"s\" || NULL::text) IS NULL)");
        assert_eq!(sql("f gt 1"), "(\"f\" > $1::bigint)");
    }

    #[test]
    fn keyset_paging_filters_state_their_lower_bound() {
        // What lets PostgreSQL start the index scan at the cursor instead of filtering
        // the table from its start for every page.
        assert_eq!(
            sql("(s gt 'a') or ((s eq 'a') and (i gt 3))"),
            "((\"s\" COLLATE \"C\" >= $1::text) AND ((\"s\" COLLATE \"C\" > $2::text) OR ((\"s\" = $3::text) AND (\"i\" > $4::bigint))))"
        );
        assert_eq!(sql("(s gt 'a') or (i gt 3)"), "((\"s\" COLLATE \"C\" > $1::text) OR (\"i\" > $2::bigint))");
    }

    #[test]
    fn literals_are_parameters_and_placeholders_are_numbered() {
        let q = filter("s eq 'a'' or 1 eq 1 --' and i ge 3 and s ne '?'");
        assert_eq!(q.sql.matches('$').count(), 3);
        assert!(!q.sql.contains("--") && !q.sql.contains('?'), "{}", q.sql);
        assert_eq!(q.params[0], Value::String("a' or 1 eq 1 --".into()));
        assert_eq!(q.params[2], Value::String("?".into()));
    }

    #[test]
    fn order_limit_and_offset() {
        let spec = QuerySpec {
            filter: None,
            order_by: vec![
                OrderBy { column: "oi".into(), descending: true },
                OrderBy { column: "s".into(), descending: false },
            ],
            limit: Some(10),
            offset: Some(u64::MAX),
        };
        let q = select("T", &["id", "s"], &spec, &Schema).unwrap();
        assert_eq!(
            q.sql,
            "SELECT \"id\", \"s\" FROM \"T\" ORDER BY \"oi\" DESC NULLS LAST, \"s\" ASC, \"id\" ASC \
             LIMIT $1::bigint OFFSET $2::bigint"
        );
        assert_eq!(q.params, [Value::Int(10), Value::Int(i64::MAX)]);
        let spec = QuerySpec { order_by: vec![OrderBy { column: "j".into(), descending: false }], ..spec };
        assert!(select("T", &["id"], &spec, &Schema).unwrap_err().contains("cannot be ordered"));
    }

    #[test]
    fn ill_typed_asts_are_refused() {
        let bad = [
            Expr::binary(BinaryOp::Eq, Expr::column("s"), Expr::literal(Value::Int(1))),
            Expr::column("s"),
            Expr::binary(BinaryOp::Gt, Expr::column("j"), Expr::literal(Value::Json(serde_json::json!(1)))),
            Expr::call(Func::Length, vec![Expr::column("i")]),
            Expr::call(Func::Length, vec![]),
            Expr::column("nope"),
        ];
        for expr in bad {
            let spec = QuerySpec { filter: Some(expr.clone()), ..QuerySpec::default() };
            assert!(count("T", &spec, &Schema).is_err(), "{expr:?}");
        }
    }

    #[test]
    fn functions_trim_unicode_white_space() {
        let ddl = function_ddl(true);
        assert!(ddl.contains("\\u0009") && ddl.contains("\\u3000") && ddl.contains("\\u0085"), "{ddl}");
        assert!(ddl.contains("COLLATE \"und-x-icu\""));
        assert!(!function_ddl(false).contains("und-x-icu"));
    }
}
