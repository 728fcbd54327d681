//! From the EQL syntax tree to predicates over a record's [`Fields`].
//!
//! Field paths are interned into one [`FieldTable`] at compile time; a
//! predicate refers to fields by slot. The semantics are Elasticsearch's
//! (RULE.md §Semantics):
//!
//! * `==`, `in` are exact and case-sensitive; `:`/`in~`/`like~` compare
//!   case-insensitively (Unicode lower case), `:`/`like` take `*`/`?` wildcards.
//! * A test on a multi-valued field is true if ANY value passes; on an absent
//!   field it is false. `not` is two-valued, and `!=` is `not ==`.
//! * `== null` is "absent, null or empty array"; `!= null` is its negation.
//! * Fields used as IP addresses (the first argument of `cidrmatch`, and the
//!   fields ECS types as `ip`) compare as addresses; a record holding a
//!   value that is not an address in such a field could not be indexed by
//!   Elasticsearch and matches nothing (see [`CompiledQuery::ip_slots`]).
//! * `<category> where` means `event.category` contains the category.
//!
//! **Why hand-written** ([`wildcard_match`]): EQL's wildcards are `*` and
//! `?` only; glob crates (`globset`, `wildmatch`) also read `[…]` classes,
//! which EQL takes literally, and none folds case as Elasticsearch does. The
//! matcher here runs on every record a stage tests, byte by byte on ASCII
//! without allocating; a pattern is compiled once ([`Glob`]) into its
//! pieces between stars, found with `memchr`'s substring search.
//!
//! The parts of every `and` and `or` are tested cheapest first
//! ([`Pred::cheapest_first`]): equality before wildcards, wildcards before
//! regular expressions.

use crate::eql::{CmpOp, EventQuery, Expr, Field, Literal, MatchOp, Query, RuleError, RuleErrorKind, Span};
use crate::format::event::{FieldTable, Fields, Scalar, Slot};
use crate::format::ip::{parse_ip, Cidr};
use std::cmp::Ordering;

/// A compiled query: one stage for an event query, two or more for a sequence.
#[derive(Debug, Clone)]
pub struct CompiledQuery {
    /// Every field the query reads (plus any added later by the caller).
    pub fields: FieldTable,
    pub stages: Vec<CompiledStage>,
    /// `with maxspan=…` in milliseconds (sequences only).
    pub maxspan_ms: Option<u64>,
    /// Slots typed as IP addresses.
    pub ip_slots: Vec<Slot>,
    /// The slot of `event.category`.
    pub category_slot: Slot,
    /// True for a `sequence` query.
    pub is_sequence: bool,
    /// How many leading parts of every stage's join key come from the
    /// sequence's own `by` fields (`sequence by host.id`: 1). They name the
    /// "host" for per-host state caps and for partitioning.
    pub host_keys: usize,
}

impl CompiledQuery {
    /// A query with no stages (it matches nothing): the fast engine's part
    /// of a rule that the generic engine runs.
    pub fn empty() -> CompiledQuery {
        let mut fields = FieldTable::new();
        let category_slot = fields.intern("event.category");
        CompiledQuery {
            fields,
            stages: Vec::new(),
            maxspan_ms: None,
            ip_slots: Vec::new(),
            category_slot,
            is_sequence: false,
            host_keys: 0,
        }
    }
}

/// One stage of a query.
#[derive(Debug, Clone)]
pub struct CompiledStage {
    /// `None` for `any where`.
    pub category: Option<String>,
    pub predicate: Pred,
    /// The join key: the sequence's `by` fields then the stage's own.
    pub keys: Vec<Slot>,
}

/// A compiled boolean predicate.
#[derive(Debug, Clone)]
pub enum Pred {
    Const(bool),
    And(Vec<Pred>),
    Or(Vec<Pred>),
    Not(Box<Pred>),
    /// True when the field is absent, null or an empty array.
    IsNull(Slot),
    /// True when ANY value of the field passes the test.
    Any(Slot, Test),
}

/// A test on one value of a field.
#[derive(Debug, Clone)]
pub enum Test {
    /// Exact, case-sensitive equality with any of these strings.
    StrIn(Vec<String>),
    /// Equality with any of these strings after lower-casing both sides.
    StrInFold(Vec<String>),
    /// Wildcard (`*`, `?`) match against any pattern.
    Wildcard { patterns: Vec<Glob>, fold: bool },
    StartsWith { needles: Vec<String>, fold: bool },
    EndsWith { needles: Vec<String>, fold: bool },
    Contains { needles: Vec<String>, fold: bool },
    /// The value is an address equal to one of these.
    IpIn(Vec<u128>),
    /// The value is an address inside one of these blocks.
    CidrIn(Vec<Cidr>),
    /// Numeric comparison (the value is a number or a numeric string).
    Num(CmpOp, f64),
    /// Numeric comparison on a field ECS maps as `long`: the value is read
    /// as Elasticsearch indexes one (see [`long_value`]: decimals truncated
    /// toward zero, a numeric string parsed, anything else no value), then
    /// compared with the literal, an integer exactly and a decimal as a
    /// double (as the generic engine compares a `long` with either).
    Long(CmpOp, NumLit),
    /// Byte-wise ordering of the keyword value against a string.
    StrOrd(CmpOp, String),
    /// A boolean, or a string Elasticsearch reads as one (`"true"`;
    /// `"false"` and `""`).
    Bool(bool),
    /// A string value matching any of these Lucene regular expressions
    /// ([`crate::eql::lucene`]). Only in a rule pack's pre-check
    /// ([`compile_precheck`]), where a value that is neither a string nor
    /// null passes (the test must never reject an event the generic engine
    /// could match).
    Regex(Vec<regex::Regex>),
    /// A value whose keyword form (a number `1` is "1") matches any of these
    /// Lucene regular expressions: `regex` and `regex~` on a keyword field
    /// of ECS, as the generic engine matches them.
    RegexKeyword(Vec<regex::Regex>),
}

/// A number literal of a [`Test::Long`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NumLit {
    Int(i64),
    Float(f64),
}

/// One value of a `long` field as Elasticsearch indexes it, by the generic
/// engine's rules ([`crate::eql::value::typed`]): an integer as it is, a
/// decimal or numeric string truncated toward zero, `None` for anything
/// else (malformed: not indexed) or out of the `long` range.
pub fn long_value(v: &Scalar) -> Option<i64> {
    use crate::eql::value::{long_of_f64, long_of_str};
    match v {
        Scalar::Int(i) => Some(*i),
        Scalar::UInt(u) => i64::try_from(*u).ok(),
        Scalar::Float(f) => long_of_f64(*f),
        Scalar::Str(s) => long_of_str(s),
        Scalar::Bool(_) | Scalar::Null | Scalar::Object => None,
    }
}

/// The most stages the fast engine runs (one bit each); longer sequences
/// run on the generic engine.
pub const MAX_FAST_STAGES: usize = 32;

/// Limits on the size of a compiled query.
pub const MAX_FIELDS: usize = 1024;

struct Compiler<'s> {
    source: &'s str,
    fields: FieldTable,
    ip_slots: Vec<Slot>,
    /// For a pre-check ([`compile_precheck`]): `regex` as [`Test::Regex`],
    /// which lets any value that is not a string pass; else
    /// [`Test::RegexKeyword`].
    regex: bool,
}

/// The test of `field op n`: on a field ECS maps as `long` (or a narrower
/// integer), its values read as Elasticsearch indexes them
/// ([`Test::Long`]); elsewhere as numbers ([`Test::Num`]).
fn num_test(field: &Field, op: CmpOp, n: NumLit) -> Test {
    let long = crate::eql::TypeMap::ecs().get(&field.name).is_some_and(|i| i.ty == crate::eql::FieldType::Long);
    match (long, n) {
        (true, n) => Test::Long(op, n),
        (false, NumLit::Int(i)) => Test::Num(op, i as f64),
        (false, NumLit::Float(x)) => Test::Num(op, x),
    }
}

/// Compile a parsed query. `source` is the query text, for error positions.
pub fn compile(query: &Query, source: &str) -> Result<CompiledQuery, RuleError> {
    if let Some((what, span)) = beyond_fast_path(query) {
        return Err(RuleError::at(
            RuleErrorKind::Unsupported,
            format!("{what} is not supported by the fast engine"),
            source,
            span,
        ));
    }
    compile_with(query, source, false)
}

/// [`compile`] for a rule pack's pre-check (`crate::engine::pack`): `regex`
/// and `regex~` on a field of any type ([`Test::Regex`]), and nothing
/// refused up front (the caller passes only what [`compile`] takes, plus
/// those).
pub fn compile_precheck(query: &Query, source: &str) -> Result<CompiledQuery, RuleError> {
    compile_with(query, source, true)
}

fn compile_with(query: &Query, source: &str, regex: bool) -> Result<CompiledQuery, RuleError> {
    let mut c = Compiler { source, fields: FieldTable::new(), ip_slots: Vec::new(), regex };
    let category_slot = c.fields.intern("event.category");
    // First pass: every field given to cidrmatch is an IP field.
    let event_queries: Vec<&EventQuery> = match query {
        Query::Event(q) => vec![q],
        Query::Sequence(s) => s.stages.iter().map(|st| &st.query).collect(),
        Query::Sample(_) => Vec::new(),
    };
    for q in &event_queries {
        c.collect_ip_fields(&q.condition);
    }
    let host_keys = match query {
        Query::Event(_) => 0,
        Query::Sequence(seq) => seq.by.len(),
        Query::Sample(_) => 0,
    };
    let (stages, maxspan_ms, is_sequence) = match query {
        Query::Event(q) => (vec![c.stage(q, &[], &[])?], None, false),
        Query::Sequence(seq) => {
            let mut stages = Vec::new();
            let mut nkeys = None;
            for st in seq.expanded_stages() {
                let cs = c.stage(&st.query, &seq.by, &st.by)?;
                match nkeys {
                    None => nkeys = Some(cs.keys.len()),
                    Some(n) if n != cs.keys.len() => {
                        return Err(c.err(
                            RuleErrorKind::BadArgument,
                            format!(
                                "every stage must join on the same number of keys: the first stage has {n}, this one has {}",
                                cs.keys.len()
                            ),
                            st.span,
                        ))
                    }
                    _ => {}
                }
                stages.push(cs);
            }
            (stages, seq.maxspan_ms, true)
        }
        Query::Sample(s) => {
            return Err(c.err(RuleErrorKind::Unsupported, "samples are not supported by the fast engine", s.span))
        }
    };
    if c.fields.len() > MAX_FIELDS {
        return Err(RuleError::new(
            RuleErrorKind::Limit,
            format!("the query reads {} fields; at most {MAX_FIELDS} are allowed", c.fields.len()),
        ));
    }
    Ok(CompiledQuery {
        fields: c.fields,
        stages,
        maxspan_ms,
        ip_slots: c.ip_slots,
        category_slot,
        is_sequence,
        host_keys,
    })
}

impl<'s> Compiler<'s> {
    fn err(&self, kind: RuleErrorKind, msg: impl Into<String>, span: Span) -> RuleError {
        RuleError::at(kind, msg, self.source, span)
    }

    fn slot(&mut self, f: &Field) -> Slot {
        let s = self.fields.intern(&f.name);
        // The fields ECS types as `ip` (as the generic engine reads them:
        // `dns.resolved_ip` is one, a `custom.ip` outside ECS is not).
        if crate::eql::TypeMap::ecs().is_ip(&f.name) && !self.ip_slots.contains(&s) {
            self.ip_slots.push(s);
        }
        s
    }

    fn is_ip(&self, s: Slot) -> bool {
        self.ip_slots.contains(&s)
    }

    fn collect_ip_fields(&mut self, e: &Expr) {
        match e {
            Expr::And(v, _) | Expr::Or(v, _) => v.iter().for_each(|x| self.collect_ip_fields(x)),
            Expr::Not(x, _) => self.collect_ip_fields(x),
            Expr::Call { name, args, .. } => {
                if name.eq_ignore_ascii_case("cidrmatch") {
                    if let Some(Expr::Field(f)) = args.first() {
                        let s = self.fields.intern(&f.name);
                        if !self.ip_slots.contains(&s) {
                            self.ip_slots.push(s);
                        }
                    }
                }
                args.iter().for_each(|x| self.collect_ip_fields(x));
            }
            Expr::Compare { left, right, .. } => {
                self.collect_ip_fields(left);
                self.collect_ip_fields(right);
            }
            Expr::Match { subject, values, .. } => {
                self.collect_ip_fields(subject);
                values.iter().for_each(|x| self.collect_ip_fields(x));
            }
            Expr::Field(f) => {
                self.slot(f);
            }
            Expr::Arith { left, right, .. } => {
                self.collect_ip_fields(left);
                self.collect_ip_fields(right);
            }
            Expr::Neg(x, _) => self.collect_ip_fields(x),
            Expr::Literal(..) => {}
        }
    }

    fn stage(&mut self, q: &EventQuery, seq_by: &[Field], by: &[Field]) -> Result<CompiledStage, RuleError> {
        let predicate = self.expr(&q.condition)?.cheapest_first();
        let keys = seq_by.iter().chain(by).map(|f| self.slot(f)).collect();
        Ok(CompiledStage { category: q.category.clone(), predicate, keys })
    }

    fn expr(&mut self, e: &Expr) -> Result<Pred, RuleError> {
        Ok(match e {
            Expr::And(v, _) => Pred::And(v.iter().map(|x| self.expr(x)).collect::<Result<_, _>>()?),
            Expr::Or(v, _) => Pred::Or(v.iter().map(|x| self.expr(x)).collect::<Result<_, _>>()?),
            Expr::Not(x, _) => Pred::Not(Box::new(self.expr(x)?)),
            Expr::Compare { op, left, right, span } => self.compare(*op, left, right, *span)?,
            Expr::Match { op, negated, subject, values, span } => {
                let p = self.matching(*op, subject, values, *span)?;
                if *negated {
                    Pred::Not(Box::new(p))
                } else {
                    p
                }
            }
            Expr::Call { name, case_insensitive, args, span } => {
                self.call(name, *case_insensitive, args, *span)?
            }
            Expr::Literal(Literal::Bool(b), _) => Pred::Const(*b),
            Expr::Field(f) => {
                return Err(self.err(
                    RuleErrorKind::BadArgument,
                    format!("field `{}` used as a condition; compare it with a value (e.g. `{} != null`)", f.name, f.name),
                    f.span,
                ))
            }
            Expr::Literal(_, span) => {
                return Err(self.err(RuleErrorKind::BadArgument, "a literal is not a condition", *span))
            }
            Expr::Arith { span, .. } | Expr::Neg(_, span) => {
                return Err(self.err(RuleErrorKind::Unsupported, "arithmetic is not supported by the fast engine", *span))
            }
        })
    }

    fn field_of<'e>(&self, e: &'e Expr, what: &str) -> Result<&'e Field, RuleError> {
        match e {
            Expr::Field(f) => Ok(f),
            other => Err(self.err(
                RuleErrorKind::BadArgument,
                format!("{what} must be a field name"),
                other.span(),
            )),
        }
    }

    fn string_lit(&self, e: &Expr, what: &str) -> Result<String, RuleError> {
        match e {
            Expr::Literal(Literal::Str(s), _) => Ok(s.clone()),
            other => Err(self.err(RuleErrorKind::BadArgument, format!("{what} must be a string"), other.span())),
        }
    }

    fn compare(&mut self, op: CmpOp, left: &Expr, right: &Expr, span: Span) -> Result<Pred, RuleError> {
        // Put the field on the left.
        let (op, field, lit, lit_span) = match (left, right) {
            (Expr::Field(f), Expr::Literal(l, s)) => (op, f, l, *s),
            (Expr::Literal(l, s), Expr::Field(f)) => (flip(op), f, l, *s),
            (Expr::Literal(a, _), Expr::Literal(b, _)) => return Ok(Pred::Const(fold_literals(op, a, b))),
            (Expr::Field(_), Expr::Field(_)) => {
                return Err(self.err(
                    RuleErrorKind::Unsupported,
                    "comparing two fields is not supported; compare a field with a literal",
                    span,
                ))
            }
            _ => {
                return Err(self.err(
                    RuleErrorKind::Unsupported,
                    "only a field compared with a literal is supported here",
                    span,
                ))
            }
        };
        let slot = self.slot(field);
        let positive = |test: Test| Pred::Any(slot, test);
        let num = |op: CmpOp, n: NumLit| positive(num_test(field, op, n));
        let eq = match (op, lit) {
            (CmpOp::Eq, Literal::Null) => return Ok(Pred::IsNull(slot)),
            (CmpOp::Ne, Literal::Null) => return Ok(Pred::Not(Box::new(Pred::IsNull(slot)))),
            (_, Literal::Null) => {
                return Err(self.err(RuleErrorKind::BadArgument, "null can only be compared with == or !=", lit_span))
            }
            (CmpOp::Eq | CmpOp::Ne, Literal::Str(s)) => {
                if self.is_ip(slot) {
                    let ip = parse_ip(s).ok_or_else(|| {
                        self.err(
                            RuleErrorKind::BadArgument,
                            format!("`{}` is an IP field and \"{s}\" is not an IP address", field.name),
                            lit_span,
                        )
                    })?;
                    positive(Test::IpIn(vec![ip]))
                } else {
                    positive(Test::StrIn(vec![s.clone()]))
                }
            }
            (CmpOp::Eq | CmpOp::Ne, Literal::Int(i)) => num(CmpOp::Eq, NumLit::Int(*i)),
            (CmpOp::Eq | CmpOp::Ne, Literal::Float(x)) => num(CmpOp::Eq, NumLit::Float(*x)),
            (CmpOp::Eq | CmpOp::Ne, Literal::Bool(b)) => positive(Test::Bool(*b)),
            (op, Literal::Int(i)) => return Ok(num(op, NumLit::Int(*i))),
            (op, Literal::Float(x)) => return Ok(num(op, NumLit::Float(*x))),
            (op, Literal::Str(s)) => return Ok(positive(Test::StrOrd(op, s.clone()))),
            (_, Literal::Bool(_)) => {
                return Err(self.err(RuleErrorKind::BadArgument, "booleans can only be compared with == or !=", lit_span))
            }
        };
        Ok(if op == CmpOp::Ne { Pred::Not(Box::new(eq)) } else { eq })
    }

    fn matching(&mut self, op: MatchOp, subject: &Expr, values: &[Expr], span: Span) -> Result<Pred, RuleError> {
        let field = self.field_of(subject, "the left side of `in`, `:` and `like`")?;
        let slot = self.slot(field);
        let ip = self.is_ip(slot);
        let mut strings = Vec::new();
        let mut numbers = Vec::new();
        let mut has_null = false;
        for v in values {
            match v {
                Expr::Literal(Literal::Str(s), _) => strings.push(s.clone()),
                Expr::Literal(Literal::Int(i), _) if op == MatchOp::In => numbers.push(NumLit::Int(*i)),
                Expr::Literal(Literal::Float(x), _) if op == MatchOp::In => numbers.push(NumLit::Float(*x)),
                Expr::Literal(Literal::Null, _) if op == MatchOp::In => has_null = true,
                other => {
                    return Err(self.err(RuleErrorKind::BadArgument, "expected a string literal in the list", other.span()))
                }
            }
        }
        let _ = span;
        let mut alts = Vec::new();
        match op {
            MatchOp::In if ip => {
                let mut ips = Vec::new();
                for (s, v) in strings.iter().zip(values) {
                    ips.push(parse_ip(s).ok_or_else(|| {
                        self.err(
                            RuleErrorKind::BadArgument,
                            format!("`{}` is an IP field and \"{s}\" is not an IP address", field.name),
                            v.span(),
                        )
                    })?);
                }
                alts.push(Pred::Any(slot, Test::IpIn(ips)));
            }
            MatchOp::In => {
                if !strings.is_empty() {
                    alts.push(Pred::Any(slot, Test::StrIn(strings)));
                }
            }
            MatchOp::InInsensitive => alts.push(Pred::Any(slot, Test::StrInFold(strings.iter().map(|s| fold(s)).collect()))),
            MatchOp::Colon | MatchOp::LikeInsensitive => {
                alts.push(Pred::Any(slot, Test::Wildcard { patterns: strings.iter().map(|s| Glob::new(fold(s))).collect(), fold: true }))
            }
            MatchOp::Like => alts.push(Pred::Any(slot, Test::Wildcard { patterns: strings.into_iter().map(Glob::new).collect(), fold: false })),
            MatchOp::Regex | MatchOp::RegexInsensitive => {
                let ci = op == MatchOp::RegexInsensitive;
                let mut res = Vec::new();
                for s in &strings {
                    let re = crate::eql::lucene::compile(s, ci).map_err(|e| {
                        self.err(RuleErrorKind::Unsupported, format!("regular expression \"{s}\": {e}"), span)
                    })?;
                    res.push(re);
                }
                alts.push(Pred::Any(slot, if self.regex { Test::Regex(res) } else { Test::RegexKeyword(res) }));
            }
        }
        for n in numbers {
            alts.push(Pred::Any(slot, num_test(field, CmpOp::Eq, n)));
        }
        // A null in an `in` list matches nothing (Elasticsearch drops null
        // entries from the terms query).
        let _ = has_null;
        Ok(if alts.len() == 1 { alts.pop().unwrap() } else { Pred::Or(alts) })
    }

    fn call(&mut self, name: &str, ci: bool, args: &[Expr], span: Span) -> Result<Pred, RuleError> {
        let lname = name.to_ascii_lowercase();
        let (min, max) = match lname.as_str() {
            "cidrmatch" | "wildcard" => (2, usize::MAX),
            "startswith" | "endswith" | "stringcontains" => (2, 2),
            _ => {
                return Err(self.err(
                    RuleErrorKind::UnknownFunction,
                    format!(
                        "unknown function `{name}`; supported: cidrMatch, startsWith, endsWith, stringContains, wildcard"
                    ),
                    span,
                ))
            }
        };
        if args.len() < min || args.len() > max {
            let want = if max == usize::MAX { format!("at least {min}") } else { format!("{min}") };
            return Err(self.err(
                RuleErrorKind::BadArgument,
                format!("`{name}` takes {want} arguments, got {}", args.len()),
                span,
            ));
        }
        if ci && lname == "cidrmatch" {
            return Err(self.err(RuleErrorKind::BadArgument, "`cidrMatch` has no case-insensitive form", span));
        }
        let field = self.field_of(&args[0], &format!("the first argument of `{name}`"))?;
        let slot = self.slot(field);
        let mut strs = Vec::new();
        for (i, a) in args[1..].iter().enumerate() {
            strs.push(self.string_lit(a, &format!("argument {} of `{name}`", i + 2))?);
        }
        let strs_f = |v: Vec<String>| if ci { v.iter().map(|s| fold(s)).collect() } else { v };
        let test = match lname.as_str() {
            "cidrmatch" => {
                let mut nets = Vec::new();
                for (s, a) in strs.iter().zip(&args[1..]) {
                    nets.push(Cidr::parse(s).ok_or_else(|| {
                        self.err(RuleErrorKind::BadArgument, format!("\"{s}\" is not an IP address or CIDR block"), a.span())
                    })?);
                }
                Test::CidrIn(nets)
            }
            "wildcard" => Test::Wildcard { patterns: strs_f(strs).into_iter().map(Glob::new).collect(), fold: ci },
            "startswith" => Test::StartsWith { needles: strs_f(strs), fold: ci },
            "endswith" => Test::EndsWith { needles: strs_f(strs), fold: ci },
            _ => Test::Contains { needles: strs_f(strs), fold: ci },
        };
        Ok(Pred::Any(slot, test))
    }
}

/// Every slot a predicate reads.
pub fn pred_slots(p: &Pred, out: &mut Vec<Slot>) {
    match p {
        Pred::Const(_) => {}
        Pred::And(v) | Pred::Or(v) => v.iter().for_each(|x| pred_slots(x, out)),
        Pred::Not(x) => pred_slots(x, out),
        Pred::IsNull(s) | Pred::Any(s, _) => out.push(*s),
    }
}

/// The first construct of `query` that only the generic engine
/// ([`crate::eql::Engine`]) runs, and where it is.
pub fn beyond_fast_path(query: &Query) -> Option<(&'static str, Span)> {
    fn expr(e: &Expr) -> Option<(&'static str, Span)> {
        match e {
            Expr::And(v, _) | Expr::Or(v, _) => v.iter().find_map(expr),
            Expr::Not(x, _) => expr(x),
            Expr::Compare { left, right, .. } => expr(left).or_else(|| expr(right)),
            Expr::Match { subject, values, .. } => expr(subject).or_else(|| values.iter().find_map(expr)),
            Expr::Call { args, .. } => args.iter().find_map(expr),
            Expr::Arith { span, .. } | Expr::Neg(_, span) => Some(("arithmetic", *span)),
            // An optional field of a condition is read like any other where
            // the type map knows it (only an unknown one is folded to null,
            // and then only when the map is declared complete): ECS's fields
            // are the fast engine's too. As a join key it joins as null.
            Expr::Field(f) if f.optional && !crate::eql::TypeMap::ecs().is_known(&f.name) => Some(("an optional field outside ECS", f.span)),
            Expr::Field(_) | Expr::Literal(..) => None,
        }
    }
    let keys = |fs: &[crate::eql::Field]| fs.iter().find(|f| f.optional).map(|f| ("an optional field", f.span));
    match query {
        Query::Event(q) => expr(&q.condition),
        Query::Sample(s) => Some(("sample", s.span)),
        Query::Sequence(s) => {
            if let Some(u) = &s.until {
                return Some(("until", u.span));
            }
            if s.expanded_stages().count() > MAX_FAST_STAGES {
                return Some(("a sequence of more than 32 stages (runs counted)", s.span));
            }
            keys(&s.by).or_else(|| {
                s.stages.iter().find_map(|st| {
                    if st.missing {
                        Some(("a missing-event stage", st.span))
                    } else {
                        keys(&st.by).or_else(|| expr(&st.query.condition))
                    }
                })
            })
        }
    }
}

/// Whether the fast engine, which reads no mapping, compares every value of
/// `query` as Elasticsearch would given ECS's types: only equality, `in`,
/// `:`, `like`, and the string functions, on keyword or IP fields (or
/// fields outside ECS) with string literals; equality or ordering on
/// numeric fields with number literals (a `long` field's values read as
/// Elasticsearch indexes them, [`Test::Long`]); `==` and `!=` on boolean
/// fields with `true` or `false`; `regex` on keyword fields
/// ([`Test::RegexKeyword`]); and address fields only where an absent one
/// fails the condition ([`ip_guarded`]). Anything else (an ordering of
/// strings, a date or version field) runs on the generic engine, which
/// types values.
pub fn typed_like_elasticsearch(query: &Query) -> bool {
    use crate::eql::{FieldType, TypeMap};
    let types = TypeMap::ecs();
    fn field_ok(types: &TypeMap, e: &Expr, lit: Option<&Literal>) -> bool {
        let Expr::Field(f) = e else { return true };
        let ty = types.get(&f.name).map(|i| i.ty);
        match (ty, lit) {
            (_, Some(Literal::Null)) => true,
            (None | Some(FieldType::Keyword | FieldType::Text), Some(Literal::Str(_)) | None) => true,
            // An address field only where the fast engine's handling of an
            // unreadable address (the event is set aside, `invalid_ip`) gives
            // Elasticsearch's result (the value ignored as malformed, so the
            // field is absent): see `ip_guarded`.
            (Some(FieldType::Ip), Some(Literal::Str(_)) | None) => true,
            (Some(FieldType::Long | FieldType::Double), Some(Literal::Int(_) | Literal::Float(_))) => true,
            (Some(FieldType::Boolean), Some(Literal::Bool(_))) => true,
            _ => false,
        }
    }
    fn expr(types: &TypeMap, e: &Expr) -> bool {
        match e {
            Expr::And(v, _) | Expr::Or(v, _) => v.iter().all(|x| expr(types, x)),
            Expr::Not(x, _) => expr(types, x),
            Expr::Compare { op, left, right, .. } => {
                match (&**left, &**right) {
                    // An ordering only with a number (which `field_ok`
                    // takes only on a numeric field: `Test::Long`,
                    // `Test::Num`).
                    (f @ Expr::Field(_), Expr::Literal(l, _)) | (Expr::Literal(l, _), f @ Expr::Field(_)) => {
                        field_ok(types, f, Some(l))
                            && (matches!(op, CmpOp::Eq | CmpOp::Ne) || matches!(l, Literal::Int(_) | Literal::Float(_)))
                    }
                    (Expr::Literal(..), Expr::Literal(..)) => true,
                    _ => false,
                }
            }
            // A regular expression only on a keyword field (`keyword`,
            // `wildcard`, `constant_keyword`: `Test::RegexKeyword`).
            Expr::Match { op: MatchOp::Regex | MatchOp::RegexInsensitive, subject, values, .. } => {
                matches!(&**subject, Expr::Field(f) if types.get(&f.name).is_some_and(|i| i.ty == FieldType::Keyword))
                    && values.iter().all(|v| matches!(v, Expr::Literal(Literal::Str(_), _)))
            }
            Expr::Match { subject, values, .. } => values.iter().all(|v| match v {
                Expr::Literal(l, _) => field_ok(types, subject, Some(l)),
                _ => false,
            }),
            Expr::Call { args, .. } => args.first().is_none_or(|a| field_ok(types, a, None)),
            Expr::Field(_) => false,
            Expr::Literal(..) | Expr::Arith { .. } | Expr::Neg(..) => true,
        }
    }
    let ok = |e: &Expr| expr(&types, e) && ip_guarded(&types, e);
    match query {
        Query::Event(q) => ok(&q.condition),
        Query::Sequence(s) => s.stages.iter().all(|st| ok(&st.query.condition)),
        Query::Sample(_) => false,
    }
}

/// Every address field `f` that `e` reads makes `e` false when it is
/// absent: then an event whose `f` is unreadable matches in neither engine
/// (the fast engine sets it aside, whatever the condition gives; for
/// Elasticsearch the value is ignored and the field absent). So
/// `f != null and not cidrMatch(f, …)` or `not (f == null or cidrMatch(f,
/// …))` run on the fast engine, but `not cidrMatch(f, …)` alone, or
/// `(f != null and …) or g == "x"` (an absent `f` matches through `g`), run
/// on the generic engine.
fn ip_guarded(types: &crate::eql::TypeMap, e: &Expr) -> bool {
    fn ip_fields<'e>(types: &crate::eql::TypeMap, e: &'e Expr, out: &mut Vec<&'e str>) {
        match e {
            Expr::Field(f) => {
                if types.is_ip(&f.name) && !out.contains(&f.name.as_str()) {
                    out.push(&f.name);
                }
            }
            Expr::And(v, _) | Expr::Or(v, _) => v.iter().for_each(|x| ip_fields(types, x, out)),
            Expr::Not(x, _) | Expr::Neg(x, _) => ip_fields(types, x, out),
            Expr::Compare { left, right, .. } | Expr::Arith { left, right, .. } => {
                ip_fields(types, left, out);
                ip_fields(types, right, out);
            }
            Expr::Match { subject, values, .. } => {
                ip_fields(types, subject, out);
                values.iter().for_each(|x| ip_fields(types, x, out));
            }
            Expr::Call { name, args, .. } => {
                // cidrMatch's first argument is an address, whatever its name.
                if let (true, Some(Expr::Field(f))) = (name.eq_ignore_ascii_case("cidrmatch"), args.first()) {
                    if !out.contains(&f.name.as_str()) {
                        out.push(&f.name);
                    }
                }
                args.iter().for_each(|x| ip_fields(types, x, out));
            }
            Expr::Literal(..) => {}
        }
    }
    let mut fields = Vec::new();
    ip_fields(types, e, &mut fields);
    fields.iter().all(|f| false_when_absent(e, f))
}

fn is_field(e: &Expr, name: &str) -> bool {
    matches!(e, Expr::Field(f) if f.name == name)
}

/// `e` cannot hold when field `f` is absent (each comparison of a field with
/// a literal reads as Elasticsearch's query for it, which matches or not).
fn false_when_absent(e: &Expr, f: &str) -> bool {
    match e {
        Expr::And(v, _) => v.iter().any(|x| false_when_absent(x, f)),
        Expr::Or(v, _) => v.iter().all(|x| false_when_absent(x, f)),
        Expr::Not(x, _) => true_when_absent(x, f),
        Expr::Compare { op, left, right, .. } => match (&**left, &**right) {
            (l, Expr::Literal(lit, _)) | (Expr::Literal(lit, _), l) if is_field(l, f) => match lit {
                Literal::Null => *op == CmpOp::Ne,
                _ => *op != CmpOp::Ne,
            },
            _ => false,
        },
        Expr::Match { negated, subject, .. } => !negated && is_field(subject, f),
        Expr::Call { args, .. } => args.first().is_some_and(|a| is_field(a, f)),
        _ => false,
    }
}

/// `e` holds whenever field `f` is absent.
fn true_when_absent(e: &Expr, f: &str) -> bool {
    match e {
        Expr::And(v, _) => v.iter().all(|x| true_when_absent(x, f)),
        Expr::Or(v, _) => v.iter().any(|x| true_when_absent(x, f)),
        Expr::Not(x, _) => false_when_absent(x, f),
        Expr::Compare { op: CmpOp::Eq, left, right, .. } => {
            matches!((&**left, &**right), (l, Expr::Literal(Literal::Null, _)) | (Expr::Literal(Literal::Null, _), l) if is_field(l, f))
        }
        _ => false,
    }
}

fn flip(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::Le => CmpOp::Ge,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::Ge => CmpOp::Le,
        o => o,
    }
}

fn fold_literals(op: CmpOp, a: &Literal, b: &Literal) -> bool {
    let ord = match (a, b) {
        (Literal::Str(x), Literal::Str(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (Literal::Int(x), Literal::Int(y)) => Some(x.cmp(y)),
        (Literal::Bool(x), Literal::Bool(y)) => Some(x.cmp(y)),
        (Literal::Null, Literal::Null) => Some(Ordering::Equal),
        (x, y) => lit_num(x).zip(lit_num(y)).and_then(|(x, y)| x.partial_cmp(&y)),
    };
    match ord {
        Some(o) => apply(op, o),
        None => op == CmpOp::Ne,
    }
}

fn lit_num(l: &Literal) -> Option<f64> {
    match l {
        Literal::Int(i) => Some(*i as f64),
        Literal::Float(f) => Some(*f),
        _ => None,
    }
}

/// Whether ordering `o` satisfies `op`.
pub fn apply(op: CmpOp, o: Ordering) -> bool {
    match op {
        CmpOp::Eq => o == Ordering::Equal,
        CmpOp::Ne => o != Ordering::Equal,
        CmpOp::Lt => o == Ordering::Less,
        CmpOp::Le => o != Ordering::Greater,
        CmpOp::Gt => o == Ordering::Greater,
        CmpOp::Ge => o != Ordering::Less,
    }
}

/// Lower-case a string the way case-insensitive comparisons do.
pub fn fold(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

fn eq_fold(value: &str, folded: &str) -> bool {
    // (An ASCII value lower-cases byte by byte, to ASCII.)
    if value.is_ascii() {
        return ascii_eq_folded(value.as_bytes(), folded.as_bytes());
    }
    value.chars().flat_map(char::to_lowercase).eq(folded.chars())
}

/// Whether ASCII `value`, lower-cased, is `folded`.
#[inline]
fn ascii_eq_folded(value: &[u8], folded: &[u8]) -> bool {
    value.len() == folded.len() && value.iter().zip(folded).all(|(a, b)| a.to_ascii_lowercase() == *b)
}

/// `*` matches any run of characters, `?` exactly one; `fold` lower-cases the
/// value (the pattern is already folded). ASCII values and patterns (nearly
/// all) are matched byte by byte without allocating; others character by
/// character.
pub fn wildcard_match(value: &str, pattern: &str, fold: bool) -> bool {
    wildcard_match_with(value, value.is_ascii(), pattern, fold)
}

/// A wildcard pattern compiled once (already folded when matched with
/// `fold`). A pattern of ASCII with `*` but no `?` (nearly every rule's) is
/// split at its stars: an ASCII value must start with the first piece, end
/// with the last, and hold the others in order between them, found
/// leftmost-first with `memchr`'s substring search (which is exact for
/// `*`-only patterns). Any other pattern or value goes to the general
/// matcher ([`wildcard_match`]).
#[derive(Debug, Clone)]
pub struct Glob {
    text: String,
    pieces: Option<Pieces>,
}

#[derive(Debug, Clone)]
struct Pieces {
    first: Vec<u8>,
    middle: Vec<memchr::memmem::Finder<'static>>,
    last: Vec<u8>,
    /// Whether the pattern holds a `*` (else it is `first`, whole).
    star: bool,
}

impl Glob {
    pub fn new(pattern: String) -> Glob {
        let pieces = (pattern.is_ascii() && !pattern.contains('?')).then(|| {
            let parts: Vec<&[u8]> = pattern.as_bytes().split(|&c| c == b'*').collect();
            let star = parts.len() > 1;
            let last = if star { parts[parts.len() - 1].to_vec() } else { Vec::new() };
            let middle = if star { &parts[1..parts.len() - 1] } else { &[][..] };
            Pieces {
                first: parts[0].to_vec(),
                middle: middle.iter().filter(|m| !m.is_empty()).map(|m| memchr::memmem::Finder::new(m).into_owned()).collect(),
                last,
                star,
            }
        });
        Glob { text: pattern, pieces }
    }

    /// Whether `value` (ASCII: `value_ascii`) matches; `fold` lower-cases it.
    pub fn matches(&self, value: &str, value_ascii: bool, fold: bool) -> bool {
        let Some(p) = self.pieces.as_ref().filter(|_| value_ascii) else {
            return wildcard_match_with(value, value_ascii, &self.text, fold);
        };
        let v = value.as_bytes();
        let eq = |a: &[u8], b: &[u8]| if fold { ascii_eq_folded(a, b) } else { a == b };
        if !p.star {
            return v.len() == p.first.len() && eq(v, &p.first);
        }
        let (f, l) = (p.first.len(), p.last.len());
        if v.len() < f + l || !eq(&v[..f], &p.first) || !eq(&v[v.len() - l..], &p.last) {
            return false;
        }
        if p.middle.is_empty() {
            return true;
        }
        let inner = &v[f..v.len() - l];
        if fold && inner.iter().any(u8::is_ascii_uppercase) {
            let lower = inner.to_ascii_lowercase();
            return in_order(&p.middle, &lower);
        }
        in_order(&p.middle, inner)
    }
}

/// Whether every piece occurs in `hay`, in order, without overlapping.
fn in_order(pieces: &[memchr::memmem::Finder<'static>], mut hay: &[u8]) -> bool {
    for m in pieces {
        match m.find(hay) {
            Some(at) => hay = &hay[at + m.needle().len()..],
            None => return false,
        }
    }
    true
}

/// [`wildcard_match`], told whether `value` is ASCII (one check for every
/// pattern tried on a value).
fn wildcard_match_with(value: &str, value_ascii: bool, pattern: &str, fold: bool) -> bool {
    if value_ascii && pattern.is_ascii() {
        let (v, p) = (value.as_bytes(), pattern.as_bytes());
        return if fold {
            glob(v, p, |a, b| a.to_ascii_lowercase() == *b, b'*', b'?')
        } else {
            glob(v, p, |a, b| a == b, b'*', b'?')
        };
    }
    let v: Vec<char> = if fold {
        value.chars().flat_map(char::to_lowercase).collect()
    } else {
        value.chars().collect()
    };
    let p: Vec<char> = pattern.chars().collect();
    glob(&v, &p, |a, b| a == b, '*', '?')
}

/// The wildcard match itself (greedy, backtracking to the last `*`).
fn glob<T: Copy + PartialEq>(v: &[T], p: &[T], eq: impl Fn(&T, &T) -> bool, star_c: T, any_c: T) -> bool {
    // What follows the last `*`, when it holds no `?`, must end the value:
    // most values fail here, at the cost of comparing that tail.
    if let Some(last) = p.iter().rposition(|c| *c == star_c) {
        let tail = &p[last + 1..];
        if !tail.contains(&any_c) && (tail.len() > v.len() || !v[v.len() - tail.len()..].iter().zip(tail).all(|(a, b)| eq(a, b))) {
            return false;
        }
    }
    let (mut vi, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && p[pi] != star_c && (p[pi] == any_c || eq(&v[vi], &p[pi])) {
            vi += 1;
            pi += 1;
        } else if pi < p.len() && p[pi] == star_c {
            star = Some((pi, vi));
            pi += 1;
            if pi == p.len() {
                return true; // a last `*` takes the rest
            }
        } else if let Some((sp, sv)) = star {
            pi = sp + 1;
            vi = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == star_c {
        pi += 1;
    }
    pi == p.len()
}

impl Test {
    /// Does one value pass? Strings are compared to the keyword form of the
    /// value (a number `1` is the keyword "1").
    pub fn check(&self, v: &Scalar) -> bool {
        match self {
            Test::Num(op, x) => match v.number() {
                Some(n) => n.partial_cmp(x).map(|o| apply(*op, o)).unwrap_or(false),
                None => false,
            },
            Test::Long(op, lit) => match (long_value(v), lit) {
                (Some(n), NumLit::Int(x)) => apply(*op, n.cmp(x)),
                (Some(n), NumLit::Float(x)) => (n as f64).partial_cmp(x).is_some_and(|o| apply(*op, o)),
                (None, _) => false,
            },
            Test::Regex(res) => match v {
                Scalar::Str(s) => res.iter().any(|r| r.is_match(s)),
                Scalar::Null => false,
                _ => true,
            },
            Test::RegexKeyword(res) => v.keyword().is_some_and(|k| res.iter().any(|r| r.is_match(&k))),
            // As Elasticsearch indexes a boolean: also "true", "false" and
            // "" (false).
            Test::Bool(b) => match v {
                Scalar::Bool(x) => x == b,
                Scalar::Str(s) => crate::eql::value::bool_of_str(s) == Some(*b),
                _ => false,
            },
            Test::IpIn(ips) => match v {
                Scalar::Str(s) => parse_ip(s).map(|ip| ips.contains(&ip)).unwrap_or(false),
                _ => false,
            },
            Test::CidrIn(nets) => match v {
                Scalar::Str(s) => parse_ip(s).map(|ip| nets.iter().any(|n| n.contains(ip))).unwrap_or(false),
                _ => false,
            },
            _ => {
                let Some(k) = v.keyword() else { return false };
                let k = k.as_ref();
                match self {
                    Test::StrIn(set) => set.iter().any(|s| s == k),
                    Test::StrInFold(set) => set.iter().any(|s| eq_fold(k, s)),
                    Test::Wildcard { patterns, fold } => {
                        let ascii = k.is_ascii();
                        patterns.iter().any(|p| p.matches(k, ascii, *fold))
                    }
                    Test::StartsWith { needles, fold } => {
                        let k = if *fold { std::borrow::Cow::Owned(crate::eql::compile::fold(k)) } else { k.into() };
                        needles.iter().any(|n| k.starts_with(n.as_str()))
                    }
                    Test::EndsWith { needles, fold } => {
                        let k = if *fold { std::borrow::Cow::Owned(crate::eql::compile::fold(k)) } else { k.into() };
                        needles.iter().any(|n| k.ends_with(n.as_str()))
                    }
                    Test::Contains { needles, fold } => {
                        let k = if *fold { std::borrow::Cow::Owned(crate::eql::compile::fold(k)) } else { k.into() };
                        needles.iter().any(|n| k.contains(n.as_str()))
                    }
                    Test::StrOrd(op, s) => apply(*op, k.as_bytes().cmp(s.as_bytes())),
                    _ => false,
                }
            }
        }
    }
}

impl Pred {
    /// The same predicate with the parts of every `and` and `or` in order of
    /// their cost to evaluate, cheapest first (stable): a conjunction most
    /// records fail then usually fails on an equality before any wildcard
    /// or regular expression is tried. The order changes no outcome (every
    /// part is a pure test).
    pub fn cheapest_first(self) -> Pred {
        match self {
            Pred::And(v) => Pred::And(sorted_by_cost(v)),
            Pred::Or(v) => Pred::Or(sorted_by_cost(v)),
            Pred::Not(p) => Pred::Not(Box::new(p.cheapest_first())),
            p => p,
        }
    }

    /// A rough cost of evaluating the predicate on one record (an `and` or
    /// `or` costs what all its parts do: an upper bound).
    pub(crate) fn cost(&self) -> usize {
        match self {
            Pred::Const(_) => 0,
            Pred::IsNull(_) => 1,
            Pred::Not(p) => p.cost(),
            Pred::And(v) | Pred::Or(v) => v.iter().map(Pred::cost).sum(),
            Pred::Any(_, t) => {
                2 + match t {
                    Test::Num(..) | Test::Long(..) | Test::Bool(_) | Test::StrOrd(..) => 1,
                    Test::StrIn(v) => 1 + v.len() / 8,
                    Test::StrInFold(v) => 4 + v.len() / 2,
                    Test::StartsWith { needles, .. } | Test::EndsWith { needles, .. } => 2 + needles.len() / 4,
                    Test::Contains { needles, .. } => 4 + needles.len(),
                    Test::Wildcard { patterns, .. } => 3 + patterns.len(),
                    Test::IpIn(_) | Test::CidrIn(_) => 8,
                    Test::Regex(v) | Test::RegexKeyword(v) => 30 * v.len(),
                }
            }
        }
    }

    /// Evaluate against one record's fields.
    pub fn eval(&self, f: &Fields) -> bool {
        match self {
            Pred::Const(b) => *b,
            Pred::And(v) => v.iter().all(|p| p.eval(f)),
            Pred::Or(v) => v.iter().any(|p| p.eval(f)),
            Pred::Not(p) => !p.eval(f),
            Pred::IsNull(s) => f.is_null(*s),
            Pred::Any(s, t) => f.get(*s).any(|v| t.check(v)),
        }
    }
}

/// Parts of an `and` or `or`, each with its own parts ordered, cheapest
/// first (stable).
fn sorted_by_cost(v: Vec<Pred>) -> Vec<Pred> {
    let mut v: Vec<(usize, Pred)> = v.into_iter().map(|p| p.cheapest_first()).map(|p| (p.cost(), p)).collect();
    v.sort_by_key(|(c, _)| *c);
    v.into_iter().map(|(_, p)| p).collect()
}

impl CompiledStage {
    /// Category membership and the stage's condition.
    pub fn matches(&self, f: &Fields, category_slot: Slot) -> bool {
        self.in_category(f, category_slot) && self.predicate.eval(f)
    }

    /// The record is of the stage's category (any, for `any where`).
    pub fn in_category(&self, f: &Fields, category_slot: Slot) -> bool {
        self.category.as_ref().is_none_or(|cat| f.get(category_slot).any(|v| matches!(v, Scalar::Str(s) if s.as_ref() == cat.as_str())))
    }
}

impl CompiledQuery {
    /// False when a field typed as IP holds a value that is not an address:
    /// Elasticsearch could not index such a document, so it matches nothing.
    pub fn ips_valid(&self, f: &Fields) -> bool {
        self.ip_slots.iter().all(|&s| {
            f.get(s).all(|v| match v {
                Scalar::Null => true,
                Scalar::Str(x) => parse_ip(x).is_some(),
                _ => false,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_agree_with_a_plain_recursive_matcher() {
        // The reference: `*` any run, `?` one character, fold lower-cases
        // the value (patterns are given folded).
        fn reference(v: &[u8], p: &[u8]) -> bool {
            match p.split_first() {
                None => v.is_empty(),
                Some((b'*', rest)) => (0..=v.len()).any(|i| reference(&v[i..], rest)),
                Some((&c, rest)) => v.split_first().is_some_and(|(&x, vr)| (c == b'?' || c == x) && reference(vr, rest)),
            }
        }
        fn all(alphabet: &[u8], max: usize) -> Vec<String> {
            let mut out = vec![String::new()];
            let mut last = vec![String::new()];
            for _ in 0..max {
                last = last.iter().flat_map(|s| alphabet.iter().map(move |&c| format!("{s}{}", c as char))).collect();
                out.extend(last.iter().cloned());
            }
            out
        }
        let (values, patterns) = (all(b"abA", 5), all(b"ab*?", 4));
        for v in &values {
            for p in &patterns {
                assert_eq!(wildcard_match(v, p, false), reference(v.as_bytes(), p.as_bytes()), "{v:?} like {p:?}");
                let folded = v.to_ascii_lowercase();
                assert_eq!(wildcard_match(v, p, true), reference(folded.as_bytes(), p.as_bytes()), "{v:?} like~ {p:?}");
                let g = Glob::new(p.clone());
                assert_eq!(g.matches(v, v.is_ascii(), false), reference(v.as_bytes(), p.as_bytes()), "{v:?} like {p:?} (compiled)");
                assert_eq!(g.matches(v, v.is_ascii(), true), reference(folded.as_bytes(), p.as_bytes()), "{v:?} like~ {p:?} (compiled)");
            }
        }
    }

    /// The parts of an `and` are tested cheapest first, whatever their
    /// order in the query; the outcome is the query's.
    #[test]
    fn cheap_tests_come_first() {
        let q = r#"process where process.args : ("*a*b*", "*c*") and process.pid == 7 and process.name == null"#;
        let c = load(q).unwrap();
        let Pred::And(parts) = &c.stages[0].predicate else { panic!("an and: {:?}", c.stages[0].predicate) };
        assert!(matches!(parts[0], Pred::IsNull(_)), "{parts:?}");
        assert!(matches!(parts[1], Pred::Any(_, Test::Long(..))), "{parts:?}");
        assert!(matches!(parts[2], Pred::Any(_, Test::Wildcard { .. })), "{parts:?}");
        assert!(eval(q, r#"{"event":{"category":"process"},"process":{"pid":7,"args":["xaxbx"]}}"#));
        assert!(!eval(q, r#"{"event":{"category":"process"},"process":{"pid":7,"args":["xbxax"]}}"#));
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("bash", "b*", false));
        assert!(wildcard_match("bash", "*", false));
        assert!(wildcard_match("", "*", false));
        assert!(wildcard_match("bash", "b?s?", false));
        assert!(!wildcard_match("bash", "b?s", false));
        assert!(wildcard_match("/usr/bin/APT", "*/apt", true));
        assert!(!wildcard_match("/usr/bin/APT", "*/apt", false));
        assert!(wildcard_match("aXbXc", "a*b*c", false));
        assert!(!wildcard_match("aXbX", "a*b*c", false));
        assert!(wildcard_match("abcabd", "*abd", false));
    }

    fn load(q: &str) -> Result<CompiledQuery, RuleError> {
        let ast = crate::eql::parse(q, crate::eql::ParseLimits::default())?;
        compile(&ast, q)
    }

    fn err(q: &str) -> RuleError {
        load(q).expect_err(q)
    }

    #[test]
    fn load_time_errors_name_the_problem_and_place() {
        let e = err("process where\n  foo(process.name, \"x\")");
        assert_eq!(e.kind, RuleErrorKind::UnknownFunction);
        assert_eq!((e.line, e.column), (2, 3));
        assert!(e.message.contains("foo"), "{e}");
        let e = err("network where cidrmatch(destination.ip, \"10.0.0.0/8\", \"300.0.0.0/8\")");
        assert_eq!(e.kind, RuleErrorKind::BadArgument);
        assert_eq!(e.column, 55);
        let e = err("network where cidrMatch(\"1.2.3.4\", \"10.0.0.0/8\")");
        assert!(e.message.contains("field"), "{e}");
        let e = err("process where startsWith(process.name, 3)");
        assert!(e.message.contains("string"), "{e}");
        let e = err("process where startsWith(process.name)");
        assert!(e.message.contains("takes 2 arguments"), "{e}");
        let e = err("process where process.name == process.parent.name");
        assert_eq!(e.kind, RuleErrorKind::Unsupported);
        let e = err("process where process.name");
        assert!(e.message.contains("compare it"), "{e}");
        let e = err("network where destination.ip == \"not-an-ip\"");
        assert!(e.message.contains("IP field"), "{e}");
        let e = err("sequence [process where true] by a, b [network where true] by c");
        assert!(e.message.contains("same number of keys"), "{e}");
        assert!(e.to_string().contains('^'));
    }

    fn eval(q: &str, rec: &str) -> bool {
        let c = load(q).unwrap();
        let mut f = Fields::new();
        c.fields.extract(rec.as_bytes(), &mut f).unwrap();
        c.stages[0].matches(&f, c.category_slot)
    }

    #[test]
    fn operators() {
        let r = r#"{"event":{"category":"process"},"process":{"name":"Bash","pid":42,"args":["a","-c"]},"destination":{"ip":"10.1.2.3"}}"#;
        assert!(eval("process where process.name : \"ba*\"", r));
        assert!(eval("process where process.name : (\"x\", \"b?sh\")", r));
        assert!(!eval("process where process.name like \"ba*\"", r));
        assert!(eval("process where process.name like~ \"BA*\"", r));
        assert!(eval("process where process.name in~ (\"bash\")", r));
        assert!(!eval("process where process.name in (\"bash\")", r));
        assert!(eval("process where process.name not in (\"bash\")", r));
        assert!(eval("process where process.pid > 41 and process.pid <= 42 and process.pid != 7", r));
        assert!(eval("process where process.pid == 42 and process.pid in (1, 42)", r));
        assert!(eval("process where process.name >= \"B\" and process.name < \"C\"", r));
        assert!(eval("process where startsWith(process.name, \"Ba\") and endsWith(process.name, \"sh\")", r));
        assert!(!eval("process where startsWith(process.name, \"ba\")", r));
        assert!(eval("process where startsWith~(process.name, \"ba\")", r));
        assert!(eval("process where stringContains(process.name, \"as\")", r));
        assert!(eval("process where wildcard(process.name, \"x*\", \"B*h\")", r));
        assert!(eval("process where cidrMatch(destination.ip, \"10.0.0.0/8\")", r));
        assert!(eval("process where destination.ip == \"::ffff:10.1.2.3\"", r));
        assert!(eval("process where process.missing == null and process.name != null", r));
        assert!(eval("any where process.args == \"-c\"", r));
        assert!(!eval("network where true", r));
        assert!(eval("process where not (process.name == \"x\" or false)", r));
    }

    #[test]
    fn fold_eq() {
        assert!(eq_fold("ÄPT", &fold("äpt")));
        assert!(!eq_fold("APTX", &fold("apt")));
        assert!(eq_fold("ApT-1", &fold("apt-1")) && !eq_fold("ApT-1", &fold("apt-2")), "an ASCII value, byte by byte");
        assert!(eq_fold("\u{212A}", "k") && !eq_fold("K", "\u{212A}"), "the Kelvin sign lower-cases to k; an ASCII value never to it");
    }
}
