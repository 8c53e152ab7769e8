/**
 * The operator (`halkyon run`): loads the plugins, watches Capabilities and
 * their dependents, and reconciles them until SIGINT or SIGTERM, which stop
 * taking work, let in-flight reconciles finish, and stop the plugins.
 */
import { hostname } from "node:os"
import { Effect, Fiber, Layer, Option, Result } from "effect"
import type { HostSettings } from "../config/HostConfig.ts"
import { installListed } from "../downloader/InstallListed.ts"
import { type DownloaderSettings, PluginDownloader } from "../downloader/PluginDownloader.ts"
import { loadKubeConfig } from "../kube/ClusterAccess.ts"
import { KubeClient } from "../kube/KubeClient.ts"
import { PluginHost } from "../plugin-host/PluginHost.ts"
import { startController } from "../reconciler/CapabilityController.ts"
import { startBindingController } from "../binding/BindingController.ts"
import { releaseInUse } from "../binding/InUseRelease.ts"
import { bindingServiceAccountUser } from "../api/BindingRbac.ts"
import { referencesServiceAccountUser } from "../api/ReferenceRbac.ts"
import { ParameterReferences } from "../reconciler/ParameterReferences.ts"
import { ObjectCache } from "../controller/ObjectCache.ts"
import { Reconciler } from "../reconciler/Reconciler.ts"
import { type ImpersonationMode, PluginIdentity } from "../reconciler/PluginIdentity.ts"
import { HttpEndpoints, Readiness } from "./HttpEndpoints.ts"
import { LeaderElection } from "./LeaderElection.ts"
import { Metrics } from "../metrics/Metrics.ts"
import { LeadershipLost } from "./Errors.ts"

/** What the operator runs with; `halkyon run` maps its flags onto it. */
export interface OperatorOptions {
  /** Where the plugins are and how they are started, called and stopped. */
  readonly host: HostSettings
  /** Plugins to install into the plugins folder before they load, and from where. */
  readonly install?: {
    /** Comma-separated org/repo@tag lists, as HALKYON_PLUGINS holds them. */
    readonly lists: ReadonlyArray<string>
    readonly downloader: DownloaderSettings
  } | undefined
  /** The kubeconfig file and context; undefined finds them as kubectl does. */
  readonly kubeconfig?: string | undefined
  readonly context?: string | undefined
  /** Only this namespace; all namespaces when undefined. */
  readonly namespace?: string | undefined
  /** How many Capabilities are reconciled at once. */
  readonly concurrency: number
  /** On SIGTERM, how long in-flight reconciles may take to finish before they are abandoned. */
  readonly gracefulShutdownTimeoutMs: number
  /** A Lease to lead through; without one this replica always reconciles. */
  readonly leaderElection?: {
    readonly namespace: string
    readonly name: string
    readonly leaseDurationMs: number
    readonly renewDeadlineMs: number
    readonly retryPeriodMs: number
    /**
     * Before each write, check that this replica still leads by its own
     * monotonic clock (no request); refuse the write otherwise
     * (docs/reliability.md). Off by default.
     */
    readonly checkWrites?: boolean | undefined
    /** The wall clock written into the Lease (LeaderElectionOptions.wallClock); fault tests run one ahead. */
    readonly wallClock?: (() => number) | undefined
  } | undefined
  /** Whether plugins' dependents are written as their own ServiceAccounts (PluginIdentity). */
  readonly impersonation: {
    readonly mode: ImpersonationMode
    /** Where the plugins' ServiceAccounts are: the namespace `halkyon manifests` installs into. */
    readonly operatorNamespace: string
    /** The command that regenerates the RBAC, for messages. */
    readonly regenerate: string
  }
  /**
   * Whether the ServiceBinding controller (servicebinding.io/v1) runs; off
   * where another implementation serves ServiceBindings. Default: on.
   */
  readonly serviceBinding?: boolean | undefined
  /** Where /healthz and /readyz, and /metrics, are served ("host:port", ":port", or "0" for nowhere). */
  readonly healthAddr: string
  readonly metricsAddr: string
}

/**
 * Installs what --plugins / HALKYON_PLUGINS names before plugins load. A
 * failure is reported, and the operator runs with the plugins it has.
 */
const installNamed = Effect.fn("Operator.installPlugins")(function*(install: NonNullable<OperatorOptions["install"]>) {
  const { results, invalid } = yield* installListed(install.lists, { repair: false }).pipe(
    Effect.provide(PluginDownloader.layer(install.downloader))
  )
  const failed = results.filter(Result.isFailure).length + invalid.length
  if (failed > 0) {
    yield* Effect.logWarning(
      `${failed} of ${
        results.length + invalid.length
      } plugins named in --plugins/HALKYON_PLUGINS could not be installed; running with the plugins the folder has`
    )
  }
})

export const runOperator = Effect.fn("Operator.run")(function*(options: OperatorOptions) {
  if (options.concurrency < 1) return yield* Effect.fail(new Error(`--concurrency must be at least 1, got ${options.concurrency}`))
  const kc = yield* loadKubeConfig({ kubeconfig: options.kubeconfig, context: options.context })
  const install = options.install
  const namespace = options.namespace
  const plugins = PluginHost.layer(options.host)
  const leaderElection = options.leaderElection
  const electionIdentity = leaderElection === undefined ? undefined : `${hostname()}_${crypto.randomUUID()}`
  // Set to the election's check once it is built, before any controller starts writing.
  const writeGate: { refuse: () => string | undefined } = { refuse: () => undefined }
  const kube = KubeClient.layer(kc, {
    identity: electionIdentity,
    beforeWrite: leaderElection?.checkWrites === true ? () => writeGate.refuse() : undefined
  })
  const identity = PluginIdentity.layer({
    mode: options.impersonation.mode,
    namespace: options.impersonation.operatorNamespace,
    regenerate: options.impersonation.regenerate,
    servedNamespace: namespace
  }).pipe(Layer.provide(kube))
  // Probes answer from the start, installs included: a slow download is not a dead pod.
  const endpoints = HttpEndpoints.layer({ healthAddr: options.healthAddr, metricsAddr: options.metricsAddr }).pipe(
    Layer.provideMerge(Layer.mergeAll(Metrics.layer, Readiness.layer))
  )
  const lease = leaderElection === undefined ? "" : `${leaderElection.namespace}/${leaderElection.name}`
  const election = leaderElection !== undefined && electionIdentity !== undefined
    ? LeaderElection.layer({ kubeconfig: kc, ...leaderElection, identity: electionIdentity })
    : Layer.empty
  // Closing order on exit is the reverse: the controller stops (in-flight
  // reconciles finish), then the Lease is released, then plugins stop, then
  // the probes.
  // With --impersonate=always (in a cluster) Secrets and ConfigMaps that parameters reference are read as their own ServiceAccount.
  // Its values go to the plugin host's Redactions (provided below with the host).
  const references = ParameterReferences.layerNoDeps(
    options.impersonation.mode === "always"
      ? (client) => client.impersonating(referencesServiceAccountUser(options.impersonation.operatorNamespace))
      : undefined
  )
  const layer = Reconciler.layerNoDeps.pipe(
    Layer.provideMerge(references),
    Layer.provideMerge(Layer.mergeAll(plugins, kube, identity, election, ObjectCache.layer))
  )

  const installFirst = Effect.gen(function*() {
    if (install === undefined || install.lists.every((list) => list.trim() === "")) return
    const readiness = yield* Readiness
    yield* readiness.markNotReady(`installing ${install.lists.join(",")}`)
    yield* installNamed(install)
    yield* readiness.markNotReady("starting")
  })

  const operate = Effect.gen(function*() {
    const host = yield* PluginHost
    const kubeClient = yield* KubeClient
    const readiness = yield* Readiness
    const metrics = yield* Metrics
    const served = yield* HttpEndpoints
    yield* host.awaitSettled
    const statuses = yield* host.statuses
    yield* (yield* PluginIdentity).decide(
      statuses.flatMap((s) => (s.launched === undefined ? [] : [{ name: s.name, dependents: s.launched.description.dependents }]))
    )
    yield* Effect.logInfo(
      `operator starting against ${kubeClient.server} (${namespace === undefined ? "all namespaces" : `namespace ${namespace}`}); ` +
        `${statuses.filter((s) => s.state === "running").length} of ${statuses.length} plugins running` +
        (served.health === undefined ? "" : `; health on ${served.health.host}:${served.health.port}`) +
        (served.metrics === undefined ? "" : `; metrics on ${served.metrics.host}:${served.metrics.port}`)
    )
    const leadership = yield* Effect.serviceOption(LeaderElection)
    if (Option.isSome(leadership)) writeGate.refuse = leadership.value.refuseWrite
    if (Option.isSome(leadership)) {
      // A standby is ready: it serves probes and takes over when elected.
      yield* readiness.markReady
      yield* Effect.logInfo(`waiting to lead (lease ${lease}, identity ${leadership.value.identity})`)
      yield* leadership.value.awaitLeadership
      yield* readiness.markNotReady("syncing caches")
    }
    const controller = yield* startController({
      namespace,
      concurrency: options.concurrency,
      shutdownTimeoutMs: options.gracefulShutdownTimeoutMs,
      onReconciled: metrics.reconciled,
      onQueue: (sizes) => {
        metrics.queueDepth(sizes.waiting)
        metrics.queuePending(sizes.pending)
      }
    })
    let bindingFence: Effect.Effect<void> = Effect.void
    if (options.serviceBinding !== false) {
      // With --impersonate=always (in a cluster) it acts as its own ServiceAccount, whose role holds workloads and Secrets.
      const as = options.impersonation.mode === "always"
        ? kubeClient.impersonating(bindingServiceAccountUser(options.impersonation.operatorNamespace))
        : kubeClient
      bindingFence =
        (yield* startBindingController({ namespace, concurrency: 2, shutdownTimeoutMs: options.gracefulShutdownTimeoutMs }).pipe(
          Effect.provideService(KubeClient, KubeClient.of(as))
        )).fence
      yield* Effect.logInfo(`ServiceBinding controller on (servicebinding.io/v1)${as === kubeClient ? "" : `, as ${as.actingAs}`}`)
    } else {
      yield* Effect.logInfo("ServiceBinding controller off (--service-binding=false)")
      // Its in-use finalizer, left on Capabilities by a run with it on, must not hold their deletion forever.
      const release = yield* releaseInUse({ namespace }).pipe(Effect.forkScoped)
      // It writes too: on a loss of the Lease it stops with the controllers.
      bindingFence = Fiber.interrupt(release).pipe(Effect.asVoid)
    }
    yield* controller.awaitSynced
    yield* readiness.markReady
    yield* Effect.logInfo("operator ready: caches synced")
    if (Option.isNone(leadership)) return yield* Effect.never
    yield* leadership.value.lost
    // Another replica may lead within moments: nothing in flight may go on writing.
    yield* controller.fence
    yield* bindingFence
    return yield* new LeadershipLost({ lease })
  }).pipe(Effect.scoped, Effect.provide(layer))

  yield* installFirst.pipe(Effect.andThen(operate), Effect.scoped, Effect.provide(endpoints))
})
