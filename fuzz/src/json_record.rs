//! The JSON record path: `Detector::process` on arbitrary bytes.
//!
//! The input is split into lines, each a record, after two valid prefix
//! events from the sample (the backdoored hook's shell exec, then a `bash`
//! ls), so a line that looks like the hook's connection completes a
//! sequence and the merge runs. The whole input is also tried as one record.
//!
//! Three detectors see the same stream: two with the default config (their
//! verdicts must be identical: nothing depends on hash seeds or addresses)
//! and one with a config chosen by the input's length.
//!
//! Checks (`process_checked`): no panic; every record counted; an error
//! moves exactly its own counter; an annotated record is a JSON object that
//! kept the input's members. A fourth detector runs with the byte prefilter
//! off: until a record it counts as an error passes as unchanged with the
//! default, the default must give its verdict and bytes on every record,
//! and the same stage matches, completions and pending count at the end.
//! Every record also goes to `apt_netcon::format::syntax::valid`, whose verdict must
//! be serde_json's, and to the scan that checks the syntax as it goes (a rule
//! pack's), whose verdicts must be the syntax check's (see [`checked_scan`]),
//! and through a small rule pack (two rules on the generic engine and the
//! APT rule: `pack_checked`).

use super::{detector, hook_shell, pack_checked, process_checked, sample_lines, small_pack, Outcome, CONFIGS, STRICT};

pub fn run(data: &[u8]) {
    let mut a = detector(0);
    let mut b = detector(0);
    let mut c = detector(1 + data.len() % (CONFIGS.len() - 1));
    let mut strict = detector(STRICT);
    let mut relaxed = false;
    let prefix = [hook_shell(), sample_lines()[0]];
    let lines = prefix.into_iter().chain(data.split(|&x| x == b'\n')).chain(std::iter::once(data));
    let table = scan_table();
    let mut pack = small_pack();
    for rec in lines {
        pack_checked(&mut pack, rec, false);
        assert_eq!(
            apt_netcon::format::syntax::valid(rec),
            serde_json::from_slice::<serde::de::IgnoredAny>(rec).is_ok(),
            "the syntax check and serde_json disagree"
        );
        checked_scan(&table, rec);
        let va = process_checked(&mut a, rec);
        let vb = process_checked(&mut b, rec);
        assert_eq!(va, vb, "two identical detectors disagree");
        process_checked(&mut c, rec);
        let vs = process_checked(&mut strict, rec);
        match (&vs, &va) {
            _ if relaxed => {}
            // A malformed record passed unread (or applied from the
            // fields the scanner read): from here on the two may see
            // different event times, so stop comparing.
            (Outcome::Error(_), Outcome::Unchanged) => relaxed = true,
            _ => assert_eq!(vs, va, "the byte prefilter changed a verdict"),
        }
    }
    assert_eq!(a.stats(), b.stats());
    let (x, y) = (a.stats(), strict.stats());
    if !relaxed {
        assert_eq!(
            (x.stage_matches, x.sequences_completed, x.pending),
            (y.stage_matches, y.sequences_completed, y.pending),
            "the byte prefilter changed what the engine saw"
        );
    }
    for d in [&mut a, &mut b, &mut c] {
        let r = d.flush();
        assert_eq!(r.pending, d.stats().pending);
    }
    pack.finish();
}

/// A table of a few paths of the sample's records (so that the scan both
/// reads and skips members).
fn scan_table() -> apt_netcon::format::event::FieldTable {
    let mut t = apt_netcon::format::event::FieldTable::new();
    for p in ["@timestamp", "event.category", "process.name", "process.args", "host.id", "destination.ip"] {
        t.intern(p);
    }
    t
}

/// The scan that checks the syntax as it goes: "valid" only where the
/// syntax check says so, "a tree" only where it says so too, a refusal only
/// of a record that is not valid JSON (then read as the plain scan reads
/// it), unsure only where the plain scan is.
fn checked_scan(table: &apt_netcon::format::event::FieldTable, rec: &[u8]) {
    use apt_netcon::format::event::Fields;
    let want = apt_netcon::format::syntax::check(rec);
    let plain = table.scan(rec, &mut Fields::default()).is_ok();
    match table.scan_checked(rec, &mut Fields::default()) {
        Ok(Some(got)) => {
            assert!(want.valid && plain, "the checked scan found valid JSON the syntax check refuses");
            assert!(!got.tree || want.tree, "the checked scan found a tree the syntax check is unsure of");
        }
        Ok(None) => assert!(plain && !want.valid, "the checked scan refused valid JSON"),
        Err(_) => assert!(!plain, "the checked scan unsure where the plain scan is sure"),
    }
}
