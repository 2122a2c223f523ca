//! Compiled `SELECT`s kept by the shape of their query, so that an app asking the same
//! query with other values (`rank < 17`, then `rank < 42`) compiles it once.
//!
//! The SQL text the compiler makes for a filter without `or` depends only on the
//! filter's tree, its columns and functions, and the static type of each literal
//! ([`Ty::of_literal`]: `null` and NaN are the null literal); the order, the limit and
//! whether there is an offset do the rest. That is the shape. An `or` chain is left
//! out: its SQL also depends on the literals' values (an `IN` list groups non-null
//! equalities; the implied lower bound of a keyset filter needs equal literals); so is
//! a literal divisor (zero is refused).
//!
//! A compiled shape remembers, for each parameter, which literal of the filter (in
//! pre-order) it is, so a query of that shape gets its parameters from its own
//! literals. Compiling cost several microseconds of a 100-row indexed query (`cargo bench
//! -p sync-bench -- query`).

use std::collections::HashMap;
use std::sync::Arc;

use super::compiler::{self, Param};
use super::{Arg, Dialect, Result};
use crate::query::FilterSchema;
use crate::query::typecheck::{Kind, Ty};
use crate::query::{BinaryOp, Expr, QuerySpec};
use crate::value::Value;

/// How many shapes one cache keeps; past that it starts over. An app has a handful
/// of queries per table; a cache that keeps growing would only hold garbage.
const CAPACITY: usize = 64;

/// Filters with more literals than this are compiled every time (a long filter costs
/// more to run than to compile, and its key would cost to hash).
const MAX_LITERALS: usize = 64;

/// A query's SQL and its parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedSelect {
    /// The SQL, shared with the cache.
    pub sql: Arc<str>,
    /// One argument per placeholder, in order.
    pub params: Vec<Arg>,
}

/// The compiled `SELECT`s of one table, by shape.
#[derive(Debug, Default)]
pub struct SelectCache {
    shapes: HashMap<Vec<u8>, Template>,
}

/// A compiled shape.
#[derive(Debug)]
struct Template {
    sql: Arc<str>,
    params: Vec<Slot>,
}

impl Template {
    /// The SQL with the parameters of `spec` (of this shape; `literals` are its filter's).
    fn fill(&self, literals: &[&Value], spec: &QuerySpec) -> CachedSelect {
        let params = self
            .params
            .iter()
            .map(|slot| match *slot {
                Slot::Literal(i) => Arg::Value(literals[i].clone()),
                Slot::Offset => Arg::Value(Value::Int(compiler::clamp(spec.offset.unwrap_or(0)))),
                Slot::Limit => Arg::Value(Value::Int(compiler::clamp(spec.limit.unwrap_or(0)))),
            })
            .collect();
        CachedSelect { sql: Arc::clone(&self.sql), params }
    }
}

/// Where a parameter of a compiled shape comes from.
#[derive(Clone, Copy, Debug)]
enum Slot {
    /// The literal with this pre-order index.
    Literal(usize),
    /// The query's offset.
    Offset,
    /// The query's row limit (where the dialect binds it).
    Limit,
}

impl SelectCache {
    /// [`super::select`] after its prefix ([`super::select_prefix`]), from the cache when a
    /// query of this shape was compiled before. The result is exactly what compiling
    /// gives. One cache serves one dialect.
    pub fn select(
        &mut self,
        dialect: &dyn Dialect,
        prefix: &str,
        spec: &QuerySpec,
        schema: &dyn FilterSchema,
    ) -> Result<CachedSelect> {
        let shape = shape(spec);
        if let Some((key, literals)) = &shape {
            if let Some(template) = self.shapes.get(key) {
                return Ok(template.fill(literals, spec));
            }
        }

        let compiled = compiler::select(dialect, prefix, spec, schema)?;
        let (sql, params) = (compiled.sql, compiled.params);
        let sql: Arc<str> = sql.into();
        if let Some((key, literals)) = shape {
            // Every parameter must be a literal of the filter, the offset or the limit; a
            // list the compiler made cannot be taken from another query.
            let slots: Option<Vec<Slot>> = params
                .iter()
                .map(|p| match p {
                    Param::Literal(v) => literals.iter().position(|l| std::ptr::eq(*l, *v)).map(Slot::Literal),
                    Param::Offset(_) => Some(Slot::Offset),
                    Param::Limit(_) => Some(Slot::Limit),
                    Param::List(_) => None,
                })
                .collect();
            if let Some(slots) = slots {
                if self.shapes.len() >= CAPACITY {
                    self.shapes.clear();
                }
                self.shapes.insert(key, Template { sql: Arc::clone(&sql), params: slots });
            }
        }
        Ok(CachedSelect { sql, params: params.into_iter().map(Param::into_arg).collect() })
    }

    /// How many shapes are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shapes.len()
    }
}

/// The shape of a query as bytes, with its filter's literals in pre-order; `None` for
/// a query that is not cached (an `or` in the filter, or too many literals).
fn shape(spec: &QuerySpec) -> Option<(Vec<u8>, Vec<&Value>)> {
    let mut key = Vec::with_capacity(64);
    let mut literals = Vec::new();
    // Pre-order, left to right, without recursion (filters can be deep).
    let mut stack: Vec<&Expr> = spec.filter.iter().collect();
    while let Some(expr) = stack.pop() {
        match expr {
            Expr::Column(name) => {
                key.push(b'c');
                push_name(&mut key, name);
            }
            Expr::Literal(value) => {
                if literals.len() == MAX_LITERALS {
                    return None;
                }
                key.push(b'l');
                key.extend(ty_code(Ty::of_literal(value)));
                literals.push(value);
            }
            Expr::Not(inner) => {
                key.push(b'!');
                stack.push(inner);
            }
            Expr::Binary { op, left, right } => {
                // An `or`'s SQL depends on its values (see the module docs); so does a
                // literal divisor's: zero is refused.
                if *op == BinaryOp::Or
                    || matches!(op, BinaryOp::Div | BinaryOp::Mod) && matches!(**right, Expr::Literal(_))
                {
                    return None;
                }
                key.extend([b'b', *op as u8]);
                stack.push(right);
                stack.push(left);
            }
            Expr::Call { func, args } => {
                key.extend([b'f', *func as u8]);
                key.extend(u32::try_from(args.len()).ok()?.to_le_bytes());
                stack.extend(args.iter().rev());
            }
        }
    }
    for term in &spec.order_by {
        key.extend([b'o', u8::from(term.descending)]);
        push_name(&mut key, &term.column);
    }
    match spec.limit {
        Some(n) => {
            key.push(b'L');
            key.extend(n.to_le_bytes());
        }
        None => key.push(b'-'),
    }
    key.push(if spec.offset.is_some() { b'O' } else { b'-' });
    Some((key, literals))
}

fn push_name(key: &mut Vec<u8>, name: &str) {
    key.extend((name.len() as u64).to_le_bytes());
    key.extend(name.as_bytes());
}

/// A literal's static type as two bytes: kind and nullability.
fn ty_code(ty: Ty) -> [u8; 2] {
    let kind = match ty.kind {
        Kind::Null => 0xff,
        Kind::Unknown => 0xfe,
        Kind::Known(t) => t as u8,
    };
    [kind, u8::from(ty.nullable)]
}
