//! `apt-netcon`: filter newline-delimited JSON through the detector.
//!
//! The options are in [`args`] (clap); the record loop in [`filter`], a rule
//! pack's in [`pack`]; the Vector sidecar (`apt-netcon serve`) in [`serve`].

use apt_netcon::config::settings::Config;
use apt_netcon::Detector;
use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

/// `eprintln!` that never panics: standard error may be a closed pipe
/// (`2>&1 | head -1`), and a message that cannot be written is dropped
/// rather than ending the run.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `eprint!` that never panics (see [`say!`]).
macro_rules! say_part {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

/// `println!` that never panics on a closed standard output; the result
/// says whether it was written.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)
    }};
}

mod args;
mod choose;
mod filter;
mod pack;
mod serve;

use args::{Cli, Command, FilterArgs};
use clap::{CommandFactory, Parser};

/// A rule pack (`--rules`, several `--rule`, or `rules`/`rules_dir` in the
/// config).
fn run_pack(config: &Config, args: &FilterArgs) -> ExitCode {
    let loaded = match config.load_rules() {
        Ok(l) => l,
        Err(e) => {
            say!("apt-netcon: {e}");
            return ExitCode::from(2);
        }
    };
    for (name, why) in &loaded.skipped {
        say!("apt-netcon: skipped {name}: {why}");
    }
    if args.print_rule {
        for r in &loaded.rules {
            if out!("// {} ({})\n{}\n", r.meta().name, r.meta().rule_id, r.query_text().trim_end()).is_err() {
                return ExitCode::from(1);
            }
        }
        return ExitCode::SUCCESS;
    }
    let files = if args.files.is_empty() { vec!["-".to_string()] } else { args.files.clone() };
    let mut threads = args.threads;
    if threads > 1 {
        let why = if config.max_lateness_ms > 0 {
            Some("max_lateness is above 0 (held events are released by every host's time)")
        } else if !apt_netcon::engine::pack::split::host_key_as_ecs(&config.types()) {
            Some("field_types maps host.id otherwise than ECS (an alias, a null_value), which the split by host.id would not follow")
        } else if !loaded.rules.iter().any(|r| apt_netcon::engine::pack::split::host_local(r).is_ok()) {
            Some("no rule of the pack can be split by host.id")
        } else {
            None
        };
        if let Some(why) = why {
            if !args.quiet {
                say!("apt-netcon: --threads {threads}: running on one thread: {why}");
            }
            threads = 1;
        }
    }
    pack::run(loaded.rules, config, &files, threads, args.alerts_only, args.quiet)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        // `apt-netcon serve …`: the Vector sidecar (serve/).
        Some(Command::Serve(opts)) => serve::main(opts),
        Some(Command::Completions { shell }) => {
            // Written here, not by clap_complete (which panics on a write error).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "apt-netcon", &mut script);
            match io::stdout().write_all(&script) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    say!("apt-netcon: standard output: {e}");
                    ExitCode::from(1)
                }
            }
        }
        None => run(cli.filter),
    }
}

/// `apt-netcon [OPTIONS] [FILE]...`: the filter.
fn run(args: FilterArgs) -> ExitCode {
    let config = match choose::config(args.config.as_deref(), &args.rule, args.rules_dir.as_slice(), args.skip_broken_rules) {
        Ok(c) => c,
        Err(e) => {
            say!("apt-netcon: {e}");
            return ExitCode::from(2);
        }
    };
    if config.is_pack() {
        return run_pack(&config, &args);
    }
    let det = match Detector::new(&config) {
        Ok(d) => d,
        Err(e) => {
            say!("apt-netcon: {e}");
            return ExitCode::from(2);
        }
    };
    if args.print_rule {
        return match out!("{}", det.rule().query_text().trim_end()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::from(1),
        };
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
                say!("apt-netcon: --threads {threads}: running on one thread: {why}");
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
