//! The streaming engine against a NAIVE REFERENCE of the v5 rule
//! (`tests/common/mod.rs`, written from RULE.md §Semantics alone) on many
//! generated in-order streams: the same records must complete the same
//! sequences with the same stage-1 events, every other record must pass
//! unchanged, and every annotated record must be the original plus the alert.
//!
//! Environment:
//! * `APT_NETCON_REF_STREAMS` — how many streams (default 10000);
//! * `APT_NETCON_REF_SEED` — the base seed (default fixed; printed on failure);
//! * `APT_NETCON_REF_STREAM_SEED` — run only the stream with this seed, and
//!   print it;
//! * `APT_NETCON_REF_THREADS` — worker threads (default: the cores).
//!
//! e.g. `APT_NETCON_REF_STREAMS=1000000 cargo test --release --test reference`.

mod common;

use apt_netcon::{Config, Detector, Rule, Verdict};
use common::*;
use serde_json::{json, Value};
use std::time::Instant;

const DEFAULT_SEED: u64 = 0x00A7_7E7C_0A11_2024;

fn stream_seed(base: u64, i: u64) -> u64 {
    base.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

fn stream_for(seed: u64) -> Stream {
    let mut r = Rng::new(seed ^ 0x1E46_7455);
    let len = r.range(8, 28) as usize;
    gen_stream(seed, len, 20, GenOpts { no_alerts: false, pretty: true, non_json: true })
}

fn fail(base: Option<u64>, i: u64, seed: u64, rule: &Rule, stream: &Stream, why: &str) -> ! {
    let small = minimise(&stream.records, |recs| check_stream(rule, recs).is_err());
    let small_why = check_stream(rule, &small).err().unwrap_or_default();
    let reproduce = match base {
        Some(b) => format!("APT_NETCON_REF_SEED={b} (stream {i}) or APT_NETCON_REF_STREAM_SEED={seed}"),
        None => format!("APT_NETCON_REF_STREAM_SEED={seed}"),
    };
    panic!(
        "engine and reference differ: {why}\nreproduce with {reproduce}\n\nfull stream ({} records):\n{}\n\
         minimised to {} records ({small_why}):\n{}",
        stream.records.len(),
        dump(&stream.records),
        small.len(),
        dump(&small)
    );
}

#[test]
fn engine_matches_naive_reference_on_generated_streams() {
    if let Ok(s) = std::env::var("APT_NETCON_REF_STREAM_SEED") {
        let seed: u64 = s.trim().parse().expect("a number");
        let rule = Rule::builtin("apt_netcon_v5").unwrap();
        let stream = stream_for(seed);
        eprintln!("stream {seed}:\n{}", dump(&stream.records));
        match check_stream(&rule, &stream.records) {
            Ok(r) => eprintln!("agrees: {:?}", r.expect),
            Err(why) => fail(None, 0, seed, &rule, &stream, &why),
        }
        return;
    }
    let n = env_u64("APT_NETCON_REF_STREAMS", 10_000);
    let base = env_u64("APT_NETCON_REF_SEED", DEFAULT_SEED);
    let cores = std::thread::available_parallelism().map(|p| p.get() as u64).unwrap_or(2);
    let workers = env_u64("APT_NETCON_REF_THREADS", cores).clamp(1, 64);
    let started = Instant::now();
    let totals: Vec<Totals> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                s.spawn(move || {
                    let rule = Rule::builtin("apt_netcon_v5").unwrap();
                    let mut t = Totals::default();
                    let mut i = w;
                    while i < n {
                        let seed = stream_seed(base, i);
                        let stream = stream_for(seed);
                        match check_stream(&rule, &stream.records) {
                            Ok(r) => t.add(&r, &stream.labels),
                            Err(why) => fail(Some(base), i, seed, &rule, &stream, &why),
                        }
                        i += workers;
                    }
                    t
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    let mut t = Totals::default();
    for x in &totals {
        t.merge(x);
    }
    t.print(&format!("reference (seed {base}, {:.1} s)", started.elapsed().as_secs_f64()));
    assert_eq!(t.streams, n);
    // The corpus must exercise what it is meant to (scaled to n).
    let at_least = |what: &str, got: u64, per_10k: u64| {
        let want = per_10k * n / 10_000;
        assert!(got >= want, "only {got} {what} in {n} streams (want >= {want}): the generator lost its teeth");
    };
    at_least("alerts", t.alerts, 4_000);
    at_least("maxspan rejections", t.rejected_span, 3_000);
    at_least("alerts at exactly 5000 ms", t.alerts_at_5000, 700);
    at_least("rejections at exactly 5001 ms", t.rejected_at_5001, 400);
    at_least("alerts at equal timestamps", t.alerts_at_0, 400);
    at_least("unpaired stage-2 events", t.unpaired_stage2, 20_000);
    at_least("missing-key stage matches", t.missing_key, 6_000);
    at_least("near-miss records", t.near_misses(), 35_000);
    at_least("expected errors", t.errors, 500);
    for label in [
        "exec.parent=APT",
        "exec.args=-ce",
        "exec.os=windows",
        "net.dst=::ffff:10.1.2.3",
        "net.dst.garbage",
        "net.exe=apt-listbugs",
        "net.action=connection_accepted",
        "stage1.bad-ts",
    ] {
        assert!(t.labels.get(label).copied().unwrap_or(0) > 0, "no {label} records generated");
    }
}

/// `Detector::new(&Config::default())` runs the v5 rule: a hand-written
/// sequence at the 5000 ms boundary (with sub-ms digits) alerts, 5001 does not.
#[test]
fn default_detector_pairs_at_the_boundary() {
    let exec = |id: &str, ts: &str, ent: &str| {
        json!({"@timestamp": ts, "event": {"id": id, "category": ["process"], "type": ["start"], "action": "exec"},
               "host": {"id": "0123456789abcdef0123456789abcdef", "os": {"type": "linux"}},
               "process": {"name": "sh", "args": ["sh", "-c", "curl x"], "entity_id": ent, "parent": {"name": "apt"}}})
        .to_string()
        .into_bytes()
    };
    let net = |id: &str, ts: &str, parent: &str| {
        json!({"@timestamp": ts, "event.id": id, "event.category": "network", "event.type": "start",
               "event.action": "connection_attempted", "host.id": "0123456789abcdef0123456789abcdef",
               "host.os.type": "linux", "destination.ip": "::ffff:8.8.8.8", "process.parent.entity_id": parent})
        .to_string()
        .into_bytes()
    };
    let records = vec![
        exec("a", "2024-02-28T23:59:58.0000001Z", "E1"),
        net("b", "2024-02-29T00:00:03.0004999Z", "E1"), // 5000.4999 ms: match
        net("c", "2024-02-29T00:00:03.000Z", "E1"),     // consumed: nothing pending
        exec("d", "2024-02-29T02:00:04+02:00", "E2"),   // 00:00:04Z
        net("e", "2024-02-29T00:00:09.001Z", "E2"),     // 5001 ms: consumed, no alert
    ];
    let r = reference(&records);
    assert_eq!(r.expect[1], Expect::Alert { stage1: 0, span_ms: 5000 });
    assert_eq!(r.expect[2], Expect::Unchanged);
    assert_eq!(r.expect[4], Expect::Unchanged);
    assert_eq!(r.rejected_span, 1);
    let mut det = Detector::new(&Config::default()).expect("the default config loads");
    let mut got = Vec::new();
    for rec in &records {
        got.push(match det.process(rec) {
            Ok(Verdict::Unchanged) => None,
            Ok(Verdict::Annotated(b)) => Some(serde_json::from_slice::<Value>(b).unwrap()),
            Err(e) => panic!("{e}"),
        });
    }
    let ann = got[1].as_ref().expect("record 1 completes the sequence");
    assert_eq!(ann["apt_netcon"]["shell"]["event"]["id"], "a");
    assert_eq!(ann["apt_netcon"]["span_ms"], 5000);
    assert!(got.iter().enumerate().all(|(i, g)| g.is_some() == (i == 1)), "{got:?}");
    let rule = Rule::builtin("apt_netcon_v5").unwrap();
    check_stream(&rule, &records).unwrap();
}

/// Regression (engine bug found by this suite): a record that is not valid
/// JSON — invalid UTF-8 in a member the rule does not read — could not be
/// indexed by Elasticsearch, so it must take no part in a sequence. The
/// engine reads only the members it needs, pairs the record, consumes the
/// pending shell exec, then fails to write the alert (`annotate_failed`):
/// the valid connection that follows, which Elasticsearch would alert on,
/// finds nothing pending.
#[test]
fn invalid_utf8_record_takes_no_part() {
    let exec = br#"{"@timestamp":"2024-01-01T00:00:00Z","event":{"id":"s1","category":["process"],"type":["start"],"action":"exec"},"host":{"id":"h","os":{"type":"linux"}},"process":{"name":"sh","args":["sh","-c","x"],"entity_id":"E","parent":{"name":"apt"}}}"#.to_vec();
    let conn = |t: &str, extra: &[u8]| {
        let mut v = format!(
            r#"{{"@timestamp":"{t}","event.category":"network","event.type":"start","event.action":"connection_attempted","host.id":"h","host.os.type":"linux","destination.ip":"8.8.8.8","process.parent.entity_id":"E""#
        )
        .into_bytes();
        v.extend_from_slice(extra);
        v.push(b'}');
        v
    };
    let records =
        vec![exec, conn("2024-01-01T00:00:01Z", b",\"junk\":\"\xC3\x28\""), conn("2024-01-01T00:00:02Z", b"")];
    let r = reference(&records);
    assert_eq!(r.expect, vec![Expect::Unchanged, Expect::Error, Expect::Alert { stage1: 0, span_ms: 2000 }]);
    let rule = Rule::builtin("apt_netcon_v5").unwrap();
    if let Err(why) = check_stream(&rule, &records) {
        panic!("{why}\n{}", dump(&records));
    }
}

// ---------------------------------------------------------------------------
// The reference itself, on cases written from RULE.md (engine-independent):
// a reference that agrees with everything would catch nothing.

fn shell(id: &str, t: &str, host: Value, ent: Value) -> Vec<u8> {
    json!({"@timestamp": t, "event": {"id": id, "category": ["process"], "type": ["start"], "action": "exec"},
           "host": {"id": host, "os": {"type": "linux"}},
           "process": {"name": "bash", "args": ["bash", "-c", "x"], "entity_id": ent, "parent": {"name": "apt"}}})
    .to_string()
    .into_bytes()
}

fn conn(id: &str, t: &str, host: Value, parent: Value, dst: Value) -> Vec<u8> {
    json!({"@timestamp": t, "event": {"id": id, "category": ["network"], "type": ["start"], "action": "connection_attempted"},
           "host": {"id": host, "os": {"type": "linux"}}, "destination": {"ip": dst},
           "process": {"parent": {"entity_id": parent}, "executable": "/usr/bin/curl"}})
    .to_string()
    .into_bytes()
}

fn alerts(records: &[Vec<u8>]) -> Vec<(usize, usize)> {
    reference(records)
        .expect
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e {
            Expect::Alert { stage1, .. } => Some((i, *stage1)),
            _ => None,
        })
        .collect()
}

const T0: &str = "2024-01-01T00:00:00.000Z";

#[test]
fn reference_self_test_sequences() {
    let h = || json!("h1");
    let e = |s: &str| json!(s);
    let d = || json!("8.8.8.8");
    // latest pending stage-1 wins; a second connection does not alert again
    let recs = vec![
        shell("1", T0, h(), e("A")),
        shell("2", "2024-01-01T00:00:01Z", h(), e("A")),
        conn("3", "2024-01-01T00:00:02Z", h(), e("A"), d()),
        conn("4", "2024-01-01T00:00:02Z", h(), e("A"), d()),
    ];
    assert_eq!(alerts(&recs), vec![(2, 1)]);
    // equal timestamps: arrival order decides
    let recs = vec![conn("1", T0, h(), e("A"), d()), shell("2", T0, h(), e("A")), conn("3", T0, h(), e("A"), d())];
    assert_eq!(alerts(&recs), vec![(2, 1)]);
    // consumed even when too late: a later connection within 5 s of nothing
    let recs = vec![
        shell("1", T0, h(), e("A")),
        conn("2", "2024-01-01T00:00:05.001Z", h(), e("A"), d()),
        conn("3", "2024-01-01T00:00:05.002Z", h(), e("A"), d()),
    ];
    assert_eq!(alerts(&recs), vec![]);
    assert_eq!(reference(&recs).rejected_span, 1);
    assert_eq!(reference(&recs).unpaired_stage2, 1);
    // keys: host and entity exact, case-sensitive; missing / null never join
    let recs = vec![
        shell("1", T0, h(), e("A")),
        conn("2", T0, json!("H1"), e("A"), d()),
        conn("3", T0, h(), e("a"), d()),
        shell("4", T0, Value::Null, e("B")),
        conn("5", T0, Value::Null, e("B"), d()),
        shell("6", T0, json!([]), e("C")),
        conn("7", T0, json!([]), e("C"), d()),
        conn("8", T0, json!(["h1"]), json!(["A"]), d()),
    ];
    assert_eq!(alerts(&recs), vec![(7, 0)]);
    assert_eq!(reference(&recs).missing_key, 4);
    // offsets and truncation: 02:00:05.0009+02:00 is 5000 ms after T0
    let recs = vec![shell("1", T0, h(), e("A")), conn("2", "2024-01-01T02:00:05.0009+02:00", h(), e("A"), d())];
    assert_eq!(reference(&recs).expect[1], Expect::Alert { stage1: 0, span_ms: 5000 });
    // a bad timestamp on a stage match is an error, and it does not take part
    let recs = vec![shell("1", "2024-02-30T00:00:00Z", h(), e("A")), conn("2", T0, h(), e("A"), d())];
    assert_eq!(reference(&recs).expect, vec![Expect::Error, Expect::Unchanged]);
}

#[test]
fn reference_self_test_predicates() {
    let base = |dst: Value| conn("x", T0, json!("h"), json!("p"), dst);
    let stage2 = |rec: Vec<u8>| {
        let v = parse_json(&rec).unwrap();
        ref_stage2(&v) && ref_indexable(&v)
    };
    for ip in
        ["8.8.8.8", "::ffff:8.8.8.8", "::", "fc00::1", "0.0.0.1", "::127.0.0.1", "fec0::1", "100.128.0.0", "172.32.0.0"]
    {
        assert!(stage2(base(json!(ip))), "{ip} passes stage 2");
    }
    for ip in [
        "0.0.0.0",
        "::ffff:0.0.0.0",
        "::ffff:10.1.2.3",
        "::1",
        "FE80::1",
        "febf::ffff",
        "ff02::1",
        "192.0.0.171",
        "100.127.255.255",
        "172.31.255.255",
        "198.19.0.1",
        "255.255.255.255",
        "not-an-ip",
        "fe80::1%eth0",
    ] {
        assert!(!stage2(base(json!(ip))), "{ip} fails stage 2");
    }
    assert!(!stage2(base(Value::Null)));
    assert!(!stage2(base(json!([]))));
    assert!(!stage2(base(json!(["8.8.8.8", "10.0.0.1"]))));
    assert!(stage2(base(json!([null, "8.8.8.8"]))));
    // the IPv4 blocks hold no native IPv6 address, and the list has 27 blocks
    assert!(!ref_excluded(ref_parse_ip("::a00:1").unwrap()));
    assert_eq!(RULE_CIDRS.len(), 27);

    let exec = |over: Value| {
        let mut v = json!({"@timestamp": T0, "event.category": ["process"], "event.type": ["start", "change"],
                           "event.action": "exec", "host.os.type": "linux", "process.name": "zsh",
                           "process.args": ["zsh", "-c", "x"], "process.parent.name": "apt"});
        for (k, x) in over.as_object().unwrap() {
            if x.is_null() {
                v.as_object_mut().unwrap().remove(k);
            } else {
                v[k] = x.clone();
            }
        }
        ref_stage1(&jdoc(&v))
    };
    assert!(exec(json!({})));
    assert!(exec(json!({"process.args": "-c"})));
    assert!(exec(json!({"process.args": [["zsh"], ["-c"]]})));
    for bad in [
        json!({"process.parent.name": "APT"}),
        json!({"process.parent.name": "apt-get"}),
        json!({"process.parent.name": null}),
        json!({"process.args": ["zsh", "-ce"]}),
        json!({"process.name": "python"}),
        json!({"host.os.type": "Linux"}),
        json!({"event.type": ["change"]}),
        json!({"event.category": "Process"}),
        json!({"event.action": "fork"}),
    ] {
        assert!(!exec(bad.clone()), "{bad}");
    }
    // nested and dotted keys are the same field, at any level
    let doc = jdoc(&json!({"process": {"parent.entity_id": "X"}, "host.os": {"type": "linux"}}));
    assert_eq!(first_str(&doc, "process.parent.entity_id"), Some("X"));
    assert_eq!(first_str(&doc, "host.os.type"), Some("linux"));
}

/// The generator's records are compact JSON exactly as serde_json writes it
/// (so `check_annotation`'s byte-prefix test applies), and the reference's
/// reader accepts exactly what serde_json accepts on them and on junk.
#[test]
fn reference_self_test_generator_and_reader() {
    let mut compact = 0;
    for seed in 0..300u64 {
        let s = gen_stream(seed, 30, 5, GenOpts { no_alerts: seed % 2 == 0, pretty: true, non_json: true });
        for rec in &s.records {
            let serde = serde_json::from_slice::<Value>(rec).ok();
            let mine = parse_json(rec);
            assert_eq!(serde.is_some(), mine.is_some(), "{}", String::from_utf8_lossy(rec));
            if let Some(v) = serde {
                assert_eq!(jdoc(&v), mine.unwrap());
                if !rec.contains(&b'\n') {
                    assert_eq!(serde_json::to_vec(&v).unwrap(), *rec, "{}", String::from_utf8_lossy(rec));
                    compact += 1;
                }
            }
        }
    }
    assert!(compact > 8000);
    for (text, ok) in [
        (&b"{\"a\":\"\\ud83e\\udd80\"}"[..], true),
        (b"{\"a\":\"\\ud83e\"}", false),
        (b"{\"a\":1e400}", false),
        (b"{\"a\":01}", false),
        (b"{\"a\":-0.0e+0} \t", true),
        (b"{\"a\":\"\x01\"}", false),
        (b"{\"a\":\"\xC3\x28\"}", false),
        (b"{\"a\":1,}", false),
        (b"{} {}", false),
        (b"{\"a\":1,\"a\":2}", true),
    ] {
        assert_eq!(parse_json(text).is_some(), ok, "{}", String::from_utf8_lossy(text));
        assert_eq!(serde_json::from_slice::<Value>(text).is_ok(), ok, "serde: {}", String::from_utf8_lossy(text));
    }
    let deep = |n: usize| format!("{{\"d\":{}{}}}", "[".repeat(n), "]".repeat(n)).into_bytes();
    // deep(n) holds n + 1 containers
    for n in [MAX_DEPTH - 2, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1] {
        let ok = n < MAX_DEPTH;
        assert_eq!(parse_json(&deep(n)).is_some(), ok, "depth {n}");
        assert_eq!(serde_json::from_slice::<Value>(&deep(n)).is_ok(), ok, "serde depth {n}");
    }
}

#[test]
fn reference_self_test_time() {
    assert_eq!(ref_parse_ts("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(ref_parse_ts("1970-01-01T00:00:00.9999999Z"), Some(999));
    assert_eq!(
        ref_parse_ts("2024-03-01T00:00:00Z").unwrap() - ref_parse_ts("2024-02-28T00:00:00Z").unwrap(),
        2 * 86_400_000
    );
    assert_eq!(ref_parse_ts("2024-01-01T01:00:00+02:00"), ref_parse_ts("2023-12-31T23:00:00Z"));
    assert_eq!(ref_parse_ts("2023-12-31T20:00:00-03:30"), ref_parse_ts("2023-12-31T23:30:00Z"));
    assert_eq!(ref_parse_ts("2022-04-04T18:52:00.6007809Z"), Some(1_649_098_320_600));
    for bad in ["", "2024-02-30T00:00:00Z", "2024-01-01T00:00:00", "2024-01-01T00:00:00.Z", "garbage"] {
        assert_eq!(ref_parse_ts(bad), None, "{bad}");
    }
    let mut r = Rng::new(7);
    for _ in 0..2000 {
        let t = ms_of(2020, 1, 1, 0, 0, 0, 0) + r.below(12 * 365 * 86_400_000) as i64;
        for (digits, off) in [(3, 0), (7, 120), (9, -210)] {
            assert_eq!(ref_parse_ts(&format_ts(t, digits, "456789", off)), Some(t));
        }
    }
}
