//! Reading the fields a rule needs out of one JSON record.
//!
//! The rule's field paths are compiled once into a [`FieldTable`] (a small
//! trie over path segments). Two readers walk a record against it; both
//! descend only into members on a needed path and skip every other member
//! without materialising it, so no `serde_json::Value` tree is ever built:
//!
//! * [`FieldTable::extract`], the **validating reader**: the record must be
//!   one JSON object (serde_json's parser), valid UTF-8 throughout —
//!   including inside members that are skipped — and nested at most 127
//!   containers deep along the paths it reads (serde_json's recursion limit;
//!   skipped members may nest deeper). It tells *why* a record is unreadable
//!   ([`ExtractError`]).
//! * [`FieldTable::scan`], the **fast scanner**, for deciding quickly that
//!   a record matches nothing: a hand-written byte scanner that checks the
//!   record's *structure* (the whole record valid UTF-8, checked once; a
//!   single top-level object and nothing after it;
//!   every string closed, with valid escapes and no raw control
//!   character; brackets balanced and matching; at most [`SCAN_MAX_DEPTH`]
//!   levels of nesting anywhere) and the full syntax of the members it
//!   reads, but nothing else inside the members it skips: not the spelling
//!   of numbers and literals, nor `:`/`,` punctuation, nor stray bytes
//!   between values. It returns [`Unsure`] instead of guessing whenever the
//!   record is unusual: an escape sequence in a key or in a string it reads,
//!   anything malformed, deep nesting. The
//!   contract: when `scan` succeeds on a record that `extract` also accepts,
//!   both give the same values for every slot of the table; when `extract`
//!   refuses a record as [`ExtractError::NotAnObject`] or
//!   [`ExtractError::TooDeep`], `scan` is never sure of it. (A property test
//!   below holds it to this on mutated records.) The detector scans with the
//!   few fields its stage predicates read and re-reads a record with
//!   `extract` only when a stage might match, or when the scanner is unsure.
//!
//! Nested objects and dotted keys are the same thing here, as in
//! Elasticsearch: `{"process":{"parent":{"name":"apt"}}}`,
//! `{"process.parent.name":"apt"}` and `{"process":{"parent.name":"apt"}}` all
//! give `process.parent.name = "apt"`. Arrays are flattened (an array of
//! objects contributes each element's fields; nested arrays of scalars are
//! flattened), and a path met more than once (a dotted key next to a nested
//! object, or a duplicate key) accumulates all its values, as a multi-valued
//! field does in Elasticsearch.
//!
//! The scanner never allocates, given a [`Fields`] whose allocation is
//! reused ([`FieldsBuf`]). The validating reader allocates only to unescape
//! a string it reads and to skip a member nested more than one level deep
//! (serde_json keeps its skip stack on the heap).
//!
//! **Why hand-written.** serde_json (a dependency) does the validating
//! reader's parsing; what is this crate's own is the path trie and the fast
//! scanner. Deserializing into `serde_json::Value` or a derived struct builds
//! every member of a record (a Defend event has hundreds) and allocates for
//! its strings; simd-json parses faster but still builds a tape of the whole
//! record, from a mutable copy of it. The scanner reads only the few fields
//! the rule needs, allocates nothing, and crosses strings eight bytes at a
//! time: most records are decided there, and it is where the throughput in
//! BENCHMARKS.md comes from. Safety: no `unsafe`, and `extract` stays the
//! reference it is tested against.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

pub(crate) mod extract;
mod scan;

pub use scan::{Unsure, SCAN_MAX_DEPTH};
pub(crate) use scan::string_stops;
pub(crate) use scan::{bytes_equal, LO};

/// Index of a field in a [`FieldTable`].
pub type Slot = u16;

/// One scalar value found in a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Null,
    /// An object where the path ends (e.g. `host.id: {…}`): present, but
    /// matches no value test and is not a usable join key.
    Object,
}

/// The smallest of a field's keywords ([`Scalar::keyword`]), and whether
/// it held several distinct ones: how a record whose key field holds an
/// array is routed when records are split by that key (one detector would
/// join it under each value).
pub(crate) fn smallest_keyword<'v>(mut values: impl Iterator<Item = Cow<'v, str>>) -> Option<(Cow<'v, str>, bool)> {
    let mut smallest = values.next()?;
    let mut several = false;
    for v in values {
        several |= v != smallest;
        if v < smallest {
            smallest = v;
        }
    }
    Some((smallest, several))
}

impl Scalar<'_> {
    /// The value as Elasticsearch would index it into a `keyword` field, or
    /// `None` for null and objects.
    pub fn keyword(&self) -> Option<Cow<'_, str>> {
        match self {
            Scalar::Str(s) => Some(Cow::Borrowed(s.as_ref())),
            Scalar::Int(i) => Some(Cow::Owned(i.to_string())),
            Scalar::UInt(u) => Some(Cow::Owned(u.to_string())),
            Scalar::Float(f) => Some(Cow::Owned(serde_json::Number::from_f64(*f)?.to_string())),
            Scalar::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            Scalar::Null | Scalar::Object => None,
        }
    }

    /// The value as a number, when it is one or is a string that parses as one.
    pub fn number(&self) -> Option<f64> {
        match self {
            Scalar::Int(i) => Some(*i as f64),
            Scalar::UInt(u) => Some(*u as f64),
            Scalar::Float(f) => Some(*f),
            Scalar::Str(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        }
    }

    /// Serialise into a `serde_json::Value` (for annotations).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Scalar::Str(s) => Value::String(s.to_string()),
            Scalar::Int(i) => Value::from(*i),
            Scalar::UInt(u) => Value::from(*u),
            Scalar::Float(f) => serde_json::Number::from_f64(*f).map(Value::Number).unwrap_or(Value::Null),
            Scalar::Bool(b) => Value::Bool(*b),
            Scalar::Null | Scalar::Object => Value::Null,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// Children by path segment.
    children: Vec<Child>,
    /// The slot of the field ending at this node.
    slot: Option<Slot>,
    /// Segments from the root.
    depth: u32,
}

/// An edge of the trie: a path segment and the node it leads to.
#[derive(Debug, Clone)]
struct Child {
    len: usize,
    /// The segment's first eight bytes, zero-padded, little-endian.
    head: u64,
    seg: Box<[u8]>,
    node: u32,
}

impl Child {
    fn new(seg: &str, node: u32) -> Child {
        Child { len: seg.len(), head: head8(seg.as_bytes()), seg: seg.as_bytes().into(), node }
    }
}

/// The first eight bytes of `b`, zero-padded, little-endian: a few
/// (overlapping) loads, no loop.
#[inline]
fn head8(b: &[u8]) -> u64 {
    let n = b.len();
    let le32 = |s: &[u8]| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as u64;
    let le16 = |s: &[u8]| u16::from_le_bytes([s[0], s[1]]) as u64;
    match n {
        0 => 0,
        1 => b[0] as u64,
        2..=3 => le16(b) | le16(&b[n - 2..]) << (8 * (n - 2)),
        4..=7 => le32(b) | le32(&b[n - 4..]) << (8 * (n - 4)),
        _ => u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
    }
}

/// The set of field paths a rule reads, compiled into a trie.
#[derive(Debug, Clone)]
pub struct FieldTable {
    nodes: Vec<Node>,
    names: Vec<String>,
}

impl Default for FieldTable {
    fn default() -> Self {
        FieldTable { nodes: vec![Node::default()], names: Vec::new() }
    }
}

impl FieldTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// The slot for `path` (dotted), adding it if new.
    pub fn intern(&mut self, path: &str) -> Slot {
        if let Some(s) = self.lookup(path) {
            return s;
        }
        let mut node = 0u32;
        for seg in path.split('.') {
            node = match self.child(node, seg) {
                Some(c) => c,
                None => {
                    let id = self.nodes.len() as u32;
                    let depth = self.nodes[node as usize].depth + 1;
                    self.nodes.push(Node { depth, ..Node::default() });
                    self.nodes[node as usize].children.push(Child::new(seg, id));
                    id
                }
            };
        }
        let slot = self.names.len() as Slot;
        self.nodes[node as usize].slot = Some(slot);
        self.names.push(path.to_string());
        slot
    }

    /// The slot of `path`, if interned.
    pub fn lookup(&self, path: &str) -> Option<Slot> {
        let mut node = 0u32;
        for seg in path.split('.') {
            node = self.child(node, seg)?;
        }
        self.nodes[node as usize].slot
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The dotted name of a slot.
    pub fn name(&self, slot: Slot) -> &str {
        &self.names[slot as usize]
    }

    /// The trie's root node (for readers of other formats).
    pub(crate) const ROOT: u32 = 0;

    /// The slot of the field ending at trie node `node`.
    pub(crate) fn node_slot(&self, node: u32) -> Option<Slot> {
        self.nodes[node as usize].slot
    }

    /// Segments from the root to trie node `node`.
    #[inline]
    pub(crate) fn node_depth(&self, node: u32) -> u32 {
        self.nodes[node as usize].depth
    }

    /// True if fields continue below trie node `node`.
    pub(crate) fn node_has_children(&self, node: u32) -> bool {
        !self.nodes[node as usize].children.is_empty()
    }

    fn child(&self, node: u32, seg: &str) -> Option<u32> {
        self.child_bytes(node, seg.as_bytes())
    }

    /// The child of `node` for one path segment. Keys are compared by
    /// length and first eight bytes before anything else: most keys of a
    /// record lead nowhere, and are turned down without a `memcmp`.
    #[inline]
    fn child_bytes(&self, node: u32, seg: &[u8]) -> Option<u32> {
        self.child_head(node, seg, head8(seg))
    }

    /// [`FieldTable::child_bytes`] given the segment's `head` ([`head8`]).
    #[inline(always)]
    pub(super) fn child_head(&self, node: u32, seg: &[u8], head: u64) -> Option<u32> {
        let len = seg.len();
        self.nodes[node as usize]
            .children
            .iter()
            .find(|c| c.len == len && c.head == head && (len <= 8 || c.seg[8..] == seg[8..]))
            .map(|c| c.node)
    }

    /// [`FieldTable::walk_bytes`] for the key at `b[start..end]` (a record's
    /// bytes), reading segment heads and finding dots eight bytes at a time.
    #[inline]
    pub(super) fn walk_key(&self, node: u32, b: &[u8], start: usize, end: usize) -> Option<u32> {
        let mut n = node;
        let mut s = start;
        loop {
            // The next dot (or the key's end), and the segment's head.
            let klen = end - s;
            let (seg_end, head) = match b.get(s..s + 8) {
                Some(w) => {
                    let w = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
                    // The lowest flag is exact (spurious ones only above it).
                    let mut dots = bytes_equal(w, b'.');
                    if klen < 8 {
                        dots &= (1u64 << (8 * klen)) - 1;
                    }
                    let seg_end = if dots != 0 {
                        s + (dots.trailing_zeros() >> 3) as usize
                    } else if klen <= 8 {
                        end
                    } else {
                        s + 8 + b[s + 8..end].iter().position(|&c| c == b'.').unwrap_or(klen - 8)
                    };
                    let len = seg_end - s;
                    (seg_end, if len >= 8 { w } else { w & ((1u64 << (8 * len)) - 1) })
                }
                None => {
                    let seg_end = s + b[s..end].iter().position(|&c| c == b'.').unwrap_or(end - s);
                    (seg_end, head8(&b[s..seg_end]))
                }
            };
            n = self.child_head(n, &b[s..seg_end], head)?;
            if seg_end >= end {
                return Some(n);
            }
            s = seg_end + 1;
        }
    }

    /// Walk a (possibly dotted) key from `node`.
    pub(crate) fn walk(&self, node: u32, key: &str) -> Option<u32> {
        self.walk_bytes(node, key.as_bytes())
    }

    /// [`FieldTable::walk`] on the key's bytes (which need not be UTF-8:
    /// they then match nothing).
    #[inline]
    pub(crate) fn walk_bytes(&self, node: u32, key: &[u8]) -> Option<u32> {
        let mut n = node;
        let mut rest = key;
        loop {
            let head = head8(rest);
            // A dot among the first eight bytes shows in the head (bytes past
            // the end are zero); the lowest flag is exact.
            let dots = bytes_equal(head, b'.');
            let dot = if dots != 0 && ((dots.trailing_zeros() >> 3) as usize) < rest.len() {
                Some((dots.trailing_zeros() >> 3) as usize)
            } else if rest.len() > 8 {
                rest[8..].iter().position(|&c| c == b'.').map(|d| d + 8)
            } else {
                None
            };
            match dot {
                Some(d) => {
                    n = self.child_head(n, &rest[..d], head8(&rest[..d]))?;
                    rest = &rest[d + 1..];
                }
                None => return self.child_head(n, rest, head),
            }
        }
    }
}

/// Why a record could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtractError {
    /// Not valid JSON (syntax, truncation, invalid UTF-8, trailing bytes).
    InvalidJson,
    /// Not valid MessagePack, or a map key that is not a string.
    InvalidMsgpack,
    /// Valid JSON, but the top level is not an object.
    NotAnObject,
    /// Nested deeper than the parser allows.
    TooDeep,
}

/// The values found in one record: `(slot, value)` pairs in document order,
/// and, per slot, a chain through its values (so that [`Fields::get`] costs
/// the values of that slot, not of the record: a rule pack reads a hundred
/// fields and asks for each).
#[derive(Debug, Default)]
pub struct Fields<'a> {
    values: Vec<(Slot, Scalar<'a>)>,
    links: Links,
    /// See [`Fields::plain`].
    plain: bool,
}

/// The chains of [`Fields`]: positions + 1 (0: none). `heads[s]` is the
/// first value of slot `s` (zero for every slot without a value: reset
/// by [`Fields::clear`]), `tails[s]` its last (meaningful only when the
/// head is set), `next[i]` the value after value `i` in its slot.
#[derive(Debug, Default)]
struct Links {
    heads: Vec<u32>,
    tails: Vec<u32>,
    next: Vec<u32>,
    /// Per trie node, the object (a stamp) whose member last led to it: a
    /// member name met twice in one object shows there ([`FieldTable::scan`]).
    marks: Vec<u32>,
    /// The last stamp given to an object (reset before a scan that could
    /// wrap it).
    stamp: u32,
}

/// The values of one slot, following its chain.
#[derive(Clone)]
pub struct SlotValues<'f, 'a> {
    fields: &'f Fields<'a>,
    at: u32,
}

impl<'f, 'a> Iterator for SlotValues<'f, 'a> {
    type Item = &'f Scalar<'a>;

    fn next(&mut self) -> Option<&'f Scalar<'a>> {
        let i = self.at.checked_sub(1)? as usize;
        self.at = self.fields.links.next[i];
        Some(&self.fields.values[i].1)
    }
}

impl<'a> Fields<'a> {
    pub fn new() -> Self {
        Fields { values: Vec::new(), links: Links::default(), plain: false }
    }

    /// Whether these values were read by the fast scanner
    /// ([`FieldTable::scan`]) or the MessagePack reader
    /// ([`crate::format::msgpack::extract`]) from a record in which no
    /// member name on the table's paths is dotted or repeated within its
    /// object (and, in MessagePack, no bin or ext value and no float that
    /// is not finite lies on them: a tree reads those as null): each slot
    /// then holds, in document order, exactly the scalars a tree of the
    /// record holds at its path, as [`crate::eql::eval::collect`] finds
    /// them, and a [`Scalar::Object`] for each object ending there (which
    /// `collect` does not give: a reader skips them).
    pub fn plain(&self) -> bool {
        self.plain
    }

    /// Before a read that tells whether it is plain ([`Fields::plain`]):
    /// plain until a member shows otherwise ([`Fields::member`]), with a
    /// mark for every node of `table`. `len`: the record's length, which
    /// bounds the objects it opens (each takes a byte at least), so that
    /// the stamps given out during the read never wrap (starting again from
    /// zero would forget the marks of the objects still open).
    pub(crate) fn begin_marks(&mut self, table: &FieldTable, len: usize) {
        let l = &mut self.links;
        if l.marks.len() < table.nodes.len() {
            l.marks.resize(table.nodes.len(), 0);
        }
        if u64::from(l.stamp) + len as u64 >= u64::from(u32::MAX) {
            l.marks.fill(0);
            l.stamp = 0;
        }
        self.plain = true;
    }

    /// A new object (map) opened during a read begun by
    /// [`Fields::begin_marks`]: its stamp, for [`Fields::member`].
    #[inline(always)]
    pub(crate) fn open_object(&mut self) -> u32 {
        self.links.stamp += 1;
        self.links.stamp
    }

    /// A member of the object stamped `object` led to trie node `child`;
    /// `dotted`: its name went down more than one level. The read is not
    /// plain if so, or if the name was met before in that object.
    #[inline(always)]
    pub(crate) fn member(&mut self, child: u32, object: u32, dotted: bool) {
        let mark = &mut self.links.marks[child as usize];
        if *mark == object || dotted {
            self.plain = false;
        }
        *mark = object;
    }

    /// The read does not stand for the record's tree (see [`Fields::plain`]).
    pub(crate) fn not_plain(&mut self) {
        self.plain = false;
    }

    /// Forget every value (keeps the allocation).
    pub(crate) fn clear(&mut self) {
        self.plain = false;
        for &(s, _) in &self.values {
            self.links.heads[s as usize] = 0;
        }
        self.values.clear();
        self.links.next.clear();
    }

    /// Add a value of `slot`.
    pub(crate) fn push(&mut self, slot: Slot, v: Scalar<'a>) {
        let l = &mut self.links;
        let s = slot as usize;
        if s >= l.heads.len() {
            l.heads.resize(s + 1, 0);
            l.tails.resize(s + 1, 0);
        }
        let at = self.values.len() as u32 + 1;
        if l.heads[s] == 0 {
            l.heads[s] = at;
        } else {
            l.next[l.tails[s] as usize - 1] = at;
        }
        l.tails[s] = at;
        l.next.push(0);
        self.values.push((slot, v));
    }

    /// The values of another read's slots as this one's, slot by slot
    /// (`map`: `(this slot, the other's slot)`; each slot's values stay in
    /// their order).
    pub(crate) fn push_mapped(&mut self, from: &Fields<'a>, map: &[(Slot, Slot)]) {
        for &(mine, theirs) in map {
            for v in from.get(theirs) {
                self.push(mine, v.clone());
            }
        }
    }

    /// All values of `slot`, in document order (empty when absent).
    pub fn get(&self, slot: Slot) -> SlotValues<'_, 'a> {
        SlotValues { fields: self, at: self.links.heads.get(slot as usize).copied().unwrap_or(0) }
    }

    /// True when `slot` is absent, null, or an empty array (`== null`).
    pub fn is_null(&self, slot: Slot) -> bool {
        !self.get(slot).any(|v| !matches!(v, Scalar::Null))
    }

    /// The `i`th `(slot, value)` pair read (in [`Fields::iter`] order).
    pub fn at(&self, i: usize) -> &(Slot, Scalar<'a>) {
        &self.values[i]
    }

    /// Every `(slot, value)` pair.
    pub fn iter(&self) -> impl Iterator<Item = &(Slot, Scalar<'a>)> + '_ {
        self.values.iter()
    }
}

// ---------------------------------------------------------------------------
// Subsets of a table, and the reusable Fields allocation

impl FieldTable {
    /// A table holding only the paths of the slots in `keep`; slots keep
    /// their numbers and names, so [`Fields`] read with it are indexed like
    /// this table's. Used to read just the fields that decide whether a
    /// record can match at all.
    pub fn subset(&self, keep: &[Slot]) -> FieldTable {
        let mut t = FieldTable { nodes: vec![Node::default()], names: self.names.clone() };
        for &slot in keep {
            let mut node = Self::ROOT;
            for seg in self.names[slot as usize].split('.') {
                node = match t.child(node, seg) {
                    Some(c) => c,
                    None => {
                        let id = t.nodes.len() as u32;
                        let depth = t.nodes[node as usize].depth + 1;
                        t.nodes.push(Node { depth, ..Node::default() });
                        t.nodes[node as usize].children.push(Child::new(seg, id));
                        id
                    }
                };
            }
            t.nodes[node as usize].slot = Some(slot);
        }
        t
    }
}

/// The allocation of a [`Fields`], kept from one record to the next. A
/// `Fields` borrows the record it was read from; this holds its emptied
/// buffer between records, so a caller that reads many records allocates
/// once.
///
/// ```
/// use apt_netcon::format::event::{FieldTable, FieldsBuf};
/// let mut t = FieldTable::new();
/// let host = t.intern("host.id");
/// let mut buf = FieldsBuf::default();
/// for rec in [&br#"{"host":{"id":"a"}}"#[..], br#"{"host.id":"b"}"#] {
///     let mut f = buf.take();
///     t.extract(rec, &mut f).unwrap();
///     assert_eq!(f.get(host).count(), 1);
///     buf.put_back(f);
/// }
/// ```
#[derive(Debug, Default)]
pub struct FieldsBuf {
    values: Vec<(Slot, Scalar<'static>)>,
    links: Links,
}

/// A buffer grown past this many values by an unusual record is released
/// rather than kept.
const KEEP_CAPACITY: usize = 1 << 14;

impl FieldsBuf {
    /// An empty `Fields` using the kept allocation.
    pub fn take<'a>(&mut self) -> Fields<'a> {
        Fields { values: relabel(std::mem::take(&mut self.values)), links: std::mem::take(&mut self.links), plain: false }
    }

    /// Keep the allocation of `fields` (its values are dropped).
    pub fn put_back(&mut self, mut fields: Fields<'_>) {
        if fields.values.capacity() <= KEEP_CAPACITY {
            fields.clear();
            self.values = relabel(fields.values);
            self.links = fields.links;
        }
    }
}

/// Empty `v` and give its allocation to a vector of another lifetime. The
/// two element types have the same layout, so collecting the (empty)
/// iterator reuses the buffer in place: no allocation, and no `unsafe`.
fn relabel<'x, 'y>(mut v: Vec<(Slot, Scalar<'x>)>) -> Vec<(Slot, Scalar<'y>)> {
    v.clear();
    v.into_iter().map(|(slot, _)| (slot, Scalar::Null)).collect()
}
#[cfg(test)]
mod tests {
    use super::*;

    /// The scan that checks the syntax as it goes says "valid" only of a
    /// record the syntax check finds valid, and "a tree surely reads it"
    /// only where the check says so too; it refuses only records that are
    /// not valid JSON, and reads those as the scan without the check does. Tried on the sample's records, hand-made edge cases and
    /// random damage to them (bytes flipped, cut, doubled, structural bytes
    /// put in), with tables that read the skipped members' neighbours.
    #[test]
    fn a_checked_scan_agrees_with_the_syntax_check() {
        let sample = include_str!("../../../examples/data/sample.ndjson");
        let mut texts: Vec<Vec<u8>> = sample.lines().map(|l| l.as_bytes().to_vec()).collect();
        for extra in [
            r#"{"a":{"x":[1,2,{"y":null}],"z":{}},"b":[]}"#,
            r#"{"a":{"x":[1,2,{"y":nul}]}}"#,
            r#"{"a":{"x":[1,2,]}}"#,
            r#"{"a":{"x":{"k" 1}}}"#,
            r#"{"a":{"x":{"k":1,}}}"#,
            r#"{"a":{"x":{,"k":1}}}"#,
            r#"{"a":{"x":[01]}}"#,
            r#"{"a":{"x":[1.]}}"#,
            r#"{"a":{"x":[-]}}"#,
            r#"{"a":{"x":[1e5, 2E-3, -0.5e+7]}}"#,
            r#"{"a":{"x":"\ud800"}}"#,
            r#"{"a":{"x":["\u00e9", "\n\t\\\/"]}}"#,
            r#"{"a":{"x":{"\ud834":1}}}"#,
            r#"{"a":{"x":[truefalse]}}"#,
            r#"{"a":{"x":[true , false , null ]} , "c" : 1e2 }"#,
            r#"{"a":{"x":[[[[]]],{"":{}}]}}"#,
            r#"{"a":{"x":[1 2]}}"#,
            r#"{"a":{"x":{"k":1 "j":2}}}"#,
            r#"{"a":{"x":]}}"#,
            r#"{"c":12345678901234567890123}"#,
        ] {
            texts.push(extra.as_bytes().to_vec());
        }
        let mut long = b"{\"c\":".to_vec();
        long.extend(std::iter::repeat_n(b'7', 301));
        long.push(b'}');
        texts.push(long);
        let mut next = crate::xorshift(0x5eed_cafe);
        let bases = texts.clone();
        let bytes = b"{}[],:\" 0e-.tnx\\";
        for _ in 0..20_000 {
            let mut t = bases[next() as usize % bases.len()].clone();
            for _ in 0..1 + next() % 3 {
                let at = next() as usize % t.len().max(1);
                match next() % 5 {
                    0 if !t.is_empty() => {
                        t.remove(at);
                    }
                    1 => t.insert(at.min(t.len()), bytes[next() as usize % bytes.len()]),
                    2 if !t.is_empty() => t[at] = bytes[next() as usize % bytes.len()],
                    3 if at + 4 < t.len() => {
                        let piece = t[at..at + 4].to_vec();
                        t.splice(at..at, piece);
                    }
                    _ => t.truncate(at + 1),
                }
            }
            texts.push(t);
        }
        let tables = [
            table(&["@timestamp", "event.category", "process.name", "host.id", "c"]),
            table(&["a", "b"]),
            table(&["a.z", "process.parent.name", "destination.ip", "agent.id"]),
            table(&[]),
        ];
        let (mut sure, mut valid) = (0, 0);
        for t in &texts {
            let want = crate::format::syntax::check(t);
            valid += usize::from(want.valid);
            for table in &tables {
                let mut f = Fields::default();
                let plain = table.scan(t, &mut f).is_ok();
                let mut f = Fields::default();
                let show = String::from_utf8_lossy(t);
                match table.scan_checked(t, &mut f) {
                    Ok(Some(got)) => {
                        sure += 1;
                        assert!(want.valid, "{show:?}: valid for the scan, not for the check");
                        assert!(!got.tree || want.tree, "{show:?}: a tree for the scan, not for the check");
                        assert!(plain, "{show:?}: a scan sure only when checking");
                    }
                    // Read as the scan without the check reads it: a
                    // record that is not valid JSON.
                    Ok(None) => assert!(plain && !want.valid, "{show:?}: refused by the check"),
                    // Unsure where the scan without the check is.
                    Err(Unsure) => assert!(!plain, "{show:?}: unsure"),
                }
            }
        }
        assert!(sure > 1000 && valid > 1000, "{sure} sure, {valid} valid of {}", texts.len());
    }

    fn table(paths: &[&str]) -> FieldTable {
        let mut t = FieldTable::new();
        for p in paths {
            t.intern(p);
        }
        t
    }

    fn strings(f: &Fields, slot: Slot) -> Vec<String> {
        f.get(slot).filter_map(|v| v.keyword().map(|s| s.into_owned())).collect()
    }

    /// Each slot's values come back in document order, however they
    /// interleave; cleared (or put back and taken again), none is left.
    #[test]
    fn values_by_slot_follow_their_chains() {
        let t = table(&["a", "b", "c"]);
        let mut buf = FieldsBuf::default();
        let mut f = buf.take();
        t.extract(br#"{"a":["1","2"],"b":"x","c":[],"a.z":0}"#, &mut f).unwrap();
        f.push(0, Scalar::Str("3".into()));
        assert_eq!(strings(&f, 0), ["1", "2", "3"]);
        assert_eq!(strings(&f, 1), ["x"]);
        assert_eq!(f.get(2).count(), 0);
        assert_eq!(f.get(40).count(), 0, "a slot past every slot read");
        buf.put_back(f);
        let mut f = buf.take();
        assert_eq!(f.get(0).count() + f.get(1).count(), 0, "taken again: empty");
        t.scan(br#"{"b":"y","a":"4"}"#, &mut f).unwrap();
        assert_eq!((strings(&f, 0), strings(&f, 1)), (vec!["4".to_string()], vec!["y".to_string()]));
        f.clear();
        assert_eq!(f.get(0).count() + f.get(1).count(), 0, "cleared: empty");
    }

    /// Numbers read by the scanner are what serde_json reads, on the
    /// integers it reads without serde_json and on the others.
    #[test]
    fn numbers_as_serde_json_reads_them() {
        let mut tokens: Vec<String> = ["0", "-0", "7", "-7", "00", "01", "-01", "-", "", "1.0", "1e3", "-1.5E-2", "0.0", "1-", "--1", "+1"]
            .map(String::from)
            .to_vec();
        for n in 15..=21 {
            for lead in ["9", "1"] {
                let d = format!("{lead}{}", "9".repeat(n - 1));
                tokens.push(format!("-{d}"));
                tokens.push(d);
            }
        }
        tokens.extend(["9223372036854775807", "9223372036854775808", "-9223372036854775808", "18446744073709551616"].map(String::from));
        let mut fast = 0;
        for t in &tokens {
            let ours = scan::number(t.as_bytes()).ok();
            let theirs = serde_json::from_str::<serde_json::Number>(t).ok().map(|n| {
                n.as_i64().map(Scalar::Int).or(n.as_u64().map(Scalar::UInt)).unwrap_or_else(|| Scalar::Float(n.as_f64().unwrap()))
            });
            assert_eq!(ours, theirs, "{t:?}");
            fast += scan::small_integer(t.as_bytes()).is_some() as usize;
        }
        assert!(fast >= 10, "{fast}");
    }

    /// A scan is plain when no name on the table's paths is dotted or met
    /// twice in one object; the other readers never say so.
    #[test]
    fn a_plain_scan() {
        let t = table(&["process.parent.name", "process.args", "host.id"]);
        let mut f = Fields::new();
        for (rec, plain) in [
            (r#"{"process":{"parent":{"name":"apt"},"args":["a",["b"]]},"host":{"id":"h"}}"#, true),
            (r#"{"process":{"args":[{"x":1},{"x":2}],"pid":1,"pid":2},"x.y":1,"x":{"x":1},"x":2}"#, true),
            (r#"{"process":[{"args":"a"},{"args":"b"}]}"#, true),
            (r#"{"process.parent.name":"apt"}"#, false),
            (r#"{"process":{"parent.name":"apt"}}"#, false),
            (r#"{"host":{"id":"a"},"host":{"id":"b"}}"#, false),
            (r#"{"host":{"id":"a","id":"b"}}"#, false),
            (r#"{"process":{"args":["a"]},"process":{"parent":{"name":"apt"}}}"#, false),
        ] {
            t.scan(rec.as_bytes(), &mut f).unwrap();
            assert_eq!(f.plain(), plain, "{rec}");
            t.extract(rec.as_bytes(), &mut f).unwrap();
            assert!(!f.plain(), "{rec}");
        }
        assert!(t.scan(br#"{"host":{"id":"a"}"#, &mut f).is_err());
        assert!(!f.plain());
        // Stamps about to wrap: reset before the scan, not during it (a
        // reset inside would forget the open objects' names).
        for stamp in [u32::MAX - 1, u32::MAX - 100, u32::MAX] {
            f.links.stamp = stamp;
            t.scan(br#"{"host":{"id":"a"},"host":{"id":"b"}}"#, &mut f).unwrap();
            assert!(!f.plain(), "{stamp}");
        }
        // A repeated name in another object of the same path (an array's
        // elements) is no repeat.
        t.scan(br#"{"process":[{"args":"a"}],"host":{"id":"h"}}"#, &mut f).unwrap();
        assert!(f.plain());
    }

    #[test]
    fn nested_dotted_and_mixed() {
        let t = table(&["process.parent.name", "host.id"]);
        for rec in [
            r#"{"process":{"parent":{"name":"apt"}},"host":{"id":"h"}}"#,
            r#"{"process.parent.name":"apt","host.id":"h"}"#,
            r#"{"process":{"parent.name":"apt"},"host":{"id":"h"}}"#,
            r#"{"process.parent":{"name":"apt"},"x":[1,{"a":2}],"host.id":"h"}"#,
        ] {
            let mut f = Fields::new();
            t.extract(rec.as_bytes(), &mut f).unwrap();
            assert_eq!(strings(&f, 0), vec!["apt"], "{rec}");
            assert_eq!(strings(&f, 1), vec!["h"], "{rec}");
        }
    }

    /// Member names are borrowed, or unescaped when they hold an escape.
    #[test]
    fn escaped_member_names() {
        let t = table(&["process.parent.name", "host.id"]);
        for rec in [
            r#"{"proc\u0065ss":{"par\u0065nt":{"name":"apt"}},"host\u002eid":"h"}"#,
            r#"{"process":{"parent":{"n\u0061me":"apt"}},"host":{"\u0069d":"h"}}"#,
        ] {
            let mut f = Fields::new();
            t.extract(rec.as_bytes(), &mut f).unwrap();
            assert_eq!(strings(&f, 0), vec!["apt"], "{rec}");
            assert_eq!(strings(&f, 1), vec!["h"], "{rec}");
        }
        let mut f = Fields::new();
        assert!(t.extract(br#"{"host\ud800":1}"#, &mut f).is_err(), "a lone surrogate in a name");
    }

    #[test]
    fn arrays_flatten_and_duplicates_accumulate() {
        let t = table(&["process.args", "a.b"]);
        let rec = r#"{"process":{"args":["sh",["-c"],"x"]},"a":[{"b":1},{"b":"two"}],"a.b":null}"#;
        let mut f = Fields::new();
        t.extract(rec.as_bytes(), &mut f).unwrap();
        assert_eq!(strings(&f, 0), vec!["sh", "-c", "x"]);
        assert_eq!(strings(&f, 1), vec!["1", "two"]);
        let rec = r#"{"process.args":"-c","process":{"args":["sh"]}}"#;
        t.extract(rec.as_bytes(), &mut f).unwrap();
        assert_eq!(strings(&f, 0), vec!["-c", "sh"]);
    }

    #[test]
    fn null_and_empty() {
        let t = table(&["a"]);
        let mut f = Fields::new();
        for (rec, null) in [
            (r#"{}"#, true),
            (r#"{"a":null}"#, true),
            (r#"{"a":[]}"#, true),
            (r#"{"a":[null]}"#, true),
            (r#"{"a":""}"#, false),
            (r#"{"a":{}}"#, false),
        ] {
            t.extract(rec.as_bytes(), &mut f).unwrap();
            assert_eq!(f.is_null(0), null, "{rec}");
        }
    }

    #[test]
    fn errors() {
        let t = table(&["a"]);
        let mut f = Fields::new();
        assert_eq!(t.extract(b"[1]", &mut f), Err(ExtractError::NotAnObject));
        assert_eq!(t.extract(b"\"s\"", &mut f), Err(ExtractError::NotAnObject));
        assert_eq!(t.extract(b"{\"a\":", &mut f), Err(ExtractError::InvalidJson));
        assert_eq!(t.extract(b"{} {}", &mut f), Err(ExtractError::InvalidJson));
        assert_eq!(t.extract(b"{\"a\":\"\xff\"}", &mut f), Err(ExtractError::InvalidJson));
        // Deep nesting on a path the rule reads hits serde_json's depth limit.
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(t.extract(deep.as_bytes(), &mut f), Err(ExtractError::TooDeep));
        // Members that are not read are skipped iteratively: valid, and no stack growth.
        let deep = format!("{{\"b\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(t.extract(deep.as_bytes(), &mut f), Ok(()));
    }

    #[test]
    fn invalid_utf8_anywhere_is_invalid_json() {
        let t = table(&["a"]);
        let mut f = Fields::new();
        // in a member that is skipped, and inside an array at the top level
        assert_eq!(t.extract(b"{\"a\":1,\"junk\":\"\xC3\x28\"}", &mut f), Err(ExtractError::InvalidJson));
        assert_eq!(t.extract(b"[\"\xff\"]", &mut f), Err(ExtractError::InvalidJson));
        assert_eq!(t.scan(b"{\"a\":1,\"junk\":\"\xC3\x28\"}", &mut f), Err(Unsure));
    }

    #[test]
    fn depth_limit_of_the_validating_reader() {
        // 127 containers on a read path (the top-level object included) are
        // read; 128 are too deep. The scanner's limit is lower.
        let t = table(&["a"]);
        let extract = |r: String| t.extract(r.as_bytes(), &mut Fields::new());
        let scan = |r: String| {
            let mut f = Fields::new();
            t.scan(r.as_bytes(), &mut f).map(|()| strings(&f, 0))
        };
        let nest = |n: usize| format!("{{\"a\":{}1{}}}", "[".repeat(n - 1), "]".repeat(n - 1));
        assert_eq!(extract(nest(127)), Ok(()));
        assert_eq!(extract(nest(128)), Err(ExtractError::TooDeep));
        assert_eq!(scan(nest(SCAN_MAX_DEPTH)), Ok(vec!["1".to_string()]));
        assert_eq!(scan(nest(SCAN_MAX_DEPTH + 1)), Err(Unsure));
        // skipped members count too
        let skipped = |n: usize| format!("{{\"b\":{}{},\"a\":1}}", "[".repeat(n - 1), "]".repeat(n - 1));
        assert_eq!(scan(skipped(SCAN_MAX_DEPTH)), Ok(vec!["1".to_string()]));
        assert_eq!(scan(skipped(SCAN_MAX_DEPTH + 1)), Err(Unsure));
    }

    /// Every record of the other tests, and more: the scanner either agrees
    /// with the validating reader or is unsure.
    const SAMPLES: &[&str] = &[
        r#"{"process":{"parent":{"name":"apt"}},"host":{"id":"h"}}"#,
        r#"{"process.parent.name":"apt","host.id":"h"}"#,
        r#"{"process":{"parent.name":"apt"},"host":{"id":"h"}}"#,
        r#"{"process.parent":{"name":"apt"},"x":[1,{"a":2}],"host.id":"h"}"#,
        r#"{"process":{"args":["sh",["-c"],"x"]},"a":[{"b":1},{"b":"two"}],"a.b":null}"#,
        r#"{"process.args":"-c","process":{"args":["sh"]}}"#,
        r#" { "a" : { "b" : [ true , false , null , -0 , 1e3 , 18446744073709551615 , -9223372036854775808 , 1.5E-2 ] } , "n" : 12345678901234567890123 } "#,
        r#"{"a":{},"b":[],"n":{"x":[[],{}]},"host":{"id":{"deep":{"er":[1]}}}}"#,
        r#"{"skip":{"s":"q\"uo\\te\/\b\f\n\r\t\u00e9","t":[1,-2.5e+3,true,false,null,{"k":"v"}]},"a":"é ü 🦀"}"#,
        r#"{"a":"x","a":"y","a.b":"z","a":{"b":["w"]}}"#,
        "{}",
        "\t{\"a\" :\"\u{7f}\"}\r\n",
    ];

    fn all_table() -> FieldTable {
        table(&["process.parent.name", "host.id", "process.args", "a.b", "a", "n", "skip.t"])
    }

    /// Checks the scanner's contract on `rec` against the validating reader;
    /// returns (both read it, only the scanner did).
    fn same(t: &FieldTable, rec: &[u8]) -> (bool, bool) {
        let (mut a, mut b) = (Fields::new(), Fields::new());
        let show = || String::from_utf8_lossy(rec).into_owned();
        let full = t.extract(rec, &mut a);
        let fast = t.scan(rec, &mut b);
        if let (Ok(()), Ok(())) = (full, fast) {
            assert_eq!(a.values, b.values, "{}", show());
        }
        // Sure and valid JSON: the validating reader accepts it (so a
        // detector may take the scan for its read).
        if fast.is_ok() && crate::format::syntax::valid(rec) {
            assert_eq!(full, Ok(()), "{}", show());
        }
        if matches!(full, Err(ExtractError::NotAnObject | ExtractError::TooDeep)) {
            assert_eq!(fast, Err(Unsure), "{}", show());
        }
        (full.is_ok() && fast.is_ok(), full.is_err() && fast.is_ok())
    }

    #[test]
    fn scan_agrees_with_extract() {
        let t = all_table();
        for rec in SAMPLES {
            let (mut a, mut b) = (Fields::new(), Fields::new());
            t.extract(rec.as_bytes(), &mut a).unwrap();
            assert_eq!(t.scan(rec.as_bytes(), &mut b), Ok(()), "{rec}");
            assert_eq!(a.values, b.values, "{rec}");
        }
        // unsure where the validating reader unescapes or refuses
        for rec in [
            r#"{"process":{"parent":"\ud800"}}"#,
            r#"{"process":["\n"]}"#,
            r#"{"\u0061":"x"}"#,
            r#"{"a":"x\ty"}"#,
            r#"{"a":["x","\n"]}"#,
            "{\"a\":1",
            "{\"a\":1}}",
            "{\"a\":1} {}",
            "{\"a\":[1}",
            "{\"b\":[{]}}",
            "{\"b\":{]}",
            "{\"b\":\"unterminated}",
            "{\"b\":\"raw\ttab\"}",
            "{\"b\":\"bad \\x escape\"}",
            "{\"b\":\"short \\u12\"}",
            "{\"a\":tru}",
            "{\"a\":nul}",
            "{\"process\":tru}",
            "{\"process\":[01]}",
            "{\"a\":1.2.3}",
            "{\"a\":-}",
            "{\"a\" 1}",
            "{\"a\":1 \"b\":2}",
            "{\"a\":[1 2]}",
            "{\"a\":[1,]}",
            "{,}",
            "{\"a\":}",
            "{\"b\":@}",
            "[1,2]",
            "\"s\"",
            "12",
            "",
            "   ",
            "\u{feff}{}",
        ] {
            let mut f = Fields::new();
            assert_eq!(t.scan(rec.as_bytes(), &mut f), Err(Unsure), "{rec}");
        }
    }

    /// Keys of every length up to eighteen, dotted at every place, at a
    /// record's end (fewer than eight or sixteen bytes left) and not: the
    /// scan's word-wise read of a short key and its general walk find what
    /// the validating reader finds, and say when a name was dotted.
    #[test]
    fn keys_of_every_length_and_dot() {
        let word = "abcdefghijklmnopqr";
        let mut paths: Vec<String> = (1..=word.len()).map(|n| word[..n].to_string()).collect();
        paths.extend(["ab.cd", "abcdefg.hi", "a.bcdefghij", "abc.", "abcdefghijk.", "abcdefghij.k", "abcdefgh.i", ""].map(String::from));
        let t = table(&paths.iter().map(String::as_str).collect::<Vec<_>>());
        let mut keys: Vec<String> = (0..=word.len()).map(|n| word[..n].to_string()).collect();
        for n in 1..=word.len() {
            for d in 0..=n {
                keys.push(format!("{}.{}", &word[..d], &word[d..n]));
            }
        }
        keys.extend([r"ab\u0063d", r#"ab\"cd"#, "\u{e9}", "a\u{e9}bc", "x\ty"].map(String::from));
        let mut read = 0;
        for key in &keys {
            for rec in [
                format!(r#"{{"{key}":"v"}}"#),
                format!(r#"{{"{key}":1}}"#),
                format!(r#"{{"{key}":{{"cd":2,"hi":"w"}},"zzzzzzzzzzzz":0}}"#),
                format!(r#"{{"q":0,"{key}":"v","zzzzzzzzzzzz":0}}"#),
            ] {
                // (`same` compares the two reads' values.)
                let (both, _) = same(&t, rec.as_bytes());
                if both {
                    read += 1;
                    let mut b = Fields::new();
                    t.scan(rec.as_bytes(), &mut b).unwrap();
                    // Not plain when a dotted name led somewhere.
                    let dotted = key.contains('.') && t.walk(FieldTable::ROOT, key).is_some();
                    assert_eq!(b.plain(), !dotted, "{rec}");
                }
            }
        }
        assert!(read > 600, "{read}");
    }

    /// Random mutations of the samples: never a disagreement.
    #[test]
    fn scan_never_contradicts_extract_on_mutations() {
        let t = all_table();
        let mut rnd = crate::xorshift(0x9E37_79B9_7F4A_7C15);
        const BYTES: &[u8] = b"{}[]\",:\\ -0123456789.eE+tfnrulasxyY_u\t\n\x01\x7f\xc3\xa9\xff";
        let (mut agreed, mut only_scan) = (0u32, 0u32);
        let samples: Vec<&str> = SAMPLES.iter().chain(MORE_SAMPLES).copied().collect();
        for _ in 0..150_000 {
            let mut rec = samples[(rnd() % samples.len() as u64) as usize].as_bytes().to_vec();
            for _ in 0..1 + rnd() % 3 {
                if rec.is_empty() {
                    break;
                }
                let at = (rnd() % rec.len() as u64) as usize;
                let c = BYTES[(rnd() % BYTES.len() as u64) as usize];
                match rnd() % 4 {
                    0 => rec[at] = c,
                    1 => rec.insert(at, c),
                    2 => {
                        rec.remove(at);
                    }
                    _ => {
                        let n = (rnd() % 8) as usize;
                        let piece = rec[at..(at + n).min(rec.len())].to_vec();
                        let to = (rnd() % rec.len() as u64) as usize;
                        rec.splice(to..to, piece);
                    }
                }
            }
            let (both, lenient) = same(&t, &rec);
            agreed += both as u32;
            only_scan += lenient as u32;
        }
        // The mutations exercise both sides of the contract.
        assert!(agreed > 20_000, "{agreed}");
        assert!(only_scan > 500 && only_scan < agreed, "{only_scan}");
        // Unmutated, the scanner reads every sample without escapes.
        for rec in SAMPLES {
            assert_eq!(same(&t, rec.as_bytes()), (true, false), "{rec}");
        }
        for rec in MORE_SAMPLES {
            same(&t, rec.as_bytes());
        }
    }

    /// Samples with escapes, non-ASCII text, and words of every alignment.
    const MORE_SAMPLES: &[&str] = &[
        r#"{"process":{"args":["sh","-c","echo \"hi\" \\ \/ \u00e9\ud83e\udd80"],"parent":{"name":"apt"}},"host":{"id":"h\u0000"}}"#,
        r#"{"a":{"b":"x\\\\\"","c":"\\"},"host.id":"\\\"","n":[-0.0,0,1E+2,-1e-2,123456789012345678901234567890]}"#,
        r#"{"process.parent.name":"\u0061pt","a.b":["\"","\\","/"],"skip":{"t":"\"]}[{\"","u":"\u005d\u007b"}}"#,
        "{\"é\":\"ü\",\"host\":{\"id\":\"ホスト\",\"x\":\"🦀🦀🦀🦀🦀🦀🦀\"},\"process.args\":[\"ö\",\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"]}",
        r#"{"a":{"b":{"c":{"d":[[[[[[[{"e":1}]]]]]]]}}},"n":1,"skip":{"t":[[],[[]],{}],"s":"12345678"}}"#,
        r#"{"skip":{"lone":"\ud800","t":[true,false,null,1e400]},"n":1e308,"x":"\/"}"#,
    ];

    /// Reading keys from a record's bytes agrees with splitting them.
    #[test]
    fn walk_key_agrees_with_walk() {
        let t = table(&["a", "a.b", "process.parent.name", "averyverylongsegment.x", "", "a..b", "x.", "12345678.9"]);
        let keys = [
            "a", "a.b", "a.", ".a", "", ".", "..", "a..b", "a.b.c", "process", "process.parent", "process.parent.name",
            "pr", "pro", "proc", "proce", "a/", "a./", "ab.c", "abc.d", "abcdefgh.x", "abcdefghi.x", "x/.y",
            "process.parent.name.x", "averyverylongsegment", "averyverylongsegment.x", "averyverylongsegmenT.x", "x.",
            "x", "12345678", "12345678.9", "12345678.", "proces", "processs",
        ];
        for key in keys {
            for pad in ["", "\"", "\":1,\"abcdefgh\":2}"] {
                let rec = format!("{key}{pad}");
                let b = rec.as_bytes();
                for node in 0..t.nodes.len() as u32 {
                    // The plain definition: split on dots, compare segments.
                    let naive = key.split('.').try_fold(node, |n, seg| {
                        t.nodes[n as usize].children.iter().find(|c| &c.seg[..] == seg.as_bytes()).map(|c| c.node)
                    });
                    assert_eq!(t.walk(node, key), naive, "{key:?} from {node}");
                    assert_eq!(t.walk_key(node, b, 0, key.len()), naive, "{key:?}{pad:?} from {node}");
                }
            }
        }
    }

    #[test]
    fn subset_keeps_slot_numbers() {
        let t = all_table();
        let host = t.lookup("host.id").unwrap();
        let args = t.lookup("process.args").unwrap();
        let s = t.subset(&[args]);
        assert_eq!(s.len(), t.len());
        assert_eq!(s.name(host), "host.id");
        assert_eq!(s.lookup("process.args"), Some(args));
        assert_eq!(s.lookup("host.id"), None);
        let rec = br#"{"host":{"id":"h"},"process":{"parent":{"name":"apt"},"args":["-c"]}}"#;
        let mut f = Fields::new();
        s.scan(rec, &mut f).unwrap();
        assert_eq!(f.iter().cloned().collect::<Vec<_>>(), vec![(args, Scalar::Str("-c".into()))]);
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let t = table(&["a"]);
        let mut f = Fields::new();
        t.extract(br#"{"\u0061":"x\ty"}"#, &mut f).unwrap();
        assert_eq!(strings(&f, 0), vec!["x\ty"]);
    }
}
