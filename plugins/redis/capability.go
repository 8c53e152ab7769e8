package main

// The Capability as the operator sends it (halkyon.io/v1beta1, JSON), and
// the checks and parameter resolution the TypeScript SDK does for its
// plugins, with the same messages, so both kinds of plugin read alike.

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type capability struct {
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Spec struct {
		Category   *string `json:"category"`
		Type       *string `json:"type"`
		Version    string  `json:"version"`
		Parameters []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"parameters"`
	} `json:"spec"`
}

type parameter struct {
	name, description, defaultValue string
	required, secret                bool
}

// resolved is what the dependents are built from: the Capability with its
// version and parameters resolved.
type resolved struct {
	name, namespace, version string
	parameters               map[string]string
}

// decode reads a Capability; one that cannot be read is INVALID_ARGUMENT.
func decode(raw []byte) (*capability, error) {
	c := &capability{}
	err := json.Unmarshal(raw, c)
	switch {
	case err != nil:
	case c.Metadata.Name == "":
		err = fmt.Errorf("metadata.name is missing")
	case c.Spec.Category == nil || c.Spec.Type == nil:
		err = fmt.Errorf("spec.category and spec.type are required")
	}
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "the Capability could not be read: %v", err)
	}
	return c, nil
}

func (p *redis) resolve(c *capability) resolved {
	ctx := resolved{name: c.Metadata.Name, namespace: c.Metadata.Namespace, version: c.Spec.Version, parameters: map[string]string{}}
	if ctx.namespace == "" {
		ctx.namespace = "default"
	}
	if ctx.version == "" {
		ctx.version = DefaultVersion
	}
	for _, d := range parameters {
		if d.defaultValue != "" {
			ctx.parameters[d.name] = d.defaultValue
		}
	}
	for _, v := range c.Spec.Parameters {
		if v.Value != "" {
			ctx.parameters[v.Name] = v.Value
		}
	}
	return ctx
}

// validate gives the reasons a Capability cannot be provisioned, as sentences.
func (p *redis) validate(c *capability) []string {
	errs := []string{}
	if !strings.EqualFold(*c.Spec.Category, Category) {
		errs = append(errs, fmt.Sprintf("category %q is not served by plugin %s (it serves %q)", *c.Spec.Category, Name, Category))
	}
	if !strings.EqualFold(*c.Spec.Type, Type) {
		return append(errs, fmt.Sprintf("type %q is not served by plugin %s; supported types: %s", *c.Spec.Type, Name, Type))
	}
	if c.Spec.Version != "" && !slices.Contains(Versions, c.Spec.Version) {
		errs = append(errs, fmt.Sprintf("version %q of %s is not supported; supported versions: %s", c.Spec.Version, Type, strings.Join(Versions, ", ")))
	}
	ctx := p.resolve(c)
	for _, d := range parameters {
		if d.required && ctx.parameters[d.name] == "" {
			errs = append(errs, fmt.Sprintf("parameter %s is required", d.name))
		}
	}
	if len(errs) == 0 {
		errs = append(errs, p.check(ctx)...)
	}
	return errs
}
