//! Generates the C header with cbindgen into OUT_DIR (never into the source
//! tree: `include/apt_netcon.h` is the committed copy, compared with this one
//! by tests/header.rs) and sets the shared library's SONAME from the ABI
//! version in src/host/ffi/mod.rs. Only src/host/ffi/ is parsed (mod.rs and the modules it
//! declares; no `cargo metadata`), so this works offline. Any failure fails the build.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=src/host/ffi");

    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let ffi_path = crate_dir.join("src/host/ffi/mod.rs");
    let ffi = fs::read_to_string(&ffi_path).unwrap_or_else(|e| panic!("reading {}: {e}", ffi_path.display()));

    let abi = abi_version(&ffi);
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if !matches!(target_os.as_str(), "macos" | "ios" | "windows") {
        // ELF: programs linked with -lapt_netcon record libapt_netcon.so.N.
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libapt_netcon.so.{abi}");
    }

    let mut config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap_or_else(|e| panic!("cbindgen.toml: {e}"));
    config.header = Some(file_comment(&ffi));
    config.after_includes = Some(version_macros());
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(&ffi_path)
        .generate()
        .unwrap_or_else(|e| panic!("cbindgen could not generate the header from src/host/ffi/mod.rs: {e}"));
    let header = out_dir.join("apt_netcon.h");
    bindings.write_to_file(&header);
    println!("cargo:rustc-env=APTNC_GENERATED_HEADER={}", header.display());
}

/// The value of `pub const APTNC_ABI_VERSION: u32 = N;` in src/host/ffi/mod.rs.
fn abi_version(ffi: &str) -> u32 {
    const DECL: &str = "pub const APTNC_ABI_VERSION: u32 = ";
    ffi.lines()
        .find_map(|l| l.strip_prefix(DECL))
        .and_then(|rest| rest.trim_end().strip_suffix(';'))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("src/host/ffi/mod.rs must contain `{DECL}<number>;`"))
}

/// The header's opening comment: the module docs (`//!`) of src/host/ffi/mod.rs.
fn file_comment(ffi: &str) -> String {
    let mut s = String::from("/*\n");
    for line in ffi.lines().take_while(|l| l.starts_with("//!")) {
        let text = line.trim_start_matches("//!");
        let text = text.strip_prefix(' ').unwrap_or(text);
        assert!(!text.contains("*/"), "src/host/ffi/mod.rs module docs must not contain `*/`");
        if text.is_empty() {
            s.push_str(" *\n");
        } else {
            s.push_str(" * ");
            s.push_str(text);
            s.push('\n');
        }
    }
    s.push_str(" */");
    s
}

/// Version macros from Cargo.toml's version.
fn version_macros() -> String {
    let var = |k: &str| env::var(k).unwrap_or_else(|_| panic!("{k} is not set"));
    format!(
        "\n/** The version of apt_netcon this header belongs to (compare with aptnc_version()). */\n\
         #define APTNC_VERSION_MAJOR {}\n\
         #define APTNC_VERSION_MINOR {}\n\
         #define APTNC_VERSION_PATCH {}\n\
         #define APTNC_VERSION \"{}\"\n",
        var("CARGO_PKG_VERSION_MAJOR"),
        var("CARGO_PKG_VERSION_MINOR"),
        var("CARGO_PKG_VERSION_PATCH"),
        var("CARGO_PKG_VERSION"),
    )
}
