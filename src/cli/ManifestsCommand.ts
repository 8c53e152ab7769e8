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
import { Effect } from "effect"
import { Command, Flag } from "effect/cli"
import { defaultImage, defaultNamespace } from "../api/ManifestDefaults.ts"
import { ExpectedForm } from "../downloader/Errors.ts"
import { parsePluginSpecs } from "../downloader/PluginSpec.ts"

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
  bindJobs: Flag.Boolean("bind-jobs").pipe(
    Flag.withDescription(
      "let ServiceBindings bind Jobs: grants the binding controller's identity, cluster-wide, list/create/patch/delete on " +
        "MutatingAdmissionPolicies and their bindings, with which the API server projects a binding into each Job as it is " +
        "created (a Job's pod template cannot change afterwards). Off by default: such a policy can mutate any object " +
        "at its creation, in any namespace; without it a ServiceBinding of a Job reports ProjectionFailed"
    ),
    Flag.withDefault(false)
  ),
  crdsOnly: Flag.Boolean("crds-only").pipe(
    Flag.withDescription("print only the CRDs (to run the operator outside the cluster, with halkyon run)"),
    Flag.withDefault(false)
  )
}

export const manifestsCommand = Command.make(
  "manifests",
  flags,
  // The work (the manifests, the CRDs, the plugin host for --plugins-dir) loads when the command runs.
  (values) => Effect.flatMap(Effect.promise(() => import("./PrintManifests.ts")), (m) => m.printManifests(values))
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
      command: "halkyon manifests --bind-jobs | kubectl apply -f -",
      description: "Also let ServiceBindings bind Jobs, through MutatingAdmissionPolicies (docs/security.md says what that grants)"
    },
    {
      command: "halkyon manifests --lock halkyon.lock | kubectl apply -f -",
      description: "An operator that installs what the lock file pins, and runs nothing else"
    }
  ])
)
