//! One detector, three threads: the reading thread maps a regular file a
//! window at a time (other input: read in blocks) and finds each block's
//! line ends and the skipper's marks; the detector's thread filters the
//! block; the writing thread writes its output while the detector goes on
//! with the next. On a machine with a core to spare, reading, splitting,
//! the byte scan, writing and the kernel's copies they cost take no time
//! from detection. Bounded: 4 blocks read ahead, 8 waiting to be written.

use apt_netcon::engine::footprint::Skipper;
use apt_netcon::{Config, Detector, RecordError, Verdict};
use super::report::{Run, Totals};
use super::{display_name, mapping, pipe_size, read_some, record_of, stdout_file, write_segs, Bytes, LongLine, Options, Piece, Seg, MAP_WINDOW, SERIAL_BLOCK};
use std::fs::File;
use std::io;
use std::process::ExitCode;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

/// Blocks filtered but not yet written, at most (the detector waits for
/// the writer beyond that: memory stays bounded).
const WRITES_IN_FLIGHT: usize = 8;

/// One block's output: its segments of `bytes[from..to]` and of `aux`.
struct Job {
    bytes: Bytes,
    from: usize,
    to: usize,
    aux: Vec<u8>,
    segs: Vec<Seg>,
}

/// The writing thread: every job in order; the read buffers go back to
/// `pool`. Stops at the first error (the next send then fails).
fn writer(rx: Receiver<Job>, mut out: File, pool: Arc<Mutex<Vec<Vec<u8>>>>) -> io::Result<()> {
    for job in rx {
        write_segs(&mut out, job.bytes.get(job.from, job.to), &job.aux, &job.segs)?;
        if let Bytes::Read(b) = job.bytes {
            if let Ok(mut p) = pool.lock() {
                if p.len() < WRITES_IN_FLIGHT + 2 && b.len() <= SERIAL_BLOCK {
                    p.push(b);
                }
            }
        }
    }
    Ok(())
}

/// The writing thread's end of a run.
struct Output {
    tx: Option<SyncSender<Job>>,
    thread: Option<std::thread::JoinHandle<io::Result<()>>>,
    pool: Arc<Mutex<Vec<Vec<u8>>>>,
}

/// Said when the writer has stopped on an error (reported at the end).
const WRITER_STOPPED: &str = "the output could not be written";

impl Output {
    fn send(&mut self, job: Job) -> io::Result<()> {
        match self.tx.as_ref().map(|tx| tx.send(job)) {
            Some(Ok(())) => Ok(()),
            _ => Err(io::Error::other(WRITER_STOPPED)),
        }
    }

    /// Wait for every write: the first error, if any.
    fn finish(&mut self) -> io::Result<()> {
        self.tx = None;
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(io::Error::other("the writer thread panicked")),
            None => Ok(()),
        }
    }
}

/// Filter `files` with one detector.
pub fn run_serial(mut det: Detector, config: &Config, files: &[String], opts: &Options) -> ExitCode {
    let out = match stdout_file() {
        Ok(o) => o,
        Err(e) => {
            say!("apt-netcon: standard output: {e}");
            return ExitCode::from(1);
        }
    };
    let mut run = Run::new(opts);
    let mut status = ExitCode::SUCCESS;
    pipe_size::grow(&io::stdin());
    pipe_size::grow(&out);
    let pool = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = sync_channel(WRITES_IN_FLIGHT);
    let writer_pool = pool.clone();
    let thread = std::thread::spawn(move || writer(rx, out, writer_pool));
    let mut out = Output { tx: Some(tx), thread: Some(thread), pool };
    let mut lines = Lines { alerts_only: opts.alerts_only, skip: Skipper::new(det.rule(), config) };
    // The reading thread: the files in order, cut into blocks of whole
    // lines, each with its line ends and the byte scan's marks.
    let (feed_tx, feed) = sync_channel(BLOCKS_READ_AHEAD);
    let reader = Reader {
        skip: Skipper::new(det.rule(), config),
        pool: out.pool.clone(),
        tx: feed_tx,
        buf: Vec::new(),
        long: LongLine::new(config, SERIAL_BLOCK),
    };
    let paths: Vec<String> = files.to_vec();
    std::thread::spawn(move || reader.run(&paths));
    let (mut name, mut lineno) = ("", 0u64);
    let mut too_large = 0u64;
    for item in feed {
        match item {
            Feed::Start(i) => {
                name = display_name(&files[i]);
                lineno = 0;
            }
            Feed::NotOpened(msg) => {
                run.end_progress();
                say!("{msg}");
                status = ExitCode::from(1);
            }
            Feed::Block { bytes, from, to, ends, marks } => {
                let data = bytes.get(from, to);
                run.bytes += data.len() as u64;
                let (aux, segs) = lines.block(&mut det, &mut run, name, &mut lineno, data, &ends, marks);
                if out.send(Job { bytes, from, to, aux, segs }).is_err() {
                    if let Err(w) = out.finish() {
                        say!("apt-netcon: writing output: {w}");
                    }
                    return ExitCode::from(1);
                }
            }
            Feed::Piece(Piece { bytes, last }) => {
                // A line too long to hold, as it comes: unchanged.
                run.bytes += bytes.len() as u64;
                if let Some(blank) = last {
                    lineno += 1;
                    if blank {
                        run.empty += 1;
                    } else {
                        too_large += 1;
                        run.bad_record(name, lineno, RecordError::TooLarge);
                    }
                }
                let segs = if lines.alerts_only { Vec::new() } else { vec![Seg::Aux(0, bytes.len())] };
                if out.send(Job { bytes: Bytes::None, from: 0, to: 0, aux: bytes, segs }).is_err() {
                    if let Err(w) = out.finish() {
                        say!("apt-netcon: writing output: {w}");
                    }
                    return ExitCode::from(1);
                }
            }
            Feed::End => run.end_progress(),
            Feed::Failed(i, e) => {
                match out.finish() {
                    Err(w) => say!("apt-netcon: writing output: {w}"),
                    Ok(()) => say!("apt-netcon: {}: {e}", display_name(&files[i])),
                }
                return ExitCode::from(1);
            }
        }
    }
    // End of stream: events held back for max_lateness are released now;
    // their alerts follow the last record.
    det.finish();
    let mut tail = Vec::new();
    det.take_json_alerts(&mut tail);
    let last = Job { bytes: Bytes::None, from: 0, to: 0, segs: vec![Seg::Aux(0, tail.len())], aux: tail };
    let sent = out.send(last);
    // (The writer's own error, if it stopped, says more than the send's.)
    if let Err(e) = out.finish().and(sent) {
        say!("apt-netcon: writing output: {e}");
        return ExitCode::from(1);
    }
    det.flush();
    if !opts.quiet {
        let mut t = Totals::default();
        t.add(&det);
        t.add_skipped(lines.skip.as_ref().map_or(0, Skipper::skipped));
        t.add_too_large(too_large);
        run.report(&t);
    }
    status
}

/// Blocks read ahead of the detector, at most.
const BLOCKS_READ_AHEAD: usize = 4;

/// What the reading thread hands the detector's thread, in input order.
enum Feed {
    /// The file of this index starts.
    Start(usize),
    /// A file that could not be opened: the message.
    NotOpened(String),
    /// Whole lines of the current file, `bytes[from..to]`: where each line
    /// ends (its terminator included), and the byte scan's marks (`None`:
    /// the rule has no skipper).
    Block { bytes: Bytes, from: usize, to: usize, ends: Vec<usize>, marks: Option<Vec<usize>> },
    /// A piece of a line too long to hold ([`LongLine`]).
    Piece(Piece),
    /// The current file is done.
    End,
    /// Reading the file of this index failed: the run stops.
    Failed(usize, io::Error),
}

/// The reading thread: a regular file mapped a window at a time (its
/// pages mapped here, not on the detector's thread), other input read in
/// blocks; each block's lines found and its bytes scanned for the
/// skipper's needles before the detector gets it.
struct Reader {
    skip: Option<Skipper>,
    pool: Arc<Mutex<Vec<Vec<u8>>>>,
    tx: SyncSender<Feed>,
    buf: Vec<u8>,
    long: LongLine,
}

/// The detector's thread has stopped (a write failed): stop reading.
struct Gone;

impl Reader {
    fn run(mut self, files: &[String]) {
        for (i, f) in files.iter().enumerate() {
            let mut input = match super::open(f) {
                Ok(x) => x,
                Err(e) => {
                    if self.tx.send(Feed::NotOpened(format!("apt-netcon: cannot open {f}: {e}"))).is_err() {
                        return;
                    }
                    continue;
                }
            };
            if self.tx.send(Feed::Start(i)).is_err() {
                return;
            }
            match self.file(&mut input, f != "-") {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    let _ = self.tx.send(Feed::Failed(i, e));
                    return;
                }
                Err(Gone) => return,
            }
            if self.tx.send(Feed::End).is_err() {
                return;
            }
        }
    }

    /// Hand on the whole lines `bytes[from..to]`, with their line ends (the
    /// last line may lack its newline) and the skipper's marks.
    fn send(&mut self, bytes: Bytes, from: usize, to: usize) -> Result<(), Gone> {
        let data = bytes.get(from, to);
        // (Offsets as they are: a block of one line may pass 4 GiB.)
        let mut ends: Vec<usize> = memchr::memchr_iter(b'\n', data).map(|i| i + 1).collect();
        if ends.last().map_or(0, |&e| e) < data.len() {
            ends.push(data.len());
        }
        let marks = self.skip.as_mut().map(|s| s.marks_of(data));
        self.tx.send(Feed::Block { bytes, from, to, ends, marks }).map_err(|_| Gone)
    }

    /// One input: `Err(Gone)` when the detector's thread has stopped.
    fn file(&mut self, input: &mut File, mappable: bool) -> Result<io::Result<()>, Gone> {
        // A regular file is filtered where it lies in the page cache, mapped
        // a window at a time (no copy into a buffer); what follows its last
        // newline, and whatever it grew by meanwhile, is read as below.
        if mappable {
            let long = self.long.most_mapped();
            match mapping::map_regular(input, (MAP_WINDOW, long), SERIAL_BLOCK, |map, from, to| self.send(Bytes::Mapped(map.clone()), from, to).is_ok()) {
                Ok(true) => {}
                Ok(false) => return Err(Gone),
                Err(e) => return Ok(Err(e)),
            }
        }
        if self.buf.len() < SERIAL_BLOCK {
            self.buf = vec![0; SERIAL_BLOCK];
        }
        let mut len = 0; // bytes held: a partial line carried over
        loop {
            // One line longer than the buffer: grown, or, longer than any
            // record, on in pieces from here.
            if len == self.buf.len() {
                if let Some(piece) = self.long.full(&mut self.buf, &mut len, || vec![0; SERIAL_BLOCK]) {
                    self.tx.send(Feed::Piece(piece)).map_err(|_| Gone)?;
                }
            }
            let n = match read_some(input, &mut self.buf[len..]) {
                Ok(n) => n,
                Err(e) => return Ok(Err(e)),
            };
            let eof = n == 0;
            // The carried part holds no newline: look in what came.
            let mut unsearched = len;
            len += n;
            if let Some(piece) = self.long.after_read(&mut self.buf, &mut len, eof) {
                self.tx.send(Feed::Piece(piece)).map_err(|_| Gone)?;
                unsearched = 0;
                if self.long.active() {
                    continue;
                }
            }
            let upto = if eof {
                len
            } else {
                match memchr::memrchr(b'\n', &self.buf[unsearched..len]) {
                    Some(i) => unsearched + i + 1,
                    None => continue,
                }
            };
            if upto > 0 {
                // The block goes on; what follows its last line starts the
                // next buffer (a buffer grown for a long line is not kept:
                // back to the block size).
                let mut next = self.pool.lock().ok().and_then(|mut p| p.pop()).unwrap_or_default();
                let want = SERIAL_BLOCK.max(len - upto);
                if next.len() < want {
                    next.resize(want, 0);
                }
                next[..len - upto].copy_from_slice(&self.buf[upto..len]);
                let full = std::mem::replace(&mut self.buf, next);
                self.send(Bytes::Read(full), 0, upto)?;
                len -= upto;
            }
            if eof {
                return Ok(Ok(()));
            }
        }
    }
}

/// What filters a block of whole lines.
struct Lines {
    alerts_only: bool,
    /// Spares the detector the records its prefilter would rule out.
    skip: Option<Skipper>,
}

impl Lines {
    /// Filter the whole lines of `data` (ending at `ends`; `marks`: the
    /// skipper's, found by the reading thread): what to write, as segments
    /// of `data` and of a side buffer returned with them.
    #[allow(clippy::too_many_arguments)]
    fn block(
        &mut self,
        det: &mut Detector,
        run: &mut Run,
        name: &str,
        lineno: &mut u64,
        data: &[u8],
        ends: &[usize],
        marks: Option<Vec<usize>>,
    ) -> (Vec<u8>, Vec<Seg>) {
        let upto = data.len();
        let mut aux = Vec::new();
        let mut segs = Vec::with_capacity(4);
        let mut span = 0; // start of the untouched records not yet in `segs`
        let mut start = 0;
        if let (Some(s), Some(m)) = (&mut self.skip, marks) {
            s.set_marks(m);
        }
        for &end in ends {
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
                            segs.push(Seg::In(span, start));
                        }
                        let a = aux.len();
                        aux.extend_from_slice(bytes);
                        aux.extend_from_slice(&line[record.len()..]);
                        segs.push(Seg::Aux(a, aux.len()));
                        span = end;
                    }
                    Err(e) => run.bad_record(name, *lineno, e),
                }
                // Standalone alerts (max_lateness > 0) go right after the
                // record whose arrival released them: in stream position.
                if det.queued_alerts() > 0 {
                    if !self.alerts_only {
                        segs.push(Seg::In(span, end));
                    }
                    span = end;
                    let a = aux.len();
                    det.take_json_alerts(&mut aux);
                    segs.push(Seg::Aux(a, aux.len()));
                }
            }
            start = end;
        }
        if !self.alerts_only {
            segs.push(Seg::In(span, upto));
        }
        run.warnings(det);
        if run.progress {
            let s = det.stats();
            let skipped = self.skip.as_ref().map_or(0, Skipper::skipped);
            run.show_progress(name, s.records + skipped, s.annotated + s.standalone_alerts);
        }
        (aux, segs)
    }
}
