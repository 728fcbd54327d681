//! Typed values: what a JSON value becomes once Elasticsearch has indexed
//! it in a field of a given type, and how two such values compare.
//!
//! * `keyword`: the value's text (a number `1` is the keyword `"1"`, `true`
//!   is `"true"`); longer than the field's `ignore_above` → not indexed.
//! * `long` / `double`: a JSON number, or a string holding one (Elasticsearch
//!   coerces numeric strings by default); a fraction in a `long` field is
//!   truncated.
//! * `ip`: an IPv4 or IPv6 address (IPv4-mapped IPv6 is IPv4, see
//!   [`crate::format::ip`]).
//! * `date`: epoch milliseconds from a number or a string in the default
//!   format `strict_date_optional_time||epoch_millis`.
//! * `boolean`: `true`/`false` or the strings `"true"`/`"false"` (and `""`,
//!   false).
//! * `version`: a semantic version, ordered as Elasticsearch's `version`
//!   field orders them (numeric dot-separated parts, a pre-release before its
//!   release, invalid versions after every valid one).
//! * no type (a field that is neither in ECS nor in the user's mapping):
//!   dynamic mapping, the value's own JSON type (string → keyword, integer →
//!   long, fraction → double, boolean).
//!
//! A value that the field's type cannot hold (`"x"` in an `ip` field) is
//! *malformed*. Elastic Defend's data streams (`logs-endpoint.*`) are indexed
//! with `index.mapping.ignore_malformed: true` (the `logs@settings` component
//! template of Elasticsearch 8.x), so such a value is dropped and the field
//! counts as absent for that value; the engine counts them (`EngineStats::malformed_values`).

use super::types::{FieldInfo, FieldType};
use crate::format::ip::{parse_ip, Cidr};
use crate::format::time::{days_from_civil, days_in_month};
use serde_json::Value;
use std::cmp::Ordering;

/// A value as the engine compares it.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Bool(bool),
    Long(i64),
    Double(f64),
    Str(String),
    /// An address in its 128-bit form.
    Ip(u128),
    /// A block, only as a literal compared with an `ip` field (a term query
    /// on an `ip` field accepts a CIDR block).
    Cidr(Cidr),
    /// Epoch milliseconds.
    Date(i64),
    Version(String),
}

impl Val {
    pub fn is_null(&self) -> bool {
        matches!(self, Val::Null)
    }

    /// [`Val::text`], borrowed where the value is text already.
    pub fn text_cow(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            Val::Str(s) | Val::Version(s) => Some(std::borrow::Cow::Borrowed(s)),
            v => v.text().map(std::borrow::Cow::Owned),
        }
    }

    /// The text Elasticsearch prints for the value (join keys, `string()`,
    /// keyword conversion).
    pub fn text(&self) -> Option<String> {
        Some(match self {
            Val::Null => return None,
            Val::Bool(b) => b.to_string(),
            Val::Long(i) => i.to_string(),
            Val::Double(d) => java_double(*d),
            Val::Str(s) | Val::Version(s) => s.clone(),
            Val::Ip(ip) => ip_text(*ip),
            Val::Cidr(c) => format!("{}/{}", ip_text(c.network), c.prefix),
            Val::Date(ms) => crate::format::time::format_ms(*ms),
        })
    }

    pub fn number(&self) -> Option<f64> {
        match self {
            Val::Long(i) => Some(*i as f64),
            Val::Double(d) => Some(*d),
            _ => None,
        }
    }
}

/// Java's `Double.toString` for the common cases (`1.0`, `0.5`, `1.0E10`).
pub fn java_double(d: f64) -> String {
    if d.is_nan() {
        return "NaN".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    let a = d.abs();
    if a != 0.0 && !(1e-3..1e7).contains(&a) {
        let s = format!("{d:E}");
        // Rust: 1E10 / 1.5E-5; Java: 1.0E10 / 1.5E-5
        return match s.split_once('E') {
            Some((m, e)) if !m.contains('.') => format!("{m}.0E{e}"),
            _ => s,
        };
    }
    let s = format!("{d}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

/// An address as Elasticsearch prints it (IPv4-mapped as dotted quad).
pub fn ip_text(ip: u128) -> String {
    if ip >> 32 == 0xffff {
        std::net::Ipv4Addr::from(ip as u32).to_string()
    } else {
        std::net::Ipv6Addr::from(ip).to_string()
    }
}

/// Parse a date as the default `date` format does:
/// `strict_date_optional_time||epoch_millis`.
pub fn parse_date(s: &str) -> Option<i64> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    // `strict_date_optional_time` first (a 4-digit year), then epoch_millis.
    if let Some(ms) = parse_optional_time(t) {
        return Some(ms);
    }
    let digits = t.strip_prefix('-').unwrap_or(t);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse::<i64>().ok();
    }
    None
}

/// Parse a date with a field's `format`: `||`-separated Elasticsearch
/// format names (`epoch_millis`, `epoch_second`, `strict_date_optional_time`,
/// `date`, `basic_date`, …) and Java patterns of the letters `y u M d H m s
/// S` with literal separators and `'quoted'` text (read as UTC). `None`:
/// the default format.
pub fn parse_date_with(s: &str, format: Option<&str>) -> Option<i64> {
    let Some(format) = format else { return parse_date(s) };
    format.split("||").find_map(|f| parse_one_format(s, f.trim()))
}

fn parse_one_format(s: &str, f: &str) -> Option<i64> {
    let t = s.trim();
    let int = |x: &str| -> Option<i64> {
        let d = x.strip_prefix('-').unwrap_or(x);
        if d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        x.parse().ok()
    };
    match f {
        "epoch_millis" => int(t),
        "epoch_second" => int(t).and_then(|v| v.checked_mul(1000)),
        "strict_date" | "date" => pattern_date(t, "yyyy-MM-dd"),
        "basic_date" | "strict_basic_date" => pattern_date(t, "yyyyMMdd"),
        "strict_year_month" | "year_month" => pattern_date(t, "yyyy-MM"),
        "strict_year" | "year" => pattern_date(t, "yyyy"),
        n if n.chars().all(|c| c.is_ascii_lowercase() || c == '_') => parse_optional_time(t),
        pattern => pattern_date(t, pattern),
    }
}

/// A Java `DateTimeFormatter` pattern of numeric fields.
fn pattern_date(s: &str, pattern: &str) -> Option<i64> {
    let p: Vec<char> = pattern.chars().collect();
    let b = s.as_bytes();
    let (mut i, mut k) = (0usize, 0usize);
    let (mut y, mut mo, mut d, mut h, mut mi, mut se, mut ms) = (1970i64, 1i64, 1i64, 0i64, 0i64, 0i64, 0i64);
    while k < p.len() {
        let c = p[k];
        if c == '\'' {
            k += 1;
            while k < p.len() && p[k] != '\'' {
                let mut buf = [0u8; 4];
                let lit = p[k].encode_utf8(&mut buf).as_bytes();
                if !b[i..].starts_with(lit) {
                    return None;
                }
                i += lit.len();
                k += 1;
            }
            k += 1;
            continue;
        }
        if !c.is_ascii_alphabetic() {
            let mut buf = [0u8; 4];
            let lit = c.encode_utf8(&mut buf).as_bytes();
            if !b[i..].starts_with(lit) {
                return None;
            }
            i += lit.len();
            k += 1;
            continue;
        }
        let mut n = 0;
        while k < p.len() && p[k] == c {
            n += 1;
            k += 1;
        }
        // Digits: exactly n for fixed-width fields, up to 9 for a year.
        let max = if matches!(c, 'y' | 'u') && n != 2 { 9 } else { n.max(2) };
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() && i - start < max {
            i += 1;
        }
        if i == start || (n >= 2 && i - start < n && !matches!(c, 'y' | 'u')) {
            return None;
        }
        let v: i64 = s[start..i].parse().ok()?;
        match c {
            'y' | 'u' => y = if n == 2 { 2000 + v } else { v },
            'M' => mo = v,
            'd' => d = v,
            'H' => h = v,
            'm' => mi = v,
            's' => se = v,
            'S' => {
                let digits = i - start;
                ms = match digits {
                    1 => v * 100,
                    2 => v * 10,
                    _ => s[start..start + 3].parse().ok()?,
                };
            }
            _ => return None,
        }
    }
    if i != b.len() || !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 59 {
        return None;
    }
    Some(((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60_000 + se * 1000 + ms)
}

/// `yyyy[-MM[-dd[THH[:mm[:ss[.f…]]][zone]]]]`.
fn parse_optional_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let mut i = 0;
    let num = |n: usize, i: &mut usize| -> Option<i64> {
        if *i + n > b.len() {
            return None;
        }
        let mut v = 0i64;
        for &c in &b[*i..*i + n] {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + (c - b'0') as i64;
        }
        *i += n;
        Some(v)
    };
    let year = num(4, &mut i)?;
    let (mut month, mut day, mut h, mut m, mut sec, mut ms) = (1, 1, 0, 0, 0, 0i64);
    let mut offset_min = 0i64;
    if i < b.len() && b[i] == b'-' {
        i += 1;
        month = num(2, &mut i)?;
        if i < b.len() && b[i] == b'-' {
            i += 1;
            day = num(2, &mut i)?;
            if i < b.len() && (b[i] == b'T' || b[i] == b't') {
                i += 1;
                h = num(2, &mut i)?;
                if i < b.len() && b[i] == b':' {
                    i += 1;
                    m = num(2, &mut i)?;
                    if i < b.len() && b[i] == b':' {
                        i += 1;
                        sec = num(2, &mut i)?;
                        if i < b.len() && (b[i] == b'.' || b[i] == b',') {
                            i += 1;
                            let start = i;
                            while i < b.len() && b[i].is_ascii_digit() {
                                i += 1;
                            }
                            let frac = &s[start..i];
                            if frac.is_empty() || frac.len() > 9 {
                                return None;
                            }
                            let mut f = frac.to_string();
                            while f.len() < 3 {
                                f.push('0');
                            }
                            ms = f[..3].parse().ok()?;
                        }
                    }
                }
                if i < b.len() {
                    match b[i] {
                        b'Z' | b'z' => i += 1,
                        b'+' | b'-' => {
                            let neg = b[i] == b'-';
                            i += 1;
                            let oh = num(2, &mut i)?;
                            let mut om = 0;
                            if i < b.len() && b[i] == b':' {
                                i += 1;
                            }
                            if i < b.len() {
                                om = num(2, &mut i)?;
                            }
                            offset_min = (oh * 60 + om) * if neg { -1 } else { 1 };
                        }
                        _ => return None,
                    }
                }
            }
        }
    }
    if i != b.len() || !(1..=12).contains(&month) || h > 23 || m > 59 || sec > 59 {
        return None;
    }
    let dim = days_in_month(year, month);
    if day < 1 || day > dim {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + h) * 60 + m - offset_min) * 60_000 + sec * 1000 + ms)
}

/// The keyword form of a JSON scalar.
fn keyword_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A decimal as a `long` field indexes it: truncated toward zero; `None`
/// (malformed) when it is not finite or out of the `long` range.
pub fn long_of_f64(f: f64) -> Option<i64> {
    (f.is_finite() && f.abs() < 9.2e18).then(|| f.trunc() as i64)
}

/// A string as a `long` field indexes it: an integer, or a decimal
/// truncated ([`long_of_f64`]), spaces around ignored; `None`: malformed.
pub fn long_of_str(s: &str) -> Option<i64> {
    let t = s.trim();
    t.parse::<i64>().ok().or_else(|| t.parse::<f64>().ok().and_then(long_of_f64))
}

/// A string as a `boolean` field indexes it (`""` is false); `None`:
/// malformed.
pub fn bool_of_str(s: &str) -> Option<bool> {
    match s {
        "true" => Some(true),
        "false" | "" => Some(false),
        _ => None,
    }
}

/// A value malformed for its field's type (see [`typed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// Convert one JSON scalar of a field of type `info` (`None`: dynamic).
/// `Err(Malformed)` when the value is malformed for the type; `Ok(None)` when it is
/// not indexed at all (null without `null_value`, over `ignore_above`).
pub fn typed(v: &Value, info: Option<&FieldInfo>) -> Result<Option<Val>, Malformed> {
    let v = match (v, info.and_then(|i| i.null_value.as_ref())) {
        (Value::Null, Some(nv)) => nv,
        (Value::Null, None) => return Ok(None),
        (v, _) => v,
    };
    let Some(info) = info else {
        return Ok(Some(match v {
            Value::String(s) => Val::Str(s.clone()),
            Value::Bool(b) => Val::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Val::Long(i),
                None => Val::Double(n.as_f64().unwrap_or(f64::NAN)),
            },
            _ => return Ok(None),
        }));
    };
    Ok(Some(match info.ty {
        FieldType::Keyword | FieldType::Text | FieldType::Other => {
            let s = keyword_text(v).ok_or(Malformed)?;
            if let Some(limit) = info.ignore_above {
                if s.chars().count() > limit {
                    return Ok(None);
                }
            }
            Val::Str(s)
        }
        FieldType::Long => match v {
            Value::Number(n) => match n.as_i64() {
                Some(i) => Val::Long(i),
                None => Val::Long(n.as_f64().and_then(long_of_f64).ok_or(Malformed)?),
            },
            Value::String(s) => Val::Long(long_of_str(s).ok_or(Malformed)?),
            _ => return Err(Malformed),
        },
        FieldType::Double => match v {
            Value::Number(n) => Val::Double(n.as_f64().ok_or(Malformed)?),
            Value::String(s) => match s.trim().parse::<f64>() {
                Ok(f) if f.is_finite() => Val::Double(f),
                _ => return Err(Malformed),
            },
            _ => return Err(Malformed),
        },
        FieldType::Boolean => match v {
            Value::Bool(b) => Val::Bool(*b),
            Value::String(s) => Val::Bool(bool_of_str(s).ok_or(Malformed)?),
            _ => return Err(Malformed),
        },
        FieldType::Ip => match v {
            Value::String(s) => Val::Ip(parse_ip(s).ok_or(Malformed)?),
            _ => return Err(Malformed),
        },
        FieldType::Date => match v {
            Value::Number(n) => match n.as_i64() {
                Some(i) => Val::Date(i),
                None => Val::Date(n.as_f64().filter(|f| f.is_finite()).ok_or(Malformed)?.trunc() as i64),
            },
            Value::String(s) => Val::Date(parse_date_with(s, info.format.as_deref()).ok_or(Malformed)?),
            _ => return Err(Malformed),
        },
        FieldType::Version => Val::Version(keyword_text(v).ok_or(Malformed)?),
    }))
}

/// Convert a query literal to the type of the field it is compared with (a
/// term or range query parses its value with the field's type). `None` when
/// the literal cannot be a value of that type.
pub fn literal_for(lit: &Val, info: Option<&FieldInfo>) -> Option<Val> {
    let Some(ty) = info.map(|i| i.ty) else { return Some(lit.clone()) };
    if lit.is_null() {
        return Some(Val::Null);
    }
    Some(match ty {
        FieldType::Keyword | FieldType::Text | FieldType::Other => Val::Str(lit.text()?),
        FieldType::Long | FieldType::Double => match lit {
            Val::Long(_) | Val::Double(_) => lit.clone(),
            Val::Str(s) => match s.trim().parse::<i64>() {
                Ok(i) => Val::Long(i),
                Err(_) => Val::Double(s.trim().parse::<f64>().ok()?),
            },
            Val::Bool(_) => return None,
            _ => return None,
        },
        FieldType::Boolean => match lit {
            Val::Bool(_) => lit.clone(),
            Val::Str(s) if s == "true" => Val::Bool(true),
            Val::Str(s) if s == "false" => Val::Bool(false),
            _ => return None,
        },
        FieldType::Ip => match lit {
            Val::Str(s) => match parse_ip(s) {
                Some(ip) => Val::Ip(ip),
                None => Val::Cidr(Cidr::parse(s)?),
            },
            _ => return None,
        },
        FieldType::Date => match lit {
            Val::Long(i) => Val::Date(*i),
            Val::Double(d) => Val::Date(d.trunc() as i64),
            Val::Str(s) => Val::Date(parse_date_with(s, info.and_then(|i| i.format.as_deref())).or_else(|| parse_date(s))?),
            _ => return None,
        },
        FieldType::Version => Val::Version(lit.text()?),
    })
}

/// Compare two non-null values; `None` when they are not comparable (then
/// every comparison is false, as a script's null is).
pub fn compare(a: &Val, b: &Val) -> Option<Ordering> {
    match (a, b) {
        (Val::Long(x), Val::Long(y)) => Some(x.cmp(y)),
        (Val::Long(_) | Val::Double(_), Val::Long(_) | Val::Double(_)) => {
            a.number()?.partial_cmp(&b.number()?)
        }
        (Val::Str(x), Val::Str(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(y)),
        (Val::Ip(x), Val::Ip(y)) => Some(x.cmp(y)),
        (Val::Date(x), Val::Date(y)) => Some(x.cmp(y)),
        (Val::Date(x), Val::Long(y)) | (Val::Long(y), Val::Date(x)) if matches!(a, Val::Date(_)) => {
            Some(x.cmp(y))
        }
        (Val::Long(x), Val::Date(y)) => Some(x.cmp(y)),
        (Val::Date(x), Val::Str(s)) => Some(x.cmp(&parse_date(s)?)),
        (Val::Str(s), Val::Date(y)) => Some(parse_date(s)?.cmp(y)),
        (Val::Ip(x), Val::Str(s)) => Some(x.cmp(&parse_ip(s)?)),
        (Val::Str(s), Val::Ip(y)) => Some(parse_ip(s)?.cmp(y)),
        (Val::Version(x), Val::Version(y)) => Some(version_cmp(x, y)),
        (Val::Version(x), Val::Str(y)) | (Val::Str(y), Val::Version(x)) if matches!(a, Val::Version(_)) => {
            Some(version_cmp(x, y))
        }
        (Val::Str(x), Val::Version(y)) => Some(version_cmp(x, y)),
        _ => None,
    }
}

/// Equality, with a CIDR literal containing an address.
pub fn equals(a: &Val, b: &Val) -> Option<bool> {
    match (a, b) {
        (Val::Ip(ip), Val::Cidr(c)) | (Val::Cidr(c), Val::Ip(ip)) => Some(c.contains(*ip)),
        _ => compare(a, b).map(|o| o == Ordering::Equal),
    }
}

/// A parsed semantic version: numeric parts, pre-release identifiers.
fn parse_version(s: &str) -> Option<(Vec<u64>, Option<Vec<&str>>)> {
    let core_end = s.find(['-', '+']).unwrap_or(s.len());
    let core = &s[..core_end];
    let mut nums = Vec::new();
    for p in core.split('.') {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || (p.len() > 1 && p.starts_with('0')) {
            return None;
        }
        nums.push(p.parse().ok()?);
    }
    let rest = &s[core_end..];
    let (pre, build) = match rest.strip_prefix('-') {
        Some(r) => match r.split_once('+') {
            Some((p, b)) => (Some(p), Some(b)),
            None => (Some(r), None),
        },
        None => (None, rest.strip_prefix('+')),
    };
    let valid_ids = |x: &str| !x.is_empty() && x.split('.').all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if let Some(b) = build {
        if !valid_ids(b) {
            return None;
        }
    }
    let pre = match pre {
        Some(p) if valid_ids(p) => Some(p.split('.').collect()),
        Some(_) => return None,
        None => None,
    };
    Some((nums, pre))
}

/// Elasticsearch's `version` order: valid versions by precedence (numeric
/// parts, a pre-release before its release, pre-release identifiers
/// numerically or lexically), then invalid ones by their text.
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    match (parse_version(a), parse_version(b)) {
        (Some((na, pa)), Some((nb, pb))) => {
            let n = na.len().max(nb.len());
            for i in 0..n {
                let (x, y) = (na.get(i).copied().unwrap_or(0), nb.get(i).copied().unwrap_or(0));
                match x.cmp(&y) {
                    Ordering::Equal => {}
                    o => return o,
                }
            }
            match na.len().cmp(&nb.len()) {
                Ordering::Equal => {}
                o => return o,
            }
            match (pa, pb) {
                (None, None) => a.cmp(b),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(x), Some(y)) => {
                    for (i, j) in x.iter().zip(&y) {
                        let o = match (i.parse::<u64>(), j.parse::<u64>()) {
                            (Ok(p), Ok(q)) => p.cmp(&q),
                            (Ok(_), Err(_)) => Ordering::Less,
                            (Err(_), Ok(_)) => Ordering::Greater,
                            _ => i.cmp(j),
                        };
                        if o != Ordering::Equal {
                            return o;
                        }
                    }
                    x.len().cmp(&y.len())
                }
            }
        }
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_the_default_format() {
        assert_eq!(parse_date("1"), Some(1));
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_date("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(parse_date("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_date("2017-08-30T20:47:33"), parse_date("2017-08-30T20:47:33Z"));
        assert_eq!(parse_date("1970"), Some(0));
        assert_eq!(parse_date("1970-02-30"), None);
        assert_eq!(parse_date("yesterday"), None);
        let day = parse_date("2022-12-17").unwrap();
        assert_eq!(parse_date_with("17-12-2022", Some("dd-MM-yyyy")), Some(day));
        assert_eq!(parse_date_with("17-12-2022", Some("yyyy-MM-dd||dd-MM-yyyy")), Some(day));
        assert_eq!(parse_date_with("2022-12-17", Some("dd-MM-yyyy")), None);
        assert_eq!(parse_date_with("1671235200", Some("epoch_second")), Some(1_671_235_200_000));
        assert_eq!(parse_date_with("2022-12-17 10:11:12.5", Some("yyyy-MM-dd HH:mm:ss.S")), Some(day + 36_672_500));
    }

    #[test]
    fn versions_order_as_elasticsearch() {
        let mut v = vec!["1.10.0", "1.2.0", "1.2.0-alpha", "bad", "1.2.0-alpha.1", "1.2.0-beta", "2", "1.11.0.1"];
        v.sort_by(|a, b| version_cmp(a, b));
        assert_eq!(v, ["1.2.0-alpha", "1.2.0-alpha.1", "1.2.0-beta", "1.2.0", "1.10.0", "1.11.0.1", "2", "bad"]);
    }

    #[test]
    fn values_take_the_field_type() {
        let ip = FieldInfo { ty: FieldType::Ip, null_value: None, ignore_above: None, format: None };
        assert_eq!(typed(&Value::from("10.0.0.1"), Some(&ip)), Ok(Some(Val::Ip(parse_ip("10.0.0.1").unwrap()))));
        assert_eq!(typed(&Value::from("nope"), Some(&ip)), Err(Malformed));
        let kw = FieldInfo { ty: FieldType::Keyword, null_value: Some(Value::from("NULL")), ignore_above: Some(4), format: None };
        assert_eq!(typed(&Value::from(12), Some(&kw)), Ok(Some(Val::Str("12".into()))));
        assert_eq!(typed(&Value::Null, Some(&kw)), Ok(Some(Val::Str("NULL".into()))));
        assert_eq!(typed(&Value::from("longer"), Some(&kw)), Ok(None));
        assert_eq!(java_double(1.0), "1.0");
        assert_eq!(java_double(0.5), "0.5");
        assert_eq!(java_double(1e10), "1.0E10");
    }

    /// The readings both engines share (the fast engine's `Test::Long` and
    /// `Test::Bool` call the same helpers): a `long` truncates decimals and
    /// numeric strings toward zero and refuses what is out of its range; a
    /// `boolean` reads `""` as false.
    #[test]
    fn longs_and_booleans_read_as_elasticsearch_indexes_them() {
        let long = FieldInfo { ty: FieldType::Long, null_value: None, ignore_above: None, format: None };
        let cases: [(Value, Result<Option<Val>, Malformed>); 9] = [
            (Value::from(3.7), Ok(Some(Val::Long(3)))),
            (Value::from(-2.5), Ok(Some(Val::Long(-2)))),
            (Value::from(" 4 "), Ok(Some(Val::Long(4)))),
            (Value::from("-2.9"), Ok(Some(Val::Long(-2)))),
            (Value::from("1e1"), Ok(Some(Val::Long(10)))),
            (Value::from(9.3e18), Err(Malformed)),
            (Value::from(u64::MAX), Err(Malformed)),
            (Value::from("abc"), Err(Malformed)),
            (Value::from(true), Err(Malformed)),
        ];
        for (v, want) in cases {
            assert_eq!(typed(&v, Some(&long)), want, "{v}");
        }
        let boolean = FieldInfo { ty: FieldType::Boolean, null_value: None, ignore_above: None, format: None };
        assert_eq!(typed(&Value::from(""), Some(&boolean)), Ok(Some(Val::Bool(false))));
        assert_eq!(typed(&Value::from("false"), Some(&boolean)), Ok(Some(Val::Bool(false))));
        assert_eq!(typed(&Value::from("true"), Some(&boolean)), Ok(Some(Val::Bool(true))));
        assert_eq!(typed(&Value::from("yes"), Some(&boolean)), Err(Malformed));
    }
}
