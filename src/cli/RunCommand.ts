/**
 * `halkyon run`: the operator. Loads the plugins, watches Capabilities and
 * their dependents, and reconciles them until SIGINT or SIGTERM, which stop
 * taking work, let in-flight reconciles finish, and stop the plugins.
 */
import { NodeServices } from "@effect/platform-node"
import { Effect, Layer, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { HostConfig } from "../config/HostConfig.ts"
import { loadKubeConfig } from "../kube/ClusterAccess.ts"
import { KubeClient } from "../kube/KubeClient.ts"
import { PluginClient } from "../plugin-client/PluginClient.ts"
import { PluginHost } from "../plugin-host/PluginHost.ts"
import { startController } from "../reconciler/Controller.ts"
import { Reconciler } from "../reconciler/Reconciler.ts"
import { PluginRegistry } from "../registry/PluginRegistry.ts"
import { type HostFlagValues, hostFlags, hostSettings } from "./HostFlags.ts"
import { withLogging } from "./Logging.ts"

export const runFlags = {
  ...hostFlags,
  kubeconfig: Flag.File("kubeconfig").pipe(
    Flag.withDescription("the kubeconfig to use (default: KUBECONFIG, then ~/.kube/config, then in-cluster)"),
    Flag.optional
  ),
  context: Flag.String("context").pipe(Flag.withDescription("the kubeconfig context to use"), Flag.optional),
  namespace: Flag.String("namespace").pipe(
    Flag.withAlias("n"),
    Flag.withDescription("reconcile Capabilities of this namespace only (default: all namespaces)"),
    Flag.optional
  ),
  concurrency: Flag.Int("concurrency").pipe(
    Flag.withDescription("how many Capabilities are reconciled at once"),
    Flag.withDefault(4)
  )
}

export interface RunFlagValues extends HostFlagValues {
  readonly kubeconfig: Option.Option<string>
  readonly context: Option.Option<string>
  readonly namespace: Option.Option<string>
  readonly concurrency: number
}

export const runOperator = Effect.fn("run")(function*(flags: RunFlagValues) {
  if (flags.concurrency < 1) return yield* Effect.fail(new Error(`--concurrency must be at least 1, got ${flags.concurrency}`))
  const kc = yield* loadKubeConfig({ kubeconfig: Option.getOrUndefined(flags.kubeconfig), context: Option.getOrUndefined(flags.context) })
  const settings = hostSettings(flags)
  const namespace = Option.getOrUndefined(flags.namespace)
  const plugins = PluginHost.layer.pipe(
    Layer.provideMerge(PluginRegistry.layer),
    Layer.provide(Layer.mergeAll(HostConfig.layer(settings), PluginClient.layer, NodeServices.layer))
  )
  const kube = KubeClient.layer(kc)
  const layer = Reconciler.layer.pipe(Layer.provideMerge(Layer.mergeAll(plugins, kube)))

  yield* Effect.gen(function*() {
    const host = yield* PluginHost
    const kubeClient = yield* KubeClient
    yield* host.awaitSettled
    const statuses = yield* host.statuses
    yield* Effect.logInfo(
      `operator starting against ${kubeClient.server} (${namespace === undefined ? "all namespaces" : `namespace ${namespace}`}); ` +
        `${statuses.filter((s) => s.state === "running").length} of ${statuses.length} plugins running`
    )
    const controller = yield* startController({ namespace, concurrency: flags.concurrency })
    yield* controller.awaitSynced
    yield* Effect.logInfo("operator ready: caches synced")
    return yield* Effect.never
  }).pipe(Effect.scoped, Effect.provide(layer))
})

export const runCommand = Command.make("run", runFlags, (flags) => withLogging(runOperator(flags))).pipe(
  Command.withDescription("Run the operator: reconcile Capabilities with the plugins of the plugins folder until interrupted"),
  Command.withExamples([
    { command: "halkyon run --plugins-dir dist/plugins", description: "Run against the current kubeconfig context" },
    { command: "halkyon run --kubeconfig ./kubeconfig --context kind-dev -n shop", description: "One namespace of another cluster" }
  ])
)
