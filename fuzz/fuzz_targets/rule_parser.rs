//! Fuzz target: see `apt_netcon_fuzz::rule_parser` (fuzz/src/rule_parser.rs) for what it
//! feeds and what it checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(init: apt_netcon_fuzz::seeds_from_env("rule_parser"), |data: &[u8]| apt_netcon_fuzz::rule_parser::run(data));
