//! `apt-netcon serve`: the Vector sidecar.
//!
//! Vector cannot load native code, so the detector runs next to it: Vector's
//! `socket` sink (mode `tcp` or `unix`, `json` encoding, newline framing)
//! connects to `--listen`; every line is filtered exactly as the CLI filters
//! it; the stream goes on to `--forward`, a Vector `socket` source.
//!
//! # Threads
//!
//! * the main thread accepts connections (a non-blocking listener polled every
//!   20 ms, so that a signal is noticed), then runs the drain;
//! * one reader thread per accepted connection (at most `--max-connections`;
//!   further connections wait in the listen backlog): it reads, cuts lines,
//!   runs them through the detector and queues the output;
//! * one forwarder thread: it owns the forward connection, takes output from
//!   the queue and writes it.
//!
//! One [`Detector`] is shared by every connection behind a mutex: sequences
//! join by host, and a shell exec and its child's connection may reach us on
//! two connections (two Vector sinks, or a sink that reconnected), so a
//! detector per connection could miss alerts. A reader holds the lock while it
//! filters the lines of one read (at most 64 KiB) and queues their output, so
//! the forwarded stream is in the order the detector saw the records, and each
//! connection's records keep their order.
//!
//! # Bounds (back-pressure)
//!
//! The queue between readers and forwarder holds at most `--queue-bytes`
//! (default 4 MiB) of output not yet written to the forward connection,
//! counting the batch being written (plus, per connection, the read being
//! filtered and a partial line); a single piece larger than that is
//! admitted only when nothing else is outstanding. A reader blocks while the
//! queue is full, so it stops reading its socket and the kernel's flow control
//! pushes back on Vector. A line is buffered whole up to `--max-line-bytes`
//! (default 64 MiB); a longer line is cut into pieces of that size, each
//! forwarded (unevaluated in practice: too large or not JSON) as its own line.
//!
//! # Forwarding, reconnects, and what "exactly once" means here
//!
//! The forwarder connects when it has something to send, and reconnects with
//! a backoff of 100 ms doubling to 5 s while the forward address refuses or
//! fails. Before each write, and every 100 ms while idle, it checks whether
//! the peer has closed its side: Vector's TCP `socket` source, when it shuts
//! down or reloads, half-closes each connection and keeps reading until the
//! writer closes. On seeing that, the forwarder writes nothing more to that
//! connection and closes it — Vector has then read everything written to it
//! — and sends the rest on a new connection.
//!
//! Each write's byte count is tracked. A record counts as forwarded once its
//! last byte (the newline) was accepted by the kernel; when a write fails, the
//! record it was in the middle of is sent again, whole, on the next
//! connection, after the fully written ones. Therefore:
//!
//! * no record is forwarded twice as a complete line;
//! * records written to a connection that is then reset (the receiver crashed
//!   or closed without reading, or did not half-close first) can be lost:
//!   at most what the socket buffers held — TCP has no application
//!   acknowledgement, and Vector's `socket` source sends none;
//! * the old receiver may have seen the first part of a record that was then
//!   resent whole (a line without its newline, at the end of that connection;
//!   Vector reports it as a decoding error or drops it);
//! * apart from that, records read are lost only if the process is killed
//!   (SIGKILL, a crash), or on a second SIGTERM/SIGINT during the drain
//!   (counted and reported).
//!
//! # Drain (SIGTERM, SIGINT)
//!
//! On the first signal: the connections waiting in the backlog are accepted,
//! the listener is closed, and every client connection is half-closed — the
//! signal Vector's socket sink understands as "stop and reconnect later" —
//! while the readers keep reading until the client closes or
//! `--drain-timeout` (default 10 s) passes; a line a client had only partly
//! sent by then is forwarded as it is, like a last line without a newline
//! at the end of a connection (both get a newline). Then everything queued is
//! forwarded (however long the forward side takes to come back), the forward
//! connection is closed, the counters go to standard error, and the exit
//! status is 0. A second signal stops waiting: the records read but not
//! forwarded are counted, and the exit status is 1.
//!
//! # Warnings and counters while running
//!
//! The detector's warnings ([`Detector::take_warning`]: records that look
//! unparsed, such as Vector's `{"message": "…"}` when nothing parsed the
//! line; stage matches without `@timestamp`) go to standard error as
//! `apt-netcon serve: warning: …`, once and then every
//! [`apt_netcon::engine::detector::WARNING_EVERY`] occurrences. With the config's
//! `stats_interval` (default `0s`: off), the counters go to standard error
//! every interval of wall-clock time, idle or not, as one line:
//! `apt-netcon serve: counters: in=… …; detector: records=… …`.
//!
//! # Rule packs
//!
//! With `--rules DIR`, several `--rule`, or `rules`/`rules_dir` in the
//! config, the detector runs a rule pack: every record is forwarded
//! unchanged, followed at once by one alert record per rule it completes
//! (`event.kind: "signal"`, in the pack's rule order). A rule that does not
//! load stops the start (exit 2, every such rule listed with its reason)
//! unless `--skip-broken-rules` / `skip_broken_rules`; the skipped rules are
//! then logged at start (`skipped rule NAME: REASON`). With the counters
//! (at exit, and every `stats_interval`), one line per rule that alerted
//! (`rule "NAME" (RULE_ID): alerts=N records=N …`) and per skipped rule.

use apt_netcon::Detector;
use std::fmt;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

mod args;
mod forward;
mod net;
mod queue;
mod reader;
mod signals;
mod stats;

pub(crate) use args::{ServeArgs, ABOUT, AFTER_HELP};
use forward::Forwarder;
use net::{ListenError, Listener, Stream};
use queue::Queue;
use reader::read_connection;
use signals::{install_signal_handlers, signals};
use stats::{alerts_of, detector_counters, get, report, rule_lines, sidecar_counters_with, Counters};

/// How often blocked loops look at the signal flags.
const TICK: Duration = Duration::from_millis(100);
/// How often the accept loop polls.
const ACCEPT_POLL: Duration = Duration::from_millis(20);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes taken from the queue for one write.
const BATCH_BYTES: usize = 256 * 1024;
const READ_BYTES: usize = 64 * 1024;
/// How many unreadable records are reported one by one.
const REPORT_FIRST_ERRORS: u64 = 5;

// ---------------------------------------------------------------------------
// Shared state

struct Shared {
    det: Mutex<Detector>,
    queue: Queue,
    counters: Counters,
    draining: AtomicBool,
    drain_deadline: OnceLock<Instant>,
    max_line: usize,
}

fn log(msg: impl fmt::Display) {
    say!("apt-netcon serve: {msg}");
}

/// The config and rule (or rule pack), chosen as the CLI chooses them; with
/// the config's `stats_interval` (ms, 0: off).
fn load_detector(opts: &ServeArgs) -> Result<(Detector, u64), String> {
    let cfg = super::choose::config(opts.config.as_deref(), &opts.rules, &opts.rules_dirs, opts.skip_broken_rules)?;
    Ok((Detector::new(&cfg).map_err(|e| e.to_string())?, cfg.stats_interval_ms))
}

// ---------------------------------------------------------------------------
// Main

/// `apt-netcon serve`, its options parsed ([`ServeArgs`]).
pub fn main(opts: ServeArgs) -> ExitCode {
    if let Err(e) = opts.check() {
        // A usage error, as clap reports one (exit status 2).
        let _ = e.print();
        return ExitCode::from(e.exit_code() as u8);
    }
    let (det, stats_interval_ms) = match load_detector(&opts) {
        Ok(d) => d,
        Err(e) => {
            say!("apt-netcon serve: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(p) = det.pack() {
        log(format_args!("a pack of {} rules ({} skipped: do not load)", p.rules().len(), p.skipped().len()));
        for line in rule_lines(&det) {
            log(line);
        }
    }
    if let Err(e) = install_signal_handlers() {
        say!("apt-netcon serve: cannot install signal handlers: {e}");
        return ExitCode::from(1);
    }
    let listener = match Listener::bind(&opts.listen) {
        Ok(l) => l,
        Err(ListenError::BadAddress(e)) => {
            say!("apt-netcon serve: {e}");
            return ExitCode::from(2);
        }
        Err(ListenError::Io(e)) => {
            say!("apt-netcon serve: {e}");
            return ExitCode::from(1);
        }
    };
    let started = Instant::now();
    let sh = Arc::new(Shared {
        det: Mutex::new(det),
        queue: Queue::new(opts.queue_bytes),
        counters: Counters::default(),
        draining: AtomicBool::new(false),
        drain_deadline: OnceLock::new(),
        max_line: opts.max_line_bytes,
    });
    let fwd = Forwarder {
        sh: sh.clone(),
        addr: opts.forward.clone(),
        conn: None,
        pending: Vec::new(),
        backoff: BACKOFF_MIN,
        wrote: false,
        outage: None,
    };
    let forwarder =
        thread::Builder::new().name("forward".into()).spawn(move || fwd.run()).expect("spawn the forwarder");
    log(format_args!("listening on {}, forwarding to {}", opts.listen, opts.forward));

    let mut readers: Vec<JoinHandle<()>> = Vec::new();
    let spawn = |readers: &mut Vec<JoinHandle<()>>, s: Stream| {
        let conn = sh.counters.connections.fetch_add(1, Ordering::Relaxed) + 1;
        let sh2 = sh.clone();
        match thread::Builder::new().name(format!("conn-{conn}")).spawn(move || read_connection(sh2, s, conn)) {
            Ok(h) => readers.push(h),
            Err(e) => log(format_args!("connection {conn}: cannot start a thread: {e}")),
        }
    };
    // stats_interval: the counters every interval of wall-clock time.
    let stats_every = (stats_interval_ms > 0).then(|| Duration::from_millis(stats_interval_ms));
    let mut next_stats = stats_every.map(|d| started + d);
    while signals() == 0 {
        if let (Some(every), Some(next)) = (stats_every, next_stats) {
            // Not while a reader holds the detector (e.g. blocked on a full
            // queue): then at the next poll.
            if Instant::now() >= next {
                if let Ok(d) = sh.det.try_lock() {
                    let alerts = alerts_of(&d).to_string();
                    log(format_args!(
                        "counters: {}; detector: {}",
                        sidecar_counters_with(&sh, &alerts),
                        detector_counters(&d)
                    ));
                    for line in rule_lines(&d) {
                        log(format_args!("counters: {line}"));
                    }
                    next_stats = Some(Instant::now() + every);
                }
            }
        }
        readers.retain(|h| !h.is_finished());
        if readers.len() >= opts.max_connections {
            thread::sleep(ACCEPT_POLL);
            continue;
        }
        match listener.accept() {
            Ok(Some(s)) => spawn(&mut readers, s),
            Ok(None) => thread::sleep(ACCEPT_POLL),
            Err(e) => {
                log(format_args!("accept: {e}"));
                thread::sleep(ACCEPT_POLL);
            }
        }
    }

    // Drain. Connections already in the backlog may hold data Vector counts
    // as sent: take them too, then close the listener.
    let _ = sh.drain_deadline.set(Instant::now() + opts.drain_timeout);
    sh.draining.store(true, Ordering::SeqCst);
    while let Ok(Some(s)) = listener.accept() {
        spawn(&mut readers, s);
    }
    drop(listener);
    readers.retain(|h| !h.is_finished());
    log(format_args!(
        "signal received: draining {} connection(s) for up to {:.1} s (a second signal exits at once)",
        readers.len(),
        opts.drain_timeout.as_secs_f64()
    ));
    let mut told = false;
    let mut finished = false;
    let interrupted = loop {
        if signals() >= 2 {
            break true;
        }
        readers.retain(|h| !h.is_finished());
        if readers.is_empty() {
            if !finished {
                // End of input: events held back for max_lateness are
                // released; their alerts go out before the queue closes.
                finished = true;
                let mut out = Vec::new();
                if let Ok(mut d) = sh.det.lock() {
                    d.finish();
                    d.take_json_alerts(&mut out);
                }
                if !out.is_empty() {
                    sh.queue.push(out);
                }
            }
            sh.queue.close();
            if forwarder.is_finished() {
                break false;
            }
        }
        if !told && sh.drain_deadline.get().is_some_and(|d| Instant::now() >= *d + Duration::from_secs(1)) {
            told = true;
            log(format_args!(
                "waiting for the forward side: {} records not forwarded yet",
                get(&sh.counters.records_in).saturating_sub(get(&sh.counters.records_out))
            ));
        }
        thread::sleep(ACCEPT_POLL);
    };
    if !interrupted {
        let _ = forwarder.join();
    }
    report(&sh, started, interrupted);
    if interrupted {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
