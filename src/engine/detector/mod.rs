//! The detector: one record in, a verdict out.
//!
//! ```
//! use apt_netcon::{Config, Detector, Verdict};
//! let mut d = Detector::new(&Config::default()).unwrap();
//! match d.process(br#"{"message":"hello"}"#) {
//!     Ok(Verdict::Unchanged) => {}            // forward the record as it came
//!     Ok(Verdict::Annotated(bytes)) => { let _ = bytes; } // forward these bytes instead
//!     Err(_why) => {}                          // forward the record as it came
//! }
//! ```
//!
//! With `max_lateness` 0 (the default) records are processed in arrival
//! order. Out-of-order events: a stage-2 event earlier than the waiting
//! stage-1 event of its key does not pair with it (`out_of_order`), a stage-1
//! event older than the one already waiting under its key is dropped
//! (`out_of_order`), and a stage-1 event more than maxspan older than the
//! latest event time seen is dropped (`late`).
//!
//! With `max_lateness` L > 0, every event that matches a stage is held back
//! (a copy of the record) until the event-time watermark — the latest
//! `@timestamp` of such events — is L past it, then released to the sequence
//! engine in time order (ties: arrival order). The engine therefore sees the
//! time-sorted stream whenever no event is more than L late, and gives the
//! alerts Elasticsearch would. The record itself goes on at once, unchanged;
//! a completed sequence leaves as a standalone alert record (the completing
//! record with the alert fields), collected with [`Detector::take_alert`].
//! An event more than L behind the watermark is counted `late` and ignored.

use crate::alert::annotate::{format_id, Alert, AnnotationStyle, RuleParts};
use crate::format::merge::merge;
use crate::alert::carried::CarriedBuilder;
use crate::eql::compile::{pred_slots, CompiledQuery};
use crate::config::settings::{Config, LoadError};
use crate::format::event::{ExtractError, FieldTable, Fields, FieldsBuf, Scalar, Slot};
use crate::engine::exceptions::Exceptions;
use crate::engine::pack::PackDetector;
use crate::engine::prefilter::Prefilter;
use crate::config::rule::Rule;
use crate::engine::generic::{GenericRun, GenericSettings};
use crate::engine::hostq::{HostQueue, Id};
use crate::alert::carried::{StageEvent, CARRIED_FIELDS};
use crate::engine::sequence::{Caps, Partial, Put, SequenceState, Take};
use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::VecDeque;
use std::hash::BuildHasher;
use crate::format::time::parse_rfc3339_ms;
use crate::format::syntax::{self, Checked};
use serde_json::{Map, Value};

mod alert;
mod evaluate;
mod held;
mod keys;
mod lone;
mod stats;

use keys::{decode_key, digest, Hasher, JoinKeys};
use lone::{lone_string_member_json, lone_string_member_msgpack};
pub use stats::{FlushReport, Stats};

/// [`Detector::take_warning`] warns of a cause at its first occurrence, then
/// again each time this many more have occurred.
pub const WARNING_EVERY: u64 = 100_000;

/// Fields read for the alert reason and event identity.
const EXTRA_FIELDS: &[&str] = &["event.sequence", "destination.port", "host.id"];

/// At most this many join keys are tried for one event when key fields hold
/// arrays (every combination of their values is a candidate key).
pub const MAX_KEY_COMBINATIONS: usize = 16;

/// What to do with a record.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// Forward the record exactly as it came.
    Unchanged,
    /// Forward these bytes instead: the record plus the alert fields. Valid
    /// until the next call on the detector.
    Annotated(&'a [u8]),
}

/// Why a record could not be evaluated. The record is to be forwarded
/// unchanged; the reason is counted in [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// Larger than `max_record_bytes`.
    TooLarge,
    /// Not valid JSON (syntax, truncation, invalid UTF-8).
    InvalidJson,
    /// Not valid MessagePack (or a map key that is not a string).
    InvalidMsgpack,
    /// Valid JSON whose top level is not an object (or a MessagePack body
    /// that is not a map).
    NotAnObject,
    /// Nested too deeply to read.
    TooDeep,
    /// Matches a stage of the rule but has no usable `@timestamp`.
    BadTimestamp,
    /// Completed a sequence but the alert could not be written into it.
    AnnotateFailed,
}

impl RecordError {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordError::TooLarge => "record larger than max_record_bytes",
            RecordError::InvalidJson => "not valid JSON",
            RecordError::InvalidMsgpack => "not valid MessagePack",
            RecordError::NotAnObject => "top level is not an object",
            RecordError::TooDeep => "nested too deeply",
            RecordError::BadTimestamp => "matches a rule stage but @timestamp is missing or invalid",
            RecordError::AnnotateFailed => "the alert could not be written into the record",
        }
    }

    /// The name of the counter of [`Stats`] it is counted in.
    pub fn counter(self) -> &'static str {
        match self {
            RecordError::TooLarge => "too_large",
            RecordError::InvalidJson => "invalid_json",
            RecordError::InvalidMsgpack => "invalid_msgpack",
            RecordError::NotAnObject => "not_an_object",
            RecordError::TooDeep => "too_deep",
            RecordError::BadTimestamp => "bad_timestamp",
            RecordError::AnnotateFailed => "annotate_failed",
        }
    }
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for RecordError {}

/// At most this many standalone alerts wait to be collected; beyond, the
/// oldest is dropped and counted (`alerts_dropped`).
pub const MAX_QUEUED_ALERTS: usize = 10_000;

/// Queue a standalone alert, bounded by [`MAX_QUEUED_ALERTS`] (the oldest
/// goes, counted `alerts_dropped`), counted `standalone_alerts`.
pub(crate) fn queue(alerts: &mut VecDeque<StandaloneAlert>, stats: &mut Stats, a: StandaloneAlert) {
    if alerts.len() >= MAX_QUEUED_ALERTS {
        alerts.pop_front();
        stats.alerts_dropped += 1;
    }
    stats.standalone_alerts += 1;
    alerts.push_back(a);
}

/// A standalone alert record: a held record that completed a sequence after
/// it had gone on, with the alert fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandaloneAlert {
    /// True when the record was given as MessagePack (the bytes are then a
    /// MessagePack map); false for JSON.
    pub msgpack: bool,
    pub bytes: Vec<u8>,
}

/// A record held back for lateness.
#[derive(Debug)]
struct Held {
    bytes: Box<[u8]>,
    msgpack: bool,
}

/// The record being evaluated, when the caller has it: its bytes, and
/// whether they are MessagePack (else JSON).
#[derive(Debug, Clone, Copy)]
struct Rec<'r> {
    bytes: &'r [u8],
    msgpack: bool,
}

/// A streaming detector for one rule. One caller at a time; build one per
/// stream (or per thread) from a shared [`Rule`].
#[derive(Debug)]
pub struct Detector {
    rule: Rule,
    table: FieldTable,
    ts_slot: Slot,
    /// The fields an event carries into an alert: their slots, and their
    /// names (the built-in rule's [`CARRIED_FIELDS`], or for any other rule
    /// those, [`crate::alert::rule_alert::IDENTITY_FIELDS`], the reason's fields
    /// and the query's fields).
    carried: Vec<Slot>,
    carried_names: Vec<String>,
    /// Per stage, the indexes (in `carried`) of the fields its event
    /// carries: the identifying ones, and those the stage reads.
    carry_by_stage: Vec<Vec<usize>>,
    /// The join key values of the sequence last completed (any rule but
    /// the built-in one).
    last_keys: Vec<Option<String>>,
    state: SequenceState,
    style: AnnotationStyle,
    /// The alert members that depend only on the rule, built once.
    alert_parts: RuleParts,
    max_record_bytes: usize,
    stats: Stats,
    out: Vec<u8>,
    key: Vec<u8>,
    /// Reused to encode a stage event's carried fields, and to sort the
    /// values of its identity digest.
    carried_builder: CarriedBuilder,
    digest_order: Vec<(Slot, u32)>,
    exceptions: Exceptions,
    /// Slots below this one make an event's identity (the alert ids); the
    /// fields only exceptions read come after, so tuning never changes ids.
    identity_slots: usize,
    maxspan_ms: Option<u64>,
    /// Buffers reused from record to record, and the fast path's field table
    /// (see [`Detector::process`]).
    scratch: Scratch,
    /// Rules out most records by their bytes (see [`crate::engine::prefilter`]).
    prefilter: Prefilter,
    lateness_ms: i64,
    max_future_ms: i64,
    /// Events held back for lateness, by time then arrival.
    held: HostQueue<Held>,
    held_caps: Caps,
    /// The latest time of an accepted stage event (lateness watermark).
    max_seen: Option<i64>,
    /// The time of the last event released to the engine.
    frontier: Option<i64>,
    alerts: VecDeque<StandaloneAlert>,
    /// Sequences the last event completed beyond its first (a multi-valued
    /// join key completes one per value): each leaves as a standalone alert.
    more_completed: Vec<(Partial, Vec<Option<String>>)>,
    hasher: std::collections::hash_map::RandomState,
    /// The generic engine, for a rule beyond the fast engine's subset
    /// (see [`crate::engine::generic`]).
    generic: Option<Box<GenericRun>>,
    /// What [`Detector::take_warning`] last reported.
    warnings: Warnings,
    /// A rule pack (config keys `rules`, `rules_dir`): every record goes to
    /// it, and its alerts come out as standalone alerts (see
    /// [`crate::engine::pack`]). The detector's own rule is then the pack's first.
    pack: Option<Box<PackDetector>>,
}

/// The counts at which [`Detector::take_warning`] last warned, and the
/// member name of an unparsed record (its first bytes, kept without
/// allocating).
#[derive(Debug, Default)]
struct Warnings {
    unparsed_at: u64,
    bad_timestamp_at: u64,
    key: [u8; 32],
    key_len: usize,
}

/// What [`Detector::process`] and [`Detector::process_msgpack`] keep from one
/// record to the next, so that a record that completes nothing allocates
/// nothing.
#[derive(Debug, Default)]
struct Scratch {
    /// The allocation of the record's [`Fields`].
    fields: FieldsBuf,
    /// The fields the rule's stage predicates read (built on first use).
    decide: Option<FieldTable>,
}

impl Scratch {
    /// The table of the fields that decide whether a record can match a
    /// stage: `event.category` and every field of every stage's predicate.
    ///
    /// With them, the join keys, the IP-typed fields and `@timestamp`: enough
    /// to tell that a record matching only a later stage finds nothing
    /// waiting (see [`Detector::nothing_waiting`]).
    fn decide(&mut self, rule: &Rule, table: &FieldTable, ts_slot: Slot) -> &FieldTable {
        self.decide.get_or_insert_with(|| table.subset(&decide_slots(rule, ts_slot)))
    }
}

/// The slots of [`Scratch::decide`]'s table.
fn decide_slots(rule: &Rule, ts_slot: Slot) -> Vec<Slot> {
    let q = rule.compiled();
    let mut slots = vec![q.category_slot, ts_slot];
    for stage in &q.stages {
        pred_slots(&stage.predicate, &mut slots);
        slots.extend_from_slice(&stage.keys);
    }
    slots.extend_from_slice(&q.ip_slots);
    slots.sort_unstable();
    slots.dedup();
    slots
}


/// What [`Detector::admit`] decides about an event that matches a stage.
enum Admit {
    /// It takes part, at this time.
    At(i64),
    InvalidIp,
    Excluded,
    NoTime,
    /// More than `max_future` ahead of the system clock.
    Future,
}

/// The stages the event matches, one bit each (the fast engine takes at
/// most [`crate::eql::compile::MAX_FAST_STAGES`] stages).
fn stage_bits(q: &CompiledQuery, fields: &Fields) -> u32 {
    const _: () = assert!(crate::eql::compile::MAX_FAST_STAGES <= 32);
    let matching = q.stages.iter().enumerate().filter(|(_, s)| s.matches(fields, q.category_slot));
    matching.fold(0, |bits, (k, _)| bits | 1 << k)
}

impl Detector {
    /// A detector for the rule and limits in `config`.
    ///
    /// With a rule pack (`rules`, `rules_dir`), the detector runs every rule
    /// of it ([`crate::engine::pack`]): each record goes on unchanged
    /// ([`Verdict::Unchanged`]) and every match is a standalone alert
    /// ([`Detector::take_alert`]); [`Detector::stats`] counts each record
    /// once (records, read errors, `bad_timestamp`) and sums the rules'
    /// sequence and state counters, and [`Detector::pack`] gives each rule's.
    pub fn new(config: &Config) -> Result<Detector, LoadError> {
        if config.is_pack() {
            let loaded = config.load_rules()?;
            let first = loaded.rules.first().cloned().ok_or_else(|| {
                LoadError::Config(crate::config::settings::ConfigError {
                    key: Some(if config.rules.is_empty() { "rules_dir" } else { "rules" }.into()),
                    message: crate::config::settings::NO_RULE.into(),
                })
            })?;
            let pack = PackDetector::with_skipped(loaded.rules, loaded.skipped, config);
            let mut d = Detector::with_rule(first, config);
            d.pack = Some(Box::new(pack));
            return Ok(d);
        }
        let rule = config.load_rule()?;
        Ok(Detector::with_rule(rule, config))
    }

    /// Stage matches without a usable `@timestamp` so far (a cheap read of
    /// one counter).
    pub fn bad_timestamp_count(&self) -> u64 {
        self.stats.bad_timestamp
    }

    /// The rule pack this detector runs, if it runs one.
    pub fn pack(&self) -> Option<&PackDetector> {
        self.pack.as_deref()
    }

    /// The rule pack this detector runs, to read a chunk's bodies ahead
    /// ([`crate::engine::chunk::filter_chunk`]).
    pub(crate) fn pack_mut(&mut self) -> Option<&mut PackDetector> {
        self.pack.as_deref_mut()
    }

    /// [`Detector::process_msgpack`] for a detector running a rule pack, on
    /// a body the pack read while its chunk was walked (`read`, from
    /// [`PackDetector::read_ahead`]).
    pub(crate) fn process_msgpack_read<'r>(&mut self, body: &'r [u8], read: Fields<'r>) -> Result<Verdict<'_>, RecordError> {
        self.take_in(body, lone_string_member_msgpack)?;
        self.process_pack(body, true, Some(read))
    }

    /// Run the pack on one record (see [`Detector::new`]), with its read
    /// when made already.
    fn process_pack<'r>(&mut self, record: &'r [u8], msgpack: bool, read: Option<Fields<'r>>) -> Result<Verdict<'_>, RecordError> {
        let Some(p) = self.pack.as_deref_mut() else { return Ok(Verdict::Unchanged) };
        let r = p.process_with(record, msgpack, read);
        self.stats.bad_timestamp = p.bad_timestamps();
        self.collect_pack_alerts();
        match r {
            Ok(_) => Ok(Verdict::Unchanged),
            Err(e) => {
                let s = &mut self.stats;
                match e {
                    RecordError::InvalidJson => s.invalid_json += 1,
                    RecordError::InvalidMsgpack => s.invalid_msgpack += 1,
                    RecordError::NotAnObject => s.not_an_object += 1,
                    RecordError::TooDeep => s.too_deep += 1,
                    RecordError::TooLarge => s.too_large += 1,
                    RecordError::AnnotateFailed => s.annotate_failed += 1,
                    _ => {}
                }
                Err(e)
            }
        }
    }

    /// Move the pack's alerts to the standalone queue (bounded as ever).
    fn collect_pack_alerts(&mut self) {
        let Some(p) = self.pack.as_deref_mut() else { return };
        while let Some(a) = p.take_alert() {
            queue(&mut self.alerts, &mut self.stats, StandaloneAlert { msgpack: a.msgpack, bytes: a.bytes });
        }
    }

    /// A detector running `rule` (the rule keys of `config`, `rule` and
    /// `rule_file`, are ignored; `maxspan` and the exceptions apply).
    pub fn with_rule(rule: Rule, config: &Config) -> Detector {
        let mut table = rule.compiled().fields.clone();
        let rule_fields = table.len();
        let ts_slot = table.intern("@timestamp");
        let mut carried_names: Vec<String> = CARRIED_FIELDS.iter().map(|f| f.to_string()).collect();
        // Indexes below this one are carried by every stage.
        let mut base = carried_names.len();
        if !rule.writes_apt_alert() {
            carried_names = crate::alert::rule_alert::carried_fields().iter().map(|f| f.to_string()).collect();
            base = carried_names.len();
            let query_fields: Vec<String> = (0..rule_fields).map(|i| table.name(i as Slot).to_string()).collect();
            for f in query_fields {
                // The carried encoding numbers fields in one byte.
                if !carried_names.contains(&f) && carried_names.len() < 255 {
                    carried_names.push(f);
                }
            }
        }
        let carried: Vec<Slot> = carried_names.iter().map(|f| table.intern(f)).collect();
        for f in EXTRA_FIELDS {
            table.intern(f);
        }
        let identity_slots = table.len();
        let n_stages = rule.compiled().stages.len();
        let carry_by_stage = if rule.writes_apt_alert() {
            vec![(0..carried.len()).collect(); n_stages]
        } else {
            rule.compiled()
                .stages
                .iter()
                .map(|st| {
                    let mut slots = Vec::new();
                    pred_slots(&st.predicate, &mut slots);
                    slots.extend(st.keys.iter().copied());
                    (0..carried.len()).filter(|&i| i < base || slots.contains(&carried[i])).collect()
                })
                .collect()
        };
        let items: Vec<_> = config.exception_items().into_iter().filter(|i| i.applies_to(&rule.meta().rule_id)).collect();
        let exceptions = Exceptions::compile(&items, &mut table, &rule.compiled().ip_slots, &config.types());
        let q = rule.compiled();
        let maxspan_ms = match rule.generic_query() {
            Some(crate::eql::Query::Sequence(seq)) => config.maxspan_ms.or(seq.maxspan_ms),
            Some(_) => None,
            None if q.is_sequence => config.maxspan_ms.or(q.maxspan_ms),
            None => q.maxspan_ms,
        };
        let caps = Caps {
            total: config.max_pending_sequences,
            per_host: config.max_pending_per_host,
            bytes: config.max_state_bytes,
        };
        let state = SequenceState::new(maxspan_ms, caps);
        let prefilter = Prefilter::new(q, config.prefilter);
        let alert_parts = if rule.writes_apt_alert() { RuleParts::new(rule.meta()) } else { RuleParts::generic(rule.meta()) };
        let held_caps = Caps {
            total: config.max_held_events,
            per_host: config.max_pending_per_host,
            bytes: config.max_state_bytes,
        };
        let style = AnnotationStyle { prefix: config.annotation_prefix.clone(), kibana: config.kibana_fields, signal: false };
        // A rule beyond the fast engine runs on the generic one; so does any
        // rule when events are to be named by another field than the
        // `event.id` the fast engine carries.
        let on_generic = rule.generic_query().is_some() || config.id_field != "event.id";
        let generic = on_generic.then(|| {
            let settings = |types| GenericSettings {
                types,
                id_field: config.id_field.clone(),
                sample_window_ms: config.sample_window_ms,
                max_partials: config.max_pending_sequences,
                maxspan_ms: config.maxspan_ms,
                lateness_ms: config.max_lateness_ms,
                max_held: config.max_held_events,
                max_state_bytes: config.max_state_bytes,
                style: style.clone(),
                prefilter: config.prefilter,
            };
            // The rule compiled with ECS's types when it loaded; the user's
            // types could only make a literal unreadable, never the query.
            let run = GenericRun::new(&rule, settings(config.types()))
                .or_else(|_| GenericRun::new(&rule, settings(crate::eql::TypeMap::ecs())))
                .expect("the rule compiled when it loaded");
            Box::new(run)
        });
        Detector {
            generic,
            rule,
            table,
            ts_slot,
            carried,
            carried_names,
            carry_by_stage,
            last_keys: Vec::new(),
            state,
            style,
            alert_parts,
            max_record_bytes: config.max_record_bytes,
            stats: Stats::default(),
            out: Vec::new(),
            key: Vec::new(),
            carried_builder: CarriedBuilder::default(),
            digest_order: Vec::new(),
            exceptions,
            identity_slots,
            maxspan_ms,
            scratch: Scratch::default(),
            prefilter,
            lateness_ms: config.max_lateness_ms.min(i64::MAX as u64) as i64,
            max_future_ms: config.max_future_ms.min(i64::MAX as u64) as i64,
            held: HostQueue::default(),
            held_caps,
            max_seen: None,
            frontier: None,
            alerts: VecDeque::new(),
            more_completed: Vec::new(),
            hasher: Default::default(),
            warnings: Warnings::default(),
            pack: None,
        }
    }

    /// Events excluded by each exception item, `(item name, count)`, in the
    /// order of [`Config::exception_items`] (generated items are named after
    /// their `trusted_*` key). Empty when no exception is configured.
    pub fn exception_counts(&self) -> Vec<(String, u64)> {
        if let Some(p) = &self.pack {
            return p.exception_counts();
        }
        self.exceptions.counts()
    }

    /// The maxspan in force (the rule's, or the config's `maxspan`).
    pub fn maxspan_ms(&self) -> Option<u64> {
        self.maxspan_ms
    }

    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        if let Some(p) = &self.pack {
            return p.summed_stats(s);
        }
        if let Some(g) = &self.generic {
            let e = g.engine_stats();
            s.expired_by_maxspan = e.expired;
            s.pending = g.pending();
            s.held = g.held();
            return s;
        }
        s.expired_by_maxspan = self.state.expired;
        s.evicted_by_cap = self.state.evicted.total;
        s.evicted_by_host_cap = self.state.evicted.per_host;
        s.evicted_by_bytes = self.state.evicted.bytes;
        s.pending = self.state.len() as u64;
        s.held = self.held.len() as u64;
        s
    }

    /// Estimated bytes of the state held (partial sequences and held
    /// events): what `max_state_bytes` limits, each part on its own.
    pub fn state_bytes(&self) -> usize {
        if let Some(p) = &self.pack {
            return p.state_bytes();
        }
        if let Some(g) = &self.generic {
            return g.state_bytes();
        }
        self.state.bytes() + self.held.bytes()
    }

    /// Evaluate one JSON record.
    ///
    /// Two passes. First the fast scanner ([`FieldTable::scan`]) reads just
    /// the few fields the rule's stage predicates test; a record that matches
    /// no stage — nearly every record — is `Unchanged` then and there, without
    /// a full parse and without allocating. A record that may match a stage,
    /// or that the scanner is unsure of, is read again by the validating
    /// reader ([`FieldTable::extract`]) before anything is counted, stored or
    /// annotated, so whatever can alert, count a stage match or move the
    /// watermark is decided on fully validated JSON, exactly as with one full
    /// parse. The one difference: a record that matches no stage and is
    /// malformed only in ways the scanner does not check (the spelling of a
    /// number or literal, `:`/`,` punctuation, stray bytes between values —
    /// inside members the stage predicates do not read; see [`crate::format::event`])
    /// passes as `Unchanged` rather than counted as `invalid_json`; it is
    /// forwarded unchanged either way.
    pub fn process(&mut self, record: &[u8]) -> Result<Verdict<'_>, RecordError> {
        self.take_in(record, lone_string_member_json)?;
        if self.pack.is_some() {
            return self.process_pack(record, false, None);
        }
        if self.generic.is_some() {
            return self.process_generic(record, false);
        }
        if self.prefilter.rules_out_json(record) {
            return Ok(Verdict::Unchanged);
        }
        let mut fields = self.scratch.fields.take();
        let decide = self.scratch.decide(&self.rule, &self.table, self.ts_slot);
        let read = decide.scan(record, &mut fields).is_ok();
        let checked = OnceCell::new();
        let decided = read && self.decides_unchanged(record, false, &fields, &checked, false);
        self.scratch.fields.put_back(fields);
        if decided {
            return Ok(Verdict::Unchanged);
        }
        self.evaluate_whole(record, false, &checked, None, None)
    }

    /// Whether the decisive fields read from `record` (the table of
    /// [`Scratch::decide`]) show that it changes nothing: it matches no
    /// stage, or only later stages with nothing waiting for it.
    ///
    /// `pass_by`: a record that can only extend later stages, with nothing
    /// waiting under its keys, passes this rule by: it is not checked as
    /// valid JSON, does not move the watermark and is not counted as a
    /// stage match (a rule pack's choice: see [`crate::engine::pack`]).
    fn decides_unchanged(&mut self, record: &[u8], msgpack: bool, fields: &Fields, checked: &OnceCell<Checked>, pass_by: bool) -> bool {
        let matched = stage_bits(self.rule.compiled(), fields);
        self.decides_unchanged_by(record, msgpack, fields, matched, checked, pass_by)
    }

    /// [`Detector::decides_unchanged`], given the stages the record matches.
    fn decides_unchanged_by(&mut self, record: &[u8], msgpack: bool, fields: &Fields, matched: u32, checked: &OnceCell<Checked>, pass_by: bool) -> bool {
        // (The MessagePack reader has checked the whole body's framing
        // already; the fast JSON scanner has not, so a record it would
        // leave unchanged must be valid JSON, as a full read would find.)
        matched == 0
            || self.nothing_waiting(fields, matched, pass_by, || msgpack || checked.get_or_init(|| syntax::check(record)).valid)
    }

    /// Read `record` whole, evaluate it, and annotate it if it completes
    /// a sequence. `checked`: its syntax check, if made.
    ///
    /// A record is read from `read` when given (a rule pack's read of it,
    /// with a table holding this one's paths, and where this table's slots
    /// are in it: `(this table's slot, the read's slot)`) and, for JSON,
    /// the record is valid JSON; else a valid JSON record by the fast
    /// scanner when it is sure. Either way the validating reader would
    /// accept it and read the same values (the contract in
    /// [`crate::format::event`]; the MessagePack reader, given more paths,
    /// checks more). Any other record is read by the validating reader,
    /// which says what is wrong with it.
    ///
    /// `known`: the stages the record matches, found on `read` already
    /// (used when the fields are taken from `read`).
    fn evaluate_whole(
        &mut self,
        record: &[u8],
        msgpack: bool,
        checked: &OnceCell<Checked>,
        read: Option<(&Fields, &[(Slot, Slot)])>,
        mut known: Option<u32>,
    ) -> Result<Verdict<'_>, RecordError> {
        let mut fields = self.scratch.fields.take();
        let is_valid = || checked.get_or_init(|| syntax::check(record)).valid;
        let from_read = read.filter(|_| msgpack || is_valid());
        if from_read.is_none() {
            known = None;
        }
        let read = if let Some((from, map)) = from_read {
            fields.push_mapped(from, map);
            Ok(())
        } else if msgpack {
            crate::format::msgpack::extract(&self.table, record, &mut fields)
        } else if self.table.scan(record, &mut fields).is_ok() && is_valid() {
            Ok(())
        } else {
            self.table.extract(record, &mut fields)
        };
        let evaluated = match read {
            Ok(()) => self.evaluate_rec(&fields, Some(Rec { bytes: record, msgpack }), known),
            Err(e) => Err(self.count_extract_error(e)),
        };
        self.scratch.fields.put_back(fields);
        let Some(alert) = evaluated? else {
            return Ok(Verdict::Unchanged);
        };
        let merged = if msgpack { crate::format::msgpack::merge(record, alert, &mut self.out) } else { merge(record, alert, &mut self.out) };
        match merged {
            Ok(()) => {
                self.stats.annotated += 1;
                Ok(Verdict::Annotated(&self.out))
            }
            Err(_) => {
                self.stats.annotate_failed += 1;
                Err(RecordError::AnnotateFailed)
            }
        }
    }

    /// For a rule pack, which has read the record once for all its rules: a
    /// record of a fast rule, with that read (`read`) and where this
    /// detector's decisive fields are in it (`map`: `(this detector's slot,
    /// the read's slot)`, of [`Detector::decide_slots`]). What
    /// [`Detector::process`] (or [`Detector::process_msgpack`]) does after
    /// its own read of them; the same outcome.
    ///
    /// `full`: the same for every slot of this detector's table (a record
    /// that may change something is evaluated from `read`, not read again).
    /// `checked`: the record's syntax check, once made (by any rule).
    /// `pass_by`: see [`Detector::decides_unchanged`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn process_read(
        &mut self,
        record: &[u8],
        msgpack: bool,
        read: &Fields,
        map: &[(Slot, Slot)],
        full: &[(Slot, Slot)],
        checked: &OnceCell<Checked>,
        pass_by: bool,
    ) -> Result<Verdict<'_>, RecordError> {
        let lone = if msgpack { lone_string_member_msgpack } else { lone_string_member_json };
        self.take_in(record, lone)?;
        let mut decided = self.scratch.fields.take();
        decided.push_mapped(read, map);
        let matched = stage_bits(self.rule.compiled(), &decided);
        let unchanged = self.decides_unchanged_by(record, msgpack, &decided, matched, checked, pass_by);
        self.scratch.fields.put_back(decided);
        if unchanged {
            return Ok(Verdict::Unchanged);
        }
        // (The decisive fields are every field a stage tests: the stages
        // they match are the record's.)
        self.evaluate_whole(record, msgpack, checked, Some((read, full)), Some(matched))
    }

    /// The slots (of [`Detector::field_table`]) of the fields that decide
    /// about a record (see [`Detector::process_read`]); `None` for a rule on
    /// the generic engine or a pack.
    pub(crate) fn decide_slots(&self) -> Option<Vec<Slot>> {
        if self.generic.is_some() || self.pack.is_some() {
            return None;
        }
        Some(decide_slots(&self.rule, self.ts_slot))
    }

    /// Evaluate one record given as a MessagePack map (a Fluent Bit record
    /// body). An annotated result is a MessagePack map too.
    ///
    /// Two passes, as [`Detector::process`]: the MessagePack reader first
    /// reads only the fields the stage predicates test, and a body that
    /// matches no stage is `Unchanged`; any other body is read again for
    /// every field. The difference: a body that matches no stage is not
    /// checked inside the members the predicates do not read (UTF-8 of
    /// strings and keys there, nesting depth along those paths), so such a
    /// body passes as `Unchanged` rather than counted as `invalid_msgpack`
    /// or `too_deep`.
    pub fn process_msgpack(&mut self, body: &[u8]) -> Result<Verdict<'_>, RecordError> {
        self.take_in(body, lone_string_member_msgpack)?;
        if self.pack.is_some() {
            return self.process_pack(body, true, None);
        }
        if self.generic.is_some() {
            return self.process_generic(body, true);
        }
        if self.prefilter.rules_out_msgpack(body) {
            return Ok(Verdict::Unchanged);
        }
        let mut fields = self.scratch.fields.take();
        let decide = self.scratch.decide(&self.rule, &self.table, self.ts_slot);
        // The reader has checked the whole body's framing already; what a
        // full read adds (UTF-8 of the other fields it reads) is not needed
        // to apply a record that finds nothing waiting.
        let read = crate::format::msgpack::extract(decide, body, &mut fields).is_ok();
        let decided = read && self.decides_unchanged(body, true, &fields, &OnceCell::new(), false);
        self.scratch.fields.put_back(fields);
        if decided {
            return Ok(Verdict::Unchanged);
        }
        self.evaluate_whole(body, true, &OnceCell::new(), None, None)
    }

    /// A warning for whoever runs the detector to log, when the input looks
    /// wrong in a way that means no alert can come: `None` almost always
    /// (two comparisons; call it after every record or chunk).
    ///
    /// Two causes, each warned of at its first occurrence and then again
    /// every [`WARNING_EVERY`] occurrences (the message gives the count so
    /// far):
    ///
    /// * records that look unparsed ([`Stats::unparsed`]): an object of one
    ///   member holding a string, which is none of the fields the detector
    ///   reads (`{"log": "…"}`: a shipper without a JSON parser);
    /// * stage matches without a usable `@timestamp`
    ///   ([`Stats::bad_timestamp`]): e.g. a Fluent Bit parser with
    ///   `Time_Key @timestamp` and without `Time_Keep On` removes it.
    ///
    /// The message names the cause and the fix, in one line.
    pub fn take_warning(&mut self) -> Option<String> {
        let w = &mut self.warnings;
        let due = |n: u64, at: u64| n > at && (at == 0 || n - at >= WARNING_EVERY);
        if due(self.stats.unparsed, w.unparsed_at) {
            let n = self.stats.unparsed;
            w.unparsed_at = n;
            let key = String::from_utf8_lossy(&w.key[..w.key_len]);
            return Some(format!(
                "{n} record(s) look unparsed (a single member `{key}` holding a string, none of the fields the rule reads): \
                 no alert can come from them. Parse the log line as JSON before this filter \
                 (Fluent Bit: `Parser json` on the input, or a `parser` filter with `Key_Name {key}`; \
                 Vector: `. = parse_json!(.{key})` in a remap transform)"
            ));
        }
        if due(self.stats.bad_timestamp, w.bad_timestamp_at) {
            let n = self.stats.bad_timestamp;
            w.bad_timestamp_at = n;
            return Some(format!(
                "{n} stage match(es) had no usable @timestamp (missing, or not an RFC 3339 date or epoch milliseconds) \
                 and were ignored: keep `@timestamp` in the records. A Fluent Bit parser with `Time_Key @timestamp` \
                 removes it: set `Time_Keep On` on that parser"
            ));
        }
        None
    }

    /// What every record goes through first, JSON or MessagePack: counted,
    /// refused when over `max_record_bytes`, and a lone string member
    /// (`lone`: the format's reader) noted as a record the shipper did not
    /// parse.
    #[inline]
    fn take_in(&mut self, record: &[u8], lone: fn(&[u8]) -> Option<&[u8]>) -> Result<(), RecordError> {
        self.stats.records += 1;
        if record.len() > self.max_record_bytes {
            self.stats.too_large += 1;
            return Err(RecordError::TooLarge);
        }
        if let Some(key) = lone(record) {
            self.note_unparsed(key);
        }
        Ok(())
    }

    /// Count a record that is one member holding a string, unless the
    /// detector reads that member.
    #[cold]
    #[inline(never)]
    fn note_unparsed(&mut self, key: &[u8]) {
        let read = match std::str::from_utf8(key) {
            Ok(k) => {
                self.table.lookup(k).is_some()
                    || (self.rule.generic_query().is_some()
                        && memchr::memmem::find(self.rule.query_text().as_bytes(), key).is_some())
            }
            Err(_) => false,
        };
        if read {
            return;
        }
        let w = &mut self.warnings;
        if self.stats.unparsed == w.unparsed_at {
            // The first since the last warning: its name goes into the next.
            let mut n = key.len().min(w.key.len());
            while n < key.len() && n > 0 && (key[n] & 0xc0) == 0x80 {
                n -= 1; // not in the middle of a UTF-8 character
            }
            w.key[..n].copy_from_slice(&key[..n]);
            w.key_len = n;
        }
        self.stats.unparsed += 1;
    }

    /// A record for the generic engine (see [`crate::engine::generic`]).
    fn process_generic(&mut self, record: &[u8], msgpack: bool) -> Result<Verdict<'_>, RecordError> {
        let Some(g) = self.generic.as_mut() else { return Ok(Verdict::Unchanged) };
        g.process(record, msgpack, None, &mut self.stats, &mut self.exceptions, &self.table, &mut self.alerts)
            .map(|o| o.map_or(Verdict::Unchanged, Verdict::Annotated))
    }

    /// Whether this detector runs its rule on the generic engine (which
    /// reads a record as a whole tree: see [`Detector::process_parsed`]).
    /// Partial sequences kept now (cheap).
    pub fn pending_count(&self) -> u64 {
        match &self.generic {
            Some(g) => g.pending(),
            None => self.state.len() as u64,
        }
    }

    /// Write `event.kind: "signal"` into every alert from now on (see
    /// [`AnnotationStyle::signal`]): a rule pack's standalone alerts.
    pub fn write_signal(&mut self) {
        self.style.signal = true;
        if let Some(g) = &mut self.generic {
            g.write_signal();
        }
    }

    /// Change the cap on partial sequences (`max_pending_sequences`) of this
    /// detector's rule: a rule pack shares one cap among its rules. Enforced
    /// (oldest first, counted as `evicted_by_cap`) when the next partial is
    /// stored.
    pub fn set_pending_cap(&mut self, n: usize) {
        match &mut self.generic {
            Some(g) => g.set_max_partials(n),
            None => self.state.set_total_cap(n),
        }
    }

    /// The slots (of [`Detector::field_table`]) that
    /// [`Detector::later_stages_idle`] reads: the time, the address fields
    /// and the join keys of every stage after the first. `None` for a rule
    /// on the generic engine or a pack.
    pub(crate) fn idle_slots(&self) -> Option<Vec<Slot>> {
        if self.generic.is_some() || self.pack.is_some() {
            return None;
        }
        let q = self.rule.compiled();
        let mut slots = vec![self.ts_slot];
        for stage in q.stages.iter().skip(1) {
            slots.extend_from_slice(&stage.keys);
        }
        slots.extend_from_slice(&q.ip_slots);
        slots.sort_unstable();
        slots.dedup();
        Some(slots)
    }

    /// For a rule pack, before a record's stage tests: true when the record
    /// surely leaves this rule unchanged because it can match only later
    /// stages (`stages`, the index's candidates: bit k for stage k, bit 0
    /// clear) and nothing waits under its join keys at any of them — what
    /// [`Detector::nothing_waiting`] finds for a record passed by, found
    /// before the stage tests rather than after them. `map`: where the
    /// slots of [`Detector::idle_slots`] are in the pack's read `read`
    /// (`(this detector's slot, the read's slot)`). False when unsure (a key
    /// missing or cut short, a time or address the record could not be
    /// admitted with, exceptions, `max_lateness`): the record then goes the
    /// usual way.
    pub(crate) fn later_stages_idle(&mut self, read: &Fields, map: &[(Slot, Slot)], stages: u64) -> bool {
        let n = self.rule.compiled().stages.len();
        if !self.may_pass_by() || stages & 1 != 0 || n < 2 {
            return false;
        }
        let mut fields = self.scratch.fields.take();
        fields.push_mapped(read, map);
        let idle = matches!(self.admit(&fields), Admit::At(_))
            && self.nothing_under_keys(&fields, (1..n).filter(|&k| stages >> k.min(63) & 1 != 0));
        self.scratch.fields.put_back(fields);
        idle
    }

    /// Whether a record that can extend nothing may be passed by at all
    /// (no exceptions or `max_lateness` to apply, and the prefilter on).
    fn may_pass_by(&self) -> bool {
        self.prefilter.enabled() && self.lateness_ms == 0 && self.exceptions.is_empty()
    }

    /// Whether nothing waits under the record's join keys at any of the
    /// later stages `later` (every key of each, as partial sequences are
    /// keyed); false when a key is missing or its combinations were cut
    /// short.
    fn nothing_under_keys(&mut self, fields: &Fields, later: impl Iterator<Item = usize>) -> bool {
        let rule = self.rule.clone();
        let q = rule.compiled();
        for k in later {
            let Some((keys, false)) = JoinKeys::of(&mut self.key, fields, &q.stages[k].keys) else { return false };
            for c in 0..keys.len() {
                keys.encode(&mut self.key, c, k - 1);
                if self.state.contains(&self.key) {
                    return false;
                }
            }
        }
        true
    }

    /// Whether any partial sequence or held event is kept (cheap).
    pub fn has_state(&self) -> bool {
        match &self.generic {
            Some(g) => g.pending() > 0 || g.held() > 0,
            None => !self.state.is_empty() || !self.held.is_empty(),
        }
    }

    pub fn is_generic(&self) -> bool {
        self.generic.is_some()
    }

    /// See [`crate::eql::Engine::by_fields`] (generic engine only).
    pub(crate) fn generic_by_paths(&self) -> Option<Vec<String>> {
        self.generic.as_ref()?.by_fields()
    }

    /// The paths a record's tree must hold for this rule (generic engine
    /// only; see [`crate::engine::pruned`]).
    pub(crate) fn generic_tree_paths(&self) -> Option<&[String]> {
        self.generic.as_ref().map(|g| g.tree_paths())
    }

    /// Whether nothing waits under these `by` values (generic engine only;
    /// see [`crate::eql::Engine::nothing_under`]).
    pub(crate) fn generic_nothing_under(&self, by: &[&str]) -> bool {
        self.generic.as_ref().is_some_and(|g| g.held() == 0 && g.nothing_under(by))
    }

    /// [`Detector::process`] (or, with `msgpack`, [`Detector::process_msgpack`])
    /// of a record already read as a tree by [`crate::engine::generic::read`], for
    /// a rule on the generic engine: a rule pack reads each record once for
    /// all of them. For a rule on the fast engine the tree is not used.
    pub fn process_parsed(
        &mut self,
        record: &[u8],
        msgpack: bool,
        parsed: &Result<Value, ExtractError>,
    ) -> Result<Verdict<'_>, RecordError> {
        if self.generic.is_none() {
            return if msgpack { self.process_msgpack(record) } else { self.process(record) };
        }
        self.take_in_generic(record)?;
        let Some(g) = self.generic.as_mut() else { return Ok(Verdict::Unchanged) };
        g.process(record, msgpack, Some(parsed), &mut self.stats, &mut self.exceptions, &self.table, &mut self.alerts)
            .map(|o| o.map_or(Verdict::Unchanged, Verdict::Annotated))
    }

    /// A record handed to the generic engine already read: counted, and
    /// refused when too large.
    fn take_in_generic(&mut self, record: &[u8]) -> Result<(), RecordError> {
        self.stats.records += 1;
        if record.len() > self.max_record_bytes {
            self.stats.too_large += 1;
            return Err(RecordError::TooLarge);
        }
        Ok(())
    }

    /// Whether this rule runs on the generic engine and takes a record's
    /// plain scan ([`Detector::process_scanned`]).
    pub(crate) fn takes_read(&self) -> bool {
        self.generic.as_ref().is_some_and(|g| g.takes_read())
    }

    /// For a rule pack: a rule on the generic engine reads records' plain
    /// scans made with `table` from now on, if it holds every path the rule
    /// reads and carries; whether it does.
    pub(crate) fn bind_read(&mut self, table: &FieldTable) -> bool {
        self.generic.as_mut().is_some_and(|g| g.bind_read(table))
    }

    /// For a rule pack, a record (`msgpack`: a MessagePack body, else
    /// JSON) of a generic rule that a tree surely reads whole, with its
    /// plain read `read` (see [`Detector::bind_read`]): what
    /// [`Detector::process_parsed`] does with its tree, without the tree.
    /// Only when [`Detector::takes_read`].
    pub(crate) fn process_scanned(&mut self, record: &[u8], msgpack: bool, read: &Fields) -> Result<Verdict<'_>, RecordError> {
        self.take_in_generic(record)?;
        let Some(g) = self.generic.as_mut() else { return Ok(Verdict::Unchanged) };
        g.process_read(record, msgpack, read, &mut self.stats, &mut self.exceptions, &self.table, &mut self.alerts)
            .map(|o| o.map_or(Verdict::Unchanged, Verdict::Annotated))
    }

    /// The short way for a record that matches only later stages (it can
    /// start nothing) and finds no partial sequence waiting under any of its
    /// join keys: it is applied as the engine would apply it (its time
    /// advances the watermark, its stage matches are counted) from the fields
    /// the scanner read, without reading the record whole. `valid` checks the
    /// record's syntax first. With `pass_by` (a pack's choice), it is not
    /// applied at all: no syntax check, no watermark, no count. Off with
    /// `prefilter = false`. False, with
    /// nothing changed, whenever the
    /// engine could do anything else with it (exceptions, `max_lateness`, a
    /// one-stage query, a missing or odd key, time or address): the record
    /// is then read whole and evaluated.
    fn nothing_waiting(&mut self, fields: &Fields, matched: u32, pass_by: bool, valid: impl FnOnce() -> bool) -> bool {
        let rule = self.rule.clone();
        let q = rule.compiled();
        // A first-stage match starts a sequence; a one-stage query completes.
        if !self.may_pass_by() || q.stages.len() < 2 || matched & 1 != 0 {
            return false;
        }
        let Admit::At(t) = self.admit(fields) else { return false };
        let later = || (1..q.stages.len()).filter(|&k| matched & 1 << k != 0);
        if !self.nothing_under_keys(fields, later()) {
            return false;
        }
        if pass_by {
            return true;
        }
        if !valid() {
            return false;
        }
        self.state.observe(t);
        for k in later() {
            self.stats.stage_matches[k.min(3)] += 1;
        }
        true
    }

    /// The field table records are read with (the rule's fields plus those
    /// the alert carries).
    pub fn field_table(&self) -> &FieldTable {
        &self.table
    }

    /// Count a record that could not be read (for callers that extract
    /// fields themselves).
    pub fn count_extract_error(&mut self, e: ExtractError) -> RecordError {
        let (counter, err) = match e {
            ExtractError::InvalidJson => (&mut self.stats.invalid_json, RecordError::InvalidJson),
            ExtractError::InvalidMsgpack => (&mut self.stats.invalid_msgpack, RecordError::InvalidMsgpack),
            ExtractError::NotAnObject => (&mut self.stats.not_an_object, RecordError::NotAnObject),
            ExtractError::TooDeep => (&mut self.stats.too_deep, RecordError::TooDeep),
        };
        *counter += 1;
        err
    }
}

/// Estimated bytes of a held event beyond its record and its index entries,
/// for `max_state_bytes`.
pub const HELD_OVERHEAD_BYTES: usize = 16;

fn now_ms() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_millis().min(i64::MAX as u128) as i64,
        Err(_) => 0,
    }
}

/// Event time in ms from `@timestamp`: an RFC 3339 string, or epoch
/// milliseconds as a number or a string of digits. The first value of an
/// array is used.
pub fn event_time(f: &Fields, slot: Slot) -> Option<i64> {
    match f.get(slot).next()? {
        Scalar::Str(s) => {
            let s = s.as_ref();
            if !s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit()) {
                s.parse().ok()
            } else {
                parse_rfc3339_ms(s)
            }
        }
        Scalar::Int(i) => Some(*i),
        Scalar::Float(x) if x.is_finite() && x.abs() < 9.0e15 => Some(x.trunc() as i64),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
