/**
 * The command line, run as users run it: the compiled binary and
 * `bun src/main.ts` side by side, with real plugins and real signals.
 */
import { describe, expect, test } from "bun:test"
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { MagicCookieKey, MagicCookieValue, RunByHandMessage } from "../../src/protocol/Handshake.ts"
import pkg from "../../package.json" with { type: "json" }
import { badPlugin, builtPlugin, bun, eventually, pluginsFolder, processesMatching, root, testPlugin } from "../support/paths.ts"
import { DefaultManifestKinds, kindsOf } from "../support/manifests.ts"

const hosts = [
  { name: "compiled binary", command: [join(root, "dist/halkyon")] },
  { name: "bun src/main.ts", command: [bun, join(root, "src/main.ts")] }
] as const

const run = (command: ReadonlyArray<string>, env: Record<string, string> = {}) => {
  const result = Bun.spawnSync([...command], { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" })
  return { code: result.exitCode, stdout: result.stdout.toString(), stderr: result.stderr.toString() }
}

/** Plugin processes of the folder: the host itself names the folder too, so it is left out. */
const pluginProcesses = async (dir: string, host: number) => (await processesMatching(dir)).filter((pid) => pid !== host)

/** The host's socket folders, in a temp folder of this test's own: other processes make `hk-` folders too. */
const socketFolders = (dir: string) => readdirSync(dir).filter((e) => e.startsWith("hk-"))

for (const host of hosts) {
  describe(`halkyon (${host.name})`, () => {
    test("version prints version, commit, OS and arch", () => {
      const { code, stdout } = run([...host.command, "version"])
      expect(code).toBe(0)
      // This machine's OS and arch, as Go names them, which is how release assets are named.
      const platform = `${process.platform}/${process.arch === "x64" ? "amd64" : process.arch}`
      const match = /^halkyon (\d+\.\d+\.\d+) \(commit ([0-9a-f]+|dev)\) (\w+\/\w+)\n$/.exec(stdout)
      expect(match?.slice(1)).toEqual([pkg.version, expect.stringMatching(/^([0-9a-f]{7,40}|dev)$/), platform])
    })

    test("--help works on every command", () => {
      for (const args of [
        [],
        ["run"],
        ["manifests"],
        ["version"],
        ["plugins"],
        ["plugins", "list"],
        ["plugins", "watch"],
        ["plugins", "install"],
        ["plugins", "new"],
        ["plugins", "build"],
        ["plugins", "render"]
      ]) {
        const { code, stdout } = run([...host.command, ...args, "--help"])
        expect(code).toBe(0)
        expect(stdout).toContain("USAGE")
      }
    })

    test("manifests prints the install YAML; --crds-only just the CRDs", () => {
      const all = run([...host.command, "manifests"])
      expect(all.code).toBe(0)
      expect(kindsOf(all.stdout)).toEqual(DefaultManifestKinds)
      const crds = run([...host.command, "manifests", "--crds-only"])
      expect([...crds.stdout.matchAll(/^kind: (\w+)$/gm)].map((m) => m[1])).toEqual([
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "CustomResourceDefinition"
      ])
      // Where another implementation serves ServiceBindings: neither their CRD nor the binding identity.
      const without = run([...host.command, "manifests", "--service-binding=false"])
      expect([...without.stdout.matchAll(/^kind: (\w+)$/gm)].map((m) => m[1])).toEqual([
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        // The parameter references' identity (ReferenceRbac.ts).
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment"
      ])
      expect(without.stdout).toContain("--service-binding=false")
    })

    test("manifests --bind-jobs: the binding identity's role for Jobs, said in --help; absent without it", () => {
      const help = run([...host.command, "manifests", "--help"])
      expect(help.code).toBe(0)
      // The help says what it grants and why it is off.
      const text = help.stdout.replace(/\s+/g, " ")
      expect(text).toContain("--bind-jobs")
      expect(text).toContain("MutatingAdmissionPolicies")
      expect(text).toContain("can mutate any object at its creation")
      const withJobs = run([...host.command, "manifests", "--bind-jobs"])
      expect(withJobs.code).toBe(0)
      // Right after the binding identity's own objects (its ServiceAccount, two ClusterRoles, two bindings).
      expect(kindsOf(withJobs.stdout)).toEqual([
        ...DefaultManifestKinds.slice(0, 15),
        "ClusterRole",
        "ClusterRoleBinding",
        ...DefaultManifestKinds.slice(15)
      ])
      expect(withJobs.stdout).toContain("name: halkyon-service-binding-jobs")
      expect(withJobs.stdout).toContain("- mutatingadmissionpolicies")
      expect(run([...host.command, "manifests"]).stdout).not.toContain("mutatingadmissionpolicies")
    })

    test("plugins list shows both forms and exits 0", () => {
      const folder = pluginsFolder(builtPlugin("postgres"), builtPlugin("postgres.js"))
      try {
        const { code, stdout, stderr } = run([...host.command, "plugins", "list", "--plugins-dir", folder.dir])
        // stderr in the comparison shows why, should a plugin fail.
        expect({ code, stderr: code === 0 ? "" : stderr }).toEqual({ code: 0, stderr: "" })
        const lines = stdout.trim().split("\n")
        expect(lines[0]).toMatch(/^NAME\s+FORM\s+CATEGORY\s+TYPES\s+PROTOCOL\s+START\(MS\)\s+STATE$/)
        expect(lines[1]).toMatch(/^postgres\s+executable\s+database\s+postgres@14,15,16,17,18\s+1\s+\d+\s+running$/)
        expect(lines[2]).toMatch(/^postgres\.js\s+bundle\s+database\s+postgres@14,15,16,17,18\s+1\s+\d+\s+running$/)
        expect(readdirSync(folder.dir).sort()).toEqual(["postgres", "postgres.js"])
      } finally {
        folder.cleanup()
      }
    })

    test("plugins list -o json gives each plugin, and exits 1 with the reason when one failed", () => {
      const folder = pluginsFolder(builtPlugin("postgres.js"), badPlugin("exits"), testPlugin("oldproto.js"))
      try {
        const { code, stdout, stderr } = run([
          ...host.command,
          "plugins",
          "list",
          "--plugins-dir",
          folder.dir,
          "-o",
          "json",
          "--no-auto-mtls"
        ])
        expect(code).toBe(1)
        const rows = JSON.parse(stdout) as Array<Record<string, unknown>>
        expect(rows.map((r) => [r.name, r.form, r.state])).toEqual([
          ["exits", "executable", "failed"],
          ["oldproto.js", "bundle", "failed"],
          ["postgres.js", "bundle", "running"]
        ])
        const pg = rows[2] ?? {}
        expect(pg).toMatchObject({
          category: "database",
          types: [{ type: "postgres", versions: ["14", "15", "16", "17", "18"] }],
          protocolVersion: 1
        })
        expect(typeof pg.startMs).toBe("number")
        expect(rows[0]?.error).toContain("exited with code 3")
        expect(rows[1]?.error).toContain("shares no protocol version")
        expect(stderr).toContain("level=ERROR")
      } finally {
        folder.cleanup()
      }
    })

    test("bad flags get a clear error", () => {
      const { code, stderr, stdout } = run([...host.command, "plugins", "list", "--handshake-timeout", "soon"])
      expect(code).not.toBe(0)
      expect(stderr + stdout).toContain("\"soon\" is not a duration")
      const missing = run([...host.command, "plugins", "list", "--plugins-dir", "/nonexistent/folder"])
      expect(missing.code).not.toBe(0)
      expect(missing.stderr + missing.stdout).toContain("/nonexistent/folder")
    })

    test("SIGTERM stops every plugin and removes every socket", async () => {
      const folder = pluginsFolder(builtPlugin("postgres"), builtPlugin("postgres.js"))
      const temp = mkdtempSync(join(tmpdir(), "cli-sockets-"))
      const proc = Bun.spawn([...host.command, "plugins", "watch", "--plugins-dir", folder.dir], {
        env: { ...process.env, TMPDIR: temp },
        stdout: "pipe",
        stderr: "pipe"
      })
      try {
        expect(await eventually(async () => (await pluginProcesses(folder.dir, proc.pid)).length === 2, 10_000)).toBe(true)
        const created = socketFolders(temp)
        expect(created.length).toBe(2)
        proc.kill("SIGTERM")
        // A clean stop by signal exits 0, as Kubernetes expects of a pod it stops.
        expect(await proc.exited).toBe(0)
        expect(await processesMatching(folder.dir)).toEqual([])
        for (const f of created) expect(existsSync(join(temp, f))).toBe(false)
      } finally {
        proc.kill("SIGKILL")
        folder.cleanup()
        rmSync(temp, { recursive: true, force: true })
      }
    })

    test("SIGKILL of the host leaves no plugin after 2 s", async () => {
      const folder = pluginsFolder(builtPlugin("postgres"), builtPlugin("postgres.js"))
      const proc = Bun.spawn([...host.command, "plugins", "watch", "--plugins-dir", folder.dir], { stdout: "pipe", stderr: "pipe" })
      try {
        expect(await eventually(async () => (await pluginProcesses(folder.dir, proc.pid)).length === 2, 10_000)).toBe(true)
        proc.kill("SIGKILL")
        await proc.exited
        const killed = Date.now()
        expect(await eventually(async () => (await pluginProcesses(folder.dir, proc.pid)).length === 0, 2_000)).toBe(true)
        expect(Date.now() - killed).toBeLessThan(2_000)
      } finally {
        folder.cleanup()
      }
    })
  })
}

test("plugins run with JavaScriptCore's JIT off unless --plugin-jit (or HALKYON_PLUGIN_JIT) lets them", async () => {
  const environOf = (pid: number) => readFileSync(`/proc/${pid}/environ`, "utf8").split("\0")
  for (
    const [args, env, expected] of [
      [[], {}, ["BUN_JSC_useJIT=0"]],
      [["--plugin-jit"], {}, []],
      [[], { HALKYON_PLUGIN_JIT: "true" }, []]
    ] as const
  ) {
    const folder = pluginsFolder(builtPlugin("postgres"), builtPlugin("postgres.js"))
    const proc = Bun.spawn([join(root, "dist/halkyon"), "plugins", "watch", "--plugins-dir", folder.dir, ...args], {
      env: { ...process.env, ...env },
      stdout: "pipe",
      stderr: "pipe"
    })
    try {
      expect(await eventually(async () => (await pluginProcesses(folder.dir, proc.pid)).length === 2, 10_000)).toBe(true)
      // The compiled plugin and the bundle (run by halkyon's own runtime) alike.
      for (const pid of await pluginProcesses(folder.dir, proc.pid)) {
        expect(environOf(pid).filter((v) => v.startsWith("BUN_JSC_"))).toEqual([...expected])
      }
    } finally {
      proc.kill("SIGKILL")
      await proc.exited
      folder.cleanup()
    }
  }
}, 60_000)

test("the compiled operator ignores a .env and a bunfig.toml in the folder it starts in", () => {
  const folder = pluginsFolder()
  try {
    Bun.write(join(folder.dir, ".env"), "HALKYON_PLUGINS_DIR=/from-dotenv\n")
    Bun.write(join(folder.dir, "bunfig.toml"), "preload = [\"./nothing.ts\"]\n")
    const result = Bun.spawnSync([join(root, "dist/halkyon"), "plugins", "list"], {
      cwd: folder.dir,
      stdout: "pipe",
      stderr: "pipe",
      env: { PATH: process.env.PATH ?? "" }
    })
    const stderr = result.stderr.toString()
    expect(stderr).toContain("the plugins folder ./plugins does not exist")
    expect(stderr).not.toContain("/from-dotenv")
  } finally {
    folder.cleanup()
  }
})

test("plugins started from a folder with a .env and a bunfig.toml do not read them, in either form", () => {
  // A preload that does not exist: a plugin that read this bunfig.toml would fail to start.
  const workdir = pluginsFolder()
  const plugins = pluginsFolder(builtPlugin("postgres"), builtPlugin("postgres.js"))
  try {
    Bun.write(join(workdir.dir, ".env"), "PLUGIN_PROTOCOL_VERSIONS=99\n")
    Bun.write(join(workdir.dir, "bunfig.toml"), "preload = [\"./missing-preload.ts\"]\n")
    // A relative --plugins-dir: plugins start in folders of their own, so their paths are made absolute.
    const relative = join("..", plugins.dir.split("/").pop() ?? "")
    const result = Bun.spawnSync([join(root, "dist/halkyon"), "plugins", "list", "--plugins-dir", relative, "--output", "json"], {
      cwd: workdir.dir,
      stdout: "pipe",
      stderr: "pipe",
      env: { PATH: process.env.PATH ?? "" }
    })
    expect(result.stderr.toString()).not.toContain("missing-preload")
    const listed = JSON.parse(result.stdout.toString()) as Array<{ name: string; state: string; protocolVersion: number }>
    expect(listed.map((p) => [p.name, p.state, p.protocolVersion]).sort()).toEqual([
      ["postgres", "running", 1],
      ["postgres.js", "running", 1]
    ])
    expect(result.exitCode).toBe(0)
  } finally {
    workdir.cleanup()
    plugins.cleanup()
  }
})

describe("a plugin run by hand", () => {
  for (const [form, command] of [["executable", [builtPlugin("postgres")]], ["bundle", [bun, builtPlugin("postgres.js")]]] as const) {
    test(`prints go-plugin's message and exits 1 (${form})`, () => {
      const { code, stdout, stderr } = run(command, { [MagicCookieKey]: "" })
      expect(code).toBe(1)
      expect(stdout).toBe("")
      expect(stderr).toBe(RunByHandMessage)
    })
  }

  test("whose host died before it started watching (HALKYON_HOST_PID names a gone process) exits by itself", async () => {
    const proc = Bun.spawn([builtPlugin("postgres")], {
      env: { [MagicCookieKey]: MagicCookieValue, PLUGIN_PROTOCOL_VERSIONS: "1", HALKYON_HOST_PID: "999999" },
      stdout: "pipe",
      stderr: "pipe"
    })
    const started = Date.now()
    expect(await proc.exited).toBe(0)
    expect(Date.now() - started).toBeLessThan(2_000)
  })

  test("with the cookie, it handshakes on stdout and logs hclog JSON on stderr only", async () => {
    const proc = Bun.spawn([builtPlugin("postgres")], {
      env: { [MagicCookieKey]: MagicCookieValue, PLUGIN_PROTOCOL_VERSIONS: "1", PLUGIN_MULTIPLEX_GRPC: "true" },
      stdout: "pipe",
      stderr: "pipe"
    })
    const reader = proc.stdout.getReader()
    const { value } = await reader.read()
    const line = new TextDecoder().decode(value)
    expect(line).toMatch(/^1\|1\|unix\|\/.+\|grpc\|\|false\n$/)
    proc.kill("SIGINT") // ignored
    await Bun.sleep(200)
    expect(proc.exitCode).toBe(null)
    proc.kill("SIGTERM")
    expect(await proc.exited).toBe(0)
    // Nothing else ever reached stdout.
    const rest = await reader.read()
    expect(rest.done).toBe(true)
    const socket = line.split("|")[3] ?? ""
    expect(existsSync(socket)).toBe(false)
  })
})
