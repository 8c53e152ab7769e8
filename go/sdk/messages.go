package sdk

// The sentences the SDK says to users and plugin authors. The TypeScript SDK
// says the same ones, byte for byte (src/sdk/Messages.ts and src/sdk/DefinitionMessages.ts); testdata/validity.json
// holds cases both SDKs' tests check, so a change here must be made there too.

import (
	"fmt"
	"strings"
)

func msgCategoryNotServed(category, plugin, serves string) string {
	return fmt.Sprintf("category %s is not served by plugin %s (it serves %s)", quote(category), plugin, quote(serves))
}

func msgTypeNotServed(typ, plugin string, supported []string) string {
	return fmt.Sprintf("type %s is not served by plugin %s; supported types: %s", quote(typ), plugin, strings.Join(supported, ", "))
}

func msgVersionNotSupported(version, typ, plugin string, supported []string) string {
	return fmt.Sprintf("version %s of %s is not supported by plugin %s; supported versions: %s", quote(version), typ, plugin, strings.Join(supported, ", "))
}

func msgParameterRequired(name string) string { return fmt.Sprintf("parameter %s is required", name) }

func msgUnknownDependent(plugin, id string, has []string) string {
	return fmt.Sprintf("plugin %s has no dependent %s; it has: %s", plugin, quote(id), strings.Join(has, ", "))
}

func msgDependentMissing(kind, name string) string {
	return fmt.Sprintf("%s for %s does not exist yet", kind, name)
}

func msgBuiltOtherKind(id, apiVersion, kind, builtAPIVersion, builtKind string) string {
	return fmt.Sprintf("dependent %s is declared as %s %s but built a %s %s", id, apiVersion, kind, builtAPIVersion, builtKind)
}

func msgNoObservation(id string) string {
	return fmt.Sprintf("no object nor error was sent for %s", id)
}

func msgUnreadableCapability(err error) string {
	return fmt.Sprintf("the Capability could not be read: %v", err)
}

// msgFailed is an author's function that failed, e.g. "building dependent service failed: …".
func msgFailed(what string, err any) string { return fmt.Sprintf("%s failed: %v", what, err) }

// The problems of a plugin declaration, found when the plugin starts.
func msgInvalidDefinition(problems []string) string {
	return "invalid plugin definition: " + strings.Join(problems, "; ")
}
func msgNameEmpty() string                 { return "name is empty" }
func msgCategoryEmpty() string             { return "category is empty" }
func msgNoTypes() string                   { return "no types are declared" }
func msgNoVersions(typ string) string      { return fmt.Sprintf("type %s declares no versions", typ) }
func msgDependentIDTwice(id string) string { return fmt.Sprintf("dependent id %s is used twice", id) }
func msgBadDefault(typ, version string, versions []string) string {
	return fmt.Sprintf("type %s: default version %s is not one of %s", typ, version, strings.Join(versions, ", "))
}

// quote is JavaScript's `"${s}"`: the text between double quotes as it is
// (Go's %q would escape it, and the two SDKs must say the same thing).
func quote(s string) string { return `"` + s + `"` }

// Go only: the TypeScript SDK's types make Build required.
func msgNoBuild(id string) string { return fmt.Sprintf("dependent %s has no build function", id) }

// Typed parameters (src/api/ParameterRules.ts): also what the admission policy says.
func msgInvalidValue(name, plugin, allowed string) string {
	return fmt.Sprintf("parameter %s must be %s (plugin %s)", name, allowed, plugin)
}
func msgUnknownParameter(name, plugin string, declared []string) string {
	if len(declared) == 0 {
		return fmt.Sprintf("parameter %s is not declared by plugin %s; it declares none", name, plugin)
	}
	return fmt.Sprintf("parameter %s is not declared by plugin %s; declared parameters: %s", name, plugin, strings.Join(declared, ", "))
}

// Parameter declarations (src/sdk/DefinitionMessages.ts).
func msgParameterTwice(name string) string {
	return fmt.Sprintf("parameter %s is declared twice", name)
}
func msgEnumWithoutValues(name string) string {
	return fmt.Sprintf("parameter %s is an enum without values", name)
}
func msgBoundsReversed(name string, minimum, maximum int64) string {
	return fmt.Sprintf("parameter %s: minimum %d is above maximum %d", name, minimum, maximum)
}
func msgBadPattern(name, pattern string) string {
	return fmt.Sprintf("parameter %s: pattern %s is not a regular expression", name, pattern)
}
func msgDefaultNotAllowed(name, value, allowed string) string {
	return fmt.Sprintf("parameter %s: default %s is not %s", name, quote(value), allowed)
}
