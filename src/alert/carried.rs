//! The fields an earlier-stage event carries into the alert
//! ([`crate::alert::carried::CARRIED_FIELDS`]), kept compactly while its partial
//! sequence waits: for each field present, its index and its value(s) in a
//! small tagged binary form — no JSON keys or punctuation. Decoded into the
//! same JSON object, field by field in the same order, only when an alert is
//! written; every form below decodes to exactly the value encoded.
//!
//! A field starts with one byte, its index (high nibble) and its value's tag
//! (low nibble); index 15 means the index follows in a byte of its own.
//! Array elements have a tag byte. Lengths and integers are LEB128 varints.
//!
//! * `STR`: length, bytes.
//! * `PREFIX`: a string whose first bytes (at least 4) are those of an
//!   earlier `STR` string of at least 4 bytes, one of the first 16 such:
//!   which one (its ordinal among those), the length shared, then length and
//!   bytes of the rest.
//! * `TIME`: a string of the form `YYYY-MM-DDThh:mm:ss[.f…]Z` (1 to 9
//!   fractional digits): `YYYYMMDDhhmmss` as one integer, then the fraction's
//!   value × 10 + its number of digits (0: no fraction).
//! * `JOINED`: `process.command_line` equal to the `process.args` strings
//!   encoded before it joined by single spaces.
//! * `INT`: a signed integer, zigzag; `UINT`: one above `i64::MAX`, 8 bytes;
//!   `FLOAT`: 8 bytes; `TRUE`, `FALSE`, `NULL`: nothing; `ARRAY`: count, then
//!   the elements (scalars).
//!
//! **Why hand-written.** The carried fields of every waiting partial
//! sequence are most of the detector's state. As a `serde_json::Map` they cost
//! an allocation per field and per string; a general serializer (bincode,
//! postcard) would pack them but not share prefixes between them or rebuild
//! `process.command_line` from `process.args`. This encoding keeps the state
//! small, which is what the caps on state bytes and the memory figures in
//! BENCHMARKS.md measure.

use crate::format::event::Scalar;
use serde_json::{Map, Number, Value};

/// Fields of each earlier-stage event carried into the alert (when present).
pub const CARRIED_FIELDS: &[&str] = &[
    "@timestamp",
    "event.id",
    "host.name",
    "process.entity_id",
    "process.pid",
    "process.name",
    "process.executable",
    "process.args",
    "process.command_line",
    "process.parent.name",
    "process.parent.pid",
    "process.parent.entity_id",
    "process.parent.executable",
    "user.name",
];

/// What a completed stage contributes to the alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageEvent {
    /// Event time, ms since the epoch.
    pub time: i64,
    /// Digest of the event's identity fields (for deterministic alert ids).
    pub digest: u128,
    /// The fields carried into the alert.
    pub info: Carried,
}

const STR: u8 = 0;
const INT: u8 = 1;
const UINT: u8 = 2;
const FLOAT: u8 = 3;
const TRUE: u8 = 4;
const FALSE: u8 = 5;
const NULL: u8 = 6;
const ARRAY: u8 = 7;
const TIME: u8 = 8;
const JOINED: u8 = 9;
const PREFIX: u8 = 10;

/// A field index that does not fit the header's nibble follows it.
const INDEX_ESCAPE: u8 = 15;

/// A shared prefix shorter than this is not worth a `PREFIX` (its
/// reference takes two bytes or more); shorter strings are no source.
const MIN_PREFIX: usize = 4;

/// Only the first this many `STR` strings of at least [`MIN_PREFIX`] bytes
/// are prefix sources.
const MAX_SOURCES: usize = 16;

/// The indexes of `process.args` and `process.command_line` in
/// [`CARRIED_FIELDS`] (`usize::MAX`: absent).
const ARGS: usize = index_of("process.args");
const COMMAND_LINE: usize = index_of("process.command_line");

const fn index_of(name: &str) -> usize {
    let mut i = 0;
    while i < CARRIED_FIELDS.len() {
        let (a, b) = (CARRIED_FIELDS[i].as_bytes(), name.as_bytes());
        if a.len() == b.len() {
            let mut j = 0;
            while j < a.len() && a[j] == b[j] {
                j += 1;
            }
            if j == a.len() {
                return i;
            }
        }
        i += 1;
    }
    usize::MAX
}

/// An encoded set of carried fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Carried(Box<[u8]>);

/// Builds a [`Carried`]. One builder can be reused ([`CarriedBuilder::reset`],
/// [`CarriedBuilder::finish_copy`]) so that, warmed up, building allocates
/// only the result.
#[derive(Debug)]
pub struct CarriedBuilder {
    out: Vec<u8>,
    /// The prefix sources (the first [`MAX_SOURCES`] `STR` strings of at
    /// least [`MIN_PREFIX`] bytes): their first bytes, and where they are in
    /// `out` (start, length).
    strs: [([u8; MIN_PREFIX], usize, usize); MAX_SOURCES],
    n_strs: usize,
    /// `process.args` joined by single spaces, valid once added (when all
    /// its values are strings).
    args_joined: String,
    args_valid: bool,
}

/// A scalar as the encoding sees it (from a JSON value or a scanned
/// [`Scalar`]).
#[derive(Clone, Copy)]
enum View<'s> {
    Str(&'s str),
    Int(i64),
    Uint(u64),
    Float(f64),
    Bare(u8),
}

impl<'s> View<'s> {
    /// A nested value is written as null.
    fn of_value(v: &'s Value) -> View<'s> {
        match v {
            Value::String(s) => View::Str(s),
            Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => View::Int(i),
                (None, Some(u)) => View::Uint(u),
                (None, None) => View::Float(n.as_f64().unwrap_or(0.0)),
            },
            Value::Bool(true) => View::Bare(TRUE),
            Value::Bool(false) => View::Bare(FALSE),
            Value::Null | Value::Array(_) | Value::Object(_) => View::Bare(NULL),
        }
    }

    /// As [`View::of_value`] of [`Scalar::to_json`], without building it.
    fn of_scalar(v: &'s Scalar<'_>) -> View<'s> {
        match v {
            Scalar::Str(s) => View::Str(s),
            Scalar::Int(i) => View::Int(*i),
            Scalar::UInt(u) => match i64::try_from(*u) {
                Ok(i) => View::Int(i),
                Err(_) => View::Uint(*u),
            },
            Scalar::Float(f) if f.is_finite() => View::Float(*f),
            Scalar::Bool(true) => View::Bare(TRUE),
            Scalar::Bool(false) => View::Bare(FALSE),
            Scalar::Float(_) | Scalar::Null | Scalar::Object => View::Bare(NULL),
        }
    }
}

/// How a scalar is written: its tag and what follows it.
enum Form {
    Str,
    Prefix { from: usize, shared: usize },
    Time { digits: u64, frac: u64 },
    Int(i64),
    Uint(u64),
    Float(f64),
    Bare(u8),
}

impl Default for CarriedBuilder {
    fn default() -> Self {
        CarriedBuilder {
            out: Vec::with_capacity(128),
            strs: [([0; MIN_PREFIX], 0, 0); MAX_SOURCES],
            n_strs: 0,
            args_joined: String::new(),
            args_valid: false,
        }
    }
}

impl CarriedBuilder {
    /// Add field `CARRIED_FIELDS[index]` with value `v` (a scalar or an
    /// array of scalars; anything else is written as null).
    pub fn push(&mut self, index: usize, v: &Value) {
        match v {
            Value::Array(a) => self.push_views(index, true, a.len(), a.iter().map(View::of_value)),
            _ => self.push_views(index, false, 1, std::iter::once(View::of_value(v))),
        }
    }

    /// Add field `CARRIED_FIELDS[index]` with the scanned values `vals`
    /// (`len` of them; not objects), written exactly as [`CarriedBuilder::push`]
    /// writes their [`Scalar::to_json`]: as an array when `array`, else the
    /// one value.
    pub fn push_scalars<'s, 'a: 's>(
        &mut self,
        index: usize,
        array: bool,
        len: usize,
        vals: impl Iterator<Item = &'s Scalar<'a>> + Clone,
    ) {
        self.push_views(index, array, len, vals.map(View::of_scalar));
    }

    fn push_views<'s>(&mut self, index: usize, array: bool, len: usize, vals: impl Iterator<Item = View<'s>> + Clone) {
        if index == COMMAND_LINE && !array && self.args_valid {
            if let Some(View::Str(s)) = vals.clone().next() {
                if s == self.args_joined {
                    self.header(index, JOINED);
                    return;
                }
            }
        }
        if index == ARGS {
            self.args_valid = join_strings(vals.clone(), &mut self.args_joined);
        }
        if array {
            self.header(index, ARRAY);
            write_u64(&mut self.out, len as u64);
            for x in vals {
                self.scalar(None, x);
            }
        } else if let Some(v) = vals.clone().next() {
            self.scalar(Some(index), v);
        }
    }

    pub fn finish(self) -> Carried {
        Carried(self.out.into_boxed_slice())
    }

    /// The encoding so far, copied out; the builder is then [reset].
    ///
    /// [reset]: CarriedBuilder::reset
    pub fn finish_copy(&mut self) -> Carried {
        let c = Carried(self.out.as_slice().into());
        self.reset();
        c
    }

    /// Start a new set of fields, keeping the buffers.
    pub fn reset(&mut self) {
        self.out.clear();
        self.n_strs = 0;
        self.args_joined.clear();
        self.args_valid = false;
    }

    fn header(&mut self, index: usize, tag: u8) {
        if index < INDEX_ESCAPE as usize {
            self.out.push((index as u8) << 4 | tag);
        } else {
            self.out.push(INDEX_ESCAPE << 4 | tag);
            self.out.push(index.min(255) as u8);
        }
    }

    /// Write a scalar: with the field header for `index`, or (an array
    /// element) with a tag byte.
    fn scalar(&mut self, index: Option<usize>, v: View<'_>) {
        let form = match v {
            View::Str(s) => match time_parts(s) {
                Some((digits, frac)) => Form::Time { digits, frac },
                None => match self.best_prefix(s.as_bytes()) {
                    Some((from, shared)) => Form::Prefix { from, shared },
                    None => Form::Str,
                },
            },
            View::Int(i) => Form::Int(i),
            View::Uint(u) => Form::Uint(u),
            View::Float(f) => Form::Float(f),
            View::Bare(tag) => Form::Bare(tag),
        };
        let tag = match form {
            Form::Str => STR,
            Form::Prefix { .. } => PREFIX,
            Form::Time { .. } => TIME,
            Form::Int(_) => INT,
            Form::Uint(_) => UINT,
            Form::Float(_) => FLOAT,
            Form::Bare(tag) => tag,
        };
        match index {
            Some(i) => self.header(i, tag),
            None => self.out.push(tag),
        }
        let out = &mut self.out;
        match (form, v) {
            (Form::Str, View::Str(s)) => {
                write_u64(out, s.len() as u64);
                if let (Some(head), true) = (head(s.as_bytes()), self.n_strs < MAX_SOURCES) {
                    self.strs[self.n_strs] = (head, out.len(), s.len());
                    self.n_strs += 1;
                }
                out.extend_from_slice(s.as_bytes());
            }
            (Form::Prefix { from, shared }, View::Str(s)) => {
                write_u64(out, from as u64);
                write_u64(out, shared as u64);
                write_u64(out, (s.len() - shared) as u64);
                out.extend_from_slice(&s.as_bytes()[shared..]);
            }
            (Form::Time { digits, frac }, _) => {
                write_u64(out, digits);
                write_u64(out, frac);
            }
            (Form::Int(i), _) => write_u64(out, ((i << 1) ^ (i >> 63)) as u64),
            (Form::Uint(u), _) => out.extend_from_slice(&u.to_le_bytes()),
            (Form::Float(f), _) => out.extend_from_slice(&f.to_le_bytes()),
            _ => {}
        }
    }

/// The earlier prefix source (a `STR` string of at least [`MIN_PREFIX`]
    /// bytes) sharing the longest prefix with `s`, when it shares at least
    /// [`MIN_PREFIX`] bytes: (its ordinal, the length shared).
    fn best_prefix(&self, s: &[u8]) -> Option<(usize, usize)> {
        let h = head(s)?;
        let mut best: Option<(usize, usize)> = None;
        for (k, &(other_head, start, len)) in self.strs[..self.n_strs].iter().enumerate() {
            if other_head != h {
                continue;
            }
            let other = &self.out[start..start + len];
            let n = other.iter().zip(s).take_while(|(a, b)| a == b).count();
            if best.is_none_or(|(_, m)| n > m) {
                best = Some((k, n));
            }
        }
        best
    }
}

/// The first [`MIN_PREFIX`] bytes of a string, if it has them.
fn head(s: &[u8]) -> Option<[u8; MIN_PREFIX]> {
    s.get(..MIN_PREFIX)?.try_into().ok()
}

/// The `process.args` values joined by single spaces into `out` (what a
/// `JOINED` command line equals), for the builder and the reader alike;
/// false when a value is not a string.
fn join_strings<'s>(vals: impl Iterator<Item = View<'s>>, out: &mut String) -> bool {
    out.clear();
    for (i, v) in vals.enumerate() {
        let View::Str(s) = v else { return false };
        if i > 0 {
            out.push(' ');
        }
        out.push_str(s);
    }
    true
}

/// `YYYY-MM-DDThh:mm:ss[.f…]Z` (1 to 9 fractional digits) as
/// (`YYYYMMDDhhmmss`, fraction × 10 + number of fractional digits); `None`
/// for any other string. Any digits are accepted: [`format_time`] gives the
/// same string back.
fn time_parts(s: &str) -> Option<(u64, u64)> {
    let b = s.as_bytes();
    if b.len() < 20 || b.len() == 21 || b.len() > 30 || b[b.len() - 1] != b'Z' {
        return None;
    }
    let mut digits = 0u64;
    for (i, &c) in b[..19].iter().enumerate() {
        let sep = match i {
            4 | 7 => b'-',
            10 => b'T',
            13 | 16 => b':',
            _ => {
                if !c.is_ascii_digit() {
                    return None;
                }
                digits = digits * 10 + (c - b'0') as u64;
                continue;
            }
        };
        if c != sep {
            return None;
        }
    }
    let frac = &b[19..b.len() - 1];
    let mut f = 0u64;
    if !frac.is_empty() {
        if frac[0] != b'.' || !frac[1..].iter().all(u8::is_ascii_digit) {
            return None;
        }
        for &c in &frac[1..] {
            f = f * 10 + (c - b'0') as u64;
        }
        f = f * 10 + (frac.len() - 1) as u64;
    }
    Some((digits, f))
}

/// The inverse of [`time_parts`]; `None` for values it does not give.
fn format_time(digits: u64, frac: u64) -> Option<String> {
    let (f, n) = (frac / 10, (frac % 10) as usize);
    if digits >= 100_000_000_000_000 || (n == 0 && f != 0) || f >= 10u64.pow(n as u32) {
        return None;
    }
    let mut s = *b"0000-00-00T00:00:00.000000000Z";
    // Digits from the last: YYYYMMDDhhmmss, then the fraction.
    let mut d = digits;
    for i in [18, 17, 15, 14, 12, 11, 9, 8, 6, 5, 3, 2, 1, 0] {
        s[i] = b'0' + (d % 10) as u8;
        d /= 10;
    }
    let mut f = f;
    for i in (20..20 + n).rev() {
        s[i] = b'0' + (f % 10) as u8;
        f /= 10;
    }
    let end = if n == 0 { 19 } else { 20 + n };
    s[end] = b'Z';
    String::from_utf8(s[..=end].to_vec()).ok()
}

fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn read_u64(b: &mut &[u8]) -> Option<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let (&x, rest) = b.split_first()?;
        *b = rest;
        n |= ((x & 0x7f) as u64) << shift;
        if x & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

fn read_len(b: &mut &[u8]) -> Option<usize> {
    usize::try_from(read_u64(b)?).ok()
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if b.len() < n {
        return None;
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Some(head)
}

/// Decoding state: the `STR` strings read so far (for `PREFIX`), and the
/// last `process.args` joined (for `JOINED`).
struct Reader<'a> {
    strs: Vec<&'a [u8]>,
    args_joined: Option<String>,
}

impl<'a> Reader<'a> {
    fn value(&mut self, tag: u8, b: &mut &'a [u8]) -> Option<Value> {
        Some(match tag {
            STR => {
                let n = read_len(b)?;
                let s = take(b, n)?;
                if s.len() >= MIN_PREFIX && self.strs.len() < MAX_SOURCES {
                    self.strs.push(s);
                }
                Value::String(String::from_utf8(s.to_vec()).ok()?)
            }
            PREFIX => {
                let from = *self.strs.get(read_len(b)?)?;
                let shared = from.get(..read_len(b)?)?;
                let n = read_len(b)?;
                let mut s = shared.to_vec();
                s.extend_from_slice(take(b, n)?);
                Value::String(String::from_utf8(s).ok()?)
            }
            TIME => {
                let digits = read_u64(b)?;
                Value::String(format_time(digits, read_u64(b)?)?)
            }
            JOINED => Value::String(self.args_joined.clone()?),
            INT => {
                let z = read_u64(b)?;
                Value::from((z >> 1) as i64 ^ -((z & 1) as i64))
            }
            UINT => Value::from(u64::from_le_bytes(take(b, 8)?.try_into().ok()?)),
            FLOAT => {
                Number::from_f64(f64::from_le_bytes(take(b, 8)?.try_into().ok()?)).map_or(Value::Null, Value::Number)
            }
            TRUE => Value::Bool(true),
            FALSE => Value::Bool(false),
            NULL => Value::Null,
            _ => return None,
        })
    }

    fn field(&mut self, tag: u8, b: &mut &'a [u8]) -> Option<Value> {
        if tag != ARRAY {
            return self.value(tag, b);
        }
        let n = read_len(b)?;
        let mut a = Vec::with_capacity(n.min(b.len()));
        for _ in 0..n {
            let (&tag, rest) = b.split_first()?;
            *b = rest;
            if tag == ARRAY || tag == JOINED {
                return None;
            }
            a.push(self.value(tag, b)?);
        }
        Some(Value::Array(a))
    }
}

impl Carried {
    /// Encoded size in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The carried fields as a JSON object (dotted names nested, except
    /// `@timestamp`), in the order they were added.
    /// The carried `event.id`, when it is a string or a number.
    pub fn event_id(&self) -> Option<String> {
        event_id_in(&self.to_json())
    }

    pub fn to_json(&self) -> Value {
        self.to_json_named(CARRIED_FIELDS)
    }

    /// [`Carried::to_json`] for fields numbered in `names` (which must
    /// begin with [`CARRIED_FIELDS`], as the detector's carried list does).
    pub fn to_json_named<S: AsRef<str>>(&self, names: &[S]) -> Value {
        let mut m = Map::new();
        let mut b: &[u8] = &self.0;
        let mut r = Reader { strs: Vec::with_capacity(MAX_SOURCES), args_joined: None };
        while let Some((&head, rest)) = b.split_first() {
            b = rest;
            let (mut index, tag) = ((head >> 4) as usize, head & 0x0f);
            if index == INDEX_ESCAPE as usize {
                let Some((&i, rest)) = b.split_first() else { break };
                b = rest;
                index = i as usize;
            }
            let (Some(name), Some(v)) = (names.get(index).map(AsRef::as_ref), r.field(tag, &mut b)) else {
                break;
            };
            if index == ARGS {
                let mut joined = String::new();
                let ok = match &v {
                    Value::Array(a) => join_strings(a.iter().map(View::of_value), &mut joined),
                    _ => join_strings(std::iter::once(View::of_value(&v)), &mut joined),
                };
                r.args_joined = ok.then_some(joined);
            }
            insert_path(&mut m, name, v);
        }
        Value::Object(m)
    }
}

/// The `event.id` of carried fields decoded ([`Carried::to_json`]), when
/// it is a string or a number.
pub fn event_id_in(doc: &Value) -> Option<String> {
    match doc.get("event")?.get("id")? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Insert `v` at the dotted `path` of `m` (creating objects on the way).
pub fn insert_path(m: &mut Map<String, Value>, path: &str, v: Value) {
    match path.split_once('.') {
        Some((head, rest)) if head != "@timestamp" => {
            let e = m.entry(head.to_string()).or_insert_with(|| Value::Object(Map::new()));
            if !e.is_object() {
                *e = Value::Object(Map::new());
            }
            insert_path(e.as_object_mut().unwrap(), rest, v);
        }
        _ => {
            m.insert(path.to_string(), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn index(name: &str) -> usize {
        CARRIED_FIELDS.iter().position(|f| *f == name).unwrap()
    }

    /// Encode `vals` (field name, value) in order; check that the JSON (and
    /// its text) is what inserting them gives. Returns the encoded size.
    fn round_trip(vals: &[(&str, Value)]) -> usize {
        let mut b = CarriedBuilder::default();
        let mut want = Map::new();
        for (name, v) in vals {
            b.push(index(name), v);
            insert_path(&mut want, name, v.clone());
        }
        let c = b.finish();
        assert_eq!(c.to_json(), Value::Object(want.clone()), "{vals:?}");
        assert_eq!(c.to_json().to_string(), Value::Object(want).to_string());
        c.len()
    }

    /// Scanned scalars encode exactly as their JSON (what the detector used
    /// to build), and a reused builder as a new one.
    #[test]
    fn scalars_encode_as_their_json() {
        use std::borrow::Cow;
        let str_ = |s: &'static str| Scalar::Str(Cow::Borrowed(s));
        let sets: Vec<Vec<(&str, bool, Vec<Scalar>)>> = vec![
            vec![
                ("process.args", true, vec![str_("sh"), str_("-c"), str_("curl x | sh")]),
                ("process.command_line", false, vec![str_("sh -c curl x | sh")]),
                ("@timestamp", false, vec![str_("2026-03-14T09:30:00.123Z")]),
                ("process.pid", false, vec![Scalar::Int(-7)]),
            ],
            vec![
                ("process.args", true, vec![str_("sh"), Scalar::Int(3)]),
                ("process.command_line", false, vec![str_("sh 3")]),
                ("process.pid", false, vec![Scalar::UInt(u64::MAX)]),
                ("process.parent.pid", false, vec![Scalar::UInt(12)]),
                ("process.name", true, vec![Scalar::Null, Scalar::Bool(true), Scalar::Float(1.5)]),
                ("process.executable", false, vec![Scalar::Float(f64::NAN)]),
                ("host.name", false, vec![Scalar::Bool(false)]),
            ],
            vec![
                ("process.args", false, vec![str_("sh -c x")]),
                ("process.command_line", false, vec![str_("sh -c x")]),
                ("process.entity_id", true, vec![]),
                ("process.parent.entity_id", false, vec![Scalar::Null]),
            ],
        ];
        let mut reused = CarriedBuilder::default();
        for set in &sets {
            let mut fresh = CarriedBuilder::default();
            for (name, array, vals) in set {
                let v = match (array, vals.len()) {
                    (false, 1) => vals[0].to_json(),
                    _ => Value::Array(vals.iter().map(Scalar::to_json).collect()),
                };
                fresh.push(index(name), &v);
                reused.push_scalars(index(name), *array, vals.len(), vals.iter());
            }
            assert_eq!(reused.finish_copy(), fresh.finish(), "{set:?}");
        }
    }

    #[test]
    fn round_trips_to_the_same_json() {
        let vals = [
            ("@timestamp", json!("2026-01-01T00:00:00.1234567Z")),
            ("process.entity_id", json!("ZW50aXR5")),
            ("process.pid", json!(4242)),
            ("process.args", json!(["sh", "-c", "curl x | sh"])),
            ("process.command_line", json!("sh -c curl x | sh")),
            ("process.parent.pid", json!(-1)),
            ("process.parent.executable", json!(18446744073709551615u64)),
            ("user.name", json!(1.5e300)),
            ("host.name", json!(true)),
            ("event.id", json!(null)),
        ];
        let n = round_trip(&vals);
        assert!(n < json!(vals.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>()).to_string().len());
    }

    #[test]
    fn compact_forms_are_exact() {
        // Timestamps: every fraction length, and strings that only look alike.
        for ts in [
            "2026-03-14T09:30:00Z",
            "2026-03-14T09:30:00.1Z",
            "2026-03-14T09:30:00.05Z",
            "0000-00-00T00:00:00.000000000Z",
            "9999-99-99T99:99:99.999999999Z",
            "2026-03-14T09:30:00.0000040Z",
            "2026-03-14T09:30:00.Z",
            "2026-03-14T09:30:00.1234567890Z",
            "2026-03-14t09:30:00Z",
            "2026-03-14T09:30:00z",
            "2026-03-14T09:30:00+00:00",
            "2026-03-14 09:30:00Z",
            "+026-03-14T09:30:00Z",
            "2026-03-14T09:30:00.12a4Z",
            "1773480600000",
            "",
        ] {
            round_trip(&[("@timestamp", json!(ts))]);
            round_trip(&[("host.name", json!(ts)), ("@timestamp", json!([ts, ts]))]);
        }
        assert_eq!(round_trip(&[("@timestamp", json!("2026-03-14T09:30:00.0000040Z"))]), 10);
        // Integers at the edges.
        for n in [
            json!(0),
            json!(-1),
            json!(1),
            json!(i64::MIN),
            json!(i64::MAX),
            json!(u64::MAX),
            json!(i64::MAX as u64 + 1),
            json!(-0.0),
            json!(0.1),
        ] {
            round_trip(&[("process.pid", n.clone()), ("process.args", json!([n, "x"]))]);
        }
        // The command line is the arguments joined, or not quite.
        let args = json!(["sh", "-c", "a  b", "é"]);
        for cl in ["sh -c a  b é", "sh -c a b é", "sh -c a  b é ", "sh  -c a  b é", ""] {
            round_trip(&[("process.args", args.clone()), ("process.command_line", json!(cl))]);
            round_trip(&[("process.command_line", json!(cl)), ("process.args", args.clone())]);
        }
        assert_eq!(round_trip(&[("process.args", args.clone()), ("process.command_line", json!("sh -c a  b é"))]), 21);
        for (args, cl) in [(json!([]), ""), (json!("one"), "one"), (json!(["a", 1]), "a 1"), (json!([null]), "")] {
            round_trip(&[("process.args", args.clone()), ("process.command_line", json!(cl))]);
        }
        // Shared prefixes, with strings from arrays and multi-byte characters.
        round_trip(&[
            ("process.entity_id", json!("YTFmMGMyZDMtMjIwOS0xNzcz")),
            ("process.executable", json!("/usr/bin/sh")),
            ("process.args", json!(["/usr/bin/shell", "ééééa", "ééééb", "éé"])),
            ("process.parent.entity_id", json!("YTFmMGMyZDMtMjIwMS0xNzcz")),
            ("process.parent.executable", json!("/usr/bin/apt")),
            ("user.name", json!("YTFm")),
            ("host.name", json!("YTF")),
        ]);
        // Short strings are no prefix source: the ordinals skip them.
        let n = round_trip(&[
            ("process.entity_id", json!("abcdefgh")),
            ("process.name", json!("ab")),
            ("process.executable", json!("abcdxyz")),
            ("process.parent.name", json!("abcd")),
            ("process.parent.entity_id", json!("abcdefgz")),
        ]);
        assert_eq!(n, 10 + 4 + 7 + 4 + 5);
    }

    #[test]
    fn corrupt_input_decodes_to_a_prefix_of_the_fields() {
        let mut b = CarriedBuilder::default();
        b.push(index("process.entity_id"), &json!("abcdefgh"));
        b.push(index("process.args"), &json!(["sh", "-c", "abcdefgh x"]));
        b.push(index("process.command_line"), &json!("sh -c abcdefgh x"));
        b.push(index("@timestamp"), &json!("2026-03-14T09:30:00.5Z"));
        let c = b.finish();
        let full = c.to_json();
        for cut in 0..c.len() {
            let v = Carried(c.0[..cut].into()).to_json();
            assert!(v.as_object().unwrap().len() <= full.as_object().unwrap().len());
        }
        for i in 0..c.len() {
            for x in [0u8, 0x7f, 0x80, 0xff] {
                let mut bytes = c.0.to_vec();
                bytes[i] = x;
                let _ = Carried(bytes.into()).to_json();
            }
        }
    }
}
