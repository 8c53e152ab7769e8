package sdk

// What a plugin author declares: the capability logic, nothing about RPC.

import (
	"errors"
	"fmt"
	"slices"
)

// Plugin declares a plugin: the category it serves, its types, parameters
// and dependents, and optionally its own validity checks.
type Plugin struct {
	// Name in logs and listings, e.g. "redis".
	Name string
	// Category of the Capabilities served, e.g. "cache".
	Category string
	Types    []Type
	// Parameters understood, read from a Capability's spec.parameters.
	Parameters []Parameter
	// RefuseUnknownParameters: a Capability may give only the declared
	// parameters; the API server refuses any other name.
	RefuseUnknownParameters bool
	// Validate adds the plugin's own checks, run when the common ones pass;
	// each string is an error for the user.
	Validate func(ctx *Context) []string
	// Dependents in the order they are applied, unless they declare DependsOn.
	Dependents []Dependent
}

// Type is a Capability type the plugin serves, e.g. redis 7.2, 7.4, 8.0.
type Type struct {
	Type     string
	Versions []string
	// DefaultVersion is used when a Capability names no version. Default:
	// the last of Versions.
	DefaultVersion string
}

// Parameter is a parameter the plugin understands. Its type and bounds are
// enforced twice with the same rules and sentences: by the API server,
// through the admission policy the operator derives from Describe (kubectl
// apply refuses a wrong value), and by CheckValidity.
//
//	sdk.Parameter{Name: "PORT", Type: sdk.ParamInteger, Minimum: sdk.Bound(1024), Maximum: sdk.Bound(65535), Default: "6379"}
//	sdk.Parameter{Name: "TIER", Type: sdk.ParamEnum, Values: []string{"dev", "prod"}}
//	sdk.Parameter{Name: "NAME", Pattern: `^[a-z][a-z0-9-]*$`}
//	sdk.Parameter{Name: "PASSWORD", Secret: true}
type Parameter struct {
	Name        string
	Description string
	Required    bool
	// Secret: the value is never logged nor listed, and the API server
	// refuses it as a literal value (a Capability gives it with valueFrom).
	Secret bool
	// Default is used when the Capability does not set the parameter; it
	// must itself be allowed.
	Default string
	// Type of the value; "" is ParamString.
	Type ParamType
	// Values an enum may take.
	Values []string
	// Pattern is an RE2 regular expression a string value must match
	// (anywhere, unless anchored with ^ and $).
	Pattern string
	// Minimum and Maximum bound an integer, inclusive; nil is unbounded.
	Minimum *int64
	Maximum *int64
}

// Dependent is one Kubernetes object the Capability needs.
//
// The flags are named so that their zero value is the usual case: a
// dependent is watched, owned by the Capability and created when missing
// unless it says otherwise. It is updated when it has Update and checked for
// readiness when it has Ready.
type Dependent struct {
	// ID is stable across plugin versions, e.g. "config-secret": the
	// operator keys its state on it.
	ID         string
	APIVersion string
	Kind       string
	// Build returns the desired object: an Object, or any value
	// encoding/json marshals into one. Name and namespace usually derive
	// from the Capability's.
	Build func(ctx *Context) any
	// Update is given the existing object and the freshly built one (both
	// as JSON trees) and returns the object to apply, or nil when nothing
	// needs to change. When absent, an existing object is left as it is.
	Update func(existing, desired Object, ctx *Context) any
	// Ready tells how ready the observed object is. When absent, the
	// dependent does not count for readiness.
	Ready func(observed Object, ctx *Context) Condition
	// NotWatched: the operator does not watch objects of this kind.
	NotWatched bool
	// NotOwned: no controller owner reference to the Capability is set.
	NotOwned bool
	// NotCreated: the operator does not create the object when it is missing.
	NotCreated bool
	// Binding: this Secret holds the settings a workload binds to; the
	// operator publishes its name in the Capability's status.
	Binding bool
	// DependsOn lists the ids of the dependents this one is applied after,
	// and deleted before. When no dependent of the plugin sets it, each comes
	// after the one declared before it. A cycle or an unknown id fails the
	// declaration (and the operator refuses such a plugin at load).
	//
	//	DependsOn: []string{"creds", "config"}
	DependsOn []string
	// WaitForReady: the dependents that depend on this one are neither
	// created nor updated until Ready says it is ready.
	WaitForReady bool
	// DeletionPolicy: DeletionOrphan keeps the object when the Capability
	// is deleted or the dependent is no longer built. Default: DeletionDelete.
	DeletionPolicy DeletionPolicy
	// DeletionPolicyFor, when set, decides the deletion policy per
	// Capability, replacing DeletionPolicy for it.
	//
	//	DeletionPolicyFor: func(ctx *sdk.Context) sdk.DeletionPolicy {
	//		if ctx.Param("KEEP_SECRET") == "true" {
	//			return sdk.DeletionOrphan
	//		}
	//		return sdk.DeletionDelete
	//	}
	DeletionPolicyFor func(ctx *Context) DeletionPolicy
	// Include says whether the Capability wants this dependent now; nil
	// means always. A dependent left out is not applied, and the operator
	// removes it (by its DeletionPolicy) if it applied it before.
	//
	//	Include: func(ctx *sdk.Context) bool { return ctx.Param("EXPOSE") == "true" }
	Include func(ctx *Context) bool
}

// State is how ready a dependent is.
type State int

const (
	StateReady State = iota + 1
	StatePending
	StateFailed
)

// Condition is how ready a dependent is, with a reason and a message for users.
type Condition struct {
	State State
	// Reason is a CamelCase word, e.g. "ReplicasNotReady".
	Reason     string
	Message    string
	Attributes map[string]string
}

// Ready is a ready condition, e.g. Ready("ReplicasReady", "1/1 replicas ready").
func Ready(reason, message string) Condition {
	return Condition{State: StateReady, Reason: reason, Message: message}
}

// Pending is a pending condition, e.g. Pending("ReplicasNotReady", "0/1 replicas ready").
func Pending(reason, message string) Condition {
	return Condition{State: StatePending, Reason: reason, Message: message}
}

// Failed is a failed condition, e.g. Failed("ImagePullFailed", "image redis:99 not found").
func Failed(reason, message string) Condition {
	return Condition{State: StateFailed, Reason: reason, Message: message}
}

// defaultVersion is the declared default version, or the last listed.
func (t Type) defaultVersion() string {
	if t.DefaultVersion != "" || len(t.Versions) == 0 {
		return t.DefaultVersion
	}
	return t.Versions[len(t.Versions)-1]
}

// check finds the mistakes of a declaration, so that a plugin fails when it
// starts rather than on the first Capability.
func (p *Plugin) check() error {
	problems := []string{}
	if isBlank(p.Name) {
		problems = append(problems, msgNameEmpty())
	}
	if isBlank(p.Category) {
		problems = append(problems, msgCategoryEmpty())
	}
	if len(p.Types) == 0 {
		problems = append(problems, msgNoTypes())
	}
	for _, t := range p.Types {
		if len(t.Versions) == 0 {
			problems = append(problems, msgNoVersions(t.Type))
		}
		if t.DefaultVersion != "" && !slices.Contains(t.Versions, t.DefaultVersion) {
			problems = append(problems, msgBadDefault(t.Type, t.DefaultVersion, t.Versions))
		}
	}
	params := map[string]bool{}
	for _, x := range p.Parameters {
		if params[x.Name] {
			problems = append(problems, msgParameterTwice(x.Name))
		}
		params[x.Name] = true
		problems = append(problems, x.problems()...)
	}
	ids := map[string]bool{}
	for _, d := range p.Dependents {
		if ids[d.ID] {
			problems = append(problems, msgDependentIDTwice(d.ID))
		}
		ids[d.ID] = true
		if d.Build == nil {
			problems = append(problems, msgNoBuild(d.ID))
		}
		if d.DeletionPolicy != "" && d.DeletionPolicy != DeletionDelete && d.DeletionPolicy != DeletionOrphan {
			problems = append(problems, fmt.Sprintf("dependent %s: deletion policy %q is neither delete nor orphan", d.ID, d.DeletionPolicy))
		}
	}
	if graph := graphProblem(p.Dependents); graph != "" {
		problems = append(problems, graph)
	}
	if len(problems) > 0 {
		return errors.New(msgInvalidDefinition(problems))
	}
	return nil
}
