//! Writing an alert ([`merge`]): MessagePack encoding of the alert's values,
//! and the alert's roots merged into a body with the JSON merge's policy (see
//! the module docs of [`crate::format::msgpack`]).

use super::cursor::*;
use super::*;

pub(super) fn write_str(out: &mut Vec<u8>, s: &str) -> Result<(), MergeError> {
    let n = s.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n <= u8::MAX as usize {
        out.extend_from_slice(&[0xd9, n as u8]);
    } else if n <= u16::MAX as usize {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= u32::MAX as usize {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        return Err(MergeError("string too long for MessagePack".into()));
    }
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// A container head: `fix` is the fix-format base (0x80 map, 0x90 array),
/// `m16` the 16-bit marker (the 32-bit one follows it).
pub(super) fn container_head(fix: u8, m16: u8, n: usize) -> Result<([u8; 5], usize), MergeError> {
    let mut h = [0u8; 5];
    let len = if n < 16 {
        h[0] = fix | n as u8;
        1
    } else if n <= u16::MAX as usize {
        h[0] = m16;
        h[1..3].copy_from_slice(&(n as u16).to_be_bytes());
        3
    } else if n <= u32::MAX as usize {
        h[0] = m16 + 1;
        h[1..5].copy_from_slice(&(n as u32).to_be_bytes());
        5
    } else {
        return Err(MergeError("container too large for MessagePack".into()));
    };
    Ok((h, len))
}

pub(super) fn write_array_head(out: &mut Vec<u8>, n: usize) -> Result<(), MergeError> {
    let (h, len) = container_head(0x90, 0xdc, n)?;
    out.extend_from_slice(&h[..len]);
    Ok(())
}

pub(super) fn write_map_head(out: &mut Vec<u8>, n: usize) -> Result<(), MergeError> {
    let (h, len) = container_head(0x80, 0xde, n)?;
    out.extend_from_slice(&h[..len]);
    Ok(())
}

/// Reserve room for a map head whose count is not known yet.
pub(super) fn begin_map(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0u8; 5]);
    at
}

/// Write the head reserved by [`begin_map`] for `n` members, in its smallest
/// encoding (the members written since move back over the unused bytes).
pub(super) fn end_map(out: &mut Vec<u8>, at: usize, n: usize) -> Result<(), MergeError> {
    let (h, len) = container_head(0x80, 0xde, n)?;
    let gap = 5 - len;
    out[at + gap..at + 5].copy_from_slice(&h[..len]);
    out.drain(at..at + gap);
    Ok(())
}

pub(super) fn write_int(out: &mut Vec<u8>, i: i64) {
    if i >= 0 {
        write_uint(out, i as u64);
    } else if i >= -32 {
        out.push(i as i8 as u8);
    } else if i >= i8::MIN as i64 {
        out.extend_from_slice(&[0xd0, i as i8 as u8]);
    } else if i >= i16::MIN as i64 {
        out.push(0xd1);
        out.extend_from_slice(&(i as i16).to_be_bytes());
    } else if i >= i32::MIN as i64 {
        out.push(0xd2);
        out.extend_from_slice(&(i as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&i.to_be_bytes());
    }
}

pub(super) fn write_uint(out: &mut Vec<u8>, u: u64) {
    if u < 128 {
        out.push(u as u8);
    } else if u <= u8::MAX as u64 {
        out.extend_from_slice(&[0xcc, u as u8]);
    } else if u <= u16::MAX as u64 {
        out.push(0xcd);
        out.extend_from_slice(&(u as u16).to_be_bytes());
    } else if u <= u32::MAX as u64 {
        out.push(0xce);
        out.extend_from_slice(&(u as u32).to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&u.to_be_bytes());
    }
}

/// Encode a JSON value as MessagePack (see the module docs).
pub(super) fn write_json(out: &mut Vec<u8>, v: &Value) -> Result<(), MergeError> {
    match v {
        Value::Null => out.push(0xc0),
        Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                write_int(out, i);
            } else if let Some(u) = n.as_u64() {
                write_uint(out, u);
            } else {
                let f = n.as_f64().ok_or_else(|| MergeError(format!("number {n} not representable")))?;
                out.push(0xcb);
                out.extend_from_slice(&f.to_be_bytes());
            }
        }
        Value::String(s) => write_str(out, s)?,
        Value::Array(a) => {
            write_array_head(out, a.len())?;
            for x in a {
                write_json(out, x)?;
            }
        }
        Value::Object(m) => {
            write_map_head(out, m.len())?;
            for (k, x) in m {
                write_str(out, k)?;
                write_json(out, x)?;
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Merging

impl From<Bad> for MergeError {
    fn from(b: Bad) -> Self {
        MergeError(match b {
            Bad::Truncated => "MessagePack body truncated".into(),
            Bad::Reserved => "MessagePack body holds the reserved marker 0xc1".into(),
        })
    }
}

/// One member of a map: its key (when a UTF-8 string) and the byte ranges
/// of its key and value.
pub(super) struct Member<'a> {
    pub(super) key: Option<&'a str>,
    pub(super) raw_key: Range<usize>,
    pub(super) value: Range<usize>,
}

/// Read the `n` members of a map whose head was just read by `cur`.
pub(super) fn members<'a>(cur: &mut Cursor<'a>, n: u32) -> Result<Vec<Member<'a>>, MergeError> {
    let mut v = Vec::with_capacity((n as usize).min(64));
    for _ in 0..n {
        let start = cur.pos;
        let key = match cur.tok()? {
            Tok::Str(k) => std::str::from_utf8(k).ok(),
            Tok::Array(k) => {
                cur.skip_n(k as u64)?;
                None
            }
            Tok::Map(k) => {
                cur.skip_n(2 * k as u64)?;
                None
            }
            _ => None,
        };
        let raw_key = start..cur.pos;
        let value = cur.skip()?;
        v.push(Member { key, raw_key, value });
    }
    Ok(v)
}

/// Write `ann` merged into the value at `range` of `buf`: deep-merged when
/// both are maps, `ann` alone otherwise.
pub(super) fn merge_value(buf: &[u8], range: Range<usize>, ann: Value, out: &mut Vec<u8>) -> Result<(), MergeError> {
    let Value::Object(ann) = ann else {
        return write_json(out, &ann);
    };
    let mut cur = Cursor::at(&buf[..range.end], range.start);
    let n = match cur.tok()? {
        Tok::Map(n) => n,
        _ => return write_json(out, &Value::Object(ann)),
    };
    let entries = members(&mut cur, n)?;
    merge_map(buf, &entries, ann, out)
}

/// Write the map `entries` (ranges into `buf`) with `ann` deep-merged in.
pub(super) fn merge_map(buf: &[u8], entries: &[Member], mut ann: Map<String, Value>, out: &mut Vec<u8>) -> Result<(), MergeError> {
    let at = begin_map(out);
    let mut count = 0usize;
    let mut done: Vec<&str> = Vec::new();
    for e in entries {
        if let Some(k) = e.key {
            if done.contains(&k) {
                continue;
            }
            if let Some(v) = ann.remove(k) {
                let last = entries.iter().rposition(|x| x.key == Some(k)).unwrap_or(0);
                out.extend_from_slice(&buf[e.raw_key.clone()]);
                merge_value(buf, entries[last].value.clone(), v, out)?;
                done.push(k);
                count += 1;
                continue;
            }
        }
        out.extend_from_slice(&buf[e.raw_key.start..e.value.end]);
        count += 1;
    }
    for (k, v) in &ann {
        write_str(out, k)?;
        write_json(out, v)?;
        count += 1;
    }
    end_map(out, at, count)
}

/// Write the alert roots into a MessagePack map body (`out` is cleared
/// first); the policy is [`crate::format::merge::merge`]'s (see the module docs).
pub fn merge(body: &[u8], mut roots: Map<String, Value>, out: &mut Vec<u8>) -> Result<(), MergeError> {
    crate::format::merge::resolve_raw(&mut roots);
    let mut cur = Cursor::new(body);
    let n = match cur.tok()? {
        Tok::Map(n) => n,
        _ => return Err(MergeError("MessagePack body is not a map".into())),
    };
    let entries = members(&mut cur, n)?;
    if !cur.at_end() {
        return Err(MergeError("bytes after the MessagePack body".into()));
    }
    let mut skips = Skips::new(entries.iter().map(|e| e.key), &roots);
    out.clear();
    // The body once, plus room for a typical alert: no doubling of a large body.
    out.reserve(body.len() + 16 * 1024);
    let at = begin_map(out);
    let mut count = 0usize;
    for (i, e) in entries.iter().enumerate() {
        let k = e.key.ok_or_else(|| MergeError("MessagePack body has a key that is not a UTF-8 string".into()))?;
        let skip = skips.skip(i, k);
        if let Some(ann) = roots.remove(k) {
            out.extend_from_slice(&body[e.raw_key.clone()]);
            merge_value(body, e.value.clone(), ann, out)?;
            skips.merged(k);
            count += 1;
            continue;
        }
        if skip {
            continue;
        }
        out.extend_from_slice(&body[e.raw_key.start..e.value.end]);
        count += 1;
    }
    for (k, v) in &roots {
        write_str(out, k)?;
        write_json(out, v)?;
        count += 1;
    }
    end_map(out, at, count)
}
