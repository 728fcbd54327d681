use super::*;

/// The rule text of RULE.md, rule version 5, verbatim.
const RULE_V5: &str = r#"sequence by host.id with maxspan=5s
  [process where host.os.type == "linux" and event.type == "start" and event.action == "exec" and
   process.parent.name == "apt" and process.args == "-c" and process.name in (
     "bash", "dash", "sh", "tcsh", "csh", "zsh", "ksh", "fish"
    )
  ] by process.entity_id
  [network where host.os.type == "linux" and event.action == "connection_attempted" and event.type == "start" and not (
     destination.ip == null or destination.ip == "0.0.0.0" or cidrmatch(
     destination.ip, "10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24", "192.0.0.0/29",
     "192.0.0.8/32", "192.0.0.9/32", "192.0.0.10/32", "192.0.0.170/32", "192.0.0.171/32", "192.0.2.0/24",
     "192.31.196.0/24", "192.52.193.0/24", "192.168.0.0/16", "192.88.99.0/24", "224.0.0.0/4", "100.64.0.0/10",
     "192.175.48.0/24","198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4", "::1", "FE80::/10",
     "FF00::/8", "172.31.0.0/16"
     )
   ) and not process.executable == "/usr/bin/apt-listbugs"
  ] by process.parent.entity_id
"#;

fn p(text: &str) -> Result<Query, RuleError> {
    parse(text, ParseLimits::default())
}

fn cond(text: &str) -> Expr {
    match p(text).unwrap_or_else(|e| panic!("{text}: {e}")) {
        Query::Event(q) => q.condition,
        other => panic!("not an event query: {other:?}"),
    }
}

fn err(text: &str) -> RuleError {
    match p(text) {
        Ok(q) => panic!("{text:?} parsed: {q:?}"),
        Err(e) => e,
    }
}

/// Asserts kind, position and a message fragment.
fn assert_err(text: &str, kind: RuleErrorKind, line: u32, column: u32, fragment: &str) {
    let e = err(text);
    assert_eq!((e.kind, e.line, e.column), (kind, line, column), "{text:?}: {e}");
    assert!(
        e.message.contains(fragment),
        "{text:?}: message {:?} lacks {fragment:?}",
        e.message
    );
}

fn field(name: &str) -> String {
    name.to_string()
}

fn field_name(e: &Expr) -> &str {
    match e {
        Expr::Field(f) => &f.name,
        other => panic!("not a field: {other:?}"),
    }
}

fn str_lit(e: &Expr) -> &str {
    match e {
        Expr::Literal(Literal::Str(s), _) => s,
        other => panic!("not a string: {other:?}"),
    }
}

fn string_of(text: &str) -> String {
    match cond(&format!("any where a == {text}")) {
        Expr::Compare { right, .. } => str_lit(&right).to_string(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rule_v5_parses() {
    let Query::Sequence(seq) = p(RULE_V5).unwrap() else { panic!("not a sequence") };
    assert_eq!(
        seq.by.iter().map(|f| f.name.clone()).collect::<Vec<_>>(),
        vec![field("host.id")]
    );
    assert_eq!(seq.maxspan_ms, Some(5000));
    assert_eq!((seq.span.line, seq.span.column, seq.span.start, seq.span.end), (1, 1, 0, 8));
    assert_eq!(seq.stages.len(), 2);
    let (s1, s2) = (&seq.stages[0], &seq.stages[1]);
    assert_eq!((s1.span.line, s1.span.column), (2, 3));
    assert_eq!((s2.span.line, s2.span.column), (7, 3));
    assert_eq!(s1.query.category.as_deref(), Some("process"));
    assert_eq!(s2.query.category.as_deref(), Some("network"));
    assert_eq!(s1.by.len(), 1);
    assert_eq!(s1.by[0].name, "process.entity_id");
    assert_eq!(s2.by[0].name, "process.parent.entity_id");
    assert_eq!((s2.by[0].span.line, s2.by[0].span.column), (16, 8));

    // Stage 1: six conjuncts, the last an `in` list of 8 shells.
    let Expr::And(items, _) = &s1.query.condition else { panic!() };
    assert_eq!(items.len(), 6);
    let Expr::Match { op: MatchOp::In, negated: false, subject, values, .. } = &items[5] else {
        panic!("{:?}", items[5])
    };
    assert_eq!(field_name(subject), "process.name");
    assert_eq!(values.len(), 8);
    assert_eq!(str_lit(&values[7]), "fish");

    // Stage 2: ... and not ( ... or cidrmatch(...) ) and not process.executable == ...
    let Expr::And(items, _) = &s2.query.condition else { panic!() };
    assert_eq!(items.len(), 5);
    let Expr::Not(inner, not_span) = &items[3] else { panic!("{:?}", items[3]) };
    assert_eq!((not_span.line, not_span.column), (7, 115));
    let Expr::Or(alts, _) = &**inner else { panic!("{inner:?}") };
    assert_eq!(alts.len(), 3);
    assert!(matches!(
        &alts[0],
        Expr::Compare { op: CmpOp::Eq, right, .. } if matches!(**right, Expr::Literal(Literal::Null, _))
    ));
    let Expr::Call { name, case_insensitive: false, args, span } = &alts[2] else { panic!() };
    assert_eq!(name, "cidrmatch");
    assert_eq!(args.len(), 28);
    assert_eq!(field_name(&args[0]), "destination.ip");
    assert_eq!(str_lit(&args[1]), "10.0.0.0/8");
    assert_eq!(str_lit(&args[27]), "172.31.0.0/16");
    assert_eq!(
        args.iter().skip(1).filter(|a| matches!(a, Expr::Literal(Literal::Str(_), _))).count(),
        27
    );
    assert_eq!((span.line, span.column), (8, 63));
    assert!(RULE_V5[span.start..span.end].starts_with("cidrmatch("));
    assert!(RULE_V5[span.start..span.end].ends_with(')'));
    let Expr::Not(last, _) = &items[4] else { panic!() };
    let Expr::Compare { op: CmpOp::Eq, left, right, .. } = &**last else { panic!() };
    assert_eq!(field_name(left), "process.executable");
    assert_eq!(str_lit(right), "/usr/bin/apt-listbugs");
}

#[test]
fn rule_v9_parses() {
    let v9 = RULE_V5.replacen(
        "\"fish\"\n    )\n",
        "\"fish\"\n    ) and not process.args == \"/usr/bin/apt-listbugs apt\"\n",
        1,
    );
    assert_ne!(v9, RULE_V5);
    let Query::Sequence(seq) = p(&v9).unwrap() else { panic!() };
    let Expr::And(items, _) = &seq.stages[0].query.condition else { panic!() };
    assert_eq!(items.len(), 7);
    assert!(matches!(items[6], Expr::Not(..)));
}

#[test]
fn event_queries_and_categories() {
    let Query::Event(q) = p("process where true").unwrap() else { panic!() };
    assert_eq!(q.category.as_deref(), Some("process"));
    assert_eq!(
        q.condition,
        Expr::Literal(Literal::Bool(true), Span { start: 14, end: 18, line: 1, column: 15 })
    );
    assert_eq!((q.span.start, q.span.end), (0, 18));
    let Query::Event(q) = p("ANY WHERE x == 1").unwrap() else { panic!() };
    assert_eq!(q.category, None);
    let Query::Event(q) = p("\"my category\" where x == 1").unwrap() else { panic!() };
    assert_eq!(q.category.as_deref(), Some("my category"));
    let Query::Event(q) = p("Network Where x == 1").unwrap() else { panic!() };
    assert_eq!(q.category.as_deref(), Some("Network"));
}

#[test]
fn comparison_operators() {
    for (op_text, op) in [
        ("==", CmpOp::Eq),
        ("!=", CmpOp::Ne),
        ("<", CmpOp::Lt),
        ("<=", CmpOp::Le),
        (">", CmpOp::Gt),
        (">=", CmpOp::Ge),
    ] {
        let e = cond(&format!("any where process.pid {op_text} 5"));
        let Expr::Compare { op: got, left, right, span } = e else { panic!() };
        assert_eq!(got, op);
        assert_eq!(field_name(&left), "process.pid");
        assert!(matches!(*right, Expr::Literal(Literal::Int(5), _)));
        assert_eq!((span.start, span.column), (10, 11));
    }
    let Expr::Compare { op: CmpOp::Ne, right, .. } = cond("any where a != null") else {
        panic!()
    };
    assert!(matches!(*right, Expr::Literal(Literal::Null, _)));
    // Literals on the left, calls on either side.
    let Expr::Compare { left, right, .. } = cond("any where 5 < length(process.name)") else {
        panic!()
    };
    assert!(matches!(*left, Expr::Literal(Literal::Int(5), _)));
    assert!(matches!(*right, Expr::Call { .. }));
}

#[test]
fn match_operators() {
    let cases: &[(&str, MatchOp, bool, usize)] = &[
        ("a in (\"x\", \"y\")", MatchOp::In, false, 2),
        ("a not in (\"x\")", MatchOp::In, true, 1),
        ("a in~ (\"x\", \"y\", \"z\")", MatchOp::InInsensitive, false, 3),
        ("a NOT IN~ (\"x\")", MatchOp::InInsensitive, true, 1),
        ("a : \"x*\"", MatchOp::Colon, false, 1),
        ("a : (\"x*\", \"?y\")", MatchOp::Colon, false, 2),
        ("a like \"x*\"", MatchOp::Like, false, 1),
        ("a like (\"x*\", \"y\")", MatchOp::Like, false, 2),
        ("a not like \"x*\"", MatchOp::Like, true, 1),
        ("a like~ \"X*\"", MatchOp::LikeInsensitive, false, 1),
        ("a not like~ (\"X*\", \"y\")", MatchOp::LikeInsensitive, true, 2),
    ];
    for &(text, op, negated, n) in cases {
        let full = format!("any where {text}");
        let Expr::Match { op: got, negated: neg, subject, values, span } = cond(&full) else {
            panic!("{text}")
        };
        assert_eq!((got, neg, values.len()), (op, negated, n), "{text}");
        assert_eq!(field_name(&subject), "a");
        assert_eq!((span.start, span.end), (10, full.len()), "{text}");
    }
}

#[test]
fn calls() {
    let Expr::Call { name, case_insensitive, args, .. } =
        cond("any where startsWith~(process.name, \"ba\")")
    else {
        panic!()
    };
    assert_eq!((name.as_str(), case_insensitive, args.len()), ("startsWith", true, 2));
    let Expr::Call { name, args, .. } =
        cond("any where cidrMatch(destination.ip, \"10.0.0.0/8\")")
    else {
        panic!()
    };
    assert_eq!((name.as_str(), args.len()), ("cidrMatch", 2));
    // Nested calls, no arguments, whitespace before '('.
    let Expr::Compare { left, .. } = cond("any where length(concat(a, \"x\", 1)) > 3") else {
        panic!()
    };
    let Expr::Call { args, .. } = *left else { panic!() };
    assert!(
        matches!(&args[0], Expr::Call { name, args, .. } if name == "concat" && args.len() == 3)
    );
    assert!(matches!(cond("any where f ()"), Expr::Call { args, .. } if args.is_empty()));
}

#[test]
fn precedence() {
    // a or b and not c  ==  a or (b and (not c))
    let Expr::Or(items, _) = cond("any where a == 1 or b == 2 and not c == 3") else {
        panic!()
    };
    assert_eq!(items.len(), 2);
    assert!(matches!(&items[0], Expr::Compare { .. }));
    let Expr::And(conj, _) = &items[1] else { panic!() };
    assert!(matches!(&conj[1], Expr::Not(inner, _) if matches!(**inner, Expr::Compare { .. })));
    // Parentheses override.
    let Expr::And(items, span) = cond("any where (a == 1 or b == 2) and c == 3") else {
        panic!()
    };
    assert!(matches!(&items[0], Expr::Or(..)));
    assert_eq!(span.start, 10, "the And starts at the '('");
    // not binds tighter than and; chains flatten.
    let Expr::And(items, _) = cond("any where not a and b and c") else { panic!() };
    assert_eq!(items.len(), 3);
    assert!(matches!(&items[0], Expr::Not(..)));
    let Expr::Not(inner, _) = cond("any where not not a") else { panic!() };
    assert!(matches!(*inner, Expr::Not(..)));
    // Keywords are case-insensitive.
    assert!(matches!(cond("any where a OR b AnD NOT c"), Expr::Or(..)));
}

#[test]
fn fields() {
    assert_eq!(field_name(&cond("any where @timestamp")), "@timestamp");
    assert_eq!(field_name(&cond("any where process.parent.name")), "process.parent.name");
    assert_eq!(field_name(&cond("any where `field with spaces`")), "field with spaces");
    assert_eq!(field_name(&cond("any where `a``b`.c")), "a`b.c");
    assert_eq!(field_name(&cond("any where a.`b c`.d")), "a.b c.d");
    assert_eq!(field_name(&cond("any where `by`")), "by");
    assert_eq!(field_name(&cond("any where a.in")), "a.in");
    let Expr::Compare { left, .. } = cond("any where a . b == 1") else { panic!() };
    assert_eq!(field_name(&left), "a.b");
    let Expr::Field(f) = cond("any where  _a1.b_2") else { panic!() };
    assert_eq!(f.span, Span { start: 11, end: 18, line: 1, column: 12 });
}

#[test]
fn literals() {
    let lit = |t: &str| match cond(&format!("any where a == {t}")) {
        Expr::Compare { right, .. } => match *right {
            Expr::Literal(l, _) => l,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    assert_eq!(lit("42"), Literal::Int(42));
    assert_eq!(lit("-42"), Literal::Int(-42));
    assert_eq!(lit("-9223372036854775808"), Literal::Int(i64::MIN));
    assert_eq!(lit("9223372036854775807"), Literal::Int(i64::MAX));
    assert_eq!(lit("1.5"), Literal::Float(1.5));
    assert_eq!(lit("-2.5e3"), Literal::Float(-2500.0));
    assert_eq!(lit("1E-2"), Literal::Float(0.01));
    assert_eq!(lit("TRUE"), Literal::Bool(true));
    assert_eq!(lit("False"), Literal::Bool(false));
    assert_eq!(lit("NULL"), Literal::Null);
    assert_eq!(string_of(r#""a\"b\\c\nd\re\tf\bg\fh\/i""#), "a\"b\\c\nd\re\tf\u{8}g\u{c}h/i");
    assert_eq!(string_of(r#""\u{41}\u{1F600}\u{00000041}""#), "A\u{1F600}A");
    assert_eq!(string_of(r#""""C:\Windows\"x" y""""#), r#"C:\Windows\"x" y"#);
    assert_eq!(string_of("\"\"\"two\nlines\"\"\""), "two\nlines");
    assert_eq!(string_of("\"\"\"ends in quotes\"\"\"\"\""), "ends in quotes\"\"");
    assert_eq!(string_of("\"\"\"\"\"\""), "");
    assert_eq!(string_of("\"\""), "");
    assert_eq!(string_of(r#"?"C:\new\t""#), r"C:\new\t");
    assert_eq!(string_of("\"héllo ✓\""), "héllo ✓");
    let Expr::Compare { right, .. } = cond("any where a == -5") else { panic!() };
    assert_eq!(right.span(), Span { start: 15, end: 17, line: 1, column: 16 });
}

#[test]
fn comments_and_whitespace() {
    let text = "// leading comment\nprocess /* inline */ where\n\ta == 1 // trailing\n  /* multi\n line */ and b == 2";
    let Expr::And(items, _) = cond(text) else { panic!() };
    assert_eq!(items.len(), 2);
    let Expr::Compare { left, .. } = &items[1] else { panic!() };
    let Expr::Field(f) = &**left else { panic!() };
    assert_eq!((f.span.line, f.span.column), (5, 14));
    // A comment directly after a value and "//" inside strings.
    assert_eq!(string_of("\"http://x\"/*c*/"), "http://x");
    // CRLF line endings.
    let e = err("process where\r\n  a == 'x'");
    assert_eq!((e.line, e.column), (2, 8));
}

#[test]
fn sequence_forms() {
    let Query::Sequence(s) = p("sequence [a where true] [b where true]").unwrap() else {
        panic!()
    };
    assert_eq!((s.by.len(), s.maxspan_ms, s.stages.len()), (0, None, 2));
    let Query::Sequence(s) =
        p("SEQUENCE with maxspan = 2m by a, `b c` [any where true] by x, y [b where true] [c where true] by z")
            .unwrap()
    else {
        panic!()
    };
    assert_eq!(s.maxspan_ms, Some(120_000));
    assert_eq!(s.by.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["a", "b c"]);
    assert_eq!(s.stages.len(), 3);
    assert_eq!(s.stages[0].query.category, None);
    assert_eq!(s.stages[0].by.len(), 2);
    assert!(s.stages[1].by.is_empty());
    assert_eq!(s.stages[2].by[0].name, "z");
    for (unit, ms) in
        [("250ms", 250), ("5s", 5_000), ("3m", 180_000), ("2h", 7_200_000), ("1d", 86_400_000)]
    {
        let Query::Sequence(s) =
            p(&format!("sequence with maxspan={unit} [a where true] [b where true]")).unwrap()
        else {
            panic!()
        };
        assert_eq!(s.maxspan_ms, Some(ms), "{unit}");
    }
}

#[test]
fn stage_limit() {
    let ok = format!("sequence {}", "[a where true] ".repeat(MAX_STAGES));
    assert!(p(&ok).is_ok());
    let bad = format!("sequence {}", "[a where true] ".repeat(MAX_STAGES + 1));
    let col = 10 + 15 * MAX_STAGES as u32;
    assert_err(&bad, RuleErrorKind::Limit, 1, col, "at most 256 stages");
}

#[test]
fn syntax_errors_with_positions() {
    use RuleErrorKind::Syntax;
    // Missing ']' on line 3: found the next stage's '[' (line 3, column 3).
    assert_err(
        "sequence by host.id\n  [process where a == 1\n  [network where b == 2]",
        Syntax,
        3,
        3,
        "expected ']' to close the stage opened at line 2, column 3 but found '['",
    );
    assert_err(
        "sequence\n [a where true]\n  [b where x == 1 and y",
        Syntax,
        3,
        24,
        "unexpected end of query, expected ']' to close the stage opened at line 3, column 3",
    );
    assert_err(
        "any where (a == 1 and b",
        Syntax,
        1,
        24,
        "unexpected end of query, expected ')' to close the '(' at line 1, column 11",
    );
    assert_err(
        "any where (a == 1 b)",
        Syntax,
        1,
        19,
        "expected ')' to close the '(' at line 1, column 11 but found 'b'",
    );
    assert_err(
        "any where f(a b)",
        Syntax,
        1,
        15,
        "',' or ')' to close the arguments of 'f' opened at line 1, column 12 but found 'b'",
    );
    assert_err("any where a in (1, 2", Syntax, 1, 21, "unexpected end of query");
    assert_err(
        "any where a in ()",
        Syntax,
        1,
        17,
        "expected a value in the 'in' list but found ')'",
    );
    assert_err("any where a in \"x\"", Syntax, 1, 16, "expected '(' after 'in'");
    assert_err(
        "any where a not b",
        Syntax,
        1,
        17,
        "'in', 'in~', 'like', 'like~', 'regex' or 'regex~' after 'not'",
    );
    assert_err("any where a = 1", Syntax, 1, 13, "use '=='");
    assert_err("any where a == = 1", Syntax, 1, 16, "use '=='");
    assert_err(
        "any where and",
        Syntax,
        1,
        11,
        "expected a field, value or function call but found 'and'",
    );
    assert_err("any where", Syntax, 1, 10, "unexpected end of query, expected a field");
    assert_err("any where a ==", Syntax, 1, 15, "unexpected end of query");
    assert_err(
        "process a == 1",
        Syntax,
        1,
        9,
        "expected 'where' after the event category but found 'a'",
    );
    assert_err("where a == 1", Syntax, 1, 1, "expected an event category");
    assert_err("", Syntax, 1, 1, "unexpected end of query, expected an event category");
    assert_err(
        "any where a == 1 b",
        Syntax,
        1,
        18,
        "unexpected 'b' after the end of the query",
    );
    assert_err(
        "any where a == 1 == 2",
        Syntax,
        1,
        18,
        "comparisons cannot be chained",
    );
    assert_err("any where a == 1)", Syntax, 1, 17, "unexpected ')'");
    assert_err("any where a.", Syntax, 1, 13, "a field name part after '.'");
    assert_err("any where a~", Syntax, 1, 11, "only allowed on a function call");
    assert_err("any where a ~ b", Syntax, 1, 13, "unexpected '~'");
    assert_err("any where a == 'x'", Syntax, 1, 16, "use double quotes");
    assert_err("any where a == 1 && b", Syntax, 1, 18, "use 'and'");
    assert_err("any where a == 1 || b", Syntax, 1, 18, "use 'or'");
    assert_err("any where a == #", Syntax, 1, 16, "unexpected character '#'");
    assert_err("any where a == \"é\" é", Syntax, 1, 20, "unexpected character 'é'");
    // Sequence structure.
    assert_err("sequence [a where true]", Syntax, 1, 24, "second sequence stage");
    assert_err("sequence by x", Syntax, 1, 14, "first sequence stage");
    assert_err(
        "sequence by [a where true] [b where true]",
        Syntax,
        1,
        13,
        "a field name after 'by'",
    );
    assert_err(
        "sequence with span=5s [a where true] [b where true]",
        Syntax,
        1,
        15,
        "'maxspan' after 'with'",
    );
    assert_err(
        "sequence with maxspan==5s [a where true] [b where true]",
        Syntax,
        1,
        22,
        "found '=='",
    );
    assert_err(
        "sequence with maxspan=5 [a where true] [b where true]",
        Syntax,
        1,
        25,
        "a time unit",
    );
    assert_err(
        "sequence with maxspan=5x [a where true] [b where true]",
        Syntax,
        1,
        24,
        "found 'x'",
    );
    assert_err(
        "sequence with maxspan=1.5s [a where true] [b where true]",
        Syntax,
        1,
        23,
        "whole number",
    );
    assert_err(
        "sequence with maxspan=-1s [a where true] [b where true]",
        Syntax,
        1,
        23,
        "positive maxspan",
    );
    assert_err(
        "sequence with maxspan=0ms [a where true] [b where true]",
        Syntax,
        1,
        23,
        "positive maxspan",
    );
    assert_err(
        "sequence with maxspan=s [a where true] [b where true]",
        Syntax,
        1,
        23,
        "a duration",
    );
    assert_err(
        "sequence with maxspan=9223372036854775807d [a where true] [b where true]",
        Syntax,
        1,
        23,
        "too large",
    );
    assert_err("sequence by a by b [a where true] [b where true]", Syntax, 1, 15, "twice");
    assert_err(
        "sequence [a where true] [b where true] with maxspan=5s",
        Syntax,
        1,
        40,
        "'with maxspan=…' belongs",
    );
    assert_err(
        "sequence [sequence where true] [b where true]",
        Syntax,
        1,
        11,
        "an event category",
    );
}

#[test]
fn lexical_errors_with_positions() {
    use RuleErrorKind::Syntax;
    // Unterminated strings report where they start.
    assert_err("any where a == \"abc", Syntax, 1, 16, "unterminated string");
    assert_err(
        "sequence\n  [a where b == \"x\n  ] [b where true]",
        Syntax,
        2,
        17,
        "unterminated string",
    );
    assert_err("any where a == \"x\\", Syntax, 1, 16, "unterminated string");
    assert_err("any where a == \"\"\"abc\"\"", Syntax, 1, 16, "unterminated string");
    assert_err("any where a == ?\"abc", Syntax, 1, 16, "unterminated string");
    assert_err("any where `abc", Syntax, 1, 11, "unterminated quoted field name");
    assert_err("any where ``", Syntax, 1, 11, "empty quoted field name");
    assert_err("any /* where", Syntax, 1, 5, "unterminated comment");
    // Escapes report the backslash.
    assert_err(r#"any where a == "ab\qc""#, Syntax, 1, 19, "invalid escape sequence '\\q'");
    assert_err(r#"any where a == "\u41""#, Syntax, 1, 17, "expected '{'");
    assert_err(r#"any where a == "\u{}""#, Syntax, 1, 17, "1 to 8 hex digits");
    assert_err(r#"any where a == "\u{123456789}""#, Syntax, 1, 17, "more than 8");
    assert_err(r#"any where a == "\u{41""#, Syntax, 1, 17, "expected '}'");
    assert_err(r#"any where a == "\u{D800}""#, Syntax, 1, 17, "not a valid character");
    assert_err(r#"any where a == "\u{110000}""#, Syntax, 1, 17, "not a valid character");
    // Columns are counted in characters.
    assert_err("any where a == \"ééé\" and b == \"\\x\"", Syntax, 1, 32, "invalid escape");
    // Numbers.
    assert_err("any where a == 9223372036854775808", Syntax, 1, 16, "out of range");
    assert_err("any where a == -9223372036854775809", Syntax, 1, 16, "out of range");
    assert_err("any where a == 1e999", Syntax, 1, 16, "out of range");
}

#[test]
fn unsupported_constructs() {
    use RuleErrorKind::{Syntax, Unsupported};
    assert_err("join [x where true] [y where true]", Unsupported, 1, 1, "'join'");
    assert_err("any where true | head 5", Unsupported, 1, 16, "'| head'");
    assert_err(
        "sequence [x where true] [y where true] | tail 3",
        Unsupported,
        1,
        40,
        "'| tail'",
    );
    assert_err("sequence [x where true | head 1] [y where true]", Unsupported, 1, 24, "pipes");
    assert_err("any where a[0] == 1", Unsupported, 1, 12, "array indexing");
    assert_err("process where descendant of [process where true]", Unsupported, 1, 15, "descendant of");
    assert_err("process where child of [process where true]", Unsupported, 1, 15, "child of");
    assert_err("process where event of [process where true]", Unsupported, 1, 15, "event of");
    assert_err("any where a !: \"x\"", Syntax, 1, 13, "'!:'");
    assert_err("any where a < b < c", Syntax, 1, 17, "chained");
    assert_err("sample by a [x where true] with runs=2 [y where true]", Syntax, 1, 28, "runs");
    assert_err("sample by a [x where true] ![y where true]", Syntax, 1, 28, "only allowed in a sequence");
    assert_err("sequence [x where true] [y where true] with runs=101", Syntax, 1, 50, "between 1 and 100");
    assert_err("sequence ![x where true] ![y where true]", Syntax, 1, 10, "not a missing-event stage");
    assert_err("any where true until [x where true]", Syntax, 1, 16, "'until'");
}

#[test]
fn full_eql_constructs() {
    let Query::Sequence(s) = p("sequence by a with maxspan=1s [x where true] by b with runs=3 ![y where ?c == 1] [z where true] until [u where true] by d").unwrap() else { panic!() };
    assert_eq!((s.stages.len(), s.stages[0].runs, s.stages[1].missing, s.stages[2].missing), (3, 3, true, false));
    assert_eq!(s.until.as_ref().map(|u| u.by[0].name.as_str()), Some("d"));
    let Query::Sample(sm) = p("sample by ?h [x where true] by k [y where true] by k").unwrap() else { panic!() };
    assert!(sm.by[0].optional && sm.by[0].name == "h");
    // `?field` anywhere a field may stand.
    let Expr::Compare { left, .. } = cond("any where ?process.parent.name == \"x\"") else { panic!() };
    assert!(matches!(&*left, Expr::Field(f) if f.optional && f.name == "process.parent.name"));
    // regex operators.
    assert!(matches!(cond("any where a regex~ (\"x.*\", \"y\")"), Expr::Match { op: MatchOp::RegexInsensitive, .. }));
    assert!(matches!(cond("any where a not regex \"x\""), Expr::Match { op: MatchOp::Regex, negated: true, .. }));
    // Arithmetic: precedence, `a -1` as a subtraction, unary minus.
    let Expr::Compare { left, .. } = cond("any where a + b * 2 - 1 == 3") else { panic!() };
    let Expr::Arith { op: ArithOp::Sub, left: sum, .. } = &*left else { panic!("{left:?}") };
    let Expr::Arith { op: ArithOp::Add, right: prod, .. } = &**sum else { panic!() };
    assert!(matches!(&**prod, Expr::Arith { op: ArithOp::Mul, .. }));
    let Expr::Compare { left, .. } = cond("any where a -1 == 3") else { panic!() };
    assert!(matches!(&*left, Expr::Arith { op: ArithOp::Sub, right, .. } if matches!(**right, Expr::Literal(Literal::Int(1), _))));
    let Expr::Compare { right, .. } = cond("any where a == -(b % 2)") else { panic!() };
    assert!(matches!(&*right, Expr::Neg(..)));
    let Expr::Compare { right, .. } = cond("any where a == -5") else { panic!() };
    assert!(matches!(&*right, Expr::Literal(Literal::Int(-5), _)));
    // Functions left of ':' and in comparisons.
    assert!(matches!(cond("any where concat(a, b) : \"x*\""), Expr::Match { op: MatchOp::Colon, .. }));
    assert!(matches!(cond("any where length(a) > 3"), Expr::Compare { op: CmpOp::Gt, .. }));
}

#[test]
fn limits() {
    let e = parse("any where true", ParseLimits { max_depth: 64, max_len: 5 }).unwrap_err();
    assert_eq!((e.kind, e.line), (RuleErrorKind::Limit, 0));
    assert!(e.message.contains("limit of 5 bytes"), "{e}");

    // Exactly at the limit is fine; one more level is not.
    let nest = |n: usize| format!("any where {}a{}", "(".repeat(n), ")".repeat(n));
    let lim = ParseLimits { max_depth: 10, max_len: 1 << 20 };
    assert!(parse(&nest(10), lim).is_ok());
    let e = parse(&nest(11), lim).unwrap_err();
    assert_eq!((e.kind, e.line, e.column), (RuleErrorKind::Limit, 1, 21), "{e}");

    let nots = |n: usize| format!("any where {}a", "not ".repeat(n));
    assert!(parse(&nots(10), lim).is_ok());
    let e = parse(&nots(11), lim).unwrap_err();
    assert_eq!((e.kind, e.column), (RuleErrorKind::Limit, 51));

    let calls = |n: usize| format!("any where {}a{}", "f(".repeat(n), ")".repeat(n));
    assert!(parse(&calls(10), lim).is_ok());
    assert_eq!(parse(&calls(11), lim).unwrap_err().kind, RuleErrorKind::Limit);

    let lists = |n: usize| format!("any where {}a{}", "a in (".repeat(n), ")".repeat(n));
    assert!(parse(&lists(10), lim).is_ok());
    assert_eq!(parse(&lists(11), lim).unwrap_err().kind, RuleErrorKind::Limit);
}

#[test]
fn huge_nesting_does_not_overflow() {
    let big = ParseLimits { max_depth: usize::MAX, max_len: usize::MAX };
    for text in [
        format!("any where {}", "(".repeat(100_000)),
        format!("any where {}a{}", "(".repeat(100_000), ")".repeat(100_000)),
        format!("any where {}a", "not ".repeat(100_000)),
        format!("any where {}", "f(".repeat(100_000)),
        format!("any where {}", "a in (".repeat(100_000)),
        format!("any where {}", "a : (".repeat(100_000)),
    ] {
        for limits in [ParseLimits::default(), big] {
            let limits = ParseLimits { max_len: usize::MAX, ..limits };
            let e = parse(&text, limits).unwrap_err();
            assert_eq!(e.kind, RuleErrorKind::Limit, "{}", truncate(&text, 40));
        }
    }
    // The hard cap holds even with an unlimited max_depth.
    let at_cap =
        format!("any where {}a{}", "(".repeat(HARD_MAX_DEPTH), ")".repeat(HARD_MAX_DEPTH));
    assert!(parse(&at_cap, big).is_ok());
}

#[test]
fn hard_cap_fits_a_default_thread_stack() {
    // The deepest accepted queries of each recursive shape parse on a
    // 2 MiB thread stack (Rust's default for spawned threads), even
    // unoptimised; optimised builds need well under 256 KiB.
    let n = HARD_MAX_DEPTH;
    let texts = [
        format!("any where {}a == 1{}", "(".repeat(n), ")".repeat(n)),
        format!("any where {}a{}", "f(".repeat(n), ")".repeat(n)),
        format!("any where {}a{}", "a in (".repeat(n), ")".repeat(n)),
        format!("any where {}a{}", "a like~ (".repeat(n), ")".repeat(n)),
        format!("any where {}a == 1{}", "not (f(".repeat(n / 3), "))".repeat(n / 3)),
    ];
    let handle = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            let big = ParseLimits { max_depth: usize::MAX, max_len: usize::MAX };
            texts.iter().map(|t| parse(t, big).map(|_| ())).collect::<Result<Vec<_>, _>>()
        })
        .unwrap();
    handle.join().unwrap().unwrap();
}

#[test]
fn display_shows_caret() {
    let e = err("sequence\n  [process where a == 1\n  [network where true]");
    assert_eq!(
        e.to_string(),
        "syntax error at line 3, column 3: expected ']' to close the stage opened at line 2, column 3 but found '['\n    [network where true]\n    ^"
    );
    let e = err("any where\ta == \"x");
    assert_eq!(
        e.to_string(),
        "syntax error at line 1, column 16: unterminated string: no closing '\"' on this line (use \"\"\"…\"\"\" for text spanning lines)\n  any where\ta == \"x\n           \t     ^"
    );
}

#[test]
fn spans_cover_their_text() {
    let text = "any where process.name : (\"a\", \"b\") and not f~(x, 1) or y == \"z\"";
    let Expr::Or(items, span) = cond(text) else { panic!() };
    assert_eq!(&text[span.start..span.end], &text[10..]);
    let Expr::And(conj, span) = &items[0] else { panic!() };
    assert_eq!(&text[span.start..span.end], "process.name : (\"a\", \"b\") and not f~(x, 1)");
    assert_eq!(
        &text[conj[0].span().start..conj[0].span().end],
        "process.name : (\"a\", \"b\")"
    );
    let Expr::Not(call, nspan) = &conj[1] else { panic!() };
    assert_eq!(&text[nspan.start..nspan.end], "not f~(x, 1)");
    assert_eq!(&text[call.span().start..call.span().end], "f~(x, 1)");
    assert_eq!(&text[items[1].span().start..items[1].span().end], "y == \"z\"");
}

/// xorshift64*: a tiny deterministic PRNG for the mutation test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// A random char boundary of `s`.
    fn boundary(&mut self, s: &str) -> usize {
        let mut i = self.below(s.len() + 1);
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}

#[test]
fn mutated_inputs_never_panic() {
    const SNIPPETS: &[&str] = &[
        "(",
        ")",
        "[",
        "]",
        "\"",
        "\"\"\"",
        "?\"",
        "`",
        "'",
        "\\",
        "\\u{",
        "/*",
        "*/",
        "//",
        "\n",
        "~",
        "!",
        "=",
        "==",
        ":",
        ",",
        ".",
        "|",
        "not ",
        " and ",
        " or ",
        " in~ ",
        " like ",
        "regex",
        "sequence ",
        "until ",
        "by ",
        "with maxspan=",
        "99999999999999999999",
        "-",
        "1e999",
        "é",
        "\u{1F600}",
        "\0",
    ];
    let base = format!(
        "{RULE_V5}any where a == \"\\u{{41}}\" and f~(`x``y`, -1.5e3, ?\"r\", \"\"\"t\"\"\")"
    );
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let limits = ParseLimits { max_depth: 16, max_len: 1 << 20 };
    let mut ok = 0;
    for case in 0..6000 {
        let mut s = if case % 2 == 0 { RULE_V5.to_string() } else { base.clone() };
        for _ in 0..1 + rng.below(4) {
            let a = rng.boundary(&s);
            let b = rng.boundary(&s);
            let (lo, hi) = (a.min(b), a.max(b));
            match rng.below(4) {
                0 => s.replace_range(lo..hi, ""),
                1 => {
                    let dup = s[lo..hi].to_string();
                    s.insert_str(hi, &dup);
                }
                2 => s.insert_str(lo, SNIPPETS[rng.below(SNIPPETS.len())]),
                _ => {
                    // Delete a short range only.
                    let end = (lo + rng.below(8)).min(s.len());
                    let mut end = end;
                    while !s.is_char_boundary(end) {
                        end -= 1;
                    }
                    s.replace_range(lo..end, "");
                }
            }
        }
        match parse(&s, limits) {
            Ok(_) => ok += 1,
            Err(e) => {
                // Positions, when present, point into the text.
                if e.line > 0 {
                    assert!(e.column >= 1);
                    assert!(e.line as usize <= s.split('\n').count(), "{e}");
                }
                let _ = e.to_string();
            }
        }
    }
    assert!(ok > 0, "some mutations should still parse");

    // Random byte soup (lossily made UTF-8) and random token soup.
    for _ in 0..3000 {
        let n = rng.below(64);
        let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        let s = String::from_utf8_lossy(&bytes);
        let _ = parse(&s, limits).map_err(|e| e.to_string());
        let mut t = String::from(if rng.below(2) == 0 { "any where " } else { "sequence " });
        for _ in 0..rng.below(30) {
            t.push_str(SNIPPETS[rng.below(SNIPPETS.len())]);
            if rng.below(3) == 0 {
                t.push_str("a ");
            }
        }
        let _ = parse(&t, limits).map_err(|e| e.to_string());
    }
}
