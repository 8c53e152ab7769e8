package sdk

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	capabilityv1 "halkyon.io/plugins/gen/capability/v1"
)

var ctx0 = context.Background()

const capabilityText = `{"metadata":{"name":"web"},"spec":{"category":"test","type":"t","parameters":[{"name":"SIZE","value":"2"}]}}`

// testPlugin has a config map that is updated when its size changes, and a
// deployment that is checked for readiness and panics when asked to.
func testPlugin() Plugin {
	return Plugin{
		Name: "p", Category: "test",
		Types:      []Type{{Type: "t", Versions: []string{"1", "2"}}},
		Parameters: []Parameter{{Name: "SIZE", Default: "1"}, {Name: "MODE"}},
		Dependents: []Dependent{
			{
				ID: "config", APIVersion: "v1", Kind: "ConfigMap", NotOwned: true, Binding: true,
				Build: func(c *Context) any {
					return Object{"metadata": Object{"name": c.Name, "namespace": c.Namespace}, "data": map[string]string{"size": c.Param("SIZE"), "version": c.Version}}
				},
				Update: func(existing, desired Object, _ *Context) any {
					if Same(existing, desired, []any{"data", "size"}) {
						return nil
					}
					return desired
				},
			},
			{
				ID: "deployment", APIVersion: "apps/v1", Kind: "Deployment", NotWatched: true, NotCreated: true,
				Build: func(c *Context) any {
					if c.Param("MODE") == "panic" {
						panic("no image for this mode")
					}
					return Object{"kind": "Deployment"}
				},
				Ready: func(o Object, _ *Context) Condition {
					if Int(o, 0, "status", "availableReplicas") >= 1 {
						return Condition{State: StateReady, Reason: "Available", Attributes: map[string]string{"replicas": String(o, "status", "note")}}
					}
					return Pending("NotAvailable", "0 available")
				},
			},
		},
	}
}

func newTestServer(t *testing.T) capabilityv1.CapabilityPluginServer {
	t.Helper()
	s, err := NewServer(testPlugin(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDescribeDerivesTheFlagsFromTheDeclaration(t *testing.T) {
	d, _ := newTestServer(t).Describe(ctx0, &capabilityv1.DescribeRequest{})
	if d.Types[0].DefaultVersion != "2" {
		t.Errorf("default version %q, want the last listed", d.Types[0].DefaultVersion)
	}
	got := []bool{}
	for _, x := range d.Dependents {
		got = append(got, x.Watched, x.Owned, x.Created, x.Updated, x.CheckedForReadiness, x.Binding)
	}
	want := []bool{true, false, true, true, false, true, false, true, false, false, true, false}
	if len(got) != len(want) {
		t.Fatalf("flags %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("flags %v, want %v", got, want)
		}
	}
}

func TestBuildResolvesVersionNamespaceAndParameters(t *testing.T) {
	r, err := newTestServer(t).BuildDependents(ctx0, &capabilityv1.BuildDependentsRequest{Capability: []byte(capabilityText)})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"apiVersion":"v1","data":{"size":"2","version":"2"},"kind":"ConfigMap","metadata":{"name":"web","namespace":"default"}}`
	if len(r.Dependents) != 2 || r.Dependents[0].Id != "config" || string(r.Dependents[0].Object) != want {
		t.Errorf("got %v, want config %s first", r.Dependents, want)
	}
}

func TestAnObjectOfAnotherKindIsRefused(t *testing.T) {
	p := testPlugin()
	p.Dependents[0].Build = func(*Context) any { return Object{"apiVersion": "v1", "kind": "Secret"} }
	s, _ := NewServer(p, nil)
	_, err := s.BuildDependents(ctx0, &capabilityv1.BuildDependentsRequest{Capability: []byte(capabilityText)})
	want := "building dependent config failed: dependent config is declared as v1 ConfigMap but built a v1 Secret"
	if status.Code(err) != codes.Internal || status.Convert(err).Message() != want {
		t.Errorf("got %v, want %q", err, want)
	}
}

func TestAPanickingBuildIsAnInternalErrorNamingTheDependent(t *testing.T) {
	c := strings.Replace(capabilityText, `"parameters":[`, `"parameters":[{"name":"MODE","value":"panic"},`, 1)
	_, err := newTestServer(t).BuildDependents(ctx0, &capabilityv1.BuildDependentsRequest{Capability: []byte(c)})
	if status.Code(err) != codes.Internal || status.Convert(err).Message() != "building dependent deployment failed: no image for this mode" {
		t.Errorf("got %v", err)
	}
}

func TestAnUnreadableCapabilityIsInvalidArgument(t *testing.T) {
	for _, c := range []string{`{"metadata":{"name":"x"},"spec":"nope"}`, `{"metadata":{"name":"x"},"spec":{"type":"t"}}`, `not json`} {
		_, err := newTestServer(t).CheckValidity(ctx0, &capabilityv1.CheckValidityRequest{Capability: []byte(c)})
		if status.Code(err) != codes.InvalidArgument || !strings.HasPrefix(status.Convert(err).Message(), "the Capability could not be read: ") {
			t.Errorf("%s: got %v", c, err)
		}
	}
}

func TestUpdateReturnsTheAuthorsAnswer(t *testing.T) {
	s := newTestServer(t)
	update := func(id, existing string) *capabilityv1.UpdateDependentResponse {
		r, err := s.UpdateDependent(ctx0, &capabilityv1.UpdateDependentRequest{Id: id, Capability: []byte(capabilityText), Existing: []byte(existing)})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := update("config", `{"data":{"size":"2"}}`); r.NeedsUpdate {
		t.Errorf("same size: got an update %s", r.Updated)
	}
	if r := update("config", `{"data":{"size":"1"}}`); !r.NeedsUpdate || !strings.Contains(string(r.Updated), `"size":"2"`) {
		t.Errorf("new size: got %v", r)
	}
	if r := update("deployment", `{}`); r.NeedsUpdate {
		t.Errorf("a dependent without Update is never updated, got %v", r)
	}
}

func TestEvaluateConditionsReadsObjectsAndFetchErrors(t *testing.T) {
	observed := []*capabilityv1.ObservedDependent{
		{Id: "config", Observation: &capabilityv1.ObservedDependent_Object{Object: []byte(`{}`)}},
		{Id: "deployment", Observation: &capabilityv1.ObservedDependent_Object{Object: []byte(`{"status":{"availableReplicas":0}}`)}},
		{Id: "deployment", Observation: &capabilityv1.ObservedDependent_Object{Object: []byte(`{"status":{"availableReplicas":1,"note":"one"}}`)}},
		{Id: "deployment", Observation: &capabilityv1.ObservedDependent_Error{Error: &capabilityv1.FetchError{Reason: "NotFound", Code: 404}}},
		{Id: "deployment", Observation: &capabilityv1.ObservedDependent_Error{Error: &capabilityv1.FetchError{Message: "timeout", Code: 500}}},
		{Id: "deployment"},
	}
	r, err := newTestServer(t).EvaluateConditions(ctx0, &capabilityv1.EvaluateConditionsRequest{Capability: []byte(capabilityText), Observed: observed})
	if err != nil {
		t.Fatal(err)
	}
	got := []string{}
	for _, c := range r.Conditions {
		got = append(got, c.State.String()+" "+c.Reason+" "+c.Message+" "+c.Attributes["replicas"])
	}
	want := []string{
		"CONDITION_STATE_PENDING NotAvailable 0 available ",
		"CONDITION_STATE_READY Available  one",
		"CONDITION_STATE_PENDING NotFound Deployment for web does not exist yet ",
		"CONDITION_STATE_FAILED FetchFailed timeout ",
		"CONDITION_STATE_FAILED NoObservation no object nor error was sent for deployment ",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestDescribeCarriesTheGraph(t *testing.T) {
	p := testPlugin()
	p.Dependents[1].DependsOn = []string{"config"}
	p.Dependents[0].DeletionPolicy = DeletionOrphan
	p.Dependents[0].WaitForReady = true
	s, err := NewServer(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := s.Describe(ctx0, &capabilityv1.DescribeRequest{})
	config, deployment := d.Dependents[0], d.Dependents[1]
	if config.DeletionPolicy != capabilityv1.DeletionPolicy_DELETION_POLICY_ORPHAN || !config.WaitForReady || len(config.DependsOn) != 0 {
		t.Fatalf("config: %v", config)
	}
	if deployment.DeletionPolicy != capabilityv1.DeletionPolicy_DELETION_POLICY_DELETE || strings.Join(deployment.DependsOn, ",") != "config" {
		t.Fatalf("deployment: %v", deployment)
	}
}

func TestIncludeLeavesADependentOut(t *testing.T) {
	p := testPlugin()
	p.Dependents[1].Include = func(c *Context) bool { return c.Param("MODE") == "with-deployment" }
	s, err := NewServer(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	built, err := s.BuildDependents(ctx0, &capabilityv1.BuildDependentsRequest{Capability: []byte(capabilityText)})
	if err != nil || len(built.Dependents) != 1 || built.Dependents[0].Id != "config" {
		t.Fatalf("built %v, %v", built, err)
	}
}

func TestACycleFailsTheDeclaration(t *testing.T) {
	p := testPlugin()
	p.Dependents[0].DependsOn = []string{"deployment"}
	p.Dependents[1].DependsOn = []string{"config"}
	_, err := NewServer(p, nil)
	if err == nil || !strings.Contains(err.Error(), "the dependents form a cycle: config -> deployment -> config") {
		t.Fatalf("got %v", err)
	}
}

func TestDeletionPolicyForDecidesPerCapability(t *testing.T) {
	p := testPlugin()
	p.Dependents[0].DeletionPolicyFor = func(c *Context) DeletionPolicy {
		if c.Param("SIZE") == "2" {
			return DeletionOrphan
		}
		return DeletionDelete
	}
	s, err := NewServer(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	built, err := s.BuildDependents(ctx0, &capabilityv1.BuildDependentsRequest{Capability: []byte(capabilityText)})
	if err != nil || built.Dependents[0].DeletionPolicy == nil || *built.Dependents[0].DeletionPolicy != capabilityv1.DeletionPolicy_DELETION_POLICY_ORPHAN {
		t.Fatalf("built %v, %v", built, err)
	}
	if built.Dependents[1].DeletionPolicy != nil {
		t.Fatalf("a dependent without DeletionPolicyFor sends none: %v", built.Dependents[1])
	}
}
