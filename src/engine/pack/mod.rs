//! Rule packs: many rules over one stream, each record tested only against
//! the rules it could match.
//!
//! A pack holds one [`Detector`] per rule (each with its own partial
//! sequences, counters and exceptions, on the fast or the generic engine).
//! Most of a rule's stages require some field to hold one of a few strings
//! (`process.name == "curl"`, `process.args : "*--proxy*"`, `event.action
//! in ("exec", "fork")`, and the literal runs a `regex` cannot match
//! without: `"/var/run/"` of `regex~ "/var/run/\w+\.(pid|lock)"`), and
//! every stage with a category requires it.
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
//! and hands the record only to the rules with a stage left. The rules on
//! the generic engine among them read the values from that same read when
//! it stands for the record's tree: the pack's table holds every path they
//! read and carry, the read was plain (no dotted or repeated name on those
//! paths, and in MessagePack no bin, ext or non-finite float there:
//! [`Fields::plain`]) and a tree surely reads the record whole (JSON:
//! [`crate::format::syntax::surely_a_tree`]; MessagePack:
//! `crate::engine::generic::mp_tree_reads`); otherwise
//! (`max_lateness` on a sequence, an unusual record) they share one tree of
//! the record, holding only the fields they read or carry
//! ([`crate::engine::pruned`]). Either way, the same outcome. A record the
//! fast scanner is unsure of is read by the validating reader instead; one
//! that neither reads (malformed, too deep) goes to every rule, whose
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
//! may still come). For a rule on the generic engine whose `by` fields are
//! read as text, the same holds when partial sequences wait, but none under
//! the record's `by` values (one string each; up to 256 kept partials are
//! looked through). For a rule on the fast engine the pack asks its
//! detector before the record's stage tests, from the pack's read of the
//! record's time, address fields and join keys: when nothing waits under
//! the keys of any later stage the index gives (every key, as the detector
//! keys its partial sequences), the record is neither tested nor handed to
//! the rule (not checked as valid JSON, not counted in the rule's `records`
//! or stage matches: its `stage2_matches` count only records that could
//! extend something). A record the detector is unsure of there (a key
//! missing or with too many values, a time or address it could not admit,
//! exceptions) goes the usual way, and the detector makes the same test
//! after the stage tests. The one consequence: that record does not move the
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
use crate::engine::detector::{RecordError, Stats};
use crate::eql::{parse, CmpOp, EventQuery, Expr, FieldType, Literal, MatchOp, ParseLimits, Query, TypeMap};
use crate::format::event::{FieldTable, Fields, FieldsBuf, Scalar, Slot};
use crate::format::syntax::Checked;
use crate::config::rule::Rule;
use crate::{Config, Detector, Verdict};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use std::collections::VecDeque;

mod index;
mod needles;
mod precheck;
pub mod split;

pub use index::{Candidate, RuleIndex};
use index::*;
use needles::*;
use precheck::*;

/// The most `by` fields of a generic sequence the later-stage gate reads
/// (more: the rule sees the record).
const MAX_BY: usize = 8;

/// A standalone alert record of one rule of the pack (its detector wrote
/// `event.kind: "signal"` with the alert: [`Detector::write_signal`]).
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
    /// Other rules' selection on this pack's read ([`PackDetector::with_gate`]).
    gate: Option<Gate>,
    precheck: PreCheck,
    /// Per rule on the fast engine, where its fields are in the pack's
    /// read of a record: its detector is handed them rather than reading
    /// the record again.
    fast_maps: Vec<Option<FastMaps>>,
    /// Per plain sequence on the generic engine, its `by` fields in the
    /// pack's read (see the module docs: later stages while nothing waits).
    by_slots: Vec<Option<Vec<Slot>>>,
    /// Every path the rules on the generic engine read from a record's
    /// tree: the one tree read for them all holds only these.
    tree_paths: crate::engine::pruned::TreePaths,
    alerts: VecDeque<PackAlert>,
    /// `max_pending_sequences`, for the whole pack, and the partial
    /// sequences all rules keep (as of their last record).
    global_cap: u64,
    pending: u64,
    /// `max_record_bytes`: a longer record is refused before it is read.
    max_record_bytes: usize,
    /// Whether a plain sequence rule with nothing waiting may skip records
    /// that can match only its later stages (not with `max_lateness`, where
    /// an earlier first-stage event may still arrive).
    gate_later_stages: bool,
    records: u64,
    /// Records tested against a rule, summed over rules.
    tested: u64,
    /// Records in which some rule met a stage match without a usable
    /// `@timestamp` (each counted once, as one rule counts them; each rule's
    /// own count is in its counters).
    bad_timestamps: u64,
    /// Per rule, the records the index gave it (before its stages' tests).
    indexed_by_rule: Vec<u64>,
    /// Records a rule on the generic engine read from the pack's plain
    /// scan rather than a tree, summed over rules.
    scanned_reads: u64,
    /// Rules that did not load, `(name, reason)` (`skip_broken_rules`).
    skipped: Vec<(String, String)>,
    /// Buffers for the reads of a chunk's bodies made while the chunk is
    /// walked ([`PackDetector::read_ahead`]), at most [`READ_AHEAD`].
    pub(crate) ahead: Vec<FieldsBuf>,
}

/// The most bodies of one chunk read while the chunk is walked (the rest
/// are read as they are processed): the reads wait for the whole chunk to
/// be checked, and this bounds the memory they hold.
pub(crate) const READ_AHEAD: usize = 256;

impl PackDetector {
    /// A detector for every rule, with the same config (limits, exceptions).
    pub fn new(rules: Vec<Rule>, config: &Config) -> PackDetector {
        PackDetector::with_skipped(rules, Vec::new(), config)
    }

    /// [`PackDetector::new`], remembering the rules that did not load (to
    /// report them in [`PackDetector::report`]).
    pub fn with_skipped(rules: Vec<Rule>, skipped: Vec<(String, String)>, config: &Config) -> PackDetector {
        PackDetector::build(rules, skipped, &[], config)
    }

    /// [`PackDetector::new`] that also tells, record by record, whether the
    /// `gate` rules (run elsewhere, e.g. by another thread) may need the
    /// record ([`PackDetector::gate_hit`]): their index and stage tests run
    /// on this pack's one read of it. A record they do not need changes
    /// nothing in a pack of them but its record count, so it need not be
    /// handed to one.
    pub fn with_gate(rules: Vec<Rule>, gate: &[Rule], config: &Config) -> PackDetector {
        PackDetector::build(rules, Vec::new(), gate, config)
    }

    fn build(rules: Vec<Rule>, skipped: Vec<(String, String)>, gate: &[Rule], config: &Config) -> PackDetector {
        let mut detectors: Vec<Detector> = rules.iter().map(|r| Detector::with_rule(r.clone(), config)).collect();
        // Each alert leaves as a record of its own, marked as one.
        detectors.iter_mut().for_each(Detector::write_signal);
        let n_rules = rules.len();
        let types = config.types();
        let mut precheck = PreCheck::new(&rules, &types);
        // One index for this pack's rules and the gate's (numbered after
        // them): one walk of each field's values finds the candidates of
        // both.
        let index = if gate.is_empty() {
            FieldIndex::new(&rules, &types, config.prefilter, &mut precheck.table)
        } else {
            let both: Vec<Rule> = rules.iter().chain(gate).cloned().collect();
            FieldIndex::new(&both, &types, config.prefilter, &mut precheck.table)
        };
        let gate = (!gate.is_empty()).then(|| Gate::new(gate, config, &types, &mut precheck.table));
        let fast_maps = detectors.iter().map(|d: &Detector| FastMaps::new(d, &mut precheck.table)).collect();
        let by_slots = detectors
            .iter()
            .map(|d: &Detector| Some(d.generic_by_paths()?.iter().map(|p| precheck.table.intern(p)).collect()))
            .collect();
        let tree_paths =
            crate::engine::pruned::TreePaths::new(detectors.iter().filter_map(Detector::generic_tree_paths).flatten().map(String::as_str));
        // The pack's read holds them all too: a plain scan then stands for
        // the tree (`PackDetector::process`).
        for p in tree_paths.paths() {
            precheck.table.intern(p);
        }
        for d in &mut detectors {
            d.bind_read(&precheck.table);
        }
        PackDetector {
            tree_paths,
            index,
            gate,
            fast_maps,
            by_slots,
            candidates: Vec::with_capacity(rules.len()),
            precheck,
            gate_later_stages: config.max_lateness_ms == 0,
            global_cap: config.max_pending_sequences as u64,
            pending: 0,
            max_record_bytes: config.max_record_bytes,
            rules,
            detectors,
            alerts: VecDeque::new(),
            records: 0,
            tested: 0,
            bad_timestamps: 0,
            scanned_reads: 0,
            indexed_by_rule: vec![0; n_rules],
            skipped,
            ahead: Vec::new(),
        }
    }

    /// Rules that did not load, `(name, reason)`.
    pub fn skipped(&self) -> &[(String, String)] {
        &self.skipped
    }

    /// Records in which some rule met a stage match without a usable
    /// `@timestamp`, each counted once (the detector's `bad_timestamp`, as
    /// for one rule: each rule's own count is in [`PackDetector::stats`]).
    pub fn bad_timestamps(&self) -> u64 {
        self.bad_timestamps
    }

    /// The pack's counters: those of the records (`base`: records, read
    /// errors, unparsed, standalone alerts, as the caller counted them once
    /// per record) with every rule's sequence and state counters summed,
    /// and `bad_timestamp` once per record ([`PackDetector::bad_timestamps`]).
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
        self.process_with(record, msgpack, None)
    }

    /// The pack's read of the MessagePack body that `bytes` starts with (a
    /// chunk from the body on), made while the chunk is walked: where the
    /// body ends, and its fields for [`PackDetector::process_with`]. `None`
    /// when the read fails (the body is then skipped and checked by the
    /// chunk's walk, and read again when processed, as any other) or when
    /// `n` reads are held already ([`READ_AHEAD`]).
    pub(crate) fn read_ahead<'a>(&mut self, bytes: &'a [u8], n: usize) -> Option<(usize, Fields<'a>)> {
        if n >= READ_AHEAD {
            return None;
        }
        let mut buf = self.ahead.pop().unwrap_or_default();
        let mut fields = buf.take();
        match crate::format::msgpack::extract_prefix(&self.precheck.table, bytes, &mut fields) {
            Ok(end) if end <= self.max_record_bytes => Some((end, fields)),
            _ => {
                buf.put_back(fields);
                self.ahead.push(buf);
                None
            }
        }
    }

    /// [`PackDetector::process`], with the record's fields read already
    /// when `pre` holds them (from [`PackDetector::read_ahead`] on this
    /// MessagePack body; they go back to its buffers afterwards).
    pub(crate) fn process_with<'r>(&mut self, record: &'r [u8], msgpack: bool, pre: Option<Fields<'r>>) -> Result<usize, RecordError> {
        let ahead = pre.is_some();
        self.records += 1;
        if record.len() > self.max_record_bytes {
            // Every rule's detector refuses it: refused once for all,
            // unread, whether or not the index would have given it a rule.
            if let Some(g) = &mut self.gate {
                g.hit = false;
                g.hits.clear();
            }
            return Err(RecordError::TooLarge);
        }
        let (read, scan_checked) = self.select(record, msgpack, pre);
        let before = self.alerts.len();
        let mut err = None;
        let mut bad_here = false;
        // Rules on the generic engine read the record as a tree: once for
        // all, with only the fields they read.
        let mut parsed = None;
        // The record's syntax check (both verdicts, one pass), once a rule
        // asks; made already when the pack's scan read the record.
        let checked = std::cell::OnceCell::new();
        if let Some(c) = scan_checked {
            let _ = checked.set(c);
        }
        // The pack's read of the record, when it stands for its tree: a
        // plain read (every path a generic rule reads is on the table) of a
        // record a tree surely reads whole (JSON: as the pruned tree, leave
        // one naming serde_json's raw-value key to serde_json; MessagePack:
        // the tree's decoder's checks, without building).
        let as_tree = std::cell::OnceCell::new();
        let read_as_tree = || {
            *as_tree.get_or_init(|| {
                read.as_ref().filter(|f| {
                    f.plain()
                        && if msgpack {
                            crate::engine::generic::mp_tree_reads(record)
                        } else {
                            !crate::engine::pruned::names_raw_value(record)
                                && checked.get_or_init(|| crate::format::syntax::check(record)).tree
                        }
                })
            })
        };
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
            let verdict = if let Some(fields) = d.takes_read().then(read_as_tree).flatten() {
                self.scanned_reads += 1;
                d.process_scanned(record, msgpack, fields)
            } else if d.is_generic() {
                let paths = &self.tree_paths;
                let tree = parsed.get_or_insert_with(|| crate::engine::pruned::read_pruned(record, msgpack, paths));
                d.process_parsed(record, msgpack, tree)
            } else if let (Some(fields), Some(maps)) = (&read, &self.fast_maps[i]) {
                // Its fields, from the pack's read of the record. Later
                // stages with nothing waiting under the record's keys: passed
                // by, as the gate above does (see the module docs).
                let pass_by = self.gate_later_stages && self.index.plan.plain_sequence[i];
                d.process_read(record, msgpack, fields, &maps.decide, &maps.full, &checked, pass_by)
            } else if msgpack {
                d.process_msgpack(record)
            } else {
                d.process(record)
            };
            match verdict {
                Ok(Verdict::Annotated(bytes)) => {
                    let bytes = bytes.to_vec();
                    self.alerts.push_back(PackAlert { rule: i, msgpack, bytes });
                }
                Ok(Verdict::Unchanged) => {}
                Err(e) => err = err.or(Some(e)),
            }
            bad_here |= self.detectors[i].bad_timestamp_count() > bad_before;
            self.pending = others + self.detectors[i].pending_count();
            while let Some(a) = self.detectors[i].take_alert() {
                self.alerts.push_back(PackAlert { rule: i, msgpack: a.msgpack, bytes: a.bytes });
            }
        }
        self.bad_timestamps += bad_here as u64;
        if let Some(f) = read {
            if ahead {
                let mut buf = FieldsBuf::default();
                buf.put_back(f);
                self.ahead.push(buf);
            } else {
                self.precheck.fields.put_back(f);
            }
        }
        match err {
            Some(e) if self.alerts.len() == before => Err(e),
            _ => Ok(self.alerts.len() - before),
        }
    }

    /// The candidates of one record (`FieldIndex`), keeping of them only
    /// the stages whose test the record passes (`PreCheck`), and the
    /// candidates with a stage left; returns the fields read (to give back
    /// to `precheck.fields`), and the record's syntax check when the scan
    /// that read it made it. A record neither reader can read goes to
    /// every rule (their detectors then read and count it): `None`.
    fn select<'r>(&mut self, record: &'r [u8], msgpack: bool, pre: Option<Fields<'r>>) -> (Option<Fields<'r>>, Option<Checked>) {
        let mut checked = None;
        let pc = &mut self.precheck;
        let (fields, read) = match pre {
            Some(f) => (f, true),
            None => {
                let mut fields = pc.fields.take();
                let read = if msgpack {
                    crate::format::msgpack::extract(&pc.table, record, &mut fields).is_ok()
                } else {
                    // The fast scanner (checking the record's syntax as it
                    // goes: a pack's table reads most of a record), or where
                    // it is unsure (an escape in a field read, say), the
                    // validating reader: only a record neither can read goes
                    // to every rule.
                    match pc.table.scan_checked(record, &mut fields) {
                        Ok(c) => {
                            checked = c;
                            true
                        }
                        Err(_) => pc.table.extract(record, &mut fields).is_ok(),
                    }
                };
                (fields, read)
            }
        };
        if !read {
            self.index.all(self.detectors.len(), &mut self.candidates);
            pc.fields.put_back(fields);
            if let Some(g) = &mut self.gate {
                g.hit = true;
                g.hits.clear();
                g.hits.push((UNREAD, u64::MAX));
            }
            return (None, None);
        }
        self.index.candidates(&fields, &mut self.candidates);
        // The gate's candidates (after this pack's rules, in rule order) to
        // it, numbered as its own.
        let own = self.detectors.len();
        if let Some(g) = &mut self.gate {
            let mine = self.candidates.partition_point(|c| (c.rule as usize) < own);
            g.candidates.clear();
            g.candidates.extend(self.candidates.drain(mine..).map(|c| Candidate { rule: c.rule - own as u32, stages: c.stages }));
        }
        for c in &self.candidates {
            self.indexed_by_rule[c.rule as usize] += 1;
        }
        let (detectors, plain, gate) = (&mut self.detectors, &self.index.plan.plain_sequence, self.gate_later_stages);
        let (by_slots, fast_maps) = (&self.by_slots, &self.fast_maps);
        self.candidates.retain_mut(|c| {
            // The later stages of a plain sequence in which nothing waits
            // can extend nothing (see the module docs): not tested.
            let rule = c.rule as usize;
            if gate && plain[rule] {
                if !detectors[rule].has_state() {
                    c.stages &= 1;
                    if c.stages == 0 {
                        return false;
                    }
                } else if c.stages & 1 == 0 {
                    if by_slots[rule].as_deref().is_some_and(|s| nothing_under(&detectors[rule], &fields, s)) {
                        return false;
                    }
                    // A fast rule: the test its detector makes of a record
                    // passed by, made before the stage tests.
                    if fast_maps[rule].as_ref().is_some_and(|m| detectors[rule].later_stages_idle(&fields, &m.idle, c.stages)) {
                        return false;
                    }
                }
            }
            let Some(checks) = &mut pc.rules[c.rule as usize] else { return true };
            c.stages = stage_bits(checks, c.stages, &fields, pc.category_slot);
            c.stages != 0
        });
        if let Some(g) = &mut self.gate {
            g.hit = g.passes(&fields, pc.category_slot);
        }
        (Some(fields), checked)
    }

    /// Whether the last record processed may concern a rule of the gate
    /// ([`PackDetector::with_gate`]): one of its stages passed the index and
    /// the stage test, or the record could not be read. Always true without
    /// a gate.
    pub fn gate_hit(&self) -> bool {
        self.gate.as_ref().is_none_or(|g| g.hit)
    }

    /// When [`PackDetector::gate_hit`]: the gate's rules (numbered as given
    /// to [`PackDetector::with_gate`]) and the stages (bits, first stage
    /// lowest) that passed their index and stage tests, or `[(UNREAD, _)]`
    /// when the record could not be read. For [`PackDetector::may_need`]
    /// of the pack that runs those rules.
    pub fn gate_hits(&self) -> &[(u32, u64)] {
        self.gate.as_ref().map_or(&[], |g| &g.hits)
    }

    /// Whether a record whose selection another pack's gate made (`hits`,
    /// from [`PackDetector::gate_hits`]) may change anything here, as of
    /// now: false only when each rule it hits is a plain sequence in which
    /// nothing waits and only later stages passed — the candidates this
    /// pack would keep of it are then none (see `PackDetector::select`),
    /// so the record can be passed by unread, with the same alerts.
    pub fn may_need(&self, hits: &[(u32, u64)]) -> bool {
        hits.iter().any(|&(rule, stages)| {
            let r = rule as usize;
            rule == UNREAD
                || r >= self.detectors.len()
                || !(self.gate_later_stages && self.index.plan.plain_sequence[r])
                || stages & 1 != 0
                || self.detectors[r].has_state()
        })
    }

    /// End of stream for every rule: held events and waiting results.
    pub fn finish(&mut self) -> usize {
        let before = self.alerts.len();
        // (Held events released here: the rule that counts the most counts
        // at least as many records as any other, and no more than there are.)
        let mut most = 0;
        for i in 0..self.detectors.len() {
            let bad_before = self.detectors[i].bad_timestamp_count();
            self.detectors[i].finish();
            most = most.max(self.detectors[i].bad_timestamp_count() - bad_before);
            while let Some(a) = self.detectors[i].take_alert() {
                self.alerts.push_back(PackAlert { rule: i, msgpack: a.msgpack, bytes: a.bytes });
            }
        }
        self.bad_timestamps += most;
        self.pending = self.detectors.iter().map(Detector::pending_count).sum();
        self.alerts.len() - before
    }
}

/// The stages (bits of `stages`) whose test the record's `fields` pass: an
/// unreadable address in a field typed as one makes the test unsure, and
/// the stage passes.
fn stage_bits(checks: &mut [StageCheck], stages: u64, fields: &Fields, category_slot: Slot) -> u64 {
    let mut bits = 0u64;
    for (k, ch) in checks.iter_mut().enumerate() {
        let bit = 1u64 << k.min(63);
        if stages & bit == 0 {
            continue;
        }
        let unsure_ip = ch.ip_slots.iter().any(|&s| {
            fields.get(s).any(|v| match v {
                Scalar::Null => false,
                Scalar::Str(x) => crate::format::ip::parse_ip(x).is_none(),
                _ => true,
            })
        });
        if unsure_ip || ch.matches(fields, category_slot) {
            bits |= bit;
        }
    }
    bits
}

/// A rule number in [`PackDetector::gate_hits`] that stands for "the
/// record could not be read" (every rule, every stage).
pub const UNREAD: u32 = u32::MAX;

/// Other rules' index and stage tests on the pack's read of each record,
/// without their detectors (see [`PackDetector::with_gate`]).
#[derive(Debug)]
struct Gate {
    checks: Vec<Option<Vec<StageCheck>>>,
    candidates: Vec<Candidate>,
    hit: bool,
    /// The last record's `(rule, stages)` that passed (or `[(UNREAD, _)]`).
    hits: Vec<(u32, u64)>,
}

impl Gate {
    fn new(rules: &[Rule], config: &Config, types: &TypeMap, table: &mut FieldTable) -> Gate {
        let checks = rules.iter().map(|r| stage_checks(r, types, table)).collect();
        // Every path the pack of these rules reads is read here too: a
        // record that pack could not read (a bad value in a field only it
        // reads) is unreadable here as well, and goes to it as such
        // ([`UNREAD`]), as it would have alone.
        let theirs = PackDetector::new(rules.to_vec(), config);
        let t = &theirs.precheck.table;
        for s in 0..t.len() {
            table.intern(t.name(s as Slot));
        }
        Gate { checks, candidates: Vec::new(), hit: false, hits: Vec::new() }
    }

    /// Whether some stage of these rules may match the record: the pack's
    /// own selection without the state of their detectors (so a superset).
    /// (The stages of each rule that passed: in `hits`.) `candidates`: what
    /// the pack's index gave these rules.
    fn passes(&mut self, fields: &Fields, category_slot: Slot) -> bool {
        let checks = &mut self.checks;
        self.hits.clear();
        for c in &self.candidates {
            let stages = match &mut checks[c.rule as usize] {
                // Not pre-checked: every stage the index gave.
                None => c.stages,
                Some(ch) => stage_bits(ch, c.stages, fields, category_slot),
            };
            if stages != 0 {
                self.hits.push((c.rule, stages));
            }
        }
        !self.hits.is_empty()
    }
}

/// Where a fast rule's fields are in the pack's read: `(its slot, the
/// pack's slot)`.
#[derive(Debug)]
struct FastMaps {
    /// The fields that decide whether a record changes anything.
    decide: Vec<(Slot, Slot)>,
    /// The fields of [`Detector::later_stages_idle`].
    idle: Vec<(Slot, Slot)>,
    /// Every field of its table (those its alert carries too): a record
    /// that may change something is evaluated from them.
    full: Vec<(Slot, Slot)>,
}

impl FastMaps {
    /// `None` for a rule on the generic engine.
    fn new(d: &Detector, table: &mut FieldTable) -> Option<FastMaps> {
        let decide = d.decide_slots()?;
        let own = d.field_table();
        let full: Vec<(Slot, Slot)> = (0..own.len() as Slot).map(|s| (s, table.intern(own.name(s)))).collect();
        let idle = d.idle_slots()?;
        Some(FastMaps { decide: decide.iter().map(|&s| full[s as usize]).collect(), idle: idle.iter().map(|&s| full[s as usize]).collect(), full })
    }
}

/// Whether a generic rule keeps no partial sequence under this record's
/// values of its `by` fields (at `slots` of the pack's read; one string
/// each, as the engine reads them). False when unsure.
fn nothing_under(d: &Detector, fields: &Fields, slots: &[Slot]) -> bool {
    if slots.len() > MAX_BY {
        return false;
    }
    let mut by = [""; MAX_BY];
    let found = slots.iter().zip(&mut by).all(|(&s, b)| {
        let mut vals = fields.get(s);
        match (vals.next(), vals.next()) {
            (Some(Scalar::Str(v)), None) => {
                *b = v.as_ref();
                true
            }
            _ => false,
        }
    });
    found && d.generic_nothing_under(&by[..slots.len()])
}

/// A rule file that did not load: its name and why.
pub type Unloaded = (String, String);

/// Every rule file of a directory (`.toml`: detection-rules files; `.eql`:
/// bare queries named after the file), sorted by file name. Rules that do
/// not load are returned with their reasons, not dropped silently.
pub fn load_dir(dir: &std::path::Path) -> std::io::Result<(Vec<Rule>, Vec<Unloaded>)> {
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
        assert_eq!(texts(r#"process where process.name in ("sh", "sh2")"#), [["sh", "sh2"]], "a whole value of two bytes is as rare as the value");
        assert_eq!(texts(r#"process where process.name : "*sh*""#), [["process"]], "a fragment of two bytes is everywhere");
        assert_eq!(texts(r#"process where process.name == "id" and event.action == "exec""#), [["id"]], "not a common value");
        assert_eq!(texts(r#"network where process.name in ("curlx", "wgetx")"#), [["curlx", "wgetx"]]);
        assert_eq!(texts(r#"process where process.name : ("nc", "ncat")"#), [["nc", "ncat"]], "`:` without a wildcard: whole values");
        assert_eq!(
            texts(r#"process where event.action == "exec" and (process.name : "python*" or process.name : "nc")"#),
            [["python", "nc"]],
            "a fragment, or a short whole value, is rarer than a common value"
        );
        assert_eq!(texts(r#"any where process.args : "*--proxy-user*""#), [["--proxy-user"]]);
        assert_eq!(texts(r#"any where a == "left" or b like~ "*right*""#), [["left", "right"]]);
        assert_eq!(
            texts(r#"sequence [process where x == "first"] [network where y == "second!"]"#),
            [["first"], ["second!"]]
        );
    }

    /// A record that can only extend a generic plain sequence goes to it
    /// only when a partial sequence waits under its `by` value; the alerts
    /// are the rule's alone.
    #[test]
    fn later_stages_of_a_generic_sequence_go_where_a_partial_waits() {
        let q = r#"sequence by host.id with maxspan=1m
            [process where process.name == "first" and length(process.args) > 0]
            [network where destination.port == 4444 and length(process.name) > 0]"#;
        let rule = Rule::from_eql(q, crate::config::rule::meta_for_file("gate")).unwrap();
        let mut pack = PackDetector::new(vec![rule.clone()], &Config::default());
        assert!(pack.is_generic(0), "the test needs the generic engine");
        let mut alone = Detector::with_rule(rule, &Config::default());
        let ev = |t: u32, host: &str, cat: &str, name: &str, port: u32| {
            format!(
                r#"{{"@timestamp":"2026-01-01T00:00:{t:02}Z","event":{{"category":["{cat}"],"id":"e{t}"}},"host":{{"id":"{host}"}},"process":{{"name":"{name}","args":["x"]}},"destination":{{"port":{port}}}}}"#
            )
        };
        let stream = [
            ev(1, "b", "network", "nc", 4444), // nothing waits anywhere
            ev(2, "a", "process", "first", 0),
            ev(3, "b", "network", "nc", 4444), // a partial waits, under "a"
            ev(4, "a", "network", "nc", 4444), // completes
        ];
        let mut tested = Vec::new();
        let (mut from_pack, mut from_alone) = (0, 0);
        for r in &stream {
            from_pack += pack.process(r.as_bytes(), false).unwrap();
            tested.push(pack.stats(0).records);
            if let Verdict::Annotated(_) = alone.process(r.as_bytes()).unwrap() {
                from_alone += 1;
            }
            from_alone += alone.queued_alerts();
            while alone.take_alert().is_some() {}
        }
        assert_eq!(tested, [0, 1, 1, 2], "records 1 and 3 are not tested");
        assert_eq!((from_pack, from_alone), (1, 1));
    }

    /// A record over `max_record_bytes` is refused by the pack itself,
    /// unread, as each rule's detector refuses it: `TooLarge` whether or
    /// not the index would give it a rule, and no rule tested on it.
    #[test]
    fn a_record_too_large_is_refused_once_for_all_rules() {
        let q = r#"process where process.name == "first""#;
        let rule = Rule::from_eql(q, crate::config::rule::meta_for_file("big")).unwrap();
        let config = Config { max_record_bytes: 100, ..Config::default() };
        let mut pack = PackDetector::with_gate(vec![rule.clone()], &[rule], &config);
        let pad = "x".repeat(100);
        let matching = format!(r#"{{"event":{{"category":"process"}},"process":{{"name":"first"}},"pad":"{pad}"}}"#);
        let other = format!(r#"{{"event":{{"category":"file"}},"pad":"{pad}"}}"#);
        for r in [&matching, &other] {
            assert_eq!(pack.process(r.as_bytes(), false), Err(RecordError::TooLarge), "{r}");
            assert!(!pack.gate_hit(), "the rules not split need it no more");
        }
        assert_eq!(pack.work(), (2, 0), "two records, no rule tested");
        let fits = r#"{"@timestamp":"2026-01-01T00:00:01Z","event":{"category":"process"},"process":{"name":"first"}}"#;
        assert_eq!(pack.process(fits.as_bytes(), false), Ok(1));
    }

    /// Four generic rules, in a pack whose generic rules read the pack's
    /// read where it stands for the tree, and in one whose rules read trees.
    fn reading_packs() -> (PackDetector, PackDetector) {
        let rule = |q: &str| Rule::from_eql(q, crate::config::rule::meta_for_file("r")).unwrap();
        let rules = vec![
            rule(r#"sample by host.id, process.pid [process where process.name : "x*" and length(process.name) > 1] [network where not cidrmatch(destination.ip, "10.0.0.0/8")]"#),
            rule(r#"sequence by host.id with maxspan=1m [process where process.name == "x1" and process.pid > 2 and ?custom.mark == null] [process where endsWith(process.parent.name, "y") and process.args_count >= 2]"#),
            rule(r#"any where length(process.name) == 2 and process.pid != null and process.name : "x*""#),
            // (An optional field outside ECS keeps it on the generic engine.)
            rule(r#"process where process.name : ("X1", "x2") and ?process.thread.id == null and user.name == null and ?custom.mark == null"#),
        ];
        let plain = PackDetector::new(rules.clone(), &Config::default());
        let mut trees = PackDetector::new(rules, &Config::default());
        for d in &mut trees.detectors {
            assert!(!d.bind_read(&FieldTable::new()), "an empty table holds no path");
        }
        for i in 0..plain.detectors.len() {
            assert!(plain.is_generic(i) && plain.detectors[i].takes_read(), "rule {i}");
        }
        (plain, trees)
    }

    fn reading_time(s: u32) -> String {
        format!("2026-01-01T00:00:{:02}.5Z", s % 60)
    }

    /// Records of every shape for [`reading_packs`], all plain.
    fn plain_shapes() -> Vec<String> {
        let mut records = Vec::new();
        for (k, shape) in [
            r#""process":{"name":"x1","pid":3,"args":["a","b",["c"]],"args_count":3,"parent":{"name":"ay"}},"user":{"name":null}"#,
            r#""process":{"name":"x2","pid":7,"args":"a","parent":[{"name":"by"},{"name":"c"}],"args_count":2}"#,
            r#""process":{"name":["x1","X1"],"pid":-4,"args":["é","ü",null],"thread":{"id":1}},"user":{"name":["u"]}"#,
            r#""process":{"name":"x1","pid":18446744073709551615,"args":[],"parent":{"name":{"y":1}}},"destination":{"ip":"8.8.8.8"}"#,
            r#""process":{"name":"xz","pid":2.5,"args":["a","b"],"parent":{"name":"zy"},"args_count":2.0},"destination":{"ip":["10.1.1.1","1.1.1.1"]}"#,
            r#""process":{"name":"x1","pid":5},"destination":{"ip":"not an ip"},"user":{}"#,
        ]
        .iter()
        .enumerate()
        {
            for cat in ["process", "network"] {
                let host = if k % 2 == 0 { "h1" } else { "h2" };
                records.push(format!(
                    r#"{{"@timestamp":"{}","event":{{"category":"{cat}","id":"e{k}{cat}"}},"host":{{"id":"{host}"}},{shape}}}"#,
                    reading_time(k as u32)
                ));
            }
        }
        records
    }

    /// Both packs of [`reading_packs`] give the same outcome, alerts and
    /// counters on `records` (`msgpack`: MessagePack bodies); returns how
    /// many alerts came.
    fn same_outcome(plain: &mut PackDetector, trees: &mut PackDetector, records: &[Vec<u8>], msgpack: bool) -> usize {
        let mut alerts = 0;
        for rec in records {
            let show = String::from_utf8_lossy(rec);
            let a = plain.process(rec, msgpack).map_err(|e| format!("{e:?}"));
            let b = trees.process(rec, msgpack).map_err(|e| format!("{e:?}"));
            assert_eq!(a, b, "{show}");
            while let Some(x) = plain.take_alert() {
                let y = trees.take_alert().expect("the same alerts");
                assert_eq!((x.rule, String::from_utf8_lossy(&x.bytes)), (y.rule, String::from_utf8_lossy(&y.bytes)), "{show}");
                alerts += 1;
            }
            assert!(trees.take_alert().is_none(), "{show}");
        }
        plain.finish();
        trees.finish();
        while let Some(x) = plain.take_alert() {
            let y = trees.take_alert().expect("the same alerts");
            assert_eq!(String::from_utf8_lossy(&x.bytes), String::from_utf8_lossy(&y.bytes));
            alerts += 1;
        }
        assert!(trees.take_alert().is_none());
        assert_eq!(plain.report(), trees.report());
        alerts
    }

    /// A rule on the generic engine reads a record from the pack's plain
    /// scan exactly as from its tree: the same alerts (carried values
    /// included) and counters as the same pack reading trees, on records
    /// of every shape; the records that are not plain (dotted or repeated
    /// names, escapes, numbers a tree might refuse) are read as trees.
    #[test]
    fn a_generic_rule_reads_the_scan_as_the_tree() {
        let (mut plain, mut trees) = reading_packs();
        let ts = reading_time;
        let mut records: Vec<(String, bool)> = plain_shapes().into_iter().map(|r| (r, true)).collect();
        let n_plain = records.len();
        for (k, odd) in [
            r#""process.name":"x1","process":{"pid":9,"args":["a","b","c"]}"#,
            r#""process":{"name":"x1","pid":9,"name":"x2","args":["a","b","c"]}"#,
            r#""process":{"name":"x\u0031","pid":9,"args":["a","b","c"]}"#,
            r#""process":{"name":"x1","pid":9,"args":["a","b","c"]},"n":1e3"#,
            r#""process":{"name":"x1","pid":9,"args":["a","b","c"]},"s":"\ud83d\ude00""#,
        ]
        .iter()
        .enumerate()
        {
            records.push((format!(r#"{{"@timestamp":"{}","event":{{"category":"process","id":"o{k}"}},"host":{{"id":"h1"}},{odd}}}"#, ts(20 + k as u32)), false));
        }
        let bytes: Vec<Vec<u8>> = records.iter().map(|(r, _)| r.clone().into_bytes()).collect();
        let alerts = same_outcome(&mut plain, &mut trees, &bytes, false);
        // Every rule alerted at least once, most generic reads came from
        // the scan, and none from the records that are not plain.
        for i in 0..4 {
            assert!(plain.stats(i).annotated + plain.stats(i).standalone_alerts > 0, "rule {i}: {:?}", plain.report()["rules"][i]);
        }
        assert!(alerts >= 4);
        assert_eq!(trees.scanned_reads, 0);
        assert!(plain.scanned_reads > n_plain as u64 / 2, "{}", plain.scanned_reads);
        let before = plain.scanned_reads;
        for (rec, _) in records.iter().filter(|r| !r.1) {
            plain.process(rec.as_bytes(), false).ok();
        }
        assert_eq!(plain.scanned_reads, before, "no plain scan of the others");
    }

    /// The same on MessagePack bodies: a generic rule reads the pack's read
    /// of a body as its tree, with the same outcome; the bodies whose read
    /// is not plain (a dotted or repeated name, a bin, an ext or a float
    /// that is not finite on a path read) or that a tree refuses where no
    /// field is read (a string that is not UTF-8, a key that is not a
    /// string, nesting beyond the tree's limit) are read as trees.
    #[test]
    fn a_generic_rule_reads_the_msgpack_read_as_the_tree() {
        let (mut plain, mut trees) = reading_packs();
        let body = |v: serde_json::Value| {
            let mut out = Vec::new();
            crate::format::msgpack::merge(&[0x80], v.as_object().unwrap().clone(), &mut out).unwrap();
            out
        };
        let mut records: Vec<Vec<u8>> = plain_shapes().iter().map(|r| body(serde_json::from_str(r).unwrap())).collect();
        // A body with one more member (raw MessagePack, a key then a value).
        let with = |k: u32, extra: &[u8]| {
            let base = serde_json::json!({
                "@timestamp": reading_time(30 + k),
                "event": {"category": "process", "id": format!("m{k}")},
                "host": {"id": "h1"},
                "process": {"name": "x1", "pid": 9, "args": ["a", "b", "c"], "parent": {"name": "ay"}, "args_count": 3},
            });
            let mut b = body(base);
            assert!(b[0] < 0x8f, "a fixmap with room for one more member");
            b[0] += 1;
            b.extend_from_slice(extra);
            b
        };
        let key = |k: &str| [&[0xa0 | k.len() as u8][..], k.as_bytes()].concat();
        // A finite float32 on a path: plain.
        records.push(with(0, &[key("destination"), vec![0x81], key("ip"), vec![0xca], 2.5f32.to_be_bytes().to_vec()].concat()));
        let n_plain = records.len();
        let mut deep = key("zz");
        deep.extend(std::iter::repeat_n(0x91, 130));
        deep.push(0xc0);
        let odd = [
            [key("process.name"), key("x2")].concat(),
            [key("process"), vec![0x81], key("name"), key("x2")].concat(),
            [key("user"), vec![0x81], key("name"), vec![0xc4, 1, b'u']].concat(),
            [key("user"), vec![0x81], key("name"), vec![0xd4, 1, 0]].concat(),
            [key("destination"), vec![0x81], key("ip"), vec![0xcb], f64::NAN.to_be_bytes().to_vec()].concat(),
            [key("zz"), vec![0xa2, 0xff, 0xfe]].concat(),
            [key("zz"), vec![0x81, 0x01, 0x02]].concat(),
            deep,
        ];
        for (k, extra) in odd.iter().enumerate() {
            records.push(with(1 + k as u32, extra));
        }
        let alerts = same_outcome(&mut plain, &mut trees, &records, true);
        assert!(alerts >= 4, "{alerts}");
        assert_eq!(trees.scanned_reads, 0);
        assert!(plain.scanned_reads > n_plain as u64 / 2, "{}", plain.scanned_reads);
        let before = plain.scanned_reads;
        for rec in &records[..n_plain] {
            plain.process(rec, true).ok();
        }
        assert!(plain.scanned_reads > before, "the plain bodies, read again");
        let before = plain.scanned_reads;
        for rec in &records[n_plain..] {
            plain.process(rec, true).ok();
        }
        assert_eq!(plain.scanned_reads, before, "no plain read of the others");
        // The bodies a tree refuses were counted by the rules they reached.
        let refused: u64 = (0..4).map(|i| plain.stats(i).invalid_msgpack + plain.stats(i).too_deep).sum();
        assert!(refused >= 3, "{refused}");
        // And on damaged bodies (bits flipped, bytes replaced, truncated):
        // the same outcome, whichever way each is read.
        let (mut plain, mut trees) = reading_packs();
        let mut rnd = crate::xorshift(0x5eed_0fb0_d1e5);
        let mut damaged = Vec::new();
        for _ in 0..40 {
            for rec in &records {
                let mut b = rec.clone();
                crate::mutate(&mut b, &mut rnd);
                damaged.push(b);
            }
        }
        same_outcome(&mut plain, &mut trees, &damaged, true);
        assert!(plain.scanned_reads > damaged.len() as u64 / 10, "{} of {}", plain.scanned_reads, damaged.len());
    }

    /// A record in which two rules meet a stage match without a usable
    /// `@timestamp` counts once in the pack's `bad_timestamp` (as it leaves
    /// once, as one rule counts it), and once in each rule's own counters.
    #[test]
    fn a_bad_timestamp_counts_once_per_record() {
        let rules = vec![Rule::builtin("apt_netcon_v5").unwrap(), Rule::builtin("apt_netcon_v11").unwrap()];
        let mut pack = PackDetector::new(rules, &Config::default());
        let shell = |ts: &str| {
            format!(
                r#"{{{ts}"event":{{"category":["process"],"type":["start"],"action":"exec","id":"x"}},"host":{{"os":{{"type":"linux"}},"id":"h"}},"process":{{"name":"sh","args":["sh","-c","x"],"parent":{{"name":"apt"}},"entity_id":"e1"}}}}"#
            )
        };
        assert_eq!(pack.process(shell("").as_bytes(), false), Err(RecordError::BadTimestamp));
        assert_eq!((pack.stats(0).bad_timestamp, pack.stats(1).bad_timestamp), (1, 1), "each rule counts it");
        assert_eq!(pack.bad_timestamps(), 1, "the pack counts the record once");
        assert_eq!(pack.summed_stats(Stats::default()).bad_timestamp, 1);
        assert_eq!(pack.process(shell(r#""@timestamp":"2026-01-01T00:00:00Z","#).as_bytes(), false), Ok(0));
        pack.finish();
        assert_eq!(pack.bad_timestamps(), 1);
    }

    /// An escape in a field read makes the fast scanner unsure; the
    /// validating reader then reads the record, and only its candidates
    /// see it (a malformed record still goes to every rule, to be counted).
    #[test]
    fn a_record_with_escapes_goes_to_its_candidates_only() {
        let rule = |q: &str| Rule::from_eql(q, crate::config::rule::meta_for_file("r")).unwrap();
        let rules = vec![rule(r#"process where process.name == "aaa""#), rule(r#"process where process.name == "bbb""#)];
        let mut pack = PackDetector::new(rules, &Config::default());
        let rec = br#"{"@timestamp":"2026-01-01T00:00:00Z","event":{"category":"process","id":"x"},"process":{"name":"\u0061aa"}}"#;
        assert_eq!(pack.process(rec, false).unwrap(), 1, "rule 0 matches the unescaped value");
        assert_eq!((pack.stats(0).records, pack.stats(1).records), (1, 0));
        assert!(pack.process(br#"{"process":{"name":"aaa""#, false).is_err());
        assert_eq!((pack.stats(0).records, pack.stats(1).records), (2, 1), "a malformed record: every rule counts it");
    }

    /// Case-sensitive and case-insensitive fragments of one field share an
    /// automaton: each finds what it should, on ASCII values and others.
    #[test]
    fn fragments_of_both_cases_on_one_field() {
        let rule = |q: &str| Rule::from_eql(q, crate::config::rule::meta_for_file("r")).unwrap();
        let rules = vec![
            rule(r#"process where process.command_line like "*Foo*""#),
            rule(r#"process where process.command_line : "*bar*""#),
        ];
        let mut pack = PackDetector::new(rules, &Config::default());
        let cases = [("xFooy", [1, 0]), ("xfooy", [0, 0]), ("xBARy", [0, 1]), ("Äx BaR", [0, 1]), ("ÄFoo", [1, 0]), ("ÄFOO", [0, 0])];
        for (cl, want) in cases {
            let before = [pack.stats(0).records, pack.stats(1).records];
            let rec = format!(r#"{{"@timestamp":"2026-01-01T00:00:00Z","event":{{"category":"process","id":"x"}},"process":{{"command_line":"{cl}"}}}}"#);
            let alerts = pack.process(rec.as_bytes(), false).unwrap();
            let tested = [pack.stats(0).records - before[0], pack.stats(1).records - before[1]];
            assert_eq!(tested, want, "{cl}: the rules the index lets through");
            assert_eq!(alerts as u64, want.iter().sum::<u64>(), "{cl}: alerts");
            while pack.take_alert().is_some() {}
        }
    }

    #[test]
    fn what_requires_nothing_sees_everything() {
        assert!(req(r#"any where true"#).is_none());
        assert!(req(r#"any where not x == "a""#).is_none());
        assert!(req(r#"any where x == "a" or y > 3"#).is_none());
        assert!(req(r#"any where x == "5""#).is_none(), "a number can equal it");
        assert!(req(r#"any where x regex "ab.*""#).is_none(), "no string of three bytes required");
        assert!(req(r#"any where x regex "(abc|.*)d""#).is_none(), "an alternative requires nothing");
        assert!(req(r#"sequence [process where true] [any where true]"#).is_none());
    }

    #[test]
    fn a_regex_is_indexed_by_the_strings_it_requires() {
        let one = |q: &str| -> Vec<(String, bool, bool)> {
            let sets = req(q).unwrap();
            assert_eq!(sets.len(), 1, "{q}");
            sets[0].iter().map(|n| (n.text.clone(), n.ci, n.exact)).collect()
        };
        let frag = |t: &str, ci: bool| (t.to_string(), ci, false);
        assert_eq!(one(r#"process where process.executable regex~ "/var/run/\\w+\\.(pid|lock|reboot)""#), [frag("/var/run/", true)]);
        assert_eq!(one(r#"any where x regex "abc.*""#), [frag("abc", false)]);
        assert_eq!(one(r#"any where x regex ".*(curl|wget) .*""#), [frag("curl", false), frag("wget", false)]);
        assert_eq!(one(r#"any where x regex "a+bcd[e]f?""#), [frag("bcde", false)]);
        assert_eq!(one(r#"any where x regex ("abc.*", "x*wxyz")"#), [frag("abc", false), frag("wxyz", false)]);
        // A value that matches holds the string, whatever its case under regex~.
        let rules = vec![Rule::from_eql(r#"any where x regex~ ".*/VAR/run/[a-z]+""#, crate::config::rule::meta_for_file("t")).unwrap()];
        let mut pack = PackDetector::new(rules, &Config::default());
        for (x, want) in [("/var/RUN/abc", 1), ("x/Var/Run/q", 1), ("/var/rum/abc", 0)] {
            let rec = format!(r#"{{"@timestamp":"2026-01-01T00:00:00Z","event":{{"id":"e"}},"x":"{x}"}}"#);
            assert_eq!(pack.process(rec.as_bytes(), false).unwrap(), want, "{x}");
            while pack.take_alert().is_some() {}
        }
    }
}
