//! MessagePack: an encoder for JSON values and Fluent Bit chunk builders.

use serde_json::Value;

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
