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
//! Both derive from the fast engine's [`crate::compile::CompiledQuery`] (the same knowledge
//! as the byte prefilter, [`crate::prefilter`]); for a rule on the generic
//! engine the footprint has no required values and asks for whole records.

use crate::compile::{pred_slots, Pred, Test};
use crate::config::Config;
use crate::event::{FieldTable, FieldsBuf, Slot};
use crate::prefilter::Prefilter;
use crate::rule::Rule;
use crate::Detector;
use std::hash::{Hash, Hasher};

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
    values: Vec<String>,
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
            values: Vec::new(),
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
        if record.len() > self.max_record_bytes {
            return Route::Any;
        }
        if self.prefilter.rules_out_json(record) {
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
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let mut route = Route::Any;
        if read {
            route = Route::Worker(0);
            for &slot in &self.slots {
                self.values.clear();
                self.values.extend(f.get(slot).filter_map(|v| v.keyword()).map(|k| k.into_owned()));
                self.values.sort_unstable();
                self.values.dedup();
                match self.values.len() {
                    0 => {
                        route = Route::Any;
                        break;
                    }
                    1 => {}
                    _ => self.multi_valued += 1,
                }
                self.values[0].hash(&mut h);
            }
        }
        self.buf.put_back(f);
        match route {
            Route::Worker(_) => Route::Worker((h.finish() % self.n as u64) as usize),
            r => r,
        }
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
    /// alerts), or `max_lateness` is above 0 (held records come back whole
    /// as standalone alerts).
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
        let whole_record =
            det.rule().generic_query().is_some() || config.id_field != "event.id" || config.max_lateness_ms > 0;
        let alert_roots: Vec<String> = match config.annotation_prefix.split('.').next() {
            Some(first) if !config.annotation_prefix.is_empty() => vec![first.to_string()],
            _ => ["rule", "threat"]
                .into_iter()
                .chain(config.kibana_fields.then_some("kibana"))
                .chain(["apt_netcon"])
                .map(String::from)
                .collect(),
        };
        if det.rule().generic_query().is_some() {
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

    #[test]
    fn refuses_what_it_cannot_split() {
        let cfg = Config::default();
        let r = Rule::from_eql(r#"network where destination.port == 443"#, crate::rule::meta_for_file("t")).unwrap();
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
}
