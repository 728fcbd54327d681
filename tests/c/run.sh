#!/usr/bin/env bash
# C-side checks of the apt_netcon ABI, all of them; exits non-zero if any fails.
#
#   1. cargo build (debug: the library with its test hook, and the CLI)
#   2. tests/c built with -Wall -Wextra -Werror and run by ctest
#   3. the same with -fsanitize=address,undefined, then the soak in that build:
#      1,000,000 generated records through aptnc_filter (soak.c): records out
#      == records in, every planted sequence found and no other, no error
#      counter moved, heap in use flat, no leak (ctest's soak_short also runs
#      the MessagePack pass)
#   4. the test binary under valgrind: zero errors, zero definite/indirect leaks;
#      the mock Fluent Bit host (mock_fluentbit.c) too: zero errors, zero definite leaks
#   5. make install into a temporary prefix; a program built with
#      `cc app.c $(pkg-config --cflags --libs apt_netcon)` (and one linked
#      statically), and examples/c/filter.c against the installed library,
#      whose output must equal the CLI's
#
# Build directories: tests/c/build, tests/c/build-asan (git-ignored).
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1

# Tools, installed when missing.
need() { # need COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    echo "run.sh: $1 not found, installing $2"
    apt-get install -y "$2" >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y "$2"; } ||
        { echo "run.sh: cannot install $2" >&2; exit 1; }
}
need cmake cmake
need valgrind valgrind
need pkg-config pkg-config
need cc gcc
need make make
need readelf binutils

failed=()
step() { printf '\n=== %s\n' "$1"; }
check() { # check NAME COMMAND...: run, remember a failure, go on
    local name=$1
    shift
    if "$@"; then
        echo "--- $name: ok"
    else
        echo "--- $name: FAILED"
        failed+=("$name")
    fi
}

step "cargo build"
cargo build --lib --bins || { echo "run.sh: cargo build failed" >&2; exit 1; }
lib_dir=$root/target/debug
abi=$(sed -n 's/^#define APTNC_ABI_VERSION \([0-9][0-9]*\).*/\1/p' include/apt_netcon.h)

soname_is() { # soname_is FILE: its SONAME is libapt_netcon.so.$abi
    readelf -d "$1" | grep -q "(SONAME).*\[libapt_netcon.so.$abi\]" ||
        { echo "$1: SONAME is not libapt_netcon.so.$abi"; readelf -d "$1" | grep SONAME; return 1; }
}
check "SONAME libapt_netcon.so.$abi" soname_is "$lib_dir/libapt_netcon.so"

build_and_test() { # build_and_test DIR SANITIZE
    cmake -S tests/c -B "$1" -DAPTNC_LIB_DIR="$lib_dir" -DAPTNC_SANITIZE="$2" >/dev/null &&
        cmake --build "$1" -j 4 &&
        ctest --test-dir "$1" --output-on-failure -j 4
}

step "plain build, ctest"
check "ctest (plain)" build_and_test tests/c/build OFF

step "sanitizer build (-fsanitize=address,undefined), ctest"
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
check "ctest (address,undefined)" build_and_test tests/c/build-asan ON

step "soak: 1,000,000 records through aptnc_filter (sanitizer build)"
# About a minute on 2 cores: the library is the debug build, and the
# sanitizer's allocator serves it too. Heap in use is checked, RSS only
# reported: the sanitizer keeps freed blocks in quarantine.
check "soak (address,undefined)" tests/c/build-asan/apt_netcon_soak 1000000 --json-only
unset ASAN_OPTIONS UBSAN_OPTIONS

step "valgrind"
# RUST_BACKTRACE off: the deliberate panic of the panic test would otherwise
# symbolicate a backtrace, which is slow under valgrind (and not a leak).
check "valgrind" env RUST_BACKTRACE=0 valgrind --error-exitcode=1 --leak-check=full \
    --errors-for-leak-kinds=definite,indirect tests/c/build/apt_netcon_tests
check "valgrind (mock Fluent Bit)" env RUST_BACKTRACE=0 valgrind --error-exitcode=1 --leak-check=full \
    --errors-for-leak-kinds=definite tests/c/build/mock_fluentbit

step "make install, pkg-config"
prefix=$(mktemp -d /tmp/apt_netcon_prefix.XXXXXX)
trap 'rm -rf "$prefix"' EXIT
installed() {
    make --no-print-directory install PREFIX="$prefix" >/dev/null || return 1
    local f
    for f in lib/libapt_netcon.so.$abi lib/libapt_netcon.so lib/libapt_netcon.a include/apt_netcon.h \
        lib/pkgconfig/apt_netcon.pc; do
        [ -e "$prefix/$f" ] || { echo "not installed: $f"; return 1; }
    done
    [ "$(readlink "$prefix/lib/libapt_netcon.so")" = "libapt_netcon.so.$abi" ] || { echo "bad symlink"; return 1; }
    soname_is "$prefix/lib/libapt_netcon.so.$abi"
}
check "make install PREFIX=$prefix" installed
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
app_dynamic() {
    echo "+ cc app.c \$(pkg-config --cflags --libs apt_netcon):" $(pkg-config --cflags --libs apt_netcon)
    # shellcheck disable=SC2046
    cc -Wall -Wextra -Werror tests/c/app.c $(pkg-config --cflags --libs apt_netcon) -o "$prefix/app" || return 1
    readelf -d "$prefix/app" | grep -q "(NEEDED).*\[libapt_netcon.so.$abi\]" ||
        { echo "app does not need libapt_netcon.so.$abi"; return 1; }
    LD_LIBRARY_PATH=$prefix/lib "$prefix/app"
}
check "pkg-config app (shared)" app_dynamic
app_static() {
    # shellcheck disable=SC2046
    cc -Wall -Wextra -Werror tests/c/app.c $(pkg-config --cflags apt_netcon) "$prefix/lib/libapt_netcon.a" \
        $(pkg-config --static --libs-only-l apt_netcon | sed 's/-lapt_netcon//') -o "$prefix/app-static" ||
        return 1
    ! readelf -d "$prefix/app-static" | grep -q libapt_netcon || { echo "app-static needs the .so"; return 1; }
    "$prefix/app-static"
}
check "pkg-config app (static, Libs.private)" app_static
filter_installed() {
    # shellcheck disable=SC2046
    cc -Wall -Wextra -Werror examples/c/filter.c $(pkg-config --cflags --libs apt_netcon) -o "$prefix/filter" ||
        return 1
    local input
    for input in tests/c/data/sequence.ndjson examples/data/sample.ndjson; do
        [ -e "$input" ] || continue
        LD_LIBRARY_PATH=$prefix/lib sh tests/c/same_output.sh "$prefix/filter" target/debug/apt-netcon "$input" ||
            return 1
    done
}
check "examples/c/filter.c (installed) equals the CLI" filter_installed

echo
if [ ${#failed[@]} -ne 0 ]; then
    printf 'run.sh: FAILED: %s\n' "${failed[@]}"
    exit 1
fi
echo "run.sh: all C checks passed"
