//! A bounded store of timed entries, each belonging to a host, with three
//! orders kept at O(log n) or O(1) per operation (never a scan):
//!
//! * by time (then insertion), for expiry, in-order release and global
//!   oldest-first eviction: a binary min-heap of `(time, insertion number)`;
//! * per host, by insertion, for per-host oldest-first eviction: a doubly
//!   linked list per host through the entries;
//! * by id, for direct removal: an id names the entry's slot.
//!
//! Entries live in a slab (a free list reuses the slots of removed entries).
//! The slab and the heap are stored in blocks ([`Blocks`]), which grow and
//! shrink a block at a time rather than by doubling a table (a reallocation
//! holds the old and the new table at once, and a doubled table keeps its
//! capacity); only the small table of block pointers doubles. Every
//! allocation is counted at its capacity, so [`HostQueue::bytes`] bounds
//! the live heap at every moment. The slab keeps its slots (counted) until
//! the queue is empty; the heap gives its blocks back as it shrinks.
//!
//! Used for partial sequences ([`crate::engine::sequence`]) and for events held back
//! for lateness ([`crate::engine::detector`]).
//!
//! **Why hand-written.** std's `BinaryHeap`, or crates such as `slab` and
//! `priority-queue`, keep one order each; the three orders here must stay
//! consistent under removal by id, and `max_state_bytes` needs every byte
//! counted and given back a block at a time, which collections that double
//! their capacity and keep it cannot promise.

use std::collections::BTreeMap;
use std::mem::size_of;

/// An entry's id: its slot (low 32 bits) and a tag from its insertion
/// number (high 32 bits, never 0, so no id is 0), so that the id of a
/// removed entry does not name the entry that reuses its slot.
pub type Id = u64;

/// Upper bound of the bytes a std B-tree map takes per entry of key `K` and
/// value `V`: nodes hold 11 entries and are at least 5/11 full (the root
/// aside), plus node headers and child pointers. Used for the per-host map,
/// which grows and shrinks a node at a time.
pub const fn btree_entry_bytes(key: usize, value: usize) -> usize {
    (key + value) * 11 / 5 + 16
}

/// "No slot" in the links.
const NIL: u32 = u32::MAX;

/// A vector stored in blocks: four small ones first (`B`/8, `B`/8, `B`/4
/// and `B`/2 elements, so that a small state stays small), then blocks of
/// `B` (a power of two, at least 8). Each block is a `Vec` allocated with
/// its final capacity (the standard library guarantees it exact). A push
/// allocates at most one block and never moves an element; a pop frees the
/// last block once a whole empty block follows the one the next push
/// would fill.
#[derive(Debug)]
pub struct Blocks<T, const B: usize> {
    blocks: Vec<Vec<T>>,
    len: usize,
}

impl<T, const B: usize> Default for Blocks<T, B> {
    fn default() -> Self {
        Blocks { blocks: Vec::new(), len: 0 }
    }
}

impl<T, const B: usize> Blocks<T, B> {
    const SMALL: usize = {
        assert!(B >= 8 && B.is_power_of_two());
        B / 8
    };

    /// The block and the offset in it of element `i`.
    fn locate(i: usize) -> (usize, usize) {
        if i >= B {
            return (3 + i / B, i % B);
        }
        let j = i / Self::SMALL;
        if j == 0 {
            return (0, i);
        }
        let k = j.ilog2() as usize;
        (k + 1, i - (Self::SMALL << k))
    }

    fn block_len(k: usize) -> usize {
        match k {
            0 => Self::SMALL,
            1..=3 => Self::SMALL << (k - 1),
            _ => B,
        }
    }

    /// Elements that the first `n` blocks hold.
    fn capacity_of(n: usize) -> usize {
        match n {
            0..=3 => [0, 1, 2, 4][n] * Self::SMALL,
            _ => (n - 3) * B,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, i: usize) -> &T {
        let (b, o) = Self::locate(i);
        &self.blocks[b][o]
    }

    pub fn get_mut(&mut self, i: usize) -> &mut T {
        let (b, o) = Self::locate(i);
        &mut self.blocks[b][o]
    }

    pub fn push(&mut self, v: T) {
        let (b, _) = Self::locate(self.len);
        if b == self.blocks.len() {
            if self.blocks.len() == self.blocks.capacity() {
                // Doubling, made explicit so that `grow_bytes` can tell.
                self.blocks.reserve_exact(self.blocks.capacity().max(4));
            }
            self.blocks.push(Vec::with_capacity(Self::block_len(b)));
        }
        self.blocks[b].push(v);
        self.len += 1;
    }

    pub fn pop(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        let (b, _) = Self::locate(self.len);
        let v = self.blocks[b].pop();
        // Keep one empty block beyond the one the next push fills, so that
        // pushes and pops across a block boundary do not allocate and free.
        self.blocks.truncate(b + 2);
        if self.blocks.capacity() > 8 && self.blocks.len() * 4 <= self.blocks.capacity() {
            self.blocks.shrink_to(self.blocks.len() * 2);
        }
        v
    }

    /// Remove every element, keeping the first block.
    pub fn clear(&mut self) {
        self.blocks.truncate(1);
        if let Some(b) = self.blocks.first_mut() {
            b.clear();
        }
        self.blocks.shrink_to(4);
        self.len = 0;
    }

    /// Heap bytes held: the blocks and the table of blocks.
    pub fn heap_bytes(&self) -> usize {
        self.blocks.capacity() * size_of::<Vec<T>>() + Self::capacity_of(self.blocks.len()) * size_of::<T>()
    }

    /// What one more push adds to [`Blocks::heap_bytes`] at most.
    pub fn grow_bytes(&self) -> usize {
        let (b, _) = Self::locate(self.len);
        if b < self.blocks.len() {
            return 0;
        }
        let table = if self.blocks.len() == self.blocks.capacity() {
            self.blocks.capacity().max(4) * size_of::<Vec<T>>()
        } else {
            0
        };
        Self::block_len(b) * size_of::<T>() + table
    }
}

#[derive(Debug)]
struct Slot<T> {
    host: u64,
    /// Neighbours in the host's list (slots; [`NIL`] at the ends).
    prev: u32,
    next: u32,
    /// Position in the heap; for a free slot, the next free slot.
    pos: u32,
    /// The high half of the entry's id.
    tag: u32,
    bytes: usize,
    value: Option<T>,
}

#[derive(Debug, Clone, Copy)]
struct HeapEntry {
    time: i64,
    /// Insertion number: orders entries of equal time.
    seq: u64,
    slot: u32,
}

impl HeapEntry {
    fn before(&self, other: &HeapEntry) -> bool {
        (self.time, self.seq) < (other.time, other.seq)
    }
}

#[derive(Debug, Clone, Copy)]
struct HostList {
    count: u32,
    head: u32,
    tail: u32,
}

const HOST_ENTRY_BYTES: usize = btree_entry_bytes(8, size_of::<HostList>());
/// The root node of the per-host map, which may hold a single entry: a
/// node of 11 entries, its header and 12 child pointers.
const HOST_ROOT_BYTES: usize = 16 + 11 * (8 + size_of::<HostList>()) + 12 * 8;

/// Slots per slab block.
const SLOT_BLOCK: usize = 16;
/// Entries per heap block.
const HEAP_BLOCK: usize = 64;

/// See the module docs. `bytes` given at insertion is the caller's estimate
/// of an entry's own heap memory (beyond its slot); [`HostQueue::bytes`]
/// sums it.
#[derive(Debug)]
pub struct HostQueue<T> {
    slots: Blocks<Slot<T>, SLOT_BLOCK>,
    /// Head of the free slots' list ([`NIL`]: none).
    free: u32,
    heap: Blocks<HeapEntry, HEAP_BLOCK>,
    hosts: BTreeMap<u64, HostList>,
    seq: u64,
    bytes: usize,
}

impl<T> Default for HostQueue<T> {
    fn default() -> Self {
        HostQueue {
            slots: Blocks::default(),
            free: NIL,
            heap: Blocks::default(),
            hosts: BTreeMap::new(),
            seq: 0,
            bytes: 0,
        }
    }
}

fn slot_of(id: Id) -> usize {
    (id & 0xffff_ffff) as usize
}

impl<T> HostQueue<T> {
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Estimated memory held (an upper bound): the entries' own `bytes`
    /// estimates, the slab's and the heap's blocks, and the per-host map.
    pub fn bytes(&self) -> usize {
        self.bytes + self.slots.heap_bytes() + self.heap.heap_bytes() + self.host_bytes()
    }

    fn host_bytes(&self) -> usize {
        match self.hosts.len() {
            0 => 0,
            n => n * HOST_ENTRY_BYTES + HOST_ROOT_BYTES,
        }
    }

    /// What one more entry (for a host not yet held) adds to
    /// [`HostQueue::bytes`] beyond its own estimate, at most. It depends on
    /// the state: removing an entry frees a slot that the next one reuses.
    pub fn entry_bytes(&self) -> usize {
        let slot = if self.free == NIL { self.slots.grow_bytes() } else { 0 };
        let root = if self.hosts.is_empty() { HOST_ROOT_BYTES } else { 0 };
        slot + self.heap.grow_bytes() + HOST_ENTRY_BYTES + root
    }

    /// Entries held for `host`.
    pub fn host_count(&self, host: u64) -> usize {
        self.hosts.get(&host).map_or(0, |h| h.count as usize)
    }

    pub fn insert(&mut self, host: u64, time: i64, bytes: usize, value: T) -> Id {
        self.seq += 1;
        let tag = (self.seq as u32).max(1);
        let slot = Slot { host, prev: NIL, next: NIL, pos: 0, tag, bytes, value: Some(value) };
        let s = if self.free != NIL {
            let s = self.free;
            let old = self.slots.get_mut(s as usize);
            self.free = old.pos;
            *old = slot;
            s
        } else {
            let s = self.slots.len();
            assert!(s < NIL as usize, "more than 2^32 - 1 entries");
            self.slots.push(slot);
            s as u32
        };
        // Host list: append.
        let h = self.hosts.entry(host).or_insert(HostList { count: 0, head: NIL, tail: NIL });
        let prev = h.tail;
        h.count += 1;
        h.tail = s;
        if h.head == NIL {
            h.head = s;
        }
        if prev != NIL {
            self.slots.get_mut(prev as usize).next = s;
        }
        self.slots.get_mut(s as usize).prev = prev;
        // Heap: append and sift up.
        let pos = self.heap.len();
        let e = HeapEntry { time, seq: self.seq, slot: s };
        self.heap.push(e);
        self.sift_up(pos, e);
        self.bytes += bytes;
        self.id_of(s)
    }

    fn slot(&self, id: Id) -> Option<&Slot<T>> {
        let s = slot_of(id);
        if s >= self.slots.len() {
            return None;
        }
        let slot = self.slots.get(s);
        (slot.value.is_some() && slot.tag as u64 == id >> 32).then_some(slot)
    }

    pub fn get(&self, id: Id) -> Option<&T> {
        self.slot(id)?.value.as_ref()
    }

    pub fn get_mut(&mut self, id: Id) -> Option<&mut T> {
        self.slot(id)?;
        self.slots.get_mut(slot_of(id)).value.as_mut()
    }

    /// An entry's time and value.
    pub fn timed(&self, id: Id) -> Option<(i64, &T)> {
        let slot = self.slot(id)?;
        Some((self.heap.get(slot.pos as usize).time, slot.value.as_ref()?))
    }

    pub fn remove(&mut self, id: Id) -> Option<(i64, T)> {
        let slot = self.slot(id)?;
        let (host, prev, next, pos, bytes) = (slot.host, slot.prev, slot.next, slot.pos as usize, slot.bytes);
        let s = slot_of(id) as u32;
        let time = self.heap.get(pos).time;
        // Heap: move the last entry into the hole, then restore the order.
        let last = self.heap.pop().expect("a held entry is in the heap");
        if pos < self.heap.len() {
            if pos > 0 && last.before(self.heap.get((pos - 1) / 2)) {
                self.sift_up(pos, last);
            } else {
                self.sift_down(pos, last);
            }
        }
        // Host list: unlink.
        if prev != NIL {
            self.slots.get_mut(prev as usize).next = next;
        }
        if next != NIL {
            self.slots.get_mut(next as usize).prev = prev;
        }
        if let Some(h) = self.hosts.get_mut(&host) {
            h.count -= 1;
            if h.count == 0 {
                self.hosts.remove(&host);
            } else {
                if h.head == s {
                    h.head = next;
                }
                if h.tail == s {
                    h.tail = prev;
                }
            }
        }
        self.bytes -= bytes;
        let slot = self.slots.get_mut(s as usize);
        let value = slot.value.take().expect("checked above");
        slot.pos = self.free;
        self.free = s;
        if self.heap.is_empty() {
            // Nothing held: give the slab back (but its first block).
            self.slots.clear();
            self.free = NIL;
        }
        Some((time, value))
    }

    /// The earliest entry (by time, then insertion).
    pub fn first(&self) -> Option<(i64, Id)> {
        if self.heap.is_empty() {
            return None;
        }
        let e = self.heap.get(0);
        Some((e.time, self.id_of(e.slot)))
    }

    /// The oldest-inserted entry of `host`.
    pub fn host_oldest(&self, host: u64) -> Option<Id> {
        self.hosts.get(&host).map(|h| self.id_of(h.head))
    }

    fn id_of(&self, s: u32) -> Id {
        (self.slots.get(s as usize).tag as u64) << 32 | s as u64
    }

    /// Write heap entry `e` at `pos`, and its slot's position.
    fn place(&mut self, pos: usize, e: HeapEntry) {
        *self.heap.get_mut(pos) = e;
        self.slots.get_mut(e.slot as usize).pos = pos as u32;
    }

    /// Put `e` into the hole at `pos`, or above it: the hole moves up past
    /// every parent that `e` comes before.
    fn sift_up(&mut self, mut pos: usize, e: HeapEntry) {
        while pos > 0 {
            let parent = (pos - 1) / 2;
            let p = *self.heap.get(parent);
            if !e.before(&p) {
                break;
            }
            self.place(pos, p);
            pos = parent;
        }
        self.place(pos, e);
    }

    /// Put `e` into the hole at `pos`, or below it: the hole moves down past
    /// every smaller child that comes before `e`.
    fn sift_down(&mut self, mut pos: usize, e: HeapEntry) {
        let n = self.heap.len();
        loop {
            let mut child = 2 * pos + 1;
            if child >= n {
                break;
            }
            if child + 1 < n && self.heap.get(child + 1).before(self.heap.get(child)) {
                child += 1;
            }
            let c = *self.heap.get(child);
            if !c.before(&e) {
                break;
            }
            self.place(pos, c);
            pos = child;
        }
        self.place(pos, e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_hosts_and_removal() {
        let mut q = HostQueue::default();
        let a = q.insert(1, 30, 10, "a");
        let b = q.insert(2, 10, 10, "b");
        let c = q.insert(1, 20, 10, "c");
        let d = q.insert(1, 40, 10, "d");
        assert_eq!(q.len(), 4);
        assert!(q.bytes() >= 40 + 2 * HOST_ENTRY_BYTES);
        assert_eq!(q.first(), Some((10, b)));
        assert_eq!(q.host_count(1), 3);
        assert_eq!(q.host_oldest(1), Some(a));
        assert_eq!(q.remove(a), Some((30, "a")));
        assert_eq!(q.host_oldest(1), Some(c));
        assert_eq!(q.remove(d), Some((40, "d")));
        assert_eq!(q.host_oldest(1), Some(c));
        let e = q.insert(1, 5, 10, "e");
        assert_ne!(e, a);
        assert_eq!(q.get(a), None);
        // `e` took `d`'s slot (the free list is last in, first out): `d`'s
        // id names it no more.
        assert_eq!(e & 0xffff_ffff, d & 0xffff_ffff, "the test expects slot reuse");
        assert_ne!(e, d);
        assert_eq!(q.get(d), None);
        assert!(q.timed(d).is_none());
        assert_eq!(q.remove(d), None);
        assert_eq!(q.first(), Some((5, e)));
        assert_eq!(q.remove(c), Some((20, "c")));
        assert_eq!(q.host_oldest(1), Some(e));
        assert_eq!(q.remove(e), Some((5, "e")));
        assert_eq!(q.host_count(1), 0);
        assert_eq!(q.host_count(2), 1);
        assert_eq!(q.remove(b), Some((10, "b")));
        assert!(q.is_empty());
        assert_eq!(q.host_count(2), 0);
        assert_eq!(q.bytes(), q.slots.heap_bytes() + q.heap.heap_bytes());
        assert_eq!(q.remove(b), None);
    }

    /// Against a model (a sorted list), with equal times, many hosts, removal
    /// from the middle, and the memory estimate checked at every step.
    #[test]
    fn matches_a_model() {
        let mut q: HostQueue<u64> = HostQueue::default();
        let mut model: Vec<(i64, u64, u64, Id)> = Vec::new(); // (time, seq, host, id)
        let mut seq = 0u64;
        let mut rand = crate::xorshift(0x2545_f491_4f6c_dd1d);
        for step in 0..20_000u64 {
            let r = rand();
            if r % 5 < 3 || model.is_empty() {
                let (t, host) = ((rand() % 50) as i64, rand() % 7);
                seq += 1;
                let id = q.insert(host, t, 3, seq);
                model.push((t, seq, host, id));
                model.sort();
            } else {
                let i = match r % 3 {
                    0 => 0,
                    1 => (rand() % model.len() as u64) as usize,
                    _ => {
                        let host = model[(rand() % model.len() as u64) as usize].2;
                        let oldest = model.iter().filter(|m| m.2 == host).min_by_key(|m| m.1).unwrap().3;
                        assert_eq!(q.host_oldest(host), Some(oldest));
                        model.iter().position(|m| m.3 == oldest).unwrap()
                    }
                };
                let (t, s, _, id) = model.remove(i);
                assert_eq!(q.remove(id), Some((t, s)), "step {step}");
                assert_eq!(q.remove(id), None);
            }
            assert_eq!(q.len(), model.len());
            assert_eq!(q.first(), model.first().map(|m| (m.0, m.3)));
            for host in 0..7 {
                assert_eq!(q.host_count(host), model.iter().filter(|m| m.2 == host).count());
            }
            let blocks = q.slots.heap_bytes() + q.heap.heap_bytes();
            assert_eq!(q.bytes(), 3 * model.len() + blocks + q.host_bytes());
        }
        while let Some((t, id)) = q.first() {
            let m = model.remove(0);
            assert_eq!((t, id), (m.0, m.3));
            q.remove(id);
        }
        assert!(model.is_empty());
    }

    #[test]
    fn blocks_grow_and_shrink_a_block_at_a_time() {
        let mut b: Blocks<u64, 16> = Blocks::default();
        assert_eq!(b.heap_bytes(), 0);
        // Block sizes 2, 2, 4, 8, then 16.
        for (i, want) in [
            (0, (0, 0)),
            (1, (0, 1)),
            (2, (1, 0)),
            (3, (1, 1)),
            (4, (2, 0)),
            (7, (2, 3)),
            (8, (3, 0)),
            (15, (3, 7)),
            (16, (4, 0)),
            (33, (5, 1)),
        ] {
            assert_eq!(Blocks::<u64, 16>::locate(i), want, "{i}");
        }
        for i in 0..300u64 {
            let before = b.heap_bytes();
            let grow = b.grow_bytes();
            b.push(i);
            assert_eq!(b.heap_bytes(), before + grow, "{i}");
            let real: usize = b.blocks.iter().map(|v| v.capacity() * 8).sum::<usize>() + b.blocks.capacity() * 24;
            assert_eq!(b.heap_bytes(), real);
        }
        for i in 0..300 {
            assert_eq!(*b.get(i), i as u64);
        }
        for i in (0..300u64).rev() {
            assert_eq!(b.pop(), Some(i));
            assert!(b.blocks.len() <= Blocks::<u64, 16>::locate(b.len()).0 + 2);
            let real: usize = b.blocks.iter().map(|v| v.capacity() * 8).sum::<usize>() + b.blocks.capacity() * 24;
            assert_eq!(b.heap_bytes(), real);
        }
        assert_eq!(b.pop(), None);
        assert!(b.heap_bytes() <= 4 * 8 + 8 * 24);
        b.push(1);
        b.clear();
        assert!(b.is_empty());
    }
}
