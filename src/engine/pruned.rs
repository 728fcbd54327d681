//! A record's tree holding only the fields some rules read.
//!
//! The generic engine reads an event as a `serde_json` tree. A Defend
//! record holds a hundred or so values, and a rule (with the fields its
//! alert carries) reads a few dozen: building the rest (a `String` and a
//! map entry each) is most of the cost of reading it. [`read_pruned`]
//! builds the tree with only the members on the given paths, and crosses
//! the others without building them. (In a rule pack, most JSON records
//! need no tree at all: the generic engine reads the pack's plain scan,
//! [`crate::eql::eval::Source::Read`].)
//!
//! A MessagePack body is read the same way by the generic engine's own
//! decoder, told to build nothing of the members on no path (their strings
//! and keys are still checked as UTF-8, their lengths and nesting as in a
//! full read).
//!
//! **The same verdict as a full read.** A JSON record is refused exactly when
//! `serde_json::from_slice::<Value>` refuses it, with the same error: the
//! members not kept are still deserialized through `deserialize_any` (so
//! their strings and keys are checked as UTF-8, their escapes and
//! surrogates decoded, their numbers parsed, and their nesting counted
//! against the same recursion limit), into a visitor that keeps nothing.
//!
//! **The same values on every path.** A path is kept the way
//! [`crate::eql::eval::collect`] reads it: `a.b.c` may be nested objects or
//! dotted keys at any level (`{"a.b": {"c": …}}`), so a member is kept when
//! its key, split at its dots, walks the trie of paths from where it is;
//! an array is kept with its elements read at the same place. What a path
//! holds in the pruned tree is then what it holds in the full one.
//!
//! **Why hand-written.** `serde_json` has no partial tree; its
//! `IgnoredAny` checks less than a full read (no UTF-8 check of strings, no
//! number range), so skipping with it would accept records a full read
//! refuses.

use crate::format::event::ExtractError;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// The dotted paths to keep, as a trie by segment.
#[derive(Debug, Clone, Default)]
pub struct TreePaths {
    nodes: Vec<Node>,
    /// The paths, each once, in the order given.
    paths: Vec<String>,
}

#[derive(Debug, Clone, Default)]
struct Node {
    children: Vec<(String, u32)>,
}

impl TreePaths {
    /// The trie of these dotted paths.
    pub fn new<'p>(paths: impl IntoIterator<Item = &'p str>) -> TreePaths {
        let mut t = TreePaths { nodes: vec![Node::default()], paths: Vec::new() };
        for p in paths {
            if t.paths.iter().any(|q| q == p) {
                continue;
            }
            t.paths.push(p.to_string());
            let mut at = 0u32;
            for seg in p.split('.') {
                at = match t.child(at, seg) {
                    Some(c) => c,
                    None => {
                        t.nodes.push(Node::default());
                        let c = (t.nodes.len() - 1) as u32;
                        t.nodes[at as usize].children.push((seg.to_string(), c));
                        c
                    }
                };
            }
        }
        t
    }

    /// The paths, each once, in the order given.
    pub fn paths(&self) -> &[String] {
        &self.paths
    }

    fn child(&self, node: u32, seg: &str) -> Option<u32> {
        self.nodes[node as usize].children.iter().find(|(s, _)| s == seg).map(|&(_, c)| c)
    }

    /// Where a member named `key` leads from `node` (its dotted segments
    /// walked one by one), if anywhere.
    pub(crate) fn walk(&self, node: u32, key: &str) -> Option<u32> {
        key.split('.').try_fold(node, |at, seg| self.child(at, seg))
    }
}

/// Whether a JSON record holds serde_json's raw-value key, which its tree
/// reads as an embedded raw value, not as a member (the searcher is made
/// once: a record is searched whole, and setting one up costs as much as
/// a short search).
pub(crate) fn names_raw_value(record: &[u8]) -> bool {
    static RAW_VALUE: once_cell::sync::Lazy<memchr::memmem::Finder<'static>> =
        once_cell::sync::Lazy::new(|| memchr::memmem::Finder::new(b"$serde_json::private::RawValue"));
    RAW_VALUE.find(record).is_some()
}

/// A record's tree (`msgpack`: a MessagePack map body, else JSON) with only
/// the members on `paths` (see the module docs); errors as
/// [`crate::engine::generic::read`] gives them.
pub fn read_pruned(record: &[u8], msgpack: bool, paths: &TreePaths) -> Result<Value, ExtractError> {
    if msgpack {
        use crate::engine::generic::{mp_value, Build};
        let mut pos = 0;
        let v = mp_value(record, &mut pos, 0, Build::Under(paths, 0))?;
        if pos != record.len() {
            return Err(ExtractError::InvalidMsgpack);
        }
        return if v.is_object() { Ok(v) } else { Err(ExtractError::NotAnObject) };
    }
    // serde_json's tree reads a member of this name as an embedded raw
    // value: leave such a record to it.
    if names_raw_value(record) {
        return crate::engine::generic::read(record, false);
    }
    let mut de = serde_json::Deserializer::from_slice(record);
    let v = Keep { paths, node: 0 }.deserialize(&mut de).and_then(|v| de.end().map(|_| v));
    match v {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => Err(ExtractError::NotAnObject),
        Err(e) if e.to_string().contains("recursion limit") => Err(ExtractError::TooDeep),
        Err(_) => Err(ExtractError::InvalidJson),
    }
}

/// A value at trie node `node`: scalars and arrays whole (array elements
/// at the same node), objects with only the members that lead somewhere.
#[derive(Clone, Copy)]
struct Keep<'p> {
    paths: &'p TreePaths,
    node: u32,
}

impl<'de> DeserializeSeed<'de> for Keep<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Keep<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // As serde_json's own tree: a non-finite float is null.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(self)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(Key)? {
            match self.paths.walk(self.node, &key) {
                Some(node) => {
                    let v = map.next_value_seed(Keep { paths: self.paths, node })?;
                    out.insert(key.into_owned(), v);
                }
                None => map.next_value_seed(Skip)?,
            }
        }
        Ok(Value::Object(out))
    }
}

/// A member name, borrowed from the record when it holds no escape.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = std::borrow::Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = std::borrow::Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.to_string().into())
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }
}

/// A value read through and dropped: checked as a full read checks it.
#[derive(Clone, Copy)]
struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Key)?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(text: &str) -> Result<Value, ExtractError> {
        crate::engine::generic::read(text.as_bytes(), false)
    }

    fn values(v: &Value, path: &str) -> Vec<Value> {
        let mut out = Vec::new();
        crate::eql::eval::collect(v, path, &mut out);
        out.into_iter().cloned().collect()
    }

    /// Every path reads the same values from the pruned tree as from the
    /// full one, nested or dotted, in arrays or not.
    #[test]
    fn the_kept_paths_read_as_in_the_full_tree() {
        let paths = ["a.b.c", "a.x", "d", "arr.k", "e.f"];
        let t = TreePaths::new(paths);
        let rec = r#"{"a":{"b":{"c":1,"z":2},"b.c":"dotted","x":[1,{"y":2},[3]],"q":"dropped"},"a.b":{"c":true},
            "d":{"deep":[1,2]},"arr":[{"k":"one","n":1},{"k":["two","three"]},"s"],"e.f":"flat","e":{"f":null,"g":"h"},
            "skip":{"big":[1,2,3,{"x":"y"}],"s":"\u00e9\ud83d\ude00"}}"#;
        let (p, f) = (read_pruned(rec.as_bytes(), false, &t).unwrap(), full(rec).unwrap());
        for path in paths.iter().chain(&["a.missing"]) {
            assert_eq!(values(&p, path), values(&f, path), "{path}");
        }
        assert!(!values(&f, "a.b.c").is_empty() && !values(&f, "arr.k").is_empty(), "the test reads something");
        assert_eq!(p.get("skip"), None, "members on no path are dropped");
        assert_eq!(p["a"].get("q"), None);
    }

    /// A record is refused exactly when the full read refuses it, with the
    /// same error, whether the fault is in a kept member or a dropped one.
    #[test]
    fn the_same_records_are_refused() {
        let t = TreePaths::new(["a.b"]);
        let deep = format!("{{\"skip\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        let cases: Vec<Vec<u8>> = vec![
            br#"{"a":{"b":1},"skip":"\ud800"}"#.to_vec(),
            br#"{"a":{"b":1},"skip":1e999}"#.to_vec(),
            br#"{"a":{"b":1},"skip":[1,2,}"#.to_vec(),
            b"{\"a\":{\"b\":1},\"skip\":\"\xff\"}".to_vec(),
            b"{\"a\":{\"b\":1},\"sk\xffip\":1}".to_vec(),
            br#"{"a":{"b":"\ud83d\ude00"},"skip":"\u00e9"}"#.to_vec(),
            br#"{"a":{"b":1}} x"#.to_vec(),
            br#"[{"a":1}]"#.to_vec(),
            br#"{"a":{"b":1},"skip":tru}"#.to_vec(),
            br#"{"a":{"b":1},"skip":"ctl	x"}"#.to_vec(),
            br#"{"a":{"b":1},"skip":-0.5e-3,"n":18446744073709551616}"#.to_vec(),
            deep.into_bytes(),
        ];
        for c in &cases {
            let f = crate::engine::generic::read(c, false).map(|_| ());
            let p = read_pruned(c, false, &t).map(|_| ());
            assert_eq!(p, f, "{}", String::from_utf8_lossy(c));
        }
        let refused = cases.iter().filter(|c| crate::engine::generic::read(c, false).is_err()).count();
        assert!(refused >= 8, "most cases are refused ({refused})");
    }
}
