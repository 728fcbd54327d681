#!/usr/bin/env bash
# Peak resident memory of the CLI on a 1 GB stream (not part of CI).
#
#   bash benches/rss.sh [BYTES] [HOSTS]      # defaults: 1000000000 10000
#
# The benchmark corpus generator (benches/corpus/mod.rs, through
# `throughput --write-corpus -`) writes BYTES of realistic Elastic Defend
# traffic from HOSTS hosts to a pipe; the release CLI filters it to
# /dev/null under /usr/bin/time, which reports the CLI's maximum resident
# set size. The stream never exists on disk.
set -euo pipefail
cd "$(dirname "$0")/.."
BYTES=${1:-1000000000}
HOSTS=${2:-10000}
cargo build --release --quiet
GEN=$(cargo bench --bench throughput --no-run 2>&1 | sed -n 's/.*Executable.*(\(.*throughput-[0-9a-f]*\)).*/\1/p' | tail -1)
[ -x "$GEN" ] || { echo "rss.sh: could not find the throughput bench binary" >&2; exit 1; }
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
start=$(date +%s.%N)
"$GEN" --write-corpus - --bytes "$BYTES" --hosts "$HOSTS" 2>"$OUT.gen" \
  | /usr/bin/time -v target/release/apt-netcon > /dev/null 2> "$OUT"
end=$(date +%s.%N)
cat "$OUT.gen"; rm -f "$OUT.gen"
grep -E "^apt-netcon: [0-9]+ records" "$OUT" || true
grep -E "sequences_completed|pending" "$OUT" | tr ' ' '\n' | grep -E "^(records|annotated|sequences_completed|expired_by_maxspan|pending)=" | tr '\n' ' '; echo
rss_kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$OUT")
echo "peak RSS of the CLI: ${rss_kb} kB ($(( rss_kb / 1024 )) MiB) for $(( BYTES / 1000000 )) MB in $(echo "$end - $start" | bc) s (generator-bound)"
