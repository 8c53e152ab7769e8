package main

// The redis plugin's capability logic and its answers to the five RPCs of
// halkyon.capability.v1.

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"reflect"
	"strconv"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	capabilityv1 "halkyon.io/plugins/gen/capability/v1"
)

const (
	Name     = "redis"
	Category = "cache"
	Type     = "redis"
	// DefaultVersion is used when a Capability names no version.
	DefaultVersion = "8.0"
)

// Versions are the redis versions served; the version picks the image tag.
var Versions = []string{"7.2", "7.4", "8.0"}

var parameters = []parameter{
	{name: "REDIS_PASSWORD", description: "the password clients authenticate with; generated when absent", secret: true},
	{name: "REDIS_PORT", description: "the port redis listens on", defaultValue: "6379"},
	{name: "REDIS_MAXMEMORY", description: "redis maxmemory, e.g. 64mb", defaultValue: "64mb"},
}

// The dependents' ids, stable forever: the operator keys state on them.
const (
	secretID     = "config-secret"
	deploymentID = "deployment"
	serviceID    = "service"
)

type redis struct {
	capabilityv1.UnimplementedCapabilityPluginServer
	log hclog.Logger
}

type object = map[string]any

func (p *redis) Describe(context.Context, *capabilityv1.DescribeRequest) (*capabilityv1.PluginDescription, error) {
	d := &capabilityv1.PluginDescription{
		Name:     Name,
		Category: Category,
		Types:    []*capabilityv1.TypeInfo{{Type: Type, Versions: Versions, DefaultVersion: DefaultVersion}},
		Dependents: []*capabilityv1.DependentInfo{
			{Id: secretID, ApiVersion: "v1", Kind: "Secret", Watched: true, Owned: true, Created: true, Updated: true, Binding: true},
			{Id: deploymentID, ApiVersion: "apps/v1", Kind: "Deployment", Watched: true, Owned: true, Created: true, Updated: true, CheckedForReadiness: true},
			{Id: serviceID, ApiVersion: "v1", Kind: "Service", Watched: true, Owned: true, Created: true, Updated: true},
		},
	}
	for _, prm := range parameters {
		d.Parameters = append(d.Parameters, &capabilityv1.ParameterInfo{
			Name: prm.name, Description: prm.description, Required: prm.required, Secret: prm.secret, DefaultValue: prm.defaultValue,
		})
	}
	return d, nil
}

func (p *redis) CheckValidity(_ context.Context, r *capabilityv1.CheckValidityRequest) (*capabilityv1.CheckValidityResponse, error) {
	c, err := decode(r.Capability)
	if err != nil {
		return nil, err
	}
	return &capabilityv1.CheckValidityResponse{Errors: p.validate(c)}, nil
}

// check is the plugin's own validity check, after the common ones.
func (p *redis) check(ctx resolved) []string {
	if port, err := strconv.Atoi(ctx.parameters["REDIS_PORT"]); err != nil || port < 1 || port > 65535 {
		return []string{fmt.Sprintf("parameter REDIS_PORT must be a port number (1-65535), got %q", ctx.parameters["REDIS_PORT"])}
	}
	return nil
}

func (p *redis) BuildDependents(_ context.Context, r *capabilityv1.BuildDependentsRequest) (*capabilityv1.BuildDependentsResponse, error) {
	c, err := decode(r.Capability)
	if err != nil {
		return nil, err
	}
	ctx := p.resolve(c)
	password := ctx.parameters["REDIS_PASSWORD"]
	if password == "" {
		password = generatePassword()
	}
	out := &capabilityv1.BuildDependentsResponse{}
	for _, d := range []struct {
		id  string
		obj object
	}{{secretID, secret(ctx, password)}, {deploymentID, deployment(ctx)}, {serviceID, service(ctx)}} {
		raw, err := json.Marshal(d.obj)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "building dependent %s failed: %v", d.id, err)
		}
		out.Dependents = append(out.Dependents, &capabilityv1.Dependent{Id: d.id, Object: raw})
	}
	p.log.Debug("built dependents", "capability", ctx.name, "namespace", ctx.namespace, "version", ctx.version)
	return out, nil
}

func (p *redis) UpdateDependent(_ context.Context, r *capabilityv1.UpdateDependentRequest) (*capabilityv1.UpdateDependentResponse, error) {
	c, err := decode(r.Capability)
	if err != nil {
		return nil, err
	}
	ctx := p.resolve(c)
	var existing struct {
		Data map[string]string `json:"data"`
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Image string `json:"image"`
						Args  []any  `json:"args"`
						Env   []any  `json:"env"`
					} `json:"containers"`
				} `json:"spec"`
			} `json:"template"`
			Ports []struct {
				Port int `json:"port"`
				// targetPort is an int or a port name.
				TargetPort any `json:"targetPort"`
			} `json:"ports"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(r.Existing, &existing); err != nil {
		return nil, status.Errorf(codes.Internal, "reading existing %s failed: %v", r.Id, err)
	}
	var desired object
	switch r.Id {
	case secretID:
		// A generated password is kept: only a password set in the Capability replaces it.
		current := map[string]string{}
		for k, v := range existing.Data {
			b, _ := base64.StdEncoding.DecodeString(v)
			current[k] = string(b)
		}
		password := ctx.parameters["REDIS_PASSWORD"]
		if password == "" {
			password = current["REDIS_PASSWORD"]
		}
		if password == "" {
			password = generatePassword()
		}
		if maps.Equal(current, settings(ctx, password)) {
			return &capabilityv1.UpdateDependentResponse{}, nil
		}
		desired = secret(ctx, password)
	case deploymentID:
		want := deployment(ctx)
		containers := existing.Spec.Template.Spec.Containers
		wantContainer := want["spec"].(object)["template"].(object)["spec"].(object)["containers"].([]object)[0]
		if len(containers) > 0 && containers[0].Image == wantContainer["image"] && sameJSON(containers[0].Args, wantContainer["args"]) && sameJSON(containers[0].Env, wantContainer["env"]) {
			return &capabilityv1.UpdateDependentResponse{}, nil
		}
		desired = want
	case serviceID:
		port := portOf(ctx)
		if len(existing.Spec.Ports) > 0 && existing.Spec.Ports[0].Port == port && fmt.Sprint(existing.Spec.Ports[0].TargetPort) == strconv.Itoa(port) {
			return &capabilityv1.UpdateDependentResponse{}, nil
		}
		desired = service(ctx)
	default:
		return nil, unknownDependent(r.Id)
	}
	raw, err := json.Marshal(desired)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "updating dependent %s failed: %v", r.Id, err)
	}
	return &capabilityv1.UpdateDependentResponse{NeedsUpdate: true, Updated: raw}, nil
}

func (p *redis) EvaluateConditions(_ context.Context, r *capabilityv1.EvaluateConditionsRequest) (*capabilityv1.EvaluateConditionsResponse, error) {
	c, err := decode(r.Capability)
	if err != nil {
		return nil, err
	}
	ctx := p.resolve(c)
	out := &capabilityv1.EvaluateConditionsResponse{}
	for _, o := range r.Observed {
		switch o.Id {
		case secretID, serviceID:
			continue // not checked for readiness
		case deploymentID:
		default:
			return nil, unknownDependent(o.Id)
		}
		cond := &capabilityv1.DependentCondition{Id: o.Id, Attributes: map[string]string{}}
		switch obs := o.Observation.(type) {
		case *capabilityv1.ObservedDependent_Error:
			if obs.Error.Reason == "NotFound" {
				cond.State, cond.Reason, cond.Message = capabilityv1.ConditionState_CONDITION_STATE_PENDING, "NotFound", "Deployment for "+ctx.name+" does not exist yet"
			} else {
				cond.State, cond.Reason, cond.Message = capabilityv1.ConditionState_CONDITION_STATE_FAILED, obs.Error.Reason, obs.Error.Message
				if cond.Reason == "" {
					cond.Reason = "FetchFailed"
				}
			}
		case *capabilityv1.ObservedDependent_Object:
			cond.State, cond.Reason, cond.Message = deploymentReadiness(obs.Object)
		default:
			cond.State, cond.Reason, cond.Message = capabilityv1.ConditionState_CONDITION_STATE_FAILED, "NoObservation", "no object nor error was sent for "+o.Id
		}
		out.Conditions = append(out.Conditions, cond)
	}
	return out, nil
}

// deploymentReadiness: ready when the Deployment controller has seen the
// current generation and reports every replica available.
func deploymentReadiness(raw []byte) (capabilityv1.ConditionState, string, string) {
	var d struct {
		Metadata struct {
			Generation int64 `json:"generation"`
		} `json:"metadata"`
		Spec struct {
			Replicas *int64 `json:"replicas"`
		} `json:"spec"`
		Status struct {
			ObservedGeneration int64 `json:"observedGeneration"`
			AvailableReplicas  int64 `json:"availableReplicas"`
		} `json:"status"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return capabilityv1.ConditionState_CONDITION_STATE_FAILED, "Unreadable", "the Deployment could not be read: " + err.Error()
	}
	want := int64(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	if d.Status.ObservedGeneration < d.Metadata.Generation {
		return capabilityv1.ConditionState_CONDITION_STATE_PENDING, "RolloutPending",
			fmt.Sprintf("waiting for the Deployment controller to roll out generation %d", d.Metadata.Generation)
	}
	msg := fmt.Sprintf("%d/%d replicas available", d.Status.AvailableReplicas, want)
	if d.Status.AvailableReplicas >= want {
		return capabilityv1.ConditionState_CONDITION_STATE_READY, "ReplicasAvailable", msg
	}
	return capabilityv1.ConditionState_CONDITION_STATE_PENDING, "ReplicasNotAvailable", msg
}

func unknownDependent(id string) error {
	return status.Errorf(codes.NotFound, "plugin %s has no dependent %q; it has: %s, %s, %s", Name, id, secretID, deploymentID, serviceID)
}

func labels(ctx resolved) map[string]string {
	return map[string]string{"app.kubernetes.io/name": "redis", "app.kubernetes.io/instance": ctx.name, "app.kubernetes.io/managed-by": "halkyon"}
}

func selector(ctx resolved) map[string]string {
	return map[string]string{"app.kubernetes.io/name": "redis", "app.kubernetes.io/instance": ctx.name}
}

func portOf(ctx resolved) int {
	port, _ := strconv.Atoi(ctx.parameters["REDIS_PORT"])
	return port
}

func secretName(ctx resolved) string { return ctx.name + "-config" }

// settings are the connection settings a workload binds to.
func settings(ctx resolved, password string) map[string]string {
	host := fmt.Sprintf("%s.%s.svc", ctx.name, ctx.namespace)
	port := strconv.Itoa(portOf(ctx))
	return map[string]string{
		"REDIS_HOST":     host,
		"REDIS_PORT":     port,
		"REDIS_PASSWORD": password,
		"REDIS_URL":      fmt.Sprintf("redis://:%s@%s:%s/0", url.QueryEscape(password), host, port),
	}
}

func secret(ctx resolved, password string) object {
	return object{
		"apiVersion": "v1",
		"kind":       "Secret",
		"metadata":   object{"name": secretName(ctx), "namespace": ctx.namespace, "labels": labels(ctx)},
		"type":       "Opaque",
		"stringData": settings(ctx, password),
	}
}

func deployment(ctx resolved) object {
	port := strconv.Itoa(portOf(ctx))
	return object{
		"apiVersion": "apps/v1",
		"kind":       "Deployment",
		"metadata":   object{"name": ctx.name, "namespace": ctx.namespace, "labels": labels(ctx)},
		"spec": object{
			"replicas": 1,
			"selector": object{"matchLabels": selector(ctx)},
			"template": object{
				"metadata": object{"labels": labels(ctx)},
				"spec": object{
					"containers": []object{{
						"name":  "redis",
						"image": "redis:" + ctx.version,
						// $(VAR) is expanded by the kubelet from env, so the password never sits in the spec.
						"args": []any{"--port", port, "--requirepass", "$(REDIS_PASSWORD)", "--maxmemory", ctx.parameters["REDIS_MAXMEMORY"]},
						"env": []any{
							object{"name": "REDIS_PASSWORD", "valueFrom": object{"secretKeyRef": object{"name": secretName(ctx), "key": "REDIS_PASSWORD"}}},
						},
						"ports":          []any{object{"name": "redis", "containerPort": portOf(ctx)}},
						"readinessProbe": object{"tcpSocket": object{"port": portOf(ctx)}, "periodSeconds": 5},
					}},
				},
			},
		},
	}
}

func service(ctx resolved) object {
	return object{
		"apiVersion": "v1",
		"kind":       "Service",
		"metadata":   object{"name": ctx.name, "namespace": ctx.namespace, "labels": labels(ctx)},
		"spec": object{
			"selector": selector(ctx),
			"ports":    []any{object{"name": "redis", "port": portOf(ctx), "targetPort": portOf(ctx)}},
		},
	}
}

// sameJSON compares a decoded value with a built one through their JSON.
func sameJSON(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	var va, vb any
	_ = json.Unmarshal(ja, &va)
	_ = json.Unmarshal(jb, &vb)
	return reflect.DeepEqual(va, vb)
}

// generatePassword is 24 random URL-safe characters.
func generatePassword() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
