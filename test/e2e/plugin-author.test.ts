/**
 * A plugin author's commands, run as an author runs them: the compiled
 * binary, real plugin processes, real files. `plugins render` against a
 * golden file, with observed objects, and on an invalid Capability;
 * `plugins new` for both languages; `plugins build --release` on a
 * scaffolded project whose release `plugins install` then accepts from
 * loopback release pages; and a plugin started by hand, reattached.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { goBinary } from "../../src/release/PluginBuild.ts"
import { goArch, goOs, version } from "../../src/Version.ts"
import { startByHand } from "../support/byHand.ts"
import { builtPlugin, root, testPlugin } from "../support/paths.ts"
import { folderAssets, makeTestCa, removeCa, startReleaseServers } from "../support/releases.ts"

const halkyon = join(root, "dist/halkyon")
const work = mkdtempSync(join(tmpdir(), "halkyon-author-"))

const run = (args: ReadonlyArray<string>, options: { cwd?: string; env?: Record<string, string> } = {}) => {
  const result = Bun.spawnSync([halkyon, ...args], {
    cwd: options.cwd ?? root,
    env: { ...process.env, ...options.env },
    stdout: "pipe",
    stderr: "pipe"
  })
  return { code: result.exitCode, stdout: result.stdout.toString(), stderr: result.stderr.toString() }
}

/** As run, but without blocking this process: the loopback release servers answer from its event loop. */
const runAsync = async (args: ReadonlyArray<string>, env: Record<string, string> = {}) => {
  const child = Bun.spawn([halkyon, ...args], { cwd: root, env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" })
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited])
  return { code, stdout, stderr }
}

const write = (name: string, text: string) => {
  const file = join(work, name)
  writeFileSync(file, text)
  return file
}

afterAll(() => rmSync(work, { recursive: true, force: true }))

describe("plugins render", () => {
  test("prints the postgres sample's dependents as the operator applies them (golden file)", () => {
    const { code, stdout, stderr } = run([
      "plugins",
      "render",
      builtPlugin("postgres"),
      "-f",
      "samples/postgres.yaml"
    ])
    expect({ code, stderr }).toEqual({ code: 0, stderr: "" })
    expect(stdout).toBe(readFileSync(join(root, "test/fixtures/render/postgres.yaml"), "utf8"))
  })

  test("with --observed, the conditions and the Ready condition the observed objects give", () => {
    const observed = (readyReplicas: number) =>
      write(
        `observed-${readyReplicas}.yaml`,
        [
          "apiVersion: v1",
          "kind: List",
          "items:",
          "  - apiVersion: apps/v1",
          "    kind: StatefulSet",
          "    metadata: { name: postgres-db, namespace: default, generation: 1 }",
          "    spec: { replicas: 1 }",
          `    status: { observedGeneration: 1, replicas: 1, readyReplicas: ${readyReplicas} }`
        ].join("\n")
      )
    const render = (file: string) => {
      const { code, stdout, stderr } = run([
        "plugins",
        "render",
        builtPlugin("postgres.js"),
        "-f",
        "samples/postgres.yaml",
        "--observed",
        file,
        "-o",
        "json"
      ])
      expect({ code, stderr }).toEqual({ code: 0, stderr: "" })
      return JSON.parse(stdout) as {
        status: {
          conditions: Array<{ type: string; status: string; reason: string; message: string }>
          dependents: Array<{ id: string; ready: boolean; reason: string }>
          bindingSecret: string
        }
      }
    }
    const ready = render(observed(1)).status
    expect(ready.conditions).toMatchObject([{ type: "Ready", status: "True", reason: "Ready", message: "all 3 dependents are ready" }])
    expect(ready.dependents.map((d) => [d.id, d.ready, d.reason])).toEqual([
      ["config-secret", true, "Applied"],
      ["statefulset", true, "ReplicasReady"],
      ["service", true, "Applied"]
    ])
    expect(ready.bindingSecret).toBe("postgres-db-config")
    const pending = render(observed(0)).status
    expect(pending.conditions).toMatchObject([{
      type: "Ready",
      status: "False",
      reason: "DependentsNotReady",
      message: "StatefulSet postgres-db: 0/1 replicas ready"
    }])
  })

  test("an invalid Capability exits 1 with the plugin's message", () => {
    const file = write(
      "invalid.yaml",
      readFileSync(join(root, "samples/postgres.yaml"), "utf8").replace(
        "value: admin\n",
        "value: admin\n    - name: DB_PORT\n      value: \"99999\"\n"
      )
    )
    const { code, stdout, stderr } = run(["plugins", "render", builtPlugin("postgres"), "-f", file])
    expect(code).toBe(1)
    expect(stdout).toBe("")
    expect(stderr).toContain(
      "the Capability is invalid (the operator would set Ready=False, reason Invalid): parameter DB_PORT must be an integer from 1024 to 65535 (plugin postgres)"
    )
  })

  test("a plugin that breaks the operator's rules exits 1 with the operator's PluginViolation message", () => {
    const file = write(
      "kubesystem.yaml",
      "apiVersion: halkyon.io/v1beta1\nkind: Capability\nmetadata: { name: ks, namespace: team-a }\nspec: { category: test, type: kubesystem }\n"
    )
    const { code, stdout, stderr } = run(["plugins", "render", testPlugin("hostile.js"), "-f", file])
    expect({ code, stdout }).toEqual({ code: 1, stdout: "" })
    expect(stderr).toContain(
      "PluginViolation): plugin hostile.js broke rule \"namespace\": ConfigMap kube-system/ks (id config) is not in the Capability's namespace team-a; nothing was written"
    )
  })

  test("a Capability no plugin type matches exits 1 naming what the plugin serves", () => {
    const file = write(
      "other.yaml",
      readFileSync(join(root, "samples/postgres.yaml"), "utf8").replace("type: postgres", "type: mysql")
    )
    const { code, stderr } = run(["plugins", "render", builtPlugin("postgres"), "-f", file])
    expect(code).toBe(1)
    expect(stderr).toContain("database/postgres")
  })
})

describe("plugins new", () => {
  test("writes a TypeScript project, and refuses a folder that is not empty", () => {
    const dir = join(work, "new-ts")
    const first = run(["plugins", "new", "memcached", "--category", "cache", "--type", "memcached", "--dir", dir])
    expect(first.code).toBe(0)
    for (const file of [
      "package.json",
      "tsconfig.json",
      "src/plugin.ts",
      "src/main.ts",
      "test/plugin.test.ts",
      "README.md",
      ".gitignore",
      ".github/workflows/release.yml",
      "samples/capability.yaml"
    ]) {
      expect(existsSync(join(dir, file))).toBe(true)
    }
    const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"))
    expect(pkg.dependencies).toEqual({ "@halkyon/sdk": version })
    expect(pkg.halkyon).toEqual({ name: "memcached", main: "src/main.ts" })
    expect(readFileSync(join(dir, ".github/workflows/release.yml"), "utf8")).toContain("halkyon plugins build --release")
    const again = run(["plugins", "new", "memcached", "--category", "cache", "--type", "memcached", "--dir", dir])
    expect(again.code).toBe(1)
    expect(again.stderr).toContain("is not empty")
  })

  test("writes a Go project on halkyon.io/plugins/sdk with a GoReleaser release, and refuses a folder that is not empty", () => {
    const dir = join(work, "new-go")
    mkdirSync(dir)
    const first = run(["plugins", "new", "memcached", "--category", "cache", "--type", "memcached", "--lang", "go", "--dir", dir])
    expect(first.code).toBe(0)
    expect(readdirSync(dir).sort()).toEqual([
      ".github",
      ".gitignore",
      ".goreleaser.yaml",
      "README.md",
      "go.mod",
      "main.go",
      "main_test.go",
      "samples"
    ])
    expect(readFileSync(join(dir, "go.mod"), "utf8")).toContain(`require halkyon.io/plugins v${version}`)
    expect(readFileSync(join(dir, "main.go"), "utf8")).toContain("sdk.Serve(plugin)")
    expect(readFileSync(join(dir, ".goreleaser.yaml"), "utf8")).toContain("name_template: \"halkyon_plugin_{{ .Os }}_{{ .Arch }}\"")
    const again = run(["plugins", "new", "other", "--category", "cache", "--type", "other", "--lang", "go", "--dir", dir])
    expect(again.code).toBe(1)
    expect(again.stderr).toContain("is not empty")
  })
})

describe("plugins build --release on a scaffolded TypeScript project", () => {
  const project = join(work, "memcached")
  // @halkyon/sdk is this repository's SDK: a folder package re-exporting src/sdk, installed by npm from a file: path.
  const sdk = join(work, "sdk")
  let ca: ReturnType<typeof makeTestCa> | undefined
  let servers: Awaited<ReturnType<typeof startReleaseServers>> | undefined

  beforeAll(() => {
    mkdirSync(sdk)
    writeFileSync(
      join(sdk, "package.json"),
      JSON.stringify({ name: "@halkyon/sdk", version, type: "module", exports: { ".": "./index.ts" } })
    )
    writeFileSync(join(sdk, "index.ts"), `export * from ${JSON.stringify(join(root, "src/sdk/index.ts"))}\n`)
    const scaffold = run(["plugins", "new", "memcached", "--category", "cache", "--type", "memcached", "--dir", project], {
      env: { HALKYON_SDK_SPEC: `file:${sdk}` }
    })
    if (scaffold.code !== 0) throw new Error(scaffold.stderr)
    // The project's own install; the dev tools (bun, tsc) are not what this test is about.
    const install = Bun.spawnSync(["npm", "install", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund"], {
      cwd: project,
      stdout: "pipe",
      stderr: "pipe"
    })
    if (install.exitCode !== 0) throw new Error(install.stderr.toString())
  }, 120_000)

  afterAll(async () => {
    await servers?.close()
    if (ca !== undefined) removeCa(ca)
  })

  test("builds both forms, renders, and writes a release folder that plugins install accepts", async () => {
    const build = run(["plugins", "build", "--release"], { cwd: project })
    if (build.code !== 0) throw new Error(`plugins build --release failed:\n${build.stdout}${build.stderr}`)
    expect(existsSync(join(project, "dist/memcached"))).toBe(true)
    expect(existsSync(join(project, "dist/memcached.js"))).toBe(true)
    const release = readdirSync(join(project, "dist/release")).sort()
    expect(release).toEqual([
      "checksums.txt",
      "halkyon_plugin_darwin.tar.gz",
      "halkyon_plugin_darwin_amd64.tar.gz",
      "halkyon_plugin_darwin_arm64.tar.gz",
      "halkyon_plugin_linux.tar.gz",
      "halkyon_plugin_linux_amd64.tar.gz",
      "halkyon_plugin_linux_arm64.tar.gz",
      "halkyon_plugin_windows.tar.gz",
      "halkyon_plugin_windows_amd64.tar.gz"
    ])

    const rendered = run(["plugins", "render", "dist/memcached.js", "-f", "samples/capability.yaml"], { cwd: project })
    expect({ code: rendered.code, stderr: rendered.stderr }).toEqual({ code: 0, stderr: "" })
    expect(rendered.stdout).toContain("kind: Deployment\nmetadata:\n  name: memcached-demo\n  namespace: default")

    ca = makeTestCa()
    servers = await startReleaseServers(ca)
    servers.publish("acme/memcached@v0.1.0", folderAssets(join(project, "dist/release")))
    const plugins = join(work, "installed")
    const install = await runAsync(
      ["plugins", "install", "acme/memcached@v0.1.0", "--plugins-dir", plugins, "--release-base-url", servers.base, "--require-checksums"],
      { NODE_EXTRA_CA_CERTS: ca.caFile }
    )
    expect({ code: install.code, stderr: install.code === 0 ? "" : install.stderr }).toEqual({ code: 0, stderr: "" })
    expect(install.stdout).toContain(`acme/memcached@v0.1.0: installed memcached in ${plugins}`)
    expect(install.stdout).toContain("matches checksums.txt")
    const lock = JSON.parse(readFileSync(join(plugins, "plugins.lock"), "utf8"))
    expect(lock.plugins[0].asset.split("/").pop()).toBe(`halkyon_plugin_${goOs}_${goArch}.tar.gz`)
    const list = run(["plugins", "list", "--plugins-dir", plugins, "-o", "json"])
    expect(list.code).toBe(0)
    expect(JSON.parse(list.stdout)).toMatchObject([{ name: "memcached", form: "executable", category: "cache", state: "running" }])
  }, 300_000)
})

describe("plugins build --release on a scaffolded Go project", () => {
  test("go test passes, and the release folder has every platform; render prints its Deployment", () => {
    const project = join(work, "memcached-go")
    // halkyon.io/plugins is this repository's Go module (go/), through a replace directive.
    const scaffold = run([
      "plugins",
      "new",
      "memcached",
      "--category",
      "cache",
      "--type",
      "memcached",
      "--lang",
      "go",
      "--dir",
      project,
      "--go-module-dir",
      join(root, "go")
    ])
    if (scaffold.code !== 0) throw new Error(scaffold.stderr)
    const go = (args: ReadonlyArray<string>) => {
      const result = Bun.spawnSync([goBinary(), ...args], {
        cwd: project,
        env: { ...process.env, GOWORK: "off" },
        stdout: "pipe",
        stderr: "pipe"
      })
      return { code: result.exitCode, output: result.stdout.toString() + result.stderr.toString() }
    }
    expect(go(["mod", "tidy"])).toEqual({ code: 0, output: expect.any(String) })
    const tested = go(["test", "./..."])
    expect({ code: tested.code, output: tested.code === 0 ? "" : tested.output }).toEqual({ code: 0, output: "" })
    const build = run(["plugins", "build", "--release"], { cwd: project })
    if (build.code !== 0) throw new Error(`plugins build --release failed:\n${build.stdout}${build.stderr}`)
    expect(readdirSync(join(project, "dist/release")).sort()).toEqual([
      "checksums.txt",
      "halkyon_plugin_darwin.tar.gz",
      "halkyon_plugin_darwin_amd64.tar.gz",
      "halkyon_plugin_darwin_arm64.tar.gz",
      "halkyon_plugin_linux.tar.gz",
      "halkyon_plugin_linux_amd64.tar.gz",
      "halkyon_plugin_linux_arm64.tar.gz",
      "halkyon_plugin_windows.tar.gz",
      "halkyon_plugin_windows_amd64.tar.gz"
    ])
    const rendered = run(["plugins", "render", "dist/memcached", "-f", "samples/capability.yaml"], { cwd: project })
    expect({ code: rendered.code, stderr: rendered.stderr }).toEqual({ code: 0, stderr: "" })
    expect(rendered.stdout).toContain("rendered by plugin memcached: 1 dependent, in apply order")
    expect(rendered.stdout).toContain("kind: Deployment")
  }, 300_000)
})

describe("--reattach", () => {
  test("a Go plugin started by hand is rendered, and keeps running", async () => {
    const { plugin, value } = await startByHand("redis")
    try {
      expect(value).toMatch(/^redis=unix:\//)
      const file = write(
        "redis.yaml",
        "apiVersion: halkyon.io/v1beta1\nkind: Capability\nmetadata: { name: cache }\nspec: { category: cache, type: redis }\n"
      )
      const rendered = run(["plugins", "render", "--reattach", value, "-f", file])
      expect({ code: rendered.code, stderr: rendered.code === 0 ? "" : rendered.stderr }).toEqual({ code: 0, stderr: "" })
      expect(rendered.stdout).toContain("rendered by plugin redis")
      expect(plugin.exitCode).toBeNull()
    } finally {
      plugin.kill("SIGINT")
      await plugin.exited
    }
  }, 60_000)

  test("render and plugins list connect to a plugin started by hand, which keeps running when halkyon exits", async () => {
    const { plugin, value } = await startByHand("postgres")
    try {
      expect(value).toMatch(/^postgres=unix:\//)

      const rendered = run(["plugins", "render", "--reattach", value, "-f", "samples/postgres.yaml"])
      expect({ code: rendered.code, stdout: rendered.stdout }).toEqual({
        code: 0,
        stdout: readFileSync(join(root, "test/fixtures/render/postgres.yaml"), "utf8")
      })
      expect(rendered.stderr).toContain("keeps running when halkyon exits")

      const empty = mkdtempSync(join(work, "plugins-"))
      const list = run(["plugins", "list", "--plugins-dir", empty, "--reattach", value, "-o", "json"])
      expect(list.code).toBe(0)
      expect(JSON.parse(list.stdout)).toMatchObject([{ name: "postgres", form: "reattached", category: "database", state: "running" }])

      // Both halkyon processes have exited; the plugin still serves.
      expect(plugin.exitCode).toBeNull()
      const again = run(["plugins", "render", "--reattach", value, "-f", "samples/postgres.yaml"])
      expect(again.code).toBe(0)
    } finally {
      plugin.kill("SIGINT")
      await plugin.exited
    }
    // Ctrl-C stops a plugin started by hand (it has no host to do it).
    expect(plugin.exitCode).toBe(0)
  }, 60_000)
})
