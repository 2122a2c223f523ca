//! Recursive-descent parser for `$filter` and `$orderby`, with the schema checks.
//!
//! ```text
//! filter     := or EOF
//! or         := and ("or" and)*                      left-associative, a loop
//! and        := not ("and" not)*                     left-associative, a loop
//! not        := "not" not | comparison
//! comparison := additive [("eq"|"ne"|"gt"|"ge"|"lt"|"le") additive]   not chainable
//! additive   := multiplicative (("add"|"sub") multiplicative)*          left-associative
//! multiplicative := primary (("mul"|"div"|"mod") primary)*            left-associative
//! primary    := "(" or ")" | literal | function "(" [or ("," or)*] ")"
//!             | "cast" "(" timestamp "," "Edm" "." "DateTimeOffset" ")" | column
//! ```
//!
//! Recursion happens only through parentheses, `not` and function arguments, and is
//! limited to [`MAX_NESTING`] levels; `and`/`or` chains are loops, and the depth of the
//! resulting tree is limited to [`MAX_DEPTH`] so that hostile text cannot build a tree
//! whose recursive drop or evaluation overflows the stack.

use crate::query::{BinaryOp, Expr, Func, OrderBy};
use crate::value::{ColumnType, Value};

use super::ODataError;
use super::lexer::{Lexer, Token, TokenKind, error, parse_timestamp};
use crate::query::FilterSchema;
use crate::query::typecheck::{self, Kind, Ty};

/// How deeply parentheses, `not` and function calls may nest.
pub(super) const MAX_NESTING: usize = 100;

/// How deep the parsed tree may be (an `or` chain of n terms is n + 1 deep).
pub(super) const MAX_DEPTH: usize = 2000;

/// Operator keywords that cannot be column names.
const RESERVED: [&str; 14] =
    ["and", "or", "not", "eq", "ne", "gt", "ge", "lt", "le", "add", "sub", "mul", "div", "mod"];

/// A parsed expression with its type, where it starts, and its tree depth.
struct Node {
    expr: Expr,
    ty: Ty,
    pos: usize,
    depth: usize,
}

pub(super) struct Parser<'a> {
    lexer: Lexer<'a>,
    peeked: Option<Token<'a>>,
    schema: Option<&'a dyn FilterSchema>,
    nesting: usize,
}

impl<'a> Parser<'a> {
    pub(super) fn new(text: &'a str, schema: Option<&'a dyn FilterSchema>) -> Self {
        Parser { lexer: Lexer::new(text), peeked: None, schema, nesting: 0 }
    }

    fn peek(&mut self) -> Result<&Token<'a>, ODataError> {
        let tok = match self.peeked.take() {
            Some(t) => t,
            None => self.lexer.next_token()?,
        };
        Ok(self.peeked.insert(tok))
    }

    fn next(&mut self) -> Result<Token<'a>, ODataError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lexer.next_token(),
        }
    }

    fn peek_ident(&mut self, word: &str) -> Result<bool, ODataError> {
        Ok(self.peek()?.is_ident(word))
    }

    fn expect(&mut self, kind: &TokenKind, what: &str) -> Result<Token<'a>, ODataError> {
        let tok = self.next()?;
        if &tok.kind == kind {
            Ok(tok)
        } else {
            Err(error(format!("expected {what}, found {}", tok.describe()), tok.pos))
        }
    }

    fn enter(&mut self, pos: usize) -> Result<(), ODataError> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(error(format!("the filter is nested too deeply (more than {MAX_NESTING} levels)"), pos));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.nesting -= 1;
    }

    fn checking(&self) -> bool {
        self.schema.is_some()
    }

    /// A whole `$filter`.
    pub(super) fn filter(mut self) -> Result<Expr, ODataError> {
        if self.peek()?.kind == TokenKind::Eof {
            return Err(error("empty filter", 0));
        }
        let node = self.or()?;
        let tok = self.next()?;
        if tok.kind != TokenKind::Eof {
            let expected = if tok.kind == TokenKind::RParen {
                "unbalanced `)`".to_owned()
            } else {
                format!("expected an operator or the end of the filter, found {}", tok.describe())
            };
            return Err(error(expected, tok.pos));
        }
        if self.checking() {
            typecheck::check_predicate(node.ty, "").map_err(|m| error(m, node.pos))?;
        }
        Ok(node.expr)
    }

    fn or(&mut self) -> Result<Node, ODataError> {
        let mut left = self.and()?;
        while self.peek_ident("or")? {
            let op = self.next()?;
            let right = self.and()?;
            left = self.connective(BinaryOp::Or, op.pos, left, right)?;
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Node, ODataError> {
        let mut left = self.not()?;
        while self.peek_ident("and")? {
            let op = self.next()?;
            let right = self.not()?;
            left = self.connective(BinaryOp::And, op.pos, left, right)?;
        }
        Ok(left)
    }

    fn connective(&mut self, op: BinaryOp, op_pos: usize, left: Node, right: Node) -> Result<Node, ODataError> {
        if self.checking() {
            for side in [&left, &right] {
                typecheck::check_predicate(side.ty, op.keyword()).map_err(|m| error(m, side.pos))?;
            }
        }
        let depth = left.depth.max(right.depth) + 1;
        if depth > MAX_DEPTH {
            return Err(error(format!("the filter is too complex (more than {MAX_DEPTH} levels)"), op_pos));
        }
        Ok(Node { expr: Expr::binary(op, left.expr, right.expr), ty: Ty::BOOL, pos: left.pos, depth })
    }

    fn not(&mut self) -> Result<Node, ODataError> {
        if !self.peek_ident("not")? {
            return self.comparison();
        }
        let tok = self.next()?;
        self.enter(tok.pos)?;
        let inner = self.not()?;
        self.leave();
        if self.checking() {
            typecheck::check_predicate(inner.ty, "not").map_err(|m| error(m, inner.pos))?;
        }
        Ok(Node { expr: inner.expr.negate(), ty: Ty::BOOL, pos: tok.pos, depth: inner.depth + 1 })
    }

    fn comparison_op(tok: &Token<'_>) -> Option<BinaryOp> {
        if tok.kind != TokenKind::Ident {
            return None;
        }
        Some(match tok.text {
            "eq" => BinaryOp::Eq,
            "ne" => BinaryOp::Ne,
            "gt" => BinaryOp::Gt,
            "ge" => BinaryOp::Ge,
            "lt" => BinaryOp::Lt,
            "le" => BinaryOp::Le,
            _ => return None,
        })
    }

    fn comparison(&mut self) -> Result<Node, ODataError> {
        let mut left = self.additive()?;
        let Some(op) = Self::comparison_op(self.peek()?) else {
            return Ok(left);
        };
        let op_tok = self.next()?;
        let mut right = self.additive()?;
        let after = self.peek()?;
        if Self::comparison_op(after).is_some() {
            return Err(error(
                format!("comparisons cannot be chained: add parentheses before {}", after.describe()),
                after.pos,
            ));
        }
        if self.checking() {
            json_literal(&mut left, &right)?;
            json_literal(&mut right, &left)?;
            typecheck::check_comparison(op, left.ty, right.ty).map_err(|m| error(m, op_tok.pos))?;
        }
        let depth = left.depth.max(right.depth) + 1;
        Ok(Node { expr: Expr::binary(op, left.expr, right.expr), ty: Ty::BOOL, pos: left.pos, depth })
    }

    /// The arithmetic operator of a token among `ops`, if it is one.
    fn arithmetic_op(tok: &Token<'_>, ops: &[BinaryOp]) -> Option<BinaryOp> {
        (tok.kind == TokenKind::Ident).then(|| ops.iter().copied().find(|op| op.keyword() == tok.text)).flatten()
    }

    fn additive(&mut self) -> Result<Node, ODataError> {
        let mut left = self.multiplicative()?;
        while let Some(op) = Self::arithmetic_op(self.peek()?, &[BinaryOp::Add, BinaryOp::Sub]) {
            let op_tok = self.next()?;
            let right = self.multiplicative()?;
            left = self.arithmetic(op, op_tok.pos, left, right)?;
        }
        Ok(left)
    }

    fn multiplicative(&mut self) -> Result<Node, ODataError> {
        let mut left = self.primary()?;
        while let Some(op) = Self::arithmetic_op(self.peek()?, &[BinaryOp::Mul, BinaryOp::Div, BinaryOp::Mod]) {
            let op_tok = self.next()?;
            let right = self.primary()?;
            left = self.arithmetic(op, op_tok.pos, left, right)?;
        }
        Ok(left)
    }

    fn arithmetic(&mut self, op: BinaryOp, op_pos: usize, left: Node, right: Node) -> Result<Node, ODataError> {
        if matches!(op, BinaryOp::Div | BinaryOp::Mod) && typecheck::is_zero_literal(&right.expr) {
            return Err(error(format!("`{}` by zero", op.keyword()), right.pos));
        }
        let mut ty = Ty { kind: Kind::Unknown, nullable: true };
        if self.checking() {
            ty = typecheck::check_arithmetic(op, left.ty, right.ty).map_err(|m| error(m, op_pos))?;
        }
        let depth = left.depth.max(right.depth) + 1;
        if depth > MAX_DEPTH {
            return Err(error(format!("the filter is too complex (more than {MAX_DEPTH} levels)"), op_pos));
        }
        Ok(Node { expr: Expr::binary(op, left.expr, right.expr), ty, pos: left.pos, depth })
    }

    fn literal(value: Value, pos: usize) -> Node {
        Node { ty: Ty::of_literal(&value), expr: Expr::literal(value), pos, depth: 1 }
    }

    fn primary(&mut self) -> Result<Node, ODataError> {
        let tok = self.next()?;
        let pos = tok.pos;
        match tok.kind {
            TokenKind::LParen => {
                self.enter(pos)?;
                let inner = self.or()?;
                self.leave();
                self.expect(&TokenKind::RParen, "`)`")?;
                Ok(Node { pos, ..inner })
            }
            TokenKind::Int(i) => Ok(Self::literal(Value::Int(i), pos)),
            TokenKind::Float(f) => Ok(Self::literal(Value::Float(f), pos)),
            TokenKind::Str(s) => Ok(Self::literal(Value::String(s), pos)),
            TokenKind::DateTime(t) => Ok(Self::literal(Value::datetime(t), pos)),
            TokenKind::Bytes(b) => Ok(Self::literal(Value::Bytes(b), pos)),
            TokenKind::Ident => match tok.text {
                "null" => Ok(Self::literal(Value::Null, pos)),
                "true" => Ok(Self::literal(Value::Bool(true), pos)),
                "false" => Ok(Self::literal(Value::Bool(false), pos)),
                "INF" => Ok(Self::literal(Value::Float(f64::INFINITY), pos)),
                "NaN" => Ok(Self::literal(Value::Float(f64::NAN), pos)),
                word if RESERVED.contains(&word) => {
                    Err(error(format!("expected a value, a column or a function, found `{word}`"), pos))
                }
                name => {
                    if self.peek()?.kind == TokenKind::LParen {
                        if name == "cast" { self.cast(pos) } else { self.call(name, pos) }
                    } else {
                        self.column(name, pos)
                    }
                }
            },
            _ => Err(error(format!("expected a value, a column or a function, found {}", tok.describe()), pos)),
        }
    }

    fn column(&mut self, name: &str, pos: usize) -> Result<Node, ODataError> {
        let ty = match self.schema {
            None => Ty::UNKNOWN,
            Some(schema) => match schema.column(name) {
                Some((ty, nullable)) => Ty::column(ty, nullable),
                None => return Err(error(format!("unknown column `{name}`"), pos)),
            },
        };
        Ok(Node { expr: Expr::column(name), ty, pos, depth: 1 })
    }

    fn call(&mut self, name: &str, pos: usize) -> Result<Node, ODataError> {
        let (func, swapped) = match name {
            "substringof" => (Func::Contains, true),
            _ => match typecheck::func_by_name(name) {
                Some(func) => (func, false),
                None => return Err(error(format!("unknown function `{name}`"), pos)),
            },
        };
        self.next()?; // `(`
        self.enter(pos)?;
        let mut args = Vec::new();
        if self.peek()?.kind == TokenKind::RParen {
            self.next()?;
        } else {
            loop {
                args.push(self.or()?);
                let tok = self.next()?;
                match tok.kind {
                    TokenKind::Comma => {}
                    TokenKind::RParen => break,
                    _ => {
                        return Err(error(format!("expected `,` or `)`, found {}", tok.describe()), tok.pos));
                    }
                }
            }
        }
        self.leave();
        typecheck::check_arity(func, name, args.len()).map_err(|m| error(m, pos))?;
        if swapped {
            args.reverse();
        }
        let mut ty = Ty::UNKNOWN;
        if self.checking() {
            let types: Vec<Ty> = args.iter().map(|a| a.ty).collect();
            ty = typecheck::check_call(func, name, &types).map_err(|(i, m)| error(m, args[i].pos))?;
        }
        let depth = args.iter().map(|a| a.depth).max().unwrap_or(0) + 1;
        let expr = Expr::call(func, args.into_iter().map(|a| a.expr).collect());
        Ok(Node { expr, ty, pos, depth })
    }

    /// `cast(<timestamp>, Edm.DateTimeOffset)`, `cast` already consumed.
    fn cast(&mut self, pos: usize) -> Result<Node, ODataError> {
        self.next()?; // `(`
        let tok = self.next()?;
        let t = match tok.kind {
            TokenKind::DateTime(t) => t,
            TokenKind::Str(ref s) => match parse_timestamp(s, false) {
                Some(t) => t,
                None => return Err(error("invalid timestamp in `cast`", tok.pos)),
            },
            _ => {
                return Err(error(format!("expected a timestamp in `cast`, found {}", tok.describe()), tok.pos));
            }
        };
        self.expect(&TokenKind::Comma, "`,`")?;
        let edm = self.expect(&TokenKind::Ident, "`Edm.DateTimeOffset`")?;
        self.expect(&TokenKind::Dot, "`.`")?;
        let ty = self.expect(&TokenKind::Ident, "`DateTimeOffset`")?;
        if edm.text != "Edm" || ty.text != "DateTimeOffset" {
            return Err(error(
                format!("unsupported cast to `{}.{}`: only Edm.DateTimeOffset is supported", edm.text, ty.text),
                edm.pos,
            ));
        }
        self.expect(&TokenKind::RParen, "`)`")?;
        Ok(Self::literal(Value::datetime(t), pos))
    }

    /// A whole `$orderby`.
    pub(super) fn order_by(mut self) -> Result<Vec<OrderBy>, ODataError> {
        let mut order = Vec::new();
        if self.peek()?.kind == TokenKind::Eof {
            return Ok(order);
        }
        loop {
            let tok = self.next()?;
            if tok.kind != TokenKind::Ident || RESERVED.contains(&tok.text) {
                return Err(error(format!("expected a column, found {}", tok.describe()), tok.pos));
            }
            if let Some(schema) = self.schema {
                match schema.column(tok.text) {
                    None => {
                        return Err(error(format!("unknown column `{}`", tok.text), tok.pos));
                    }
                    Some((ty, _)) if !ty.is_ordered() => {
                        return Err(error(format!("column `{}` of type {ty} cannot be ordered", tok.text), tok.pos));
                    }
                    Some(_) => {}
                }
            }
            let mut descending = false;
            if self.peek_ident("asc")? {
                self.next()?;
            } else if self.peek_ident("desc")? {
                self.next()?;
                descending = true;
            }
            order.push(OrderBy { column: tok.text.to_owned(), descending });
            let sep = self.next()?;
            match sep.kind {
                TokenKind::Comma => {}
                TokenKind::Eof => return Ok(order),
                _ => {
                    return Err(error(
                        format!("expected `asc`, `desc`, `,` or the end, found {}", sep.describe()),
                        sep.pos,
                    ));
                }
            }
        }
    }
}

/// With a schema, a string literal compared with a `json` column is that JSON (the
/// printer writes JSON literals as their text).
fn json_literal(node: &mut Node, other: &Node) -> Result<(), ODataError> {
    if other.ty.kind != Kind::Known(ColumnType::Json) {
        return Ok(());
    }
    if let Expr::Literal(Value::String(text)) = &node.expr {
        let json = serde_json::from_str(text)
            .map_err(|e| error(format!("invalid JSON in a literal compared with json: {e}"), node.pos))?;
        node.expr = Expr::literal(Value::Json(json));
        node.ty = Ty::column(ColumnType::Json, false);
    }
    Ok(())
}
