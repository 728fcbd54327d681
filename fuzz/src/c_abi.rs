//! Random sequences of C ABI calls: the input is a program, one opcode byte
//! then its operands, run against four rule slots, four detector slots and
//! a list of error objects. Freed handles become NULL, so calls on them test
//! NULL handling; every pointer passed is otherwise valid, as the header
//! requires (the ABI cannot defend against dangling pointers).
//!
//! | op | call |
//! |---|---|
//! | 0 | `aptnc_rule_builtin` (name from a list, or NULL; NULL out-params) |
//! | 1 | `aptnc_rule_compile` (a built-in text or bytes from the input; NULL text) |
//! | 2 | `aptnc_rule_free` |
//! | 3 | `aptnc_init` (a fuzz config, a rule pack's, bytes from the input, or a bad one; with or without a rule) |
//! | 4 | `aptnc_free` |
//! | 5 | `aptnc_filter`, record bytes from the input |
//! | 6 | `aptnc_filter`, a sample record |
//! | 7 | `aptnc_filter`, a generated event |
//! | 8 | `aptnc_filter_msgpack`, chunk bytes from the input |
//! | 9 | `aptnc_filter_msgpack`, a chunk of generated events (and markers) |
//! | 10 | `aptnc_flush` or `aptnc_finish` (sizes from 0 to larger than the struct) |
//! | 11 | `aptnc_get_stats` (the same sizes) |
//! | 12 | error accessors, then `aptnc_error_free` |
//! | 13 | `aptnc_status_str`, `aptnc_version`, `aptnc_abi_version` |
//! | 14 | `aptnc_filter` with NULL arguments |
//! | 15 | `aptnc_filter_msgpack` with NULL arguments |
//!
//! At most 4 calls per input compile a rule (ops 0, 1, and 3 without a rule
//! handle); later ones are skipped, as compiling dominates the run time.
//!
//! Checks: no panic (libfuzzer-sys aborts on any, even one the guard would
//! catch); statuses are known numbers; out-parameters are written exactly
//! when the contract says; returned bytes are readable and well formed;
//! counters never go backwards; every handle is freed at the end.

use super::{chunk_of, gen_event, msgpack, push_record, sample_chunks, sample_lines, Input, Wrap, CONFIGS};
use apt_netcon::host::ffi::*;
use apt_netcon::Rule;
use std::ffi::{c_char, CStr};
use std::mem::size_of;
use std::ptr;

const SLOTS: usize = 4;
const OUT_SENTINEL: *const u8 = 0x5a5a as *const u8;
const LEN_SENTINEL: usize = 0xa5a5;

struct World {
    rules: [*mut aptnc_rule; SLOTS],
    dets: [*mut aptnc_detector; SLOTS],
    /// Last `records` counter seen per detector slot.
    records: [u64; SLOTS],
    errors: Vec<*mut aptnc_error>,
}

fn known(s: aptnc_status) -> bool {
    (s as u32) <= 15
}

impl World {
    fn keep_error(&mut self, e: *mut aptnc_error, status: aptnc_status) {
        if status == aptnc_status::Ok {
            assert!(e.is_null(), "error written on success");
            return;
        }
        if e.is_null() {
            return;
        }
        unsafe {
            assert_eq!(aptnc_error_status(e), status);
        }
        if self.errors.len() >= 8 {
            unsafe { aptnc_error_free(self.errors.remove(0)) };
        }
        self.errors.push(e);
    }

    fn set_rule(&mut self, slot: usize, r: *mut aptnc_rule) {
        unsafe { aptnc_rule_free(self.rules[slot]) };
        self.rules[slot] = r;
    }

    fn set_det(&mut self, slot: usize, d: *mut aptnc_detector) {
        unsafe { aptnc_free(self.dets[slot]) };
        self.dets[slot] = d;
        self.records[slot] = 0;
    }

    /// `aptnc_filter` / `aptnc_filter_msgpack` on slot `slot`, checked.
    fn filter(&mut self, slot: usize, bytes: &[u8], msgpack_chunk: bool) {
        let d = self.dets[slot];
        let mut out = OUT_SENTINEL;
        let mut out_len = LEN_SENTINEL;
        let status = unsafe {
            if msgpack_chunk {
                aptnc_filter_msgpack(d, bytes.as_ptr(), bytes.len(), &mut out, &mut out_len)
            } else {
                aptnc_filter(d, bytes.as_ptr(), bytes.len(), &mut out, &mut out_len)
            }
        };
        assert!(known(status), "{}", status as u32);
        if d.is_null() {
            assert_eq!(status, aptnc_status::NullParameter);
        }
        assert!(!matches!(status, aptnc_status::Panic | aptnc_status::Poisoned), "{status:?}");
        if status != aptnc_status::Annotated {
            assert_eq!((out, out_len), (OUT_SENTINEL, LEN_SENTINEL), "out-params written on {status:?}");
            if msgpack_chunk {
                assert!(
                    matches!(
                        status,
                        aptnc_status::Unchanged | aptnc_status::InvalidMsgpack | aptnc_status::NullParameter
                    ),
                    "{status:?}"
                );
            }
        } else {
            assert!(!out.is_null() && out_len > 0);
            // Valid until the next call: read every byte now.
            let got = unsafe { std::slice::from_raw_parts(out, out_len) }.to_vec();
            if msgpack_chunk {
                let mut fresh = super::detector(0);
                apt_netcon::engine::chunk::filter_chunk(&mut fresh, &got, &mut Vec::new())
                    .expect("an annotated chunk walks");
            } else {
                let _: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
                    serde_json::from_slice(&got).expect("an annotated record is a JSON object");
            }
        }
        if !d.is_null() {
            self.check_stats(slot);
        }
    }

    /// Counters never go backwards, and add up.
    fn check_stats(&mut self, slot: usize) {
        let mut st = aptnc_stats { size: size_of::<aptnc_stats>() as u32, ..Default::default() };
        assert_eq!(unsafe { aptnc_get_stats(self.dets[slot], &mut st) }, aptnc_status::Ok);
        assert!(st.records >= self.records[slot]);
        assert!(st.annotated <= st.records);
        let errors = st.too_large
            + st.invalid_json
            + st.invalid_msgpack
            + st.not_an_object
            + st.too_deep
            + st.bad_timestamp
            + st.annotate_failed;
        assert!(errors + st.annotated <= st.records);
        self.records[slot] = st.records;
    }
}

/// Calls that compile a rule (the slow part of a program) left for one
/// input; later ones are skipped, so long programs stay fast.
struct Budget(u32);

impl Budget {
    fn take(&mut self) -> bool {
        let ok = self.0 > 0;
        self.0 = self.0.saturating_sub(1);
        ok
    }
}

/// The built-in rules' text (v5, or v11), computed once.
fn builtin_text(v11: bool) -> &'static str {
    static TEXTS: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    let (v5, v11_text) = TEXTS.get_or_init(|| {
        (
            Rule::builtin("v5").unwrap().query_text().to_string(),
            Rule::builtin("v11").unwrap().query_text().to_string(),
        )
    });
    if v11 {
        v11_text
    } else {
        v5
    }
}

/// A size for a size-prefixed struct of `full` bytes.
fn size_choice(r: &mut Input, full: usize) -> u32 {
    r.pick(&[0, 4, 7, 8, 12, 16, full as u32, full as u32, full as u32 + 64, 255])
}

/// Configs running a rule pack through the C ABI: records go on unchanged,
/// alerts come out of `aptnc_flush` (JSON) or after a chunk's records.
const PACK_CONFIGS: [&str; 2] = [
    r#"{"rules":["apt_netcon_v5","apt_netcon_v11"],"max_pending_sequences":64}"#,
    r#"{"rules":["apt_netcon_v5","apt_netcon_v11"],"max_lateness":"2s","max_held_events":4,"max_pending_per_host":2}"#,
];

const BAD_CONFIGS: &[&[u8]] = &[
    br#"{"max_pending":1}"#,
    br#"{"rule":"nope"}"#,
    b"[1]",
    b"{\"rule\":\"\xff\"}",
    br#"{"maxspan":"0s"}"#,
    br#"{"max_record_bytes":-1}"#,
    br#"{"exceptions":[{"entries":[]}]}"#,
    b"{",
];

pub fn run(data: &[u8]) {
    let mut r = Input::new(data);
    let mut w = World {
        rules: [ptr::null_mut(); SLOTS],
        dets: [ptr::null_mut(); SLOTS],
        records: [0; SLOTS],
        errors: vec![],
    };
    let samples = sample_lines();
    let mut steps = 0;
    let mut budget = Budget(4);
    while !r.is_empty() && steps < 512 {
        steps += 1;
        let op = r.u8() % 16;
        match op {
            0 => {
                let flags = r.u8();
                let slot = r.u8() as usize % SLOTS;
                let names: &[&[u8]] = &[
                    b"apt_netcon_v5\0",
                    b"apt_netcon_v11\0",
                    b"default\0",
                    b"v5\0",
                    b"latest\0",
                    b"v11\0",
                    b"nope\0",
                    b"\0",
                ];
                let name = if flags % 9 == 8 {
                    ptr::null()
                } else {
                    names[flags as usize % 9 % names.len()].as_ptr() as *const c_char
                };
                if !budget.take() {
                    continue;
                }
                let mut rule: *mut aptnc_rule = ptr::null_mut();
                let mut err: *mut aptnc_error = ptr::null_mut();
                let rule_p = if flags & 0x80 != 0 { ptr::null_mut() } else { &mut rule as *mut _ };
                let err_p = if flags & 0x40 != 0 { ptr::null_mut() } else { &mut err as *mut _ };
                let s = unsafe { aptnc_rule_builtin(name, rule_p, err_p) };
                assert!(known(s));
                assert_eq!(s == aptnc_status::Ok, !rule.is_null());
                if name.is_null() || rule_p.is_null() {
                    assert_eq!(s, aptnc_status::NullParameter);
                }
                w.keep_error(err, s);
                if !rule.is_null() {
                    w.set_rule(slot, rule);
                }
            }
            1 => {
                let flags = r.u8();
                let slot = r.u8() as usize % SLOTS;
                let text: &[u8] = if flags & 1 != 0 {
                    r.data()
                } else {
                    builtin_text(flags & 2 != 0).as_bytes()
                };
                if !budget.take() {
                    continue;
                }
                let text_p = if flags & 0x20 != 0 { ptr::null() } else { text.as_ptr() };
                let name = if flags & 4 != 0 { c"fuzz rule".as_ptr() } else { ptr::null() };
                let mut rule: *mut aptnc_rule = ptr::null_mut();
                let mut err: *mut aptnc_error = ptr::null_mut();
                let rule_p = if flags & 0x80 != 0 { ptr::null_mut() } else { &mut rule as *mut _ };
                let err_p = if flags & 0x40 != 0 { ptr::null_mut() } else { &mut err as *mut _ };
                let s = unsafe { aptnc_rule_compile(text_p, text.len(), name, rule_p, err_p) };
                assert!(known(s));
                assert_eq!(s == aptnc_status::Ok, !rule.is_null());
                if rule_p.is_null() || (text_p.is_null() && !text.is_empty()) {
                    assert_eq!(s, aptnc_status::NullParameter);
                }
                w.keep_error(err, s);
                if !rule.is_null() {
                    w.set_rule(slot, rule);
                }
            }
            2 => {
                let slot = r.u8() as usize % SLOTS;
                w.set_rule(slot, ptr::null_mut());
            }
            3 => {
                let flags = r.u8();
                let slot = r.u8() as usize % SLOTS;
                let owned: Vec<u8>;
                let cfg: &[u8] = match flags % 8 {
                    // A rule pack (both built-in rules: no files to read),
                    // holding late events or not.
                    5 if flags & 0x40 != 0 => PACK_CONFIGS[(flags >> 7) as usize].as_bytes(),
                    k @ 0..=5 => CONFIGS[k as usize % CONFIGS.len()].as_bytes(),
                    6 => {
                        // Raw bytes, unless they name a file to read.
                        owned = r.data().to_vec();
                        if owned.windows(4).any(|x| x.eq_ignore_ascii_case(b"file")) || owned.contains(&b'\\') {
                            b""
                        } else {
                            &owned
                        }
                    }
                    _ => r.pick(BAD_CONFIGS),
                };
                let cfg_p = if flags & 0x20 != 0 { ptr::null() } else { cfg.as_ptr() };
                let rule = if flags & 0x10 != 0 { w.rules[r.u8() as usize % SLOTS] } else { ptr::null_mut() };
                // Without a rule handle, init compiles the config's rule.
                if rule.is_null() && !budget.take() {
                    continue;
                }
                let mut det: *mut aptnc_detector = ptr::null_mut();
                let mut err: *mut aptnc_error = ptr::null_mut();
                let det_p = if flags & 0x80 != 0 { ptr::null_mut() } else { &mut det as *mut _ };
                let err_p = if flags & 0x40 != 0 { ptr::null_mut() } else { &mut err as *mut _ };
                let s = unsafe { aptnc_init(cfg_p, cfg.len(), rule, det_p, err_p) };
                assert!(known(s));
                assert_eq!(s == aptnc_status::Ok, !det.is_null());
                if det_p.is_null() || (cfg_p.is_null() && !cfg.is_empty()) {
                    assert_eq!(s, aptnc_status::NullParameter);
                }
                if flags % 8 < 6 && !det_p.is_null() && !cfg_p.is_null() {
                    assert_eq!(s, aptnc_status::Ok, "a valid config refused");
                }
                w.keep_error(err, s);
                if !det.is_null() {
                    w.set_det(slot, det);
                }
            }
            4 => {
                let slot = r.u8() as usize % SLOTS;
                w.set_det(slot, ptr::null_mut());
            }
            5 => {
                let slot = r.u8() as usize % SLOTS;
                let rec = r.data();
                w.filter(slot, rec, false);
            }
            6 => {
                let slot = r.u8() as usize % SLOTS;
                let rec = samples[r.u8() as usize % samples.len()];
                w.filter(slot, rec, false);
            }
            7 => {
                let slot = r.u8() as usize % SLOTS;
                let rec = gen_event(&mut r).to_string();
                w.filter(slot, rec.as_bytes(), false);
            }
            8 => {
                let slot = r.u8() as usize % SLOTS;
                let chunk = r.data();
                w.filter(slot, chunk, true);
            }
            9 => {
                let slot = r.u8() as usize % SLOTS;
                let n = r.u8() % 4;
                let mut chunk = Vec::new();
                if n == 3 {
                    push_record(&mut chunk, b"\x80", Wrap::Marker);
                }
                let bodies: Vec<Vec<u8>> = (0..n.max(1)).map(|_| msgpack(&gen_event(&mut r))).collect();
                chunk.extend(chunk_of(&bodies));
                if n == 2 {
                    push_record(&mut chunk, &msgpack(&gen_event(&mut r)), Wrap::LegacyInt);
                }
                w.filter(slot, &chunk, true);
            }
            10 => {
                let slot = r.u8() as usize % SLOTS;
                #[repr(C, align(8))]
                struct Buf([u8; 256]);
                let mut buf = Buf([0xee; 256]);
                let full = size_of::<aptnc_flush_report>();
                let size = size_choice(&mut r, full);
                buf.0[..4].copy_from_slice(&size.to_ne_bytes());
                let report = buf.0.as_mut_ptr() as *mut aptnc_flush_report;
                let finish = r.u8() % 2 == 0;
                let s = unsafe {
                    if finish {
                        aptnc_finish(w.dets[slot], report)
                    } else {
                        aptnc_flush(w.dets[slot], report)
                    }
                };
                check_sized(s, &buf.0, size, full, w.dets[slot].is_null());
                if s == aptnc_status::Ok && size as usize >= full {
                    let rep = unsafe { &*(buf.0.as_ptr() as *const aptnc_flush_report) };
                    assert!(!rep.alerts.is_null());
                    let alerts = unsafe { std::slice::from_raw_parts(rep.alerts, rep.alerts_len) }.to_vec();
                    if finish {
                        assert_eq!(rep.held, 0, "aptnc_finish releases everything held");
                    }
                    assert_eq!(rep.alert_count == 0, alerts.is_empty(), "alert_count agrees with alerts_len");
                    if !alerts.is_empty() && alerts[0] == b'{' {
                        assert!(alerts.ends_with(b"\n"), "a JSON alert ends with a newline");
                    }
                }
            }
            11 => {
                let slot = r.u8() as usize % SLOTS;
                #[repr(C, align(8))]
                struct Buf([u8; 512]);
                let mut buf = Buf([0xee; 512]);
                let full = size_of::<aptnc_stats>();
                let size = size_choice(&mut r, full);
                buf.0[..4].copy_from_slice(&size.to_ne_bytes());
                let s = unsafe { aptnc_get_stats(w.dets[slot], buf.0.as_mut_ptr() as *mut aptnc_stats) };
                check_sized(s, &buf.0, size, full, w.dets[slot].is_null());
            }
            12 => {
                let which = r.u8() as usize;
                let free = r.u8() & 1 == 1;
                let e = if w.errors.is_empty() || which % 5 == 4 {
                    ptr::null_mut()
                } else {
                    w.errors[which % w.errors.len()]
                };
                unsafe {
                    let s = aptnc_error_status(e);
                    assert!(known(s));
                    let m = CStr::from_ptr(aptnc_error_message(e)).to_bytes().len();
                    assert_eq!(m == 0, e.is_null(), "an error without a message");
                    let k = aptnc_error_key(e);
                    if !k.is_null() {
                        let _ = CStr::from_ptr(k).to_bytes().len();
                    }
                    let (line, col) = (aptnc_error_line(e), aptnc_error_column(e));
                    assert_eq!(line == 0, col == 0, "line {line} column {col}");
                }
                if free && !e.is_null() {
                    w.errors.retain(|&x| x != e);
                    unsafe { aptnc_error_free(e) };
                }
            }
            13 => {
                let s = r.u32();
                let t = unsafe { CStr::from_ptr(aptnc_status_str(s)) };
                assert_eq!(t.to_bytes() == b"unknown status", s > 15);
                let v = unsafe { CStr::from_ptr(aptnc_version()) };
                assert_eq!(v.to_str().unwrap(), apt_netcon::VERSION);
                assert_eq!(aptnc_abi_version(), APTNC_ABI_VERSION);
            }
            14 | 15 => {
                let slot = r.u8() as usize % SLOTS;
                let flags = r.u8();
                let rec = samples[flags as usize % samples.len()];
                let bytes: &[u8] = if op == 14 { rec } else { &sample_chunks()[flags as usize % samples.len()] };
                let len = if flags & 8 != 0 { 0 } else { bytes.len() };
                let p = if flags & 1 != 0 { ptr::null() } else { bytes.as_ptr() };
                let mut out = OUT_SENTINEL;
                let mut out_len = LEN_SENTINEL;
                let out_p = if flags & 2 != 0 { ptr::null_mut() } else { &mut out as *mut _ };
                let len_p = if flags & 4 != 0 { ptr::null_mut() } else { &mut out_len as *mut _ };
                let d = w.dets[slot];
                let s = unsafe {
                    if op == 14 {
                        aptnc_filter(d, p, len, out_p, len_p)
                    } else {
                        aptnc_filter_msgpack(d, p, len, out_p, len_p)
                    }
                };
                assert!(known(s));
                if d.is_null() || out_p.is_null() || len_p.is_null() || (p.is_null() && len > 0) {
                    assert_eq!(s, aptnc_status::NullParameter);
                    assert_eq!((out, out_len), (OUT_SENTINEL, LEN_SENTINEL));
                }
                if s == aptnc_status::Annotated {
                    let _ = unsafe { std::slice::from_raw_parts(out, out_len) }.to_vec();
                }
                if !d.is_null() {
                    w.check_stats(slot);
                }
            }
            _ => unreachable!(),
        }
    }
    for slot in 0..SLOTS {
        w.set_det(slot, ptr::null_mut());
        w.set_rule(slot, ptr::null_mut());
    }
    for e in w.errors.drain(..) {
        unsafe { aptnc_error_free(e) };
    }
}

/// A size-prefixed struct came back as the contract says.
fn check_sized(s: aptnc_status, buf: &[u8], size: u32, full: usize, null_det: bool) {
    if null_det {
        assert_eq!(s, aptnc_status::NullParameter);
    } else if size < 8 {
        assert_eq!(s, aptnc_status::InvalidArgument);
    } else {
        assert_eq!(s, aptnc_status::Ok);
    }
    let written = u32::from_ne_bytes(buf[..4].try_into().unwrap()) as usize;
    if s != aptnc_status::Ok {
        assert_eq!(written, size as usize, "size changed on failure");
        assert!(buf[4..].iter().all(|&b| b == 0xee), "written on failure");
        return;
    }
    let n = (size as usize).min(full);
    assert_eq!(written, n);
    assert!(buf[n..].iter().all(|&b| b == 0xee), "wrote past `size`");
}
