//! Fluent Bit chunks: records located (v2 and legacy forms, group markers),
//! a malformed chunk refused as a whole (see the module docs of
//! [`crate::format::msgpack`], "Walking a chunk").

use super::cursor::*;
use super::*;

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
pub(super) enum Form {
    /// `[[time, {metadata}], {body}]`
    V2,
    /// `[time, {body}]`
    Legacy,
}

/// One record of a chunk, located. (`form` and `whole` serve tests and
/// debugging.)
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct Record {
    pub(super) form: Form,
    /// A group start or end marker.
    pub(crate) marker: bool,
    /// The body's bytes (always the record's last bytes).
    pub(crate) body: Range<usize>,
    /// The whole record.
    pub(super) whole: Range<usize>,
}

/// Read a record time; true when it marks a group start or end (see the
/// module docs).
pub(super) fn read_time(cur: &mut Cursor) -> Result<bool, ChunkError> {
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

/// Locate the record starting at `cur`'s position, its body first offered
/// to `read` (whether the record is a group marker, and where the body
/// starts in the chunk): `Some(end)` when it read the body whole, well
/// formed (else the body is skipped here).
fn read_record(cur: &mut Cursor, read: &mut impl FnMut(bool, usize) -> Option<usize>) -> Result<Record, ChunkError> {
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
    let body = match read(marker, cur.pos) {
        Some(end) => {
            let body = cur.pos..end;
            cur.pos = end;
            body
        }
        None => cur.skip()?,
    };
    Ok(Record { form, marker, whole: start..body.end, body })
}

/// Locate every record of a chunk, or refuse it.
pub(crate) fn read_chunk(chunk: &[u8]) -> Result<Vec<Record>, ChunkError> {
    read_chunk_with(chunk, |_, _| None)
}

/// [`read_chunk`], each body offered first to `read` (whether its record
/// is a group marker, and where the body starts in `chunk`), which returns
/// where the body ends when it has read it whole and well formed (as
/// [`super::extract::extract_prefix`] does); the walk skips the others
/// itself. So one walk of a body both reads and checks it.
pub(crate) fn read_chunk_with(chunk: &[u8], mut read: impl FnMut(bool, usize) -> Option<usize>) -> Result<Vec<Record>, ChunkError> {
    let mut cur = Cursor::new(chunk);
    let mut recs = Vec::new();
    while !cur.at_end() {
        recs.push(read_record(&mut cur, &mut read)?);
    }
    Ok(recs)
}
