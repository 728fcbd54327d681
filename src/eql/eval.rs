//! Conditions: an event query's `where` clause compiled for the generic
//! engine, and evaluated on one event.
//!
//! The semantics are Elasticsearch's, which compiles a condition into a
//! Lucene query whose leaves are queries or scripts (`QueryTranslator`):
//!
//! * `and`, `or` and `not` work on whole events (two-valued): `not c` is
//!   true exactly when `c` is false, so `not x == "a"`, `x != "a"` and
//!   `not cidrMatch(ip, …)` are TRUE for an event without the field
//!   (`must_not`). `!=` is `not ==`.
//! * Every other condition (a comparison, `in`, `:`, `like`, `regex`, a
//!   boolean function) is an *atom*: true when ANY combination of the values
//!   of the fields it reads makes it true (a term query matches any value of a
//!   multi-valued field; a script runs over every combination of values).
//!   Inside an atom a missing field is null and null propagates: a comparison
//!   with null is never true.
//! * `x == null` is "x has no value" (`IsNull`, an `exists` query negated);
//!   `x != null` its negation.
//! * A field compared with a literal takes the literal in the field's type
//!   (a term or range query parses its value with the field's mapping): a
//!   keyword field compared with `1` compares with `"1"`, an `ip` field with
//!   `"10.0.0.0/8"` tests the block, a `date` field with
//!   `"2017-08-30T20:47:33Z"` compares instants.
//! * `endsWith(field, "…")` and `stringContains(field, "…")` are wildcard
//!   queries without escaping: a `*` or `?` in the literal acts as a wildcard
//!   (a quirk of Elasticsearch, kept). `startsWith(field, "…")` is a prefix
//!   query (no wildcards).
//! * The optimizer's rewrites that change results are applied:
//!   `f(…) == false` → `not f(…)`, `== true` dropped; `x and null` → null
//!   (false), `x or null` → `x`.
//!
//! String positions (`length`, `indexOf`, `substring`) count UTF-16 code
//! units, as Java's `String` does.

use super::ast::{ArithOp, CmpOp, EventQuery, Expr, Literal, MatchOp};
use super::lucene;
use super::types::{FieldInfo, FieldType, TypeMap};
use super::value::{compare, equals, literal_for, typed, Val};
use super::{RuleError, RuleErrorKind, Span};
use crate::format::event::{Fields, Scalar};
use crate::format::ip::Cidr;
use serde_json::Value;
use std::borrow::Cow;
use std::cell::{Cell, OnceCell};
use crate::eql::compile::apply;

/// Most value combinations one atom evaluates on one event.
pub const MAX_COMBINATIONS: usize = 4096;

/// The fields a compiled query reads, by slot.
#[derive(Debug, Clone, Default)]
pub struct FieldSet {
    /// The field names as written (after alias resolution).
    pub names: Vec<String>,
    /// Their types (`None`: dynamic).
    pub infos: Vec<Option<FieldInfo>>,
}

impl FieldSet {
    /// The slot of `name` (resolving an alias), interning it.
    pub fn intern(&mut self, name: &str, types: &TypeMap) -> usize {
        let resolved = types.resolve_alias(name).to_string();
        if let Some(i) = self.names.iter().position(|n| *n == resolved) {
            return i;
        }
        self.infos.push(types.get(&resolved));
        self.names.push(resolved);
        self.names.len() - 1
    }

    pub fn ty(&self, slot: usize) -> Option<FieldType> {
        self.infos[slot].as_ref().map(|i| i.ty)
    }

    pub fn info(&self, slot: usize) -> Option<&FieldInfo> {
        self.infos[slot].as_ref()
    }

    /// Read one field of the set from one event; counts malformed values.
    fn read_one(&self, event: Source<'_>, slot: usize, malformed: &Cell<u32>) -> Vec<Val> {
        let info = self.infos[slot].as_ref();
        let mut out = Vec::new();
        let mut add = |v: Result<Option<Val>, super::value::Malformed>| match v {
            Ok(Some(x)) => out.push(x),
            Ok(None) => {}
            Err(_) => malformed.set(malformed.get() + 1),
        };
        match event {
            Source::Tree(tree) => {
                let mut raw: Vec<&Value> = Vec::new();
                collect(tree, &self.names[slot], &mut raw);
                for v in raw {
                    add(typed(v, info));
                }
            }
            Source::Read(fields, slots) => {
                let Some(&at) = slots.fields.get(slot) else { return out };
                for s in fields.get(at) {
                    // (An object where the path ends holds no scalar.)
                    match s {
                        Scalar::Object => {}
                        // A string as a keyword (or untyped): as `typed`
                        // reads it, without the JSON value in between.
                        Scalar::Str(t) if info.is_none_or(|i| matches!(i.ty, FieldType::Keyword | FieldType::Text | FieldType::Other)) => {
                            let over = info.and_then(|i| i.ignore_above).is_some_and(|limit| t.chars().count() > limit);
                            add(Ok((!over).then(|| Val::Str(t.to_string()))));
                        }
                        _ => add(typed(&s.to_json(), info)),
                    }
                }
            }
        }
        out
    }
}

/// Where an event's values are read from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// The record's JSON tree (whole, or pruned to the paths read).
    Tree(&'a Value),
    /// What a `FieldTable` scan read from the record, when it is
    /// [`Fields::plain`]: each slot then holds, in order, exactly the
    /// scalars [`collect`] finds at its path in the record's tree (and an
    /// object marker where an object ends the path, skipped here). The
    /// slots of the paths read are in the [`ReadSlots`], made for that
    /// table by the engine reading them.
    Read(&'a Fields<'a>, &'a ReadSlots),
}

/// Where a query's fields (by slot of its [`FieldSet`]) and the fields it
/// carries (in order) are in a `FieldTable`'s read.
#[derive(Debug, Clone, Default)]
pub struct ReadSlots {
    pub fields: Vec<crate::format::event::Slot>,
    pub carry: Vec<crate::format::event::Slot>,
}

/// Every scalar under the dotted `path` in `v`: nested objects and dotted
/// keys are the same path (`a.b.c` is looked up as `a`, `a.b` and `a.b.c`
/// at the top, and so on below); arrays are flattened. The keys tried are
/// slices of `path` itself: nothing is allocated.
pub fn collect<'v>(v: &'v Value, path: &str, out: &mut Vec<&'v Value>) {
    collect_rest(v, Some(path), out)
}

/// Objects of at most this many members are looked through rather than
/// asked by key ([`member`]).
const SMALL_OBJECT: usize = 48;

/// The member `key` of `map`: a small object is looked through (cheaper
/// than hashing the key, as its map does), a large one asked.
fn member<'v>(map: &'v serde_json::Map<String, Value>, key: &str) -> Option<&'v Value> {
    if map.len() <= SMALL_OBJECT {
        map.iter().find(|(k, _)| k.as_str() == key).map(|(_, v)| v)
    } else {
        map.get(key)
    }
}

/// [`collect`] with what is left of the path (`None`: none).
fn collect_rest<'v>(v: &'v Value, rest: Option<&str>, out: &mut Vec<&'v Value>) {
    match v {
        Value::Array(items) => {
            for it in items {
                collect_rest(it, rest, out);
            }
        }
        Value::Object(map) => {
            let Some(rest) = rest else { return };
            // Every split of the remaining path into one (dotted) key, the
            // shortest first.
            let ends = rest.match_indices('.').map(|(i, _)| i).chain(std::iter::once(rest.len()));
            for end in ends {
                if let Some(child) = member(map, &rest[..end]) {
                    collect_rest(child, rest.get(end + 1..), out);
                }
            }
        }
        scalar => {
            if rest.is_none() {
                out.push(scalar);
            }
        }
    }
}

/// One event's values, by slot of a [`FieldSet`], each read from the event
/// the first time a condition asks for it: a condition that fails on its
/// first conjunct (its category, say) reads nothing else.
#[derive(Debug)]
pub struct Doc<'a> {
    src: (&'a FieldSet, Source<'a>),
    values: Vec<OnceCell<Vec<Val>>>,
    malformed: Cell<u32>,
}

impl<'a> Doc<'a> {
    /// The fields of `fields` in `event`.
    pub fn new(fields: &'a FieldSet, event: Source<'a>) -> Doc<'a> {
        let values = (0..fields.names.len()).map(|_| OnceCell::new()).collect();
        Doc { src: (fields, event), values, malformed: Cell::new(0) }
    }

    /// The values of a slot.
    pub fn get(&self, slot: usize) -> &[Val] {
        let Some(cell) = self.values.get(slot) else { return &[] };
        cell.get_or_init(|| self.src.0.read_one(self.src.1, slot, &self.malformed))
    }

    /// Values read so far that were dropped as malformed for their type.
    pub fn malformed(&self) -> u32 {
        self.malformed.get()
    }
}

/// A compiled condition (event level, two-valued).
#[derive(Debug, Clone)]
pub enum Cond {
    Const(bool),
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Not(Box<Cond>),
    /// The field has no value.
    Missing(usize),
    /// True when some combination of the values of `slots` makes `expr` true.
    Atom { expr: X, slots: Vec<usize> },
}

/// A value expression inside an atom.
#[derive(Debug, Clone)]
pub enum X {
    Lit(Val),
    /// A literal compared with a field that has no type (neither ECS nor the
    /// user's mapping): it takes the type of each value it meets, as
    /// Elasticsearch's dynamic mapping would have typed the field from its
    /// values (a string value makes `1` the keyword `"1"`; a number value
    /// makes `"1"` the number 1).
    DynLit(Val),
    Field(usize),
    Arith(ArithOp, Box<X>, Box<X>),
    Neg(Box<X>),
    Call(Func, bool, Vec<X>),
    Cmp(CmpOp, Box<X>, Box<X>),
    /// `in` / `in~`: equal to any of the values.
    In { subject: Box<X>, values: Vec<X>, fold: bool },
    /// `like`, `like~`, `:`: any of the wildcard patterns (already folded
    /// when `fold`).
    Wild { subject: Box<X>, patterns: Vec<crate::eql::compile::Glob>, fold: bool },
    Regex { subject: Box<X>, res: Vec<regex::Regex> },
    IsNull(Box<X>),
}

/// The functions of Elasticsearch's EQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Add,
    Between,
    CidrMatch,
    Concat,
    Divide,
    EndsWith,
    IndexOf,
    Length,
    Modulo,
    Multiply,
    Number,
    StartsWith,
    String,
    StringContains,
    Substring,
    Subtract,
    /// `wildcard(field, patterns…)`, kept from earlier EQL.
    Wildcard,
}

impl Func {
    fn lookup(name: &str) -> Option<(Func, usize, usize, bool)> {
        // (function, min args, max args, has a `~` form)
        let l = name.to_ascii_lowercase();
        Some(match l.as_str() {
            "add" => (Func::Add, 2, 2, false),
            "between" => (Func::Between, 3, 4, true),
            "cidrmatch" => (Func::CidrMatch, 2, usize::MAX, false),
            "concat" => (Func::Concat, 1, usize::MAX, false),
            "divide" => (Func::Divide, 2, 2, false),
            "endswith" => (Func::EndsWith, 2, 2, true),
            "indexof" => (Func::IndexOf, 2, 3, true),
            "length" => (Func::Length, 1, 1, false),
            "modulo" => (Func::Modulo, 2, 2, false),
            "multiply" => (Func::Multiply, 2, 2, false),
            "number" => (Func::Number, 1, 2, false),
            "startswith" => (Func::StartsWith, 2, 2, true),
            "string" => (Func::String, 1, 1, false),
            "stringcontains" => (Func::StringContains, 2, 2, true),
            "substring" => (Func::Substring, 2, 3, false),
            "subtract" => (Func::Subtract, 2, 2, false),
            "wildcard" => (Func::Wildcard, 2, usize::MAX, true),
            _ => return None,
        })
    }

    fn is_predicate(self) -> bool {
        matches!(self, Func::CidrMatch | Func::EndsWith | Func::StartsWith | Func::StringContains | Func::Wildcard)
    }
}

/// The names of the functions, for messages.
pub const FUNCTION_NAMES: &str = "add, between, cidrMatch, concat, divide, endsWith, indexOf, length, modulo, multiply, number, startsWith, string, stringContains, substring, subtract, wildcard";

/// Compiles conditions against one [`FieldSet`].
pub struct CondCompiler<'a> {
    pub source: &'a str,
    pub types: &'a TypeMap,
    pub fields: FieldSet,
}

impl<'a> CondCompiler<'a> {
    pub fn new(source: &'a str, types: &'a TypeMap) -> Self {
        CondCompiler { source, types, fields: FieldSet::default() }
    }

    fn err(&self, kind: RuleErrorKind, msg: impl Into<String>, span: Span) -> RuleError {
        RuleError::at(kind, msg, self.source, span)
    }

    /// `category where cond`: the category test and the condition.
    pub fn event_query(&mut self, q: &EventQuery) -> Result<Cond, RuleError> {
        let cond = self.cond(&q.condition)?;
        Ok(match &q.category {
            None => cond,
            Some(cat) => {
                let slot = self.fields.intern("event.category", self.types);
                let lit = literal_for(&Val::Str(cat.clone()), self.fields.info(slot)).unwrap_or(Val::Null);
                let test = Cond::Atom {
                    expr: X::Cmp(CmpOp::Eq, Box::new(X::Field(slot)), Box::new(X::Lit(lit))),
                    slots: vec![slot],
                };
                match cond {
                    Cond::Const(true) => test,
                    c => Cond::And(vec![test, c]),
                }
            }
        })
    }

    /// A condition.
    pub fn cond(&mut self, e: &Expr) -> Result<Cond, RuleError> {
        Ok(match e {
            Expr::And(v, _) => {
                let items = v.iter().map(|x| self.cond(x)).collect::<Result<Vec<_>, _>>()?;
                if items.iter().any(|c| matches!(c, Cond::Const(false))) {
                    Cond::Const(false)
                } else {
                    let items: Vec<Cond> = items.into_iter().filter(|c| !matches!(c, Cond::Const(true))).collect();
                    match items.len() {
                        0 => Cond::Const(true),
                        1 => items.into_iter().next().unwrap_or(Cond::Const(true)),
                        _ => Cond::And(items),
                    }
                }
            }
            Expr::Or(v, _) => {
                let items = v.iter().map(|x| self.cond(x)).collect::<Result<Vec<_>, _>>()?;
                if items.iter().any(|c| matches!(c, Cond::Const(true))) {
                    Cond::Const(true)
                } else {
                    let items: Vec<Cond> = items.into_iter().filter(|c| !matches!(c, Cond::Const(false))).collect();
                    match items.len() {
                        0 => Cond::Const(false),
                        1 => items.into_iter().next().unwrap_or(Cond::Const(false)),
                        _ => Cond::Or(items),
                    }
                }
            }
            Expr::Not(x, _) => match self.cond(x)? {
                Cond::Const(b) => Cond::Const(!b),
                c => Cond::Not(Box::new(c)),
            },
            Expr::Literal(Literal::Bool(b), _) => Cond::Const(*b),
            // `where null`: null is false.
            Expr::Literal(Literal::Null, _) => Cond::Const(false),
            Expr::Literal(_, span) => {
                return Err(self.err(RuleErrorKind::BadArgument, "a string or number is not a condition", *span))
            }
            Expr::Field(_) => {
                // A field standing alone is `field == true`.
                let x = self.value(e)?;
                self.atom(X::Cmp(CmpOp::Eq, Box::new(x), Box::new(X::Lit(Val::Bool(true)))))
            }
            Expr::Arith { span, .. } | Expr::Neg(_, span) => {
                return Err(self.err(
                    RuleErrorKind::BadArgument,
                    "arithmetic is not a condition; compare it with a value",
                    *span,
                ))
            }
            Expr::Compare { op, left, right, span } => self.compare(*op, left, right, *span)?,
            Expr::Match { op, negated, subject, values, span } => {
                let c = self.matching(*op, subject, values, *span)?;
                if *negated {
                    match c {
                        Cond::Const(b) => Cond::Const(!b),
                        c => Cond::Not(Box::new(c)),
                    }
                } else {
                    c
                }
            }
            Expr::Call { name, span, .. } => {
                let x = self.value(e)?;
                if let X::Call(f, _, _) = &x {
                    if !f.is_predicate() {
                        return Err(self.err(
                            RuleErrorKind::BadArgument,
                            format!("`{name}` returns a value, not a condition; compare it with a value"),
                            *span,
                        ));
                    }
                }
                self.atom(x)
            }
        })
    }

    /// An atom over the slots its expression reads.
    fn atom(&self, expr: X) -> Cond {
        if let X::Lit(v) = &expr {
            return Cond::Const(matches!(v, Val::Bool(true)));
        }
        let mut slots = Vec::new();
        slots_of(&expr, &mut slots);
        if slots.is_empty() {
            // Constant: fold it.
            return Cond::Const(matches!(*eval_env(&expr, &[], &[]), Val::Bool(true)));
        }
        Cond::Atom { expr, slots }
    }

    fn compare(&mut self, op: CmpOp, left: &Expr, right: &Expr, span: Span) -> Result<Cond, RuleError> {
        let is_null = |e: &Expr| matches!(e, Expr::Literal(Literal::Null, _));
        // `x == null` / `x != null`.
        if is_null(left) || is_null(right) {
            let other = if is_null(left) { right } else { left };
            let test = if is_null(other) {
                Cond::Const(true)
            } else if let Expr::Field(f) = other {
                Cond::Missing(self.fields.intern(&f.name, self.types))
            } else {
                let x = self.value(other)?;
                self.atom(X::IsNull(Box::new(x)))
            };
            return match op {
                CmpOp::Eq => Ok(test),
                CmpOp::Ne => Ok(negate(test)),
                _ => Err(self.err(RuleErrorKind::BadArgument, "null can only be compared with == or !=", span)),
            };
        }
        // `f(…) == true/false` on a boolean function.
        let bool_lit = |e: &Expr| match e {
            Expr::Literal(Literal::Bool(b), _) => Some(*b),
            _ => None,
        };
        let is_pred_call = |e: &Expr| matches!(e, Expr::Call { name, .. } if Func::lookup(name).is_some_and(|f| f.0.is_predicate()));
        if matches!(op, CmpOp::Eq | CmpOp::Ne) {
            let (b, other) = match (bool_lit(left), bool_lit(right)) {
                (_, Some(b)) if is_pred_call(left) => (Some(b), left),
                (Some(b), _) if is_pred_call(right) => (Some(b), right),
                _ => (None, left),
            };
            if let Some(b) = b {
                let c = self.cond(other)?;
                let positive = b == (op == CmpOp::Eq);
                return Ok(if positive { c } else { negate(c) });
            }
        }
        let l = self.value(left)?;
        let r = self.value(right)?;
        let (l, r) = self.coerce_pair(l, r);
        if op == CmpOp::Ne {
            return Ok(negate(self.atom(X::Cmp(CmpOp::Eq, Box::new(l), Box::new(r)))));
        }
        Ok(self.atom(X::Cmp(op, Box::new(l), Box::new(r))))
    }

    /// A literal compared with a field takes the field's type.
    fn coerce_pair(&self, l: X, r: X) -> (X, X) {
        let typed = |s: usize, v: &Val| match self.fields.info(s) {
            Some(info) => X::Lit(literal_for(v, Some(info)).unwrap_or(Val::Null)),
            None => X::DynLit(v.clone()),
        };
        match (&l, &r) {
            (X::Field(s), X::Lit(v)) => {
                let v = typed(*s, v);
                (l, v)
            }
            (X::Lit(v), X::Field(s)) => (typed(*s, v), r),
            _ => (l, r),
        }
    }

    fn constant_string(&self, e: &Expr, op: &str) -> Result<String, RuleError> {
        match e {
            Expr::Literal(Literal::Str(s), _) => Ok(s.clone()),
            Expr::Literal(l, span) => {
                let what = match l {
                    Literal::Int(_) | Literal::Float(_) => "a number",
                    Literal::Bool(_) => "a boolean",
                    _ => "null",
                };
                let hint = if op == ":" { "; use == to compare with it" } else { "" };
                Err(self.err(RuleErrorKind::BadArgument, format!("'{op}' takes string constants, not {what}{hint}"), *span))
            }
            other => Err(self.err(
                RuleErrorKind::BadArgument,
                format!("'{op}' takes string constants on its right, not a field or expression (use == to compare with a field)"),
                other.span(),
            )),
        }
    }

    fn matching(&mut self, op: MatchOp, subject: &Expr, values: &[Expr], span: Span) -> Result<Cond, RuleError> {
        let _ = span;
        let subj = self.value(subject)?;
        let op_name = match op {
            MatchOp::In => "in",
            MatchOp::InInsensitive => "in~",
            MatchOp::Colon => ":",
            MatchOp::Like => "like",
            MatchOp::LikeInsensitive => "like~",
            MatchOp::Regex => "regex",
            MatchOp::RegexInsensitive => "regex~",
        };
        match op {
            MatchOp::In | MatchOp::InInsensitive => {
                let fold = op == MatchOp::InInsensitive;
                let mut xs = Vec::new();
                let mut has_null = false;
                for v in values {
                    if let Expr::Literal(Literal::Null, _) = v {
                        has_null = true;
                        continue;
                    }
                    let x = self.value(v)?;
                    let (_, x) = self.coerce_pair(subj.clone(), x);
                    let x = match x {
                        X::Lit(Val::Str(s)) if fold => X::Lit(Val::Str(fold_str(&s))),
                        x => x,
                    };
                    xs.push(x);
                }
                let mut alts = Vec::new();
                if !xs.is_empty() {
                    alts.push(self.atom(X::In { subject: Box::new(subj.clone()), values: xs, fold }));
                }
                // A null in the list matches nothing: Elasticsearch's `In`
                // drops null entries from a terms query, and a script's
                // equality with null is null (`InComparisons`, `InProcessor`).
                let _ = has_null;
                Ok(match alts.len() {
                    0 => Cond::Const(false),
                    1 => alts.pop().unwrap_or(Cond::Const(false)),
                    _ => Cond::Or(alts),
                })
            }
            MatchOp::Colon | MatchOp::Like | MatchOp::LikeInsensitive => {
                let fold = op != MatchOp::Like;
                let mut patterns = Vec::new();
                for v in values {
                    let s = self.constant_string(v, op_name)?;
                    patterns.push(if fold { fold_str(&s) } else { s });
                }
                let patterns = patterns.into_iter().map(crate::eql::compile::Glob::new).collect();
                Ok(self.atom(X::Wild { subject: Box::new(subj), patterns, fold }))
            }
            MatchOp::Regex | MatchOp::RegexInsensitive => {
                let ci = op == MatchOp::RegexInsensitive;
                let mut res = Vec::new();
                for v in values {
                    let s = self.constant_string(v, op_name)?;
                    let re = lucene::compile(&s, ci).map_err(|e| {
                        self.err(RuleErrorKind::Unsupported, format!("regular expression \"{s}\": {e}"), v.span())
                    })?;
                    res.push(re);
                }
                Ok(self.atom(X::Regex { subject: Box::new(subj), res }))
            }
        }
    }

    /// A value expression.
    pub fn value(&mut self, e: &Expr) -> Result<X, RuleError> {
        Ok(match e {
            Expr::Field(f) => X::Field(self.fields.intern(&f.name, self.types)),
            Expr::Literal(l, _) => X::Lit(match l {
                Literal::Str(s) => Val::Str(s.clone()),
                Literal::Int(i) => Val::Long(*i),
                Literal::Float(f) => Val::Double(*f),
                Literal::Bool(b) => Val::Bool(*b),
                Literal::Null => Val::Null,
            }),
            Expr::Arith { op, left, right, .. } => {
                X::Arith(*op, Box::new(self.value(left)?), Box::new(self.value(right)?))
            }
            Expr::Neg(x, _) => X::Neg(Box::new(self.value(x)?)),
            Expr::Call { name, case_insensitive, args, span } => self.call(name, *case_insensitive, args, *span)?,
            Expr::And(_, s) | Expr::Or(_, s) | Expr::Not(_, s) => {
                return Err(self.err(RuleErrorKind::BadArgument, "a condition cannot be used as a value here", *s))
            }
            Expr::Compare { span, .. } | Expr::Match { span, .. } => {
                return Err(self.err(RuleErrorKind::BadArgument, "a comparison cannot be used as a value here", *span))
            }
        })
    }

    fn call(&mut self, name: &str, ci: bool, args: &[Expr], span: Span) -> Result<X, RuleError> {
        let Some((f, min, max, has_ci)) = Func::lookup(name) else {
            return Err(self.err(
                RuleErrorKind::UnknownFunction,
                format!("unknown function `{name}`; Elasticsearch's EQL functions are: {FUNCTION_NAMES}"),
                span,
            ));
        };
        if ci && !has_ci {
            return Err(self.err(RuleErrorKind::BadArgument, format!("`{name}` has no case-insensitive form (`{name}~`)"), span));
        }
        if args.len() < min || args.len() > max {
            let want = match (min, max) {
                (a, b) if a == b => format!("{a}"),
                (a, usize::MAX) => format!("at least {a}"),
                (a, b) => format!("{a} to {b}"),
            };
            return Err(self.err(
                RuleErrorKind::BadArgument,
                format!("`{name}` takes {want} arguments, got {}", args.len()),
                span,
            ));
        }
        let mut xs = args.iter().map(|a| self.value(a)).collect::<Result<Vec<_>, _>>()?;
        match f {
            Func::CidrMatch => {
                for (i, a) in args.iter().enumerate().skip(1) {
                    let s = self.constant_string(a, "cidrMatch")?;
                    let c = Cidr::parse(&s).ok_or_else(|| {
                        self.err(RuleErrorKind::BadArgument, format!("\"{s}\" is not an IP address or CIDR block"), a.span())
                    })?;
                    xs[i] = X::Lit(Val::Cidr(c));
                }
            }
            // Wildcard queries without escaping, on a field.
            Func::EndsWith | Func::StringContains if matches!(xs[0], X::Field(_)) => {
                if let X::Lit(Val::Str(s)) = &xs[1] {
                    if s.contains(['*', '?']) {
                        let p = if f == Func::EndsWith { format!("*{s}") } else { format!("*{s}*") };
                        let p = if ci { fold_str(&p) } else { p };
                        return Ok(X::Wild { subject: Box::new(xs.swap_remove(0)), patterns: vec![crate::eql::compile::Glob::new(p)], fold: ci });
                    }
                }
            }
            Func::Wildcard => {
                let mut patterns = Vec::new();
                for a in &args[1..] {
                    let s = self.constant_string(a, "wildcard")?;
                    patterns.push(if ci { fold_str(&s) } else { s });
                }
                let patterns = patterns.into_iter().map(crate::eql::compile::Glob::new).collect();
                return Ok(X::Wild { subject: Box::new(xs.swap_remove(0)), patterns, fold: ci });
            }
            _ => {}
        }
        Ok(X::Call(f, ci, xs))
    }
}

fn negate(c: Cond) -> Cond {
    match c {
        Cond::Const(b) => Cond::Const(!b),
        Cond::Not(inner) => *inner,
        c => Cond::Not(Box::new(c)),
    }
}

fn slots_of(x: &X, out: &mut Vec<usize>) {
    let mut add = |s: usize| {
        if !out.contains(&s) {
            out.push(s)
        }
    };
    match x {
        X::Lit(_) | X::DynLit(_) => {}
        X::Field(s) => add(*s),
        X::Arith(_, a, b) | X::Cmp(_, a, b) => {
            slots_of(a, out);
            slots_of(b, out);
        }
        X::Neg(a) | X::IsNull(a) => slots_of(a, out),
        X::Wild { subject, .. } | X::Regex { subject, .. } => slots_of(subject, out),
        X::Call(_, _, args) => args.iter().for_each(|a| slots_of(a, out)),
        X::In { subject, values, .. } => {
            slots_of(subject, out);
            values.iter().for_each(|a| slots_of(a, out));
        }
    }
}

/// Lower-case as case-insensitive comparisons do.
pub fn fold_str(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

/// Evaluate a condition on an event.
pub fn test(c: &Cond, doc: &Doc) -> bool {
    match c {
        Cond::Const(b) => *b,
        Cond::And(v) => v.iter().all(|c| test(c, doc)),
        Cond::Or(v) => v.iter().any(|c| test(c, doc)),
        Cond::Not(c) => !test(c, doc),
        Cond::Missing(s) => doc.get(*s).is_empty(),
        Cond::Atom { expr, slots } => atom_true(expr, slots, doc),
    }
}

/// Some combination of the slots' values makes `expr` true. (Up to
/// [`SMALL_ATOM`] slots, nearly every atom, on the stack: no allocation.)
fn atom_true(expr: &X, slots: &[usize], doc: &Doc) -> bool {
    if slots.len() <= SMALL_ATOM {
        let n = slots.len();
        let (mut pick, mut lens, mut env) = ([0usize; SMALL_ATOM], [1usize; SMALL_ATOM], [&NULL_VAL; SMALL_ATOM]);
        for (i, s) in slots.iter().enumerate() {
            lens[i] = doc.get(*s).len().max(1);
        }
        combinations(expr, slots, doc, &mut pick[..n], &lens[..n], &mut env[..n])
    } else {
        let mut pick = vec![0usize; slots.len()];
        let lens: Vec<usize> = slots.iter().map(|s| doc.get(*s).len().max(1)).collect();
        let mut env: Vec<&Val> = vec![&NULL_VAL; slots.len()];
        combinations(expr, slots, doc, &mut pick, &lens, &mut env)
    }
}

/// Slots of an atom [`atom_true`] keeps on the stack.
const SMALL_ATOM: usize = 4;

/// A missing value, as an atom sees it.
static NULL_VAL: Val = Val::Null;

/// [`atom_true`]: from the combination `pick` (one value index per slot,
/// each below its `lens`), every combination in turn, at most
/// [`MAX_COMBINATIONS`]; `env` is scratch, one value per slot.
fn combinations<'d>(expr: &X, slots: &[usize], doc: &'d Doc, pick: &mut [usize], lens: &[usize], env: &mut [&'d Val]) -> bool {
    for _ in 0..MAX_COMBINATIONS {
        for (i, s) in slots.iter().enumerate() {
            env[i] = doc.get(*s).get(pick[i]).unwrap_or(&NULL_VAL);
        }
        if let Val::Bool(true) = *eval_env(expr, slots, env) {
            return true;
        }
        // Next combination.
        let mut i = 0;
        loop {
            if i == pick.len() {
                return false;
            }
            pick[i] += 1;
            if pick[i] < lens[i] {
                break;
            }
            pick[i] = 0;
            i += 1;
        }
    }
    false
}

fn bound<'v>(slot: usize, slots: &[usize], env: &[&'v Val]) -> &'v Val {
    const NULL: &Val = &Val::Null;
    slots.iter().position(|s| *s == slot).and_then(|i| env.get(i).copied()).unwrap_or(NULL)
}

/// The value of `x` for one combination of its slots' values (`env`):
/// borrowed where it is a literal or a field's value as it stands, so that
/// a test of a field against literals copies no string.
fn eval_env<'v>(x: &'v X, slots: &[usize], env: &[&'v Val]) -> Cow<'v, Val> {
    match x {
        X::Lit(v) | X::DynLit(v) => Cow::Borrowed(v),
        X::Field(s) => Cow::Borrowed(bound(*s, slots, env)),
        X::Arith(op, a, b) => Cow::Owned(arith(*op, &eval_env(a, slots, env), &eval_env(b, slots, env))),
        X::Neg(a) => Cow::Owned(match *eval_env(a, slots, env) {
            Val::Long(i) => i.checked_neg().map(Val::Long).unwrap_or(Val::Null),
            Val::Double(d) => Val::Double(-d),
            _ => Val::Null,
        }),
        X::Cmp(op, ax, bx) => {
            let (mut a, mut b) = (eval_env(ax, slots, env), eval_env(bx, slots, env));
            if let X::DynLit(_) = **bx {
                b = Cow::Owned(dyn_coerce(&b, &a));
            } else if let X::DynLit(_) = **ax {
                a = Cow::Owned(dyn_coerce(&a, &b));
            }
            if a.is_null() || b.is_null() {
                return Cow::Owned(Val::Null);
            }
            let r = if *op == CmpOp::Eq || *op == CmpOp::Ne {
                equals(&a, &b).map(|e| e == (*op == CmpOp::Eq))
            } else {
                compare(&a, &b).map(|o| apply(*op, o))
            };
            Cow::Owned(r.map(Val::Bool).unwrap_or(Val::Null))
        }
        X::IsNull(a) => Cow::Owned(Val::Bool(eval_env(a, slots, env).is_null())),
        X::In { subject, values, fold } => {
            let s = eval_env(subject, slots, env);
            if s.is_null() {
                return Cow::Owned(Val::Null);
            }
            let s = if *fold { fold_val(s) } else { s };
            for vx in values {
                let v = eval_env(vx, slots, env);
                let v = if let X::DynLit(_) = vx { Cow::Owned(dyn_coerce(&v, &s)) } else { v };
                let v = if *fold { fold_val(v) } else { v };
                if equals(&s, &v) == Some(true) {
                    return Cow::Owned(Val::Bool(true));
                }
            }
            Cow::Owned(Val::Bool(false))
        }
        X::Wild { subject, patterns, fold } => Cow::Owned(match eval_env(subject, slots, env).text_cow() {
            None => Val::Null,
            Some(t) => {
                // (An ASCII value is folded as it is matched; others first.)
                let ascii = t.is_ascii();
                let (t, fold) = if *fold && !ascii { (Cow::Owned(fold_str(&t)), false) } else { (t, *fold) };
                Val::Bool(patterns.iter().any(|p| p.matches(&t, ascii, fold)))
            }
        }),
        X::Regex { subject, res } => Cow::Owned(match eval_env(subject, slots, env).text_cow() {
            None => Val::Null,
            Some(t) => Val::Bool(res.iter().any(|r| r.is_match(&t))),
        }),
        X::Call(f, ci, args) => {
            let vals: Vec<Val> = args.iter().map(|a| eval_env(a, slots, env).into_owned()).collect();
            Cow::Owned(call(*f, *ci, &vals))
        }
    }
}

/// A dynamic literal in the type of the value it is compared with.
fn dyn_coerce(lit: &Val, other: &Val) -> Val {
    let ty = match other {
        Val::Str(_) => FieldType::Keyword,
        Val::Long(_) => FieldType::Long,
        Val::Double(_) => FieldType::Double,
        Val::Bool(_) => FieldType::Boolean,
        _ => return lit.clone(),
    };
    let info = FieldInfo { ty, null_value: None, ignore_above: None, format: None };
    literal_for(lit, Some(&info)).unwrap_or(Val::Null)
}

fn fold_val(v: Cow<'_, Val>) -> Cow<'_, Val> {
    match &*v {
        Val::Str(s) => Cow::Owned(Val::Str(fold_str(s))),
        _ => v,
    }
}

/// Java arithmetic: integers stay integers (overflow and division by zero
/// are errors in Elasticsearch, null here), any double makes a double.
pub fn arith(op: ArithOp, a: &Val, b: &Val) -> Val {
    match (a, b) {
        (Val::Long(x), Val::Long(y)) => {
            let r = match op {
                ArithOp::Add => x.checked_add(*y),
                ArithOp::Sub => x.checked_sub(*y),
                ArithOp::Mul => x.checked_mul(*y),
                ArithOp::Div => x.checked_div(*y),
                ArithOp::Mod => x.checked_rem(*y),
            };
            r.map(Val::Long).unwrap_or(Val::Null)
        }
        _ => match (a.number(), b.number()) {
            (Some(x), Some(y)) => Val::Double(match op {
                ArithOp::Add => x + y,
                ArithOp::Sub => x - y,
                ArithOp::Mul => x * y,
                ArithOp::Div => x / y,
                ArithOp::Mod => x % y,
            }),
            _ => Val::Null,
        },
    }
}

fn utf16(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

fn from_utf16(u: &[u16]) -> String {
    String::from_utf16_lossy(u)
}

/// Java's `String.indexOf(sub, from)` over UTF-16 units.
fn index_of(hay: &[u16], needle: &[u16], from: usize) -> Option<usize> {
    if needle.is_empty() {
        return Some(from.min(hay.len()));
    }
    if needle.len() > hay.len() {
        return None;
    }
    (from..=hay.len() - needle.len()).find(|&i| &hay[i..i + needle.len()] == needle)
}

fn last_index_of(hay: &[u16], needle: &[u16]) -> Option<usize> {
    if needle.len() > hay.len() {
        return None;
    }
    (0..=hay.len() - needle.len()).rev().find(|&i| &hay[i..i + needle.len()] == needle)
}

fn text_arg(v: &Val, ci: bool) -> Option<String> {
    let t = v.text()?;
    Some(if ci { fold_str(&t) } else { t })
}

/// Evaluate a function on its argument values (null in → null out).
pub fn call(f: Func, ci: bool, a: &[Val]) -> Val {
    let b = |x: bool| Val::Bool(x);
    match f {
        Func::Add => arith(ArithOp::Add, &a[0], &a[1]),
        Func::Subtract => arith(ArithOp::Sub, &a[0], &a[1]),
        Func::Multiply => arith(ArithOp::Mul, &a[0], &a[1]),
        Func::Divide => arith(ArithOp::Div, &a[0], &a[1]),
        Func::Modulo => arith(ArithOp::Mod, &a[0], &a[1]),
        Func::CidrMatch => match &a[0] {
            Val::Ip(ip) => b(a[1..].iter().any(|c| matches!(c, Val::Cidr(c) if c.contains(*ip)))),
            Val::Str(s) => match crate::format::ip::parse_ip(s) {
                Some(ip) => b(a[1..].iter().any(|c| matches!(c, Val::Cidr(c) if c.contains(ip)))),
                None => Val::Null,
            },
            _ => Val::Null,
        },
        Func::Concat => {
            let mut out = String::new();
            for v in a {
                match v.text() {
                    Some(t) => out.push_str(&t),
                    None => return Val::Null,
                }
            }
            Val::Str(out)
        }
        Func::StartsWith | Func::EndsWith | Func::StringContains => {
            let (Some(s), Some(p)) = (text_arg(&a[0], ci), text_arg(&a[1], ci)) else { return Val::Null };
            b(match f {
                Func::StartsWith => s.starts_with(&p),
                Func::EndsWith => s.ends_with(&p),
                // `StringContainsFunctionProcessor`: an empty string or
                // substring is false.
                _ => !s.is_empty() && !p.is_empty() && s.contains(&p),
            })
        }
        Func::Wildcard => Val::Null,
        Func::Length => match a[0].text() {
            Some(s) => Val::Long(s.encode_utf16().count() as i64),
            None => Val::Null,
        },
        Func::String => match a[0].text() {
            Some(s) => Val::Str(s),
            None => Val::Null,
        },
        Func::Number => number(&a[0], a.get(1)),
        Func::IndexOf => {
            let (Some(s), Some(sub)) = (text_arg(&a[0], ci), text_arg(&a[1], ci)) else { return Val::Null };
            let from = match a.get(2) {
                None | Some(Val::Null) => 0i64,
                Some(Val::Long(i)) => *i,
                Some(_) => return Val::Null,
            };
            let (h, n) = (utf16(&s), utf16(&sub));
            match index_of(&h, &n, from.max(0) as usize) {
                Some(i) => Val::Long(i as i64),
                None => Val::Null,
            }
        }
        Func::Substring => {
            let Some(s) = a[0].text() else { return Val::Null };
            if a[1].is_null() {
                return Val::Str(s);
            }
            let u = utf16(&s);
            let n = u.len() as i64;
            let idx = |v: Option<&Val>, dflt: i64| -> Option<i64> {
                match v {
                    None | Some(Val::Null) => Some(dflt),
                    Some(Val::Long(i)) => Some(if *i < 0 { (n + i).max(0) } else { (*i).min(n) }),
                    _ => None,
                }
            };
            let (Some(st), Some(en)) = (idx(a.get(1), 0), idx(a.get(2), n)) else { return Val::Null };
            if st >= en {
                return Val::Str(String::new());
            }
            Val::Str(from_utf16(&u[st as usize..en as usize]))
        }
        Func::Between => {
            let (Some(src), Some(l), Some(r)) = (a[0].text(), a[1].text(), a[2].text()) else { return Val::Null };
            let greedy = match a.get(3) {
                None | Some(Val::Null) => false,
                Some(Val::Bool(g)) => *g,
                Some(_) => return Val::Null,
            };
            // `StringUtils.between`: an empty source or delimiter gives the
            // source unchanged.
            if src.is_empty() || l.is_empty() || r.is_empty() {
                return Val::Str(src);
            }
            let su = utf16(&src);
            let (m, lu, ru) = if ci {
                (utf16(&fold_str(&src)), utf16(&fold_str(&l)), utf16(&fold_str(&r)))
            } else {
                (su.clone(), utf16(&l), utf16(&r))
            };
            if m.len() != su.len() {
                // Lower-casing changed the length: match on the original.
                return between_units(&su, &utf16(&l), &utf16(&r), greedy);
            }
            let Some(start) = index_of(&m, &lu, 0) else { return Val::Str(String::new()) };
            let start = start + lu.len();
            let end = if greedy { last_index_of(&m, &ru) } else { index_of(&m, &ru, start) };
            match end {
                Some(e) if e >= start => Val::Str(from_utf16(&su[start..e])),
                _ => Val::Str(String::new()),
            }
        }
    }
}

fn between_units(s: &[u16], l: &[u16], r: &[u16], greedy: bool) -> Val {
    let Some(start) = index_of(s, l, 0) else { return Val::Str(String::new()) };
    let start = start + l.len();
    let end = if greedy { last_index_of(s, r) } else { index_of(s, r, start) };
    match end {
        Some(e) if e >= start => Val::Str(from_utf16(&s[start..e])),
        _ => Val::Str(String::new()),
    }
}

/// `number(s[, base])`: integers as long, else double; `0x` reads hex.
fn number(v: &Val, base: Option<&Val>) -> Val {
    let s = match v {
        Val::Null => return Val::Null,
        Val::Long(_) | Val::Double(_) => return v.clone(),
        other => match other.text() {
            Some(t) => t,
            None => return Val::Null,
        },
    };
    let t = s.trim();
    let base = match base {
        None | Some(Val::Null) => None,
        Some(Val::Long(b)) if (2..=36).contains(b) => Some(*b as u32),
        Some(_) => return Val::Null,
    };
    let (neg, body) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let hex = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X"));
    let (radix, digits) = match (base, hex) {
        (None, Some(h)) | (Some(16), Some(h)) => (16, h),
        (Some(b), _) => (b, body),
        (None, None) => (10, body),
    };
    if radix != 10 {
        return match i64::from_str_radix(digits, radix) {
            Ok(i) => Val::Long(if neg { -i } else { i }),
            Err(_) => Val::Null,
        };
    }
    if let Ok(i) = t.parse::<i64>() {
        return Val::Long(i);
    }
    match t.parse::<f64>() {
        Ok(d) if !t.eq_ignore_ascii_case("nan") && !t.to_ascii_lowercase().contains("inf") => Val::Double(d),
        _ => Val::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(v: &Value, path: &str) -> Vec<Value> {
        let mut out = Vec::new();
        collect(v, path, &mut out);
        out.into_iter().cloned().collect()
    }

    /// Nested objects and dotted keys are one path; the shorter split comes
    /// first whatever the members' order, in small objects (looked through)
    /// and large ones (asked by key) alike.
    #[test]
    fn dotted_and_nested_keys_are_one_path() {
        let small = serde_json::json!({"a.b": 1, "a": {"b": [2, {"c": 9}], "b.c": 3}, "a.b.c": 4, "ab": 5, "": {"x": 6}});
        let mut large = small.clone();
        for i in 0..2 * SMALL_OBJECT {
            large[format!("pad{i}")] = Value::from(i);
        }
        for v in [&small, &large] {
            assert_eq!(values(v, "a.b"), [Value::from(2), Value::from(1)]);
            assert_eq!(values(v, "a.b.c"), [Value::from(9), Value::from(3), Value::from(4)]);
            assert_eq!(values(v, "a"), Vec::<Value>::new(), "an object is no value");
            assert_eq!(values(v, ".x"), [Value::from(6)], "an empty key");
            assert_eq!(values(v, "a.x"), Vec::<Value>::new());
        }
        let many = serde_json::json!({"a": 1, "a.a": 2, "a.a.a": 3, "a.a.a.a": 4, "a.a.a.a.a": 5, "a.a.a.a.a.a": 6, "a.a.a.a.a.a.a": 7, "a.a.a.a.a.a.a.a": 8, "a.a.a.a.a.a.a.a.a": 9});
        assert_eq!(values(&many, "a.a.a.a.a.a.a.a.a"), [Value::from(9)], "a path of many splits");
    }
}
