//! What a compiled rule reads and requires, for the callers that decide
//! about a record before handing it to a [`crate::Detector`]:
//!
//! * [`Partitioner`]: the CLI's `--threads N` routes each record to one of N
//!   detectors by the rule's host key (the `sequence by` fields), so that
//!   every record that can take part in a sequence of one host reaches the
//!   same detector; a record the byte prefilter rules out (it matches no
//!   stage, so it changes no state) is not handed to any detector at all.
//! * [`Footprint`]: the field paths the detector reads and, per field, the
//!   literal values a record must hold in it to match some stage — what the
//!   Fluent Bit Lua glue checks on the record table before crossing the FFI
//!   (`aptnc_footprint` in the C ABI).
//!
//! Both derive from the fast engine's [`crate::eql::compile::CompiledQuery`] (the same knowledge
//! as the byte prefilter, `engine::prefilter`); for a rule on the generic
//! engine the footprint has no required values and asks for whole records.

use crate::eql::compile::{pred_slots, Pred, Test};
use crate::config::settings::Config;
use crate::format::event::{smallest_keyword, FieldTable, FieldsBuf, Slot};
use crate::engine::prefilter::Prefilter;
use crate::config::rule::Rule;
use crate::Detector;
use memchr::arch::all::packedpair::HeuristicFrequencyRank;
use memchr::memmem::{Finder, FinderBuilder};
use std::hash::{BuildHasher, Hash, Hasher};

/// Where a record goes (see [`Partitioner::route`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// It matches no stage (ruled out by its bytes): no detector needs it.
    /// It counts as one record read and nothing else.
    Skip,
    /// It can change no detector's state (no usable host key, too large,
    /// unreadable): any detector may take it, for its counters.
    Any,
    /// The detector of this index (its host key hashed).
    Worker(usize),
}

/// Routes records to `n` detectors by the rule's host key. Exact when the
/// detectors run the same rule and config: a sequence pairs only events of
/// one host key, and every event of a key goes to the detector of its hash.
/// See [`Partitioner::new`] for the rules it refuses.
#[derive(Debug)]
pub struct Partitioner {
    rule: Rule,
    prefilter: Prefilter,
    /// The fields that decide whether a record matches a stage, and the
    /// host key's.
    decide: FieldTable,
    slots: Vec<Slot>,
    buf: FieldsBuf,
    max_record_bytes: usize,
    n: usize,
    multi_valued: u64,
}

impl Partitioner {
    /// A partitioner over `n` detectors for `rule` under `config`, or why the
    /// records of this rule cannot be split exactly:
    ///
    /// * the rule runs on the generic engine (or `id_field` is not
    ///   `event.id`, which runs it there too): not split, to be safe;
    /// * the query is not a `sequence by …` (no host key);
    /// * `max_lateness` is above 0: held events are released by a watermark
    ///   that follows every host, so a detector per subset of hosts would
    ///   release them at other points of the stream.
    pub fn new(rule: &Rule, config: &Config, n: usize) -> Result<Partitioner, &'static str> {
        if rule.generic_query().is_some() {
            return Err("the rule runs on the generic EQL engine");
        }
        if config.id_field != "event.id" {
            return Err("id_field is not event.id (the generic engine runs the rule)");
        }
        let q = rule.compiled();
        if !q.is_sequence || q.host_keys == 0 || q.stages.is_empty() {
            return Err("the query has no `sequence by` key to split hosts on");
        }
        if config.max_lateness_ms > 0 {
            return Err("max_lateness is above 0 (held events are released by every host's time)");
        }
        let slots = q.stages[0].keys[..q.host_keys].to_vec();
        let mut decide = vec![q.category_slot];
        for st in &q.stages {
            pred_slots(&st.predicate, &mut decide);
        }
        decide.extend_from_slice(&slots);
        Ok(Partitioner {
            rule: rule.clone(),
            prefilter: Prefilter::new(q, config.prefilter),
            decide: q.fields.subset(&decide),
            slots,
            buf: FieldsBuf::default(),
            max_record_bytes: config.max_record_bytes,
            n: n.max(1),
            multi_valued: 0,
        })
    }

    /// Records routed whose host key held several values (a JSON array of
    /// distinct values): such a record joins under each value in one
    /// detector, but goes to the detector of its smallest value only here.
    pub fn multi_valued(&self) -> u64 {
        self.multi_valued
    }

    /// Where the JSON `record` (one line, without its terminator) goes.
    pub fn route(&mut self, record: &[u8]) -> Route {
        self.route_with(record, true)
    }

    /// [`Partitioner::route`] for a record a [`Skipper`] let through: the
    /// byte prefilter is not run again (it would rule out few of them; the
    /// scan below decides as well).
    pub fn route_unskipped(&mut self, record: &[u8]) -> Route {
        self.route_with(record, false)
    }

    fn route_with(&mut self, record: &[u8], prefilter: bool) -> Route {
        if record.len() > self.max_record_bytes {
            return Route::Any;
        }
        if may_be_lone_string(record) {
            // What the detector counts as `unparsed` (and warns of) even
            // when its prefilter rules it out: a detector must see it.
            return Route::Any;
        }
        if prefilter && self.prefilter.rules_out_json(record) {
            return Route::Skip;
        }
        let mut f = self.buf.take();
        // As the detector decides (Detector::process): a record the fast
        // scanner reads and that matches no stage is left as it is, so it
        // needs no detector either. Any other is routed by its key.
        let q = self.rule.compiled();
        let scanned = self.decide.scan(record, &mut f).is_ok();
        if scanned && !q.stages.iter().any(|st| st.matches(&f, q.category_slot)) {
            self.buf.put_back(f);
            return Route::Skip;
        }
        let read = scanned || self.decide.extract(record, &mut f).is_ok();
        // A fixed seed: the same key goes to the same detector all run long.
        let mut h = foldhash::fast::FixedState::with_seed(0x6170_746e_6300).build_hasher();
        let mut route = Route::Any;
        if read {
            route = Route::Worker(0);
            for &slot in &self.slots {
                // The one value, as most records hold it, hashed where it
                // lies; several: the smallest.
                let Some((smallest, several)) = smallest_keyword(f.get(slot).filter_map(|v| v.keyword())) else {
                    route = Route::Any;
                    break;
                };
                self.multi_valued += several as u64;
                smallest.hash(&mut h);
            }
        }
        self.buf.put_back(f);
        match route {
            Route::Worker(_) => Route::Worker((h.finish() % self.n as u64) as usize),
            r => r,
        }
    }
}

/// Decides, a block of lines at a time, which records a detector would
/// surely leave unchanged with no counter moved but `records`, so that the
/// CLI need not hand them to it: the byte prefilter (`engine::prefilter`)
/// run over a whole block at once instead of record by record.
///
/// For each stage it takes one of the needle sets that the detector's
/// prefilter has for that stage (the rarest in the input, surveyed now and
/// then), and finds them, every backslash and every invalid UTF-8 sequence
/// in the block with one SIMD search each. A record is skipped only when it
/// holds none of them (so, for every stage, a required test of the
/// detector's prefilter finds none of its needles: the prefilter rules it
/// out), starts with `{` and ends with `}`, is not over `max_record_bytes`
/// (the detector counts those) and does not end in a string member (the
/// detector looks at such records for its `unparsed` warning). Any other
/// record goes to the detector, which decides as always.
#[derive(Debug)]
pub struct Skipper {
    /// Per stage, its needle sets (each set: the JSON-quoted literals).
    needles: Vec<Vec<Vec<Vec<u8>>>>,
    /// The same as searchers, built for the bytes of the input (rebuilt at
    /// each survey).
    stages: Vec<Vec<Vec<Finder<'static>>>>,
    /// Per stage, the set searched.
    chosen: Vec<usize>,
    blocks: u64,
    max_record_bytes: usize,
    /// Sorted offsets in the current block of what sends the line holding
    /// it to the detector.
    marks: Vec<usize>,
    cursor: usize,
    skipped: u64,
}

/// How often (in blocks) every needle set is searched again, to choose the
/// rarest of each stage.
const SURVEY_EVERY: u64 = 64;

impl Skipper {
    /// A skipper for detectors running `rule` under `config`, or `None` when
    /// their prefilter is off (the `prefilter` key, or a stage without a
    /// required string) or the rule runs on the generic engine (whose
    /// records are not decided this way).
    pub fn new(rule: &Rule, config: &Config) -> Option<Skipper> {
        if !config.prefilter || rule.generic_query().is_some() || config.id_field != "event.id" {
            return None;
        }
        let q = rule.compiled();
        if q.stages.is_empty() {
            return None;
        }
        let mut stages = Vec::new();
        for stage in &q.stages {
            // As Prefilter::new: the category, then the required string
            // tests whose literals are all usable as needles.
            let mut lits: Vec<&[String]> = Vec::new();
            if let Some(cat) = &stage.category {
                lits.push(std::slice::from_ref(cat));
            }
            required_strs(&stage.predicate, &mut lits);
            let sets: Vec<Vec<Vec<u8>>> = lits
                .into_iter()
                .filter(|l| !l.is_empty() && l.iter().all(|x| crate::engine::prefilter::usable(x)))
                .map(|l| l.iter().map(|x| format!("\"{x}\"").into_bytes()).collect())
                .collect();
            if sets.is_empty() {
                return None;
            }
            stages.push(sets);
        }
        Some(Skipper {
            chosen: vec![0; stages.len()],
            needles: stages,
            stages: Vec::new(),
            blocks: 0,
            max_record_bytes: config.max_record_bytes,
            marks: Vec::new(),
            cursor: 0,
            skipped: 0,
        })
    }

    /// Records skipped so far (by [`Skipper::skips`]).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Search a block of whole lines; then ask [`Skipper::skips`] about its
    /// records, in order.
    pub fn scan(&mut self, block: &[u8]) {
        self.marks.clear();
        self.cursor = 0;
        if self.blocks % SURVEY_EVERY == 0 {
            // The searchers look for the needles' rarest bytes first: rarest
            // in this input (JSON is mostly quotes, keys and punctuation).
            let ranks = ByteRanks::of(block);
            self.stages = (self.needles.iter())
                .map(|sets| {
                    (sets.iter())
                        .map(|set| {
                            (set.iter())
                                .map(|n| FinderBuilder::new().build_forward_with_ranker(ranks, n).into_owned())
                                .collect()
                        })
                        .collect()
                })
                .collect();
            // Every set of every stage: the one found least often is searched
            // from now on (fewer needles first when as rare).
            for (sets, chosen) in self.stages.iter().zip(&mut self.chosen) {
                let mut best = (usize::MAX, usize::MAX);
                for (i, set) in sets.iter().enumerate() {
                    let hits: usize = set.iter().map(|f| f.find_iter(block).count()).sum();
                    if (hits, set.len()) < best {
                        best = (hits, set.len());
                        *chosen = i;
                    }
                }
            }
        }
        self.blocks += 1;
        for (sets, &chosen) in self.stages.iter().zip(&self.chosen) {
            for f in &sets[chosen] {
                self.marks.extend(f.find_iter(block));
            }
        }
        self.marks.extend(memchr::memchr_iter(b'\\', block));
        let mut at = if block.is_ascii() { block.len() } else { 0 };
        while let Err(e) = std::str::from_utf8(&block[at..]) {
            let bad = at + e.valid_up_to();
            self.marks.push(bad);
            match e.error_len() {
                Some(n) => at = bad + n,
                None => break,
            }
        }
        self.marks.sort_unstable();
    }

    /// [`Skipper::scan`] for a reading thread: the marks of `block`, to
    /// hand with it to the thread whose skipper decides
    /// ([`Skipper::set_marks`]).
    pub fn marks_of(&mut self, block: &[u8]) -> Vec<usize> {
        self.scan(block);
        std::mem::take(&mut self.marks)
    }

    /// The marks of the next block, found by another skipper of the same
    /// rule ([`Skipper::marks_of`]), in place of [`Skipper::scan`].
    pub fn set_marks(&mut self, marks: Vec<usize>) {
        self.marks = marks;
        self.cursor = 0;
    }

    /// Whether the detector can be spared `record`, the line at `start` of
    /// the block last given to [`Skipper::scan`] without its line
    /// terminator; the records of a block must be asked about in order.
    /// Counts the skipped.
    pub fn skips(&mut self, start: usize, record: &[u8]) -> bool {
        while self.cursor < self.marks.len() && self.marks[self.cursor] < start {
            self.cursor += 1;
        }
        if self.cursor < self.marks.len() && self.marks[self.cursor] < start + record.len() {
            return false;
        }
        if record.len() > self.max_record_bytes {
            return false;
        }
        let ws = |b: &&u8| b.is_ascii_whitespace();
        if record.iter().find(|b| !ws(b)) != Some(&b'{') || record.iter().rev().find(|b| !ws(b)) != Some(&b'}') {
            return false;
        }
        if may_be_lone_string(record) {
            return false;
        }
        self.skipped += 1;
        true
    }
}

/// False when `record` is surely not what the detector counts as
/// `unparsed` (an object of one member holding a string): it does not end
/// in a string member, or its first member is not a string.
fn may_be_lone_string(r: &[u8]) -> bool {
    let blank = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let mut tail = r.iter().rev().skip_while(|b| blank(b));
    if tail.next() != Some(&b'}') || tail.find(|b| !blank(b)) != Some(&b'"') {
        return false;
    }
    let mut i = 0;
    let expect = |i: &mut usize, c: u8| {
        while *i < r.len() && blank(&r[*i]) {
            *i += 1;
        }
        let ok = *i < r.len() && r[*i] == c;
        *i += 1;
        ok
    };
    if !(expect(&mut i, b'{') && expect(&mut i, b'"')) {
        return false;
    }
    match memchr::memchr2(b'"', b'\\', &r[i..]) {
        Some(k) if r[i + k] == b'"' => i += k + 1,
        _ => return false,
    }
    expect(&mut i, b':') && expect(&mut i, b'"')
}

/// How often each byte occurs in a sample of the input, as a rank from 0
/// (never) to 255 (most often).
#[derive(Debug, Clone, Copy)]
struct ByteRanks([u8; 256]);

impl ByteRanks {
    fn of(sample: &[u8]) -> ByteRanks {
        let mut count = [0u64; 256];
        for &b in sample {
            count[b as usize] += 1;
        }
        let most = count.iter().copied().max().unwrap_or(0).max(1);
        let mut ranks = [0u8; 256];
        for (r, &c) in ranks.iter_mut().zip(&count) {
            *r = (c * 255 / most) as u8;
        }
        ByteRanks(ranks)
    }
}

impl HeuristicFrequencyRank for ByteRanks {
    fn rank(&self, byte: u8) -> u8 {
        self.0[byte as usize]
    }
}

/// The literal sets of a stage predicate's `field == "…"` / `field in (…)`
/// conjuncts (its top-level `and`, flattened), as the prefilter takes them.
fn required_strs<'q>(p: &'q Pred, out: &mut Vec<&'q [String]>) {
    match p {
        Pred::And(v) => v.iter().for_each(|x| required_strs(x, out)),
        Pred::Any(_, Test::StrIn(lits)) => out.push(lits),
        _ => {}
    }
}

/// The fields a detector reads and the values its rule requires.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Every field path the detector reads from a record on the fast
    /// engine: the rule's, the join keys, `@timestamp`, the fields an alert
    /// carries, the exception items'; in a fixed order.
    pub fields: Vec<String>,
    /// Per stage, its required tests: `(field, literals)` such that a record
    /// can match the stage only if that field holds (one of its values
    /// equal to) one of the literals, exactly and case-sensitively. A stage
    /// matches only if EVERY test of it holds, so a record that fails some
    /// test of every stage matches nothing and changes no state: it can be
    /// left out (not counted either). Empty when some stage has no such
    /// test, or the rule runs on the generic engine: then no record may be
    /// left out.
    pub stages: Vec<Vec<(String, Vec<String>)>>,
    /// Per stage, the fields of its join key (the `sequence by` fields,
    /// then the stage's own `by` fields): a later stage's event pairs only
    /// with a partial sequence begun by an event whose key has the same
    /// values, position by position. Empty when `stages` is.
    pub keys: Vec<Vec<String>>,
    /// True when the detector must be given whole records, not just
    /// [`Footprint::fields`]: the generic engine runs the rule (it reads
    /// what its query names and writes whole records into standalone
    /// alerts), `max_lateness` is above 0 (held records come back whole
    /// as standalone alerts), or the detector runs a rule pack (several
    /// rules; its alerts are standalone alerts carrying whole records).
    /// `stages` and `keys` are then empty: no record may be left out.
    pub whole_record: bool,
    /// The top-level members an alert can write into a record (`rule`,
    /// `threat`, `kibana` unless `kibana_fields` is off, `apt_netcon`; or
    /// the first segment of `annotation_prefix`).
    pub alert_roots: Vec<String>,
}

impl Footprint {
    /// The footprint of `det`, built from `config`.
    pub fn of(det: &Detector, config: &Config) -> Footprint {
        let table = det.field_table();
        let q = det.rule().compiled();
        let fields: Vec<String> = (0..table.len()).map(|s| table.name(s as Slot).to_string()).collect();
        let pack = det.pack().is_some();
        let whole_record = pack
            || det.rule().generic_query().is_some()
            || config.id_field != "event.id"
            || config.max_lateness_ms > 0;
        let alert_roots: Vec<String> = match config.annotation_prefix.split('.').next() {
            Some(first) if !config.annotation_prefix.is_empty() => vec![first.to_string()],
            _ => ["rule", "threat"]
                .into_iter()
                .chain(config.kibana_fields.then_some("kibana"))
                .chain(["apt_netcon"])
                .map(String::from)
                .collect(),
        };
        if pack || det.rule().generic_query().is_some() {
            // A pack: the fields and tests above are its first rule's only.
            return Footprint { fields, stages: Vec::new(), keys: Vec::new(), whole_record, alert_roots };
        }
        let mut stages = Vec::new();
        for stage in &q.stages {
            let mut tests = Vec::new();
            if let Some(cat) = &stage.category {
                tests.push((q.fields.name(q.category_slot).to_string(), vec![cat.clone()]));
            }
            required(&stage.predicate, &q.fields, &mut tests);
            if tests.is_empty() {
                return Footprint { fields, stages: Vec::new(), keys: Vec::new(), whole_record, alert_roots };
            }
            stages.push(tests);
        }
        let keys = q.stages.iter().map(|st| st.keys.iter().map(|&k| q.fields.name(k).to_string()).collect()).collect();
        Footprint { fields, stages, keys, whole_record, alert_roots }
    }

    /// As JSON: `{"fields":[…],"stages":[[[field,[literal,…]],…],…],"keys":[[field,…],…],"whole_record":bool,"alert_roots":[…]}`.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "fields": self.fields,
            "stages": self.stages,
            "keys": self.keys,
            "whole_record": self.whole_record,
            "alert_roots": self.alert_roots,
        })
        .to_string()
    }
}


/// The `field == "…"` / `field in (…)` conjuncts of a stage predicate, with
/// string literals only a string can equal (a number or boolean can equal
/// `"5"` or `"true"`: such a test is left out, so it rules nothing out).
fn required(p: &Pred, t: &FieldTable, out: &mut Vec<(String, Vec<String>)>) {
    match p {
        Pred::And(v) => v.iter().for_each(|x| required(x, t, out)),
        Pred::Any(slot, Test::StrIn(lits)) if !lits.is_empty() && lits.iter().all(|l| only_a_string_equals(l)) => {
            out.push((t.name(*slot).to_string(), lits.clone()))
        }
        _ => {}
    }
}

fn only_a_string_equals(lit: &str) -> bool {
    let numeric = lit.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    !lit.is_empty() && !numeric && lit != "true" && lit != "false"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_host_key_value() {
        let rule = Rule::default_rule();
        let mut p = Partitioner::new(&rule, &Config::default(), 4).unwrap();
        let stage1 = |host: &str| {
            format!(
                r#"{{"@timestamp":"2024-01-01T00:00:00Z","host":{{"id":{host},"os":{{"type":"linux"}}}},"event":{{"category":["process"],"type":["start"],"action":"exec"}},"process":{{"name":"sh","args":["sh","-c","x"],"parent":{{"name":"apt"}},"entity_id":"e"}}}}"#
            )
        };
        let a = p.route(stage1(r#""h1""#).as_bytes());
        assert!(matches!(a, Route::Worker(_)));
        assert_eq!(p.route(stage1(r#"["h1"]"#).as_bytes()), a, "the value, not the text");
        assert_eq!(p.route(stage1("null").as_bytes()), Route::Any);
        assert_eq!(p.route(br#"{"event":{"category":"file"}}"#), Route::Skip);
        p.route(stage1(r#"["h1","h2"]"#).as_bytes());
        assert_eq!(p.multi_valued(), 1);
    }

    /// A record the skipper spares the detector is one the detector leaves
    /// unchanged with no counter moved but `records`, and no warning.
    #[test]
    fn skipper_skips_only_what_changes_nothing() {
        let stage1 = r#"{"@timestamp":"2024-01-01T00:00:00Z","host":{"id":"h","os":{"type":"linux"}},"event":{"category":["process"],"type":["start"],"action":"exec"},"process":{"name":"sh","args":["sh","-c","x"],"parent":{"name":"apt"},"entity_id":"e"}}"#;
        let records: Vec<Vec<u8>> = [
            stage1,
            r#"{"event":{"category":"file"},"host":{"id":"h"}}"#,
            r#"{"log":"a raw line"}"#,
            r#"  {"message" : "x"}  "#,
            r#"{"a":{"b":1},"message":"ends in a string"}"#,
            r#"{"event":{"category":"file"},"p":"\u0061pt"}"#,
            r#"{"event":{"category":"file"}"#,
            r#"{"event":{"category":"file"},}"#,
            r#"[1,2]"#,
            r#"{"x":"apt"}"#,
            r#"{"x":"connection_attempted","y":"-c"}"#,
            "",
            "   ",
        ]
        .iter()
        .map(|r| r.as_bytes().to_vec())
        .chain([b"{\"a\":\"\xff\"}".to_vec(), format!("{{\"pad\":\"{}\"}}", "x".repeat(300)).into_bytes()])
        .collect();
        for max_record_bytes in [100, 1 << 20] {
            let config = Config { max_record_bytes, ..Config::default() };
            let rule = Rule::default_rule();
            let mut skip = Skipper::new(&rule, &config).unwrap();
            let block: Vec<u8> = records.iter().flat_map(|r| r.iter().copied().chain(*b"\n")).collect();
            skip.scan(&block);
            let mut start = 0;
            for r in &records {
                let skipped = !r.is_empty() && skip.skips(start, r);
                start += r.len() + 1;
                let mut det = Detector::new(&config).unwrap();
                let unchanged = matches!(det.process(r), Ok(crate::Verdict::Unchanged));
                let mut moved = det.stats();
                moved.records -= 1;
                let quiet = moved.fields() == crate::Stats::default().fields() && moved.unparsed == 0;
                if skipped {
                    assert!(unchanged && quiet && det.take_warning().is_none(), "{}", String::from_utf8_lossy(r));
                }
            }
            assert!(skip.skipped() >= 2, "{}", skip.skipped());
        }
        let off = Config { prefilter: false, ..Config::default() };
        assert!(Skipper::new(&Rule::default_rule(), &off).is_none());
    }

    #[test]
    fn refuses_what_it_cannot_split() {
        let cfg = Config::default();
        let r = Rule::from_eql(r#"network where destination.port == 443"#, crate::config::rule::meta_for_file("t")).unwrap();
        assert!(Partitioner::new(&r, &cfg, 2).is_err());
        let late = Config { max_lateness_ms: 1000, ..Config::default() };
        assert!(Partitioner::new(&Rule::default_rule(), &late, 2).is_err());
    }

    #[test]
    fn footprint_of_the_default_rule() {
        let det = Detector::new(&Config::default()).unwrap();
        let fp = Footprint::of(&det, &Config::default());
        assert!(!fp.whole_record);
        assert!(fp.to_json().starts_with(r#"{"fields":["#), "{}", fp.to_json());
        assert!(fp.fields.iter().any(|f| f == "host.id"));
        assert!(fp.fields.iter().any(|f| f == "@timestamp"));
        assert_eq!(fp.stages.len(), 2);
        assert!(fp.stages[0].contains(&("process.parent.name".to_string(), vec!["apt".to_string()])));
        assert!(fp.stages[1].contains(&("event.category".to_string(), vec!["network".to_string()])));
    }

    #[test]
    fn footprint_of_a_pack_asks_for_whole_records() {
        let cfg = Config { rules: vec!["apt_netcon_v5".into(), "apt_netcon_v11".into()], ..Config::default() };
        let det = Detector::new(&cfg).unwrap();
        let fp = Footprint::of(&det, &cfg);
        assert!(fp.whole_record, "{}", fp.to_json());
        assert!(fp.stages.is_empty() && fp.keys.is_empty());
    }
}
