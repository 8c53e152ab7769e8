/**
 * The probe and metrics servers, spoken to with real HTTP requests on free
 * loopback ports.
 */
import { expect, test } from "bun:test"
import { readdirSync, readFileSync, readlinkSync } from "node:fs"
import { createServer, type Server } from "node:net"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import { HttpEndpoints, parseAddress, Readiness } from "../../src/operator/HttpEndpoints.ts"
import { Metrics } from "../../src/metrics/Metrics.ts"
import { HttpAddressInvalid } from "../../src/operator/Errors.ts"

type Services = HttpEndpoints | Metrics | Readiness

const layerFor = (healthAddr: string, metricsAddr: string) =>
  HttpEndpoints.layer({ healthAddr, metricsAddr }).pipe(Layer.provideMerge(Layer.mergeAll(Metrics.layer, Readiness.layer)))

/** Builds the endpoints in a scope of their own; `close` stops them. */
const start = async (healthAddr: string, metricsAddr: string) => {
  const scope = Effect.runSync(Scope.make())
  const context = await Effect.runPromise(Layer.buildWithScope(layerFor(healthAddr, metricsAddr), scope))
  const run = <A>(effect: Effect.Effect<A, never, Services>) => Effect.runPromise(effect.pipe(Effect.provide(context)))
  return {
    endpoints: Context.get(context, HttpEndpoints),
    metrics: Context.get(context, Metrics),
    readiness: Context.get(context, Readiness),
    run,
    close: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

/** Why building the endpoints failed. */
const startFails = async (healthAddr: string, metricsAddr: string) => {
  const exit = await Effect.runPromise(Effect.exit(Effect.scoped(Layer.build(layerFor(healthAddr, metricsAddr)))))
  if (Exit.isSuccess(exit)) throw new Error("the endpoints started")
  const error = exit.cause.reasons.find((r) => r._tag === "Fail")
  if (error === undefined || error._tag !== "Fail") throw new Error(`no typed error: ${String(exit.cause)}`)
  return error.error
}

const listenOn = (port: number, host = "127.0.0.1") =>
  new Promise<Server>((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(port, host, () => resolve(server))
  })

const portOf = (server: Server) => {
  const address = server.address()
  if (address === null || typeof address === "string") throw new Error("no port")
  return address.port
}

const closeServer = (server: Server) => new Promise<void>((resolve) => server.close(() => resolve()))

/** A port nothing listens on right now. */
const freePort = async () => {
  const server = await listenOn(0)
  const port = portOf(server)
  await closeServer(server)
  return port
}

/** The TCP ports this process listens on, from /proc: its socket inodes in LISTEN state. */
const listeningPorts = () => {
  const inodes = new Set<string>()
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`))
      if (match?.[1] !== undefined) inodes.add(match[1])
    } catch {
      // closed while we looked
    }
  }
  const ports = new Set<number>()
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const line of readFileSync(table, "utf8").split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/)
      // local_address is ADDR:PORT in hex; st 0A is LISTEN; the inode is the tenth field.
      if (fields[3] === "0A" && inodes.has(fields[9] ?? "")) ports.add(parseInt(fields[1]?.split(":")[1] ?? "0", 16))
    }
  }
  return ports
}

const get = async (port: number, path: string) => {
  const response = await fetch(`http://127.0.0.1:${port}${path}`)
  return { status: response.status, type: response.headers.get("content-type"), body: await response.text() }
}

test("healthz is 200 ok; readyz is 503 with the reason until markReady, and again after markNotReady", async () => {
  const s = await start("127.0.0.1:0", "127.0.0.1:0")
  try {
    const port = s.endpoints.health?.port ?? 0
    expect(port).toBeGreaterThan(0)
    expect(s.endpoints.metrics?.port).not.toBe(port)
    expect(await get(port, "/healthz")).toEqual({ status: 200, type: "text/plain; charset=utf-8", body: "ok" })
    expect(await get(port, "/readyz")).toEqual({ status: 503, type: "text/plain; charset=utf-8", body: "not ready: starting" })
    await s.run(Effect.gen(function*() {
      yield* (yield* Readiness).markReady
    }))
    expect(await get(port, "/readyz")).toEqual({ status: 200, type: "text/plain; charset=utf-8", body: "ok" })
    await s.run(Effect.gen(function*() {
      yield* (yield* Readiness).markNotReady("lost the Capability watch")
    }))
    expect(await get(port, "/readyz")).toMatchObject({ status: 503, body: "not ready: lost the Capability watch" })
    expect(await get(port, "/healthz")).toMatchObject({ status: 200, body: "ok" })
    // The health server serves probes only.
    expect((await get(port, "/metrics")).status).toBe(404)
    expect((await fetch(`http://127.0.0.1:${port}/healthz`, { method: "POST" })).status).toBe(405)
  } finally {
    await s.close()
  }
})

test("metrics: content type 0.0.4 and the rendered metrics as the body", async () => {
  const s = await start("0", "127.0.0.1:0")
  try {
    const port = s.endpoints.metrics?.port ?? 0
    s.metrics.reconciled("success", 0.3)
    s.metrics.pluginRestarted("redis \"cache\"")
    const response = await get(port, "/metrics")
    expect(response.status).toBe(200)
    expect(response.type).toBe("text/plain; version=0.0.4; charset=utf-8")
    expect(response.body).toBe(s.metrics.render())
    expect(response.body).toContain("halkyon_reconcile_total{result=\"success\"} 1\n")
    expect(response.body).toContain("halkyon_plugin_restarts_total{plugin=\"redis \\\"cache\\\"\"} 1\n")
    expect((await get(port, "/healthz")).status).toBe(404)
  } finally {
    await s.close()
  }
})

test("\"0\" disables an endpoint: nothing is served for it", async () => {
  const before = listeningPorts()
  const s = await start("0", "0")
  try {
    expect(s.endpoints).toMatchObject({ health: undefined, metrics: undefined })
    expect(listeningPorts()).toEqual(before)
  } finally {
    await s.close()
  }
  const health = await freePort()
  const t = await start(`127.0.0.1:${health}`, "0")
  try {
    expect(t.endpoints.health?.port).toBe(health)
    expect(t.endpoints.metrics).toBeUndefined()
    // Only the health server listens.
    expect([...listeningPorts()].filter((p) => !before.has(p))).toEqual([health])
    expect((await get(health, "/metrics")).status).toBe(404)
  } finally {
    await t.close()
  }
  expect(listeningPorts()).toEqual(before)
})

test("the same address for both serves the three paths on one server", async () => {
  const port = await freePort()
  const s = await start(`127.0.0.1:${port}`, `127.0.0.1:${port}`)
  try {
    expect(s.endpoints.health).toEqual(s.endpoints.metrics)
    expect((await get(port, "/healthz")).body).toBe("ok")
    expect((await get(port, "/readyz")).status).toBe(503)
    expect((await get(port, "/metrics")).body).toContain("# TYPE halkyon_reconcile_total counter")
  } finally {
    await s.close()
  }
})

test("closing the scope closes the servers, kept-alive connections included, and frees the ports", async () => {
  const s = await start("127.0.0.1:0", "127.0.0.1:0")
  const health = s.endpoints.health?.port ?? 0
  const metrics = s.endpoints.metrics?.port ?? 0
  // fetch keeps these connections alive in its pool.
  expect((await get(health, "/healthz")).status).toBe(200)
  expect((await get(metrics, "/metrics")).status).toBe(200)
  const began = performance.now()
  await s.close()
  expect(performance.now() - began).toBeLessThan(1000)
  await expect(fetch(`http://127.0.0.1:${health}/healthz`)).rejects.toThrow()
  for (const port of [health, metrics]) await closeServer(await listenOn(port))
})

test("a port in use is a tagged error naming the address; what was started is closed again", async () => {
  const taken = await listenOn(0)
  const port = portOf(taken)
  try {
    const error = await startFails(`127.0.0.1:${port}`, "0")
    expect(error._tag).toBe("HttpListenFailed")
    if (error._tag !== "HttpListenFailed") return
    expect(error.code).toBe("EADDRINUSE")
    expect(error.endpoint).toBe("health")
    expect(error.message).toBe(
      `cannot serve health probes on 127.0.0.1:${port}: the port is already in use (is another operator or program listening there?) (EADDRINUSE); choose another address, or "0" to disable`
    )
    // The health server had started when the metrics one failed: it is closed with the failed layer.
    const health = await freePort()
    const second = await startFails(`127.0.0.1:${health}`, `127.0.0.1:${port}`)
    expect(second).toMatchObject({ _tag: "HttpListenFailed", endpoint: "metrics", code: "EADDRINUSE" })
    await closeServer(await listenOn(health))
  } finally {
    await closeServer(taken)
  }
})

test("addresses in the kubectl form; anything else is a tagged error with a clear message", async () => {
  expect(parseAddress("health", ":8081")).toEqual({ host: "", port: 8081 })
  expect(parseAddress("health", "127.0.0.1:8081")).toEqual({ host: "127.0.0.1", port: 8081 })
  expect(parseAddress("metrics", "[::1]:9090")).toEqual({ host: "::1", port: 9090 })
  expect(parseAddress("metrics", "localhost:0")).toEqual({ host: "localhost", port: 0 })
  expect(parseAddress("metrics", "0")).toBeUndefined()
  const invalid = (address: string) => {
    const result = parseAddress("metrics", address)
    if (!(result instanceof HttpAddressInvalid)) throw new Error(`${address} was accepted`)
    return result.message
  }
  expect(invalid("8080")).toBe(
    "invalid address for metrics: \"8080\": it has no colon (did you mean \":8080\"?); use the form \":8081\", \"127.0.0.1:8081\" or \"[::1]:8081\", or \"0\" to disable"
  )
  expect(invalid("localhost")).toContain("it has no port")
  expect(invalid(":99999")).toContain("the port 99999 is above 65535")
  expect(invalid(":http")).toContain("the port \"http\" is not a number")
  expect(invalid("::1:80")).toContain("an IPv6 address needs brackets")
  expect(invalid("")).toContain("it is empty")
  const error = await startFails(":8081", "metrics.local")
  expect(error).toMatchObject({ _tag: "HttpAddressInvalid", endpoint: "metrics", address: "metrics.local" })
})
