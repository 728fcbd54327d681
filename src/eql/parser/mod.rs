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

mod expr;
mod lexer;
mod query;

use lexer::{truncate, Lexer, Tok, Token};

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
}

#[cfg(test)]
mod tests;
