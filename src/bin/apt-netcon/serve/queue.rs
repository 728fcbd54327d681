//! The bounded queue between readers and the forwarder (back-pressure).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

struct QState {
    items: VecDeque<Vec<u8>>,
    /// Bytes queued plus bytes taken by the forwarder and not yet released.
    outstanding: usize,
    closed: bool,
}

pub(super) struct Queue {
    cap: usize,
    state: Mutex<QState>,
    /// Signalled when bytes are released.
    room: Condvar,
    /// Signalled when items arrive or the queue closes.
    ready: Condvar,
}

pub(super) enum Popped {
    Some,
    Timeout,
    Closed,
}

impl Queue {
    pub(super) fn new(cap: usize) -> Queue {
        Queue {
            cap,
            state: Mutex::new(QState { items: VecDeque::new(), outstanding: 0, closed: false }),
            room: Condvar::new(),
            ready: Condvar::new(),
        }
    }

    /// Blocks while the queue is full (back-pressure).
    pub(super) fn push(&self, item: Vec<u8>) {
        let mut s = self.state.lock().unwrap();
        while s.outstanding > 0 && s.outstanding + item.len() > self.cap {
            s = self.room.wait(s).unwrap();
        }
        s.outstanding += item.len();
        s.items.push_back(item);
        self.ready.notify_one();
    }

    /// Moves items into `into` (empty on entry) up to about `max` bytes.
    pub(super) fn pop_into(&self, into: &mut Vec<u8>, max: usize, timeout: Duration) -> Popped {
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
    pub(super) fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut s = self.state.lock().unwrap();
        s.outstanding -= n;
        self.room.notify_all();
    }

    pub(super) fn close(&self) {
        self.state.lock().unwrap().closed = true;
        self.ready.notify_all();
    }
}
