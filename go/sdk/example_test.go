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
