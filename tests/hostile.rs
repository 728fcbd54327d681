//! Hostile input (issue 6, item 3): every case goes through the Rust API
//! (`Detector::process`, `Detector::process_msgpack`, `chunk::filter_chunk`),
//! the C ABI (`aptnc_filter` and `aptnc_filter_msgpack`, called from Rust) and
//! the CLI, and must come out the same way everywhere:
//!
//! * the record goes on unchanged (byte-identical through the CLI; UNCHANGED
//!   or an error status through the C ABI; the MessagePack chunk UNCHANGED),
//!   unless the case is valid data the rule reads (then the expected verdict,
//!   with a note saying why);
//! * the counter that says why moves by exactly one, and no other error
//!   counter moves; where the engine deliberately counts nothing (invalid
//!   content inside members the rule does not read, valid but odd values)
//!   the case asserts that nothing was counted and its note says so;
//! * no panic; and for the 64 MiB records, memory stays within a small
//!   bound measured with a counting allocator (the record is never copied
//!   when it is not annotated).
//!
//! MessagePack forms of every case are built by hand with `rmp`, so that
//! duplicate keys, invalid UTF-8 and hostile lengths can be written.
//!
//! The test prints `hostile: N cases` at the end.

mod scratch;

use apt_netcon::host::ffi::*;
use apt_netcon::engine::chunk::filter_chunk;
use apt_netcon::{Config, Detector, RecordError, Verdict};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::ptr;

#[path = "common/heap.rs"]
mod heap;
use heap::peak_during;

#[global_allocator]
static ALLOC: heap::Counting = heap::Counting;

// ---------------------------------------------------------------------------
// The sample's hook sequence, and variants of it.

const SAMPLE: &str = include_str!("../examples/data/sample.ndjson");

fn sample_line(i: usize) -> &'static str {
    SAMPLE.lines().nth(i).unwrap()
}

/// The backdoored hook's `sh -c` exec by `apt` (sample line 6).
fn shell() -> Value {
    serde_json::from_str(sample_line(5)).unwrap()
}

/// Its child's connection to 45.33.32.156 (sample line 11): completes the
/// sequence after `shell()`.
fn conn() -> Value {
    serde_json::from_str(sample_line(10)).unwrap()
}

fn with(mut v: Value, f: impl FnOnce(&mut Value)) -> Value {
    f(&mut v);
    v
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// `v` as JSON text, with `extra` (raw bytes) inserted as the last member.
fn json_plus(v: &Value, extra: &[u8]) -> Vec<u8> {
    let mut b = bytes(v);
    b.pop();
    b.push(b',');
    b.extend_from_slice(extra);
    b.push(b'}');
    b
}

/// Replace the first occurrence of `from` in `b`.
fn replace(b: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = b.windows(from.len()).position(|w| w == from).expect("pattern present");
    [&b[..at], to, &b[at + from.len()..]].concat()
}

// ---------------------------------------------------------------------------
// MessagePack, by hand with rmp.

/// A MessagePack value to encode; `Raw` bytes are written as they are.
#[derive(Debug, Clone)]
enum M {
    Nil,
    Bool(bool),
    Int(i64),
    UInt(u64),
    F64(f64),
    Str(Vec<u8>),
    Bin(Vec<u8>),
    Ext(i8, Vec<u8>),
    Arr(Vec<M>),
    Map(Vec<(M, M)>),
    Raw(Vec<u8>),
}

fn s(x: &str) -> M {
    M::Str(x.as_bytes().to_vec())
}

fn enc(m: &M, out: &mut Vec<u8>) {
    use rmp::encode::*;
    match m {
        M::Nil => write_nil(out).unwrap(),
        M::Bool(b) => write_bool(out, *b).unwrap(),
        M::Int(i) => {
            write_sint(out, *i).unwrap();
        }
        M::UInt(u) => {
            write_uint(out, *u).unwrap();
        }
        M::F64(f) => write_f64(out, *f).unwrap(),
        M::Str(b) => {
            write_str_len(out, b.len() as u32).unwrap();
            out.extend_from_slice(b);
        }
        M::Bin(b) => write_bin(out, b).unwrap(),
        M::Ext(ty, d) => {
            write_ext_meta(out, d.len() as u32, *ty).unwrap();
            out.extend_from_slice(d);
        }
        M::Arr(a) => {
            write_array_len(out, a.len() as u32).unwrap();
            a.iter().for_each(|x| enc(x, out));
        }
        M::Map(kv) => {
            write_map_len(out, kv.len() as u32).unwrap();
            for (k, v) in kv {
                enc(k, out);
                enc(v, out);
            }
        }
        M::Raw(b) => out.extend_from_slice(b),
    }
}

fn mp(m: &M) -> Vec<u8> {
    let mut out = Vec::new();
    enc(m, &mut out);
    out
}

/// A JSON value as MessagePack.
fn m(v: &Value) -> M {
    match v {
        Value::Null => M::Nil,
        Value::Bool(b) => M::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => M::Int(i),
            (None, Some(u)) => M::UInt(u),
            _ => M::F64(n.as_f64().unwrap()),
        },
        Value::String(x) => s(x),
        Value::Array(a) => M::Arr(a.iter().map(m).collect()),
        Value::Object(o) => M::Map(o.iter().map(|(k, v)| (s(k), m(v))).collect()),
    }
}

/// `v` as a MessagePack map, with `extra` members appended.
fn m_plus(v: &Value, extra: Vec<(M, M)>) -> M {
    match m(v) {
        M::Map(mut kv) => {
            kv.extend(extra);
            M::Map(kv)
        }
        _ => unreachable!(),
    }
}

/// EventTime (ext type 0): seconds, nanoseconds.
fn event_time(secs: u32, ty: i8) -> M {
    let mut d = secs.to_be_bytes().to_vec();
    d.extend_from_slice(&0u32.to_be_bytes());
    M::Ext(ty, d)
}

/// One v2 Fluent Bit record: `[[EventTime, {}], body]`.
fn record(body: &[u8]) -> Vec<u8> {
    let mut out = mp(&M::Arr(vec![event_time(1_773_480_602, 0), M::Map(vec![])]));
    out.insert(0, 0x92);
    out.extend_from_slice(body);
    out
}

/// A group start (-1) or end (-2) marker record.
fn marker(secs: u32) -> Vec<u8> {
    let mut out = vec![0x92];
    enc(&M::Arr(vec![event_time(secs, 0), M::Map(vec![])]), &mut out);
    out.push(0x80);
    out
}

// ---------------------------------------------------------------------------
// Counters, by name, from the Rust API and the C ABI.

type Counters = BTreeMap<&'static str, u64>;

fn rust_counters(d: &Detector) -> Counters {
    d.stats().fields().into_iter().collect()
}

fn c_counters(d: *mut aptnc_detector) -> Counters {
    let mut st = aptnc_stats { size: std::mem::size_of::<aptnc_stats>() as u32, ..Default::default() };
    assert_eq!(unsafe { aptnc_get_stats(d, &mut st) }, aptnc_status::Ok);
    [
        ("records", st.records),
        ("annotated", st.annotated),
        ("stage1_matches", st.stage1_matches),
        ("stage2_matches", st.stage2_matches),
        ("sequences_completed", st.sequences_completed),
        ("rejected_by_maxspan", st.rejected_by_maxspan),
        ("expired_by_maxspan", st.expired_by_maxspan),
        ("evicted_by_cap", st.evicted_by_cap),
        ("out_of_order", st.out_of_order),
        ("late", st.late),
        ("missing_key", st.missing_key),
        ("invalid_ip", st.invalid_ip),
        ("too_large", st.too_large),
        ("invalid_json", st.invalid_json),
        ("invalid_msgpack", st.invalid_msgpack),
        ("not_an_object", st.not_an_object),
        ("too_deep", st.too_deep),
        ("bad_timestamp", st.bad_timestamp),
        ("annotate_failed", st.annotate_failed),
        ("pending", st.pending),
        ("future_timestamp", st.future_timestamp),
    ]
    .into_iter()
    .collect()
}

/// Counters that must not move unless a case names them.
const WATCHED: &[&str] = &[
    "annotated",
    "sequences_completed",
    "invalid_ip",
    "too_large",
    "invalid_json",
    "invalid_msgpack",
    "not_an_object",
    "too_deep",
    "bad_timestamp",
    "annotate_failed",
];

fn error_status(e: RecordError) -> aptnc_status {
    match e {
        RecordError::TooLarge => aptnc_status::TooLarge,
        RecordError::InvalidJson => aptnc_status::InvalidJson,
        RecordError::InvalidMsgpack => aptnc_status::InvalidMsgpack,
        RecordError::NotAnObject => aptnc_status::NotAnObject,
        RecordError::TooDeep => aptnc_status::TooDeep,
        RecordError::BadTimestamp => aptnc_status::BadTimestamp,
        RecordError::AnnotateFailed => aptnc_status::AnnotateFailed,
    }
}

/// `after - before` must equal `want` for the named counters, and be 0 for
/// every other watched counter.
fn check_deltas(case: &str, path: &str, before: &Counters, after: &Counters, want: &[(&'static str, i64)]) {
    let delta = |k: &str| after[k] as i64 - before[k] as i64;
    for (k, d) in want {
        assert_eq!(delta(k), *d, "{case} [{path}]: counter {k} moved by {} instead of {d}", delta(k));
    }
    for k in WATCHED {
        if !want.iter().any(|(w, _)| w == k) {
            assert_eq!(delta(k), 0, "{case} [{path}]: counter {k} moved");
        }
    }
}

// ---------------------------------------------------------------------------
// The cases.

/// What a record must give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Forwarded as it came, with no error.
    Unchanged,
    /// Forwarded as it came, with this error.
    Error(RecordError),
    /// Annotated: valid data that completes the sequence.
    Annotated,
}

/// The counter deltas every annotated record gives.
const ALERT: &[(&str, i64)] = &[("annotated", 1), ("sequences_completed", 1), ("stage2_matches", 1), ("pending", -1)];

/// The deltas of an error, plus `more`.
fn err(e: RecordError) -> Vec<(&'static str, i64)> {
    vec![(e.counter(), 1)]
}

/// How the CLI treats the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cli {
    /// As the Rust API does (same output, same counters).
    Same,
    /// A blank line: written back, counted as an empty line, not a record.
    Blank,
}

struct Case {
    name: &'static str,
    /// JSON records sent first (default: the hook's shell exec).
    prefix: Vec<Vec<u8>>,
    json: Vec<u8>,
    want: Want,
    deltas: Vec<(&'static str, i64)>,
    cli: Cli,
    /// The MessagePack form of the case (a record body), its verdict and deltas.
    body: Vec<u8>,
    mp_want: Want,
    mp_deltas: Vec<(&'static str, i64)>,
    /// Why the expectation is what it is, where it is not obvious.
    #[allow(dead_code)]
    note: &'static str,
}

impl Case {
    /// A case whose MessagePack form is the same data and behaves the same.
    fn same(name: &'static str, v: &Value, want: Want, deltas: Vec<(&'static str, i64)>, note: &'static str) -> Case {
        Case {
            name,
            prefix: vec![bytes(&shell())],
            json: bytes(v),
            want,
            deltas: deltas.clone(),
            cli: Cli::Same,
            body: mp(&m(v)),
            mp_want: want,
            mp_deltas: deltas,
            note,
        }
    }

    /// A case with its own JSON bytes and MessagePack body.
    #[allow(clippy::too_many_arguments)]
    fn pair(
        name: &'static str,
        json: Vec<u8>,
        want: Want,
        deltas: Vec<(&'static str, i64)>,
        body: Vec<u8>,
        mp_want: Want,
        mp_deltas: Vec<(&'static str, i64)>,
        note: &'static str,
    ) -> Case {
        Case { name, prefix: vec![bytes(&shell())], json, want, deltas, cli: Cli::Same, body, mp_want, mp_deltas, note }
    }

    fn prefix(mut self, p: Vec<Vec<u8>>) -> Case {
        self.prefix = p;
        self
    }

    fn cli(mut self, c: Cli) -> Case {
        self.cli = c;
        self
    }
}

fn deep_arrays_json(n: usize) -> Vec<u8> {
    let mut v = "[".repeat(n).into_bytes();
    v.extend_from_slice("]".repeat(n).as_bytes());
    v
}

fn deep_arrays_mp(n: usize) -> Vec<u8> {
    let mut v = vec![0x91u8; n - 1];
    v.push(0x90);
    v
}

fn json_cases() -> Vec<Case> {
    use RecordError::*;
    use Want::*;
    let c = conn();
    let cb = bytes(&c);
    let alert = || ALERT.to_vec();
    let bad_key_map = mp(&M::Map(vec![(M::Int(1), s("x"))]));
    let conn_mp = |extra: Vec<(M, M)>| mp(&m_plus(&c, extra));
    vec![
        // --- not JSON at all
        Case::pair(
            "invalid JSON: trailing comma",
            json_plus(&c, b"\"x\":1,"),
            Error(InvalidJson),
            err(InvalidJson),
            bad_key_map.clone(),
            Error(InvalidMsgpack),
            err(InvalidMsgpack),
            "MessagePack analogue: a map key that is not a string",
        ),
        Case::pair(
            "invalid JSON: bad literal in a member the rule does not read",
            json_plus(&c, b"\"x\":tru"),
            Error(InvalidJson),
            err(InvalidJson),
            mp(&M::Map(vec![(s("x"), M::Map(vec![(M::Int(1), M::Nil)]))])),
            Unchanged,
            vec![],
            "JSON is validated whole; MessagePack keys inside skipped values are not inspected (documented), so nothing is counted",
        ),
        Case::pair(
            "invalid JSON: two objects on one line",
            [cb.clone(), cb.clone()].concat(),
            Error(InvalidJson),
            err(InvalidJson),
            [mp(&m(&c)), vec![0x80]].concat(),
            Error(InvalidMsgpack),
            err(InvalidMsgpack),
            "MessagePack analogue: bytes after the body map (given to process_msgpack; in a chunk they are the next record)",
        ),
        Case::pair(
            "invalid JSON: byte order mark",
            [b"\xef\xbb\xbf".as_slice(), &cb].concat(),
            Error(InvalidJson),
            err(InvalidJson),
            bad_key_map.clone(),
            Error(InvalidMsgpack),
            err(InvalidMsgpack),
            "",
        ),
        // --- truncated
        Case::pair(
            "truncated record (half of the completing connection)",
            cb[..cb.len() / 2].to_vec(),
            Error(InvalidJson),
            err(InvalidJson),
            {
                let b = mp(&m(&c));
                b[..b.len() / 2].to_vec()
            },
            Error(InvalidMsgpack),
            err(InvalidMsgpack),
            "in a chunk, a truncated body makes the chunk malformed: see the MessagePack cases",
        ),
        Case::pair(
            "truncated record: inside a \\u escape",
            b"{\"event\":{\"action\":\"conn\\u00".to_vec(),
            Error(InvalidJson),
            err(InvalidJson),
            vec![0x81, 0xa5, b'e', b'v', b'e', b'n', b't', 0x81],
            Error(InvalidMsgpack),
            err(InvalidMsgpack),
            "",
        ),
        // --- invalid UTF-8
        Case::pair(
            "invalid UTF-8 in a field the rule reads",
            replace(&cb, b"\"curl\"", b"\"cu\xffrl\""),
            Error(InvalidJson),
            err(InvalidJson),
            conn_mp(vec![(s("process.name"), M::Str(b"cu\xffrl".to_vec()))]),
            Error(InvalidMsgpack),
            err(InvalidMsgpack),
            "",
        ),
        Case::pair(
            "invalid UTF-8 in a member the rule does not read",
            json_plus(&c, b"\"junk\":\"\xc3\x28\""),
            Error(InvalidJson),
            err(InvalidJson),
            conn_mp(vec![(s("junk"), M::Str(b"\xc3\x28".to_vec()))]),
            Annotated,
            alert(),
            "JSON must be UTF-8 throughout; MessagePack strings in skipped members are not inspected (documented): the record completes and keeps the bytes",
        ),
        Case::pair(
            "invalid UTF-8: an encoded surrogate in a read field",
            replace(&cb, b"\"curl\"", b"\"\xed\xa0\x80\""),
            Error(InvalidJson),
            err(InvalidJson),
            conn_mp(vec![(s("process.name"), M::Str(b"\xed\xa0\x80".to_vec()))]),
            Error(InvalidMsgpack),
            err(InvalidMsgpack),
            "",
        ),
        Case::pair(
            "escaped lone surrogate in a read field",
            replace(&cb, b"\"curl\"", b"\"\\ud800\""),
            Error(InvalidJson),
            err(InvalidJson),
            conn_mp(vec![(s("process.name"), M::Str(b"\xed\xa0\x80".to_vec()))]),
            Error(InvalidMsgpack),
            err(InvalidMsgpack),
            "",
        ),
        // --- top level not an object
        Case::pair(
            "top level is an array",
            [b"[".as_slice(), &cb, b"]"].concat(),
            Error(NotAnObject),
            err(NotAnObject),
            mp(&M::Arr(vec![m(&c)])),
            Error(NotAnObject),
            err(NotAnObject),
            "",
        ),
        Case::pair(
            "top level is a string",
            b"\"process\"".to_vec(),
            Error(NotAnObject),
            err(NotAnObject),
            mp(&s("process")),
            Error(NotAnObject),
            err(NotAnObject),
            "",
        ),
        Case::pair(
            "top level is null",
            b"null".to_vec(),
            Error(NotAnObject),
            err(NotAnObject),
            mp(&M::Nil),
            Error(NotAnObject),
            err(NotAnObject),
            "",
        ),
        Case::pair(
            "top level is a huge number",
            b"99999999999999999999999".to_vec(),
            Error(NotAnObject),
            err(NotAnObject),
            mp(&M::UInt(u64::MAX)),
            Error(NotAnObject),
            err(NotAnObject),
            "",
        ),
        // --- empty
        Case::pair("empty line", vec![], Error(InvalidJson), err(InvalidJson), vec![], Error(InvalidMsgpack), err(InvalidMsgpack),
            "the CLI writes a blank line back and counts it as an empty line, not a record; through the API an empty record is not JSON")
        .cli(Cli::Blank),
        Case::pair("whitespace-only line", b" \t ".to_vec(), Error(InvalidJson), err(InvalidJson), mp(&M::Map(vec![])), Unchanged, vec![],
            "MessagePack analogue: an empty map, a valid record with nothing to read")
        .cli(Cli::Blank),
        // --- nesting
        Case::pair(
            "nesting 100,000 deep in a member the rule does not read",
            json_plus(&c, &[b"\"deep\":".as_slice(), &deep_arrays_json(100_000)].concat()),
            Annotated,
            alert(),
            conn_mp(vec![(s("deep"), M::Raw(deep_arrays_mp(100_000)))]),
            Annotated,
            alert(),
            "valid data: the readers skip unread members iteratively (no recursion, no limit) and both merges copy them as raw bytes, so the connection completes the sequence and keeps the member byte for byte",
        ),
        Case::pair(
            "nesting 100,000 deep on a path the rule reads",
            replace(&cb, b"\"destination\":{", &[b"\"destination\":{\"ip\":".as_slice(), &deep_arrays_json(100_000), b","].concat()),
            Error(TooDeep),
            err(TooDeep),
            conn_mp(vec![(s("destination.ip"), M::Raw(deep_arrays_mp(100_000)))]),
            Error(TooDeep),
            err(TooDeep),
            "",
        ),
        Case::pair(
            "objects nested 100,000 deep where a read field ends (a second host.id)",
            json_plus(&c, &[b"\"host.id\":".as_slice(), &"{\"a\":".repeat(100_000).into_bytes(), b"1", &"}".repeat(100_000).into_bytes()].concat()),
            Annotated,
            alert(),
            conn_mp(vec![(s("host.id"), M::Raw([b"\x81\xa1a".repeat(100_000), vec![1]].concat()))]),
            Annotated,
            alert(),
            "an object where a field ends is present but no value (its members are skipped iteratively); the other host.id value still joins: valid data, nothing to count",
        ),
        // --- duplicate keys
        Case::pair(
            "duplicate keys: a second destination.ip, private, accumulates",
            json_plus(&c, b"\"destination\":{\"ip\":\"10.0.0.1\"}"),
            Unchanged,
            vec![("stage2_matches", 0)],
            conn_mp(vec![(s("destination"), M::Map(vec![(s("ip"), s("10.0.0.1"))]))]),
            Unchanged,
            vec![("stage2_matches", 0)],
            "values of a key met twice accumulate, as a multi-valued field does in Elasticsearch: one is private, so cidrmatch holds and the stage does not match; nothing to count",
        ),
        Case::pair(
            "duplicate keys: event.action twice, both members kept",
            json_plus(&c, b"\"event\":{\"action\":\"connection_attempted\"}"),
            Annotated,
            alert(),
            conn_mp(vec![(s("event"), M::Map(vec![(s("action"), s("connection_attempted"))]))]),
            Annotated,
            alert(),
            "valid data; the annotated record keeps both members byte for byte",
        ),
        // --- wrong types
        Case::same(
            "process.args as a string \"-c\"",
            &with(shell(), |v| v["process"]["args"] = json!("-c")),
            Unchanged,
            vec![("stage1_matches", 1), ("pending", 1)],
            "a scalar is a one-valued field (Elasticsearch): the shell exec matches stage 1 and waits; nothing to count",
        )
        .prefix(vec![]),
        Case::same(
            "process.args as a string holding the command line",
            &with(shell(), |v| v["process"]["args"] = json!("sh -c curl x | sh")),
            Unchanged,
            vec![("stage1_matches", 0), ("pending", 0)],
            "`==` is exact: no stage matches, nothing to count",
        )
        .prefix(vec![]),
        Case::same(
            "host.id as a number on both events",
            &with(conn(), |v| v["host"]["id"] = json!(42)),
            Annotated,
            alert(),
            "a number is the keyword \"42\" as a join key (docs/semantics.md, What matches)",
        )
        .prefix(vec![bytes(&with(shell(), |v| v["host"]["id"] = json!("42")))]),
        Case::same(
            "host.id as an object",
            &with(conn(), |v| v["host"]["id"] = json!({"id": "7d3f0c2a9b1e4d6f8a2c5e7b9d1f3a5c"})),
            Unchanged,
            vec![("stage2_matches", 1), ("missing_key", 1)],
            "an object is no join key: counted missing_key",
        ),
        Case::same(
            "host.id as an array",
            &with(conn(), |v| v["host"]["id"] = json!(["elsewhere", "7d3f0c2a9b1e4d6f8a2c5e7b9d1f3a5c"])),
            Annotated,
            alert(),
            "every value of a key field is a candidate key (docs/semantics.md, What matches)",
        ),
        Case::same(
            "@timestamp missing",
            &with(conn(), |v| {
                v.as_object_mut().unwrap().remove("@timestamp");
            }),
            Error(BadTimestamp),
            err(BadTimestamp),
            "",
        ),
        Case::same(
            "@timestamp garbage",
            &with(conn(), |v| v["@timestamp"] = json!("yesterday at noon")),
            Error(BadTimestamp),
            err(BadTimestamp),
            "",
        ),
        Case::same(
            "@timestamp negative (a string)",
            &with(conn(), |v| v["@timestamp"] = json!("-1773480602134")),
            Error(BadTimestamp),
            err(BadTimestamp),
            "",
        ),
        Case::same(
            "@timestamp negative (epoch milliseconds)",
            &with(conn(), |v| v["@timestamp"] = json!(-1)),
            Unchanged,
            vec![("stage2_matches", 1), ("out_of_order", 1)],
            "a valid instant in 1969, before the waiting shell: counted out_of_order",
        ),
        Case::same(
            "@timestamp in year 9999",
            &with(conn(), |v| v["@timestamp"] = json!("9999-12-31T23:59:59.999Z")),
            Unchanged,
            vec![("future_timestamp", 1)],
            "more than max_future (1 day) ahead of the system clock: ignored and counted, so event time does not jump; see `a_far_future_timestamp_does_not_blind_the_detector`",
        ),
        Case::same(
            "@timestamp a huge number",
            &with(conn(), |v| v["@timestamp"] = json!(1e300)),
            Error(BadTimestamp),
            err(BadTimestamp),
            "",
        ),
        Case::same(
            "destination.ip garbage",
            &with(conn(), |v| v["destination"]["ip"] = json!("not-an-address")),
            Unchanged,
            vec![("invalid_ip", 1)],
            "",
        ),
        Case::same(
            "destination.ip a number",
            &with(conn(), |v| v["destination"]["ip"] = json!(757210780)),
            Unchanged,
            vec![("invalid_ip", 1)],
            "",
        ),
        Case::same(
            "destination.ip an array with a private address",
            &with(conn(), |v| v["destination"]["ip"] = json!(["45.33.32.156", "10.1.2.3"])),
            Unchanged,
            vec![("stage2_matches", 0)],
            "any value in a private block excludes the event (cidrmatch on a multi-valued field): the stage does not match, nothing to count",
        ),
        Case::same(
            "destination.ip an array of public addresses",
            &with(conn(), |v| v["destination"]["ip"] = json!(["45.33.32.156", "2a01:4f8::2"])),
            Annotated,
            alert(),
            "",
        ),
        Case::same(
            "destination.ip with a zone id",
            &with(conn(), |v| v["destination"]["ip"] = json!("2a01:4f8:c17:b8f::2%eth0")),
            Unchanged,
            vec![("invalid_ip", 1)],
            "Elasticsearch cannot index a zone id in an ip field (docs/semantics.md, What matches)",
        ),
        // --- NUL bytes
        Case::pair(
            "raw NUL byte inside a string",
            replace(&cb, b"\"curl\"", b"\"cu\0rl\""),
            Error(InvalidJson),
            err(InvalidJson),
            conn_mp(vec![(s("process.name"), M::Str(b"cu\0rl".to_vec()))]),
            Annotated,
            alert(),
            "JSON forbids raw control characters in strings; a MessagePack string may hold NUL: valid UTF-8, annotated",
        ),
        Case::same(
            "escaped NUL in a read field and in a key",
            &with(conn(), |v| {
                v["process"]["name"] = json!("cu\u{0}rl");
                v["ke\u{0}y"] = json!("\u{0}");
            }),
            Annotated,
            alert(),
            "valid JSON; the alert's reason carries the NUL escaped",
        ),
        Case::pair(
            "raw NUL byte between members",
            replace(&cb, b",\"destination\"", b",\0\"destination\""),
            Error(InvalidJson),
            err(InvalidJson),
            conn_mp(vec![(M::Str(b"\0".to_vec()), M::Nil)]),
            Annotated,
            alert(),
            "",
        ),
        // --- huge numbers
        Case::pair(
            "1e400 in a member the rule does not read",
            json_plus(&c, b"\"big\":1e400"),
            Annotated,
            alert(),
            conn_mp(vec![(s("big"), M::F64(f64::INFINITY))]),
            Annotated,
            alert(),
            "skipped numbers are not converted: the record completes and keeps the bytes `1e400`",
        ),
        Case::pair(
            "1e400 in a field the rule reads",
            replace(&cb, b"\"port\":443", b"\"port\":1e400"),
            Error(InvalidJson),
            err(InvalidJson),
            conn_mp(vec![(s("destination.port"), M::F64(f64::INFINITY))]),
            Annotated,
            alert(),
            "serde_json refuses a number out of range where it converts one; a MessagePack infinity is a float like any other",
        ),
        Case::pair(
            "99999999999999999999999 in fields the rule reads",
            replace(&replace(&cb, b"\"port\":443", b"\"port\":99999999999999999999999"), b"\"pid\":2311", b"\"pid\":-99999999999999999999999"),
            Annotated,
            alert(),
            conn_mp(vec![(s("destination.port"), M::UInt(u64::MAX)), (s("process.pid"), M::Int(i64::MIN))]),
            Annotated,
            alert(),
            "read as floats (JSON) or 64-bit integers (MessagePack); only keywords and the reason use them",
        ),
        Case::same(
            "@timestamp 99999999999999999999999",
            &serde_json::from_str(&String::from_utf8(replace(&cb, b"\"2026-03-14T09:30:02.1345678Z\",\"process\"", b"99999999999999999999999,\"process\"")).unwrap()).unwrap(),
            Error(BadTimestamp),
            err(BadTimestamp),
            "",
        ),
    ]
}

/// A MessagePack-only case: a whole chunk, after a chunk holding the shell.
struct ChunkCase {
    name: &'static str,
    chunk: Vec<u8>,
    /// None: the chunk is refused (INVALID_MSGPACK, no record shown to the
    /// detector, no counter moves). Some: UNCHANGED / ANNOTATED.
    annotated: Option<bool>,
    deltas: Vec<(&'static str, i64)>,
    #[allow(dead_code)]
    note: &'static str,
}

fn chunk_cases() -> Vec<ChunkCase> {
    let conn_body = mp(&m(&conn()));
    let conn_rec = record(&conn_body);
    let ext_time = |ty: i8, len: usize| {
        let mut r = vec![0x92, 0x92];
        let mut d = vec![0x69u8, 0xb5, 0x2a, 0x9a, 0, 0, 0, 0];
        d.truncate(len);
        enc(&M::Ext(ty, d), &mut r);
        r.push(0x80);
        r.extend_from_slice(&conn_body);
        r
    };
    vec![
        ChunkCase {
            name: "truncated chunk (every proper prefix of a record)",
            chunk: conn_rec.clone(),
            annotated: None,
            deltas: vec![],
            note: "each prefix is tried: all refused; the status says why, no counter (a refused chunk is not shown to the detector)",
        },
        ChunkCase {
            name: "wrong ext type for EventTime",
            chunk: ext_time(1, 8),
            annotated: None,
            deltas: vec![],
            note: "",
        },
        ChunkCase {
            name: "EventTime ext of 4 bytes",
            chunk: ext_time(0, 4),
            annotated: None,
            deltas: vec![],
            note: "",
        },
        ChunkCase {
            name: "body not a map, then a completing record",
            chunk: [record(&mp(&M::Arr(vec![s("x")]))), conn_rec.clone()].concat(),
            annotated: Some(true),
            deltas: [vec![("not_an_object", 1)], ALERT.to_vec()].concat(),
            note: "a record error: counted, that record kept as it was, the walk goes on",
        },
        ChunkCase {
            name: "body not a map only",
            chunk: record(&mp(&s("just a string"))),
            annotated: Some(false),
            deltas: vec![("not_an_object", 1)],
            note: "",
        },
        ChunkCase {
            name: "group markers only",
            chunk: [marker(0xffff_ffff), marker(0xffff_fffe), marker(0xffff_ffff), marker(0xffff_fffe)].concat(),
            annotated: Some(false),
            deltas: vec![("records", 0)],
            note: "markers are passed through and never shown to the detector: no record, no counter",
        },
        ChunkCase {
            name: "group markers around a completing record",
            chunk: [marker(0xffff_ffff), conn_rec.clone(), marker(0xffff_fffe)].concat(),
            annotated: Some(true),
            deltas: [vec![("records", 1)], ALERT.to_vec()].concat(),
            note: "",
        },
        ChunkCase {
            name: "metadata not a map",
            chunk: {
                let mut r = vec![0x92, 0x92];
                enc(&event_time(1_773_480_602, 0), &mut r);
                enc(&M::Arr(vec![]), &mut r);
                r.extend_from_slice(&conn_body);
                r
            },
            annotated: None,
            deltas: vec![],
            note: "",
        },
        ChunkCase {
            name: "record of three elements",
            chunk: {
                let mut r = vec![0x93];
                enc(&event_time(1_773_480_602, 0), &mut r);
                r.extend_from_slice(&conn_body);
                r.push(0xc0);
                r
            },
            annotated: None,
            deltas: vec![],
            note: "",
        },
        ChunkCase {
            name: "time a string",
            chunk: [vec![0x92], mp(&s("2026-03-14T09:30:02Z")), conn_body.clone()].concat(),
            annotated: None,
            deltas: vec![],
            note: "",
        },
        ChunkCase {
            name: "reserved marker 0xc1 in a skipped member",
            chunk: record(&mp(&m_plus(&conn(), vec![(s("x"), M::Raw(vec![0xc1]))]))),
            annotated: None,
            deltas: vec![],
            note: "the walk validates the structure of every value",
        },
        ChunkCase {
            name: "hostile lengths: str32 and map32 of 4 GiB",
            chunk: [record(&[0x81, 0xa1, b'x', 0xdb, 0xff, 0xff, 0xff, 0xff]), record(&[0xdf, 0xff, 0xff, 0xff, 0xff])].concat(),
            annotated: None,
            deltas: vec![],
            note: "refused at once, nothing allocated for the counts",
        },
        ChunkCase {
            name: "array32 of 4 G elements in a skipped member",
            chunk: record(&mp(&m_plus(&conn(), vec![(s("x"), M::Raw(vec![0xdd, 0xff, 0xff, 0xff, 0xff]))]))),
            annotated: None,
            deltas: vec![],
            note: "",
        },
        ChunkCase {
            name: "bin and ext values where fields end",
            chunk: record(&mp(&m_plus(
                &conn(),
                vec![(s("destination.ip"), M::Bin(b"\x2d\x21\x20\x9c".to_vec())), (s("@timestamp"), event_time(1_773_480_602, 0))],
            ))),
            annotated: Some(false),
            deltas: vec![("invalid_ip", 1)],
            note: "bin/ext are present but have no text: not an address",
        },
        ChunkCase {
            name: "EventTime ext as @timestamp",
            chunk: record(&mp(&M::Map(
                m_plus(&with(conn(), |v| {
                    v.as_object_mut().unwrap().remove("@timestamp");
                }), vec![(s("@timestamp"), event_time(1_773_480_602, 0))])
                .map_entries(),
            ))),
            annotated: Some(false),
            deltas: vec![("bad_timestamp", 1)],
            note: "an ext is not a usable time (documented)",
        },
        ChunkCase {
            name: "integer and float marker times, legacy records",
            chunk: {
                let mut c = Vec::new();
                for t in [M::Int(-1), M::Int(-2), M::UInt(0xffff_ffff), M::F64(-1.5)] {
                    c.push(0x92);
                    enc(&t, &mut c);
                    c.push(0x80);
                }
                c.push(0x92);
                enc(&M::F64(f64::NAN), &mut c);
                c.extend_from_slice(&conn_body);
                c
            },
            annotated: Some(true),
            deltas: [vec![("records", 1)], ALERT.to_vec()].concat(),
            note: "markers in every time form pass through; a NaN time is a normal record (the detector reads @timestamp)",
        },
        ChunkCase {
            name: "empty chunk",
            chunk: vec![],
            annotated: Some(false),
            deltas: vec![("records", 0)],
            note: "",
        },
    ]
}

impl M {
    fn map_entries(self) -> Vec<(M, M)> {
        match self {
            M::Map(kv) => kv,
            _ => unreachable!(),
        }
    }
}

// ---------------------------------------------------------------------------
// Running a case through every path.

fn new_c_detector(config: &str) -> *mut aptnc_detector {
    let mut d = ptr::null_mut();
    let mut e = ptr::null_mut();
    let s = unsafe { aptnc_init(config.as_ptr(), config.len(), ptr::null(), &mut d, &mut e) };
    assert_eq!(s, aptnc_status::Ok);
    d
}

fn c_filter(d: *mut aptnc_detector, rec: &[u8]) -> (aptnc_status, Option<Vec<u8>>) {
    let mut out = ptr::null();
    let mut len = 0usize;
    let s = unsafe { aptnc_filter(d, rec.as_ptr(), rec.len(), &mut out, &mut len) };
    if s == aptnc_status::Annotated {
        (s, Some(unsafe { std::slice::from_raw_parts(out, len) }.to_vec()))
    } else {
        assert!(out.is_null() && len == 0, "out-params written on {s:?}");
        (s, None)
    }
}

fn c_filter_msgpack(d: *mut aptnc_detector, chunk: &[u8]) -> (aptnc_status, Option<Vec<u8>>) {
    let mut out = ptr::null();
    let mut len = 0usize;
    let s = unsafe { aptnc_filter_msgpack(d, chunk.as_ptr(), chunk.len(), &mut out, &mut len) };
    if s == aptnc_status::Annotated {
        (s, Some(unsafe { std::slice::from_raw_parts(out, len) }.to_vec()))
    } else {
        assert!(out.is_null() && len == 0, "out-params written on {s:?}");
        (s, None)
    }
}

/// Run the CLI on `input` with `config`; stdout and the counters it prints.
fn cli(input: &[u8], config: &str) -> (Vec<u8>, CliCounters, u64) {
    let dir = scratch::dir("hostile");
    let cfg = dir.join("config.json");
    std::fs::write(&cfg, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_apt-netcon"))
        .arg("--config")
        .arg(&cfg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "CLI failed: {}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    let (counters, empty) = parse_cli_counters(&err);
    (out.stdout, counters, empty)
}

/// The `records=… annotated=…` line and the empty-line count of the CLI's report.
type CliCounters = BTreeMap<String, u64>;

fn parse_cli_counters(stderr: &str) -> (CliCounters, u64) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("apt-netcon: records="))
        .unwrap_or_else(|| panic!("no counters in: {stderr}"));
    let mut c = CliCounters::new();
    for kv in line.trim_start_matches("apt-netcon: ").split_whitespace() {
        if let Some((k, v)) = kv.split_once('=') {
            if let Ok(v) = v.parse() {
                c.insert(k.to_string(), v);
            }
        }
    }
    let empty = stderr
        .lines()
        .find_map(|l| {
            l.split_once(" records (").and_then(|(_, r)| r.split_once(" empty")).map(|(n, _)| n.parse().unwrap())
        })
        .unwrap_or(0);
    (c, empty)
}

fn check_verdict(case: &str, path: &str, want: Want, got: Result<Option<&[u8]>, RecordError>) {
    match (want, got) {
        (Want::Unchanged, Ok(None)) => {}
        (Want::Annotated, Ok(Some(_))) => {}
        (Want::Error(e), Err(g)) if e == g => {}
        (w, g) => panic!("{case} [{path}]: wanted {w:?}, got {:?}", g.map(|o| o.map(short))),
    }
}

/// The start of a record, for messages.
fn short(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(160)]).into_owned();
    format!("{} bytes: {s}…", b.len())
}

fn verdict(r: Result<Verdict<'_>, RecordError>) -> Result<Option<Vec<u8>>, RecordError> {
    r.map(|v| match v {
        Verdict::Unchanged => None,
        Verdict::Annotated(b) => Some(b.to_vec()),
    })
}

/// The cases check the error each path counts, so they run with the byte
/// prefilter off (every record read); [`prefilter_relaxes_only_errors`]
/// runs them again with it on.
fn strict() -> Config {
    Config { prefilter: false, ..Config::default() }
}

const STRICT: &str = r#"{"prefilter":false}"#;

fn run_json_case(c: &Case) {
    let name = c.name;
    // Rust API.
    let mut det = Detector::new(&strict()).unwrap();
    for p in &c.prefix {
        assert!(det.process(p).is_ok(), "{name}: prefix");
    }
    let before = rust_counters(&det);
    let got = verdict(det.process(&c.json));
    check_verdict(name, "rust", c.want, got.as_ref().map(|o| o.as_deref()).map_err(|e| *e));
    let after = rust_counters(&det);
    assert_eq!(after["records"], before["records"] + 1, "{name}: not counted as a record");
    check_deltas(name, "rust", &before, &after, &c.deltas);
    let rust_out = got.clone().ok().flatten();
    if let Some(out) = &rust_out {
        // Raw members: skipped members may nest deeper than a `Value` parses.
        let v: BTreeMap<String, Box<serde_json::value::RawValue>> =
            serde_json::from_slice(out).unwrap_or_else(|e| panic!("{name}: annotated output is not JSON: {e}"));
        assert!(v.contains_key("kibana"), "{name}: no alert fields");
    }
    let rust_final = after;

    // C ABI, JSON.
    let d = new_c_detector(STRICT);
    for p in &c.prefix {
        let (s, _) = c_filter(d, p);
        assert!(matches!(s, aptnc_status::Unchanged | aptnc_status::Annotated), "{name}: prefix {s:?}");
    }
    let before = c_counters(d);
    let (s, out) = c_filter(d, &c.json);
    let want_status = match c.want {
        Want::Unchanged => aptnc_status::Unchanged,
        Want::Annotated => aptnc_status::Annotated,
        Want::Error(e) => error_status(e),
    };
    assert_eq!(s, want_status, "{name} [C JSON]");
    assert_eq!(out, rust_out, "{name} [C JSON]: output differs from the Rust API's");
    check_deltas(name, "C JSON", &before, &c_counters(d), &c.deltas);
    unsafe { aptnc_free(d) };

    // MessagePack: Rust API (the body), Rust chunk walk and C ABI (a chunk).
    let shell_chunks: Vec<Vec<u8>> =
        c.prefix.iter().map(|p| record(&mp(&m(&serde_json::from_slice::<Value>(p).unwrap())))).collect();
    let mut det = Detector::new(&strict()).unwrap();
    for p in &c.prefix {
        let body = mp(&m(&serde_json::from_slice::<Value>(p).unwrap()));
        assert!(det.process_msgpack(&body).is_ok(), "{name}: msgpack prefix");
    }
    let before = rust_counters(&det);
    let got = verdict(det.process_msgpack(&c.body));
    check_verdict(name, "rust msgpack", c.mp_want, got.as_ref().map(|o| o.as_deref()).map_err(|e| *e));
    check_deltas(name, "rust msgpack", &before, &rust_counters(&det), &c.mp_deltas);

    // In a chunk: only bodies that are one whole MessagePack value can be
    // framed; others make the chunk malformed (the chunk cases cover that).
    let framable = mp_value_len(&c.body) == Some(c.body.len());
    let chunk = record(&c.body);
    let mut det = Detector::new(&strict()).unwrap();
    let mut scratch = Vec::new();
    for p in &shell_chunks {
        filter_chunk(&mut det, p, &mut scratch).unwrap();
    }
    let d = new_c_detector(STRICT);
    for p in &shell_chunks {
        c_filter_msgpack(d, p);
    }
    let before = rust_counters(&det);
    let before_c = c_counters(d);
    let mut out = b"untouched".to_vec();
    let res = filter_chunk(&mut det, &chunk, &mut out);
    let (cs, cout) = c_filter_msgpack(d, &chunk);
    if framable {
        let o = res.unwrap_or_else(|e| panic!("{name} [chunk]: {e}"));
        let annotated = c.mp_want == Want::Annotated;
        assert_eq!(o.annotated > 0, annotated, "{name} [chunk]");
        assert_eq!(cs, if annotated { aptnc_status::Annotated } else { aptnc_status::Unchanged }, "{name} [C msgpack]");
        if annotated {
            assert_eq!(cout.as_deref(), Some(&out[..]), "{name}: C and Rust chunks differ");
        } else {
            assert_eq!(out, b"untouched", "{name}: out written with nothing annotated");
        }
        check_deltas(name, "chunk", &before, &rust_counters(&det), &c.mp_deltas);
        check_deltas(name, "C msgpack", &before_c, &c_counters(d), &c.mp_deltas);
    } else {
        assert!(res.is_err(), "{name} [chunk]: a malformed chunk was walked");
        assert_eq!(cs, aptnc_status::InvalidMsgpack, "{name} [C msgpack]");
        assert_eq!(rust_counters(&det), before, "{name}: a refused chunk moved counters");
        assert_eq!(c_counters(d), before_c, "{name}: a refused chunk moved counters");
    }
    unsafe { aptnc_free(d) };

    // CLI.
    match c.cli {
        Cli::Same | Cli::Blank => {
            assert!(!c.json.contains(&b'\n'), "{name}: a case record holds a newline");
            let mut input = Vec::new();
            for p in &c.prefix {
                input.extend_from_slice(p);
                input.push(b'\n');
            }
            input.extend_from_slice(&c.json);
            input.push(b'\n');
            let (stdout, counters, empty) = cli(&input, STRICT);
            match &rust_out {
                None => assert!(stdout == input, "{name} [CLI]: output is not byte-identical to the input"),
                Some(a) => {
                    let last = stdout[..stdout.len() - 1].rsplit(|&b| b == b'\n').next().unwrap();
                    assert_eq!(last, &a[..], "{name} [CLI]: annotated line differs from the Rust API's");
                    assert!(
                        stdout.starts_with(&input[..input.len() - c.json.len() - 1]),
                        "{name} [CLI]: prefix changed"
                    );
                }
            }
            if c.cli == Cli::Blank {
                assert_eq!(empty, 1, "{name} [CLI]: blank line not counted as empty");
                assert_eq!(counters["records"], rust_final["records"] - 1, "{name} [CLI]");
                for k in WATCHED {
                    assert_eq!(counters[*k], 0, "{name} [CLI]: {k}");
                }
            } else {
                for (k, v) in &rust_final {
                    assert_eq!(counters.get(*k), Some(v), "{name} [CLI]: counter {k}");
                }
            }
        }
    }
}

/// The length of the first MessagePack value of `b`, read iteratively with
/// rmp's marker table; None when truncated or holding the reserved marker.
fn mp_value_len(b: &[u8]) -> Option<usize> {
    use rmp::Marker::*;
    let mut pos = 0usize;
    let mut remaining = 1u64;
    let num = |pos: &mut usize, n: usize| -> Option<u64> {
        let s = b.get(*pos..*pos + n)?;
        *pos += n;
        Some(s.iter().fold(0u64, |v, &x| v << 8 | x as u64))
    };
    while remaining > 0 {
        remaining -= 1;
        let marker = rmp::Marker::from_u8(*b.get(pos)?);
        pos += 1;
        let skip = match marker {
            FixPos(_) | FixNeg(_) | Null | True | False => 0,
            U8 | I8 => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 => 8,
            FixStr(n) => n as u64,
            Str8 | Bin8 => num(&mut pos, 1)?,
            Str16 | Bin16 => num(&mut pos, 2)?,
            Str32 | Bin32 => num(&mut pos, 4)?,
            FixExt1 => 2,
            FixExt2 => 3,
            FixExt4 => 5,
            FixExt8 => 9,
            FixExt16 => 17,
            Ext8 => num(&mut pos, 1)? + 1,
            Ext16 => num(&mut pos, 2)? + 1,
            Ext32 => num(&mut pos, 4)? + 1,
            FixArray(n) => {
                remaining += n as u64;
                0
            }
            Array16 => {
                remaining += num(&mut pos, 2)?;
                0
            }
            Array32 => {
                remaining += num(&mut pos, 4)?;
                0
            }
            FixMap(n) => {
                remaining += 2 * n as u64;
                0
            }
            Map16 => {
                remaining += 2 * num(&mut pos, 2)?;
                0
            }
            Map32 => {
                remaining += 2 * num(&mut pos, 4)?;
                0
            }
            Reserved => return None,
        };
        pos = pos.checked_add(skip as usize)?;
        if pos > b.len() || remaining > b.len() as u64 {
            return None;
        }
    }
    Some(pos)
}

fn run_chunk_case(c: &ChunkCase) {
    let name = c.name;
    let shell_chunk = record(&mp(&m(&shell())));
    let inputs: Vec<Vec<u8>> = if name.starts_with("truncated chunk") {
        (1..c.chunk.len()).map(|n| c.chunk[..n].to_vec()).collect()
    } else {
        vec![c.chunk.clone()]
    };
    for chunk in inputs {
        let mut det = Detector::new(&strict()).unwrap();
        filter_chunk(&mut det, &shell_chunk, &mut Vec::new()).unwrap();
        let d = new_c_detector(STRICT);
        assert_eq!(c_filter_msgpack(d, &shell_chunk).0, aptnc_status::Unchanged);
        let before = rust_counters(&det);
        let before_c = c_counters(d);
        let mut out = b"untouched".to_vec();
        let res = filter_chunk(&mut det, &chunk, &mut out);
        let (cs, cout) = c_filter_msgpack(d, &chunk);
        match c.annotated {
            None => {
                assert!(res.is_err(), "{name}: walked a malformed chunk ({} bytes)", chunk.len());
                assert_eq!(cs, aptnc_status::InvalidMsgpack, "{name} [C msgpack]");
                assert_eq!(out, b"untouched", "{name}");
                assert_eq!(rust_counters(&det), before, "{name}: a refused chunk moved counters");
                assert_eq!(c_counters(d), before_c, "{name}: a refused chunk moved counters");
            }
            Some(annotated) => {
                let o = res.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(o.annotated > 0, annotated, "{name}");
                let want = if annotated { aptnc_status::Annotated } else { aptnc_status::Unchanged };
                assert_eq!(cs, want, "{name} [C msgpack]");
                if annotated {
                    assert_eq!(cout.as_deref(), Some(&out[..]), "{name}: C and Rust chunks differ");
                    // Everything but the annotated body is the input's bytes.
                    assert!(out.len() > chunk.len());
                    let common = chunk.iter().zip(&out).take_while(|(a, b)| a == b).count();
                    let tail = chunk.iter().rev().zip(out.iter().rev()).take_while(|(a, b)| a == b).count();
                    assert!(
                        common + tail >= chunk.len() - mp(&m(&conn())).len(),
                        "{name}: bytes around the annotated body changed"
                    );
                } else {
                    assert_eq!(out, b"untouched", "{name}");
                }
                check_deltas(name, "chunk", &before, &rust_counters(&det), &c.deltas);
                check_deltas(name, "C msgpack", &before_c, &c_counters(d), &c.deltas);
            }
        }
        unsafe { aptnc_free(d) };
    }
}

// ---------------------------------------------------------------------------
// 64 MiB records.

/// The completing connection, padded to `size` bytes with a member the rule
/// does not read.
fn big_conn(size: usize) -> Vec<u8> {
    let base = bytes(&conn());
    let pad = size - base.len() - b",\"pad\":\"\"".len();
    let mut b = base;
    b.pop();
    b.extend_from_slice(b",\"pad\":\"");
    b.resize(b.len() + pad, b'x');
    b.extend_from_slice(b"\"}");
    assert_eq!(b.len(), size);
    b
}

/// A 64 MiB record: over `max_record_bytes` it is passed through and counted
/// `too_large` without being read or copied; under a raised limit it is read
/// without being copied and annotated with one copy. Returns the number of
/// sub-cases.
fn records_of_64_mib() -> usize {
    let mut figures = Vec::new();
    const SIZE: usize = 64 << 20;
    let rec = big_conn(SIZE);
    let shell_rec = bytes(&shell());
    let over = r#"{"max_record_bytes": 16777216}"#;
    let under = r#"{"max_record_bytes": 134217728}"#;

    // Rust API, over the limit.
    let mut det = Detector::new(&Config::from_json(over).unwrap()).unwrap();
    det.process(&shell_rec).unwrap();
    let before = rust_counters(&det);
    let (got, peak) = peak_during(|| verdict(det.process(&rec)));
    assert_eq!(got, Err(RecordError::TooLarge));
    check_deltas("64 MiB over the limit", "rust", &before, &rust_counters(&det), &err(RecordError::TooLarge));
    assert!(peak < 64 << 10, "64 MiB over the limit: {peak} bytes allocated");

    // Rust API, under a raised limit: read in place, annotated with one copy.
    let mut det = Detector::new(&Config::from_json(under).unwrap()).unwrap();
    det.process(&shell_rec).unwrap();
    let (got, peak) = peak_during(|| match det.process(&rec) {
        Ok(Verdict::Annotated(b)) => Ok(Some(b.len())),
        Ok(Verdict::Unchanged) => Ok(None),
        Err(e) => Err(e),
    });
    let out_len = got.unwrap().expect("the 64 MiB connection completes the sequence");
    assert!(out_len > SIZE);
    assert!(peak < SIZE + SIZE / 2 + (4 << 20), "64 MiB annotated: {peak} bytes at peak (more than one copy)");
    figures.push(format!("annotated {:.1} MiB", peak as f64 / (1 << 20) as f64));
    // Not completing (no shell waiting): no copy at all.
    let mut det = Detector::new(&Config::from_json(under).unwrap()).unwrap();
    let (got, peak) = peak_during(|| verdict(det.process(&rec)));
    assert_eq!(got, Ok(None));
    assert!(peak < 1 << 20, "64 MiB read without a copy: {peak} bytes at peak");
    figures.push(format!("read, not annotated {:.1} KiB", peak as f64 / 1024.0));

    // C ABI, JSON.
    let d = new_c_detector(over);
    c_filter(d, &shell_rec);
    let before = c_counters(d);
    let ((st, out), peak) = peak_during(|| c_filter(d, &rec));
    assert_eq!((st, out), (aptnc_status::TooLarge, None));
    check_deltas("64 MiB over the limit", "C JSON", &before, &c_counters(d), &err(RecordError::TooLarge));
    assert!(peak < 64 << 10, "C JSON: {peak} bytes");
    unsafe { aptnc_free(d) };

    // C ABI, MessagePack: the body is too large, the chunk goes on unchanged.
    let body = mp(&m_plus(&conn(), vec![(s("pad"), M::Str(vec![b'x'; SIZE]))]));
    let chunk = record(&body);
    let d = new_c_detector(over);
    c_filter_msgpack(d, &record(&mp(&m(&shell()))));
    let before = c_counters(d);
    let ((st, out), peak) = peak_during(|| c_filter_msgpack(d, &chunk));
    assert_eq!((st, out), (aptnc_status::Unchanged, None));
    check_deltas("64 MiB over the limit", "C msgpack", &before, &c_counters(d), &err(RecordError::TooLarge));
    assert!(peak < 64 << 10, "C msgpack: {peak} bytes");
    unsafe { aptnc_free(d) };
    // ... and under a raised limit: read in place (no copy of the body) and annotated.
    let d = new_c_detector(under);
    c_filter_msgpack(d, &record(&mp(&m(&shell()))));
    let (st, peak) = peak_during(|| {
        let (mut out, mut len) = (ptr::null(), 0usize);
        unsafe { aptnc_filter_msgpack(d, chunk.as_ptr(), chunk.len(), &mut out, &mut len) }
    });
    assert_eq!(st, aptnc_status::Annotated);
    // The merged body, then the new chunk: two copies (see docs/reliability.md).
    assert!(peak < 2 * chunk.len() + (4 << 20), "C msgpack annotated: {peak} bytes at peak");
    figures.push(format!("chunk annotated {:.1} MiB", peak as f64 / (1 << 20) as f64));
    unsafe { aptnc_free(d) };
    drop(chunk);
    drop(body);

    // CLI: byte-identical, counted, and the process's peak memory bounded.
    let dir = std::env::temp_dir().join(format!("apt-netcon-hostile-big-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = dir.join("out.ndjson");
    let errors = dir.join("err.txt");
    let cfg = dir.join("config.json");
    std::fs::write(&cfg, over).unwrap();
    let input = [shell_rec.as_slice(), b"\n", &rec, b"\n"].concat();
    drop(rec);
    let (hwm_kib, stderr) = run_cli_measured(&cfg, &input, &output, &errors);
    assert!(std::fs::read(&output).unwrap() == input, "CLI: 64 MiB record not passed through byte for byte");
    let (counters, _) = parse_cli_counters(&stderr);
    assert_eq!((counters["records"], counters["too_large"]), (2, 1), "CLI counters: {stderr}");
    // Once a line is surely longer than max_record_bytes (16 MiB) it goes
    // on in pieces as it is read: the CLI holds less than the record.
    assert!(hwm_kib * 1024 < SIZE as u64, "CLI peak RSS {hwm_kib} KiB for a 64 MiB record");
    figures.push(format!("CLI peak RSS {:.1} MiB", hwm_kib as f64 / 1024.0));
    let _ = writeln!(std::io::stderr().lock(), "hostile: 64 MiB record: {}", figures.join(", "));
    let _ = std::fs::remove_dir_all(&dir);
    6
}

/// Run the CLI with `input` on standard input, keeping it open until the
/// output is complete, then read the process's peak RSS (VmHWM, KiB) from
/// /proc before letting it finish. (`wait4`'s ru_maxrss would include this
/// test process's own peak, inherited at spawn.)
fn run_cli_measured(
    cfg: &std::path::Path,
    input: &[u8],
    output: &std::path::Path,
    errors: &std::path::Path,
) -> (u64, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_apt-netcon"))
        .arg("--config")
        .arg(cfg)
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(output).unwrap())
        .stderr(std::fs::File::create(errors).unwrap())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::fs::metadata(output).map(|m| m.len()).unwrap_or(0) < input.len() as u64 {
        assert!(std::time::Instant::now() < deadline, "CLI did not write its output");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    drop(stdin);
    assert!(child.wait().unwrap().success());
    (hwm, std::fs::read_to_string(errors).unwrap())
}

// ---------------------------------------------------------------------------

#[test]
fn hostile_input() {
    let mut n = 0;
    for c in json_cases() {
        run_json_case(&c);
        n += 1;
    }
    for c in chunk_cases() {
        run_chunk_case(&c);
        n += 1;
    }
    n += records_of_64_mib();
    // Written to the real stderr, so it shows without --nocapture.
    let _ = writeln!(std::io::stderr().lock(), "hostile: {n} cases");
}

/// With the byte prefilter on (the default), every case gives the strict
/// run's verdict and bytes, except that a malformed record holding none of
/// the strings a stage requires may pass as `Unchanged` where the strict run
/// counts an error (docs/semantics.md, "Streaming choices"). Through the JSON and MessagePack
/// Rust API, which every other path shares.
type RunFn = fn(&mut Detector, &[u8]) -> Result<Option<Vec<u8>>, RecordError>;

#[test]
fn prefilter_relaxes_only_errors() {
    let mut relaxed = Vec::new();
    for c in json_cases() {
        for msgpack in [false, true] {
            let (input, run): (&[u8], RunFn) = if msgpack {
                (&c.body, |d, b| verdict(d.process_msgpack(b)))
            } else {
                (&c.json, |d, b| verdict(d.process(b)))
            };
            let mut got = Vec::new();
            for config in [strict(), Config::default()] {
                let mut det = Detector::new(&config).unwrap();
                for p in &c.prefix {
                    if msgpack {
                        det.process_msgpack(&mp(&m(&serde_json::from_slice::<Value>(p).unwrap()))).unwrap();
                    } else {
                        det.process(p).unwrap();
                    }
                }
                got.push((run(&mut det, input), det.stats().stage_matches));
            }
            let ((full, full_stages), (fast, fast_stages)) = (&got[0], &got[1]);
            match (full, fast) {
                (Err(e), Ok(None)) => relaxed.push(format!("{} [{}]: {e:?}", c.name, if msgpack { "msgpack" } else { "json" })),
                (a, b) => {
                    assert_eq!(a, b, "{} [msgpack: {msgpack}]: the prefilter changed the verdict", c.name);
                    assert_eq!(full_stages, fast_stages, "{} [msgpack: {msgpack}]: stage matches", c.name);
                }
            }
        }
    }
    let _ = writeln!(std::io::stderr().lock(), "prefilter: passed unchanged instead of an error:\n  {}", relaxed.join("\n  "));
    assert!(!relaxed.is_empty(), "no case shows the documented relaxation");
}

/// Found by the hostile cases: one record with a far-future `@timestamp`
/// (year 9999) used to move the event-time watermark there, after which every
/// shell exec was "late" and no sequence could complete. Stage events more
/// than `max_future` ahead of the system clock are now ignored and counted.
#[test]
fn a_far_future_timestamp_does_not_blind_the_detector() {
    let mut det = Detector::new(&Config::default()).unwrap();
    let future = with(conn(), |v| v["@timestamp"] = json!("9999-12-31T23:59:59.999Z"));
    det.process(&bytes(&shell())).unwrap();
    let _ = det.process(&bytes(&future));
    // A fresh, genuine sequence afterwards still alerts.
    det.process(&bytes(&shell())).unwrap();
    let got = verdict(det.process(&bytes(&conn())));
    assert!(matches!(got, Ok(Some(_))), "a genuine sequence after a year-9999 record did not alert: {:?}", det.stats());
}
