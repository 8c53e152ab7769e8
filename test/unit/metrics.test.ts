/**
 * The Prometheus text exposition (0.0.4) of the metrics registry, checked
 * line for line, and the operator's pre-declared metrics.
 */
import { expect, test } from "bun:test"
import { Effect } from "effect"
import { violationsByPlugin } from "../../src/cli/PluginsCommand.ts"
import { escapeLabelValue, formatValue, makeMetrics, Metrics, MetricsRegistry } from "../../src/metrics/Metrics.ts"

test("a counter: HELP and TYPE, one line per series, sorted by label values", () => {
  const registry = new MetricsRegistry()
  const requests = registry.counter("test_requests_total", "Requests served.", ["code", "method"])
  requests.inc({ method: "GET", code: "500" })
  requests.inc({ method: "GET", code: "200" }, 3)
  requests.inc({ method: "POST", code: "200" }, 0.5)
  requests.inc({ method: "GET", code: "200" })
  expect(registry.render()).toBe(
    [
      "# HELP test_requests_total Requests served.",
      "# TYPE test_requests_total counter",
      "test_requests_total{code=\"200\",method=\"GET\"} 4",
      "test_requests_total{code=\"200\",method=\"POST\"} 0.5",
      "test_requests_total{code=\"500\",method=\"GET\"} 1",
      ""
    ].join("\n")
  )
  expect(requests.value({ code: "200", method: "GET" })).toBe(4)
  expect(() => requests.inc({ code: "200", method: "GET" }, -1)).toThrow("can only go up")
})

test("a gauge without labels is present from the start; set, inc and dec", () => {
  const registry = new MetricsRegistry()
  const depth = registry.gauge("test_depth", "Items waiting.")
  expect(registry.render()).toBe("# HELP test_depth Items waiting.\n# TYPE test_depth gauge\ntest_depth 0\n")
  depth.set({}, 7)
  depth.inc({})
  depth.dec({}, 3)
  expect(registry.render()).toBe("# HELP test_depth Items waiting.\n# TYPE test_depth gauge\ntest_depth 5\n")
  depth.set({}, -1.25)
  expect(registry.render()).toContain("\ntest_depth -1.25\n")
})

test("a histogram: cumulative buckets ending with +Inf, then _sum and _count, per series", () => {
  const registry = new MetricsRegistry()
  const latency = registry.histogram("test_latency_seconds", "Latency.", ["route"], [0.1, 0.5, 1])
  // 0.5 equals a bound: buckets are inclusive upper bounds.
  for (const v of [0.05, 0.5, 0.75, 0.25, 2]) latency.observe({ route: "/b" }, v)
  latency.observe({ route: "/a" }, 0.1)
  expect(registry.render()).toBe(
    [
      "# HELP test_latency_seconds Latency.",
      "# TYPE test_latency_seconds histogram",
      "test_latency_seconds_bucket{route=\"/a\",le=\"0.1\"} 1",
      "test_latency_seconds_bucket{route=\"/a\",le=\"0.5\"} 1",
      "test_latency_seconds_bucket{route=\"/a\",le=\"1\"} 1",
      "test_latency_seconds_bucket{route=\"/a\",le=\"+Inf\"} 1",
      "test_latency_seconds_sum{route=\"/a\"} 0.1",
      "test_latency_seconds_count{route=\"/a\"} 1",
      "test_latency_seconds_bucket{route=\"/b\",le=\"0.1\"} 1",
      "test_latency_seconds_bucket{route=\"/b\",le=\"0.5\"} 3",
      "test_latency_seconds_bucket{route=\"/b\",le=\"1\"} 4",
      "test_latency_seconds_bucket{route=\"/b\",le=\"+Inf\"} 5",
      "test_latency_seconds_sum{route=\"/b\"} 3.55",
      "test_latency_seconds_count{route=\"/b\"} 5",
      ""
    ].join("\n")
  )
})

test("histogram buckets are cumulative: never decreasing, the last equal to _count", () => {
  const registry = new MetricsRegistry()
  const h = registry.histogram("test_h", "H.", [], [1, 2, 4, 8])
  const values = [0, 1, 1.5, 3, 3, 5, 9, 100, 2, 8]
  for (const v of values) h.observe({}, v)
  const counts = registry.render().split("\n").filter((l) => l.startsWith("test_h_bucket")).map((l) => Number(l.split(" ")[1]))
  expect(counts).toEqual([2, 4, 6, 8, 10])
  // Each bucket holds exactly the values at or below its bound.
  expect(counts.slice(0, 4)).toEqual([1, 2, 4, 8].map((bound) => values.filter((v) => v <= bound).length))
  expect(registry.render()).toContain("test_h_count 10\n")
  expect(registry.render()).toContain("test_h_sum 132.5\n")
})

test("label values are escaped: backslash, double quote, newline; HELP escapes backslash and newline", () => {
  expect(escapeLabelValue("a\\b\"c\nd")).toBe("a\\\\b\\\"c\\nd")
  const registry = new MetricsRegistry()
  registry.counter("test_escapes_total", "Line one\nline \\two \"quoted\".", ["path"]).inc({ path: "C:\\dir\n\"x\"" })
  expect(registry.render()).toBe(
    "# HELP test_escapes_total Line one\\nline \\\\two \"quoted\".\n" +
      "# TYPE test_escapes_total counter\n" +
      "test_escapes_total{path=\"C:\\\\dir\\n\\\"x\\\"\"} 1\n"
  )
})

test("special values and families without series", () => {
  expect([formatValue(Infinity), formatValue(-Infinity), formatValue(NaN), formatValue(0.001), formatValue(12)]).toEqual([
    "+Inf",
    "-Inf",
    "NaN",
    "0.001",
    "12"
  ])
  const registry = new MetricsRegistry()
  registry.counter("test_unused_total", "Never incremented.", ["x"])
  expect(registry.render()).toBe("")
  expect(() => registry.counter("test_unused_total", "Again.")).toThrow("declared twice")
  expect(() => registry.counter("bad-name", "x")).toThrow("invalid metric name")
  expect(() => registry.histogram("test_bad_buckets", "x", [], [1, 1])).toThrow("strictly ascending")
  expect(() => registry.histogram("test_le", "x", ["le"])).toThrow("label named le")
})

test("the operator's metrics, as a fresh operator exposes them and after updates", async () => {
  const metrics = await Effect.runPromise(
    Effect.gen(function*() {
      return yield* Metrics
    }).pipe(Effect.provide(Metrics.layer))
  )
  const reconcileBuckets = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "+Inf"]
  const fresh = [
    "# HELP halkyon_reconcile_total Capability reconciles, by result (success, error, requeue).",
    "# TYPE halkyon_reconcile_total counter",
    "halkyon_reconcile_total{result=\"error\"} 0",
    "halkyon_reconcile_total{result=\"requeue\"} 0",
    "halkyon_reconcile_total{result=\"success\"} 0",
    "# HELP halkyon_reconcile_duration_seconds How long a Capability reconcile took, in seconds.",
    "# TYPE halkyon_reconcile_duration_seconds histogram",
    ...reconcileBuckets.map((le) => `halkyon_reconcile_duration_seconds_bucket{le="${le}"} 0`),
    "halkyon_reconcile_duration_seconds_sum 0",
    "halkyon_reconcile_duration_seconds_count 0",
    "# HELP halkyon_workqueue_depth Capabilities waiting in the work queue.",
    "# TYPE halkyon_workqueue_depth gauge",
    "halkyon_workqueue_depth 0",
    "# HELP halkyon_workqueue_pending Capabilities the work queue has not finished with: waiting, being reconciled, or scheduled to be reconciled again (requeue, retry backoff).",
    "# TYPE halkyon_workqueue_pending gauge",
    "halkyon_workqueue_pending 0",
    ""
  ].join("\n")
  expect(metrics.render()).toBe(fresh)

  metrics.reconciled("success", 0.2)
  metrics.reconciled("success", 3)
  metrics.reconciled("requeue", 0.02)
  metrics.queueDepth(4)
  metrics.queuePending(6)
  metrics.pluginRestarted("postgres")
  metrics.pluginRestarted("postgres")
  metrics.pluginCall("postgres", "BuildDependents", 0.0002)
  metrics.pluginCall("postgres", "BuildDependents", 0.003)
  metrics.pluginCall("postgres", "Describe", 12)

  // 0.02, 0.2 and 3 s: in the 0.025, 0.25 and 5 buckets.
  const cumulative = [0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3]
  const pluginBuckets = ["0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"]
  expect(metrics.render()).toBe(
    [
      "# HELP halkyon_reconcile_total Capability reconciles, by result (success, error, requeue).",
      "# TYPE halkyon_reconcile_total counter",
      "halkyon_reconcile_total{result=\"error\"} 0",
      "halkyon_reconcile_total{result=\"requeue\"} 1",
      "halkyon_reconcile_total{result=\"success\"} 2",
      "# HELP halkyon_reconcile_duration_seconds How long a Capability reconcile took, in seconds.",
      "# TYPE halkyon_reconcile_duration_seconds histogram",
      ...reconcileBuckets.map((le, i) => `halkyon_reconcile_duration_seconds_bucket{le="${le}"} ${cumulative[i]}`),
      "halkyon_reconcile_duration_seconds_sum 3.22",
      "halkyon_reconcile_duration_seconds_count 3",
      "# HELP halkyon_workqueue_depth Capabilities waiting in the work queue.",
      "# TYPE halkyon_workqueue_depth gauge",
      "halkyon_workqueue_depth 4",
      "# HELP halkyon_workqueue_pending Capabilities the work queue has not finished with: waiting, being reconciled, or scheduled to be reconciled again (requeue, retry backoff).",
      "# TYPE halkyon_workqueue_pending gauge",
      "halkyon_workqueue_pending 6",
      "# HELP halkyon_plugin_restarts_total Plugin restarts after the plugin exited or stopped answering.",
      "# TYPE halkyon_plugin_restarts_total counter",
      "halkyon_plugin_restarts_total{plugin=\"postgres\"} 2",
      "# HELP halkyon_plugin_call_duration_seconds How long an RPC to a plugin took, in seconds, failed calls included.",
      "# TYPE halkyon_plugin_call_duration_seconds histogram",
      ...pluginBuckets.map((le, i) =>
        `halkyon_plugin_call_duration_seconds_bucket{plugin="postgres",method="BuildDependents",le="${le}"} ${i < 3 ? 1 : 2}`
      ),
      "halkyon_plugin_call_duration_seconds_sum{plugin=\"postgres\",method=\"BuildDependents\"} 0.0032",
      "halkyon_plugin_call_duration_seconds_count{plugin=\"postgres\",method=\"BuildDependents\"} 2",
      ...pluginBuckets.map((le) =>
        `halkyon_plugin_call_duration_seconds_bucket{plugin="postgres",method="Describe",le="${le}"} ${le === "+Inf" ? 1 : 0}`
      ),
      "halkyon_plugin_call_duration_seconds_sum{plugin=\"postgres\",method=\"Describe\"} 12",
      "halkyon_plugin_call_duration_seconds_count{plugin=\"postgres\",method=\"Describe\"} 1",
      ""
    ].join("\n")
  )
})

test("plugin violations: counted per plugin and rule, summed per plugin as `plugins list --operator` reads them back", () => {
  const metrics = makeMetrics()
  metrics.pluginViolation("hostile.js", "namespace")
  metrics.pluginViolation("hostile.js", "namespace")
  metrics.pluginViolation("hostile.js", "declared")
  metrics.pluginViolation("odd \"name\"", "size")
  const text = metrics.render()
  expect(text).toContain("halkyon_plugin_violations_total{plugin=\"hostile.js\",rule=\"namespace\"} 2\n")
  expect(text).toContain("halkyon_plugin_violations_total{plugin=\"hostile.js\",rule=\"declared\"} 1\n")
  expect(metrics.pluginViolations("hostile.js")).toBe(3)
  expect(metrics.pluginViolations("postgres.js")).toBe(0)
  expect([...violationsByPlugin(text)].sort()).toEqual([["hostile.js", 3], ["odd \"name\"", 1]])
})
