package sdk

// The Go half of the binding entries parity check: testdata/binding.json is
// also run by the TypeScript SDK's test (test/unit/sdk-parity.test.ts), so
// both SDKs accept the same binding Secrets and name the same problems.

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
)

type bindingFixtures struct {
	Cases []struct {
		Name     string            `json:"name"`
		Entries  map[string]string `json:"entries"`
		Problems []string          `json:"problems"`
	} `json:"cases"`
}

func TestBindingEntriesParity(t *testing.T) {
	raw, err := os.ReadFile("testdata/binding.json")
	if err != nil {
		t.Fatal(err)
	}
	var fixtures bindingFixtures
	if err := json.Unmarshal(raw, &fixtures); err != nil {
		t.Fatal(err)
	}
	if len(fixtures.Cases) < 10 {
		t.Fatalf("only %d cases in testdata/binding.json", len(fixtures.Cases))
	}
	for _, c := range fixtures.Cases {
		t.Run(c.Name, func(t *testing.T) {
			if got := CheckBindingEntries(c.Entries); !slices.Equal(got, c.Problems) {
				t.Errorf("CheckBindingEntries = %q, want %q", got, c.Problems)
			}
			_, err := checkedEntries(c.Entries)
			want := ""
			if len(c.Problems) > 0 {
				want = "binding entries break the Service Binding spec: " + strings.Join(c.Problems, "; ")
			}
			if got := errorText(err); got != want {
				t.Errorf("error = %q, want %q", got, want)
			}
		})
	}
}

func errorText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestBindingEntriesLeavesOutEmptyFields(t *testing.T) {
	data, err := BindingEntries(Binding{Type: "redis", Host: "sessions.shop.svc", Port: "6379", PrivateKey: "-----BEGIN PRIVATE KEY-----\n"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"type": "redis", "host": "sessions.shop.svc", "port": "6379", "private-key": "-----BEGIN PRIVATE KEY-----\n"}
	if len(data) != len(want) {
		t.Fatalf("BindingEntries = %v, want %v", data, want)
	}
	for k, v := range want {
		if data[k] != v {
			t.Errorf("entry %s = %q, want %q", k, data[k], v)
		}
	}
	if _, err := BindingEntries(Binding{Host: "sessions.shop.svc"}); err == nil || !strings.Contains(err.Error(), "type is missing") {
		t.Errorf("a Binding without a type: error %v, want one naming the missing type", err)
	}
}
