// Package sdk is halkyon's plugin SDK for Go: a plugin declares what it
// serves and how to build its Kubernetes objects, and Serve answers the
// host's five RPCs (Describe, CheckValidity, BuildDependents,
// UpdateDependent, EvaluateConditions) from that declaration.
//
// It is the Go twin of the TypeScript SDK (halkyon/sdk): the same
// declaration (a Plugin with its Types, Parameters and Dependents, each
// Dependent with Build, and optionally Update and Ready), the same common
// validity checks and the same messages, byte for byte. A plugin written
// with either reads alike to the operator and to its users.
//
// What a plugin's functions see is a Context: the Capability, its name and
// namespace, the version (the requested one, or the type's default) and the
// parameters (declared defaults, overridden by the Capability's values).
// Objects are JSON trees (Object); Build may also return any value
// encoding/json can marshal, such as the types of k8s.io/api.
//
// A function that panics does not stop the plugin: the host gets an INTERNAL
// error naming the dependent ("building dependent service failed: …").
//
// Serve reuses the go-plugin glue of halkyon.io/plugins/shared: the
// handshake, the hclog JSON logger on stderr, and the watch that exits the
// plugin when its host dies. NewServer gives the same RPCs in process, for
// tests.
package sdk
