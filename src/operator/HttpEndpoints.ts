/**
 * HttpEndpoints: the operator's probe and metrics HTTP servers, on node:http.
 *
 * On the health address: `/healthz` answers 200 "ok" as long as the process
 * serves at all (a liveness probe), `/readyz` answers 200 "ok" once Readiness
 * says so and 503 with the reason before (a readiness probe). On the metrics
 * address: `/metrics`, the Metrics service's text exposition. Addresses take
 * the kubectl / controller-runtime form: ":8081" (every interface),
 * "127.0.0.1:8081", "[::1]:8081", or "0" to serve nothing. The same address
 * for both serves all three paths on one server.
 *
 * Readiness owns the ready flag; whoever knows when the operator can work
 * (the controller, once its caches are synced) sets it. HttpEndpoints owns
 * the servers only: it decides nothing about readiness, and the servers are
 * closed, open connections included, when the layer's scope closes.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import { Context, Effect, Layer } from "effect"
import { Metrics } from "../metrics/Metrics.ts"
import { describeEndpoint, type Endpoint, HttpAddressInvalid, HttpListenFailed } from "./Errors.ts"

export type ReadinessState = { readonly ready: true } | { readonly ready: false; readonly reason: string }

export class Readiness extends Context.Service<Readiness, {
  readonly markReady: Effect.Effect<void>
  /** `reason` is what /readyz answers with its 503. */
  readonly markNotReady: (reason: string) => Effect.Effect<void>
  readonly state: Effect.Effect<ReadinessState>
}>()("halkyon/operator/Readiness") {
  /** Starts not ready, with the reason "starting". */
  static readonly layer = Layer.sync(Readiness, () => {
    let state: ReadinessState = { ready: false, reason: "starting" }
    return Readiness.of({
      markReady: Effect.sync(() => {
        state = { ready: true }
      }),
      markNotReady: (reason) =>
        Effect.sync(() => {
          state = { ready: false, reason }
        }),
      state: Effect.sync(() => state)
    })
  })
}

export interface ListenAddress {
  /** "" means every interface. */
  readonly host: string
  /** 0 lets the system choose a free port. */
  readonly port: number
}

/** Parses ":8081", "host:8081", "[::1]:8081"; undefined for "0" (disabled). */
export const parseAddress = (endpoint: Endpoint, address: string): ListenAddress | undefined | HttpAddressInvalid => {
  const invalid = (detail: string) => new HttpAddressInvalid({ endpoint, address, detail })
  const trimmed = address.trim()
  if (trimmed === "0") return undefined
  if (trimmed === "") return invalid("it is empty")
  const colon = trimmed.lastIndexOf(":")
  if (colon < 0) return invalid(/^\d+$/.test(trimmed) ? `it has no colon (did you mean ":${trimmed}"?)` : "it has no port")
  let host = trimmed.slice(0, colon)
  const portText = trimmed.slice(colon + 1)
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1)
  else if (host.includes(":")) return invalid("an IPv6 address needs brackets")
  if (!/^\d{1,5}$/.test(portText)) return invalid(`the port ${JSON.stringify(portText)} is not a number`)
  const port = Number(portText)
  if (port > 65535) return invalid(`the port ${port} is above 65535`)
  return { host, port }
}

export interface BoundAddress {
  readonly host: string
  readonly port: number
}

export class HttpEndpoints extends Context.Service<HttpEndpoints, {
  /** Where /healthz and /readyz are served; undefined when disabled. */
  readonly health: BoundAddress | undefined
  /** Where /metrics is served; undefined when disabled. */
  readonly metrics: BoundAddress | undefined
}>()("halkyon/operator/HttpEndpoints") {
  static readonly layer = (options: { readonly healthAddr: string; readonly metricsAddr: string }) =>
    Layer.effect(HttpEndpoints, make(options))
}

const text = (res: ServerResponse, status: number, body: string, contentType = "text/plain; charset=utf-8") => {
  res.writeHead(status, { "content-type": contentType, "content-length": Buffer.byteLength(body), "x-content-type-options": "nosniff" })
  res.end(body)
}

const make = Effect.fnUntraced(function*(options: { readonly healthAddr: string; readonly metricsAddr: string }) {
  const metrics = yield* Metrics
  const readiness = yield* Readiness

  const health = parseAddress("health", options.healthAddr)
  if (health instanceof HttpAddressInvalid) return yield* health
  const metricsAt = parseAddress("metrics", options.metricsAddr)
  if (metricsAt instanceof HttpAddressInvalid) return yield* metricsAt

  const handler = (serves: ReadonlySet<Endpoint>) => (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? "/").split("?")[0]
    const endpoint: Endpoint | undefined = path === "/healthz" || path === "/readyz"
      ? "health"
      : path === "/metrics"
      ? "metrics"
      : undefined
    if (endpoint === undefined || !serves.has(endpoint)) return text(res, 404, "not found\n")
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("allow", "GET, HEAD")
      return text(res, 405, "method not allowed\n")
    }
    if (path === "/healthz") return text(res, 200, "ok")
    if (path === "/readyz") {
      const state = Effect.runSync(readiness.state)
      return state.ready ? text(res, 200, "ok") : text(res, 503, `not ready: ${state.reason}`)
    }
    try {
      return text(res, 200, metrics.render(), "text/plain; version=0.0.4; charset=utf-8")
    } catch (e) {
      // A bug in a metric must cost a scrape, not the operator.
      return text(res, 500, `cannot render metrics: ${e instanceof Error ? e.message : String(e)}\n`)
    }
  }

  const listen = (endpoint: Endpoint, address: string, at: ListenAddress, serves: ReadonlySet<Endpoint>) =>
    Effect.acquireRelease(
      Effect.callback<Server, HttpListenFailed>((resume) => {
        const server = createServer(handler(serves))
        const failed = (e: NodeJS.ErrnoException) => {
          server.close()
          resume(Effect.fail(new HttpListenFailed({ endpoint, address, code: e.code ?? "UNKNOWN", detail: e.message })))
        }
        server.once("error", failed)
        server.listen({ port: at.port, ...(at.host === "" ? {} : { host: at.host }) }, () => {
          server.off("error", failed)
          // Later server errors have no one to fail; without a listener they would throw.
          server.on("error", () => {})
          resume(Effect.succeed(server))
        })
        return Effect.sync(() => {
          server.close()
        })
      }),
      (server) =>
        Effect.callback<void>((resume) => {
          server.close(() => resume(Effect.void))
          // Keep-alive connections would hold close() open until they time out.
          server.closeAllConnections()
        })
    ).pipe(
      Effect.map((server): BoundAddress => {
        const bound = server.address()
        return typeof bound === "object" && bound !== null ? { host: bound.address, port: bound.port } : { host: at.host, port: at.port }
      }),
      Effect.tap((bound) =>
        Effect.logInfo(
          `serving ${[...serves].map(describeEndpoint).join(" and ")} on ${
            bound.host.includes(":") ? `[${bound.host}]` : bound.host
          }:${bound.port}`
        )
      )
    )

  // One address for both (not an ephemeral one, which would be two ports): one server.
  if (
    health !== undefined && metricsAt !== undefined && health.host === metricsAt.host && health.port === metricsAt.port && health.port !== 0
  ) {
    const bound = yield* listen("health", options.healthAddr, health, new Set<Endpoint>(["health", "metrics"]))
    return HttpEndpoints.of({ health: bound, metrics: bound })
  }
  const healthBound = health === undefined ? undefined : yield* listen("health", options.healthAddr, health, new Set<Endpoint>(["health"]))
  const metricsBound = metricsAt === undefined
    ? undefined
    : yield* listen("metrics", options.metricsAddr, metricsAt, new Set<Endpoint>(["metrics"]))
  return HttpEndpoints.of({ health: healthBound, metrics: metricsBound })
})
