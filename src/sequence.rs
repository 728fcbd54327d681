//! Partial-sequence state, indexed by stage and join key (a stage hit is a
//! hash lookup, never a scan) and ordered by start time for expiry and
//! eviction.
//!
//! Semantics (RULE.md §Semantics 6–9), for any number of stages:
//! * a key holds at most one partial sequence per stage; a newer event for
//!   the same stage and key replaces the older one (an older one that arrives
//!   late does not replace a newer one);
//! * an event of stage k>0 takes the partial sequence of stage k-1 with its
//!   key — the latest one, since there is only one — if that one is not later
//!   than the event; taking consumes it whether or not the maxspan test then
//!   passes; the test is `t - t_start <= maxspan`, inclusive;
//! * with a maxspan, a partial sequence whose start is more than maxspan
//!   before the event-time watermark (the latest time seen) can no longer
//!   complete and is dropped (`expired`); the number held is capped, the
//!   oldest start being evicted first (`evicted`).

use crate::carried::Carried;
use crate::hostq::{btree_entry_bytes, HostQueue, Id};
use std::collections::hash_map::RandomState;
use std::collections::BTreeMap;
use std::hash::BuildHasher;

/// What a completed stage contributes to the alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageEvent {
    /// Event time, ms since the epoch.
    pub time: i64,
    /// Digest of the event's identity fields (for deterministic alert ids).
    pub digest: u128,
    /// The fields carried into the alert.
    pub info: Carried,
}

/// A partial sequence: the events of the stages matched so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partial {
    pub events: Vec<StageEvent>,
}

impl Partial {
    pub fn start(&self) -> i64 {
        self.events.first().map(|e| e.time).unwrap_or(i64::MIN)
    }
    pub fn last(&self) -> i64 {
        self.events.last().map(|e| e.time).unwrap_or(i64::MIN)
    }
    fn bytes(&self) -> usize {
        self.events.iter().map(|e| std::mem::size_of::<StageEvent>() + e.info.len()).sum()
    }
}

/// Bytes per partial sequence beyond its key, its events and its index
/// entries, for the `max_state_bytes` estimate (see [`SequenceState::bytes`]).
pub const ENTRY_OVERHEAD_BYTES: usize = 32;

const INDEX_ENTRY_BYTES: usize = btree_entry_bytes(8, 8);

/// Result of [`SequenceState::take`].
#[derive(Debug, PartialEq, Eq)]
pub enum Take {
    /// No partial sequence waits for this key.
    Nothing,
    /// The waiting one is later than the event: left in place.
    NotBefore,
    /// Consumed, but the span from its start exceeds maxspan.
    TooLate,
    /// Consumed and within maxspan.
    Matched(Partial),
}

/// Result of [`SequenceState::put`].
#[derive(Debug, PartialEq, Eq)]
pub enum Put {
    Inserted,
    /// Replaced an older partial sequence with the same stage and key.
    Replaced,
    /// A newer one with the same stage and key was kept; this one dropped.
    KeptNewer,
    /// Its start is already more than maxspan before the watermark.
    Stale,
}

/// Limits on what [`SequenceState`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Partial sequences in total.
    pub total: usize,
    /// Partial sequences of one host.
    pub per_host: usize,
    /// Estimated bytes of all partial sequences.
    pub bytes: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Caps { total: usize::MAX, per_host: usize::MAX, bytes: usize::MAX }
    }
}

/// Why partial sequences were evicted, by cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evictions {
    pub total: u64,
    pub per_host: u64,
    pub bytes: u64,
}

/// Bounded partial-sequence state. Each key is stored once (in its entry);
/// the index maps a keyed hash of it to the entry.
#[derive(Debug)]
pub struct SequenceState {
    maxspan_ms: Option<i64>,
    caps: Caps,
    queue: HostQueue<(Box<[u8]>, Partial)>,
    index: BTreeMap<u64, Id>,
    /// Entries whose key hash collides with the one in `index`.
    overflow: BTreeMap<u64, Vec<Id>>,
    hasher: RandomState,
    watermark: Option<i64>,
    /// Dropped because they could no longer complete.
    pub expired: u64,
    /// Evicted by a cap.
    pub evicted: Evictions,
}

impl SequenceState {
    pub fn new(maxspan_ms: Option<u64>, caps: Caps) -> Self {
        SequenceState {
            maxspan_ms: maxspan_ms.map(|m| m.min(i64::MAX as u64) as i64),
            caps: Caps { total: caps.total.max(1), per_host: caps.per_host.max(1), bytes: caps.bytes },
            queue: HostQueue::default(),
            index: BTreeMap::new(),
            overflow: BTreeMap::new(),
            hasher: RandomState::new(),
            watermark: None,
            expired: 0,
            evicted: Evictions::default(),
        }
    }

    /// Number of partial sequences held.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Estimated bytes held (what `max_state_bytes` limits), an upper
    /// bound: every entry's key, events and carried fields, and the indexes
    /// (B-trees, counted at their least full).
    pub fn bytes(&self) -> usize {
        self.queue.bytes() + self.index.len() * INDEX_ENTRY_BYTES + self.overflow.len() * 64
    }

    /// The latest event time seen.
    pub fn watermark(&self) -> Option<i64> {
        self.watermark
    }

    /// Advance the watermark to `t` (if later) and drop what expired.
    pub fn observe(&mut self, t: i64) {
        if self.watermark.map_or(true, |w| t > w) {
            self.watermark = Some(t);
            self.expire();
        }
    }

    /// Drop every partial sequence that can no longer complete.
    pub fn expire(&mut self) -> u64 {
        let (Some(span), Some(w)) = (self.maxspan_ms, self.watermark) else { return 0 };
        let mut n = 0;
        while let Some((t0, id)) = self.queue.first() {
            if t0.saturating_add(span) >= w {
                break;
            }
            self.remove_id(id);
            n += 1;
        }
        self.expired += n;
        n
    }

    fn is_stale(&self, t0: i64) -> bool {
        matches!((self.maxspan_ms, self.watermark), (Some(s), Some(w)) if t0.saturating_add(s) < w)
    }

    fn find(&self, h: u64, key: &[u8]) -> Option<Id> {
        let id = *self.index.get(&h)?;
        if self.queue.get(id).is_some_and(|(k, _)| &**k == key) {
            return Some(id);
        }
        self.overflow.get(&h)?.iter().copied().find(|&id| self.queue.get(id).is_some_and(|(k, _)| &**k == key))
    }

    fn remove_id(&mut self, id: Id) -> Option<Partial> {
        let (_, (key, partial)) = self.queue.remove(id)?;
        let h = self.hasher.hash_one(&*key);
        if self.index.get(&h) == Some(&id) {
            match self.overflow.get_mut(&h).and_then(|v| v.pop()) {
                Some(next) => {
                    self.index.insert(h, next);
                    if self.overflow.get(&h).is_some_and(|v| v.is_empty()) {
                        self.overflow.remove(&h);
                    }
                }
                None => {
                    self.index.remove(&h);
                }
            }
        } else if let Some(v) = self.overflow.get_mut(&h) {
            v.retain(|&x| x != id);
            if v.is_empty() {
                self.overflow.remove(&h);
            }
        }
        Some(partial)
    }

    /// True when a partial sequence is stored under `key`.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.find(self.hasher.hash_one(key), key).is_some()
    }

    /// Take the partial sequence waiting under `key` for an event at time `t`.
    pub fn take(&mut self, key: &[u8], t: i64) -> Take {
        let h = self.hasher.hash_one(key);
        let Some(id) = self.find(h, key) else { return Take::Nothing };
        if self.queue.get(id).is_some_and(|(_, p)| p.last() > t) {
            return Take::NotBefore;
        }
        let partial = self.remove_id(id).expect("indexed entry exists");
        match self.maxspan_ms {
            Some(span) if t.saturating_sub(partial.start()) > span => Take::TooLate,
            _ => Take::Matched(partial),
        }
    }

    /// Store `partial` under `key`, for `host` (a hash of the key's host
    /// part; see [`crate::compile::CompiledQuery::host_keys`]).
    pub fn put(&mut self, key: &[u8], host: u64, partial: Partial) -> Put {
        if self.is_stale(partial.start()) {
            return Put::Stale;
        }
        let h = self.hasher.hash_one(key);
        let mut result = Put::Inserted;
        if let Some(id) = self.find(h, key) {
            if self.queue.get(id).is_some_and(|(_, old)| old.last() > partial.last()) {
                return Put::KeptNewer;
            }
            self.remove_id(id);
            result = Put::Replaced;
        }
        let bytes = ENTRY_OVERHEAD_BYTES + key.len() + partial.bytes();
        while self.queue.host_count(host) >= self.caps.per_host {
            let Some(id) = self.queue.host_oldest(host) else { break };
            self.remove_id(id);
            self.evicted.per_host += 1;
        }
        while self.queue.len() >= self.caps.total {
            let Some((_, id)) = self.queue.first() else { break };
            self.remove_id(id);
            self.evicted.total += 1;
        }
        let added = bytes + self.queue.entry_bytes() + INDEX_ENTRY_BYTES;
        while !self.queue.is_empty() && self.bytes() + added > self.caps.bytes {
            let Some((_, id)) = self.queue.first() else { break };
            self.remove_id(id);
            self.evicted.bytes += 1;
        }
        let start = partial.start();
        let id = self.queue.insert(host, start, bytes, (key.into(), partial));
        if let Some(prev) = self.index.insert(h, id) {
            self.overflow.entry(h).or_default().push(prev);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(total: usize) -> Caps {
        Caps { total, ..Caps::default() }
    }

    fn p(t: i64) -> Partial {
        Partial { events: vec![StageEvent { time: t, digest: t as u128, info: Carried::default() }] }
    }

    #[test]
    fn take_consumes_and_tests_span() {
        let mut s = SequenceState::new(Some(5000), caps(10));
        s.put(b"k", 0, p(1000));
        assert_eq!(s.take(b"k", 6000), Take::Matched(p(1000)));
        assert_eq!(s.take(b"k", 6000), Take::Nothing);
        s.put(b"k", 0, p(1000));
        assert_eq!(s.take(b"k", 6001), Take::TooLate);
        assert_eq!(s.take(b"k", 6001), Take::Nothing);
        s.put(b"k", 0, p(1000));
        assert_eq!(s.take(b"k", 999), Take::NotBefore);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn newer_replaces_older_not_the_reverse() {
        let mut s = SequenceState::new(Some(5000), caps(10));
        assert_eq!(s.put(b"k", 0, p(1000)), Put::Inserted);
        assert_eq!(s.put(b"k", 0, p(2000)), Put::Replaced);
        assert_eq!(s.put(b"k", 0, p(1500)), Put::KeptNewer);
        assert_eq!(s.put(b"k", 0, p(2000)), Put::Replaced);
        assert_eq!(s.len(), 1);
        assert_eq!(s.take(b"k", 2000), Take::Matched(p(2000)));
    }

    #[test]
    fn expiry_and_cap() {
        let mut s = SequenceState::new(Some(5000), caps(3));
        for (i, t) in [1000, 2000, 3000, 4000].iter().enumerate() {
            s.put(&[i as u8], 0, p(*t));
        }
        assert_eq!(s.len(), 3);
        assert_eq!(s.evicted.total, 1);
        assert_eq!(s.take(&[0], 4000), Take::Nothing);
        s.observe(7000); // 2000 + 5000 = 7000: still able to complete
        assert_eq!(s.len(), 3);
        s.observe(7001);
        assert_eq!(s.len(), 2);
        assert_eq!(s.expired, 1);
        assert_eq!(s.put(b"x", 0, p(1000)), Put::Stale);
    }

    #[test]
    fn per_host_and_byte_caps_evict_oldest_first() {
        let mut s = SequenceState::new(Some(5000), Caps { total: 100, per_host: 2, bytes: usize::MAX });
        s.put(b"a1", 1, p(1000));
        s.put(b"b1", 2, p(1100));
        s.put(b"a2", 1, p(1200));
        s.put(b"a3", 1, p(1300));
        assert_eq!(s.evicted.per_host, 1);
        assert_eq!(s.take(b"a1", 2000), Take::Nothing);
        assert!(matches!(s.take(b"b1", 2000), Take::Matched(_)));
        assert!(matches!(s.take(b"a2", 2000), Take::Matched(_)));
        // A byte cap: whatever fits, the estimate (tables included) stays
        // under it, and the oldest go first.
        let cap = 4096;
        let mut s = SequenceState::new(Some(5000), Caps { total: 1000, per_host: 1000, bytes: cap });
        for i in 0..200u8 {
            s.put(&[b'k', i], 0, p(1000 + i as i64));
            assert!(s.bytes() <= cap, "{} > {cap} after {i}", s.bytes());
        }
        assert!(s.evicted.bytes > 0 && s.len() > 3, "{} held, {} evicted", s.len(), s.evicted.bytes);
        assert_eq!(s.len() as u64 + s.evicted.bytes, 200);
        assert_eq!(s.take(&[b'k', 0], 2000), Take::Nothing);
        assert!(matches!(s.take(&[b'k', 199], 2000), Take::Matched(_)));
    }
}
