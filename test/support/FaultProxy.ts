/**
 * A loopback proxy between the operator and the API server that the fault
 * tests control: it terminates TLS with the API server's own serving
 * certificate and forwards each request as the cluster's admin, so it sees
 * every request. It can cut every connection (and refuse new ones) and
 * restore them, delay each request, end the open watches cleanly (so that the
 * operator watches again from the resourceVersion it last saw), hold new
 * watches until released, and counts the writes per object.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { ControlPlane } from "./control-plane/start.ts"

export interface ProxiedWrite {
  readonly method: string
  /** The object's path, with any subresource (`/status`) kept. */
  readonly path: string
  /** performance.now() when the proxy received it. */
  readonly at: number
}

export interface FaultProxy {
  /** https://127.0.0.1:<port> */
  readonly server: string
  /** A kubeconfig for the same admin user that goes through the proxy. */
  readonly kubeconfigPath: string
  /** Every write request (POST, PUT, PATCH, DELETE) forwarded, in order. */
  readonly writes: Array<ProxiedWrite>
  /** Requests forwarded so far. */
  readonly requests: () => number
  /** Added before each request is forwarded. */
  delayMs: number
  /** Closes every connection at once, as a broken network would, and refuses new ones until `restore`. */
  readonly cut: () => Promise<void>
  readonly restore: () => void
  /** Ends the open watch responses as a server ending them would; returns how many. */
  readonly endWatches: () => number
  /** While held, new watch requests wait (unanswered) until `releaseWatches`. */
  readonly holdWatches: () => void
  readonly releaseWatches: () => void
  /**
   * While held, every new request (or every one `match` picks) waits (unanswered) until `releaseRequests`:
   * the operator cannot see the API server.
   */
  readonly holdRequests: (match?: (method: string, path: string) => boolean) => void
  readonly releaseRequests: () => void
  /** Requests waiting while held. */
  readonly heldRequests: () => number
  /** Those requests, as "METHOD /path". */
  readonly heldRequestPaths: () => ReadonlyArray<string>
  /** Watch requests waiting while held. */
  readonly heldWatches: () => number
  /** Write requests that `match` picks wait (unanswered) until `releaseWrites`. */
  readonly holdWrites: (match: (method: string, path: string) => boolean) => void
  /** Write requests waiting. */
  readonly heldWrites: () => ReadonlyArray<string>
  /** Lets the held writes through to the API server (`forward`), or drops them as a connection lost before they were sent. */
  readonly releaseWrites: (forward: boolean) => void
  readonly stop: () => Promise<void>
}

const WriteMethods = new Set(["POST", "PUT", "PATCH", "DELETE"])
const HopHeaders = new Set(["host", "connection", "content-length", "accept-encoding", "transfer-encoding", "keep-alive"])

export const startFaultProxy = (plane: ControlPlane): FaultProxy => {
  const tls = { ca: plane.caCertPem, cert: plane.adminCertPem, key: plane.adminKeyPem }
  const serving = { cert: readFileSync(join(plane.dir, "serving.crt"), "utf8"), key: readFileSync(join(plane.dir, "serving.key"), "utf8") }
  const writes: Array<ProxiedWrite> = []
  let forwarded = 0
  const inFlight = new Set<AbortController>()
  const watches = new Set<AbortController>()
  let held: Array<() => void> | undefined
  let heldAll: Array<{ readonly what: string; readonly resume: () => void }> | undefined
  let holdMatch: ((method: string, path: string) => boolean) | undefined
  let holdWrite: ((method: string, path: string) => boolean) | undefined
  const heldWrites: Array<{ readonly what: string; readonly resume: (forward: boolean) => void }> = []
  // Watches ended by endWatches end cleanly; any other upstream failure breaks the response.
  const endedOnPurpose = new WeakSet<AbortController>()

  const handle = async (request: Request): Promise<Response> => {
    const url = new URL(request.url)
    const isWatch = url.searchParams.get("watch") === "true" || url.searchParams.get("watch") === "1"
    if (proxy.delayMs > 0) await Bun.sleep(proxy.delayMs)
    if (heldAll !== undefined && (holdMatch?.(request.method, url.pathname) ?? true)) {
      await new Promise<void>((resume) => heldAll?.push({ what: `${request.method} ${url.pathname}`, resume }))
    }
    if (isWatch && held !== undefined) await new Promise<void>((resolve) => held?.push(resolve))
    const headers = new Headers()
    request.headers.forEach((value, key) => {
      if (!HopHeaders.has(key.toLowerCase())) headers.set(key, value)
    })
    const body = request.method === "GET" || request.method === "HEAD" ? null : await request.arrayBuffer()
    if (WriteMethods.has(request.method) && holdWrite?.(request.method, url.pathname) === true) {
      const forward = await new Promise<boolean>((resume) => heldWrites.push({ what: `${request.method} ${url.pathname}`, resume }))
      if (!forward) return new Response("dropped by the fault proxy", { status: 503 })
    }
    if (WriteMethods.has(request.method)) writes.push({ method: request.method, path: url.pathname, at: performance.now() })
    forwarded += 1
    const abort = new AbortController()
    inFlight.add(abort)
    if (isWatch) watches.add(abort)
    const forget = () => {
      inFlight.delete(abort)
      watches.delete(abort)
    }
    let upstream: Response
    try {
      upstream = await fetch(`${plane.server}${url.pathname}${url.search}`, {
        method: request.method,
        headers,
        body,
        tls,
        signal: abort.signal
      })
    } catch (error) {
      forget()
      // The API server is down (restarting, say): answered as an unavailable server would be.
      const detail = error instanceof Error ? error.message : String(error)
      return Response.json(
        { kind: "Status", apiVersion: "v1", status: "Failure", message: `fault proxy: ${detail}`, reason: "ServiceUnavailable", code: 503 },
        { status: 503 }
      )
    }
    const responseHeaders = new Headers()
    upstream.headers.forEach((value, key) => {
      if (!HopHeaders.has(key.toLowerCase()) && key.toLowerCase() !== "content-encoding") responseHeaders.set(key, value)
    })
    const source = upstream.body
    if (source === null) {
      forget()
      return new Response(null, { status: upstream.status, headers: responseHeaders })
    }
    const reader = source.getReader()
    // Streamed through, so that a watch's events reach the operator as they come.
    const stream = new ReadableStream<Uint8Array>({
      async pull(controller) {
        try {
          const { done, value } = await reader.read()
          if (done) {
            forget()
            controller.close()
          } else controller.enqueue(value)
        } catch (error) {
          forget()
          try {
            if (endedOnPurpose.has(abort)) controller.close()
            else controller.error(error)
          } catch {
            // already closed
          }
        }
      },
      cancel() {
        forget()
        abort.abort()
      }
    })
    return new Response(stream, { status: upstream.status, headers: responseHeaders })
  }

  let port = 0
  let server: ReturnType<typeof Bun.serve> | undefined
  const listen = () => {
    server = Bun.serve({ hostname: "127.0.0.1", port, tls: serving, idleTimeout: 0, fetch: handle })
    port = server.port ?? 0
  }
  listen()

  const dir = mkdtempSync(join(tmpdir(), "halkyon-fault-proxy-"))
  const kubeconfigPath = join(dir, "kubeconfig")
  const serverUrl = `https://127.0.0.1:${port}`
  writeFileSync(kubeconfigPath, readFileSync(plane.kubeconfigPath, "utf8").replace(plane.server, serverUrl), { mode: 0o600 })

  const proxy: FaultProxy = {
    server: serverUrl,
    kubeconfigPath,
    writes,
    requests: () => forwarded,
    delayMs: 0,
    cut: async () => {
      const current = server
      server = undefined
      for (const abort of inFlight) abort.abort()
      inFlight.clear()
      watches.clear()
      await current?.stop(true)
    },
    restore: () => {
      if (server === undefined) listen()
    },
    endWatches: () => {
      const count = watches.size
      for (const abort of watches) {
        endedOnPurpose.add(abort)
        abort.abort()
      }
      return count
    },
    holdWatches: () => {
      held ??= []
    },
    releaseWatches: () => {
      const waiting = held ?? []
      held = undefined
      for (const resume of waiting) resume()
    },
    heldWatches: () => held?.length ?? 0,
    holdRequests: (match) => {
      heldAll ??= []
      holdMatch = match
    },
    releaseRequests: () => {
      const waiting = heldAll ?? []
      heldAll = undefined
      holdMatch = undefined
      for (const { resume } of waiting) resume()
    },
    heldRequests: () => heldAll?.length ?? 0,
    heldRequestPaths: () => (heldAll ?? []).map((r) => r.what),
    holdWrites: (match) => {
      holdWrite = match
    },
    heldWrites: () => heldWrites.map((w) => w.what),
    releaseWrites: (forward) => {
      holdWrite = undefined
      for (const w of heldWrites.splice(0)) w.resume(forward)
    },
    stop: async () => {
      proxy.releaseRequests()
      proxy.releaseWatches()
      proxy.releaseWrites(false)
      await proxy.cut()
      rmSync(dir, { recursive: true, force: true })
    }
  }
  return proxy
}
