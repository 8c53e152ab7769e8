/**
 * `halkyon manifests`: prints what a cluster needs to run halkyon (CRDs,
 * namespace, RBAC, Deployment) as multi-document YAML for `kubectl apply -f -`.
 *
 * With --plugins-dir, every plugin of that folder is started once, as
 * `plugins list` does, and its Describe gives the kinds of its own role;
 * plugins named in --plugins must be installed there first (without
 * --plugins-dir they get no role, with a warning). A plugin that does not
 * start fails the command: RBAC printed without it would refuse its
 * dependents.
 */
import { Console, Effect, Layer, Option, Schema } from "effect"
import { Command, Flag } from "effect/cli"
import { defaultImage, defaultNamespace, type Manifest, manifests, type PluginDeclaration } from "../api/Manifests.ts"
import { ExpectedForm } from "../downloader/Errors.ts"
import { parsePluginSpecs } from "../downloader/PluginSpec.ts"
import { readLock } from "../lock/PluginLock.ts"
import { readReleaseLock } from "../lock/ReleaseLock.ts"
import { defaultHostSettings } from "../config/HostConfig.ts"
import { withLogging } from "./Logging.ts"
import { Metrics } from "../metrics/Metrics.ts"

/** The YAML of the objects, its module loaded only when it is printed. */
const renderManifests = (objects: ReadonlyArray<Manifest>) =>
  Effect.map(Effect.promise(() => import("./ManifestYaml.ts")), (yaml) => yaml.renderManifests(objects))

const flags = {
  namespace: Flag.String("namespace").pipe(
    Flag.withAlias("n"),
    Flag.withDescription("namespace the operator runs in (created unless it is default)"),
    Flag.withDefault(defaultNamespace)
  ),
  image: Flag.String("image").pipe(
    Flag.withDescription("the operator's container image"),
    Flag.withDefault(defaultImage)
  ),
  plugins: Flag.String("plugins").pipe(
    Flag.withDescription(
      `plugins the operator installs from their releases at start, comma-separated ${ExpectedForm} (sets HALKYON_PLUGINS)`
    ),
    Flag.withDefault(""),
    Flag.mapTryCatch(
      (text) => {
        const { specs, invalid } = parsePluginSpecs([text])
        if (invalid.length > 0) throw new Error(invalid.map((e) => e.message).join("; "))
        return specs.map(String).join(",")
      },
      (e) => (e instanceof Error ? e.message : String(e))
    )
  ),
  pluginsDir: Flag.Directory("plugins-dir").pipe(
    Flag.withDescription(
      "folder of the plugins the operator runs: each is started once and gets a ServiceAccount and a role " +
        "with exactly the kinds its Describe declares"
    ),
    Flag.optional
  ),
  watchNamespace: Flag.String("watch-namespace").pipe(
    Flag.withDescription(
      "the one namespace the operator serves (run --namespace): plugins' roles are bound there only (default: all namespaces)"
    ),
    Flag.optional
  ),
  lock: Flag.File("lock").pipe(
    Flag.withDescription(
      "a lock file (halkyon plugins lock): shipped in a ConfigMap, it decides what the operator installs, and only installed plugins run"
    ),
    Flag.optional
  ),
  serviceBinding: Flag.Boolean("service-binding").pipe(
    Flag.withDescription(
      "serve ServiceBindings (servicebinding.io/v1): their CRD and the binding controller's identity and role; " +
        "--service-binding=false where another implementation serves them"
    ),
    Flag.withDefault(true)
  ),
  crdsOnly: Flag.Boolean("crds-only").pipe(
    Flag.withDescription("print only the CRDs (to run the operator outside the cluster, with halkyon run)"),
    Flag.withDefault(false)
  )
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

export const manifestsCommand = Command.make(
  "manifests",
  flags,
  ({ crdsOnly, pluginsDir, watchNamespace, lock, ...options }) =>
    Effect.gen(function*() {
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
).pipe(
  Command.withDescription("Print the CRDs, RBAC and Deployment that install halkyon, as YAML for kubectl apply"),
  Command.withExamples([
    { command: "halkyon manifests | kubectl apply -f -", description: "Install halkyon in the halkyon-system namespace" },
    {
      command: "halkyon manifests --namespace operators --image registry.example.com/halkyon:dev | kubectl apply -f -",
      description: "Install it elsewhere, from another image"
    },
    { command: "halkyon manifests --crds-only | kubectl apply -f -", description: "Only the CRDs, for halkyon run on a laptop" },
    {
      command: "halkyon manifests --plugins-dir dist/plugins | kubectl apply -f -",
      description: "With a ServiceAccount and a role for each plugin of the folder, from what it declares"
    },
    {
      command: "halkyon manifests --plugins acme/redis@v2.1.0 --plugins-dir ./plugins | kubectl apply -f -",
      description: "An operator that installs the redis plugin from its release at start (install it into ./plugins first)"
    },
    {
      command: "halkyon manifests --lock halkyon.lock | kubectl apply -f -",
      description: "An operator that installs what the lock file pins, and runs nothing else"
    }
  ])
)
