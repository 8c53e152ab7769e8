/**
 * `halkyon run`: the operator's flags and command. What it runs is
 * src/operator/Operator.ts, loaded only when it runs.
 */
import { Config, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import type { OperatorOptions } from "../operator/Operator.ts"
import { durationFlag, type HostFlagValues, hostFlags, hostSettings } from "./HostFlags.ts"
import { withLogging } from "./Logging.ts"
import { releaseFlags, type ReleaseFlagValues, settingsFor } from "./PluginSources.ts"

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

/** The operator's options, from the flags (and the variables they fall back to). */
export const operatorOptions = Effect.fnUntraced(function*(flags: RunFlagValues) {
  const options: OperatorOptions = {
    host: hostSettings(flags),
    install: flags.plugins.trim() === "" ? undefined : { lists: [flags.plugins], downloader: yield* settingsFor(flags.pluginsDir, flags) },
    kubeconfig: Option.getOrUndefined(flags.kubeconfig),
    context: Option.getOrUndefined(flags.context),
    namespace: Option.getOrUndefined(flags.namespace),
    concurrency: flags.concurrency,
    gracefulShutdownTimeoutMs: flags.gracefulShutdownTimeout,
    leaderElection: flags.leaderElect
      ? {
          namespace: flags.leaderElectionNamespace,
          name: flags.leaderElectionId,
          leaseDurationMs: flags.leaseDuration,
          renewDeadlineMs: flags.renewDeadline,
          retryPeriodMs: flags.retryPeriod
        }
      : undefined,
    healthAddr: flags.healthAddr,
    metricsAddr: flags.metricsAddr
  }
  return options
})

export const runCommand = Command.make("run", runFlags, (flags) =>
  // Loaded when the operator runs: `halkyon version`, `manifests` or `plugins
  // install` start without the Kubernetes client, the plugin host and the reconciler.
  withLogging(
    Effect.gen(function*() {
      const options = yield* operatorOptions(flags)
      const operator = yield* Effect.promise(() => import("../operator/Operator.ts"))
      return yield* operator.runOperator(options)
    })
  )).pipe(
  Command.withDescription("Run the operator: reconcile Capabilities with the plugins of the plugins folder until interrupted"),
  Command.withExamples([
    { command: "halkyon run --plugins-dir dist/plugins", description: "Run against the current kubeconfig context" },
    { command: "halkyon run --kubeconfig ./kubeconfig --context kind-dev -n shop", description: "One namespace of another cluster" },
    { command: "HALKYON_PLUGINS=acme/redis@v2.1.0 halkyon run --plugins-dir ./plugins", description: "Install a plugin from its release, then run" }
  ])
)
