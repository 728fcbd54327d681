//! A JSON value as MessagePack, for the tests that feed both forms
//! (`#[path]`-included by `tests/msgpack.rs`, `tests/pack.rs` and
//! `tests/generic.rs`): maps keep their order, integers take the smallest
//! form, other numbers float64.

use serde_json::Value;

/// Append `v` to `out` as MessagePack.
pub fn mp_into(out: &mut Vec<u8>, v: &Value) {
    use rmp::encode::*;
    match v {
        Value::Null => write_nil(out).unwrap(),
        Value::Bool(b) => write_bool(out, *b).unwrap(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                write_sint(out, i).unwrap();
            } else if let Some(u) = n.as_u64() {
                write_uint(out, u).unwrap();
            } else {
                write_f64(out, n.as_f64().unwrap()).unwrap();
            }
        }
        Value::String(s) => write_str(out, s).unwrap(),
        Value::Array(a) => {
            write_array_len(out, a.len() as u32).unwrap();
            for x in a {
                mp_into(out, x);
            }
        }
        Value::Object(m) => {
            write_map_len(out, m.len() as u32).unwrap();
            for (k, x) in m {
                write_str(out, k).unwrap();
                mp_into(out, x);
            }
        }
    }
}

/// `v` as MessagePack.
pub fn mp(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    mp_into(&mut out, v);
    out
}
