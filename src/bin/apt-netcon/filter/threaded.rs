//! N threads (`--threads N`): blocks of whole lines routed by the rule's
//! host key to N workers, put back together in input order by the writer.

use apt_netcon::engine::footprint::{Partitioner, Route, Skipper};
use apt_netcon::{Config, Detector, RecordError, Rule, Verdict};
use super::report::{Run, Totals};
use super::mapping::Map;
use super::{display_name, open_or_say, pipe_size, read_some, record_of, stdout_file, write_segs, LongLine, Options, Seg, THREAD_BLOCK};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Seek, Write};
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

/// A block's bytes: read already (standard input, a pipe, the end of a
/// regular file that is not mapped), or the lines of a regular file mapped
/// whole that START in `[start, end)`, found by the worker that routes the
/// block (so that finding them is spread over the workers) and read where
/// they lie in the page cache, no copy.
enum Source {
    Bytes(Vec<u8>),
    Mapped { map: Arc<Map>, start: u64, end: u64 },
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

/// The lines of `source`.
fn take_lines(source: Option<Source>) -> Lines {
    match source {
        None => Lines::Owned { buf: Vec::new(), begin: 0 },
        Some(Source::Bytes(buf)) => Lines::Owned { buf, begin: 0 },
        Some(Source::Mapped { map, start, end }) => {
            let (from, to) = mapped_lines(&map, start, end);
            Lines::Mapped(map, from, to)
        }
    }
}

/// The blocks of a regular file mapped whole (`map`): its lines up to
/// `rest` (where a line starts), in ranges of `block` bytes (each block:
/// the lines that start in its range).
///
/// The rest of the file (from [`last_line_start`]) is read as from a pipe (see
/// [`run_threaded`]): a line too long to hold goes on in pieces, however
/// long it grows, and one that is still being written is read whole, not
/// cut where the file ended when the run began.
fn file_sources(map: &Arc<Map>, rest: u64, block: u64) -> Vec<Source> {
    (0..rest.div_ceil(block)).map(|i| Source::Mapped { map: map.clone(), start: i * block, end: ((i + 1) * block).min(rest) }).collect()
}

/// Where the last line of the first `size` bytes of `file` starts when it
/// has no newline yet (else `size`): the file's end, whatever it grows by,
/// is read from there. Looked for backwards, `chunk` bytes at a time, in a
/// buffer (not in the mapping: the pages of a long last line stay out of
/// the process's memory). A file that shrank meanwhile is looked at as it
/// is now.
fn last_line_start(file: &File, size: u64, chunk: usize) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0; chunk.max(1)];
    let mut end = size;
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        match file.read_exact_at(chunk, start) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                let now = file.metadata()?.len();
                if now >= end {
                    return Err(e);
                }
                end = now;
                continue;
            }
            Err(e) => return Err(e),
        }
        if let Some(i) = memchr::memrchr(b'\n', chunk) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// The lines of a block and where each goes.
struct Routed {
    lines: Lines,
    pool: Arc<Mutex<Vec<Vec<u8>>>>,
    /// End of each line (its terminator included); a line starts where the
    /// previous one ends.
    ends: Vec<usize>,
    routes: Vec<u8>,
    skipped: u64,
    blank: u64,
}

impl Routed {
    /// The block's whole lines.
    fn lines(&self) -> &[u8] {
        self.lines.bytes()
    }
}

/// The lines that start in `[start, end)` of a mapped file: their byte
/// range in the mapping (the last of them ends at the first newline from
/// `end - 1` on; [`file_sources`] makes ranges only of lines whose newline
/// is in the mapping).
fn mapped_lines(map: &Map, start: u64, end: u64) -> (usize, usize) {
    let bytes = map.bytes();
    let (start, end) = (start as usize, (end as usize).min(bytes.len()));
    // A line starts at `start` when the byte before it is a newline (looked
    // for in the range only: a line that spans many ranges is not searched
    // once per range).
    let from = if start == 0 { 0 } else { memchr::memchr(b'\n', &bytes[start - 1..end]).map_or(end, |i| start + i) };
    if from >= end {
        return (from.min(bytes.len()), from.min(bytes.len()));
    }
    let to = memchr::memchr(b'\n', &bytes[end - 1..]).map_or(bytes.len(), |i| end + i);
    (from, to)
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
        let lines = take_lines(source);
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
            // (As it is: a mapped block of one line may pass 4 GiB.)
            ends.push(end);
            routes.push(route);
            start = end;
        }
        let r = Routed { lines, pool: self.pool.clone(), ends, routes, skipped, blank };
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
    let (alerts_only, progress) = (opts.alerts_only, opts.progress);
    let mut run = Run::new(opts);
    let writer_names = names.clone();
    let writer = std::thread::spawn(move || -> (Run, [u64; 2], io::Result<()>) {
        let mut uncounted = [0, 0];
        let res = write_blocks(&wrx, n, alerts_only, &writer_names, &mut run, &mut uncounted, &mut out);
        // Gone: the reader's next send fails, and it stops.
        drop(wrx);
        (run, uncounted, res)
    });

    // Read: blocks of whole lines. A regular file mapped is cut into byte
    // ranges whose lines the workers find themselves (in parallel); anything
    // else, and the rest of such a file (see `file_sources`), is read here
    // and cut at the last newline.
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
        let Some(mut input) = open_or_say(f, &mut status, progress) else { continue };
        let mut first = true;
        let size = match input.metadata() {
            Ok(m) if f != "-" && m.is_file() => Some(m.len()),
            _ => None,
        };
        // Mapped whole, its pages mapped as the workers first read them (not
        // mappable, or empty: read).
        if let Some((size, map)) = size.and_then(|size| Some((size, Map::lazy(&input, 0, size as usize).ok()?))) {
            let rest = match last_line_start(&input, size, 1 << 20) {
                Ok(rest) => rest,
                Err(e) => {
                    say!("apt-netcon: {}: {e}", names[fi]);
                    read_error = true;
                    break 'files;
                }
            };
            for source in file_sources(&Arc::new(map), rest, THREAD_BLOCK as u64) {
                let b = new_block(seq, fi, first, source, None);
                seq += 1;
                first = false;
                if !send(b) {
                    break 'files;
                }
            }
            if let Err(e) = input.seek(io::SeekFrom::Start(rest)) {
                say!("apt-netcon: {}: {e}", names[fi]);
                read_error = true;
                break 'files;
            }
        }
        let mut carry: Vec<u8> = Vec::new();
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
        let data = r.lines();
        aux.clear();
        segs.clear();
        let mut span = 0usize;
        for ev in &events {
            let i = ev.line as usize;
            let start = if i == 0 { 0 } else { r.ends[i - 1] };
            let end = r.ends[i];
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

    /// Cut into blocks of any size, a mapped file's lines come back whole,
    /// each once, in order (a line belongs to the block it starts in), up
    /// to the rest: from the start of its last line when it has no newline.
    #[test]
    fn blocks_give_every_line_once() {
        let text = b"{\"a\":1}\n\n{\"bb\":22}\r\nxyz\n\n\nlast line without newline";
        let path = std::env::temp_dir().join(format!("apt-netcon-ranges-{}", std::process::id()));
        for len in [text.len(), text.len() - "last line without newline".len(), 0] {
            std::fs::write(&path, &text[..len]).unwrap();
            let file = File::open(&path).unwrap();
            let Ok(map) = Map::lazy(&file, 0, len) else {
                assert_eq!(len, 0, "a file of {len} bytes is mapped");
                continue;
            };
            let map = Arc::new(map);
            let rest = text[..len].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            for size in 1..=len as u64 + 1 {
                let mut got = Vec::new();
                let from = last_line_start(&file, len as u64, size as usize).unwrap();
                assert_eq!(from, rest as u64, "range size {size}");
                // Its size taken before it shrank: the file as it is.
                assert_eq!(last_line_start(&file, len as u64 + 7, size as usize).unwrap(), from, "range size {size}, shrunk");
                for source in file_sources(&map, from, size) {
                    let Source::Mapped { start, end, .. } = &source else { unreachable!() };
                    assert!(start < end && *end <= from, "range size {size}, block {start}..{end}");
                    got.extend_from_slice(take_lines(Some(source)).bytes());
                }
                assert_eq!(got, text[..rest].to_vec(), "range size {size}, {len} bytes");
            }
        }
        std::fs::remove_file(path).unwrap();
    }
}
