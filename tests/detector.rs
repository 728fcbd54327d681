//! The Rust API: annotation options, deterministic ids, counters, limits.

use apt_netcon::{Config, Detector, RecordError, Verdict};
use serde_json::{json, Value};

fn exec(host: &str, entity: &str, ts: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "@timestamp": ts,
        "event": {"category": ["process"], "type": ["start"], "action": "exec"},
        "host": {"id": host, "os": {"type": "linux"}},
        "process": {"name": "sh", "pid": 10, "entity_id": entity, "args": ["sh", "-c", "id"],
                    "parent": {"name": "apt", "pid": 9}}
    }))
    .unwrap()
}

fn net(host: &str, parent: &str, ts: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "@timestamp": ts,
        "event": {"category": ["network"], "type": ["start"], "action": "connection_attempted"},
        "host": {"id": host, "os": {"type": "linux"}},
        "process": {"name": "curl", "pid": 11, "parent": {"entity_id": parent}},
        "destination": {"ip": "1.1.1.1", "port": 80}
    }))
    .unwrap()
}

fn alert(d: &mut Detector, recs: &[Vec<u8>]) -> Option<Value> {
    let mut last = None;
    for r in recs {
        if let Ok(Verdict::Annotated(b)) = d.process(r) {
            last = Some(serde_json::from_slice(b).unwrap());
        }
    }
    last
}

const T1: &str = "2024-05-01T10:00:00.000Z";
const T2: &str = "2024-05-01T10:00:01.000Z";

#[test]
fn ids_are_deterministic_and_depend_on_the_events() {
    let recs = [exec("h", "e", T1), net("h", "e", T2)];
    let a = alert(&mut Detector::new(&Config::default()).unwrap(), &recs).unwrap();
    let b = alert(&mut Detector::new(&Config::default()).unwrap(), &recs).unwrap();
    assert_eq!(a["kibana"]["alert"]["uuid"], b["kibana"]["alert"]["uuid"]);
    assert_eq!(a["kibana"]["alert"]["group"]["id"], b["kibana"]["alert"]["group"]["id"]);
    assert_ne!(a["kibana"]["alert"]["uuid"], a["kibana"]["alert"]["group"]["id"]);
    let other = [exec("h", "e", T1), net("h", "e", "2024-05-01T10:00:01.001Z")];
    let c = alert(&mut Detector::new(&Config::default()).unwrap(), &other).unwrap();
    assert_ne!(a["kibana"]["alert"]["uuid"], c["kibana"]["alert"]["uuid"]);
}

#[test]
fn kibana_off_and_prefix() {
    let recs = [exec("h", "e", T1), net("h", "e", T2)];
    let cfg = Config::from_json(r#"{"kibana_fields": false, "annotation_prefix": "sec.alert"}"#).unwrap();
    let v = alert(&mut Detector::new(&cfg).unwrap(), &recs).unwrap();
    assert!(v.get("kibana").is_none() && v.get("rule").is_none());
    let a = &v["sec"]["alert"];
    assert_eq!(a["rule"]["id"], "eaef8a35-12e0-4ac0-bc14-81c72b6bd27c");
    assert_eq!(a["threat"]["technique"]["subtechnique"]["id"][0], "T1546.016");
    assert_eq!(a["apt_netcon"]["severity"], "medium");
    assert_eq!(a["apt_netcon"]["risk_score"], 47);
    assert!(a["apt_netcon"]["alert_id"].as_str().unwrap().len() == 36);
    assert!(a["apt_netcon"]["reason"].as_str().unwrap().contains("1.1.1.1"));
}

#[test]
fn alert_content() {
    let recs = [exec("h", "e", T1), net("h", "e", T2)];
    let v = alert(&mut Detector::new(&Config::default()).unwrap(), &recs).unwrap();
    let k = &v["kibana"]["alert"];
    assert_eq!(k["rule"]["version"], 5);
    assert_eq!(k["severity"], "medium");
    assert_eq!(k["risk_score"], 47);
    assert_eq!(k["original_time"], T2);
    assert_eq!(k["rule"]["threat"][0]["technique"][1]["subtechnique"][0]["id"], "T1546.016");
    assert_eq!(v["apt_netcon"]["shell"]["process"]["args"], json!(["sh", "-c", "id"]));
    assert_eq!(v["apt_netcon"]["shell"]["process"]["parent"]["name"], "apt");
    assert_eq!(v["apt_netcon"]["shell"]["@timestamp"], T1);
    assert_eq!(v["apt_netcon"]["span_ms"], 1000);
    let reason = k["reason"].as_str().unwrap();
    assert!(reason.contains("curl") && reason.contains("1.1.1.1") && reason.contains("sh -c id"), "{reason}");
    let v11 = Config { rule: "apt_netcon_v11".into(), ..Config::default() };
    let v = alert(&mut Detector::new(&v11).unwrap(), &recs).unwrap();
    assert_eq!(v["kibana"]["alert"]["rule"]["version"], 11);
    assert!(v["threat"]["tactic"]["id"].as_array().unwrap().contains(&json!("TA0002")));
}

#[test]
fn cap_evicts_oldest_and_counts() {
    let cfg = Config { max_pending_sequences: 3, ..Config::default() };
    let mut d = Detector::new(&cfg).unwrap();
    for i in 0..5 {
        d.process(&exec("h", &format!("e{i}"), T1)).unwrap();
    }
    let s = d.stats();
    assert_eq!(s.pending, 3);
    assert_eq!(s.evicted_by_cap, 2);
    // e0 was evicted; e4 still completes.
    assert_eq!(d.process(&net("h", "e0", T2)).unwrap(), Verdict::Unchanged);
    assert!(matches!(d.process(&net("h", "e4", T2)).unwrap(), Verdict::Annotated(_)));
}

#[test]
fn expiry_on_event_time() {
    let mut d = Detector::new(&Config::default()).unwrap();
    d.process(&exec("h", "e", T1)).unwrap();
    assert_eq!(d.stats().pending, 1);
    // Another host's event 5.001 s later moves the watermark past the window.
    d.process(&exec("h2", "x", "2024-05-01T10:00:05.001Z")).unwrap();
    let s = d.stats();
    assert_eq!(s.expired_by_maxspan, 1);
    assert_eq!(s.pending, 1);
    assert_eq!(d.flush().pending, 1);
}

#[test]
fn bad_records_are_counted_by_reason() {
    let cfg = Config { max_record_bytes: 100, ..Config::default() };
    let mut d = Detector::new(&cfg).unwrap();
    assert_eq!(d.process(b"{"), Err(RecordError::InvalidJson));
    assert_eq!(d.process(b"42"), Err(RecordError::NotAnObject));
    assert_eq!(d.process(&[b' '; 101]), Err(RecordError::TooLarge));
    let mut no_time: Value = serde_json::from_slice(&exec("h", "e", T1)).unwrap();
    no_time["@timestamp"] = json!("yesterday");
    let no_time = serde_json::to_vec(&no_time).unwrap();
    let mut d2 = Detector::new(&Config::default()).unwrap();
    assert_eq!(d2.process(&no_time), Err(RecordError::BadTimestamp));
    let s = d.stats();
    assert_eq!((s.invalid_json, s.not_an_object, s.too_large, s.records), (1, 1, 1, 3));
    assert_eq!(d2.stats().bad_timestamp, 1);
    // A record that matches no stage needs no timestamp.
    assert_eq!(d2.process(br#"{"message":"hi"}"#), Ok(Verdict::Unchanged));
}

#[test]
fn existing_alert_keys_are_merged() {
    let mut n: Value = serde_json::from_slice(&net("h", "e", T2)).unwrap();
    n["rule"] = json!({"name": "shipper rule", "extra": 1});
    n["rule.id"] = json!("old");
    let recs = [exec("h", "e", T1), serde_json::to_vec(&n).unwrap()];
    let v = alert(&mut Detector::new(&Config::default()).unwrap(), &recs).unwrap();
    assert_eq!(v["rule"]["name"], "Suspicious APT Package Manager Network Connection");
    assert_eq!(v["rule"]["extra"], 1);
    assert!(v.get("rule.id").is_none());
}

/// The flagship rule, a connection whose `process.parent.entity_id` holds two
/// values, each the entity of a shell apt ran: two sequences complete, as in
/// Elasticsearch (one result per value of a multi-valued join key), and each
/// gives an alert. The first is written into the record as ever; the second
/// leaves as a standalone alert record, the same record plus its own alert
/// (its shell, its ids), where before it was dropped.
#[test]
fn the_flagship_rule_alerts_each_sequence_a_record_completes() {
    let mut conn: Value = serde_json::from_slice(&net("h", "e1", T2)).unwrap();
    conn["process"]["parent"]["entity_id"] = json!(["e1", "e2"]);
    let recs = [exec("h", "e1", T1), exec("h", "e2", T1), serde_json::to_vec(&conn).unwrap()];
    let mut d = Detector::new(&Config::default()).unwrap();
    let first = alert(&mut d, &recs).expect("the record completes a sequence");
    let second = d.take_alert().expect("and a second one: a standalone alert");
    assert!(d.take_alert().is_none());
    let second: Value = serde_json::from_slice(&second.bytes).unwrap();
    let shells: Vec<&Value> = [&first, &second].iter().map(|a| &a["apt_netcon"]["shell"]["process"]["entity_id"]).collect();
    assert_eq!(shells, [&json!("e1"), &json!("e2")]);
    assert_ne!(first["kibana"]["alert"]["uuid"], second["kibana"]["alert"]["uuid"]);
    // Both are the connection record plus an alert: the same bytes but for
    // the alert's own shell, ids and reason.
    let strip = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().retain(|k, _| k != "kibana" && k != "apt_netcon");
        v
    };
    assert_eq!(strip(&first), strip(&second));
    assert_eq!(strip(&second)["process"], conn["process"]);
    let s = d.stats();
    assert_eq!((s.sequences_completed, s.annotated, s.standalone_alerts), (2, 1, 1));
}
