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
        .map(|st| StageCheck {
            stage: CompiledStage { category: st.category.clone(), predicate: remap(&st.predicate, &map), keys: Vec::new() },
            ip_slots: ip_slots.clone(),
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
        let condition = relax(types, &e.condition).map_or(Expr::Literal(Literal::Bool(true), e.span), |(x, _)| x);
        let one = Query::Event(EventQuery { category: e.category.clone(), condition, span: e.span });
        let compiled = compile_precheck(&one, rule.query_text()).ok()?;
        out.extend(moved_stages(&compiled, table));
    }
    Some(out)
}

/// What any event satisfying `e` satisfies, in the fast engine's terms:
/// `e` itself where the fast engine evaluates it as Elasticsearch does
/// (`true` in the second place), else an `and` of the conjuncts that can be
/// relaxed; `None`: nothing known.
pub(super) fn relax(types: &TypeMap, e: &Expr) -> Option<(Expr, bool)> {
    let alone = Query::Event(EventQuery { category: None, condition: e.clone(), span: Default::default() });
    if typed_like_elasticsearch(&alone) && compile(&alone, "").is_ok() {
        return Some((e.clone(), true));
    }
    match e {
        Expr::And(items, span) => {
            let kept: Vec<Expr> = items.iter().filter_map(|x| relax(types, x)).map(|(x, _)| x).collect();
            (!kept.is_empty()).then_some((Expr::And(kept, *span), false))
        }
        Expr::Or(items, span) => {
            let all: Option<Vec<Expr>> = items.iter().map(|x| relax(types, x).map(|(x, _)| x)).collect();
            all.map(|v| (Expr::Or(v, *span), false))
        }
        // A regular expression on a string field, kept as it is (the
        // pre-check's `Test::Regex`); exact, but never under a `not`.
        Expr::Match { op: MatchOp::Regex | MatchOp::RegexInsensitive, negated: false, subject, values, .. }
            if is_string_field(types, subject)
                && values.iter().all(|v| matches!(v, Expr::Literal(Literal::Str(_), _)))
                && compile_precheck(&alone, "").is_ok() =>
        {
            Some((e.clone(), false))
        }
        _ => None,
    }
}
