//! The `apt-netcon` command line: exit codes, messages, pass-through.

mod scratch;

use std::io::Write;
use std::process::{Command, Output, Stdio};

#[path = "../benches/corpus/mod.rs"]
mod corpus;

/// The CLI with `args`, its standard streams piped.
fn spawn(args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_apt-netcon"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn run(args: &[&str], stdin: &[u8]) -> Output {
    feed(spawn(args), stdin)
}

/// Write `stdin` to `child` and wait for its output.
fn feed(mut child: std::process::Child, stdin: &[u8]) -> Output {
    // Written from another thread: a large input would otherwise fill the
    // output pipe before the child's output is read.
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn sample() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/sample.ndjson")).unwrap()
}

fn tmp(name: &str, content: &str) -> String {
    let dir = scratch::dir("cli");
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

/// A generated multi-host stream (the benchmarks' realistic corpus: 300
/// hosts, planted sequences, near misses, background), with a few odd lines
/// mixed in: blank, not JSON, a record without `host.id`, a dotted `host.id`,
/// an array `host.id`, and a last line without a newline.
fn multi_host_stream(events: usize) -> Vec<u8> {
    let c = corpus::Corpus::generate(&corpus::Spec::new(events, 300));
    assert!(c.mix.planted > 20, "the stream holds sequences to find");
    let mut out = Vec::new();
    for (i, line) in c.lines().enumerate() {
        out.extend_from_slice(line);
        out.extend_from_slice(if i % 997 == 0 { b"\r\n" } else { b"\n" });
        match i % 1500 {
            100 => out.extend_from_slice(b"\n   \n"),
            200 => out.extend_from_slice(b"not json\n"),
            300 => out.extend_from_slice(b"{\"event\":{\"category\":\"network\"},\"host\":{\"id\":null}}\n"),
            400 => out.extend_from_slice(b"{\"event\":{\"category\":\"process\"},\"host\":{\"id\":[\"a\",\"a\"]}}\n"),
            _ => {}
        }
    }
    out.extend_from_slice(b"{\"host.id\":\"last\"}");
    out
}

/// The output lines that are alert records (annotated or standalone),
/// terminators kept.
fn alert_lines(out: &[u8]) -> Vec<u8> {
    out.split_inclusive(|&b| b == b'\n').filter(|l| l.windows(14).any(|w| w == b"\"apt_netcon\":{")).flatten().copied().collect()
}

#[test]
fn threads_give_the_output_of_one_thread() {
    let input = multi_host_stream(30_000);
    let one = run(&["-q"], &input);
    assert!(one.status.success());
    let alerts = alert_lines(&one.stdout);
    assert!(alerts.len() > 1000, "alerts in the stream");
    for t in ["2", "3", "5"] {
        let many = run(&["--threads", t], &input);
        assert!(many.status.success());
        assert!(many.stdout == one.stdout, "--threads {t}: the bytes of one thread");
        let err = String::from_utf8(many.stderr).unwrap();
        assert!(err.contains("records=30"), "{err}");
        assert!(err.contains("not valid JSON"), "bad lines still reported: {err}");
    }
    // The same from several files (line numbers restart per file).
    let dir = scratch::dir("cli");
    let (a, b) = (dir.join("a.ndjson"), dir.join("b.ndjson"));
    let cut = input.len() / 2;
    let cut = cut + input[cut..].iter().position(|&b| b == b'\n').unwrap() + 1;
    std::fs::write(&a, &input[..cut]).unwrap();
    std::fs::write(&b, &input[cut..]).unwrap();
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let files1 = run(&[a, b], b"");
    assert!(files1.stdout == one.stdout);
    let files2 = run(&["--threads", "2", a, b], b"");
    assert!(files2.stdout == one.stdout);
    // The same bad lines reported, by file and line number, and the same counters.
    let report = |o: &Output| -> Vec<String> {
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        err.lines().filter(|l| !l.contains(" s, ") && !l.contains("pending=")).map(String::from).collect()
    };
    assert_eq!(report(&files2), report(&files1));
    assert!(report(&files1).iter().any(|l| l.contains(&format!("{a}:"))));
}

#[test]
fn a_pack_on_threads_gives_the_output_of_one_thread() {
    // Host-local rules (split by host.id: a fast sequence, a generic one,
    // a sample, a single-event rule) and one that is not (its sequence
    // joins on process ids only: it runs in one more pack, on the records
    // its stages may match).
    let dir = scratch::dir("cli-pack");
    let rules = [
        ("apt.eql", apt_netcon::config::rule::QUERY_V5.to_string()),
        (
            "bash_then_net.eql",
            "sequence by host.id with maxspan=2s [process where process.name == \"bash\" and process.args : \"-c\"] [network where event.action == \"connection_attempted\"]".into(),
        ),
        ("sample.eql", "sample by host.id [process where process.parent.name == \"apt\"] [network where event.action == \"connection_attempted\"]".into()),
        ("single.eql", "process where process.parent.name == \"apt\" and process.name == \"sh\"".into()),
        (
            "by_pid.eql",
            "sequence with maxspan=5s [process where process.name in (\"bash\", \"sh\", \"dash\")] by process.entity_id [network where true] by process.parent.entity_id".into(),
        ),
    ];
    for (name, q) in &rules {
        std::fs::write(dir.join(name), q).unwrap();
    }
    let d = dir.to_str().unwrap();
    let input = multi_host_stream(20_000);
    let one = run(&["--rules", d], &input);
    assert!(one.status.success(), "{}", String::from_utf8_lossy(&one.stderr));
    let text = String::from_utf8_lossy(&one.stdout).into_owned();
    for (name, _) in &rules {
        let stem = name.trim_end_matches(".eql");
        let n = text.lines().filter(|l| l.contains("\"signal\"") && l.contains(&format!("\"name\":\"{stem}\""))).count();
        assert!(n > 0, "{name}: alerts in the stream");
    }
    for t in ["2", "3"] {
        let many = run(&["--rules", d, "--threads", t], &input);
        assert!(many.status.success());
        assert!(many.stdout == one.stdout, "--threads {t}: the bytes of one thread");
        let err = String::from_utf8_lossy(&many.stderr);
        assert!(err.contains(&format!("4 of 5 rules split by host.id over {t} packs")), "{err}");
        assert!(err.contains("by_pid (by_pid): its sequence does not join on host.id"), "{err}");
        // The alerts and the unreadable records (the rules tested per record
        // depend on each pack's own state).
        let summary = |o: &Output| {
            let err = String::from_utf8_lossy(&o.stderr).into_owned();
            let line = err.lines().find(|l| l.contains(" records in ")).unwrap().to_string();
            line.split(" s, ").nth(1).unwrap().split(';').next().unwrap().to_string()
        };
        assert_eq!(summary(&many), summary(&one), "the same alerts and unreadable records counted");
        let only = run(&["--rules", d, "--threads", t, "--alerts-only", "-q"], &input);
        let want: Vec<&str> = text.lines().filter(|l| l.contains("\"signal\"")).collect();
        assert_eq!(String::from_utf8_lossy(&only.stdout).lines().collect::<Vec<_>>(), want, "--alerts-only");
    }
    // Several files, read one after the other.
    let cut = input.len() / 3;
    let cut = cut + input[cut..].iter().position(|&b| b == b'\n').unwrap() + 1;
    let (a, b) = (dir.join("a.ndjson"), dir.join("b.ndjson"));
    std::fs::write(&a, &input[..cut]).unwrap();
    std::fs::write(&b, &input[cut..]).unwrap();
    let files = run(&["--rules", d, "-q", "-j2", a.to_str().unwrap(), b.to_str().unwrap()], b"");
    assert!(files.stdout == one.stdout, "two files");
    // max_lateness above 0: one thread, said so.
    let cfg = dir.join("late.json");
    std::fs::write(&cfg, format!("{{\"rules_dir\": \"{d}\", \"max_lateness\": \"1s\"}}")).unwrap();
    let late = run(&["--config", cfg.to_str().unwrap(), "-j2"], b"");
    assert!(String::from_utf8_lossy(&late.stderr).contains("running on one thread: max_lateness"), "{}", String::from_utf8_lossy(&late.stderr));
    // host.id mapped otherwise than ECS: one thread.
    let cfg = dir.join("alias.json");
    std::fs::write(&cfg, format!("{{\"rules_dir\": \"{d}\", \"field_types\": {{\"host.id\": {{\"type\": \"alias\", \"path\": \"agent.id\"}}}}}}")).unwrap();
    let aliased = run(&["--config", cfg.to_str().unwrap(), "-j2"], b"");
    assert!(String::from_utf8_lossy(&aliased.stderr).contains("running on one thread: field_types"), "{}", String::from_utf8_lossy(&aliased.stderr));
}

#[test]
fn a_pack_on_threads_reads_what_its_rules_not_split_read() {
    // A record only the rules not split can find unreadable (a lone
    // surrogate in a field only they read): the host packs must find it so
    // too and hand it on, or that pack's clock would not move as on one
    // thread (here: a later, older first stage then completes on threads).
    let dir = scratch::dir("cli-gate");
    let rules = [
        ("f_fast.eql", r#"sequence with maxspan=1m [process where process.name == "a1"] [process where process.name == "b1"]"#),
        ("g_generic.eql", r#"sequence by user.weird with maxspan=1m [process where process.name == "g1" and process.pid + 0 > 0] [process where process.name == "g2"]"#),
        ("h_local.eql", r#"sequence by host.id with maxspan=1m [process where process.name == "h1"] [process where process.name == "h2"]"#),
    ];
    for (name, q) in rules {
        std::fs::write(dir.join(name), q).unwrap();
    }
    let stream = concat!(
        r#"{"@timestamp":"2026-01-01T00:10:00Z","event":{"category":["process"]},"host":{"id":"h1"},"process":{"name":"b1"},"user":{"weird":"\ud800"}}"#,
        "\n",
        r#"{"@timestamp":"2026-01-01T00:00:00Z","event":{"category":["process"]},"host":{"id":"h2"},"process":{"name":"a1"}}"#,
        "\n",
        r#"{"@timestamp":"2026-01-01T00:00:01Z","event":{"category":["process"]},"host":{"id":"h3"},"process":{"name":"b1"}}"#,
        "\n"
    );
    let d = dir.to_str().unwrap();
    let counts = |o: &Output| -> String {
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        err.lines().find(|l| l.contains(" records in ")).unwrap_or("").split(" s, ").nth(1).unwrap_or("").split(';').next().unwrap_or("").to_string()
    };
    let one = run(&["--rules", d, "--alerts-only"], stream.as_bytes());
    assert!(one.status.success());
    assert!(counts(&one).contains("0 alerts, 1 passed through unread"), "{}", counts(&one));
    for t in ["2", "3"] {
        let many = run(&["--rules", d, "--alerts-only", "--threads", t], stream.as_bytes());
        assert!(many.stdout == one.stdout, "--threads {t}: {}", String::from_utf8_lossy(&many.stdout));
        assert_eq!(counts(&many), counts(&one), "--threads {t}");
    }
}

/// The sample into the CLI with `args`, its input left open: the first
/// line out (which must come before the input ends), then, once the input
/// is closed, how many lines came in all.
fn live_alerts(args: &[&str]) -> (String, usize) {
    let mut child = spawn(args);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&sample()).unwrap();
    stdin.flush().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let first = rx.recv_timeout(std::time::Duration::from_secs(20));
    if first.is_err() {
        let _ = child.kill();
    }
    let first = first.unwrap_or_else(|_| panic!("{args:?}: an alert before the input ends"));
    drop(stdin);
    assert!(child.wait().unwrap().success());
    (first, 1 + rx.iter().count())
}

#[test]
fn a_pack_writes_alerts_as_records_come() {
    // The input stays open after the sample: its alerts must come out
    // before the end of the input (a shipper's pipe).
    let single = tmp("live-single.eql", r#"process where process.parent.name == "apt" and process.name == "sh""#);
    let (first, all) = live_alerts(&["-q", "--alerts-only", "--rule", "apt_netcon_v5", "--rule", &single]);
    assert!(first.contains("\"signal\""), "{first}");
    assert_eq!(all, 6, "the six alerts of the sample");
}

#[test]
fn threads_write_alerts_as_records_come() {
    // The same with one rule on two threads: the reading thread used to
    // fill a 2 MiB block before the workers saw anything.
    let (first, all) = live_alerts(&["-q", "--alerts-only", "--threads", "2"]);
    assert!(first.contains("\"apt_netcon\":{"), "{first}");
    let want = alert_lines(&run(&["-q"], &sample()).stdout).split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
    assert_eq!(all, want, "the sample's alerts");
}

#[test]
fn alerts_only_writes_the_alert_lines() {
    let input = multi_host_stream(20_000);
    let full = run(&["-q"], &input);
    let want = alert_lines(&full.stdout);
    assert!(!want.is_empty());
    for args in [&["-q", "--alerts-only"][..], &["-q", "--alerts-only", "--threads", "2"]] {
        let out = run(args, &input);
        assert!(out.status.success());
        assert!(out.stdout == want, "{args:?}");
    }
    // Standalone alerts too (max_lateness: the reversed sample).
    let sample = sample();
    let mut lines: Vec<&[u8]> = sample.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    lines.reverse();
    let mut reversed = lines.join(&b'\n');
    reversed.push(b'\n');
    let cfg = tmp("late-ao.json", r#"{"max_lateness":"1d"}"#);
    let full = run(&["-q", "--config", &cfg], &reversed);
    let want = alert_lines(&full.stdout);
    assert_eq!(want.iter().filter(|&&b| b == b'\n').count(), 2);
    let out = run(&["-q", "--config", &cfg, "--alerts-only"], &reversed);
    assert_eq!(out.stdout, want);
}

#[test]
fn threads_fall_back_to_one_when_the_rule_cannot_be_split() {
    let cfg = tmp("late-t.json", r#"{"max_lateness":"1d"}"#);
    let out = run(&["--threads", "2", "--config", &cfg], &sample());
    assert!(out.status.success());
    assert!(out.stdout == run(&["-q", "--config", &cfg], &sample()).stdout);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("running on one thread") && err.contains("max_lateness"), "{err}");
    let rule = tmp("one.eql", "network where destination.port == 443\n");
    let out = run(&["--threads", "2", "--rule", &rule], &sample());
    assert!(String::from_utf8(out.stderr).unwrap().contains("running on one thread"));
    let out = run(&["--threads", "x"], b"");
    assert_eq!(out.status.code(), Some(2));
}

/// Lines far longer than a read block, and a stream that ends without a
/// newline, come out as they went in.
#[test]
fn long_lines_and_no_final_newline() {
    let big = format!("{{\"message\":\"{}\"}}", "x".repeat(3 << 20));
    let input = format!("{big}\n{{\"a\":1}}\n{big}");
    for args in [&["-q"][..], &["-q", "--threads", "2"]] {
        let out = run(args, input.as_bytes());
        assert!(out.status.success());
        assert!(out.stdout == input.as_bytes(), "{args:?}");
    }
    // From files, which the threads read in byte ranges: lines longer than
    // a range, an empty file, a file of one short line without a newline.
    let big_file = tmp("long.ndjson", &input);
    let empty = tmp("empty.ndjson", "");
    let short = tmp("short.ndjson", "{\"a\":2}");
    for t in ["1", "2", "3"] {
        let out = run(&["-q", "--threads", t, &big_file, &empty, &short, &big_file], b"");
        assert!(out.status.success());
        let want = [input.as_bytes(), b"{\"a\":2}", input.as_bytes()].concat();
        assert!(out.stdout == want, "--threads {t}");
    }
}

#[test]
fn threads_read_a_file_whose_last_range_holds_no_newline() {
    // Files of a whole number of the threads' 2 MiB ranges, whose last
    // range holds no newline but its last byte: the last line was taken to
    // start past the first read of that range (its last byte written twice,
    // counted as an empty line).
    for (size, name) in [(4usize << 20, "two-ranges.ndjson"), (2 << 20, "one-range.ndjson"), ((6 << 20) + 1, "three-ranges.ndjson")] {
        let mut text = b"{\"a\":1}\n{\"message\":\"".to_vec();
        text.resize(size - 3, b'x');
        text.extend_from_slice(b"\"}\n");
        let file = tmp(name, "");
        std::fs::write(&file, &text).unwrap();
        for t in ["1", "2", "3"] {
            let out = run(&["--threads", t, &file], b"");
            assert!(out.status.success());
            assert!(out.stdout == text, "{name}, --threads {t}: {} bytes out of {}", out.stdout.len(), text.len());
            assert!(String::from_utf8_lossy(&out.stderr).contains("2 records (0 empty lines)"), "{name}, --threads {t}");
        }
    }
}

#[test]
fn threads_read_a_file_that_grows_while_read() {
    // A file of 11 ranges of 2 MiB whose last line has no newline yet and
    // starts before the last range; it grows while the CLI runs, its output
    // not read yet. What comes out must be the file as it grew, up to where
    // a line or the file ended: the last range used to skip the end of that
    // line, which came out cut and glued to the next.
    let mut text = Vec::new();
    let mut k = 0;
    while text.len() < (20 << 20) - 3000 {
        text.extend_from_slice(format!("{{\"n\":{k},\"pad\":\"{}\"}}\n", "q".repeat(1000)).as_bytes());
        k += 1;
    }
    text.truncate((20 << 20) - 3000);
    let cut = text.iter().rposition(|&b| b == b'\n').unwrap() + 1;
    text.truncate(cut);
    text.extend_from_slice(format!("{{\"pad\":\"{}", "p".repeat(5000)).as_bytes());
    let file = tmp("grows.ndjson", "");
    std::fs::write(&file, &text).unwrap();
    let mut child = spawn(&["-q", "--threads", "2", &file]);
    drop(child.stdin.take());
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut rest = b"\"}\n".to_vec();
    for j in 0..2000 {
        rest.extend_from_slice(format!("{{\"m\":{j}}}\n").as_bytes());
    }
    std::fs::OpenOptions::new().append(true).open(&file).unwrap().write_all(&rest).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let grown = [text.as_slice(), rest.as_slice()].concat();
    let o = &out.stdout;
    assert!(o.len() <= grown.len() && *o == grown[..o.len()], "not the file as it grew ({} bytes out)", o.len());
    assert!(o.len() == text.len() || o.ends_with(b"\n"), "cut inside a line ({} bytes out of {})", o.len(), grown.len());
}

#[test]
fn a_file_whose_last_line_never_ends_is_not_held_whole() {
    // A regular file whose last line, 192 MiB, has no newline: with
    // threads, that line was read into memory whole (the last range read on
    // to the end of the file). It is now read as from a pipe, and so goes
    // on in pieces. The process's own memory (RssAnon, looked at every few
    // milliseconds while it runs; not the file's pages it maps) stays far
    // below the line, whatever reads it.
    let mut text = b"{\"a\":1}\n{\"b\":2}\n{\"message\":\"".to_vec();
    text.resize(text.len() + (192 << 20), b'x');
    let file = tmp("never-ends.ndjson", "");
    std::fs::write(&file, &text).unwrap();
    let pack = ["--rule", "apt_netcon_v5", "--rule", "apt_netcon_v11"];
    let cases: [&[&str]; 4] = [&[], &["--threads", "2"], &["--threads", "3"], &pack];
    for extra in cases {
        let mut args = vec!["-q", file.as_str()];
        args.extend_from_slice(extra);
        let mut child = spawn(&args);
        drop(child.stdin.take());
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            std::io::Read::read_to_end(&mut stdout, &mut all).map(|_| all)
        });
        let (mut peak_kb, mut looks) = (0u64, 0);
        while let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", child.id())) {
            let Some(anon) = status.lines().find_map(|l| l.strip_prefix("RssAnon:")) else { break };
            peak_kb = peak_kb.max(anon.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0));
            looks += 1;
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert!(child.wait().unwrap().success(), "{extra:?}");
        let out = reader.join().unwrap().unwrap();
        assert!(out == text, "{extra:?}: {} bytes out of {}", out.len(), text.len());
        assert!(looks > 0, "{extra:?}: no RssAnon in /proc/PID/status");
        assert!(peak_kb < 128 << 10, "{extra:?}: {peak_kb} kB held, for a last line of 192 MiB");
        eprintln!("{extra:?}: at most {peak_kb} kB held ({looks} looks) for a last line of 192 MiB");
    }
}

#[test]
fn a_pack_writes_each_record_then_one_alert_per_match() {
    let a = tmp("pack-a.eql", r#"process where process.name == "curl""#);
    let b = tmp("pack-b.eql", r#"process where process.name : "cu*" and ?process.pid > 100"#);
    let c = tmp("pack-c.eql", r#"process where process.name == "wget""#);
    let recs = concat!(
        r#"{"@timestamp":"2024-05-01T10:00:00Z","event":{"category":["process"]},"process":{"name":"curl","pid":4242}}"#,
        "\n",
        r#"{"@timestamp":"2024-05-01T10:00:01Z","event":{"category":["process"]},"process":{"name":"ls"}}"#,
        "\n"
    );
    let out = run(&["--rule", &a, "--rule", &b, "--rule", &c], recs.as_bytes());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), 4, "two records, two alerts: {lines:#?}");
    assert_eq!(lines[0], recs.lines().next().unwrap(), "the record goes on unchanged");
    for l in &lines[1..3] {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["event"]["kind"], "signal");
        assert_eq!(v["process"]["name"], "curl");
    }
    assert_eq!(lines[3], recs.lines().nth(1).unwrap());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a pack of 3 rules") && err.contains("2 alerts"), "{err}");
    // --alerts-only: the two alerts.
    let out = run(&["--rule", &a, "--rule", &b, "--rule", &c, "--alerts-only", "--quiet"], recs.as_bytes());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    // A rule that does not load: every one named, exit 2; --skip-broken-rules runs the rest.
    let bad = tmp("pack-bad.eql", r#"process where x | head 1"#);
    let out = run(&["--rule", &a, "--rule", &bad], recs.as_bytes());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1 of 2 rules do not load") && err.contains("pack-bad.eql") && err.contains("'| head'"), "{err}");
    let out = run(&["--rule", &a, "--rule", &bad, "--skip-broken-rules"], recs.as_bytes());
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("skipped"));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
}

#[test]
fn the_cli_warns_once_when_records_look_unparsed() {
    let mut input = Vec::new();
    for i in 0..50 {
        input.extend_from_slice(format!("{{\"log\": \"line {i}\"}}\n").as_bytes());
    }
    let out = run(&[], &input);
    assert!(out.status.success());
    assert_eq!(out.stdout, input, "records go on unchanged");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("warning:").count(), 1, "{err}");
    assert!(err.contains("look unparsed") && err.contains("`log`"), "{err}");
}

/// `--help` (and `-h`): every option, the subcommands, the config keys'
/// pointer, the examples and the exit statuses; on standard output, exit 0.
#[test]
fn help_lists_every_option() {
    let out = run(&["--help"], b"");
    assert!(out.status.success());
    assert!(out.stderr.is_empty());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "Usage: apt-netcon [OPTIONS] [FILE]...",
        "--config <FILE>",
        "--rule <NAME|FILE>",
        "--rules <DIR>",
        "--skip-broken-rules",
        "-q, --quiet",
        "--print-rule",
        "--alerts-only",
        "-j, --threads <N>",
        "[default: 1]",
        "-h, --help",
        "-V, --version",
        "serve",
        "completions",
        "docs/configuration.md",
        "Examples:",
        "Exit status: 0 done, 1 an input or output error, 2 a bad option",
    ] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
    assert_eq!(run(&["-h"], b"").stdout, help.as_bytes(), "-h is --help");
    let out = run(&["-V"], b"");
    assert!(out.status.success());
    assert_eq!(out.stdout, format!("apt-netcon {}\n", env!("CARGO_PKG_VERSION")).into_bytes());
}

/// Usage errors: exit 2 (as before clap), the option named on standard
/// error, nothing on standard output, no input read.
#[test]
fn usage_errors_exit_2_naming_the_option() {
    let cases: &[(&[&str], &str)] = &[
        (&["--bogus"], "unexpected argument '--bogus'"),
        (&["-x", "-"], "unexpected argument '-x'"),
        (&["--config"], "a value is required for '--config <FILE>'"),
        (&["-q", "--rule"], "a value is required for '--rule <NAME|FILE>'"),
        (&["--threads"], "a value is required for '--threads <N>'"),
        (&["--threads", "x"], "invalid value 'x' for '--threads <N>': a number from 0 to 64"),
        (&["-j", "65"], "invalid value '65' for '--threads <N>'"),
        (&["--rules", "a", "--rules", "b"], "'--rules <DIR>' cannot be used multiple times"),
        (&["--quiet=yes"], "--quiet"),
        (&["completions", "tcsh"], "invalid value 'tcsh'"),
    ];
    for (args, needle) in cases {
        let out = run(args, &sample());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(needle), "{args:?}: expected {needle} in: {err}");
        assert!(err.contains("--help"), "{args:?}: points to --help: {err}");
    }
}

/// The options' other forms: `--opt=value`, short forms, `--` before files
/// (a file named like an option), options after files.
#[test]
fn option_forms() {
    let want = run(&["-q", "--alerts-only", "--threads", "2"], &sample()).stdout;
    assert!(!want.is_empty());
    for args in [&["--quiet", "--alerts-only", "--threads=2"][..], &["-q", "-j", "2", "--alerts-only"], &["-", "--alerts-only", "-qj2"]] {
        let out = run(args, &sample());
        assert!(out.status.success(), "{args:?}");
        assert!(out.stdout == want, "{args:?}");
    }
    let f = tmp("--alerts-only", &String::from_utf8(sample()).unwrap());
    let dir = std::path::Path::new(&f).parent().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_apt-netcon"))
        .current_dir(dir)
        .args(["-q", "--", "--alerts-only"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, run(&["-q"], &sample()).stdout, "after --: a file");
    // `serve` and `completions` are subcommands only as the first word.
    let out = run(&["-q", "serve"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open serve"));
}

/// `completions SHELL`: a completion script on standard output, exit 0.
#[test]
fn completions_print_a_script() {
    let out = run(&["completions", "bash"], b"");
    assert!(out.status.success());
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(script.contains("--rules") && script.contains("--threads"), "{script}");
    assert!(script.contains("--drain-timeout"), "serve's options too");
    assert!(script.contains("complete -F") || script.contains("complete -o"), "{script}");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = run(&["completions", shell], b"");
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains("rules") && script.contains("drain-timeout"), "{shell}: {script}");
    }
}

/// Output that cannot be written (a full device): the write error is named
/// and the run fails with status 1, from a file (mapped) or from standard
/// input (read), on one thread (written by its writing thread) or two; the
/// same for a pack (its writer writes each block as it comes).
#[test]
fn a_failed_write_is_reported_and_fails_the_run() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        eprintln!("no /dev/full here: skipped");
        return;
    };
    let text = String::from_utf8(sample()).unwrap();
    let file = tmp("full.ndjson", &text);
    let pack = ["--quiet", "--rule", "apt_netcon_v5", "--rule", "apt_netcon_v11"];
    for (args, from_stdin) in [
        (vec!["--quiet", file.as_str()], false),
        (vec!["--quiet", "-"], true),
        (vec!["--quiet", "--threads", "2", file.as_str()], false),
        ([&pack[..], &[file.as_str()]].concat(), false),
        ([&pack[..], &["-"]].concat(), true),
        ([&pack[..], &["--threads", "2", file.as_str()]].concat(), false),
        ([&pack[..], &["--alerts-only", file.as_str()]].concat(), false),
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_apt-netcon"))
            .args(&args)
            .stdin(if from_stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(full.try_clone().unwrap())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(mut pipe) = child.stdin.take() {
            let _ = pipe.write_all(text.as_bytes());
        }
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("apt-netcon: writing output: No space left on device"), "{args:?}: {err}");
    }
}

/// A pipe whose reading end is closed: writing to it fails (EPIPE).
fn broken_pipe() -> std::fs::File {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors `pipe` writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just opened and are owned here only.
    unsafe {
        libc::close(fds[0]);
        std::fs::File::from_raw_fd(fds[1])
    }
}

#[test]
fn a_closed_standard_error_does_not_end_the_run() {
    // The counters, the bad-record report and the notes all go to standard
    // error; when it is a pipe nobody reads any more, they are dropped and
    // the records still all go out (they used to end the run, exit 101).
    let mut input = sample();
    input.extend_from_slice(b"not json\n{\"a\":\n");
    let want = run(&["--quiet"], &input).stdout;
    assert!(!want.is_empty());
    let rules = format!("{}/../shared/rules/elastic-linux-eql", env!("CARGO_MANIFEST_DIR"));
    let mut cases = vec![vec![], vec!["--threads", "2"], vec!["--rule", "apt_netcon_v11", "--config", "/nonexistent.json"]];
    if std::path::Path::new(&rules).is_dir() {
        cases.push(vec!["--rules", rules.as_str(), "--threads", "2"]);
    } else {
        eprintln!("{rules} absent: the pack case is skipped");
    }
    for args in cases {
        let quiet: Vec<&str> = ["--quiet"].iter().copied().chain(args.iter().copied()).collect();
        let expected = run(&quiet, &input);
        let child = Command::new(env!("CARGO_BIN_EXE_apt-netcon"))
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(broken_pipe())
            .spawn()
            .unwrap();
        let out = feed(child, &input);
        assert_eq!(out.status.code(), expected.status.code(), "{args:?}");
        assert!(out.stdout == expected.stdout, "{args:?}");
    }
    // A closed standard output for --print-rule: exit 1, no panic (101).
    for args in [&["--print-rule"][..], &["--print-rule", "--rule", "apt_netcon_v11", "--rule", "apt_netcon_v5"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_apt-netcon")).args(args).stdout(broken_pipe()).stderr(Stdio::piped()).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// A line of `len` bytes (without terminator) that is not blank.
fn long_line(len: usize, fill: u8) -> Vec<u8> {
    let mut l = b"{\"message\":\"".to_vec();
    l.resize(len, fill);
    l
}

/// The standard error of a run, but its line of timings.
fn messages(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr).lines().filter(|l| !l.contains(" s, ") && !l.contains(" s (")).map(String::from).collect()
}

#[test]
fn a_line_longer_than_any_record_goes_on_in_pieces() {
    // With max_record_bytes 100,000, a partial line of a block's size (1
    // or 2 MiB) is surely too large: from a pipe it goes on in pieces. The
    // bytes, counters and messages are those of the same file mapped (read
    // whole; a pack maps 8 MiB at a time, and reads the file from a line
    // longer than that on); for a pack, those of short bad lines in place
    // of the long.
    let config = tmp("small-records.json", r#"{"max_record_bytes": 100000}"#);
    let s = sample();
    let parts: Vec<Vec<u8>> = vec![
        s.clone(),
        long_line(9 << 20, b'x'),
        b"\n".to_vec(),
        vec![b' '; 3 << 20],
        b"\n".to_vec(),
        s.clone(),
        long_line(4 << 20, b'y'),
        b"\r\n".to_vec(),
        long_line(3 << 20, b'z'),
    ];
    let input = parts.concat();
    let file = tmp("long-lines.ndjson", "");
    std::fs::write(&file, &input).unwrap();
    for threads in ["1", "2"] {
        let piped = run(&["--config", &config, "--threads", threads], &input);
        let mapped = run(&["--config", &config, "--threads", threads, &file], b"");
        assert!(piped.status.success() && mapped.status.success(), "--threads {threads}");
        assert!(piped.stdout == mapped.stdout, "--threads {threads}: the bytes of the mapped file");
        let named: Vec<String> = messages(&mapped).iter().map(|l| l.replace(&file, "<stdin>")).collect();
        assert_eq!(messages(&piped), named, "--threads {threads}");
        let err = messages(&piped).join("\n");
        assert!(err.contains("too_large=3"), "{err}");
        let summary = String::from_utf8_lossy(&piped.stderr).into_owned();
        assert!(summary.contains("61 records (1 empty lines)"), "{summary}");
        let n = s.iter().filter(|&&b| b == b'\n').count();
        for line in [n + 1, 2 * n + 3, 2 * n + 4] {
            assert!(err.contains(&format!("<stdin>:{line}: record larger than max_record_bytes")), "line {line}: {err}");
        }
    }
    // A pack (two built-in rules): the long lines read by no rule.
    let short: Vec<u8> = [&s[..], b"x\n", b" \n", &s[..], b"y\r\n", b"z"].concat();
    let pack = ["--config", config.as_str(), "--rule", "apt_netcon_v5", "--rule", "apt_netcon_v11"];
    for threads in ["1", "2"] {
        let args: Vec<&str> = pack.iter().copied().chain(["--threads", threads]).collect();
        let long = run(&args, &input);
        let want = run(&args, &short);
        assert!(long.status.success(), "{}", String::from_utf8_lossy(&long.stderr));
        // The same file mapped: the same bytes, counts and messages (the
        // long lines whole, refused as too large, not in pieces).
        let from_file: Vec<&str> = args.iter().copied().chain([file.as_str()]).collect();
        let mapped = run(&from_file, b"");
        assert!(mapped.status.success(), "{}", String::from_utf8_lossy(&mapped.stderr));
        assert!(mapped.stdout == long.stdout, "--threads {threads}: the bytes of the mapped file");
        let signals = |o: &[u8]| -> Vec<u8> { o.split_inclusive(|&b| b == b'\n').filter(|l| l.windows(8).any(|w| w == b"\"signal\"")).collect::<Vec<_>>().concat() };
        assert!(!signals(&want.stdout).is_empty());
        assert!(signals(&long.stdout) == signals(&want.stdout), "--threads {threads}: the alerts");
        let records: Vec<u8> = long.stdout.split_inclusive(|&b| b == b'\n').filter(|l| !l.windows(8).any(|w| w == b"\"signal\"")).collect::<Vec<_>>().concat();
        assert!(records == input, "--threads {threads}: every record unchanged");
        // (Rules tested per record differ: the short bad lines go to every
        // rule, the long ones to none.)
        let summary = |o: &Output| {
            let err = String::from_utf8_lossy(&o.stderr).into_owned();
            let counts = err.lines().filter(|l| l.contains(" records in ")).map(|l| l.split(" s, ").nth(1).unwrap_or("").split(';').next().unwrap_or("").to_string());
            messages(o).into_iter().filter(|l| !l.contains(" indexed in ")).chain(counts).collect::<Vec<_>>()
        };
        // The same counts and messages, but the long lines are counted (and
        // reported, each by its line number) as too large and the short
        // ones as unreadable.
        let (long_counts, want_counts) = (summary(&long), summary(&want));
        let named: Vec<String> = summary(&mapped).iter().map(|l| l.replace(&file, "<stdin>")).collect();
        assert_eq!(named, long_counts, "--threads {threads}: the mapped file's counts and messages");
        let too_large = "3 passed through unread (3 larger than max_record_bytes, 0 unreadable by a rule that could match)";
        let unreadable = "3 passed through unread (0 larger than max_record_bytes, 3 unreadable by a rule that could match)";
        assert!(long_counts.iter().any(|l| l.contains(too_large)), "{long_counts:?}");
        assert!(want_counts.iter().any(|l| l.contains(unreadable)), "{want_counts:?}");
        let n = s.iter().filter(|&&b| b == b'\n').count();
        for line in [n + 1, 2 * n + 3, 2 * n + 4] {
            let (big, bad) = (format!("<stdin>:{line}: record larger than max_record_bytes"), format!("<stdin>:{line}: not valid JSON"));
            assert!(long_counts.iter().any(|l| l.contains(&big)), "line {line}: {long_counts:?}");
            assert!(want_counts.iter().any(|l| l.contains(&bad)), "line {line}: {want_counts:?}");
        }
        assert!(long_counts.iter().any(|l| l.ends_with("passed through unread: too_large=3")), "{long_counts:?}");
        assert!(want_counts.iter().any(|l| l.ends_with("passed through unread: invalid_json=3")), "{want_counts:?}");
        let same = |v: Vec<String>| -> Vec<String> {
            v.into_iter()
                .map(|l| l.replace(too_large, "").replace(unreadable, ""))
                .map(|l| l.replace("record larger than max_record_bytes", "?").replace("not valid JSON", "?"))
                .map(|l| l.replace("too_large=3", "?").replace("invalid_json=3", "?"))
                .collect()
        };
        assert_eq!(same(long_counts), same(want_counts), "--threads {threads}");
    }
}

#[test]
fn a_pack_reports_bad_lines_with_file_and_line_number() {
    // As the one-rule filter does: the first five lines passed through
    // unread, each by its input and line number (blank lines counted, and
    // each file from 1), then how many more, and the count of each reason;
    // in input order whichever pack could not read the line.
    let pack = ["--rule", "apt_netcon_v5", "--rule", "apt_netcon_v11"];
    let first = "{\"host\":{\"id\":\"h1\"}}\nnot json\n\n[1,2]\n{\"host\":{\"id\":\"h2\"}}\n";
    let second = "\"a string\"\n{\"host\":{\"id\":\"h3\"}}\nx\ny\nz\n{\"a\":";
    let (f1, f2) = (tmp("bad-lines-1.ndjson", first), tmp("bad-lines-2.ndjson", second));
    for threads in ["1", "2"] {
        let args: Vec<&str> = pack.iter().copied().chain(["--threads", threads, f1.as_str(), f2.as_str()]).collect();
        let out = run(&args, b"");
        assert!(out.status.success(), "--threads {threads}");
        assert!(out.stdout == [first, second].concat().as_bytes(), "--threads {threads}: every record unchanged");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let shown: Vec<&str> = err.lines().filter(|l| l.ends_with("(passed through unchanged)")).collect();
        let want = [
            format!("apt-netcon: {f1}:2: not valid JSON (passed through unchanged)"),
            format!("apt-netcon: {f1}:4: top level is not an object (passed through unchanged)"),
            format!("apt-netcon: {f2}:1: top level is not an object (passed through unchanged)"),
            format!("apt-netcon: {f2}:3: not valid JSON (passed through unchanged)"),
            format!("apt-netcon: {f2}:4: not valid JSON (passed through unchanged)"),
        ];
        assert_eq!(shown, want, "--threads {threads}: {err}");
        assert!(err.contains("apt-netcon: 2 more bad records not shown"), "--threads {threads}: {err}");
        assert!(err.contains("apt-netcon: passed through unread: invalid_json=5 not_an_object=2\n"), "--threads {threads}: {err}");
        assert!(err.contains("7 passed through unread (0 larger than max_record_bytes, 7 unreadable by a rule that could match)"), "{err}");
        // From standard input: named so, numbered the same.
        let piped = run(&pack.iter().copied().chain(["--threads", threads]).collect::<Vec<_>>(), first.as_bytes());
        let err = String::from_utf8_lossy(&piped.stderr).into_owned();
        assert!(err.contains("apt-netcon: <stdin>:2: not valid JSON (passed through unchanged)\n"), "{err}");
        assert!(err.contains("apt-netcon: <stdin>:4: top level is not an object (passed through unchanged)\n"), "{err}");
        assert!(!err.contains("more bad records"), "{err}");
        // And nothing with --quiet.
        let quiet: Vec<&str> = ["-q"].into_iter().chain(args.iter().copied()).collect();
        let out = run(&quiet, b"");
        assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn a_pack_counts_records_too_large_apart_from_unreadable_ones() {
    // A record over max_record_bytes (refused by every rule) and a line no
    // rule can read: both pass through unread, each counted as what it is,
    // on one thread and split by host.
    let config = tmp("tiny-records.json", r#"{"max_record_bytes": 200}"#);
    let big = format!(r#"{{"event":{{"category":["process"]}},"host":{{"id":"h1"}},"message":"{}"}}"#, "m".repeat(300));
    let input = format!("{big}\nnot json\n{{\"host\":{{\"id\":\"h2\"}}}}\n");
    for threads in ["1", "2"] {
        let out = run(&["--config", &config, "--rule", "apt_netcon_v5", "--rule", "apt_netcon_v11", "--threads", threads], input.as_bytes());
        assert!(out.status.success());
        assert!(out.stdout == input.as_bytes(), "--threads {threads}: every record unchanged");
        let err = String::from_utf8_lossy(&out.stderr);
        let want = "2 passed through unread (1 larger than max_record_bytes, 1 unreadable by a rule that could match)";
        assert!(err.contains(want), "--threads {threads}: {err}");
    }
}

#[test]
fn a_line_longer_than_any_record_comes_out_before_it_ends() {
    // 192 MiB of one line from a pipe, its newline not yet sent: most of it
    // has come out already, and the process holds far less than the line
    // (it used to gather the whole line first). With max_record_bytes
    // 100,000 (streamed past a block) and the default 16 MiB.
    let small = tmp("small-records-live.json", r#"{"max_record_bytes": 100000}"#);
    let s = sample();
    let pack = ["--rule", "apt_netcon_v5", "--rule", "apt_netcon_v11"];
    let cases: [(&[&str], bool); 5] =
        [(&[], true), (&[], false), (&["--threads", "2"], true), (&["--threads", "2"], false), (&pack, false)];
    for (extra, small_records) in cases {
        let mut args = vec!["-q"];
        if small_records {
            args.extend(["--config", small.as_str()]);
        }
        args.extend_from_slice(extra);
        let mut child = spawn(&args);
        let pid = child.id();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let came = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = came.clone();
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut buf = vec![0; 1 << 20];
            loop {
                match std::io::Read::read(&mut stdout, &mut buf) {
                    Ok(0) | Err(_) => return all,
                    Ok(k) => {
                        all.extend_from_slice(&buf[..k]);
                        counter.fetch_add(k, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            }
        });
        // The writer sends the line but its end, then waits for the word.
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let text = s.clone();
        let writer = std::thread::spawn(move || -> std::io::Result<()> {
            stdin.write_all(&text)?;
            stdin.write_all(b"{\"message\":\"")?;
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..192 {
                stdin.write_all(&chunk)?;
            }
            let _ = wait.recv();
            stdin.write_all(b"\"}\n")?;
            stdin.write_all(&text)
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while came.load(std::sync::atomic::Ordering::SeqCst) < s.len() + (160 << 20) {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("{args:?}: the long line did not come out before its end");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let peak_kb: u64 = status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0);
        go.send(()).unwrap();
        writer.join().unwrap().unwrap();
        let out = reader.join().unwrap();
        assert!(child.wait().unwrap().success(), "{args:?}");
        assert!(peak_kb > 0, "no VmHWM in /proc/{pid}/status");
        assert!(peak_kb < 128 << 10, "{args:?}: {peak_kb} kB held at most, for a line of 192 MiB");
        assert!(out.len() >= s.len() * 2 + (192 << 20), "{args:?}: everything came out");
        eprintln!("{args:?}: at most {peak_kb} kB held for a 192 MiB line");
    }
}
