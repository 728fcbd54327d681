//! Rule packs: many rules over one stream, each record tested only against
//! the rules it could match.
//!
//! A pack holds one [`Detector`] per rule (each with its own partial
//! sequences, counters and exceptions, on the fast or the generic engine),
//! and an index of the strings each rule requires. Most of a rule's stages
//! require some field to hold one of a few strings (`process.name ==
//! "curl"`, `process.args : "*--proxy*"`, `event.action in ("exec",
//! "fork")`): a record can match such a stage only if one of the strings'
//! bytes appears in it (in JSON unless an escape spells it otherwise, which a
//! record without a backslash cannot; in MessagePack always). The index
//! finds, in one pass over the record with an Aho-Corasick automaton
//! (`aho-corasick` crate: the well-kept multi-pattern searcher), every rule
//! one of whose stages' strings occurs; only those rules' detectors see the
//! record. A rule with a stage that requires no string (e.g. `any where
//! true`, or only an `or` of untyped tests) sees every record.
//!
//! **Output.** In a pack the record always goes on unchanged, and every
//! match is an alert of its own: a standalone alert record (the record with
//! that rule's alert fields, as one rule alone would annotate it, and
//! `event.kind: "signal"`, the value Kibana writes in alert documents, to
//! route on). So k matches of one record give k alert records, after it.
//!
//! What a rule requires is read from its query: per stage, the conjuncts
//! `field == "…"`, `field in (…)`, `field : (…)`, `like`, `like~` (their
//! longest wildcard-free fragment), `startsWith`/`endsWith`/
//! `stringContains` on a field, and the stage's category; an `or` requires
//! the union of its branches' strings (when every branch requires some); the
//! conjunct whose shortest string is longest is used. Only strings a
//! non-string value cannot equal and that JSON writes without escapes are
//! used (as the byte prefilter does); case-insensitive ones are searched
//! ASCII-case-insensitively and used only when ASCII.

use crate::detector::{RecordError, StandaloneAlert, Stats};
use crate::eql::{parse, CmpOp, Expr, FieldType, Literal, MatchOp, ParseLimits, Query, TypeMap};
use crate::rule::Rule;
use crate::{Config, Detector, Verdict};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use std::collections::VecDeque;

/// One string a stage requires (`ci`: ASCII case-insensitively; `exact`:
/// the whole value, so that in JSON it stands between quotes and is
/// followed by what follows a value, never by the `:` of a member name).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Needle {
    text: String,
    ci: bool,
    exact: bool,
}

/// What may follow a string value in JSON (not a member name's `:`).
const AFTER_VALUE: &[&str] = &["]", ",", "}", " ", "\n", "\r", "\t"];

/// Per stage, the strings one of which it requires; `None`: none known.
fn stage_needles(types: &TypeMap, category: Option<&str>, cond: &Expr) -> Option<Vec<Needle>> {
    let mut options: Vec<Vec<Needle>> = Vec::new();
    if let Some(c) = category {
        if crate::prefilter::usable(c) {
            options.push(vec![Needle { text: c.to_string(), ci: false, exact: true }]);
        }
    }
    if let Some(n) = needles(types, cond) {
        options.push(n);
    }
    best(options)
}

/// Values nearly every Elastic Defend event holds somewhere (categories,
/// types, actions, OS): a poor index, used only when nothing else is known.
const COMMON: &[&str] = &[
    "process", "network", "file", "host", "user", "session", "library", "driver", "registry", "iam",
    "authentication", "configuration", "intrusion_detection", "malware", "package", "web", "dns", "api",
    "start", "end", "info", "change", "creation", "deletion", "access", "connection", "allowed", "denied",
    "success", "failure", "protocol", "admin", "group", "installation", "exec", "fork", "event", "linux",
    "windows", "macos", "endpoint", "executed", "modification", "rename", "open",
];

/// The most selective option: neither a common value nor a string of one
/// or two bytes (both occur nearly everywhere), then the longest shortest
/// needle (rarer), then the fewest needles.
fn best(options: Vec<Vec<Needle>>) -> Option<Vec<Needle>> {
    options.into_iter().filter(|o| !o.is_empty()).max_by_key(|o| {
        let common = o.iter().any(|n| COMMON.iter().any(|c| c.eq_ignore_ascii_case(&n.text)));
        let shortest = o.iter().map(|n| n.text.len()).min().unwrap_or(0);
        (!common && shortest >= 3, shortest.min(16), std::cmp::Reverse(o.len()))
    })
}

fn lit_needle(e: &Expr, ci: bool) -> Option<Needle> {
    match e {
        Expr::Literal(Literal::Str(s), _) if crate::prefilter::usable(s) && (!ci || s.is_ascii()) => {
            Some(Needle { text: s.clone(), ci, exact: true })
        }
        _ => None,
    }
}

/// The longest wildcard-free fragment of a pattern (at least 3 bytes).
fn fragment(e: &Expr, ci: bool) -> Option<Needle> {
    let Expr::Literal(Literal::Str(s), _) = e else { return None };
    let frag = s.split(['*', '?']).max_by_key(|f| f.len())?;
    let whole = frag.len() == s.len();
    (frag.len() >= 3 && crate::prefilter::usable(frag) && (!ci || frag.is_ascii()))
        .then(|| Needle { text: frag.to_string(), ci, exact: whole })
}

/// A field whose values are the strings the record holds: a keyword (or
/// text) field, or one without a type, and no `null_value` standing in for
/// an absent value.
fn is_string_field(types: &TypeMap, e: &Expr) -> bool {
    let Expr::Field(f) = e else { return false };
    match types.get(&f.name) {
        None => true,
        Some(i) => matches!(i.ty, FieldType::Keyword | FieldType::Text) && i.null_value.is_none(),
    }
}

/// The strings one of which any event satisfying `e` holds.
fn needles(types: &TypeMap, e: &Expr) -> Option<Vec<Needle>> {
    match e {
        Expr::And(items, _) => best(items.iter().filter_map(|x| needles(types, x)).collect()),
        Expr::Or(items, _) => {
            let mut all = Vec::new();
            for it in items {
                all.extend(needles(types, it)?);
            }
            Some(all)
        }
        Expr::Compare { op: CmpOp::Eq, left, right, .. } => {
            let (f, l) = if matches!(**left, Expr::Field(_)) { (left, right) } else { (right, left) };
            if !is_string_field(types, f) {
                return None;
            }
            lit_needle(l, false).map(|n| vec![n])
        }
        Expr::Match { op, negated: false, subject, values, .. } if is_string_field(types, subject) => {
            let mut out = Vec::new();
            for v in values {
                let n = match op {
                    MatchOp::In => lit_needle(v, false),
                    MatchOp::InInsensitive => lit_needle(v, true),
                    MatchOp::Like => fragment(v, false),
                    MatchOp::Colon | MatchOp::LikeInsensitive => fragment(v, true),
                    MatchOp::Regex | MatchOp::RegexInsensitive => None,
                };
                out.push(n?);
            }
            Some(out)
        }
        Expr::Call { name, case_insensitive, args, .. } if args.len() == 2 && is_string_field(types, &args[0]) => {
            let l = name.to_ascii_lowercase();
            match l.as_str() {
                "startswith" | "endswith" | "stringcontains" => {
                    fragment(&args[1], *case_insensitive).map(|n| vec![Needle { exact: false, ..n }])
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// What one rule requires: per stage (`None`: the rule sees every record).
fn rule_needles(rule: &Rule, types: &TypeMap) -> Option<Vec<Vec<Needle>>> {
    let q = parse(rule.query_text(), ParseLimits::default()).ok()?;
    let stages: Vec<(Option<&str>, &Expr)> = match &q {
        Query::Event(e) => vec![(e.category.as_deref(), &e.condition)],
        Query::Sequence(s) => {
            s.stages.iter().filter(|st| !st.missing).map(|st| (st.query.category.as_deref(), &st.query.condition)).collect()
        }
        Query::Sample(s) => s.stages.iter().map(|st| (st.query.category.as_deref(), &st.query.condition)).collect(),
    };
    // A sequence with a missing-event or `until` stage must see the events
    // of those stages too.
    let extra: Vec<(Option<&str>, &Expr)> = match &q {
        Query::Sequence(s) => s
            .stages
            .iter()
            .filter(|st| st.missing)
            .chain(s.until.as_ref())
            .map(|st| (st.query.category.as_deref(), &st.query.condition))
            .collect(),
        _ => Vec::new(),
    };
    stages.into_iter().chain(extra).map(|(c, e)| stage_needles(types, c, e)).collect()
}

/// Which rules a record could match, from the strings each requires (see
/// the module docs): one Aho-Corasick pass for all of them.
#[derive(Debug)]
pub struct RuleIndex {
    /// The automata, for JSON and for MessagePack (where a string's bytes
    /// stand as they are): each with its case-sensitive and
    /// ASCII-case-insensitive patterns, and the rules of each pattern.
    json: [Index; 2],
    raw: [Index; 2],
    /// Rules that see every record.
    always: Vec<u32>,
    n: usize,
    /// Scratch: candidate marks.
    mark: std::cell::RefCell<Vec<bool>>,
}

impl RuleIndex {
    /// The index of `rules` (`enabled` false: every rule sees every record).
    pub fn new(rules: &[Rule], types: &TypeMap, enabled: bool) -> RuleIndex {
        let mut json = [IndexBuilder::default(), IndexBuilder::default()];
        let mut raw = [IndexBuilder::default(), IndexBuilder::default()];
        let mut always = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let i = i as u32;
            match rule_needles(r, types) {
                Some(stages) if enabled => {
                    for n in stages.into_iter().flatten() {
                        let k = n.ci as usize;
                        raw[k].add(n.text.clone(), i);
                        if n.exact {
                            for after in AFTER_VALUE {
                                json[k].add(format!("\"{}\"{after}", n.text), i);
                            }
                        } else {
                            json[k].add(n.text, i);
                        }
                    }
                }
                _ => always.push(i),
            }
        }
        let [j0, j1] = json;
        let [r0, r1] = raw;
        RuleIndex {
            json: [j0.build(false), j1.build(true)],
            raw: [r0.build(false), r1.build(true)],
            always,
            n: rules.len(),
            mark: std::cell::RefCell::new(vec![false; rules.len()]),
        }
    }

    /// The rules the record could match, in rule order, into `out`.
    pub fn candidates(&self, record: &[u8], json: bool, out: &mut Vec<u32>) {
        out.clear();
        // A JSON escape could spell a needle otherwise: every rule.
        if json && memchr::memchr(b'\\', record).is_some() {
            out.extend(0..self.n as u32);
            return;
        }
        let mut mark = self.mark.borrow_mut();
        let indexes = if json { &self.json } else { &self.raw };
        for ix in indexes {
            let Some(ac) = &ix.ac else { continue };
            for m in ac.find_overlapping_iter(record) {
                for &r in &ix.rules[m.pattern().as_usize()] {
                    if !mark[r as usize] {
                        mark[r as usize] = true;
                        out.push(r);
                    }
                }
            }
        }
        for &r in &self.always {
            if !mark[r as usize] {
                mark[r as usize] = true;
                out.push(r);
            }
        }
        for &r in out.iter() {
            mark[r as usize] = false;
        }
        out.sort_unstable();
    }

    /// Whether the record could match any rule (for a one-rule index).
    pub fn may_match(&self, record: &[u8], json: bool) -> bool {
        if !self.always.is_empty() || (json && memchr::memchr(b'\\', record).is_some()) {
            return true;
        }
        let indexes = if json { &self.json } else { &self.raw };
        indexes.iter().any(|ix| ix.ac.as_ref().is_some_and(|ac| ac.is_match(record)))
    }
}

/// Patterns and the rules each serves, being gathered.
#[derive(Default)]
struct IndexBuilder {
    pats: Vec<String>,
    rules: Vec<Vec<u32>>,
}

impl IndexBuilder {
    fn add(&mut self, pat: String, rule: u32) {
        let k = match self.pats.iter().position(|p| *p == pat) {
            Some(k) => k,
            None => {
                self.pats.push(pat);
                self.rules.push(Vec::new());
                self.pats.len() - 1
            }
        };
        if !self.rules[k].contains(&rule) {
            self.rules[k].push(rule);
        }
    }

    fn build(self, ci: bool) -> Index {
        let ac = (!self.pats.is_empty())
            .then(|| AhoCorasickBuilder::new().ascii_case_insensitive(ci).match_kind(MatchKind::Standard).build(&self.pats).ok())
            .flatten();
        Index { ac, rules: self.rules }
    }
}

/// One automaton and the rules of each of its patterns.
#[derive(Debug)]
struct Index {
    ac: Option<AhoCorasick>,
    rules: Vec<Vec<u32>>,
}

/// A standalone alert record of one rule of the pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackAlert {
    /// Index of the rule in the pack.
    pub rule: usize,
    pub msgpack: bool,
    pub bytes: Vec<u8>,
}

/// Many rules over one stream (see the module docs).
#[derive(Debug)]
pub struct PackDetector {
    rules: Vec<Rule>,
    detectors: Vec<Detector>,
    index: RuleIndex,
    candidates: Vec<u32>,
    alerts: VecDeque<PackAlert>,
    records: u64,
    /// Records tested against a rule, summed over rules.
    tested: u64,
    /// Stage matches without a usable `@timestamp`, summed over rules.
    bad_timestamps: u64,
    /// Rules that did not load, `(name, reason)` (`skip_broken_rules`).
    skipped: Vec<(String, String)>,
}

impl PackDetector {
    /// A detector for every rule, with the same config (limits, exceptions).
    pub fn new(rules: Vec<Rule>, config: &Config) -> PackDetector {
        PackDetector::with_skipped(rules, Vec::new(), config)
    }

    /// [`PackDetector::new`], remembering the rules that did not load (to
    /// report them in [`PackDetector::report`]).
    pub fn with_skipped(rules: Vec<Rule>, skipped: Vec<(String, String)>, config: &Config) -> PackDetector {
        let detectors = rules.iter().map(|r| Detector::with_rule(r.clone(), config)).collect();
        let index = RuleIndex::new(&rules, &config.types(), config.prefilter);
        PackDetector {
            index,
            candidates: Vec::with_capacity(rules.len()),
            rules,
            detectors,
            alerts: VecDeque::new(),
            records: 0,
            tested: 0,
            bad_timestamps: 0,
            skipped,
        }
    }

    /// Rules that did not load, `(name, reason)`.
    pub fn skipped(&self) -> &[(String, String)] {
        &self.skipped
    }

    /// Stage matches without a usable `@timestamp`, over every rule.
    pub fn bad_timestamps(&self) -> u64 {
        self.bad_timestamps
    }

    /// The pack's counters: those of the records (`base`: records, read
    /// errors, unparsed, standalone alerts, as the caller counted them once
    /// per record) with every rule's sequence and state counters summed.
    pub fn summed_stats(&self, base: Stats) -> Stats {
        let mut s = base;
        for d in &self.detectors {
            let r = d.stats();
            for k in 0..4 {
                s.stage_matches[k] += r.stage_matches[k];
            }
            s.sequences_completed += r.sequences_completed;
            s.rejected_by_maxspan += r.rejected_by_maxspan;
            s.expired_by_maxspan += r.expired_by_maxspan;
            s.evicted_by_cap += r.evicted_by_cap;
            s.evicted_by_host_cap += r.evicted_by_host_cap;
            s.evicted_by_bytes += r.evicted_by_bytes;
            s.replaced += r.replaced;
            s.out_of_order += r.out_of_order;
            s.late += r.late;
            s.missing_key += r.missing_key;
            s.key_combinations_truncated += r.key_combinations_truncated;
            s.invalid_ip += r.invalid_ip;
            s.pending += r.pending;
            s.excluded += r.excluded;
            s.future_timestamp += r.future_timestamp;
            s.held += r.held;
            s.held_forced += r.held_forced;
            s.alerts_dropped += r.alerts_dropped;
        }
        s.bad_timestamp = self.bad_timestamps;
        s
    }

    /// Events excluded by each exception item, summed over the rules it
    /// applies to, in the order the items were configured.
    pub fn exception_counts(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = Vec::new();
        for d in &self.detectors {
            for (name, n) in d.exception_counts() {
                match out.iter_mut().find(|(k, _)| *k == name) {
                    Some((_, m)) => *m += n,
                    None => out.push((name, n)),
                }
            }
        }
        out
    }

    /// Estimated bytes of state, over every rule.
    pub fn state_bytes(&self) -> usize {
        self.detectors.iter().map(Detector::state_bytes).sum()
    }

    /// The latest event time any rule has seen.
    pub fn watermark(&self) -> Option<i64> {
        self.detectors.iter().filter_map(Detector::watermark).max()
    }

    /// Drop what can no longer complete, in every rule: `(expired, pending)`.
    pub fn flush(&mut self) -> (u64, u64) {
        let (mut e, mut p) = (0, 0);
        for d in &mut self.detectors {
            let r = d.flush();
            e += r.expired;
            p += r.pending;
        }
        (e, p)
    }

    /// Every rule's own counters, as JSON: `{"rules": [{"rule_id", "name",
    /// "engine", …counters}], "skipped": [{"name", "reason"}]}`. A rule's
    /// `records` counts the records it was tested on (those the index let
    /// through), its `alerts` the alerts it gave.
    pub fn report(&self) -> serde_json::Value {
        let rules: Vec<serde_json::Value> = self
            .rules
            .iter()
            .zip(&self.detectors)
            .map(|(r, d)| {
                let s = d.stats();
                let mut m = serde_json::Map::new();
                m.insert("rule_id".into(), r.meta().rule_id.clone().into());
                m.insert("name".into(), r.meta().name.clone().into());
                m.insert("engine".into(), if d.is_generic() { "generic" } else { "fast" }.into());
                m.insert("alerts".into(), (s.annotated + s.standalone_alerts).into());
                for (k, v) in s.fields() {
                    m.insert(k.to_string(), v.into());
                }
                m.insert("excluded".into(), s.excluded.into());
                serde_json::Value::Object(m)
            })
            .collect();
        let skipped: Vec<serde_json::Value> =
            self.skipped.iter().map(|(n, why)| serde_json::json!({"name": n, "reason": why})).collect();
        serde_json::json!({"rules": rules, "skipped": skipped})
    }

    /// Whether rule `i` runs on the generic engine.
    pub fn is_generic(&self, i: usize) -> bool {
        self.detectors[i].is_generic()
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The counters of rule `i`.
    pub fn stats(&self, i: usize) -> Stats {
        self.detectors[i].stats()
    }

    /// Records seen, and rule evaluations made (records × candidate rules).
    pub fn work(&self) -> (u64, u64) {
        (self.records, self.tested)
    }

    /// The next alert record, oldest first.
    pub fn take_alert(&mut self) -> Option<PackAlert> {
        self.alerts.pop_front()
    }

    /// One JSON record (`msgpack`: a MessagePack map body). The record goes
    /// on unchanged; its alerts (and any other rule's standalone alerts
    /// released meanwhile) wait in [`PackDetector::take_alert`]. Returns how
    /// many alerts it added.
    pub fn process(&mut self, record: &[u8], msgpack: bool) -> Result<usize, RecordError> {
        self.records += 1;
        self.index.candidates(record, !msgpack, &mut self.candidates);
        let before = self.alerts.len();
        let mut err = None;
        // Rules on the generic engine read the record as a tree: once for all.
        let mut parsed = None;
        for k in 0..self.candidates.len() {
            let i = self.candidates[k] as usize;
            self.tested += 1;
            let d = &mut self.detectors[i];
            let bad_before = d.bad_timestamp_count();
            let verdict = if d.is_generic() {
                let tree = parsed.get_or_insert_with(|| crate::generic::read(record, msgpack));
                d.process_parsed(record, msgpack, tree)
            } else if msgpack {
                d.process_msgpack(record)
            } else {
                d.process(record)
            };
            match verdict {
                Ok(Verdict::Annotated(bytes)) => {
                    let bytes = bytes.to_vec();
                    self.alerts.push_back(signal(i, msgpack, bytes));
                }
                Ok(Verdict::Unchanged) => {}
                Err(e) => err = err.or(Some(e)),
            }
            self.bad_timestamps += self.detectors[i].bad_timestamp_count() - bad_before;
            while let Some(a) = self.detectors[i].take_alert() {
                self.alerts.push_back(signal(i, a.msgpack, a.bytes));
            }
        }
        match err {
            Some(e) if self.alerts.len() == before => Err(e),
            _ => Ok(self.alerts.len() - before),
        }
    }

    /// End of stream for every rule: held events and waiting results.
    pub fn finish(&mut self) -> usize {
        let before = self.alerts.len();
        for i in 0..self.detectors.len() {
            let bad_before = self.detectors[i].bad_timestamp_count();
            self.detectors[i].finish();
            self.bad_timestamps += self.detectors[i].bad_timestamp_count() - bad_before;
            while let Some(a) = self.detectors[i].take_alert() {
                self.alerts.push_back(signal(i, a.msgpack, a.bytes));
            }
        }
        self.alerts.len() - before
    }
}

/// An alert record with `event.kind: "signal"` (Kibana's value for alerts).
fn signal(rule: usize, msgpack: bool, bytes: Vec<u8>) -> PackAlert {
    let mut roots = serde_json::Map::new();
    roots.insert("event".into(), serde_json::json!({"kind": "signal"}));
    let mut out = Vec::with_capacity(bytes.len() + 32);
    let merged =
        if msgpack { crate::msgpack::merge(&bytes, roots, &mut out) } else { crate::annotate::merge(&bytes, roots, &mut out) };
    PackAlert { rule, msgpack, bytes: if merged.is_ok() { out } else { bytes } }
}

/// A standalone alert from one rule alone (for tests comparing a pack with
/// its rules run one by one).
pub fn signal_of(rule: usize, a: StandaloneAlert) -> PackAlert {
    signal(rule, a.msgpack, a.bytes)
}

/// Every rule file of a directory (`.toml`: detection-rules files; `.eql`:
/// bare queries named after the file), sorted by file name. Rules that do
/// not load are returned with their reasons, not dropped silently.
pub fn load_dir(dir: &std::path::Path) -> std::io::Result<(Vec<Rule>, Vec<(String, String)>)> {
    if !dir.is_dir() {
        return Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("{} is not a directory", dir.display())));
    }
    let cfg = Config { rules_dir: Some(dir.display().to_string()), skip_broken_rules: true, ..Config::default() };
    match cfg.load_rules() {
        Ok(l) => Ok((l.rules, l.skipped)),
        Err(crate::config::LoadError::Config(e)) if e.message == crate::config::NO_RULE => Ok((Vec::new(), Vec::new())),
        Err(e) => Err(std::io::Error::other(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(q: &str) -> Option<Vec<Vec<Needle>>> {
        rule_needles(&Rule::from_eql(q, crate::rule::meta_for_file("t")).unwrap(), &TypeMap::ecs())
    }

    fn texts(q: &str) -> Vec<Vec<String>> {
        req(q).unwrap().into_iter().map(|s| s.into_iter().map(|n| n.text).collect()).collect()
    }

    #[test]
    fn the_rarest_conjunct_is_indexed() {
        assert_eq!(texts(r#"process where process.name == "curl" and event.type == "start""#), [["curl"]]);
        assert_eq!(texts(r#"process where process.name == "socat""#), [["socat"]]);
        assert_eq!(texts(r#"process where process.name in ("sh", "sh2")"#), [["process"]], "two bytes are as common as a category");
        assert_eq!(texts(r#"network where process.name in ("curlx", "wgetx")"#), [["curlx", "wgetx"]]);
        assert_eq!(texts(r#"any where process.args : "*--proxy-user*""#), [["--proxy-user"]]);
        assert_eq!(texts(r#"any where a == "left" or b like~ "*right*""#), [["left", "right"]]);
        assert_eq!(
            texts(r#"sequence [process where x == "first"] [network where y == "second!"]"#),
            [["first"], ["second!"]]
        );
    }

    #[test]
    fn what_requires_nothing_sees_everything() {
        assert!(req(r#"any where true"#).is_none());
        assert!(req(r#"any where not x == "a""#).is_none());
        assert!(req(r#"any where x == "a" or y > 3"#).is_none());
        assert!(req(r#"any where x == "5""#).is_none(), "a number can equal it");
        assert!(req(r#"any where x regex "abc.*""#).is_none());
        assert!(req(r#"sequence [process where true] [any where true]"#).is_none());
    }
}
