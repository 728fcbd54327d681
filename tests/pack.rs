//! Rule packs (`src/engine/pack/`): Elastic's 287 Linux rules in one pass give
//! exactly the alerts of each rule run alone, on the realistic corpus of the
//! benchmarks with events built to satisfy each rule mixed in.
//!
//! The events built for a rule take, for every stage, each conjunct
//! `field == "…"`, `field in (…)` (the first value), `field : "…"` /
//! `like` (wildcards filled), `startsWith`/`endsWith`/`stringContains` and
//! the category, on one host, in stage order, a millisecond apart: many
//! rules' conditions hold for them (their negated parts hold by absence),
//! and the others are near misses; so are, on purpose, copies of each
//! rule's events with one field a stage asks for left out (each of the
//! first three of each stage). Rules from `../shared/rules/` (the test
//! says "skipped" without them).

#[path = "../benches/corpus/mod.rs"]
mod corpus;
#[path = "common/msgpack_of.rs"]
mod msgpack_of;

use apt_netcon::eql::{parse, CmpOp, Expr, Literal, MatchOp, ParseLimits, Query};
use apt_netcon::engine::pack::{load_dir, PackDetector};
use apt_netcon::{Config, Detector, Rule, Verdict};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

fn set(v: &mut Map<String, Value>, path: &str, x: Value) {
    match path.split_once('.') {
        None => {
            v.insert(path.to_string(), x);
        }
        Some((h, rest)) => {
            let child = v.entry(h.to_string()).or_insert_with(|| json!({}));
            if !child.is_object() {
                *child = json!({});
            }
            set(child.as_object_mut().unwrap(), rest, x);
        }
    }
}

fn fill(p: &str) -> String {
    p.replace(['*', '?'], "x")
}

/// Set the fields a condition's positive conjuncts ask for; with `skip`,
/// all but the `skip`-th field it would set (counted in `n`): a near miss,
/// failing that one condition.
fn satisfy_but(e: &Expr, ev: &mut Map<String, Value>, skip: Option<usize>, n: &mut usize) {
    let mut set = |ev: &mut Map<String, Value>, path: &str, v: Value| {
        *n += 1;
        if skip != Some(*n - 1) {
            set(ev, path, v);
        }
    };
    match e {
        Expr::And(items, _) => items.iter().for_each(|x| satisfy_but(x, ev, skip, n)),
        Expr::Or(items, _) => {
            if let Some(first) = items.first() {
                satisfy_but(first, ev, skip, n)
            }
        }
        Expr::Compare { op: CmpOp::Eq, left, right, .. } => {
            if let (Expr::Field(f), Expr::Literal(l, _)) = (&**left, &**right) {
                let v = match l {
                    Literal::Str(s) => json!(s),
                    Literal::Int(i) => json!(i),
                    Literal::Float(x) => json!(x),
                    Literal::Bool(b) => json!(b),
                    Literal::Null => return,
                };
                set(ev, &f.name, v);
            }
        }
        Expr::Match { op, negated: false, subject, values, .. } => {
            if let (Expr::Field(f), Some(Expr::Literal(Literal::Str(s), _))) = (&**subject, values.first()) {
                let v = match op {
                    MatchOp::In | MatchOp::InInsensitive => s.clone(),
                    MatchOp::Colon | MatchOp::Like | MatchOp::LikeInsensitive => fill(s),
                    _ => return,
                };
                set(ev, &f.name, json!(v));
            }
        }
        Expr::Call { name, args, .. } if args.len() == 2 => {
            if let (Expr::Field(f), Expr::Literal(Literal::Str(s), _)) = (&args[0], &args[1]) {
                let v = match name.to_ascii_lowercase().as_str() {
                    "startswith" => format!("{}zz", fill(s)),
                    "endswith" => format!("zz{}", fill(s)),
                    "stringcontains" => format!("zz{}zz", fill(s)),
                    _ => return,
                };
                set(ev, &f.name, json!(v));
            }
        }
        _ => {}
    }
}

/// Events meant to complete `rule` on host `host`, from time `t0` (ms).
fn events_for(rule: &Rule, host: &str, t0: i64) -> Vec<Vec<u8>> {
    events_but(rule, host, t0, None).unwrap_or_default()
}

/// [`events_for`], with stage `miss.0`'s event leaving out the `miss.1`-th
/// field its condition asks for (a near miss); `None` when there is no such
/// stage or field.
fn events_but(rule: &Rule, host: &str, t0: i64, miss: Option<(usize, usize)>) -> Option<Vec<Vec<u8>>> {
    let Ok(q) = parse(rule.query_text(), ParseLimits::default()) else { return Some(Vec::new()) };
    let stages: Vec<_> = match &q {
        Query::Event(e) => vec![(e.category.clone(), e.condition.clone(), 1)],
        Query::Sequence(s) => {
            s.stages.iter().filter(|st| !st.missing).map(|st| (st.query.category.clone(), st.query.condition.clone(), st.runs)).collect()
        }
        Query::Sample(s) => s.stages.iter().map(|st| (st.query.category.clone(), st.query.condition.clone(), 1)).collect(),
    };
    let mut out = Vec::new();
    let mut missed = false;
    let mut t = t0;
    for (si, (cat, cond, runs)) in stages.into_iter().enumerate() {
        for _ in 0..runs {
            let mut ev = Map::new();
            set(&mut ev, "@timestamp", json!(apt_netcon::format::time::format_ms(t)));
            set(&mut ev, "host.id", json!(host));
            set(&mut ev, "host.name", json!(host));
            set(&mut ev, "host.os.type", json!("linux"));
            set(&mut ev, "process.entity_id", json!(format!("{host}-p")));
            set(&mut ev, "process.parent.entity_id", json!(format!("{host}-p")));
            set(&mut ev, "user.name", json!("root"));
            set(&mut ev, "event.id", json!(format!("{host}-{t}")));
            set(&mut ev, "event.category", json!([cat.clone().unwrap_or_else(|| "process".into())]));
            let skip = miss.filter(|m| m.0 == si).map(|m| m.1);
            let mut n = 0;
            satisfy_but(&cond, &mut ev, skip, &mut n);
            missed |= skip.is_some_and(|k| k < n);
            out.push(serde_json::to_vec(&Value::Object(ev)).unwrap());
            t += 1;
        }
    }
    (miss.is_none() || missed).then_some(out)
}

fn rules_dir() -> Option<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/rules/elastic-linux-eql");
    dir.is_dir().then_some(dir)
}

/// The stream: realistic background with every rule's events mixed in,
/// each rule's events together, timed from the background record they
/// follow one millisecond apart (so that the stream stays in time order
/// within far less than any maxspan: what counts as late is then the same
/// for a rule alone and in a pack, see `src/engine/pack/`).
fn stream(rules: &[Rule]) -> Vec<Vec<u8>> {
    let spec = corpus::Spec::new(3_000, 20);
    let c = corpus::Corpus::generate(&spec);
    let background: Vec<Vec<u8>> = c.lines().map(|l| l.to_vec()).collect();
    let time_of = |rec: &[u8]| -> i64 {
        let v: Value = serde_json::from_slice(rec).unwrap();
        apt_netcon::format::time::parse_rfc3339_ms(v["@timestamp"].as_str().unwrap()).unwrap()
    };
    let mut out = Vec::with_capacity(background.len() + rules.len() * 3);
    let step = (background.len() / rules.len().max(1)).max(1);
    let mut next = 0;
    for (i, b) in background.into_iter().enumerate() {
        let t = time_of(&b);
        out.push(b);
        if i % step == 0 && next < rules.len() {
            let r = &rules[next];
            out.extend(events_for(r, &format!("rule-host-{next}"), t + 1));
            // Near misses: each stage with one of its first three fields left out.
            for stage in 0..4 {
                for field in 0..3 {
                    out.extend(events_but(r, &format!("rule-host-{next}-miss-{stage}-{field}"), t + 1, Some((stage, field))).into_iter().flatten());
                }
            }
            next += 1;
        }
    }
    for (k, r) in rules.iter().enumerate().skip(next) {
        out.extend(events_for(r, &format!("rule-host-{k}"), 1_900_000_000_000 + k as i64 * 60_000));
    }
    out
}

/// The 287 rules and the stream built for them (`None`, said, without the
/// rules).
fn rules_and_stream() -> Option<(Vec<Rule>, Vec<Vec<u8>>)> {
    let Some(dir) = rules_dir() else {
        eprintln!("skipped: rules not present");
        return None;
    };
    let (rules, _) = load_dir(&dir).unwrap();
    let records = stream(&rules);
    Some((rules, records))
}

#[test]
fn the_pack_gives_exactly_the_union_of_its_rules_run_alone() {
    let Some(dir) = rules_dir() else {
        eprintln!("skipped: rules not present");
        return;
    };
    let started = std::time::Instant::now();
    let (rules, failed) = load_dir(&dir).unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(rules.len(), 287);
    let load_time = started.elapsed();
    let records = stream(&rules);
    let cfg = Config::default();
    // Each rule alone: (record index, rule) → alert bytes.
    let mut alone: BTreeMap<(usize, usize), Vec<Vec<u8>>> = BTreeMap::new();
    for (ri, r) in rules.iter().enumerate() {
        let mut d = Detector::with_rule(r.clone(), &cfg);
        for (i, rec) in records.iter().enumerate() {
            if let Ok(Verdict::Annotated(b)) = d.process(rec) {
                alone.entry((i, ri)).or_default().push(b.to_vec());
            }
            while let Some(a) = d.take_alert() {
                alone.entry((i, ri)).or_default().push(a.bytes);
            }
        }
    }
    let mut pack = PackDetector::new(rules.clone(), &cfg);
    let mut together: BTreeMap<(usize, usize), Vec<Vec<u8>>> = BTreeMap::new();
    let pack_started = std::time::Instant::now();
    for (i, rec) in records.iter().enumerate() {
        let _ = pack.process(rec, false);
        while let Some(a) = pack.take_alert() {
            together.entry((i, a.rule)).or_default().push(a.bytes);
        }
    }
    let pack_time = pack_started.elapsed();
    // The pack's alerts are the same records plus `event.kind: "signal"`.
    let strip = |b: &[u8]| {
        let mut v: Value = serde_json::from_slice(b).unwrap();
        assert_eq!(v["event"]["kind"], "signal", "pack alerts are routable");
        v["event"].as_object_mut().unwrap().remove("kind");
        v
    };
    let norm = |b: &[u8]| {
        let mut v: Value = serde_json::from_slice(b).unwrap();
        if let Some(e) = v.get_mut("event").and_then(Value::as_object_mut) {
            e.remove("kind");
        }
        v
    };
    let a: BTreeMap<_, Vec<Value>> = alone.iter().map(|(k, v)| (*k, v.iter().map(|b| norm(b)).collect())).collect();
    let t: BTreeMap<_, Vec<Value>> = together.iter().map(|(k, v)| (*k, v.iter().map(|b| strip(b)).collect())).collect();
    let rules_alerting: std::collections::BTreeSet<usize> = a.keys().map(|k| k.1).collect();
    let (recs, tested) = pack.work();
    eprintln!(
        "rule pack: {} rules loaded in {load_time:.2?}; {} records; {} alerts from {} rules; the pack tested {:.2} rules per record ({:.2?})",
        rules.len(),
        records.len(),
        a.values().map(Vec::len).sum::<usize>(),
        rules_alerting.len(),
        tested as f64 / recs as f64,
        pack_time
    );
    for k in a.keys().filter(|k| !t.contains_key(k)).chain(t.keys().filter(|k| !a.contains_key(k))) {
        eprintln!("differs: record {} rule {} ({}): alone {} together {}", k.0, k.1, rules[k.1].meta().name, a.contains_key(k), t.contains_key(k));
    }
    assert_eq!(a.len(), t.len(), "the same (record, rule) pairs alert");
    assert_eq!(a, t, "the same alerts");
    assert!(rules_alerting.len() >= 100, "the built events complete many rules: {}", rules_alerting.len());
}

/// The pack split as `--threads N` splits it (`engine::pack::split`): its
/// host-local rules in N packs, each taking the records whose `host.id`
/// hashes to it, the other rules in one more pack taking the records the
/// host packs' gate lets through. Every alert is the one pack's, byte for
/// byte, on the same stream (each rule's events on a host of their own,
/// 20 hosts of background).
#[test]
fn the_pack_split_by_host_gives_the_alerts_of_one_pack() {
    use apt_netcon::engine::pack::split::{host_local, HostRouter};
    let Some((rules, records)) = rules_and_stream() else { return };
    let cfg = Config::default();
    let mut one = PackDetector::new(rules.clone(), &cfg);
    let mut want: BTreeMap<(usize, usize), Vec<Vec<u8>>> = BTreeMap::new();
    for (i, rec) in records.iter().enumerate() {
        let _ = one.process(rec, false);
        while let Some(a) = one.take_alert() {
            want.entry((i, a.rule)).or_default().push(a.bytes);
        }
    }
    one.finish();
    while let Some(a) = one.take_alert() {
        want.entry((records.len(), a.rule)).or_default().push(a.bytes);
    }
    let (local, global): (Vec<usize>, Vec<usize>) = (0..rules.len()).partition(|&i| host_local(&rules[i]).is_ok());
    assert!(!global.is_empty() && local.len() > 250, "{} host-local, {} not", local.len(), global.len());
    let pick = |ix: &[usize]| -> Vec<Rule> { ix.iter().map(|&i| rules[i].clone()).collect() };
    for n in [2, 3] {
        let mut hosts: Vec<PackDetector> = (0..n).map(|_| PackDetector::with_gate(pick(&local), &pick(&global), &cfg)).collect();
        let mut rest = PackDetector::new(pick(&global), &cfg);
        let mut router = HostRouter::new(n);
        let mut got: BTreeMap<(usize, usize), Vec<Vec<u8>>> = BTreeMap::new();
        let (mut gated, mut read, mut routed) = (0, 0, vec![0; n]);
        for (i, rec) in records.iter().enumerate() {
            let w = router.route(rec);
            routed[w] += 1;
            let p = &mut hosts[w];
            let _ = p.process(rec, false);
            while let Some(a) = p.take_alert() {
                got.entry((i, local[a.rule])).or_default().push(a.bytes);
            }
            // (As the CLI: a gated record whose hits can start or extend
            // nothing in the pack of the rules not split is passed by.)
            if p.gate_hit() {
                gated += 1;
                if !rest.may_need(p.gate_hits()) {
                    continue;
                }
                read += 1;
                let _ = rest.process(rec, false);
                while let Some(a) = rest.take_alert() {
                    got.entry((i, global[a.rule])).or_default().push(a.bytes);
                }
            }
        }
        // The end of the stream, in rule order (as one pack gives it).
        let end = records.len();
        let mut last: Vec<(usize, Vec<u8>)> = Vec::new();
        for p in &mut hosts {
            p.finish();
            while let Some(a) = p.take_alert() {
                last.push((local[a.rule], a.bytes));
            }
        }
        rest.finish();
        while let Some(a) = rest.take_alert() {
            last.push((global[a.rule], a.bytes));
        }
        last.sort_by_key(|x| x.0);
        for (rule, bytes) in last {
            got.entry((end, rule)).or_default().push(bytes);
        }
        assert!(routed.iter().all(|&r| r > records.len() / (2 * n)), "records spread over the packs: {routed:?}");
        assert!(gated < records.len() / 2, "the gate passes few records: {gated} of {}", records.len());
        assert!(read < gated, "gated records that can start or extend nothing are passed by: {read} of {gated} read");
        for k in want.keys().filter(|k| !got.contains_key(k)).chain(got.keys().filter(|k| !want.contains_key(k))) {
            eprintln!("differs over {n}: record {} rule {} ({})", k.0, k.1, rules[k.1].meta().name);
        }
        assert!(got == want, "over {n} packs: the alerts of one pack");
        let from_rest = want.keys().filter(|k| global.contains(&k.1)).count();
        eprintln!(
            "split over {n}: {} alerts ({from_rest} from the {} rules not split), {gated} of {} records gated to them, {read} read",
            want.values().map(Vec::len).sum::<usize>(),
            global.len(),
            records.len()
        );
    }
    assert!(want.keys().any(|k| global.contains(&k.1)), "a rule not split alerts in the stream");
}

/// The whole pack on MessagePack bodies gives the alerts it gives on the
/// same records as JSON (as trees: the same members and values), record by
/// record and rule by rule.
#[test]
fn the_pack_on_msgpack_bodies_alerts_as_on_json() {
    let Some((rules, records)) = rules_and_stream() else { return };
    let cfg = Config::default();
    let mut on_json = PackDetector::new(rules.clone(), &cfg);
    let mut on_mp = PackDetector::new(rules, &cfg);
    let mut alerts = 0;
    for rec in &records {
        let v: Value = serde_json::from_slice(rec).unwrap();
        let body = msgpack_of::mp(&v);
        let (a, b) = (on_json.process(rec, false), on_mp.process(&body, true));
        assert_eq!(a.is_ok(), b.is_ok(), "{}", String::from_utf8_lossy(rec));
        loop {
            match (on_json.take_alert(), on_mp.take_alert()) {
                (None, None) => break,
                (Some(x), Some(y)) => {
                    assert_eq!(x.rule, y.rule);
                    let x: Value = serde_json::from_slice(&x.bytes).unwrap();
                    let y = apt_netcon::engine::generic::read(&y.bytes, true).unwrap();
                    assert_eq!(x, y, "rule {}", x["rule"]["name"]);
                    alerts += 1;
                }
                (x, y) => panic!("an alert on one side only: {:?} {:?}", x.map(|a| a.rule), y.map(|a| a.rule)),
            }
        }
    }
    assert!(alerts >= 150, "{alerts}");
}

#[test]
fn one_record_completing_several_rules_gives_an_alert_each() {
    let q1 = r#"process where process.name == "curl" and process.args == "--socks5""#;
    let q2 = r#"process where process.name : "cur*" and ?process.parent.name == "bash""#;
    let q3 = r#"process where process.name == "wget""#;
    let rules: Vec<Rule> = [q1, q2, q3]
        .iter()
        .map(|q| Rule::from_eql(q, apt_netcon::config::rule::meta_for_file(q)).unwrap())
        .collect();
    let mut pack = PackDetector::new(rules, &Config::default());
    let rec = br#"{"@timestamp":"2024-05-01T10:00:00Z","event":{"category":["process"],"kind":"event"},"process":{"name":"curl","args":["curl","--socks5"],"parent":{"name":"bash"}}}"#;
    assert_eq!(pack.process(rec, false), Ok(2));
    let mut got = Vec::new();
    while let Some(a) = pack.take_alert() {
        let v: Value = serde_json::from_slice(&a.bytes).unwrap();
        assert_eq!(v["event"]["kind"], "signal");
        got.push((a.rule, v["rule"]["name"].as_str().unwrap().to_string()));
    }
    assert_eq!(got, vec![(0, q1.to_string()), (1, q2.to_string())]);
    assert_eq!(pack.stats(0).annotated + pack.stats(1).annotated + pack.stats(2).annotated, 2);
    let (_, tested) = pack.work();
    assert_eq!(tested, 2, "the wget rule never saw the record");
}

#[test]
fn a_directory_with_a_broken_rule_lists_it() {
    let dir = std::env::temp_dir().join(format!("apt-netcon-pack-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.eql"), r#"process where process.name == "a""#).unwrap();
    std::fs::write(dir.join("b.eql"), r#"process where process.name == "#).unwrap();
    std::fs::write(dir.join("c.txt"), "not a rule").unwrap();
    let (rules, failed) = load_dir(&dir).unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(failed.len(), 1);
    assert!(failed[0].0.ends_with("b.eql") && failed[0].1.contains("line 1"), "{failed:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_config_names_a_pack_and_every_rule_that_does_not_load() {
    let dir = std::env::temp_dir().join(format!("apt-netcon-pack-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.eql");
    std::fs::write(&good, r#"process where process.name == "nc""#).unwrap();
    let bad1 = dir.join("bad1.eql");
    std::fs::write(&bad1, r#"process where x | head 1"#).unwrap();
    let bad2 = dir.join("bad2.toml");
    std::fs::write(&bad2, "[rule]\nname = 'x'\n").unwrap();
    let json = |skip: bool| {
        format!(
            r#"{{"rules": ["apt_netcon_v5", {:?}, {:?}], "rules_dir": {:?}, "skip_broken_rules": {skip}}}"#,
            good.display().to_string(),
            bad1.display().to_string(),
            dir.display().to_string()
        )
    };
    let cfg = Config::from_json(&json(false)).unwrap();
    assert!(cfg.is_pack());
    let e = cfg.load_rules().unwrap_err().to_string();
    assert!(e.contains("3 of 6 rules do not load"), "{e}");
    assert!(e.contains("bad1.eql") && e.contains("'| head'") && e.contains("bad2.toml"), "{e}");
    let cfg = Config::from_json(&json(true)).unwrap();
    let loaded = cfg.load_rules().unwrap();
    assert_eq!(loaded.rules.len(), 3, "the built-in rule, good.eql, and good.eql again from the directory");
    assert_eq!(loaded.skipped.len(), 3);
    assert_eq!(loaded.rules[0].meta().name, "Suspicious APT Package Manager Network Connection");
    // No pack: the one rule.
    assert_eq!(Config::default().load_rules().unwrap().rules.len(), 1);
    let e = Config::from_json(r#"{"rules_dir": "/nonexistent/rules"}"#).unwrap_err();
    assert!(e.to_string().contains("not a directory"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A three-stage file rule's events, on one host.
const THREE_STAGE: &str = r#"sequence by host.id with maxspan=1m
  [file where event.type == "creation" and file.path : "/tmp/*"]
  [process where event.type == "start" and process.name == "chmod" and process.args : "+x"]
  [network where event.type == "start" and destination.port == 4444]"#;

fn three_stage_events() -> Vec<Vec<u8>> {
    [
        json!({"@timestamp": "2026-12-01T10:00:00.000Z", "event": {"id": "f-1", "category": ["file"], "type": ["creation"]},
            "host": {"id": "h-7", "name": "web-7"}, "user": {"name": "www-data"},
            "process": {"pid": 900, "name": "curl", "entity_id": "p-900"}, "file": {"path": "/tmp/x.bin", "name": "x.bin"}}),
        json!({"@timestamp": "2026-12-01T10:00:01.500Z", "event": {"id": "c-1", "category": ["process"], "type": ["start"]},
            "host": {"id": "h-7", "name": "web-7"}, "user": {"name": "www-data"},
            "process": {"pid": 901, "name": "chmod", "args": ["chmod", "+x", "/tmp/x.bin"], "parent": {"name": "sh"}}}),
        json!({"@timestamp": "2026-12-01T10:00:03.000Z", "event": {"id": "n-1", "category": ["network"], "type": ["start"]},
            "host": {"id": "h-7", "name": "web-7"}, "user": {"name": "www-data"}, "process": {"pid": 902, "name": "x.bin"},
            "source": {"address": "10.1.1.7", "port": 51000}, "destination": {"address": "203.0.113.9", "port": 4444}}),
    ]
    .iter()
    .map(|v| serde_json::to_vec(v).unwrap())
    .collect()
}

/// The roots an alert adds, as text (to check what they name).
fn added_roots(v: &Value) -> String {
    ["rule", "threat", "kibana", "eql", "apt_netcon"].iter().map(|k| v.get(*k).map(Value::to_string).unwrap_or_default()).collect()
}

#[test]
fn a_rule_of_any_file_writes_an_alert_in_its_own_words() {
    // The rule on the fast engine, and (with an optional field outside ECS)
    // on the generic one.
    let generic_query = THREE_STAGE.replace(r#"file.path : "/tmp/*""#, r#"file.path : "/tmp/*" and ?custom.mode != "0""#);
    for (generic, q) in [(false, THREE_STAGE.to_string()), (true, generic_query)] {
        let rule = Rule::from_eql(&q, apt_netcon::config::rule::meta_for_file("drop_chmod_connect")).unwrap();
        let mut d = Detector::with_rule(rule, &Config::default());
        assert_eq!(d.is_generic(), generic);
        let evs = three_stage_events();
        let mut alert = None;
        for e in &evs {
            if let Ok(Verdict::Annotated(b)) = d.process(e) {
                alert = Some(serde_json::from_slice::<Value>(b).unwrap());
            }
        }
        let a = alert.expect("the third event completes the rule");
        assert!(a.get("apt_netcon").is_none(), "{a}");
        assert!(!added_roots(&a).to_lowercase().contains("apt"), "nothing names APT: {}", added_roots(&a));
        let events = a["eql"]["events"].as_array().unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0]["stage"], 1);
        assert_eq!(events[0]["file"]["path"], "/tmp/x.bin", "the fields the first stage reads");
        assert_eq!(events[0]["event"]["category"], json!(["file"]));
        assert_eq!(events[1]["process"]["args"], json!(["chmod", "+x", "/tmp/x.bin"]));
        assert_eq!(events[2]["destination"]["port"], 4444);
        assert_eq!(a["eql"]["join_keys"], json!(["h-7"]));
        assert_eq!(a["eql"]["span_ms"], 3000);
        assert_eq!(
            a["kibana"]["alert"]["reason"],
            "event by www-data on web-7 created medium alert drop_chmod_connect.",
            "Kibana's reason from what every event shares"
        );
        assert!(a["kibana"]["alert"]["group"]["id"].is_string());
        let ids: Vec<&Value> = a["kibana"]["alert"]["ancestors"].as_array().unwrap().iter().map(|x| &x["id"]).collect();
        assert_eq!(ids, [&json!("f-1"), &json!("c-1"), &json!("n-1")]);
        assert!(a["rule"].get("ruleset").is_none() && a["rule"].get("category").is_none(), "{}", a["rule"]);
    }
}

#[test]
fn a_single_event_rule_alert_is_what_kibana_writes_for_one() {
    let rule = Rule::from_eql(r#"network where destination.port == 4444"#, apt_netcon::config::rule::meta_for_file("port_4444")).unwrap();
    let mut d = Detector::with_rule(rule, &Config::default());
    let evs = three_stage_events();
    let Ok(Verdict::Annotated(b)) = d.process(&evs[2]) else { panic!("no alert") };
    let a: Value = serde_json::from_slice(b).unwrap();
    assert!(a.get("eql").is_none(), "no events list, no span_ms: {a}");
    assert!(a["kibana"]["alert"].get("group").is_none(), "no group id");
    assert_eq!(
        a["kibana"]["alert"]["reason"],
        "network event with process x.bin, source 10.1.1.7:51000, destination 203.0.113.9:4444, by www-data on web-7 created medium alert port_4444."
    );
    assert_eq!(a["kibana"]["alert"]["ancestors"][0]["id"], "n-1");
}

fn pack_config(rules: &[&str], extra: &str) -> (Config, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("apt-netcon-pack-iface-{}-{}", std::process::id(), rules.len() + extra.len()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut names = Vec::new();
    for (i, q) in rules.iter().enumerate() {
        let p = dir.join(format!("r{i}.eql"));
        std::fs::write(&p, q).unwrap();
        names.push(p.display().to_string());
    }
    let json = format!(r#"{{"rules": {}{extra}}}"#, serde_json::to_string(&names).unwrap());
    (Config::from_json(&json).unwrap(), dir)
}

#[test]
fn a_detector_runs_a_pack_and_every_match_is_a_standalone_alert() {
    let (cfg, dir) = pack_config(
        &[r#"network where destination.port == 4444"#, r#"network where destination.address == "203.0.113.9""#, THREE_STAGE, r#"process where process.name == "wget""#],
        "",
    );
    let mut d = Detector::new(&cfg).unwrap();
    assert_eq!(d.pack().unwrap().rules().len(), 4);
    let mut alerts = Vec::new();
    for (i, e) in three_stage_events().iter().enumerate() {
        assert_eq!(d.process(e), Ok(Verdict::Unchanged), "the record goes on unchanged");
        while let Some(a) = d.take_alert() {
            alerts.push((i, serde_json::from_slice::<Value>(&a.bytes).unwrap()));
        }
    }
    // The last record completes three rules: three alerts after it.
    assert_eq!(alerts.len(), 3);
    assert!(alerts.iter().all(|(i, a)| *i == 2 && a["event"]["kind"] == "signal" && a["event"]["id"] == "n-1"));
    let names: Vec<&str> = alerts.iter().map(|(_, a)| a["rule"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["r0", "r1", "r2"]);
    let s = d.stats();
    assert_eq!((s.records, s.standalone_alerts, s.annotated), (3, 3, 0));
    let report = d.pack().unwrap().report();
    let per_rule: Vec<u64> = report["rules"].as_array().unwrap().iter().map(|r| r["alerts"].as_u64().unwrap()).collect();
    assert_eq!(per_rule, [1, 1, 1, 0], "{report}");
    assert_eq!(per_rule.iter().sum::<u64>(), s.standalone_alerts, "per-rule counters add up");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_exception_scoped_to_one_rule_leaves_the_others_alone() {
    let rules = [r#"network where destination.port == 4444"#, r#"network where destination.address == "203.0.113.9""#];
    let item = r#", "exceptions": [{"name": "lab host", "rule_id": "r1", "entries": [{"field": "host.name", "operator": "is", "value": "web-7"}]}]"#;
    let (cfg, dir) = pack_config(&rules, item);
    let mut d = Detector::new(&cfg).unwrap();
    let mut names = Vec::new();
    for e in three_stage_events() {
        let _ = d.process(&e);
        while let Some(a) = d.take_alert() {
            names.push(serde_json::from_slice::<Value>(&a.bytes).unwrap()["rule"]["name"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(names, ["r0"], "the item applies to r1 only");
    assert_eq!(d.exception_counts(), vec![("lab host".to_string(), 1)]);
    assert_eq!(d.stats().excluded, 1);
    // Unscoped, it applies to both.
    let (cfg, dir2) = pack_config(&rules, &item.replace(r#""rule_id": "r1", "#, ""));
    let mut d = Detector::new(&cfg).unwrap();
    for e in three_stage_events() {
        let _ = d.process(&e);
    }
    assert_eq!(d.take_alert(), None);
    assert_eq!(d.exception_counts(), vec![("lab host".to_string(), 2)]);
    let e = Config::from_json(r#"{"exceptions": [{"name": "x", "rule_id": [], "entries": [{"field": "a", "operator": "exists"}]}]}"#).unwrap_err();
    assert!(e.to_string().contains("rule_id"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
    let _ = std::fs::remove_dir_all(&dir2);
}

/// The one place a pack and its rules alone may differ, by choice (docs/rules.md,
/// "Rule packs"): a record that can match only a later stage of a sequence
/// in which nothing waits is skipped in a pack, so it does not move that
/// rule's watermark, and a first-stage event arriving more than maxspan
/// behind it, which the rule alone drops as late, can still pair in a pack
/// (as Elasticsearch, which orders events by time, would pair it).
#[test]
fn a_pack_skips_later_stages_while_nothing_waits() {
    let q = r#"sequence by host.id with maxspan=5s [process where process.name == "first"] [network where destination.port == 4444]"#;
    let rule = Rule::from_eql(q, apt_netcon::config::rule::meta_for_file("two_stage")).unwrap();
    let rec = |t: &str, cat: &str, extra: &str| {
        format!(r#"{{"@timestamp":"{t}","event":{{"category":["{cat}"]}},"host":{{"id":"h"}}{extra}}}"#).into_bytes()
    };
    let stream = [
        rec("2026-01-01T00:01:00Z", "network", r#","destination":{"port":4444}"#), // nothing waits
        rec("2026-01-01T00:00:00Z", "process", r#","process":{"name":"first"}"#),  // a minute behind
        rec("2026-01-01T00:00:01Z", "network", r#","destination":{"port":4444}"#),
    ];
    let mut alone = Detector::with_rule(rule.clone(), &Config::default());
    let alone_alerts = stream.iter().filter(|r| matches!(alone.process(r), Ok(Verdict::Annotated(_)))).count();
    assert_eq!((alone_alerts, alone.stats().late), (0, 1), "alone: the first-stage event is late");
    let mut pack = PackDetector::new(vec![rule], &Config::default());
    let pack_alerts: usize = stream.iter().map(|r| pack.process(r, false).unwrap()).sum();
    assert_eq!(pack_alerts, 1, "in a pack the skipped record moved nothing");
    assert_eq!(pack.work(), (3, 2), "the first record was not evaluated");
    // With max_lateness the pack skips nothing: the same as alone.
    let cfg = Config { max_lateness_ms: 1, ..Config::default() };
    let mut pack = PackDetector::new(vec![Rule::from_eql(q, apt_netcon::config::rule::meta_for_file("two_stage")).unwrap()], &cfg);
    for r in &stream {
        let _ = pack.process(r, false);
    }
    assert_eq!(pack.work(), (3, 3));
}

/// While a partial sequence waits under one host, a record of another
/// host that can only extend it is passed by in a pack: not checked as
/// valid JSON, not counted as a stage match; the waiting one still
/// completes. Alone, the rule counts it (or refuses it when not JSON).
#[test]
fn a_pack_passes_by_later_stages_with_nothing_waiting_under_their_keys() {
    let q = r#"sequence by host.id with maxspan=5s [process where process.name == "first"] [network where destination.port == 4444]"#;
    let rule = Rule::from_eql(q, apt_netcon::config::rule::meta_for_file("two_stage")).unwrap();
    let rec = |t: u32, cat: &str, host: &str, body: &str| {
        format!(r#"{{"@timestamp":"2026-01-01T00:00:0{t}Z","event":{{"category":["{cat}"]}},"host":{{"id":"{host}"}},{body}}}"#).into_bytes()
    };
    let port = r#""destination":{"port":4444}"#;
    let stream = [
        rec(1, "process", "a", r#""process":{"name":"first"}"#),
        rec(2, "network", "b", port),
        // Not JSON (a number with a leading zero, in a member no rule reads).
        rec(3, "network", "bad", r#""destination":{"port":4444},"n":01"#),
        rec(4, "network", "a", port),
    ];
    let mut alone = Detector::with_rule(rule.clone(), &Config::default());
    let verdicts: Vec<String> = stream.iter().map(|r| format!("{:?}", alone.process(r).map(|v| matches!(v, Verdict::Annotated(_))))).collect();
    assert_eq!(verdicts, ["Ok(false)", "Ok(false)", "Err(InvalidJson)", "Ok(true)"]);
    assert_eq!((alone.stats().stage_matches[1], alone.stats().invalid_json), (2, 1));
    let mut pack = PackDetector::new(vec![rule], &Config::default());
    let alerts: Vec<usize> = stream.iter().map(|r| pack.process(r, false).unwrap()).collect();
    assert_eq!(alerts, [0, 0, 0, 1], "the waiting sequence completes; the others are passed by");
    // The two records with nothing waiting under their host are passed by
    // before their stage tests, not handed to the rule.
    assert_eq!(pack.work(), (4, 2), "only the first and the completing record went to the rule");
    assert_eq!((pack.stats(0).stage_matches[1], pack.stats(0).invalid_json), (1, 0), "only the record that extended something counts");
}

#[test]
fn without_kibana_fields_a_rule_alert_says_it_under_eql() {
    let rule = Rule::from_eql(r#"network where destination.port == 4444"#, apt_netcon::config::rule::meta_for_file("port_4444")).unwrap();
    let mut d = Detector::with_rule(rule, &Config { kibana_fields: false, ..Config::default() });
    let Ok(Verdict::Annotated(b)) = d.process(&three_stage_events()[2]) else { panic!("no alert") };
    let a: Value = serde_json::from_slice(b).unwrap();
    assert!(a.get("kibana").is_none());
    assert_eq!(a["eql"]["severity"], "medium");
    assert_eq!(a["eql"]["risk_score"], 47);
    assert!(a["eql"]["alert_id"].as_str().unwrap().len() == 36);
    assert!(a["eql"].get("group_id").is_none() && a["eql"].get("events").is_none(), "one event: no group, no events list");
    assert!(a["eql"]["reason"].as_str().unwrap().starts_with("network event with process x.bin"));
}

/// `max_pending_sequences` caps the whole pack: a rule may keep what the
/// others leave, and evicts its own oldest beyond that (counted per rule).
#[test]
fn the_pending_cap_is_one_for_the_whole_pack() {
    let seq = |name: &str| {
        let q = format!(
            r#"sequence by host.id with maxspan=1h [process where process.name == "{name}"] [network where destination.port == 1]"#
        );
        Rule::from_eql(&q, apt_netcon::config::rule::meta_for_file(name)).unwrap()
    };
    let cfg = Config { max_pending_sequences: 10, ..Config::default() };
    let mut pack = PackDetector::new(vec![seq("aaa"), seq("bbb")], &cfg);
    let rec = |name: &str, host: usize, s: usize| {
        format!(r#"{{"@timestamp":"2026-01-01T00:00:{s:02}Z","event":{{"category":["process"]}},"host":{{"id":"h{host}"}},"process":{{"name":"{name}"}}}}"#)
            .into_bytes()
    };
    for h in 0..8 {
        pack.process(&rec("aaa", h, h), false).unwrap();
    }
    for h in 0..5 {
        pack.process(&rec("bbb", h, 10 + h), false).unwrap();
    }
    let (a, b) = (pack.stats(0), pack.stats(1));
    assert_eq!((a.pending, b.pending), (8, 2), "the second rule keeps what the first leaves");
    assert_eq!((a.evicted_by_cap, b.evicted_by_cap), (0, 3), "and evicts its own oldest");
    // The first rule, now over what is left to it, evicts down as well.
    pack.process(&rec("aaa", 100, 30), false).unwrap();
    assert!(pack.stats(0).pending + pack.stats(1).pending <= 10);
    assert_eq!(pack.summed_stats(Default::default()).evicted_by_cap, 3 + pack.stats(0).evicted_by_cap);
}
