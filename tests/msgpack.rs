//! Fluent Bit chunks through the public API: `filter_chunk` with a real
//! detector, checked against the JSON path (`Detector::process`).
//!
//! Chunks are built by hand here with `rmp::encode`, and read back with a
//! small `rmp::decode`-based decoder, independent of the module's own cursor.

use apt_netcon::engine::chunk::{filter_chunk, ChunkOutcome};
use apt_netcon::format::msgpack::ChunkError;
use apt_netcon::{Config, Detector, Verdict};
use rmp::decode::RmpRead;
use rmp::Marker;
use serde_json::{json, Map, Value};

#[path = "common/msgpack_of.rs"]
mod msgpack_of;
use msgpack_of::{mp, mp_into};

// ---------------------------------------------------------------------------
// Encoding

/// A record time.
#[derive(Clone, Copy)]
enum Time {
    Event(u32, u32),
    Int(i64),
    Float(f64),
}

fn write_time(out: &mut Vec<u8>, t: Time) {
    match t {
        Time::Event(s, ns) => {
            rmp::encode::write_ext_meta(out, 8, 0).unwrap();
            out.extend_from_slice(&s.to_be_bytes());
            out.extend_from_slice(&ns.to_be_bytes());
        }
        Time::Int(i) => {
            rmp::encode::write_sint(out, i).unwrap();
        }
        Time::Float(f) => rmp::encode::write_f64(out, f).unwrap(),
    }
}

/// A v2 record `[[time, meta], body]` with a raw body.
fn v2_raw(t: Time, meta: &Value, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    rmp::encode::write_array_len(&mut out, 2).unwrap();
    rmp::encode::write_array_len(&mut out, 2).unwrap();
    write_time(&mut out, t);
    mp_into(&mut out, meta);
    out.extend_from_slice(body);
    out
}

fn v2(t: Time, body: &Value) -> Vec<u8> {
    v2_raw(t, &json!({"k": "meta"}), &mp(body))
}

/// A legacy record `[time, body]`.
fn legacy(t: Time, body: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmp::encode::write_array_len(&mut out, 2).unwrap();
    write_time(&mut out, t);
    mp_into(&mut out, body);
    out
}

fn group_start() -> Vec<u8> {
    v2_raw(Time::Event(0xFFFF_FFFF, 0), &json!({"group": 1}), &mp(&json!({"resource": {"a": 1}})))
}

fn group_end() -> Vec<u8> {
    v2_raw(Time::Event(0xFFFF_FFFE, 0), &json!({}), &mp(&json!({})))
}

fn concat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

// ---------------------------------------------------------------------------
// Decoding (with rmp), and record location

fn dec_one(rd: &mut &[u8]) -> Value {
    let m = rmp::decode::read_marker(rd).unwrap();
    let take = |rd: &mut &[u8], n: usize| -> Vec<u8> {
        let (a, b) = rd.split_at(n);
        *rd = b;
        a.to_vec()
    };
    // Lenient (the tests also hold records the detector refuses).
    let str_of = |b: Vec<u8>| Value::String(String::from_utf8_lossy(&b).into_owned());
    match m {
        Marker::FixPos(n) => json!(n),
        Marker::FixNeg(n) => json!(n),
        Marker::Null => Value::Null,
        Marker::True => json!(true),
        Marker::False => json!(false),
        Marker::U8 => json!(rd.read_data_u8().unwrap()),
        Marker::U16 => json!(rd.read_data_u16().unwrap()),
        Marker::U32 => json!(rd.read_data_u32().unwrap()),
        Marker::U64 => json!(rd.read_data_u64().unwrap()),
        Marker::I8 => json!(rd.read_data_i8().unwrap()),
        Marker::I16 => json!(rd.read_data_i16().unwrap()),
        Marker::I32 => json!(rd.read_data_i32().unwrap()),
        Marker::I64 => json!(rd.read_data_i64().unwrap()),
        Marker::F32 => json!(rd.read_data_f32().unwrap() as f64),
        Marker::F64 => json!(rd.read_data_f64().unwrap()),
        Marker::FixStr(n) => str_of(take(rd, n as usize)),
        Marker::Str8 => {
            let n = rd.read_data_u8().unwrap() as usize;
            str_of(take(rd, n))
        }
        Marker::Str16 => {
            let n = rd.read_data_u16().unwrap() as usize;
            str_of(take(rd, n))
        }
        Marker::Str32 => {
            let n = rd.read_data_u32().unwrap() as usize;
            str_of(take(rd, n))
        }
        Marker::FixArray(n) => Value::Array((0..n).map(|_| dec_one(rd)).collect()),
        Marker::Array16 => {
            let n = rd.read_data_u16().unwrap();
            Value::Array((0..n).map(|_| dec_one(rd)).collect())
        }
        Marker::Array32 => {
            let n = rd.read_data_u32().unwrap();
            Value::Array((0..n).map(|_| dec_one(rd)).collect())
        }
        Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => {
            let n = match m {
                Marker::FixMap(n) => n as u32,
                Marker::Map16 => rd.read_data_u16().unwrap() as u32,
                _ => rd.read_data_u32().unwrap(),
            };
            let mut map = Map::new();
            for _ in 0..n {
                let k = match dec_one(rd) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                let v = dec_one(rd);
                map.insert(k, v);
            }
            Value::Object(map)
        }
        Marker::FixExt8 => {
            let ty = rd.read_data_i8().unwrap();
            let d = take(rd, 8);
            json!({"ext": ty, "data": d})
        }
        other => panic!("unexpected marker {other:?} in test data"),
    }
}

/// Decode one whole MessagePack value (no trailing bytes).
fn dec(mut b: &[u8]) -> Value {
    let v = dec_one(&mut b);
    assert!(b.is_empty(), "trailing bytes");
    v
}

/// Split a chunk into (record bytes, body offset within the record).
fn split_records(chunk: &[u8]) -> Vec<(&[u8], usize)> {
    let mut out = Vec::new();
    let mut rest = chunk;
    while !rest.is_empty() {
        let before = rest.len();
        let mut rd = rest;
        assert_eq!(rmp::decode::read_array_len(&mut rd).unwrap(), 2);
        dec_one(&mut rd); // header or time
        let body_at = before - rd.len();
        dec_one(&mut rd); // body
        let len = before - rd.len();
        out.push((&rest[..len], body_at));
        rest = &rest[len..];
    }
    out
}

// ---------------------------------------------------------------------------
// Events

const T0: &str = "2024-05-01T10:00:00.000Z";
const T2: &str = "2024-05-01T10:00:02.000Z";

fn shell() -> Value {
    json!({
        "@timestamp": T0,
        "event": {"category": ["process"], "type": ["start"], "action": "exec", "kind": "event"},
        "host": {"os": {"type": "linux"}, "id": "H1", "name": "web-1"},
        "process": {
            "name": "sh", "pid": 4242, "executable": "/bin/sh",
            "args": ["sh", "-c", "curl x"],
            "parent": {"name": "apt", "entity_id": "P0", "pid": 1},
            "entity_id": "E1"
        },
        "user": {"name": "root"}
    })
}

fn network() -> Value {
    json!({
        "@timestamp": T2,
        "event": {"category": ["network"], "action": "connection_attempted", "type": ["start"]},
        "host": {"os": {"type": "linux"}, "id": "H1"},
        "process": {"parent": {"entity_id": "E1"}, "executable": "/usr/bin/curl", "name": "curl", "pid": 4243},
        "destination": {"ip": "8.8.8.8", "port": 443},
        "message": "fine",
        "score": 1.25,
        "neg": -70000,
        "big": 18446744073709551615u64
    })
}

fn other(i: u64) -> Value {
    json!({"@timestamp": T0, "message": format!("hello {i}"), "event": {"category": ["file"]}, "n": i})
}

/// The network event with dotted keys (mixed with nesting).
fn network_dotted() -> Value {
    json!({
        "@timestamp": T2,
        "event.category": ["network"],
        "event.action": "connection_attempted",
        "event": {"type": ["start"]},
        "host.os.type": "linux",
        "host.id": "H1",
        "process.parent.entity_id": "E1",
        "process.executable": "/usr/bin/curl",
        "destination.ip": "8.8.8.8",
        "rule.name": "stale"
    })
}

fn shell_dotted() -> Value {
    json!({
        "@timestamp": T0,
        "event.category": "process",
        "event.type": "start",
        "event.action": "exec",
        "host": {"os.type": "linux", "id": "H1"},
        "process.name": "sh",
        "process.args": ["sh", "-c", "curl x"],
        "process.parent.name": "apt",
        "process.entity_id": "E1"
    })
}

fn detector() -> Detector {
    Detector::new(&Config::default()).expect("default config loads")
}

/// What the JSON path annotates for these events (None: nothing).
fn json_results(events: &[Value]) -> Vec<Option<Value>> {
    let mut d = detector();
    events
        .iter()
        .map(|e| match d.process(e.to_string().as_bytes()) {
            Ok(Verdict::Annotated(b)) => Some(serde_json::from_slice(b).unwrap()),
            Ok(Verdict::Unchanged) => None,
            Err(e) => panic!("JSON path failed: {e}"),
        })
        .collect()
}

/// Run a chunk; return the outcome and the output (None when untouched).
fn run(chunk: &[u8]) -> (Result<ChunkOutcome, ChunkError>, Option<Vec<u8>>) {
    let mut d = detector();
    let sentinel = b"untouched".to_vec();
    let mut out = sentinel.clone();
    let r = filter_chunk(&mut d, chunk, &mut out);
    if matches!(r, Ok(o) if o.annotated > 0) {
        (r, Some(out))
    } else {
        assert_eq!(out, sentinel, "out touched without an annotation");
        (r, None)
    }
}

/// Check an annotated output against the input chunk: same records, the
/// annotated ones (indexes `which`) with the same prefix and a body equal to
/// `want`; return the annotated bodies as JSON.
fn check_output(input: &[u8], output: &[u8], which: &[usize], want: &[Value]) {
    let a = split_records(input);
    let b = split_records(output);
    assert_eq!(a.len(), b.len());
    let mut w = want.iter();
    for (i, ((ra, ba), (rb, bb))) in a.iter().zip(&b).enumerate() {
        if which.contains(&i) {
            assert_eq!(ba, bb);
            assert_eq!(&ra[..*ba], &rb[..*bb], "record {i}: prefix kept");
            let got = dec(&rb[*bb..]);
            let want = w.next().unwrap();
            assert_eq!(&got, want, "record {i}");
            // the same member order as the JSON path writes
            assert_eq!(got.to_string(), want.to_string());
        } else {
            assert_eq!(ra, rb, "record {i}: byte for byte");
        }
    }
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn msgpack_v2_sequence_annotated_like_json() {
    let chunk = concat(&[
        group_start(),
        v2(Time::Event(1714557600, 5), &other(1)),
        v2(Time::Event(1714557600, 0), &shell()),
        v2(Time::Event(1714557602, 0), &network()),
        v2(Time::Event(1714557603, 0), &other(2)),
        group_end(),
    ]);
    let (r, out) = run(&chunk);
    assert_eq!(r, Ok(ChunkOutcome { records: 4, annotated: 1, errors: 0, group_markers: 2 }));
    let out = out.unwrap();
    let json = json_results(&[other(1), shell(), network(), other(2)]);
    assert!(json[0].is_none() && json[1].is_none() && json[3].is_none());
    let want = json[2].clone().expect("the JSON path annotates the network event");
    check_output(&chunk, &out, &[3], std::slice::from_ref(&want));
    let body = &split_records(&out)[3];
    let v = dec(&body.0[body.1..]);
    assert_eq!(v["rule"]["id"], "eaef8a35-12e0-4ac0-bc14-81c72b6bd27c");
    assert!(v["kibana"]["alert"]["uuid"].as_str().unwrap().len() == 36);
    assert_eq!(v["apt_netcon"]["shell"]["process"]["entity_id"], "E1");
    // original members first, in order, as they were
    let orig = network();
    let keys: Vec<&String> = v.as_object().unwrap().keys().take(orig.as_object().unwrap().len()).collect();
    let want_keys: Vec<&String> = orig.as_object().unwrap().keys().collect();
    assert_eq!(keys, want_keys);
    assert_eq!(v["big"], json!(18446744073709551615u64));
    assert_eq!(v["score"], json!(1.25));
}

#[test]
fn msgpack_legacy_forms_and_times() {
    for (ts, tn) in [
        (Time::Int(1714557600), Time::Int(1714557602)),
        (Time::Float(1714557600.25), Time::Float(1714557602.5)),
        (Time::Event(1714557600, 0), Time::Event(1714557602, 0)),
    ] {
        let chunk = concat(&[legacy(ts, &other(7)), legacy(ts, &shell()), legacy(tn, &network())]);
        let (r, out) = run(&chunk);
        assert_eq!(r, Ok(ChunkOutcome { records: 3, annotated: 1, errors: 0, group_markers: 0 }));
        let want = json_results(&[shell(), network()])[1].clone().unwrap();
        check_output(&chunk, &out.unwrap(), &[2], &[want]);
    }
    // mixed forms in one chunk
    let chunk = concat(&[v2(Time::Int(1), &shell()), legacy(Time::Float(2.0), &network())]);
    let (r, out) = run(&chunk);
    assert_eq!(r.unwrap().annotated, 1);
    let want = json_results(&[shell(), network()])[1].clone().unwrap();
    check_output(&chunk, &out.unwrap(), &[1], &[want]);
}

#[test]
fn msgpack_markers_pass_through() {
    // ext, negative int and float markers, in both forms, around a sequence
    let chunk = concat(&[
        group_start(),
        v2_raw(Time::Int(-1), &json!({}), &mp(&json!({"process": {"entity_id": "E1"}}))),
        legacy(Time::Int(-2), &json!({})),
        v2_raw(Time::Float(-1.0), &json!({}), &mp(&json!({}))),
        v2(Time::Event(1714557600, 0), &shell()),
        group_end(),
        group_start(),
        v2(Time::Event(1714557602, 0), &network()),
        group_end(),
    ]);
    let (r, out) = run(&chunk);
    assert_eq!(r, Ok(ChunkOutcome { records: 2, annotated: 1, errors: 0, group_markers: 7 }));
    let want = json_results(&[shell(), network()])[1].clone().unwrap();
    check_output(&chunk, &out.unwrap(), &[7], &[want]);

    // markers only
    let chunk = concat(&[group_start(), group_end(), group_start(), group_end()]);
    assert_eq!(run(&chunk), (Ok(ChunkOutcome { records: 0, annotated: 0, errors: 0, group_markers: 4 }), None));
    // a marker's body is never evaluated, even if it would complete a sequence
    let chunk = concat(&[
        v2(Time::Event(1714557600, 0), &shell()),
        v2_raw(Time::Event(0xFFFF_FFFF, 0), &json!({}), &mp(&network())),
    ]);
    assert_eq!(run(&chunk).0.unwrap().annotated, 0);
}

#[test]
fn msgpack_no_sequence_leaves_out_untouched() {
    let chunk = concat(&[v2(Time::Int(1), &other(1)), v2(Time::Int(2), &network()), legacy(Time::Int(3), &shell())]);
    assert_eq!(run(&chunk), (Ok(ChunkOutcome { records: 3, annotated: 0, errors: 0, group_markers: 0 }), None));
    assert_eq!(run(b""), (Ok(ChunkOutcome::default()), None));
}

#[test]
fn msgpack_dotted_keys() {
    let chunk = concat(&[v2(Time::Int(1), &shell_dotted()), v2(Time::Int(3), &network_dotted())]);
    let (r, out) = run(&chunk);
    assert_eq!(r.unwrap().annotated, 1);
    let want = json_results(&[shell_dotted(), network_dotted()])[1].clone().unwrap();
    assert!(want.get("rule.name").is_none(), "covered dotted member removed");
    check_output(&chunk, &out.unwrap(), &[1], &[want]);
    // and mixing: dotted shell, nested network
    let chunk = concat(&[v2(Time::Int(1), &shell_dotted()), v2(Time::Int(3), &network())]);
    assert_eq!(run(&chunk).0.unwrap().annotated, 1);
}

#[test]
fn msgpack_two_sequences_in_one_chunk() {
    let mut shell2 = shell();
    shell2["process"]["entity_id"] = json!("E2");
    shell2["host"]["id"] = json!("H2");
    let mut net2 = network();
    net2["process"]["parent"]["entity_id"] = json!("E2");
    net2["host"]["id"] = json!("H2");
    let events = [shell(), shell2.clone(), other(1), network(), net2.clone(), other(2)];
    let chunk: Vec<u8> = concat(&events.iter().map(|e| v2(Time::Int(5), e)).collect::<Vec<_>>());
    let (r, out) = run(&chunk);
    assert_eq!(r, Ok(ChunkOutcome { records: 6, annotated: 2, errors: 0, group_markers: 0 }));
    let json = json_results(&events);
    let want: Vec<Value> = json.into_iter().flatten().collect();
    check_output(&chunk, &out.clone().unwrap(), &[3, 4], &want);
    // the new chunk is itself a valid chunk, and holds no new sequence
    assert_eq!(run(&out.unwrap()).0.unwrap().records, 6);
}

#[test]
fn msgpack_record_errors_counted_and_passed() {
    let mut bad_utf8 = Vec::new();
    // {"process": {"name": <str 0xff>}} — on a field path
    bad_utf8.extend_from_slice(b"\x81\xa7process\x81\xa4name\xa1\xff");
    let chunk = concat(&[
        v2(Time::Int(1), &shell()),
        v2_raw(Time::Int(1), &json!({}), b"\x93\x01\x02\x03"), // body not a map
        v2_raw(Time::Int(1), &json!({}), &bad_utf8),
        v2_raw(Time::Int(1), &json!({}), b"\x81\x01\x02"), // integer key
        v2(Time::Int(2), &network()),
    ]);
    // Every body read (the byte prefilter off): three errors counted.
    let mut d = Detector::new(&Config { prefilter: false, ..Config::default() }).unwrap();
    let mut out = Vec::new();
    let o = filter_chunk(&mut d, &chunk, &mut out).unwrap();
    assert_eq!(o, ChunkOutcome { records: 5, annotated: 1, errors: 3, group_markers: 0 });
    let s = d.stats();
    assert_eq!((s.not_an_object, s.invalid_msgpack, s.records, s.annotated), (1, 2, 5, 1));
    let want = json_results(&[shell(), network()])[1].clone().unwrap();
    check_output(&chunk, &out, &[4], std::slice::from_ref(&want));
    // The default: the two maps holding none of the strings a stage requires
    // pass without being read; the non-map body is still counted. Same bytes.
    let mut d = detector();
    let mut fast = Vec::new();
    let o = filter_chunk(&mut d, &chunk, &mut fast).unwrap();
    assert_eq!(o, ChunkOutcome { records: 5, annotated: 1, errors: 1, group_markers: 0 });
    let s = d.stats();
    assert_eq!((s.not_an_object, s.invalid_msgpack, s.records, s.annotated), (1, 0, 5, 1));
    assert_eq!(fast, out);
}

#[test]
fn msgpack_malformed_chunks_refused_whole() {
    let good = concat(&[v2(Time::Int(1), &shell()), v2(Time::Int(2), &network())]);
    let cases: Vec<Vec<u8>> = vec![
        // wrong ext type for the time
        concat(&[good.clone(), {
            let mut r = b"\x92\x92\xd7\x05".to_vec();
            r.extend_from_slice(&[0; 8]);
            r.extend_from_slice(b"\x80\x80");
            r
        }]),
        // ext of the wrong length
        concat(&[good.clone(), b"\x92\xd6\x00\x00\x00\x00\x01\x80".to_vec()]),
        // not an array of 2
        concat(&[good.clone(), b"\x93\x01\x80\x80".to_vec()]),
        concat(&[b"\x81\xa1a\x01".to_vec(), good.clone()]),
        // header not [time, map]
        concat(&[good.clone(), b"\x92\x92\x01\x91\x01\x80".to_vec()]),
        concat(&[good.clone(), b"\x92\x93\x01\x80\x80\x80".to_vec()]),
        concat(&[good.clone(), b"\x92\x92\xa1t\x80\x80".to_vec()]),
        // a string as legacy time
        concat(&[good.clone(), b"\x92\xa1t\x80".to_vec()]),
        // truncated
        good[..good.len() - 1].to_vec(),
        // trailing junk
        concat(&[good.clone(), vec![0xc1]]),
    ];
    for c in &cases {
        let mut d = detector();
        let mut out = b"kept".to_vec();
        assert_eq!(filter_chunk(&mut d, c, &mut out), Err(ChunkError::Malformed));
        assert_eq!(out, b"kept");
        // nothing was shown to the detector
        assert_eq!(d.stats().records, 0);
    }
    // every truncation: refused unless it ends on a record boundary
    let bounds: Vec<usize> = {
        let mut at = 0;
        let mut v = vec![0];
        for (r, _) in split_records(&good) {
            at += r.len();
            v.push(at);
        }
        v
    };
    for cut in 0..good.len() {
        let (r, _) = run(&good[..cut]);
        assert_eq!(r.is_ok(), bounds.contains(&cut), "cut at {cut}");
    }
}

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn msgpack_fuzzed_chunks_never_panic() {
    let good = concat(&[
        group_start(),
        v2(Time::Event(1714557600, 0), &shell()),
        legacy(Time::Float(1714557601.5), &other(3)),
        v2(Time::Event(1714557602, 0), &network()),
        group_end(),
    ]);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut d = detector();
    let mut out = Vec::new();
    let (mut ok, mut annotated, mut malformed) = (0, 0, 0);
    for i in 0..5000 {
        let mut c = good.clone();
        match rng.below(6) {
            0 => {
                let n = rng.below(c.len() + 1);
                c.truncate(n);
            }
            1 | 2 => {
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(c.len());
                    c[at] ^= 1 << rng.below(8);
                }
            }
            3 => {
                for _ in 0..1 + rng.below(3) {
                    let at = rng.below(c.len());
                    c[at] = rng.next() as u8;
                }
            }
            4 => {
                let at = rng.below(c.len());
                let junk: Vec<u8> = (0..rng.below(8)).map(|_| rng.next() as u8).collect();
                c.splice(at..at, junk);
            }
            _ => {
                let a = rng.below(c.len());
                let b = a + rng.below(c.len() - a);
                c.drain(a..b);
            }
        }
        if i % 500 == 0 {
            d = detector();
        }
        out.clear();
        match filter_chunk(&mut d, &c, &mut out) {
            Ok(o) => {
                ok += 1;
                if o.annotated > 0 {
                    annotated += 1;
                    // the output is a well-formed chunk with the same record count
                    let mut d2 = detector();
                    let mut out2 = Vec::new();
                    let o2 = filter_chunk(&mut d2, &out, &mut out2).expect("output chunk well formed");
                    assert_eq!(o2.records + o2.group_markers, o.records + o.group_markers);
                }
            }
            Err(ChunkError::Malformed) => malformed += 1,
        }
    }
    assert!(ok > 100 && malformed > 100, "ok {ok}, malformed {malformed}");
    assert!(annotated > 0, "some mutations keep the sequence");
}

// ---------------------------------------------------------------------------
// Standalone alerts (max_lateness > 0) in the chunk path

fn c_detector(config: &str) -> *mut apt_netcon::host::ffi::aptnc_detector {
    use apt_netcon::host::ffi::*;
    let mut d = std::ptr::null_mut();
    let st = unsafe { aptnc_init(config.as_ptr(), config.len(), std::ptr::null(), &mut d, std::ptr::null_mut()) };
    assert_eq!(st, aptnc_status::Ok);
    d
}

/// With lateness, the network event arriving before its shell goes on
/// unchanged in its chunk; the alert is appended, as a record of its own,
/// to the chunk whose events move time past the window.
#[test]
fn a_standalone_alert_is_appended_to_the_next_chunk() {
    use apt_netcon::host::ffi::*;
    let d = c_detector(r#"{"max_lateness":"3s"}"#);
    let mut later = other(1);
    later["@timestamp"] = json!("2024-05-01T10:00:09.000Z");
    later["event"] = json!({"category": ["process"], "type": ["start"], "action": "exec"});
    later["host"] = json!({"os": {"type": "linux"}, "id": "H2"});
    later["process"] = json!({"name": "sh", "args": ["sh", "-c", "x"], "parent": {"name": "apt"}, "entity_id": "E9"});
    let first = concat(&[v2(Time::Event(1, 0), &network()), v2(Time::Event(1, 0), &shell())]);
    let (mut out, mut out_len) = (std::ptr::null(), 0usize);
    let st = unsafe { aptnc_filter_msgpack(d, first.as_ptr(), first.len(), &mut out, &mut out_len) };
    assert_eq!(st, aptnc_status::Unchanged, "nothing completes before the window passes");
    let second = v2(Time::Event(2, 0), &later);
    let st = unsafe { aptnc_filter_msgpack(d, second.as_ptr(), second.len(), &mut out, &mut out_len) };
    assert_eq!(st, aptnc_status::Annotated);
    let chunk = unsafe { std::slice::from_raw_parts(out, out_len) }.to_vec();
    let recs = split_records(&chunk);
    assert_eq!(recs.len(), 2, "the chunk's record, then the standalone alert");
    assert_eq!(recs[0].0, &second[..], "the chunk's own record is untouched");
    let alert = dec(&recs[1].0[recs[1].1..]);
    // The network event's document plus the alert, as the JSON path writes it
    // for the time-sorted stream.
    let want = json_results(&[shell(), network()]).pop().unwrap().expect("sorted stream alerts");
    assert_eq!(alert, want);
    let mut st = aptnc_stats { size: std::mem::size_of::<aptnc_stats>() as u32, ..Default::default() };
    assert_eq!(unsafe { aptnc_get_stats(d, &mut st) }, aptnc_status::Ok);
    assert_eq!((st.standalone_alerts, st.annotated, st.late), (1, 0, 0));
    unsafe { aptnc_free(d) };
}

/// aptnc_finish releases what is still held at the end of a stream: JSON
/// alerts as NDJSON in the report, none lost.
#[test]
fn aptnc_finish_hands_over_every_alert_still_held() {
    use apt_netcon::host::ffi::*;
    let d = c_detector(r#"{"max_lateness":"1m"}"#);
    for ev in [network(), shell()] {
        let rec = ev.to_string();
        let (mut out, mut out_len) = (std::ptr::null(), 0usize);
        let st = unsafe { aptnc_filter(d, rec.as_ptr(), rec.len(), &mut out, &mut out_len) };
        assert_eq!(st, aptnc_status::Unchanged);
    }
    let mut r = aptnc_flush_report { size: std::mem::size_of::<aptnc_flush_report>() as u32, ..unsafe { std::mem::zeroed() } };
    assert_eq!(unsafe { aptnc_flush(d, &mut r) }, aptnc_status::Ok);
    assert_eq!((r.alert_count, r.alerts_len, r.held), (0, 0, 2), "still held: the window has not passed");
    assert_eq!(unsafe { aptnc_finish(d, &mut r) }, aptnc_status::Ok);
    assert_eq!((r.alert_count, r.held), (1, 0));
    let text = unsafe { std::slice::from_raw_parts(r.alerts, r.alerts_len) };
    assert_eq!(text.last(), Some(&b'\n'));
    let alert: Value = serde_json::from_slice(&text[..text.len() - 1]).unwrap();
    let want = json_results(&[shell(), network()]).pop().unwrap().unwrap();
    assert_eq!(alert, want);
    // Handed over once.
    assert_eq!(unsafe { aptnc_flush(d, &mut r) }, aptnc_status::Ok);
    assert_eq!(r.alert_count, 0);
    unsafe { aptnc_free(d) };
}

// ---------------------------------------------------------------------------
// A rule pack in the chunk path: one record completing several rules

/// A pack of small rules in a temporary directory (`name`: the test's own): a_port, b_addr, and the
/// three-stage c_seq, all three completed by one network record.
fn pack_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("apt-netcon-msgpack-pack-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a_port.eql"), "network where destination.port == 4444").unwrap();
    std::fs::write(dir.join("b_addr.eql"), "network where destination.address == \"203.0.113.9\"").unwrap();
    std::fs::write(
        dir.join("c_seq.eql"),
        "sequence by host.id [process where process.name == \"stage1\"] [file where file.name == \"stage2\"] [network where destination.port == 4444]",
    )
    .unwrap();
    dir
}

fn pack_events() -> [Value; 3] {
    let host = json!({"id": "h1", "name": "web-1"});
    [
        json!({"@timestamp": "2026-03-14T09:30:00.000Z", "event": {"category": ["process"], "id": "e1"}, "host": host,
               "process": {"name": "stage1", "entity_id": "p1"}}),
        json!({"@timestamp": "2026-03-14T09:30:01.000Z", "event": {"category": ["file"], "id": "e2"}, "host": host,
               "file": {"name": "stage2"}}),
        json!({"@timestamp": "2026-03-14T09:30:02.000Z", "event": {"category": ["network"], "id": "e3"}, "host": host,
               "destination": {"port": 4444, "address": "203.0.113.9", "ip": "203.0.113.9"}}),
    ]
}

/// Through aptnc_filter_msgpack: the chunk's records go on byte for byte,
/// then one alert record per completed rule, in rule order, each the
/// completing record's body with `event.kind: "signal"` and its rule; and
/// the same alerts as the JSON path gives for the same events.
#[test]
fn a_pack_appends_one_alert_per_rule_after_the_chunk() {
    use apt_netcon::host::ffi::*;
    let dir = pack_dir("by-call");
    let config = json!({"rules_dir": dir}).to_string();
    let d = c_detector(&config);
    let ev = pack_events();
    let (mut out, mut out_len) = (std::ptr::null(), 0usize);
    let first = concat(&[v2(Time::Event(1, 0), &ev[0]), v2(Time::Event(2, 0), &ev[1])]);
    let st = unsafe { aptnc_filter_msgpack(d, first.as_ptr(), first.len(), &mut out, &mut out_len) };
    assert_eq!(st, aptnc_status::Unchanged, "nothing completes yet");
    let second = v2(Time::Event(3, 0), &ev[2]);
    let st = unsafe { aptnc_filter_msgpack(d, second.as_ptr(), second.len(), &mut out, &mut out_len) };
    assert_eq!(st, aptnc_status::Annotated);
    let chunk = unsafe { std::slice::from_raw_parts(out, out_len) }.to_vec();
    let recs = split_records(&chunk);
    assert_eq!(recs.len(), 4, "the record, then three alerts");
    assert_eq!(recs[0].0, &second[..], "the record itself is untouched");
    let alerts: Vec<Value> = recs[1..].iter().map(|(r, at)| dec(&r[*at..])).collect();
    let names: Vec<&Value> = alerts.iter().map(|a| &a["rule"]["name"]).collect();
    assert_eq!(names, [&json!("a_port"), &json!("b_addr"), &json!("c_seq")]);
    for a in &alerts {
        assert_eq!(a["event"]["kind"], "signal");
        assert_eq!(a["event"]["id"], "e3");
        assert_eq!(a["destination"], ev[2]["destination"]);
    }
    // The JSON path gives the same documents.
    let mut det = Detector::new(&Config::from_json(&config).unwrap()).unwrap();
    for e in &ev {
        assert!(matches!(det.process(e.to_string().as_bytes()), Ok(Verdict::Unchanged)));
    }
    let json_alerts: Vec<Value> =
        std::iter::from_fn(|| det.take_alert()).map(|a| serde_json::from_slice(&a.bytes).unwrap()).collect();
    assert_eq!(alerts, json_alerts);
    let mut st = aptnc_stats { size: std::mem::size_of::<aptnc_stats>() as u32, ..Default::default() };
    assert_eq!(unsafe { aptnc_get_stats(d, &mut st) }, aptnc_status::Ok);
    assert_eq!((st.records, st.annotated, st.standalone_alerts), (3, 0, 3));
    unsafe { aptnc_free(d) };

    // All three events in one chunk: the alerts follow the chunk's last
    // record (a chunk's alerts are appended after its records).
    let d = c_detector(&config);
    let whole = concat(&[v2(Time::Event(1, 0), &ev[0]), v2(Time::Event(2, 0), &ev[1]), second.clone()]);
    let st = unsafe { aptnc_filter_msgpack(d, whole.as_ptr(), whole.len(), &mut out, &mut out_len) };
    assert_eq!(st, aptnc_status::Annotated);
    let chunk = unsafe { std::slice::from_raw_parts(out, out_len) }.to_vec();
    assert_eq!(&chunk[..whole.len()], &whole[..], "the chunk's records byte for byte");
    let recs = split_records(&chunk[whole.len()..]);
    let alerts: Vec<Value> = recs.iter().map(|(r, at)| dec(&r[*at..])).collect();
    assert_eq!(alerts, json_alerts);
    unsafe { aptnc_free(d) };
    let _ = std::fs::remove_dir_all(&dir);
}

/// A rule pack reads each body of a chunk as the chunk is walked (one walk
/// checks and reads it) and uses those reads once the whole chunk is found
/// well formed. Chunk by chunk it does what the same bodies one at a time
/// do (`Detector::process_msgpack`, which reads each body when it comes):
/// the same outcome, counters, alerts and pack report, for records of every
/// kind — read ahead, a body the read ahead fails on (a string read that is
/// not UTF-8, a body that is not a map, one nested too deep) and that is
/// then read as any other, a body over `max_record_bytes`, group markers —
/// in chunks of more records than are read ahead. A chunk found malformed
/// after records were read ahead shows none of them to the pack.
#[test]
fn a_pack_reading_a_chunk_as_it_walks_it_does_what_one_body_at_a_time_does() {
    let dir = pack_dir("ahead");
    let config = Config::from_json(&json!({"rules_dir": dir, "max_record_bytes": 600}).to_string()).unwrap();
    let ev = pack_events();
    let not_utf8 = {
        // {"event":{"category":"process"},"host":{"id":"h1"},"process":{"name":<0xff 0xfe>}}
        let mut b = mp(&json!({"event": {"category": "process"}, "host": {"id": "h1"}}));
        b[0] = 0x83;
        b.extend_from_slice(b"\xa7process\x81\xa4name\xa2\xff\xfe");
        b
    };
    let mut deep = json!("x");
    for _ in 0..200 {
        deep = json!([deep]);
    }
    let deep = json!({"process": {"name": deep}});
    let big = json!({"event": {"category": ["network"]}, "host": {"id": "h1"}, "destination": {"port": 4444}, "pad": "x".repeat(700)});
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    for i in 0..700u64 {
        let mut e = ev[(i % 3) as usize].clone();
        e["event"]["id"] = json!(format!("e{i}"));
        e["host"]["id"] = json!(format!("h{}", i % 7));
        bodies.push(mp(&e));
        match i % 50 {
            10 => bodies.push(not_utf8.clone()),
            20 => bodies.push(mp(&json!("a string, not a map"))),
            30 => bodies.push(mp(&deep)),
            40 => bodies.push(mp(&big)),
            _ => {}
        }
    }
    // Chunks of 1, 3, 64 and 400 records (the last more than are read
    // ahead), group markers in some.
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut rest = &bodies[..];
    for size in [1usize, 3, 64, 400].iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (now, later) = rest.split_at((*size).min(rest.len()));
        let mut parts: Vec<Vec<u8>> = now.iter().map(|b| v2_raw(Time::Event(1, 0), &json!({}), b)).collect();
        if *size == 64 {
            parts.insert(0, group_start());
            parts.push(group_end());
        }
        chunks.push(concat(&parts));
        rest = later;
    }
    let mut by_chunk = Detector::new(&config).unwrap();
    let mut by_body = Detector::new(&config).unwrap();
    let mut out = Vec::new();
    let mut alerts = (Vec::new(), Vec::new());
    for chunk in &chunks {
        let o = filter_chunk(&mut by_chunk, chunk, &mut out).unwrap();
        let mut want = ChunkOutcome::default();
        for (body, marker) in split_records(chunk).iter().map(|(r, at)| (&r[*at..], r[4..8] == [0xff; 4] || r[4..8] == [0xff, 0xff, 0xff, 0xfe])) {
            if marker {
                want.group_markers += 1;
                continue;
            }
            want.records += 1;
            if by_body.process_msgpack(body).is_err() {
                want.errors += 1;
            }
        }
        assert_eq!(o, want);
        alerts.0.extend(std::iter::from_fn(|| by_chunk.take_alert()).map(|a| a.bytes));
        alerts.1.extend(std::iter::from_fn(|| by_body.take_alert()).map(|a| a.bytes));
    }
    assert_eq!(by_chunk.stats(), by_body.stats());
    assert_eq!(by_chunk.pack().unwrap().report(), by_body.pack().unwrap().report());
    assert_eq!(alerts.0, alerts.1);
    let s = by_chunk.stats();
    assert!(alerts.0.len() >= 3 * 200, "{} alerts", alerts.0.len());
    // (The bodies not UTF-8 and nested too deep, whose read fails ahead,
    // rule nothing out: no rule's detector counts them.)
    assert!(s.not_an_object == 14 && s.too_large == 14 && s.records == 756, "{s:?}");

    // Well-formed records, then a truncated one: the chunk is refused and
    // no record of it reaches the pack.
    let before = by_chunk.stats();
    let mut bad = concat(&chunks[2..4]);
    let last = v2(Time::Event(1, 0), &ev[2]);
    bad.extend_from_slice(&last[..last.len() - 3]);
    assert_eq!(filter_chunk(&mut by_chunk, &bad, &mut out), Err(ChunkError::Malformed));
    assert_eq!(by_chunk.stats(), before);
    assert!(by_chunk.take_alert().is_none());
    let _ = std::fs::remove_dir_all(&dir);
}
