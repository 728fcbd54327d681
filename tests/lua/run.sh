#!/usr/bin/env bash
# The Fluent Bit Lua glue (examples/fluent-bit/apt_netcon.lua) under Debian's
# LuaJIT, called the way filter_lua calls it; its alerts on the sample must be
# the CLI's. Installs luajit when missing; builds the library with cargo.
#
# Then, unless APT_NETCON_LUA_BENCH=0, the same with the release library on
# a generated corpus of realistic Defend traffic (APT_NETCON_LUA_EVENTS,
# default 20000, written by the benchmarks' generator): the glue's alerts
# must be the CLI's there too, and the driver prints the cost per record of
# a no-op callback, the glue and the pure-Lua peer on the same tables (and
# on fresh tables, built just before each call as filter_lua builds them).
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v luajit >/dev/null; then
  echo "installing: luajit"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq luajit
  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq luajit; fi
fi

cargo build --quiet
export APT_NETCON_LIB="$PWD/target/debug/libapt_netcon.so"
unset APT_NETCON_CONFIG
luajit tests/lua/driver.lua examples/fluent-bit/apt_netcon.lua examples/data/sample.ndjson \
  "$PWD/target/debug/apt-netcon"

if [ "${APT_NETCON_LUA_BENCH:-1}" != 0 ]; then
  events=${APT_NETCON_LUA_EVENTS:-20000}
  corpus="$PWD/target/lua-corpus-$events.ndjson"
  cargo build --quiet --release
  if [ ! -s "$corpus" ]; then
    cargo bench --quiet --bench throughput -- --write-corpus "$corpus.tmp" --events "$events" >/dev/null
    mv "$corpus.tmp" "$corpus"
  fi
  echo "--- release library, generated corpus ($events events)"
  APT_NETCON_LIB="$PWD/target/release/libapt_netcon.so" luajit tests/lua/driver.lua \
    examples/fluent-bit/apt_netcon.lua examples/data/sample.ndjson "$PWD/target/release/apt-netcon" "$corpus"
fi
