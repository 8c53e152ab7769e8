package sdk

// The Capability as the operator sends it (halkyon.io/v1beta1, JSON), what a
// plugin's functions see of it, and the checks every plugin gets.

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// Capability is the part of a halkyon.io/v1beta1 Capability a plugin reads.
type Capability struct {
	APIVersion string             `json:"apiVersion"`
	Kind       string             `json:"kind"`
	Metadata   CapabilityMetadata `json:"metadata"`
	Spec       CapabilitySpec     `json:"spec"`
}

// CapabilityMetadata is the Capability's metadata a plugin may need.
type CapabilityMetadata struct {
	Name       string            `json:"name"`
	Namespace  string            `json:"namespace,omitempty"`
	UID        string            `json:"uid,omitempty"`
	Generation int64             `json:"generation,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
}

// CapabilitySpec is what is asked for.
type CapabilitySpec struct {
	Category   string           `json:"category"`
	Type       string           `json:"type"`
	Version    string           `json:"version,omitempty"`
	Parameters []ParameterValue `json:"parameters,omitempty"`
}

// ParameterValue is one of a Capability's spec.parameters.
type ParameterValue struct {
	Name  string `json:"name"`
	Value string `json:"value,omitempty"`
}

// Context is the Capability as a dependent's functions see it.
type Context struct {
	Capability Capability
	// Name and Namespace are the Capability's ("default" when it has none).
	Name      string
	Namespace string
	// Version is the requested version, or the type's default version.
	Version string
	// Parameters are the declared defaults, overridden by the values the
	// Capability sets (an empty value does not override); an unset
	// parameter without a default is absent.
	Parameters map[string]string
	// Log is the plugin's logger (hclog JSON on stderr, read by the host).
	Log hclog.Logger
	// Observed holds this Capability's dependents as they exist now, by id
	// (only its own objects), in Build, Include and Update: what a dependent listed
	// in DependsOn produced (a generated password, an assigned port). The
	// operator asks for a build again once those are observed, and applies
	// a dependent only from such a build. Nil elsewhere.
	//
	//	password, _ := sdk.SecretValue(ctx.Observed["creds"], "password")
	Observed map[string]Object
}

// Param is a parameter's value, "" when it is absent.
func (c *Context) Param(name string) string { return c.Parameters[name] }

// decodeCapability reads a Capability with the checks the TypeScript SDK's
// schema makes of what a plugin reads.
func decodeCapability(raw []byte) (*Capability, error) {
	var wire struct {
		Metadata *CapabilityMetadata `json:"metadata"`
		Spec     *struct {
			Category *string `json:"category"`
			Type     *string `json:"type"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(raw, &wire); err != nil {
		return nil, err
	}
	switch {
	case wire.Metadata == nil || wire.Spec == nil:
		return nil, errors.New("metadata and spec are required")
	case wire.Metadata.Name == "":
		return nil, errors.New("metadata.name is required")
	case wire.Spec.Category == nil || *wire.Spec.Category == "" || wire.Spec.Type == nil || *wire.Spec.Type == "":
		return nil, errors.New("spec.category and spec.type are required and not empty")
	}
	c := &Capability{}
	if err := json.Unmarshal(raw, c); err != nil {
		return nil, err
	}
	return c, nil
}

func (p *Plugin) findType(c *Capability) *Type {
	for i := range p.Types {
		if strings.EqualFold(p.Types[i].Type, c.Spec.Type) {
			return &p.Types[i]
		}
	}
	return nil
}

// context builds what the author's functions see; Version is "" when the
// type is unknown and none is requested.
func (p *Plugin) context(c *Capability, log hclog.Logger) *Context {
	ctx := &Context{Capability: *c, Name: c.Metadata.Name, Namespace: c.Metadata.Namespace, Version: c.Spec.Version, Parameters: map[string]string{}, Log: log}
	if ctx.Namespace == "" {
		ctx.Namespace = "default"
	}
	if t := p.findType(c); ctx.Version == "" && t != nil {
		ctx.Version = t.defaultVersion()
	}
	for _, d := range p.Parameters {
		if d.Default != "" {
			ctx.Parameters[d.Name] = d.Default
		}
	}
	for _, v := range c.Spec.Parameters {
		if v.Value != "" {
			ctx.Parameters[v.Name] = v.Value
		}
	}
	return ctx
}

// validate gives the reasons a Capability cannot be provisioned: the common
// checks (category, type, version, required parameters, the given
// parameters' types and names), then the plugin's.
func (p *Plugin) validate(c *Capability, log hclog.Logger) []string {
	errs := []string{}
	if !strings.EqualFold(c.Spec.Category, p.Category) {
		errs = append(errs, msgCategoryNotServed(c.Spec.Category, p.Name, p.Category))
	}
	t := p.findType(c)
	if t == nil {
		types := []string{}
		for _, t := range p.Types {
			types = append(types, t.Type)
		}
		return append(errs, msgTypeNotServed(c.Spec.Type, p.Name, types))
	}
	if c.Spec.Version != "" && !slices.Contains(t.Versions, c.Spec.Version) {
		errs = append(errs, msgVersionNotSupported(c.Spec.Version, t.Type, p.Name, t.Versions))
	}
	ctx := p.context(c, log)
	for _, d := range p.Parameters {
		if d.Required && ctx.Parameters[d.Name] == "" {
			errs = append(errs, msgParameterRequired(d.Name))
		}
	}
	errs = append(errs, p.parameterErrors(c)...)
	if len(errs) == 0 && p.Validate != nil {
		errs = append(errs, p.Validate(ctx)...)
	}
	return errs
}

func isBlank(s string) bool { return strings.TrimSpace(s) == "" }
