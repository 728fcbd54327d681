//! A rule: its metadata (Elastic's detection-rule fields) and its query,
//! parsed from EQL text and compiled.
//!
//! Two rules are built in. `apt_netcon_v5` (the default; aliases `default`,
//! `v5`) is the query as published in rule version 5, verbatim. `apt_netcon_v11`
//! (aliases `latest`, `v11`) is the newer upstream query (version 9 added the
//! `apt-listbugs` exclusion to the first stage; versions 10 and 11 only changed
//! the threat mapping) with the version 11 mapping.

use crate::eql::compile::{beyond_fast_path, compile, typed_like_elasticsearch, CompiledQuery};
use crate::eql::{parse, Engine, EngineOptions, ParseLimits, Query, RuleError, RuleErrorKind};
use std::sync::Arc;

/// A MITRE ATT&CK technique (or sub-technique).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Technique {
    pub id: String,
    pub name: String,
    pub reference: String,
    pub subtechniques: Vec<Technique>,
}

/// A MITRE ATT&CK tactic and the techniques mapped under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tactic {
    pub id: String,
    pub name: String,
    pub reference: String,
    pub techniques: Vec<Technique>,
}

/// The descriptive fields of a detection rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleMeta {
    pub name: String,
    pub rule_id: String,
    pub version: u32,
    pub description: String,
    pub severity: String,
    pub risk_score: u32,
    pub author: Vec<String>,
    pub license: String,
    pub references: Vec<String>,
    pub tags: Vec<String>,
    /// Always "MITRE ATT&CK" for the built-in rules.
    pub framework: String,
    pub threat: Vec<Tactic>,
    /// The rule's look-back (`from = "now-9m"` in a detection-rules file):
    /// the default window of a `sample` query.
    pub look_back_ms: Option<u64>,
}

/// A loaded rule: immutable, cheap to clone, shareable across threads.
#[derive(Debug, Clone)]
pub struct Rule {
    inner: Arc<RuleInner>,
}

#[derive(Debug)]
struct RuleInner {
    meta: RuleMeta,
    query_text: String,
    /// The fast engine's form; empty (no stages) for a generic rule.
    compiled: CompiledQuery,
    /// The parsed query, when only the generic engine
    /// ([`crate::eql::Engine`]) runs it.
    generic: Option<Query>,
    /// A built-in APT rule: it writes the APT alert
    /// ([`crate::alert::annotate::Alert`]); every other rule writes
    /// [`crate::alert::rule_alert`]'s.
    builtin: bool,
}

impl Rule {
    /// Parse and compile `query` with the given metadata.
    ///
    /// Queries within the fast engine's subset ([`crate::eql::compile`]) run
    /// there; every other valid query (optional fields outside ECS,
    /// arithmetic, functions on any value, more than 32 stages, `until`,
    /// missing-event stages, `sample`, …) runs on the generic engine. Both
    /// are checked here, so a rule that loads runs.
    pub fn from_eql(query: &str, meta: RuleMeta) -> Result<Rule, RuleError> {
        let ast = parse(query, ParseLimits::default())?;
        let fast = match beyond_fast_path(&ast) {
            None if typed_like_elasticsearch(&ast) => compile(&ast, query).ok(),
            _ => None,
        };
        let (compiled, generic) = match fast {
            Some(c) => (c, None),
            None => {
                // Compile once to report errors at load time.
                Engine::from_ast(&ast, query, EngineOptions::default())?;
                (CompiledQuery::empty(), Some(ast))
            }
        };
        Ok(Rule { inner: Arc::new(RuleInner { meta, query_text: query.to_string(), compiled, generic, builtin: false }) })
    }

    /// The parsed query when the generic engine runs this rule.
    pub fn generic_query(&self) -> Option<&Query> {
        self.inner.generic.as_ref()
    }

    /// A built-in rule by name (`apt_netcon_v5`, `default`, `v5`,
    /// `apt_netcon_v11`, `latest`, `v11`).
    pub fn builtin(name: &str) -> Result<Rule, RuleError> {
        let (query, meta) = match name {
            "apt_netcon_v5" | "default" | "v5" => (QUERY_V5.to_string(), meta_v5()),
            "apt_netcon_v11" | "latest" | "v11" => (query_v11(), meta_v11()),
            _ => {
                return Err(RuleError::new(
                    RuleErrorKind::Invalid,
                    format!("no built-in rule named `{name}`; built-in rules: {}", BUILTIN_NAMES.join(", ")),
                ))
            }
        };
        let mut r = Rule::from_eql(&query, meta)?;
        if let Some(inner) = Arc::get_mut(&mut r.inner) {
            inner.builtin = true;
        }
        Ok(r)
    }

    /// Whether this rule writes the APT alert ([`crate::alert::annotate::Alert`]):
    /// a built-in rule, or a rule file of the flagship rule (its
    /// `rule_id`). Every other rule writes [`crate::alert::rule_alert`]'s.
    pub fn writes_apt_alert(&self) -> bool {
        self.inner.builtin || self.inner.meta.rule_id == APT_RULE_ID
    }

    /// The embedded default rule (version 5).
    pub fn default_rule() -> Rule {
        static DEFAULT: once_cell::sync::Lazy<Rule> = once_cell::sync::Lazy::new(|| {
            Rule::builtin("apt_netcon_v5").expect("the embedded rule compiles (checked by tests)")
        });
        DEFAULT.clone()
    }

    pub fn meta(&self) -> &RuleMeta {
        &self.inner.meta
    }

    pub fn query_text(&self) -> &str {
        &self.inner.query_text
    }

    pub fn compiled(&self) -> &CompiledQuery {
        &self.inner.compiled
    }
}

/// The flagship rule's `rule_id` ("Suspicious APT Package Manager Network
/// Connection").
pub const APT_RULE_ID: &str = "eaef8a35-12e0-4ac0-bc14-81c72b6bd27c";

/// Names accepted by [`Rule::builtin`] (canonical names first).
pub const BUILTIN_NAMES: &[&str] = &["apt_netcon_v5", "apt_netcon_v11", "default", "v5", "latest", "v11"];

/// The query of rule version 5, verbatim from the published rule.
pub const QUERY_V5: &str = r#"sequence by host.id with maxspan=5s
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

/// The newer upstream query: version 5 plus, in the first stage,
/// `and not process.args == "/usr/bin/apt-listbugs apt"`.
pub fn query_v11() -> String {
    QUERY_V5.replacen(
        r#""bash", "dash", "sh", "tcsh", "csh", "zsh", "ksh", "fish"
    )
  ]"#,
        r#""bash", "dash", "sh", "tcsh", "csh", "zsh", "ksh", "fish"
    ) and not process.args == "/usr/bin/apt-listbugs apt"
  ]"#,
        1,
    )
}

fn tactic(id: &str, name: &str, techniques: Vec<Technique>) -> Tactic {
    Tactic {
        id: id.into(),
        name: name.into(),
        reference: format!("https://attack.mitre.org/tactics/{id}/"),
        techniques,
    }
}

fn technique(id: &str, name: &str, subtechniques: Vec<Technique>) -> Technique {
    Technique {
        id: id.into(),
        name: name.into(),
        reference: format!("https://attack.mitre.org/techniques/{}/", id.replace('.', "/")),
        subtechniques,
    }
}

fn meta_v5() -> RuleMeta {
    RuleMeta {
        name: "Suspicious APT Package Manager Network Connection".into(),
        rule_id: APT_RULE_ID.into(),
        version: 5,
        description: "Detects a shell started by the APT package manager with `-c` that, within 5 seconds, \
has a child process attempt a network connection to a public address: the pattern of an APT hook \
(e.g. APT::Update::Pre-Invoke) backdoored to run a payload that calls home."
            .into(),
        severity: "medium".into(),
        risk_score: 47,
        author: vec!["Elastic".into()],
        license: "Elastic License v2".into(),
        references: vec!["https://www.elastic.co/security-labs/sequel-on-persistence-mechanisms".into()],
        tags: [
            "Domain: Endpoint",
            "OS: Linux",
            "Use Case: Threat Detection",
            "Tactic: Persistence",
            "Tactic: Command and Control",
            "Tactic: Defense Evasion",
            "Data Source: Elastic Defend",
            "Resources: Investigation Guide",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        framework: "MITRE ATT&CK".into(),
        threat: vec![
            tactic(
                "TA0003",
                "Persistence",
                vec![
                    technique("T1543", "Create or Modify System Process", vec![]),
                    technique(
                        "T1546",
                        "Event Triggered Execution",
                        vec![technique("T1546.016", "Installer Packages", vec![])],
                    ),
                    technique("T1574", "Hijack Execution Flow", vec![]),
                ],
            ),
            tactic("TA0011", "Command and Control", vec![]),
            tactic("TA0005", "Defense Evasion", vec![]),
        ],
        look_back_ms: None,
    }
}

fn meta_v11() -> RuleMeta {
    let mut m = meta_v5();
    m.version = 11;
    m.threat.push(tactic(
        "TA0002",
        "Execution",
        vec![technique(
            "T1059",
            "Command and Scripting Interpreter",
            vec![technique("T1059.004", "Unix Shell", vec![])],
        )],
    ));
    m
}

/// Metadata for a rule loaded from a bare EQL file: a name and id derived
/// from the file, default severity.
pub fn meta_for_file(name: &str) -> RuleMeta {
    RuleMeta {
        name: name.to_string(),
        rule_id: name.to_string(),
        version: 1,
        description: String::new(),
        severity: "medium".into(),
        risk_score: 47,
        author: vec![],
        license: String::new(),
        references: vec![],
        tags: vec![],
        framework: "MITRE ATT&CK".into(),
        threat: vec![],
        look_back_ms: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_compile() {
        for n in BUILTIN_NAMES {
            let r = Rule::builtin(n).unwrap();
            assert_eq!(r.compiled().stages.len(), 2);
            assert_eq!(r.compiled().maxspan_ms, Some(5000));
        }
        assert!(query_v11().contains(r#"and not process.args == "/usr/bin/apt-listbugs apt""#));
        assert_ne!(query_v11(), QUERY_V5);
        assert!(Rule::builtin("nope").unwrap_err().to_string().contains("apt_netcon_v5"));
    }
}
