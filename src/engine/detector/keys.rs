//! Sequence join keys (the `by` fields' values, encoded; every combination
//! of multi-valued fields) and the event digests behind alert ids.
//!
//! **Why hand-written.** The digests are FNV-1a over 128 bits. They become
//! the alert ids written into every alert, so the function is part of the
//! output: std's hashers are not promised to stay the same across Rust
//! releases, and the `fnv` crate's is 64-bit.

use super::*;

/// The join keys of one stage's key fields: the usual single key, encoded in
/// place without allocating (only its stage byte changes from use to use),
/// or every combination of the values of multi-valued fields.
pub(super) enum JoinKeys<'f> {
    Single,
    Combinations(Vec<Vec<Cow<'f, str>>>),
}

impl<'f> JoinKeys<'f> {
    /// The keys of `slots` in `f` (the single key already in `buf`), and
    /// whether combinations were truncated; `None` when a key field is
    /// missing.
    pub(super) fn of(buf: &mut Vec<u8>, f: &'f Fields, slots: &[Slot]) -> Option<(JoinKeys<'f>, bool)> {
        if single_key(buf, 0, f, slots) {
            return Some((JoinKeys::Single, false));
        }
        key_combinations(f, slots).map(|(keys, truncated)| (JoinKeys::Combinations(keys), truncated))
    }

    pub(super) fn len(&self) -> usize {
        match self {
            JoinKeys::Single => 1,
            JoinKeys::Combinations(keys) => keys.len(),
        }
    }

    /// Put key `c`, for `stage`, into `buf` (where [`JoinKeys::of`] left the
    /// single key).
    pub(super) fn encode(&self, buf: &mut Vec<u8>, c: usize, stage: usize) {
        match self {
            JoinKeys::Single => buf[0] = stage as u8,
            JoinKeys::Combinations(keys) => encode_key(buf, stage, &keys[c]),
        }
    }
}

/// Every combination of the key fields' values, or `None` if one is missing.
pub(super) fn key_combinations<'f>(f: &'f Fields, slots: &[Slot]) -> Option<(Vec<Vec<Cow<'f, str>>>, bool)> {
    let mut combos: Vec<Vec<Cow<'f, str>>> = vec![Vec::with_capacity(slots.len())];
    let mut truncated = false;
    for &s in slots {
        let mut vals = f.get(s).filter_map(|v| v.keyword());
        let first = vals.next()?;
        let Some(second) = vals.next() else {
            // One value (the usual case): every combination takes it.
            for c in &mut combos {
                c.push(first.clone());
            }
            continue;
        };
        let vals: Vec<Cow<'f, str>> = [first, second].into_iter().chain(vals).collect();
        let mut next = Vec::new();
        'outer: for c in &combos {
            for v in &vals {
                if next.len() == MAX_KEY_COMBINATIONS {
                    truncated = true;
                    break 'outer;
                }
                let mut c2 = c.clone();
                c2.push(v.clone());
                next.push(c2);
            }
        }
        combos = next;
    }
    Some((combos, truncated))
}

/// Encode the join key as [`encode_key`] does, without allocating, when
/// every key field has exactly one string value (the usual case); false
/// otherwise (`buf` is then to be ignored).
pub(super) fn single_key(buf: &mut Vec<u8>, stage: usize, f: &Fields, slots: &[Slot]) -> bool {
    buf.clear();
    buf.push(stage as u8);
    for &slot in slots {
        let mut vals = f.get(slot).filter(|v| !matches!(v, Scalar::Null | Scalar::Object));
        let (Some(Scalar::Str(v)), None) = (vals.next(), vals.next()) else { return false };
        buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
        buf.extend_from_slice(v.as_bytes());
    }
    true
}

/// The values of an encoded join key (after its stage byte).
pub(super) fn decode_key(mut b: &[u8]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    if b.is_empty() {
        return out;
    }
    b = &b[1..];
    while b.len() >= 4 {
        let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let Some(v) = b.get(4..4 + n) else { break };
        out.push(Some(String::from_utf8_lossy(v).into_owned()));
        b = &b[4 + n..];
    }
    out
}

pub(super) fn encode_key(buf: &mut Vec<u8>, stage: usize, parts: &[Cow<'_, str>]) {
    buf.clear();
    buf.push(stage as u8);
    for p in parts {
        buf.extend_from_slice(&(p.len() as u32).to_le_bytes());
        buf.extend_from_slice(p.as_bytes());
    }
}

/// An integer as `keyword()` spells it, written into `buf` (no allocation):
/// its length; `None` for any other value.
pub(super) fn int_digits(v: &Scalar, buf: &mut [u8; 24]) -> Option<usize> {
    use std::io::Write as _;
    let mut w = &mut buf[..];
    match v {
        Scalar::Int(n) => write!(w, "{n}"),
        Scalar::UInt(n) => write!(w, "{n}"),
        _ => return None,
    }
    .ok()?;
    Some(24 - w.len())
}

/// A 128-bit FNV-1a hash (stable across runs, platforms and releases).
pub(super) struct Hasher(u128);

impl Hasher {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    pub(super) fn new() -> Self {
        Hasher(Self::OFFSET)
    }
    pub(super) fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u128;
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
        // Length separator so that ("ab","c") and ("a","bc") differ.
        self.0 ^= bytes.len() as u128;
        self.0 = self.0.wrapping_mul(Self::PRIME);
    }
    pub(super) fn finish(&self) -> u128 {
        self.0
    }
}

/// Digest of an event's identity: its time and every value read from it in
/// a slot below `limit` (the rule's and the alert's fields), slot by slot
/// (independent of key order and of nested/dotted layout).
///
/// `order` is scratch space (kept by the caller so that this allocates
/// nothing once it has grown).
pub(super) fn digest(f: &Fields, t: i64, limit: usize, order: &mut Vec<(Slot, u32)>) -> u128 {
    order.clear();
    order.extend(f.iter().enumerate().filter(|(_, (s, _))| (*s as usize) < limit).map(|(i, (s, _))| (*s, i as u32)));
    // By slot, then record order (the pairs are distinct).
    order.sort_unstable();
    let mut h = Hasher::new();
    h.write(&t.to_le_bytes());
    let mut digits = [0u8; 24];
    for &(s, i) in order.iter() {
        h.write(&s.to_le_bytes());
        let v = &f.at(i as usize).1;
        match int_digits(v, &mut digits) {
            Some(len) => h.write(&digits[..len]),
            None => match v.keyword() {
                Some(k) => h.write(k.as_bytes()),
                None => h.write(&[0xff]),
            },
        }
    }
    h.finish()
}
