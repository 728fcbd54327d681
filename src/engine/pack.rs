//! Rule packs: many rules over one stream, each record tested only against
//! the rules it could match.
//!
//! A pack holds one [`Detector`] per rule (each with its own partial
//! sequences, counters and exceptions, on the fast or the generic engine).
//! Most of a rule's stages require some field to hold one of a few strings
//! (`process.name == "curl"`, `process.args : "*--proxy*"`, `event.action
//! in ("exec", "fork")`), and every stage with a category requires it.
//! Before any rule sees a record, the pack:
//!
//! 1. reads the record once ([`FieldTable::scan`], or the MessagePack
//!    reader) for every field any rule's index or stage tests use;
//! 2. finds the stages all of whose sets of required strings are there
//!    (`FieldIndex`): whole values are looked up in a hash map (by field),
//!    fragments found by one Aho-Corasick automaton per field over that
//!    field's values (`aho-corasick` crate: the well-kept multi-pattern
//!    searcher);
//! 3. tests those stages' conditions on the fields read (`PreCheck`):
//!    exactly the fast engine's stage test for a fast rule, a sound
//!    relaxation for a generic one;
//!
//! and hands the record only to the rules with a stage left. A record the
//! reader is unsure of (malformed, too deep) goes to every rule, whose
//! detectors read and count it. A stage that requires no string (e.g. `any
//! where true`) is tested on every record.
//!
//! [`RuleIndex`] is the same index over a record's bytes (a required whole
//! value as a JSON string between its quotes, never as a member name),
//! used by a single generic rule to pass records unread.
//!
//! **Later stages while nothing waits.** A record that can match only the
//! later stages of a plain sequence (no missing-event or `until` stage) in
//! which no partial sequence waits can extend nothing, and is not handed
//! to that rule (without `max_lateness`, where an earlier first-stage event
//! may still come). The one consequence: that record does not move the
//! rule's watermark, so a first-stage event arriving more than maxspan
//! behind it, which the rule alone would drop as late, can still pair in a
//! pack — as Elasticsearch, which orders events by time, would pair it. On
//! a stream in time order a pack gives exactly the alerts of its rules run
//! alone (tested on the 287 Linux rules).
//!
//! **Output.** In a pack the record always goes on unchanged, and every
//! match is an alert of its own: a standalone alert record (the record with
//! that rule's alert fields, as one rule alone would annotate it, and
//! `event.kind: "signal"`, the value Kibana writes in alert documents, to
//! route on). So k matches of one record give k alert records, after it.
//!
//! What a stage requires is read from its query: the conjuncts `field ==
//! "…"`, `field in (…)`, `field : (…)`, `like`, `like~` (their longest
//! wildcard-free fragment), `startsWith`/`endsWith`/`stringContains` on a
//! field, and the stage's category; an `or` requires the union of its
//! branches' strings (when every branch requires some). Only strings a
//! non-string value cannot equal and that JSON writes without escapes are
//! used (as the byte prefilter does); case-insensitive ones are searched
//! ASCII-case-insensitively and used only when ASCII.

use crate::eql::compile::{compile, compile_precheck, typed_like_elasticsearch, CompiledQuery, CompiledStage, Pred};
use crate::engine::detector::{RecordError, StandaloneAlert, Stats};
use crate::eql::{parse, CmpOp, EventQuery, Expr, FieldType, Literal, MatchOp, ParseLimits, Query, TypeMap};
use crate::format::event::{FieldTable, Fields, FieldsBuf, Scalar, Slot};
use crate::config::rule::Rule;
use crate::{Config, Detector, Verdict};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use std::collections::VecDeque;

/// One string a stage requires (`ci`: ASCII case-insensitively; `exact`:
/// the whole value, so that in JSON it stands between quotes and is
/// followed by what follows a value, never by the `:` of a member name).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Needle {
    /// The field that holds it (alias resolved).
    field: String,
    text: String,
    ci: bool,
    exact: bool,
}

/// Most conjuncts a stage is indexed by.
const MAX_SETS: usize = 4;

/// Per stage, what it requires: sets of strings, each set one of whose
/// strings any event matching the stage holds (the category, and each
/// conjunct that requires strings), the most selective first; empty: none
/// known (the stage sees every record).
fn stage_sets(types: &TypeMap, category: Option<&str>, cond: &Expr) -> Vec<Vec<Needle>> {
    let mut options: Vec<Vec<Needle>> = Vec::new();
    if let Some(c) = category {
        if crate::engine::prefilter::usable(c) {
            options.push(vec![Needle { field: "event.category".into(), text: c.to_string(), ci: false, exact: true }]);
        }
    }
    conjunct_sets(types, cond, &mut options);
    options.retain(|o| !o.is_empty());
    options.sort_by_key(|o| std::cmp::Reverse(selectivity(o)));
    options.dedup();
    options.truncate(MAX_SETS);
    options
}

/// The sets of strings `e` requires, one per conjunct that requires some.
fn conjunct_sets(types: &TypeMap, e: &Expr, out: &mut Vec<Vec<Needle>>) {
    match e {
        Expr::And(items, _) => items.iter().for_each(|x| conjunct_sets(types, x, out)),
        _ => out.extend(needles(types, e)),
    }
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

/// How selective a set of strings is: neither a common value nor a string
/// of one or two bytes (both occur nearly everywhere), then the longest
/// shortest string (rarer), then the fewest strings.
fn selectivity(o: &[Needle]) -> (bool, usize, std::cmp::Reverse<usize>) {
    let common = o.iter().any(|n| COMMON.iter().any(|c| c.eq_ignore_ascii_case(&n.text)));
    let shortest = o.iter().map(|n| n.text.len()).min().unwrap_or(0);
    (!common && shortest >= 3, shortest.min(16), std::cmp::Reverse(o.len()))
}

/// The most selective of several sets.
fn best(options: Vec<Vec<Needle>>) -> Option<Vec<Needle>> {
    options.into_iter().filter(|o| !o.is_empty()).max_by_key(|o| selectivity(o))
}

fn lit_needle(e: &Expr, ci: bool) -> Option<Needle> {
    match e {
        Expr::Literal(Literal::Str(s), _) if crate::engine::prefilter::usable(s) && (!ci || s.is_ascii()) => {
            Some(Needle { field: String::new(), text: s.clone(), ci, exact: true })
        }
        _ => None,
    }
}

/// The longest wildcard-free fragment of a pattern (at least 3 bytes).
fn fragment(e: &Expr, ci: bool) -> Option<Needle> {
    let Expr::Literal(Literal::Str(s), _) = e else { return None };
    let frag = s.split(['*', '?']).max_by_key(|f| f.len())?;
    let whole = frag.len() == s.len();
    (frag.len() >= 3 && crate::engine::prefilter::usable(frag) && (!ci || frag.is_ascii()))
        .then(|| Needle { field: String::new(), text: frag.to_string(), ci, exact: whole })
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

/// The strings one of which any event satisfying `e` holds, each with the
/// field that holds it.
fn needles(types: &TypeMap, e: &Expr) -> Option<Vec<Needle>> {
    let on = |f: &Expr, mut v: Vec<Needle>| -> Vec<Needle> {
        if let Expr::Field(f) = f {
            let name = types.resolve_alias(&f.name).to_string();
            v.iter_mut().for_each(|n| n.field = name.clone());
        }
        v
    };
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
            lit_needle(l, false).map(|n| on(f, vec![n]))
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
            Some(on(subject, out))
        }
        Expr::Call { name, case_insensitive, args, .. } if args.len() == 2 && is_string_field(types, &args[0]) => {
            let l = name.to_ascii_lowercase();
            match l.as_str() {
                "startswith" | "endswith" | "stringcontains" => {
                    fragment(&args[1], *case_insensitive).map(|n| on(&args[0], vec![Needle { exact: false, ..n }]))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// What one rule requires, per stage ([`stage_sets`]; the rule's positive
/// stages in order, then its missing-event and `until` stages), and whether
/// the rule is a plain sequence (its later stages matter only while a
/// partial sequence waits). `None`: the query does not parse.
fn rule_sets(rule: &Rule, types: &TypeMap) -> Option<(Vec<Vec<Vec<Needle>>>, bool)> {
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
    let plain_sequence = matches!(&q, Query::Sequence(_)) && extra.is_empty() && stages.len() > 1;
    Some((stages.into_iter().chain(extra).map(|(c, e)| stage_sets(types, c, e)).collect(), plain_sequence))
}

/// What one rule requires, per stage: the most selective set of strings
/// (`None`: the rule sees every record).
#[cfg(test)]
fn rule_needles(rule: &Rule, types: &TypeMap) -> Option<Vec<Vec<Needle>>> {
    let (stages, _) = rule_sets(rule, types)?;
    stages.into_iter().map(|s| s.into_iter().next()).collect()
}

/// Which rules a record could match, and by which stages, from the
/// strings each stage requires (see the module docs): one Aho-Corasick pass
/// finds every required string the record holds; a stage is a candidate
/// when each of its sets of strings has one there.
#[derive(Debug)]
pub struct RuleIndex {
    /// The automata, for JSON (a required whole value between its quotes)
    /// and for MessagePack (a string's bytes as they are): each with its
    /// case-sensitive and ASCII-case-insensitive patterns, and the sets of
    /// each pattern.
    json: [Index; 2],
    raw: [Index; 2],
    plan: Plan,
    /// Scratch: which sets were found, the list of them, and per rule the
    /// stages found.
    scratch: std::cell::RefCell<Scratch>,
    /// Scratch for [`RuleIndex::may_match`].
    found: std::cell::RefCell<Vec<Candidate>>,
}

#[derive(Debug, Default)]
struct Scratch {
    set_hit: Vec<bool>,
    hits: Vec<u32>,
    rule_bits: Vec<u64>,
}

/// From the sets found (`sc.hits`), every stage all of whose sets were
/// found and every stage that requires none, by rule, in rule order, into
/// `out`; the scratch is cleared for the next record.
fn stages_found(by_primary: &[Vec<u32>], stages: &[StageReq], always: &[u32], sc: &mut Scratch, out: &mut Vec<Candidate>) {
    // Each rule enters `out` at its first stage found; its stage bits
    // gather in the scratch and are filled in at the end.
    let mut mark = |sc: &mut Scratch, st: &StageReq| {
        let bits = &mut sc.rule_bits[st.rule as usize];
        if *bits == 0 {
            out.push(Candidate { rule: st.rule, stages: 0 });
        }
        *bits |= st.bit;
    };
    for h in 0..sc.hits.len() {
        let set = sc.hits[h];
        for &id in &by_primary[set as usize] {
            let st = &stages[id as usize];
            if st.sets[1..].iter().all(|&s| sc.set_hit[s as usize]) {
                mark(sc, st);
            }
        }
    }
    for &id in always {
        mark(sc, &stages[id as usize]);
    }
    for &set in &sc.hits {
        sc.set_hit[set as usize] = false;
    }
    sc.hits.clear();
    out.sort_unstable_by_key(|c| c.rule);
    for c in out.iter_mut() {
        c.stages = std::mem::take(&mut sc.rule_bits[c.rule as usize]);
    }
}

/// One stage of one rule, and the sets it requires (the first is its
/// primary).
#[derive(Debug)]
struct StageReq {
    rule: u32,
    bit: u64,
    sets: Vec<u32>,
}

/// A candidate rule: its index, and the stages the record may match (bit
/// k: stage k, in the order of the rule's positive stages, then its
/// missing-event and `until` stages; stages past the 63rd share bit 63).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub rule: u32,
    pub stages: u64,
}

/// What a set of rules requires, stage by stage: the distinct sets of
/// strings (numbered), each stage's sets, and which stages require none.
#[derive(Debug)]
struct Plan {
    sets: Vec<Vec<Needle>>,
    by_primary: Vec<Vec<u32>>,
    stages: Vec<StageReq>,
    always: Vec<u32>,
    plain_sequence: Vec<bool>,
}

impl Plan {
    /// `enabled` false: every rule sees every record.
    fn new(rules: &[Rule], types: &TypeMap, enabled: bool) -> Plan {
        let mut sets: Vec<Vec<Needle>> = Vec::new();
        let mut stages = Vec::new();
        let mut always = Vec::new();
        let mut plain_sequence = Vec::with_capacity(rules.len());
        for (i, r) in rules.iter().enumerate() {
            let (rule_stages, plain) = match rule_sets(r, types) {
                Some(x) if enabled => x,
                // Unknown: one stage that sees everything.
                _ => (vec![Vec::new()], false),
            };
            plain_sequence.push(plain);
            for (k, stage_sets) in rule_stages.into_iter().enumerate() {
                let id = stages.len() as u32;
                let mut req = StageReq { rule: i as u32, bit: 1u64 << k.min(63), sets: Vec::new() };
                for set in stage_sets {
                    let sid = match sets.iter().position(|s| *s == set) {
                        Some(p) => p,
                        None => {
                            sets.push(set);
                            sets.len() - 1
                        }
                    };
                    req.sets.push(sid as u32);
                }
                if req.sets.is_empty() {
                    always.push(id);
                }
                stages.push(req);
            }
        }
        let mut by_primary = vec![Vec::new(); sets.len()];
        for (id, st) in stages.iter().enumerate() {
            if let Some(&p) = st.sets.first() {
                by_primary[p as usize].push(id as u32);
            }
        }
        Plan { sets, by_primary, stages, always, plain_sequence }
    }

    fn scratch(&self) -> Scratch {
        Scratch { set_hit: vec![false; self.sets.len()], hits: Vec::new(), rule_bits: vec![0; self.plain_sequence.len()] }
    }

    /// See [`stages_found`].
    fn found(&self, sc: &mut Scratch, out: &mut Vec<Candidate>) {
        stages_found(&self.by_primary, &self.stages, &self.always, sc, out);
    }
}

impl RuleIndex {
    /// The index of `rules` (`enabled` false: every rule sees every record).
    pub fn new(rules: &[Rule], types: &TypeMap, enabled: bool) -> RuleIndex {
        let mut json = [IndexBuilder::default(), IndexBuilder::default()];
        let mut raw = [IndexBuilder::default(), IndexBuilder::default()];
        let plan = Plan::new(rules, types, enabled);
        for (sid, set) in plan.sets.iter().enumerate() {
            for n in set {
                let c = n.ci as usize;
                raw[c].add(n.text.clone(), sid as u32);
                json[c].add(if n.exact { format!("\"{}\"", n.text) } else { n.text.clone() }, sid as u32);
            }
        }
        let [j0, j1] = json;
        let [r0, r1] = raw;
        RuleIndex {
            json: [j0.build(false), j1.build(true)],
            raw: [r0.build(false), r1.build(true)],
            scratch: std::cell::RefCell::new(plan.scratch()),
            found: std::cell::RefCell::new(Vec::new()),
            plan,
        }
    }

    /// Whether rule `i` is a plain sequence: no missing-event or `until`
    /// stage, at least two stages (its later stages can only extend a
    /// partial sequence).
    pub fn plain_sequence(&self, i: usize) -> bool {
        self.plan.plain_sequence[i]
    }

    /// The rules the record could match, in rule order, with the stages.
    pub fn candidates(&self, record: &[u8], json: bool, out: &mut Vec<Candidate>) {
        out.clear();
        // A JSON escape could spell a string otherwise: every rule, every stage.
        if json && memchr::memchr(b'\\', record).is_some() {
            out.extend((0..self.plan.plain_sequence.len() as u32).map(|rule| Candidate { rule, stages: u64::MAX }));
            return;
        }
        let mut guard = self.scratch.borrow_mut();
        let sc = &mut *guard;
        let indexes = if json { &self.json } else { &self.raw };
        for ix in indexes {
            let Some(ac) = &ix.ac else { continue };
            for m in ac.find_overlapping_iter(record) {
                // A JSON string value is followed by what follows a value,
                // never by the `:` of a member name.
                if json && ix.exact[m.pattern().as_usize()] && is_member_name(record, m.end()) {
                    continue;
                }
                for &set in &ix.sets[m.pattern().as_usize()] {
                    if !sc.set_hit[set as usize] {
                        sc.set_hit[set as usize] = true;
                        sc.hits.push(set);
                    }
                }
            }
        }
        self.plan.found(sc, out);
    }

    /// Whether the record could match any rule (for a one-rule index).
    pub fn may_match(&self, record: &[u8], json: bool) -> bool {
        let mut out = self.found.borrow_mut();
        self.candidates(record, json, &mut out);
        !out.is_empty()
    }
}

/// Whether the string ending at `end` (after its closing quote) is a member
/// name: the next non-blank byte is `:`.
fn is_member_name(record: &[u8], end: usize) -> bool {
    record[end..].iter().find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n')) == Some(&b':')
}

/// Patterns and the sets each serves, being gathered.
#[derive(Default)]
struct IndexBuilder {
    pats: Vec<String>,
    sets: Vec<Vec<u32>>,
}

impl IndexBuilder {
    fn add(&mut self, pat: String, set: u32) {
        let k = match self.pats.iter().position(|p| *p == pat) {
            Some(k) => k,
            None => {
                self.pats.push(pat);
                self.sets.push(Vec::new());
                self.pats.len() - 1
            }
        };
        if !self.sets[k].contains(&set) {
            self.sets[k].push(set);
        }
    }

    fn build(self, ci: bool) -> Index {
        let exact = self.pats.iter().map(|p| p.len() >= 2 && p.starts_with('"') && p.ends_with('"')).collect();
        let ac = (!self.pats.is_empty())
            .then(|| {
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(ci)
                    .match_kind(MatchKind::Standard)
                    .kind(Some(AhoCorasickKind::DFA))
                    .build(&self.pats)
                    .ok()
            })
            .flatten();
        Index { ac, sets: self.sets, exact }
    }
}

/// One automaton and the sets of each of its patterns.
#[derive(Debug)]
struct Index {
    ac: Option<AhoCorasick>,
    sets: Vec<Vec<u32>>,
    /// Per pattern: a whole JSON string value, quotes included.
    exact: Vec<bool>,
}

/// Which rules a record could match, and by which stages, from the values
/// of the fields their stages require, read once for all rules (see the
/// module docs): a stage is a candidate when each of its sets of strings
/// has one in its field — a whole value (looked up in a hash map), or a
/// fragment of one (an Aho-Corasick automaton per field, over that field's
/// values only).
#[derive(Debug)]
struct FieldIndex {
    /// Whole values, case-sensitive and (ASCII-lower-cased)
    /// case-insensitive: value → (field, set).
    exact: foldhash::HashMap<Box<str>, Vec<(Slot, u32)>>,
    exact_ci: foldhash::HashMap<Box<str>, Vec<(Slot, u32)>>,
    /// The fields looked up, each once.
    exact_slots: Vec<ExactSlot>,
    /// Fragments: per field and case, an automaton and each pattern's sets.
    frags: Vec<FragIndex>,
    plan: Plan,
    scratch: Scratch,
    fold: String,
}

/// A field whose whole values are looked up: the longest string sought
/// there, case-sensitively and case-insensitively (`None`: none).
#[derive(Debug, Clone, Copy)]
struct ExactSlot {
    slot: Slot,
    cs: Option<usize>,
    ci: Option<usize>,
}

#[derive(Debug)]
struct FragIndex {
    slot: Slot,
    ci: bool,
    ac: AhoCorasick,
    sets: Vec<Vec<u32>>,
}

impl FieldIndex {
    fn new(rules: &[Rule], types: &TypeMap, enabled: bool, table: &mut FieldTable) -> FieldIndex {
        let plan = Plan::new(rules, types, enabled);
        let mut exact: foldhash::HashMap<Box<str>, Vec<(Slot, u32)>> = Default::default();
        let mut exact_ci: foldhash::HashMap<Box<str>, Vec<(Slot, u32)>> = Default::default();
        let mut exact_slots: Vec<ExactSlot> = Vec::new();
        let mut frag_builders: Vec<(Slot, bool, IndexBuilder)> = Vec::new();
        for (sid, set) in plan.sets.iter().enumerate() {
            let sid = sid as u32;
            for n in set {
                let slot = table.intern(&n.field);
                if n.exact {
                    let (map, key) = if n.ci { (&mut exact_ci, n.text.to_ascii_lowercase()) } else { (&mut exact, n.text.clone()) };
                    let e = map.entry(key.into_boxed_str()).or_default();
                    if !e.contains(&(slot, sid)) {
                        e.push((slot, sid));
                    }
                    let x = match exact_slots.iter().position(|x| x.slot == slot) {
                        Some(p) => &mut exact_slots[p],
                        None => {
                            exact_slots.push(ExactSlot { slot, cs: None, ci: None });
                            exact_slots.last_mut().expect("just pushed")
                        }
                    };
                    let longest = if n.ci { &mut x.ci } else { &mut x.cs };
                    *longest = Some(longest.unwrap_or(0).max(n.text.len()));
                } else {
                    let b = match frag_builders.iter().position(|x| x.0 == slot && x.1 == n.ci) {
                        Some(p) => &mut frag_builders[p].2,
                        None => {
                            frag_builders.push((slot, n.ci, IndexBuilder::default()));
                            &mut frag_builders.last_mut().expect("just pushed").2
                        }
                    };
                    b.add(n.text.clone(), sid);
                }
            }
        }
        let frags = frag_builders
            .into_iter()
            .filter_map(|(slot, ci, b)| {
                let ix = b.build(ci);
                Some(FragIndex { slot, ci, ac: ix.ac?, sets: ix.sets })
            })
            .collect();
        FieldIndex { exact, exact_ci, exact_slots, frags, scratch: plan.scratch(), plan, fold: String::new() }
    }

    /// Every rule, every stage (a record the table's reader is unsure of).
    fn all(&self, out: &mut Vec<Candidate>) {
        out.clear();
        out.extend((0..self.plan.plain_sequence.len() as u32).map(|rule| Candidate { rule, stages: u64::MAX }));
    }

    /// The candidates of a record read into `f`, in rule order.
    fn candidates(&mut self, f: &Fields, out: &mut Vec<Candidate>) {
        out.clear();
        let sc = &mut self.scratch;
        let hit = |sc: &mut Scratch, set: u32| {
            if !sc.set_hit[set as usize] {
                sc.set_hit[set as usize] = true;
                sc.hits.push(set);
            }
        };
        for &ExactSlot { slot, cs, ci } in &self.exact_slots {
            for v in f.get(slot) {
                let Scalar::Str(s) = v else { continue };
                let s = s.as_ref();
                // A value longer than every string sought there is none of them.
                if cs.is_some_and(|longest| s.len() <= longest) {
                    if let Some(list) = self.exact.get(s) {
                        list.iter().filter(|x| x.0 == slot).for_each(|x| hit(sc, x.1));
                    }
                }
                // (Lower-casing keeps an ASCII value's length, not any other's.)
                if ci.is_some_and(|longest| s.len() <= longest || !s.is_ascii()) {
                    self.fold.clear();
                    if s.is_ascii() {
                        self.fold.extend(s.chars().map(|c| c.to_ascii_lowercase()));
                    } else {
                        self.fold.extend(s.chars().flat_map(char::to_lowercase));
                    }
                    if let Some(list) = self.exact_ci.get(self.fold.as_str()) {
                        list.iter().filter(|x| x.0 == slot).for_each(|x| hit(sc, x.1));
                    }
                }
            }
        }
        for fx in &self.frags {
            for v in f.get(fx.slot) {
                let Scalar::Str(s) = v else { continue };
                let s = s.as_ref();
                let text = if fx.ci && !s.is_ascii() {
                    self.fold.clear();
                    self.fold.extend(s.chars().flat_map(char::to_lowercase));
                    self.fold.as_str()
                } else {
                    s
                };
                for m in fx.ac.find_overlapping_iter(text) {
                    fx.sets[m.pattern().as_usize()].iter().for_each(|&set| hit(sc, set));
                }
            }
        }
        self.plan.found(sc, out);
    }
}

/// The stage conditions of every rule, on one table of every field any
/// rule reads: a record the index lets through is read once, and each
/// candidate rule's stages are tested on those fields before its detector
/// sees the record. A fast-engine rule's stages are its own compiled
/// stages (the test is the detector's own first step); a generic rule's
/// are a relaxation that any event matching the stage passes: the parts of
/// its condition the fast engine evaluates as Elasticsearch does, with
/// every other conjunct dropped (an `or` or `not` over anything else is
/// dropped whole).
#[derive(Debug)]
struct PreCheck {
    table: FieldTable,
    category_slot: Slot,
    /// Per rule, per stage ([`rule_sets`]'s order), the test; `None`: the
    /// rule is not pre-checked (it sees every record the index gives it).
    rules: Vec<Option<Vec<StageCheck>>>,
    fields: FieldsBuf,
}

#[derive(Debug)]
struct StageCheck {
    stage: CompiledStage,
    /// Slots typed as addresses: an unreadable address there makes the
    /// test unsure (the record then goes to the rule).
    ip_slots: Vec<Slot>,
}

impl PreCheck {
    fn new(rules: &[Rule], types: &TypeMap) -> PreCheck {
        let mut table = FieldTable::new();
        let category_slot = table.intern("event.category");
        let checks = rules.iter().map(|r| stage_checks(r, types, &mut table)).collect();
        PreCheck { table, category_slot, rules: checks, fields: FieldsBuf::default() }
    }
}

/// A compiled query's stages, moved onto `table`.
fn moved_stages(q: &CompiledQuery, table: &mut FieldTable) -> Vec<StageCheck> {
    let map: Vec<Slot> = (0..q.fields.len()).map(|i| table.intern(q.fields.name(i as Slot))).collect();
    let ip_slots: Vec<Slot> = q.ip_slots.iter().map(|&s| map[s as usize]).collect();
    q.stages
        .iter()
        .map(|st| StageCheck {
            stage: CompiledStage { category: st.category.clone(), predicate: remap(&st.predicate, &map), keys: Vec::new() },
            ip_slots: ip_slots.clone(),
        })
        .collect()
}

fn remap(p: &Pred, map: &[Slot]) -> Pred {
    match p {
        Pred::Const(b) => Pred::Const(*b),
        Pred::And(v) => Pred::And(v.iter().map(|x| remap(x, map)).collect()),
        Pred::Or(v) => Pred::Or(v.iter().map(|x| remap(x, map)).collect()),
        Pred::Not(x) => Pred::Not(Box::new(remap(x, map))),
        Pred::IsNull(s) => Pred::IsNull(map[*s as usize]),
        Pred::Any(s, t) => Pred::Any(map[*s as usize], t.clone()),
    }
}

/// One rule's stage tests (see [`PreCheck`]).
fn stage_checks(rule: &Rule, types: &TypeMap, table: &mut FieldTable) -> Option<Vec<StageCheck>> {
    let Some(q) = rule.generic_query() else {
        return Some(moved_stages(rule.compiled(), table));
    };
    let stages: Vec<&EventQuery> = match q {
        Query::Event(e) => vec![e],
        Query::Sequence(s) => {
            let positive = s.stages.iter().filter(|st| !st.missing);
            let extra = s.stages.iter().filter(|st| st.missing).chain(s.until.as_ref());
            positive.chain(extra).map(|st| &st.query).collect()
        }
        Query::Sample(s) => s.stages.iter().map(|st| &st.query).collect(),
    };
    let mut out = Vec::with_capacity(stages.len());
    for e in stages {
        let condition = relax(types, &e.condition).map_or(Expr::Literal(Literal::Bool(true), e.span), |(x, _)| x);
        let one = Query::Event(EventQuery { category: e.category.clone(), condition, span: e.span });
        let compiled = compile_precheck(&one, rule.query_text()).ok()?;
        out.extend(moved_stages(&compiled, table));
    }
    Some(out)
}

/// What any event satisfying `e` satisfies, in the fast engine's terms:
/// `e` itself where the fast engine evaluates it as Elasticsearch does
/// (`true` in the second place), else an `and` of the conjuncts that can be
/// relaxed; `None`: nothing known.
fn relax(types: &TypeMap, e: &Expr) -> Option<(Expr, bool)> {
    let alone = Query::Event(EventQuery { category: None, condition: e.clone(), span: Default::default() });
    if typed_like_elasticsearch(&alone) && compile(&alone, "").is_ok() {
        return Some((e.clone(), true));
    }
    match e {
        Expr::And(items, span) => {
            let kept: Vec<Expr> = items.iter().filter_map(|x| relax(types, x)).map(|(x, _)| x).collect();
            (!kept.is_empty()).then(|| (Expr::And(kept, *span), false))
        }
        Expr::Or(items, span) => {
            let all: Option<Vec<Expr>> = items.iter().map(|x| relax(types, x).map(|(x, _)| x)).collect();
            all.map(|v| (Expr::Or(v, *span), false))
        }
        // A regular expression on a string field, kept as it is (the
        // pre-check's `Test::Regex`); exact, but never under a `not`.
        Expr::Match { op: MatchOp::Regex | MatchOp::RegexInsensitive, negated: false, subject, values, .. }
            if is_string_field(types, subject)
                && values.iter().all(|v| matches!(v, Expr::Literal(Literal::Str(_), _)))
                && compile_precheck(&alone, "").is_ok() =>
        {
            Some((e.clone(), false))
        }
        _ => None,
    }
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
    index: FieldIndex,
    candidates: Vec<Candidate>,
    precheck: PreCheck,
    alerts: VecDeque<PackAlert>,
    /// `max_pending_sequences`, for the whole pack, and the partial
    /// sequences all rules keep (as of their last record).
    global_cap: u64,
    pending: u64,
    /// Whether a plain sequence rule with nothing waiting may skip records
    /// that can match only its later stages (not with `max_lateness`, where
    /// an earlier first-stage event may still arrive).
    gate_later_stages: bool,
    records: u64,
    /// Records tested against a rule, summed over rules.
    tested: u64,
    /// Stage matches without a usable `@timestamp`, summed over rules.
    bad_timestamps: u64,
    /// Per rule, the records the index gave it (before its stages' tests).
    indexed_by_rule: Vec<u64>,
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
        let n_rules = rules.len();
        let types = config.types();
        let mut precheck = PreCheck::new(&rules, &types);
        let index = FieldIndex::new(&rules, &types, config.prefilter, &mut precheck.table);
        PackDetector {
            index,
            candidates: Vec::with_capacity(rules.len()),
            precheck,
            gate_later_stages: config.max_lateness_ms == 0,
            global_cap: config.max_pending_sequences as u64,
            pending: 0,
            rules,
            detectors,
            alerts: VecDeque::new(),
            records: 0,
            tested: 0,
            bad_timestamps: 0,
            indexed_by_rule: vec![0; n_rules],
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
        self.pending = self.detectors.iter().map(Detector::pending_count).sum();
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
            .enumerate()
            .map(|(i, (r, d))| {
                let s = d.stats();
                let mut m = serde_json::Map::new();
                m.insert("rule_id".into(), r.meta().rule_id.clone().into());
                m.insert("name".into(), r.meta().name.clone().into());
                m.insert("engine".into(), if d.is_generic() { "generic" } else { "fast" }.into());
                m.insert("alerts".into(), (s.annotated + s.standalone_alerts).into());
                m.insert("indexed".into(), self.indexed_by_rule[i].into());
                for (k, v) in s.fields() {
                    m.insert(k.to_string(), v.into());
                }
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

    /// Candidate rules the index gave, summed over records, before their
    /// stages were tested on the record.
    pub fn indexed(&self) -> u64 {
        self.indexed_by_rule.iter().sum()
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
        self.select(record, msgpack);
        let before = self.alerts.len();
        let mut err = None;
        // Rules on the generic engine read the record as a tree: once for all.
        let mut parsed = None;
        for k in 0..self.candidates.len() {
            let i = self.candidates[k].rule as usize;
            let d = &mut self.detectors[i];
            self.tested += 1;
            // One cap for the whole pack: this rule may keep what the others
            // leave, and evicts its own oldest beyond that.
            let own = d.pending_count();
            let others = self.pending.saturating_sub(own);
            d.set_pending_cap(self.global_cap.saturating_sub(others).max(1) as usize);
            let bad_before = d.bad_timestamp_count();
            let verdict = if d.is_generic() {
                let tree = parsed.get_or_insert_with(|| crate::engine::generic::read(record, msgpack));
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
            self.pending = others + self.detectors[i].pending_count();
            while let Some(a) = self.detectors[i].take_alert() {
                self.alerts.push_back(signal(i, a.msgpack, a.bytes));
            }
        }
        match err {
            Some(e) if self.alerts.len() == before => Err(e),
            _ => Ok(self.alerts.len() - before),
        }
    }

    /// The candidates of one record (`FieldIndex`), keeping of them only
    /// the stages whose test the record passes (`PreCheck`), and the
    /// candidates with a stage left. A record the table's reader is unsure
    /// of goes to every rule (their detectors then read and count it).
    fn select(&mut self, record: &[u8], msgpack: bool) {
        let pc = &mut self.precheck;
        let mut fields = pc.fields.take();
        let read = if msgpack {
            crate::format::msgpack::extract(&pc.table, record, &mut fields).is_ok()
        } else {
            pc.table.scan(record, &mut fields).is_ok()
        };
        if !read {
            self.index.all(&mut self.candidates);
            pc.fields.put_back(fields);
            return;
        }
        self.index.candidates(&fields, &mut self.candidates);
        for c in &self.candidates {
            self.indexed_by_rule[c.rule as usize] += 1;
        }
        let (detectors, plain, gate) = (&self.detectors, &self.index.plan.plain_sequence, self.gate_later_stages);
        self.candidates.retain_mut(|c| {
            // The later stages of a plain sequence in which nothing waits
            // can extend nothing (see the module docs): not tested.
            if gate && plain[c.rule as usize] && !detectors[c.rule as usize].has_state() {
                c.stages &= 1;
                if c.stages == 0 {
                    return false;
                }
            }
            let Some(checks) = &pc.rules[c.rule as usize] else { return true };
            let mut bits = 0u64;
            for (k, ch) in checks.iter().enumerate() {
                let bit = 1u64 << k.min(63);
                if c.stages & bit == 0 {
                    continue;
                }
                let unsure_ip = ch.ip_slots.iter().any(|&s| {
                    fields.get(s).any(|v| match v {
                        Scalar::Null => false,
                        Scalar::Str(x) => crate::format::ip::parse_ip(x).is_none(),
                        _ => true,
                    })
                });
                if unsure_ip || ch.stage.matches(&fields, pc.category_slot) {
                    bits |= bit;
                }
            }
            c.stages = bits;
            bits != 0
        });
        pc.fields.put_back(fields);
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
        self.pending = self.detectors.iter().map(Detector::pending_count).sum();
        self.alerts.len() - before
    }
}

/// An alert record with `event.kind: "signal"` (Kibana's value for alerts).
fn signal(rule: usize, msgpack: bool, bytes: Vec<u8>) -> PackAlert {
    let mut roots = serde_json::Map::new();
    roots.insert("event".into(), serde_json::json!({"kind": "signal"}));
    let mut out = Vec::with_capacity(bytes.len() + 32);
    let merged =
        if msgpack { crate::format::msgpack::merge(&bytes, roots, &mut out) } else { crate::format::merge::merge(&bytes, roots, &mut out) };
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
        Err(crate::config::settings::LoadError::Config(e)) if e.message == crate::config::settings::NO_RULE => Ok((Vec::new(), Vec::new())),
        Err(e) => Err(std::io::Error::other(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(q: &str) -> Option<Vec<Vec<Needle>>> {
        rule_needles(&Rule::from_eql(q, crate::config::rule::meta_for_file("t")).unwrap(), &TypeMap::ecs())
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
