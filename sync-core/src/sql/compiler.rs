//! The one compiler: walks the AST, checks types ([`typecheck`]), and builds SQL as
//! pieces of text and parameters, asking the [`Dialect`] for what differs. Placeholders
//! are written once, at the end, in text order.

use std::borrow::Cow;

use super::{Arg, ArgType, Dialect, FunctionSql, QueryError, Result, push_ident, quote_ident};
use crate::ColumnType;
use crate::query::FilterSchema;
use crate::query::analysis::{self, OrTerm};
use crate::query::typecheck::{self, Kind, Ty};
use crate::query::{BinaryOp, Expr, Func, QuerySpec};
use crate::system::ID;
use crate::value::Value;

/// Where a parameter's value comes from. Literals stay borrowed, so that the
/// [`super::SelectCache`] can tell which literal of the filter each parameter is.
#[derive(Clone, Debug)]
pub(super) enum Param<'e> {
    /// A literal of the filter, as it is.
    Literal(&'e Value),
    /// A long `IN` list of literals, bound as one parameter.
    List(Vec<&'e Value>),
    /// The query's offset.
    Offset(i64),
    /// The query's row limit (where the dialect binds it).
    Limit(i64),
}

impl Param<'_> {
    fn arg_type(&self) -> ArgType<'_> {
        match self {
            Param::Literal(v) => ArgType::Value(v),
            Param::List(vs) => ArgType::List(vs.first().copied().unwrap_or(&Value::Null)),
            Param::Offset(_) | Param::Limit(_) => ArgType::Value(&INT),
        }
    }

    pub(super) fn into_arg(self) -> Arg {
        match self {
            Param::Literal(v) => Arg::Value(v.clone()),
            Param::List(vs) => Arg::List(vs.into_iter().cloned().collect()),
            Param::Offset(n) | Param::Limit(n) => Arg::Value(Value::Int(n)),
        }
    }
}

/// The type offsets and limits are bound as.
const INT: Value = Value::Int(0);

/// Compiled SQL: the text with its placeholders, and where each parameter comes from.
#[derive(Debug)]
pub(super) struct Compiled<'e> {
    pub(super) sql: String,
    pub(super) params: Vec<Param<'e>>,
}

impl Compiled<'_> {
    pub(super) fn into_query(self) -> super::SqlQuery {
        super::SqlQuery { sql: self.sql, params: self.params.into_iter().map(Param::into_arg).collect() }
    }
}

/// A piece of SQL being built.
#[derive(Clone, Debug)]
enum Piece<'e> {
    Text(Cow<'static, str>),
    Param(Param<'e>),
}

/// SQL being built, as pieces.
#[derive(Clone, Debug, Default)]
struct Pieces<'e>(Vec<Piece<'e>>);

impl<'e> Pieces<'e> {
    fn text(&mut self, text: impl Into<Cow<'static, str>>) {
        let text = text.into();
        match self.0.last_mut() {
            Some(Piece::Text(last)) => last.to_mut().push_str(&text),
            _ => self.0.push(Piece::Text(text)),
        }
    }

    fn param(&mut self, param: Param<'e>) {
        self.0.push(Piece::Param(param));
    }

    fn extend(&mut self, other: &Pieces<'e>) {
        for piece in &other.0 {
            match piece {
                Piece::Text(t) => self.text(t.clone()),
                Piece::Param(p) => self.param(p.clone()),
            }
        }
    }

    /// The text with the dialect's placeholders, numbered in text order.
    fn render(self, dialect: &dyn Dialect) -> Result<Compiled<'e>> {
        let mut sql = String::new();
        let mut params = Vec::new();
        for piece in self.0 {
            match piece {
                Piece::Text(t) => sql.push_str(&t),
                Piece::Param(p) => {
                    dialect.placeholder(&mut sql, params.len() + 1, p.arg_type());
                    params.push(p);
                }
            }
        }
        let words = dialect.words();
        if params.len() > words.max_params {
            return Err(QueryError(format!(
                "the query has {} parameters; {} binds at most {} (filter with fewer values)",
                params.len(),
                words.name,
                words.max_params
            )));
        }
        Ok(Compiled { sql, params })
    }
}

/// A compiled piece of SQL, its static type, and whether it is a bare column
/// reference (which can be repeated freely).
#[derive(Clone, Debug)]
struct Frag<'e> {
    sql: Pieces<'e>,
    ty: Ty,
    is_column: bool,
}

impl<'e> Frag<'e> {
    fn constant(sql: &'static str, ty: Ty) -> Frag<'e> {
        let mut pieces = Pieces::default();
        pieces.text(sql);
        Frag { sql: pieces, ty, is_column: false }
    }

    /// A placeholder bound to a literal (a null literal, NaN included, is `NULL`).
    fn literal(value: &'e Value) -> Frag<'e> {
        let ty = Ty::of_literal(value);
        if ty.is_null() {
            return Frag::constant("NULL", ty);
        }
        let mut pieces = Pieces::default();
        pieces.param(Param::Literal(value));
        Frag { sql: pieces, ty, is_column: false }
    }
}

enum Part<'f, 'e> {
    Text(&'static str),
    Frag(&'f Frag<'e>),
}

use Part::{Frag as F, Text as T};

/// Concatenates SQL text and fragments in order.
fn join<'e>(parts: &[Part<'_, 'e>], ty: Ty) -> Frag<'e> {
    let mut sql = Pieces::default();
    for part in parts {
        match part {
            Part::Text(t) => sql.text(*t),
            Part::Frag(f) => sql.extend(&f.sql),
        }
    }
    Frag { sql, ty, is_column: false }
}

/// `(t1 SEP t2 SEP ...)`.
fn connect<'e>(terms: &[Frag<'e>], sep: &'static str) -> Frag<'e> {
    let mut parts = vec![T("(")];
    for (i, term) in terms.iter().enumerate() {
        if i > 0 {
            parts.push(T(sep));
        }
        parts.push(F(term));
    }
    parts.push(T(")"));
    join(&parts, Ty::BOOL)
}

/// `<prefix> [WHERE ..] ORDER BY .. [LIMIT ..] [OFFSET ..]`.
pub(super) fn select<'e>(
    dialect: &dyn Dialect,
    prefix: &str,
    spec: &'e QuerySpec,
    schema: &dyn FilterSchema,
) -> Result<Compiled<'e>> {
    let mut sql = Pieces::default();
    sql.text(prefix.to_owned());
    where_clause(dialect, &mut sql, spec, schema)?;

    let mut order = String::from(" ORDER BY ");
    for term in &spec.order_by {
        let nullable = match schema.column(&term.column) {
            None => return Err(QueryError(format!("unknown column `{}` in the order", term.column))),
            Some((ty, _)) if !ty.is_ordered() => {
                return Err(QueryError(format!("column `{}` of type {ty} cannot be ordered", term.column)));
            }
            Some((_, nullable)) => nullable,
        };
        push_ident(&mut order, &term.column);
        order.push_str(if term.descending { " DESC" } else { " ASC" });
        if nullable {
            order.push_str(dialect.words().nulls_order[usize::from(term.descending)]);
        }
        order.push_str(", ");
    }
    if spec.order_by.iter().any(|t| t.column == ID) {
        order.truncate(order.len() - 2);
    } else {
        push_ident(&mut order, ID);
        order.push_str(" ASC");
    }
    sql.text(order);

    let limit = spec.limit.map(clamp);
    let offset = spec.offset.map(clamp);
    if dialect.words().limit_in_text {
        match (limit, offset) {
            (None, None) => {}
            (Some(limit), None) => sql.text(format!(" LIMIT {limit}")),
            (limit, Some(offset)) => {
                sql.text(format!(" LIMIT {} OFFSET ", limit.unwrap_or(-1)));
                sql.param(Param::Offset(offset));
            }
        }
    } else {
        if let Some(limit) = limit {
            sql.text(" LIMIT ");
            sql.param(Param::Limit(limit));
        }
        if let Some(offset) = offset {
            sql.text(" OFFSET ");
            sql.param(Param::Offset(offset));
        }
    }
    sql.render(dialect)
}

/// A limit or offset as the databases' 64-bit integer.
pub(super) fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `SELECT count(*) FROM <table> [WHERE ..]`.
pub(super) fn count<'e>(
    dialect: &dyn Dialect,
    table: &str,
    spec: &'e QuerySpec,
    schema: &dyn FilterSchema,
) -> Result<Compiled<'e>> {
    let mut sql = Pieces::default();
    sql.text(format!("SELECT count(*) FROM {}", quote_ident(table)));
    where_clause(dialect, &mut sql, spec, schema)?;
    sql.render(dialect)
}

/// A filter as a condition that is never NULL.
pub(super) fn condition<'e>(
    dialect: &dyn Dialect,
    filter: &'e Expr,
    schema: &dyn FilterSchema,
) -> Result<Compiled<'e>> {
    Compiler { dialect, schema }.predicate(filter, "")?.sql.render(dialect)
}

fn where_clause<'e>(
    dialect: &dyn Dialect,
    sql: &mut Pieces<'e>,
    spec: &'e QuerySpec,
    schema: &dyn FilterSchema,
) -> Result<()> {
    if let Some(filter) = &spec.filter {
        let cond = Compiler { dialect, schema }.predicate(filter, "")?;
        sql.text(" WHERE ");
        sql.extend(&cond.sql);
    }
    Ok(())
}

/// Whether values of this type compare as text.
fn is_text(ty: Ty) -> bool {
    matches!(ty.kind, Kind::Known(ColumnType::String | ColumnType::DateTime | ColumnType::Json))
}

struct Compiler<'s> {
    dialect: &'s dyn Dialect,
    schema: &'s dyn FilterSchema,
}

impl Compiler<'_> {
    fn words(&self) -> &'static super::Words {
        self.dialect.words()
    }

    fn boolean(&self, value: bool) -> &'static str {
        self.words().booleans[usize::from(value)]
    }

    fn yes(&self) -> &'static str {
        self.boolean(true)
    }

    fn no(&self) -> &'static str {
        self.boolean(false)
    }

    /// A boolean SQL expression that is never NULL. `connective` is the `and`/`or`/`not`
    /// this is an operand of, empty for the whole filter (for type errors).
    fn predicate<'e>(&self, expr: &'e Expr, connective: &str) -> Result<Frag<'e>> {
        match expr {
            Expr::Not(inner) => {
                let inner = self.predicate(inner, "not")?;
                Ok(join(&[T("(NOT "), F(&inner), T(")")], Ty::BOOL))
            }
            Expr::Binary { op: op @ (BinaryOp::And | BinaryOp::Or), .. } => {
                let frag = self.connective(expr, *op)?;
                if *op == BinaryOp::Or {
                    if let Some(bound) = self.implied_lower_bound(&analysis::operands(expr, *op))? {
                        return Ok(join(&[T("("), F(&bound), T(" AND "), F(&frag), T(")")], Ty::BOOL));
                    }
                }
                Ok(frag)
            }
            Expr::Binary { op, left, right } if op.is_comparison() => {
                let l = self.value(left)?;
                let r = self.value(right)?;
                self.compare(*op, l, r)
            }
            _ => {
                let frag = self.value(expr)?;
                typecheck::check_predicate(frag.ty, connective).map_err(QueryError)?;
                Ok(if frag.ty.is_null() {
                    Frag::constant(self.no(), Ty::BOOL)
                } else if frag.is_column {
                    let test = if frag.ty.nullable { " IS " } else { " = " };
                    let yes = self.yes();
                    let mut out = join(&[T("("), F(&frag), T(test)], Ty::BOOL);
                    out.sql.text(yes);
                    out.sql.text(")");
                    out
                } else if frag.ty.nullable {
                    self.coalesce_false(&frag)
                } else {
                    Frag { ty: Ty::BOOL, ..frag }
                })
            }
        }
    }

    /// `COALESCE(<frag>, false)`.
    fn coalesce_false<'e>(&self, frag: &Frag<'e>) -> Frag<'e> {
        let mut out = join(&[T("COALESCE("), F(frag), T(", ")], Ty::BOOL);
        out.sql.text(self.no());
        out.sql.text(")");
        out
    }

    /// `column >= literal`, when every term of an `or` chain implies it (see
    /// [`analysis::implied_lower_bound`]): the database then scans its index from there
    /// instead of from the start for every page of an incremental reader.
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
        // A database may limit the depth of an expression tree (SQLite: 1000) and parse
        // `a OR b OR c` as a left-deep tree: group long chains so that a large `is_in`
        // stays shallow. `AND`/`OR` of two-valued conditions are associative.
        loop {
            match <[Frag<'_>; 1]>::try_from(terms) {
                Ok([one]) => return Ok(Frag { ty: Ty::BOOL, ..one }),
                Err(many) if many.is_empty() => {
                    return Ok(Frag::constant(self.boolean(op == BinaryOp::And), Ty::BOOL));
                }
                Err(many) => {
                    let group = self.words().chain_group.unwrap_or(many.len()).max(2);
                    terms = many.chunks(group).map(|g| connect(g, sep)).collect();
                }
            }
        }
    }

    /// The terms of an `or` chain, where two or more `column eq <literal>` terms on the
    /// same column become one `"column" IN (..)` (what `is_in` builds; databases plan a
    /// long list of `=` terms slowly, an `IN` list quickly and with an index).
    fn or_terms<'e>(&self, terms: Vec<&'e Expr>) -> Result<Vec<Frag<'e>>> {
        analysis::group_or_terms(terms)
            .into_iter()
            .map(|term| match term {
                OrTerm::Term(term) => self.predicate(term, "or"),
                OrTerm::In(column, values) => self.in_list(column, values),
            })
            .collect()
    }

    fn in_list<'e>(&self, column: &str, values: Vec<&'e Value>) -> Result<Frag<'e>> {
        let col = self.column(column)?;
        if let [value] = values.as_slice() {
            return self.compare(BinaryOp::Eq, col, Frag::literal(value));
        }
        for value in &values {
            typecheck::check_comparison(BinaryOp::Eq, col.ty, Ty::of_literal(value)).map_err(QueryError)?;
        }
        let mut out = join(&[T("("), F(&col)], Ty::BOOL);
        match self.dialect.long_in_list(&values).filter(|_| values.len() > super::LONG_IN_LIST) {
            Some((before, after)) => {
                out.sql.text(before);
                out.sql.param(Param::List(values));
                out.sql.text(after);
            }
            None => {
                out.sql.text(" IN (");
                for (i, value) in values.into_iter().enumerate() {
                    if i > 0 {
                        out.sql.text(", ");
                    }
                    out.sql.param(Param::Literal(value));
                }
                out.sql.text(")");
            }
        }
        if col.ty.nullable {
            // `NULL IN (..)` is NULL; make it false.
            out = join(&[F(&out), T(" AND "), F(&col), T(" IS NOT NULL")], Ty::BOOL);
        }
        out.sql.text(")");
        Ok(out)
    }

    fn compare<'e>(&self, op: BinaryOp, l: Frag<'e>, r: Frag<'e>) -> Result<Frag<'e>> {
        typecheck::check_comparison(op, l.ty, r.ty).map_err(QueryError)?;
        if matches!(op, BinaryOp::Eq | BinaryOp::Ne) {
            let eq = op == BinaryOp::Eq;
            return Ok(match (l.ty.is_null(), r.ty.is_null()) {
                (true, true) => Frag::constant(self.boolean(eq), Ty::BOOL),
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
                        if eq
                            && self.words().plain_eq_on_nullable_column
                            && (l.is_column && l.ty.nullable || r.is_column && r.ty.nullable) =>
                    {
                        let col = if l.ty.nullable { &l } else { &r };
                        join(&[T("("), F(&l), T(" = "), F(&r), T(" AND "), F(col), T(" IS NOT NULL)")], Ty::BOOL)
                    }
                    _ => {
                        let sym = self.words().null_safe_eq[usize::from(!eq)];
                        join(&[T("("), F(&l), T(sym), F(&r), T(")")], Ty::BOOL)
                    }
                },
            });
        }
        if l.ty.is_null() || r.ty.is_null() {
            return Ok(Frag::constant(self.no(), Ty::BOOL));
        }
        let sym = match op {
            BinaryOp::Gt => " > ",
            BinaryOp::Ge => " >= ",
            BinaryOp::Lt => " < ",
            _ => " <= ",
        };
        // An explicit collation wins over the operands' own: code point order even
        // between two literals.
        let collate = if is_text(l.ty) { self.words().text_order_collation } else { "" };
        let nullable_sides: Vec<&Frag<'_>> = [&l, &r].into_iter().filter(|f| f.ty.nullable).collect();
        Ok(if nullable_sides.is_empty() {
            join(&[T("("), F(&l), T(collate), T(sym), F(&r), T(")")], Ty::BOOL)
        } else if nullable_sides.iter().all(|f| f.is_column) {
            // `x > ? AND x IS NOT NULL` keeps an index on x usable.
            let mut parts = vec![T("("), F(&l), T(collate), T(sym), F(&r)];
            for side in &nullable_sides {
                parts.extend([T(" AND "), F(side), T(" IS NOT NULL")]);
            }
            parts.push(T(")"));
            join(&parts, Ty::BOOL)
        } else {
            let inner = join(&[T("("), F(&l), T(collate), T(sym), F(&r), T(")")], Ty::BOOL);
            self.coalesce_false(&inner)
        })
    }

    /// SQL for a value (which may be NULL).
    fn value<'e>(&self, expr: &'e Expr) -> Result<Frag<'e>> {
        match expr {
            Expr::Column(name) => self.column(name),
            Expr::Literal(value) => Ok(Frag::literal(value)),
            Expr::Binary { op, left, right } if op.is_arithmetic() => self.arithmetic(*op, left, right),
            Expr::Not(_) | Expr::Binary { .. } => self.predicate(expr, ""),
            Expr::Call { func, args } => self.call(*func, args),
        }
    }

    /// `left op right` for an arithmetic operator: a function of the dialect's.
    fn arithmetic<'e>(&self, op: BinaryOp, left: &'e Expr, right: &'e Expr) -> Result<Frag<'e>> {
        if matches!(op, BinaryOp::Div | BinaryOp::Mod) && typecheck::is_zero_literal(right) {
            return Err(QueryError(format!("`{}` by zero", op.keyword())));
        }
        let mut l = self.value(left)?;
        let mut r = self.value(right)?;
        let ty = typecheck::check_arithmetic(op, l.ty, r.ty).map_err(QueryError)?;
        let result = match ty.kind {
            Kind::Null => return Ok(Frag::constant("NULL", ty)),
            // Two strings: their concatenation, `||` in both databases.
            Kind::Known(ColumnType::String) => {
                for side in [&mut l, &mut r] {
                    if side.ty.is_null() {
                        *side = Frag::constant(self.dialect.typed_null(ColumnType::String), side.ty);
                    }
                }
                return Ok(join(&[T("("), F(&l), T(" || "), F(&r), T(")")], ty));
            }
            Kind::Known(t) => t,
            Kind::Unknown => ColumnType::Float,
        };
        for side in [&mut l, &mut r] {
            if side.ty.is_null() {
                // Some databases need the type of a null to pick the function.
                *side = Frag::constant(self.dialect.typed_null(result), side.ty);
            }
        }
        let shape = self.dialect.arithmetic(op);
        Ok(join(&[T(shape.name), T("("), F(&l), T(shape.separator), F(&r), T(")"), T(shape.after)], ty))
    }

    fn column<'e>(&self, name: &str) -> Result<Frag<'e>> {
        match self.schema.column(name) {
            Some((ty, nullable)) => {
                let mut sql = Pieces::default();
                sql.text(quote_ident(name));
                Ok(Frag { sql, ty: Ty::column(ty, nullable), is_column: true })
            }
            None => Err(QueryError(format!("unknown column `{name}`"))),
        }
    }

    fn call<'e>(&self, func: Func, args: &'e [Expr]) -> Result<Frag<'e>> {
        typecheck::check_arity(func, func.name(), args.len()).map_err(QueryError)?;
        let mut args = args.iter().map(|a| self.value(a)).collect::<Result<Vec<_>>>()?;
        let types: Vec<Ty> = args.iter().map(|a| a.ty).collect();
        let ty = typecheck::check_call(func, func.name(), &types).map_err(|(_, m)| QueryError(m))?;
        if typecheck::is_rounding(func) && ty.kind == Kind::Known(ColumnType::Int) {
            // An integer is already whole.
            let mut arg = args.remove(0);
            arg.is_column = false;
            return Ok(join(&[T("("), F(&arg), T(")")], ty));
        }
        let (params, _, _) = typecheck::signature(func);
        for (arg, param) in args.iter_mut().zip(params) {
            if arg.ty.is_null() {
                // Some databases need the type of a null to pick the function.
                *arg = Frag::constant(self.dialect.typed_null(*param), arg.ty);
            }
        }
        let shape = match func {
            Func::Concat => FunctionSql { name: "", separator: " || ", after: "" },
            _ => self.dialect.function(func),
        };
        let mut parts = vec![T(shape.name), T("(")];
        for (i, arg) in args.iter().enumerate() {
            if i > 0 {
                parts.push(T(shape.separator));
            }
            parts.push(F(arg));
        }
        parts.extend([T(")"), T(shape.after)]);
        Ok(join(&parts, ty))
    }
}
