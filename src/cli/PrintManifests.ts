/**
 * What `halkyon manifests` does once its flags are parsed (ManifestsCommand.ts
 * loads it when the command runs): the objects, with each plugin's role from
 * what it declares, printed as YAML.
 */
import { Console, Effect, Layer, Option, Schema } from "effect"
import { type Manifest, manifests, type PluginDeclaration } from "../api/Manifests.ts"
import { parsePluginSpecs } from "../downloader/PluginSpec.ts"
import { readLock } from "../lock/PluginLock.ts"
import { readReleaseLock } from "../lock/ReleaseLock.ts"
import { defaultHostSettings } from "../config/HostConfig.ts"
import { Metrics } from "../metrics/Metrics.ts"
import { withLogging } from "./Logging.ts"

/** The YAML of the objects, its module loaded only when it is printed. */
const renderManifests = (objects: ReadonlyArray<Manifest>) =>
  Effect.map(Effect.promise(() => import("./ManifestYaml.ts")), (yaml) => yaml.renderManifests(objects))

export interface ManifestsFlagValues {
  readonly namespace: string
  readonly image: string
  readonly plugins: string
  readonly pluginsDir: Option.Option<string>
  readonly watchNamespace: Option.Option<string>
  readonly lock: Option.Option<string>
  readonly serviceBinding: boolean
  readonly bindJobs: boolean
  readonly crdsOnly: boolean
}

/** The lock file's text, checked, and checked against --plugins: what it does not list would be refused at start. */
const lockText = Effect.fnUntraced(function*(path: string, plugins: string) {
  const lock = yield* readReleaseLock(path)
  for (const spec of parsePluginSpecs([plugins]).specs) {
    const locked = lock.plugins.find((p) => p.repository === spec.repository)
    if (locked?.tag !== spec.tag) {
      return yield* Effect.fail(
        new Error(
          `--plugins names ${spec}, which the lock file ${path} does not list${
            locked === undefined ? "" : ` (it pins ${locked.tag})`
          }: lock it first with halkyon plugins lock ${spec} --lock ${path}`
        )
      )
    }
  }
  return JSON.stringify(lock, null, 2) + "\n"
})

/** Why `halkyon manifests` cannot print the plugins' roles. */
export class PluginRolesUnknown extends Schema.TaggedError<PluginRolesUnknown>()("PluginRolesUnknown", {
  problem: Schema.Literals(["not installed", "not started"]),
  pluginsDir: Schema.String,
  plugins: Schema.Array(Schema.String)
}) {
  override get message() {
    switch (this.problem) {
      case "not installed":
        return `${this.plugins.join(", ")} not installed in ${this.pluginsDir}: install first ` +
          `(halkyon plugins install --plugins-dir ${this.pluginsDir} ${this.plugins.join(" ")})`
      case "not started":
        return `plugins of ${this.pluginsDir} that did not start, whose roles would be missing: ${this.plugins.join("; ")}`
    }
  }
}

/** The plugins of the folder, as their Describe declares them; fails naming each plugin that did not start. */
const describePlugins = Effect.fn("manifests.describePlugins")(function*(pluginsDir: string, named: string) {
  const specs = named === "" ? [] : named.split(",")
  if (specs.length > 0) {
    const lock = yield* readLock(pluginsDir)
    const missing = specs.filter((spec) => !lock.plugins.some((p) => p.spec === spec))
    if (missing.length > 0) {
      return yield* new PluginRolesUnknown({ problem: "not installed", pluginsDir, plugins: missing })
    }
  }
  const { PluginHost } = yield* Effect.promise(() => import("../plugin-host/PluginHost.ts"))
  const statuses = yield* Effect.gen(function*() {
    const host = yield* PluginHost
    yield* host.awaitSettled
    return yield* host.statuses
  }).pipe(
    Effect.provide(
      PluginHost.layer({ ...defaultHostSettings, pluginsDir, watch: false, restart: false }).pipe(Layer.provide(Metrics.layer))
    )
  )
  const failed = statuses.filter((s) => s.launched === undefined)
  if (failed.length > 0) {
    return yield* new PluginRolesUnknown({
      problem: "not started",
      pluginsDir,
      plugins: failed.map((s) => `${s.name} (${s.error ?? s.state})`)
    })
  }
  return statuses.flatMap((s): ReadonlyArray<PluginDeclaration> =>
    s.launched === undefined ? [] : [{ name: s.name, dependents: s.launched.description.dependents }]
  )
})

/** Prints the manifests the flags ask for. */
export const printManifests = ({ crdsOnly, pluginsDir, watchNamespace, lock, ...options }: ManifestsFlagValues) =>
  Effect.gen(function*() {
    if (options.bindJobs && !options.serviceBinding) {
      return yield* Effect.fail(
        new Error("--bind-jobs grants the ServiceBinding controller's identity a rule, and --service-binding=false prints none: drop one")
      )
    }
    const text = Option.isSome(lock) ? yield* lockText(lock.value, options.plugins) : undefined
    const dir = Option.getOrUndefined(pluginsDir)
    if (dir === undefined && options.plugins !== "") {
      // Printed all the same (the YAML is still right for everything else), but the operator, which impersonates
      // each plugin, will refuse to start until the roles are applied: fail closed, and say so now.
      yield* Console.error(
        `warning: no roles for ${options.plugins.split(",").join(", ")} in this output: without --plugins-dir (the folder they are ` +
          "installed in) what they declare is unknown, and the operator will not start until their roles are applied. " +
          "Install them (halkyon plugins install --plugins-dir DIR ...) and add --plugins-dir DIR."
      )
    }
    // The plugins' start-up logs go to stderr, as every command's: stdout is the YAML alone.
    const pluginRoles = dir === undefined || crdsOnly ? [] : yield* withLogging(describePlugins(dir, options.plugins))
    const servedNamespace = Option.getOrUndefined(watchNamespace)
    const objects = manifests({
      ...options,
      pluginRoles,
      ...(servedNamespace === undefined ? {} : { servedNamespace }),
      ...(text === undefined ? {} : { lock: text })
    })
    yield* Console.log(yield* renderManifests(objects.filter((m) => !crdsOnly || m.kind === "CustomResourceDefinition")))
  })
