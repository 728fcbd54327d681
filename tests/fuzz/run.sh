#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ briefly (cargo-fuzz / libFuzzer), from a
# seed corpus generated from examples/data/sample.ndjson and the built-in
# rules' text into a temporary directory. Prints executions per target;
# exits non-zero if any target crashes (the input is printed as a Rust byte
# string for tests/regressions.rs, and kept in the temporary directory).
#
#   bash tests/fuzz/run.sh                    # every target, 15 s each
#   bash tests/fuzz/run.sh json_record c_abi  # some targets
#
# Environment:
#   FUZZ_SECONDS    seconds per target (default 15)
#   FUZZ_SANITIZER  none (default: works on the stable toolchain as is) or
#                   address (AddressSanitizer: needs -Zsanitizer, so the
#                   stable compiler is run with RUSTC_BOOTSTRAP=1)
#   FUZZ_CORPUS     a directory to keep the corpus in across runs (e.g.
#                   fuzz/corpus, which git ignores); default: a temp dir
#   FUZZ_JOBS       libFuzzer -fork jobs per target (default: 0, no fork)
#   FUZZ_ARGS       more libFuzzer flags
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${FUZZ_SECONDS:-15}
sanitizer=${FUZZ_SANITIZER:-none}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(rule_parser json_record msgpack_chunk c_abi)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz (cargo install cargo-fuzz)"
  cargo install cargo-fuzz --locked >/dev/null 2>&1 || cargo install cargo-fuzz
fi
command -v c++ >/dev/null || command -v clang++ >/dev/null || {
  echo "fuzz: a C++ compiler is needed to build libFuzzer (apt-get install g++)" >&2; exit 2; }

# cargo-fuzz passes -Zsanitizer=… unless the sanitizer is `none`; only that
# needs an unstable compiler, which the stable one becomes with
# RUSTC_BOOTSTRAP=1. Coverage instrumentation (-Cpasses=sancov-module,
# -Cllvm-args=…) is stable. Each sanitizer gets its own target directory so
# switching does not rebuild everything.
case "$sanitizer" in
  none) ;;
  address|leak|memory|thread) export RUSTC_BOOTSTRAP=1 ;;
  *) echo "fuzz: FUZZ_SANITIZER must be none, address, leak, memory or thread" >&2; exit 2 ;;
esac
target_dir="fuzz/target/$sanitizer"
triple=$(rustc -vV | sed -n 's/^host: //p')
bin="$target_dir/$triple/release"

echo "== building fuzz targets (sanitizer: $sanitizer)"
build_log=$(mktemp)
if ! cargo fuzz build -s "$sanitizer" --target-dir "$target_dir" >"$build_log" 2>&1; then
  tail -40 "$build_log"; rm -f "$build_log"
  echo "fuzz: build failed" >&2; exit 2
fi
rm -f "$build_log"

work=$(mktemp -d "${TMPDIR:-/tmp}/apt-netcon-fuzz.XXXXXX")
crashed=()
total=0
for t in "${targets[@]}"; do
  corpus="${FUZZ_CORPUS:+$FUZZ_CORPUS/$t}"
  corpus="${corpus:-$work/corpus/$t}"
  seeds="$work/seeds/$t"
  mkdir -p "$corpus" "$seeds" "$work/artifacts"
  # The target's init writes its seeds when APT_NETCON_FUZZ_SEEDS is set.
  APT_NETCON_FUZZ_SEEDS="$seeds" "$bin/$t" -runs=0 "$seeds" >"$work/$t.seed.log" 2>&1 || {
    echo "fuzz: $t: the seed corpus itself fails:"; tail -30 "$work/$t.seed.log"; crashed+=("$t"); continue; }
  log="$work/$t.log"
  set +e
  ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" "$bin/$t" "$corpus" "$seeds" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
    -artifact_prefix="$work/artifacts/$t-" -print_final_stats=1 \
    ${FUZZ_JOBS:+-fork=$FUZZ_JOBS -ignore_crashes=0} ${FUZZ_ARGS:-} >"$log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  [ -n "$execs" ] || execs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$log" | tail -1 || true)
  execs=${execs:-0}
  total=$((total + execs))
  if [ $rc -ne 0 ]; then
    crashed+=("$t")
    echo "fuzz: $t: CRASH after $execs executions (exit $rc)"
    grep -E 'panicked|ERROR|SUMMARY|Test unit written|==[0-9]+==' "$log" | head -15
    for a in "$work"/artifacts/"$t"-*; do
      [ -f "$a" ] || continue
      echo "  input: $a ($(wc -c <"$a") bytes), as a Rust byte string:"
      printf '  b"'; od -An -v -tx1 "$a" | tr -s ' \n' ' ' | sed 's/^ //; s/ $//; s/ /\\x/g; s/^/\\x/' | tr -d '\n'; echo '"'
    done
    echo "  log: $log"
  else
    echo "fuzz: $t: $execs executions in ${seconds}s, no crash ($cov)"
  fi
done

echo "fuzz: $total executions in total; crashes: ${#crashed[@]}${crashed:+ (${crashed[*]})}"
if [ ${#crashed[@]} -gt 0 ]; then
  echo "fuzz: inputs and logs kept in $work"
  exit 1
fi
rm -rf "$work"
