//! The lexer: EQL text to tokens (keywords case-insensitive, backquoted and
//! dotted names, strings with their escapes, numbers, comments skipped).

use super::*;

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    /// An identifier or keyword; `tilde` is set when a `~` directly follows
    /// it (`in~`, `like~`, `name~(`). The text is taken from the span.
    Ident {
        tilde: bool,
    },
    /// A backquoted identifier, with the doubled backquotes resolved.
    QuotedIdent(String),
    /// A string literal with escapes resolved.
    Str(String),
    Int(i64),
    Float(f64),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Colon,
    Pipe,
    /// `!` on its own (missing-event stage marker).
    Bang,
    /// A lone `=`.
    Assign,
    /// `?` directly before a field name: an optional field.
    Question,
    /// `+ - * / %` (a `-` directly before a digit starts a number instead).
    Arith(ArithOp),
    Cmp(CmpOp),
    Eof,
}

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) span: Span,
}

/// Converts the query text into tokens, tracking line and column.
pub(super) struct Lexer<'a> {
    pub(super) src: &'a str,
    pub(super) pos: usize,
    pub(super) line: u32,
    pub(super) column: u32,
}

pub(super) fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '@'
}

pub(super) fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '@'
}

/// Shortens `s` to at most `max` characters for use in a message.
pub(super) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

impl<'a> Lexer<'a> {
    pub(super) fn new(src: &'a str) -> Self {
        Lexer { src, pos: 0, line: 1, column: 1 }
    }

    pub(super) fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    pub(super) fn peek_at(&self, n: usize) -> Option<char> {
        self.src[self.pos..].chars().nth(n)
    }

    pub(super) fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    /// Consume one character, updating line and column.
    pub(super) fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line = self.line.saturating_add(1);
            self.column = 1;
        } else {
            self.column = self.column.saturating_add(1);
        }
        Some(c)
    }

    /// A zero-length span at the current position.
    pub(super) fn here(&self) -> Span {
        Span { start: self.pos, end: self.pos, line: self.line, column: self.column }
    }

    /// `start` extended to the current position.
    pub(super) fn close(&self, start: Span) -> Span {
        Span { end: self.pos, ..start }
    }

    pub(super) fn error(&self, kind: RuleErrorKind, msg: impl Into<String>, span: Span) -> RuleError {
        RuleError::at(kind, msg, self.src, span)
    }

    pub(super) fn tokenize(mut self) -> Result<Vec<Token>, RuleError> {
        let mut tokens = Vec::new();
        loop {
            self.skip_trivia()?;
            let start = self.here();
            let Some(c) = self.peek() else {
                tokens.push(Token { tok: Tok::Eof, span: start });
                return Ok(tokens);
            };
            let tok = self.token(c, start)?;
            tokens.push(Token { tok, span: self.close(start) });
        }
    }

    /// Skip whitespace and comments.
    pub(super) fn skip_trivia(&mut self) -> Result<(), RuleError> {
        loop {
            match self.peek() {
                Some(' ' | '\t' | '\n' | '\r' | '\u{c}') => {
                    self.bump();
                }
                Some('/') if self.peek_at(1) == Some('/') => {
                    while let Some(c) = self.peek() {
                        if c == '\n' {
                            break;
                        }
                        self.bump();
                    }
                }
                Some('/') if self.peek_at(1) == Some('*') => {
                    let start = self.here();
                    self.bump();
                    self.bump();
                    loop {
                        if self.rest().starts_with("*/") {
                            self.bump();
                            self.bump();
                            break;
                        }
                        if self.bump().is_none() {
                            let span = Span { end: start.start + 2, ..start };
                            return Err(self.error(
                                RuleErrorKind::Syntax,
                                "unterminated comment: '/*' has no closing '*/'",
                                span,
                            ));
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// Lex one token starting with `c` at `start`.
    pub(super) fn token(&mut self, c: char, start: Span) -> Result<Tok, RuleError> {
        let single = |lx: &mut Self, tok: Tok| {
            lx.bump();
            Ok(tok)
        };
        match c {
            '(' => single(self, Tok::LParen),
            ')' => single(self, Tok::RParen),
            '[' => single(self, Tok::LBracket),
            ']' => single(self, Tok::RBracket),
            ',' => single(self, Tok::Comma),
            '.' => single(self, Tok::Dot),
            ':' => single(self, Tok::Colon),
            '=' => {
                self.bump();
                if self.peek() == Some('=') {
                    self.bump();
                    Ok(Tok::Cmp(CmpOp::Eq))
                } else {
                    Ok(Tok::Assign)
                }
            }
            '!' => {
                self.bump();
                if self.peek() == Some('=') {
                    self.bump();
                    Ok(Tok::Cmp(CmpOp::Ne))
                } else {
                    Ok(Tok::Bang)
                }
            }
            '<' | '>' => {
                self.bump();
                let eq = self.peek() == Some('=');
                if eq {
                    self.bump();
                }
                Ok(Tok::Cmp(match (c, eq) {
                    ('<', false) => CmpOp::Lt,
                    ('<', true) => CmpOp::Le,
                    ('>', false) => CmpOp::Gt,
                    _ => CmpOp::Ge,
                }))
            }
            '|' => {
                if self.peek_at(1) == Some('|') {
                    self.bump();
                    self.bump();
                    Err(self.error(
                        RuleErrorKind::Syntax,
                        "'||' is not an EQL operator; use 'or'",
                        self.close(start),
                    ))
                } else {
                    single(self, Tok::Pipe)
                }
            }
            '&' => {
                self.bump();
                if self.peek() == Some('&') {
                    self.bump();
                }
                Err(self.error(
                    RuleErrorKind::Syntax,
                    format!(
                        "'{}' is not an EQL operator; use 'and'",
                        &self.src[start.start..self.pos]
                    ),
                    self.close(start),
                ))
            }
            '"' => self.string(start),
            '?' => match self.peek_at(1) {
                Some('"') => self.raw_string(start),
                Some(n) if is_ident_start(n) || n == '`' => single(self, Tok::Question),
                _ => {
                    self.bump();
                    Err(self.error(
                        RuleErrorKind::Syntax,
                        "unexpected character '?'",
                        self.close(start),
                    ))
                }
            },
            '\'' => {
                self.bump();
                Err(self.error(
                    RuleErrorKind::Syntax,
                    "single-quoted strings are not supported; use double quotes (\"…\")",
                    self.close(start),
                ))
            }
            '`' => self.quoted_ident(start),
            '-' if self.peek_at(1).is_some_and(|d| d.is_ascii_digit()) => self.number(start),
            '0'..='9' => self.number(start),
            '+' => single(self, Tok::Arith(ArithOp::Add)),
            '-' => single(self, Tok::Arith(ArithOp::Sub)),
            '*' => single(self, Tok::Arith(ArithOp::Mul)),
            '/' => single(self, Tok::Arith(ArithOp::Div)),
            '%' => single(self, Tok::Arith(ArithOp::Mod)),
            c if is_ident_start(c) => {
                while self.peek().is_some_and(is_ident_char) {
                    self.bump();
                }
                let tilde = self.peek() == Some('~');
                if tilde {
                    self.bump();
                }
                Ok(Tok::Ident { tilde })
            }
            '~' => {
                self.bump();
                Err(self.error(
                    RuleErrorKind::Syntax,
                    "unexpected '~': it may only directly follow a function name or 'in', 'like', 'regex'",
                    self.close(start),
                ))
            }
            other => {
                self.bump();
                Err(self.error(
                    RuleErrorKind::Syntax,
                    format!("unexpected character '{}'", other.escape_debug()),
                    self.close(start),
                ))
            }
        }
    }

    pub(super) fn unterminated_string(&self, start: Span) -> RuleError {
        self.error(
            RuleErrorKind::Syntax,
            "unterminated string: no closing '\"' on this line (use \"\"\"…\"\"\" for text spanning lines)",
            Span { end: start.start + 1, ..start },
        )
    }

    /// `"…"` with escapes, or `"""…"""`.
    pub(super) fn string(&mut self, start: Span) -> Result<Tok, RuleError> {
        if self.rest().starts_with("\"\"\"") {
            return self.triple_string(start);
        }
        self.bump(); // opening quote
        let mut value = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.unterminated_string(start));
            };
            match c {
                '"' => {
                    self.bump();
                    return Ok(Tok::Str(value));
                }
                '\n' | '\r' => return Err(self.unterminated_string(start)),
                '\\' => {
                    let esc_start = self.here();
                    self.bump();
                    let Some(e) = self.peek() else {
                        return Err(self.unterminated_string(start));
                    };
                    if e == '\n' || e == '\r' {
                        return Err(self.unterminated_string(start));
                    }
                    self.bump();
                    let resolved = match e {
                        '"' => '"',
                        '\\' => '\\',
                        '/' => '/',
                        'n' => '\n',
                        'r' => '\r',
                        't' => '\t',
                        'b' => '\u{8}',
                        'f' => '\u{c}',
                        'u' => self.unicode_escape(esc_start)?,
                        other => {
                            return Err(self.error(
                                RuleErrorKind::Syntax,
                                format!(
                                    "invalid escape sequence '\\{}' (valid escapes: \\\" \\\\ \\/ \\n \\r \\t \\b \\f \\u{{…}})",
                                    other.escape_debug()
                                ),
                                self.close(esc_start),
                            ))
                        }
                    };
                    value.push(resolved);
                }
                other => {
                    self.bump();
                    value.push(other);
                }
            }
        }
    }

    /// The rest of `\u{XXXX}` after the `u`; `esc_start` is the backslash.
    pub(super) fn unicode_escape(&mut self, esc_start: Span) -> Result<char, RuleError> {
        let bad = |lx: &Self, msg: &str| lx.error(RuleErrorKind::Syntax, msg, lx.close(esc_start));
        if self.peek() != Some('{') {
            return Err(bad(
                self,
                "invalid unicode escape: expected '{' after '\\u' (write \\u{XXXX})",
            ));
        }
        self.bump();
        let mut digits = String::new();
        while let Some(d) = self.peek() {
            if !d.is_ascii_hexdigit() {
                break;
            }
            self.bump();
            digits.push(d);
            if digits.len() > 8 {
                return Err(bad(self, "invalid unicode escape: more than 8 hex digits"));
            }
        }
        if digits.is_empty() {
            return Err(bad(
                self,
                "invalid unicode escape: expected 1 to 8 hex digits after '\\u{'",
            ));
        }
        if self.peek() != Some('}') {
            return Err(bad(self, "invalid unicode escape: expected '}' after the hex digits"));
        }
        self.bump();
        u32::from_str_radix(&digits, 16).ok().and_then(char::from_u32).ok_or_else(|| {
            bad(self, &format!("invalid unicode escape: U+{digits} is not a valid character"))
        })
    }

    /// `"""…"""`: raw, may span lines; up to two extra quotes before the
    /// closing `"""` belong to the text.
    pub(super) fn triple_string(&mut self, start: Span) -> Result<Tok, RuleError> {
        let content_start = self.pos + 3;
        let Some(close) = self.src[content_start..].find("\"\"\"") else {
            return Err(self.error(
                RuleErrorKind::Syntax,
                "unterminated string: '\"\"\"' has no closing '\"\"\"'",
                Span { end: start.start + 3, ..start },
            ));
        };
        let mut content_end = content_start + close;
        let after = &self.src[content_end + 3..];
        let extra = after.bytes().take(2).take_while(|&b| b == b'"').count();
        content_end += extra;
        let value = self.src[content_start..content_end].to_string();
        let end = content_end + 3;
        while self.pos < end {
            self.bump();
        }
        Ok(Tok::Str(value))
    }

    /// `?"…"`: raw, single line, ends at the next `"`.
    pub(super) fn raw_string(&mut self, start: Span) -> Result<Tok, RuleError> {
        self.bump(); // ?
        self.bump(); // "
        let mut value = String::new();
        loop {
            match self.peek() {
                None | Some('\n' | '\r') => {
                    return Err(self.error(
                        RuleErrorKind::Syntax,
                        "unterminated string: no closing '\"' on this line",
                        Span { end: start.start + 2, ..start },
                    ))
                }
                Some('"') => {
                    self.bump();
                    return Ok(Tok::Str(value));
                }
                Some(c) => {
                    self.bump();
                    value.push(c);
                }
            }
        }
    }

    /// `` `name` `` with doubled backquotes standing for one.
    pub(super) fn quoted_ident(&mut self, start: Span) -> Result<Tok, RuleError> {
        self.bump();
        let mut value = String::new();
        loop {
            match self.bump() {
                None => {
                    return Err(self.error(
                        RuleErrorKind::Syntax,
                        "unterminated quoted field name: no closing '`'",
                        Span { end: start.start + 1, ..start },
                    ))
                }
                Some('`') => {
                    if self.peek() == Some('`') {
                        self.bump();
                        value.push('`');
                    } else {
                        break;
                    }
                }
                Some(c) => value.push(c),
            }
        }
        if value.is_empty() {
            return Err(self.error(
                RuleErrorKind::Syntax,
                "empty quoted field name",
                self.close(start),
            ));
        }
        Ok(Tok::QuotedIdent(value))
    }

    /// `-?digits(.digits)?([eE][+-]?digits)?`
    pub(super) fn number(&mut self, start: Span) -> Result<Tok, RuleError> {
        if self.peek() == Some('-') {
            self.bump();
        }
        let digits = |lx: &mut Self| {
            while lx.peek().is_some_and(|d| d.is_ascii_digit()) {
                lx.bump();
            }
        };
        digits(self);
        let mut float = false;
        if self.peek() == Some('.') && self.peek_at(1).is_some_and(|d| d.is_ascii_digit()) {
            float = true;
            self.bump();
            digits(self);
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            let exp_digit_at = if matches!(self.peek_at(1), Some('+' | '-')) { 2 } else { 1 };
            if self.peek_at(exp_digit_at).is_some_and(|d| d.is_ascii_digit()) {
                float = true;
                for _ in 0..exp_digit_at {
                    self.bump();
                }
                digits(self);
            }
        }
        let span = self.close(start);
        let text = &self.src[span.start..span.end];
        if float {
            match text.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(Tok::Float(v)),
                _ => Err(self.error(
                    RuleErrorKind::Syntax,
                    format!("number {} is out of range", truncate(text, 40)),
                    span,
                )),
            }
        } else {
            text.parse::<i64>().map(Tok::Int).map_err(|_| {
                self.error(
                    RuleErrorKind::Syntax,
                    format!(
                        "integer {} is out of range (a 64-bit signed integer is expected)",
                        truncate(text, 40)
                    ),
                    span,
                )
            })
        }
    }
}
