//! The index of required strings: which rules, and which of their stages, a
//! record could match. [`RuleIndex`] over a record's bytes (one
//! Aho-Corasick automaton), and the pack's index over the fields read once
//! for all rules (whole values by hash, fragments by one automaton a field).

use super::*;

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
pub(super) struct Scratch {
    pub(super) set_hit: Vec<bool>,
    pub(super) hits: Vec<u32>,
    pub(super) rule_bits: Vec<u64>,
}

/// From the sets found (`sc.hits`), every stage all of whose sets were
/// found and every stage that requires none, by rule, in rule order, into
/// `out`; the scratch is cleared for the next record.
pub(super) fn stages_found(by_primary: &[Vec<u32>], stages: &[StageReq], always: &[u32], sc: &mut Scratch, out: &mut Vec<Candidate>) {
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
pub(super) struct StageReq {
    pub(super) rule: u32,
    pub(super) bit: u64,
    pub(super) sets: Vec<u32>,
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
pub(super) struct Plan {
    pub(super) sets: Vec<Vec<Needle>>,
    pub(super) by_primary: Vec<Vec<u32>>,
    pub(super) stages: Vec<StageReq>,
    pub(super) always: Vec<u32>,
    pub(super) plain_sequence: Vec<bool>,
}

impl Plan {
    /// `enabled` false: every rule sees every record.
    pub(super) fn new(rules: &[Rule], types: &TypeMap, enabled: bool) -> Plan {
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

    pub(super) fn scratch(&self) -> Scratch {
        Scratch { set_hit: vec![false; self.sets.len()], hits: Vec::new(), rule_bits: vec![0; self.plain_sequence.len()] }
    }

    /// See [`stages_found`].
    pub(super) fn found(&self, sc: &mut Scratch, out: &mut Vec<Candidate>) {
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
pub(super) fn is_member_name(record: &[u8], end: usize) -> bool {
    record[end..].iter().find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n')) == Some(&b':')
}

/// Patterns and the sets each serves, being gathered.
#[derive(Default)]
pub(super) struct IndexBuilder {
    pub(super) pats: Vec<String>,
    pub(super) sets: Vec<Vec<u32>>,
    /// Per pattern: sought case-insensitively ([`IndexBuilder::add_case`]).
    pub(super) ci: Vec<bool>,
}

impl IndexBuilder {
    pub(super) fn add(&mut self, pat: String, set: u32) {
        self.add_case(pat, false, set)
    }

    /// A pattern and whether it is sought case-insensitively (the same text
    /// both ways is two patterns).
    pub(super) fn add_case(&mut self, pat: String, ci: bool, set: u32) {
        let k = match self.pats.iter().zip(&self.ci).position(|(p, &c)| *p == pat && c == ci) {
            Some(k) => k,
            None => {
                self.pats.push(pat);
                self.sets.push(Vec::new());
                self.ci.push(ci);
                self.pats.len() - 1
            }
        };
        if !self.sets[k].contains(&set) {
            self.sets[k].push(set);
        }
    }

    pub(super) fn build(self, ci: bool) -> Index {
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
pub(super) struct Index {
    pub(super) ac: Option<AhoCorasick>,
    pub(super) sets: Vec<Vec<u32>>,
    /// Per pattern: a whole JSON string value, quotes included.
    pub(super) exact: Vec<bool>,
}

/// Which rules a record could match, and by which stages, from the values
/// of the fields their stages require, read once for all rules (see the
/// module docs): a stage is a candidate when each of its sets of strings
/// has one in its field — a whole value (looked up in a hash map), or a
/// fragment of one (an Aho-Corasick automaton per field, over that field's
/// values only).
#[derive(Debug)]
pub(super) struct FieldIndex {
    /// Whole values, case-sensitive and (ASCII-lower-cased)
    /// case-insensitive: value → (field, set).
    pub(super) exact: foldhash::HashMap<Box<str>, Vec<(Slot, u32)>>,
    pub(super) exact_ci: foldhash::HashMap<Box<str>, Vec<(Slot, u32)>>,
    /// The fields looked up, each once.
    pub(super) exact_slots: Vec<ExactSlot>,
    /// Fragments: per field and case, an automaton and each pattern's sets.
    pub(super) frags: Vec<FragIndex>,
    pub(super) plan: Plan,
    pub(super) scratch: Scratch,
    pub(super) fold: String,
}

/// A field whose whole values are looked up: the longest string sought
/// there, case-sensitively and case-insensitively (`None`: none).
#[derive(Debug, Clone, Copy)]
pub(super) struct ExactSlot {
    pub(super) slot: Slot,
    /// The lengths of the values sought there, case-sensitively and not
    /// ([`length_bit`]): a value of no such length is not looked up (most
    /// values of a field are of other lengths than the few sought).
    pub(super) cs: u64,
    pub(super) ci: u64,
}

/// A length's bit in [`ExactSlot`]'s masks (the last bit: 63 bytes or more).
#[inline]
pub(super) fn length_bit(len: usize) -> u64 {
    1u64 << len.min(63)
}

/// The fragments sought in one field's values, case-sensitive and not, in
/// one automaton (ASCII-case-insensitive when any fragment is): a match of
/// a case-sensitive fragment counts when the value's bytes there are the
/// fragment's. (A value that is not ASCII is searched as it is for the
/// case-sensitive fragments and lower-cased for the others.)
#[derive(Debug)]
pub(super) struct FragIndex {
    pub(super) slot: Slot,
    /// Whether any fragment is case-insensitive (and the automaton so).
    pub(super) any_ci: bool,
    pub(super) dfa: aho_corasick::dfa::DFA,
    pub(super) sets: Vec<Vec<u32>>,
    /// Per fragment: its bytes when it is case-sensitive, `None` when not.
    pub(super) exact_case: Vec<Option<Box<[u8]>>>,
}

impl FieldIndex {
    pub(super) fn new(rules: &[Rule], types: &TypeMap, enabled: bool, table: &mut FieldTable) -> FieldIndex {
        let plan = Plan::new(rules, types, enabled);
        let mut exact: foldhash::HashMap<Box<str>, Vec<(Slot, u32)>> = Default::default();
        let mut exact_ci: foldhash::HashMap<Box<str>, Vec<(Slot, u32)>> = Default::default();
        let mut exact_slots: Vec<ExactSlot> = Vec::new();
        let mut frag_builders: Vec<(Slot, IndexBuilder)> = Vec::new();
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
                            exact_slots.push(ExactSlot { slot, cs: 0, ci: 0 });
                            exact_slots.last_mut().expect("just pushed")
                        }
                    };
                    *(if n.ci { &mut x.ci } else { &mut x.cs }) |= length_bit(n.text.len());
                } else {
                    let b = match frag_builders.iter().position(|x| x.0 == slot) {
                        Some(p) => &mut frag_builders[p].1,
                        None => {
                            frag_builders.push((slot, IndexBuilder::default()));
                            &mut frag_builders.last_mut().expect("just pushed").1
                        }
                    };
                    b.add_case(n.text.clone(), n.ci, sid);
                }
            }
        }
        let frags = frag_builders
            .into_iter()
            .filter_map(|(slot, b)| {
                let any_ci = b.ci.iter().any(|&c| c);
                let exact_case = b.pats.iter().zip(&b.ci).map(|(p, &ci)| (!ci).then(|| p.as_bytes().into())).collect();
                let dfa = frag_dfa(&b.pats, any_ci).ok()?;
                Some(FragIndex { slot, any_ci, dfa, sets: b.sets, exact_case })
            })
            .collect();
        FieldIndex { exact, exact_ci, exact_slots, frags, scratch: plan.scratch(), plan, fold: String::new() }
    }

    /// Every stage of the first `rules` rules (a record the table's reader
    /// is unsure of: the pack's own rules, not those it gates).
    pub(super) fn all(&self, rules: usize, out: &mut Vec<Candidate>) {
        out.clear();
        out.extend((0..rules.min(self.plan.plain_sequence.len()) as u32).map(|rule| Candidate { rule, stages: u64::MAX }));
    }

    /// The candidates of a record read into `f`, in rule order.
    pub(super) fn candidates(&mut self, f: &Fields, out: &mut Vec<Candidate>) {
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
                // A value of another length than every string sought there
                // is none of them.
                if cs & length_bit(s.len()) != 0 {
                    if let Some(list) = self.exact.get(s) {
                        list.iter().filter(|x| x.0 == slot).for_each(|x| hit(sc, x.1));
                    }
                }
                // (Lower-casing keeps an ASCII value's length, not any other's.)
                if ci != 0 && (ci & length_bit(s.len()) != 0 || !s.is_ascii()) {
                    self.fold.clear();
                    if s.is_ascii() {
                        self.fold.push_str(s);
                        self.fold.make_ascii_lowercase();
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
                // Case-sensitive fragments (and, on ASCII, all of them) on
                // the value as it is.
                let ascii = s.is_ascii();
                each_match(&fx.dfa, s.as_bytes(), |k, start, end| {
                    let found = match &fx.exact_case[k] {
                        Some(bytes) => s.as_bytes()[start..end] == **bytes,
                        None => ascii,
                    };
                    if found {
                        fx.sets[k].iter().for_each(|&set| hit(sc, set));
                    }
                });
                // Case-insensitive ones on a value that is not ASCII: on its
                // lower case.
                if fx.any_ci && !ascii {
                    self.fold.clear();
                    self.fold.extend(s.chars().flat_map(char::to_lowercase));
                    each_match(&fx.dfa, self.fold.as_bytes(), |k, _, _| {
                        if fx.exact_case[k].is_none() {
                            fx.sets[k].iter().for_each(|&set| hit(sc, set));
                        }
                    });
                }
            }
        }
        self.plan.found(sc, out);
    }
}

/// The automaton of one field's fragments, for [`each_match`] (walked by
/// hand: a field's values are short and many, and an iterator's setup per
/// value cost more than the walk).
pub(super) fn frag_dfa<P: AsRef<[u8]>>(pats: &[P], ci: bool) -> Result<aho_corasick::dfa::DFA, aho_corasick::BuildError> {
    aho_corasick::dfa::DFA::builder().ascii_case_insensitive(ci).match_kind(MatchKind::Standard).prefilter(false).build(pats)
}

/// Every match of `dfa` (standard semantics, no empty pattern) in `hay`,
/// overlapping ones included, as `(pattern, start, end)`: the automaton's
/// states stepped through by hand, as its overlapping search does, without
/// that search's setup for every value.
#[inline]
pub(super) fn each_match(dfa: &aho_corasick::dfa::DFA, hay: &[u8], mut f: impl FnMut(usize, usize, usize)) {
    use aho_corasick::automaton::Automaton;
    use aho_corasick::Anchored;
    let Ok(mut sid) = dfa.start_state(Anchored::No) else { return };
    for (i, &b) in hay.iter().enumerate() {
        sid = dfa.next_state(Anchored::No, sid, b);
        if dfa.is_special(sid) {
            if dfa.is_dead(sid) {
                return;
            }
            if !dfa.is_match(sid) {
                continue;
            }
            for k in 0..dfa.match_len(sid) {
                let pid = dfa.match_pattern(sid, k);
                f(pid.as_usize(), i + 1 - dfa.pattern_len(pid), i + 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand walk finds every match the crate's overlapping search
    /// finds, and no other: random patterns over a small alphabet (so that
    /// they overlap, nest and share prefixes), both case modes, random
    /// haystacks with bytes outside the alphabet and outside ASCII.
    #[test]
    fn each_match_finds_what_the_overlapping_search_finds() {
        let mut rnd = crate::xorshift(0x5eed_a11c);
        let alphabet = b"abAB/.-";
        for round in 0..300 {
            let ci = round % 2 == 1;
            let n = 1 + (rnd() % 40) as usize;
            let pats: Vec<Vec<u8>> = (0..n)
                .map(|_| (0..3 + rnd() % 4).map(|_| alphabet[(rnd() % alphabet.len() as u64) as usize]).collect())
                .collect();
            let dfa = frag_dfa(&pats, ci).unwrap();
            let ac = AhoCorasickBuilder::new().ascii_case_insensitive(ci).match_kind(MatchKind::Standard).build(&pats).unwrap();
            for _ in 0..20 {
                let hay: Vec<u8> = (0..rnd() % 60)
                    .map(|_| match rnd() % 10 {
                        0 => 0xc3,
                        1 => b'z',
                        _ => alphabet[(rnd() % alphabet.len() as u64) as usize],
                    })
                    .collect();
                let mut got = Vec::new();
                each_match(&dfa, &hay, |k, s, e| got.push((k, s, e)));
                let mut want: Vec<(usize, usize, usize)> =
                    ac.find_overlapping_iter(&hay).map(|m| (m.pattern().as_usize(), m.start(), m.end())).collect();
                got.sort_unstable();
                want.sort_unstable();
                assert_eq!(got, want, "patterns {pats:?}, haystack {hay:?}, case-insensitive {ci}");
            }
        }
    }
}
