//! The stage tests on the fields read once for all rules: a fast rule's
//! stage conditions as its engine evaluates them, a generic rule's relaxed
//! soundly to what the fast engine can test.

use super::*;

/// The stage conditions of every rule, on one table of every field any
/// rule reads: a record the index lets through is read once, and each
/// candidate rule's stages are tested on those fields before its detector
/// sees the record. A fast-engine rule's stages are its own compiled
/// stages (the test is the detector's own first step); a generic rule's
/// are a relaxation that any event matching the stage passes: the parts of
/// its condition the fast engine evaluates as Elasticsearch does, with
/// every other conjunct dropped (an `or` or `not` over anything else is
/// dropped whole).
#[derive(Debug)]
pub(super) struct PreCheck {
    pub(super) table: FieldTable,
    pub(super) category_slot: Slot,
    /// Per rule, per stage ([`rule_sets`]'s order), the test; `None`: the
    /// rule is not pre-checked (it sees every record the index gives it).
    pub(super) rules: Vec<Option<Vec<StageCheck>>>,
    pub(super) fields: FieldsBuf,
}

#[derive(Debug)]
pub(super) struct StageCheck {
    pub(super) stage: CompiledStage,
    /// Slots typed as addresses: an unreadable address there makes the
    /// test unsure (the record then goes to the rule).
    pub(super) ip_slots: Vec<Slot>,
    /// The order in which the parts of the test's top-level `and` are
    /// tried, learnt from the stream ([`StageCheck::matches`]).
    learnt: Learnt,
}

/// Tests of a stage between two reorderings of its parts.
const RELEARN: u32 = 4096;

/// How the parts of a stage test's top-level `and` fared: tried in
/// `order`, each with the times it ran and failed, and its static cost.
///
/// Most stages a record is tested on are those of rules whose index lets
/// through nearly every record of a kind (every process start), and their
/// tests open with parts every such record passes (`host.os.type`,
/// `event.type`, `event.action`), ordered cheapest first when compiled: a
/// part that fails nearly always, tried first, decides alone. The order
/// changes no outcome (every part is a pure test of the record's fields).
#[derive(Debug, Default)]
struct Learnt {
    order: Vec<usize>,
    cost: Vec<u64>,
    runs: Vec<u32>,
    fails: Vec<u32>,
    tested: u32,
}

impl StageCheck {
    fn new(stage: CompiledStage, ip_slots: Vec<Slot>) -> StageCheck {
        let learnt = match &stage.predicate {
            Pred::And(parts) if parts.len() > 1 => Learnt {
                order: (0..parts.len()).collect(),
                cost: parts.iter().map(|p| p.cost() as u64 + 1).collect(),
                runs: vec![0; parts.len()],
                fails: vec![0; parts.len()],
                tested: 0,
            },
            _ => Learnt::default(),
        };
        StageCheck { stage, ip_slots, learnt }
    }

    /// The stage's category and condition hold for the record's fields
    /// (as [`CompiledStage::matches`], the `and` in the learnt order).
    pub(super) fn matches(&mut self, f: &Fields, category_slot: Slot) -> bool {
        let (Pred::And(parts), false) = (&self.stage.predicate, self.learnt.order.is_empty()) else {
            return self.stage.matches(f, category_slot);
        };
        if !self.stage.in_category(f, category_slot) {
            return false;
        }
        let l = &mut self.learnt;
        let mut holds = true;
        for &k in &l.order {
            l.runs[k] += 1;
            if !parts[k].eval(f) {
                l.fails[k] += 1;
                holds = false;
                break;
            }
        }
        l.tested += 1;
        if l.tested == RELEARN {
            // Expected cost first: a part's cost over the share of the
            // records it ran on that it turned down; counts then halved,
            // so that the order follows a stream that changes.
            let key = |k: usize| l.cost[k] * (u64::from(l.runs[k]) + 1) * 1024 / (u64::from(l.fails[k]) + 1);
            let mut order = std::mem::take(&mut l.order);
            order.sort_by_key(|&k| key(k));
            l.order = order;
            l.runs.iter_mut().chain(l.fails.iter_mut()).for_each(|c| *c /= 2);
            l.tested = 0;
        }
        holds
    }
}

impl PreCheck {
    pub(super) fn new(rules: &[Rule], types: &TypeMap) -> PreCheck {
        let mut table = FieldTable::new();
        let category_slot = table.intern("event.category");
        let checks = rules.iter().map(|r| stage_checks(r, types, &mut table)).collect();
        PreCheck { table, category_slot, rules: checks, fields: FieldsBuf::default() }
    }
}

/// A compiled query's stages, moved onto `table`.
pub(super) fn moved_stages(q: &CompiledQuery, table: &mut FieldTable) -> Vec<StageCheck> {
    let map: Vec<Slot> = (0..q.fields.len()).map(|i| table.intern(q.fields.name(i as Slot))).collect();
    let ip_slots: Vec<Slot> = q.ip_slots.iter().map(|&s| map[s as usize]).collect();
    q.stages
        .iter()
        .map(|st| {
            let stage = CompiledStage { category: st.category.clone(), predicate: remap(&st.predicate, &map), keys: Vec::new() };
            StageCheck::new(stage, ip_slots.clone())
        })
        .collect()
}

pub(super) fn remap(p: &Pred, map: &[Slot]) -> Pred {
    match p {
        Pred::Const(b) => Pred::Const(*b),
        Pred::And(v) => Pred::And(v.iter().map(|x| remap(x, map)).collect()),
        Pred::Or(v) => Pred::Or(v.iter().map(|x| remap(x, map)).collect()),
        Pred::Not(x) => Pred::Not(Box::new(remap(x, map))),
        Pred::IsNull(s) => Pred::IsNull(map[*s as usize]),
        Pred::Any(s, t) => Pred::Any(map[*s as usize], t.clone()),
    }
}

/// One rule's stage tests (see [`PreCheck`]).
pub(super) fn stage_checks(rule: &Rule, types: &TypeMap, table: &mut FieldTable) -> Option<Vec<StageCheck>> {
    let Some(q) = rule.generic_query() else {
        return Some(moved_stages(rule.compiled(), table));
    };
    let stages: Vec<&EventQuery> = match q {
        Query::Event(e) => vec![e],
        Query::Sequence(s) => {
            let positive = s.stages.iter().filter(|st| !st.missing);
            let extra = s.stages.iter().filter(|st| st.missing).chain(s.until.as_ref());
            positive.chain(extra).map(|st| &st.query).collect()
        }
        Query::Sample(s) => s.stages.iter().map(|st| &st.query).collect(),
    };
    let mut out = Vec::with_capacity(stages.len());
    for e in stages {
        let condition = relax(types, &e.condition).unwrap_or(Expr::Literal(Literal::Bool(true), e.span));
        let one = Query::Event(EventQuery { category: e.category.clone(), condition, span: e.span });
        let compiled = compile_precheck(&one, rule.query_text()).ok()?;
        out.extend(moved_stages(&compiled, table));
    }
    Some(out)
}

/// What any event satisfying `e` satisfies, in the fast engine's terms:
/// `e` itself where the fast engine evaluates it as Elasticsearch does,
/// else an `and` of the conjuncts that can be relaxed; `None`: nothing
/// known.
pub(super) fn relax(types: &TypeMap, e: &Expr) -> Option<Expr> {
    let alone = Query::Event(EventQuery { category: None, condition: e.clone(), span: Default::default() });
    if typed_like_elasticsearch(&alone) && compile(&alone, "").is_ok() {
        return Some(e.clone());
    }
    match e {
        Expr::And(items, span) => {
            let kept: Vec<Expr> = items.iter().filter_map(|x| relax(types, x)).collect();
            (!kept.is_empty()).then_some(Expr::And(kept, *span))
        }
        Expr::Or(items, span) => {
            let all: Option<Vec<Expr>> = items.iter().map(|x| relax(types, x)).collect();
            all.map(|v| Expr::Or(v, *span))
        }
        // A regular expression on a string field, kept as it is (the
        // pre-check's `Test::Regex`); exact, but never under a `not`.
        Expr::Match { op: MatchOp::Regex | MatchOp::RegexInsensitive, negated: false, subject, values, .. }
            if is_string_field(types, subject)
                && values.iter().all(|v| matches!(v, Expr::Literal(Literal::Str(_), _)))
                && compile_precheck(&alone, "").is_ok() =>
        {
            Some(e.clone())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parts of a stage test's `and` move to where they turn records
    /// down, and the test says what the stage's own condition says, before
    /// and after every reordering.
    #[test]
    fn a_stage_test_learns_which_part_fails_and_keeps_its_outcome() {
        let q = r#"process where host.os.type == "linux" and event.type == "start" and process.name : "*x*y*" and process.pid > 10 and ?custom.mark == null"#;
        let rule = Rule::from_eql(q, crate::config::rule::meta_for_file("t")).unwrap();
        let mut table = FieldTable::new();
        let category = table.intern("event.category");
        let mut checks = stage_checks(&rule, &TypeMap::ecs(), &mut table).unwrap();
        let check = &mut checks[0];
        let Pred::And(parts) = &check.stage.predicate else { panic!("an and: {:?}", check.stage.predicate) };
        let wildcard = parts.iter().position(|p| matches!(p, Pred::Any(_, crate::eql::compile::Test::Wildcard { .. }))).unwrap();
        assert_ne!(check.learnt.order[0], wildcard, "compiled cheapest first: the wildcard comes late");
        let record = |i: u32| {
            // Every record is a Linux process start; one in 50 has a name
            // the wildcard takes, and the pid test fails on one in 3.
            let name = if i % 50 == 0 { "axby" } else { "sh" };
            format!(r#"{{"event":{{"category":"process","type":"start"}},"host":{{"os":{{"type":"linux"}}}},"process":{{"name":"{name}","pid":{}}}}}"#, if i % 3 == 0 { 0 } else { 20 })
        };
        let mut matched = 0;
        for i in 0..3 * RELEARN {
            let r = record(i);
            let mut f = Fields::new();
            table.extract(r.as_bytes(), &mut f).unwrap();
            let learnt = check.matches(&f, category);
            assert_eq!(learnt, check.stage.matches(&f, category), "{r}");
            matched += learnt as u32;
        }
        assert_eq!(check.learnt.order[0], wildcard, "the part that fails most, tried first: {:?}", check.learnt.order);
        assert!(matched > 0);
    }
}
