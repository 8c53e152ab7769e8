/**
 * `halkyon run`: the operator. Loads the plugins, watches Capabilities and
 * their dependents, and reconciles them until SIGINT or SIGTERM, which stop
 * taking work, let in-flight reconciles finish, and stop the plugins.
 */
import { hostname } from "node:os"
import { Config, Effect, Layer, Option, Result, Schema } from "effect"
import { Command, Flag } from "effect/cli"
import { loadKubeConfig } from "../kube/ClusterAccess.ts"
import { KubeClient } from "../kube/KubeClient.ts"
import { PluginHost } from "../plugin-host/PluginHost.ts"
import { startController } from "../reconciler/Controller.ts"
import { ObjectCache } from "../reconciler/ObjectCache.ts"
import { Reconciler } from "../reconciler/Reconciler.ts"
import { HttpEndpoints, Readiness } from "../operator/HttpEndpoints.ts"
import { LeaderElection } from "../operator/LeaderElection.ts"
import { Metrics } from "../operator/Metrics.ts"
import { durationFlag, type HostFlagValues, hostFlags, hostSettings } from "./HostFlags.ts"
import { withLogging } from "./Logging.ts"
import { installListed, releaseFlags, type ReleaseFlagValues, settingsFor } from "./PluginSources.ts"
import { PluginDownloader } from "../downloader/PluginDownloader.ts"

/**
 * Installs what --plugins / HALKYON_PLUGINS names before plugins load. A
 * failure is reported, and the operator runs with the plugins it has.
 */
const installNamed = Effect.fn("run.installPlugins")(function*(flags: RunFlagValues) {
  const settings = yield* settingsFor(flags.pluginsDir, flags)
  const { results, invalid } = yield* installListed([flags.plugins], { repair: false }).pipe(
    Effect.provide(PluginDownloader.layer(settings))
  )
  const failed = results.filter(Result.isFailure).length + invalid.length
  if (failed > 0) yield* Effect.logWarning(`${failed} of ${results.length + invalid.length} plugins named in --plugins/HALKYON_PLUGINS could not be installed; running with the plugins the folder has`)
})

export const runFlags = {
  ...hostFlags,
  plugins: Flag.String("plugins").pipe(
    Flag.withDescription("plugins to install into the plugins folder before starting, comma-separated org/repo@tag (env HALKYON_PLUGINS)"),
    Flag.withFallbackConfig(Config.String("HALKYON_PLUGINS")),
    Flag.withDefault("")
  ),
  ...releaseFlags,
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
  ),
  gracefulShutdownTimeout: durationFlag(
    "graceful-shutdown-timeout",
    30_000,
    "on SIGTERM, how long in-flight reconciles may take to finish before they are abandoned"
  ),
  leaderElect: Flag.Boolean("leader-elect").pipe(
    Flag.withDescription("elect a leader through a coordination.k8s.io Lease, so that only one of several replicas reconciles"),
    Flag.withDefault(false)
  ),
  leaderElectionNamespace: Flag.String("leader-election-namespace").pipe(
    Flag.withDescription("namespace of the Lease (default: the pod's namespace, POD_NAMESPACE, or default)"),
    Flag.withFallbackConfig(Config.String("POD_NAMESPACE")),
    Flag.withDefault("default")
  ),
  leaderElectionId: Flag.String("leader-election-id").pipe(Flag.withDescription("name of the Lease"), Flag.withDefault("halkyon-operator")),
  leaseDuration: durationFlag("lease-duration", 15_000, "how long a Lease holds without renewal"),
  renewDeadline: durationFlag("renew-deadline", 10_000, "how long the leader keeps trying to renew before it steps down"),
  retryPeriod: durationFlag("retry-period", 2_000, "how often candidates try to acquire, and the leader to renew"),
  healthAddr: Flag.String("health-addr").pipe(
    Flag.withDescription('where /healthz and /readyz are served, e.g. ":8081"; "0" disables'),
    Flag.withDefault(":8081")
  ),
  metricsAddr: Flag.String("metrics-addr").pipe(
    Flag.withDescription('where /metrics (Prometheus) is served, e.g. ":8080"; "0" disables'),
    Flag.withDefault(":8080")
  )
}

export interface RunFlagValues extends HostFlagValues, ReleaseFlagValues {
  readonly plugins: string
  readonly kubeconfig: Option.Option<string>
  readonly context: Option.Option<string>
  readonly namespace: Option.Option<string>
  readonly concurrency: number
  readonly gracefulShutdownTimeout: number
  readonly leaderElect: boolean
  readonly leaderElectionNamespace: string
  readonly leaderElectionId: string
  readonly leaseDuration: number
  readonly renewDeadline: number
  readonly retryPeriod: number
  readonly healthAddr: string
  readonly metricsAddr: string
}

export class LeadershipLost extends Schema.TaggedError<LeadershipLost>()("LeadershipLost", { lease: Schema.String }) {
  override get message() {
    return `lost the leadership of lease ${this.lease}: exiting, so that this replica restarts as a candidate while another reconciles`
  }
}

export const runOperator = Effect.fn("run")(function*(flags: RunFlagValues) {
  if (flags.concurrency < 1) return yield* Effect.fail(new Error(`--concurrency must be at least 1, got ${flags.concurrency}`))
  const kc = yield* loadKubeConfig({ kubeconfig: Option.getOrUndefined(flags.kubeconfig), context: Option.getOrUndefined(flags.context) })
  const settings = hostSettings(flags)
  if (flags.plugins.trim() !== "") yield* installNamed(flags)
  const namespace = Option.getOrUndefined(flags.namespace)
  const plugins = PluginHost.live(settings)
  const kube = KubeClient.layer(kc)
  const observability = Layer.mergeAll(Metrics.layer, Readiness.layer)
  const endpoints = HttpEndpoints.layer({ healthAddr: flags.healthAddr, metricsAddr: flags.metricsAddr })
  const lease = `${flags.leaderElectionNamespace}/${flags.leaderElectionId}`
  const election = flags.leaderElect
    ? LeaderElection.layer({
        kubeconfig: kc,
        namespace: flags.leaderElectionNamespace,
        name: flags.leaderElectionId,
        identity: `${hostname()}_${crypto.randomUUID()}`,
        leaseDurationMs: flags.leaseDuration,
        renewDeadlineMs: flags.renewDeadline,
        retryPeriodMs: flags.retryPeriod
      })
    : Layer.empty
  // Closing order on exit is the reverse: the controller stops (in-flight
  // reconciles finish), then the Lease is released, then plugins stop.
  const layer = Reconciler.layer.pipe(
    Layer.provideMerge(Layer.mergeAll(plugins, kube, election, endpoints, ObjectCache.layer)),
    Layer.provideMerge(observability)
  )

  yield* Effect.gen(function*() {
    const host = yield* PluginHost
    const kubeClient = yield* KubeClient
    const readiness = yield* Readiness
    const metrics = yield* Metrics
    const served = yield* HttpEndpoints
    yield* host.awaitSettled
    const statuses = yield* host.statuses
    yield* Effect.logInfo(
      `operator starting against ${kubeClient.server} (${namespace === undefined ? "all namespaces" : `namespace ${namespace}`}); ` +
        `${statuses.filter((s) => s.state === "running").length} of ${statuses.length} plugins running` +
        (served.health === undefined ? "" : `; health on ${served.health.host}:${served.health.port}`) +
        (served.metrics === undefined ? "" : `; metrics on ${served.metrics.host}:${served.metrics.port}`)
    )
    const leadership = yield* Effect.serviceOption(LeaderElection)
    if (Option.isSome(leadership)) {
      // A standby is ready: it serves probes and takes over when elected.
      yield* readiness.markReady
      yield* Effect.logInfo(`waiting to lead (lease ${lease}, identity ${leadership.value.identity})`)
      yield* leadership.value.awaitLeadership
      yield* readiness.markNotReady("syncing caches")
    }
    const controller = yield* startController({
      namespace,
      concurrency: flags.concurrency,
      shutdownTimeoutMs: flags.gracefulShutdownTimeout,
      onReconciled: metrics.reconciled,
      onQueueDepth: metrics.queueDepth
    })
    yield* controller.awaitSynced
    yield* readiness.markReady
    yield* Effect.logInfo("operator ready: caches synced")
    if (Option.isNone(leadership)) return yield* Effect.never
    yield* leadership.value.lost
    return yield* new LeadershipLost({ lease })
  }).pipe(Effect.scoped, Effect.provide(layer))
})

export const runCommand = Command.make("run", runFlags, (flags) => withLogging(runOperator(flags))).pipe(
  Command.withDescription("Run the operator: reconcile Capabilities with the plugins of the plugins folder until interrupted"),
  Command.withExamples([
    { command: "halkyon run --plugins-dir dist/plugins", description: "Run against the current kubeconfig context" },
    { command: "halkyon run --kubeconfig ./kubeconfig --context kind-dev -n shop", description: "One namespace of another cluster" },
    { command: "HALKYON_PLUGINS=acme/redis@v2.1.0 halkyon run --plugins-dir ./plugins", description: "Install a plugin from its release, then run" }
  ])
)
