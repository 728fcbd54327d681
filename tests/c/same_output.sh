#!/bin/sh
# same_output.sh FILTER CLI INPUT [CONFIG]: FILTER's output on INPUT must
# equal `CLI --quiet`'s byte for byte (with CONFIG, a JSON config file: given
# to FILTER as its argument and to CLI as --config CONFIG).
set -eu
filter=$1 cli=$2 input=$3 config=${4:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -n "$config" ]; then
    "$filter" "$(cat "$config")" < "$input" > "$tmp/filter.out"
    "$cli" --quiet --config "$config" < "$input" > "$tmp/cli.out"
else
    "$filter" < "$input" > "$tmp/filter.out"
    "$cli" --quiet < "$input" > "$tmp/cli.out"
fi
if ! cmp "$tmp/filter.out" "$tmp/cli.out"; then
    diff "$tmp/filter.out" "$tmp/cli.out" | head -20
    exit 1
fi
echo "same output ($(wc -c < "$tmp/cli.out") bytes, $(grep -c '"kibana":{"alert"' "$tmp/cli.out" || true) annotated lines) on $input"
