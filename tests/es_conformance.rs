//! Elasticsearch's own EQL QA suite, run against the streaming engine
//! (`apt_netcon::eql::Engine`).
//!
//! # Where the suite comes from
//!
//! The spec files (`test_*.toml`), datasets and mappings are Elastic's, copied
//! unchanged from `elastic/elasticsearch`,
//! `x-pack/plugin/eql/qa/common/src/main/resources/`, into
//! `../shared/conformance/elasticsearch-eql/` (next to this project, never into
//! it). `ORIGIN.md` there says which commit each file comes from and how
//! Elasticsearch's own Java runner uses them; `../shared/spec/EQL.md` gives
//! the semantics. This test reads the folder through
//! `CARGO_MANIFEST_DIR/../shared/conformance/elasticsearch-eql`; when it is
//! absent the test prints `skipped: suite not present` and passes.
//!
//! # What it does (the rules followed)
//!
//! 1. **Which specs.** As Elasticsearch's runner: the endgame specs are
//!    `test_queries.toml` + `additional_test_queries.toml` +
//!    `test_queries_date.toml`, minus every spec equal to an entry of
//!    `test_queries_unsupported.toml` (equal = the trimmed query text and the
//!    case flag, not the name); plus every spec of `test_extra.toml`,
//!    `test_missing_events.toml` and `test_sample.toml`. That is the 249 specs
//!    Elasticsearch runs. The spec TOML writes `join_keys = [null]`, which
//!    Elasticsearch's lenient TOML reader takes and strict TOML does not: a
//!    bare `null` value is read as the string `"null"` (what the runner
//!    compares a null key with anyway).
//! 2. **The era rewrite.** `test_queries.toml` (and `additional_test_queries.toml`,
//!    see below) are 2020 files that spell numeric equality `:`. Outside string
//!    literals (`"…"`, `'…'`, `"""…"""`, `?"…"`), back-quoted names and
//!    comments, `:` / `!:` whose right-hand side is a number (signed or not),
//!    `null`, `true` or `false` become `==` / `!=`, and `x !: "s"` (or a list
//!    of strings) becomes `not x : "s"`. Nothing else is rewritten.
//!    `ORIGIN.md` says the other files are 2022–2023 versions, but its own table
//!    gives `additional_test_queries.toml` the same 2020 commit as
//!    `test_queries.toml`, and that file does write `serial_event_id : 1`,
//!    `number(…) : 17`, `concat(…) !: null`: it gets the same rewrite
//!    ([`ERA_2020_FILES`]). The unsupported-list comparison uses the original
//!    text, as Elasticsearch does.
//! 3. **Not applicable specs** (counted as "not applicable", never run):
//!    - refused by Elasticsearch today and so by the engine: pipes (`|` outside
//!      strings; batch operations over a finished result set), `join`,
//!      `descendant of` / `child of` / `event of`, `fork`, array indexing
//!      `field[N]`, functions Elasticsearch no longer has (`match`,
//!      `matchLite`, …), the legacy string forms `?"…"` and `'…'`, and `:` /
//!      `!:` left with a non-constant right-hand side after the rewrite
//!      (`opcode : pid`, `true : cidrMatch(…)`: current Elasticsearch rejects
//!      them, "consider using `==`"). For these the test checks that
//!      `Engine::new` REFUSES the query with the right [`RuleErrorKind`]
//!      (`Unsupported` for valid EQL the engine does not run; `Syntax` also
//!      accepted for what is not EQL at all; `UnknownFunction` for removed
//!      functions; `BadArgument` also accepted for `:` against a non-constant).
//!      An acceptance, or a refusal of another kind, is a failure ("should be
//!      refused");
//!    - `case_insensitive = true` specs: a legacy mode in which `==` ignored
//!      case; current Elasticsearch has none (unless the query also has one of
//!      the features above, they are only counted).
//! 4. **Data**, loaded as Elasticsearch's `DataLoader` does: endgame =
//!    `test_data.json` with `@timestamp = timestamp / 10000 - 11644473600000`
//!    (integer division, a number) and the mapping `data/endgame-140.mapping`
//!    (the one `DataLoader` reads for the `endgame-140` index; its `#` lines
//!    dropped and `[runtime_random_keyword_type]` read as `keyword`, the value
//!    `DataLoader` picks when run as a program); `data/extra.*`,
//!    `data/missing-events.*` (its `//` comments stripped outside strings),
//!    `data/sample{1,2,3}.*` (the three indices searched together: one type map
//!    with all three mappings). Types: `TypeMap::empty()` + `add_es_mapping`;
//!    `@timestamp` is made a `date` when a mapping lacks it. Documents are not
//!    rewritten (`event.category` is an alias of `event_type` in every mapping:
//!    the engine resolves it). The tiebreaker and compared id:
//!    `serial_event_id` (endgame), `sequence` (extra, missing-events), `id`
//!    (sample). Events are pushed in (`@timestamp`, tiebreaker, file order)
//!    order with ordinal = that id (missing-events reuses ids across its
//!    groups: ordinals repeat there, never within one query's results). The
//!    sample documents mostly have no `@timestamp` (samples are unordered)
//!    and no tiebreaker: they are pushed in index order, `sample1` then
//!    `sample2` then `sample3`, each in file order, as Elasticsearch searches
//!    them. That is id order read index-major (ids 11…19 and 110 are
//!    `sample1`'s first to tenth documents, 21…29 `sample2`'s, 31…39
//!    `sample3`'s), not numeric id order: numerically, 110 would come after
//!    39, and `anyRulesWithOneDifferentNameKey` (whose key `farcry`/`win10`
//!    takes the first `bool == true` document, 110 in `sample1`, before 33
//!    in `sample3`) could then match neither of its expected answers.
//! 5. **Comparison.** All matches of `push` + `finish`, cut to the spec's
//!    `size` (50 by default, as the runner asks), events flattened (a
//!    missing-event stage is `-1`) and compared with `expected_event_ids` (a
//!    list of lists: any one of them). `join_keys`, when the spec gives a
//!    non-empty list (the runner skips an empty one), is compared with the
//!    flattened `Match::keys` (`None` → `"null"`). Exact order first. When
//!    that fails, the results may still be the same in another order, which is
//!    accepted, and reported apart as "passed (as a set)", only where a
//!    stream's order may legitimately differ from Elasticsearch's:
//!    - `sample` specs: samples are unordered; Elasticsearch lists them by
//!      key, a stream completes them in whatever order their documents come;
//!    - sequences with a trailing missing-event stage (`… ![q]`): such a
//!      result is only known once maxspan has passed or the stream ends, so
//!      a stream completes them later than Elasticsearch orders them (by their
//!      last positive event);
//!    - sequences where one event completes several results (several join
//!      keys, e.g. multi-valued keys): their order among themselves is not
//!      stated by Elasticsearch; only results ending on the same event may be
//!      reordered, the order between different last events must hold.
//!
//!    Event queries and other sequences must match in exact order (both sort
//!    by the last event).
//!
//! The whole run is one `#[test]` (`es_eql_conformance`); the era rewrite and
//! the helpers have their own unit tests below. Each query is compiled once;
//! each dataset is parsed once.
//!
//! # Output and environment
//!
//! On stderr: the spec counts per file, each failure (file, name, query,
//! expected and actual ids or the error, expected and actual join keys), each
//! spec that passed only as a set, and a last line
//! `es-eql conformance: N passed, M failed, K not applicable (refused as Elasticsearch does)`.
//! The test fails when M > 0 unless `APT_NETCON_CONFORMANCE_REPORT_ONLY=1`.
//! `APT_NETCON_CONFORMANCE_FILTER=text` runs only the specs whose name
//! contains `text`. Run: `cargo test --test es_conformance -- --nocapture`.

use apt_netcon::eql::{Engine, EngineOptions, FieldType, Match, RuleErrorKind, TypeMap};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The suite folder, relative to this crate's manifest.
const SUITE_REL: &str = "../shared/conformance/elasticsearch-eql";

/// Files of the 2020 era (commit 057ebd7d) that get the era rewrite.
const ERA_2020_FILES: &[&str] = &["test_queries.toml", "additional_test_queries.toml"];

/// The endgame spec files Elasticsearch's runner loads (then filters).
const ENDGAME_FILES: &[&str] = &[
    "test_queries.toml",
    "additional_test_queries.toml",
    "test_queries_date.toml",
];

const UNSUPPORTED_FILE: &str = "test_queries_unsupported.toml";

/// Default request size of the runner.
const DEFAULT_SIZE: usize = 50;

/// Functions current Elasticsearch EQL has (lower case; `~` forms included).
const CURRENT_FUNCTIONS: &[&str] = &[
    "add",
    "between",
    "cidrmatch",
    "concat",
    "divide",
    "endswith",
    "indexof",
    "length",
    "modulo",
    "multiply",
    "number",
    "startswith",
    "string",
    "stringcontains",
    "substring",
    "subtract",
];

/// Words that may precede `(` without being a function call.
const NON_FUNCTION_WORDS: &[&str] = &[
    "and",
    "or",
    "not",
    "in",
    "where",
    "by",
    "with",
    "until",
    "of",
    "like",
    "regex",
    "sequence",
    "sample",
    "join",
    "any",
    "head",
    "tail",
    "filter",
    "unique",
    "count",
    "sort",
    "unique_count",
];

// ===========================================================================
// EQL text: a small lexer, enough to find strings, comments and operators
// ===========================================================================

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tk {
    Space,
    Comment,
    /// `"…"`, `'…'`, `"""…"""`, `?"…"`.
    Str,
    /// A back-quoted name: `` `sequence` ``.
    Quoted,
    Ident,
    /// A number, with any letters glued to it (`1s`, `5m`).
    Num,
    Punct,
}

#[derive(Clone, Copy, Debug)]
struct Tok {
    kind: Tk,
    start: usize,
    end: usize,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b'@'
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'@' || c == b'.'
}

/// Splits `q` into tokens covering all of it (never panics, any input).
fn lex(q: &str) -> Vec<Tok> {
    let b = q.as_bytes();
    let n = b.len();
    let mut out = Vec::new();
    let mut i = 0;
    while i < n {
        let start = i;
        let c = b[i];
        let kind;
        if c.is_ascii_whitespace() {
            while i < n && b[i].is_ascii_whitespace() {
                i += 1;
            }
            kind = Tk::Space;
        } else if b[i..].starts_with(b"//") {
            while i < n && b[i] != b'\n' {
                i += 1;
            }
            kind = Tk::Comment;
        } else if b[i..].starts_with(b"/*") {
            i = match q[i + 2..].find("*/") {
                Some(p) => i + 2 + p + 2,
                None => n,
            };
            kind = Tk::Comment;
        } else if b[i..].starts_with(b"\"\"\"") {
            i = match q[i + 3..].find("\"\"\"") {
                Some(p) => i + 3 + p + 3,
                None => n,
            };
            // `""""` closes with the last quotes of the run.
            while i < n && b[i] == b'"' {
                i += 1;
            }
            kind = Tk::Str;
        } else if c == b'?' && i + 1 < n && (b[i + 1] == b'"' || b[i + 1] == b'\'') {
            // Legacy raw string: no escapes, ends at the next quote.
            let quote = b[i + 1];
            i += 2;
            while i < n && b[i] != quote {
                i += 1;
            }
            i = (i + 1).min(n);
            kind = Tk::Str;
        } else if c == b'"' || c == b'\'' {
            i += 1;
            while i < n && b[i] != c {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i = (i + 1).min(n);
            kind = Tk::Str;
        } else if c == b'`' {
            i += 1;
            while i < n {
                if b[i] == b'`' {
                    if i + 1 < n && b[i + 1] == b'`' {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                i += 1;
            }
            kind = Tk::Quoted;
        } else if c.is_ascii_digit() {
            while i < n {
                let d = b[i];
                let exp_sign = (d == b'-' || d == b'+')
                    && matches!(b[i - 1], b'e' | b'E')
                    && i + 1 < n
                    && b[i + 1].is_ascii_digit();
                if d.is_ascii_alphanumeric() || d == b'_' || d == b'.' || exp_sign {
                    i += 1;
                } else {
                    break;
                }
            }
            kind = Tk::Num;
        } else if is_ident_start(c) {
            while i < n && is_ident_char(b[i]) {
                i += 1;
            }
            kind = Tk::Ident;
        } else {
            let two = &b[i..(i + 2).min(n)];
            if matches!(two, b"==" | b"!=" | b"<=" | b">=" | b"!:") {
                i += 2;
            } else {
                // One character (UTF-8 aware).
                i += q[i..].chars().next().map_or(1, char::len_utf8);
            }
            kind = Tk::Punct;
        }
        out.push(Tok {
            kind,
            start,
            end: i,
        });
    }
    out
}

/// The tokens that matter: no spaces, no comments.
fn significant(q: &str) -> Vec<Tok> {
    lex(q)
        .into_iter()
        .filter(|t| !matches!(t.kind, Tk::Space | Tk::Comment))
        .collect()
}

fn text<'a>(q: &'a str, t: &Tok) -> &'a str {
    &q[t.start..t.end]
}

fn is_punct(q: &str, t: &Tok, p: &str) -> bool {
    t.kind == Tk::Punct && text(q, t) == p
}

fn is_word(q: &str, t: &Tok, w: &str) -> bool {
    t.kind == Tk::Ident && text(q, t).eq_ignore_ascii_case(w)
}

fn is_plain_number(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'-' | b'+'))
        && s.parse::<f64>().is_ok()
}

/// Whether the operand starting at `sig[i]` is a number (optionally signed),
/// `null`, `true` or `false`, and nothing more than that token.
fn is_scalar_constant(q: &str, sig: &[Tok], i: usize) -> bool {
    let Some(t) = sig.get(i) else { return false };
    match t.kind {
        Tk::Num => is_plain_number(text(q, t)),
        Tk::Ident => ["null", "true", "false"]
            .iter()
            .any(|w| text(q, t).eq_ignore_ascii_case(w)),
        Tk::Punct if text(q, t) == "-" || text(q, t) == "+" => {
            matches!(sig.get(i + 1), Some(n) if n.kind == Tk::Num && is_plain_number(text(q, n)))
        }
        _ => false,
    }
}

/// Whether the operand starting at `sig[i]` is a string literal or a
/// parenthesised list of string literals.
fn is_string_constant(q: &str, sig: &[Tok], i: usize) -> bool {
    let Some(t) = sig.get(i) else { return false };
    if t.kind == Tk::Str {
        return true;
    }
    if !is_punct(q, t, "(") {
        return false;
    }
    let mut j = i + 1;
    loop {
        match sig.get(j) {
            Some(s) if s.kind == Tk::Str => {}
            _ => return false,
        }
        match sig.get(j + 1) {
            Some(p) if is_punct(q, p, ",") => j += 2,
            Some(p) if is_punct(q, p, ")") => return true,
            _ => return false,
        }
    }
}

/// The index (into `sig`) of the first token of the left operand of the
/// operator at `sig[op]`: walks back over the operand (parentheses balanced)
/// and stops after `(`, `[`, `,`, `|`, a comparison, or a keyword that ends a
/// boolean operand (`and`, `or`, `not`, `where`, …).
fn lhs_start(q: &str, sig: &[Tok], op: usize) -> usize {
    const STOP_WORDS: &[&str] = &["and", "or", "not", "where", "by", "until", "with", "of"];
    const STOP_PUNCT: &[&str] = &[",", "|", "==", "!=", "<", "<=", ">", ">=", ":", "!:"];
    let mut depth = 0usize;
    let mut k = op;
    while k > 0 {
        let t = &sig[k - 1];
        let s = text(q, t);
        if t.kind == Tk::Punct && (s == ")" || s == "]") {
            depth += 1;
        } else if t.kind == Tk::Punct && (s == "(" || s == "[") {
            if depth == 0 {
                break;
            }
            depth -= 1;
        } else if depth == 0
            && ((t.kind == Tk::Ident && STOP_WORDS.iter().any(|w| s.eq_ignore_ascii_case(w)))
                || (t.kind == Tk::Punct && STOP_PUNCT.contains(&s)))
        {
            break;
        }
        k -= 1;
    }
    k
}

/// The era rewrite (see the file comment): `:` / `!:` against a number,
/// `null`, `true` or `false` become `==` / `!=`; `x !: "s"` becomes
/// `not x : "s"`. Strings, back-quoted names and comments are left alone.
fn era_rewrite(q: &str) -> String {
    let sig = significant(q);
    // (start, end, replacement), never overlapping.
    let mut edits: Vec<(usize, usize, &'static str)> = Vec::new();
    for (i, t) in sig.iter().enumerate() {
        let negated = is_punct(q, t, "!:");
        if !negated && !is_punct(q, t, ":") {
            continue;
        }
        if is_scalar_constant(q, &sig, i + 1) {
            edits.push((t.start, t.end, if negated { "!=" } else { "==" }));
        } else if negated && is_string_constant(q, &sig, i + 1) {
            let k = lhs_start(q, &sig, i);
            if k < i {
                edits.push((sig[k].start, sig[k].start, "not "));
                edits.push((t.start, t.end, ":"));
            }
        }
    }
    edits.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    let mut out = q.to_string();
    for (s, e, r) in edits {
        out.replace_range(s..e, r);
    }
    out
}

/// What kind of query a text is, from its first word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum QueryKind {
    Event,
    Sequence,
    Sample,
    Join,
}

fn query_kind(q: &str) -> QueryKind {
    let sig = significant(q);
    match sig.first() {
        Some(t) if is_word(q, t, "sequence") => QueryKind::Sequence,
        Some(t) if is_word(q, t, "sample") => QueryKind::Sample,
        Some(t) if is_word(q, t, "join") => QueryKind::Join,
        _ => QueryKind::Event,
    }
}

/// Whether the last stage of a sequence (not counting `until`) is a
/// missing-event stage `![…]`.
fn has_trailing_missing_stage(q: &str) -> bool {
    let sig = significant(q);
    let mut depth = 0usize;
    let mut stages: Vec<bool> = Vec::new();
    for (i, t) in sig.iter().enumerate() {
        if is_punct(q, t, "[") {
            if depth == 0 {
                let prev = if i > 0 { Some(&sig[i - 1]) } else { None };
                let is_until = prev.is_some_and(|p| is_word(q, p, "until"));
                if !is_until {
                    stages.push(prev.is_some_and(|p| is_punct(q, p, "!")));
                }
            }
            depth += 1;
        } else if is_punct(q, t, "]") {
            depth = depth.saturating_sub(1);
        }
    }
    stages.last().copied().unwrap_or(false)
}

/// Why a spec does not apply to a streaming engine. All but
/// `CaseInsensitive` are queries current Elasticsearch refuses, so the
/// engine must refuse them too.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Reason {
    Join,
    Lineage,
    Fork,
    Pipe,
    ArrayIndex,
    RemovedFunction(String),
    LegacyString,
    NonConstantMatch,
    CaseInsensitive,
}

impl Reason {
    fn label(&self) -> String {
        match self {
            Reason::Join => "join".into(),
            Reason::Lineage => "descendant/child/event of".into(),
            Reason::Fork => "fork".into(),
            Reason::Pipe => "pipe".into(),
            Reason::ArrayIndex => "array index field[N]".into(),
            Reason::RemovedFunction(f) => format!("removed function {f}()"),
            Reason::LegacyString => "legacy string ?\"…\" / '…'".into(),
            Reason::NonConstantMatch => "`:` against a non-constant".into(),
            Reason::CaseInsensitive => "case_insensitive legacy mode".into(),
        }
    }

    /// A shorter label for the per-file counts.
    fn bucket(&self) -> &'static str {
        match self {
            Reason::Join => "join",
            Reason::Lineage => "descendant/child/event of",
            Reason::Fork => "fork",
            Reason::Pipe => "pipe",
            Reason::ArrayIndex => "array index",
            Reason::RemovedFunction(_) => "removed function",
            Reason::LegacyString => "legacy string syntax",
            Reason::NonConstantMatch => "`:` against a non-constant",
            Reason::CaseInsensitive => "case_insensitive",
        }
    }

    /// The refusal kinds that are right for this reason (empty: no check).
    fn accepted_kinds(&self) -> &'static [RuleErrorKind] {
        use RuleErrorKind::*;
        match self {
            Reason::Join | Reason::Lineage | Reason::Pipe => &[Unsupported],
            Reason::Fork | Reason::ArrayIndex => &[Unsupported, Syntax],
            Reason::RemovedFunction(_) => &[UnknownFunction, Unsupported],
            Reason::LegacyString => &[Syntax],
            Reason::NonConstantMatch => &[Syntax, BadArgument, Unsupported],
            Reason::CaseInsensitive => &[],
        }
    }
}

/// The features of `q` (already era-rewritten) that current Elasticsearch
/// refuses, sorted, without duplicates.
fn refusal_reasons(q: &str) -> Vec<Reason> {
    let sig = significant(q);
    let mut out: Vec<Reason> = Vec::new();
    if query_kind(q) == QueryKind::Join {
        out.push(Reason::Join);
    }
    for (i, t) in sig.iter().enumerate() {
        let next = sig.get(i + 1);
        match t.kind {
            Tk::Punct if text(q, t) == "|" => out.push(Reason::Pipe),
            // After the rewrite, `!:` and `:` against anything but strings.
            Tk::Punct
                if text(q, t) == "!:"
                    || (text(q, t) == ":" && !is_string_constant(q, &sig, i + 1)) =>
            {
                out.push(Reason::NonConstantMatch)
            }
            Tk::Str if text(q, t).starts_with('?') || text(q, t).starts_with('\'') => {
                out.push(Reason::LegacyString)
            }
            Tk::Ident | Tk::Quoted => {
                let s = text(q, t);
                if t.kind == Tk::Ident
                    && ["descendant", "child", "event"]
                        .iter()
                        .any(|w| s.eq_ignore_ascii_case(w))
                    && next.is_some_and(|n| is_word(q, n, "of"))
                {
                    out.push(Reason::Lineage);
                }
                if t.kind == Tk::Ident && s.eq_ignore_ascii_case("fork") {
                    out.push(Reason::Fork);
                }
                // field[N]: a `[` glued to the name, a number, `]`.
                if let (Some(lb), Some(num), Some(rb)) = (next, sig.get(i + 2), sig.get(i + 3)) {
                    if is_punct(q, lb, "[")
                        && lb.start == t.end
                        && num.kind == Tk::Num
                        && is_punct(q, rb, "]")
                    {
                        out.push(Reason::ArrayIndex);
                    }
                }
                // name(…) or name~(…): a function call.
                if t.kind == Tk::Ident
                    && !NON_FUNCTION_WORDS.iter().any(|w| s.eq_ignore_ascii_case(w))
                {
                    let mut j = i + 1;
                    if sig.get(j).is_some_and(|x| is_punct(q, x, "~")) {
                        j += 1;
                    }
                    if sig.get(j).is_some_and(|x| is_punct(q, x, "(")) {
                        let lower = s.to_ascii_lowercase();
                        if !CURRENT_FUNCTIONS.contains(&lower.as_str()) {
                            out.push(Reason::RemovedFunction(s.to_string()));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out.sort();
    out.dedup();
    out
}

// ===========================================================================
// Loading the suite: TOML specs, JSON data, mappings
// ===========================================================================

/// Replaces bare `null` values (`join_keys = [null]`) by the string
/// `"null"`, outside strings and comments: Elasticsearch's TOML reader takes
/// them, strict TOML does not.
fn toml_bare_nulls_as_strings(src: &str) -> String {
    let b = src.as_bytes();
    let n = b.len();
    let mut out = String::with_capacity(n + 16);
    let mut i = 0;
    let mut last_sig: u8 = b'\n';
    while i < n {
        let start = i;
        let c = b[i];
        if c == b'#' {
            while i < n && b[i] != b'\n' {
                i += 1;
            }
            out.push_str(&src[start..i]);
            continue;
        }
        let delim: Option<&[u8]> = if b[i..].starts_with(b"\"\"\"") {
            Some(b"\"\"\"")
        } else if b[i..].starts_with(b"'''") {
            Some(b"'''")
        } else if c == b'"' {
            Some(b"\"")
        } else if c == b'\'' {
            Some(b"'")
        } else {
            None
        };
        if let Some(d) = delim {
            let escapes = d[0] == b'"';
            i += d.len();
            while i < n && !b[i..].starts_with(d) {
                if escapes && b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i = (i + d.len()).min(n);
            while d.len() == 3 && i < n && b[i] == d[0] {
                i += 1; // `""""`: the closing run ends at its last quote
            }
            out.push_str(&src[start..i]);
            last_sig = d[0];
            continue;
        }
        if b[i..].starts_with(b"null")
            && matches!(last_sig, b'[' | b',' | b'=')
            && !b
                .get(i + 4)
                .is_some_and(|x| x.is_ascii_alphanumeric() || *x == b'_' || *x == b'-')
        {
            out.push_str("\"null\"");
            i += 4;
            last_sig = b'"';
            continue;
        }
        let ch = src[i..].chars().next().expect("in bounds");
        out.push(ch);
        if !ch.is_whitespace() {
            last_sig = c;
        }
        i += ch.len_utf8();
    }
    out
}

/// Removes `//` and `/* */` comments outside JSON strings.
fn strip_json_comments(src: &str) -> String {
    let b = src.as_bytes();
    let n = b.len();
    let mut out = String::with_capacity(n);
    let mut i = 0;
    while i < n {
        let start = i;
        if b[i] == b'"' {
            i += 1;
            while i < n && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i = (i + 1).min(n);
            out.push_str(&src[start..i]);
        } else if b[i..].starts_with(b"//") {
            while i < n && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i = match src[i + 2..].find("*/") {
                Some(p) => i + 2 + p + 2,
                None => n,
            };
            out.push(' ');
        } else {
            let ch = src[i..].chars().next().expect("in bounds");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

use apt_netcon::format::time::days_from_civil;

/// `@timestamp` as epoch milliseconds, the way a `date` field with the
/// default format (`strict_date_optional_time||epoch_millis`) reads it: a
/// number, a string of digits, or `yyyy-MM-dd['T'HH:mm[:ss[.SSS…]]][Z|±HH:mm]`.
/// Only used to put the events in order.
fn timestamp_millis(v: &Value) -> Result<i64, String> {
    if let Some(i) = v.as_i64() {
        return Ok(i);
    }
    if let Some(f) = v.as_f64() {
        return Ok(f.floor() as i64);
    }
    let s = v
        .as_str()
        .ok_or_else(|| format!("@timestamp {v} is neither a number nor a string"))?;
    let bad = || format!("@timestamp {s:?} is not a date this test can read");
    let digits = s.strip_prefix('-').unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) {
        return s.parse::<i64>().map_err(|_| bad());
    }
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Result<i64, String> {
        let part = s.get(from..from + len).ok_or_else(bad)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        part.parse::<i64>().map_err(|_| bad())
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad());
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let mut ms = days_from_civil(y, mo, d) * 86_400_000;
    let mut i = 10;
    if i < b.len() && b[i] == b'T' {
        ms += num(i + 1, 2)? * 3_600_000;
        if b.get(i + 3) != Some(&b':') {
            return Err(bad());
        }
        ms += num(i + 4, 2)? * 60_000;
        i += 6;
        if b.get(i) == Some(&b':') {
            ms += num(i + 1, 2)? * 1000;
            i += 3;
            if matches!(b.get(i), Some(b'.') | Some(b',')) {
                i += 1;
                let fs = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                let frac = &s[fs..i];
                let mut milli = 0i64;
                for (k, c) in frac.bytes().take(3).enumerate() {
                    milli += i64::from(c - b'0') * [100, 10, 1][k];
                }
                ms += milli;
            }
        }
    }
    match b.get(i) {
        None => {}
        Some(b'Z') if i + 1 == b.len() => {}
        Some(sign @ (b'+' | b'-')) => {
            let h = num(i + 1, 2)?;
            let m = if b.get(i + 3) == Some(&b':') {
                num(i + 4, 2)?
            } else {
                num(i + 3, 2)?
            };
            let off = (h * 60 + m) * 60_000;
            ms -= if *sign == b'+' { off } else { -off };
        }
        _ => return Err(bad()),
    }
    Ok(ms)
}

/// One spec of the suite.
#[derive(Clone, Debug)]
struct Spec {
    file: &'static str,
    name: String,
    /// The trimmed query as written (what the unsupported list is compared with).
    raw_query: String,
    /// The query run (after the era rewrite where it applies).
    query: String,
    /// `case_sensitive = true` → `Some(true)`, `case_insensitive = true` → `Some(false)`.
    case: Option<bool>,
    /// Alternatives; any one of them is right.
    expected: Vec<Vec<i64>>,
    join_keys: Vec<String>,
    size: usize,
}

fn toml_ids(v: &toml::Value) -> Result<Vec<i64>, String> {
    let arr = v.as_array().ok_or("expected_event_ids: not an array")?;
    arr.iter()
        .map(|x| {
            x.as_integer()
                .ok_or_else(|| format!("expected_event_ids: {x} is not an integer"))
        })
        .collect()
}

fn load_specs(dir: &Path, file: &'static str) -> Result<Vec<Spec>, String> {
    let path = dir.join(file);
    let src = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let table: toml::Table = toml_bare_nulls_as_strings(&src)
        .parse()
        .map_err(|e| format!("{file}: {e}"))?;
    let queries = table
        .get("queries")
        .and_then(|q| q.as_array())
        .ok_or_else(|| format!("{file}: no [[queries]]"))?;
    let rewrite = ERA_2020_FILES.contains(&file);
    let mut specs = Vec::new();
    for (n, q) in queries.iter().enumerate() {
        let t = q
            .as_table()
            .ok_or_else(|| format!("{file}: entry {n} is not a table"))?;
        let s = |k: &str| {
            t.get(k)
                .and_then(|v| v.as_str())
                .map(|v| v.trim().to_string())
        };
        let flag = |k: &str| t.get(k).and_then(|v| v.as_bool());
        let name = s("name")
            .or_else(|| s("note"))
            .unwrap_or_else(|| format!("#{}", n + 1));
        let raw_query = s("query").ok_or_else(|| format!("{file}: {name}: no query"))?;
        let case = if flag("case_sensitive") == Some(true) {
            Some(true)
        } else if flag("case_insensitive") == Some(true) {
            Some(false)
        } else {
            None
        };
        let ids = t
            .get("expected_event_ids")
            .ok_or_else(|| format!("{file}: {name}: no expected_event_ids"))?;
        let arr = ids
            .as_array()
            .ok_or_else(|| format!("{file}: {name}: expected_event_ids is not an array"))?;
        let expected = if arr.is_empty() {
            vec![Vec::new()]
        } else if arr.iter().all(|x| x.is_integer()) {
            vec![toml_ids(ids)?]
        } else if arr.iter().all(|x| x.is_array()) {
            arr.iter().map(toml_ids).collect::<Result<_, _>>()?
        } else {
            return Err(format!("{file}: {name}: invalid expected_event_ids"));
        };
        let join_keys = match t.get("join_keys").and_then(|v| v.as_array()) {
            Some(a) => a
                .iter()
                .map(|x| match x {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
            None => Vec::new(),
        };
        let size = match t.get("size").and_then(|v| v.as_integer()) {
            Some(n) if n >= 0 => n as usize,
            _ => DEFAULT_SIZE,
        };
        let query = if rewrite {
            era_rewrite(&raw_query)
        } else {
            raw_query.clone()
        };
        specs.push(Spec {
            file,
            name,
            raw_query,
            query,
            case,
            expected,
            join_keys,
            size,
        });
    }
    Ok(specs)
}

/// The datasets, one per runner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum DatasetId {
    Endgame,
    Extra,
    MissingEvents,
    Sample,
}

fn dataset_of(file: &str) -> DatasetId {
    match file {
        "test_extra.toml" => DatasetId::Extra,
        "test_missing_events.toml" => DatasetId::MissingEvents,
        "test_sample.toml" => DatasetId::Sample,
        _ => DatasetId::Endgame,
    }
}

struct Dataset {
    types: TypeMap,
    /// In push order: (ordinal = the tiebreaker id, document).
    events: Vec<(u64, Value)>,
}

/// A mapping file as `DataLoader.readMapping` reads it: lines starting with
/// `#` dropped, `[runtime_random_keyword_type]` → `keyword`.
fn read_mapping(path: &Path) -> Result<Value, String> {
    let src = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text: String = src
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.replace("[runtime_random_keyword_type]", "keyword"))
        .collect::<Vec<_>>()
        .join("\n");
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_documents(path: &Path) -> Result<Vec<Value>, String> {
    let src = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&strip_json_comments(&src)).map_err(|e| format!("{}: {e}", path.display()))
}

fn load_dataset(dir: &Path, id: DatasetId) -> Result<Dataset, String> {
    let (docs_files, mapping_files, tiebreaker): (Vec<&str>, Vec<&str>, &str) = match id {
        DatasetId::Endgame => (
            vec!["test_data.json"],
            vec!["data/endgame-140.mapping"],
            "serial_event_id",
        ),
        DatasetId::Extra => (
            vec!["data/extra.data"],
            vec!["data/extra.mapping"],
            "sequence",
        ),
        DatasetId::MissingEvents => (
            vec!["data/missing-events.data"],
            vec!["data/missing-events.mapping"],
            "sequence",
        ),
        DatasetId::Sample => (
            vec![
                "data/sample1.data",
                "data/sample2.data",
                "data/sample3.data",
            ],
            vec![
                "data/sample1.mapping",
                "data/sample2.mapping",
                "data/sample3.mapping",
            ],
            "id",
        ),
    };
    let mut types = TypeMap::empty();
    for m in &mapping_files {
        let mapping = read_mapping(&dir.join(m))?;
        types
            .add_es_mapping(&mapping)
            .map_err(|e| format!("{m}: add_es_mapping: {e}"))?;
    }
    if types.get("@timestamp").is_none() {
        types.set("@timestamp", FieldType::Date);
    }
    // (time, tiebreaker, file order, id, document); sorted on the first three.
    let mut rows: Vec<(i64, u64, usize, u64, Value)> = Vec::new();
    for f in &docs_files {
        for mut doc in read_documents(&dir.join(f))? {
            let seq = rows.len();
            let obj = doc
                .as_object_mut()
                .ok_or_else(|| format!("{f}: document {seq} is not an object"))?;
            if id == DatasetId::Endgame {
                let filetime = obj
                    .get("timestamp")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| format!("{f}: document {seq}: no integer timestamp"))?;
                obj.insert(
                    "@timestamp".into(),
                    Value::from(filetime / 10_000 - 11_644_473_600_000),
                );
            }
            let tb = obj
                .get(tiebreaker)
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("{f}: document {seq}: no integer {tiebreaker}"))?;
            let (ts, order) = if id == DatasetId::Sample {
                // Samples are unordered and have no tiebreaker: index order
                // (sample1, sample2, sample3, each in file order), which is
                // also id order read index-major (11…19, 110 | 21…29 | 31…39).
                (0, 0)
            } else {
                let v = obj
                    .get("@timestamp")
                    .ok_or_else(|| format!("{f}: document {seq}: no @timestamp"))?;
                let ts = timestamp_millis(v).map_err(|e| format!("{f}: document {seq}: {e}"))?;
                (ts, tb)
            };
            rows.push((ts, order, seq, tb, doc));
        }
    }
    rows.sort_by_key(|a| (a.0, a.1, a.2));
    // Dynamic mapping: a field the mapping lacks takes the type of the first
    // value indexed (string → keyword, integer → long, fraction → double,
    // boolean), as Elasticsearch maps it when the document is indexed. The
    // type map then lists every field of the index, so the engine can fold
    // an optional field that no document has to null (`mapping_complete`).
    for (_, _, _, _, doc) in &rows {
        add_dynamic_types(&mut types, "", doc);
    }
    Ok(Dataset {
        types,
        events: rows.into_iter().map(|(_, _, _, tb, d)| (tb, d)).collect(),
    })
}

/// Map every leaf field of `v` under `prefix` that `types` does not know.
fn add_dynamic_types(types: &mut TypeMap, prefix: &str, v: &Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                add_dynamic_types(types, &path, x);
            }
        }
        Value::Array(items) => {
            for x in items {
                add_dynamic_types(types, prefix, x);
            }
        }
        Value::Null => {}
        scalar => {
            if prefix.is_empty() || types.is_known(prefix) {
                return;
            }
            let ty = match scalar {
                Value::String(_) => FieldType::Keyword,
                Value::Bool(_) => FieldType::Boolean,
                Value::Number(n) if n.is_i64() || n.is_u64() => FieldType::Long,
                _ => FieldType::Double,
            };
            types.set(prefix, ty);
        }
    }
}

// ===========================================================================
// Running and comparing
// ===========================================================================

/// One result, flattened: ids (missing stage = -1) and keys (null = "null").
type Row = (Vec<i64>, Vec<String>);

fn rows_of(matches: &[Match]) -> Vec<Row> {
    matches
        .iter()
        .map(|m| {
            (
                m.events
                    .iter()
                    .map(|e| e.map_or(-1, |o| o as i64))
                    .collect(),
                m.keys
                    .iter()
                    .map(|k| k.clone().unwrap_or_else(|| "null".to_string()))
                    .collect(),
            )
        })
        .collect()
}

/// How a stream's order may differ from Elasticsearch's for a spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reorder {
    /// Exact order only (event queries, ordinary sequences).
    None,
    /// Only results ending on the same (last positive) event.
    SameLastEvent,
    /// Any order (samples; sequences with a trailing missing stage).
    Any,
}

fn reorder_rule(query: &str) -> Reorder {
    match query_kind(query) {
        QueryKind::Sample => Reorder::Any,
        QueryKind::Sequence if has_trailing_missing_stage(query) => Reorder::Any,
        QueryKind::Sequence => Reorder::SameLastEvent,
        _ => Reorder::None,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Exact,
    AsSet,
    Mismatch,
}

/// Compares the actual rows with one expected alternative.
fn compare(
    actual: &[Row],
    expected_ids: &[i64],
    expected_keys: &[String],
    rule: Reorder,
) -> Verdict {
    let flat_ids: Vec<i64> = actual.iter().flat_map(|r| r.0.iter().copied()).collect();
    let flat_keys: Vec<String> = actual.iter().flat_map(|r| r.1.iter().cloned()).collect();
    let check_keys = !expected_keys.is_empty();
    if flat_ids == expected_ids && (!check_keys || flat_keys == expected_keys) {
        return Verdict::Exact;
    }
    if rule == Reorder::None || actual.is_empty() {
        return Verdict::Mismatch;
    }
    // Cut the expected list into rows as wide as the actual ones.
    let width = actual[0].0.len();
    let key_width = actual[0].1.len();
    if width == 0
        || actual
            .iter()
            .any(|r| r.0.len() != width || r.1.len() != key_width)
    {
        return Verdict::Mismatch;
    }
    if expected_ids.len() % width != 0 {
        return Verdict::Mismatch;
    }
    let n = expected_ids.len() / width;
    if n != actual.len() || (check_keys && expected_keys.len() != n * key_width) {
        return Verdict::Mismatch;
    }
    let expected: Vec<Row> = (0..n)
        .map(|i| {
            let ids = expected_ids[i * width..(i + 1) * width].to_vec();
            let keys = if check_keys {
                expected_keys[i * key_width..(i + 1) * key_width].to_vec()
            } else {
                Vec::new()
            };
            (ids, keys)
        })
        .collect();
    let mut got: Vec<Row> = actual
        .iter()
        .map(|r| {
            (
                r.0.clone(),
                if check_keys { r.1.clone() } else { Vec::new() },
            )
        })
        .collect();
    let mut want = expected;
    let last_event = |r: &Row| r.0.iter().rev().copied().find(|&e| e >= 0);
    match rule {
        Reorder::Any => {
            got.sort();
            want.sort();
        }
        Reorder::SameLastEvent => {
            // The completing events must come in the same order; only rows
            // that end on the same event may be reordered among themselves.
            let got_lasts: Vec<Option<i64>> = got.iter().map(last_event).collect();
            let want_lasts: Vec<Option<i64>> = want.iter().map(last_event).collect();
            if got_lasts != want_lasts {
                return Verdict::Mismatch;
            }
            let mut rank: HashMap<Option<i64>, usize> = HashMap::new();
            for r in &want {
                let next = rank.len();
                rank.entry(last_event(r)).or_insert(next);
            }
            let key = |r: &Row| {
                (
                    rank.get(&last_event(r)).copied().unwrap_or(usize::MAX),
                    r.clone(),
                )
            };
            got.sort_by_key(key);
            want.sort_by_key(key);
        }
        Reorder::None => unreachable!(),
    }
    if got == want {
        Verdict::AsSet
    } else {
        Verdict::Mismatch
    }
}

/// Runs one spec: compile once, push every event, finish.
fn run_query(query: &str, ds: &Dataset, base: &EngineOptions) -> Result<Vec<Match>, String> {
    let mut opts = base.clone();
    opts.types = ds.types.clone();
    opts.timestamp_field = "@timestamp".to_string();
    opts.mapping_complete = true;
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<Vec<Match>, String> {
        let mut engine =
            Engine::new(query, opts).map_err(|e| format!("Engine::new refused it: {e}"))?;
        let mut out = Vec::new();
        for (ordinal, doc) in &ds.events {
            engine.push(*ordinal, doc, &mut out);
        }
        engine.finish(&mut out);
        Ok(out)
    }));
    match result {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(no message)".into());
            Err(format!("the engine panicked: {msg}"))
        }
    }
}

/// What became of one spec.
enum Outcome {
    Passed,
    PassedAsSet(&'static str),
    Failed(String),
    /// Not applicable, correctly refused (or only counted).
    NotApplicable,
}

fn fmt_ids(ids: &[i64]) -> String {
    format!("{ids:?}")
}

/// The spec's join keys, or that it gives none (then they are not compared).
fn keys_text(keys: &[String]) -> String {
    if keys.is_empty() {
        "(none given: not compared)".to_string()
    } else {
        format!("{keys:?}")
    }
}

/// Indents every line but the first (multi-line error messages).
fn indent_rest(s: &str) -> String {
    s.replace('\n', "\n      ")
}

fn indent_query(q: &str) -> String {
    q.lines()
        .map(|l| format!("      {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn check_refusal(
    spec: &Spec,
    reasons: &[Reason],
    base: &EngineOptions,
    types: Option<&TypeMap>,
) -> Outcome {
    let accepted: Vec<RuleErrorKind> = {
        let mut v: Vec<RuleErrorKind> = Vec::new();
        for r in reasons {
            for k in r.accepted_kinds() {
                if !v.contains(k) {
                    v.push(*k);
                }
            }
        }
        v
    };
    if accepted.is_empty() {
        return Outcome::NotApplicable;
    }
    let mut opts = base.clone();
    if let Some(t) = types {
        opts.types = t.clone();
    }
    let labels: Vec<String> = reasons
        .iter()
        .filter(|r| !r.accepted_kinds().is_empty())
        .map(Reason::label)
        .collect();
    let got = catch_unwind(AssertUnwindSafe(|| {
        Engine::new(&spec.query, opts).map(|_| ())
    }));
    match got {
        Err(_) => Outcome::Failed(format!("  should be refused ({}); Engine::new panicked", labels.join(", "))),
        Ok(Ok(())) => Outcome::Failed(format!(
            "  should be refused ({}) as {:?}, as Elasticsearch refuses it; Engine::new accepted it",
            labels.join(", "),
            accepted
        )),
        Ok(Err(e)) if accepted.contains(&e.kind) => Outcome::NotApplicable,
        Ok(Err(e)) => Outcome::Failed(format!(
            "  should be refused ({}) as {:?}; refused as {:?} instead: {}",
            labels.join(", "),
            accepted,
            e.kind,
            indent_rest(&e.to_string())
        )),
    }
}

fn run_spec(spec: &Spec, ds: Result<&Dataset, &String>, base: &EngineOptions) -> Outcome {
    let actual = match ds {
        Err(e) => Err(format!("dataset could not be loaded: {e}")),
        Ok(ds) => run_query(&spec.query, ds, base),
    };
    let mut matches = match actual {
        Ok(m) => m,
        Err(e) => {
            return Outcome::Failed(format!(
                "  expected ids: {}\n  error: {}\n  expected join keys: {}",
                expected_text(spec),
                indent_rest(&e),
                keys_text(&spec.join_keys)
            ))
        }
    };
    matches.truncate(spec.size);
    let rows = rows_of(&matches);
    let rule = reorder_rule(&spec.query);
    let mut as_set = false;
    for alt in &spec.expected {
        match compare(&rows, alt, &spec.join_keys, rule) {
            Verdict::Exact => return Outcome::Passed,
            Verdict::AsSet => as_set = true,
            Verdict::Mismatch => {}
        }
    }
    if as_set {
        return Outcome::PassedAsSet(match (query_kind(&spec.query), rule) {
            (QueryKind::Sample, _) => "samples are unordered",
            (_, Reorder::Any) => {
                "trailing missing-event stage: completed after maxspan / at the end"
            }
            _ => "results completed by the same event, in another order",
        });
    }
    let ids: Vec<i64> = rows.iter().flat_map(|r| r.0.iter().copied()).collect();
    let keys: Vec<String> = rows.iter().flat_map(|r| r.1.iter().cloned()).collect();
    Outcome::Failed(format!(
        "  expected ids: {}\n  actual ids:   {}\n  expected join keys: {}\n  actual join keys:   {:?}",
        expected_text(spec),
        fmt_ids(&ids),
        keys_text(&spec.join_keys),
        keys
    ))
}

fn expected_text(spec: &Spec) -> String {
    if spec.expected.len() == 1 {
        fmt_ids(&spec.expected[0])
    } else {
        format!(
            "one of {}",
            spec.expected
                .iter()
                .map(|e| fmt_ids(e))
                .collect::<Vec<_>>()
                .join(" | ")
        )
    }
}

/// A spec and what the runner does with it.
struct Planned {
    spec: Spec,
    /// Excluded by `test_queries_unsupported.toml` (Elasticsearch does not run it).
    excluded: bool,
    /// Why it does not apply (empty: it is run).
    reasons: Vec<Reason>,
}

#[test]
fn es_eql_conformance() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(SUITE_REL);
    if !dir.is_dir() {
        eprintln!("skipped: suite not present ({})", dir.display());
        return;
    }
    let report_only = std::env::var("APT_NETCON_CONFORMANCE_REPORT_ONLY")
        .map(|v| !v.is_empty() && v != "0")
        .unwrap_or(false);
    let filter = std::env::var("APT_NETCON_CONFORMANCE_FILTER")
        .ok()
        .filter(|f| !f.is_empty());
    let started = std::time::Instant::now();

    let mut load_failures: Vec<String> = Vec::new();

    // --- the unsupported list: (trimmed query, case flag) ---
    let unsupported_specs = load_specs(&dir, UNSUPPORTED_FILE).unwrap_or_else(|e| {
        load_failures.push(e);
        Vec::new()
    });
    let unsupported_entries = unsupported_specs.len();
    let unsupported: HashSet<(String, Option<bool>)> = unsupported_specs
        .into_iter()
        .map(|s| (s.raw_query, s.case))
        .collect();

    // --- every spec, planned ---
    let all_files: Vec<&'static str> = ENDGAME_FILES
        .iter()
        .copied()
        .chain([
            "test_extra.toml",
            "test_missing_events.toml",
            "test_sample.toml",
        ])
        .collect();
    let mut planned: Vec<Planned> = Vec::new();
    for &file in &all_files {
        let specs = match load_specs(&dir, file) {
            Ok(s) => s,
            Err(e) => {
                load_failures.push(e);
                continue;
            }
        };
        for spec in specs {
            let excluded = ENDGAME_FILES.contains(&file)
                && unsupported.contains(&(spec.raw_query.clone(), spec.case));
            let mut reasons = refusal_reasons(&spec.query);
            if spec.case == Some(false) {
                reasons.push(Reason::CaseInsensitive);
            }
            planned.push(Planned {
                spec,
                excluded,
                reasons,
            });
        }
    }

    // Names must be unique per runner (Elasticsearch's loader checks it).
    let mut seen: HashMap<(DatasetId, String), &'static str> = HashMap::new();
    for p in &planned {
        if let Some(prev) = seen.insert((dataset_of(p.spec.file), p.spec.name.clone()), p.spec.file)
        {
            eprintln!(
                "note: spec name {:?} appears in both {prev} and {}",
                p.spec.name, p.spec.file
            );
        }
    }

    // --- counts per file ---
    eprintln!("es-eql suite: {}", dir.display());
    let mut totals = (0usize, 0usize, 0usize, 0usize);
    let mut total_reasons: BTreeMap<&'static str, usize> = BTreeMap::new();
    for &file in &all_files {
        let in_file: Vec<&Planned> = planned.iter().filter(|p| p.spec.file == file).collect();
        if in_file.is_empty() {
            continue;
        }
        let run_by_es: Vec<&&Planned> = in_file.iter().filter(|p| !p.excluded).collect();
        let applicable = run_by_es.iter().filter(|p| p.reasons.is_empty()).count();
        let mut by_reason: BTreeMap<&'static str, usize> = BTreeMap::new();
        for p in run_by_es.iter().filter(|p| !p.reasons.is_empty()) {
            *by_reason.entry(p.reasons[0].bucket()).or_default() += 1;
            *total_reasons.entry(p.reasons[0].bucket()).or_default() += 1;
        }
        let na = run_by_es.len() - applicable;
        totals.0 += in_file.len();
        totals.1 += run_by_es.len();
        totals.2 += applicable;
        totals.3 += na;
        eprintln!(
            "es-eql suite: {file}: {} specs, {} run by Elasticsearch's runner, {} applicable, {} not applicable{}",
            in_file.len(),
            run_by_es.len(),
            applicable,
            na,
            fmt_reasons(&by_reason)
        );
    }
    eprintln!(
        "es-eql suite: {UNSUPPORTED_FILE}: {unsupported_entries} entries ({} distinct by query + case flag), excluding {} endgame specs",
        unsupported.len(),
        planned.iter().filter(|p| p.excluded).count()
    );
    eprintln!(
        "es-eql suite: total {} specs, {} run by Elasticsearch's runner, {} applicable, {} not applicable{} (a spec counts under its first reason)",
        totals.0,
        totals.1,
        totals.2,
        totals.3,
        fmt_reasons(&total_reasons)
    );

    // --- datasets, parsed once ---
    let mut datasets: HashMap<DatasetId, Result<Dataset, String>> = HashMap::new();
    for id in [
        DatasetId::Endgame,
        DatasetId::Extra,
        DatasetId::MissingEvents,
        DatasetId::Sample,
    ] {
        let ds = load_dataset(&dir, id);
        match &ds {
            Ok(d) => eprintln!("es-eql suite: dataset {id:?}: {} events", d.events.len()),
            Err(e) => eprintln!("es-eql suite: dataset {id:?}: LOAD ERROR: {e}"),
        }
        datasets.insert(id, ds);
    }

    // --- run ---
    let base = EngineOptions::default();
    let (mut passed, mut failed, mut not_applicable) = (0usize, 0usize, 0usize);
    let mut as_set: Vec<String> = Vec::new();
    let mut fast_agree = 0usize;
    let mut fast_differ: Vec<String> = Vec::new();
    for e in &load_failures {
        failed += 1;
        eprintln!("FAIL loading the suite: {e}");
    }
    for p in planned.iter().filter(|p| !p.excluded) {
        let spec = &p.spec;
        if let Some(f) = &filter {
            if !spec.name.contains(f.as_str()) {
                continue;
            }
        }
        let ds = datasets
            .get(&dataset_of(spec.file))
            .expect("every dataset is loaded")
            .as_ref();
        let outcome = if p.reasons.is_empty() {
            run_spec(spec, ds, &base)
        } else {
            check_refusal(spec, &p.reasons, &base, ds.ok().map(|d| &d.types))
        };
        if p.reasons.is_empty() {
            if let Ok(d) = ds {
                match fast_differential(&spec.query, d, &base) {
                    FastCheck::NotFast => {}
                    FastCheck::Agrees => fast_agree += 1,
                    FastCheck::Differs(why) => {
                        fast_differ.push(format!("{} :: {}: {why}", spec.file, spec.name));
                    }
                }
            }
        }
        match outcome {
            Outcome::Passed => passed += 1,
            Outcome::PassedAsSet(why) => {
                passed += 1;
                as_set.push(format!(
                    "passed (as a set): {} :: {} ({why})",
                    spec.file, spec.name
                ));
            }
            Outcome::NotApplicable => not_applicable += 1,
            Outcome::Failed(detail) => {
                failed += 1;
                let rewritten = if spec.query != spec.raw_query {
                    format!("\n  as written:\n{}", indent_query(&spec.raw_query))
                } else {
                    String::new()
                };
                eprintln!(
                    "FAIL {} :: {}\n  query:\n{}{rewritten}\n{detail}",
                    spec.file,
                    spec.name,
                    indent_query(&spec.query)
                );
            }
        }
    }
    for line in &as_set {
        eprintln!("{line}");
    }
    if !as_set.is_empty() {
        eprintln!(
            "es-eql conformance: {} of the passed specs passed only as a set (see above)",
            as_set.len()
        );
    }
    if let Some(f) = &filter {
        eprintln!("es-eql conformance: only specs whose name contains {f:?} (APT_NETCON_CONFORMANCE_FILTER)");
    }
    for d in &fast_differ {
        eprintln!("FAIL fast engine differs: {d}");
    }
    eprintln!(
        "es-eql conformance: the fast engine runs {} of the applicable specs; {fast_agree} agree with the generic engine, {} differ",
        fast_agree + fast_differ.len(),
        fast_differ.len()
    );
    failed += fast_differ.len();
    eprintln!("es-eql conformance: ran in {:.2?}", started.elapsed());
    eprintln!(
        "es-eql conformance: {passed} passed, {failed} failed, {not_applicable} not applicable (refused as Elasticsearch does)"
    );
    if failed > 0 && !report_only {
        panic!(
            "{failed} Elasticsearch EQL conformance specs failed (see above; \
             APT_NETCON_CONFORMANCE_REPORT_ONLY=1 only reports)"
        );
    }
}

enum FastCheck {
    NotFast,
    Agrees,
    Differs(String),
}

/// The detector runs a query within the fast engine's subset on the fast
/// engine (`apt_netcon::eql::compile`), which reads no mapping: it must find the
/// same results as the generic engine here. The records a detector
/// annotates (or alerts on) are compared with the last events of the
/// generic engine's results, as sets. The documents get what the fast
/// engine cannot take from a mapping: `event.category` copied from the
/// `event_type` it aliases, and `@timestamp` written as RFC 3339.
fn fast_differential(query: &str, ds: &Dataset, base: &EngineOptions) -> FastCheck {
    let Ok(rule) = apt_netcon::Rule::from_eql(query, apt_netcon::config::rule::meta_for_file("spec")) else {
        return FastCheck::NotFast;
    };
    if rule.generic_query().is_some() {
        return FastCheck::NotFast;
    }
    let Ok(generic) = run_query(query, ds, base) else { return FastCheck::NotFast };
    let mut want: Vec<u64> = generic.iter().filter_map(|m| m.events.iter().rev().find_map(|e| *e)).collect();
    want.sort_unstable();
    want.dedup();
    let mut det = apt_netcon::Detector::with_rule(rule, &apt_netcon::Config::default());
    let mut got = Vec::new();
    for (ordinal, doc) in &ds.events {
        let mut d = doc.clone();
        if let Some(o) = d.as_object_mut() {
            if let Some(c) = o.get("event_type").cloned() {
                let ev = o.entry("event").or_insert_with(|| serde_json::json!({}));
                if let Some(m) = ev.as_object_mut() {
                    m.insert("category".into(), c);
                }
            }
            if let Some(ts) = o.get("@timestamp").and_then(|v| timestamp_millis(v).ok()) {
                o.insert("@timestamp".into(), Value::String(apt_netcon::format::time::format_ms(ts)));
            }
        }
        let bytes = serde_json::to_vec(&d).unwrap_or_default();
        let mut alerted = matches!(det.process(&bytes), Ok(apt_netcon::Verdict::Annotated(_)));
        // (Every alert this record gave: one per result it completes.)
        while det.take_alert().is_some() {
            alerted = true;
        }
        if alerted {
            got.push(*ordinal);
        }
    }
    got.sort_unstable();
    got.dedup();
    if got == want {
        FastCheck::Agrees
    } else {
        FastCheck::Differs(format!("fast {got:?}, generic {want:?}"))
    }
}

fn fmt_reasons(m: &BTreeMap<&'static str, usize>) -> String {
    if m.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v}")).collect();
    format!(" ({})", parts.join(", "))
}

// ===========================================================================
// Unit tests of the helpers
// ===========================================================================

#[test]
fn era_rewrite_numbers_null_and_booleans() {
    let cases = [
        ("process where serial_event_id : 1", "process where serial_event_id == 1"),
        ("file where opcode:0", "file where opcode==0"),
        ("process where x !: 3", "process where x != 3"),
        ("process where missing_field !: null", "process where missing_field != null"),
        ("process where bad_field : null", "process where bad_field == null"),
        ("a where f(x) : true and g(y) !: false", "a where f(x) == true and g(y) != false"),
        ("a where exit_code : -1", "a where exit_code == -1"),
        ("a where exit_code : - 1", "a where exit_code == - 1"),
        ("a where x : 4.5 or y:1e3", "a where x == 4.5 or y==1e3"),
        ("a where `sequence` : 1", "a where `sequence` == 1"),
        ("a where ?x : null", "a where ?x == null"),
        ("a where x : NULL", "a where x == NULL"),
        ("a where serial_event_id / 2 : 41", "a where serial_event_id / 2 == 41"),
        (
            "sequence\n  [process where serial_event_id:1] by unique_pid\n  [process where true] by unique_ppid",
            "sequence\n  [process where serial_event_id==1] by unique_pid\n  [process where true] by unique_ppid",
        ),
    ];
    for (input, want) in cases {
        assert_eq!(era_rewrite(input), want, "input: {input}");
    }
}

#[test]
fn era_rewrite_negated_string_match() {
    let cases = [
        (
            "process where fake_field !: \"*\"",
            "process where not fake_field : \"*\"",
        ),
        (
            "process where command_line : \"*group *admin*\" and command_line !: \"* /add*\"",
            "process where command_line : \"*group *admin*\" and not command_line : \"* /add*\"",
        ),
        (
            "a where concat(a, b) !: \"x\"",
            "a where not concat(a, b) : \"x\"",
        ),
        ("a where (b or c !: \"x\")", "a where (b or not c : \"x\")"),
        ("a where f(x, y !: \"z\")", "a where f(x, not y : \"z\")"),
        (
            "a where x !: (\"a\", \"b\")",
            "a where not x : (\"a\", \"b\")",
        ),
        ("a where ?x !: \"a\"", "a where not ?x : \"a\""),
        ("a where x!:\"a\"", "a where not x:\"a\""),
        ("a where x + 1 !: \"2\"", "a where not x + 1 : \"2\""),
    ];
    for (input, want) in cases {
        assert_eq!(era_rewrite(input), want, "input: {input}");
    }
}

#[test]
fn era_rewrite_leaves_the_rest_alone() {
    let unchanged = [
        "process where process_name : \"x\"",
        "process where process_name : \"1\"",
        "process where process_name : (\"a\", \"b\")",
        "a where x : \"y : 1\"",
        "a where x : \"a\\\" : 1\"",
        "a where x : ?\"a : 1\"",
        "a where x : ?\"C:\\x\" and y == 2",
        "a where x : \"\"\"a : 1 \" : 2\"\"\"",
        "a where x : 'a : 1'",
        "// y : 1\na where x == 1",
        "/* y : 1 */ a where x == 1",
        "a where x : nullable_field",
        "a where x : true_thing",
        "a where opcode : pid",
        "a where x !: other_field",
        "a where true : cidrMatch(ip, \"10.0.0.0/8\")",
        "a where x == 1 and y != null",
        "a where x : \"5::wininit.exe::3\"",
        "",
        "\"unterminated : 1",
    ];
    for q in unchanged {
        assert_eq!(era_rewrite(q), q, "input: {q}");
    }
    // Inside strings only the outside is touched.
    assert_eq!(
        era_rewrite("a where x : \"p : 1\" and y : 2"),
        "a where x : \"p : 1\" and y == 2"
    );
    assert_eq!(
        era_rewrite("a where x : ?\"p\\\" and y : 2"),
        "a where x : ?\"p\\\" and y == 2"
    );
}

#[test]
fn refusal_reasons_detects_features_outside_strings() {
    assert_eq!(
        refusal_reasons("process where true | head 6"),
        vec![Reason::Pipe]
    );
    assert!(refusal_reasons("process where x : \"a|b\"").is_empty());
    assert!(refusal_reasons("process where x == 1 // a | b\n").is_empty());
    assert_eq!(
        refusal_reasons("join by a [x where true] [y where true]"),
        vec![Reason::Join]
    );
    assert_eq!(
        refusal_reasons("process where x == 1 and descendant of [process where true]"),
        vec![Reason::Lineage]
    );
    assert_eq!(
        refusal_reasons("process where child of [file where true]"),
        vec![Reason::Lineage]
    );
    assert_eq!(
        refusal_reasons("process where event of [file where true]"),
        vec![Reason::Lineage]
    );
    assert_eq!(
        refusal_reasons("registry where list[0] : \"x\""),
        vec![Reason::ArrayIndex]
    );
    assert!(refusal_reasons("sequence [a where true] [b where true]").is_empty());
    assert!(refusal_reasons("sequence by x [a where true] by y [b where true]").is_empty());
    assert_eq!(
        refusal_reasons("process where match(command_line, \".*\")"),
        vec![Reason::RemovedFunction("match".into())]
    );
    assert_eq!(
        refusal_reasons("process where matchLite(command_line, ?\".*\")"),
        vec![
            Reason::RemovedFunction("matchLite".into()),
            Reason::LegacyString
        ]
    );
    assert!(
        refusal_reasons("file where CONCAT(version, \"\") == \"1\" and startsWith~(a, \"b\")")
            .is_empty()
    );
    assert!(refusal_reasons("process where x in (1, 2) and not (y == 1)").is_empty());
    assert!(refusal_reasons("process where x in~ (\"a\") and x like~ (\"b\")").is_empty());
    assert_eq!(
        refusal_reasons("a where opcode : pid"),
        vec![Reason::NonConstantMatch]
    );
    assert_eq!(
        refusal_reasons("a where true : cidrMatch(ip, \"1.0.0.0/8\")"),
        vec![Reason::NonConstantMatch]
    );
    assert_eq!(
        refusal_reasons("a where x !: y"),
        vec![Reason::NonConstantMatch]
    );
    assert!(refusal_reasons("a where x : (\"a\", \"b\") and y : \"c*\"").is_empty());
    assert!(
        refusal_reasons("sequence with maxspan=1s [a where x == 1] ![b where true]").is_empty()
    );
}

#[test]
fn query_shapes() {
    assert_eq!(
        query_kind("  sequence by x [a where true] [b where true]"),
        QueryKind::Sequence
    );
    assert_eq!(
        query_kind("sample by x [a where true] [b where true]"),
        QueryKind::Sample
    );
    assert_eq!(query_kind("process where true"), QueryKind::Event);
    assert_eq!(
        query_kind("// c\nJOIN [a where true] [b where true]"),
        QueryKind::Join
    );
    assert!(has_trailing_missing_stage(
        "sequence with maxspan=1s [a where true] ![a where x == \"]\"]"
    ));
    assert!(!has_trailing_missing_stage(
        "sequence with maxspan=1s ![a where true] [a where true]"
    ));
    assert!(!has_trailing_missing_stage(
        "sequence [a where true] ![b where true] [c where true]"
    ));
    assert!(!has_trailing_missing_stage(
        "sequence [a where true] [c where true] until [d where true]"
    ));
    assert!(has_trailing_missing_stage(
        "sequence [a where true] ![c where true] until [d where true]"
    ));
}

#[test]
fn toml_nulls_become_strings() {
    let src = "join_keys = [null]\nk = [\"a\", null, 'null']\nq = '''x == null'''\nr = \"null\" # null\nnullable = [\"null\"]\n";
    let want = "join_keys = [\"null\"]\nk = [\"a\", \"null\", 'null']\nq = '''x == null'''\nr = \"null\" # null\nnullable = [\"null\"]\n";
    assert_eq!(toml_bare_nulls_as_strings(src), want);
    let t: toml::Table =
        toml_bare_nulls_as_strings("a = [ null , \"x\" ]\nq = '''\nwhere a == null\n'''\n")
            .parse()
            .unwrap();
    assert_eq!(t["a"].as_array().unwrap()[0].as_str(), Some("null"));
    assert_eq!(t["q"].as_str(), Some("where a == null\n"));
}

#[test]
fn json_comments_are_stripped_outside_strings() {
    let src =
        "[\n ////test2\n {\"a\": \"x//y\", \"b\": \"q\\\"//\"}, // tail\n /* c */ {\"c\": 1}\n]";
    let v: Value = serde_json::from_str(&strip_json_comments(src)).unwrap();
    assert_eq!(v[0]["a"], "x//y");
    assert_eq!(v[0]["b"], "q\"//");
    assert_eq!(v[1]["c"], 1);
}

#[test]
fn timestamps_read_like_a_date_field() {
    assert_eq!(
        timestamp_millis(&Value::from(1_516_116_808_349i64)),
        Ok(1_516_116_808_349)
    );
    assert_eq!(timestamp_millis(&Value::from("1")), Ok(1));
    assert_eq!(
        timestamp_millis(&Value::from("1234567991")),
        Ok(1_234_567_991)
    );
    assert_eq!(
        timestamp_millis(&Value::from("2022-05-04T12:00:00.000Z")),
        Ok(1_651_665_600_000)
    );
    assert_eq!(
        timestamp_millis(&Value::from("2022-05-04T12:00:00.005Z")),
        Ok(1_651_665_600_005)
    );
    assert_eq!(
        timestamp_millis(&Value::from("2022-05-04T12:00:00Z")),
        Ok(1_651_665_600_000)
    );
    assert_eq!(
        timestamp_millis(&Value::from("2022-05-04T14:00:00+02:00")),
        Ok(1_651_665_600_000)
    );
    assert_eq!(
        timestamp_millis(&Value::from("2017-08-30T20:47:33Z")),
        Ok(1_504_126_053_000)
    );
    assert_eq!(timestamp_millis(&Value::from("1970-01-02")), Ok(86_400_000));
    assert_eq!(
        days_from_civil(1600, 3, 1) * 86_400_000,
        -11_670_912_000_000
    );
    assert!(timestamp_millis(&Value::from("12-12-2022")).is_err());
    assert!(timestamp_millis(&Value::Null).is_err());
}

#[test]
fn endgame_filetime_conversion_is_integer_division() {
    // 131485996510000000 (FILETIME, 100 ns) → 2017-08-30T20:47:31Z in ms.
    let ft: i64 = 131_485_996_510_000_000;
    assert_eq!(ft / 10_000 - 11_644_473_600_000, 1_504_126_051_000);
    assert_eq!(
        131_509_374_020_000_009i64 / 10_000 - 11_644_473_600_000,
        1_506_463_802_000
    );
}

fn row(ids: &[i64], keys: &[&str]) -> Row {
    (ids.to_vec(), keys.iter().map(|k| k.to_string()).collect())
}

#[test]
fn comparison_orders() {
    let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let actual = vec![
        row(&[4, 23], &["tag3"]),
        row(&[1, 23], &["tag1"]),
        row(&[4, 23], &["tag4"]),
    ];
    let ids = [1, 23, 4, 23, 4, 23];
    let k = keys(&["tag1", "tag3", "tag4"]);
    // Same last event: may be reordered among themselves.
    assert_eq!(
        compare(&actual, &ids, &k, Reorder::SameLastEvent),
        Verdict::AsSet
    );
    assert_eq!(compare(&actual, &ids, &k, Reorder::None), Verdict::Mismatch);
    let exact = vec![
        row(&[1, 23], &["tag1"]),
        row(&[4, 23], &["tag3"]),
        row(&[4, 23], &["tag4"]),
    ];
    assert_eq!(compare(&exact, &ids, &k, Reorder::None), Verdict::Exact);
    // Keys are checked too, and skipped when the spec gives none.
    let wrong_keys = vec![
        row(&[1, 23], &["tag1"]),
        row(&[4, 23], &["tag3"]),
        row(&[4, 23], &["tagX"]),
    ];
    assert_eq!(
        compare(&wrong_keys, &ids, &k, Reorder::Any),
        Verdict::Mismatch
    );
    assert_eq!(
        compare(&wrong_keys, &ids, &[], Reorder::None),
        Verdict::Exact
    );
    // Different last events keep their order unless any order is allowed.
    let swapped = vec![row(&[2, 3], &[]), row(&[1, 2], &[])];
    assert_eq!(
        compare(&swapped, &[1, 2, 2, 3], &[], Reorder::SameLastEvent),
        Verdict::Mismatch
    );
    assert_eq!(
        compare(&swapped, &[1, 2, 2, 3], &[], Reorder::Any),
        Verdict::AsSet
    );
    // Missing stages (-1) do not count as the last event.
    let trailing = vec![row(&[-1, 4, -1], &[]), row(&[-1, 2, -1], &[])];
    assert_eq!(
        compare(&trailing, &[-1, 2, -1, -1, 4, -1], &[], Reorder::Any),
        Verdict::AsSet
    );
    // Counts must agree.
    assert_eq!(compare(&[], &[], &[], Reorder::None), Verdict::Exact);
    assert_eq!(compare(&[], &[1], &[], Reorder::Any), Verdict::Mismatch);
    assert_eq!(
        compare(&swapped, &[1, 2], &[], Reorder::Any),
        Verdict::Mismatch
    );
}

#[test]
fn suite_path_is_next_to_the_project() {
    let p: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join(SUITE_REL);
    assert!(p.ends_with("elasticsearch-eql"));
}
