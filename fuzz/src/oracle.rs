//! Configurations and invariants: the fuzz configs, detectors for them,
//! and the checks every record and chunk goes through.

use apt_netcon::engine::chunk::filter_chunk;
use apt_netcon::{Config, Detector, RecordError, Rule, Stats, Verdict};

/// Configurations the targets rotate through (none reads a file).
pub const CONFIGS: &[&str] = &[
    "",
    r#"{"rule":"apt_netcon_v11","kibana_fields":false,"annotation_prefix":"a.b"}"#,
    r#"{"max_pending_sequences":1,"max_record_bytes":600,"maxspan":"1s"}"#,
    r#"{"annotation_prefix":"process","trusted_destination_cidrs":["45.33.0.0/16"],"trusted_process_names":["zsh"]}"#,
    r#"{"exceptions":[{"name":"x","entries":[{"field":"process.args","operator":"matches","value":"*apt-listbugs*"},{"field":"host.id","operator":"exists"}]}],"trusted_executables":["/usr/bin/c?rl"]}"#,
    r#"{"annotation_prefix":"rule.name","kibana_fields":true,"max_pending_sequences":2}"#,
    r#"{"max_lateness":"3s","max_held_events":4,"max_pending_per_host":2}"#,
    r#"{"max_lateness":"1d","max_state_bytes":4096,"max_future":"0s"}"#,
    // The default but for the byte prefilter: the last entry (STRICT).
    r#"{"prefilter":false}"#,
];

/// The index in [`CONFIGS`] of the default config with the byte prefilter off.
pub const STRICT: usize = CONFIGS.len() - 1;

pub fn config(i: usize) -> Config {
    static PARSED: std::sync::OnceLock<Vec<Config>> = std::sync::OnceLock::new();
    let all =
        PARSED.get_or_init(|| CONFIGS.iter().map(|c| Config::from_json(c).expect("fuzz configs are valid")).collect());
    all[i % all.len()].clone()
}

/// A detector for `CONFIGS[i]`. The built-in rules are compiled once per
/// process (compiling them per input would dominate the run time).
pub fn detector(i: usize) -> Detector {
    static RULES: std::sync::OnceLock<(Rule, Rule)> = std::sync::OnceLock::new();
    let (v5, v11) =
        RULES.get_or_init(|| (Rule::builtin("apt_netcon_v5").unwrap(), Rule::builtin("apt_netcon_v11").unwrap()));
    let c = config(i);
    let rule = if c.rule == "apt_netcon_v11" { v11 } else { v5 };
    Detector::with_rule(rule.clone(), &c)
}

/// The counter a record error must have moved.
pub fn counter(s: &Stats, e: RecordError) -> u64 {
    match e {
        RecordError::TooLarge => s.too_large,
        RecordError::InvalidJson => s.invalid_json,
        RecordError::InvalidMsgpack => s.invalid_msgpack,
        RecordError::NotAnObject => s.not_an_object,
        RecordError::TooDeep => s.too_deep,
        RecordError::BadTimestamp => s.bad_timestamp,
        RecordError::AnnotateFailed => s.annotate_failed,
    }
}

type Members = std::collections::BTreeMap<String, Box<serde_json::value::RawValue>>;

/// What one `process` call gave, owned (for comparing two detectors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    Annotated(Vec<u8>),
    Error(RecordError),
}

/// Run one JSON record through `det` and check the invariants: one more
/// record counted; an error moves exactly its own counter (and `errors()`
/// by one); an annotated record is a JSON object that still holds every
/// top-level key of the input that the alert does not own.
pub fn process_checked(det: &mut Detector, rec: &[u8]) -> Outcome {
    let before = det.stats();
    let got = match det.process(rec) {
        Ok(Verdict::Unchanged) => Outcome::Unchanged,
        Ok(Verdict::Annotated(b)) => Outcome::Annotated(b.to_vec()),
        Err(e) => Outcome::Error(e),
    };
    let after = det.stats();
    assert_eq!(after.records, before.records + 1);
    match &got {
        Outcome::Error(e) => {
            assert_eq!(counter(&after, *e), counter(&before, *e) + 1, "{e:?} not counted");
            assert_eq!(after.errors(), before.errors() + 1, "{e:?} counted twice");
            assert_eq!(after.annotated, before.annotated);
        }
        Outcome::Unchanged => {
            assert_eq!(after.errors(), before.errors());
            assert_eq!(after.annotated, before.annotated);
        }
        Outcome::Annotated(out) => {
            assert_eq!(after.errors(), before.errors());
            assert_eq!(after.annotated, before.annotated + 1);
            assert_eq!(after.sequences_completed, before.sequences_completed + 1);
            // Raw values: members the detector skips may nest deeper than
            // a `Value` can be parsed.
            let v: Members = serde_json::from_slice(out).expect("an annotated record is a JSON object");
            let input: Members = serde_json::from_slice(rec).expect("an annotated input was JSON");
            for k in input.keys() {
                let root = k.split('.').next().unwrap_or(k);
                if !["rule", "threat", "kibana", "apt_netcon", "a", "process"].contains(&root) {
                    assert!(v.contains_key(k), "member {k:?} lost by the annotation");
                }
            }
        }
    }
    got
}

/// Run one chunk through `det` and check the invariants: a malformed chunk
/// leaves the detector's counters as they were and `out` untouched; a
/// walked chunk counts its records; with nothing annotated `out` is
/// untouched; an annotated chunk is itself a valid chunk with as many
/// records and markers.
pub fn chunk_checked(det: &mut Detector, chunk: &[u8]) -> Option<Vec<u8>> {
    let before = det.stats();
    let sentinel = b"untouched".to_vec();
    let mut out = sentinel.clone();
    let res = filter_chunk(det, chunk, &mut out);
    let after = det.stats();
    match res {
        Err(_) => {
            assert_eq!(after, before, "a refused chunk was shown to the detector");
            assert_eq!(out, sentinel);
            None
        }
        Ok(o) => {
            assert_eq!(after.records - before.records, o.records);
            assert_eq!(after.errors() - before.errors(), o.errors);
            assert_eq!(after.annotated - before.annotated, o.annotated);
            if o.annotated == 0 {
                assert_eq!(out, sentinel, "out touched with nothing annotated");
                return None;
            }
            // The new chunk walks, with the same number of records.
            let mut fresh = detector(0);
            let mut scratch = Vec::new();
            let again = filter_chunk(&mut fresh, &out, &mut scratch).expect("an annotated chunk is a valid chunk");
            assert_eq!((again.records, again.group_markers), (o.records, o.group_markers));
            Some(out)
        }
    }
}

/// A small rule pack: two rules on the generic engine (which read a record
/// from the pack's read of it or from a tree) and the APT rule, compiled
/// once per process.
pub fn small_pack() -> apt_netcon::engine::pack::PackDetector {
    static RULES: std::sync::OnceLock<Vec<Rule>> = std::sync::OnceLock::new();
    let rules = RULES.get_or_init(|| {
        let eql = |q: &str| Rule::from_eql(q, apt_netcon::config::rule::meta_for_file("fuzz")).unwrap();
        vec![
            eql(r#"sample by host.id, process.pid [process where process.name : "*sh" and length(process.name) > 1] [network where not cidrmatch(destination.ip, "10.0.0.0/8")]"#),
            eql(r#"sequence by host.id with maxspan=1m [process where process.parent.name == "apt" and length(process.args) >= 0] [network where destination.port > 0]"#),
            Rule::builtin("apt_netcon_v11").unwrap(),
        ]
    });
    apt_netcon::engine::pack::PackDetector::new(rules.clone(), &Config::default())
}

/// One record (`msgpack`: a MessagePack body) through a pack: no panic; a
/// record no reader could read is counted by a rule it reached (one too
/// large is refused before any rule, and counted by the pack's host);
/// every alert in the record's format.
pub fn pack_checked(pack: &mut apt_netcon::engine::pack::PackDetector, record: &[u8], msgpack: bool) {
    const READ_ERRORS: [RecordError; 4] =
        [RecordError::InvalidJson, RecordError::InvalidMsgpack, RecordError::NotAnObject, RecordError::TooDeep];
    let rules = pack.rules().len();
    let by_rules = |pack: &apt_netcon::engine::pack::PackDetector, e| (0..rules).map(|i| counter(&pack.stats(i), e)).sum::<u64>();
    let before: Vec<u64> = READ_ERRORS.iter().map(|&e| by_rules(pack, e)).collect();
    if let Err(e) = pack.process(record, msgpack) {
        if let Some(k) = READ_ERRORS.iter().position(|&x| x == e) {
            assert!(by_rules(pack, e) > before[k], "{e:?}: counted by a rule it reached");
        }
    }
    while let Some(a) = pack.take_alert() {
        assert_eq!(a.msgpack, msgpack, "an alert in the record's format");
        if msgpack {
            assert!(matches!(a.bytes.first(), Some(0x80..=0x8f | 0xde | 0xdf)), "a MessagePack map");
        } else {
            serde_json::from_slice::<serde::de::IgnoredAny>(&a.bytes).expect("a JSON alert");
        }
    }
}
