// The Go package over apt_netcon's C ABI (docs/go.md). It has no public
// path: from your own module, require it and point a replace directive at
// this directory (no download needed):
//
//	require example.com/aptnetcon v0.0.0
//	replace example.com/aptnetcon => /path/to/apt-netcon/examples/go
//
// It links target/release/libapt_netcon.a by default: `cargo build --release`
// first.
module example.com/aptnetcon

go 1.19
