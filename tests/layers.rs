//! The layering of `src/`: one folder per layer, dependencies one way.
//!
//! ```text
//! host → engine → alert → config → eql → format
//! ```
//!
//! A folder may use the folders to its right, never one to its left. This
//! test reads every `src/<layer>/**/*.rs`, collects each reference to another
//! folder in the code (`crate::<folder>…`, `crate::{<folder>…}`, a `super::`
//! chain that climbs to the crate root, and the crate root's re-exports such
//! as `crate::Detector`, counted for the folder they come from), prints the
//! folder import graph, and fails on an edge the order does not allow, on a
//! cycle, and on a module of the library outside the layer folders. Comments
//! (doc comments and their intra-doc links included) and string literals are
//! not code and are not read.
//!
//! To see the graph: `cargo test --test layers -- --nocapture`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The layers, bottom first: each may use only those before it.
const LAYERS: &[&str] = &["format", "eql", "config", "alert", "engine", "host"];

/// Folder → folder → where (`file:line`, first few).
type Graph = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// `text` with comments and the insides of string and char literals
/// blanked (newlines kept, so line numbers stay).
fn code_only(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (i == 0 || !is_ident(b[i - 1]) || (b[i - 1] == 'b' && (i < 2 || !is_ident(b[i - 2]))))
            && matches!(next, Some('#') | Some('"'))
        {
            // A raw string r"…", r#"…"#, br"…" (or an identifier r#name).
            let mut j = i + 1;
            while b.get(j) == Some(&'#') {
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let hashes = j - i - 1;
            out.push_str(&" ".repeat(j - i + 1));
            i = j + 1;
            while i < b.len() {
                if b[i] == '"' && (0..hashes).all(|k| b.get(i + 1 + k) == Some(&'#')) {
                    out.push_str(&" ".repeat(hashes + 1));
                    i += hashes + 1;
                    break;
                }
                out.push(blank(b[i]));
                i += 1;
            }
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < b.len() {
                if b[i] == '\\' {
                    out.push(' ');
                    out.push(blank(*b.get(i + 1).unwrap_or(&' ')));
                    i += 2;
                } else if b[i] == '"' {
                    out.push(' ');
                    i += 1;
                    break;
                } else {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}'), or else a lifetime.
            if next == Some('\\') {
                let mut j = i + 2;
                while j < b.len() && b[j] != '\'' {
                    j += 1;
                }
                out.push_str(&" ".repeat(j + 1 - i));
                i = j + 1;
            } else if b.get(i + 2) == Some(&'\'') {
                out.push_str("   ");
                i += 3;
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The module path of a source file (`src/engine/detector/mod.rs` →
/// `["engine", "detector"]`).
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

fn ident_at(s: &[char], mut i: usize) -> (String, usize) {
    while i < s.len() && s[i].is_whitespace() {
        i += 1;
    }
    let start = i;
    while i < s.len() && (s[i].is_alphanumeric() || s[i] == '_') {
        i += 1;
    }
    (s[start..i].iter().collect(), i)
}

fn starts_with(s: &[char], i: usize, pat: &str) -> bool {
    pat.chars().enumerate().all(|(k, c)| s.get(i + k) == Some(&c))
}

/// The first segment of each path in a `{…}` group starting at `s[i]`.
fn group_heads(s: &[char], i: usize) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut expect = true;
    let mut j = i;
    while j < s.len() {
        match s[j] {
            '{' => {
                depth += 1;
                if depth == 1 {
                    expect = true;
                }
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => expect = true,
            c if expect && depth == 1 && (c.is_alphanumeric() || c == '_') => {
                let (id, end) = ident_at(s, j);
                heads.push(id);
                expect = false;
                j = end;
                continue;
            }
            _ => {}
        }
        j += 1;
    }
    heads
}

/// The crate-root names a path starting at `s[i]` (after `crate::`, or a
/// `super::` chain that reached the root) names: one, or a `{…}` group's.
fn heads(s: &[char], i: usize) -> Vec<String> {
    if s.get(i) == Some(&'{') {
        group_heads(s, i)
    } else {
        vec![ident_at(s, i).0]
    }
}

/// The layer a crate-root name belongs to: a layer folder itself, or an
/// item the crate root re-exports from one.
fn layer_of(name: &str, reexports: &BTreeMap<String, String>) -> Option<String> {
    if LAYERS.contains(&name) {
        return Some(name.to_string());
    }
    reexports.get(name).cloned()
}

/// `pub use <layer>::…::{A, B};` lines of `src/lib.rs`: name → layer.
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for line in code_only(lib).lines() {
        let Some(rest) = line.trim().strip_prefix("pub use ") else { continue };
        let layer = rest.split("::").next().unwrap_or("").trim().to_string();
        if !LAYERS.contains(&layer.as_str()) {
            continue;
        }
        let names = match (rest.find('{'), rest.rfind('}')) {
            (Some(a), Some(b)) => rest[a + 1..b].to_string(),
            _ => rest.rsplit("::").next().unwrap_or("").trim_end_matches(';').to_string(),
        };
        for n in names.split(',') {
            let n = n.trim();
            let n = n.rsplit(" as ").next().unwrap_or(n).trim();
            if !n.is_empty() {
                map.insert(n.to_string(), layer.clone());
            }
        }
    }
    map
}

/// Every reference from `file` (its module path `module`) to a crate-root
/// name, with its line: `(name, line)`.
fn root_refs(module: &[String], text: &str) -> Vec<(String, usize)> {
    let code = code_only(text);
    let s: Vec<char> = code.chars().collect();
    let mut refs = Vec::new();
    let mut line = 1;
    // Inline `mod name {` blocks: (name, brace depth inside).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut pending_mod: Option<String> = None;
    let mut i = 0;
    let boundary = |i: usize| i == 0 || !(s[i - 1].is_alphanumeric() || s[i - 1] == '_');
    while i < s.len() {
        let c = s[i];
        if c == '\n' {
            line += 1;
        } else if c == '{' {
            depth += 1;
            if let Some(name) = pending_mod.take() {
                inline.push((name, depth));
            }
        } else if c == '}' {
            if inline.last().is_some_and(|(_, d)| *d == depth) {
                inline.pop();
            }
            depth = depth.saturating_sub(1);
        } else if c == ';' {
            pending_mod = None;
        } else if boundary(i) && starts_with(&s, i, "mod ") {
            let (name, end) = ident_at(&s, i + 4);
            pending_mod = Some(name);
            i = end;
            continue;
        } else if boundary(i) && starts_with(&s, i, "crate::") {
            let at = i + "crate::".len();
            refs.extend(heads(&s, at).into_iter().map(|h| (h, line)));
            i = at;
            continue;
        } else if boundary(i) && starts_with(&s, i, "super::") {
            let mut path: Vec<String> = module.to_vec();
            path.extend(inline.iter().map(|(n, _)| n.clone()));
            let mut j = i;
            while starts_with(&s, j, "super::") {
                path.pop();
                j += "super::".len();
            }
            if path.is_empty() {
                refs.extend(heads(&s, j).into_iter().map(|h| (h, line)));
            }
            i = j;
            continue;
        }
        i += 1;
    }
    refs
}

/// The folder graph of a set of files (`(path under src/, text)`).
fn graph(files: &[(PathBuf, String)], reexports: &BTreeMap<String, String>) -> Graph {
    let mut g: Graph = BTreeMap::new();
    for (rel, text) in files {
        let module = module_path(rel);
        let Some(from) = module.first().cloned() else { continue };
        g.entry(from.clone()).or_default();
        for (name, line) in root_refs(&module, text) {
            let Some(to) = layer_of(&name, reexports) else { continue };
            if to != from {
                let at = g.entry(from.clone()).or_default().entry(to).or_default();
                if at.len() < 3 {
                    at.push(format!("src/{}:{line}", rel.display()));
                }
            }
        }
    }
    g
}

/// Edges the order does not allow: `(from, to, where)`.
fn violations(g: &Graph) -> Vec<(String, String, Vec<String>)> {
    let rank = |l: &str| LAYERS.iter().position(|x| *x == l);
    let mut bad = Vec::new();
    for (from, tos) in g {
        for (to, at) in tos {
            match (rank(from), rank(to)) {
                (Some(a), Some(b)) if b < a => {}
                _ => bad.push((from.clone(), to.clone(), at.clone())),
            }
        }
    }
    bad
}

/// A cycle of the graph, if any (its folders, the first repeated last).
fn cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &Graph,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for to in g.get(n).map(|m| m.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
            match state.get(&to).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|x| *x == to).unwrap_or(0);
                    let mut c = stack[from..].to_vec();
                    c.push(to);
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(&to, g, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if state.get(n).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, g, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn print(g: &Graph) {
    println!("folder import graph (a → b: a uses b), top layer first:");
    for layer in LAYERS.iter().rev() {
        let tos: Vec<String> = g
            .get(*layer)
            .map(|m| {
                let mut v: Vec<&String> = m.keys().collect();
                v.sort_by_key(|t| std::cmp::Reverse(LAYERS.iter().position(|x| x == t)));
                v.into_iter().cloned().collect()
            })
            .unwrap_or_default();
        let tos = if tos.is_empty() { "(nothing)".to_string() } else { tos.join(", ") };
        println!("  {layer:<7} → {tos}");
    }
}

#[test]
fn layers_depend_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = fs::read_to_string(src.join("lib.rs")).unwrap();

    // The library is the layer folders and nothing else.
    for line in code_only(&lib).lines() {
        let l = line.trim();
        let l = l.strip_prefix("pub ").unwrap_or(l);
        if let Some(m) = l.strip_prefix("mod ") {
            let m = m.trim_end_matches(';').trim();
            assert!(LAYERS.contains(&m), "src/lib.rs declares module `{m}`, which is no layer folder: {LAYERS:?}");
        }
    }
    for layer in LAYERS {
        assert!(src.join(layer).join("mod.rs").is_file(), "src/{layer}/mod.rs is missing");
    }

    let mut paths = Vec::new();
    for layer in LAYERS {
        rust_files(&src.join(layer), &mut paths);
    }
    let files: Vec<(PathBuf, String)> = paths
        .iter()
        .map(|p| (p.strip_prefix(&src).unwrap().to_path_buf(), fs::read_to_string(p).unwrap()))
        .collect();
    let g = graph(&files, &reexports(&lib));
    print(&g);

    let bad = violations(&g);
    let cyc = cycle(&g);
    let mut msg = String::new();
    for (from, to, at) in &bad {
        msg += &format!("`{from}` may not use `{to}` (order {LAYERS:?}, bottom first): {}\n", at.join(", "));
    }
    if let Some(c) = &cyc {
        msg += &format!("cycle: {}\n", c.join(" → "));
    }
    assert!(msg.is_empty(), "{msg}");
}

#[cfg(test)]
mod checks {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
        list.iter().map(|(p, t)| (PathBuf::from(p), t.to_string())).collect()
    }

    fn lib() -> BTreeMap<String, String> {
        reexports("pub mod engine;\npub use engine::detector::{Detector, Verdict};\npub use config::settings::Config;\n")
    }

    #[test]
    fn an_upward_reference_fails() {
        let g = graph(&files(&[("format/event.rs", "use crate::engine::detector::Detector;\n")]), &lib());
        let bad = violations(&g);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!((bad[0].0.as_str(), bad[0].1.as_str()), ("format", "engine"));
        assert_eq!(bad[0].2, vec!["src/format/event.rs:1".to_string()]);
    }

    #[test]
    fn every_way_of_naming_another_folder_counts() {
        let text = "use crate::{eql::parse, alert::x};\n\
                    fn f(d: &mut crate::Detector) {}\n\
                    mod tests { use super::super::super::host::ffi; }\n";
        let g = graph(&files(&[("config/rule.rs", text)]), &lib());
        let to: Vec<&String> = g["config"].keys().collect();
        assert_eq!(to, ["alert", "engine", "eql", "host"]);
        assert_eq!(violations(&g).len(), 3);
    }

    #[test]
    fn comments_and_strings_are_not_code() {
        let text = "//! See [`crate::engine::detector`].\n\
                    /* crate::host */ fn f() { let _ = \"crate::engine\"; let _ = r#\"crate::alert\"#; let _ = '\"'; }\n\
                    use crate::format::event; // crate::engine\n";
        let g = graph(&files(&[("eql/compile.rs", text)]), &lib());
        assert_eq!(g["eql"].keys().collect::<Vec<_>>(), ["format"]);
        assert!(violations(&g).is_empty());
    }

    #[test]
    fn a_cycle_is_found() {
        let g = graph(
            &files(&[
                ("engine/a.rs", "use crate::alert::x;\n"),
                ("alert/b.rs", "use crate::config::y;\n"),
                ("config/c.rs", "use crate::engine::z;\n"),
            ]),
            &lib(),
        );
        let c = cycle(&g).expect("a cycle");
        assert_eq!(c.first(), c.last());
        assert_eq!(c.len(), 4, "{c:?}");
        // The allowed edges alone have none.
        let mut ok = g.clone();
        ok.get_mut("config").unwrap().clear();
        assert!(cycle(&ok).is_none());
    }

    #[test]
    fn super_within_a_folder_stays_in_it() {
        let text = "use super::sequence::Partial;\nmod tests { use super::*; }\n";
        let g = graph(&files(&[("engine/detector/mod.rs", text), ("engine/hostq.rs", "use super::super::format::x;")]), &lib());
        assert_eq!(g["engine"].keys().collect::<Vec<_>>(), ["format"]);
    }
}
