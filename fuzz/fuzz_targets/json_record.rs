//! Fuzz target: see `apt_netcon_fuzz::json_record` (fuzz/src/json_record.rs) for what it
//! feeds and what it checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(init: apt_netcon_fuzz::seeds_from_env("json_record"), |data: &[u8]| apt_netcon_fuzz::json_record::run(data));
