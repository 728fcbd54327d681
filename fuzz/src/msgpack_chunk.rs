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

use super::{chunk_checked, chunk_of, detector, hook_shell, msgpack, pack_checked, push_record, small_pack, Input, Wrap, CONFIGS};
use apt_netcon::Verdict;

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
    let mut pack = small_pack();
    let primer = msgpack(&serde_json::from_slice(hook_shell()).unwrap());
    let bodies: Vec<&[u8]> = if mode > 3 { rest.split(|&b| b == 0xc1).collect() } else { vec![rest] };
    for body in std::iter::once(&primer[..]).chain(bodies) {
        pack_checked(&mut pack, body, true);
    }
    pack.finish();
}
