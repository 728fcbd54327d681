//! Shared pieces of the fuzz targets: an input cursor, a generator of
//! Elastic Defend-like events driven by fuzz bytes, a MessagePack encoder for
//! them, Fluent Bit chunk builders, the invariants every target checks, and
//! the seed corpus (written from the bundled sample and the built-in rules).
//!
//! Nothing here is used by the library; the targets are in `fuzz_targets/`.
//!
//! One module a piece: [`sample`] (the bundled sample), [`input`] (the
//! cursor), [`events`] (generated events), [`chunks`] (MessagePack and
//! Fluent Bit chunks), [`oracle`] (configs and the invariants), [`seeds`]
//! (the seed corpus); then one module a target. Everything shared is
//! re-exported here, at the crate root, where the targets take it from.

mod chunks;
mod events;
mod input;
mod oracle;
mod sample;
mod seeds;

pub use chunks::*;
pub use events::*;
pub use input::*;
pub use oracle::*;
pub use sample::*;
pub use seeds::*;

// ---------------------------------------------------------------------------
// The targets. `fuzz_targets/*.rs` call these; `tests/regressions.rs` (in the
// main crate, which includes this file) replays crash inputs through exactly
// the same code and checks.

pub mod c_abi;
pub mod json_record;
pub mod msgpack_chunk;
pub mod rule_parser;
