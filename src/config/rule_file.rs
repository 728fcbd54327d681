//! Rules from Elastic detection-rules TOML files.
//!
//! The layout is the one of the `elastic/detection-rules` repository, so the
//! upstream file of a rule can be dropped in as is:
//!
//! ```toml
//! [metadata]                 # read for nothing; any keys
//! creation_date = "2024/02/22"
//!
//! [rule]
//! name = "…"                 # required
//! rule_id = "…"              # required
//! type = "eql"               # when present: must be "eql"
//! language = "eql"           # when present: must be "eql"
//! query = '''
//! sequence by host.id with maxspan=5s …
//! '''                        # required
//! severity = "medium"        # low, medium, high, critical (default medium)
//! risk_score = 47            # 0..=100 (default 47)
//! description = "…"
//! author = ["…"]
//! license = "…"
//! references = ["…"]
//! tags = ["…"]
//! version = 5                # default 1 (upstream keeps it in version.lock.json)
//!
//! [[rule.threat]]
//! framework = "MITRE ATT&CK"
//! [rule.threat.tactic]
//! id = "TA0003"
//! name = "Persistence"
//! reference = "https://attack.mitre.org/tactics/TA0003/"
//! [[rule.threat.technique]]
//! id = "T1546"
//! name = "Event Triggered Execution"
//! reference = "https://attack.mitre.org/techniques/T1546/"
//! [[rule.threat.technique.subtechnique]]
//! id = "T1546.016"
//! name = "Installer Packages"
//! reference = "https://attack.mitre.org/techniques/T1546/016/"
//! ```
//!
//! Other keys (`from`, `index`, `note`, `setup`, `timestamp_override`, …) are
//! accepted and ignored. An error in the query is reported at its line and
//! column IN THE TOML FILE when the query is a literal string (`'''…'''` or
//! `'…'`, as upstream writes it) or a basic string without escapes; otherwise
//! the message says the position is within the `query` string.

use crate::eql::{RuleError, RuleErrorKind};
use crate::config::rule::{Rule, RuleMeta, Tactic, Technique};
use serde::Deserialize;

/// True when `path` names a TOML rule file (`.toml`, any case).
pub fn is_toml_path(path: &str) -> bool {
    std::path::Path::new(path).extension().is_some_and(|e| e.to_string_lossy().eq_ignore_ascii_case("toml"))
}

#[derive(Deserialize)]
struct RuleFile {
    #[serde(default)]
    #[allow(dead_code)]
    metadata: Option<toml::Table>,
    rule: TomlRule,
}

#[derive(Deserialize)]
struct TomlRule {
    name: String,
    rule_id: String,
    query: toml::Spanned<String>,
    #[serde(rename = "type")]
    rule_type: Option<String>,
    language: Option<String>,
    severity: Option<String>,
    risk_score: Option<i64>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    author: Vec<String>,
    #[serde(default)]
    license: String,
    #[serde(default)]
    references: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    version: Option<i64>,
    #[serde(default)]
    threat: Vec<TomlThreat>,
    /// The look-back, `now-9m`.
    from: Option<String>,
}

#[derive(Deserialize)]
struct TomlThreat {
    framework: String,
    tactic: TomlRef,
    #[serde(default)]
    technique: Vec<TomlTechnique>,
}

#[derive(Deserialize)]
struct TomlRef {
    id: String,
    name: String,
    reference: String,
}

#[derive(Deserialize)]
struct TomlTechnique {
    id: String,
    name: String,
    reference: String,
    #[serde(default)]
    subtechnique: Vec<TomlRef>,
}

/// 1-based (line, column in characters) of byte offset `at` in `text`.
fn position(text: &str, at: usize) -> (u32, u32) {
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line as u32, col as u32)
}

fn invalid(text: &str, path: &str, msg: String, at: Option<usize>) -> RuleError {
    let mut e = RuleError::new(RuleErrorKind::Invalid, format!("{path}: {msg}"));
    if let Some(at) = at {
        let (line, column) = position(text, at.min(text.len()));
        e.line = line;
        e.column = column;
        e.source_line = text.lines().nth(line as usize - 1).map(str::to_string);
    }
    e
}

/// Parse a detection-rules TOML file and compile its query. `path` is used
/// in messages.
pub fn load_toml(text: &str, path: &str) -> Result<Rule, RuleError> {
    let file: RuleFile = toml::from_str(text).map_err(|e| {
        let msg = e.message().trim_end().to_string();
        invalid(text, path, format!("not a detection-rules TOML file: {msg}"), e.span().map(|s| s.start))
    })?;
    let r = file.rule;
    for (key, v) in [("type", &r.rule_type), ("language", &r.language)] {
        if let Some(v) = v {
            if v != "eql" {
                return Err(invalid(
                    text,
                    path,
                    format!("[rule] {key} is \"{v}\"; only EQL rules (\"eql\") can run here"),
                    None,
                ));
            }
        }
    }
    let severity = r.severity.unwrap_or_else(|| "medium".into());
    if !["low", "medium", "high", "critical"].contains(&severity.as_str()) {
        return Err(invalid(
            text,
            path,
            format!("[rule] severity \"{severity}\" is not low, medium, high or critical"),
            None,
        ));
    }
    let risk_score = r.risk_score.unwrap_or(47);
    if !(0..=100).contains(&risk_score) {
        return Err(invalid(text, path, format!("[rule] risk_score {risk_score} is not within 0..=100"), None));
    }
    let version = r.version.unwrap_or(1);
    if !(1..=i64::from(u32::MAX)).contains(&version) {
        return Err(invalid(text, path, format!("[rule] version {version} is not a positive integer"), None));
    }
    if r.name.trim().is_empty() || r.rule_id.trim().is_empty() {
        return Err(invalid(text, path, "[rule] name and rule_id must not be empty".into(), None));
    }
    let framework = r.threat.first().map_or_else(|| "MITRE ATT&CK".to_string(), |t| t.framework.clone());
    let threat = r
        .threat
        .into_iter()
        .map(|t| Tactic {
            id: t.tactic.id,
            name: t.tactic.name,
            reference: t.tactic.reference,
            techniques: t
                .technique
                .into_iter()
                .map(|q| Technique {
                    id: q.id,
                    name: q.name,
                    reference: q.reference,
                    subtechniques: q
                        .subtechnique
                        .into_iter()
                        .map(|s| Technique { id: s.id, name: s.name, reference: s.reference, subtechniques: vec![] })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    let look_back_ms = match r.from.as_deref() {
        None => None,
        Some(f) => match f.trim().strip_prefix("now-").map(crate::config::settings::parse_duration_ms) {
            Some(Ok(ms)) => Some(ms),
            _ => {
                return Err(invalid(
                    text,
                    path,
                    format!("[rule] from \"{f}\" is not a look-back such as \"now-9m\""),
                    None,
                ))
            }
        },
    };
    let meta = RuleMeta {
        look_back_ms,
        name: r.name,
        rule_id: r.rule_id,
        version: version as u32,
        description: r.description,
        severity,
        risk_score: risk_score as u32,
        author: r.author,
        license: r.license,
        references: r.references,
        tags: r.tags,
        framework,
        threat,
    };
    let span = r.query.span();
    let query = r.query.into_inner();
    Rule::from_eql(&query, meta).map_err(|e| map_query_error(e, text, span, &query, path))
}

/// Move a query error's position from the query string into the TOML file.
fn map_query_error(mut e: RuleError, text: &str, span: std::ops::Range<usize>, query: &str, path: &str) -> RuleError {
    let raw = &text[span.clone()];
    let multiline = raw.starts_with("'''") || raw.starts_with("\"\"\"");
    let delim = if multiline { 3 } else { 1 };
    let mut start = span.start + delim;
    if multiline {
        // A newline right after the opening delimiter is not part of the string.
        if text[start..].starts_with("\r\n") {
            start += 2;
        } else if text[start..].starts_with('\n') {
            start += 1;
        }
    }
    if e.line == 0 {
        e.message = format!("{} (in the `query` of {path})", e.message);
        return e;
    }
    if text[start..].starts_with(query) {
        let (base_line, base_col) = position(text, start);
        let line = base_line + e.line - 1;
        e.column = if e.line == 1 { base_col + e.column - 1 } else { e.column };
        e.line = line;
        e.source_line = text.lines().nth(line as usize - 1).map(str::to_string);
        e.message = format!("{} (in the `query` of {path}; line and column are the file's)", e.message);
    } else {
        e.message = format!(
            "{} (line and column are within the `query` string of {path}: it uses escapes, so positions in the file differ)",
            e.message
        );
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "[metadata]\nmaturity = \"production\"\n\n[rule]\nname = \"t\"\nrule_id = \"x\"\n";

    #[test]
    fn positions_map_into_the_file() {
        let text = format!("{HEAD}query = '''\nprocess where\n  foo(process.name)\n'''\n");
        let e = load_toml(&text, "t.toml").unwrap_err();
        assert_eq!((e.line, e.column), (9, 3), "{e}");
        assert_eq!(e.source_line.as_deref(), Some("  foo(process.name)"));
        let text = format!("{HEAD}query = \"process where foo(process.name)\"\n");
        let e = load_toml(&text, "t.toml").unwrap_err();
        assert_eq!((e.line, e.column), (7, 24), "{e}");
        let text = format!("{HEAD}query = \"process where \\\"a\\\" == \\\"b\\\" and foo(x)\"\n");
        let e = load_toml(&text, "t.toml").unwrap_err();
        assert_eq!(e.line, 1, "{e}");
        assert!(e.message.contains("within the `query` string"), "{e}");
    }

    #[test]
    fn toml_errors_have_positions() {
        let e = load_toml("[rule]\nname = \"t\"\nrule_id = \n", "t.toml").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        let e = load_toml("[rule]\nname = \"t\"\nrule_id = \"x\"\n", "t.toml").unwrap_err();
        assert!(e.message.contains("query"), "{e}");
        let e = load_toml(&format!("{HEAD}type = \"query\"\nquery = 'x'\n"), "t.toml").unwrap_err();
        assert!(e.message.contains("only EQL"), "{e}");
    }

    #[test]
    fn extension() {
        assert!(is_toml_path("a/b.toml"));
        assert!(is_toml_path("B.TOML"));
        assert!(!is_toml_path("b.eql"));
        assert!(!is_toml_path("toml"));
    }
}
