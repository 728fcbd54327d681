//! `apt-netcon --rules DIR` (or several `--rule`): a rule pack over
//! newline-delimited JSON.
//!
//! Every record goes to standard output unchanged, followed by one alert
//! record per rule it completes (`event.kind: "signal"`, see
//! [`apt_netcon::engine::pack`]); with `--alerts-only`, only the alert records.
//! Records are read line by line through a large buffer, on one thread;
//! `--threads N` splits the pack by host (`pack_threads`).

use apt_netcon::engine::pack::PackDetector;
use apt_netcon::{Config, Rule};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::process::ExitCode;
use std::time::Instant;

/// The input `f` (`-`: standard input), or `None` when it cannot be
/// opened (said on standard error).
pub fn open_input(f: &str) -> Option<Box<dyn Read>> {
    if f == "-" {
        return Some(Box::new(io::stdin()));
    }
    match std::fs::File::open(f) {
        Ok(file) => Some(Box::new(file)),
        Err(e) => {
            eprintln!("apt-netcon: cannot open {f}: {e}");
            None
        }
    }
}

/// Run `rules` over `files` (`-`: standard input).
pub fn run(rules: Vec<Rule>, config: &Config, files: &[String], alerts_only: bool, quiet: bool) -> ExitCode {
    let n = rules.len();
    let started = Instant::now();
    let mut pack = PackDetector::new(rules, config);
    if !quiet {
        eprintln!("apt-netcon: a pack of {n} rules, indexed in {:.2?}", started.elapsed());
    }
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    let (mut records, mut alerts, mut errors) = (0u64, 0u64, 0u64);
    let mut line = Vec::with_capacity(4096);
    let mut status = ExitCode::SUCCESS;
    let write = |out: &mut BufWriter<io::StdoutLock>, b: &[u8]| -> io::Result<()> { out.write_all(b) };
    for f in files {
        let Some(input) = open_input(f) else {
            status = ExitCode::from(1);
            continue;
        };
        let mut input = BufReader::with_capacity(1 << 20, input);
        loop {
            line.clear();
            match input.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    eprintln!("apt-netcon: {f}: {e}");
                    return ExitCode::from(1);
                }
            }
            let body_len = line.len() - line.iter().rev().take_while(|b| matches!(b, b'\n' | b'\r')).count();
            let record = &line[..body_len];
            let mut r = Ok(());
            if !alerts_only {
                r = write(&mut out, &line);
            }
            if !record.iter().all(u8::is_ascii_whitespace) {
                records += 1;
                if pack.process(record, false).is_err() {
                    errors += 1;
                }
                while let Some(a) = pack.take_alert() {
                    alerts += 1;
                    r = r.and_then(|()| write(&mut out, &a.bytes)).and_then(|()| write(&mut out, b"\n"));
                }
            }
            if let Err(e) = r {
                eprintln!("apt-netcon: writing output: {e}");
                return ExitCode::from(1);
            }
        }
    }
    pack.finish();
    while let Some(a) = pack.take_alert() {
        alerts += 1;
        if out.write_all(&a.bytes).and_then(|()| out.write_all(b"\n")).is_err() {
            return ExitCode::from(1);
        }
    }
    if let Err(e) = out.flush() {
        eprintln!("apt-netcon: writing output: {e}");
        return ExitCode::from(1);
    }
    if !quiet {
        let (_, tested) = pack.work();
        eprintln!(
            "apt-netcon: {records} records in {:.2} s, {alerts} alerts, {errors} unreadable by a rule that could match; {:.1} rules tested per record",
            started.elapsed().as_secs_f64(),
            tested as f64 / records.max(1) as f64
        );
        let summed = pack.summed_stats(Default::default());
        eprintln!(
            "apt-netcon: state at the end: {} partial sequences (about {:.1} MB), {} evicted by the caps",
            summed.pending,
            pack.state_bytes() as f64 / 1e6,
            summed.evicted_by_cap + summed.evicted_by_host_cap + summed.evicted_by_bytes
        );
        for (i, r) in pack.rules().iter().enumerate() {
            let s = pack.stats(i);
            let a = s.annotated + s.standalone_alerts;
            if a > 0 || s.pending > 1000 {
                eprintln!("apt-netcon:   {} ({}): {a} alerts, {} pending", r.meta().rule_id, r.meta().name, s.pending);
            }
        }
    }
    status
}
