//! Fuzz target: see `apt_netcon_fuzz::c_abi` (fuzz/src/c_abi.rs) for what it
//! feeds and what it checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(init: apt_netcon_fuzz::seeds_from_env("c_abi"), |data: &[u8]| apt_netcon_fuzz::c_abi::run(data));
