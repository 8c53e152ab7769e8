package sdk_test

import (
	"context"
	"fmt"

	capabilityv1 "halkyon.io/plugins/gen/capability/v1"
	"halkyon.io/plugins/sdk"
)

// A plugin with one dependent: a memcached Service. A real plugin's main is
// then one line, sdk.Serve(memcached); here the same RPCs are called in
// process, as a plugin's own tests would.
func Example() {
	memcached := sdk.Plugin{
		Name:       "memcached",
		Category:   "cache",
		Types:      []sdk.Type{{Type: "memcached", Versions: []string{"1.5", "1.6"}}},
		Parameters: []sdk.Parameter{{Name: "PORT", Description: "the port memcached listens on", Default: "11211"}},
		Dependents: []sdk.Dependent{{
			ID: "service", APIVersion: "v1", Kind: "Service",
			Build: func(ctx *sdk.Context) any {
				return sdk.Object{
					"apiVersion": "v1", "kind": "Service",
					"metadata": sdk.Object{"name": ctx.Name, "namespace": ctx.Namespace},
					"spec":     sdk.Object{"ports": []sdk.Object{{"port": ctx.Param("PORT")}}},
				}
			},
		}},
	}

	server, err := sdk.NewServer(memcached, nil)
	if err != nil {
		panic(err)
	}
	capability := []byte(`{"metadata":{"name":"sessions","namespace":"shop"},"spec":{"category":"cache","type":"memcached","version":"1.4"}}`)
	valid, _ := server.CheckValidity(context.Background(), &capabilityv1.CheckValidityRequest{Capability: capability})
	fmt.Println(valid.Errors)
	built, _ := server.BuildDependents(context.Background(), &capabilityv1.BuildDependentsRequest{Capability: capability})
	fmt.Println(built.Dependents[0].Id, string(built.Dependents[0].Object))
	// Output:
	// [version "1.4" of memcached is not supported by plugin memcached; supported versions: 1.5, 1.6]
	// service {"apiVersion":"v1","kind":"Service","metadata":{"name":"sessions","namespace":"shop"},"spec":{"ports":[{"port":"11211"}]}}
}

// Typed parameters: the operator derives an admission policy from them, so
// the API server refuses a wrong value at kubectl apply; CheckValidity says
// the same sentence where no policy runs.
func ExampleParameter() {
	memcached := sdk.Plugin{
		Name:     "memcached",
		Category: "cache",
		Types:    []sdk.Type{{Type: "memcached", Versions: []string{"1.6"}}},
		Parameters: []sdk.Parameter{
			{Name: "PORT", Type: sdk.ParamInteger, Minimum: sdk.Bound(1024), Maximum: sdk.Bound(65535), Default: "11211"},
			{Name: "TIER", Type: sdk.ParamEnum, Values: []string{"dev", "prod"}, Default: "dev"},
		},
		RefuseUnknownParameters: true,
		Dependents:              []sdk.Dependent{{ID: "service", APIVersion: "v1", Kind: "Service", Build: func(*sdk.Context) any { return sdk.Object{} }}},
	}
	server, err := sdk.NewServer(memcached, nil)
	if err != nil {
		panic(err)
	}
	capability := []byte(`{"metadata":{"name":"sessions"},"spec":{"category":"cache","type":"memcached","parameters":[{"name":"PORT","value":"80"},{"name":"TIER","value":"staging"},{"name":"SIZE","value":"1"}]}}`)
	valid, _ := server.CheckValidity(context.Background(), &capabilityv1.CheckValidityRequest{Capability: capability})
	for _, e := range valid.Errors {
		fmt.Println(e)
	}
	// Output:
	// parameter PORT must be an integer from 1024 to 65535 (plugin memcached)
	// parameter TIER must be one of dev, prod (plugin memcached)
	// parameter SIZE is not declared by plugin memcached; declared parameters: PORT, TIER
}

// Dependents as a graph: creds is kept when the Capability is deleted, db
// waits for config and takes its password from the observed creds, and svc
// is built only when EXPOSE=true, once db is ready.
func Example_graph() {
	plugin := sdk.Plugin{
		Name: "graph", Category: "database",
		Types:      []sdk.Type{{Type: "pg", Versions: []string{"17"}}},
		Parameters: []sdk.Parameter{{Name: "EXPOSE", Default: "false"}},
		Dependents: []sdk.Dependent{
			{
				ID: "creds", APIVersion: "v1", Kind: "Secret", DeletionPolicy: sdk.DeletionOrphan,
				Build: func(ctx *sdk.Context) any {
					return sdk.Object{"metadata": sdk.Object{"name": ctx.Name + "-creds"}, "stringData": sdk.Object{"password": "generated"}}
				},
			},
			{
				ID: "db", APIVersion: "apps/v1", Kind: "StatefulSet", DependsOn: []string{"creds"}, WaitForReady: true,
				Build: func(ctx *sdk.Context) any {
					password, _ := sdk.SecretValue(ctx.Observed["creds"], "password")
					return sdk.Object{"metadata": sdk.Object{"name": ctx.Name + "-db"}, "spec": sdk.Object{"password": password}}
				},
				Ready: func(o sdk.Object, _ *sdk.Context) sdk.Condition { return sdk.Ready("Ready", "") },
			},
			{
				ID: "svc", APIVersion: "v1", Kind: "Service", DependsOn: []string{"db"},
				Include: func(ctx *sdk.Context) bool { return ctx.Param("EXPOSE") == "true" },
				Build:   func(ctx *sdk.Context) any { return sdk.Object{"metadata": sdk.Object{"name": ctx.Name}} },
			},
		},
	}
	server, err := sdk.NewServer(plugin, nil)
	if err != nil {
		panic(err)
	}
	capability := []byte(`{"metadata":{"name":"orders","namespace":"shop"},"spec":{"category":"database","type":"pg"}}`)
	creds := []byte(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"orders-creds"},"data":{"password":"czNjcjN0"}}`)
	built, _ := server.BuildDependents(context.Background(), &capabilityv1.BuildDependentsRequest{
		Capability: capability,
		Observed:   []*capabilityv1.ObservedDependent{{Id: "creds", Observation: &capabilityv1.ObservedDependent_Object{Object: creds}}},
	})
	for _, d := range built.Dependents {
		fmt.Println(d.Id, string(d.Object))
	}
	// Output:
	// creds {"apiVersion":"v1","kind":"Secret","metadata":{"name":"orders-creds"},"stringData":{"password":"generated"}}
	// db {"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"orders-db"},"spec":{"password":"s3cr3t"}}
}
