//! The forwarder: one thread owning the forward connection; reconnects,
//! peer half-closes, partial writes resent whole.

use super::net::{connect, Addr, Stream};
use super::queue::Popped;
use super::stats::{add, get};
use super::{log, Shared, BACKOFF_MAX, BACKOFF_MIN, BATCH_BYTES, TICK};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

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

pub(super) struct Forwarder {
    pub(super) sh: Arc<Shared>,
    pub(super) addr: Addr,
    pub(super) conn: Option<Stream>,
    /// Whole records not yet written (the head may have been written in
    /// part to a connection that failed: it is resent whole).
    pub(super) pending: Vec<u8>,
    pub(super) backoff: Duration,
    /// Whether the current connection has written at least one record.
    pub(super) wrote: bool,
    /// The error of the current outage, to log each distinct one once.
    pub(super) outage: Option<String>,
}

impl Forwarder {
    pub(super) fn run(mut self) {
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
