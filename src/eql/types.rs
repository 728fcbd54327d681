//! Field types, as Elasticsearch indexed the fields.
//!
//! EQL compares a field's values the way the field was indexed: an `ip` field
//! as addresses (not strings), a `date` field as instants, `long`/`double`
//! fields as numbers, `keyword` fields as exact strings, `version` fields in
//! semantic-version order. A [`TypeMap`] answers "how would Elasticsearch have indexed
//! this field?". Its answers come from, in order of precedence:
//!
//! 1. **The user's own mapping** (highest): an Elasticsearch index mapping read
//!    with [`TypeMap::add_es_mapping`] (the body of `PUT /<index>/_mapping`, or
//!    the answer of `GET /<index>/_mapping`), the flat form of the project
//!    configuration read with [`TypeMap::add_simple`]
//!    (`{"my.field": "ip", "x": {"type": "keyword", "null_value": "NULL"}}`),
//!    or single fields set with [`TypeMap::set`]. Later entries replace earlier
//!    ones; user entries (types and aliases) override the ECS table.
//! 2. **The Elastic Common Schema** (built in, when the map was made with
//!    [`TypeMap::ecs`]): the type of each of ECS's 2,732 fields, from
//!    `generated/csv/fields.csv` of <https://github.com/elastic/ecs> at commit
//!    b85f7573f0b48c03fddf90dad06fc743876f1b33 (ECS 9.5.0-dev, Apache-2.0),
//!    generated into `ecs_types.rs` by `tools/gen_ecs_types.py`. These are
//!    the types Elastic Defend's `logs-endpoint.*` indices use.
//! 3. **Nothing** ([`TypeMap::get`] returns `None`): the field is unmapped.
//!    What Elasticsearch would then do is dynamic mapping, and that is the
//!    caller's business: an unknown field takes the type of its value (a JSON
//!    string compares as a keyword, a number as a number, `true` as a boolean).
//!
//! Field aliases (`"type": "alias"`) resolve one level, as in Elasticsearch:
//! an alias must point at a concrete field, never at another alias, and
//! [`TypeMap::get`] on an alias answers for its target.
//!
//! The Elasticsearch type names map to [`FieldType`] as follows: `keyword`,
//! `constant_keyword`, `wildcard` → `Keyword`; `text`, `match_only_text` →
//! `Text`; `ip` → `Ip`; `date`, `date_nanos` → `Date`; `long`, `integer`,
//! `short`, `byte`, `unsigned_long` → `Long`; `double`, `float`,
//! `half_float`, `scaled_float` → `Double`; `boolean` → `Boolean`;
//! `version` → `Version`; every other type (`object`, `nested`, `flattened`,
//! `geo_point`, …) → `Other`.

use std::collections::HashMap;
use std::fmt;

use serde_json::{Map, Value};

#[path = "ecs_types.rs"]
mod ecs_types;

use ecs_types::ECS_FIELDS;

/// The Elasticsearch field type that decides how a value compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// `keyword`, `constant_keyword`, `wildcard`: exact strings.
    Keyword,
    /// `text`, `match_only_text`: analysed text.
    Text,
    /// `ip`: IPv4 and IPv6 addresses.
    Ip,
    /// `date`, `date_nanos`: instants (epoch milliseconds).
    Date,
    /// `long`, `integer`, `short`, `byte`, `unsigned_long`.
    Long,
    /// `double`, `float`, `half_float`, `scaled_float`.
    Double,
    /// `boolean`.
    Boolean,
    /// `version`: semantic versions.
    Version,
    /// `object`, `nested`, `flattened`, `geo_point` and anything else.
    Other,
}

/// Every Elasticsearch field type name this module knows, with its
/// [`FieldType`]. `alias` is absent: it has no type of its own (the readers
/// handle it with its `path`).
const ES_TYPES: &[(&str, FieldType)] = &[
    ("keyword", FieldType::Keyword),
    ("constant_keyword", FieldType::Keyword),
    ("wildcard", FieldType::Keyword),
    ("text", FieldType::Text),
    ("match_only_text", FieldType::Text),
    ("ip", FieldType::Ip),
    ("date", FieldType::Date),
    ("date_nanos", FieldType::Date),
    ("long", FieldType::Long),
    ("integer", FieldType::Long),
    ("short", FieldType::Long),
    ("byte", FieldType::Long),
    ("unsigned_long", FieldType::Long),
    ("double", FieldType::Double),
    ("float", FieldType::Double),
    ("half_float", FieldType::Double),
    ("scaled_float", FieldType::Double),
    ("boolean", FieldType::Boolean),
    ("version", FieldType::Version),
    ("object", FieldType::Other),
    ("nested", FieldType::Other),
    ("flattened", FieldType::Other),
    ("passthrough", FieldType::Other),
    ("binary", FieldType::Other),
    ("geo_point", FieldType::Other),
    ("geo_shape", FieldType::Other),
    ("point", FieldType::Other),
    ("shape", FieldType::Other),
    ("integer_range", FieldType::Other),
    ("long_range", FieldType::Other),
    ("float_range", FieldType::Other),
    ("double_range", FieldType::Other),
    ("date_range", FieldType::Other),
    ("ip_range", FieldType::Other),
    ("completion", FieldType::Other),
    ("search_as_you_type", FieldType::Other),
    ("annotated_text", FieldType::Other),
    ("semantic_text", FieldType::Other),
    ("token_count", FieldType::Other),
    ("counted_keyword", FieldType::Other),
    ("icu_collation_keyword", FieldType::Other),
    ("murmur3", FieldType::Other),
    ("dense_vector", FieldType::Other),
    ("sparse_vector", FieldType::Other),
    ("rank_vectors", FieldType::Other),
    ("rank_feature", FieldType::Other),
    ("rank_features", FieldType::Other),
    ("histogram", FieldType::Other),
    ("aggregate_metric_double", FieldType::Other),
    ("percolator", FieldType::Other),
    ("join", FieldType::Other),
];

/// The placeholder of Elasticsearch's EQL test data (`data/*.mapping`): its
/// loader replaces it with one of `keyword`, `constant_keyword`, `wildcard`.
const RANDOM_KEYWORD_PLACEHOLDER: &str = "[runtime_random_keyword_type]";

impl FieldType {
    /// The type of an Elasticsearch field type name (`"ip"`, `"integer"`,
    /// `"match_only_text"`, …); `None` for a name that is not an
    /// Elasticsearch field type at all (names are case-sensitive, as in
    /// Elasticsearch). `alias` is not a type of its own: also `None`.
    pub fn from_es(name: &str) -> Option<FieldType> {
        ES_TYPES.iter().find(|(n, _)| *n == name).map(|&(_, ty)| ty)
    }

    /// A short lower-case name: the canonical Elasticsearch type of the class
    /// (`"keyword"`, `"text"`, `"ip"`, `"date"`, `"long"`, `"double"`,
    /// `"boolean"`, `"version"`), or `"other"`.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Keyword => "keyword",
            FieldType::Text => "text",
            FieldType::Ip => "ip",
            FieldType::Date => "date",
            FieldType::Long => "long",
            FieldType::Double => "double",
            FieldType::Boolean => "boolean",
            FieldType::Version => "version",
            FieldType::Other => "other",
        }
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is known of one field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldInfo {
    pub ty: FieldType,
    /// `null_value`: a JSON null (or absent value in an array) indexed as this.
    pub null_value: Option<serde_json::Value>,
    /// `ignore_above`: longer strings are not indexed (absent for queries).
    pub ignore_above: Option<usize>,
    /// `format` of a `date` field (Elasticsearch's names and Java patterns,
    /// `||`-separated); `None`: `strict_date_optional_time||epoch_millis`.
    pub format: Option<String>,
}

impl FieldInfo {
    fn plain(ty: FieldType) -> FieldInfo {
        FieldInfo {
            ty,
            null_value: None,
            ignore_above: None,
            format: None,
        }
    }
}

/// Field name → type: the user's mappings, then (for [`TypeMap::ecs`]) the
/// built-in ECS table. [`Default`] is [`TypeMap::empty`].
#[derive(Debug, Clone, Default)]
pub struct TypeMap {
    /// User-mapped concrete fields. A name is never both here and in `aliases`.
    fields: HashMap<String, FieldInfo>,
    /// User-mapped aliases: alias path → target path.
    aliases: HashMap<String, String>,
    /// Whether lookups fall back to [`ECS_FIELDS`].
    use_ecs: bool,
}

/// One definition read from a user mapping, before it is applied.
#[derive(Debug)]
enum Entry {
    Field(FieldInfo),
    Alias(String),
}

/// The ECS type of `field`, by binary search of the built-in table.
fn ecs_type(field: &str) -> Option<FieldType> {
    ECS_FIELDS
        .binary_search_by(|(name, _)| (*name).cmp(field))
        .ok()
        .map(|i| ECS_FIELDS[i].1)
}

impl TypeMap {
    /// A map that knows no field at all.
    pub fn empty() -> TypeMap {
        TypeMap::default()
    }

    /// A map that knows the ECS fields (built in; nothing is copied). User
    /// entries added later override them.
    pub fn ecs() -> TypeMap {
        TypeMap {
            use_ecs: true,
            ..TypeMap::default()
        }
    }

    /// Set one field's type (no `null_value`, no `ignore_above`), replacing
    /// whatever the map knew of the name, alias included.
    pub fn set(&mut self, field: &str, ty: FieldType) {
        self.aliases.remove(field);
        self.fields.insert(field.to_string(), FieldInfo::plain(ty));
    }

    /// What is known of `field`: its own entry, or its alias target's; user
    /// entries first, then ECS. `None` when the field is unmapped.
    pub fn get(&self, field: &str) -> Option<FieldInfo> {
        match self.aliases.get(field) {
            Some(target) => self.concrete(target),
            None => self.concrete(field),
        }
    }

    /// Whether `field` is mapped as `ip` (see [`TypeMap::get`]): where a
    /// value compares as an address.
    pub fn is_ip(&self, field: &str) -> bool {
        self.get(field).is_some_and(|i| i.ty == FieldType::Ip)
    }

    /// Whether `field` is mapped (by the user or by ECS), directly or as an
    /// alias of a mapped field.
    pub fn is_known(&self, field: &str) -> bool {
        match self.aliases.get(field) {
            Some(target) => self.is_concrete(target),
            None => self.is_concrete(field),
        }
    }

    /// The path an alias points at; any other name unchanged. One level only,
    /// as in Elasticsearch (an alias cannot point at an alias).
    pub fn resolve_alias<'a>(&'a self, field: &'a str) -> &'a str {
        self.aliases.get(field).map(String::as_str).unwrap_or(field)
    }

    /// Read an Elasticsearch index mapping and add its fields.
    ///
    /// Accepted shapes: `{"properties": {...}, "runtime": {...}, ...}` (a
    /// mapping body); the same wrapped in `{"mappings": {...}}`; the answer of
    /// `GET /<index>/_mapping`, `{"<index>": {"mappings": {...}}, ...}`; and
    /// the pre-7.0 typed form `{"mappings": {"_doc": {"properties": ...}}}`.
    ///
    /// Nested `properties` make dotted paths (objects are recorded as
    /// `Other`); `"type": "alias"` with `"path"` makes an alias; `null_value`
    /// and `ignore_above` are kept; multi-fields under `"fields"` become
    /// `<path>.<name>`; `runtime` fields (composite ones as
    /// `<name>.<sub>`) shadow indexed ones, as in Elasticsearch. The EQL test
    /// data's placeholder `"[runtime_random_keyword_type]"` means `Keyword`. A
    /// type name this module does not know (a newer Elasticsearch's, a
    /// plugin's) is `Other`: the mapping came from a cluster that accepted it.
    ///
    /// On error (naming the field path and the problem) nothing is added.
    pub fn add_es_mapping(&mut self, mapping: &Value) -> Result<(), String> {
        let mut staged = Vec::new();
        read_mapping_root(mapping, &mut staged)?;
        self.commit(staged)
    }

    /// Read the flat form of the project configuration: field path → type
    /// name, or → `{"type": ..., "null_value": ..., "ignore_above": ...}`, or
    /// → `{"type": "alias", "path": "<target>"}`. For example
    /// `{"my.field": "ip", "app.version": "version",
    ///   "x": {"type": "keyword", "null_value": "NULL"}}`.
    ///
    /// Type names are Elasticsearch's (see [`FieldType::from_es`]); an
    /// unknown one is an error listing the accepted ones. On error nothing is
    /// added.
    pub fn add_simple(&mut self, types: &Map<String, Value>) -> Result<(), String> {
        let mut staged = Vec::new();
        for (field, spec) in types {
            if field.is_empty() {
                return Err("field []: empty field name".to_string());
            }
            let entry = match spec {
                Value::String(name) => {
                    if name == "alias" {
                        return Err(format!(
                            "field [{field}]: an alias needs its target: \
                             {{\"type\": \"alias\", \"path\": \"<field>\"}}"
                        ));
                    }
                    Entry::Field(FieldInfo::plain(strict_type(field, name)?))
                }
                Value::Object(spec) => read_simple_object(field, spec)?,
                other => {
                    return Err(format!(
                        "field [{field}]: expected a type name or an object with \"type\", got {}",
                        describe(other)
                    ))
                }
            };
            staged.push((field.clone(), entry));
        }
        self.commit(staged)
    }

    /// A concrete (non-alias) field's info: user entry, else ECS.
    fn concrete(&self, field: &str) -> Option<FieldInfo> {
        if self.aliases.contains_key(field) {
            return None;
        }
        if let Some(info) = self.fields.get(field) {
            return Some(info.clone());
        }
        if self.use_ecs {
            return ecs_type(field).map(FieldInfo::plain);
        }
        None
    }

    fn is_concrete(&self, field: &str) -> bool {
        !self.aliases.contains_key(field)
            && (self.fields.contains_key(field) || (self.use_ecs && ecs_type(field).is_some()))
    }

    /// Check the aliases of `staged` against the map as it will be, then apply
    /// everything (later entries of `staged` win over earlier ones).
    fn commit(&mut self, staged: Vec<(String, Entry)>) -> Result<(), String> {
        let mut last: HashMap<&str, &Entry> = HashMap::with_capacity(staged.len());
        for (path, entry) in &staged {
            last.insert(path.as_str(), entry);
        }
        let is_alias_after = |name: &str| match last.get(name) {
            Some(Entry::Alias(_)) => true,
            Some(Entry::Field(_)) => false,
            None => self.aliases.contains_key(name),
        };
        let is_field_after = |name: &str| match last.get(name) {
            Some(Entry::Field(_)) => true,
            Some(Entry::Alias(_)) => false,
            None => self.is_concrete(name),
        };
        for (path, entry) in &staged {
            // Only the entry that will stay counts.
            if !std::ptr::eq(last[path.as_str()], entry) {
                continue;
            }
            let Entry::Alias(target) = entry else {
                continue;
            };
            if target == path {
                return Err(format!("field [{path}]: an alias cannot refer to itself"));
            }
            if is_alias_after(target) {
                return Err(format!(
                    "field [{path}]: invalid path [{target}]: an alias cannot refer to another alias"
                ));
            }
            if !is_field_after(target) {
                return Err(format!(
                    "field [{path}]: invalid path [{target}]: an alias must refer to an existing field"
                ));
            }
        }
        // An existing alias must not lose its target to a new alias.
        for (path, entry) in &staged {
            if !matches!(entry, Entry::Alias(_)) {
                continue;
            }
            let mut referrers: Vec<&str> = self
                .aliases
                .iter()
                .filter(|(alias, target)| {
                    target.as_str() == path && !last.contains_key(alias.as_str())
                })
                .map(|(alias, _)| alias.as_str())
                .collect();
            if !referrers.is_empty() {
                referrers.sort_unstable();
                return Err(format!(
                    "field [{path}]: cannot become an alias: alias [{}] refers to it",
                    referrers[0]
                ));
            }
        }
        for (path, entry) in staged {
            match entry {
                Entry::Field(mut info) => {
                    self.aliases.remove(&path);
                    // Several indices searched together may format one date
                    // field differently: each value parses with one of them.
                    if let (Some(old), Some(new)) = (self.fields.get(&path), info.format.as_ref()) {
                        if let (FieldType::Date, Some(of)) = (old.ty, old.format.as_ref()) {
                            if info.ty == FieldType::Date && !of.split("||").any(|x| x == new) {
                                info.format = Some(format!("{of}||{new}"));
                            }
                        }
                    }
                    self.fields.insert(path, info);
                }
                Entry::Alias(target) => {
                    self.fields.remove(&path);
                    self.aliases.insert(path, target);
                }
            }
        }
        Ok(())
    }
}

/// Keys of a mapping body that carry no field types.
const MAPPING_ROOT_PARAMS: &[&str] = &[
    "dynamic",
    "dynamic_templates",
    "dynamic_date_formats",
    "date_detection",
    "numeric_detection",
    "enabled",
    "subobjects",
];

fn read_mapping_root(v: &Value, staged: &mut Vec<(String, Entry)>) -> Result<(), String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("mapping: expected a JSON object, got {}", describe(v)))?;
    if let Some(body) = obj.get("mappings") {
        return read_mapping_body(body, staged);
    }
    let is_index_answer = !obj.is_empty()
        && !obj.contains_key("properties")
        && obj.values().all(|x| x.get("mappings").is_some());
    if is_index_answer {
        for x in obj.values() {
            read_mapping_body(&x["mappings"], staged)?;
        }
        return Ok(());
    }
    read_mapping_body(v, staged)
}

fn read_mapping_body(v: &Value, staged: &mut Vec<(String, Entry)>) -> Result<(), String> {
    let obj = v.as_object().ok_or_else(|| {
        format!(
            "mapping: \"mappings\" must be an object, got {}",
            describe(v)
        )
    })?;
    // Pre-7.0 typed mappings: {"_doc": {"properties": ...}}.
    if !obj.contains_key("properties") && !obj.contains_key("runtime") && obj.len() == 1 {
        let (_, inner) = obj.iter().next().expect("one entry");
        if inner.get("properties").is_some() {
            return read_mapping_body(inner, staged);
        }
    }
    for key in obj.keys() {
        let known = key == "properties"
            || key == "runtime"
            || key.starts_with('_')
            || MAPPING_ROOT_PARAMS.contains(&key.as_str());
        if !known {
            return Err(format!(
                "mapping: unexpected key [{key}] at the root: field definitions go under \
                 \"properties\" (use the flat form for {{\"<field>\": \"<type>\"}})"
            ));
        }
    }
    if let Some(props) = obj.get("properties") {
        read_properties(props, "", staged)?;
    }
    if let Some(runtime) = obj.get("runtime") {
        read_runtime(runtime, staged)?;
    }
    Ok(())
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn read_properties(
    v: &Value,
    prefix: &str,
    staged: &mut Vec<(String, Entry)>,
) -> Result<(), String> {
    let obj = v.as_object().ok_or_else(|| {
        let owner = if prefix.is_empty() {
            "mapping".to_string()
        } else {
            format!("field [{prefix}]")
        };
        format!(
            "{owner}: \"properties\" must be an object, got {}",
            describe(v)
        )
    })?;
    for (name, def) in obj {
        if name.is_empty() {
            return Err(format!("field [{}]: empty field name", join(prefix, "")));
        }
        read_field(&join(prefix, name), def, false, staged)?;
    }
    Ok(())
}

/// One field definition of `properties` (or, with `multi`, of `fields`).
fn read_field(
    path: &str,
    def: &Value,
    multi: bool,
    staged: &mut Vec<(String, Entry)>,
) -> Result<(), String> {
    let d = def.as_object().ok_or_else(|| {
        format!(
            "field [{path}]: expected an object definition, got {}",
            describe(def)
        )
    })?;
    let type_name = match d.get("type") {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(other) => {
            return Err(format!(
                "field [{path}]: \"type\" must be a string, got {}",
                describe(other)
            ))
        }
    };
    match type_name {
        Some("alias") => {
            if multi {
                return Err(format!("field [{path}]: a multi-field cannot be an alias"));
            }
            let target = match d.get("path") {
                Some(Value::String(t)) if !t.is_empty() => t.clone(),
                Some(other) => {
                    return Err(format!(
                        "field [{path}]: alias \"path\" must be a field path, got {}",
                        describe(other)
                    ))
                }
                None => return Err(format!("field [{path}]: an alias needs a \"path\"")),
            };
            staged.push((path.to_string(), Entry::Alias(target)));
        }
        None | Some("object") | Some("nested") => {
            if multi && type_name.is_none() {
                return Err(format!(
                    "field [{path}]: no type specified for the multi-field"
                ));
            }
            if multi {
                return Err(format!(
                    "field [{path}]: a multi-field cannot be of type [{}]",
                    type_name.unwrap()
                ));
            }
            staged.push((
                path.to_string(),
                Entry::Field(FieldInfo::plain(FieldType::Other)),
            ));
            if let Some(props) = d.get("properties") {
                read_properties(props, path, staged)?;
            }
        }
        Some(name) => {
            let ty = lenient_type(path, name)?;
            if d.contains_key("properties") {
                return Err(format!(
                    "field [{path}]: a field of type [{name}] cannot have \"properties\""
                ));
            }
            let info = FieldInfo {
                ty,
                null_value: match d.get("null_value") {
                    Some(v) => null_value(path, name, ty, v)?,
                    None => None,
                },
                ignore_above: match d.get("ignore_above") {
                    Some(v) => Some(ignore_above(path, name, ty, v)?),
                    None => None,
                },
                format: match (ty, d.get("format")) {
                    (FieldType::Date, Some(Value::String(f))) => Some(f.clone()),
                    _ => None,
                },
            };
            staged.push((path.to_string(), Entry::Field(info)));
            if let Some(fields) = d.get("fields") {
                let subs = fields.as_object().ok_or_else(|| {
                    format!(
                        "field [{path}]: multi-fields \"fields\" must be an object, got {}",
                        describe(fields)
                    )
                })?;
                for (sub, sub_def) in subs {
                    if sub.is_empty() {
                        return Err(format!("field [{path}]: empty multi-field name"));
                    }
                    read_field(&join(path, sub), sub_def, true, staged)?;
                }
            }
        }
    }
    Ok(())
}

/// The `runtime` section: name → `{"type": ...}`; composite fields contribute
/// `<name>.<sub>` for each of their `fields`.
fn read_runtime(v: &Value, staged: &mut Vec<(String, Entry)>) -> Result<(), String> {
    let obj = v.as_object().ok_or_else(|| {
        format!(
            "mapping: \"runtime\" must be an object, got {}",
            describe(v)
        )
    })?;
    for (name, def) in obj {
        if name.is_empty() {
            return Err("runtime field []: empty field name".to_string());
        }
        let ty_name = runtime_type(name, def)?;
        if ty_name == "composite" {
            let subs = def.get("fields").and_then(Value::as_object).ok_or_else(|| {
                format!("runtime field [{name}]: a composite runtime field needs an object \"fields\"")
            })?;
            for (sub, sub_def) in subs {
                let path = join(name, sub);
                let ty = lenient_type(&path, runtime_type(&path, sub_def)?)?;
                staged.push((path, Entry::Field(FieldInfo::plain(ty))));
            }
        } else {
            let ty = lenient_type(name, ty_name)?;
            staged.push((name.clone(), Entry::Field(FieldInfo::plain(ty))));
        }
    }
    Ok(())
}

fn runtime_type<'v>(path: &str, def: &'v Value) -> Result<&'v str, String> {
    match def.get("type") {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!(
            "runtime field [{path}]: \"type\" must be a string, got {}",
            describe(other)
        )),
        None => Err(format!("runtime field [{path}]: no \"type\"")),
    }
}

/// A type name from an index mapping: known names, the test data's keyword
/// placeholder, and any other plain name as `Other`.
fn lenient_type(path: &str, name: &str) -> Result<FieldType, String> {
    if let Some(ty) = FieldType::from_es(name) {
        return Ok(ty);
    }
    if name == RANDOM_KEYWORD_PLACEHOLDER {
        return Ok(FieldType::Keyword);
    }
    let plain = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if plain {
        Ok(FieldType::Other)
    } else {
        Err(format!("field [{path}]: [{name}] is not a field type"))
    }
}

/// A type name from the flat configuration form: Elasticsearch names only.
fn strict_type(path: &str, name: &str) -> Result<FieldType, String> {
    FieldType::from_es(name).ok_or_else(|| {
        let accepted: Vec<&str> = ES_TYPES.iter().map(|(n, _)| *n).collect();
        format!(
            "field [{path}]: unknown type [{name}]; accepted: {}, and alias (with \"path\")",
            accepted.join(", ")
        )
    })
}

fn read_simple_object(field: &str, spec: &Map<String, Value>) -> Result<Entry, String> {
    for key in spec.keys() {
        if !matches!(
            key.as_str(),
            "type" | "null_value" | "ignore_above" | "path" | "format"
        ) {
            return Err(format!(
                "field [{field}]: unknown key [{key}]; expected type, null_value, ignore_above, format or path"
            ));
        }
    }
    let name = match spec.get("type") {
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(format!(
                "field [{field}]: \"type\" must be a string, got {}",
                describe(other)
            ))
        }
        None => return Err(format!("field [{field}]: no \"type\"")),
    };
    if name == "alias" {
        if spec.contains_key("null_value") || spec.contains_key("ignore_above") {
            return Err(format!("field [{field}]: an alias takes only \"path\""));
        }
        return match spec.get("path") {
            Some(Value::String(t)) if !t.is_empty() => Ok(Entry::Alias(t.clone())),
            Some(other) => Err(format!(
                "field [{field}]: alias \"path\" must be a field path, got {}",
                describe(other)
            )),
            None => Err(format!("field [{field}]: an alias needs a \"path\"")),
        };
    }
    if spec.contains_key("path") {
        return Err(format!(
            "field [{field}]: \"path\" is only for aliases, not type [{name}]"
        ));
    }
    let ty = strict_type(field, name)?;
    Ok(Entry::Field(FieldInfo {
        ty,
        null_value: match spec.get("null_value") {
            Some(v) => null_value(field, name, ty, v)?,
            None => None,
        },
        ignore_above: match spec.get("ignore_above") {
            Some(v) => Some(ignore_above(field, name, ty, v)?),
            None => None,
        },
        format: match (ty, spec.get("format")) {
            (FieldType::Date, Some(Value::String(f))) => Some(f.clone()),
            _ => None,
        },
    }))
}

/// A `null_value` parameter, checked against the field's type (JSON `null`
/// means none).
fn null_value(
    path: &str,
    type_name: &str,
    ty: FieldType,
    v: &Value,
) -> Result<Option<Value>, String> {
    let bad = |what: &str| format!("field [{path}]: null_value {} {what}", describe(v));
    match v {
        Value::Null => return Ok(None),
        Value::Array(_) | Value::Object(_) => return Err(bad("is not a single value")),
        _ => {}
    }
    match ty {
        FieldType::Text => {
            return Err(format!(
                "field [{path}]: null_value is not supported for type [{type_name}]"
            ));
        }
        FieldType::Ip => {
            let ok = v
                .as_str()
                .is_some_and(|s| s.parse::<std::net::IpAddr>().is_ok());
            if !ok {
                return Err(bad("is not an IP address"));
            }
        }
        FieldType::Long | FieldType::Double => {
            let ok = v.is_number() || v.as_str().is_some_and(|s| s.trim().parse::<f64>().is_ok());
            if !ok {
                return Err(bad("is not a number"));
            }
        }
        FieldType::Boolean => {
            let ok = v.is_boolean() || matches!(v.as_str(), Some("true" | "false"));
            if !ok {
                return Err(bad("is not a boolean"));
            }
        }
        FieldType::Date => {
            if !(v.is_string() || v.is_number()) {
                return Err(bad("is not a date"));
            }
        }
        FieldType::Keyword | FieldType::Version | FieldType::Other => {}
    }
    Ok(Some(v.clone()))
}

/// An `ignore_above` parameter: a non-negative integer (or a string of one),
/// on a string-like type.
fn ignore_above(path: &str, type_name: &str, ty: FieldType, v: &Value) -> Result<usize, String> {
    if !matches!(
        ty,
        FieldType::Keyword | FieldType::Version | FieldType::Other
    ) {
        return Err(format!(
            "field [{path}]: ignore_above is not supported for type [{type_name}]"
        ));
    }
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    n.and_then(|n| usize::try_from(n).ok()).ok_or_else(|| {
        format!(
            "field [{path}]: ignore_above must be a non-negative integer, got {}",
            describe(v)
        )
    })
}

/// A short description of a JSON value for error messages.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) => "an array".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;

    fn shared(rel: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../shared")
            .join(rel)
    }

    fn ty(map: &TypeMap, field: &str) -> Option<FieldType> {
        map.get(field).map(|i| i.ty)
    }

    fn mapped(mapping: Value) -> TypeMap {
        let mut m = TypeMap::empty();
        m.add_es_mapping(&mapping).unwrap();
        m
    }

    fn mapping_err(mapping: Value) -> String {
        TypeMap::empty().add_es_mapping(&mapping).unwrap_err()
    }

    fn simple_err(types: Value) -> String {
        TypeMap::empty()
            .add_simple(types.as_object().unwrap())
            .unwrap_err()
    }

    // ---- FieldType ------------------------------------------------------

    #[test]
    fn from_es_maps_every_class() {
        let cases = [
            ("keyword", FieldType::Keyword),
            ("constant_keyword", FieldType::Keyword),
            ("wildcard", FieldType::Keyword),
            ("text", FieldType::Text),
            ("match_only_text", FieldType::Text),
            ("ip", FieldType::Ip),
            ("date", FieldType::Date),
            ("date_nanos", FieldType::Date),
            ("long", FieldType::Long),
            ("integer", FieldType::Long),
            ("short", FieldType::Long),
            ("byte", FieldType::Long),
            ("unsigned_long", FieldType::Long),
            ("double", FieldType::Double),
            ("float", FieldType::Double),
            ("half_float", FieldType::Double),
            ("scaled_float", FieldType::Double),
            ("boolean", FieldType::Boolean),
            ("version", FieldType::Version),
            ("object", FieldType::Other),
            ("nested", FieldType::Other),
            ("flattened", FieldType::Other),
            ("geo_point", FieldType::Other),
        ];
        for (name, want) in cases {
            assert_eq!(FieldType::from_es(name), Some(want), "{name}");
        }
        for name in [
            "",
            "Keyword",
            "IP",
            "string",
            "alias",
            "[runtime_random_keyword_type]",
            "keyword ",
        ] {
            assert_eq!(FieldType::from_es(name), None, "{name:?}");
        }
    }

    #[test]
    fn as_str_names_round_trip() {
        let all = [
            FieldType::Keyword,
            FieldType::Text,
            FieldType::Ip,
            FieldType::Date,
            FieldType::Long,
            FieldType::Double,
            FieldType::Boolean,
            FieldType::Version,
        ];
        for t in all {
            assert_eq!(FieldType::from_es(t.as_str()), Some(t));
            assert_eq!(t.to_string(), t.as_str());
        }
        assert_eq!(FieldType::Other.as_str(), "other");
        assert_eq!(FieldType::from_es("other"), None);
    }

    // ---- ECS table ------------------------------------------------------

    #[test]
    fn ecs_table_is_sorted_and_unique() {
        assert!(ECS_FIELDS.len() > 2000, "{}", ECS_FIELDS.len());
        for w in ECS_FIELDS.windows(2) {
            assert!(
                w[0].0 < w[1].0,
                "not strictly sorted: {:?} then {:?}",
                w[0].0,
                w[1].0
            );
        }
        for (name, _) in ECS_FIELDS {
            assert_eq!(
                ecs_type(name),
                ECS_FIELDS.iter().find(|(n, _)| n == name).map(|e| e.1)
            );
        }
    }

    #[test]
    fn ecs_table_matches_tsv() {
        let path = shared("ecs/fields.tsv");
        let Ok(text) = std::fs::read_to_string(&path) else {
            println!("skipped: ECS table not present ({})", path.display());
            return;
        };
        let mut lines = text.lines();
        assert_eq!(
            lines
                .next()
                .map(|h| h.split('\t').take(2).collect::<Vec<_>>()),
            Some(vec!["field", "type"])
        );
        let mut rows: Vec<(&str, &str)> = lines
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let mut cols = l.split('\t');
                (cols.next().unwrap(), cols.next().expect("type column"))
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(b.0));
        assert_eq!(rows.len(), ECS_FIELDS.len(), "field count");
        let unmapped = ["object", "nested", "flattened", "geo_point"];
        for (i, ((field, es_type), (name, ty))) in rows.iter().zip(ECS_FIELDS).enumerate() {
            assert_eq!(field, name, "line {i} of the sorted table");
            let want = FieldType::from_es(es_type).unwrap_or(FieldType::Other);
            assert_eq!(*ty, want, "{field}: {es_type}");
            assert!(
                FieldType::from_es(es_type).is_some() || unmapped.contains(es_type),
                "{es_type}"
            );
        }
    }

    #[test]
    fn ecs_lookups() {
        let m = TypeMap::ecs();
        assert_eq!(ty(&m, "@timestamp"), Some(FieldType::Date));
        assert_eq!(ty(&m, "source.ip"), Some(FieldType::Ip));
        assert_eq!(ty(&m, "destination.ip"), Some(FieldType::Ip));
        assert_eq!(ty(&m, "destination.port"), Some(FieldType::Long));
        assert_eq!(ty(&m, "process.pid"), Some(FieldType::Long));
        assert_eq!(ty(&m, "process.name"), Some(FieldType::Keyword));
        assert_eq!(ty(&m, "process.name.text"), Some(FieldType::Text));
        assert_eq!(ty(&m, "process.command_line"), Some(FieldType::Keyword));
        assert_eq!(ty(&m, "message"), Some(FieldType::Text));
        assert_eq!(ty(&m, "event.category"), Some(FieldType::Keyword));
        assert_eq!(ty(&m, "labels"), Some(FieldType::Other));
        assert_eq!(ty(&m, "source.geo.location"), Some(FieldType::Other));
        assert_eq!(ty(&m, "process.io.bytes_skipped"), Some(FieldType::Other));
        assert_eq!(
            m.get("process.pid"),
            Some(FieldInfo::plain(FieldType::Long))
        );
        assert_eq!(m.get("no.such.field"), None);
        assert_eq!(m.get(""), None);
        assert!(m.is_known("host.ip"));
        assert!(!m.is_known("host.ipx"));
        assert_eq!(m.resolve_alias("process.name"), "process.name");
    }

    #[test]
    fn empty_and_default_know_nothing() {
        for m in [TypeMap::empty(), TypeMap::default()] {
            assert_eq!(m.get("@timestamp"), None);
            assert!(!m.is_known("source.ip"));
            assert_eq!(m.resolve_alias("source.ip"), "source.ip");
        }
    }

    // ---- set, overrides -------------------------------------------------

    #[test]
    fn set_adds_and_overrides_ecs() {
        let mut m = TypeMap::ecs();
        m.set("my.addr", FieldType::Ip);
        m.set("process.name", FieldType::Text);
        assert_eq!(ty(&m, "my.addr"), Some(FieldType::Ip));
        assert_eq!(ty(&m, "process.name"), Some(FieldType::Text));
        assert_eq!(
            ty(&m, "process.pid"),
            Some(FieldType::Long),
            "the rest of ECS stays"
        );
        // Clones are independent.
        let c = m.clone();
        m.set("my.addr", FieldType::Keyword);
        assert_eq!(ty(&c, "my.addr"), Some(FieldType::Ip));

        let mut e = TypeMap::empty();
        e.set("x", FieldType::Version);
        assert_eq!(e.get("x"), Some(FieldInfo::plain(FieldType::Version)));
        assert!(e.is_known("x"));
        assert!(!e.is_known("process.pid"));
    }

    #[test]
    fn set_replaces_an_alias() {
        let mut m = mapped(
            json!({"properties": {"a": {"type": "long"}, "b": {"type": "alias", "path": "a"}}}),
        );
        assert_eq!(m.resolve_alias("b"), "a");
        m.set("b", FieldType::Ip);
        assert_eq!(m.resolve_alias("b"), "b");
        assert_eq!(ty(&m, "b"), Some(FieldType::Ip));
    }

    #[test]
    fn mapping_overrides_ecs_and_keeps_the_rest() {
        let mut m = TypeMap::ecs();
        m.add_es_mapping(&json!({"properties": {
            "source": {"properties": {"ip": {"type": "keyword"}}},
            "event": {"properties": {"category": {"type": "alias", "path": "event_type"}}},
            "event_type": {"type": "keyword"}
        }}))
        .unwrap();
        assert_eq!(ty(&m, "source.ip"), Some(FieldType::Keyword));
        assert_eq!(ty(&m, "destination.ip"), Some(FieldType::Ip));
        assert_eq!(m.resolve_alias("event.category"), "event_type");
        assert_eq!(ty(&m, "event.category"), Some(FieldType::Keyword));
        // The mapped object `source` is Other, as ECS has no entry for it.
        assert_eq!(ty(&m, "source"), Some(FieldType::Other));
    }

    // ---- add_es_mapping -------------------------------------------------

    #[test]
    fn mapping_nested_properties_make_dotted_paths() {
        let m = mapped(json!({"properties": {
            "process": {"properties": {
                "pid": {"type": "long"},
                "parent": {"properties": {"name": {"type": "keyword"}}},
                "args": {"type": "nested", "properties": {"v": {"type": "wildcard"}}}
            }},
            "dotted.name": {"type": "ip"},
            "ts": {"type": "date_nanos"},
            "score": {"type": "half_float"},
            "ok": {"type": "boolean"},
            "tags": {"type": "flattened"},
            "empty": {}
        }}));
        assert_eq!(ty(&m, "process"), Some(FieldType::Other));
        assert_eq!(ty(&m, "process.pid"), Some(FieldType::Long));
        assert_eq!(ty(&m, "process.parent"), Some(FieldType::Other));
        assert_eq!(ty(&m, "process.parent.name"), Some(FieldType::Keyword));
        assert_eq!(ty(&m, "process.args"), Some(FieldType::Other));
        assert_eq!(ty(&m, "process.args.v"), Some(FieldType::Keyword));
        assert_eq!(ty(&m, "dotted.name"), Some(FieldType::Ip));
        assert_eq!(ty(&m, "ts"), Some(FieldType::Date));
        assert_eq!(ty(&m, "score"), Some(FieldType::Double));
        assert_eq!(ty(&m, "ok"), Some(FieldType::Boolean));
        assert_eq!(ty(&m, "tags"), Some(FieldType::Other));
        assert_eq!(ty(&m, "empty"), Some(FieldType::Other));
        assert_eq!(ty(&m, "pid"), None);
    }

    #[test]
    fn mapping_wrappers() {
        let body = json!({"properties": {"a": {"type": "ip"}}});
        for wrapped in [
            body.clone(),
            json!({"mappings": body.clone()}),
            json!({"my-index": {"mappings": body.clone()}}),
            json!({"mappings": {"_doc": body.clone()}}),
            json!({"dynamic": "strict", "_source": {"enabled": true}, "_meta": {"x": 1}, "properties": {"a": {"type": "ip"}}}),
        ] {
            assert_eq!(
                ty(&mapped(wrapped.clone()), "a"),
                Some(FieldType::Ip),
                "{wrapped}"
            );
        }
        let two = mapped(json!({
            "i1": {"mappings": {"properties": {"a": {"type": "ip"}}}},
            "i2": {"mappings": {"properties": {"b": {"type": "long"}}}}
        }));
        assert_eq!(ty(&two, "a"), Some(FieldType::Ip));
        assert_eq!(ty(&two, "b"), Some(FieldType::Long));
        // An empty mapping adds nothing, and is no error.
        assert!(!mapped(json!({})).is_known("a"));
        assert!(!mapped(json!({"mappings": {}})).is_known("a"));
    }

    #[test]
    fn mapping_aliases() {
        let m = mapped(json!({"properties": {
            "event": {"properties": {
                "category": {"type": "alias", "path": "event_type"},
                "sequence": {"type": "alias", "path": "serial"}
            }},
            "event_type": {"type": "keyword", "null_value": "none"},
            "serial": {"type": "long"}
        }}));
        assert_eq!(m.resolve_alias("event.category"), "event_type");
        assert_eq!(m.resolve_alias("event.sequence"), "serial");
        assert_eq!(m.resolve_alias("serial"), "serial");
        assert_eq!(m.resolve_alias("nope"), "nope");
        // get() answers for the target, null_value included.
        assert_eq!(m.get("event.category"), m.get("event_type"));
        assert_eq!(
            m.get("event.category").unwrap().null_value,
            Some(json!("none"))
        );
        assert_eq!(ty(&m, "event.sequence"), Some(FieldType::Long));
        assert!(m.is_known("event.category"));
    }

    #[test]
    fn alias_to_an_ecs_field() {
        let mut m = TypeMap::ecs();
        m.add_es_mapping(&json!({"properties": {"src": {"type": "alias", "path": "source.ip"}}}))
            .unwrap();
        assert_eq!(m.resolve_alias("src"), "source.ip");
        assert_eq!(ty(&m, "src"), Some(FieldType::Ip));
        // Without ECS, the target does not exist.
        let e = mapping_err(json!({"properties": {"src": {"type": "alias", "path": "source.ip"}}}));
        assert!(e.contains("[src]") && e.contains("existing field"), "{e}");
    }

    #[test]
    fn alias_errors() {
        let e = mapping_err(json!({"properties": {
            "a": {"type": "keyword"},
            "b": {"type": "alias", "path": "a"},
            "c": {"type": "alias", "path": "b"}
        }}));
        assert!(
            e.contains("field [c]") && e.contains("another alias"),
            "{e}"
        );
        let e = mapping_err(json!({"properties": {"b": {"type": "alias", "path": "b"}}}));
        assert!(e.contains("field [b]") && e.contains("itself"), "{e}");
        let e = mapping_err(json!({"properties": {"x": {"properties": {"b": {"type": "alias"}}}}}));
        assert!(e.contains("field [x.b]") && e.contains("\"path\""), "{e}");
        let e = mapping_err(json!({"properties": {"b": {"type": "alias", "path": 3}}}));
        assert!(e.contains("field [b]") && e.contains("path"), "{e}");
        let e = mapping_err(json!({"properties": {"b": {"type": "alias", "path": "missing"}}}));
        assert!(e.contains("field [b]") && e.contains("[missing]"), "{e}");

        // An alias whose target a later mapping turns into an alias.
        let mut m = mapped(
            json!({"properties": {"a": {"type": "long"}, "b": {"type": "alias", "path": "a"}}}),
        );
        let e = m
            .add_es_mapping(&json!({"properties": {"c": {"type": "long"}, "a": {"type": "alias", "path": "c"}}}))
            .unwrap_err();
        assert!(e.contains("field [a]") && e.contains("alias [b]"), "{e}");
        // ... and nothing of that mapping was applied.
        assert_eq!(ty(&m, "b"), Some(FieldType::Long));
        assert!(!m.is_known("c"));
        // Re-pointing b in the same mapping makes it fine.
        m.add_es_mapping(&json!({"properties": {
            "c": {"type": "long"}, "a": {"type": "alias", "path": "c"}, "b": {"type": "ip"}
        }}))
        .unwrap();
        assert_eq!(m.resolve_alias("a"), "c");
        assert_eq!(ty(&m, "b"), Some(FieldType::Ip));
    }

    #[test]
    fn mapping_null_value_and_ignore_above() {
        let m = mapped(json!({"properties": {
            "k": {"type": "keyword", "null_value": "NULL", "ignore_above": 256},
            "n": {"type": "long", "null_value": -1},
            "ns": {"type": "integer", "null_value": "7"},
            "i": {"type": "ip", "null_value": "::1"},
            "b": {"type": "boolean", "null_value": false},
            "d": {"type": "date", "null_value": "2020-01-01"},
            "z": {"type": "keyword", "null_value": null},
            "w": {"type": "wildcard", "ignore_above": "100"}
        }}));
        let k = m.get("k").unwrap();
        assert_eq!(
            k,
            FieldInfo {
                ty: FieldType::Keyword,
                null_value: Some(json!("NULL")),
                ignore_above: Some(256),
                format: None
            }
        );
        assert_eq!(m.get("n").unwrap().null_value, Some(json!(-1)));
        assert_eq!(m.get("ns").unwrap().null_value, Some(json!("7")));
        assert_eq!(m.get("i").unwrap().null_value, Some(json!("::1")));
        assert_eq!(m.get("b").unwrap().null_value, Some(json!(false)));
        assert_eq!(m.get("d").unwrap().null_value, Some(json!("2020-01-01")));
        assert_eq!(m.get("z").unwrap().null_value, None);
        assert_eq!(m.get("w").unwrap().ignore_above, Some(100));
    }

    #[test]
    fn mapping_parameter_errors() {
        let cases = [
            (
                json!({"k": {"type": "keyword", "ignore_above": -1}}),
                "[k]",
                "non-negative integer",
            ),
            (
                json!({"k": {"type": "keyword", "ignore_above": "many"}}),
                "[k]",
                "non-negative integer",
            ),
            (
                json!({"k": {"type": "long", "ignore_above": 5}}),
                "[k]",
                "not supported for type [long]",
            ),
            (
                json!({"t": {"type": "text", "null_value": "x"}}),
                "[t]",
                "not supported for type [text]",
            ),
            (
                json!({"i": {"type": "ip", "null_value": "nope"}}),
                "[i]",
                "not an IP address",
            ),
            (
                json!({"n": {"type": "long", "null_value": "x"}}),
                "[n]",
                "not a number",
            ),
            (
                json!({"b": {"type": "boolean", "null_value": 1}}),
                "[b]",
                "not a boolean",
            ),
            (
                json!({"k": {"type": "keyword", "null_value": ["a"]}}),
                "[k]",
                "single value",
            ),
            (
                json!({"o": {"properties": {"k": {"type": "keyword", "null_value": {}}}}}),
                "[o.k]",
                "single value",
            ),
        ];
        for (props, field, problem) in cases {
            let e = mapping_err(json!({ "properties": props }));
            assert!(
                e.contains(&format!("field {field}")) && e.contains(problem),
                "{e}"
            );
        }
    }

    #[test]
    fn mapping_multi_fields() {
        let m = mapped(json!({"properties": {
            "process": {"properties": {"name": {
                "type": "keyword",
                "ignore_above": 1024,
                "fields": {
                    "text": {"type": "match_only_text"},
                    "caseless": {"type": "keyword", "ignore_above": 1024, "null_value": "-"}
                }
            }}},
            "hostname": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}
        }}));
        assert_eq!(ty(&m, "process.name"), Some(FieldType::Keyword));
        assert_eq!(ty(&m, "process.name.text"), Some(FieldType::Text));
        assert_eq!(
            m.get("process.name.caseless"),
            Some(FieldInfo {
                ty: FieldType::Keyword,
                null_value: Some(json!("-")),
                ignore_above: Some(1024),
                format: None
            })
        );
        assert_eq!(ty(&m, "hostname"), Some(FieldType::Text));
        assert_eq!(m.get("hostname.keyword").unwrap().ignore_above, Some(256));

        let e = mapping_err(json!({"properties": {"h": {"type": "text", "fields": {"k": {}}}}}));
        assert!(e.contains("field [h.k]") && e.contains("no type"), "{e}");
        let e = mapping_err(json!({"properties": {"h": {"type": "text", "fields": ["k"]}}}));
        assert!(e.contains("field [h]") && e.contains("\"fields\""), "{e}");
        let e = mapping_err(
            json!({"properties": {"h": {"type": "text", "fields": {"a": {"type": "alias", "path": "h"}}}}}),
        );
        assert!(e.contains("field [h.a]") && e.contains("alias"), "{e}");
    }

    #[test]
    fn mapping_type_names() {
        let m = mapped(json!({"properties": {
            "p": {"type": "[runtime_random_keyword_type]"},
            "q": {"type": "some_future_type"},
            "s": {"type": "search_as_you_type"}
        }}));
        assert_eq!(ty(&m, "p"), Some(FieldType::Keyword));
        assert_eq!(ty(&m, "q"), Some(FieldType::Other));
        assert_eq!(ty(&m, "s"), Some(FieldType::Other));

        let e = mapping_err(
            json!({"properties": {"a": {"properties": {"b": {"type": "[runtime_other]"}}}}}),
        );
        assert!(
            e.contains("field [a.b]") && e.contains("not a field type"),
            "{e}"
        );
        let e = mapping_err(json!({"properties": {"a": {"type": ""}}}));
        assert!(e.contains("field [a]"), "{e}");
        let e = mapping_err(json!({"properties": {"a": {"type": 5}}}));
        assert!(
            e.contains("field [a]") && e.contains("must be a string"),
            "{e}"
        );
    }

    #[test]
    fn mapping_shape_errors() {
        let e = mapping_err(json!([1]));
        assert!(e.starts_with("mapping:") && e.contains("object"), "{e}");
        let e = mapping_err(json!({"properties": []}));
        assert!(
            e.starts_with("mapping:") && e.contains("\"properties\""),
            "{e}"
        );
        let e = mapping_err(json!({"mappings": 3}));
        assert!(e.starts_with("mapping:"), "{e}");
        let e = mapping_err(json!({"properties": {"o": {"properties": "x"}}}));
        assert!(
            e.contains("field [o]") && e.contains("\"properties\""),
            "{e}"
        );
        let e = mapping_err(json!({"properties": {"o": "keyword"}}));
        assert!(
            e.contains("field [o]") && e.contains("object definition"),
            "{e}"
        );
        let e = mapping_err(json!({"properties": {"o": {"type": "keyword", "properties": {}}}}));
        assert!(e.contains("field [o]") && e.contains("cannot have"), "{e}");
        let e = mapping_err(json!({"properties": {"o": {"properties": {"": {"type": "long"}}}}}));
        assert!(e.contains("field [o.]") && e.contains("empty"), "{e}");
        // The flat form given to the mapping reader is caught, not ignored.
        let e = mapping_err(json!({"source.ip": "ip"}));
        assert!(e.contains("[source.ip]") && e.contains("properties"), "{e}");
    }

    #[test]
    fn mapping_runtime_fields() {
        let m = mapped(json!({
            "properties": {"a": {"type": "keyword"}},
            "runtime": {
                "a": {"type": "long", "script": "emit(1)"},
                "day": {"type": "date"},
                "c": {"type": "composite", "fields": {"ip": {"type": "ip"}, "n": {"type": "double"}}}
            }
        }));
        assert_eq!(
            ty(&m, "a"),
            Some(FieldType::Long),
            "runtime shadows properties"
        );
        assert_eq!(ty(&m, "day"), Some(FieldType::Date));
        assert_eq!(ty(&m, "c.ip"), Some(FieldType::Ip));
        assert_eq!(ty(&m, "c.n"), Some(FieldType::Double));
        let e = mapping_err(json!({"runtime": {"r": {"script": "x"}}}));
        assert!(e.contains("[r]") && e.contains("type"), "{e}");
        let e = mapping_err(json!({"runtime": {"c": {"type": "composite"}}}));
        assert!(e.contains("[c]") && e.contains("fields"), "{e}");
    }

    // ---- add_simple -----------------------------------------------------

    #[test]
    fn simple_form() {
        let mut m = TypeMap::ecs();
        let types = json!({
            "my.field": "ip",
            "app.version": "version",
            "x": {"type": "keyword", "null_value": "NULL", "ignore_above": 10},
            "when": {"type": "date"},
            "src": {"type": "alias", "path": "my.field"},
            "proc": {"type": "alias", "path": "process.name"},
            "process.pid": "keyword"
        });
        m.add_simple(types.as_object().unwrap()).unwrap();
        assert_eq!(ty(&m, "my.field"), Some(FieldType::Ip));
        assert_eq!(ty(&m, "app.version"), Some(FieldType::Version));
        assert_eq!(
            m.get("x"),
            Some(FieldInfo {
                ty: FieldType::Keyword,
                null_value: Some(json!("NULL")),
                ignore_above: Some(10),
                format: None
            })
        );
        assert_eq!(ty(&m, "when"), Some(FieldType::Date));
        assert_eq!(m.resolve_alias("src"), "my.field");
        assert_eq!(ty(&m, "src"), Some(FieldType::Ip));
        assert_eq!(ty(&m, "proc"), Some(FieldType::Keyword));
        assert_eq!(
            ty(&m, "process.pid"),
            Some(FieldType::Keyword),
            "overrides ECS"
        );
        assert_eq!(ty(&m, "process.parent.pid"), Some(FieldType::Long));
    }

    #[test]
    fn simple_form_errors() {
        let e = simple_err(json!({"a": "ipaddress"}));
        assert!(
            e.contains("field [a]") && e.contains("unknown type [ipaddress]"),
            "{e}"
        );
        for name in [
            "keyword",
            "ip",
            "date",
            "long",
            "double",
            "boolean",
            "version",
            "match_only_text",
            "alias",
        ] {
            assert!(e.contains(name), "{name} missing from: {e}");
        }
        let e = simple_err(json!({"a": {"type": "IP"}}));
        assert!(
            e.contains("field [a]") && e.contains("unknown type [IP]"),
            "{e}"
        );
        let e = simple_err(json!({"a": "alias"}));
        assert!(e.contains("field [a]") && e.contains("path"), "{e}");
        let e = simple_err(json!({"a": 5}));
        assert!(e.contains("field [a]") && e.contains("type name"), "{e}");
        let e = simple_err(json!({"a": {"null_value": "x"}}));
        assert!(e.contains("field [a]") && e.contains("no \"type\""), "{e}");
        let e = simple_err(json!({"a": {"type": "keyword", "nul_value": "x"}}));
        assert!(
            e.contains("field [a]") && e.contains("unknown key [nul_value]"),
            "{e}"
        );
        let e = simple_err(json!({"a": {"type": "keyword", "path": "b"}}));
        assert!(
            e.contains("field [a]") && e.contains("only for aliases"),
            "{e}"
        );
        let e = simple_err(json!({"a": {"type": "alias", "path": "nowhere"}}));
        assert!(
            e.contains("field [a]") && e.contains("existing field"),
            "{e}"
        );
        let e = simple_err(json!({"a": {"type": "ip", "null_value": "x"}}));
        assert!(e.contains("field [a]") && e.contains("IP address"), "{e}");
        let e = simple_err(json!({"": "ip"}));
        assert!(e.contains("empty field name"), "{e}");
    }

    #[test]
    fn failed_batches_change_nothing() {
        let mut m = TypeMap::empty();
        m.set("keep", FieldType::Long);
        let types = json!({"new1": "ip", "keep": "keyword", "bad": "nonsense"});
        assert!(m.add_simple(types.as_object().unwrap()).is_err());
        assert_eq!(ty(&m, "keep"), Some(FieldType::Long));
        assert!(!m.is_known("new1"));
        let mapping = json!({"properties": {"new2": {"type": "ip"}, "keep": {"type": "ip"}, "bad": {"type": 1}}});
        assert!(m.add_es_mapping(&mapping).is_err());
        assert_eq!(ty(&m, "keep"), Some(FieldType::Long));
        assert!(!m.is_known("new2"));
    }

    // ---- Elasticsearch's EQL test mappings --------------------------------

    /// A mapping file of the EQL test suite as JSON (`data/endgame-140.mapping`
    /// starts with `#` comment lines).
    fn load_mapping_file(path: &std::path::Path) -> Value {
        let text = std::fs::read_to_string(path).unwrap();
        let json: String = text
            .lines()
            .filter(|l| !(l.trim_start().starts_with('#') || l.trim_start().starts_with("//")))
            .collect::<Vec<_>>()
            .join("\n");
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn conformance_mappings_load() {
        let dir = shared("conformance/elasticsearch-eql");
        if !dir.join("mapping-default.json").exists() {
            println!("skipped: suite not present ({})", dir.display());
            return;
        }
        let mut files = vec![dir.join("mapping-default.json")];
        let mut data: Vec<PathBuf> = std::fs::read_dir(dir.join("data"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "mapping"))
            .collect();
        data.sort();
        assert!(data.len() >= 6, "{data:?}");
        files.extend(data);
        let mut loaded = HashMap::new();
        for file in &files {
            let mut m = TypeMap::empty();
            m.add_es_mapping(&load_mapping_file(file))
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert_eq!(
                m.resolve_alias("event.category"),
                "event_type",
                "{}",
                file.display()
            );
            assert_eq!(
                ty(&m, "event.category"),
                Some(FieldType::Keyword),
                "{}",
                file.display()
            );
            loaded.insert(file.file_name().unwrap().to_string_lossy().into_owned(), m);
        }

        let d = &loaded["mapping-default.json"];
        assert_eq!(ty(d, "pid"), Some(FieldType::Long));
        assert_eq!(ty(d, "source_address"), Some(FieldType::Ip));
        assert_eq!(ty(d, "timestamp"), Some(FieldType::Date));
        assert_eq!(ty(d, "hostname"), Some(FieldType::Text));
        assert_eq!(d.get("hostname.keyword").unwrap().ignore_above, Some(256));
        assert_eq!(d.resolve_alias("event.sequence"), "serial_event_id");

        let g = &loaded["endgame-140.mapping"];
        assert_eq!(ty(g, "command_line"), Some(FieldType::Keyword));
        assert_eq!(ty(g, "serial_event_id"), Some(FieldType::Long));

        let x = &loaded["extra.mapping"];
        assert_eq!(ty(x, "version"), Some(FieldType::Version));
        assert_eq!(ty(x, "date_tags"), Some(FieldType::Date));
        assert_eq!(x.resolve_alias("event.sequence"), "sequence");
        assert_eq!(
            x.get("optional_field_default_null"),
            Some(FieldInfo {
                ty: FieldType::Keyword,
                null_value: Some(json!("NULL")),
                ignore_above: None,
                format: None
            })
        );
        assert_eq!(
            x.get("optional_field_mapping_only").unwrap().null_value,
            None
        );
        assert!(!x.is_known("optional_field_not_mapped"));

        let s1 = &loaded["sample1.mapping"];
        assert_eq!(ty(s1, "ip"), Some(FieldType::Ip));
        assert_eq!(ty(s1, "bool"), Some(FieldType::Boolean));
        assert_eq!(ty(s1, "@timestamp_pretty"), Some(FieldType::Date));
        assert_eq!(
            ty(&loaded["sample3.mapping"], "host_ip"),
            Some(FieldType::Ip)
        );

        // The three sample indices, searched together, merge into one map.
        let mut all = TypeMap::empty();
        for f in ["sample1.mapping", "sample2.mapping", "sample3.mapping"] {
            all.add_es_mapping(&load_mapping_file(&dir.join("data").join(f)))
                .unwrap();
        }
        assert_eq!(ty(&all, "op_sys"), Some(FieldType::Keyword));
        assert_eq!(ty(&all, "host_ip"), Some(FieldType::Ip));
        assert_eq!(ty(&all, "version"), Some(FieldType::Version));
    }
}
