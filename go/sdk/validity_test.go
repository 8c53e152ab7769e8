package sdk

// The Go half of the SDK parity check: testdata/validity.json is also run by
// the TypeScript SDK's test (test/unit/sdk-parity.test.ts), so both answer
// CheckValidity, an unknown dependent and a bad declaration alike.

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	capabilityv1 "halkyon.io/plugins/gen/capability/v1"
)

type declaration struct {
	Name                    string      `json:"name"`
	Category                string      `json:"category"`
	Types                   []Type      `json:"types"`
	Parameters              []Parameter `json:"parameters"`
	RefuseUnknownParameters bool        `json:"refuseUnknownParameters"`
	Dependents              []string    `json:"dependents"`
	// Graph is each dependent's DependsOn, by id.
	Graph map[string][]string `json:"graph"`
}

func (d declaration) plugin() Plugin {
	p := Plugin{Name: d.Name, Category: d.Category, Types: d.Types, Parameters: d.Parameters, RefuseUnknownParameters: d.RefuseUnknownParameters}
	for _, id := range d.Dependents {
		p.Dependents = append(p.Dependents, Dependent{
			ID: id, APIVersion: "v1", Kind: "ConfigMap", DependsOn: d.Graph[id], Build: func(*Context) any { return Object{} },
		})
	}
	return p
}

type validityCase struct {
	Name   string          `json:"name"`
	Spec   json.RawMessage `json:"spec"`
	Errors []string        `json:"errors"`
}

type fixtures struct {
	Plugin            declaration    `json:"plugin"`
	Cases             []validityCase `json:"cases"`
	UnknownDependents []struct {
		ID      string `json:"id"`
		Message string `json:"message"`
	} `json:"unknownDependents"`
	Definitions []struct {
		Name   string      `json:"name"`
		Plugin declaration `json:"plugin"`
		Error  string      `json:"error"`
	} `json:"definitions"`
	// Typed: a plugin with typed parameters, whose sentences the admission policy says too.
	Typed struct {
		Plugin declaration    `json:"plugin"`
		Cases  []validityCase `json:"cases"`
	} `json:"typed"`
}

func loadFixtures(t *testing.T) fixtures {
	t.Helper()
	raw, err := os.ReadFile("testdata/validity.json")
	if err != nil {
		t.Fatal(err)
	}
	var f fixtures
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

// capabilityJSON is a whole Capability around a fixture's spec.
func capabilityJSON(spec json.RawMessage) []byte {
	return []byte(`{"apiVersion":"halkyon.io/v1beta1","kind":"Capability","metadata":{"name":"sessions","namespace":"shop"},"spec":` + string(spec) + `}`)
}

func TestCheckValiditySaysWhatTheTypeScriptSDKSays(t *testing.T) {
	f := loadFixtures(t)
	checkCases(t, f.Plugin, f.Cases)
}

func TestTypedParametersAreCheckedAsTheAdmissionPolicyChecksThem(t *testing.T) {
	f := loadFixtures(t)
	if len(f.Typed.Cases) < 10 {
		t.Fatalf("only %d typed cases", len(f.Typed.Cases))
	}
	checkCases(t, f.Typed.Plugin, f.Typed.Cases)
}

func checkCases(t *testing.T, d declaration, cases []validityCase) {
	s, err := NewServer(d.plugin(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			got, err := s.CheckValidity(context.Background(), &capabilityv1.CheckValidityRequest{Capability: capabilityJSON(c.Spec)})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Errors, c.Errors) && !(len(got.Errors) == 0 && len(c.Errors) == 0) {
				t.Errorf("errors:\n got  %q\n want %q", got.Errors, c.Errors)
			}
		})
	}
}

func TestAnUnknownDependentIsNamedWithTheKnownOnes(t *testing.T) {
	f := loadFixtures(t)
	s, _ := NewServer(f.Plugin.plugin(), nil)
	for _, u := range f.UnknownDependents {
		_, err := s.UpdateDependent(context.Background(), &capabilityv1.UpdateDependentRequest{Id: u.ID, Capability: capabilityJSON(f.Cases[0].Spec), Existing: []byte("{}")})
		if status.Code(err) != codes.NotFound || status.Convert(err).Message() != u.Message {
			t.Errorf("got %v, want NotFound %q", err, u.Message)
		}
	}
}

func TestADeclarationWithMistakesIsRefusedWithEveryProblem(t *testing.T) {
	for _, d := range loadFixtures(t).Definitions {
		t.Run(d.Name, func(t *testing.T) {
			_, err := NewServer(d.Plugin.plugin(), nil)
			if err == nil || err.Error() != d.Error {
				t.Errorf("got %v, want %q", err, d.Error)
			}
		})
	}
}
