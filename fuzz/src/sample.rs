//! The bundled sample: its records, as one-record chunks, and its first
//! true sequence.

use super::{chunk_of, msgpack};

/// The bundled sample stream (29 events, two true sequences).
pub const SAMPLE: &[u8] = include_bytes!("../../examples/data/sample.ndjson");

/// The sample's records (no terminators).
pub fn sample_lines() -> Vec<&'static [u8]> {
    static LINES: std::sync::OnceLock<Vec<&'static [u8]>> = std::sync::OnceLock::new();
    LINES.get_or_init(|| SAMPLE.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect()).clone()
}

/// Each sample record as a one-record Fluent Bit chunk (v2 form).
pub fn sample_chunks() -> &'static [Vec<u8>] {
    static CHUNKS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    CHUNKS.get_or_init(|| {
        sample_lines().iter().map(|l| chunk_of(&[msgpack(&serde_json::from_slice(l).unwrap())])).collect()
    })
}

/// The sample's first true sequence: the backdoored hook's shell exec and its
/// child's connection (lines 6 and 11).
pub fn hook_shell() -> &'static [u8] {
    sample_lines()[5]
}
pub fn hook_connection() -> &'static [u8] {
    sample_lines()[10]
}
