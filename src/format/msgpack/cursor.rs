//! The byte cursor over MessagePack: one token at a time, and values skipped
//! in place (iteratively, from a table of what each marker byte takes).

use super::*;

/// Why bytes could not be read as MessagePack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bad {
    /// The input ends inside a value.
    Truncated,
    /// The reserved marker 0xc1.
    Reserved,
}

/// One MessagePack value's head. Containers carry their element count; the
/// elements follow in the input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Tok<'a> {
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
pub(super) struct Cursor<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    pub(super) fn at(buf: &'a [u8], pos: usize) -> Self {
        Cursor { buf, pos }
    }

    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], Bad> {
        if self.buf.len() - self.pos < n {
            return Err(Bad::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(super) fn u8(&mut self) -> Result<u8, Bad> {
        Ok(self.take(1)?[0])
    }

    pub(super) fn be<const N: usize>(&mut self) -> Result<[u8; N], Bad> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub(super) fn len8(&mut self) -> Result<usize, Bad> {
        Ok(self.u8()? as usize)
    }

    pub(super) fn len16(&mut self) -> Result<usize, Bad> {
        Ok(u16::from_be_bytes(self.be()?) as usize)
    }

    pub(super) fn len32(&mut self) -> Result<usize, Bad> {
        Ok(u32::from_be_bytes(self.be()?) as usize)
    }

    pub(super) fn ext(&mut self, len: usize) -> Result<Tok<'a>, Bad> {
        let ty = self.u8()? as i8;
        Ok(Tok::Ext(ty, self.take(len)?))
    }

    /// Read one value's head (for strings, bin and ext: the whole value).
    pub(super) fn tok(&mut self) -> Result<Tok<'a>, Bad> {
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
    /// Only the lengths are read: a fixstr's from its marker, one table
    /// lookup ([`FIXED`]) per value for the other fixed-size formats, a
    /// length field for the rest, and no [`Tok`] built. The position may
    /// run past the end inside the loop (a length pointing beyond the
    /// input); the next read, or the final check, then reports the
    /// truncation, as reading each value whole would.
    pub(super) fn skip_n(&mut self, n: u64) -> Result<(), Bad> {
        let buf = self.buf;
        let mut pos = self.pos;
        let mut remaining = n;
        let len_at = |pos: usize, w: usize| -> Result<usize, Bad> {
            let b = buf.get(pos..pos + w).ok_or(Bad::Truncated)?;
            Ok(b.iter().fold(0usize, |a, &x| a << 8 | x as usize))
        };
        while remaining > 0 {
            let m = *buf.get(pos).ok_or(Bad::Truncated)?;
            // A fixstr (every key, most strings): its length from the
            // marker, without a second load.
            if m & 0xe0 == 0xa0 {
                pos += 1 + (m & 0x1f) as usize;
                remaining -= 1;
                continue;
            }
            // The other formats whose size the marker tells: no branch on
            // which one it is.
            let fixed = FIXED[m as usize];
            if fixed != VARIABLE {
                pos += 1 + (fixed & 0xff) as usize;
                remaining = remaining - 1 + (fixed >> 8) as u64;
                continue;
            }
            // A length follows the marker (or it is reserved).
            remaining -= 1;
            pos += 1;
            match SKIP[m as usize] {
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
    pub(super) fn skip(&mut self) -> Result<Range<usize>, Bad> {
        let start = self.pos;
        self.skip_n(1)?;
        Ok(start..self.pos)
    }
}

// What [`Cursor::skip_n`] does with each marker byte: a number up to 17 is
// the count of bytes that follow the marker; the others name a variable
// format.
pub(super) const FIXSTR: u8 = 0x20;
pub(super) const FIXMAP: u8 = 0x21;
pub(super) const FIXARRAY: u8 = 0x22;
pub(super) const LEN8: u8 = 0x23;
pub(super) const LEN16: u8 = 0x24;
pub(super) const LEN32: u8 = 0x25;
pub(super) const EXT8: u8 = 0x26;
pub(super) const EXT16: u8 = 0x27;
pub(super) const EXT32: u8 = 0x28;
pub(super) const ARRAY16: u8 = 0x29;
pub(super) const ARRAY32: u8 = 0x2a;
pub(super) const MAP16: u8 = 0x2b;
pub(super) const MAP32: u8 = 0x2c;
pub(super) const RESERVED: u8 = 0xff;

/// Per marker byte, for [`Cursor::skip_n`]: the values it opens (a fixmap's
/// keys and values, a fixarray's elements) times 256 plus the bytes that
/// follow it, when the marker alone tells both; [`VARIABLE`] when a length
/// follows it (or it is reserved).
static FIXED: [u16; 256] = {
    let mut t = [VARIABLE; 256];
    let mut m = 0usize;
    while m < 256 {
        t[m] = match SKIP[m] {
            k @ 0..=17 => k as u16,
            FIXSTR => (m & 0x1f) as u16,
            FIXMAP => ((2 * (m & 0x0f)) << 8) as u16,
            FIXARRAY => ((m & 0x0f) << 8) as u16,
            _ => VARIABLE,
        };
        m += 1;
    }
    t
};
const VARIABLE: u16 = u16::MAX;

/// The bytes after marker `m` when they make the whole value (a scalar of
/// fixed size, a fixstr, an empty fixmap or fixarray), from [`FIXED`];
/// `None` when a length follows the marker or values are nested in it.
#[inline(always)]
pub(super) fn self_contained(m: u8) -> Option<usize> {
    let fixed = FIXED[m as usize];
    (fixed != VARIABLE && fixed >> 8 == 0).then_some((fixed & 0xff) as usize)
}

pub(super) static SKIP: [u8; 256] = {
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
