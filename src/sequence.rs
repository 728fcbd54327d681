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

use std::collections::{BTreeMap, HashMap};

/// What a completed stage contributes to the alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageEvent {
    /// Event time, ms since the epoch.
    pub time: i64,
    /// Digest of the event's identity fields (for deterministic alert ids).
    pub digest: u128,
    /// The fields carried into the alert, as a JSON object.
    pub info: Box<str>,
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
}

#[derive(Debug)]
struct Slot {
    partial: Partial,
    serial: u64,
}

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

/// Bounded partial-sequence state.
#[derive(Debug)]
pub struct SequenceState {
    maxspan_ms: Option<i64>,
    cap: usize,
    slots: HashMap<Box<[u8]>, Slot>,
    order: BTreeMap<(i64, u64), Box<[u8]>>,
    serial: u64,
    watermark: Option<i64>,
    /// Dropped because they could no longer complete.
    pub expired: u64,
    /// Evicted by the cap.
    pub evicted: u64,
}

impl SequenceState {
    pub fn new(maxspan_ms: Option<u64>, cap: usize) -> Self {
        SequenceState {
            maxspan_ms: maxspan_ms.map(|m| m.min(i64::MAX as u64) as i64),
            cap: cap.max(1),
            slots: HashMap::new(),
            order: BTreeMap::new(),
            serial: 0,
            watermark: None,
            expired: 0,
            evicted: 0,
        }
    }

    /// Number of partial sequences held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
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
        while let Some((&(t0, _), _)) = self.order.first_key_value() {
            if t0.saturating_add(span) >= w {
                break;
            }
            let (_, key) = self.order.pop_first().unwrap();
            self.slots.remove(&key);
            n += 1;
        }
        self.expired += n;
        n
    }

    fn is_stale(&self, t0: i64) -> bool {
        matches!((self.maxspan_ms, self.watermark), (Some(s), Some(w)) if t0.saturating_add(s) < w)
    }

    /// Take the partial sequence waiting under `key` for an event at time `t`.
    pub fn take(&mut self, key: &[u8], t: i64) -> Take {
        match self.slots.get(key) {
            None => return Take::Nothing,
            Some(s) if s.partial.last() > t => return Take::NotBefore,
            Some(_) => {}
        }
        let (key, slot) = self.slots.remove_entry(key).unwrap();
        self.order.remove(&(slot.partial.start(), slot.serial));
        drop(key);
        match self.maxspan_ms {
            Some(span) if t.saturating_sub(slot.partial.start()) > span => Take::TooLate,
            _ => Take::Matched(slot.partial),
        }
    }

    /// Store `partial` under `key`.
    pub fn put(&mut self, key: &[u8], partial: Partial) -> Put {
        if self.is_stale(partial.start()) {
            return Put::Stale;
        }
        let mut result = Put::Inserted;
        if let Some(old) = self.slots.get(key) {
            if old.partial.last() > partial.last() {
                return Put::KeptNewer;
            }
            let k = (old.partial.start(), old.serial);
            self.order.remove(&k);
            self.slots.remove(key);
            result = Put::Replaced;
        }
        while self.slots.len() >= self.cap {
            let Some((_, k)) = self.order.pop_first() else { break };
            self.slots.remove(&k);
            self.evicted += 1;
        }
        self.serial += 1;
        let key: Box<[u8]> = key.into();
        self.order.insert((partial.start(), self.serial), key.clone());
        self.slots.insert(key, Slot { partial, serial: self.serial });
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: i64) -> Partial {
        Partial { events: vec![StageEvent { time: t, digest: t as u128, info: "{}".into() }] }
    }

    #[test]
    fn take_consumes_and_tests_span() {
        let mut s = SequenceState::new(Some(5000), 10);
        s.put(b"k", p(1000));
        assert_eq!(s.take(b"k", 6000), Take::Matched(p(1000)));
        assert_eq!(s.take(b"k", 6000), Take::Nothing);
        s.put(b"k", p(1000));
        assert_eq!(s.take(b"k", 6001), Take::TooLate);
        assert_eq!(s.take(b"k", 6001), Take::Nothing);
        s.put(b"k", p(1000));
        assert_eq!(s.take(b"k", 999), Take::NotBefore);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn newer_replaces_older_not_the_reverse() {
        let mut s = SequenceState::new(Some(5000), 10);
        assert_eq!(s.put(b"k", p(1000)), Put::Inserted);
        assert_eq!(s.put(b"k", p(2000)), Put::Replaced);
        assert_eq!(s.put(b"k", p(1500)), Put::KeptNewer);
        assert_eq!(s.put(b"k", p(2000)), Put::Replaced);
        assert_eq!(s.len(), 1);
        assert_eq!(s.take(b"k", 2000), Take::Matched(p(2000)));
    }

    #[test]
    fn expiry_and_cap() {
        let mut s = SequenceState::new(Some(5000), 3);
        for (i, t) in [1000, 2000, 3000, 4000].iter().enumerate() {
            s.put(&[i as u8], p(*t));
        }
        assert_eq!(s.len(), 3);
        assert_eq!(s.evicted, 1);
        assert_eq!(s.take(&[0], 4000), Take::Nothing);
        s.observe(7000); // 2000 + 5000 = 7000: still able to complete
        assert_eq!(s.len(), 3);
        s.observe(7001);
        assert_eq!(s.len(), 2);
        assert_eq!(s.expired, 1);
        assert_eq!(s.put(b"x", p(1000)), Put::Stale);
    }
}
