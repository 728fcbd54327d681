//! The `apt-netcon` command line: exit codes, messages, pass-through.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_apt-netcon"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn sample() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/sample.ndjson")).unwrap()
}

fn tmp(name: &str, content: &str) -> String {
    let dir = std::env::temp_dir().join(format!("apt-netcon-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn sample_gives_two_alerts_and_keeps_everything_else() {
    let input = sample();
    let out = run(&["--quiet", "-"], &input);
    assert!(out.status.success());
    assert!(out.stderr.is_empty(), "--quiet prints nothing");
    let ins: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    let outs: Vec<&[u8]> = out.stdout.split(|&b| b == b'\n').collect();
    assert_eq!(ins.len(), outs.len());
    let mut annotated = vec![];
    for (i, (a, b)) in ins.iter().zip(&outs).enumerate() {
        if a != b {
            annotated.push(i);
            let v: serde_json::Value = serde_json::from_slice(b).unwrap();
            assert_eq!(v["rule"]["id"], "eaef8a35-12e0-4ac0-bc14-81c72b6bd27c");
            assert_eq!(v["kibana"]["alert"]["rule"]["type"], "eql");
        }
    }
    assert_eq!(annotated.len(), 2, "the sample holds two true sequences");
    let first: serde_json::Value = serde_json::from_slice(outs[annotated[0]]).unwrap();
    assert_eq!(first["event"]["id"], "hook-net-0001");
    assert_eq!(first["apt_netcon"]["shell"]["event"]["id"], "hook-exec-0001");
    assert_eq!(first["apt_netcon"]["span_ms"], 1234);
    // The second is written with dotted keys and sits exactly at maxspan.
    let second: serde_json::Value = serde_json::from_slice(outs[annotated[1]]).unwrap();
    assert_eq!(second["event.id"], "hook-net-0002");
    assert_eq!(second["apt_netcon"]["span_ms"], 5000);
}

#[test]
fn stats_on_stderr() {
    let out = run(&[], &sample());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("29 records"), "{err}");
    assert!(err.contains("sequences_completed=2"), "{err}");
}

#[test]
fn bad_lines_pass_through_and_are_reported_with_line_numbers() {
    let input = b"{\"a\":1}\nnot json\n[1,2]\n\n{\"a\":\xff}\r\n{\"b\":2}";
    let out = run(&[], input);
    assert!(out.status.success());
    assert_eq!(out.stdout, input.to_vec());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("<stdin>:2: not valid JSON"), "{err}");
    assert!(err.contains("<stdin>:3: top level is not an object"), "{err}");
    assert!(err.contains("<stdin>:5: not valid JSON"), "{err}");
    assert!(err.contains("invalid_json=2"), "{err}");
    assert!(err.contains("1 empty lines"), "{err}");
}

#[test]
fn only_first_errors_are_listed() {
    let input = "x\n".repeat(20);
    let out = run(&[], input.as_bytes());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.matches("not valid JSON").count(), 5, "{err}");
    assert!(err.contains("15 more bad records not shown"), "{err}");
}

#[test]
fn bad_config_exits_2_naming_the_key() {
    let cfg = tmp("bad.json", r#"{"max_pending_sequence": 5}"#);
    let out = run(&["--config", &cfg], b"");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("max_pending_sequence") && err.contains("valid keys"), "{err}");
    let cfg = tmp("bad2.json", r#"{"kibana_fields": "yes"}"#);
    let out = run(&["--config", &cfg], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("kibana_fields"));
}

#[test]
fn bad_rule_exits_2_with_position() {
    let rule = tmp("bad.eql", "sequence by host.id\n  [process where true]\n  [network where process.name ==]\n");
    let out = run(&["--rule", &rule], b"");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains('^'), "{err}");
    let out = run(&["--rule", "no-such-rule"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("apt_netcon_v11"));
}

#[test]
fn rule_selection() {
    let out = run(&["--rule", "apt_netcon_v11", "--print-rule"], b"");
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout).unwrap().contains("/usr/bin/apt-listbugs apt"));
    let rule = tmp("any.eql", "network where destination.port == 443\n");
    let out = run(&["--rule", &rule, "--quiet"], b"{\"event\":{\"category\":\"network\"},\"destination\":{\"port\":443},\"@timestamp\":\"2024-01-01T00:00:00Z\"}\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rule"]["name"], "any");
}

#[test]
fn missing_input_file_is_an_error() {
    let out = run(&["/nonexistent/file.ndjson"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr).unwrap().contains("cannot open"));
}

/// With `max_lateness`, the sample reversed (every event out of order) gives
/// the sample's alerts as standalone records: every input line comes out
/// unchanged, and the alerts follow (in stream position or at the end).
#[test]
fn max_lateness_turns_a_reversed_stream_into_standalone_alerts() {
    let sample = sample();
    let mut lines: Vec<&[u8]> = sample.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let inline = run(&["-q"], &sample);
    let want: Vec<serde_json::Value> = String::from_utf8_lossy(&inline.stdout)
        .lines()
        .filter(|l| l.contains("\"kibana\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(want.len(), 2);
    lines.reverse();
    let mut reversed = lines.join(&b'\n');
    reversed.push(b'\n');
    let cfg = tmp("late.json", r#"{"max_lateness":"1d"}"#);
    let out = run(&["-q", "--config", &cfg], &reversed);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let got: Vec<&str> = text.lines().collect();
    assert_eq!(got.len(), lines.len() + 2, "every record plus two standalone alerts");
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(got[i].as_bytes(), *l, "line {i} unchanged");
    }
    let mut alerts: Vec<serde_json::Value> = got[lines.len()..].iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let id = |v: &serde_json::Value| v["kibana"]["alert"]["uuid"].as_str().unwrap().to_string();
    alerts.sort_by_key(id);
    let mut want = want;
    want.sort_by_key(id);
    assert_eq!(alerts, want, "the same alerts, documents and all, as the time-sorted sample inline");
}
