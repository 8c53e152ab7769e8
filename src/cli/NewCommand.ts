/**
 * `halkyon plugins new NAME --category C --type T [--lang ts|go] [--dir DIR]`:
 * writes a standalone plugin project that builds, tests and releases as it
 * is (TsTemplate.ts, GoTemplate.ts). It never writes into a folder that holds
 * anything.
 */
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs"
import { dirname, join, relative, resolve } from "node:path"
import { Config, Console, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { version } from "../Version.ts"

const lowerName = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/

const nameArgument = (name: string, what: string) =>
  Argument.String(name).pipe(
    Argument.withDescription(what),
    Argument.mapTryCatch((value) => {
      if (!lowerName.test(value)) throw new Error(`"${value}" is not a valid ${name}: use a-z, 0-9 and '-', e.g. memcached`)
      return value
    }, (e) => (e instanceof Error ? e.message : String(e)))
  )

const lowerFlag = (name: string, what: string) =>
  Flag.String(name).pipe(
    Flag.withDescription(what),
    Flag.mapTryCatch((value) => {
      if (!lowerName.test(value)) throw new Error(`--${name} "${value}": use a-z, 0-9 and '-', e.g. cache`)
      return value
    }, (e) => (e instanceof Error ? e.message : String(e)))
  )

const newFlags = {
  name: nameArgument("name", "the plugin's name: its executable, its release (e.g. memcached)"),
  category: lowerFlag("category", "the category of Capabilities it serves (e.g. cache, database)"),
  type: lowerFlag("type", "the type it serves within the category (e.g. memcached)"),
  lang: Flag.Literals("lang", ["ts", "go"]).pipe(
    Flag.withDescription("TypeScript (@halkyon/sdk) or Go (halkyon.io/plugins/sdk)"),
    Flag.withDefault("ts")
  ),
  dir: Flag.String("dir").pipe(Flag.withDescription("where to write it (default: ./NAME); must be missing or empty"), Flag.optional),
  // For testing against an unreleased SDK: what the project depends on instead of the released ones.
  sdkSpec: Flag.String("sdk").pipe(
    Flag.withDescription(
      "the @halkyon/sdk dependency to write, e.g. file:/path/to/halkyon-sdk.tgz (env HALKYON_SDK_SPEC; default: this halkyon's version)"
    ),
    Flag.withFallbackConfig(Config.String("HALKYON_SDK_SPEC")),
    Flag.optional
  ),
  goModuleDir: Flag.String("go-module-dir").pipe(
    Flag.withDescription("a checkout of halkyon.io/plugins for a replace directive (env HALKYON_GO_MODULE_DIR)"),
    Flag.withFallbackConfig(Config.String("HALKYON_GO_MODULE_DIR")),
    Flag.optional
  )
}

const scaffold = Effect.fn("plugins.new")(function*(flags: {
  readonly name: string
  readonly category: string
  readonly type: string
  readonly lang: "ts" | "go"
  readonly dir: Option.Option<string>
  readonly sdkSpec: Option.Option<string>
  readonly goModuleDir: Option.Option<string>
}) {
  const dir = resolve(Option.getOrElse(flags.dir, () => flags.name))
  if (existsSync(dir)) {
    if (!statSync(dir).isDirectory()) return yield* Effect.fail(new Error(`${dir} is a file: choose another --dir`))
    const entries = readdirSync(dir)
    if (entries.length > 0) {
      return yield* Effect.fail(
        new Error(
          `${dir} is not empty (it holds ${entries.slice(0, 3).join(", ")}${
            entries.length > 3 ? ", …" : ""
          }): halkyon plugins new writes only into a new or empty folder`
        )
      )
    }
  }
  const settings = {
    name: flags.name,
    category: flags.category,
    type: flags.type,
    halkyonVersion: version,
    sdkSpec: Option.getOrElse(flags.sdkSpec, () => version)
  }
  // The templates load when a project is written, not at every start.
  const { tsProject } = yield* Effect.promise(() => import("./TsTemplate.ts"))
  const { goProject } = yield* Effect.promise(() => import("./GoTemplate.ts"))
  const files = flags.lang === "ts"
    ? tsProject(settings)
    : goProject({
      ...settings,
      goModuleVersion: `v${version}`,
      goModuleDir: Option.getOrUndefined(Option.map(flags.goModuleDir, (d) => resolve(d)))
    })
  for (const [path, text] of Object.entries(files)) {
    const file = join(dir, path)
    mkdirSync(dirname(file), { recursive: true })
    writeFileSync(file, text)
  }
  const shown = relative(process.cwd(), dir).startsWith("..") ? dir : relative(process.cwd(), dir) || "."
  yield* Console.log(
    `wrote the ${flags.lang === "ts" ? "TypeScript" : "Go"} plugin ${flags.name} (${flags.category}/${flags.type}) in ${shown}:`
  )
  for (const path of Object.keys(files).sort()) yield* Console.log(`  ${path}`)
  yield* Console.log(
    flags.lang === "ts"
      ? `next: cd ${shown} && npm install && npm test && halkyon plugins build && halkyon plugins render dist/${flags.name} -f samples/capability.yaml`
      : `next: cd ${shown} && go mod tidy && go test ./... && halkyon plugins build && halkyon plugins render dist/${flags.name} -f samples/capability.yaml`
  )
})

export const newCommand = Command.make("new", newFlags, scaffold).pipe(
  Command.withDescription(
    "Write a standalone plugin project that builds, tests and releases as it is: the plugin with one dependent (a Deployment), a test, " +
      "a sample Capability, a README with the author's loop, .gitignore, and a GitHub Actions workflow that publishes the release on a tag. " +
      "TypeScript (package.json, tsconfig, @halkyon/sdk) or Go (go.mod, halkyon.io/plugins/sdk, GoReleaser). Refuses a folder that is not empty"
  ),
  Command.withExamples([
    { command: "halkyon plugins new memcached --category cache --type memcached", description: "A TypeScript plugin in ./memcached" },
    {
      command: "halkyon plugins new memcached --category cache --type memcached --lang go --dir ~/src/memcached-plugin",
      description: "A Go plugin"
    }
  ])
)
