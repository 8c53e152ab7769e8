/**
 * `halkyon manifests`: prints what a cluster needs to run halkyon (CRDs,
 * namespace, RBAC, Deployment) as multi-document YAML for `kubectl apply -f -`.
 */
import { Console, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { defaultImage, defaultNamespace, type Manifest, manifests } from "../api/Manifests.ts"
import { ExpectedForm } from "../downloader/Errors.ts"
import { parsePluginSpecs } from "../downloader/PluginSpec.ts"
import { readReleaseLock } from "../lock/ReleaseLock.ts"

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
    Flag.withDescription(`plugins the operator installs from their releases at start, comma-separated ${ExpectedForm} (sets HALKYON_PLUGINS)`),
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
  lock: Flag.File("lock").pipe(
    Flag.withDescription("a lock file (halkyon plugins lock): shipped in a ConfigMap, it decides what the operator installs, and only installed plugins run"),
    Flag.optional
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
      return yield* Effect.fail(new Error(`--plugins names ${spec}, which the lock file ${path} does not list${locked === undefined ? "" : ` (it pins ${locked.tag})`}: lock it first with halkyon plugins lock ${spec} --lock ${path}`))
    }
  }
  return JSON.stringify(lock, null, 2) + "\n"
})

export const manifestsCommand = Command.make("manifests", flags, ({ crdsOnly, lock, ...options }) =>
  Effect.gen(function*() {
    const text = Option.isSome(lock) ? yield* lockText(lock.value, options.plugins) : undefined
    const objects = manifests({ ...options, ...(text === undefined ? {} : { lock: text }) })
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
    { command: "halkyon manifests --plugins acme/redis@v2.1.0 | kubectl apply -f -", description: "An operator that installs the redis plugin from its release at start" },
    { command: "halkyon manifests --lock halkyon.lock | kubectl apply -f -", description: "An operator that installs what the lock file pins, and runs nothing else" }
  ])
)
