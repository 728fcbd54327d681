//! Lucene regular expressions (`regex` / `regex~`), translated for the `regex` crate.
//!
//! # Where the semantics come from
//!
//! In Elasticsearch EQL, `field regex "pattern"` is an `RLike` expression (x-pack `ql`
//! `expression.predicate.regex.RLike`, pattern `RLikePattern`). `ExpressionTranslators.Likes`
//! turns it into a `RegexQuery`, i.e. an Elasticsearch `RegexpQueryBuilder` whose pattern is the
//! EQL string unchanged. `RegexpQueryBuilder` defaults its syntax flags to `RegexpFlag.ALL`
//! (Lucene's `RegExp.ALL` plus, since Lucene 10, `RegExp.DEPRECATED_COMPLEMENT`), so every optional
//! construct is on: intersection `&`, complement `~`, empty language `#`, any string `@`, numeric
//! interval `<n-m>`, and named automaton `<name>`. `regex~` sets `case_insensitive`, which becomes
//! Lucene's `RegExp.ASCII_CASE_INSENSITIVE` match flag. The query is a Lucene `RegexpQuery`: the
//! pattern, parsed by `org.apache.lucene.util.automaton.RegExp`, must accept the *whole* term
//! (there are no anchors in the syntax; a pattern is implicitly anchored at both ends).
//!
//! The grammar implemented here is the one of `RegExp`'s recursive-descent parser (Lucene 9, the
//! version under Elasticsearch 8), reproduced decision for decision, because a few of its rules
//! are not what a Perl-style reader expects:
//!
//! * An operator character is an operator only where the parser looks for one. `?`, `*`, `+`,
//!   `{`, `|`, `)` and `&` at the *start* of an expression are literal characters (`*a` matches
//!   `"*a"`, `a|&b` matches `"a"` or `"&b"`, a lone `)` matches `")"`); `&` after an expression is
//!   intersection. `~` is complement wherever an expression may start. Any `{` after an
//!   expression is a repetition and must be well formed.
//! * `^`, `$`, `]`, `}`, `-`, `>` and `,` are plain characters outside a character class.
//! * Inside `[...]` every character is literal except `\`, a `-` that follows a character (a
//!   range), the `]` that closes the class, and `^` right after the `[` (negation). The first
//!   character of a class is always a member, so `[]a]` is `]` or `a`; `~`, `&`, `#`, `@`, `"`,
//!   `(`, `<`, `.` are members there too. A `-` after a member starts a range even when it looks
//!   like the end of the class, so `[a-]` is an error (range `a`..`]`) as in Lucene.
//! * `\c` escapes any character, except that a backslash before an ASCII letter is an error
//!   unless it is one of the shorthand classes `\d` `[0-9]`, `\D`, `\s` `[ \t\n\r]`, `\S`, `\w`
//!   `[a-zA-Z_0-9]`, `\W` (Lucene 9 added them; they are ASCII-only, unlike the `regex` crate's
//!   Unicode `\d \s \w`, so they are spelled out as explicit ranges). There is no `\n` or `\t`.
//! * `"..."` is a literal string with no escapes at all (a backslash in it is a backslash).
//! * `.` is any code point, newline included; `@` any string; `#` the empty language (matches
//!   nothing); `()` the empty string.
//! * `<n-m>` accepts the decimal integers from `n` to `m` (swapped if `n > m`). If `n` and `m` are
//!   written with the same number of digits, the value must be written with exactly that many
//!   digits, zero-padded (`<01-10>` accepts `"07"` but not `"7"`); otherwise any number of
//!   leading zeros is accepted (`<1-10>` accepts `"7"`, `"07"`, `"007"`). Both bounds must fit a
//!   Java `int`, as in Lucene. See `Automata.makeDecimalInterval`.
//! * Case-insensitive matching (`regex~`) folds ASCII letters only, and only where they are
//!   single characters: plain characters, quoted strings and single class members. Ranges and
//!   shorthand classes are not folded: in Elasticsearch `regex~ "[a-z]"` does not match `"B"`
//!   (a documented limitation, elastic/elasticsearch#125412), and `[^a]` excludes both `a` and
//!   `A`. The translation reproduces that exactly, spelling folded letters as `[aA]` rather than
//!   using the `regex` crate's Unicode `(?i)`.
//!
//! # How a pattern is translated
//!
//! The pattern is parsed into a small syntax tree and printed back in `regex` crate syntax inside
//! `\A(?:…)\z`: literal characters are escaped (so `$`, `^`, `{`, `|` … keep their Lucene
//! meaning), `.` becomes `(?s:.)`, `@` `(?s:.*)`, `#` the empty class `[^\s\S]`, `()` `(?:)`,
//! classes become classes with explicit ranges, and quantifiers keep their form. A quantifier on
//! a quantifier keeps Lucene's meaning (`a+?` is `(a+)?`, printed `a*`, never a lazy `+`;
//! `a{2}{3}` is printed `(?:a{2}){3}`). A numeric interval becomes an alternation of digit
//! ranges: `<1-255>` gives `0*(?:[1-9]|[1-9][0-9]|1[0-9]{2}|2(?:[0-4][0-9]|5[0-5]))` and `<01-10>`
//! gives `(?:0[1-9]|10)`; its size grows with the square of the number of significant digits (at
//! most ten, as both bounds must fit a Java `int`), never with the width of the range.
//!
//! # What is refused, and why
//!
//! The `regex` crate has no intersection and no complement of arbitrary expressions, and they
//! cannot be rewritten into its syntax in general (Lucene computes them on determinised automata;
//! spelling a complement out as a regular expression can blow up exponentially). So `a&b`
//! (intersection) and `~a` (complement) are refused with a [`LuceneError`] naming the operator and
//! its byte offset; an escaped `\~`, a quoted `"&"`, a class member `[~&]`, or an `&` where no
//! expression precedes it (`&a`, `a|&b`) is an ordinary character and is fine. Named automata
//! (`<name>`) are refused too: Elasticsearch provides none, so it rejects them as well.
//! Malformed patterns (unbalanced parenthesis, unterminated class, quote, interval or
//! repetition, dangling or unknown escape, reversed range or repetition bounds) are errors too.
//! Not reproduced: Elasticsearch's limits on pattern length (`index.max_regex_length`) and on
//! automaton size (`max_determinized_states`); the `regex` crate has its own size limit, reported
//! by [`compile`].
//!
//! # Why by hand
//!
//! No crate parses Lucene's `RegExp` dialect: the regex crates implement Perl/RE2/PCRE syntax, in
//! which the same characters mean different things (`@`, `#`, `<`, `~`, `&`, `"` are operators
//! in Lucene and literals there; `^`, `$`, `\b`, `\n` are the opposite), and there is no implicit
//! anchoring. Passing the pattern through unchanged would silently change what a rule detects.
//!
//! **Why hand-written.** No crate reads Lucene's `RegExp` syntax, whose
//! rules (above) differ from Perl's; the matching is the `regex` crate's
//! (linear time, no backtracking), on the translation made once at load.

use std::fmt;

/// Why a Lucene pattern cannot be translated: a message naming the construct, and the byte offset in the pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuceneError {
    pub message: String,
    pub offset: usize,
}

impl fmt::Display for LuceneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at offset {}", self.message, self.offset)
    }
}

/// Translate a Lucene RegExp pattern into a `regex` crate pattern anchored on the whole value (`\A(?:…)\z`), dot matching any character including newline.
pub fn translate(pattern: &str) -> Result<String, LuceneError> {
    let node = parse(pattern)?;
    Ok(render_anchored(&node, false))
}

/// translate + compile; `case_insensitive` for `regex~`.
pub fn compile(pattern: &str, case_insensitive: bool) -> Result<regex::Regex, LuceneError> {
    let node = parse(pattern)?;
    let translated = render_anchored(&node, case_insensitive);
    regex::Regex::new(&translated).map_err(|e| LuceneError {
        message: format!("the translated pattern does not compile ({e})"),
        offset: 0,
    })
}

/// If the pattern matches exactly one string (no operators at all, only literal chars / escapes / quoted strings), that string (Elasticsearch's optimizer turns such a `regex` into an equality).
///
/// Like Elasticsearch (which asks the pattern's automaton for its single accepted string), this
/// looks at the language rather than the spelling, so `a{3}`, `[x]`, `(ab)` and `<07-07>` count as
/// well; anything refused or malformed gives `None`, as does a single string longer than 1 MiB.
/// The answer is for the case-sensitive `regex`; under `regex~` a letter matches both cases.
pub fn literal(pattern: &str) -> Option<String> {
    match language(&parse(pattern).ok()?) {
        Lang::One(s) => Some(s),
        Lang::Never | Lang::Many => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Syntax tree
// ---------------------------------------------------------------------------------------------

/// Deepest nesting of groups or of quantifiers accepted (keeps the recursion bounded).
const MAX_DEPTH: usize = 200;

/// Longest single string [`literal`] will build.
const MAX_LITERAL: usize = 1 << 20;

const MAX_CODE_POINT: u32 = 0x10FFFF;

#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// The empty string: `()` or an empty pattern.
    Empty,
    /// The empty language `#`.
    Never,
    /// `.`
    AnyChar,
    /// `@`
    AnyString,
    /// One code point (plain or escaped).
    Char(char),
    /// A quoted string `"..."`.
    Str(String),
    /// `[...]`, `[^...]` or a shorthand class (`\d` ...).
    Class {
        negated: bool,
        items: Vec<ClassItem>,
    },
    /// `<min-max>`; `digits` > 0 means fixed width (zero padded).
    Interval {
        min: u32,
        max: u32,
        digits: usize,
    },
    Concat(Vec<Node>),
    Union(Vec<Node>),
    Repeat {
        node: Box<Node>,
        min: u32,
        max: Option<u32>,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum ClassItem {
    /// A single member: folded under case-insensitive matching.
    Single(char),
    /// An inclusive range, or part of a shorthand class: never folded.
    Range(u32, u32),
}

// ---------------------------------------------------------------------------------------------
// Parser (mirrors org.apache.lucene.util.automaton.RegExp)
// ---------------------------------------------------------------------------------------------

fn parse(pattern: &str) -> Result<Node, LuceneError> {
    if pattern.is_empty() {
        return Ok(Node::Empty);
    }
    let mut p = Parser {
        src: pattern,
        pos: 0,
        depth: 0,
    };
    let node = p.parse_union()?;
    if p.pos < pattern.len() {
        // Only a ')' stops the top-level union early.
        return Err(p.error_at("unbalanced parenthesis ')' without a matching '('", p.pos));
    }
    Ok(node)
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek_is(&self, set: &str) -> bool {
        self.peek().is_some_and(|c| set.contains(c))
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn more(&self) -> bool {
        self.pos < self.src.len()
    }

    fn error_at(&self, message: impl Into<String>, offset: usize) -> LuceneError {
        LuceneError {
            message: message.into(),
            offset,
        }
    }

    fn enter(&mut self, offset: usize) -> Result<(), LuceneError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_at(format!("nesting deeper than {MAX_DEPTH} levels"), offset));
        }
        Ok(())
    }

    /// unionexp ::= interexp `|` unionexp | interexp
    fn parse_union(&mut self) -> Result<Node, LuceneError> {
        let mut alternatives = vec![self.parse_inter()?];
        while self.eat('|') {
            alternatives.push(self.parse_inter()?);
        }
        Ok(if alternatives.len() == 1 {
            alternatives.pop().unwrap()
        } else {
            Node::Union(alternatives)
        })
    }

    /// interexp ::= concatexp `&` interexp | concatexp
    fn parse_inter(&mut self) -> Result<Node, LuceneError> {
        let node = self.parse_concat()?;
        if self.peek() == Some('&') {
            return Err(self.error_at(
                "the intersection operator '&' cannot be translated (the regex crate has no intersection)",
                self.pos,
            ));
        }
        Ok(node)
    }

    /// concatexp ::= repeatexp concatexp | repeatexp
    fn parse_concat(&mut self) -> Result<Node, LuceneError> {
        let mut items = vec![self.parse_repeat()?];
        while self.more() && !self.peek_is(")|&") {
            items.push(self.parse_repeat()?);
        }
        Ok(if items.len() == 1 {
            items.pop().unwrap()
        } else {
            Node::Concat(items)
        })
    }

    /// repeatexp ::= repeatexp (`?` | `*` | `+` | `{n}` | `{n,}` | `{n,m}`) | complexp
    fn parse_repeat(&mut self) -> Result<Node, LuceneError> {
        let start = self.pos;
        let mut node = self.parse_compl()?;
        let mut nested = 0usize;
        while self.peek_is("?*+{") {
            let at = self.pos;
            let (min, max) = match self.bump() {
                Some('?') => (0, Some(1)),
                Some('*') => (0, None),
                Some('+') => (1, None),
                _ => self.parse_bounds(at)?,
            };
            node = match node {
                // (x?)* (x+)? ... : both star-like, so one quantifier says the same.
                Node::Repeat {
                    node: inner,
                    min: imin,
                    max: imax,
                } if imin <= 1
                    && imax.is_none_or(|m| m == 1)
                    && min <= 1
                    && max.is_none_or(|m| m == 1) =>
                {
                    let max = if imax.is_none() || max.is_none() {
                        None
                    } else {
                        Some(1)
                    };
                    Node::Repeat {
                        node: inner,
                        min: imin * min,
                        max,
                    }
                }
                other => {
                    nested += 1;
                    if nested > MAX_DEPTH {
                        return Err(self
                            .error_at(format!("more than {MAX_DEPTH} nested repetitions"), start));
                    }
                    Node::Repeat {
                        node: Box::new(other),
                        min,
                        max,
                    }
                }
            };
        }
        Ok(node)
    }

    /// The `{n}`, `{n,}` or `{n,m}` after an expression; `at` is the offset of the `{`.
    fn parse_bounds(&mut self, at: usize) -> Result<(u32, Option<u32>), LuceneError> {
        let n = match self.parse_count(at)? {
            Some(n) => n,
            None => {
                return Err(self.error_at(
                    "malformed repetition '{': a number is expected after '{'",
                    at,
                ))
            }
        };
        let m = if self.eat(',') {
            self.parse_count(at)?
        } else {
            Some(n)
        };
        if !self.eat('}') {
            return Err(self.error_at("unterminated repetition '{': '}' is expected", at));
        }
        if let Some(m) = m {
            if n > m {
                return Err(self.error_at(
                    format!("invalid repetition {{{n},{m}}}: the minimum exceeds the maximum"),
                    at,
                ));
            }
        }
        Ok((n, m))
    }

    /// Decimal digits (as Java's `Integer.parseInt` accepts them: up to `i32::MAX`), if any.
    fn parse_count(&mut self, at: usize) -> Result<Option<u32>, LuceneError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        if start == self.pos {
            return Ok(None);
        }
        match self.src[start..self.pos].parse::<u32>() {
            Ok(v) if v <= i32::MAX as u32 => Ok(Some(v)),
            _ => Err(self.error_at("repetition count too large (more than 2147483647)", at)),
        }
    }

    /// complexp ::= `~` complexp | charclassexp
    fn parse_compl(&mut self) -> Result<Node, LuceneError> {
        if self.peek() == Some('~') {
            return Err(self.error_at(
                "the complement operator '~' cannot be translated (the regex crate has no complement)",
                self.pos,
            ));
        }
        if self.peek() == Some('[') {
            self.parse_class()
        } else {
            self.parse_simple()
        }
    }

    /// charclassexp ::= `[` charclasses `]` | `[^` charclasses `]`
    fn parse_class(&mut self) -> Result<Node, LuceneError> {
        let open = self.pos;
        self.bump(); // '['
        let negated = self.eat('^');
        let mut items = Vec::new();
        if !self.more() {
            return Err(self.error_at("unterminated character class '[': ']' is expected", open));
        }
        loop {
            self.parse_class_item(&mut items)?;
            if !self.more() || self.peek() == Some(']') {
                break;
            }
        }
        if !self.eat(']') {
            return Err(self.error_at("unterminated character class '[': ']' is expected", open));
        }
        Ok(Node::Class { negated, items })
    }

    /// charclass ::= charexp `-` charexp | charexp, or a shorthand class.
    fn parse_class_item(&mut self, items: &mut Vec<ClassItem>) -> Result<(), LuceneError> {
        let at = self.pos;
        let first = if self.eat('\\') {
            match self.bump() {
                None => {
                    return Err(self.error_at("dangling escape '\\' at the end of the pattern", at))
                }
                Some('\\') => {
                    // Lucene returns `\\` as a finished member: it cannot start a range.
                    items.push(ClassItem::Single('\\'));
                    return Ok(());
                }
                Some(c) => match shorthand(c) {
                    Some(ranges) => {
                        items.extend(ranges.into_iter().map(|(a, b)| ClassItem::Range(a, b)));
                        return Ok(());
                    }
                    None if c.is_ascii_alphabetic() => return Err(invalid_escape(c, at)),
                    None => c,
                },
            }
        } else {
            match self.bump() {
                Some(c) => c,
                None => {
                    return Err(
                        self.error_at("unterminated character class '[': ']' is expected", at)
                    )
                }
            }
        };
        if self.eat('-') {
            let last = self.parse_char_exp()?;
            if first > last {
                return Err(self.error_at(
                    format!("invalid character range '{first}-{last}': the start is after the end"),
                    at,
                ));
            }
            items.push(ClassItem::Range(first as u32, last as u32));
        } else {
            items.push(ClassItem::Single(first));
        }
        Ok(())
    }

    /// charexp ::= <Unicode character> | `\` <Unicode character> (the end of a class range).
    fn parse_char_exp(&mut self) -> Result<char, LuceneError> {
        let at = self.pos;
        if self.eat('\\') {
            return self.bump().ok_or_else(|| {
                self.error_at("dangling escape '\\' at the end of the pattern", at)
            });
        }
        self.bump().ok_or_else(|| {
            self.error_at("unterminated character class: a range end is expected", at)
        })
    }

    /// simpleexp ::= charexp | `.` | `#` | `@` | `"`string`"` | `()` | `(` unionexp `)` | `<n-m>` | `<id>`
    fn parse_simple(&mut self) -> Result<Node, LuceneError> {
        let at = self.pos;
        let c = match self.bump() {
            Some(c) => c,
            None => {
                return Err(
                    self.error_at("unexpected end of pattern: an expression is expected", at)
                )
            }
        };
        match c {
            '.' => Ok(Node::AnyChar),
            '#' => Ok(Node::Never),
            '@' => Ok(Node::AnyString),
            '"' => match self.src[self.pos..].find('"') {
                Some(len) => {
                    let s = self.src[self.pos..self.pos + len].to_string();
                    self.pos += len + 1;
                    Ok(Node::Str(s))
                }
                None => Err(self.error_at(
                    "unterminated quoted string '\"': the closing '\"' is missing",
                    at,
                )),
            },
            '(' => {
                if self.eat(')') {
                    return Ok(Node::Empty);
                }
                self.enter(at)?;
                let node = self.parse_union()?;
                self.depth -= 1;
                if !self.eat(')') {
                    return Err(self.error_at("unbalanced parenthesis: '(' is never closed", at));
                }
                Ok(node)
            }
            '<' => self.parse_angle(at),
            '\\' => match self.bump() {
                None => Err(self.error_at("dangling escape '\\' at the end of the pattern", at)),
                Some('\\') => Ok(Node::Char('\\')),
                Some(c) => match shorthand(c) {
                    Some(ranges) => Ok(Node::Class {
                        negated: false,
                        items: ranges
                            .into_iter()
                            .map(|(a, b)| ClassItem::Range(a, b))
                            .collect(),
                    }),
                    None if c.is_ascii_alphabetic() => Err(invalid_escape(c, at)),
                    None => Ok(Node::Char(c)),
                },
            },
            c => Ok(Node::Char(c)),
        }
    }

    /// `<n-m>` (numeric interval) or `<identifier>` (named automaton); `at` is the offset of `<`.
    fn parse_angle(&mut self, at: usize) -> Result<Node, LuceneError> {
        let len = match self.src[self.pos..].find('>') {
            Some(len) => len,
            None => {
                return Err(
                    self.error_at("unterminated interval '<': the closing '>' is missing", at)
                )
            }
        };
        let body = &self.src[self.pos..self.pos + len];
        self.pos += len + 1;
        let dash = match body.find('-') {
            Some(i) => i,
            None => {
                return Err(self.error_at(
                    format!("the named automaton '<{body}>' cannot be translated (Elasticsearch defines none)"),
                    at,
                ))
            }
        };
        let (low, high) = (&body[..dash], &body[dash + 1..]);
        let number = |s: &str| -> Option<u32> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let digits = s.trim_start_matches('0');
            if digits.len() > 10 {
                return None;
            }
            let v: u64 = if digits.is_empty() {
                0
            } else {
                digits.parse().ok()?
            };
            (v <= i32::MAX as u64).then_some(v as u32)
        };
        match (number(low), number(high)) {
            (Some(a), Some(b)) => {
                let digits = if low.len() == high.len() { low.len() } else { 0 };
                Ok(Node::Interval { min: a.min(b), max: a.max(b), digits })
            }
            _ => Err(self.error_at(
                format!("malformed numeric interval '<{body}>': expected <n-m> with non-negative integers up to 2147483647"),
                at,
            )),
        }
    }
}

fn invalid_escape(c: char, at: usize) -> LuceneError {
    LuceneError {
        message: format!("invalid escape '\\{c}' (a backslash before a letter is only allowed in \\d \\D \\s \\S \\w \\W)"),
        offset: at,
    }
}

/// Lucene's shorthand classes (ASCII definitions), as inclusive code point ranges.
fn shorthand(c: char) -> Option<Vec<(u32, u32)>> {
    let digit = vec![(0x30, 0x39)];
    let space = vec![(0x09, 0x0A), (0x0D, 0x0D), (0x20, 0x20)];
    let word = vec![(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)];
    Some(match c {
        'd' => digit,
        'D' => complement(&digit),
        's' => space,
        'S' => complement(&space),
        'w' => word,
        'W' => complement(&word),
        _ => return None,
    })
}

/// Complement of sorted, disjoint ranges over all code points.
fn complement(ranges: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut next = 0u32;
    for &(a, b) in ranges {
        if a > next {
            out.push((next, a - 1));
        }
        next = b + 1;
    }
    if next <= MAX_CODE_POINT {
        out.push((next, MAX_CODE_POINT));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Printing in `regex` crate syntax
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Prec {
    Union,
    Concat,
    Atom,
}

fn render_anchored(node: &Node, ci: bool) -> String {
    format!("\\A(?:{})\\z", render(node, ci).0)
}

fn render(node: &Node, ci: bool) -> (String, Prec) {
    match node {
        Node::Empty => ("(?:)".to_string(), Prec::Atom),
        Node::Never => ("[^\\s\\S]".to_string(), Prec::Atom),
        Node::AnyChar => ("(?s:.)".to_string(), Prec::Atom),
        Node::AnyString => ("(?s:.*)".to_string(), Prec::Atom),
        Node::Char(c) => (render_char(*c, ci), Prec::Atom),
        Node::Str(s) => {
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (None, _) => ("(?:)".to_string(), Prec::Atom),
                (Some(c), None) => (render_char(c, ci), Prec::Atom),
                _ => (
                    s.chars().map(|c| render_char(c, ci)).collect(),
                    Prec::Concat,
                ),
            }
        }
        Node::Class { negated, items } => (render_class(*negated, items, ci), Prec::Atom),
        // `interval` never has a top-level `|` (alternatives come grouped).
        Node::Interval { min, max, digits } => (interval(*min, *max, *digits), Prec::Concat),
        Node::Concat(items) => {
            let mut out = String::new();
            for item in items {
                let (s, prec) = render(item, ci);
                if prec == Prec::Union {
                    out.push_str("(?:");
                    out.push_str(&s);
                    out.push(')');
                } else {
                    out.push_str(&s);
                }
            }
            (out, Prec::Concat)
        }
        Node::Union(items) => {
            let parts: Vec<String> = items.iter().map(|item| render(item, ci).0).collect();
            (parts.join("|"), Prec::Union)
        }
        Node::Repeat { node, min, max } => {
            let (s, prec) = render(node, ci);
            // A quantifier on a quantifier is grouped: `a+?` must not turn into a lazy `+`.
            let mut out = if prec == Prec::Atom && !matches!(**node, Node::Repeat { .. }) {
                s
            } else {
                format!("(?:{s})")
            };
            match (min, max) {
                (0, None) => out.push('*'),
                (1, None) => out.push('+'),
                (0, Some(1)) => out.push('?'),
                (n, None) => out.push_str(&format!("{{{n},}}")),
                (n, Some(m)) if n == m => out.push_str(&format!("{{{n}}}")),
                (n, Some(m)) => out.push_str(&format!("{{{n},{m}}}")),
            }
            (out, Prec::Concat)
        }
    }
}

/// One literal character; ASCII letters become `[aA]` under (Lucene's ASCII) case folding.
fn render_char(c: char, ci: bool) -> String {
    if ci && c.is_ascii_alphabetic() {
        format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())
    } else {
        escape_char(c)
    }
}

fn escape_char(c: char) -> String {
    if c.is_control() || c.is_whitespace() {
        format!("\\x{{{:X}}}", c as u32)
    } else {
        regex::escape(c.encode_utf8(&mut [0u8; 4]))
    }
}

/// A range endpoint: printable ASCII as itself, anything else as `\x{…}` (readable for the
/// complemented shorthand classes, which end at U+10FFFF).
fn escape_code_point(cp: u32) -> String {
    match char::from_u32(cp) {
        Some(c) if c.is_ascii_graphic() => escape_char(c),
        _ => format!("\\x{{{cp:X}}}"),
    }
}

fn render_class(negated: bool, items: &[ClassItem], ci: bool) -> String {
    let mut out = String::from(if negated { "[^" } else { "[" });
    for item in items {
        match *item {
            ClassItem::Single(c) => {
                if ci && c.is_ascii_alphabetic() {
                    out.push(c.to_ascii_lowercase());
                    out.push(c.to_ascii_uppercase());
                } else {
                    out.push_str(&escape_char(c));
                }
            }
            ClassItem::Range(a, b) if a == b => out.push_str(&escape_code_point(a)),
            ClassItem::Range(a, b) => {
                out.push_str(&escape_code_point(a));
                out.push('-');
                out.push_str(&escape_code_point(b));
            }
        }
    }
    out.push(']');
    out
}

/// The decimal integers in `min..=max` (Lucene's `Automata.makeDecimalInterval`): exactly
/// `digits` digits, zero padded, when `digits > 0`, else any number of leading zeros.
fn interval(min: u32, max: u32, digits: usize) -> String {
    if digits > 0 {
        let lo = format!("{min:0digits$}");
        let hi = format!("{max:0digits$}");
        return group(digit_range(lo.as_bytes(), hi.as_bytes()));
    }
    let (lo, hi) = (min.to_string(), max.to_string());
    let mut alternatives = Vec::new();
    for len in lo.len()..=hi.len() {
        let from = if len == lo.len() {
            lo.clone()
        } else {
            format!("1{}", "0".repeat(len - 1))
        };
        let to = if len == hi.len() {
            hi.clone()
        } else {
            "9".repeat(len)
        };
        alternatives.extend(digit_range(from.as_bytes(), to.as_bytes()));
    }
    format!("0*{}", group(alternatives))
}

/// Alternatives matching the digit strings of one length from `lo` to `hi` inclusive.
fn digit_range(lo: &[u8], hi: &[u8]) -> Vec<String> {
    debug_assert_eq!(lo.len(), hi.len());
    // A common prefix (zero padding, say) is written once, without recursion.
    let common = lo.iter().zip(hi).take_while(|(a, b)| a == b).count();
    if common > 0 {
        let prefix: String = lo[..common].iter().map(|&b| b as char).collect();
        if common == lo.len() {
            return vec![prefix];
        }
        return vec![prefix + &group(digit_range(&lo[common..], &hi[common..]))];
    }
    let (l0, h0, rest) = (lo[0], hi[0], lo.len() - 1);
    let mut out = Vec::new();
    let (mut first, mut last) = (l0, h0);
    if !lo[1..].iter().all(|&b| b == b'0') {
        out.push(format!(
            "{}{}",
            l0 as char,
            group(digit_range(&lo[1..], &vec![b'9'; rest]))
        ));
        first += 1;
    }
    let mut high = None;
    if !hi[1..].iter().all(|&b| b == b'9') {
        high = Some(format!(
            "{}{}",
            h0 as char,
            group(digit_range(&vec![b'0'; rest], &hi[1..]))
        ));
        last -= 1;
    }
    if first <= last {
        let class = if first == last {
            (first as char).to_string()
        } else {
            format!("[{}-{}]", first as char, last as char)
        };
        let tail = match rest {
            0 => String::new(),
            1 => "[0-9]".to_string(),
            n => format!("[0-9]{{{n}}}"),
        };
        out.push(class + &tail);
    }
    out.extend(high);
    out
}

fn group(alternatives: Vec<String>) -> String {
    if alternatives.len() == 1 {
        alternatives.into_iter().next().unwrap()
    } else {
        format!("(?:{})", alternatives.join("|"))
    }
}

/// Strings of at least `min_len` bytes one of which every value the pattern
/// accepts holds somewhere (`None`: no such set found, or the pattern is
/// refused): a value that holds none of them cannot match. Under `regex~`,
/// a value holds a string when it does so ASCII-case-insensitively (the
/// folding is never wider than that). For a rule pack's index: the longest
/// run of literal characters of a concatenation, or what one of its parts
/// requires (one of a union's alternatives, a part repeated at least once),
/// whichever has the longest shortest string.
pub fn required_fragments(pattern: &str, min_len: usize) -> Option<Vec<String>> {
    required(&parse(pattern).ok()?, min_len.max(1))
}

/// The one string a node stands for when it is a literal: a character, a
/// quoted string, or a class of one character.
fn literal_text(node: &Node) -> Option<String> {
    match node {
        Node::Char(c) => Some(c.to_string()),
        Node::Str(s) => Some(s.clone()),
        Node::Class { negated: false, .. } => match language(node) {
            Lang::One(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

fn required(node: &Node, min_len: usize) -> Option<Vec<String>> {
    if let Some(s) = literal_text(node) {
        return (s.len() >= min_len).then(|| vec![s]);
    }
    match node {
        Node::Repeat { node, min, .. } if *min >= 1 => required(node, min_len),
        Node::Union(alternatives) => {
            let mut all: Vec<String> = Vec::new();
            for a in alternatives {
                for s in required(a, min_len)? {
                    if !all.contains(&s) {
                        all.push(s);
                    }
                }
            }
            Some(all)
        }
        Node::Concat(items) => {
            let mut options: Vec<Vec<String>> = Vec::new();
            let mut run = String::new();
            for item in items {
                if let Some(s) = literal_text(item) {
                    run.push_str(&s);
                    continue;
                }
                let ended = std::mem::take(&mut run);
                if ended.len() >= min_len {
                    options.push(vec![ended]);
                }
                options.extend(required(item, min_len));
            }
            if run.len() >= min_len {
                options.push(vec![run]);
            }
            options.into_iter().max_by_key(|o| (o.iter().map(String::len).min().unwrap_or(0), std::cmp::Reverse(o.len())))
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Single-string languages (for `literal`)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Lang {
    /// Matches nothing.
    Never,
    /// Matches exactly this string.
    One(String),
    /// Matches more than one string (or one we decline to build).
    Many,
}

fn language(node: &Node) -> Lang {
    match node {
        Node::Empty => Lang::One(String::new()),
        Node::Never => Lang::Never,
        Node::AnyChar | Node::AnyString => Lang::Many,
        Node::Char(c) => Lang::One(c.to_string()),
        Node::Str(s) => Lang::One(s.clone()),
        Node::Class {
            negated: false,
            items,
        } => {
            let mut only = None;
            for item in items {
                let (a, b) = match *item {
                    ClassItem::Single(c) => (c as u32, c as u32),
                    ClassItem::Range(a, b) => (a, b),
                };
                if a != b || only.is_some_and(|o| o != a) {
                    return Lang::Many;
                }
                only = Some(a);
            }
            match only.and_then(char::from_u32) {
                Some(c) => Lang::One(c.to_string()),
                None => Lang::Many,
            }
        }
        Node::Class { negated: true, .. } => Lang::Many,
        Node::Interval { min, max, digits } if min == max && *digits > 0 => {
            Lang::One(format!("{min:0digits$}", digits = *digits))
        }
        Node::Interval { .. } => Lang::Many,
        Node::Concat(items) => {
            let mut out = String::new();
            let mut many = false;
            for item in items {
                match language(item) {
                    Lang::Never => return Lang::Never,
                    Lang::Many => many = true,
                    Lang::One(s) => out.push_str(&s),
                }
                if out.len() > MAX_LITERAL {
                    many = true;
                }
            }
            if many {
                Lang::Many
            } else {
                Lang::One(out)
            }
        }
        Node::Union(items) => {
            let mut only: Option<String> = None;
            for item in items {
                match language(item) {
                    Lang::Never => {}
                    Lang::Many => return Lang::Many,
                    Lang::One(s) => match &only {
                        Some(o) if *o != s => return Lang::Many,
                        _ => only = Some(s),
                    },
                }
            }
            only.map_or(Lang::Never, Lang::One)
        }
        Node::Repeat { node, min, max } => match language(node) {
            Lang::Never if *min == 0 => Lang::One(String::new()),
            Lang::Never => Lang::Never,
            _ if *max == Some(0) => Lang::One(String::new()),
            Lang::One(s) if s.is_empty() => Lang::One(s),
            Lang::One(s) if *max == Some(*min) => {
                if s.len().saturating_mul(*min as usize) > MAX_LITERAL {
                    Lang::Many
                } else {
                    Lang::One(s.repeat(*min as usize))
                }
            }
            _ => Lang::Many,
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value a pattern accepts holds one of the strings it requires
    /// (ASCII-case-insensitively under `regex~`): random patterns over a
    /// small alphabet, against every string of up to five of its letters.
    #[test]
    fn what_a_pattern_accepts_holds_a_required_string() {
        let tokens = ["a", "b", "A", "c", "\"ab\"", ".", "[ab]", "[a]", "(", ")", "|", "*", "+", "?", "{1,2}", "@", "ab", "bc"];
        let mut values = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..5 {
            last = last.iter().flat_map(|s| ["a", "b", "A", "c"].iter().map(move |c| format!("{s}{c}"))).collect();
            values.extend(last.iter().cloned());
        }
        let mut rnd = crate::xorshift(0x1e9e_e7a1);
        let (mut checked, mut required_some) = (0, 0);
        while checked < 400 {
            let n = 1 + (rnd() % 8) as usize;
            let pattern: String = (0..n).map(|_| tokens[(rnd() % tokens.len() as u64) as usize]).collect();
            for ci in [false, true] {
                let Ok(re) = compile(&pattern, ci) else { continue };
                checked += 1;
                for min_len in 1..=3 {
                    let Some(req) = required_fragments(&pattern, min_len) else { continue };
                    required_some += 1;
                    assert!(req.iter().all(|s| s.len() >= min_len), "{pattern:?}: {req:?}");
                    for v in values.iter().filter(|v| re.is_match(v)) {
                        let holds = |s: &String| if ci { v.to_ascii_lowercase().contains(&s.to_ascii_lowercase()) } else { v.contains(s.as_str()) };
                        assert!(req.iter().any(holds), "{pattern:?} (ci {ci}) accepts {v:?}, which holds none of {req:?}");
                    }
                }
            }
        }
        assert!(required_some > 100, "the patterns required strings {required_some} times");
    }

    fn re(pattern: &str) -> regex::Regex {
        compile(pattern, false).unwrap_or_else(|e| panic!("{pattern:?}: {e}"))
    }

    fn re_ci(pattern: &str) -> regex::Regex {
        compile(pattern, true).unwrap_or_else(|e| panic!("{pattern:?}: {e}"))
    }

    fn yes(pattern: &str, values: &[&str]) {
        let r = re(pattern);
        for v in values {
            assert!(
                r.is_match(v),
                "{pattern:?} (as {}) should match {v:?}",
                r.as_str()
            );
        }
    }

    fn no(pattern: &str, values: &[&str]) {
        let r = re(pattern);
        for v in values {
            assert!(
                !r.is_match(v),
                "{pattern:?} (as {}) should not match {v:?}",
                r.as_str()
            );
        }
    }

    fn err(pattern: &str) -> LuceneError {
        match translate(pattern) {
            Ok(t) => panic!("{pattern:?} should be refused, got {t:?}"),
            Err(e) => {
                // compile and literal agree with translate.
                assert_eq!(compile(pattern, true).unwrap_err(), e);
                assert_eq!(literal(pattern), None);
                e
            }
        }
    }

    fn err_at(pattern: &str, offset: usize, needle: &str) {
        let e = err(pattern);
        assert_eq!(e.offset, offset, "{pattern:?}: {e}");
        assert!(
            e.message.contains(needle),
            "{pattern:?}: {e} should mention {needle:?}"
        );
    }

    // --- output shape ------------------------------------------------------------------------

    #[test]
    fn output_is_anchored_and_wrapped() {
        assert_eq!(translate("ab").unwrap(), "\\A(?:ab)\\z");
        assert_eq!(translate("a|b").unwrap(), "\\A(?:a|b)\\z");
        assert_eq!(translate("").unwrap(), "\\A(?:(?:))\\z");
        assert_eq!(translate("a.c").unwrap(), "\\A(?:a(?s:.)c)\\z");
    }

    #[test]
    fn anchored_on_the_whole_value() {
        yes("ab", &["ab"]);
        no("ab", &["xaby", "abx", "xab", "a", ""]);
        yes("b.*", &["b", "bcd"]);
        no("b.*", &["ab", "abc"]);
        yes("", &[""]);
        no("", &["a"]);
    }

    #[test]
    fn dot_matches_any_code_point_including_newline() {
        yes(".*", &["", "a\nb", "\n", "\r\n"]);
        yes("a.*b", &["a\n\nb", "ab"]);
        yes("a.b", &["a\nb", "aéb", "a😀b"]);
        no("a.b", &["ab", "a12b"]);
        yes(".", &["😀", "\u{0}"]);
        no(".", &["ab", ""]);
    }

    // --- operators ---------------------------------------------------------------------------

    #[test]
    fn repetition() {
        yes("a?", &["", "a"]);
        no("a?", &["aa"]);
        yes("a*", &["", "a", "aaaa"]);
        yes("a+", &["a", "aaa"]);
        no("a+", &[""]);
        yes("a{3}", &["aaa"]);
        no("a{3}", &["aa", "aaaa"]);
        yes("a{2,}", &["aa", "aaaaaa"]);
        no("a{2,}", &["a"]);
        yes("a{1,3}", &["a", "aaa"]);
        no("a{1,3}", &["", "aaaa"]);
        yes("a{0}", &[""]);
        no("a{0}", &["a"]);
        yes("(ab){2}", &["abab"]);
        yes("\"ab\"+", &["ab", "abab"]);
        no("\"ab\"+", &["aba", ""]);
        yes("ab+", &["abbb"]);
        no("ab+", &["abab"]);
    }

    #[test]
    fn stacked_quantifiers_keep_lucene_meaning() {
        // Lucene: (a+)? , never a lazy quantifier.
        yes("a+?", &["", "a", "aaa"]);
        yes("a**", &["", "aaaa"]);
        yes("a?+", &["", "aaa"]);
        yes("a{2}{3}", &["aaaaaa"]);
        no("a{2}{3}", &["aaaaa", "aaaaaaa", "aa"]);
        yes("a{2}?", &["", "aa"]);
        no("a{2}?", &["a"]);
        yes("(a*b)*", &["", "b", "aabab"]);
        assert_eq!(translate("a+?").unwrap(), "\\A(?:a*)\\z");
        assert_eq!(translate("a{2}{3}").unwrap(), "\\A(?:(?:a{2}){3})\\z");
    }

    #[test]
    fn union_and_grouping() {
        yes("ab|cd", &["ab", "cd"]);
        no("ab|cd", &["abd", "acd", "abcd"]);
        yes("a(b|c)d", &["abd", "acd"]);
        no("a(b|c)d", &["ad", "abcd"]);
        yes("a|b|c", &["a", "b", "c"]);
        yes("(a|b)*", &["", "abba"]);
        yes("((a))", &["a"]);
    }

    #[test]
    fn empty_group_is_the_empty_string() {
        yes("()", &[""]);
        no("()", &["a"]);
        yes("a()b", &["ab"]);
        yes("()*", &[""]);
        yes("()+", &[""]);
        yes("(()|a)", &["", "a"]);
    }

    #[test]
    fn union_with_missing_alternative() {
        // Lucene reads a ')' where an expression must start as a character, so `(a|)` is
        // missing its closing parenthesis, and `a|` ends too early.
        err_at("(a|)", 0, "never closed");
        err_at("a|", 2, "unexpected end");
        let e = err("x(a|b|)y");
        assert_eq!(e.offset, 1);
    }

    #[test]
    fn any_string() {
        yes("@", &["", "anything", "multi\nline"]);
        yes("a@", &["a", "abc", "a\nb"]);
        no("a@", &["ba", ""]);
        yes("@.exe", &["x.exe", "c:\\x.exe"]);
        yes("@a@", &["a", "bab"]);
        no("@a@", &["bbb"]);
    }

    #[test]
    fn empty_language_matches_nothing() {
        no("#", &["", "#", "a"]);
        no("a#", &["a", "a#"]);
        no("#*a", &["#a"]);
        yes("#*a", &["a"]); // zero repetitions of the empty language: the empty string
        yes("a|#", &["a"]);
        no("a|#", &["", "#"]);
    }

    // --- characters that are literal in Lucene ---------------------------------------------------

    #[test]
    fn regex_crate_specials_are_literal() {
        yes("a$b", &["a$b"]);
        yes("a^b", &["a^b"]);
        yes("^a$", &["^a$"]);
        no("^a$", &["a"]);
        yes("a}", &["a}"]);
        yes("a]", &["a]"]);
        yes("a-b,c>d", &["a-b,c>d"]);
        yes("a b", &["a b"]);
        no("a b", &["ab"]);
        yes("tab\there", &["tab\there"]);
        yes("nul\u{0}", &["nul\u{0}"]);
        yes("é+", &["ééé"]);
        yes("日本", &["日本"]);
    }

    #[test]
    fn operators_where_no_expression_precedes_are_literal() {
        yes("*a", &["*a"]);
        yes("+", &["+"]);
        yes("?x", &["?x"]);
        yes("{a", &["{a"]);
        yes("{2}", &["{2}"]); // `{` starts a character, then `2`, then `}`
        yes("|a", &["|a"]);
        yes("a|*", &["a", "*"]);
        yes("a||b", &["a", "|b"]);
        no("a||b", &["b"]);
        yes("&a", &["&a"]);
        yes("a|&b", &["a", "&b"]);
        yes("(&)", &["&"]);
        yes(")", &[")"]);
        yes("(*)", &["*"]);
        yes("a(|b)", &["a|b"]);
    }

    #[test]
    fn escapes() {
        yes("a\\.b", &["a.b"]);
        no("a\\.b", &["axb"]);
        yes("\\\\", &["\\"]);
        yes("\\\"x\\\"", &["\"x\""]);
        yes("a\\~b", &["a~b"]);
        yes("a\\&b", &["a&b"]);
        yes("\\@\\#\\<1-2\\>", &["@#<1-2>"]);
        yes("\\(\\)\\[\\]\\{\\}", &["()[]{}"]);
        yes("\\*\\+\\?\\|", &["*+?|"]);
        yes("\\$\\^", &["$^"]);
        yes("\\1\\-\\/", &["1-/"]);
        yes("\\é", &["é"]);
        yes("a\\/[^ ]+", &["a/x", "a/bc"]);
        no("a\\/[^ ]+", &["a/", "a/b c"]);
    }

    #[test]
    fn invalid_and_dangling_escapes() {
        err_at("a\\n", 1, "invalid escape '\\n'");
        err_at("\\t", 0, "invalid escape");
        err_at("\\b", 0, "invalid escape");
        err_at("[\\x]", 1, "invalid escape");
        err_at("ab\\", 2, "dangling escape");
        err_at("[a\\", 2, "dangling escape");
        err_at("[a-\\", 3, "dangling escape");
    }

    #[test]
    fn shorthand_classes_are_ascii() {
        yes("\\d+", &["0123456789"]);
        no("\\d", &["a", "٣", "²"]);
        yes("\\D", &["a", "٣", "\n"]);
        no("\\D", &["5"]);
        yes("\\s", &[" ", "\t", "\n", "\r"]);
        no("\\s", &["\u{b}", "\u{c}", "\u{a0}", "a"]);
        yes("\\S", &["a", "\u{a0}", "\u{c}"]);
        no("\\S", &[" ", "\n"]);
        yes("\\w+", &["azAZ09_"]);
        no("\\w", &["é", "-", " "]);
        yes("\\W", &["é", "-", " ", "😀"]);
        no("\\W", &["a", "_"]);
        yes("[\\d.]+", &["1.2.3"]);
        yes("[\\Wa]", &["a", "-"]);
        no("[\\Wa]", &["b"]);
        yes("[^\\d]", &["x"]);
        no("[^\\d]", &["7"]);
        // Not folded under regex~ either (already both cases for \w).
        assert!(re_ci("\\w").is_match("Q"));
    }

    // --- character classes -------------------------------------------------------------------

    #[test]
    fn classes() {
        yes("[abc]", &["a", "b", "c"]);
        no("[abc]", &["d", "ab", ""]);
        yes("[a-z]+", &["hello"]);
        no("[a-z]+", &["Hello", "héllo"]);
        yes("[a-zA-Z0-9_]", &["Q", "5", "_"]);
        yes("[^a-z]", &["A", "5", "\n", "é"]);
        no("[^a-z]", &["q", ""]);
        yes("[^abc]", &["d", "\n"]);
        no("[^abc]", &["a"]);
        yes("[é-ë]", &["ê"]);
        yes("[😀-😂]", &["😁"]);
        no("[😀-😂]", &["😃"]);
    }

    #[test]
    fn class_edge_cases_follow_lucene() {
        yes("[]a]", &["]", "a"]); // the first member may be ']'
        yes("[^]a]", &["b"]);
        no("[^]a]", &["]", "a"]);
        yes("[-a]", &["-", "a"]);
        yes("[a\\-z]", &["a", "-", "z"]);
        no("[a\\-z]", &["b"]);
        yes("[a-z-0]", &["q", "-", "0"]);
        yes("[--/]", &["-", ".", "/"]); // range from '-' to '/'
        yes("[a^]", &["^", "a"]);
        yes(
            "[~&#@\"(<.[]",
            &["~", "&", "#", "@", "\"", "(", "<", ".", "["],
        );
        no("[~&#@\"(<.[]", &["a"]);
        yes("[\\]]", &["]"]);
        yes("[\\\\]", &["\\"]);
        yes("[\\\\-a]", &["\\", "-", "a"]); // `\\` cannot start a range
        no("[\\\\-a]", &["^"]);
        yes("[\\.-0]", &[".", "/", "0"]); // an escaped character can (Lucene 9)
        yes("[+-\\]]", &["+", "]", "\\", "A"]); // range '+'..']' with an escaped end
        no("[+-\\]]", &["a"]);
        yes("[\\d-z]", &["5", "-", "z"]);
        no("[\\d-z]", &["y"]);
    }

    #[test]
    fn malformed_classes() {
        err_at("[a", 0, "unterminated character class");
        err_at("x[]", 1, "unterminated character class");
        err_at("[^]", 0, "unterminated character class");
        err_at("[", 0, "unterminated character class");
        err_at("[z-a]", 1, "invalid character range 'z-a'");
        err_at("[a-]", 1, "invalid character range"); // range a..']'
        err_at("[\\w.-]", 0, "unterminated character class"); // range '.'..']', then no ']'
        err_at("[a-", 3, "range end");
    }

    // --- quoted strings ----------------------------------------------------------------------

    #[test]
    fn quoted_strings() {
        yes("\"a.b\"", &["a.b"]);
        no("\"a.b\"", &["axb"]);
        yes("\"\"", &[""]);
        yes("x\"\"y", &["xy"]);
        yes("\"a\\\"", &["a\\"]); // no escapes inside quotes
        yes("\"~&@#<1-2>(|)[\"", &["~&@#<1-2>(|)["]);
        yes("\"$^{}\"", &["$^{}"]);
        yes("pre\"*\"post", &["pre*post"]);
        yes("\"ab\"?c", &["c", "abc"]);
        err_at("ab\"cd", 2, "unterminated quoted string");
    }

    // --- numeric intervals -------------------------------------------------------------------

    #[test]
    fn intervals() {
        yes("<1-10>", &["1", "5", "10", "05", "007", "0010"]);
        no("<1-10>", &["0", "00", "11", "", "1a", "-1"]);
        yes("<01-10>", &["01", "07", "10"]);
        no("<01-10>", &["1", "7", "010", "11", "00"]);
        yes("<10-1>", &["1", "10", "05"]); // bounds are swapped
        yes("<0-0>", &["0"]);
        no("<0-0>", &["00", ""]);
        yes("<0-5>", &["0", "5"]);
        no("<0-5>", &["05", "6"]);
        yes("<00-5>", &["0", "000", "5", "05"]);
        yes("port<8000-8080>", &["port8000", "port8080", "port8042"]);
        no("port<8000-8080>", &["port7999", "port8081", "port800"]);
        yes("<0-2147483647>", &["0", "2147483647", "000123"]);
        no("<0-2147483647>", &["2147483648", "9999999999"]);
        yes("<1-10>+", &["1105"]);
        yes("a<1-3>b", &["a2b"]);
    }

    #[test]
    fn intervals_agree_with_brute_force() {
        // Every interval over 0..=130 against the values written with 0 to 4 leading zeros.
        let mut bounds: Vec<(String, String)> = Vec::new();
        for a in [
            0u32, 1, 5, 9, 10, 11, 19, 20, 37, 99, 100, 101, 109, 110, 120, 130,
        ] {
            for b in [0u32, 3, 9, 10, 15, 99, 100, 105, 119, 130] {
                bounds.push((a.to_string(), b.to_string()));
                bounds.push((format!("{a:03}"), format!("{b:03}")));
                bounds.push((format!("{a:04}"), b.to_string()));
            }
        }
        for (sa, sb) in bounds {
            let pattern = format!("<{sa}-{sb}>");
            let r = re(&pattern);
            let (a, b): (u32, u32) = (sa.parse().unwrap(), sb.parse().unwrap());
            let (lo, hi) = (a.min(b), a.max(b));
            let fixed = if sa.len() == sb.len() { sa.len() } else { 0 };
            for v in 0u32..=140 {
                for width in 0..=6 {
                    let s = format!("{v:0width$}");
                    let expected = (lo..=hi).contains(&v) && (fixed == 0 || s.len() == fixed);
                    assert_eq!(
                        r.is_match(&s),
                        expected,
                        "{pattern} ({}) on {s:?}",
                        r.as_str()
                    );
                }
            }
        }
    }

    #[test]
    fn malformed_intervals_and_named_automata() {
        err_at("<5>", 0, "named automaton '<5>'");
        err_at("a<name>", 1, "named automaton '<name>'");
        err_at("<>", 0, "named automaton");
        err_at("<1-2-3>", 0, "malformed numeric interval");
        err_at("<-3>", 0, "malformed numeric interval");
        err_at("<3->", 0, "malformed numeric interval");
        err_at("<a-b>", 0, "malformed numeric interval");
        err_at("<1-2147483648>", 0, "malformed numeric interval");
        err_at("x<1-5", 1, "unterminated interval");
    }

    // --- case-insensitive (regex~) -----------------------------------------------------------

    #[test]
    fn case_insensitive_folds_ascii_letters() {
        let r = re_ci("abc");
        for v in ["abc", "ABC", "aBc"] {
            assert!(r.is_match(v), "{v}");
        }
        assert!(!r.is_match("abd"));
        assert!(!re("abc").is_match("ABC"));
        assert!(re_ci("\"Quoted\"").is_match("qUOTED"));
        assert!(re_ci("[abc]+").is_match("CaB"));
        assert!(re_ci("x\\.y").is_match("X.Y"));
        assert!(re_ci("a.*z").is_match("A-\n-Z"));
        assert!(re_ci("<1-3>x").is_match("2X"));
        assert!(
            !re_ci("[^abc]").is_match("B"),
            "negation applies to the folded members"
        );
        assert!(re_ci("[^abc]").is_match("d"));
        // Anchoring is kept.
        assert!(!re_ci("abc").is_match("xabc"));
    }

    #[test]
    fn case_insensitive_leaves_ranges_and_non_ascii_alone() {
        // As in Elasticsearch (elastic/elasticsearch#125412): ranges are not folded.
        assert!(!re_ci("[a-c]").is_match("B"));
        assert!(re_ci("[a-c]").is_match("b"));
        assert!(re_ci("[^a-c]").is_match("B"));
        // Lucene's ASCII_CASE_INSENSITIVE folds ASCII only; and no Unicode folds of ASCII
        // letters (the regex crate's (?i) would match KELVIN SIGN for k).
        assert!(!re_ci("é").is_match("É"));
        assert!(!re_ci("k").is_match("\u{212A}"));
        assert!(!re_ci("s").is_match("ſ"));
        assert!(re_ci("k").is_match("K"));
    }

    // --- refused constructs ------------------------------------------------------------------

    #[test]
    fn complement_is_refused_with_its_offset() {
        err_at("~a", 0, "complement operator '~'");
        err_at("a~b", 1, "complement operator '~'");
        err_at("ab(~c)", 3, "complement");
        err_at("a|~b", 2, "complement");
        err_at("é~a", 2, "complement"); // byte offset
        let e = err("abc~d");
        assert_eq!(e.to_string(), format!("{} at offset 3", e.message));
        assert!(e
            .to_string()
            .starts_with("the complement operator '~' cannot be translated"));
    }

    #[test]
    fn intersection_is_refused_with_its_offset() {
        err_at("ab&cd", 2, "intersection operator '&'");
        err_at("(a&b)", 2, "intersection");
        err_at(".*a.*&.*b.*", 5, "intersection");
        err_at("x|y&z", 3, "intersection");
    }

    #[test]
    fn escaped_quoted_or_class_operators_are_not_refused() {
        yes("a\\~b\\&c", &["a~b&c"]);
        yes("\"~&\"", &["~&"]);
        yes("[~&]+", &["~&~"]);
        yes("&", &["&"]);
    }

    // --- other malformed patterns --------------------------------------------------------------

    #[test]
    fn unbalanced_parentheses() {
        err_at("(a", 0, "never closed");
        err_at("a(b(c)", 1, "never closed");
        err_at("a)", 1, "unbalanced parenthesis ')'");
        err_at("(a))", 3, "unbalanced parenthesis ')'");
        err_at("()))", 2, "unbalanced parenthesis ')'");
        err_at("a(", 2, "unexpected end");
    }

    #[test]
    fn malformed_repetitions() {
        err_at("a{", 1, "a number is expected");
        err_at("a{x}", 1, "a number is expected");
        err_at("a{,3}", 1, "a number is expected");
        err_at("a{2", 1, "unterminated repetition");
        err_at("a{2,x}", 1, "unterminated repetition");
        err_at("ab{3,2}", 2, "minimum exceeds the maximum");
        err_at("a{99999999999}", 1, "too large");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}a{}", "(".repeat(10_000), ")".repeat(10_000));
        err_at(&deep, MAX_DEPTH, "nesting");
        let ok = format!("{}a{}", "(".repeat(50), ")".repeat(50));
        yes(&ok, &["a"]);
        let stars = format!("a{}", "*".repeat(100_000));
        yes(&stars, &["", "aaa"]); // star-like quantifiers collapse
        let counted = format!("a{}", "{2}".repeat(1000));
        err(&counted);
    }

    #[test]
    fn oversized_translation_is_reported_by_compile() {
        let t = translate("a{2000000000}").unwrap();
        assert_eq!(t, "\\A(?:a{2000000000})\\z");
        let e = compile("a{2000000000}", false).unwrap_err();
        assert_eq!(e.offset, 0);
        assert!(e.message.contains("does not compile"), "{e}");
    }

    #[test]
    fn display_names_message_and_offset() {
        let e = LuceneError {
            message: "the complement operator '~' cannot be translated".into(),
            offset: 3,
        };
        assert_eq!(
            e.to_string(),
            "the complement operator '~' cannot be translated at offset 3"
        );
    }

    // --- literal() ---------------------------------------------------------------------------

    #[test]
    fn literal_patterns() {
        assert_eq!(literal("abc").as_deref(), Some("abc"));
        assert_eq!(literal("").as_deref(), Some(""));
        assert_eq!(literal("a\\.b").as_deref(), Some("a.b"));
        assert_eq!(literal("\"x.y\"z").as_deref(), Some("x.yz"));
        assert_eq!(literal("a$b^c}").as_deref(), Some("a$b^c}"));
        assert_eq!(literal("/usr/bin/curl").as_deref(), Some("/usr/bin/curl"));
        assert_eq!(literal("*a").as_deref(), Some("*a"));
        assert_eq!(literal("\\\\server").as_deref(), Some("\\server"));
        assert_eq!(literal("日本").as_deref(), Some("日本"));
    }

    #[test]
    fn literal_by_language_not_spelling() {
        assert_eq!(literal("()").as_deref(), Some(""));
        assert_eq!(literal("(ab)c").as_deref(), Some("abc"));
        assert_eq!(literal("a{3}").as_deref(), Some("aaa"));
        assert_eq!(literal("(ab){2}").as_deref(), Some("abab"));
        assert_eq!(literal("[x]").as_deref(), Some("x"));
        assert_eq!(literal("[xx-x]").as_deref(), Some("x"));
        assert_eq!(literal("a|a").as_deref(), Some("a"));
        assert_eq!(literal("a|#").as_deref(), Some("a"));
        assert_eq!(literal("<07-07>").as_deref(), Some("07"));
        assert_eq!(literal("a{0}b").as_deref(), Some("b"));
        assert_eq!(literal("#*").as_deref(), Some(""));
        assert_eq!(literal("<1-1>").as_deref(), Some("1"));
    }

    #[test]
    fn literal_none_for_patterns() {
        for p in [
            "a.b", "a|b", "a*", "a?", "a+", "a{1,2}", "[ab]", "[^a]", "\\d", "@", "#", "a#",
            "<1-01>", "<1-2>", "~a", "a&b", "(a", "\\n", "<x>",
        ] {
            assert_eq!(literal(p), None, "{p:?}");
        }
        assert_eq!(literal(&format!("a{{{}}}", MAX_LITERAL + 1)), None);
    }

    #[test]
    fn literal_agrees_with_compile() {
        for p in [
            "abc", "a\\.b", "\"x.y\"z", "(ab){2}", "[x]", "a|a", "<07-07>", "*a", "a$",
        ] {
            let s = literal(p).unwrap();
            let r = re(p);
            assert!(r.is_match(&s), "{p:?} should match its literal {s:?}");
            assert!(!r.is_match(&format!("{s}x")) && !r.is_match(&format!("x{s}")));
        }
    }

    // --- patterns from Elastic detection rules -------------------------------------------------

    #[test]
    fn detection_rule_patterns() {
        let ip = re(".*[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(:[0-9]{1,5})?\\/[^ ]+.*");
        assert!(ip.is_match("curl http://10.1.2.3:8080/x.sh"));
        assert!(ip.is_match("wget 1.2.3.4/a\nb"));
        assert!(!ip.is_match("curl http://example.com/x.sh"));

        let url = re(
            ".*[A-Za-z0-9][A-Za-z0-9\\-]*(\\.[A-Za-z0-9][A-Za-z0-9\\-]*)+(:[0-9]{1,5})?\\/[^ ]+.*",
        );
        assert!(url.is_match("curl https://evil-site.example.com:443/payload"));
        assert!(!url.is_match("curl localhost"));

        let hidden = re_ci("\\.[a-z0-9_\\-][a-z0-9_\\-\\.]{1,254}");
        assert!(hidden.is_match(".hidden"));
        assert!(hidden.is_match(".x-y.z"));
        assert!(!hidden.is_match("visible"));
        assert!(!hidden.is_match(".x"));
        assert!(
            !hidden.is_match(".HIDDEN"),
            "ranges are not folded under regex~ in Elasticsearch"
        );

        let pid = re_ci("/var/run/\\w+\\.(pid|lock|reboot)");
        assert!(pid.is_match("/var/run/sshd.pid"));
        assert!(pid.is_match("/VAR/RUN/x_1.LOCK"));
        assert!(!pid.is_match("/var/run/a/b.pid"));

        let php = re_ci("php?[0-9]?\\.?[0-9]{0,2}");
        for v in ["php", "PHP", "ph", "php7", "php7.4", "php8.12"] {
            assert!(php.is_match(v), "{v}");
        }
        assert!(!php.is_match("python3"));

        let shred = re_ci("-[^-]*[uz][^-]*");
        for v in ["-u", "-fuz", "-U", "-zf"] {
            assert!(shred.is_match(v), "{v}");
        }
        assert!(!shred.is_match("--remove") && !shred.is_match("-f"));

        let ssh = re("-[A-NP-Za-np-z][A-Za-z]*[RLDwW][A-Za-z]*");
        assert!(ssh.is_match("-NfL") && ssh.is_match("-fR"));
        assert!(!ssh.is_match("-oR") && !ssh.is_match("-R"));
    }

    /// Every `regex` / `regex~` pattern of the Linux EQL rules translates and compiles.
    #[test]
    fn every_pattern_of_the_linux_rules_translates() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/rules/elastic-linux-eql");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            println!("skipped: rules not present ({})", dir.display());
            return;
        };
        let mut files: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        let mut count = 0;
        for path in &files {
            let text = std::fs::read_to_string(path).unwrap();
            let value: toml::Value = match toml::from_str(&text) {
                Ok(v) => v,
                Err(e) => panic!("{}: {e}", path.display()),
            };
            let Some(query) = value
                .get("rule")
                .and_then(|r| r.get("query"))
                .and_then(|q| q.as_str())
            else {
                continue;
            };
            for (pattern, ci) in rule_regex_patterns(query) {
                if let Err(e) = compile(&pattern, ci) {
                    panic!("{}: {pattern:?}: {e}", path.display());
                }
                count += 1;
            }
        }
        println!(
            "{count} regex patterns in {} rule files translate",
            files.len()
        );
        assert!(
            count > 0 || files.is_empty(),
            "no regex pattern found in {}",
            dir.display()
        );
    }

    #[test]
    fn rule_pattern_extraction() {
        let q = r#"process where a regex "x\\.y" and b regex~ ("p", """q\.r""") and
            /* regex "not me" */ c == "regex \"no\"" and d regex~"z" and regex == 1"#;
        assert_eq!(
            rule_regex_patterns(q),
            vec![
                ("x\\.y".to_string(), false),
                ("p".to_string(), true),
                ("q\\.r".to_string(), true),
                ("z".to_string(), true),
            ]
        );
    }

    #[derive(Debug, PartialEq)]
    enum Tok {
        Str(String),
        Word(String),
        Punct(char),
    }

    /// The string operands of `regex` / `regex~` in an EQL query, with their case flag.
    fn rule_regex_patterns(query: &str) -> Vec<(String, bool)> {
        let toks = eql_tokens(query);
        let mut out = Vec::new();
        let mut i = 0;
        while i < toks.len() {
            if toks[i] != Tok::Word("regex".into()) {
                i += 1;
                continue;
            }
            i += 1;
            let ci = toks.get(i) == Some(&Tok::Punct('~'));
            if ci {
                i += 1;
            }
            match toks.get(i) {
                Some(Tok::Str(s)) => out.push((s.clone(), ci)),
                Some(Tok::Punct('(')) => {
                    i += 1;
                    while let Some(t) = toks.get(i) {
                        match t {
                            Tok::Str(s) => out.push((s.clone(), ci)),
                            Tok::Punct(',') => {}
                            _ => break,
                        }
                        i += 1;
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// A small EQL lexer: strings (`"..."` with escapes, `"""..."""` and `?"..."` raw,
    /// `'...'`), words, punctuation; comments are skipped.
    fn eql_tokens(q: &str) -> Vec<Tok> {
        let chars: Vec<char> = q.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        let starts = |i: usize, s: &str| {
            s.chars()
                .enumerate()
                .all(|(k, c)| chars.get(i + k) == Some(&c))
        };
        while i < chars.len() {
            let c = chars[i];
            if c.is_whitespace() {
                i += 1;
            } else if starts(i, "/*") {
                i += 2;
                while i < chars.len() && !starts(i, "*/") {
                    i += 1;
                }
                i += 2;
            } else if starts(i, "//") {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            } else if starts(i, "\"\"\"") {
                i += 3;
                let mut s = String::new();
                while i < chars.len() && !starts(i, "\"\"\"") {
                    s.push(chars[i]);
                    i += 1;
                }
                i += 3;
                toks.push(Tok::Str(s));
            } else if (c == '?' && chars.get(i + 1) == Some(&'"')) || c == '"' || c == '\'' {
                let raw = c == '?';
                if raw {
                    i += 1;
                }
                let quote = chars[i];
                i += 1;
                let mut s = String::new();
                while i < chars.len() && chars[i] != quote {
                    if chars[i] == '\\' && !raw && i + 1 < chars.len() {
                        i += 1;
                        match chars[i] {
                            'n' => s.push('\n'),
                            'r' => s.push('\r'),
                            't' => s.push('\t'),
                            '"' | '\'' | '\\' => s.push(chars[i]),
                            'u' if chars.get(i + 1) == Some(&'{') => {
                                let end = (i..chars.len())
                                    .find(|&k| chars[k] == '}')
                                    .unwrap_or(chars.len() - 1);
                                let hex: String = chars[i + 2..end].iter().collect();
                                s.extend(
                                    u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32),
                                );
                                i = end;
                            }
                            other => {
                                s.push('\\');
                                s.push(other);
                            }
                        }
                    } else {
                        if chars[i] == '\\' && raw && chars.get(i + 1) == Some(&quote) {
                            s.push('\\');
                            i += 1;
                        }
                        s.push(chars[i]);
                    }
                    i += 1;
                }
                i += 1;
                toks.push(Tok::Str(s));
            } else if c.is_alphanumeric() || c == '_' || c == '.' || c == '@' {
                let mut w = String::new();
                while i < chars.len() && (chars[i].is_alphanumeric() || "_.@".contains(chars[i])) {
                    w.push(chars[i]);
                    i += 1;
                }
                toks.push(Tok::Word(w));
            } else {
                toks.push(Tok::Punct(c));
                i += 1;
            }
        }
        toks
    }
}
