//! A bounded store of timed entries, each belonging to a host, with three
//! orders kept at O(log n) or O(1) per operation (never a scan):
//!
//! * by time (then insertion), for expiry, in-order release and global
//!   oldest-first eviction;
//! * per host, by insertion, for per-host oldest-first eviction;
//! * by id, for direct removal.
//!
//! Used for partial sequences ([`crate::sequence`]) and for events held back
//! for lateness ([`crate::reorder`]).

use std::collections::{BTreeMap, BTreeSet};

/// An entry's id: insertion order, starting at 1.
pub type Id = u64;

/// Upper bound of the bytes a std B-tree map takes per entry of key `K` and
/// value `V`: nodes hold 11 entries and are at least 5/11 full (the root
/// aside), plus node headers and child pointers. B-trees are used for every
/// index here, rather than hash tables, because they grow and shrink a node
/// at a time: no table doubling (a transient of three times the table) and
/// no capacity kept after a flood, so the memory estimate holds at every
/// moment.
pub const fn btree_entry_bytes(key: usize, value: usize) -> usize {
    (key + value) * 11 / 5 + 16
}

/// [`btree_entry_bytes`] for a time-ordered set of `(i64, u64)`.
pub const BTREE_BYTES_PER_ENTRY: usize = btree_entry_bytes(16, 0);

#[derive(Debug)]
struct Node<T> {
    time: i64,
    host: u64,
    prev: Id,
    next: Id,
    bytes: usize,
    value: T,
}

#[derive(Debug, Clone, Copy)]
struct HostList {
    count: u32,
    head: Id,
    tail: Id,
}

/// See the module docs. `bytes` given at insertion is the caller's estimate
/// of an entry's memory; [`HostQueue::bytes`] sums it.
#[derive(Debug)]
pub struct HostQueue<T> {
    nodes: BTreeMap<Id, Node<T>>,
    order: BTreeSet<(i64, Id)>,
    hosts: BTreeMap<u64, HostList>,
    next_id: Id,
    bytes: usize,
}

impl<T> Default for HostQueue<T> {
    fn default() -> Self {
        HostQueue { nodes: BTreeMap::new(), order: BTreeSet::new(), hosts: BTreeMap::new(), next_id: 1, bytes: 0 }
    }
}

impl<T> HostQueue<T> {
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Estimated memory held (an upper bound): the entries' own `bytes`
    /// estimates plus the indexes'.
    pub fn bytes(&self) -> usize {
        self.bytes + self.table_bytes()
    }

    fn table_bytes(&self) -> usize {
        self.nodes.len() * btree_entry_bytes(std::mem::size_of::<Id>(), std::mem::size_of::<Node<T>>())
            + self.hosts.len() * btree_entry_bytes(8, std::mem::size_of::<HostList>())
            + self.order.len() * BTREE_BYTES_PER_ENTRY
    }

    /// What one more entry (for a host not yet held) adds to
    /// [`HostQueue::bytes`] beyond its own estimate.
    pub fn entry_bytes(&self) -> usize {
        btree_entry_bytes(std::mem::size_of::<Id>(), std::mem::size_of::<Node<T>>())
            + btree_entry_bytes(8, std::mem::size_of::<HostList>())
            + BTREE_BYTES_PER_ENTRY
    }

    /// Entries held for `host`.
    pub fn host_count(&self, host: u64) -> usize {
        self.hosts.get(&host).map_or(0, |h| h.count as usize)
    }

    pub fn insert(&mut self, host: u64, time: i64, bytes: usize, value: T) -> Id {
        let id = self.next_id;
        self.next_id += 1;
        let h = self.hosts.entry(host).or_insert(HostList { count: 0, head: 0, tail: 0 });
        let prev = h.tail;
        h.count += 1;
        h.tail = id;
        if h.head == 0 {
            h.head = id;
        }
        if prev != 0 {
            if let Some(p) = self.nodes.get_mut(&prev) {
                p.next = id;
            }
        }
        self.nodes.insert(id, Node { time, host, prev, next: 0, bytes, value });
        self.order.insert((time, id));
        self.bytes += bytes;
        id
    }

    pub fn get(&self, id: Id) -> Option<&T> {
        self.nodes.get(&id).map(|n| &n.value)
    }

    pub fn remove(&mut self, id: Id) -> Option<(i64, T)> {
        let n = self.nodes.remove(&id)?;
        self.order.remove(&(n.time, id));
        self.bytes -= n.bytes;
        if n.prev != 0 {
            if let Some(p) = self.nodes.get_mut(&n.prev) {
                p.next = n.next;
            }
        }
        if n.next != 0 {
            if let Some(x) = self.nodes.get_mut(&n.next) {
                x.prev = n.prev;
            }
        }
        if let Some(h) = self.hosts.get_mut(&n.host) {
            h.count -= 1;
            if h.count == 0 {
                self.hosts.remove(&n.host);
            } else {
                if h.head == id {
                    h.head = n.next;
                }
                if h.tail == id {
                    h.tail = n.prev;
                }
            }
        }
        Some((n.time, n.value))
    }

    /// The earliest entry (by time, then insertion).
    pub fn first(&self) -> Option<(i64, Id)> {
        self.order.first().copied()
    }

    /// The oldest-inserted entry of `host`.
    pub fn host_oldest(&self, host: u64) -> Option<Id> {
        self.hosts.get(&host).map(|h| h.head)
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
        assert!(q.bytes() >= 40 + 4 * BTREE_BYTES_PER_ENTRY);
        assert_eq!(q.first(), Some((10, b)));
        assert_eq!(q.host_count(1), 3);
        assert_eq!(q.host_oldest(1), Some(a));
        assert_eq!(q.remove(a), Some((30, "a")));
        assert_eq!(q.host_oldest(1), Some(c));
        assert_eq!(q.remove(d), Some((40, "d")));
        assert_eq!(q.host_oldest(1), Some(c));
        let e = q.insert(1, 5, 10, "e");
        assert_eq!(q.first(), Some((5, e)));
        assert_eq!(q.remove(c), Some((20, "c")));
        assert_eq!(q.host_oldest(1), Some(e));
        assert_eq!(q.remove(e), Some((5, "e")));
        assert_eq!(q.host_count(1), 0);
        assert_eq!(q.host_count(2), 1);
        assert_eq!(q.remove(b), Some((10, "b")));
        assert!(q.is_empty());
        assert_eq!(q.host_count(2), 0);
        assert_eq!(q.bytes(), 0);
        assert_eq!(q.remove(b), None);
    }
}
