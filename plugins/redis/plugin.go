package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"maps"
	"net/url"
	"strconv"

	"halkyon.io/plugins/sdk"
)

type object = sdk.Object

func labels(ctx *sdk.Context) map[string]string {
	return map[string]string{"app.kubernetes.io/name": "redis", "app.kubernetes.io/instance": ctx.Name, "app.kubernetes.io/managed-by": "halkyon"}
}

func selector(ctx *sdk.Context) map[string]string {
	return map[string]string{"app.kubernetes.io/name": "redis", "app.kubernetes.io/instance": ctx.Name}
}

func port(ctx *sdk.Context) int {
	p, _ := strconv.Atoi(ctx.Param("REDIS_PORT"))
	return p
}

func secretName(ctx *sdk.Context) string { return ctx.Name + "-config" }

func metadata(ctx *sdk.Context, name string) object {
	return object{"name": name, "namespace": ctx.Namespace, "labels": labels(ctx)}
}

// settings are the connection settings a workload binds to: the REDIS_*
// variables (for envFrom), and the Service Binding spec's well-known entries
// (what a ServiceBinding projects as files).
func settings(ctx *sdk.Context, password string) map[string]string {
	host, p := fmt.Sprintf("%s.%s.svc", ctx.Name, ctx.Namespace), strconv.Itoa(port(ctx))
	uri := fmt.Sprintf("redis://:%s@%s:%s/0", url.QueryEscape(password), host, p)
	entries, err := sdk.BindingEntries(sdk.Binding{Type: "redis", Provider: "halkyon", Host: host, Port: p, Password: password, URI: uri})
	if err != nil {
		// A bug of this plugin (the port is checked by CheckValidity): the SDK reports the panic as the build's failure.
		panic(err)
	}
	entries["REDIS_HOST"], entries["REDIS_PORT"], entries["REDIS_PASSWORD"], entries["REDIS_URL"] = host, p, password, uri
	return entries
}

// generatePassword is 24 random URL-safe characters.
func generatePassword() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func secret(ctx *sdk.Context, password string) object {
	if password == "" {
		password = generatePassword()
	}
	return object{"apiVersion": "v1", "kind": "Secret", "metadata": metadata(ctx, secretName(ctx)), "type": "Opaque", "stringData": settings(ctx, password)}
}

var configSecret = sdk.Dependent{
	ID: "config-secret", APIVersion: "v1", Kind: "Secret", Binding: true,
	Build: func(ctx *sdk.Context) any { return secret(ctx, ctx.Param("REDIS_PASSWORD")) },
	// A generated password is kept: only a password set in the Capability replaces it.
	Update: func(existing, _ sdk.Object, ctx *sdk.Context) any {
		current := map[string]string{}
		data, _ := sdk.Get(existing, "data").(map[string]any)
		for k, v := range data {
			b, _ := base64.StdEncoding.DecodeString(fmt.Sprint(v))
			current[k] = string(b)
		}
		password := ctx.Param("REDIS_PASSWORD")
		if password == "" {
			password = current["REDIS_PASSWORD"]
		}
		if password != "" && maps.Equal(current, settings(ctx, password)) {
			return nil
		}
		return secret(ctx, password)
	},
}

var deployment = sdk.Dependent{
	ID: "deployment", APIVersion: "apps/v1", Kind: "Deployment",
	Build: func(ctx *sdk.Context) any {
		return object{
			"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata(ctx, ctx.Name),
			"spec": object{
				"replicas": 1,
				"selector": object{"matchLabels": selector(ctx)},
				"template": object{
					"metadata": object{"labels": labels(ctx)},
					"spec": object{"containers": []object{{
						"name":  "redis",
						"image": "redis:" + ctx.Version,
						// $(VAR) is expanded by the kubelet from env, so the password never sits in the spec.
						"args":           []string{"--port", strconv.Itoa(port(ctx)), "--requirepass", "$(REDIS_PASSWORD)", "--maxmemory", ctx.Param("REDIS_MAXMEMORY")},
						"env":            []object{{"name": "REDIS_PASSWORD", "valueFrom": object{"secretKeyRef": object{"name": secretName(ctx), "key": "REDIS_PASSWORD"}}}},
						"ports":          []object{{"name": "redis", "containerPort": port(ctx)}},
						"readinessProbe": object{"tcpSocket": object{"port": port(ctx)}, "periodSeconds": 5},
					}}},
				},
			},
		}
	},
	// The image, arguments and environment follow the Capability.
	Update: func(existing, desired sdk.Object, _ *sdk.Context) any {
		at := func(field string) []any { return []any{"spec", "template", "spec", "containers", 0, field} }
		if sdk.Same(existing, desired, at("image"), at("args"), at("env")) {
			return nil
		}
		return desired
	},
	// Ready when the Deployment controller has seen the current generation and reports every replica available.
	Ready: func(observed sdk.Object, _ *sdk.Context) sdk.Condition {
		generation := sdk.Int(observed, 0, "metadata", "generation")
		want, have := sdk.Int(observed, 1, "spec", "replicas"), sdk.Int(observed, 0, "status", "availableReplicas")
		if sdk.Int(observed, 0, "status", "observedGeneration") < generation {
			return sdk.Pending("RolloutPending", fmt.Sprintf("waiting for the Deployment controller to roll out generation %d", generation))
		}
		if msg := fmt.Sprintf("%d/%d replicas available", have, want); have < want {
			return sdk.Pending("ReplicasNotAvailable", msg)
		}
		return sdk.Ready("ReplicasAvailable", fmt.Sprintf("%d/%d replicas available", have, want))
	},
}

var service = sdk.Dependent{
	ID: "service", APIVersion: "v1", Kind: "Service",
	Build: func(ctx *sdk.Context) any {
		return object{
			"apiVersion": "v1", "kind": "Service", "metadata": metadata(ctx, ctx.Name),
			"spec": object{"selector": selector(ctx), "ports": []object{{"name": "redis", "port": port(ctx), "targetPort": port(ctx)}}},
		}
	},
	Update: func(existing, desired sdk.Object, _ *sdk.Context) any {
		if sdk.Same(existing, desired, []any{"spec", "ports", 0, "port"}, []any{"spec", "ports", 0, "targetPort"}) {
			return nil
		}
		return desired
	},
}

var redis = sdk.Plugin{
	Name:     "redis",
	Category: "cache",
	// The version picks the image tag.
	Types: []sdk.Type{{Type: "redis", Versions: []string{"7.2", "7.4", "8.0"}, DefaultVersion: "8.0"}},
	// Typed: the API server refuses a Capability that breaks these (the
	// operator's admission policy), and so does CheckValidity.
	Parameters: []sdk.Parameter{
		{Name: "REDIS_PASSWORD", Description: "the password clients authenticate with, given with valueFrom (a Secret's key); generated when absent", Secret: true},
		{Name: "REDIS_PORT", Description: "the port redis listens on", Default: "6379", Type: sdk.ParamInteger, Minimum: sdk.Bound(1024), Maximum: sdk.Bound(65535)},
		{Name: "REDIS_MAXMEMORY", Description: "redis maxmemory, e.g. 64mb", Default: "64mb", Pattern: `^[0-9]+([kKmMgG][bB]?|[bB])?$`},
	},
	Dependents: []sdk.Dependent{configSecret, deployment, service},
}
