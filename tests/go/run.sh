#!/usr/bin/env bash
# The Go package (examples/go, cgo over include/apt_netcon.h): go vet, then
# go test (its alerts on the sample must be the CLI's), linked three ways:
#   1. -tags aptnc_debug: target/debug/libapt_netcon.a, statically (the
#      default, without a tag, is target/release's: what the README's
#      `cargo build --release` makes; go vet checks every variant);
#   2. the same under the race detector (goroutines sharing a detector);
#   3. -tags aptnc_shared: the shared library installed by `make install`
#      into a temporary prefix, found with pkg-config (SONAME libapt_netcon.so.1);
# then a program outside examples/go, in its own module, that requires
# example.com/aptnetcon through a `replace` directive (as a user's program
# does) is built against that installed library with pkg-config and run.
# Debian's golang-go (Go 1.19); no module downloads (GOPROXY=off: the package
# uses the standard library only). Installs golang-go, pkg-config, make and
# binutils when missing; builds the library and the CLI with cargo.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

need=()
command -v go >/dev/null || need+=(golang-go)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v make >/dev/null || need+=(make)
command -v readelf >/dev/null || need+=(binutils)
command -v cc >/dev/null || need+=(gcc)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; fi
fi

cargo build --quiet --lib --bins
export GOPROXY=off GOFLAGS=-mod=readonly CGO_ENABLED=1
# Go's build cache does not notice a changed C header outside the package:
# make the header's digest part of the cgo flags, hence of the cache key.
export CGO_CFLAGS="-g -O2 -DAPTNC_HEADER_DIGEST_$(sha256sum include/apt_netcon.h | cut -c1-16)"
export APT_NETCON_CLI="$root/target/debug/apt-netcon"
go version

cd examples/go
echo "--- go vet"
go vet ./...
go vet -tags aptnc_debug ./...
echo "--- go test -tags aptnc_debug (static, target/debug)"
go test -count=1 -v -tags aptnc_debug ./...

case "$(go env GOARCH)" in
  amd64|arm64)
    echo "--- go test -race"
    go test -count=1 -race -tags aptnc_debug ./...
    ;;
esac

echo "--- go test -tags aptnc_shared (make install into a temporary prefix, pkg-config)"
prefix=$(mktemp -d /tmp/aptnetcon_go.XXXXXX)
trap 'rm -rf "$prefix"' EXIT
make -s -C "$root" install PROFILE=dev PREFIX="$prefix" >/dev/null
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
# The rpath, as a user would give it; it also puts this run's prefix into the
# cache key (pkg-config's output is not part of it).
export CGO_LDFLAGS="-Wl,-rpath,$prefix/lib"
go vet -tags aptnc_shared ./...
go test -count=1 -tags aptnc_shared -c -o "$prefix/shared.test" .
readelf -d "$prefix/shared.test" | grep -q 'NEEDED.*\[libapt_netcon\.so\.1\]' ||
  { echo "the aptnc_shared build does not load libapt_netcon.so.1" >&2; exit 1; }
"$prefix/shared.test" -test.count=1

echo "--- a program outside the package's folder, its own module, -tags aptnc_shared (pkg-config)"
app="$prefix/app"
mkdir -p "$app"
printf '%s\n' 'module example.com/outside' '' 'go 1.19' '' \
  'require example.com/aptnetcon v0.0.0' '' \
  "replace example.com/aptnetcon => $root/examples/go" >"$app/go.mod"
cp "$root/tests/go/outside_main.go" "$app/main.go"
(cd "$app" && go vet -tags aptnc_shared . && go build -tags aptnc_shared -o "$prefix/outside" .)
readelf -d "$prefix/outside" | grep -q 'NEEDED.*\[libapt_netcon\.so\.1\]' ||
  { echo "the out-of-tree program does not load libapt_netcon.so.1" >&2; exit 1; }
"$prefix/outside" <"$root/examples/data/sample.ndjson" >"$prefix/outside.out" 2>"$prefix/outside.err"
grep -qx 'alerts=2' "$prefix/outside.err" ||
  { echo "out-of-tree program: expected alerts=2, got: $(cat "$prefix/outside.err")" >&2; exit 1; }
"$APT_NETCON_CLI" --quiet "$root/examples/data/sample.ndjson" | cmp - "$prefix/outside.out" ||
  { echo "out-of-tree program: output differs from the CLI's" >&2; exit 1; }
echo "go: all passed"
