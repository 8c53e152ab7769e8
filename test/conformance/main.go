// Command conformance is a go-plugin host: it loads a halkyon plugin (any
// language) with HashiCorp go-plugin's own client, the way Terraform or Vault
// load theirs, and reports what it observed as one JSON object on stdout, for
// test/conformance.test.ts to assert on and scripts/bench-interop.ts to print.
//
//	conformance -plugin dist/plugins/postgres.js -bun $(which bun) -mtls -mode rpc
//
// Modes: "rpc" (start, call every RPC, ping, Kill), "start" (start and
// dispense only: for handshake cases), "bench" (start-to-handshake times and
// CheckValidity round trips). It never decides pass or fail: the test does.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	capabilityv1 "halkyon.io/plugins/gen/capability/v1"
	"halkyon.io/plugins/shared"
)

type report struct {
	OK                bool            `json:"ok"`
	Stage             string          `json:"stage,omitempty"`
	Error             string          `json:"error,omitempty"`
	NegotiatedVersion int             `json:"negotiatedVersion,omitempty"`
	Protocol          string          `json:"protocol,omitempty"`
	Results           map[string]any  `json:"results,omitempty"`
	Shutdown          *shutdownReport `json:"shutdown,omitempty"`
	Bench             *benchReport    `json:"bench,omitempty"`
	Logs              []logEntry      `json:"logs"`
}

type shutdownReport struct {
	// Graceful: go-plugin's Kill closed the client without error, saw the process exit on its own
	// (its "plugin exited" line) and never sent SIGKILL, and the process exited with status 0.
	Graceful bool `json:"graceful"`
	Exited   bool `json:"exited"`
	// Killed: go-plugin gave up waiting ("plugin failed to exit gracefully") and killed the process.
	Killed bool `json:"killed"`
	// ExitError: how the process ended when not with status 0 ("exit status 1", "signal: killed").
	ExitError string  `json:"exitError,omitempty"`
	Ms        float64 `json:"ms"`
}

type benchReport struct {
	StartMs []float64 `json:"startMs"`
	CallMs  []float64 `json:"callMs"`
}

type logEntry struct {
	Time    time.Time      `json:"-"`
	Level   string         `json:"level"`
	Message string         `json:"message"`
	Module  string         `json:"module"`
	Fields  map[string]any `json:"fields"`
}

// syncBuffer collects the host logger's JSON lines; plugin stderr is relayed into it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) entries() []logEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []logEntry{}
	sc := bufio.NewScanner(bytes.NewReader(s.b.Bytes()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		raw := map[string]any{}
		if json.Unmarshal(sc.Bytes(), &raw) != nil {
			continue
		}
		e := logEntry{Fields: map[string]any{}}
		e.Level, _ = raw["@level"].(string)
		e.Message, _ = raw["@message"].(string)
		e.Module, _ = raw["@module"].(string)
		if ts, ok := raw["@timestamp"].(string); ok {
			e.Time, _ = time.Parse("2006-01-02T15:04:05.000000Z07:00", ts)
		}
		for k, v := range raw {
			if !strings.HasPrefix(k, "@") {
				e.Fields[k] = v
			}
		}
		out = append(out, e)
	}
	return out
}

type envList []string

func (e *envList) String() string     { return strings.Join(*e, ",") }
func (e *envList) Set(v string) error { *e = append(*e, v); return nil }

var (
	pluginPath   = flag.String("plugin", "", "the plugin: a native executable, or a .js bundle run with -bun")
	bunPath      = flag.String("bun", "bun", "the bun binary that runs .js bundles")
	mtls         = flag.Bool("mtls", false, "AutoMTLS")
	mux          = flag.Bool("mux", false, "ask for gRPC broker multiplexing (PLUGIN_MULTIPLEX_GRPC)")
	startTimeout = flag.Duration("start-timeout", time.Minute, "how long to wait for the handshake")
	mode         = flag.String("mode", "rpc", "rpc, start or bench")
	capJSON      = flag.String("capability", `{"metadata":{"name":"db","namespace":"default"},"spec":{"category":"database","type":"postgres","version":"17"}}`, "the Capability sent in calls")
	starts       = flag.Int("starts", 20, "bench: starts to time")
	calls        = flag.Int("calls", 2000, "bench: CheckValidity calls to time")
	env          envList
)

func main() {
	flag.Var(&env, "env", "KEY=VALUE added to the plugin's environment (repeatable)")
	flag.Parse()
	logs := &syncBuffer{}
	r := run(logs)
	r.Logs = logs.entries()
	_ = json.NewEncoder(os.Stdout).Encode(r)
}

func newClient(logs *syncBuffer) *plugin.Client {
	cmd := exec.Command(*pluginPath)
	if strings.HasSuffix(*pluginPath, ".js") {
		cmd = exec.Command(*bunPath, *pluginPath)
	}
	cmd.Env = append(os.Environ(), env...)
	return plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:     shared.Handshake,
		Plugins:             shared.PluginSet(nil),
		Cmd:                 cmd,
		AllowedProtocols:    []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:            *mtls,
		GRPCBrokerMultiplex: *mux,
		StartTimeout:        *startTimeout,
		Logger:              hclog.New(&hclog.LoggerOptions{Name: "host", Level: hclog.Trace, JSONFormat: true, Output: logs}),
	})
}

func run(logs *syncBuffer) report {
	if *mode == "bench" {
		return bench(logs)
	}
	client := newClient(logs)
	defer client.Kill()
	fail := func(stage string, err error) report { return report{Stage: stage, Error: err.Error()} }
	rpcClient, err := client.Client()
	if err != nil {
		return fail("start", err)
	}
	raw, err := rpcClient.Dispense(shared.PluginName)
	if err != nil {
		return fail("dispense", err)
	}
	r := report{OK: true, NegotiatedVersion: client.NegotiatedVersion(), Protocol: string(client.Protocol()), Results: map[string]any{}}
	cp := raw.(capabilityv1.CapabilityPluginClient)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if *mode == "start" {
		// A handshake case: one call proves the connection works.
		d, err := cp.Describe(ctx, &capabilityv1.DescribeRequest{})
		if err != nil {
			return fail("describe", err)
		}
		r.Results["describe"] = d.Name
		kill(client, logs, &r)
		return r
	}
	if err := rpcs(ctx, cp, r.Results); err != nil {
		return fail("rpc", err)
	}
	if err := rpcClient.Ping(); err != nil {
		return fail("ping", err)
	}
	r.Results["ping"] = "ok"
	// go-plugin's own Ping is a health check of service "plugin"; check the answer too.
	if gc, ok := rpcClient.(*plugin.GRPCClient); ok {
		h, err := healthpb.NewHealthClient(gc.Conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "plugin"})
		if err != nil {
			return fail("health", err)
		}
		r.Results["health"] = h.Status.String()
	}
	kill(client, logs, &r)
	return r
}

// kill stops the plugin as every go-plugin host does: Shutdown, up to 2 s, then SIGKILL. Whether it
// was graceful is read from go-plugin's own log of this Kill, not from the time it took: after a
// failed Close, go-plugin kills at once, which is quick too.
func kill(client *plugin.Client, logs *syncBuffer, r *report) {
	before := len(logs.entries())
	t0 := time.Now()
	client.Kill()
	s := &shutdownReport{Exited: client.Exited(), Ms: ms(time.Since(t0))}
	exitedOnItsOwn, exitLogged := false, false
	for _, e := range logs.entries()[before:] {
		switch e.Message {
		case "plugin exited":
			exitedOnItsOwn = true
		case "plugin failed to exit gracefully":
			s.Killed = true
		case "plugin process exited":
			exitLogged = true
			if err, ok := e.Fields["error"].(string); ok {
				s.ExitError = err
			}
		}
	}
	s.Graceful = s.Exited && exitLogged && exitedOnItsOwn && !s.Killed && s.ExitError == ""
	r.Shutdown = s
}

// rpcs calls every RPC of the capability service once and records the answers.
func rpcs(ctx context.Context, cp capabilityv1.CapabilityPluginClient, out map[string]any) error {
	capability := []byte(*capJSON)
	d, err := cp.Describe(ctx, &capabilityv1.DescribeRequest{})
	if err != nil {
		return fmt.Errorf("Describe: %w", err)
	}
	out["describe"] = map[string]any{"name": d.Name, "category": d.Category, "types": d.Types, "dependents": len(d.Dependents)}
	v, err := cp.CheckValidity(ctx, &capabilityv1.CheckValidityRequest{Capability: capability})
	if err != nil {
		return fmt.Errorf("CheckValidity: %w", err)
	}
	out["checkValidity"] = append([]string{}, v.Errors...)
	invalid, err := cp.CheckValidity(ctx, &capabilityv1.CheckValidityRequest{Capability: bytes.Replace(capability, []byte(`"version":"`), []byte(`"version":"0`), 1)})
	if err != nil {
		return fmt.Errorf("CheckValidity: %w", err)
	}
	out["checkValidityWrongVersion"] = append([]string{}, invalid.Errors...)
	b, err := cp.BuildDependents(ctx, &capabilityv1.BuildDependentsRequest{Capability: capability})
	if err != nil {
		return fmt.Errorf("BuildDependents: %w", err)
	}
	ids := []string{}
	kinds := []string{}
	observed := []*capabilityv1.ObservedDependent{}
	for _, dep := range b.Dependents {
		var obj struct{ Kind string }
		if err := json.Unmarshal(dep.Object, &obj); err != nil {
			return fmt.Errorf("BuildDependents returned %s that is not JSON: %w", dep.Id, err)
		}
		ids, kinds = append(ids, dep.Id), append(kinds, obj.Kind)
		observed = append(observed, &capabilityv1.ObservedDependent{Id: dep.Id, Observation: &capabilityv1.ObservedDependent_Object{Object: dep.Object}})
	}
	out["buildDependents"] = map[string]any{"ids": ids, "kinds": kinds}
	if len(b.Dependents) > 0 {
		first := b.Dependents[0]
		u, err := cp.UpdateDependent(ctx, &capabilityv1.UpdateDependentRequest{Id: first.Id, Capability: capability, Existing: first.Object})
		if err != nil {
			return fmt.Errorf("UpdateDependent: %w", err)
		}
		out["updateDependent"] = map[string]any{"id": first.Id, "needsUpdate": u.NeedsUpdate}
		_, err = cp.UpdateDependent(ctx, &capabilityv1.UpdateDependentRequest{Id: "no-such-dependent", Capability: capability, Existing: first.Object})
		out["updateUnknownDependent"] = fmt.Sprint(err)
	}
	// One more observation: the first dependent checked for readiness, missing from the cluster.
	for _, info := range d.Dependents {
		if !info.CheckedForReadiness {
			continue
		}
		observed = append(observed, &capabilityv1.ObservedDependent{Id: info.Id, Observation: &capabilityv1.ObservedDependent_Error{Error: &capabilityv1.FetchError{Reason: "NotFound", Message: "not found", Code: 404}}})
		break
	}
	e, err := cp.EvaluateConditions(ctx, &capabilityv1.EvaluateConditionsRequest{Capability: capability, Observed: observed})
	if err != nil {
		return fmt.Errorf("EvaluateConditions: %w", err)
	}
	conds := []map[string]any{}
	for _, c := range e.Conditions {
		conds = append(conds, map[string]any{"id": c.Id, "state": c.State.String(), "reason": c.Reason, "message": c.Message})
	}
	out["evaluateConditions"] = conds
	_, err = cp.CheckValidity(ctx, &capabilityv1.CheckValidityRequest{Capability: []byte("not json")})
	out["checkValidityGarbage"] = fmt.Sprint(err)
	return nil
}

// bench: start to handshake, then CheckValidity round trips on one connection.
func bench(logs *syncBuffer) report {
	r := report{OK: true, Bench: &benchReport{}}
	for i := 0; i < *starts+2; i++ {
		startLogs := &syncBuffer{}
		client := newClient(startLogs)
		if _, err := client.Start(); err != nil {
			client.Kill()
			return report{Stage: "start", Error: err.Error()}
		}
		// Spawn to handshake line, as our host times it: from go-plugin's own
		// log, "starting plugin" (just before exec, after its AutoMTLS
		// certificate is made) to "using plugin" (the line parsed).
		var spawned, handshook time.Time
		for _, e := range startLogs.entries() {
			switch e.Message {
			case "starting plugin":
				spawned = e.Time
			case "using plugin":
				handshook = e.Time
			}
		}
		client.Kill()
		if spawned.IsZero() || handshook.IsZero() {
			return report{Stage: "bench", Error: fmt.Sprintf(`go-plugin's log of start %d lacks "starting plugin" or "using plugin" (or its timestamp)`, i)}
		}
		elapsed := ms(handshook.Sub(spawned))
		// The first two starts warm the page cache.
		if i >= 2 {
			r.Bench.StartMs = append(r.Bench.StartMs, elapsed)
		}
	}
	client := newClient(logs)
	defer client.Kill()
	rpcClient, err := client.Client()
	if err != nil {
		return report{Stage: "start", Error: err.Error()}
	}
	raw, err := rpcClient.Dispense(shared.PluginName)
	if err != nil {
		return report{Stage: "dispense", Error: err.Error()}
	}
	cp := raw.(capabilityv1.CapabilityPluginClient)
	req := &capabilityv1.CheckValidityRequest{Capability: []byte(*capJSON)}
	for i := 0; i < *calls+200; i++ {
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := cp.CheckValidity(ctx, req)
		cancel()
		if err != nil {
			return report{Stage: "rpc", Error: err.Error()}
		}
		if i >= 200 {
			r.Bench.CallMs = append(r.Bench.CallMs, ms(time.Since(t0)))
		}
	}
	sort.Float64s(r.Bench.StartMs)
	sort.Float64s(r.Bench.CallMs)
	return r
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
