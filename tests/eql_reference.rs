//! The streaming EQL engine (`apt_netcon::eql::Engine`) against a NAIVE
//! BATCH REFERENCE of Elasticsearch's sequence semantics (`TumblingWindow`,
//! `SequenceMatcher`, `KeyToSequences`), written from the semantics alone
//! (`../shared/spec/EQL.md`), not from the engine's state machine.
//!
//! The reference sees the whole stream at once (sorted by `@timestamp`, ties
//! by ordinal) and walks it event by event, keeping plain lists of partial
//! sequences per join key and per stage; missing-event stages are checked
//! afterwards on each completed candidate by scanning the whole stream. It is
//! quadratic and makes no attempt to be clever. What it shares with the
//! engine is only the evaluation of ONE stage's condition on ONE event: per
//! stage a one-stage event query `"<category> where <cond>"` is compiled with
//! [`Engine`] and each event is pushed through it alone. Join keys are read
//! from the JSON directly.
//!
//! Semantics implemented by the reference:
//! * join key = the sequence's `by` fields then the stage's; an event joins
//!   under every combination of its key fields' distinct non-null values; a
//!   non-optional key without a value keeps the event out of that stage, an
//!   optional one (`?k`) joins as null;
//! * per event, positive stages from the LAST down to the first. Stage 0: a
//!   new partial of the key. Stage n > 0: the LATEST partial of stage n−1 of
//!   the key whose last event is strictly earlier is taken; it and every
//!   older partial of stage n−1 of the key are removed; it is dropped when
//!   `t − start > maxspan`, or when an `until` event of the key lies in
//!   [its last event, the current event); else extended (and a result when n
//!   is the last positive stage);
//! * `with runs=N` repeats the stage N times;
//! * missing-event stages `![q]`, checked on each completed candidate with
//!   event timestamps and strict bounds: in the middle, rejected by an event
//!   matching `q` with the key strictly between the neighbouring positive
//!   events; leading only, rejected if the latest such event L before the
//!   first positive one has `last − L ≤ maxspan`; trailing only, rejected if
//!   the earliest such event T after the last positive one has
//!   `T − first ≤ maxspan`; both, rejected iff L and T exist and
//!   `T − L ≤ maxspan`. A missing stage's position is `None` in the result.
//!
//! Results are compared as a multiset of (events, keys); the results without
//! a trailing missing stage must also come out in the reference's order (by
//! their last event, ties by key — see [`KNOWN_DIFFERENCES`]). The engine
//! runs with `max_partials` out of reach (eviction is outside these
//! semantics) and `mapping_complete` off. On a difference the test prints
//! the seed, the query, the stream (one JSON per line, `ord` is the
//! ordinal), both result lists, and the stream minimised greedily.
//!
//! A second test runs the reference (and the engine) on hand-worked streams
//! with results derived on paper, so that agreement is not a shared mistake.
//!
//! Environment:
//! * `APT_NETCON_EQL_REF_STREAMS` — streams per query template (default 400);
//! * `APT_NETCON_EQL_REF_SEED` — the base seed (default fixed; printed on
//!   failure);
//! * `APT_NETCON_EQL_REF_ONLY` — run only the template with this name;
//! * `APT_NETCON_EQL_REF_STRICT=1` — check the known differences too.
//!
//! e.g. `APT_NETCON_EQL_REF_STREAMS=3000 cargo test --test eql_reference`.

use apt_netcon::eql::{Engine, EngineOptions, FieldType, Match, TypeMap};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Instant;

const DEFAULT_SEED: u64 = 0x5EC0_E9C1_2024_0A17;
const DEFAULT_STREAMS: u64 = 400;

/// Disagreements with the reference that are known and reported (the
/// engine is believed wrong), skipped so the suite stays green until the
/// engine is fixed: a template name skips that template; a check name
/// (`ties_by_key`: results completed by one event ordered by key) relaxes
/// that check everywhere (and the streams it would fail on are still
/// counted and printed). None at present.
/// `APT_NETCON_EQL_REF_STRICT=1` checks every known difference anyway.
const KNOWN_DIFFERENCES: &[&str] = &[];

fn known(name: &str) -> bool {
    static STRICT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let strict =
        *STRICT.get_or_init(|| std::env::var("APT_NETCON_EQL_REF_STRICT").is_ok_and(|v| v == "1"));
    !strict && KNOWN_DIFFERENCES.contains(&name)
}

// ---------------------------------------------------------------------------
// Query templates
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct StageT {
    cat: &'static str,
    cond: &'static str,
    /// Key fields, `?` prefix: optional.
    by: Vec<&'static str>,
    runs: usize,
    missing: bool,
}

fn st(cat: &'static str, cond: &'static str) -> StageT {
    StageT {
        cat,
        cond,
        by: Vec::new(),
        runs: 1,
        missing: false,
    }
}

fn miss(cat: &'static str, cond: &'static str) -> StageT {
    StageT {
        missing: true,
        ..st(cat, cond)
    }
}

impl StageT {
    fn by(mut self, f: &[&'static str]) -> StageT {
        self.by = f.to_vec();
        self
    }
    fn runs(mut self, n: usize) -> StageT {
        self.runs = n;
        self
    }
    fn text(&self) -> String {
        let mut s = format!(
            "{}[{} where {}]",
            if self.missing { "!" } else { "" },
            self.cat,
            self.cond
        );
        if !self.by.is_empty() {
            write!(s, " by {}", self.by.join(", ")).unwrap();
        }
        if self.runs > 1 {
            write!(s, " with runs={}", self.runs).unwrap();
        }
        s
    }
}

#[derive(Debug, Clone)]
struct Template {
    name: &'static str,
    by: Vec<&'static str>,
    maxspan: Option<i64>,
    stages: Vec<StageT>,
    until: Option<StageT>,
}

impl Template {
    fn query(&self) -> String {
        let mut q = String::from("sequence");
        if !self.by.is_empty() {
            write!(q, " by {}", self.by.join(", ")).unwrap();
        }
        if let Some(m) = self.maxspan {
            write!(q, " with maxspan={m}ms").unwrap();
        }
        for s in &self.stages {
            write!(q, "\n  {}", s.text()).unwrap();
        }
        if let Some(u) = &self.until {
            write!(q, "\nuntil {}", u.text()).unwrap();
        }
        q
    }
}

fn tpl(
    name: &'static str,
    by: &[&'static str],
    maxspan: Option<i64>,
    stages: Vec<StageT>,
) -> Template {
    Template {
        name,
        by: by.to_vec(),
        maxspan,
        stages,
        until: None,
    }
}

fn until(mut t: Template, u: StageT) -> Template {
    t.until = Some(u);
    t
}

fn templates() -> Vec<Template> {
    vec![
        tpl(
            "two_stages",
            &[],
            None,
            vec![st("a", "true"), st("b", "true")],
        ),
        tpl(
            "three_stages_by_h",
            &["h"],
            None,
            vec![
                st("a", "x == \"1\""),
                st("b", "true"),
                st("c", "x != \"2\""),
            ],
        ),
        tpl(
            "by_h_maxspan_small",
            &["h"],
            Some(3),
            vec![st("a", "true"), st("b", "x in (\"1\", \"2\")")],
        ),
        tpl(
            "by_h_maxspan_large",
            &["h"],
            Some(20),
            vec![st("a", "true"), st("b", "true"), st("a", "x != \"3\"")],
        ),
        tpl(
            "four_stages_stage_by_k",
            &[],
            Some(25),
            vec![
                st("a", "true").by(&["k"]),
                st("b", "true").by(&["k"]),
                st("a", "x in (\"1\", \"3\")").by(&["k"]),
                st("c", "true").by(&["k"]),
            ],
        ),
        tpl(
            "by_h_and_stage_k",
            &["h"],
            None,
            vec![st("a", "true").by(&["k"]), st("b", "x != \"1\"").by(&["k"])],
        ),
        tpl(
            "any_any_by_k",
            &["k"],
            Some(6),
            vec![st("any", "true"), st("any", "x == \"2\"")],
        ),
        tpl(
            "runs_2",
            &["k"],
            None,
            vec![st("a", "true").runs(2), st("b", "true")],
        ),
        tpl(
            "runs_3_maxspan",
            &["h"],
            Some(10),
            vec![st("a", "true"), st("any", "x != \"3\"").runs(3)],
        ),
        until(
            tpl(
                "until_by_k",
                &["k"],
                None,
                vec![st("a", "true"), st("b", "true")],
            ),
            st("c", "x == \"1\""),
        ),
        until(
            tpl(
                "until_stage_by_maxspan",
                &["h"],
                Some(15),
                vec![
                    st("a", "true").by(&["k"]),
                    st("any", "x != \"2\"").by(&["k"]),
                    st("b", "true").by(&["k"]),
                ],
            ),
            st("c", "true").by(&["k"]),
        ),
        tpl(
            "missing_middle",
            &["k"],
            None,
            vec![st("a", "true"), miss("c", "true"), st("b", "true")],
        ),
        tpl(
            "missing_middle_maxspan",
            &["h"],
            Some(12),
            vec![
                st("a", "true").by(&["k"]),
                miss("c", "x != \"3\"").by(&["k"]),
                st("b", "true").by(&["k"]),
                st("a", "true").by(&["k"]),
            ],
        ),
        tpl(
            "missing_start",
            &["k"],
            Some(5),
            vec![miss("c", "true"), st("a", "true"), st("b", "true")],
        ),
        tpl(
            "missing_end",
            &["k"],
            Some(5),
            vec![st("a", "true"), st("b", "true"), miss("c", "x == \"1\"")],
        ),
        tpl(
            "missing_both_ends",
            &["h"],
            Some(8),
            vec![
                miss("c", "true"),
                st("a", "true"),
                st("b", "true"),
                miss("c", "x != \"1\""),
            ],
        ),
        tpl(
            "missing_end_single_positive",
            &["k"],
            Some(4),
            vec![st("a", "true"), miss("b", "true")],
        ),
        tpl(
            "missing_start_runs",
            &["h"],
            Some(6),
            vec![miss("c", "true"), st("a", "true").runs(2)],
        ),
        tpl(
            "optional_k",
            &["?k"],
            None,
            vec![st("a", "true"), st("b", "true")],
        ),
        tpl(
            "optional_k_stage_mixed",
            &["h"],
            Some(20),
            vec![
                st("a", "true").by(&["?k"]),
                st("b", "true").by(&["k"]),
                st("any", "x == \"1\"").by(&["?k"]),
            ],
        ),
        until(
            tpl(
                "until_missing_middle_end",
                &["k"],
                Some(8),
                vec![
                    st("a", "true"),
                    miss("b", "x == \"3\""),
                    st("any", "x != \"3\""),
                    miss("c", "true"),
                ],
            ),
            st("c", "x == \"1\""),
        ),
        tpl(
            "runs_missing_middle",
            &["h"],
            None,
            vec![
                st("a", "true").by(&["k"]).runs(2),
                miss("c", "true").by(&["k"]),
                st("b", "true").by(&["k"]),
            ],
        ),
        tpl(
            "optional_k_missing_end",
            &["?k"],
            Some(6),
            vec![st("a", "true"), st("b", "true"), miss("c", "true")],
        ),
    ]
}

// ---------------------------------------------------------------------------
// Engine setup
// ---------------------------------------------------------------------------

fn types() -> TypeMap {
    let mut t = TypeMap::empty();
    t.set("@timestamp", FieldType::Date);
    t.set("event.category", FieldType::Keyword);
    for f in ["k", "h", "x", "ord"] {
        t.set(f, FieldType::Keyword);
    }
    t
}

fn options() -> EngineOptions {
    EngineOptions {
        types: types(),
        timestamp_field: "@timestamp".to_string(),
        sample_window_ms: None,
        // Never evict: eviction is outside the reference's semantics.
        max_partials: usize::MAX / 4,
        carry_fields: Vec::new(),
        mapping_complete: false,
    }
}

type Key = Vec<Option<String>>;
/// One result: per position the ordinal (`None`: missing stage), and keys.
type Res = (Vec<Option<u64>>, Key);

fn run_engine(query: &str, events: &[Value]) -> Vec<Res> {
    let mut e = Engine::new(query, options()).unwrap_or_else(|err| panic!("{query}: {err:?}"));
    let mut out: Vec<Match> = Vec::new();
    for ev in events {
        e.push(ordinal_of(ev), ev, &mut out);
    }
    e.finish(&mut out);
    assert_eq!(e.stats().evicted, 0, "eviction happened");
    out.into_iter().map(|m| (m.events, m.keys)).collect()
}

fn ordinal_of(ev: &Value) -> u64 {
    ev["ord"]
        .as_str()
        .expect("ord")
        .parse()
        .expect("ord number")
}

fn time_of(ev: &Value) -> i64 {
    ev["@timestamp"].as_i64().expect("@timestamp")
}

// ---------------------------------------------------------------------------
// The batch reference
// ---------------------------------------------------------------------------

struct RStage {
    /// A one-stage event query `<cat> where <cond>` (the shared condition
    /// evaluator).
    matcher: Engine,
    /// (field, optional)
    keys: Vec<(String, bool)>,
    missing: bool,
    /// A `runs` repetition of the previous stage (same hits).
    repeat: bool,
}

impl RStage {
    fn new(seq_by: &[&str], s: &StageT) -> RStage {
        let q = format!("{} where {}", s.cat, s.cond);
        let matcher = Engine::new(&q, options()).unwrap_or_else(|e| panic!("{q}: {e:?}"));
        let keys = seq_by
            .iter()
            .chain(&s.by)
            .map(|f| match f.strip_prefix('?') {
                Some(n) => (n.to_string(), true),
                None => (f.to_string(), false),
            })
            .collect();
        RStage {
            matcher,
            keys,
            missing: s.missing,
            repeat: false,
        }
    }

    fn matches(&mut self, ev: &Value) -> bool {
        let mut out = Vec::new();
        self.matcher.push(0, ev, &mut out);
        !out.is_empty()
    }

    /// The key combinations the event joins under at this stage; `None`
    /// when it does not match or a non-optional key has no value.
    fn hit(&mut self, ev: &Value) -> Option<Vec<Key>> {
        if !self.matches(ev) {
            return None;
        }
        let mut combos: Vec<Key> = vec![Vec::new()];
        for (name, optional) in &self.keys {
            let mut vals: Vec<Option<String>> = Vec::new();
            let mut add = |v: &Value| {
                if let Some(s) = v.as_str() {
                    if !vals.contains(&Some(s.to_string())) {
                        vals.push(Some(s.to_string()));
                    }
                }
            };
            match ev.get(name) {
                Some(Value::Array(a)) => a.iter().for_each(&mut add),
                Some(v) => add(v),
                None => {}
            }
            if vals.is_empty() {
                if *optional {
                    vals.push(None);
                } else {
                    return None;
                }
            }
            combos = combos
                .iter()
                .flat_map(|c| {
                    vals.iter().map(move |v| {
                        let mut c = c.clone();
                        c.push(v.clone());
                        c
                    })
                })
                .collect();
        }
        Some(combos)
    }
}

/// How often each of the reference's decisions was taken (coverage).
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    /// Partials removed unused by `trimBefore` (older than the one taken).
    trimmed: u64,
    maxspan_dropped: u64,
    until_dropped: u64,
    /// Candidates rejected by a middle / leading / trailing / both-ends check.
    rejected_middle: u64,
    rejected_edge: u64,
    results: u64,
}

struct Reference {
    counts: Counts,
    /// `runs` expanded.
    stages: Vec<RStage>,
    until: Option<RStage>,
    maxspan: Option<i64>,
}

impl Reference {
    fn new(t: &Template) -> Reference {
        let mut stages = Vec::new();
        for s in &t.stages {
            for r in 0..s.runs {
                let mut st = RStage::new(&t.by, s);
                st.repeat = r > 0;
                stages.push(st);
            }
        }
        let until = t.until.as_ref().map(|u| RStage::new(&t.by, u));
        Reference {
            counts: Counts::default(),
            stages,
            until,
            maxspan: t.maxspan,
        }
    }

    fn run(&mut self, input: &[Value]) -> Vec<Res> {
        // The whole stream, sorted by @timestamp then ordinal.
        let mut evs: Vec<&Value> = input.iter().collect();
        evs.sort_by_key(|e| (time_of(e), ordinal_of(e)));
        let n = evs.len();
        let ts: Vec<i64> = evs.iter().map(|e| time_of(e)).collect();
        let ords: Vec<u64> = evs.iter().map(|e| ordinal_of(e)).collect();
        // hits[s][i]: the keys event i joins under at stage s.
        let mut hits: Vec<Vec<Option<Vec<Key>>>> = Vec::new();
        for s in self.stages.iter_mut() {
            let h = match hits.last() {
                Some(prev) if s.repeat => prev.clone(),
                _ => evs.iter().map(|e| s.hit(e)).collect(),
            };
            hits.push(h);
        }
        let until_hits: Vec<Option<Vec<Key>>> = match &mut self.until {
            Some(u) => evs.iter().map(|e| u.hit(e)).collect(),
            None => vec![None; n],
        };
        let has_key = |h: &Option<Vec<Key>>, k: &Key| h.as_ref().is_some_and(|ks| ks.contains(k));

        let positive: Vec<usize> = (0..self.stages.len())
            .filter(|&s| !self.stages[s].missing)
            .collect();
        let last = positive.len() - 1;
        // key → per positive stage index j: partials (event indexes), oldest first.
        let mut partials: HashMap<Key, Vec<Vec<Vec<usize>>>> = HashMap::new();
        let mut candidates: Vec<(Vec<usize>, Key)> = Vec::new();
        for i in 0..n {
            for j in (0..positive.len()).rev() {
                let Some(keys) = &hits[positive[j]][i] else {
                    continue;
                };
                for k in keys {
                    let lists = partials
                        .entry(k.clone())
                        .or_insert_with(|| vec![Vec::new(); positive.len()]);
                    let seq = if j == 0 {
                        vec![i]
                    } else {
                        let list = &mut lists[j - 1];
                        // The latest partial whose last event is strictly earlier.
                        let Some(idx) = list.iter().rposition(|p| *p.last().unwrap() < i) else {
                            continue;
                        };
                        let p = list[idx].clone();
                        // It and every older one go, whatever follows.
                        list.drain(..=idx);
                        self.counts.trimmed += idx as u64;
                        if let Some(m) = self.maxspan {
                            if ts[i] - ts[p[0]] > m {
                                self.counts.maxspan_dropped += 1;
                                continue;
                            }
                        }
                        let plast = *p.last().unwrap();
                        if (plast..i).any(|u| has_key(&until_hits[u], k)) {
                            self.counts.until_dropped += 1;
                            continue;
                        }
                        let mut p = p;
                        p.push(i);
                        p
                    };
                    if j == last {
                        candidates.push((seq, k.clone()));
                    } else {
                        lists[j].push(seq);
                    }
                }
            }
        }

        // Missing-event stages.
        let first_missing = self.stages[0].missing;
        let last_missing = self.stages.last().unwrap().missing;
        let mut results = Vec::new();
        'cand: for (seq, key) in candidates {
            // Position → event index.
            let mut pos: Vec<Option<usize>> = vec![None; self.stages.len()];
            for (j, &s) in positive.iter().enumerate() {
                pos[s] = Some(seq[j]);
            }
            let t_first = ts[seq[0]];
            let t_last = ts[*seq.last().unwrap()];
            let mut lead: Option<i64> = None; // latest L
            let mut trail: Option<i64> = None; // earliest T
            for (s, stage) in self.stages.iter().enumerate() {
                if !stage.missing {
                    continue;
                }
                let prev = (0..s).rev().find_map(|p| pos[p]);
                let next = (s + 1..self.stages.len()).find_map(|p| pos[p]);
                let matching = (0..n).filter(|&e| has_key(&hits[s][e], &key));
                match (prev, next) {
                    (Some(p), Some(q)) => {
                        if matching.clone().any(|e| ts[p] < ts[e] && ts[e] < ts[q]) {
                            self.counts.rejected_middle += 1;
                            continue 'cand;
                        }
                    }
                    (None, Some(_)) => {
                        for e in matching.filter(|&e| ts[e] < t_first) {
                            lead = Some(lead.map_or(ts[e], |l| l.max(ts[e])));
                        }
                    }
                    (Some(_), None) => {
                        for e in matching.filter(|&e| ts[e] > t_last) {
                            trail = Some(trail.map_or(ts[e], |t| t.min(ts[e])));
                        }
                    }
                    (None, None) => unreachable!(),
                }
            }
            let m = self.maxspan.unwrap_or(i64::MAX);
            let rejected = match (first_missing, last_missing) {
                (true, false) => lead.is_some_and(|l| t_last - l <= m),
                (false, true) => trail.is_some_and(|t| t - t_first <= m),
                (true, true) => matches!((lead, trail), (Some(l), Some(t)) if t - l <= m),
                (false, false) => false,
            };
            if rejected {
                self.counts.rejected_edge += 1;
                continue;
            }
            self.counts.results += 1;
            results.push((pos.iter().map(|p| p.map(|e| ords[e])).collect(), key));
        }
        // Ordered by their last event, ties by key.
        results.sort_by(|a: &Res, b: &Res| {
            last_event(a)
                .cmp(&last_event(b))
                .then_with(|| a.1.cmp(&b.1))
        });
        results
    }
}

fn last_event(r: &Res) -> u64 {
    r.0.iter().rev().find_map(|e| *e).unwrap()
}

// ---------------------------------------------------------------------------
// Generator
// ---------------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    fn pct(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// A key-like field: usually one value, sometimes missing / null / empty /
/// two values (possibly equal).
fn key_value(r: &mut Rng, vals: &[&str], p_missing: u64, p_multi: u64) -> Option<Value> {
    let roll = r.below(100);
    if roll < p_missing {
        return match r.below(6) {
            0 => Some(Value::Null),
            1 => Some(json!([])),
            _ => None,
        };
    }
    if roll < p_missing + p_multi {
        return Some(json!([r.pick(vals), r.pick(vals)]));
    }
    Some(json!(r.pick(vals)))
}

fn gen_stream(seed: u64) -> Vec<Value> {
    let mut r = Rng(seed);
    let len = r.range(5, 60);
    let mut t: i64 = 1_700_000_000_000 + r.below(1000) as i64;
    let mut ord: u64 = r.below(5);
    // Per stream, a little variety in the mix.
    let p_missing_k = r.pick(&[0, 5, 15, 30]);
    let p_multi_k = r.pick(&[0, 10, 20]);
    let nk = r.range(1, 4) as usize;
    let kvals = &["k1", "k2", "k3", "k4"][..nk];
    let mut out = Vec::with_capacity(len as usize);
    for _ in 0..len {
        let step = r.below(100);
        t += match step {
            0..=34 => 0,
            35..=74 => r.range(1, 3) as i64,
            75..=94 => r.range(4, 10) as i64,
            _ => r.range(11, 40) as i64,
        };
        ord += r.range(1, 3);
        let mut m = Map::new();
        m.insert("ord".into(), json!(ord.to_string()));
        m.insert("@timestamp".into(), json!(t));
        let cat = match r.below(100) {
            0..=37 => json!("a"),
            38..=69 => json!("b"),
            70..=93 => json!("c"),
            94..=96 => json!("d"),
            _ => json!([r.pick(&["a", "b", "c"]), r.pick(&["a", "b", "c"])]),
        };
        m.insert("event".into(), json!({ "category": cat }));
        if let Some(k) = key_value(&mut r, kvals, p_missing_k, p_multi_k) {
            m.insert("k".into(), k);
        }
        if let Some(h) = key_value(&mut r, &["h1", "h2"], 8, 4) {
            m.insert("h".into(), h);
        }
        if !r.pct(15) {
            let x = if r.pct(5) {
                json!([r.pick(&["1", "2", "3"]), r.pick(&["1", "2", "3"])])
            } else {
                json!(r.pick(&["1", "2", "3"]))
            };
            m.insert("x".into(), x);
        }
        out.push(Value::Object(m));
    }
    out
}

// ---------------------------------------------------------------------------
// Comparison
// ---------------------------------------------------------------------------

fn has_trailing_missing(t: &Template) -> bool {
    t.stages.last().unwrap().missing
}

/// `Ok(number of results)` or a description of the difference.
fn compare(
    t: &Template,
    reference: &mut Reference,
    query: &str,
    events: &[Value],
) -> Result<Outcome, String> {
    let got = run_engine(query, events);
    let want = reference.run(events);
    let positions: usize = t.stages.iter().map(|s| s.runs).sum();
    if let Some(bad) = got.iter().find(|r| r.0.len() != positions) {
        return Err(format!(
            "engine result with {} positions, want {positions}: {bad:?}",
            bad.0.len()
        ));
    }
    let mut g = got.clone();
    let mut w = want.clone();
    g.sort();
    w.sort();
    if g != w {
        return Err(format!(
            "different results (as multisets)\nengine:    {}\nreference: {}",
            show(&got),
            show(&want)
        ));
    }
    // Order: results without a trailing missing stage come out in the
    // reference's order: by their last event (a trailing-missing result is
    // released late), ties by key.
    let mut outcome = Outcome {
        results: want.len(),
        tie_order_differs: false,
    };
    if !has_trailing_missing(t) && got != want {
        let last_events_differ = got.iter().map(last_event).ne(want.iter().map(last_event));
        if last_events_differ || !known("ties_by_key") {
            return Err(format!(
                "same results, different order\nengine:    {}\nreference: {}",
                show(&got),
                show(&want)
            ));
        }
        outcome.tie_order_differs = true;
    }
    Ok(outcome)
}

struct Outcome {
    results: usize,
    /// Only the order of results completed by one event differs (the known
    /// difference `ties_by_key`).
    tie_order_differs: bool,
}

fn show(rs: &[Res]) -> String {
    if rs.is_empty() {
        return "(none)".into();
    }
    let items: Vec<String> = rs
        .iter()
        .map(|(e, k)| {
            let evs: Vec<String> = e
                .iter()
                .map(|x| x.map_or("-".to_string(), |o| o.to_string()))
                .collect();
            let ks: Vec<String> = k
                .iter()
                .map(|x| x.clone().unwrap_or_else(|| "null".into()))
                .collect();
            format!("[{}] key({})", evs.join(","), ks.join(","))
        })
        .collect();
    items.join("\n           ")
}

fn dump(events: &[Value]) -> String {
    events.iter().map(|e| format!("{e}\n")).collect()
}

/// Greedily drop events while the difference persists.
fn minimise(t: &Template, query: &str, events: &[Value]) -> Vec<Value> {
    let mut cur = events.to_vec();
    loop {
        let mut changed = false;
        let mut i = 0;
        while i < cur.len() {
            let mut trial = cur.clone();
            trial.remove(i);
            if compare(t, &mut Reference::new(t), query, &trial).is_err() {
                cur = trial;
                changed = true;
            } else {
                i += 1;
            }
        }
        if !changed {
            return cur;
        }
    }
}

fn stream_seed(base: u64, template: usize, i: u64) -> u64 {
    base ^ (template as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93)
        ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|s| {
        let s = s.trim();
        match s.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16),
            None => s.parse(),
        }
        .unwrap_or_else(|_| panic!("{name}: not a number: {s}"))
    })
}

struct Tally {
    name: &'static str,
    streams: u64,
    results: usize,
    tie_order_streams: u64,
    counts: Counts,
    failure: Option<String>,
}

fn run_template(ti: usize, t: &Template, base: u64, streams: u64) -> Tally {
    let query = t.query();
    // The stage matchers are stateless event queries: one reference serves
    // every stream of the template.
    let mut reference = Reference::new(t);
    let mut tally = Tally {
        name: t.name,
        streams: 0,
        results: 0,
        tie_order_streams: 0,
        counts: Counts::default(),
        failure: None,
    };
    for i in 0..streams {
        let seed = stream_seed(base, ti, i);
        let events = gen_stream(seed);
        tally.streams += 1;
        match compare(t, &mut reference, &query, &events) {
            Ok(o) => {
                tally.results += o.results;
                tally.tie_order_streams += o.tie_order_differs as u64;
            }
            Err(why) => {
                let small = minimise(t, &query, &events);
                let small_why = compare(t, &mut Reference::new(t), &query, &small)
                    .err()
                    .unwrap_or_default();
                tally.failure = Some(format!(
                    "template {} (stream {i}, stream seed {seed:#x}, base seed APT_NETCON_EQL_REF_SEED={base:#x}):\n\
                     query:\n{query}\n{why}\n\nstream ({} events):\n{}\nminimised to {} events:\n{}{small_why}\n",
                    t.name,
                    events.len(),
                    dump(&events),
                    small.len(),
                    dump(&small),
                ));
                break;
            }
        }
    }
    tally.counts = reference.counts;
    tally
}

#[test]
fn engine_agrees_with_batch_reference() {
    let started = Instant::now();
    let base = env_u64("APT_NETCON_EQL_REF_SEED").unwrap_or(DEFAULT_SEED);
    let streams = env_u64("APT_NETCON_EQL_REF_STREAMS").unwrap_or(DEFAULT_STREAMS);
    let only = std::env::var("APT_NETCON_EQL_REF_ONLY").ok();
    let all = templates();
    let work: Vec<(usize, &Template)> = all
        .iter()
        .enumerate()
        .filter(|(_, t)| !known(t.name))
        .filter(|(_, t)| only.as_deref().is_none_or(|o| o == t.name))
        .collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(work.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let tallies = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&(ti, t)) = work.get(i) else { break };
                let tally = run_template(ti, t, base, streams);
                tallies.lock().unwrap().push((ti, tally));
            });
        }
    });
    let mut tallies = tallies.into_inner().unwrap();
    tallies.sort_by_key(|(ti, _)| *ti);
    let mut total_streams = 0;
    let mut total_results = 0;
    let mut tie_order_streams = 0;
    let mut failures = Vec::new();
    for (_, t) in &tallies {
        let c = t.counts;
        eprintln!(
            "  {:<30} {:>6} streams {:>7} results | reference: trimmed {}, maxspan {}, until {}, missing mid {} edge {}",
            t.name, t.streams, t.results, c.trimmed, c.maxspan_dropped, c.until_dropped, c.rejected_middle, c.rejected_edge
        );
        total_streams += t.streams;
        total_results += t.results;
        tie_order_streams += t.tie_order_streams;
        if let Some(f) = &t.failure {
            failures.push(f.clone());
        }
    }
    eprintln!(
        "eql reference: {total_streams} streams, {total_results} results compared ({} templates, {:.1?})",
        tallies.len(),
        started.elapsed()
    );
    if tie_order_streams > 0 {
        eprintln!(
            "eql reference: known difference ties_by_key (results of one event not ordered by key) in {tie_order_streams} streams"
        );
    }
    if !failures.is_empty() {
        panic!(
            "engine and reference differ on {} template(s):\n\n{}",
            failures.len(),
            failures.join("\n\n")
        );
    }
    // Every template must exercise what it is about.
    if streams >= 100 {
        for (ti, t) in &tallies {
            let tp = &all[*ti];
            let c = t.counts;
            let missing: Vec<bool> = tp.stages.iter().map(|s| s.missing).collect();
            let middle = (1..missing.len().saturating_sub(1)).any(|i| missing[i]);
            let edge = missing[0] || missing[missing.len() - 1];
            let checks = [
                ("results", true, t.results as u64),
                (
                    "maxspan drops",
                    tp.maxspan.is_some() && !edge,
                    c.maxspan_dropped,
                ),
                ("until drops", tp.until.is_some(), c.until_dropped),
                ("middle missing rejections", middle, c.rejected_middle),
                ("leading/trailing missing rejections", edge, c.rejected_edge),
            ];
            for (what, wanted, n) in checks {
                assert!(
                    !wanted || n > 0,
                    "template {}: no {what} in {} streams",
                    t.name,
                    t.streams
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The reference itself, on hand-worked streams (so that agreement above is
// not agreement in a shared mistake).
// ---------------------------------------------------------------------------

/// Events from `(category, timestamp, k)`; ordinals 1, 2, 3 …
fn evs(spec: &[(&str, i64, &str)]) -> Vec<Value> {
    spec.iter()
        .enumerate()
        .map(|(i, (c, t, k))| {
            let mut m = Map::new();
            m.insert("ord".into(), json!((i + 1).to_string()));
            m.insert("@timestamp".into(), json!(t));
            m.insert("event".into(), json!({ "category": c }));
            if !k.is_empty() {
                let vals: Vec<&str> = k.split('|').collect();
                m.insert(
                    "k".into(),
                    if vals.len() == 1 {
                        json!(vals[0])
                    } else {
                        json!(vals)
                    },
                );
            }
            Value::Object(m)
        })
        .collect()
}

fn r(events: &[Option<u64>], keys: &[&str]) -> Res {
    (
        events.to_vec(),
        keys.iter()
            .map(|k| {
                if *k == "null" {
                    None
                } else {
                    Some(k.to_string())
                }
            })
            .collect(),
    )
}

fn check_hand(t: Template, events: &[Value], want: Vec<Res>) {
    let got = Reference::new(&t).run(events);
    assert_eq!(got, want, "reference, template {}", t.name);
    let q = t.query();
    let mut engine = run_engine(&q, events);
    let mut want = want;
    engine.sort();
    want.sort();
    assert_eq!(engine, want, "engine, template {}", t.name);
}

#[test]
fn reference_on_hand_worked_streams() {
    // trimBefore: the second `a` takes over; the first partial is gone.
    check_hand(
        tpl(
            "t",
            &["k"],
            None,
            vec![st("a", "true"), st("b", "true"), st("c", "true")],
        ),
        &evs(&[
            ("a", 1, "x"),
            ("a", 2, "x"),
            ("b", 3, "x"),
            ("b", 4, "x"),
            ("c", 5, "x"),
        ]),
        vec![r(&[Some(2), Some(3), Some(5)], &["x"])],
    );
    // maxspan is inclusive, and the partial is consumed even when it fails.
    check_hand(
        tpl("t", &["k"], Some(2), vec![st("a", "true"), st("b", "true")]),
        &evs(&[
            ("a", 1, "x"),
            ("b", 4, "x"),
            ("a", 5, "x"),
            ("b", 7, "x"),
            ("b", 7, "x"),
        ]),
        vec![r(&[Some(3), Some(4)], &["x"])],
    );
    // Multi-valued key: one sequence per value; a missing key takes no part.
    check_hand(
        tpl("t", &["k"], None, vec![st("a", "true"), st("b", "true")]),
        &evs(&[
            ("a", 1, "x|y"),
            ("b", 2, ""),
            ("b", 3, "y"),
            ("b", 4, "x|x"),
        ]),
        vec![
            r(&[Some(1), Some(3)], &["y"]),
            r(&[Some(1), Some(4)], &["x"]),
        ],
    );
    // Optional key: no value joins as null.
    check_hand(
        tpl("t", &["?k"], None, vec![st("a", "true"), st("b", "true")]),
        &evs(&[("a", 1, ""), ("b", 2, "")]),
        vec![r(&[Some(1), Some(2)], &["null"])],
    );
    // Strictly earlier: an event matching both stages does not extend itself.
    check_hand(
        tpl(
            "t",
            &["k"],
            None,
            vec![st("any", "true"), st("any", "true")],
        ),
        &evs(&[("a", 1, "x"), ("b", 1, "x"), ("c", 1, "x")]),
        vec![
            r(&[Some(1), Some(2)], &["x"]),
            r(&[Some(2), Some(3)], &["x"]),
        ],
    );
    // runs=2 equals the stage written twice.
    check_hand(
        tpl(
            "t",
            &["k"],
            None,
            vec![st("a", "true").runs(2), st("b", "true")],
        ),
        &evs(&[
            ("a", 1, "x"),
            ("b", 2, "x"),
            ("a", 3, "x"),
            ("a", 4, "x"),
            ("b", 5, "x"),
        ]),
        vec![r(&[Some(3), Some(4), Some(5)], &["x"])],
    );
    // until in [last event, current event): the `c` between a and b kills
    // the partial of its key only.
    check_hand(
        until(
            tpl("t", &["k"], None, vec![st("a", "true"), st("b", "true")]),
            st("c", "true"),
        ),
        &evs(&[
            ("a", 1, "x"),
            ("a", 1, "y"),
            ("c", 2, "x"),
            ("b", 3, "x"),
            ("b", 3, "y"),
        ]),
        vec![r(&[Some(2), Some(5)], &["y"])],
    );
    // Middle missing stage: strict timestamps.
    check_hand(
        tpl(
            "t",
            &["k"],
            None,
            vec![st("a", "true"), miss("c", "true"), st("b", "true")],
        ),
        &evs(&[
            ("a", 1, "x"),
            ("c", 1, "x"),
            ("b", 3, "x"),
            ("a", 4, "y"),
            ("c", 5, "y"),
            ("b", 6, "y"),
        ]),
        vec![r(&[Some(1), None, Some(3)], &["x"])],
    );
    // Leading missing: a `c` within maxspan of the last positive event rejects.
    check_hand(
        tpl(
            "t",
            &["k"],
            Some(5),
            vec![miss("c", "true"), st("a", "true"), st("b", "true")],
        ),
        &evs(&[
            ("c", 0, "x"),
            ("a", 2, "x"),
            ("b", 6, "x"),
            ("c", 10, "y"),
            ("a", 11, "y"),
            ("b", 15, "y"),
        ]),
        vec![r(&[None, Some(2), Some(3)], &["x"])],
    );
    // Trailing missing: a `c` within maxspan of the first positive event rejects.
    check_hand(
        tpl(
            "t",
            &["k"],
            Some(5),
            vec![st("a", "true"), st("b", "true"), miss("c", "true")],
        ),
        &evs(&[
            ("a", 0, "x"),
            ("b", 2, "x"),
            ("c", 6, "x"),
            ("a", 10, "y"),
            ("b", 12, "y"),
            ("c", 15, "y"),
        ]),
        vec![r(&[Some(1), Some(2), None], &["x"])],
    );
    // Both ends: rejected only when both exist within maxspan of each other.
    check_hand(
        tpl(
            "t",
            &["k"],
            Some(5),
            vec![
                miss("c", "true"),
                st("a", "true"),
                st("b", "true"),
                miss("c", "true"),
            ],
        ),
        &evs(&[
            ("c", 0, "x"),
            ("a", 1, "x"),
            ("b", 2, "x"),
            ("c", 6, "x"),
            ("c", 10, "y"),
            ("a", 11, "y"),
            ("b", 12, "y"),
            ("c", 15, "y"),
        ]),
        vec![r(&[None, Some(2), Some(3), None], &["x"])],
    );
}
