//! Field types, as Elasticsearch indexed the fields (STUB: being written).

/// The Elasticsearch field type that decides how a value compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// `keyword`, `constant_keyword`, `wildcard`: exact strings.
    Keyword,
    /// `text`, `match_only_text`: analysed text.
    Text,
    Ip,
    /// `date`, `date_nanos`: instants (epoch milliseconds).
    Date,
    /// `long`, `integer`, `short`, `byte`, `unsigned_long`.
    Long,
    /// `double`, `float`, `half_float`, `scaled_float`.
    Double,
    Boolean,
    /// Semantic versions.
    Version,
    /// `object`, `nested`, `flattened`, `geo_point` and anything else.
    Other,
}

/// What is known of one field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldInfo {
    pub ty: FieldType,
    /// `null_value`: a JSON null (or absent value in an array) indexed as this.
    pub null_value: Option<serde_json::Value>,
    /// `ignore_above`: longer strings are not indexed (absent for queries).
    pub ignore_above: Option<usize>,
}

/// Field name → type: the built-in ECS table plus user mappings.
#[derive(Debug, Clone, Default)]
pub struct TypeMap {
    fields: std::collections::HashMap<String, FieldInfo>,
    aliases: std::collections::HashMap<String, String>,
}

impl TypeMap {
    pub fn empty() -> TypeMap {
        TypeMap::default()
    }
    pub fn ecs() -> TypeMap {
        TypeMap::default()
    }
    pub fn set(&mut self, field: &str, ty: FieldType) {
        self.fields.insert(field.to_string(), FieldInfo { ty, null_value: None, ignore_above: None });
    }
    pub fn get(&self, field: &str) -> Option<&FieldInfo> {
        self.fields.get(field)
    }
    pub fn resolve_alias<'a>(&'a self, field: &'a str) -> &'a str {
        self.aliases.get(field).map(|s| s.as_str()).unwrap_or(field)
    }
    pub fn add_es_mapping(&mut self, _mapping: &serde_json::Value) -> Result<(), String> {
        Ok(())
    }
}
