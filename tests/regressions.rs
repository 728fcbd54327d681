//! Regression tests for what the fuzz targets (`fuzz/`, see docs/reliability.md,
//! "Fuzzing") find.
//!
//! The targets' code lives in `fuzz/src/` (`lib.rs` and its modules, one a
//! target: `rule_parser.rs`, …), which this file includes, so
//! a crash input replays here through exactly the same calls and checks as
//! under libFuzzer — without libFuzzer, on the stable toolchain, in every
//! `cargo test`. (A panic the C ABI's guard catches shows up here as an
//! `APTNC_STATUS_PANIC` the target refuses; under libFuzzer it aborts.)
//!
//! For every crash: add a test named after what went wrong, with the input
//! inlined as bytes (`xxd -i crash-…`), calling the target's `run`; fix the
//! bug; keep the test.
//!
//! Crashes found so far: none (see the fuzzing notes in docs/reliability.md for the
//! runs made). `the_seed_corpus_passes_every_target` keeps the targets and
//! their seeds compiling and passing.

#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod fuzz;

/// Every seed the runner starts from, through its target.
#[test]
fn the_seed_corpus_passes_every_target() {
    let dir = std::env::temp_dir().join(format!("apt-netcon-seeds-{}", std::process::id()));
    let targets: [(&str, fn(&[u8])); 4] = [
        ("rule_parser", fuzz::rule_parser::run),
        ("json_record", fuzz::json_record::run),
        ("msgpack_chunk", fuzz::msgpack_chunk::run),
        ("c_abi", fuzz::c_abi::run),
    ];
    for (name, run) in targets {
        let d = dir.join(name);
        let n = fuzz::write_seeds(name, &d).unwrap();
        assert!(n > 0, "{name}: no seeds");
        for entry in std::fs::read_dir(&d).unwrap() {
            let input = std::fs::read(entry.unwrap().path()).unwrap();
            run(&input);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Inputs at the edges of each target's input format: empty, one byte,
/// every opcode once.
#[test]
fn edge_inputs_pass_every_target() {
    let every_op: Vec<u8> = (0..16u8).flat_map(|op| [op, 0, 0, 0, 0]).collect();
    for input in [&[][..], &[0], &[0xff], b"\n\n", &every_op] {
        fuzz::rule_parser::run(input);
        fuzz::json_record::run(input);
        fuzz::msgpack_chunk::run(input);
        fuzz::c_abi::run(input);
    }
}
