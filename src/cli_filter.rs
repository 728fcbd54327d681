//! The CLI's record loop: NDJSON in, NDJSON out, at the library's speed.
//!
//! A regular file is mapped a window at a time and filtered where it lies
//! in the page cache; other input is read in large blocks straight into one
//! buffer (no line copies). Each complete line is handed to the detector
//! where it lies, unless the rule's byte prefilter, run over the whole block
//! at once ([`apt_netcon::engine::footprint::Skipper`]), rules it out. Output is
//! written from that same buffer: the untouched records between two alerts
//! go out as one span, annotated records and standalone alerts from a small
//! side buffer, all of a block in one vectored write. Standard input and
//! output are read and written through their file descriptors, like files
//! (no line buffering).
//!
//! With `--threads N` ([`run_threaded`]) the reading thread cuts blocks of
//! whole lines; worker `b % N` routes the lines of block `b` by the rule's
//! host key ([`apt_netcon::engine::footprint::Partitioner`]); every worker runs its
//! own detector over the lines routed to it, block after block, in input
//! order; the writing thread puts each block back together in input order
//! (the outcome of every line is the one a single detector gives, so the
//! output is the same bytes).

use apt_netcon::engine::footprint::{Partitioner, Route, Skipper};
use apt_netcon::{Config, Detector, RecordError, Rule, Verdict};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice, Read, Seek, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The most `--threads`.
pub const MAX_THREADS: usize = 64;
/// Bytes read at a time on one thread: whatever is there up to this much
/// (a pipe gives what it holds, so records are not held back).
const SERIAL_BLOCK: usize = 1 << 20;
/// Bytes of a regular file mapped at a time on one thread.
const MAP_WINDOW: usize = 32 << 20;
/// Bytes of whole lines per block with threads (read until full).
const THREAD_BLOCK: usize = 2 << 20;
/// The writer's error when an input block could not be read (reported
/// already).
const READ_FAILED: &str = "an input could not be read";
/// How many bad records are reported by line number.
const REPORT_FIRST_ERRORS: u64 = 5;

pub struct Options {
    pub alerts_only: bool,
    pub quiet: bool,
    pub progress: bool,
}

/// A file to read, or standard input for "-".
/// [`open`], or `None` after saying why (and marking the run failed).
fn open_or_say(f: &str, status: &mut ExitCode) -> Option<File> {
    match open(f) {
        Ok(i) => Some(i),
        Err(e) => {
            eprintln!("apt-netcon: cannot open {f}: {e}");
            *status = ExitCode::from(1);
            None
        }
    }
}

fn open(f: &str) -> io::Result<File> {
    if f == "-" {
        Ok(File::from(io::stdin().as_fd().try_clone_to_owned()?))
    } else {
        File::open(f)
    }
}

fn display_name(f: &str) -> &str {
    if f == "-" {
        "<stdin>"
    } else {
        f
    }
}

fn stdout_file() -> io::Result<File> {
    Ok(File::from(io::stdout().as_fd().try_clone_to_owned()?))
}

/// A piece of output: a range of the input block, or of the side buffer.
#[derive(Clone, Copy)]
enum Seg {
    In(usize, usize),
    Aux(usize, usize),
}

/// Write every segment, in order, with as few system calls as it takes.
fn write_segs(out: &mut File, data: &[u8], aux: &[u8], segs: &[Seg]) -> io::Result<()> {
    let pieces: Vec<&[u8]> = segs
        .iter()
        .map(|s| match *s {
            Seg::In(a, b) => &data[a..b],
            Seg::Aux(a, b) => &aux[a..b],
        })
        .filter(|s| !s.is_empty())
        .collect();
    // (IoSlice::advance_slices is newer than the crate's MSRV: the partial
    // write is tracked here.)
    let (mut i, mut skip) = (0, 0);
    while i < pieces.len() {
        let end = (i + 512).min(pieces.len());
        let mut slices: Vec<IoSlice> = Vec::with_capacity(end - i);
        slices.push(IoSlice::new(&pieces[i][skip..]));
        slices.extend(pieces[i + 1..end].iter().map(|p| IoSlice::new(p)));
        let mut n = match out.write_vectored(&slices) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "failed to write whole buffer")),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        while n > 0 {
            let left = pieces[i].len() - skip;
            if n < left {
                skip += n;
                break;
            }
            n -= left;
            i += 1;
            skip = 0;
        }
    }
    Ok(())
}

/// Read-only mappings of regular files (the one-thread path).
mod mapping {
    use std::fs::File;
    use std::io;
    use std::os::fd::AsRawFd;

    pub fn page_size() -> u64 {
        // SAFETY: sysconf has no preconditions.
        let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if p > 0 {
            p as u64
        } else {
            4096
        }
    }

    /// `len` bytes of a file from `offset` (a multiple of the page size),
    /// mapped read-only and private, its pages mapped at once.
    pub struct Map {
        ptr: *mut libc::c_void,
        len: usize,
    }

    impl Map {
        pub fn new(file: &File, offset: u64, len: usize) -> io::Result<Map> {
            if len == 0 {
                return Err(io::ErrorKind::InvalidInput.into());
            }
            on_sigbus_exit();
            // SAFETY: a fresh mapping (no address given) of an open file;
            // the result is checked.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_POPULATE,
                    file.as_raw_fd(),
                    offset as libc::off_t,
                )
            };
            if ptr == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            Ok(Map { ptr, len })
        }

        pub fn bytes(&self) -> &[u8] {
            // SAFETY: `len` readable bytes, mapped until drop. (A file cut
            // shorter meanwhile raises SIGBUS on the bytes gone: see
            // `on_sigbus_exit`.)
            unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
        }
    }

    impl Drop for Map {
        fn drop(&mut self) {
            // SAFETY: the mapping made in `new`, unmapped once.
            unsafe { libc::munmap(self.ptr, self.len) };
        }
    }

    /// A mapped file cut shorter while it is filtered: report it and exit
    /// with status 1 (an input error), as a failed read would, instead of
    /// dying of the signal.
    fn on_sigbus_exit() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        extern "C" fn handler(_: libc::c_int) {
            const MSG: &[u8] = b"apt-netcon: an input file was cut shorter while it was read\n";
            // SAFETY: write(2) and _exit(2) are async-signal-safe.
            unsafe {
                libc::write(2, MSG.as_ptr() as *const libc::c_void, MSG.len());
                libc::_exit(1);
            }
        }
        ONCE.call_once(|| {
            // SAFETY: a zeroed sigaction with a handler of the right type.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = handler as extern "C" fn(libc::c_int) as usize;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
            }
        });
    }
}

/// Pipes on standard input and output: larger buffers, so that a block
/// goes through in a few system calls and wake-ups instead of one per 64 KiB.
mod pipe_size {
    use std::os::fd::{AsFd, AsRawFd};

    const WANT: libc::c_int = 1 << 20;

    pub fn grow(f: &impl AsFd) {
        let fd = f.as_fd().as_raw_fd();
        // SAFETY: fstat into a zeroed struct; fcntl on a pipe. Failures
        // leave the pipe as it was.
        unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(fd, &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFIFO {
                let now = libc::fcntl(fd, libc::F_GETPIPE_SZ);
                if now >= 0 && now < WANT {
                    libc::fcntl(fd, libc::F_SETPIPE_SZ, WANT);
                }
            }
        }
    }
}

/// Read into `buf[at..]`; 0 at end of input.
fn read_some(input: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match input.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

/// The record of a line (without `\n` or `\r\n`), and whether it is blank.
fn record_of(line: &[u8]) -> (&[u8], bool) {
    let mut end = line.len();
    if end > 0 && line[end - 1] == b'\n' {
        end -= 1;
        if end > 0 && line[end - 1] == b'\r' {
            end -= 1;
        }
    }
    let rec = &line[..end];
    (rec, rec.iter().all(|b| b.is_ascii_whitespace()))
}

/// Counters of the whole run (summed over the detectors).
#[derive(Default)]
struct Totals {
    fields: Vec<(&'static str, u64)>,
    records: u64,
    alerts: u64,
    errors: u64,
    excluded: u64,
    exceptions: Vec<(String, u64)>,
}

impl Totals {
    fn add(&mut self, det: &Detector) {
        let s = det.stats();
        add_counts(&mut self.fields, s.fields());
        self.records += s.records;
        self.alerts += s.annotated + s.standalone_alerts;
        self.errors += s.errors();
        self.excluded += s.excluded;
        add_counts(&mut self.exceptions, det.exception_counts());
    }

    /// Records read without a detector (ruled out by their bytes).
    fn add_skipped(&mut self, n: u64) {
        self.records += n;
        if let Some(r) = self.fields.iter_mut().find(|(k, _)| *k == "records") {
            r.1 += n;
        }
    }
}

/// Add named counters to a running sum (the same names, in the same order).
fn add_counts<K>(sum: &mut Vec<(K, u64)>, more: Vec<(K, u64)>) {
    if sum.is_empty() {
        *sum = more;
    } else {
        for (a, b) in sum.iter_mut().zip(more) {
            a.1 += b.1;
        }
    }
}

/// What the run reports on standard error.
struct Run {
    opts_quiet: bool,
    progress: bool,
    started: Instant,
    last_progress: Instant,
    bytes: u64,
    bad: u64,
    empty: u64,
}

impl Run {
    fn new(opts: &Options) -> Run {
        Run {
            opts_quiet: opts.quiet,
            progress: opts.progress,
            started: Instant::now(),
            last_progress: Instant::now(),
            bytes: 0,
            bad: 0,
            empty: 0,
        }
    }

    /// The detector's warnings (no alert can come, and why), on standard
    /// error.
    fn warnings(&self, det: &mut Detector) {
        while let Some(w) = det.take_warning() {
            if !self.opts_quiet {
                self.end_progress();
                eprintln!("apt-netcon: warning: {w}");
            }
        }
    }

    fn bad_record(&mut self, name: &str, lineno: u64, e: RecordError) {
        self.bad += 1;
        if self.bad <= REPORT_FIRST_ERRORS && !self.opts_quiet {
            eprintln!("apt-netcon: {name}:{lineno}: {e} (passed through unchanged)");
        }
    }

    fn show_progress(&mut self, name: &str, records: u64, alerts: u64) {
        if self.progress && self.last_progress.elapsed() >= Duration::from_secs(1) {
            self.last_progress = Instant::now();
            let secs = self.started.elapsed().as_secs_f64();
            eprint!(
                "\rapt-netcon: {name}: {records} records, {:.1} MB, {:.0} records/s, {alerts} alerts   ",
                self.bytes as f64 / 1e6,
                records as f64 / secs,
            );
        }
    }

    fn end_progress(&self) {
        if self.progress {
            eprint!("\r{:79}\r", "");
        }
    }

    fn report(&self, t: &Totals) {
        let secs = self.started.elapsed().as_secs_f64();
        eprintln!(
            "apt-netcon: {} records ({} empty lines) in {:.2} s, {} alerts, {} passed through unread (errors)",
            t.records, self.empty, secs, t.alerts, t.errors
        );
        if self.bad > REPORT_FIRST_ERRORS {
            eprintln!("apt-netcon: {} more bad records not shown", self.bad - REPORT_FIRST_ERRORS);
        }
        let line: Vec<String> = t.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        eprintln!("apt-netcon: {}", line.join(" "));
        if !t.exceptions.is_empty() {
            let items = apt_netcon::engine::exceptions::format_counts(&t.exceptions);
            eprintln!("apt-netcon: excluded={} by exception item: {items}", t.excluded);
        }
    }
}

// ---------------------------------------------------------------------------
// One thread

/// Filter `files` with one detector.
pub fn run_serial(mut det: Detector, config: &Config, files: &[String], opts: &Options) -> ExitCode {
    let mut out = match stdout_file() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("apt-netcon: standard output: {e}");
            return ExitCode::from(1);
        }
    };
    let mut run = Run::new(opts);
    let mut status = ExitCode::SUCCESS;
    let mut s = Serial {
        buf: vec![0; SERIAL_BLOCK],
        lines: Lines {
            aux: Vec::new(),
            segs: Vec::new(),
            alerts_only: opts.alerts_only,
            skip: Skipper::new(det.rule(), config),
        },
    };
    pipe_size::grow(&io::stdin());
    pipe_size::grow(&io::stdout());
    for f in files {
        let Some(mut input) = open_or_say(f, &mut status) else { continue };
        let name = display_name(f);
        if let Err(e) = s.filter(&mut det, &mut run, name, &mut input, &mut out, f != "-") {
            eprintln!("apt-netcon: {name}: {e}");
            return ExitCode::from(1);
        }
    }
    // End of stream: events held back for max_lateness are released now;
    // their alerts follow the last record.
    det.finish();
    let mut lines = Vec::new();
    det.take_json_alerts(&mut lines);
    if let Err(e) = out.write_all(&lines) {
        eprintln!("apt-netcon: writing output: {e}");
        return ExitCode::from(1);
    }
    det.flush();
    if !opts.quiet {
        let mut t = Totals::default();
        t.add(&det);
        t.add_skipped(s.lines.skip.as_ref().map_or(0, Skipper::skipped));
        run.report(&t);
    }
    status
}

struct Serial {
    buf: Vec<u8>,
    lines: Lines,
}

/// What filters a block of whole lines.
struct Lines {
    aux: Vec<u8>,
    segs: Vec<Seg>,
    alerts_only: bool,
    /// Spares the detector the records its prefilter would rule out.
    skip: Option<Skipper>,
}

impl Serial {
    fn filter(
        &mut self,
        det: &mut Detector,
        run: &mut Run,
        name: &str,
        input: &mut File,
        out: &mut File,
        mappable: bool,
    ) -> io::Result<()> {
        let mut lineno = 0u64;
        // A regular file is filtered where it lies in the page cache, mapped
        // a window at a time (no copy into a buffer); what follows its last
        // newline, and whatever it grew by meanwhile, is read as below.
        if mappable {
            if let Some(size) = input.metadata().ok().filter(|m| m.is_file()).map(|m| m.len()) {
                let done = self.filter_mapped(det, run, name, &mut lineno, input, size, out)?;
                input.seek(io::SeekFrom::Start(done))?;
            }
        }
        let mut len = 0; // bytes held: a partial line carried over
        loop {
            if len == self.buf.len() {
                // One line longer than the buffer: grow it.
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let n = read_some(input, &mut self.buf[len..])?;
            let eof = n == 0;
            len += n;
            let upto = if eof {
                len
            } else {
                // The carried part holds no newline: look in what came.
                match memchr::memrchr(b'\n', &self.buf[len - n..len]) {
                    Some(i) => len - n + i + 1,
                    None => continue,
                }
            };
            if upto > 0 {
                run.bytes += upto as u64;
                self.lines.block(det, run, name, &mut lineno, &self.buf[..upto], out)?;
                self.buf.copy_within(upto..len, 0);
                len -= upto;
            }
            if eof {
                break;
            }
        }
        run.end_progress();
        Ok(())
    }

    /// Filter the whole lines of the first `size` bytes of `file`, mapped a
    /// window at a time; returns where the lines filtered end (the rest, a
    /// line without its newline, is left to be read).
    #[allow(clippy::too_many_arguments)]
    fn filter_mapped(
        &mut self,
        det: &mut Detector,
        run: &mut Run,
        name: &str,
        lineno: &mut u64,
        file: &File,
        size: u64,
        out: &mut File,
    ) -> io::Result<u64> {
        let page = mapping::page_size();
        let mut pos = 0u64; // the start of the first line not filtered
        let mut window = MAP_WINDOW;
        while pos < size {
            let base = pos - pos % page;
            let len = (window as u64).min(size - base) as usize;
            let Ok(map) = mapping::Map::new(file, base, len) else {
                break; // not mappable after all: read it
            };
            let data = &map.bytes()[(pos - base) as usize..];
            let Some(last) = memchr::memrchr(b'\n', data) else {
                if base + len as u64 == size {
                    break;
                }
                window *= 2; // a line longer than the window
                continue;
            };
            let data = &data[..last + 1];
            let mut start = 0;
            while start < data.len() {
                let end = match data.get(start + SERIAL_BLOCK..) {
                    Some(rest) => memchr::memchr(b'\n', rest).map_or(data.len(), |i| start + SERIAL_BLOCK + i + 1),
                    None => data.len(),
                };
                run.bytes += (end - start) as u64;
                self.lines.block(det, run, name, lineno, &data[start..end], out)?;
                start = end;
            }
            pos += data.len() as u64;
            window = MAP_WINDOW;
        }
        Ok(pos)
    }
}

impl Lines {
    /// Filter the whole lines of `data` and write them out.
    fn block(
        &mut self,
        det: &mut Detector,
        run: &mut Run,
        name: &str,
        lineno: &mut u64,
        data: &[u8],
        out: &mut File,
    ) -> io::Result<()> {
        let upto = data.len();
        self.aux.clear();
        self.segs.clear();
        let mut span = 0; // start of the untouched records not yet in `segs`
        let mut start = 0;
        if let Some(s) = &mut self.skip {
            s.scan(data);
        }
        while start < upto {
            let end = memchr::memchr(b'\n', &data[start..]).map_or(upto, |i| start + i + 1);
            let line = &data[start..end];
            *lineno += 1;
            let (record, blank) = record_of(line);
            if blank {
                run.empty += 1;
            } else if self.skip.as_mut().is_some_and(|s| s.skips(start, record)) {
                // Unchanged, and no counter of the detector's but `records`
                // would move.
            } else {
                match det.process(record) {
                    Ok(Verdict::Unchanged) => {}
                    Ok(Verdict::Annotated(bytes)) => {
                        if !self.alerts_only {
                            self.segs.push(Seg::In(span, start));
                        }
                        let a = self.aux.len();
                        self.aux.extend_from_slice(bytes);
                        self.aux.extend_from_slice(&line[record.len()..]);
                        self.segs.push(Seg::Aux(a, self.aux.len()));
                        span = end;
                    }
                    Err(e) => run.bad_record(name, *lineno, e),
                }
                // Standalone alerts (max_lateness > 0) go right after the
                // record whose arrival released them: in stream position.
                if det.queued_alerts() > 0 {
                    if !self.alerts_only {
                        self.segs.push(Seg::In(span, end));
                    }
                    span = end;
                    let a = self.aux.len();
                    det.take_json_alerts(&mut self.aux);
                    self.segs.push(Seg::Aux(a, self.aux.len()));
                }
            }
            start = end;
        }
        if !self.alerts_only {
            self.segs.push(Seg::In(span, upto));
        }
        write_segs(out, data, &self.aux, &self.segs)?;
        run.warnings(det);
        if run.progress {
            let s = det.stats();
            let skipped = self.skip.as_ref().map_or(0, Skipper::skipped);
            run.show_progress(name, s.records + skipped, s.annotated + s.standalone_alerts);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// N threads

/// The routes of a block's lines beyond a worker index.
const SKIP: u8 = 255;
const BLANK: u8 = 254;

/// A block of whole lines of one input file, shared by the workers and the
/// writer.
struct Block {
    seq: u64,
    /// Index of the file (for messages; line numbers restart per file).
    file: usize,
    /// The first block of its file.
    first: bool,
    /// Where its bytes come from; taken by the worker that routes it.
    source: Mutex<Option<Source>>,
    pool: Arc<Mutex<Vec<Vec<u8>>>>,
    routed: Mutex<Option<Arc<Routed>>>,
    routed_cv: Condvar,
    results: Mutex<(usize, Vec<Vec<Event>>)>,
    results_cv: Condvar,
}

/// A block's bytes: read already (standard input, a pipe), or to be read
/// from a regular file by the worker that routes it, so that reading is
/// spread over the workers: the lines that START in `[start, end)` (`end`
/// None: to the end of the file).
enum Source {
    Bytes(Vec<u8>),
    File { file: Arc<File>, start: u64, end: Option<u64> },
}

/// The lines of a block and where each goes.
struct Routed {
    /// The block's bytes: whole lines, from `begin`.
    data: Vec<u8>,
    begin: usize,
    pool: Arc<Mutex<Vec<Vec<u8>>>>,
    /// End of each line (its terminator included); a line starts where the
    /// previous one ends.
    ends: Vec<u32>,
    routes: Vec<u8>,
    skipped: u64,
    blank: u64,
    /// The block could not be read.
    error: Option<io::Error>,
}

impl Drop for Routed {
    fn drop(&mut self) {
        let data = std::mem::take(&mut self.data);
        if let Ok(mut p) = self.pool.lock() {
            if p.len() < 16 {
                p.push(data);
            }
        }
    }
}

/// Read from `file` at `at`, appending to `buf`, until `want` bytes came or
/// the file ended; how many came.
fn read_full_at(file: &File, mut at: u64, buf: &mut Vec<u8>, want: usize) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let old = buf.len();
    buf.resize(old + want, 0);
    let mut got = 0;
    while got < want {
        match file.read_at(&mut buf[old + got..], at) {
            Ok(0) => break,
            Ok(k) => {
                got += k;
                at += k as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                buf.truncate(old);
                return Err(e);
            }
        }
    }
    buf.truncate(old + got);
    Ok(got)
}

/// The lines of `file` that start in `[start, end)` (`end` None: up to the
/// end of the file), read into `buf`; returns where they begin in `buf`.
fn read_lines_at(file: &File, start: u64, end: Option<u64>, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.clear();
    // From one byte before `start`: a line starts at `start` when that byte
    // is a newline.
    let from = start.saturating_sub(1);
    let mut at = from;
    at += read_full_at(file, at, buf, end.map_or(THREAD_BLOCK, |e| (e - from) as usize))? as u64;
    let begin = if start == 0 { 0 } else { memchr::memchr(b'\n', buf).map_or(buf.len(), |i| i + 1) };
    match end {
        None => loop {
            let k = read_full_at(file, at, buf, 1 << 20)?;
            if k == 0 {
                break;
            }
            at += k as u64;
        },
        Some(e) => {
            let lim = (e - from) as usize;
            if begin >= lim {
                buf.clear(); // no line starts in this block
                return Ok(0);
            }
            // The line holding the byte before `end` is the block's last:
            // read on to its newline.
            let mut look = lim - 1;
            loop {
                if let Some(i) = memchr::memchr(b'\n', &buf[look.min(buf.len())..]) {
                    buf.truncate(look + i + 1);
                    break;
                }
                look = buf.len();
                let k = read_full_at(file, at, buf, 64 << 10)?;
                if k == 0 {
                    break;
                }
                at += k as u64;
            }
        }
    }
    Ok(begin.min(buf.len()))
}

/// A line's outcome other than "unchanged".
struct Event {
    line: u32,
    annotated: Option<Vec<u8>>,
    error: Option<RecordError>,
    /// Standalone alerts released by this record (NDJSON).
    alerts: Vec<u8>,
}

impl Block {
    fn routed(&self) -> Arc<Routed> {
        let mut g = self.routed.lock().unwrap();
        loop {
            if let Some(r) = &*g {
                return r.clone();
            }
            g = self.routed_cv.wait(g).unwrap();
        }
    }

    fn route(&self, p: &mut Partitioner, mut skip: Option<&mut Skipper>, owner: usize) {
        let source = self.source.lock().unwrap().take();
        let mut error = None;
        let mut begin = 0;
        let buf = match source {
            Some(Source::Bytes(b)) => b,
            Some(Source::File { file, start, end }) => {
                let mut buf = self.pool.lock().unwrap().pop().unwrap_or_default();
                match read_lines_at(&file, start, end, &mut buf) {
                    Ok(b) => begin = b,
                    Err(e) => {
                        buf.clear();
                        error = Some(e);
                    }
                }
                buf
            }
            None => Vec::new(),
        };
        let data = &buf[begin..];
        let mut r = Routed {
            data: Vec::new(),
            begin,
            pool: self.pool.clone(),
            ends: Vec::with_capacity(data.len() / 512),
            routes: Vec::new(),
            skipped: 0,
            blank: 0,
            error,
        };
        r.routes.reserve(r.ends.capacity());
        if let Some(s) = skip.as_deref_mut() {
            s.scan(data);
        }
        let mut start = 0;
        while start < data.len() {
            let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i + 1);
            let (record, blank) = record_of(&data[start..end]);
            let route = if blank {
                r.blank += 1;
                BLANK
            } else if skip.as_deref_mut().is_some_and(|s| s.skips(start, record)) {
                // Ruled out by its bytes, as the partitioner would.
                r.skipped += 1;
                SKIP
            } else {
                match p.route(record) {
                    Route::Skip => {
                        r.skipped += 1;
                        SKIP
                    }
                    Route::Any => owner as u8,
                    Route::Worker(w) => w as u8,
                }
            };
            r.ends.push(end as u32);
            r.routes.push(route);
            start = end;
        }
        r.data = buf;
        *self.routed.lock().unwrap() = Some(Arc::new(r));
        self.routed_cv.notify_all();
    }

    fn report(&self, worker: usize, events: Vec<Event>) {
        let mut g = self.results.lock().unwrap();
        g.1[worker] = events;
        g.0 += 1;
        self.results_cv.notify_all();
    }

    fn wait_results(&self, n: usize) -> Vec<Event> {
        let mut g = self.results.lock().unwrap();
        while g.0 < n {
            g = self.results_cv.wait(g).unwrap();
        }
        let mut all: Vec<Event> = g.1.iter_mut().flat_map(std::mem::take).collect();
        all.sort_by_key(|e| e.line);
        all
    }
}

/// What a worker hands back at the end.
struct WorkerEnd {
    det: Detector,
    /// Alerts released at the end of the stream.
    alerts: Vec<u8>,
    /// Records routed whose host key held several values.
    multi_valued: u64,
}

fn worker(k: usize, n: usize, rule: Rule, config: Config, quiet: bool, rx: Receiver<Arc<Block>>) -> WorkerEnd {
    let mut det = Detector::with_rule(rule.clone(), &config);
    let mut part = Partitioner::new(&rule, &config, n).expect("checked before the threads start");
    let mut skip = Skipper::new(&rule, &config);
    let mut queue: VecDeque<Arc<Block>> = VecDeque::new();
    let lookahead = 2 * n;
    let mut open = true;
    loop {
        // Take the blocks that came, routing those this worker owns, so
        // that the others never wait long for them.
        while open && queue.len() < lookahead {
            let got = if queue.is_empty() { rx.recv().ok() } else { rx.try_recv().ok() };
            match got {
                Some(b) => {
                    if b.seq % n as u64 == k as u64 {
                        b.route(&mut part, skip.as_mut(), k);
                    }
                    queue.push_back(b);
                }
                None => {
                    if queue.is_empty() {
                        open = false;
                    }
                    break;
                }
            }
        }
        let Some(b) = queue.pop_front() else {
            if !open {
                break;
            }
            continue;
        };
        let r = b.routed();
        let mut events = Vec::new();
        let mut start = 0usize;
        for (i, (&end, &route)) in r.ends.iter().zip(&r.routes).enumerate() {
            let end = end as usize;
            if route as usize == k {
                let line = &r.data[r.begin + start..r.begin + end];
                let (record, _) = record_of(line);
                let mut ev = Event { line: i as u32, annotated: None, error: None, alerts: Vec::new() };
                let mut any = true;
                match det.process(record) {
                    Ok(Verdict::Unchanged) => any = false,
                    Ok(Verdict::Annotated(bytes)) => {
                        let mut a = Vec::with_capacity(bytes.len() + 2);
                        a.extend_from_slice(bytes);
                        a.extend_from_slice(&line[record.len()..]);
                        ev.annotated = Some(a);
                    }
                    Err(e) => ev.error = Some(e),
                }
                if det.queued_alerts() > 0 {
                    det.take_json_alerts(&mut ev.alerts);
                    any = true;
                }
                if any {
                    events.push(ev);
                }
            }
            start = end;
        }
        b.report(k, events);
        while let Some(w) = det.take_warning() {
            if !quiet {
                eprintln!("apt-netcon: warning: {w}");
            }
        }
    }
    det.finish();
    let mut alerts = Vec::new();
    det.take_json_alerts(&mut alerts);
    det.flush();
    WorkerEnd { det, alerts, multi_valued: part.multi_valued() }
}

/// Filter `files` with `n` detectors on `n` threads.
pub fn run_threaded(rule: Rule, config: &Config, n: usize, files: &[String], opts: &Options) -> ExitCode {
    let mut out = match stdout_file() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("apt-netcon: standard output: {e}");
            return ExitCode::from(1);
        }
    };
    pipe_size::grow(&io::stdin());
    pipe_size::grow(&io::stdout());
    let names: Arc<Vec<String>> = Arc::new(files.iter().map(|f| display_name(f).to_string()).collect());
    let mut senders: Vec<SyncSender<Arc<Block>>> = Vec::new();
    let mut handles = Vec::new();
    for k in 0..n {
        let (tx, rx) = sync_channel::<Arc<Block>>(4);
        senders.push(tx);
        let (rule, config, quiet) = (rule.clone(), config.clone(), opts.quiet);
        handles.push(std::thread::spawn(move || worker(k, n, rule, config, quiet, rx)));
    }
    let (wtx, wrx) = sync_channel::<Arc<Block>>(4 + 2 * n);
    let alerts_only = opts.alerts_only;
    let mut run = Run::new(opts);
    let writer_names = names.clone();
    let writer = std::thread::spawn(move || -> (Run, u64, io::Result<()>) {
        let mut skipped = 0;
        let res = write_blocks(&wrx, n, alerts_only, &writer_names, &mut run, &mut skipped, &mut out);
        // Gone: the reader's next send fails, and it stops.
        drop(wrx);
        (run, skipped, res)
    });

    // Read: blocks of whole lines. A regular file is cut into byte ranges
    // that the workers read themselves (in parallel); anything else is read
    // here and cut at the last newline.
    let pool: Arc<Mutex<Vec<Vec<u8>>>> = Arc::new(Mutex::new(Vec::new()));
    let mut status = ExitCode::SUCCESS;
    let mut seq = 0u64;
    let mut read_error = false;
    let new_block = |seq: u64, file: usize, first: bool, source: Source| {
        Arc::new(Block {
            seq,
            file,
            first,
            source: Mutex::new(Some(source)),
            pool: pool.clone(),
            routed: Mutex::new(None),
            routed_cv: Condvar::new(),
            results: Mutex::new((0, (0..n).map(|_| Vec::new()).collect())),
            results_cv: Condvar::new(),
        })
    };
    let send = |b: Arc<Block>| -> bool { senders.iter().all(|tx| tx.send(b.clone()).is_ok()) && wtx.send(b).is_ok() };
    'files: for (fi, f) in files.iter().enumerate() {
        let Some(mut input) = open_or_say(f, &mut status) else { continue };
        let size = match input.metadata() {
            Ok(m) if f != "-" && m.is_file() => Some(m.len()),
            _ => None,
        };
        if let Some(size) = size {
            let file = Arc::new(input);
            let block = THREAD_BLOCK as u64;
            let count = size.div_ceil(block).max(1);
            for i in 0..count {
                // The last block reads on to the end of the file.
                let end = (i + 1 < count).then_some((i + 1) * block);
                let b = new_block(seq, fi, i == 0, Source::File { file: file.clone(), start: i * block, end });
                seq += 1;
                if !send(b) {
                    break 'files;
                }
            }
            continue;
        }
        let mut carry: Vec<u8> = Vec::new();
        let mut first = true;
        loop {
            let mut buf = pool.lock().unwrap().pop().unwrap_or_default();
            let want = THREAD_BLOCK.max(carry.len() * 2);
            buf.resize(want, 0);
            buf[..carry.len()].copy_from_slice(&carry);
            let mut len = carry.len();
            let mut eof = false;
            while len < buf.len() {
                match read_some(&mut input, &mut buf[len..]) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(k) => len += k,
                    Err(e) => {
                        eprintln!("apt-netcon: {}: {e}", names[fi]);
                        read_error = true;
                        break 'files;
                    }
                }
            }
            let upto = if eof { len } else { memchr::memrchr(b'\n', &buf[..len]).map_or(0, |i| i + 1) };
            carry.clear();
            carry.extend_from_slice(&buf[upto..len]);
            buf.truncate(upto);
            if upto > 0 {
                let b = new_block(seq, fi, first, Source::Bytes(buf));
                seq += 1;
                first = false;
                if !send(b) {
                    break 'files;
                }
            } else {
                pool.lock().unwrap().push(buf);
            }
            if eof {
                break;
            }
        }
    }
    drop(senders);
    drop(wtx);
    let ends: Vec<WorkerEnd> = handles.into_iter().map(|h| h.join().expect("a worker thread panicked")).collect();
    let (run, skipped, res) = writer.join().expect("the writer thread panicked");
    let mut out = match stdout_file() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("apt-netcon: standard output: {e}");
            return ExitCode::from(1);
        }
    };
    let res = res.and_then(|_| ends.iter().try_for_each(|e| out.write_all(&e.alerts)));
    if let Err(e) = &res {
        if e.to_string() == READ_FAILED {
            return ExitCode::from(1);
        }
    }
    if let Err(e) = res {
        eprintln!("apt-netcon: writing output: {e}");
        return ExitCode::from(1);
    }
    if read_error {
        return ExitCode::from(1);
    }
    run.end_progress();
    if !opts.quiet {
        let mut t = Totals::default();
        for e in &ends {
            t.add(&e.det);
        }
        t.add_skipped(skipped);
        run.report(&t);
        let multi: u64 = ends.iter().map(|e| e.multi_valued).sum();
        if multi > 0 {
            eprintln!(
                "apt-netcon: {multi} record(s) held several values in the host key: each went to the detector \
                 of its smallest value only (one detector joins it under every value; run with --threads 1 \
                 if such records matter)"
            );
        }
    }
    status
}

/// The writer: every block, in order, once every worker has done its lines.
fn write_blocks(
    rx: &Receiver<Arc<Block>>,
    n: usize,
    alerts_only: bool,
    names: &[String],
    run: &mut Run,
    skipped: &mut u64,
    out: &mut File,
) -> io::Result<()> {
    let mut aux = Vec::new();
    let mut segs = Vec::new();
    let mut lineno = 0u64;
    let (mut records, mut alerts) = (0u64, 0u64);
    for b in rx.iter() {
        let r = b.routed();
        let events = b.wait_results(n);
        if b.first {
            lineno = 0;
        }
        let name = &names[b.file];
        if let Some(e) = &r.error {
            eprintln!("apt-netcon: {name}: {e}");
            return Err(io::Error::other(READ_FAILED));
        }
        let data = &r.data[r.begin..];
        aux.clear();
        segs.clear();
        let mut span = 0usize;
        for ev in &events {
            let i = ev.line as usize;
            let start = if i == 0 { 0 } else { r.ends[i - 1] as usize };
            let end = r.ends[i] as usize;
            if let Some(e) = ev.error {
                run.bad_record(name, lineno + i as u64 + 1, e);
            }
            if let Some(a) = &ev.annotated {
                alerts += 1;
                if !alerts_only {
                    segs.push(Seg::In(span, start));
                }
                let at = aux.len();
                aux.extend_from_slice(a);
                segs.push(Seg::Aux(at, aux.len()));
                span = end;
            }
            if !ev.alerts.is_empty() {
                alerts += memchr::memchr_iter(b'\n', &ev.alerts).count() as u64;
                if !alerts_only {
                    segs.push(Seg::In(span, end));
                }
                span = end;
                let at = aux.len();
                aux.extend_from_slice(&ev.alerts);
                segs.push(Seg::Aux(at, aux.len()));
            }
        }
        if !alerts_only {
            segs.push(Seg::In(span, data.len()));
        }
        write_segs(out, data, &aux, &segs)?;
        lineno += r.ends.len() as u64;
        *skipped += r.skipped;
        run.empty += r.blank;
        run.bytes += data.len() as u64;
        records += r.ends.len() as u64 - r.blank;
        run.show_progress(name, records, alerts);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cut into byte ranges of any size, a file's lines come back whole,
    /// each once, in order: a line belongs to the range it starts in.
    #[test]
    fn byte_ranges_give_every_line_once() {
        let text = b"{\"a\":1}\n\n{\"bb\":22}\r\nxyz\n\n\nlast line without newline";
        let path = std::env::temp_dir().join(format!("apt-netcon-ranges-{}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        let file = File::open(&path).unwrap();
        let len = text.len() as u64;
        for size in 1..=len + 1 {
            let count = len.div_ceil(size).max(1);
            let mut got = Vec::new();
            for i in 0..count {
                let end = (i + 1 < count).then_some((i + 1) * size);
                let mut buf = Vec::new();
                let begin = read_lines_at(&file, i * size, end, &mut buf).unwrap();
                got.extend_from_slice(&buf[begin..]);
            }
            assert_eq!(got, text.to_vec(), "range size {size}");
        }
        std::fs::remove_file(path).unwrap();
    }
}
