//! Rule exceptions, as Elastic models them.
//!
//! An exception list is a list of **items**; an item is a list of
//! **entries** joined by AND; an event that matches ANY item is excluded.
//! An entry is a field, an operator and (for most operators) values:
//!
//! | operator | true when |
//! |---|---|
//! | `is` | any value of the field equals the value |
//! | `is not` | no value of the field equals the value (true when the field is missing) |
//! | `is one of` | any value of the field equals one of the values |
//! | `is not one of` | no value equals any of the values (true when missing) |
//! | `exists` | the field has a non-null value |
//! | `does not exist` | the field is missing, null or an empty array |
//! | `matches` | any value matches the wildcard pattern (`*`, `?`, `\` escapes; case-sensitive) |
//! | `does not match` | no value matches the pattern (true when missing) |
//! | `is in cidr` | any value is an IP address inside one of the blocks |
//! | `is not in cidr` | no value is an address inside the blocks (true when missing) |
//!
//! These are the queries Kibana generates (`buildExceptionFilter` in
//! `x-pack/plugins/lists/server/services/exception_lists/build_exception_filter.ts`):
//! `is` → a `terms` query in a bool `filter`, `is not` → the same `terms` in a
//! bool `must_not`, `is one of` → `terms` with every value, `matches` → a
//! `wildcard` query (no `case_insensitive`, so case-sensitive), `exists` → an
//! `exists` query; entries of an item are AND'ed (bool `filter`), items are
//! OR'ed (bool `should`) and the whole filter is negated. A `must_not` on a
//! missing field is satisfied, which is why the negative operators hold when
//! the field is missing. On an IP field (one ECS or the user's `field_types`
//! types as `ip`, and any field the rule passes to `cidrmatch`) `is` / `is
//! one of` compare addresses and take
//! CIDR blocks too, as a `terms` query on an `ip` field does.
//!
//! Kibana puts this filter into the EQL search request's `filter`, which
//! Elasticsearch applies to the query of EVERY stage of a sequence: an
//! excluded event is invisible to the rule. The detector does the same (see
//! `Detector::evaluate`): an excluded shell exec starts no sequence and
//! replaces no waiting one; an excluded connection completes nothing and
//! consumes nothing. Matching records against the items:
//! [`crate::engine::exceptions`].

use crate::format::ip::Cidr;
use serde_json::Value;

/// The operator of an exception entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Is,
    IsNot,
    IsOneOf,
    IsNotOneOf,
    Exists,
    DoesNotExist,
    Matches,
    DoesNotMatch,
    IsInCidr,
    IsNotInCidr,
}

/// What an operator takes as its `value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arity {
    /// No `value`.
    None,
    /// One scalar.
    One,
    /// A non-empty array.
    Many,
    /// A scalar or a non-empty array.
    OneOrMany,
}

impl Operator {
    /// Every operator, in documentation order.
    pub const ALL: &'static [Operator] = &[
        Operator::Is,
        Operator::IsNot,
        Operator::IsOneOf,
        Operator::IsNotOneOf,
        Operator::Exists,
        Operator::DoesNotExist,
        Operator::Matches,
        Operator::DoesNotMatch,
        Operator::IsInCidr,
        Operator::IsNotInCidr,
    ];

    /// The operator's name as written in the config (`"is not one of"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Is => "is",
            Operator::IsNot => "is not",
            Operator::IsOneOf => "is one of",
            Operator::IsNotOneOf => "is not one of",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "does not exist",
            Operator::Matches => "matches",
            Operator::DoesNotMatch => "does not match",
            Operator::IsInCidr => "is in cidr",
            Operator::IsNotInCidr => "is not in cidr",
        }
    }

    /// Parse an operator name: case-insensitive, `_` or runs of spaces
    /// between words (`"is_one_of"`, `"Is  One Of"`).
    pub fn parse(s: &str) -> Option<Operator> {
        let norm =
            s.split(|c: char| c == '_' || c.is_whitespace()).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
        let norm = norm.to_ascii_lowercase();
        Operator::ALL.iter().copied().find(|o| o.as_str() == norm)
    }

    /// True for the operators that hold when the positive form does not.
    pub fn is_negative(self) -> bool {
        matches!(
            self,
            Operator::IsNot
                | Operator::IsNotOneOf
                | Operator::DoesNotExist
                | Operator::DoesNotMatch
                | Operator::IsNotInCidr
        )
    }

    fn arity(self) -> Arity {
        match self {
            Operator::Exists | Operator::DoesNotExist => Arity::None,
            Operator::Is | Operator::IsNot | Operator::Matches | Operator::DoesNotMatch => Arity::One,
            Operator::IsOneOf | Operator::IsNotOneOf => Arity::Many,
            Operator::IsInCidr | Operator::IsNotInCidr => Arity::OneOrMany,
        }
    }
}

fn operator_names() -> String {
    Operator::ALL.iter().map(|o| o.as_str()).collect::<Vec<_>>().join(", ")
}

/// One condition of an exception item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Dotted field path (`process.executable`).
    pub field: String,
    pub operator: Operator,
    /// The values as keywords: one for `is`, `is not`, `matches`, `does not
    /// match`; several for `is one of`, `is not one of`, the CIDR operators
    /// (and for the `trusted_*` shortcuts, where several patterns mean "any
    /// of them"); none for `exists` and `does not exist`.
    pub values: Vec<String>,
}

impl Entry {
    /// A checked entry: the field is a dotted path, the values suit the
    /// operator (addresses or CIDR blocks for the CIDR operators and for
    /// `is` / `is one of` on an ECS IP field; non-empty wildcard patterns).
    pub fn new(field: &str, operator: Operator, values: Vec<String>) -> Result<Entry, String> {
        check_field(field)?;
        let want_values = operator.arity() != Arity::None;
        if want_values && values.is_empty() {
            return Err(format!("`{}` needs at least one value", operator.as_str()));
        }
        if !want_values && !values.is_empty() {
            return Err(format!("`{}` takes no value", operator.as_str()));
        }
        let cidrs = matches!(operator, Operator::IsInCidr | Operator::IsNotInCidr)
            // A field ECS types as `ip` (a field outside ECS is a keyword,
            // whatever its name, as dynamic mapping makes a string).
            || (crate::eql::TypeMap::ecs().is_ip(field)
                && matches!(operator, Operator::Is | Operator::IsNot | Operator::IsOneOf | Operator::IsNotOneOf));
        for v in &values {
            if cidrs && Cidr::parse(v).is_none() {
                return Err(if matches!(operator, Operator::IsInCidr | Operator::IsNotInCidr) {
                    format!("\"{v}\" is not an IP address or CIDR block")
                } else {
                    format!("`{field}` is an IP field and \"{v}\" is not an IP address or CIDR block")
                });
            }
            if matches!(operator, Operator::Matches | Operator::DoesNotMatch) && v.is_empty() {
                return Err("an empty wildcard pattern matches nothing; use `does not exist` or `is` \"\"".into());
            }
        }
        Ok(Entry { field: field.to_string(), operator, values })
    }
}

/// Longest field path accepted.
const MAX_FIELD_LEN: usize = 256;

fn check_field(field: &str) -> Result<(), String> {
    if field.is_empty() {
        return Err("`field` is empty".into());
    }
    if field.len() > MAX_FIELD_LEN {
        return Err(format!("`field` is longer than {MAX_FIELD_LEN} bytes"));
    }
    if field.split('.').any(|p| p.is_empty()) || field.trim() != field {
        return Err(format!("`field` \"{field}\" is not a dotted field path"));
    }
    Ok(())
}

/// One exception item: excluded when every entry holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionItem {
    /// Unique; names the item's counter.
    pub name: String,
    pub description: String,
    pub entries: Vec<Entry>,
    /// The rules (by `rule_id`) the item applies to; empty: every rule. As
    /// Elastic attaches an exception list to some rules and not others.
    pub rule_ids: Vec<String>,
}

impl ExceptionItem {
    /// Whether the item applies to the rule with this `rule_id`.
    pub fn applies_to(&self, rule_id: &str) -> bool {
        self.rule_ids.is_empty() || self.rule_ids.iter().any(|r| r == rule_id)
    }
}

const ITEM_KEYS: &str = "name, description, entries, rule_id";
const ENTRY_KEYS: &str = "field, operator, value (or Kibana's field, type, operator, value)";

/// Parse a JSON array of exception items (or one item object).
///
/// An item is `{"name": "…", "description": "…", "entries": [ … ],
/// "rule_id": …}` (name and entries required; `rule_id`, a string or an
/// array of strings, limits the item to those rules). An entry is `{"field": "…", "operator": "is",
/// "value": "…"}` with an operator from [`Operator`] (`value` an array for
/// `is one of`, `is not one of`; a string or an array for the CIDR
/// operators; absent for `exists`, `does not exist`), or an entry as Kibana
/// stores it: `{"field", "type": "match" | "match_any" | "wildcard" |
/// "exists", "operator": "included" | "excluded", "value"}`. Values may be
/// strings, numbers or booleans (compared as keywords). Errors say which
/// item and entry, and why.
pub fn parse_items(v: &Value) -> Result<Vec<ExceptionItem>, String> {
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        Value::Object(_) => vec![v],
        other => return Err(format!("expected an array of exception items, got {}", kind_of(other))),
    };
    let mut out: Vec<ExceptionItem> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        out.push(parse_item(item, i + 1)?);
    }
    Ok(out)
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Item `n` (1-based); errors start with `item n`.
fn parse_item(v: &Value, n: usize) -> Result<ExceptionItem, String> {
    let at = |e: String| format!("item {n}: {e}");
    let obj = v.as_object().ok_or_else(|| at(format!("expected an object ({ITEM_KEYS}), got {}", kind_of(v))))?;
    for k in obj.keys() {
        if !["name", "description", "entries", "rule_id"].contains(&k.as_str()) {
            return Err(at(format!("unknown key `{k}`; valid keys: {ITEM_KEYS}")));
        }
    }
    let name = match obj.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) => return Err(at("`name` is empty".into())),
        Some(other) => return Err(at(format!("`name` must be a string, got {}", kind_of(other)))),
        None => return Err(at("`name` is missing (it names the item's counter)".into())),
    };
    let ctx = |e: String| format!("item {n} (\"{name}\"): {e}");
    let description = match obj.get("description") {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(ctx(format!("`description` must be a string, got {}", kind_of(other)))),
    };
    let entries = match obj.get("entries") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => return Err(ctx("`entries` is empty (an item needs at least one entry)".into())),
        Some(other) => return Err(ctx(format!("`entries` must be an array, got {}", kind_of(other)))),
        None => return Err(ctx("`entries` is missing".into())),
    };
    let rule_ids = match obj.get("rule_id") {
        None => Vec::new(),
        Some(Value::String(s)) if !s.trim().is_empty() => vec![s.clone()],
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(|v| v.as_str().is_some_and(|s| !s.trim().is_empty())) => {
            a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()
        }
        Some(other) => {
            return Err(ctx(format!(
                "`rule_id` must be a rule_id or a non-empty array of them (omit it for every rule), got {}",
                match other {
                    Value::String(_) => "an empty string",
                    Value::Array(_) => "an empty array or one holding a non-string",
                    o => kind_of(o),
                }
            )))
        }
    };
    let mut parsed = Vec::new();
    for (j, e) in entries.iter().enumerate() {
        parsed.push(parse_entry(e).map_err(|m| format!("item {n} (\"{name}\") entry {}: {m}", j + 1))?);
    }
    Ok(ExceptionItem { name, description, entries: parsed, rule_ids })
}

fn scalar_keyword(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_entry(v: &Value) -> Result<Entry, String> {
    let obj = v.as_object().ok_or_else(|| format!("expected an object ({ENTRY_KEYS}), got {}", kind_of(v)))?;
    for k in obj.keys() {
        if !["field", "operator", "value", "type"].contains(&k.as_str()) {
            return Err(format!("unknown key `{k}`; valid keys: {ENTRY_KEYS}"));
        }
    }
    let field = match obj.get("field") {
        Some(Value::String(s)) => s.as_str(),
        Some(other) => return Err(format!("`field` must be a string, got {}", kind_of(other))),
        None => return Err("`field` is missing".into()),
    };
    let op_text = match obj.get("operator") {
        Some(Value::String(s)) => s.as_str(),
        Some(other) => return Err(format!("`operator` must be a string, got {}", kind_of(other))),
        None => return Err(format!("`operator` is missing; operators: {}", operator_names())),
    };
    let operator = match obj.get("type") {
        None => Operator::parse(op_text)
            .ok_or_else(|| format!("unknown operator \"{op_text}\"; operators: {}", operator_names()))?,
        Some(Value::String(t)) => kibana_operator(t, op_text)?,
        Some(other) => return Err(format!("`type` must be a string, got {}", kind_of(other))),
    };
    let values = match (operator.arity(), obj.get("value")) {
        (Arity::None, None) => vec![],
        (Arity::None, Some(_)) => return Err(format!("`{}` takes no value", operator.as_str())),
        (_, None) => return Err(format!("`{}` needs a `value`", operator.as_str())),
        (Arity::One, Some(v)) => vec![scalar_keyword(v)
            .ok_or_else(|| format!("`{}` takes one value (a string), got {}", operator.as_str(), kind_of(v)))?],
        (Arity::Many, Some(Value::Array(a))) | (Arity::OneOrMany, Some(Value::Array(a))) => {
            let mut vals = Vec::new();
            for x in a {
                vals.push(scalar_keyword(x).ok_or_else(|| {
                    format!("the values of `{}` must be strings, got {}", operator.as_str(), kind_of(x))
                })?);
            }
            vals
        }
        (Arity::Many, Some(v)) => {
            return Err(format!("`{}` takes an array of values, got {}", operator.as_str(), kind_of(v)))
        }
        (Arity::OneOrMany, Some(v)) => vec![scalar_keyword(v).ok_or_else(|| {
            format!("`{}` takes a string or an array of strings, got {}", operator.as_str(), kind_of(v))
        })?],
    };
    Entry::new(field, operator, values)
}

/// An entry in Kibana's stored form (`type` + `included`/`excluded`).
fn kibana_operator(ty: &str, op: &str) -> Result<Operator, String> {
    let excluded = match op {
        "included" => false,
        "excluded" => true,
        _ => return Err(format!("with `type`, `operator` is \"included\" or \"excluded\", got \"{op}\"")),
    };
    let pick = |pos, neg| if excluded { neg } else { pos };
    Ok(match ty {
        "match" => pick(Operator::Is, Operator::IsNot),
        "match_any" => pick(Operator::IsOneOf, Operator::IsNotOneOf),
        "wildcard" => pick(Operator::Matches, Operator::DoesNotMatch),
        "exists" => pick(Operator::Exists, Operator::DoesNotExist),
        "list" => return Err(
            "value lists (type \"list\") are not supported; write the values inline with `is one of` or `is in cidr`"
                .into(),
        ),
        "nested" => return Err("nested entries (type \"nested\") are not supported".into()),
        _ => return Err(format!("unknown `type` \"{ty}\"; types: match, match_any, wildcard, exists")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operator_names_parse_loosely() {
        for o in Operator::ALL {
            assert_eq!(Operator::parse(o.as_str()), Some(*o));
        }
        assert_eq!(Operator::parse("IS_NOT_ONE_OF"), Some(Operator::IsNotOneOf));
        assert_eq!(Operator::parse(" is  in   CIDR "), Some(Operator::IsInCidr));
        assert_eq!(Operator::parse("isnt"), None);
    }

    #[test]
    fn parse_errors_name_the_item_and_entry() {
        let e = parse_items(&json!([{"name": "x", "entries": [{"field": "a", "operator": "isnt", "value": "b"}]}]))
            .unwrap_err();
        assert!(e.contains("item 1") && e.contains("entry 1") && e.contains("is not one of"), "{e}");
        let e = parse_items(&json!([{"entries": []}])).unwrap_err();
        assert!(e.contains("`name` is missing"), "{e}");
        let e = parse_items(&json!([{"name": "x", "entries": [{"field": "a", "operator": "exists", "value": "b"}]}]))
            .unwrap_err();
        assert!(e.contains("takes no value"), "{e}");
        let e =
            parse_items(&json!([{"name": "x", "entries": [{"field": "a", "operator": "is one of", "value": "b"}]}]))
                .unwrap_err();
        assert!(e.contains("array"), "{e}");
        let e = parse_items(
            &json!([{"name": "x", "entries": [{"field": "destination.ip", "operator": "is", "value": "nope"}]}]),
        )
        .unwrap_err();
        assert!(e.contains("IP field"), "{e}");
        let e = parse_items(
            &json!([{"name": "x", "entries": [{"field": "a", "type": "list", "operator": "included", "value": "b"}]}]),
        )
        .unwrap_err();
        assert!(e.contains("value lists"), "{e}");
        let e = parse_items(&json!([{"name": "x", "os_types": ["linux"], "entries": []}])).unwrap_err();
        assert!(e.contains("os_types") && e.contains("valid keys"), "{e}");
        let e = parse_items(&json!("x")).unwrap_err();
        assert!(e.contains("array"), "{e}");
    }

    #[test]
    fn kibana_entries() {
        let items = parse_items(&json!([{"name": "k", "entries": [
            {"field": "a", "type": "match", "operator": "excluded", "value": "1"},
            {"field": "b", "type": "match_any", "operator": "included", "value": ["1", 2]},
            {"field": "c", "type": "wildcard", "operator": "included", "value": "x*"},
            {"field": "d", "type": "exists", "operator": "excluded"}
        ]}]))
        .unwrap();
        let ops: Vec<Operator> = items[0].entries.iter().map(|e| e.operator).collect();
        assert_eq!(ops, [Operator::IsNot, Operator::IsOneOf, Operator::Matches, Operator::DoesNotExist]);
        assert_eq!(items[0].entries[1].values, ["1", "2"]);
    }
}
