//! Readers: one thread per client connection, cutting lines and running
//! them through the shared detector into the queue.

use apt_netcon::{Detector, Verdict};
use super::net::Stream;
use super::stats::{add, get};
use super::{log, Shared, READ_BYTES, REPORT_FIRST_ERRORS, TICK};
use std::io::{self, Read};
use std::net::Shutdown;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Filters one line (with its terminator, or none at the end of a stream or
/// for a piece of a cut line) into `out`, as the CLI does: the record's bytes
/// or the annotated bytes, then the line's own terminator (`\n` or `\r\n`),
/// or `\n` when it had none.
fn filter_line(det: &mut Detector, sh: &Shared, conn: u64, lineno: u64, line: &[u8], out: &mut Vec<u8>) {
    let c = &sh.counters;
    add(&c.records_in, 1);
    let mut end = line.len();
    let mut term: &[u8] = b"\n";
    if line.last() == Some(&b'\n') {
        end -= 1;
        if end > 0 && line[end - 1] == b'\r' {
            end -= 1;
        }
        term = &line[end..];
    }
    let record = &line[..end];
    if record.iter().all(|b| b.is_ascii_whitespace()) {
        add(&c.empty, 1);
        out.extend_from_slice(record);
    } else {
        match det.process(record) {
            Ok(Verdict::Unchanged) => out.extend_from_slice(record),
            Ok(Verdict::Annotated(bytes)) => out.extend_from_slice(bytes),
            Err(e) => {
                let n = c.bad.fetch_add(1, Ordering::Relaxed) + 1;
                if n <= REPORT_FIRST_ERRORS {
                    log(format_args!("connection {conn}, line {lineno}: {e} (passed through unchanged)"));
                }
                out.extend_from_slice(record);
            }
        }
    }
    out.extend_from_slice(term);
    // Standalone alerts (max_lateness > 0) follow the record that released them.
    det.take_json_alerts(out);
}

pub(super) fn read_connection(sh: Arc<Shared>, mut s: Stream, conn: u64) {
    let peer = s.peer();
    if let Err(e) = s.set_read_timeout(Some(TICK)) {
        log(format_args!("connection {conn} ({peer}): {e}"));
        return;
    }
    let mut buf = vec![0u8; READ_BYTES];
    let mut carry: Vec<u8> = Vec::new();
    let mut lineno = 0u64;
    let mut asked_to_stop = false;
    loop {
        if sh.draining.load(Ordering::SeqCst) {
            if !asked_to_stop {
                // Half-close: Vector's socket sink takes it as "stop writing
                // here"; we go on reading what it already sent.
                let _ = s.shutdown(Shutdown::Write);
                asked_to_stop = true;
            }
            if sh.drain_deadline.get().is_some_and(|d| Instant::now() >= *d) {
                log(format_args!("connection {conn} ({peer}): drain timeout, closing it"));
                break;
            }
        }
        let n = match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                log(format_args!("connection {conn} ({peer}): {e}"));
                break;
            }
        };
        add(&sh.counters.bytes_in, n as u64);
        let data = &buf[..n];
        if !data.contains(&b'\n') && carry.len() + n <= sh.max_line {
            carry.extend_from_slice(data);
            continue;
        }
        let mut out = Vec::with_capacity(n + n / 4 + 64);
        let mut det = sh.det.lock().unwrap();
        let mut rest = data;
        while let Some(p) = rest.iter().position(|&b| b == b'\n') {
            let (line, r) = rest.split_at(p + 1);
            rest = r;
            lineno += 1;
            if carry.is_empty() {
                filter_line(&mut det, &sh, conn, lineno, line, &mut out);
            } else {
                carry.extend_from_slice(line);
                cut_long(&mut det, &sh, conn, &mut lineno, &mut carry, &mut out);
                filter_line(&mut det, &sh, conn, lineno, &carry, &mut out);
                carry.clear();
            }
        }
        carry.extend_from_slice(rest);
        cut_long(&mut det, &sh, conn, &mut lineno, &mut carry, &mut out);
        log_warnings(&mut det);
        if !out.is_empty() {
            // Queued under the detector's lock: the output order is the
            // order in which the detector saw the records.
            sh.queue.push(out);
        }
        drop(det);
    }
    if !carry.is_empty() {
        // The last line had no newline: forwarded with one.
        lineno += 1;
        let mut out = Vec::with_capacity(carry.len() + 1);
        let mut det = sh.det.lock().unwrap();
        cut_long(&mut det, &sh, conn, &mut lineno, &mut carry, &mut out);
        filter_line(&mut det, &sh, conn, lineno, &carry, &mut out);
        log_warnings(&mut det);
        sh.queue.push(out);
    }
}

/// The detector's warnings (records that look unparsed, stage matches
/// without `@timestamp`: [`Detector::take_warning`]), to standard error.
fn log_warnings(det: &mut Detector) {
    while let Some(w) = det.take_warning() {
        log(format_args!("warning: {w}"));
    }
}

/// Forwards `carry`'s leading pieces of `max_line` bytes, each as a line,
/// while it holds more than `max_line` bytes.
fn cut_long(det: &mut Detector, sh: &Shared, conn: u64, lineno: &mut u64, carry: &mut Vec<u8>, out: &mut Vec<u8>) {
    if carry.len() <= sh.max_line {
        return;
    }
    let mut start = 0;
    while carry.len() - start > sh.max_line {
        add(&sh.counters.split_lines, 1);
        if get(&sh.counters.split_lines) == 1 {
            log(format_args!(
                "connection {conn}, line {lineno}: longer than --max-line-bytes, cut into pieces",
                lineno = *lineno
            ));
        }
        filter_line(det, sh, conn, *lineno, &carry[start..start + sh.max_line], out);
        start += sh.max_line;
    }
    carry.drain(..start);
}
