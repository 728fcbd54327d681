//! The committed C header (`include/apt_netcon.h`) must equal the one
//! build.rs generates from src/host/ffi/ with cbindgen, and its version macros
//! must equal Cargo.toml's version.
//!
//! When src/host/ffi/ changes on purpose: `cargo build`, look at the diff this
//! test prints, then `APTNC_BLESS=1 cargo test --test header` copies the
//! generated header over the committed one.

use std::fs;
use std::path::{Path, PathBuf};

/// Set by build.rs: the header it generated into OUT_DIR.
const GENERATED: &str = env!("APTNC_GENERATED_HEADER");

fn committed_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("include/apt_netcon.h")
}

fn committed() -> String {
    let p = committed_path();
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

#[test]
fn committed_header_equals_generated() {
    let generated =
        fs::read_to_string(GENERATED).unwrap_or_else(|e| panic!("cannot read the generated header {GENERATED}: {e}"));
    let path = committed_path();
    let committed = fs::read_to_string(&path).unwrap_or_default();
    if committed == generated {
        return;
    }
    if std::env::var_os("APTNC_BLESS").is_some() {
        fs::write(&path, &generated).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        eprintln!("updated {}", path.display());
        return;
    }
    panic!(
        "include/apt_netcon.h differs from the header generated from src/host/ffi/.\n\
         --- include/apt_netcon.h (committed)\n\
         +++ {GENERATED} (generated)\n{}\n\
         If the change to the C API is intended, run: APTNC_BLESS=1 cargo test --test header",
        unified_diff(&committed, &generated, 3)
    );
}

/// `#define NAME value` from the header text.
fn define<'a>(header: &'a str, name: &str) -> &'a str {
    header
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix("#define ")?.strip_prefix(name)?;
            rest.starts_with([' ', '\t']).then(|| rest.trim())
        })
        .unwrap_or_else(|| panic!("include/apt_netcon.h has no `#define {name}`"))
}

#[test]
fn header_version_equals_cargo_toml() {
    let manifest_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let manifest: toml::Table = fs::read_to_string(&manifest_path).unwrap().parse().expect("Cargo.toml parses");
    let version = manifest["package"]["version"].as_str().expect("package.version is a string");
    let h = committed();
    assert_eq!(define(&h, "APTNC_VERSION"), format!("\"{version}\""), "APTNC_VERSION");
    let parts: Vec<&str> = version.split(['.', '-', '+']).take(3).collect();
    assert_eq!(define(&h, "APTNC_VERSION_MAJOR"), parts[0], "APTNC_VERSION_MAJOR");
    assert_eq!(define(&h, "APTNC_VERSION_MINOR"), parts[1], "APTNC_VERSION_MINOR");
    assert_eq!(define(&h, "APTNC_VERSION_PATCH"), parts[2], "APTNC_VERSION_PATCH");
    assert_eq!(version, apt_netcon::VERSION);
    assert_eq!(define(&h, "APTNC_ABI_VERSION"), apt_netcon::host::ffi::APTNC_ABI_VERSION.to_string());
}

/// A unified diff of two texts by lines (longest common subsequence), with
/// `context` lines around each change.
fn unified_diff(old: &str, new: &str, context: usize) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // lcs[i][j]: length of the LCS of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    // The edit script: (tag, old line index, new line index).
    let (mut i, mut j) = (0, 0);
    let mut ops: Vec<(char, usize, usize)> = Vec::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', i, j));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', i, j));
            i += 1;
        } else {
            ops.push(('+', i, j));
            j += 1;
        }
    }
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != ' ').collect();
    let mut out = String::new();
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(context);
        let mut end = changed[k];
        while k < changed.len() && changed[k] <= end + 2 * context + 1 {
            end = changed[k];
            k += 1;
        }
        let end = (end + context + 1).min(ops.len());
        let (oi, nj) = (ops[start].1, ops[start].2);
        let olen = ops[start..end].iter().filter(|o| o.0 != '+').count();
        let nlen = ops[start..end].iter().filter(|o| o.0 != '-').count();
        out.push_str(&format!("@@ -{},{} +{},{} @@\n", oi + 1, olen, nj + 1, nlen));
        for &(tag, oi, nj) in &ops[start..end] {
            let line = if tag == '+' { b[nj] } else { a[oi] };
            out.push(tag);
            out.push_str(line);
            out.push('\n');
        }
    }
    if out.is_empty() && old != new {
        out.push_str("(the files differ only in line endings or a final newline)\n");
    }
    out
}

#[test]
fn diff_is_readable() {
    let d = unified_diff("a\nb\nc\n", "a\nB\nc\n", 1);
    assert_eq!(d, "@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n");
}
