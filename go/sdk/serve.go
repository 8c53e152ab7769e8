package sdk

import (
	"fmt"
	"os"

	"halkyon.io/plugins/shared"
)

// Serve serves the plugin until its host stops it, then exits the process.
// A declaration with mistakes is reported on stderr and exits 1 before the
// handshake. It logs through shared.NewLogger and serves through
// shared.Serve: the go-plugin handshake, and an exit when the host dies.
func Serve(p Plugin) {
	log := shared.NewLogger(p.Name)
	impl, err := NewServer(p, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shared.Serve(impl, log)
}
