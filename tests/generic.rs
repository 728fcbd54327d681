//! Rules beyond the fast engine's subset, run through the detector on the
//! generic engine (`src/engine/generic.rs`): alerts name every event of a result,
//! every result gives an alert, through JSON and MessagePack; exceptions
//! and `max_lateness` work as for the fast engine; every Elastic Linux rule
//! loads; and the APT rule's alerts name their events by `event.id`.

use apt_netcon::{Config, Detector, Rule, Verdict};
use serde_json::{json, Value};
use std::path::Path;

#[path = "common/msgpack_of.rs"]
mod msgpack_of;

fn rule(q: &str) -> Rule {
    Rule::from_eql(q, apt_netcon::config::rule::meta_for_file("test-rule")).unwrap_or_else(|e| panic!("{q}: {e}"))
}

fn ev(id: &str, t: i64, cat: &str, extra: Value) -> Vec<u8> {
    let mut v = json!({
        "@timestamp": apt_netcon::format::time::format_ms(1_714_557_600_000 + t),
        "event": {"id": id, "category": [cat]},
        "host": {"id": "H1", "name": "host-1"},
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    serde_json::to_vec(&v).unwrap()
}

/// (inline alerts, standalone alerts) for the records, in order; `finish`
/// at the end.
fn run(d: &mut Detector, recs: &[Vec<u8>]) -> (Vec<Value>, Vec<Value>) {
    let (mut inline, mut standalone) = (Vec::new(), Vec::new());
    for r in recs {
        if let Ok(Verdict::Annotated(b)) = d.process(r) {
            inline.push(serde_json::from_slice(b).unwrap());
        }
        while let Some(a) = d.take_alert() {
            standalone.push(serde_json::from_slice(&a.bytes).unwrap());
        }
    }
    d.finish();
    while let Some(a) = d.take_alert() {
        standalone.push(serde_json::from_slice(&a.bytes).unwrap());
    }
    (inline, standalone)
}

/// The events' ids: from `eql.events` (a missing stage has none), or for
/// an event query (no `eql` root) the ancestor's.
fn ids(alert: &Value) -> Vec<Value> {
    match alert["eql"]["events"].as_array() {
        Some(events) => events.iter().map(|e| e["event"]["id"].clone()).collect(),
        None => alert["kibana"]["alert"]["ancestors"].as_array().unwrap().iter().map(|a| a["id"].clone()).collect(),
    }
}

#[test]
fn a_generic_sequence_alert_names_every_event_in_stage_order() {
    let r = rule(
        r#"sequence by host.id with maxspan=10s
             [process where ?process.parent.name regex~ "ap[t]"] by process.entity_id
             [file where length(file.path) > 3] by process.entity_id
             [network where destination.port >= 443] by process.entity_id"#,
    );
    assert!(r.generic_query().is_some(), "optional fields, regex, length(): the generic engine");
    let mut d = Detector::with_rule(r, &Config::default());
    let recs = [
        ev("e1", 0, "process", json!({"process": {"entity_id": "P", "parent": {"name": "APT"}}})),
        ev("e2", 100, "file", json!({"process": {"entity_id": "P"}, "file": {"path": "/tmp/x"}})),
        ev("noise", 150, "network", json!({"process": {"entity_id": "Q"}, "destination": {"port": 443}})),
        ev("e3", 200, "network", json!({"process": {"entity_id": "P"}, "destination": {"port": 8443}})),
    ];
    let (inline, standalone) = run(&mut d, &recs);
    assert!(standalone.is_empty());
    assert_eq!(inline.len(), 1);
    let a = &inline[0];
    assert_eq!(a["event"]["id"], "e3", "the completing record carries the alert");
    assert_eq!(ids(a), vec![json!("e1"), json!("e2"), json!("e3")]);
    assert_eq!(a["eql"]["join_keys"], json!(["H1", "P"]));
    assert_eq!(a["eql"]["span_ms"], 200);
    assert_eq!(a["eql"]["events"][1]["file"]["path"], "/tmp/x", "the fields the stage reads");
    let anc: Vec<Value> = a["kibana"]["alert"]["ancestors"].as_array().unwrap().iter().map(|x| x["id"].clone()).collect();
    assert_eq!(anc, vec![json!("e1"), json!("e2"), json!("e3")]);
    assert_eq!(a["rule"]["name"], "test-rule");
    let s = d.stats();
    assert_eq!((s.records, s.annotated, s.sequences_completed), (4, 1, 1));
}

#[test]
fn one_record_completing_several_results_gives_one_alert_each() {
    // A multi-valued join key: Elasticsearch completes one sequence per value.
    let r = rule(
        r#"sequence by user.name with maxspan=1m
             [authentication where ?event.outcome == "failure" and ?custom.mark == null]
             [authentication where event.outcome == "success"]"#,
    );
    let mut d = Detector::with_rule(r, &Config::default());
    let recs = [
        ev("a1", 0, "authentication", json!({"user": {"name": "root"}, "event": {"id": "a1", "category": ["authentication"], "outcome": "failure"}})),
        ev("a2", 1, "authentication", json!({"user": {"name": "admin"}, "event": {"id": "a2", "category": ["authentication"], "outcome": "failure"}})),
        ev("a3", 2, "authentication", json!({"user": {"name": ["root", "admin"]}, "event": {"id": "a3", "category": ["authentication"], "outcome": "success"}})),
    ];
    let (inline, standalone) = run(&mut d, &recs);
    assert_eq!(inline.len() + standalone.len(), 2, "two keys, two alerts");
    assert_eq!(inline[0]["event"]["id"], "a3");
    assert_eq!(standalone[0]["event"]["id"], "a3", "the second alert is the same record plus its alert");
    let mut keys: Vec<Value> = inline.iter().chain(&standalone).map(|a| a["eql"]["join_keys"][0].clone()).collect();
    keys.sort_by_key(|k| k.to_string());
    assert_eq!(keys, vec![json!("admin"), json!("root")]);
    assert_eq!(d.stats().standalone_alerts, 1);
}

/// The same on the fast engine: a record completing a sequence for each
/// value of a multi-valued join key gives an alert each (the first inline,
/// the others standalone: the record plus the alert), each with its own key
/// and events, whether the record's alerts come at once or after it was
/// held back for lateness.
#[test]
fn on_the_fast_engine_too_one_record_completing_several_results_gives_one_alert_each() {
    let q = r#"sequence by user.name with maxspan=1m
                 [authentication where event.outcome == "failure"]
                 [authentication where event.outcome == "success"]"#;
    assert!(rule(q).generic_query().is_none(), "the fast engine runs it");
    let recs = [
        ev("a1", 0, "authentication", json!({"user": {"name": "root"}, "event": {"id": "a1", "category": ["authentication"], "outcome": "failure"}})),
        ev("a2", 1, "authentication", json!({"user": {"name": "admin"}, "event": {"id": "a2", "category": ["authentication"], "outcome": "failure"}})),
        ev("a3", 2, "authentication", json!({"user": {"name": ["root", "admin"]}, "event": {"id": "a3", "category": ["authentication"], "outcome": "success"}})),
    ];
    for lateness in ["0s", "2s"] {
        let cfg = Config::from_json(&format!(r#"{{"max_lateness": "{lateness}"}}"#)).unwrap();
        let mut d = Detector::with_rule(rule(q), &cfg);
        let (inline, standalone) = run(&mut d, &recs);
        let all: Vec<&Value> = inline.iter().chain(&standalone).collect();
        assert_eq!(all.len(), 2, "two keys, two alerts (lateness {lateness})");
        assert_eq!(d.stats().sequences_completed, 2);
        let mut got: Vec<(Value, Vec<Value>)> = all
            .iter()
            .map(|a| (a["eql"]["join_keys"][0].clone(), a["kibana"]["alert"]["ancestors"].as_array().unwrap().iter().map(|x| x["id"].clone()).collect()))
            .collect();
        got.sort_by_key(|k| k.0.to_string());
        assert_eq!(got, vec![(json!("admin"), vec![json!("a2"), json!("a3")]), (json!("root"), vec![json!("a1"), json!("a3")])], "lateness {lateness}");
        for a in &all {
            assert_eq!(a["event"]["id"], "a3", "each alert is the completing record plus its alert");
        }
        assert_ne!(all[0]["kibana"]["alert"]["uuid"], all[1]["kibana"]["alert"]["uuid"]);
    }
    // Through `Detector::evaluate` (the fields, without the record): the
    // first result's alert is returned, the other leaves as a standalone
    // alert on the completing event's carried fields.
    let mut d = Detector::with_rule(rule(q), &Config::default());
    let table = d.field_table().clone();
    let mut returned = Vec::new();
    for r in &recs {
        let mut f = apt_netcon::format::event::Fields::new();
        table.extract(r, &mut f).unwrap();
        returned.extend(d.evaluate(&f).unwrap());
    }
    assert_eq!(returned.len(), 1);
    let other: Value = serde_json::from_slice(&d.take_alert().expect("the second result's alert").bytes).unwrap();
    assert!(d.take_alert().is_none());
    assert_eq!(other["event"]["id"], "a3", "the completing event's fields");
    assert_eq!(other["user"]["name"], json!(["root", "admin"]));
    let keys = [returned[0]["eql"]["join_keys"][0].clone(), other["eql"]["join_keys"][0].clone()];
    assert!(keys.contains(&json!("root")) && keys.contains(&json!("admin")), "{keys:?}");
}

#[test]
fn a_trailing_missing_event_result_leaves_when_its_window_has_passed() {
    let r = rule(
        r#"sequence by host.id with maxspan=5s
             [process where process.name == "sshd"]
            ![process where process.name == "logger"]"#,
    );
    let mut d = Detector::with_rule(r, &Config::default());
    let sshd = |id: &str, t| ev(id, t, "process", json!({"process": {"name": "sshd"}}));
    let logger = |id: &str, t| ev(id, t, "process", json!({"process": {"name": "logger"}}));
    let other = |id: &str, t| ev(id, t, "process", json!({"process": {"name": "ls"}}));
    let recs = [
        sshd("s1", 0),
        logger("l1", 1000), // cancels s1's result
        sshd("s2", 10_000),
        other("o1", 15_000), // exactly at s2 + maxspan: not yet past it
        other("o2", 15_001), // past it: s2's result leaves
        sshd("s3", 20_000),  // still waiting at the end of the stream: released by finish
    ];
    let (inline, standalone) = run(&mut d, &recs);
    assert!(inline.is_empty(), "a result that waits cannot be inline");
    assert_eq!(standalone.len(), 2);
    assert_eq!(ids(&standalone[0]), vec![json!("s2"), Value::Null]);
    assert_eq!(standalone[0]["eql"]["events"][1]["missing"], true);
    assert_eq!(standalone[0]["process"]["name"], "sshd", "built from its last event's identifying fields");
    assert_eq!(ids(&standalone[1]), vec![json!("s3"), Value::Null]);
}

#[test]
fn msgpack_records_alert_as_json_ones_do() {
    let r = rule(r#"process where process.name : "BASH" and process.pid % 2 == 1"#);
    let cfg = Config::default();
    let rec = ev("p1", 0, "process", json!({"process": {"name": "bash", "pid": 7}}));
    let v: Value = serde_json::from_slice(&rec).unwrap();
    let mp = msgpack_of::mp(&v);
    let mut d = Detector::with_rule(r.clone(), &cfg);
    let Ok(Verdict::Annotated(json_out)) = d.process(&rec) else { panic!("JSON record not annotated") };
    let json_alert: Value = serde_json::from_slice(json_out).unwrap();
    let mut d = Detector::with_rule(r, &cfg);
    let Ok(Verdict::Annotated(mp_out)) = d.process_msgpack(&mp) else { panic!("MessagePack record not annotated") };
    assert_eq!(mp_out[0] & 0xf0, 0x80, "a MessagePack map comes back");
    let even = ev("p2", 0, "process", json!({"process": {"name": "bash", "pid": 8}}));
    assert!(matches!(d.process(&even), Ok(Verdict::Unchanged)));
    assert_eq!(ids(&json_alert), vec![json!("p1")]);
    assert!(json_alert.get("eql").is_none(), "an event query has no events list, keys or span");
    assert!(json_alert["kibana"]["alert"].get("group").is_none(), "nor a group id");
}

/// `{"a": {"b": v}}` for the path `a.b`.
fn nested(path: &str, v: Value) -> Value {
    path.rsplit('.').fold(v, |inner, k| json!({ k: inner }))
}

/// The fast engine takes comparisons whose values it reads as Elasticsearch
/// indexes them given ECS's types: equality and ordering of `long` and
/// `double` fields with numbers, booleans, regular expressions on keyword
/// fields, and addresses read only where an absent one fails the
/// condition. On awkward values (decimals in a `long`,
/// numeric strings, out of range, the wrong type, arrays, garbage
/// addresses) each such rule alerts on exactly the events its generic twin
/// does, through JSON and MessagePack.
#[test]
fn the_fast_engine_reads_typed_values_as_the_generic_engine_does() {
    let values = [
        json!(3), json!(2), json!(4), json!(-3), json!(3.5), json!(2.9), json!(-2.5), json!(3.0), json!("3"), json!(" 4 "),
        json!("3.7"), json!("-2.5"), json!("1e1"), json!("abc"), json!(""), json!(true), json!(false), json!("true"),
        json!("false"), json!(null), json!([1, 5]), json!([]), json!(9.3e18), json!(u64::MAX), json!(i64::MIN),
        json!({"a": 1}), json!("10.1.2.3"), json!("8.8.8.8"), json!("::1"), json!("garbage"), json!(["8.8.8.8", "10.0.0.1"]),
        json!("::ffff:10.1.2.3"),
    ];
    let cases = [
        ("process", "process.args_count", "process.args_count >= 3"),
        ("process", "process.args_count", "process.args_count > 3"),
        ("process", "process.args_count", "3 > process.args_count"),
        ("process", "process.args_count", "process.args_count <= -3"),
        ("process", "process.args_count", "process.args_count == 3"),
        ("process", "process.args_count", "process.args_count != 3"),
        ("process", "process.args_count", "process.args_count in (3, 5)"),
        ("process", "process.args_count", "process.args_count > 2.5"),
        ("process", "process.args_count", "not process.args_count < 3"),
        ("process", "container.cpu.usage", "container.cpu.usage >= 3"),
        ("process", "container.cpu.usage", "container.cpu.usage < 3.5"),
        ("process", "container.cpu.usage", "container.cpu.usage == 3"),
        ("process", "process.interactive", "process.interactive == true"),
        ("process", "process.interactive", "process.interactive == false"),
        ("process", "process.interactive", "process.interactive != true"),
        ("process", "process.name", r#"process.name regex "[0-9]+""#),
        ("process", "process.name", r#"process.name regex~ "ABC|TRU.*|.*[.]5""#),
        ("process", "process.name", r#"not process.name regex "3""#),
        ("network", "destination.ip", r#"destination.ip != null and not cidrmatch(destination.ip, "10.0.0.0/8")"#),
        ("network", "destination.ip", r#"not (destination.ip == null or cidrmatch(destination.ip, "10.0.0.0/8"))"#),
        ("network", "destination.ip", r#"destination.ip != "8.8.8.8" and cidrmatch(destination.ip, "0.0.0.0/0")"#),
        // An address field of ECS by its type, not its name; a field outside
        // ECS named like one is a string to both engines.
        ("network", "dns.resolved_ip", r#"dns.resolved_ip == "10.1.2.3""#),
        ("network", "custom.ip", r#"custom.ip != "10.1.2.3""#),
    ];
    let cfg = Config::default();
    // Where an absent address would match, the generic engine runs them.
    for q in [
        r#"network where not cidrmatch(destination.ip, "10.0.0.0/8")"#,
        r#"network where (destination.ip != null and not cidrmatch(destination.ip, "10.0.0.0/8")) or process.name == "x""#,
        r#"network where not (destination.ip == null or cidrmatch(destination.ip, "10.0.0.0/8")) or process.name == "x""#,
        r#"network where destination.ip != "8.8.8.8""#,
    ] {
        assert!(Detector::with_rule(rule(q), &cfg).is_generic(), "{q}");
    }
    for (cat, field, cond) in cases {
        let fast = rule(&format!("{cat} where {cond}"));
        let generic = rule(&format!("{cat} where ({cond}) and ?custom.mark == null"));
        assert!(!Detector::with_rule(fast.clone(), &cfg).is_generic(), "{cond} runs on the fast engine");
        assert!(Detector::with_rule(generic.clone(), &cfg).is_generic());
        let recs: Vec<Vec<u8>> =
            values.iter().enumerate().map(|(i, v)| ev(&format!("e{i}"), i as i64 * 10, cat, nested(field, v.clone()))).collect();
        let alerted = |r: &Rule, msgpack: bool| -> Vec<usize> {
            let mut d = Detector::with_rule(r.clone(), &cfg);
            let mut out = Vec::new();
            for (i, rec) in recs.iter().enumerate() {
                let verdict = if msgpack {
                    let v: Value = serde_json::from_slice(rec).unwrap();
                    d.process_msgpack(&msgpack_of::mp(&v)).map(|v| matches!(v, Verdict::Annotated(_)))
                } else {
                    d.process(rec).map(|v| matches!(v, Verdict::Annotated(_)))
                };
                if verdict == Ok(true) {
                    out.push(i);
                }
            }
            out
        };
        let want = alerted(&generic, false);
        assert!(!want.is_empty() && want.len() < values.len(), "{cond}: some values match, some do not: {want:?}");
        for msgpack in [false, true] {
            let got = alerted(&fast, msgpack);
            let show = |v: &[usize]| v.iter().map(|&i| values[i].to_string()).collect::<Vec<_>>().join(" ");
            assert_eq!(got, want, "{cond} (MessagePack: {msgpack}): fast [{}], generic [{}]", show(&got), show(&want));
        }
    }
}

/// `with runs=N` runs on the fast engine as N copies of its stage (as
/// Elasticsearch's parser expands it), where the stages then number at most
/// 32: on a stream of failures and successes for two users, with equal
/// times, gaps past `maxspan` and a success too early, its alerts are the
/// generic engine's, event for event.
#[test]
fn runs_on_the_fast_engine_give_the_generic_engines_results() {
    let q = r#"sequence by user.name with maxspan=10s
        [authentication where event.outcome == "failure"] with runs=3
        [authentication where event.outcome == "success"]"#;
    let cfg = Config::default();
    let fast = rule(q);
    let generic = rule(&q.replace(r#"event.outcome == "success"]"#, r#"event.outcome == "success" and ?custom.mark == null]"#));
    assert!(!Detector::with_rule(fast.clone(), &cfg).is_generic());
    assert!(Detector::with_rule(generic.clone(), &cfg).is_generic());
    let too_long = rule("sequence [authentication where true] with runs=20 [process where true] with runs=13");
    assert!(Detector::with_rule(too_long, &cfg).is_generic(), "33 stages: beyond the fast engine");
    // (time in ms, user, outcome)
    let plan: &[(i64, &str, &str)] = &[
        (0, "a", "failure"), (1000, "a", "failure"), (1000, "b", "failure"), (2000, "a", "success"),
        (2500, "a", "failure"), (3000, "b", "failure"), (3000, "b", "failure"), (4000, "a", "success"),
        (4000, "b", "success"), (5000, "b", "failure"), (20000, "a", "failure"), (21000, "a", "failure"),
        (22000, "a", "failure"), (23000, "a", "failure"), (24000, "a", "success"), (24000, "a", "success"),
        (40000, "b", "failure"), (41000, "b", "failure"), (52000, "b", "failure"), (53000, "b", "success"),
    ];
    let recs: Vec<Vec<u8>> = plan
        .iter()
        .enumerate()
        .map(|(i, (t, user, outcome))| {
            ev(&format!("e{i}"), *t, "authentication", json!({"user": {"name": user}, "event_outcome": outcome}))
        })
        .map(|r| {
            // `event.outcome` beside the id and category `ev` writes.
            let mut v: Value = serde_json::from_slice(&r).unwrap();
            let o = v.as_object_mut().unwrap().remove("event_outcome").unwrap();
            v["event"]["outcome"] = o;
            serde_json::to_vec(&v).unwrap()
        })
        .collect();
    let results = |r: &Rule| -> Vec<Vec<Value>> {
        let mut d = Detector::with_rule(r.clone(), &cfg);
        let (inline, standalone) = run(&mut d, &recs);
        let mut all: Vec<Vec<Value>> = inline.iter().chain(&standalone).map(ids).collect();
        all.sort_by_key(|v| format!("{v:?}"));
        all
    };
    let want = results(&generic);
    assert!(want.len() >= 2, "the stream completes several results: {want:?}");
    assert_eq!(results(&fast), want);
}

#[test]
fn exceptions_and_read_errors_work_as_for_the_fast_engine() {
    let r = rule(r#"process where startsWith~(process.name, "CURL") and ?process.args != null and ?custom.mark == null"#);
    let cfg = Config::from_json(
        r#"{"exceptions": [{"name": "ci", "entries": [{"field": "host.name", "operator": "is", "value": "ci-1"}]}]}"#,
    )
    .unwrap();
    let mut d = Detector::with_rule(r, &cfg);
    let hit = ev("c1", 0, "process", json!({"process": {"name": "curl", "args": ["curl"]}}));
    let mut excluded: Value = serde_json::from_slice(&hit).unwrap();
    excluded["host"]["name"] = json!("ci-1");
    assert!(matches!(d.process(&hit), Ok(Verdict::Annotated(_))));
    assert!(matches!(d.process(&serde_json::to_vec(&excluded).unwrap()), Ok(Verdict::Unchanged)));
    // A record lacking one of the rule's strings (the category, a string of
    // the name) passes unread, as with the fast engine's prefilter; one that
    // holds them is read and its errors are counted.
    assert!(matches!(d.process(b"{not json"), Ok(Verdict::Unchanged)));
    assert!(matches!(d.process(b"{not json, curl"), Ok(Verdict::Unchanged)), "the category is required too");
    assert!(d.process(b"{not json, \"process\", curl").is_err());
    assert!(d.process(b"[\"curl\", \"process\"]").is_err());
    let s = d.stats();
    assert_eq!((s.annotated, s.excluded, s.invalid_json, s.not_an_object), (1, 1, 1, 1));
    assert_eq!(d.exception_counts(), vec![("ci".to_string(), 1)]);
    // prefilter = false: every record is read.
    let cfg = Config::from_json(r#"{"prefilter": false}"#).unwrap();
    let mut d = Detector::with_rule(rule(r#"process where startsWith~(process.name, "CURL")"#), &cfg);
    assert!(d.process(b"{not json").is_err());
    assert_eq!(d.stats().invalid_json, 1);
}

#[test]
fn max_lateness_orders_events_for_the_generic_engine_too() {
    let r = rule(
        r#"sequence by host.id with maxspan=5s
             [process where process.name == "a" and ?x == null]
             [process where process.name == "b"]"#,
    );
    let cfg = Config::from_json(r#"{"max_lateness": "2s"}"#).unwrap();
    let mut d = Detector::with_rule(r, &cfg);
    let a = ev("a", 1000, "process", json!({"process": {"name": "a"}}));
    let b = ev("b", 500, "process", json!({"process": {"name": "b"}})); // earlier than a: pairs with nothing
    let b2 = ev("b2", 1500, "process", json!({"process": {"name": "b"}}));
    let late = ev("z", 9000, "process", json!({"process": {"name": "z"}}));
    let (inline, standalone) = run(&mut d, &[b2, a, b, late]);
    assert!(inline.is_empty(), "with max_lateness, results leave as standalone alerts");
    assert_eq!(standalone.len(), 1);
    assert_eq!(ids(&standalone[0]), vec![json!("a"), json!("b2")], "sorted by time, b2 follows a");
}

#[test]
fn id_field_names_the_events() {
    let r = rule(r#"process where process.name == "sh" and ?user.name == "root" and ?custom.mark == null"#);
    let cfg = Config::from_json(r#"{"id_field": "event.sequence"}"#).unwrap();
    let mut d = Detector::with_rule(r, &cfg);
    let rec = ev("ignored", 0, "process", json!({"process": {"name": "sh"}, "user": {"name": "root"}, "event": {"sequence": 4711, "category": ["process"]}}));
    let Ok(Verdict::Annotated(b)) = d.process(&rec) else { panic!() };
    let a: Value = serde_json::from_slice(b).unwrap();
    assert_eq!(a["kibana"]["alert"]["ancestors"][0]["id"], "4711");
}

#[test]
fn field_types_from_the_config_type_fields_outside_ecs() {
    let q = r#"any where app.addr == "10.0.0.0/8" and app.version > "1.9.0""#;
    let cfg = Config::from_json(r#"{"field_types": {"app.addr": "ip", "app.version": "version"}}"#).unwrap();
    let mut d = Detector::with_rule(rule(q), &cfg);
    let hit = ev("h", 0, "process", json!({"app": {"addr": "10.1.2.3", "version": "1.10.0"}}));
    let miss = ev("m", 0, "process", json!({"app": {"addr": "10.1.2.3", "version": "1.2.0"}}));
    assert!(matches!(d.process(&hit), Ok(Verdict::Annotated(_))), "1.10.0 > 1.9.0 as versions");
    assert!(matches!(d.process(&miss), Ok(Verdict::Unchanged)));
    // Without the types, "1.10.0" < "1.9.0" as strings and the address is a string.
    let mut d = Detector::with_rule(rule(q), &Config::default());
    assert!(matches!(d.process(&hit), Ok(Verdict::Unchanged)));
    let e = Config::from_json(r#"{"field_types": {"x": "ipp"}}"#).unwrap_err();
    assert!(e.to_string().contains("field_types") && e.to_string().contains("ipp"), "{e}");
}

#[test]
fn the_apt_rule_names_its_events_by_event_id() {
    let sample = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/sample.ndjson")).unwrap();
    let mut d = Detector::new(&Config::default()).unwrap();
    let mut ancestors = Vec::new();
    for line in sample.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        if let Ok(Verdict::Annotated(b)) = d.process(line) {
            let a: Value = serde_json::from_slice(b).unwrap();
            ancestors.push(a["kibana"]["alert"]["ancestors"].clone());
        }
    }
    // The new bytes (docs/eql.md, "Alerts of rules on the generic engine"): each stage's own `event.id`.
    assert_eq!(
        ancestors,
        vec![
            json!([{"type": "event", "id": "hook-exec-0001", "depth": 0}, {"type": "event", "id": "hook-net-0001", "depth": 0}]),
            json!([{"type": "event", "id": "hook-exec-0002", "depth": 0}, {"type": "event", "id": "hook-net-0002", "depth": 0}]),
        ]
    );
    // An event without `event.id` is still named by the digest of its identity.
    let exec = br#"{"@timestamp":"2024-05-01T10:00:00Z","event":{"category":["process"],"type":["start"],"action":"exec"},"host":{"id":"H","os":{"type":"linux"}},"process":{"name":"sh","entity_id":"E","args":["sh","-c","x"],"parent":{"name":"apt"}}}"#;
    let net = br#"{"@timestamp":"2024-05-01T10:00:01Z","event":{"category":["network"],"type":["start"],"action":"connection_attempted"},"host":{"id":"H","os":{"type":"linux"}},"process":{"parent":{"entity_id":"E"}},"destination":{"ip":"8.8.8.8"}}"#;
    let mut d = Detector::new(&Config::default()).unwrap();
    d.process(exec).unwrap();
    let Ok(Verdict::Annotated(b)) = d.process(net) else { panic!() };
    let a: Value = serde_json::from_slice(b).unwrap();
    let id = a["kibana"]["alert"]["ancestors"][0]["id"].as_str().unwrap().to_string();
    assert_eq!((id.len(), id.matches('-').count()), (36, 4), "{id}");
}

#[test]
fn every_elastic_linux_rule_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/rules/elastic-linux-eql");
    if !dir.is_dir() {
        eprintln!("skipped: rules not present ({})", dir.display());
        return;
    }
    let (mut loaded, mut fast, mut failures) = (0, 0, Vec::new());
    let mut paths: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    let started = std::time::Instant::now();
    for p in &paths {
        let text = std::fs::read_to_string(p).unwrap();
        match apt_netcon::config::rule_file::load_toml(&text, &p.display().to_string()) {
            Ok(r) => {
                loaded += 1;
                fast += r.generic_query().is_none() as usize;
                // And a detector runs it.
                let mut d = Detector::with_rule(r, &Config::default());
                let _ = d.process(br#"{"@timestamp":"2024-05-01T10:00:00Z","event":{"category":["process"]}}"#);
            }
            Err(e) => failures.push(format!("{}: {e}", p.display())),
        }
    }
    eprintln!(
        "elastic linux rules: {loaded} of {} load ({fast} on the fast engine, {} on the generic one) in {:.2?}",
        paths.len(),
        loaded - fast,
        started.elapsed()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(loaded, 287);
}

#[test]
fn state_stays_under_the_cap_for_every_construct() {
    use apt_netcon::eql::{Engine, EngineOptions};
    let queries = [
        "sequence by k [a where true] [b where true]",
        "sequence by k [a where true] with runs=3 [b where true]",
        "sequence by k [a where true] [b where true] until [c where true]",
        "sequence by k with maxspan=1h [a where true] ![c where true] [b where true]",
        "sequence by k with maxspan=1h [a where true] [b where true] ![c where true]",
        "sample by k [a where true] [b where true] [c where true]",
    ];
    for q in queries {
        let cap = 500;
        let opts = EngineOptions { max_partials: cap, ..EngineOptions::default() };
        let mut e = Engine::new(q, opts).unwrap();
        let mut out = Vec::new();
        let mut peak = 0;
        for i in 0..20_000u64 {
            // Every key new: nothing ever completes, everything must be dropped.
            let cat = ["a", "c", "a", "b"][(i % 4) as usize];
            let k = if cat == "b" { format!("other{i}") } else { format!("k{i}") };
            let ev = json!({"@timestamp": i as i64, "event": {"category": cat}, "k": k});
            e.push(i, &ev, &mut out);
            peak = peak.max(e.state_len());
        }
        assert!(peak <= cap + 1, "{q}: {peak} partials held, cap {cap}");
        assert!(e.stats().evicted > 0, "{q}: evictions are counted");
        eprintln!("{q}: peak {peak}, evicted {}", e.stats().evicted);
    }
}

/// A rule pack reads a MessagePack body into a tree of only the fields its
/// generic rules read (`apt_netcon::engine::pruned`): the same values on
/// the kept paths as the full tree, the same verdict on broken bodies (bad
/// UTF-8 or a non-string key in a dropped member, a truncated body, too
/// deep, trailing bytes).
#[test]
fn messagepack_reads_as_in_the_full_tree() {
    let paths = ["a.b", "arr.k", "e.f"];
    let t = apt_netcon::engine::pruned::TreePaths::new(paths);
    let v: Value = serde_json::from_str(
        r#"{"a":{"b":[1,"x"],"c":"dropped"},"arr":[{"k":"one"},{"k":["two"]}],"e.f":-3,"skip":{"x":[1,{"y":"z"}]}}"#,
    )
    .unwrap();
    let body = msgpack_of::mp(&v);
    let (p, f) = (apt_netcon::engine::pruned::read_pruned(&body, true, &t).unwrap(), apt_netcon::engine::generic::read(&body, true).unwrap());
    let values = |v: &Value, path: &str| {
        let mut out = Vec::new();
        apt_netcon::eql::eval::collect(v, path, &mut out);
        out.into_iter().cloned().collect::<Vec<Value>>()
    };
    for path in paths {
        assert_eq!(values(&p, path), values(&f, path), "{path}");
    }
    assert_eq!(p.get("skip"), None);
    let mut bad_utf8 = Vec::new();
    rmp::encode::write_map_len(&mut bad_utf8, 2).unwrap();
    rmp::encode::write_str(&mut bad_utf8, "a").unwrap();
    rmp::encode::write_nil(&mut bad_utf8).unwrap();
    rmp::encode::write_str(&mut bad_utf8, "skip").unwrap();
    bad_utf8.extend([0xa2, 0xff, 0xfe]);
    let mut int_key = Vec::new();
    rmp::encode::write_map_len(&mut int_key, 1).unwrap();
    rmp::encode::write_str(&mut int_key, "skip").unwrap();
    rmp::encode::write_map_len(&mut int_key, 1).unwrap();
    rmp::encode::write_sint(&mut int_key, 5).unwrap();
    rmp::encode::write_nil(&mut int_key).unwrap();
    let mut deep = Vec::new();
    rmp::encode::write_map_len(&mut deep, 1).unwrap();
    rmp::encode::write_str(&mut deep, "skip").unwrap();
    (0..200).for_each(|_| deep.push(0x91));
    deep.push(0xc0);
    let cases = [body.clone(), body[..body.len() - 3].to_vec(), bad_utf8, int_key, deep, [body.clone(), vec![0xc0]].concat()];
    for c in &cases {
        assert_eq!(apt_netcon::engine::pruned::read_pruned(c, true, &t).map(|_| ()), apt_netcon::engine::generic::read(c, true).map(|_| ()), "{c:?}");
    }
    assert_eq!(cases.iter().filter(|c| apt_netcon::engine::generic::read(c, true).is_err()).count(), 5);
}
