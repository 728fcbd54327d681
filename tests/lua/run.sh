#!/usr/bin/env bash
# The Fluent Bit Lua glue (examples/fluent-bit/apt_netcon.lua) under Debian's
# LuaJIT, called the way filter_lua calls it; its alerts on the sample must be
# the CLI's. Installs luajit when missing; builds the library with cargo.
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
