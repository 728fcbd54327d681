//! Exception items matched against records: each item compiled against
//! a detector's field table ([`Exceptions`]), Elasticsearch's `wildcard`
//! patterns ([`Pattern`]), one counter per item. What the items and their
//! operators mean, and how they are parsed: [`crate::config::exceptions`].
//!
//! **Why hand-written.** The wildcard patterns are Elasticsearch's
//! `wildcard` query's (`*`, `?`, `\` escapes, a trailing `\` literal,
//! case-sensitive, the whole value); glob crates (`globset`, `wildmatch`)
//! read `[…]` classes and escapes their own way, so their answers would differ
//! from Kibana's exception filter.

use crate::config::exceptions::{ExceptionItem, Operator};
use crate::format::event::{FieldTable, Fields, Scalar, Slot};
use crate::format::ip::{parse_ip, Cidr};

// ---------------------------------------------------------------------------
// Wildcard patterns

#[derive(Debug, Clone, PartialEq, Eq)]
enum PTok {
    Char(char),
    /// `?`: exactly one character.
    One,
    /// `*`: any run of characters.
    Many,
}

/// A wildcard pattern as Elasticsearch's `wildcard` query reads it: `*`
/// any run of characters, `?` one character, `\` makes the next character
/// literal (a trailing `\` is itself literal). Case-sensitive; the pattern
/// must match the whole value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(Vec<PTok>);

impl Pattern {
    pub fn parse(p: &str) -> Pattern {
        let mut toks = Vec::new();
        let mut it = p.chars();
        while let Some(c) = it.next() {
            match c {
                '*' => {
                    if toks.last() != Some(&PTok::Many) {
                        toks.push(PTok::Many)
                    }
                }
                '?' => toks.push(PTok::One),
                '\\' => toks.push(PTok::Char(it.next().unwrap_or('\\'))),
                c => toks.push(PTok::Char(c)),
            }
        }
        Pattern(toks)
    }

    /// Does `value` match the whole pattern?
    pub fn matches(&self, value: &str) -> bool {
        let v: Vec<char> = value.chars().collect();
        let p = &self.0;
        let (mut vi, mut pi) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while vi < v.len() {
            match p.get(pi) {
                Some(PTok::One) => {
                    vi += 1;
                    pi += 1;
                }
                Some(PTok::Char(c)) if *c == v[vi] => {
                    vi += 1;
                    pi += 1;
                }
                Some(PTok::Many) => {
                    star = Some((pi, vi));
                    pi += 1;
                }
                _ => match star {
                    Some((sp, sv)) => {
                        pi = sp + 1;
                        vi = sv + 1;
                        star = Some((sp, sv + 1));
                    }
                    None => return false,
                },
            }
        }
        while p.get(pi) == Some(&PTok::Many) {
            pi += 1;
        }
        pi == p.len()
    }
}

// ---------------------------------------------------------------------------
// Compiled exceptions

#[derive(Debug, Clone)]
enum ValueTest {
    Exists,
    /// Keyword equality with any of these.
    Keywords(Vec<String>),
    /// An address inside any of these blocks (a bare address is a /32 or /128).
    Addresses(Vec<Cidr>),
    Wildcards(Vec<Pattern>),
}

#[derive(Debug, Clone)]
struct Check {
    slot: Slot,
    negated: bool,
    test: ValueTest,
}

impl Check {
    fn holds(&self, f: &Fields) -> bool {
        let positive = match &self.test {
            ValueTest::Exists => !f.is_null(self.slot),
            ValueTest::Keywords(set) => f.get(self.slot).any(|v| match v.keyword() {
                Some(k) => set.iter().any(|s| s.as_str() == k.as_ref()),
                None => false,
            }),
            ValueTest::Addresses(nets) => f.get(self.slot).any(|v| match v {
                Scalar::Str(s) => parse_ip(s).is_some_and(|ip| nets.iter().any(|n| n.contains(ip))),
                _ => false,
            }),
            ValueTest::Wildcards(pats) => f.get(self.slot).any(|v| match v.keyword() {
                Some(k) => pats.iter().any(|p| p.matches(&k)),
                None => false,
            }),
        };
        positive != self.negated
    }
}

#[derive(Debug, Clone)]
struct CompiledItem {
    name: String,
    checks: Vec<Check>,
}

/// Exception items compiled against a detector's field table, with one
/// counter per item.
#[derive(Debug, Clone, Default)]
pub struct Exceptions {
    items: Vec<CompiledItem>,
    counts: Vec<u64>,
}

impl Exceptions {
    /// Compile `items`, interning their fields into `table`. `is` / `is one
    /// of` compare addresses on the fields `types` maps as `ip` (ECS's and
    /// the user's `field_types`) and on `ip_slots`, the slots the rule
    /// reads as IP addresses (those it passes to `cidrmatch`).
    pub fn compile(items: &[ExceptionItem], table: &mut FieldTable, ip_slots: &[Slot], types: &crate::eql::TypeMap) -> Exceptions {
        let mut out = Vec::with_capacity(items.len());
        for it in items {
            let mut checks = Vec::with_capacity(it.entries.len());
            for e in &it.entries {
                let slot = table.intern(&e.field);
                let ip = types.is_ip(&e.field) || ip_slots.contains(&slot);
                let test = match e.operator {
                    Operator::Exists | Operator::DoesNotExist => ValueTest::Exists,
                    Operator::Matches | Operator::DoesNotMatch => {
                        ValueTest::Wildcards(e.values.iter().map(|p| Pattern::parse(p)).collect())
                    }
                    Operator::IsInCidr | Operator::IsNotInCidr => {
                        ValueTest::Addresses(e.values.iter().filter_map(|v| Cidr::parse(v)).collect())
                    }
                    Operator::Is | Operator::IsNot | Operator::IsOneOf | Operator::IsNotOneOf => {
                        let nets: Vec<Cidr> = e.values.iter().filter_map(|v| Cidr::parse(v)).collect();
                        if ip && nets.len() == e.values.len() {
                            ValueTest::Addresses(nets)
                        } else {
                            ValueTest::Keywords(e.values.clone())
                        }
                    }
                };
                checks.push(Check { slot, negated: e.operator.is_negative(), test });
            }
            out.push(CompiledItem { name: it.name.clone(), checks });
        }
        let n = out.len();
        Exceptions { items: out, counts: vec![0; n] }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// True when any item matches the record; counts every item that does.
    pub fn exclude(&mut self, f: &Fields) -> bool {
        let mut any = false;
        for (i, it) in self.items.iter().enumerate() {
            if it.checks.iter().all(|c| c.holds(f)) {
                self.counts[i] += 1;
                any = true;
            }
        }
        any
    }

    /// `(item name, events it excluded)`, in item order.
    pub fn counts(&self) -> Vec<(String, u64)> {
        self.items.iter().zip(&self.counts).map(|(it, &n)| (it.name.clone(), n)).collect()
    }
}

/// `name=N name=N …` (names with spaces, `=` or quotes are quoted).
pub fn format_counts(counts: &[(String, u64)]) -> String {
    counts
        .iter()
        .map(|(k, v)| {
            if k.chars().any(|c| c.is_whitespace() || c == '=' || c == '"') {
                format!("{k:?}={v}")
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `is` compares addresses on the fields ECS maps as `ip` (whatever
    /// their name), keywords elsewhere (whatever theirs).
    #[test]
    fn address_fields_are_those_ecs_types_as_ip() {
        let items = crate::config::exceptions::parse_items(&serde_json::json!([
            {"name": "resolved", "entries": [{"field": "dns.resolved_ip", "operator": "is", "value": "10.0.0.0/8"}]},
            {"name": "forwarded", "entries": [{"field": "network.forwarded_ip", "operator": "is one of", "value": ["192.0.2.1"]}]},
            {"name": "custom", "entries": [{"field": "custom.ip", "operator": "is", "value": "10.1.2.3"}]},
            {"name": "source", "entries": [{"field": "source.ip", "operator": "is", "value": "10.1.2.3"}]}
        ]))
        .unwrap();
        let mut table = FieldTable::new();
        let mut ex = Exceptions::compile(&items, &mut table, &[], &crate::eql::TypeMap::ecs());
        let mut hits = |rec: &str| {
            let mut f = Fields::new();
            table.extract(rec.as_bytes(), &mut f).unwrap();
            let before = ex.counts();
            ex.exclude(&f);
            ex.counts().iter().zip(before).filter(|(a, b)| a.1 != b.1).map(|(a, _)| a.0.clone()).collect::<Vec<_>>()
        };
        assert_eq!(hits(r#"{"dns":{"resolved_ip":["::ffff:10.9.9.9"]}}"#), ["resolved"]);
        assert_eq!(hits(r#"{"network":{"forwarded_ip":"192.0.2.1"}}"#), ["forwarded"]);
        assert_eq!(hits(r#"{"custom":{"ip":"10.1.2.3"},"source":{"ip":"::ffff:10.1.2.3"}}"#), ["custom", "source"]);
        // A keyword compares as written.
        assert!(hits(r#"{"custom":{"ip":"::ffff:10.1.2.3"}}"#).is_empty());
        // A value that is no address: refused on an address field only.
        let item = |field: &str| serde_json::json!([{"name": "x", "entries": [{"field": field, "operator": "is", "value": "nope"}]}]);
        assert!(crate::config::exceptions::parse_items(&item("dns.resolved_ip")).is_err());
        assert!(crate::config::exceptions::parse_items(&item("custom.ip")).is_ok());
        // A field the user's `field_types` maps as `ip`.
        let items = crate::config::exceptions::parse_items(&serde_json::json!([
            {"name": "app", "entries": [{"field": "app.addr", "operator": "is", "value": "10.0.0.0/8"}]}
        ]))
        .unwrap();
        let types = crate::config::settings::type_map(Some(&serde_json::json!({"app.addr": "ip"}))).unwrap();
        for (types, hit) in [(types, 1), (crate::eql::TypeMap::ecs(), 0)] {
            let mut table = FieldTable::new();
            let mut ex = Exceptions::compile(&items, &mut table, &[], &types);
            let mut f = Fields::new();
            table.extract(br#"{"app":{"addr":"10.7.7.7"}}"#, &mut f).unwrap();
            ex.exclude(&f);
            assert_eq!(ex.counts()[0].1, hit);
        }
    }

    #[test]
    fn patterns() {
        let m = |p: &str, v: &str| Pattern::parse(p).matches(v);
        assert!(m("/usr/bin/*", "/usr/bin/curl"));
        assert!(!m("/usr/bin/*", "/usr/local/bin/curl"));
        assert!(m("*", ""));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(!m("/USR/*", "/usr/bin"), "case-sensitive");
        assert!(m(r"a\*b", "a*b"));
        assert!(!m(r"a\*b", "axb"));
        assert!(m(r"a\?", "a?"));
        assert!(!m(r"a\?", "ab"));
        assert!(m(r"C:\\x", r"C:\x"));
        assert!(m("trail\\", "trail\\"), "a trailing backslash is literal");
        assert!(m("*abd", "abcabd"));
        assert!(m("a**b", "ab"));
    }
}
