//! The strings a rule's stages require: for each stage, the sets of strings
//! (whole values or fragments, by field) of which a matching record must
//! hold one, from its condition; the most selective kept.

use super::*;

/// One string a stage requires (`ci`: ASCII case-insensitively; `exact`:
/// the whole value, so that in JSON it stands between quotes and is
/// followed by what follows a value, never by the `:` of a member name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Needle {
    /// The field that holds it (alias resolved).
    pub(super) field: String,
    pub(super) text: String,
    pub(super) ci: bool,
    pub(super) exact: bool,
}

/// Most conjuncts a stage is indexed by.
pub(super) const MAX_SETS: usize = 4;

/// Per stage, what it requires: sets of strings, each set one of whose
/// strings any event matching the stage holds (the category, and each
/// conjunct that requires strings), the most selective first; empty: none
/// known (the stage sees every record).
pub(super) fn stage_sets(types: &TypeMap, category: Option<&str>, cond: &Expr) -> Vec<Vec<Needle>> {
    let mut options: Vec<Vec<Needle>> = Vec::new();
    if let Some(c) = category {
        if crate::engine::prefilter::usable(c) {
            options.push(vec![Needle { field: "event.category".into(), text: c.to_string(), ci: false, exact: true }]);
        }
    }
    conjunct_sets(types, cond, &mut options);
    options.retain(|o| !o.is_empty());
    options.sort_by_key(|o| std::cmp::Reverse(selectivity(o)));
    options.dedup();
    options.truncate(MAX_SETS);
    options
}

/// The sets of strings `e` requires, one per conjunct that requires some.
pub(super) fn conjunct_sets(types: &TypeMap, e: &Expr, out: &mut Vec<Vec<Needle>>) {
    match e {
        Expr::And(items, _) => items.iter().for_each(|x| conjunct_sets(types, x, out)),
        _ => out.extend(needles(types, e)),
    }
}

/// Values nearly every Elastic Defend event holds somewhere (categories,
/// types, actions, OS): a poor index, used only when nothing else is known.
pub(super) const COMMON: &[&str] = &[
    "process", "network", "file", "host", "user", "session", "library", "driver", "registry", "iam",
    "authentication", "configuration", "intrusion_detection", "malware", "package", "web", "dns", "api",
    "start", "end", "info", "change", "creation", "deletion", "access", "connection", "allowed", "denied",
    "success", "failure", "protocol", "admin", "group", "installation", "exec", "fork", "event", "linux",
    "windows", "macos", "endpoint", "executed", "modification", "rename", "open",
];

/// How selective a set of strings is: no common value, and no fragment of
/// one or two bytes (found nearly everywhere; a whole value of one or two
/// bytes, `process.name == "id"`, is as rare as the value: it is looked up
/// whole, or searched between its quotes), then the longest shortest string
/// (rarer), then the fewest strings.
pub(super) fn selectivity(o: &[Needle]) -> (bool, usize, std::cmp::Reverse<usize>) {
    let common = o.iter().any(|n| COMMON.iter().any(|c| c.eq_ignore_ascii_case(&n.text)));
    let shortest = o.iter().map(|n| n.text.len()).min().unwrap_or(0);
    let rare = o.iter().all(|n| n.exact || n.text.len() >= 3);
    (!common && rare, shortest.min(16), std::cmp::Reverse(o.len()))
}

/// The most selective of several sets.
pub(super) fn best(options: Vec<Vec<Needle>>) -> Option<Vec<Needle>> {
    options.into_iter().filter(|o| !o.is_empty()).max_by_key(|o| selectivity(o))
}

pub(super) fn lit_needle(e: &Expr, ci: bool) -> Option<Needle> {
    match e {
        Expr::Literal(Literal::Str(s), _) if crate::engine::prefilter::usable(s) && (!ci || s.is_ascii()) => {
            Some(Needle { field: String::new(), text: s.clone(), ci, exact: true })
        }
        _ => None,
    }
}

/// The longest wildcard-free fragment of a pattern (at least 3 bytes), or
/// the whole pattern when it has no wildcard (a whole value, of any length,
/// as [`lit_needle`] takes one: `process.name : "nc"`).
pub(super) fn fragment(e: &Expr, ci: bool) -> Option<Needle> {
    let Expr::Literal(Literal::Str(s), _) = e else { return None };
    let frag = s.split(['*', '?']).max_by_key(|f| f.len())?;
    let whole = frag.len() == s.len();
    ((frag.len() >= 3 || whole) && crate::engine::prefilter::usable(frag) && (!ci || frag.is_ascii()))
        .then(|| Needle { field: String::new(), text: frag.to_string(), ci, exact: whole })
}

/// The strings (at least 3 bytes) one of which any value a Lucene pattern
/// accepts holds ([`crate::eql::lucene::required_fragments`]), as
/// fragments, ASCII-case-insensitive for `regex~`; `None` when it requires
/// none the index can seek.
pub(super) fn regex_fragments(e: &Expr, ci: bool) -> Option<Vec<Needle>> {
    let Expr::Literal(Literal::Str(p), _) = e else { return None };
    crate::eql::lucene::required_fragments(p, 3)?
        .into_iter()
        .map(|f| (crate::engine::prefilter::usable(&f) && (!ci || f.is_ascii())).then(|| Needle { field: String::new(), text: f, ci, exact: false }))
        .collect()
}

/// A field whose values are the strings the record holds: a keyword (or
/// text) field, or one without a type, and no `null_value` standing in for
/// an absent value.
pub(super) fn is_string_field(types: &TypeMap, e: &Expr) -> bool {
    let Expr::Field(f) = e else { return false };
    match types.get(&f.name) {
        None => true,
        Some(i) => matches!(i.ty, FieldType::Keyword | FieldType::Text) && i.null_value.is_none(),
    }
}

/// The strings one of which any event satisfying `e` holds, each with the
/// field that holds it.
pub(super) fn needles(types: &TypeMap, e: &Expr) -> Option<Vec<Needle>> {
    let on = |f: &Expr, mut v: Vec<Needle>| -> Vec<Needle> {
        if let Expr::Field(f) = f {
            let name = types.resolve_alias(&f.name).to_string();
            v.iter_mut().for_each(|n| n.field = name.clone());
        }
        v
    };
    match e {
        Expr::And(items, _) => best(items.iter().filter_map(|x| needles(types, x)).collect()),
        Expr::Or(items, _) => {
            let mut all = Vec::new();
            for it in items {
                all.extend(needles(types, it)?);
            }
            Some(all)
        }
        Expr::Compare { op: CmpOp::Eq, left, right, .. } => {
            let (f, l) = if matches!(**left, Expr::Field(_)) { (left, right) } else { (right, left) };
            if !is_string_field(types, f) {
                return None;
            }
            lit_needle(l, false).map(|n| on(f, vec![n]))
        }
        Expr::Match { op, negated: false, subject, values, .. } if is_string_field(types, subject) => {
            let mut out = Vec::new();
            for v in values {
                let n = match op {
                    MatchOp::In => lit_needle(v, false),
                    MatchOp::InInsensitive => lit_needle(v, true),
                    MatchOp::Like => fragment(v, false),
                    MatchOp::Colon | MatchOp::LikeInsensitive => fragment(v, true),
                    MatchOp::Regex | MatchOp::RegexInsensitive => {
                        out.extend(regex_fragments(v, matches!(op, MatchOp::RegexInsensitive))?);
                        continue;
                    }
                };
                out.push(n?);
            }
            Some(on(subject, out))
        }
        Expr::Call { name, case_insensitive, args, .. } if args.len() == 2 && is_string_field(types, &args[0]) => {
            let l = name.to_ascii_lowercase();
            match l.as_str() {
                "startswith" | "endswith" | "stringcontains" => {
                    fragment(&args[1], *case_insensitive).map(|n| on(&args[0], vec![Needle { exact: false, ..n }]))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// What one rule requires, per stage ([`stage_sets`]; the rule's positive
/// stages in order, then its missing-event and `until` stages), and whether
/// the rule is a plain sequence (its later stages matter only while a
/// partial sequence waits). `None`: the query does not parse.
pub(super) fn rule_sets(rule: &Rule, types: &TypeMap) -> Option<(Vec<Vec<Vec<Needle>>>, bool)> {
    let q = parse(rule.query_text(), ParseLimits::default()).ok()?;
    let stages: Vec<(Option<&str>, &Expr)> = match &q {
        Query::Event(e) => vec![(e.category.as_deref(), &e.condition)],
        // The fast engine numbers a sequence's stages as it compiles them,
        // `with runs=N` expanded; a generic rule's stage tests number them as
        // written.
        Query::Sequence(s) => {
            let stages: Box<dyn Iterator<Item = &crate::eql::Stage>> =
                if rule.generic_query().is_none() { Box::new(s.expanded_stages()) } else { Box::new(s.stages.iter()) };
            stages.filter(|st| !st.missing).map(|st| (st.query.category.as_deref(), &st.query.condition)).collect()
        }
        Query::Sample(s) => s.stages.iter().map(|st| (st.query.category.as_deref(), &st.query.condition)).collect(),
    };
    // A sequence with a missing-event or `until` stage must see the events
    // of those stages too.
    let extra: Vec<(Option<&str>, &Expr)> = match &q {
        Query::Sequence(s) => s
            .stages
            .iter()
            .filter(|st| st.missing)
            .chain(s.until.as_ref())
            .map(|st| (st.query.category.as_deref(), &st.query.condition))
            .collect(),
        _ => Vec::new(),
    };
    let plain_sequence = matches!(&q, Query::Sequence(_)) && extra.is_empty() && stages.len() > 1;
    Some((stages.into_iter().chain(extra).map(|(c, e)| stage_sets(types, c, e)).collect(), plain_sequence))
}

/// What one rule requires, per stage: the most selective set of strings
/// (`None`: the rule sees every record).
#[cfg(test)]
pub(super) fn rule_needles(rule: &Rule, types: &TypeMap) -> Option<Vec<Vec<Needle>>> {
    let (stages, _) = rule_sets(rule, types)?;
    stages.into_iter().map(|s| s.into_iter().next()).collect()
}
