//! A counting global allocator for the tests that measure memory: the live
//! heap bytes of the current thread and their peak (per thread, so the tests
//! of one file may run in parallel). A test file includes it with
//!
//! ```ignore
//! #[path = "common/heap.rs"]
//! mod heap;
//! #[global_allocator]
//! static GLOBAL: heap::Counting = heap::Counting;
//! ```

#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn add_live(n: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + n;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

pub struct Counting;

// SAFETY: defers to the system allocator; only counts (const-initialised
// thread-local Cells, which never allocate).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            add_live(l.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            add_live(l.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        add_live(-(l.size() as isize));
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: as above.
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            add_live(new as isize - l.size() as isize);
        }
        q
    }
}

/// Live heap bytes of this thread, relative to [`Meter::start`].
pub struct Meter {
    base: isize,
}

impl Meter {
    pub fn start() -> Meter {
        let base = LIVE.with(Cell::get);
        PEAK.with(|p| p.set(base));
        Meter { base }
    }
    pub fn live(&self) -> usize {
        (LIVE.with(Cell::get) - self.base).max(0) as usize
    }
    pub fn peak(&self) -> usize {
        (PEAK.with(Cell::get) - self.base).max(0) as usize
    }
}

/// Run `f`, returning its result and the most bytes this thread held at
/// once during it beyond what it held before.
pub fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let meter = Meter::start();
    let r = f();
    (r, meter.peak())
}
