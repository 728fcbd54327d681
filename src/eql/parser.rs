//! EQL parser (placeholder, being written).
use super::ast::Query;
use super::error::RuleError;

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

/// Parse a whole query.
pub fn parse(_text: &str, _limits: ParseLimits) -> Result<Query, RuleError> {
    unimplemented!()
}
