//! The syntax tree of the EQL subset that Elastic's endpoint rules use.
//!
//! The parser (`super::parser`) produces it; `crate::eql::compile` turns it into
//! predicates. Every node that can be the subject of a load-time error carries
//! the [`Span`] of its source text so the error can point at it.

/// A byte range in the query text, plus the 1-based line and column of its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// Byte offset of the first character.
    pub start: usize,
    /// Byte offset one past the last character.
    pub end: usize,
    /// 1-based line of `start`.
    pub line: u32,
    /// 1-based column (in characters) of `start`.
    pub column: u32,
}

/// A whole query: one event query, or a sequence of them.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// `category where cond`
    Event(EventQuery),
    /// `sequence [by f, …] [with maxspan=N] [stage] [by …] … [until [stage]]`
    Sequence(Sequence),
    /// `sample [by f, …] [stage] [by …] …`
    Sample(Sample),
}

/// `sample [by f, …] stages…`: unordered, no maxspan.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Fields after `sample by` (shared join keys), possibly empty.
    pub by: Vec<Field>,
    /// The stages; at least two.
    pub stages: Vec<Stage>,
    /// Span of the `sample` keyword.
    pub span: Span,
}

/// `sequence [by f, …] [with maxspan=N(ms|s|m|h)] stages…`
#[derive(Debug, Clone, PartialEq)]
pub struct Sequence {
    /// Fields after `sequence by` (shared join keys), possibly empty.
    pub by: Vec<Field>,
    /// `with maxspan=…` converted to milliseconds, if present.
    pub maxspan_ms: Option<u64>,
    /// The stages, in order; at least two (counting `runs` repetitions).
    pub stages: Vec<Stage>,
    /// `until [query] [by …]`: a matching event drops the partial sequences
    /// of its key.
    pub until: Option<Stage>,
    /// Span of the `sequence` keyword.
    pub span: Span,
}

impl Sequence {
    /// The stages with each `with runs=N` stage N times, as Elasticsearch's
    /// parser expands them: the stages a sequence runs, in order.
    pub fn expanded_stages(&self) -> impl Iterator<Item = &Stage> {
        self.stages.iter().flat_map(|st| std::iter::repeat_n(st, st.runs as usize))
    }
}

/// `[category where cond] [by f, …]`
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub query: EventQuery,
    /// Fields after the stage's `by`, possibly empty.
    pub by: Vec<Field>,
    /// Span of the opening `[` (of the `!` for a missing-event stage).
    pub span: Span,
    /// `with runs=N`: the stage repeated N times (1 without it).
    pub runs: u32,
    /// `![…]`: a missing-event stage.
    pub missing: bool,
}

/// `category where cond`
#[derive(Debug, Clone, PartialEq)]
pub struct EventQuery {
    /// `None` for `any`; otherwise the category name (`process`, `network`, …).
    pub category: Option<String>,
    pub condition: Expr,
    pub span: Span,
}

/// A field reference such as `process.parent.name` (or a backquoted name).
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The full dotted name as written, e.g. `process.parent.name`.
    pub name: String,
    pub span: Span,
    /// `?field`: an optional field (null where no event has it).
    pub optional: bool,
}

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// A string with escapes already resolved.
    Str(String),
    /// An integer literal.
    Int(i64),
    /// A literal with a fraction or exponent.
    Float(f64),
    Bool(bool),
    Null,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// The string-matching operators that take one value or a parenthesised list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `in (…)`: exact, case-sensitive.
    In,
    /// `in~ (…)`: exact, case-insensitive.
    InInsensitive,
    /// `:`: case-insensitive, with `*` and `?` wildcards.
    Colon,
    /// `like`: case-sensitive wildcards.
    Like,
    /// `like~`: case-insensitive wildcards.
    LikeInsensitive,
    /// `regex`: a Lucene regular expression on the whole value.
    Regex,
    /// `regex~`: the same, case-insensitive.
    RegexInsensitive,
}

/// An arithmetic operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

/// An expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Vec<Expr>, Span),
    Or(Vec<Expr>, Span),
    Not(Box<Expr>, Span),
    /// `left op right` where either side is a field, literal or function call.
    Compare {
        op: CmpOp,
        left: Box<Expr>,
        right: Box<Expr>,
        span: Span,
    },
    /// `field in (…)`, `field in~ (…)`, `field : v`, `field : (…)`,
    /// `field like v`, `field like~ (…)`; `negated` is set for `field not in (…)`
    /// (and the other `not <op>` forms).
    Match {
        op: MatchOp,
        negated: bool,
        subject: Box<Expr>,
        values: Vec<Expr>,
        span: Span,
    },
    /// `name(args…)`; `case_insensitive` is set for the `name~(…)` form.
    /// `name` is kept as written; function names are case-insensitive.
    Call {
        name: String,
        case_insensitive: bool,
        args: Vec<Expr>,
        span: Span,
    },
    /// `left op right`, arithmetic.
    Arith {
        op: ArithOp,
        left: Box<Expr>,
        right: Box<Expr>,
        span: Span,
    },
    /// `-x`.
    Neg(Box<Expr>, Span),
    Field(Field),
    Literal(Literal, Span),
}

impl Expr {
    /// The source span of this expression.
    pub fn span(&self) -> Span {
        match self {
            Expr::And(_, s) | Expr::Or(_, s) | Expr::Not(_, s) | Expr::Neg(_, s) | Expr::Literal(_, s) => *s,
            Expr::Compare { span, .. }
            | Expr::Match { span, .. }
            | Expr::Call { span, .. }
            | Expr::Arith { span, .. } => *span,
            Expr::Field(f) => f.span,
        }
    }
}
