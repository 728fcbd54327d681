//! Counters: the sidecar's own, and the report at exit and every
//! `stats_interval`.

use apt_netcon::Detector;
use super::{log, Shared};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

#[derive(Default)]
pub(super) struct Counters {
    pub(super) connections: AtomicU64,
    pub(super) records_in: AtomicU64,
    pub(super) records_out: AtomicU64,
    pub(super) bytes_in: AtomicU64,
    pub(super) bytes_out: AtomicU64,
    pub(super) empty: AtomicU64,
    pub(super) bad: AtomicU64,
    pub(super) split_lines: AtomicU64,
    pub(super) forward_connects: AtomicU64,
    pub(super) connect_failures: AtomicU64,
    /// Connections dropped on a write error.
    pub(super) forward_errors: AtomicU64,
    /// Connections given up because the receiver closed (half-closed, as
    /// Vector does when it stops) or reset them, noticed before a write.
    pub(super) peer_closes: AtomicU64,
    /// Records resent whole after part of them went to a dropped connection.
    pub(super) resent_partial: AtomicU64,
}

pub(super) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

pub(super) fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

pub(super) fn report(sh: &Shared, started: Instant, interrupted: bool) {
    let c = &sh.counters;
    let (rin, rout) = (get(&c.records_in), get(&c.records_out));
    let lost = rin.saturating_sub(rout);
    if interrupted {
        log(format_args!("second signal: exiting with {lost} records read but not forwarded"));
    }
    // A reader may hold the detector (blocked on a full queue) when the
    // drain was interrupted: then its counters are left out.
    let det = sh.det.try_lock();
    let alerts = det.as_ref().map(|d| alerts_of(d).to_string()).unwrap_or_else(|_| "?".into());
    log(format_args!(
        "{rin} records in, {rout} out, {alerts} alerts in {:.2} s; {} connections; {} forward connections ({} reconnects)",
        started.elapsed().as_secs_f64(),
        get(&c.connections),
        get(&c.forward_connects),
        get(&c.forward_connects).saturating_sub(1)
    ));
    log(sidecar_counters_with(sh, &alerts));
    if let Ok(mut d) = det {
        d.flush();
        log(detector_counters(&d));
        for line in rule_lines(&d) {
            log(line);
        }
        let by_item = d.exception_counts();
        if !by_item.is_empty() {
            log(format_args!(
                "excluded={} by exception item: {}",
                d.stats().excluded,
                apt_netcon::engine::exceptions::format_counts(&by_item)
            ));
        }
    }
}

/// The sidecar's counters (`in=… out=… … resent_partial=…`), with the
/// detector's alert count (`?` when it could not be had).
pub(super) fn sidecar_counters_with(sh: &Shared, alerts: &str) -> String {
    let c = &sh.counters;
    let (rin, rout) = (get(&c.records_in), get(&c.records_out));
    let lost = rin.saturating_sub(rout);
    format!(
        "in={rin} out={rout} not_forwarded={lost} alerts={alerts} connections={} bytes_in={} bytes_out={} empty={} bad={} split_lines={} \
         forward_connects={} reconnects={} connect_failures={} forward_errors={} peer_closes={} resent_partial={}",
        get(&c.connections),
        get(&c.bytes_in),
        get(&c.bytes_out),
        get(&c.empty),
        get(&c.bad),
        get(&c.split_lines),
        get(&c.forward_connects),
        get(&c.forward_connects).saturating_sub(1),
        get(&c.connect_failures),
        get(&c.forward_errors),
        get(&c.peer_closes),
        get(&c.resent_partial),
    )
}

/// Alerts given: records annotated in place, and standalone alert records
/// (`max_lateness` above 0, or a rule pack).
pub(super) fn alerts_of(d: &Detector) -> u64 {
    let s = d.stats();
    s.annotated + s.standalone_alerts
}

/// With a rule pack, one line per rule that alerted and per rule that did
/// not load (see [`apt_netcon::host::ffi::rules_report_lines`]); none for one rule.
pub(super) fn rule_lines(d: &Detector) -> Vec<String> {
    if d.pack().is_none() {
        return Vec::new();
    }
    apt_netcon::host::ffi::rules_report_lines(&apt_netcon::host::ffi::rules_report(d))
}

/// The detector's counters: [`apt_netcon::Stats::fields`], then `unparsed`.
pub(super) fn detector_counters(d: &Detector) -> String {
    let stats = d.stats();
    let mut line: Vec<String> = stats.fields().iter().map(|(k, v)| format!("{k}={v}")).collect();
    line.push(format!("unparsed={}", stats.unparsed));
    line.join(" ")
}
