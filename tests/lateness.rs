//! Out-of-order tolerance (`max_lateness`): events shuffled within the
//! window give the same alerts (same ids) as the time-sorted stream, which
//! in turn agrees with the naive reference; events later than the window are
//! counted and never matched; nothing is lost at the end of the stream.

mod common;

use apt_netcon::{Config, Detector, Rule, Verdict};
use common::{check_stream, gen_fleet_stream, leaves, gen_stream, parse_json, ref_parse_ts, GenOpts, Rng, J};
use serde_json::Value;

fn config(lateness: &str) -> Config {
    let mut c = Config::default();
    c.set_str("max_lateness", lateness).unwrap();
    c
}

/// The event time of each record (ms); a record without a usable one takes
/// its predecessor's, so that it stays near its place.
fn times(records: &[Vec<u8>]) -> Vec<i64> {
    let mut last = 0;
    records
        .iter()
        .map(|r| {
            let t = match parse_json(r) {
                Some(doc @ J::Obj(_)) => {
                    leaves(&doc, "@timestamp").first().and_then(|v| v.as_str()).and_then(ref_parse_ts)
                }
                _ => None,
            };
            last = t.unwrap_or(last);
            last
        })
        .collect()
}

fn alert_uuid(annotated: &[u8]) -> String {
    let v: Value = serde_json::from_slice(annotated).expect("annotated record is JSON");
    v["kibana"]["alert"]["uuid"].as_str().expect("alert uuid").to_string()
}

/// Run `records` through a detector; every record must come out (unchanged
/// or annotated). Returns the alert ids, inline and standalone, in order.
fn run(rule: &Rule, cfg: &Config, records: &[Vec<u8>]) -> (Vec<String>, apt_netcon::Stats) {
    let mut d = Detector::with_rule(rule.clone(), cfg);
    let mut ids = Vec::new();
    for r in records {
        match d.process(r) {
            Ok(Verdict::Annotated(b)) => ids.push(alert_uuid(b)),
            Ok(Verdict::Unchanged) | Err(_) => {}
        }
        while let Some(a) = d.take_alert() {
            assert!(!a.msgpack);
            ids.push(alert_uuid(&a.bytes));
        }
    }
    d.finish();
    while let Some(a) = d.take_alert() {
        ids.push(alert_uuid(&a.bytes));
    }
    (ids, d.stats())
}

/// Shuffle `records` so that no event arrives more than `window_ms` of
/// event time after a later one: each is delayed by a random amount below
/// the window. Returns the shuffled stream and the time-sorted one (a
/// stable sort of the shuffled stream: ties keep their arrival order, which
/// is the documented tiebreak).
fn shuffle_within(records: &[Vec<u8>], window_ms: i64, rng: &mut Rng) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let ts = times(records);
    let mut idx: Vec<(i64, usize)> =
        ts.iter().enumerate().map(|(i, &t)| (t + rng.below(window_ms as u64) as i64, i)).collect();
    idx.sort_by_key(|&(k, i)| (k, i));
    let shuffled: Vec<Vec<u8>> = idx.iter().map(|&(_, i)| records[i].clone()).collect();
    let mut by_time: Vec<(i64, usize)> = idx.iter().enumerate().map(|(pos, &(_, i))| (ts[i], pos)).collect();
    by_time.sort_by_key(|&(t, pos)| (t, pos));
    let sorted = by_time.iter().map(|&(_, pos)| shuffled[pos].clone()).collect();
    (shuffled, sorted)
}

#[test]
fn shuffled_within_the_window_gives_the_sorted_streams_alerts() {
    let rule = Rule::builtin("apt_netcon_v5").unwrap();
    let inline = Config::default();
    let (mut streams, mut alerts, mut moved) = (0u64, 0u64, 0u64);
    for seed in 0..300u64 {
        let s = if seed % 3 == 0 {
            gen_fleet_stream(seed, 300, 1 + (seed % 7) as usize, GenOpts::default())
        } else {
            gen_stream(seed, 200, 4, GenOpts::default())
        };
        let mut rng = Rng::new(seed ^ 0x1A7E);
        let window = [1, 500, 2000, 5000, 9000][(seed % 5) as usize];
        let (shuffled, sorted) = shuffle_within(&s.records, window, &mut rng);
        moved += shuffled.iter().zip(&s.records).filter(|(a, b)| a != b).count() as u64;
        // The sorted stream agrees with the naive reference...
        check_stream(&rule, &sorted).unwrap_or_else(|e| {
            if std::env::var("LATENESS_DUMP").is_ok() {
                for (i, r) in sorted.iter().enumerate().take(60) {
                    eprintln!("{i}: {}", String::from_utf8_lossy(r));
                }
            }
            panic!("seed {seed}: sorted stream vs reference: {e}")
        });
        // ...and its alerts are those of the shuffled stream with lateness.
        let (want, _) = run(&rule, &inline, &sorted);
        let (got, stats) = run(&rule, &config(&format!("{window}ms")), &shuffled);
        let (mut w, mut g) = (want.clone(), got.clone());
        w.sort();
        g.sort();
        assert_eq!(g, w, "seed {seed}, window {window} ms: alert ids differ");
        assert_eq!(stats.late, 0, "seed {seed}: nothing is later than the window");
        assert_eq!(stats.held, 0, "seed {seed}: finish released everything");
        streams += 1;
        alerts += want.len() as u64;
    }
    assert!(alerts > 300, "the streams must alert: {alerts}");
    assert!(moved > 10_000, "the shuffles must move records: {moved}");
    eprintln!("{streams} streams, {alerts} alerts, {moved} records moved: same alert ids");
}

fn exec(t: &str, host: &str, entity: &str) -> Vec<u8> {
    format!(
        r#"{{"@timestamp":"{t}","host":{{"id":"{host}","os":{{"type":"linux"}}}},"event":{{"category":["process"],"type":["start"],"action":"exec"}},"process":{{"entity_id":"{entity}","name":"sh","args":["sh","-c","curl x"],"parent":{{"name":"apt"}}}}}}"#
    )
    .into_bytes()
}

fn connect(t: &str, host: &str, parent: &str, ip: &str) -> Vec<u8> {
    format!(
        r#"{{"@timestamp":"{t}","host":{{"id":"{host}","os":{{"type":"linux"}}}},"event":{{"category":["network"],"type":["start"],"action":"connection_attempted"}},"destination":{{"ip":"{ip}"}},"process":{{"entity_id":"c-{parent}","name":"curl","parent":{{"entity_id":"{parent}"}}}}}}"#
    )
    .into_bytes()
}

#[test]
fn a_network_event_before_its_exec_gives_a_standalone_alert() {
    let rule = Rule::builtin("apt_netcon_v5").unwrap();
    let net = connect("2026-01-01T00:00:01.500Z", "h1", "e1", "45.33.32.156");
    let ex = exec("2026-01-01T00:00:01.000Z", "h1", "e1");
    let later = exec("2026-01-01T00:00:09.000Z", "h1", "other");
    let mut d = Detector::with_rule(rule.clone(), &config("2s"));
    // The network event arrives first: it goes on unchanged at once.
    assert_eq!(d.process(&net), Ok(Verdict::Unchanged));
    assert_eq!(d.process(&ex), Ok(Verdict::Unchanged));
    assert!(d.take_alert().is_none(), "nothing completes before the window passes");
    // An event 2 s past them releases both; the alert leaves standalone.
    assert_eq!(d.process(&later), Ok(Verdict::Unchanged));
    let a = d.take_alert().expect("a standalone alert");
    assert!(d.take_alert().is_none());
    let v: Value = serde_json::from_slice(&a.bytes).unwrap();
    assert_eq!(v["destination"]["ip"], "45.33.32.156", "the network event's document");
    assert!(v["kibana"]["alert"]["reason"].as_str().unwrap().contains("500 ms after sh"));
    // The original record, with the alert fields: nothing else changed.
    let orig: Value = serde_json::from_slice(&net).unwrap();
    for (k, val) in orig.as_object().unwrap() {
        assert_eq!(&v[k], val, "field {k} kept");
    }
    let s = d.stats();
    assert_eq!((s.standalone_alerts, s.sequences_completed, s.annotated), (1, 1, 0));
    // The same alert as the sorted stream gives inline.
    let (want, _) = run(&rule, &Config::default(), &[ex.clone(), net.clone(), later.clone()]);
    assert_eq!(want, vec![alert_uuid(&a.bytes)]);
    // Without lateness the exec is too late to pair: no alert at all.
    let (none, s0) = run(&rule, &Config::default(), &[net, ex, later]);
    assert!(none.is_empty());
    assert_eq!(s0.sequences_completed, 0);
}

#[test]
fn events_later_than_the_window_are_counted_and_never_matched() {
    let rule = Rule::builtin("apt_netcon_v5").unwrap();
    let mut d = Detector::with_rule(rule, &config("1s"));
    d.process(&exec("2026-01-01T00:00:10.000Z", "h1", "x")).unwrap();
    // 1.5 s behind the watermark: late (its exec would have paired).
    d.process(&exec("2026-01-01T00:00:08.000Z", "h1", "e1")).unwrap();
    d.process(&connect("2026-01-01T00:00:08.400Z", "h1", "e1", "45.33.32.156")).unwrap();
    d.finish();
    assert!(d.take_alert().is_none());
    let s = d.stats();
    assert_eq!(s.late, 2);
    assert_eq!(s.sequences_completed, 0);
}

#[test]
fn equal_timestamps_follow_arrival_order() {
    let rule = Rule::builtin("apt_netcon_v5").unwrap();
    let t = "2026-01-01T00:00:01.000Z";
    let flush = exec("2026-01-01T00:00:30.000Z", "h1", "z");
    // exec then connect at the same millisecond: a match (span 0)...
    let (ids, _) = run(&rule, &config("3s"), &[exec(t, "h1", "e1"), connect(t, "h1", "e1", "1.1.1.1"), flush.clone()]);
    assert_eq!(ids.len(), 1);
    // ...connect then exec: the exec is not before the connection.
    let (ids, _) = run(&rule, &config("3s"), &[connect(t, "h1", "e1", "1.1.1.1"), exec(t, "h1", "e1"), flush]);
    assert!(ids.is_empty());
}

#[test]
fn the_end_of_the_stream_releases_everything_held() {
    let rule = Rule::builtin("apt_netcon_v5").unwrap();
    let mut d = Detector::with_rule(rule, &config("1m"));
    d.process(&connect("2026-01-01T00:00:02.000Z", "h1", "e1", "8.8.8.8")).unwrap();
    d.process(&exec("2026-01-01T00:00:01.000Z", "h1", "e1")).unwrap();
    assert_eq!(d.stats().held, 2);
    assert!(d.take_alert().is_none());
    assert_eq!(d.finish(), 2);
    assert!(d.take_alert().is_some());
    assert_eq!(d.stats().held, 0);
}

#[test]
fn held_events_are_capped_and_released_early_in_order() {
    let rule = Rule::builtin("apt_netcon_v5").unwrap();
    let mut cfg = config("1h");
    cfg.set_str("max_held_events", "3").unwrap();
    let mut d = Detector::with_rule(rule, &cfg);
    d.process(&exec("2026-01-01T00:00:01.000Z", "h1", "e1")).unwrap();
    d.process(&connect("2026-01-01T00:00:01.100Z", "h1", "e1", "8.8.8.8")).unwrap();
    for i in 0..5 {
        d.process(&exec(&format!("2026-01-01T00:00:0{}.000Z", i + 2), "h2", &format!("n{i}"))).unwrap();
    }
    let s = d.stats();
    assert_eq!(s.held, 3);
    assert_eq!(s.held_forced, 4);
    // The pair was released (early, in time order) and completed.
    assert_eq!(s.standalone_alerts, 1);
    assert!(d.take_alert().is_some());
}

#[test]
fn a_far_future_timestamp_does_not_blind_the_detector() {
    let rule = Rule::builtin("apt_netcon_v5").unwrap();
    for lateness in ["0s", "2s"] {
        let (ids, s) = run(
            &rule,
            &config(lateness),
            &[
                exec("9999-12-31T23:59:59.000Z", "h1", "bogus"),
                exec("2026-01-01T00:00:01.000Z", "h1", "e1"),
                connect("2026-01-01T00:00:02.000Z", "h1", "e1", "8.8.8.8"),
            ],
        );
        assert_eq!(ids.len(), 1, "max_lateness {lateness}");
        assert_eq!(s.future_timestamp, 1);
    }
}
