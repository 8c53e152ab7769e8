// Command redis is a halkyon plugin written in Go on halkyon's Go SDK:
// Capabilities of category `cache`, type `redis`.
//
// Dependents, in order: a Secret `<capability>-config` with the connection
// settings (the binding contract), a Deployment running the official redis
// image, and a Service. Ready when the Deployment reports its replicas
// available. The capability logic is in plugin.go.
package main

import "halkyon.io/plugins/sdk"

func main() { sdk.Serve(redis) }
