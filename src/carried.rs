//! The fields an earlier-stage event carries into the alert
//! ([`crate::detector::CARRIED_FIELDS`]), kept compactly while its partial
//! sequence waits: for each field present, its index and its value(s) in a
//! small tagged binary form — no JSON keys or punctuation. Decoded into the
//! same JSON object, field by field in the same order, only when an alert is
//! written.

use crate::detector::CARRIED_FIELDS;
use serde_json::{Map, Number, Value};

const STR: u8 = 0;
const INT: u8 = 1;
const UINT: u8 = 2;
const FLOAT: u8 = 3;
const TRUE: u8 = 4;
const FALSE: u8 = 5;
const NULL: u8 = 6;
const ARRAY: u8 = 7;

/// An encoded set of carried fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Carried(Box<[u8]>);

/// Builds a [`Carried`].
#[derive(Debug, Default)]
pub struct CarriedBuilder(Vec<u8>);

impl CarriedBuilder {
    /// Add field `CARRIED_FIELDS[index]` with value `v` (a scalar or an
    /// array of scalars; anything else is written as null).
    pub fn push(&mut self, index: usize, v: &Value) {
        self.0.push(index as u8);
        write_value(&mut self.0, v);
    }

    pub fn finish(self) -> Carried {
        Carried(self.0.into_boxed_slice())
    }
}

fn write_len(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn read_len(b: &mut &[u8]) -> Option<usize> {
    let mut n = 0usize;
    for shift in (0..64).step_by(7) {
        let (&x, rest) = b.split_first()?;
        *b = rest;
        n |= ((x & 0x7f) as usize) << shift;
        if x & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::String(s) => {
            out.push(STR);
            write_len(out, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push(INT);
                out.extend_from_slice(&i.to_le_bytes());
            } else if let Some(u) = n.as_u64() {
                out.push(UINT);
                out.extend_from_slice(&u.to_le_bytes());
            } else {
                out.push(FLOAT);
                out.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_le_bytes());
            }
        }
        Value::Bool(true) => out.push(TRUE),
        Value::Bool(false) => out.push(FALSE),
        Value::Array(a) => {
            out.push(ARRAY);
            write_len(out, a.len());
            for x in a {
                write_value(out, x);
            }
        }
        Value::Null | Value::Object(_) => out.push(NULL),
    }
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if b.len() < n {
        return None;
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Some(head)
}

fn read_value(b: &mut &[u8], depth: u32) -> Option<Value> {
    let (&tag, rest) = b.split_first()?;
    *b = rest;
    Some(match tag {
        STR => {
            let n = read_len(b)?;
            Value::String(String::from_utf8(take(b, n)?.to_vec()).ok()?)
        }
        INT => Value::from(i64::from_le_bytes(take(b, 8)?.try_into().ok()?)),
        UINT => Value::from(u64::from_le_bytes(take(b, 8)?.try_into().ok()?)),
        FLOAT => Number::from_f64(f64::from_le_bytes(take(b, 8)?.try_into().ok()?)).map_or(Value::Null, Value::Number),
        TRUE => Value::Bool(true),
        FALSE => Value::Bool(false),
        NULL => Value::Null,
        ARRAY if depth == 0 => {
            let n = read_len(b)?;
            let mut a = Vec::with_capacity(n.min(b.len()));
            for _ in 0..n {
                a.push(read_value(b, depth + 1)?);
            }
            Value::Array(a)
        }
        _ => return None,
    })
}

impl Carried {
    /// Encoded size in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The carried fields as a JSON object (dotted names nested, except
    /// `@timestamp`), in the order they were added.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        let mut b: &[u8] = &self.0;
        while let Some((&index, rest)) = b.split_first() {
            b = rest;
            let (Some(name), Some(v)) = (CARRIED_FIELDS.get(index as usize), read_value(&mut b, 0)) else {
                break;
            };
            insert_path(&mut m, name, v);
        }
        Value::Object(m)
    }
}

/// Insert `v` at the dotted `path` of `m` (creating objects on the way).
pub fn insert_path(m: &mut Map<String, Value>, path: &str, v: Value) {
    match path.split_once('.') {
        Some((head, rest)) if head != "@timestamp" => {
            let e = m.entry(head.to_string()).or_insert_with(|| Value::Object(Map::new()));
            if !e.is_object() {
                *e = Value::Object(Map::new());
            }
            insert_path(e.as_object_mut().unwrap(), rest, v);
        }
        _ => {
            m.insert(path.to_string(), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_to_the_same_json() {
        let vals = [
            (0, json!("2026-01-01T00:00:00.1234567Z")),
            (3, json!("ZW50aXR5")),
            (4, json!(4242)),
            (7, json!(["sh", "-c", "curl x | sh"])),
            (10, json!(-1)),
            (12, json!(18446744073709551615u64)),
            (13, json!(1.5e300)),
            (2, json!(true)),
            (1, json!(null)),
        ];
        let mut b = CarriedBuilder::default();
        let mut want = Map::new();
        for (i, v) in &vals {
            b.push(*i, v);
            insert_path(&mut want, CARRIED_FIELDS[*i], v.clone());
        }
        let c = b.finish();
        assert_eq!(c.to_json(), Value::Object(want.clone()));
        assert_eq!(c.to_json().to_string(), Value::Object(want).to_string());
        assert!(c.len() < json!(vals.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>()).to_string().len() + 2 * vals.len());
    }
}
