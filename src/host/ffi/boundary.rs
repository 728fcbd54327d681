//! Safety at the C boundary: the one panic guard every extern function runs
//! in, the checks on the host's pointers and strings, the error objects
//! handed to the host, and writes into the host's versioned structs.

use super::*;

/// A panic caught by [`guard`], with its message.
pub(crate) struct Panicked(pub(crate) String);

/// The one panic guard: runs `f`, catching a panic so that it never unwinds
/// into the host. Every extern function's body runs inside it (the Fluent
/// Bit plugin's too: [`crate::host::fluentbit`]).
pub(crate) fn guard<T>(f: impl FnOnce() -> T) -> Result<T, Panicked> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| Panicked(panic_message(payload.as_ref()).to_string()))
}

pub(super) fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

/// Run `f` on the detector behind `det`, inside the guard: NULL gives
/// NULL_PARAMETER, a poisoned detector POISONED, and a panic PANIC and
/// poisons it.
pub(super) fn with_detector(det: *mut aptnc_detector, f: impl FnOnce(&mut aptnc_detector) -> aptnc_status) -> aptnc_status {
    // SAFETY: the caller passes NULL or a pointer from aptnc_init that has
    // not been freed, used by one caller at a time (the documented contract).
    let Some(d) = (unsafe { det.as_mut() }) else {
        return aptnc_status::NullParameter;
    };
    if d.poisoned {
        return aptnc_status::Poisoned;
    }
    match guard(|| f(&mut *d)) {
        Ok(status) => status,
        Err(_) => {
            d.poisoned = true;
            aptnc_status::Panic
        }
    }
}

/// The bytes of `(ptr, len)`; `None` when `ptr` is NULL and `len` is not 0.
///
/// # Safety
/// A non-NULL `ptr` must point to `len` readable bytes that stay unchanged
/// for `'a`.
pub(super) unsafe fn input<'a>(ptr: *const u8, len: usize) -> Option<&'a [u8]> {
    if ptr.is_null() {
        return if len == 0 { Some(&[]) } else { None };
    }
    // SAFETY: the caller's contract; a real buffer is never longer than isize::MAX.
    Some(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A NUL-terminated string argument; `None` when `ptr` is NULL.
///
/// # Safety
/// A non-NULL `ptr` must point to a NUL-terminated string that stays
/// unchanged for `'a`.
pub(super) unsafe fn c_str<'a>(ptr: *const c_char) -> Option<&'a CStr> {
    if ptr.is_null() {
        None
    } else {
        // SAFETY: the caller's contract.
        Some(unsafe { CStr::from_ptr(ptr) })
    }
}

/// Everything an [`aptnc_error`] holds, before it becomes one.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) status: aptnc_status,
    pub(super) message: String,
    pub(super) key: Option<String>,
    pub(super) line: u32,
    pub(super) column: u32,
}

impl Failure {
    pub(super) fn new(status: aptnc_status, message: impl Into<String>) -> Failure {
        Failure { status, message: message.into(), key: None, line: 0, column: 0 }
    }

    pub(super) fn null(param: &str) -> Failure {
        Failure::new(aptnc_status::NullParameter, format!("`{param}` is NULL"))
    }

    pub(super) fn into_error(self) -> aptnc_error {
        aptnc_error {
            status: self.status,
            message: c_string(&self.message),
            key: self.key.as_deref().map(c_string),
            line: self.line,
            column: self.column,
        }
    }
}

impl From<RuleError> for Failure {
    fn from(e: RuleError) -> Failure {
        Failure { status: aptnc_status::RuleError, message: e.to_string(), key: None, line: e.line, column: e.column }
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Failure {
        Failure { status: aptnc_status::ConfigError, message: e.to_string(), key: e.key, line: 0, column: 0 }
    }
}

impl From<LoadError> for Failure {
    fn from(e: LoadError) -> Failure {
        match e {
            LoadError::Config(e) => e.into(),
            LoadError::Rule(e) => e.into(),
        }
    }
}

/// A C string of `s`, with any NUL shown as `\0` (never fails).
pub(crate) fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', "\\0")).unwrap_or_default()
}

/// Run `f` inside the guard; on failure (including a panic) store an error
/// object in `*error` when `error` is not NULL, and return its status.
pub(super) fn with_error(error: *mut *mut aptnc_error, f: impl FnOnce() -> Result<(), Failure>) -> aptnc_status {
    let failure = match guard(f) {
        Ok(Ok(())) => return aptnc_status::Ok,
        Ok(Err(failure)) => failure,
        Err(Panicked(msg)) => Failure::new(aptnc_status::Panic, format!("internal error (panic): {msg}")),
    };
    let status = failure.status;
    if !error.is_null() {
        // SAFETY: a non-NULL `error` points to a writable `aptnc_error *`.
        unsafe { *error = Box::into_raw(Box::new(failure.into_error())) };
    }
    status
}

/// Bytes every size-prefixed struct has: `uint32_t size`, `uint32_t version`.
pub(super) const SIZED_HEADER: usize = 8;

/// Copy `value` into the caller's size-prefixed struct at `dst`: min(its
/// `size`, ours) bytes, then `size` = bytes written.
///
/// # Safety
/// `dst` is non-NULL, aligned, and points to at least its own leading
/// `uint32_t size` bytes of writable memory.
pub(super) unsafe fn write_sized<T: Copy>(dst: *mut T, value: &T) -> aptnc_status {
    // SAFETY: the caller's contract: `size` is the first field.
    let want = unsafe { ptr::read(dst as *const u32) } as usize;
    if want < SIZED_HEADER {
        return aptnc_status::InvalidArgument;
    }
    let n = want.min(size_of::<T>());
    // SAFETY: `dst` has `want` >= `n` writable bytes (the caller set `size`),
    // and `value` has size_of::<T>() >= `n` readable bytes.
    unsafe {
        ptr::copy_nonoverlapping(value as *const T as *const u8, dst as *mut u8, n);
        ptr::write(dst as *mut u32, n as u32);
    }
    aptnc_status::Ok
}

pub(super) fn record_status(e: RecordError) -> aptnc_status {
    match e {
        RecordError::TooLarge => aptnc_status::TooLarge,
        RecordError::InvalidJson => aptnc_status::InvalidJson,
        RecordError::InvalidMsgpack => aptnc_status::InvalidMsgpack,
        RecordError::NotAnObject => aptnc_status::NotAnObject,
        RecordError::TooDeep => aptnc_status::TooDeep,
        RecordError::BadTimestamp => aptnc_status::BadTimestamp,
        RecordError::AnnotateFailed => aptnc_status::AnnotateFailed,
    }
}
