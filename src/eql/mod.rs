//! The EQL front end: syntax tree, parser and load-time errors.

pub mod ast;
pub mod error;
pub mod parser;

pub use ast::*;
pub use error::{RuleError, RuleErrorKind};
pub use parser::{parse, ParseLimits};
