/**
 * Metrics: the operator's Prometheus metrics and their text exposition
 * (format 0.0.4), with no client library.
 *
 * MetricsRegistry holds counters, gauges and histograms with labels and
 * renders them: HELP and TYPE lines, then one line per series, series sorted
 * by label values so that the output is stable; histograms as cumulative
 * `_bucket{le=...}` lines ending with `+Inf`, then `_sum` and `_count`.
 * Families with labels appear once a series exists (as client_golang does);
 * families without labels always appear, at zero until updated.
 *
 * The Metrics service pre-declares the operator's metrics and updates them
 * through small typed functions. Updates and `render` are plain synchronous
 * functions, not Effects: they only touch numbers in memory, and `render` is
 * called from the HTTP server's callback, outside any fiber.
 *
 * It does not serve /metrics (HttpEndpoints does) and keeps no history.
 */
import { Context, Layer } from "effect"

export type Labels<L extends string> = { readonly [K in L]: string }

const metricName = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const labelName = /^[a-zA-Z_][a-zA-Z0-9_]*$/

/** A sample value as Prometheus writes it: +Inf, -Inf, NaN, or the shortest decimal that reads back the same. */
export const formatValue = (value: number): string => {
  if (Number.isNaN(value)) return "NaN"
  if (value === Infinity) return "+Inf"
  if (value === -Infinity) return "-Inf"
  return String(value)
}

export const escapeLabelValue = (value: string) => value.replace(/\\/g, "\\\\").replace(/"/g, "\\\"").replace(/\n/g, "\\n")
const escapeHelp = (help: string) => help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")

const renderLabels = (pairs: ReadonlyArray<readonly [string, string]>) =>
  pairs.length === 0 ? "" : `{${pairs.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(",")}}`

const compareValues = (a: ReadonlyArray<string>, b: ReadonlyArray<string>) => {
  for (let i = 0; i < a.length; i++) {
    const x = a[i] ?? ""
    const y = b[i] ?? ""
    if (x !== y) return x < y ? -1 : 1
  }
  return 0
}

/** Series of one family, keyed by their label values in the family's label order. */
class SeriesMap<L extends string, S> {
  private readonly series = new Map<string, { readonly values: ReadonlyArray<string>; readonly state: S }>()
  constructor(
    readonly metric: string,
    readonly labelNames: ReadonlyArray<L>,
    private readonly init: () => S
  ) {
    if (!metricName.test(metric)) throw new Error(`invalid metric name ${JSON.stringify(metric)}`)
    for (const l of labelNames) {
      if (!labelName.test(l) || l.startsWith("__")) throw new Error(`invalid label name ${JSON.stringify(l)} for ${metric}`)
    }
    if (new Set(labelNames).size !== labelNames.length) throw new Error(`duplicate label names for ${metric}`)
    // A family without labels has exactly one series, present from the start.
    if (labelNames.length === 0) this.get({} as Labels<L>)
  }

  get(labels: Labels<L>): S {
    const values = this.labelNames.map((l) => {
      const v: unknown = labels[l]
      if (typeof v !== "string") throw new Error(`metric ${this.metric} needs label ${l}`)
      return v
    })
    const key = values.join("\u0000")
    let entry = this.series.get(key)
    if (entry === undefined) {
      entry = { values, state: this.init() }
      this.series.set(key, entry)
    }
    return entry.state
  }

  /** Series sorted by label values, each with its label pairs. */
  sorted(): ReadonlyArray<{ readonly pairs: ReadonlyArray<readonly [string, string]>; readonly state: S }> {
    return [...this.series.values()]
      .sort((a, b) => compareValues(a.values, b.values))
      .map((e) => ({ pairs: this.labelNames.map((l, i) => [l, e.values[i] ?? ""] as const), state: e.state }))
  }

  get size() {
    return this.series.size
  }
}

interface Family {
  readonly name: string
  readonly help: string
  readonly type: "counter" | "gauge" | "histogram"
  readonly lines: () => ReadonlyArray<string> | undefined
}

export class Counter<L extends string> {
  /** @internal */
  readonly series: SeriesMap<L, { value: number }>
  constructor(name: string, labelNames: ReadonlyArray<L>) {
    this.series = new SeriesMap(name, labelNames, () => ({ value: 0 }))
  }
  /** Adds `by` (default 1); a counter only goes up. */
  inc(labels: Labels<L>, by = 1) {
    if (!(by >= 0)) throw new RangeError(`counter ${this.series.metric} can only go up, got ${by}`)
    this.series.get(labels).value += by
  }
  value(labels: Labels<L>) {
    return this.series.get(labels).value
  }
}

export class Gauge<L extends string> {
  /** @internal */
  readonly series: SeriesMap<L, { value: number }>
  constructor(name: string, labelNames: ReadonlyArray<L>) {
    this.series = new SeriesMap(name, labelNames, () => ({ value: 0 }))
  }
  set(labels: Labels<L>, value: number) {
    this.series.get(labels).value = value
  }
  inc(labels: Labels<L>, by = 1) {
    this.series.get(labels).value += by
  }
  dec(labels: Labels<L>, by = 1) {
    this.series.get(labels).value -= by
  }
  value(labels: Labels<L>) {
    return this.series.get(labels).value
  }
}

interface HistogramState {
  /** Observations per bucket, not cumulative: index i counts values in (bounds[i-1], bounds[i]]. */
  readonly counts: Array<number>
  sum: number
  count: number
}

export class Histogram<L extends string> {
  /** @internal */
  readonly series: SeriesMap<L, HistogramState>
  /** Upper bounds, ascending, without +Inf. */
  readonly bounds: ReadonlyArray<number>
  constructor(name: string, labelNames: ReadonlyArray<L>, buckets: ReadonlyArray<number>) {
    if ((labelNames as ReadonlyArray<string>).includes("le")) throw new Error(`histogram ${name} cannot have a label named le`)
    const bounds = buckets.filter((b) => b !== Infinity)
    if (bounds.length === 0 || bounds.some((b, i) => Number.isNaN(b) || (i > 0 && b <= (bounds[i - 1] ?? -Infinity)))) {
      throw new Error(`histogram ${name} needs strictly ascending buckets, got ${buckets.join(", ")}`)
    }
    this.bounds = bounds
    this.series = new SeriesMap(name, labelNames, () => ({ counts: bounds.map(() => 0), sum: 0, count: 0 }))
  }
  observe(labels: Labels<L>, value: number) {
    const state = this.series.get(labels)
    // Buckets are inclusive upper bounds: a value equal to a bound counts in it.
    const i = this.bounds.findIndex((b) => value <= b)
    if (i >= 0) state.counts[i] = (state.counts[i] ?? 0) + 1
    state.sum += value
    state.count += 1
  }
}

/** Prometheus' default buckets, in seconds. */
export const defaultBuckets: ReadonlyArray<number> = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

export class MetricsRegistry {
  private readonly families: Array<Family> = []

  private add(family: Family) {
    if (this.families.some((f) => f.name === family.name)) throw new Error(`metric ${family.name} is declared twice`)
    this.families.push(family)
  }

  counter<L extends string = never>(name: string, help: string, labelNames: ReadonlyArray<L> = []): Counter<L> {
    const counter = new Counter(name, labelNames)
    this.add({ name, help, type: "counter", lines: () => simpleLines(name, counter.series) })
    return counter
  }

  gauge<L extends string = never>(name: string, help: string, labelNames: ReadonlyArray<L> = []): Gauge<L> {
    const gauge = new Gauge(name, labelNames)
    this.add({ name, help, type: "gauge", lines: () => simpleLines(name, gauge.series) })
    return gauge
  }

  histogram<L extends string = never>(
    name: string,
    help: string,
    labelNames: ReadonlyArray<L> = [],
    buckets: ReadonlyArray<number> = defaultBuckets
  ): Histogram<L> {
    const histogram = new Histogram(name, labelNames, buckets)
    this.add({
      name,
      help,
      type: "histogram",
      lines: () => {
        if (histogram.series.size === 0) return undefined
        return histogram.series.sorted().flatMap(({ pairs, state }) => {
          let cumulative = 0
          const buckets = histogram.bounds.map((bound, i) => {
            cumulative += state.counts[i] ?? 0
            return `${name}_bucket${renderLabels([...pairs, ["le", formatValue(bound)]])} ${cumulative}`
          })
          return [
            ...buckets,
            `${name}_bucket${renderLabels([...pairs, ["le", "+Inf"]])} ${state.count}`,
            `${name}_sum${renderLabels(pairs)} ${formatValue(state.sum)}`,
            `${name}_count${renderLabels(pairs)} ${state.count}`
          ]
        })
      }
    })
    return histogram
  }

  /** The text exposition format 0.0.4, ending with a newline. */
  render(): string {
    const out: Array<string> = []
    for (const family of this.families) {
      const lines = family.lines()
      if (lines === undefined) continue
      out.push(`# HELP ${family.name} ${escapeHelp(family.help)}`, `# TYPE ${family.name} ${family.type}`, ...lines)
    }
    return out.length === 0 ? "" : `${out.join("\n")}\n`
  }
}

const simpleLines = (name: string, series: SeriesMap<string, { value: number }>) =>
  series.size === 0 ? undefined : series.sorted().map(({ pairs, state }) => `${name}${renderLabels(pairs)} ${formatValue(state.value)}`)

export type ReconcileResult = "success" | "error" | "requeue"

/** Reconciles wait on plugin calls (10 s deadline by default), hence the long tail. */
export const reconcileBuckets: ReadonlyArray<number> = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
/** A plugin call is well under a millisecond when all is well (docs/performance.md) and up to the call deadline when not. */
export const pluginCallBuckets: ReadonlyArray<number> = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

export class Metrics extends Context.Service<Metrics, {
  /** Counts a finished reconcile by result and records how long it took. */
  readonly reconciled: (result: ReconcileResult, seconds: number) => void
  /** Sets how many Capabilities wait in the work queue. */
  readonly queueDepth: (depth: number) => void
  /** Sets how many Capabilities the work queue has not finished: waiting, being reconciled, or scheduled to be again. */
  readonly queuePending: (pending: number) => void
  readonly pluginRestarted: (plugin: string) => void
  /** A replaced plugin file that could not start; the previous version kept serving. */
  readonly pluginReplaceFailed: (plugin: string) => void
  /** Records one RPC to a plugin and how long it took, failed calls included. */
  readonly pluginCall: (plugin: string, method: string, seconds: number) => void
  /** Counts a plugin's log lines dropped over its rate limit. */
  readonly pluginLogLinesDropped: (plugin: string, lines: number) => void
  /** Counts a circuit breaker trip: the plugin timed out too often and is restarted. */
  readonly pluginBreakerTripped: (plugin: string) => void
  /** Counts a plugin killed for going over --plugin-memory-limit, by what enforced it (cgroup-v2, cgroup-v1, watchdog). */
  readonly pluginMemoryKilled: (plugin: string, by: string) => void
  /** Counts a call refused because the plugin had its share of the workers in flight. */
  readonly pluginCallRejected: (plugin: string) => void
  /** Counts a reconcile refused because the plugin's answer broke a rule (reconciler/DependentRules.ts). */
  readonly pluginViolation: (plugin: string, rule: string) => void
  /** Violations counted so far for a plugin, every rule together. */
  readonly pluginViolations: (plugin: string) => number
  readonly render: () => string
  /** For metrics declared elsewhere; rendered with the others. */
  readonly registry: MetricsRegistry
}>()("halkyon/metrics/Metrics") {
  static readonly layer = Layer.sync(Metrics, () => makeMetrics())
}

export const makeMetrics = (): Metrics["Service"] => {
  const registry = new MetricsRegistry()
  const reconcileTotal = registry.counter("halkyon_reconcile_total", "Capability reconciles, by result (success, error, requeue).", [
    "result"
  ])
  // Every result from the start, so that rate() and alerts see a zero rather than no series.
  for (const result of ["success", "error", "requeue"] as const) reconcileTotal.inc({ result }, 0)
  const reconcileDuration = registry.histogram(
    "halkyon_reconcile_duration_seconds",
    "How long a Capability reconcile took, in seconds.",
    [],
    reconcileBuckets
  )
  const queueDepth = registry.gauge("halkyon_workqueue_depth", "Capabilities waiting in the work queue.")
  const queuePending = registry.gauge(
    "halkyon_workqueue_pending",
    "Capabilities the work queue has not finished with: waiting, being reconciled, or scheduled to be reconciled again (requeue, retry backoff)."
  )
  const pluginRestarts = registry.counter(
    "halkyon_plugin_restarts_total",
    "Plugin restarts after the plugin exited or stopped answering.",
    ["plugin"]
  )
  const pluginReplaceFailures = registry.counter(
    "halkyon_plugin_replace_failures_total",
    "Replaced plugin files that could not start: the previous version kept serving.",
    ["plugin"]
  )
  const pluginCallDuration = registry.histogram(
    "halkyon_plugin_call_duration_seconds",
    "How long an RPC to a plugin took, in seconds, failed calls included.",
    ["plugin", "method"],
    pluginCallBuckets
  )
  const logLinesDropped = registry.counter(
    "halkyon_plugin_log_lines_dropped_total",
    "Plugin log lines not relayed because the plugin logged faster than its rate limit.",
    ["plugin"]
  )
  const breakerTrips = registry.counter(
    "halkyon_plugin_breaker_trips_total",
    "Times a plugin was marked degraded and restarted after calls in a row timed out.",
    ["plugin"]
  )
  const memoryKills = registry.counter(
    "halkyon_plugin_memory_kills_total",
    "Plugin processes killed for going over their memory limit, by the enforcement that killed them.",
    ["plugin", "by"]
  )
  const callsRejected = registry.counter(
    "halkyon_plugin_calls_rejected_total",
    "Plugin calls not made because the plugin already had its share of the reconcile workers; the Capability is retried later.",
    ["plugin"]
  )
  const pluginViolations = registry.counter(
    "halkyon_plugin_violations_total",
    "Reconciles refused because a plugin's answer broke a rule (an undeclared id, another namespace, a cluster-scoped kind...), by plugin and rule.",
    ["plugin", "rule"]
  )
  const violationsByPlugin = new Map<string, number>()
  return Metrics.of({
    pluginLogLinesDropped: (plugin, lines) => logLinesDropped.inc({ plugin }, lines),
    pluginBreakerTripped: (plugin) => breakerTrips.inc({ plugin }),
    pluginMemoryKilled: (plugin, by) => memoryKills.inc({ plugin, by }),
    pluginCallRejected: (plugin) => callsRejected.inc({ plugin }),
    reconciled: (result, seconds) => {
      reconcileTotal.inc({ result })
      reconcileDuration.observe({}, seconds)
    },
    queueDepth: (depth) => queueDepth.set({}, depth),
    queuePending: (pending) => queuePending.set({}, pending),
    pluginRestarted: (plugin) => pluginRestarts.inc({ plugin }),
    pluginReplaceFailed: (plugin) => pluginReplaceFailures.inc({ plugin }),
    pluginCall: (plugin, method, seconds) => pluginCallDuration.observe({ plugin, method }, seconds),
    pluginViolation: (plugin, rule) => {
      pluginViolations.inc({ plugin, rule })
      violationsByPlugin.set(plugin, (violationsByPlugin.get(plugin) ?? 0) + 1)
    },
    pluginViolations: (plugin) => violationsByPlugin.get(plugin) ?? 0,
    render: () => registry.render(),
    registry
  })
}
