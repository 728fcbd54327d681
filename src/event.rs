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
//!   record's *structure* (a single top-level object and nothing after it;
//!   every string closed, valid UTF-8, with valid escapes and no raw control
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

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

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
                    self.nodes.push(Node::default());
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
    fn child_head(&self, node: u32, seg: &[u8], head: u64) -> Option<u32> {
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
    fn walk_key(&self, node: u32, b: &[u8], start: usize, end: usize) -> Option<u32> {
        let mut n = node;
        let mut s = start;
        loop {
            // The next dot (or the key's end), and the segment's head.
            let klen = end - s;
            let (seg_end, head) = match b.get(s..s + 8) {
                Some(w) => {
                    let w = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
                    let x = w ^ (LO * b'.' as u64);
                    // The lowest flag is exact (spurious ones only above it).
                    let mut dots = x.wrapping_sub(LO) & !x & HI;
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
            let x = head ^ (LO * b'.' as u64);
            let dots = x.wrapping_sub(LO) & !x & HI;
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

    /// Extract the values of every slot from one JSON record: the validating
    /// reader (see the module docs). The top level must be an object, and the
    /// whole record valid UTF-8. Values borrow from `record` where no
    /// unescaping was needed.
    pub fn extract<'a>(&self, record: &'a [u8], out: &mut Fields<'a>) -> Result<(), ExtractError> {
        out.values.clear();
        // serde_json checks UTF-8 only in the strings it reads, not in the
        // members it skips; a record that is not UTF-8 is not JSON at all.
        if std::str::from_utf8(record).is_err() {
            return Err(ExtractError::InvalidJson);
        }
        let mut de = serde_json::Deserializer::from_slice(record);
        let seed = TopSeed { table: self, out };
        seed.deserialize(&mut de).map_err(classify)?;
        de.end().map_err(classify)?;
        Ok(())
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

fn classify(e: serde_json::Error) -> ExtractError {
    let msg = e.to_string();
    if msg.starts_with(NOT_OBJECT) {
        ExtractError::NotAnObject
    } else if msg.starts_with("recursion limit exceeded") {
        ExtractError::TooDeep
    } else {
        ExtractError::InvalidJson
    }
}

const NOT_OBJECT: &str = "apt-netcon: top level is not an object";

/// The values found in one record: `(slot, value)` pairs in document order.
#[derive(Debug, Default)]
pub struct Fields<'a> {
    values: Vec<(Slot, Scalar<'a>)>,
}

impl<'a> Fields<'a> {
    pub fn new() -> Self {
        Fields { values: Vec::new() }
    }

    /// Forget every value (keeps the allocation).
    pub(crate) fn clear(&mut self) {
        self.values.clear();
    }

    /// Add a value of `slot`.
    pub(crate) fn push(&mut self, slot: Slot, v: Scalar<'a>) {
        self.values.push((slot, v));
    }

    /// All values of `slot` (empty when absent).
    pub fn get(&self, slot: Slot) -> impl Iterator<Item = &Scalar<'a>> + Clone + '_ {
        self.values.iter().filter(move |(s, _)| *s == slot).map(|(_, v)| v)
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

struct TopSeed<'t, 'f, 'a> {
    table: &'t FieldTable,
    out: &'f mut Fields<'a>,
}

impl<'de, 't, 'f> DeserializeSeed<'de> for TopSeed<'t, 'f, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(TopVisitor(self))
    }
}

struct TopVisitor<'t, 'f, 'a>(TopSeed<'t, 'f, 'a>);

impl<'de, 't, 'f> Visitor<'de> for TopVisitor<'t, 'f, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        visit_object(self.0.table, 0, self.0.out, map)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Err(de::Error::custom(NOT_OBJECT))
    }
}

/// A member name, borrowed from the record unless it holds an escape.
/// (`next_key::<Cow<str>>` would copy every name: serde's `Cow` impl always
/// deserializes to `Owned`.)
pub(crate) struct MemberName;

impl<'de> DeserializeSeed<'de> for MemberName {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for MemberName {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

fn visit_object<'de, A: MapAccess<'de>>(
    table: &FieldTable,
    node: u32,
    out: &mut Fields<'de>,
    mut map: A,
) -> Result<(), A::Error> {
    while let Some(key) = map.next_key_seed(MemberName)? {
        match table.walk(node, &key) {
            Some(n) => map.next_value_seed(ValueSeed { table, node: n, out })?,
            None => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(())
}

/// Reads the value at trie node `node`: stores scalars when the node is a
/// slot, descends into objects when the node has children.
struct ValueSeed<'t, 'f, 'a> {
    table: &'t FieldTable,
    node: u32,
    out: &'f mut Fields<'a>,
}

impl<'t, 'f, 'a> ValueSeed<'t, 'f, 'a> {
    fn slot(&self) -> Option<Slot> {
        self.table.nodes[self.node as usize].slot
    }
    fn push(&mut self, v: Scalar<'a>) {
        if let Some(s) = self.slot() {
            self.out.values.push((s, v));
        }
    }
}

impl<'de, 't, 'f> DeserializeSeed<'de> for ValueSeed<'t, 'f, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, 't, 'f> Visitor<'de> for ValueSeed<'t, 'f, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(mut self, v: bool) -> Result<(), E> {
        self.push(Scalar::Bool(v));
        Ok(())
    }
    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<(), E> {
        self.push(Scalar::Int(v));
        Ok(())
    }
    fn visit_u64<E: de::Error>(mut self, v: u64) -> Result<(), E> {
        self.push(match i64::try_from(v) {
            Ok(i) => Scalar::Int(i),
            Err(_) => Scalar::UInt(v),
        });
        Ok(())
    }
    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<(), E> {
        self.push(Scalar::Float(v));
        Ok(())
    }
    fn visit_borrowed_str<E: de::Error>(mut self, v: &'de str) -> Result<(), E> {
        self.push(Scalar::Str(Cow::Borrowed(v)));
        Ok(())
    }
    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<(), E> {
        if self.slot().is_some() {
            self.push(Scalar::Str(Cow::Owned(v.to_string())));
        }
        Ok(())
    }
    fn visit_string<E: de::Error>(mut self, v: String) -> Result<(), E> {
        self.push(Scalar::Str(Cow::Owned(v)));
        Ok(())
    }
    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        self.push(Scalar::Null);
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let ValueSeed { table, node, out } = self;
        while seq.next_element_seed(ValueSeed { table, node, out: &mut *out })?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(mut self, map: A) -> Result<(), A::Error> {
        self.push(Scalar::Object);
        visit_object(self.table, self.node, self.out, map)
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
                        t.nodes.push(Node::default());
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
/// use apt_netcon::event::{FieldTable, FieldsBuf};
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
}

/// A buffer grown past this many values by an unusual record is released
/// rather than kept.
const KEEP_CAPACITY: usize = 1 << 14;

impl FieldsBuf {
    /// An empty `Fields` using the kept allocation.
    pub fn take<'a>(&mut self) -> Fields<'a> {
        Fields { values: relabel(std::mem::take(&mut self.values)) }
    }

    /// Keep the allocation of `fields` (its values are dropped).
    pub fn put_back(&mut self, fields: Fields<'_>) {
        if fields.values.capacity() <= KEEP_CAPACITY {
            self.values = relabel(fields.values);
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

// ---------------------------------------------------------------------------
// The fast scanner
//
// A recursive descent over the record that reads, at each level, only the
// keys, and for each member either descends (a path of the table) or jumps
// to the member's end. Strings — most of a record's bytes — are crossed
// eight bytes at a time (SWAR: bit tricks on a u64, no `unsafe`, no SIMD
// intrinsics), stopping at the first quote, backslash, control or non-ASCII
// byte; a string holding anything but the closing quote takes the slow path,
// which checks escapes and UTF-8. A skipped container is crossed byte by
// byte between its strings, counting brackets (and matching their kinds on
// a bit stack).

/// [`FieldTable::scan`] could not vouch for a record: read it with
/// [`FieldTable::extract`] instead (which says what, if anything, is wrong).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsure;

/// The deepest nesting [`FieldTable::scan`] follows (containers, the
/// top-level object included), anywhere in a record; deeper, it is unsure.
/// Below the validating reader's limit of 127 on the paths it reads, so that
/// every record refused as too deep is one the scanner is unsure of.
pub const SCAN_MAX_DEPTH: usize = 100;

impl FieldTable {
    /// The fast scanner (see the module docs): read the values of every slot
    /// from one JSON record, checking its structure but not every detail of
    /// the members it skips. `Err(Unsure)` means: read it with
    /// [`FieldTable::extract`]. Allocates only to grow `out`.
    pub fn scan<'a>(&self, record: &'a [u8], out: &mut Fields<'a>) -> Result<(), Unsure> {
        out.values.clear();
        let mut s = Scanner { b: record, i: 0, table: self, out: &mut out.values };
        s.ws();
        if s.peek() != Some(b'{') {
            return Err(Unsure);
        }
        s.i += 1;
        s.object(Self::ROOT, 1)?;
        s.ws();
        if s.i != record.len() {
            return Err(Unsure);
        }
        Ok(())
    }
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// High bit set in the bytes of `w` that are `"`, `\`, below 0x20 or above
/// 0x7f. Exact for the lowest such byte (bits above it may be spurious),
/// which is the only one used.
#[inline(always)]
fn special_bytes(w: u64) -> u64 {
    let q = w ^ (LO * b'"' as u64);
    let bs = w ^ (LO * b'\\' as u64);
    (q.wrapping_sub(LO) & !q | bs.wrapping_sub(LO) & !bs | w.wrapping_sub(LO * 0x20) & !w | w) & HI
}

#[inline(always)]
fn is_special(c: u8) -> bool {
    c == b'"' || c == b'\\' || !(0x20..=0x7f).contains(&c)
}

/// Kinds of bytes outside strings, for skipping a container.
const OTHER: u8 = 0;
const QUOTE: u8 = 1;
const OPEN: u8 = 2;
const CLOSE: u8 = 3;

static CLASS: [u8; 256] = {
    let mut t = [OTHER; 256];
    t[b'"' as usize] = QUOTE;
    t[b'{' as usize] = OPEN;
    t[b'[' as usize] = OPEN;
    t[b'}' as usize] = CLOSE;
    t[b']' as usize] = CLOSE;
    t
};

/// Bytes that can continue a number or a literal (`true`, `false`, `null`).
static SCALAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = (c as u8).is_ascii_alphanumeric() || c == b'-' as usize || c == b'+' as usize || c == b'.' as usize;
        c += 1;
    }
    t
};

/// A number read where a field ends, converted exactly as the validating
/// reader converts it (serde_json's own number parser).
fn number(token: &[u8]) -> Result<Scalar<'static>, Unsure> {
    let n: serde_json::Number = serde_json::from_slice(token).map_err(|_| Unsure)?;
    if let Some(i) = n.as_i64() {
        Ok(Scalar::Int(i))
    } else if let Some(u) = n.as_u64() {
        Ok(Scalar::UInt(u))
    } else {
        n.as_f64().map(Scalar::Float).ok_or(Unsure)
    }
}

struct Scanner<'t, 'f, 'a> {
    b: &'a [u8],
    i: usize,
    table: &'t FieldTable,
    out: &'f mut Vec<(Slot, Scalar<'a>)>,
}

impl<'a> Scanner<'_, '_, 'a> {
    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Skip whitespace (compact JSON has none: one test).
    #[inline(always)]
    fn ws(&mut self) {
        if let Some(&c) = self.b.get(self.i) {
            if c <= b' ' {
                self.ws_slow();
            }
        }
    }

    fn ws_slow(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// Cross the string whose contents start at `self.i`; returns where its
    /// contents start and whether it holds an escape.
    #[inline(always)]
    fn string(&mut self) -> Result<(usize, bool), Unsure> {
        let b = self.b;
        let start = self.i;
        let mut i = start;
        while let Some(chunk) = b.get(i..i + 8) {
            let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            let m = special_bytes(w);
            if m != 0 {
                i += (m.trailing_zeros() >> 3) as usize;
                if b[i] == b'"' {
                    self.i = i + 1;
                    return Ok((start, false));
                }
                return self.string_slow(start, i);
            }
            i += 8;
        }
        while i < b.len() && !is_special(b[i]) {
            i += 1;
        }
        match b.get(i) {
            Some(b'"') => {
                self.i = i + 1;
                Ok((start, false))
            }
            Some(_) => self.string_slow(start, i),
            None => Err(Unsure),
        }
    }

    /// The rest of a string from its first backslash, control or non-ASCII
    /// byte at `i`: escapes checked, control bytes refused, UTF-8 checked.
    #[cold]
    fn string_slow(&mut self, start: usize, mut i: usize) -> Result<(usize, bool), Unsure> {
        let b = self.b;
        let mut escaped = false;
        let mut ascii = true;
        loop {
            match *b.get(i).ok_or(Unsure)? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    match b.get(i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                        Some(b'u') => {
                            let hex = b.get(i + 2..i + 6).ok_or(Unsure)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return Err(Unsure);
                            }
                            i += 6;
                        }
                        _ => return Err(Unsure),
                    }
                }
                0..=0x1f => return Err(Unsure),
                0x80.. => {
                    ascii = false;
                    i += 1;
                }
                _ => i += 1,
            }
        }
        if !ascii && std::str::from_utf8(&b[start..i]).is_err() {
            return Err(Unsure);
        }
        self.i = i + 1;
        Ok((start, escaped))
    }

    /// The members of an object whose `{` was just consumed, at trie node
    /// `node`, `depth` containers deep (this one included).
    fn object(&mut self, node: u32, depth: usize) -> Result<(), Unsure> {
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(Unsure);
            }
            self.i += 1;
            let (start, escaped) = self.string()?;
            if escaped {
                // A key to unescape: the validating reader's job.
                return Err(Unsure);
            }
            let child = self.table.walk_key(node, self.b, start, self.i - 1);
            self.expect(b':')?;
            self.ws();
            match child {
                Some(c) => self.value(c, depth)?,
                None => self.skip_value(depth)?,
            }
            if self.peek() != Some(b',') {
                self.ws();
                match self.peek() {
                    Some(b',') => {}
                    Some(b'}') => {
                        self.i += 1;
                        return Ok(());
                    }
                    _ => return Err(Unsure),
                }
            }
            self.i += 1;
            self.ws();
        }
    }

    /// Consume `c`, after optional whitespace.
    #[inline(always)]
    fn expect(&mut self, c: u8) -> Result<(), Unsure> {
        if self.peek() != Some(c) {
            self.ws();
            if self.peek() != Some(c) {
                return Err(Unsure);
            }
        }
        self.i += 1;
        Ok(())
    }

    /// A value at trie node `node`, inside `depth` open containers.
    fn value(&mut self, node: u32, depth: usize) -> Result<(), Unsure> {
        let slot = self.table.node_slot(node);
        match self.peek() {
            Some(b'"') => {
                self.i += 1;
                let (start, escaped) = self.string()?;
                if let Some(slot) = slot {
                    if escaped {
                        return Err(Unsure);
                    }
                    let s = std::str::from_utf8(&self.b[start..self.i - 1]).map_err(|_| Unsure)?;
                    self.out.push((slot, Scalar::Str(Cow::Borrowed(s))));
                }
            }
            Some(b'{') => {
                if depth >= SCAN_MAX_DEPTH {
                    return Err(Unsure);
                }
                self.i += 1;
                if let Some(slot) = slot {
                    self.out.push((slot, Scalar::Object));
                }
                if self.table.node_has_children(node) {
                    self.object(node, depth + 1)?;
                } else {
                    self.skip_open(depth + 1, true)?;
                }
            }
            Some(b'[') => {
                if depth >= SCAN_MAX_DEPTH {
                    return Err(Unsure);
                }
                self.i += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.value(node, depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => {
                            self.i += 1;
                            self.ws();
                        }
                        Some(b']') => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(Unsure),
                    }
                }
            }
            Some(c) if SCALAR[c as usize] => {
                let start = self.i;
                self.skip_scalar();
                // On a path of the table even where no field ends, as the
                // validating reader parses it there.
                let v = match &self.b[start..self.i] {
                    b"true" => Scalar::Bool(true),
                    b"false" => Scalar::Bool(false),
                    b"null" => Scalar::Null,
                    s => number(s)?,
                };
                if let Some(slot) = slot {
                    self.out.push((slot, v));
                }
            }
            _ => return Err(Unsure),
        }
        Ok(())
    }

    #[inline(always)]
    fn skip_scalar(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if !SCALAR[c as usize] {
                break;
            }
            self.i += 1;
        }
    }

    /// Skip a value no field is read from, inside `depth` open containers.
    #[inline]
    fn skip_value(&mut self, depth: usize) -> Result<(), Unsure> {
        match self.peek() {
            Some(b'"') => {
                self.i += 1;
                self.string().map(|_| ())
            }
            Some(b'{') => {
                self.i += 1;
                self.skip_open(depth + 1, true)
            }
            Some(b'[') => {
                self.i += 1;
                self.skip_open(depth + 1, false)
            }
            Some(c) if SCALAR[c as usize] => {
                self.skip_scalar();
                Ok(())
            }
            _ => Err(Unsure),
        }
    }

    /// Skip the rest of a container whose opening bracket was just consumed
    /// (`object`: `{`, else `[`), `depth` containers deep (this one
    /// included): its strings, and its brackets, balanced and matching.
    fn skip_open(&mut self, depth: usize, object: bool) -> Result<(), Unsure> {
        if depth > SCAN_MAX_DEPTH {
            return Err(Unsure);
        }
        // Bit k: the container at relative level k is an object.
        let mut kinds: u128 = object as u128;
        let mut level = 0usize;
        loop {
            let c = *self.b.get(self.i).ok_or(Unsure)?;
            self.i += 1;
            match CLASS[c as usize] {
                OTHER => {}
                QUOTE => {
                    self.string()?;
                }
                OPEN => {
                    level += 1;
                    if depth + level > SCAN_MAX_DEPTH {
                        return Err(Unsure);
                    }
                    if c == b'{' {
                        kinds |= 1 << level;
                    } else {
                        kinds &= !(1 << level);
                    }
                }
                _ => {
                    if (kinds >> level & 1 == 1) != (c == b'}') {
                        return Err(Unsure);
                    }
                    if level == 0 {
                        return Ok(());
                    }
                    level -= 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Random mutations of the samples: never a disagreement.
    #[test]
    fn scan_never_contradicts_extract_on_mutations() {
        let t = all_table();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut rnd = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
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
