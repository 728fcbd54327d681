//! A hand-written lexer and recursive-descent parser for the subset of
//! Elasticsearch EQL that Elastic's endpoint rules use.
//!
//! # Grammar
//!
//! Keywords are case-insensitive (`AND`, `Where`, `SEQUENCE` …). Whitespace
//! (space, tab, CR, LF, form feed), `// line` comments and `/* block */`
//! comments separate tokens. The reserved words `and any by false in join
//! like not null of or regex sample sequence true until where with` cannot be
//! bare field names or categories (backquote them: `` `by` ``), except as a
//! part after a dot (`a.in` is a field).
//!
//! ```text
//! query      := sequence | event_query
//! sequence   := 'sequence' seq_param* stage stage+          (at most 32 stages)
//! seq_param  := 'by' field (',' field)*                     (at most once)
//!             | 'with' 'maxspan' '=' INTEGER unit           (at most once)
//! unit       := 'ms' | 's' | 'm' | 'h' | 'd'
//! stage      := '[' event_query ']' ['by' field (',' field)*]
//! event_query:= category 'where' expr
//! category   := 'any' | IDENT | STRING                      ('any' means every category)
//!
//! expr       := and ('or' and)*
//! and        := not ('and' not)*
//! not        := 'not' not | predicate
//! predicate  := operand
//!             | operand ('==' | '!=' | '<' | '<=' | '>' | '>=') operand
//!             | operand ['not'] ('in' | 'in~') '(' list ')'
//!             | operand ['not'] ('like' | 'like~') values
//!             | operand ':' values
//! values     := operand | '(' list ')'
//! list       := expr (',' expr)*
//! operand    := '(' expr ')' | call | field | literal
//! call       := NAME ['~'] '(' [list] ')'                   (`~`: case-insensitive form)
//! field      := part ('.' part)*
//! part       := IDENT | '`' backquoted '`'                  (IDENT = [A-Za-z_@][A-Za-z0-9_@]*)
//! literal    := STRING | ['-'] NUMBER | 'true' | 'false' | 'null'
//! ```
//!
//! Strings are `"…"` with the escapes `\" \\ \n \r \t \b \f \/ \u{X…}` (1–8
//! hex digits naming a Unicode scalar value) and may not span lines;
//! `"""…"""` raw strings (no escapes, may span lines, and may end in up to
//! two extra `"` that belong to the text); and `?"…"` raw strings (no
//! escapes, single line). Numbers are `i64` integers or, with a fraction or
//! exponent, finite `f64` floats; a `-` directly before a digit belongs to the
//! number.
//!
//! # Errors
//!
//! Every error carries the line and column (1-based, columns counted in
//! characters) of the offending text and says what was expected and what was
//! found. Valid EQL this engine does not implement (`until`, `sample`, `join`,
//! pipes, `runs=`, missing-event stages `![…]`, `regex`, arithmetic, optional
//! fields `?field`) is reported as [`RuleErrorKind::Unsupported`] at the
//! construct. Text longer than [`ParseLimits::max_len`], nesting deeper than
//! [`ParseLimits::max_depth`] (each parenthesis, `not`, function call and value
//! list is one level; the limit is additionally clamped to
//! [`HARD_MAX_DEPTH`] so the recursion can never exhaust the stack) and more
//! than [`MAX_STAGES`] sequence stages are [`RuleErrorKind::Limit`] errors.
//!
//! The parser never panics: all input is a `&str`, every slice is taken at a
//! character boundary, and recursion is bounded by the depth limit.

use super::ast::{
    ArithOp, CmpOp, EventQuery, Expr, Field, Literal, MatchOp, Query, Sample, Sequence, Span, Stage,
};
use super::error::{RuleError, RuleErrorKind};

/// Limits that bound the parser's work.
#[derive(Debug, Clone, Copy)]
pub struct ParseLimits {
    /// Maximum nesting depth of expressions (parentheses, `not`, calls).
    pub max_depth: usize,
    /// Maximum query text length in bytes.
    pub max_len: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits { max_depth: 64, max_len: 64 * 1024 }
    }
}

/// The nesting depth the parser never exceeds, whatever
/// [`ParseLimits::max_depth`] says. One level costs about 1.5 KB of stack in
/// an optimised build (about 8 KB unoptimised), so the deepest accepted query
/// needs roughly 200 KB (1 MB unoptimised): well inside a default 2 MiB
/// Rust thread or 8 MiB pthread stack.
pub const HARD_MAX_DEPTH: usize = 128;

/// The most stages a sequence may have.
pub const MAX_STAGES: usize = 256;

/// The largest `with runs=N`.
pub const MAX_RUNS: i64 = 100;

/// Parse a whole query (an event query or a sequence) from `text`.
///
/// Returns the syntax tree, or the first error: a [`RuleErrorKind::Syntax`]
/// error for invalid text, [`RuleErrorKind::Unsupported`] for valid EQL the
/// engine does not implement, [`RuleErrorKind::Limit`] when `limits` (or
/// [`HARD_MAX_DEPTH`] / [`MAX_STAGES`]) are exceeded. Never panics.
pub fn parse(text: &str, limits: ParseLimits) -> Result<Query, RuleError> {
    if text.len() > limits.max_len {
        return Err(RuleError::new(
            RuleErrorKind::Limit,
            format!(
                "the query is {} bytes long, more than the limit of {} bytes",
                text.len(),
                limits.max_len
            ),
        ));
    }
    let tokens = Lexer::new(text).tokenize()?;
    let mut parser = Parser {
        src: text,
        tokens,
        pos: 0,
        prev_end: 0,
        depth: 0,
        max_depth: limits.max_depth.min(HARD_MAX_DEPTH),
    };
    let query = parser.parse_query()?;
    parser.expect_end()?;
    Ok(query)
}

// ---------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
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
struct Token {
    tok: Tok,
    span: Span,
}

/// Converts the query text into tokens, tracking line and column.
struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    line: u32,
    column: u32,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '@'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '@'
}

/// Shortens `s` to at most `max` characters for use in a message.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Self {
        Lexer { src, pos: 0, line: 1, column: 1 }
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.src[self.pos..].chars().nth(n)
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    /// Consume one character, updating line and column.
    fn bump(&mut self) -> Option<char> {
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
    fn here(&self) -> Span {
        Span { start: self.pos, end: self.pos, line: self.line, column: self.column }
    }

    /// `start` extended to the current position.
    fn close(&self, start: Span) -> Span {
        Span { end: self.pos, ..start }
    }

    fn error(&self, kind: RuleErrorKind, msg: impl Into<String>, span: Span) -> RuleError {
        RuleError::at(kind, msg, self.src, span)
    }

    fn tokenize(mut self) -> Result<Vec<Token>, RuleError> {
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
    fn skip_trivia(&mut self) -> Result<(), RuleError> {
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
    fn token(&mut self, c: char, start: Span) -> Result<Tok, RuleError> {
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

    fn unterminated_string(&self, start: Span) -> RuleError {
        self.error(
            RuleErrorKind::Syntax,
            "unterminated string: no closing '\"' on this line (use \"\"\"…\"\"\" for text spanning lines)",
            Span { end: start.start + 1, ..start },
        )
    }

    /// `"…"` with escapes, or `"""…"""`.
    fn string(&mut self, start: Span) -> Result<Tok, RuleError> {
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
    fn unicode_escape(&mut self, esc_start: Span) -> Result<char, RuleError> {
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
    fn triple_string(&mut self, start: Span) -> Result<Tok, RuleError> {
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
    fn raw_string(&mut self, start: Span) -> Result<Tok, RuleError> {
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
    fn quoted_ident(&mut self, start: Span) -> Result<Tok, RuleError> {
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
    fn number(&mut self, start: Span) -> Result<Tok, RuleError> {
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

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

/// Words that are always keywords and so cannot be bare field names.
const RESERVED: &[&str] = &[
    "and", "any", "by", "false", "in", "join", "like", "not", "null", "of", "or", "regex",
    "sample", "sequence", "true", "until", "where", "with",
];

fn is_reserved(name: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name))
}

/// What a parenthesised list belongs to, for "expected ',' or ')'" messages.
#[derive(Clone, Copy)]
enum ListOwner {
    /// The arguments of the call whose name token has this span.
    Call(Span),
    /// The values of the match operator whose token has this span.
    Operator(Span),
}

/// The recursive descent. The functions on the recursion path
/// (`parse_or` … `parse_operand`, `parse_call`, `parse_items`) are kept lean —
/// messages are built in separate cold functions — so each nesting level
/// costs little stack even in an unoptimised build.
struct Parser<'a> {
    src: &'a str,
    /// All tokens; the last is always `Eof`.
    tokens: Vec<Token>,
    pos: usize,
    /// End offset of the last consumed token.
    prev_end: usize,
    depth: usize,
    max_depth: usize,
}

type PResult<T> = Result<T, RuleError>;

impl<'a> Parser<'a> {
    // ----- token access ---------------------------------------------------

    fn peek(&self) -> &Token {
        // `pos` never passes the final Eof token.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn peek_nth(&self, n: usize) -> &Token {
        &self.tokens[self.pos.saturating_add(n).min(self.tokens.len() - 1)]
    }

    fn tok(&self) -> &Tok {
        &self.peek().tok
    }

    fn span(&self) -> Span {
        self.peek().span
    }

    /// Consume the current token (never the final `Eof`) and return its span.
    fn advance(&mut self) -> Span {
        let span = self.span();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
            self.prev_end = span.end;
        }
        span
    }

    fn text_of(&self, span: Span) -> &'a str {
        &self.src[span.start..span.end]
    }

    /// The identifier text of `t` without a trailing `~`, if it is an identifier.
    fn ident_name(&self, t: &Token) -> Option<&'a str> {
        match t.tok {
            Tok::Ident { tilde } => {
                let s = self.text_of(t.span);
                Some(if tilde { &s[..s.len() - 1] } else { s })
            }
            _ => None,
        }
    }

    /// Is `t` the keyword `kw` (case-insensitive, no `~`)?
    fn is_kw_tok(&self, t: &Token, kw: &str) -> bool {
        matches!(t.tok, Tok::Ident { tilde: false })
            && self.text_of(t.span).eq_ignore_ascii_case(kw)
    }

    fn at_kw(&self, kw: &str) -> bool {
        self.is_kw_tok(self.peek(), kw)
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        let hit = self.at_kw(kw);
        if hit {
            self.advance();
        }
        hit
    }

    /// `start` extended to the end of the last consumed token.
    fn span_from(&self, start: Span) -> Span {
        Span { end: self.prev_end.max(start.start), ..start }
    }

    // ----- errors (cold, off the recursion path) ---------------------------

    fn error(&self, kind: RuleErrorKind, msg: impl Into<String>, span: Span) -> RuleError {
        RuleError::at(kind, msg, self.src, span)
    }

    /// How the current token is named in a message.
    fn describe(&self, t: &Token) -> String {
        let text = truncate(self.text_of(t.span), 30);
        match &t.tok {
            Tok::Eof => "end of query".to_string(),
            Tok::Str(_) => format!("string {text}"),
            Tok::Int(_) | Tok::Float(_) => format!("number {text}"),
            _ => format!("'{text}'"),
        }
    }

    /// "expected X but found Y" (or "unexpected end of query, expected X")
    /// at the current token.
    #[cold]
    #[inline(never)]
    fn expected(&self, what: &str) -> RuleError {
        let t = self.peek();
        let msg = if t.tok == Tok::Eof {
            format!("unexpected end of query, expected {what}")
        } else {
            format!("expected {what} but found {}", self.describe(t))
        };
        self.error(RuleErrorKind::Syntax, msg, t.span)
    }

    #[cold]
    #[inline(never)]
    fn depth_error(&self) -> RuleError {
        self.error(
            RuleErrorKind::Limit,
            format!("the expression is nested more than {} levels deep", self.max_depth),
            self.span(),
        )
    }

    #[cold]
    #[inline(never)]
    fn unclosed_paren(&self, open: Span) -> RuleError {
        self.expected(&format!(
            "')' to close the '(' at line {}, column {}",
            open.line, open.column
        ))
    }

    #[cold]
    #[inline(never)]
    fn unclosed_list(&self, owner: ListOwner, open: Span) -> RuleError {
        let what = match owner {
            ListOwner::Call(name) => {
                let name = self.text_of(name);
                format!("the arguments of '{}'", truncate(name.trim_end_matches('~'), 30))
            }
            ListOwner::Operator(op) => format!("the '{}' list", self.text_of(op)),
        };
        self.expected(&format!(
            "',' or ')' to close {what} opened at line {}, column {}",
            open.line, open.column
        ))
    }

    #[cold]
    #[inline(never)]
    fn assign_error(&self) -> RuleError {
        self.error(
            RuleErrorKind::Syntax,
            "'=' is not a comparison operator; use '==' to compare",
            self.span(),
        )
    }

    #[cold]
    #[inline(never)]
    fn pipe_error(&self) -> RuleError {
        let cmd = self.ident_name(self.peek_nth(1)).unwrap_or("");
        let msg = if cmd.is_empty() {
            "pipes ('| …') are not supported".to_string()
        } else {
            format!("pipes ('| {}') are not supported", truncate(cmd, 30))
        };
        self.error(RuleErrorKind::Unsupported, msg, self.span())
    }

    // ----- nesting ----------------------------------------------------------

    /// Enter one nesting level at the current token.
    fn enter(&mut self) -> PResult<()> {
        if self.depth >= self.max_depth {
            return Err(self.depth_error());
        }
        self.depth += 1;
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    // ----- query level ----------------------------------------------------

    fn parse_query(&mut self) -> PResult<Query> {
        if self.at_kw("sequence") {
            return self.parse_sequence().map(Query::Sequence);
        }
        if self.at_kw("sample") {
            return self.parse_sample().map(Query::Sample);
        }
        if self.at_kw("join") {
            return Err(self.error(
                RuleErrorKind::Unsupported,
                "'join' queries are not supported (Elasticsearch refuses them too)",
                self.span(),
            ));
        }
        self.parse_event_query().map(Query::Event)
    }

    /// After the query: only the end of the text may follow.
    fn expect_end(&mut self) -> PResult<()> {
        match self.tok() {
            Tok::Eof => Ok(()),
            Tok::Pipe => Err(self.pipe_error()),
            _ if self.at_kw("until") => Err(self.error(
                RuleErrorKind::Syntax,
                "'until' belongs to a sequence, after its last stage",
                self.span(),
            )),
            _ => Err(self.error(
                RuleErrorKind::Syntax,
                format!("unexpected {} after the end of the query", self.describe(self.peek())),
                self.span(),
            )),
        }
    }

    fn parse_sequence(&mut self) -> PResult<Sequence> {
        let kw_span = self.advance();
        let mut by: Option<Vec<Field>> = None;
        let mut maxspan_ms: Option<u64> = None;
        loop {
            if self.at_kw("by") {
                if by.is_some() {
                    return Err(self.error(
                        RuleErrorKind::Syntax,
                        "'by' given twice for the sequence",
                        self.span(),
                    ));
                }
                self.advance();
                by = Some(self.parse_field_list("'by'")?);
            } else if self.at_kw("with") {
                if maxspan_ms.is_some() {
                    return Err(self.error(
                        RuleErrorKind::Syntax,
                        "'with maxspan' given twice",
                        self.span(),
                    ));
                }
                self.advance();
                maxspan_ms = Some(self.parse_maxspan()?);
            } else {
                break;
            }
        }
        let stages = self.parse_stages("sequence", true)?;
        let until = if self.at_kw("until") {
            self.advance();
            if *self.tok() != Tok::LBracket {
                return Err(self.expected("'[' to start the 'until' stage"));
            }
            let st = self.parse_stage(false, false)?;
            Some(st)
        } else {
            None
        };
        Ok(Sequence { by: by.unwrap_or_default(), maxspan_ms, stages, until, span: kw_span })
    }

    /// `sample [by fields] stage stage+`
    fn parse_sample(&mut self) -> PResult<Sample> {
        let kw_span = self.advance();
        let by = if self.eat_kw("by") { self.parse_field_list("'by'")? } else { Vec::new() };
        if self.at_kw("with") {
            return Err(self.error(
                RuleErrorKind::Syntax,
                "'with' is not allowed on a sample (samples have no maxspan)",
                self.span(),
            ));
        }
        let stages = self.parse_stages("sample", false)?;
        if self.at_kw("until") {
            return Err(self.error(
                RuleErrorKind::Syntax,
                "'until' is only allowed in a sequence",
                self.span(),
            ));
        }
        Ok(Sample { by, stages, span: kw_span })
    }

    /// The stages of a sequence (`seq`: `![…]` and `with runs=` allowed) or
    /// a sample.
    fn parse_stages(&mut self, what: &str, seq: bool) -> PResult<Vec<Stage>> {
        let mut stages: Vec<Stage> = Vec::new();
        let mut count: usize = 0;
        loop {
            let missing = match self.tok() {
                Tok::LBracket => false,
                Tok::Bang if self.peek_nth(1).tok == Tok::LBracket => {
                    if !seq {
                        return Err(self.error(
                            RuleErrorKind::Syntax,
                            format!("missing-event stages ('![…]') are only allowed in a sequence, not in a {what}"),
                            self.span(),
                        ));
                    }
                    true
                }
                _ => break,
            };
            let st = self.parse_stage(missing, seq)?;
            count += st.runs as usize;
            if count > MAX_STAGES {
                return Err(self.error(
                    RuleErrorKind::Limit,
                    format!("a {what} may have at most {MAX_STAGES} stages (counting 'runs' repetitions)"),
                    st.span,
                ));
            }
            stages.push(st);
        }
        if count < 2 {
            let what = if stages.is_empty() {
                format!("'[' to start the first {what} stage")
            } else {
                format!("'[' to start the second {what} stage (a {what} needs at least two)")
            };
            return Err(self.expected(&what));
        }
        if seq && stages.iter().all(|s| s.missing) {
            return Err(self.error(
                RuleErrorKind::Syntax,
                "a sequence needs at least one stage that is not a missing-event stage",
                stages[0].span,
            ));
        }
        Ok(stages)
    }

    /// `maxspan = N unit` after `with`, in milliseconds.
    fn parse_maxspan(&mut self) -> PResult<u64> {
        if !self.eat_kw("maxspan") {
            return Err(self.expected("'maxspan' after 'with'"));
        }
        if *self.tok() == Tok::Cmp(CmpOp::Eq) {
            return Err(self.error(
                RuleErrorKind::Syntax,
                "expected '=' after 'maxspan' but found '==' (write maxspan=5s)",
                self.span(),
            ));
        }
        if *self.tok() != Tok::Assign {
            return Err(self.expected("'=' after 'maxspan'"));
        }
        self.advance();
        let num_span = self.span();
        let value = match *self.tok() {
            Tok::Int(v) if v > 0 => v as u64,
            Tok::Int(_) => {
                return Err(self.error(
                    RuleErrorKind::Syntax,
                    "a positive maxspan value is required",
                    num_span,
                ))
            }
            Tok::Float(_) => {
                return Err(self.error(
                    RuleErrorKind::Syntax,
                    "maxspan must be a whole number (use a smaller unit, e.g. 1500ms)",
                    num_span,
                ))
            }
            _ => return Err(self.expected("a duration such as 5s after 'maxspan='")),
        };
        self.advance();
        let unit = match self.tok() {
            Tok::Ident { tilde: false } => self.text_of(self.span()),
            _ => "",
        };
        let factor: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => {
                return Err(self.expected("a time unit (ms, s, m, h or d) after the maxspan value"))
            }
        };
        self.advance();
        value.checked_mul(factor).ok_or_else(|| {
            self.error(RuleErrorKind::Syntax, "maxspan is too large", self.span_from(num_span))
        })
    }

    /// `[ event_query ] [by fields] [with runs=N]` (with `![` for a
    /// missing-event stage); `runs` only when `allow_runs`.
    fn parse_stage(&mut self, missing: bool, allow_runs: bool) -> PResult<Stage> {
        let first = if missing { self.advance() } else { self.span() };
        let open = self.advance();
        let query = self.parse_event_query()?;
        match self.tok() {
            Tok::RBracket => {
                self.advance();
            }
            Tok::Pipe => return Err(self.pipe_error()),
            _ => {
                return Err(self.expected(&format!(
                    "']' to close the stage opened at line {}, column {}",
                    open.line, open.column
                )))
            }
        }
        let by = if self.eat_kw("by") { self.parse_field_list("'by'")? } else { Vec::new() };
        let mut runs = 1u32;
        if self.at_kw("with") {
            if !self.is_kw_tok(self.peek_nth(1), "runs") {
                return Err(self.error(
                    RuleErrorKind::Syntax,
                    "unexpected 'with' after a stage (only 'with runs=N' may follow a stage; 'with maxspan=…' belongs right after 'sequence')",
                    self.span(),
                ));
            }
            if !allow_runs {
                return Err(self.error(
                    RuleErrorKind::Syntax,
                    "'with runs=…' is only allowed on sequence stages",
                    self.span(),
                ));
            }
            self.advance();
            self.advance();
            if *self.tok() != Tok::Assign {
                return Err(self.expected("'=' after 'runs'"));
            }
            self.advance();
            let num = self.span();
            runs = match *self.tok() {
                Tok::Int(v) if (1..=MAX_RUNS).contains(&v) => v as u32,
                Tok::Int(_) => {
                    return Err(self.error(
                        RuleErrorKind::Syntax,
                        format!("runs must be between 1 and {MAX_RUNS}"),
                        num,
                    ))
                }
                _ => return Err(self.expected("a whole number after 'runs='")),
            };
            self.advance();
        }
        Ok(Stage { query, by, span: first, runs, missing })
    }

    /// `category where expr`
    fn parse_event_query(&mut self) -> PResult<EventQuery> {
        const WHAT: &str = "an event category (e.g. process, network or any)";
        let start = self.span();
        let category = match self.tok() {
            Tok::Str(s) => Some(s.clone()),
            Tok::Ident { tilde: false } => {
                let name = self.text_of(start);
                if name.eq_ignore_ascii_case("any") {
                    None
                } else if is_reserved(name) {
                    return Err(self.expected(WHAT));
                } else {
                    Some(name.to_string())
                }
            }
            _ => return Err(self.expected(WHAT)),
        };
        self.advance();
        if !self.eat_kw("where") {
            return Err(self.expected("'where' after the event category"));
        }
        let condition = self.parse_expr()?;
        Ok(EventQuery { category, condition, span: self.span_from(start) })
    }

    /// `field (',' field)*`; `after` names what precedes it, for messages.
    fn parse_field_list(&mut self, after: &str) -> PResult<Vec<Field>> {
        let mut fields = vec![self.parse_field(after)?];
        while *self.tok() == Tok::Comma {
            self.advance();
            fields.push(self.parse_field("','")?);
        }
        Ok(fields)
    }

    /// A dotted field name; `after` names what precedes it, for messages.
    fn parse_field(&mut self, after: &str) -> PResult<Field> {
        let start = self.span();
        let optional = *self.tok() == Tok::Question;
        if optional {
            self.advance();
        }
        let first = self.span();
        let mut name = match self.tok() {
            Tok::QuotedIdent(s) => s.clone(),
            Tok::Ident { tilde: false } if !is_reserved(self.text_of(first)) => {
                self.text_of(first).to_string()
            }
            _ => return Err(self.expected(&format!("a field name after {after}"))),
        };
        self.advance();
        while *self.tok() == Tok::Dot {
            self.advance();
            name.push('.');
            match self.tok() {
                Tok::QuotedIdent(s) => name.push_str(s),
                // After a dot even keywords are plain name parts.
                Tok::Ident { tilde: false } => name.push_str(self.text_of(self.span())),
                _ => return Err(self.expected("a field name part after '.'")),
            }
            self.advance();
        }
        if *self.tok() == Tok::LBracket
            && self.span().start == self.prev_end
            && matches!(self.peek_nth(1).tok, Tok::Int(_))
        {
            return Err(self.error(
                RuleErrorKind::Unsupported,
                "array indexing in field names ('field[0]') is not supported",
                self.span(),
            ));
        }
        Ok(Field { name, span: self.span_from(start), optional })
    }

    // ----- expressions (the recursion path) ----------------------------------

    /// `expr := and ('or' and)*`, `and := not ('and' not)*`,
    /// `not := 'not' not | predicate`, in one loop: `and`/`or` chains are
    /// flat lists and `not` runs are counted, so only parentheses, calls and
    /// value lists recurse, each through few stack frames.
    fn parse_expr(&mut self) -> PResult<Expr> {
        let start = self.span();
        let mut disjuncts: Vec<Expr> = Vec::new();
        let mut conjuncts: Vec<Expr> = Vec::new();
        let mut conj_start = start;
        let mut nots: Vec<Span> = Vec::new();
        loop {
            while self.at_kw("not") {
                self.enter()?;
                nots.push(self.advance());
            }
            let mut term = self.parse_predicate()?;
            while let Some(not_span) = nots.pop() {
                term = Expr::Not(Box::new(term), self.span_from(not_span));
                self.leave();
            }
            conjuncts.push(term);
            if self.eat_kw("and") {
                continue;
            }
            let conj = self.join(std::mem::take(&mut conjuncts), conj_start, Expr::And);
            disjuncts.push(conj);
            if !self.eat_kw("or") {
                break;
            }
            conj_start = self.span();
        }
        Ok(self.join(disjuncts, start, Expr::Or))
    }

    /// The single item, or `make(items)` spanning from `start`.
    fn join(&self, mut items: Vec<Expr>, start: Span, make: fn(Vec<Expr>, Span) -> Expr) -> Expr {
        if items.len() == 1 {
            if let Some(only) = items.pop() {
                return only;
            }
        }
        make(items, self.span_from(start))
    }

    /// An arithmetic expression, optionally followed by a comparison or
    /// match operator.
    fn parse_predicate(&mut self) -> PResult<Expr> {
        let start = self.span();
        let left = self.parse_arith()?;
        match *self.tok() {
            Tok::Cmp(op) => {
                self.advance();
                let right = self.parse_arith()?;
                if let Tok::Cmp(_) = self.tok() {
                    return Err(self.error(
                        RuleErrorKind::Syntax,
                        "comparisons cannot be chained; join them with 'and'",
                        self.span(),
                    ));
                }
                Ok(Expr::Compare {
                    op,
                    left: Box::new(left),
                    right: Box::new(right),
                    span: self.span_from(start),
                })
            }
            Tok::Assign => Err(self.assign_error()),
            Tok::Bang if self.peek_nth(1).tok == Tok::Colon => Err(self.error(
                RuleErrorKind::Syntax,
                "'!:' is not an EQL operator; write 'not field : \"value\"' (or '!=' for an exact comparison)",
                self.span(),
            )),
            Tok::Colon | Tok::Ident { .. } => match self.match_operator()? {
                Some((op, negated, op_span)) => {
                    let values = self.parse_match_values(op, op_span)?;
                    let subject = Box::new(left);
                    Ok(Expr::Match { op, negated, subject, values, span: self.span_from(start) })
                }
                // Not an operator: the operand stands alone and the caller
                // decides whether what follows is valid.
                None => Ok(left),
            },
            _ => Ok(left),
        }
    }

    /// `term (('+' | '-') term)*`, left-associative. A negative number
    /// literal directly after an operand (`a -1`) is a subtraction.
    fn parse_arith(&mut self) -> PResult<Expr> {
        let start = self.span();
        let mut left = self.parse_term()?;
        loop {
            let op = match *self.tok() {
                Tok::Arith(op @ (ArithOp::Add | ArithOp::Sub)) => {
                    self.advance();
                    op
                }
                Tok::Int(_) | Tok::Float(_) if self.text_of(self.span()).starts_with('-') => {
                    // `a -1`: the lexer read `-1` as one number.
                    ArithOp::Sub
                }
                _ => return Ok(left),
            };
            let right = if op == ArithOp::Sub && matches!(self.tok(), Tok::Int(_) | Tok::Float(_))
                && self.text_of(self.span()).starts_with('-')
                && self.tokens[self.pos - 1].tok != Tok::Arith(ArithOp::Sub)
            {
                let sp = self.advance();
                let lit = match self.tokens[self.pos - 1].tok {
                    Tok::Int(v) => match v.checked_neg() {
                        Some(n) => Literal::Int(n),
                        None => Literal::Float(-(v as f64)),
                    },
                    Tok::Float(v) => Literal::Float(-v),
                    _ => unreachable_literal(),
                };
                let mut e = Expr::Literal(lit, sp);
                // Then any `*`, `/`, `%` that follow bind tighter.
                e = self.parse_term_rest(e, sp)?;
                e
            } else {
                self.parse_term()?
            };
            left = Expr::Arith { op, left: Box::new(left), right: Box::new(right), span: self.span_from(start) };
        }
    }

    /// `unary (('*' | '/' | '%') unary)*`
    fn parse_term(&mut self) -> PResult<Expr> {
        let start = self.span();
        let first = self.parse_unary()?;
        self.parse_term_rest(first, start)
    }

    fn parse_term_rest(&mut self, mut left: Expr, start: Span) -> PResult<Expr> {
        while let Tok::Arith(op @ (ArithOp::Mul | ArithOp::Div | ArithOp::Mod)) = *self.tok() {
            self.advance();
            let right = self.parse_unary()?;
            left = Expr::Arith { op, left: Box::new(left), right: Box::new(right), span: self.span_from(start) };
        }
        Ok(left)
    }

    /// `'-' unary | '+' unary | operand`: one nesting level per sign.
    fn parse_unary(&mut self) -> PResult<Expr> {
        match *self.tok() {
            Tok::Arith(ArithOp::Sub) => {
                self.enter()?;
                let sp = self.advance();
                let inner = self.parse_unary()?;
                self.leave();
                Ok(match inner {
                    Expr::Literal(Literal::Int(v), _) if v.checked_neg().is_some() => {
                        Expr::Literal(Literal::Int(-v), self.span_from(sp))
                    }
                    Expr::Literal(Literal::Float(v), _) => Expr::Literal(Literal::Float(-v), self.span_from(sp)),
                    other => Expr::Neg(Box::new(other), self.span_from(sp)),
                })
            }
            Tok::Arith(ArithOp::Add) => {
                self.enter()?;
                self.advance();
                let inner = self.parse_unary()?;
                self.leave();
                Ok(inner)
            }
            _ => self.parse_operand(),
        }
    }

    /// Consume `[not] op` if a match operator starts here, returning it, its
    /// negation and the operator token's span; `None` (nothing consumed) if
    /// the current token is no operator.
    #[inline(never)]
    fn match_operator(&mut self) -> PResult<Option<(MatchOp, bool, Span)>> {
        let negated = self.at_kw("not");
        if negated {
            self.advance();
        }
        let op_span = self.span();
        let op = match (self.tok(), self.ident_name(self.peek())) {
            (Tok::Colon, _) if !negated => MatchOp::Colon,
            (&Tok::Ident { tilde }, Some(name)) => {
                if name.eq_ignore_ascii_case("in") {
                    if tilde {
                        MatchOp::InInsensitive
                    } else {
                        MatchOp::In
                    }
                } else if name.eq_ignore_ascii_case("like") {
                    if tilde {
                        MatchOp::LikeInsensitive
                    } else {
                        MatchOp::Like
                    }
                } else if name.eq_ignore_ascii_case("regex") {
                    if tilde {
                        MatchOp::RegexInsensitive
                    } else {
                        MatchOp::Regex
                    }
                } else if negated {
                    return Err(self.expected("'in', 'in~', 'like', 'like~', 'regex' or 'regex~' after 'not'"));
                } else {
                    return Ok(None);
                }
            }
            _ if negated => {
                return Err(self.expected("'in', 'in~', 'like', 'like~', 'regex' or 'regex~' after 'not'"))
            }
            _ => return Ok(None),
        };
        self.advance();
        Ok(Some((op, negated, op_span)))
    }

    /// The values after match operator `op` (token at `op_span`): a
    /// parenthesised, non-empty list (one nesting level) or, except for
    /// `in`/`in~`, a single operand.
    fn parse_match_values(&mut self, op: MatchOp, op_span: Span) -> PResult<Vec<Expr>> {
        if *self.tok() != Tok::LParen {
            if matches!(op, MatchOp::In | MatchOp::InInsensitive) {
                return Err(self.list_required(op_span));
            }
            return self.parse_operand().map(|value| vec![value]);
        }
        self.enter()?;
        let open = self.advance();
        if *self.tok() == Tok::RParen {
            return Err(self.empty_list(op_span));
        }
        let items = self.parse_items(ListOwner::Operator(op_span), open)?;
        self.leave();
        Ok(items)
    }

    #[cold]
    #[inline(never)]
    fn list_required(&self, op_span: Span) -> RuleError {
        let op = self.text_of(op_span);
        self.expected(&format!("'(' after '{op}' (write {op} (\"a\", \"b\"))"))
    }

    #[cold]
    #[inline(never)]
    fn empty_list(&self, op_span: Span) -> RuleError {
        self.expected(&format!("a value in the '{}' list", self.text_of(op_span)))
    }

    /// `expr (',' expr)* ')'` after the `(` at `open`.
    fn parse_items(&mut self, owner: ListOwner, open: Span) -> PResult<Vec<Expr>> {
        let mut items = vec![self.parse_expr()?];
        loop {
            match self.tok() {
                Tok::Comma => {
                    self.advance();
                    items.push(self.parse_expr()?);
                }
                Tok::RParen => {
                    self.advance();
                    return Ok(items);
                }
                _ => return Err(self.unclosed_list(owner, open)),
            }
        }
    }

    /// `( expr )`, a call, a field or a literal.
    fn parse_operand(&mut self) -> PResult<Expr> {
        let span = self.span();
        let lit = match self.tok() {
            Tok::LParen => return self.parse_paren(),
            Tok::Ident { tilde } => {
                let tilde = *tilde;
                let name = self.text_of(span);
                let name = if tilde { &name[..name.len() - 1] } else { name };
                if !is_reserved(name) && self.peek_nth(1).tok == Tok::LParen {
                    return self.parse_call(tilde);
                }
                if tilde {
                    return Err(self.tilde_error());
                }
                if self.is_kw_tok(self.peek_nth(1), "of")
                    && ["descendant", "child", "event"].iter().any(|k| name.eq_ignore_ascii_case(k))
                {
                    return Err(self.error(
                        RuleErrorKind::Unsupported,
                        format!(
                            "lineage ('{} of [...]') is not supported (Elasticsearch's EQL refuses it too)",
                            name.to_ascii_lowercase()
                        ),
                        span,
                    ));
                }
                if name.eq_ignore_ascii_case("true") {
                    Literal::Bool(true)
                } else if name.eq_ignore_ascii_case("false") {
                    Literal::Bool(false)
                } else if name.eq_ignore_ascii_case("null") {
                    Literal::Null
                } else if is_reserved(name) {
                    return Err(self.expected("a field, value or function call"));
                } else {
                    return self.parse_field("").map(Expr::Field);
                }
            }
            Tok::QuotedIdent(_) | Tok::Question => return self.parse_field("").map(Expr::Field),
            Tok::Str(s) => Literal::Str(s.clone()),
            Tok::Int(v) => Literal::Int(*v),
            Tok::Float(v) => Literal::Float(*v),
            Tok::Assign => return Err(self.assign_error()),
            _ => return Err(self.expected("a field, value or function call")),
        };
        self.advance();
        Ok(Expr::Literal(lit, span))
    }

    #[cold]
    #[inline(never)]
    fn tilde_error(&self) -> RuleError {
        let text = self.text_of(self.span());
        let name = truncate(text.trim_end_matches('~'), 30);
        self.error(
            RuleErrorKind::Syntax,
            format!("'~' after '{name}' is only allowed on a function call ('{name}~(…)')"),
            self.span(),
        )
    }

    /// `( expr )` at the current `(`: one nesting level.
    fn parse_paren(&mut self) -> PResult<Expr> {
        self.enter()?;
        let open = self.advance();
        let inner = self.parse_expr()?;
        if *self.tok() != Tok::RParen {
            return Err(self.unclosed_paren(open));
        }
        self.advance();
        self.leave();
        Ok(inner)
    }

    /// `name(args)` or `name~(args)` at the name: one nesting level.
    fn parse_call(&mut self, case_insensitive: bool) -> PResult<Expr> {
        self.enter()?;
        let name_span = self.advance();
        let open = self.advance(); // (
        let args = if *self.tok() == Tok::RParen {
            self.advance();
            Vec::new()
        } else {
            self.parse_items(ListOwner::Call(name_span), open)?
        };
        self.leave();
        let text = self.text_of(name_span);
        let name = if case_insensitive { &text[..text.len() - 1] } else { text };
        Ok(Expr::Call {
            name: name.to_string(),
            case_insensitive,
            args,
            span: self.span_from(name_span),
        })
    }
}

#[cold]
fn unreachable_literal() -> Literal {
    Literal::Null
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule text of RULE.md, rule version 5, verbatim.
    const RULE_V5: &str = r#"sequence by host.id with maxspan=5s
  [process where host.os.type == "linux" and event.type == "start" and event.action == "exec" and
   process.parent.name == "apt" and process.args == "-c" and process.name in (
     "bash", "dash", "sh", "tcsh", "csh", "zsh", "ksh", "fish"
    )
  ] by process.entity_id
  [network where host.os.type == "linux" and event.action == "connection_attempted" and event.type == "start" and not (
     destination.ip == null or destination.ip == "0.0.0.0" or cidrmatch(
     destination.ip, "10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24", "192.0.0.0/29",
     "192.0.0.8/32", "192.0.0.9/32", "192.0.0.10/32", "192.0.0.170/32", "192.0.0.171/32", "192.0.2.0/24",
     "192.31.196.0/24", "192.52.193.0/24", "192.168.0.0/16", "192.88.99.0/24", "224.0.0.0/4", "100.64.0.0/10",
     "192.175.48.0/24","198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4", "::1", "FE80::/10",
     "FF00::/8", "172.31.0.0/16"
     )
   ) and not process.executable == "/usr/bin/apt-listbugs"
  ] by process.parent.entity_id
"#;

    fn p(text: &str) -> Result<Query, RuleError> {
        parse(text, ParseLimits::default())
    }

    fn cond(text: &str) -> Expr {
        match p(text).unwrap_or_else(|e| panic!("{text}: {e}")) {
            Query::Event(q) => q.condition,
            other => panic!("not an event query: {other:?}"),
        }
    }

    fn err(text: &str) -> RuleError {
        match p(text) {
            Ok(q) => panic!("{text:?} parsed: {q:?}"),
            Err(e) => e,
        }
    }

    /// Asserts kind, position and a message fragment.
    fn assert_err(text: &str, kind: RuleErrorKind, line: u32, column: u32, fragment: &str) {
        let e = err(text);
        assert_eq!((e.kind, e.line, e.column), (kind, line, column), "{text:?}: {e}");
        assert!(
            e.message.contains(fragment),
            "{text:?}: message {:?} lacks {fragment:?}",
            e.message
        );
    }

    fn field(name: &str) -> String {
        name.to_string()
    }

    fn field_name(e: &Expr) -> &str {
        match e {
            Expr::Field(f) => &f.name,
            other => panic!("not a field: {other:?}"),
        }
    }

    fn str_lit(e: &Expr) -> &str {
        match e {
            Expr::Literal(Literal::Str(s), _) => s,
            other => panic!("not a string: {other:?}"),
        }
    }

    fn string_of(text: &str) -> String {
        match cond(&format!("any where a == {text}")) {
            Expr::Compare { right, .. } => str_lit(&right).to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rule_v5_parses() {
        let Query::Sequence(seq) = p(RULE_V5).unwrap() else { panic!("not a sequence") };
        assert_eq!(
            seq.by.iter().map(|f| f.name.clone()).collect::<Vec<_>>(),
            vec![field("host.id")]
        );
        assert_eq!(seq.maxspan_ms, Some(5000));
        assert_eq!((seq.span.line, seq.span.column, seq.span.start, seq.span.end), (1, 1, 0, 8));
        assert_eq!(seq.stages.len(), 2);
        let (s1, s2) = (&seq.stages[0], &seq.stages[1]);
        assert_eq!((s1.span.line, s1.span.column), (2, 3));
        assert_eq!((s2.span.line, s2.span.column), (7, 3));
        assert_eq!(s1.query.category.as_deref(), Some("process"));
        assert_eq!(s2.query.category.as_deref(), Some("network"));
        assert_eq!(s1.by.len(), 1);
        assert_eq!(s1.by[0].name, "process.entity_id");
        assert_eq!(s2.by[0].name, "process.parent.entity_id");
        assert_eq!((s2.by[0].span.line, s2.by[0].span.column), (16, 8));

        // Stage 1: six conjuncts, the last an `in` list of 8 shells.
        let Expr::And(items, _) = &s1.query.condition else { panic!() };
        assert_eq!(items.len(), 6);
        let Expr::Match { op: MatchOp::In, negated: false, subject, values, .. } = &items[5] else {
            panic!("{:?}", items[5])
        };
        assert_eq!(field_name(subject), "process.name");
        assert_eq!(values.len(), 8);
        assert_eq!(str_lit(&values[7]), "fish");

        // Stage 2: ... and not ( ... or cidrmatch(...) ) and not process.executable == ...
        let Expr::And(items, _) = &s2.query.condition else { panic!() };
        assert_eq!(items.len(), 5);
        let Expr::Not(inner, not_span) = &items[3] else { panic!("{:?}", items[3]) };
        assert_eq!((not_span.line, not_span.column), (7, 115));
        let Expr::Or(alts, _) = &**inner else { panic!("{inner:?}") };
        assert_eq!(alts.len(), 3);
        assert!(matches!(
            &alts[0],
            Expr::Compare { op: CmpOp::Eq, right, .. } if matches!(**right, Expr::Literal(Literal::Null, _))
        ));
        let Expr::Call { name, case_insensitive: false, args, span } = &alts[2] else { panic!() };
        assert_eq!(name, "cidrmatch");
        assert_eq!(args.len(), 28);
        assert_eq!(field_name(&args[0]), "destination.ip");
        assert_eq!(str_lit(&args[1]), "10.0.0.0/8");
        assert_eq!(str_lit(&args[27]), "172.31.0.0/16");
        assert_eq!(
            args.iter().skip(1).filter(|a| matches!(a, Expr::Literal(Literal::Str(_), _))).count(),
            27
        );
        assert_eq!((span.line, span.column), (8, 63));
        assert!(RULE_V5[span.start..span.end].starts_with("cidrmatch("));
        assert!(RULE_V5[span.start..span.end].ends_with(')'));
        let Expr::Not(last, _) = &items[4] else { panic!() };
        let Expr::Compare { op: CmpOp::Eq, left, right, .. } = &**last else { panic!() };
        assert_eq!(field_name(left), "process.executable");
        assert_eq!(str_lit(right), "/usr/bin/apt-listbugs");
    }

    #[test]
    fn rule_v9_parses() {
        let v9 = RULE_V5.replacen(
            "\"fish\"\n    )\n",
            "\"fish\"\n    ) and not process.args == \"/usr/bin/apt-listbugs apt\"\n",
            1,
        );
        assert_ne!(v9, RULE_V5);
        let Query::Sequence(seq) = p(&v9).unwrap() else { panic!() };
        let Expr::And(items, _) = &seq.stages[0].query.condition else { panic!() };
        assert_eq!(items.len(), 7);
        assert!(matches!(items[6], Expr::Not(..)));
    }

    #[test]
    fn event_queries_and_categories() {
        let Query::Event(q) = p("process where true").unwrap() else { panic!() };
        assert_eq!(q.category.as_deref(), Some("process"));
        assert_eq!(
            q.condition,
            Expr::Literal(Literal::Bool(true), Span { start: 14, end: 18, line: 1, column: 15 })
        );
        assert_eq!((q.span.start, q.span.end), (0, 18));
        let Query::Event(q) = p("ANY WHERE x == 1").unwrap() else { panic!() };
        assert_eq!(q.category, None);
        let Query::Event(q) = p("\"my category\" where x == 1").unwrap() else { panic!() };
        assert_eq!(q.category.as_deref(), Some("my category"));
        let Query::Event(q) = p("Network Where x == 1").unwrap() else { panic!() };
        assert_eq!(q.category.as_deref(), Some("Network"));
    }

    #[test]
    fn comparison_operators() {
        for (op_text, op) in [
            ("==", CmpOp::Eq),
            ("!=", CmpOp::Ne),
            ("<", CmpOp::Lt),
            ("<=", CmpOp::Le),
            (">", CmpOp::Gt),
            (">=", CmpOp::Ge),
        ] {
            let e = cond(&format!("any where process.pid {op_text} 5"));
            let Expr::Compare { op: got, left, right, span } = e else { panic!() };
            assert_eq!(got, op);
            assert_eq!(field_name(&left), "process.pid");
            assert!(matches!(*right, Expr::Literal(Literal::Int(5), _)));
            assert_eq!((span.start, span.column), (10, 11));
        }
        let Expr::Compare { op: CmpOp::Ne, right, .. } = cond("any where a != null") else {
            panic!()
        };
        assert!(matches!(*right, Expr::Literal(Literal::Null, _)));
        // Literals on the left, calls on either side.
        let Expr::Compare { left, right, .. } = cond("any where 5 < length(process.name)") else {
            panic!()
        };
        assert!(matches!(*left, Expr::Literal(Literal::Int(5), _)));
        assert!(matches!(*right, Expr::Call { .. }));
    }

    #[test]
    fn match_operators() {
        let cases: &[(&str, MatchOp, bool, usize)] = &[
            ("a in (\"x\", \"y\")", MatchOp::In, false, 2),
            ("a not in (\"x\")", MatchOp::In, true, 1),
            ("a in~ (\"x\", \"y\", \"z\")", MatchOp::InInsensitive, false, 3),
            ("a NOT IN~ (\"x\")", MatchOp::InInsensitive, true, 1),
            ("a : \"x*\"", MatchOp::Colon, false, 1),
            ("a : (\"x*\", \"?y\")", MatchOp::Colon, false, 2),
            ("a like \"x*\"", MatchOp::Like, false, 1),
            ("a like (\"x*\", \"y\")", MatchOp::Like, false, 2),
            ("a not like \"x*\"", MatchOp::Like, true, 1),
            ("a like~ \"X*\"", MatchOp::LikeInsensitive, false, 1),
            ("a not like~ (\"X*\", \"y\")", MatchOp::LikeInsensitive, true, 2),
        ];
        for &(text, op, negated, n) in cases {
            let full = format!("any where {text}");
            let Expr::Match { op: got, negated: neg, subject, values, span } = cond(&full) else {
                panic!("{text}")
            };
            assert_eq!((got, neg, values.len()), (op, negated, n), "{text}");
            assert_eq!(field_name(&subject), "a");
            assert_eq!((span.start, span.end), (10, full.len()), "{text}");
        }
    }

    #[test]
    fn calls() {
        let Expr::Call { name, case_insensitive, args, .. } =
            cond("any where startsWith~(process.name, \"ba\")")
        else {
            panic!()
        };
        assert_eq!((name.as_str(), case_insensitive, args.len()), ("startsWith", true, 2));
        let Expr::Call { name, args, .. } =
            cond("any where cidrMatch(destination.ip, \"10.0.0.0/8\")")
        else {
            panic!()
        };
        assert_eq!((name.as_str(), args.len()), ("cidrMatch", 2));
        // Nested calls, no arguments, whitespace before '('.
        let Expr::Compare { left, .. } = cond("any where length(concat(a, \"x\", 1)) > 3") else {
            panic!()
        };
        let Expr::Call { args, .. } = *left else { panic!() };
        assert!(
            matches!(&args[0], Expr::Call { name, args, .. } if name == "concat" && args.len() == 3)
        );
        assert!(matches!(cond("any where f ()"), Expr::Call { args, .. } if args.is_empty()));
    }

    #[test]
    fn precedence() {
        // a or b and not c  ==  a or (b and (not c))
        let Expr::Or(items, _) = cond("any where a == 1 or b == 2 and not c == 3") else {
            panic!()
        };
        assert_eq!(items.len(), 2);
        assert!(matches!(&items[0], Expr::Compare { .. }));
        let Expr::And(conj, _) = &items[1] else { panic!() };
        assert!(matches!(&conj[1], Expr::Not(inner, _) if matches!(**inner, Expr::Compare { .. })));
        // Parentheses override.
        let Expr::And(items, span) = cond("any where (a == 1 or b == 2) and c == 3") else {
            panic!()
        };
        assert!(matches!(&items[0], Expr::Or(..)));
        assert_eq!(span.start, 10, "the And starts at the '('");
        // not binds tighter than and; chains flatten.
        let Expr::And(items, _) = cond("any where not a and b and c") else { panic!() };
        assert_eq!(items.len(), 3);
        assert!(matches!(&items[0], Expr::Not(..)));
        let Expr::Not(inner, _) = cond("any where not not a") else { panic!() };
        assert!(matches!(*inner, Expr::Not(..)));
        // Keywords are case-insensitive.
        assert!(matches!(cond("any where a OR b AnD NOT c"), Expr::Or(..)));
    }

    #[test]
    fn fields() {
        assert_eq!(field_name(&cond("any where @timestamp")), "@timestamp");
        assert_eq!(field_name(&cond("any where process.parent.name")), "process.parent.name");
        assert_eq!(field_name(&cond("any where `field with spaces`")), "field with spaces");
        assert_eq!(field_name(&cond("any where `a``b`.c")), "a`b.c");
        assert_eq!(field_name(&cond("any where a.`b c`.d")), "a.b c.d");
        assert_eq!(field_name(&cond("any where `by`")), "by");
        assert_eq!(field_name(&cond("any where a.in")), "a.in");
        let Expr::Compare { left, .. } = cond("any where a . b == 1") else { panic!() };
        assert_eq!(field_name(&left), "a.b");
        let Expr::Field(f) = cond("any where  _a1.b_2") else { panic!() };
        assert_eq!(f.span, Span { start: 11, end: 18, line: 1, column: 12 });
    }

    #[test]
    fn literals() {
        let lit = |t: &str| match cond(&format!("any where a == {t}")) {
            Expr::Compare { right, .. } => match *right {
                Expr::Literal(l, _) => l,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        assert_eq!(lit("42"), Literal::Int(42));
        assert_eq!(lit("-42"), Literal::Int(-42));
        assert_eq!(lit("-9223372036854775808"), Literal::Int(i64::MIN));
        assert_eq!(lit("9223372036854775807"), Literal::Int(i64::MAX));
        assert_eq!(lit("1.5"), Literal::Float(1.5));
        assert_eq!(lit("-2.5e3"), Literal::Float(-2500.0));
        assert_eq!(lit("1E-2"), Literal::Float(0.01));
        assert_eq!(lit("TRUE"), Literal::Bool(true));
        assert_eq!(lit("False"), Literal::Bool(false));
        assert_eq!(lit("NULL"), Literal::Null);
        assert_eq!(string_of(r#""a\"b\\c\nd\re\tf\bg\fh\/i""#), "a\"b\\c\nd\re\tf\u{8}g\u{c}h/i");
        assert_eq!(string_of(r#""\u{41}\u{1F600}\u{00000041}""#), "A\u{1F600}A");
        assert_eq!(string_of(r#""""C:\Windows\"x" y""""#), r#"C:\Windows\"x" y"#);
        assert_eq!(string_of("\"\"\"two\nlines\"\"\""), "two\nlines");
        assert_eq!(string_of("\"\"\"ends in quotes\"\"\"\"\""), "ends in quotes\"\"");
        assert_eq!(string_of("\"\"\"\"\"\""), "");
        assert_eq!(string_of("\"\""), "");
        assert_eq!(string_of(r#"?"C:\new\t""#), r"C:\new\t");
        assert_eq!(string_of("\"héllo ✓\""), "héllo ✓");
        let Expr::Compare { right, .. } = cond("any where a == -5") else { panic!() };
        assert_eq!(right.span(), Span { start: 15, end: 17, line: 1, column: 16 });
    }

    #[test]
    fn comments_and_whitespace() {
        let text = "// leading comment\nprocess /* inline */ where\n\ta == 1 // trailing\n  /* multi\n line */ and b == 2";
        let Expr::And(items, _) = cond(text) else { panic!() };
        assert_eq!(items.len(), 2);
        let Expr::Compare { left, .. } = &items[1] else { panic!() };
        let Expr::Field(f) = &**left else { panic!() };
        assert_eq!((f.span.line, f.span.column), (5, 14));
        // A comment directly after a value and "//" inside strings.
        assert_eq!(string_of("\"http://x\"/*c*/"), "http://x");
        // CRLF line endings.
        let e = err("process where\r\n  a == 'x'");
        assert_eq!((e.line, e.column), (2, 8));
    }

    #[test]
    fn sequence_forms() {
        let Query::Sequence(s) = p("sequence [a where true] [b where true]").unwrap() else {
            panic!()
        };
        assert_eq!((s.by.len(), s.maxspan_ms, s.stages.len()), (0, None, 2));
        let Query::Sequence(s) =
            p("SEQUENCE with maxspan = 2m by a, `b c` [any where true] by x, y [b where true] [c where true] by z")
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(s.maxspan_ms, Some(120_000));
        assert_eq!(s.by.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["a", "b c"]);
        assert_eq!(s.stages.len(), 3);
        assert_eq!(s.stages[0].query.category, None);
        assert_eq!(s.stages[0].by.len(), 2);
        assert!(s.stages[1].by.is_empty());
        assert_eq!(s.stages[2].by[0].name, "z");
        for (unit, ms) in
            [("250ms", 250), ("5s", 5_000), ("3m", 180_000), ("2h", 7_200_000), ("1d", 86_400_000)]
        {
            let Query::Sequence(s) =
                p(&format!("sequence with maxspan={unit} [a where true] [b where true]")).unwrap()
            else {
                panic!()
            };
            assert_eq!(s.maxspan_ms, Some(ms), "{unit}");
        }
    }

    #[test]
    fn stage_limit() {
        let ok = format!("sequence {}", "[a where true] ".repeat(MAX_STAGES));
        assert!(p(&ok).is_ok());
        let bad = format!("sequence {}", "[a where true] ".repeat(MAX_STAGES + 1));
        let col = 10 + 15 * MAX_STAGES as u32;
        assert_err(&bad, RuleErrorKind::Limit, 1, col, "at most 256 stages");
    }

    #[test]
    fn syntax_errors_with_positions() {
        use RuleErrorKind::Syntax;
        // Missing ']' on line 3: found the next stage's '[' (line 3, column 3).
        assert_err(
            "sequence by host.id\n  [process where a == 1\n  [network where b == 2]",
            Syntax,
            3,
            3,
            "expected ']' to close the stage opened at line 2, column 3 but found '['",
        );
        assert_err(
            "sequence\n [a where true]\n  [b where x == 1 and y",
            Syntax,
            3,
            24,
            "unexpected end of query, expected ']' to close the stage opened at line 3, column 3",
        );
        assert_err(
            "any where (a == 1 and b",
            Syntax,
            1,
            24,
            "unexpected end of query, expected ')' to close the '(' at line 1, column 11",
        );
        assert_err(
            "any where (a == 1 b)",
            Syntax,
            1,
            19,
            "expected ')' to close the '(' at line 1, column 11 but found 'b'",
        );
        assert_err(
            "any where f(a b)",
            Syntax,
            1,
            15,
            "',' or ')' to close the arguments of 'f' opened at line 1, column 12 but found 'b'",
        );
        assert_err("any where a in (1, 2", Syntax, 1, 21, "unexpected end of query");
        assert_err(
            "any where a in ()",
            Syntax,
            1,
            17,
            "expected a value in the 'in' list but found ')'",
        );
        assert_err("any where a in \"x\"", Syntax, 1, 16, "expected '(' after 'in'");
        assert_err(
            "any where a not b",
            Syntax,
            1,
            17,
            "'in', 'in~', 'like', 'like~', 'regex' or 'regex~' after 'not'",
        );
        assert_err("any where a = 1", Syntax, 1, 13, "use '=='");
        assert_err("any where a == = 1", Syntax, 1, 16, "use '=='");
        assert_err(
            "any where and",
            Syntax,
            1,
            11,
            "expected a field, value or function call but found 'and'",
        );
        assert_err("any where", Syntax, 1, 10, "unexpected end of query, expected a field");
        assert_err("any where a ==", Syntax, 1, 15, "unexpected end of query");
        assert_err(
            "process a == 1",
            Syntax,
            1,
            9,
            "expected 'where' after the event category but found 'a'",
        );
        assert_err("where a == 1", Syntax, 1, 1, "expected an event category");
        assert_err("", Syntax, 1, 1, "unexpected end of query, expected an event category");
        assert_err(
            "any where a == 1 b",
            Syntax,
            1,
            18,
            "unexpected 'b' after the end of the query",
        );
        assert_err(
            "any where a == 1 == 2",
            Syntax,
            1,
            18,
            "comparisons cannot be chained",
        );
        assert_err("any where a == 1)", Syntax, 1, 17, "unexpected ')'");
        assert_err("any where a.", Syntax, 1, 13, "a field name part after '.'");
        assert_err("any where a~", Syntax, 1, 11, "only allowed on a function call");
        assert_err("any where a ~ b", Syntax, 1, 13, "unexpected '~'");
        assert_err("any where a == 'x'", Syntax, 1, 16, "use double quotes");
        assert_err("any where a == 1 && b", Syntax, 1, 18, "use 'and'");
        assert_err("any where a == 1 || b", Syntax, 1, 18, "use 'or'");
        assert_err("any where a == #", Syntax, 1, 16, "unexpected character '#'");
        assert_err("any where a == \"é\" é", Syntax, 1, 20, "unexpected character 'é'");
        // Sequence structure.
        assert_err("sequence [a where true]", Syntax, 1, 24, "second sequence stage");
        assert_err("sequence by x", Syntax, 1, 14, "first sequence stage");
        assert_err(
            "sequence by [a where true] [b where true]",
            Syntax,
            1,
            13,
            "a field name after 'by'",
        );
        assert_err(
            "sequence with span=5s [a where true] [b where true]",
            Syntax,
            1,
            15,
            "'maxspan' after 'with'",
        );
        assert_err(
            "sequence with maxspan==5s [a where true] [b where true]",
            Syntax,
            1,
            22,
            "found '=='",
        );
        assert_err(
            "sequence with maxspan=5 [a where true] [b where true]",
            Syntax,
            1,
            25,
            "a time unit",
        );
        assert_err(
            "sequence with maxspan=5x [a where true] [b where true]",
            Syntax,
            1,
            24,
            "found 'x'",
        );
        assert_err(
            "sequence with maxspan=1.5s [a where true] [b where true]",
            Syntax,
            1,
            23,
            "whole number",
        );
        assert_err(
            "sequence with maxspan=-1s [a where true] [b where true]",
            Syntax,
            1,
            23,
            "positive maxspan",
        );
        assert_err(
            "sequence with maxspan=0ms [a where true] [b where true]",
            Syntax,
            1,
            23,
            "positive maxspan",
        );
        assert_err(
            "sequence with maxspan=s [a where true] [b where true]",
            Syntax,
            1,
            23,
            "a duration",
        );
        assert_err(
            "sequence with maxspan=9223372036854775807d [a where true] [b where true]",
            Syntax,
            1,
            23,
            "too large",
        );
        assert_err("sequence by a by b [a where true] [b where true]", Syntax, 1, 15, "twice");
        assert_err(
            "sequence [a where true] [b where true] with maxspan=5s",
            Syntax,
            1,
            40,
            "'with maxspan=…' belongs",
        );
        assert_err(
            "sequence [sequence where true] [b where true]",
            Syntax,
            1,
            11,
            "an event category",
        );
    }

    #[test]
    fn lexical_errors_with_positions() {
        use RuleErrorKind::Syntax;
        // Unterminated strings report where they start.
        assert_err("any where a == \"abc", Syntax, 1, 16, "unterminated string");
        assert_err(
            "sequence\n  [a where b == \"x\n  ] [b where true]",
            Syntax,
            2,
            17,
            "unterminated string",
        );
        assert_err("any where a == \"x\\", Syntax, 1, 16, "unterminated string");
        assert_err("any where a == \"\"\"abc\"\"", Syntax, 1, 16, "unterminated string");
        assert_err("any where a == ?\"abc", Syntax, 1, 16, "unterminated string");
        assert_err("any where `abc", Syntax, 1, 11, "unterminated quoted field name");
        assert_err("any where ``", Syntax, 1, 11, "empty quoted field name");
        assert_err("any /* where", Syntax, 1, 5, "unterminated comment");
        // Escapes report the backslash.
        assert_err(r#"any where a == "ab\qc""#, Syntax, 1, 19, "invalid escape sequence '\\q'");
        assert_err(r#"any where a == "\u41""#, Syntax, 1, 17, "expected '{'");
        assert_err(r#"any where a == "\u{}""#, Syntax, 1, 17, "1 to 8 hex digits");
        assert_err(r#"any where a == "\u{123456789}""#, Syntax, 1, 17, "more than 8");
        assert_err(r#"any where a == "\u{41""#, Syntax, 1, 17, "expected '}'");
        assert_err(r#"any where a == "\u{D800}""#, Syntax, 1, 17, "not a valid character");
        assert_err(r#"any where a == "\u{110000}""#, Syntax, 1, 17, "not a valid character");
        // Columns are counted in characters.
        assert_err("any where a == \"ééé\" and b == \"\\x\"", Syntax, 1, 32, "invalid escape");
        // Numbers.
        assert_err("any where a == 9223372036854775808", Syntax, 1, 16, "out of range");
        assert_err("any where a == -9223372036854775809", Syntax, 1, 16, "out of range");
        assert_err("any where a == 1e999", Syntax, 1, 16, "out of range");
    }

    #[test]
    fn unsupported_constructs() {
        use RuleErrorKind::{Syntax, Unsupported};
        assert_err("join [x where true] [y where true]", Unsupported, 1, 1, "'join'");
        assert_err("any where true | head 5", Unsupported, 1, 16, "'| head'");
        assert_err(
            "sequence [x where true] [y where true] | tail 3",
            Unsupported,
            1,
            40,
            "'| tail'",
        );
        assert_err("sequence [x where true | head 1] [y where true]", Unsupported, 1, 24, "pipes");
        assert_err("any where a[0] == 1", Unsupported, 1, 12, "array indexing");
        assert_err("process where descendant of [process where true]", Unsupported, 1, 15, "descendant of");
        assert_err("process where child of [process where true]", Unsupported, 1, 15, "child of");
        assert_err("process where event of [process where true]", Unsupported, 1, 15, "event of");
        assert_err("any where a !: \"x\"", Syntax, 1, 13, "'!:'");
        assert_err("any where a < b < c", Syntax, 1, 17, "chained");
        assert_err("sample by a [x where true] with runs=2 [y where true]", Syntax, 1, 28, "runs");
        assert_err("sample by a [x where true] ![y where true]", Syntax, 1, 28, "only allowed in a sequence");
        assert_err("sequence [x where true] [y where true] with runs=101", Syntax, 1, 50, "between 1 and 100");
        assert_err("sequence ![x where true] ![y where true]", Syntax, 1, 10, "not a missing-event stage");
        assert_err("any where true until [x where true]", Syntax, 1, 16, "'until'");
    }

    #[test]
    fn full_eql_constructs() {
        let Query::Sequence(s) = p("sequence by a with maxspan=1s [x where true] by b with runs=3 ![y where ?c == 1] [z where true] until [u where true] by d").unwrap() else { panic!() };
        assert_eq!((s.stages.len(), s.stages[0].runs, s.stages[1].missing, s.stages[2].missing), (3, 3, true, false));
        assert_eq!(s.until.as_ref().map(|u| u.by[0].name.as_str()), Some("d"));
        let Query::Sample(sm) = p("sample by ?h [x where true] by k [y where true] by k").unwrap() else { panic!() };
        assert!(sm.by[0].optional && sm.by[0].name == "h");
        // `?field` anywhere a field may stand.
        let Expr::Compare { left, .. } = cond("any where ?process.parent.name == \"x\"") else { panic!() };
        assert!(matches!(&*left, Expr::Field(f) if f.optional && f.name == "process.parent.name"));
        // regex operators.
        assert!(matches!(cond("any where a regex~ (\"x.*\", \"y\")"), Expr::Match { op: MatchOp::RegexInsensitive, .. }));
        assert!(matches!(cond("any where a not regex \"x\""), Expr::Match { op: MatchOp::Regex, negated: true, .. }));
        // Arithmetic: precedence, `a -1` as a subtraction, unary minus.
        let Expr::Compare { left, .. } = cond("any where a + b * 2 - 1 == 3") else { panic!() };
        let Expr::Arith { op: ArithOp::Sub, left: sum, .. } = &*left else { panic!("{left:?}") };
        let Expr::Arith { op: ArithOp::Add, right: prod, .. } = &**sum else { panic!() };
        assert!(matches!(&**prod, Expr::Arith { op: ArithOp::Mul, .. }));
        let Expr::Compare { left, .. } = cond("any where a -1 == 3") else { panic!() };
        assert!(matches!(&*left, Expr::Arith { op: ArithOp::Sub, right, .. } if matches!(**right, Expr::Literal(Literal::Int(1), _))));
        let Expr::Compare { right, .. } = cond("any where a == -(b % 2)") else { panic!() };
        assert!(matches!(&*right, Expr::Neg(..)));
        let Expr::Compare { right, .. } = cond("any where a == -5") else { panic!() };
        assert!(matches!(&*right, Expr::Literal(Literal::Int(-5), _)));
        // Functions left of ':' and in comparisons.
        assert!(matches!(cond("any where concat(a, b) : \"x*\""), Expr::Match { op: MatchOp::Colon, .. }));
        assert!(matches!(cond("any where length(a) > 3"), Expr::Compare { op: CmpOp::Gt, .. }));
    }

    #[test]
    fn limits() {
        let e = parse("any where true", ParseLimits { max_depth: 64, max_len: 5 }).unwrap_err();
        assert_eq!((e.kind, e.line), (RuleErrorKind::Limit, 0));
        assert!(e.message.contains("limit of 5 bytes"), "{e}");

        // Exactly at the limit is fine; one more level is not.
        let nest = |n: usize| format!("any where {}a{}", "(".repeat(n), ")".repeat(n));
        let lim = ParseLimits { max_depth: 10, max_len: 1 << 20 };
        assert!(parse(&nest(10), lim).is_ok());
        let e = parse(&nest(11), lim).unwrap_err();
        assert_eq!((e.kind, e.line, e.column), (RuleErrorKind::Limit, 1, 21), "{e}");

        let nots = |n: usize| format!("any where {}a", "not ".repeat(n));
        assert!(parse(&nots(10), lim).is_ok());
        let e = parse(&nots(11), lim).unwrap_err();
        assert_eq!((e.kind, e.column), (RuleErrorKind::Limit, 51));

        let calls = |n: usize| format!("any where {}a{}", "f(".repeat(n), ")".repeat(n));
        assert!(parse(&calls(10), lim).is_ok());
        assert_eq!(parse(&calls(11), lim).unwrap_err().kind, RuleErrorKind::Limit);

        let lists = |n: usize| format!("any where {}a{}", "a in (".repeat(n), ")".repeat(n));
        assert!(parse(&lists(10), lim).is_ok());
        assert_eq!(parse(&lists(11), lim).unwrap_err().kind, RuleErrorKind::Limit);
    }

    #[test]
    fn huge_nesting_does_not_overflow() {
        let big = ParseLimits { max_depth: usize::MAX, max_len: usize::MAX };
        for text in [
            format!("any where {}", "(".repeat(100_000)),
            format!("any where {}a{}", "(".repeat(100_000), ")".repeat(100_000)),
            format!("any where {}a", "not ".repeat(100_000)),
            format!("any where {}", "f(".repeat(100_000)),
            format!("any where {}", "a in (".repeat(100_000)),
            format!("any where {}", "a : (".repeat(100_000)),
        ] {
            for limits in [ParseLimits::default(), big] {
                let limits = ParseLimits { max_len: usize::MAX, ..limits };
                let e = parse(&text, limits).unwrap_err();
                assert_eq!(e.kind, RuleErrorKind::Limit, "{}", truncate(&text, 40));
            }
        }
        // The hard cap holds even with an unlimited max_depth.
        let at_cap =
            format!("any where {}a{}", "(".repeat(HARD_MAX_DEPTH), ")".repeat(HARD_MAX_DEPTH));
        assert!(parse(&at_cap, big).is_ok());
    }

    #[test]
    fn hard_cap_fits_a_default_thread_stack() {
        // The deepest accepted queries of each recursive shape parse on a
        // 2 MiB thread stack (Rust's default for spawned threads), even
        // unoptimised; optimised builds need well under 256 KiB.
        let n = HARD_MAX_DEPTH;
        let texts = [
            format!("any where {}a == 1{}", "(".repeat(n), ")".repeat(n)),
            format!("any where {}a{}", "f(".repeat(n), ")".repeat(n)),
            format!("any where {}a{}", "a in (".repeat(n), ")".repeat(n)),
            format!("any where {}a{}", "a like~ (".repeat(n), ")".repeat(n)),
            format!("any where {}a == 1{}", "not (f(".repeat(n / 3), "))".repeat(n / 3)),
        ];
        let handle = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                let big = ParseLimits { max_depth: usize::MAX, max_len: usize::MAX };
                texts.iter().map(|t| parse(t, big).map(|_| ())).collect::<Result<Vec<_>, _>>()
            })
            .unwrap();
        handle.join().unwrap().unwrap();
    }

    #[test]
    fn display_shows_caret() {
        let e = err("sequence\n  [process where a == 1\n  [network where true]");
        assert_eq!(
            e.to_string(),
            "syntax error at line 3, column 3: expected ']' to close the stage opened at line 2, column 3 but found '['\n    [network where true]\n    ^"
        );
        let e = err("any where\ta == \"x");
        assert_eq!(
            e.to_string(),
            "syntax error at line 1, column 16: unterminated string: no closing '\"' on this line (use \"\"\"…\"\"\" for text spanning lines)\n  any where\ta == \"x\n           \t     ^"
        );
    }

    #[test]
    fn spans_cover_their_text() {
        let text = "any where process.name : (\"a\", \"b\") and not f~(x, 1) or y == \"z\"";
        let Expr::Or(items, span) = cond(text) else { panic!() };
        assert_eq!(&text[span.start..span.end], &text[10..]);
        let Expr::And(conj, span) = &items[0] else { panic!() };
        assert_eq!(&text[span.start..span.end], "process.name : (\"a\", \"b\") and not f~(x, 1)");
        assert_eq!(
            &text[conj[0].span().start..conj[0].span().end],
            "process.name : (\"a\", \"b\")"
        );
        let Expr::Not(call, nspan) = &conj[1] else { panic!() };
        assert_eq!(&text[nspan.start..nspan.end], "not f~(x, 1)");
        assert_eq!(&text[call.span().start..call.span().end], "f~(x, 1)");
        assert_eq!(&text[items[1].span().start..items[1].span().end], "y == \"z\"");
    }

    /// xorshift64*: a tiny deterministic PRNG for the mutation test.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            if n == 0 {
                0
            } else {
                (self.next() % n as u64) as usize
            }
        }

        /// A random char boundary of `s`.
        fn boundary(&mut self, s: &str) -> usize {
            let mut i = self.below(s.len() + 1);
            while !s.is_char_boundary(i) {
                i -= 1;
            }
            i
        }
    }

    #[test]
    fn mutated_inputs_never_panic() {
        const SNIPPETS: &[&str] = &[
            "(",
            ")",
            "[",
            "]",
            "\"",
            "\"\"\"",
            "?\"",
            "`",
            "'",
            "\\",
            "\\u{",
            "/*",
            "*/",
            "//",
            "\n",
            "~",
            "!",
            "=",
            "==",
            ":",
            ",",
            ".",
            "|",
            "not ",
            " and ",
            " or ",
            " in~ ",
            " like ",
            "regex",
            "sequence ",
            "until ",
            "by ",
            "with maxspan=",
            "99999999999999999999",
            "-",
            "1e999",
            "é",
            "\u{1F600}",
            "\0",
        ];
        let base = format!(
            "{RULE_V5}any where a == \"\\u{{41}}\" and f~(`x``y`, -1.5e3, ?\"r\", \"\"\"t\"\"\")"
        );
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let limits = ParseLimits { max_depth: 16, max_len: 1 << 20 };
        let mut ok = 0;
        for case in 0..6000 {
            let mut s = if case % 2 == 0 { RULE_V5.to_string() } else { base.clone() };
            for _ in 0..1 + rng.below(4) {
                let a = rng.boundary(&s);
                let b = rng.boundary(&s);
                let (lo, hi) = (a.min(b), a.max(b));
                match rng.below(4) {
                    0 => s.replace_range(lo..hi, ""),
                    1 => {
                        let dup = s[lo..hi].to_string();
                        s.insert_str(hi, &dup);
                    }
                    2 => s.insert_str(lo, SNIPPETS[rng.below(SNIPPETS.len())]),
                    _ => {
                        // Delete a short range only.
                        let end = (lo + rng.below(8)).min(s.len());
                        let mut end = end;
                        while !s.is_char_boundary(end) {
                            end -= 1;
                        }
                        s.replace_range(lo..end, "");
                    }
                }
            }
            match parse(&s, limits) {
                Ok(_) => ok += 1,
                Err(e) => {
                    // Positions, when present, point into the text.
                    if e.line > 0 {
                        assert!(e.column >= 1);
                        assert!(e.line as usize <= s.split('\n').count(), "{e}");
                    }
                    let _ = e.to_string();
                }
            }
        }
        assert!(ok > 0, "some mutations should still parse");

        // Random byte soup (lossily made UTF-8) and random token soup.
        for _ in 0..3000 {
            let n = rng.below(64);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            let s = String::from_utf8_lossy(&bytes);
            let _ = parse(&s, limits).map_err(|e| e.to_string());
            let mut t = String::from(if rng.below(2) == 0 { "any where " } else { "sequence " });
            for _ in 0..rng.below(30) {
                t.push_str(SNIPPETS[rng.below(SNIPPETS.len())]);
                if rng.below(3) == 0 {
                    t.push_str("a ");
                }
            }
            let _ = parse(&t, limits).map_err(|e| e.to_string());
        }
    }
}
