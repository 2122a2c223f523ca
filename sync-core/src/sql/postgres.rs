//! PostgreSQL: its [`Dialect`], and the column types and helper functions its tables
//! need (see `sync-server`'s PostgreSQL storage, which creates them).
//!
//! Every literal is a bound parameter with an explicit cast (`$1::bigint`), so its type
//! never depends on PostgreSQL's inference. Storage matches SQLite's: text, timestamps
//! (fixed-width UTC text) and JSON (its text) in `TEXT COLLATE "C"` columns, so
//! comparisons and `ORDER BY` go by code point, as the evaluator does; `ORDER BY` puts
//! nulls first ascending and last descending, as SQLite does (said only for nullable
//! columns: a `NULLS` clause an index does not have keeps the index from ordering). The
//! string functions map to PostgreSQL's (`starts_with`, `strpos`, `char_length`, `||`,
//! all counting characters) or to the SQL functions of [`function_ddl`]: `endswith`,
//! `substring` (the evaluator's 0-based clamping), `trim` (Unicode white space) and
//! `tolower`/`toupper` (full Unicode case mapping through the ICU root collation where
//! the server has ICU, so `'ß'` upper-cases to `'SS'`; without ICU the database's own
//! case mapping, which may differ from the evaluator's outside ASCII).
//!
//! Known difference: an `int` compared with a `float` is compared as a double (exact up
//! to 2^53; the evaluator is exact beyond that too).

use super::{ArgType, Dialect, FunctionSql, Words};
use crate::ColumnType;
use crate::query::{BinaryOp, Func};
use crate::value::Value;

/// The PostgreSQL dialect.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Postgres;

/// The most parameters one PostgreSQL statement can bind.
pub const MAX_PARAMS: usize = u16::MAX as usize;

static WORDS: Words = Words {
    name: "PostgreSQL",
    max_params: MAX_PARAMS,
    booleans: ["FALSE", "TRUE"],
    column_separator: ", ",
    null_safe_eq: [" IS NOT DISTINCT FROM ", " IS DISTINCT FROM "],
    // `IS NOT DISTINCT FROM` cannot use an index.
    plain_eq_on_nullable_column: true,
    text_order_collation: " COLLATE \"C\"",
    nulls_order: [" NULLS FIRST", " NULLS LAST"],
    // PostgreSQL flattens `a OR b OR c` into one list: no depth to worry about.
    chain_group: None,
    limit_in_text: false,
};

impl Dialect for Postgres {
    fn words(&self) -> &'static Words {
        &WORDS
    }

    fn placeholder(&self, out: &mut String, n: usize, arg: ArgType<'_>) {
        use std::fmt::Write as _;
        let _ = match arg {
            ArgType::Value(v) => write!(out, "${n}::{}", literal_type(v)),
            ArgType::List(v) => write!(out, "${n}::{}[]", literal_type(v)),
        };
    }

    fn long_in_list(&self, values: &[&Value]) -> Option<(&'static str, &'static str)> {
        // One array parameter, when every value binds as the same type.
        let first = literal_type(values.first()?);
        values.iter().all(|v| !v.is_null() && literal_type(v) == first).then_some((" = ANY(", ")"))
    }

    fn function(&self, func: Func) -> FunctionSql {
        match func {
            Func::StartsWith => FunctionSql::call("starts_with"),
            Func::EndsWith => FunctionSql::call(ENDS_WITH),
            Func::Contains => FunctionSql { name: "(strpos", separator: ", ", after: " > 0)" },
            Func::ToLower => FunctionSql::call(TO_LOWER),
            Func::ToUpper => FunctionSql::call(TO_UPPER),
            Func::Trim => FunctionSql::call(TRIM),
            Func::Length => FunctionSql { name: "(char_length", separator: ", ", after: "::bigint)" },
            Func::IndexOf => FunctionSql { name: "(strpos", separator: ", ", after: "::bigint - 1)" },
            Func::Substring => FunctionSql::call(SUBSTRING),
            Func::Concat => FunctionSql { name: "", separator: " || ", after: "" },
            Func::Replace => FunctionSql::call("replace"),
            Func::Floor => FunctionSql::call("floor"),
            Func::Ceiling => FunctionSql::call("ceil"),
            Func::Round => FunctionSql::call(ROUND),
            Func::Year => FunctionSql::call(YEAR),
            Func::Month => FunctionSql::call(MONTH),
            Func::Day => FunctionSql::call(DAY),
            Func::Hour => FunctionSql::call(HOUR),
            Func::Minute => FunctionSql::call(MINUTE),
            Func::Second => FunctionSql::call(SECOND),
        }
    }

    fn arithmetic(&self, op: BinaryOp) -> FunctionSql {
        FunctionSql::call(match op {
            BinaryOp::Add => ADD,
            BinaryOp::Sub => SUB,
            BinaryOp::Mul => MUL,
            BinaryOp::Div => DIV,
            _ => MOD,
        })
    }

    fn typed_null(&self, ty: ColumnType) -> &'static str {
        match ty {
            ColumnType::Int => "NULL::bigint",
            ColumnType::Float => "NULL::double precision",
            _ => "NULL::text",
        }
    }
}

#[cfg(any(test, feature = "postgres"))]
pub use binding::{PgArg, PgValue, bind, value_type};

/// Binding values with `postgres-types` (feature `postgres`).
#[cfg(any(test, feature = "postgres"))]
mod binding {
    use postgres_types::{IsNull, ToSql, Type, to_sql_checked};

    use crate::sql::{Arg, SqlQuery};
    use crate::value::Value;

    type BoxError = Box<dyn std::error::Error + Sync + Send>;

    /// A value bound as a parameter of the PostgreSQL type the statement expects
    /// (timestamps and JSON as text, as the tables store them; an integer into a
    /// `double precision` parameter as a float).
    #[derive(Debug)]
    pub struct PgValue<'a>(pub &'a Value);

    impl ToSql for PgValue<'_> {
        fn to_sql(&self, ty: &Type, out: &mut postgres_types::private::BytesMut) -> Result<IsNull, BoxError> {
            match (self.0, ty) {
                (Value::Null, _) => Ok(IsNull::Yes),
                (Value::Bool(b), &Type::BOOL) => b.to_sql(ty, out),
                (Value::Int(i), &Type::INT8) => i.to_sql(ty, out),
                (Value::Int(i), &Type::FLOAT8) => (*i as f64).to_sql(ty, out),
                (Value::Float(f), &Type::FLOAT8) => f.to_sql(ty, out),
                (Value::String(s), &Type::TEXT) => s.as_str().to_sql(ty, out),
                (Value::DateTime(t), &Type::TEXT) => crate::datetime::format(*t).as_str().to_sql(ty, out),
                (Value::Json(j), &Type::TEXT) => j.to_string().as_str().to_sql(ty, out),
                (Value::Bytes(b), &Type::BYTEA) => b.as_slice().to_sql(ty, out),
                (v, ty) => Err(format!("cannot bind {:?} as {ty}", v.column_type()).into()),
            }
        }

        fn accepts(_: &Type) -> bool {
            true
        }

        to_sql_checked!();
    }

    /// A compiled query's argument as a parameter: a value, or a list bound as an array.
    #[derive(Debug)]
    pub enum PgArg<'a> {
        /// One value.
        One(PgValue<'a>),
        /// A list, bound as an array of its values' type.
        List(Vec<PgValue<'a>>),
    }

    impl ToSql for PgArg<'_> {
        fn to_sql(&self, ty: &Type, out: &mut postgres_types::private::BytesMut) -> Result<IsNull, BoxError> {
            match self {
                PgArg::One(v) => v.to_sql(ty, out),
                PgArg::List(vs) => vs.to_sql(ty, out),
            }
        }

        fn accepts(_: &Type) -> bool {
            true
        }

        to_sql_checked!();
    }

    /// The PostgreSQL type a value is bound as: the cast its placeholder names
    /// ([`super::literal_type`]).
    pub fn value_type(value: &Value) -> Type {
        match value {
            Value::Bool(_) => Type::BOOL,
            Value::Int(_) => Type::INT8,
            Value::Float(_) => Type::FLOAT8,
            Value::Bytes(_) => Type::BYTEA,
            Value::Null | Value::String(_) | Value::DateTime(_) | Value::Json(_) => Type::TEXT,
        }
    }

    /// A compiled query's arguments, each with the type its placeholder's cast names
    /// (for `query_typed`).
    pub fn bind(query: &SqlQuery) -> Vec<(PgArg<'_>, Type)> {
        query
            .params
            .iter()
            .map(|arg| match arg {
                Arg::Value(v) => (PgArg::One(PgValue(v)), value_type(v)),
                Arg::List(vs) => {
                    let ty = match vs.first().map(value_type) {
                        Some(Type::BOOL) => Type::BOOL_ARRAY,
                        Some(Type::INT8) => Type::INT8_ARRAY,
                        Some(Type::FLOAT8) => Type::FLOAT8_ARRAY,
                        Some(Type::BYTEA) => Type::BYTEA_ARRAY,
                        _ => Type::TEXT_ARRAY,
                    };
                    (PgArg::List(vs.iter().map(PgValue).collect()), ty)
                }
            })
            .collect()
    }
}

/// The PostgreSQL type a literal is bound as (its placeholder's cast).
pub fn literal_type(value: &Value) -> &'static str {
    match value {
        Value::Null | Value::String(_) | Value::DateTime(_) | Value::Json(_) => "text",
        Value::Bool(_) => "boolean",
        Value::Int(_) => "bigint",
        Value::Float(_) => "double precision",
        Value::Bytes(_) => "bytea",
    }
}

/// The SQL type of a column: text-like types in the `"C"` collation (code point order).
pub fn column_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::String | ColumnType::DateTime | ColumnType::Json => "TEXT COLLATE \"C\"",
        ColumnType::Bool => "BOOLEAN",
        ColumnType::Int => "BIGINT",
        ColumnType::Float => "DOUBLE PRECISION",
        ColumnType::Bytes => "BYTEA",
    }
}

/// What `information_schema.columns.data_type` says for a column of this type.
pub fn information_schema_type(ty: ColumnType) -> &'static str {
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
const ROUND: &str = "\"__sync_server_round\"";
const ADD: &str = "\"__sync_server_add\"";
const SUB: &str = "\"__sync_server_sub\"";
const MUL: &str = "\"__sync_server_mul\"";
const DIV: &str = "\"__sync_server_div\"";
const MOD: &str = "\"__sync_server_mod\"";
const YEAR: &str = "\"__sync_server_year\"";
const MONTH: &str = "\"__sync_server_month\"";
const DAY: &str = "\"__sync_server_day\"";
const HOUR: &str = "\"__sync_server_hour\"";
const MINUTE: &str = "\"__sync_server_minute\"";
const SECOND: &str = "\"__sync_server_second\"";

/// The SQL functions compiled queries call, created (or replaced) in the schema of the
/// tables. They are `STRICT` (a null argument gives null, as in the evaluator) and
/// `IMMUTABLE`. `icu`: whether the server has the ICU root collation `und-x-icu`.
pub fn function_ddl(icu: bool) -> String {
    let attrs = "LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE";
    let collate = if icu { " COLLATE \"und-x-icu\"" } else { "" };
    // Rust's `char::is_whitespace` (Unicode White_Space), which the evaluator trims.
    let white: String =
        ('\0'..=char::MAX).filter(|c| c.is_whitespace()).map(|c| format!("\\u{:04X}", c as u32)).collect();
    // `substr` is 1-based and takes int4: clamp the evaluator's 0-based positions.
    let max = i32::MAX;
    let mut ddl = format!(
        "CREATE OR REPLACE FUNCTION {ENDS_WITH}(s text, part text) RETURNS boolean {attrs} \
             AS $$ SELECT right(s, char_length(part)) = part $$;\n\
         CREATE OR REPLACE FUNCTION {TO_LOWER}(s text) RETURNS text {attrs} AS $$ SELECT lower(s{collate}) $$;\n\
         CREATE OR REPLACE FUNCTION {TO_UPPER}(s text) RETURNS text {attrs} AS $$ SELECT upper(s{collate}) $$;\n\
         CREATE OR REPLACE FUNCTION {TRIM}(s text) RETURNS text {attrs} AS $$ SELECT btrim(s, E'{white}') $$;\n\
         CREATE OR REPLACE FUNCTION {SUBSTRING}(s text, i bigint) RETURNS text {attrs} \
             AS $$ SELECT substr(s, (LEAST(GREATEST(i, 0), {max} - 1) + 1)::integer) $$;\n\
         CREATE OR REPLACE FUNCTION {SUBSTRING}(s text, i bigint, n bigint) RETURNS text {attrs} \
             AS $$ SELECT substr(s, (LEAST(GREATEST(i, 0), {max} - 1) + 1)::integer, LEAST(GREATEST(n, 0), {max})::integer) $$;\n"
    );
    // Integer arithmetic as the evaluator does it: exact (through numeric), null on an
    // overflow or a zero divisor; `mod` of i64::MIN by -1 is 0 (PostgreSQL's `%`).
    // Float arithmetic is PostgreSQL's, with null for a zero divisor; a float overflow
    // is an error there (the evaluator's null: a known difference).
    let in_range = "r BETWEEN -9223372036854775808 AND 9223372036854775807";
    for (name, op) in [(ADD, "+"), (SUB, "-"), (MUL, "*")] {
        ddl.push_str(&format!(
            "CREATE OR REPLACE FUNCTION {name}(a bigint, b bigint) RETURNS bigint {attrs} \
                 AS $$ SELECT CASE WHEN {in_range} THEN r::bigint END FROM (SELECT a::numeric {op} b::numeric AS r) AS x $$;\n\
             CREATE OR REPLACE FUNCTION {name}(a double precision, b double precision) RETURNS double precision {attrs} \
                 AS $$ SELECT a {op} b $$;\n"
        ));
    }
    ddl.push_str(&format!(
        "CREATE OR REPLACE FUNCTION {DIV}(a bigint, b bigint) RETURNS bigint {attrs} \
             AS $$ SELECT CASE WHEN b = 0 OR (a = -9223372036854775808 AND b = -1) THEN NULL ELSE a / b END $$;\n\
         CREATE OR REPLACE FUNCTION {DIV}(a double precision, b double precision) RETURNS double precision {attrs} \
             AS $$ SELECT CASE WHEN b = 0 THEN NULL ELSE a / b END $$;\n\
         CREATE OR REPLACE FUNCTION {MOD}(a bigint, b bigint) RETURNS bigint {attrs} \
             AS $$ SELECT CASE WHEN b = 0 THEN NULL ELSE a % b END $$;\n\
         CREATE OR REPLACE FUNCTION {ROUND}(x double precision) RETURNS double precision {attrs} \
             AS $$ SELECT CASE WHEN abs(x - trunc(x)) >= 0.5 THEN trunc(x) + sign(x) ELSE trunc(x) END $$;\n"
    ));
    // Date parts of the stored fixed-width UTC text `YYYY-MM-DDTHH:MM:SS.mmmZ`; other
    // text (written by another program) gives null.
    let fixed = r"'^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$'";
    for (name, start, len) in
        [(YEAR, 1, 4), (MONTH, 6, 2), (DAY, 9, 2), (HOUR, 12, 2), (MINUTE, 15, 2), (SECOND, 18, 2)]
    {
        ddl.push_str(&format!(
            "CREATE OR REPLACE FUNCTION {name}(t text) RETURNS bigint {attrs} \
                 AS $$ SELECT CASE WHEN t ~ {fixed} THEN substr(t, {start}, {len})::bigint END $$;\n"
        ));
    }
    ddl
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::odata;
    use crate::query::FilterSchema;
    use crate::query::{BinaryOp, Expr, OrderBy, QuerySpec};
    use crate::sql::SqlQuery;

    type PgQuery = SqlQuery;

    fn select(table: &str, columns: &[&str], spec: &QuerySpec, schema: &dyn FilterSchema) -> Result<SqlQuery, String> {
        crate::sql::select(&Postgres, table, columns, spec, schema).map_err(|e| e.0)
    }

    fn count(table: &str, spec: &QuerySpec, schema: &dyn FilterSchema) -> Result<SqlQuery, String> {
        crate::sql::count(&Postgres, table, spec, schema).map_err(|e| e.0)
    }

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
