use super::*;

fn status_text(s: aptnc_status) -> String {
    unsafe { CStr::from_ptr(aptnc_status_str(s as u32)) }.to_str().unwrap().to_string()
}

/// A detector built with the built-in rule, so these tests do not depend
/// on parsing a config.
fn detector() -> *mut aptnc_detector {
    let mut d = ptr::null_mut();
    let mut e = ptr::null_mut();
    let rule = Rule::builtin("apt_netcon_v5").expect("the built-in rule compiles");
    let r = aptnc_rule { rule };
    assert_eq!(unsafe { aptnc_init(ptr::null(), 0, &r, &mut d, &mut e) }, aptnc_status::Ok);
    assert!(e.is_null());
    d
}

#[test]
fn guard_catches_panics_with_their_message() {
    assert!(matches!(guard(|| 7), Ok(7)));
    match guard(|| -> u32 { panic!("boom {}", 1) }) {
        Err(Panicked(m)) => assert_eq!(m, "boom 1"),
        Ok(_) => panic!("not caught"),
    }
    match guard(|| -> u32 { std::panic::panic_any(42u8) }) {
        Err(Panicked(m)) => assert_eq!(m, "(no message)"),
        Ok(_) => panic!("not caught"),
    }
}

#[test]
fn with_error_turns_a_panic_into_an_error_object() {
    let mut e = ptr::null_mut();
    let s = with_error(&mut e, || panic!("inside"));
    assert_eq!(s, aptnc_status::Panic);
    assert!(!e.is_null());
    unsafe {
        assert_eq!(aptnc_error_status(e), aptnc_status::Panic);
        let m = CStr::from_ptr(aptnc_error_message(e)).to_str().unwrap();
        assert!(m.contains("inside"), "{m}");
        aptnc_error_free(e);
    }
    // A NULL error pointer is allowed.
    assert_eq!(with_error(ptr::null_mut(), || panic!("x")), aptnc_status::Panic);
}

#[test]
fn a_panic_poisons_the_detector() {
    let d = detector();
    let mut out = ptr::null();
    let mut len = 0usize;
    assert_eq!(with_detector(d, |_| panic!("deliberate")), aptnc_status::Panic);
    assert_eq!(unsafe { aptnc_filter(d, b"{}".as_ptr(), 2, &mut out, &mut len) }, aptnc_status::Poisoned);
    assert_eq!(unsafe { aptnc_filter_msgpack(d, ptr::null(), 0, &mut out, &mut len) }, aptnc_status::Poisoned);
    assert_eq!(unsafe { aptnc_rules_report(d, &mut out, &mut len) }, aptnc_status::Poisoned);
    let mut st = aptnc_stats { size: size_of::<aptnc_stats>() as u32, ..Default::default() };
    assert_eq!(unsafe { aptnc_get_stats(d, &mut st) }, aptnc_status::Poisoned);
    assert_eq!(st.version, 0, "not written");
    assert!(out.is_null() && len == 0, "out-params untouched");
    unsafe { aptnc_free(d) };
}

#[cfg(debug_assertions)]
#[test]
fn test_hook_panics_and_poisons() {
    let d = detector();
    assert_eq!(unsafe { aptnc_test_force_panic(d) }, aptnc_status::Panic);
    assert_eq!(unsafe { aptnc_test_force_panic(d) }, aptnc_status::Poisoned);
    unsafe { aptnc_free(d) };
}

#[test]
fn null_pointers() {
    let d = detector();
    let mut out = ptr::null();
    let mut len = 0usize;
    let nd: *mut aptnc_detector = ptr::null_mut();
    unsafe {
        assert_eq!(aptnc_filter(nd, b"{}".as_ptr(), 2, &mut out, &mut len), aptnc_status::NullParameter);
        assert_eq!(aptnc_filter(d, ptr::null(), 2, &mut out, &mut len), aptnc_status::NullParameter);
        assert_eq!(aptnc_filter(d, b"{}".as_ptr(), 2, ptr::null_mut(), &mut len), aptnc_status::NullParameter);
        assert_eq!(aptnc_filter(d, b"{}".as_ptr(), 2, &mut out, ptr::null_mut()), aptnc_status::NullParameter);
        // NULL with length 0 is an empty record.
        assert_eq!(aptnc_filter(d, ptr::null(), 0, &mut out, &mut len), aptnc_status::InvalidJson);
        assert_eq!(aptnc_filter_msgpack(nd, ptr::null(), 0, &mut out, &mut len), aptnc_status::NullParameter);
        assert_eq!(aptnc_filter_msgpack(d, ptr::null(), 1, &mut out, &mut len), aptnc_status::NullParameter);
        assert_eq!(aptnc_filter_msgpack(d, ptr::null(), 0, ptr::null_mut(), &mut len), aptnc_status::NullParameter);
        assert_eq!(aptnc_filter_msgpack(d, ptr::null(), 0, &mut out, ptr::null_mut()), aptnc_status::NullParameter);
        assert_eq!(aptnc_get_stats(nd, &mut aptnc_stats::default()), aptnc_status::NullParameter);
        assert_eq!(aptnc_get_stats(d, ptr::null_mut()), aptnc_status::NullParameter);
        assert_eq!(aptnc_flush(d, ptr::null_mut()), aptnc_status::NullParameter);
        assert!(out.is_null() && len == 0, "out-params untouched");

        let mut e = ptr::null_mut();
        let mut r = ptr::null_mut();
        assert_eq!(aptnc_rule_builtin(ptr::null(), &mut r, &mut e), aptnc_status::NullParameter);
        assert!(CStr::from_ptr(aptnc_error_message(e)).to_str().unwrap().contains("`name`"));
        aptnc_error_free(e);
        assert_eq!(
            aptnc_rule_builtin(c"v5".as_ptr(), ptr::null_mut(), ptr::null_mut()),
            aptnc_status::NullParameter
        );
        assert_eq!(
            aptnc_rule_compile(ptr::null(), 3, ptr::null(), &mut r, ptr::null_mut()),
            aptnc_status::NullParameter
        );
        assert_eq!(
            aptnc_rule_compile(b"x".as_ptr(), 1, ptr::null(), ptr::null_mut(), ptr::null_mut()),
            aptnc_status::NullParameter
        );
        assert!(r.is_null());
        let mut nd2 = ptr::null_mut();
        assert_eq!(aptnc_init(ptr::null(), 1, ptr::null(), &mut nd2, ptr::null_mut()), aptnc_status::NullParameter);
        assert_eq!(
            aptnc_init(ptr::null(), 0, ptr::null(), ptr::null_mut(), ptr::null_mut()),
            aptnc_status::NullParameter
        );
        assert!(nd2.is_null());

        // Accessors and frees accept NULL.
        assert_eq!(aptnc_error_status(ptr::null()), aptnc_status::NullParameter);
        assert_eq!(CStr::from_ptr(aptnc_error_message(ptr::null())).to_bytes(), b"");
        assert!(aptnc_error_key(ptr::null()).is_null());
        assert_eq!(aptnc_error_line(ptr::null()), 0);
        assert_eq!(aptnc_error_column(ptr::null()), 0);
        aptnc_error_free(ptr::null_mut());
        aptnc_rule_free(ptr::null_mut());
        aptnc_free(ptr::null_mut());
        aptnc_free(d);
    }
}

#[test]
fn config_errors_name_the_key() {
    let cfg = br#"{"max_pending":1}"#;
    let mut d = ptr::null_mut();
    let mut e = ptr::null_mut();
    let s = unsafe { aptnc_init(cfg.as_ptr(), cfg.len(), ptr::null(), &mut d, &mut e) };
    assert_eq!(s, aptnc_status::ConfigError);
    assert!(d.is_null());
    unsafe {
        assert_eq!(CStr::from_ptr(aptnc_error_key(e)).to_str().unwrap(), "max_pending");
        assert_eq!(aptnc_error_status(e), aptnc_status::ConfigError);
        aptnc_error_free(e);
    }
    let bad = b"{\"rule\":\"\xff\"}";
    let mut e = ptr::null_mut();
    assert_eq!(
        unsafe { aptnc_init(bad.as_ptr(), bad.len(), ptr::null(), &mut d, &mut e) },
        aptnc_status::ConfigError
    );
    unsafe { aptnc_error_free(e) };
}

#[test]
fn sized_structs() {
    let d = detector();
    // Too small.
    let mut st = aptnc_stats { size: 4, ..Default::default() };
    assert_eq!(unsafe { aptnc_get_stats(d, &mut st) }, aptnc_status::InvalidArgument);
    assert_eq!(st.size, 4);
    // An older caller that knows only `records`.
    let upto = 16u32; // offsetof(aptnc_stats, annotated)
    let mut st = aptnc_stats { size: upto, annotated: 99, ..Default::default() };
    assert_eq!(unsafe { aptnc_get_stats(d, &mut st) }, aptnc_status::Ok);
    assert_eq!((st.size, st.version, st.annotated), (upto, APTNC_STATS_VERSION, 99));
    // Flush report.
    let mut r = aptnc_flush_report {
        size: size_of::<aptnc_flush_report>() as u32,
        version: 0,
        expired: 9,
        pending: 9,
        alerts: ptr::null(),
        alerts_len: 9,
        alert_count: 9,
        held: 9,
    };
    assert_eq!(unsafe { aptnc_flush(d, &mut r) }, aptnc_status::Ok);
    assert_eq!((r.version, r.expired, r.pending, r.alerts_len), (APTNC_FLUSH_REPORT_VERSION, 0, 0, 0));
    assert!(!r.alerts.is_null());
    unsafe { aptnc_free(d) };
}

#[test]
fn stats_struct_mirrors_stats_fields() {
    // Distinct values in every counter of `Stats`.
    let mut s = Stats::default();
    let mut next = 100u64;
    let mut set = |x: &mut u64| {
        next += 1;
        *x = next;
    };
    set(&mut s.records);
    set(&mut s.annotated);
    for m in s.stage_matches.iter_mut() {
        set(m);
    }
    for x in [
        &mut s.sequences_completed,
        &mut s.rejected_by_maxspan,
        &mut s.expired_by_maxspan,
        &mut s.evicted_by_cap,
        &mut s.replaced,
        &mut s.out_of_order,
        &mut s.late,
        &mut s.missing_key,
        &mut s.key_combinations_truncated,
        &mut s.invalid_ip,
        &mut s.too_large,
        &mut s.invalid_json,
        &mut s.invalid_msgpack,
        &mut s.not_an_object,
        &mut s.too_deep,
        &mut s.bad_timestamp,
        &mut s.annotate_failed,
        &mut s.pending,
    ] {
        set(x);
    }
    let c = stats_of(&s);
    let fields = s.fields();
    assert_eq!(size_of::<aptnc_stats>(), 8 + 8 * fields.len(), "one u64 per Stats::fields() entry");
    // Read the counters as the C side lays them out.
    let base = &c as *const aptnc_stats as *const u8;
    for (i, (name, value)) in fields.iter().enumerate() {
        let got = unsafe { ptr::read_unaligned(base.add(8 + 8 * i) as *const u64) };
        assert_eq!(got, *value, "counter {i} ({name})");
    }
}

#[test]
fn statuses_have_text() {
    for s in 0..=15u32 {
        let t = unsafe { CStr::from_ptr(aptnc_status_str(s)) }.to_str().unwrap();
        assert_ne!(t, "unknown status", "{s}");
    }
    assert_eq!(status_text(aptnc_status::Ok), "ok");
    assert_eq!(unsafe { CStr::from_ptr(aptnc_status_str(16)) }.to_str().unwrap(), "unknown status");
    assert_eq!(unsafe { CStr::from_ptr(aptnc_status_str(u32::MAX)) }.to_str().unwrap(), "unknown status");
}

#[test]
fn versions() {
    let v = unsafe { CStr::from_ptr(aptnc_version()) }.to_str().unwrap();
    assert_eq!(v, env!("CARGO_PKG_VERSION"));
    assert_eq!(aptnc_abi_version(), APTNC_ABI_VERSION);
}

#[test]
fn rule_text_that_is_not_utf8_points_at_the_byte() {
    let text = b"sequence\n  [pr\xffocess";
    let mut r = ptr::null_mut();
    let mut e = ptr::null_mut();
    let s = unsafe { aptnc_rule_compile(text.as_ptr(), text.len(), ptr::null(), &mut r, &mut e) };
    assert_eq!(s, aptnc_status::RuleError);
    assert!(r.is_null());
    unsafe {
        assert_eq!((aptnc_error_line(e), aptnc_error_column(e)), (2, 6));
        aptnc_error_free(e);
    }
}

#[test]
fn error_messages_never_contain_nul() {
    assert_eq!(c_string("a\0b").to_bytes(), b"a\\0b");
}
