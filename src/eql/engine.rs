//! The streaming EQL engine (STUB: being written).

use super::types::TypeMap;
use super::RuleError;

/// How an [`Engine`] reads events.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Field types (ECS built in plus any user mapping).
    pub types: TypeMap,
    /// The event-time field (a `date`): `@timestamp`.
    pub timestamp_field: String,
    /// `sample` queries: how long (event time, ms) a key's candidates are kept.
    /// `None` keeps them without a time limit (still under the caps).
    pub sample_window_ms: Option<u64>,
    /// At most this many partial sequences / sample candidates in all.
    pub max_partials: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            types: TypeMap::ecs(),
            timestamp_field: "@timestamp".to_string(),
            sample_window_ms: None,
            max_partials: 100_000,
        }
    }
}

/// One result: an event query's event, a completed sequence or a sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    /// One entry per result position (a sequence's stages after `runs`
    /// expansion, in stage order; a sample's stages; one for an event
    /// query): the ordinal the caller gave the event, `None` for a
    /// missing-event stage.
    pub events: Vec<Option<u64>>,
    /// The join key values, as Elasticsearch prints them (`None` for null).
    pub keys: Vec<Option<String>>,
}

/// A compiled query over a stream of events in time order.
pub struct Engine {
    _opts: EngineOptions,
}

impl Engine {
    /// Parse and compile `query`.
    pub fn new(query: &str, options: EngineOptions) -> Result<Engine, RuleError> {
        let _ = super::parse(query, super::ParseLimits::default())?;
        Ok(Engine { _opts: options })
    }

    /// The next event, in time order (`@timestamp`, then the caller's
    /// tiebreaker); `ordinal` is the caller's name for it. Results completed
    /// by it are appended to `out`.
    pub fn push(&mut self, _ordinal: u64, _event: &serde_json::Value, _out: &mut Vec<Match>) {}

    /// The end of the stream: results that were waiting for more events
    /// (a trailing missing-event stage) are appended to `out`.
    pub fn finish(&mut self, _out: &mut Vec<Match>) {}
}
