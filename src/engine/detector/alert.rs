//! The alert of a completed sequence: its ids (digests of the rule and of
//! the events' identities), its fields (the flagship rule's, or any other
//! rule's), and Kibana's reason.

use super::*;

impl Detector {
    /// A completed sequence's alert fields.
    /// `raw`: the roots go straight to [`merge`] (JSON): the rule's parts
    /// may be raw ([`crate::format::merge::raw_part`]).
    pub(super) fn completed(&mut self, seq: &Partial, fields: &Fields, raw: bool) -> Map<String, Value> {
        self.stats.sequences_completed += 1;
        self.build_alert(seq, fields, raw)
    }

    /// A sequence's group id and alert id: digests of the rule and of its
    /// events' identities.
    pub(super) fn alert_ids(&self, seq: &Partial) -> (u128, u128) {
        let meta = self.rule.meta();
        let mut h = Hasher::new();
        h.write(meta.rule_id.as_bytes());
        h.write(&meta.version.to_le_bytes());
        for e in &seq.events {
            h.write(&e.digest.to_le_bytes());
        }
        let group = h.finish();
        h.write(b"alert");
        (group, h.finish())
    }

    pub(super) fn build_alert(&self, seq: &Partial, fields: &Fields, raw: bool) -> Map<String, Value> {
        if !self.rule.writes_apt_alert() {
            return self.build_rule_alert(seq, fields, raw);
        }
        let meta = self.rule.meta();
        let (group, alert_id) = self.alert_ids(seq);
        let first_str = |f: &Fields, name: &str| -> Option<String> {
            let slot = self.table.lookup(name)?;
            let v = f.get(slot).find_map(|v| v.keyword().map(|s| s.into_owned()));
            v
        };
        let original_time = first_str(fields, "@timestamp").unwrap_or_default();
        // The first event's carried fields, decoded once for the reason and
        // the alert.
        let first = seq.events.first().filter(|_| seq.events.len() > 1).map(|e| e.info.to_json());
        let reason = self.reason(seq, fields, &first_str, first.as_ref());
        let alert = Alert {
            meta,
            events: &seq.events,
            alert_id: format_id(alert_id),
            group_id: format_id(group),
            reason,
            original_time,
        };
        self.style.finish(alert.to_json_with_first(&self.style, &self.alert_parts, first))
    }

    /// The alert of any rule but the built-in one ([`crate::alert::rule_alert`]).
    pub(super) fn build_rule_alert(&self, seq: &Partial, fields: &Fields, raw: bool) -> Map<String, Value> {
        use crate::alert::rule_alert::{RuleAlert, Shape};
        let meta = self.rule.meta();
        let (group, alert_id) = self.alert_ids(seq);
        let docs: Vec<Map<String, Value>> = seq
            .events
            .iter()
            .map(|e| match e.info.to_json_named(&self.carried_names) {
                Value::Object(m) => m,
                _ => Map::new(),
            })
            .collect();
        let ids = seq
            .events
            .iter()
            .zip(&docs)
            .map(|(e, d)| match d.get("event").and_then(|v| v.get("id")) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => format_id(e.digest),
            })
            .collect();
        let original_time = self
            .table
            .lookup("@timestamp")
            .and_then(|slot| fields.get(slot).find_map(|v| v.keyword().map(|s| s.into_owned())))
            .unwrap_or_default();
        let refs: Vec<&Map<String, Value>> = docs.iter().collect();
        let reason = crate::alert::rule_alert::reason(meta, &refs);
        let span = match (seq.events.first(), seq.events.last()) {
            (Some(a), Some(b)) => b.time - a.time,
            _ => 0,
        };
        let sequence = self.rule.compiled().is_sequence;
        let alert = RuleAlert {
            meta,
            parts: &self.alert_parts,
            style: &self.style,
            shape: if sequence { Shape::Sequence } else { Shape::Event },
            events: if sequence { docs.into_iter().map(Some).collect() } else { Vec::new() },
            ids,
            join_keys: if sequence { self.last_keys.clone() } else { Vec::new() },
            span_ms: span,
            alert_id: format_id(alert_id),
            group_id: format_id(group),
            original_time,
            reason,
            raw,
        };
        alert.into_roots()
    }

    /// `first_fields`: the first event's carried fields, when decoded
    /// already (else decoded here, for a sequence of two events or more).
    pub(super) fn reason(&self, seq: &Partial, f: &Fields, get: &dyn Fn(&Fields, &str) -> Option<String>, first_fields: Option<&Value>) -> String {
        let meta = self.rule.meta();
        let host = get(f, "host.name").or_else(|| get(f, "host.id")).unwrap_or_else(|| "an unknown host".into());
        let proc_ = get(f, "process.name").unwrap_or_else(|| "a process".into());
        let pid = get(f, "process.pid").map(|p| format!(" (pid {p})")).unwrap_or_default();
        let dest = match (get(f, "destination.ip"), get(f, "destination.port")) {
            (Some(ip), Some(port)) => format!(" to {ip} port {port}"),
            (Some(ip), None) => format!(" to {ip}"),
            _ => String::new(),
        };
        let action = get(f, "event.action").unwrap_or_else(|| "event".into()).replace('_', " ");
        let mut s = format!("{proc_}{pid} {action}{dest} on {host}");
        if seq.events.len() > 1 {
            let first = &seq.events[0];
            let decoded;
            let info = match first_fields {
                Some(d) => d,
                None => {
                    decoded = first.info.to_json();
                    &decoded
                }
            };
            let pname = info["process"]["name"].as_str().unwrap_or("a process");
            let ppid = info["process"]["pid"].as_i64().map(|p| format!(" (pid {p})")).unwrap_or_default();
            let parent = info["process"]["parent"]["name"].as_str().map(|p| format!(" started by {p}")).unwrap_or_default();
            let cmd = match info["process"]["args"].as_array() {
                Some(a) => {
                    let a: Vec<&str> = a.iter().filter_map(|x| x.as_str()).collect();
                    format!(" running `{}`", truncate(&a.join(" "), 200))
                }
                None => String::new(),
            };
            let last = seq.events.last().map(|e| e.time).unwrap_or(first.time);
            s.push_str(&format!(", {} ms after {pname}{ppid}{parent}{cmd}", last - first.time));
        }
        s.push_str(&format!(": {} alert {}", meta.severity, meta.name));
        s
    }
}

pub(super) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max).collect();
    t.push('…');
    t
}

pub(super) fn is_array_field(name: &str) -> bool {
    crate::alert::rule_alert::is_array_field(name)
}
