//! `sample by` against a naive batch reference on generated streams.
//!
//! The reference is Elasticsearch's `SampleIterator` on the whole stream:
//! per key (the sample's `by` fields then the stage's), the events of each
//! stage in stream order, and `matchSamples` — a backtracking search giving
//! the first combination of distinct events, earlier stages and earlier
//! events first. The engine is a stream: it emits a key's sample as soon as
//! one exists. So the test checks, per key:
//!
//! * the engine emits a sample exactly for the keys the reference finds one
//!   for (a sample exists in the stream iff one exists among the events seen
//!   when the engine emits), and at most one;
//! * the engine's sample is `matchSamples` over the events seen up to its
//!   last event (the streaming choice: docs/eql.md), which can differ
//!   from the reference's choice over the whole stream only in WHICH events
//!   are picked when an event matching several stages came first.
//!
//! Environment: `APT_NETCON_EQL_SAMPLE_STREAMS` (default 2000 per query).

mod common;

use apt_netcon::eql::{Engine, EngineOptions, FieldType, Match, TypeMap};
use common::Rng;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// (query, per-stage conditions as (category, required x or any)).
type Stages = &'static [(&'static str, Option<i64>)];
const QUERIES: &[(&str, Stages)] = &[
    ("sample by h [a where true] [b where true]", &[("a", None), ("b", None)]),
    ("sample by h [any where x == 1] [any where true] [a where true]", &[("*", Some(1)), ("*", None), ("a", None)]),
    ("sample by h [any where true] [any where true]", &[("*", None), ("*", None)]),
    ("sample by h [a where x == 2] [any where x == 2] [b where true]", &[("a", Some(2)), ("*", Some(2)), ("b", None)]),
];

fn matches(ev: &Value, st: &(&str, Option<i64>)) -> bool {
    let cat_ok = st.0 == "*" || ev["event"]["category"] == st.0;
    let x_ok = st.1.is_none_or(|x| ev["x"] == x);
    cat_ok && x_ok
}

/// `matchSamples`: one distinct event per stage, earliest first.
fn match_samples(cands: &[Vec<u64>]) -> Option<Vec<u64>> {
    fn go(c: &[Vec<u64>], i: usize, pick: &mut Vec<u64>) -> bool {
        if i == c.len() {
            return true;
        }
        for &e in &c[i] {
            if !pick.contains(&e) {
                pick.push(e);
                if go(c, i + 1, pick) {
                    return true;
                }
                pick.pop();
            }
        }
        false
    }
    let mut pick = Vec::new();
    go(cands, 0, &mut pick).then_some(pick)
}

/// Per key, per stage, the events (ordinals) matching, up to `upto`.
fn candidates(events: &[Value], stages: Stages, upto: u64) -> BTreeMap<String, Vec<Vec<u64>>> {
    let mut m: BTreeMap<String, Vec<Vec<u64>>> = BTreeMap::new();
    for (i, ev) in events.iter().enumerate().take(upto as usize + 1) {
        let Some(h) = ev["h"].as_str() else { continue };
        for (si, st) in stages.iter().enumerate() {
            if matches(ev, st) {
                m.entry(h.to_string()).or_insert_with(|| vec![Vec::new(); stages.len()])[si].push(i as u64);
            }
        }
    }
    m
}

#[test]
fn samples_agree_with_the_batch_reference() {
    let n: u64 = std::env::var("APT_NETCON_EQL_SAMPLE_STREAMS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let mut types = TypeMap::empty();
    types.set("x", FieldType::Long);
    let (mut streams, mut samples, mut differ_from_batch) = (0u64, 0u64, 0u64);
    for (qi, (q, stages)) in QUERIES.iter().enumerate() {
        for s in 0..n {
            let mut r = Rng::new(0xA11CE ^ (qi as u64) << 32 ^ s);
            let len = 2 + r.below(14) as usize;
            let events: Vec<Value> = (0..len)
                .map(|i| {
                    let cat = ["a", "b", "c"][r.below(3) as usize];
                    let mut ev = json!({"@timestamp": i as i64, "event": {"category": cat}, "x": r.below(3) as i64});
                    if r.below(8) != 0 {
                        ev["h"] = json!(["h1", "h2", "h3"][r.below(3) as usize]);
                    }
                    ev
                })
                .collect();
            let opts = EngineOptions { types: types.clone(), ..EngineOptions::default() };
            let mut e = Engine::new(q, opts).unwrap();
            let mut out: Vec<Match> = Vec::new();
            for (i, ev) in events.iter().enumerate() {
                e.push(i as u64, ev, &mut out);
            }
            e.finish(&mut out);
            streams += 1;
            let whole = candidates(&events, stages, len as u64);
            let mut seen = BTreeMap::new();
            for m in &out {
                let key = m.keys[0].clone().expect("a non-optional key");
                assert!(seen.insert(key.clone(), ()).is_none(), "{q}: two samples for key {key}");
                let picked: Vec<u64> = m.events.iter().map(|e| e.expect("no missing stage")).collect();
                let last = *picked.iter().max().unwrap();
                let upto = candidates(&events, stages, last);
                let expect = upto.get(&key).and_then(|c| match_samples(c));
                assert_eq!(Some(picked.clone()), expect, "{q}: key {key}, stream {events:#?}");
                let batch = whole.get(&key).and_then(|c| match_samples(c));
                assert!(batch.is_some(), "{q}: a sample the batch does not find");
                if batch != Some(picked) {
                    differ_from_batch += 1;
                }
                samples += 1;
            }
            for (key, c) in &whole {
                if match_samples(c).is_some() {
                    assert!(seen.contains_key(key), "{q}: key {key} has a sample but none was emitted: {events:#?}");
                }
            }
        }
    }
    eprintln!(
        "eql sample reference: {streams} streams, {samples} samples; {differ_from_batch} picked other events than a search of the whole stream would (events matching several stages first)"
    );
    assert!(samples > 0);
}
