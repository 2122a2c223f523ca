//! Dialect-free facts about a filter that every SQL compiler uses the same way: the
//! terms of `and`/`or` chains, `or` chains of equalities that read as `IN` lists, and
//! the lower bound a keyset paging filter implies.

use super::{BinaryOp, Expr};
use crate::value::Value;

/// The operands of a left-nested chain of one connective, leftmost first, collected
/// without recursion: `((a or b) or c)` gives `[a, b, c]`, and `(a or (b or c))` gives
/// `[a, (b or c)]`: the shape the OData printer writes without parentheses. Repeated
/// `Query::filter` calls build such chains. For the operands of an n-ary `and`/`or`
/// whatever its shape, see [`operands`].
pub fn chain(expr: &Expr, op: BinaryOp) -> Vec<&Expr> {
    let mut terms = Vec::new();
    let mut current = expr;
    while let Expr::Binary { op: o, left, right } = current {
        if *o != op {
            break;
        }
        terms.push(&**right);
        current = left;
    }
    terms.push(current);
    terms.reverse();
    terms
}

/// Every operand of the connective `op` at the top of `expr`, however its nodes nest
/// (left, right or balanced, as `is_in` builds them), in order and without recursion:
/// `(a or b) or (c or (d and e))` gives `[a, b, c, (d and e)]`. `and` and `or` are
/// associative, so these are the operands of one n-ary `and`/`or`.
pub fn operands(expr: &Expr, op: BinaryOp) -> Vec<&Expr> {
    let mut out = Vec::new();
    let mut todo = vec![expr];
    while let Some(e) = todo.pop() {
        match e {
            Expr::Binary { op: o, left, right } if *o == op => {
                todo.push(right);
                todo.push(left);
            }
            other => out.push(other),
        }
    }
    out
}

/// `column eq literal` or `literal eq column`, with a non-null literal.
pub fn column_eq_literal(expr: &Expr) -> Option<(&str, &Value)> {
    let Expr::Binary { op: BinaryOp::Eq, left, right } = expr else {
        return None;
    };
    match (&**left, &**right) {
        (Expr::Column(c), Expr::Literal(v)) | (Expr::Literal(v), Expr::Column(c)) if !v.is_null() => Some((c, v)),
        _ => None,
    }
}

/// One term of an `or` chain after [`group_or_terms`].
#[derive(Debug, PartialEq)]
pub enum OrTerm<'e> {
    /// A term kept as it is.
    Term(&'e Expr),
    /// Every `column eq <literal>` term of the chain on one column (one or more values,
    /// in order): `"column" IN (..)` (what `is_in` builds).
    In(&'e str, Vec<&'e Value>),
}

/// The terms of an `or` chain, where the `column eq <literal>` terms on one column are
/// gathered into one [`OrTerm::In`] at the place of the first. `or` is commutative and
/// the terms are side-effect free, so the order does not change the result.
pub fn group_or_terms<'e>(terms: Vec<&'e Expr>) -> Vec<OrTerm<'e>> {
    let mut out: Vec<OrTerm<'e>> = Vec::new();
    let mut groups: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for term in terms {
        let Some((column, value)) = column_eq_literal(term) else {
            out.push(OrTerm::Term(term));
            continue;
        };
        match groups.get(column) {
            Some(&index) => {
                if let OrTerm::In(_, values) = &mut out[index] {
                    values.push(value);
                }
            }
            None => {
                groups.insert(column, out.len());
                out.push(OrTerm::In(column, vec![value]));
            }
        }
    }
    out
}

/// `column >= literal`, when every term of an `or` chain (two or more) implies it: each
/// term is `column gt|ge|eq literal`, or an `and` chain holding one, with the same column
/// and literal throughout. The keyset paging filter of a pull,
/// `(updatedAt gt T) or ((updatedAt eq T) and (id gt I))`, is such a chain. Databases
/// take neither branch of an `OR` as the range of an index scan (SQLite, PostgreSQL), so
/// without the bound they walk the `(updatedAt, id)` index from its start for every page
/// (quadratic in the table); stated, it starts the scan at `T`. The bound adds no row
/// and removes none. The caller still checks that the comparison type-checks.
pub fn implied_lower_bound<'e>(terms: &[&'e Expr]) -> Option<(&'e str, &'e Value)> {
    fn bounds(term: &Expr) -> Vec<(&str, &Value)> {
        operands(term, BinaryOp::And)
            .into_iter()
            .filter_map(|t| match t {
                Expr::Binary { op: BinaryOp::Gt | BinaryOp::Ge | BinaryOp::Eq, left, right } => {
                    match (&**left, &**right) {
                        (Expr::Column(c), Expr::Literal(v)) if !v.is_null() => Some((c.as_str(), v)),
                        _ => None,
                    }
                }
                _ => None,
            })
            .collect()
    }
    let (first, rest) = terms.split_first()?;
    if rest.is_empty() {
        return None;
    }
    let rest: Vec<Vec<(&str, &Value)>> = rest.iter().map(|t| bounds(t)).collect();
    bounds(first).into_iter().find(|b| rest.iter().all(|r| r.contains(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(filter: &str) -> Expr {
        crate::odata::parse_filter(filter, None).unwrap()
    }

    #[test]
    fn or_chains_of_equalities_group_by_column() {
        let e = parse("(a eq 1) or (b eq 2) or (x gt 3) or (a eq 4) or (5 eq b) or (a eq null)");
        let grouped = group_or_terms(operands(&e, BinaryOp::Or));
        let shown: Vec<String> = grouped
            .iter()
            .map(|t| match t {
                OrTerm::Term(e) => format!("term {}", crate::odata::print_filter(e, crate::ProtocolVersion::V3)),
                OrTerm::In(c, vs) => format!("{c} in {vs:?}"),
            })
            .collect();
        assert_eq!(
            shown,
            [
                "a in [Int(1), Int(4)]".to_owned(),
                "b in [Int(2), Int(5)]".to_owned(),
                "term (x gt 3)".to_owned(),
                "term (a eq null)".to_owned()
            ]
        );
    }

    #[test]
    fn operands_flatten_any_nesting_of_one_connective() {
        let e = parse("((a eq 1) or (b eq 2)) or ((c eq 3) or ((d eq 4) and (e eq 5)))");
        let shown: Vec<String> = operands(&e, BinaryOp::Or)
            .iter()
            .map(|t| crate::odata::print_filter(t, crate::ProtocolVersion::V3))
            .collect();
        assert_eq!(shown, ["(a eq 1)", "(b eq 2)", "(c eq 3)", "((d eq 4) and (e eq 5))"]);
        assert_eq!(chain(&e, BinaryOp::Or).len(), 3, "chain follows the left spine only");
    }

    #[test]
    fn paging_filters_imply_their_first_key() {
        let bound = |f: &str| {
            let e = parse(f);
            implied_lower_bound(&operands(&e, BinaryOp::Or)).map(|(c, v)| format!("{c} >= {v:?}"))
        };
        assert_eq!(bound("(t gt 5) or ((t eq 5) and (id gt 'r'))").as_deref(), Some("t >= Int(5)"));
        assert_eq!(bound("(t ge 5) or (t eq 5)").as_deref(), Some("t >= Int(5)"));
        // Every branch must imply the same bound.
        assert_eq!(bound("(t gt 5) or (s gt 'x')"), None);
        assert_eq!(bound("(t gt 5) or ((t eq 6) and (s gt 'x'))"), None);
        // A single term is its own bound; null bounds nothing.
        assert_eq!(bound("t gt 5"), None);
        assert_eq!(bound("(t gt null) or (t eq null)"), None);
    }
}
