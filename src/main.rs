//! `apt-netcon`: filter newline-delimited JSON through the detector.

use apt_netcon::config::Config;
use apt_netcon::rule::BUILTIN_NAMES;
use apt_netcon::{Detector, Verdict};
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

mod serve;

const USAGE: &str = "\
usage: apt-netcon [--config FILE] [--rule NAME|FILE] [--quiet] [FILE...]
       apt-netcon serve --listen ADDR --forward ADDR [options]   (sidecar; serve --help)

Reads newline-delimited JSON events (Elastic Defend) from the FILEs, or from
standard input when none is given (or for '-'), and writes every record to
standard output in input order: unchanged, except the network events that
complete the rule's sequence, which gain alert fields. Counters go to standard
error at the end.

options:
  --config FILE      JSON config (keys: see README, 'Configuration')
  --rule NAME|FILE   a built-in rule (apt_netcon_v5 = default, apt_netcon_v11)
                     or a file holding an EQL query (.eql) or an Elastic
                     detection-rules TOML file (.toml)
  --quiet            no counters or progress on standard error
  --print-rule       print the selected rule's query and exit
  -h, --help         this text
  -V, --version      the version

exit status: 0 done, 1 an input or output error, 2 a bad option, config or rule";

/// How many bad records are reported by line number.
const REPORT_FIRST_ERRORS: u64 = 5;

struct Args {
    config: Option<String>,
    rule: Option<String>,
    quiet: bool,
    print_rule: bool,
    files: Vec<String>,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut a = Args { config: None, rule: None, quiet: false, print_rule: false, files: vec![] };
    let mut it = std::env::args().skip(1);
    let mut only_files = false;
    while let Some(arg) = it.next() {
        if only_files || arg == "-" || !arg.starts_with('-') {
            a.files.push(arg);
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline.clone().or_else(|| it.next()).ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--" => only_files = true,
            "--config" => a.config = Some(value("--config")?),
            "--rule" => a.rule = Some(value("--rule")?),
            "--quiet" | "-q" => a.quiet = true,
            "--print-rule" => a.print_rule = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            "-V" | "--version" => {
                println!("apt-netcon {}", apt_netcon::VERSION);
                return Ok(None);
            }
            _ => return Err(format!("unknown option '{arg}'")),
        }
    }
    Ok(Some(a))
}

fn main() -> ExitCode {
    // `apt-netcon serve …`: the Vector sidecar (src/serve.rs).
    if std::env::args().nth(1).as_deref() == Some("serve") {
        return serve::main(std::env::args().skip(2).collect());
    }
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("apt-netcon: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut config = match &args.config {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => match Config::from_json(&text) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("apt-netcon: {path}: {e}");
                    return ExitCode::from(2);
                }
            },
            Err(e) => {
                eprintln!("apt-netcon: cannot read config {path}: {e}");
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    if let Some(r) = &args.rule {
        if BUILTIN_NAMES.contains(&r.as_str()) {
            config.rule = r.clone();
            config.rule_file = None;
        } else if std::path::Path::new(r).is_file() {
            config.rule_file = Some(r.clone());
        } else {
            eprintln!(
                "apt-netcon: --rule {r}: neither a built-in rule ({}) nor a readable file",
                BUILTIN_NAMES.join(", ")
            );
            return ExitCode::from(2);
        }
    }
    let mut det = match Detector::new(&config) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("apt-netcon: {e}");
            return ExitCode::from(2);
        }
    };
    if args.print_rule {
        println!("{}", det.rule().query_text().trim_end());
        return ExitCode::SUCCESS;
    }
    let files = if args.files.is_empty() { vec!["-".to_string()] } else { args.files.clone() };
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut run = Run {
        progress: !args.quiet && io::stderr().is_terminal(),
        quiet: args.quiet,
        started: Instant::now(),
        last_progress: Instant::now(),
        bytes: 0,
        bad: 0,
        empty: 0,
    };
    let mut status = ExitCode::SUCCESS;
    for f in &files {
        let input: Box<dyn Read> = if f == "-" {
            Box::new(io::stdin())
        } else {
            match std::fs::File::open(f) {
                Ok(file) => Box::new(file),
                Err(e) => {
                    eprintln!("apt-netcon: cannot open {f}: {e}");
                    status = ExitCode::from(1);
                    continue;
                }
            }
        };
        let name = if f == "-" { "<stdin>" } else { f.as_str() };
        if let Err(e) = run.filter(&mut det, name, BufReader::with_capacity(1 << 16, input), &mut out) {
            eprintln!("apt-netcon: {name}: {e}");
            return ExitCode::from(1);
        }
    }
    // End of stream: events held back for max_lateness are released now;
    // their alerts follow the last record.
    det.finish();
    if let Err(e) = write_alerts(&mut det, &mut out).and_then(|_| out.flush()) {
        eprintln!("apt-netcon: writing output: {e}");
        return ExitCode::from(1);
    }
    drop(out);
    det.flush();
    if !args.quiet {
        run.report(&det);
    }
    status
}

/// Write the standalone alert records waiting, one JSON line each.
fn write_alerts(det: &mut Detector, out: &mut impl Write) -> io::Result<()> {
    let mut lines = Vec::new();
    det.take_json_alerts(&mut lines);
    out.write_all(&lines)
}

struct Run {
    progress: bool,
    quiet: bool,
    started: Instant,
    last_progress: Instant,
    bytes: u64,
    bad: u64,
    empty: u64,
}

impl Run {
    fn filter(&mut self, det: &mut Detector, name: &str, mut input: impl BufRead, out: &mut impl Write) -> io::Result<()> {
        let mut line = Vec::with_capacity(4096);
        let mut lineno = 0u64;
        loop {
            line.clear();
            if input.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            lineno += 1;
            self.bytes += line.len() as u64;
            let mut end = line.len();
            if line[end - 1] == b'\n' {
                end -= 1;
                if end > 0 && line[end - 1] == b'\r' {
                    end -= 1;
                }
            }
            let record = &line[..end];
            if record.iter().all(|b| b.is_ascii_whitespace()) {
                self.empty += 1;
                out.write_all(&line)?;
                continue;
            }
            match det.process(record) {
                Ok(Verdict::Unchanged) => out.write_all(&line)?,
                Ok(Verdict::Annotated(bytes)) => {
                    out.write_all(bytes)?;
                    out.write_all(&line[end..])?;
                }
                Err(e) => {
                    self.bad += 1;
                    if self.bad <= REPORT_FIRST_ERRORS && !self.quiet {
                        eprintln!("apt-netcon: {name}:{lineno}: {e} (passed through unchanged)");
                    }
                    out.write_all(&line)?;
                }
            }
            // Standalone alerts (max_lateness > 0) go right after the record
            // whose arrival released them: in stream position.
            if det.queued_alerts() > 0 {
                write_alerts(det, out)?;
            }
            if self.progress && lineno % 4096 == 0 && self.last_progress.elapsed() >= Duration::from_secs(1) {
                self.last_progress = Instant::now();
                let s = det.stats();
                let secs = self.started.elapsed().as_secs_f64();
                eprint!(
                    "\rapt-netcon: {name}: {} records, {:.1} MB, {:.0} records/s, {} alerts   ",
                    s.records,
                    self.bytes as f64 / 1e6,
                    s.records as f64 / secs,
                    s.annotated
                );
            }
        }
        if self.progress {
            eprint!("\r{:79}\r", "");
        }
        Ok(())
    }

    fn report(&self, det: &Detector) {
        let s = det.stats();
        let secs = self.started.elapsed().as_secs_f64();
        eprintln!(
            "apt-netcon: {} records ({} empty lines) in {:.2} s, {} alerts, {} passed through unread (errors)",
            s.records,
            self.empty,
            secs,
            s.annotated + s.standalone_alerts,
            s.errors()
        );
        if self.bad > REPORT_FIRST_ERRORS {
            eprintln!("apt-netcon: {} more bad records not shown", self.bad - REPORT_FIRST_ERRORS);
        }
        let line: Vec<String> = s.fields().iter().map(|(k, v)| format!("{k}={v}")).collect();
        eprintln!("apt-netcon: {}", line.join(" "));
        let by_item = det.exception_counts();
        if !by_item.is_empty() {
            let items = apt_netcon::exceptions::format_counts(&by_item);
            eprintln!("apt-netcon: excluded={} by exception item: {items}", s.excluded);
        }
    }
}
