#!/bin/sh
# same_output.sh FILTER CLI INPUT: FILTER's output on INPUT must equal
# `CLI --quiet`'s byte for byte.
set -eu
filter=$1 cli=$2 input=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$filter" < "$input" > "$tmp/filter.out"
"$cli" --quiet < "$input" > "$tmp/cli.out"
if ! cmp "$tmp/filter.out" "$tmp/cli.out"; then
    diff "$tmp/filter.out" "$tmp/cli.out" | head -20
    exit 1
fi
echo "same output ($(wc -c < "$tmp/cli.out") bytes, $(grep -c '"kibana":{"alert"' "$tmp/cli.out" || true) annotated lines) on $input"
