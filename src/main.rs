//! `apt-netcon`: filter newline-delimited JSON through the detector.

use apt_netcon::config::settings::Config;
use apt_netcon::config::rule::BUILTIN_NAMES;
use apt_netcon::Detector;
use std::io::{self, IsTerminal};
use std::process::ExitCode;

mod cli_filter;
use cli_filter as filter;

mod cli_pack;

mod serve;

const USAGE: &str = "\
usage: apt-netcon [--config FILE] [--rule NAME|FILE]... [--rules DIR]
                  [--skip-broken-rules] [--quiet] [--alerts-only] [--threads N] [FILE...]
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
                     detection-rules TOML file (.toml); given more than once,
                     the rules run as a pack
  --rules DIR        run every .toml and .eql rule of DIR as a pack: records
                     go on unchanged, each match follows as an alert record
                     (event.kind \"signal\")
  --skip-broken-rules  with a pack: run the rules that load, report the others
  --quiet            no counters or progress on standard error
  --print-rule       print the selected rule's query and exit
  --alerts-only      write only the alert records (annotated records and
                     standalone alerts), not the other records
  --threads N        N detectors on N threads, records split by the rule's
                     host key (its `sequence by` fields); the output is the
                     same as with one thread. Rules that cannot be split
                     exactly run on one thread (with a note). 0: one per core
  -h, --help         this text
  -V, --version      the version

exit status: 0 done, 1 an input or output error, 2 a bad option, config or rule";

struct Args {
    config: Option<String>,
    rule: Vec<String>,
    rules_dirs: Vec<String>,
    skip_broken: bool,
    quiet: bool,
    print_rule: bool,
    alerts_only: bool,
    threads: usize,
    files: Vec<String>,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut a = Args {
        config: None,
        rule: Vec::new(),
        rules_dirs: Vec::new(),
        skip_broken: false,
        quiet: false,
        print_rule: false,
        alerts_only: false,
        threads: 1,
        files: vec![],
    };
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
            "--rule" => a.rule.push(value("--rule")?),
            "--rules" => {
                if !a.rules_dirs.is_empty() {
                    return Err("--rules given twice: one directory (add single files with --rule)".into());
                }
                a.rules_dirs.push(value("--rules")?)
            }
            "--skip-broken-rules" => a.skip_broken = true,
            "--quiet" | "-q" => a.quiet = true,
            "--print-rule" => a.print_rule = true,
            "--alerts-only" => a.alerts_only = true,
            "--threads" | "-j" => {
                let v = value("--threads")?;
                a.threads = match v.parse::<usize>() {
                    Ok(0) => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
                    Ok(n) if n <= filter::MAX_THREADS => n,
                    _ => return Err(format!("--threads {v}: a number from 0 to {}", filter::MAX_THREADS)),
                };
            }
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

/// A rule pack (`--rules`, several `--rule`, or `rules`/`rules_dir` in the
/// config).
fn run_pack(config: &Config, args: &Args) -> ExitCode {
    let loaded = match config.load_rules() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("apt-netcon: {e}");
            return ExitCode::from(2);
        }
    };
    for (name, why) in &loaded.skipped {
        eprintln!("apt-netcon: skipped {name}: {why}");
    }
    if args.print_rule {
        for r in &loaded.rules {
            println!("// {} ({})\n{}\n", r.meta().name, r.meta().rule_id, r.query_text().trim_end());
        }
        return ExitCode::SUCCESS;
    }
    if args.threads > 1 && !args.quiet {
        eprintln!("apt-netcon: --threads {}: a pack runs on one thread", args.threads);
    }
    let files = if args.files.is_empty() { vec!["-".to_string()] } else { args.files.clone() };
    cli_pack::run(loaded.rules, config, &files, args.alerts_only, args.quiet)
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
    if args.rule.len() > 1 || !args.rules_dirs.is_empty() {
        config.rules.extend(args.rule.iter().cloned());
        for d in &args.rules_dirs {
            if let Err(e) = config.set_str("rules_dir", d) {
                eprintln!("apt-netcon: --rules {d}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if args.skip_broken {
        config.skip_broken_rules = true;
    }
    if config.is_pack() {
        return run_pack(&config, &args);
    }
    if let Some(r) = args.rule.first() {
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
    let det = match Detector::new(&config) {
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
    let opts = filter::Options {
        alerts_only: args.alerts_only,
        quiet: args.quiet,
        progress: !args.quiet && io::stderr().is_terminal(),
    };
    let mut threads = args.threads;
    if threads > 1 {
        if let Err(why) = apt_netcon::engine::footprint::Partitioner::new(det.rule(), &config, threads) {
            if !args.quiet {
                eprintln!("apt-netcon: --threads {threads}: running on one thread: {why}");
            }
            threads = 1;
        }
    }
    if threads > 1 {
        filter::run_threaded(det.rule().clone(), &config, threads, &files, &opts)
    } else {
        filter::run_serial(det, &config, &files, &opts)
    }
}
