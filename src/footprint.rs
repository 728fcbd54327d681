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
//!   (see `aptnc_rule_footprint` in the C ABI).
//!
//! Both derive from the fast engine's [`CompiledQuery`] (the same knowledge
//! as the byte prefilter, [`crate::prefilter`]); for a rule on the generic
//! engine the footprint has the field paths and no required values.

use crate::compile::{CompiledQuery, Pred, Test};
use crate::config::Config;
use crate::event::{FieldTable, FieldsBuf, Slot};
use crate::prefilter::Prefilter;
use crate::rule::Rule;
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
    prefilter: Prefilter,
    keys: FieldTable,
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
        Ok(Partitioner {
            prefilter: Prefilter::new(q, config.prefilter),
            keys: q.fields.subset(&slots),
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
        let read = self.keys.scan(record, &mut f).is_ok() || self.keys.extract(record, &mut f).is_ok();
        let mut h = std::hash::DefaultHasher::new();
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

/// The fields a rule reads and the values it requires.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Every field path the detector reads from a record (the rule's, the
    /// join keys, `@timestamp`, the fields an alert carries, the exception
    /// items'), in a fixed order.
    pub fields: Vec<String>,
    /// Per stage, its required tests: `(field, literals)` such that a record
    /// can match the stage only if that field holds (one of its values
    /// equal to) one of the literals, exactly and case-sensitively. A stage
    /// matches only if EVERY test of it holds. Empty when some stage has no
    /// such test, or the rule runs on the generic engine: then no record is
    /// ruled out by its values.
    pub stages: Vec<Vec<(String, Vec<String>)>>,
}

impl Footprint {
    /// The footprint of a detector's rule: `table` is the detector's field
    /// table (every path it reads), `q` its compiled query, `generic` true
    /// when the generic engine runs the rule (`generic_fields` then lists
    /// what that engine reads).
    pub fn new(table: &FieldTable, q: &CompiledQuery, generic: Option<Vec<String>>) -> Footprint {
        let mut fields: Vec<String> = (0..table.len()).map(|s| table.name(s as Slot).to_string()).collect();
        if let Some(g) = generic {
            for f in g {
                if !fields.contains(&f) {
                    fields.push(f);
                }
            }
            return Footprint { fields, stages: Vec::new() };
        }
        let mut stages = Vec::new();
        for stage in &q.stages {
            let mut tests = Vec::new();
            if let Some(cat) = &stage.category {
                tests.push((q.fields.name(q.category_slot).to_string(), vec![cat.clone()]));
            }
            required(&stage.predicate, &q.fields, &mut tests);
            if tests.is_empty() {
                return Footprint { fields, stages: Vec::new() };
            }
            stages.push(tests);
        }
        Footprint { fields, stages }
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
    use crate::Detector;

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
        let fp = Footprint::new(det.field_table(), det.rule().compiled(), None);
        assert!(fp.fields.iter().any(|f| f == "host.id"));
        assert!(fp.fields.iter().any(|f| f == "@timestamp"));
        assert_eq!(fp.stages.len(), 2);
        assert!(fp.stages[0].contains(&("process.parent.name".to_string(), vec!["apt".to_string()])));
        assert!(fp.stages[1].contains(&("event.category".to_string(), vec!["network".to_string()])));
    }
}
