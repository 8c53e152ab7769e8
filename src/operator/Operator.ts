/**
 * The operator (`halkyon run`): loads the plugins, watches Capabilities and
 * their dependents, and reconciles them until SIGINT or SIGTERM, which stop
 * taking work, let in-flight reconciles finish, and stop the plugins.
 */
import { hostname } from "node:os"
import { Effect, Layer, Option, Result, Schema } from "effect"
import { hostSettings } from "../cli/HostFlags.ts"
import { installListed, settingsFor } from "../cli/PluginSources.ts"
import type { RunFlagValues } from "../cli/RunCommand.ts"
import { PluginDownloader } from "../downloader/PluginDownloader.ts"
import { kubeconfigPaths, loadKubeConfig } from "../kube/ClusterAccess.ts"
import { KubeClient } from "../kube/KubeClient.ts"
import { PluginHost } from "../plugin-host/PluginHost.ts"
import { startController } from "../reconciler/Controller.ts"
import { ObjectCache } from "../controller/ObjectCache.ts"
import { Reconciler } from "../reconciler/Reconciler.ts"
import { HttpEndpoints, Readiness } from "./HttpEndpoints.ts"
import { LeaderElection } from "./LeaderElection.ts"
import { Metrics } from "../metrics/Metrics.ts"

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

export class LeadershipLost extends Schema.TaggedError<LeadershipLost>()("LeadershipLost", { lease: Schema.String }) {
  override get message() {
    return `lost the leadership of lease ${this.lease}: exiting, so that this replica restarts as a candidate while another reconciles`
  }
}

export const runOperator = Effect.fn("run")(function*(flags: RunFlagValues) {
  if (flags.concurrency < 1) return yield* Effect.fail(new Error(`--concurrency must be at least 1, got ${flags.concurrency}`))
  const kc = yield* loadKubeConfig({ kubeconfig: Option.getOrUndefined(flags.kubeconfig), context: Option.getOrUndefined(flags.context) })
  const kubeconfig = { kubeconfig: Option.getOrUndefined(flags.kubeconfig), context: Option.getOrUndefined(flags.context) }
  const settings = hostSettings(flags, { hiddenFromPlugins: kubeconfigPaths(kubeconfig) })
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

