//! A Fluent Bit chunk through a detector: every record's body to
//! [`Detector::process_msgpack`], the annotated bodies spliced into a copy
//! of the chunk. How a chunk is read and validated:
//! [`crate::format::msgpack`] (its module docs, "Walking a chunk").

use crate::format::msgpack::{read_chunk, read_chunk_with, ChunkError};
use crate::Detector;

/// What [`filter_chunk`] did with a Fluent Bit chunk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkOutcome {
    /// Records (excluding group markers) seen in the chunk.
    pub records: u64,
    /// Records annotated; when 0, `out` is untouched and the chunk goes on as it was.
    pub annotated: u64,
    /// Records that could not be evaluated (counted in the detector's stats) and went on unchanged.
    pub errors: u64,
    /// Group start/end markers passed through.
    pub group_markers: u64,
}

/// Run every record of a Fluent Bit chunk (records concatenated; v2
/// `[[EventTime, {meta}], {body}]` or legacy `[EventTime, {body}]`; integer or
/// float times; group markers passed through) through the detector. When any
/// record is annotated, `out` receives the whole new chunk, in which only the
/// annotated bodies differ.
///
/// On `Err(ChunkError::Malformed)` no record was shown to the detector and
/// `out` is untouched: pass the chunk on unchanged. See the module docs.
pub fn filter_chunk(
    det: &mut Detector,
    chunk: &[u8],
    out: &mut Vec<u8>,
) -> Result<ChunkOutcome, ChunkError> {
    // A rule pack reads each body as the chunk is walked, so that one walk
    // both checks a body and reads it; the reads wait until the whole
    // chunk is found well formed (none of its records is shown to the
    // detector before).
    let mut reads = Vec::new();
    let recs = match det.pack_mut() {
        Some(pack) => {
            let mut held = 0;
            read_chunk_with(chunk, |marker, start| {
                let got = if marker { None } else { pack.read_ahead(&chunk[start..], held) };
                held += got.is_some() as usize;
                let end = got.as_ref().map(|(len, _)| start + len);
                reads.push(got.map(|(_, fields)| fields));
                end
            })?
        }
        None => read_chunk(chunk)?,
    };
    let mut outcome = ChunkOutcome::default();
    // Bytes of `chunk` already copied into `out` (once building).
    let mut copied = 0usize;
    for (k, r) in recs.iter().enumerate() {
        if r.marker {
            outcome.group_markers += 1;
            continue;
        }
        outcome.records += 1;
        let body = &chunk[r.body.clone()];
        let verdict = match reads.get_mut(k).and_then(Option::take) {
            Some(read) => det.process_msgpack_read(body, read),
            None => det.process_msgpack(body),
        };
        match verdict {
            Ok(crate::Verdict::Unchanged) => {}
            Ok(crate::Verdict::Annotated(bytes)) => {
                if outcome.annotated == 0 {
                    out.clear();
                    // The chunk with this body replaced (it grows if more follow).
                    out.reserve(chunk.len() - r.body.len() + bytes.len() + 1024);
                }
                outcome.annotated += 1;
                out.extend_from_slice(&chunk[copied..r.body.start]);
                out.extend_from_slice(bytes);
                copied = r.body.end;
            }
            Err(_) => outcome.errors += 1,
        }
    }
    if outcome.annotated > 0 {
        out.extend_from_slice(&chunk[copied..]);
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk of `n` v2 records of one small body.
    fn chunk_of(n: usize) -> Vec<u8> {
        let mut body = Vec::new();
        let fields = serde_json::json!({"@timestamp": "2026-01-01T00:00:00Z", "event": {"category": ["process"]}, "host": {"id": "h"}});
        crate::format::msgpack::merge(&[0x80], fields.as_object().unwrap().clone(), &mut body).unwrap();
        let mut chunk = Vec::new();
        for _ in 0..n {
            chunk.extend_from_slice(&[0x92, 0x92, 0xd7, 0x00, 0, 0, 0, 1, 0, 0, 0, 0, 0x80]);
            chunk.extend_from_slice(&body);
        }
        chunk
    }

    /// With a rule pack, the bodies of a chunk are read during its walk
    /// (their buffers come back to the pack), at most READ_AHEAD of them;
    /// without one, nothing is read ahead.
    #[test]
    fn a_pack_reads_a_chunks_bodies_during_its_walk() {
        let config = crate::Config::from_json(r#"{"rules":["apt_netcon_v5","apt_netcon_v11"]}"#).unwrap();
        let mut det = Detector::new(&config).unwrap();
        let mut out = Vec::new();
        for (n, held) in [(5, 5), (300, crate::engine::pack::READ_AHEAD)] {
            det.pack_mut().unwrap().ahead.clear();
            let o = filter_chunk(&mut det, &chunk_of(n), &mut out).unwrap();
            assert_eq!(o.records, n as u64);
            assert_eq!(det.pack_mut().unwrap().ahead.len(), held, "{n} records");
        }
        let mut one = Detector::new(&crate::Config::default()).unwrap();
        assert!(one.pack_mut().is_none());
        assert_eq!(filter_chunk(&mut one, &chunk_of(5), &mut out).unwrap().records, 5);
    }
}
