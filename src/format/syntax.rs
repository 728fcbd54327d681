//! JSON syntax check without allocating.
//!
//! [`valid`] accepts exactly the texts `serde_json::from_slice::<IgnoredAny>`
//! accepts: one value with optional whitespace around it, numbers, literals
//! and escapes as RFC 8259 spells them, no raw control character in a
//! string. Like serde_json when it ignores a value, it does not check the
//! UTF-8 of strings or what a `\u` escape names. serde_json keeps the nesting
//! in a growable buffer, so its first nested container allocates; this
//! check keeps it in a bit stack on the machine stack, and hands the rare
//! text nested deeper than [`MAX_DEPTH`] to serde_json itself.
//!
//! **Why hand-written.** The library answer is the one this copies,
//! `serde_json::from_slice::<IgnoredAny>`: it stays the fallback for deep
//! nesting and the oracle of the tests. The check exists only to take
//! serde_json's allocation out of the per-record path (BENCHMARKS.md).

use serde::de::IgnoredAny;

/// Nesting this check follows itself (one bit per level).
pub const MAX_DEPTH: usize = 1024;

/// Whether `text` is one JSON value, as `serde_json::from_slice::<IgnoredAny>`
/// decides.
pub fn valid(text: &[u8]) -> bool {
    check(text).valid
}

/// Whether `text`, known to be UTF-8 (which this does not check), is
/// surely read whole by `serde_json::from_slice::<Value>`: valid as
/// [`valid`] says, and without what a tree refuses beyond that: nesting
/// past its recursion limit (this says false from 100 levels), a `\u`
/// escape in the surrogate range (a lone one is refused) or a number that
/// may be out of range (one with an exponent, or more than 300 digits
/// before its point). False when unsure.
pub fn surely_a_tree(text: &[u8]) -> bool {
    check(text).tree
}

/// Both verdicts on one text, from one pass ([`check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// [`valid`].
    pub valid: bool,
    /// [`surely_a_tree`].
    pub tree: bool,
}

/// [`valid`] and [`surely_a_tree`] in one pass over `text`.
pub fn check(text: &[u8]) -> Checked {
    let mut c = Checker::new(text);
    match c.run() {
        Some(ok) => Checked { valid: ok, tree: ok && c.plain },
        None => Checked { valid: serde_json::from_slice::<IgnoredAny>(text).is_ok(), tree: false },
    }
}

/// Whether the four hex digits of a `\u` escape name U+D800 to U+DFFF (a
/// surrogate: a tree refuses a lone one).
pub(crate) fn surrogate(hex: &[u8]) -> bool {
    matches!(hex[0], b'd' | b'D') && matches!(hex[1], b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F')
}

/// Nesting from which [`surely_a_tree`] is not sure (serde_json refuses
/// beyond 127).
const PLAIN_DEPTH: usize = 100;

/// Integer digits beyond which a number might not fit an `f64`.
const PLAIN_DIGITS: usize = 300;

struct Checker<'a> {
    b: &'a [u8],
    i: usize,
    /// No surrogate escape and no number that might be out of range met
    /// (see [`surely_a_tree`]).
    plain: bool,
    /// Bit set: the container at that level is an object.
    objects: [u64; MAX_DEPTH / 64],
    depth: usize,
    /// The containers open around the value checked, and the most open in
    /// all it may reach ([`value_at`]); 0 and [`MAX_DEPTH`] for a text.
    outer: usize,
    limit: usize,
    /// A whole text (only blanks after the value), not a value inside one.
    whole: bool,
}

/// The one value at `b[at..]` (no whitespace before it), inside `outer`
/// open containers: where it ends, and whether a tree surely reads it
/// (nesting counted with the containers around it); `None` when it is not
/// one, or would open more than `limit` containers in all. What [`check`]
/// follows, for a value inside a text (the fast scanner's checked scan of
/// the members it skips).
pub(crate) fn value_at(b: &[u8], at: usize, outer: usize, limit: usize) -> Option<(usize, bool)> {
    let mut c = Checker { i: at, depth: outer, outer, limit: limit.min(MAX_DEPTH), whole: false, ..Checker::new(b) };
    match c.run() {
        Some(true) => Some((c.i, c.plain)),
        _ => None,
    }
}

impl<'a> Checker<'a> {
    fn new(b: &'a [u8]) -> Self {
        Checker { b, i: 0, plain: true, objects: [0; MAX_DEPTH / 64], depth: 0, outer: 0, limit: MAX_DEPTH, whole: true }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn skip_ws(&mut self) -> Option<u8> {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.i += 1;
        }
        self.peek()
    }

    /// Enter a container; `None` when deeper than the bit stack (or the
    /// limit).
    fn push(&mut self, object: bool) -> Option<()> {
        if self.depth >= self.limit {
            return None;
        }
        if self.depth >= PLAIN_DEPTH {
            self.plain = false;
        }
        let (w, bit) = (self.depth / 64, 1u64 << (self.depth % 64));
        if object {
            self.objects[w] |= bit;
        } else {
            self.objects[w] &= !bit;
        }
        self.depth += 1;
        Some(())
    }

    fn in_object(&self) -> bool {
        let d = self.depth - 1;
        self.objects[d / 64] & 1u64 << (d % 64) != 0
    }

    /// `Some(true)` valid, `Some(false)` not, `None` too deep to tell here.
    fn run(&mut self) -> Option<bool> {
        'value: loop {
            // A value is expected.
            match self.skip_ws() {
                Some(b'{') => {
                    self.i += 1;
                    self.push(true)?;
                    match self.skip_ws() {
                        Some(b'}') => self.i += 1,
                        _ => {
                            if !self.member_name() {
                                return Some(false);
                            }
                            continue 'value;
                        }
                    }
                    self.depth -= 1;
                }
                Some(b'[') => {
                    self.i += 1;
                    self.push(false)?;
                    if self.skip_ws() != Some(b']') {
                        continue 'value;
                    }
                    self.i += 1;
                    self.depth -= 1;
                }
                Some(b'"') => {
                    self.i += 1;
                    if !self.string() {
                        return Some(false);
                    }
                }
                Some(b'-') => {
                    self.i += 1;
                    if !self.number() {
                        return Some(false);
                    }
                }
                Some(b'0'..=b'9') => {
                    if !self.number() {
                        return Some(false);
                    }
                }
                Some(b'n') => {
                    if !self.literal(b"null") {
                        return Some(false);
                    }
                }
                Some(b't') => {
                    if !self.literal(b"true") {
                        return Some(false);
                    }
                }
                Some(b'f') => {
                    if !self.literal(b"false") {
                        return Some(false);
                    }
                }
                _ => return Some(false),
            }
            // A value ended: close containers until one takes another member.
            loop {
                if self.depth == self.outer {
                    // A text is one value and blanks; a value inside one
                    // ends here.
                    return Some(!self.whole || self.skip_ws().is_none());
                }
                let object = self.in_object();
                match self.skip_ws() {
                    Some(b',') => {
                        self.i += 1;
                        if object && !self.member_name() {
                            return Some(false);
                        }
                        continue 'value;
                    }
                    Some(b'}') if object => {}
                    Some(b']') if !object => {}
                    _ => return Some(false),
                }
                self.i += 1;
                self.depth -= 1;
            }
        }
    }

    /// A member name and its colon (whitespace before each).
    fn member_name(&mut self) -> bool {
        if self.skip_ws() != Some(b'"') {
            return false;
        }
        self.i += 1;
        if !self.string() {
            return false;
        }
        if self.skip_ws() != Some(b':') {
            return false;
        }
        self.i += 1;
        true
    }

    /// The rest of a string after its opening quote.
    fn string(&mut self) -> bool {
        let b = self.b;
        let mut i = self.i;
        loop {
            // Plain bytes in bulk, eight at a time: to the next quote,
            // backslash or control byte.
            while let Some(chunk) = b.get(i..i + 8) {
                let m = crate::format::event::string_stops(u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])));
                if m != 0 {
                    i += (m.trailing_zeros() >> 3) as usize;
                    break;
                }
                i += 8;
            }
            while b.get(i).is_some_and(|&c| c != b'"' && c != b'\\' && c >= 0x20) {
                i += 1;
            }
            match b.get(i) {
                Some(b'"' | b'\\') => {}
                _ => return false,
            }
            if b[i] == b'"' {
                self.i = i + 1;
                return true;
            }
            match b.get(i + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                Some(b'u') => {
                    match b.get(i + 2..i + 6) {
                        Some(h) if h.iter().all(u8::is_ascii_hexdigit) => {
                            if surrogate(h) {
                                self.plain = false;
                            }
                        }
                        _ => return false,
                    }
                    i += 6;
                }
                _ => return false,
            }
        }
    }

    /// A number from its first digit (after any minus sign).
    fn number(&mut self) -> bool {
        let digits = |s: &mut Self| {
            let start = s.i;
            while let Some(b'0'..=b'9') = s.peek() {
                s.i += 1;
            }
            s.i - start
        };
        match self.peek() {
            Some(b'0') => {
                self.i += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return false;
                }
            }
            Some(b'1'..=b'9') => {
                if digits(self) > PLAIN_DIGITS {
                    self.plain = false;
                }
            }
            _ => return false,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if digits(self) == 0 {
                return false;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.plain = false;
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if digits(self) == 0 {
                return false;
            }
        }
        true
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde(text: &[u8]) -> bool {
        serde_json::from_slice::<IgnoredAny>(text).is_ok()
    }

    const CASES: &[&str] = &[
        "", " ", "{}", " {} ", "[]", "[ ]", "{ }", "{", "}", "[", "]", "{]", "[}", "[[]]", "[[]", "[]]",
        "{\"a\":1}", "{\"a\" : 1 }", "{\"a\"1}", "{\"a\":}", "{\"a\":1,}", "{,\"a\":1}", "{\"a\":1\"b\":2}",
        "{\"a\":1,\"b\":[1,2,{\"c\":null}]}", "{a:1}", "{1:1}", "[1,]", "[,1]", "[1 2]", "[1,,2]",
        "0", "-0", "01", "-01", "-", "1.", "1.5", ".5", "1e", "1e5", "1E+5", "1e-5", "1.5e3", "1.e3",
        "-1.25E-02", "1e+", "+1", "0x10", "1.5.2", "00", "123456789012345678901234567890",
        "true", "false", "null", "tru", "nul", "falsey", "True", "nullnull", "[true,false,null]",
        "\"\"", "\"a\"", "\"a", "\"\\\"\"", "\"\\\\\"", "\"\\/\"", "\"\\b\\f\\n\\r\\t\"", "\"\\a\"",
        "\"\\u00e9\"", "\"\\u00E9\"", "\"\\u00g9\"", "\"\\u00e\"", "\"\\u\"", "\"\\ud800\"",
        "\"\\udc00\\ud800\"", "\"\\", "\"\\u12", "\"tab\tin\"", "\"nl\nin\"", "\"del\x7f\"",
        "\"\u{e9}\"", "{\"\u{1F600}\":\"\u{2713}\"}", "1 2", "{} {}", "{}x", "\t\r\n{}\t\r\n", "\x0c{}",
        "{\"a\":[[[[[[]]]]]]}", "[\"a\",{\"b\":[\"c\",{}]}]", "{\"a\":{\"b\":{}}}}",
    ];

    #[test]
    fn agrees_with_serde_json_on_cases() {
        for c in CASES {
            assert_eq!(valid(c.as_bytes()), serde(c.as_bytes()), "{c:?}");
        }
        // Bytes that are not UTF-8, raw: serde_json does not check them when
        // it ignores a value; nor does this.
        for c in [&b"\"\xff\xfe\""[..], b"{\"\xc3\":\"\x80\"}", b"\"\x00\"", b"[\"\x1f\"]"] {
            assert_eq!(valid(c), serde(c), "{c:?}");
        }
    }

    #[test]
    fn deep_nesting_is_exact() {
        for depth in [1, 63, 64, 65, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 5000] {
            let mut ok = "[".repeat(depth);
            ok.push_str(&"]".repeat(depth));
            assert!(valid(ok.as_bytes()), "{depth}");
            assert_eq!(valid(ok.as_bytes()), serde(ok.as_bytes()));
            let bad = &ok[..ok.len() - 1];
            assert!(!valid(bad.as_bytes()), "{depth}");
            let mut mixed = String::new();
            for i in 0..depth {
                mixed.push_str(if i % 3 == 0 { "{\"k\":" } else { "[" });
            }
            mixed.push('0');
            for i in (0..depth).rev() {
                mixed.push(if i % 3 == 0 { '}' } else { ']' });
            }
            assert!(valid(mixed.as_bytes()), "{depth}");
            let swapped = mixed.replacen('}', "]", 1);
            assert_eq!(valid(swapped.as_bytes()), serde(swapped.as_bytes()), "{depth}");
        }
    }

    fn tree(text: &[u8]) -> bool {
        serde_json::from_slice::<serde_json::Value>(text).is_ok()
    }

    #[test]
    fn surely_a_tree_only_where_serde_json_builds_one() {
        // A tree is refused where the syntax check alone accepts: a lone
        // surrogate, a number out of range. Each such text is not "sure".
        let long = "9".repeat(400);
        for c in [r#""\ud800""#, r#""\uDC00""#, r#"["\udbff"]"#, "1e400", "-1e400", "[1E309]", &long] {
            assert!(valid(c.as_bytes()) && !tree(c.as_bytes()), "{c:?}");
            assert!(!surely_a_tree(c.as_bytes()), "{c:?}");
        }
        // Nor what might be refused (surrogates, exponents, long numbers),
        // even where a tree would be built.
        let long = "1".repeat(301);
        for c in [r#""\ud83d\ude00""#, "1e5", "0.5E-3", &long] {
            assert!(tree(c.as_bytes()) && !surely_a_tree(c.as_bytes()), "{c:?}");
        }
        // Nor nesting near serde_json's limit.
        let (deep, shallow) = ("[".repeat(150) + &"]".repeat(150), "[".repeat(99) + &"]".repeat(99));
        assert!(valid(deep.as_bytes()) && !tree(deep.as_bytes()) && !surely_a_tree(deep.as_bytes()));
        assert!(surely_a_tree(shallow.as_bytes()));
        // Plain texts are sure, and invalid ones are not.
        let long = "1".repeat(300);
        for c in [r#"{"a":[1,-2,0.25,"\u00e9\n",true,null,{}],"b":"\u0041"}"#, &long, "-0.000001"] {
            assert!(surely_a_tree(c.as_bytes()), "{c:?}");
        }
        for c in CASES {
            if surely_a_tree(c.as_bytes()) {
                assert!(tree(c.as_bytes()), "{c:?}");
            }
            if !valid(c.as_bytes()) {
                assert!(!surely_a_tree(c.as_bytes()), "{c:?}");
            }
        }
    }

    /// Random edits of realistic records: every verdict is serde_json's.
    #[test]
    fn agrees_with_serde_json_on_mutations() {
        let seeds = [
            &br#"{"@timestamp":"2026-03-14T09:30:00.123Z","event":{"category":["process"],"type":["start"]},"process":{"name":"sh","args":["sh","-c","echo \"hi\" \\ \u00e9"],"pid":4242,"parent":{"name":"apt","pid":1}},"n":-1.5e-3,"t":true,"z":null,"a":[]}"#[..],
            br#"[{"a":[1,2.5,{"b":{}}]},"x\/y",false,0,-0.0E+1]"#,
            br#"[0,-0,10,0.5,1e9,-2E-3,3.25e+7,0e0,"\u12aF"]"#,
            // (Without exponents: often sure of a tree.)
            br#"{"a":{"b":[1,-2,0.5,"x\"y\u00e9",true,null]},"c":"d","n":-0}"#,
        ];
        let alphabet = b"{}[]\":,\\ ntfrue0123456789.-+eEu\t\n\x01\x7f\xc3a/";
        let mut next = crate::xorshift(0x9E37_79B9_7F4A_7C15);
        let (mut agreed_valid, mut total, mut sure) = (0, 0, 0);
        for seed in seeds {
            for _ in 0..40_000 {
                let mut t = seed.to_vec();
                for _ in 0..1 + next() % 3 {
                    let at = (next() % (t.len() as u64 + 1)) as usize;
                    let c = alphabet[(next() % alphabet.len() as u64) as usize];
                    match next() % 3 {
                        0 if at < t.len() => t[at] = c,
                        1 if at < t.len() => {
                            t.remove(at);
                        }
                        _ => t.insert(at, c),
                    }
                }
                let v = valid(&t);
                assert_eq!(v, serde(&t), "{}", String::from_utf8_lossy(&t));
                // Sure of a tree only where serde_json builds one (on UTF-8,
                // which the scanner checks first), never where invalid.
                if surely_a_tree(&t) {
                    assert!(v, "{}", String::from_utf8_lossy(&t));
                    if std::str::from_utf8(&t).is_ok() {
                        assert!(tree(&t), "{}", String::from_utf8_lossy(&t));
                        sure += 1;
                    }
                }
                agreed_valid += v as u32;
                total += 1;
            }
        }
        // Both verdicts occur often enough to mean something.
        assert!(agreed_valid > total / 20 && agreed_valid < total - total / 20, "{agreed_valid} of {total}");
        assert!(sure > total / 40, "{sure} of {total}");
    }
}
