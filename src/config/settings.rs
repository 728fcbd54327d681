//! Detector configuration: one table of keys ([`KEYS`]) drives validation of
//! the JSON config, the CLI and string properties (Fluent Bit), and the
//! configuration table in docs/configuration.md.

use crate::eql::RuleError;
use crate::config::exceptions::{parse_items, Entry, ExceptionItem, Operator};
use crate::format::ip::Cidr;
use crate::config::rule::{meta_for_file, Rule};
use std::fmt;

/// The type of a configuration value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    String,
    Integer,
    Boolean,
    /// A JSON array; in text form (properties) a JSON array, or for the
    /// `trusted_*` lists comma-separated values.
    Array,
    /// A JSON object; in text form, its JSON text.
    Object,
}

impl KeyType {
    fn as_str(self) -> &'static str {
        match self {
            KeyType::String => "string",
            KeyType::Integer => "integer",
            KeyType::Boolean => "boolean",
            KeyType::Array => "array",
            KeyType::Object => "object",
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
        description: "Path of a file holding the rule to run instead of a built-in one: an EQL query, or, for a name ending in `.toml`, an Elastic detection-rules TOML file (its metadata goes into the alerts).",
    },
    KeySpec {
        key: "rules",
        ty: KeyType::Array,
        default: "(none)",
        description: "Run several rules at once (a rule pack): built-in rule names and rule files (`.toml` detection-rules files, or bare EQL), e.g. `[\"apt_netcon_v5\", \"rules/my.toml\"]`. With `rules` or `rules_dir`, `rule` and `rule_file` are not used.",
    },
    KeySpec {
        key: "rules_dir",
        ty: KeyType::String,
        default: "(none)",
        description: "A directory of rule files to run as a pack: every `.toml` and `.eql` in it, in file-name order (added to `rules`).",
    },
    KeySpec {
        key: "skip_broken_rules",
        ty: KeyType::Boolean,
        default: "false",
        description: "With a pack: run the rules that load and report the others (name, reason) instead of refusing to start. false: a rule that does not load is an error listing every such rule with its reason.",
    },
    KeySpec {
        key: "maxspan",
        ty: KeyType::String,
        default: "(the rule's)",
        description: "Override the sequence's `maxspan`: a whole number and a unit, `ms`, `s`, `m`, `h` or `d` (e.g. `10s`). Ignored for a single-event query.",
    },
    KeySpec {
        key: "exceptions",
        ty: KeyType::Array,
        default: "(none)",
        description: "Exception items, as Elastic models them: `{\"name\", \"entries\": [{\"field\", \"operator\", \"value\"}, …]}`; an event matching every entry of any item is invisible to the rule (see \"Tuning\"); `\"rule_id\"` (one or a list) limits an item to those rules of a pack.",
    },
    KeySpec {
        key: "exceptions_file",
        ty: KeyType::String,
        default: "(none)",
        description: "Path of a JSON file holding more exception items (an array, as for `exceptions`); read when the config is loaded.",
    },
    KeySpec {
        key: "trusted_destination_cidrs",
        ty: KeyType::Array,
        default: "(none)",
        description: "Addresses and CIDR blocks to treat like the rule's private ranges: item `trusted_destination_cidrs`, `destination.ip` is in cidr.",
    },
    KeySpec {
        key: "trusted_executables",
        ty: KeyType::Array,
        default: "(none)",
        description: "`process.executable` wildcard patterns (`*`, `?`; case-sensitive): item `trusted_executables`, `process.executable` matches any of them.",
    },
    KeySpec {
        key: "trusted_hashes",
        ty: KeyType::Array,
        default: "(none)",
        description: "SHA-256 hashes (64 hex digits, any case): items `trusted_hashes` (`process.hash.sha256` is one of) and `trusted_parent_hashes` (`process.parent.hash.sha256` is one of).",
    },
    KeySpec {
        key: "trusted_process_names",
        ty: KeyType::Array,
        default: "(none)",
        description: "Exact `process.name` values: item `trusted_process_names`, `process.name` is one of them.",
    },
    KeySpec {
        key: "trusted_command_lines",
        ty: KeyType::Array,
        default: "(none)",
        description: "`process.command_line` wildcard patterns: item `trusted_command_lines`, `process.command_line` matches any of them.",
    },
    KeySpec {
        key: "max_pending_sequences",
        ty: KeyType::Integer,
        default: "100000",
        description: "Cap on partial sequences held at once; beyond it the oldest (by event time) is evicted and counted.",
    },
    KeySpec {
        key: "max_pending_per_host",
        ty: KeyType::Integer,
        default: "1000",
        description: "Cap on partial sequences (and on held events) of one host (the rule's `sequence by` fields); beyond it that host's oldest is evicted (`evicted_by_host_cap`), so one flooding host cannot push out the others.",
    },
    KeySpec {
        key: "max_state_bytes",
        ty: KeyType::Integer,
        default: "268435456",
        description: "Cap on the estimated memory of the partial sequences, and separately of the held events (256 MiB each by default); beyond it the oldest is evicted (`evicted_by_bytes`) or released early (`held_forced`).",
    },
    KeySpec {
        key: "max_lateness",
        ty: KeyType::String,
        default: "0s",
        description: "How late (in event time) an event may arrive and still be matched as if the stream were time-sorted, e.g. `2s`. 0: arrival order, alerts inline. Above 0: events matching a stage are held back that long and a completed sequence leaves as a standalone alert record (see \"Streaming choices\").",
    },
    KeySpec {
        key: "max_held_events",
        ty: KeyType::Integer,
        default: "100000",
        description: "Cap on events held back for `max_lateness`; beyond it the oldest is released early and counted (`held_forced`).",
    },
    KeySpec {
        key: "max_future",
        ty: KeyType::String,
        default: "1d",
        description: "Stage events whose `@timestamp` is further than this ahead of the system clock are ignored and counted (`future_timestamp`), so that one bogus date cannot move event time past every real event.",
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
    KeySpec {
        key: "field_types",
        ty: KeyType::Object,
        default: "(ECS)",
        description: "Field types beyond ECS's, for rules run on the generic engine: `{\"field\": \"type\"}` (`keyword`, `ip`, `date`, `long`, `double`, `boolean`, `version`, …, or `{\"type\", \"null_value\", \"ignore_above\", \"format\"}`), or an Elasticsearch index mapping with `properties`. They add to and override ECS's types (built in).",
    },
    KeySpec {
        key: "id_field",
        ty: KeyType::String,
        default: "event.id",
        description: "The field that names an event in the alerts of rules run on the generic engine (`kibana.alert.ancestors`, `eql.events`); an event without it is named by a digest of its identifying fields.",
    },
    KeySpec {
        key: "sample_window",
        ty: KeyType::String,
        default: "(the rule's look-back)",
        description: "How long (event time) a `sample` query keeps the candidates of one key, e.g. `10m`: a stream has no end, so a sample is looked for within this window after its key's first candidate. Default: the rule file's look-back (`from = \"now-9m\"`), else without a time limit (still under `max_pending_sequences`).",
    },
    KeySpec {
        key: "prefilter",
        ty: KeyType::Boolean,
        default: "true",
        description: "Decide most records from a few bytes and fields: pass a record unread when none of the strings every stage requires (e.g. `\"apt\"`, `\"connection_attempted\"`) appears in it, and a record that matches only a later stage and finds nothing waiting after a syntax check. false: read every record that may match whole, so that every malformed one is counted (docs/semantics.md, \"Streaming choices\").",
    },
    KeySpec {
        key: "stats_interval",
        ty: KeyType::String,
        default: "0s",
        description: "How often the Fluent Bit filter and `apt-netcon serve` log their counters while running, e.g. `5m` (wall-clock time, checked as records arrive: an idle filter logs nothing new). `0s`: only at exit. The detector itself ignores it.",
    },
];

/// The field types in force: ECS, then the user's `field_types` (a flat
/// `{"field": "type"}` object, or an Elasticsearch mapping with
/// `properties`).
pub fn type_map(user: Option<&serde_json::Value>) -> Result<crate::eql::TypeMap, String> {
    let mut t = crate::eql::TypeMap::ecs();
    match user {
        None => {}
        Some(v) if v.get("properties").is_some() || v.get("mappings").is_some() => t.add_es_mapping(v)?,
        Some(serde_json::Value::Object(m)) => t.add_simple(m)?,
        Some(_) => return Err("expected a JSON object".into()),
    }
    Ok(t)
}

impl Config {
    /// The field types in force (see [`type_map`]).
    pub fn types(&self) -> crate::eql::TypeMap {
        type_map(self.field_types.as_ref()).unwrap_or_else(|_| crate::eql::TypeMap::ecs())
    }
}

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
    pub max_pending_per_host: usize,
    pub max_state_bytes: usize,
    /// `max_lateness` in milliseconds.
    pub max_lateness_ms: u64,
    pub max_held_events: usize,
    /// `max_future` in milliseconds.
    pub max_future_ms: u64,
    pub max_record_bytes: usize,
    pub annotation_prefix: String,
    pub kibana_fields: bool,
    /// Rule out records by their bytes before scanning them.
    pub prefilter: bool,
    /// `maxspan` override in milliseconds.
    pub maxspan_ms: Option<u64>,
    /// Exception items from `exceptions` and `exceptions_file`, in order.
    pub exceptions: Vec<ExceptionItem>,
    /// The `exceptions_file` last read.
    pub exceptions_file: Option<String>,
    pub trusted_destination_cidrs: Vec<String>,
    pub trusted_executables: Vec<String>,
    /// Lower-cased.
    pub trusted_hashes: Vec<String>,
    pub trusted_process_names: Vec<String>,
    pub trusted_command_lines: Vec<String>,
    /// `field_types`: the user's field types, as given (checked when set).
    pub field_types: Option<serde_json::Value>,
    /// The field naming an event in alerts (`id_field`).
    pub id_field: String,
    /// `sample_window` in milliseconds.
    pub sample_window_ms: Option<u64>,
    /// `stats_interval` in milliseconds (0: off). Read by the hosts (the
    /// Fluent Bit filter, the sidecar) to log counters while running.
    pub stats_interval_ms: u64,
    /// `rules`: built-in names and rule files of a pack.
    pub rules: Vec<String>,
    /// `rules_dir`: a directory of rule files.
    pub rules_dir: Option<String>,
    pub skip_broken_rules: bool,
}

/// Names of the items the `trusted_*` keys generate (reserved).
pub const SHORTCUT_ITEM_NAMES: &[&str] = &[
    "trusted_destination_cidrs",
    "trusted_executables",
    "trusted_hashes",
    "trusted_parent_hashes",
    "trusted_process_names",
    "trusted_command_lines",
];

/// At most this many distinct fields across all exception items.
pub const MAX_EXCEPTION_FIELDS: usize = 256;

impl Default for Config {
    fn default() -> Self {
        Config {
            rule: "apt_netcon_v5".into(),
            rule_file: None,
            max_pending_sequences: 100_000,
            max_pending_per_host: 1000,
            max_state_bytes: 256 * 1024 * 1024,
            max_lateness_ms: 0,
            max_held_events: 100_000,
            max_future_ms: 86_400_000,
            max_record_bytes: 16 * 1024 * 1024,
            annotation_prefix: String::new(),
            kibana_fields: true,
            prefilter: true,
            maxspan_ms: None,
            exceptions: Vec::new(),
            exceptions_file: None,
            trusted_destination_cidrs: Vec::new(),
            trusted_executables: Vec::new(),
            trusted_hashes: Vec::new(),
            trusted_process_names: Vec::new(),
            trusted_command_lines: Vec::new(),
            field_types: None,
            id_field: "event.id".into(),
            sample_window_ms: None,
            stats_interval_ms: 0,
            rules: Vec::new(),
            rules_dir: None,
            skip_broken_rules: false,
        }
    }
}

/// A typed configuration value.
#[derive(Debug, Clone)]
enum Val {
    S(String),
    I(u64),
    B(bool),
    A(Vec<serde_json::Value>),
    O(serde_json::Value),
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
                (KeyType::Array, serde_json::Value::Array(a)) => Val::A(a.clone()),
                (KeyType::Object, o @ serde_json::Value::Object(_)) => Val::O(o.clone()),
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
    /// Keys are case-insensitive. An array key takes a JSON array (or, for
    /// `exceptions`, one item object), or for the `trusted_*` lists
    /// comma-separated values; given more than once, an array key adds to
    /// its list.
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
            KeyType::Array => Val::A(array_from_text(spec, value)?),
            KeyType::Object => Val::O(match serde_json::from_str::<serde_json::Value>(value) {
                Ok(o @ serde_json::Value::Object(_)) => o,
                _ => {
                    return Err(ConfigError {
                        key: Some(spec.key.into()),
                        message: format!("expected a JSON object, got \"{value}\""),
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
            (key @ ("max_pending_per_host" | "max_held_events" | "max_state_bytes"), Val::I(n)) => {
                if n == 0 {
                    return Err(bad("must be at least 1"));
                }
                let n = n.min(usize::MAX as u64) as usize;
                match key {
                    "max_pending_per_host" => self.max_pending_per_host = n,
                    "max_held_events" => self.max_held_events = n,
                    _ => self.max_state_bytes = n,
                }
            }
            ("max_lateness", Val::S(s)) => self.max_lateness_ms = parse_duration_ms(&s).map_err(|m| bad(&m))?,
            ("max_future", Val::S(s)) => self.max_future_ms = parse_duration_ms(&s).map_err(|m| bad(&m))?,
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
            ("prefilter", Val::B(b)) => self.prefilter = b,
            ("maxspan", Val::S(s)) => self.maxspan_ms = Some(parse_duration_ms(&s).map_err(|m| bad(&m))?),
            ("exceptions", Val::A(a)) => {
                let items = parse_items(&serde_json::Value::Array(a)).map_err(|m| bad(&m))?;
                self.add_items(items).map_err(|m| bad(&m))?
            }
            ("exceptions_file", Val::S(path)) => {
                let text = std::fs::read_to_string(&path).map_err(|e| bad(&format!("cannot read {path}: {e}")))?;
                let v: serde_json::Value =
                    serde_json::from_str(&text).map_err(|e| bad(&format!("{path}: not valid JSON: {e}")))?;
                if !v.is_array() {
                    return Err(bad(&format!("{path}: expected a JSON array of exception items")));
                }
                let items = parse_items(&v).map_err(|m| bad(&format!("{path}: {m}")))?;
                self.add_items(items).map_err(|m| bad(&format!("{path}: {m}")))?;
                self.exceptions_file = Some(path)
            }
            (
                key @ ("trusted_destination_cidrs" | "trusted_executables" | "trusted_hashes"
                | "trusted_process_names" | "trusted_command_lines"),
                Val::A(a),
            ) => {
                let mut vals = Vec::with_capacity(a.len());
                for (i, v) in a.iter().enumerate() {
                    let s = match v {
                        serde_json::Value::String(s) if !s.is_empty() => s.clone(),
                        other => {
                            return Err(bad(&format!("element {} must be a non-empty string, got {other}", i + 1)))
                        }
                    };
                    vals.push(check_trusted(key, s).map_err(|m| bad(&m))?);
                }
                let list = match key {
                    "trusted_destination_cidrs" => &mut self.trusted_destination_cidrs,
                    "trusted_executables" => &mut self.trusted_executables,
                    "trusted_hashes" => &mut self.trusted_hashes,
                    "trusted_process_names" => &mut self.trusted_process_names,
                    _ => &mut self.trusted_command_lines,
                };
                list.extend(vals)
            }
            ("field_types", Val::O(o)) => {
                type_map(Some(&o)).map_err(|m| bad(&m))?;
                self.field_types = Some(o)
            }
            ("rules", Val::A(a)) => {
                for (i, v) in a.iter().enumerate() {
                    match v {
                        serde_json::Value::String(s) if !s.trim().is_empty() => self.rules.push(s.trim().to_string()),
                        other => return Err(bad(&format!("element {} must be a rule name or file, got {other}", i + 1))),
                    }
                }
            }
            ("rules_dir", Val::S(s)) => {
                if !std::path::Path::new(&s).is_dir() {
                    return Err(bad(&format!("{s} is not a directory")));
                }
                self.rules_dir = Some(s)
            }
            ("skip_broken_rules", Val::B(b)) => self.skip_broken_rules = b,
            ("id_field", Val::S(s)) => {
                if s.is_empty() || s.split('.').any(|p| p.is_empty()) {
                    return Err(bad("must be a dotted field path"));
                }
                self.id_field = s
            }
            ("sample_window", Val::S(s)) => self.sample_window_ms = Some(parse_duration_ms(&s).map_err(|m| bad(&m))?),
            ("stats_interval", Val::S(s)) => self.stats_interval_ms = parse_duration_ms(&s).map_err(|m| bad(&m))?,
            _ => return Err(bad("internal: value of the wrong type")),
        }
        Ok(())
    }

    /// Append exception items (all or none): names must be unique and not
    /// one the `trusted_*` keys generate; distinct fields are capped.
    fn add_items(&mut self, items: Vec<ExceptionItem>) -> Result<(), String> {
        for (i, it) in items.iter().enumerate() {
            if SHORTCUT_ITEM_NAMES.contains(&it.name.as_str()) {
                return Err(format!("item name \"{}\" is reserved for the key of the same name", it.name));
            }
            if self.exceptions.iter().chain(&items[..i]).any(|x| x.name == it.name) {
                return Err(format!(
                    "two items are named \"{}\"; names must be unique (they name the counters)",
                    it.name
                ));
            }
        }
        let mut fields: Vec<&str> =
            self.exceptions.iter().chain(&items).flat_map(|i| i.entries.iter().map(|e| e.field.as_str())).collect();
        fields.sort_unstable();
        fields.dedup();
        if fields.len() > MAX_EXCEPTION_FIELDS {
            return Err(format!(
                "the exception items read {} fields; at most {MAX_EXCEPTION_FIELDS} are allowed",
                fields.len()
            ));
        }
        self.exceptions.extend(items);
        Ok(())
    }

    /// Every exception item in force: `exceptions` (and `exceptions_file`)
    /// in order, then one item per non-empty `trusted_*` list (two for
    /// `trusted_hashes`), named as in [`SHORTCUT_ITEM_NAMES`]. Values are
    /// checked by [`Config::from_json`] and [`Config::set_str`]; ones set
    /// directly on the struct are not (an invalid address matches nothing).
    pub fn exception_items(&self) -> Vec<ExceptionItem> {
        use Operator::{IsInCidr, IsOneOf, Matches};
        let mut out = self.exceptions.clone();
        let shortcuts: [(&str, &str, Operator, &[String]); 6] = [
            ("trusted_destination_cidrs", "destination.ip", IsInCidr, &self.trusted_destination_cidrs),
            ("trusted_executables", "process.executable", Matches, &self.trusted_executables),
            ("trusted_hashes", "process.hash.sha256", IsOneOf, &self.trusted_hashes),
            ("trusted_parent_hashes", "process.parent.hash.sha256", IsOneOf, &self.trusted_hashes),
            ("trusted_process_names", "process.name", IsOneOf, &self.trusted_process_names),
            ("trusted_command_lines", "process.command_line", Matches, &self.trusted_command_lines),
        ];
        for (name, field, operator, values) in shortcuts {
            if values.is_empty() {
                continue;
            }
            let key = if name == "trusted_parent_hashes" { "trusted_hashes" } else { name };
            out.push(ExceptionItem {
                name: name.to_string(),
                description: format!("generated from the `{key}` config key"),
                entries: vec![Entry { field: field.to_string(), operator, values: values.to_vec() }],
                rule_ids: Vec::new(),
            });
        }
        out
    }

    /// Load the rule this config names.
    pub fn load_rule(&self) -> Result<Rule, LoadError> {
        match &self.rule_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| LoadError::Config(ConfigError {
                    key: Some("rule_file".into()),
                    message: format!("cannot read {path}: {e}"),
                }))?;
                if crate::config::rule_file::is_toml_path(path) {
                    return crate::config::rule_file::load_toml(&text, path).map_err(LoadError::Rule);
                }
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

    /// Whether the config names a pack (`rules` or `rules_dir`).
    pub fn is_pack(&self) -> bool {
        !self.rules.is_empty() || self.rules_dir.is_some()
    }

    /// The rules to run: those of `rules` and `rules_dir` (a pack), else the
    /// one rule of `rule` / `rule_file`. A rule that does not load is an
    /// error naming every such rule with its reason, unless
    /// `skip_broken_rules` (then they are returned in
    /// [`LoadedRules::skipped`]).
    pub fn load_rules(&self) -> Result<LoadedRules, LoadError> {
        if !self.is_pack() {
            return Ok(LoadedRules { rules: vec![self.load_rule()?], skipped: Vec::new() });
        }
        let mut rules = Vec::new();
        let mut skipped = Vec::new();
        let one = |name: &str| -> Result<Rule, String> {
            if crate::config::rule::BUILTIN_NAMES.contains(&name) {
                return Rule::builtin(name).map_err(|e| e.to_string());
            }
            let c = Config { rule_file: Some(name.to_string()), ..Config::default() };
            c.load_rule().map_err(|e| e.to_string())
        };
        for name in &self.rules {
            match one(name) {
                Ok(r) => rules.push(r),
                Err(e) => skipped.push((name.clone(), e)),
            }
        }
        let key = if self.rules_dir.is_some() { "rules_dir" } else { "rules" };
        if let Some(dir) = &self.rules_dir {
            let mut paths: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| LoadError::Config(ConfigError { key: Some(key.into()), message: format!("cannot read {dir}: {e}") }))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| matches!(p.extension().and_then(|x| x.to_str()), Some("toml" | "eql")))
                .collect();
            paths.sort();
            for p in paths {
                let shown = p.display().to_string();
                match one(&shown) {
                    Ok(r) => rules.push(r),
                    Err(e) => skipped.push((shown, e)),
                }
            }
        }
        if !skipped.is_empty() && !self.skip_broken_rules {
            let list: Vec<String> = skipped.iter().map(|(n, e)| format!("  {n}: {e}")).collect();
            return Err(LoadError::Config(ConfigError {
                key: Some(key.into()),
                message: format!(
                    "{} of {} rules do not load (set skip_broken_rules to run the others):\n{}",
                    skipped.len(),
                    skipped.len() + rules.len(),
                    list.join("\n")
                ),
            }));
        }
        if rules.is_empty() {
            return Err(LoadError::Config(ConfigError { key: Some(key.into()), message: NO_RULE.into() }));
        }
        Ok(LoadedRules { rules, skipped })
    }

    /// docs/configuration.md's table of keys, generated from [`KEYS`].
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
        KeyType::Array => "an array",
        KeyType::Object => "a JSON object",
    }
}

/// The text form of an array key: a JSON array (or one JSON object for
/// `exceptions`), or comma-separated values for the `trusted_*` lists.
fn array_from_text(spec: &KeySpec, value: &str) -> Result<Vec<serde_json::Value>, ConfigError> {
    let bad = |m: String| ConfigError { key: Some(spec.key.into()), message: m };
    let t = value.trim();
    if t.starts_with('[') || t.starts_with('{') {
        return match serde_json::from_str::<serde_json::Value>(t) {
            Ok(serde_json::Value::Array(a)) => Ok(a),
            Ok(obj @ serde_json::Value::Object(_)) if spec.key == "exceptions" => Ok(vec![obj]),
            Ok(_) => Err(bad("expected a JSON array".into())),
            Err(e) => Err(bad(format!("not valid JSON: {e}"))),
        };
    }
    if spec.key == "exceptions" {
        return Err(bad("expected a JSON array of exception items (or one item object)".into()));
    }
    Ok(t.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| serde_json::Value::String(s.into())).collect())
}

/// Check (and normalise) one value of a `trusted_*` list.
fn check_trusted(key: &str, s: String) -> Result<String, String> {
    match key {
        "trusted_destination_cidrs" => match Cidr::parse(s.trim()) {
            Some(_) => Ok(s.trim().to_string()),
            None => Err(format!("\"{s}\" is not an IP address or CIDR block")),
        },
        "trusted_hashes" => {
            let h = s.trim().to_ascii_lowercase();
            if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(h)
            } else {
                Err(format!("\"{s}\" is not a SHA-256 hash (64 hexadecimal digits)"))
            }
        }
        _ => Ok(s),
    }
}

/// `N` followed by a unit (`ms`, `s`, `m`, `h`, `d`), as EQL's `maxspan`.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.bytes().take_while(|b| b.is_ascii_digit()).count();
    let (num, unit) = t.split_at(digits);
    let Some(factor) = crate::format::time::unit_ms(unit.trim()) else {
        return Err(format!("\"{s}\" is not a duration: a whole number and a unit, ms, s, m, h or d (e.g. 10s)"));
    };
    let n: u64 = num.parse().map_err(|_| format!("\"{s}\" is not a duration: a whole number comes first (e.g. 10s)"))?;
    n.checked_mul(factor).ok_or_else(|| format!("\"{s}\" is too large"))
}

fn spec(key: &str) -> Result<&'static KeySpec, ConfigError> {
    KEYS.iter().find(|k| k.key == key).ok_or_else(|| ConfigError {
        key: Some(key.to_string()),
        message: format!("unknown key; valid keys: {}", valid_keys()),
    })
}

/// Why a detector could not be built.
/// The rules of a config ([`Config::load_rules`]).
#[derive(Debug, Clone)]
pub struct LoadedRules {
    pub rules: Vec<Rule>,
    /// Rules that did not load, `(name, reason)` (with `skip_broken_rules`).
    pub skipped: Vec<(String, String)>,
}

/// [`Config::load_rules`]'s message for a pack without a rule.
pub const NO_RULE: &str = "no rule to run";

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
    fn durations() {
        assert_eq!(parse_duration_ms("5s"), Ok(5_000));
        assert_eq!(parse_duration_ms(" 1500ms "), Ok(1_500));
        assert_eq!(parse_duration_ms("2m"), Ok(120_000));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_duration_ms("1d"), Ok(86_400_000));
        assert_eq!(parse_duration_ms("0s"), Ok(0));
        for bad in ["", "5", "s", "1.5s", "-1s", "5 seconds", "5S", "99999999999999999999d"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn set_str_adds_to_array_keys_all_or_nothing() {
        let mut c = Config::default();
        let item = |n: &str| format!(r#"{{"name":"{n}","entries":[{{"field":"a","operator":"exists"}}]}}"#);
        c.set_str("exceptions", &format!("[{}]", item("a"))).unwrap();
        // The second item repeats a name: neither of the batch is added.
        assert!(c.set_str("exceptions", &format!("[{}, {}]", item("b"), item("a"))).is_err());
        assert_eq!(c.exceptions.len(), 1);
        c.set_str("trusted_destination_cidrs", "10.0.0.0/8,  ::1 ,").unwrap();
        assert_eq!(c.trusted_destination_cidrs, ["10.0.0.0/8", "::1"]);
        assert!(c.set_str("trusted_destination_cidrs", "10.0.0.0/8, nope").is_err());
        assert_eq!(c.trusted_destination_cidrs.len(), 2);
    }

    #[test]
    fn bad_rule_names_the_key() {
        let c = Config { rule: "nope".into(), ..Config::default() };
        assert!(c.load_rule().unwrap_err().to_string().contains("`rule`"));
    }
}
