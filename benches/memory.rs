//! `cargo bench --bench memory`: what the detector holds, measured with a
//! counting global allocator (no timing).
//!
//! 1. Bytes per pending sequence at 1,000,000 pending sequences: one
//!    detector (cap raised to 2,000,000) fed 1,000,000 distinct first-stage
//!    events (a shell started by `apt` with `-c`) within one maxspan, so none
//!    expires; the live heap after minus before, divided by the number
//!    pending. Twice: with realistic shell events (the fields an alert carries
//!    are all there: command line, arguments, parent …) and with minimal ones
//!    (only what the rule needs).
//! 2. Heap allocations per record on the realistic corpus, by what the record
//!    is to the rule (`tests/alloc.rs` asserts the zero).
//!
//! Environment: `APT_NETCON_MEM_PENDING` (default 1000000).

#[path = "corpus/mod.rs"]
mod corpus;

use apt_netcon::{Config, Detector, Verdict};
use corpus::{Corpus, Spec};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Relaxed);
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, Relaxed);
        LIVE.fetch_sub(l.size(), Relaxed);
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A realistic first-stage event (as Elastic Defend writes it).
fn shell_realistic(out: &mut Vec<u8>, i: u64, t_us: u64) {
    out.clear();
    let host = i % 1000;
    let ts = corpus::timestamp(t_us);
    let pid = 10_000 + i % 4_000_000;
    let text = format!(
        concat!(
            r#"{{"agent":{{"id":"a1f0c2d3-{host:04}-4e5f-9a7b-2c4d6e8f0a1b","type":"endpoint","version":"8.15.0"}},"#,
            r#""@timestamp":"{ts}","data_stream":{{"dataset":"endpoint.events.process","namespace":"default","type":"logs"}},"#,
            r#""ecs":{{"version":"8.11.0"}},"event":{{"agent_id_status":"verified","sequence":{i},"created":"{ts}","kind":"event","#,
            r#""module":"endpoint","action":"exec","id":"NxQ{i:013}","category":["process"],"type":["start"],"dataset":"endpoint.events.process"}},"#,
            r#""host":{{"hostname":"web-{host:05}","os":{{"kernel":"6.1.0-18-amd64","name":"Debian GNU/Linux","family":"debian","type":"linux","version":"12","platform":"debian"}},"#,
            r#""ip":["10.20.{h1}.{h2}"],"name":"web-{host:05}","id":"7d3f0c2a9b1e4d6f8a2c5e7b9d1f{host:04}","architecture":"x86_64"}},"#,
            r#""process":{{"parent":{{"name":"apt","pid":{ppid},"entity_id":"YTFmMGMyZDMtMjIwMS0xNzczNDgwNjAwMDAw{i:010}","command_line":"/usr/bin/apt update","executable":"/usr/bin/apt"}},"#,
            r#""pid":{pid},"entity_id":"YTFmMGMyZDMtMjIwOS0xNzczNDgwNjAwNDAw{i:010}","executable":"/usr/bin/sh","#,
            r#""args":["sh","-c","test -x /usr/lib/needrestart/apt-pinvoke && /usr/lib/needrestart/apt-pinvoke -m u || true"],"#,
            r#""name":"sh","args_count":3,"command_line":"sh -c test -x /usr/lib/needrestart/apt-pinvoke && /usr/lib/needrestart/apt-pinvoke -m u || true","#,
            r#""working_directory":"/"}},"user":{{"name":"root","id":"0"}},"message":"Endpoint process event"}}"#
        ),
        host = host,
        ts = ts,
        i = i,
        h1 = host / 256,
        h2 = host % 256,
        ppid = pid - 1,
        pid = pid,
    );
    out.extend_from_slice(text.as_bytes());
}

/// A minimal first-stage event: only the fields the rule reads.
fn shell_minimal(out: &mut Vec<u8>, i: u64, t_us: u64) {
    out.clear();
    let ts = corpus::timestamp(t_us);
    let text = format!(
        r#"{{"@timestamp":"{ts}","event":{{"category":"process","type":"start","action":"exec"}},"host":{{"id":"h{h}","os":{{"type":"linux"}}}},"process":{{"name":"sh","args":["sh","-c"],"entity_id":"e{i}","parent":{{"name":"apt"}}}}}}"#,
        h = i % 1000,
    );
    out.extend_from_slice(text.as_bytes());
}

fn pending_bytes(n: u64, make: fn(&mut Vec<u8>, u64, u64)) -> (f64, u64, usize) {
    // Caps raised so that nothing is evicted: the count, the byte estimate and the per-host cap.
    let cfg = Config { max_pending_sequences: 2 * n as usize, max_state_bytes: usize::MAX, max_pending_per_host: 2 * n as usize, ..Config::default() };
    let mut det = Detector::new(&cfg).unwrap();
    let mut rec = Vec::with_capacity(4096);
    // Warm up the detector's own buffers on an event that pends nothing.
    det.process(br#"{"message":"warm-up"}"#).unwrap();
    let before = LIVE.load(Relaxed);
    let t0 = 1_773_480_600_000_000u64;
    let mut rec_len = 0;
    for i in 0..n {
        // 1,000,000 events within 4 s of event time: nothing expires.
        make(&mut rec, i, t0 + i * 4);
        rec_len = rec.len();
        match det.process(&rec) {
            Ok(Verdict::Unchanged) => {}
            other => panic!("record {i}: {other:?}"),
        }
    }
    let after = LIVE.load(Relaxed);
    let s = det.stats();
    assert_eq!(s.pending, n, "every event pending: {s:?}");
    let per = (after - before) as f64 / n as f64;
    drop(det);
    (per, s.pending, rec_len)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let n: u64 = std::env::var("APT_NETCON_MEM_PENDING").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    println!("apt-netcon memory benchmark (counting allocator)");
    println!();
    println!("Pending sequences ({n} first-stage events within one maxspan, cap 2×):");
    println!("| first-stage events | record bytes | pending | heap bytes per pending sequence | target |");
    println!("|---|---:|---:|---:|---:|");
    for (name, make) in [("realistic (Defend shell exec)", shell_realistic as fn(&mut Vec<u8>, u64, u64)), ("minimal (only the rule's fields)", shell_minimal)] {
        let (per, pending, len) = pending_bytes(n, make);
        println!("| {name} | {len} | {pending} | {per:.0} | ≤ 256 |");
    }

    // Allocations per record, by what the record is to the rule.
    println!();
    let corpus = Corpus::generate(&Spec::new(50_000, 1000));
    let mut det = Detector::new(&Config::default()).unwrap();
    // Warm up on the first records, so buffers have grown.
    for line in corpus.lines().take(2000) {
        let _ = det.process(line);
    }
    #[derive(Default)]
    struct Row {
        records: u64,
        allocs: u64,
        with_allocs: u64,
    }
    let mut rows: [Row; 4] = Default::default();
    let names = ["matches no stage", "stage 1 match (pends)", "stage 2 match, completes nothing", "annotated (alert)"];
    for line in corpus.lines().skip(2000) {
        let s0 = det.stats();
        let a0 = ALLOCS.load(Relaxed);
        let annotated = matches!(det.process(line), Ok(Verdict::Annotated(_)));
        let a = ALLOCS.load(Relaxed) - a0;
        let s1 = det.stats();
        let k = if annotated {
            3
        } else if s1.stage_matches[0] > s0.stage_matches[0] {
            1
        } else if s1.stage_matches[1] > s0.stage_matches[1] {
            2
        } else {
            0
        };
        rows[k].records += 1;
        rows[k].allocs += a;
        rows[k].with_allocs += (a > 0) as u64;
    }
    println!("Heap allocations per record (realistic corpus, 48,000 records after 2,000 of warm-up):");
    println!("| record | records | allocations per record | records that allocate |");
    println!("|---|---:|---:|---:|");
    for (r, name) in rows.iter().zip(names) {
        println!(
            "| {name} | {} | {:.1} | {} |",
            r.records,
            r.allocs as f64 / r.records.max(1) as f64,
            r.with_allocs
        );
    }
}
