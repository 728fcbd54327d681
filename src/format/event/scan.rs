//! The fast scanner ([`FieldTable::scan`]): a hand-written byte scanner that
//! checks a record's structure and reads the table's paths, unsure rather
//! than guessing (see the module docs of [`crate::format::event`]).

use super::*;

// ---------------------------------------------------------------------------
// The fast scanner
//
// A recursive descent over the record that reads, at each level, only the
// keys, and for each member either descends (a path of the table) or jumps
// to the member's end. Strings — most of a record's bytes — are crossed
// eight bytes at a time (SWAR: bit tricks on a u64, no `unsafe`, no SIMD
// intrinsics), stopping at the first quote, backslash, control or non-ASCII
// byte; a string holding anything but the closing quote takes the slow path,
// which checks escapes (the record was checked as UTF-8 first). A skipped container is crossed byte by
// byte between its strings, counting brackets (and matching their kinds on
// a bit stack). The checked scan ([`FieldTable::scan_checked`], a rule
// pack's) follows a skipped container with the syntax check's own grammar
// (`crate::format::syntax::value_at`) instead and checks every number and
// literal, so that a record it reads is valid JSON without a second pass
// of `crate::format::syntax::check`.

/// [`FieldTable::scan`] could not vouch for a record: read it with
/// [`FieldTable::extract`] instead (which says what, if anything, is wrong).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsure;

/// The deepest nesting [`FieldTable::scan`] follows (containers, the
/// top-level object included), anywhere in a record; deeper, it is unsure.
/// Below the validating reader's limit of 127 on the paths it reads, so that
/// every record refused as too deep is one the scanner is unsure of.
pub const SCAN_MAX_DEPTH: usize = 100;

impl FieldTable {
    /// The fast scanner (see the module docs): read the values of every slot
    /// from one JSON record, checking its structure but not every detail of
    /// the members it skips. `Err(Unsure)` means: read it with
    /// [`FieldTable::extract`]. Allocates only to grow `out`.
    pub fn scan<'a>(&self, record: &'a [u8], out: &mut Fields<'a>) -> Result<(), Unsure> {
        self.scan_as(record, out, false, &mut false).map(|_| ())
    }

    /// [`FieldTable::scan`], and the record's syntax checked whole as it
    /// goes: `Ok(Some(_))` is a record [`crate::format::syntax::check`]
    /// finds valid, with its verdict on whether a tree surely reads it
    /// (false when unsure). The members no field is read from are followed
    /// by their grammar, not only by their brackets, and their numbers and
    /// literals checked: for a reader that reads most of a record (a rule
    /// pack), cheaper than a second pass. `Ok(None)`: a record that is not
    /// valid JSON only where no field is read from, read as
    /// [`FieldTable::scan`] reads it.
    pub fn scan_checked<'a>(&self, record: &'a [u8], out: &mut Fields<'a>) -> Result<Option<crate::format::syntax::Checked>, Unsure> {
        let mut refused = false;
        match self.scan_as(record, out, true, &mut refused) {
            Ok(tree) => Ok(Some(crate::format::syntax::Checked { valid: true, tree })),
            Err(Unsure) if refused => self.scan(record, out).map(|()| None),
            Err(e) => Err(e),
        }
    }

    /// The scan; `strict`: checking the syntax whole (`refused` set when
    /// that check, not the scan, was unsure). `Ok(tree)`: see
    /// [`FieldTable::scan_checked`] (meaningful only when `strict`).
    fn scan_as<'a>(&self, record: &'a [u8], out: &mut Fields<'a>, strict: bool, refused: &mut bool) -> Result<bool, Unsure> {
        out.clear();
        // One UTF-8 check of the whole record (fast on ASCII), so that each
        // string read is a slice of it, not checked again; a record that is
        // not UTF-8 is not JSON (the validating reader says so).
        let text = std::str::from_utf8(record).map_err(|_| Unsure)?;
        out.begin_marks(self, record.len());
        let mut s = Scanner { b: record, text, i: 0, table: self, out, strict, tree: true, refused };
        s.ws();
        if s.peek() != Some(b'{') {
            s.out.not_plain();
            return Err(Unsure);
        }
        s.i += 1;
        let read = s.object(Self::ROOT, 1);
        s.ws();
        if read.is_err() || s.i != record.len() {
            s.out.not_plain();
            return Err(Unsure);
        }
        Ok(s.tree)
    }
}

pub(crate) const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// High bit set in the zero bytes of `x`: exact for the lowest (bits above
/// it may be spurious), which is the only one used.
#[inline(always)]
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(LO) & !x & HI
}

/// High bit set in the bytes of `w` that are `c` ([`zero_bytes`]: exact
/// for the lowest).
#[inline(always)]
pub(crate) fn bytes_equal(w: u64, c: u8) -> u64 {
    zero_bytes(w ^ (LO * c as u64))
}

/// High bit set in the bytes of `w` that are `"`, `\`, below 0x20 or above
/// 0x7f. Exact for the lowest such byte (bits above it may be spurious),
/// which is the only one used.
#[inline(always)]
pub(super) fn special_bytes(w: u64) -> u64 {
    string_stops(w) | w & HI
}

/// High bit set in the bytes of `w` that are `"`, `\`, or below 0x20 (those
/// that end a string's plain run, whatever else it holds). Exact for the
/// lowest such byte, as [`special_bytes`].
#[inline(always)]
pub(crate) fn string_stops(w: u64) -> u64 {
    bytes_equal(w, b'"') | bytes_equal(w, b'\\') | w.wrapping_sub(LO * 0x20) & !w & HI
}

#[inline(always)]
pub(super) fn is_special(c: u8) -> bool {
    c == b'"' || c == b'\\' || !(0x20..=0x7f).contains(&c)
}

/// Kinds of bytes outside strings, for skipping a container.
pub(super) const OTHER: u8 = 0;
pub(super) const QUOTE: u8 = 1;
pub(super) const OPEN: u8 = 2;
pub(super) const CLOSE: u8 = 3;

pub(super) static CLASS: [u8; 256] = {
    let mut t = [OTHER; 256];
    t[b'"' as usize] = QUOTE;
    t[b'{' as usize] = OPEN;
    t[b'[' as usize] = OPEN;
    t[b'}' as usize] = CLOSE;
    t[b']' as usize] = CLOSE;
    t
};

/// Bytes that can continue a number or a literal (`true`, `false`, `null`).
pub(super) static SCALAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = (c as u8).is_ascii_alphanumeric() || c == b'-' as usize || c == b'+' as usize || c == b'.' as usize;
        c += 1;
    }
    t
};

/// A JSON integer of at most 18 digits (no leading zero, not `-0`): the
/// `i64` serde_json reads it as (it always fits), without its parser.
pub(super) fn small_integer(token: &[u8]) -> Option<i64> {
    let (negative, digits) = match token {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, token),
    };
    match digits {
        [] | [b'0', _, ..] => return None,
        [b'0'] if negative => return None,
        _ if digits.len() > 18 => return None,
        _ => {}
    }
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as i64;
    }
    Some(if negative { -v } else { v })
}

/// A number read where a field ends, converted exactly as the validating
/// reader converts it (serde_json's own number parser).
pub(super) fn number(token: &[u8]) -> Result<Scalar<'static>, Unsure> {
    if let Some(i) = small_integer(token) {
        return Ok(Scalar::Int(i));
    }
    let n: serde_json::Number = serde_json::from_slice(token).map_err(|_| Unsure)?;
    if let Some(i) = n.as_i64() {
        Ok(Scalar::Int(i))
    } else if let Some(u) = n.as_u64() {
        Ok(Scalar::UInt(u))
    } else {
        n.as_f64().map(Scalar::Float).ok_or(Unsure)
    }
}

pub(super) struct Scanner<'t, 'f, 'a> {
    b: &'a [u8],
    /// `b`, checked as UTF-8.
    text: &'a str,
    i: usize,
    table: &'t FieldTable,
    out: &'f mut Fields<'a>,
    /// Checking the syntax whole ([`FieldTable::scan_checked`]).
    strict: bool,
    /// With `strict`: no surrogate escape, no number with an exponent or
    /// of more than 300 integer digits met (what a tree may refuse; the
    /// nesting the scan follows is what a tree reads).
    tree: bool,
    /// With `strict`: unsure in a part only `strict` checks (a skipped
    /// container or scalar).
    refused: &'f mut bool,
}

impl<'a> Scanner<'_, '_, 'a> {
    #[inline(always)]
    pub(super) fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Skip whitespace (compact JSON has none: one test).
    #[inline(always)]
    pub(super) fn ws(&mut self) {
        if let Some(&c) = self.b.get(self.i) {
            if c <= b' ' {
                self.ws_slow();
            }
        }
    }

    pub(super) fn ws_slow(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// Cross the string whose contents start at `self.i`; returns where its
    /// contents start and whether it holds an escape.
    #[inline(always)]
    pub(super) fn string(&mut self) -> Result<(usize, bool), Unsure> {
        let b = self.b;
        let start = self.i;
        let mut i = start;
        while let Some(chunk) = b.get(i..i + 8) {
            let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            let m = special_bytes(w);
            if m != 0 {
                i += (m.trailing_zeros() >> 3) as usize;
                if b[i] == b'"' {
                    self.i = i + 1;
                    return Ok((start, false));
                }
                return self.string_slow(start, i);
            }
            i += 8;
        }
        while i < b.len() && !is_special(b[i]) {
            i += 1;
        }
        match b.get(i) {
            Some(b'"') => {
                self.i = i + 1;
                Ok((start, false))
            }
            Some(_) => self.string_slow(start, i),
            None => Err(Unsure),
        }
    }

    /// The rest of a string from its first backslash, control or non-ASCII
    /// byte at `i`: escapes checked, control bytes refused (UTF-8 was
    /// checked for the whole record).
    #[cold]
    pub(super) fn string_slow(&mut self, start: usize, mut i: usize) -> Result<(usize, bool), Unsure> {
        let b = self.b;
        let mut escaped = false;
        loop {
            match *b.get(i).ok_or(Unsure)? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    match b.get(i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                        Some(b'u') => {
                            let hex = b.get(i + 2..i + 6).ok_or(Unsure)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return Err(Unsure);
                            }
                            if crate::format::syntax::surrogate(hex) {
                                self.tree = false;
                            }
                            i += 6;
                        }
                        _ => return Err(Unsure),
                    }
                }
                0..=0x1f => return Err(Unsure),
                // (Non-ASCII bytes too: the record was checked as UTF-8
                // before the scan.)
                _ => i += 1,
            }
        }
        self.i = i + 1;
        Ok((start, escaped))
    }

    /// The members of an object whose `{` was just consumed, at trie node
    /// `node`, `depth` containers deep (this one included).
    pub(super) fn object(&mut self, node: u32, depth: usize) -> Result<(), Unsure> {
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        let me = self.out.open_object();
        let below = self.table.node_depth(node) + 1;
        loop {
            if self.peek() != Some(b'"') {
                return Err(Unsure);
            }
            self.i += 1;
            let child = self.key(node)?;
            if let Some(c) = child {
                self.out.member(c, me, self.table.node_depth(c) != below);
            }
            self.expect(b':')?;
            self.ws();
            match child {
                // A string (most values), without the call.
                Some(c) if self.peek() == Some(b'"') => self.string_value(c)?,
                Some(c) => self.value(c, depth)?,
                None => self.skip_value(depth)?,
            }
            if self.peek() != Some(b',') {
                self.ws();
                match self.peek() {
                    Some(b',') => {}
                    Some(b'}') => {
                        self.i += 1;
                        return Ok(());
                    }
                    _ => return Err(Unsure),
                }
            }
            self.i += 1;
            self.ws();
        }
    }

    /// Cross the key whose contents start at `self.i` and walk it from trie
    /// node `node`. A key of fewer than sixteen plain bytes without a dot
    /// (most of a record's) is read from two words at most, which both
    /// find its end and give its head (the first word's bytes of it).
    #[inline(always)]
    fn key(&mut self, node: u32) -> Result<Option<u32>, Unsure> {
        let b = self.b;
        let start = self.i;
        let word = |at: usize| b.get(at..at + 8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])));
        // The key's end in the word `w` read at `at`, whose stops are
        // `m` ([`special_bytes`]): the first stop is the closing quote, `k`
        // plain bytes in, no dot before it.
        let end_in = |w: u64, m: u64, at: usize| {
            let k = (m.trailing_zeros() >> 3) as usize;
            (m != 0 && b[at + k] == b'"' && bytes_equal(w, b'.') & ((1u64 << (8 * k)) - 1) == 0).then_some(k)
        };
        if let Some(w) = word(start) {
            let m = special_bytes(w);
            if let Some(k) = end_in(w, m, start) {
                self.i = start + k + 1;
                return Ok(self.table.child_head(node, &b[start..start + k], w & ((1u64 << (8 * k)) - 1)));
            }
            // Eight plain bytes without a dot: the head; the end in the next word.
            if m | bytes_equal(w, b'.') == 0 {
                if let Some(k) = word(start + 8).and_then(|w2| end_in(w2, special_bytes(w2), start + 8)) {
                    self.i = start + 8 + k + 1;
                    return Ok(self.table.child_head(node, &b[start..start + 8 + k], w));
                }
            }
        }
        let (start, escaped) = self.string()?;
        if escaped {
            // A key to unescape: the validating reader's job.
            return Err(Unsure);
        }
        Ok(self.table.walk_key(node, self.b, start, self.i - 1))
    }

    /// Consume `c`, after optional whitespace.
    #[inline(always)]
    pub(super) fn expect(&mut self, c: u8) -> Result<(), Unsure> {
        if self.peek() != Some(c) {
            self.ws();
            if self.peek() != Some(c) {
                return Err(Unsure);
            }
        }
        self.i += 1;
        Ok(())
    }

    /// A string value (its quote at `self.i`) at trie node `node`.
    #[inline(always)]
    fn string_value(&mut self, node: u32) -> Result<(), Unsure> {
        self.i += 1;
        let (start, escaped) = self.string()?;
        // An escape in a string on a path of the table, where a field
        // ends or not: the validating reader decodes it there (and
        // refuses a lone surrogate), so it reads the record.
        if escaped {
            return Err(Unsure);
        }
        if let Some(slot) = self.table.node_slot(node) {
            let s = self.text.get(start..self.i - 1).ok_or(Unsure)?;
            self.out.push(slot, Scalar::Str(Cow::Borrowed(s)));
        }
        Ok(())
    }

    /// A value at trie node `node`, inside `depth` open containers.
    pub(super) fn value(&mut self, node: u32, depth: usize) -> Result<(), Unsure> {
        let slot = self.table.node_slot(node);
        match self.peek() {
            Some(b'"') => self.string_value(node)?,
            Some(b'{') => {
                if depth >= SCAN_MAX_DEPTH {
                    return Err(Unsure);
                }
                self.i += 1;
                if let Some(slot) = slot {
                    self.out.push(slot, Scalar::Object);
                }
                if self.table.node_has_children(node) {
                    self.object(node, depth + 1)?;
                } else {
                    self.skip_container(depth + 1, true)?;
                }
            }
            Some(b'[') => {
                if depth >= SCAN_MAX_DEPTH {
                    return Err(Unsure);
                }
                self.i += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.value(node, depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => {
                            self.i += 1;
                            self.ws();
                        }
                        Some(b']') => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(Unsure),
                    }
                }
            }
            Some(c) if SCALAR[c as usize] => {
                let start = self.i;
                self.skip_scalar();
                // On a path of the table even where no field ends, as the
                // validating reader parses it there.
                let b = self.b;
                let v = match &b[start..self.i] {
                    b"true" => Scalar::Bool(true),
                    b"false" => Scalar::Bool(false),
                    b"null" => Scalar::Null,
                    s => match small_integer(s) {
                        // (Valid and plain: what the check would find.)
                        Some(i) => Scalar::Int(i),
                        None => {
                            if self.strict {
                                self.check_scalar(start)?;
                            }
                            number(s)?
                        }
                    },
                };
                if let Some(slot) = slot {
                    self.out.push(slot, v);
                }
            }
            _ => return Err(Unsure),
        }
        Ok(())
    }

    #[inline(always)]
    pub(super) fn skip_scalar(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if !SCALAR[c as usize] {
                break;
            }
            self.i += 1;
        }
    }

    /// Skip a value no field is read from, inside `depth` open containers.
    #[inline]
    pub(super) fn skip_value(&mut self, depth: usize) -> Result<(), Unsure> {
        match self.peek() {
            Some(b'"') => {
                self.i += 1;
                self.string().map(|_| ())
            }
            Some(b'{') => {
                self.i += 1;
                self.skip_container(depth + 1, true)
            }
            Some(b'[') => {
                self.i += 1;
                self.skip_container(depth + 1, false)
            }
            Some(c) if SCALAR[c as usize] => {
                let start = self.i;
                self.skip_scalar();
                if self.strict && self.check_scalar(start).is_err() {
                    *self.refused = true;
                    return Err(Unsure);
                }
                Ok(())
            }
            _ => Err(Unsure),
        }
    }

    /// A literal or number skipped at `start..self.i`, with `strict`: one
    /// JSON spells (else unsure), as the syntax check decides (the token
    /// holds only bytes of literals and numbers: it is one or none).
    fn check_scalar(&mut self, start: usize) -> Result<(), Unsure> {
        let token = &self.b[start..self.i];
        // The common tokens, which the check finds valid and plain, without
        // setting it up.
        if matches!(token, b"true" | b"false" | b"null") || small_integer(token).is_some() {
            return Ok(());
        }
        let c = crate::format::syntax::check(token);
        if !c.valid {
            return Err(Unsure);
        }
        self.tree &= c.tree;
        Ok(())
    }

    /// Skip a container whose opening bracket was just consumed, `depth`
    /// containers deep (this one included): with `strict`, followed by the
    /// syntax check's grammar ([`crate::format::syntax::value_at`]), as
    /// deep as the scan follows; without, by its brackets only.
    #[inline]
    fn skip_container(&mut self, depth: usize, object: bool) -> Result<(), Unsure> {
        if !self.strict {
            return self.skip_open(depth, object);
        }
        match crate::format::syntax::value_at(self.b, self.i - 1, depth - 1, SCAN_MAX_DEPTH) {
            Some((end, tree)) => {
                self.i = end;
                self.tree &= tree;
                Ok(())
            }
            None => {
                *self.refused = true;
                Err(Unsure)
            }
        }
    }

    /// Skip the rest of a container whose opening bracket was just consumed
    /// (`object`: `{`, else `[`), `depth` containers deep (this one
    /// included): its strings, and its brackets, balanced and matching.
    pub(super) fn skip_open(&mut self, depth: usize, object: bool) -> Result<(), Unsure> {
        if depth > SCAN_MAX_DEPTH {
            return Err(Unsure);
        }
        // Bit k: the container at relative level k is an object.
        let mut kinds: u128 = object as u128;
        let mut level = 0usize;
        loop {
            let c = *self.b.get(self.i).ok_or(Unsure)?;
            self.i += 1;
            match CLASS[c as usize] {
                OTHER => {}
                QUOTE => {
                    self.string()?;
                }
                OPEN => {
                    level += 1;
                    if depth + level > SCAN_MAX_DEPTH {
                        return Err(Unsure);
                    }
                    if c == b'{' {
                        kinds |= 1 << level;
                    } else {
                        kinds &= !(1 << level);
                    }
                }
                _ => {
                    if (kinds >> level & 1 == 1) != (c == b'}') {
                        return Err(Unsure);
                    }
                    if level == 0 {
                        return Ok(());
                    }
                    level -= 1;
                }
            }
        }
    }
}
