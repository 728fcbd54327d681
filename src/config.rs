//! Detector configuration: one table of keys ([`KEYS`]) drives validation of
//! the JSON config, the CLI and string properties (Fluent Bit), and the
//! README's configuration table.

use crate::eql::RuleError;
use crate::rule::{meta_for_file, Rule};
use std::fmt;

/// The type of a configuration value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    String,
    Integer,
    Boolean,
}

impl KeyType {
    fn as_str(self) -> &'static str {
        match self {
            KeyType::String => "string",
            KeyType::Integer => "integer",
            KeyType::Boolean => "boolean",
        }
    }
}

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    pub key: &'static str,
    pub ty: KeyType,
    /// The default, as written in the docs.
    pub default: &'static str,
    pub description: &'static str,
}

/// Every configuration key.
pub const KEYS: &[KeySpec] = &[
    KeySpec {
        key: "rule",
        ty: KeyType::String,
        default: "apt_netcon_v5",
        description: "Built-in rule to run: `apt_netcon_v5` (the published version 5 query) or `apt_netcon_v11` (the newer upstream query).",
    },
    KeySpec {
        key: "rule_file",
        ty: KeyType::String,
        default: "(none)",
        description: "Path of a file holding an EQL query to run instead of a built-in rule.",
    },
    KeySpec {
        key: "max_pending_sequences",
        ty: KeyType::Integer,
        default: "100000",
        description: "Cap on partial sequences held at once; beyond it the oldest (by event time) is evicted and counted.",
    },
    KeySpec {
        key: "max_record_bytes",
        ty: KeyType::Integer,
        default: "16777216",
        description: "Records larger than this are passed through unread and counted as `too_large`.",
    },
    KeySpec {
        key: "annotation_prefix",
        ty: KeyType::String,
        default: "(empty)",
        description: "Dotted path under which the alert fields are written (empty: `rule`, `threat`, `kibana`, `apt_netcon` at the top level).",
    },
    KeySpec {
        key: "kibana_fields",
        ty: KeyType::Boolean,
        default: "true",
        description: "Write the `kibana.alert.*` fields; when false, the alert id, group id, reason, severity and risk score go under `apt_netcon.*`.",
    },
];

/// A configuration problem, naming the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key at fault, when there is one.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(k) => write!(f, "config key `{k}`: {}", self.message),
            None => write!(f, "config: {}", self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

fn valid_keys() -> String {
    KEYS.iter().map(|k| k.key).collect::<Vec<_>>().join(", ")
}

/// Detector configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub rule: String,
    pub rule_file: Option<String>,
    pub max_pending_sequences: usize,
    pub max_record_bytes: usize,
    pub annotation_prefix: String,
    pub kibana_fields: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rule: "apt_netcon_v5".into(),
            rule_file: None,
            max_pending_sequences: 100_000,
            max_record_bytes: 16 * 1024 * 1024,
            annotation_prefix: String::new(),
            kibana_fields: true,
        }
    }
}

/// A typed configuration value.
#[derive(Debug, Clone)]
enum Val {
    S(String),
    I(u64),
    B(bool),
}

impl Config {
    /// Parse a JSON object of keys from [`KEYS`]. Empty or whitespace-only
    /// text gives the defaults.
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        if text.trim().is_empty() {
            return Ok(c);
        }
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| ConfigError { key: None, message: format!("not valid JSON: {e}") })?;
        let obj = v.as_object().ok_or_else(|| ConfigError {
            key: None,
            message: "must be a JSON object".into(),
        })?;
        for (k, v) in obj {
            let spec = spec(k)?;
            let val = match (spec.ty, v) {
                (KeyType::String, serde_json::Value::String(s)) => Val::S(s.clone()),
                (KeyType::Integer, serde_json::Value::Number(n)) if n.as_u64().is_some() => Val::I(n.as_u64().unwrap()),
                (KeyType::Boolean, serde_json::Value::Bool(b)) => Val::B(*b),
                (ty, other) => {
                    return Err(ConfigError {
                        key: Some(k.clone()),
                        message: format!("expected {}, got {}", ty_desc(ty), other),
                    })
                }
            };
            c.apply(spec, val)?;
        }
        Ok(c)
    }

    /// Set one key from its text form (Fluent Bit properties, CLI flags).
    /// Keys are case-insensitive.
    pub fn set_str(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let lower = key.to_ascii_lowercase();
        let spec = spec(&lower)?;
        let val = match spec.ty {
            KeyType::String => Val::S(value.to_string()),
            KeyType::Integer => Val::I(value.trim().parse().map_err(|_| ConfigError {
                key: Some(spec.key.into()),
                message: format!("expected a non-negative integer, got \"{value}\""),
            })?),
            KeyType::Boolean => Val::B(match value.trim().to_ascii_lowercase().as_str() {
                "true" | "on" | "yes" | "1" => true,
                "false" | "off" | "no" | "0" => false,
                _ => {
                    return Err(ConfigError {
                        key: Some(spec.key.into()),
                        message: format!("expected true or false, got \"{value}\""),
                    })
                }
            }),
        };
        self.apply(spec, val)
    }

    fn apply(&mut self, spec: &KeySpec, val: Val) -> Result<(), ConfigError> {
        let bad = |m: &str| ConfigError { key: Some(spec.key.into()), message: m.into() };
        match (spec.key, val) {
            ("rule", Val::S(s)) => self.rule = s,
            ("rule_file", Val::S(s)) => self.rule_file = Some(s),
            ("max_pending_sequences", Val::I(n)) => {
                if n == 0 {
                    return Err(bad("must be at least 1"));
                }
                self.max_pending_sequences = n.min(usize::MAX as u64) as usize
            }
            ("max_record_bytes", Val::I(n)) => {
                if n < 2 {
                    return Err(bad("must be at least 2"));
                }
                self.max_record_bytes = n.min(usize::MAX as u64) as usize
            }
            ("annotation_prefix", Val::S(s)) => {
                if !s.is_empty() && s.split('.').any(|p| p.is_empty()) {
                    return Err(bad("must be empty or a dotted path without empty parts"));
                }
                self.annotation_prefix = s
            }
            ("kibana_fields", Val::B(b)) => self.kibana_fields = b,
            _ => return Err(bad("internal: value of the wrong type")),
        }
        Ok(())
    }

    /// Load the rule this config names.
    pub fn load_rule(&self) -> Result<Rule, LoadError> {
        match &self.rule_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| LoadError::Config(ConfigError {
                    key: Some("rule_file".into()),
                    message: format!("cannot read {path}: {e}"),
                }))?;
                let name = std::path::Path::new(path)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| path.clone());
                Rule::from_eql(&text, meta_for_file(&name)).map_err(LoadError::Rule)
            }
            None => Rule::builtin(&self.rule).map_err(|e| LoadError::Config(ConfigError {
                key: Some("rule".into()),
                message: e.message,
            })),
        }
    }

    /// The README's table of keys, generated from [`KEYS`].
    pub fn markdown_table() -> String {
        let mut s = String::from("| key | type | default | description |\n|---|---|---|---|\n");
        for k in KEYS {
            s.push_str(&format!("| `{}` | {} | {} | {} |\n", k.key, k.ty.as_str(), k.default, k.description));
        }
        s
    }
}

fn ty_desc(t: KeyType) -> &'static str {
    match t {
        KeyType::String => "a string",
        KeyType::Integer => "a non-negative integer",
        KeyType::Boolean => "true or false",
    }
}

fn spec(key: &str) -> Result<&'static KeySpec, ConfigError> {
    KEYS.iter().find(|k| k.key == key).ok_or_else(|| ConfigError {
        key: Some(key.to_string()),
        message: format!("unknown key; valid keys: {}", valid_keys()),
    })
}

/// Why a detector could not be built.
#[derive(Debug, Clone)]
pub enum LoadError {
    Config(ConfigError),
    Rule(RuleError),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Config(e) => e.fmt(f),
            LoadError::Rule(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for LoadError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors() {
        assert_eq!(Config::from_json("").unwrap(), Config::default());
        assert_eq!(Config::from_json("  {}  ").unwrap(), Config::default());
        let e = Config::from_json(r#"{"max_pending":1}"#).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("max_pending"));
        assert!(e.to_string().contains("max_pending_sequences"), "{e}");
        let e = Config::from_json(r#"{"max_pending_sequences":"10"}"#).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("max_pending_sequences"));
        let e = Config::from_json(r#"{"max_pending_sequences":0}"#).unwrap_err();
        assert!(e.to_string().contains("at least 1"));
        assert!(Config::from_json("[1]").is_err());
        let c = Config::from_json(r#"{"rule":"apt_netcon_v11","kibana_fields":false,"annotation_prefix":"a.b"}"#).unwrap();
        assert_eq!(c.rule, "apt_netcon_v11");
        assert!(!c.kibana_fields);
        assert!(Config::from_json(r#"{"annotation_prefix":"a..b"}"#).is_err());
    }

    #[test]
    fn set_str_is_case_insensitive_and_typed() {
        let mut c = Config::default();
        c.set_str("Max_Pending_Sequences", "7").unwrap();
        assert_eq!(c.max_pending_sequences, 7);
        c.set_str("kibana_fields", "off").unwrap();
        assert!(!c.kibana_fields);
        assert!(c.set_str("kibana_fields", "maybe").is_err());
        assert!(c.set_str("max_record_bytes", "-1").is_err());
        assert!(c.set_str("nope", "1").unwrap_err().to_string().contains("valid keys"));
    }

    #[test]
    fn bad_rule_names_the_key() {
        let c = Config { rule: "nope".into(), ..Config::default() };
        assert!(c.load_rule().unwrap_err().to_string().contains("`rule`"));
    }
}
