//! Reading a body ([`extract`]): the rule's fields out of one MessagePack map,
//! with the JSON reader's semantics (see the module docs of
//! [`crate::format::msgpack`]).

use super::cursor::*;
use super::*;

/// Read the table's fields from one MessagePack map (a record body) into
/// `out` (cleared first). See the module docs for the mapping of types.
pub fn extract<'a>(table: &FieldTable, body: &'a [u8], out: &mut Fields<'a>) -> Result<(), ExtractError> {
    match extract_prefix(table, body, out)? {
        end if end == body.len() => Ok(()),
        _ => Err(ExtractError::InvalidMsgpack),
    }
}

/// [`extract`] of the map that `bytes` starts with (a body, and whatever
/// follows it in its chunk): where the map ends. A map read so is well
/// formed throughout, as [`Cursor::skip_n`] checks one (a chunk's records
/// are located with it: [`super::chunk::read_chunk_with`]).
pub(crate) fn extract_prefix<'a>(table: &FieldTable, bytes: &'a [u8], out: &mut Fields<'a>) -> Result<usize, ExtractError> {
    out.clear();
    out.begin_marks(table, bytes.len());
    let mut cur = Cursor::new(bytes);
    let n = match cur.tok() {
        Ok(Tok::Map(n)) => n,
        Ok(_) => return Err(ExtractError::NotAnObject),
        Err(_) => return Err(ExtractError::InvalidMsgpack),
    };
    let mut reader = Reader { table, cur, out };
    reader.map(FieldTable::ROOT, n, 1)?;
    Ok(reader.cur.pos)
}

/// Whether `body` is one map and nothing after it, every key of every map
/// in it a string, every string UTF-8 and no value inside more than
/// `max_depth` containers (the body's members inside one): what a decoder
/// that builds the whole tree reads
/// ([`crate::engine::generic::mp_tree_reads`]). Token by token, without
/// recursion, allocation or building anything.
pub(crate) fn tree_readable(body: &[u8], max_depth: usize) -> bool {
    const MOST: usize = MAX_DEPTH + 1;
    let max_depth = max_depth.min(MOST - 1);
    // Per open container (the body first, at 1): the items left (a map's
    // key and value counted apart: a key is due when an even count is
    // left) and whether it is a map.
    let (mut left, mut map) = ([0u64; MOST + 1], [false; MOST + 1]);
    let mut open = 0usize;
    let mut cur = Cursor::new(body);
    loop {
        // An item inside `open` containers.
        if open > max_depth {
            return false;
        }
        let key = open > 0 && map[open] && left[open] % 2 == 0;
        if open > 0 {
            left[open] -= 1;
        }
        let Ok(tok) = cur.tok() else { return false };
        // The body a map; a key a string.
        if (open == 0 && !matches!(tok, Tok::Map(_))) || (key && !matches!(tok, Tok::Str(_))) {
            return false;
        }
        match tok {
            Tok::Str(s) if !s.is_ascii() && utf8(s).is_err() => return false,
            Tok::Map(n) => {
                open += 1;
                (left[open], map[open]) = (2 * n as u64, true);
            }
            Tok::Array(n) => {
                open += 1;
                (left[open], map[open]) = (n as u64, false);
            }
            _ => {}
        }
        while open > 0 && left[open] == 0 {
            open -= 1;
        }
        if open == 0 {
            return cur.at_end();
        }
    }
}

impl From<Bad> for ExtractError {
    fn from(_: Bad) -> Self {
        ExtractError::InvalidMsgpack
    }
}

pub(super) struct Reader<'t, 'f, 'a> {
    pub(super) table: &'t FieldTable,
    pub(super) cur: Cursor<'a>,
    pub(super) out: &'f mut Fields<'a>,
}

pub(super) fn utf8(b: &[u8]) -> Result<&str, ExtractError> {
    std::str::from_utf8(b).map_err(|_| ExtractError::InvalidMsgpack)
}

impl<'t, 'f, 'a> Reader<'t, 'f, 'a> {
    /// Read the `n` members of a map whose head was just read, at trie node
    /// `node`; `depth` counts the containers open, this map included.
    pub(super) fn map(&mut self, node: u32, n: u32, depth: usize) -> Result<(), ExtractError> {
        let me = self.out.open_object();
        let below = self.table.node_depth(node) + 1;
        for _ in 0..n {
            let key = self.key()?;
            // The key's bytes against the table: a key that leads somewhere
            // equals the table's own (UTF-8) segments joined by dots, so
            // only the others need their UTF-8 checked — an ASCII test,
            // for nearly all.
            match self.table.walk_bytes(node, key) {
                Some(child) => {
                    self.out.member(child, me, self.table.node_depth(child) != below);
                    self.value(child, depth)?
                }
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
    pub(super) fn key(&mut self) -> Result<&'a [u8], ExtractError> {
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
    pub(super) fn skip_one(&mut self) -> Result<(), ExtractError> {
        let buf = self.cur.buf;
        let pos = self.cur.pos;
        if let Some(&m) = buf.get(pos) {
            let Some(after) = self_contained(m) else { return Ok(self.cur.skip_n(1)?) };
            let next = pos + 1 + after;
            if next <= buf.len() {
                self.cur.pos = next;
                return Ok(());
            }
        }
        Ok(self.cur.skip_n(1)?)
    }

    pub(super) fn push(&mut self, node: u32, v: Scalar<'a>) {
        if let Some(slot) = self.table.node_slot(node) {
            self.out.push(slot, v);
        }
    }

    /// Read one value at trie node `node`, inside `depth` open containers.
    pub(super) fn value(&mut self, node: u32, depth: usize) -> Result<(), ExtractError> {
        match self.cur.tok()? {
            Tok::Nil => self.push(node, Scalar::Null),
            Tok::Bool(b) => self.push(node, Scalar::Bool(b)),
            Tok::Int(i) => self.push(node, Scalar::Int(i)),
            Tok::UInt(u) => self.push(node, Scalar::UInt(u)),
            Tok::Float(f) => {
                // A tree reads a float that is not finite as null.
                if !f.is_finite() {
                    self.out.not_plain();
                }
                self.push(node, Scalar::Float(f))
            }
            Tok::Str(s) => {
                let s = utf8(s)?;
                self.push(node, Scalar::Str(Cow::Borrowed(s)));
            }
            Tok::Bin(_) | Tok::Ext(..) => {
                // A tree reads them as null, not as an object.
                self.out.not_plain();
                self.push(node, Scalar::Object)
            }
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
