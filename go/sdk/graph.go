package sdk

// The order of a plugin's dependents (Dependent.DependsOn), checked as the
// operator checks it (src/protocol/DependentGraph.ts): a cycle or an unknown
// id fails the declaration, in the same words.

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
)

// DeletionPolicy says what the operator does with a dependent's object when
// its Capability is deleted, or when the dependent is no longer built.
type DeletionPolicy string

const (
	// DeletionDelete (the default, also when empty): the object is deleted.
	DeletionDelete DeletionPolicy = "delete"
	// DeletionOrphan: the object is kept, without the Capability's owner
	// reference and halkyon's label, so its data survives.
	DeletionOrphan DeletionPolicy = "orphan"
)

// dependencies is each id's dependencies: declared, or the previous one in
// the list when no dependent declares any.
func dependencies(ds []Dependent) map[string][]string {
	explicit := slices.ContainsFunc(ds, func(d Dependent) bool { return len(d.DependsOn) > 0 })
	out := map[string][]string{}
	for i, d := range ds {
		switch {
		case explicit:
			seen := []string{}
			for _, x := range d.DependsOn {
				if !slices.Contains(seen, x) {
					seen = append(seen, x)
				}
			}
			out[d.ID] = seen
		case i == 0 || ds[i-1].ID == d.ID:
			out[d.ID] = nil
		default:
			out[d.ID] = []string{ds[i-1].ID}
		}
	}
	return out
}

// graphProblem says why the dependents cannot be ordered, or "" when they can.
func graphProblem(ds []Dependent) string {
	ids := []string{}
	for _, d := range ds {
		if !slices.Contains(ids, d.ID) {
			ids = append(ids, d.ID)
		}
	}
	for _, d := range ds {
		for _, x := range d.DependsOn {
			if !slices.Contains(ids, x) {
				return fmt.Sprintf("dependent %s depends on %s, which is not declared (declared: %s)", d.ID, x, strings.Join(ids, ", "))
			}
		}
	}
	deps := dependencies(ds)
	state := map[string]string{}
	path := []string{}
	var visit func(id string) []string
	visit = func(id string) []string {
		switch state[id] {
		case "done":
			return nil
		case "open":
			return append(slices.Clone(path[slices.Index(path, id):]), id)
		}
		state[id] = "open"
		path = append(path, id)
		for _, x := range deps[id] {
			if cycle := visit(x); cycle != nil {
				return cycle
			}
		}
		path = path[:len(path)-1]
		state[id] = "done"
		return nil
	}
	for _, d := range ds {
		if cycle := visit(d.ID); cycle != nil {
			slices.Reverse(cycle)
			return "the dependents form a cycle: " + strings.Join(cycle, " -> ")
		}
	}
	return ""
}

// SecretValue is a Secret's entry, decoded (a Secret holds base64 in data),
// from an observed Secret; ok is false when the Secret or the key is missing.
//
//	password, _ := sdk.SecretValue(ctx.Observed["creds"], "password")
func SecretValue(secret Object, key string) (value string, ok bool) {
	if encoded := String(secret, "data", key); encoded != "" {
		decoded, err := base64.StdEncoding.DecodeString(encoded)
		if err == nil {
			return string(decoded), true
		}
	}
	if plain, found := Get(secret, "stringData", key).(string); found {
		return plain, true
	}
	return "", false
}
