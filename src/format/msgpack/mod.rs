//! MessagePack records: Fluent Bit chunks, read and annotated in place.
//!
//! # Formats
//!
//! A Fluent Bit chunk is MessagePack values concatenated, one per record,
//! with no outer array. Each record is a 2-element array in one of two forms:
//!
//! * **v2** (Fluent Bit ≥ 2.1): `[[time, {metadata}], {body}]`;
//! * **legacy** (forward protocol): `[time, {body}]`.
//!
//! `time` is an *EventTime* (ext type 0 with 8 data bytes: big-endian u32
//! seconds then big-endian u32 nanoseconds), an integer (seconds) or a float
//! (seconds with a fraction). Records whose time, read as Fluent Bit reads
//! it — the whole seconds truncated to a signed 32-bit value — is `-1` or
//! `-2` are **group start / end markers**: ext seconds `0xFFFFFFFF` /
//! `0xFFFFFFFE`, integers `-1` / `-2` (or `4294967295` / `4294967294`, the
//! same 32-bit pattern), floats whose whole part is one of those (e.g.
//! `-1.0`, `-2.5`). Markers are passed through
//! untouched and never shown to the detector. Any other time value (even a
//! negative one, which Fluent Bit itself refuses) makes a normal record: the
//! time is not used by the detector, which reads `@timestamp` from the body.
//!
//! # Reading a body ([`extract`])
//!
//! The body is one MessagePack map, read with a byte cursor. Members on a
//! path of the rule's [`FieldTable`] are descended into, with exactly the
//! semantics of the JSON reader ([`FieldTable::extract`]): nested maps and
//! dotted keys both resolve, arrays are flattened (an array of maps
//! contributes each element's fields), a map where a field ends pushes
//! [`Scalar::Object`] and is still descended, nil pushes [`Scalar::Null`],
//! strings borrow from the body. Every other member is skipped in place
//! (iteratively, without allocation or recursion), checking only that it is
//! well formed (markers valid, lengths within the body).
//!
//! Choices where MessagePack has more than JSON:
//! * keys of the maps that are *read* (the body and maps on a field path)
//!   must be strings (str8/16/32, fixstr) holding valid UTF-8, else the record
//!   is [`ExtractError::InvalidMsgpack`]; keys inside skipped values are not
//!   inspected;
//! * integers map to [`Scalar::Int`], or [`Scalar::UInt`] beyond `i64::MAX`;
//!   float32 and float64 to [`Scalar::Float`];
//! * strings read into a field must be valid UTF-8 (else `InvalidMsgpack`);
//! * **bin and ext values** (other than the chunk's EventTime) are kept as
//!   [`Scalar::Object`] when they sit where a field ends: the field is
//!   present (not `null`), but matches no value test and is no join key —
//!   there is no text to compare. This includes an EventTime ext inside a
//!   body (e.g. an `@timestamp` written as ext): it is not a usable time;
//! * nesting along a field path is bounded by [`MAX_DEPTH`] containers
//!   (the body map counts as one): deeper gives [`ExtractError::TooDeep`].
//!   Skipped values may nest arbitrarily deep (skipping uses no stack); the
//!   JSON reader, which refuses any document nested beyond 128, is stricter;
//! * a body that is not a map is [`ExtractError::NotAnObject`]; truncation,
//!   the reserved marker `0xc1`, or bytes after the map are `InvalidMsgpack`.
//!
//! # Writing an alert ([`merge`])
//!
//! The policy is [`crate::format::merge::merge`]'s, point for point: the body's
//! members keep their order and their bytes; a member named like an alert
//! root gets the root deep-merged into it when both are maps (the alert's
//! leaves win, other keys stay, in order and byte for byte) and is replaced
//! otherwise; a dotted member naming a path the alert writes (or a path below
//! one of its leaves) is removed; the remaining roots are appended. Inside a
//! merged map, a key met more than once that the alert also writes is written
//! once, at its first position, merged from its last value (as parsing the
//! JSON into a `Value` does). The map header is rewritten with the new member
//! count, in its smallest encoding. Alert values are encoded as: strings →
//! str, integers → the smallest int encoding (unsigned formats for
//! non-negative values), other numbers → float64, bools, null → nil, arrays,
//! maps.
//!
//! # Walking a chunk ([`crate::engine::chunk::filter_chunk`])
//!
//! The chunk is validated in one pass first (record shapes, time types,
//! structure of every value) and evaluated in a second. A chunk malformed
//! anywhere — truncated, a record that is not a 2-array, a v2 header that is
//! not `[time, map]`, a time that is not int / float / ext type 0 of 8 bytes,
//! bad MessagePack — is refused as a whole with [`ChunkError::Malformed`]:
//! once one record cannot be parsed, the next record boundary cannot be found
//! reliably, and since the chunk then goes on unchanged, no record of it is
//! shown to the detector at all (its state and stats stay as they were). A
//! body that is well-formed MessagePack but not a map, or that the detector
//! cannot read (bad UTF-8, too deep, too large …), is a *record* error: it is
//! counted by the detector and in [`crate::engine::chunk::ChunkOutcome::errors`] and the record goes
//! on unchanged while the walk continues.
//!
//! A detector running a rule pack reads each body during the validating
//! pass (`read_chunk_with`, `extract_prefix`): a body its read gets
//! through is well formed to its end, so that one walk both checks and reads
//! it; a body the read stops in (bad UTF-8 in a field read, too deep, not a
//! map) is skipped and checked by the walk as any other, and read again when
//! it is evaluated. The reads are used only once the whole chunk is found
//! well formed (for at most 256 bodies a chunk: the rest are read when
//! evaluated), so nothing of a malformed chunk reaches the pack.
//!
//! When no record is annotated, `out` is not touched and nothing is copied.
//! Otherwise `out` is cleared and receives the new chunk: every byte of the
//! input, except the bodies of the annotated records (whose outer array,
//! time and metadata stay the original bytes).
//!
//! **Why hand-written.** `rmp` (a dependency, used by the tests to build
//! chunks) reads one marker or scalar at a time and has no way to skip a value;
//! `rmp-serde` and `rmpv` decode into owned values, building the whole body
//! and allocating for its maps and strings. The cursor here reads only the
//! rule's paths, borrows strings from the chunk, skips everything else in
//! place from a 256-entry table (iteratively, so hostile nesting cannot
//! overflow the stack), and lets the merge copy every other byte of a body as
//! it came, which a decode and re-encode would not.

use crate::format::merge::{MergeError, Skips};
use crate::format::event::{ExtractError, FieldTable, Fields, Scalar};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::ops::Range;

/// Most containers (maps and arrays, the body map included) nested along a
/// field path that [`extract`] descends before giving up with
/// [`ExtractError::TooDeep`].
pub const MAX_DEPTH: usize = 128;

mod chunk;
mod cursor;
mod extract;
mod merge;

pub(crate) use chunk::{read_chunk, read_chunk_with};
pub use chunk::ChunkError;
pub use extract::extract;
pub(crate) use extract::extract_prefix;
pub(crate) use extract::tree_readable;
pub use merge::merge;

/// A JSON value as MessagePack (for tests elsewhere).
#[cfg(test)]
pub(crate) fn encode_json(v: &serde_json::Value) -> Vec<u8> {
    let mut out = Vec::new();
    merge::write_json(&mut out, v).expect("a JSON value encodes");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use super::chunk::*;
    use super::cursor::*;
    use super::merge::*;
    use serde_json::json;

    // A tiny encoder of JSON values (the module's own writer) for building
    // bodies; raw bytes are spelled out where the encoding matters.
    fn enc(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        write_json(&mut out, v).unwrap();
        out
    }

    /// Decode one MessagePack value to JSON (bin/ext as null).
    fn dec(buf: &[u8]) -> Value {
        fn one(cur: &mut Cursor) -> Value {
            match cur.tok().unwrap() {
                Tok::Nil | Tok::Bin(_) | Tok::Ext(..) => Value::Null,
                Tok::Bool(b) => Value::Bool(b),
                Tok::Int(i) => Value::from(i),
                Tok::UInt(u) => Value::from(u),
                Tok::Float(f) => Value::from(f),
                Tok::Str(s) => Value::String(std::str::from_utf8(s).unwrap().to_string()),
                Tok::Array(n) => Value::Array((0..n).map(|_| one(cur)).collect()),
                Tok::Map(n) => {
                    let mut m = Map::new();
                    for _ in 0..n {
                        let k = match one(cur) {
                            Value::String(s) => s,
                            other => other.to_string(),
                        };
                        let v = one(cur);
                        m.insert(k, v);
                    }
                    Value::Object(m)
                }
            }
        }
        let mut cur = Cursor::new(buf);
        let v = one(&mut cur);
        assert!(cur.at_end(), "trailing bytes");
        v
    }

    fn table(paths: &[&str]) -> FieldTable {
        let mut t = FieldTable::new();
        for p in paths {
            t.intern(p);
        }
        t
    }

    fn strings(f: &Fields, slot: u16) -> Vec<String> {
        f.get(slot).filter_map(|v| v.keyword().map(|s| s.into_owned())).collect()
    }

    /// The JSON reader and this one agree on `v`.
    fn same_as_json(t: &FieldTable, v: &Value) {
        let j = v.to_string();
        let m = enc(v);
        let mut fj = Fields::new();
        let mut fm = Fields::new();
        t.extract(j.as_bytes(), &mut fj).unwrap();
        extract(t, &m, &mut fm).unwrap();
        let a: Vec<_> = fj.iter().cloned().collect();
        let b: Vec<_> = fm.iter().cloned().collect();
        assert_eq!(a, b, "{j}");
    }

    #[test]
    fn extract_matches_json_reader() {
        let t = table(&["process.parent.name", "host.id", "process.args", "a.b", "a", "n"]);
        for v in [
            json!({"process":{"parent":{"name":"apt"}},"host":{"id":"h"}}),
            json!({"process.parent.name":"apt","host.id":"h"}),
            json!({"process":{"parent.name":"apt"},"host":{"id":"h"}}),
            json!({"process.parent":{"name":"apt"},"x":[1,{"a":2}],"host.id":"h"}),
            json!({"process":{"args":["sh",["-c"],"x"]},"a":[{"b":1},{"b":"two"}],"a.b":null}),
            json!({"process.args":"-c","process":{"args":["sh"]}}),
            json!({"a":{"b":{"c":1}},"n":[1,-1,1.5,true,null,"s",18446744073709551615u64,-9223372036854775808i64]}),
            json!({}),
            json!({"a":[]}),
            json!({"host":{"id":{"x":1}}}),
        ] {
            same_as_json(&t, &v);
        }
    }

    #[test]
    fn extract_scalars_and_borrowing() {
        let t = table(&["s", "i", "u", "f", "f32", "b", "n"]);
        // {"s":"x","i":-5,"u":u64::MAX,"f":1.5,"f32":2.5f32,"b":true,"n":nil}
        let mut m = vec![0x87];
        m.extend_from_slice(b"\xa1s\xa1x");
        m.extend_from_slice(b"\xa1i\xfb");
        m.extend_from_slice(b"\xa1u\xcf\xff\xff\xff\xff\xff\xff\xff\xff");
        m.extend_from_slice(b"\xa1f\xcb");
        m.extend_from_slice(&1.5f64.to_be_bytes());
        m.extend_from_slice(b"\xa3f32\xca");
        m.extend_from_slice(&2.5f32.to_be_bytes());
        m.extend_from_slice(b"\xa1b\xc3\xa1n\xc0");
        let mut f = Fields::new();
        extract(&t, &m, &mut f).unwrap();
        let got: Vec<_> = f.iter().cloned().collect();
        assert_eq!(
            got,
            vec![
                (0, Scalar::Str(Cow::Borrowed("x"))),
                (1, Scalar::Int(-5)),
                (2, Scalar::UInt(u64::MAX)),
                (3, Scalar::Float(1.5)),
                (4, Scalar::Float(2.5)),
                (5, Scalar::Bool(true)),
                (6, Scalar::Null),
            ]
        );
        assert!(matches!(f.get(0).next(), Some(Scalar::Str(Cow::Borrowed(_)))));
    }

    #[test]
    fn extract_str_encodings_and_bin_ext() {
        let t = table(&["k", "bin", "ext", "x.y"]);
        // str8 key, str16 value; bin and ext on slots; ext under a path.
        let mut m = vec![0x84, 0xd9, 1, b'k', 0xda, 0, 3];
        m.extend_from_slice(b"abc");
        m.extend_from_slice(b"\xa3bin\xc4\x02\xff\xfe");
        m.extend_from_slice(b"\xa3ext\xd7\x00\x00\x00\x00\x01\x00\x00\x00\x00");
        m.extend_from_slice(b"\xa1x\x81\xa1y\xd4\x05\x01");
        let mut f = Fields::new();
        extract(&t, &m, &mut f).unwrap();
        assert_eq!(strings(&f, 0), vec!["abc"]);
        assert_eq!(f.get(1).cloned().collect::<Vec<_>>(), vec![Scalar::Object]);
        assert_eq!(f.get(2).cloned().collect::<Vec<_>>(), vec![Scalar::Object]);
        assert_eq!(f.get(3).cloned().collect::<Vec<_>>(), vec![Scalar::Object]);
        assert!(!f.is_null(1));
    }

    #[test]
    fn extract_errors() {
        let t = table(&["a", "b.c"]);
        let mut f = Fields::new();
        assert_eq!(extract(&t, b"", &mut f), Err(ExtractError::InvalidMsgpack));
        assert_eq!(extract(&t, b"\x91\x01", &mut f), Err(ExtractError::NotAnObject));
        assert_eq!(extract(&t, b"\xa1s", &mut f), Err(ExtractError::NotAnObject));
        assert_eq!(extract(&t, b"\x81\xa1a", &mut f), Err(ExtractError::InvalidMsgpack));
        assert_eq!(extract(&t, b"\x80\x80", &mut f), Err(ExtractError::InvalidMsgpack));
        // binary key, integer key
        assert_eq!(extract(&t, b"\x81\xc4\x01a\x01", &mut f), Err(ExtractError::InvalidMsgpack));
        assert_eq!(extract(&t, b"\x81\x01\x01", &mut f), Err(ExtractError::InvalidMsgpack));
        // invalid UTF-8 in a read key or value
        assert_eq!(extract(&t, b"\x81\xa1\xff\x01", &mut f), Err(ExtractError::InvalidMsgpack));
        assert_eq!(extract(&t, b"\x81\xa1a\xa1\xff", &mut f), Err(ExtractError::InvalidMsgpack));
        // reserved marker, even in a skipped value
        assert_eq!(extract(&t, b"\x81\xa1z\xc1", &mut f), Err(ExtractError::InvalidMsgpack));
        // hostile counts
        assert_eq!(extract(&t, b"\xdf\xff\xff\xff\xff", &mut f), Err(ExtractError::InvalidMsgpack));
        assert_eq!(extract(&t, b"\x81\xa1z\xdd\xff\xff\xff\xff", &mut f), Err(ExtractError::InvalidMsgpack));
        assert_eq!(extract(&t, b"\x81\xa1z\xdb\xff\xff\xff\xff", &mut f), Err(ExtractError::InvalidMsgpack));
        // skipped values are not inspected beyond structure
        assert_eq!(extract(&t, b"\x81\xa1z\x81\x01\xa1\xff", &mut f), Ok(()));
        // deep along a field path
        let mut deep = b"\x81\xa1a".to_vec();
        deep.extend(std::iter::repeat_n(0x91, 200));
        deep.push(0x01);
        assert_eq!(extract(&t, &deep, &mut f), Err(ExtractError::TooDeep));
        // ... and exactly at the limit
        let mut ok = b"\x81\xa1a".to_vec();
        ok.extend(std::iter::repeat_n(0x91, MAX_DEPTH - 1));
        ok.push(0x01);
        assert_eq!(extract(&t, &ok, &mut f), Ok(()));
        assert_eq!(strings(&f, 0), vec!["1"]);
        // deep in a skipped member: fine, and no stack used
        let mut skipped = b"\x81\xa1z".to_vec();
        skipped.extend(std::iter::repeat_n(0x91, 1_000_000));
        skipped.push(0x01);
        assert_eq!(extract(&t, &skipped, &mut f), Ok(()));
        // deep maps along a path
        let mut maps = b"\x81\xa1b".to_vec();
        for _ in 0..200 {
            maps.extend_from_slice(b"\x81\xa1b");
        }
        maps.push(0x01);
        assert_eq!(extract(&t, &maps, &mut f), Ok(()));
        let t2 = table(&["b.b.b"]);
        let mut arrays = b"\x81\xa1b\x81\xa1b".to_vec();
        arrays.extend(std::iter::repeat_n(0x91, 500));
        arrays.push(0x01);
        assert_eq!(extract(&t2, &arrays, &mut f), Err(ExtractError::TooDeep));
    }

    fn roots() -> Map<String, Value> {
        match json!({"rule": {"name": "R", "id": "1"}, "threat": {"framework": "F"}}) {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    /// msgpack merge and JSON merge agree on `v`.
    fn merged_both(v: &Value) -> Value {
        let mut jo = Vec::new();
        crate::format::merge::merge(v.to_string().as_bytes(), roots(), &mut jo).unwrap();
        let mut mo = Vec::new();
        merge(&enc(v), roots(), &mut mo).unwrap();
        let a: Value = serde_json::from_slice(&jo).unwrap();
        let b = dec(&mo);
        assert_eq!(a, b, "{v}");
        // key order too
        assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
        b
    }

    #[test]
    fn merge_policy_mirrors_json() {
        let v = merged_both(&json!({"a":1.5,"b":[1,2]}));
        assert_eq!(v["rule"]["name"], "R");
        let v = merged_both(&json!({"rule":{"name":"old","keep":true},"x":1}));
        assert_eq!(v["rule"]["keep"], true);
        assert_eq!(v["rule"]["name"], "R");
        let v = merged_both(&json!({"rule":{"keep":1},"rule.name":"old"}));
        assert!(v.get("rule.name").is_none());
        let v = merged_both(&json!({"rule":"a string"}));
        assert_eq!(v["rule"]["id"], "1");
        let v = merged_both(&json!({"rule.name":"old","rule.other":2,"threat.framework.x":3}));
        assert!(v.get("rule.name").is_none());
        assert_eq!(v["rule.other"], 2);
        assert!(v.get("threat.framework.x").is_none());
        merged_both(&json!({"threat":{"framework":{"deep":1},"other":[1,{"x":null}]},"z":-70000}));
        merged_both(&json!({}));
    }

    #[test]
    fn merge_keeps_bytes_and_rewrites_head() {
        // 15 members in a fixmap; + 2 roots = 17 → map16 head.
        let mut body = vec![0x8f];
        for i in 0..15u8 {
            body.extend_from_slice(&[0xd9, 1, b'a' + i]); // str8 key: kept as written
            body.extend_from_slice(&[0xcd, 0, i]); // wide int: kept as written
        }
        let mut out = Vec::new();
        merge(&body, roots(), &mut out).unwrap();
        assert_eq!(&out[..3], &[0xde, 0, 17]);
        assert_eq!(&out[3..body.len() + 2], &body[1..]);
        let v = dec(&out);
        assert_eq!(v["rule"]["name"], "R");
        assert_eq!(v["threat"]["framework"], "F");
        // a merged member keeps its key bytes and its untouched nested bytes
        let mut body = vec![0x82, 0xd9, 4];
        body.extend_from_slice(b"rule");
        body.extend_from_slice(b"\x82\xa4keep\xc4\x01\x07\xa4name\xa3old");
        body.extend_from_slice(b"\xa1x\xd7\x00\x00\x00\x00\x01\x00\x00\x00\x00");
        merge(&body, roots(), &mut out).unwrap();
        let mut want = vec![0x83, 0xd9, 4];
        want.extend_from_slice(b"rule");
        want.extend_from_slice(b"\x83\xa4keep\xc4\x01\x07\xa4name\xa1R\xa2id\xa11");
        want.extend_from_slice(b"\xa1x\xd7\x00\x00\x00\x00\x01\x00\x00\x00\x00");
        want.extend_from_slice(b"\xa6threat\x81\xa9framework\xa1F");
        assert_eq!(out, want);
    }

    #[test]
    fn merge_duplicate_nested_keys() {
        // {"rule":{"name":"a","name":"b","k":1}} → name written once.
        let body = b"\x81\xa4rule\x83\xa4name\xa1a\xa4name\x81\xa1z\x01\xa1k\x01";
        let mut out = Vec::new();
        let mut r = Map::new();
        r.insert("rule".into(), json!({"name": {"y": 2}}));
        merge(body, r, &mut out).unwrap();
        assert_eq!(dec(&out), json!({"rule":{"name":{"z":1,"y":2},"k":1}}));
        assert_eq!(&out[..7], b"\x81\xa4rule\x82");
    }

    #[test]
    fn merge_errors() {
        let mut out = Vec::new();
        assert!(merge(b"\x91\x01", roots(), &mut out).is_err());
        assert!(merge(b"\x81\xa1a", roots(), &mut out).is_err());
        assert!(merge(b"\x80\x01", roots(), &mut out).is_err());
        assert!(merge(b"\x81\x01\x01", roots(), &mut out).is_err());
        assert!(merge(b"", roots(), &mut out).is_err());
    }

    #[test]
    fn json_encoding_is_smallest() {
        let cases: &[(Value, &[u8])] = &[
            (json!(0), b"\x00"),
            (json!(127), b"\x7f"),
            (json!(128), b"\xcc\x80"),
            (json!(256), b"\xcd\x01\x00"),
            (json!(65536), b"\xce\x00\x01\x00\x00"),
            (json!(4294967296u64), b"\xcf\x00\x00\x00\x01\x00\x00\x00\x00"),
            (json!(u64::MAX), b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff"),
            (json!(-1), b"\xff"),
            (json!(-32), b"\xe0"),
            (json!(-33), b"\xd0\xdf"),
            (json!(-129), b"\xd1\xff\x7f"),
            (json!(-32769), b"\xd2\xff\xff\x7f\xff"),
            (json!(i64::MIN), b"\xd3\x80\x00\x00\x00\x00\x00\x00\x00"),
            (json!(1.5), b"\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00"),
            (json!(null), b"\xc0"),
            (json!(true), b"\xc3"),
            (json!(""), b"\xa0"),
            (json!([]), b"\x90"),
            (json!({}), b"\x80"),
        ];
        for (v, want) in cases {
            assert_eq!(&enc(v)[..], *want, "{v}");
        }
        let long = "x".repeat(40);
        assert_eq!(&enc(&json!(long))[..2], &[0xd9, 40]);
        let long = "x".repeat(300);
        assert_eq!(&enc(&json!(long))[..3], &[0xda, 1, 44]);
        let arr = Value::Array(vec![json!(1); 20]);
        assert_eq!(&enc(&arr)[..3], &[0xdc, 0, 20]);
        assert_eq!(dec(&enc(&arr)), arr);
    }

    #[test]
    fn chunk_records_located() {
        let mut c = Vec::new();
        // v2 record, ext time
        c.extend_from_slice(b"\x92\x92\xd7\x00\x00\x00\x00\x01\x00\x00\x00\x00\x81\xa1m\x01\x81\xa1a\x01");
        // legacy, int time
        c.extend_from_slice(b"\x92\xce\x66\x00\x00\x00\x80");
        // legacy, float time
        c.extend_from_slice(b"\x92\xcb\x41\xd9\x00\x00\x00\x00\x00\x00\x80");
        // v2 group start marker (ext), int -2 marker, uint 0xfffffffe marker
        c.extend_from_slice(b"\x92\x92\xd7\x00\xff\xff\xff\xff\x00\x00\x00\x00\x80\x80");
        c.extend_from_slice(b"\x92\x92\xfe\x80\x80");
        c.extend_from_slice(b"\x92\x92\xce\xff\xff\xff\xfe\x80\x80");
        // float -1.0 marker; float +inf and -0.5 are normal records
        c.extend_from_slice(b"\x92\x92\xcb\xbf\xf0\x00\x00\x00\x00\x00\x00\x80\x80");
        c.extend_from_slice(b"\x92\xcb\x7f\xf0\x00\x00\x00\x00\x00\x00\x80");
        c.extend_from_slice(b"\x92\xcb\xbf\xe0\x00\x00\x00\x00\x00\x00\x80");
        let recs = read_chunk(&c).unwrap();
        let got: Vec<_> = recs.iter().map(|r| (r.form, r.marker, &c[r.body.clone()])).collect();
        assert_eq!(
            got,
            vec![
                (Form::V2, false, &b"\x81\xa1a\x01"[..]),
                (Form::Legacy, false, &b"\x80"[..]),
                (Form::Legacy, false, &b"\x80"[..]),
                (Form::V2, true, &b"\x80"[..]),
                (Form::V2, true, &b"\x80"[..]),
                (Form::V2, true, &b"\x80"[..]),
                (Form::V2, true, &b"\x80"[..]),
                (Form::Legacy, false, &b"\x80"[..]),
                (Form::Legacy, false, &b"\x80"[..]),
            ]
        );
        assert_eq!(recs.last().unwrap().whole.end, c.len());
        assert_eq!(recs[1].whole.start, recs[0].whole.end);
    }

    #[test]
    fn chunk_malformed() {
        for bad in [
            &b"\x91\x80"[..],                                        // array of 1
            b"\x93\x01\x80\x80",                                     // array of 3
            b"\x80",                                                 // not an array
            b"\x92\xd7\x01\x00\x00\x00\x01\x00\x00\x00\x00\x80",     // ext type 1
            b"\x92\xd6\x00\x00\x00\x00\x01\x80",                     // ext of 4 bytes
            b"\x92\xa1t\x80",                                        // string time
            b"\x92\xc0\x80",                                         // nil time
            b"\x92\x93\x01\x80\x80\x80",                             // header of 3
            b"\x92\x92\x01\x90\x80",                                 // metadata not a map
            b"\x92\x92\xa1x\x80\x80",                                // header time a string
            b"\x92\x01",                                             // truncated
            b"\x92\x01\x81\xa1a",                                    // truncated body
            b"\x92\x01\x80\xc1",                                     // reserved marker after
        ] {
            assert_eq!(read_chunk(bad), Err(ChunkError::Malformed), "{bad:x?}");
        }
        assert_eq!(read_chunk(b""), Ok(vec![]));
        // body not a map is the detector's business, not the walk's
        assert_eq!(read_chunk(b"\x92\x01\x01").unwrap().len(), 1);
    }

    use crate::{mutate, xorshift};

    /// The length-only skip agrees with reading every value whole, on
    /// mutated and truncated bodies: same end, or both refuse.
    #[test]
    fn skip_agrees_with_reading_values() {
        fn reference(cur: &mut Cursor, n: u64) -> Result<(), Bad> {
            let mut remaining = n;
            while remaining > 0 {
                remaining -= 1;
                match cur.tok()? {
                    Tok::Array(k) => remaining += k as u64,
                    Tok::Map(k) => remaining += 2 * k as u64,
                    _ => {}
                }
            }
            Ok(())
        }
        let mut body = enc(&json!({
            "s": "x".repeat(40), "l": "y".repeat(300), "n": [0, -1, -33, 200, 70000, -70000, 5_000_000_000u64, -5_000_000_000i64, 1.5],
            "m": {"a": [true, false, null, {"b": []}]}, "e": {}
        }));
        // bin 8/16/32, ext fix 1/2/4/8/16 and 8/16/32, float32, map16, array16
        body.extend_from_slice(b"\xc4\x01\x00\xc5\x00\x01\x00\xc6\x00\x00\x00\x01\x00");
        body.extend_from_slice(b"\xd4\x01\x00\xd5\x01\x00\x00\xd6\x01\x00\x00\x00\x00\xd7\x01\x00\x00\x00\x00\x00\x00\x00\x00");
        body.extend_from_slice(b"\xd8\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00");
        body.extend_from_slice(b"\xc7\x01\x01\x00\xc8\x00\x01\x01\x00\xc9\x00\x00\x00\x01\x01\x00\xca\x00\x00\x00\x00");
        body.extend_from_slice(b"\xde\x00\x01\xa1k\xdc\x00\x02\x01\x02\xdd\x00\x00\x00\x01\xc0\xdf\x00\x00\x00\x00\xda\x00\x01z\xdb\x00\x00\x00\x01z");
        let values = 1 + 17; // the map, and the values appended after it
        let mut rnd = xorshift(0x9E37_79B9_7F4A_7C15);
        for round in 0..50_000 {
            let mut b = body.clone();
            if round > 0 {
                mutate(&mut b, &mut rnd);
            }
            for n in [1, values as u64, 3 * values as u64] {
                let (mut a, mut c) = (Cursor::new(&b), Cursor::new(&b));
                let (ra, rc) = (reference(&mut a, n), c.skip_n(n));
                assert_eq!(ra.is_ok(), rc.is_ok(), "{b:x?} {n}");
                if ra.is_ok() {
                    assert_eq!(a.pos, c.pos, "{b:x?}");
                }
                if round == 0 && n == values as u64 {
                    assert_eq!(c.pos, b.len());
                }
            }
        }
    }

    #[test]
    fn fuzzed_bodies_never_panic() {
        let t = table(&["process.parent.name", "process.args", "host.id", "rule.name", "a"]);
        let body = enc(&json!({
            "process": {"parent": {"name": "apt"}, "args": ["sh", "-c", [1, {"x": null}]]},
            "host.id": "h", "rule": {"name": "old", "k": [1.5, -3]}, "rule.name": "x",
            "a": {"b": [true, false, 70000, -70000, u64::MAX]}, "z": "s"
        }));
        let mut rnd = xorshift(0x2545_F491_4F6C_DD1D);
        let mut out = Vec::new();
        for _ in 0..20_000 {
            let mut f = Fields::new();
            let mut b = body.clone();
            mutate(&mut b, &mut rnd);
            let read = extract(&t, &b, &mut f).is_ok();
            let merged = merge(&b, roots(), &mut out).is_ok();
            if read {
                // a body the reader accepts is always annotatable
                assert!(merged, "{b:x?}");
            }
            if merged {
                let mut c = Cursor::new(&out);
                c.skip().unwrap();
                assert!(c.at_end());
            }
        }
    }
}
