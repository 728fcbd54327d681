//! apt_netcon: a streaming detector for Elastic's "Suspicious APT Package
//! Manager Network Connection" EQL rule, callable from C.
//!
//! Records (Elastic Defend events, one JSON object or one Fluent Bit
//! MessagePack chunk at a time) go through a detector. Every record leaves
//! byte-for-byte as it came, except the network event that completes the
//! rule's sequence: that one leaves with alert fields added.
//!
//! A detector may instead run a rule pack (config keys `rules`, `rules_dir`,
//! `skip_broken_rules`): then every record leaves unchanged
//! (APTNC_STATUS_UNCHANGED from aptnc_filter) and every match is a
//! standalone alert record of its own, with `event.kind: "signal"` and its
//! rule's `rule.*` fields: one record completing k rules gives k alert
//! records, in the pack's rule order. aptnc_flush() hands over those of
//! aptnc_filter() calls (call it after each record whose call raised
//! aptnc_get_stats()'s `standalone_alerts`); aptnc_filter_msgpack() appends
//! them to the chunk it returns, after the chunk's records.
//! aptnc_rules_report() gives each rule's counters and the rules that did
//! not load.
//!
//! Typical use:
//!
//! ```text
//!     aptnc_detector *det = NULL;
//!     aptnc_error *err = NULL;
//!     if (aptnc_init(NULL, 0, NULL, &det, &err) != APTNC_STATUS_OK) {
//!         fprintf(stderr, "%s\n", aptnc_error_message(err));
//!         aptnc_error_free(err);
//!         return -1;
//!     }
//!     const uint8_t *out; size_t out_len;
//!     if (aptnc_filter(det, rec, rec_len, &out, &out_len) == APTNC_STATUS_ANNOTATED)
//!         forward(out, out_len);   // the record with the alert fields
//!     else
//!         forward(rec, rec_len);   // UNCHANGED or any error: the original
//!     aptnc_free(det);
//! ```
//!
//! Conventions (every function follows them; its own comment says where it
//! adds to them):
//!
//! - Status: functions that can fail return an aptnc_status (a uint32_t).
//!   The numbers never change; aptnc_status_str() turns any number into text.
//! - Arguments: the handle first, then inputs, then out-parameters. Bytes
//!   come in as (const uint8_t *ptr, size_t len); ptr may be NULL only when
//!   len is 0. Any other NULL pointer argument gives
//!   APTNC_STATUS_NULL_PARAMETER, unless the function says it is optional.
//! - Out-parameters are written only on success, so a failed call leaves the
//!   caller's variables as they were. The one exception is the optional
//!   `aptnc_error **error` out-parameter, which is written only on failure.
//! - Ownership: what aptnc_*_compile / _builtin / _init hand out is owned by
//!   the caller and released with the matching *_free function; every
//!   *_free(NULL) does nothing. Bytes returned by a detector belong to the
//!   detector and stay valid until the next call on that detector (or its
//!   aptnc_free): the host never frees them, and no call allocates memory the
//!   host must free per record.
//! - Errors with text (a config or rule that does not load) come back as an
//!   aptnc_error object; there is no thread-local "last error".
//! - A record is never dropped by the library: on any status but
//!   APTNC_STATUS_ANNOTATED the host forwards the original record, and the
//!   detector counts why (aptnc_get_stats()).
//! - Threads: an aptnc_rule is immutable and may be used by any number of
//!   threads at once. An aptnc_detector holds per-stream state: one caller at
//!   a time (it may move between threads between calls). Build one detector
//!   per stream or per thread, from one shared rule. aptnc_error objects are
//!   immutable. All other functions are thread-safe.
//! - Panics: a bug inside the library never unwinds into the host. The call
//!   returns APTNC_STATUS_PANIC (or NULL / 0 where there is no status); a
//!   detector that panicked is poisoned and every later call on it returns
//!   APTNC_STATUS_POISONED (forward records unchanged; aptnc_free it).
//! - Versions: APTNC_VERSION* give the version the header comes from and
//!   aptnc_version() the library's; APTNC_ABI_VERSION and
//!   aptnc_abi_version() change only when a binary-incompatible change is
//!   made (it is also the SONAME's number: libapt_netcon.so.1).

// This module is the only place in the crate with `unsafe`. Every extern
// function runs its body inside `guard` (the one `catch_unwind`), checks every
// pointer before use, and writes out-parameters last.
#![deny(unsafe_op_in_unsafe_fn)]
// C names: `aptnc_` types, as they appear in the header.
#![allow(non_camel_case_types)]

use crate::config::settings::{Config, ConfigError, LoadError};
use crate::engine::detector::{Detector, RecordError, Stats, Verdict};
use crate::eql::RuleError;
use crate::engine::standalone::{append_record, filter_chunk_and_alerts};
use crate::config::rule::{meta_for_file, Rule};
use std::any::Any;
use std::ffi::{c_char, CStr, CString};
use std::mem::size_of;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

pub(crate) mod boundary;
mod report;

use boundary::*;
pub use report::{rules_report, rules_report_lines};

/// The ABI version: bumped only for a binary-incompatible change (a function
/// removed or changed, a status renumbered, a struct field moved). Equals the
/// number in the shared library's SONAME (libapt_netcon.so.1).
pub const APTNC_ABI_VERSION: u32 = 1;

/// The current layout version of aptnc_stats (see its `version` field).
pub const APTNC_STATS_VERSION: u32 = 2;

/// The current layout version of aptnc_flush_report (see its `version` field).
pub const APTNC_FLUSH_REPORT_VERSION: u32 = 2;

/// The result of a call. A uint32_t in C; the numbers are fixed forever and
/// new statuses are only ever added at the end. Use aptnc_status_str() for
/// text.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum aptnc_status {
    /// Success.
    Ok = 0,
    /// aptnc_filter / aptnc_filter_msgpack: forward the input exactly as it came.
    Unchanged = 1,
    /// aptnc_filter / aptnc_filter_msgpack: forward the returned bytes instead of the input.
    Annotated = 2,
    /// A required pointer argument was NULL (or a byte pointer was NULL with a non-zero length).
    NullParameter = 3,
    /// The record is not valid JSON (syntax, truncation, invalid UTF-8). Forward it unchanged.
    InvalidJson = 4,
    /// The record or chunk is not valid MessagePack, or not a Fluent Bit chunk. Forward it unchanged.
    InvalidMsgpack = 5,
    /// The record is valid JSON but its top level is not an object. Forward it unchanged.
    NotAnObject = 6,
    /// The record is nested too deeply to read. Forward it unchanged.
    TooDeep = 7,
    /// The record is larger than the `max_record_bytes` config key. Forward it unchanged.
    TooLarge = 8,
    /// The record matches a stage of the rule but has no usable `@timestamp`. Forward it unchanged.
    BadTimestamp = 9,
    /// The record completed a sequence but the alert could not be written into it. Forward it unchanged.
    AnnotateFailed = 10,
    /// The config is not valid: not JSON, an unknown key, a bad value (the error names the key).
    ConfigError = 11,
    /// The rule does not load: an EQL error (with line and column) or an unknown built-in name.
    RuleError = 12,
    /// A bug: the library panicked. A detector it happened on is now poisoned.
    Panic = 13,
    /// The detector panicked earlier and can no longer be used; forward records unchanged and free it.
    Poisoned = 14,
    /// An argument has an invalid value (e.g. the `size` field of an aptnc_stats is too small).
    InvalidArgument = 15,
}

/// A compiled rule: immutable, thread-safe. Create with aptnc_rule_compile()
/// or aptnc_rule_builtin(), release with aptnc_rule_free(). Any number of
/// threads may pass the same rule to aptnc_init() at once; each detector
/// keeps its own reference, so the handle may be freed while detectors built
/// from it live on.
pub struct aptnc_rule {
    rule: Rule,
}

/// A detector: one stream's state (partial sequences, counters, output
/// buffers). Create with aptnc_init(), release with aptnc_free(). One caller
/// at a time; it may be handed from one thread to another between calls.
pub struct aptnc_detector {
    det: Detector,
    /// The last annotated chunk from aptnc_filter_msgpack.
    chunk: Vec<u8>,
    /// The standalone alerts last handed over by aptnc_flush / aptnc_finish.
    alerts: Vec<u8>,
    /// What aptnc_footprint hands out (fixed for the detector's life).
    footprint: Vec<u8>,
    /// The last warning handed out by aptnc_take_warning.
    warning: Vec<u8>,
    /// The last report handed out by aptnc_rules_report.
    report: Vec<u8>,
    /// Set when a call panicked: the state may be inconsistent.
    poisoned: bool,
}

/// Why a rule or detector could not be created: a status, a message, and
/// where known the config key or the rule text's line and column. Owned by
/// the caller; release with aptnc_error_free(). Immutable: may be read from
/// any thread.
pub struct aptnc_error {
    status: aptnc_status,
    message: CString,
    key: Option<CString>,
    line: u32,
    column: u32,
}

/// Counters of a detector, filled by aptnc_get_stats(). Extensible: set `size`
/// to sizeof(aptnc_stats) before the call; the library fills
/// min(size, its own size) bytes and writes that number back into `size`, so
/// programs built against an older or newer header keep working (fields past
/// the returned `size` were not written). Counters mirror the Rust
/// `Stats::fields()` order; new ones are only ever added at the end.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct aptnc_stats {
    /// In: sizeof(aptnc_stats) as the caller knows it (at least 8). Out: bytes written.
    pub size: u32,
    /// Out: the layout version (APTNC_STATS_VERSION of the library).
    pub version: u32,
    /// Records seen (JSON records, and MessagePack records excluding group markers).
    pub records: u64,
    /// Records returned with alert fields.
    pub annotated: u64,
    /// Records matching the rule's first stage.
    pub stage1_matches: u64,
    /// Records matching the rule's second stage.
    pub stage2_matches: u64,
    /// Sequences completed (alerts).
    pub sequences_completed: u64,
    /// Partial sequences consumed by a later stage more than maxspan after their start.
    pub rejected_by_maxspan: u64,
    /// Partial sequences dropped once the event-time watermark passed start + maxspan.
    pub expired_by_maxspan: u64,
    /// Partial sequences evicted, oldest first, because `max_pending_sequences` was reached.
    pub evicted_by_cap: u64,
    /// Waiting events replaced by a newer event of the same stage and key.
    pub replaced: u64,
    /// Events that could not pair because of arrival order.
    pub out_of_order: u64,
    /// First-stage events already more than maxspan behind the watermark.
    pub late: u64,
    /// Stage matches with a join-key field missing or null.
    pub missing_key: u64,
    /// Stage matches whose key fields had too many value combinations.
    pub key_combinations_truncated: u64,
    /// Records with a non-address value in a field the rule uses as an IP.
    pub invalid_ip: u64,
    /// Records passed through as APTNC_STATUS_TOO_LARGE.
    pub too_large: u64,
    /// Records passed through as APTNC_STATUS_INVALID_JSON.
    pub invalid_json: u64,
    /// Records passed through as APTNC_STATUS_INVALID_MSGPACK (records inside a chunk).
    pub invalid_msgpack: u64,
    /// Records passed through as APTNC_STATUS_NOT_AN_OBJECT.
    pub not_an_object: u64,
    /// Records passed through as APTNC_STATUS_TOO_DEEP.
    pub too_deep: u64,
    /// Records passed through as APTNC_STATUS_BAD_TIMESTAMP.
    pub bad_timestamp: u64,
    /// Records passed through as APTNC_STATUS_ANNOTATE_FAILED.
    pub annotate_failed: u64,
    /// Partial sequences held now.
    pub pending: u64,
    /// Events excluded by an exception item (all items together).
    pub excluded: u64,
    /// Partial sequences evicted by max_pending_per_host (version 2 on).
    pub evicted_by_host_cap: u64,
    /// Partial sequences evicted by max_state_bytes.
    pub evicted_by_bytes: u64,
    /// Stage events ignored: @timestamp more than max_future ahead of the clock.
    pub future_timestamp: u64,
    /// Events held back for max_lateness now.
    pub held: u64,
    /// Held events released early because a cap was reached.
    pub held_forced: u64,
    /// Alerts produced as standalone alert records.
    pub standalone_alerts: u64,
    /// Standalone alerts dropped because too many waited to be collected.
    pub alerts_dropped: u64,
}

/// What aptnc_flush() did. Extensible like aptnc_stats: set `size` to
/// sizeof(aptnc_flush_report) before the call; the library fills
/// min(size, its own size) bytes and writes that number back into `size`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct aptnc_flush_report {
    /// In: sizeof(aptnc_flush_report) as the caller knows it (at least 8). Out: bytes written.
    pub size: u32,
    /// Out: the layout version (APTNC_FLUSH_REPORT_VERSION of the library).
    pub version: u32,
    /// Partial sequences dropped because they can no longer complete.
    pub expired: u64,
    /// Partial sequences still held.
    pub pending: u64,
    /// Standalone alert records (with max_lateness > 0: a sequence
    /// completed after its last record had gone on; with a rule pack: every
    /// alert, in rule order for one record), to be forwarded by the
    /// host after the records it has: the alerts of JSON records as
    /// newline-delimited JSON (each ends with '\n'), those of aptnc_filter()
    /// calls; aptnc_filter_msgpack() appends its alerts to the next chunk
    /// itself, and only aptnc_finish() hands over those still waiting, here,
    /// as Fluent Bit records `[[time, {}], map]` (a detector normally sees
    /// one format; with both, the JSON ones come first). Handed over once: a later call does not repeat them. Never
    /// NULL; owned by the detector, valid until the next call on it.
    pub alerts: *const u8,
    /// Length of `alerts` in bytes.
    pub alerts_len: usize,
    /// Number of records in `alerts` (version 2 on).
    pub alert_count: u64,
    /// Events still held back for max_lateness.
    pub held: u64,
}

/// `aptnc_flush_report::alerts` while there are none: a valid, empty buffer.
static NO_ALERTS: [u8; 1] = [0];

const VERSION_C: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
const EMPTY_C: &str = "\0";

// A detector may move between threads; a rule is shared by them.
const _: () = {
    const fn send<T: Send>() {}
    const fn send_sync<T: Send + Sync>() {}
    send::<aptnc_detector>();
    send_sync::<aptnc_rule>();
    send_sync::<aptnc_error>();
};

// ---------------------------------------------------------------------------
// Versions and statuses.

/// The library's version ("MAJOR.MINOR.PATCH"), as a static NUL-terminated
/// string: never freed, never NULL. Compare with APTNC_VERSION to detect a
/// header/library mismatch. Thread-safe.
#[no_mangle]
pub extern "C" fn aptnc_version() -> *const c_char {
    guard(|| VERSION_C.as_ptr() as *const c_char).unwrap_or(ptr::null())
}

/// The library's ABI version. A program built against APTNC_ABI_VERSION N
/// works with a library whose aptnc_abi_version() is N. Thread-safe.
#[no_mangle]
pub extern "C" fn aptnc_abi_version() -> u32 {
    guard(|| APTNC_ABI_VERSION).unwrap_or(0)
}

/// A static, NUL-terminated description of a status, for any number
/// (unknown numbers give "unknown status"). Never NULL, never freed.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn aptnc_status_str(status: u32) -> *const c_char {
    guard(|| status_str(status).as_ptr() as *const c_char).unwrap_or(ptr::null())
}

fn status_str(status: u32) -> &'static str {
    match status {
        0 => "ok\0",
        1 => "unchanged: forward the input as it came\0",
        2 => "annotated: forward the returned bytes instead of the input\0",
        3 => "a required pointer argument is NULL\0",
        4 => "record is not valid JSON\0",
        5 => "not valid MessagePack or not a Fluent Bit chunk\0",
        6 => "record's top level is not an object\0",
        7 => "record is nested too deeply\0",
        8 => "record is larger than max_record_bytes\0",
        9 => "record matches a rule stage but @timestamp is missing or invalid\0",
        10 => "the alert could not be written into the record\0",
        11 => "invalid config\0",
        12 => "invalid rule\0",
        13 => "internal error (panic)\0",
        14 => "detector poisoned by an earlier internal error\0",
        15 => "invalid argument\0",
        _ => "unknown status\0",
    }
}

// ---------------------------------------------------------------------------
// Errors.

/// The status of the call that produced `error` (APTNC_STATUS_NULL_PARAMETER
/// when `error` is NULL).
///
/// # Safety
/// `error` is NULL or a live error object.
#[no_mangle]
pub unsafe extern "C" fn aptnc_error_status(error: *const aptnc_error) -> aptnc_status {
    // SAFETY: the caller's contract.
    guard(|| unsafe { error.as_ref() }.map_or(aptnc_status::NullParameter, |e| e.status)).unwrap_or(aptnc_status::Panic)
}

/// The error's message, NUL-terminated, one or more lines: for a rule error
/// it names the line and column and shows the source line with a caret under
/// the fault; for a config error it names the key. Owned by `error`, valid
/// until aptnc_error_free(error). An empty string when `error` is NULL.
///
/// # Safety
/// `error` is NULL or a live error object.
#[no_mangle]
pub unsafe extern "C" fn aptnc_error_message(error: *const aptnc_error) -> *const c_char {
    // SAFETY: the caller's contract.
    let empty = EMPTY_C.as_ptr() as *const c_char;
    guard(|| unsafe { error.as_ref() }.map_or(empty, |e| e.message.as_ptr())).unwrap_or(empty)
}

/// The config key at fault (NUL-terminated, owned by `error`, valid until
/// aptnc_error_free(error)), or NULL when the error is not about one key or
/// `error` is NULL.
///
/// # Safety
/// `error` is NULL or a live error object.
#[no_mangle]
pub unsafe extern "C" fn aptnc_error_key(error: *const aptnc_error) -> *const c_char {
    // SAFETY: the caller's contract.
    guard(|| unsafe { error.as_ref() }.and_then(|e| e.key.as_ref()).map_or(ptr::null(), |k| k.as_ptr()))
        .unwrap_or(ptr::null())
}

/// The 1-based line in the rule text where a rule error is; 0 when the error
/// has no position or `error` is NULL.
///
/// # Safety
/// `error` is NULL or a live error object.
#[no_mangle]
pub unsafe extern "C" fn aptnc_error_line(error: *const aptnc_error) -> u32 {
    // SAFETY: the caller's contract.
    guard(|| unsafe { error.as_ref() }.map_or(0, |e| e.line)).unwrap_or(0)
}

/// The 1-based column (in characters) in the rule text where a rule error
/// is; 0 when the error has no position or `error` is NULL.
///
/// # Safety
/// `error` is NULL or a live error object.
#[no_mangle]
pub unsafe extern "C" fn aptnc_error_column(error: *const aptnc_error) -> u32 {
    // SAFETY: the caller's contract.
    guard(|| unsafe { error.as_ref() }.map_or(0, |e| e.column)).unwrap_or(0)
}

/// Release an error object. NULL does nothing. The strings it returned are
/// invalid afterwards.
///
/// # Safety
/// `error` is NULL or a live error object, freed once.
#[no_mangle]
pub unsafe extern "C" fn aptnc_error_free(error: *mut aptnc_error) {
    let _ = guard(|| {
        if !error.is_null() {
            // SAFETY: the caller's contract: it came from Box::into_raw.
            drop(unsafe { Box::from_raw(error) });
        }
    });
}

// ---------------------------------------------------------------------------
// Rules.

/// Compile a rule from EQL text.
///
/// `text`/`text_len`: the query (UTF-8; not NUL-terminated; copied, so it
/// may be released after the call). `name`: an optional NUL-terminated name
/// used as the alert's rule name and id (NULL: "custom"). On success
/// `*rule` receives a new rule the caller releases with aptnc_rule_free().
/// On failure returns APTNC_STATUS_RULE_ERROR (with the line and column in
/// the error), APTNC_STATUS_NULL_PARAMETER or APTNC_STATUS_PANIC, and, when
/// `error` is not NULL, stores a new error object in `*error` (release it
/// with aptnc_error_free()). Thread-safe.
///
/// # Safety
/// Pointers are NULL or valid for their documented use.
#[no_mangle]
pub unsafe extern "C" fn aptnc_rule_compile(
    text: *const u8,
    text_len: usize,
    name: *const c_char,
    rule: *mut *mut aptnc_rule,
    error: *mut *mut aptnc_error,
) -> aptnc_status {
    with_error(error, || {
        if rule.is_null() {
            return Err(Failure::null("rule"));
        }
        // SAFETY: the caller's contract.
        let text = unsafe { input(text, text_len) }.ok_or_else(|| Failure::null("text"))?;
        let text = std::str::from_utf8(text).map_err(|e| {
            let mut f =
                RuleError::new(crate::eql::RuleErrorKind::Syntax, format!("the rule text is not valid UTF-8 ({e})"));
            let before = &text[..e.valid_up_to()];
            f.line = before.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
            let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            // valid_up_to() ends on a character boundary.
            f.column = std::str::from_utf8(&before[line_start..]).map_or(0, |s| s.chars().count() as u32 + 1);
            Failure::from(f)
        })?;
        // SAFETY: the caller's contract.
        let name = unsafe { c_str(name) }.map(|n| n.to_string_lossy().into_owned());
        let compiled = Rule::from_eql(text, meta_for_file(name.as_deref().unwrap_or("custom")))?;
        // SAFETY: `rule` is non-NULL and points to a writable `aptnc_rule *`.
        unsafe { *rule = Box::into_raw(Box::new(aptnc_rule { rule: compiled })) };
        Ok(())
    })
}

/// A built-in rule by name: "apt_netcon_v5" (the default; aliases "default",
/// "v5") or "apt_netcon_v11" (aliases "latest", "v11"). `name` is
/// NUL-terminated. On success `*rule` receives a new rule the caller
/// releases with aptnc_rule_free(). An unknown name gives
/// APTNC_STATUS_RULE_ERROR; errors are reported as for aptnc_rule_compile().
/// Thread-safe.
///
/// # Safety
/// Pointers are NULL or valid for their documented use.
#[no_mangle]
pub unsafe extern "C" fn aptnc_rule_builtin(
    name: *const c_char,
    rule: *mut *mut aptnc_rule,
    error: *mut *mut aptnc_error,
) -> aptnc_status {
    with_error(error, || {
        // SAFETY: the caller's contract.
        let name = unsafe { c_str(name) }.ok_or_else(|| Failure::null("name"))?;
        if rule.is_null() {
            return Err(Failure::null("rule"));
        }
        let built = Rule::builtin(&name.to_string_lossy())?;
        // SAFETY: `rule` is non-NULL and points to a writable `aptnc_rule *`.
        unsafe { *rule = Box::into_raw(Box::new(aptnc_rule { rule: built })) };
        Ok(())
    })
}

/// Release a rule handle. NULL does nothing. Detectors built from it are not
/// affected (they hold their own reference). Do not free a rule while
/// another thread is passing it to aptnc_init().
///
/// # Safety
/// `rule` is NULL or a live rule handle, freed once.
#[no_mangle]
pub unsafe extern "C" fn aptnc_rule_free(rule: *mut aptnc_rule) {
    let _ = guard(|| {
        if !rule.is_null() {
            // SAFETY: the caller's contract: it came from Box::into_raw.
            drop(unsafe { Box::from_raw(rule) });
        }
    });
}

// ---------------------------------------------------------------------------
// Detectors.

/// Create a detector.
///
/// `config`/`config_len`: a JSON object of config keys (see the table
/// in docs/configuration.md: rule, rule_file, rules, rules_dir,
/// skip_broken_rules, maxspan, exceptions, the trusted_* lists, the state
/// caps, max_lateness, max_future, max_record_bytes, annotation_prefix,
/// kibana_fields, prefilter); copied, so it may be released after the call.
/// NULL with length 0, an empty or an all-blank text means the defaults (the
/// embedded rule apt_netcon_v5). An unknown key or a bad value gives
/// APTNC_STATUS_CONFIG_ERROR, and the error names the key (aptnc_error_key()).
///
/// With `rules` or `rules_dir` the detector runs that rule pack (see the top
/// of this header). A rule of the pack that does not load gives
/// APTNC_STATUS_CONFIG_ERROR (key `rules` or `rules_dir`) whose message
/// lists every such rule with its reason, one per line; with
/// `skip_broken_rules` true the others run, and aptnc_rules_report() lists
/// the skipped ones under "skipped".
///
/// `rule`: optional. When not NULL the detector runs this rule and the
/// config's `rule`, `rule_file`, `rules` and `rules_dir` keys are ignored; the detector takes its
/// own reference, so `rule` may be freed at any time after the call. When
/// NULL the config chooses the rule (a `rule_file` that does not compile
/// gives APTNC_STATUS_RULE_ERROR with its line and column).
///
/// On success `*detector` receives a new detector the caller releases with
/// aptnc_free(). On failure, when `error` is not NULL, `*error` receives a
/// new error object (release it with aptnc_error_free()). Thread-safe:
/// several threads may create detectors from one rule at once.
///
/// # Safety
/// Pointers are NULL or valid for their documented use.
#[no_mangle]
pub unsafe extern "C" fn aptnc_init(
    config: *const u8,
    config_len: usize,
    rule: *const aptnc_rule,
    detector: *mut *mut aptnc_detector,
    error: *mut *mut aptnc_error,
) -> aptnc_status {
    with_error(error, || {
        if detector.is_null() {
            return Err(Failure::null("detector"));
        }
        // SAFETY: the caller's contract.
        let text = unsafe { input(config, config_len) }.ok_or_else(|| Failure::null("config"))?;
        let text = std::str::from_utf8(text)
            .map_err(|e| Failure::new(aptnc_status::ConfigError, format!("config: not valid UTF-8 ({e})")))?;
        let cfg = Config::from_json(text)?;
        // SAFETY: the caller's contract: NULL or a live rule handle.
        let det = match unsafe { rule.as_ref() } {
            Some(r) => Detector::with_rule(r.rule.clone(), &cfg),
            None => Detector::new(&cfg)?,
        };
        let footprint = crate::engine::footprint::Footprint::of(&det, &cfg).to_json().into_bytes();
        let boxed = Box::new(aptnc_detector { det, chunk: Vec::new(), alerts: Vec::new(), footprint, warning: Vec::new(), report: Vec::new(), poisoned: false });
        // SAFETY: `detector` is non-NULL and points to a writable `aptnc_detector *`.
        unsafe { *detector = Box::into_raw(boxed) };
        Ok(())
    })
}

/// Release a detector and everything it returned. NULL does nothing. A
/// poisoned detector is freed too.
///
/// # Safety
/// `detector` is NULL or a live detector, freed once, not in use by another
/// thread.
#[no_mangle]
pub unsafe extern "C" fn aptnc_free(detector: *mut aptnc_detector) {
    let _ = guard(|| {
        if !detector.is_null() {
            // SAFETY: the caller's contract: it came from Box::into_raw.
            drop(unsafe { Box::from_raw(detector) });
        }
    });
}

/// Evaluate one JSON record (one Elastic Defend event, without its line
/// terminator).
///
/// Returns APTNC_STATUS_UNCHANGED (forward the record as it came), or
/// APTNC_STATUS_ANNOTATED: `*out`/`*out_len` then receive the record with the
/// alert fields added (JSON, no terminator), owned by the detector and valid
/// until the next call on it: copy or write them out before that. Any other
/// status (INVALID_JSON, NOT_AN_OBJECT, TOO_DEEP, TOO_LARGE, BAD_TIMESTAMP,
/// ANNOTATE_FAILED, NULL_PARAMETER, PANIC, POISONED) means: forward the
/// record unchanged; the reason is counted in aptnc_get_stats(). `*out` and
/// `*out_len` are written only for APTNC_STATUS_ANNOTATED.
///
/// `record` is read during the call only. `record` may be NULL when
/// `record_len` is 0 (an empty record: APTNC_STATUS_INVALID_JSON). One
/// caller at a time per detector.
///
/// # Safety
/// Pointers are NULL or valid for their documented use.
#[no_mangle]
pub unsafe extern "C" fn aptnc_filter(
    detector: *mut aptnc_detector,
    record: *const u8,
    record_len: usize,
    out: *mut *const u8,
    out_len: *mut usize,
) -> aptnc_status {
    with_detector(detector, |d| {
        if out.is_null() || out_len.is_null() {
            return aptnc_status::NullParameter;
        }
        // SAFETY: the caller's contract.
        let Some(record) = (unsafe { input(record, record_len) }) else {
            return aptnc_status::NullParameter;
        };
        match d.det.process(record) {
            Ok(Verdict::Unchanged) => aptnc_status::Unchanged,
            Ok(Verdict::Annotated(bytes)) => {
                // SAFETY: both are non-NULL and writable (checked above).
                unsafe {
                    *out = bytes.as_ptr();
                    *out_len = bytes.len();
                }
                aptnc_status::Annotated
            }
            Err(e) => record_status(e),
        }
    })
}

/// What the detector reads from a record and what a record must hold to
/// match the rule at all, as JSON (UTF-8, no terminator):
///
/// ```text
/// {"fields": ["@timestamp", "event.category", "host.id", ...],
///  "stages": [[["event.category", ["process"]], ["process.parent.name", ["apt"]], ...], ...],
///  "keys": [["host.id", "process.entity_id"], ["host.id", "process.parent.entity_id"]],
///  "whole_record": false, "alert_roots": ["rule", "threat", "kibana", "apt_netcon"]}
/// ```
///
/// - `fields`: every field path the detector reads (the rule's fields, join
///   keys, `@timestamp`, the fields an alert carries, the exception items').
///   A record reduced to these fields (as dotted members, in any order; a
///   field found at several places as several members of the same name)
///   gives the same outcome and the same alert fields as the whole record,
///   unless `whole_record` is true (error counters may differ: members not
///   read are not checked).
/// - `stages`: per stage of the rule, its required tests `[field,
///   [literal, ...]]`: the stage can match only if, for EVERY test, the field
///   holds a string equal (exactly) to one of the literals (or an array
///   holding one). A record for which every stage has a failing test matches
///   nothing and changes no state: the caller may skip aptnc_filter for it
///   (it is then not counted in `records`). Empty: no record may be skipped.
/// - `keys`: per stage, the fields of its join key (the `sequence by` fields,
///   then the stage's own `by` fields). An event of a later stage pairs only
///   with a partial sequence begun by an earlier event whose key held the
///   same values (as keywords), position by position; with `max_lateness` 0
///   (`whole_record` false) that event came first. So a record that can
///   match only later stages, and whose key values no earlier record sent
///   for the first stage held, completes nothing: the caller may skip it
///   too. Empty when `stages` is.
/// - `whole_record`: true when records must be passed whole (the rule runs
///   on the generic engine, or `max_lateness` is above 0: records come back
///   whole inside standalone alerts; or the detector runs a rule pack
///   (`rules`, `rules_dir`): `stages` and `keys` are then empty).
/// - `alert_roots`: the top-level members an alert can write (with an
///   `annotation_prefix`, its first segment). An annotated reduced record
///   holds the alert under these; merging them into the whole record as
///   the library does (a root that is an object in both is merged key by
///   key, the alert's leaves winning; anything else replaced; dotted
///   members naming a path the alert writes removed) gives the whole
///   record's annotated form.
///
/// `*out`/`*out_len` receive the text, owned by the detector and valid
/// until aptnc_free() (it never changes). Written only on APTNC_STATUS_OK.
///
/// # Safety
/// Pointers are NULL or valid for their documented use.
#[no_mangle]
pub unsafe extern "C" fn aptnc_footprint(
    detector: *mut aptnc_detector,
    out: *mut *const u8,
    out_len: *mut usize,
) -> aptnc_status {
    with_detector(detector, |d| {
        // SAFETY: the caller passes NULL or writable pointers.
        unsafe { hand_out(&d.footprint, out, out_len) }
    })
}

/// Write `bytes` (owned by the detector) to the out-parameters.
///
/// # Safety
/// `out` and `out_len` are NULL or writable.
unsafe fn hand_out(bytes: &[u8], out: *mut *const u8, out_len: *mut usize) -> aptnc_status {
    if out.is_null() || out_len.is_null() {
        return aptnc_status::NullParameter;
    }
    // SAFETY: both are non-NULL and writable (the caller's contract).
    unsafe {
        *out = bytes.as_ptr();
        *out_len = bytes.len();
    }
    aptnc_status::Ok
}

/// The detector's next warning, if any: a one-line message saying why no
/// alert can come from what it sees, and the fix — records that look
/// unparsed (`{"log": "…"}`: no JSON parser upstream), or records matching
/// a stage without a usable `@timestamp` (a parser's `Time_Key` removed it).
/// A cause is warned of at its first occurrence and again every 100,000.
/// Hosts that log (the Lua glue) call it after records that crossed.
///
/// `*out`/`*out_len` receive the UTF-8 text, owned by the detector and valid
/// until the next call on it; `*out_len` is 0 when there is no warning.
///
/// # Safety
/// Pointers are NULL or valid for their documented use.
#[no_mangle]
pub unsafe extern "C" fn aptnc_take_warning(
    detector: *mut aptnc_detector,
    out: *mut *const u8,
    out_len: *mut usize,
) -> aptnc_status {
    // SAFETY: the caller passes NULL or writable pointers.
    unsafe {
        text_out(detector, out, out_len, |d| {
            d.warning.clear();
            if let Some(w) = d.det.take_warning() {
                d.warning.extend_from_slice(w.as_bytes());
            }
            &d.warning
        })
    }
}

/// Refill a text the detector owns and hand it out (nothing is changed
/// when an out-parameter is NULL).
///
/// # Safety
/// `out` and `out_len` are NULL or writable.
unsafe fn text_out(
    detector: *mut aptnc_detector,
    out: *mut *const u8,
    out_len: *mut usize,
    fill: impl FnOnce(&mut aptnc_detector) -> &Vec<u8>,
) -> aptnc_status {
    with_detector(detector, |d| {
        if out.is_null() || out_len.is_null() {
            return aptnc_status::NullParameter;
        }
        let text = fill(d);
        // SAFETY: both are non-NULL and writable (the caller's contract).
        unsafe { hand_out(text, out, out_len) }
    })
}

/// Each rule's counters, and the rules that did not load, as JSON (UTF-8,
/// no terminator):
///
/// ```text
/// {"rules": [{"rule_id": "…", "name": "…", "engine": "fast" | "generic",
///             "alerts": 1, "records": 3, "annotated": 1, …}, …],
///  "skipped": [{"name": "rules/bad.eql", "reason": "syntax error at …"}, …]}
/// ```
///
/// `rules` holds one object per rule, in the pack's order (one object for
/// a detector of one rule): its `rule_id` and `name`, the `engine` running
/// it, `alerts` (the alerts it gave, inline or standalone) and every counter
/// of aptnc_stats by its field name (`records`: for a rule of a pack, the
/// records it was tested on — those the pack's index and the stage tests on
/// the record's fields did not rule out; `indexed`, for a rule of a pack:
/// the records the index let through to those tests).
/// New members may be added; none is ever removed. `skipped`: the rules of
/// the pack that did not load (`skip_broken_rules`), empty otherwise.
///
/// `*out`/`*out_len` receive the text, owned by the detector and valid
/// until the next call on it. Written only on APTNC_STATUS_OK.
///
/// # Safety
/// Pointers are NULL or valid for their documented use.
#[no_mangle]
pub unsafe extern "C" fn aptnc_rules_report(
    detector: *mut aptnc_detector,
    out: *mut *const u8,
    out_len: *mut usize,
) -> aptnc_status {
    // SAFETY: the caller passes NULL or writable pointers.
    unsafe {
        text_out(detector, out, out_len, |d| {
            d.report.clear();
            d.report.extend_from_slice(rules_report(&d.det).to_string().as_bytes());
            &d.report
        })
    }
}

/// Evaluate one Fluent Bit chunk: MessagePack records concatenated, each
/// `[[EventTime, {metadata}], {body}]` (or the legacy `[EventTime, {body}]`;
/// group start/end markers pass through).
///
/// Returns APTNC_STATUS_UNCHANGED when no record was annotated (forward the
/// chunk as it came; nothing was copied), or APTNC_STATUS_ANNOTATED:
/// `*out`/`*out_len` then receive a whole new chunk (never empty) in which
/// only the annotated record bodies differ, owned by the detector and valid
/// until the next call on it (a Fluent Bit filter must copy it into a
/// malloc()ed buffer, which the host frees). APTNC_STATUS_INVALID_MSGPACK:
/// the chunk could not be walked; forward it unchanged. Records inside the
/// chunk that cannot be read are passed through and counted in
/// aptnc_get_stats(). `*out` and `*out_len` are written only for
/// APTNC_STATUS_ANNOTATED.
///
/// `chunk` is read during the call only; NULL is allowed when `chunk_len`
/// is 0. One caller at a time per detector.
///
/// # Safety
/// Pointers are NULL or valid for their documented use.
#[no_mangle]
pub unsafe extern "C" fn aptnc_filter_msgpack(
    detector: *mut aptnc_detector,
    chunk: *const u8,
    chunk_len: usize,
    out: *mut *const u8,
    out_len: *mut usize,
) -> aptnc_status {
    with_detector(detector, |d| {
        if out.is_null() || out_len.is_null() {
            return aptnc_status::NullParameter;
        }
        // SAFETY: the caller's contract.
        let Some(chunk) = (unsafe { input(chunk, chunk_len) }) else {
            return aptnc_status::NullParameter;
        };
        d.chunk.clear();
        match filter_chunk_and_alerts(&mut d.det, chunk, &mut d.chunk) {
            // An empty chunk handed back as "modified" would drop every record.
            Ok((outcome, standalone)) if (outcome.annotated > 0 || standalone > 0) && !d.chunk.is_empty() => {
                // SAFETY: both are non-NULL and writable (checked above).
                unsafe {
                    *out = d.chunk.as_ptr();
                    *out_len = d.chunk.len();
                }
                aptnc_status::Annotated
            }
            Ok(_) => aptnc_status::Unchanged,
            Err(_) => aptnc_status::InvalidMsgpack,
        }
    })
}

/// Drop the partial sequences that can no longer complete at the current
/// event-time watermark (the latest `@timestamp` seen; never the wall
/// clock), hand over the standalone alerts waiting (`report->alerts`), and
/// report. Safe to call at any time, e.g. from the host's periodic flush;
/// with max_lateness > 0 or a rule pack, call it after aptnc_filter() calls
/// to collect alerts (aptnc_get_stats()'s `standalone_alerts` tells when
/// some came).
///
/// `report`: set `report->size = sizeof(aptnc_flush_report)` first; a size
/// below 8 gives APTNC_STATUS_INVALID_ARGUMENT and nothing is done. On
/// APTNC_STATUS_OK the library fills min(size, its size) bytes and writes
/// that number into `size`. `report->alerts` is owned by the detector and
/// valid until the next call on it. One caller at a time per detector.
///
/// # Safety
/// Pointers are NULL or valid for their documented use; `report` points to
/// at least `report->size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn aptnc_flush(detector: *mut aptnc_detector, report: *mut aptnc_flush_report) -> aptnc_status {
    // SAFETY: the caller's contract, passed on.
    unsafe { flush_or_finish(detector, report, false) }
}

/// End of stream: release every event held back for max_lateness (as if
/// event time had moved past them all), then do what aptnc_flush() does, so
/// `report->alerts` holds every alert still to come. Call it before
/// aptnc_free() when the stream ends; nothing is lost. With max_lateness 0
/// it is aptnc_flush(). The detector stays usable.
///
/// # Safety
/// As for aptnc_flush().
#[no_mangle]
pub unsafe extern "C" fn aptnc_finish(detector: *mut aptnc_detector, report: *mut aptnc_flush_report) -> aptnc_status {
    // SAFETY: the caller's contract, passed on.
    unsafe { flush_or_finish(detector, report, true) }
}

unsafe fn flush_or_finish(detector: *mut aptnc_detector, report: *mut aptnc_flush_report, finish: bool) -> aptnc_status {
    with_detector(detector, |d| {
        if report.is_null() {
            return aptnc_status::NullParameter;
        }
        // SAFETY: non-NULL; the caller's contract for the rest.
        if (unsafe { ptr::read(report as *const u32) } as usize) < SIZED_HEADER {
            return aptnc_status::InvalidArgument;
        }
        if finish {
            d.det.finish();
        }
        let r = d.det.flush();
        d.alerts.clear();
        let mut count = d.det.take_json_alerts(&mut d.alerts);
        if finish {
            let now = std::time::SystemTime::now();
            for a in d.det.take_alerts(true) {
                append_record(&mut d.alerts, &a.bytes, now);
                count += 1;
            }
        }
        let value = aptnc_flush_report {
            size: size_of::<aptnc_flush_report>() as u32,
            version: APTNC_FLUSH_REPORT_VERSION,
            expired: r.expired,
            pending: r.pending,
            alerts: if d.alerts.is_empty() { NO_ALERTS.as_ptr() } else { d.alerts.as_ptr() },
            alerts_len: d.alerts.len(),
            alert_count: count,
            held: d.det.stats().held,
        };
        // SAFETY: as above.
        unsafe { write_sized(report, &value) }
    })
}

/// Read the detector's counters into `*stats`.
///
/// Set `stats->size = sizeof(aptnc_stats)` first; a size below 8 gives
/// APTNC_STATUS_INVALID_ARGUMENT. On APTNC_STATUS_OK the library fills
/// min(size, its size) bytes (`version` = APTNC_STATS_VERSION) and writes
/// that number into `size`. One caller at a time per detector.
///
/// # Safety
/// Pointers are NULL or valid for their documented use; `stats` points to
/// at least `stats->size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn aptnc_get_stats(detector: *mut aptnc_detector, stats: *mut aptnc_stats) -> aptnc_status {
    with_detector(detector, |d| {
        if stats.is_null() {
            return aptnc_status::NullParameter;
        }
        let value = stats_of(&d.det.stats());
        // SAFETY: non-NULL; the caller's contract for the rest.
        unsafe { write_sized(stats, &value) }
    })
}

fn stats_of(s: &Stats) -> aptnc_stats {
    aptnc_stats {
        size: size_of::<aptnc_stats>() as u32,
        version: APTNC_STATS_VERSION,
        records: s.records,
        annotated: s.annotated,
        stage1_matches: s.stage_matches[0],
        stage2_matches: s.stage_matches[1],
        sequences_completed: s.sequences_completed,
        rejected_by_maxspan: s.rejected_by_maxspan,
        expired_by_maxspan: s.expired_by_maxspan,
        evicted_by_cap: s.evicted_by_cap,
        replaced: s.replaced,
        out_of_order: s.out_of_order,
        late: s.late,
        missing_key: s.missing_key,
        key_combinations_truncated: s.key_combinations_truncated,
        invalid_ip: s.invalid_ip,
        too_large: s.too_large,
        invalid_json: s.invalid_json,
        invalid_msgpack: s.invalid_msgpack,
        not_an_object: s.not_an_object,
        too_deep: s.too_deep,
        bad_timestamp: s.bad_timestamp,
        annotate_failed: s.annotate_failed,
        pending: s.pending,
        excluded: s.excluded,
        evicted_by_host_cap: s.evicted_by_host_cap,
        evicted_by_bytes: s.evicted_by_bytes,
        future_timestamp: s.future_timestamp,
        held: s.held,
        held_forced: s.held_forced,
        standalone_alerts: s.standalone_alerts,
        alerts_dropped: s.alerts_dropped,
    }
}

/// Test hook, in debug builds only and not in the header: panics inside the
/// guard on `detector`, which poisons it. The C tests declare it themselves
/// (as a weak symbol) to check PANIC and POISONED end to end.
///
/// # Safety
/// As for [`aptnc_filter`].
#[cfg(debug_assertions)]
#[no_mangle]
pub unsafe extern "C" fn aptnc_test_force_panic(detector: *mut aptnc_detector) -> aptnc_status {
    with_detector(detector, |_| panic!("aptnc_test_force_panic: a deliberate panic"))
}

#[cfg(test)]
mod tests;
