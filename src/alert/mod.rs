//! Alert writing: what an alert says and how it is built from the events
//! of a match. The flagship rule's alert fields ([`annotate`]), the
//! compact form of the fields an earlier stage carries into the alert
//! ([`carried`]: also the per-stage event a match is made of), and every
//! other rule's alert with Kibana's reason ([`rule_alert`]). Putting the
//! alert into the record's bytes is the format layer's
//! ([`crate::format::merge`], [`crate::format::msgpack`]).
//!
//! May use [`crate::config`] (rule metadata), [`crate::eql`] and
//! [`crate::format`]; nothing of the engine or the hosts.

pub mod annotate;
pub mod carried;
pub mod rule_alert;
