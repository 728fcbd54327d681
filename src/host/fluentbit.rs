//! The Fluent Bit native filter plugin: `flb-filter_apt_netcon.so`.
//!
//! Fluent Bit 3.2 … 5.1 loads a shared object named `flb-filter_<name>.so`
//! (`fluent-bit -e`, `[PLUGINS] Path`, YAML `plugins:`), looks up the DATA
//! symbol `filter_<name>_plugin` and copies `sizeof(struct flb_filter_plugin)`
//! (88 bytes on x86-64) out of it. This module is that symbol,
//! [`filter_apt_netcon_plugin`], and its three callbacks. The same cdylib
//! serves the C ABI of [`crate::host::ffi`]: copy `libapt_netcon.so` to
//! `flb-filter_apt_netcon.so`. Older Fluent Bit versions have another struct
//! layout and must not load it (see docs/fluent-bit.md).
//!
//! # Properties
//!
//! The struct's `config_map` ([`CONFIG_MAP`], built at compile time from
//! [`KEYS`] plus `config_file`) lists every property: Fluent Bit itself
//! refuses an unknown (misspelt) or repeated property before `cb_init` and
//! before the pipeline starts, naming it and listing the valid ones.
//!
//! # Callbacks
//!
//! * `cb_init(f_ins, config, data)`: resolves the host's
//!   `flb_filter_get_property` and `flb_filter_set_context` with
//!   `dlsym(RTLD_DEFAULT, …)` (absent: not Fluent Bit, -1), reads one property
//!   per config key ([`crate::config::settings::KEYS`], the names of the JSON config)
//!   plus `config_file` (a JSON config file, read first; properties then
//!   apply on top of it), builds the [`Detector`] and stores it as the
//!   instance's context. A bad value, an unreadable file or a rule that does
//!   not compile is logged, naming the property, and gives -1: Fluent Bit
//!   then refuses to start, rather than run without detection.
//! * `cb_filter(…)`: runs the chunk through [`crate::engine::chunk::filter_chunk`]. No record
//!   annotated, or any error (malformed chunk, NULL argument, a panic, an
//!   allocation failure): `FLB_FILTER_NOTOUCH` (2), the chunk goes on as it
//!   came. Otherwise `FLB_FILTER_MODIFIED` (1) with a new chunk allocated
//!   with libc `malloc` (the host releases it with `free`), never empty:
//!   no record is ever dropped. Every outcome is counted ([`Counters`]);
//!   errors are logged, the first few and then at powers of two. After the
//!   chunk, the detector's warnings ([`Detector::take_warning`]: records
//!   that look unparsed, stage matches without `@timestamp`) are logged, and
//!   with `stats_interval` set, the counters line (`counters: …`, as at
//!   exit) once that much wall-clock time has passed since the last one —
//!   checked as chunks arrive, so an idle filter logs nothing.
//! * `cb_exit(context, config)`: logs the counters and frees the context.
//!   NULL does nothing.
//!
//! Log lines go through the host's `flb_log_print(int level, const char
//! *file, int line, const char *fmt, ...)` when the process has it (so they
//! land in Fluent Bit's log, prefixed `[filter:apt_netcon:<instance>]`), else
//! to standard error prefixed `[apt_netcon]`. The host's per-instance
//! `log_level` is not visible to a plugin built outside Fluent Bit's tree:
//! the plugin logs errors, warnings about its input, one line at start, the
//! counters every `stats_interval` (off by default) and at exit.
//!
//! # Threads, reload
//!
//! One context per filter instance. Fluent Bit may call one instance from
//! several threads (threaded inputs run their filters in their own thread),
//! so the detector sits behind a mutex: calls are serialised, uncontended in
//! the usual single-threaded engine. There is no global mutable state: the
//! exported struct is immutable, so `dlclose` and a new `dlopen` (hot reload)
//! start from scratch.
//!
//! # Panics
//!
//! Every callback body runs inside the crate's one panic guard
//! ([`crate::host::ffi`]'s). A panic in `cb_filter` poisons the instance: that
//! chunk and every later one pass through untouched (counted), since the
//! detector's state may be inconsistent.
#![deny(unsafe_op_in_unsafe_fn)]

use crate::config::settings::{Config, LoadError, KEYS};
use crate::engine::detector::Detector;
use crate::host::ffi::boundary::{c_string, guard, Panicked};
use crate::format::msgpack::ChunkError;
use crate::engine::standalone::filter_chunk_and_alerts;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::io::Write;
use std::ptr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `cb_filter`: the chunk was replaced by `*out_buf` / `*out_bytes`.
pub const FLB_FILTER_MODIFIED: c_int = 1;
/// `cb_filter`: keep the chunk as it came.
pub const FLB_FILTER_NOTOUCH: c_int = 2;
/// `event_type` of a filter of logs.
pub const FLB_FILTER_LOGS: c_int = 0;

/// Fluent Bit's log levels (`flb_log.h`).
const FLB_LOG_ERROR: c_int = 1;
const FLB_LOG_WARN: c_int = 2;
const FLB_LOG_INFO: c_int = 3;

/// The property naming a JSON config file (keys as in docs/configuration.md's
/// "Configuration"). Read before the other properties, which apply on top.
pub const CONFIG_FILE_PROPERTY: &str = "config_file";

/// Once a chunk would exceed this, the output buffer is released after use
/// instead of being kept for the next annotated chunk.
const KEEP_BUFFER_BYTES: usize = 8 << 20;

/// `int (*)(void *f_ins, void *config, void *data)`: `cb_pre_run`, `cb_init`,
/// `cb_notification`.
pub type InitCallback = unsafe extern "C" fn(*mut c_void, *mut c_void, *mut c_void) -> c_int;

/// `int (*)(const void *data, size_t bytes, const char *tag, int tag_len,
/// void **out_buf, size_t *out_bytes, void *f_ins, void *i_ins, void
/// *context, void *config)`.
pub type FilterCallback = unsafe extern "C" fn(
    *const c_void,
    usize,
    *const c_char,
    c_int,
    *mut *mut c_void,
    *mut usize,
    *mut c_void,
    *mut c_void,
    *mut c_void,
    *mut c_void,
) -> c_int;

/// `int (*)(void *context, void *config)`.
pub type ExitCallback = unsafe extern "C" fn(*mut c_void, *mut c_void) -> c_int;

/// `struct flb_filter_plugin` of Fluent Bit 3.2 … 5.1 (88 bytes on x86-64).
/// Fluent Bit copies it whole; the list head is the host's, and zero here.
#[repr(C)]
#[derive(Debug)]
pub struct FlbFilterPlugin {
    /// 0: logs.
    pub event_type: c_int,
    pub flags: c_int,
    /// The name `[FILTER] Name` selects: "apt_netcon".
    pub name: *const c_char,
    pub description: *const c_char,
    /// The properties the host accepts ([`CONFIG_MAP`]): Fluent Bit refuses
    /// any other before the pipeline starts.
    pub config_map: *const c_void,
    pub cb_pre_run: Option<InitCallback>,
    pub cb_init: Option<InitCallback>,
    pub cb_filter: Option<FilterCallback>,
    pub cb_exit: Option<ExitCallback>,
    pub cb_notification: Option<InitCallback>,
    /// `struct mk_list _head`: two pointers, zeroed.
    pub list: [*mut c_void; 2],
}

/// [`FlbFilterPlugin`] as a `static`: immutable, pointing only at static
/// strings and functions, so it may be shared between threads.
#[repr(transparent)]
#[derive(Debug)]
pub struct PluginExport(pub FlbFilterPlugin);

// SAFETY: the struct is never written after initialisation, and its
// pointers refer to immutable statics (strings, functions).
unsafe impl Sync for PluginExport {}

/// The symbol Fluent Bit looks up in `flb-filter_apt_netcon.so`.
#[allow(non_upper_case_globals)]
#[no_mangle]
pub static filter_apt_netcon_plugin: PluginExport = PluginExport(FlbFilterPlugin {
    event_type: FLB_FILTER_LOGS,
    flags: 0,
    name: c"apt_netcon".as_ptr(),
    description: c"Suspicious APT package manager network connection (Elastic EQL rule), streaming".as_ptr(),
    config_map: CONFIG_MAP.0.as_ptr() as *const c_void,
    cb_pre_run: None,
    cb_init: Some(cb_init),
    cb_filter: Some(cb_filter),
    cb_exit: Some(cb_exit),
    cb_notification: None,
    list: [ptr::null_mut(), ptr::null_mut()],
});

// ---------------------------------------------------------------------------
// The config map: the properties Fluent Bit lets through.

/// `FLB_CONFIG_MAP_STR`: every property is taken as text and parsed here.
const FLB_CONFIG_MAP_STR: c_int = 0;

/// `struct flb_config_map` (96 bytes on x86-64, the same layout from Fluent
/// Bit 1.5 to 5.1). The plugin's map is an array of these ended by an entry
/// whose `name` is NULL.
///
/// What Fluent Bit does with it (`flb_filter_init` →
/// `flb_filter_plugin_property_check`, before `cb_init`): it copies each
/// entry (`flb_config_map_create`), then checks every property of the
/// instance (the core ones — `match`, `alias`, `log_level`, … — are not
/// among them; `active` and `condition` are let through) against the
/// names, case-insensitively (`flb_config_map_properties_check`). An
/// unknown name, or one given twice, is logged —
/// `[config] apt_netcon: unknown configuration property 'x'. The following
/// properties are allowed: …` — and the filter, and so Fluent Bit, does not
/// start. `set_property` 0: the host writes no value anywhere (the plugin
/// reads the properties with `flb_filter_get_property`); `def_value` NULL
/// (the defaults are in the descriptions `fluent-bit -F apt_netcon -h`
/// shows), so the host has nothing to translate or free.
#[repr(C)]
#[derive(Debug)]
pub struct FlbConfigMap {
    pub type_: c_int,
    pub name: *const c_char,
    pub def_value: *const c_char,
    pub flags: c_int,
    pub set_property: c_int,
    pub offset: usize,
    pub desc: *const c_char,
    /// `struct flb_config_map_val value` (32 bytes) and `struct mk_list
    /// _head` (16): the host's, zero here.
    pub host: [usize; 6],
}

/// The description of [`CONFIG_FILE_PROPERTY`].
const CONFIG_FILE_DESC: &str =
    "Path of a JSON config file (keys as the other properties), read first; the other properties apply on top of it.";

/// Properties: `config_file`, then every key of [`KEYS`].
const N_PROPERTIES: usize = KEYS.len() + 1;

/// Property `i`: its name, its description and its documented default
/// (`""` for none).
const fn property(i: usize) -> (&'static str, &'static str, &'static str) {
    if i == 0 {
        return (CONFIG_FILE_PROPERTY, CONFIG_FILE_DESC, "");
    }
    let k = &KEYS[i - 1];
    (k.key, k.description, k.default)
}

const DEFAULT_PREFIX: &str = " Default: ";

/// The bytes of property `i`'s two strings, each NUL-terminated: the name,
/// then the description followed by ` Default: <default>.` when it has one.
const fn property_text_len(i: usize) -> usize {
    let (name, desc, default) = property(i);
    let default_len = if default.is_empty() { 0 } else { DEFAULT_PREFIX.len() + default.len() + 1 };
    name.len() + 1 + desc.len() + default_len + 1
}

const fn strings_len() -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < N_PROPERTIES {
        n += property_text_len(i);
        i += 1;
    }
    n
}

const STRINGS_LEN: usize = strings_len();

const fn copy_into(out: &mut [u8; STRINGS_LEN], at: usize, s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        out[at + i] = b[i];
        i += 1;
    }
    at + b.len()
}

/// Every property's name and description, NUL-terminated, built at compile
/// time from [`KEYS`] (a NUL inside one would fail the build).
const fn property_strings() -> [u8; STRINGS_LEN] {
    let mut out = [0u8; STRINGS_LEN];
    let mut at = 0;
    let mut i = 0;
    while i < N_PROPERTIES {
        let (name, desc, default) = property(i);
        let start = at;
        at = copy_into(&mut out, at, name) + 1;
        at = copy_into(&mut out, at, desc);
        if !default.is_empty() {
            at = copy_into(&mut out, at, DEFAULT_PREFIX);
            at = copy_into(&mut out, at, default);
            at = copy_into(&mut out, at, ".");
        }
        at += 1;
        assert!(at - start == property_text_len(i));
        let mut j = start;
        let mut nuls = 0;
        while j < at {
            if out[j] == 0 {
                nuls += 1;
            }
            j += 1;
        }
        assert!(nuls == 2, "a property name or description holds a NUL");
        i += 1;
    }
    assert!(at == STRINGS_LEN);
    out
}

static PROPERTY_STRINGS: [u8; STRINGS_LEN] = property_strings();

const ZERO_ENTRY: FlbConfigMap = FlbConfigMap {
    type_: 0,
    name: ptr::null(),
    def_value: ptr::null(),
    flags: 0,
    set_property: 0,
    offset: 0,
    desc: ptr::null(),
    host: [0; 6],
};

const fn config_map(strings: &'static [u8; STRINGS_LEN]) -> [FlbConfigMap; N_PROPERTIES + 1] {
    let mut map = [ZERO_ENTRY; N_PROPERTIES + 1];
    let base = strings.as_ptr();
    let mut at = 0;
    let mut i = 0;
    while i < N_PROPERTIES {
        let (name, _, _) = property(i);
        map[i].type_ = FLB_CONFIG_MAP_STR;
        // SAFETY (const): both offsets are inside `strings` (see property_strings).
        map[i].name = unsafe { base.add(at) } as *const c_char;
        map[i].desc = unsafe { base.add(at + name.len() + 1) } as *const c_char;
        at += property_text_len(i);
        i += 1;
    }
    map
}

/// The config map [`filter_apt_netcon_plugin`] points to: `config_file` and
/// every key of [`KEYS`], then the terminating entry.
#[repr(transparent)]
#[derive(Debug)]
pub struct ConfigMapExport(pub [FlbConfigMap; N_PROPERTIES + 1]);

// SAFETY: never written; its pointers refer to the immutable PROPERTY_STRINGS.
unsafe impl Sync for ConfigMapExport {}

/// The plugin's `config_map`.
pub static CONFIG_MAP: ConfigMapExport = ConfigMapExport(config_map(&PROPERTY_STRINGS));

// ---------------------------------------------------------------------------
// The host's functions.

type GetPropertyFn = unsafe extern "C" fn(key: *const c_char, f_ins: *mut c_void) -> *const c_char;
type SetContextFn = unsafe extern "C" fn(f_ins: *mut c_void, context: *mut c_void);
type FilterNameFn = unsafe extern "C" fn(f_ins: *mut c_void) -> *const c_char;
type LogPrintFn = unsafe extern "C" fn(level: c_int, file: *const c_char, line: c_int, fmt: *const c_char, ...);

/// The host functions a filter instance uses.
#[derive(Clone, Copy)]
struct Host {
    get_property: GetPropertyFn,
    set_context: SetContextFn,
    /// `flb_filter_name`: the instance's alias or name (optional).
    filter_name: Option<FilterNameFn>,
}

/// The address of `name` (NUL-terminated) in the process, or NULL.
fn lookup(name: &[u8]) -> *mut c_void {
    debug_assert_eq!(name.last(), Some(&0));
    // SAFETY: `name` is NUL-terminated; RTLD_DEFAULT searches the global
    // scope (the executable first).
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr() as *const c_char) }
}

/// Look up `flb_log_print` in the process.
fn resolve_log_print() -> Option<LogPrintFn> {
    let p = lookup(b"flb_log_print\0");
    // SAFETY: Fluent Bit's `void flb_log_print(int, const char *, int, const
    // char *, ...)`, unchanged from 1.x to 5.1.
    (!p.is_null()).then(|| unsafe { std::mem::transmute::<*mut c_void, LogPrintFn>(p) })
}

/// Look up the property and context functions in the process; `Err` names
/// the one missing.
fn resolve_host() -> Result<Host, &'static str> {
    let get = lookup(b"flb_filter_get_property\0");
    if get.is_null() {
        return Err("flb_filter_get_property");
    }
    let set = lookup(b"flb_filter_set_context\0");
    if set.is_null() {
        return Err("flb_filter_set_context");
    }
    let name = lookup(b"flb_filter_name\0");
    // SAFETY: the signatures of Fluent Bit 3.2 … 5.1 (flb_filter.h).
    unsafe {
        Ok(Host {
            get_property: std::mem::transmute::<*mut c_void, GetPropertyFn>(get),
            set_context: std::mem::transmute::<*mut c_void, SetContextFn>(set),
            filter_name: (!name.is_null()).then(|| std::mem::transmute::<*mut c_void, FilterNameFn>(name)),
        })
    }
}

// ---------------------------------------------------------------------------
// Logging.

/// Where log lines go: the host's `flb_log_print`, or standard error.
#[derive(Clone)]
struct Log {
    print: Option<LogPrintFn>,
    /// `[filter:apt_netcon:<instance>]`.
    prefix: String,
}

impl Log {
    fn new(print: Option<LogPrintFn>, instance: &str) -> Log {
        Log { print, prefix: format!("[filter:apt_netcon:{instance}]") }
    }

    fn error(&self, msg: &str) {
        self.write(FLB_LOG_ERROR, msg)
    }

    fn warn(&self, msg: &str) {
        self.write(FLB_LOG_WARN, msg)
    }

    fn info(&self, msg: &str) {
        self.write(FLB_LOG_INFO, msg)
    }

    fn write(&self, level: c_int, msg: &str) {
        let line = format!("{} {}", self.prefix, msg);
        match self.print {
            Some(print) => {
                let text = c_string(&line);
                // SAFETY: "%s" with one NUL-terminated string argument.
                unsafe { print(level, ptr::null(), 0, c"%s".as_ptr(), text.as_ptr()) }
            }
            None => {
                let name = match level {
                    FLB_LOG_ERROR => "error",
                    FLB_LOG_WARN => "warn",
                    _ => "info",
                };
                // Never panics (unlike eprintln!) when stderr is closed.
                let _ = writeln!(std::io::stderr(), "[apt_netcon] [{name}] {line}");
            }
        }
    }
}

/// Log the n-th occurrence of an error? The first three, then at powers of
/// two: a broken input cannot flood the log, and the count stays visible.
fn worth_logging(n: u64) -> bool {
    n <= 3 || n.is_power_of_two()
}

// ---------------------------------------------------------------------------
// Configuration from properties.

/// Build the config from properties: `get(key)` returns the property's
/// value, if set. `config_file` (a JSON config) is read first; then every
/// key of [`KEYS`] that is set applies on top of it (array keys add to the
/// file's lists). Returns the config and the names of the properties set.
/// Errors name the property.
fn config_from_properties(
    mut get: impl FnMut(&str) -> Result<Option<String>, String>,
) -> Result<(Config, Vec<&'static str>), String> {
    let mut set = Vec::new();
    let mut cfg = match get(CONFIG_FILE_PROPERTY)? {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("property `{CONFIG_FILE_PROPERTY}`: cannot read {path}: {e}"))?;
            set.push(CONFIG_FILE_PROPERTY);
            Config::from_json(&text).map_err(|e| format!("property `{CONFIG_FILE_PROPERTY}` ({path}): {e}"))?
        }
        None => Config::default(),
    };
    for spec in KEYS {
        if let Some(value) = get(spec.key)? {
            cfg.set_str(spec.key, &value)
                .map_err(|e| format!("property `{}`: {}", e.key.as_deref().unwrap_or(spec.key), e.message))?;
            set.push(spec.key);
        }
    }
    Ok((cfg, set))
}

/// The detector for `cfg`; errors name the property at fault.
fn detector_for(cfg: &Config) -> Result<Detector, String> {
    Detector::new(cfg).map_err(|e| match e {
        LoadError::Config(c) => match c.key {
            Some(k) => format!("property `{k}`: {}", c.message),
            None => format!("config: {}", c.message),
        },
        LoadError::Rule(r) => match &cfg.rule_file {
            Some(path) => format!("property `rule_file` ({path}): the rule does not compile: {r}"),
            None => format!("the rule does not compile: {r}"),
        },
    })
}

// ---------------------------------------------------------------------------
// The instance context.

/// What one filter instance did, logged at exit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// `cb_filter` calls.
    pub chunks: u64,
    /// Chunks returned as `FLB_FILTER_MODIFIED`.
    pub modified: u64,
    /// Records annotated (in the modified chunks).
    pub records_annotated: u64,
    /// Chunks that are not a valid sequence of records, passed on untouched.
    pub malformed: u64,
    /// Records that could not be evaluated, passed on untouched (the reason
    /// is counted in the detector's stats).
    pub record_errors: u64,
    /// Annotated chunks passed on untouched because `malloc` failed.
    pub alloc_failed: u64,
    /// Calls with a NULL argument, and panics (bugs), passed on untouched.
    pub internal_errors: u64,
    /// Chunks passed on untouched because an earlier panic poisoned the instance.
    pub skipped_poisoned: u64,
    /// Standalone alert records appended to chunks (`max_lateness` > 0).
    pub standalone_alerts: u64,
}

impl Counters {
    fn fields(&self) -> [(&'static str, u64); 9] {
        [
            ("chunks", self.chunks),
            ("modified", self.modified),
            ("records_annotated", self.records_annotated),
            ("malformed", self.malformed),
            ("record_errors", self.record_errors),
            ("alloc_failed", self.alloc_failed),
            ("internal_errors", self.internal_errors),
            ("skipped_poisoned", self.skipped_poisoned),
            ("standalone_alerts", self.standalone_alerts),
        ]
    }
}

/// The mutable part of an instance.
struct State {
    det: Detector,
    /// `stats_interval`, when set: the counters line is logged at the
    /// first chunk at or after `next_stats`.
    stats_every: Option<Duration>,
    next_stats: Instant,
    /// The last annotated chunk (reused between calls).
    out: Vec<u8>,
    counters: Counters,
    /// A panic happened: the detector may be inconsistent.
    poisoned: bool,
    #[cfg(test)]
    force_panic: bool,
}

/// A filter instance's context (what `flb_filter_set_context` stores).
struct Context {
    log: Log,
    state: Mutex<State>,
}

impl Context {
    fn new(det: Detector, log: Log, stats_interval_ms: u64) -> Context {
        let stats_every = (stats_interval_ms > 0).then(|| Duration::from_millis(stats_interval_ms));
        Context {
            log,
            state: Mutex::new(State {
                det,
                stats_every,
                next_stats: Instant::now() + stats_every.unwrap_or_default(),
                out: Vec::new(),
                counters: Counters::default(),
                poisoned: false,
                #[cfg(test)]
                force_panic: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The guard inside run_chunk keeps panics from unwinding through the
        // lock; should one ever poison it, the state is still usable (and
        // `poisoned` says whether the detector is).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run one chunk; `Some` holds a new malloc()ed chunk for the host.
    /// Then log the detector's warnings, and the counters when
    /// `stats_interval` has passed.
    fn run_chunk(&self, chunk: &[u8]) -> Option<(*mut u8, usize)> {
        let mut guard_st = self.lock();
        let st = &mut *guard_st;
        let out = self.run_chunk_locked(st, chunk);
        if !st.poisoned {
            while let Some(w) = st.det.take_warning() {
                self.log.warn(&w);
            }
        }
        if let Some(every) = st.stats_every {
            let now = Instant::now();
            if now >= st.next_stats {
                st.next_stats = now + every;
                self.log.info(&Self::counters_line(st, "counters:"));
                for line in Self::rule_lines(st, "counters:") {
                    self.log.info(&line);
                }
            }
        }
        out
    }

    fn run_chunk_locked(&self, st: &mut State, chunk: &[u8]) -> Option<(*mut u8, usize)> {
        st.counters.chunks += 1;
        if st.poisoned {
            st.counters.skipped_poisoned += 1;
            return None;
        }
        let State { det, out, .. } = st;
        #[cfg(test)]
        let force = st.force_panic;
        let result = guard(|| {
            #[cfg(test)]
            if force {
                panic!("forced panic (test)");
            }
            filter_chunk_and_alerts(det, chunk, out)
        });
        match result {
            Err(Panicked(msg)) => {
                st.poisoned = true;
                st.counters.internal_errors += 1;
                self.log.error(&format!(
                    "internal error (panic): {msg}; this and every later chunk passes through unchanged"
                ));
                None
            }
            Ok(Err(ChunkError::Malformed)) => {
                st.counters.malformed += 1;
                let n = st.counters.malformed;
                if worth_logging(n) {
                    self.log.warn(&format!(
                        "chunk of {} bytes is not a valid sequence of Fluent Bit records; passed through unchanged ({n} so far)",
                        chunk.len()
                    ));
                }
                None
            }
            Ok(Ok((outcome, standalone))) => {
                st.counters.record_errors += outcome.errors;
                st.counters.standalone_alerts += standalone;
                if (outcome.annotated == 0 && standalone == 0) || st.out.is_empty() {
                    return None;
                }
                let len = st.out.len();
                // SAFETY: a plain allocation of len > 0 bytes.
                let p = unsafe { libc::malloc(len) } as *mut u8;
                let result = if p.is_null() {
                    st.counters.alloc_failed += 1;
                    if worth_logging(st.counters.alloc_failed) {
                        self.log.error(&format!(
                            "cannot allocate {len} bytes for an annotated chunk: {} alert(s) lost, records passed through unchanged",
                            outcome.annotated + standalone
                        ));
                    }
                    None
                } else {
                    // SAFETY: `p` has `len` writable bytes and does not overlap `out`.
                    unsafe { ptr::copy_nonoverlapping(st.out.as_ptr(), p, len) };
                    st.counters.modified += 1;
                    st.counters.records_annotated += outcome.annotated;
                    Some((p, len))
                };
                if st.out.capacity() > KEEP_BUFFER_BYTES {
                    st.out = Vec::new();
                }
                result
            }
        }
    }

    /// The exit lines: the plugin's counters, then the detector's; with a
    /// rule pack, then one line per rule that alerted or did not load.
    fn summary(&self) -> Vec<String> {
        let st = self.lock();
        let mut lines = vec![Self::counters_line(&st, "exit:")];
        lines.extend(Self::rule_lines(&st, "exit:"));
        lines
    }

    /// With a rule pack: `<head> rule "<name>" (<rule_id>): alerts=… …` for
    /// every rule that alerted, `<head> skipped rule <name>: <reason>` for
    /// every rule that did not load ([`crate::host::ffi::rules_report_lines`]).
    /// Nothing for a detector of one rule (the counters line says it all).
    fn rule_lines(st: &State, head: &str) -> Vec<String> {
        if st.poisoned || st.det.pack().is_none() {
            return Vec::new();
        }
        crate::host::ffi::rules_report_lines(&crate::host::ffi::rules_report(&st.det))
            .into_iter()
            .map(|l| format!("{head} {l}"))
            .collect()
    }

    /// `<head> <plugin's counters>; detector: <the detector's>`.
    fn counters_line(st: &State, head: &str) -> String {
        let mut s = String::from(head);
        for (k, v) in st.counters.fields() {
            s.push_str(&format!(" {k}={v}"));
        }
        s.push_str("; detector:");
        let stats = st.det.stats();
        for (k, v) in stats.fields() {
            s.push_str(&format!(" {k}={v}"));
        }
        s.push_str(&format!(" unparsed={}", stats.unparsed));
        for (name, n) in st.det.exception_counts() {
            s.push_str(&format!(" excluded[{name}]={n}"));
        }
        if st.poisoned {
            s.push_str(" (poisoned by a panic)");
        }
        s
    }
}

// ---------------------------------------------------------------------------
// Callbacks.

/// The instance's name for log lines (`flb_filter_name`), or "apt_netcon".
fn instance_name(host: Option<&Host>, f_ins: *mut c_void) -> String {
    if let Some(name_fn) = host.and_then(|h| h.filter_name) {
        if !f_ins.is_null() {
            // SAFETY: a live instance; the host returns its alias or name (or NULL).
            let p = unsafe { name_fn(f_ins) };
            if !p.is_null() {
                // SAFETY: a NUL-terminated string owned by the instance.
                return unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
            }
        }
    }
    "apt_netcon".to_string()
}

/// `cb_init` with the host's functions given: read the properties, build
/// the context and hand it to the host. `Err` holds the message to log.
///
/// # Safety
/// `f_ins` is a live instance the host functions accept.
unsafe fn init_with(host: Host, f_ins: *mut c_void, log: &Log) -> Result<(), String> {
    let get = |key: &str| -> Result<Option<String>, String> {
        let ckey = c_string(key);
        // SAFETY: the caller's contract; `ckey` is NUL-terminated.
        let v = unsafe { (host.get_property)(ckey.as_ptr(), f_ins) };
        if v.is_null() {
            return Ok(None);
        }
        // SAFETY: the host returns a NUL-terminated string it owns, valid
        // for this call at least (copied at once).
        let v = unsafe { CStr::from_ptr(v) };
        v.to_str().map(|s| Some(s.to_string())).map_err(|_| format!("property `{key}`: not valid UTF-8"))
    };
    let (cfg, set) = config_from_properties(get)?;
    let det = detector_for(&cfg)?;
    let meta = det.rule().meta();
    let what = match det.pack() {
        Some(p) if p.skipped().is_empty() => format!("a pack of {} rules", p.rules().len()),
        Some(p) => format!("a pack of {} rules ({} skipped: do not load)", p.rules().len(), p.skipped().len()),
        None => format!("rule \"{}\" ({})", meta.name, meta.rule_id),
    };
    let started = format!(
        "{what}, {}",
        if set.is_empty() { "all defaults".to_string() } else { format!("properties: {}", set.join(", ")) }
    );
    let skipped: Vec<String> = match det.pack() {
        Some(p) if !p.skipped().is_empty() => crate::host::ffi::rules_report_lines(&serde_json::json!({
            "skipped": p.skipped().iter().map(|(n, why)| serde_json::json!({"name": n, "reason": why})).collect::<Vec<_>>()
        })),
        _ => Vec::new(),
    };
    let ctx = Box::into_raw(Box::new(Context::new(det, log.clone(), cfg.stats_interval_ms)));
    // SAFETY: the caller's contract; the host keeps the pointer and passes
    // it to cb_filter and cb_exit, which releases it.
    unsafe { (host.set_context)(f_ins, ctx as *mut c_void) };
    log.info(&started);
    for line in skipped {
        log.warn(&line);
    }
    Ok(())
}

unsafe extern "C" fn cb_init(f_ins: *mut c_void, _config: *mut c_void, _data: *mut c_void) -> c_int {
    let result = guard(|| {
        let print = resolve_log_print();
        let host = match resolve_host() {
            Ok(h) => h,
            Err(missing) => {
                Log::new(print, "apt_netcon").error(&format!(
                    "{missing} not found in the process: this plugin runs inside Fluent Bit 3.2 … 5.1 only"
                ));
                return -1;
            }
        };
        let log = Log::new(print, &instance_name(Some(&host), f_ins));
        if f_ins.is_null() {
            log.error("cb_init called without a filter instance");
            return -1;
        }
        // SAFETY: the host passes its live instance.
        match unsafe { init_with(host, f_ins, &log) } {
            Ok(()) => 0,
            Err(msg) => {
                // A message of several lines (every rule of a pack that does
                // not load) is logged line by line.
                let lines: Vec<&str> = msg.lines().map(str::trim_end).filter(|l| !l.trim().is_empty()).collect();
                for (i, line) in lines.iter().enumerate() {
                    if i + 1 == lines.len() {
                        log.error(&format!("{line}; the filter does not start"));
                    } else {
                        log.error(line);
                    }
                }
                if lines.is_empty() {
                    log.error("the filter does not start");
                }
                -1
            }
        }
    });
    result.unwrap_or_else(|Panicked(msg)| {
        let _ = guard(|| Log::new(None, "apt_netcon").error(&format!("internal error (panic) in cb_init: {msg}")));
        -1
    })
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn cb_filter(
    data: *const c_void,
    bytes: usize,
    _tag: *const c_char,
    _tag_len: c_int,
    out_buf: *mut *mut c_void,
    out_bytes: *mut usize,
    _f_ins: *mut c_void,
    _i_ins: *mut c_void,
    context: *mut c_void,
    _config: *mut c_void,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or the pointer cb_init gave the host, alive until cb_exit.
        let Some(ctx) = (unsafe { (context as *const Context).as_ref() }) else {
            Log::new(resolve_log_print(), "apt_netcon")
                .error("cb_filter called without a context; chunk passed through unchanged");
            return FLB_FILTER_NOTOUCH;
        };
        if out_buf.is_null() || out_bytes.is_null() || (data.is_null() && bytes > 0) {
            let n = {
                let mut st = ctx.lock();
                st.counters.chunks += 1;
                st.counters.internal_errors += 1;
                st.counters.internal_errors
            };
            if worth_logging(n) {
                ctx.log.error("cb_filter called with a NULL buffer; chunk passed through unchanged");
            }
            return FLB_FILTER_NOTOUCH;
        }
        let chunk: &[u8] = if bytes == 0 {
            &[]
        } else {
            // SAFETY: the host's chunk: `bytes` readable bytes for this call.
            unsafe { std::slice::from_raw_parts(data as *const u8, bytes) }
        };
        match ctx.run_chunk(chunk) {
            Some((p, len)) => {
                // SAFETY: both non-NULL (checked above) and writable.
                unsafe {
                    *out_buf = p as *mut c_void;
                    *out_bytes = len;
                }
                FLB_FILTER_MODIFIED
            }
            None => FLB_FILTER_NOTOUCH,
        }
    })
    .unwrap_or(FLB_FILTER_NOTOUCH)
}

unsafe extern "C" fn cb_exit(context: *mut c_void, _config: *mut c_void) -> c_int {
    let _ = guard(|| {
        if context.is_null() {
            return;
        }
        // SAFETY: the pointer cb_init gave the host, released once, here.
        let ctx = unsafe { Box::from_raw(context as *mut Context) };
        for line in ctx.summary() {
            ctx.log.info(&line);
        }
    });
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::collections::HashMap;
    use std::ffi::CString;
    use std::mem::size_of;

    #[test]
    fn plugin_struct_layout() {
        assert_eq!(size_of::<FlbFilterPlugin>(), 88);
        assert_eq!(size_of::<PluginExport>(), 88);
        let p = &filter_apt_netcon_plugin.0;
        let base = p as *const FlbFilterPlugin as usize;
        let off = |f: usize| f - base;
        assert_eq!(off(ptr::addr_of!(p.event_type) as usize), 0);
        assert_eq!(off(ptr::addr_of!(p.flags) as usize), 4);
        assert_eq!(off(ptr::addr_of!(p.name) as usize), 8);
        assert_eq!(off(ptr::addr_of!(p.description) as usize), 16);
        assert_eq!(off(ptr::addr_of!(p.config_map) as usize), 24);
        assert_eq!(off(ptr::addr_of!(p.cb_pre_run) as usize), 32);
        assert_eq!(off(ptr::addr_of!(p.cb_init) as usize), 40);
        assert_eq!(off(ptr::addr_of!(p.cb_filter) as usize), 48);
        assert_eq!(off(ptr::addr_of!(p.cb_exit) as usize), 56);
        assert_eq!(off(ptr::addr_of!(p.cb_notification) as usize), 64);
        assert_eq!(off(ptr::addr_of!(p.list) as usize), 72);
        // Option<fn> is one pointer, NULL for None.
        assert_eq!(size_of::<Option<FilterCallback>>(), 8);
    }

    #[test]
    fn plugin_struct_values() {
        let p = &filter_apt_netcon_plugin.0;
        assert_eq!(p.event_type, 0);
        assert_eq!(p.flags, 0);
        assert_eq!(unsafe { CStr::from_ptr(p.name) }.to_str().unwrap(), "apt_netcon");
        assert!(!unsafe { CStr::from_ptr(p.description) }.to_bytes().is_empty());
        assert_eq!(p.config_map, CONFIG_MAP.0.as_ptr() as *const c_void);
        assert!(p.cb_pre_run.is_none() && p.cb_notification.is_none());
        assert!(p.cb_init.is_some() && p.cb_filter.is_some() && p.cb_exit.is_some());
        assert!(p.list.iter().all(|q| q.is_null()));
    }

    #[test]
    fn config_map_lists_config_file_and_every_key() {
        assert_eq!(size_of::<FlbConfigMap>(), 96);
        let map = &CONFIG_MAP.0;
        let e = &map[0];
        let base = e as *const FlbConfigMap as usize;
        assert_eq!(ptr::addr_of!(e.name) as usize - base, 8);
        assert_eq!(ptr::addr_of!(e.def_value) as usize - base, 16);
        assert_eq!(ptr::addr_of!(e.flags) as usize - base, 24);
        assert_eq!(ptr::addr_of!(e.set_property) as usize - base, 28);
        assert_eq!(ptr::addr_of!(e.offset) as usize - base, 32);
        assert_eq!(ptr::addr_of!(e.desc) as usize - base, 40);
        let cstr = |p: *const c_char| unsafe { CStr::from_ptr(p) }.to_str().unwrap();
        let names: Vec<&str> = map.iter().take_while(|e| !e.name.is_null()).map(|e| cstr(e.name)).collect();
        let want: Vec<&str> = std::iter::once("config_file").chain(KEYS.iter().map(|k| k.key)).collect();
        assert_eq!(names, want);
        assert_eq!(map.len(), want.len() + 1);
        let last = map.last().unwrap();
        assert!(last.name.is_null() && last.desc.is_null());
        for (e, k) in map[1..].iter().zip(KEYS) {
            assert_eq!((e.type_, e.flags, e.set_property, e.offset), (FLB_CONFIG_MAP_STR, 0, 0, 0));
            assert!(e.def_value.is_null(), "the host has nothing to translate or free");
            assert!(e.host.iter().all(|&x| x == 0));
            let desc = cstr(e.desc);
            assert!(desc.starts_with(k.description), "{desc}");
            assert!(desc.ends_with(&format!(" Default: {}.", k.default)), "{desc}");
        }
        assert_eq!(cstr(map[0].desc), CONFIG_FILE_DESC);
    }

    // --- MessagePack records, written with rmp.

    fn enc(v: &Value, out: &mut Vec<u8>) {
        use rmp::encode::*;
        match v {
            Value::Null => write_nil(out).unwrap(),
            Value::Bool(b) => write_bool(out, *b).unwrap(),
            Value::Number(n) => match n.as_u64() {
                Some(u) => {
                    write_uint(out, u).unwrap();
                }
                None => {
                    write_f64(out, n.as_f64().unwrap()).unwrap();
                }
            },
            Value::String(s) => write_str(out, s).unwrap(),
            Value::Array(a) => {
                write_array_len(out, a.len() as u32).unwrap();
                a.iter().for_each(|x| enc(x, out));
            }
            Value::Object(m) => {
                write_map_len(out, m.len() as u32).unwrap();
                for (k, x) in m {
                    write_str(out, k).unwrap();
                    enc(x, out);
                }
            }
        }
    }

    /// A v2 record `[[EventTime(sec), {}], body]`.
    fn record(sec: u32, body: &Value) -> Vec<u8> {
        let mut out = vec![0x92, 0x92, 0xd7, 0x00];
        out.extend_from_slice(&sec.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.push(0x80);
        enc(body, &mut out);
        out
    }

    fn stage1() -> Value {
        json!({"@timestamp":"2026-03-14T09:30:00.900Z","event":{"category":["process"],"type":["start"],"action":"exec"},
               "host":{"id":"h1","os":{"type":"linux"}},
               "process":{"name":"sh","args":["sh","-c","curl x | sh"],"entity_id":"P1","parent":{"name":"apt","entity_id":"A1"}}})
    }

    fn stage2() -> Value {
        json!({"@timestamp":"2026-03-14T09:30:02.100Z","event":{"category":["network"],"type":["start"],"action":"connection_attempted"},
               "host":{"id":"h1","os":{"type":"linux"}},
               "process":{"name":"curl","entity_id":"C1","parent":{"entity_id":"P1"}},
               "destination":{"ip":"45.33.32.156","port":443}})
    }

    fn context(props: &[(&str, &str)]) -> Context {
        let map: HashMap<String, String> = props.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (cfg, _) = config_from_properties(|k| Ok(map.get(k).cloned())).unwrap();
        Context::new(detector_for(&cfg).unwrap(), Log::new(None, "test"), cfg.stats_interval_ms)
    }

    fn take(p: (*mut u8, usize)) -> Vec<u8> {
        let v = unsafe { std::slice::from_raw_parts(p.0, p.1) }.to_vec();
        unsafe { libc::free(p.0 as *mut c_void) };
        v
    }

    #[test]
    fn sequence_across_chunks() {
        let ctx = context(&[]);
        let noise = record(1, &json!({"message":"hello"}));
        let mut c1 = noise.clone();
        c1.extend(record(1, &stage1()));
        assert!(ctx.run_chunk(&c1).is_none(), "no alert yet");
        let s2 = record(2, &stage2());
        let mut c2 = noise.clone();
        c2.extend(&s2);
        c2.extend(&noise);
        let out = take(ctx.run_chunk(&c2).expect("annotated"));
        assert!(out.starts_with(&noise), "records before: byte for byte");
        assert!(out.ends_with(&noise), "records after: byte for byte");
        assert!(out.len() > c2.len());
        let mid = &out[noise.len()..out.len() - noise.len()];
        assert_eq!(&mid[..13], &s2[..13], "outer array, time and metadata kept");
        let id = b"eaef8a35-12e0-4ac0-bc14-81c72b6bd27c";
        assert!(mid.windows(id.len()).any(|w| w == id));
        let c = ctx.lock().counters;
        assert_eq!((c.chunks, c.modified, c.records_annotated, c.malformed), (2, 1, 1, 0));
    }

    #[test]
    fn malformed_and_empty_chunks_are_not_touched() {
        let ctx = context(&[]);
        assert!(ctx.run_chunk(&[0x92, 0x01]).is_none());
        assert!(ctx.run_chunk(&[]).is_none());
        let c = ctx.lock().counters;
        assert_eq!((c.chunks, c.malformed, c.modified), (2, 1, 0));
    }

    #[test]
    fn a_panic_poisons_the_instance() {
        let ctx = context(&[]);
        ctx.lock().force_panic = true;
        assert!(ctx.run_chunk(&record(1, &stage1())).is_none());
        ctx.lock().force_panic = false;
        assert!(ctx.run_chunk(&record(1, &stage1())).is_none());
        let c = ctx.lock().counters;
        assert_eq!((c.chunks, c.internal_errors, c.skipped_poisoned), (2, 1, 1));
        assert!(ctx.summary()[0].contains("poisoned"));
    }

    /// A pack: the stats and exit lines gain one line per rule that alerted
    /// and per rule that did not load; a rule without alerts has none.
    #[test]
    fn a_pack_logs_a_line_per_rule_that_alerted_or_was_skipped() {
        let dir = std::env::temp_dir().join(format!("aptnc-fb-pack-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a_port.eql"), "network where destination.port == 4444").unwrap();
        std::fs::write(dir.join("b_quiet.eql"), "process where process.name == \"never\"").unwrap();
        std::fs::write(dir.join("c_broken.eql"), "network where destination.port ==\n").unwrap();
        let d = dir.to_str().unwrap();
        let ctx = context(&[("rules_dir", d), ("skip_broken_rules", "true")]);
        let rec = json!({"@timestamp": "2026-03-14T09:30:02Z", "event": {"category": ["network"]},
                         "host": {"id": "h1"}, "destination": {"port": 4444}});
        let out = take(ctx.run_chunk(&record(1, &rec)).expect("the alert is appended"));
        assert!(out.len() > record(1, &rec).len());
        let lines = Context::rule_lines(&ctx.lock(), "exit:");
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("exit: rule \"a_port\" (a_port): alerts=1 records=1"), "{lines:?}");
        assert!(lines[1].starts_with(&format!("exit: skipped rule {d}/c_broken.eql: syntax error")), "{lines:?}");
        assert!(!lines[1].contains('\n'));
        let summary = ctx.summary();
        assert_eq!(summary.len(), 3);
        assert!(summary[0].contains(" standalone_alerts=1") && summary[0].contains("; detector: records=1 "), "{summary:?}");
        // One rule: no per-rule lines, the exit line as ever.
        let one = context(&[]);
        assert!(Context::rule_lines(&one.lock(), "exit:").is_empty());
        assert_eq!(one.summary().len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn properties_build_the_config() {
        let props: HashMap<&str, &str> =
            [("rule", "apt_netcon_v11"), ("kibana_fields", "off"), ("trusted_destination_cidrs", "45.33.32.0/24")]
                .into_iter()
                .collect();
        let (cfg, set) = config_from_properties(|k| Ok(props.get(k).map(|v| v.to_string()))).unwrap();
        assert_eq!(cfg.rule, "apt_netcon_v11");
        assert!(!cfg.kibana_fields);
        assert_eq!(cfg.trusted_destination_cidrs, ["45.33.32.0/24"]);
        let mut sorted = set.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, ["kibana_fields", "rule", "trusted_destination_cidrs"]);
    }

    #[test]
    fn bad_properties_name_the_key() {
        let e = config_from_properties(|k| Ok((k == "max_pending_sequences").then(|| "lots".to_string()))).unwrap_err();
        assert!(e.starts_with("property `max_pending_sequences`:"), "{e}");
        let e = config_from_properties(|k| Ok((k == "maxspan").then(|| "5 seconds".to_string()))).unwrap_err();
        assert!(e.starts_with("property `maxspan`:"), "{e}");
        let (cfg, _) = config_from_properties(|k| Ok((k == "rule").then(|| "nope".to_string()))).unwrap();
        let e = detector_for(&cfg).err().unwrap();
        assert!(e.starts_with("property `rule`:"), "{e}");
        let e = config_from_properties(|k| Ok((k == "config_file").then(|| "/nonexistent/x.json".to_string())))
            .unwrap_err();
        assert!(e.starts_with("property `config_file`: cannot read /nonexistent/x.json"), "{e}");
    }

    #[test]
    fn config_file_then_properties() {
        let path = std::env::temp_dir().join(format!("apt_netcon_fb_{}.json", std::process::id()));
        std::fs::write(&path, r#"{"rule":"apt_netcon_v11","max_pending_sequences":7,"trusted_process_names":["a"]}"#)
            .unwrap();
        let p = path.to_str().unwrap().to_string();
        let (cfg, set) = config_from_properties(|k| {
            Ok(match k {
                "config_file" => Some(p.clone()),
                "max_pending_sequences" => Some("9".into()),
                "trusted_process_names" => Some("b".into()),
                _ => None,
            })
        })
        .unwrap();
        assert_eq!(cfg.rule, "apt_netcon_v11", "from the file");
        assert_eq!(cfg.max_pending_sequences, 9, "the property wins");
        assert_eq!(cfg.trusted_process_names, ["a", "b"], "array keys add");
        assert_eq!(set[0], "config_file");
        std::fs::write(&path, r#"{"max_pending":1}"#).unwrap();
        let e = config_from_properties(|k| Ok((k == "config_file").then(|| p.clone()))).unwrap_err();
        assert!(e.contains("config key `max_pending`"), "{e}");
        std::fs::remove_file(&path).unwrap();
    }

    // --- The callbacks, with a fake host.

    struct FakeInstance {
        props: HashMap<CString, CString>,
        context: *mut c_void,
    }

    unsafe extern "C" fn fake_get(key: *const c_char, f_ins: *mut c_void) -> *const c_char {
        let ins = unsafe { &*(f_ins as *const FakeInstance) };
        let key = unsafe { CStr::from_ptr(key) };
        ins.props.get(key).map_or(ptr::null(), |v| v.as_ptr())
    }

    unsafe extern "C" fn fake_set(f_ins: *mut c_void, ctx: *mut c_void) {
        unsafe { (*(f_ins as *mut FakeInstance)).context = ctx };
    }

    fn fake_host() -> Host {
        Host { get_property: fake_get, set_context: fake_set, filter_name: None }
    }

    fn instance(props: &[(&str, &str)]) -> FakeInstance {
        FakeInstance {
            props: props.iter().map(|(k, v)| (CString::new(*k).unwrap(), CString::new(*v).unwrap())).collect(),
            context: ptr::null_mut(),
        }
    }

    #[test]
    fn init_filter_exit_through_the_callbacks() {
        let mut ins = instance(&[("rule", "apt_netcon_v5"), ("annotation_prefix", "alert")]);
        let log = Log::new(None, "t");
        unsafe { init_with(fake_host(), &mut ins as *mut FakeInstance as *mut c_void, &log) }.unwrap();
        assert!(!ins.context.is_null());
        let plugin = &filter_apt_netcon_plugin.0;
        let filter = plugin.cb_filter.unwrap();
        let mut out: *mut c_void = ptr::null_mut();
        let mut out_len = 0usize;
        let call = |chunk: &[u8], out: &mut *mut c_void, out_len: &mut usize| unsafe {
            filter(
                chunk.as_ptr() as *const c_void,
                chunk.len(),
                c"t".as_ptr(),
                1,
                out,
                out_len,
                ptr::null_mut(),
                ptr::null_mut(),
                ins.context,
                ptr::null_mut(),
            )
        };
        assert_eq!(call(&record(1, &stage1()), &mut out, &mut out_len), FLB_FILTER_NOTOUCH);
        assert!(out.is_null() && out_len == 0, "untouched");
        assert_eq!(call(&[0xc1], &mut out, &mut out_len), FLB_FILTER_NOTOUCH);
        assert_eq!(call(&record(2, &stage2()), &mut out, &mut out_len), FLB_FILTER_MODIFIED);
        assert!(!out.is_null() && out_len > 0);
        let bytes = take((out as *mut u8, out_len));
        assert!(bytes.windows(5).any(|w| w == b"alert"));
        // NULL out-pointers: not touched, counted.
        let chunk = record(3, &stage2());
        let r = unsafe {
            filter(
                chunk.as_ptr() as *const c_void,
                chunk.len(),
                ptr::null(),
                0,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
                ins.context,
                ptr::null_mut(),
            )
        };
        assert_eq!(r, FLB_FILTER_NOTOUCH);
        let c = unsafe { &*(ins.context as *const Context) }.lock().counters;
        assert_eq!((c.chunks, c.modified, c.malformed, c.internal_errors), (4, 1, 1, 1));
        assert_eq!(unsafe { plugin.cb_exit.unwrap()(ins.context, ptr::null_mut()) }, 0);
    }

    #[test]
    fn init_refuses_bad_properties_without_a_context() {
        let mut ins = instance(&[("kibana_fields", "maybe")]);
        let e = unsafe { init_with(fake_host(), &mut ins as *mut FakeInstance as *mut c_void, &Log::new(None, "t")) }
            .unwrap_err();
        assert!(e.starts_with("property `kibana_fields`:"), "{e}");
        assert!(ins.context.is_null());
    }

    #[test]
    fn null_context_and_outside_fluent_bit() {
        let plugin = &filter_apt_netcon_plugin.0;
        let chunk = record(1, &stage1());
        let mut out: *mut c_void = ptr::null_mut();
        let mut len = 0usize;
        let r = unsafe {
            plugin.cb_filter.unwrap()(
                chunk.as_ptr() as *const c_void,
                chunk.len(),
                ptr::null(),
                0,
                &mut out,
                &mut len,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        assert_eq!(r, FLB_FILTER_NOTOUCH);
        assert!(out.is_null() && len == 0);
        assert_eq!(unsafe { plugin.cb_exit.unwrap()(ptr::null_mut(), ptr::null_mut()) }, 0);
        // The test binary exports no flb_filter_get_property: init refuses.
        let mut dummy = 0u8;
        let r =
            unsafe { plugin.cb_init.unwrap()(&mut dummy as *mut u8 as *mut c_void, ptr::null_mut(), ptr::null_mut()) };
        assert_eq!(r, -1);
    }

    /// The apt_netcon filter's properties in an example config, commented-out
    /// ones included (`# key value` or `# key: value`), except those naming
    /// files.
    fn example_properties(file: &str, yaml: bool) -> Vec<(String, String)> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/fluent-bit/").to_string() + file;
        let text = std::fs::read_to_string(&path).unwrap();
        let mut in_filter = false;
        let mut props = Vec::new();
        for line in text.lines() {
            let t = line.trim();
            let starts_block = if yaml { t.starts_with("- name:") } else { t.starts_with('[') };
            if starts_block {
                in_filter = if yaml { t == "- name: apt_netcon" } else { t == "[FILTER]" };
                continue;
            }
            if !yaml && t.eq_ignore_ascii_case("name apt_netcon") {
                in_filter = true;
            }
            if !in_filter || t.is_empty() {
                continue;
            }
            let t = t.trim_start_matches('#').trim();
            let (k, v) = if yaml {
                match t.split_once(": ") {
                    Some((k, v)) => (k, v.trim().trim_matches(|c| c == '"' || c == '\'')),
                    None => continue,
                }
            } else {
                match t.split_once(char::is_whitespace) {
                    Some((k, v)) => (k, v.trim()),
                    None => continue,
                }
            };
            let k = k.to_ascii_lowercase();
            if KEYS.iter().any(|s| s.key == k) && !k.ends_with("_file") {
                props.push((k, v.to_string()));
            }
        }
        props
    }

    #[test]
    fn example_configs_are_valid() {
        for (file, yaml) in [("fluent-bit.conf", false), ("fluent-bit.yaml", true)] {
            let props = example_properties(file, yaml);
            assert!(props.len() >= 7, "{file}: {props:?}");
            for (k, v) in &props {
                let r = config_from_properties(|key| Ok((key == k).then(|| v.clone())));
                assert!(r.is_ok(), "{file}: {k} = {v}: {}", r.err().unwrap());
            }
            let all: HashMap<String, String> = props.into_iter().collect();
            let (cfg, _) = config_from_properties(|k| Ok(all.get(k).cloned())).unwrap();
            detector_for(&cfg).unwrap();
        }
    }

    #[test]
    fn logging_is_rate_limited() {
        let logged: Vec<u64> = (1..=40).filter(|&n| worth_logging(n)).collect();
        assert_eq!(logged, [1, 2, 3, 4, 8, 16, 32]);
    }
}
