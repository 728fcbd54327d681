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
//! The policy is [`crate::annotate::merge`]'s, point for point: the body's
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
//! # Walking a chunk ([`filter_chunk`])
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
//! counted by the detector and in [`ChunkOutcome::errors`] and the record goes
//! on unchanged while the walk continues.
//!
//! When no record is annotated, `out` is not touched and nothing is copied.
//! Otherwise `out` is cleared and receives the new chunk: every byte of the
//! input, except the bodies of the annotated records (whose outer array,
//! time and metadata stay the original bytes).

use crate::annotate::{MergeError, Skips};
use crate::event::{ExtractError, FieldTable, Fields, Scalar};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::ops::Range;

/// Most containers (maps and arrays, the body map included) nested along a
/// field path that [`extract`] descends before giving up with
/// [`ExtractError::TooDeep`].
pub const MAX_DEPTH: usize = 128;

// ---------------------------------------------------------------------------
// The cursor

/// Why bytes could not be read as MessagePack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bad {
    /// The input ends inside a value.
    Truncated,
    /// The reserved marker 0xc1.
    Reserved,
}

/// One MessagePack value's head. Containers carry their element count; the
/// elements follow in the input.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(&'a [u8]),
    Bin(&'a [u8]),
    Ext(i8, &'a [u8]),
    Array(u32),
    Map(u32),
}

/// A read position in a byte slice.
#[derive(Debug, Clone)]
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    fn at(buf: &'a [u8], pos: usize) -> Self {
        Cursor { buf, pos }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Bad> {
        if self.buf.len() - self.pos < n {
            return Err(Bad::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, Bad> {
        Ok(self.take(1)?[0])
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], Bad> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn len8(&mut self) -> Result<usize, Bad> {
        Ok(self.u8()? as usize)
    }

    fn len16(&mut self) -> Result<usize, Bad> {
        Ok(u16::from_be_bytes(self.be()?) as usize)
    }

    fn len32(&mut self) -> Result<usize, Bad> {
        Ok(u32::from_be_bytes(self.be()?) as usize)
    }

    fn ext(&mut self, len: usize) -> Result<Tok<'a>, Bad> {
        let ty = self.u8()? as i8;
        Ok(Tok::Ext(ty, self.take(len)?))
    }

    /// Read one value's head (for strings, bin and ext: the whole value).
    fn tok(&mut self) -> Result<Tok<'a>, Bad> {
        let m = self.u8()?;
        Ok(match m {
            0x00..=0x7f => Tok::Int(m as i64),
            0x80..=0x8f => Tok::Map((m & 0x0f) as u32),
            0x90..=0x9f => Tok::Array((m & 0x0f) as u32),
            0xa0..=0xbf => Tok::Str(self.take((m & 0x1f) as usize)?),
            0xc0 => Tok::Nil,
            0xc1 => return Err(Bad::Reserved),
            0xc2 => Tok::Bool(false),
            0xc3 => Tok::Bool(true),
            0xc4 => {
                let n = self.len8()?;
                Tok::Bin(self.take(n)?)
            }
            0xc5 => {
                let n = self.len16()?;
                Tok::Bin(self.take(n)?)
            }
            0xc6 => {
                let n = self.len32()?;
                Tok::Bin(self.take(n)?)
            }
            0xc7 => {
                let n = self.len8()?;
                self.ext(n)?
            }
            0xc8 => {
                let n = self.len16()?;
                self.ext(n)?
            }
            0xc9 => {
                let n = self.len32()?;
                self.ext(n)?
            }
            0xca => Tok::Float(f32::from_be_bytes(self.be()?) as f64),
            0xcb => Tok::Float(f64::from_be_bytes(self.be()?)),
            0xcc => Tok::Int(self.u8()? as i64),
            0xcd => Tok::Int(u16::from_be_bytes(self.be()?) as i64),
            0xce => Tok::Int(u32::from_be_bytes(self.be()?) as i64),
            0xcf => {
                let u = u64::from_be_bytes(self.be()?);
                match i64::try_from(u) {
                    Ok(i) => Tok::Int(i),
                    Err(_) => Tok::UInt(u),
                }
            }
            0xd0 => Tok::Int(self.u8()? as i8 as i64),
            0xd1 => Tok::Int(i16::from_be_bytes(self.be()?) as i64),
            0xd2 => Tok::Int(i32::from_be_bytes(self.be()?) as i64),
            0xd3 => Tok::Int(i64::from_be_bytes(self.be()?)),
            0xd4 => self.ext(1)?,
            0xd5 => self.ext(2)?,
            0xd6 => self.ext(4)?,
            0xd7 => self.ext(8)?,
            0xd8 => self.ext(16)?,
            0xd9 => {
                let n = self.len8()?;
                Tok::Str(self.take(n)?)
            }
            0xda => {
                let n = self.len16()?;
                Tok::Str(self.take(n)?)
            }
            0xdb => {
                let n = self.len32()?;
                Tok::Str(self.take(n)?)
            }
            0xdc => Tok::Array(self.len16()? as u32),
            0xdd => Tok::Array(self.len32()? as u32),
            0xde => Tok::Map(self.len16()? as u32),
            0xdf => Tok::Map(self.len32()? as u32),
            0xe0..=0xff => Tok::Int(m as i8 as i64),
        })
    }

    /// Skip `n` whole values. Iterative: any nesting depth, no allocation.
    /// Terminates quickly on hostile counts, as every value takes a byte.
    ///
    /// Only the lengths are read: one table lookup per value for the
    /// fixed-size formats, a length field for the others, and no [`Tok`]
    /// built. The position may run past the end inside the loop (a length
    /// pointing beyond the input); the next read, or the final check, then
    /// reports the truncation, as reading each value whole would.
    fn skip_n(&mut self, n: u64) -> Result<(), Bad> {
        let buf = self.buf;
        let mut pos = self.pos;
        let mut remaining = n;
        let len_at = |pos: usize, w: usize| -> Result<usize, Bad> {
            let b = buf.get(pos..pos + w).ok_or(Bad::Truncated)?;
            Ok(b.iter().fold(0usize, |a, &x| a << 8 | x as usize))
        };
        while remaining > 0 {
            remaining -= 1;
            let m = *buf.get(pos).ok_or(Bad::Truncated)?;
            pos += 1;
            match SKIP[m as usize] {
                // fixed size: the bytes after the marker
                k @ 0..=17 => pos += k as usize,
                FIXSTR => pos += (m & 0x1f) as usize,
                FIXMAP => remaining += 2 * (m & 0x0f) as u64,
                FIXARRAY => remaining += (m & 0x0f) as u64,
                // str, bin: a length of 1, 2 or 4 bytes, then the data
                LEN8 => pos += 1 + len_at(pos, 1)?,
                LEN16 => pos += 2 + len_at(pos, 2)?,
                LEN32 => pos += 4 + len_at(pos, 4)?,
                // ext: a length, a type byte, then the data
                EXT8 => pos += 2 + len_at(pos, 1)?,
                EXT16 => pos += 3 + len_at(pos, 2)?,
                EXT32 => pos += 5 + len_at(pos, 4)?,
                ARRAY16 => {
                    remaining += len_at(pos, 2)? as u64;
                    pos += 2;
                }
                ARRAY32 => {
                    remaining += len_at(pos, 4)? as u64;
                    pos += 4;
                }
                MAP16 => {
                    remaining += 2 * len_at(pos, 2)? as u64;
                    pos += 2;
                }
                MAP32 => {
                    remaining += 2 * len_at(pos, 4)? as u64;
                    pos += 4;
                }
                _ => return Err(Bad::Reserved),
            }
        }
        if pos > buf.len() {
            return Err(Bad::Truncated);
        }
        self.pos = pos;
        Ok(())
    }

    /// Skip one whole value, returning its byte range.
    fn skip(&mut self) -> Result<Range<usize>, Bad> {
        let start = self.pos;
        self.skip_n(1)?;
        Ok(start..self.pos)
    }
}

// What [`Cursor::skip_n`] does with each marker byte: a number up to 17 is
// the count of bytes that follow the marker; the others name a variable
// format.
const FIXSTR: u8 = 0x20;
const FIXMAP: u8 = 0x21;
const FIXARRAY: u8 = 0x22;
const LEN8: u8 = 0x23;
const LEN16: u8 = 0x24;
const LEN32: u8 = 0x25;
const EXT8: u8 = 0x26;
const EXT16: u8 = 0x27;
const EXT32: u8 = 0x28;
const ARRAY16: u8 = 0x29;
const ARRAY32: u8 = 0x2a;
const MAP16: u8 = 0x2b;
const MAP32: u8 = 0x2c;
const RESERVED: u8 = 0xff;

static SKIP: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut m = 0usize;
    while m < 256 {
        t[m] = match m as u8 {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => 0,
            0x80..=0x8f => FIXMAP,
            0x90..=0x9f => FIXARRAY,
            0xa0..=0xbf => FIXSTR,
            0xc1 => RESERVED,
            0xc4 | 0xd9 => LEN8,
            0xc5 | 0xda => LEN16,
            0xc6 | 0xdb => LEN32,
            0xc7 => EXT8,
            0xc8 => EXT16,
            0xc9 => EXT32,
            0xca => 4,
            0xcb => 8,
            0xcc | 0xd0 => 1,
            0xcd | 0xd1 => 2,
            0xce | 0xd2 => 4,
            0xcf | 0xd3 => 8,
            0xd4 => 2,
            0xd5 => 3,
            0xd6 => 5,
            0xd7 => 9,
            0xd8 => 17,
            0xdc => ARRAY16,
            0xdd => ARRAY32,
            0xde => MAP16,
            0xdf => MAP32,
        };
        m += 1;
    }
    t
};

// ---------------------------------------------------------------------------
// Reading a body

/// Read the table's fields from one MessagePack map (a record body) into
/// `out` (cleared first). See the module docs for the mapping of types.
pub fn extract<'a>(table: &FieldTable, body: &'a [u8], out: &mut Fields<'a>) -> Result<(), ExtractError> {
    out.clear();
    let mut cur = Cursor::new(body);
    let n = match cur.tok() {
        Ok(Tok::Map(n)) => n,
        Ok(_) => return Err(ExtractError::NotAnObject),
        Err(_) => return Err(ExtractError::InvalidMsgpack),
    };
    let mut reader = Reader { table, cur, out };
    reader.map(FieldTable::ROOT, n, 1)?;
    if !reader.cur.at_end() {
        return Err(ExtractError::InvalidMsgpack);
    }
    Ok(())
}

impl From<Bad> for ExtractError {
    fn from(_: Bad) -> Self {
        ExtractError::InvalidMsgpack
    }
}

struct Reader<'t, 'f, 'a> {
    table: &'t FieldTable,
    cur: Cursor<'a>,
    out: &'f mut Fields<'a>,
}

fn utf8(b: &[u8]) -> Result<&str, ExtractError> {
    std::str::from_utf8(b).map_err(|_| ExtractError::InvalidMsgpack)
}

impl<'t, 'f, 'a> Reader<'t, 'f, 'a> {
    /// Read the `n` members of a map whose head was just read, at trie node
    /// `node`; `depth` counts the containers open, this map included.
    fn map(&mut self, node: u32, n: u32, depth: usize) -> Result<(), ExtractError> {
        for _ in 0..n {
            let key = self.key()?;
            // The key's bytes against the table: a key that leads somewhere
            // equals the table's own (UTF-8) segments joined by dots, so
            // only the others need their UTF-8 checked — an ASCII test,
            // for nearly all.
            match self.table.walk_bytes(node, key) {
                Some(child) => self.value(child, depth)?,
                None => {
                    if !key.is_ascii() {
                        utf8(key)?;
                    }
                    self.skip_one()?
                }
            }
        }
        Ok(())
    }

    /// A map key: a string's bytes. The fixstr format (keys of up to 31
    /// bytes, nearly all) is read here, the others by [`Cursor::tok`].
    #[inline(always)]
    fn key(&mut self) -> Result<&'a [u8], ExtractError> {
        let buf = self.cur.buf;
        let pos = self.cur.pos;
        if let Some(&m) = buf.get(pos) {
            if m & 0xe0 == 0xa0 {
                let end = pos + 1 + (m & 0x1f) as usize;
                let k = buf.get(pos + 1..end).ok_or(ExtractError::InvalidMsgpack)?;
                self.cur.pos = end;
                return Ok(k);
            }
        }
        match self.cur.tok()? {
            Tok::Str(k) => Ok(k),
            _ => Err(ExtractError::InvalidMsgpack),
        }
    }

    /// Skip one value no field is read from: a scalar of fixed size, a
    /// fixstr or an empty container here, anything else by [`Cursor::skip_n`].
    #[inline(always)]
    fn skip_one(&mut self) -> Result<(), ExtractError> {
        let buf = self.cur.buf;
        let pos = self.cur.pos;
        if let Some(&m) = buf.get(pos) {
            let next = match SKIP[m as usize] {
                k @ 0..=17 => pos + 1 + k as usize,
                FIXSTR => pos + 1 + (m & 0x1f) as usize,
                FIXMAP | FIXARRAY if m & 0x0f == 0 => pos + 1,
                _ => return Ok(self.cur.skip_n(1)?),
            };
            if next <= buf.len() {
                self.cur.pos = next;
                return Ok(());
            }
        }
        Ok(self.cur.skip_n(1)?)
    }

    fn push(&mut self, node: u32, v: Scalar<'a>) {
        if let Some(slot) = self.table.node_slot(node) {
            self.out.push(slot, v);
        }
    }

    /// Read one value at trie node `node`, inside `depth` open containers.
    fn value(&mut self, node: u32, depth: usize) -> Result<(), ExtractError> {
        match self.cur.tok()? {
            Tok::Nil => self.push(node, Scalar::Null),
            Tok::Bool(b) => self.push(node, Scalar::Bool(b)),
            Tok::Int(i) => self.push(node, Scalar::Int(i)),
            Tok::UInt(u) => self.push(node, Scalar::UInt(u)),
            Tok::Float(f) => self.push(node, Scalar::Float(f)),
            Tok::Str(s) => {
                let s = utf8(s)?;
                self.push(node, Scalar::Str(Cow::Borrowed(s)));
            }
            Tok::Bin(_) | Tok::Ext(..) => self.push(node, Scalar::Object),
            Tok::Array(n) => {
                if depth >= MAX_DEPTH {
                    return Err(ExtractError::TooDeep);
                }
                for _ in 0..n {
                    self.value(node, depth + 1)?;
                }
            }
            Tok::Map(n) => {
                if depth >= MAX_DEPTH {
                    return Err(ExtractError::TooDeep);
                }
                self.push(node, Scalar::Object);
                if self.table.node_has_children(node) {
                    self.map(node, n, depth + 1)?;
                } else {
                    self.cur.skip_n(2 * n as u64)?;
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Writing

fn write_str(out: &mut Vec<u8>, s: &str) -> Result<(), MergeError> {
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
fn container_head(fix: u8, m16: u8, n: usize) -> Result<([u8; 5], usize), MergeError> {
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

fn write_array_head(out: &mut Vec<u8>, n: usize) -> Result<(), MergeError> {
    let (h, len) = container_head(0x90, 0xdc, n)?;
    out.extend_from_slice(&h[..len]);
    Ok(())
}

fn write_map_head(out: &mut Vec<u8>, n: usize) -> Result<(), MergeError> {
    let (h, len) = container_head(0x80, 0xde, n)?;
    out.extend_from_slice(&h[..len]);
    Ok(())
}

/// Reserve room for a map head whose count is not known yet.
fn begin_map(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0u8; 5]);
    at
}

/// Write the head reserved by [`begin_map`] for `n` members, in its smallest
/// encoding (the members written since move back over the unused bytes).
fn end_map(out: &mut Vec<u8>, at: usize, n: usize) -> Result<(), MergeError> {
    let (h, len) = container_head(0x80, 0xde, n)?;
    let gap = 5 - len;
    out[at + gap..at + 5].copy_from_slice(&h[..len]);
    out.drain(at..at + gap);
    Ok(())
}

fn write_int(out: &mut Vec<u8>, i: i64) {
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

fn write_uint(out: &mut Vec<u8>, u: u64) {
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
fn write_json(out: &mut Vec<u8>, v: &Value) -> Result<(), MergeError> {
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
struct Member<'a> {
    key: Option<&'a str>,
    raw_key: Range<usize>,
    value: Range<usize>,
}

/// Read the `n` members of a map whose head was just read by `cur`.
fn members<'a>(cur: &mut Cursor<'a>, n: u32) -> Result<Vec<Member<'a>>, MergeError> {
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
fn merge_value(buf: &[u8], range: Range<usize>, ann: Value, out: &mut Vec<u8>) -> Result<(), MergeError> {
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
fn merge_map(buf: &[u8], entries: &[Member], mut ann: Map<String, Value>, out: &mut Vec<u8>) -> Result<(), MergeError> {
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
/// first); the policy is [`crate::annotate::merge`]'s (see the module docs).
pub fn merge(body: &[u8], roots: Map<String, Value>, out: &mut Vec<u8>) -> Result<(), MergeError> {
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
    let mut roots = roots;
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

// ---------------------------------------------------------------------------
// Chunks

/// What [`filter_chunk`] did with a Fluent Bit chunk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkOutcome {
    /// Records (excluding group markers) seen in the chunk.
    pub records: u64,
    /// Records annotated; when 0, `out` is untouched and the chunk goes on as it was.
    pub annotated: u64,
    /// Records that could not be evaluated (counted in the detector's stats) and went on unchanged.
    pub errors: u64,
    /// Group start/end markers passed through.
    pub group_markers: u64,
}

/// Why a chunk could not be walked at all (it then goes on unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// The chunk is not a sequence of well-formed records (truncated, wrong
    /// shape, wrong ext type for EventTime).
    Malformed,
}

impl From<Bad> for ChunkError {
    fn from(_: Bad) -> Self {
        ChunkError::Malformed
    }
}

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkError::Malformed => f.write_str("malformed Fluent Bit chunk"),
        }
    }
}

impl std::error::Error for ChunkError {}

/// The record layouts of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `[[time, {metadata}], {body}]`
    V2,
    /// `[time, {body}]`
    Legacy,
}

/// One record of a chunk, located. (`form` and `whole` serve tests and
/// debugging.)
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
struct Record {
    form: Form,
    /// A group start or end marker.
    marker: bool,
    /// The body's bytes (always the record's last bytes).
    body: Range<usize>,
    /// The whole record.
    whole: Range<usize>,
}

/// Read a record time; true when it marks a group start or end (see the
/// module docs).
fn read_time(cur: &mut Cursor) -> Result<bool, ChunkError> {
    let secs: i32 = match cur.tok()? {
        Tok::Ext(0, d) if d.len() == 8 => u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as i32,
        Tok::Int(i) => i as i32,
        Tok::UInt(u) => u as i32,
        // Whole seconds, as C's cast would give them; a float beyond i64
        // (or NaN) is no marker.
        Tok::Float(f) if f.is_finite() && f.abs() < 9.2e18 => f.trunc() as i64 as i32,
        Tok::Float(_) => 0,
        _ => return Err(ChunkError::Malformed),
    };
    Ok(secs == -1 || secs == -2)
}

/// Locate the record starting at `cur`'s position.
fn read_record(cur: &mut Cursor) -> Result<Record, ChunkError> {
    let start = cur.pos;
    if cur.tok()? != Tok::Array(2) {
        return Err(ChunkError::Malformed);
    }
    let head = cur.clone();
    let (form, marker) = match cur.tok()? {
        Tok::Array(2) => {
            let marker = read_time(cur)?;
            match cur.tok()? {
                Tok::Map(n) => cur.skip_n(2 * n as u64)?,
                _ => return Err(ChunkError::Malformed),
            }
            (Form::V2, marker)
        }
        Tok::Array(_) => return Err(ChunkError::Malformed),
        _ => {
            *cur = head;
            (Form::Legacy, read_time(cur)?)
        }
    };
    let body = cur.skip()?;
    Ok(Record { form, marker, whole: start..body.end, body })
}

/// Locate every record of a chunk, or refuse it.
fn read_chunk(chunk: &[u8]) -> Result<Vec<Record>, ChunkError> {
    let mut cur = Cursor::new(chunk);
    let mut recs = Vec::new();
    while !cur.at_end() {
        recs.push(read_record(&mut cur)?);
    }
    Ok(recs)
}

/// Run every record of a Fluent Bit chunk (records concatenated; v2
/// `[[EventTime, {meta}], {body}]` or legacy `[EventTime, {body}]`; integer or
/// float times; group markers passed through) through the detector. When any
/// record is annotated, `out` receives the whole new chunk, in which only the
/// annotated bodies differ.
///
/// On `Err(ChunkError::Malformed)` no record was shown to the detector and
/// `out` is untouched: pass the chunk on unchanged. See the module docs.
pub fn filter_chunk(
    det: &mut crate::Detector,
    chunk: &[u8],
    out: &mut Vec<u8>,
) -> Result<ChunkOutcome, ChunkError> {
    let recs = read_chunk(chunk)?;
    let mut outcome = ChunkOutcome::default();
    // Bytes of `chunk` already copied into `out` (once building).
    let mut copied = 0usize;
    for r in &recs {
        if r.marker {
            outcome.group_markers += 1;
            continue;
        }
        outcome.records += 1;
        match det.process_msgpack(&chunk[r.body.clone()]) {
            Ok(crate::Verdict::Unchanged) => {}
            Ok(crate::Verdict::Annotated(bytes)) => {
                if outcome.annotated == 0 {
                    out.clear();
                    // The chunk with this body replaced (it grows if more follow).
                    out.reserve(chunk.len() - r.body.len() + bytes.len() + 1024);
                }
                outcome.annotated += 1;
                out.extend_from_slice(&chunk[copied..r.body.start]);
                out.extend_from_slice(bytes);
                copied = r.body.end;
            }
            Err(_) => outcome.errors += 1,
        }
    }
    if outcome.annotated > 0 {
        out.extend_from_slice(&chunk[copied..]);
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
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
        deep.extend(std::iter::repeat(0x91).take(200));
        deep.push(0x01);
        assert_eq!(extract(&t, &deep, &mut f), Err(ExtractError::TooDeep));
        // ... and exactly at the limit
        let mut ok = b"\x81\xa1a".to_vec();
        ok.extend(std::iter::repeat(0x91).take(MAX_DEPTH - 1));
        ok.push(0x01);
        assert_eq!(extract(&t, &ok, &mut f), Ok(()));
        assert_eq!(strings(&f, 0), vec!["1"]);
        // deep in a skipped member: fine, and no stack used
        let mut skipped = b"\x81\xa1z".to_vec();
        skipped.extend(std::iter::repeat(0x91).take(1_000_000));
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
        arrays.extend(std::iter::repeat(0x91).take(500));
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
        crate::annotate::merge(v.to_string().as_bytes(), roots(), &mut jo).unwrap();
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

    /// A deterministic xorshift64 generator.
    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    /// One to three random mutations of `b`: a bit flipped, a byte
    /// replaced, or the body truncated.
    fn mutate(b: &mut Vec<u8>, rnd: &mut impl FnMut() -> u64) {
        for _ in 0..1 + rnd() % 3 {
            if b.is_empty() {
                break;
            }
            let at = (rnd() % b.len() as u64) as usize;
            match rnd() % 3 {
                0 => b[at] ^= 1 << (rnd() % 8),
                1 => b[at] = rnd() as u8,
                _ => b.truncate(at),
            }
        }
    }

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
