//! The generic streaming EQL engine: any Elasticsearch EQL query (event
//! queries, sequences with any number of stages, `by` keys, `maxspan`,
//! `with runs=N`, `until`, missing-event stages `![…]`, and `sample`) over a
//! stream of events in time order.
//!
//! Conditions are compiled by [`super::eval`]; this module keeps the state
//! between events. Its semantics are Elasticsearch's (`TumblingWindow`,
//! `SequenceMatcher`, `KeyToSequences`, `SampleIterator`), read for a
//! stream:
//!
//! * **Order.** Events are pushed in time order (`@timestamp`, then the
//!   caller's tiebreaker); the push order is the ordinal order, so "strictly
//!   earlier" means "pushed before".
//! * **Join keys.** The sequence's `by` fields then the stage's own. An
//!   event joins under every combination of its keys' non-null values (one
//!   sequence per key value: `sequenceWithMultivalue_*`); a non-optional key
//!   field without a value keeps the event out of that stage
//!   (`AddMandatoryJoinKeyFilter`), an optional one (`?f`) joins as null.
//! * **Advancing.** A stage-n event extends the LATEST partial sequence of
//!   stage n−1 under its key that ended strictly earlier; that partial and
//!   every older one of the key at stage n−1 are removed (`trimBefore`),
//!   whether or not the maxspan test then passes. `maxspan` rejects when
//!   `last − first > maxspan` (inclusive bound). A sequence completes when
//!   its last positive stage is matched.
//! * **`until [q]`**: a partial is dropped when an until event of its key
//!   lies in [its last event, the current event).
//! * **`with runs=N`**: the stage repeated N times.
//! * **Missing-event stages `![q]`**: the positive stages match as above;
//!   then a completed candidate is kept only if no event matching `q` with
//!   the same key lies strictly between the neighbouring positive events (a
//!   missing stage in the middle), or within `maxspan` of the first positive
//!   event before it (leading) / of the last one after it (trailing). A
//!   trailing check needs the future: the result is held until the event-time
//!   watermark passes `last + maxspan` (or the stream ends), then released.
//! * **`sample by k [q1] [q2] …`**: for each key combination, the first
//!   events of each stage (arrival order), combined into one sample of
//!   distinct events; one sample per key. A stream has no end, so candidates
//!   are kept for a window of event time ([`EngineOptions::sample_window_ms`],
//!   a rule's look-back) after the key's first candidate, then dropped.
//!
//! State is bounded: at most [`EngineOptions::max_partials`] partial
//! sequences, sample candidates and missing-event records in all; past it
//! the oldest are evicted and counted ([`EngineStats`]).

use super::ast::{Field, Query, Stage};
use super::eval::{test, CondCompiler, Cond, Doc, FieldSet, ReadSlots, Source};
use crate::format::event::{FieldTable, Scalar};
use super::types::{FieldInfo, FieldType, TypeMap};
use super::value::Val;
use super::{parse, ParseLimits, RuleError, RuleErrorKind};
use serde_json::Value;
use std::collections::VecDeque;
/// The state's maps, keyed by join-key values (foldhash: a fast hasher,
/// seeded per process; nothing depends on their iteration order).
type HashMap<K, V> = foldhash::HashMap<K, V>;

/// How an [`Engine`] reads events.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Field types (ECS built in plus any user mapping).
    pub types: TypeMap,
    /// The event-time field (a `date`): `@timestamp`.
    pub timestamp_field: String,
    /// `sample` queries: how long (event time, ms) a key's candidates are kept.
    /// `None` keeps them without a time limit (still under the caps).
    pub sample_window_ms: Option<u64>,
    /// At most this many partial sequences / sample candidates in all.
    pub max_partials: usize,
    /// Fields copied out of each event that takes part in a result
    /// ([`Match::carried`]); empty: nothing is copied.
    pub carry_fields: Vec<String>,
    /// The type map lists every field of the data, as an index mapping does
    /// (user mapping plus the fields dynamic mapping would add). Then an
    /// optional field `?f` it lacks is null in every event, as Elasticsearch
    /// folds it at compile time (`?x == ?y` is true). Off by default: a
    /// stream's fields are not known in advance, so an optional field is
    /// read from each event like any other.
    pub mapping_complete: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            types: TypeMap::ecs(),
            timestamp_field: "@timestamp".to_string(),
            sample_window_ms: None,
            max_partials: 100_000,
            carry_fields: Vec::new(),
            mapping_complete: false,
        }
    }
}

/// One result: an event query's event, a completed sequence or a sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    /// One entry per result position (a sequence's stages after `runs`
    /// expansion, in stage order; a sample's stages; one for an event
    /// query): the ordinal the caller gave the event, `None` for a
    /// missing-event stage.
    pub events: Vec<Option<u64>>,
    /// The join key values, as Elasticsearch prints them (`None` for null).
    pub keys: Vec<Option<String>>,
    /// Per result position, the [`EngineOptions::carry_fields`] of the event
    /// (an object of dotted names), `None` for a missing-event stage or
    /// when nothing is carried.
    pub carried: Vec<Option<std::sync::Arc<serde_json::Map<String, Value>>>>,
    /// Event time of each position (`None`: missing stage or no time).
    pub times: Vec<Option<i64>>,
}

/// Counters of one engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub events: u64,
    /// Events that matched at least one stage.
    pub stage_matches: u64,
    pub results: u64,
    /// Values dropped as malformed for their field type (`ignore_malformed`).
    pub malformed_values: u64,
    /// Events that matched a stage of a sequence or sample without a usable
    /// time; ignored by it.
    pub no_timestamp: u64,
    /// Partials dropped because their maxspan (or sample window) passed.
    pub expired: u64,
    /// Partials dropped to stay under `max_partials`.
    pub evicted: u64,
    /// Candidates rejected by a missing-event stage.
    pub missing_rejected: u64,
    /// Partials dropped by an `until` event.
    pub until_dropped: u64,
    /// Key combinations beyond the per-event limit, not joined.
    pub keys_truncated: u64,
}

/// Most key combinations one event joins under.
pub const MAX_KEY_COMBINATIONS: usize = 256;

#[derive(Debug, Clone)]
struct KeySpec {
    slot: usize,
    optional: bool,
}

#[derive(Debug, Clone)]
struct CStage {
    cond: Cond,
    keys: Vec<KeySpec>,
    missing: bool,
}

type Key = Vec<Option<String>>;
/// The carried fields of a stored event, kept as their JSON text (a
/// fraction of the memory of a map of values; read back only when a result
/// is emitted).
type Carried = Option<std::sync::Arc<str>>;

/// Each carried field once (its first occurrence), in order.
fn each_once(fields: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(fields.len());
    for f in fields {
        if !out.contains(f) {
            out.push(f.clone());
        }
    }
    out
}

/// Each name as a JSON object's member name and its colon.
fn carry_keys(names: &[String]) -> Vec<String> {
    names.iter().map(|n| format!("{}:", Value::String(n.clone()))).collect()
}

/// `s` as a JSON string, as serde_json writes it: plain text (no quote,
/// backslash or control character) copied as it is.
fn write_json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().any(|c| c == b'"' || c == b'\\' || c < 0x20) {
        let _ = serde_json::to_writer(out, s);
    } else {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// Carried fields as [`Match::carried`] gives them.
fn carried_map(c: &Carried) -> Option<std::sync::Arc<serde_json::Map<String, Value>>> {
    c.as_ref().map(|text| std::sync::Arc::new(serde_json::from_str(text).unwrap_or_default()))
}

#[derive(Debug, Clone)]
struct Ev {
    ordinal: u64,
    pos: u64,
    time: Option<i64>,
    carried: Carried,
}

#[derive(Debug, Clone)]
struct Partial {
    events: Vec<Ev>,
}

impl Partial {
    fn last_pos(&self) -> u64 {
        self.events.last().map_or(0, |e| e.pos)
    }
    fn start_time(&self) -> i64 {
        self.events.first().and_then(|e| e.time).unwrap_or(i64::MIN)
    }
}

#[derive(Debug)]
enum Kind {
    Event,
    Sequence,
    Sample,
}

/// A result held for a trailing missing-event stage.
#[derive(Debug)]
struct Held {
    key: Key,
    events: Vec<Ev>,
    /// The trailing window: a matching event with `after_t < t <= deadline`
    /// rejects the result; past the deadline it is released.
    deadline: i64,
    after_t: i64,
    last_pos: u64,
}

/// Per key, per stage: sample candidates.
#[derive(Debug, Default)]
struct SampleSlot {
    cands: Vec<Vec<Ev>>,
    done: bool,
}

/// A compiled query over a stream of events in time order.
#[derive(Debug)]
pub struct Engine {
    kind: Kind,
    fields: FieldSet,
    ts_slot: usize,
    /// Every stage, positive and missing, `runs` expanded, in order.
    stages: Vec<CStage>,
    /// Indexes into `stages` of the positive stages.
    positive: Vec<usize>,
    until: Option<CStage>,
    maxspan: Option<i64>,
    opts: EngineOptions,
    /// The carried fields, each once (first occurrence): each is read by
    /// its dotted name ([`super::eval::collect`]).
    carry: Vec<String>,
    /// Each carried name as a JSON string and its colon.
    carry_keys: Vec<String>,
    /// Scratch for writing an event's carried fields (kept between events:
    /// a stored event's fields are written once, then copied out whole).
    carry_buf: std::cell::RefCell<Vec<u8>>,
    pos: u64,
    watermark: i64,
    /// key → per positive stage (but the last), partials ordered by last pos.
    partials: HashMap<Key, Vec<Vec<Partial>>>,
    n_partials: usize,
    /// How many of every stage's keys are the sequence's own `by` fields
    /// (they come first); 0 for any other query.
    n_by: usize,
    until_last: HashMap<Key, u64>,
    /// Per stage index (missing stages only): key → (pos, time) of events.
    missing_hist: Vec<HashMap<Key, VecDeque<(u64, i64)>>>,
    n_missing: usize,
    held: VecDeque<Held>,
    samples: HashMap<Key, SampleSlot>,
    sample_order: VecDeque<(i64, Key)>,
    n_sample: usize,
    stats: EngineStats,
}

impl Engine {
    /// Parse and compile `query`.
    pub fn new(query: &str, options: EngineOptions) -> Result<Engine, RuleError> {
        let mut ast = parse(query, ParseLimits::default())?;
        if options.mapping_complete {
            fold_unmapped_optional(&mut ast, &options.types);
        }
        Engine::from_ast(&ast, query, options)
    }

    /// Compile a parsed query; `source` is its text (for error positions).
    pub fn from_ast(ast: &Query, source: &str, mut options: EngineOptions) -> Result<Engine, RuleError> {
        if options.types.get(&options.timestamp_field).is_none() {
            let tf = options.timestamp_field.clone();
            options.types.set(&tf, FieldType::Date);
        }
        let types = options.types.clone();
        let mut cc = CondCompiler::new(source, &types);
        let ts_slot = cc.fields.intern(&options.timestamp_field, &types);
        // The event time is read as a date whatever the mapping says.
        cc.fields.infos[ts_slot] = Some(FieldInfo { ty: FieldType::Date, null_value: None, ignore_above: None, format: None });
        let mut stages = Vec::new();
        let mut until = None;
        let mut maxspan = None;
        let n_by = match ast {
            Query::Sequence(seq) => seq.by.len(),
            _ => 0,
        };
        let kind = match ast {
            Query::Event(q) => {
                let cond = cc.event_query(q)?;
                stages.push(CStage { cond, keys: Vec::new(), missing: false });
                Kind::Event
            }
            Query::Sequence(seq) => {
                maxspan = seq.maxspan_ms.map(|m| m.min(i64::MAX as u64) as i64);
                let propagated = propagate_key_constraints(&seq.by, &seq.stages);
                let nkeys = compile_stages(&mut cc, &seq.by, &propagated, &mut stages)?;
                if let Some(u) = &seq.until {
                    let mut v = Vec::new();
                    let n = compile_stages(&mut cc, &seq.by, std::slice::from_ref(u), &mut v)?;
                    if n != nkeys {
                        return Err(key_count_error(source, u, nkeys, n));
                    }
                    until = v.pop();
                }
                let first_pos = stages.iter().position(|s| !s.missing);
                let last_pos = stages.iter().rposition(|s| !s.missing);
                let edge_missing = first_pos != Some(0) || last_pos != Some(stages.len() - 1);
                if edge_missing && maxspan.is_none() {
                    let st = seq.stages.iter().find(|s| s.missing).map(|s| s.span).unwrap_or(seq.span);
                    return Err(RuleError::at(
                        RuleErrorKind::BadArgument,
                        "a missing-event stage at the start or end of a sequence needs 'with maxspan=…'",
                        source,
                        st,
                    ));
                }
                Kind::Sequence
            }
            Query::Sample(s) => {
                compile_stages(&mut cc, &s.by, &s.stages, &mut stages)?;
                Kind::Sample
            }
        };
        let positive = stages.iter().enumerate().filter(|(_, s)| !s.missing).map(|(i, _)| i).collect();
        let n_stages = stages.len();
        let carry = each_once(&options.carry_fields);
        let carry_keys = carry_keys(&carry);
        Ok(Engine {
            kind,
            fields: cc.fields,
            ts_slot,
            stages,
            positive,
            until,
            maxspan,
            opts: options,
            carry,
            carry_keys,
            carry_buf: Default::default(),
            pos: 0,
            watermark: i64::MIN,
            partials: HashMap::default(),
            n_partials: 0,
            n_by,
            until_last: HashMap::default(),
            missing_hist: (0..n_stages).map(|_| HashMap::default()).collect(),
            n_missing: 0,
            held: VecDeque::new(),
            samples: HashMap::default(),
            sample_order: VecDeque::new(),
            n_sample: 0,
            stats: EngineStats::default(),
        })
    }

    /// Copy these fields out of each event that takes part in a result
    /// ([`Match::carried`]), replacing [`EngineOptions::carry_fields`].
    pub fn set_carry_fields(&mut self, fields: Vec<String>) {
        self.carry = each_once(&fields);
        self.carry_keys = carry_keys(&self.carry);
        self.opts.carry_fields = fields;
    }

    /// Where the fields this engine reads and carries are in a read with
    /// `table` ([`Source::Read`]); `None` if one is not a slot of it.
    pub fn read_slots(&self, table: &FieldTable) -> Option<ReadSlots> {
        let fields = self.fields.names.iter().map(|n| table.lookup(n)).collect::<Option<Vec<_>>>()?;
        let carry = self.carry.iter().map(|n| table.lookup(n)).collect::<Option<Vec<_>>>()?;
        Some(ReadSlots { fields, carry })
    }

    /// The counters so far.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The fields the query reads (after alias resolution).
    pub fn fields(&self) -> &[String] {
        &self.fields.names
    }

    /// The paths of a sequence's `by` fields, when it has some, no
    /// missing-event or `until` stage, and every `by` field is required and
    /// read as text, as written (a keyword or text field, or one without a
    /// type): what [`Engine::nothing_under`] takes. `None` otherwise.
    pub fn by_fields(&self) -> Option<Vec<String>> {
        let plain = matches!(self.kind, Kind::Sequence) && self.until.is_none() && self.stages.iter().all(|s| !s.missing);
        if !plain || self.n_by == 0 {
            return None;
        }
        let as_text = |k: &KeySpec| {
            !k.optional
                && match &self.fields.infos[k.slot] {
                    None => true,
                    Some(i) => matches!(i.ty, FieldType::Keyword | FieldType::Text | FieldType::Other) && i.null_value.is_none(),
                }
        };
        let keys = &self.stages.first()?.keys[..self.n_by];
        keys.iter().all(as_text).then(|| keys.iter().map(|k| self.fields.names[k.slot].clone()).collect())
    }

    /// Whether no partial sequence is kept under these values of the `by`
    /// fields ([`Engine::by_fields`], each read as text): an event that
    /// matches only later stages, with these values, then extends nothing.
    /// False (unsure) when there are too many partials to look through.
    pub fn nothing_under(&self, by: &[&str]) -> bool {
        if by.len() != self.n_by || self.partials.len() > 256 {
            return false;
        }
        !self.partials.keys().any(|k| k.len() >= by.len() && k.iter().zip(by).all(|(a, b)| a.as_deref() == Some(*b)))
    }

    /// Partial sequences, held results and sample candidates now kept.
    /// Change [`EngineOptions::max_partials`] (at least 1); enforced from
    /// the next event on.
    pub fn set_max_partials(&mut self, n: usize) {
        self.opts.max_partials = n.max(1);
    }

    pub fn state_len(&self) -> usize {
        self.n_partials + self.n_missing + self.held.len() + self.n_sample
    }

    /// The next event, in time order (`@timestamp`, then the caller's
    /// tiebreaker); `ordinal` is the caller's name for it. Results completed
    /// by it are appended to `out`.
    pub fn push(&mut self, ordinal: u64, event: &Value, out: &mut Vec<Match>) {
        self.push_from(ordinal, Source::Tree(event), out)
    }

    /// [`Engine::push`] with the event's values read from `event` (a tree,
    /// or a record's plain scan: [`Source`]); the same outcome.
    pub fn push_from(&mut self, ordinal: u64, event: Source<'_>, out: &mut Vec<Match>) {
        self.stats.events += 1;
        self.pos += 1;
        let fields = std::mem::take(&mut self.fields);
        let doc = Doc::new(&fields, event);
        match self.kind {
            Kind::Event => {
                if test(&self.stages[0].cond, &doc) {
                    self.stats.stage_matches += 1;
                    self.stats.results += 1;
                    let carried = self.carried(event);
                    let time = doc_time(&doc, self.ts_slot);
                    out.push(Match { events: vec![Some(ordinal)], keys: Vec::new(), carried: vec![carried_map(&carried)], times: vec![time] });
                }
            }
            Kind::Sequence => self.sequence_event(ordinal, event, &doc, out),
            Kind::Sample => self.sample_event(ordinal, event, &doc, out),
        }
        self.stats.malformed_values += doc.malformed() as u64;
        drop(doc);
        self.fields = fields;
    }

    /// The end of the stream: results that were waiting for more events
    /// (a trailing missing-event stage) are appended to `out`.
    pub fn finish(&mut self, out: &mut Vec<Match>) {
        while let Some(h) = self.held.pop_front() {
            self.emit(h.key, &h.events, out);
        }
    }

    /// The carried fields of `event` as a JSON object's text: each field
    /// present, in the order given, its one value or the array of its
    /// values (written as they are read, not gathered in a map first).
    fn carried(&self, event: Source<'_>) -> Carried {
        if self.carry.is_empty() {
            return None;
        }
        let mut out = std::mem::take(&mut *self.carry_buf.borrow_mut());
        out.clear();
        out.push(b'{');
        let mut raw: Vec<&Value> = Vec::new();
        for (j, name) in self.carry.iter().enumerate() {
            // The values, each written as it comes: the name before the
            // first, `[` put in before the first once there is a second.
            let mut n = 0usize;
            let mut first_at = 0;
            let mut next = |out: &mut Vec<u8>| {
                if n == 0 {
                    if out.len() > 1 {
                        out.push(b',');
                    }
                    out.extend_from_slice(self.carry_keys[j].as_bytes());
                    first_at = out.len();
                } else {
                    if n == 1 {
                        out.insert(first_at, b'[');
                    }
                    out.push(b',');
                }
                n += 1;
            };
            // (Writing to a vector cannot fail; a value always serializes.)
            match event {
                Source::Tree(tree) => {
                    raw.clear();
                    super::eval::collect(tree, name, &mut raw);
                    for v in &raw {
                        next(&mut out);
                        let _ = serde_json::to_writer(&mut out, v);
                    }
                }
                Source::Read(fields, at) => {
                    // (Made for this carry list: `GenericRun::bind_read`
                    // binds after the carried fields are set.)
                    debug_assert_eq!(at.carry.len(), self.carry.len());
                    let Some(&slot) = at.carry.get(j) else { continue };
                    for v in fields.get(slot) {
                        match v {
                            Scalar::Object => continue,
                            Scalar::Str(s) => {
                                next(&mut out);
                                write_json_str(&mut out, s);
                            }
                            _ => {
                                next(&mut out);
                                let _ = serde_json::to_writer(&mut out, &v.to_json());
                            }
                        }
                    }
                }
            }
            if n > 1 {
                out.push(b']');
            }
        }
        out.push(b'}');
        // (serde_json writes UTF-8: the check finds nothing to replace.)
        let text = match std::str::from_utf8(&out) {
            Ok(text) => text.into(),
            Err(_) => String::from_utf8_lossy(&out).into(),
        };
        *self.carry_buf.borrow_mut() = out;
        Some(text)
    }

    /// Every key combination of stage `si` (`None`: the `until` stage) for
    /// this event; `None` if a non-optional key has no value.
    fn keys_of(&mut self, si: Option<usize>, doc: &Doc) -> Option<Vec<Key>> {
        let stage = match si {
            Some(i) => &self.stages[i],
            None => self.until.as_ref()?,
        };
        let mut combos: Vec<Key> = vec![Vec::new()];
        for k in &stage.keys {
            let vals: Vec<Option<String>> = {
                let mut v: Vec<Option<String>> = Vec::new();
                for x in doc.get(k.slot) {
                    // A sample's keys come from a composite aggregation,
                    // which prints dates as epoch milliseconds.
                    let t = match (x, &self.kind) {
                        (Val::Date(ms), Kind::Sample) => Some(ms.to_string()),
                        _ => x.text(),
                    };
                    if let Some(t) = t {
                        if !v.iter().any(|x| x.as_deref() == Some(t.as_str())) {
                            v.push(Some(t));
                        }
                    }
                }
                v
            };
            let mut vals = if vals.is_empty() {
                if k.optional {
                    vec![None]
                } else {
                    return None;
                }
            } else {
                vals
            };
            // One value, one combination so far (the common case): add it.
            if let ([only], 1) = (combos.as_mut_slice(), vals.len()) {
                only.extend(vals.pop());
                continue;
            }
            let mut next = Vec::with_capacity(combos.len() * vals.len());
            'outer: for c in &combos {
                for v in &vals {
                    if next.len() >= MAX_KEY_COMBINATIONS {
                        self.stats.keys_truncated += 1;
                        break 'outer;
                    }
                    let mut c2 = c.clone();
                    c2.push(v.clone());
                    next.push(c2);
                }
            }
            combos = next;
        }
        Some(combos)
    }

    fn sequence_event(&mut self, ordinal: u64, event: Source<'_>, doc: &Doc, out: &mut Vec<Match>) {
        let matched: Vec<bool> = self.stages.iter().map(|s| test(&s.cond, doc)).collect();
        let until_hit = self.until.as_ref().is_some_and(|u| test(&u.cond, doc));
        if !matched.iter().any(|m| *m) && !until_hit {
            return;
        }
        self.stats.stage_matches += matched.iter().any(|m| *m) as u64;
        let time = doc_time(doc, self.ts_slot);
        let Some(t) = time else {
            self.stats.no_timestamp += 1;
            return;
        };
        if t > self.watermark {
            self.watermark = t;
        }
        let pos = self.pos;
        // The stored form of this event (its carried fields serialized) is
        // made only when a partial sequence takes it: a later stage's match
        // with nothing before it to extend costs no more than the test.
        let carries = matched.iter().enumerate().any(|(i, m)| *m && !self.stages[i].missing);
        let mut stored: Option<Ev> = None;
        let mut ev = |this: &Self| -> Ev {
            stored
                .get_or_insert_with(|| Ev { ordinal, pos, time, carried: if carries { this.carried(event) } else { None } })
                .clone()
        };
        // Trailing missing events cancel held results first (an event at
        // the deadline still counts).
        for (si, m) in matched.iter().enumerate() {
            if *m && self.stages[si].missing {
                if let Some(keys) = self.keys_of(Some(si), doc) {
                    for k in keys {
                        self.note_missing(si, k, pos, t);
                    }
                }
            }
        }
        if matched.iter().enumerate().any(|(si, m)| *m && self.stages[si].missing) {
            self.cancel_held();
        }
        self.release_held(out);
        // Positive stages, last first, so an event never extends a partial
        // it started. Results this event completes leave ordered by key, as
        // Elasticsearch's completed set orders sequences with the same last
        // event.
        let first_new = out.len();
        let npos = self.positive.len();
        for pi in (0..npos).rev() {
            let si = self.positive[pi];
            if !matched[si] {
                continue;
            }
            let Some(keys) = self.keys_of(Some(si), doc) else { continue };
            for key in keys {
                if pi == 0 {
                    let p = Partial { events: vec![ev(self)] };
                    if npos == 1 {
                        self.complete(key, p.events, out);
                    } else {
                        self.add_partial(key, 0, p);
                    }
                    continue;
                }
                let Some(p) = self.take_before(&key, pi - 1, pos) else { continue };
                if let Some(ms) = self.maxspan {
                    if t.saturating_sub(p.start_time()) > ms {
                        self.stats.expired += 1;
                        continue;
                    }
                }
                if self.until.is_some() && self.until_last.get(&key).is_some_and(|u| *u >= p.last_pos()) {
                    self.stats.until_dropped += 1;
                    continue;
                }
                let mut p = p;
                p.events.push(ev(self));
                if pi == npos - 1 {
                    self.complete(key, p.events, out);
                } else {
                    self.add_partial(key, pi, p);
                }
            }
        }
        out[first_new..].sort_by(|a, b| a.keys.cmp(&b.keys));
        if until_hit {
            if let Some(keys) = self.keys_of(None, doc) {
                for k in keys {
                    self.until_last.insert(k, pos);
                }
            }
        }
        if self.pos % 1024 == 0 || self.state_len() > self.opts.max_partials {
            self.sweep();
        }
    }

    fn add_partial(&mut self, key: Key, stage: usize, p: Partial) {
        let n = self.positive.len() - 1;
        let groups = self.partials.entry(key).or_insert_with(|| vec![Vec::new(); n]);
        groups[stage].push(p);
        self.n_partials += 1;
    }

    /// The latest partial of `stage` under `key` that ended before `pos`;
    /// it and every older one are removed.
    fn take_before(&mut self, key: &Key, stage: usize, pos: u64) -> Option<Partial> {
        let groups = self.partials.get_mut(key)?;
        let g = &mut groups[stage];
        let idx = g.iter().rposition(|p| p.last_pos() < pos)?;
        let mut removed: Vec<Partial> = g.drain(..=idx).collect();
        self.n_partials -= removed.len();
        let p = removed.pop();
        if groups.iter().all(|g| g.is_empty()) {
            self.partials.remove(key);
        }
        p
    }

    fn note_missing(&mut self, si: usize, key: Key, pos: u64, t: i64) {
        let h = self.missing_hist[si].entry(key).or_default();
        h.push_back((pos, t));
        self.n_missing += 1;
    }

    /// A sequence whose positive stages all matched: check its missing
    /// stages (`TumblingWindow.doCheckMissingEvents`); hold it while a
    /// trailing one still needs future events.
    ///
    /// * middle: rejected by a matching event strictly between the
    ///   neighbouring positive events' timestamps;
    /// * leading only: rejected by the latest matching event before the
    ///   first positive one unless `last − it > maxspan`;
    /// * trailing only: rejected by the first matching event after the last
    ///   positive one unless `it − first > maxspan`;
    /// * both: rejected only when both exist and
    ///   `first trailing − last leading <= maxspan`.
    ///
    /// Timestamps compare strictly: an event in the same millisecond as a
    /// neighbouring positive event is not in the gap.
    fn complete(&mut self, key: Key, positives: Vec<Ev>, out: &mut Vec<Match>) {
        if self.positive.len() == self.stages.len() {
            self.emit(key, &positives, out);
            return;
        }
        let mut full: Vec<Option<&Ev>> = vec![None; self.stages.len()];
        for (pi, si) in self.positive.iter().enumerate() {
            full[*si] = Some(&positives[pi]);
        }
        let first_t = positives[0].time.unwrap_or(i64::MIN);
        let last_t = positives[positives.len() - 1].time.unwrap_or(i64::MIN);
        let ms = self.maxspan.unwrap_or(i64::MAX);
        let (mut has_lead, mut has_trail) = (false, false);
        let mut last_leading: Option<i64> = None;
        for (si, st) in self.stages.iter().enumerate() {
            if !st.missing {
                continue;
            }
            let before = (0..si).rev().find_map(|j| full[j]);
            let after = (si + 1..self.stages.len()).find_map(|j| full[j]);
            let hist = self.missing_hist[si].get(&key);
            match (before, after) {
                (Some(b), Some(a)) => {
                    let (bt, at) = (b.time.unwrap_or(i64::MIN), a.time.unwrap_or(i64::MIN));
                    if hist.is_some_and(|h| h.iter().any(|(_, t)| *t > bt && *t < at)) {
                        self.stats.missing_rejected += 1;
                        return;
                    }
                }
                (None, Some(_)) => {
                    has_lead = true;
                    if let Some(h) = hist {
                        for (_, t) in h.iter() {
                            if *t < first_t && last_leading.is_none_or(|l| *t > l) {
                                last_leading = Some(*t);
                            }
                        }
                    }
                }
                (Some(_), None) => has_trail = true,
                (None, None) => {}
            }
        }
        let deadline = match (has_lead, has_trail, last_leading) {
            (true, false, Some(l)) => {
                if last_t.saturating_sub(l) > ms {
                    None
                } else {
                    self.stats.missing_rejected += 1;
                    return;
                }
            }
            (true, true, None) | (_, false, _) => None,
            (true, true, Some(l)) => Some(l.saturating_add(ms)),
            (false, true, _) => Some(first_t.saturating_add(ms)),
        };
        match deadline {
            Some(d) if d > last_t => {
                let last_pos = positives[positives.len() - 1].pos;
                self.held.push_back(Held { key, events: positives, deadline: d, after_t: last_t, last_pos });
            }
            _ => self.emit(key, &positives, out),
        }
    }

    /// Drop held results that a newly seen trailing missing event cancels.
    fn cancel_held(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let trailing: Vec<usize> = {
            let last_pos = self.positive.last().copied().unwrap_or(0);
            (last_pos + 1..self.stages.len()).filter(|i| self.stages[*i].missing).collect()
        };
        let hist = &self.missing_hist;
        let before = self.held.len();
        self.held.retain(|h| {
            !trailing.iter().any(|si| {
                hist[*si].get(&h.key).is_some_and(|q| {
                    q.iter().any(|(p, t)| *p > h.last_pos && *t > h.after_t && *t <= h.deadline)
                })
            })
        });
        self.stats.missing_rejected += (before - self.held.len()) as u64;
    }

    fn release_held(&mut self, out: &mut Vec<Match>) {
        // Deadlines are not in order in general: release every passed one.
        if self.held.iter().any(|h| h.deadline < self.watermark) {
            let held = std::mem::take(&mut self.held);
            for h in held {
                if h.deadline < self.watermark {
                    self.emit(h.key, &h.events, out);
                } else {
                    self.held.push_back(h);
                }
            }
        }
    }

    fn emit(&mut self, key: Key, positives: &[Ev], out: &mut Vec<Match>) {
        let mut events = Vec::with_capacity(self.stages.len());
        let mut carried = Vec::with_capacity(self.stages.len());
        let mut times = Vec::with_capacity(self.stages.len());
        let mut it = positives.iter();
        for st in &self.stages {
            if st.missing {
                events.push(None);
                carried.push(None);
                times.push(None);
            } else if let Some(e) = it.next() {
                events.push(Some(e.ordinal));
                carried.push(carried_map(&e.carried));
                times.push(e.time);
            }
        }
        self.stats.results += 1;
        out.push(Match { events, keys: key, carried, times });
    }

    /// Drop what can no longer complete; evict the oldest over the cap.
    fn sweep(&mut self) {
        if let Some(ms) = self.maxspan {
            let horizon = self.watermark.saturating_sub(ms);
            let mut expired = 0u64;
            self.partials.retain(|_, groups| {
                for g in groups.iter_mut() {
                    let before = g.len();
                    g.retain(|p| p.start_time() >= horizon);
                    expired += (before - g.len()) as u64;
                }
                groups.iter().any(|g| !g.is_empty())
            });
            self.stats.expired += expired;
            self.n_partials -= expired as usize;
            // Missing-event records older than any partial could need.
            let mut dropped = 0usize;
            for h in self.missing_hist.iter_mut() {
                h.retain(|_, q| {
                    while q.front().is_some_and(|(_, t)| *t < horizon.saturating_sub(ms)) {
                        q.pop_front();
                        dropped += 1;
                    }
                    !q.is_empty()
                });
            }
            self.n_missing -= dropped;
            if self.until.is_some() && self.partials.is_empty() {
                self.until_last.clear();
            }
        }
        let cap = self.opts.max_partials;
        if self.n_partials > cap / 2 && self.state_len() > cap {
            // Evict the partials that started first.
            let mut starts: Vec<u64> = self
                .partials
                .values()
                .flat_map(|g| g.iter().flat_map(|x| x.iter().map(|p| p.events[0].pos)))
                .collect();
            starts.sort_unstable();
            let cut = starts[self.n_partials - cap / 4 - 1];
            let mut evicted = 0usize;
            self.partials.retain(|_, groups| {
                for g in groups.iter_mut() {
                    let before = g.len();
                    g.retain(|p| p.events[0].pos > cut);
                    evicted += before - g.len();
                }
                groups.iter().any(|g| !g.is_empty())
            });
            self.n_partials -= evicted;
            self.stats.evicted += evicted as u64;
        }
        if self.n_partials + self.n_missing > cap && self.n_missing > cap / 4 {
            // Forget the oldest missing-event records (a forgotten one can no
            // longer reject a result: counted as evicted).
            let mut all: Vec<u64> =
                self.missing_hist.iter().flat_map(|h| h.values().flat_map(|q| q.iter().map(|(p, _)| *p))).collect();
            all.sort_unstable();
            let cut = all[all.len() - cap / 4 - 1];
            let mut dropped = 0usize;
            for h in self.missing_hist.iter_mut() {
                h.retain(|_, q| {
                    let before = q.len();
                    q.retain(|(p, _)| *p > cut);
                    dropped += before - q.len();
                    !q.is_empty()
                });
            }
            self.n_missing -= dropped;
            self.stats.evicted += dropped as u64;
        }
        while self.held.len() > cap {
            self.held.pop_front();
            self.stats.evicted += 1;
        }
        if self.until_last.len() > cap {
            self.until_last.clear();
        }
    }

    fn sample_event(&mut self, ordinal: u64, event: Source<'_>, doc: &Doc, out: &mut Vec<Match>) {
        let matched: Vec<bool> = self.stages.iter().map(|s| test(&s.cond, doc)).collect();
        if !matched.iter().any(|m| *m) {
            return;
        }
        let time = doc_time(doc, self.ts_slot);
        self.stats.stage_matches += 1;
        let t = time.unwrap_or(i64::MIN);
        if t > self.watermark {
            self.watermark = t;
        }
        self.expire_samples();
        let carried = self.carried(event);
        let ev = Ev { ordinal, pos: self.pos, time, carried };
        let n = self.stages.len();
        let mut touched: Vec<Key> = Vec::new();
        for (si, _) in matched.iter().enumerate().take(n).filter(|(_, m)| **m) {
            let Some(keys) = self.keys_of(Some(si), doc) else { continue };
            for key in keys {
                let slot = self.samples.entry(key.clone()).or_insert_with(|| SampleSlot {
                    cands: vec![Vec::new(); n],
                    done: false,
                });
                if slot.done || slot.cands[si].len() >= n {
                    continue;
                }
                if slot.cands.iter().all(|c| c.is_empty()) {
                    self.sample_order.push_back((t, key.clone()));
                }
                slot.cands[si].push(ev.clone());
                self.n_sample += 1;
                if !touched.contains(&key) {
                    touched.push(key);
                }
            }
        }
        for key in touched {
            let Some(slot) = self.samples.get_mut(&key) else { continue };
            if let Some(pick) = assign_distinct(&slot.cands) {
                slot.done = true;
                let evs: Vec<Ev> = pick.iter().enumerate().map(|(si, ci)| slot.cands[si][*ci].clone()).collect();
                self.n_sample -= slot.cands.iter().map(Vec::len).sum::<usize>();
                slot.cands.iter_mut().for_each(Vec::clear);
                self.emit(key, &evs, out);
            }
        }
        if self.n_sample > self.opts.max_partials {
            while self.n_sample > self.opts.max_partials / 2 {
                let Some((_, k)) = self.sample_order.pop_front() else { break };
                if let Some(s) = self.samples.remove(&k) {
                    let c: usize = s.cands.iter().map(Vec::len).sum();
                    self.n_sample -= c;
                    self.stats.evicted += c as u64;
                }
            }
        }
    }

    fn expire_samples(&mut self) {
        let Some(w) = self.opts.sample_window_ms else { return };
        let horizon = self.watermark.saturating_sub(w as i64);
        while self.sample_order.front().is_some_and(|(t, _)| *t < horizon) {
            let Some((_, k)) = self.sample_order.pop_front() else { break };
            if let Some(s) = self.samples.remove(&k) {
                let c: usize = s.cands.iter().map(Vec::len).sum();
                self.n_sample -= c;
                self.stats.expired += c as u64;
            }
        }
    }
}

/// The event's time: its first `@timestamp` value, a date.
fn doc_time(doc: &Doc, ts_slot: usize) -> Option<i64> {
    match doc.get(ts_slot).first() {
        Some(Val::Date(t)) => Some(*t),
        _ => None,
    }
}

/// One distinct candidate per stage, preferring earlier candidates and
/// earlier stages (a small backtracking search: at most `n` candidates per
/// stage).
fn assign_distinct(cands: &[Vec<Ev>]) -> Option<Vec<usize>> {
    fn go(cands: &[Vec<Ev>], si: usize, used: &mut Vec<u64>, pick: &mut Vec<usize>) -> bool {
        if si == cands.len() {
            return true;
        }
        for (ci, e) in cands[si].iter().enumerate() {
            if used.contains(&e.pos) {
                continue;
            }
            used.push(e.pos);
            pick.push(ci);
            if go(cands, si + 1, used, pick) {
                return true;
            }
            used.pop();
            pick.pop();
        }
        false
    }
    if cands.iter().any(|c| c.is_empty()) {
        return None;
    }
    let mut used = Vec::new();
    let mut pick = Vec::new();
    go(cands, 0, &mut used, &mut pick).then_some(pick)
}

fn key_count_error(source: &str, st: &Stage, want: usize, got: usize) -> RuleError {
    RuleError::at(
        RuleErrorKind::BadArgument,
        format!("every stage must join on the same number of keys: the first stage has {want}, this one has {got}"),
        source,
        st.span,
    )
}

/// Replace every optional field the type map does not know by `null`.
fn fold_unmapped_optional(q: &mut Query, types: &TypeMap) {
    use super::ast::{Expr, Literal};
    fn walk(e: &mut Expr, types: &TypeMap) {
        match e {
            Expr::Field(f) if f.optional && !types.is_known(&f.name) => {
                *e = Expr::Literal(Literal::Null, f.span);
            }
            Expr::And(v, _) | Expr::Or(v, _) => v.iter_mut().for_each(|x| walk(x, types)),
            Expr::Not(x, _) | Expr::Neg(x, _) => walk(x, types),
            Expr::Compare { left, right, .. } | Expr::Arith { left, right, .. } => {
                walk(left, types);
                walk(right, types);
            }
            Expr::Match { subject, values, .. } => {
                walk(subject, types);
                values.iter_mut().for_each(|x| walk(x, types));
            }
            Expr::Call { args, .. } => args.iter_mut().for_each(|x| walk(x, types)),
            Expr::Field(_) | Expr::Literal(..) => {}
        }
    }
    let stages: Vec<&mut Stage> = match q {
        Query::Event(ev) => return walk(&mut ev.condition, types),
        Query::Sequence(s) => s.stages.iter_mut().chain(s.until.as_mut()).collect(),
        Query::Sample(s) => s.stages.iter_mut().collect(),
    };
    for st in stages {
        walk(&mut st.query.condition, types);
    }
}

/// The optimizer's `PropagateJoinKeyConstraints`: a conjunct of a stage's
/// condition that contains no `or` and reads one of the stage's join keys is
/// copied to every other stage, with that key replaced by the other stage's
/// key at the same position (only the first key found is replaced). It
/// matters for multi-valued keys: the copy filters the other stages' events.
fn propagate_key_constraints(by: &[Field], stages: &[Stage]) -> Vec<Stage> {
    use super::ast::Expr;
    fn has_or(e: &Expr) -> bool {
        match e {
            Expr::Or(..) => true,
            Expr::And(v, _) => v.iter().any(has_or),
            Expr::Not(x, _) | Expr::Neg(x, _) => has_or(x),
            Expr::Compare { left, right, .. } | Expr::Arith { left, right, .. } => has_or(left) || has_or(right),
            Expr::Match { subject, values, .. } => has_or(subject) || values.iter().any(has_or),
            Expr::Call { args, .. } => args.iter().any(has_or),
            Expr::Field(_) | Expr::Literal(..) => false,
        }
    }
    fn fields_of<'e>(e: &'e Expr, out: &mut Vec<&'e str>) {
        match e {
            Expr::Field(f) => out.push(&f.name),
            Expr::And(v, _) | Expr::Or(v, _) => v.iter().for_each(|x| fields_of(x, out)),
            Expr::Not(x, _) | Expr::Neg(x, _) => fields_of(x, out),
            Expr::Compare { left, right, .. } | Expr::Arith { left, right, .. } => {
                fields_of(left, out);
                fields_of(right, out);
            }
            Expr::Match { subject, values, .. } => {
                fields_of(subject, out);
                values.iter().for_each(|x| fields_of(x, out));
            }
            Expr::Call { args, .. } => args.iter().for_each(|x| fields_of(x, out)),
            Expr::Literal(..) => {}
        }
    }
    fn rename(e: &Expr, from: &str, to: &Field) -> Expr {
        let r = |x: &Expr| rename(x, from, to);
        match e {
            Expr::Field(f) if f.name == from => Expr::Field(Field { name: to.name.clone(), span: f.span, optional: to.optional }),
            Expr::And(v, s) => Expr::And(v.iter().map(r).collect(), *s),
            Expr::Or(v, s) => Expr::Or(v.iter().map(r).collect(), *s),
            Expr::Not(x, s) => Expr::Not(Box::new(r(x)), *s),
            Expr::Neg(x, s) => Expr::Neg(Box::new(r(x)), *s),
            Expr::Compare { op, left, right, span } => {
                Expr::Compare { op: *op, left: Box::new(r(left)), right: Box::new(r(right)), span: *span }
            }
            Expr::Arith { op, left, right, span } => {
                Expr::Arith { op: *op, left: Box::new(r(left)), right: Box::new(r(right)), span: *span }
            }
            Expr::Match { op, negated, subject, values, span } => Expr::Match {
                op: *op,
                negated: *negated,
                subject: Box::new(r(subject)),
                values: values.iter().map(r).collect(),
                span: *span,
            },
            Expr::Call { name, case_insensitive, args, span } => Expr::Call {
                name: name.clone(),
                case_insensitive: *case_insensitive,
                args: args.iter().map(r).collect(),
                span: *span,
            },
            other => other.clone(),
        }
    }
    let keys_of = |st: &Stage| -> Vec<Field> { by.iter().chain(&st.by).cloned().collect() };
    let mut extra: Vec<Vec<Expr>> = vec![Vec::new(); stages.len()];
    for (i, st) in stages.iter().enumerate() {
        let keys = keys_of(st);
        let conjuncts: Vec<&Expr> = match &st.query.condition {
            Expr::And(v, _) => v.iter().collect(),
            e => vec![e],
        };
        for c in conjuncts {
            if has_or(c) {
                continue;
            }
            let mut fs = Vec::new();
            fields_of(c, &mut fs);
            let Some(kpos) = keys.iter().position(|k| fs.contains(&k.name.as_str())) else { continue };
            for (j, other) in stages.iter().enumerate() {
                if j == i {
                    continue;
                }
                let okeys = keys_of(other);
                if let Some(to) = okeys.get(kpos) {
                    extra[j].push(rename(c, &keys[kpos].name, to));
                }
            }
        }
    }
    stages
        .iter()
        .zip(extra)
        .map(|(st, add)| {
            let mut st = st.clone();
            if !add.is_empty() {
                let span = st.query.condition.span();
                let mut items = vec![st.query.condition.clone()];
                items.extend(add);
                st.query.condition = Expr::And(items, span);
            }
            st
        })
        .collect()
}

/// Compile stages (expanding `runs`), returning the key count.
fn compile_stages(cc: &mut CondCompiler<'_>, by: &[Field], stages: &[Stage], out: &mut Vec<CStage>) -> Result<usize, RuleError> {
    let mut nkeys: Option<usize> = None;
    for st in stages {
        let cond = cc.event_query(&st.query)?;
        let keys: Vec<KeySpec> = by
            .iter()
            .chain(&st.by)
            .map(|f| KeySpec { slot: cc.fields.intern(&f.name, cc.types), optional: f.optional })
            .collect();
        match nkeys {
            None => nkeys = Some(keys.len()),
            Some(n) if n != keys.len() => return Err(key_count_error(cc.source, st, n, keys.len())),
            _ => {}
        }
        for _ in 0..st.runs {
            out.push(CStage { cond: cond.clone(), keys: keys.clone(), missing: st.missing });
        }
    }
    Ok(nkeys.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The carried text is the JSON object of the fields present, in the
    /// order given, each once: one value as it is, several as an array.
    #[test]
    fn carried_fields_are_written_in_order_once() {
        let opts = EngineOptions {
            carry_fields: ["b", "a.x", "b", "missing", "arr", "a"].map(String::from).to_vec(),
            ..EngineOptions::default()
        };
        let mut e = Engine::new("any where true", opts).unwrap();
        let ev = serde_json::json!({"a": {"x": 1.5, "y": "q"}, "b": "t\"é", "arr": [1, "two", null], "@timestamp": "2026-01-01T00:00:00Z"});
        assert_eq!(
            e.carried(Source::Tree(&ev)).as_deref(),
            Some(r#"{"b":"t\"é","a.x":1.5,"arr":[1,"two",null]}"#),
            "an object is no field's value"
        );
        let mut out = Vec::new();
        e.push(7, &ev, &mut out);
        let got = out[0].carried[0].as_ref().unwrap();
        assert_eq!(got.keys().collect::<Vec<_>>(), ["b", "a.x", "arr"]);
        e.set_carry_fields(Vec::new());
        assert_eq!(e.carried(Source::Tree(&ev)), None);
    }
}
