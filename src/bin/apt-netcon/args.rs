//! The command line (clap derive): `apt-netcon [OPTIONS] [FILE]...`, the
//! sidecar `apt-netcon serve` ([`crate::serve::ServeArgs`]) and
//! `apt-netcon completions SHELL`.
//!
//! Help and usage errors are clap's: a usage error (an unknown option, a
//! missing or bad value) is reported on standard error with exit status 2,
//! as a bad config or rule is.

use crate::filter::MAX_THREADS;
use crate::serve::{self, ServeArgs};
use clap::{Args, Parser, Subcommand};

const ABOUT: &str = "\
Filters newline-delimited JSON through the detector.

Reads newline-delimited JSON events (Elastic Defend) from the FILEs, or from
standard input when none is given (or for '-'), and writes every record to
standard output in input order: unchanged, except the network events that
complete the rule's sequence, which gain alert fields. Counters go to standard
error at the end.";

const AFTER_HELP: &str = "\
The config's keys: docs/configuration.md.

Examples:
  apt-netcon events.ndjson > annotated.ndjson
  journal-export | apt-netcon --alerts-only -
  apt-netcon --rule apt_netcon_v11 --config apt-netcon.json events.ndjson
  apt-netcon --rules rules/ --skip-broken-rules --alerts-only events.ndjson
  apt-netcon --threads 0 --quiet big.ndjson > out.ndjson
  apt-netcon serve --listen 127.0.0.1:9000 --forward 127.0.0.1:9001
  apt-netcon completions bash > /etc/bash_completion.d/apt-netcon

Exit status: 0 done, 1 an input or output error, 2 a bad option, config or rule.";

#[derive(Parser)]
#[command(
    name = "apt-netcon",
    version = apt_netcon::VERSION,
    about = ABOUT,
    after_help = AFTER_HELP,
    // `apt-netcon serve` and `apt-netcon completions` only as the first
    // word: after an option or a file, `serve` is a file name.
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Subcommand)]
pub enum Command {
    /// The Vector sidecar (see 'apt-netcon serve --help')
    #[command(
        before_help = serve::ABOUT,
        after_help = serve::AFTER_HELP,
        // Its help opens with the description (before_help), not this line.
        help_template = "{before-help}{usage-heading} {usage}\n\n{all-args}{after-help}"
    )]
    Serve(ServeArgs),
    /// Prints a shell completion script to standard output
    Completions {
        /// bash, elvish, fish, powershell or zsh
        #[arg(value_enum, value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
}

/// The options of the filter (no subcommand).
#[derive(Args)]
pub struct FilterArgs {
    /// JSON config (keys: docs/configuration.md)
    #[arg(long, value_name = "FILE")]
    pub config: Option<String>,

    #[arg(
        long,
        value_name = "NAME|FILE",
        help = "a built-in rule (apt_netcon_v5 = default, apt_netcon_v11)\n\
                or a file holding an EQL query (.eql) or an Elastic\n\
                detection-rules TOML file (.toml); given more than once,\n\
                the rules run as a pack"
    )]
    pub rule: Vec<String>,

    #[arg(
        long = "rules",
        value_name = "DIR",
        help = "run every .toml and .eql rule of DIR as a pack: records\n\
                go on unchanged, each match follows as an alert record\n\
                (event.kind \"signal\"); one DIR (add single files with --rule)"
    )]
    pub rules_dir: Option<String>,

    /// with a pack: run the rules that load, report the others
    #[arg(long)]
    pub skip_broken_rules: bool,

    /// no counters or progress on standard error
    #[arg(short, long)]
    pub quiet: bool,

    /// print the selected rule's query and exit
    #[arg(long)]
    pub print_rule: bool,

    #[arg(
        long,
        help = "write only the alert records (annotated records and\n\
                standalone alerts), not the other records"
    )]
    pub alerts_only: bool,

    #[arg(
        short = 'j',
        long,
        value_name = "N",
        default_value = "1",
        value_parser = threads,
        help = "N detectors on N threads, records split by the rule's\n\
                host key (its `sequence by` fields); the output is the\n\
                same as with one thread. Rules that cannot be split\n\
                exactly run on one thread (with a note). A rule pack is\n\
                split by host.id; its rules that cannot be split run\n\
                in one more pack. 0: one per core (at most 64)"
    )]
    pub threads: usize,

    /// newline-delimited JSON to read ('-' or none: standard input)
    #[arg(value_name = "FILE")]
    pub files: Vec<String>,
}

/// `--threads`: 0 is one per core.
fn threads(v: &str) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(0) => Ok(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(MAX_THREADS)),
        Ok(n) if n <= MAX_THREADS => Ok(n),
        _ => Err(format!("a number from 0 to {MAX_THREADS}")),
    }
}
