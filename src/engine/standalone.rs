//! Standalone alert records in the Fluent Bit chunk path.
//!
//! With `max_lateness` > 0 a sequence may complete after its last record
//! has gone on; the alert then leaves as a record of its own (see
//! [`crate::Detector::take_alert`]). In a chunk, each such record is
//! appended after the chunk's own records, in the Fluent Bit event format
//! `[[EventTime(now), {}], body]`.

use crate::engine::chunk::{filter_chunk, ChunkOutcome};
use crate::format::msgpack::ChunkError;
use crate::Detector;
use std::time::{SystemTime, UNIX_EPOCH};

/// Append one Fluent Bit record `[[time, {}], body]` to `out`, `time` being
/// `now` as a MessagePack EventTime (ext type 0, seconds and nanoseconds).
pub fn append_record(out: &mut Vec<u8>, body: &[u8], now: SystemTime) {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    out.extend_from_slice(&[0x92, 0x92, 0xd7, 0x00]);
    out.extend_from_slice(&(d.as_secs() as u32).to_be_bytes());
    out.extend_from_slice(&d.subsec_nanos().to_be_bytes());
    out.push(0x80);
    out.extend_from_slice(body);
}

/// [`filter_chunk`], then every standalone alert the detector has queued
/// appended to the chunk. Returns the outcome and the number of alerts
/// appended; when either is non-zero `out` holds the whole new chunk,
/// otherwise the chunk goes on as it came. A standalone alert of a JSON
/// record (from [`Detector::process`] on the same detector) is left queued.
pub fn filter_chunk_and_alerts(
    det: &mut Detector,
    chunk: &[u8],
    out: &mut Vec<u8>,
) -> Result<(ChunkOutcome, u64), ChunkError> {
    let outcome = filter_chunk(det, chunk, out)?;
    let alerts = det.take_alerts(true);
    if alerts.is_empty() {
        return Ok((outcome, 0));
    }
    if outcome.annotated == 0 {
        out.clear();
        out.extend_from_slice(chunk);
    }
    let now = SystemTime::now();
    for a in &alerts {
        append_record(out, &a.bytes, now);
    }
    Ok((outcome, alerts.len() as u64))
}
