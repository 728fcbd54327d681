//! What a detector counts ([`Stats`]) and what a flush reports
//! ([`FlushReport`]).

/// Counters. `stage_matches[i]` counts records matching stage i (stages past
/// the fourth are counted in the fourth).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub records: u64,
    pub annotated: u64,
    pub stage_matches: [u64; 4],
    pub sequences_completed: u64,
    /// Consumed by a later stage more than maxspan after their start.
    pub rejected_by_maxspan: u64,
    /// Dropped once the watermark passed start + maxspan.
    pub expired_by_maxspan: u64,
    /// Evicted, oldest first, because `max_pending_sequences` was reached.
    pub evicted_by_cap: u64,
    /// A newer event of the same stage and key replaced a waiting one.
    pub replaced: u64,
    /// Events that could not pair because of arrival order (see module docs).
    pub out_of_order: u64,
    /// Stage-1 events already more than maxspan behind the watermark.
    pub late: u64,
    /// Stage matches with a join-key field missing or null.
    pub missing_key: u64,
    /// Stage matches whose key fields had more than MAX_KEY_COMBINATIONS combinations.
    pub key_combinations_truncated: u64,
    /// Records with a non-address value in a field the rule uses as an IP.
    pub invalid_ip: u64,
    pub too_large: u64,
    pub invalid_json: u64,
    pub invalid_msgpack: u64,
    pub not_an_object: u64,
    pub too_deep: u64,
    pub bad_timestamp: u64,
    pub annotate_failed: u64,
    /// Partial sequences held now.
    pub pending: u64,
    /// Stage matches removed by an exception item (per item:
    /// [`Detector::exception_counts`](super::Detector::exception_counts)). Not in [`Stats::fields`] yet: the C
    /// ABI's stats struct mirrors that list.
    pub excluded: u64,
    /// Partial sequences evicted, oldest first, by `max_pending_per_host`.
    pub evicted_by_host_cap: u64,
    /// Partial sequences evicted, oldest first, by `max_state_bytes`.
    pub evicted_by_bytes: u64,
    /// Stage events with a `@timestamp` more than `max_future` ahead of the
    /// system clock: ignored, so that one cannot blind the detector.
    pub future_timestamp: u64,
    /// Events held back for lateness now (`max_lateness` > 0).
    pub held: u64,
    /// Held events released before their time because a cap was reached
    /// (`max_held_events`, `max_pending_per_host` or `max_state_bytes`).
    pub held_forced: u64,
    /// Alerts produced as standalone alert records (see [`Detector::take_alert`](super::Detector::take_alert)).
    pub standalone_alerts: u64,
    /// Standalone alerts dropped, oldest first, because more than
    /// [`MAX_QUEUED_ALERTS`](super::MAX_QUEUED_ALERTS) were waiting to be collected.
    pub alerts_dropped: u64,
    /// Records that look unparsed: an object of one member holding a
    /// string (`{"log": "…"}`, `{"message": "…"}`) that is none of the
    /// fields the detector reads — a raw log line no rule can match (see
    /// [`Detector::take_warning`](super::Detector::take_warning)). Not in [`Stats::fields`] (the C ABI's
    /// stats struct mirrors that list).
    pub unparsed: u64,
}

impl Stats {
    /// Records that could not be evaluated (every error reason).
    pub fn errors(&self) -> u64 {
        self.too_large + self.invalid_json + self.invalid_msgpack + self.not_an_object + self.too_deep + self.bad_timestamp + self.annotate_failed
    }

    /// `(name, value)` for every counter, in a fixed order.
    pub fn fields(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("records", self.records),
            ("annotated", self.annotated),
            ("stage1_matches", self.stage_matches[0]),
            ("stage2_matches", self.stage_matches[1]),
            ("sequences_completed", self.sequences_completed),
            ("rejected_by_maxspan", self.rejected_by_maxspan),
            ("expired_by_maxspan", self.expired_by_maxspan),
            ("evicted_by_cap", self.evicted_by_cap),
            ("replaced", self.replaced),
            ("out_of_order", self.out_of_order),
            ("late", self.late),
            ("missing_key", self.missing_key),
            ("key_combinations_truncated", self.key_combinations_truncated),
            ("invalid_ip", self.invalid_ip),
            ("too_large", self.too_large),
            ("invalid_json", self.invalid_json),
            ("invalid_msgpack", self.invalid_msgpack),
            ("not_an_object", self.not_an_object),
            ("too_deep", self.too_deep),
            ("bad_timestamp", self.bad_timestamp),
            ("annotate_failed", self.annotate_failed),
            ("pending", self.pending),
            ("excluded", self.excluded),
            ("evicted_by_host_cap", self.evicted_by_host_cap),
            ("evicted_by_bytes", self.evicted_by_bytes),
            ("future_timestamp", self.future_timestamp),
            ("held", self.held),
            ("held_forced", self.held_forced),
            ("standalone_alerts", self.standalone_alerts),
            ("alerts_dropped", self.alerts_dropped),
        ]
    }
}

/// What [`Detector::flush`](super::Detector::flush) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Partial sequences dropped because they can no longer complete.
    pub expired: u64,
    /// Partial sequences still held.
    pub pending: u64,
    /// Standalone alerts waiting to be collected with [`Detector::take_alert`](super::Detector::take_alert).
    pub alerts: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RecordError;

    /// Each error reason names the counter it is counted in, one each.
    #[test]
    fn every_error_reason_names_its_own_counter() {
        let all = [
            RecordError::TooLarge,
            RecordError::InvalidJson,
            RecordError::InvalidMsgpack,
            RecordError::NotAnObject,
            RecordError::TooDeep,
            RecordError::BadTimestamp,
            RecordError::AnnotateFailed,
        ];
        let names: Vec<&str> = Stats::default().fields().into_iter().map(|(n, _)| n).collect();
        for (i, e) in all.iter().enumerate() {
            assert!(names.contains(&e.counter()), "{e:?}: {} is no counter", e.counter());
            assert!(all[..i].iter().all(|x| x.counter() != e.counter()), "{e:?}: {} named twice", e.counter());
        }
        // And the counters they name add up to `errors`.
        let mut s = Stats::default();
        for (k, e) in all.iter().enumerate() {
            let v = 1u64 << k;
            match e.counter() {
                "too_large" => s.too_large = v,
                "invalid_json" => s.invalid_json = v,
                "invalid_msgpack" => s.invalid_msgpack = v,
                "not_an_object" => s.not_an_object = v,
                "too_deep" => s.too_deep = v,
                "bad_timestamp" => s.bad_timestamp = v,
                "annotate_failed" => s.annotate_failed = v,
                other => panic!("{other}"),
            }
        }
        assert_eq!(s.errors(), (1 << all.len()) - 1);
    }
}
