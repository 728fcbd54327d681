//! Zero heap allocations per record that is not annotated — for the records
//! that decide nothing: a counting global allocator (per thread, so the
//! tests of this file may run in parallel) around each call, on the
//! benchmarks' realistic corpus (`benches/corpus/mod.rs`), after a warm-up
//! in which the detector's reusable buffers reach their size.
//!
//! What is asserted: a record that holds no escape sequence (`\`) and either
//! matches no stage of the rule, or matches only later stages and finds
//! nothing waiting (the stage-2 connection of an unrelated process),
//! allocates nothing, through the Rust API (nested and dotted JSON,
//! MessagePack bodies) and the C ABI; and that a shell exec stored as a new
//! partial sequence allocates at most 4 times on average (what the state
//! keeps of it, and the state's own occasional growth). What is not zero,
//! and why: a record whose decisive fields hold an escape is unescaped into
//! an owned string; a stored record is kept; an alert is built (see
//! BENCHMARKS.md, "Memory"). These are counted and printed. This is a test,
//! not a timing.

#[path = "../benches/corpus/mod.rs"]
mod corpus;

use apt_netcon::format::event::{FieldTable, FieldsBuf};
use apt_netcon::host::ffi::{aptnc_filter, aptnc_free, aptnc_init, aptnc_status};
use apt_netcon::engine::chunk::filter_chunk;
use apt_netcon::{Config, Detector, Verdict};
use corpus::{mp_value, Corpus, Spec};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ptr;

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: defers to the system allocator; only counts (a const-initialised
// thread-local Cell, which never allocates).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made on this thread by `f`.
fn allocations<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = ALLOCS.with(Cell::get);
    let r = f();
    (r, ALLOCS.with(Cell::get) - before)
}

const WARM_UP: usize = 2_000;

fn corpus(dotted: bool) -> Corpus {
    Corpus::generate(&Spec { dotted, ..Spec::new(12_000, 1_000) })
}

/// What one detector did with the records after the warm-up.
#[derive(Debug, Default)]
struct Tally {
    /// Records that match no stage and hold no escape: each asserted at 0.
    quiet: u64,
    /// Records that match no stage but hold an escape, and how many allocated.
    escaped: u64,
    escaped_allocating: u64,
    /// Records that match only later stages and find nothing waiting (the
    /// stage-2 connection of an unrelated process): each asserted at 0.
    nothing_waiting: u64,
    /// Other stage matches (allocate: state, stage events), and annotated
    /// records.
    stage_matches: u64,
    stage_allocations: u64,
    /// Of those, first-stage records stored as a new partial sequence.
    stored: u64,
    stored_allocations: u64,
    stored_max: u64,
    annotated: u64,
}

/// Run `records` through `process`, asserting zero allocations for every
/// quiet record after the warm-up.
fn run<'r>(
    det: &mut Detector,
    records: impl Iterator<Item = &'r [u8]>,
    process: fn(&mut Detector, &[u8]) -> bool,
) -> Tally {
    let mut t = Tally::default();
    for (i, rec) in records.enumerate() {
        let before = det.stats();
        let (annotated, n) = allocations(|| process(det, rec));
        if i < WARM_UP {
            continue;
        }
        let after = det.stats();
        let matched = after.stage_matches != before.stage_matches;
        assert_eq!(after.errors(), before.errors(), "record {i} could not be read");
        if annotated {
            t.annotated += 1;
        } else if matched && nothing_waiting(&before, &after) && !rec.contains(&b'\\') {
            assert_eq!(n, 0, "record {i} found nothing waiting yet allocated {n} times: {}", String::from_utf8_lossy(rec));
            t.nothing_waiting += 1;
        } else if matched {
            t.stage_matches += 1;
            t.stage_allocations += n;
            if after.stage_matches[0] > before.stage_matches[0] && after.pending > before.pending {
                t.stored += 1;
                t.stored_allocations += n;
                t.stored_max = t.stored_max.max(n);
            }
        } else if rec.contains(&b'\\') {
            t.escaped += 1;
            t.escaped_allocating += (n > 0) as u64;
        } else {
            assert_eq!(n, 0, "record {i} matches no stage yet allocated {n} times: {}", String::from_utf8_lossy(rec));
            t.quiet += 1;
        }
    }
    eprintln!("{t:?}");
    t
}

/// A record that matched only later stages, with a usable join key, and
/// left the state as it was: nothing was waiting for it.
fn nothing_waiting(before: &apt_netcon::Stats, after: &apt_netcon::Stats) -> bool {
    after.stage_matches[0] == before.stage_matches[0]
        && after.pending == before.pending
        && after.missing_key == before.missing_key
        && after.key_combinations_truncated == before.key_combinations_truncated
}

fn json(det: &mut Detector, rec: &[u8]) -> bool {
    matches!(det.process(rec), Ok(Verdict::Annotated(_)))
}

fn msgpack(det: &mut Detector, body: &[u8]) -> bool {
    matches!(det.process_msgpack(body), Ok(Verdict::Annotated(_)))
}

fn check(c: &Corpus, t: &Tally) {
    let after_warm_up = (c.len() - WARM_UP) as u64;
    // Nearly every record is quiet: the assertion covers the stream.
    assert!(t.quiet as f64 > 0.9 * after_warm_up as f64, "{t:?}");
    assert!(t.stage_matches > 0 && t.annotated > 0, "the corpus exercises the rule: {t:?}");
    assert!(t.nothing_waiting > 0, "the corpus has connections with nothing waiting: {t:?}");
    // A stored shell exec allocates what the state keeps of it (its carried
    // fields and its partial sequence) and the state's occasional growth;
    // the record is read and its stage event built in reused buffers.
    assert!(t.stored > 0 && t.stored_allocations <= 4 * t.stored, "stored first-stage records: {t:?}");
}

#[test]
fn json_records_that_match_nothing_allocate_nothing() {
    let c = corpus(false);
    let mut det = Detector::new(&Config::default()).unwrap();
    let t = run(&mut det, c.lines(), json);
    check(&c, &t);
}

#[test]
fn dotted_json_records_that_match_nothing_allocate_nothing() {
    let c = corpus(true);
    let mut det = Detector::new(&Config::default()).unwrap();
    let t = run(&mut det, c.lines(), json);
    check(&c, &t);
}

#[test]
fn msgpack_bodies_that_match_nothing_allocate_nothing() {
    let c = corpus(false);
    let bodies: Vec<Vec<u8>> = c
        .lines()
        .map(|l| {
            let mut out = Vec::new();
            mp_value(&mut out, &serde_json::from_slice(l).unwrap());
            out
        })
        .collect();
    let mut det = Detector::new(&Config::default()).unwrap();
    let t = run(&mut det, bodies.iter().map(Vec::as_slice), msgpack);
    check(&c, &t);
}

#[test]
fn c_abi_records_that_match_nothing_allocate_nothing() {
    let c = corpus(false);
    let mut det = ptr::null_mut();
    let mut err = ptr::null_mut();
    // SAFETY: valid out-pointers; a NULL config of length 0 is the default.
    assert_eq!(unsafe { aptnc_init(ptr::null(), 0, ptr::null(), &mut det, &mut err) }, aptnc_status::Ok);
    // The C ABI has no per-call stage counters: a Rust detector fed the same
    // records in step says which records are quiet.
    let mut twin = Detector::new(&Config::default()).unwrap();
    let (mut out, mut out_len) = (ptr::null(), 0usize);
    let mut quiet = 0;
    for (i, rec) in c.lines().enumerate() {
        let before = twin.stats();
        let twin_annotated = json(&mut twin, rec);
        let after = twin.stats();
        let matched = after.stage_matches != before.stage_matches;
        let decides_nothing = !matched || (!twin_annotated && nothing_waiting(&before, &after));
        // SAFETY: `det` is live; the record and out-parameters are valid.
        let (st, n) = allocations(|| unsafe { aptnc_filter(det, rec.as_ptr(), rec.len(), &mut out, &mut out_len) });
        assert_eq!(st == aptnc_status::Annotated, twin_annotated, "record {i}");
        if i >= WARM_UP && decides_nothing && !rec.contains(&b'\\') {
            assert_eq!(st, aptnc_status::Unchanged);
            assert_eq!(n, 0, "record {i} allocated {n} times through the C ABI");
            quiet += 1;
        }
    }
    // SAFETY: freed once.
    unsafe { aptnc_free(det) };
    assert!(quiet as f64 > 0.9 * (c.len() - WARM_UP) as f64, "{quiet}");
}

/// A Fluent Bit chunk in which nothing is annotated costs no allocation per
/// record: only the chunk walk's list of records (`chunk::filter_chunk`),
/// which grows by doubling, allocates — at most 1 + log2(records) times.
#[test]
fn msgpack_chunks_allocate_nothing_per_record() {
    let c = corpus(false);
    // Chunks of the records that match no stage (a property of the record).
    let mut classify = Detector::new(&Config::default()).unwrap();
    let mut chunks: Vec<Vec<u8>> = vec![Vec::new()];
    let mut in_chunk = 0;
    for rec in c.lines() {
        let before = classify.stats();
        let annotated = json(&mut classify, rec);
        if annotated || classify.stats().stage_matches != before.stage_matches {
            continue;
        }
        let chunk = chunks.last_mut().unwrap();
        chunk.extend_from_slice(b"\x92\x92\xd7\x00\x69\xb5\x2a\x58\x00\x00\x00\x00\x80");
        mp_value(chunk, &serde_json::from_slice(rec).unwrap());
        in_chunk += 1;
        if in_chunk == 64 {
            chunks.push(Vec::new());
            in_chunk = 0;
        }
    }
    chunks.pop();
    let mut det = Detector::new(&Config::default()).unwrap();
    let mut out = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let (outcome, n) = allocations(|| filter_chunk(&mut det, chunk, &mut out).unwrap());
        assert_eq!((outcome.records, outcome.annotated, outcome.errors), (64, 0, 0));
        if i * 64 >= WARM_UP {
            assert!(n <= 1 + 6, "chunk {i}: {n} allocations for 64 records");
        }
    }
    assert_eq!(det.stats().stage_matches, [0; 4]);
    assert!(chunks.len() * 64 > 10_000, "{} chunks", chunks.len());
}

/// The reused `Fields` allocation really is reused (the in-place collect
/// that changes its lifetime does not allocate).
#[test]
fn fields_buffer_is_reused() {
    let mut t = FieldTable::new();
    for p in ["event.category", "process.name", "process.args", "host.os.type"] {
        t.intern(p);
    }
    let c = corpus(false);
    let mut buf = FieldsBuf::default();
    for (i, rec) in c.lines().enumerate().take(5_000) {
        let (_, n) = allocations(|| {
            let mut f = buf.take();
            let _ = t.scan(rec, &mut f);
            buf.put_back(f);
        });
        if i >= 100 {
            assert_eq!(n, 0, "record {i}");
        }
    }
}
