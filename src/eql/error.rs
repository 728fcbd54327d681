//! Errors found while loading a rule: syntax errors from the parser and
//! semantic errors (unknown function, wrong argument type, unsupported
//! construct, limit exceeded) from the compiler. Each carries the position of
//! the offending text and renders with a caret under it.

use super::ast::Span;
use std::fmt;

/// What kind of problem a [`RuleError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleErrorKind {
    /// The text is not valid EQL.
    Syntax,
    /// A function the engine does not know.
    UnknownFunction,
    /// A function or operator got an argument of the wrong type or arity.
    BadArgument,
    /// Valid EQL that this engine does not support (e.g. `until`, `regex`).
    Unsupported,
    /// The query exceeds a size or nesting limit.
    Limit,
    /// Anything else about the rule (metadata, file, name).
    Invalid,
}

impl RuleErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleErrorKind::Syntax => "syntax error",
            RuleErrorKind::UnknownFunction => "unknown function",
            RuleErrorKind::BadArgument => "bad argument",
            RuleErrorKind::Unsupported => "unsupported",
            RuleErrorKind::Limit => "limit exceeded",
            RuleErrorKind::Invalid => "invalid rule",
        }
    }
}

/// A rule that could not be loaded: a kind, a message, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub kind: RuleErrorKind,
    pub message: String,
    /// 1-based line; 0 when the error has no position.
    pub line: u32,
    /// 1-based column in characters; 0 when the error has no position.
    pub column: u32,
    /// The source line the error points into, for the caret display.
    pub source_line: Option<String>,
}

impl RuleError {
    /// An error at `span` of `source`.
    pub fn at(kind: RuleErrorKind, message: impl Into<String>, source: &str, span: Span) -> Self {
        let source_line = source
            .lines()
            .nth(span.line.saturating_sub(1) as usize)
            .map(|l| l.to_string());
        RuleError {
            kind,
            message: message.into(),
            line: span.line,
            column: span.column,
            source_line,
        }
    }

    /// An error with no position.
    pub fn new(kind: RuleErrorKind, message: impl Into<String>) -> Self {
        RuleError { kind, message: message.into(), line: 0, column: 0, source_line: None }
    }
}

impl fmt::Display for RuleError {
    /// `syntax error at line 3, column 14: expected ']'` followed, when the
    /// position is known, by the source line and a caret under the column.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            return write!(f, "{}: {}", self.kind.as_str(), self.message);
        }
        write!(
            f,
            "{} at line {}, column {}: {}",
            self.kind.as_str(),
            self.line,
            self.column,
            self.message
        )?;
        if let Some(src) = &self.source_line {
            let pad: String = src
                .chars()
                .take(self.column.saturating_sub(1) as usize)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(f, "\n  {}\n  {}^", src, pad)?;
        }
        Ok(())
    }
}

impl std::error::Error for RuleError {}
