//! The MessagePack path: `filter_chunk` (the Fluent Bit chunk walk) and
//! `Detector::process_msgpack` on arbitrary bytes, after a chunk holding the
//! sample's hook shell exec (so a body like the hook's connection completes
//! a sequence and the MessagePack merge runs).
//!
//! First byte = mode: 0 the rest is a whole chunk; 1 the rest is one body,
//! wrapped as a v2 record; 2 legacy record; 3 a v2 record between two group
//! markers; otherwise the rest is cut into bodies at each 0xC1 byte (the
//! reserved marker) and they are wrapped as v2 records.
//!
//! Checks (`chunk_checked`): no panic; a refused chunk leaves the detector
//! untouched; counts add up; with nothing annotated nothing is written; an
//! annotated chunk is a valid chunk with as many records.
//!
//! Then each body (the rest, and in the last mode each piece) goes through
//! a small rule pack (two rules on the generic engine, which read a body
//! from the pack's read of it or from a tree, and the APT rule): no panic,
//! every alert a MessagePack one, and a body the pack could not read
//! counted by its rules.

use super::{chunk_checked, chunk_of, detector, hook_shell, msgpack, push_record, Input, Wrap, CONFIGS};
use apt_netcon::engine::pack::PackDetector;
use apt_netcon::{Config, RecordError, Rule, Verdict};

const ERRORS: [RecordError; 5] =
    [RecordError::TooLarge, RecordError::InvalidJson, RecordError::InvalidMsgpack, RecordError::NotAnObject, RecordError::TooDeep];

/// The pack's rules, compiled once per process.
fn pack_rules() -> Vec<Rule> {
    static RULES: std::sync::OnceLock<Vec<Rule>> = std::sync::OnceLock::new();
    RULES
        .get_or_init(|| {
            let eql = |q: &str| Rule::from_eql(q, apt_netcon::config::rule::meta_for_file("fuzz")).unwrap();
            vec![
                eql(r#"sample by host.id, process.pid [process where process.name : "*sh" and length(process.name) > 1] [network where not cidrmatch(destination.ip, "10.0.0.0/8")]"#),
                eql(r#"sequence by host.id with maxspan=1m [process where process.parent.name == "apt" and length(process.args) >= 0] [network where destination.port > 0]"#),
                Rule::builtin("apt_netcon_v11").unwrap(),
            ]
        })
        .clone()
}

pub fn run(data: &[u8]) {
    let mut r = Input::new(data);
    let mode = r.u8();
    let rest = r.rest();
    let mut chunk = Vec::new();
    match mode {
        0 => chunk.extend_from_slice(rest),
        1 => push_record(&mut chunk, rest, Wrap::V2),
        2 => push_record(&mut chunk, rest, Wrap::Legacy),
        3 => {
            push_record(&mut chunk, b"\x80", Wrap::Marker);
            push_record(&mut chunk, rest, Wrap::V2);
            push_record(&mut chunk, b"\x80", Wrap::Marker);
        }
        _ => {
            for body in rest.split(|&b| b == 0xc1) {
                push_record(&mut chunk, body, Wrap::V2);
            }
        }
    }
    let primer = chunk_of(&[msgpack(&serde_json::from_slice(hook_shell()).unwrap())]);
    for cfg in [0, 1 + data.len() % (CONFIGS.len() - 1)] {
        let mut det = detector(cfg);
        chunk_checked(&mut det, &primer);
        chunk_checked(&mut det, &chunk);
        // The body alone, as a Fluent Bit Lua or embedding host would pass it.
        let before = det.stats();
        match det.process_msgpack(rest) {
            Ok(Verdict::Annotated(out)) => assert!(!out.is_empty()),
            Ok(Verdict::Unchanged) => {}
            Err(e) => assert_eq!(super::counter(&det.stats(), e), super::counter(&before, e) + 1),
        }
        det.flush();
    }
    let mut pack = PackDetector::new(pack_rules(), &Config::default());
    let primer = msgpack(&serde_json::from_slice(hook_shell()).unwrap());
    let bodies: Vec<&[u8]> = if mode > 3 { rest.split(|&b| b == 0xc1).collect() } else { vec![rest] };
    for body in std::iter::once(&primer[..]).chain(bodies) {
        let by_rules = |pack: &PackDetector, e| (0..3).map(|i| super::counter(&pack.stats(i), e)).sum::<u64>();
        let before: Vec<u64> = ERRORS.iter().map(|&e| by_rules(&pack, e)).collect();
        if let Err(e) = pack.process(body, true) {
            // A body no reader could read (too large: refused before any
            // rule, counted by the pack's host).
            if let Some(k) = ERRORS.iter().position(|&x| x == e).filter(|&k| k > 0) {
                assert!(by_rules(&pack, e) > before[k], "{e:?}: counted by a rule it reached");
            }
        }
        while let Some(a) = pack.take_alert() {
            assert!(a.msgpack && matches!(a.bytes.first(), Some(0x80..=0x8f | 0xde | 0xdf)), "a MessagePack alert");
        }
    }
    pack.finish();
}
