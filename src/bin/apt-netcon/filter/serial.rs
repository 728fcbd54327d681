//! One detector: a regular file mapped a window at a time, other input
//! read in blocks; the output of each block is written by a second thread
//! while the detector goes on with the next (on a machine with a core to
//! spare, writing, and the kernel's copy into the page cache or the pipe
//! it costs, then takes no time from detection).

use apt_netcon::engine::footprint::Skipper;
use apt_netcon::{Config, Detector, Verdict};
use super::report::{Run, Totals};
use super::mapping::Map;
use super::{display_name, mapping, open_or_say, pipe_size, read_some, record_of, stdout_file, write_segs, Options, Seg, MAP_WINDOW, SERIAL_BLOCK};
use std::fs::File;
use std::io::{self, Seek};
use std::process::ExitCode;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

/// Blocks filtered but not yet written, at most (the detector waits for
/// the writer beyond that: memory stays bounded).
const WRITES_IN_FLIGHT: usize = 8;

/// Where a block's bytes lie, kept until the writer has written them.
enum Bytes {
    Mapped(Arc<Map>),
    Read(Vec<u8>),
    None,
}

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
        let data: &[u8] = match &job.bytes {
            Bytes::Mapped(m) => &m.bytes()[job.from..job.to],
            Bytes::Read(b) => &b[job.from..job.to],
            Bytes::None => &[],
        };
        write_segs(&mut out, data, &job.aux, &job.segs)?;
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

    /// A read buffer of at least `len` bytes (its contents undefined).
    fn buffer(&self, len: usize) -> Vec<u8> {
        let mut b = self.pool.lock().ok().and_then(|mut p| p.pop()).unwrap_or_default();
        if b.len() < len {
            b.resize(len, 0);
        }
        b
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
            eprintln!("apt-netcon: standard output: {e}");
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
    let mut s = Serial {
        buf: vec![0; SERIAL_BLOCK],
        lines: Lines {
            aux: Vec::new(),
            segs: Vec::new(),
            alerts_only: opts.alerts_only,
            skip: Skipper::new(det.rule(), config),
        },
    };
    for f in files {
        let Some(mut input) = open_or_say(f, &mut status) else { continue };
        let name = display_name(f);
        if let Err(e) = s.filter(&mut det, &mut run, name, &mut input, &mut out, f != "-") {
            match out.finish() {
                Err(w) => eprintln!("apt-netcon: writing output: {w}"),
                Ok(()) => eprintln!("apt-netcon: {name}: {e}"),
            }
            return ExitCode::from(1);
        }
    }
    // End of stream: events held back for max_lateness are released now;
    // their alerts follow the last record.
    det.finish();
    let mut lines = Vec::new();
    det.take_json_alerts(&mut lines);
    let last = Job { bytes: Bytes::None, from: 0, to: 0, segs: vec![Seg::Aux(0, lines.len())], aux: lines };
    if let Err(e) = out.send(last).and_then(|_| out.finish()).or_else(|e| out.finish().and(Err(e))) {
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
        out: &mut Output,
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
                let (aux, segs) = self.lines.block(det, run, name, &mut lineno, &self.buf[..upto]);
                // The block goes to the writer; what follows its last line
                // starts the next buffer.
                // (A buffer grown for a long line is not kept: back to the
                // block size.)
                let mut next = out.buffer(SERIAL_BLOCK.max(len - upto));
                next[..len - upto].copy_from_slice(&self.buf[upto..len]);
                let full = std::mem::replace(&mut self.buf, next);
                out.send(Job { bytes: Bytes::Read(full), from: 0, to: upto, aux, segs })?;
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
        out: &mut Output,
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
            let map = Arc::new(map);
            let skip = (pos - base) as usize;
            let data = &map.bytes()[skip..];
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
                let (aux, segs) = self.lines.block(det, run, name, lineno, &data[start..end]);
                out.send(Job { bytes: Bytes::Mapped(map.clone()), from: skip + start, to: skip + end, aux, segs })?;
                start = end;
            }
            pos += data.len() as u64;
            window = MAP_WINDOW;
        }
        Ok(pos)
    }
}

impl Lines {
    /// Filter the whole lines of `data`: what to write, as segments of
    /// `data` and of the side buffer returned with them.
    fn block(&mut self, det: &mut Detector, run: &mut Run, name: &str, lineno: &mut u64, data: &[u8]) -> (Vec<u8>, Vec<Seg>) {
        let upto = data.len();
        self.aux = Vec::new();
        self.segs = Vec::with_capacity(4);
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
        run.warnings(det);
        if run.progress {
            let s = det.stats();
            let skipped = self.skip.as_ref().map_or(0, Skipper::skipped);
            run.show_progress(name, s.records + skipped, s.annotated + s.standalone_alerts);
        }
        (std::mem::take(&mut self.aux), std::mem::take(&mut self.segs))
    }
}
