//! The CLI's record loop: NDJSON in, NDJSON out, at the library's speed.
//!
//! A regular file is mapped a window at a time and filtered where it lies
//! in the page cache; other input is read in large blocks straight into one
//! buffer (no line copies). Each complete line is handed to the detector
//! where it lies, unless the rule's byte prefilter, run over the whole block
//! at once ([`apt_netcon::engine::footprint::Skipper`]), rules it out. Output is
//! written from that same buffer: the untouched records between two alerts
//! go out as one span, annotated records and standalone alerts from a small
//! side buffer, all of a block in one vectored write. On one detector
//! ([`run_serial`]) a reading thread, the detector's thread and a writing
//! thread work on three blocks at once. Standard input and
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
//!
//! Here: the pieces both share (opening inputs, the vectored writer, line
//! ends); [`serial`] and [`threaded`] are the two loops, [`report`] what a
//! run reports, [`mapping`] and [`pipe_size`] the system calls behind them.

use apt_netcon::Config;
use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;
use std::os::fd::AsFd;
use std::process::ExitCode;

mod mapping;
pub(crate) use mapping::{map_regular, Map};
pub(crate) mod pipe_size;
pub(crate) mod report;
mod serial;
mod threaded;

pub use serial::run_serial;
pub use threaded::run_threaded;

/// The most `--threads`.
pub const MAX_THREADS: usize = 64;
/// Bytes read at a time on one thread: whatever is there up to this much
/// (a pipe gives what it holds, so records are not held back).
const SERIAL_BLOCK: usize = 1 << 20;
/// Bytes of a regular file mapped at a time on one thread.
const MAP_WINDOW: usize = 32 << 20;
/// Bytes of whole lines per block with threads (read until full, or from a
/// pipe until it holds no more).
const THREAD_BLOCK: usize = 2 << 20;
/// How many bad records are reported by line number.
pub(crate) const REPORT_FIRST_ERRORS: u64 = 5;

pub struct Options {
    pub alerts_only: bool,
    pub quiet: bool,
    pub progress: bool,
}

/// A file to read, or standard input for "-".
/// [`open`], or `None` after saying why (and marking the run failed; over
/// the progress line, when one is shown, not after it).
fn open_or_say(f: &str, status: &mut ExitCode, progress: bool) -> Option<File> {
    match open(f) {
        Ok(i) => Some(i),
        Err(e) => {
            report::clear_progress_line(progress);
            say!("apt-netcon: cannot open {f}: {e}");
            *status = ExitCode::from(1);
            None
        }
    }
}

pub(crate) fn open(f: &str) -> io::Result<File> {
    if f == "-" {
        Ok(File::from(io::stdin().as_fd().try_clone_to_owned()?))
    } else {
        File::open(f)
    }
}

pub(crate) fn display_name(f: &str) -> &str {
    if f == "-" {
        "<stdin>"
    } else {
        f
    }
}

pub(crate) fn stdout_file() -> io::Result<File> {
    Ok(File::from(io::stdout().as_fd().try_clone_to_owned()?))
}

/// Where a block's bytes lie, kept until the writer has written them.
pub(crate) enum Bytes {
    /// A window of a regular file, mapped.
    Mapped(Arc<Map>),
    /// Read into a buffer (standard input, a pipe, a file's unfinished end).
    Read(Vec<u8>),
    None,
}

impl Bytes {
    pub(crate) fn get(&self, from: usize, to: usize) -> &[u8] {
        match self {
            Bytes::Mapped(m) => &m.bytes()[from..to],
            Bytes::Read(b) => &b[from..to],
            Bytes::None => &[],
        }
    }
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
        .collect();
    write_pieces(out, &pieces)
}

/// Write every piece, in order, with as few system calls as the kernel
/// allows (each call takes up to 512 of them, from where they lie: no copy
/// into a buffer).
pub(crate) fn write_pieces(out: &mut File, pieces: &[&[u8]]) -> io::Result<()> {
    let pieces: Vec<&[u8]> = pieces.iter().copied().filter(|s| !s.is_empty()).collect();
    // (The partial write is tracked here: IoSlice::advance_slices was newer
    // than the crate's MSRV, 1.74, when this was written.)
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

/// Read into `buf[at..]`; 0 at end of input.
fn read_some(input: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match input.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

/// A line too long to hold: once a partial line (no newline yet) reaches
/// `cap` bytes, its record is surely longer than `max_record_bytes` — one
/// no detector reads — so it is passed on in pieces as they are read, not
/// gathered (memory stays bounded however long a line is: `cat` of a binary
/// file, a stream that never sends a newline). The pieces are written
/// unchanged; at its end the line counts as one record too large (or as a
/// blank line, if it held only whitespace), reported with its line number.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LongLine {
    cap: usize,
    /// Inside such a line: whether it held only whitespace so far.
    blank: Option<bool>,
}

/// A piece of a [`LongLine`].
pub(crate) struct Piece {
    pub(crate) bytes: Vec<u8>,
    /// The line's last piece (its newline included, or the end of its file):
    /// whether the whole line was blank.
    pub(crate) last: Option<bool>,
}

impl LongLine {
    /// For buffers of `block` bytes: lines held up to `max_record_bytes`
    /// and their terminator.
    pub(crate) fn new(config: &Config, block: usize) -> LongLine {
        LongLine { cap: config.max_record_bytes.saturating_add(2).max(block), blank: None }
    }

    /// The most bytes of one line mapped whole from a file: twice what a
    /// buffer holds of one (the rest is read, and such a line goes on in
    /// pieces).
    pub(crate) fn most_mapped(&self) -> usize {
        self.cap.saturating_mul(2)
    }

    /// Inside a line passed on in pieces.
    pub(crate) fn active(&self) -> bool {
        self.blank.is_some()
    }

    /// The size to grow a full buffer of `len` bytes (one partial line) to,
    /// or `None` when that line is to go on in pieces.
    pub(crate) fn grow(&self, len: usize) -> Option<usize> {
        (len < self.cap).then(|| len.saturating_mul(2).min(self.cap))
    }

    /// Start a long line with `line`, a whole buffer holding its start (no
    /// newline): the first piece, without a copy.
    pub(crate) fn start(&mut self, line: Vec<u8>) -> Piece {
        self.blank = Some(line.iter().all(u8::is_ascii_whitespace));
        Piece { bytes: line, last: None }
    }

    /// `buf`, full of one partial line (`*len == buf.len()`): grown, or,
    /// once the line is surely too long, handed on whole as its first piece
    /// (`buf` then `fresh()`, `*len` 0).
    pub(crate) fn full(&mut self, buf: &mut Vec<u8>, len: &mut usize, fresh: impl FnOnce() -> Vec<u8>) -> Option<Piece> {
        match self.grow(*len) {
            Some(size) => {
                buf.resize(size, 0);
                None
            }
            None => {
                *len = 0;
                Some(self.start(std::mem::replace(buf, fresh())))
            }
        }
    }

    /// After a read into `buf[..*len]` while [`LongLine::active`]: the
    /// line's next piece (the bytes after it moved to the front of `buf`,
    /// `*len` what is left); `None` outside a long line.
    pub(crate) fn after_read(&mut self, buf: &mut [u8], len: &mut usize, eof: bool) -> Option<Piece> {
        if !self.active() {
            return None;
        }
        let (piece, took) = self.piece(&buf[..*len], eof);
        buf.copy_within(took..*len, 0);
        *len -= took;
        Some(piece)
    }

    /// The next piece from `buf`: up to and with its newline if it holds
    /// one (the line's end), all of it otherwise (at `eof`, the line's end
    /// too). Returns the piece and how many bytes of `buf` it took.
    fn piece(&mut self, buf: &[u8], eof: bool) -> (Piece, usize) {
        let (take, ends) = match memchr::memchr(b'\n', buf) {
            Some(i) => (i + 1, true),
            None => (buf.len(), eof),
        };
        let blank = self.blank.unwrap_or(true) && buf[..take].iter().all(u8::is_ascii_whitespace);
        self.blank = (!ends).then_some(blank);
        (Piece { bytes: buf[..take].to_vec(), last: ends.then_some(blank) }, take)
    }
}

/// The record of a line (without `\n` or `\r\n`), and whether it is blank.
pub(crate) fn record_of(line: &[u8]) -> (&[u8], bool) {
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
