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

use apt_netcon::config::settings::Config;
use apt_netcon::config::rule::BUILTIN_NAMES;
use apt_netcon::{Detector, Verdict};
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: apt-netcon serve --listen ADDR --forward ADDR [--config FILE] [--rule NAME|FILE]...
                        [--rules DIR]... [--skip-broken-rules]
                        [--drain-timeout SECS] [--queue-bytes N] [--max-line-bytes N]
                        [--max-connections N]

The Vector sidecar. Accepts newline-delimited JSON on ADDR (--listen) from a
Vector `socket` sink, filters every line as `apt-netcon` does (unchanged, or
with the alert fields), and sends the lines, each ending in a newline, to ADDR
(--forward), a Vector `socket` source. Counters go to standard error at exit.

ADDR is HOST:PORT, tcp:HOST:PORT ([v6 address]:PORT) or unix:/PATH.

options:
  --listen ADDR          where Vector's socket sink connects
  --forward ADDR         where Vector's socket source listens (reconnects with
                         backoff, 100 ms doubling to 5 s)
  --config FILE          JSON config (as for apt-netcon)
  --rule NAME|FILE       a built-in rule or a rule file (as for apt-netcon);
                         given more than once: a rule pack of them all
  --rules DIR            a rule pack: every .toml and .eql file in DIR (as for
                         apt-netcon); each record goes on unchanged, followed by
                         one alert record per rule it completes
  --skip-broken-rules    with a pack: run the rules that load, report the others
  --drain-timeout SECS   on SIGTERM/SIGINT, how long clients may go on sending
                         (default 10)
  --queue-bytes N        output held for the forward side at most (default 4194304)
  --max-line-bytes N     longer lines are cut into pieces (default 67108864)
  --max-connections N    clients served at once (default 64)
  -h, --help             this text

exit status: 0 done (after a drain), 1 an I/O error (cannot listen) or an
interrupted drain, 2 a bad option, address, config or rule";

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
// Signals

/// SIGTERM/SIGINT received so far.
static SIGNALS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_signal(_sig: libc::c_int) {
    // Only an atomic add: async-signal-safe.
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

fn install_signal_handlers() -> io::Result<()> {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: `sigaction` is given a zero-initialised struct (a valid
        // value for this plain C struct) with an empty mask and a handler that
        // only touches an atomic; no Rust state is shared with the handler
        // beyond that static.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn signals() -> usize {
    SIGNALS.load(Ordering::SeqCst)
}

// ---------------------------------------------------------------------------
// Addresses and streams

#[derive(Debug, Clone, PartialEq, Eq)]
enum Addr {
    /// `host:port` as given (resolved when used).
    Tcp(String),
    Unix(PathBuf),
}

impl Addr {
    fn parse(s: &str) -> Result<Addr, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a path (unix:/PATH)".into());
            }
            return Ok(Addr::Unix(PathBuf::from(path)));
        }
        let hp = s.strip_prefix("tcp:").unwrap_or(s);
        let (host, port) = hp.rsplit_once(':').ok_or("expected HOST:PORT, tcp:HOST:PORT or unix:/PATH")?;
        if host.is_empty() {
            return Err("the host is empty".into());
        }
        let inner = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
        if inner.is_none() && host.contains(':') {
            return Err("write an IPv6 address in brackets: [ADDRESS]:PORT".into());
        }
        if inner.is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_err()) {
            return Err(format!("'{host}' is not an IPv6 address"));
        }
        port.parse::<u16>().map_err(|_| format!("'{port}' is not a port number (0-65535)"))?;
        Ok(Addr::Tcp(hp.to_string()))
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp(hp) => write!(f, "tcp:{hp}"),
            Addr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(on),
            Stream::Unix(s) => s.set_nonblocking(on),
        }
    }
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
        }
    }
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
        }
    }
    fn peer(&self) -> String {
        match self {
            Stream::Tcp(s) => s.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into()),
            Stream::Unix(_) => "unix".into(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

/// Why the listener could not be set up: a bad address (exit 2) or an I/O
/// error (exit 1).
enum ListenError {
    BadAddress(String),
    Io(String),
}

impl Listener {
    fn bind(addr: &Addr) -> Result<Listener, ListenError> {
        let l = match addr {
            Addr::Tcp(hp) => {
                let addrs: Vec<_> = hp
                    .to_socket_addrs()
                    .map_err(|e| ListenError::BadAddress(format!("--listen {addr}: cannot resolve: {e}")))?
                    .collect();
                if addrs.is_empty() {
                    return Err(ListenError::BadAddress(format!("--listen {addr}: resolves to no address")));
                }
                Listener::Tcp(
                    TcpListener::bind(&addrs[..]).map_err(|e| ListenError::Io(format!("--listen {addr}: {e}")))?,
                )
            }
            Addr::Unix(path) => {
                remove_stale_socket(path).map_err(|e| ListenError::Io(format!("--listen {addr}: {e}")))?;
                let l = UnixListener::bind(path).map_err(|e| ListenError::Io(format!("--listen {addr}: {e}")))?;
                Listener::Unix(l, path.clone())
            }
        };
        let r = match &l {
            Listener::Tcp(t) => t.set_nonblocking(true),
            Listener::Unix(u, _) => u.set_nonblocking(true),
        };
        r.map_err(|e| ListenError::Io(format!("--listen {addr}: {e}")))?;
        Ok(l)
    }

    /// A connection if one is waiting (the listener is non-blocking).
    fn accept(&self) -> io::Result<Option<Stream>> {
        let r = match self {
            Listener::Tcp(t) => t.accept().map(|(s, _)| Stream::Tcp(s)),
            Listener::Unix(u, _) => u.accept().map(|(s, _)| Stream::Unix(s)),
        };
        match r {
            Ok(s) => {
                s.set_nonblocking(false)?;
                Ok(Some(s))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A socket file left by a process that is gone is removed; one that still
/// answers is an error (another instance is listening).
fn remove_stale_socket(path: &PathBuf) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(io::ErrorKind::AddrInUse, "another process is listening on this socket"));
            }
            std::fs::remove_file(path)
        }
        Ok(_) => Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists and is not a socket")),
        Err(_) => Ok(()),
    }
}

fn connect(addr: &Addr) -> io::Result<Stream> {
    match addr {
        Addr::Tcp(hp) => {
            let mut last = io::Error::new(io::ErrorKind::NotFound, "resolves to no address");
            for a in hp.to_socket_addrs()? {
                match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        return Ok(Stream::Tcp(s));
                    }
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
        Addr::Unix(p) => UnixStream::connect(p).map(Stream::Unix),
    }
}

// ---------------------------------------------------------------------------
// The bounded queue between readers and the forwarder

struct QState {
    items: VecDeque<Vec<u8>>,
    /// Bytes queued plus bytes taken by the forwarder and not yet released.
    outstanding: usize,
    closed: bool,
}

struct Queue {
    cap: usize,
    state: Mutex<QState>,
    /// Signalled when bytes are released.
    room: Condvar,
    /// Signalled when items arrive or the queue closes.
    ready: Condvar,
}

enum Popped {
    Some,
    Timeout,
    Closed,
}

impl Queue {
    fn new(cap: usize) -> Queue {
        Queue {
            cap,
            state: Mutex::new(QState { items: VecDeque::new(), outstanding: 0, closed: false }),
            room: Condvar::new(),
            ready: Condvar::new(),
        }
    }

    /// Blocks while the queue is full (back-pressure).
    fn push(&self, item: Vec<u8>) {
        let mut s = self.state.lock().unwrap();
        while s.outstanding > 0 && s.outstanding + item.len() > self.cap {
            s = self.room.wait(s).unwrap();
        }
        s.outstanding += item.len();
        s.items.push_back(item);
        self.ready.notify_one();
    }

    /// Moves items into `into` (empty on entry) up to about `max` bytes.
    fn pop_into(&self, into: &mut Vec<u8>, max: usize, timeout: Duration) -> Popped {
        let mut s = self.state.lock().unwrap();
        if s.items.is_empty() && !s.closed {
            s = self.ready.wait_timeout(s, timeout).unwrap().0;
        }
        if s.items.is_empty() {
            return if s.closed { Popped::Closed } else { Popped::Timeout };
        }
        while let Some(front) = s.items.front() {
            if !into.is_empty() && into.len() + front.len() > max {
                break;
            }
            let item = s.items.pop_front().unwrap();
            into.extend_from_slice(&item);
        }
        Popped::Some
    }

    /// `n` bytes taken by the forwarder were written.
    fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut s = self.state.lock().unwrap();
        s.outstanding -= n;
        self.room.notify_all();
    }

    fn close(&self) {
        self.state.lock().unwrap().closed = true;
        self.ready.notify_all();
    }
}

// ---------------------------------------------------------------------------
// Shared state and counters

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    records_in: AtomicU64,
    records_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    empty: AtomicU64,
    bad: AtomicU64,
    split_lines: AtomicU64,
    forward_connects: AtomicU64,
    connect_failures: AtomicU64,
    /// Connections dropped on a write error.
    forward_errors: AtomicU64,
    /// Connections given up because the receiver closed (half-closed, as
    /// Vector does when it stops) or reset them, noticed before a write.
    peer_closes: AtomicU64,
    /// Records resent whole after part of them went to a dropped connection.
    resent_partial: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

struct Shared {
    det: Mutex<Detector>,
    queue: Queue,
    counters: Counters,
    draining: AtomicBool,
    drain_deadline: OnceLock<Instant>,
    max_line: usize,
}

fn log(msg: impl fmt::Display) {
    eprintln!("apt-netcon serve: {msg}");
}

// ---------------------------------------------------------------------------
// Readers

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

fn read_connection(sh: Arc<Shared>, mut s: Stream, conn: u64) {
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

// ---------------------------------------------------------------------------
// Forwarder

/// Why the connection is no longer usable, if it is not: the peer closed
/// its side (EOF) or the connection failed. Anything the peer sends (Vector
/// sends nothing) is read and discarded, so that our receive buffer never
/// holds data when we close (which would reset the connection and lose what
/// the peer has not read yet).
fn peer_closed(c: &mut Stream) -> Option<String> {
    if let Err(e) = c.set_nonblocking(true) {
        return Some(e.to_string());
    }
    let mut buf = [0u8; 512];
    let closed = loop {
        match c.read(&mut buf) {
            Ok(0) => break Some("the receiver closed the connection".to_string()),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Some(e.to_string()),
        }
    };
    match c.set_nonblocking(false) {
        Err(e) => Some(e.to_string()),
        Ok(()) => closed,
    }
}

struct Forwarder {
    sh: Arc<Shared>,
    addr: Addr,
    conn: Option<Stream>,
    /// Whole records not yet written (the head may have been written in
    /// part to a connection that failed: it is resent whole).
    pending: Vec<u8>,
    backoff: Duration,
    /// Whether the current connection has written at least one record.
    wrote: bool,
    /// The error of the current outage, to log each distinct one once.
    outage: Option<String>,
}

impl Forwarder {
    fn run(mut self) {
        loop {
            if self.pending.is_empty() {
                match self.sh.queue.pop_into(&mut self.pending, BATCH_BYTES, TICK) {
                    Popped::Some => {}
                    Popped::Timeout => {
                        if let Some(why) = self.conn.as_mut().and_then(peer_closed) {
                            self.close_graceful(&why);
                        }
                        continue;
                    }
                    Popped::Closed => break,
                }
            }
            if self.conn.is_none() && !self.connect() {
                continue;
            }
            if let Some(why) = self.conn.as_mut().and_then(peer_closed) {
                self.close_graceful(&why);
                continue;
            }
            self.write_pending();
        }
        if let Some(c) = self.conn.take() {
            let _ = c.shutdown(Shutdown::Write);
        }
    }

    fn connect(&mut self) -> bool {
        match connect(&self.addr) {
            Ok(c) => {
                let n = self.sh.counters.forward_connects.fetch_add(1, Ordering::Relaxed) + 1;
                match self.outage.take() {
                    Some(_) => log(format_args!("forward {}: connected", self.addr)),
                    None if n > 1 => log(format_args!("forward {}: reconnected", self.addr)),
                    None => {}
                }
                self.conn = Some(c);
                self.wrote = false;
                true
            }
            Err(e) => {
                add(&self.sh.counters.connect_failures, 1);
                let msg = e.to_string();
                if self.outage.as_deref() != Some(msg.as_str()) {
                    log(format_args!(
                        "forward {}: {msg}; retrying (backoff {} ms doubling to {} s), {} records waiting",
                        self.addr,
                        self.backoff.as_millis(),
                        BACKOFF_MAX.as_secs(),
                        get(&self.sh.counters.records_in).saturating_sub(get(&self.sh.counters.records_out))
                    ));
                    self.outage = Some(msg);
                }
                self.sleep_backoff();
                false
            }
        }
    }

    fn sleep_backoff(&mut self) {
        thread::sleep(self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    /// After a drop: reconnect at once if the connection was useful, else
    /// wait (a receiver that accepts and closes at once is not hammered).
    fn after_drop(&mut self) {
        if self.wrote {
            self.backoff = BACKOFF_MIN;
        } else {
            self.sleep_backoff();
        }
    }

    fn close_graceful(&mut self, why: &str) {
        if let Some(c) = self.conn.take() {
            add(&self.sh.counters.peer_closes, 1);
            log(format_args!("forward {}: {why}; reconnecting", self.addr));
            let _ = c.shutdown(Shutdown::Write);
        }
        self.after_drop();
    }

    fn write_pending(&mut self) {
        let c = self.conn.as_mut().unwrap();
        let mut off = 0;
        let result = loop {
            if off == self.pending.len() {
                break Ok(());
            }
            match c.write(&self.pending[off..]) {
                Ok(0) => break Err(io::Error::new(io::ErrorKind::WriteZero, "wrote nothing")),
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            }
        };
        // Records are complete once their newline was written.
        let done = match result {
            Ok(()) => self.pending.len(),
            Err(_) => self.pending[..off].iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1),
        };
        let records = self.pending[..done].iter().filter(|&&b| b == b'\n').count() as u64;
        add(&self.sh.counters.records_out, records);
        add(&self.sh.counters.bytes_out, done as u64);
        if records > 0 {
            self.wrote = true;
        }
        self.pending.drain(..done);
        self.sh.queue.release(done);
        if let Err(e) = result {
            add(&self.sh.counters.forward_errors, 1);
            if off > done {
                add(&self.sh.counters.resent_partial, 1);
            }
            log(format_args!(
                "forward {}: {e}; reconnecting ({} records to resend{})",
                self.addr,
                self.pending.iter().filter(|&&b| b == b'\n').count(),
                if off > done { ", the first of them was partly written" } else { "" }
            ));
            self.conn = None;
            self.after_drop();
        }
    }
}

// ---------------------------------------------------------------------------
// Options

struct Options {
    listen: Addr,
    forward: Addr,
    config: Option<String>,
    rules: Vec<String>,
    rules_dirs: Vec<String>,
    skip_broken_rules: bool,
    drain_timeout: Duration,
    queue_bytes: usize,
    max_line_bytes: usize,
    max_connections: usize,
}

fn parse_options(args: Vec<String>) -> Result<Option<Options>, String> {
    let (mut listen, mut forward, mut config) = (None, None, None);
    let (mut rules, mut rules_dirs, mut skip_broken_rules) = (Vec::new(), Vec::new(), false);
    let mut drain_timeout = Duration::from_secs(10);
    let mut queue_bytes = 4 << 20;
    let mut max_line_bytes = 64 << 20;
    let mut max_connections = 64;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline.clone().or_else(|| it.next()).ok_or_else(|| format!("{name} needs a value"))
        };
        let count = |name: &str, v: String| -> Result<usize, String> {
            match v.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{name} '{v}': expected a positive whole number")),
            }
        };
        match flag.as_str() {
            "--listen" => {
                let v = value("--listen")?;
                listen = Some(Addr::parse(&v).map_err(|e| format!("--listen '{v}': {e}"))?);
            }
            "--forward" => {
                let v = value("--forward")?;
                forward = Some(Addr::parse(&v).map_err(|e| format!("--forward '{v}': {e}"))?);
            }
            "--config" => config = Some(value("--config")?),
            "--rule" => rules.push(value("--rule")?),
            "--rules" => rules_dirs.push(value("--rules")?),
            "--skip-broken-rules" => skip_broken_rules = true,
            "--drain-timeout" => {
                let v = value("--drain-timeout")?;
                drain_timeout = match v.parse::<f64>() {
                    Ok(s) if s.is_finite() && (0.0..=86400.0).contains(&s) => Duration::from_secs_f64(s),
                    _ => return Err(format!("--drain-timeout '{v}': expected seconds (0 to 86400)")),
                };
            }
            "--queue-bytes" => queue_bytes = count("--queue-bytes", value("--queue-bytes")?)?,
            "--max-line-bytes" => max_line_bytes = count("--max-line-bytes", value("--max-line-bytes")?)?,
            "--max-connections" => max_connections = count("--max-connections", value("--max-connections")?)?,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            _ => return Err(format!("unknown argument '{arg}'")),
        }
    }
    let listen = listen.ok_or("--listen is required")?;
    let forward = forward.ok_or("--forward is required")?;
    if listen == forward {
        return Err(format!("--listen and --forward are the same address ({listen})"));
    }
    Ok(Some(Options {
        listen,
        forward,
        config,
        rules,
        rules_dirs,
        skip_broken_rules,
        drain_timeout,
        queue_bytes,
        max_line_bytes,
        max_connections,
    }))
}

/// The config and rule (or rule pack), chosen as the CLI chooses them; with
/// the config's `stats_interval` (ms, 0: off).
fn load_detector(opts: &Options) -> Result<(Detector, u64), String> {
    let mut cfg = match opts.config.as_deref() {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read config {path}: {e}"))?;
            Config::from_json(&text).map_err(|e| format!("{path}: {e}"))?
        }
        None => Config::default(),
    };
    if opts.rules.len() > 1 || !opts.rules_dirs.is_empty() {
        cfg.rules.extend(opts.rules.iter().cloned());
        for d in &opts.rules_dirs {
            cfg.set_str("rules_dir", d).map_err(|e| format!("--rules {d}: {e}"))?;
        }
    }
    if opts.skip_broken_rules {
        cfg.skip_broken_rules = true;
    }
    if cfg.is_pack() {
        return Ok((Detector::new(&cfg).map_err(|e| e.to_string())?, cfg.stats_interval_ms));
    }
    if let Some(r) = opts.rules.first().map(String::as_str) {
        if BUILTIN_NAMES.contains(&r) {
            cfg.rule = r.to_string();
            cfg.rule_file = None;
        } else if std::path::Path::new(r).is_file() {
            cfg.rule_file = Some(r.to_string());
        } else {
            return Err(format!(
                "--rule {r}: neither a built-in rule ({}) nor a readable file",
                BUILTIN_NAMES.join(", ")
            ));
        }
    }
    Ok((Detector::new(&cfg).map_err(|e| e.to_string())?, cfg.stats_interval_ms))
}

// ---------------------------------------------------------------------------
// Main

pub fn main(args: Vec<String>) -> ExitCode {
    let opts = match parse_options(args) {
        Ok(Some(o)) => o,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("apt-netcon serve: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (det, stats_interval_ms) = match load_detector(&opts) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("apt-netcon serve: {e}");
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
        eprintln!("apt-netcon serve: cannot install signal handlers: {e}");
        return ExitCode::from(1);
    }
    let listener = match Listener::bind(&opts.listen) {
        Ok(l) => l,
        Err(ListenError::BadAddress(e)) => {
            eprintln!("apt-netcon serve: {e}");
            return ExitCode::from(2);
        }
        Err(ListenError::Io(e)) => {
            eprintln!("apt-netcon serve: {e}");
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

fn report(sh: &Shared, started: Instant, interrupted: bool) {
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
fn sidecar_counters_with(sh: &Shared, alerts: &str) -> String {
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
fn alerts_of(d: &Detector) -> u64 {
    let s = d.stats();
    s.annotated + s.standalone_alerts
}

/// With a rule pack, one line per rule that alerted and per rule that did
/// not load (see [`apt_netcon::host::ffi::rules_report_lines`]); none for one rule.
fn rule_lines(d: &Detector) -> Vec<String> {
    if d.pack().is_none() {
        return Vec::new();
    }
    apt_netcon::host::ffi::rules_report_lines(&apt_netcon::host::ffi::rules_report(d))
}

/// The detector's counters: [`apt_netcon::Stats::fields`], then `unparsed`.
fn detector_counters(d: &Detector) -> String {
    let stats = d.stats();
    let mut line: Vec<String> = stats.fields().iter().map(|(k, v)| format!("{k}={v}")).collect();
    line.push(format!("unparsed={}", stats.unparsed));
    line.join(" ")
}
