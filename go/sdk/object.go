package sdk

// Objects as JSON trees, and the few readers an Update or Ready needs.

import (
	"encoding/json"
	"reflect"
	"strconv"
)

// Object is a Kubernetes object as a JSON tree: what Update and Ready are
// given (maps, []any, float64 numbers, strings, bools), and a convenient
// value for Build to return.
type Object = map[string]any

// Get is the value at path in a JSON tree: keys of objects and indexes of
// arrays, e.g. Get(deployment, "spec", "template", "spec", "containers", 0,
// "image"). It is nil when the path does not exist.
func Get(tree any, path ...any) any {
	for _, step := range path {
		switch node := tree.(type) {
		case map[string]any:
			key, ok := step.(string)
			if !ok {
				return nil
			}
			tree = node[key]
		case []any:
			i, ok := step.(int)
			if !ok || i < 0 || i >= len(node) {
				return nil
			}
			tree = node[i]
		default:
			return nil
		}
	}
	return tree
}

// String is the string at path, or "".
func String(tree any, path ...any) string {
	s, _ := Get(tree, path...).(string)
	return s
}

// Int is the number at path, or fallback when there is none.
func Int(tree any, fallback int64, path ...any) int64 {
	switch n := Get(tree, path...).(type) {
	case float64:
		return int64(n)
	case int:
		return int64(n)
	case int64:
		return n
	case string:
		if v, err := strconv.ParseInt(n, 10, 64); err == nil {
			return v
		}
	}
	return fallback
}

// Same tells whether two trees are equal at every path given (all of them
// when none is), comparing their JSON: a decoded tree and a built value with
// the same JSON are the same.
func Same(a, b any, paths ...[]any) bool {
	if len(paths) == 0 {
		return sameJSON(a, b)
	}
	for _, p := range paths {
		if !sameJSON(Get(normal(a), p...), Get(normal(b), p...)) {
			return false
		}
	}
	return true
}

func sameJSON(a, b any) bool { return reflect.DeepEqual(normal(a), normal(b)) }

// normal is v as encoding/json decodes its JSON.
func normal(v any) any {
	raw, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	if json.Unmarshal(raw, &out) != nil {
		return v
	}
	return out
}

// Decode reads a JSON tree into a typed value, e.g. a struct with the few
// fields a Ready reads.
func Decode[T any](tree any) (T, error) {
	var out T
	raw, err := json.Marshal(tree)
	if err == nil {
		err = json.Unmarshal(raw, &out)
	}
	return out, err
}
