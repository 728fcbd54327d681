//! MessagePack records (Fluent Bit chunks). Being written.

use crate::annotate::MergeError;
use crate::event::{ExtractError, FieldTable, Fields};
use serde_json::{Map, Value};

/// Read the table's fields from one MessagePack map (a record body).
pub fn extract<'a>(_table: &FieldTable, _body: &'a [u8], _out: &mut Fields<'a>) -> Result<(), ExtractError> {
    Err(ExtractError::InvalidJson)
}

/// Write the alert roots into a MessagePack map body.
pub fn merge(_body: &[u8], _roots: Map<String, Value>, _out: &mut Vec<u8>) -> Result<(), MergeError> {
    Err(MergeError("not yet".into()))
}

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

/// Why a chunk could not be walked at all (it then goes on unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// The chunk is not a sequence of well-formed records (truncated, wrong
    /// shape, wrong ext type for EventTime).
    Malformed,
}

/// Run every record of a Fluent Bit chunk (records concatenated; v2
/// `[[EventTime, {meta}], {body}]` or legacy `[EventTime, {body}]`; integer or
/// float times; group markers passed through) through the detector. When any
/// record is annotated, `out` receives the whole new chunk, in which only the
/// annotated bodies differ.
pub fn filter_chunk(
    _det: &mut crate::Detector,
    _chunk: &[u8],
    _out: &mut Vec<u8>,
) -> Result<ChunkOutcome, ChunkError> {
    Err(ChunkError::Malformed)
}
