//! Events held back for lateness (`max_lateness` > 0), and the standalone
//! alerts their sequences give: collecting the alerts, the watermark,
//! flushing and finishing.

use super::*;

impl Detector {
    /// The next standalone alert record, oldest first. Standalone alerts
    /// come only with `max_lateness` > 0: the completing record had already
    /// gone on when the sequence completed. Collect them after each call
    /// (and after [`Detector::finish`]) and forward them after the record.
    pub fn take_alert(&mut self) -> Option<StandaloneAlert> {
        self.alerts.pop_front()
    }

    /// Take the standalone alerts of one format (`msgpack`: those of
    /// MessagePack records), oldest first; the others stay queued.
    pub fn take_alerts(&mut self, msgpack: bool) -> Vec<StandaloneAlert> {
        if self.alerts.iter().all(|a| a.msgpack == msgpack) {
            return self.alerts.drain(..).collect();
        }
        let (take, keep): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.alerts).into_iter().partition(|a| a.msgpack == msgpack);
        self.alerts = keep.into();
        take
    }

    /// Append the standalone alerts of JSON records to `out`, one per line
    /// (each followed by `\n`); returns how many.
    pub fn take_json_alerts(&mut self, out: &mut Vec<u8>) -> u64 {
        let alerts = self.take_alerts(false);
        for a in &alerts {
            out.extend_from_slice(&a.bytes);
            out.push(b'\n');
        }
        alerts.len() as u64
    }

    /// Standalone alerts waiting to be collected.
    pub fn queued_alerts(&self) -> usize {
        self.alerts.len()
    }

    /// End of stream: release every held event to the engine, in time
    /// order, as if the watermark had moved past them all. Returns how many
    /// were released; their alerts are then waiting in [`Detector::take_alert`].
    /// The detector stays usable (later events are judged against the
    /// released ones' times).
    pub fn finish(&mut self) -> u64 {
        if let Some(p) = self.pack.as_deref_mut() {
            let n = p.finish();
            self.stats.bad_timestamp = p.bad_timestamps();
            self.collect_pack_alerts();
            return n as u64;
        }
        if let Some(g) = &mut self.generic {
            return g.finish(&mut self.stats, &mut self.alerts);
        }
        let mut n = 0;
        while let Some((_, id)) = self.held.first() {
            self.release(id, None);
            n += 1;
        }
        n
    }

    /// The latest event time seen (ms since the epoch).
    pub fn watermark(&self) -> Option<i64> {
        if let Some(p) = &self.pack {
            return p.watermark();
        }
        if let Some(g) = &self.generic {
            return g.watermark();
        }
        self.state.watermark()
    }

    /// Drop the partial sequences that can no longer complete at the current
    /// watermark. Safe at any time.
    pub fn flush(&mut self) -> FlushReport {
        if let Some(p) = self.pack.as_deref_mut() {
            let (expired, pending) = p.flush();
            return FlushReport { expired, pending, alerts: self.alerts.len() as u64 };
        }
        let expired = self.state.expire();
        FlushReport { expired, pending: self.state.len() as u64, alerts: self.alerts.len() as u64 }
    }
}
