//! Splitting a pack over threads by `host.id`: which rules may be split,
//! and where each record goes.
//!
//! A rule is *host-local* when two records it can join always hold the
//! same `host.id`: a single-event query (it joins nothing), or a sequence
//! whose join keys hold `host.id` at the same place in every stage (`sequence
//! by host.id, …`, or each stage's `by` naming it at one position) and that
//! has no missing-event stage (whose results are released by the passing of
//! event time over every host); a sample joined on `host.id` alike. The host-local rules
//! of a pack can run in N packs, each taking the records of the hosts whose
//! `host.id` hashes to it ([`HostRouter`]); the other rules run in one pack
//! that takes every record. On a stream in time order this gives the alerts
//! of one pack (`tests/cli.rs`); the caveats are those of splitting one
//! rule ([`crate::engine::footprint::Partitioner`], docs/fleet.md): event
//! time and the caps are per pack, and a record whose `host.id` holds
//! several values (an array, or a repeated name) goes to the pack of its
//! smallest one only (counted), so a rule may miss what it joins under the
//! others. With `field_types` that map `host.id` otherwise than ECS (an
//! alias, a `null_value`), nothing is split ([`host_key_as_ecs`]).
//!
//! [`HostRouter`] reads `host.id` without a full read of the record where it
//! can: most records hold no backslash and one `"host"` string, the name of
//! an object whose `id` member is found by a walk of that object alone.
//! Any other record is read with the field table of `host.id` (the pack's
//! own reader). Wherever a record has a top-level `host.id`, both ways give
//! that value (tested on mutated records); where it has none, the walk may
//! read a nested `host` object's, which does not matter: a record without
//! `host.id` joins nothing in a host-local rule. This walk is hand-written:
//! it reads one member of one object, where a JSON library would read the
//! whole record.

use crate::config::rule::Rule;
use crate::eql::{parse, ParseLimits, Query, Stage, TypeMap};
use crate::format::event::{bytes_equal, smallest_keyword, FieldTable, FieldsBuf, Slot, LO};
use std::borrow::Cow;
use std::hash::{BuildHasher, Hasher};

/// The field a pack is split on.
pub const HOST_KEY: &str = "host.id";

/// Whether `host.id` is read as ECS maps it (a keyword, not an alias, no
/// `null_value`): otherwise the engines may join on a value the router does
/// not see (an alias's target, a null indexed as a string), and no rule is
/// split.
pub fn host_key_as_ecs(types: &TypeMap) -> bool {
    types.resolve_alias(HOST_KEY) == HOST_KEY && types.get(HOST_KEY) == TypeMap::ecs().get(HOST_KEY)
}

/// Whether `rule` may run split by `host.id` (see the module docs), or why
/// not; `host.id` read as ECS maps it ([`host_key_as_ecs`]).
pub fn host_local(rule: &Rule) -> Result<(), &'static str> {
    let parsed;
    let query = match rule.generic_query() {
        Some(q) => q,
        None => {
            parsed = parse(rule.query_text(), ParseLimits::default()).map_err(|_| "its query does not parse")?;
            &parsed
        }
    };
    match query {
        Query::Event(_) => Ok(()),
        Query::Sample(s) => joins_on_host(&s.by, &s.stages.iter().collect::<Vec<_>>()).then_some(()).ok_or("its sample does not join on host.id"),
        Query::Sequence(s) => {
            let stages: Vec<&Stage> = s.stages.iter().chain(s.until.as_ref()).collect();
            if stages.iter().any(|st| st.missing) {
                return Err("a missing-event stage is released by event time over every host");
            }
            joins_on_host(&s.by, &stages).then_some(()).ok_or("its sequence does not join on host.id")
        }
    }
}

/// Whether every stage's join key holds `host.id` at one place: among the
/// shared `by` fields, or at one position of every stage's own (not
/// `?host.id`: a record without one joins others without one).
fn joins_on_host(shared: &[crate::eql::Field], stages: &[&Stage]) -> bool {
    let host = |f: &crate::eql::Field| f.name == HOST_KEY && !f.optional;
    if shared.iter().any(host) {
        return true;
    }
    let at = |st: &Stage, k: usize| st.by.get(k).is_some_and(host);
    let width = stages.iter().map(|st| st.by.len()).min().unwrap_or(0);
    (0..width).any(|k| stages.iter().all(|st| at(st, k)))
}

/// Routes records to one of `n` packs by their `host.id` (see the module
/// docs).
#[derive(Debug)]
pub struct HostRouter {
    n: usize,
    table: FieldTable,
    slot: Slot,
    buf: FieldsBuf,
    multi_valued: u64,
}

impl HostRouter {
    pub fn new(n: usize) -> HostRouter {
        let mut table = FieldTable::new();
        let slot = table.intern(HOST_KEY);
        HostRouter { n: n.max(1), table, slot, buf: FieldsBuf::default(), multi_valued: 0 }
    }

    /// Records whose `host.id` held several distinct values (routed by the
    /// smallest).
    pub fn multi_valued(&self) -> u64 {
        self.multi_valued
    }

    /// The pack (`0..n`) that takes the JSON `record`: that of its
    /// `host.id` hashed (as a keyword); 0 for a record without one, or
    /// that cannot be read.
    pub fn route(&mut self, record: &[u8]) -> usize {
        let Some(key) = self.key(record) else { return 0 };
        // A fixed seed: the same key goes to the same pack all run long.
        let mut h = foldhash::fast::FixedState::with_seed(0x6170_746e_6368).build_hasher();
        h.write(&key);
        (h.finish() % self.n as u64) as usize
    }

    /// The record's `host.id` as a keyword (the smallest of several): where
    /// it lies when the walk finds it.
    pub fn key<'r>(&mut self, record: &'r [u8]) -> Option<Cow<'r, [u8]>> {
        match walk_host_id(record) {
            Walk::Found(k) => Some(Cow::Borrowed(k)),
            Walk::Absent => None,
            Walk::Unsure => self.read_key(record).map(Cow::Owned),
        }
    }

    /// `host.id` read with the field table.
    fn read_key(&mut self, record: &[u8]) -> Option<Vec<u8>> {
        let mut f = self.buf.take();
        let read = self.table.scan(record, &mut f).is_ok() || self.table.extract(record, &mut f).is_ok();
        let smallest = if read { smallest_keyword(f.get(self.slot).filter_map(|v| v.keyword())) } else { None };
        let key = smallest.map(|(k, several)| {
            self.multi_valued += several as u64;
            k.as_bytes().to_vec()
        });
        self.buf.put_back(f);
        key
    }
}

/// What the walk of a record's one `host` object found.
#[derive(Debug, PartialEq, Eq)]
enum Walk<'a> {
    /// Its `id`: one string without escapes.
    Found(&'a [u8]),
    /// A `host` object without an `id` member, or no `"host` at all.
    Absent,
    /// Anything else: read the record with the field table.
    Unsure,
}

/// `"host`, found once for all records.
static HOST: once_cell::sync::Lazy<memchr::memmem::Finder<'static>> = once_cell::sync::Lazy::new(|| memchr::memmem::Finder::new(b"\"host"));

fn ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\r' | b'\n') {
        i += 1;
    }
    i
}

/// The first byte at or after `i` that `flags` marks (eight bytes at a
/// time; `is`: the same test on one byte, for the tail). The lowest flag of
/// an OR of [`bytes_equal`] masks is exact, as each one's is.
#[inline(always)]
fn next_stop(b: &[u8], mut i: usize, flags: impl Fn(u64) -> u64, is: impl Fn(u8) -> bool) -> Option<usize> {
    while let Some(chunk) = b.get(i..i + 8) {
        let m = flags(u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])));
        if m != 0 {
            return Some(i + (m.trailing_zeros() >> 3) as usize);
        }
        i += 8;
    }
    (i..b.len()).find(|&j| is(b[j]))
}

/// The end of the string whose opening quote is at `i` (after its closing
/// quote); the record holds no backslash.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    next_stop(b, i + 1, |w| bytes_equal(w, b'"'), |c| c == b'"').map(|j| j + 1)
}

/// The next quote or bracket at or after `i`: `w | 0x20` turns `[` `]`
/// into `{` `}` and no other byte into either.
fn next_structural(b: &[u8], i: usize) -> Option<usize> {
    next_stop(
        b,
        i,
        |w| {
            let folded = w | (LO * 0x20);
            bytes_equal(w, b'"') | bytes_equal(folded, b'{') | bytes_equal(folded, b'}')
        },
        |c| matches!(c, b'"' | b'{' | b'[' | b'}' | b']'),
    )
}

/// The end of the value starting at `i` (strings, objects and arrays
/// balanced, anything else up to the next `,` `}` `]`); the record holds no
/// backslash, so every quote opens or closes a string.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                j = next_structural(b, j)?;
                match b[j] {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    _ => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                }
                j += 1;
            }
        }
        _ => {
            let j = b[i..].iter().position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n'))?;
            (j > 0).then_some(i + j)
        }
    }
}

/// `host.id` of a record that starts with `{` and holds no backslash (so
/// every quote opens or closes a string), one `"host"` string followed by
/// `:` and an object, and no `"host.`: the walk of that object's members.
/// When the record has a top-level `host.id`, that one `host` object is
/// its: the walk reads it as a reader would. When it has none, the object
/// may be nested and the value another's; such a record joins nothing in a
/// host-local rule (a missing key joins nothing), so its pack does not
/// matter.
fn walk_host_id(b: &[u8]) -> Walk<'_> {
    if memchr::memchr(b'\\', b).is_some() || b.first() != Some(&b'{') {
        return Walk::Unsure;
    }
    // `"host"` once, `"host.` never (`"hostname"` and the like are other
    // names).
    let mut at = None;
    for i in HOST.find_iter(b) {
        match b.get(i + 5) {
            Some(b'"') if at.is_none() => at = Some(i),
            Some(b'"' | b'.') => return Walk::Unsure,
            _ => {}
        }
    }
    let Some(at) = at else { return Walk::Absent };
    let i = ws(b, at + 6);
    if b.get(i) != Some(&b':') {
        return Walk::Unsure;
    }
    let mut i = ws(b, i + 1);
    if b.get(i) != Some(&b'{') {
        return Walk::Unsure;
    }
    // The members of the host object.
    let mut found = None;
    i = ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return Walk::Absent;
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return Walk::Unsure;
        }
        let Some(name_end) = string_end(b, i) else { return Walk::Unsure };
        let name = &b[i + 1..name_end - 1];
        let j = ws(b, name_end);
        if b.get(j) != Some(&b':') {
            return Walk::Unsure;
        }
        let v = ws(b, j + 1);
        let Some(v_end) = value_end(b, v) else { return Walk::Unsure };
        if name == b"id" {
            if found.is_some() || b[v] != b'"' {
                return Walk::Unsure;
            }
            found = Some(&b[v + 1..v_end - 1]);
        }
        i = ws(b, v_end);
        match b.get(i) {
            Some(b',') => i = ws(b, i + 1),
            Some(b'}') => break,
            _ => return Walk::Unsure,
        }
    }
    match found {
        Some(k) => Walk::Found(k),
        None => Walk::Absent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fallback(record: &[u8]) -> Option<Vec<u8>> {
        let mut r = HostRouter::new(7);
        let mut f = r.buf.take();
        let read = r.table.scan(record, &mut f).is_ok() || r.table.extract(record, &mut f).is_ok();
        let mut keys: Vec<Vec<u8>> = if read { f.get(r.slot).filter_map(|v| v.keyword().map(|k| k.as_bytes().to_vec())).collect() } else { Vec::new() };
        keys.sort();
        keys.into_iter().next()
    }

    /// `value_end` (eight bytes at a time) ends every value where a walk
    /// byte by byte does, on random bytes of JSON's punctuation.
    #[test]
    fn value_end_agrees_with_a_byte_walk() {
        fn naive(b: &[u8], i: usize) -> Option<usize> {
            let string = |i: usize| b[i + 1..].iter().position(|&c| c == b'"').map(|j| i + j + 2);
            match b.get(i)? {
                b'"' => string(i),
                b'{' | b'[' => {
                    let (mut depth, mut j) = (0usize, i);
                    while j < b.len() {
                        match b[j] {
                            b'"' => {
                                j = string(j)?;
                                continue;
                            }
                            b'{' | b'[' => depth += 1,
                            b'}' | b']' => {
                                depth -= 1;
                                if depth == 0 {
                                    return Some(j + 1);
                                }
                            }
                            _ => {}
                        }
                        j += 1;
                    }
                    None
                }
                _ => value_end(b, i),
            }
        }
        // JSON's punctuation, and bytes one bit away from `[` `]` `{` `}`
        // and `"` (the eight-byte tests must tell them apart).
        let alphabet = b"\"{}[]ab,: {[\x5b\x7b\xdb\xfb\xdd\xfd\xa2\x00\xff\x3b\x7f";
        let mut next = crate::xorshift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..100_000 {
            let len = (next() % 72) as usize;
            let b: Vec<u8> = (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect();
            for i in 0..b.len() {
                assert_eq!(value_end(&b, i), naive(&b, i), "{:?} at {i}", String::from_utf8_lossy(&b));
            }
        }
    }

    #[test]
    fn the_walk_reads_host_id_as_the_field_table_does() {
        let cases: &[&str] = &[
            r#"{"host":{"id":"a1","name":"x"}}"#,
            r#"{"agent":{"id":"z"},"host":{"os":{"type":"linux","id":"no"},"name":"n","id":"h2"},"x":[1,{"host":3}]}"#,
            r#"{ "host" : { "name" : "n" , "id" : "h3" } }"#,
            r#"{"host":{"name":"n"}}"#,
            r#"{"event":{"id":"e"}}"#,
            r#"{"host":{}}"#,
            r#"{"process":{"host":{"id":"nested"}}}"#,
            r#"{"host":{"id":"a"},"host.id":"b"}"#,
            r#"{"host":{"id":"a","id":"b"}}"#,
            r#"{"host":{"id":["b","a"]}}"#,
            r#"{"host":{"id":12}}"#,
            r#"{"host":{"id":null}}"#,
            r#"{"host":{"id.x":"a"}}"#,
            r#"{"host":"id"}"#,
            r#"{"a":"host","host":{"id":"q"}}"#,
            r#"{"a":["x",{"b":"}"}],"host":{"n":[1,2,{"c":"]"}],"id":"q2"}}"#,
            r#"{"h\u006fst":{"id":"esc"}}"#,
        ];
        for c in cases {
            let b = c.as_bytes();
            let want = fallback(b);
            match walk_host_id(b) {
                // Where a reader finds host.id, the walk finds it or is unsure.
                Walk::Found(k) => assert!(want.is_none() || want.as_deref() == Some(k), "{c}"),
                Walk::Absent => assert_eq!(want, None, "{c}"),
                Walk::Unsure => {}
            }
            if want.is_some() {
                let mut r = HostRouter::new(7);
                assert_eq!(r.key(b).map(Cow::into_owned), want, "{c}");
            }
        }
        assert_eq!(walk_host_id(br#"{"a":1,"host":{"name":"n","id":"h"}}"#), Walk::Found(b"h"));
        assert_eq!(walk_host_id(br#"{"a":"host","host":{"id":"q"}}"#), Walk::Unsure);
        assert_eq!(walk_host_id(br#"{"host.id":"a"}"#), Walk::Unsure);
    }

    #[test]
    fn the_walk_agrees_with_the_field_table_on_mutated_records() {
        let base = br#"{"agent":{"id":"4995"},"@timestamp":"2026-03-14T09:30:00Z","event":{"category":["network"],"type":["start"]},"host":{"os":{"name":"Debian","type":"linux"},"name":"ci-00676","id":"1396cafa"},"process":{"name":"node","args":["a","{b}"]}}"#;
        let alphabet = b"{}[]\":, .\\aih0x";
        let mut next = crate::xorshift(0x2545_f491_4f6c_dd1d);
        let (mut walked, mut total) = (0, 0);
        for _ in 0..60_000 {
            let mut r = base.to_vec();
            for _ in 0..(1 + next() % 3) {
                let at = (next() % r.len() as u64) as usize;
                let c = alphabet[(next() % alphabet.len() as u64) as usize];
                match next() % 3 {
                    0 => r[at] = c,
                    1 => r.insert(at, c),
                    _ => {
                        r.remove(at);
                    }
                }
            }
            let want = fallback(&r);
            // Wherever a reader finds host.id, the walk finds the same or
            // is unsure; it finds none only where a reader finds none.
            let ok = match walk_host_id(&r) {
                Walk::Found(k) => {
                    walked += 1;
                    want.is_none() || want.as_deref() == Some(k)
                }
                Walk::Absent => {
                    walked += 1;
                    want.is_none()
                }
                Walk::Unsure => true,
            };
            assert!(ok, "{:?} {}", want, String::from_utf8_lossy(&r));
            total += 1;
        }
        assert!(walked > total / 4, "{walked} of {total}");
    }

    #[test]
    fn which_rules_are_host_local() {
        let rule = |q: &str| Rule::from_eql(q, crate::config::rule::meta_for_file("t.eql")).unwrap();
        assert!(host_local(&rule("process where process.name == \"x\"")).is_ok());
        assert!(host_local(&rule("sequence by host.id with maxspan=1s [process where true] [network where true]")).is_ok());
        assert!(host_local(&rule("sequence by process.entity_id, host.id [process where true] [network where true]")).is_ok());
        assert!(host_local(&rule("sequence [process where true] by host.id, user.id [network where true] by host.id, user.id")).is_ok());
        assert!(host_local(&rule("sequence by process.entity_id [process where true] [network where true]")).is_err());
        assert!(host_local(&rule("sequence [process where true] by host.id, user.id [network where true] by user.id, host.id")).is_err());
        assert!(host_local(&rule("sequence by host.id with maxspan=1s [process where true] ![network where true]")).is_err());
        assert!(host_local(&rule("sample by host.id [process where true] [network where true]")).is_ok());
        assert!(host_local(&rule("sample by user.id [process where true] [network where true]")).is_err());
        assert!(host_local(&Rule::default_rule()).is_ok());
        assert!(host_key_as_ecs(&TypeMap::ecs()));
        let mut aliased = TypeMap::ecs();
        aliased.add_simple(serde_json::json!({"host.id": {"type": "alias", "path": "agent.id"}}).as_object().unwrap()).unwrap();
        assert!(!host_key_as_ecs(&aliased));
        let mut null = TypeMap::ecs();
        null.add_simple(serde_json::json!({"host.id": {"type": "keyword", "null_value": "none"}}).as_object().unwrap()).unwrap();
        assert!(!host_key_as_ecs(&null));
    }
}
