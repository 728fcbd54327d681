//! Host bindings: how log shippers load the engine. The C ABI ([`ffi`]:
//! `include/apt_netcon.h`, for Fluent Bit's Lua glue, Vector, Go, C) and
//! the Fluent Bit native filter plugin ([`fluentbit`]). The CLI and the
//! socket sidecar are the binary's (`src/main.rs` and its modules), built on
//! the same public API.
//!
//! The top layer: may use every other folder. The only modules of the crate
//! allowed `unsafe` code (pointers from the host).

#[allow(unsafe_code)]
pub mod ffi;
#[allow(unsafe_code)]
pub mod fluentbit;
