//! `apt-netcon --rules DIR` (or several `--rule`): a rule pack over
//! newline-delimited JSON.
//!
//! Every record goes to standard output unchanged, followed by one alert
//! record per rule it completes (`event.kind: "signal"`, see
//! [`apt_netcon::engine::pack`]); with `--alerts-only`, only the alert
//! records.
//!
//! The reading thread cuts the input into blocks of whole lines (a
//! regular file's where they lie in the page cache, mapped 8 MiB at a
//! time; other input read as it comes; about 1 MiB at most, or one longer
//! line) and routes each line; the pack runs on a thread
//! of its own over each block, in input order; the writing thread writes
//! each line, then its alerts in rule order. With `--threads N` the pack's
//! host-local rules run in N packs, each taking the records of the hosts
//! whose `host.id` hashes to it, and the rules that cannot be split so run
//! in one more pack that takes the records they may need
//! ([`apt_netcon::engine::pack::split`]). The output is that of one thread
//! on a stream in time order (the caveats of docs/fleet.md aside: event
//! time and caps are per pack).

use crate::filter::report::{clear_progress_line, Run};
use crate::filter::{record_of, write_pieces, LongLine, Piece};
use apt_netcon::engine::pack::split::{host_local, HostRouter};
use apt_netcon::engine::pack::PackDetector;
use apt_netcon::{Config, RecordError, Rule};
use crate::filter::Bytes;
use std::io::{self, Read};
use std::process::ExitCode;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

/// Bytes of whole lines per block.
const BLOCK: usize = 1 << 20;
/// Bytes of a regular file mapped at a time: a few blocks (a window stays
/// mapped until its last block is written, and its pages count in the
/// process's resident memory meanwhile).
const MAP_WINDOW: usize = 8 * BLOCK;
/// A blank line's route: no pack takes it.
const BLANK: u8 = u8::MAX;

/// Buffers of blocks written out, to read the next blocks into (each
/// filled with bytes already, so not zeroed again).
type Pool = Arc<Mutex<Vec<Vec<u8>>>>;

/// A block of whole lines, and where each goes.
struct Block {
    /// The lines are `bytes[from..from + len]`.
    bytes: Bytes,
    from: usize,
    len: usize,
    pool: Pool,
    /// End of each line (its terminator included).
    ends: Vec<usize>,
    /// The host pack of each line, or [`BLANK`].
    routes: Vec<u8>,
    /// A piece of a line too long to hold ([`LongLine`]), routed as blank:
    /// `Some(last)`, `last` as [`Piece::last`].
    piece: Option<Option<bool>>,
    /// The input the lines come from (as messages name it), and how many
    /// of its lines came before this block's first.
    file: Arc<str>,
    line0: u64,
}

impl Drop for Block {
    fn drop(&mut self) {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        // (Not a piece of a long line: nothing reads into the pool while
        // one streams, so it would only fill up.)
        if let Bytes::Read(bytes) = &mut self.bytes {
            if pool.len() < 64 && self.piece.is_none() && (BLOCK..=4 * BLOCK).contains(&bytes.len()) {
                pool.push(std::mem::take(bytes));
            }
        }
    }
}

impl Block {
    fn data(&self) -> &[u8] {
        self.bytes.get(self.from, self.from + self.len)
    }

    fn line(&self, k: usize) -> &[u8] {
        let start = if k == 0 { 0 } else { self.ends[k - 1] };
        &self.data()[start..self.ends[k]]
    }
}

/// The results of a block (or, after the last, of the end of the stream).
#[derive(Default)]
struct Part {
    /// `(line, rule of the whole pack, alert record)`, in the order given.
    alerts: Vec<(u32, u32, Vec<u8>)>,
    /// Lines whose record a pack could not read, and that gave it no
    /// alert, with why.
    errors: Vec<(u32, RecordError)>,
    /// Lines whose record is larger than `max_record_bytes` (refused by
    /// every pack, read by none).
    too_large: Vec<u32>,
    /// Lines the rules that are not split may need (their index and stage
    /// tests passed on a host pack's read).
    gated: Vec<u32>,
    /// For each gated line, `(line, rule, stages)`: what passed there
    /// ([`PackDetector::gate_hits`]).
    hints: Vec<(u32, u32, u64)>,
}

/// The rules that may run split by host and those that may not (with
/// why), as indices into `rules`.
fn plan(rules: &[Rule]) -> (Vec<usize>, Vec<(usize, &'static str)>) {
    let mut local = Vec::new();
    let mut global = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        match host_local(r) {
            Ok(()) => local.push(i),
            Err(why) => global.push((i, why)),
        }
    }
    (local, global)
}

/// One pack's record `k` of `block` into `part` (its rules numbered as
/// in the whole pack by `numbers`).
fn one(pack: &mut PackDetector, numbers: &[u32], block: &Block, k: usize, part: &mut Part) {
    let (body, _) = record_of(block.line(k));
    let res = pack.process(body, false);
    let mut gave = false;
    while let Some(a) = pack.take_alert() {
        gave = true;
        part.alerts.push((k as u32, numbers[a.rule], a.bytes));
    }
    match res {
        Err(RecordError::TooLarge) => part.too_large.push(k as u32),
        Err(e) if !gave => part.errors.push((k as u32, e)),
        _ => {}
    }
}

/// The end of the stream for one pack: its last alerts.
fn finish(pack: &mut PackDetector, numbers: &[u32], part: &mut Part) {
    pack.finish();
    while let Some(a) = pack.take_alert() {
        part.alerts.push((0, numbers[a.rule], a.bytes));
    }
}

/// A host pack: the lines of every block routed to `route` (`gated`: with
/// the rules not split in one more pack, the lines they may need noted).
fn host_thread(pack: &mut PackDetector, numbers: &[u32], route: u8, gated: bool, input: Receiver<Arc<Block>>, output: SyncSender<Part>) {
    for block in input {
        let mut part = Part::default();
        for k in 0..block.routes.len() {
            if block.routes[k] == route {
                one(pack, numbers, &block, k, &mut part);
                if gated && pack.gate_hit() {
                    part.gated.push(k as u32);
                    part.hints.extend(pack.gate_hits().iter().map(|&(rule, stages)| (k as u32, rule, stages)));
                }
            }
        }
        if output.send(part).is_err() {
            return;
        }
    }
    let mut part = Part::default();
    finish(pack, numbers, &mut part);
    let _ = output.send(part);
}

/// Gathers the host packs' parts of each block and runs the pack of the
/// rules that are not split (if any) over the lines they may need, in
/// input order; returns it, and how many lines were gated.
///
/// A gated line whose hits are only later stages of plain sequences in
/// which nothing waits yet is passed by unread
/// ([`PackDetector::may_need`]): the pack would keep no candidate of it.
fn global_thread(
    mut pack: Option<(PackDetector, Vec<u32>)>,
    blocks: Receiver<Arc<Block>>,
    parts: Vec<Receiver<Part>>,
    output: SyncSender<Part>,
) -> (Option<PackDetector>, u64) {
    let mut gated_lines = 0u64;
    let gather = |all: &mut Part| -> bool {
        for p in &parts {
            let Ok(part) = p.recv() else { return false };
            all.alerts.extend(part.alerts);
            all.errors.extend(part.errors);
            all.too_large.extend(part.too_large);
            all.gated.extend(part.gated);
            all.hints.extend(part.hints);
        }
        true
    };
    for block in blocks {
        let mut all = Part::default();
        if !gather(&mut all) {
            return (pack.map(|p| p.0), gated_lines);
        }
        if let Some((pack, numbers)) = &mut pack {
            let mut gated = std::mem::take(&mut all.gated);
            gated.sort_unstable();
            gated_lines += gated.len() as u64;
            // Each line's hints come from the one host pack that read it.
            let mut hints = std::mem::take(&mut all.hints);
            hints.sort_by_key(|h| h.0);
            let mut h = 0;
            let mut mine: Vec<(u32, u64)> = Vec::new();
            for k in gated {
                while h < hints.len() && hints[h].0 < k {
                    h += 1;
                }
                mine.clear();
                while h < hints.len() && hints[h].0 == k {
                    mine.push((hints[h].1, hints[h].2));
                    h += 1;
                }
                if pack.may_need(&mine) {
                    one(pack, numbers, &block, k as usize, &mut all);
                }
            }
        }
        if output.send(all).is_err() {
            return (pack.map(|p| p.0), gated_lines);
        }
    }
    let mut all = Part::default();
    if gather(&mut all) {
        if let Some((pack, numbers)) = &mut pack {
            finish(pack, numbers, &mut all);
        }
        let _ = output.send(all);
    }
    (pack.map(|p| p.0), gated_lines)
}

/// What the writer counted.
#[derive(Default)]
struct Written {
    alerts: u64,
    /// Lines passed through unread because no rule that could match could
    /// read them.
    errors: u64,
    /// Lines passed through unread because they are larger than
    /// `max_record_bytes`.
    too_large: u64,
    /// The lines passed through unread, by why (in the order first met).
    by_error: Vec<(RecordError, u64)>,
    by_rule: Vec<u64>,
    failed: Option<io::Error>,
}

/// Every block in input order, each line followed by its alerts (those of
/// every pack, in rule order); then the packs' end-of-stream alerts. The
/// first lines passed through unread and the progress are reported by
/// `run`, as the one-rule filter reports them.
fn writer(blocks: Receiver<Arc<Block>>, parts: Receiver<Part>, rules: usize, alerts_only: bool, mut run: Run) -> Written {
    let mut w = Written { by_rule: vec![0; rules], ..Written::default() };
    let mut records = 0u64;
    // A line passed through unread: counted by why, and reported.
    let unread = |w: &mut Written, run: &mut Run, file: &str, line: u64, e: RecordError| {
        if e == RecordError::TooLarge {
            w.too_large += 1;
        } else {
            w.errors += 1;
        }
        match w.by_error.iter_mut().find(|x| x.0 == e) {
            Some(x) => x.1 += 1,
            None => w.by_error.push((e, 1)),
        }
        run.bad_record(file, line, e);
    };
    // Each block's output goes out at once, from where its bytes lie (the
    // block's lines and the alert records): no copy into a buffer.
    let mut out = match crate::filter::stdout_file() {
        Ok(f) => f,
        Err(e) => {
            w.failed = Some(e);
            return w;
        }
    };
    let mut merged: Vec<(u32, u32, Vec<u8>)> = Vec::new();
    let mut bad: Vec<(u32, RecordError)> = Vec::new();
    // A block's part: its alerts, and its lines passed through unread (a
    // line counts as unreadable when a pack could not read it and no pack
    // gave it an alert, as one pack counts it; a line several packs could
    // not read, as the first of them says), in line order.
    let take = |merged: &mut Vec<(u32, u32, Vec<u8>)>, bad: &mut Vec<(u32, RecordError)>| -> bool {
        let Ok(part) = parts.recv() else { return false };
        *merged = part.alerts;
        // One pack writes a record's alerts in rule order; a rule's own
        // alerts keep their order (the sort is stable).
        merged.sort_by_key(|&(line, rule, _)| (line, rule));
        bad.clear();
        bad.extend(part.errors.into_iter().filter(|&(l, _)| merged.binary_search_by_key(&l, |m| m.0).is_err()));
        bad.extend(part.too_large.into_iter().map(|l| (l, RecordError::TooLarge)));
        bad.sort_by_key(|&(l, _)| l);
        bad.dedup_by_key(|&mut (l, _)| l);
        true
    };
    while let Ok(block) = blocks.recv() {
        if !take(&mut merged, &mut bad) {
            break;
        }
        for &(l, e) in &bad {
            unread(&mut w, &mut run, &block.file, block.line0 + u64::from(l) + 1, e);
        }
        let mut a = merged.iter().peekable();
        let data = block.data();
        let mut pieces: Vec<&[u8]> = Vec::with_capacity(2 * merged.len() + 1);
        let mut from = 0usize;
        for k in 0..block.routes.len() {
            let mut here = a.peek().is_some_and(|m| m.0 as usize == k);
            if !here {
                continue;
            }
            let end = block.ends[k];
            if !alerts_only {
                pieces.push(&data[from..end]);
            }
            from = end;
            while here {
                let (_, rule, bytes) = a.next().expect("peeked");
                w.alerts += 1;
                w.by_rule[*rule as usize] += 1;
                pieces.push(bytes);
                pieces.push(b"\n");
                here = a.peek().is_some_and(|m| m.0 as usize == k);
            }
        }
        if !alerts_only {
            pieces.push(&data[from..]);
        }
        records += block.routes.iter().filter(|&&r| r != BLANK).count() as u64;
        if block.piece == Some(Some(false)) {
            // The end of a line too long for any rule to read.
            records += 1;
            unread(&mut w, &mut run, &block.file, block.line0 + 1, RecordError::TooLarge);
        }
        if let Err(e) = write_pieces(&mut out, &pieces) {
            w.failed = Some(e);
            run.end_progress();
            return w;
        }
        run.bytes += block.len as u64;
        run.show_progress(&block.file, records, w.alerts);
    }
    run.end_progress();
    // The end of the stream: each pack's last part.
    if take(&mut merged, &mut bad) {
        merged.sort_by_key(|&(_, rule, _)| rule);
        let mut pieces: Vec<&[u8]> = Vec::with_capacity(2 * merged.len());
        for (_, rule, bytes) in &merged {
            w.alerts += 1;
            w.by_rule[*rule as usize] += 1;
            pieces.push(bytes);
            pieces.push(b"\n");
        }
        if let Err(e) = write_pieces(&mut out, &pieces) {
            w.failed = Some(e);
        }
    }
    w
}

/// What the reading thread did.
struct ReadAll {
    records: u64,
    /// An input file could not be opened (said on standard error; the
    /// others were read).
    unopened: bool,
    /// A read failed (the run stops there).
    failed: Option<String>,
}

/// Reads `files` into blocks of whole lines, routes every line and hands
/// each block to every pack and to the writer.
fn read_all(
    files: &[String],
    n: usize,
    to_packs: &[SyncSender<Arc<Block>>],
    to_writer: &SyncSender<Arc<Block>>,
    router: &mut HostRouter,
    long: LongLine,
    progress: bool,
) -> ReadAll {
    let mut done = ReadAll { records: 0, unopened: false, failed: None };
    let pool: Pool = Arc::default();
    let fresh = |pool: &Pool| pool.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_else(|| vec![0; BLOCK]);
    // To every pack and the writer: false when one has stopped.
    let deliver = |block: Block| -> bool {
        let block = Arc::new(block);
        to_packs.iter().all(|t| t.send(block.clone()).is_ok()) && to_writer.send(block).is_ok()
    };
    // (`file`: the input being read, `lines`: how many of its lines were
    // sent.)
    let send = |bytes: Bytes, from: usize, len: usize, records: &mut u64, router: &mut HostRouter, file: &Arc<str>, lines: &mut u64| -> bool {
        let mut ends = Vec::with_capacity(len / 512 + 1);
        let mut routes = Vec::with_capacity(len / 512 + 1);
        let mut start = 0usize;
        let data = bytes.get(from, from + len);
        while start < len {
            let end = memchr::memchr(b'\n', &data[start..len]).map_or(len, |i| start + i + 1);
            let (body, blank) = record_of(&data[start..end]);
            if blank {
                routes.push(BLANK);
            } else {
                *records += 1;
                routes.push(if n > 1 { router.route(body) as u8 } else { 0 });
            }
            ends.push(end);
            start = end;
        }
        let line0 = *lines;
        *lines += ends.len() as u64;
        deliver(Block { bytes, from, len, pool: pool.clone(), ends, routes, piece: None, file: file.clone(), line0 })
    };
    // A piece of a line too long to hold: written, read by no pack.
    let send_piece = |piece: Piece, records: &mut u64, file: &Arc<str>, lines: &mut u64| -> bool {
        *records += u64::from(piece.last == Some(false));
        let line0 = *lines;
        *lines += u64::from(piece.last.is_some());
        let len = piece.bytes.len();
        deliver(Block { bytes: Bytes::Read(piece.bytes), from: 0, len, pool: pool.clone(), ends: vec![len], routes: vec![BLANK], piece: Some(piece.last), file: file.clone(), line0 })
    };
    for f in files {
        let file: Arc<str> = Arc::from(crate::filter::display_name(f));
        let mut lines = 0u64;
        let mut input = match crate::filter::open(f) {
            Ok(i) => i,
            Err(e) => {
                // (Over the writer's progress line, when one is shown.)
                clear_progress_line(progress);
                say!("apt-netcon: cannot open {f}: {e}");
                done.unopened = true;
                continue;
            }
        };
        // A regular file: its whole lines where they lie in the page cache,
        // mapped a window at a time (no copy into a buffer); what follows its
        // last newline, and whatever it grew by meanwhile, is read below.
        // (Not standard input, even from a file: it is read from where it is.)
        if f != "-" {
            let mapped = crate::filter::map_regular(&mut input, (MAP_WINDOW, long.most_mapped()), BLOCK, |map, from, to| {
                send(Bytes::Mapped(map.clone()), from, to - from, &mut done.records, router, &file, &mut lines)
            });
            match mapped {
                Ok(true) => {}
                Ok(false) => return done,
                Err(e) => {
                    done.failed = Some(format!("{f}: {e}"));
                    return done;
                }
            }
        }
        // `buf[..have]`: the start of a line read, not yet ended.
        let mut buf = fresh(&pool);
        let mut have = 0usize;
        let mut long = long;
        loop {
            // A line longer than the buffer: room for more, or, longer than
            // any record, on in pieces from here.
            if have == buf.len() {
                if let Some(piece) = long.full(&mut buf, &mut have, || fresh(&pool)) {
                    if !send_piece(piece, &mut done.records, &file, &mut lines) {
                        return done;
                    }
                }
            }
            let got = match input.read(&mut buf[have..]) {
                Ok(g) => g,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    done.failed = Some(format!("{f}: {e}"));
                    return done;
                }
            };
            let mut read_from = have;
            have += got;
            if let Some(piece) = long.after_read(&mut buf, &mut have, got == 0) {
                if !send_piece(piece, &mut done.records, &file, &mut lines) {
                    return done;
                }
                read_from = 0;
                if long.active() {
                    continue;
                }
            }
            if got == 0 {
                // The end of the file: what follows its last newline is
                // its last line.
                if have > 0 && !send(Bytes::Read(buf), 0, have, &mut done.records, router, &file, &mut lines) {
                    return done;
                }
                break;
            }
            // Every whole line read goes now (from a pipe, as it comes).
            if let Some(i) = memchr::memrchr(b'\n', &buf[read_from..have]) {
                let end = read_from + i + 1;
                let mut next = fresh(&pool);
                if next.len() < have - end {
                    next.resize(have - end, 0);
                }
                next[..have - end].copy_from_slice(&buf[end..have]);
                if !send(Bytes::Read(buf), 0, end, &mut done.records, router, &file, &mut lines) {
                    return done;
                }
                buf = next;
                have -= end;
            }
        }
    }
    done
}

/// Run `rules` over `files`: on one pack (`n` 1), or on `n` host packs
/// and, for the rules that cannot be split, one more (from [`plan`]).
pub fn run(rules: Vec<Rule>, config: &Config, files: &[String], n: usize, alerts_only: bool, quiet: bool) -> ExitCode {
    use std::io::IsTerminal as _;
    let started = Instant::now();
    let count = rules.len();
    let (local, global) = if n > 1 { plan(&rules) } else { ((0..count).collect(), Vec::new()) };
    if !quiet && n > 1 {
        say!(
            "apt-netcon: --threads {n}: {} of {} rules split by host.id over {n} packs; {} in one more pack, on the records their stages may match",
            local.len(),
            rules.len(),
            global.len()
        );
        for &(i, why) in &global {
            say!("apt-netcon:   {} ({}): {why}", rules[i].meta().name, rules[i].meta().rule_id);
        }
    }
    let numbers = |v: Vec<usize>| -> Vec<u32> { v.into_iter().map(|i| i as u32).collect() };
    let host_numbers = numbers(local.clone());
    let global_numbers = numbers(global.iter().map(|&(i, _)| i).collect());
    let global_rules: Vec<Rule> = global_numbers.iter().map(|&i| rules[i as usize].clone()).collect();
    let mut to_packs = Vec::new();
    let mut from_packs = Vec::new();
    let mut handles = Vec::new();
    // Each pack is built on its thread, which then drops its sender: the
    // run starts when all are built.
    let (built_tx, built) = std::sync::mpsc::channel::<()>();
    for w in 0..n {
        let (tx, rx) = sync_channel::<Arc<Block>>(4);
        let (ptx, prx) = sync_channel::<Part>(8);
        let subset: Vec<Rule> = host_numbers.iter().map(|&i| rules[i as usize].clone()).collect();
        let (config, numbers, gate, built_tx) = (config.clone(), host_numbers.clone(), global_rules.clone(), built_tx.clone());
        to_packs.push(tx);
        from_packs.push(prx);
        handles.push(thread::spawn(move || {
            let mut pack = PackDetector::with_gate(subset, &gate, &config);
            drop(built_tx);
            let gated = !gate.is_empty();
            host_thread(&mut pack, &numbers, w as u8, gated, rx, ptx);
            pack
        }));
    }
    // One pack and nothing else: its parts go straight to the writer.
    // Otherwise one more thread gathers the host packs' parts of each block
    // and runs the rules not split.
    let (orx, global_pack) = if n == 1 && global_rules.is_empty() {
        drop(built_tx);
        (from_packs.pop().expect("one pack"), None)
    } else {
        let (gtx, grx) = sync_channel::<Arc<Block>>(16);
        let (otx, orx) = sync_channel::<Part>(8);
        let config = config.clone();
        to_packs.push(gtx);
        let handle = thread::spawn(move || {
            let pack = (!global_rules.is_empty()).then(|| (PackDetector::new(global_rules, &config), global_numbers));
            drop(built_tx);
            global_thread(pack, grx, from_packs, otx)
        });
        (orx, Some(handle))
    };
    // Every sender gone: every pack built (or its thread ended).
    while built.recv().is_ok() {}
    if !quiet {
        say!("apt-netcon: a pack of {count} rules, indexed in {:.2?}", started.elapsed());
    }
    let (btx, brx) = sync_channel::<Arc<Block>>(16);
    let progress = !quiet && io::stderr().is_terminal();
    let run = Run::quiet_or_not(quiet, progress);
    let written = thread::spawn(move || writer(brx, orx, count, alerts_only, run));
    // Pipes on standard input and output: 1 MiB, so that a block goes
    // through in a few system calls.
    crate::filter::pipe_size::grow(&io::stdin());
    crate::filter::pipe_size::grow(&io::stdout());
    let mut router = HostRouter::new(n);
    let read = read_all(files, n, &to_packs, &btx, &mut router, LongLine::new(config, BLOCK), progress);
    drop(to_packs);
    drop(btx);
    let mut packs: Vec<PackDetector> = handles.into_iter().map(|h| h.join().expect("a pack thread panicked")).collect();
    let mut gated = 0;
    if let Some(g) = global_pack {
        let (pack, lines) = g.join().expect("the pack thread of the rules not split panicked");
        packs.extend(pack);
        gated = lines;
    }
    let written = written.join().expect("the writing thread panicked");
    if let Some(e) = &written.failed {
        say!("apt-netcon: writing output: {e}");
        return ExitCode::from(1);
    }
    if let Some(e) = &read.failed {
        say!("apt-netcon: {e}");
        return ExitCode::from(1);
    }
    let records = read.records;
    if !quiet {
        let tested: u64 = packs.iter().map(|p| p.work().1).sum();
        say!(
            "apt-netcon: {records} records in {:.2} s, {} alerts, {} passed through unread ({} larger than max_record_bytes, {} unreadable by a rule that could match); {:.1} rules tested per record",
            started.elapsed().as_secs_f64(),
            written.alerts,
            written.errors + written.too_large,
            written.too_large,
            written.errors,
            tested as f64 / records.max(1) as f64
        );
        let unread = written.errors + written.too_large;
        if unread > crate::filter::REPORT_FIRST_ERRORS {
            say!("apt-netcon: {} more bad records not shown", unread - crate::filter::REPORT_FIRST_ERRORS);
        }
        if unread > 0 {
            let kinds: Vec<String> = written.by_error.iter().map(|(e, k)| format!("{}={k}", e.counter())).collect();
            say!("apt-netcon: passed through unread: {}", kinds.join(" "));
        }
        if let (Some(g), false) = (packs.get(n), global.is_empty()) {
            let read = g.work().0;
            let share = |k: u64| 100.0 * k as f64 / records.max(1) as f64;
            say!(
                "apt-netcon: the pack of the {} rules not split: {gated} records ({:.1} %) passed their index and stage tests on a host pack's read; it read {read} ({:.1} %), those that could start or extend a sequence (or that could not be read)",
                global.len(),
                share(gated),
                share(read)
            );
        }
        if router.multi_valued() > 0 {
            say!(
                "apt-netcon: {} records held several host.id values and went to the pack of the smallest only",
                router.multi_valued()
            );
        }
        let mut pending = 0;
        let mut evicted = 0;
        let mut bytes = 0;
        let mut by_rule = vec![0u64; rules.len()];
        for (p, pack) in packs.iter().enumerate() {
            let s = pack.summed_stats(Default::default());
            pending += s.pending;
            evicted += s.evicted_by_cap + s.evicted_by_host_cap + s.evicted_by_bytes;
            bytes += pack.state_bytes();
            let numbers: Vec<usize> = if p < n { local.clone() } else { global.iter().map(|&(i, _)| i).collect() };
            for (j, &i) in numbers.iter().enumerate() {
                by_rule[i] += pack.stats(j).pending;
            }
        }
        say!(
            "apt-netcon: state at the end: {pending} partial sequences (about {:.1} MB), {evicted} evicted by the caps",
            bytes as f64 / 1e6
        );
        for (i, r) in rules.iter().enumerate() {
            let a = written.by_rule[i];
            if a > 0 || by_rule[i] > 1000 {
                say!("apt-netcon:   {} ({}): {a} alerts, {} pending", r.meta().rule_id, r.meta().name, by_rule[i]);
            }
        }
    }
    // The process ends with this run: its memory goes back to the system
    // whole. Freed one allocation at a time, every rule's tables and state
    // cost a few per cent of a short run.
    std::mem::forget(packs);
    std::mem::forget(rules);
    if read.unopened {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
