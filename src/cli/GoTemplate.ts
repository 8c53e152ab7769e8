/**
 * The Go plugin project `halkyon plugins new --lang go` writes, as strings so
 * that the compiled binary carries it: a module on halkyon.io/plugins/sdk
 * with one dependent (a Deployment), its test, a sample Capability, a README
 * with the author's loop, and a GoReleaser release on a tag. One file, so
 * that the Go SDK's API is adapted in one place.
 */
import { sampleCapability, type Scaffold } from "./TsTemplate.ts"

export interface GoScaffold extends Scaffold {
  /** The version of halkyon.io/plugins to require. */
  readonly goModuleVersion: string
  /** A local checkout of halkyon.io/plugins to use instead (HALKYON_GO_MODULE_DIR): a replace directive. */
  readonly goModuleDir: string | undefined
}

const goMod = (s: GoScaffold) => `module example.com/${s.name}

go 1.24.0

require halkyon.io/plugins ${s.goModuleVersion}
${s.goModuleDir === undefined ? "" : `\nreplace halkyon.io/plugins => ${s.goModuleDir}\n`}`

const mainGo = (s: GoScaffold) => `// The ${s.name} plugin: a ${s.category}/${s.type} Capability becomes one Deployment,
// ready once a replica is. Add dependents (a Service, a Secret the workload
// binds to…) to Dependents, in the order they are applied.
package main

import (
	"fmt"
	"strconv"

	"halkyon.io/plugins/sdk"
)

func labels(ctx *sdk.Context) sdk.Object {
	return sdk.Object{"app.kubernetes.io/name": "${s.type}", "app.kubernetes.io/instance": ctx.Name}
}

var deployment = sdk.Dependent{
	ID: "deployment", APIVersion: "apps/v1", Kind: "Deployment",
	Build: func(ctx *sdk.Context) any {
		port, _ := strconv.Atoi(ctx.Param("PORT"))
		return sdk.Object{
			"apiVersion": "apps/v1", "kind": "Deployment",
			"metadata": sdk.Object{"name": ctx.Name, "namespace": ctx.Namespace, "labels": labels(ctx)},
			"spec": sdk.Object{
				"replicas": 1,
				"selector": sdk.Object{"matchLabels": labels(ctx)},
				"template": sdk.Object{
					"metadata": sdk.Object{"labels": labels(ctx)},
					"spec": sdk.Object{"containers": []sdk.Object{{
						"name": "${s.type}", "image": "${s.type}:" + ctx.Version,
						"ports": []sdk.Object{{"containerPort": port}},
					}}},
				},
			},
		}
	},
	// Only what this plugin decides is compared: other fields belong to Kubernetes.
	Update: func(existing, desired sdk.Object, ctx *sdk.Context) any {
		image := []any{"spec", "template", "spec", "containers", 0, "image"}
		if sdk.String(existing, image...) == sdk.String(desired, image...) {
			return nil
		}
		return desired
	},
	Ready: func(observed sdk.Object, ctx *sdk.Context) sdk.Condition {
		have := sdk.Int(observed, 0, "status", "readyReplicas")
		if have >= 1 {
			return sdk.Ready("ReplicasReady", fmt.Sprintf("%d replica(s) ready", have))
		}
		return sdk.Pending("ReplicasNotReady", "no replica ready yet")
	},
}

var plugin = sdk.Plugin{
	Name:       "${s.name}",
	Category:   "${s.category}",
	Types:      []sdk.Type{{Type: "${s.type}", Versions: []string{"latest"}}},
	Parameters: []sdk.Parameter{{Name: "PORT", Description: "the port ${s.type} listens on", Default: "8080"}},
	Validate: func(ctx *sdk.Context) []string {
		if _, err := strconv.Atoi(ctx.Param("PORT")); err != nil {
			return []string{fmt.Sprintf("PORT must be a number, got %q", ctx.Param("PORT"))}
		}
		return nil
	},
	Dependents: []sdk.Dependent{deployment},
}

func main() { sdk.Serve(plugin) }
`

const mainTest = (s: GoScaffold) => `package main

import (
	"context"
	"encoding/json"
	"testing"

	capabilityv1 "halkyon.io/plugins/gen/capability/v1"
	"halkyon.io/plugins/sdk"
)

func capability(t *testing.T, port string) []byte {
	t.Helper()
	raw, err := json.Marshal(sdk.Object{
		"metadata": sdk.Object{"name": "demo", "namespace": "apps"},
		"spec": sdk.Object{"category": "${s.category}", "type": "${s.type}", "parameters": []sdk.Object{{"name": "PORT", "value": port}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestBuildsOneDeployment(t *testing.T) {
	server, err := sdk.NewServer(plugin, nil)
	if err != nil {
		t.Fatal(err)
	}
	built, err := server.BuildDependents(context.Background(), &capabilityv1.BuildDependentsRequest{Capability: capability(t, "8080")})
	if err != nil {
		t.Fatal(err)
	}
	if len(built.Dependents) != 1 || built.Dependents[0].Id != "deployment" {
		t.Fatalf("want one dependent, deployment; got %v", built.Dependents)
	}
	var object sdk.Object
	if err := json.Unmarshal(built.Dependents[0].Object, &object); err != nil {
		t.Fatal(err)
	}
	if image := sdk.String(object, "spec", "template", "spec", "containers", 0, "image"); image != "${s.type}:latest" {
		t.Fatalf("image %q", image)
	}
}

func TestRefusesAPortThatIsNotANumber(t *testing.T) {
	server, err := sdk.NewServer(plugin, nil)
	if err != nil {
		t.Fatal(err)
	}
	valid, err := server.CheckValidity(context.Background(), &capabilityv1.CheckValidityRequest{Capability: capability(t, "eighty")})
	if err != nil {
		t.Fatal(err)
	}
	if len(valid.Errors) != 1 || valid.Errors[0] != \`PORT must be a number, got "eighty"\` {
		t.Fatalf("errors %v", valid.Errors)
	}
}
`

const goreleaser = (s: GoScaffold) => `# GoReleaser: the release halkyon plugins install downloads, one archive per
# platform holding only the executable, and checksums.txt.
version: 2
builds:
  - binary: ${s.name}
    env: [CGO_ENABLED=0]
    flags: [-trimpath]
    ldflags: [-s -w]
    goos: [linux, darwin, windows]
    goarch: [amd64, arm64]
    ignore:
      - goos: windows
        goarch: arm64
archives:
  - formats: [tar.gz]
    name_template: "halkyon_plugin_{{ .Os }}_{{ .Arch }}"
    # Only the executable, at the top level.
    files: [none*]
checksum:
  name_template: checksums.txt
  algorithm: sha256
`

const readme = (s: GoScaffold) => `# ${s.name}: a halkyon plugin in Go

Provisions \`${s.category}/${s.type}\` Capabilities: main.go says what each one becomes.

## The loop

1. \`go mod tidy\` once (fetches halkyon.io/plugins and writes go.sum; commit it).
2. Edit \`main.go\`; \`go test ./...\` calls the plugin in process.
3. \`halkyon plugins build\` writes \`dist/${s.name}\` for this machine.
4. \`halkyon plugins render dist/${s.name} -f samples/capability.yaml\` prints what the operator would apply.
5. Add \`--observed live.yaml\` (objects from \`kubectl get -o yaml\`) to see the Ready condition they give.
6. Debug: \`HALKYON_PLUGIN_DEBUG=1 dlv debug .\` prints a \`--reattach\` value for \`halkyon run\` or \`render\`.
7. On a cluster: \`halkyon run --plugins-dir dist\`, then \`kubectl apply -f samples/capability.yaml\`.
8. Release: push a tag \`v0.1.0\`; .github/workflows/release.yml runs GoReleaser (\`halkyon plugins build --release\` makes the same folder locally).
9. Users install it: \`halkyon plugins install OWNER/REPO@v0.1.0\`.
10. See https://github.com/halkyon-io/halkyon/tree/main/docs/plugins for the SDK, testing and the protocol.
`

const workflow = (s: GoScaffold) => `# On a tag v*: tests, then GoReleaser publishes the release halkyon plugins install downloads.
name: release
on:
  push:
    tags: ["v*"]
permissions:
  contents: write
jobs:
  release:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          fetch-depth: 0
      - uses: actions/setup-go@v5
        with:
          go-version-file: go.mod
      - run: go test ./...
      - uses: goreleaser/goreleaser-action@v6
        with:
          version: "~> v2"
          args: release --clean
        env:
          GITHUB_TOKEN: \${{ github.token }}
`

export const goProject = (s: GoScaffold): Record<string, string> => ({
  "go.mod": goMod(s),
  "main.go": mainGo(s),
  "main_test.go": mainTest(s),
  ".goreleaser.yaml": goreleaser(s),
  "samples/capability.yaml": sampleCapability(s),
  "README.md": readme(s),
  ".gitignore": "dist/\n",
  ".github/workflows/release.yml": workflow(s)
})
