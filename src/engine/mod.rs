//! The engine: records through a rule, one at a time. The [`detector`]
//! (verdicts, counters, lateness), partial sequences ([`sequence`]) in a
//! bounded store ([`hostq`]), exception matching ([`exceptions`]), the
//! byte prefilter, rules on the generic EQL engine inside a detector
//! ([`generic`]), many rules at once ([`pack`], with its index of required
//! values), what a rule reads and requires for callers that decide before
//! the detector ([`footprint`]), and Fluent Bit chunks through a detector
//! ([`chunk`], [`standalone`]).
//!
//! May use [`crate::alert`], [`crate::config`], [`crate::eql`] and
//! [`crate::format`]; nothing of the host bindings.
//!
//! The generic EQL engine itself stays in [`crate::eql`] (its module docs
//! say why); this layer drives it over records ([`generic`]). The byte
//! prefilter (`prefilter.rs`) is private to the layer.
//!
//! Two modules sit here rather than where their names suggest: [`footprint`]
//! is read by the C ABI and the CLI alike, and is built from the compiled
//! rule and the prefilter (this layer's), with no `unsafe`; [`standalone`]
//! (alerts appended to a chunk) and [`chunk`] drive a [`crate::Detector`],
//! so they cannot sit in the alert or format layers below it.

pub mod chunk;
pub mod detector;
pub mod exceptions;
pub mod footprint;
#[doc(hidden)]
pub mod generic;
pub mod hostq;
pub mod pack;
mod prefilter;
pub mod pruned;
pub mod sequence;
pub mod standalone;
