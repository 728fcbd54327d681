//! Event time: `@timestamp` to whole milliseconds since the Unix epoch.
//!
//! Elasticsearch stores a `date` in whole milliseconds, so fractional digits
//! beyond the third are truncated (not rounded) — RULE.md §Semantics 7.
//!
//! **Why hand-written.** chrono or time would parse these timestamps into a
//! zoned date-time, refuse forms this module accepts (an offset without its
//! colon, `+0200`) and still need Elasticsearch's millisecond truncation
//! around them. The only output needed is epoch milliseconds, computed here in
//! one pass over the bytes without allocating, for every record that matches a
//! stage.

/// Parse an RFC 3339 timestamp (`2022-04-04T18:52:00.6007809Z`, 0–9 fractional
/// digits, `Z` or a `±HH:MM` / `±HHMM` offset; `t`/`z` and a space separator are
/// accepted too) to milliseconds since the epoch. Years 0000–9999.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let mut v = 0i64;
        for &c in &b[r] {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + (c - b'0') as i64;
        }
        Some(v)
    };
    if b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let year = num(0..4)?;
    let month = num(5..7)?;
    let day = num(8..10)?;
    let hour = num(11..13)?;
    let minute = num(14..16)?;
    let second = num(17..19)?;
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + (b[i] - b'0') as i64;
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 || n > 9 {
            return None;
        }
        for _ in n..3 {
            millis *= 10;
        }
    }
    let offset_min = match b.get(i) {
        Some(b'Z') | Some(b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) => {
            let rest = &b[i + 1..];
            let (hh, mm) = match rest.len() {
                5 if rest[2] == b':' => (num(i + 1..i + 3)?, num(i + 4..i + 6)?),
                4 => (num(i + 1..i + 3)?, num(i + 3..i + 5)?),
                _ => return None,
            };
            if hh > 23 || mm > 59 {
                return None;
            }
            let m = hh * 60 + mm;
            if sign == b'+' {
                m
            } else {
                -m
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_min * 60;
    Some(secs * 1000 + millis)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Days in month `m` (1–12) of year `y`.
/// Milliseconds in one of EQL's time units (`ms`, `s`, `m`, `h`, `d`), as
/// `maxspan` and the config's durations take them.
pub fn unit_ms(unit: &str) -> Option<u64> {
    Some(match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    })
}

pub fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Format milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // civil_from_days
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        y,
        m,
        d,
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        milli
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_defend_timestamps_and_truncates() {
        let a = parse_rfc3339_ms("2022-04-04T18:52:00.6007809Z").unwrap();
        assert_eq!(a % 1000, 600);
        assert_eq!(format_ms(a), "2022-04-04T18:52:00.600Z");
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00.999999999Z"), Some(999));
        assert_eq!(parse_rfc3339_ms("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_rfc3339_ms("1969-12-31T23:00:00-0100"), Some(0));
        assert_eq!(parse_rfc3339_ms("1969-12-31T23:59:59.999Z"), Some(-1));
        assert!(parse_rfc3339_ms("9999-12-31T23:59:59.999Z").is_some());
        assert_eq!(parse_rfc3339_ms("2024-02-29T00:00:00Z").map(format_ms).as_deref(), Some("2024-02-29T00:00:00.000Z"));
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "garbage",
            "2022-04-04T18:52:00",
            "2022-04-04T18:52:00.Z",
            "2022-04-04T18:52:00.1234567890Z",
            "2023-02-29T00:00:00Z",
            "2022-13-01T00:00:00Z",
            "2022-04-04T24:00:00Z",
            "2022-04-04T18:52:00Zjunk",
            "2022-04-04X18:52:00Z",
            "２022-04-04T18:52:00Z",
        ] {
            assert_eq!(parse_rfc3339_ms(s), None, "{s}");
        }
    }

    #[test]
    fn round_trips_many_days() {
        let mut ms = parse_rfc3339_ms("0000-01-01T00:00:00Z").unwrap();
        while ms < parse_rfc3339_ms("9999-12-31T23:59:59.999Z").unwrap() {
            assert_eq!(parse_rfc3339_ms(&format_ms(ms)), Some(ms));
            ms += 86_400_000 * 37 + 12_345;
        }
    }
}
