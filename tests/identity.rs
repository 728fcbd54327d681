//! Byte identity: records that complete no sequence leave exactly as they
//! came — through `Detector::process` and through the CLI, whatever the line
//! endings, blank lines, unreadable lines or a missing final newline — and
//! the CLI changes exactly the lines that complete a sequence.

mod common;

use apt_netcon::{Config, Detector, Rule, Verdict};
use common::*;
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

const CLI: &str = env!("CARGO_BIN_EXE_apt-netcon");

/// One input line: its content and its terminator ("\n", "\r\n" or none).
struct Line {
    content: Vec<u8>,
    term: &'static [u8],
}

impl Line {
    fn blank(&self) -> bool {
        self.content.iter().all(|b| b.is_ascii_whitespace())
    }
}

/// Lines that no reader should touch (all of them complete nothing).
fn oddities() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = vec![
        br#"{ "a" : 1.50 , "b":[ 1 ,2 ] , "c" : {"d":-0.0e+0}}"#.to_vec(),
        br#"{"x":"\u00e9\ud83e\udd80 \"q\" \\ \/","y":"\u0000"}"#.to_vec(),
        b"{\"@timestamp\":\"2024-01-01T00:00:00Z\",\"event\":{\"category\":\"process\"}}   \t".to_vec(),
        b"\xEF\xBB\xBF{\"bom\":true}".to_vec(),
        b"{\"nul\":\"a\0b\"}".to_vec(),
        b"{}".to_vec(),
        b"  {\"leading\":\"space\"}".to_vec(),
        b"{\"dup\":1,\"dup\":2,\"host.id\":{\"id\":[]}}".to_vec(),
        b"{\"invalid utf8\":\"\xC3\x28\"}".to_vec(),
        b"{\"truncated\":".to_vec(),
        b"{\"process.parent.name\":\"apt\",\"process\":{\"parent\":{\"name\":\"APT\"}}}".to_vec(),
        b"12345".to_vec(),
        b"not json at all \x01\x02".to_vec(),
        b"{\"deep\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}".to_vec(),
    ];
    let mut long = b"{\"message\":\"".to_vec();
    long.extend(std::iter::repeat_n(b'x', 100_000));
    long.extend_from_slice(b"\"}");
    v.push(long);
    v
}

/// Generated records as lines, with blank lines, oddities, some CRLF
/// endings, and no newline after the last line.
fn to_lines(records: Vec<Vec<u8>>, seed: u64) -> Vec<Line> {
    let mut r = Rng::new(seed);
    let odd = oddities();
    let mut lines = Vec::with_capacity(records.len() + records.len() / 20);
    let blanks: [&[u8]; 4] = [b"", b"   ", b"\t", b" \t "];
    for rec in records {
        if r.chance(10) {
            lines.push(Line { content: r.pick(&blanks).to_vec(), term: if r.chance(300) { b"\r\n" } else { b"\n" } });
        }
        if r.chance(10) {
            lines.push(Line { content: r.pick(&odd).clone(), term: b"\n" });
        }
        let term: &'static [u8] = if r.chance(50) { b"\r\n" } else { b"\n" };
        lines.push(Line { content: rec, term });
    }
    lines.last_mut().unwrap().term = b"";
    lines
}

fn join(lines: &[Line]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(&l.content);
        out.extend_from_slice(l.term);
    }
    out
}

fn big_no_alert_lines() -> (Vec<Line>, Vec<&'static str>) {
    let s = gen_stream(0xB16_57EA4, 50_000, 20, GenOpts { no_alerts: true, pretty: false, non_json: true });
    (to_lines(s.records, 0x11AE5), s.labels)
}

fn run_cli(args: &[&str], stdin: Option<&[u8]>) -> (Vec<u8>, Vec<u8>, bool) {
    let mut cmd = Command::new(CLI);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().expect("run the CLI");
    let writer = stdin.map(|input| {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || pipe.write_all(&input))
    });
    let out = child.wait_with_output().expect("CLI output");
    if let Some(w) = writer {
        w.join().unwrap().expect("write CLI stdin");
    }
    (out.stdout, out.stderr, out.status.success())
}

fn first_difference(a: &[u8], b: &[u8]) -> String {
    let i = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
    let line = a[..i].iter().filter(|&&c| c == b'\n').count() + 1;
    let ctx = |s: &[u8]| String::from_utf8_lossy(&s[i.saturating_sub(80)..(i + 80).min(s.len())]).into_owned();
    format!(
        "lengths {} / {}, first difference at byte {i} (line {line}):\n  in:  {}\n  out: {}",
        a.len(),
        b.len(),
        ctx(a),
        ctx(b)
    )
}

#[test]
fn process_leaves_a_no_alert_stream_unchanged() {
    let started = Instant::now();
    let (lines, labels) = big_no_alert_lines();
    let records: Vec<Vec<u8>> = lines.iter().filter(|l| !l.blank()).map(|l| l.content.clone()).collect();
    let r = reference(&records);
    let mut t = Totals::default();
    t.add(&r, &labels);
    t.print("identity corpus");
    assert_eq!(r.alerts, 0, "the no-alert corpus completes a sequence in the reference");
    // it is full of things that nearly complete one
    assert!(r.stage1 > 5_000 && r.stage2 > 5_000, "stage-1 {} / stage-2 {} matches", r.stage1, r.stage2);
    assert!(t.near_misses() > 15_000, "{} near misses", t.near_misses());
    let mut det = Detector::new(&Config::default()).expect("default config");
    let (mut unchanged, mut errors, mut lenient) = (0u64, 0u64, 0u64);
    for (i, rec) in records.iter().enumerate() {
        let is_err = match det.process(rec) {
            Ok(Verdict::Unchanged) => false,
            Err(_) => true,
            Ok(Verdict::Annotated(b)) => {
                panic!("record {i} annotated:\n{}\n->\n{}", String::from_utf8_lossy(rec), String::from_utf8_lossy(b))
            }
        };
        // An error only where the reference cannot read the record either.
        // (The converse is counted, not asserted: the engine does not check
        // UTF-8 in members it skips — see reference.rs,
        // `invalid_utf8_record_takes_no_part`.)
        assert!(!is_err || r.expect[i] == Expect::Error, "record {i} refused: {}", String::from_utf8_lossy(rec));
        if !is_err && r.expect[i] == Expect::Error {
            lenient += 1;
        }
        if is_err {
            errors += 1;
        } else {
            unchanged += 1;
        }
    }
    let s = det.stats();
    assert_eq!((s.stage_matches[0], s.stage_matches[1]), (r.stage1, r.stage2), "stage matches engine vs reference");
    assert_eq!(s.sequences_completed, 0);
    let want_errors = r.expect.iter().filter(|e| **e == Expect::Error).count() as u64;
    assert_eq!(errors + lenient, want_errors, "records passed through with an error");
    eprintln!(
        "identity/process: {} records ({} bytes), {unchanged} unchanged, {errors} errors, \
         {lenient} unreadable to the reference but read by the engine, {:.1} s",
        records.len(),
        records.iter().map(|r| r.len()).sum::<usize>(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn cli_passes_a_no_alert_stream_through_byte_identical() {
    let started = Instant::now();
    let (lines, _) = big_no_alert_lines();
    let input = join(&lines);
    assert!(input.len() > 5_000_000, "only {} bytes", input.len());
    assert!(input.windows(2).any(|w| w == b"\r\n"));
    assert_ne!(input.last(), Some(&b'\n'));
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join("identity-no-alerts.ndjson");
    std::fs::write(&path, &input).unwrap();
    let (out, err, ok) = run_cli(&["--quiet", path.to_str().unwrap()], None);
    assert!(ok, "CLI failed: {}", String::from_utf8_lossy(&err));
    assert!(err.is_empty(), "--quiet wrote to stderr: {}", String::from_utf8_lossy(&err));
    assert!(out == input, "CLI output (file) differs from its input: {}", first_difference(&input, &out));
    let (out, err, ok) = run_cli(&["--quiet"], Some(&input));
    assert!(ok, "CLI failed: {}", String::from_utf8_lossy(&err));
    assert!(out == input, "CLI output (stdin) differs from its input: {}", first_difference(&input, &out));
    eprintln!(
        "identity/cli: {} lines, {} bytes, byte-identical (file and stdin), {:.1} s",
        lines.len(),
        input.len(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn cli_changes_exactly_the_completing_lines() {
    let s = gen_stream(0xA1E7_5EED, 4_000, 8, GenOpts { no_alerts: false, pretty: false, non_json: true });
    let mut records = s.records;
    // A sequence after everything else, its exec on a CRLF line and the
    // connection last, without a final newline.
    let exec = br#"{"@timestamp":"2025-06-01T00:00:00.0000000Z","event":{"id":"planted-exec","category":["process"],"type":["start"],"action":"exec"},"host":{"id":"ffffffffffffffffffffffffffffffff","os":{"type":"linux"}},"process":{"name":"dash","args":["sh","-c","curl http://x"],"entity_id":"cGxhbnRlZA==","parent":{"name":"apt"}}}"#;
    let conn = br#"{"@timestamp":"2025-06-01T00:00:05.0009999Z","event.id":"planted-conn","event.category":["network"],"event.type":["start"],"event.action":"connection_attempted","host.id":"ffffffffffffffffffffffffffffffff","host.os.type":"linux","destination.ip":"2001:db8::1","process.parent.entity_id":"cGxhbnRlZA=="}"#;
    records.push(exec.to_vec());
    records.push(conn.to_vec());
    let mut lines = to_lines(records, 0xC1C1);
    let n = lines.len();
    lines[n - 2].term = b"\r\n";
    assert_eq!(lines[n - 1].content, conn.to_vec());
    let input = join(&lines);

    // the reference over the lines the CLI evaluates
    let evaluated: Vec<usize> = (0..lines.len()).filter(|&i| !lines[i].blank()).collect();
    let recs: Vec<Vec<u8>> = evaluated.iter().map(|&i| lines[i].content.clone()).collect();
    let r = reference(&recs);
    let mut stage1_line = std::collections::BTreeMap::new();
    for (k, e) in r.expect.iter().enumerate() {
        if let Expect::Alert { stage1, .. } = e {
            stage1_line.insert(evaluated[k], *stage1);
        }
    }
    assert!(stage1_line.len() >= 100, "only {} alerts planted", stage1_line.len());
    assert!(stage1_line.contains_key(&(n - 1)), "the planted last line completes a sequence");

    // what the library writes for the same records
    let rule = Rule::builtin("apt_netcon_v5").unwrap();
    let mut det = Detector::with_rule(rule, &Config::default());
    let lib_out: Vec<Option<Vec<u8>>> = recs
        .iter()
        .map(|rec| match det.process(rec) {
            Ok(Verdict::Annotated(b)) => Some(b.to_vec()),
            _ => None,
        })
        .collect();

    let (out, err, ok) = run_cli(&["--quiet"], Some(&input));
    assert!(ok, "CLI failed: {}", String::from_utf8_lossy(&err));
    let out_lines: Vec<&[u8]> = out.split_inclusive(|&b| b == b'\n').collect();
    assert_eq!(out_lines.len(), lines.len(), "line count");
    let mut changed = 0;
    for (i, (line, got)) in lines.iter().zip(&out_lines).enumerate() {
        let want_whole = [line.content.as_slice(), line.term].concat();
        match stage1_line.get(&i) {
            None => assert!(
                *got == want_whole.as_slice(),
                "line {i} changed:\n  in:  {}\n  out: {}",
                String::from_utf8_lossy(&want_whole),
                String::from_utf8_lossy(got)
            ),
            Some(&s1) => {
                changed += 1;
                assert!(
                    got.ends_with(line.term) && (!line.term.is_empty() || !got.ends_with(b"\n")),
                    "line {i}: terminator"
                );
                let body = &got[..got.len() - line.term.len()];
                assert_ne!(body, line.content.as_slice(), "line {i} should be annotated");
                let ann = check_annotation(&line.content, body).unwrap_or_else(|e| panic!("line {i}: {e}"));
                let want_id = first_str(&parse_json(&recs[s1]).unwrap(), "event.id").unwrap().to_string();
                assert_eq!(ann["apt_netcon"]["shell"]["event"]["id"], Value::from(want_id), "line {i}: stage-1 event");
                let k = evaluated.binary_search(&i).unwrap();
                assert_eq!(lib_out[k].as_deref(), Some(body), "line {i}: CLI and library disagree");
            }
        }
    }
    let last = serde_json::from_slice::<Value>(&out[out.len() - out_lines[n - 1].len()..]).unwrap();
    assert_eq!(last["apt_netcon"]["shell"]["event"]["id"], "planted-exec");
    assert_eq!(last["apt_netcon"]["span_ms"], 5000);
    assert_eq!(lib_out.iter().filter(|o| o.is_some()).count(), changed);
    eprintln!("identity/annotated: {} lines, {changed} annotated, all others byte-identical", lines.len());
}
