use super::*;
use super::keys::{encode_key, key_combinations, single_key};

/// The digest hashes each value as `keyword()` spells it, slot by slot
/// in record order, whatever the scratch buffer held before.
#[test]
fn digest_is_the_keyword_form() {
    fn by_keyword(f: &Fields, t: i64, limit: usize) -> u128 {
        let mut items: Vec<(Slot, usize, &Scalar)> =
            f.iter().enumerate().filter(|(_, (s, _))| (*s as usize) < limit).map(|(i, (s, v))| (*s, i, v)).collect();
        items.sort_by_key(|(s, i, _)| (*s, *i));
        let mut h = Hasher::new();
        h.write(&t.to_le_bytes());
        for (s, _, v) in items {
            h.write(&s.to_le_bytes());
            match v.keyword() {
                Some(k) => h.write(k.as_bytes()),
                None => h.write(&[0xff]),
            }
        }
        h.finish()
    }
    let mut table = FieldTable::new();
    for name in ["process.pid", "process.args", "host.id", "x.n", "x.u", "x.f", "x.b", "x.o"] {
        table.intern(name);
    }
    let records = [
        r#"{"process":{"pid":4242,"args":["sh","-c","x"]},"host":{"id":"h"}}"#,
        r#"{"x":{"n":-9223372036854775808,"u":18446744073709551615,"f":1.5e300,"b":true,"o":{"k":1}},"process.pid":null}"#,
        r#"{"host.id":["b","a",7],"process":{"args":[]},"x.n":0,"x.f":-0.25}"#,
    ];
    let mut scratch = vec![(9, 9); 40];
    for rec in records {
        let mut f = Fields::new();
        table.extract(rec.as_bytes(), &mut f).unwrap();
        for limit in [0, 3, 8] {
            assert_eq!(digest(&f, 17, limit, &mut scratch), by_keyword(&f, 17, limit), "{rec} {limit}");
        }
    }
}

#[test]
fn single_key_encodes_as_encode_key_or_declines() {
    let mut table = FieldTable::new();
    let (a, b) = (table.intern("host.id"), table.intern("process.parent.entity_id"));
    let records = [
        (r#"{"host":{"id":"h1"},"process":{"parent":{"entity_id":"e1"}}}"#, true),
        (r#"{"host":{"id":["h1"]},"process.parent.entity_id":"e\u00e9"}"#, true),
        (r#"{"host":{"id":["h1",null]},"process":{"parent":{"entity_id":"e1"}}}"#, true),
        (r#"{"host":{"id":["h1","h2"]},"process":{"parent":{"entity_id":"e1"}}}"#, false),
        (r#"{"host":{"id":7},"process":{"parent":{"entity_id":"e1"}}}"#, false),
        (r#"{"host":{"id":"h1"}}"#, false),
    ];
    for (rec, single) in records {
        let mut f = Fields::new();
        table.extract(rec.as_bytes(), &mut f).unwrap();
        let mut got = Vec::new();
        assert_eq!(single_key(&mut got, 1, &f, &[a, b]), single, "{rec}");
        if single {
            let (keys, _) = key_combinations(&f, &[a, b]).unwrap();
            assert_eq!(keys.len(), 1, "{rec}");
            let mut want = Vec::new();
            encode_key(&mut want, 1, &keys[0]);
            assert_eq!(got, want, "{rec}");
        }
    }
}

#[test]
fn lone_string_members_are_recognised() {
    let yes: &[(&[u8], &[u8])] = &[
        (br#"{"log":"2026-03-14 apt-get update"}"#, b"log"),
        (b" {\n \"message\" : \"a \\\"quoted\\\" \\\\ line\" } \r\n", b"message"),
        (br#"{"log":""}"#, b"log"),
    ];
    for (r, k) in yes {
        assert_eq!(lone_string_member_json(r), Some(*k), "{}", String::from_utf8_lossy(r));
    }
    let no: &[&[u8]] = &[
        br#"{"log":"a","stream":"stdout"}"#,
        br#"{"log":{"a":"b"}}"#,
        br#"{"a":"b"}}"#,
        br#"{"log":1}"#,
        br#"{"log":"a\"}"#,
        br#"{"lo\"g":"a"}"#,
        br#"{"log":"a"} "#.split_at(5).0,
        br#"["a"]"#,
        b"",
        b"}",
        br#""}"#,
        br#"{"x":"a" "b"}"#,
    ];
    for r in no {
        assert_eq!(lone_string_member_json(r), None, "{}", String::from_utf8_lossy(r));
    }
    // MessagePack: fixmap, map16, map32 of one string member.
    let mut m = vec![0x81, 0xa3, b'l', b'o', b'g', 0xd9, 3, b'a', b'b', b'c'];
    assert_eq!(lone_string_member_msgpack(&m), Some(&b"log"[..]));
    m.push(0xc0);
    assert_eq!(lone_string_member_msgpack(&m), None, "trailing bytes");
    m.pop();
    m[5] = 0xda;
    assert_eq!(lone_string_member_msgpack(&m), None, "truncated str16");
    assert_eq!(lone_string_member_msgpack(&[0xde, 0, 1, 0xa1, b'k', 0xa0]), Some(&b"k"[..]));
    assert_eq!(lone_string_member_msgpack(&[0xdf, 0, 0, 0, 1, 0xa1, b'k', 0xa0]), Some(&b"k"[..]));
    assert_eq!(lone_string_member_msgpack(&[0x81, 0xa1, b'k', 0x01]), None, "not a string");
    assert_eq!(lone_string_member_msgpack(&[0x82, 0xa1, b'k', 0xa0, 0xa1, b'j', 0xa0]), None);
    assert_eq!(lone_string_member_msgpack(&[]), None);
}

#[test]
fn unparsed_records_warn_once_then_every_n() {
    let mut d = Detector::new(&Config::default()).unwrap();
    assert_eq!(d.take_warning(), None);
    let line = br#"{"log":"{\"@timestamp\":\"2026-03-14T09:30:00Z\",\"process\":{\"name\":\"sh\"}}"}"#;
    for _ in 0..3 {
        assert_eq!(d.process(line), Ok(Verdict::Unchanged));
    }
    let w = d.take_warning().expect("a warning");
    assert!(w.starts_with("3 record(s) look unparsed (a single member `log` holding a string"), "{w}");
    assert!(w.contains("`Parser json`") && w.contains("Key_Name log"), "{w}");
    assert_eq!(d.take_warning(), None, "once");
    for _ in 0..WARNING_EVERY - 1 {
        d.process_msgpack(&[0x81, 0xa3, b'l', b'o', b'g', 0xa1, b'x']).unwrap();
    }
    assert_eq!(d.take_warning(), None, "not yet {} more", WARNING_EVERY);
    d.process(line).unwrap();
    let w = d.take_warning().expect("again");
    assert!(w.starts_with(&format!("{} record(s)", WARNING_EVERY + 3)), "{w}");
    assert_eq!(d.stats().unparsed, WARNING_EVERY + 3);
    // A parsed record, or a single member the rule reads, is not counted.
    d.process(br#"{"@timestamp":"2026-03-14T09:30:00Z"}"#).unwrap();
    d.process(br#"{"message":"hello","host":{"id":"h"}}"#).unwrap();
    assert_eq!(d.stats().unparsed, WARNING_EVERY + 3);
    assert_eq!(d.take_warning(), None);
}

#[test]
fn stage_matches_without_timestamp_warn() {
    let mut d = Detector::new(&Config::default()).unwrap();
    let shell = br#"{"event":{"category":["process"],"type":["start"],"action":"exec"},"host":{"id":"h1","os":{"type":"linux"}},"process":{"name":"sh","args":["sh","-c","x"],"entity_id":"P1","parent":{"name":"apt","entity_id":"A1"}}}"#;
    assert_eq!(d.process(shell), Err(RecordError::BadTimestamp));
    let w = d.take_warning().expect("a warning");
    assert!(w.starts_with("1 stage match(es) had no usable @timestamp"), "{w}");
    assert!(w.contains("Time_Key @timestamp") && w.contains("Time_Keep On"), "{w}");
    assert_eq!(d.process(shell), Err(RecordError::BadTimestamp));
    assert_eq!(d.take_warning(), None, "once");
    assert_eq!(d.stats().unparsed, 0);
}
