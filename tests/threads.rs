//! Threads: one compiled [`Rule`] shared by 8 threads, each running its own
//! [`Detector`] over its own generated multi-host stream, all at once. The
//! outputs must be byte-identical to, and the counters equal to, those of
//! the same streams run one after another, each with a rule of its own.
//!
//! The threads start together at a [`Barrier`] and meet again at one after
//! every chunk of records, so their work really overlaps.

mod common;

use apt_netcon::{Config, Detector, RecordError, Rule, Stats, Verdict};
use common::*;
use std::sync::{Arc, Barrier};
use std::time::Instant;

const THREADS: usize = 8;
const RECORDS_PER_STREAM: usize = 1_200;
const CHUNK: usize = 100;

// Compile-time: a rule can be shared between threads, a detector moved to one.
const fn send_sync<T: Send + Sync>() {}
const fn send<T: Send>() {}
const _: () = send_sync::<Rule>();
const _: () = send_sync::<Arc<Rule>>();
const _: () = send::<Detector>();

/// What a detector did with one record.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Unchanged,
    Annotated(Vec<u8>),
    Error(RecordError),
}

/// One stream's result: each record's verdict, the bytes a shipper forwards
/// (one record per line), the counters and the per-exception counts.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    outs: Vec<Out>,
    forwarded: Vec<u8>,
    stats: Stats,
    exceptions: Vec<(String, u64)>,
}

fn process_chunk(det: &mut Detector, records: &[Vec<u8>], outs: &mut Vec<Out>, forwarded: &mut Vec<u8>) {
    for rec in records {
        let out = match det.process(rec) {
            Ok(Verdict::Unchanged) => Out::Unchanged,
            Ok(Verdict::Annotated(b)) => Out::Annotated(b.to_vec()),
            Err(e) => Out::Error(e),
        };
        match &out {
            Out::Annotated(b) => forwarded.extend_from_slice(b),
            _ => forwarded.extend_from_slice(rec),
        }
        forwarded.push(b'\n');
        outs.push(out);
    }
}

/// Run `records` through `det`, meeting the other threads at `barrier`
/// before the first record and after every chunk.
fn run(mut det: Detector, records: &[Vec<u8>], barrier: Option<&Barrier>) -> Run {
    let mut outs = Vec::with_capacity(records.len());
    let mut forwarded = Vec::new();
    let chunks = records.len().div_ceil(CHUNK);
    for i in 0..chunks.max(1) {
        if let Some(b) = barrier {
            b.wait();
        }
        let chunk = &records[(i * CHUNK).min(records.len())..((i + 1) * CHUNK).min(records.len())];
        process_chunk(&mut det, chunk, &mut outs, &mut forwarded);
    }
    Run { outs, forwarded, stats: det.stats(), exceptions: det.exception_counts() }
}

fn streams(base: u64) -> Vec<Stream> {
    (0..THREADS as u64)
        .map(|i| {
            let seed = base.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let hosts = 1 + Rng::new(seed ^ 0x7EAD).below(12) as usize;
            gen_fleet_stream(
                seed,
                RECORDS_PER_STREAM,
                hosts,
                GenOpts { pretty: true, non_json: true, ..GenOpts::default() },
            )
        })
        .collect()
}

/// Every stream on its own thread with `shared` (one rule for all), then
/// every stream alone, one after another, with a rule loaded for it by
/// `fresh_rule`; the results must be the same.
fn concurrent_equals_sequential(
    what: &str,
    config: &Config,
    shared: &Rule,
    fresh_rule: impl Fn() -> Rule,
    base: u64,
) -> Vec<Stats> {
    let started = Instant::now();
    let streams = streams(base);
    let barrier = Barrier::new(THREADS);
    let concurrent: Vec<Run> = std::thread::scope(|s| {
        let handles: Vec<_> = streams
            .iter()
            .map(|stream| {
                let barrier = &barrier;
                s.spawn(move || {
                    // a clone of the handle: the compiled rule itself is shared
                    let det = Detector::with_rule(shared.clone(), config);
                    assert!(
                        std::ptr::eq(det.rule().query_text(), shared.query_text()),
                        "the detector must share the rule, not copy it"
                    );
                    run(det, &stream.records, Some(barrier))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    let sequential: Vec<Run> =
        streams.iter().map(|stream| run(Detector::with_rule(fresh_rule(), config), &stream.records, None)).collect();
    let mut alerts = 0;
    let mut records = 0;
    for (i, (c, q)) in concurrent.iter().zip(&sequential).enumerate() {
        assert_eq!(c.outs.len(), streams[i].records.len());
        if let Some(j) = (0..c.outs.len()).find(|&j| c.outs[j] != q.outs[j]) {
            panic!(
                "{what}: thread {i}, record {j}: concurrent {:?} vs sequential {:?}\nrecord: {}",
                c.outs[j],
                q.outs[j],
                String::from_utf8_lossy(&streams[i].records[j])
            );
        }
        assert!(c.forwarded == q.forwarded, "{what}: thread {i}: forwarded bytes differ");
        assert_eq!(c.stats, q.stats, "{what}: thread {i}: counters differ");
        assert_eq!(c.exceptions, q.exceptions, "{what}: thread {i}: exception counts differ");
        alerts += c.stats.annotated;
        records += c.stats.records;
    }
    let busy = concurrent.iter().filter(|r| r.stats.annotated > 0).count();
    eprintln!(
        "threads ({what}): {THREADS} threads, {records} records, {alerts} alerts, {busy} threads with alerts, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(records, (THREADS * RECORDS_PER_STREAM) as u64);
    assert!(busy >= THREADS - 1, "only {busy} of {THREADS} streams raised alerts: the test proves little");
    assert!(alerts >= 10 * THREADS as u64, "only {alerts} alerts");
    concurrent.into_iter().map(|r| r.stats).collect()
}

#[test]
fn a_builtin_rule_shared_by_eight_threads() {
    let rule = Rule::builtin("apt_netcon_v5").unwrap();
    concurrent_equals_sequential(
        "Rule::builtin",
        &Config::default(),
        &rule,
        || Rule::builtin("apt_netcon_v5").unwrap(),
        0x7412_EAD5_0000_0001,
    );
}

#[test]
fn a_configured_rule_shared_by_eight_threads() {
    // Another rule, exceptions (compiled per detector against the shared
    // rule's fields), alert fields under apt_netcon.*.
    let config = Config::from_json(
        r#"{"rule": "apt_netcon_v11", "kibana_fields": false, "trusted_process_names": ["wget"],
            "trusted_destination_cidrs": ["8.0.0.0/8"]}"#,
    )
    .unwrap();
    let rule = Arc::new(config.load_rule().unwrap());
    let stats = concurrent_equals_sequential(
        "Config::load_rule",
        &config,
        &rule,
        || config.load_rule().unwrap(),
        0x7412_EAD5_0000_0002,
    );
    let excluded: u64 = stats.iter().map(|s| s.excluded).sum();
    assert!(excluded > 0, "the exceptions never applied");
}
