//! The rule front end: EQL text → syntax tree (`eql::parse`) → compiled rule
//! (`Rule::from_eql`), on arbitrary bytes, through the Rust API and
//! `aptnc_rule_compile`. A rule that compiles then runs over the bundled
//! sample, as JSON and as MessagePack.
//!
//! Checks: no panic; both limits and both APIs agree; an error's position
//! lies inside the text; a compiled rule evaluates any record.

use super::{chunk_of, msgpack, sample_lines};
use apt_netcon::eql::{parse, ParseLimits};
use apt_netcon::host::ffi::{
    aptnc_error_free, aptnc_error_line, aptnc_error_status, aptnc_rule_compile, aptnc_rule_free, aptnc_status,
};
use apt_netcon::engine::chunk::filter_chunk;
use apt_netcon::config::rule::meta_for_file;
use apt_netcon::{Config, Detector, Rule};
use std::ptr;

pub fn run(data: &[u8]) {
    // The C ABI takes any bytes.
    let mut rule = ptr::null_mut();
    let mut err = ptr::null_mut();
    let status = unsafe { aptnc_rule_compile(data.as_ptr(), data.len(), ptr::null(), &mut rule, &mut err) };
    let c_ok = status == aptnc_status::Ok;
    if c_ok {
        assert!(!rule.is_null() && err.is_null());
    } else {
        assert_eq!(status, aptnc_status::RuleError);
        assert!(rule.is_null() && !err.is_null());
        unsafe {
            assert_eq!(aptnc_error_status(err), status);
            if std::str::from_utf8(data).is_err() {
                assert!(aptnc_error_line(err) >= 1, "a UTF-8 error has a position");
            }
        }
    }
    unsafe {
        aptnc_rule_free(rule);
        aptnc_error_free(err);
    }
    let Ok(text) = std::str::from_utf8(data) else {
        assert!(!c_ok);
        return;
    };

    let full = parse(text, ParseLimits::default());
    let tight = parse(text, ParseLimits { max_depth: 3, max_len: 256 });
    if tight.is_ok() {
        assert!(full.is_ok(), "tighter limits accepted what the defaults refused");
    }
    let compiled = Rule::from_eql(text, meta_for_file("fuzz"));
    assert_eq!(compiled.is_ok(), c_ok, "Rust and C APIs disagree");
    if compiled.is_ok() {
        assert!(full.is_ok(), "compiled without parsing");
    }
    for e in [full.as_ref().err(), tight.as_ref().err(), compiled.as_ref().err()].into_iter().flatten() {
        let shown = e.to_string();
        assert!(!shown.is_empty());
        if e.line > 0 {
            let lines: Vec<&str> = text.split('\n').collect();
            assert!((e.line as usize) <= lines.len(), "line {} past the end: {shown}", e.line);
            let chars = lines[e.line as usize - 1].chars().count();
            assert!(e.column >= 1 && e.column as usize <= chars + 1, "column {} past the line: {shown}", e.column);
        }
    }

    if let Ok(rule) = compiled {
        let mut det = Detector::with_rule(rule.clone(), &Config::default());
        for line in sample_lines() {
            let _ = det.process(line);
        }
        let mut det = Detector::with_rule(rule, &Config::default());
        let bodies: Vec<Vec<u8>> =
            sample_lines().iter().map(|l| msgpack(&serde_json::from_slice(l).unwrap())).collect();
        let mut out = Vec::new();
        filter_chunk(&mut det, &chunk_of(&bodies), &mut out).expect("a chunk we built walks");
        det.flush();
    }
}
