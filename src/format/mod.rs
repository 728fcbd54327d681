//! Record formats: reading the few fields a rule asks for out of a record,
//! and writing an alert's fields into it, everything else byte for byte.
//! JSON ([`event`]: the field scanner and the validating reader; [`syntax`]:
//! the allocation-free syntax check; [`merge`]: alert fields merged into a
//! JSON object), MessagePack ([`msgpack`]: Fluent Bit bodies and chunks),
//! and the two value kinds whose text needs care: timestamps ([`time`]) and
//! IP addresses ([`ip`]).
//!
//! The bottom layer: it uses no other folder of the crate (only std and
//! crates), and knows nothing of rules, alerts or detectors.

pub mod event;
pub mod ip;
pub mod merge;
pub mod msgpack;
pub mod syntax;
pub mod time;
