package sdk

// Patterns and RE2: the Go SDK compiles a parameter's pattern with Go's
// regexp, which is RE2 as the API server's CEL is, so it needs no check of
// its own. This holds it to testdata/patterns.json, which the TypeScript SDK
// (whose RegExp takes more) checks too: each pattern RE2 refuses is refused
// here, each the two read alike is taken.

import (
	"encoding/json"
	"os"
	"regexp"
	"testing"
)

type patternCases struct {
	RefusedByRe2  []string `json:"refusedByRe2"`
	ReadOtherwise []string `json:"readOtherwise"`
	Shared        []string `json:"shared"`
}

func TestPatternsAreRE2(t *testing.T) {
	raw, err := os.ReadFile("testdata/patterns.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases patternCases
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	for _, p := range cases.RefusedByRe2 {
		if _, err := regexp.Compile(p); err == nil {
			t.Errorf("RE2 took %q, which the TypeScript SDK refuses as not RE2", p)
		}
		x := Parameter{Name: "P", Pattern: p}
		if got := x.problems(); len(got) != 1 || got[0] != msgBadPattern("P", p) {
			t.Errorf("pattern %q: problems %v, want the bad-pattern one", p, got)
		}
	}
	for _, p := range append(append([]string{}, cases.ReadOtherwise...), cases.Shared...) {
		if _, err := regexp.Compile(p); err != nil {
			t.Errorf("RE2 refused %q: %v", p, err)
		}
	}
}
