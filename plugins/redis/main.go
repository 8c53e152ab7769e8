// Command redis is a halkyon plugin written in Go on HashiCorp go-plugin:
// Capabilities of category `cache`, type `redis`.
//
// Dependents, in order: a Secret `<capability>-config` with the connection
// settings (the binding contract), a Deployment running the official redis
// image, and a Service. Ready when the Deployment reports its replicas
// available. The capability logic is in plugin.go; this file only serves it.
package main

import (
	"halkyon.io/plugins/shared"
)

func main() {
	logger := shared.NewLogger("redis")
	shared.Serve(&redis{log: logger}, logger)
}
