//! Bounded state under a flood ("Streaming choices", "Bounded state"): a
//! stream of shell execs by `apt`, each with a distinct `process.entity_id`,
//! spread over many hosts and all within a few seconds of event time (so
//! nothing expires: the caps alone bound the state), must
//!
//! * keep the detector's live heap bounded by what the caps allow (measured
//!   by a counting global allocator, per thread, from the moment the
//!   detector is built). The bound is `max_state_bytes` (with `max_lateness`,
//!   plus the held events' own cap), plus a fixed slack for the detector's
//!   own buffers;
//! * never hold more than `max_pending_sequences` partial sequences (nor
//!   `max_held_events` held events), and account for every shell exec:
//!   pending, evicted (counted by the cap that evicted it), expired or
//!   consumed;
//! * keep detecting: genuine sequences (a shell exec then, within 5 s, its
//!   child's connection to a public address) planted throughout the flood and
//!   after it, on flooding hosts and on quiet ones, all alert;
//! * when one host floods, hold it to `max_pending_per_host` without evicting
//!   the other hosts' waiting shells;
//! * do the same with `max_lateness` 2 s (alerts then come through
//!   `Detector::take_alert` and `Detector::finish`).
//!
//! Each test prints its figures (records/s, peak live heap, pending,
//! evictions by reason). The full size (10 million distinct entity ids over
//! 1 million hosts; 3 million with `max_lateness`; 1 million on one host)
//! takes minutes even optimised, so those tests are ignored by plain
//! `cargo test` and run by `tests/run-all.sh` in release
//! (`cargo test --release --test flood -- --ignored`). Smaller versions of
//! the same checks run with every `cargo test`.

use apt_netcon::engine::detector::HELD_OVERHEAD_BYTES;
use apt_netcon::{Config, Detector, Stats, Verdict};
use serde_json::Value;
use std::time::Instant;

#[path = "common/heap.rs"]
mod heap;
use heap::Meter;

#[global_allocator]
static GLOBAL: heap::Counting = heap::Counting;

// ---------------------------------------------------------------------------
// Records, written into a reused buffer.

/// 2026-03-14T09:30:00Z, in epoch milliseconds.
const BASE_MS: u64 = 1_773_480_600_000;
/// The flood's records spread over this much event time: less than the
/// rule's maxspan (5 s), so nothing expires and only the caps bound the state.
const SPAN_MS: u64 = 3_000;

/// `n` in decimal, zero-padded to `width` digits.
fn push_num(buf: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for _ in digits.len() - i..width {
        buf.push(b'0');
    }
    buf.extend_from_slice(&digits[i..]);
}

fn push_id(buf: &mut Vec<u8>, prefix: &str, n: u64) {
    buf.extend_from_slice(prefix.as_bytes());
    push_num(buf, n, 8);
}

/// Stage 1: `sh -c` exec'd by `apt`, on host `host`, entity `entity`.
fn exec(buf: &mut Vec<u8>, t: u64, host: (&str, u64), entity: (&str, u64)) {
    buf.clear();
    buf.extend_from_slice(b"{\"@timestamp\":");
    push_num(buf, t, 0);
    buf.extend_from_slice(b",\"event\":{\"category\":[\"process\"],\"type\":[\"start\"],\"action\":\"exec\"},\"host\":{\"id\":\"");
    push_id(buf, host.0, host.1);
    buf.extend_from_slice(b"\",\"os\":{\"type\":\"linux\"}},\"process\":{\"pid\":4242,\"name\":\"sh\",\"executable\":\"/usr/bin/sh\",\"args\":[\"sh\",\"-c\",\"/usr/lib/apt/apt-helper hook\"],\"entity_id\":\"");
    push_id(buf, entity.0, entity.1);
    buf.extend_from_slice(b"\",\"parent\":{\"pid\":4200,\"name\":\"apt\"}},\"user\":{\"name\":\"root\"}}");
}

/// Stage 2: a child of `parent` connecting to a public address.
fn connect(buf: &mut Vec<u8>, t: u64, host: (&str, u64), parent: (&str, u64)) {
    buf.clear();
    buf.extend_from_slice(b"{\"@timestamp\":");
    push_num(buf, t, 0);
    buf.extend_from_slice(b",\"event\":{\"category\":[\"network\"],\"type\":[\"start\"],\"action\":\"connection_attempted\"},\"host\":{\"id\":\"");
    push_id(buf, host.0, host.1);
    buf.extend_from_slice(b"\",\"os\":{\"type\":\"linux\"}},\"process\":{\"pid\":4243,\"name\":\"curl\",\"executable\":\"/usr/bin/curl\",\"parent\":{\"entity_id\":\"");
    push_id(buf, parent.0, parent.1);
    buf.extend_from_slice(b"\"}},\"destination\":{\"ip\":\"45.33.32.156\",\"port\":443}}");
}

const FLOOD_HOST: &str = "flood-host-";
const FLOOD_ID: &str = "flood-entity-";
const QUIET_HOST: &str = "quiet-host-";
const GENUINE_ID: &str = "genuine-shell-";

// ---------------------------------------------------------------------------
// A detector under test, its checks and its figures.

#[derive(Debug, Clone, Copy)]
struct Caps {
    pending: usize,
    per_host: usize,
    bytes: usize,
    lateness: bool,
    held: usize,
}

impl Caps {
    fn config(&self) -> Config {
        let text = format!(
            r#"{{"max_pending_sequences":{},"max_pending_per_host":{},"max_state_bytes":{},"max_lateness":"{}","max_held_events":{}}}"#,
            self.pending,
            self.per_host,
            self.bytes,
            if self.lateness { "2s" } else { "0s" },
            self.held
        );
        Config::from_json(&text).unwrap()
    }

    /// What the detector's live heap may reach: the estimated bytes the caps
    /// allow (an upper bound: the estimate counts every entry's slot, key
    /// digest, events and carried fields, and the blocks of the slab, heap
    /// and hash index at their capacity), plus [`SLACK_BYTES`]. The partial
    /// sequences are capped at `max_state_bytes`; with `max_lateness` the
    /// held events are capped on their own (`max_held_events`, and
    /// `max_state_bytes` again), each estimated as the record plus
    /// `HELD_OVERHEAD_BYTES`.
    fn heap_bound(&self, longest_record: usize) -> usize {
        // A held event: its record, HELD_OVERHEAD_BYTES, and its share of
        // the held events' queue (slot, heap and index blocks: well under
        // 256 bytes).
        let per_held = longest_record + HELD_OVERHEAD_BYTES + 256;
        let held = if self.lateness { (self.held * per_held).min(self.bytes) } else { 0 };
        self.bytes + held + SLACK_BYTES
    }
}

/// Fixed slack on top: the detector's own buffers (the standalone alerts are
/// collected after every record, so their queue stays empty).
const SLACK_BYTES: usize = 1 << 20;

/// Runs records through one detector: checks the invariants after every
/// record and collects the alerts, inline and standalone.
struct Run {
    d: Detector,
    caps: Caps,
    meter: Meter,
    buf: Vec<u8>,
    longest: usize,
    /// Genuine sequences planted, and which of them alerted.
    alerted: Vec<bool>,
    /// Alerts that were not for a planted sequence.
    stray: u64,
    records: u64,
    max_pending: u64,
    max_held: u64,
    started: Instant,
}

impl Run {
    fn new(caps: Caps) -> Run {
        let buf = Vec::with_capacity(1024);
        let d = Detector::new(&caps.config()).unwrap();
        let meter = Meter::start();
        Run {
            d,
            caps,
            meter,
            buf,
            longest: 0,
            alerted: Vec::new(),
            stray: 0,
            records: 0,
            max_pending: 0,
            max_held: 0,
            started: Instant::now(),
        }
    }

    /// Process the record in `self.buf`; true when it left annotated.
    fn feed(&mut self) -> bool {
        self.records += 1;
        self.longest = self.longest.max(self.buf.len());
        let annotated = match self.d.process(&self.buf) {
            Ok(Verdict::Annotated(b)) => {
                let v: Value = serde_json::from_slice(b).unwrap();
                note_alert(&v, &mut self.alerted, &mut self.stray);
                true
            }
            Ok(Verdict::Unchanged) => false,
            Err(e) => panic!("record {} not read: {e}: {}", self.records, String::from_utf8_lossy(&self.buf)),
        };
        self.collect();
        let s = self.d.stats();
        assert!(s.pending <= self.caps.pending as u64, "{} pending over max_pending_sequences {}", s.pending, self.caps.pending);
        assert!(s.held <= self.caps.held as u64, "{} held over max_held_events {}", s.held, self.caps.held);
        self.max_pending = self.max_pending.max(s.pending);
        self.max_held = self.max_held.max(s.held);
        annotated
    }

    fn collect(&mut self) {
        while let Some(a) = self.d.take_alert() {
            let v: Value = serde_json::from_slice(&a.bytes).unwrap();
            note_alert(&v, &mut self.alerted, &mut self.stray);
        }
    }

    /// Plant genuine sequence `k`'s shell, on `host`; returns `k`.
    fn plant_exec(&mut self, t: u64, host: (&'static str, u64)) -> usize {
        let k = self.alerted.len();
        self.alerted.push(false);
        exec(&mut self.buf, t, host, (GENUINE_ID, k as u64));
        assert!(!self.feed());
        k
    }

    /// Its child's connection. With `max_lateness` 0 it must alert there and then.
    fn plant_connect(&mut self, t: u64, host: (&'static str, u64), k: usize) {
        connect(&mut self.buf, t, host, (GENUINE_ID, k as u64));
        let annotated = self.feed();
        if !self.caps.lateness {
            assert!(annotated, "genuine sequence {k} on {}{} did not alert: {:?}", host.0, host.1, self.d.stats());
        }
    }

    /// End of stream: release what is held, collect, check the heap.
    fn finish(&mut self) -> Figures {
        let secs = self.started.elapsed().as_secs_f64();
        self.d.finish();
        self.collect();
        let bound = self.caps.heap_bound(self.longest);
        let f = Figures {
            records: self.records,
            secs,
            peak_live: self.meter.peak(),
            live: self.meter.live(),
            estimate: self.d.state_bytes(),
            bound,
            max_pending: self.max_pending,
            max_held: self.max_held,
            stats: self.d.stats(),
        };
        assert!(f.peak_live <= bound, "peak live heap {} over the bound {bound}: {f}", f.peak_live);
        assert_eq!(self.stray, 0, "alerts for no planted sequence: {f}");
        let missed: Vec<usize> = (0..self.alerted.len()).filter(|&k| !self.alerted[k]).collect();
        assert!(missed.is_empty(), "planted sequences that did not alert: {missed:?}: {f}");
        f
    }
}

/// Mark the planted sequence an alert is for (by its shell's entity id).
fn note_alert(v: &Value, alerted: &mut [bool], stray: &mut u64) {
    let shell = v["apt_netcon"]["shell"]["process"]["entity_id"].as_str().unwrap_or("");
    let k = shell.strip_prefix(GENUINE_ID).and_then(|n| n.parse::<usize>().ok());
    match k {
        Some(k) if k < alerted.len() && !alerted[k] => alerted[k] = true,
        _ => *stray += 1,
    }
}

struct Figures {
    records: u64,
    secs: f64,
    peak_live: usize,
    live: usize,
    estimate: usize,
    bound: usize,
    max_pending: u64,
    max_held: u64,
    stats: Stats,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.stats;
        let mib = |b: usize| b as f64 / (1 << 20) as f64;
        write!(
            f,
            "{} records in {:.1} s ({:.0} records/s); live heap peak {:.1} MiB (bound {:.1} MiB), at end {:.1} MiB \
             against an estimate of {:.1} MiB ({:.2}x); pending max {} at end {}; held max {}; evicted by cap {}, by host cap {}, \
             by bytes {}; expired {}; held_forced {}; alerts {} inline + {} standalone",
            self.records,
            self.secs,
            self.records as f64 / self.secs,
            mib(self.peak_live),
            mib(self.bound),
            mib(self.live),
            mib(self.estimate),
            self.live as f64 / self.estimate.max(1) as f64,
            self.max_pending,
            s.pending,
            self.max_held,
            s.evicted_by_cap,
            s.evicted_by_host_cap,
            s.evicted_by_bytes,
            s.expired_by_maxspan,
            s.held_forced,
            s.annotated,
            s.standalone_alerts,
        )
    }
}

/// Every stage-1 event is accounted for: still pending, evicted (by one of
/// the three caps), expired, or consumed by its connection.
fn check_accounting(s: &Stats, flood: u64, planted: u64) {
    assert_eq!(s.stage_matches[0], flood + planted, "{s:?}");
    assert_eq!(s.stage_matches[1], planted, "{s:?}");
    assert_eq!(s.sequences_completed, planted, "{s:?}");
    assert_eq!(s.annotated + s.standalone_alerts, planted, "{s:?}");
    assert_eq!((s.late, s.replaced, s.out_of_order, s.alerts_dropped, s.errors()), (0, 0, 0, 0, 0), "{s:?}");
    assert_eq!(
        s.stage_matches[0],
        s.pending + s.evicted_by_cap + s.evicted_by_host_cap + s.evicted_by_bytes + s.expired_by_maxspan + planted,
        "{s:?}"
    );
}

// ---------------------------------------------------------------------------
// The floods.

/// `records` flood execs, round-robin over `hosts` hosts, event time
/// advancing from BASE_MS by SPAN_MS in all; every `every` records a genuine
/// sequence is planted (alternately on a flooding host and a quiet one), its
/// connection `every / 100` records later; one more after the flood.
fn many_hosts(caps: Caps, records: u64, hosts: u64, every: u64) -> Figures {
    let mut r = Run::new(caps);
    let gap = (every / 100).max(1);
    let mut waiting: Option<(u64, (&'static str, u64), usize)> = None;
    let time = |i: u64| BASE_MS + i * SPAN_MS / records;
    for i in 0..records {
        let t = time(i);
        exec(&mut r.buf, t, (FLOOD_HOST, i % hosts), (FLOOD_ID, i));
        assert!(!r.feed());
        if i % every == every / 2 {
            let n = r.alerted.len() as u64;
            let host = if n % 2 == 0 { (FLOOD_HOST, (n * 7_919) % hosts) } else { (QUIET_HOST, n) };
            let k = r.plant_exec(t, host);
            waiting = Some((i + gap, host, k));
        }
        if let Some((due, host, k)) = waiting {
            if i == due {
                r.plant_connect(t, host, k);
                waiting = None;
            }
        }
    }
    let t = time(records);
    if let Some((_, host, k)) = waiting.take() {
        r.plant_connect(t, host, k);
    }
    for host in [(FLOOD_HOST, 1), (QUIET_HOST, 1_000_000_001)] {
        let k = r.plant_exec(t, host);
        r.plant_connect(t + 1_000, host, k);
    }
    let f = r.finish();
    eprintln!("flood over {hosts} hosts, max_lateness {}: {f}", if caps.lateness { "2s" } else { "0s" });
    let s = &f.stats;
    check_accounting(s, records, r.alerted.len() as u64);
    assert_eq!(s.expired_by_maxspan, 0, "the caps, not expiry, bound the state: {f}");
    assert!(s.evicted_by_cap + s.evicted_by_bytes > 0, "the flood reached a cap: {f}");
    if caps.lateness {
        assert!(f.max_held > 0 && s.held_forced > 0, "events were held, and the cap on them reached: {f}");
        assert_eq!(s.annotated, 0, "{f}");
    } else {
        assert_eq!(s.standalone_alerts, 0, "{f}");
    }
    f
}

/// `planted` shells on quiet hosts, then `records` distinct execs on one
/// host, then the planted shells' connections: all alert, and the flood
/// evicts only its own host's sequences.
fn one_host(caps: Caps, records: u64, planted: u64) -> Figures {
    let mut r = Run::new(caps);
    let time = |i: u64| BASE_MS + i * SPAN_MS / records;
    let ks: Vec<usize> = (0..planted).map(|h| r.plant_exec(BASE_MS, (QUIET_HOST, h))).collect();
    for i in 0..records {
        exec(&mut r.buf, time(i), (FLOOD_HOST, 0), (FLOOD_ID, i));
        assert!(!r.feed());
        assert!(r.d.stats().pending <= (caps.per_host as u64) + planted);
    }
    for (h, k) in ks.into_iter().enumerate() {
        r.plant_connect(time(records) + h as u64 % 1_000, (QUIET_HOST, h as u64), k);
    }
    let f = r.finish();
    eprintln!("flood on one host, max_lateness {}: {f}", if caps.lateness { "2s" } else { "0s" });
    let s = &f.stats;
    check_accounting(s, records, planted);
    assert_eq!((s.evicted_by_cap, s.evicted_by_bytes, s.expired_by_maxspan), (0, 0, 0), "{f}");
    assert_eq!(s.evicted_by_host_cap, records - caps.per_host as u64, "{f}");
    assert_eq!(s.pending, caps.per_host as u64, "{f}");
    f
}

/// The full size: `max_pending_sequences` 200,000, `max_state_bytes` 32 MiB
/// (the byte cap binds first: about 250 bytes per flooding shell).
const FULL: Caps = Caps { pending: 200_000, per_host: 1_000, bytes: 32 << 20, lateness: false, held: 100_000 };
/// The size plain `cargo test` runs (unoptimised).
const SMALL: Caps = Caps { pending: 20_000, per_host: 1_000, bytes: 4 << 20, lateness: false, held: 10_000 };

#[test]
fn flood_over_many_hosts_small() {
    many_hosts(SMALL, 40_000, 20_000, 2_000);
}

/// Here the caps reached are `max_pending_sequences` (above,
/// `max_state_bytes`) and `max_held_events`.
#[test]
fn flood_over_many_hosts_small_with_lateness() {
    many_hosts(Caps { pending: 5_000, held: 5_000, lateness: true, ..SMALL }, 40_000, 20_000, 2_000);
}

#[test]
fn flood_on_one_host_small() {
    one_host(SMALL, 10_000, 100);
}

#[test]
fn flood_on_one_host_small_with_lateness() {
    one_host(Caps { lateness: true, ..SMALL }, 10_000, 100);
}

// The full size, run in release by tests/run-all.sh. The names sort the
// longest first, so that the test threads finish together.

#[test]
#[ignore = "10 million records: slow unoptimised; tests/run-all.sh runs it in release"]
fn flood_10m_ids_over_1m_hosts() {
    many_hosts(FULL, 10_000_000, 1_000_000, 100_000);
}

/// 3 million rather than 10: holding and releasing every event costs more,
/// and the full set must stay within a few minutes on two cores.
#[test]
#[ignore = "3 million records: slow unoptimised; tests/run-all.sh runs it in release"]
fn flood_3m_ids_over_1m_hosts_with_lateness() {
    many_hosts(Caps { lateness: true, ..FULL }, 3_000_000, 1_000_000, 100_000);
}

#[test]
#[ignore = "1 million records: slow unoptimised; tests/run-all.sh runs it in release"]
fn flood_1m_ids_on_one_host() {
    one_host(FULL, 1_000_000, 1_000);
}

#[test]
#[ignore = "1 million records: slow unoptimised; tests/run-all.sh runs it in release"]
fn flood_1m_ids_on_one_host_with_lateness() {
    one_host(Caps { lateness: true, ..FULL }, 1_000_000, 1_000);
}
