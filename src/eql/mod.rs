//! The EQL front end: a rule's query from text to what runs it. The syntax
//! tree ([`ast`]), the parser ([`parser`]) and load-time errors ([`error`]),
//! field types ([`types`], with ECS's built in), Lucene regular expressions
//! ([`lucene`]), and the query's two lowered forms: predicates over field
//! slots for the fast engine ([`compile`]), and the generic engine
//! ([`Engine`], with conditions in [`eval`] and typed values in [`value`]).
//!
//! May use [`crate::format`] only (field reading, time, IP).
//!
//! The generic engine sits here rather than in [`crate::engine`]: a
//! [`crate::Rule`] (configuration layer) builds it from its query at load
//! time, as it builds the fast engine's [`compile::CompiledQuery`], and it
//! evaluates EQL semantics on values handed to it, without records, alerts or
//! detector state; [`crate::engine::generic`] drives it over records.

pub mod ast;
pub mod compile;
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
