// A user's program, in its own module outside examples/go (tests/go/run.sh
// copies it into a temporary module that requires example.com/aptnetcon
// through a replace directive and builds it with -tags aptnc_shared against
// the library `make install` put in a prefix, found with pkg-config).
//
// Reads NDJSON on standard input, writes every record to standard output
// (annotated or as it came), and the alert count to standard error.
package main

import (
	"bufio"
	"fmt"
	"os"

	"example.com/aptnetcon"
)

func main() {
	det, err := aptnetcon.New("")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	defer det.Close()
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<24)
	w := bufio.NewWriter(os.Stdout)
	alerts := 0
	for in.Scan() {
		out, annotated, _ := det.Filter(in.Bytes())
		if annotated {
			alerts++
		}
		w.Write(out)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "alerts=%d\n", alerts)
}
