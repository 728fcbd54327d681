//! Configuration and rules as loaded: the detector's configuration (the
//! key table and its JSON form, [`settings`]), rules and their metadata
//! ([`rule`]: the built-in rules, a rule's query parsed and compiled for
//! the engine that will run it), Elastic detection-rules TOML files
//! ([`rule_file`]), and exception items as written ([`exceptions`]:
//! operators, entries, parsing; their matching is the engine's).
//!
//! May use [`crate::eql`] and [`crate::format`]; nothing above (no alert
//! writing, no detector).

pub mod exceptions;
pub mod rule;
pub mod rule_file;
pub mod settings;
