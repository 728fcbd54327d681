//! Rule packs through the C ABI (per-record JSON: `aptnc_filter` then
//! `aptnc_flush`), and the per-rule report (`aptnc_rules_report`).
//!
//! The pack: small `.eql` rules written to a temporary directory, three of
//! which one network record completes (a port test, an address test, and
//! the last stage of a three-stage `sequence by host.id`), and one that
//! never matches. That record must give three alerts, one per rule, each
//! with `event.kind: "signal"` and its rule's `rule.name`, in rule order,
//! right after it. The MessagePack chunk path is in tests/msgpack.rs, the
//! sidecar in tests/serve.rs, the Fluent Bit mock host and the C harness in
//! tests/c, the Go binding in examples/go.

use apt_netcon::host::ffi::*;
use apt_netcon::{Config, Detector};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::ptr;

/// A fresh directory under the system's temporary directory.
fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("apt-netcon-pack-iface-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The pack, in file-name order: a_port, b_addr, c_seq, d_quiet.
fn write_pack(dir: &std::path::Path) {
    std::fs::write(dir.join("a_port.eql"), "network where destination.port == 4444\n").unwrap();
    std::fs::write(dir.join("b_addr.eql"), "network where destination.address == \"203.0.113.9\"\n").unwrap();
    std::fs::write(
        dir.join("c_seq.eql"),
        "sequence by host.id\n  [process where process.name == \"stage1\"]\n  [file where file.name == \"stage2\"]\n  [network where destination.port == 4444]\n",
    )
    .unwrap();
    std::fs::write(dir.join("d_quiet.eql"), "process where process.name == \"never-seen\"\n").unwrap();
}

/// Two rules that do not load.
fn write_broken(dir: &std::path::Path) {
    std::fs::write(dir.join("e_broken.eql"), "network where destination.port ==\n").unwrap();
    std::fs::write(dir.join("f_broken.eql"), "this is not eql\n").unwrap();
}

/// The three records: stage 1 and 2 of c_seq, then the network event that
/// completes c_seq, a_port and b_addr at once.
fn records() -> Vec<String> {
    vec![
        json!({"@timestamp": "2026-03-14T09:30:00.000Z", "event": {"category": ["process"], "type": ["start"], "id": "e1"},
               "host": {"id": "h1", "name": "web-1"}, "process": {"name": "stage1", "entity_id": "p1", "pid": 10}}),
        json!({"@timestamp": "2026-03-14T09:30:01.000Z", "event": {"category": ["file"], "type": ["creation"], "id": "e2"},
               "host": {"id": "h1", "name": "web-1"}, "file": {"name": "stage2", "path": "/var/tmp/stage2"},
               "process": {"name": "stage1", "entity_id": "p1", "pid": 10}}),
        json!({"@timestamp": "2026-03-14T09:30:02.000Z", "event": {"category": ["network"], "type": ["start"], "id": "e3"},
               "host": {"id": "h1", "name": "web-1"}, "destination": {"port": 4444, "address": "203.0.113.9", "ip": "203.0.113.9"},
               "process": {"name": "stage1", "entity_id": "p1", "pid": 10}}),
    ]
    .into_iter()
    .map(|v| v.to_string())
    .collect()
}

fn init(config: &str) -> Result<*mut aptnc_detector, (aptnc_status, String, Option<String>)> {
    let mut d = ptr::null_mut();
    let mut err = ptr::null_mut();
    let st = unsafe { aptnc_init(config.as_ptr(), config.len(), ptr::null(), &mut d, &mut err) };
    if st == aptnc_status::Ok {
        assert!(err.is_null());
        return Ok(d);
    }
    let msg = unsafe { std::ffi::CStr::from_ptr(aptnc_error_message(err)) }.to_string_lossy().into_owned();
    let key = unsafe { aptnc_error_key(err) };
    let key = (!key.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(key) }.to_string_lossy().into_owned());
    unsafe { aptnc_error_free(err) };
    Err((st, msg, key))
}

fn filter(d: *mut aptnc_detector, rec: &str) -> aptnc_status {
    let (mut out, mut out_len) = (ptr::null(), 0usize);
    unsafe { aptnc_filter(d, rec.as_ptr(), rec.len(), &mut out, &mut out_len) }
}

/// aptnc_flush's alerts, one JSON text per line.
fn flush(d: *mut aptnc_detector) -> Vec<String> {
    let mut r = aptnc_flush_report { size: std::mem::size_of::<aptnc_flush_report>() as u32, ..unsafe { std::mem::zeroed() } };
    assert_eq!(unsafe { aptnc_flush(d, &mut r) }, aptnc_status::Ok);
    let text = unsafe { std::slice::from_raw_parts(r.alerts, r.alerts_len) };
    let text = std::str::from_utf8(text).unwrap();
    let lines: Vec<String> = text.split_terminator('\n').map(str::to_string).collect();
    assert_eq!(lines.len() as u64, r.alert_count);
    assert!(text.is_empty() || text.ends_with('\n'));
    lines
}

fn stats(d: *mut aptnc_detector) -> aptnc_stats {
    let mut s = aptnc_stats { size: std::mem::size_of::<aptnc_stats>() as u32, ..Default::default() };
    assert_eq!(unsafe { aptnc_get_stats(d, &mut s) }, aptnc_status::Ok);
    s
}

fn report(d: *mut aptnc_detector) -> Value {
    let (mut out, mut out_len) = (ptr::null(), 0usize);
    assert_eq!(unsafe { aptnc_rules_report(d, &mut out, &mut out_len) }, aptnc_status::Ok);
    serde_json::from_slice(unsafe { std::slice::from_raw_parts(out, out_len) }).unwrap()
}

/// Each alert: the completing record's document, `event.kind: "signal"`,
/// and the rule's name.
fn check_alerts(alerts: &[String], completing: &str, names: &[&str]) {
    let rec: Value = serde_json::from_str(completing).unwrap();
    assert_eq!(alerts.len(), names.len(), "{alerts:#?}");
    for (a, name) in alerts.iter().zip(names) {
        let v: Value = serde_json::from_str(a).unwrap();
        assert_eq!(v["event"]["kind"], "signal", "{a}");
        assert_eq!(v["rule"]["name"], *name, "{a}");
        assert_eq!(v["event"]["id"], rec["event"]["id"], "the completing record's document");
        assert_eq!(v["destination"], rec["destination"]);
        assert_eq!(v["host"], rec["host"]);
    }
}

#[test]
fn one_record_completing_three_rules_gives_three_alerts_in_rule_order() {
    let dir = tmpdir("three");
    write_pack(&dir);
    let config = json!({"rules_dir": dir}).to_string();
    let d = init(&config).unwrap();
    let recs = records();
    for r in &recs[..2] {
        assert_eq!(filter(d, r), aptnc_status::Unchanged);
        assert!(flush(d).is_empty(), "no alert before the completing record");
    }
    assert_eq!(filter(d, &recs[2]), aptnc_status::Unchanged, "the record itself goes on unchanged");
    assert_eq!(stats(d).standalone_alerts, 3, "the host's cue to collect them");
    let alerts = flush(d);
    check_alerts(&alerts, &recs[2], &["a_port", "b_addr", "c_seq"]);
    assert!(flush(d).is_empty(), "handed over once");

    // The same alerts, byte for byte, as the Rust API gives them.
    let cfg = Config::from_json(&config).unwrap();
    let mut det = Detector::new(&cfg).unwrap();
    for r in &recs {
        det.process(r.as_bytes()).unwrap();
    }
    let mut direct = Vec::new();
    det.take_json_alerts(&mut direct);
    assert_eq!(String::from_utf8(direct).unwrap(), alerts.iter().map(|a| format!("{a}\n")).collect::<String>());

    // A sequence alert carries its stages' events in order; a single-event
    // rule's alert has none.
    let seq: Value = serde_json::from_str(&alerts[2]).unwrap();
    let ids: Vec<&Value> =
        seq["eql"]["events"].as_array().expect("the stages' events").iter().map(|e| &e["event"]["id"]).collect();
    assert_eq!(ids, [&json!("e1"), &json!("e2"), &json!("e3")], "{seq}");
    let single: Value = serde_json::from_str(&alerts[0]).unwrap();
    assert!(single.get("eql").is_none(), "{single}");

    let s = stats(d);
    assert_eq!((s.records, s.annotated, s.standalone_alerts, s.alerts_dropped), (3, 0, 3, 0));
    // Per rule: rule order, alerts, and the records each rule was shown.
    let rep = report(d);
    let rules = rep["rules"].as_array().unwrap();
    let names: Vec<&str> = rules.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a_port", "b_addr", "c_seq", "d_quiet"]);
    let alerts_per_rule: Vec<u64> = rules.iter().map(|r| r["alerts"].as_u64().unwrap()).collect();
    assert_eq!(alerts_per_rule, [1, 1, 1, 0]);
    assert_eq!(rules[2]["sequences_completed"], 1);
    assert!(rules.iter().all(|r| r["rule_id"].is_string() && r["engine"].is_string() && r["records"].is_u64()));
    assert!(rules[2]["records"].as_u64().unwrap() >= 3, "every stage's record reached c_seq");
    assert_eq!(rep["skipped"], json!([]));
    // Nothing in the report an aptnc_stats counter does not have, but the
    // identity, `alerts` and `indexed`.
    let fields: Vec<&str> = apt_netcon::Stats::default().fields().iter().map(|(k, _)| *k).collect();
    for k in rules[0].as_object().unwrap().keys() {
        assert!(fields.contains(&k.as_str()) || ["rule_id", "name", "engine", "alerts", "indexed"].contains(&k.as_str()), "{k}");
    }
    unsafe { aptnc_free(d) };
    let _ = std::fs::remove_dir_all(&dir);
}

/// `rules` as a list: the list's order is the rule order of the alerts.
#[test]
fn the_rules_list_order_is_the_alert_order() {
    let dir = tmpdir("list");
    write_pack(&dir);
    let f = |n: &str| dir.join(n).display().to_string();
    let config = json!({"rules": [f("c_seq.eql"), f("b_addr.eql"), f("a_port.eql")]}).to_string();
    let d = init(&config).unwrap();
    let recs = records();
    for r in &recs {
        assert_eq!(filter(d, r), aptnc_status::Unchanged);
    }
    check_alerts(&flush(d), &recs[2], &["c_seq", "b_addr", "a_port"]);
    unsafe { aptnc_free(d) };
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn broken_rules_refuse_the_start_listing_every_one_unless_skipped() {
    let dir = tmpdir("broken");
    write_pack(&dir);
    write_broken(&dir);
    let (st, msg, key) = init(&json!({"rules_dir": dir}).to_string()).unwrap_err();
    assert_eq!(st, aptnc_status::ConfigError);
    assert_eq!(key.as_deref(), Some("rules_dir"));
    assert!(msg.contains("2 of 6 rules do not load"), "{msg}");
    assert!(msg.contains("e_broken.eql: ") && msg.contains("f_broken.eql: "), "every broken rule: {msg}");

    let d = init(&json!({"rules_dir": dir, "skip_broken_rules": true}).to_string()).unwrap();
    let rep = report(d);
    let skipped = rep["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 2);
    assert!(skipped[0]["name"].as_str().unwrap().ends_with("e_broken.eql"));
    assert!(skipped[1]["name"].as_str().unwrap().ends_with("f_broken.eql"));
    assert!(skipped.iter().all(|s| !s["reason"].as_str().unwrap().is_empty()));
    assert_eq!(rep["rules"].as_array().unwrap().len(), 4);
    // The loadable rules run as ever.
    let recs = records();
    for r in &recs {
        assert_eq!(filter(d, r), aptnc_status::Unchanged);
    }
    check_alerts(&flush(d), &recs[2], &["a_port", "b_addr", "c_seq"]);
    unsafe { aptnc_free(d) };
    let _ = std::fs::remove_dir_all(&dir);
}

/// One rule (the default): the report has its one rule, and the C ABI's
/// output is what it was.
#[test]
fn the_default_detector_reports_its_one_rule() {
    let sample = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/sample.ndjson")).unwrap();
    let d = init("").unwrap();
    let mut annotated = 0;
    for line in sample.lines() {
        match filter(d, line) {
            aptnc_status::Annotated => annotated += 1,
            aptnc_status::Unchanged => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(annotated, 2);
    assert!(flush(d).is_empty(), "no standalone alert from the default detector");
    let rep = report(d);
    let rules = rep["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["rule_id"], "eaef8a35-12e0-4ac0-bc14-81c72b6bd27c");
    assert_eq!(rules[0]["engine"], "fast");
    assert_eq!(rules[0]["alerts"], 2);
    assert_eq!(rules[0]["annotated"], 2);
    assert_eq!(rules[0]["records"], sample.lines().count() as u64);
    assert_eq!(rep["skipped"], json!([]));
    unsafe { aptnc_free(d) };
}

/// Hostile calls: NULL handle or out-pointers give NULL_PARAMETER and leave
/// the caller's variables alone; the text is valid until the next call.
#[test]
fn rules_report_refuses_null_arguments_without_touching_anything() {
    let d = init("").unwrap();
    let sentinel = 0x5a5a as *const u8;
    let (mut out, mut out_len) = (sentinel, 77usize);
    assert_eq!(unsafe { aptnc_rules_report(ptr::null_mut(), &mut out, &mut out_len) }, aptnc_status::NullParameter);
    assert_eq!(unsafe { aptnc_rules_report(d, ptr::null_mut(), &mut out_len) }, aptnc_status::NullParameter);
    assert_eq!(unsafe { aptnc_rules_report(d, &mut out, ptr::null_mut()) }, aptnc_status::NullParameter);
    assert_eq!((out, out_len), (sentinel, 77));
    // Called again and again: the same text each time while nothing happens.
    let a = report(d);
    let b = report(d);
    assert_eq!(a, b);
    unsafe { aptnc_free(d) };
}

#[cfg(debug_assertions)]
#[test]
fn rules_report_of_a_poisoned_detector_is_refused() {
    let d = init("").unwrap();
    assert_eq!(unsafe { aptnc_test_force_panic(d) }, aptnc_status::Panic);
    let (mut out, mut out_len) = (ptr::null(), 0usize);
    assert_eq!(unsafe { aptnc_rules_report(d, &mut out, &mut out_len) }, aptnc_status::Poisoned);
    assert!(out.is_null());
    unsafe { aptnc_free(d) };
}

/// The log lines the Fluent Bit filter and the sidecar write from the
/// report: one per rule that alerted, one per skipped rule, each one line.
#[test]
fn report_lines_name_the_rules_that_alerted_or_did_not_load() {
    let dir = tmpdir("lines");
    write_pack(&dir);
    write_broken(&dir);
    let cfg = Config::from_json(&json!({"rules_dir": dir, "skip_broken_rules": true}).to_string()).unwrap();
    let mut det = Detector::new(&cfg).unwrap();
    for r in records() {
        det.process(r.as_bytes()).unwrap();
    }
    let lines = rules_report_lines(&rules_report(&det));
    assert_eq!(lines.len(), 5, "{lines:#?}");
    assert!(lines[0].starts_with("rule \"a_port\" (a_port): alerts=1 records="), "{lines:#?}");
    assert!(lines[1].starts_with("rule \"b_addr\" (b_addr): alerts=1 "), "{lines:#?}");
    assert!(lines[2].starts_with("rule \"c_seq\" (c_seq): alerts=1 ") && lines[2].contains(" sequences_completed=1"));
    assert!(lines[3].starts_with("skipped rule ") && lines[3].contains("e_broken.eql: "), "{lines:#?}");
    assert!(lines[4].starts_with("skipped rule ") && lines[4].contains("f_broken.eql: "), "{lines:#?}");
    assert!(lines.iter().all(|l| !l.contains('\n')));
    let _ = std::fs::remove_dir_all(&dir);
}
