//! SQLite: its [`Dialect`], the SQL functions the compiled SQL calls
//! ([`register_functions`]), and switching a file to WAL. Both the client's store and
//! the server's SQLite storage run compiled SQL on connections prepared here.
//!
//! The string functions (`startswith`, `tolower`, `substring`, ...) are SQL functions
//! that [`register_functions`] installs; they share their Rust code with the evaluator
//! (case-sensitive, counting characters, full Unicode case mapping), so every
//! connection that runs compiled SQL must call it first. `concat` is SQLite's `||`.
//! SQLite sorts nulls first ascending and last descending, and text by its UTF-8 bytes
//! (code point order), as the evaluator does, so it needs no collation or `NULLS`
//! clause. It takes at most 32,766 parameters per statement.

use super::{Arg, ArgType, Dialect, FunctionSql, Words};
use crate::query::eval::{number_fn, text_fn};
use crate::query::{BinaryOp, Func};
use crate::value::Value;

/// The SQLite dialect.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sqlite;

const STARTS_WITH: &str = "sync_startswith";
const ENDS_WITH: &str = "sync_endswith";
const CONTAINS: &str = "sync_contains";
const TO_LOWER: &str = "sync_tolower";
const TO_UPPER: &str = "sync_toupper";
const TRIM: &str = "sync_trim";
const LENGTH: &str = "sync_length";
const INDEX_OF: &str = "sync_indexof";
const SUBSTRING: &str = "sync_substring";
const REPLACE: &str = "sync_replace";
const FLOOR: &str = "sync_floor";
const CEILING: &str = "sync_ceiling";
const ROUND: &str = "sync_round";
const ADD: &str = "sync_add";
const SUB: &str = "sync_sub";
const MUL: &str = "sync_mul";
const DIV: &str = "sync_div";
const MOD: &str = "sync_mod";
const YEAR: &str = "sync_year";
const MONTH: &str = "sync_month";
const DAY: &str = "sync_day";
const HOUR: &str = "sync_hour";
const MINUTE: &str = "sync_minute";
const SECOND: &str = "sync_second";
const ARITHMETIC: [(&str, BinaryOp); 5] =
    [(ADD, BinaryOp::Add), (SUB, BinaryOp::Sub), (MUL, BinaryOp::Mul), (DIV, BinaryOp::Div), (MOD, BinaryOp::Mod)];
const DATE_PARTS: [(&str, Func); 6] = [
    (YEAR, Func::Year),
    (MONTH, Func::Month),
    (DAY, Func::Day),
    (HOUR, Func::Hour),
    (MINUTE, Func::Minute),
    (SECOND, Func::Second),
];

static WORDS: Words = Words {
    name: "SQLite",
    max_params: 32_766,
    booleans: ["0", "1"],
    column_separator: ",",
    null_safe_eq: [" IS ", " IS NOT "],
    // `x IS ?` can use an index on x in SQLite.
    plain_eq_on_nullable_column: false,
    text_order_collation: "",
    nulls_order: ["", ""],
    chain_group: Some(64),
    limit_in_text: true,
};

impl Dialect for Sqlite {
    fn words(&self) -> &'static Words {
        &WORDS
    }

    fn placeholder(&self, out: &mut String, _n: usize, _arg: ArgType<'_>) {
        out.push('?');
    }

    fn long_in_list(&self, values: &[&Value]) -> Option<(&'static str, &'static str)> {
        // One JSON array read by `json_each`, when it holds exactly what SQLite stores
        // for each value (see `json_item`).
        values.iter().all(|v| json_item(v).is_some()).then_some((" IN (SELECT value FROM json_each(", "))"))
    }

    fn function(&self, func: Func) -> FunctionSql {
        FunctionSql::call(match func {
            Func::StartsWith => STARTS_WITH,
            Func::EndsWith => ENDS_WITH,
            Func::Contains => CONTAINS,
            Func::ToLower => TO_LOWER,
            Func::ToUpper => TO_UPPER,
            Func::Trim => TRIM,
            Func::Length => LENGTH,
            Func::IndexOf => INDEX_OF,
            Func::Substring => SUBSTRING,
            Func::Concat => return FunctionSql { name: "", separator: " || ", after: "" },
            Func::Replace => REPLACE,
            Func::Floor => FLOOR,
            Func::Ceiling => CEILING,
            Func::Round => ROUND,
            Func::Year => YEAR,
            Func::Month => MONTH,
            Func::Day => DAY,
            Func::Hour => HOUR,
            Func::Minute => MINUTE,
            Func::Second => SECOND,
        })
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

    fn typed_null(&self, _ty: crate::ColumnType) -> &'static str {
        "NULL"
    }
}

/// A value as an item of a JSON array whose `json_each` values equal what SQLite
/// stores for it: integers (and booleans as 0/1) as numbers, strings, timestamps in
/// their fixed-width form and JSON as its text; `None` for what is stored otherwise (a
/// float, whose text form might not round-trip; bytes; null).
fn json_item(value: &Value) -> Option<serde_json::Value> {
    Some(match value {
        Value::Bool(b) => serde_json::Value::from(i64::from(*b)),
        Value::Int(i) => serde_json::Value::from(*i),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::DateTime(t) => serde_json::Value::String(crate::datetime::format(*t)),
        Value::Json(j) => serde_json::Value::String(j.to_string()),
        Value::Null | Value::Float(_) | Value::Bytes(_) => return None,
    })
}

impl rusqlite::ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Arg::Value(v) => v.to_sql(),
            Arg::List(values) => {
                let items: Option<Vec<serde_json::Value>> = values.iter().map(json_item).collect();
                match items {
                    Some(items) => Ok(rusqlite::types::ToSqlOutput::Owned(rusqlite::types::Value::Text(
                        serde_json::Value::Array(items).to_string(),
                    ))),
                    None => Err(rusqlite::Error::ToSqlConversionFailure(
                        "a list parameter holds a value SQLite cannot take from JSON".into(),
                    )),
                }
            }
        }
    }
}

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

    // Not SQLite's `replace`, which gives its first argument for an empty pattern even
    // when the third is null.
    conn.create_scalar_function(REPLACE, 3, flags, |ctx| {
        Ok(match (text_arg(ctx, 0)?, text_arg(ctx, 1)?, text_arg(ctx, 2)?) {
            (Some(s), Some(find), Some(with)) => Some(text_fn::replace(s, find, with)),
            _ => None,
        })
    })?;
    for (name, op) in ARITHMETIC {
        conn.create_scalar_function(name, 2, flags, move |ctx| {
            Ok(to_sql_number(number_fn::arithmetic(op, &number_arg(ctx, 0), &number_arg(ctx, 1))))
        })?;
    }
    for (name, func) in [(FLOOR, Func::Floor), (CEILING, Func::Ceiling), (ROUND, Func::Round)] {
        conn.create_scalar_function(name, 1, flags, move |ctx| {
            Ok(to_sql_number(number_fn::rounding(func, &number_arg(ctx, 0))))
        })?;
    }
    for (name, func) in DATE_PARTS {
        conn.create_scalar_function(name, 1, flags, move |ctx| {
            Ok(text_arg(ctx, 0)?.and_then(crate::datetime::parse).map(|t| number_fn::date_part(func, t)))
        })?;
    }
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

/// A number argument as a [`Value`] (`Int` or `Float`); anything else is null.
fn number_arg(ctx: &rusqlite::functions::Context<'_>, i: usize) -> Value {
    use rusqlite::types::ValueRef;
    match ctx.get_raw(i) {
        ValueRef::Integer(n) => Value::Int(n),
        ValueRef::Real(f) => Value::Float(f),
        _ => Value::Null,
    }
}

/// A number result as SQLite's value.
fn to_sql_number(v: Value) -> rusqlite::types::Value {
    match v {
        Value::Int(i) => rusqlite::types::Value::Integer(i),
        Value::Float(f) => rusqlite::types::Value::Real(f),
        _ => rusqlite::types::Value::Null,
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
        ValueRef::Real(f) => crate::value::integral(f),
        _ => None,
    })
}
