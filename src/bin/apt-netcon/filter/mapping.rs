//! Read-only mappings of regular files.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

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
        Map::with_flags(file, offset, len, libc::MAP_POPULATE)
    }

    /// [`Map::new`] without mapping the pages at once: each is mapped when
    /// first read, by the thread that reads it (the threaded path maps a
    /// whole file once and its workers read their blocks of it).
    pub fn lazy(file: &File, offset: u64, len: usize) -> io::Result<Map> {
        Map::with_flags(file, offset, len, 0)
    }

    fn with_flags(file: &File, offset: u64, len: usize, flags: libc::c_int) -> io::Result<Map> {
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
                libc::MAP_PRIVATE | flags,
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

// SAFETY: the mapping is read-only and lives until drop; reading it from
// several threads at once is reading shared immutable memory.
unsafe impl Send for Map {}
unsafe impl Sync for Map {}

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

/// For a regular file: [`map_lines`] over the whole of it, then the file
/// positioned where the lines handed on end, so that the rest (what
/// follows its last newline, whatever it grew by meanwhile) is read from
/// there. `Ok(false)`: `send` said stop. Any other file: nothing is sent.
pub fn map_regular(file: &mut File, sizes: (usize, usize), block: usize, mut send: impl FnMut(&Arc<Map>, usize, usize) -> bool) -> io::Result<bool> {
    let Some(size) = file.metadata().ok().filter(|m| m.is_file()).map(|m| m.len()) else { return Ok(true) };
    let mut stopped = false;
    let upto = map_lines(file, size, sizes, block, |map, from, to| {
        stopped = !send(map, from, to);
        !stopped
    });
    if stopped {
        return Ok(false);
    }
    io::Seek::seek(file, io::SeekFrom::Start(upto))?;
    Ok(true)
}

/// The whole lines of the first `size` bytes of `file`, mapped `window`
/// bytes at a time (more for a line longer than that, up to `most`),
/// handed to `send` in runs of about `block` bytes — the mapping, and where
/// the run starts and ends in it — until `send` says stop. Returns where the
/// lines handed on end: the rest (a last line without its newline, a line
/// longer than `most`, or all of a file that cannot be mapped) is left to be
/// read, where a line too long for any record goes on in pieces.
fn map_lines(file: &File, size: u64, (window, most): (usize, usize), block: usize, mut send: impl FnMut(&Arc<Map>, usize, usize) -> bool) -> u64 {
    let page = page_size();
    let mut pos = 0u64; // the start of the first line not handed on
    let mut win = window;
    while pos < size {
        let base = pos - pos % page;
        let len = (win as u64).min(size - base) as usize;
        let Ok(map) = Map::new(file, base, len) else {
            break; // not mappable after all: read it
        };
        let map = Arc::new(map);
        let skip = (pos - base) as usize;
        let Some(last) = memchr::memrchr(b'\n', &map.bytes()[skip..]) else {
            if base + len as u64 == size || win >= most {
                break;
            }
            win = win.saturating_mul(2).min(most.max(window)); // a line longer than the window
            continue;
        };
        let whole = skip + last + 1;
        let mut start = skip;
        while start < whole {
            let end = match map.bytes()[..whole].get(start + block..) {
                Some(rest) => memchr::memchr(b'\n', rest).map_or(whole, |i| start + block + i + 1),
                None => whole,
            };
            if !send(&map, start, end) {
                return pos;
            }
            start = end;
        }
        pos = base + whole as u64;
        win = window;
    }
    pos
}
