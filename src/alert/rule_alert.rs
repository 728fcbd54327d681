//! The alert of any rule, in the rule's own words (both engines).
//!
//! The built-in APT rule keeps the alert it has always written
//! ([`crate::alert::annotate::Alert`]: `apt_netcon.shell`, its own reason). Every
//! other rule — from a file, a directory, or a pack — writes this one:
//!
//! * `rule` — ECS `rule.*` from the rule file: `id`, `uuid` (both the
//!   `rule_id`), `name`, `version`, `description`, `author`, `license`,
//!   `reference` (the first), nothing this project invents;
//! * `threat` — ECS `threat.*`, flattened, from the rule's MITRE mapping;
//! * `kibana.alert.*` — as Kibana writes an EQL alert: `uuid`, `rule`,
//!   `severity`, `risk_score`, `reason`, `original_time`, `status`,
//!   `workflow_status`, `depth`, `ancestors` (each event by its id), and for
//!   a sequence `group.id`;
//! * `eql` — for a sequence or a sample only: `events`, every position of
//!   the result in stage order (`stage`, counted from 1, then the event's
//!   identifying ECS fields — time, event id, category, type, action, host,
//!   user, process and parent identity — and every field the rule's query
//!   reads, nested as ECS nests them; `{"stage": k, "missing": true}` for a
//!   missing-event stage), `join_keys` (the `by` values) and `span_ms`
//!   (first to last event). A single-event rule's alert has no `eql` root:
//!   the record is the event, as in Kibana.
//!
//! With `kibana_fields: false` the `kibana` root is left out and `eql`
//! holds `alert_id`, `group_id` (a sequence), `reason`, `severity` and
//! `risk_score`.
//!
//! **Reason.** Kibana's, word for word (`buildReasonMessageUtil` in the
//! security solution's `reason_formatters.ts`): "`<event.category>` event
//! with process `<process.name>`, parent process `<process.parent.name>`,
//! file `<file.name>`, source `<source.address>`:`<source.port>`,
//! destination `<destination.address>`:`<destination.port>`, by
//! `<user.name>` on `<host.name>` created `<severity>` alert `<name>`.",
//! each part only when its field is present (arrays joined by `, `). For a
//! sequence Kibana builds it from the fields every event holds with the
//! same value (the intersection of the events), and so does this.

use crate::alert::annotate::{ancestor, kibana_root, AnnotationStyle, KibanaAlert, RuleParts};
use crate::config::rule::RuleMeta;
use serde_json::{Map, Value};

/// The fields every event of a result carries into the alert, besides the
/// APT alert's ([`crate::alert::carried::CARRIED_FIELDS`]: time, event id, host
/// name, user name, process and parent identity) and the fields its rule's
/// query reads.
pub const IDENTITY_FIELDS: &[&str] = &["event.category", "event.type", "event.action", "host.id", "user.id"];

/// Every field an event of a result carries, before the query's: the APT
/// alert's, [`IDENTITY_FIELDS`] and [`REASON_FIELDS`], each once.
pub fn carried_fields() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = crate::alert::carried::CARRIED_FIELDS.to_vec();
    for f in IDENTITY_FIELDS.iter().chain(REASON_FIELDS) {
        if !out.contains(f) {
            out.push(f);
        }
    }
    out
}

/// The fields Kibana's reason reads (carried too, so that a sequence's
/// reason can be built from its events).
pub const REASON_FIELDS: &[&str] = &[
    "event.category",
    "process.name",
    "process.parent.name",
    "file.name",
    "source.address",
    "source.port",
    "destination.address",
    "destination.port",
    "user.name",
    "host.name",
];

/// ECS fields whose normalization is `array` (a single value is still an
/// array), of those an alert carries: written as arrays whatever the event
/// held.
pub fn is_array_field(name: &str) -> bool {
    matches!(
        name,
        "process.args" | "event.category" | "event.type" | "process.parent.args" | "related.ip" | "related.user" | "related.hosts" | "tags"
    )
}

/// What a rule's query is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Event,
    Sequence,
    Sample,
}

/// One alert of a rule (see the module docs).
#[derive(Debug)]
pub struct RuleAlert<'a> {
    pub meta: &'a RuleMeta,
    pub parts: &'a RuleParts,
    pub style: &'a AnnotationStyle,
    pub shape: Shape,
    /// Every position of the result in stage order: the event's carried
    /// fields (nested), or `None` for a missing-event stage.
    pub events: Vec<Option<Map<String, Value>>>,
    /// The events' ids, in stage order (missing stages have none).
    pub ids: Vec<String>,
    pub join_keys: Vec<Option<String>>,
    pub span_ms: i64,
    pub alert_id: String,
    pub group_id: String,
    /// `@timestamp` of the completing event, as written.
    pub original_time: String,
    pub reason: String,
    /// The rule's parts as raw parts ([`RuleParts::raw_roots`]): only for
    /// roots that go to [`crate::format::merge::merge`] with no prefix.
    pub raw: bool,
}

impl RuleAlert<'_> {
    /// The alert's roots (under the configured prefix).
    pub fn into_roots(self) -> Map<String, Value> {
        let raw = self.raw && self.style.prefix.is_empty();
        let (mut out, kibana_rule) = if raw { self.parts.raw_roots() } else { (self.parts.roots(self.style), Value::Null) };
        let mut own = Map::new();
        if self.shape != Shape::Event {
            let events = self
                .events
                .into_iter()
                .enumerate()
                .map(|(i, e)| {
                    let mut m = Map::with_capacity(16);
                    m.insert("stage".into(), Value::from(i + 1));
                    match e {
                        Some(fields) => m.extend(fields),
                        None => {
                            m.insert("missing".into(), Value::Bool(true));
                        }
                    }
                    Value::Object(m)
                })
                .collect();
            own.insert("events".into(), Value::Array(events));
            let keys = self.join_keys.into_iter().map(|k| k.map_or(Value::Null, Value::String)).collect();
            own.insert("join_keys".into(), Value::Array(keys));
            own.insert("span_ms".into(), Value::from(self.span_ms));
        }
        let sequence = self.shape == Shape::Sequence;
        if self.style.kibana {
            let kibana = kibana_root(KibanaAlert {
                uuid: self.alert_id,
                group_id: sequence.then_some(self.group_id),
                rule: if raw { kibana_rule } else { self.parts.kibana_rule() },
                meta: self.meta,
                reason: self.reason,
                original_time: self.original_time,
                ancestors: self.ids.into_iter().map(ancestor).collect(),
            });
            out.insert("kibana".into(), kibana);
        } else {
            own.insert("alert_id".into(), Value::from(self.alert_id));
            if sequence {
                own.insert("group_id".into(), Value::from(self.group_id));
            }
            own.insert("reason".into(), Value::from(self.reason));
            own.insert("severity".into(), Value::from(self.meta.severity.clone()));
            own.insert("risk_score".into(), Value::from(self.meta.risk_score));
        }
        if !own.is_empty() {
            out.insert("eql".into(), Value::Object(own));
        }
        self.style.finish(out)
    }
}

/// The value at a dotted path of a nested document (or under the dotted
/// name itself).
fn at<'v>(doc: &'v Map<String, Value>, path: &str) -> Option<&'v Value> {
    if let Some(v) = doc.get(path) {
        return Some(v);
    }
    let (head, rest) = path.split_once('.')?;
    match doc.get(head)? {
        Value::Object(m) => at(m, rest),
        _ => None,
    }
}

/// A reason field's text, as Kibana renders it: `None` for a missing, null
/// or empty value (or `["-"]`); array elements joined by `, `.
fn text(v: Option<&Value>) -> Option<String> {
    let one = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    };
    match v? {
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().filter_map(one).collect();
            if parts.is_empty() || (parts.len() == 1 && parts[0] == "-") {
                return None;
            }
            Some(parts.join(", "))
        }
        Value::String(s) if s.is_empty() || s == "-" => None,
        other => one(other),
    }
}

/// Kibana's reason (see the module docs) from the events of a result: a
/// field counts when every event holds it with the same value.
pub fn reason(meta: &RuleMeta, docs: &[&Map<String, Value>]) -> String {
    let get = |path: &str| -> Option<String> {
        let first = at(docs.first()?, path)?;
        if docs[1..].iter().any(|d| at(d, path) != Some(first)) {
            return None;
        }
        text(Some(first))
    };
    let mut s = String::new();
    if let Some(c) = get("event.category") {
        s.push_str(&c);
        s.push(' ');
    }
    s.push_str("event");
    let mut parts = String::new();
    let mut add = |label: &str, v: Option<String>| {
        if let Some(v) = v {
            parts.push_str(&format!(" {label} {v},"));
        }
    };
    add("process", get("process.name"));
    add("parent process", get("process.parent.name"));
    add("file", get("file.name"));
    // Kibana's template: ` source <address>` then `:<port>,`, each only
    // when present (so an address without a port has no comma).
    for (label, addr, port) in [("source", "source.address", "source.port"), ("destination", "destination.address", "destination.port")] {
        if let Some(a) = get(addr) {
            parts.push_str(&format!(" {label} {a}"));
        }
        if let Some(p) = get(port) {
            parts.push_str(&format!(":{p},"));
        }
    }
    if !parts.is_empty() {
        s.push_str(" with");
        s.push_str(&parts);
    }
    if let Some(u) = get("user.name") {
        s.push_str(&format!(" by {u}"));
    }
    if let Some(h) = get("host.name") {
        s.push_str(&format!(" on {h}"));
    }
    s.push_str(&format!(" created {} alert {}.", meta.severity, meta.name));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta() -> RuleMeta {
        let mut m = crate::config::rule::meta_for_file("Test rule");
        m.name = "Test rule".into();
        m.severity = "high".into();
        m
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn the_reason_is_kibanas() {
        let e = obj(json!({"event": {"category": ["process"]}, "process": {"name": "curl", "parent": {"name": "bash"}},
            "user": {"name": "root"}, "host": {"name": "web-1"}}));
        assert_eq!(reason(&meta(), &[&e]), "process event with process curl, parent process bash, by root on web-1 created high alert Test rule.");
        let n = obj(json!({"event": {"category": "network"}, "source": {"address": "10.0.0.1", "port": 5}, "destination": {"address": "1.2.3.4", "port": 443}}));
        assert_eq!(reason(&meta(), &[&n]), "network event with source 10.0.0.1:5, destination 1.2.3.4:443, created high alert Test rule.");
        let bare = obj(json!({"host": {"name": "h"}}));
        assert_eq!(reason(&meta(), &[&bare]), "event on h created high alert Test rule.");
        let f = obj(json!({"file": {"name": "x.sh"}, "destination": {"address": "1.2.3.4"}}));
        assert_eq!(reason(&meta(), &[&f]), "event with file x.sh, destination 1.2.3.4 created high alert Test rule.");
    }

    #[test]
    fn a_sequence_reason_keeps_what_every_event_shares() {
        let a = obj(json!({"event": {"category": ["process"]}, "process": {"name": "curl"}, "user": {"name": "root"}, "host": {"name": "h1"}}));
        let b = obj(json!({"event": {"category": ["network"]}, "process": {"name": "curl"}, "user": {"name": "root"}, "host": {"name": "h1"}}));
        assert_eq!(reason(&meta(), &[&a, &b]), "event with process curl, by root on h1 created high alert Test rule.");
    }
}
