/**
 * `halkyon plugins build [DIR] [--release] [--out DIR]`: builds a plugin
 * project, TypeScript (a package.json) or Go (a go.mod), into the plugins
 * folder's two forms for this machine, and with --release into the folder of
 * release assets `halkyon plugins install` downloads. TypeScript is built by
 * the Bun runtime this binary carries (src/release/PluginBuild.ts, loaded
 * only when this command runs); Go needs go on PATH.
 */
import { existsSync, readFileSync, statSync } from "node:fs"
import { basename, join, relative, resolve } from "node:path"
import { Console, Effect, Option, Schema } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { withLogging } from "./Logging.ts"

export class BuildFailed extends Schema.TaggedError<BuildFailed>()("BuildFailed", { detail: Schema.String }) {
  override get message() {
    return this.detail
  }
}

/** What kind of project a folder holds, its plugin's name, and for TypeScript its entry point. */
export type PluginProject =
  | { readonly lang: "ts"; readonly dir: string; readonly name: string; readonly entry: string }
  | { readonly lang: "go"; readonly dir: string; readonly name: string }

const PackageJson = Schema.Struct({
  name: Schema.optional(Schema.String),
  halkyon: Schema.optional(Schema.Struct({ name: Schema.optional(Schema.String), main: Schema.optional(Schema.String) }))
})

/** A plugin name as the plugins folder and a release archive use it. */
const validName = /^[a-z0-9][a-z0-9._-]*$/

export const detectProject = (dir: string): PluginProject => {
  const check = (name: string, from: string) => {
    if (!validName.test(name)) throw new Error(`the plugin name "${name}" (from ${from}) may hold only a-z, 0-9, '.', '_' and '-'`)
    return name
  }
  if (existsSync(join(dir, "package.json"))) {
    const pkg = Schema.decodeUnknownSync(PackageJson)(JSON.parse(readFileSync(join(dir, "package.json"), "utf8")))
    const fromPackage = (pkg.name ?? basename(dir)).replace(/^@[^/]+\//, "").replace(/^halkyon-/, "").replace(/-plugin$/, "")
    const name = check(
      pkg.halkyon?.name ?? fromPackage,
      pkg.halkyon?.name === undefined ? "package.json's name" : "package.json's halkyon.name"
    )
    const candidates = pkg.halkyon?.main === undefined ? ["src/main.ts", "main.ts"] : [pkg.halkyon.main]
    const entry = candidates.map((c) => join(dir, c)).find((c) => existsSync(c))
    if (entry === undefined) {
      throw new Error(
        `${dir} has a package.json but no ${candidates.join(" nor ")}: set halkyon.main in package.json to the file that calls serve()`
      )
    }
    if (!existsSync(join(dir, "node_modules"))) throw new Error(`${dir} has no node_modules: run npm install there first`)
    return { lang: "ts", dir, name, entry }
  }
  if (existsSync(join(dir, "go.mod"))) {
    const module = /^module\s+(\S+)/m.exec(readFileSync(join(dir, "go.mod"), "utf8"))?.[1]
    if (module === undefined) throw new Error(`${join(dir, "go.mod")} names no module`)
    const last = module.split("/").filter((p) => !/^v\d+$/.test(p)).pop() ?? module
    return { lang: "go", dir, name: check(last.replace(/^halkyon-/, "").replace(/-plugin$/, ""), "go.mod's module path") }
  }
  throw new Error(
    `${dir} is not a plugin project: it has neither a package.json (TypeScript) nor a go.mod (Go); halkyon plugins new makes one`
  )
}

const buildFlags = {
  dir: Argument.Directory("dir", { mustExist: true }).pipe(
    Argument.withDescription("the plugin project (default: the current folder)"),
    Argument.optional
  ),
  release: Flag.Boolean("release").pipe(
    Flag.withDescription(
      "also build for every release platform and write the release assets (archives and checksums.txt) into OUT/release"
    ),
    Flag.withDefault(false)
  ),
  out: Flag.String("out").pipe(Flag.withDescription("where the builds go (default: DIR/dist)"), Flag.optional)
}

const ms = (since: number) => `${Math.round(performance.now() - since)} ms`

const build = Effect.fn("plugins.build")(
  function*(flags: { readonly dir: Option.Option<string>; readonly release: boolean; readonly out: Option.Option<string> }) {
    const dir = resolve(Option.getOrElse(flags.dir, () => "."))
    const project = yield* Effect.try({
      try: () => detectProject(dir),
      catch: (e) => new BuildFailed({ detail: e instanceof Error ? e.message : String(e) })
    })
    const out = resolve(Option.getOrElse(flags.out, () => join(dir, "dist")))
    const shown = (path: string) => (relative(process.cwd(), path).startsWith("..") ? path : relative(process.cwd(), path) || ".")
    const tools = yield* Effect.promise(() => import("../release/PluginBuild.ts"))
    const { hostTarget, releaseTargets, executableName } = yield* Effect.promise(() => import("../release/Targets.ts"))
    const attempt = <A>(what: string, f: () => A | Promise<A>) =>
      Effect.tryPromise({
        try: async () => await f(),
        catch: (e) => new BuildFailed({ detail: `${what}: ${e instanceof Error ? e.message : String(e)}` })
      })

    const started = performance.now()
    const executable = join(out, project.name)
    if (project.lang === "ts") {
      yield* attempt(`building ${project.name}`, () => tools.compilePlugin(project.entry, executable))
      yield* attempt(`bundling ${project.name}`, () => tools.bundlePlugin(project.entry, `${executable}.js`))
      yield* Console.log(
        `built ${shown(executable)} (executable for this machine) and ${shown(executable)}.js (bundle, any platform) in ${ms(started)}`
      )
    } else {
      yield* attempt(`building ${project.name}`, () => tools.buildGo(project.dir, executable))
      yield* Console.log(`built ${shown(executable)} (executable for this machine) in ${ms(started)}`)
    }
    if (!flags.release) {
      const sample = existsSync(join(dir, "samples/capability.yaml")) ? shown(join(dir, "samples/capability.yaml")) : "capability.yaml"
      yield* Console.log(`try it: halkyon plugins render ${shown(executable)} -f ${sample}`)
      return
    }

    // Every release platform; a TypeScript cross build fetches that platform's Bun runtime once (npm registry, then Bun's cache).
    const builds: Array<{ os: string; arch: string; file: string }> = []
    const failed: Array<string> = []
    for (const target of releaseTargets) {
      const began = performance.now()
      const file = join(out, "builds", `${target.os}_${target.arch}`, executableName(project.name, target.os))
      const built = yield* (project.lang === "ts"
        ? attempt(`${target.os}/${target.arch}`, () => tools.compilePlugin(project.entry, file, target === hostTarget ? undefined : target))
        : attempt(`${target.os}/${target.arch}`, () => tools.buildGo(project.dir, file, target))).pipe(Effect.result)
      if (built._tag === "Success") {
        builds.push({ os: target.os, arch: target.arch, file })
        yield* Console.log(`built ${target.os}/${target.arch} in ${ms(began)}`)
      } else failed.push(built.failure.detail)
    }
    const { writePluginRelease } = yield* Effect.promise(() => import("../release/PluginRelease.ts"))
    const releaseDir = join(out, "release")
    if (builds.length > 0) {
      const files = yield* attempt("writing the release", () => writePluginRelease(project.name, builds, releaseDir))
      yield* Console.log(`wrote the release of ${project.name} in ${shown(releaseDir)}: ${files.map((f) => basename(f)).join(", ")}`)
    }
    if (failed.length > 0) {
      const hint = project.lang === "ts"
        ? "A cross build fetches the target platform's Bun runtime from the npm registry (registry.npmjs.org) the first time, into ~/.bun/install/cache: " +
          "build where that registry is reachable (the release workflow does), or warm that cache first."
        : "Go cross-compiles without a network once the module's dependencies are in the module cache (go mod download)."
      return yield* new BuildFailed({
        detail: `the release is incomplete: ${
          releaseTargets.length - failed.length
        } of ${releaseTargets.length} platforms built; do not publish it.\n  ${failed.join("\n  ")}\n${hint}`
      })
    }
    const total = builds.reduce((sum, b) => sum + statSync(b.file).size, 0)
    yield* Console.log(
      `${builds.length} platforms (${(total / 1e6).toFixed(0)} MB of executables) in ${ms(started)}. Publish the files of ${
        shown(releaseDir)
      } as the assets of a ` +
        `GitHub release, then: halkyon plugins install OWNER/REPO@TAG`
    )
  }
)

export const buildCommand = Command.make("build", buildFlags, (flags) => withLogging(build(flags))).pipe(
  Command.withDescription(
    "Build a plugin project (TypeScript: package.json; Go: go.mod) into an executable for this machine (and, for TypeScript, a .js bundle " +
      "that runs anywhere halkyon does) in OUT. With --release, also into every release platform and the release folder halkyon plugins install " +
      "downloads (halkyon_plugin_<os>_<arch>.tar.gz, halkyon_plugin_<os>.tar.gz for amd64, checksums.txt). TypeScript needs only this binary and " +
      "the project's npm install (a cross build fetches the target's Bun runtime from the npm registry once); Go needs go on PATH"
  ),
  Command.withExamples([
    { command: "halkyon plugins build", description: "Build the project in the current folder into dist/" },
    { command: "halkyon plugins build ./memcached --release", description: "And the release assets into ./memcached/dist/release" },
    {
      command: "halkyon plugins build --out /tmp/plugins && halkyon plugins list --plugins-dir /tmp/plugins",
      description: "Build into a plugins folder and start it"
    }
  ])
)
