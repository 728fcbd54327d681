//! Rules that only the generic engine runs, inside a [`crate::Detector`].
//!
//! A rule whose query is beyond the fast engine's subset (see
//! [`crate::eql::compile::beyond_fast_path`]) runs on [`crate::eql::Engine`]. The
//! detector's interface does not change: every record goes on unchanged
//! unless it completes a result, read errors are counted, exceptions hide
//! events from every stage, and `max_lateness` holds events back and
//! releases them in time order. What differs is how a record is read (one
//! `serde_json` parse, or a MessagePack map decoded to the same tree, of
//! only the fields the rule reads and carries: [`crate::engine::pruned`])
//! and the alert:
//!
//! * the record that completes a result (an event query's event, a
//!   sequence's last positive event) carries the first alert inline, as the
//!   fast engine's alerts are written;
//! * every further result completed by the same record (one per value of a
//!   multi-valued join key, as Elasticsearch completes one sequence per key
//!   value) leaves as a standalone alert record (the record plus that
//!   alert), so k results give k alerts;
//! * a result completed later than its last event (a trailing missing-event
//!   stage, released when its maxspan has passed) leaves as a standalone
//!   alert built from the identifying fields of its last event.
//!
//! The alert is [`crate::alert::rule_alert`]'s: `kibana.alert.ancestors` names
//! each event by its id field (`id_field`, default `event.id`; a digest of
//! the event's identifying fields when it has none), and `eql.events` lists
//! every result position in stage order (`"missing": true` for a
//! missing-event stage), with `eql.join_keys` the key values.

use crate::alert::annotate::{format_id, AnnotationStyle, RuleParts};
use crate::format::merge::merge;
use crate::engine::detector::{queue, RecordError, StandaloneAlert, Stats};
use crate::eql::{Engine, EngineOptions, Match, TypeMap};
use crate::eql::eval::{ReadSlots, Source};
use crate::format::event::{ExtractError, FieldTable, Fields};
use crate::engine::exceptions::Exceptions;
use crate::config::rule::Rule;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, VecDeque};
use std::hash::{Hash, Hasher};

/// Bytes counted per held event beyond its record (for `max_state_bytes`).
const HELD_OVERHEAD: usize = 64;

/// A record held for lateness: its bytes, and whether they are MessagePack.
type HeldRecord = (Box<[u8]>, bool);

/// The generic engine's part of a detector.
#[derive(Debug)]
pub struct GenericRun {
    engine: Engine,
    /// The strings the rule requires (see [`crate::engine::pack`]): a record
    /// holding none of them is not read at all.
    index: crate::engine::pack::RuleIndex,
    parts: RuleParts,
    meta: crate::config::rule::RuleMeta,
    style: AnnotationStyle,
    id_field: String,
    is_sequence: bool,
    is_sample: bool,
    ordinal: u64,
    lateness_ms: i64,
    max_held: usize,
    max_held_bytes: usize,
    held: BTreeMap<(i64, u64), HeldRecord>,
    held_bytes: usize,
    max_seen: Option<i64>,
    matches: Vec<Match>,
    out: Vec<u8>,
    /// What a record's tree must hold for this rule: the fields its query
    /// reads and its alert carries ([`crate::engine::pruned`]).
    tree_paths: crate::engine::pruned::TreePaths,
    /// Where the paths read and carried are in a rule pack's read
    /// ([`GenericRun::bind_read`]).
    read_slots: Option<ReadSlots>,
}

/// Settings the generic run takes from the config.
#[derive(Debug, Clone)]
pub struct GenericSettings {
    pub types: TypeMap,
    pub id_field: String,
    pub sample_window_ms: Option<u64>,
    pub max_partials: usize,
    pub maxspan_ms: Option<u64>,
    pub lateness_ms: u64,
    pub max_held: usize,
    pub max_state_bytes: usize,
    pub style: AnnotationStyle,
    /// `prefilter`: pass records that hold none of the rule's strings unread.
    pub prefilter: bool,
}

impl GenericRun {
    /// `rule` must be a generic rule ([`Rule::generic_query`]); the query was
    /// checked when the rule loaded, and is compiled again here with the
    /// config's types.
    pub fn new(rule: &Rule, s: GenericSettings) -> Result<GenericRun, crate::eql::RuleError> {
        let query = match rule.generic_query() {
            Some(q) => q.clone(),
            None => crate::eql::parse(rule.query_text(), crate::eql::ParseLimits::default())?,
        };
        let (is_sequence, is_sample) = match &query {
            crate::eql::Query::Sequence(_) => (true, false),
            crate::eql::Query::Sample(_) => (false, true),
            crate::eql::Query::Event(_) => (false, false),
        };
        let mut query = query;
        if let (crate::eql::Query::Sequence(seq), Some(ms)) = (&mut query, s.maxspan_ms) {
            seq.maxspan_ms = Some(ms);
        }
        let mut carry: Vec<String> = vec![s.id_field.clone()];
        for f in crate::alert::rule_alert::carried_fields() {
            if !carry.iter().any(|c| c == f) {
                carry.push(f.to_string());
            }
        }
        let opts = EngineOptions {
            types: s.types,
            timestamp_field: "@timestamp".into(),
            sample_window_ms: s.sample_window_ms.or(rule.meta().look_back_ms),
            max_partials: s.max_partials,
            carry_fields: Vec::new(),
            mapping_complete: false,
        };
        let index = crate::engine::pack::RuleIndex::new(std::slice::from_ref(rule), &opts.types, s.prefilter);
        let mut engine = Engine::from_ast(&query, rule.query_text(), opts)?;
        // The fields the query reads are carried too.
        for f in engine.fields() {
            if !carry.contains(f) {
                carry.push(f.clone());
            }
        }
        let tree_paths = crate::engine::pruned::TreePaths::new(carry.iter().map(String::as_str).chain(["@timestamp"]));
        engine.set_carry_fields(carry);
        Ok(GenericRun {
            tree_paths,
            read_slots: None,
            engine,
            index,
            parts: if rule.writes_apt_alert() { RuleParts::new(rule.meta()) } else { RuleParts::generic(rule.meta()) },
            meta: rule.meta().clone(),
            style: s.style,
            id_field: s.id_field,
            is_sequence,
            is_sample,
            ordinal: 0,
            lateness_ms: s.lateness_ms.min(i64::MAX as u64) as i64,
            max_held: s.max_held,
            max_held_bytes: s.max_state_bytes,
            held: BTreeMap::new(),
            held_bytes: 0,
            max_seen: None,
            matches: Vec::new(),
            out: Vec::new(),
        })
    }

    /// The paths a record's tree must hold for this rule (see
    /// [`crate::engine::pruned`]).
    pub fn tree_paths(&self) -> &[String] {
        self.tree_paths.paths()
    }

    /// See [`Engine::by_fields`].
    pub fn by_fields(&self) -> Option<Vec<String>> {
        self.engine.by_fields()
    }

    /// See [`Engine::nothing_under`].
    pub fn nothing_under(&self, by: &[&str]) -> bool {
        self.engine.nothing_under(by)
    }

    /// Partial sequences (and held events) now kept.
    pub fn pending(&self) -> u64 {
        self.engine.state_len() as u64
    }

    /// See [`crate::Detector::write_signal`].
    pub fn write_signal(&mut self) {
        self.style.signal = true;
    }

    /// See [`Engine::set_max_partials`].
    pub fn set_max_partials(&mut self, n: usize) {
        self.engine.set_max_partials(n);
    }

    pub fn held(&self) -> u64 {
        self.held.len() as u64
    }

    pub fn state_bytes(&self) -> usize {
        self.held_bytes + self.engine.state_len() * 256
    }

    pub fn engine_stats(&self) -> crate::eql::EngineStats {
        *self.engine.stats()
    }

    /// The latest event time the engine has seen.
    pub fn watermark(&self) -> Option<i64> {
        self.max_seen
    }

    /// One record (`parsed`: its tree, when the caller has read it already,
    /// as a rule pack does once for all its rules). `Ok(Some(bytes))`:
    /// forward these bytes (the record with its alert) instead.
    #[allow(clippy::too_many_arguments)]
    pub fn process<'o>(
        &'o mut self,
        record: &[u8],
        msgpack: bool,
        parsed: Option<&Result<Value, ExtractError>>,
        stats: &mut Stats,
        exceptions: &mut Exceptions,
        table: &FieldTable,
        alerts: &mut VecDeque<StandaloneAlert>,
    ) -> Result<Option<&'o [u8]>, RecordError> {
        if parsed.is_none() && !self.index.may_match(record, !msgpack) {
            return Ok(None);
        }
        let owned;
        let parsed = match parsed {
            Some(p) => p,
            None => {
                owned = crate::engine::pruned::read_pruned(record, msgpack, &self.tree_paths);
                &owned
            }
        };
        let event = match parsed {
            Ok(v) => v,
            Err(e) => {
                let (c, r) = match *e {
                    ExtractError::InvalidJson => (&mut stats.invalid_json, RecordError::InvalidJson),
                    ExtractError::InvalidMsgpack => (&mut stats.invalid_msgpack, RecordError::InvalidMsgpack),
                    ExtractError::NotAnObject => (&mut stats.not_an_object, RecordError::NotAnObject),
                    ExtractError::TooDeep => (&mut stats.too_deep, RecordError::TooDeep),
                };
                *c += 1;
                return Err(r);
            }
        };
        if excluded(record, msgpack, exceptions, table, stats) {
            return Ok(None);
        }
        if self.lateness_ms > 0 && self.is_sequence {
            let t = event_time(event);
            let Some(t) = t else {
                // No time: it cannot be ordered; the engine ignores it too.
                self.push(Source::Tree(event), record, msgpack, false, stats, alerts);
                return Ok(None);
            };
            if self.max_seen.is_some_and(|m| t < m.saturating_sub(self.lateness_ms)) {
                stats.late += 1;
                return Ok(None);
            }
            self.max_seen = Some(self.max_seen.map_or(t, |m| m.max(t)));
            self.ordinal += 1;
            self.held_bytes += record.len() + HELD_OVERHEAD;
            self.held.insert((t, self.ordinal), (record.into(), msgpack));
            let ready = self.max_seen.unwrap_or(t).saturating_sub(self.lateness_ms);
            while let Some((&(tr, seq), _)) = self.held.iter().next() {
                let forced = self.held.len() > self.max_held || self.held_bytes > self.max_held_bytes;
                if tr > ready && !forced {
                    break;
                }
                if forced && tr > ready {
                    stats.held_forced += 1;
                }
                if let Some((bytes, mp)) = self.held.remove(&(tr, seq)) {
                    self.held_bytes -= bytes.len() + HELD_OVERHEAD;
                    if let Ok(ev) = read(&bytes, mp) {
                        self.push(Source::Tree(&ev), &bytes, mp, false, stats, alerts);
                    }
                }
            }
            return Ok(None);
        }
        let inline = self.push(Source::Tree(event), record, msgpack, true, stats, alerts);
        self.inline(inline, record, msgpack, stats)
    }

    /// Whether [`GenericRun::process_read`] may take a record: not while
    /// records are held back for `max_lateness` (a held record is read
    /// again later, from its bytes).
    pub fn takes_read(&self) -> bool {
        self.read_slots.is_some() && !(self.lateness_ms > 0 && self.is_sequence)
    }

    /// Read records' plain scans with `table` from now on
    /// ([`GenericRun::process_read`]), if it holds every path this rule
    /// reads and carries; whether it does.
    pub fn bind_read(&mut self, table: &FieldTable) -> bool {
        self.read_slots = self.engine.read_slots(table);
        self.read_slots.is_some()
    }

    /// [`GenericRun::process`] for a record (`msgpack`: a MessagePack
    /// body, else JSON) that a tree surely reads whole, given its plain
    /// read `read` with the table of [`GenericRun::bind_read`] (see
    /// [`Source::Read`]); only when [`GenericRun::takes_read`]. The same
    /// outcome as from the record's tree.
    #[allow(clippy::too_many_arguments)]
    pub fn process_read<'o>(
        &'o mut self,
        record: &[u8],
        msgpack: bool,
        read: &Fields,
        stats: &mut Stats,
        exceptions: &mut Exceptions,
        table: &FieldTable,
        alerts: &mut VecDeque<StandaloneAlert>,
    ) -> Result<Option<&'o [u8]>, RecordError> {
        debug_assert!(self.takes_read());
        if excluded(record, msgpack, exceptions, table, stats) {
            return Ok(None);
        }
        let Some(at) = self.read_slots.take() else { return Ok(None) };
        let inline = self.push(Source::Read(read, &at), record, msgpack, true, stats, alerts);
        self.read_slots = Some(at);
        self.inline(inline, record, msgpack, stats)
    }

    /// The record annotated with `inline`, if any.
    fn inline(&mut self, inline: Option<Map<String, Value>>, record: &[u8], msgpack: bool, stats: &mut Stats) -> Result<Option<&[u8]>, RecordError> {
        match inline {
            Some(alert) => {
                self.out.clear();
                let merged = if msgpack {
                    crate::format::msgpack::merge(record, alert, &mut self.out)
                } else {
                    merge(record, alert, &mut self.out)
                };
                match merged {
                    Ok(()) => {
                        stats.annotated += 1;
                        Ok(Some(&self.out))
                    }
                    Err(_) => {
                        stats.annotate_failed += 1;
                        Err(RecordError::AnnotateFailed)
                    }
                }
            }
            None => Ok(None),
        }
    }

    /// End of stream: release held events and results waiting for a
    /// trailing missing-event stage.
    pub fn finish(&mut self, stats: &mut Stats, alerts: &mut VecDeque<StandaloneAlert>) -> u64 {
        let held = std::mem::take(&mut self.held);
        self.held_bytes = 0;
        let n = held.len() as u64;
        for (_, (bytes, mp)) in held {
            if let Ok(ev) = read(&bytes, mp) {
                self.push(Source::Tree(&ev), &bytes, mp, false, stats, alerts);
            }
        }
        let mut done = Vec::new();
        self.engine.finish(&mut done);
        for m in done {
            self.standalone_from_carried(&m, stats, alerts);
        }
        n
    }

    /// Push one event; returns the inline alert when `inline` and the event
    /// completes a result; every other result becomes a standalone alert.
    fn push(
        &mut self,
        event: Source<'_>,
        record: &[u8],
        msgpack: bool,
        inline: bool,
        stats: &mut Stats,
        alerts: &mut VecDeque<StandaloneAlert>,
    ) -> Option<Map<String, Value>> {
        self.ordinal += 1;
        let ord = self.ordinal;
        let before = *self.engine.stats();
        self.matches.clear();
        let mut matches = std::mem::take(&mut self.matches);
        self.engine.push_from(ord, event, &mut matches);
        let after = self.engine.stats();
        stats.stage_matches[0] += after.stage_matches - before.stage_matches;
        stats.bad_timestamp += after.no_timestamp - before.no_timestamp;
        stats.invalid_ip += after.malformed_values - before.malformed_values;
        stats.rejected_by_maxspan += after.expired - before.expired;
        stats.evicted_by_cap += after.evicted - before.evicted;
        stats.key_combinations_truncated += after.keys_truncated - before.keys_truncated;
        let mut first = None;
        for m in matches.drain(..) {
            stats.sequences_completed += 1;
            let completes_here = m.events.iter().rev().find_map(|e| *e) == Some(ord);
            if !completes_here {
                self.standalone_from_carried(&m, stats, alerts);
                continue;
            }
            let alert = self.alert(&m, !msgpack);
            if inline && first.is_none() {
                first = Some(alert);
                continue;
            }
            let mut out = Vec::new();
            let merged = if msgpack { crate::format::msgpack::merge(record, alert, &mut out) } else { merge(record, alert, &mut out) };
            match merged {
                Ok(()) => queue(alerts, stats, StandaloneAlert { msgpack, bytes: out }),
                Err(_) => stats.annotate_failed += 1,
            }
        }
        self.matches = matches;
        first
    }

    /// A standalone alert for a result whose completing record has gone:
    /// the identifying fields of its last event plus the alert.
    fn standalone_from_carried(&mut self, m: &Match, stats: &mut Stats, alerts: &mut VecDeque<StandaloneAlert>) {
        let last = m.carried.iter().rev().find_map(|c| c.clone());
        let mut body = Map::new();
        if let Some(c) = last {
            for (k, v) in c.iter() {
                crate::alert::carried::insert_path(&mut body, k, v.clone());
            }
        }
        let alert = self.alert(m, true);
        let base = serde_json::to_vec(&Value::Object(body)).unwrap_or_else(|_| b"{}".to_vec());
        let mut out = Vec::new();
        if merge(&base, alert, &mut out).is_ok() {
            queue(alerts, stats, StandaloneAlert { msgpack: false, bytes: out });
        } else {
            stats.annotate_failed += 1;
        }
    }

    fn event_id(&self, carried: &Map<String, Value>) -> String {
        match carried.get(&self.id_field) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                let text = serde_json::to_string(carried).unwrap_or_default();
                format_id(digest128(&[&text]))
            }
        }
    }

    /// The alert roots for one result ([`crate::alert::rule_alert`]);
    /// `raw`: going to a JSON record (see [`RuleAlert::raw`]).
    fn alert(&self, m: &Match, raw: bool) -> Map<String, Value> {
        use crate::alert::rule_alert::{RuleAlert, Shape};
        let mut docs: Vec<Option<Map<String, Value>>> = Vec::with_capacity(m.events.len());
        let mut ids: Vec<String> = Vec::new();
        let mut last_carried: Option<&Map<String, Value>> = None;
        for (i, e) in m.events.iter().enumerate() {
            match (e, m.carried.get(i).and_then(|c| c.as_deref())) {
                (Some(_), Some(c)) => {
                    ids.push(self.event_id(c));
                    let mut nested = Map::new();
                    for (k, v) in c {
                        let v = match v {
                            Value::Array(_) => v.clone(),
                            _ if crate::alert::rule_alert::is_array_field(k) => Value::Array(vec![v.clone()]),
                            _ => v.clone(),
                        };
                        crate::alert::carried::insert_path(&mut nested, k, v);
                    }
                    docs.push(Some(nested));
                    last_carried = Some(c);
                }
                (Some(_), None) => docs.push(Some(Map::new())),
                (None, _) => docs.push(None),
            }
        }
        let times: Vec<i64> = m.times.iter().flatten().copied().collect();
        let span = match (times.iter().min(), times.iter().max()) {
            (Some(a), Some(b)) => b - a,
            _ => 0,
        };
        let mut key_parts: Vec<&str> = vec![&self.meta.rule_id];
        key_parts.extend(ids.iter().map(String::as_str));
        let alert_id = format_id(digest128(&key_parts));
        let group_id = format_id(digest128(&[&alert_id, "group"]));
        let original_time = last_carried
            .and_then(|c| c.get("@timestamp"))
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_default();
        let present: Vec<&Map<String, Value>> = docs.iter().flatten().collect();
        let reason = crate::alert::rule_alert::reason(&self.meta, &present);
        let shape = if self.is_sequence {
            Shape::Sequence
        } else if self.is_sample {
            Shape::Sample
        } else {
            Shape::Event
        };
        RuleAlert {
            meta: &self.meta,
            parts: &self.parts,
            style: &self.style,
            shape,
            events: docs,
            ids,
            join_keys: m.keys.clone(),
            span_ms: span,
            alert_id,
            group_id,
            original_time,
            reason,
            raw,
        }
        .into_roots()
    }
}

/// A stable 128-bit digest (two SipHash runs with fixed keys).
fn digest128(parts: &[&str]) -> u128 {
    let mut out = 0u128;
    for salt in 0..2u8 {
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new_with_keys(0x6170_742d_6e65_7463 ^ salt as u64, 0x6571_6c2d_616c_7274);
        for p in parts {
            p.hash(&mut h);
        }
        out = (out << 64) | h.finish() as u128;
    }
    out
}

fn event_time(event: &Value) -> Option<i64> {
    let mut raw = Vec::new();
    crate::eql::eval::collect(event, "@timestamp", &mut raw);
    match raw.first()? {
        Value::String(s) => crate::eql::value::parse_date(s),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// Whether an exception hides `record` (read with `table`, the rule's
/// fields); counted.
fn excluded(record: &[u8], msgpack: bool, exceptions: &mut Exceptions, table: &FieldTable, stats: &mut Stats) -> bool {
    if exceptions.is_empty() {
        return false;
    }
    let mut f = Fields::new();
    let read = if msgpack { crate::format::msgpack::extract(table, record, &mut f) } else { table.extract(record, &mut f) };
    let hidden = read.is_ok() && exceptions.exclude(&f);
    stats.excluded += hidden as u64;
    hidden
}

/// Read a record as a JSON tree.
pub fn read(record: &[u8], msgpack: bool) -> Result<Value, ExtractError> {
    let v = if msgpack {
        let mut pos = 0;
        let v = mp_value(record, &mut pos, 0, Build::All)?;
        if pos != record.len() {
            return Err(ExtractError::InvalidMsgpack);
        }
        v
    } else {
        match serde_json::from_slice::<Value>(record) {
            Ok(v) => v,
            Err(e) if e.to_string().contains("recursion limit") => return Err(ExtractError::TooDeep),
            Err(_) => return Err(ExtractError::InvalidJson),
        }
    };
    if !v.is_object() {
        return Err(ExtractError::NotAnObject);
    }
    Ok(v)
}

/// Deepest MessagePack nesting read.
const MP_MAX_DEPTH: usize = 127;

/// What [`mp_value`] builds of a value: all of it, only the members on
/// these paths below trie node `.1` ([`crate::engine::pruned`]), or
/// nothing (the value is checked as if built, and `null` returned).
#[derive(Clone, Copy)]
pub(crate) enum Build<'p> {
    All,
    Under(&'p crate::engine::pruned::TreePaths, u32),
    Nothing,
}

pub(crate) fn mp_value(b: &[u8], pos: &mut usize, depth: usize, build: Build) -> Result<Value, ExtractError> {
    use ExtractError::InvalidMsgpack as Bad;
    if depth > MP_MAX_DEPTH {
        return Err(ExtractError::TooDeep);
    }
    let take = |pos: &mut usize, n: usize| -> Result<&[u8], ExtractError> {
        let s = b.get(*pos..pos.checked_add(n).ok_or(Bad)?).ok_or(Bad)?;
        *pos += n;
        Ok(s)
    };
    let be = |s: &[u8]| s.iter().fold(0u64, |a, &x| a << 8 | x as u64);
    let tag = *take(pos, 1)?.first().ok_or(Bad)?;
    let nothing = matches!(build, Build::Nothing);
    let str_of = |pos: &mut usize, n: usize| -> Result<Value, ExtractError> {
        let s = std::str::from_utf8(take(pos, n)?).map_err(|_| Bad)?;
        Ok(if nothing { Value::Null } else { Value::String(s.to_string()) })
    };
    let arr = |pos: &mut usize, n: usize| -> Result<Value, ExtractError> {
        let mut v = Vec::with_capacity(if nothing { 0 } else { n.min(1024) });
        for _ in 0..n {
            let x = mp_value(b, pos, depth + 1, build)?;
            if !nothing {
                v.push(x);
            }
        }
        Ok(if nothing { Value::Null } else { Value::Array(v) })
    };
    let map = |pos: &mut usize, n: usize| -> Result<Value, ExtractError> {
        let mut m = Map::new();
        for _ in 0..n {
            let k = mp_key(b, pos, depth + 1)?;
            let child = match build {
                Build::All => Build::All,
                Build::Under(paths, node) => paths.walk(node, k).map_or(Build::Nothing, |c| Build::Under(paths, c)),
                Build::Nothing => Build::Nothing,
            };
            let v = mp_value(b, pos, depth + 1, child)?;
            if !matches!(child, Build::Nothing) {
                m.insert(k.to_string(), v);
            }
        }
        Ok(if nothing { Value::Null } else { Value::Object(m) })
    };
    Ok(match tag {
        0x00..=0x7f => Value::from(tag as u64),
        0x80..=0x8f => map(pos, (tag & 0x0f) as usize)?,
        0x90..=0x9f => arr(pos, (tag & 0x0f) as usize)?,
        0xa0..=0xbf => str_of(pos, (tag & 0x1f) as usize)?,
        0xc0 => Value::Null,
        0xc2 => Value::Bool(false),
        0xc3 => Value::Bool(true),
        0xc4..=0xc6 => {
            let n = be(take(pos, 1 << (tag - 0xc4))?) as usize;
            take(pos, n)?;
            Value::Null
        }
        0xc7..=0xc9 => {
            let n = be(take(pos, 1 << (tag - 0xc7))?) as usize;
            take(pos, n + 1)?;
            Value::Null
        }
        0xca => Value::from(f32::from_bits(be(take(pos, 4)?) as u32) as f64),
        0xcb => Value::from(f64::from_bits(be(take(pos, 8)?))),
        0xcc..=0xcf => Value::from(be(take(pos, 1 << (tag - 0xcc))?)),
        0xd0 => Value::from(take(pos, 1)?[0] as i8 as i64),
        0xd1 => Value::from(be(take(pos, 2)?) as u16 as i16 as i64),
        0xd2 => Value::from(be(take(pos, 4)?) as u32 as i32 as i64),
        0xd3 => Value::from(be(take(pos, 8)?) as i64),
        0xd4..=0xd8 => {
            take(pos, 1 + (1 << (tag - 0xd4)))?;
            Value::Null
        }
        0xd9..=0xdb => {
            let n = be(take(pos, 1 << (tag - 0xd9))?) as usize;
            str_of(pos, n)?
        }
        0xdc | 0xdd => {
            let n = be(take(pos, if tag == 0xdc { 2 } else { 4 })?) as usize;
            arr(pos, n)?
        }
        0xde | 0xdf => {
            let n = be(take(pos, if tag == 0xde { 2 } else { 4 })?) as usize;
            map(pos, n)?
        }
        0xe0..=0xff => Value::from(tag as i8 as i64),
        0xc1 => return Err(Bad),
    })
}

/// Whether [`mp_value`] reads `b` whole as a map (a record body), with any
/// [`Build`]: the check a rule pack makes before its generic rules read a
/// body from the pack's read rather than from a tree (the same walk on the
/// MessagePack cursor's tokens, building nothing).
pub(crate) fn mp_tree_reads(b: &[u8]) -> bool {
    crate::format::msgpack::tree_readable(b, MP_MAX_DEPTH)
}

/// A map key, which must be a string, borrowed; a key of any other kind is
/// read through (its own errors first) and refused.
fn mp_key<'b>(b: &'b [u8], pos: &mut usize, depth: usize) -> Result<&'b str, ExtractError> {
    use ExtractError::InvalidMsgpack as Bad;
    if depth > MP_MAX_DEPTH {
        return Err(ExtractError::TooDeep);
    }
    let tag = *b.get(*pos).ok_or(Bad)?;
    let (head, n) = match tag {
        0xa0..=0xbf => (1, (tag & 0x1f) as usize),
        0xd9..=0xdb => {
            let w = 1usize << (tag - 0xd9);
            let len = b.get(*pos + 1..*pos + 1 + w).ok_or(Bad)?;
            (1 + w, len.iter().fold(0usize, |a, &x| a << 8 | x as usize))
        }
        _ => {
            mp_value(b, pos, depth, Build::Nothing)?;
            return Err(Bad);
        }
    };
    let start = *pos + head;
    let s = b.get(start..start.checked_add(n).ok_or(Bad)?).ok_or(Bad)?;
    let s = std::str::from_utf8(s).map_err(|_| Bad)?;
    *pos = start + n;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msgpack_reads_as_json_does() {
        // {"a": [1, -2, 3.5, "x", null, true], "e": 300}
        let mut buf = vec![0x82, 0xa1, b'a', 0x96, 0x01, 0xfe, 0xcb];
        buf.extend_from_slice(&3.5f64.to_bits().to_be_bytes());
        buf.extend_from_slice(&[0xa1, b'x', 0xc0, 0xc3, 0xa1, b'e', 0xcd, 0x01, 0x2c]);
        let v = serde_json::json!({"a": [1, -2, 3.5, "x", null, true], "e": 300});
        assert_eq!(read(&buf, true).unwrap(), v);
        assert_eq!(read(&buf[..buf.len() - 1], true), Err(ExtractError::InvalidMsgpack));
        assert_eq!(read(&[0x91, 0x01], true), Err(ExtractError::NotAnObject));
        let mut deep = vec![0x91; 200];
        deep.insert(0, 0x81);
        deep.insert(1, 0xa1);
        deep.insert(2, b'k');
        assert_eq!(read(&deep, true), Err(ExtractError::TooDeep));
    }

    /// [`mp_tree_reads`] gives [`mp_value`]'s verdict on a body: on bodies
    /// of every format, damaged at random, and nested to either side of
    /// the limit (containers full or empty, keys of every kind).
    #[test]
    fn the_tree_check_agrees_with_the_decoder() {
        let reference = |b: &[u8]| {
            let mut pos = 0;
            matches!(b.first(), Some(0x80..=0x8f | 0xde | 0xdf)) && mp_value(b, &mut pos, 0, Build::Nothing).is_ok() && pos == b.len()
        };
        let mut body = vec![0x8f];
        let members: [&[u8]; 15] = [
            &[0xa1, b'a', 0x96, 0x01, 0xfe, 0xc0, 0xc2, 0xc3, 0xa2, 0xc3, 0xa9],
            &[0xd9, 0x02, b'b', b'c', 0xcb, 0x40, 0x0c, 0, 0, 0, 0, 0, 0],
            &[0xda, 0x00, 0x01, b'd', 0xca, 0x40, 0x20, 0, 0],
            &[0xdb, 0, 0, 0, 1, b'e', 0xcc, 0xff],
            &[0xa1, b'f', 0xcd, 0x01, 0x02],
            &[0xa1, b'g', 0xce, 0, 0, 0, 1],
            &[0xa1, b'h', 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            &[0xa1, b'i', 0xd0, 0x80, 0xa1, b'j', 0xd1, 0, 1],
            &[0xa1, b'k', 0xd2, 0, 0, 0, 1, 0xa1, b'l', 0xd3, 0, 0, 0, 0, 0, 0, 0, 1],
            &[0xa1, b'm', 0xc4, 0x02, 0xff, 0xfe, 0xa1, b'n', 0xc5, 0, 1, 0xff],
            &[0xa1, b'o', 0xc6, 0, 0, 0, 1, 0xff, 0xa1, b'p', 0xc7, 1, 5, 0xff],
            &[0xa1, b'q', 0xc8, 0, 1, 5, 0xff, 0xa1, b'r', 0xc9, 0, 0, 0, 1, 5, 0xff],
            &[0xa1, b's', 0xd4, 1, 0, 0xa1, b't', 0xd5, 1, 0, 0, 0xa1, b'u', 0xd6, 1, 0, 0, 0, 0],
            &[0xa1, b'v', 0xd7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xa1, b'w', 0xd8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0xa1, b'x', 0xdc, 0, 2, 0x80, 0x90, 0xa1, b'y', 0xdd, 0, 0, 0, 1, 0xde, 0, 1, 0xa1, b'z', 0xdf, 0, 0, 0, 0],
        ];
        for m in members {
            body.extend_from_slice(m);
        }
        // (Some lines above hold two or three members: 24 in all, as map16.)
        body[0] = 0xde;
        body.splice(1..1, [0, 24]);
        assert!(mp_tree_reads(&body) && reference(&body));
        let mut rnd = crate::xorshift(0x7ee_c4ec);
        let mut agree = [0u32; 2];
        for _ in 0..20_000 {
            let mut b = body.clone();
            crate::mutate(&mut b, &mut rnd);
            let want = reference(&b);
            assert_eq!(mp_tree_reads(&b), want, "{b:02x?}");
            agree[want as usize] += 1;
        }
        assert!(agree[0] > 1000 && agree[1] > 1000, "{agree:?}");
        // Nesting: a key then `depth` arrays (or maps keyed by every kind
        // of key) around an empty container or a scalar.
        for depth in 120..132 {
            for (open, inner) in [(vec![0x91], vec![0x90]), (vec![0x91], vec![0x01]), (vec![0x81, 0xa1, b'k'], vec![0x80]), (vec![0x81, 0x01], vec![0x80])] {
                let mut b = vec![0x81, 0xa1, b'k'];
                for _ in 0..depth {
                    b.extend_from_slice(&open);
                }
                b.extend_from_slice(&inner);
                assert_eq!(mp_tree_reads(&b), reference(&b), "depth {depth}, {open:02x?} {inner:02x?}");
            }
        }
        // Edges, and keys of every kind but a string (a map, an array, a
        // bin, a string that is not UTF-8, nil).
        for b in [
            &[][..],
            &[0x80],
            &[0x80, 0x00],
            &[0x90],
            &[0x81, 0xa1],
            &[0x81, 0xc1, 0x01],
            &[0xdf, 0xff, 0xff, 0xff, 0xff],
            &[0x81, 0x80, 0x01],
            &[0x81, 0x90, 0x01],
            &[0x81, 0xc4, 0x01, b'k', 0x01],
            &[0x81, 0xa1, 0xff, 0x01],
            &[0x81, 0xc0, 0x01],
            &[0x81, 0xa1, b'k', 0x81, 0x81, 0xa1, b'j', 0x01, 0x01],
        ] {
            assert_eq!(mp_tree_reads(b), reference(b), "{b:02x?}");
        }
    }

    #[test]
    fn digests_are_stable() {
        assert_eq!(digest128(&["a", "b"]), digest128(&["a", "b"]));
        assert_ne!(digest128(&["a", "b"]), digest128(&["ab"]));
    }
}
