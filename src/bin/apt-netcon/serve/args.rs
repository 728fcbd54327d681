//! `apt-netcon serve`'s options (clap derive) and its help text; the
//! subcommand itself is declared in [`crate::args`].

use super::net::Addr;
use clap::error::ErrorKind;
use clap::{Args, CommandFactory};
use std::time::Duration;

pub(crate) const ABOUT: &str = "\
The Vector sidecar. Accepts newline-delimited JSON on ADDR (--listen) from a
Vector `socket` sink, filters every line as `apt-netcon` does (unchanged, or
with the alert fields), and sends the lines, each ending in a newline, to ADDR
(--forward), a Vector `socket` source. Counters go to standard error at exit.

ADDR is HOST:PORT, tcp:HOST:PORT ([v6 address]:PORT) or unix:/PATH.";

pub(crate) const AFTER_HELP: &str = "\
The config's keys: docs/configuration.md (stats_interval: counters
every interval); the Vector side: docs/vector.md.

Examples:
  apt-netcon serve --listen 127.0.0.1:9000 --forward 127.0.0.1:9001
  apt-netcon serve --listen unix:/run/apt-netcon.sock --forward tcp:[::1]:9001 \\
      --config apt-netcon.json --rules rules/ --skip-broken-rules

Exit status: 0 done (after a drain), 1 an I/O error (cannot listen) or an
interrupted drain, 2 a bad option, address, config or rule.";

#[derive(Args)]
pub struct ServeArgs {
    /// where Vector's socket sink connects
    #[arg(long, value_name = "ADDR", value_parser = Addr::parse)]
    pub(super) listen: Addr,

    #[arg(
        long,
        value_name = "ADDR",
        value_parser = Addr::parse,
        help = "where Vector's socket source listens (reconnects with\n\
                backoff, 100 ms doubling to 5 s)"
    )]
    pub(super) forward: Addr,

    /// JSON config (as for apt-netcon)
    #[arg(long, value_name = "FILE")]
    pub(super) config: Option<String>,

    #[arg(
        long = "rule",
        value_name = "NAME|FILE",
        help = "a built-in rule or a rule file (as for apt-netcon);\n\
                given more than once: a rule pack of them all"
    )]
    pub(super) rules: Vec<String>,

    #[arg(
        long = "rules",
        value_name = "DIR",
        help = "a rule pack: every .toml and .eql file in DIR (as for\n\
                apt-netcon); each record goes on unchanged, followed by\n\
                one alert record per rule it completes"
    )]
    pub(super) rules_dirs: Vec<String>,

    /// with a pack: run the rules that load, report the others
    #[arg(long)]
    pub(super) skip_broken_rules: bool,

    #[arg(
        long,
        value_name = "SECS",
        default_value = "10",
        value_parser = seconds,
        help = "on SIGTERM/SIGINT, how long clients may go on sending"
    )]
    pub(super) drain_timeout: Duration,

    /// output held for the forward side at most
    #[arg(long, value_name = "N", default_value = "4194304", value_parser = count)]
    pub(super) queue_bytes: usize,

    /// longer lines are cut into pieces
    #[arg(long, value_name = "N", default_value = "67108864", value_parser = count)]
    pub(super) max_line_bytes: usize,

    /// clients served at once
    #[arg(long, value_name = "N", default_value = "64", value_parser = count)]
    pub(super) max_connections: usize,
}

impl ServeArgs {
    /// What clap cannot check alone: a usage error, in clap's form.
    pub(super) fn check(&self) -> Result<(), clap::Error> {
        if self.listen == self.forward {
            let mut cmd = crate::args::Cli::command();
            cmd.build();
            let serve = cmd.find_subcommand_mut("serve").expect("the serve subcommand");
            return Err(serve.error(
                ErrorKind::ArgumentConflict,
                format!("--listen and --forward are the same address ({})", self.listen),
            ));
        }
        Ok(())
    }
}

/// `--queue-bytes`, `--max-line-bytes`, `--max-connections`.
fn count(v: &str) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("expected a positive whole number".into()),
    }
}

/// `--drain-timeout`.
fn seconds(v: &str) -> Result<Duration, String> {
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && (0.0..=86400.0).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => Err("expected seconds (0 to 86400)".into()),
    }
}
