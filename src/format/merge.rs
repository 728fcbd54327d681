//! Writing an alert's roots (a JSON object's members) into a JSON record.
//!
//! **Merging** into the record is deterministic: the record's members keep
//! their order and their bytes, and the alert's roots not already present are
//! appended after them. Where a member collides with the alert, the alert
//! wins: a member with the name of a root that holds an object is
//! deep-merged with it (the alert's leaves replace equal paths, other keys
//! stay); one that holds anything else is replaced; a dotted member
//! (`"rule.name"`) naming a path the alert writes, or a path below one of
//! its leaves, is removed; a root name that appears twice (a duplicate key)
//! is merged at its first place and its later copies dropped. Only the top
//! level is read, so the record's other members are copied verbatim.
//!
//! **Why hand-written.** `serde_json::Value` (with `preserve_order`) could
//! parse the record, take the alert and print it again, but printing re-spells
//! numbers and escapes and keeps one copy of a duplicate key: the record would
//! not leave byte for byte. Here serde_json splits the top level into members
//! (`RawValue` keeps each one's bytes) and only what the alert touches is
//! re-encoded.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;

/// Why a record could not be annotated (it then leaves unchanged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeError(pub String);

struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some(k) = map.next_key_seed(crate::format::event::extract::MemberName)? {
                    let raw: &'de RawValue = map.next_value()?;
                    v.push((k, raw));
                }
                Ok(Members(v))
            }
        }
        d.deserialize_map(V).map_err(de::Error::custom)
    }
}

/// True when the alert writes `path` (dotted) or a path above it is one of
/// the alert's leaves.
fn alert_covers(roots: &Map<String, Value>, path: &str) -> bool {
    let mut cur = roots;
    let mut segs = path.split('.').peekable();
    while let Some(seg) = segs.next() {
        match cur.get(seg) {
            None => return false,
            Some(Value::Object(m)) if segs.peek().is_some() => cur = m,
            Some(_) => return true,
        }
    }
    true
}

fn deep_merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(slot) => deep_merge(slot, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// The members a merge leaves out of a record (for JSON and MessagePack
/// alike): a dotted member the alert covers (the alert's value replaces
/// it), and a second member named like a root merged already (a duplicate
/// key).
pub(crate) struct Skips<'k> {
    /// Indices of the covered dotted members, ascending: found before any
    /// root is taken out of the alert's roots.
    covered: std::iter::Peekable<std::vec::IntoIter<usize>>,
    /// The roots merged into a member so far.
    merged: Vec<&'k str>,
}

impl<'k> Skips<'k> {
    /// `names`: the record's member names in order (`None`: not a string).
    pub(crate) fn new<'n>(names: impl Iterator<Item = Option<&'n str>>, roots: &Map<String, Value>) -> Self {
        let covered: Vec<usize> = names
            .enumerate()
            .filter(|(_, k)| k.is_some_and(|k| k.contains('.') && alert_covers(roots, k)))
            .map(|(i, _)| i)
            .collect();
        Skips { covered: covered.into_iter().peekable(), merged: Vec::new() }
    }

    /// Whether member `i`, named `k`, is left out (unless it is merged
    /// itself). Ask for every member, in order.
    pub(crate) fn skip(&mut self, i: usize, k: &str) -> bool {
        let covered = self.covered.next_if_eq(&i).is_some();
        covered || self.merged.contains(&k)
    }

    /// Member `k` was merged with the alert's root of that name.
    pub(crate) fn merged(&mut self, k: &'k str) {
        self.merged.push(k);
    }
}

/// The mark of an alert part given as JSON text made once, in place of
/// its value ([`raw_part`]).
const RAW: &str = "\u{0}apt-netcon json\u{0}";

/// An alert part that depends only on the rule (`crate::alert::annotate::RuleParts`),
/// given as its JSON text, serialized once (at the rule's first alert), instead
/// of a value cloned for every alert and serialized again: a string of a
/// mark and the text. Taken as such only where the alert's builder puts it
/// and nothing of an event can be: the `rule` and `threat` roots and
/// `kibana.alert.rule` ([`RAW_PATHS`]); a string of the mark anywhere else
/// is only a string. [`merge`] writes the text where the record leaves the
/// part alone and reads it back into its value where the record has a
/// member of that root (a collision, a dotted name): the same bytes either
/// way. Every other writer of roots gets them read back ([`resolve_raw`]).
pub(crate) fn raw_part(json: &str) -> Value {
    let mut s = String::with_capacity(RAW.len() + json.len());
    s.push_str(RAW);
    s.push_str(json);
    Value::String(s)
}

fn raw_text(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => s.strip_prefix(RAW),
        _ => None,
    }
}

/// The places a raw part may stand, as paths from the roots: the `rule`
/// and `threat` roots, and `rule` under the `kibana` root's `alert`.
const RAW_PATHS: [&[&str]; 3] = [&["rule"], &["threat"], &["kibana", "alert", "rule"]];

/// Every raw part of `roots` ([`raw_part`]) read back into its value.
pub(crate) fn resolve_raw(roots: &mut Map<String, Value>) {
    'paths: for path in RAW_PATHS {
        let Some((last, above)) = path.split_last() else { continue };
        let mut m = &mut *roots;
        for k in above {
            match m.get_mut(*k) {
                Some(Value::Object(below)) => m = below,
                _ => continue 'paths,
            }
        }
        if let Some(v) = m.get_mut(*last) {
            if let Some(t) = raw_text(v) {
                // (Text serde_json wrote from a value: it reads back.)
                *v = serde_json::from_str(t).unwrap_or(Value::Null);
            }
        }
    }
}

/// Write `v`, at `path` from the roots, as serde_json writes it: a raw
/// part at one of [`RAW_PATHS`] as its text, an object on the way to one
/// member by member.
fn write_at<'v>(out: &mut Vec<u8>, v: &'v Value, path: &mut Vec<&'v str>) -> Result<(), MergeError> {
    if let Some(t) = raw_text(v).filter(|_| RAW_PATHS.contains(&path.as_slice())) {
        out.extend_from_slice(t.as_bytes());
        return Ok(());
    }
    match v {
        Value::Object(m) if RAW_PATHS.iter().any(|p| p.len() > path.len() && p.starts_with(path)) => {
            out.push(b'{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_key(out, k)?;
                out.push(b':');
                path.push(k);
                write_at(out, x, path)?;
                path.pop();
            }
            out.push(b'}');
            Ok(())
        }
        _ => serde_json::to_writer(&mut *out, v).map_err(|e| MergeError(e.to_string())),
    }
}

/// Write the JSON string `k` (escaped as serde_json writes it).
fn write_key(out: &mut Vec<u8>, k: &str) -> Result<(), MergeError> {
    serde_json::to_writer(&mut *out, k).map_err(|e| MergeError(e.to_string()))
}

/// Write `roots` into the JSON object `record` (see the module docs).
pub fn merge(record: &[u8], roots: Map<String, Value>, out: &mut Vec<u8>) -> Result<(), MergeError> {
    let members: Members = serde_json::from_slice(record).map_err(|e| MergeError(e.to_string()))?;
    let mut roots = roots;
    // A record member of a root a raw part stands in (the root itself, a
    // dotted name below it): the parts read back, merged as values.
    let touches = |k: &str| RAW_PATHS.iter().any(|p| k.strip_prefix(p[0]).is_some_and(|rest| rest.is_empty() || rest.starts_with('.')));
    if members.0.iter().any(|(k, _)| touches(k)) {
        resolve_raw(&mut roots);
    }
    let mut skips = Skips::new(members.0.iter().map(|(k, _)| Some(k.as_ref())), &roots);
    out.clear();
    // The record once, plus room for a typical alert: no doubling of a large record.
    out.reserve(record.len() + 16 * 1024);
    out.push(b'{');
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !first {
            out.push(b',');
        }
        first = false;
    };
    for (i, (k, raw)) in members.0.iter().enumerate() {
        let skip = skips.skip(i, k);
        if let Some(ann) = roots.remove(k.as_ref()) {
            let mut merged: Value = serde_json::from_str(raw.get()).map_err(|e| MergeError(e.to_string()))?;
            deep_merge(&mut merged, ann);
            skips.merged(k);
            sep(out);
            write_key(out, k)?;
            out.push(b':');
            serde_json::to_writer(&mut *out, &merged).map_err(|e| MergeError(e.to_string()))?;
            continue;
        }
        if skip {
            continue;
        }
        sep(out);
        write_key(out, k)?;
        out.push(b':');
        out.extend_from_slice(raw.get().as_bytes());
    }
    let mut path = Vec::with_capacity(4);
    for (k, v) in &roots {
        sep(out);
        write_key(out, k)?;
        out.push(b':');
        path.clear();
        path.push(k.as_str());
        write_at(out, v, &mut path)?;
    }
    out.push(b'}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn roots() -> Map<String, Value> {
        match json!({"rule": {"name": "R", "id": "1"}, "threat": {"framework": "F"}}) {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn merged(rec: &str) -> Value {
        let mut out = Vec::new();
        merge(rec.as_bytes(), roots(), &mut out).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    /// Roots with raw parts ([`raw_part`]) merge to the same bytes as with
    /// their values, whatever the record holds of their roots (nothing, the
    /// root, a dotted name below it or beside it, a duplicate); a string of
    /// the mark elsewhere, in the alert or the record, is written as a
    /// string; MessagePack gets the values.
    #[test]
    fn raw_parts_merge_as_their_values() {
        let mark = format!("{RAW}{{\"x\":1}}");
        let values = || match json!({
            "event": {"kind": "signal", "note": mark},
            "rule": {"name": "R", "id": "1", "tags": ["a", "b"]},
            "threat": {"framework": "F", "n": 2.5},
            "kibana": {"alert": {"uuid": "u", "rule": {"name": "R", "risk": 47, "x": {"y": [1, null]}}, "reason": mark}, "other": 1},
            "eql": {"events": [{"stage": 1, "s": mark}]},
        }) {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let raw = || {
            let mut m = values();
            for k in ["rule", "threat"] {
                let text = m[k].to_string();
                m.insert(k.into(), raw_part(&text));
            }
            let text = m["kibana"]["alert"]["rule"].to_string();
            m["kibana"]["alert"].as_object_mut().unwrap().insert("rule".into(), raw_part(&text));
            m
        };
        let records = [
            r#"{"a":1}"#.to_string(),
            r#"{"rule":{"name":"old","keep":true}}"#.into(),
            r#"{"rule.name":"old","rule.other":2,"threat.framework.x":3}"#.into(),
            r#"{"kibana":{"alert":{"rule":{"keep":1},"status":"x"}}}"#.into(),
            r#"{"kibana.alert.rule.name":"old","kibana.alert.rule.keep":1,"kibana.other":2}"#.into(),
            r#"{"rules":1,"threats":2,"kibanas":{"a":1}}"#.into(),
            r#"{"threat":"a string","threat":{"dup":1}}"#.into(),
            format!(r#"{{"note":{}}}"#, serde_json::to_string(&mark).unwrap()),
        ];
        for rec in &records {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            merge(rec.as_bytes(), values(), &mut a).unwrap();
            merge(rec.as_bytes(), raw(), &mut b).unwrap();
            assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b), "record {rec}");
            let v: Value = serde_json::from_slice(&b).unwrap();
            assert_eq!(v["event"]["note"], mark.as_str());
            assert_eq!(v["kibana"]["alert"]["reason"], mark.as_str());
            assert_eq!(v["eql"]["events"][0]["s"], mark.as_str());
            assert_eq!(v["kibana"]["alert"]["rule"]["x"]["y"], json!([1, null]));
            let body = crate::format::msgpack::encode_json(&serde_json::from_str(rec).unwrap());
            let (mut c, mut d) = (Vec::new(), Vec::new());
            crate::format::msgpack::merge(&body, values(), &mut c).unwrap();
            crate::format::msgpack::merge(&body, raw(), &mut d).unwrap();
            assert_eq!(c, d, "record {rec}");
        }
    }

    #[test]
    fn appends_and_keeps_bytes() {
        let mut out = Vec::new();
        merge(br#"{"a": 1.50, "b" :[ 1 ,2]}"#, roots(), &mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with(r#"{"a":1.50,"b":[ 1 ,2],"rule":{"#), "{s}");
    }

    #[test]
    fn collisions() {
        let v = merged(r#"{"rule":{"name":"old","keep":true},"x":1}"#);
        assert_eq!(v["rule"]["name"], "R");
        assert_eq!(v["rule"]["keep"], true);
        assert_eq!(v["rule"]["id"], "1");
        let v = merged(r#"{"rule":{"keep":1},"rule.name":"old"}"#);
        assert!(v.get("rule.name").is_none());
        let v = merged(r#"{"rule":{"a":1},"x":2,"rule":{"b":2}}"#);
        assert_eq!(v["rule"]["a"], 1);
        assert_eq!(v["rule"]["name"], "R");
        let v = merged(r#"{"rule":"a string"}"#);
        assert_eq!(v["rule"]["name"], "R");
        let v = merged(r#"{"rule.name":"old","rule.other":2,"threat.framework.x":3}"#);
        assert!(v.get("rule.name").is_none());
        assert_eq!(v["rule.other"], 2);
        assert!(v.get("threat.framework.x").is_none());
    }
}
