//! `cargo bench --bench throughput`: events/s and MB/s of every way records
//! reach the detector, against three floors measured in the same run, on a
//! generated corpus of realistic Elastic Defend Linux traffic
//! (`benches/corpus/mod.rs`); then throughput against the fleet size.
//! Writes `BENCHMARKS.svg` (next to `BENCHMARKS.md`), and
//! `target/bench/{corpus.ndjson,results.json}` for `benches/peers/`.
//!
//! Every row is timed `RUNS` times, round-robin (run 1 of every row, then
//! run 2, …) so that a slow phase of a noisy machine hits every row alike;
//! the median is reported. Rates are per CPU second (the thread's CPU time,
//! and the CLI's user + system time), so that waiting for a core on a
//! shared machine does not count; wall-clock medians are printed beside.
//!
//! Environment: `APT_NETCON_BENCH_EVENTS` (default 200000),
//! `APT_NETCON_BENCH_RUNS` (default 11, at least 5),
//! `APT_NETCON_BENCH_HOSTS` (default 1000, the main corpus's fleet).
//!
//! Other modes (no timing):
//! `cargo bench --bench throughput -- --write-corpus PATH|- [--events N | --bytes N] [--hosts N] [--dotted]`
//! writes a corpus as NDJSON (used by `benches/rss.sh` and `benches/peers/`);
//! `… -- --chart` draws `BENCHMARKS.svg` again from the last run's results
//! (and the Python peer's, once `benches/peers/eql_peer.py` has run);
//! `… -- --profile api|c|msgpack|scan|extract|serde|pack` runs one row in a
//! loop for a profiler and prints its events per CPU second (`pack`: the
//! rule pack of `APT_NETCON_PACK` through the Rust API);
//! `… -- --pack DIR [--events N]` times a rule pack by pack size
//! (see [`pack_mode`]).

#[path = "corpus/mod.rs"]
mod corpus;

use apt_netcon::host::ffi::{aptnc_filter, aptnc_filter_msgpack, aptnc_free, aptnc_init, aptnc_status};
use apt_netcon::eql::compile::Pred;
use apt_netcon::format::event::{FieldTable, FieldsBuf};
use apt_netcon::{Config, Detector, Verdict};
use corpus::{to_msgpack_chunks, Corpus, Generator, Spec};
use serde::de::IgnoredAny;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::ptr;
use std::time::Instant;

const CLI: &str = env!("CARGO_BIN_EXE_apt-netcon");

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(default)
}

/// What one timed run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Outcome {
    events: u64,
    annotated: u64,
}

struct Row {
    name: &'static str,
    floor: bool,
    /// Bytes one run reads.
    bytes: u64,
    run: Box<dyn FnMut() -> Outcome>,
    /// CPU seconds per run.
    secs: Vec<f64>,
    /// Wall-clock seconds per run.
    wall: Vec<f64>,
    outcome: Outcome,
}

impl Row {
    fn median(&self) -> f64 {
        median(&self.secs)
    }
    fn events_per_s(&self) -> f64 {
        self.outcome.events as f64 / self.median()
    }
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.median()
    }
    /// Spread of the runs around the median, in percent.
    fn spread(&self) -> f64 {
        let lo = self.secs.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = self.secs.iter().cloned().fold(0.0, f64::max);
        100.0 * (hi - lo) / self.median()
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// CPU seconds used so far by this thread, plus those of its waited-for
/// children (the CLI row). On a shared machine CPU time, unlike wall time,
/// does not count the time the thread waits for a core.
fn cpu_now() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    // SAFETY: all-zero is a valid rusage; then a valid out-pointer.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9 + tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn time_rows(rows: &mut [Row], runs: usize) {
    for run in 0..runs {
        for row in rows.iter_mut() {
            let t = Instant::now();
            let c = cpu_now();
            let o = (row.run)();
            let cpu = cpu_now() - c;
            let dt = t.elapsed().as_secs_f64();
            if run > 0 {
                assert_eq!(o, row.outcome, "{}: runs disagree", row.name);
            }
            row.outcome = o;
            row.secs.push(cpu);
            row.wall.push(dt);
        }
        eprint!(".");
    }
    eprintln!();
}

// ---------------------------------------------------------------------------
// The rows

fn rust_api(corpus: &'static Corpus) -> impl FnMut() -> Outcome {
    move || {
        let mut det = Detector::new(&Config::default()).unwrap();
        let mut o = Outcome::default();
        for line in corpus.lines() {
            o.events += 1;
            if let Ok(Verdict::Annotated(_)) = det.process(line) {
                o.annotated += 1;
            }
        }
        o
    }
}

/// `--profile pack`: the rule pack of `APT_NETCON_PACK` (default Elastic's
/// Linux rules in `../shared/rules/elastic-linux-eql`) through the Rust API,
/// built once before the first pass (so that passes count only records:
/// `valgrind --tool=cachegrind` with 1 and 2 passes gives the instructions
/// of one pass by difference).
fn pack_api(corpus: &'static Corpus) -> impl FnMut() -> Outcome {
    let dir = std::env::var("APT_NETCON_PACK").unwrap_or_else(|_| "../shared/rules/elastic-linux-eql".into());
    let (rules, _) = apt_netcon::engine::pack::load_dir(Path::new(&dir)).expect("a rules directory (APT_NETCON_PACK)");
    let mut pack = apt_netcon::engine::pack::PackDetector::new(rules, &Config::default());
    move || {
        let mut o = Outcome::default();
        for line in corpus.lines() {
            o.events += 1;
            o.annotated += pack.process(line, false).unwrap_or(0) as u64;
            while pack.take_alert().is_some() {}
        }
        o
    }
}

fn c_abi_json(corpus: &'static Corpus) -> impl FnMut() -> Outcome {
    move || {
        let mut det = ptr::null_mut();
        let mut err = ptr::null_mut();
        // SAFETY: valid pointers; NULL config of length 0 is the default config.
        let st = unsafe { aptnc_init(ptr::null(), 0, ptr::null(), &mut det, &mut err) };
        assert_eq!(st, aptnc_status::Ok);
        let mut o = Outcome::default();
        let (mut out, mut out_len) = (ptr::null(), 0usize);
        for line in corpus.lines() {
            o.events += 1;
            // SAFETY: `det` is live, the record and out-parameters are valid.
            let st = unsafe { aptnc_filter(det, line.as_ptr(), line.len(), &mut out, &mut out_len) };
            if st == aptnc_status::Annotated {
                o.annotated += 1;
            }
        }
        // SAFETY: freed once.
        unsafe { aptnc_free(det) };
        o
    }
}

fn c_abi_msgpack(chunks: &'static [Vec<u8>], records: u64) -> impl FnMut() -> Outcome {
    move || {
        let mut det = ptr::null_mut();
        let mut err = ptr::null_mut();
        // SAFETY: as above.
        let st = unsafe { aptnc_init(ptr::null(), 0, ptr::null(), &mut det, &mut err) };
        assert_eq!(st, aptnc_status::Ok);
        let mut o = Outcome { events: records, annotated: 0 };
        let (mut out, mut out_len) = (ptr::null(), 0usize);
        for c in chunks {
            // SAFETY: `det` is live, the chunk and out-parameters are valid.
            let st = unsafe { aptnc_filter_msgpack(det, c.as_ptr(), c.len(), &mut out, &mut out_len) };
            if st == aptnc_status::Annotated {
                // the annotated records of the new chunk: one `apt_netcon` root each
                // SAFETY: valid until the next call on `det`.
                let new = unsafe { std::slice::from_raw_parts(out, out_len) };
                o.annotated += count(new, b"\xaaapt_netcon") as u64;
            }
        }
        // SAFETY: freed once.
        unsafe { aptnc_free(det) };
        o
    }
}

/// The fields the rule's stage predicates read (as the detector's fast
/// path does), for the diagnostic rows.
fn decide_table() -> (FieldTable, FieldTable) {
    fn slots(p: &Pred, out: &mut Vec<u16>) {
        match p {
            Pred::Const(_) => {}
            Pred::And(v) | Pred::Or(v) => v.iter().for_each(|x| slots(x, out)),
            Pred::Not(x) => slots(x, out),
            Pred::IsNull(s) | Pred::Any(s, _) => out.push(*s),
        }
    }
    let det = Detector::new(&Config::default()).unwrap();
    let q = det.rule().compiled();
    let mut keep = vec![q.category_slot];
    for st in &q.stages {
        slots(&st.predicate, &mut keep);
    }
    (det.field_table().subset(&keep), det.field_table().clone())
}

/// Diagnostic: the fast scanner alone, reading the decisive fields.
fn diag_scan(corpus: &'static Corpus) -> impl FnMut() -> Outcome {
    let (decide, _) = decide_table();
    let mut buf = FieldsBuf::default();
    move || {
        let mut o = Outcome::default();
        for line in corpus.lines() {
            let mut f = buf.take();
            if decide.scan(line, &mut f).is_ok() {
                o.events += 1;
            }
            buf.put_back(f);
        }
        o
    }
}

/// Diagnostic: the validating reader alone, reading every field the detector
/// reads (what a stage match costs before the rule runs).
fn diag_extract(corpus: &'static Corpus) -> impl FnMut() -> Outcome {
    let (_, full) = decide_table();
    let mut buf = FieldsBuf::default();
    move || {
        let mut o = Outcome::default();
        for line in corpus.lines() {
            let mut f = buf.take();
            if full.extract(line, &mut f).is_ok() {
                o.events += 1;
            }
            buf.put_back(f);
        }
        o
    }
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    memchr::memmem::find_iter(hay, needle).count()
}

/// The CLI, `input` → `output` (a file), with `args`. The previous run's
/// output is removed first by another thread (freeing its page cache is
/// not the CLI's work, and would count in this thread's CPU time if the
/// file were truncated here).
fn cli(input: &'static Path, output: &'static Path, events: u64, args: &'static [&'static str]) -> impl FnMut() -> Outcome {
    move || {
        let p = output.to_path_buf();
        std::thread::spawn(move || {
            let _ = std::fs::remove_file(p);
        })
        .join()
        .unwrap();
        let out = std::fs::File::create(output).unwrap();
        let st = Command::new(CLI).arg("--quiet").args(args).arg(input).stdin(Stdio::null()).stdout(out).status().unwrap();
        assert!(st.success());
        Outcome { events, annotated: 0 }
    }
}

/// The median CPU time of copying `input` into `output` with
/// `std::fs::copy` (an in-kernel copy on Linux), over `runs` copies; each
/// previous copy removed by another thread first, as [`cli`] does.
fn kernel_copy_cpu(input: &Path, output: &Path, runs: usize) -> f64 {
    let secs: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let o = output.to_path_buf();
            std::thread::spawn(move || {
                let _ = std::fs::remove_file(o);
            })
            .join()
            .unwrap();
            let c = cpu_now();
            std::fs::copy(input, output).unwrap();
            cpu_now() - c
        })
        .collect();
    let _ = std::fs::remove_file(output);
    median(&secs)
}

/// The CLI (with `args`) in a pipeline: the corpus written into its
/// standard input and its standard output read (and counted) by two other
/// threads, so that only the CLI's own CPU time counts. Every record comes
/// out, and with a pack (`args` not empty) its alert records after it.
fn cli_pipe(corpus: &'static Corpus, events: u64, args: &'static [String]) -> impl FnMut() -> Outcome {
    move || {
        let mut child = Command::new(CLI).arg("--quiet").args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&corpus.data).unwrap());
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            let (mut bytes, mut lines) = (0u64, 0u64);
            loop {
                match std::io::Read::read(&mut stdout, &mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        bytes += n as u64;
                        lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            (bytes, lines)
        });
        writer.join().unwrap();
        let (bytes, lines) = reader.join().unwrap();
        assert!(child.wait().unwrap().success());
        assert!(bytes >= corpus.data.len() as u64);
        assert!(lines == events || (!args.is_empty() && lines > events), "{lines} lines out for {events} records");
        Outcome { events, annotated: 0 }
    }
}

fn floor_memchr(corpus: &'static Corpus) -> impl FnMut() -> Outcome {
    move || {
        let mut o = Outcome::default();
        let mut start = 0;
        let mut sum = 0usize;
        for nl in memchr::memchr_iter(b'\n', &corpus.data) {
            let line = &corpus.data[start..nl];
            sum = sum.wrapping_add(line.len());
            start = nl + 1;
            o.events += 1;
        }
        std::hint::black_box(sum);
        o
    }
}

fn floor_serde_validate(corpus: &'static Corpus) -> impl FnMut() -> Outcome {
    move || {
        let mut o = Outcome::default();
        for line in corpus.lines() {
            if serde_json::from_slice::<IgnoredAny>(line).is_ok() {
                o.events += 1;
            }
        }
        o
    }
}

fn floor_naive(corpus: &'static Corpus) -> impl FnMut() -> Outcome {
    move || {
        let mut o = Outcome::default();
        let mut out = Vec::with_capacity(1 << 16);
        for line in corpus.lines() {
            out.clear();
            let v: Value = serde_json::from_slice(line).unwrap();
            serde_json::to_writer(&mut out, &v).unwrap();
            std::hint::black_box(&out);
            o.events += 1;
        }
        o
    }
}

// ---------------------------------------------------------------------------
// Reporting

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let mhz = cpuinfo.lines().find(|l| l.starts_with("cpu MHz")).and_then(|l| l.split(':').nth(1)).unwrap_or("?").trim().to_string();
    let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let rustc = Command::new("rustc").arg("--version").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    json!({"nproc": nproc, "cpu": model, "cpu_mhz": mhz, "mem_gib": (mem_kb as f64 / 1048576.0 * 10.0).round() / 10.0, "rustc": rustc})
}

fn fmt_rate(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else {
        format!("{:.0} k", x / 1e3)
    }
}

fn svg_text(x: f64, y: f64, anchor: &str, size: u32, weight: &str, text: &str) -> String {
    let text = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    format!(r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{anchor}" font-size="{size}" font-weight="{weight}">{text}</text>"#)
}

/// Two panels: each row against the floors (log scale), and the Rust API
/// against the fleet size (linear); a third, the Rust API against the
/// size of a rule pack (linear), when a pack run (`-- --pack DIR`) left
/// its figures (`pack`: rules, events/s).
fn chart(rows: &[(String, f64, &str)], hosts: &[(usize, f64)], pack: &[(usize, f64)], title: &str) -> String {
    let w = 960.0;
    let left = 330.0;
    let right = 90.0;
    let bar_h = 22.0;
    let gap = 8.0;
    let top1 = 90.0;
    let h1 = rows.len() as f64 * (bar_h + gap);
    let top2 = top1 + h1 + 110.0;
    let h2 = 190.0;
    let top3 = top2 + h2 + 110.0;
    let height = if pack.is_empty() { top2 + h2 + 70.0 } else { top3 + h2 + 70.0 };
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" viewBox="0 0 {w} {height}" font-family="Helvetica, Arial, sans-serif">"#
    );
    s.push_str(&format!(r#"<rect width="{w}" height="{height}" fill="white"/>"#));
    s.push_str(&svg_text(w / 2.0, 26.0, "middle", 17, "bold", "apt-netcon throughput, one core (events per CPU second, log scale; median of runs)"));
    s.push_str(&svg_text(w / 2.0, 46.0, "middle", 12, "normal", title));
    // legend
    let mut lx = left;
    for (color, label) in [("#95a5a6", "floors"), ("#2e86c1", "apt-netcon"), ("#aed6f1", "diagnostics"), ("#e67e22", "peer")] {
        s.push_str(&format!(r#"<rect x="{lx:.1}" y="{:.1}" width="10" height="10" fill="{color}"/>"#, top1 - 30.0));
        s.push_str(&svg_text(lx + 14.0, top1 - 21.0, "start", 11, "normal", label));
        lx += 100.0;
    }
    // panel 1: log10 from 1e4 to 1e8
    let (lo, hi) = (4.0f64, 8.0f64);
    let plot_w = w - left - right;
    let x_of = |v: f64| left + (v.max(1.0).log10() - lo).clamp(0.0, hi - lo) / (hi - lo) * plot_w;
    for e in 4..=8 {
        let x = x_of(10f64.powi(e));
        s.push_str(&format!(r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/>"##, top1 - 6.0, top1 + h1));
        let label = ["10 k", "100 k", "1 M", "10 M", "100 M"][(e - 4) as usize];
        s.push_str(&svg_text(x, top1 + h1 + 16.0, "middle", 11, "normal", label));
    }
    let xt = x_of(1e6);
    s.push_str(&format!(
        r##"<line x1="{xt:.1}" y1="{:.1}" x2="{xt:.1}" y2="{:.1}" stroke="#c0392b" stroke-dasharray="5,4" stroke-width="1.5"/>"##,
        top1 - 6.0,
        top1 + h1 + 4.0
    ));
    s.push_str(&svg_text(xt, top1 + h1 + 32.0, "middle", 11, "normal", "(dashed: the target, 1 M events/s)"));
    for (i, (name, v, kind)) in rows.iter().enumerate() {
        let y = top1 + i as f64 * (bar_h + gap);
        let color = match *kind {
            "floor" => "#95a5a6",
            "peer" => "#e67e22",
            "diag" => "#aed6f1",
            _ => "#2e86c1",
        };
        s.push_str(&svg_text(left - 8.0, y + bar_h * 0.7, "end", 12, "normal", name));
        let x1 = x_of(*v);
        s.push_str(&format!(r#"<rect x="{left}" y="{y:.1}" width="{:.1}" height="{bar_h}" fill="{color}"/>"#, (x1 - left).max(1.0)));
        s.push_str(&svg_text(x1 + 5.0, y + bar_h * 0.7, "start", 11, "normal", &fmt_rate(*v)));
    }
    // panel 2: Rust API vs hosts
    s.push_str(&svg_text(w / 2.0, top2 - 40.0, "middle", 15, "bold", "Rust API throughput against fleet size (events/s, linear)"));
    let vmax = hosts.iter().map(|h| h.1).fold(0.0, f64::max).max(1e6) * 1.15;
    let base = hosts.first().map(|h| h.1).unwrap_or(0.0);
    let y_of = |v: f64| top2 + h2 - v / vmax * h2;
    // ±20 % band around the first point
    if base > 0.0 {
        let (ya, yb) = (y_of(base * 1.2), y_of(base * 0.8));
        s.push_str(&format!(r##"<rect x="{left}" y="{ya:.1}" width="{plot_w:.1}" height="{:.1}" fill="#d5f5e3"/>"##, yb - ya));
        s.push_str(&svg_text(left + plot_w + 4.0, ya + 12.0, "start", 10, "normal", "±20 % of"));
        s.push_str(&svg_text(left + plot_w + 4.0, ya + 24.0, "start", 10, "normal", "100 hosts"));
    }
    let labels: Vec<(String, f64)> = hosts.iter().map(|(n, v)| (format!("{n} hosts"), *v)).collect();
    columns(&mut s, (left, top2, plot_w, h2), vmax, &labels, (1e6, "1 M events/s"));
    // panel 3: Rust API vs the number of rules in a pack
    if !pack.is_empty() {
        s.push_str(&svg_text(w / 2.0, top3 - 40.0, "middle", 15, "bold", "Rust API throughput against the number of rules in the pack (events/s, linear)"));
        let vmax = pack.iter().map(|p| p.1).fold(0.0, f64::max).max(5e5) * 1.15;
        let labels: Vec<(String, f64)> =
            pack.iter().map(|(n, v)| (format!("{n} rule{}", if *n == 1 { "" } else { "s" }), *v)).collect();
        columns(&mut s, (left, top3, plot_w, h2), vmax, &labels, (5e5, "500 k events/s"));
    }
    s.push_str("</svg>\n");
    s
}

/// A panel of columns, one per `(label, events/s)`, in the box
/// `(left, top, width, height)` scaled to `vmax`, with a dashed target line.
fn columns(s: &mut String, (left, top, plot_w, h): (f64, f64, f64, f64), vmax: f64, items: &[(String, f64)], (target, name): (f64, &str)) {
    let y_of = |v: f64| top + h - v / vmax * h;
    let slot = plot_w / items.len().max(1) as f64;
    let yt = y_of(target);
    s.push_str(&format!(r##"<line x1="{left}" y1="{yt:.1}" x2="{:.1}" y2="{yt:.1}" stroke="#c0392b" stroke-dasharray="5,4"/>"##, left + plot_w));
    s.push_str(&format!(r##"<line x1="{left}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#888"/>"##, top + h, left + plot_w, top + h));
    for (i, (label, v)) in items.iter().enumerate() {
        let x = left + i as f64 * slot + slot * 0.25;
        let bw = slot * 0.5;
        let y = y_of(*v);
        s.push_str(&format!(r##"<rect x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{:.1}" fill="#2e86c1"/>"##, top + h - y));
        s.push_str(&svg_text(x + bw / 2.0, y - 5.0, "middle", 11, "normal", &fmt_rate(*v)));
        s.push_str(&svg_text(x + bw / 2.0, top + h + 16.0, "middle", 11, "normal", label));
    }
    s.push_str(&svg_text(left - 8.0, yt + 4.0, "end", 11, "normal", name));
}

/// The Rust API's events/s by pack size from the last pack run
/// (`target/bench/pack.json`), if any.
fn pack_sizes(dir: &Path) -> Vec<(usize, f64)> {
    let Ok(text) = std::fs::read_to_string(dir.join("pack.json")) else { return Vec::new() };
    let Ok(p) = serde_json::from_str::<Value>(&text) else { return Vec::new() };
    p["api"]
        .as_array()
        .map(|rows| {
            rows.iter().filter_map(|r| Some((r["rules"].as_u64()? as usize, r["events_per_cpu_s"].as_f64()?))).collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------

fn write_corpus_mode(args: &[String]) {
    let mut spec = Spec::new(200_000, 1000);
    let mut bytes: Option<u64> = None;
    let mut out_path = String::from("-");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().unwrap_or_default();
        match a.as_str() {
            "--write-corpus" => out_path = val(),
            "--events" => spec.events = val().parse().expect("--events N"),
            "--hosts" => spec.hosts = val().parse().expect("--hosts N"),
            "--seed" => spec.seed = val().parse().expect("--seed N"),
            "--bytes" => bytes = Some(val().parse().expect("--bytes N")),
            "--dotted" => spec.dotted = true,
            _ => {}
        }
    }
    if bytes.is_some() {
        spec.events = usize::MAX;
    }
    let mut g = Generator::new(&spec);
    let stdout = std::io::stdout();
    let mut w: Box<dyn Write> = if out_path == "-" {
        Box::new(std::io::BufWriter::with_capacity(1 << 20, stdout.lock()))
    } else {
        Box::new(std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&out_path).expect("create the corpus file")))
    };
    let mut buf = Vec::with_capacity(1 << 20);
    let mut ranges = Vec::new();
    let mut written = 0u64;
    loop {
        buf.clear();
        ranges.clear();
        for _ in 0..1000 {
            if g.write_next(&mut buf, &mut ranges).is_none() {
                break;
            }
        }
        if buf.is_empty() {
            break;
        }
        if w.write_all(&buf).is_err() {
            return; // reader went away
        }
        written += buf.len() as u64;
        if bytes.is_some_and(|b| written >= b) {
            // The ends of the sequences begun, and nothing new.
            g.finish();
            bytes = None;
        }
    }
    let _ = w.flush();
    eprintln!("corpus: {}", g.mix.summary());
}

/// `--chart`: draw `BENCHMARKS.svg` again from the last run's
/// `target/bench/results.json` (no timing), with the Python peer's bar when
/// `benches/peers/eql_peer.py` has run since.
fn redraw_chart() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target").join("bench");
    let text = std::fs::read_to_string(dir.join("results.json")).expect("target/bench/results.json: run the benchmark first");
    let r: Value = serde_json::from_str(&text).expect("results.json");
    let mut bars: Vec<(String, f64, &str)> = Vec::new();
    for row in r["rows"].as_array().expect("rows") {
        let name = row["name"].as_str().unwrap_or("?").to_string();
        let kind = if name.starts_with("diagnostic") {
            "diag"
        } else if row["floor"].as_bool() == Some(true) {
            "floor"
        } else {
            "ours"
        };
        bars.push((name, row["events_per_s"].as_f64().unwrap_or(0.0), kind));
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("peer-eql.json")) {
        if let Ok(p) = serde_json::from_str::<Value>(&text) {
            if let Some(e) = p["events_per_s"].as_f64() {
                bars.push((format!("peer: Python eql {}", p["eql_version"].as_str().unwrap_or("")), e, "peer"));
            }
        }
    }
    let hosts: Vec<(usize, f64)> = r["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| (h["hosts"].as_u64().unwrap_or(0) as usize, h["events_per_s"].as_f64().unwrap_or(0.0)))
        .collect();
    let m = &r["machine"];
    let title = format!(
        "{} events ({:.0} MB) of Elastic Defend Linux traffic from {} hosts; {} × {}; median of {} runs",
        r["corpus"]["events"],
        r["corpus"]["bytes"].as_f64().unwrap_or(0.0) / 1e6,
        r["corpus"]["hosts"],
        m["nproc"],
        m["cpu"].as_str().unwrap_or("?"),
        r["runs"]
    );
    let svg_path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.svg");
    std::fs::write(&svg_path, chart(&bars, &hosts, &pack_sizes(&dir), &title)).unwrap();
    println!("chart: {}", svg_path.display());
}

/// One pass of the corpus through a pack, by the Rust API: events per CPU
/// second, and the alerts.
fn pack_pass(p: &mut apt_netcon::engine::pack::PackDetector, corpus: &Corpus) -> (f64, usize) {
    let c = cpu_now();
    let mut alerts = 0;
    for line in corpus.lines() {
        alerts += p.process(line, false).unwrap_or(0);
        while p.take_alert().is_some() {}
    }
    (corpus.len() as f64 / (cpu_now() - c), alerts)
}

/// `-- --pack DIR [--events N]`: a rule pack (every `.toml` and `.eql` of
/// DIR, e.g. Elastic's Linux rules in `../shared/rules/elastic-linux-eql`)
/// through the Rust API on the corpus, by pack size (the first 1, 10, 50,
/// 100 rules and all, in file-name order): events per CPU second (median of
/// `APT_NETCON_BENCH_RUNS`, default 5), rules the index let through and
/// rules evaluated per record, alerts; then the whole pack through the C
/// ABI on MessagePack chunks, and through the CLI (`--rules DIR`, file →
/// file, per CPU second of the CLI and per wall second; and with the CLI's
/// start, timed on an empty input, taken off, to compare with the API row,
/// which does not count building the pack; also stdin → stdout); then
/// `--alerts-only` on one thread and on two, per wall second, on 4 × the
/// events (`--hunt-events N`). Writes `target/bench/pack.json`.
fn pack_mode(args: &[String]) {
    let dir = args.iter().position(|a| a == "--pack").and_then(|i| args.get(i + 1)).expect("--pack DIR");
    let events = args
        .iter()
        .position(|a| a == "--events")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("--events N"))
        .unwrap_or(50_000);
    let runs = env_usize("APT_NETCON_BENCH_RUNS", 5).max(1);
    let started = Instant::now();
    let (rules, skipped) = apt_netcon::engine::pack::load_dir(Path::new(dir)).expect("a rules directory");
    println!("pack: {} rules loaded from {dir} in {:.0?} ({} do not load)", rules.len(), started.elapsed(), skipped.len());
    let corpus = Corpus::generate(&Spec::new(events, env_usize("APT_NETCON_BENCH_HOSTS", 1000)));
    println!("corpus: {}", corpus.mix.summary());
    let mut sizes: Vec<usize> = [1, 10, 50, 100].into_iter().filter(|&n| n < rules.len()).collect();
    sizes.push(rules.len());
    println!("{:>6} {:>14} {:>10} {:>10} {:>8} {:>10}", "rules", "events/CPU s", "indexed", "evaluated", "alerts", "build");
    let mut table = Vec::new();
    for &k in &sizes {
        let subset: Vec<apt_netcon::Rule> = rules[..k].to_vec();
        let mut rates = Vec::new();
        let (mut indexed, mut tested, mut alerts, mut build) = (0.0, 0.0, 0, 0.0);
        for _ in 0..runs {
            let t = Instant::now();
            let mut p = apt_netcon::engine::pack::PackDetector::new(subset.clone(), &Config::default());
            build = t.elapsed().as_secs_f64();
            let (rate, a) = pack_pass(&mut p, &corpus);
            rates.push(rate);
            let (n, t) = p.work();
            indexed = p.indexed() as f64 / n as f64;
            tested = t as f64 / n as f64;
            alerts = a;
        }
        let rate = median(&rates);
        println!("{k:>6} {rate:>14.0} {indexed:>10.2} {tested:>10.2} {alerts:>8} {:>8.0}ms", build * 1e3);
        table.push(json!({"rules": k, "events_per_cpu_s": rate, "indexed_per_record": indexed, "evaluated_per_record": tested, "alerts": alerts}));
    }
    // The whole pack again through the Rust API, through the C ABI on
    // MessagePack chunks of 64 records, and through the CLI (`--rules`),
    // file → file (every record and its alerts written, as a user runs it:
    // per CPU second of the CLI, user + system, and per wall second) and
    // standard input → standard output: one pass of each in turn in every
    // run, so that the ratios to the API compare passes made in the same
    // phases of the machine (whose speed drifts by tens of percent within
    // minutes on a shared VM).
    let corpus: &'static Corpus = Box::leak(Box::new(corpus));
    let chunks = to_msgpack_chunks(corpus, 64);
    let cfg = json!({"rules_dir": dir}).to_string();
    let bench_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target").join("bench");
    std::fs::create_dir_all(&bench_dir).unwrap();
    let (input, output) = (bench_dir.join("pack-corpus.ndjson"), bench_dir.join("pack-out.ndjson"));
    std::fs::write(&input, &corpus.data).unwrap();
    // The CLI's start (loading and indexing the rules) alone, on an empty
    // input: subtracted for the figure comparable with the API row, which
    // does not count building the pack either.
    let empty = bench_dir.join("pack-empty.ndjson");
    std::fs::write(&empty, b"").unwrap();
    let pipe_args: &'static [String] = Box::leak(vec!["--rules".to_string(), dir.clone()].into_boxed_slice());
    let mut piped = cli_pipe(corpus, corpus.len() as u64, pipe_args);
    let (mut api_rates, mut rates, mut pipe_cpu) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cpu_rates, mut wall_rates, mut start_cpu) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        api_rates.push(pack_pass(&mut apt_netcon::engine::pack::PackDetector::new(rules.clone(), &Config::default()), corpus).0);
        let mut det = ptr::null_mut();
        let mut err = ptr::null_mut();
        // SAFETY: valid pointers and lengths.
        let st = unsafe { aptnc_init(cfg.as_ptr(), cfg.len(), ptr::null(), &mut det, &mut err) };
        assert_eq!(st, aptnc_status::Ok);
        let c = cpu_now();
        let (mut out, mut out_len) = (ptr::null(), 0usize);
        for chunk in &chunks {
            // SAFETY: a live detector; the chunk outlives the call.
            unsafe { aptnc_filter_msgpack(det, chunk.as_ptr(), chunk.len(), &mut out, &mut out_len) };
        }
        rates.push(corpus.len() as f64 / (cpu_now() - c));
        // SAFETY: from aptnc_init, freed once.
        unsafe { aptnc_free(det) };
        for (file, start) in [(&empty, true), (&input, false)] {
            let out = std::fs::File::create(&output).unwrap();
            let (c, t) = (cpu_now(), Instant::now());
            let st = Command::new(CLI).args(["--quiet", "--rules", dir]).arg(file).stdin(Stdio::null()).stdout(out).status().unwrap();
            assert!(st.success(), "the CLI ran the pack");
            if start {
                start_cpu.push(cpu_now() - c);
            } else {
                cpu_rates.push((cpu_now() - c, corpus.len() as f64 / (cpu_now() - c)));
                wall_rates.push(corpus.len() as f64 / t.elapsed().as_secs_f64());
            }
        }
        let c = cpu_now();
        piped();
        pipe_cpu.push(cpu_now() - c);
    }
    let api = median(&api_rates);
    let mp = median(&rates);
    println!("{:>6} {api:>14.0}  (Rust API again, alternated with the rows below, which are compared with it)", rules.len());
    println!("{:>6} {mp:>14.0}  (C ABI, MessagePack chunks of 64: {:.2} × the API)", rules.len(), mp / api);
    let start = median(&start_cpu);
    let cli_cpu = median(&cpu_rates.iter().map(|r| r.1).collect::<Vec<_>>());
    let cli_records = median(&cpu_rates.iter().map(|r| corpus.len() as f64 / (r.0 - start).max(1e-9)).collect::<Vec<_>>());
    let cli_wall = median(&wall_rates);
    println!("{:>6} {cli_cpu:>14.0}  (CLI --rules, file → file; {cli_wall:.0} per wall second)", rules.len());
    let cli_pipe_records = median(&pipe_cpu.iter().map(|c| corpus.len() as f64 / (c - start).max(1e-9)).collect::<Vec<_>>());
    println!(
        "{:>6} {cli_records:>14.0}  (the same, its start of {:.2} CPU s on an empty input taken off: {:.2} × the API)",
        rules.len(),
        start,
        cli_records / api
    );
    println!(
        "{:>6} {cli_pipe_records:>14.0}  (CLI --rules, stdin → stdout, its start taken off: {:.2} × the API)",
        rules.len(),
        cli_pipe_records / api
    );
    // Retro-hunts: `--alerts-only` on one thread and on two (the pack split
    // by host.id), alternated, per wall second; and with each one's start
    // (wall time on the empty input) taken off. On a longer stream of the
    // same kind (4 × the events, `--hunt-events N`), so that the start
    // weighs less.
    let hunt_events = args
        .iter()
        .position(|a| a == "--hunt-events")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("--hunt-events N"))
        .unwrap_or(4 * events);
    let hunt = bench_dir.join("pack-hunt.ndjson");
    std::fs::write(&hunt, &Corpus::generate(&Spec::new(hunt_events, env_usize("APT_NETCON_BENCH_HOSTS", 1000))).data).unwrap();
    let mut walls: [Vec<f64>; 4] = Default::default();
    // One thread's CPU time on the stream (the cores it keeps busy: below).
    let mut cpu1 = Vec::new();
    for _ in 0..runs {
        for (k, threads) in ["1", "2"].into_iter().enumerate() {
            for (file, start) in [(&empty, true), (&hunt, false)] {
                let out = std::fs::File::create(&output).unwrap();
                let (t, c) = (Instant::now(), cpu_now());
                let st = Command::new(CLI)
                    .args(["--quiet", "--alerts-only", "--threads", threads, "--rules", dir])
                    .arg(file)
                    .stdin(Stdio::null())
                    .stdout(out)
                    .status()
                    .unwrap();
                assert!(st.success(), "the CLI ran the pack on {threads} threads");
                walls[2 * k + start as usize].push(t.elapsed().as_secs_f64());
                if k == 0 && !start {
                    cpu1.push((cpu_now() - c) / t.elapsed().as_secs_f64());
                }
            }
        }
    }
    let [w1, s1, w2, s2] = walls.map(|w| median(&w));
    let (threads_ratio, threads_ratio_after_start) = (w1 / w2, (w1 - s1) / (w2 - s2).max(1e-9));
    println!(
        "{:>6} --alerts-only --threads 2 / --threads 1 on {hunt_events} events, wall-clock: {threads_ratio:.2} × ({w1:.3} s → {w2:.3} s); starts ({s1:.3} s, {s2:.3} s) taken off: {threads_ratio_after_start:.2} ×",
        rules.len()
    );
    // What bounds both CLI ratios on this machine, whatever the CLI's code
    // (as in the main run): the kernel's copy of the input into the output
    // file, and the cores one thread keeps busy.
    let copy = kernel_copy_cpu(&input, &output, runs);
    let api_cpu = corpus.len() as f64 / api;
    let busy = median(&cpu1);
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!(
        "{:>6} bounds: the kernel copies the input file into a file in {copy:.3} CPU s, so a file → file CLI reaches at most {:.2} × the API per CPU second ({api_cpu:.3} s + {copy:.3} s); one thread of --alerts-only keeps {busy:.2} cores busy, so --threads 2 on {cores} cores gives at most {:.2} × one thread",
        rules.len(),
        api_cpu / (api_cpu + copy),
        (cores.min(2) as f64 / busy).max(1.0)
    );
    let _ = std::fs::remove_file(&hunt);
    let _ = std::fs::remove_file(&empty);
    let _ = std::fs::remove_file(&input);
    let _ = std::fs::remove_file(&output);
    let out = json!({"rules_dir": dir, "events": events, "runs": runs, "api": table, "api_alternated_events_per_cpu_s": api, "c_abi_msgpack_events_per_cpu_s": mp,
        "cli_events_per_cpu_s": cli_cpu, "cli_events_per_wall_s": cli_wall, "cli_start_cpu_s": start,
        "cli_events_per_cpu_s_after_start": cli_records, "cli_pipe_events_per_cpu_s_after_start": cli_pipe_records,
        "hunt_events": hunt_events, "cli_alerts_only_wall_s": {"threads_1": w1, "threads_2": w2, "start_threads_1": s1, "start_threads_2": s2},
        "cli_alerts_only_threads_2_over_1": threads_ratio, "cli_alerts_only_threads_2_over_1_after_start": threads_ratio_after_start});
    std::fs::write(bench_dir.join("pack.json"), serde_json::to_string_pretty(&out).unwrap()).unwrap();
    // The chart's third panel (throughput by pack size), drawn again with
    // the last main run's rows.
    if bench_dir.join("results.json").exists() {
        redraw_chart();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--write-corpus") {
        return write_corpus_mode(&args);
    }
    if args.iter().any(|a| a == "--pack") {
        return pack_mode(&args);
    }
    if args.iter().any(|a| a == "--chart") {
        return redraw_chart();
    }
    if let Some(i) = args.iter().position(|a| a == "--profile") {
        // `perf record … throughput --profile api|msgpack`: one row in a loop.
        let spec = Spec::new(env_usize("APT_NETCON_BENCH_EVENTS", 200_000), env_usize("APT_NETCON_BENCH_HOSTS", 1000));
        let corpus: &'static Corpus = Box::leak(Box::new(Corpus::generate(&spec)));
        let chunks: &'static [Vec<u8>] = Box::leak(to_msgpack_chunks(corpus, 64).into_boxed_slice());
        let mut f: Box<dyn FnMut() -> Outcome> = match args.get(i + 1).map(String::as_str) {
            Some("msgpack") => Box::new(c_abi_msgpack(chunks, corpus.len() as u64)),
            Some("serde") => Box::new(floor_serde_validate(corpus)),
            Some("c") => Box::new(c_abi_json(corpus)),
            Some("scan") => Box::new(diag_scan(corpus)),
            Some("extract") => Box::new(diag_extract(corpus)),
            Some("pack") => Box::new(pack_api(corpus)),
            _ => Box::new(rust_api(corpus)),
        };
        // A fixed number of passes (for callgrind), or 10 s.
        let passes = env_usize("APT_NETCON_PROFILE_PASSES", 0);
        let t = Instant::now();
        let c = cpu_now();
        let mut n = 0;
        let mut pass = 0;
        let mut best = f64::INFINITY;
        while if passes > 0 { pass < passes } else { t.elapsed().as_secs_f64() < 10.0 } {
            let c1 = cpu_now();
            n += f().events;
            best = best.min(cpu_now() - c1);
            pass += 1;
        }
        println!(
            "{:.0} events/s per CPU second ({:.0} in the fastest pass, {:.0} per wall second)",
            n as f64 / (cpu_now() - c),
            (n / pass.max(1) as u64) as f64 / best,
            n as f64 / t.elapsed().as_secs_f64()
        );
        return;
    }
    let events = env_usize("APT_NETCON_BENCH_EVENTS", 200_000);
    let runs = env_usize("APT_NETCON_BENCH_RUNS", 11).max(5);
    let main_hosts = env_usize("APT_NETCON_BENCH_HOSTS", 1000);
    let started = Instant::now();
    let machine = machine();
    println!("apt-netcon throughput benchmark");
    println!(
        "machine: {} × {} ({} MHz), {} GiB; {}",
        machine["nproc"], machine["cpu"].as_str().unwrap_or("?"), machine["cpu_mhz"].as_str().unwrap_or("?"), machine["mem_gib"], machine["rustc"].as_str().unwrap_or("")
    );

    // Corpora (leaked: the rows borrow them for the whole run).
    let spec = Spec::new(events, main_hosts);
    let corpus: &'static Corpus = Box::leak(Box::new(Corpus::generate(&spec)));
    let dotted: &'static Corpus = Box::leak(Box::new(Corpus::generate(&Spec { dotted: true, ..spec.clone() })));
    let chunks: &'static [Vec<u8>] = Box::leak(to_msgpack_chunks(corpus, 64).into_boxed_slice());
    let mp_bytes: u64 = chunks.iter().map(|c| c.len() as u64).sum();
    println!("corpus ({main_hosts} hosts, nested JSON): {}", corpus.mix.summary());
    println!(
        "         dotted keys: {:.1} MB; MessagePack: {} chunks of 64 records, {:.1} MB",
        dotted.mix.bytes as f64 / 1e6,
        chunks.len(),
        mp_bytes as f64 / 1e6
    );
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target").join("bench");
    std::fs::create_dir_all(&dir).unwrap();
    let corpus_path: &'static Path = Box::leak(dir.join("corpus.ndjson").into_boxed_path());
    let cli_out: &'static Path = Box::leak(dir.join("cli-out.ndjson").into_boxed_path());
    let ao_out: &'static Path = Box::leak(dir.join("cli-alerts.ndjson").into_boxed_path());
    let ao2_out: &'static Path = Box::leak(dir.join("cli-alerts-2.ndjson").into_boxed_path());
    std::fs::write(corpus_path, &corpus.data).unwrap();

    // What the detector sees in this corpus (and a correctness check).
    let mut det = Detector::new(&Config::default()).unwrap();
    let mut annotated = 0;
    for line in corpus.lines() {
        if let Ok(Verdict::Annotated(_)) = det.process(line) {
            annotated += 1;
        }
    }
    let st = det.stats();
    assert_eq!(annotated, corpus.mix.planted, "every planted sequence alerts, nothing else does");
    println!(
        "detector: {} alerts (= planted); stage-1 matches {} ({:.2} %), stage-2 matches {} ({:.2} %), errors {}",
        annotated,
        st.stage_matches[0],
        100.0 * st.stage_matches[0] as f64 / events as f64,
        st.stage_matches[1],
        100.0 * st.stage_matches[1] as f64 / events as f64,
        st.errors()
    );

    let json_bytes = corpus.data.len() as u64;
    let n = corpus.len() as u64;
    let mut rows = vec![
        Row { name: "floor: memchr newline split", floor: true, bytes: json_bytes, run: Box::new(floor_memchr(corpus)), secs: vec![], wall: vec![], outcome: Outcome::default() },
        Row { name: "floor: serde_json validation (IgnoredAny)", floor: true, bytes: json_bytes, run: Box::new(floor_serde_validate(corpus)), secs: vec![], wall: vec![], outcome: Outcome::default() },
        Row { name: "floor: naive filter (Value parse + serialize)", floor: true, bytes: json_bytes, run: Box::new(floor_naive(corpus)), secs: vec![], wall: vec![], outcome: Outcome::default() },
        Row { name: "(1) Rust API, JSON", floor: false, bytes: json_bytes, run: Box::new(rust_api(corpus)), secs: vec![], wall: vec![], outcome: Outcome::default() },
        Row { name: "(1b) Rust API, JSON with dotted keys", floor: false, bytes: dotted.data.len() as u64, run: Box::new(rust_api(dotted)), secs: vec![], wall: vec![], outcome: Outcome::default() },
        Row { name: "(2) C ABI, JSON, one record per call", floor: false, bytes: json_bytes, run: Box::new(c_abi_json(corpus)), secs: vec![], wall: vec![], outcome: Outcome::default() },
        Row { name: "(3) C ABI, MessagePack chunks", floor: false, bytes: mp_bytes, run: Box::new(c_abi_msgpack(chunks, n)), secs: vec![], wall: vec![], outcome: Outcome::default() },
        Row { name: "(4) CLI, file → file", floor: false, bytes: json_bytes, run: Box::new(cli(corpus_path, cli_out, n, &[])), secs: vec![], wall: vec![], outcome: Outcome::default() },
        Row { name: "(4b) CLI, stdin → stdout (pipes)", floor: false, bytes: json_bytes, run: Box::new(cli_pipe(corpus, n, &[])), secs: vec![], wall: vec![], outcome: Outcome::default() },
        Row { name: "(4c) CLI --alerts-only, file → file", floor: false, bytes: json_bytes, run: Box::new(cli(corpus_path, ao_out, n, &["--alerts-only"])), secs: vec![], wall: vec![], outcome: Outcome::default() },
        Row { name: "(4d) CLI --alerts-only --threads 2", floor: false, bytes: json_bytes, run: Box::new(cli(corpus_path, ao2_out, n, &["--alerts-only", "--threads", "2"])), secs: vec![], wall: vec![], outcome: Outcome::default() },
        Row { name: "diagnostic: fast scanner alone (decisive fields)", floor: true, bytes: json_bytes, run: Box::new(diag_scan(corpus)), secs: vec![], wall: vec![], outcome: Outcome::default() },
        Row { name: "diagnostic: validating reader alone (every field)", floor: true, bytes: json_bytes, run: Box::new(diag_extract(corpus)), secs: vec![], wall: vec![], outcome: Outcome::default() },
    ];
    eprint!("timing {} rows × {runs} runs ", rows.len());
    time_rows(&mut rows, runs);
    // The CLI's output: every line there, and the planted ones annotated.
    let out = std::fs::read(cli_out).unwrap();
    assert_eq!(memchr::memchr_iter(b'\n', &out).count(), corpus.len());
    assert_eq!(count(&out, b"\"apt_netcon\":{") as u64, corpus.mix.planted);
    for r in &rows[3..7] {
        assert_eq!(r.outcome.annotated, corpus.mix.planted, "{}", r.name);
    }
    let alerts1 = std::fs::read(ao_out).unwrap();
    assert_eq!(memchr::memchr_iter(b'\n', &alerts1).count() as u64, corpus.mix.planted);
    assert!(std::fs::read(ao2_out).unwrap() == alerts1, "--threads 2 writes the alerts of one thread");

    let floors: Vec<f64> = rows[..3].iter().map(|r| r.events_per_s()).collect();
    println!();
    println!("| row | events/s | MB/s | CPU s | wall s | spread | × memchr | × serde validate | × naive filter |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let e = r.events_per_s();
        println!(
            "| {} | {:.0} | {:.0} | {:.3} | {:.3} | {:.0} % | {:.3} | {:.2} | {:.2} |",
            r.name,
            e,
            r.mb_per_s(),
            r.median(),
            median(&r.wall),
            r.spread(),
            e / floors[0],
            e / floors[1],
            e / floors[2]
        );
    }
    println!("(events/s and MB/s per CPU second of one core, median of the runs; MB/s of the input as given: JSON for every row but (3), whose input is the MessagePack chunks; spread = (max − min) / median of the CPU times; wall s: median wall-clock time)");
    let api = rows[3].events_per_s();
    println!(
        "C ABI per record / Rust API: {:.3}; MessagePack chunks / Rust API JSON: {:.3}; CLI / Rust API: {:.3} (file → file), {:.3} (stdin → stdout)",
        rows[5].events_per_s() / api,
        rows[6].events_per_s() / api,
        rows[7].events_per_s() / api,
        rows[8].events_per_s() / api
    );
    // The CLI writes on a second thread while it filters: per CPU second
    // it pays the kernel's copy of its output, in wall-clock time it need
    // not (on a machine with a core to spare).
    let api_wall = median(&rows[3].wall);
    println!(
        "CLI / Rust API, wall-clock: {:.3} (file → file), {:.3} (stdin → stdout; the pipes' feeder and reader run on the same cores)",
        api_wall / median(&rows[7].wall),
        api_wall / median(&rows[8].wall)
    );
    println!(
        "CLI --alerts-only: --threads 2 / one thread, wall-clock: {:.2} × ({:.3} s → {:.3} s; CPU {:.3} s → {:.3} s)",
        median(&rows[9].wall) / median(&rows[10].wall),
        median(&rows[9].wall),
        median(&rows[10].wall),
        rows[9].median(),
        rows[10].median()
    );
    // What bounds the two CLI ratios on this machine, whatever the CLI's
    // code: the kernel's copy of the input file into the output file (paid
    // per CPU second on top of the API's work by any file → file run), and
    // the cores one thread of --alerts-only keeps busy already (its reading
    // and writing threads beside the detector's).
    let copy = kernel_copy_cpu(corpus_path, cli_out, runs);
    let api_cpu = rows[3].median();
    let busy = rows[9].median() / median(&rows[9].wall);
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!(
        "bounds: the kernel copies the input file into a file in {copy:.3} CPU s (std::fs::copy, an in-kernel copy as cat makes it), so a file → file CLI reaches at most {:.2} × the Rust API per CPU second ({api_cpu:.3} s + {copy:.3} s); one thread of --alerts-only keeps {busy:.2} cores busy, so --threads 2 on {cores} cores gives at most {:.2} × one thread",
        api_cpu / (api_cpu + copy),
        (cores.min(2) as f64 / busy).max(1.0)
    );

    // Throughput against the number of hosts.
    println!();
    println!("Rust API against fleet size ({events} events each, nested JSON):");
    println!("| hosts | events/s | MB/s | spread | vs 100 hosts | most pending at once | stage-1 / stage-2 matches |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let fleets = [100usize, 1_000, 10_000, 100_000];
    let corpora: Vec<&'static Corpus> = fleets
        .iter()
        .map(|&h| if h == main_hosts { corpus } else { &*Box::leak(Box::new(Corpus::generate(&Spec::new(events, h)))) })
        .collect();
    let mut fleet_rows: Vec<Row> = corpora
        .iter()
        .map(|&c| Row { name: "hosts", floor: false, bytes: c.data.len() as u64, run: Box::new(rust_api(c)), secs: vec![], wall: vec![], outcome: Outcome::default() })
        .collect();
    // Round-robin, as above: a slow phase of the machine hits every fleet.
    time_rows(&mut fleet_rows, runs);
    let mut sweep: Vec<(usize, f64, f64, u64, u64, u64, f64)> = Vec::new();
    for ((&hosts, &c), row) in fleets.iter().zip(&corpora).zip(&fleet_rows) {
        assert_eq!(row.outcome.annotated, c.mix.planted);
        let mut det = Detector::new(&Config::default()).unwrap();
        let mut max_pending = 0;
        for line in c.lines() {
            let _ = det.process(line);
            max_pending = max_pending.max(det.stats().pending);
        }
        let st = det.stats();
        sweep.push((hosts, row.events_per_s(), row.mb_per_s(), max_pending, st.stage_matches[0], st.stage_matches[1], row.spread()));
    }
    let base = sweep[0].1;
    for (h, e, mb, pending, s1, s2, spread) in &sweep {
        println!("| {h} | {e:.0} | {mb:.0} | {spread:.0} % | {:+.1} % | {pending} | {s1} / {s2} |", 100.0 * (e / base - 1.0));
    }

    // Results for the peers, and the chart.
    let results = json!({
        "machine": machine,
        "corpus": {"events": events, "hosts": main_hosts, "bytes": json_bytes, "path": corpus_path, "summary": corpus.mix.summary()},
        "runs": runs,
        "rows": rows.iter().map(|r| json!({"name": r.name, "floor": r.floor, "events_per_s": r.events_per_s(), "mb_per_s": r.mb_per_s(), "median_s": r.median(), "secs": r.secs})).collect::<Vec<_>>(),
        "hosts": sweep.iter().map(|s| json!({"hosts": s.0, "events_per_s": s.1, "mb_per_s": s.2, "max_pending": s.3})).collect::<Vec<_>>(),
    });
    std::fs::write(dir.join("results.json"), serde_json::to_string_pretty(&results).unwrap()).unwrap();
    let mut bars: Vec<(String, f64, &str)> =
        rows.iter()
            .map(|r| {
                let kind = if r.name.starts_with("diagnostic") {
                    "diag"
                } else if r.floor {
                    "floor"
                } else {
                    "ours"
                };
                (r.name.to_string(), r.events_per_s(), kind)
            })
            .collect();
    // The Python peer, when benches/peers/eql_peer.py has been run.
    if let Ok(text) = std::fs::read_to_string(dir.join("peer-eql.json")) {
        if let Ok(p) = serde_json::from_str::<Value>(&text) {
            if let Some(e) = p["events_per_s"].as_f64() {
                bars.push((format!("peer: Python eql {} (earlier run)", p["eql_version"].as_str().unwrap_or("")), e, "peer"));
            }
        }
    }
    let title = format!(
        "{} events ({:.0} MB) of Elastic Defend Linux traffic from {main_hosts} hosts; {} × {}; median of {runs} runs",
        events,
        json_bytes as f64 / 1e6,
        machine["nproc"],
        machine["cpu"].as_str().unwrap_or("?")
    );
    let svg = chart(&bars, &sweep.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(), &pack_sizes(&dir), &title);
    let svg_path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.svg");
    std::fs::write(&svg_path, svg).unwrap();
    println!();
    println!("chart: {}; results: {}", svg_path.display(), dir.join("results.json").display());
    println!("total time {:.0} s", started.elapsed().as_secs_f64());
}
