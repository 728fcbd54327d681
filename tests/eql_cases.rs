//! The project's own data-driven EQL cases (`tests/data/eql_cases.toml`),
//! run against the generic streaming engine (`apt_netcon::eql::Engine`).
//!
//! Every expected result in the TOML was decided by reading Elasticsearch's
//! documented behaviour (`../shared/spec/EQL.md`, the Elasticsearch EQL
//! syntax and function reference pages), never by recording what the engine
//! printed. Each case says where its expectation comes from (`note`).
//!
//! # Case format
//!
//! ```toml
//! [[case]]
//! name = "unique name"
//! note = "what it proves, and the source"
//! types = { "my.field" = "ip" }   # optional, added to the ECS types (TypeMap::add_simple)
//! query = '''any where ?foo.bar == null'''
//! events = [ '{"@timestamp": 1, ...}', ... ]   # JSON, in time order; ordinal = index
//! expect = [[0], [2]]             # each result's events; -1 for a missing stage
//! # or: error = "unsupported" (syntax, unsupported, bad argument,
//! #     unknown function, limit, invalid) and optional error_contains = "..."
//! known_issue = "..."             # optional: the engine is believed wrong here;
//!                                 # reported separately, does not fail the test
//! ```
//!
//! Results are compared as a multiset (the order of results is not part of
//! what these cases check; the order of events inside a result is).

use apt_netcon::eql::{Engine, EngineOptions, Match, RuleErrorKind, TypeMap};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    note: String,
    #[serde(default)]
    types: BTreeMap<String, String>,
    query: String,
    #[serde(default)]
    events: Vec<String>,
    expect: Option<Vec<Vec<i64>>>,
    error: Option<String>,
    error_contains: Option<String>,
    known_issue: Option<String>,
}

fn kind_from_text(s: &str) -> Option<RuleErrorKind> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "syntax" | "syntax error" => RuleErrorKind::Syntax,
        "unsupported" => RuleErrorKind::Unsupported,
        "bad argument" | "bad_argument" => RuleErrorKind::BadArgument,
        "unknown function" | "unknown_function" => RuleErrorKind::UnknownFunction,
        "limit" | "limit exceeded" => RuleErrorKind::Limit,
        "invalid" | "invalid rule" => RuleErrorKind::Invalid,
        _ => return None,
    })
}

/// What running a case produced: results (flattened) or an error.
#[derive(Debug, PartialEq)]
enum Outcome {
    Results(Vec<Vec<i64>>),
    Error(RuleErrorKind, String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Results(r) => write!(f, "{r:?}"),
            Outcome::Error(k, m) => write!(f, "error {:?} ({}): {}", k, k.as_str(), m),
        }
    }
}

fn flatten(m: &Match) -> Vec<i64> {
    m.events
        .iter()
        .map(|e| e.map_or(-1, |o| o as i64))
        .collect()
}

/// Run one case; `Err` is a malformed case (a bug in the TOML, not in the engine).
fn run(case: &Case) -> Result<Outcome, String> {
    let mut types = TypeMap::ecs();
    if !case.types.is_empty() {
        let map: serde_json::Map<String, serde_json::Value> = case
            .types
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        types
            .add_simple(&map)
            .map_err(|e| format!("bad types: {e}"))?;
    }
    let events: Vec<serde_json::Value> = case
        .events
        .iter()
        .enumerate()
        .map(|(i, s)| serde_json::from_str(s).map_err(|e| format!("event {i} is not JSON: {e}")))
        .collect::<Result<_, _>>()?;
    let opts = EngineOptions {
        types,
        ..Default::default()
    };
    let mut engine = match Engine::new(&case.query, opts) {
        Ok(e) => e,
        Err(e) => return Ok(Outcome::Error(e.kind, e.to_string())),
    };
    let mut out: Vec<Match> = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        engine.push(i as u64, ev, &mut out);
    }
    engine.finish(&mut out);
    Ok(Outcome::Results(out.iter().map(flatten).collect()))
}

/// Does `actual` satisfy what `case` expects?
fn check(case: &Case, actual: &Outcome) -> Result<bool, String> {
    match (&case.expect, &case.error) {
        (Some(exp), None) => match actual {
            Outcome::Results(got) => {
                let mut a = exp.clone();
                let mut b = got.clone();
                a.sort();
                b.sort();
                Ok(a == b)
            }
            Outcome::Error(..) => Ok(false),
        },
        (None, Some(kind_text)) => {
            let kind = kind_from_text(kind_text)
                .ok_or_else(|| format!("unknown error kind {kind_text:?}"))?;
            match actual {
                Outcome::Error(k, msg) => Ok(*k == kind
                    && case.error_contains.as_deref().is_none_or(|needle| {
                        msg.to_lowercase().contains(&needle.to_lowercase())
                    })),
                Outcome::Results(_) => Ok(false),
            }
        }
        _ => Err("a case needs exactly one of `expect` and `error`".to_string()),
    }
}

fn expected_text(case: &Case) -> String {
    match (&case.expect, &case.error) {
        (Some(e), _) => format!("{e:?}"),
        (_, Some(k)) => match &case.error_contains {
            Some(c) => format!("error {k:?} containing {c:?}"),
            None => format!("error {k:?}"),
        },
        _ => "?".to_string(),
    }
}

#[test]
fn eql_cases() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/eql_cases.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file: CaseFile =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));

    let mut names = HashSet::new();
    let (mut passed, mut failed) = (0usize, 0usize);
    let mut known_failing = Vec::new();
    let mut known_passing = Vec::new();
    for case in &file.case {
        assert!(
            names.insert(case.name.clone()),
            "duplicate case name {:?}",
            case.name
        );
        assert!(
            !case.note.trim().is_empty(),
            "case {:?} has no note",
            case.name
        );
        if case.error.is_none() {
            assert!(
                !case.events.is_empty(),
                "case {:?} has no events",
                case.name
            );
        }
        let outcome =
            run(case).unwrap_or_else(|e| panic!("case {:?} is malformed: {e}", case.name));
        let ok = check(case, &outcome)
            .unwrap_or_else(|e| panic!("case {:?} is malformed: {e}", case.name));
        match (&case.known_issue, ok) {
            (None, true) => passed += 1,
            (None, false) => {
                failed += 1;
                eprintln!(
                    "FAIL {}\n  query:    {}\n  expected: {}\n  actual:   {}",
                    case.name,
                    case.query.trim(),
                    expected_text(case),
                    outcome
                );
            }
            (Some(issue), false) => known_failing.push(format!(
                "KNOWN ISSUE {}\n  query:    {}\n  expected: {}\n  actual:   {}\n  issue:    {}",
                case.name,
                case.query.trim(),
                expected_text(case),
                outcome,
                issue
            )),
            (Some(_), true) => known_passing.push(case.name.clone()),
        }
    }
    for k in &known_failing {
        eprintln!("{k}");
    }
    for n in &known_passing {
        eprintln!("KNOWN ISSUE NOW PASSES (remove its known_issue mark): {n}");
    }
    eprintln!(
        "eql cases: {passed} passed, {failed} failed, {} known issues ({} still failing)",
        known_failing.len() + known_passing.len(),
        known_failing.len()
    );
    assert_eq!(failed, 0, "{failed} EQL case(s) failed (see above)");
}
