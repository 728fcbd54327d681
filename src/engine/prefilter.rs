//! The byte prefilter: deciding, without reading a record's structure, that
//! it cannot match any stage.
//!
//! Most stages require some field to equal one of a few strings:
//! `process.parent.name == "apt"`, `event.action == "connection_attempted"`,
//! `process where` (`event.category` contains `"process"`). A record can only
//! hold such a value if the string's bytes appear in it. In JSON a string
//! value is written `"apt"`, unless escapes spell it otherwise (`"\u0061pt"`);
//! in MessagePack a string's bytes are stored as they are, with no escaping at
//! all. So, for each stage, every *required* string test (a conjunct of the
//! stage's predicate of the form `field == "…"` or `field in ("…", …)`, and
//! its category) gives a set of needles, and:
//!
//! > a record in which, for every stage, some required test finds none of
//! > its needles, matches no stage.
//!
//! For JSON this holds only for a record without a backslash (no escape
//! anywhere), which the prefilter checks first. It is a necessary condition,
//! never a sufficient one: a record with the needles goes on to the scanner
//! and the rule as before. The needles are searched with `memchr`'s SIMD
//! substring search, rarest first: each detector counts how often each test
//! finds its needles and reorders them every few thousand records. The order
//! changes the speed, never the answer.
//!
//! A literal is usable as a needle only when a non-string value can never be
//! equal to it (`true`, `false` and anything spelt like a number are not
//! used: the JSON number `5` is the keyword `"5"`), and, for JSON, only when
//! it needs no escaping (no `"`, `\` or control character). A stage without
//! any usable required test (e.g. `any where true`, or only an `or` at the top)
//! turns the prefilter off: every record is then scanned.
//!
//! What a prefiltered record is not checked for: the prefilter requires that
//! a JSON record, trimmed of whitespace, starts with `{` and ends with `}`,
//! is valid UTF-8 and holds no backslash, and that a MessagePack body starts
//! with a map marker; nothing else. A record that
//! matches no stage and is malformed inside passes as `Unchanged` instead of
//! being counted as `invalid_json` or `invalid_msgpack` (it is forwarded
//! unchanged either way).
//! `prefilter = false` turns this off, so that every record is scanned.

use memchr::memmem::Finder;

use crate::eql::compile::{CompiledQuery, Pred, Test};

/// How often (in records) the needle order is revised.
const REORDER_EVERY: u32 = 4096;

/// One required test: the stage can match only if one of these is found.
#[derive(Debug)]
struct NeedleSet {
    json: Vec<Finder<'static>>,
    raw: Vec<Finder<'static>>,
    tries: u32,
    hits: u32,
}

impl NeedleSet {
    fn found(&mut self, record: &[u8], json: bool) -> bool {
        self.tries = self.tries.saturating_add(1);
        let hit = if json {
            self.json.iter().any(|f| f.find(record).is_some())
        } else {
            self.raw.iter().any(|f| {
                let n = f.needle().len();
                f.find_iter(record).any(|at| str_header_before(&record[..at], n))
            })
        };
        if hit {
            self.hits = self.hits.saturating_add(1);
        }
        hit
    }

    /// Hit rate, in 1/65536, for ordering (untried sets last).
    fn rate(&self) -> u64 {
        if self.tries == 0 {
            return u64::MAX;
        }
        ((self.hits as u64) << 16) / self.tries as u64
    }
}

/// The prefilter of one detector (its counters are its own).
#[derive(Debug, Default)]
pub(crate) struct Prefilter {
    /// Per stage, its required tests; empty when the prefilter is off.
    stages: Vec<Vec<NeedleSet>>,
    checks: u32,
    /// The `prefilter` config key.
    enabled: bool,
}

impl Prefilter {
    /// The prefilter for `q`, or one that is off (`enabled` false, or a stage
    /// without a usable required test).
    pub(crate) fn new(q: &CompiledQuery, enabled: bool) -> Prefilter {
        let off = Prefilter { enabled, ..Prefilter::default() };
        if !enabled {
            return off;
        }
        let mut stages = Vec::new();
        for stage in &q.stages {
            let mut sets = Vec::new();
            if let Some(cat) = &stage.category {
                sets.extend(needle_set(std::slice::from_ref(cat)));
            }
            let mut conjuncts = Vec::new();
            required(&stage.predicate, &mut conjuncts);
            for lits in conjuncts {
                sets.extend(needle_set(lits));
            }
            if sets.is_empty() {
                return off;
            }
            stages.push(sets);
        }
        Prefilter { stages, checks: 0, enabled }
    }

    /// The `prefilter` config key (true even when no stage gives needles).
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// True when the prefilter is on.
    pub(crate) fn is_on(&self) -> bool {
        !self.stages.is_empty()
    }

    /// True when the JSON `record` surely matches no stage.
    pub(crate) fn rules_out_json(&mut self, record: &[u8]) -> bool {
        if !self.is_on() {
            return false;
        }
        let ws = |b: &&u8| b.is_ascii_whitespace();
        let first = record.iter().find(|b| !ws(b));
        let last = record.iter().rev().find(|b| !ws(b));
        if first != Some(&b'{') || last != Some(&b'}') {
            return false;
        }
        if memchr::memchr(b'\\', record).is_some() || !(record.is_ascii() || std::str::from_utf8(record).is_ok()) {
            return false;
        }
        self.rules_out(record, true)
    }

    /// True when the MessagePack `body` surely matches no stage.
    pub(crate) fn rules_out_msgpack(&mut self, body: &[u8]) -> bool {
        // A map marker: fixmap, map16 or map32.
        let map = matches!(body.first(), Some(0x80..=0x8f | 0xde | 0xdf));
        self.is_on() && map && self.rules_out(body, false)
    }

    fn rules_out(&mut self, bytes: &[u8], json: bool) -> bool {
        self.checks += 1;
        if self.checks >= REORDER_EVERY {
            self.checks = 0;
            for sets in &mut self.stages {
                sets.sort_by_key(|s| s.rate());
                for s in sets.iter_mut() {
                    s.tries /= 2;
                    s.hits /= 2;
                }
            }
        }
        self.stages.iter_mut().all(|sets| sets.iter_mut().any(|s| !s.found(bytes, json)))
    }
}

/// True when `before` ends with a MessagePack string header (fixstr, str8,
/// str16 or str32) for a string of `n` bytes: the bytes that follow are then
/// possibly a whole string, not part of a longer one. (Possibly: the header
/// bytes may themselves be data. Any whole string of `n` bytes is preceded by
/// one of these, so a body without one holds no such string.)
fn str_header_before(before: &[u8], n: usize) -> bool {
    let ends = |h: &[u8]| before.ends_with(h);
    (n < 32 && ends(&[0xa0 | n as u8]))
        || (n < 0x100 && ends(&[0xd9, n as u8]))
        || (n < 0x1_0000 && ends(&[0xda, (n >> 8) as u8, n as u8]))
        || (n as u64) < 0x1_0000_0000 && ends(&[0xdb, (n >> 24) as u8, (n >> 16) as u8, (n >> 8) as u8, n as u8])
}

/// The literal sets of the stage predicate's required string tests (the
/// conjuncts of its top-level `and`, flattened).
fn required<'q>(p: &'q Pred, out: &mut Vec<&'q [String]>) {
    match p {
        Pred::And(v) => v.iter().for_each(|x| required(x, out)),
        Pred::Any(_, Test::StrIn(lits)) => out.push(lits),
        _ => {}
    }
}

/// Needles for one required test, or `None` when one of its literals is not
/// usable (so the test says nothing about the bytes).
fn needle_set(lits: &[String]) -> Option<NeedleSet> {
    if lits.is_empty() || !lits.iter().all(|l| usable(l)) {
        return None;
    }
    let json = lits.iter().map(|l| Finder::new(format!("\"{l}\"").as_bytes()).into_owned()).collect();
    let raw = lits.iter().map(|l| Finder::new(l.as_bytes()).into_owned()).collect();
    Some(NeedleSet { json, raw, tries: 0, hits: 0 })
}

/// A literal that only a string can equal, written in JSON without escapes.
pub(crate) fn usable(lit: &str) -> bool {
    let numeric = lit.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    !lit.is_empty()
        && !numeric
        && lit != "true"
        && lit != "false"
        && !lit.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::rule::Rule;

    fn pf(query: &str) -> Prefilter {
        let rule = Rule::from_eql(query, crate::config::rule::meta_for_file("t")).unwrap();
        Prefilter::new(rule.compiled(), true)
    }

    #[test]
    fn literals_that_a_number_or_bool_can_equal_are_not_needles() {
        for lit in ["5", "-1.5e3", "true", "false", "", "a\"b", "a\\b", "tab\there"] {
            assert!(!usable(lit), "{lit:?}");
        }
        for lit in ["apt", "-c", "e1x", "/usr/bin/apt-listbugs", "é"] {
            assert!(usable(lit), "{lit:?}");
        }
    }

    #[test]
    fn a_stage_without_a_required_string_turns_it_off() {
        assert!(!pf("any where true").is_on());
        assert!(!pf(r#"any where process.name == "a" or process.name == "b""#).is_on());
        assert!(!pf(r#"any where process.pid == 5"#).is_on());
        assert!(pf(r#"process where true"#).is_on());
        assert!(pf(r#"any where process.name in ("a", "b") and process.pid == 5"#).is_on());
    }

    #[test]
    fn needles_rule_out_only_what_cannot_match() {
        let mut p = pf(r#"process where process.name in ("bash", "sh") and process.args == "-c""#);
        let cases: [(&str, bool); 9] = [
            (r#"{"event":{"category":"process"},"process":{"name":"sh","args":["sh","-c"]}}"#, false),
            (r#"{"event":{"category":"file"},"file":{"name":"sh"},"args":["sh","-c"]}"#, true),
            // a key is bytes too: "process" is found, and the rule decides
            (r#"{"event":{"category":"file"},"process":{"name":"sh","args":["sh","-c"]}}"#, false),
            (r#"{"process":{"name":"zsh","args":["-c"]},"event":{"category":"process"}}"#, true),
            (r#"{"process":{"name":"\u0073h","args":["-c"]},"event":{"category":"process"}}"#, false),
            (r#"  {"process":{"name":"ls"}}  "#, true),
            ("[1]", false),
            ("{\"a\":\"\u{ff}\"}", true),
            ("not json", false),
        ];
        for _ in 0..3 * REORDER_EVERY {
            for (rec, out) in cases {
                assert_eq!(p.rules_out_json(rec.as_bytes()), out, "{rec}");
            }
        }
        assert!(!p.rules_out_json(b"{\"a\":\"\xff\"}"), "invalid UTF-8 goes on to be counted");
        assert!(!p.rules_out_msgpack(b"\x82\xa4name\xa2sh\xa8category\xa7process\xa4args\x91\xa2-c"));
        assert!(p.rules_out_msgpack(b"\x82\xa4name\xa2ls\xa8category\xa7process"));
        assert!(!p.rules_out_msgpack(b"\x92\xa4name\xa2ls"), "not a map: goes on to be counted");
        // a needle inside a longer string is no string of its own
        assert!(p.rules_out_msgpack(b"\x83\xa4name\xa5sh -c\xa8category\xa7process\xa4args\x91\xa5-c -x"));
        // every string header counts, not only the shortest
        for sh in [&b"\xa2sh"[..], b"\xd9\x02sh", b"\xda\x00\x02sh", b"\xdb\x00\x00\x00\x02sh"] {
            let body = [&b"\x83\xa4name"[..], sh, b"\xa8category\xa7process\xa4args\x91\xd9\x02-c"].concat();
            assert!(!p.rules_out_msgpack(&body), "{body:x?}");
        }
    }
}
