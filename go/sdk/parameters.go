package sdk

// Typed parameters: the rules a value follows and the sentences that refuse
// one, the same, byte for byte, as the TypeScript SDK's and the admission
// policy's (src/api/ParameterRules.ts). A value is always a string in a
// Capability; an empty one counts as not given and is never checked. An
// integer has at most 18 digits (CEL's int() never overflows on it).

import (
	"fmt"
	"math/big"
	"regexp"
	"slices"
	"strings"

	capabilityv1 "halkyon.io/plugins/gen/capability/v1"
)

// ParamType is what a parameter's value must spell.
type ParamType string

const (
	// ParamString is any string, or one matching Parameter.Pattern. The
	// zero value ("") means the same.
	ParamString ParamType = "string"
	// ParamInteger is a decimal integer, within Minimum and Maximum.
	ParamInteger ParamType = "integer"
	// ParamBoolean is "true" or "false".
	ParamBoolean ParamType = "boolean"
	// ParamEnum is one of Parameter.Values.
	ParamEnum ParamType = "enum"
)

// Bound is a Minimum or Maximum, e.g. Minimum: sdk.Bound(1024).
func Bound(n int64) *int64 { return &n }

var integerPattern = regexp.MustCompile(`^-?[0-9]{1,18}$`)

// allowed is what a value must be, for a person; "" when any string is.
func (x Parameter) allowed() string {
	switch x.Type {
	case ParamInteger:
		switch {
		case x.Minimum != nil && x.Maximum != nil:
			return fmt.Sprintf("an integer from %d to %d", *x.Minimum, *x.Maximum)
		case x.Minimum != nil:
			return fmt.Sprintf("an integer of at least %d", *x.Minimum)
		case x.Maximum != nil:
			return fmt.Sprintf("an integer of at most %d", *x.Maximum)
		}
		return "an integer"
	case ParamBoolean:
		return "true or false"
	case ParamEnum:
		return "one of " + strings.Join(x.Values, ", ")
	}
	if x.Pattern == "" {
		return ""
	}
	return "a string matching " + x.Pattern
}

// valueAllowed tells whether a non-empty value is one the parameter allows.
func (x Parameter) valueAllowed(value string) bool {
	switch x.Type {
	case ParamInteger:
		if !integerPattern.MatchString(value) {
			return false
		}
		n, _ := new(big.Int).SetString(value, 10)
		return (x.Minimum == nil || n.Cmp(big.NewInt(*x.Minimum)) >= 0) && (x.Maximum == nil || n.Cmp(big.NewInt(*x.Maximum)) <= 0)
	case ParamBoolean:
		return value == "true" || value == "false"
	case ParamEnum:
		return slices.Contains(x.Values, value)
	}
	if x.Pattern == "" {
		return true
	}
	re, err := regexp.Compile(x.Pattern)
	return err == nil && re.MatchString(value)
}

// problems are the mistakes of one parameter's declaration.
func (x Parameter) problems() []string {
	out := []string{}
	if x.Type == ParamEnum && len(x.Values) == 0 {
		out = append(out, msgEnumWithoutValues(x.Name))
	}
	if x.Minimum != nil && x.Maximum != nil && *x.Minimum > *x.Maximum {
		out = append(out, msgBoundsReversed(x.Name, *x.Minimum, *x.Maximum))
	}
	if (x.Type == "" || x.Type == ParamString) && x.Pattern != "" {
		if _, err := regexp.Compile(x.Pattern); err != nil {
			return append(out, msgBadPattern(x.Name, x.Pattern))
		}
	}
	if a := x.allowed(); a != "" && x.Default != "" && !x.valueAllowed(x.Default) {
		out = append(out, msgDefaultNotAllowed(x.Name, x.Default, a))
	}
	return out
}

var paramTypes = map[ParamType]capabilityv1.ParameterType{
	"":           capabilityv1.ParameterType_PARAMETER_TYPE_STRING,
	ParamString:  capabilityv1.ParameterType_PARAMETER_TYPE_STRING,
	ParamInteger: capabilityv1.ParameterType_PARAMETER_TYPE_INTEGER,
	ParamBoolean: capabilityv1.ParameterType_PARAMETER_TYPE_BOOLEAN,
	ParamEnum:    capabilityv1.ParameterType_PARAMETER_TYPE_ENUM,
}

// info is the parameter as Describe sends it.
func (x Parameter) info() *capabilityv1.ParameterInfo {
	return &capabilityv1.ParameterInfo{
		Name: x.Name, Description: x.Description, Required: x.Required, Secret: x.Secret, DefaultValue: x.Default,
		Type: paramTypes[x.Type], AllowedValues: x.Values, Pattern: x.Pattern, Minimum: x.Minimum, Maximum: x.Maximum,
	}
}

// parameterErrors is what is wrong with the given parameters' values and names.
func (p *Plugin) parameterErrors(c *Capability) []string {
	errs := []string{}
	names := []string{}
	for _, d := range p.Parameters {
		names = append(names, d.Name)
	}
	for _, given := range c.Spec.Parameters {
		i := slices.IndexFunc(p.Parameters, func(d Parameter) bool { return d.Name == given.Name })
		if i < 0 {
			if p.RefuseUnknownParameters {
				errs = append(errs, msgUnknownParameter(given.Name, p.Name, names))
			}
			continue
		}
		d := p.Parameters[i]
		if a := d.allowed(); given.Value != "" && a != "" && !d.valueAllowed(given.Value) {
			errs = append(errs, msgInvalidValue(d.Name, p.Name, a))
		}
	}
	return errs
}
