//! N threads (`--threads N`): blocks of whole lines routed by the rule's
//! host key to N workers, put back together in input order by the writer.

use apt_netcon::engine::footprint::{Partitioner, Route, Skipper};
use apt_netcon::{Config, Detector, RecordError, Rule, Verdict};
use super::report::{Run, Totals};
use super::mapping::Map;
use super::{display_name, open_or_say, pipe_size, read_some, record_of, stdout_file, write_segs, LongLine, Options, Seg, READ_FAILED, THREAD_BLOCK};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};

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
    /// A piece of a line too long to hold ([`LongLine`]), not lines:
    /// `Some(last)`, `last` as [`super::Piece::last`].
    piece: Option<Option<bool>>,
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
    /// The same lines of a file mapped whole (of `size` bytes when the run
    /// began): read where they lie in the page cache, no copy.
    Mapped { map: Arc<Map>, file: Arc<File>, start: u64, end: u64 },
}

/// A block's whole lines: a range of a mapped file, or a buffer read from
/// `begin`.
enum Lines {
    Mapped(Arc<Map>, usize, usize),
    Owned { buf: Vec<u8>, begin: usize },
}

impl Lines {
    fn bytes(&self) -> &[u8] {
        match self {
            Lines::Mapped(map, from, to) => &map.bytes()[*from..*to],
            Lines::Owned { buf, begin } => &buf[*begin..],
        }
    }
}

/// The lines of `source` (read now when they come from a file: into a
/// buffer from `pool`), and the error if they could not be read.
fn take_lines(source: Option<Source>, pool: &Mutex<Vec<Vec<u8>>>) -> (Lines, Option<io::Error>) {
    let (file, start, end) = match source {
        None => return (Lines::Owned { buf: Vec::new(), begin: 0 }, None),
        Some(Source::Bytes(buf)) => return (Lines::Owned { buf, begin: 0 }, None),
        Some(Source::Mapped { map, file, start, end }) => match mapped_lines(&map, start, end) {
            Some((from, to)) => return (Lines::Mapped(map, from, to), None),
            None => (file, start, Some(end)),
        },
        Some(Source::File { file, start, end }) => (file, start, end),
    };
    let mut buf = pool.lock().unwrap().pop().unwrap_or_default();
    match read_lines_at(&file, start, end, &mut buf) {
        Ok(begin) => (Lines::Owned { buf, begin }, None),
        Err(e) => {
            buf.clear();
            (Lines::Owned { buf, begin: 0 }, Some(e))
        }
    }
}

/// The blocks of a regular file of `size` bytes, `block` bytes each (its
/// lines that start in each range): ranges of `map` when the file could be
/// mapped, but the last block, which reads on to the end of the file (it
/// may have grown since).
///
/// The last block is the one where the file's last line starts when that
/// line has no newline yet: the line is then read whole by one block,
/// with whatever the file grew by (a block before it would read the line
/// as it was, and the next would skip the rest: lost, and the line glued
/// to the next).
fn file_sources(file: &Arc<File>, map: Option<&Arc<Map>>, size: u64, block: u64) -> Vec<Source> {
    let mut count = size.div_ceil(block).max(1);
    if let Some(map) = map {
        let bytes = &map.bytes()[..(size as usize).min(map.bytes().len())];
        let last_line = memchr::memrchr(b'\n', bytes).map_or(0, |i| i + 1) as u64;
        if last_line < size {
            count = count.min(last_line / block + 1);
        }
    }
    (0..count)
        .map(|i| {
            let end = (i + 1 < count).then_some((i + 1) * block);
            match (map, end) {
                (Some(map), Some(end)) => Source::Mapped { map: map.clone(), file: file.clone(), start: i * block, end },
                _ => Source::File { file: file.clone(), start: i * block, end },
            }
        })
        .collect()
}

/// The lines of a block and where each goes.
struct Routed {
    lines: Lines,
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

impl Routed {
    /// The block's whole lines.
    fn lines(&self) -> &[u8] {
        self.lines.bytes()
    }
}

/// The lines that start in `[start, end)` of a mapped file: their byte
/// range in the mapping, or `None` when the last of them runs on past the
/// mapping's end (the file grew, or it ends without a newline: read it).
fn mapped_lines(map: &Map, start: u64, end: u64) -> Option<(usize, usize)> {
    let bytes = map.bytes();
    let (start, end) = (start as usize, (end as usize).min(bytes.len()));
    // A line starts at `start` when the byte before it is a newline (looked
    // for in the range only: a line that spans many ranges is not searched
    // once per range).
    let from = if start == 0 { 0 } else { memchr::memchr(b'\n', &bytes[start - 1..end]).map_or(end, |i| start + i) };
    if from >= end {
        return Some((from.min(bytes.len()), from.min(bytes.len())));
    }
    let to = memchr::memchr(b'\n', &bytes[end - 1..]).map(|i| end + i)?;
    Some((from, to))
}

impl Drop for Routed {
    fn drop(&mut self) {
        let Lines::Owned { buf, .. } = &mut self.lines else { return };
        let data = std::mem::take(buf);
        if let Ok(mut p) = self.pool.lock() {
            // (Not one grown for a long line.)
            if p.len() < 16 && data.capacity() <= 2 * THREAD_BLOCK {
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
    let first_line = |buf: &[u8]| if start == 0 { 0 } else { memchr::memchr(b'\n', buf).map_or(buf.len(), |i| i + 1) };
    let mut begin = first_line(buf);
    match end {
        None => {
            loop {
                let k = read_full_at(file, at, buf, 1 << 20)?;
                if k == 0 {
                    break;
                }
                at += k as u64;
            }
            // (Found again in all that was read: the first line may start
            // past the first read, which held no newline.)
            begin = first_line(buf);
        }
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
        let (lines, error) = take_lines(source, &self.pool);
        let data = lines.bytes();
        let mut ends = Vec::with_capacity(data.len() / 512);
        let mut routes = Vec::with_capacity(ends.capacity());
        let (mut skipped, mut blank) = (0, 0);
        if let Some(s) = skip.as_deref_mut().filter(|_| self.piece.is_none()) {
            s.scan(data);
        }
        // (A piece holds no line for the workers: the writer writes it.)
        let mut start = if self.piece.is_some() { data.len() } else { 0 };
        while start < data.len() {
            let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i + 1);
            let (record, is_blank) = record_of(&data[start..end]);
            let route = if is_blank {
                blank += 1;
                BLANK
            } else if skip.as_deref_mut().is_some_and(|s| s.skips(start, record)) {
                // Ruled out by its bytes, as the partitioner would.
                skipped += 1;
                SKIP
            } else {
                let routed = if skip.is_some() { p.route_unskipped(record) } else { p.route(record) };
                match routed {
                    Route::Skip => {
                        skipped += 1;
                        SKIP
                    }
                    Route::Any => owner as u8,
                    Route::Worker(w) => w as u8,
                }
            };
            ends.push(end as u32);
            routes.push(route);
            start = end;
        }
        let r = Routed { lines, pool: self.pool.clone(), ends, routes, skipped, blank, error };
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
                let line = &r.lines()[start..end];
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
                say!("apt-netcon: warning: {w}");
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
            say!("apt-netcon: standard output: {e}");
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
    let writer = std::thread::spawn(move || -> (Run, [u64; 2], io::Result<()>) {
        let mut uncounted = [0, 0];
        let res = write_blocks(&wrx, n, alerts_only, &writer_names, &mut run, &mut uncounted, &mut out);
        // Gone: the reader's next send fails, and it stops.
        drop(wrx);
        (run, uncounted, res)
    });

    // Read: blocks of whole lines. A regular file is cut into byte ranges
    // that the workers read themselves (in parallel); anything else is read
    // here and cut at the last newline.
    let pool: Arc<Mutex<Vec<Vec<u8>>>> = Arc::new(Mutex::new(Vec::new()));
    let mut status = ExitCode::SUCCESS;
    let mut seq = 0u64;
    let mut read_error = false;
    let new_block = |seq: u64, file: usize, first: bool, source: Source, piece: Option<Option<bool>>| {
        Arc::new(Block {
            seq,
            file,
            first,
            piece,
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
            // Mapped whole, its pages mapped as the workers first read them
            // (not mappable: read).
            let map = Map::lazy(&file, 0, size as usize).ok().map(Arc::new);
            for (i, source) in file_sources(&file, map.as_ref(), size, THREAD_BLOCK as u64).into_iter().enumerate() {
                let b = new_block(seq, fi, i == 0, source, None);
                seq += 1;
                if !send(b) {
                    break 'files;
                }
            }
            continue;
        }
        let mut carry: Vec<u8> = Vec::new();
        let mut first = true;
        let mut long = LongLine::new(config, THREAD_BLOCK);
        // A piece of a line too long to hold, as a block of its own.
        let send_piece = |piece: super::Piece, seq: &mut u64, first: &mut bool| -> bool {
            let b = new_block(*seq, fi, *first, Source::Bytes(piece.bytes), Some(piece.last));
            *seq += 1;
            *first = false;
            send(b)
        };
        loop {
            if !long.active() && long.grow(carry.len()).is_none() {
                // The line carried is longer than any record: on in pieces
                // from here.
                let piece = long.start(std::mem::take(&mut carry));
                if !send_piece(piece, &mut seq, &mut first) {
                    break 'files;
                }
            }
            let mut buf = pool.lock().unwrap().pop().unwrap_or_default();
            // Room for twice the line carried, but no more than a line
            // held whole may need.
            let want = THREAD_BLOCK.max(long.grow(carry.len()).unwrap_or(0));
            buf.resize(want, 0);
            buf[..carry.len()].copy_from_slice(&carry);
            let mut len = carry.len();
            let mut eof = false;
            while len < buf.len() {
                let room = buf.len() - len;
                match read_some(&mut input, &mut buf[len..]) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(k) => {
                        len += k;
                        // A short read: the input holds no more for now (a
                        // pipe). What came goes on if it ends a line (or is
                        // a piece of a long one): records and alerts are not
                        // held back until a block fills.
                        if k < room && (long.active() || memchr::memrchr(b'\n', &buf[len - k..len]).is_some()) {
                            break;
                        }
                    }
                    Err(e) => {
                        say!("apt-netcon: {}: {e}", names[fi]);
                        read_error = true;
                        break 'files;
                    }
                }
            }
            if let Some(piece) = long.after_read(&mut buf, &mut len, eof) {
                if !send_piece(piece, &mut seq, &mut first) {
                    break 'files;
                }
                if long.active() {
                    pool.lock().unwrap().push(buf);
                    continue;
                }
            }
            let upto = if eof { len } else { memchr::memrchr(b'\n', &buf[..len]).map_or(0, |i| i + 1) };
            carry.clear();
            carry.extend_from_slice(&buf[upto..len]);
            buf.truncate(upto);
            if upto > 0 {
                let b = new_block(seq, fi, first, Source::Bytes(buf), None);
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
    let (run, [skipped, too_large], res) = writer.join().expect("the writer thread panicked");
    let mut out = match stdout_file() {
        Ok(o) => o,
        Err(e) => {
            say!("apt-netcon: standard output: {e}");
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
        say!("apt-netcon: writing output: {e}");
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
        t.add_too_large(too_large);
        run.report(&t);
        let multi: u64 = ends.iter().map(|e| e.multi_valued).sum();
        if multi > 0 {
            say!(
                "apt-netcon: {multi} record(s) held several values in the host key: each went to the detector \
                 of its smallest value only (one detector joins it under every value; run with --threads 1 \
                 if such records matter)"
            );
        }
    }
    status
}

/// The writer: every block, in order, once every worker has done its lines.
/// `uncounted`: the records no detector counted, skipped (ruled out by their
/// bytes) and too large (passed on in pieces).
fn write_blocks(
    rx: &Receiver<Arc<Block>>,
    n: usize,
    alerts_only: bool,
    names: &[String],
    run: &mut Run,
    uncounted: &mut [u64; 2],
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
            say!("apt-netcon: {name}: {e}");
            return Err(io::Error::other(READ_FAILED));
        }
        let data = r.lines();
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
        if let Some(Some(blank)) = b.piece {
            // The last piece of a line too long to hold.
            lineno += 1;
            if blank {
                run.empty += 1;
            } else {
                records += 1;
                uncounted[1] += 1;
                run.bad_record(name, lineno, RecordError::TooLarge);
            }
        }
        uncounted[0] += r.skipped;
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

    /// Cut into blocks of any size, read or mapped, a file's lines come
    /// back whole, each once, in order: a line belongs to the block it
    /// starts in. A mapped block is read instead only when its last line
    /// runs past the mapping (the file's unterminated last line).
    #[test]
    fn blocks_give_every_line_once() {
        let text = b"{\"a\":1}\n\n{\"bb\":22}\r\nxyz\n\n\nlast line without newline";
        let path = std::env::temp_dir().join(format!("apt-netcon-ranges-{}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        let file = Arc::new(File::open(&path).unwrap());
        let map = Arc::new(Map::lazy(&file, 0, text.len()).unwrap());
        let len = text.len() as u64;
        let last_start = text.iter().rposition(|&b| b == b'\n').unwrap() as u64 + 1;
        let pool = Mutex::new(Vec::new());
        for size in 1..=len + 1 {
            for mapped in [None, Some(&map)] {
                let mut got = Vec::new();
                for source in file_sources(&file, mapped, len, size) {
                    if let Source::Mapped { map, start, end, .. } = &source {
                        if mapped_lines(map, *start, *end).is_none() {
                            assert!(*start <= last_start && last_start < *end, "range size {size}, block at {start}");
                        }
                    }
                    let (lines, error) = take_lines(Some(source), &pool);
                    assert!(error.is_none());
                    got.extend_from_slice(lines.bytes());
                }
                assert_eq!(got, text.to_vec(), "range size {size}, mapped: {}", mapped.is_some());
            }
        }
        std::fs::remove_file(path).unwrap();
    }
}
