//! What a run counts and reports on standard error: the counters summed
//! over the detectors, bad records, progress, the closing lines.

use super::{Options, REPORT_FIRST_ERRORS};
use apt_netcon::{Detector, RecordError};
use std::time::{Duration, Instant};

/// Counters of the whole run (summed over the detectors).
#[derive(Default)]
pub(super) struct Totals {
    pub(super) fields: Vec<(&'static str, u64)>,
    pub(super) records: u64,
    pub(super) alerts: u64,
    pub(super) errors: u64,
    pub(super) excluded: u64,
    pub(super) exceptions: Vec<(String, u64)>,
}

impl Totals {
    pub(super) fn add(&mut self, det: &Detector) {
        let s = det.stats();
        add_counts(&mut self.fields, s.fields());
        self.records += s.records;
        self.alerts += s.annotated + s.standalone_alerts;
        self.errors += s.errors();
        self.excluded += s.excluded;
        add_counts(&mut self.exceptions, det.exception_counts());
    }

    /// Records read without a detector (ruled out by their bytes).
    pub(super) fn add_skipped(&mut self, n: u64) {
        self.records += n;
        self.bump("records", n);
    }

    /// Records longer than `max_record_bytes` passed on in pieces
    /// ([`super::LongLine`]): counted as a detector counts a record too
    /// large to read.
    pub(super) fn add_too_large(&mut self, n: u64) {
        self.records += n;
        self.errors += n;
        self.bump("records", n);
        self.bump("too_large", n);
    }

    fn bump(&mut self, name: &str, n: u64) {
        if let Some(r) = self.fields.iter_mut().find(|(k, _)| *k == name) {
            r.1 += n;
        }
    }
}

/// Add named counters to a running sum (the same names, in the same order).
pub(super) fn add_counts<K>(sum: &mut Vec<(K, u64)>, more: Vec<(K, u64)>) {
    if sum.is_empty() {
        *sum = more;
    } else {
        for (a, b) in sum.iter_mut().zip(more) {
            a.1 += b.1;
        }
    }
}

/// What the run reports on standard error (a rule pack's too: its
/// writing thread reports bad records and progress with one).
pub(crate) struct Run {
    pub(super) opts_quiet: bool,
    pub(super) progress: bool,
    pub(super) started: Instant,
    pub(super) last_progress: Instant,
    pub(crate) bytes: u64,
    pub(super) bad: u64,
    pub(super) empty: u64,
}

impl Run {
    pub(super) fn new(opts: &Options) -> Run {
        Run::quiet_or_not(opts.quiet, opts.progress)
    }

    /// Messages unless `quiet`; a progress line when `progress`.
    pub(crate) fn quiet_or_not(quiet: bool, progress: bool) -> Run {
        Run {
            opts_quiet: quiet,
            progress,
            started: Instant::now(),
            last_progress: Instant::now(),
            bytes: 0,
            bad: 0,
            empty: 0,
        }
    }

    /// The detector's warnings (no alert can come, and why), on standard
    /// error.
    pub(super) fn warnings(&self, det: &mut Detector) {
        while let Some(w) = det.take_warning() {
            if !self.opts_quiet {
                self.end_progress();
                say!("apt-netcon: warning: {w}");
            }
        }
    }

    pub(crate) fn bad_record(&mut self, name: &str, lineno: u64, e: RecordError) {
        self.bad += 1;
        if self.bad <= REPORT_FIRST_ERRORS && !self.opts_quiet {
            say!("apt-netcon: {name}:{lineno}: {e} (passed through unchanged)");
        }
    }

    pub(crate) fn show_progress(&mut self, name: &str, records: u64, alerts: u64) {
        if self.progress && self.last_progress.elapsed() >= Duration::from_secs(1) {
            self.last_progress = Instant::now();
            let secs = self.started.elapsed().as_secs_f64();
            say_part!(
                "\rapt-netcon: {name}: {records} records, {:.1} MB, {:.0} records/s, {alerts} alerts   ",
                self.bytes as f64 / 1e6,
                records as f64 / secs,
            );
        }
    }

    pub(crate) fn end_progress(&self) {
        clear_progress_line(self.progress);
    }

    pub(super) fn report(&self, t: &Totals) {
        let secs = self.started.elapsed().as_secs_f64();
        say!(
            "apt-netcon: {} records ({} empty lines) in {:.2} s, {} alerts, {} passed through unread (errors)",
            t.records, self.empty, secs, t.alerts, t.errors
        );
        if self.bad > REPORT_FIRST_ERRORS {
            say!("apt-netcon: {} more bad records not shown", self.bad - REPORT_FIRST_ERRORS);
        }
        let line: Vec<String> = t.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        say!("apt-netcon: {}", line.join(" "));
        if !t.exceptions.is_empty() {
            let items = apt_netcon::engine::exceptions::format_counts(&t.exceptions);
            say!("apt-netcon: excluded={} by exception item: {items}", t.excluded);
        }
    }
}

/// The progress line taken off standard error (when one is shown), before
/// a message from any thread.
pub(crate) fn clear_progress_line(progress: bool) {
    if progress {
        say_part!("\r{:79}\r", "");
    }
}
