//! # apt-netcon
//!
//! A streaming detector for Elastic Security's EQL rule "Suspicious APT
//! Package Manager Network Connection", built to run inside log shippers.
//!
//! Records (Elastic Defend events as JSON) go through a [`Detector`] one at a
//! time. Every record leaves byte-for-byte as it came, except the network
//! event that completes the rule's sequence: that one leaves with alert fields
//! added (see [`alert::annotate`]).
//!
//! The rule is data: its EQL text is parsed ([`eql`]) and compiled
//! ([`eql::compile`]) into predicates over the few fields it reads
//! ([`format::event`]);
//! partial sequences are held in bounded, event-time-expired state
//! ([`engine::sequence`]). The semantics are Elasticsearch's, point by point; the
//! documentation (docs/semantics.md) lists them with the choices made where a stream differs from
//! a sorted index.
//!
//! Any other Elasticsearch EQL rule runs too: a query within the fast
//! engine's subset ([`eql::compile::beyond_fast_path`],
//! [`eql::compile::typed_like_elasticsearch`]) on the fast engine above, every
//! other one (optional fields outside ECS, `regex` on other than keyword
//! fields, arithmetic, functions on values, comparisons the fast engine
//! cannot type, more than 32 stages, `until`, missing-event stages,
//! `sample`) on the
//! generic engine ([`eql::Engine`]: conditions in [`eql::eval`], typed
//! values in [`eql::value`], field types in [`eql::types`]), which the
//! detector drives through [`engine::generic`]. Many rules at once:
//! [`engine::pack`].
//!
//! Tuning works as Elastic's rule exceptions do: exception items
//! ([`config::exceptions`], matched by [`engine::exceptions`]) make the events they match invisible to every stage of
//! the rule, and each item counts what it removed. Rules can also come from
//! Elastic detection-rules TOML files ([`config::rule_file`]).
//!
//! The source is one folder per layer, and dependencies run one way, from
//! the top down (`tests/layers.rs` checks it and prints the graph:
//! `cargo test --test layers -- --nocapture`):
//!
//! * [`host`]: the C ABI and the Fluent Bit plugin;
//! * [`engine`]: the detector, sequences and their state, exceptions, the
//!   prefilter, rule packs;
//! * [`alert`]: what an alert says (fields, carried events, reason);
//! * [`config`]: configuration, rules, rule files, exception items;
//! * [`eql`]: the EQL front end (parse, types, compile, the generic engine);
//! * [`format`](mod@format): record formats (JSON scan and syntax check, MessagePack,
//!   time, IP).
//!
//! Each layer may use only the layers below it; each folder's module docs
//! say what it does and what it may use.

#![deny(unsafe_code)]

pub mod alert;
pub mod config;
pub mod engine;
pub mod eql;
pub mod format;
pub mod host;

pub use config::settings::{Config, ConfigError, LoadError};
pub use engine::detector::{Detector, FlushReport, RecordError, Stats, Verdict};
pub use eql::{RuleError, RuleErrorKind};
pub use config::exceptions::{ExceptionItem, Operator};
pub use config::rule::{Rule, RuleMeta};

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A deterministic xorshift64 generator, for the unit tests' random inputs.
#[cfg(test)]
pub(crate) fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

/// One to three random mutations of `b`, for the unit tests' damaged
/// inputs: a bit flipped, a byte replaced, or the bytes cut short.
#[cfg(test)]
pub(crate) fn mutate(b: &mut Vec<u8>, rnd: &mut impl FnMut() -> u64) {
    for _ in 0..1 + rnd() % 3 {
        if b.is_empty() {
            break;
        }
        let at = (rnd() % b.len() as u64) as usize;
        match rnd() % 3 {
            0 => b[at] ^= 1 << (rnd() % 8),
            1 => b[at] = rnd() as u8,
            _ => b.truncate(at),
        }
    }
}
