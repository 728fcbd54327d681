//! The config the options choose, for the filter and the sidecar alike:
//! the `--config` file's (or the defaults), then `--rule` / `--rules` /
//! `--skip-broken-rules` on top. One `--rule` picks the rule (a built-in
//! name or a file); several, or any `--rules`, make a pack.

use apt_netcon::config::rule::BUILTIN_NAMES;
use apt_netcon::Config;

/// The config, or the message naming what is wrong (a usage error: exit
/// status 2).
pub fn config(path: Option<&str>, rules: &[String], rules_dirs: &[String], skip_broken: bool) -> Result<Config, String> {
    let mut cfg = match path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read config {path}: {e}"))?;
            Config::from_json(&text).map_err(|e| format!("{path}: {e}"))?
        }
        None => Config::default(),
    };
    if rules.len() > 1 || !rules_dirs.is_empty() {
        cfg.rules.extend(rules.iter().cloned());
        for d in rules_dirs {
            cfg.set_str("rules_dir", d).map_err(|e| format!("--rules {d}: {e}"))?;
        }
    }
    if skip_broken {
        cfg.skip_broken_rules = true;
    }
    if cfg.is_pack() {
        return Ok(cfg);
    }
    if let Some(r) = rules.first() {
        if BUILTIN_NAMES.contains(&r.as_str()) {
            cfg.rule = r.clone();
            cfg.rule_file = None;
        } else if std::path::Path::new(r).is_file() {
            cfg.rule_file = Some(r.clone());
        } else {
            return Err(format!("--rule {r}: neither a built-in rule ({}) nor a readable file", BUILTIN_NAMES.join(", ")));
        }
    }
    Ok(cfg)
}
