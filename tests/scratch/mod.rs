//! A test process's scratch directory for the files it hands the CLI:
//! `<CARGO_TARGET_TMPDIR>/scratch/<pid>-<name>`, made on first use.
//!
//! A test binary has no hook at its end, so the directories of test
//! processes that have ended are removed by the next one that asks for a
//! directory: what stays behind is at most the last run's, not the sum of
//! every run (hundreds of megabytes each: the CLI tests write long inputs).

use std::path::{Path, PathBuf};
use std::sync::Once;

/// This process's directory `name` (made if absent).
pub fn dir(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("scratch");
    static SWEPT: Once = Once::new();
    SWEPT.call_once(|| sweep(&root));
    let d = root.join(format!("{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("cannot make the scratch directory {}: {e}", d.display()));
    d
}

/// Removes the directories under `root` of processes that no longer run.
fn sweep(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.split('-').next()).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
