//! Tokens of OData `$filter` / `$orderby` text.

use time::OffsetDateTime;

use super::ODataError;

/// What a token is.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum TokenKind {
    /// A name: a column, a function, a keyword (`and`, `null`, ...).
    Ident,
    /// An integer literal.
    Int(i64),
    /// A decimal, exponent or suffixed number literal, `INF` spelled `-INF`.
    Float(f64),
    /// `'...'` or `guid'...'`.
    Str(String),
    /// `datetimeoffset'...'`, `datetime'...'` or a bare ISO timestamp.
    DateTime(OffsetDateTime),
    /// `X'...'` or `binary'...'`.
    Bytes(Vec<u8>),
    LParen,
    RParen,
    Comma,
    Dot,
    Eof,
}

/// A token, its text and its byte offset.
#[derive(Clone, Debug)]
pub(super) struct Token<'a> {
    pub(super) kind: TokenKind,
    pub(super) text: &'a str,
    pub(super) pos: usize,
}

impl Token<'_> {
    /// Whether this is the name `word`.
    pub(super) fn is_ident(&self, word: &str) -> bool {
        self.kind == TokenKind::Ident && self.text == word
    }

    /// The token for messages: "`eq`", "number `5`", "end of input".
    pub(super) fn describe(&self) -> String {
        match &self.kind {
            TokenKind::Ident => format!("`{}`", self.text),
            TokenKind::Int(_) | TokenKind::Float(_) => format!("number `{}`", self.text),
            TokenKind::Str(_) => "a string literal".to_owned(),
            TokenKind::DateTime(_) => "a timestamp literal".to_owned(),
            TokenKind::Bytes(_) => "a binary literal".to_owned(),
            TokenKind::LParen => "`(`".to_owned(),
            TokenKind::RParen => "`)`".to_owned(),
            TokenKind::Comma => "`,`".to_owned(),
            TokenKind::Dot => "`.`".to_owned(),
            TokenKind::Eof => "end of input".to_owned(),
        }
    }
}

pub(super) fn error(message: impl Into<String>, position: usize) -> ODataError {
    ODataError { message: message.into(), position }
}

/// Splits text into tokens, on demand.
#[derive(Debug)]
pub(super) struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl<'a> Lexer<'a> {
    pub(super) fn new(src: &'a str) -> Self {
        Lexer { src, pos: 0 }
    }

    fn byte(&self, at: usize) -> Option<u8> {
        self.src.as_bytes().get(at).copied()
    }

    fn token(&self, kind: TokenKind, start: usize) -> Token<'a> {
        Token { kind, text: &self.src[start..self.pos], pos: start }
    }

    /// The next token; `Eof` at the end (and again after it).
    pub(super) fn next_token(&mut self) -> Result<Token<'a>, ODataError> {
        let rest = &self.src[self.pos..];
        self.pos += rest.len() - rest.trim_start().len();
        let start = self.pos;
        let Some(b) = self.byte(start) else {
            return Ok(self.token(TokenKind::Eof, start));
        };
        let single = match b {
            b'(' => Some(TokenKind::LParen),
            b')' => Some(TokenKind::RParen),
            b',' => Some(TokenKind::Comma),
            b'.' => Some(TokenKind::Dot),
            _ => None,
        };
        if let Some(kind) = single {
            self.pos += 1;
            return Ok(self.token(kind, start));
        }
        if b == b'\'' {
            let s = self.string(start)?;
            return Ok(self.token(TokenKind::Str(s), start));
        }
        if b.is_ascii_digit() {
            if self.at_timestamp(start) {
                return self.timestamp(start);
            }
            return self.number(start);
        }
        if b == b'-' {
            match self.byte(start + 1) {
                Some(d) if d.is_ascii_digit() => return self.number(start),
                _ if self.src[start + 1..].starts_with("INF") && !self.byte(start + 4).is_some_and(is_ident_char) => {
                    self.pos = start + 4;
                    return Ok(self.token(TokenKind::Float(f64::NEG_INFINITY), start));
                }
                _ => return Err(error("unexpected `-`: only number literals take a sign", start)),
            }
        }
        if is_ident_start(b) {
            while self.byte(self.pos).is_some_and(is_ident_char) {
                self.pos += 1;
            }
            if self.byte(self.pos) == Some(b'\'') {
                return self.prefixed_literal(start);
            }
            return Ok(self.token(TokenKind::Ident, start));
        }
        let c = rest.trim_start().chars().next().unwrap_or('?');
        Err(error(format!("unexpected character `{c}`"), start))
    }

    /// A quoted string starting at `start` (the quote); `''` is a quote.
    fn string(&mut self, start: usize) -> Result<String, ODataError> {
        let mut out = String::new();
        let mut from = start + 1;
        loop {
            // A quote byte is never part of a multi-byte UTF-8 character.
            let Some(offset) = self.src[from..].find('\'') else {
                return Err(error("unterminated string literal", start));
            };
            let quote = from + offset;
            out.push_str(&self.src[from..quote]);
            if self.byte(quote + 1) == Some(b'\'') {
                out.push('\'');
                from = quote + 2;
            } else {
                self.pos = quote + 1;
                return Ok(out);
            }
        }
    }

    /// `prefix'...'`, the prefix already consumed.
    fn prefixed_literal(&mut self, start: usize) -> Result<Token<'a>, ODataError> {
        let prefix = &self.src[start..self.pos];
        let quote = self.pos;
        let body = self.string(quote)?;
        let kind = match prefix {
            "datetimeoffset" | "datetime" => match parse_timestamp(&body, true) {
                Some(t) => TokenKind::DateTime(t),
                None => return Err(invalid_timestamp(&body, quote + 1)),
            },
            "X" => match decode_hex(&body) {
                Some(b) => TokenKind::Bytes(b),
                None => return Err(error("invalid hex in binary literal", quote + 1)),
            },
            "binary" => match decode_base64(&body).or_else(|| decode_hex(&body)) {
                Some(b) => TokenKind::Bytes(b),
                None => {
                    return Err(error("invalid base64 or hex in binary literal", quote + 1));
                }
            },
            "guid" => TokenKind::Str(body),
            _ => return Err(error(format!("unknown literal prefix `{prefix}`"), start)),
        };
        Ok(self.token(kind, start))
    }

    /// Whether `YYYY-MM-DD` starts at `at`.
    fn at_timestamp(&self, at: usize) -> bool {
        let b = self.src.as_bytes();
        b.len() >= at + 10
            && b[at..at + 10]
                .iter()
                .enumerate()
                .all(|(i, c)| if i == 4 || i == 7 { *c == b'-' } else { c.is_ascii_digit() })
    }

    /// A bare ISO timestamp (OData v4 `dateTimeOffsetValue`).
    fn timestamp(&mut self, start: usize) -> Result<Token<'a>, ODataError> {
        while self
            .byte(self.pos)
            .is_some_and(|c| c.is_ascii_digit() || matches!(c, b'-' | b':' | b'.' | b'+' | b'T' | b't' | b'Z' | b'z'))
        {
            self.pos += 1;
        }
        let text = &self.src[start..self.pos];
        match parse_timestamp(text, false) {
            Some(t) => Ok(self.token(TokenKind::DateTime(t), start)),
            None => Err(invalid_timestamp(text, start)),
        }
    }

    /// `-?digits(.digits)?([eE][+-]?digits)?` and an optional type suffix.
    fn number(&mut self, start: usize) -> Result<Token<'a>, ODataError> {
        let digit = |lexer: &Self, at: usize| lexer.byte(at).is_some_and(|c| c.is_ascii_digit());
        if self.byte(self.pos) == Some(b'-') {
            self.pos += 1;
        }
        while digit(self, self.pos) {
            self.pos += 1;
        }
        let mut float = false;
        if self.byte(self.pos) == Some(b'.') && digit(self, self.pos + 1) {
            float = true;
            self.pos += 1;
            while digit(self, self.pos) {
                self.pos += 1;
            }
        }
        if matches!(self.byte(self.pos), Some(b'e' | b'E')) {
            let sign = usize::from(matches!(self.byte(self.pos + 1), Some(b'+' | b'-')));
            if digit(self, self.pos + 1 + sign) {
                float = true;
                self.pos += 1 + sign;
                while digit(self, self.pos) {
                    self.pos += 1;
                }
            }
        }
        let text = &self.src[start..self.pos];
        match self.byte(self.pos) {
            Some(b'm' | b'M' | b'd' | b'D' | b'f' | b'F') => {
                float = true;
                self.pos += 1;
            }
            Some(b'L' | b'l') if !float => self.pos += 1,
            _ => {}
        }
        if self.byte(self.pos).is_some_and(|c| is_ident_char(c) || c == b'.') {
            return Err(error(format!("invalid number `{}`", self.rest_of_word(start)), start));
        }
        let kind = if float {
            match text.parse::<f64>() {
                Ok(f) if f.is_finite() => TokenKind::Float(f),
                _ => return Err(error(format!("number `{text}` is out of range"), start)),
            }
        } else {
            match text.parse::<i64>() {
                Ok(i) => TokenKind::Int(i),
                Err(_) => {
                    return Err(error(format!("integer `{text}` does not fit in 64 bits"), start));
                }
            }
        };
        Ok(self.token(kind, start))
    }

    /// The text from `start` up to the next delimiter, for messages.
    fn rest_of_word(&self, start: usize) -> &'a str {
        let rest = &self.src[start..];
        let end = rest.find(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | ',' | '\'')).unwrap_or(rest.len());
        &rest[..end]
    }
}

fn invalid_timestamp(text: &str, position: usize) -> ODataError {
    let shown: String = text.chars().take(40).collect();
    error(format!("invalid timestamp `{shown}` (expected e.g. 2026-01-02T03:04:05.678Z)"), position)
}

/// An RFC 3339 timestamp in years 0-9999; `lenient` also takes one without an offset
/// (OData v2 `datetime'...'`), read as UTC.
pub(super) fn parse_timestamp(text: &str, lenient: bool) -> Option<OffsetDateTime> {
    let t = crate::datetime::parse(text).or_else(|| {
        let has_offset = text.ends_with(['Z', 'z']) || text.get(19..).is_some_and(|r| r.contains(['+', '-']));
        if !lenient || has_offset {
            return None;
        }
        crate::datetime::parse(&format!("{text}Z")).or_else(|| crate::datetime::parse(&format!("{text}:00Z")))
    })?;
    crate::datetime::in_range(t).then_some(t)
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            let hi = char::from(pair[0]).to_digit(16)?;
            let lo = char::from(pair[1]).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect()
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD].iter().find_map(|engine| engine.decode(text).ok())
}
