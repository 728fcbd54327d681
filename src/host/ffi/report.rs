//! The rules report ([`super::aptnc_rules_report`]): which rules of a
//! detector loaded, which were skipped and why, as JSON and as log lines.

use super::*;

/// What [`aptnc_rules_report`] writes: the pack's
/// [`crate::engine::pack::PackDetector::report`], or for a detector of one rule the
/// same shape with its one rule.
pub fn rules_report(det: &Detector) -> serde_json::Value {
    if let Some(p) = det.pack() {
        return p.report();
    }
    let s = det.stats();
    let meta = det.rule().meta();
    let mut m = serde_json::Map::new();
    m.insert("rule_id".into(), meta.rule_id.clone().into());
    m.insert("name".into(), meta.name.clone().into());
    m.insert("engine".into(), if det.is_generic() { "generic" } else { "fast" }.into());
    m.insert("alerts".into(), (s.annotated + s.standalone_alerts).into());
    for (k, v) in s.fields() {
        m.insert(k.to_string(), v.into());
    }
    serde_json::json!({"rules": [serde_json::Value::Object(m)], "skipped": []})
}

/// One log line per rule of `report` (as [`rules_report`] writes it) that
/// gave alerts — `rule "<name>" (<rule_id>): alerts=N records=N` and its
/// other non-zero counters — and one per skipped rule — `skipped rule
/// <name>: <reason>` (a reason of several lines on one line). What the
/// Fluent Bit filter and the sidecar log with their counters.
pub fn rules_report_lines(report: &serde_json::Value) -> Vec<String> {
    let mut lines = Vec::new();
    let empty = Vec::new();
    let list = |k: &str| report.get(k).and_then(serde_json::Value::as_array).unwrap_or(&empty).clone();
    let text = |v: &serde_json::Value, k: &str| v.get(k).and_then(serde_json::Value::as_str).unwrap_or("").to_string();
    let num = |v: &serde_json::Value, k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    for r in list("rules") {
        let alerts = num(&r, "alerts");
        if alerts == 0 {
            continue;
        }
        let mut line = format!(
            "rule \"{}\" ({}): alerts={alerts} records={}",
            one_line(&text(&r, "name")),
            one_line(&text(&r, "rule_id")),
            num(&r, "records")
        );
        for (k, _) in Stats::default().fields() {
            let v = num(&r, k);
            if v > 0 && !matches!(k, "records" | "annotated" | "standalone_alerts") {
                line.push_str(&format!(" {k}={v}"));
            }
        }
        lines.push(line);
    }
    for s in list("skipped") {
        lines.push(format!("skipped rule {}: {}", one_line(&text(&s, "name")), one_line(&text(&s, "reason"))));
    }
    lines
}

/// `s` on one line: line breaks and the blanks after them become one space.
pub(super) fn one_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}
