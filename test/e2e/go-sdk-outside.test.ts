/**
 * A Go project outside this repository writes a plugin on the Go SDK, as an
 * author would: its go.mod requires halkyon.io/plugins by its module path
 * (pointed at this checkout with a replace), `go mod tidy` and `go build`
 * fetch the rest from the Go module proxy into the user's module cache, and
 * our host starts the result through the real handshake.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { buildGo, goBinary } from "../../scripts/go-plugin-build.ts"
import { launchOptions, withPlugin } from "../support/launch.ts"
import { root } from "../support/paths.ts"

const goMod = `module example.com/memcached

go 1.24.0

require halkyon.io/plugins v0.0.0

replace halkyon.io/plugins => ${join(root, "go")}
`

const mainGo = `// Command memcached is a halkyon plugin on the Go SDK.
package main

import "halkyon.io/plugins/sdk"

func main() {
	sdk.Serve(sdk.Plugin{
		Name:       "memcached",
		Category:   "cache",
		Types:      []sdk.Type{{Type: "memcached", Versions: []string{"1.5", "1.6"}}},
		Parameters: []sdk.Parameter{{Name: "PORT", Description: "the port memcached listens on", Default: "11211"}},
		Dependents: []sdk.Dependent{{
			ID: "service", APIVersion: "v1", Kind: "Service",
			Build: func(ctx *sdk.Context) any {
				return sdk.Object{
					"apiVersion": "v1", "kind": "Service",
					"metadata":   sdk.Object{"name": ctx.Name, "namespace": ctx.Namespace},
					"spec":       sdk.Object{"ports": []sdk.Object{{"port": ctx.Param("PORT")}}, "selector": sdk.Object{"version": ctx.Version}},
				}
			},
		}},
	})
}
`

let project: string
let plugin: string

beforeAll(() => {
  project = mkdtempSync(join(tmpdir(), "halkyon-go-author-"))
  writeFileSync(join(project, "go.mod"), goMod)
  writeFileSync(join(project, "main.go"), mainGo)
  const tidy = Bun.spawnSync([goBinary(), "mod", "tidy"], {
    cwd: project,
    env: { ...process.env, GOWORK: "off", GOFLAGS: "" },
    stderr: "pipe"
  })
  if (tidy.exitCode !== 0) throw new Error(`go mod tidy failed: ${tidy.stderr.toString()}`)
  plugin = buildGo(project, join(project, "bin/memcached"))
}, 300_000)

afterAll(() => {
  if (project !== undefined) rmSync(project, { recursive: true, force: true })
})

describe("a Go plugin project outside the repository, on the Go SDK", () => {
  test("is outside the checkout and requires the module by its path", () => {
    expect([project.startsWith(root), Bun.file(join(project, "go.sum")).size > 0]).toEqual([false, true])
  })

  test("describes itself through our host", () =>
    withPlugin(plugin, launchOptions(), ({ description }) =>
      Effect.sync(() => {
        expect(description).toMatchObject({
          name: "memcached",
          category: "cache",
          types: [{ type: "memcached", versions: ["1.5", "1.6"], defaultVersion: "1.6" }],
          parameters: [{
            name: "PORT",
            description: "the port memcached listens on",
            required: false,
            secret: false,
            defaultValue: "11211"
          }]
        })
        expect(
          description.dependents.map((
            d
          ) => [d.id, d.apiVersion, d.kind, d.watched, d.owned, d.created, d.updated, d.checkedForReadiness, d.binding])
        )
          .toEqual([["service", "v1", "Service", true, true, true, false, false, false]])
      })))

  test("builds its dependents and checks validity with the SDK's messages", () =>
    withPlugin(plugin, launchOptions(), ({ connection }) =>
      Effect.gen(function*() {
        const capability = (version: string) => ({
          apiVersion: "halkyon.io/v1beta1",
          kind: "Capability",
          metadata: { name: "sessions", namespace: "shop" },
          spec: { category: "cache", type: "memcached", version, parameters: [{ name: "PORT", value: "11212" }] }
        })
        const built = yield* connection.buildDependents(capability(""))
        expect(built.map((d) => [d.id, d.object])).toEqual([[
          "service",
          {
            apiVersion: "v1",
            kind: "Service",
            metadata: { name: "sessions", namespace: "shop" },
            spec: { ports: [{ port: "11212" }], selector: { version: "1.6" } }
          }
        ]])
        expect(yield* connection.checkValidity(capability("1.4"))).toEqual([
          "version \"1.4\" of memcached is not supported by plugin memcached; supported versions: 1.5, 1.6"
        ])
      })))
})
