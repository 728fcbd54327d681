//! Pipes on standard input and output: larger buffers, so that a block
//! goes through in a few system calls and wake-ups instead of one per 64 KiB.

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
            if (0..WANT).contains(&now) {
                libc::fcntl(fd, libc::F_SETPIPE_SZ, WANT);
            }
        }
    }
}
