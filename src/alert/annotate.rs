//! Writing the alert fields into the record that completes a sequence.
//!
//! The alert is a JSON object with up to four roots:
//! * `rule` — ECS `rule.*`: id, uuid, name, version, description, category,
//!   author, license, reference, ruleset;
//! * `threat` — ECS `threat.*`: framework and the flattened tactic /
//!   technique / sub-technique ids, names and references;
//! * `kibana` — `kibana.alert.*` as Kibana writes them for an EQL alert (off
//!   with `kibana_fields: false`);
//! * `apt_netcon` — the earlier events of the sequence (`shell`: the first
//!   stage's event) and `span_ms`, the time between first and last event.
//!
//! With an `annotation_prefix` `a.b`, the roots go under `{"a":{"b":…}}`.
//! How the roots go into the record: [`crate::format::merge`].

use crate::config::rule::{RuleMeta, Tactic, Technique};
use crate::alert::carried::StageEvent;
use serde_json::{json, Map, Value};

/// Everything an alert says.
#[derive(Debug)]
pub struct Alert<'a> {
    pub meta: &'a RuleMeta,
    /// The events of the sequence, first to last (the last completes it).
    pub events: &'a [StageEvent],
    pub alert_id: String,
    pub group_id: String,
    pub reason: String,
    /// `@timestamp` of the completing event, as written.
    pub original_time: String,
}

/// How alerts are written.
#[derive(Debug, Clone)]
pub struct AnnotationStyle {
    pub prefix: String,
    pub kibana: bool,
    /// Also write `event.kind: "signal"` (Kibana's value for alert
    /// documents), outside the prefix: the standalone alert records of a
    /// rule pack, written in the same pass as the alert.
    pub signal: bool,
}

impl AnnotationStyle {
    /// An alert's roots as written: under the prefix, and with
    /// `event.kind` when `signal` (merged into an `event` root the alert
    /// may hold, and otherwise the last root, so that a record's own
    /// `event` takes it where it stands).
    pub fn finish(&self, roots: Map<String, Value>) -> Map<String, Value> {
        let mut roots = with_prefix(roots, &self.prefix);
        if self.signal {
            match roots.entry("event") {
                serde_json::map::Entry::Occupied(mut e) => match e.get_mut() {
                    Value::Object(m) => {
                        m.insert("kind".into(), Value::from("signal"));
                    }
                    other => *other = json!({"kind": "signal"}),
                },
                serde_json::map::Entry::Vacant(e) => {
                    e.insert(json!({"kind": "signal"}));
                }
            }
        }
        roots
    }
}

fn flat_threat(meta: &RuleMeta) -> Value {
    let mut t_ids = vec![];
    let mut t_names = vec![];
    let mut t_refs = vec![];
    let (mut q_ids, mut q_names, mut q_refs) = (vec![], vec![], vec![]);
    let (mut s_ids, mut s_names, mut s_refs) = (vec![], vec![], vec![]);
    for t in &meta.threat {
        t_ids.push(t.id.clone());
        t_names.push(t.name.clone());
        t_refs.push(t.reference.clone());
        for q in &t.techniques {
            q_ids.push(q.id.clone());
            q_names.push(q.name.clone());
            q_refs.push(q.reference.clone());
            for s in &q.subtechniques {
                s_ids.push(s.id.clone());
                s_names.push(s.name.clone());
                s_refs.push(s.reference.clone());
            }
        }
    }
    let mut technique = json!({"id": q_ids, "name": q_names, "reference": q_refs});
    if !s_ids.is_empty() {
        technique["subtechnique"] = json!({"id": s_ids, "name": s_names, "reference": s_refs});
    }
    json!({
        "framework": meta.framework,
        "tactic": {"id": t_ids, "name": t_names, "reference": t_refs},
        "technique": technique,
    })
}

fn technique_json(t: &Technique) -> Value {
    let mut v = json!({"id": t.id, "name": t.name, "reference": t.reference});
    if !t.subtechniques.is_empty() {
        v["subtechnique"] = Value::Array(t.subtechniques.iter().map(technique_json).collect());
    }
    v
}

fn kibana_threat(meta: &RuleMeta) -> Value {
    Value::Array(
        meta.threat
            .iter()
            .map(|t: &Tactic| {
                json!({
                    "framework": meta.framework,
                    "tactic": {"id": t.id, "name": t.name, "reference": t.reference},
                    "technique": t.techniques.iter().map(technique_json).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

/// The alert members that depend only on the rule's metadata, built once
/// (a [`crate::Detector`] keeps them) and cloned into every alert by
/// [`Alert::to_json_with`].
#[derive(Debug)]
pub struct RuleParts {
    /// ECS `rule`.
    rule: Value,
    /// ECS `threat` (flattened).
    threat: Value,
    /// `kibana.alert.rule`.
    kibana_rule: Value,
    /// The three as raw parts ([`crate::format::merge::raw_part`]): their
    /// JSON text, serialized at the rule's first alert.
    raw: std::sync::OnceLock<[Value; 3]>,
}

impl RuleParts {
    /// The `rule` and `threat` roots of an alert.
    pub fn roots(&self, _style: &AnnotationStyle) -> Map<String, Value> {
        let mut out = Map::with_capacity(4);
        out.insert("rule".into(), self.rule.clone());
        out.insert("threat".into(), self.threat.clone());
        out
    }

    /// `kibana.alert.rule`.
    pub fn kibana_rule(&self) -> Value {
        self.kibana_rule.clone()
    }

    /// [`RuleParts::roots`] and [`RuleParts::kibana_rule`] as raw parts
    /// ([`crate::format::merge::raw_part`]), for roots that go to
    /// [`crate::format::merge::merge`] with no prefix: the text of each
    /// copied, instead of its value cloned and serialized again.
    pub fn raw_roots(&self) -> (Map<String, Value>, Value) {
        let raw = self.raw.get_or_init(|| {
            let raw = |v: &Value| crate::format::merge::raw_part(&serde_json::to_string(v).unwrap_or_default());
            [raw(&self.rule), raw(&self.threat), raw(&self.kibana_rule)]
        });
        let mut out = Map::with_capacity(4);
        out.insert("rule".into(), raw[0].clone());
        out.insert("threat".into(), raw[1].clone());
        (out, raw[2].clone())
    }

    /// The parts of any rule but the built-in APT rule
    /// ([`crate::alert::rule_alert`]): `rule.*` only from the rule's metadata.
    pub fn generic(m: &RuleMeta) -> RuleParts {
        let mut p = RuleParts::new(m);
        if let Value::Object(r) = &mut p.rule {
            r.remove("category");
            r.remove("ruleset");
            if m.references.is_empty() {
                r.remove("reference");
            }
        }
        p
    }

    pub fn new(m: &RuleMeta) -> RuleParts {
        RuleParts {
            rule: json!({
                "id": m.rule_id,
                "uuid": m.rule_id,
                "name": m.name,
                "version": m.version.to_string(),
                "description": m.description,
                "category": "Endpoint",
                "author": m.author,
                "license": m.license,
                "reference": m.references.first().cloned().unwrap_or_default(),
                "ruleset": "apt-netcon",
            }),
            threat: flat_threat(m),
            kibana_rule: json!({
                "rule_id": m.rule_id,
                "uuid": m.rule_id,
                "name": m.name,
                "version": m.version,
                "type": "eql",
                "severity": m.severity,
                "risk_score": m.risk_score,
                "tags": m.tags,
                "references": m.references,
                "author": m.author,
                "license": m.license,
                "threat": kibana_threat(m),
            }),
            raw: std::sync::OnceLock::new(),
        }
    }
}

impl Alert<'_> {
    /// The alert object (before any prefix).
    pub fn to_json(&self, style: &AnnotationStyle) -> Map<String, Value> {
        self.to_json_with(style, &RuleParts::new(self.meta))
    }

    /// [`Alert::to_json`], with the rule's parts built beforehand from the
    /// same metadata.
    pub fn to_json_with(&self, style: &AnnotationStyle, parts: &RuleParts) -> Map<String, Value> {
        self.to_json_with_first(style, parts, None)
    }

    /// [`Alert::to_json_with`], given the first event's carried fields
    /// decoded already (`first`: its [`Carried::to_json`], as the reason
    /// reads them; `None`: decoded here). Each event's fields are decoded
    /// once, where they are written and where their `event.id` is read.
    ///
    /// [`Carried::to_json`]: crate::alert::carried::Carried::to_json
    pub fn to_json_with_first(&self, style: &AnnotationStyle, parts: &RuleParts, first: Option<Value>) -> Map<String, Value> {
        let m = self.meta;
        let mut out = Map::with_capacity(4);
        out.insert("rule".into(), parts.rule.clone());
        out.insert("threat".into(), parts.threat.clone());
        let n = self.events.len();
        let span = match (self.events.first(), self.events.last()) {
            (Some(a), Some(b)) => b.time - a.time,
            _ => 0,
        };
        // The fields of the events written whole: the first (`shell`) and
        // the middle ones (`stages`) of a sequence of two or more.
        let mut first = first;
        let mut docs: Vec<Option<Value>> = self
            .events
            .iter()
            .enumerate()
            .map(|(i, e)| (i + 1 < n).then(|| first.take().filter(|_| i == 0).unwrap_or_else(|| e.info.to_json())))
            .collect();
        // The event's own id where it has one (`event.id`), as Kibana names
        // an alert's source events; else the digest of its identity fields.
        let ancestors: Vec<Value> = if style.kibana {
            self.events
                .iter()
                .zip(&docs)
                .map(|(e, d)| {
                    let id = match d {
                        Some(d) => crate::alert::carried::event_id_in(d),
                        None => e.info.event_id(),
                    };
                    ancestor(id.unwrap_or_else(|| format_id(e.digest)))
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut own = Map::new();
        if n > 1 {
            own.insert("shell".into(), docs[0].take().unwrap_or_default());
        }
        if n > 2 {
            let mids: Vec<Value> = docs[1..n - 1].iter_mut().map(|d| d.take().unwrap_or_default()).collect();
            own.insert("stages".into(), Value::Array(mids));
        }
        own.insert("span_ms".into(), Value::from(span));
        if style.kibana {
            let kibana = kibana_root(KibanaAlert {
                uuid: self.alert_id.clone(),
                group_id: Some(self.group_id.clone()),
                rule: parts.kibana_rule.clone(),
                meta: m,
                reason: self.reason.clone(),
                original_time: self.original_time.clone(),
                ancestors,
            });
            out.insert("kibana".into(), kibana);
        } else {
            own.insert("alert_id".into(), Value::from(self.alert_id.clone()));
            own.insert("group_id".into(), Value::from(self.group_id.clone()));
            own.insert("reason".into(), Value::from(self.reason.clone()));
            own.insert("severity".into(), Value::from(m.severity.clone()));
            own.insert("risk_score".into(), Value::from(m.risk_score));
        }
        out.insert("apt_netcon".into(), Value::Object(own));
        out
    }
}

/// What `kibana.alert` says of one alert.
pub struct KibanaAlert<'a> {
    pub uuid: String,
    /// `kibana.alert.group.id`, for a sequence.
    pub group_id: Option<String>,
    /// `kibana.alert.rule` ([`RuleParts::kibana_rule`]).
    pub rule: Value,
    pub meta: &'a RuleMeta,
    pub reason: String,
    pub original_time: String,
    /// [`ancestor`] entries, in stage order.
    pub ancestors: Vec<Value>,
}

/// The `kibana` root of an alert, as Kibana writes an EQL alert.
pub fn kibana_root(k: KibanaAlert<'_>) -> Value {
    let mut alert = Map::with_capacity(11);
    alert.insert("uuid".into(), Value::String(k.uuid));
    if let Some(g) = k.group_id {
        let mut group = Map::with_capacity(1);
        group.insert("id".into(), Value::String(g));
        alert.insert("group".into(), Value::Object(group));
    }
    alert.insert("rule".into(), k.rule);
    alert.insert("severity".into(), Value::String(k.meta.severity.clone()));
    alert.insert("risk_score".into(), Value::from(k.meta.risk_score));
    alert.insert("reason".into(), Value::String(k.reason));
    alert.insert("original_time".into(), Value::String(k.original_time));
    alert.insert("status".into(), Value::from("active"));
    alert.insert("workflow_status".into(), Value::from("open"));
    alert.insert("depth".into(), Value::from(1));
    alert.insert("ancestors".into(), Value::Array(k.ancestors));
    let mut kibana = Map::with_capacity(1);
    kibana.insert("alert".into(), Value::Object(alert));
    Value::Object(kibana)
}

/// One `kibana.alert.ancestors` entry: a source event by its id.
pub fn ancestor(id: String) -> Value {
    let mut a = Map::with_capacity(3);
    a.insert("type".into(), Value::from("event"));
    a.insert("id".into(), Value::String(id));
    a.insert("depth".into(), Value::from(0));
    Value::Object(a)
}

/// Format a 128-bit digest as a UUID-shaped string.
pub fn format_id(d: u128) -> String {
    let h = format!("{d:032x}");
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Wrap the alert roots under a dotted prefix.
pub fn with_prefix(roots: Map<String, Value>, prefix: &str) -> Map<String, Value> {
    if prefix.is_empty() {
        return roots;
    }
    let mut v = Value::Object(roots);
    for seg in prefix.rsplit('.') {
        let mut m = Map::new();
        m.insert(seg.to_string(), v);
        v = Value::Object(m);
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An alert of `meta` with fixed ids, reason and time, no events.
    fn fixed_alert(meta: &RuleMeta) -> Alert<'_> {
        Alert { meta, events: &[], alert_id: "a".into(), group_id: "g".into(), reason: "r".into(), original_time: "t".into() }
    }

    /// The events' fields are written and their ids read as each event's
    /// own carried fields give them, whether the first event's come decoded
    /// or not: `shell` the first's, `stages` the middle ones' in order, each
    /// ancestor the event's `event.id` or its digest.
    #[test]
    fn each_event_is_written_from_its_own_fields() {
        use crate::alert::carried::{CarriedBuilder, CARRIED_FIELDS};
        let at = |name: &str| CARRIED_FIELDS.iter().position(|f| *f == name).unwrap();
        let event = |k: usize, with_id: bool| {
            let mut b = CarriedBuilder::default();
            b.push(at("@timestamp"), &json!(format!("2026-01-01T00:00:0{k}Z")));
            if with_id {
                b.push(at("event.id"), &json!(format!("id-{k}")));
            }
            b.push(at("process.name"), &json!(format!("p{k}")));
            b.push(at("process.pid"), &json!(100 + k));
            StageEvent { time: 1000 * k as i64, digest: 0xabc0 + k as u128, info: b.finish() }
        };
        let meta = crate::config::rule::Rule::builtin("v5").unwrap().meta().clone();
        let parts = RuleParts::new(&meta);
        for n in 1..=4 {
            let events: Vec<StageEvent> = (0..n).map(|k| event(k, k % 2 == 0)).collect();
            for kibana in [true, false] {
                let style = AnnotationStyle { prefix: String::new(), kibana, signal: false };
                let alert = Alert {
                    meta: &meta,
                    events: &events,
                    alert_id: "a".into(),
                    group_id: "g".into(),
                    reason: "r".into(),
                    original_time: "t".into(),
                };
                let decoded = (n > 1).then(|| events[0].info.to_json());
                for first in [None, decoded] {
                    let out = Value::Object(alert.to_json_with_first(&style, &parts, first));
                    let own = &out["apt_netcon"];
                    let want_shell = if n > 1 { events[0].info.to_json() } else { Value::Null };
                    assert_eq!(own["shell"], want_shell, "n {n}");
                    let want_stages = if n > 2 { Value::Array(events[1..n - 1].iter().map(|e| e.info.to_json()).collect()) } else { Value::Null };
                    assert_eq!(own["stages"], want_stages, "n {n}");
                    if kibana {
                        let ids: Vec<Value> = out["kibana"]["alert"]["ancestors"].as_array().unwrap().iter().map(|a| a["id"].clone()).collect();
                        let want: Vec<Value> = events.iter().map(|e| json!(e.info.event_id().unwrap_or_else(|| format_id(e.digest)))).collect();
                        assert_eq!(ids, want, "n {n}");
                    }
                }
            }
        }
    }

    /// The alert members, in order, byte for byte as the version before
    /// `RuleParts` wrote them (`tests/data/alert_v5.ndjson`: the built-in v5
    /// rule with Kibana fields, then without).
    #[test]
    fn alert_bytes_are_the_recorded_ones() {
        let meta = crate::config::rule::Rule::builtin("v5").unwrap().meta().clone();
        let parts = RuleParts::new(&meta);
        let recorded = include_str!("../../tests/data/alert_v5.ndjson");
        let mut lines = recorded.lines();
        for kibana in [true, false] {
            let style = AnnotationStyle { prefix: String::new(), kibana, signal: false };
            let alert = fixed_alert(&meta);
            let got = Value::Object(alert.to_json_with(&style, &parts)).to_string();
            assert_eq!(got, lines.next().unwrap(), "kibana {kibana}");
        }
    }

    #[test]
    fn rule_parts_follow_the_metadata() {
        let mut meta = crate::config::rule::Rule::builtin("v5").unwrap().meta().clone();
        let style = AnnotationStyle { prefix: String::new(), kibana: true, signal: false };
        let alert_json = |meta: &RuleMeta| {
            let alert = fixed_alert(meta);
            Value::Object(alert.to_json(&style))
        };
        let v = alert_json(&meta);
        let prebuilt = RuleParts::new(&meta);
        let alert = fixed_alert(&meta);
        assert_eq!(Value::Object(alert.to_json_with(&style, &prebuilt)).to_string(), v.to_string());
        assert_eq!(v["rule"]["version"], "5");
        assert_eq!(v["kibana"]["alert"]["rule"]["version"], 5);
        assert_eq!(v["threat"]["technique"]["subtechnique"]["id"][0], "T1546.016");
        assert_eq!(v["kibana"]["alert"]["rule"]["threat"][0]["technique"][1]["subtechnique"][0]["id"], "T1546.016");
        // Parts follow the metadata they are built from.
        meta.version = 6;
        meta.threat.clear();
        let w = alert_json(&meta);
        assert_eq!(w["rule"]["version"], "6");
        assert_eq!(w["kibana"]["alert"]["rule"]["version"], 6);
        assert_eq!(w["threat"]["tactic"]["id"], json!([]));
        assert!(w["threat"]["technique"].get("subtechnique").is_none());
        assert_eq!(w["kibana"]["alert"]["rule"]["threat"], json!([]));
        meta.version = 5;
        meta.threat = crate::config::rule::Rule::builtin("v5").unwrap().meta().threat.clone();
        assert_eq!(alert_json(&meta).to_string(), v.to_string());
    }

    #[test]
    fn prefix() {
        let roots = match json!({"rule": {"name": "R", "id": "1"}, "threat": {"framework": "F"}}) {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let m = with_prefix(roots, "a.b");
        assert_eq!(Value::Object(m)["a"]["b"]["rule"]["name"], "R");
    }

    /// A pack's alert record was once the record merged with the alert,
    /// then merged again with `event.kind`; `signal` writes both in one
    /// merge. The bytes must be the same, wherever the record holds
    /// `event` (or not, or twice, dotted, not an object) and whatever the
    /// prefix, in JSON and in MessagePack.
    #[test]
    fn a_signal_in_the_same_merge_gives_the_bytes_of_a_second_merge() {
        let records = [
            r#"{"@timestamp":"t","event":{"id":"e1","action":"exec","n":1.50},"process":{"name":"sh"}}"#,
            r#"{"process":{"name":"sh"}}"#,
            r#"{"event":{"id":"a"},"x":1,"event":{"kind":"event","b":2}}"#,
            r#"{"event.kind":"event","event.id":"z","event":{"id":"y"}}"#,
            r#"{"event":"a string","rule.name":"old"}"#,
            r#"{"event":{"kind":{"deep":true}},"apt_netcon":{"x":1}}"#,
        ];
        let alert = json!({"rule": {"name": "R"}, "kibana": {"alert": {"uuid": "u"}}});
        for prefix in ["", "apt_netcon", "event.alert", "event"] {
            for signal in [false, true] {
                let style = AnnotationStyle { prefix: prefix.into(), kibana: true, signal };
                let without = AnnotationStyle { signal: false, ..style.clone() };
                let kind = || json!({"event": {"kind": "signal"}}).as_object().unwrap().clone();
                type Merge = fn(&[u8], Map<String, Value>, &mut Vec<u8>) -> Result<(), crate::format::merge::MergeError>;
                for rec in records {
                    // MessagePack bodies: the same policy.
                    let mut body = Vec::new();
                    let members = serde_json::from_str::<Map<String, Value>>(rec).unwrap();
                    crate::format::msgpack::merge(&[0x80], members, &mut body).unwrap();
                    let ways: [(Merge, &[u8]); 2] = [(crate::format::merge::merge, rec.as_bytes()), (crate::format::msgpack::merge, &body)];
                    for (merge, record) in ways {
                        let (mut once, mut first, mut twice) = (Vec::new(), Vec::new(), Vec::new());
                        merge(record, style.finish(alert.as_object().unwrap().clone()), &mut once).unwrap();
                        merge(record, without.finish(alert.as_object().unwrap().clone()), &mut first).unwrap();
                        if signal {
                            merge(&first, kind(), &mut twice).unwrap();
                        } else {
                            twice = first;
                        }
                        assert_eq!(String::from_utf8_lossy(&once), String::from_utf8_lossy(&twice), "{prefix:?} {signal} {rec}");
                    }
                }
            }
        }
        let style = AnnotationStyle { prefix: String::new(), kibana: true, signal: true };
        let m = style.finish(alert.as_object().unwrap().clone());
        assert_eq!(m.keys().next_back().map(String::as_str), Some("event"), "after the alert's roots");
        assert_eq!(Value::Object(m)["event"]["kind"], "signal");
    }
}
