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

use crate::alert::carried::{Carried, StageEvent};
use crate::engine::hostq::{Blocks, HostQueue, Id};
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::mem::size_of;

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
    /// Heap bytes of the events (their buffer and carried fields).
    pub fn bytes(&self) -> usize {
        self.events.capacity() * size_of::<StageEvent>() + self.events.iter().map(|e| e.info.len()).sum::<usize>()
    }
}

/// Buckets per block of the key index.
const BUCKET_BLOCK: usize = 256;

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

/// A partial sequence as held: the digest of its key, its bucket chain
/// link, and its events. The common one-event partial sequence is held
/// inline (its time is the queue entry's); longer ones in `many`.
#[derive(Debug)]
struct Entry {
    /// The two 64-bit halves of the key's digest (see [`SequenceState`]).
    key: [u64; 2],
    /// The next entry in the same index bucket (0: none).
    next: Id,
    /// The only event's digest and carried fields, when `many` is `None`.
    digest: u128,
    info: Carried,
    /// All the events, when there are not exactly one.
    many: Option<Box<Partial>>,
}

impl Entry {
    fn new(key: [u64; 2], mut partial: Partial) -> Entry {
        if partial.events.len() == 1 {
            let e = partial.events.pop().expect("one event");
            Entry { key, next: 0, digest: e.digest, info: e.info, many: None }
        } else {
            Entry { key, next: 0, digest: 0, info: Carried::default(), many: Some(Box::new(partial)) }
        }
    }

    /// Heap bytes beyond the entry itself.
    fn bytes(&self) -> usize {
        // `many`: the box, and the events' buffer and fields.
        self.info.len() + self.many.as_ref().map_or(0, |p| size_of::<Partial>() + p.bytes())
    }

    fn last(&self, start: i64) -> i64 {
        match &self.many {
            None => start,
            Some(p) => p.last(),
        }
    }

    fn into_partial(self, start: i64) -> Partial {
        match self.many {
            Some(p) => *p,
            None => {
                // Room for the event that extends or completes it.
                let mut events = Vec::with_capacity(2);
                events.push(StageEvent { time: start, digest: self.digest, info: self.info });
                Partial { events }
            }
        }
    }
}

/// Bounded partial-sequence state.
///
/// A join key is not stored: an entry holds a 128-bit digest of it, two
/// SipHash-1-3 values of the key bytes under two secret keys (two
/// [`RandomState`]s: std seeds them from the operating system's randomness,
/// once per thread, and gives each a different key). Two distinct keys are
/// taken for one only when both 64-bit halves agree: for keys chosen
/// without knowledge of the secret keys, a chance of about 2^-128 per pair
/// (n²/2^129 for n keys held, ~1.5·10^-27 at a million; a lookup of a key
/// not held finds another key's entry with a chance of n/2^128). The index
/// is a linear hash table on the first half: buckets (grown and shrunk one
/// at a time, kept between one and two per entry, stored in blocks) chain
/// the entries through their `next` links.
#[derive(Debug)]
pub struct SequenceState {
    maxspan_ms: Option<i64>,
    caps: Caps,
    queue: HostQueue<Entry>,
    /// Bucket heads (ids; 0: empty).
    buckets: Blocks<Id, BUCKET_BLOCK>,
    hashers: [RandomState; 2],
    watermark: Option<i64>,
    /// Dropped because they could no longer complete.
    pub expired: u64,
    /// Evicted by a cap.
    pub evicted: Evictions,
}

/// The bucket that bucket `n` (≥ 1) of a linear hash table splits from and
/// merges into: `n` less its highest bit.
fn buddy(n: usize) -> usize {
    n - (1usize << n.ilog2())
}

/// The bucket of hash `h` among `n` (≥ 1) buckets of a linear hash table.
fn bucket(h: u64, n: usize) -> usize {
    let level = n.ilog2();
    let b = (h & 2u64.wrapping_shl(level).wrapping_sub(1)) as usize;
    if b < n {
        b
    } else {
        (h & ((1u64 << level) - 1)) as usize
    }
}

impl SequenceState {
    pub fn new(maxspan_ms: Option<u64>, caps: Caps) -> Self {
        SequenceState {
            maxspan_ms: maxspan_ms.map(|m| m.min(i64::MAX as u64) as i64),
            caps: Caps { total: caps.total.max(1), per_host: caps.per_host.max(1), bytes: caps.bytes },
            queue: HostQueue::default(),
            buckets: Blocks::default(),
            hashers: [RandomState::new(), RandomState::new()],
            watermark: None,
            expired: 0,
            evicted: Evictions::default(),
        }
    }

    /// Number of partial sequences held.
    /// Change the cap on partial sequences in total (at least 1); the next
    /// insertion evicts, oldest first, down to it.
    pub fn set_total_cap(&mut self, total: usize) {
        self.caps.total = total.max(1);
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Estimated bytes held (what `max_state_bytes` limits), an upper bound
    /// of the heap held: every entry's events and carried fields, the
    /// queue's slab, heap and per-host map, and the index's buckets.
    pub fn bytes(&self) -> usize {
        self.queue.bytes() + self.buckets.heap_bytes()
    }

    /// The latest event time seen.
    pub fn watermark(&self) -> Option<i64> {
        self.watermark
    }

    /// Advance the watermark to `t` (if later) and drop what expired.
    pub fn observe(&mut self, t: i64) {
        if self.watermark.is_none_or(|w| t > w) {
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

    /// The entry for `key`, whose first digest half is `h1`. The second half
    /// is computed (into `h2`) only when an entry's first half agrees.
    fn find(&self, h1: u64, h2: &mut Option<u64>, key: &[u8]) -> Option<Id> {
        if self.buckets.is_empty() {
            return None;
        }
        let mut id = *self.buckets.get(bucket(h1, self.buckets.len()));
        while id != 0 {
            let e = self.queue.get(id).expect("indexed entry exists");
            if e.key[0] == h1 && e.key[1] == *h2.get_or_insert_with(|| self.hashers[1].hash_one(key)) {
                return Some(id);
            }
            id = e.next;
        }
        None
    }

    /// Add entry `id` (digest half `h1`) to the index; grow it to at least
    /// one bucket per entry.
    fn link(&mut self, id: Id, h1: u64) {
        if self.buckets.is_empty() {
            self.buckets.push(0);
        }
        let b = bucket(h1, self.buckets.len());
        let head = std::mem::replace(self.buckets.get_mut(b), id);
        self.queue.get_mut(id).expect("entry exists").next = head;
        if self.queue.len() > self.buckets.len() {
            self.split();
        }
    }

    /// Add bucket n, taking the entries of bucket n - 2^level that now
    /// belong to it.
    fn split(&mut self) {
        let n = self.buckets.len();
        let from = buddy(n);
        self.buckets.push(0);
        let mut id = std::mem::replace(self.buckets.get_mut(from), 0);
        while id != 0 {
            let e = self.queue.get_mut(id).expect("indexed entry exists");
            let next = e.next;
            let b = bucket(e.key[0], n + 1);
            debug_assert!(b == from || b == n);
            e.next = std::mem::replace(self.buckets.get_mut(b), id);
            id = next;
        }
    }

    /// Drop the last bucket, its entries joining its buddy's chain.
    fn merge(&mut self) {
        let Some(mut id) = self.buckets.pop() else { return };
        let n = self.buckets.len();
        if id == 0 || n == 0 {
            return;
        }
        let into = buddy(n);
        let head = *self.buckets.get(into);
        *self.buckets.get_mut(into) = id;
        loop {
            let e = self.queue.get_mut(id).expect("indexed entry exists");
            if e.next == 0 {
                e.next = head;
                break;
            }
            id = e.next;
        }
    }

    /// Remove entry `id` from the index and the queue.
    fn remove_id(&mut self, id: Id) -> Option<(i64, Entry)> {
        let e = self.queue.get(id)?;
        let (h1, next) = (e.key[0], e.next);
        let b = bucket(h1, self.buckets.len());
        if *self.buckets.get(b) == id {
            *self.buckets.get_mut(b) = next;
        } else {
            let mut prev = *self.buckets.get(b);
            loop {
                let p = self.queue.get_mut(prev).expect("indexed entry exists");
                if p.next == id {
                    p.next = next;
                    break;
                }
                prev = p.next;
            }
        }
        let removed = self.queue.remove(id);
        if self.queue.is_empty() {
            self.buckets.clear();
        } else {
            while self.buckets.len() > 1 && self.queue.len() * 2 < self.buckets.len() {
                self.merge();
            }
        }
        removed
    }

    /// True when a partial sequence is stored under `key`.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.find(self.hashers[0].hash_one(key), &mut None, key).is_some()
    }

    /// Take the partial sequence waiting under `key` for an event at time `t`.
    pub fn take(&mut self, key: &[u8], t: i64) -> Take {
        let h1 = self.hashers[0].hash_one(key);
        let Some(id) = self.find(h1, &mut None, key) else { return Take::Nothing };
        let (start, e) = self.queue.timed(id).expect("indexed entry exists");
        if e.last(start) > t {
            return Take::NotBefore;
        }
        let (start, entry) = self.remove_id(id).expect("indexed entry exists");
        match self.maxspan_ms {
            Some(span) if t.saturating_sub(start) > span => Take::TooLate,
            _ => Take::Matched(entry.into_partial(start)),
        }
    }

    /// Store `partial` under `key`, for `host` (a hash of the key's host
    /// part; see [`crate::eql::compile::CompiledQuery::host_keys`]).
    pub fn put(&mut self, key: &[u8], host: u64, partial: Partial) -> Put {
        let start = partial.start();
        if self.is_stale(start) {
            return Put::Stale;
        }
        let h1 = self.hashers[0].hash_one(key);
        let mut h2 = None;
        let mut result = Put::Inserted;
        if let Some(id) = self.find(h1, &mut h2, key) {
            let (old_start, old) = self.queue.timed(id).expect("indexed entry exists");
            if old.last(old_start) > partial.last() {
                return Put::KeptNewer;
            }
            self.remove_id(id);
            result = Put::Replaced;
        }
        let h2 = h2.unwrap_or_else(|| self.hashers[1].hash_one(key));
        let entry = Entry::new([h1, h2], partial);
        let bytes = entry.bytes();
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
        // What storing it adds at most (an eviction may free a slot or a
        // block, so this is recomputed).
        let added = |s: &Self| bytes + s.queue.entry_bytes() + s.buckets.grow_bytes();
        while !self.queue.is_empty() && self.bytes() + added(self) > self.caps.bytes {
            let Some((_, id)) = self.queue.first() else { break };
            self.remove_id(id);
            self.evicted.bytes += 1;
        }
        let id = self.queue.insert(host, start, bytes, entry);
        self.link(id, h1);
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

    fn carried(n: usize) -> Carried {
        let mut b = crate::alert::carried::CarriedBuilder::default();
        b.push(1, &serde_json::Value::String("x".repeat(n)));
        b.finish()
    }

    /// Against a model (a map from key to partial sequence), over enough
    /// keys that the index splits and merges its buckets many times.
    #[test]
    fn matches_a_model_through_index_growth_and_shrinkage() {
        use std::collections::HashMap;
        let mut s = SequenceState::new(None, Caps::default());
        let mut model: HashMap<Vec<u8>, Partial> = HashMap::new();
        let mut rand = crate::xorshift(0x9e37_79b9_7f4a_7c15);
        for round in 0..4 {
            // Grow to a few thousand keys, then shrink to a few.
            let (keys, steps) = if round % 2 == 0 { (6000, 20_000) } else { (50, 20_000) };
            for _ in 0..steps {
                let k = (rand() % keys).to_le_bytes().to_vec();
                let t = (rand() % 1000) as i64;
                match rand() % 3 {
                    0 | 1 if round % 2 == 0 => {
                        let events = (0..1 + rand() % 3)
                            .map(|i| StageEvent {
                                time: t + i as i64,
                                digest: rand() as u128,
                                info: carried(i as usize),
                            })
                            .collect();
                        let partial = Partial { events };
                        let want = match model.get(&k) {
                            Some(old) if old.last() > partial.last() => Put::KeptNewer,
                            Some(_) => Put::Replaced,
                            None => Put::Inserted,
                        };
                        if want != Put::KeptNewer {
                            model.insert(k.clone(), partial.clone());
                        }
                        assert_eq!(s.put(&k, rand() % 5, partial), want);
                    }
                    _ => {
                        let want = match model.get(&k) {
                            None => Take::Nothing,
                            Some(p) if p.last() > t => Take::NotBefore,
                            Some(_) => Take::Matched(model.remove(&k).unwrap()),
                        };
                        assert_eq!(s.contains(&k), model.contains_key(&k) || matches!(want, Take::Matched(_)));
                        assert_eq!(s.take(&k, t), want);
                    }
                }
                assert_eq!(s.len(), model.len());
                let n = s.buckets.len();
                assert!(s.is_empty() || (n >= s.len() && n <= 2 * s.len() + 1), "{n} buckets for {}", s.len());
            }
            for k in model.keys() {
                assert!(s.contains(k));
            }
        }
        // Emptied, the state gives its memory back but a block or two.
        let keys: Vec<Vec<u8>> = model.keys().cloned().collect();
        for k in keys {
            assert!(matches!(s.take(&k, i64::MAX), Take::Matched(_)));
        }
        assert!(s.is_empty());
        assert!(s.bytes() < 4096, "{}", s.bytes());
    }

    /// The estimate counts what each entry holds: its carried fields, and
    /// for several events their buffer.
    #[test]
    fn estimate_follows_the_entries() {
        let mut s = SequenceState::new(None, Caps::default());
        let ev = |t: i64, n: usize| StageEvent { time: t, digest: 7, info: carried(n) };
        for k in [b"a", b"b", b"c"] {
            s.put(k, 0, p(1));
        }
        s.take(b"b", 1);
        s.take(b"c", 1);
        // The slab keeps its slots: from here on, only the entries change.
        let base = s.bytes();
        s.put(b"b", 0, Partial { events: vec![ev(1, 1000)] });
        let with_b = s.bytes();
        assert!(with_b >= base + 1000, "{base} {with_b}");
        let mut events = Vec::with_capacity(8);
        events.extend([ev(1, 100), ev(2, 200)]);
        let want = events.clone();
        s.put(b"c", 0, Partial { events });
        assert!(s.bytes() >= with_b + 300 + 8 * size_of::<StageEvent>() + size_of::<Vec<StageEvent>>());
        assert_eq!(s.take(b"c", 2), Take::Matched(Partial { events: want }));
        assert_eq!(s.bytes(), with_b);
        assert_eq!(s.take(b"b", 2), Take::Matched(Partial { events: vec![ev(1, 1000)] }));
        assert_eq!(s.bytes(), base);
    }
}
