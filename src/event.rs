//! Reading the fields a rule needs out of one JSON record.
//!
//! The rule's field paths are compiled once into a [`FieldTable`] (a small
//! trie over path segments). Extraction walks the record with serde_json and
//! descends only into members on a needed path; every other member is skipped
//! without being materialised, so no `serde_json::Value` tree is built for the
//! (vast majority of) records that complete nothing.
//!
//! Nested objects and dotted keys are the same thing here, as in
//! Elasticsearch: `{"process":{"parent":{"name":"apt"}}}`,
//! `{"process.parent.name":"apt"}` and `{"process":{"parent.name":"apt"}}` all
//! give `process.parent.name = "apt"`. Arrays are flattened (an array of
//! objects contributes each element's fields; nested arrays of scalars are
//! flattened), and a path met more than once (a dotted key next to a nested
//! object, or a duplicate key) accumulates all its values, as a multi-valued
//! field does in Elasticsearch.

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
    children: Vec<(Box<str>, u32)>,
    /// The slot of the field ending at this node.
    slot: Option<Slot>,
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
                    self.nodes[node as usize].children.push((seg.into(), id));
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
        self.nodes[node as usize]
            .children
            .iter()
            .find(|(k, _)| k.as_ref() == seg)
            .map(|(_, c)| *c)
    }

    /// Walk a (possibly dotted) key from `node`.
    pub(crate) fn walk(&self, node: u32, key: &str) -> Option<u32> {
        let mut n = node;
        for seg in key.split('.') {
            n = self.child(n, seg)?;
        }
        Some(n)
    }

    /// Extract the values of every slot from one JSON record. The top level
    /// must be an object. Values borrow from `record` where no unescaping was
    /// needed.
    pub fn extract<'a>(&self, record: &'a [u8], out: &mut Fields<'a>) -> Result<(), ExtractError> {
        out.values.clear();
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
    pub fn get(&self, slot: Slot) -> impl Iterator<Item = &Scalar<'a>> + '_ {
        self.values.iter().filter(move |(s, _)| *s == slot).map(|(_, v)| v)
    }

    /// True when `slot` is absent, null, or an empty array (`== null`).
    pub fn is_null(&self, slot: Slot) -> bool {
        !self.get(slot).any(|v| !matches!(v, Scalar::Null))
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

fn visit_object<'de, A: MapAccess<'de>>(
    table: &FieldTable,
    node: u32,
    out: &mut Fields<'de>,
    mut map: A,
) -> Result<(), A::Error> {
    while let Some(key) = map.next_key::<Cow<'de, str>>()? {
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

    fn strings<'a>(f: &'a Fields, slot: Slot) -> Vec<String> {
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
    fn escaped_strings_are_unescaped() {
        let t = table(&["a"]);
        let mut f = Fields::new();
        t.extract(br#"{"\u0061":"x\ty"}"#, &mut f).unwrap();
        assert_eq!(strings(&f, 0), vec!["x\ty"]);
    }
}
