//! A record's fields through the rule: classify by stage, admit by time (held
//! back for lateness, or late, or ahead of the clock), exceptions, then the
//! sequence engine (the partial-sequence state) and the events it keeps.

use super::alert::is_array_field;
use super::*;

impl Detector {
    /// The core: run the rule on one record's fields (read with
    /// [`Detector::field_table`]) and return the alert fields to write into it
    /// when it completes a sequence. Counts everything but `records`,
    /// `annotated` and read errors, which belong to the caller. Without the
    /// record's bytes nothing can be held back, so this evaluates at once
    /// even with `max_lateness` > 0; use [`Detector::process`] for that.
    pub fn evaluate(&mut self, fields: &Fields) -> Result<Option<Map<String, Value>>, RecordError> {
        self.evaluate_rec(fields, None, None)
    }

    /// `known`: the stages `fields` match, when found already.
    pub(super) fn evaluate_rec(&mut self, fields: &Fields, rec: Option<Rec>, known: Option<u32>) -> Result<Option<Map<String, Value>>, RecordError> {
        let Some((matched, t)) = self.classify(fields, known)? else {
            return Ok(None);
        };
        // (Roots the caller merges into a JSON record at once.)
        let raw = matches!(rec, Some(Rec { msgpack: false, .. }));
        let rec = match rec {
            Some(r) if self.lateness_ms > 0 && self.rule.compiled().stages.len() > 1 => r,
            _ => {
                self.state.observe(t);
                let seq = self.engine(fields, t, matched);
                let first = seq.map(|seq| self.completed(&seq, fields, raw));
                self.alert_the_others(fields, rec);
                return Ok(first);
            }
        };
        // Held back for lateness.
        let late_by_frontier = self.frontier.is_some_and(|f| t < f);
        let late_by_watermark = self.max_seen.is_some_and(|m| t < m.saturating_sub(self.lateness_ms));
        if late_by_frontier || late_by_watermark {
            self.stats.late += 1;
            return Ok(None);
        }
        self.max_seen = Some(self.max_seen.map_or(t, |m| m.max(t)));
        let host = self.host_of(fields);
        let size = rec.bytes.len() + HELD_OVERHEAD_BYTES;
        // Caps: release the oldest held events early (counted) to make room.
        while self.held.host_count(host) >= self.held_caps.per_host {
            let Some(id) = self.held.host_oldest(host) else { break };
            self.stats.held_forced += 1;
            self.release(id, None);
        }
        while self.held.len() >= self.held_caps.total
            || (!self.held.is_empty() && self.held.bytes() + self.held.entry_bytes() + size > self.held_caps.bytes)
        {
            let Some((_, id)) = self.held.first() else { break };
            self.stats.held_forced += 1;
            self.release(id, None);
        }
        let this = self.held.insert(host, t, size, Held { bytes: rec.bytes.into(), msgpack: rec.msgpack });
        let ready = self.max_seen.unwrap_or(t).saturating_sub(self.lateness_ms);
        let mut inline = None;
        while let Some((tr, id)) = self.held.first() {
            if tr > ready {
                break;
            }
            let current = (id == this).then_some(fields);
            if let Some(alert) = self.release(id, current) {
                inline = Some(alert);
            }
        }
        Ok(inline)
    }

    /// Release a held event to the engine. When it is the record being
    /// evaluated (`current` holds its fields) its alert is returned, to be
    /// written into it; otherwise an alert leaves as a standalone record.
    pub(super) fn release(&mut self, id: Id, current: Option<&Fields>) -> Option<Map<String, Value>> {
        let (t, held) = self.held.remove(id)?;
        self.frontier = Some(self.frontier.map_or(t, |f| f.max(t)));
        // A held copy is read again (it passed the same reader on arrival).
        let mut read = Fields::new();
        let fields = match current {
            Some(f) => f,
            None if held.msgpack => {
                crate::format::msgpack::extract(&self.table, &held.bytes, &mut read).ok()?;
                &read
            }
            None => {
                self.table.extract(&held.bytes, &mut read).ok()?;
                &read
            }
        };
        let matched = stage_bits(self.rule.compiled(), fields);
        self.state.observe(t);
        let seq = self.engine(fields, t, matched)?;
        let alert = self.completed(&seq, fields, false);
        let rec = Rec { bytes: &held.bytes, msgpack: held.msgpack };
        let inline = if current.is_some() {
            Some(alert)
        } else {
            self.alert_on(rec, alert);
            None
        };
        self.alert_the_others(fields, Some(rec));
        inline
    }

    /// A standalone alert: the record `rec` plus `alert`.
    fn alert_on(&mut self, rec: Rec, alert: Map<String, Value>) {
        let mut out = Vec::new();
        let merged = if rec.msgpack { crate::format::msgpack::merge(rec.bytes, alert, &mut out) } else { merge(rec.bytes, alert, &mut out) };
        match merged {
            Ok(()) => queue(&mut self.alerts, &mut self.stats, StandaloneAlert { msgpack: rec.msgpack, bytes: out }),
            Err(_) => self.stats.annotate_failed += 1,
        }
    }

    /// A standalone alert for every sequence the last event completed
    /// beyond the first (one per value of a multi-valued join key, as
    /// Elasticsearch gives one result per value): the completing record
    /// `rec` plus the alert, or, without the record's bytes, its event's
    /// carried fields plus the alert.
    fn alert_the_others(&mut self, fields: &Fields, rec: Option<Rec>) {
        if self.more_completed.is_empty() {
            return;
        }
        for (seq, keys) in std::mem::take(&mut self.more_completed) {
            self.last_keys = keys;
            let alert = self.completed(&seq, fields, false);
            match rec {
                Some(rec) => self.alert_on(rec, alert),
                None => {
                    let body = match seq.events.last().map(|e| e.info.to_json_named(&self.carried_names)) {
                        Some(v @ Value::Object(_)) => serde_json::to_vec(&v).unwrap_or_else(|_| b"{}".to_vec()),
                        _ => b"{}".to_vec(),
                    };
                    self.alert_on(Rec { bytes: &body, msgpack: false }, alert);
                }
            }
        }
    }

    /// A hash of the event's host (the sequence's own `by` fields, e.g.
    /// `host.id`), for per-host caps; 0 when the rule has none.
    pub(super) fn host_of(&self, fields: &Fields) -> u64 {
        use std::hash::{Hash, Hasher as _};
        let q = self.rule.compiled();
        if q.host_keys == 0 {
            return 0;
        }
        let mut h = self.hasher.build_hasher();
        for &slot in q.stages[0].keys.iter().take(q.host_keys) {
            match fields.get(slot).find_map(|v| v.keyword()) {
                Some(k) => k.as_bytes().hash(&mut h),
                None => 0xffu8.hash(&mut h),
            }
        }
        h.finish()
    }

    /// Which stages the event matches and its time, or `None` when it is to
    /// be ignored (no stage, invalid IP, excluded, timestamp in the future).
    /// (`known`: the stages, when found already.)
    pub(super) fn classify(&mut self, fields: &Fields, known: Option<u32>) -> Result<Option<(u32, i64)>, RecordError> {
        let matched = known.unwrap_or_else(|| stage_bits(self.rule.compiled(), fields));
        if matched == 0 {
            return Ok(None);
        }
        let counter = match self.admit(fields) {
            Admit::At(t) => return Ok(Some((matched, t))),
            Admit::NoTime => {
                self.stats.bad_timestamp += 1;
                return Err(RecordError::BadTimestamp);
            }
            Admit::InvalidIp => &mut self.stats.invalid_ip,
            Admit::Excluded => &mut self.stats.excluded,
            Admit::Future => &mut self.stats.future_timestamp,
        };
        *counter += 1;
        Ok(None)
    }

    /// Whether an event that matches a stage takes part, and its time.
    pub(super) fn admit(&mut self, fields: &Fields) -> Admit {
        if !self.rule.compiled().ips_valid(fields) {
            return Admit::InvalidIp;
        }
        // Exceptions work as Kibana's exception filter in the EQL request's
        // `filter`, which Elasticsearch applies to every stage's query: an
        // excluded event is invisible. It starts, replaces, consumes and
        // completes nothing, and does not move the watermark.
        if !self.exceptions.is_empty() && self.exceptions.exclude(fields) {
            return Admit::Excluded;
        }
        let Some(t) = event_time(fields, self.ts_slot) else { return Admit::NoTime };
        if t > now_ms().saturating_add(self.max_future_ms) {
            return Admit::Future;
        }
        Admit::At(t)
    }

    /// The sequence engine: apply one event (matching `matched` stages, at
    /// time `t`, the watermark already advanced) to the state; the first
    /// sequence it completes, if any (the others wait in
    /// `more_completed`).
    pub(super) fn engine(&mut self, fields: &Fields, t: i64, matched: u32) -> Option<Partial> {
        let rule = self.rule.clone();
        let q = rule.compiled();
        let n = q.stages.len();
        // The host (for per-host caps) is needed only to store.
        let mut host: Option<u64> = None;
        // (With each, its join key values, for its alert: none for a
        // single event or the built-in rule's alert.)
        let mut completed: Vec<(Partial, Vec<Option<String>>)> = Vec::new();
        // Later stages first, so an event never pairs with itself.
        for k in (0..n).rev().filter(|&k| matched & 1 << k != 0) {
            self.stats.stage_matches[k.min(3)] += 1;
            let Some((keys, truncated)) = JoinKeys::of(&mut self.key, fields, &q.stages[k].keys) else {
                self.stats.missing_key += 1;
                continue;
            };
            if truncated {
                self.stats.key_combinations_truncated += 1;
            }
            // The event's alert contribution (carried fields, digest) is built
            // only when it is stored or completes a sequence (most stage-2
            // matches find nothing waiting and never need it), and built for
            // each use rather than cloned: an event is nearly always used once.
            if n == 1 {
                completed.push((Partial { events: vec![self.stage_event(fields, t, k)] }, Vec::new()));
                continue;
            }
            for c in 0..keys.len() {
                if k == 0 {
                    let ev = self.stage_event(fields, t, k);
                    keys.encode(&mut self.key, c, 0);
                    let h = *host.get_or_insert_with(|| self.host_of(fields));
                    match self.state.put(&self.key, h, Partial { events: vec![ev] }) {
                        Put::Inserted => {}
                        Put::Replaced => self.stats.replaced += 1,
                        Put::KeptNewer => self.stats.out_of_order += 1,
                        Put::Stale => self.stats.late += 1,
                    }
                    continue;
                }
                keys.encode(&mut self.key, c, k - 1);
                match self.state.take(&self.key, t) {
                    Take::Nothing => {}
                    Take::NotBefore => self.stats.out_of_order += 1,
                    Take::TooLate => self.stats.rejected_by_maxspan += 1,
                    Take::Matched(mut p) => {
                        p.events.push(self.stage_event(fields, t, k));
                        if k == n - 1 {
                            let keys = if rule.writes_apt_alert() { Vec::new() } else { decode_key(&self.key) };
                            completed.push((p, keys));
                        } else {
                            keys.encode(&mut self.key, c, k);
                            let h = *host.get_or_insert_with(|| self.host_of(fields));
                            if self.state.put(&self.key, h, p) == Put::Replaced {
                                self.stats.replaced += 1;
                            }
                        }
                    }
                }
            }
        }
        let mut completed = completed.into_iter();
        let (first, keys) = completed.next()?;
        self.last_keys = keys;
        self.more_completed.extend(completed);
        Some(first)
    }

    /// What this event contributes to an alert.
    pub(super) fn stage_event(&mut self, fields: &Fields, t: i64, stage: usize) -> StageEvent {
        let info = &mut self.carried_builder;
        info.reset();
        for &i in &self.carry_by_stage[stage] {
            let slot = self.carried[i];
            let vals = fields.get(slot).filter(|v| !matches!(v, Scalar::Object));
            let len = vals.clone().count();
            if len > 0 {
                info.push_scalars(i, len > 1 || is_array_field(self.table.name(slot)), len, vals);
            }
        }
        let info = info.finish_copy();
        StageEvent { time: t, digest: digest(fields, t, self.identity_slots, &mut self.digest_order), info }
    }
}
