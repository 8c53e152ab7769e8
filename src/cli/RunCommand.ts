/**
 * `halkyon run`: the operator's flags and command. What it runs is
 * src/operator/Operator.ts, loaded only when it runs.
 */
import { Config, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { parseMemoryQuantity, pluginCallPermitsFor } from "../config/HostConfig.ts"
import { defaultListenAddress, HealthPort, MetricsPort } from "../config/ListenDefaults.ts"
import type { OperatorOptions } from "../operator/Operator.ts"
import { durationFlag, type HostFlagValues, hostFlags, hostSettings } from "./HostFlags.ts"
import { withLogging } from "./Logging.ts"
import { releaseFlags, type ReleaseFlagValues } from "./PluginSources.ts"
import { kubeconfigPaths } from "../kube/KubeconfigPaths.ts"

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
  pluginMemoryLimit: Flag.String("plugin-memory-limit").pipe(
    Flag.withDescription(
      "memory each plugin process may use, e.g. 256Mi: a cgroup's limit (the kernel's OOM killer) where halkyon can make one, " +
        "else a watchdog on its resident memory; a plugin over it is killed, reported and restarted with backoff " +
        "(env HALKYON_PLUGIN_MEMORY_LIMIT; default: unlimited)"
    ),
    Flag.withFallbackConfig(Config.String("HALKYON_PLUGIN_MEMORY_LIMIT")),
    Flag.mapTryCatch(parseMemoryQuantity, (e) => (e instanceof Error ? e.message : String(e))),
    Flag.optional
  ),
  leaderElect: Flag.Boolean("leader-elect").pipe(
    Flag.withDescription("elect a leader through a coordination.k8s.io Lease, so that only one of several replicas reconciles"),
    Flag.withDefault(false)
  ),
  leaderCheckWrites: Flag.Boolean("leader-check-writes").pipe(
    Flag.withDescription(
      "with --leader-elect: before each write, check that this replica still holds the Lease by its own clock (no extra request), " +
        "and refuse the write if not"
    ),
    Flag.withDefault(false)
  ),
  leaseClockAhead: durationFlag(
    "lease-clock-ahead",
    0,
    "for fault tests: the times this replica writes into the Lease run this far ahead of its clock, to stage clock skew between replicas"
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
  impersonate: Flag.Literals("impersonate", ["auto", "always", "never"]).pipe(
    Flag.withDescription(
      "write each plugin's dependents as its own ServiceAccount halkyon-plugin-<name> (from halkyon manifests): auto when allowed, " +
        "always (start fails when not allowed), never (env HALKYON_IMPERSONATE)"
    ),
    Flag.withFallbackConfig(Config.Literals(["auto", "always", "never"], "HALKYON_IMPERSONATE")),
    Flag.withDefault("auto")
  ),
  operatorNamespace: Flag.String("operator-namespace").pipe(
    Flag.withDescription("where the plugins' ServiceAccounts are: the namespace halkyon manifests installs into (env POD_NAMESPACE)"),
    Flag.withFallbackConfig(Config.String("POD_NAMESPACE")),
    Flag.withDefault("halkyon-system")
  ),
  serviceBinding: Flag.Boolean("service-binding").pipe(
    Flag.withDescription(
      "run the ServiceBinding controller (servicebinding.io/v1); --service-binding=false where another implementation runs"
    ),
    Flag.withDefault(true)
  ),
  healthAddr: Flag.String("health-addr").pipe(
    Flag.withDescription(
      "where /healthz and /readyz are served, e.g. \":8081\"; \"0\" disables (default: \":8081\" in a pod, \"127.0.0.1:8081\" elsewhere)"
    ),
    Flag.withDefault(defaultListenAddress(HealthPort))
  ),
  metricsAddr: Flag.String("metrics-addr").pipe(
    Flag.withDescription(
      "where /metrics (Prometheus) is served, e.g. \":8080\"; \"0\" disables (default: \":8080\" in a pod, \"127.0.0.1:8080\" elsewhere)"
    ),
    Flag.withDefault(defaultListenAddress(MetricsPort))
  )
}

export interface RunFlagValues extends HostFlagValues, ReleaseFlagValues {
  readonly plugins: string
  readonly kubeconfig: Option.Option<string>
  readonly context: Option.Option<string>
  readonly namespace: Option.Option<string>
  readonly concurrency: number
  readonly gracefulShutdownTimeout: number
  readonly pluginMemoryLimit: Option.Option<number>
  readonly leaderElect: boolean
  readonly leaderCheckWrites: boolean
  readonly leaseClockAhead: number
  readonly leaderElectionNamespace: string
  readonly leaderElectionId: string
  readonly leaseDuration: number
  readonly renewDeadline: number
  readonly retryPeriod: number
  readonly impersonate: "auto" | "always" | "never"
  readonly operatorNamespace: string
  readonly serviceBinding: boolean
  readonly healthAddr: string
  readonly metricsAddr: string
}

/** What to install before the plugins load: --plugins, or else every release of the --lock file. */
const installOptions = Effect.fnUntraced(function*(flags: RunFlagValues) {
  if (flags.plugins.trim() === "" && Option.isNone(flags.lock)) return undefined
  const { settingsFor } = yield* Effect.promise(() => import("./ReleaseSettings.ts"))
  const downloader = yield* settingsFor(flags.pluginsDir, flags)
  const lists = flags.plugins.trim() !== ""
    ? [flags.plugins]
    : (downloader.releaseLock?.lock.plugins ?? []).map((p) => `${p.repository}@${p.tag}`)
  return { lists, downloader }
})

/** The operator's options, from the flags (and the variables they fall back to). */
export const operatorOptions = Effect.fnUntraced(function*(flags: RunFlagValues) {
  const options: OperatorOptions = {
    // Each plugin gets at most half the reconcile workers: one plugin's slow calls never hold them all.
    // The kubeconfig files are kept from local plugins where the kernel offers Landlock (docs/security.md).
    host: hostSettings(flags, {
      pluginCallPermits: pluginCallPermitsFor(flags.concurrency),
      hiddenFromPlugins: kubeconfigPaths(Option.getOrUndefined(flags.kubeconfig)),
      ...Option.match(flags.pluginMemoryLimit, { onNone: () => ({}), onSome: (pluginMemoryLimitBytes) => ({ pluginMemoryLimitBytes }) })
    }),
    install: yield* installOptions(flags),
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
        retryPeriodMs: flags.retryPeriod,
        checkWrites: flags.leaderCheckWrites,
        ...(flags.leaseClockAhead === 0 ? {} : { wallClock: () => Date.now() + flags.leaseClockAhead })
      }
      : undefined,
    impersonation: {
      mode: flags.impersonate,
      operatorNamespace: flags.operatorNamespace,
      regenerate: `halkyon manifests --namespace ${flags.operatorNamespace} --plugins-dir ${flags.pluginsDir}` +
        (flags.plugins.trim() === "" ? "" : ` --plugins ${flags.plugins.trim()}`) +
        Option.match(flags.namespace, { onNone: () => "", onSome: (ns) => ` --watch-namespace ${ns}` })
    },
    serviceBinding: flags.serviceBinding,
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
      {
        command: "HALKYON_PLUGINS=acme/redis@v2.1.0 halkyon run --plugins-dir ./plugins",
        description: "Install a plugin from its release, then run"
      }
    ])
  )
