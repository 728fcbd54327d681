//! # apt-netcon
//!
//! A streaming detector for Elastic Security's EQL rule "Suspicious APT
//! Package Manager Network Connection", built to run inside log shippers.
//!
//! Records (Elastic Defend events as JSON) go through a [`Detector`] one at a
//! time. Every record leaves byte-for-byte as it came, except the network
//! event that completes the rule's sequence: that one leaves with alert fields
//! added (see [`annotate`]).
//!
//! The rule is data: its EQL text is parsed ([`eql`]) and compiled
//! ([`compile`]) into predicates over the few fields it reads ([`event`]);
//! partial sequences are held in bounded, event-time-expired state
//! ([`sequence`]). The semantics are Elasticsearch's, point by point; the
//! crate README lists them with the choices made where a stream differs from
//! a sorted index.
//!
//! Any other Elasticsearch EQL rule runs too: a query within the fast
//! engine's subset ([`compile::beyond_fast_path`],
//! [`compile::typed_like_elasticsearch`]) on the fast engine above, every
//! other one (optional fields, `regex`, arithmetic, functions on values,
//! typed comparisons, `runs`, `until`, missing-event stages, `sample`) on the
//! generic engine ([`eql::Engine`]: conditions in [`eql::eval`], typed
//! values in [`eql::value`], field types in [`eql::types`]), which the
//! detector drives through [`generic`]. Many rules at once: [`pack`].
//!
//! Tuning works as Elastic's rule exceptions do: exception items
//! ([`exceptions`]) make the events they match invisible to every stage of
//! the rule, and each item counts what it removed. Rules can also come from
//! Elastic detection-rules TOML files ([`rule_file`]).
//!
//! Dependencies run one way: `ffi` → [`pack`] → [`detector`] → {[`generic`],
//! [`rule`], [`sequence`], [`annotate`], [`config`]} → {[`eql`], [`event`]}.

#![deny(unsafe_code)]

pub mod annotate;
pub mod carried;
pub mod compile;
pub mod config;
pub mod detector;
pub mod eql;
pub mod event;
pub mod exceptions;
pub mod footprint;
#[doc(hidden)]
pub mod generic;
#[allow(unsafe_code)]
pub mod ffi;
#[allow(unsafe_code)]
pub mod fluentbit;
pub mod hostq;
pub mod ip;
pub mod msgpack;
pub mod pack;
mod prefilter;
pub mod rule;
pub mod rule_file;
pub mod rule_alert;
pub mod sequence;
pub mod standalone;
pub mod syntax;
pub mod time;

pub use config::{Config, ConfigError, LoadError};
pub use detector::{Detector, FlushReport, RecordError, Stats, Verdict};
pub use eql::{RuleError, RuleErrorKind};
pub use exceptions::{ExceptionItem, Operator};
pub use rule::{Rule, RuleMeta};

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
