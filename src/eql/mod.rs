//! The EQL front end: syntax tree, parser and load-time errors.

pub mod ast;
pub mod engine;
pub mod error;
pub mod eval;
pub mod lucene;
pub mod parser;
pub mod types;
pub mod value;

pub use ast::*;
pub use engine::{Engine, EngineOptions, EngineStats, Match};
pub use error::{RuleError, RuleErrorKind};
pub use parser::{parse, ParseLimits};
pub use types::{FieldInfo, FieldType, TypeMap};
