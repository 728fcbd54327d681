//! Fuzz target: see `apt_netcon_fuzz::msgpack_chunk` (fuzz/src/msgpack_chunk.rs) for what it
//! feeds and what it checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(init: apt_netcon_fuzz::seeds_from_env("msgpack_chunk"), |data: &[u8]| apt_netcon_fuzz::msgpack_chunk::run(data));
