package sdk

import (
	"encoding/json"
	"testing"
)

func TestReadersOfAJSONTree(t *testing.T) {
	var tree Object
	_ = json.Unmarshal([]byte(`{"spec":{"replicas":3,"ports":[{"port":80,"name":"web"}]},"status":{"count":"7"}}`), &tree)
	if got := Get(tree, "spec", "ports", 0, "name"); got != "web" {
		t.Errorf("Get: %v", got)
	}
	if got := []any{Get(tree, "spec", "ports", 1), Get(tree, "spec", 0), Get(tree, "spec", "replicas", "x")}; got[0] != nil || got[1] != nil || got[2] != nil {
		t.Errorf("missing paths: %v", got)
	}
	if got := []int64{Int(tree, -1, "spec", "replicas"), Int(tree, -1, "status", "count"), Int(tree, -1, "status", "none")}; got[0] != 3 || got[1] != 7 || got[2] != -1 {
		t.Errorf("Int: %v", got)
	}
	if String(tree, "spec", "ports", 0, "port") != "" || String(tree, "spec", "ports", 0, "name") != "web" {
		t.Error("String reads only strings")
	}
	built := Object{"spec": Object{"replicas": 3, "ports": []Object{{"port": 80, "name": "http"}}}}
	if !Same(tree, built, []any{"spec", "replicas"}, []any{"spec", "ports", 0, "port"}) || Same(tree, built, []any{"spec", "ports"}) || Same(tree, built) {
		t.Error("Same compares JSON at the given paths, or all of it")
	}
	type spec struct {
		Replicas int `json:"replicas"`
	}
	if s, err := Decode[spec](Get(tree, "spec")); err != nil || s.Replicas != 3 {
		t.Errorf("Decode: %v %v", s, err)
	}
}
