//! Scale-out: the rule's sequences are `by host.id`, so a fleet's records can
//! be split on `host.id` across any number of detectors (one per shipper, one
//! per Kafka partition keyed by `host.id`, one per aggregator behind
//! consistent hashing) without losing or changing an alert.
//!
//! * `splitting_on_host_id_gives_the_alerts_of_one_detector`: on generated
//!   multi-host streams in time order, splitting by a stable hash of
//!   `host.id` across K = 1..=8 detectors gives, record by record, exactly the
//!   output of one detector (the same annotated bytes, hence the same alert
//!   ids, and every other record unchanged), and the counters add up;
//! * `records_without_host_id_may_go_to_any_detector`: a record with no
//!   usable `host.id` (missing, null, empty, an object) can never join, so
//!   wherever it is sent the alerts are the same;
//! * `a_wrong_partition_key_loses_alerts`: partitioning on
//!   `process.entity_id`, round-robin, or on the raw JSON text of `host.id`
//!   (`"h"` and `["h"]` are one host to the rule) loses alerts, silently;
//! * `a_lagging_host_is_late_only_for_the_detector_it_shares`: the
//!   event-time watermark is per detector, so a host whose records arrive
//!   late only affects the hosts that share its detector.
//!
//! Environment: `APT_NETCON_SCALEOUT_STREAMS` (default 24),
//! `APT_NETCON_SCALEOUT_SEED` (the base seed; printed on failure).

mod common;

use apt_netcon::{Config, Detector, RecordError, Rule, Stats, Verdict};
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Instant;

const DEFAULT_SEED: u64 = 0x5CA1_E0C7_2024_0007;
const RECORDS_PER_STREAM: usize = 300;

/// What a detector did with one record.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Unchanged,
    Annotated(Vec<u8>),
    Error(RecordError),
}

fn run_one(det: &mut Detector, rec: &[u8]) -> Out {
    match det.process(rec) {
        Ok(Verdict::Unchanged) => Out::Unchanged,
        Ok(Verdict::Annotated(b)) => Out::Annotated(b.to_vec()),
        Err(e) => Out::Error(e),
    }
}

fn detector(rule: &Rule) -> Detector {
    Detector::with_rule(rule.clone(), &Config::default())
}

/// One detector over the whole stream.
fn run_single(rule: &Rule, records: &[Vec<u8>]) -> (Vec<Out>, Stats) {
    let mut det = detector(rule);
    let outs = records.iter().map(|r| run_one(&mut det, r)).collect();
    (outs, det.stats())
}

/// `k` detectors, record `i` going to `place(i, record)`; the outputs in the
/// stream's order (as a shipper forwards them) and each detector's counters.
fn run_split(
    rule: &Rule,
    records: &[Vec<u8>],
    k: usize,
    mut place: impl FnMut(usize, &[u8]) -> usize,
) -> (Vec<Out>, Vec<Stats>) {
    let mut dets: Vec<Detector> = (0..k).map(|_| detector(rule)).collect();
    let outs = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let p = place(i, r);
            assert!(p < k, "partition {p} of {k}");
            run_one(&mut dets[p], r)
        })
        .collect();
    (outs, dets.iter().map(|d| d.stats()).collect())
}

// ---------------------------------------------------------------------------
// Partition keys

/// The keyword values of a JSON value as a join key reads them: a string,
/// a number's text, every element of an array; nothing for null or an object.
fn keywords(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Bool(b) => out.push(b.to_string()),
        Value::Array(a) => a.iter().for_each(|x| keywords(x, out)),
        Value::Null | Value::Object(_) => {}
    }
}

/// The `host.id` members of a record, nested (`{"host":{"id":…}}`) or
/// dotted (`{"host.id":…}`); empty when the record is not a JSON object.
fn host_id_members(rec: &[u8]) -> Vec<Value> {
    let Ok(Value::Object(root)) = serde_json::from_slice::<Value>(rec) else { return Vec::new() };
    let mut found = Vec::new();
    if let Some(v) = root.get("host.id") {
        found.push(v.clone());
    }
    if let Some(v) = root.get("host").and_then(|h| h.get("id")) {
        found.push(v.clone());
    }
    found
}

/// The partition key a shipper should use: `host.id`'s keyword value, so
/// that `"h"` and `["h"]` are one key. `None` when the record has none (such
/// a record cannot join; see `records_without_host_id_may_go_to_any_detector`).
fn host_key(rec: &[u8]) -> Option<String> {
    let mut kw = Vec::new();
    for v in host_id_members(rec) {
        keywords(&v, &mut kw);
    }
    kw.into_iter().next()
}

/// A stable 64-bit FNV-1a hash (what a Kafka producer's or an aggregator's
/// partitioner computes from the key, in spirit).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn bucket(key: &str, k: usize) -> usize {
    (fnv1a(key.as_bytes()) % k as u64) as usize
}

/// Where a record without a usable `host.id` goes.
#[derive(Debug, Clone, Copy)]
enum Keyless {
    /// Always the first detector.
    First,
    /// Round-robin over the detectors.
    Spread,
    /// A pseudo-random detector.
    Random(u64),
    /// The detector of the record just before it (which may well hold the
    /// shell exec a keyless connection names).
    Follow,
}

const KEYLESS: [Keyless; 4] = [Keyless::First, Keyless::Spread, Keyless::Random(0x9E37), Keyless::Follow];

/// Split on `host.id` (`keys[i]` is record i's [`host_key`]) across `k`
/// detectors; keyless records go as `keyless` says.
fn split_by_host(
    rule: &Rule,
    records: &[Vec<u8>],
    keys: &[Option<String>],
    k: usize,
    keyless: Keyless,
) -> (Vec<Out>, Vec<Stats>) {
    let mut rng = Rng::new(match keyless {
        Keyless::Random(s) => s ^ k as u64,
        _ => 1,
    });
    let mut prev = 0usize;
    run_split(rule, records, k, |i, _| {
        let p = match &keys[i] {
            Some(h) => bucket(h, k),
            None => match keyless {
                Keyless::First => 0,
                Keyless::Spread => i % k,
                Keyless::Random(_) => rng.below(k as u64) as usize,
                Keyless::Follow => prev,
            },
        };
        prev = p;
        p
    })
}

// ---------------------------------------------------------------------------
// Comparing

/// The alert id (`kibana.alert.uuid`) of every annotated record, in order.
fn alert_ids(outs: &[Out]) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Annotated {
        kibana: Kibana,
    }
    #[derive(serde::Deserialize)]
    struct Kibana {
        alert: KibanaAlert,
    }
    #[derive(serde::Deserialize)]
    struct KibanaAlert {
        uuid: String,
    }
    outs.iter()
        .filter_map(|o| match o {
            Out::Annotated(b) => {
                let a: Annotated =
                    serde_json::from_slice(b).expect("an annotated record is JSON with kibana.alert.uuid");
                Some(a.kibana.alert.uuid)
            }
            _ => None,
        })
        .collect()
}

fn show(o: &Out) -> String {
    match o {
        Out::Annotated(b) => format!("annotated {}", String::from_utf8_lossy(b)),
        other => format!("{other:?}"),
    }
}

/// Record by record: the same verdict, the same bytes; and the same alert
/// ids (`want_ids`: those of `want`).
fn same_outputs(records: &[Vec<u8>], want: &[Out], want_ids: &[String], got: &[Out]) -> Result<(), String> {
    assert_eq!(want.len(), got.len());
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        if w != g {
            return Err(format!(
                "record {i} differs\n  record: {}\n  one detector: {}\n  split:        {}",
                String::from_utf8_lossy(&records[i]),
                show(w),
                show(g)
            ));
        }
    }
    let (mut a, mut b) = (want_ids.to_vec(), alert_ids(got));
    a.sort();
    b.sort();
    if a != b {
        return Err(format!("alert ids differ: {a:?} vs {b:?}"));
    }
    Ok(())
}

/// The split detectors' counters add up to the single detector's. Only the
/// split between `expired_by_maxspan` and `pending` may differ: a detector
/// expires a host's waiting shell when an event of one of ITS hosts moves
/// its watermark, so at the end of the stream a split detector may still
/// hold shells the single one has dropped (neither can complete any more).
fn stats_add_up(single: &Stats, split: &[Stats]) -> Result<(), String> {
    let mut sum: BTreeMap<&'static str, u64> = BTreeMap::new();
    for s in split {
        for (name, v) in s.fields() {
            *sum.entry(name).or_default() += v;
        }
    }
    let one: BTreeMap<&'static str, u64> = single.fields().into_iter().collect();
    for (name, v) in &one {
        if *name == "expired_by_maxspan" || *name == "pending" {
            continue;
        }
        if sum[name] != *v {
            return Err(format!("counter {name}: one detector {v}, split detectors {} in all", sum[name]));
        }
    }
    let gone = |m: &BTreeMap<&'static str, u64>| m["expired_by_maxspan"] + m["pending"];
    if gone(&one) != gone(&sum) {
        return Err(format!("expired + pending: one detector {}, split detectors {}", gone(&one), gone(&sum)));
    }
    if single.excluded != split.iter().map(|s| s.excluded).sum::<u64>() {
        return Err("excluded differs".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The corpus

struct Case {
    seed: u64,
    hosts: usize,
    stream: Stream,
    /// Each record's [`host_key`].
    keys: Vec<Option<String>>,
}

/// The generated streams, built once for all the tests of this file.
fn corpus() -> (u64, &'static [Case]) {
    static CORPUS: OnceLock<(u64, Vec<Case>)> = OnceLock::new();
    let (base, cases) = CORPUS.get_or_init(|| {
        let n = env_u64("APT_NETCON_SCALEOUT_STREAMS", 24);
        let base = env_u64("APT_NETCON_SCALEOUT_SEED", DEFAULT_SEED);
        let cases = (0..n)
            .map(|i| {
                let seed = base.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                // 2 to 40 hosts: few hosts make many joins, many hosts many buckets.
                let hosts = 2 + Rng::new(seed ^ 0xF1EE7).below(39) as usize;
                let opts = GenOpts { pretty: true, non_json: true, ..GenOpts::default() };
                let stream = gen_fleet_stream(seed, RECORDS_PER_STREAM, hosts, opts);
                let keys = stream.records.iter().map(|r| host_key(r)).collect();
                Case { seed, hosts, stream, keys }
            })
            .collect();
        (base, cases)
    });
    (*base, cases)
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn splitting_on_host_id_gives_the_alerts_of_one_detector() {
    let rule = Rule::builtin("apt_netcon_v5").unwrap();
    let started = Instant::now();
    let (base, cases) = corpus();
    let (mut records, mut alerts, mut keyless, mut runs, mut spread) = (0usize, 0usize, 0usize, 0usize, 0usize);
    let mut hosts = (usize::MAX, 0usize);
    for c in cases {
        let recs = &c.stream.records;
        let (want, single) = run_single(&rule, recs);
        let want_ids = alert_ids(&want);
        records += recs.len();
        alerts += want_ids.len();
        keyless += c.keys.iter().filter(|k| k.is_none()).count();
        hosts = (hosts.0.min(c.hosts), hosts.1.max(c.hosts));
        for k in 1..=8 {
            // every way of placing keyless records is used across the corpus
            let kl = KEYLESS[(c.seed as usize + k) % KEYLESS.len()];
            let (got, split) = split_by_host(&rule, recs, &c.keys, k, kl);
            let checked = same_outputs(recs, &want, &want_ids, &got).and_then(|()| stats_add_up(&single, &split));
            if let Err(why) = checked {
                panic!(
                    "split on host.id across {k} detectors (keyless records: {kl:?}) differs from one detector: {why}\n\
                     reproduce with APT_NETCON_SCALEOUT_SEED={base} (stream seed {}, {} hosts)",
                    c.seed, c.hosts
                );
            }
            // the split is not trivial: alerts came from several detectors
            if split.iter().filter(|s| s.annotated > 0).count() > 1 {
                spread += 1;
            }
            runs += 1;
        }
    }
    eprintln!(
        "scaleout: {} streams, {records} records ({keyless} without host.id), {}-{} hosts, {alerts} alerts, \
         {runs} split runs (K = 1..=8), {spread} with alerts from several detectors, {:.1} s",
        cases.len(),
        hosts.0,
        hosts.1,
        started.elapsed().as_secs_f64()
    );
    // The corpus must exercise what it is meant to.
    let n = cases.len();
    assert!(alerts >= 5 * n, "only {alerts} alerts in {n} streams");
    assert!(keyless >= 5 * n, "only {keyless} records without host.id in {n} streams");
    assert!(spread >= 4 * n, "only {spread} of {runs} split runs had alerts from several detectors");
}

#[test]
fn records_without_host_id_may_go_to_any_detector() {
    let rule = Rule::builtin("apt_netcon_v5").unwrap();
    // Hand-written: a shell exec on host H, then its child's connections with
    // host.id missing, null, empty, an object — each sent, adversarially, to
    // the detector holding the shell, and to every other one. None may join
    // (as with one detector); the last connection, with host.id, completes it.
    let shell = br#"{"@timestamp":"2024-05-01T10:00:00.000Z","event":{"category":["process"],"type":["start"],"action":"exec"},"host":{"id":"H1","os":{"type":"linux"}},"process":{"name":"sh","args":["sh","-c","curl x|sh"],"entity_id":"E1","parent":{"name":"apt"}}}"#.to_vec();
    let conn = |ts: &str, host: &str| {
        format!(
            r#"{{"@timestamp":"2024-05-01T10:00:0{ts}.000Z","event":{{"category":["network"],"type":["start"],"action":"connection_attempted"}},"host":{{"os":{{"type":"linux"}}{host}}},"destination":{{"ip":"8.8.8.8"}},"process":{{"name":"curl","parent":{{"entity_id":"E1"}}}}}}"#
        )
        .into_bytes()
    };
    let records = vec![
        shell,
        conn("1", ""),
        conn("1", r#","id":null"#),
        conn("2", r#","id":[]"#),
        conn("2", r#","id":{"value":"H1"}"#),
        conn("3", r#","id":"H1""#),
    ];
    let (want, single) = run_single(&rule, &records);
    let want_ids = alert_ids(&want);
    assert_eq!(want_ids.len(), 1, "{want:?}");
    assert!(matches!(want[5], Out::Annotated(_)), "{want:?}");
    assert_eq!(single.missing_key, 4);
    for k in 1..=4 {
        let home = bucket("H1", k);
        for target in 0..k {
            let (got, split) = run_split(&rule, &records, k, |_, r| match host_key(r) {
                Some(h) => bucket(&h, k),
                None => target,
            });
            same_outputs(&records, &want, &want_ids, &got)
                .unwrap_or_else(|why| panic!("K={k}, keyless to {target} (shell on {home}): {why}"));
            stats_add_up(&single, &split).unwrap();
        }
    }

    // Generated: every placement of the keyless records, K = 3 and 8.
    let (base, cases) = corpus();
    let (mut keyless, mut keyless_matches, mut runs) = (0usize, 0u64, 0usize);
    for c in cases.iter().take(8) {
        let recs = &c.stream.records;
        let (want, single) = run_single(&rule, recs);
        let want_ids = alert_ids(&want);
        keyless += c.keys.iter().filter(|k| k.is_none()).count();
        keyless_matches += single.missing_key;
        for k in [3, 8] {
            for kl in KEYLESS {
                let (got, split) = split_by_host(&rule, recs, &c.keys, k, kl);
                if let Err(why) =
                    same_outputs(recs, &want, &want_ids, &got).and_then(|()| stats_add_up(&single, &split))
                {
                    panic!(
                        "K={k}, keyless records {kl:?}: {why}\nAPT_NETCON_SCALEOUT_SEED={base} (stream seed {})",
                        c.seed
                    );
                }
                runs += 1;
            }
        }
    }
    eprintln!("scaleout keyless: {keyless} records without host.id ({keyless_matches} stage matches with a key part missing), {runs} split runs");
    assert!(keyless >= 50, "only {keyless} records without host.id");
    assert!(keyless_matches >= 20, "only {keyless_matches} stage matches with a missing key part");
}

/// Which detector record `i` goes to.
type Placement<'a> = Box<dyn Fn(usize) -> usize + 'a>;

#[test]
fn a_wrong_partition_key_loses_alerts() {
    let rule = Rule::builtin("apt_netcon_v5").unwrap();
    let (_, cases) = corpus();
    // process.entity_id: a shell's own id; its child's connection has ANOTHER
    // process.entity_id (the child's), so the two land apart.
    let by_entity = |r: &[u8]| -> Option<String> {
        let Ok(Value::Object(root)) = serde_json::from_slice::<Value>(r) else { return None };
        let v = root.get("process.entity_id").or_else(|| root.get("process").and_then(|p| p.get("entity_id")))?;
        let mut kw = Vec::new();
        keywords(v, &mut kw);
        kw.into_iter().next()
    };
    // The raw JSON text of host.id: `"h"` and `["h"]` hash apart.
    let by_raw_host = |r: &[u8]| -> Option<String> { host_id_members(r).first().map(|v| v.to_string()) };
    let mut total_alerts = 0usize;
    let mut lost: BTreeMap<&str, (usize, usize)> = BTreeMap::new(); // strategy -> (lost, changed outputs)
    for c in cases.iter().take(12) {
        let recs = &c.stream.records;
        let (want, _) = run_single(&rule, recs);
        let want_ids = alert_ids(&want);
        let entity: Vec<Option<String>> = recs.iter().map(|r| by_entity(r)).collect();
        let raw_host: Vec<Option<String>> = recs.iter().map(|r| by_raw_host(r)).collect();
        for k in [2, 3, 5, 8] {
            total_alerts += want_ids.len();
            let strategies: [(&str, Placement); 3] = [
                ("process.entity_id", Box::new(|i| entity[i].as_ref().map_or(0, |e| bucket(e, k)))),
                ("round-robin", Box::new(|i| i % k)),
                ("raw host.id text", Box::new(|i| raw_host[i].as_ref().map_or(0, |h| bucket(h, k)))),
            ];
            for (name, place) in strategies {
                let (got, _) = run_split(&rule, recs, k, |i, _| place(i));
                let got_ids = alert_ids(&got);
                let e = lost.entry(name).or_default();
                e.0 += want_ids.iter().filter(|id| !got_ids.contains(id)).count();
                e.1 += want.iter().zip(&got).filter(|(w, g)| w != g).count();
            }
        }
    }
    eprintln!("scaleout wrong keys (12 streams, K = 2, 3, 5, 8, {total_alerts} alerts expected in all):");
    for (name, (l, changed)) in &lost {
        eprintln!("  by {name}: {l} alerts lost, {changed} records with another output");
    }
    // Partitioned on the entity id or round-robin, most sequences are split.
    for name in ["process.entity_id", "round-robin"] {
        assert!(
            lost[name].0 * 3 >= total_alerts,
            "partitioning by {name} lost only {} of {total_alerts} alerts",
            lost[name].0
        );
    }
    // On host.id's raw text, only sequences whose events write it differently.
    assert!(lost["raw host.id text"].0 > 0, "partitioning by the raw host.id text lost no alert");
}

/// The event-time watermark is per detector. A shell exec that arrives more
/// than maxspan behind the latest event its detector has seen is dropped
/// (`late`): with one detector for the fleet, one host's lagging shipper
/// loses that host's sequences; with a detector per host (or per partition),
/// only the hosts sharing its partition are affected.
#[test]
fn a_lagging_host_is_late_only_for_the_detector_it_shares() {
    let rule = Rule::builtin("apt_netcon_v5").unwrap();
    let shell = |host: &str, ts: &str| {
        format!(r#"{{"@timestamp":"{ts}","event":{{"category":["process"],"type":["start"],"action":"exec"}},"host":{{"id":"{host}","os":{{"type":"linux"}}}},"process":{{"name":"sh","args":["sh","-c","x"],"entity_id":"E-{host}","parent":{{"name":"apt"}}}}}}"#).into_bytes()
    };
    let conn = |host: &str, ts: &str| {
        format!(r#"{{"@timestamp":"{ts}","event":{{"category":["network"],"type":["start"],"action":"connection_attempted"}},"host":{{"id":"{host}","os":{{"type":"linux"}}}},"destination":{{"ip":"8.8.8.8"}},"process":{{"parent":{{"entity_id":"E-{host}"}}}}}}"#).into_bytes()
    };
    // Host B is up to date; host A's records arrive a minute late.
    let records = vec![
        shell("B", "2024-05-01T10:01:00Z"),
        conn("B", "2024-05-01T10:01:01Z"),
        shell("A", "2024-05-01T10:00:00Z"),
        conn("A", "2024-05-01T10:00:01Z"),
    ];
    let (one, single) = run_single(&rule, &records);
    assert!(matches!(one[1], Out::Annotated(_)));
    assert_eq!(one[3], Out::Unchanged, "A's shell is late for a detector that has seen B");
    assert_eq!(single.late, 1);
    let (split, stats) = run_split(&rule, &records, 2, |_, r| if host_key(r).as_deref() == Some("A") { 0 } else { 1 });
    assert!(matches!(split[1], Out::Annotated(_)));
    assert!(matches!(split[3], Out::Annotated(_)), "A's detector has seen only A: {:?}", split[3]);
    assert_eq!(stats.iter().map(|s| s.late).sum::<u64>(), 0);
}
